// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The qcow (version 1) driver, with blktap's extended header.
 *
 * Header, L1 table and backing name are read synchronously at open; the
 * L1 table stays in memory, L2 tables go through a cache of fixed size,
 * and after open every I/O, metadata included, goes through tio.
 *
 * Treqs never cross an L2 table's range (chunk_sectors).  A write whose
 * clusters are all allocated goes straight to them.  Any other write
 * joins the allocation "slot" of its L2 table; a slot works in batches
 * (what arrives while a batch runs forms the next one), each in order:
 *  - map: a new L2 table (L1 entry 0) is placed at the end of the file,
 *    and with optimised allocation every one of its clusters right after
 *    it; each unallocated cluster the batch writes gets the next free
 *    cluster.  The mapping is built in a shadow copy of the table;
 *  - data (and the new table, written whole from the shadow);
 *  - fdatasync, so that no metadata can point at data not yet stable;
 *  - the L2 entries (the sectors of the table that changed), or for a new
 *    table its L1 entry (one L1 write at a time, carrying every slot
 *    waiting for it);
 *  - an fdatasync if a write of the batch has FUA (the data goes
 *    without it);
 *  - then the cache and the in-memory L1 take the new mapping and the
 *    batch's writes complete.
 * A crash thus leaves at worst unreferenced clusters at the end of the
 * file.  New space is always past the end of the file at open, so a
 * partly written cluster reads as zeros elsewhere.
 *
 * Compressed clusters (QEMU's raw deflate) are read through a few
 * inflate contexts whose zlib memory comes from a fixed arena.  Writing
 * into a compressed cluster is refused (the write fails with EIO and one
 * line in the log): such images are for reading; convert them first.
 *
 * Backing files: a qcow with a backing file is opened by the core as a
 * separate image below; its type is probed from its magic.  Partial
 * writes to new clusters would need the backing file's data for the rest
 * of the cluster, so images with backing files and clusters larger than
 * a sector (QEMU and qcow-create use 512-byte clusters for them) open
 * read-only only.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "driver.h"
#include "drv-util.h"
#include "log.h"
#include "md-cache.h"
#include "qcow-format.h"
#include "tio.h"
#include "treq-list.h"

#define SEC		512u
#define ALIGN		4096u
#define NR_SLOTS	16u
#define NR_Z		4u
#define Z_ARENA		(64u << 10)
#define CACHE_BYTES	(4u << 20)
#define CACHE_MIN	(NR_SLOTS + 16u)
#define CACHE_MAX	512u
/* At most this much of L2 tables is checked at open. */
#define SCAN_BYTES	(8u << 20)
#define NO_IDX		0xFFFFFFu

enum { DS_NONE, DS_SLOT, DS_L1, DS_DIRECT };
#define DS(st, idx)	((uint32_t)(st) << 24 | (uint32_t)(idx))
#define DS_STATE(v)	((v) >> 24)
#define DS_IDX(v)	((v) & NO_IDX)

/* The L2 table that cache entry @idx holds (its key: the table number). */
struct l2e {
	struct qcow_priv *p;
	uint32_t	idx;
	uint8_t		*buf;		/* the table as on disk */
	struct tlist	waiters;
};

enum { S_MAP, S_DATA, S_SYNC, S_META, S_FUA, S_COMMIT };

struct slot {
	struct qcow_priv *p;
	uint32_t	idx;
	bool		used;
	bool		stalled;	/* a vehicle waits for us */
	bool		waiting;	/* I/O of the step in flight */
	bool		new_table;
	bool		table_sent;
	bool		data_all;	/* every data write submitted */
	uint64_t	tail_off;	/* zeros to write there, or 0 */
	bool		changed;	/* the mapping grew */
	bool		fua;
	uint8_t		step;
	uint64_t	k;
	uint64_t	table_off;
	uint32_t	lo, hi;		/* entries changed */
	uint32_t	gen;		/* meta_gen when a sync began */
	unsigned	pending;
	int		err;
	struct l2e	*e;		/* pinned (existing table) */
	uint8_t		*shadow;
	struct tlist	cur, next;
	struct slot	*l1_next;
};

struct zctx {
	struct qcow_priv *p;
	bool		busy;
	bool		ready;		/* inflateInit2 done */
	z_stream	zs;
	uint8_t		*arena;
	size_t		arena_used;
	uint8_t		*cbuf;		/* compressed bytes */
	uint8_t		*obuf;		/* one cluster */
	struct td_treq	*t;
	uint32_t	i;		/* treq sector of its first */
	uint32_t	n;
	uint32_t	within;		/* that sector in the cluster */
	uint64_t	entry;
	uint8_t		mask[16];	/* sectors to copy (<= 128) */
};

struct qcow_priv {
	struct tio_file	file;
	bool		file_open;
	bool		rdwr;
	char		path[PATH_MAX];
	struct qcow_header h;
	struct qcow_geom g;
	char		backing[QCOW_MAX_BACKING_LEN + 1];
	uint64_t	file_size;	/* at open */
	uint64_t	next_alloc;
	uint8_t		*zeros;		/* ALIGN bytes */
	uint64_t	*l1;		/* host order */
	uint8_t		*l1_region;	/* the file at l1_base */
	uint64_t	l1_base;
	size_t		l1_len;
	unsigned	inflight;
	uint32_t	meta_gen, synced_gen;

	struct md_cache	cache;		/* entries[i] goes with its entry i */
	struct l2e	*entries;
	uint8_t		*l2_mem;
	struct tlist	cache_waiters;

	struct slot	slots[NR_SLOTS];
	uint8_t		*slot_mem;
	struct tlist	slot_waiters;
	bool		l1_writing, l1_stalled;
	struct slot	*l1_cur, *l1_pending;

	struct zctx	z[NR_Z];
	struct tlist	z_waiters;
};

/* ---- small helpers ---- */

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) / a * a;
}

