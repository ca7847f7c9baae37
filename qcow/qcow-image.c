// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The qcow tools' shared part: reading an image and its backing chain
 * synchronously, building a new image, progress lines.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/fs.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "qcow-image.h"

#define SEC	512u

static char errbuf[PATH_MAX + 256];

void qerr_set(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(errbuf, sizeof(errbuf), fmt, ap);
	va_end(ap);
}

const char *qerr(void)
{
	return errbuf;
}

bool qcow_all_zero(const uint8_t *buf, size_t len)
{
	while (len && ((uintptr_t)buf & 7)) {
		if (*buf++)
			return false;
		len--;
	}
	for (; len >= 8; len -= 8, buf += 8)
		if (*(const uint64_t *)(const void *)buf)
			return false;
	while (len--)
		if (*buf++)
			return false;
	return true;
}

/* ---- reading ---- */

struct qimg {
	char		path[PATH_MAX];
	int		fd;
	bool		raw;		/* a raw backing file */
	uint64_t	raw_bytes;
	struct qcow_header h;
	struct qcow_geom g;
	uint64_t	file_size;
	uint64_t	*l1;
	uint8_t		*l2;
	uint64_t	l2_k;		/* table in l2, or UINT64_MAX */
	uint8_t		*cbuf, *obuf;
	z_stream	zs;
	bool		zs_ready;
	struct qimg	*backing;
};

uint64_t qimg_sectors(const struct qimg *q)
{
	return q->raw ? q->raw_bytes / SEC : q->g.sectors;
}

void qimg_close(struct qimg *q)
{
	while (q) {
		struct qimg *b = q->backing;

		if (q->zs_ready)
			inflateEnd(&q->zs);
		if (q->fd >= 0)
			close(q->fd);
		free(q->l1);
		free(q->l2);
		free(q->cbuf);
		free(q->obuf);
		free(q);
		q = b;
	}
}

static int open_one(const char *path, struct qimg **out, int depth);

static int open_backing(struct qimg *q, const char *name, int depth)
{
	char path[PATH_MAX], type[16], why[PATH_MAX + 64];
	struct qimg *b;
	int err;

	qcow_backing_path(q->path, name, path, sizeof(path));
	err = qcow_probe(path, type, sizeof(type), why, sizeof(why));
	if (err) {
		qerr_set("%s: backing file: %s", q->path, why);
		return err;
	}
	if (!strcmp(type, "qcow"))
		return open_one(path, &q->backing, depth + 1);
	if (strcmp(type, "aio")) {
		qerr_set("%s: backing file %s is a %s image: only qcow and raw "
			 "backing files are supported", q->path, path, type);
		return -EOPNOTSUPP;
	}
	b = calloc(1, sizeof(*b));
	if (!b) {
		qerr_set("out of memory");
		return -ENOMEM;
	}
	snprintf(b->path, sizeof(b->path), "%s", path);
	b->raw = true;
	b->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (b->fd < 0) {
		err = -errno;
		qerr_set("%s: %s", path, strerror(errno));
		free(b);
		return err;
	}
	{
		struct stat st;

		if (fstat(b->fd, &st) == 0 && S_ISBLK(st.st_mode)) {
			uint64_t bytes = 0;

			if (ioctl(b->fd, BLKGETSIZE64, &bytes) == 0)
				b->raw_bytes = bytes;
		} else if (fstat(b->fd, &st) == 0) {
			b->raw_bytes = (uint64_t)st.st_size;
		}
	}
	q->backing = b;
	return 0;
}

