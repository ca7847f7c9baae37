// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The VHD driver: fixed, dynamic and differencing images.
 *
 * Metadata (footer, header, BAT, batmap) is read synchronously through
 * libvhd at open and kept in its context; after that every I/O goes
 * through tio until close, which tidies up through libvhd (below).
 *
 * Bitmaps live in a cache of fixed size.  An entry is pinned by every
 * treq that waits for it or writes through it; unpinned valid entries sit
 * on an LRU list and may be reused.  A block whose batmap bit is set is
 * full, so its bitmap is never needed; so is one we allocated full.
 *
 * New blocks.  The footer moves ahead of several blocks at once (see
 * RESERVE_MIN): one footer write and one fdatasync, by one allocation
 * (the "mover") while the others that need the space wait; only one move
 * at a time.  A block is used only once a synced footer lies beyond it.
 * Footers land at the end of a block of the same vhd_align_block()
 * chain, so never inside a later block's data area (at most under its
 * bitmap or in the gap before it), and an old footer is overwritten only
 * after the new one is stable: the file always ends with a valid footer.
 * Then, in a non-differencing image, a block whose data area lies past
 * the end of the file at open (space never written, which reads as
 * zeros) gets an all-ones bitmap, as QEMU does: no sector of it ever
 * needs a bitmap write again.  Any other block (a differencing image,
 * where a clear bit means "ask the parent", or space below the end of
 * the file, which may hold junk) gets a zero bitmap and exact bits.
 *
 * Write ordering, which is what makes a crash harmless:
 *  - a new block: the footer beyond it written and synced; then its
 *    bitmap; for a zero bitmap an fdatasync (else, after a power loss,
 *    the BAT entry could point at junk that reads as set bits); only
 *    then the BAT sector.  An all-ones bitmap needs no fdatasync: if it
 *    is lost while the BAT entry survives, the bitmap reads as zeros
 *    (never-written space), which is right for a block none of whose
 *    writes was flushed - a FLUSH's fdatasync would have taken the bitmap
 *    too.  The in-memory BAT changes only when the BAT write has
 *    completed, so nothing uses the block before it is visible; a block
 *    whose allocation failed is never reused in this run.
 *  - data, then the bitmap bits that declare it; a write completes only
 *    when the bitmap write carrying its bits has completed (none for a
 *    block allocated full).
 *  - the batmap bit once the bitmap is full on disk.  It is only a hint,
 *    but the write that set it waits for it, so that close never finds a
 *    batmap write in flight.  Blocks allocated full get theirs at close,
 *    after an fdatasync.
 *  - close gives back the reserved space no block took: the footer at
 *    the end of the data (free space), fdatasync, truncate
 *    (vhd_set_phys_size).  A crash in between leaves the far footer at
 *    the end, still valid; the space it reserved is below the end of the
 *    file at the next open, so it is not "never written" then.
 * After a kill -9 every completed write is in the file, so the image is
 * as valid as at any moment of the run: each BAT entry points at a
 * block whose bitmap is written and whose footer is synced.
 * Each bitmap, the batmap and each BAT sector have at most one write in
 * flight; treqs (or allocations) that arrive meanwhile go together in the
 * next one.  A FUA write makes its own metadata FUA, and ends with an
 * fdatasync if metadata written for other writes (its block's BAT entry,
 * bits it relies on) may not be stable yet.
 *
 * Waiting for tio entries: a treq that cannot get one parks with the core
 * (td_treq_wait_tio).  For a metadata write shared by several treqs, one
 * of its waiters is taken off the driver's list and parked as the
 * "vehicle"; when the core resumes it, queue_write() sees drv_state and
 * retries the write.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uuid/uuid.h>

#include "driver.h"
#include "drv-util.h"
#include "libvhd.h"
#include "libvhd-info.h"
#include "log.h"
#include "md-cache.h"
#include "tio.h"
#include "treq-list.h"

#define CACHE_ENTRIES	256u
#define CACHE_BYTES	(8u << 20)	/* bitmap memory at most, roughly */
#define CACHE_MIN	16u
#define NR_SLOTS	32u
/*
 * Blocks a footer move reserves: 16 at first, twice as many each time,
 * up to 256 (512 MiB of 2 MiB blocks).  A disk filled fast pays for few
 * moves (log2), one growing slowly reserves little; the space is a hole
 * until used, so it costs no disk, and close gives back what is left.
 */
#define RESERVE_MIN	16u
#define RESERVE_MAX	256u
#define SEC		VHD_SECTOR_SIZE
#define BAT_PER_SEC	(SEC / 4)
#define NO_IDX		0xFFFFFFu

/* drv_state of a write treq: what it is doing, and on which entry/slot. */
enum {
	DS_NONE,	/* fresh, or parked on one of our lists */
	DS_DATA,	/* data written or being written; holds a get */
	DS_ALLOC,	/* vehicle for an allocation slot */
	DS_BMW,		/* vehicle for a bitmap write */
	DS_BATMAP,	/* vehicle for a batmap write */
	DS_SYNC,	/* FUA: waiting for a tio entry for its fdatasync */
};
#define DS(st, idx)	((uint32_t)(st) << 24 | (uint32_t)(idx))
#define DS_STATE(v)	((v) >> 24)
#define DS_IDX(v)	((v) & NO_IDX)

/* A metadata write some treqs wait for: at most one in flight. */
struct mwrite {
	bool		writing;	/* submitted, not completed */
	bool		stalled;	/* a vehicle waits for a tio entry */
	struct tlist	cur;		/* their bits are in what is written */
	struct tlist	next;		/* arrived while writing */
};

/* The bitmap of the block that cache entry @idx holds (its key). */
struct bm_entry {
	struct vhd_priv	*p;
	uint32_t	idx;
	bool		dirty;		/* bits set since the last write began */
	uint8_t		*buf;
	struct tlist	waiters;	/* for the read */
	struct mwrite	w;
};

/*
 * Steps of an allocation, in order.  A_FOOTER and A_FSYNC only for the
 * slot that moves the footer; A_SYNC only for a block with a zero bitmap.
 */
enum { A_SPACE, A_FOOTER, A_FSYNC, A_BITMAP, A_SYNC, A_BAT };
/* How an allocation takes part in writing its BAT sector. */
enum { BR_NONE, BR_WRITER, BR_RIDER, BR_WAIT };

