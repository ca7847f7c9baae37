// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The rig's own logic, without a tapdisk: the model that every data test
 * relies on (a model that accepted anything would make them all pass),
 * and the front's checks of responses, with this test playing the back.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "../rig/model.h"
#include "../rig/rig.h"

#define SECS	64

static char tmpl[] = "/tmp/test-rig-model.XXXXXX";
static char dir[64];

static void fill(const struct model *m, uint64_t sec, uint32_t v, void *buf)
{
	model_fill(m->seed, sec, v, buf);
}

static void test_fill_distinct(void **state)
{
	uint8_t a[512], b[512], c[512];

	(void)state;
	model_fill(7, 10, 1, a);
	model_fill(7, 10, 1, b);
	assert_memory_equal(a, b, 512);		/* deterministic */
	model_fill(7, 10, 2, b);
	assert_memory_not_equal(a, b, 512);	/* another version */
	model_fill(7, 11, 1, c);
	assert_memory_not_equal(a, c, 512);	/* another sector */
	model_fill(8, 10, 1, c);
	assert_memory_not_equal(a, c, 512);	/* another seed */
	/* The tail differs too, not just the label words. */
	assert_memory_not_equal(a + 16, b + 16, 496);
}

static void test_write_then_check(void **state)
{
	struct model m;
	struct model_bad bad;
	uint8_t buf[4 * 512];
	uint32_t v1, v2;

	(void)state;
	assert_int_equal(model_init(&m, SECS, 42, MODEL_BASE_ZERO), 0);
	memset(buf, 0, sizeof(buf));
	assert_int_equal(model_check(&m, 0, 4, buf, NULL, false, &bad), 0);

	v1 = model_new_version(&m);
	v2 = model_new_version(&m);
	assert_int_equal(v1, 1);
	assert_int_equal(v2, 2);
	model_write_issued(&m, 8, 4, v1);
	model_write_done(&m, 8, 4, v1, 0);
	for (int i = 0; i < 4; i++)
		fill(&m, 8 + i, v1, buf + i * 512);
	assert_int_equal(model_check(&m, 8, 4, buf, NULL, false, &bad), 0);

	/* Still zeros read back where the write went: caught and named. */
	memset(buf + 512, 0, 512);
	assert_int_equal(model_check(&m, 8, 4, buf, NULL, false, &bad), 1);
	assert_int_equal(bad.sector, 9);
	assert_non_null(strstr(bad.what, "expected version 1"));
	assert_non_null(strstr(bad.what, "zeros"));

	/* A stale version, and a sector from elsewhere, are named. */
	fill(&m, 9, v2, buf + 512);
	assert_int_equal(model_check(&m, 8, 4, buf, NULL, false, &bad), 1);
	assert_non_null(strstr(bad.what, "found version 2 of sector 9"));
	fill(&m, 30, v1, buf + 512);
	assert_int_equal(model_check(&m, 8, 4, buf, NULL, false, &bad), 1);
	assert_non_null(strstr(bad.what, "version 1 of sector 30"));

	/* One flipped byte in the tail. */
	fill(&m, 9, v1, buf + 512);
	buf[512 + 300] ^= 1;
	assert_int_equal(model_check(&m, 8, 4, buf, NULL, false, &bad), 1);
	assert_non_null(strstr(bad.what, "damaged"));
	model_free(&m);
}

static void test_crash_either(void **state)
{
	struct model m;
	struct model_bad bad;
	uint8_t buf[512];
	uint32_t v1, v2, v3;

	(void)state;
	assert_int_equal(model_init(&m, SECS, 5, MODEL_BASE_ZERO), 0);
	v1 = model_new_version(&m);
	model_write_issued(&m, 3, 1, v1);
	model_write_done(&m, 3, 1, v1, 0);
	v2 = model_new_version(&m);
	model_write_issued(&m, 3, 1, v2);	/* in flight at the "crash" */

	fill(&m, 3, v1, buf);
	assert_int_equal(model_check(&m, 3, 1, buf, NULL, false, &bad), 0);
	fill(&m, 3, v2, buf);
	assert_int_equal(model_check(&m, 3, 1, buf, NULL, false, &bad), 0);
	v3 = model_new_version(&m);
	fill(&m, 3, v3, buf);
	assert_int_equal(model_check(&m, 3, 1, buf, NULL, false, &bad), 1);
	assert_non_null(strstr(bad.what, "version 1 or version 2"));
	assert_int_equal(model_count_pending(&m), 1);

	/* Reading v2 back settles it: v1 is no longer acceptable. */
	fill(&m, 3, v2, buf);
	assert_int_equal(model_check(&m, 3, 1, buf, NULL, true, &bad), 0);
	assert_int_equal(model_count_pending(&m), 0);
	fill(&m, 3, v1, buf);
	assert_int_equal(model_check(&m, 3, 1, buf, NULL, false, &bad), 1);
	model_free(&m);
}

