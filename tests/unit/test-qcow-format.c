// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The qcow codec: header and extension round trip, the checks on
 * headers and L2 entries, MD5 and the L1 checksum (RFC 1321 vectors, and
 * the value blktap stored for an empty table), compressed entries and
 * raw-deflate clusters, backing paths.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "qcow-format.h"

static void sample(struct qcow_header *h)
{
	memset(h, 0, sizeof(*h));
	h->magic = QCOW_MAGIC;
	h->version = 1;
	h->size = 64ull << 20;
	h->cluster_bits = 12;
	h->l2_bits = 9;
	h->l1_off = 4096;
	h->has_ext = true;
	h->cksum = 0xac9e61bf;
	h->min_cluster_alloc = 512;
	h->flags = QCOW_EXT_L1_BE | QCOW_EXT_SPARSE;
	h->mtime = 0x12345678;
}

static void test_header_roundtrip(void **state)
{
	uint8_t buf[QCOW_HEAD_BYTES];
	struct qcow_header h, d;

	(void)state;
	sample(&h);
	qcow_header_encode(&h, buf);
	assert_memory_equal(buf, "QFI\xfb\0\0\0\1", 8);
	assert_int_equal(buf[32], 12);
	assert_int_equal(buf[33], 9);
	assert_memory_equal(buf + 48, "XEN\xfb", 4);
	qcow_header_decode(&d, buf);
	assert_memory_equal(&h, &d, sizeof(h));
	/* Without a page-aligned L1 table the extension is not trusted. */
	h.l1_off = 48 + 16 + 8;
	qcow_header_encode(&h, buf);
	qcow_header_decode(&d, buf);
	assert_false(d.has_ext);
	assert_int_equal(d.l1_off, 72);
}

static void test_header_check(void **state)
{
	struct qcow_header h;
	struct qcow_geom g;
	char why[200];

	(void)state;
	sample(&h);
	assert_int_equal(qcow_header_check(&h, 8192, &g, why, sizeof(why)), 0);
	assert_int_equal(g.cluster_size, 4096);
	assert_int_equal(g.l2_size, 512);
	assert_int_equal(g.l2_secs, 4096);
	assert_int_equal(g.l1_size, 32);
	assert_int_equal(g.sectors, 131072);
	assert_true(g.optimised);
	/* A backing file turns optimised allocation off. */
	h.backing_off = 64;
	h.backing_len = 4;
	assert_int_equal(qcow_header_check(&h, 8192, &g, why, sizeof(why)), 0);
	assert_false(g.optimised);
	sample(&h);
	h.magic = 0x12345678;
	assert_int_equal(qcow_header_check(&h, 8192, &g, why, sizeof(why)),
			 -EINVAL);
	assert_non_null(strstr(why, "bad magic"));
	sample(&h);
	h.version = 2;
	assert_int_equal(qcow_header_check(&h, 8192, &g, why, sizeof(why)),
			 -EOPNOTSUPP);
	assert_non_null(strstr(why, "qcow2"));
	sample(&h);
	h.crypt = QCOW_CRYPT_AES;
	assert_int_equal(qcow_header_check(&h, 8192, &g, why, sizeof(why)),
			 -EOPNOTSUPP);
	assert_non_null(strstr(why, "AES"));
	sample(&h);
	h.cluster_bits = 8;
	assert_int_equal(qcow_header_check(&h, 8192, &g, why, sizeof(why)),
			 -EINVAL);
	sample(&h);
	h.l2_bits = 14;
	assert_int_equal(qcow_header_check(&h, 8192, &g, why, sizeof(why)),
			 -EINVAL);
	sample(&h);
	/* 32 entries of L1 at 4096 need 4352 bytes of file. */
	assert_int_equal(qcow_header_check(&h, 4351, &g, why, sizeof(why)),
			 -EINVAL);
	assert_non_null(strstr(why, "past the end"));
	sample(&h);
	h.size = 1ull << 63;
	assert_int_equal(qcow_header_check(&h, 8192, &g, why, sizeof(why)),
			 -EINVAL);
	sample(&h);
	h.backing_off = 8000;
	h.backing_len = 500;
	assert_int_equal(qcow_header_check(&h, 8192, &g, why, sizeof(why)),
			 -EINVAL);
}