struct alloc_slot {
	struct vhd_priv	*p;
	uint32_t	idx;
	bool		used;
	bool		full;		/* writes an all-ones bitmap */
	uint32_t	lead;		/* bytes of the gap before it, too */
	bool		inflight;	/* this slot's I/O is in the kernel */
	bool		stalled;
	uint8_t		step;
	uint8_t		bat_role;
	uint32_t	writer;		/* BR_RIDER: the writing slot */
	uint32_t	block;
	uint32_t	gen;		/* meta_gen when its fdatasync began */
	uint64_t	off, end;
	struct tlist	waiters;
	uint8_t		*buf;		/* one BAT sector */
};

struct vhd_priv {
	vhd_context_t	ctx;
	struct tio_file	file;
	bool		file_open;
	bool		rdwr;
	bool		dynamic;
	uint32_t	spb;
	uint32_t	bm_bytes;
	uint64_t	sectors;
	unsigned	inflight;	/* our own tio requests */

	/* Bitmap cache: entries[i] goes with the cache's entry i. */
	struct md_cache	cache;
	struct bm_entry	*entries;
	uint8_t		*bm_mem;
	struct tlist	cache_waiters;

	/* Writing. */
	struct alloc_slot slots[NR_SLOTS];
	uint8_t		*slot_mem;
	struct tlist	slot_waiters;
	/* VHD_DATA_ALIGN zero bytes, then a zero (all-ones) bitmap. */
	uint8_t		*zero_bm;
	uint8_t		*ones_bm;
	uint8_t		*footer_buf;
	uint64_t	next_block;	/* where the next block goes (aligned) */
	/*
	 * The footer: footer_off is where it is, written and synced; a block
	 * that ends at or below it may be used.  At most one move at a time,
	 * to move_off; reserve is how many blocks the next move adds.
	 */
	uint64_t	footer_off;
	uint64_t	open_footer;	/* where it was at open */
	uint64_t	move_off;
	bool		moving;
	uint32_t	reserve;
	uint32_t	unassigned;	/* unallocated blocks no slot took */
	bool		bat_failed;	/* a BAT sector may differ from memory */
	/*
	 * File space from here on was never written: it reads as zeros.  A
	 * non-differencing block whose data lies there is allocated full.
	 */
	uint64_t	virgin;
	bool		all_full;	/* not a differencing image */
	uint8_t		*full_map;	/* blocks allocated full, one bit each */
	bool		full_any;
	/*
	 * Metadata writes completed without FUA, and how many of them an
	 * fdatasync is known to cover: a FUA write must not depend on one
	 * that is not yet stable.
	 */
	uint32_t	meta_gen;
	uint32_t	synced_gen;

	/* Batmap updates (only when header and map are contiguous). */
	bool		batmap_live;
	bool		batmap_resave;	/* a write failed: store it at close */
	uint8_t		*batmap_buf;
	int64_t		batmap_hi;	/* highest map sector changed */
	struct mwrite	batmap_w;
};

/* ---- small helpers ---- */

static struct tio_req *meta_req(struct vhd_priv *p, enum tio_op op,
				void *buf, size_t len, uint64_t off,
				unsigned flags, uint64_t deadline,
				tio_done_fn done, void *arg)
{
	struct tio_req *r = td_tio_req(TIO_PRIO_META, &p->file, op, flags, buf,
				       len, off, deadline, done, arg);

	if (r)
		p->inflight++;
	return r;
}

static uint64_t block_data(const struct vhd_priv *p, uint32_t block)
{
	return ((uint64_t)p->ctx.bat[block] + p->ctx.bm_secs) << VHD_SECTOR_SHIFT;
}

/* No bitmap needed: the batmap says so, or we allocated it full. */
static bool block_full(const struct vhd_priv *p, uint32_t block)
{
	return vhd_batmap_test(&p->ctx, block) ||
	       (p->full_map && vhd_bitmap_test(p->full_map, block));
}

/* An fdatasync that began at metadata generation @gen has completed. */
static void synced(struct vhd_priv *p, uint32_t gen)
{
	if (td_gen_before(p->synced_gen, gen))
		p->synced_gen = gen;
}

/* ---- bitmap cache ---- */

static uint32_t bm_block(const struct vhd_priv *p, const struct bm_entry *e)
{
	return (uint32_t)md_get(&p->cache, e->idx)->key;
}

static bool bm_valid(const struct vhd_priv *p, const struct bm_entry *e)
{
	return md_get(&p->cache, e->idx)->state == MD_VALID;
}

static struct bm_entry *cache_lookup(struct vhd_priv *p, uint32_t block)
{
	uint32_t i = md_lookup(&p->cache, block);

	return i == MD_NONE ? NULL : &p->entries[i];
}

/* An entry nobody uses: a free one, else the least recently used. */
static struct bm_entry *cache_take(struct vhd_priv *p)
{
	uint32_t i = md_take(&p->cache);

	if (i == MD_NONE)
		return NULL;
	p->entries[i].dirty = false;
	return &p->entries[i];
}

static void pin(struct vhd_priv *p, struct bm_entry *e)
{
	md_pin(&p->cache, e->idx);
}

static void unpin(struct vhd_priv *p, struct bm_entry *e)
{
	if (md_unpin(&p->cache, e->idx))
		tl_resume_all(&p->cache_waiters);
}

static void bm_read_done(struct tio_req *r, int err)
{
	struct bm_entry *e = r->arg;
	struct vhd_priv *p = e->p;
	struct tlist list = tl_take(&e->waiters);
	struct td_treq *t;

	p->inflight--;
	if (err) {
		td_err("%s: cannot read the bitmap of block %u: %s",
		       p->ctx.file, bm_block(p, e), strerror(-err));
	}
	md_read_done(&p->cache, e->idx, !err);
	/* Unpin after each resume, so the entry survives for the next. */
	while ((t = tl_pop(&list))) {
		if (err)
			td_fail_treq(t, err);
		else
			td_treq_resume(t);
		unpin(p, e);
	}
}

/*
 * The bitmap of @block for @t, or NULL when @t had to wait (it is parked
 * and will be resumed; t->cursor must already say where to resume).
 */