static struct tio_req *meta_req(struct qcow_priv *p, enum tio_prio prio,
				enum tio_op op, void *buf, size_t len,
				uint64_t off, uint64_t deadline,
				tio_done_fn done, void *arg)
{
	struct tio_req *r = td_tio_req(prio, &p->file, op, 0, buf, len, off,
				       deadline, done, arg);

	if (r)
		p->inflight++;
	return r;
}

static uint64_t l2_get(const uint8_t *table, uint32_t c)
{
	return qcow_get_be64(table + (size_t)c * 8);
}

/* ---- L2 cache ---- */

static uint64_t l2_key(const struct qcow_priv *p, const struct l2e *e)
{
	return md_get(&p->cache, e->idx)->key;
}

static struct l2e *cache_lookup(struct qcow_priv *p, uint64_t k)
{
	uint32_t i = md_lookup(&p->cache, k);

	return i == MD_NONE ? NULL : &p->entries[i];
}

static struct l2e *cache_take(struct qcow_priv *p)
{
	uint32_t i = md_take(&p->cache);

	return i == MD_NONE ? NULL : &p->entries[i];
}

static void pin(struct qcow_priv *p, struct l2e *e)
{
	md_pin(&p->cache, e->idx);
}

static void unpin(struct qcow_priv *p, struct l2e *e)
{
	if (md_unpin(&p->cache, e->idx))
		tl_resume_all(&p->cache_waiters);
}

/* Every entry of a table read from disk must point inside the file. */
static int l2_validate(struct qcow_priv *p, uint64_t k, const uint8_t *table)
{
	uint64_t limit = p->next_alloc > p->file_size ? p->next_alloc :
			 p->file_size;
	char why[200];

	for (uint32_t c = 0; c < p->g.l2_size; c++) {
		uint64_t e = l2_get(table, c);

		if (e && qcow_l2_entry_check(&p->g, p->h.cluster_bits, e,
					     limit, why, sizeof(why)))
			return td_fail(EIO, "%s: L2 table %" PRIu64
				       " entry %u: %s", p->path, k, c, why);
	}
	return 0;
}

static void l2_read_done(struct tio_req *r, int err)
{
	struct l2e *e = r->arg;
	struct qcow_priv *p = e->p;
	struct tlist list = tl_take(&e->waiters);
	struct td_treq *t;

	p->inflight--;
	if (!err && l2_validate(p, l2_key(p, e), e->buf)) {
		td_err("%s", td_errmsg());
		err = -EIO;
	} else if (err) {
		td_err("%s: cannot read L2 table %" PRIu64 ": %s", p->path,
		       l2_key(p, e), strerror(-err));
	}
	md_read_done(&p->cache, e->idx, !err);
	while ((t = tl_pop(&list))) {
		if (!err) {
			td_treq_resume(t);
		} else if (DS_STATE(t->drv_state) == DS_SLOT) {
			struct slot *s = &p->slots[DS_IDX(t->drv_state)];

			if (!s->err)
				s->err = err;
			td_treq_resume(t);
		} else {
			td_fail_treq(t, err);
		}
		unpin(p, e);
	}
}

/*
 * Park @t until table @k is in the cache (it is not now); t->cursor or
 * t->drv_state must already say how to go on.
 */
static void cache_wait(struct qcow_priv *p, struct td_treq *t, uint64_t k)
{
	struct l2e *e = cache_lookup(p, k);
	struct tio_req *r;

	if (e) {
		pin(p, e);
		tl_push(&e->waiters, t);
		return;
	}
	e = cache_take(p);
	if (!e) {
		tl_push(&p->cache_waiters, t);
		return;
	}
	r = meta_req(p, TIO_PRIO_META, TIO_READ, e->buf, p->g.l2_bytes,
		     p->l1[k], t->deadline_ms, l2_read_done, e);
	if (!r) {
		md_give_back(&p->cache, e->idx);
		td_treq_wait_tio(t);
		return;
	}
	md_insert(&p->cache, e->idx, k, MD_READING);
	pin(p, e);
	tl_push(&e->waiters, t);
	tio_submit(r);
}

static struct l2e *cache_valid(struct qcow_priv *p, uint64_t k)
{
	struct l2e *e = cache_lookup(p, k);

	if (!e || md_get(&p->cache, e->idx)->state != MD_VALID)
		return NULL;
	md_touch(&p->cache, e->idx);
	return e;
}

/* ---- compressed clusters ---- */

static voidpf z_alloc(voidpf opaque, uInt items, uInt size)
{
	struct zctx *z = opaque;
	size_t len = align_up((size_t)items * size, 16);

	if (len > Z_ARENA - z->arena_used)
		return Z_NULL;
	z->arena_used += len;
	return z->arena + z->arena_used - len;
}

static void z_free(voidpf opaque, voidpf ptr)
{
	(void)opaque;
	(void)ptr;
}

static void zread_done(struct tio_req *r, int err)
{
	struct zctx *z = r->arg;
	struct qcow_priv *p = z->p;
	struct td_treq *t = z->t;
	uint32_t len = qcow_csize(z->entry, p->h.cluster_bits);

	p->inflight--;
	if (!err && qcow_inflate(&z->zs, z->cbuf, len, z->obuf,
				 p->g.cluster_size)) {
		td_err("%s: compressed cluster at offset %" PRIu64 " is "
		       "corrupt", p->path,
		       qcow_coff(z->entry, p->h.cluster_bits));
		err = -EIO;
	}
	if (!err)
		for (uint32_t j = 0; j < z->n; j++)
			if (z->mask[j >> 3] & (0x80 >> (j & 7)))
				memcpy(t->buf + (size_t)(z->i + j) * SEC,
				       z->obuf + (size_t)(z->within + j) * SEC,
				       SEC);
	z->busy = false;
	z->t = NULL;
	td_treq_put(t, err);
	tl_resume_all(&p->z_waiters);
}

