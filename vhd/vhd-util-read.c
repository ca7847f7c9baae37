// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * vhd-util read: look inside an image.  Header dumps, BAT and bitmap
 * lookups, raw metadata, and reads of the virtual disk through its chain.
 * Actions run in the order p, t, b, B, m, i, e, a, j, d, r, R.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "libvhd.h"
#include "vhd-util.h"

#define READ_CHUNK_SECTORS	(4u << 20 >> 9)	/* 4 MiB per chain read */
#define LOC_MAX_DATA		(64u << 10)

static bool hex;

static void usage(void)
{
	printf("usage: vhd-util read -n NAME [-p] [-t SEC] [-b BLK] [-B] [-m BLK] [-i SEC]\n"
	       "       [-e SEC] [-a] [-j BLK] [-d BLK] [-c COUNT] [-r SEC] [-R BYTE] [-x] [-h]\n");
}

/* A number as text, decimal or (with -x) hex; rotating buffers. */
static const char *num(uint64_t v)
{
	static char bufs[8][32];
	static int next;
	char *b = bufs[next++ & 7];

	snprintf(b, 32, hex ? "%#" PRIx64 : "%" PRIu64, v);
	return b;
}

static const char *time_str(uint32_t t, char *buf, size_t len)
{
	time_t u = vhd_time_to_unix(t);
	struct tm tm;

	if (!localtime_r(&u, &tm) || !strftime(buf, len, "%a %b %e %H:%M:%S %Y", &tm))
		snprintf(buf, len, "%u", t);
	return buf;
}

static const char *disk_type(uint32_t type)
{
	static const char *const names[] = {
		"None", "Reserved (deprecated)", "Fixed hard disk",
		"Dynamic hard disk", "Differencing hard disk",
		"Reserved (deprecated)", "Reserved (deprecated)",
	};

	return type < 7 ? names[type] : "Unknown type!";
}

static const char *os_name(uint32_t os)
{
	if (os == 0x5769326B)	/* "Wi2k" */
		return "Windows";
	if (os == 0x4D616320)	/* "Mac " */
		return "Macintosh";
	return "Unknown!";
}

static const char *loc_name(uint32_t code)
{
	switch (code) {
	case 0:
		return "PLAT_CODE_NONE";
	case 0x57693272:
		return "PLAT_CODE_WI2R";
	case 0x5769326B:
		return "PLAT_CODE_WI2K";
	case VHD_LOC_W2RU:
		return "PLAT_CODE_W2RU";
	case VHD_LOC_W2KU:
		return "PLAT_CODE_W2KU";
	case 0x4D616320:
		return "PLAT_CODE_MAC";
	case VHD_LOC_MACX:
		return "PLAT_CODE_MACX";
	default:
		return "UNKNOWN";
	}
}

static void print_checksum(uint32_t stored, uint32_t computed)
{
	printf("%-20s: 0x%x|0x%x (%s)\n", "Checksum", stored, computed,
	       stored == computed ? "Good!" : "Bad!");
}

static void print_footer(const struct vhd_footer *f, uint32_t computed)
{
	char ts[64], uuid[37];
	uint32_t c = f->geometry >> 16, hd = (f->geometry >> 8) & 0xFF;
	uint32_t s = f->geometry & 0xFF;
	uint64_t chs = (uint64_t)c * hd * s;

	printf("VHD Footer Summary:\n-------------------\n");
	printf("%-20s: %.8s\n", "Cookie", f->cookie);
	printf("%-20s: (0x%08x) %s%s\n", "Features", f->features,
	       f->features & 1 ? "<TEMP>" : "", f->features & 2 ? "<RESV>" : "");
	printf("%-20s: Major: %u, Minor: %u\n", "File format version",
	       f->ff_version >> 16, f->ff_version & 0xFFFF);
	printf("%-20s: %s\n", "Data offset", num(f->data_offset));
	printf("%-20s: %s\n", "Timestamp", time_str(f->timestamp, ts, sizeof(ts)));
	printf("%-20s: '%.4s'\n", "Creator Application", f->crtr_app);
	printf("%-20s: Major: %u, Minor: %u\n", "Creator version",
	       f->crtr_ver >> 16, f->crtr_ver & 0xFFFF);
	printf("%-20s: %s\n", "Creator OS", os_name(f->crtr_os));
	printf("%-20s: %s MB (%s Bytes)\n", "Original disk size",
	       num(f->orig_size >> 20), num(f->orig_size));
	printf("%-20s: %s MB (%s Bytes)\n", "Current disk size",
	       num(f->curr_size >> 20), num(f->curr_size));
	printf("%-20s: Cyl: %s, Hds: %s, Sctrs: %s\n", "Geometry", num(c),
	       num(hd), num(s));
	printf("%-20s: = %s MB (%s Bytes)\n", "", num(chs >> 11), num(chs << 9));
	printf("%-20s: %s\n", "Disk type", disk_type(f->type));
	print_checksum(f->checksum, computed);
	uuid_unparse(f->uuid, uuid);
	printf("%-20s: %s\n", "UUID", uuid);
	printf("%-20s: %s\n", "Saved state", f->saved ? "Yes" : "No");
	printf("%-20s: %u\n", "Hidden", f->hidden);
	printf("\n");
}

