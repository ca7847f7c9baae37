// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * vhd-util scan: one line per image, for tools that keep track of chains.
 * A damaged image gives a scan-error line and the scan goes on; the exit
 * status tells whether any image failed.
 */
#include <errno.h>
#include <glob.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "libvhd.h"
#include "vhd-util.h"

struct image {
	char	*name;		/* as given (or as found, for parents) */
	char	*real;		/* realpath, for matching parents */
	char	*parent;	/* resolved parent path, or NULL */
	bool	raw;		/* a raw parent, added by -a */
	bool	raw_parent;	/* its parent is a raw file */
	int	err;		/* negative errno: a scan-error line */
	char	*errmsg;
	uint64_t capacity, size;
	unsigned hidden, marker;
	bool	printed;
};

struct scan {
	struct image *img;
	size_t n, cap;
	bool fast, verbose, markers;
};

static void usage(void)
{
	printf("usage: vhd-util scan [-m FILTER] [-f] [-c] [-p] [-a] [-v] [-M] [-h] FILES...\n");
}

static char *xstrdup(const char *s)
{
	char *p = strdup(s);

	if (!p) {
		vu_error("out of memory");
		exit(ENOMEM);
	}
	return p;
}

static struct image *add(struct scan *sc, const char *name, bool raw)
{
	char real[PATH_MAX];
	const char *key = realpath(name, real) ? real : name;
	struct image *img;

	for (size_t i = 0; i < sc->n; i++)
		if (!strcmp(sc->img[i].real, key))
			return NULL;
	if (sc->n == sc->cap) {
		size_t cap = sc->cap ? sc->cap * 2 : 16;
		struct image *p = realloc(sc->img, cap * sizeof(*p));

		if (!p) {
			vu_error("out of memory");
			exit(ENOMEM);
		}
		sc->img = p;
		sc->cap = cap;
	}
	img = &sc->img[sc->n++];
	memset(img, 0, sizeof(*img));
	img->name = xstrdup(name);
	img->real = xstrdup(key);
	img->raw = raw;
	return img;
}

static void set_error(struct image *img, int err, const char *msg)
{
	img->err = err < 0 ? err : -err;
	img->errmsg = xstrdup(msg);
	/* One line, and no quote that would end the field early. */
	for (char *p = img->errmsg; *p; p++)
		if (*p == '\n' || *p == '\'')
			*p = *p == '\n' ? ' ' : '"';
}

/* The header's parent name (UTF-16BE), ASCII only: for -f. */
static char *header_parent_name(const vhd_context_t *ctx)
{
	char buf[257];
	int i;

	for (i = 0; i < 256 && ctx->header.prt_name[i]; i++)
		buf[i] = ctx->header.prt_name[i] < 0x80 ?
			 (char)ctx->header.prt_name[i] : '?';
	buf[i] = 0;
	return i ? xstrdup(buf) : NULL;
}

static void scan_one(struct scan *sc, struct image *img)
{
	vhd_context_t ctx;
	struct stat st;
	int err;

	if (stat(img->name, &st)) {
		err = -errno;
		char msg[PATH_MAX + 64];

		snprintf(msg, sizeof(msg), "%s: %s", img->name, strerror(errno));
		set_error(img, err, msg);
		return;
	}
	img->size = (uint64_t)st.st_size;
	err = vhd_open(&ctx, img->name,
		       VHD_OPEN_RDONLY | (img->raw ? VHD_OPEN_RAW : 0));
	if (err) {
		set_error(img, err, vhd_errmsg());
		return;
	}
	if (img->raw) {
		img->capacity = ctx.raw_size;
		img->hidden = 1;
		vhd_close(&ctx);
		return;
	}
	img->capacity = ctx.footer.curr_size;
	img->hidden = ctx.footer.hidden;
	if (ctx.has_batmap)
		img->marker = ctx.batmap_hdr.marker;
	if (ctx.footer.type == VHD_TYPE_DIFF) {
		if (sc->fast) {
			img->parent = header_parent_name(&ctx);
		} else {
			err = vhd_parent_path(&ctx, false, &img->parent);
			/* A missing parent still has a name: the locator's. */
			if (err == -ENOENT)
				err = vhd_parent_path(&ctx, true, &img->parent);
			if (err)
				set_error(img, err, vhd_errmsg());
		}
		if (!img->parent && !img->err)
			set_error(img, -EINVAL, "no parent name");
		img->raw_parent = uuid_is_null(ctx.header.prt_uuid);
	}
	vhd_close(&ctx);
}

static const char *shown(const struct scan *sc, const char *path)
{
	static char buf[PATH_MAX];
	char tmp[PATH_MAX];

	if (sc->verbose)
		return path;
	snprintf(tmp, sizeof(tmp), "%s", path);
	snprintf(buf, sizeof(buf), "%s", basename(tmp));
	return buf;
}