/* Sectors [i, i + n) of @t from compressed cluster @entry. */
static int zread(struct qcow_priv *p, struct td_treq *t, uint32_t i,
		 uint32_t n, uint32_t within, uint64_t entry)
{
	struct zctx *z = NULL;
	struct tio_req *r;
	bool any = false;

	for (uint32_t j = 0; j < n; j++)
		any |= !td_treq_filled(t, i + j);
	if (!any)
		return 0;
	for (uint32_t j = 0; j < NR_Z && !z; j++)
		if (!p->z[j].busy)
			z = &p->z[j];
	if (!z) {
		t->cursor = i;
		tl_push(&p->z_waiters, t);
		return -EAGAIN;
	}
	r = meta_req(p, TIO_PRIO_DATA, TIO_READ, z->cbuf,
		     qcow_csize(entry, p->h.cluster_bits),
		     qcow_coff(entry, p->h.cluster_bits), t->deadline_ms,
		     zread_done, z);
	if (!r) {
		t->cursor = i;
		td_treq_wait_tio(t);
		return -EAGAIN;
	}
	z->busy = true;
	z->t = t;
	z->i = i;
	z->n = n;
	z->within = within;
	z->entry = entry;
	memset(z->mask, 0, sizeof(z->mask));
	for (uint32_t j = 0; j < n; j++) {
		if (td_treq_filled(t, i + j))
			continue;
		z->mask[j >> 3] |= (uint8_t)(0x80 >> (j & 7));
		td_treq_fill(t, i + j, 1);
	}
	td_treq_get(t);
	tio_submit(r);
	return 0;
}

/* ---- reads ---- */

/* Sectors [i, i + n) of @t, all inside L2 table @e's range. */
static int read_table(struct qcow_priv *p, struct td_treq *t,
		      const struct l2e *e, uint32_t i, uint32_t n)
{
	uint32_t cs = p->g.cluster_secs, j = 0;

	while (j < n) {
		uint64_t s = t->sec + i + j;
		uint32_t c = (uint32_t)(s / cs % p->g.l2_size);
		uint32_t within = (uint32_t)(s % cs);
		uint32_t run = cs - within, len;
		uint64_t ent;

		if (run > n - j)
			run = n - j;
		ent = l2_get(e->buf, c);
		if (!ent) {
			j += run;
			continue;
		}
		if (qcow_is_compressed(ent)) {
			if (zread(p, t, i + j, run, within, ent))
				return -EAGAIN;
			j += run;
			continue;
		}
		/* Clusters that follow each other on disk: one read. */
		len = run;
		while (j + len < n && c + 1 < p->g.l2_size) {
			uint64_t nx = l2_get(e->buf, c + 1);

			if (nx != l2_get(e->buf, c) + p->g.cluster_size)
				break;
			c++;
			len += cs < n - j - len ? cs : n - j - len;
		}
		if (td_read_unfilled(t, &p->file, i + j, len, NULL, 0,
				     ent + (uint64_t)within * SEC))
			return -EAGAIN;
		j += len;
	}
	return 0;
}

static void qcow_queue_read(struct td_image *img, struct td_treq *t)
{
	struct qcow_priv *p = img->priv;
	uint32_t end = td_treq_inside(t, p->g.sectors), i = t->cursor;

	while (i < end) {
		uint64_t s = t->sec + i, k = s / p->g.l2_secs;
		uint32_t n = p->g.l2_secs - (uint32_t)(s % p->g.l2_secs);
		struct l2e *e;

		if (n > end - i)
			n = end - i;
		if (!p->l1[k] || td_treq_all_filled(t, i, n)) {
			i += n;
			continue;
		}
		t->cursor = i;
		e = cache_valid(p, k);
		if (!e) {
			cache_wait(p, t, k);
			return;
		}
		if (read_table(p, t, e, i, n))
			return;
		i += n;
	}
	td_treq_forward(t);
}

/* ---- the L1 writer ---- */

static void slot_run(struct qcow_priv *p, struct slot *s);
static void l1_start(struct qcow_priv *p);

static void l1_done(struct tio_req *r, int err)
{
	struct qcow_priv *p = r->arg;
	struct slot *list = p->l1_cur, *s;

	p->inflight--;
	p->l1_writing = false;
	if (!err)
		p->meta_gen++;
	else
		td_err("%s: cannot write the L1 table: %s", p->path,
		       strerror(-err));
	p->l1_cur = p->l1_pending;
	p->l1_pending = NULL;
	if (p->l1_cur)
		l1_start(p);
	while ((s = list)) {
		list = s->l1_next;
		s->l1_next = NULL;
		if (err && !s->err)
			s->err = err;
		s->waiting = false;
		s->step = S_FUA;
		slot_run(p, s);
	}
}

