// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The drivers' metadata cache (tapdisk/md-cache.c): lookups by u64 key,
 * reuse of free entries first and then the least recently used valid
 * one, pins that keep an entry, failed reads, and a long random run
 * checked step by step against a plain model of the same rules.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "md-cache.h"

static void test_empty(void **state)
{
	struct md_cache c = { 0 };
	bool seen[8] = { false };

	(void)state;
	assert_int_equal(md_cache_init(&c, 8), 0);
	assert_int_equal(md_lookup(&c, 0), MD_NONE);
	assert_int_equal(md_lookup(&c, 12345), MD_NONE);
	/* Every entry once, then none: nothing is valid to evict. */
	for (int k = 0; k < 8; k++) {
		uint32_t i = md_take(&c);

		assert_true(i < 8);
		assert_false(seen[i]);
		seen[i] = true;
		assert_int_equal(md_get(&c, i)->state, MD_FREE);
	}
	assert_int_equal(md_take(&c), MD_NONE);
	/* Given back unused, it is the next one taken. */
	md_give_back(&c, 5);
	assert_int_equal(md_take(&c), 5);
	md_cache_free(&c);
	md_cache_free(&c);
	assert_null(c.e);
}

static void test_lru_order(void **state)
{
	struct md_cache c = { 0 };
	uint32_t idx[4];

	(void)state;
	assert_int_equal(md_cache_init(&c, 4), 0);
	/* Keys far apart and near each other, the full u64 range. */
	const uint64_t keys[4] = { 7, UINT64_MAX, 1ull << 40, 8 };

	for (int k = 0; k < 4; k++) {
		idx[k] = md_take(&c);
		assert_int_not_equal(idx[k], MD_NONE);
		md_insert(&c, idx[k], keys[k], MD_VALID);
	}
	for (int k = 0; k < 4; k++) {
		assert_int_equal(md_lookup(&c, keys[k]), idx[k]);
		assert_int_equal(md_get(&c, idx[k])->key, keys[k]);
		assert_int_equal(md_get(&c, idx[k])->state, MD_VALID);
	}
	assert_int_equal(md_lookup(&c, 9), MD_NONE);
	/* No free entry left: the least recently used goes first... */
	md_touch(&c, idx[0]);
	assert_int_equal(md_take(&c), idx[1]);
	assert_int_equal(md_lookup(&c, keys[1]), MD_NONE);
	/* ...and a taken entry is found no more, even before reuse. */
	assert_int_equal(md_take(&c), idx[2]);
	assert_int_equal(md_lookup(&c, keys[2]), MD_NONE);
	assert_int_equal(md_lookup(&c, keys[0]), idx[0]);
	assert_int_equal(md_lookup(&c, keys[3]), idx[3]);
	/* The same key may come back in another entry. */
	md_insert(&c, idx[2], keys[1], MD_VALID);
	assert_int_equal(md_lookup(&c, keys[1]), idx[2]);
	md_cache_free(&c);
}

static void test_pins(void **state)
{
	struct md_cache c = { 0 };
	uint32_t a, b;

	(void)state;
	assert_int_equal(md_cache_init(&c, 2), 0);
	a = md_take(&c);
	md_insert(&c, a, 100, MD_VALID);
	b = md_take(&c);
	md_insert(&c, b, 200, MD_VALID);
	/* a is the older, but pinned twice: b is taken, then nothing. */
	md_pin(&c, a);
	md_pin(&c, a);
	md_touch(&c, a);	/* pinned: no effect on the lists */
	assert_int_equal(md_take(&c), b);
	assert_int_equal(md_take(&c), MD_NONE);
	assert_false(md_unpin(&c, a));
	assert_int_equal(md_take(&c), MD_NONE);
	assert_true(md_unpin(&c, a));
	assert_int_equal(md_lookup(&c, 100), a);
	assert_int_equal(md_take(&c), a);
	md_cache_free(&c);
}

static void test_reads(void **state)
{
	struct md_cache c = { 0 };
	uint32_t a, b, v;

	(void)state;
	assert_int_equal(md_cache_init(&c, 3), 0);
	v = md_take(&c);
	md_insert(&c, v, 1, MD_VALID);
	/* A read in flight is found (to wait for it), and not reused. */
	a = md_take(&c);
	md_insert(&c, a, 2, MD_READING);
	md_pin(&c, a);
	b = md_take(&c);
	md_insert(&c, b, 3, MD_READING);
	md_pin(&c, b);
	assert_int_equal(md_lookup(&c, 2), a);
	assert_int_equal(md_get(&c, a)->state, MD_READING);
	/* It worked: valid, and on the LRU list once unpinned. */
	md_read_done(&c, a, true);
	assert_int_equal(md_get(&c, a)->state, MD_VALID);
	assert_true(md_unpin(&c, a));
	/* It failed: found no more, kept while pinned, then free. */
	md_read_done(&c, b, false);
	assert_int_equal(md_lookup(&c, 3), MD_NONE);
	assert_int_equal(md_take(&c), v);	/* b is still pinned */
	md_insert(&c, v, 1, MD_VALID);
	assert_true(md_unpin(&c, b));
	assert_int_equal(md_get(&c, b)->state, MD_FREE);
	/* A free entry goes before any valid one. */
	assert_int_equal(md_take(&c), b);
	assert_int_equal(md_lookup(&c, 1), v);
	assert_int_equal(md_lookup(&c, 2), a);
	md_cache_free(&c);
}

