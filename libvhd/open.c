// SPDX-License-Identifier: LGPL-2.1-or-later
/* Opening an image: footer, header, BAT and batmap, each validated. */
#include <fcntl.h>
#include <linux/fs.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "private.h"

int vhd_pread_full(int fd, void *buf, size_t len, uint64_t off)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = pread(fd, p, len, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

int vhd_pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

int vhd_fail(const char *file, int err, const char *fmt, ...)
{
	char msg[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	vhd_set_error("%s: %s", file, msg);
	return err < 0 ? err : -err;
}

int vhd_sync(int fd, const char *file)
{
	if (fdatasync(fd))
		return vhd_fail(file, errno, "fdatasync: %s", strerror(errno));
	return 0;
}

int64_t vhd_file_size(int fd)
{
	struct stat st;

	if (fstat(fd, &st))
		return -errno;
	if (S_ISBLK(st.st_mode)) {
		uint64_t bytes;

		if (ioctl(fd, BLKGETSIZE64, &bytes))
			return -errno;
		return (int64_t)bytes;
	}
	return st.st_size;
}

uint64_t vhd_bat_bytes(uint32_t entries)
{
	return secs_round_up((uint64_t)entries * 4) << VHD_SECTOR_SHIFT;
}

uint64_t vhd_batmap_bytes(uint32_t entries)
{
	return secs_round_up(((uint64_t)entries + 7) / 8) << VHD_SECTOR_SHIFT;
}

uint64_t vhd_align_block(uint64_t end, uint32_t bm_secs)
{
	uint64_t bm = (uint64_t)bm_secs << VHD_SECTOR_SHIFT;

	return round_up(end + bm, VHD_DATA_ALIGN) - bm;
}

uint64_t vhd_batmap_header_offset(const vhd_context_t *ctx)
{
	return ctx->header.table_offset + vhd_bat_bytes(ctx->header.max_bat_size);
}

uint64_t vhd_sectors(const vhd_context_t *ctx)
{
	if (ctx->raw)
		return ctx->raw_size >> VHD_SECTOR_SHIFT;
	return ctx->footer.curr_size >> VHD_SECTOR_SHIFT;
}

uint32_t vhd_blocks(const vhd_context_t *ctx)
{
	if (!vhd_is_dynamic(ctx))
		return 0;
	return (uint32_t)((ctx->footer.curr_size + ctx->header.block_size - 1) /
			  ctx->header.block_size);
}

uint32_t vhd_bat_entry(const vhd_context_t *ctx, uint32_t block)
{
	if (!vhd_is_dynamic(ctx) || block >= ctx->header.max_bat_size)
		return VHD_BAT_UNUSED;
	return ctx->bat[block];
}

uint64_t vhd_metadata_end(const vhd_context_t *ctx)
{
	const struct vhd_header *h = &ctx->header;
	uint64_t end = VHD_FOOTER_SIZE, e;
	int i;

	if (!vhd_is_dynamic(ctx))
		return 0;
	e = ctx->footer.data_offset + VHD_HEADER_SIZE;
	if (e > end)
		end = e;
	e = h->table_offset + vhd_bat_bytes(h->max_bat_size);
	if (e > end)
		end = e;
	if (ctx->has_batmap) {
		e = ctx->batmap_hdr.batmap_offset +
		    ((uint64_t)ctx->batmap_hdr.batmap_size << VHD_SECTOR_SHIFT);
		if (e > end)
			end = e;
		e = vhd_batmap_header_offset(ctx) + VHD_SECTOR_SIZE;
		if (e > end)
			end = e;
	}
	for (i = 0; i < VHD_LOC_COUNT; i++) {
		const struct vhd_locator *l = &h->loc[i];

		if (!l->code || !l->data_len || l->data_offset >= ctx->footer_offset)
			continue;
		e = l->data_offset + vhd_locator_space(l);
		if (e > end && e <= ctx->footer_offset)
			end = e;
	}
	return end;
}

uint64_t vhd_end_of_data(const vhd_context_t *ctx)
{
	uint64_t end, blk;
	uint32_t i;

	if (ctx->raw)
		return ctx->raw_size;
	if (!vhd_is_dynamic(ctx))
		return ctx->footer.curr_size;
	end = vhd_metadata_end(ctx);
	blk = (uint64_t)(ctx->spb + ctx->bm_secs) << VHD_SECTOR_SHIFT;
	for (i = 0; i < ctx->header.max_bat_size; i++) {
		uint64_t e;

		if (ctx->bat[i] == VHD_BAT_UNUSED)
			continue;
		e = ((uint64_t)ctx->bat[i] << VHD_SECTOR_SHIFT) + blk;
		if (e > end)
			end = e;
	}
	return end;
}

int vhd_read_batmap(vhd_context_t *ctx)
{
	struct vhd_batmap_header *b = &ctx->batmap_hdr;
	uint8_t buf[512];
	uint64_t off = vhd_batmap_header_offset(ctx), need;
	uint32_t sum;
	int err;

	ctx->has_batmap = false;
	free(ctx->batmap);
	ctx->batmap = NULL;
	if (off + VHD_SECTOR_SIZE > ctx->footer_offset)
		return vhd_fail(ctx->file, EINVAL, "no batmap (no room after the BAT)");
	err = vhd_pread_full(ctx->fd, buf, sizeof(buf), off);
	if (err)
		return vhd_fail(ctx->file, err, "cannot read batmap header: %s",
				strerror(-err));
	err = vhd_batmap_header_decode(b, buf);
	if (err)
		return vhd_fail(ctx->file, err, "%s", vhd_errmsg());
	need = vhd_batmap_bytes(ctx->header.max_bat_size);
	if (((uint64_t)b->batmap_size << VHD_SECTOR_SHIFT) < need)
		return vhd_fail(ctx->file, EINVAL,
				"batmap of %u sectors is too small for %u blocks",
				b->batmap_size, ctx->header.max_bat_size);
	if (b->batmap_offset < off + VHD_SECTOR_SIZE ||
	    b->batmap_offset + ((uint64_t)b->batmap_size << VHD_SECTOR_SHIFT) >
	    ctx->footer_offset)
		return vhd_fail(ctx->file, EINVAL,
				"batmap at 0x%llx lies outside the metadata",
				(unsigned long long)b->batmap_offset);
	ctx->batmap = malloc((size_t)b->batmap_size << VHD_SECTOR_SHIFT);
	if (!ctx->batmap)
		return vhd_fail(ctx->file, ENOMEM, "out of memory for the batmap");
	err = vhd_pread_full(ctx->fd, ctx->batmap,
			     (size_t)b->batmap_size << VHD_SECTOR_SHIFT,
			     b->batmap_offset);
	if (err) {
		free(ctx->batmap);
		ctx->batmap = NULL;
		return vhd_fail(ctx->file, err, "cannot read batmap: %s",
				strerror(-err));
	}
	sum = vhd_checksum(ctx->batmap,
			   (size_t)b->batmap_size << VHD_SECTOR_SHIFT, SIZE_MAX);
	if (sum != b->checksum) {
		free(ctx->batmap);
		ctx->batmap = NULL;
		return vhd_fail(ctx->file, EINVAL,
				"bad batmap checksum 0x%08x (computed 0x%08x)",
				b->checksum, sum);
	}
	ctx->has_batmap = true;
	return 0;
}

static int open_raw(vhd_context_t *ctx)
{
	int64_t size = vhd_file_size(ctx->fd);

	if (size < 0)
		return vhd_fail(ctx->file, (int)size, "cannot stat: %s",
				strerror((int)-size));
	ctx->raw = true;
	ctx->raw_size = (uint64_t)size & ~(uint64_t)(VHD_SECTOR_SIZE - 1);
	return 0;
}

static int read_footer(vhd_context_t *ctx, uint64_t size)
{
	uint8_t buf[512];
	char endmsg[256];
	int err;

	if (size < VHD_FOOTER_SIZE)
		return vhd_fail(ctx->file, EINVAL,
				"file too small (%llu bytes) to be a VHD",
				(unsigned long long)size);
	ctx->footer_offset = (size - VHD_FOOTER_SIZE) &
			     ~(uint64_t)(VHD_SECTOR_SIZE - 1);
	err = vhd_pread_full(ctx->fd, buf, sizeof(buf), ctx->footer_offset);
	if (err)
		return vhd_fail(ctx->file, err, "cannot read footer: %s",
				strerror(-err));
	err = vhd_footer_decode(&ctx->footer, buf);
	if (!err)
		return 0;
	snprintf(endmsg, sizeof(endmsg), "%s", vhd_errmsg());

	/* A damaged primary footer: the copy at offset 0 may be intact. */
	if (vhd_pread_full(ctx->fd, buf, sizeof(buf), 0) == 0 &&
	    vhd_footer_decode(&ctx->footer, buf) == 0 &&
	    ctx->footer.type != VHD_TYPE_FIXED) {
		if (ctx->oflags & VHD_OPEN_LENIENT) {
			/* Nothing at the end is trusted: repair rewrites it. */
			ctx->footer_offset = size & ~(uint64_t)(VHD_SECTOR_SIZE - 1);
			return 0;
		}
		return vhd_fail(ctx->file, EINVAL,
				"%s at end of file (the copy at offset 0 is intact; try 'vhd-util repair')",
				endmsg);
	}
	return vhd_fail(ctx->file, EINVAL, "%s", endmsg);
}

static int read_header_and_bat(vhd_context_t *ctx, uint64_t size)
{
	struct vhd_header *h = &ctx->header;
	uint8_t buf[1024];
	uint64_t bat_bytes, end;
	uint32_t i;
	int err;

	if (ctx->footer.data_offset + VHD_HEADER_SIZE > size)
		return vhd_fail(ctx->file, EINVAL,
				"header offset 0x%llx lies past the end of the file",
				(unsigned long long)ctx->footer.data_offset);
	err = vhd_pread_full(ctx->fd, buf, sizeof(buf), ctx->footer.data_offset);
	if (err)
		return vhd_fail(ctx->file, err, "cannot read header: %s",
				strerror(-err));
	err = vhd_header_decode(h, buf);
	if (err)
		return vhd_fail(ctx->file, err, "%s", vhd_errmsg());
	if ((uint64_t)h->max_bat_size * h->block_size < ctx->footer.curr_size)
		return vhd_fail(ctx->file, EINVAL,
				"BAT of %u entries is too small for a %llu MiB disk",
				h->max_bat_size,
				(unsigned long long)(ctx->footer.curr_size >> 20));
	bat_bytes = vhd_bat_bytes(h->max_bat_size);
	if (h->table_offset + bat_bytes > ctx->footer_offset)
		return vhd_fail(ctx->file, EINVAL,
				"BAT at 0x%llx runs past the end of the file",
				(unsigned long long)h->table_offset);
	ctx->spb = h->block_size >> VHD_SECTOR_SHIFT;
	ctx->bm_secs = (uint32_t)secs_round_up(ctx->spb / 8);
	ctx->bat = malloc(bat_bytes ? bat_bytes : 1);
	if (!ctx->bat)
		return vhd_fail(ctx->file, ENOMEM, "out of memory for the BAT");
	err = vhd_pread_full(ctx->fd, ctx->bat, bat_bytes, h->table_offset);
	if (err)
		return vhd_fail(ctx->file, err, "cannot read BAT: %s",
				strerror(-err));
	for (i = 0; i < h->max_bat_size; i++)
		ctx->bat[i] = get_be32((uint8_t *)&ctx->bat[i]);

	if (!(ctx->oflags & VHD_OPEN_IGNORE_BATMAP))
		vhd_read_batmap(ctx);	/* optional: absence is not an error */

	end = vhd_metadata_end(ctx);
	err = vhd_bat_validate(ctx->bat, h->max_bat_size,
			       ctx->spb + ctx->bm_secs, end, ctx->footer_offset);
	if (err && !(ctx->oflags & VHD_OPEN_LENIENT))
		return vhd_fail(ctx->file, err, "%s", vhd_errmsg());

	ctx->next_block = vhd_end_of_data(ctx);
	return 0;
}

int vhd_open(vhd_context_t *ctx, const char *path, int flags)
{
	int oflag = (flags & VHD_OPEN_RDWR) ? O_RDWR : O_RDONLY;
	int64_t size;
	int err;

	memset(ctx, 0, sizeof(*ctx));
	ctx->fd = -1;
	ctx->oflags = flags;
	ctx->file = strdup(path);
	if (!ctx->file) {
		vhd_set_error("%s: out of memory", path);
		return -ENOMEM;
	}
	ctx->fd = open(path, oflag | O_CLOEXEC);
	if (ctx->fd < 0) {
		err = vhd_fail(path, errno, "cannot open: %s", strerror(errno));
		goto fail;
	}
	if (flags & VHD_OPEN_RAW) {
		err = open_raw(ctx);
		if (err)
			goto fail;
		return 0;
	}
	size = vhd_file_size(ctx->fd);
	if (size < 0) {
		err = vhd_fail(path, (int)size, "cannot stat: %s",
			       strerror((int)-size));
		goto fail;
	}
	err = read_footer(ctx, (uint64_t)size);
	if (err)
		goto fail;
	if (ctx->footer.type == VHD_TYPE_FIXED) {
		if (ctx->footer.curr_size > ctx->footer_offset) {
			err = vhd_fail(path, EINVAL,
				       "truncated fixed image: footer says %llu bytes, file holds %llu",
				       (unsigned long long)ctx->footer.curr_size,
				       (unsigned long long)ctx->footer_offset);
			if (!(flags & VHD_OPEN_LENIENT))
				goto fail;
		}
		return 0;
	}
	err = read_header_and_bat(ctx, (uint64_t)size);
	if (err)
		goto fail;
	return 0;
fail:
	vhd_close(ctx);
	return err;
}

void vhd_close(vhd_context_t *ctx)
{
	if (ctx->fd >= 0) {
		if (ctx->oflags & VHD_OPEN_RDWR)
			fsync(ctx->fd);
		close(ctx->fd);
	}
	free(ctx->file);
	free(ctx->bat);
	free(ctx->batmap);
	memset(ctx, 0, sizeof(*ctx));
	ctx->fd = -1;
}
