// SPDX-License-Identifier: LGPL-2.1-or-later
/* Sizes, counts and whole-image metadata rewrites used by vhd-util. */
#include <stdlib.h>
#include <unistd.h>

#include "libvhd-info.h"
#include "private.h"

int vhd_phys_size(const vhd_context_t *ctx, uint64_t *bytes)
{
	int64_t size;

	if (vhd_is_dynamic(ctx)) {
		*bytes = vhd_end_of_data(ctx) + VHD_FOOTER_SIZE;
		return 0;
	}
	size = vhd_file_size(ctx->fd);
	if (size < 0)
		return vhd_fail(ctx->file, (int)size, "cannot stat: %s",
				strerror((int)-size));
	*bytes = (uint64_t)size;
	return 0;
}

uint32_t vhd_allocated_blocks(const vhd_context_t *ctx)
{
	uint32_t i, n = 0;

	if (!vhd_is_dynamic(ctx))
		return (uint32_t)((vhd_sectors(ctx) + (VHD_BLOCK_SIZE >> 9) - 1) /
				  (VHD_BLOCK_SIZE >> 9));
	for (i = 0; i < ctx->header.max_bat_size; i++)
		if (ctx->bat[i] != VHD_BAT_UNUSED)
			n++;
	return n;
}

int vhd_chain_depth(const char *path, int *depth)
{
	vhd_chain_t chain;
	int err;

	err = vhd_chain_open(&chain, path, VHD_OPEN_RDONLY);
	if (err)
		return err;
	*depth = chain.depth;
	vhd_chain_close(&chain);
	return 0;
}

/* Write the footer at @off, make it stable, then cut the file after it. */
static int end_file_at(vhd_context_t *ctx, uint64_t off)
{
	uint64_t old = ctx->footer_offset;
	int err;

	ctx->footer_offset = off;
	err = vhd_write_footer(ctx, &ctx->footer);
	if (!err)
		err = vhd_sync(ctx->fd, ctx->file);
	if (err) {
		ctx->footer_offset = old;
		return err;
	}
	if (ftruncate(ctx->fd, (off_t)(off + VHD_FOOTER_SIZE)))
		return vhd_fail(ctx->file, errno, "cannot truncate: %s",
				strerror(errno));
	if (old < off) {
		/* Grown: the old footer stays as dead bytes; blank it. */
		uint8_t zero[512] = { 0 };

		err = vhd_pwrite_full(ctx->fd, zero, sizeof(zero), old);
		if (err)
			return vhd_fail(ctx->file, err,
					"cannot clear the old footer: %s",
					strerror(-err));
	}
	return vhd_sync(ctx->fd, ctx->file);
}

int vhd_zero(vhd_context_t *ctx)
{
	uint32_t i;
	int err;

	if (!vhd_is_dynamic(ctx))
		return vhd_fail(ctx->file, ENOSYS,
				"only dynamic and differencing images can be zeroed");
	if (!(ctx->oflags & VHD_OPEN_RDWR))
		return vhd_fail(ctx->file, EROFS, "image is open read-only");
	/* 1. A clear batmap bit only means "consult the bitmap": safe. */
	if (ctx->has_batmap) {
		memset(ctx->batmap, 0,
		       (size_t)ctx->batmap_hdr.batmap_size << VHD_SECTOR_SHIFT);
		err = vhd_write_batmap(ctx);
		if (!err)
			err = vhd_sync(ctx->fd, ctx->file);
		if (err)
			return err;
	}
	/* 2. The blocks vanish; the old footer still ends the file. */
	for (i = 0; i < ctx->header.max_bat_size; i++)
		ctx->bat[i] = VHD_BAT_UNUSED;
	err = vhd_write_bat(ctx);
	if (!err)
		err = vhd_sync(ctx->fd, ctx->file);
	if (err)
		return err;
	/* 3. Footer at the end of the metadata, then truncate. */
	ctx->next_block = vhd_metadata_end(ctx);
	return end_file_at(ctx, ctx->next_block);
}

int vhd_set_phys_size(vhd_context_t *ctx, uint64_t bytes)
{
	uint64_t min;

	if (!vhd_is_dynamic(ctx))
		return vhd_fail(ctx->file, ENOSYS,
				"the physical size of a fixed image is fixed");
	if (!(ctx->oflags & VHD_OPEN_RDWR))
		return vhd_fail(ctx->file, EROFS, "image is open read-only");
	min = vhd_end_of_data(ctx) + VHD_FOOTER_SIZE;
	if (bytes % VHD_SECTOR_SIZE)
		return vhd_fail(ctx->file, EINVAL,
				"physical size %llu is not a multiple of 512",
				(unsigned long long)bytes);
	if (bytes < min)
		return vhd_fail(ctx->file, EINVAL,
				"physical size %llu is below the end of data + footer (%llu)",
				(unsigned long long)bytes,
				(unsigned long long)min);
	if (bytes - VHD_FOOTER_SIZE == ctx->footer_offset)
		return 0;
	return end_file_at(ctx, bytes - VHD_FOOTER_SIZE);
}
