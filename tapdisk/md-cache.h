/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * A metadata cache of fixed size for the image drivers (VHD bitmaps,
 * qcow L2 tables): the bookkeeping only, keyed by u64, the data and
 * anything else per entry kept by the caller in arrays indexed by the
 * entry's index.  Everything is allocated at md_cache_init(); nothing
 * after that.
 *
 * An entry is FREE (holds nothing), READING (its data is on its way) or
 * VALID.  READING and VALID entries are found by key.  Pinned entries
 * are never reused; unpinned VALID ones sit on an LRU list, unpinned FREE
 * ones on a free list, and md_take() hands out a free one first, else the
 * least recently used.  Waiting for an entry is the caller's: md_unpin()
 * says when one may have become reusable.
 */
#ifndef TD_MD_CACHE_H
#define TD_MD_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#define MD_NONE		UINT32_MAX

enum { MD_FREE, MD_READING, MD_VALID };

struct md_entry {
	uint64_t	key;
	uint32_t	pins;
	uint8_t		state;		/* MD_* */
	int32_t		hnext;		/* hash chain, -1 at its end */
};

struct md_cache {
	uint32_t	n;
	struct md_entry	*e;		/* [n] */
	int32_t		*hash;
	uint32_t	hash_mask;
	uint32_t	*prev, *next;	/* [n] = LRU head, [n + 1] = free */
};

/* @n entries (at least 1), all free.  0 or -ENOMEM. */
int md_cache_init(struct md_cache *c, uint32_t n);
/* Frees what init allocated (also after a failed init); idempotent. */
void md_cache_free(struct md_cache *c);

/* The READING or VALID entry of @key, or MD_NONE. */
uint32_t md_lookup(const struct md_cache *c, uint64_t key);
/*
 * An unpinned entry to reuse (a free one, else the least recently used
 * valid one), now FREE and on no list; MD_NONE when every entry is
 * pinned.  The caller either fills it (md_insert) or gives it back
 * (md_give_back).
 */
uint32_t md_take(struct md_cache *c);
void md_give_back(struct md_cache *c, uint32_t i);
/*
 * Entry @i, just taken, now holds @key in @state (MD_READING: the caller
 * pins it for the read; MD_VALID: it goes on the LRU list as the most
 * recent).
 */
void md_insert(struct md_cache *c, uint32_t i, uint64_t key, uint8_t state);
/*
 * The read of pinned entry @i ended: VALID when @ok, else it holds
 * nothing and is found no more (free once its last pin goes).
 */
void md_read_done(struct md_cache *c, uint32_t i, bool ok);
void md_pin(struct md_cache *c, uint32_t i);
/* True when that was the last pin: the entry may be reused now. */
bool md_unpin(struct md_cache *c, uint32_t i);
/* A VALID entry was used: the most recent on the LRU list (if unpinned). */
void md_touch(struct md_cache *c, uint32_t i);

static inline const struct md_entry *md_get(const struct md_cache *c,
					    uint32_t i)
{
	return &c->e[i];
}

#endif
