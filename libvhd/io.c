// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Sector I/O on one image: bitmaps, the batmap, block allocation.
 *
 * Ordering is what keeps a crash harmless: data before the bitmap bits
 * that declare it, a block's bitmap before the BAT entry that points at it,
 * the footer moved to the new end of file before anything overwrites the
 * old one, and the batmap bit only after the bitmap is full on disk.
 */
#include <stdlib.h>
#include <unistd.h>

#include "private.h"

bool vhd_bitmap_test(const uint8_t *bm, uint32_t bit)
{
	return bm[bit >> 3] & (0x80 >> (bit & 7));
}

bool vhd_bitmap_full(const uint8_t *bm, uint32_t bits)
{
	for (uint32_t i = 0; i < bits; i++)
		if (!vhd_bitmap_test(bm, i))
			return false;
	return true;
}

void vhd_bitmap_set(uint8_t *bm, uint32_t bit)
{
	bm[bit >> 3] |= (uint8_t)(0x80 >> (bit & 7));
}

bool vhd_batmap_test(const vhd_context_t *ctx, uint32_t block)
{
	if (!ctx->has_batmap || block >= ctx->header.max_bat_size)
		return false;
	return vhd_bitmap_test(ctx->batmap, block);
}

int vhd_read_bitmap(vhd_context_t *ctx, uint32_t block, uint8_t *bm)
{
	uint32_t off = vhd_bat_entry(ctx, block);
	int err;

	if (off == VHD_BAT_UNUSED)
		return vhd_fail(ctx->file, EINVAL, "block %u is not allocated",
				block);
	err = vhd_pread_full(ctx->fd, bm, (size_t)ctx->bm_secs << VHD_SECTOR_SHIFT,
			     (uint64_t)off << VHD_SECTOR_SHIFT);
	if (err)
		return vhd_fail(ctx->file, err, "cannot read bitmap of block %u: %s",
				block, strerror(-err));
	return 0;
}

int vhd_write_bitmap(vhd_context_t *ctx, uint32_t block, const uint8_t *bm)
{
	uint32_t off = vhd_bat_entry(ctx, block);
	int err;

	if (off == VHD_BAT_UNUSED)
		return vhd_fail(ctx->file, EINVAL, "block %u is not allocated",
				block);
	err = vhd_pwrite_full(ctx->fd, bm, (size_t)ctx->bm_secs << VHD_SECTOR_SHIFT,
			      (uint64_t)off << VHD_SECTOR_SHIFT);
	if (err)
		return vhd_fail(ctx->file, err, "cannot write bitmap of block %u: %s",
				block, strerror(-err));
	return 0;
}

/*
 * Store the batmap header and the first @map_len bytes of the map.  Where
 * they are contiguous (as we lay them out) one write carries both, so the
 * checksum and the map reach the file together.
 */
static int store_batmap(vhd_context_t *ctx, size_t map_len)
{
	struct vhd_batmap_header *b = &ctx->batmap_hdr;
	uint64_t hdr_off = vhd_batmap_header_offset(ctx);
	uint8_t *buf;
	int err;

	b->checksum = vhd_checksum(ctx->batmap,
				   (size_t)b->batmap_size << VHD_SECTOR_SHIFT,
				   SIZE_MAX);
	if (b->batmap_offset == hdr_off + VHD_SECTOR_SIZE) {
		buf = malloc(VHD_SECTOR_SIZE + map_len);
		if (!buf)
			return vhd_fail(ctx->file, ENOMEM, "out of memory");
		vhd_batmap_header_encode(b, buf);
		memcpy(buf + VHD_SECTOR_SIZE, ctx->batmap, map_len);
		err = vhd_pwrite_full(ctx->fd, buf, VHD_SECTOR_SIZE + map_len,
				      hdr_off);
		free(buf);
	} else {
		uint8_t hdr[512];

		err = vhd_pwrite_full(ctx->fd, ctx->batmap, map_len,
				      b->batmap_offset);
		if (!err) {
			vhd_batmap_header_encode(b, hdr);
			err = vhd_pwrite_full(ctx->fd, hdr, sizeof(hdr), hdr_off);
		}
	}
	if (err)
		return vhd_fail(ctx->file, err, "cannot write batmap: %s",
				strerror(-err));
	return 0;
}

