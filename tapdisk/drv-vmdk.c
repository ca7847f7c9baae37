// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The VMDK driver: monolithicFlat (a text descriptor and one flat extent)
 * and monolithicSparse (one hosted sparse extent, magic "KDMV", with the
 * descriptor embedded), read-write.  Every other variant is refused with
 * a message naming it.
 *
 * Sparse extents: the grain directory (GD) points at grain tables (GTs),
 * whose entries (GTEs) give the sector of each grain; 0 is a grain never
 * written (zeros), 1 a zeroed grain when the header says so.  A redundant
 * GD with its own GTs is kept identical.  Every GT is read at open and
 * kept in memory; tables missing from the GD are created at open, so that
 * writing only ever changes GTEs.
 *
 * Allocating a grain, in order, which is what makes a crash harmless:
 *   1. the whole grain (the write's data, zeros around it) at the end of
 *      the file, with FUA;
 *   2. the GT sector holding its GTE, with FUA;
 *   3. the same sector of the redundant GT, with FUA;
 * and only then does the in-memory GT change and the write complete.  So
 * a GTE never points at data not on disk, and an acknowledged write is
 * stable however it was made.  A GT sector has at most one write in
 * flight: allocations that reach it meanwhile wait, and go together in
 * the next write (as "riders").  Writes to a grain being allocated wait
 * for it; later writes to allocated grains go straight to their place.
 *
 * Waiting for tio entries: an allocation that cannot get one parks its
 * owner treq with the core (td_treq_wait_tio) as the "vehicle"; when the
 * core resumes it, queue_write() sees drv_state and retries the step.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "driver.h"
#include "drv-util.h"
#include "log.h"
#include "tio.h"
#include "treq-list.h"

#define SEC		512u
#define SEC_SHIFT	9
#define GTE_PER_SEC	(SEC / 4)

#define SPARSE_MAGIC		0x564d444bu	/* "KDMV" little-endian */
#define COWD_MAGIC		0x44574f43u	/* "COWD": ESX vmfsSparse */
#define FLAG_NL_TEST		(1u << 0)
#define FLAG_RGD		(1u << 1)
#define FLAG_ZERO_GRAIN		(1u << 2)
#define FLAG_COMPRESSED		(1u << 16)
#define FLAG_MARKERS		(1u << 17)
#define GD_AT_END		UINT64_MAX
#define GTE_ZERO		1u
#define DESC_MAX		(64u << 10)
#define GT_MEM_MAX		(512ull << 20)
#define SLOT_MEM		(16u << 20)
#define MAX_SLOTS		32u
#define MIN_SLOTS		4u
/* New grains start on 4 KiB, for O_DIRECT. */
#define ALLOC_ALIGN		8u

/* drv_state of an owner treq parked for a tio entry. */
#define DS_ALLOC	0x1000000u

enum { S_DATA, S_GT, S_RGT };
enum { R_NONE, R_WRITER, R_RIDER, R_WAIT };

struct slot {
	struct vmdk_priv *p;
	uint32_t	idx;
	bool		used;
	bool		inflight;
	uint8_t		step;
	uint8_t		role;
	uint32_t	writer;		/* R_RIDER: the writing slot */
	uint64_t	grain;
	uint64_t	off;		/* sectors */
	struct td_treq	*owner;		/* its data is in buf; holds a get */
	struct tlist	waiters;	/* other writes to the grain */
	uint8_t		*buf;		/* one grain */
	uint8_t		*sec;		/* one GT sector */
};

struct vmdk_priv {
	struct tio_file	file;		/* the sparse extent or flat extent */
	bool		file_open;
	bool		rdwr;
	bool		sparse;
	char		path[PATH_MAX];	/* the image named by the params */
	char		extent[PATH_MAX];
	uint64_t	sectors;
	uint64_t	flat_off;	/* bytes into the flat extent */
	unsigned	inflight;

	/* Sparse. */
	uint32_t	grain;		/* sectors */
	uint32_t	gtes;		/* entries per GT */
	uint32_t	gt_secs;
	uint32_t	nr_gts;
	uint64_t	overhead;
	bool		zero_grain;
	uint32_t	*gd, *rgd;	/* GT sectors; rgd NULL if none */
	uint32_t	*gt;		/* committed GTEs, nr_gts * gtes */
	uint64_t	next_free;	/* sectors */

	uint32_t	nr_slots;
	struct slot	*slots;
	uint8_t		*slot_mem;
	uint8_t		*sec_mem;
	struct tlist	slot_waiters;
};

/* ---- little helpers ---- */

static uint32_t le32(const uint8_t *b)
{
	return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
	       (uint32_t)b[3] << 24;
}

static uint64_t le64(const uint8_t *b)
{
	return (uint64_t)le32(b) | (uint64_t)le32(b + 4) << 32;
}

static void put_le32(uint8_t *b, uint32_t v)
{
	b[0] = (uint8_t)v;
	b[1] = (uint8_t)(v >> 8);
	b[2] = (uint8_t)(v >> 16);
	b[3] = (uint8_t)(v >> 24);
}

static int pread_full(int fd, void *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t r = pread(fd, (char *)buf + done, len - done,
				  (off_t)(off + done));

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -ENODATA;
		done += (size_t)r;
	}
	return 0;
}