/* ---- random operations against a model ---- */

#define N	24u
#define KEYS	64u

struct model {
	uint64_t	key[N];
	uint8_t		state[N];
	uint32_t	pins[N];
	uint64_t	used[N];	/* VALID: when last inserted or touched */
	uint64_t	freed[N];	/* FREE, unpinned: when it became so */
	uint64_t	clock;
};

static uint64_t rnd_state = 0x9E3779B97F4A7C15ull;

static uint32_t rnd(uint32_t n)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return (uint32_t)(rnd_state % n);
}

/* Keys spread over the u64 range but few of them, so that they repeat. */
static uint64_t key_of(uint32_t r)
{
	return (uint64_t)r * 0x0123456789ABCDEFull;
}

/* What md_take must return: the newest free, else the oldest valid. */
static uint32_t model_take(const struct model *m)
{
	uint32_t best = MD_NONE;

	for (uint32_t i = 0; i < N; i++)
		if (!m->pins[i] && m->state[i] == MD_FREE &&
		    (best == MD_NONE || m->freed[i] > m->freed[best]))
			best = i;
	if (best != MD_NONE)
		return best;
	for (uint32_t i = 0; i < N; i++)
		if (!m->pins[i] && m->state[i] == MD_VALID &&
		    (best == MD_NONE || m->used[i] < m->used[best]))
			best = i;
	return best;
}

static uint32_t model_lookup(const struct model *m, uint64_t key)
{
	for (uint32_t i = 0; i < N; i++)
		if (m->state[i] != MD_FREE && m->key[i] == key)
			return i;
	return MD_NONE;
}

static void test_random(void **state)
{
	struct md_cache c = { 0 };
	struct model m;

	(void)state;
	memset(&m, 0, sizeof(m));
	assert_int_equal(md_cache_init(&c, N), 0);
	/* init puts the entries on the free list 0 first: N - 1 is newest. */
	for (uint32_t i = 0; i < N; i++)
		m.freed[i] = ++m.clock;
	for (int step = 0; step < 200000; step++) {
		uint32_t i = rnd(N), want, got;
		uint64_t key = key_of(rnd(KEYS));

		switch (rnd(6)) {
		case 0:		/* take, then fill it or give it back */
			want = model_take(&m);
			got = md_take(&c);
			assert_int_equal(got, want);
			if (got == MD_NONE)
				break;
			m.state[got] = MD_FREE;
			if (model_lookup(&m, key) != MD_NONE || rnd(4) == 0) {
				md_give_back(&c, got);
				m.freed[got] = ++m.clock;
			} else if (rnd(2)) {
				md_insert(&c, got, key, MD_VALID);
				m.key[got] = key;
				m.state[got] = MD_VALID;
				m.used[got] = ++m.clock;
			} else {
				md_insert(&c, got, key, MD_READING);
				md_pin(&c, got);
				m.key[got] = key;
				m.state[got] = MD_READING;
				m.pins[got]++;
			}
			break;
		case 1:		/* pin */
			if (m.state[i] == MD_FREE)
				break;
			md_pin(&c, i);
			m.pins[i]++;
			break;
		case 2:		/* unpin */
			if (!m.pins[i] || m.state[i] == MD_READING)
				break;
			got = md_unpin(&c, i);
			assert_int_equal(got, m.pins[i] == 1);
			if (--m.pins[i])
				break;
			if (m.state[i] == MD_VALID) {
				m.used[i] = ++m.clock;
			} else {
				m.state[i] = MD_FREE;
				m.freed[i] = ++m.clock;
			}
			break;
		case 3:		/* a read ends */
			if (m.state[i] != MD_READING)
				break;
			if (rnd(3)) {
				md_read_done(&c, i, true);
				m.state[i] = MD_VALID;
			} else {
				/* Marked free now; on the free list once unpinned. */
				md_read_done(&c, i, false);
				m.state[i] = MD_FREE;
			}
			break;
		case 4:		/* touch */
			if (m.state[i] != MD_VALID)
				break;
			md_touch(&c, i);
			if (!m.pins[i])
				m.used[i] = ++m.clock;
			break;
		default:	/* lookup */
			assert_int_equal(md_lookup(&c, key),
					 model_lookup(&m, key));
			break;
		}
		for (uint32_t k = 0; k < N; k++) {
			assert_int_equal(md_get(&c, k)->state, m.state[k]);
			assert_int_equal(md_get(&c, k)->pins, m.pins[k]);
		}
	}
	md_cache_free(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_lru_order),
		cmocka_unit_test(test_pins),
		cmocka_unit_test(test_reads),
		cmocka_unit_test(test_random),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
