// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * On-disk codecs: the footer, the dynamic header, blktap's batmap header,
 * BAT validation and parent locator payloads.  Pure functions, so the
 * fuzzer can drive them directly.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "private.h"

/* 2000-01-01 00:00:00 UTC in Unix time. */
#define VHD_EPOCH_OFFSET	946684800

uint32_t vhd_checksum(const uint8_t *buf, size_t len, size_t csum_off)
{
	uint32_t sum = 0;
	size_t i;

	for (i = 0; i < len; i++) {
		if (i >= csum_off && i < csum_off + 4)
			continue;
		sum += buf[i];
	}
	return ~sum;
}

void vhd_footer_encode(const struct vhd_footer *f, uint8_t buf[512])
{
	memset(buf, 0, 512);
	memcpy(buf, f->cookie, 8);
	put_be32(buf + 8, f->features);
	put_be32(buf + 12, f->ff_version);
	put_be64(buf + 16, f->data_offset);
	put_be32(buf + 24, f->timestamp);
	memcpy(buf + 28, f->crtr_app, 4);
	put_be32(buf + 32, f->crtr_ver);
	put_be32(buf + 36, f->crtr_os);
	put_be64(buf + 40, f->orig_size);
	put_be64(buf + 48, f->curr_size);
	put_be32(buf + 56, f->geometry);
	put_be32(buf + 60, f->type);
	memcpy(buf + 68, f->uuid, 16);
	buf[84] = f->saved;
	buf[85] = f->hidden;
	memcpy(buf + 86, f->reserved, sizeof(f->reserved));
	put_be32(buf + 64, vhd_checksum(buf, 512, 64));
}

int vhd_footer_decode(struct vhd_footer *f, const uint8_t buf[512])
{
	uint32_t sum;

	memcpy(f->cookie, buf, 8);
	f->features = get_be32(buf + 8);
	f->ff_version = get_be32(buf + 12);
	f->data_offset = get_be64(buf + 16);
	f->timestamp = get_be32(buf + 24);
	memcpy(f->crtr_app, buf + 28, 4);
	f->crtr_ver = get_be32(buf + 32);
	f->crtr_os = get_be32(buf + 36);
	f->orig_size = get_be64(buf + 40);
	f->curr_size = get_be64(buf + 48);
	f->geometry = get_be32(buf + 56);
	f->type = get_be32(buf + 60);
	f->checksum = get_be32(buf + 64);
	memcpy(f->uuid, buf + 68, 16);
	f->saved = buf[84];
	f->hidden = buf[85];
	memcpy(f->reserved, buf + 86, sizeof(f->reserved));

	if (memcmp(f->cookie, VHD_COOKIE, 8)) {
		vhd_set_error("bad footer cookie (expected \"conectix\")");
		return -EINVAL;
	}
	sum = vhd_checksum(buf, 512, 64);
	if (sum != f->checksum) {
		vhd_set_error("bad footer checksum 0x%08x (computed 0x%08x)",
			      f->checksum, sum);
		return -EINVAL;
	}
	if (f->type != VHD_TYPE_FIXED && f->type != VHD_TYPE_DYNAMIC &&
	    f->type != VHD_TYPE_DIFF) {
		vhd_set_error("unsupported disk type %u in footer", f->type);
		return -EINVAL;
	}
	if (f->curr_size & (VHD_SECTOR_SIZE - 1)) {
		vhd_set_error("footer size %llu is not a multiple of 512",
			      (unsigned long long)f->curr_size);
		return -EINVAL;
	}
	if (f->curr_size > VHD_MAX_BYTES) {
		vhd_set_error("footer size %llu MiB exceeds the 2040 GiB limit",
			      (unsigned long long)(f->curr_size >> 20));
		return -EINVAL;
	}
	if (f->type != VHD_TYPE_FIXED &&
	    (f->data_offset == ~0ull || f->data_offset & (VHD_SECTOR_SIZE - 1))) {
		vhd_set_error("bad header offset 0x%llx in footer",
			      (unsigned long long)f->data_offset);
		return -EINVAL;
	}
	return 0;
}

bool vhd_footer_expects_batmap(const struct vhd_footer *f)
{
	return f->type != VHD_TYPE_FIXED && !memcmp(f->crtr_app, "tap", 4) &&
	       f->crtr_ver >= 0x00010002u;
}