static int pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t r = pwrite(fd, (const char *)buf + done, len - done,
				   (off_t)(off + done));

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r < 0 ? -errno : -EIO;
		done += (size_t)r;
	}
	return 0;
}

/* ---- the descriptor ---- */

#define MAX_EXTENTS	4

struct desc_extent {
	char		access[16];
	uint64_t	sectors;
	char		type[24];
	char		file[PATH_MAX];
	uint64_t	offset;
};

struct desc {
	char		create_type[64];
	char		parent_cid[32];
	bool		has_parent_hint;
	unsigned	nr_extents;
	struct desc_extent ext[MAX_EXTENTS];
};

static char *trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

/* Copy a value, without the quotes around it if any. */
static void unquote(char *dst, size_t len, const char *v)
{
	size_t n = strlen(v);

	if (n >= 2 && v[0] == '"' && v[n - 1] == '"') {
		v++;
		n -= 2;
	}
	if (n >= len)
		n = len - 1;
	memcpy(dst, v, n);
	dst[n] = '\0';
}

/* "RW 204800 SPARSE "file.vmdk" [offset]" */
static int parse_extent(const char *file, char *line, struct desc_extent *x)
{
	char *sp = NULL, *acc, *size, *type, *rest, *end, *q;

	acc = strtok_r(line, " \t", &sp);
	size = strtok_r(NULL, " \t", &sp);
	type = strtok_r(NULL, " \t", &sp);
	rest = sp ? trim(sp) : NULL;
	if (!acc || !size || !type)
		return td_fail(EINVAL, "%s: extent line '%s' is incomplete",
			       file, acc ? acc : "");
	snprintf(x->access, sizeof(x->access), "%s", acc);
	snprintf(x->type, sizeof(x->type), "%s", type);
	errno = 0;
	x->sectors = strtoull(size, &end, 10);
	if (errno || *end || !x->sectors)
		return td_fail(EINVAL, "%s: extent size '%s' is not a number of "
			       "sectors", file, size);
	x->file[0] = '\0';
	x->offset = 0;
	if (!rest || !*rest)
		return 0;
	q = *rest == '"' ? strchr(rest + 1, '"') : NULL;
	if (!q)
		return td_fail(EINVAL, "%s: extent file name %s is not quoted",
			       file, rest);
	*q = '\0';
	snprintf(x->file, sizeof(x->file), "%s", rest + 1);
	rest = trim(q + 1);
	if (*rest) {
		errno = 0;
		x->offset = strtoull(rest, &end, 10);
		if (errno || *end)
			return td_fail(EINVAL, "%s: extent offset '%s' is not a "
				       "number", file, rest);
	}
	return 0;
}

static int parse_desc(const char *file, char *text, struct desc *d)
{
	char *sp = NULL, *line;

	memset(d, 0, sizeof(*d));
	snprintf(d->parent_cid, sizeof(d->parent_cid), "ffffffff");
	for (line = strtok_r(text, "\n", &sp); line;
	     line = strtok_r(NULL, "\n", &sp)) {
		char *l = trim(line), *eq;
		int err;

		if (!*l || *l == '#')
			continue;
		if (!strncmp(l, "RW ", 3) || !strncmp(l, "RDONLY ", 7) ||
		    !strncmp(l, "NOACCESS ", 9) || !strncmp(l, "RW\t", 3)) {
			if (d->nr_extents < MAX_EXTENTS) {
				err = parse_extent(file, l,
						   &d->ext[d->nr_extents]);
				if (err)
					return err;
			}
			d->nr_extents++;
			continue;
		}
		eq = strchr(l, '=');
		if (!eq)
			continue;	/* tolerated, as other readers do */
		*eq = '\0';
		l = trim(l);
		eq = trim(eq + 1);
		if (!strcmp(l, "createType"))
			unquote(d->create_type, sizeof(d->create_type), eq);
		else if (!strcmp(l, "parentCID"))
			unquote(d->parent_cid, sizeof(d->parent_cid), eq);
		else if (!strcmp(l, "parentFileNameHint"))
			d->has_parent_hint = true;
	}
	if (!d->create_type[0])
		return td_fail(EINVAL, "%s: the descriptor has no createType",
			       file);
	return 0;
}

/*
 * The checks both layouts share: the variant, no parent, one extent of
 * the expected type, access rights that allow how we open it.
 */
static int check_desc(const char *file, const struct desc *d,
		      const char *want_type, const char *want_ext, bool ro)
{
	const struct desc_extent *x = &d->ext[0];

	if (strcmp(d->create_type, want_type)) {
		if (!strcmp(d->create_type, "monolithicSparse") ||
		    !strcmp(d->create_type, "monolithicFlat"))
			return td_fail(EINVAL, "%s: createType %s does not "
				       "match its layout (expected %s)", file,
				       d->create_type, want_type);
		return td_fail(EOPNOTSUPP, "%s: VMDK variant '%s' is not "
			       "supported (only monolithicSparse and "
			       "monolithicFlat)", file, d->create_type);
	}
	if (strcasecmp(d->parent_cid, "ffffffff") || d->has_parent_hint)
		return td_fail(EOPNOTSUPP, "%s: a delta VMDK with a parent "
			       "(parentCID %s) is not supported", file,
			       d->parent_cid);
	if (d->nr_extents != 1)
		return td_fail(EINVAL, "%s: %s has %u extents; it must have "
			       "exactly one", file, want_type, d->nr_extents);
	if (strcmp(x->type, want_ext))
		return td_fail(EOPNOTSUPP, "%s: extent type %s is not "
			       "supported in %s (expected %s)", file, x->type,
			       want_type, want_ext);
	if (!strcmp(x->access, "NOACCESS"))
		return td_fail(EACCES, "%s: the extent is NOACCESS", file);
	if (strcmp(x->access, "RW") && strcmp(x->access, "RDONLY"))
		return td_fail(EINVAL, "%s: unknown extent access '%s'", file,
			       x->access);
	if (!ro && !strcmp(x->access, "RDONLY"))
		return td_fail(EROFS, "%s: the extent is RDONLY; open the "
			       "image read-only", file);
	return 0;
}