static void test_failed_write_unknown(void **state)
{
	struct model m;
	struct model_bad bad;
	uint8_t buf[2 * 512];
	uint32_t v;

	(void)state;
	assert_int_equal(model_init(&m, SECS, 9, MODEL_BASE_ZERO), 0);
	v = model_new_version(&m);
	model_write_issued(&m, 0, 2, v);
	model_write_done(&m, 0, 2, v, -EIO);
	memset(buf, 0x5a, sizeof(buf));
	assert_int_equal(model_check(&m, 0, 2, buf, NULL, false, &bad), 0);
	/* The next acknowledged write makes it known again. */
	v = model_new_version(&m);
	model_write_issued(&m, 0, 2, v);
	model_write_done(&m, 0, 2, v, 0);
	assert_int_equal(model_check(&m, 0, 2, buf, NULL, false, &bad), 2);
	model_forget(&m, 1, 1);
	assert_int_equal(model_check(&m, 0, 2, buf, NULL, false, &bad), 1);
	assert_int_equal(bad.sector, 0);
	model_free(&m);
}

static void test_hashed_base(void **state)
{
	struct model m;
	struct model_bad bad;
	uint8_t base[2 * 512], buf[2 * 512];

	(void)state;
	assert_int_equal(model_init(&m, 2, 3, MODEL_BASE_HASHED), 0);
	for (size_t i = 0; i < sizeof(base); i++)
		base[i] = (uint8_t)(i * 7 + i / 512 + 1);
	model_set_base(&m, 0, base);
	model_set_base(&m, 1, base + 512);
	memcpy(buf, base, sizeof(buf));
	assert_int_equal(model_check(&m, 0, 2, buf, NULL, false, &bad), 0);
	assert_int_equal(model_check(&m, 0, 2, buf, base, false, &bad), 0);
	buf[700] ^= 0x80;
	assert_int_equal(model_check(&m, 0, 2, buf, NULL, false, &bad), 1);
	assert_int_equal(bad.sector, 1);
	assert_int_equal(model_check(&m, 0, 2, buf, base, false, &bad), 1);
	/* Zeros are not the initial content here. */
	memset(buf, 0, sizeof(buf));
	assert_int_equal(model_check(&m, 0, 2, buf, NULL, false, &bad), 2);
	/* Past the model's end is an error, not a crash. */
	assert_int_equal(model_check(&m, 1, 2, base, NULL, false, &bad), 2);
	model_free(&m);
}

