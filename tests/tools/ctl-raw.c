// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * ctl-raw: send one deliberately malformed control message to a tapdisk
 * and print its reply.
 *
 *   ctl-raw PID KIND
 *
 * KIND is one of: short, empty, magic, version, type, length, long,
 * string, fds, many-fds, minor, flags; or a well-formed request: valid
 * (INFO), fault (FAULT: the next read fails with EIO; refused unless
 * tapdisk runs with fault injection enabled).
 * The socket is $BLKTAP_CONTROL_DIR/ctlPID (default /run/blktap-control).
 * Prints "status=<n> msg=<reason>" and exits 0 when a reply arrived; 1
 * when none did (tapdisk hung up, or nothing within 10 s); 2 on usage.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "tapdisk-control.h"

#define REPLY_TIMEOUT_MS	10000

static struct td_ctl_msg msg, rep;

static void usage(void)
{
	fprintf(stderr, "usage: ctl-raw PID short|empty|magic|version|type|length|long|string|fds|many-fds|minor|flags|valid|fault\n");
	exit(2);
}

static int connect_pid(long pid)
{
	const char *dir = getenv(TD_CTL_DIR_ENV);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (!dir || !*dir)
		dir = TD_CTL_DIR;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%s%ld", dir,
		 TD_CTL_PREFIX, pid);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		fprintf(stderr, "ctl-raw: cannot connect to %s: %s\n",
			sa.sun_path, strerror(errno));
		exit(1);
	}
	return fd;
}

/* Send @len bytes of @buf with @nfds copies of /dev/null attached. */
static void send_raw(int sock, const void *buf, size_t len, int nfds)
{
	union {
		char b[CMSG_SPACE(8 * sizeof(int))];
		struct cmsghdr align;
	} cbuf;
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	int fds[8];

	if (nfds) {
		struct cmsghdr *cm;

		for (int i = 0; i < nfds; i++) {
			fds[i] = open("/dev/null", O_RDWR | O_CLOEXEC);
			if (fds[i] < 0) {
				perror("ctl-raw: /dev/null");
				exit(1);
			}
		}
		memset(&cbuf, 0, sizeof(cbuf));
		mh.msg_control = cbuf.b;
		mh.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(nfds * sizeof(int));
		memcpy(CMSG_DATA(cm), fds, nfds * sizeof(int));
	}
	if (sendmsg(sock, &mh, MSG_NOSIGNAL) < 0) {
		fprintf(stderr, "ctl-raw: send: %s\n", strerror(errno));
		exit(1);
	}
	for (int i = 0; i < nfds; i++)
		close(fds[i]);
}

int main(int argc, char **argv)
{
	static char big[sizeof(struct td_ctl_msg) + 512];
	struct pollfd pfd;
	const char *kind;
	size_t len;
	int sock, nfds = 0;
	ssize_t n;
	long pid;
	char *end;

	if (argc != 3)
		usage();
	pid = strtol(argv[1], &end, 10);
	if (*end || pid <= 0)
		usage();
	kind = argv[2];

	msg.magic = TD_CTL_MAGIC;
	msg.version = TD_CTL_VERSION;
	msg.type = TD_CTL_INFO;
	msg.cookie = 0x1234;
	msg.minor = 0;
	len = TD_CTL_HDR_SIZE;
	if (!strcmp(kind, "short")) {
		len = 10;
	} else if (!strcmp(kind, "empty")) {
		len = 0;
	} else if (!strcmp(kind, "magic")) {
		msg.magic = 0xdeadbeef;
	} else if (!strcmp(kind, "version")) {
		msg.version = TD_CTL_VERSION + 1;
	} else if (!strcmp(kind, "type")) {
		msg.type = 77;
	} else if (!strcmp(kind, "length")) {
		/* An OPEN cut short, header and datagram agreeing. */
		msg.type = TD_CTL_OPEN;
		len = TD_CTL_HDR_SIZE + 16;
	} else if (!strcmp(kind, "long")) {
		len = 0;	/* sent below: larger than any request */
	} else if (!strcmp(kind, "string")) {
		msg.type = TD_CTL_OPEN;
		len = td_ctl_request_size(TD_CTL_OPEN);
		memset(msg.body.open.params, 'x', sizeof(msg.body.open.params));
	} else if (!strcmp(kind, "fds")) {
		msg.type = TD_CTL_DETACH;
		nfds = 2;
	} else if (!strcmp(kind, "many-fds")) {
		msg.type = TD_CTL_ATTACH;
		nfds = 7;
	} else if (!strcmp(kind, "minor")) {
		msg.type = TD_CTL_PAUSE;
		msg.minor = -5;
	} else if (!strcmp(kind, "flags")) {
		msg.type = TD_CTL_DETACH;
		msg.flags = 0x40;
	} else if (!strcmp(kind, "valid")) {
		msg.minor = -1;
	} else if (!strcmp(kind, "fault")) {
		msg.type = TD_CTL_FAULT;
		len = td_ctl_request_size(TD_CTL_FAULT);
		msg.body.fault.count = 1;
		msg.body.fault.err = EIO;
		msg.body.fault.ops = TD_FAULT_READ;
	} else {
		usage();
	}
	msg.length = (uint32_t)len;

	sock = connect_pid(pid);
	if (!strcmp(kind, "long")) {
		uint32_t blen = sizeof(big);

		memcpy(big, &msg, TD_CTL_HDR_SIZE);
		memcpy(big + offsetof(struct td_ctl_msg, length), &blen,
		       sizeof(blen));
		send_raw(sock, big, sizeof(big), 0);
	} else {
		send_raw(sock, &msg, len, nfds);
	}

	pfd.fd = sock;
	pfd.events = POLLIN;
	if (poll(&pfd, 1, REPLY_TIMEOUT_MS) != 1) {
		fprintf(stderr, "ctl-raw: no reply within %d ms\n",
			REPLY_TIMEOUT_MS);
		return 1;
	}
	n = recv(sock, &rep, sizeof(rep), 0);
	if (n <= 0) {
		fprintf(stderr, "ctl-raw: no reply (%s)\n",
			n < 0 ? strerror(errno) : "connection closed");
		return 1;
	}
	if ((size_t)n < TD_CTL_HDR_SIZE || rep.magic != TD_CTL_MAGIC ||
	    rep.length != (size_t)n) {
		fprintf(stderr, "ctl-raw: malformed reply of %zd bytes\n", n);
		return 1;
	}
	printf("status=%d msg=%.*s\n", (int)rep.status,
	       rep.status < 0 ? TD_ERRMSG_MAX : 0, rep.body.error.msg);
	close(sock);
	return 0;
}
