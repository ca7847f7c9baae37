// SPDX-License-Identifier: LGPL-2.1-or-later
/* On-disk codecs: footer, header, batmap header, CHS, time, locators. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "libvhd.h"

static void sample_footer(struct vhd_footer *f)
{
	memset(f, 0, sizeof(*f));
	memcpy(f->cookie, "conectix", 8);
	f->features = 2;
	f->ff_version = 0x00010000;
	f->data_offset = 512;
	f->timestamp = 0x2A3B4C5D;
	memcpy(f->crtr_app, "tap", 4);
	f->crtr_ver = 0x00010003;
	f->crtr_os = 0x5769326B;	/* "Wi2k" */
	f->orig_size = 20ull << 20;
	f->curr_size = 40ull << 20;
	f->geometry = vhd_chs(40ull << 11);
	f->type = VHD_TYPE_DYNAMIC;
	for (int i = 0; i < 16; i++)
		f->uuid[i] = (uint8_t)(0x10 + i);
	f->saved = 0;
	f->hidden = 1;
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

static uint64_t be64(const uint8_t *p)
{
	return (uint64_t)be32(p) << 32 | be32(p + 4);
}

static void test_footer_roundtrip(void **state)
{
	struct vhd_footer f, g;
	uint8_t buf[512], again[512];

	(void)state;
	sample_footer(&f);
	vhd_footer_encode(&f, buf);
	/* Byte layout of the specification (and blktap's hidden byte). */
	assert_memory_equal(buf, "conectix", 8);
	assert_int_equal(be32(buf + 8), 2);
	assert_int_equal(be64(buf + 16), 512);
	assert_int_equal(be32(buf + 24), 0x2A3B4C5D);
	assert_memory_equal(buf + 28, "tap\0", 4);
	assert_int_equal(be64(buf + 40), 20ull << 20);
	assert_int_equal(be64(buf + 48), 40ull << 20);
	assert_int_equal(be32(buf + 60), VHD_TYPE_DYNAMIC);
	assert_int_equal(buf[68], 0x10);
	assert_int_equal(buf[85], 1);
	assert_int_equal(be32(buf + 64), vhd_checksum(buf, 512, 64));

	assert_int_equal(vhd_footer_decode(&g, buf), 0);
	assert_memory_equal(g.cookie, f.cookie, 8);
	assert_int_equal(g.features, f.features);
	assert_int_equal(g.ff_version, f.ff_version);
	assert_int_equal(g.data_offset, f.data_offset);
	assert_int_equal(g.timestamp, f.timestamp);
	assert_memory_equal(g.crtr_app, f.crtr_app, 4);
	assert_int_equal(g.crtr_ver, f.crtr_ver);
	assert_int_equal(g.crtr_os, f.crtr_os);
	assert_int_equal(g.orig_size, f.orig_size);
	assert_int_equal(g.curr_size, f.curr_size);
	assert_int_equal(g.geometry, f.geometry);
	assert_int_equal(g.type, f.type);
	assert_memory_equal(g.uuid, f.uuid, 16);
	assert_int_equal(g.hidden, 1);
	assert_int_equal(g.checksum, be32(buf + 64));
	vhd_footer_encode(&g, again);
	assert_memory_equal(buf, again, 512);
}

static void test_footer_rejects(void **state)
{
	struct vhd_footer f, g;
	uint8_t buf[512];

	(void)state;
	sample_footer(&f);

	vhd_footer_encode(&f, buf);
	buf[0] = 'C';
	assert_int_equal(vhd_footer_decode(&g, buf), -EINVAL);
	assert_non_null(strstr(vhd_errmsg(), "cookie"));

	vhd_footer_encode(&f, buf);
	buf[100] ^= 0x40;		/* reserved area: only the sum notices */
	assert_int_equal(vhd_footer_decode(&g, buf), -EINVAL);
	assert_non_null(strstr(vhd_errmsg(), "checksum"));

	vhd_footer_encode(&f, buf);
	buf[67] ^= 1;			/* the stored checksum itself */
	assert_int_equal(vhd_footer_decode(&g, buf), -EINVAL);
	assert_non_null(strstr(vhd_errmsg(), "checksum"));

	f.type = 5;
	vhd_footer_encode(&f, buf);
	assert_int_equal(vhd_footer_decode(&g, buf), -EINVAL);

	sample_footer(&f);
	f.curr_size = VHD_MAX_BYTES + (2u << 20);
	vhd_footer_encode(&f, buf);
	assert_int_equal(vhd_footer_decode(&g, buf), -EINVAL);
}