int vhd_write_batmap(vhd_context_t *ctx)
{
	if (!ctx->has_batmap)
		return 0;
	return store_batmap(ctx, (size_t)ctx->batmap_hdr.batmap_size <<
				 VHD_SECTOR_SHIFT);
}

int vhd_batmap_update(vhd_context_t *ctx, uint32_t block, bool full)
{
	if (!ctx->has_batmap)
		return 0;
	if (full)
		vhd_bitmap_set(ctx->batmap, block);
	else
		ctx->batmap[block >> 3] &= (uint8_t)~(0x80 >> (block & 7));
	/* Only the map up to the sector holding this bit has changed. */
	return store_batmap(ctx, ((block >> 3) / VHD_SECTOR_SIZE + 1) *
				 VHD_SECTOR_SIZE);
}

int vhd_write_bat_entry(vhd_context_t *ctx, uint32_t block)
{
	uint8_t sec[512];
	uint32_t first = block & ~127u, i;
	int err;

	for (i = 0; i < 128; i++) {
		uint32_t v = first + i < ctx->header.max_bat_size ?
			     ctx->bat[first + i] : VHD_BAT_UNUSED;

		put_be32(sec + 4 * i, v);
	}
	err = vhd_pwrite_full(ctx->fd, sec, sizeof(sec),
			      ctx->header.table_offset + (uint64_t)first * 4);
	if (err)
		return vhd_fail(ctx->file, err, "cannot write BAT: %s",
				strerror(-err));
	return 0;
}

int vhd_flush(vhd_context_t *ctx)
{
	return vhd_sync(ctx->fd, ctx->file);
}

int vhd_write_bat(vhd_context_t *ctx)
{
	uint64_t bytes = vhd_bat_bytes(ctx->header.max_bat_size);
	uint8_t *buf = malloc(bytes ? bytes : 1);
	uint32_t i;
	int err;

	if (!buf)
		return vhd_fail(ctx->file, ENOMEM, "out of memory");
	memset(buf, 0xFF, bytes);
	for (i = 0; i < ctx->header.max_bat_size; i++)
		put_be32(buf + 4 * (uint64_t)i, ctx->bat[i]);
	err = vhd_pwrite_full(ctx->fd, buf, bytes, ctx->header.table_offset);
	free(buf);
	if (err)
		return vhd_fail(ctx->file, err, "cannot write BAT: %s",
				strerror(-err));
	return 0;
}

int vhd_write_footer(vhd_context_t *ctx, const struct vhd_footer *f)
{
	uint8_t buf[512];
	int err;

	vhd_footer_encode(f, buf);
	/* The primary (end) copy first: it is the one readers trust. */
	err = vhd_pwrite_full(ctx->fd, buf, sizeof(buf), ctx->footer_offset);
	if (!err && f->type != VHD_TYPE_FIXED)
		err = vhd_pwrite_full(ctx->fd, buf, sizeof(buf), 0);
	if (err)
		return vhd_fail(ctx->file, err, "cannot write footer: %s",
				strerror(-err));
	if (&ctx->footer != f)
		ctx->footer = *f;
	ctx->footer.checksum = get_be32(buf + 64);
	return 0;
}

int vhd_write_header(vhd_context_t *ctx, const struct vhd_header *h)
{
	uint8_t buf[1024];
	int err;

	vhd_header_encode(h, buf);
	err = vhd_pwrite_full(ctx->fd, buf, sizeof(buf), ctx->footer.data_offset);
	if (err)
		return vhd_fail(ctx->file, err, "cannot write header: %s",
				strerror(-err));
	if (&ctx->header != h)
		ctx->header = *h;
	ctx->header.checksum = get_be32(buf + 36);
	return 0;
}

int vhd_set_hidden(vhd_context_t *ctx, uint8_t hidden)
{
	struct vhd_footer f = ctx->footer;

	f.hidden = hidden;
	return vhd_write_footer(ctx, &f);
}