static void test_save_load(void **state)
{
	struct model m, l;
	char path[128], msg[256];
	FILE *f;
	uint32_t v;

	(void)state;
	snprintf(path, sizeof(path), "%s/m", dir);
	assert_int_equal(model_init(&m, SECS, 77, MODEL_BASE_HASHED), 0);
	v = model_new_version(&m);
	model_write_issued(&m, 5, 3, v);
	model_write_done(&m, 5, 2, v, 0);	/* sector 7 stays pending */
	m.base_hash[60] = 0x1234;
	assert_int_equal(model_save(&m, path, msg, sizeof(msg)), 0);
	assert_int_equal(model_load(&l, path, msg, sizeof(msg)), 0);
	assert_int_equal(l.sectors, SECS);
	assert_int_equal(l.seed, 77);
	assert_int_equal(l.next_version, m.next_version);
	assert_int_equal(l.base, MODEL_BASE_HASHED);
	assert_memory_equal(l.rec, m.rec, SECS * sizeof(*m.rec));
	assert_memory_equal(l.base_hash, m.base_hash, SECS * sizeof(uint64_t));
	assert_int_equal(model_count_pending(&l), 1);
	model_free(&l);

	/* A truncated file is refused with a reason. */
	assert_int_equal(truncate(path, 100), 0);
	assert_int_equal(model_load(&l, path, msg, sizeof(msg)), -EINVAL);
	assert_non_null(strstr(msg, "bytes, expected"));
	/* So is something else altogether. */
	f = fopen(path, "w");
	assert_non_null(f);
	fputs("not a model at all, but long enough to hold a header......"
	      "..................", f);
	fclose(f);
	assert_int_equal(model_load(&l, path, msg, sizeof(msg)), -EINVAL);
	assert_non_null(strstr(msg, "not a td-rig model"));
	/* A version the counter never reached. */
	m.rec[1].acked = m.next_version;
	assert_int_equal(model_save(&m, path, msg, sizeof(msg)), 0);
	assert_int_equal(model_load(&l, path, msg, sizeof(msg)), -EINVAL);
	assert_non_null(strstr(msg, "beyond the counter"));
	snprintf(path, sizeof(path), "%s/missing", dir);
	assert_int_equal(model_load(&l, path, msg, sizeof(msg)), -ENOENT);
	unlink(path);
	snprintf(path, sizeof(path), "%s/m", dir);
	unlink(path);
	model_free(&m);
}

/* ---- the front's checks, with this test as the back ---- */

struct seen {
	int	n;
	uint32_t slot[8];
	int	status[8];
};

static void record(void *arg, struct rig *r, uint32_t slot, int status)
{
	struct seen *s = arg;

	(void)r;
	s->slot[s->n] = slot;
	s->status[s->n] = status;
	s->n++;
}

static void respond(struct rig *r, uint64_t id, int32_t status)
{
	uint32_t p = r->hdr->rsp_prod;

	r->rsps[p & (r->nr_slots - 1)].id = id;
	r->rsps[p & (r->nr_slots - 1)].status = status;
	__atomic_store_n(&r->hdr->rsp_prod, p + 1, __ATOMIC_RELEASE);
}

static uint64_t kicks(struct rig *r)
{
	uint64_t n = 0;

	if (read(r->kick_fd, &n, sizeof(n)) != sizeof(n))
		return 0;
	return n;
}

static void test_rig_layout(void **state)
{
	struct rig r;

	(void)state;
	assert_int_equal(rig_create(&r, 3, 4096), -EINVAL);
	assert_int_equal(rig_create(&r, 4, 1000), -EINVAL);
	assert_int_equal(rig_create(&r, 8, 64 << 10), 0);
	assert_int_equal(r.hdr->magic, BLKTAP_RING_MAGIC);
	assert_int_equal(r.hdr->nr_slots, 8);
	assert_int_equal(r.hdr->data_offset, blktap_ring_data_offset(8));
	assert_int_equal(r.hdr->map_size, blktap_ring_map_size(8, 64 << 10));
	assert_true((uint8_t *)rig_slot_data(&r, 7) + (64 << 10) ==
		    (uint8_t *)r.map + r.map_size);
	rig_destroy(&r);
}