static struct bm_entry *bm_get(struct vhd_priv *p, struct td_treq *t,
			       uint32_t block)
{
	struct bm_entry *e = cache_lookup(p, block);
	struct tio_req *r;

	if (e && bm_valid(p, e)) {
		md_touch(&p->cache, e->idx);
		return e;
	}
	if (e) {
		pin(p, e);
		tl_push(&e->waiters, t);
		return NULL;
	}
	e = cache_take(p);
	if (!e) {
		tl_push(&p->cache_waiters, t);
		return NULL;
	}
	r = meta_req(p, TIO_READ, e->buf, p->bm_bytes,
		     (uint64_t)p->ctx.bat[block] << VHD_SECTOR_SHIFT, 0,
		     t->deadline_ms, bm_read_done, e);
	if (!r) {
		md_give_back(&p->cache, e->idx);
		td_treq_wait_tio(t);
		return NULL;
	}
	md_insert(&p->cache, e->idx, block, MD_READING);
	pin(p, e);
	tl_push(&e->waiters, t);
	tio_submit(r);
	return NULL;
}

/* A new block's bitmap is known to be zero: no need to read it. */
static void cache_install_zero(struct vhd_priv *p, uint32_t block)
{
	struct bm_entry *e;

	if (cache_lookup(p, block))
		return;
	e = cache_take(p);
	if (!e)
		return;
	memset(e->buf, 0, p->bm_bytes);
	md_insert(&p->cache, e->idx, block, MD_VALID);
}

/* ---- reads ---- */

static void vhd_queue_read(struct td_image *img, struct td_treq *t)
{
	struct vhd_priv *p = img->priv;
	uint32_t end = td_treq_inside(t, p->sectors), i = t->cursor;

	if (!p->dynamic) {
		if (i < end &&
		    td_read_unfilled(t, &p->file, i, end - i, NULL, 0,
				     (t->sec + i) << VHD_SECTOR_SHIFT))
			return;
		td_treq_forward(t);
		return;
	}
	while (i < end) {
		uint64_t s = t->sec + i;
		uint32_t block = (uint32_t)(s / p->spb);
		uint32_t first = (uint32_t)(s % p->spb);
		uint32_t n = p->spb - first;
		const uint8_t *bm = NULL;

		if (n > end - i)
			n = end - i;
		if (p->ctx.bat[block] == VHD_BAT_UNUSED ||
		    td_treq_all_filled(t, i, n)) {
			i += n;
			continue;
		}
		if (!block_full(p, block)) {
			struct bm_entry *e;

			t->cursor = i;
			e = bm_get(p, t, block);
			if (!e)
				return;
			bm = e->buf;
		}
		if (td_read_unfilled(t, &p->file, i, n, bm, first,
				     block_data(p, block) +
				     ((uint64_t)first << VHD_SECTOR_SHIFT)))
			return;
		i += n;
	}
	td_treq_forward(t);
}

/* ---- batmap ---- */

static void write_finish(struct vhd_priv *p, struct td_treq *t);
static void batmap_start(struct vhd_priv *p);

static void batmap_done(struct tio_req *r, int err)
{
	struct vhd_priv *p = r->arg;
	struct tlist list;
	struct td_treq *t;

	p->inflight--;
	p->batmap_w.writing = false;
	list = tl_take(&p->batmap_w.cur);
	if (err) {
		/* Only a hint, so the writes are fine; close stores it. */
		td_warn("%s: cannot write the batmap: %s", p->ctx.file,
			strerror(-err));
		p->batmap_resave = true;
		p->batmap_hi = (int64_t)p->ctx.batmap_hdr.batmap_size - 1;
	}
	if (!tl_empty(&p->batmap_w.next)) {
		p->batmap_w.cur = tl_take(&p->batmap_w.next);
		batmap_start(p);
	}
	while ((t = tl_pop(&list)))
		write_finish(p, t);
}

/*
 * Header and map are contiguous: one write of the header sector and the
 * map up to the last changed sector, checksum over the whole map.
 */
static void batmap_start(struct vhd_priv *p)
{
	struct vhd_batmap_header *b = &p->ctx.batmap_hdr;
	size_t map_bytes = (size_t)b->batmap_size << VHD_SECTOR_SHIFT;
	size_t len = (size_t)(p->batmap_hi + 1) << VHD_SECTOR_SHIFT;
	struct td_treq *head = p->batmap_w.cur.head;
	struct tio_req *r;

	r = meta_req(p, TIO_WRITE, p->batmap_buf, SEC + len,
		     b->batmap_offset - SEC, 0, head->deadline_ms,
		     batmap_done, p);
	if (!r) {
		struct td_treq *v = tl_pop(&p->batmap_w.cur);

		p->batmap_w.stalled = true;
		v->drv_state = DS(DS_BATMAP, 0);
		td_treq_wait_tio(v);
		return;
	}
	b->checksum = vhd_checksum(p->ctx.batmap, map_bytes, SIZE_MAX);
	vhd_batmap_header_encode(b, p->batmap_buf);
	memcpy(p->batmap_buf + SEC, p->ctx.batmap, len);
	p->batmap_hi = -1;
	p->batmap_w.writing = true;
	tio_submit(r);
}

static void batmap_join(struct vhd_priv *p, struct td_treq *t)
{
	if (p->batmap_w.writing) {
		tl_push(&p->batmap_w.next, t);
		return;
	}
	tl_push(&p->batmap_w.cur, t);
	if (!p->batmap_w.stalled)
		batmap_start(p);
}

/* @block's bitmap is full on disk: mark it, and make @t wait for that. */
static void batmap_set(struct vhd_priv *p, struct td_treq *t, uint32_t block)
{
	int64_t sec = (int64_t)((block >> 3) / SEC);

	vhd_bitmap_set(p->ctx.batmap, block);
	if (sec > p->batmap_hi)
		p->batmap_hi = sec;
	batmap_join(p, t);
}

/* ---- write completion ---- */

static void sync_done(struct tio_req *r, int err)
{
	struct td_treq *t = r->arg;
	struct vhd_priv *p = t->img->priv;

	p->inflight--;
	if (!err)
		synced(p, t->cursor);
	t->drv_state = 0;
	td_treq_put(t, err);
}