int vhd_get_marker(const vhd_context_t *ctx, uint8_t *marker)
{
	if (!ctx->has_batmap)
		return vhd_fail(ctx->file, ENOTSUP,
				"no batmap, so no marker field");
	*marker = ctx->batmap_hdr.marker;
	return 0;
}

int vhd_set_marker(vhd_context_t *ctx, uint8_t marker)
{
	uint8_t hdr[512];
	int err;

	if (!ctx->has_batmap)
		return vhd_fail(ctx->file, ENOTSUP,
				"no batmap, so no marker field");
	ctx->batmap_hdr.marker = marker;
	vhd_batmap_header_encode(&ctx->batmap_hdr, hdr);
	err = vhd_pwrite_full(ctx->fd, hdr, sizeof(hdr),
			      vhd_batmap_header_offset(ctx));
	if (err)
		return vhd_fail(ctx->file, err, "cannot write batmap header: %s",
				strerror(-err));
	return 0;
}

int vhd_move_footer(vhd_context_t *ctx, uint64_t off)
{
	uint8_t buf[512];
	int err;

	vhd_footer_encode(&ctx->footer, buf);
	err = vhd_pwrite_full(ctx->fd, buf, sizeof(buf), off);
	if (err)
		return vhd_fail(ctx->file, err, "cannot move footer: %s",
				strerror(-err));
	ctx->footer_offset = off;
	return 0;
}

#define RELOCATE_CHUNK	(1u << 20)

int vhd_relocate_block(vhd_context_t *ctx, uint32_t block, uint64_t dst,
		       void (*step)(int))
{
	uint64_t len = (uint64_t)(ctx->spb + ctx->bm_secs) << VHD_SECTOR_SHIFT;
	uint64_t src = (uint64_t)ctx->bat[block] << VHD_SECTOR_SHIFT;
	uint64_t end = dst + len, done;
	uint8_t *buf;
	int err = 0;

	if ((dst >> VHD_SECTOR_SHIFT) >= VHD_BAT_UNUSED)
		return vhd_fail(ctx->file, EFBIG, "file too large for the BAT");
	/* 1. The file keeps ending in a valid footer, past the new copy. */
	if (end > ctx->footer_offset) {
		err = vhd_move_footer(ctx, end);
		if (err)
			return err;
	}
	/* 2. Copy bitmap and data; the copy is stable before it is used. */
	buf = malloc(RELOCATE_CHUNK);
	if (!buf)
		return vhd_fail(ctx->file, ENOMEM, "out of memory");
	for (done = 0; done < len && !err;) {
		size_t n = len - done > RELOCATE_CHUNK ? RELOCATE_CHUNK :
			   (size_t)(len - done);

		err = vhd_pread_full(ctx->fd, buf, n, src + done);
		if (!err)
			err = vhd_pwrite_full(ctx->fd, buf, n, dst + done);
		done += n;
	}
	free(buf);
	if (err)
		return vhd_fail(ctx->file, err, "cannot move block %u: %s",
				block, strerror(-err));
	err = vhd_sync(ctx->fd, ctx->file);
	if (err)
		return err;
	if (step)
		step(10);
	/* 3. Only now point the BAT at the copy. */
	ctx->bat[block] = (uint32_t)(dst >> VHD_SECTOR_SHIFT);
	err = vhd_write_bat_entry(ctx, block);
	if (!err)
		err = vhd_sync(ctx->fd, ctx->file);
	if (err)
		return err;
	if (step)
		step(11);
	if (end > ctx->next_block)
		ctx->next_block = end;
	return 0;
}