static int open_one(const char *path, struct qimg **out, int depth)
{
	char name[QCOW_MAX_BACKING_LEN + 1], why[300];
	struct qimg *q;
	uint8_t *l1;
	int err;

	if (depth >= QCOW_MAX_CHAIN) {
		qerr_set("%s: backing chain too deep", path);
		return -ELOOP;
	}
	q = calloc(1, sizeof(*q));
	if (!q) {
		qerr_set("out of memory");
		return -ENOMEM;
	}
	q->l2_k = UINT64_MAX;
	snprintf(q->path, sizeof(q->path), "%s", path);
	q->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (q->fd < 0) {
		err = -errno;
		qerr_set("%s: %s", path, strerror(errno));
		goto fail;
	}
	err = qcow_read_meta(q->fd, &q->h, &q->g, &q->file_size, name,
			     sizeof(name), why, sizeof(why));
	if (err) {
		qerr_set("%s: %s", path, why);
		goto fail;
	}
	l1 = malloc(q->g.l1_bytes ? q->g.l1_bytes : 8);
	q->l1 = calloc(q->g.l1_size ? q->g.l1_size : 1, 8);
	q->l2 = malloc(q->g.l2_bytes);
	q->cbuf = malloc(q->g.cluster_size);
	q->obuf = malloc(q->g.cluster_size);
	if (!l1 || !q->l1 || !q->l2 || !q->cbuf || !q->obuf) {
		free(l1);
		err = -ENOMEM;
		qerr_set("out of memory");
		goto fail;
	}
	err = qcow_pread(q->fd, l1, q->g.l1_bytes, q->h.l1_off);
	if (err) {
		free(l1);
		qerr_set("%s: cannot read the L1 table: %s", path,
			 strerror(-err));
		goto fail;
	}
	qcow_l1_to_be(&q->h, &q->g, l1);
	err = qcow_l1_decode(&q->g, l1, q->file_size, q->l1, why, sizeof(why));
	free(l1);
	if (err) {
		qerr_set("%s: %s", path, why);
		goto fail;
	}
	if (inflateInit2(&q->zs, -15) != Z_OK) {
		err = -ENOMEM;
		qerr_set("out of memory");
		goto fail;
	}
	q->zs_ready = true;
	if (name[0]) {
		err = open_backing(q, name, depth);
		if (err)
			goto fail;
	}
	*out = q;
	return 0;
fail:
	qimg_close(q);
	return err;
}

int qimg_open(const char *path, struct qimg **out)
{
	char why[PATH_MAX + 100];
	int err = qcow_chain_check(path, why, sizeof(why));

	if (err) {
		qerr_set("%s: %s", path, why);
		return err;
	}
	return open_one(path, out, 0);
}

static int load_l2(struct qimg *q, uint64_t k)
{
	char why[200];
	int err;

	if (q->l2_k == k)
		return 0;
	q->l2_k = UINT64_MAX;
	err = qcow_pread(q->fd, q->l2, q->g.l2_bytes, q->l1[k]);
	if (err) {
		qerr_set("%s: cannot read L2 table %" PRIu64 ": %s", q->path, k,
			 strerror(-err));
		return err;
	}
	for (uint32_t c = 0; c < q->g.l2_size; c++) {
		uint64_t e = qcow_get_be64(q->l2 + (size_t)c * 8);

		if (e && qcow_l2_entry_check(&q->g, q->h.cluster_bits, e,
					     q->file_size, why, sizeof(why))) {
			qerr_set("%s: L2 table %" PRIu64 " entry %u: %s",
				 q->path, k, c, why);
			return -EINVAL;
		}
	}
	q->l2_k = k;
	return 0;
}

static int read_raw(struct qimg *q, uint64_t sec, uint32_t n, uint8_t *buf)
{
	uint64_t off = sec * SEC, len = (uint64_t)n * SEC;
	int err;

	memset(buf, 0, len);
	if (off >= q->raw_bytes)
		return 0;
	if (len > q->raw_bytes - off)
		len = q->raw_bytes - off;
	err = qcow_pread(q->fd, buf, len, off);
	if (err)
		qerr_set("%s: read: %s", q->path, strerror(-err));
	return err;
}

int qimg_read(struct qimg *q, uint64_t sec, uint32_t n, void *out)
{
	uint8_t *buf = out;
	uint32_t cs = 0;

	if (q->raw)
		return read_raw(q, sec, n, buf);
	cs = q->g.cluster_secs;
	while (n) {
		uint32_t within = (uint32_t)(sec % cs), run = cs - within;
		uint64_t k = sec / q->g.l2_secs, e = 0;
		int err;

		if (run > n)
			run = n;
		if (sec >= q->g.sectors) {
			memset(buf, 0, (size_t)n * SEC);
			return 0;
		}
		if (q->l1[k]) {
			err = load_l2(q, k);
			if (err)
				return err;
			e = qcow_get_be64(q->l2 + sec / cs % q->g.l2_size * 8);
		}
		if (!e) {
			if (q->backing)
				err = qimg_read(q->backing, sec, run, buf);
			else
				err = (memset(buf, 0, (size_t)run * SEC), 0);
		} else if (qcow_is_compressed(e)) {
			uint32_t len = qcow_csize(e, q->h.cluster_bits);

			err = qcow_pread(q->fd, q->cbuf, len,
				     qcow_coff(e, q->h.cluster_bits));
			if (!err && qcow_inflate(&q->zs, q->cbuf, len, q->obuf,
						 q->g.cluster_size)) {
				qerr_set("%s: compressed cluster at offset %"
					 PRIu64 " is corrupt", q->path,
					 qcow_coff(e, q->h.cluster_bits));
				return -EIO;
			}
			if (!err)
				memcpy(buf, q->obuf + (size_t)within * SEC,
				       (size_t)run * SEC);
		} else {
			uint32_t c = (uint32_t)(sec / cs % q->g.l2_size);

			/* Following clusters that follow on disk: one read. */
			while (run < n && c + 1 < q->g.l2_size &&
			       (uint64_t)run * SEC < QIO_BYTES &&
			       qcow_get_be64(q->l2 + (size_t)(c + 1) * 8) ==
			       qcow_get_be64(q->l2 + (size_t)c * 8) +
			       q->g.cluster_size) {
				c++;
				run += n - run < cs ? n - run : cs;
			}
			err = qcow_pread(q->fd, buf, (size_t)run * SEC,
				     e + (uint64_t)within * SEC);
		}
		if (err) {
			if (err != -EINVAL && err != -EIO)
				qerr_set("%s: read: %s", q->path,
					 strerror(-err));
			return err;
		}
		buf += (size_t)run * SEC;
		sec += run;
		n -= run;
	}
	return 0;
}