static void sample_header(struct vhd_header *h)
{
	memset(h, 0, sizeof(*h));
	memcpy(h->cookie, "cxsparse", 8);
	h->data_offset = ~0ull;
	h->table_offset = 1536;
	h->hdr_ver = 0x00010000;
	h->max_bat_size = 10;
	h->block_size = 2u << 20;
	for (int i = 0; i < 16; i++)
		h->prt_uuid[i] = (uint8_t)(0xA0 + i);
	h->prt_ts = 12345;
	h->prt_name[0] = 'b';
	h->prt_name[1] = 0x00E9;	/* é */
	h->loc[0].code = VHD_LOC_MACX;
	h->loc[0].data_space = 2048;
	h->loc[0].data_len = 17;
	h->loc[0].data_offset = 4096;
	h->loc[2].code = VHD_LOC_W2RU;
	h->loc[2].data_space = 4;
	h->loc[2].data_len = 30;
	h->loc[2].data_offset = 1ull << 33;
}

static void test_header_roundtrip(void **state)
{
	struct vhd_header h, g;
	uint8_t buf[1024], again[1024];

	(void)state;
	sample_header(&h);
	vhd_header_encode(&h, buf);
	assert_memory_equal(buf, "cxsparse", 8);
	assert_int_equal(be64(buf + 8), ~0ull);
	assert_int_equal(be64(buf + 16), 1536);
	assert_int_equal(be32(buf + 28), 10);
	assert_int_equal(be32(buf + 32), 2u << 20);
	assert_int_equal(be32(buf + 36), vhd_checksum(buf, 1024, 36));
	/* Parent name: UTF-16 big-endian. */
	assert_int_equal(buf[64], 0);
	assert_int_equal(buf[65], 'b');
	assert_int_equal(buf[66], 0);
	assert_int_equal(buf[67], 0xE9);
	/* Locator 2 entry. */
	assert_int_equal(be32(buf + 576 + 48), VHD_LOC_W2RU);
	assert_int_equal(be64(buf + 576 + 48 + 16), 1ull << 33);

	assert_int_equal(vhd_header_decode(&g, buf), 0);
	assert_int_equal(g.table_offset, h.table_offset);
	assert_int_equal(g.max_bat_size, h.max_bat_size);
	assert_int_equal(g.block_size, h.block_size);
	assert_memory_equal(g.prt_uuid, h.prt_uuid, 16);
	assert_int_equal(g.prt_ts, h.prt_ts);
	assert_memory_equal(g.prt_name, h.prt_name, sizeof(h.prt_name));
	for (int i = 0; i < VHD_LOC_COUNT; i++) {
		assert_int_equal(g.loc[i].code, h.loc[i].code);
		assert_int_equal(g.loc[i].data_space, h.loc[i].data_space);
		assert_int_equal(g.loc[i].data_len, h.loc[i].data_len);
		assert_int_equal(g.loc[i].data_offset, h.loc[i].data_offset);
	}
	vhd_header_encode(&g, again);
	assert_memory_equal(buf, again, 1024);
}

static void test_header_rejects(void **state)
{
	struct vhd_header h, g;
	uint8_t buf[1024];

	(void)state;
	sample_header(&h);
	vhd_header_encode(&h, buf);
	buf[7] = 'X';
	assert_int_equal(vhd_header_decode(&g, buf), -EINVAL);
	assert_non_null(strstr(vhd_errmsg(), "cookie"));

	vhd_header_encode(&h, buf);
	buf[900] = 1;
	assert_int_equal(vhd_header_decode(&g, buf), -EINVAL);
	assert_non_null(strstr(vhd_errmsg(), "checksum"));

	h.block_size = 3u << 20;	/* not a power of two */
	vhd_header_encode(&h, buf);
	assert_int_equal(vhd_header_decode(&g, buf), -EINVAL);

	sample_header(&h);
	h.hdr_ver = 0x00020000;
	vhd_header_encode(&h, buf);
	assert_int_equal(vhd_header_decode(&g, buf), -EINVAL);
}