int vhd_allocate_block(vhd_context_t *ctx, uint32_t block)
{
	uint64_t bm_bytes = (uint64_t)ctx->bm_secs << VHD_SECTOR_SHIFT;
	uint64_t off, end;
	uint8_t *bm;
	int err;

	if (!vhd_is_dynamic(ctx) || block >= ctx->header.max_bat_size)
		return vhd_fail(ctx->file, EINVAL, "cannot allocate block %u",
				block);
	if (ctx->bat[block] != VHD_BAT_UNUSED)
		return 0;
	off = vhd_align_block(ctx->next_block, ctx->bm_secs);
	end = off + bm_bytes + ((uint64_t)ctx->spb << VHD_SECTOR_SHIFT);
	if ((off >> VHD_SECTOR_SHIFT) >= VHD_BAT_UNUSED)
		return vhd_fail(ctx->file, EFBIG, "file too large for the BAT");

	/* 1. Keep a valid footer at the end of file. */
	if (end > ctx->footer_offset) {
		err = vhd_move_footer(ctx, end);
		if (err)
			return err;
	}
	/* 2. A clear bitmap: nothing in the block is present yet. */
	bm = calloc(1, bm_bytes);
	if (!bm)
		return vhd_fail(ctx->file, ENOMEM, "out of memory");
	err = vhd_pwrite_full(ctx->fd, bm, bm_bytes, off);
	free(bm);
	if (err)
		return vhd_fail(ctx->file, err, "cannot write bitmap: %s",
				strerror(-err));
	err = vhd_sync(ctx->fd, ctx->file);
	if (err)
		return err;
	/* 3. Only now point the BAT at it. */
	ctx->bat[block] = (uint32_t)(off >> VHD_SECTOR_SHIFT);
	err = vhd_write_bat_entry(ctx, block);
	if (err) {
		ctx->bat[block] = VHD_BAT_UNUSED;
		return err;
	}
	if (end > ctx->next_block)
		ctx->next_block = end;
	return 0;
}

static int check_range(const vhd_context_t *ctx, uint64_t sec, uint32_t count)
{
	uint64_t n = vhd_sectors(ctx);

	if (sec > n || count > n - sec)
		return vhd_fail(ctx->file, EINVAL,
				"sectors %llu+%u lie past the end of the %llu-sector disk",
				(unsigned long long)sec, count,
				(unsigned long long)n);
	return 0;
}

static void mark_present(uint8_t *present, uint32_t from, uint32_t n)
{
	uint32_t i;

	if (!present)
		return;
	for (i = 0; i < n; i++)
		vhd_bitmap_set(present, from + i);
}

int vhd_io_read(vhd_context_t *ctx, void *buf, uint64_t sec, uint32_t count,
		uint8_t *present)
{
	uint8_t *out = buf, *bm = NULL;
	uint32_t done = 0;
	int err;

	err = check_range(ctx, sec, count);
	if (err)
		return err;
	if (!vhd_is_dynamic(ctx)) {
		err = vhd_pread_full(ctx->fd, buf,
				     (size_t)count << VHD_SECTOR_SHIFT,
				     sec << VHD_SECTOR_SHIFT);
		if (err)
			return vhd_fail(ctx->file, err, "read failed: %s",
					strerror(-err));
		mark_present(present, 0, count);
		return 0;
	}
	while (done < count) {
		uint64_t s = sec + done;
		uint32_t block = (uint32_t)(s / ctx->spb);
		uint32_t first = (uint32_t)(s % ctx->spb);
		uint32_t n = ctx->spb - first;
		uint32_t off = vhd_bat_entry(ctx, block);
		uint64_t data;

		if (n > count - done)
			n = count - done;
		if (off == VHD_BAT_UNUSED) {
			memset(out + ((size_t)done << VHD_SECTOR_SHIFT), 0,
			       (size_t)n << VHD_SECTOR_SHIFT);
			done += n;
			continue;
		}
		data = ((uint64_t)off + ctx->bm_secs) << VHD_SECTOR_SHIFT;
		if (vhd_batmap_test(ctx, block)) {
			err = vhd_pread_full(ctx->fd,
					     out + ((size_t)done << VHD_SECTOR_SHIFT),
					     (size_t)n << VHD_SECTOR_SHIFT,
					     data + ((uint64_t)first << VHD_SECTOR_SHIFT));
			if (err)
				goto io_fail;
			mark_present(present, done, n);
			done += n;
			continue;
		}
		if (!bm) {
			bm = malloc((size_t)ctx->bm_secs << VHD_SECTOR_SHIFT);
			if (!bm)
				return vhd_fail(ctx->file, ENOMEM, "out of memory");
		}
		err = vhd_read_bitmap(ctx, block, bm);
		if (err)
			goto out;
		/* Read each run of present sectors in one request. */
		for (uint32_t i = 0; i < n;) {
			bool set = vhd_bitmap_test(bm, first + i);
			uint32_t j = i + 1;
			uint8_t *dst = out + ((size_t)(done + i) << VHD_SECTOR_SHIFT);

			while (j < n && vhd_bitmap_test(bm, first + j) == set)
				j++;
			if (set) {
				err = vhd_pread_full(ctx->fd, dst,
						     (size_t)(j - i) << VHD_SECTOR_SHIFT,
						     data + ((uint64_t)(first + i) << VHD_SECTOR_SHIFT));
				if (err)
					goto io_fail;
				mark_present(present, done + i, j - i);
			} else {
				memset(dst, 0, (size_t)(j - i) << VHD_SECTOR_SHIFT);
			}
			i = j;
		}
		done += n;
	}
	err = 0;
	goto out;
io_fail:
	err = vhd_fail(ctx->file, err, "read failed: %s", strerror(-err));
out:
	free(bm);
	return err;
}

