// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The ring ABI's layout is fixed: both the kernel and tapdisk compile
 * against include/blktap-ring.h, so a field that moves breaks the other
 * side silently.  These checks pin every offset and the derived layout.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "blktap-ring.h"

_Static_assert(sizeof(struct blktap_ring_header) == BLKTAP_PAGE_SIZE,
	       "the header is exactly one page");
_Static_assert(sizeof(struct blktap_ring_request) == 32, "request size");
_Static_assert(sizeof(struct blktap_ring_response) == 16, "response size");

static void test_header_offsets(void **state)
{
	(void)state;
	assert_int_equal(offsetof(struct blktap_ring_header, magic), 0);
	assert_int_equal(offsetof(struct blktap_ring_header, nr_slots), 8);
	assert_int_equal(offsetof(struct blktap_ring_header, req_offset), 16);
	assert_int_equal(offsetof(struct blktap_ring_header, capacity), 48);
	assert_int_equal(offsetof(struct blktap_ring_header, features), 60);
	/* Each producer/event counter alone on a 64-byte cache line. */
	assert_int_equal(offsetof(struct blktap_ring_header, req_prod), 64);
	assert_int_equal(offsetof(struct blktap_ring_header, req_event), 128);
	assert_int_equal(offsetof(struct blktap_ring_header, rsp_prod), 192);
	assert_int_equal(offsetof(struct blktap_ring_header, rsp_event), 256);
}

static void test_request_offsets(void **state)
{
	(void)state;
	assert_int_equal(offsetof(struct blktap_ring_request, id), 0);
	assert_int_equal(offsetof(struct blktap_ring_request, sector), 8);
	assert_int_equal(offsetof(struct blktap_ring_request, nr_sectors), 16);
	assert_int_equal(offsetof(struct blktap_ring_request, op), 20);
	assert_int_equal(offsetof(struct blktap_ring_request, flags), 21);
	assert_int_equal(offsetof(struct blktap_ring_request, domid), 22);
	assert_int_equal(offsetof(struct blktap_ring_response, status), 8);
}

static void test_layout(void **state)
{
	uint32_t slots;

	(void)state;
	/* Default depth and request size: 128 x 1 MiB after 3 pages. */
	assert_int_equal(blktap_ring_rsp_offset(128), 4096 + 128 * 32);
	assert_int_equal(blktap_ring_data_offset(128), 4096 * 3);
	assert_int_equal(blktap_ring_map_size(BLKTAP_RING_DEF_SLOTS,
					      BLKTAP_RING_DEF_SLOT_BYTES),
			 4096 * 3 + 128ull * (1 << 20));
	for (slots = 1; slots <= BLKTAP_RING_MAX_SLOTS; slots <<= 1) {
		uint64_t d = blktap_ring_data_offset(slots);

		assert_int_equal(d % BLKTAP_PAGE_SIZE, 0);
		assert_true(d >= blktap_ring_rsp_offset(slots) + 16ull * slots);
		assert_true(blktap_ring_rsp_offset(slots) >=
			    blktap_ring_req_offset() + 32ull * slots);
	}
}

static void test_ids(void **state)
{
	uint64_t id = BLKTAP_MAKE_ID(0x123456789ull, 200);

	(void)state;
	assert_int_equal(BLKTAP_ID_SLOT(id), 200);
	assert_int_equal(BLKTAP_ID_GEN(id), 0x123456789ull);
	/* A slot number too large for 16 bits cannot leak into the gen. */
	assert_int_equal(BLKTAP_ID_GEN(BLKTAP_MAKE_ID(1, 0x1FFFF)), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_header_offsets),
		cmocka_unit_test(test_request_offsets),
		cmocka_unit_test(test_layout),
		cmocka_unit_test(test_ids),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