static void test_rig_responses(void **state)
{
	struct rig r;
	struct seen s = { 0 };
	uint64_t id0, id1;
	int slot0, slot1;

	(void)state;
	assert_int_equal(rig_create(&r, 8, 4096), 0);
	slot0 = rig_get(&r);
	rig_queue(&r, (uint32_t)slot0, BLKTAP_OP_READ, 0, 0, 8, 0);
	slot1 = rig_get(&r);
	assert_int_not_equal(slot0, slot1);
	rig_queue(&r, (uint32_t)slot1, BLKTAP_OP_WRITE, 0, 8, 8, 0);
	/* The back asked for a wakeup at the first request: one kick. */
	rig_push(&r);
	assert_int_equal(kicks(&r), 1);
	assert_int_equal(r.hdr->req_prod, 2);
	id0 = r.reqs[0].id;
	id1 = r.reqs[1].id;
	assert_int_equal(BLKTAP_ID_SLOT(id0), slot0);
	assert_int_equal(r.reqs[1].op, BLKTAP_OP_WRITE);

	/* Wrong slot, wrong generation, a slot not in flight: dropped. */
	respond(&r, BLKTAP_MAKE_ID(BLKTAP_ID_GEN(id0), 8), 0);
	respond(&r, BLKTAP_MAKE_ID(BLKTAP_ID_GEN(id0) + 1, slot0), 0);
	respond(&r, BLKTAP_MAKE_ID(1, 3), 0);
	/* A good one, then its duplicate; a status out of range. */
	respond(&r, id0, 0);
	respond(&r, id0, 0);
	respond(&r, id1, 7);
	assert_int_equal(rig_reap(&r, record, &s), 2);
	assert_int_equal(r.stats.bad_responses, 4);
	assert_int_equal(r.stats.bad_status, 1);
	assert_int_equal(s.n, 2);
	assert_int_equal(s.slot[0], slot0);
	assert_int_equal(s.status[0], 0);
	assert_int_equal(s.slot[1], slot1);
	assert_int_equal(s.status[1], -EIO);
	assert_int_equal(r.inflight, 0);

	/* Reused, a slot gets a new generation: old ids are stale. */
	slot0 = rig_get(&r);
	rig_queue(&r, (uint32_t)slot0, BLKTAP_OP_READ, 0, 0, 8, 0);
	rig_push(&r);
	/* Nothing asked for a wakeup (req_event was never moved). */
	assert_int_equal(kicks(&r), 0);
	respond(&r, id1, 0);
	respond(&r, id0, 0);
	s.n = 0;
	assert_int_equal(rig_reap(&r, record, &s), 0);
	assert_int_equal(rig_wait(&r, 0), 0);	/* nothing, no tapdisk */
	respond(&r, r.reqs[2].id, -EIO);
	assert_int_equal(rig_wait(&r, 0), 1);
	assert_int_equal(r.hdr->rsp_event, r.rsp_cons + 1);
	assert_int_equal(rig_reap(&r, record, &s), 1);
	assert_int_equal(s.status[0], -EIO);

	/* More responses than could be outstanding: the ring is failed. */
	__atomic_store_n(&r.hdr->rsp_prod, r.rsp_cons + 9, __ATOMIC_RELEASE);
	assert_int_equal(rig_reap(&r, record, &s), -EPROTO);
	assert_true(r.failed);
	assert_non_null(strstr(r.errmsg, "ring failed"));
	rig_destroy(&r);
}

static void test_rig_wakeup_index(void **state)
{
	struct rig r;

	(void)state;
	assert_int_equal(rig_create(&r, 8, 4096), 0);
	/* The back sleeps after consuming 0, asking for req_prod > 0... */
	r.hdr->req_event = 1;
	rig_queue(&r, (uint32_t)rig_get(&r), BLKTAP_OP_FLUSH, 0, 0, 0, 0);
	rig_queue(&r, (uint32_t)rig_get(&r), BLKTAP_OP_FLUSH, 0, 0, 0, 0);
	rig_push(&r);
	assert_int_equal(kicks(&r), 1);
	/* ...and does not sleep again: later pushes kick no one. */
	rig_queue(&r, (uint32_t)rig_get(&r), BLKTAP_OP_FLUSH, 0, 0, 0, 0);
	rig_push(&r);
	assert_int_equal(kicks(&r), 0);
	/* Consumed 3 and sleeping: the next push kicks. */
	r.hdr->req_event = 4;
	rig_queue(&r, (uint32_t)rig_get(&r), BLKTAP_OP_FLUSH, 0, 0, 0, 0);
	rig_push(&r);
	assert_int_equal(kicks(&r), 1);
	assert_int_equal(r.stats.kicks, 2);
	rig_destroy(&r);
}

static int setup(void **state)
{
	(void)state;
	if (!mkdtemp(tmpl))
		return -1;
	snprintf(dir, sizeof(dir), "%s", tmpl);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	return rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fill_distinct),
		cmocka_unit_test(test_write_then_check),
		cmocka_unit_test(test_crash_either),
		cmocka_unit_test(test_failed_write_unknown),
		cmocka_unit_test(test_hashed_base),
		cmocka_unit_test(test_save_load),
		cmocka_unit_test(test_rig_layout),
		cmocka_unit_test(test_rig_responses),
		cmocka_unit_test(test_rig_wakeup_index),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