static void test_batmap_header(void **state)
{
	struct vhd_batmap_header b, g;
	uint8_t buf[512], again[512];

	(void)state;
	memset(&b, 0, sizeof(b));
	memcpy(b.cookie, "tdbatmap", 8);
	b.batmap_offset = 2560;
	b.batmap_size = 1;
	b.batmap_version = VHD_BATMAP_VERSION;
	b.checksum = 0xDEADBEEF;
	b.marker = 1;
	vhd_batmap_header_encode(&b, buf);
	assert_memory_equal(buf, "tdbatmap", 8);
	assert_int_equal(be64(buf + 8), 2560);
	assert_int_equal(be32(buf + 16), 1);
	assert_int_equal(be32(buf + 20), 0x00010002);
	assert_int_equal(be32(buf + 24), 0xDEADBEEF);
	assert_int_equal(buf[28], 1);
	assert_int_equal(vhd_batmap_header_decode(&g, buf), 0);
	assert_int_equal(g.batmap_offset, 2560);
	assert_int_equal(g.batmap_size, 1);
	assert_int_equal(g.checksum, 0xDEADBEEF);
	assert_int_equal(g.marker, 1);
	vhd_batmap_header_encode(&g, again);
	assert_memory_equal(buf, again, 512);

	buf[0] = 'x';
	assert_int_equal(vhd_batmap_header_decode(&g, buf), -EINVAL);
	b.batmap_version = 0x00020000;
	vhd_batmap_header_encode(&b, buf);
	assert_int_equal(vhd_batmap_header_decode(&g, buf), -EINVAL);
}

static void test_checksum_known(void **state)
{
	uint8_t buf[1024];

	(void)state;
	memset(buf, 0, sizeof(buf));
	assert_int_equal(vhd_checksum(buf, 512, 64), 0xFFFFFFFFu);
	memset(buf, 1, sizeof(buf));
	/* 508 ones counted, the 4 checksum bytes skipped. */
	assert_int_equal(vhd_checksum(buf, 512, 64), ~508u);
	assert_int_equal(vhd_checksum(buf, 512, SIZE_MAX), ~512u);
	memset(buf, 0xFF, sizeof(buf));
	assert_int_equal(vhd_checksum(buf, 1024, 36), ~(1020u * 255u));
	/* A sparse footer-like sector with a few fields set. */
	memset(buf, 0, 512);
	memcpy(buf, "conectix", 8);
	buf[11] = 2;
	buf[13] = 1;
	buf[23] = 0;
	buf[22] = 2;			/* data offset 512 */
	memcpy(buf + 28, "qemu", 4);
	buf[33] = 5;
	buf[35] = 3;
	memcpy(buf + 36, "Wi2k", 4);
	/*
	 * By hand: "conectix" 99+111+110+101+99+116+105+120 = 861, the
	 * numbers 2+1+2+5+3 = 13, "qemu" 113+101+109+117 = 440, "Wi2k"
	 * 87+105+50+107 = 349; 1663 in all, and ~1663 = 0xFFFFF980.
	 */
	assert_int_equal(vhd_checksum(buf, 512, 64), 0xFFFFF980u);
	/* The checksum field's own bytes never count. */
	buf[64] = 0xAB;
	assert_int_equal(vhd_checksum(buf, 512, 64), 0xFFFFF980u);
}

/* The CHS algorithm of the VHD specification (appendix), written out. */
static uint32_t spec_chs(uint64_t total)
{
	uint64_t spt, heads, cth;

	if (total > 65535ull * 16 * 255)
		total = 65535ull * 16 * 255;
	if (total >= 65535ull * 16 * 63) {
		spt = 255;
		heads = 16;
		cth = total / spt;
	} else {
		spt = 17;
		cth = total / spt;
		heads = (cth + 1023) / 1024;
		if (heads < 4)
			heads = 4;
		if (cth >= heads * 1024 || heads > 16) {
			spt = 31;
			heads = 16;
			cth = total / spt;
		}
		if (cth >= heads * 1024) {
			spt = 63;
			heads = 16;
			cth = total / spt;
		}
	}
	return (uint32_t)((cth / heads) << 16 | heads << 8 | spt);
}