/* ---- building ---- */

int qbuild_create(struct qbuild *b, const char *path, uint64_t size,
		  const char *backing, unsigned flags)
{
	uint8_t head[QCOW_HEAD_BYTES];
	char abs[PATH_MAX], why[200];
	size_t blen = 0;
	uint64_t hdr_end;
	int err;

	memset(b, 0, sizeof(*b));
	b->fd = -1;
	if (backing) {
		if (!realpath(backing, abs)) {
			err = -errno;
			qerr_set("%s: %s", backing, strerror(errno));
			return err;
		}
		blen = strlen(abs);
		if (blen > QCOW_MAX_BACKING_LEN) {
			qerr_set("%s: backing file path too long", backing);
			return -ENAMETOOLONG;
		}
	}
	b->h.magic = QCOW_MAGIC;
	b->h.version = QCOW_VERSION;
	b->h.mtime = (uint32_t)time(NULL);
	b->h.size = size;
	b->h.cluster_bits = backing ? 9 : 12;
	b->h.l2_bits = backing ? 12 : 9;
	b->h.crypt = QCOW_CRYPT_NONE;
	b->h.has_ext = true;
	b->h.flags = QCOW_EXT_L1_BE | (flags & QB_SPARSE ? QCOW_EXT_SPARSE : 0);
	b->h.min_cluster_alloc = flags & QB_OPTIMISED ?
				 1u << b->h.l2_bits : 1;
	hdr_end = QCOW_HEAD_BYTES;
	if (backing) {
		b->h.backing_off = hdr_end;
		b->h.backing_len = (uint32_t)blen;
		hdr_end += blen;
	}
	/* The extension is only trusted with the L1 table page aligned. */
	b->h.l1_off = (hdr_end + 4095) / 4096 * 4096;
	err = qcow_header_check(&b->h, UINT64_MAX / 2, &b->g, why, sizeof(why));
	if (err) {
		qerr_set("%s: %s", path, why);
		return err;
	}
	b->l1 = calloc(b->g.l1_size ? b->g.l1_size : 1, 8);
	b->l2 = malloc(b->g.l2_bytes);
	b->path = strdup(path);
	if (!b->l1 || !b->l2 || !b->path) {
		qbuild_abort(b);
		qerr_set("out of memory");
		return -ENOMEM;
	}
	b->end = (b->h.l1_off + b->g.l1_bytes + 4095) / 4096 * 4096;
	b->fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (b->fd < 0) {
		err = -errno;
		qerr_set("%s: %s", path, strerror(errno));
		free(b->path);
		b->path = NULL;
		qbuild_abort(b);
		return err;
	}
	qcow_header_encode(&b->h, head);
	err = qcow_pwrite(b->fd, head, sizeof(head), 0);
	if (!err && backing)
		err = qcow_pwrite(b->fd, abs, blen, b->h.backing_off);
	if (!err && ftruncate(b->fd, (off_t)b->end) < 0)
		err = -errno;
	if (err) {
		qerr_set("%s: write: %s", path, strerror(-err));
		qbuild_abort(b);
		return err;
	}
	return 0;
}

