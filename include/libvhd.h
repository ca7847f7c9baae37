/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * libvhd: reading, writing, creating and checking VHD images.
 *
 * All on-disk fields are big-endian; the structures below hold them in
 * host order.  Functions return 0 (or a non-negative count) on success and
 * a negative errno on failure; after a failure vhd_errmsg() holds a one-line
 * description naming the file and the problem.
 *
 * Crash safety of block allocation: the footer is first written at the new
 * end of file (so the file always ends in a valid footer), then the data and
 * the bitmap are written and flushed, and only then the BAT entry that makes
 * the block visible.  A crash leaves at worst an unreferenced gap.
 */
#ifndef LIBVHD_H
#define LIBVHD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uuid/uuid.h>

#define VHD_SECTOR_SHIFT	9
#define VHD_SECTOR_SIZE		512u
#define VHD_MAX_SECTORS		0xFF000000ull		/* 2040 GiB */
#define VHD_MAX_BYTES		(VHD_MAX_SECTORS << VHD_SECTOR_SHIFT)
#define VHD_BLOCK_SIZE		(2u << 20)		/* default, 2 MiB */
#define VHD_BLOCK_SHIFT		21
#define VHD_DATA_ALIGN		4096u	/* data of new blocks starts here */
#define VHD_MAX_CHAIN		256	/* deepest chain we follow */

#define VHD_FOOTER_SIZE		512
#define VHD_HEADER_SIZE		1024
#define VHD_BAT_UNUSED		0xFFFFFFFFu

#define VHD_TYPE_FIXED		2
#define VHD_TYPE_DYNAMIC	3
#define VHD_TYPE_DIFF		4

#define VHD_LOC_W2KU		0x57326B75u	/* absolute path, UTF-16LE */
#define VHD_LOC_W2RU		0x57327275u	/* relative path, UTF-16LE */
#define VHD_LOC_MACX		0x4D616358u	/* file:// URL, UTF-8 */
#define VHD_LOC_COUNT		8

#define VHD_BATMAP_VERSION	0x00010002u	/* 1.2: has the marker */

struct vhd_footer {
	char		cookie[8];	/* "conectix" */
	uint32_t	features;
	uint32_t	ff_version;
	uint64_t	data_offset;
	uint32_t	timestamp;	/* seconds since 2000-01-01 UTC */
	char		crtr_app[4];
	uint32_t	crtr_ver;
	uint32_t	crtr_os;
	uint64_t	orig_size;
	uint64_t	curr_size;
	uint32_t	geometry;	/* cyl << 16 | heads << 8 | spt */
	uint32_t	type;
	uint32_t	checksum;
	uuid_t		uuid;
	uint8_t		saved;
	uint8_t		hidden;		/* blktap extension, byte 85 */
	uint8_t		reserved[426];
};

struct vhd_locator {
	uint32_t	code;
	uint32_t	data_space;	/* sectors, or bytes from some tools */
	uint32_t	data_len;	/* bytes */
	uint32_t	res;
	uint64_t	data_offset;	/* bytes */
};

struct vhd_header {
	char		cookie[8];	/* "cxsparse" */
	uint64_t	data_offset;
	uint64_t	table_offset;
	uint32_t	hdr_ver;
	uint32_t	max_bat_size;
	uint32_t	block_size;
	uint32_t	checksum;
	uuid_t		prt_uuid;	/* all zero: the parent is raw */
	uint32_t	prt_ts;
	uint32_t	res1;
	uint16_t	prt_name[256];	/* UTF-16BE, as the spec says */
	struct vhd_locator loc[VHD_LOC_COUNT];
	uint8_t		res2[256];
};

/* blktap's batmap: one bit per block, set when every sector is present. */
struct vhd_batmap_header {
	char		cookie[8];	/* "tdbatmap" */
	uint64_t	batmap_offset;	/* bytes */
	uint32_t	batmap_size;	/* sectors */
	uint32_t	batmap_version;
	uint32_t	checksum;	/* ~(byte sum of the map sectors) */
	uint8_t		marker;
};

/* Flags for vhd_open(). */
#define VHD_OPEN_RDONLY		0x0001
#define VHD_OPEN_RDWR		0x0002
#define VHD_OPEN_LENIENT	0x0004	/* open damaged images, for check/repair */
#define VHD_OPEN_IGNORE_BATMAP	0x0008
#define VHD_OPEN_RAW		0x0010	/* the file is a raw image, not a VHD */
#define VHD_OPEN_DIRECT		0x0020	/* O_DIRECT on the data fd */

typedef struct vhd_context {
	int		fd;
	char		*file;
	int		oflags;		/* VHD_OPEN_* */
	bool		raw;		/* a raw image in a chain */
	uint64_t	raw_size;	/* bytes, raw images only */

	struct vhd_footer footer;
	struct vhd_header header;	/* dynamic and differencing only */

	uint32_t	*bat;		/* header.max_bat_size entries */
	uint32_t	spb;		/* sectors per block */
	uint32_t	bm_secs;	/* bitmap sectors per block */

	bool		has_batmap;	/* a valid batmap was found */
	struct vhd_batmap_header batmap_hdr;
	uint8_t		*batmap;	/* batmap_size sectors */

	uint64_t	footer_offset;	/* where the primary footer lives */
	uint64_t	next_block;	/* byte offset for the next new block */
} vhd_context_t;

