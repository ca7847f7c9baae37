/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Helpers shared by the libvhd sources; not part of the public API. */
#ifndef LIBVHD_PRIVATE_H
#define LIBVHD_PRIVATE_H

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "libvhd.h"

#define VHD_COOKIE		"conectix"
#define VHD_HDR_COOKIE		"cxsparse"
#define VHD_BATMAP_COOKIE	"tdbatmap"
#define VHD_FF_VERSION		0x00010000u
#define VHD_HDR_VERSION		0x00010000u
#define VHD_FEATURES_RESERVED	0x00000002u
#define VHD_CREATOR_APP		"tap"	/* with its NUL: "tap\0" */
#define VHD_CREATOR_VERSION	0x00010003u
#define VHD_CREATOR_OS		0x00000000u

static inline uint16_t get_be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static inline uint32_t get_be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

static inline uint64_t get_be64(const uint8_t *p)
{
	return (uint64_t)get_be32(p) << 32 | get_be32(p + 4);
}

static inline void put_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static inline void put_be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static inline void put_be64(uint8_t *p, uint64_t v)
{
	put_be32(p, (uint32_t)(v >> 32));
	put_be32(p + 4, (uint32_t)v);
}

static inline uint64_t round_up(uint64_t v, uint64_t align)
{
	return (v + align - 1) / align * align;
}

static inline uint64_t secs_round_up(uint64_t bytes)
{
	return (bytes + VHD_SECTOR_SIZE - 1) >> VHD_SECTOR_SHIFT;
}

/* Full-length pread/pwrite; -errno on failure, -EIO on a short read. */
int vhd_pread_full(int fd, void *buf, size_t len, uint64_t off);
int vhd_pwrite_full(int fd, const void *buf, size_t len, uint64_t off);
/*
 * Make what was written to @fd stable (fdatasync: enough for data and for
 * size changes); names @file in the error.
 */
int vhd_sync(int fd, const char *file);
/* Rewrite the BAT sector holding @block's entry from ctx->bat. */
int vhd_write_bat_entry(vhd_context_t *ctx, uint32_t block);
/* Write the current footer at @off and make it the primary one (no sync). */
int vhd_move_footer(vhd_context_t *ctx, uint64_t off);
/*
 * Move @block (bitmap and data) to byte offset @dst at or past the end of
 * the data: the footer first moves past it if needed, the copy is made
 * stable, and only then the BAT entry points at it.  @step, when not NULL,
 * is called with 10 once the copy is stable and 11 once the BAT entry is.
 */
int vhd_relocate_block(vhd_context_t *ctx, uint32_t block, uint64_t dst,
		       void (*step)(int));
/* Name the file in an error and return -err. */
int vhd_fail(const char *file, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * Call @overlap for each allocated BAT entry (not flagged in @skip, which
 * may be NULL) whose block of @blen bytes overlaps an earlier one; stops
 * at the first non-zero return, which it returns.  -ENOMEM on no memory.
 */
int vhd_bat_overlaps(const uint32_t *bat, uint32_t entries,
		     const uint8_t *skip, uint64_t blen,
		     int (*overlap)(void *arg, uint32_t a, uint32_t b,
				    uint64_t sa, uint64_t sb),
		     void *arg);
/* Layout helpers for dynamic images. */
uint64_t vhd_bat_bytes(uint32_t entries);
uint64_t vhd_batmap_bytes(uint32_t entries);
int vhd_read_batmap(vhd_context_t *ctx);
/* The file's size in bytes, or -errno. */
int64_t vhd_file_size(int fd);
/*
 * Test hook: called at each step of a journaled resize or revert (step
 * numbers are defined in resize.c).  NULL in production; crash tests set
 * it to kill the process at a chosen step.
 */
extern void (*vhd_resize_step_hook)(int step);
#endif