/*
 * A write's data and bitmap are down.  A FUA write must also not depend
 * on metadata (its block's BAT entry or bitmap, written for another
 * write) that no fdatasync has covered yet.
 */
static void write_finish(struct vhd_priv *p, struct td_treq *t)
{
	struct tio_req *r;

	if (!(t->flags & TD_TREQ_FUA) ||
	    !td_gen_before(p->synced_gen, p->meta_gen)) {
		t->drv_state = 0;
		td_treq_put(t, 0);
		return;
	}
	r = meta_req(p, TIO_FDSYNC, NULL, 0, 0, 0, t->deadline_ms, sync_done, t);
	if (!r) {
		t->drv_state = DS(DS_SYNC, 0);
		td_treq_wait_tio(t);
		return;
	}
	t->cursor = p->meta_gen;
	tio_submit(r);
}

/* ---- bitmap writes ---- */

static void bmw_start(struct vhd_priv *p, struct bm_entry *e);

static void bmw_done(struct tio_req *r, int err)
{
	struct bm_entry *e = r->arg;
	struct vhd_priv *p = e->p;
	uint32_t block = bm_block(p, e);
	struct tlist list;
	struct td_treq *t;
	bool full;

	p->inflight--;
	e->w.writing = false;
	list = tl_take(&e->w.cur);
	if (!err && !(r->flags & TIO_FUA))
		p->meta_gen++;
	if (err) {
		td_err("%s: cannot write the bitmap of block %u: %s",
		       p->ctx.file, block, strerror(-err));
		e->dirty = true;
	}
	/* With nobody in "next", what was written is the whole bitmap. */
	full = !err && p->batmap_live && tl_empty(&e->w.next) &&
	       !block_full(p, block) && vhd_bitmap_full(e->buf, p->spb);
	if (!tl_empty(&e->w.next)) {
		e->w.cur = tl_take(&e->w.next);
		bmw_start(p, e);
	}
	while ((t = tl_pop(&list))) {
		unpin(p, e);
		if (err) {
			t->drv_state = 0;
			td_treq_put(t, err);
		} else if (full) {
			/*
			 * The first sets the bit and waits for its write, so
			 * that close never finds one in flight.
			 */
			if (!block_full(p, block))
				batmap_set(p, t, block);
			else
				write_finish(p, t);
		} else {
			write_finish(p, t);
		}
	}
}

static void bmw_start(struct vhd_priv *p, struct bm_entry *e)
{
	struct td_treq *t;
	struct tio_req *r;
	unsigned flags = 0;

	for (t = e->w.cur.head; t; t = t->next)
		if (t->flags & TD_TREQ_FUA)
			flags = TIO_FUA;
	r = meta_req(p, TIO_WRITE, e->buf, p->bm_bytes,
		     (uint64_t)p->ctx.bat[bm_block(p, e)] << VHD_SECTOR_SHIFT,
		     flags,
		     e->w.cur.head->deadline_ms, bmw_done, e);
	if (!r) {
		t = tl_pop(&e->w.cur);
		e->w.stalled = true;
		t->drv_state = DS(DS_BMW, e->idx);
		td_treq_wait_tio(t);
		return;
	}
	e->dirty = false;
	e->w.writing = true;
	tio_submit(r);
}

/* @t's bits are set in @e: wait for a write that includes them. */
static void bmw_join(struct vhd_priv *p, struct bm_entry *e, struct td_treq *t)
{
	if (e->w.writing) {
		tl_push(&e->w.next, t);
		return;
	}
	tl_push(&e->w.cur, t);
	if (!e->w.stalled)
		bmw_start(p, e);
}

static void data_done(struct tio_req *r, int err)
{
	struct td_treq *t = r->arg;
	struct vhd_priv *p = t->img->priv;
	uint32_t idx = DS_IDX(t->drv_state);
	struct bm_entry *e = idx == NO_IDX ? NULL : &p->entries[idx];
	uint32_t first, i;

	p->inflight--;
	if (err) {
		if (e)
			unpin(p, e);
		t->drv_state = 0;
		td_treq_put(t, err);
		return;
	}
	if (e) {
		first = (uint32_t)(t->sec % p->spb);
		for (i = first; i < first + t->secs; i++) {
			if (!vhd_bitmap_test(e->buf, i)) {
				vhd_bitmap_set(e->buf, i);
				e->dirty = true;
			}
		}
		/*
		 * Bits already set may still be on their way to disk (or
		 * their write failed): then this write waits as well.
		 */
		if (e->dirty || e->w.writing || e->w.stalled ||
		    !tl_empty(&e->w.cur)) {
			bmw_join(p, e, t);
			return;
		}
		unpin(p, e);
	}
	write_finish(p, t);
}

/* Write @t's data into its allocated block; @e is pinned (or NULL). */
static void data_write(struct vhd_priv *p, struct td_treq *t,
		       struct bm_entry *e)
{
	uint32_t block = (uint32_t)(t->sec / p->spb);
	uint32_t first = (uint32_t)(t->sec % p->spb);
	struct tio_req *r;

	r = td_tio_req(TIO_PRIO_DATA, &p->file, TIO_WRITE,
		       t->flags & TD_TREQ_FUA ? TIO_FUA : 0, t->buf,
		       (size_t)t->secs << VHD_SECTOR_SHIFT,
		       block_data(p, block) +
		       ((uint64_t)first << VHD_SECTOR_SHIFT),
		       t->deadline_ms, data_done, t);
	if (!r) {
		if (e)
			unpin(p, e);
		t->drv_state = 0;
		td_treq_wait_tio(t);
		return;
	}
	p->inflight++;
	t->drv_state = DS(DS_DATA, e ? e->idx : NO_IDX);
	td_treq_get(t);
	tio_submit(r);
	td_treq_issued(t);
}

/* ---- allocation ---- */

static void alloc_submit(struct vhd_priv *p, struct alloc_slot *s);
static void alloc_space(struct vhd_priv *p, struct alloc_slot *s);

static struct alloc_slot *slot_find(struct vhd_priv *p, uint32_t block)
{
	for (uint32_t i = 0; i < NR_SLOTS; i++)
		if (p->slots[i].used && p->slots[i].block == block)
			return &p->slots[i];
	return NULL;
}