static void print_header(const struct vhd_header *h, uint32_t computed)
{
	char name[1024], ts[64], uuid[37];

	printf("VHD Header Summary:\n-------------------\n");
	printf("%-20s: %.8s\n", "Cookie", h->cookie);
	printf("%-20s: %s\n", "Data offset (unusd)", num(h->data_offset));
	printf("%-20s: %s\n", "Table offset", num(h->table_offset));
	printf("%-20s: 0x%08x\n", "Header version", h->hdr_ver);
	printf("%-20s: %s\n", "Max BAT size", num(h->max_bat_size));
	printf("%-20s: %s (%s MB)\n", "Block size", num(h->block_size),
	       num(h->block_size >> 20));
	vhd_header_parent_name(h, name, sizeof(name));
	printf("%-20s: %s\n", "Parent name", name);
	uuid_unparse(h->prt_uuid, uuid);
	printf("%-20s: %s\n", "Parent UUID", uuid);
	printf("%-20s: %s\n", "Parent timestamp",
	       time_str(h->prt_ts, ts, sizeof(ts)));
	print_checksum(h->checksum, computed);
	printf("\n");
}

static void print_locators(int fd, const struct vhd_header *h, uint64_t fsize)
{
	printf("VHD Parent Locators:\n--------------------\n");
	for (int i = 0; i < VHD_LOC_COUNT; i++) {
		const struct vhd_locator *l = &h->loc[i];
		char text[4096];
		uint8_t *buf;
		bool ok = false;

		if (!l->code)
			continue;
		printf("%-20s: %d\n", "locator:", i);
		printf("%-20s: %s\n", "       code", loc_name(l->code));
		printf("%-20s: %s\n", "       data_space", num(l->data_space));
		printf("%-20s: %s\n", "       data_length", num(l->data_len));
		printf("%-20s: %s\n", "       data_offset", num(l->data_offset));
		if (l->data_len && l->data_len <= LOC_MAX_DATA &&
		    l->data_offset + l->data_len <= fsize &&
		    (buf = malloc(l->data_len))) {
			if (pread(fd, buf, l->data_len, (off_t)l->data_offset) ==
			    (ssize_t)l->data_len &&
			    vhd_locator_decode(l->code, buf, l->data_len, text,
					       sizeof(text)) == 0)
				ok = true;
			free(buf);
		}
		printf("%-20s: %s\n", "       decoded name",
		       ok ? text : "failed to read parent name");
	}
	printf("\n");
}

static void print_batmap(int fd, const struct vhd_batmap_header *b,
			 uint64_t fsize)
{
	uint64_t len = (uint64_t)b->batmap_size << 9;
	uint32_t computed = 0;
	uint8_t *map;

	if (len && b->batmap_offset + len <= fsize && len <= (64u << 20) &&
	    (map = malloc(len))) {
		if (pread(fd, map, len, (off_t)b->batmap_offset) == (ssize_t)len)
			computed = vhd_checksum(map, len, SIZE_MAX);
		free(map);
	}
	printf("VHD Batmap Summary:\n-------------------\n");
	printf("%-20s: %s\n", "Batmap offset", num(b->batmap_offset));
	printf("%-20s: %s\n", "Batmap size (secs)", num(b->batmap_size));
	printf("%-20s: 0x%08x\n", "Batmap version", b->batmap_version);
	print_checksum(b->checksum, computed);
	printf("%-20s: %u\n", "Marker", b->marker);
	printf("\n");
}