/* ---- open: flat ---- */

static int open_flat(struct td_image *img, char *text, unsigned flags)
{
	struct vmdk_priv *p = img->priv;
	bool ro = flags & TD_IMAGE_RDONLY;
	const struct desc_extent *x;
	struct desc d;
	struct stat st;
	int err;

	err = parse_desc(p->path, text, &d);
	if (err)
		return err;
	err = check_desc(p->path, &d, "monolithicFlat", "FLAT", ro);
	if (err)
		return err;
	x = &d.ext[0];
	if (!x->file[0])
		return td_fail(EINVAL, "%s: the FLAT extent names no file",
			       p->path);
	if (x->file[0] == '/') {
		snprintf(p->extent, sizeof(p->extent), "%s", x->file);
	} else {
		const char *slash = strrchr(p->path, '/');
		int dlen = slash ? (int)(slash - p->path + 1) : 0;

		if (snprintf(p->extent, sizeof(p->extent), "%.*s%s", dlen,
			     p->path, x->file) >= (int)sizeof(p->extent))
			return td_fail(ENAMETOOLONG, "%s: extent path too long",
				       p->path);
	}
	if (x->offset > UINT64_MAX / SEC - x->sectors)
		return td_fail(EINVAL, "%s: extent offset too large", p->path);
	err = tio_file_open(&p->file, p->extent, ro,
			    !(flags & TD_IMAGE_NO_DIRECT));
	if (err)
		return err;
	p->file_open = true;
	if (fstat(p->file.fd_buffered, &st) < 0)
		return td_fail(errno, "%s: %s", p->extent, strerror(errno));
	if (S_ISREG(st.st_mode) &&
	    (uint64_t)st.st_size < (x->offset + x->sectors) * SEC)
		return td_fail(EINVAL, "%s: flat extent %s has %jd bytes; the "
			       "descriptor needs %" PRIu64, p->path, p->extent,
			       (intmax_t)st.st_size,
			       (x->offset + x->sectors) * SEC);
	p->flat_off = x->offset * SEC;
	p->sectors = x->sectors;
	img->chunk_sectors = 0;
	return 0;
}

/* ---- open: sparse ---- */

/* Read and check table @i of @dir into p->gt (unless @into is false). */
static int load_gt(struct vmdk_priv *p, const uint32_t *dir, uint32_t i,
		   uint64_t file_secs, uint8_t *tmp, bool into,
		   const char *which)
{
	uint64_t s = dir[i];
	int err;

	if (!s)
		return 0;
	if (s < 1 || s + p->gt_secs > file_secs)
		return td_fail(EINVAL, "%s: %sgrain table %u at sector %" PRIu64
			       " is past the end of the file (%" PRIu64
			       " sectors)", p->path, which, i, s, file_secs);
	if (!into)
		return 0;
	err = pread_full(p->file.fd_buffered, tmp, (size_t)p->gt_secs * SEC,
			 s * SEC);
	if (err)
		return td_fail(-err, "%s: cannot read grain table %u: %s",
			       p->path, i, strerror(-err));
	for (uint32_t k = 0; k < p->gtes; k++) {
		uint64_t g = (uint64_t)i * p->gtes + k;
		uint32_t v = le32(tmp + 4 * k);

		if (v == GTE_ZERO && p->zero_grain) {
			p->gt[g] = v;
			continue;
		}
		if (v && v < p->overhead)
			return td_fail(EINVAL, "%s: grain %" PRIu64 " points "
				       "into the metadata (sector %u)", p->path,
				       g, v);
		if (v && v >= file_secs)
			return td_fail(EINVAL, "%s: grain %" PRIu64 " at sector "
				       "%u is past the end of the file (%"
				       PRIu64 " sectors)", p->path, g, v,
				       file_secs);
		p->gt[g] = v;
		if (v && v + p->grain > p->next_free)
			p->next_free = v + p->grain;
	}
	return 0;
}

/*
 * A crash between the two GT writes of an allocation leaves the copies
 * different: make the redundant table equal to the primary one (in
 * memory: p->gt) again.  @tmp is scratch for one table.
 */
static int sync_rgt(struct vmdk_priv *p, uint32_t i, uint8_t *tmp,
		    uint32_t *synced)
{
	size_t len = (size_t)p->gt_secs * SEC;
	uint64_t off = (uint64_t)p->rgd[i] * SEC;
	bool same = true;
	int err;

	err = pread_full(p->file.fd_buffered, tmp, len, off);
	if (err)
		return td_fail(-err, "%s: cannot read redundant grain table "
			       "%u: %s", p->path, i, strerror(-err));
	for (uint32_t k = 0; k < p->gtes && same; k++)
		same = le32(tmp + 4 * k) == p->gt[(uint64_t)i * p->gtes + k];
	if (same)
		return 0;
	for (uint32_t k = 0; k < p->gtes; k++)
		put_le32(tmp + 4 * k, p->gt[(uint64_t)i * p->gtes + k]);
	err = pwrite_full(p->file.fd_buffered, tmp, len, off);
	if (err)
		return td_fail(-err, "%s: cannot write redundant grain table "
			       "%u: %s", p->path, i, strerror(-err));
	(*synced)++;
	return 0;
}