/* The footer has moved (or a move failed): let waiting slots go on. */
static void space_check(struct vhd_priv *p)
{
	for (uint32_t i = 0; i < NR_SLOTS; i++) {
		struct alloc_slot *s = &p->slots[i];

		if (s->used && s->step == A_SPACE && !s->stalled)
			alloc_space(p, s);
	}
}

static void alloc_finish(struct vhd_priv *p, struct alloc_slot *s, int err)
{
	struct tlist list = tl_take(&s->waiters);
	struct td_treq *t;

	s->used = false;
	s->bat_role = BR_NONE;
	if (err) {
		td_err("%s: cannot allocate block %u: %s", p->ctx.file,
		       s->block, strerror(-err));
		/* Its space stays unused: nothing else goes there. */
		p->unassigned++;
	} else if (s->full) {
		vhd_bitmap_set(p->full_map, s->block);
		p->full_any = true;
	} else {
		cache_install_zero(p, s->block);
	}
	while ((t = tl_pop(&list))) {
		if (err)
			td_fail_treq(t, err);
		else
			td_treq_resume(t);
	}
	tl_resume_all(&p->slot_waiters);
}

/* A BAT sector write finished: it carried @w's entry and its riders'. */
static void alloc_bat_done(struct vhd_priv *p, struct alloc_slot *w, int err)
{
	uint32_t sector = w->block / BAT_PER_SEC, i, n = 0;
	struct alloc_slot *group[NR_SLOTS], *next = NULL;

	for (i = 0; i < NR_SLOTS; i++) {
		struct alloc_slot *s = &p->slots[i];

		if (s->used && s->step == A_BAT &&
		    (s == w || (s->bat_role == BR_RIDER && s->writer == w->idx)))
			group[n++] = s;
	}
	if (!err) {
		p->meta_gen++;
		for (i = 0; i < n; i++)
			p->ctx.bat[group[i]->block] =
				(uint32_t)(group[i]->off >> VHD_SECTOR_SHIFT);
	} else {
		/* What the sector holds now is unknown: close keeps all. */
		p->bat_failed = true;
	}
	for (i = 0; i < n; i++)
		group[i]->bat_role = BR_NONE;
	/* Those that waited for this sector go in one write, from memory. */
	for (i = 0; i < NR_SLOTS; i++) {
		struct alloc_slot *s = &p->slots[i];

		if (!s->used || s->step != A_BAT || s->bat_role != BR_WAIT ||
		    s->block / BAT_PER_SEC != sector)
			continue;
		if (!next) {
			next = s;
			s->bat_role = BR_WRITER;
		} else {
			s->bat_role = BR_RIDER;
			s->writer = next->idx;
		}
	}
	if (next)
		alloc_submit(p, next);
	for (i = 0; i < n; i++)
		alloc_finish(p, group[i], err);
}

/* The bitmap is down (and stable, if zero): write the BAT entry. */
static void alloc_bat_step(struct vhd_priv *p, struct alloc_slot *s)
{
	s->step = A_BAT;
	/* Another allocation may be writing the same BAT sector. */
	for (uint32_t i = 0; i < NR_SLOTS; i++) {
		struct alloc_slot *o = &p->slots[i];

		if (o == s || !o->used || o->step != A_BAT ||
		    o->bat_role != BR_WRITER ||
		    o->block / BAT_PER_SEC != s->block / BAT_PER_SEC)
			continue;
		if (o->inflight) {
			s->bat_role = BR_WAIT;
		} else {
			/* Not submitted yet: its write takes ours. */
			s->bat_role = BR_RIDER;
			s->writer = o->idx;
		}
		return;
	}
	s->bat_role = BR_WRITER;
	alloc_submit(p, s);
}

static void alloc_done(struct tio_req *r, int err)
{
	struct alloc_slot *s = r->arg;
	struct vhd_priv *p = s->p;

	p->inflight--;
	s->inflight = false;
	if (err && s->step != A_BAT) {
		if (s->step == A_FOOTER || s->step == A_FSYNC) {
			/* The footer stays put; a waiting slot may retry. */
			p->moving = false;
			alloc_finish(p, s, err);
			space_check(p);
			return;
		}
		alloc_finish(p, s, err);
		return;
	}
	switch (s->step) {
	case A_FOOTER:
		s->step = A_FSYNC;
		alloc_submit(p, s);
		return;
	case A_FSYNC:
		synced(p, s->gen);
		p->footer_off = p->move_off;
		p->moving = false;
		s->step = A_SPACE;
		space_check(p);
		return;
	case A_BITMAP:
		if (s->full) {
			p->meta_gen++;
			alloc_bat_step(p, s);
		} else {
			s->step = A_SYNC;
			alloc_submit(p, s);
		}
		return;
	case A_SYNC:
		synced(p, s->gen);
		alloc_bat_step(p, s);
		return;
	case A_BAT:
		alloc_bat_done(p, s, err);
		return;
	}
}

static void alloc_stall(struct vhd_priv *p, struct alloc_slot *s)
{
	struct td_treq *v = tl_pop(&s->waiters);

	(void)p;
	s->stalled = true;
	v->drv_state = DS(DS_ALLOC, s->idx);
	td_treq_wait_tio(v);
}

/*
 * Where the next move puts the footer: past every block handed out so
 * far and p->reserve more, on the same chain of vhd_align_block() that
 * later blocks follow, so the footer sits at the end of a future block
 * and never inside the data area of one (the next block's bitmap may
 * start there; its data begins at least bm_bytes later).
 */
static uint64_t move_target(struct vhd_priv *p)
{
	uint64_t pos = p->next_block;
	uint64_t blk = p->bm_bytes + ((uint64_t)p->spb << VHD_SECTOR_SHIFT);
	uint32_t n = p->reserve < p->unassigned ? p->reserve : p->unassigned;

	for (uint32_t i = 0; i < n; i++) {
		uint64_t off = vhd_align_block(pos, p->ctx.bm_secs);

		if ((off >> VHD_SECTOR_SHIFT) >= VHD_BAT_UNUSED)
			break;
		pos = off + blk;
	}
	if (p->reserve < RESERVE_MAX)
		p->reserve *= 2;
	return pos;
}