/* One write of the L1 blocks that hold the entries of p->l1_cur. */
static void l1_start(struct qcow_priv *p)
{
	uint64_t lo = UINT64_MAX, hi = 0;
	struct tio_req *r;
	struct slot *s;

	for (s = p->l1_cur; s; s = s->l1_next) {
		uint64_t at = p->h.l1_off - p->l1_base + s->k * 8;

		qcow_put_be64(p->l1_region + at, s->table_off);
		if (at < lo)
			lo = at;
		if (at + 8 > hi)
			hi = at + 8;
	}
	lo = lo / ALIGN * ALIGN;
	hi = align_up(hi, ALIGN);
	r = meta_req(p, TIO_PRIO_META, TIO_WRITE, p->l1_region + lo, hi - lo,
		     p->l1_base + lo, p->l1_cur->cur.head->deadline_ms,
		     l1_done, p);
	if (!r) {
		struct td_treq *v = tl_pop(&p->l1_cur->cur);

		p->l1_stalled = true;
		v->drv_state = DS(DS_L1, 0);
		td_treq_wait_tio(v);
		return;
	}
	p->l1_writing = true;
	tio_submit(r);
}

static void l1_join(struct qcow_priv *p, struct slot *s)
{
	struct slot **tail;

	s->l1_next = NULL;
	tail = p->l1_writing || p->l1_stalled ? &p->l1_pending : &p->l1_cur;
	while (*tail)
		tail = &(*tail)->l1_next;
	*tail = s;
	if (!p->l1_writing && !p->l1_stalled)
		l1_start(p);
}

/* ---- allocation slots ---- */

static void slot_io_done(struct tio_req *r, int err)
{
	struct slot *s = r->arg;
	struct qcow_priv *p = s->p;

	p->inflight--;
	if (err && !s->err)
		s->err = err;
	if (!err && r->op == TIO_WRITE &&
	    (s->step == S_META || (s->step == S_DATA && r->buf == s->shadow)))
		p->meta_gen++;
	if (!err && r->op == TIO_FDSYNC && td_gen_before(p->synced_gen, s->gen))
		p->synced_gen = s->gen;
	if (--s->pending)
		return;
	s->waiting = false;
	/* Data still to submit (tio ran dry): go on with it. */
	if (s->step != S_DATA || s->data_all)
		s->step++;
	slot_run(p, s);
}

/* Park one of the batch's treqs with the core until tio has entries. */
static void slot_stall(struct slot *s)
{
	struct td_treq *v = tl_pop(&s->cur);

	s->stalled = true;
	v->drv_state = DS(DS_SLOT, s->idx);
	td_treq_wait_tio(v);
}

/* Submit one I/O of the current step; false when tio had no entry. */
static bool slot_io(struct qcow_priv *p, struct slot *s, enum tio_prio prio,
		    enum tio_op op, void *buf, size_t len, uint64_t off)
{
	struct tio_req *r = meta_req(p, prio, op, buf, len, off,
				     s->cur.head->deadline_ms, slot_io_done, s);

	if (!r)
		return false;
	if (op == TIO_FDSYNC)
		s->gen = p->meta_gen;
	s->pending++;
	s->waiting = true;
	tio_submit(r);
	return true;
}

/* A metadata I/O of the current step, or a stall until tio has entries. */
static void slot_meta(struct qcow_priv *p, struct slot *s, enum tio_op op,
		      void *buf, size_t len, uint64_t off)
{
	if (!slot_io(p, s, TIO_PRIO_META, op, buf, len, off))
		slot_stall(s);
}

/* Does @t touch a compressed cluster in @table? */
static bool hits_compressed(struct qcow_priv *p, const uint8_t *table,
			    const struct td_treq *t)
{
	uint64_t c0 = t->sec / p->g.cluster_secs % p->g.l2_size;
	uint64_t c1 = (t->sec + t->secs - 1) / p->g.cluster_secs %
		      p->g.l2_size;

	for (uint64_t c = c0; c <= c1; c++)
		if (qcow_is_compressed(l2_get(table, (uint32_t)c)))
			return true;
	return false;
}

static void slot_map(struct qcow_priv *p, struct slot *s)
{
	struct tlist keep = { NULL, NULL }, list = tl_take(&s->cur);
	uint32_t cs = p->g.cluster_size;
	struct td_treq *t;

	s->changed = false;
	s->lo = UINT32_MAX;
	s->hi = 0;
	s->fua = false;
	if (!p->l1[s->k]) {
		uint64_t off = align_up(p->next_alloc, cs > ALIGN ? cs : ALIGN);

		s->new_table = true;
		s->table_sent = false;
		s->changed = true;
		s->table_off = off;
		p->next_alloc = align_up(off + p->g.l2_bytes, cs);
		memset(s->shadow, 0, p->g.l2_bytes);
		if (p->g.optimised) {
			for (uint32_t c = 0; c < p->g.l2_size; c++)
				qcow_put_be64(s->shadow + (size_t)c * 8,
					      p->next_alloc + (uint64_t)c * cs);
			p->next_alloc += (uint64_t)p->g.l2_size * cs;
		}
	} else {
		s->new_table = false;
		memcpy(s->shadow, s->e->buf, p->g.l2_bytes);
	}
	s->tail_off = 0;
	while ((t = tl_pop(&list))) {
		uint32_t c0 = (uint32_t)(t->sec / p->g.cluster_secs %
					 p->g.l2_size);
		uint32_t c1 = (uint32_t)((t->sec + t->secs - 1) /
					 p->g.cluster_secs % p->g.l2_size);

		if (hits_compressed(p, s->shadow, t)) {
			td_err("%s: write at sector %" PRIu64 " into a "
			       "compressed cluster: not supported (convert "
			       "the image first)", p->path, t->sec);
			td_treq_put(t, -EIO);
			continue;
		}
		for (uint32_t c = c0; c <= c1; c++) {
			if (l2_get(s->shadow, c))
				continue;
			qcow_put_be64(s->shadow + (size_t)c * 8, p->next_alloc);
			p->next_alloc += cs;
			s->changed = true;
			if (c < s->lo)
				s->lo = c;
			if (c > s->hi)
				s->hi = c;
		}
		if (t->flags & TD_TREQ_FUA)
			s->fua = true;
		t->cursor = 0;
		tl_push(&keep, t);
	}
	s->cur = keep;
	/*
	 * Optimised allocation maps clusters nothing writes yet: the file
	 * must still reach the last of them, or it would point past the end
	 * of the file.  A write of the batch into that cluster does it too.
	 */
	if (s->new_table && p->g.optimised) {
		uint64_t last = (uint64_t)(p->g.l2_size - 1);
		bool hit = false;

		for (t = s->cur.head; t && !hit; t = t->next)
			hit = (t->sec + t->secs - 1) / p->g.cluster_secs %
			      p->g.l2_size == last;
		if (!hit)
			s->tail_off = l2_get(s->shadow, (uint32_t)last);
	}
}