/*
 * Dump the metadata as it is on disk, checksums recomputed, without
 * trusting any of it: this must work on a damaged image.
 */
static int dump_headers(const char *name)
{
	uint8_t fbuf[512], hbuf[1024], bbuf[512];
	struct vhd_footer f;
	struct vhd_header h;
	struct vhd_batmap_header b;
	struct stat st;
	uint64_t fsize, bat_bytes;
	int fd;

	fd = open(name, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st)) {
		vu_error("%s: cannot open: %s", name, strerror(errno));
		if (fd >= 0)
			close(fd);
		return errno ? errno : EIO;
	}
	fsize = (uint64_t)st.st_size;
	if (fsize < 512 ||
	    pread(fd, fbuf, 512, (off_t)((fsize - 512) & ~511ull)) != 512) {
		close(fd);
		vu_error("%s: too small (%llu bytes) to be a VHD", name,
			 (unsigned long long)fsize);
		return EINVAL;
	}
	/* A primary footer without its cookie: show the copy at 0. */
	if (memcmp(fbuf, "conectix", 8) && fsize >= 1024 &&
	    pread(fd, hbuf, 512, 0) == 512 && !memcmp(hbuf, "conectix", 8))
		memcpy(fbuf, hbuf, 512);
	vhd_footer_decode(&f, fbuf);	/* fields are filled even if invalid */
	print_footer(&f, vhd_checksum(fbuf, 512, 64));
	if (f.type != VHD_TYPE_DYNAMIC && f.type != VHD_TYPE_DIFF)
		goto out;
	if (f.data_offset > fsize || fsize - f.data_offset < 1024 ||
	    pread(fd, hbuf, 1024, (off_t)f.data_offset) != 1024)
		goto out;
	vhd_header_decode(&h, hbuf);
	print_header(&h, vhd_checksum(hbuf, 1024, 36));
	if (f.type == VHD_TYPE_DIFF)
		print_locators(fd, &h, fsize);
	bat_bytes = (((uint64_t)h.max_bat_size * 4 + 511) & ~511ull);
	if (h.table_offset + bat_bytes + 512 <= fsize &&
	    pread(fd, bbuf, 512, (off_t)(h.table_offset + bat_bytes)) == 512 &&
	    !memcmp(bbuf, "tdbatmap", 8)) {
		vhd_batmap_header_decode(&b, bbuf);
		print_batmap(fd, &b, fsize);
	}
out:
	close(fd);
	fflush(stdout);
	return 0;
}

static int write_out(const void *buf, size_t len)
{
	if (fwrite(buf, 1, len, stdout) != len) {
		vu_error("cannot write to standard output: %s", strerror(errno));
		return EIO;
	}
	return 0;
}

static int check_sector(const vhd_context_t *ctx, uint64_t sec, uint64_t count)
{
	uint64_t n = vhd_sectors(ctx);

	if (sec >= n || count > n - sec) {
		vu_error("%s: sector %s past end of disk (%s sectors)", ctx->file,
			 num(sec + (count ? count - 1 : 0)), num(n));
		return ERANGE;
	}
	return 0;
}

static int check_block(const vhd_context_t *ctx, uint64_t blk, uint64_t count)
{
	if (!vhd_is_dynamic(ctx)) {
		vu_error("%s: a fixed image has no BAT", ctx->file);
		return EINVAL;
	}
	if (blk >= ctx->header.max_bat_size ||
	    count > ctx->header.max_bat_size - blk) {
		vu_error("%s: block %s past end of BAT (%s entries)", ctx->file,
			 num(blk + (count ? count - 1 : 0)),
			 num(ctx->header.max_bat_size));
		return ERANGE;
	}
	return 0;
}