static void test_entries(void **state)
{
	struct qcow_header h;
	struct qcow_geom g;
	char why[200];
	/* As QEMU writes it: flag, length above bit 63 - cluster_bits. */
	uint64_t c = QCOW_OFLAG_COMPRESSED | (uint64_t)1234 << (63 - 12) |
		     0x12345;

	(void)state;
	sample(&h);
	assert_int_equal(qcow_header_check(&h, 8192, &g, why, sizeof(why)), 0);
	assert_true(qcow_is_compressed(c));
	assert_int_equal(qcow_csize(c, 12), 1234);
	assert_int_equal(qcow_coff(c, 12), 0x12345);
	assert_int_equal(qcow_l2_entry_check(&g, 12, c, 0x12345 + 1234, why,
					     sizeof(why)), 0);
	assert_int_equal(qcow_l2_entry_check(&g, 12, c, 0x12345 + 1233, why,
					     sizeof(why)), -EINVAL);
	assert_int_equal(qcow_l2_entry_check(&g, 12, 8192, 8193, why,
					     sizeof(why)), 0);
	assert_int_equal(qcow_l2_entry_check(&g, 12, 8192, 8192, why,
					     sizeof(why)), -EINVAL);
	assert_non_null(strstr(why, "past the end"));
	assert_int_equal(qcow_l2_entry_check(&g, 12, 8193, 1 << 20, why,
					     sizeof(why)), -EINVAL);
}

static void hex(const uint8_t *md, char *out)
{
	for (int i = 0; i < 16; i++)
		sprintf(out + 2 * i, "%02x", md[i]);
}

static void test_md5(void **state)
{
	static const struct { const char *in, *out; } v[] = {
		{ "", "d41d8cd98f00b204e9800998ecf8427e" },
		{ "abc", "900150983cd24fb0d6963f7d28e17f72" },
		{ "message digest", "f96b697d7cb7938d525a2f31aaf161d0" },
		{ "abcdefghijklmnopqrstuvwxyz",
		  "c3fcd3d76192e4007dfb496cca67e13b" },
		{ "1234567890123456789012345678901234567890123456789012345678"
		  "9012345678901234567890",
		  "57edf4a22be3c955ac49da2e2107b67a" },
		{ "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
		  "3b0c8ac703f828b04c6c197006d17218" },
		{ "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		  "aaaa", "014842d480b571495a4a0363793f7367" },
	};
	uint8_t md[16], zeros[512] = { 0 };
	char s[33];

	(void)state;
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		qcow_md5(v[i].in, strlen(v[i].in), md);
		hex(md, s);
		assert_string_equal(s, v[i].out);
	}
	/* First digest bytes as a little-endian u32, as blktap on x86. */
	assert_int_equal(qcow_l1_cksum(zeros, sizeof(zeros)), 0xac9e61bf);
}

static void test_inflate(void **state)
{
	uint8_t in[4096], packed[8192], out[4096];
	z_stream d = { 0 }, c = { 0 };
	size_t len;

	(void)state;
	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (uint8_t)("hello qcow "[i % 11]);
	/* QEMU's compressor: raw deflate, a 4 KiB window. */
	assert_int_equal(deflateInit2(&c, Z_DEFAULT_COMPRESSION, Z_DEFLATED,
				      -12, 9, Z_DEFAULT_STRATEGY), Z_OK);
	c.next_in = in;
	c.avail_in = sizeof(in);
	c.next_out = packed;
	c.avail_out = sizeof(packed);
	assert_int_equal(deflate(&c, Z_FINISH), Z_STREAM_END);
	len = sizeof(packed) - c.avail_out;
	deflateEnd(&c);
	assert_true(len < 200);
	assert_int_equal(inflateInit2(&d, -15), Z_OK);
	assert_int_equal(qcow_inflate(&d, packed, len, out, sizeof(out)), 0);
	assert_memory_equal(in, out, sizeof(in));
	/* Again on the same stream; then short and corrupt input fail. */
	memset(out, 0, sizeof(out));
	assert_int_equal(qcow_inflate(&d, packed, len, out, sizeof(out)), 0);
	assert_memory_equal(in, out, sizeof(in));
	assert_int_equal(qcow_inflate(&d, packed, len / 2, out, sizeof(out)),
			 -EIO);
	memset(packed, 0xff, 16);
	assert_int_equal(qcow_inflate(&d, packed, len, out, sizeof(out)),
			 -EIO);
	inflateEnd(&d);
}

static void test_backing_path(void **state)
{
	char out[256];

	(void)state;
	qcow_backing_path("/img/dir/child.qcow", "base.qcow", out, sizeof(out));
	assert_string_equal(out, "/img/dir/base.qcow");
	qcow_backing_path("/img/dir/child.qcow", "/abs/base", out, sizeof(out));
	assert_string_equal(out, "/abs/base");
	qcow_backing_path("child.qcow", "base.qcow", out, sizeof(out));
	assert_string_equal(out, "base.qcow");
	qcow_backing_path("rel/child.qcow", "../b", out, sizeof(out));
	assert_string_equal(out, "rel/../b");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_header_roundtrip),
		cmocka_unit_test(test_header_check),
		cmocka_unit_test(test_entries),
		cmocka_unit_test(test_md5),
		cmocka_unit_test(test_inflate),
		cmocka_unit_test(test_backing_path),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
