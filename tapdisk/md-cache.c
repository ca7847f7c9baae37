// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The drivers' metadata cache (see md-cache.h): hash chains of entry
 * indices, and two circular doubly linked lists of indices (LRU and
 * free) whose heads are the slots n and n + 1 of prev/next.
 */
#include <errno.h>
#include <stdlib.h>

#include "md-cache.h"

static uint32_t lru_head(const struct md_cache *c)
{
	return c->n;
}

static uint32_t free_head(const struct md_cache *c)
{
	return c->n + 1;
}

static void list_del(struct md_cache *c, uint32_t i)
{
	c->next[c->prev[i]] = c->next[i];
	c->prev[c->next[i]] = c->prev[i];
	c->prev[i] = c->next[i] = i;
}

/* Insert @i right after the list head @h (most recent first). */
static void list_add(struct md_cache *c, uint32_t h, uint32_t i)
{
	c->next[i] = c->next[h];
	c->prev[i] = h;
	c->prev[c->next[h]] = i;
	c->next[h] = i;
}

static uint32_t hash_of(const struct md_cache *c, uint64_t key)
{
	return (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & c->hash_mask;
}

static void hash_insert(struct md_cache *c, uint32_t i)
{
	uint32_t h = hash_of(c, c->e[i].key);

	c->e[i].hnext = c->hash[h];
	c->hash[h] = (int32_t)i;
}

static void hash_remove(struct md_cache *c, uint32_t i)
{
	int32_t *link = &c->hash[hash_of(c, c->e[i].key)];

	while (*link >= 0) {
		if (*link == (int32_t)i) {
			*link = c->e[i].hnext;
			break;
		}
		link = &c->e[*link].hnext;
	}
	c->e[i].hnext = -1;
}

int md_cache_init(struct md_cache *c, uint32_t n)
{
	uint32_t h = 1, i;

	if (!n)
		n = 1;
	while (h < 2 * n)
		h <<= 1;
	c->n = n;
	c->e = calloc(n, sizeof(*c->e));
	c->hash = malloc(h * sizeof(*c->hash));
	c->prev = malloc((n + 2) * sizeof(*c->prev));
	c->next = malloc((n + 2) * sizeof(*c->next));
	if (!c->e || !c->hash || !c->prev || !c->next) {
		md_cache_free(c);
		return -ENOMEM;
	}
	c->hash_mask = h - 1;
	for (i = 0; i < h; i++)
		c->hash[i] = -1;
	for (i = 0; i < n + 2; i++)
		c->prev[i] = c->next[i] = i;
	for (i = 0; i < n; i++) {
		c->e[i].hnext = -1;
		c->e[i].state = MD_FREE;
		list_add(c, free_head(c), i);
	}
	return 0;
}

void md_cache_free(struct md_cache *c)
{
	free(c->e);
	free(c->hash);
	free(c->prev);
	free(c->next);
	c->e = NULL;
	c->hash = NULL;
	c->prev = c->next = NULL;
	c->n = 0;
}

uint32_t md_lookup(const struct md_cache *c, uint64_t key)
{
	int32_t i = c->hash[hash_of(c, key)];

	while (i >= 0) {
		const struct md_entry *e = &c->e[i];

		if (e->key == key && e->state != MD_FREE)
			return (uint32_t)i;
		i = e->hnext;
	}
	return MD_NONE;
}

uint32_t md_take(struct md_cache *c)
{
	uint32_t i = c->next[free_head(c)];

	if (i == free_head(c)) {
		i = c->prev[lru_head(c)];
		if (i == lru_head(c))
			return MD_NONE;
	}
	list_del(c, i);
	if (c->e[i].state != MD_FREE)
		hash_remove(c, i);
	c->e[i].state = MD_FREE;
	return i;
}

void md_give_back(struct md_cache *c, uint32_t i)
{
	list_add(c, free_head(c), i);
}

void md_insert(struct md_cache *c, uint32_t i, uint64_t key, uint8_t state)
{
	c->e[i].key = key;
	c->e[i].state = state;
	hash_insert(c, i);
	if (state == MD_VALID && !c->e[i].pins)
		list_add(c, lru_head(c), i);
}

void md_read_done(struct md_cache *c, uint32_t i, bool ok)
{
	if (ok) {
		c->e[i].state = MD_VALID;
	} else {
		hash_remove(c, i);
		c->e[i].state = MD_FREE;
	}
}

void md_pin(struct md_cache *c, uint32_t i)
{
	if (c->e[i].pins++ == 0 && c->e[i].state == MD_VALID)
		list_del(c, i);
}

bool md_unpin(struct md_cache *c, uint32_t i)
{
	if (--c->e[i].pins)
		return false;
	if (c->e[i].state == MD_VALID) {
		list_add(c, lru_head(c), i);
	} else {
		/* A failed read: the entry holds nothing. */
		c->e[i].state = MD_FREE;
		list_add(c, free_head(c), i);
	}
	return true;
}

void md_touch(struct md_cache *c, uint32_t i)
{
	if (!c->e[i].pins) {
		list_del(c, i);
		list_add(c, lru_head(c), i);
	}
}