void vhd_header_encode(const struct vhd_header *h, uint8_t buf[1024])
{
	int i;

	memset(buf, 0, 1024);
	memcpy(buf, h->cookie, 8);
	put_be64(buf + 8, h->data_offset);
	put_be64(buf + 16, h->table_offset);
	put_be32(buf + 24, h->hdr_ver);
	put_be32(buf + 28, h->max_bat_size);
	put_be32(buf + 32, h->block_size);
	memcpy(buf + 40, h->prt_uuid, 16);
	put_be32(buf + 56, h->prt_ts);
	put_be32(buf + 60, h->res1);
	for (i = 0; i < 256; i++)
		put_be16(buf + 64 + 2 * i, h->prt_name[i]);
	for (i = 0; i < VHD_LOC_COUNT; i++) {
		uint8_t *l = buf + 576 + 24 * i;

		put_be32(l, h->loc[i].code);
		put_be32(l + 4, h->loc[i].data_space);
		put_be32(l + 8, h->loc[i].data_len);
		put_be32(l + 12, h->loc[i].res);
		put_be64(l + 16, h->loc[i].data_offset);
	}
	memcpy(buf + 768, h->res2, sizeof(h->res2));
	put_be32(buf + 36, vhd_checksum(buf, 1024, 36));
}

int vhd_header_decode(struct vhd_header *h, const uint8_t buf[1024])
{
	uint32_t sum;
	int i;

	memcpy(h->cookie, buf, 8);
	h->data_offset = get_be64(buf + 8);
	h->table_offset = get_be64(buf + 16);
	h->hdr_ver = get_be32(buf + 24);
	h->max_bat_size = get_be32(buf + 28);
	h->block_size = get_be32(buf + 32);
	h->checksum = get_be32(buf + 36);
	memcpy(h->prt_uuid, buf + 40, 16);
	h->prt_ts = get_be32(buf + 56);
	h->res1 = get_be32(buf + 60);
	for (i = 0; i < 256; i++)
		h->prt_name[i] = get_be16(buf + 64 + 2 * i);
	for (i = 0; i < VHD_LOC_COUNT; i++) {
		const uint8_t *l = buf + 576 + 24 * i;

		h->loc[i].code = get_be32(l);
		h->loc[i].data_space = get_be32(l + 4);
		h->loc[i].data_len = get_be32(l + 8);
		h->loc[i].res = get_be32(l + 12);
		h->loc[i].data_offset = get_be64(l + 16);
	}
	memcpy(h->res2, buf + 768, sizeof(h->res2));

	if (memcmp(h->cookie, VHD_HDR_COOKIE, 8)) {
		vhd_set_error("bad header cookie (expected \"cxsparse\")");
		return -EINVAL;
	}
	sum = vhd_checksum(buf, 1024, 36);
	if (sum != h->checksum) {
		vhd_set_error("bad header checksum 0x%08x (computed 0x%08x)",
			      h->checksum, sum);
		return -EINVAL;
	}
	if (h->hdr_ver != VHD_HDR_VERSION) {
		vhd_set_error("unsupported header version 0x%08x", h->hdr_ver);
		return -EINVAL;
	}
	/* Powers of two from 4 KiB to 256 MiB, so bitmaps stay sane. */
	if (h->block_size < 4096 || h->block_size > (256u << 20) ||
	    (h->block_size & (h->block_size - 1))) {
		vhd_set_error("bad block size %u in header", h->block_size);
		return -EINVAL;
	}
	if ((uint64_t)h->max_bat_size * h->block_size >
	    VHD_MAX_BYTES + h->block_size) {
		vhd_set_error("BAT of %u entries exceeds the 2040 GiB limit",
			      h->max_bat_size);
		return -EINVAL;
	}
	if (h->table_offset & (VHD_SECTOR_SIZE - 1) ||
	    h->table_offset > (1ull << 48)) {
		vhd_set_error("bad BAT offset 0x%llx in header",
			      (unsigned long long)h->table_offset);
		return -EINVAL;
	}
	return 0;
}

void vhd_batmap_header_encode(const struct vhd_batmap_header *b,
			      uint8_t buf[512])
{
	memset(buf, 0, 512);
	memcpy(buf, b->cookie, 8);
	put_be64(buf + 8, b->batmap_offset);
	put_be32(buf + 16, b->batmap_size);
	put_be32(buf + 20, b->batmap_version);
	put_be32(buf + 24, b->checksum);
	buf[28] = b->marker;
}

int vhd_batmap_header_decode(struct vhd_batmap_header *b,
			     const uint8_t buf[512])
{
	memcpy(b->cookie, buf, 8);
	b->batmap_offset = get_be64(buf + 8);
	b->batmap_size = get_be32(buf + 16);
	b->batmap_version = get_be32(buf + 20);
	b->checksum = get_be32(buf + 24);
	b->marker = buf[28];

	if (memcmp(b->cookie, VHD_BATMAP_COOKIE, 8)) {
		vhd_set_error("no batmap (cookie is not \"tdbatmap\")");
		return -EINVAL;
	}
	if (b->batmap_version >> 16 != 1) {
		vhd_set_error("unsupported batmap version 0x%08x",
			      b->batmap_version);
		return -EINVAL;
	}
	if (b->batmap_offset & (VHD_SECTOR_SIZE - 1) ||
	    b->batmap_offset > (1ull << 48) || b->batmap_size == 0 ||
	    b->batmap_size > (1u << 20)) {
		vhd_set_error("bad batmap location 0x%llx, %u sectors",
			      (unsigned long long)b->batmap_offset,
			      b->batmap_size);
		return -EINVAL;
	}
	return 0;
}