static int load_dir(struct vmdk_priv *p, uint64_t off, uint32_t **out,
		    uint64_t file_secs, const char *which)
{
	size_t bytes = (size_t)p->nr_gts * 4;
	size_t secs = (bytes + SEC - 1) / SEC;
	uint8_t *raw;
	int err;

	if (off < 1 || off + secs > file_secs)
		return td_fail(EINVAL, "%s: %sgrain directory at sector %" PRIu64
			       " is past the end of the file (%" PRIu64
			       " sectors)", p->path, which, off, file_secs);
	raw = malloc(secs * SEC);
	*out = calloc(p->nr_gts, sizeof(**out));
	if (!raw || !*out) {
		free(raw);
		return td_fail(ENOMEM, "%s: out of memory", p->path);
	}
	err = pread_full(p->file.fd_buffered, raw, secs * SEC, off * SEC);
	if (err) {
		free(raw);
		return td_fail(-err, "%s: cannot read the %sgrain directory: %s",
			       p->path, which, strerror(-err));
	}
	for (uint32_t i = 0; i < p->nr_gts; i++)
		(*out)[i] = le32(raw + 4 * i);
	free(raw);
	if (off + secs > p->next_free)
		p->next_free = off + secs;
	return 0;
}

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) / a * a;
}

/*
 * Give every GD entry (and redundant one) that is 0 a table, at the end
 * of the file, holding what is in memory for it: tables first, made
 * stable, then the directories.  Done once at open, synchronously.
 */
static int create_missing_gts(struct vmdk_priv *p, uint64_t gd_off,
			      uint64_t rgd_off, uint8_t *tmp)
{
	int fd = p->file.fd_buffered;
	bool changed = false;
	size_t dir_bytes = (size_t)p->nr_gts * 4;
	size_t dir_len = (dir_bytes + SEC - 1) / SEC * SEC;
	uint8_t *raw;
	int err = 0;

	for (int copy = 0; copy < 2; copy++) {
		uint32_t *dir = copy ? p->rgd : p->gd;

		if (!dir)
			continue;
		for (uint32_t i = 0; i < p->nr_gts; i++) {
			uint64_t s;

			if (dir[i])
				continue;
			s = align_up(p->next_free, ALLOC_ALIGN);
			if (s + p->gt_secs > UINT32_MAX)
				return td_fail(EFBIG, "%s: no room for grain "
					       "table %u", p->path, i);
			memset(tmp, 0, (size_t)p->gt_secs * SEC);
			for (uint32_t k = 0; k < p->gtes; k++)
				put_le32(tmp + 4 * k,
					 p->gt[(uint64_t)i * p->gtes + k]);
			err = pwrite_full(fd, tmp, (size_t)p->gt_secs * SEC,
					  s * SEC);
			if (err)
				goto fail;
			dir[i] = (uint32_t)s;
			p->next_free = s + p->gt_secs;
			changed = true;
		}
	}
	if (!changed)
		return 0;
	if (fdatasync(fd) < 0) {
		err = -errno;
		goto fail;
	}
	raw = calloc(1, dir_len);
	if (!raw)
		return td_fail(ENOMEM, "%s: out of memory", p->path);
	for (int copy = 0; copy < 2 && !err; copy++) {
		uint32_t *dir = copy ? p->rgd : p->gd;

		if (!dir)
			continue;
		for (uint32_t i = 0; i < p->nr_gts; i++)
			put_le32(raw + 4 * i, dir[i]);
		err = pwrite_full(fd, raw, dir_bytes,
				  (copy ? rgd_off : gd_off) * SEC);
	}
	free(raw);
	if (!err && fdatasync(fd) < 0)
		err = -errno;
	if (!err)
		return 0;
fail:
	return td_fail(-err, "%s: cannot create missing grain tables: %s",
		       p->path, strerror(-err));
}

static int setup_slots(struct vmdk_priv *p)
{
	size_t gbytes = (size_t)p->grain * SEC;
	uint32_t n = (uint32_t)(SLOT_MEM / gbytes);

	if (n > MAX_SLOTS)
		n = MAX_SLOTS;
	if (n < MIN_SLOTS)
		n = MIN_SLOTS;
	p->nr_slots = n;
	p->slots = calloc(n, sizeof(*p->slots));
	p->slot_mem = td_alloc_aligned(n * gbytes);
	p->sec_mem = td_alloc_aligned((size_t)n * SEC);
	if (!p->slots || !p->slot_mem || !p->sec_mem)
		return -ENOMEM;
	for (uint32_t i = 0; i < n; i++) {
		p->slots[i].p = p;
		p->slots[i].idx = i;
		p->slots[i].buf = p->slot_mem + i * gbytes;
		p->slots[i].sec = p->sec_mem + (size_t)i * SEC;
	}
	return 0;
}