int vhd_io_write(vhd_context_t *ctx, const void *buf, uint64_t sec,
		 uint32_t count)
{
	const uint8_t *in = buf;
	uint8_t *bm = NULL;
	uint32_t done = 0;
	int err;

	if (!(ctx->oflags & VHD_OPEN_RDWR))
		return vhd_fail(ctx->file, EROFS, "image is open read-only");
	err = check_range(ctx, sec, count);
	if (err)
		return err;
	if (!vhd_is_dynamic(ctx)) {
		err = vhd_pwrite_full(ctx->fd, buf,
				      (size_t)count << VHD_SECTOR_SHIFT,
				      sec << VHD_SECTOR_SHIFT);
		if (err)
			return vhd_fail(ctx->file, err, "write failed: %s",
					strerror(-err));
		return 0;
	}
	bm = malloc((size_t)ctx->bm_secs << VHD_SECTOR_SHIFT);
	if (!bm)
		return vhd_fail(ctx->file, ENOMEM, "out of memory");
	while (done < count) {
		uint64_t s = sec + done;
		uint32_t block = (uint32_t)(s / ctx->spb);
		uint32_t first = (uint32_t)(s % ctx->spb);
		uint32_t n = ctx->spb - first, i;
		uint64_t data;
		bool changed = false;

		if (n > count - done)
			n = count - done;
		if (ctx->bat[block] == VHD_BAT_UNUSED) {
			err = vhd_allocate_block(ctx, block);
			if (err)
				goto out;
		}
		data = ((uint64_t)ctx->bat[block] + ctx->bm_secs) << VHD_SECTOR_SHIFT;
		err = vhd_pwrite_full(ctx->fd, in + ((size_t)done << VHD_SECTOR_SHIFT),
				      (size_t)n << VHD_SECTOR_SHIFT,
				      data + ((uint64_t)first << VHD_SECTOR_SHIFT));
		if (err) {
			err = vhd_fail(ctx->file, err, "write failed: %s",
				       strerror(-err));
			goto out;
		}
		if (vhd_batmap_test(ctx, block)) {
			done += n;
			continue;
		}
		err = vhd_read_bitmap(ctx, block, bm);
		if (err)
			goto out;
		for (i = 0; i < n; i++) {
			if (!vhd_bitmap_test(bm, first + i)) {
				vhd_bitmap_set(bm, first + i);
				changed = true;
			}
		}
		if (changed) {
			/* The data must be stable before its bits are. */
			err = vhd_sync(ctx->fd, ctx->file);
			if (!err)
				err = vhd_write_bitmap(ctx, block, bm);
			if (err)
				goto out;
		}
		if (ctx->has_batmap && vhd_bitmap_full(bm, ctx->spb)) {
			err = vhd_sync(ctx->fd, ctx->file);
			if (!err)
				err = vhd_batmap_update(ctx, block, true);
			if (err)
				goto out;
		}
		done += n;
	}
	err = 0;
out:
	free(bm);
	return err;
}