/* The message of the last failure in this thread. */
const char *vhd_errmsg(void);
void vhd_set_error(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));

/* ---- on-disk codecs (pure functions, no I/O; fuzzed) ---- */
uint32_t vhd_checksum(const uint8_t *buf, size_t len, size_t csum_off);
void vhd_footer_encode(const struct vhd_footer *f, uint8_t buf[512]);
/* 0, or -EINVAL with vhd_errmsg() set: bad cookie, checksum, type... */
int vhd_footer_decode(struct vhd_footer *f, const uint8_t buf[512]);
/* blktap writes a batmap into its images from creator version 1.2. */
bool vhd_footer_expects_batmap(const struct vhd_footer *f);
void vhd_header_encode(const struct vhd_header *h, uint8_t buf[1024]);
int vhd_header_decode(struct vhd_header *h, const uint8_t buf[1024]);
void vhd_batmap_header_encode(const struct vhd_batmap_header *b,
			      uint8_t buf[512]);
int vhd_batmap_header_decode(struct vhd_batmap_header *b,
			     const uint8_t buf[512]);
/*
 * Check a BAT against the file layout: every entry must lie within
 * [data_start, file_end) and no two blocks may overlap.  On failure names
 * the first bad entry.
 */
int vhd_bat_validate(const uint32_t *bat, uint32_t entries,
		     uint32_t block_sectors, uint64_t data_start,
		     uint64_t file_end);
/* Bytes of locator data space, accepting sectors or bytes. */
uint64_t vhd_locator_space(const struct vhd_locator *loc);
/*
 * Decode a locator's payload into a UTF-8 path.  W2ku/W2ru are UTF-16LE
 * with backslashes; MacX is a file:// URL.  Returns 0 or -EINVAL.
 */
int vhd_locator_decode(uint32_t code, const uint8_t *data, size_t len,
		       char *out, size_t outlen);

/*
 * The header's parent name (UTF-16BE) as UTF-8, for display: a bad
 * surrogate shows as '?' and a long name is cut to fit @len.
 */
void vhd_header_parent_name(const struct vhd_header *h, char *out, size_t len);
/* CHS geometry of the specification for a size in sectors. */
uint32_t vhd_chs(uint64_t sectors);
uint32_t vhd_time_now(void);
time_t vhd_time_to_unix(uint32_t vhd_time);
const char *vhd_type_name(uint32_t type);

/* ---- images ---- */
int vhd_open(vhd_context_t *ctx, const char *path, int flags);
void vhd_close(vhd_context_t *ctx);

/* Virtual size of the image in sectors. */
uint64_t vhd_sectors(const vhd_context_t *ctx);
static inline bool vhd_is_dynamic(const vhd_context_t *ctx)
{
	return !ctx->raw && ctx->footer.type != VHD_TYPE_FIXED;
}

#define VHD_CREATE_FIXED	0x1	/* preallocate: a fixed image */
#define VHD_CREATE_PARENT_RAW	0x2	/* snapshot of a raw file */
#define VHD_CREATE_ALLOW_EMPTY	0x4	/* internal: skip parent checks */

/*
 * Create an image of @bytes (rounded up to whole blocks for dynamic
 * images).  @reserve_bytes, when larger, sizes the BAT for a later fast
 * resize.  Refuses more than 2040 GiB.
 */
int vhd_create(const char *path, uint64_t bytes, uint64_t reserve_bytes,
	       int flags);
/* Create @child on top of @parent; @bytes 0 means the parent's size. */
int vhd_snapshot(const char *child, uint64_t bytes, const char *parent,
		 uint64_t reserve_bytes, int flags);

/* Sector offset of a block, or VHD_BAT_UNUSED. */
uint32_t vhd_bat_entry(const vhd_context_t *ctx, uint32_t block);
uint32_t vhd_blocks(const vhd_context_t *ctx);	/* for the virtual size */
/* Byte offset where metadata ends and data blocks may start. */
uint64_t vhd_metadata_end(const vhd_context_t *ctx);
/*
 * Byte offset where the image's contents end: the end of the metadata or
 * of the last data block, whichever is further (fixed: the virtual size).
 */
uint64_t vhd_end_of_data(const vhd_context_t *ctx);
/*
 * Layout, for writers outside libvhd (tapdisk's asynchronous VHD driver):
 * where a new block at or after byte @end must start so that its data is
 * 4 KiB aligned, and the offset of the batmap header (right after the
 * sector-padded BAT).
 */