static int open_sparse(struct td_image *img, const uint8_t *h,
		       unsigned flags)
{
	struct vmdk_priv *p = img->priv;
	bool ro = flags & TD_IMAGE_RDONLY;
	uint32_t version = le32(h + 4), hflags = le32(h + 8);
	uint64_t capacity = le64(h + 12), grain = le64(h + 20);
	uint64_t desc_off = le64(h + 28), desc_secs = le64(h + 36);
	uint32_t gtes = le32(h + 44);
	uint64_t rgd_off = le64(h + 48), gd_off = le64(h + 56);
	uint64_t overhead = le64(h + 64), file_secs, per_gt, gt_mem;
	uint8_t *tmp = NULL;
	char *text = NULL;
	uint32_t synced = 0;
	struct desc d;
	struct stat st;
	int err;

	if (fstat(p->file.fd_buffered, &st) < 0)
		return td_fail(errno, "%s: %s", p->path, strerror(errno));
	file_secs = (uint64_t)st.st_size / SEC;
	if (version < 1 || version > 3)
		return td_fail(EOPNOTSUPP, "%s: sparse extent version %u is not "
			       "supported", p->path, version);
	/* The descriptor first: it names the variant best. */
	if (!desc_off || !desc_secs)
		return td_fail(EOPNOTSUPP, "%s: a sparse extent without an "
			       "embedded descriptor (part of a multi-file "
			       "VMDK?) is not supported", p->path);
	if (desc_secs > DESC_MAX / SEC || desc_off + desc_secs > file_secs)
		return td_fail(EINVAL, "%s: descriptor at sector %" PRIu64
			       " (%" PRIu64 " sectors) is past the end of the "
			       "file or too large", p->path, desc_off,
			       desc_secs);
	text = calloc(1, desc_secs * SEC + 1);
	if (!text)
		return td_fail(ENOMEM, "%s: out of memory", p->path);
	err = pread_full(p->file.fd_buffered, text, desc_secs * SEC,
			 desc_off * SEC);
	if (err) {
		free(text);
		return td_fail(-err, "%s: cannot read the descriptor: %s",
			       p->path, strerror(-err));
	}
	err = parse_desc(p->path, text, &d);
	free(text);
	if (err)
		return err;
	err = check_desc(p->path, &d, "monolithicSparse", "SPARSE", ro);
	if (err)
		return err;
	if (hflags & (FLAG_COMPRESSED | FLAG_MARKERS))
		return td_fail(EOPNOTSUPP, "%s: compressed grains (VMDK variant "
			       "streamOptimized) are not supported", p->path);
	if ((hflags & FLAG_NL_TEST) &&
	    (h[73] != '\n' || h[74] != ' ' || h[75] != '\r' || h[76] != '\n'))
		return td_fail(EINVAL, "%s: the header's line-end test bytes "
			       "are wrong (damaged by a text-mode copy?)",
			       p->path);
	if (capacity != d.ext[0].sectors)
		return td_fail(EINVAL, "%s: the header says %" PRIu64 " sectors"
			       ", the descriptor %" PRIu64, p->path, capacity,
			       d.ext[0].sectors);
	if (grain < 8 || grain > TD_TREQ_MAX_SECTORS || (grain & (grain - 1)))
		return td_fail(EINVAL, "%s: grain size %" PRIu64 " sectors is "
			       "not a power of two from 8 to %u", p->path,
			       grain, TD_TREQ_MAX_SECTORS);
	if (!gtes || gtes % GTE_PER_SEC || gtes > 65536)
		return td_fail(EINVAL, "%s: %u entries per grain table is not a "
			       "multiple of %u up to 65536", p->path, gtes,
			       GTE_PER_SEC);
	if (gd_off == GD_AT_END)
		return td_fail(EOPNOTSUPP, "%s: a grain directory at the end of "
			       "the file (VMDK variant streamOptimized) is not "
			       "supported", p->path);
	per_gt = grain * gtes;
	if (capacity / per_gt >= UINT32_MAX)
		return td_fail(EINVAL, "%s: capacity %" PRIu64 " sectors is too "
			       "large", p->path, capacity);
	p->grain = (uint32_t)grain;
	p->gtes = gtes;
	p->gt_secs = gtes / GTE_PER_SEC;
	p->nr_gts = (uint32_t)((capacity + per_gt - 1) / per_gt);
	p->overhead = overhead;
	p->zero_grain = hflags & FLAG_ZERO_GRAIN;
	p->sectors = capacity;
	p->next_free = file_secs;
	gt_mem = (uint64_t)p->nr_gts * gtes * 4;
	if (gt_mem > GT_MEM_MAX)
		return td_fail(EFBIG, "%s: grain tables of %" PRIu64 " MiB are "
			       "too large to keep in memory", p->path,
			       gt_mem >> 20);
	p->gt = calloc((size_t)p->nr_gts * gtes, sizeof(*p->gt));
	tmp = malloc((size_t)p->gt_secs * SEC);
	if (!p->gt || !tmp) {
		free(tmp);
		return td_fail(ENOMEM, "%s: out of memory", p->path);
	}
	err = load_dir(p, gd_off, &p->gd, file_secs, "");
	if (!err && (hflags & FLAG_RGD) && rgd_off)
		err = load_dir(p, rgd_off, &p->rgd, file_secs, "redundant ");
	for (uint32_t i = 0; !err && i < p->nr_gts; i++) {
		err = load_gt(p, p->gd, i, file_secs, tmp, true, "");
		/* The primary is what counts; a missing one is rebuilt. */
		if (!err && p->rgd)
			err = load_gt(p, p->rgd, i, file_secs, tmp, !p->gd[i],
				      "redundant ");
		if (!err && !ro && p->gd[i] && p->rgd && p->rgd[i])
			err = sync_rgt(p, i, tmp, &synced);
		if (!err && p->gd[i] && p->gd[i] + p->gt_secs > p->next_free)
			p->next_free = p->gd[i] + p->gt_secs;
		if (!err && p->rgd && p->rgd[i] &&
		    p->rgd[i] + p->gt_secs > p->next_free)
			p->next_free = p->rgd[i] + p->gt_secs;
	}
	if (!err && synced) {
		td_warn("%s: %u redundant grain tables differed from the "
			"primary ones (a crash?); copied", p->path, synced);
		if (fdatasync(p->file.fd_buffered) < 0)
			err = td_fail(errno, "%s: %s", p->path,
				      strerror(errno));
	}
	if (!err && !ro)
		err = create_missing_gts(p, gd_off, rgd_off, tmp);
	free(tmp);
	if (err)
		return err;
	p->next_free = align_up(p->next_free, ALLOC_ALIGN);
	if (!ro && setup_slots(p))
		return td_fail(ENOMEM, "%s: out of memory for allocations",
			       p->path);
	img->chunk_sectors = p->grain;
	p->sparse = true;
	return 0;
}

