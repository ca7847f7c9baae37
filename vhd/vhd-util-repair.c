// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * vhd-util repair: make a damaged image clean again.
 *
 *   - a bad or missing primary footer is rewritten from the copy at offset
 *     0 (or the copy from the primary), right after the end of the data,
 *     and anything after it is truncated;
 *   - a header whose only fault is its checksum gets a correct checksum;
 *   - data blocks that another tool (QEMU) placed over our batmap area are
 *     moved to the end of the file, and the batmap is written again;
 *   - with -b, or when the batmap is damaged, the batmap is rebuilt from
 *     the block bitmaps.
 *
 * Every step keeps the image readable with all its data if we crash in
 * the middle: the footer moves to the new end of file before a block is
 * copied there, the copy is flushed before the BAT entry points at it, and
 * the batmap map is flushed before the header that makes it valid.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "libvhd.h"
#include "vhd-util.h"

#define COPY_CHUNK	(1u << 20)

static const char *g_name;

static void say(const char *what)
{
	printf("%s: %s\n", g_name, what);
}

static int fail_errno(const char *what, int err)
{
	vu_error("%s: %s: %s", g_name, what, strerror(err));
	return err;
}

static int sync_or_fail(int fd)
{
	if (fsync(fd))
		return fail_errno("fsync", errno);
	return 0;
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static int pread_all(int fd, void *buf, size_t len, uint64_t off)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = pread(fd, p, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? errno : EIO;
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

static int pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = pwrite(fd, p, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? errno : EIO;
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

/*
 * Before the image can be opened at all: find a valid footer and fix a
 * header whose checksum alone is wrong.  Returns 0 or an exit status.
 */
static int repair_raw(bool *fixed_only)
{
	uint8_t prim[512], copy[512], hdr[1024];
	struct vhd_footer pf, cf, *f;
	struct vhd_header h;
	struct stat st;
	uint64_t poff, size;
	bool prim_ok, copy_ok;
	char pmsg[256];
	int fd, err;

	*fixed_only = false;
	fd = open(g_name, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return fail_errno("cannot open", errno);
	if (fstat(fd, &st)) {
		err = fail_errno("cannot stat", errno);
		goto out;
	}
	size = (uint64_t)st.st_size;
	if (!S_ISREG(st.st_mode)) {
		vu_error("%s: repair works on regular files only", g_name);
		err = EINVAL;
		goto out;
	}
	if (size < 512) {
		vu_error("%s: file too small (%llu bytes) to be a VHD", g_name,
			 (unsigned long long)size);
		err = EINVAL;
		goto out;
	}
	poff = (size - 512) & ~511ull;
	if ((err = pread_all(fd, prim, 512, poff)) ||
	    (err = pread_all(fd, copy, 512, 0))) {
		err = fail_errno("cannot read footer", err);
		goto out;
	}
	prim_ok = vhd_footer_decode(&pf, prim) == 0;
	snprintf(pmsg, sizeof(pmsg), "%s", prim_ok ? "" : vhd_errmsg());
	copy_ok = vhd_footer_decode(&cf, copy) == 0;
	if (prim_ok) {
		f = &pf;
	} else if (copy_ok && cf.type != VHD_TYPE_FIXED) {
		f = &cf;
	} else {
		vu_error("%s: no valid footer to repair from: %s", g_name, pmsg);
		err = EINVAL;
		goto out;
	}
	if (f->type == VHD_TYPE_FIXED) {
		/* Nothing but stray bytes after the footer can be fixed. */
		if (size != poff + 512) {
			if (ftruncate(fd, (off_t)(poff + 512))) {
				err = fail_errno("cannot truncate", errno);
				goto out;
			}
			say("removed stray bytes after the footer");
		}
		*fixed_only = true;
		err = sync_or_fail(fd);
		goto out;
	}
	if (f->data_offset > size || size - f->data_offset < sizeof(hdr)) {
		vu_error("%s: header offset 0x%llx lies past the end of the file",
			 g_name, (unsigned long long)f->data_offset);
		err = EINVAL;
		goto out;
	}
	if ((err = pread_all(fd, hdr, sizeof(hdr), f->data_offset))) {
		err = fail_errno("cannot read header", err);
		goto out;
	}
	if (vhd_header_decode(&h, hdr)) {
		char msg[256];
		uint32_t good = vhd_checksum(hdr, sizeof(hdr), 36);

		snprintf(msg, sizeof(msg), "%s", vhd_errmsg());
		if (memcmp(hdr, "cxsparse", 8) || be32(hdr + 36) == good) {
			vu_error("%s: header is damaged beyond repair: %s",
				 g_name, msg);
			err = EINVAL;
			goto out;
		}
		put32(hdr + 36, good);
		if (vhd_header_decode(&h, hdr)) {
			vu_error("%s: header is damaged beyond repair: %s",
				 g_name, vhd_errmsg());
			err = EINVAL;
			goto out;
		}
		if ((err = pwrite_all(fd, hdr, sizeof(hdr), f->data_offset))) {
			err = fail_errno("cannot write header", err);
			goto out;
		}
		err = sync_or_fail(fd);
		if (err)
			goto out;
		say("fixed the header checksum");
	}
	err = 0;
out:
	close(fd);
	return err;
}

/* Where a block goes so that its data starts on a 4 KiB boundary. */
static uint64_t align_block(uint64_t end, uint32_t bm_secs)
{
	uint64_t bm = (uint64_t)bm_secs << 9;

	return (end + bm + 4095) / 4096 * 4096 - bm;
}

static int64_t file_size(int fd)
{
	struct stat st;

	return fstat(fd, &st) ? -errno : (int64_t)st.st_size;
}

static uint64_t block_bytes(const vhd_context_t *ctx)
{
	return (uint64_t)(ctx->spb + ctx->bm_secs) << 9;
}

/* End of everything the image uses: metadata and blocks. */
static uint64_t data_end(const vhd_context_t *ctx, uint64_t at_least)
{
	uint64_t end = vhd_metadata_end(ctx);

	if (end < at_least)
		end = at_least;
	for (uint32_t i = 0; i < ctx->header.max_bat_size; i++) {
		uint64_t e;

		if (ctx->bat[i] == VHD_BAT_UNUSED)
			continue;
		e = ((uint64_t)ctx->bat[i] << 9) + block_bytes(ctx);
		if (e > end)
			end = e;
	}
	return end;
}

/* Put a valid footer at @off, the new end of the data. */
static int write_footer_at(vhd_context_t *ctx, uint64_t off)
{
	uint8_t buf[512];
	int err;

	vhd_footer_encode(&ctx->footer, buf);
	err = pwrite_all(ctx->fd, buf, sizeof(buf), off);
	if (err)
		return fail_errno("cannot write footer", err);
	ctx->footer_offset = off;
	return sync_or_fail(ctx->fd);
}

/* Move block @i to the end of the data; footer first, BAT entry last. */
static int relocate_block(vhd_context_t *ctx, uint32_t i, uint64_t *end)
{
	uint64_t len = block_bytes(ctx), from = (uint64_t)ctx->bat[i] << 9;
	uint64_t to = align_block(*end, ctx->bm_secs);
	uint8_t *buf;
	char msg[128];
	int err;

	if ((to >> 9) >= VHD_BAT_UNUSED) {
		vu_error("%s: file too large to move block %u", g_name, i);
		return EFBIG;
	}
	/* 1. The file ends in a valid footer past the new block. */
	err = write_footer_at(ctx, to + len);
	if (err)
		return err;
	/* 2. Copy bitmap and data, and make the copy durable. */
	buf = malloc(COPY_CHUNK);
	if (!buf) {
		vu_error("%s: out of memory", g_name);
		return ENOMEM;
	}
	for (uint64_t done = 0; done < len;) {
		size_t n = len - done < COPY_CHUNK ? (size_t)(len - done) : COPY_CHUNK;

		err = pread_all(ctx->fd, buf, n, from + done);
		if (!err)
			err = pwrite_all(ctx->fd, buf, n, to + done);
		if (err) {
			free(buf);
			return fail_errno("cannot copy block", err);
		}
		done += n;
	}
	free(buf);
	err = sync_or_fail(ctx->fd);
	if (err)
		return err;
	/* 3. Only now point the BAT at the copy. */
	ctx->bat[i] = (uint32_t)(to >> 9);
	err = vhd_write_bat(ctx);
	if (err)
		return vu_fail(err);
	err = sync_or_fail(ctx->fd);
	if (err)
		return err;
	*end = to + len;
	ctx->next_block = *end;
	snprintf(msg, sizeof(msg), "moved block %u off the batmap area to sector %llu",
		 i, (unsigned long long)(to >> 9));
	say(msg);
	return 0;
}

/* Write a batmap built from the bitmaps: map first, header last. */
static int rebuild_batmap(vhd_context_t *ctx, uint64_t hdr_off)
{
	uint32_t entries = ctx->header.max_bat_size;
	uint64_t map_bytes = ((uint64_t)entries + 7) / 8;
	struct vhd_batmap_header b;
	uint8_t *map, *bm, hdr[512];
	int err;

	map_bytes = (map_bytes + 511) / 512 * 512;
	map = calloc(1, map_bytes);
	bm = malloc((size_t)ctx->bm_secs << 9);
	if (!map || !bm) {
		free(map);
		free(bm);
		vu_error("%s: out of memory", g_name);
		return ENOMEM;
	}
	for (uint32_t i = 0; i < entries; i++) {
		bool full = true;

		if (ctx->bat[i] == VHD_BAT_UNUSED)
			continue;
		err = vhd_read_bitmap(ctx, i, bm);
		if (err) {
			free(map);
			free(bm);
			return vu_fail(err);
		}
		for (uint32_t s = 0; s < ctx->spb && full; s++)
			full = vhd_bitmap_test(bm, s);
		if (full)
			vhd_bitmap_set(map, i);
	}
	free(bm);
	memset(&b, 0, sizeof(b));
	memcpy(b.cookie, "tdbatmap", 8);
	b.batmap_offset = hdr_off + 512;
	b.batmap_size = (uint32_t)(map_bytes >> 9);
	b.batmap_version = VHD_BATMAP_VERSION;
	b.checksum = vhd_checksum(map, map_bytes, SIZE_MAX);
	b.marker = ctx->has_batmap ? ctx->batmap_hdr.marker : 0;

	err = pwrite_all(ctx->fd, map, map_bytes, b.batmap_offset);
	if (!err)
		err = fsync(ctx->fd) ? errno : 0;
	if (!err) {
		vhd_batmap_header_encode(&b, hdr);
		err = pwrite_all(ctx->fd, hdr, sizeof(hdr), hdr_off);
	}
	if (!err)
		err = fsync(ctx->fd) ? errno : 0;
	if (err) {
		free(map);
		return fail_errno("cannot write batmap", err);
	}
	free(ctx->batmap);
	ctx->batmap = map;
	ctx->batmap_hdr = b;
	ctx->has_batmap = true;
	say("rebuilt the batmap from the block bitmaps");
	return 0;
}

static int repair(bool rebuild)
{
	uint8_t prim[512], copy[512], want[512];
	vhd_context_t ctx;
	uint64_t hdr_off = 0, area_end = 0, end, size;
	bool expect_batmap, fixed_only, footer_bad, moved = false;
	int64_t fsize;
	int err;

	err = repair_raw(&fixed_only);
	if (err || fixed_only)
		return err;
	err = vhd_open(&ctx, g_name, VHD_OPEN_RDWR | VHD_OPEN_LENIENT);
	if (err)
		return vu_fail(err);
	fsize = file_size(ctx.fd);
	if (fsize < 512) {
		vhd_close(&ctx);
		return fail_errno("cannot stat", fsize < 0 ? (int)-fsize : EIO);
	}
	size = (uint64_t)fsize;

	/* Blocks must lie inside the file and apart from each other. */
	err = vhd_bat_validate(ctx.bat, ctx.header.max_bat_size,
			       ctx.spb + ctx.bm_secs,
			       ctx.header.table_offset +
			       ((((uint64_t)ctx.header.max_bat_size * 4) + 511) / 512 * 512),
			       size & ~511ull);
	if (err) {
		vu_error("%s: cannot repair: %s", g_name, vhd_errmsg());
		vhd_close(&ctx);
		return EINVAL;
	}

	expect_batmap = !memcmp(ctx.footer.crtr_app, "tap", 4) &&
			ctx.footer.crtr_ver >= 0x00010002u;
	end = data_end(&ctx, 0);
	if (expect_batmap) {
		hdr_off = ctx.header.table_offset +
			  (((uint64_t)ctx.header.max_bat_size * 4 + 511) / 512 * 512);
		area_end = hdr_off + 512 +
			   (((uint64_t)ctx.header.max_bat_size + 7) / 8 + 511) / 512 * 512;
		if (end < area_end)
			end = area_end;
	}

	/* Blocks sitting on the batmap area (QEMU puts them there). */
	if (expect_batmap && !ctx.has_batmap) {
		for (uint32_t i = 0; i < ctx.header.max_bat_size; i++) {
			uint64_t s = (uint64_t)ctx.bat[i] << 9;

			if (ctx.bat[i] == VHD_BAT_UNUSED ||
			    s >= area_end || s + block_bytes(&ctx) <= hdr_off)
				continue;
			err = relocate_block(&ctx, i, &end);
			if (err)
				goto out;
			moved = true;
		}
	}
	if (expect_batmap && (rebuild || moved || !ctx.has_batmap)) {
		/* The batmap must not overwrite the (only valid) footer. */
		if (ctx.footer_offset < area_end) {
			err = write_footer_at(&ctx, end);
			if (err)
				goto out;
		}
		err = rebuild_batmap(&ctx, hdr_off);
		if (err)
			goto out;
	} else if (rebuild && !expect_batmap) {
		say("no batmap to rebuild (not created by tap)");
	}

	/* Finally the footer: both copies, right after the data. */
	end = data_end(&ctx, end);
	vhd_footer_encode(&ctx.footer, want);
	footer_bad = true;
	if (ctx.footer_offset + 512 <= size &&
	    !pread_all(ctx.fd, prim, 512, ctx.footer_offset) &&
	    !memcmp(prim, want, 512))
		footer_bad = false;
	if (pread_all(ctx.fd, copy, 512, 0) || memcmp(copy, want, 512))
		footer_bad = true;
	size = (uint64_t)file_size(ctx.fd);
	if (footer_bad || moved || size != ctx.footer_offset + 512) {
		ctx.footer_offset = end;
		err = vhd_write_footer(&ctx, &ctx.footer);
		if (err) {
			err = vu_fail(err);
			goto out;
		}
		err = sync_or_fail(ctx.fd);
		if (err)
			goto out;
		if (ftruncate(ctx.fd, (off_t)(end + 512))) {
			err = fail_errno("cannot truncate", errno);
			goto out;
		}
		err = sync_or_fail(ctx.fd);
		if (err)
			goto out;
		say("rewrote the footer after the end of the data");
	}
out:
	vhd_close(&ctx);
	return err;
}

static void still(void *arg, const char *msg)
{
	vu_error("%s: still invalid after repair: %s", (const char *)arg, msg);
}

int vhd_util_repair(int argc, char **argv)
{
	struct vhd_check_opts opts;
	bool rebuild = false;
	int c, n, err;

	g_name = NULL;
	while ((c = getopt(argc, argv, ":n:bh")) != -1) {
		switch (c) {
		case 'n':
			g_name = optarg;
			break;
		case 'b':
			rebuild = true;
			break;
		case 'h':
			printf("options: <-n name> [-b rebuild the batmap] [-h help]\n");
			return 0;
		default:
			return vu_opt_error(c);
		}
	}
	if (!vu_args_done(argc, argv, g_name))
		return EINVAL;
	err = repair(rebuild);
	if (err)
		return err;
	memset(&opts, 0, sizeof(opts));
	n = vhd_check(g_name, &opts, still, (void *)g_name);
	if (n < 0)
		return vu_fail(n);
	return n ? EINVAL : 0;
}