uint64_t vhd_align_block(uint64_t end, uint32_t bm_secs);
uint64_t vhd_batmap_header_offset(const vhd_context_t *ctx);
int vhd_read_bitmap(vhd_context_t *ctx, uint32_t block, uint8_t *bm);
int vhd_write_bitmap(vhd_context_t *ctx, uint32_t block, const uint8_t *bm);
bool vhd_bitmap_test(const uint8_t *bm, uint32_t bit);
void vhd_bitmap_set(uint8_t *bm, uint32_t bit);
/* Are the first @bits bits all set (every sector of a block present)? */
bool vhd_bitmap_full(const uint8_t *bm, uint32_t bits);
bool vhd_batmap_test(const vhd_context_t *ctx, uint32_t block);
/* Set or clear a batmap bit and store the map and header in one write. */
int vhd_batmap_update(vhd_context_t *ctx, uint32_t block, bool full);
/* Store the whole batmap (map and header) from memory. */
int vhd_write_batmap(vhd_context_t *ctx);
/* Allocate @block: footer moved, zero bitmap written, BAT entry last. */
int vhd_allocate_block(vhd_context_t *ctx, uint32_t block);

/*
 * Sector I/O on one image.  Reads return zeros for sectors the image does
 * not hold (dynamic) and set bits in @present (one per sector, may be
 * NULL) for sectors it does hold.  Writes allocate blocks as needed.
 */
int vhd_io_read(vhd_context_t *ctx, void *buf, uint64_t sec, uint32_t count,
		uint8_t *present);
int vhd_io_write(vhd_context_t *ctx, const void *buf, uint64_t sec,
		 uint32_t count);

/* Make everything written to the image so far stable on disk. */
int vhd_flush(vhd_context_t *ctx);
/* Rewrite the footer (both copies), the header, or the whole BAT. */
int vhd_write_footer(vhd_context_t *ctx, const struct vhd_footer *f);
int vhd_write_header(vhd_context_t *ctx, const struct vhd_header *h);
int vhd_write_bat(vhd_context_t *ctx);
int vhd_set_hidden(vhd_context_t *ctx, uint8_t hidden);
int vhd_set_marker(vhd_context_t *ctx, uint8_t marker);
int vhd_get_marker(const vhd_context_t *ctx, uint8_t *marker);

/* ---- parents and chains ---- */
/*
 * Resolve the parent's path.  Tries the relative locator (against the
 * child's directory), then MacX, then the absolute one, and returns the
 * first that exists; malloc'd into *out.  With @unresolved, returns the
 * stored text without touching the file system.
 */
int vhd_parent_path(const vhd_context_t *ctx, bool unresolved, char **out);
/* Rewrite the parent locators (and uuid and name) to point at @parent. */
int vhd_set_parent(vhd_context_t *ctx, const char *parent, bool parent_raw);

typedef struct vhd_chain {
	int		depth;		/* images, leaf first */
	vhd_context_t	*img[VHD_MAX_CHAIN];
} vhd_chain_t;

/*
 * Open @leaf with @flags and its ancestors read-only.  Fails naming the
 * problem on a missing parent, a parent loop, a uuid mismatch or a chain
 * deeper than VHD_MAX_CHAIN.
 */
int vhd_chain_open(vhd_chain_t *chain, const char *leaf, int flags);
void vhd_chain_close(vhd_chain_t *chain);
/* Read through the chain: each sector from the first image that has it. */
int vhd_chain_read(vhd_chain_t *chain, void *buf, uint64_t sec,
		   uint32_t count);
/* Writes go to the leaf. */
int vhd_chain_write(vhd_chain_t *chain, const void *buf, uint64_t sec,
		    uint32_t count);

/* ---- checking ---- */
struct vhd_check_opts {
	bool	ignore_footer_copy;	/* -i */
	bool	ignore_parent_uuid;	/* -I */
	bool	ignore_timestamps;	/* -t */
	bool	check_bitmaps;		/* -b */
	bool	check_parents;		/* -p */
	bool	ignore_batmap;		/* -B */
};
/*
 * Check an image.  Every problem found is reported through @report (one
 * line each, naming the problem); returns the number of problems, or a
 * negative errno when the file cannot be read at all.
 */
int vhd_check(const char *path, const struct vhd_check_opts *opts,
	      void (*report)(void *arg, const char *msg), void *arg);

/*
 * Make a damaged image clean: a footer restored from its good copy and
 * placed after the data, a header checksum fixed, blocks moved off the
 * batmap area (where QEMU puts its first block), and the batmap rebuilt
 * from the bitmaps when damaged or when @rebuild_batmap.  Each change is
 * described through @report (may be NULL).  0 or a negative errno.
 */
int vhd_repair(const char *path, bool rebuild_batmap,
	       void (*report)(void *arg, const char *msg), void *arg);

/* ---- resize ---- */
/* Largest size in bytes reachable by a fast resize. */
uint64_t vhd_max_fast_resize(const vhd_context_t *ctx);
int vhd_resize_fast(vhd_context_t *ctx, uint64_t bytes);
/* Resize with an undo journal at @journal; removed when done. */
int vhd_resize_journaled(const char *path, uint64_t bytes,
			 const char *journal);
/* Undo an interrupted journaled resize. */
int vhd_journal_revert(const char *path, const char *journal);

#endif /* LIBVHD_H */