/* Submit the data of the batch (and a new table) from where it stopped. */
static bool slot_data(struct qcow_priv *p, struct slot *s)
{
	uint32_t cs = p->g.cluster_secs;

	if (s->new_table && !s->table_sent) {
		if (!slot_io(p, s, TIO_PRIO_META, TIO_WRITE, s->shadow,
			     p->g.l2_bytes, s->table_off))
			return false;
		s->table_sent = true;
	}
	if (s->tail_off) {
		if (!slot_io(p, s, TIO_PRIO_DATA, TIO_WRITE, p->zeros,
			     cs * SEC < ALIGN ? cs * SEC : ALIGN, s->tail_off))
			return false;
		s->tail_off = 0;
	}
	for (struct td_treq *t = s->cur.head; t; t = t->next) {
		while (t->cursor < t->secs) {
			uint64_t sec = t->sec + t->cursor;
			uint32_t c = (uint32_t)(sec / cs % p->g.l2_size);
			uint32_t n = cs - (uint32_t)(sec % cs);
			uint64_t off = l2_get(s->shadow, c) + sec % cs * SEC;

			if (n > t->secs - t->cursor)
				n = t->secs - t->cursor;
			while (t->cursor + n < t->secs &&
			       c + 1 < p->g.l2_size &&
			       l2_get(s->shadow, c + 1) ==
			       l2_get(s->shadow, c) + p->g.cluster_size) {
				uint32_t more = t->secs - t->cursor - n;

				c++;
				n += more < cs ? more : cs;
			}
			if (!slot_io(p, s, TIO_PRIO_DATA, TIO_WRITE,
				     t->buf + (size_t)t->cursor * SEC,
				     (size_t)n * SEC, off))
				return false;
			t->cursor += n;
		}
	}
	return true;
}

static void slot_commit(struct qcow_priv *p, struct slot *s)
{
	struct tlist list = tl_take(&s->cur);
	struct td_treq *t;
	int err = s->err;

	if (!err && s->changed) {
		if (s->new_table) {
			struct l2e *e = cache_take(p);

			p->l1[s->k] = s->table_off;
			if (e) {
				memcpy(e->buf, s->shadow, p->g.l2_bytes);
				md_insert(&p->cache, e->idx, s->k, MD_VALID);
			}
		} else {
			memcpy(s->e->buf, s->shadow, p->g.l2_bytes);
		}
	}
	if (err)
		td_err("%s: cannot allocate in L2 table %" PRIu64 ": %s",
		       p->path, s->k, strerror(-err));
	if (s->e) {
		struct l2e *e = s->e;

		s->e = NULL;
		unpin(p, e);
	}
	while ((t = tl_pop(&list))) {
		t->drv_state = 0;
		td_treq_put(t, err);
	}
	s->err = 0;
	if (s->next.head) {
		s->cur = tl_take(&s->next);
		s->step = S_MAP;
		slot_run(p, s);
		return;
	}
	s->used = false;
	tl_resume_all(&p->slot_waiters);
}

static void slot_run(struct qcow_priv *p, struct slot *s)
{
	for (;;) {
		if (s->stalled || s->waiting)
			return;
		if (!s->cur.head && s->step != S_COMMIT) {
			/* Every write of the batch failed at mapping. */
			s->step = S_COMMIT;
		}
		if (s->err && s->step < S_COMMIT)
			s->step = S_COMMIT;
		switch (s->step) {
		case S_MAP:
			if (p->l1[s->k] && !s->e) {
				struct l2e *e = cache_valid(p, s->k);
				struct td_treq *v;

				if (!e) {
					v = tl_pop(&s->cur);
					v->drv_state = DS(DS_SLOT, s->idx);
					s->stalled = true;
					cache_wait(p, v, s->k);
					return;
				}
				pin(p, e);
				s->e = e;
			}
			slot_map(p, s);
			s->step = S_DATA;
			break;
		case S_DATA:
			s->data_all = slot_data(p, s);
			if (s->pending)
				return;	/* slot_io_done goes on */
			if (!s->data_all) {
				slot_stall(s);
				return;
			}
			s->step = S_SYNC;
			break;
		case S_SYNC:
			if (!s->changed) {
				s->step = S_FUA;
				break;
			}
			slot_meta(p, s, TIO_FDSYNC, NULL, 0, 0);
			return;
		case S_META:
			if (!s->changed) {
				s->step = S_FUA;
				break;
			}
			if (s->new_table) {
				s->waiting = true;
				l1_join(p, s);
				return;
			}
			{
				uint32_t lo = s->lo * 8 / SEC * SEC;
				uint32_t hi = (uint32_t)
					      align_up((s->hi + 1) * 8, SEC);

				if (hi > p->g.l2_bytes)
					hi = p->g.l2_bytes;
				slot_meta(p, s, TIO_WRITE, s->shadow + lo,
					  hi - lo, p->l1[s->k] + lo);
			}
			return;
		case S_FUA:
			/* The batch's data went without FUA: sync it all. */
			if (!s->fua) {
				s->step = S_COMMIT;
				break;
			}
			slot_meta(p, s, TIO_FDSYNC, NULL, 0, 0);
			return;
		case S_COMMIT:
		default:
			slot_commit(p, s);
			return;
		}
	}
}