struct bat_extent {
	uint64_t start;
	uint32_t index;
};

static int cmp_extent(const void *a, const void *b)
{
	const struct bat_extent *x = a, *y = b;

	return x->start < y->start ? -1 : x->start > y->start;
}

int vhd_bat_overlaps(const uint32_t *bat, uint32_t entries,
		     const uint8_t *skip, uint64_t blen,
		     int (*overlap)(void *arg, uint32_t a, uint32_t b,
				    uint64_t sa, uint64_t sb),
		     void *arg)
{
	struct bat_extent *ext;
	uint32_t i, n = 0, far;
	int err = 0;

	ext = malloc((size_t)entries * sizeof(*ext) + 1);
	if (!ext) {
		vhd_set_error("out of memory checking the BAT");
		return -ENOMEM;
	}
	for (i = 0; i < entries; i++) {
		if (bat[i] == VHD_BAT_UNUSED || (skip && skip[i]))
			continue;
		ext[n].start = (uint64_t)bat[i] << VHD_SECTOR_SHIFT;
		ext[n].index = i;
		n++;
	}
	qsort(ext, n, sizeof(*ext), cmp_extent);
	/*
	 * Blocks are all the same length, so sorted by start each one can
	 * only overlap the last block that did not overlap anything.
	 */
	for (i = 1, far = 0; i < n && !err; i++) {
		if (ext[far].start + blen > ext[i].start)
			err = overlap(arg, ext[far].index, ext[i].index,
				      ext[far].start, ext[i].start);
		else
			far = i;
	}
	free(ext);
	return err;
}

static int first_overlap(void *arg, uint32_t a, uint32_t b, uint64_t sa,
			 uint64_t sb)
{
	(void)arg;
	vhd_set_error("BAT entries %u and %u overlap (sectors %llu and %llu)",
		      a, b, (unsigned long long)(sa >> VHD_SECTOR_SHIFT),
		      (unsigned long long)(sb >> VHD_SECTOR_SHIFT));
	return -EINVAL;
}

int vhd_bat_validate(const uint32_t *bat, uint32_t entries,
		     uint32_t block_sectors, uint64_t data_start,
		     uint64_t file_end)
{
	uint64_t blen = (uint64_t)block_sectors << VHD_SECTOR_SHIFT;
	uint32_t i;

	for (i = 0; i < entries; i++) {
		uint64_t off;

		if (bat[i] == VHD_BAT_UNUSED)
			continue;
		off = (uint64_t)bat[i] << VHD_SECTOR_SHIFT;
		if (off < data_start) {
			vhd_set_error("BAT entry %u (sector %u) overlaps the metadata",
				      i, bat[i]);
			return -EINVAL;
		}
		if (off + blen > file_end) {
			vhd_set_error("BAT entry %u (sector %u) points past the end of the file",
				      i, bat[i]);
			return -EINVAL;
		}
	}
	return vhd_bat_overlaps(bat, entries, NULL, blen, first_overlap, NULL);
}

uint64_t vhd_locator_space(const struct vhd_locator *loc)
{
	/*
	 * The specification says sectors; Microsoft's tools and blktap
	 * write bytes.  Small values are sectors, multiples of 512 bytes.
	 */
	if (loc->data_space < 512)
		return (uint64_t)loc->data_space << VHD_SECTOR_SHIFT;
	if (loc->data_space % 512 == 0)
		return loc->data_space;
	return 0;
}

/* Append one code point as UTF-8; returns bytes written or -1. */
static int put_utf8(char *out, size_t room, uint32_t cp)
{
	if (cp < 0x80 && room >= 1) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800 && room >= 2) {
		out[0] = (char)(0xC0 | cp >> 6);
		out[1] = (char)(0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000 && room >= 3) {
		out[0] = (char)(0xE0 | cp >> 12);
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		out[2] = (char)(0x80 | (cp & 0x3F));
		return 3;
	}
	if (cp < 0x110000 && room >= 4) {
		out[0] = (char)(0xF0 | cp >> 18);
		out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
		out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
		out[3] = (char)(0x80 | (cp & 0x3F));
		return 4;
	}
	return -1;
}