/* @s has its place: go on once a synced footer lies beyond it. */
static void alloc_space(struct vhd_priv *p, struct alloc_slot *s)
{
	if (s->end <= p->footer_off) {
		s->step = A_BITMAP;
		alloc_submit(p, s);
		return;
	}
	s->step = A_SPACE;
	if (p->moving)
		return;		/* space_check() calls again after it */
	p->moving = true;
	p->move_off = move_target(p);
	s->step = A_FOOTER;
	alloc_submit(p, s);
}

static void alloc_submit(struct vhd_priv *p, struct alloc_slot *s)
{
	uint64_t deadline = s->waiters.head->deadline_ms;
	struct tio_req *r = NULL;
	uint32_t first, i;

	switch (s->step) {
	case A_SPACE:
		alloc_space(p, s);
		return;
	case A_FOOTER:
		r = meta_req(p, TIO_WRITE, p->footer_buf, SEC, p->move_off, 0,
			     deadline, alloc_done, s);
		break;
	case A_FSYNC:
	case A_SYNC:
		r = meta_req(p, TIO_FDSYNC, NULL, 0, 0, 0, deadline,
			     alloc_done, s);
		s->gen = p->meta_gen;
		break;
	case A_BITMAP:
		r = meta_req(p, TIO_WRITE, (s->full ? p->ones_bm : p->zero_bm) +
			     VHD_DATA_ALIGN - s->lead, s->lead + p->bm_bytes,
			     s->off - s->lead, 0, deadline, alloc_done, s);
		break;
	case A_BAT:
		r = meta_req(p, TIO_WRITE, s->buf, SEC,
			     p->ctx.header.table_offset +
			     (uint64_t)(s->block / BAT_PER_SEC) * BAT_PER_SEC * 4,
			     0, deadline, alloc_done, s);
		if (!r)
			break;
		/* Built now, from memory plus every allocation riding along. */
		first = s->block / BAT_PER_SEC * BAT_PER_SEC;
		for (i = 0; i < BAT_PER_SEC; i++) {
			uint32_t v = first + i < p->ctx.header.max_bat_size ?
				     p->ctx.bat[first + i] : VHD_BAT_UNUSED;

			for (uint32_t j = 0; j < NR_SLOTS; j++) {
				struct alloc_slot *o = &p->slots[j];

				if (o->used && o->step == A_BAT &&
				    o->block == first + i &&
				    (o == s || (o->bat_role == BR_RIDER &&
						o->writer == s->idx)))
					v = (uint32_t)(o->off >> 9);
			}
			s->buf[4 * i] = (uint8_t)(v >> 24);
			s->buf[4 * i + 1] = (uint8_t)(v >> 16);
			s->buf[4 * i + 2] = (uint8_t)(v >> 8);
			s->buf[4 * i + 3] = (uint8_t)v;
		}
		break;
	}
	if (!r) {
		alloc_stall(p, s);
		return;
	}
	s->inflight = true;
	tio_submit(r);
}

static void alloc_start(struct vhd_priv *p, struct td_treq *t, uint32_t block)
{
	struct alloc_slot *s = NULL;
	uint64_t off;

	for (uint32_t i = 0; i < NR_SLOTS && !s; i++)
		if (!p->slots[i].used)
			s = &p->slots[i];
	if (!s) {
		tl_push(&p->slot_waiters, t);
		return;
	}
	s->used = true;
	s->inflight = false;
	s->stalled = false;
	s->step = A_SPACE;
	s->bat_role = BR_NONE;
	s->block = block;
	s->waiters.head = s->waiters.tail = NULL;
	tl_push(&s->waiters, t);
	/* Its place now, so that the order of blocks is the order here. */
	off = vhd_align_block(p->next_block, p->ctx.bm_secs);
	if ((off >> VHD_SECTOR_SHIFT) >= VHD_BAT_UNUSED) {
		p->unassigned--;
		alloc_finish(p, s, -EFBIG);
		return;
	}
	/*
	 * The bitmap ends where the data begins, on VHD_DATA_ALIGN; with it
	 * we write zeros over the gap before it up to that alignment (when
	 * it is ours: not before the previous block's end), so the file
	 * system sees whole blocks written.  A part of one, in a hole, would
	 * make ext4 wait for all our I/O in flight and write synchronously.
	 * Nothing lives in the gap but old footers we no longer need: the
	 * current one lies past this block, see alloc_space().
	 */
	s->lead = (uint32_t)(off % VHD_DATA_ALIGN);
	if (off - s->lead < p->next_block)
		s->lead = 0;
	s->off = off;
	s->end = off + p->bm_bytes + ((uint64_t)p->spb << VHD_SECTOR_SHIFT);
	s->full = p->all_full && off + p->bm_bytes >= p->virgin;
	p->next_block = s->end;
	p->unassigned--;
	alloc_space(p, s);
}

/* ---- writes and flushes ---- */

/* The core resumed a vehicle: retry the write it stands for. */
static void resume_vehicle(struct vhd_priv *p, struct td_treq *t)
{
	uint32_t idx = DS_IDX(t->drv_state);
	struct alloc_slot *s;
	struct bm_entry *e;

	switch (DS_STATE(t->drv_state)) {
	case DS_ALLOC:
		s = &p->slots[idx];
		t->drv_state = 0;
		s->stalled = false;
		tl_push(&s->waiters, t);
		alloc_submit(p, s);
		break;
	case DS_BMW:
		e = &p->entries[idx];
		t->drv_state = DS(DS_DATA, idx);
		e->w.stalled = false;
		tl_push(&e->w.cur, t);
		bmw_start(p, e);
		break;
	case DS_BATMAP:
		t->drv_state = DS(DS_DATA, NO_IDX);
		p->batmap_w.stalled = false;
		tl_push(&p->batmap_w.cur, t);
		batmap_start(p);
		break;
	case DS_SYNC:
		write_finish(p, t);
		break;
	}
}