static void print_line(const struct scan *sc, const struct image *img,
		       int depth, bool pretty)
{
	char name[PATH_MAX], parent[PATH_MAX];

	if (img->err) {
		printf("%*svhd=%s scan-error=%d error-message='%s'\n", depth * 3,
		       "", img->name, img->err, img->errmsg);
		return;
	}
	snprintf(name, sizeof(name), "%s",
		 shown(sc, pretty ? img->real : img->name));
	snprintf(parent, sizeof(parent), "%s",
		 img->parent ? shown(sc, img->parent) : "none");
	printf("%*svhd=%s capacity=%llu size=%llu hidden=%u", depth * 3, "",
	       name, (unsigned long long)img->capacity,
	       (unsigned long long)img->size, img->hidden);
	if (sc->markers)
		printf(" marker=%u", img->marker);
	printf(" parent=%s", parent);
	if (pretty && depth == 0 && img->parent)
		printf(" (not found in scan)");
	printf("\n");
}

/* The image whose realpath is @path, or NULL. */
static struct image *find(struct scan *sc, const char *path)
{
	char real[PATH_MAX];
	const char *key = realpath(path, real) ? real : path;

	for (size_t i = 0; i < sc->n; i++)
		if (!strcmp(sc->img[i].real, key))
			return &sc->img[i];
	return NULL;
}

static int cmp_image(const void *a, const void *b)
{
	const struct image *x = *(struct image *const *)a;
	const struct image *y = *(struct image *const *)b;

	if (!x->hidden != !y->hidden)
		return x->hidden ? 1 : -1;
	return strcmp(x->real, y->real);
}

static void print_tree(struct scan *sc, struct image *parent, int depth)
{
	struct image **kids = calloc(sc->n + 1, sizeof(*kids));
	size_t n = 0;

	if (!kids) {
		vu_error("out of memory");
		exit(ENOMEM);
	}
	for (size_t i = 0; i < sc->n; i++) {
		struct image *img = &sc->img[i];
		struct image *p;

		if (img->printed || img->err)
			continue;
		p = img->parent ? find(sc, img->parent) : NULL;
		if (p && p->err)
			p = NULL;
		if (p == img)	/* its own parent: treat as a root */
			p = NULL;
		if (p == parent)
			kids[n++] = img;
	}
	qsort(kids, n, sizeof(*kids), cmp_image);
	for (size_t i = 0; i < n; i++) {
		if (kids[i]->printed)
			continue;
		kids[i]->printed = true;
		print_line(sc, kids[i], depth, true);
		print_tree(sc, kids[i], depth + 1);
	}
	free(kids);
}

int vhd_util_scan(int argc, char **argv)
{
	struct scan sc = { 0 };
	bool pretty = false, parents = false;
	const char *filter = NULL;
	int c, status = 0, failed = 0;

	while ((c = getopt(argc, argv, ":m:fcl:pavMh")) != -1) {
		switch (c) {
		case 'm':
			filter = optarg;
			break;
		case 'f':
			sc.fast = true;
			break;
		case 'c':
			break;	/* we always continue past a failed image */
		case 'l':
			return vu_usage("-l: LVM volume groups are not supported");
		case 'p':
			pretty = true;
			break;
		case 'a':
			parents = true;
			break;
		case 'v':
			sc.verbose = true;
			break;
		case 'M':
			sc.markers = true;
			break;
		case 'h':
			usage();
			return 0;
		default:
			return vu_opt_error(c);
		}
	}
	if (!filter && optind >= argc)
		return vu_usage("no images: give FILES or -m filter");

	for (int i = optind; i < argc; i++)
		add(&sc, argv[i], false);
	if (filter) {
		glob_t g;
		int rc = glob(filter, 0, NULL, &g);

		if (rc && rc != GLOB_NOMATCH) {
			vu_error("glob '%s' failed", filter);
			return EIO;
		}
		for (size_t i = 0; !rc && i < g.gl_pathc; i++)
			add(&sc, g.gl_pathv[i], false);
		globfree(&g);
	}
	/* -a: each image's ancestors join the scan (the list grows). */
	for (size_t i = 0; i < sc.n; i++) {
		char *parent;

		scan_one(&sc, &sc.img[i]);
		if (!parents || sc.img[i].err || !sc.img[i].parent || sc.fast)
			continue;
		parent = xstrdup(sc.img[i].parent);
		if (access(parent, F_OK) == 0)
			add(&sc, parent, sc.img[i].raw_parent);
		free(parent);
	}
	if (pretty) {
		print_tree(&sc, NULL, 0);
		for (size_t i = 0; i < sc.n; i++)
			if (!sc.img[i].printed && !sc.img[i].err)
				print_line(&sc, &sc.img[i], 0, true);	/* loops */
	}
	for (size_t i = 0; i < sc.n; i++) {
		struct image *img = &sc.img[i];

		if (img->err) {
			failed++;
			if (!status)
				status = -img->err < 256 ? -img->err : EIO;
		}
		if (!pretty || img->err)
			print_line(&sc, img, 0, false);
	}
	fflush(stdout);
	if (failed)
		vu_error("%d of %zu images could not be scanned", failed, sc.n);
	for (size_t i = 0; i < sc.n; i++) {
		free(sc.img[i].name);
		free(sc.img[i].real);
		free(sc.img[i].parent);
		free(sc.img[i].errmsg);
	}
	free(sc.img);
	return status;
}