static void free_all(struct vmdk_priv *p)
{
	if (p->file_open)
		tio_file_close(&p->file);
	free(p->gd);
	free(p->rgd);
	free(p->gt);
	free(p->slots);
	free(p->slot_mem);
	free(p->sec_mem);
	memset(p, 0, sizeof(*p));
}

/*
 * Text up to the first NUL (QEMU pads a descriptor it rewrote with NULs
 * to a whole sector), and something there.
 */
static bool is_text(const uint8_t *b, size_t n)
{
	size_t len = strnlen((const char *)b, n);

	if (!len)
		return false;
	for (size_t i = 0; i < len; i++)
		if (b[i] < 0x20 && b[i] != '\t' && b[i] != '\n' &&
		    b[i] != '\r')
			return false;
	return true;
}

static int vmdk_open(struct td_image *img, const char *path, unsigned flags)
{
	struct vmdk_priv *p = img->priv;
	bool ro = flags & TD_IMAGE_RDONLY;
	uint8_t h[SEC + 1];
	char *text = NULL;
	ssize_t n;
	int fd, err;

	snprintf(p->path, sizeof(p->path), "%s", path);
	p->rdwr = !ro;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return td_fail(errno, "%s: %s", path, strerror(errno));
	memset(h, 0, sizeof(h));
	n = pread(fd, h, SEC, 0);
	if (n < 4) {
		close(fd);
		return td_fail(EINVAL, "%s: too short to be a VMDK", path);
	}
	if (le32(h) == SPARSE_MAGIC) {
		close(fd);
		if (n < (ssize_t)SEC)
			return td_fail(EINVAL, "%s: the sparse header is cut "
				       "short", path);
		err = tio_file_open(&p->file, p->path, ro,
				    !(flags & TD_IMAGE_NO_DIRECT));
		if (err)
			return err;
		p->file_open = true;
		err = open_sparse(img, h, flags);
	} else if (le32(h) == COWD_MAGIC) {
		close(fd);
		return td_fail(EOPNOTSUPP, "%s: VMDK variant vmfsSparse (COWD "
			       "extent) is not supported", path);
	} else if (!is_text(h, (size_t)n) ||
		   (!strstr((const char *)h, "createType") &&
		    strncmp((const char *)h, "# Disk DescriptorFile", 21))) {
		close(fd);
		return td_fail(EINVAL, "%s: not a VMDK (no \"KDMV\" magic, no "
			       "text descriptor)", path);
	} else {
		text = calloc(1, DESC_MAX + 1);
		if (!text) {
			close(fd);
			return td_fail(ENOMEM, "%s: out of memory", path);
		}
		n = pread(fd, text, DESC_MAX, 0);
		close(fd);
		if (n < 0) {
			free(text);
			return td_fail(errno, "%s: %s", path, strerror(errno));
		}
		if (strnlen(text, DESC_MAX) == DESC_MAX) {
			free(text);
			return td_fail(EINVAL, "%s: descriptor larger than %u "
				       "bytes", path, DESC_MAX);
		}
		err = open_flat(img, text, flags);
		free(text);
	}
	if (err) {
		free_all(p);
		return err;
	}
	img->sectors = p->sectors;
	img->can_discard = false;
	return 0;
}

static void vmdk_close(struct td_image *img)
{
	struct vmdk_priv *p = img->priv;

	if (p->inflight)
		td_err("%s: closed with %u metadata requests in flight",
		       p->path, p->inflight);
	free_all(p);
}

/* ---- reads ---- */

static bool grain_mapped(const struct vmdk_priv *p, uint32_t gte)
{
	return gte && !(gte == GTE_ZERO && p->zero_grain);
}