static int translate(vhd_context_t *ctx, uint64_t sec, uint64_t count)
{
	int err = check_sector(ctx, sec, count);

	for (uint64_t s = sec; !err && s < sec + count; s++) {
		uint32_t blk, off, e;

		if (!vhd_is_dynamic(ctx)) {
			printf("logical sector %s: file offset: %s\n", num(s),
			       num(s << 9));
			continue;
		}
		blk = (uint32_t)(s / ctx->spb);
		off = (uint32_t)(s % ctx->spb);
		e = vhd_bat_entry(ctx, blk);
		if (e == VHD_BAT_UNUSED)
			printf("logical sector %s: block number: %s, sector offset: %s, file offset: not allocated\n",
			       num(s), num(blk), num(off));
		else
			printf("logical sector %s: block number: %s, sector offset: %s, file offset: %s\n",
			       num(s), num(blk), num(off),
			       num(((uint64_t)e + ctx->bm_secs + off) << 9));
	}
	return err;
}

static int print_bat(vhd_context_t *ctx, uint64_t blk, uint64_t count)
{
	int err = check_block(ctx, blk, count);

	for (uint64_t b = blk; !err && b < blk + count; b++) {
		uint32_t e = vhd_bat_entry(ctx, (uint32_t)b);

		if (e == VHD_BAT_UNUSED)
			printf("block: %s: not allocated\n", num(b));
		else
			printf("block: %s: offset: %s\n", num(b),
			       num((uint64_t)e << 9));
	}
	return err;
}

static int bat_bitmap(vhd_context_t *ctx)
{
	uint32_t n;
	uint8_t *bm;
	int err;

	if (!vhd_is_dynamic(ctx)) {
		vu_error("%s: a fixed image has no BAT", ctx->file);
		return EINVAL;
	}
	n = ctx->header.max_bat_size;
	bm = calloc(1, n / 8 + 1);
	if (!bm) {
		vu_error("out of memory");
		return ENOMEM;
	}
	for (uint32_t i = 0; i < n; i++)
		if (ctx->bat[i] != VHD_BAT_UNUSED)
			vhd_bitmap_set(bm, i);
	err = write_out(bm, (n + 7) / 8);
	free(bm);
	return err;
}

/* -m (bitmap) and -d (data): raw bytes of each block in the image. */
static int raw_block(vhd_context_t *ctx, uint64_t blk, uint64_t count,
		     bool data)
{
	size_t len = (size_t)(data ? ctx->spb : ctx->bm_secs) << 9;
	uint8_t *buf;
	int err = check_block(ctx, blk, count);

	if (err)
		return err;
	buf = malloc(len);
	if (!buf) {
		vu_error("out of memory");
		return ENOMEM;
	}
	for (uint64_t b = blk; !err && b < blk + count; b++) {
		uint32_t e = vhd_bat_entry(ctx, (uint32_t)b);
		uint64_t off;

		if (e == VHD_BAT_UNUSED) {
			printf("block %s not allocated\n", num(b));
			continue;
		}
		off = ((uint64_t)e + (data ? ctx->bm_secs : 0)) << 9;
		if (pread(ctx->fd, buf, len, (off_t)off) != (ssize_t)len) {
			vu_error("%s: cannot read block %s at %s", ctx->file,
				 num(b), num(off));
			err = EIO;
			break;
		}
		err = write_out(buf, len);
	}
	free(buf);
	return err;
}

/* Whether sector @s is in this image (not its parents); -errno on failure. */
static int sector_present(vhd_context_t *ctx, uint64_t s, uint8_t *bm,
			  int64_t *cached)
{
	uint32_t blk = (uint32_t)(s / ctx->spb);
	int err;

	if (!vhd_is_dynamic(ctx))
		return 1;
	if (vhd_bat_entry(ctx, blk) == VHD_BAT_UNUSED)
		return 0;
	if (vhd_batmap_test(ctx, blk))
		return 1;
	if (*cached != blk) {
		err = vhd_read_bitmap(ctx, blk, bm);
		if (err)
			return err;
		*cached = blk;
	}
	return vhd_bitmap_test(bm, (uint32_t)(s % ctx->spb));
}