#define CHS(c, h, s) ((uint32_t)(c) << 16 | (uint32_t)(h) << 8 | (uint32_t)(s))

static void test_chs(void **state)
{
	static const struct {
		uint64_t sectors;
		uint32_t chs;
	} known[] = {
		{ 2048, CHS(30, 4, 17) },		/* 1 MiB */
		{ 40960, CHS(602, 4, 17) },		/* 20 MiB */
		{ 400000, CHS(806, 16, 31) },		/* the 31-sector branch */
		{ 2097152, CHS(2080, 16, 63) },		/* 1 GiB */
		{ 65535ull * 16 * 63 - 1, CHS(65534, 16, 63) },
		{ 65535ull * 16 * 63, CHS(16191, 16, 255) },
		{ 65535ull * 16 * 255, CHS(65535, 16, 255) },	/* the cap */
		{ VHD_MAX_SECTORS, CHS(65535, 16, 255) },	/* capped */
	};
	uint64_t s;

	(void)state;
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
		assert_int_equal(spec_chs(known[i].sectors), known[i].chs);
		assert_int_equal(vhd_chs(known[i].sectors), known[i].chs);
	}
	/* Many sizes across every branch. */
	for (s = 1; s < VHD_MAX_SECTORS; s = s * 3 / 2 + 7)
		assert_int_equal(vhd_chs(s), spec_chs(s));
	for (s = 0; s <= 64; s++) {
		uint64_t mb = s << 11;

		assert_int_equal(vhd_chs(mb), spec_chs(mb));
	}
}

static void test_time(void **state)
{
	uint32_t now = vhd_time_now();
	time_t t = time(NULL);

	(void)state;
	assert_int_equal(vhd_time_to_unix(0), 946684800);	/* 2000-01-01 UTC */
	assert_int_equal(vhd_time_to_unix(86400), 946684800 + 86400);
	assert_true(vhd_time_to_unix(now) <= t + 1);
	assert_true(vhd_time_to_unix(now) >= t - 5);
	assert_int_equal(vhd_time_to_unix(0xFFFFFFFFu),
			 (time_t)946684800 + 0xFFFFFFFFll);
}

/* UTF-16LE bytes of @units. */
static size_t le16(const uint16_t *units, size_t n, uint8_t *out)
{
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = (uint8_t)units[i];
		out[2 * i + 1] = (uint8_t)(units[i] >> 8);
	}
	return 2 * n;
}

static void test_locator_utf16(void **state)
{
	static const uint16_t path[] = { '.', '\\', 'd', 'i', 'r', '\\', 'b',
					 0x00E9, 0x20AC, 0xD83D, 0xDE00, '.',
					 'v', 'h', 'd' };
	static const uint16_t lone_hi[] = { 'a', 0xD83D, 'b' };
	static const uint16_t lone_lo[] = { 'a', 0xDE00 };
	static const uint16_t trunc_hi[] = { 'a', 0xD83D };
	static const uint16_t with_nul[] = { 'x', '\\', 'y', 0, 'z' };
	uint8_t buf[128];
	char out[128];
	size_t n;

	(void)state;
	n = le16(path, sizeof(path) / 2, buf);
	assert_int_equal(vhd_locator_decode(VHD_LOC_W2RU, buf, n, out, sizeof(out)), 0);
	assert_string_equal(out, "./dir/b\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80.vhd");
	assert_int_equal(vhd_locator_decode(VHD_LOC_W2KU, buf, n, out, sizeof(out)), 0);
	assert_string_equal(out, "./dir/b\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80.vhd");

	n = le16(with_nul, 5, buf);	/* stops at the NUL */
	assert_int_equal(vhd_locator_decode(VHD_LOC_W2KU, buf, n, out, sizeof(out)), 0);
	assert_string_equal(out, "x/y");

	n = le16(lone_hi, 3, buf);
	assert_int_equal(vhd_locator_decode(VHD_LOC_W2KU, buf, n, out, sizeof(out)), -EINVAL);
	n = le16(lone_lo, 2, buf);
	assert_int_equal(vhd_locator_decode(VHD_LOC_W2KU, buf, n, out, sizeof(out)), -EINVAL);
	n = le16(trunc_hi, 2, buf);
	assert_int_equal(vhd_locator_decode(VHD_LOC_W2KU, buf, n, out, sizeof(out)), -EINVAL);
	/* Empty text, and text that does not fit. */
	assert_int_equal(vhd_locator_decode(VHD_LOC_W2KU, buf, 0, out, sizeof(out)), -EINVAL);
	n = le16(path, sizeof(path) / 2, buf);
	assert_int_equal(vhd_locator_decode(VHD_LOC_W2RU, buf, n, out, 8), -EINVAL);
	assert_int_equal(vhd_locator_decode(0x12345678, buf, n, out, sizeof(out)), -EINVAL);
}

