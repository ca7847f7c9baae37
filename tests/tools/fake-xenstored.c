// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * fake-xenstored: a xenstore that answers reads and directory listings
 * from a file, on a Unix socket, so that xmsnap-xen (libxenstore, pointed
 * here by XENSTORED_PATH) can be tested on a host without Xen.
 *
 *   fake-xenstored SOCKET TREE
 *
 * TREE has one node a line: "PATH VALUE" (VALUE is the rest of the line,
 * maybe empty).  Parents exist implicitly, with an empty value.  A VALUE
 * of "!EACCES" (or another errno name) makes reads and listings of PATH
 * fail with that error.  Anything but XS_READ and XS_DIRECTORY gets
 * EINVAL.  Serves one connection after another until killed; every
 * request is logged to stderr as "TYPE PATH".
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* The xenstore wire protocol (xen/include/public/io/xs_wire.h). */
enum { XS_DIRECTORY = 1, XS_READ = 2, XS_ERROR = 16 };
struct xs_hdr {
	uint32_t type;
	uint32_t req_id;
	uint32_t tx_id;
	uint32_t len;
};
#define PAYLOAD_MAX	4096

struct node {
	char *path;
	char *value;
};

static struct node *nodes;
static size_t nnodes;

static void load(const char *file)
{
	FILE *f = fopen(file, "r");
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;

	if (!f) {
		fprintf(stderr, "fake-xenstored: %s: %s\n", file, strerror(errno));
		exit(2);
	}
	while ((n = getline(&line, &cap, f)) >= 0) {
		char *sp;

		if (n && line[n - 1] == '\n')
			line[--n] = '\0';
		if (!n || line[0] == '#')
			continue;
		nodes = realloc(nodes, (nnodes + 1) * sizeof(*nodes));
		if (!nodes) {
			fprintf(stderr, "fake-xenstored: out of memory\n");
			exit(2);
		}
		sp = strchr(line, ' ');
		if (sp)
			*sp = '\0';
		nodes[nnodes].path = strdup(line);
		nodes[nnodes].value = strdup(sp ? sp + 1 : "");
		nnodes++;
	}
	free(line);
	fclose(f);
}

/* The node at @path; or NULL, with *dir set when it has children. */
static const struct node *lookup(const char *path, int *dir)
{
	size_t len = strlen(path), i;
	const struct node *hit = NULL;

	*dir = 0;
	for (i = 0; i < nnodes; i++) {
		const char *p = nodes[i].path;

		if (!strcmp(p, path))
			hit = &nodes[i];
		else if (!strcmp(path, "/") ||
			 (!strncmp(p, path, len) && p[len] == '/'))
			*dir = 1;
	}
	return hit;
}

static const char *error_of(const struct node *n)
{
	return n && n->value[0] == '!' ? n->value + 1 : NULL;
}

/* The children of @path, NUL-separated, into @out; returns their length. */
static size_t children(const char *path, char *out, size_t cap)
{
	size_t len = strcmp(path, "/") ? strlen(path) : 0, used = 0, i;

	for (i = 0; i < nnodes; i++) {
		const char *p = nodes[i].path, *c, *end, *q;
		size_t cl;
		int dup = 0;

		if (strncmp(p, path, len) || p[len] != '/')
			continue;
		c = p + len + 1;
		end = strchr(c, '/');
		cl = end ? (size_t)(end - c) : strlen(c);
		for (q = out; q < out + used; q += strlen(q) + 1)
			if (strlen(q) == cl && !strncmp(q, c, cl))
				dup = 1;
		if (dup || !cl || used + cl + 1 > cap)
			continue;
		memcpy(out + used, c, cl);
		out[used + cl] = '\0';
		used += cl + 1;
	}
	return used;
}

static int full_io(int fd, void *buf, size_t len, int wr)
{
	char *p = buf;

	while (len) {
		ssize_t n = wr ? write(fd, p, len) : read(fd, p, len);

		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int reply(int fd, struct xs_hdr *h, uint32_t type, const void *buf, size_t len)
{
	h->type = type;
	h->len = (uint32_t)len;
	if (full_io(fd, h, sizeof(*h), 1))
		return -1;
	return len ? full_io(fd, (void *)buf, len, 1) : 0;
}

static int send_error(int fd, struct xs_hdr *h, const char *name)
{
	return reply(fd, h, XS_ERROR, name, strlen(name) + 1);
}

static void serve(int fd)
{
	static char payload[PAYLOAD_MAX + 1], out[PAYLOAD_MAX];
	struct xs_hdr h;

	while (!full_io(fd, &h, sizeof(h), 0)) {
		const struct node *n;
		int dir, rc;

		if (h.len > PAYLOAD_MAX || full_io(fd, payload, h.len, 0))
			return;
		payload[h.len] = '\0';
		fprintf(stderr, "fake-xenstored: %u %s\n", h.type, payload);
		n = lookup(payload, &dir);
		if (h.type != XS_READ && h.type != XS_DIRECTORY)
			rc = send_error(fd, &h, "EINVAL");
		else if (error_of(n))
			rc = send_error(fd, &h, error_of(n));
		else if (!n && !dir)
			rc = send_error(fd, &h, "ENOENT");
		else if (h.type == XS_READ)
			rc = reply(fd, &h, XS_READ, n ? n->value : "",
				   n ? strlen(n->value) : 0);
		else
			rc = reply(fd, &h, XS_DIRECTORY, out,
				   children(payload, out, sizeof(out)));
		if (rc)
			return;
	}
}

int main(int argc, char **argv)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int s, c;

	if (argc != 3 || strlen(argv[1]) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "usage: fake-xenstored SOCKET TREE\n");
		return 2;
	}
	load(argv[2]);
	signal(SIGPIPE, SIG_IGN);
	strcpy(sa.sun_path, argv[1]);
	s = socket(AF_UNIX, SOCK_STREAM, 0);
	if (s < 0 || bind(s, (struct sockaddr *)&sa, sizeof(sa)) || listen(s, 8)) {
		fprintf(stderr, "fake-xenstored: %s: %s\n", argv[1], strerror(errno));
		return 2;
	}
	for (;;) {
		c = accept(s, NULL, NULL);
		if (c < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "fake-xenstored: accept: %s\n", strerror(errno));
			return 2;
		}
		serve(c);
		close(c);
	}
}
