/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Small helpers the image drivers share.
 */
#ifndef TD_DRV_UTIL_H
#define TD_DRV_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "driver.h"

/* Buffers for O_DIRECT I/O are aligned to this. */
#define TD_BUF_ALIGN	4096u

/* @len zeroed bytes (a sector for 0), TD_BUF_ALIGN aligned; NULL. */
static inline void *td_alloc_aligned(size_t len)
{
	void *m = NULL;

	if (!len)
		len = 512;
	if (posix_memalign(&m, TD_BUF_ALIGN, len))
		return NULL;
	memset(m, 0, len);
	return m;
}

/*
 * A tio request of @prio with every field the caller sets filled in
 * (submit it with tio_submit), or NULL when tio has none free.
 */
static inline struct tio_req *td_tio_req(enum tio_prio prio,
					 struct tio_file *file, enum tio_op op,
					 unsigned flags, void *buf, size_t len,
					 uint64_t off, uint64_t deadline_ms,
					 tio_done_fn done, void *arg)
{
	struct tio_req *r = tio_get(prio);

	if (!r)
		return NULL;
	r->file = file;
	r->op = op;
	r->flags = flags;
	r->buf = buf;
	r->len = len;
	r->off = off;
	r->deadline_ms = deadline_ms;
	r->done = done;
	r->arg = arg;
	return r;
}

/* End a treq that holds no get of the driver's (a parked one) with @err. */
static inline void td_fail_treq(struct td_treq *t, int err)
{
	t->drv_state = 0;
	td_treq_get(t);
	td_treq_put(t, err);
	if (t->op == TD_OP_READ)
		td_treq_forward(t);
	else
		td_treq_issued(t);
}

/*
 * How many of @t's sectors lie inside an image of @sectors (the core
 * zero-fills a read past an image's end; a driver stays inside it).
 */
static inline uint32_t td_treq_inside(const struct td_treq *t,
				      uint64_t sectors)
{
	if (t->sec >= sectors)
		return 0;
	return sectors - t->sec < t->secs ? (uint32_t)(sectors - t->sec) :
					    t->secs;
}

/* Has an image above already given @t all of its sectors [i, i + n)? */
bool td_treq_all_filled(const struct td_treq *t, uint32_t i, uint32_t n);

/*
 * Read into @t its sectors [i, i + n) not filled yet, sector i + j from
 * byte @off + j * 512 of @file, in runs; with @bm (a sector bitmap, MSB
 * first), only those whose bit @first + j is set.  0, or -EAGAIN when no
 * tio entry was free: @t is then parked (td_treq_wait_tio) with t->cursor
 * at the first sector not started.
 */
int td_read_unfilled(struct td_treq *t, struct tio_file *file, uint32_t i,
		     uint32_t n, const uint8_t *bm, uint32_t first,
		     uint64_t off);

/* Generation counters that wrap: is @a older than @b? */
static inline bool td_gen_before(uint32_t a, uint32_t b)
{
	return (int32_t)(a - b) < 0;
}

#endif
