// SPDX-License-Identifier: LGPL-2.1-or-later
/* vhd_bat_validate: blocks inside the data area, inside the file, apart. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "libvhd.h"

#define U		VHD_BAT_UNUSED
#define BLK		4097u		/* 1 bitmap sector + 4096 data sectors */
#define DATA_START	(7ull * 512)	/* bytes */

static uint64_t end_of(uint32_t sector)
{
	return ((uint64_t)sector + BLK) * 512;
}

static void test_ok(void **state)
{
	/* Out of order, adjacent, with holes: all fine. */
	const uint32_t bat[] = { 7 + BLK, U, 7, U, 7 + 3 * BLK, 7 + 2 * BLK };

	(void)state;
	assert_int_equal(vhd_bat_validate(bat, 6, BLK, DATA_START,
					  end_of(7 + 3 * BLK)), 0);
	/* The last block may end exactly where the footer starts. */
	assert_int_equal(vhd_bat_validate(bat, 6, BLK, DATA_START,
					  end_of(7 + 3 * BLK) + 512), 0);
}

static void test_empty(void **state)
{
	const uint32_t bat[] = { U, U, U };

	(void)state;
	assert_int_equal(vhd_bat_validate(bat, 3, BLK, DATA_START, DATA_START), 0);
	assert_int_equal(vhd_bat_validate(bat, 0, BLK, DATA_START, 0), 0);
}

static void test_past_eof(void **state)
{
	const uint32_t bat[] = { 7, 7 + BLK };

	(void)state;
	assert_int_equal(vhd_bat_validate(bat, 2, BLK, DATA_START,
					  end_of(7 + BLK) - 512), -EINVAL);
	assert_non_null(strstr(vhd_errmsg(), "entry 1"));
	assert_non_null(strstr(vhd_errmsg(), "past the end"));
	/* A block starting beyond the end altogether. */
	const uint32_t far[] = { 0x7FFFFFFF };
	assert_int_equal(vhd_bat_validate(far, 1, BLK, DATA_START,
					  end_of(7)), -EINVAL);
}

static void test_overlap(void **state)
{
	const uint32_t bat[] = { 7, U, 7 + BLK - 1 };
	const uint32_t same[] = { 7 + BLK, 7 + BLK };

	(void)state;
	assert_int_equal(vhd_bat_validate(bat, 3, BLK, DATA_START,
					  end_of(7 + 2 * BLK)), -EINVAL);
	assert_non_null(strstr(vhd_errmsg(), "overlap"));
	assert_non_null(strstr(vhd_errmsg(), "0"));
	assert_non_null(strstr(vhd_errmsg(), "2"));
	assert_int_equal(vhd_bat_validate(same, 2, BLK, DATA_START,
					  end_of(7 + 2 * BLK)), -EINVAL);
	assert_non_null(strstr(vhd_errmsg(), "overlap"));
}

static void test_metadata(void **state)
{
	const uint32_t bat[] = { 7 + BLK, 6 };
	const uint32_t zero[] = { 0 };

	(void)state;
	assert_int_equal(vhd_bat_validate(bat, 2, BLK, DATA_START,
					  end_of(7 + 2 * BLK)), -EINVAL);
	assert_non_null(strstr(vhd_errmsg(), "entry 1"));
	assert_non_null(strstr(vhd_errmsg(), "metadata"));
	assert_int_equal(vhd_bat_validate(zero, 1, BLK, DATA_START,
					  end_of(7 + 2 * BLK)), -EINVAL);
	assert_non_null(strstr(vhd_errmsg(), "metadata"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ok),
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_past_eof),
		cmocka_unit_test(test_overlap),
		cmocka_unit_test(test_metadata),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
