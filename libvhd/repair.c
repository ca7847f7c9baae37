// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Repair: make a damaged image clean again.
 *
 *   - a bad or missing primary footer is rewritten from the copy at offset
 *     0 (or the copy from the primary), right after the end of the data,
 *     and anything after it is truncated;
 *   - a header whose only fault is its checksum gets a correct checksum;
 *   - data blocks that another tool (QEMU) placed over our batmap area are
 *     moved to the end of the file, and the batmap is written again;
 *   - on request, or when the batmap is damaged, the batmap is rebuilt
 *     from the block bitmaps.
 *
 * Every step keeps the image readable with all its data if we crash in
 * the middle: blocks move with vhd_relocate_block() (footer first, BAT
 * entry last), and the footer is rewritten only once the data is stable.
 */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "private.h"

struct repairer {
	const char	*file;
	void		(*report)(void *arg, const char *msg);
	void		*arg;
};

static void say(const struct repairer *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void say(const struct repairer *r, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	if (!r->report)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	r->report(r->arg, msg);
}

/*
 * Before the image can be opened at all: find a valid footer and fix a
 * header whose checksum alone is wrong.  *fixed_only is set for a fixed
 * image, which has nothing more to repair.
 */
static int repair_raw(const struct repairer *r, bool *fixed_only)
{
	uint8_t prim[512], copy[512], hdr[1024];
	struct vhd_footer pf, cf, *f;
	struct vhd_header h;
	struct stat st;
	uint64_t poff, size;
	bool prim_ok, copy_ok;
	char msg[256];
	int fd, err;

	*fixed_only = false;
	fd = open(r->file, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return vhd_fail(r->file, errno, "cannot open: %s", strerror(errno));
	if (fstat(fd, &st)) {
		err = vhd_fail(r->file, errno, "cannot stat: %s", strerror(errno));
		goto out;
	}
	size = (uint64_t)st.st_size;
	if (!S_ISREG(st.st_mode)) {
		err = vhd_fail(r->file, EINVAL, "repair works on regular files only");
		goto out;
	}
	if (size < 512) {
		err = vhd_fail(r->file, EINVAL,
			       "file too small (%llu bytes) to be a VHD",
			       (unsigned long long)size);
		goto out;
	}
	poff = (size - 512) & ~511ull;
	if ((err = vhd_pread_full(fd, prim, 512, poff)) ||
	    (err = vhd_pread_full(fd, copy, 512, 0))) {
		err = vhd_fail(r->file, err, "cannot read footer: %s",
			       strerror(-err));
		goto out;
	}
	prim_ok = vhd_footer_decode(&pf, prim) == 0;
	snprintf(msg, sizeof(msg), "%s", prim_ok ? "" : vhd_errmsg());
	copy_ok = vhd_footer_decode(&cf, copy) == 0;
	if (prim_ok) {
		f = &pf;
	} else if (copy_ok && cf.type != VHD_TYPE_FIXED) {
		f = &cf;
	} else {
		err = vhd_fail(r->file, EINVAL,
			       "no valid footer to repair from: %s", msg);
		goto out;
	}
	if (f->type == VHD_TYPE_FIXED) {
		/* Nothing but stray bytes after the footer can be fixed. */
		if (size != poff + 512) {
			if (ftruncate(fd, (off_t)(poff + 512))) {
				err = vhd_fail(r->file, errno, "cannot truncate: %s",
					       strerror(errno));
				goto out;
			}
			say(r, "removed stray bytes after the footer");
		}
		*fixed_only = true;
		err = vhd_sync(fd, r->file);
		goto out;
	}
	if (f->data_offset > size || size - f->data_offset < sizeof(hdr)) {
		err = vhd_fail(r->file, EINVAL,
			       "header offset 0x%llx lies past the end of the file",
			       (unsigned long long)f->data_offset);
		goto out;
	}
	err = vhd_pread_full(fd, hdr, sizeof(hdr), f->data_offset);
	if (err) {
		err = vhd_fail(r->file, err, "cannot read header: %s",
			       strerror(-err));
		goto out;
	}
	if (vhd_header_decode(&h, hdr)) {
		uint32_t good = vhd_checksum(hdr, sizeof(hdr), 36);

		snprintf(msg, sizeof(msg), "%s", vhd_errmsg());
		if (memcmp(hdr, "cxsparse", 8) || get_be32(hdr + 36) == good) {
			err = vhd_fail(r->file, EINVAL,
				       "header is damaged beyond repair: %s", msg);
			goto out;
		}
		put_be32(hdr + 36, good);
		if (vhd_header_decode(&h, hdr)) {
			err = vhd_fail(r->file, EINVAL,
				       "header is damaged beyond repair: %s",
				       vhd_errmsg());
			goto out;
		}
		err = vhd_pwrite_full(fd, hdr, sizeof(hdr), f->data_offset);
		if (err) {
			err = vhd_fail(r->file, err, "cannot write header: %s",
				       strerror(-err));
			goto out;
		}
		err = vhd_sync(fd, r->file);
		if (err)
			goto out;
		say(r, "fixed the header checksum");
	}
	err = 0;
out:
	close(fd);
	return err;
}

/* Build the batmap from the bitmaps and store it at its usual place. */
static int rebuild_batmap(const struct repairer *r, vhd_context_t *ctx)
{
	uint32_t entries = ctx->header.max_bat_size;
	uint64_t map_bytes = vhd_batmap_bytes(entries);
	struct vhd_batmap_header *b = &ctx->batmap_hdr;
	uint8_t *map, *bm;
	int err = 0;

	map = calloc(1, map_bytes);
	bm = malloc((size_t)ctx->bm_secs << VHD_SECTOR_SHIFT);
	if (!map || !bm) {
		free(map);
		free(bm);
		return vhd_fail(ctx->file, ENOMEM, "out of memory");
	}
	for (uint32_t i = 0; i < entries && !err; i++) {
		if (ctx->bat[i] == VHD_BAT_UNUSED)
			continue;
		err = vhd_read_bitmap(ctx, i, bm);
		if (!err && vhd_bitmap_full(bm, ctx->spb))
			vhd_bitmap_set(map, i);
	}
	free(bm);
	if (err) {
		free(map);
		return err;
	}
	if (!ctx->has_batmap)
		memset(b, 0, sizeof(*b));	/* a marker of 0 when it was lost */
	memcpy(b->cookie, "tdbatmap", 8);
	b->batmap_offset = vhd_batmap_header_offset(ctx) + VHD_SECTOR_SIZE;
	b->batmap_size = (uint32_t)(map_bytes >> VHD_SECTOR_SHIFT);
	b->batmap_version = VHD_BATMAP_VERSION;
	free(ctx->batmap);
	ctx->batmap = map;
	ctx->has_batmap = true;
	/* The map is stable before the header that makes it valid. */
	err = vhd_pwrite_full(ctx->fd, map, map_bytes, b->batmap_offset);
	if (err)
		return vhd_fail(ctx->file, err, "cannot write batmap: %s",
				strerror(-err));
	err = vhd_sync(ctx->fd, ctx->file);
	if (!err)
		err = vhd_write_batmap(ctx);
	if (!err)
		err = vhd_sync(ctx->fd, ctx->file);
	if (err)
		return err;
	say(r, "rebuilt the batmap from the block bitmaps");
	return 0;
}

/* Is the primary footer at its place, and the copy at 0 identical? */
static bool footers_good(vhd_context_t *ctx, uint64_t size)
{
	uint8_t want[512], have[512];

	vhd_footer_encode(&ctx->footer, want);
	if (ctx->footer_offset + 512 != size ||
	    vhd_pread_full(ctx->fd, have, 512, ctx->footer_offset) ||
	    memcmp(have, want, 512))
		return false;
	return !vhd_pread_full(ctx->fd, have, 512, 0) && !memcmp(have, want, 512);
}

int vhd_repair(const char *path, bool rebuild,
	       void (*report)(void *arg, const char *msg), void *arg)
{
	const struct repairer r = { path, report, arg };
	uint64_t blk_bytes, hdr_off = 0, area_end = 0, end;
	bool expect_batmap, fixed_only, moved = false;
	vhd_context_t ctx;
	int64_t size;
	int err;

	err = repair_raw(&r, &fixed_only);
	if (err || fixed_only)
		return err;
	err = vhd_open(&ctx, path, VHD_OPEN_RDWR | VHD_OPEN_LENIENT);
	if (err)
		return err;
	size = vhd_file_size(ctx.fd);
	if (size < 512) {
		err = vhd_fail(path, size < 0 ? (int)size : EIO, "cannot stat");
		goto out;
	}

	/* Blocks must lie inside the file and apart from each other. */
	err = vhd_bat_validate(ctx.bat, ctx.header.max_bat_size,
			       ctx.spb + ctx.bm_secs,
			       ctx.header.table_offset +
			       vhd_bat_bytes(ctx.header.max_bat_size),
			       (uint64_t)size & ~511ull);
	if (err) {
		err = vhd_fail(path, EINVAL, "cannot repair: %s", vhd_errmsg());
		goto out;
	}

	blk_bytes = (uint64_t)(ctx.spb + ctx.bm_secs) << VHD_SECTOR_SHIFT;
	expect_batmap = vhd_footer_expects_batmap(&ctx.footer);
	end = vhd_end_of_data(&ctx);
	if (expect_batmap) {
		hdr_off = vhd_batmap_header_offset(&ctx);
		area_end = hdr_off + VHD_SECTOR_SIZE +
			   vhd_batmap_bytes(ctx.header.max_bat_size);
		if (end < area_end)
			end = area_end;
	}

	/* Blocks sitting on the batmap area (QEMU puts them there). */
	if (expect_batmap && !ctx.has_batmap) {
		for (uint32_t i = 0; i < ctx.header.max_bat_size; i++) {
			uint64_t s = (uint64_t)ctx.bat[i] << VHD_SECTOR_SHIFT;
			uint64_t to = vhd_align_block(end, ctx.bm_secs);

			if (ctx.bat[i] == VHD_BAT_UNUSED ||
			    s >= area_end || s + blk_bytes <= hdr_off)
				continue;
			err = vhd_relocate_block(&ctx, i, to, NULL);
			if (err)
				goto out;
			end = to + blk_bytes;
			moved = true;
			say(&r, "moved block %u off the batmap area to sector %llu",
			    i, (unsigned long long)(to >> VHD_SECTOR_SHIFT));
		}
	}
	if (expect_batmap && (rebuild || moved || !ctx.has_batmap)) {
		/* The batmap must not overwrite the (only valid) footer. */
		if (ctx.footer_offset < area_end) {
			err = vhd_move_footer(&ctx, end);
			if (!err)
				err = vhd_sync(ctx.fd, path);
			if (err)
				goto out;
		}
		err = rebuild_batmap(&r, &ctx);
		if (err)
			goto out;
	} else if (rebuild && !expect_batmap) {
		say(&r, "no batmap to rebuild (not created by tap)");
	}

	/* Finally the footer: both copies, right after the data. */
	if (vhd_end_of_data(&ctx) > end)
		end = vhd_end_of_data(&ctx);
	size = vhd_file_size(ctx.fd);
	if (moved || size < 0 || !footers_good(&ctx, (uint64_t)size)) {
		ctx.footer_offset = end;
		err = vhd_write_footer(&ctx, &ctx.footer);
		if (!err)
			err = vhd_sync(ctx.fd, path);
		if (err)
			goto out;
		if (ftruncate(ctx.fd, (off_t)(end + VHD_FOOTER_SIZE))) {
			err = vhd_fail(path, errno, "cannot truncate: %s",
				       strerror(errno));
			goto out;
		}
		err = vhd_sync(ctx.fd, path);
		if (err)
			goto out;
		say(&r, "rewrote the footer after the end of the data");
	}
out:
	vhd_close(&ctx);
	return err;
}