static void vmdk_queue_read(struct td_image *img, struct td_treq *t)
{
	struct vmdk_priv *p = img->priv;
	uint32_t end = td_treq_inside(t, p->sectors), i = t->cursor;

	if (!p->sparse) {
		if (i < end &&
		    td_read_unfilled(t, &p->file, i, end - i, NULL, 0,
				     p->flat_off + ((t->sec + i) << SEC_SHIFT)))
			return;
		td_treq_forward(t);
		return;
	}
	while (i < end) {
		uint64_t s = t->sec + i;
		uint64_t g = s / p->grain;
		uint32_t first = (uint32_t)(s % p->grain);
		uint32_t n = p->grain - first;
		uint32_t gte = p->gt[g];

		if (n > end - i)
			n = end - i;
		/* Unallocated and zeroed grains: the core fills zeros. */
		if (grain_mapped(p, gte) &&
		    td_read_unfilled(t, &p->file, i, n, NULL, 0,
				     ((uint64_t)gte + first) << SEC_SHIFT))
			return;
		i += n;
	}
	td_treq_forward(t);
}

/* ---- allocation ---- */

static void alloc_submit(struct vmdk_priv *p, struct slot *s);

static struct slot *slot_find(struct vmdk_priv *p, uint64_t grain)
{
	for (uint32_t i = 0; i < p->nr_slots; i++)
		if (p->slots[i].used && p->slots[i].grain == grain)
			return &p->slots[i];
	return NULL;
}

/* The GT sector an allocation changes (the same in both copies). */
static uint64_t gt_key(const struct slot *s)
{
	return s->grain / GTE_PER_SEC;
}

static bool in_group(const struct slot *o, const struct slot *w)
{
	return o->used && (o == w || (o->role == R_RIDER &&
				      o->writer == w->idx));
}

static void alloc_finish(struct vmdk_priv *p, struct slot *s, int err)
{
	struct tlist list = tl_take(&s->waiters);
	struct td_treq *owner = s->owner, *t;

	s->used = false;
	s->role = R_NONE;
	s->owner = NULL;
	if (err)
		td_err("%s: cannot allocate grain %" PRIu64 ": %s", p->path,
		       s->grain, strerror(-err));
	owner->drv_state = 0;
	td_treq_put(owner, err);
	while ((t = tl_pop(&list))) {
		if (err)
			td_fail_treq(t, err);
		else
			td_treq_resume(t);
	}
	tl_resume_all(&p->slot_waiters);
}

/* @w's GT sector write(s) ended: commit the group, hand the sector on. */
static void gt_done(struct vmdk_priv *p, struct slot *w, int err)
{
	struct slot *group[MAX_SLOTS], *next = NULL;
	uint64_t key = gt_key(w);
	uint32_t n = 0, i;

	for (i = 0; i < p->nr_slots; i++)
		if (in_group(&p->slots[i], w))
			group[n++] = &p->slots[i];
	for (i = 0; i < n; i++) {
		if (!err)
			p->gt[group[i]->grain] = (uint32_t)group[i]->off;
		group[i]->role = R_NONE;
	}
	for (i = 0; i < p->nr_slots; i++) {
		struct slot *o = &p->slots[i];

		if (!o->used || o->role != R_WAIT || gt_key(o) != key)
			continue;
		if (!next) {
			next = o;
			o->role = R_WRITER;
		} else {
			o->role = R_RIDER;
			o->writer = next->idx;
		}
	}
	if (next)
		alloc_submit(p, next);
	for (i = 0; i < n; i++)
		alloc_finish(p, group[i], err);
}

/* @s's grain is on disk: write its GTE, alone or with others. */
static void gt_join(struct vmdk_priv *p, struct slot *s)
{
	s->step = S_GT;
	for (uint32_t i = 0; i < p->nr_slots; i++) {
		struct slot *o = &p->slots[i];

		if (o == s || !o->used || o->role != R_WRITER ||
		    gt_key(o) != gt_key(s))
			continue;
		if (o->step == S_GT && !o->inflight) {
			/* Not submitted yet: its write takes ours along. */
			s->role = R_RIDER;
			s->writer = o->idx;
		} else {
			s->role = R_WAIT;
		}
		return;
	}
	s->role = R_WRITER;
	alloc_submit(p, s);
}

static void alloc_done(struct tio_req *r, int err)
{
	struct slot *s = r->arg;
	struct vmdk_priv *p = s->p;

	p->inflight--;
	s->inflight = false;
	switch (s->step) {
	case S_DATA:
		if (err)
			alloc_finish(p, s, err);
		else
			gt_join(p, s);
		return;
	case S_GT:
		if (!err && p->rgd) {
			s->step = S_RGT;
			alloc_submit(p, s);
			return;
		}
		gt_done(p, s, err);
		return;
	case S_RGT:
		gt_done(p, s, err);
		return;
	}
}

/* Build the GT sector of writer @w from memory and its group. */
static void build_gt_sector(struct vmdk_priv *p, struct slot *w)
{
	uint64_t first = gt_key(w) * GTE_PER_SEC;

	for (uint32_t k = 0; k < GTE_PER_SEC; k++) {
		uint64_t g = first + k;
		uint32_t v = g < (uint64_t)p->nr_gts * p->gtes ? p->gt[g] : 0;

		for (uint32_t j = 0; j < p->nr_slots; j++) {
			struct slot *o = &p->slots[j];

			if (o->grain == g && in_group(o, w))
				v = (uint32_t)o->off;
		}
		put_le32(w->sec + 4 * k, v);
	}
}