static struct slot *slot_find(struct qcow_priv *p, uint64_t k)
{
	for (uint32_t i = 0; i < NR_SLOTS; i++)
		if (p->slots[i].used && p->slots[i].k == k)
			return &p->slots[i];
	return NULL;
}

/* @t needs the slot of its table; false when it had to wait for one. */
static bool slot_join(struct qcow_priv *p, struct td_treq *t, uint64_t k)
{
	struct slot *s = slot_find(p, k);

	if (s) {
		td_treq_get(t);
		tl_push(&s->next, t);
		td_treq_issued(t);
		return true;
	}
	for (uint32_t i = 0; i < NR_SLOTS && !s; i++)
		if (!p->slots[i].used)
			s = &p->slots[i];
	if (!s) {
		tl_push(&p->slot_waiters, t);
		return false;
	}
	s->used = true;
	s->stalled = false;
	s->waiting = false;
	s->k = k;
	s->step = S_MAP;
	s->pending = 0;
	s->err = 0;
	s->e = NULL;
	s->cur.head = s->cur.tail = NULL;
	s->next.head = s->next.tail = NULL;
	td_treq_get(t);
	tl_push(&s->cur, t);
	td_treq_issued(t);
	slot_run(p, s);
	return true;
}

/* ---- writes ---- */

/* Every cluster of @t allocated, none compressed? */
static bool all_mapped(struct qcow_priv *p, const uint8_t *table,
		       const struct td_treq *t)
{
	uint32_t c0 = (uint32_t)(t->sec / p->g.cluster_secs % p->g.l2_size);
	uint32_t c1 = (uint32_t)((t->sec + t->secs - 1) / p->g.cluster_secs %
				 p->g.l2_size);

	for (uint32_t c = c0; c <= c1; c++) {
		uint64_t e = l2_get(table, c);

		if (!e || qcow_is_compressed(e))
			return false;
	}
	return true;
}

/* Write @t into its allocated clusters, from t->cursor on. */
static void direct_write(struct qcow_priv *p, struct td_treq *t,
			 const struct l2e *e)
{
	uint32_t cs = p->g.cluster_secs;
	unsigned fua = t->flags & TD_TREQ_FUA ? TIO_FUA : 0;

	while (t->cursor < t->secs) {
		uint64_t sec = t->sec + t->cursor;
		uint32_t c = (uint32_t)(sec / cs % p->g.l2_size);
		uint32_t n = cs - (uint32_t)(sec % cs);
		uint64_t off = l2_get(e->buf, c) + sec % cs * SEC;

		if (n > t->secs - t->cursor)
			n = t->secs - t->cursor;
		while (t->cursor + n < t->secs && c + 1 < p->g.l2_size &&
		       l2_get(e->buf, c + 1) ==
		       l2_get(e->buf, c) + p->g.cluster_size) {
			uint32_t more = t->secs - t->cursor - n;

			c++;
			n += more < cs ? more : cs;
		}
		if (td_treq_submit(t, &p->file, TIO_WRITE,
				   t->buf + (size_t)t->cursor * SEC,
				   (size_t)n * SEC, off, fua)) {
			t->drv_state = DS(DS_DIRECT, 0);
			td_treq_wait_tio(t);
			return;
		}
		t->cursor += n;
	}
	/* Its clusters' metadata, written for others, may not be stable. */
	if (fua && td_gen_before(p->synced_gen, p->meta_gen) &&
	    t->cursor == t->secs) {
		if (td_treq_submit(t, &p->file, TIO_FDSYNC, NULL, 0, 0, 0)) {
			t->drv_state = DS(DS_DIRECT, 0);
			td_treq_wait_tio(t);
			return;
		}
		t->cursor = t->secs + 1;
	}
	t->drv_state = 0;
	td_treq_issued(t);
}

static void resume_vehicle(struct qcow_priv *p, struct td_treq *t)
{
	uint32_t idx = DS_IDX(t->drv_state);
	struct slot *s;

	switch (DS_STATE(t->drv_state)) {
	case DS_SLOT:
		s = &p->slots[idx];
		t->drv_state = 0;
		s->stalled = false;
		tl_push(&s->cur, t);
		slot_run(p, s);
		break;
	case DS_L1:
		t->drv_state = 0;
		p->l1_stalled = false;
		tl_push(&p->l1_cur->cur, t);
		l1_start(p);
		break;
	case DS_DIRECT: {
		uint64_t k = t->sec / p->g.l2_secs;
		struct l2e *e;

		if (t->cursor >= t->secs) {
			/* Only the FUA sync was left. */
			direct_write(p, t, NULL);
			return;
		}
		e = cache_valid(p, k);
		if (!e) {
			cache_wait(p, t, k);
			return;
		}
		direct_write(p, t, e);
		break;
	}
	}
}

static void qcow_queue_write(struct td_image *img, struct td_treq *t)
{
	struct qcow_priv *p = img->priv;
	uint64_t k;
	struct l2e *e;

	if (t->drv_state) {
		resume_vehicle(p, t);
		return;
	}
	if (!p->rdwr || t->sec >= p->g.sectors ||
	    p->g.sectors - t->sec < t->secs) {
		td_fail_treq(t, p->rdwr ? -EINVAL : -EROFS);
		return;
	}
	k = t->sec / p->g.l2_secs;
	if ((t->sec + t->secs - 1) / p->g.l2_secs != k) {
		td_err("%s: write of sectors %" PRIu64 "+%u crosses an L2 "
		       "table", p->path, t->sec, t->secs);
		td_fail_treq(t, -EINVAL);
		return;
	}
	if (p->l1[k]) {
		e = cache_valid(p, k);
		if (!e) {
			cache_wait(p, t, k);
			return;
		}
		if (all_mapped(p, e->buf, t)) {
			t->cursor = 0;
			direct_write(p, t, e);
			return;
		}
	}
	slot_join(p, t, k);
}