static void vhd_queue_write(struct td_image *img, struct td_treq *t)
{
	struct vhd_priv *p = img->priv;
	uint32_t block, first;
	struct bm_entry *e;

	if (t->drv_state) {
		resume_vehicle(p, t);
		return;
	}
	if (!p->rdwr || t->sec >= p->sectors || p->sectors - t->sec < t->secs) {
		td_fail_treq(t, p->rdwr ? -EINVAL : -EROFS);
		return;
	}
	if (!p->dynamic) {
		if (td_treq_submit(t, &p->file, TIO_WRITE, t->buf,
				   (size_t)t->secs << VHD_SECTOR_SHIFT,
				   t->sec << VHD_SECTOR_SHIFT,
				   t->flags & TD_TREQ_FUA ? TIO_FUA : 0)) {
			td_treq_wait_tio(t);
			return;
		}
		td_treq_issued(t);
		return;
	}
	block = (uint32_t)(t->sec / p->spb);
	first = (uint32_t)(t->sec % p->spb);
	if (first + t->secs > p->spb) {
		/* The core splits at chunk_sectors; this is a bug there. */
		td_err("%s: write of sectors %llu+%u crosses a block",
		       p->ctx.file, (unsigned long long)t->sec, t->secs);
		td_fail_treq(t, -EINVAL);
		return;
	}
	{
		struct alloc_slot *s = slot_find(p, block);

		if (s) {
			tl_push(&s->waiters, t);
			return;
		}
	}
	if (p->ctx.bat[block] == VHD_BAT_UNUSED) {
		alloc_start(p, t, block);
		return;
	}
	if (block_full(p, block)) {
		data_write(p, t, NULL);
		return;
	}
	e = bm_get(p, t, block);
	if (!e)
		return;
	pin(p, e);
	data_write(p, t, e);
}

static void flush_done(struct tio_req *r, int err)
{
	struct td_treq *t = r->arg;
	struct vhd_priv *p = t->img->priv;

	p->inflight--;
	if (!err)
		synced(p, t->cursor);
	td_treq_put(t, err);
}

static void vhd_queue_flush(struct td_image *img, struct td_treq *t)
{
	struct vhd_priv *p = img->priv;
	struct tio_req *r = td_tio_req(TIO_PRIO_DATA, &p->file, TIO_FDSYNC, 0,
				       NULL, 0, 0, t->deadline_ms, flush_done,
				       t);

	if (!r) {
		td_treq_wait_tio(t);
		return;
	}
	p->inflight++;
	t->cursor = p->meta_gen;
	td_treq_get(t);
	tio_submit(r);
	td_treq_issued(t);
}

/* ---- open and close ---- */

static void free_bufs(struct vhd_priv *p)
{
	md_cache_free(&p->cache);
	free(p->entries);
	free(p->bm_mem);
	free(p->slot_mem);
	free(p->zero_bm);
	free(p->ones_bm);
	free(p->footer_buf);
	free(p->batmap_buf);
	free(p->full_map);
	p->entries = NULL;
	p->bm_mem = p->slot_mem = p->zero_bm = p->footer_buf = NULL;
	p->ones_bm = p->batmap_buf = p->full_map = NULL;
}

static int setup_cache(struct vhd_priv *p)
{
	uint32_t n = CACHE_BYTES / p->bm_bytes;

	if (n > CACHE_ENTRIES)
		n = CACHE_ENTRIES;
	if (n < CACHE_MIN)
		n = CACHE_MIN;
	p->entries = calloc(n, sizeof(*p->entries));
	p->bm_mem = td_alloc_aligned((size_t)n * p->bm_bytes);
	if (!p->entries || !p->bm_mem || md_cache_init(&p->cache, n))
		return -ENOMEM;
	for (uint32_t i = 0; i < n; i++) {
		struct bm_entry *e = &p->entries[i];

		e->p = p;
		e->idx = i;
		e->buf = p->bm_mem + (size_t)i * p->bm_bytes;
	}
	return 0;
}

static int setup_writes(struct vhd_priv *p)
{
	vhd_context_t *ctx = &p->ctx;
	struct vhd_batmap_header *b = &ctx->batmap_hdr;

	uint32_t blocks = vhd_blocks(ctx);
	struct stat st;

	p->slot_mem = td_alloc_aligned((size_t)NR_SLOTS * SEC);
	p->zero_bm = td_alloc_aligned(VHD_DATA_ALIGN + p->bm_bytes);
	p->ones_bm = td_alloc_aligned(VHD_DATA_ALIGN + p->bm_bytes);
	p->footer_buf = td_alloc_aligned(SEC);
	p->full_map = calloc(((size_t)ctx->header.max_bat_size + 7) / 8 + 1, 1);
	if (!p->slot_mem || !p->zero_bm || !p->ones_bm || !p->footer_buf ||
	    !p->full_map)
		return -ENOMEM;
	memset(p->zero_bm, 0, VHD_DATA_ALIGN + p->bm_bytes);
	memset(p->ones_bm, 0, VHD_DATA_ALIGN);
	memset(p->ones_bm + VHD_DATA_ALIGN, 0xff, p->bm_bytes);
	for (uint32_t i = 0; i < NR_SLOTS; i++) {
		p->slots[i].p = p;
		p->slots[i].idx = i;
		p->slots[i].buf = p->slot_mem + (size_t)i * SEC;
	}
	vhd_footer_encode(&ctx->footer, p->footer_buf);
	p->footer_off = p->open_footer = ctx->footer_offset;
	p->next_block = ctx->next_block;
	p->reserve = RESERVE_MIN;
	for (uint32_t i = 0; i < blocks && i < ctx->header.max_bat_size; i++)
		if (ctx->bat[i] == VHD_BAT_UNUSED)
			p->unassigned++;
	/*
	 * What lies past the end of a regular file reads as zeros (POSIX),
	 * and in this process only our own blocks and footers land there.
	 * Below the end there may be anything: space reserved by a run that
	 * crashed, a bitmap written before its BAT entry, junk.  A device
	 * has no such space.  A bitmap may say "all present" only for a
	 * block of a non-differencing image: there a clear bit means zeros,
	 * which is what the never-written data area holds.
	 */
	p->virgin = UINT64_MAX;
	if (!fstat(ctx->fd, &st) && S_ISREG(st.st_mode))
		p->virgin = ((uint64_t)st.st_size + SEC - 1) & ~(uint64_t)(SEC - 1);
	p->all_full = ctx->footer.type != VHD_TYPE_DIFF;
	/*
	 * We keep the batmap up to date only where header and map are
	 * contiguous (always so in our images): one write then carries
	 * both.  A bit left clear is never wrong, only slower.
	 */
	if (ctx->has_batmap &&
	    b->batmap_offset == vhd_batmap_header_offset(ctx) + SEC) {
		p->batmap_buf = td_alloc_aligned(SEC + ((size_t)b->batmap_size <<
						     VHD_SECTOR_SHIFT));
		if (!p->batmap_buf)
			return -ENOMEM;
		p->batmap_live = true;
		p->batmap_hi = -1;
	}
	return 0;
}