static void alloc_submit(struct vmdk_priv *p, struct slot *s)
{
	struct tio_req *r = tio_get(TIO_PRIO_META);
	const uint32_t *dir = s->step == S_RGT ? p->rgd : p->gd;
	uint64_t gtn = s->grain / p->gtes;
	uint64_t sec_in_gt = (s->grain % p->gtes) / GTE_PER_SEC;

	if (!r) {
		s->owner->drv_state = DS_ALLOC | s->idx;
		td_treq_wait_tio(s->owner);
		return;
	}
	r->file = &p->file;
	r->op = TIO_WRITE;
	r->flags = TIO_FUA;
	r->deadline_ms = s->owner->deadline_ms;
	r->done = alloc_done;
	r->arg = s;
	if (s->step == S_DATA) {
		r->buf = s->buf;
		r->len = (size_t)p->grain * SEC;
		r->off = s->off * SEC;
	} else {
		build_gt_sector(p, s);
		r->buf = s->sec;
		r->len = SEC;
		r->off = ((uint64_t)dir[gtn] + sec_in_gt) * SEC;
	}
	p->inflight++;
	s->inflight = true;
	tio_submit(r);
}

static void alloc_start(struct vmdk_priv *p, struct td_treq *t, uint64_t grain)
{
	uint32_t first = (uint32_t)(t->sec % p->grain);
	struct slot *s = NULL;

	for (uint32_t i = 0; i < p->nr_slots && !s; i++)
		if (!p->slots[i].used)
			s = &p->slots[i];
	if (!s) {
		tl_push(&p->slot_waiters, t);
		return;
	}
	if (p->next_free + p->grain > UINT32_MAX) {
		td_err("%s: no room for grain %" PRIu64 " (a sparse extent "
		       "ends at 2 TiB)", p->path, grain);
		td_fail_treq(t, -EFBIG);
		return;
	}
	s->used = true;
	s->inflight = false;
	s->step = S_DATA;
	s->role = R_NONE;
	s->grain = grain;
	s->off = p->next_free;
	p->next_free += p->grain;
	s->owner = t;
	s->waiters.head = s->waiters.tail = NULL;
	/* Zeros around the data: the grain was never written. */
	memset(s->buf, 0, (size_t)p->grain * SEC);
	memcpy(s->buf + ((size_t)first << SEC_SHIFT), t->buf,
	       (size_t)t->secs << SEC_SHIFT);
	td_treq_get(t);
	alloc_submit(p, s);
	td_treq_issued(t);
}

/* ---- writes and flushes ---- */

static void vmdk_queue_write(struct td_image *img, struct td_treq *t)
{
	struct vmdk_priv *p = img->priv;
	uint64_t base, grain;
	uint32_t first;
	struct slot *s;

	if (t->drv_state & DS_ALLOC) {
		/* A parked owner: retry its allocation's step. */
		s = &p->slots[t->drv_state & 0xFFFF];
		t->drv_state = 0;
		alloc_submit(p, s);
		return;
	}
	if (!p->rdwr || t->sec >= p->sectors || p->sectors - t->sec < t->secs) {
		td_fail_treq(t, p->rdwr ? -EINVAL : -EROFS);
		return;
	}
	if (!p->sparse) {
		base = p->flat_off + (t->sec << SEC_SHIFT);
	} else {
		grain = t->sec / p->grain;
		first = (uint32_t)(t->sec % p->grain);
		if (first + t->secs > p->grain) {
			/* The core splits at chunk_sectors: a bug there. */
			td_err("%s: write of sectors %" PRIu64 "+%u crosses a "
			       "grain", p->path, t->sec, t->secs);
			td_fail_treq(t, -EINVAL);
			return;
		}
		s = slot_find(p, grain);
		if (s) {
			tl_push(&s->waiters, t);
			return;
		}
		if (!grain_mapped(p, p->gt[grain])) {
			alloc_start(p, t, grain);
			return;
		}
		base = ((uint64_t)p->gt[grain] + first) << SEC_SHIFT;
	}
	if (td_treq_submit(t, &p->file, TIO_WRITE, t->buf,
			   (size_t)t->secs << SEC_SHIFT, base,
			   t->flags & TD_TREQ_FUA ? TIO_FUA : 0)) {
		td_treq_wait_tio(t);
		return;
	}
	td_treq_issued(t);
}

/*
 * Completed allocations are stable already (FUA); an fdatasync makes
 * the writes into allocated grains (or the flat extent) stable too.
 */
static void vmdk_queue_flush(struct td_image *img, struct td_treq *t)
{
	struct vmdk_priv *p = img->priv;

	if (td_treq_submit(t, &p->file, TIO_FDSYNC, NULL, 0, 0, 0)) {
		td_treq_wait_tio(t);
		return;
	}
	td_treq_issued(t);
}

static int vmdk_get_parent(struct td_image *img, struct td_parent *parent)
{
	(void)img;
	(void)parent;
	return -ENOENT;
}

const struct td_driver td_drv_vmdk = {
	.name		= "vmdk",
	.priv_size	= sizeof(struct vmdk_priv),
	.open		= vmdk_open,
	.close		= vmdk_close,
	.queue_read	= vmdk_queue_read,
	.queue_write	= vmdk_queue_write,
	.queue_flush	= vmdk_queue_flush,
	.get_parent	= vmdk_get_parent,
};