static void qcow_queue_flush(struct td_image *img, struct td_treq *t)
{
	struct qcow_priv *p = img->priv;

	if (td_treq_submit(t, &p->file, TIO_FDSYNC, NULL, 0, 0, 0)) {
		td_treq_wait_tio(t);
		return;
	}
	td_treq_issued(t);
}

/* ---- open and close ---- */

static void free_bufs(struct qcow_priv *p)
{
	for (uint32_t i = 0; i < NR_Z; i++) {
		struct zctx *z = &p->z[i];

		if (z->ready)
			inflateEnd(&z->zs);
		free(z->arena);
		free(z->cbuf);
		free(z->obuf);
		memset(z, 0, sizeof(*z));
	}
	md_cache_free(&p->cache);
	free(p->l1);
	free(p->l1_region);
	free(p->entries);
	free(p->l2_mem);
	free(p->slot_mem);
	free(p->zeros);
	p->zeros = NULL;
	p->l1 = NULL;
	p->l1_region = p->l2_mem = p->slot_mem = NULL;
	p->entries = NULL;
}

static int setup_cache(struct qcow_priv *p)
{
	uint32_t n = CACHE_BYTES / p->g.l2_bytes, i;

	if (n > CACHE_MAX)
		n = CACHE_MAX;
	if (n < CACHE_MIN)
		n = CACHE_MIN;
	p->entries = calloc(n, sizeof(*p->entries));
	p->l2_mem = td_alloc_aligned((size_t)n * p->g.l2_bytes);
	if (!p->entries || !p->l2_mem || md_cache_init(&p->cache, n))
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		struct l2e *e = &p->entries[i];

		e->p = p;
		e->idx = i;
		e->buf = p->l2_mem + (size_t)i * p->g.l2_bytes;
	}
	p->slot_mem = td_alloc_aligned((size_t)NR_SLOTS * p->g.l2_bytes);
	p->zeros = td_alloc_aligned(ALIGN);
	if (!p->slot_mem || !p->zeros)
		return -ENOMEM;
	for (i = 0; i < NR_SLOTS; i++) {
		p->slots[i].p = p;
		p->slots[i].idx = i;
		p->slots[i].shadow = p->slot_mem + (size_t)i * p->g.l2_bytes;
	}
	for (i = 0; i < NR_Z; i++) {
		struct zctx *z = &p->z[i];

		z->p = p;
		z->arena = malloc(Z_ARENA);
		z->cbuf = td_alloc_aligned(p->g.cluster_size);
		z->obuf = td_alloc_aligned(p->g.cluster_size);
		if (!z->arena || !z->cbuf || !z->obuf)
			return -ENOMEM;
		z->zs.zalloc = z_alloc;
		z->zs.zfree = z_free;
		z->zs.opaque = z;
		if (inflateInit2(&z->zs, -15) != Z_OK)
			return -ENOMEM;
		z->ready = true;
	}
	return 0;
}

/*
 * The L1 table: kept as the file's bytes around it (so that whole
 * aligned blocks can be written back) and decoded.  Old blktap images
 * keep it little-endian: made big-endian here (and on disk if writable).
 */
static int load_l1(struct qcow_priv *p)
{
	int fd = p->file.fd_buffered, err;
	uint64_t end = p->h.l1_off + p->g.l1_bytes;
	char why[200];
	uint8_t *l1;

	p->l1_base = p->h.l1_off / ALIGN * ALIGN;
	p->l1_len = align_up(end, ALIGN) - p->l1_base;
	p->l1_region = td_alloc_aligned(p->l1_len);
	p->l1 = calloc(p->g.l1_size ? p->g.l1_size : 1, sizeof(*p->l1));
	if (!p->l1_region || !p->l1)
		return td_fail(ENOMEM, "%s: out of memory for the L1 table",
			       p->path);
	err = qcow_pread(fd, p->l1_region, p->l1_len, p->l1_base);
	if (err)
		return td_fail(err, "%s: cannot read the L1 table: %s",
			       p->path, strerror(-err));
	l1 = p->l1_region + (p->h.l1_off - p->l1_base);
	if (qcow_l1_to_be(&p->h, &p->g, l1) && p->rdwr) {
		uint8_t head[QCOW_HEAD_BYTES];

		p->h.flags |= QCOW_EXT_L1_BE;
		qcow_header_encode(&p->h, head);
		err = qcow_pwrite(fd, l1, p->g.l1_bytes, p->h.l1_off);
		if (!err)
			err = qcow_pwrite(fd, head, sizeof(head), 0);
		if (!err && fdatasync(fd) < 0)
			err = -errno;
		if (err)
			return td_fail(err, "%s: cannot convert the L1 table "
				       "to big-endian: %s", p->path,
				       strerror(-err));
	}
	if (p->h.has_ext &&
	    qcow_l1_cksum(l1, p->g.l1_bytes) != p->h.cksum)
		td_info("%s: the L1 checksum is stale (the image was not "
			"closed by tapdisk); it is rewritten at close",
			p->path);
	err = qcow_l1_decode(&p->g, l1, p->file_size, p->l1, why, sizeof(why));
	if (err)
		return td_fail(err, "%s: %s", p->path, why);
	return 0;
}