static int vhd_open_image(struct td_image *img, const char *path,
			  unsigned flags)
{
	struct vhd_priv *p = img->priv;
	bool ro = flags & TD_IMAGE_RDONLY;
	int err;

	err = vhd_open(&p->ctx, path, ro ? VHD_OPEN_RDONLY : VHD_OPEN_RDWR);
	if (err)
		return td_fail(err, "%s", vhd_errmsg());
	p->rdwr = !ro;
	p->dynamic = vhd_is_dynamic(&p->ctx);
	p->sectors = vhd_sectors(&p->ctx);
	if (p->dynamic) {
		p->spb = p->ctx.spb;
		p->bm_bytes = p->ctx.bm_secs << VHD_SECTOR_SHIFT;
		if (setup_cache(p) || (p->rdwr && setup_writes(p))) {
			err = td_fail(ENOMEM, "%s: out of memory for the "
				      "bitmap cache", path);
			goto fail;
		}
	}
	err = tio_file_open(&p->file, p->ctx.file, ro,
			    !(flags & TD_IMAGE_NO_DIRECT));
	if (err)
		goto fail;
	p->file_open = true;
	img->sectors = p->sectors;
	img->chunk_sectors = p->dynamic ? p->spb : 0;
	img->can_discard = false;
	return 0;
fail:
	free_bufs(p);
	vhd_close(&p->ctx);
	return err;
}

/*
 * At close (no request in flight): record the blocks allocated full in
 * the batmap, and give back the space reserved but not used.
 */
static void close_tidy(struct vhd_priv *p)
{
	vhd_context_t *ctx = &p->ctx;
	uint32_t blocks = ctx->header.max_bat_size;
	uint64_t end;

	if (p->full_any && ctx->has_batmap) {
		/*
		 * The batmap says "full" for good only over bitmaps that are
		 * stable: after a power loss a bitmap write may be lost.
		 */
		if (fdatasync(ctx->fd)) {
			td_err("%s: fdatasync: %s", ctx->file, strerror(errno));
		} else {
			for (uint32_t i = 0; i < blocks; i++)
				if (vhd_bitmap_test(p->full_map, i))
					vhd_bitmap_set(ctx->batmap, i);
			p->batmap_resave = true;
		}
	}
	if (p->batmap_resave && vhd_write_batmap(ctx))
		td_err("%s", vhd_errmsg());
	/*
	 * Not below the footer of the image we opened (the space there is
	 * not ours to cut), nor when a BAT sector write failed: it may point
	 * at blocks that memory does not know.
	 */
	end = vhd_end_of_data(ctx);
	if (end < p->open_footer)
		end = p->open_footer;
	if (p->bat_failed || p->footer_off <= end)
		return;
	/*
	 * vhd_set_phys_size() writes the footer at @end (free space: no
	 * block of the BAT reaches past it), syncs, then truncates.  A crash
	 * before the truncation leaves the file ending at our footer.
	 */
	ctx->footer_offset = p->footer_off;
	if (vhd_set_phys_size(ctx, end + SEC))
		td_err("%s", vhd_errmsg());
}

static void vhd_close_image(struct td_image *img)
{
	struct vhd_priv *p = img->priv;

	if (p->inflight)
		td_err("%s: closed with %u metadata requests in flight",
		       p->ctx.file, p->inflight);
	if (p->file_open)
		tio_file_close(&p->file);
	if (p->rdwr && p->dynamic && !p->inflight)
		close_tidy(p);
	else if (p->batmap_resave && vhd_write_batmap(&p->ctx))
		td_err("%s", vhd_errmsg());
	/* For a writable image this also makes everything stable. */
	vhd_close(&p->ctx);
	free_bufs(p);
	memset(p, 0, sizeof(*p));
}

/* ---- parents ---- */

static int vhd_get_parent(struct td_image *img, struct td_parent *par)
{
	struct vhd_priv *p = img->priv;
	char *path = NULL;
	int err;

	if (p->ctx.footer.type != VHD_TYPE_DIFF)
		return -ENOENT;
	err = vhd_parent_path(&p->ctx, false, &path);
	/* -ENOENT would tell the core there is no parent: never return it. */
	if (err)
		return td_fail(err == -ENOENT ? ENXIO : err, "%s",
			       vhd_errmsg());
	/* A differencing image over a raw file records no parent uuid. */
	snprintf(par->type, sizeof(par->type), "%s",
		 uuid_is_null(p->ctx.header.prt_uuid) ? "aio" : "vhd");
	par->path = path;
	return 0;
}

static int vhd_validate_parent(struct td_image *img, struct td_image *parent)
{
	struct vhd_priv *p = img->priv;
	char want[40], have[40];

	if (uuid_is_null(p->ctx.header.prt_uuid))
		return 0;	/* a raw parent carries no uuid to compare */
	uuid_unparse(p->ctx.header.prt_uuid, want);
	if (parent->drv != &td_drv_vhd)
		return td_fail(EINVAL, "%s: parent %s is not a VHD, but the "
			       "child expects VHD uuid %s", img->path,
			       parent->path, want);
	uuid_unparse(((struct vhd_priv *)parent->priv)->ctx.footer.uuid, have);
	if (strcmp(want, have))
		return td_fail(EINVAL, "%s: parent %s has uuid %s, but the "
			       "child expects %s", img->path, parent->path,
			       have, want);
	return 0;
}

const struct td_driver td_drv_vhd = {
	.name		= "vhd",
	.priv_size	= sizeof(struct vhd_priv),
	.open		= vhd_open_image,
	.close		= vhd_close_image,
	.queue_read	= vhd_queue_read,
	.queue_write	= vhd_queue_write,
	.queue_flush	= vhd_queue_flush,
	.get_parent	= vhd_get_parent,
	.validate_parent = vhd_validate_parent,
};
