/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What the qcow tools share on top of tapdisk's codec (qcow-format.h):
 * synchronous reading of an image with its backing chain, writing a new
 * image table by table, progress lines and error messages.
 */
#ifndef QCOW_IMAGE_H
#define QCOW_IMAGE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "qcow-format.h"

/* Every tool moves data in pieces of this size at most. */
#define QIO_BYTES	(4u << 20)

/* ---- errors: one line, "PROG: message" ---- */
void qerr_set(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *qerr(void);

/* ---- reading ---- */
struct qimg;

/* Open @path (qcow) read-only with its backing chain.  0 or -errno. */
int qimg_open(const char *path, struct qimg **out);
uint64_t qimg_sectors(const struct qimg *q);
/* @n sectors from @sec, backing files and zeros included.  0 or -errno. */
int qimg_read(struct qimg *q, uint64_t sec, uint32_t n, void *buf);
void qimg_close(struct qimg *q);

/* ---- writing a new image ---- */
#define QB_OPTIMISED	0x1	/* min_cluster_alloc = L2 size */
#define QB_SPARSE	0x2	/* the extension's "sparse file" flag */

struct qbuild {
	int		fd;
	char		*path;
	struct qcow_header h;
	struct qcow_geom g;
	uint8_t		*l1;		/* big-endian */
	uint8_t		*l2;		/* one table */
	uint64_t	end;		/* next free byte */
};

/*
 * Create @path: header with blktap's extension, the backing name when
 * @backing (stored as an absolute path), an empty L1 table.  Clusters of
 * 4 KiB (512 bytes over a backing file, as QEMU and blktap do).
 */
int qbuild_create(struct qbuild *b, const char *path, uint64_t size,
		  const char *backing, unsigned flags);
/*
 * Table @k: its clusters (or only those with @present[c] set) follow
 * the table on disk, in order; their data from @data (the table's whole
 * range, l2_secs sectors) or, without @data, left unwritten: allocated
 * with fallocate when @alloc, else holes.
 */
int qbuild_table(struct qbuild *b, uint64_t k, const uint8_t *data,
		 const bool *present, bool alloc);
/* Write the L1 table and its checksum, sync, close.  0 or -errno. */
int qbuild_finish(struct qbuild *b);
/* Close and remove a half-built image. */
void qbuild_abort(struct qbuild *b);

/* ---- progress on stderr (-p) ---- */
struct qprogress {
	bool		on;
	bool		started;
	uint64_t	total;
	int		last;
};

void qprogress_step(struct qprogress *p, uint64_t done);
void qprogress_done(struct qprogress *p);
void qprogress_abort(struct qprogress *p);

bool qcow_all_zero(const uint8_t *buf, size_t len);

/*
 * main() of a converter, "PROG [-h] [-p] OUT IN" (@operands names OUT
 * and IN for the usage error): -h prints @usage on stdout; otherwise
 * @convert(OUT, IN, -p given), 0 or -errno with qerr() set.  Returns the
 * exit status: 0, EINVAL for bad usage, else the errno (the error on
 * stderr as "PROG: message").
 */
int qconvert_main(int argc, char **argv, const char *prog,
		  const char *operands, void (*usage)(FILE *out),
		  int (*convert)(const char *out, const char *in,
				 bool progress));

#endif