/* Check the L2 tables of small images at once: bad ones fail the open. */
static int scan_l2(struct qcow_priv *p)
{
	uint64_t n = 0;
	uint8_t *buf;
	int err = 0;

	for (uint64_t k = 0; k < p->g.l1_size; k++)
		n += p->l1[k] != 0;
	if (!n || n * p->g.l2_bytes > SCAN_BYTES)
		return 0;
	buf = malloc(p->g.l2_bytes);
	if (!buf)
		return td_fail(ENOMEM, "%s: out of memory", p->path);
	for (uint64_t k = 0; k < p->g.l1_size && !err; k++) {
		if (!p->l1[k])
			continue;
		err = qcow_pread(p->file.fd_buffered, buf, p->g.l2_bytes,
				p->l1[k]);
		if (err)
			err = td_fail(err, "%s: cannot read L2 table %" PRIu64
				      ": %s", p->path, k, strerror(-err));
		else
			err = l2_validate(p, k, buf);
	}
	free(buf);
	return err;
}

static int qcow_open(struct td_image *img, const char *path, unsigned flags)
{
	struct qcow_priv *p = img->priv;
	bool ro = flags & TD_IMAGE_RDONLY;
	char why[300];
	uint64_t end;
	int err;

	snprintf(p->path, sizeof(p->path), "%s", path);
	err = tio_file_open(&p->file, p->path, ro,
			    !(flags & TD_IMAGE_NO_DIRECT));
	if (err)
		return err;
	p->file_open = true;
	p->rdwr = !ro;
	err = qcow_read_meta(p->file.fd_buffered, &p->h, &p->g, &p->file_size,
			     p->backing, sizeof(p->backing), why, sizeof(why));
	if (err) {
		err = td_fail(err, "%s: %s", path, why);
		goto fail;
	}
	if (p->rdwr && p->backing[0] && p->g.cluster_secs > 1) {
		err = td_fail(EOPNOTSUPP, "%s: a backing file with %u-byte "
			      "clusters can only be opened read-only (partial "
			      "cluster writes would need copy-on-write)", path,
			      p->g.cluster_size);
		goto fail;
	}
	err = load_l1(p);
	if (err)
		goto fail;
	end = p->file_size > p->l1_base + p->l1_len ? p->file_size :
	      p->l1_base + p->l1_len;
	p->next_alloc = align_up(end, p->g.cluster_size > ALIGN ?
				 p->g.cluster_size : ALIGN);
	err = scan_l2(p);
	if (err)
		goto fail;
	if (setup_cache(p)) {
		err = td_fail(ENOMEM, "%s: out of memory for the L2 cache",
			      path);
		goto fail;
	}
	img->sectors = p->g.sectors;
	img->chunk_sectors = p->g.l2_secs;
	img->can_discard = false;
	return 0;
fail:
	free_bufs(p);
	if (p->file_open)
		tio_file_close(&p->file);
	p->file_open = false;
	return err;
}

static void qcow_close(struct td_image *img)
{
	struct qcow_priv *p = img->priv;

	if (p->inflight)
		td_err("%s: closed with %u metadata requests in flight",
		       p->path, p->inflight);
	if (p->rdwr && p->file_open) {
		int fd = p->file.fd_buffered, err = 0;

		if (p->h.has_ext) {
			uint8_t be[4];
			uint8_t *l1 = p->l1_region + (p->h.l1_off - p->l1_base);
			uint32_t ck = qcow_l1_cksum(l1, p->g.l1_bytes);

			be[0] = (uint8_t)(ck >> 24);
			be[1] = (uint8_t)(ck >> 16);
			be[2] = (uint8_t)(ck >> 8);
			be[3] = (uint8_t)ck;
			if (ck != p->h.cksum)
				err = qcow_pwrite(fd, be, 4, QCOW_EXT_CKSUM_OFF);
		}
		if (!err && fdatasync(fd) < 0)
			err = -errno;
		if (err)
			td_err("%s: cannot update the header at close: %s",
			       p->path, strerror(-err));
	}
	if (p->file_open)
		tio_file_close(&p->file);
	free_bufs(p);
	memset(p, 0, sizeof(*p));
}

/* ---- backing files ---- */

static int qcow_get_parent(struct td_image *img, struct td_parent *par)
{
	struct qcow_priv *p = img->priv;
	char path[PATH_MAX], why[PATH_MAX + 100];
	int err;

	if (!p->backing[0])
		return -ENOENT;
	err = qcow_chain_check(img->path, why, sizeof(why));
	if (err)
		return td_fail(err, "%s: %s", img->path, why);
	qcow_backing_path(img->path, p->backing, path, sizeof(path));
	err = qcow_probe(path, par->type, sizeof(par->type), why, sizeof(why));
	/* -ENOENT would tell the core there is no parent: never return it. */
	if (err)
		return td_fail(err == -ENOENT ? ENXIO : err,
			       "%s: backing file: %s", img->path, why);
	par->path = strdup(path);
	if (!par->path)
		return td_fail(ENOMEM, "out of memory");
	return 0;
}

static int qcow_validate_parent(struct td_image *img, struct td_image *parent)
{
	/* qcow records no identity of its backing file to compare. */
	(void)img;
	(void)parent;
	return 0;
}

const struct td_driver td_drv_qcow = {
	.name			= "qcow",
	.priv_size		= sizeof(struct qcow_priv),
	.open			= qcow_open,
	.close			= qcow_close,
	.queue_read		= qcow_queue_read,
	.queue_write		= qcow_queue_write,
	.queue_flush		= qcow_queue_flush,
	.get_parent		= qcow_get_parent,
	.validate_parent	= qcow_validate_parent,
};