static int test_bitmap(vhd_context_t *ctx, uint64_t sec, uint64_t count,
		       bool extents)
{
	uint8_t *bm = malloc(((size_t)ctx->bm_secs << 9) + 1);
	int64_t cached = -1;
	uint64_t start = 0;
	bool in_run = false;
	int err = check_sector(ctx, sec, count);

	if (!bm) {
		vu_error("out of memory");
		return ENOMEM;
	}
	for (uint64_t s = sec; !err && s < sec + count; s++) {
		int p = sector_present(ctx, s, bm, &cached);

		if (p < 0) {
			err = vu_fail(p);
			break;
		}
		if (!extents) {
			printf("block %s: sec: %s: %d\n", num(s / (ctx->spb ? ctx->spb : 1)),
			       num(s), p);
			continue;
		}
		if (p && !in_run) {
			start = s;
			in_run = true;
		} else if (!p && in_run) {
			printf("%s %s\n", num(start), num(s - start));
			in_run = false;
		}
	}
	if (!err && in_run)
		printf("%s %s\n", num(start), num(sec + count - start));
	free(bm);
	return err;
}

static int print_batmap_raw(vhd_context_t *ctx)
{
	if (!ctx->has_batmap) {
		vu_error("%s: no batmap", ctx->file);
		return ENOTSUP;
	}
	return write_out(ctx->batmap, (size_t)ctx->batmap_hdr.batmap_size << 9);
}

static int test_batmap(vhd_context_t *ctx, uint64_t blk, uint64_t count)
{
	int err = check_block(ctx, blk, count);

	if (!err && !ctx->has_batmap) {
		vu_error("%s: no batmap", ctx->file);
		return ENOTSUP;
	}
	for (uint64_t b = blk; !err && b < blk + count; b++)
		printf("batmap for block %s: %d\n", num(b),
		       vhd_batmap_test(ctx, (uint32_t)b));
	return err;
}

/* Virtual disk contents, through the chain, in large requests. */
static int read_chain(const char *name, uint64_t byte, uint64_t len)
{
	vhd_chain_t chain;
	uint64_t first, last, n, sec;
	uint8_t *buf;
	int err;

	err = vhd_chain_open(&chain, name, VHD_OPEN_RDONLY);
	if (err)
		return vu_fail(err);
	n = vhd_sectors(chain.img[0]);
	if (byte > n << 9 || len > (n << 9) - byte) {
		vu_error("%s: %s bytes at byte %s lie past the end of the disk (%s bytes)",
			 name, num(len), num(byte), num(n << 9));
		vhd_chain_close(&chain);
		return ERANGE;
	}
	buf = malloc((size_t)READ_CHUNK_SECTORS << 9);
	if (!buf) {
		vhd_chain_close(&chain);
		vu_error("out of memory");
		return ENOMEM;
	}
	first = byte >> 9;
	last = (byte + len + 511) >> 9;
	for (sec = first; !err && sec < last;) {
		uint32_t cnt = READ_CHUNK_SECTORS;
		uint64_t from, to;

		if (cnt > last - sec)
			cnt = (uint32_t)(last - sec);
		err = vhd_chain_read(&chain, buf, sec, cnt);
		if (err) {
			err = vu_fail(err);
			break;
		}
		from = sec == first ? byte - (first << 9) : 0;
		to = (uint64_t)cnt << 9;
		if ((sec << 9) + to > byte + len)
			to = byte + len - (sec << 9);
		err = write_out(buf + from, to - from);
		sec += cnt;
	}
	free(buf);
	vhd_chain_close(&chain);
	return err;
}

struct opt_num {
	bool set;
	uint64_t v;
};

static int parse_num(int opt, const char *arg, struct opt_num *o)
{
	if (!vu_parse_u64(arg, &o->v))
		return vu_usage("invalid number '%s' for -%c", arg, opt);
	o->set = true;
	return 0;
}

