// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * vhd_check(): inspect an image and report every problem, one line each.
 *
 * The checker reads the file itself (it never trusts vhd_open() to have
 * accepted it) and bounds every read by the file size, so it can look at
 * hostile input.  It works in phases -- footers, header, BAT, batmap,
 * locators, bitmaps, parents -- and a phase whose structure is unusable
 * ends the check rather than producing a cascade of follow-on problems.
 * One root cause yields one line: a truncated file is one problem, not a
 * missing footer plus a block past the end of file; a block that another
 * tool placed over our batmap is one problem, not a bad batmap plus an
 * overlap.
 */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "private.h"

#define MAX_PER_KIND	8		/* lines per kind of block problem */
#define LOC_MAX_DATA	(64u << 10)	/* longest locator payload we read */
#define TIME_SLACK	1800		/* seconds of clock skew tolerated */
#define MAX_REGIONS	(5 + VHD_LOC_COUNT)

/* Kinds of problems that can repeat once per block. */
enum kind {
	K_BEYOND,	/* allocated beyond the virtual size */
	K_PASTEOF,	/* past the end of the data */
	K_META,		/* overlaps metadata */
	K_OVERLAP,	/* overlaps another block */
	K_BATMAP,	/* batmap bit without a block / without a full bitmap */
	K_BITMAP,	/* bitmap unreadable */
	K_COUNT
};

static const char *const kind_name[K_COUNT] = {
	"blocks allocated beyond the virtual size",
	"blocks past the end of the data",
	"blocks overlapping metadata",
	"overlapping blocks",
	"batmap bits in error",
	"unreadable bitmaps",
};

struct region {
	char		what[40];
	uint64_t	start;
	uint64_t	len;
};

struct checker {
	const char	*path;
	const struct vhd_check_opts *opts;
	void		(*report)(void *arg, const char *msg);
	void		*arg;
	int		problems;
	int		kind_count[K_COUNT];

	int		fd;
	uint64_t	size;		/* bytes in the file */
	uint64_t	limit;		/* data must end here (footer or EOF) */
	bool		prim_ok;
	char		prim_msg[256];
	struct vhd_footer footer;
	struct vhd_header header;

	uint32_t	*bat;
	uint32_t	entries;
	uint32_t	blocks;		/* blocks of the virtual size */
	uint32_t	spb, bm_secs;
	uint64_t	blk_bytes;
	uint8_t		*bad;		/* entries already reported */

	uint64_t	bmh_off;
	bool		batmap_ok;	/* the batmap header decoded */
	struct vhd_batmap_header bmh;
	uint32_t	qemu_block;	/* block sitting on our batmap */
	uint32_t	trunc_blocks, trunc_first;

	struct region	reg[MAX_REGIONS];
	int		nreg;
	char		*parent;	/* resolved parent path */
};