static void test_locator_macx(void **state)
{
	char out[64];
	const char *url = "file://../images/base.vhd";
	const char *abs = "file:///srv/vm/base.vhd";

	(void)state;
	assert_int_equal(vhd_locator_decode(VHD_LOC_MACX, (const uint8_t *)url,
					    strlen(url), out, sizeof(out)), 0);
	assert_string_equal(out, "../images/base.vhd");
	assert_int_equal(vhd_locator_decode(VHD_LOC_MACX, (const uint8_t *)abs,
					    strlen(abs), out, sizeof(out)), 0);
	assert_string_equal(out, "/srv/vm/base.vhd");
	/* Without the scheme the text is taken as it is. */
	assert_int_equal(vhd_locator_decode(VHD_LOC_MACX, (const uint8_t *)"a/b",
					    3, out, sizeof(out)), 0);
	assert_string_equal(out, "a/b");
	/* Padding NULs after the text end it. */
	assert_int_equal(vhd_locator_decode(VHD_LOC_MACX,
					    (const uint8_t *)"file://x\0\0\0", 11,
					    out, sizeof(out)), 0);
	assert_string_equal(out, "x");
	assert_int_equal(vhd_locator_decode(VHD_LOC_MACX, (const uint8_t *)"file://",
					    7, out, sizeof(out)), -EINVAL);
	assert_int_equal(vhd_locator_decode(VHD_LOC_MACX, (const uint8_t *)url,
					    strlen(url), out, 5), -EINVAL);
}

static void test_locator_space(void **state)
{
	struct vhd_locator l;

	(void)state;
	memset(&l, 0, sizeof(l));
	l.data_space = 4;		/* sectors, as the specification says */
	assert_int_equal(vhd_locator_space(&l), 2048);
	l.data_space = 1;
	assert_int_equal(vhd_locator_space(&l), 512);
	l.data_space = 511;
	assert_int_equal(vhd_locator_space(&l), 511 * 512);
	l.data_space = 512;		/* bytes, as blktap and Microsoft write */
	assert_int_equal(vhd_locator_space(&l), 512);
	l.data_space = 2048;
	assert_int_equal(vhd_locator_space(&l), 2048);
	l.data_space = 1000;		/* neither */
	assert_int_equal(vhd_locator_space(&l), 0);
	l.data_space = 0;
	assert_int_equal(vhd_locator_space(&l), 0);
}

static void test_type_names(void **state)
{
	(void)state;
	assert_string_equal(vhd_type_name(VHD_TYPE_FIXED), "fixed");
	assert_string_equal(vhd_type_name(VHD_TYPE_DYNAMIC), "dynamic");
	assert_string_equal(vhd_type_name(VHD_TYPE_DIFF), "differencing");
	assert_string_equal(vhd_type_name(7), "unknown");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_footer_roundtrip),
		cmocka_unit_test(test_footer_rejects),
		cmocka_unit_test(test_header_roundtrip),
		cmocka_unit_test(test_header_rejects),
		cmocka_unit_test(test_batmap_header),
		cmocka_unit_test(test_checksum_known),
		cmocka_unit_test(test_chs),
		cmocka_unit_test(test_time),
		cmocka_unit_test(test_locator_utf16),
		cmocka_unit_test(test_locator_macx),
		cmocka_unit_test(test_locator_space),
		cmocka_unit_test(test_type_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