int vhd_util_read(int argc, char **argv)
{
	struct opt_num t = { 0 }, b = { 0 }, m = { 0 }, i = { 0 }, e = { 0 };
	struct opt_num j = { 0 }, d = { 0 }, c = { 0 }, r = { 0 }, R = { 0 };
	bool headers = false, bat = false, batmap = false;
	const char *name = NULL;
	char open_msg[512];
	vhd_context_t ctx;
	uint64_t count;
	int opt, err = 0, open_err;

	hex = false;
	while ((opt = getopt(argc, argv, ":n:pt:b:Bm:i:e:aj:d:c:r:R:xCh")) != -1) {
		switch (opt) {
		case 'n':
			name = optarg;
			break;
		case 'p':
			headers = true;
			break;
		case 'B':
			bat = true;
			break;
		case 'a':
			batmap = true;
			break;
		case 'x':
			hex = true;
			break;
		case 'C':
			break;	/* "cached": accepted for compatibility */
		case 't':
			err = parse_num(opt, optarg, &t);
			break;
		case 'b':
			err = parse_num(opt, optarg, &b);
			break;
		case 'm':
			err = parse_num(opt, optarg, &m);
			break;
		case 'i':
			err = parse_num(opt, optarg, &i);
			break;
		case 'e':
			err = parse_num(opt, optarg, &e);
			break;
		case 'j':
			err = parse_num(opt, optarg, &j);
			break;
		case 'd':
			err = parse_num(opt, optarg, &d);
			break;
		case 'c':
			err = parse_num(opt, optarg, &c);
			break;
		case 'r':
			err = parse_num(opt, optarg, &r);
			break;
		case 'R':
			err = parse_num(opt, optarg, &R);
			break;
		case 'h':
			usage();
			return 0;
		default:
			return vu_opt_error(opt);
		}
		if (err)
			return err;
	}
	if (!vu_args_done(argc, argv, name))
		return EINVAL;
	if (!headers && !t.set && !b.set && !bat && !m.set && !i.set &&
	    !e.set && !batmap && !j.set && !d.set && !r.set && !R.set)
		return vu_usage("nothing to do: give an action (-p, -t, -b, -B, -m, -i, -e, -a, -j, -d, -r, -R)");
	if (c.set && !c.v)
		return vu_usage("-c count must be at least 1");
	count = c.set ? c.v : 1;

	/* Leniently when dumping headers: damaged images are the point. */
	open_err = vhd_open(&ctx, name,
			    VHD_OPEN_RDONLY | (headers ? VHD_OPEN_LENIENT : 0));
	if (open_err)	/* the dump decodes again and would overwrite it */
		snprintf(open_msg, sizeof(open_msg), "%s", vhd_errmsg());
	if (headers) {
		err = dump_headers(name);
		if (err) {
			if (!open_err)
				vhd_close(&ctx);
			return err;
		}
	}
	if (open_err) {
		/* The dump (if any) is out; now report why the image is bad. */
		vu_error("%s", open_msg);
		return -open_err > 0 && -open_err < 256 ? -open_err : EIO;
	}
	if (!err && t.set)
		err = translate(&ctx, t.v, count);
	if (!err && b.set)
		err = print_bat(&ctx, b.v, count);
	if (!err && bat)
		err = bat_bitmap(&ctx);
	if (!err && m.set)
		err = raw_block(&ctx, m.v, count, false);
	if (!err && i.set)
		err = test_bitmap(&ctx, i.v, count, false);
	if (!err && e.set) {
		uint64_t n = vhd_sectors(&ctx);

		/* Without -c, to the end of the disk. */
		err = test_bitmap(&ctx, e.v, c.set ? count :
				  (e.v < n ? n - e.v : 1), true);
	}
	if (!err && batmap)
		err = print_batmap_raw(&ctx);
	if (!err && j.set)
		err = test_batmap(&ctx, j.v, count);
	if (!err && d.set)
		err = raw_block(&ctx, d.v, count, true);
	vhd_close(&ctx);
	if (!err && r.set) {
		if (r.v > UINT64_MAX >> 9 || count > UINT64_MAX >> 9)
			err = vu_usage("-r/-c out of range");
		else
			err = read_chain(name, r.v << 9, count << 9);
	}
	if (!err && R.set)
		err = read_chain(name, R.v, count);
	if (fflush(stdout) && !err) {
		vu_error("cannot write to standard output: %s", strerror(errno));
		err = EIO;
	}
	return err;
}