/*
 * UTF-16 (@be: big-endian, else little) up to a NUL or @len bytes, into
 * UTF-8 with a NUL.  Strict: a bad surrogate or no room fails (-1).
 * @lenient: a bad surrogate becomes '?' and the text is cut to fit.
 * Returns the bytes written, without the NUL.
 */
static ssize_t utf16_to_utf8(const uint8_t *data, size_t len, bool be,
			     bool lenient, char *out, size_t outlen)
{
	size_t o = 0, i;

	if (!outlen)
		return -1;
	out[0] = 0;
	for (i = 0; i + 1 < len; i += 2) {
		uint32_t cp = be ? get_be16(data + i) :
				   (uint32_t)(data[i] | data[i + 1] << 8);
		int w;

		if (!cp)
			break;
		if (cp >= 0xD800 && cp < 0xE000) {
			uint32_t lo = 0;

			if (cp < 0xDC00 && i + 3 < len)
				lo = be ? get_be16(data + i + 2) :
					  (uint32_t)(data[i + 2] | data[i + 3] << 8);
			if (lo >= 0xDC00 && lo < 0xE000) {
				cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
				i += 2;
			} else if (lenient) {
				cp = '?';
			} else {
				return -1;
			}
		}
		w = put_utf8(out + o, outlen - 1 - o, cp);
		if (w < 0) {
			if (lenient)
				break;
			return -1;
		}
		o += (size_t)w;
	}
	out[o] = 0;
	return (ssize_t)o;
}

int vhd_locator_decode(uint32_t code, const uint8_t *data, size_t len,
		       char *out, size_t outlen)
{
	size_t i;

	if (!outlen)
		return -EINVAL;
	if (code == VHD_LOC_MACX) {
		const char *p = (const char *)data;
		size_t n = strnlen(p, len);

		if (n >= 7 && !memcmp(p, "file://", 7)) {
			p += 7;
			n -= 7;
		}
		if (!n || n >= outlen) {
			vhd_set_error("bad MacX parent locator");
			return -EINVAL;
		}
		memcpy(out, p, n);
		out[n] = 0;
		if (memchr(out, 0, n)) {
			vhd_set_error("bad MacX parent locator");
			return -EINVAL;
		}
		return 0;
	}
	if (code != VHD_LOC_W2KU && code != VHD_LOC_W2RU) {
		vhd_set_error("unknown parent locator code 0x%08x", code);
		return -EINVAL;
	}
	if (utf16_to_utf8(data, len, false, false, out, outlen) <= 0) {
		vhd_set_error("bad UTF-16 text in %s parent locator",
			      code == VHD_LOC_W2KU ? "W2ku" : "W2ru");
		return -EINVAL;
	}
	/* Windows separators. */
	for (i = 0; out[i]; i++)
		if (out[i] == '\\')
			out[i] = '/';
	return 0;
}

void vhd_header_parent_name(const struct vhd_header *h, char *out, size_t len)
{
	uint8_t be[sizeof(h->prt_name)];

	for (size_t i = 0; i < 256; i++)
		put_be16(be + 2 * i, h->prt_name[i]);
	if (len)
		utf16_to_utf8(be, sizeof(be), true, true, out, len);
}

uint32_t vhd_chs(uint64_t sectors)
{
	uint64_t cth;
	uint32_t spt, heads, cyl;

	if (sectors > 65535ull * 16 * 255)
		sectors = 65535ull * 16 * 255;
	if (sectors >= 65535ull * 16 * 63) {
		spt = 255;
		heads = 16;
		cth = sectors / spt;
	} else {
		spt = 17;
		cth = sectors / spt;
		heads = (uint32_t)((cth + 1023) / 1024);
		if (heads < 4)
			heads = 4;
		if (cth >= (uint64_t)heads * 1024 || heads > 16) {
			spt = 31;
			heads = 16;
			cth = sectors / spt;
		}
		if (cth >= (uint64_t)heads * 1024) {
			spt = 63;
			heads = 16;
			cth = sectors / spt;
		}
	}
	cyl = (uint32_t)(cth / heads);
	return cyl << 16 | heads << 8 | spt;
}

uint32_t vhd_time_now(void)
{
	time_t now = time(NULL);

	return now > VHD_EPOCH_OFFSET ? (uint32_t)(now - VHD_EPOCH_OFFSET) : 0;
}

time_t vhd_time_to_unix(uint32_t t)
{
	return (time_t)t + VHD_EPOCH_OFFSET;
}

const char *vhd_type_name(uint32_t type)
{
	switch (type) {
	case VHD_TYPE_FIXED:
		return "fixed";
	case VHD_TYPE_DYNAMIC:
		return "dynamic";
	case VHD_TYPE_DIFF:
		return "differencing";
	default:
		return "unknown";
	}
}
