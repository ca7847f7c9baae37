// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * xen_vdev_parse() and xen_vdev_name() (scripts/xen-vdev.c, used by
 * xmsnap-xen): the device ids Xen gives each kind of name, the names
 * given back, and the names that have no id.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "../../scripts/xen-vdev.h"

static uint32_t parse(const char *name)
{
	uint32_t id = 0xdeadbeef;

	assert_int_equal(xen_vdev_parse(name, &id), 0);
	return id;
}

static void bad(const char *name)
{
	uint32_t id = 0xdeadbeef;

	if (xen_vdev_parse(name, &id) != -EINVAL)
		fail_msg("'%s' parsed as %u", name, id);
	assert_int_equal(id, 0xdeadbeef);
}

static void test_xvd(void **state)
{
	(void)state;
	/* What blkfront shows as device/vbd/51712 is xvda, 51728 xvdb. */
	assert_int_equal(parse("xvda"), 51712);
	assert_int_equal(parse("xvdb"), 51728);
	assert_int_equal(parse("xvda1"), 51713);
	assert_int_equal(parse("xvdb15"), 202 << 8 | 1 << 4 | 15);
	assert_int_equal(parse("xvdp"), 202 << 8 | 15 << 4);
	/* The 17th disk and later, and partitions of 16 and up: extended. */
	assert_int_equal(parse("xvdq"), 1 << 28 | 16 << 8);
	assert_int_equal(parse("xvdz"), 1 << 28 | 25 << 8);
	assert_int_equal(parse("xvdaa"), 1 << 28 | 26 << 8);
	assert_int_equal(parse("xvdaz3"), 1 << 28 | 51 << 8 | 3);
	assert_int_equal(parse("xvdba"), 1 << 28 | 52 << 8);
	assert_int_equal(parse("xvda16"), 1 << 28 | 0 << 8 | 16);
	assert_int_equal(parse("xvdc255"), 1 << 28 | 2 << 8 | 255);
	/* The last disk the extended form has: index 2^20 - 1. */
	assert_int_equal(parse("xvdbgqcv"), 1 << 28 | 0xfffff << 8);
}

static void test_hd_sd_d(void **state)
{
	(void)state;
	assert_int_equal(parse("hda"), 3 << 8);
	assert_int_equal(parse("hdb"), 3 << 8 | 64);
	assert_int_equal(parse("hdc"), 22 << 8);
	assert_int_equal(parse("hdd63"), 22 << 8 | 64 | 63);
	assert_int_equal(parse("sda"), 8 << 8);
	assert_int_equal(parse("sdb2"), 8 << 8 | 16 | 2);
	assert_int_equal(parse("sdp15"), 8 << 8 | 15 << 4 | 15);
	assert_int_equal(parse("d0"), parse("xvda"));
	assert_int_equal(parse("d1p2"), parse("xvdb2"));
	assert_int_equal(parse("d16"), parse("xvdq"));
	assert_int_equal(parse("d3p20"), parse("xvdd20"));
	/* A number is the id itself. */
	assert_int_equal(parse("51712"), 51712);
	assert_int_equal(parse("268439552"), 268439552);
	assert_int_equal(parse("2147483647"), 2147483647);
}

static void test_bad(void **state)
{
	static const char *const names[] = {
		"", "xvd", "xvdA", "xvda0", "xvda01", "xvda256", "xvda-1",
		"xvda1x", "xvd1", "xvdbgqcw", "xvdzzzzzz", "hde", "hda64", "hd",
		"sdq", "sda16", "sda0", "vda", "d", "dp1", "d0p0", "d0p", "d0x",
		"d1048576", "d00", "d0p256", "0", "00", "012", "2147483648",
		"99999999999999999999", "-1", "+5", " xvda", "xvda ", "XVDA",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		bad(names[i]);
	assert_int_equal(xen_vdev_parse(NULL, &(uint32_t){ 0 }), -EINVAL);
}

static const char *name(uint32_t id)
{
	static char buf[32];

	assert_int_equal(xen_vdev_name(id, buf, sizeof(buf)), 0);
	return buf;
}

static void test_names(void **state)
{
	static const char *const canon[] = {
		"xvda", "xvdb", "xvda1", "xvdp15", "xvdq", "xvdz", "xvdaa",
		"xvdaz3", "xvdba", "xvdzz", "xvdaaa", "xvda16", "xvdc255",
		"xvdbgqcv", "hda", "hdb", "hdc5", "hdd63", "sda", "sdp15",
	};
	char buf[32];

	(void)state;
	for (size_t i = 0; i < sizeof(canon) / sizeof(canon[0]); i++)
		assert_string_equal(name(parse(canon[i])), canon[i]);
	assert_string_equal(name(parse("d2p3")), "xvdc3");
	assert_string_equal(name(51712), "xvda");
	/* No name: the number. */
	assert_string_equal(name(7 << 8), "1792");
	assert_string_equal(name(3 << 8 | 128), "896");
	assert_string_equal(name(2u << 28), "536870912");
	/* Too small a buffer. */
	assert_int_equal(xen_vdev_name(51712, buf, 4), -ENOSPC);
	assert_int_equal(xen_vdev_name(51712, buf, 5), 0);
	assert_string_equal(buf, "xvda");
	assert_int_equal(xen_vdev_name(1792, buf, 4), -ENOSPC);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_xvd),
		cmocka_unit_test(test_hd_sd_d),
		cmocka_unit_test(test_bad),
		cmocka_unit_test(test_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