int qbuild_table(struct qbuild *b, uint64_t k, const uint8_t *data,
		 const bool *present, bool alloc)
{
	uint32_t cs = b->g.cluster_size;
	uint64_t table = (b->end + cs - 1) / cs * cs, at;
	int err = 0;

	if (table % 4096)
		table = (table + 4095) / 4096 * 4096;
	at = (table + b->g.l2_bytes + cs - 1) / cs * cs;
	memset(b->l2, 0, b->g.l2_bytes);
	for (uint32_t c = 0; c < b->g.l2_size; c++) {
		if (present && !present[c])
			continue;
		qcow_put_be64(b->l2 + (size_t)c * 8, at);
		at += cs;
	}
	err = qcow_pwrite(b->fd, b->l2, b->g.l2_bytes, table);
	/* Runs of present clusters are contiguous on disk: one write each. */
	for (uint32_t c = 0; !err && data && c < b->g.l2_size;) {
		uint32_t e = c;

		if (present && !present[c]) {
			c++;
			continue;
		}
		while (e < b->g.l2_size && (!present || present[e]))
			e++;
		err = qcow_pwrite(b->fd, data + (size_t)c * cs,
			      (size_t)(e - c) * cs,
			      qcow_get_be64(b->l2 + (size_t)c * 8));
		c = e;
	}
	if (!err && alloc && at > table + b->g.l2_bytes) {
		if (fallocate(b->fd, 0, (off_t)table,
			      (off_t)(at - table)) < 0 && errno != EOPNOTSUPP)
			err = -errno;
	}
	if (!err && at > b->end && ftruncate(b->fd, (off_t)at) < 0)
		err = -errno;
	if (err) {
		qerr_set("%s: write: %s", b->path, strerror(-err));
		return err;
	}
	qcow_put_be64(b->l1 + k * 8, table);
	b->end = at;
	return 0;
}

int qbuild_finish(struct qbuild *b)
{
	uint8_t head[QCOW_HEAD_BYTES];
	int err;

	b->h.cksum = qcow_l1_cksum(b->l1, b->g.l1_bytes);
	qcow_header_encode(&b->h, head);
	err = qcow_pwrite(b->fd, b->l1, b->g.l1_bytes, b->h.l1_off);
	if (!err)
		err = qcow_pwrite(b->fd, head, sizeof(head), 0);
	if (!err && fsync(b->fd) < 0)
		err = -errno;
	if (!err && close(b->fd) < 0)
		err = -errno;
	else if (err)
		close(b->fd);
	b->fd = -1;
	if (err)
		qerr_set("%s: write: %s", b->path, strerror(-err));
	free(b->l1);
	free(b->l2);
	free(b->path);
	memset(b, 0, sizeof(*b));
	b->fd = -1;
	return err;
}

void qbuild_abort(struct qbuild *b)
{
	if (b->fd >= 0) {
		close(b->fd);
		if (b->path)
			unlink(b->path);
	}
	free(b->l1);
	free(b->l2);
	free(b->path);
	memset(b, 0, sizeof(*b));
	b->fd = -1;
}

/* ---- progress ---- */

void qprogress_step(struct qprogress *p, uint64_t done)
{
	int pct;

	if (!p->on)
		return;
	pct = p->total ? (int)(100.0 * (double)done / (double)p->total) : 100;
	if (p->started && pct == p->last)
		return;
	p->last = pct;
	p->started = true;
	fprintf(stderr, "\r%3d%%", pct);
	fflush(stderr);
}

void qprogress_done(struct qprogress *p)
{
	if (p->on)
		fprintf(stderr, "\r100%%\n");
	p->started = false;
}

void qprogress_abort(struct qprogress *p)
{
	if (p->on && p->started)
		fputc('\n', stderr);
	p->started = false;
}

/* ---- the converters' main ---- */

int qconvert_main(int argc, char **argv, const char *prog,
		  const char *operands, void (*usage)(FILE *out),
		  int (*convert)(const char *out, const char *in,
				 bool progress))
{
	bool progress = false;
	int c, err;

	opterr = 0;
	while ((c = getopt(argc, argv, "hp")) != -1) {
		switch (c) {
		case 'h':
			usage(stdout);
			return 0;
		case 'p':
			progress = true;
			break;
		default:
			fprintf(stderr, "%s: unknown option -%c (-h for help)\n",
				prog, optopt);
			return EINVAL;
		}
	}
	if (argc - optind != 2) {
		fprintf(stderr, "%s: expected %s (-h for help)\n", prog,
			operands);
		return EINVAL;
	}
	err = convert(argv[optind], argv[optind + 1], progress);
	if (err) {
		fprintf(stderr, "%s: %s\n", prog, qerr());
		return -err;
	}
	return 0;
}