static void problem(struct checker *c, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void problem(struct checker *c, const char *fmt, ...)
{
	char msg[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	for (char *p = msg; *p; p++)
		if (*p == '\n')
			*p = ' ';
	c->problems++;
	if (c->report)
		c->report(c->arg, msg);
}

static void kind_problem(struct checker *c, enum kind k, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void kind_problem(struct checker *c, enum kind k, const char *fmt, ...)
{
	char msg[768];
	va_list ap;

	if (++c->kind_count[k] > MAX_PER_KIND)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	problem(c, "%s", msg);
}

static void kind_summaries(struct checker *c)
{
	for (int k = 0; k < K_COUNT; k++)
		if (c->kind_count[k] > MAX_PER_KIND)
			problem(c, "%d more %s not listed",
				c->kind_count[k] - MAX_PER_KIND, kind_name[k]);
}

/* libvhd messages start with the file name; ours are about that file. */
static const char *strip_name(const char *path, const char *msg)
{
	size_t n = strlen(path);

	if (!strncmp(msg, path, n) && msg[n] == ':' && msg[n + 1] == ' ')
		return msg + n + 2;
	return msg;
}

/* Read inside the file only; a short read is an I/O error here. */
static int read_at(struct checker *c, void *buf, uint64_t len, uint64_t off)
{
	if (off > c->size || len > c->size - off)
		return -EINVAL;
	return vhd_pread_full(c->fd, buf, (size_t)len, off);
}

static bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
	return a < b + blen && b < a + alen;
}

static void add_region(struct checker *c, const char *what, uint64_t start,
		       uint64_t len)
{
	struct region *r;

	if (c->nreg >= MAX_REGIONS || !len)
		return;
	r = &c->reg[c->nreg++];
	snprintf(r->what, sizeof(r->what), "%s", what);
	r->start = start;
	r->len = len;
}

/* ---- footers ---------------------------------------------------------- */

/* 0 to go on, 1 when nothing more can be checked, -errno when unreadable. */
static int check_footers(struct checker *c)
{
	uint8_t prim[512], copy[512];
	struct vhd_footer pf, cf;
	char cmsg[256] = "";
	uint64_t poff;
	bool copy_ok;
	int err;

	if (c->size < VHD_FOOTER_SIZE) {
		problem(c, "file too small (%llu bytes) to be a VHD",
			(unsigned long long)c->size);
		return 1;
	}
	poff = (c->size - VHD_FOOTER_SIZE) & ~(uint64_t)(VHD_SECTOR_SIZE - 1);
	err = read_at(c, prim, sizeof(prim), poff);
	if (!err)
		err = read_at(c, copy, sizeof(copy), 0);
	if (err)
		return vhd_fail(c->path, err, "cannot read footer: %s",
				strerror(-err));
	c->prim_ok = vhd_footer_decode(&pf, prim) == 0;
	if (!c->prim_ok)
		snprintf(c->prim_msg, sizeof(c->prim_msg), "%s", vhd_errmsg());
	copy_ok = vhd_footer_decode(&cf, copy) == 0;
	if (!copy_ok)
		snprintf(cmsg, sizeof(cmsg), "%s", vhd_errmsg());

	if (c->prim_ok) {
		c->footer = pf;
		c->limit = poff;
		if (c->size % VHD_SECTOR_SIZE)
			problem(c, "file size %llu is not a multiple of 512 (%llu stray bytes after the footer)",
				(unsigned long long)c->size,
				(unsigned long long)(c->size % VHD_SECTOR_SIZE));
		if (pf.type == VHD_TYPE_FIXED || c->opts->ignore_footer_copy)
			return 0;
		if (!copy_ok)
			problem(c, "footer copy at offset 0 is invalid: %s; run 'vhd-util repair'",
				cmsg);
		else if (memcmp(prim, copy, sizeof(prim)))
			problem(c, "footer copy at offset 0 differs from the primary footer; run 'vhd-util repair'");
		return 0;
	}
	if (copy_ok && cf.type != VHD_TYPE_FIXED) {
		/* Reported after the BAT: a truncated file is one problem. */
		c->footer = cf;
		c->limit = c->size & ~(uint64_t)(VHD_SECTOR_SIZE - 1);
		return 0;
	}
	if (!memcmp(copy, VHD_COOKIE, 8) && memcmp(prim, copy, sizeof(prim)))
		problem(c, "footer invalid: %s (and the copy at offset 0: %s)",
			c->prim_msg, copy_ok ? "a fixed-disk footer" : cmsg);
	else
		problem(c, "footer invalid: %s", c->prim_msg);
	return 1;
}

static void check_footer_fields(struct checker *c)
{
	const struct vhd_footer *f = &c->footer;

	if (f->ff_version >> 16 != 1)
		problem(c, "unsupported file format version 0x%08x",
			f->ff_version);
	if (!c->opts->ignore_timestamps &&
	    (int64_t)vhd_time_to_unix(f->timestamp) > time(NULL) + TIME_SLACK)
		problem(c, "creation time lies in the future");
}

static int check_fixed(struct checker *c)
{
	if (c->footer.curr_size > c->limit)
		problem(c, "fixed image is truncated: the disk holds %llu bytes but the footer is at %llu",
			(unsigned long long)c->footer.curr_size,
			(unsigned long long)c->limit);
	return 0;
}

/* ---- header and BAT --------------------------------------------------- */

static int check_header(struct checker *c)
{
	struct vhd_header *h = &c->header;
	uint64_t off = c->footer.data_offset, bat_bytes;
	uint8_t buf[1024];
	int err;

	if (off < VHD_FOOTER_SIZE || off > c->limit ||
	    VHD_HEADER_SIZE > c->limit - off) {
		problem(c, "header offset 0x%llx lies outside the metadata",
			(unsigned long long)off);
		return 1;
	}
	err = read_at(c, buf, sizeof(buf), off);
	if (err)
		return vhd_fail(c->path, err, "cannot read header: %s",
				strerror(-err));
	if (vhd_header_decode(h, buf)) {
		char msg[256];
		uint32_t stored = get_be32(buf + 36);

		snprintf(msg, sizeof(msg), "%s", vhd_errmsg());
		if (memcmp(buf, VHD_HDR_COOKIE, 8) ||
		    stored == vhd_checksum(buf, sizeof(buf), 36)) {
			problem(c, "header invalid: %s", msg);
			return 1;
		}
		/* Only the checksum?  Then the fields can still be checked. */
		put_be32(buf + 36, vhd_checksum(buf, sizeof(buf), 36));
		if (vhd_header_decode(h, buf)) {
			problem(c, "header invalid: %s (and %s)", msg,
				vhd_errmsg());
			return 1;
		}
		problem(c, "header checksum is wrong (stored 0x%08x, computed 0x%08x) though its fields are sane; run 'vhd-util repair'",
			stored, h->checksum);
	}
	if ((uint64_t)h->max_bat_size * h->block_size < c->footer.curr_size)
		problem(c, "BAT of %u entries covers only %llu MiB of the %llu MiB disk",
			h->max_bat_size,
			(unsigned long long)(((uint64_t)h->max_bat_size *
					      h->block_size) >> 20),
			(unsigned long long)(c->footer.curr_size >> 20));
	bat_bytes = vhd_bat_bytes(h->max_bat_size);
	if (h->table_offset > c->limit || bat_bytes > c->limit - h->table_offset) {
		problem(c, "BAT at 0x%llx (%u entries) runs past the end of the file",
			(unsigned long long)h->table_offset, h->max_bat_size);
		return 1;
	}
	c->entries = h->max_bat_size;
	c->bat = malloc(bat_bytes ? bat_bytes : 1);
	c->bad = calloc(1, (size_t)c->entries + 1);
	if (!c->bat || !c->bad)
		return vhd_fail(c->path, ENOMEM, "out of memory for the BAT");
	err = read_at(c, c->bat, bat_bytes, h->table_offset);
	if (err)
		return vhd_fail(c->path, err, "cannot read BAT: %s",
				strerror(-err));
	for (uint32_t i = 0; i < c->entries; i++)
		c->bat[i] = get_be32((uint8_t *)&c->bat[i]);
	c->spb = h->block_size >> VHD_SECTOR_SHIFT;
	c->bm_secs = (uint32_t)secs_round_up(c->spb / 8);
	c->blk_bytes = (uint64_t)(c->spb + c->bm_secs) << VHD_SECTOR_SHIFT;
	c->blocks = (uint32_t)((c->footer.curr_size + h->block_size - 1) /
			       h->block_size);
	if (!c->opts->ignore_timestamps && c->footer.type == VHD_TYPE_DIFF &&
	    (int64_t)vhd_time_to_unix(h->prt_ts) > time(NULL) + TIME_SLACK)
		problem(c, "parent timestamp lies in the future");
	return 0;
}

static bool known_locator(uint32_t code)
{
	switch (code) {
	case VHD_LOC_W2KU:
	case VHD_LOC_W2RU:
	case VHD_LOC_MACX:
	case 0x57693272u:	/* Wi2r, deprecated */
	case 0x5769326Bu:	/* Wi2k, deprecated */
	case 0x4D616320u:	/* "Mac ", an alias record */
		return true;
	}
	return false;
}

static uint32_t block_at(const struct checker *c, uint64_t off)
{
	for (uint32_t i = 0; i < c->entries; i++) {
		uint64_t s = (uint64_t)c->bat[i] << VHD_SECTOR_SHIFT;

		if (c->bat[i] != VHD_BAT_UNUSED && s <= off &&
		    off < s + c->blk_bytes)
			return i;
	}
	return VHD_BAT_UNUSED;
}

/* The metadata the data blocks must stay clear of. */
static void collect_regions(struct checker *c)
{
	const struct vhd_header *h = &c->header;
	uint8_t buf[512];

	add_region(c, "footer copy", 0, VHD_FOOTER_SIZE);
	add_region(c, "header", c->footer.data_offset, VHD_HEADER_SIZE);
	add_region(c, "BAT", h->table_offset, vhd_bat_bytes(c->entries));

	c->qemu_block = VHD_BAT_UNUSED;
	c->bmh_off = h->table_offset + vhd_bat_bytes(c->entries);
	if (!c->opts->ignore_batmap && c->bmh_off <= c->limit &&
	    c->limit - c->bmh_off >= VHD_SECTOR_SIZE &&
	    read_at(c, buf, sizeof(buf), c->bmh_off) == 0) {
		if (vhd_batmap_header_decode(&c->bmh, buf) == 0) {
			c->batmap_ok = true;
			add_region(c, "batmap header", c->bmh_off,
				   VHD_SECTOR_SIZE);
			if (c->bmh.batmap_offset <= c->limit &&
			    ((uint64_t)c->bmh.batmap_size << VHD_SECTOR_SHIFT) <=
			    c->limit - c->bmh.batmap_offset)
				add_region(c, "batmap",
					   c->bmh.batmap_offset,
					   (uint64_t)c->bmh.batmap_size <<
					   VHD_SECTOR_SHIFT);
		} else if (vhd_footer_expects_batmap(&c->footer)) {
			uint32_t b = block_at(c, c->bmh_off);

			if (b != VHD_BAT_UNUSED)
				c->qemu_block = b;
			else if (!memcmp(buf, VHD_BATMAP_COOKIE, 8))
				problem(c, "batmap header invalid: %s; run 'vhd-util repair -b'",
					vhd_errmsg());
			else
				problem(c, "batmap missing at 0x%llx (images created by tap have one); run 'vhd-util repair -b'",
					(unsigned long long)c->bmh_off);
		}
	}
	if (c->footer.type != VHD_TYPE_DIFF)
		return;
	for (int i = 0; i < VHD_LOC_COUNT; i++) {
		const struct vhd_locator *l = &h->loc[i];
		char what[40];

		if (!l->code || !known_locator(l->code))
			continue;
		snprintf(what, sizeof(what), "parent locator %d", i);
		add_region(c, what, l->data_offset, vhd_locator_space(l));
	}
}

/* Metadata structures must not overlap each other either. */
static void check_regions(struct checker *c)
{
	for (int i = 0; i < c->nreg; i++)
		for (int j = i + 1; j < c->nreg; j++)
			if (overlaps(c->reg[i].start, c->reg[i].len,
				     c->reg[j].start, c->reg[j].len))
				problem(c, "the %s (0x%llx) overlaps the %s (0x%llx)",
					c->reg[i].what,
					(unsigned long long)c->reg[i].start,
					c->reg[j].what,
					(unsigned long long)c->reg[j].start);
}

static int report_overlap(void *arg, uint32_t a, uint32_t b, uint64_t sa,
			  uint64_t sb)
{
	struct checker *c = arg;

	kind_problem(c, K_OVERLAP, "blocks %u and %u overlap (sectors %llu and %llu)",
		     a, b, (unsigned long long)(sa >> VHD_SECTOR_SHIFT),
		     (unsigned long long)(sb >> VHD_SECTOR_SHIFT));
	c->bad[b] = 1;
	return 0;
}

static int check_bat(struct checker *c)
{
	int err;

	for (uint32_t i = 0; i < c->entries; i++) {
		uint64_t s = (uint64_t)c->bat[i] << VHD_SECTOR_SHIFT;

		if (c->bat[i] == VHD_BAT_UNUSED)
			continue;
		if (i >= c->blocks)
			kind_problem(c, K_BEYOND,
				     "block %u is allocated (sector %u) but lies beyond the %u-block virtual size",
				     i, c->bat[i], c->blocks);
		if (s > c->limit || c->blk_bytes > c->limit - s) {
			c->bad[i] = 1;
			if (!c->prim_ok) {	/* a truncated file */
				if (!c->trunc_blocks++)
					c->trunc_first = i;
				continue;
			}
			kind_problem(c, K_PASTEOF,
				     "block %u (sector %u) extends past the end of the data (the footer is at 0x%llx)",
				     i, c->bat[i], (unsigned long long)c->limit);
			continue;
		}
		if (i == c->qemu_block)
			continue;	/* explained by its own problem */
		for (int r = 0; r < c->nreg; r++) {
			if (!overlaps(s, c->blk_bytes, c->reg[r].start,
				      c->reg[r].len))
				continue;
			/* QEMU's blocks follow the BAT directly. */
			if (c->qemu_block != VHD_BAT_UNUSED &&
			    !strncmp(c->reg[r].what, "batmap", 6))
				continue;
			kind_problem(c, K_META,
				     "block %u (sector %u) overlaps the %s",
				     i, c->bat[i], c->reg[r].what);
			c->bad[i] = 1;
			break;
		}
	}

	err = vhd_bat_overlaps(c->bat, c->entries, c->bad, c->blk_bytes,
			       report_overlap, c);
	if (err)
		return vhd_fail(c->path, err, "%s", vhd_errmsg());
	return 0;
}

/* Deferred from check_footers(), now that the extent of data is known. */
static void report_primary_footer(struct checker *c)
{
	if (c->prim_ok)
		return;
	if (c->trunc_blocks) {
		problem(c, "file is truncated: %u data block%s (first: block %u) lie past its end (%llu bytes) and the primary footer is missing",
			c->trunc_blocks, c->trunc_blocks > 1 ? "s" : "",
			c->trunc_first, (unsigned long long)c->size);
		return;
	}
	if (!c->opts->ignore_footer_copy)
		problem(c, "primary footer invalid: %s (the copy at offset 0 is intact; run 'vhd-util repair')",
			c->prim_msg);
}

static void report_qemu_block(struct checker *c)
{
	bool locs = false;
	uint64_t s;

	if (c->qemu_block == VHD_BAT_UNUSED)
		return;
	s = (uint64_t)c->bat[c->qemu_block] << VHD_SECTOR_SHIFT;
	for (int r = 0; r < c->nreg; r++)
		if (!strncmp(c->reg[r].what, "parent locator", 14) &&
		    overlaps(s, c->blk_bytes, c->reg[r].start, c->reg[r].len))
			locs = true;
	problem(c, "batmap area%s is occupied by data block %u (written by another VHD tool); run 'vhd-util repair'",
		locs ? " (and the parent locators)" : "", c->qemu_block);
}

/* ---- batmap and bitmaps ----------------------------------------------- */

static int check_batmap(struct checker *c)
{
	struct vhd_batmap_header *b = &c->bmh;
	uint64_t bytes = (uint64_t)b->batmap_size << VHD_SECTOR_SHIFT;
	uint8_t *map, *bm = NULL;
	uint32_t sum;
	int err;

	if (!c->batmap_ok || c->opts->ignore_batmap)
		return 0;
	if ((b->batmap_version & 0xFFFF) > (VHD_BATMAP_VERSION & 0xFFFF)) {
		problem(c, "unsupported batmap version 0x%08x",
			b->batmap_version);
		return 0;
	}
	if (b->batmap_offset < c->bmh_off + VHD_SECTOR_SIZE ||
	    b->batmap_offset > c->limit || bytes > c->limit - b->batmap_offset) {
		problem(c, "batmap at 0x%llx (%u sectors) lies outside the metadata",
			(unsigned long long)b->batmap_offset, b->batmap_size);
		return 0;
	}
	if (bytes < vhd_batmap_bytes(c->entries)) {
		problem(c, "batmap of %u sectors is too small for %u blocks",
			b->batmap_size, c->entries);
		return 0;
	}
	map = malloc(bytes);
	if (!map)
		return vhd_fail(c->path, ENOMEM, "out of memory for the batmap");
	err = read_at(c, map, bytes, b->batmap_offset);
	if (err) {
		free(map);
		return vhd_fail(c->path, err, "cannot read batmap: %s",
				strerror(-err));
	}
	sum = vhd_checksum(map, bytes, SIZE_MAX);
	if (sum != b->checksum) {
		problem(c, "batmap checksum is wrong (stored 0x%08x, computed 0x%08x); run 'vhd-util repair -b'",
			b->checksum, sum);
		free(map);
		return 0;
	}
	if (c->opts->check_bitmaps)
		bm = malloc((size_t)c->bm_secs << VHD_SECTOR_SHIFT);
	for (uint32_t i = 0; i < c->entries; i++) {
		if (!vhd_bitmap_test(map, i))
			continue;
		if (c->bat[i] == VHD_BAT_UNUSED) {
			kind_problem(c, K_BATMAP,
				     "batmap marks unallocated block %u as full", i);
			continue;
		}
		if (!bm || c->bad[i])
			continue;
		err = read_at(c, bm, (uint64_t)c->bm_secs << VHD_SECTOR_SHIFT,
			      (uint64_t)c->bat[i] << VHD_SECTOR_SHIFT);
		if (!err && !vhd_bitmap_full(bm, c->spb))
			kind_problem(c, K_BATMAP,
				     "batmap marks block %u as full but its bitmap is not",
				     i);
	}
	free(bm);
	free(map);
	return 0;
}

static int check_bitmaps(struct checker *c)
{
	size_t len = (size_t)c->bm_secs << VHD_SECTOR_SHIFT;
	uint8_t *bm;

	if (!c->opts->check_bitmaps)
		return 0;
	bm = malloc(len);
	if (!bm)
		return vhd_fail(c->path, ENOMEM, "out of memory for a bitmap");
	for (uint32_t i = 0; i < c->entries; i++) {
		int err;

		if (c->bat[i] == VHD_BAT_UNUSED || c->bad[i])
			continue;
		err = read_at(c, bm, len, (uint64_t)c->bat[i] << VHD_SECTOR_SHIFT);
		if (err)
			kind_problem(c, K_BITMAP,
				     "cannot read the bitmap of block %u: %s", i,
				     strerror(-err));
	}
	free(bm);
	return 0;
}

/* ---- parent locators and parents -------------------------------------- */

static bool in_qemu_block(const struct checker *c, uint64_t off, uint64_t len)
{
	uint64_t s;

	if (c->qemu_block == VHD_BAT_UNUSED)
		return false;
	s = (uint64_t)c->bat[c->qemu_block] << VHD_SECTOR_SHIFT;
	return overlaps(s, c->blk_bytes, off, len);
}

static int check_locators(struct checker *c)
{
	const struct vhd_header *h = &c->header;
	int decoded = 0, bad = 0, err;
	vhd_context_t fake;
	char out[4096];

	if (c->footer.type != VHD_TYPE_DIFF)
		return 0;
	for (int i = 0; i < VHD_LOC_COUNT; i++) {
		const struct vhd_locator *l = &h->loc[i];
		uint64_t space = vhd_locator_space(l);
		uint8_t *buf;

		if (!l->code)
			continue;
		if (!known_locator(l->code)) {
			problem(c, "parent locator %d has an unknown platform code 0x%08x",
				i, l->code);
			bad++;
			continue;
		}
		if (!space || !l->data_len || l->data_len > space) {
			problem(c, "parent locator %d: data length %u does not fit its space (%u)",
				i, l->data_len, l->data_space);
			bad++;
			continue;
		}
		if (l->data_offset & (VHD_SECTOR_SIZE - 1) ||
		    l->data_offset < VHD_FOOTER_SIZE || l->data_offset > c->limit ||
		    space > c->limit - l->data_offset) {
			problem(c, "parent locator %d at 0x%llx lies outside the file",
				i, (unsigned long long)l->data_offset);
			bad++;
			continue;
		}
		if (l->code != VHD_LOC_W2KU && l->code != VHD_LOC_W2RU &&
		    l->code != VHD_LOC_MACX)
			continue;	/* valid, but not ours to decode */
		if (in_qemu_block(c, l->data_offset, space)) {
			bad++;		/* reported with the block */
			continue;
		}
		if (l->data_len > LOC_MAX_DATA) {
			problem(c, "parent locator %d is too long (%u bytes)",
				i, l->data_len);
			bad++;
			continue;
		}
		buf = malloc(l->data_len);
		if (!buf)
			return vhd_fail(c->path, ENOMEM, "out of memory");
		err = read_at(c, buf, l->data_len, l->data_offset);
		if (err) {
			free(buf);
			return vhd_fail(c->path, err, "cannot read parent locator %d: %s",
					i, strerror(-err));
		}
		err = vhd_locator_decode(l->code, buf, l->data_len, out,
					 sizeof(out));
		free(buf);
		if (err) {
			problem(c, "parent locator %d cannot be decoded: %s", i,
				vhd_errmsg());
			bad++;
			continue;
		}
		decoded++;
	}
	if (!decoded) {
		if (!bad)
			problem(c, "differencing image without a parent locator");
		return 0;
	}

	/* Does the parent exist? */
	memset(&fake, 0, sizeof(fake));
	fake.fd = c->fd;
	fake.file = (char *)c->path;
	fake.footer = c->footer;
	fake.header = c->header;
	fake.footer_offset = c->limit;
	err = vhd_parent_path(&fake, false, &c->parent);
	if (err)
		problem(c, "%s", strip_name(c->path, vhd_errmsg()));
	return 0;
}

struct prefix_arg {
	struct checker	*c;
	const char	*name;
};

static void prefixed_report(void *arg, const char *msg)
{
	struct prefix_arg *p = arg;

	problem(p->c, "parent %s: %s", p->name, msg);
}

static int check_parents(struct checker *c)
{
	struct stat seen[VHD_MAX_CHAIN + 1];
	struct vhd_check_opts sub = *c->opts;
	char *cur = NULL;
	uuid_t expect;
	int n = 0;

	if (!c->opts->check_parents || !c->parent)
		return 0;
	if (fstat(c->fd, &seen[n++]))
		return 0;
	sub.check_parents = false;
	memcpy(expect, c->header.prt_uuid, sizeof(uuid_t));
	cur = strdup(c->parent);
	while (cur) {
		struct prefix_arg pa = { c, cur };
		vhd_context_t p;
		char *next = NULL;
		bool raw = uuid_is_null(expect);
		int err, i;

		if (n > VHD_MAX_CHAIN) {
			problem(c, "chain deeper than %d images", VHD_MAX_CHAIN);
			break;
		}
		if (stat(cur, &seen[n])) {
			problem(c, "parent not found: %s", cur);
			break;
		}
		for (i = 0; i < n; i++)
			if (seen[i].st_dev == seen[n].st_dev &&
			    seen[i].st_ino == seen[n].st_ino)
				break;
		if (i < n) {
			problem(c, "parent loop: %s appears twice in the chain",
				cur);
			break;
		}
		n++;
		if (raw)
			break;	/* a raw parent has no structure to check */
		err = vhd_check(cur, &sub, prefixed_report, &pa);
		if (err < 0) {
			problem(c, "parent %s cannot be read: %s", cur,
				strip_name(cur, vhd_errmsg()));
			break;
		}
		if (err > 0)
			break;	/* its problems are reported; stop there */
		if (vhd_open(&p, cur, VHD_OPEN_RDONLY | VHD_OPEN_LENIENT)) {
			problem(c, "parent %s cannot be opened: %s", cur,
				strip_name(cur, vhd_errmsg()));
			break;
		}
		if (!c->opts->ignore_parent_uuid &&
		    uuid_compare(expect, p.footer.uuid)) {
			char want[37], got[37];

			uuid_unparse(expect, want);
			uuid_unparse(p.footer.uuid, got);
			problem(c, "parent %s has uuid %s but its child expects %s",
				cur, got, want);
		}
		if (p.footer.type == VHD_TYPE_DIFF &&
		    vhd_parent_path(&p, false, &next) == 0)
			memcpy(expect, p.header.prt_uuid, sizeof(uuid_t));
		vhd_close(&p);
		free(cur);
		cur = next;
	}
	free(cur);
	return 0;
}

/* ---- entry point ------------------------------------------------------ */

static int run_checks(struct checker *c)
{
	int err;

	err = check_footers(c);
	if (err)
		return err < 0 ? err : 0;
	check_footer_fields(c);
	if (c->footer.type == VHD_TYPE_FIXED)
		return check_fixed(c);
	err = check_header(c);
	if (err) {
		report_primary_footer(c);
		return err < 0 ? err : 0;
	}
	collect_regions(c);
	err = check_bat(c);
	if (err)
		return err;
	report_primary_footer(c);
	report_qemu_block(c);
	check_regions(c);
	err = check_batmap(c);
	if (!err)
		err = check_bitmaps(c);
	kind_summaries(c);
	if (!err)
		err = check_locators(c);
	if (!err)
		err = check_parents(c);
	return err;
}

int vhd_check(const char *path, const struct vhd_check_opts *opts,
	      void (*report)(void *arg, const char *msg), void *arg)
{
	static const struct vhd_check_opts defaults;
	struct checker c;
	struct stat st;
	int err;

	memset(&c, 0, sizeof(c));
	c.path = path;
	c.opts = opts ? opts : &defaults;
	c.report = report;
	c.arg = arg;
	c.qemu_block = VHD_BAT_UNUSED;
	c.fd = open(path, O_RDONLY | O_CLOEXEC);
	if (c.fd < 0)
		return vhd_fail(path, errno, "cannot open: %s", strerror(errno));
	if (fstat(c.fd, &st)) {
		err = vhd_fail(path, errno, "cannot stat: %s", strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		err = vhd_fail(path, EINVAL, "not a regular file or block device");
		goto out;
	}
	{
		int64_t size = vhd_file_size(c.fd);

		if (size < 0) {
			err = vhd_fail(path, (int)size, "cannot stat: %s",
				       strerror((int)-size));
			goto out;
		}
		c.size = (uint64_t)size;
	}
	err = run_checks(&c);
out:
	close(c.fd);
	free(c.bat);
	free(c.bad);
	free(c.parent);
	return err < 0 ? err : c.problems;
}
