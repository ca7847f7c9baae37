// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * tapdisk's VHD driver on real files, driven by a small fake core: the
 * td_treq_* services are implemented here (as vbd.c does, plus checks of
 * the driver's side of the contract), and the real event loop and tio run
 * until every treq has completed.  Results are compared with a model and
 * with libvhd's own view of the file, and vhd_check must find nothing.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "driver.h"
#include "event.h"
#include "libvhd.h"
#include "libvhd-info.h"
#include "log.h"
#include "tapdisk-control.h"
#include "tio.h"

#define MiB		(1ull << 20)
#define SPB		(VHD_BLOCK_SIZE >> VHD_SECTOR_SHIFT)	/* 4096 */
#define RUN_TIMEOUT_MS	120000

/* ---- the fake core ---- */

/* One per treq: the core's record of it. */
/* What a test wants to know about the treqs of one fc_queue() call. */
struct fc_obs {
	unsigned	treqs;
	unsigned	forwards;
	unsigned	at_parent;	/* treqs that reached a parent */
};

/* One per treq: the core's record of it. */
struct td_vreq {
	bool		done;
	bool		at_parent;	/* queue_read ran on a parent */
	unsigned	forwards;
	struct fc_obs	*obs;
	struct td_treq	*all_next;
};

struct ftreq {
	struct td_treq	t;
	struct td_vreq	v;
	uint8_t		filled[TD_TREQ_MAX_SECTORS / 8];
};

static struct {
	unsigned	outstanding;
	struct td_treq	*tio_waiters;
	struct td_treq	*all;		/* every treq since the last reap */
	struct fc_obs	*observe;	/* for the treqs fc_queue() makes */
	bool		others_io;	/* the test has I/O of its own */
	bool		timed_out;
	unsigned	tio_waits;
} fc;

static void fc_maybe_done(struct td_treq *t)
{
	if (!t->issued || t->pending)
		return;
	assert_false(t->vreq->done);
	t->vreq->done = true;
	if (t->vreq->obs) {
		t->vreq->obs->treqs++;
		t->vreq->obs->forwards += t->vreq->forwards;
		t->vreq->obs->at_parent += t->vreq->at_parent;
	}
	if (--fc.outstanding == 0)
		td_loop_stop();
}

void td_treq_get(struct td_treq *t)
{
	assert_false(t->vreq->done);
	t->pending++;
}

void td_treq_put(struct td_treq *t, int err)
{
	assert_true(t->pending > 0);
	if (err && !t->err)
		t->err = err;
	t->pending--;
	fc_maybe_done(t);
}

bool td_treq_filled(const struct td_treq *t, uint32_t i)
{
	return t->filled[i >> 3] & (0x80 >> (i & 7));
}

void td_treq_fill(struct td_treq *t, uint32_t first, uint32_t n)
{
	assert_true(first + n <= t->secs);
	for (uint32_t i = first; i < first + n; i++) {
		/* A driver must never fill a sector twice. */
		assert_false(td_treq_filled(t, i));
		t->filled[i >> 3] |= (uint8_t)(0x80 >> (i & 7));
	}
}

static void zero_unfilled(struct td_treq *t, uint32_t from)
{
	for (uint32_t i = from; i < t->secs; i++) {
		if (!td_treq_filled(t, i)) {
			memset(t->buf + ((size_t)i << 9), 0, 512);
			t->filled[i >> 3] |= (uint8_t)(0x80 >> (i & 7));
		}
	}
}

static bool all_filled(const struct td_treq *t)
{
	for (uint32_t i = 0; i < t->secs; i++)
		if (!td_treq_filled(t, i))
			return false;
	return true;
}

static void read_at_image(struct td_treq *t)
{
	struct td_image *img = t->img;

	if (t->sec + t->secs > img->sectors)
		zero_unfilled(t, t->sec >= img->sectors ? 0 :
			      (uint32_t)(img->sectors - t->sec));
	if (all_filled(t)) {
		t->issued = true;
		fc_maybe_done(t);
		return;
	}
	if (img->level > 0)
		t->vreq->at_parent = true;
	t->cursor = 0;
	t->drv_state = 0;
	img->drv->queue_read(img, t);
}

void td_treq_forward(struct td_treq *t)
{
	assert_int_equal(t->op, TD_OP_READ);
	assert_false(t->issued);
	t->vreq->forwards++;
	if (t->img->parent) {
		t->img = t->img->parent;
		read_at_image(t);
		return;
	}
	zero_unfilled(t, 0);
	t->issued = true;
	fc_maybe_done(t);
}

void td_treq_issued(struct td_treq *t)
{
	assert_int_not_equal(t->op, TD_OP_READ);
	assert_false(t->issued);
	t->issued = true;
	fc_maybe_done(t);
}

void td_treq_resume(struct td_treq *t)
{
	struct td_image *img = t->img;

	assert_false(t->vreq->done);
	switch (t->op) {
	case TD_OP_READ:
		img->drv->queue_read(img, t);
		break;
	case TD_OP_WRITE:
		img->drv->queue_write(img, t);
		break;
	case TD_OP_FLUSH:
		img->drv->queue_flush(img, t);
		break;
	}
}

void td_treq_wait_tio(struct td_treq *t)
{
	fc.tio_waits++;
	t->core_next = fc.tio_waiters;
	fc.tio_waiters = t;
}

static void fc_available(void *arg)
{
	struct td_treq *list = fc.tio_waiters, *t;

	(void)arg;
	fc.tio_waiters = NULL;
	while (list) {
		t = list;
		list = t->core_next;
		t->core_next = NULL;
		td_treq_resume(t);
	}
}

static void fc_tio_done(struct tio_req *r, int err)
{
	td_treq_put(r->arg, err);
}

int td_treq_submit(struct td_treq *t, struct tio_file *file, enum tio_op op,
		   void *buf, size_t len, uint64_t off, unsigned tio_flags)
{
	struct tio_req *r = tio_get(TIO_PRIO_DATA);

	if (!r)
		return -EAGAIN;
	r->file = file;
	r->op = op;
	r->flags = tio_flags;
	r->buf = buf;
	r->len = len;
	r->off = off;
	r->deadline_ms = t->deadline_ms;
	r->done = fc_tio_done;
	r->arg = t;
	td_treq_get(t);
	tio_submit(r);
	return 0;
}

/* Queue @op on @leaf, split as the core does; @buf stays the caller's. */
static void fc_queue(struct td_image *leaf, enum td_op op, uint64_t sec,
		     uint32_t secs, char *buf, unsigned flags)
{
	uint32_t chunk = leaf->chunk_sectors, done = 0;

	do {
		struct ftreq *f = calloc(1, sizeof(*f));
		struct td_treq *t = &f->t;
		uint64_t s = sec + done;
		uint32_t n = secs - done;

		assert_non_null(f);
		if (chunk && n > chunk - s % chunk)
			n = (uint32_t)(chunk - s % chunk);
		if (n > TD_TREQ_MAX_SECTORS)
			n = TD_TREQ_MAX_SECTORS;
		t->vreq = &f->v;
		t->img = leaf;
		t->op = op;
		t->flags = flags;
		t->sec = s;
		t->secs = n;
		t->buf = buf ? buf + ((size_t)done << 9) : NULL;
		t->filled = f->filled;
		t->deadline_ms = td_now_ms() + RUN_TIMEOUT_MS;
		f->v.obs = fc.observe;
		f->v.all_next = fc.all;
		fc.all = t;
		fc.outstanding++;
		done += n;
		switch (op) {
		case TD_OP_READ:
			read_at_image(t);
			break;
		case TD_OP_WRITE:
			leaf->drv->queue_write(leaf, t);
			break;
		case TD_OP_FLUSH:
			leaf->drv->queue_flush(leaf, t);
			break;
		}
	} while (done < secs);
}

static void fc_timeout(void *arg)
{
	(void)arg;
	fc.timed_out = true;
	td_loop_stop();
}

/* Run the loop until every queued treq is done; the number that failed. */
static int fc_run_errs(int *first_err)
{
	struct td_treq *t, *next;
	int failed = 0;

	if (fc.outstanding) {
		int id = td_loop_add_timer(RUN_TIMEOUT_MS, 0, fc_timeout, NULL);

		assert_true(id >= 0);
		assert_int_equal(td_loop_run(), 0);
		td_loop_del_timer(id);
	}
	assert_false(fc.timed_out);
	assert_int_equal(fc.outstanding, 0);
	if (first_err)
		*first_err = 0;
	for (t = fc.all; t; t = next) {
		next = t->vreq->all_next;
		assert_true(t->vreq->done);
		if (t->err) {
			if (first_err && !*first_err)
				*first_err = t->err;
			failed++;
		}
		free((struct ftreq *)((char *)t - offsetof(struct ftreq, t)));
	}
	fc.all = NULL;
	return failed;
}

static void fc_run(void)
{
	int err;

	assert_int_equal(fc_run_errs(&err), 0);
}

/* ---- images ---- */

static struct td_image *img_open(const char *path, unsigned flags, int *errp)
{
	struct td_image *img = calloc(1, sizeof(*img));
	int err;

	assert_non_null(img);
	img->drv = &td_drv_vhd;
	img->priv = calloc(1, td_drv_vhd.priv_size);
	img->path = strdup(path);
	img->params = malloc(strlen(path) + 5);
	img->flags = flags;
	assert_non_null(img->priv);
	assert_non_null(img->path);
	assert_non_null(img->params);
	sprintf(img->params, "vhd:%s", path);
	err = td_drv_vhd.open(img, path, flags);
	if (errp)
		*errp = err;
	if (err) {
		free(img->priv);
		free(img->path);
		free(img->params);
		free(img);
		return NULL;
	}
	return img;
}

static struct td_image *img_must_open(const char *path, unsigned flags)
{
	int err;
	struct td_image *img = img_open(path, flags, &err);

	if (!img)
		fail_msg("open %s: %d %s", path, err, td_errmsg());
	return img;
}

static void img_close(struct td_image *img)
{
	struct tio_stats st;

	/* Every treq is done: the driver must have nothing of its own left. */
	tio_get_stats(&st);
	if (!fc.others_io)
		assert_int_equal(st.inflight, 0);
	img->drv->close(img);
	free(img->priv);
	free(img->path);
	free(img->params);
	free(img);
}

/* ---- fixture ---- */

struct fixture {
	char	dir[256];
	char	path[4][300];
};

static int setup_pool(void **state, unsigned nr_tio)
{
	struct fixture *f = calloc(1, sizeof(*f));
	const char *tmp = getenv("TMPDIR");

	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "%s/test-drv-vhd.XXXXXX",
		 tmp && *tmp ? tmp : "/var/tmp");
	if (!mkdtemp(f->dir)) {
		free(f);
		return -1;
	}
	for (int i = 0; i < 4; i++) {
		char dir[sizeof(f->dir)];

		memcpy(dir, f->dir, sizeof(dir));
		snprintf(f->path[i], sizeof(f->path[i]), "%s/img%d.vhd", dir, i);
	}
	memset(&fc, 0, sizeof(fc));
	if (td_loop_init() || tio_init(nr_tio)) {
		fprintf(stderr, "setup: %s\n", td_errmsg());
		return -1;
	}
	tio_set_available(fc_available, NULL);
	*state = f;
	return 0;
}

static int setup(void **state)
{
	return setup_pool(state, 512);
}

/* Few entries: most requests have to wait for one. */
static int setup_small(void **state)
{
	return setup_pool(state, TIO_RESERVED + 8);
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	tio_fini();
	td_loop_fini();
	for (int i = 0; i < 4; i++)
		unlink(f->path[i]);
	rmdir(f->dir);
	free(f);
	return 0;
}

/* ---- helpers ---- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static char *abuf(size_t len)
{
	void *p = NULL;

	assert_int_equal(posix_memalign(&p, 4096, len ? len : 512), 0);
	return p;
}

/* Every byte depends on the sector and @seed. */
static void pattern(char *buf, uint64_t sec, uint32_t count, uint32_t seed)
{
	for (uint32_t i = 0; i < count; i++)
		for (uint32_t b = 0; b < 512; b += 4) {
			uint32_t v = (uint32_t)(sec + i) * 2654435761u ^ seed ^ b;

			memcpy(buf + (size_t)i * 512 + b, &v, 4);
		}
}

static void report_problem(void *arg, const char *msg)
{
	(void)arg;
	fprintf(stderr, "vhd_check: %s\n", msg);
}

/* libvhd's check finds nothing, and so does vhd-util when we have it. */
static void assert_clean(const char *path)
{
	struct vhd_check_opts o = { .check_bitmaps = true };
	const char *util = getenv("VHD_UTIL");

	assert_int_equal(vhd_check(path, &o, report_problem, NULL), 0);
	if (util && *util) {
		char cmd[1024];

		snprintf(cmd, sizeof(cmd), "%s check -n '%s' >&2", util, path);
		assert_int_equal(system(cmd), 0);
	}
}

/* libvhd reads the same as @model (through the chain for a child). */
static void assert_libvhd_reads(const char *path, const char *model,
				uint64_t sectors)
{
	vhd_chain_t chain;
	char *buf = abuf(sectors << 9);

	assert_int_equal(vhd_chain_open(&chain, path, VHD_OPEN_RDONLY), 0);
	assert_int_equal(vhd_chain_read(&chain, buf, 0, (uint32_t)sectors), 0);
	vhd_chain_close(&chain);
	assert_memory_equal(buf, model, sectors << 9);
	free(buf);
}

/* The driver reads the whole disk as @model, in @chunk-sector reads. */
static void assert_driver_reads(struct td_image *leaf, const char *model,
				uint64_t sectors, uint32_t chunk)
{
	char *buf = abuf(sectors << 9);

	memset(buf, 0xAA, sectors << 9);
	for (uint64_t s = 0; s < sectors; s += chunk) {
		uint32_t n = sectors - s < chunk ? (uint32_t)(sectors - s) : chunk;

		fc_queue(leaf, TD_OP_READ, s, n, buf + (s << 9), 0);
	}
	fc_run();
	assert_memory_equal(buf, model, sectors << 9);
	free(buf);
}

/*
 * Move the footer of @path @bytes further out.  The driver then allocates
 * below the end of the file, where anything may lie, as after a crash:
 * zero bitmaps and exact bits, and no footer moves.  (Past the end, in a
 * non-differencing image, it allocates full blocks.)
 */
static void make_room(const char *path, uint64_t bytes)
{
	vhd_context_t ctx;

	assert_int_equal(vhd_open(&ctx, path, VHD_OPEN_RDWR), 0);
	assert_int_equal(vhd_set_phys_size(&ctx, ctx.footer_offset +
					   VHD_SECTOR_SIZE + bytes), 0);
	vhd_close(&ctx);
}

static uint64_t tio_submitted(void)
{
	struct tio_stats st;

	tio_get_stats(&st);
	return st.submitted;
}

static uint32_t allocated_blocks(const char *path)
{
	vhd_context_t ctx;
	uint32_t n = 0;

	assert_int_equal(vhd_open(&ctx, path, VHD_OPEN_RDONLY), 0);
	for (uint32_t i = 0; i < ctx.header.max_bat_size; i++)
		if (ctx.bat[i] != VHD_BAT_UNUSED)
			n++;
	vhd_close(&ctx);
	return n;
}

/*
 * Rounds of random non-overlapping writes (some FUA, some with a flush
 * among them) of 1 to 4096 sectors, applied to @model as well.
 */
static void random_writes(struct td_image *leaf, char *model, uint64_t sectors,
			  int rounds, int per_round)
{
	for (int r = 0; r < rounds; r++) {
		uint8_t *used = calloc(1, sectors / 8 + 1);
		char *bufs[64];
		int n = 0;

		assert_non_null(used);
		assert_true(per_round <= 64);
		for (int w = 0; w < per_round; w++) {
			uint32_t len = (uint32_t)(rnd() % 4 == 0 ? rnd() % 4096 :
						  rnd() % 64) + 1;
			uint64_t sec = rnd() % (sectors - len + 1);
			bool clash = false;

			for (uint32_t i = 0; i < len && !clash; i++)
				clash = used[(sec + i) >> 3] &
					(0x80 >> ((sec + i) & 7));
			if (clash)
				continue;
			for (uint32_t i = 0; i < len; i++)
				used[(sec + i) >> 3] |= (uint8_t)(0x80 >> ((sec + i) & 7));
			bufs[n] = abuf((size_t)len << 9);
			pattern(bufs[n], sec, len, (uint32_t)rnd());
			memcpy(model + (sec << 9), bufs[n], (size_t)len << 9);
			fc_queue(leaf, TD_OP_WRITE, sec, len, bufs[n],
				 rnd() % 8 == 0 ? TD_TREQ_FUA : 0);
			n++;
			if (rnd() % 16 == 0)
				fc_queue(leaf, TD_OP_FLUSH, 0, 0, NULL, 0);
		}
		fc_run();
		for (int i = 0; i < n; i++)
			free(bufs[i]);
		free(used);
	}
}

/* ---- tests ---- */

static void test_dynamic_random(void **state)
{
	struct fixture *f = *state;
	uint64_t sectors = 64 * MiB >> 9;
	char *model = calloc(1, sectors << 9);
	struct td_image *img;

	assert_non_null(model);
	assert_int_equal(vhd_create(f->path[0], 64 * MiB, 0, 0), 0);
	img = img_must_open(f->path[0], 0);
	assert_int_equal(img->sectors, sectors);
	assert_int_equal(img->chunk_sectors, SPB);

	random_writes(img, model, sectors, 12, 48);
	assert_driver_reads(img, model, sectors, 2048);
	/* Reads of odd sizes that cross blocks. */
	assert_driver_reads(img, model, sectors, 3001);
	img_close(img);

	assert_libvhd_reads(f->path[0], model, sectors);
	assert_clean(f->path[0]);

	/* Again after a reopen, with a cold cache. */
	img = img_must_open(f->path[0], 0);
	assert_driver_reads(img, model, sectors, 777);
	random_writes(img, model, sectors, 4, 32);
	img_close(img);
	assert_libvhd_reads(f->path[0], model, sectors);
	assert_clean(f->path[0]);
	free(model);
}

static void test_same_new_block(void **state)
{
	struct fixture *f = *state;
	uint64_t sectors = 16 * MiB >> 9;
	char *model = calloc(1, sectors << 9);
	char *bufs[8];
	struct td_image *img;
	struct stat st;

	assert_non_null(model);
	assert_int_equal(vhd_create(f->path[0], 16 * MiB, 0, 0), 0);
	img = img_must_open(f->path[0], 0);
	/* Eight writes to block 3, all queued before anything runs. */
	for (int i = 0; i < 8; i++) {
		uint64_t sec = 3 * SPB + (uint64_t)i * 500 + 7;

		bufs[i] = abuf(300 << 9);
		pattern(bufs[i], sec, 300, (uint32_t)i);
		memcpy(model + (sec << 9), bufs[i], 300 << 9);
		fc_queue(img, TD_OP_WRITE, sec, 300, bufs[i],
			 i == 5 ? TD_TREQ_FUA : 0);
	}
	fc_run();
	assert_driver_reads(img, model, sectors, 4096);
	img_close(img);
	for (int i = 0; i < 8; i++)
		free(bufs[i]);

	assert_int_equal(allocated_blocks(f->path[0]), 1);
	/* One block: the file grew by one bitmap, one block and alignment. */
	assert_int_equal(stat(f->path[0], &st), 0);
	assert_true((uint64_t)st.st_size < 2 * MiB + 64 * 1024);
	assert_libvhd_reads(f->path[0], model, sectors);
	assert_clean(f->path[0]);
	free(model);
}

static void test_many_new_blocks(void **state)
{
	struct fixture *f = *state;
	uint64_t sectors = 256 * MiB >> 9;
	char *model = calloc(1, sectors << 9);
	char *buf = abuf(128 * 64 << 9);
	struct td_image *img;

	assert_non_null(model);
	assert_int_equal(vhd_create(f->path[0], 256 * MiB, 0, 0), 0);
	img = img_must_open(f->path[0], 0);
	/*
	 * 128 blocks at once, more than there are allocation slots, two
	 * writes each, neighbours sharing BAT sectors.
	 */
	for (int b = 0; b < 128; b++) {
		for (int k = 0; k < 2; k++) {
			uint64_t sec = (uint64_t)b * SPB + (uint64_t)k * 1000;
			char *p = buf + ((size_t)(b * 2 + k) * 32 << 9);

			pattern(p, sec, 32, (uint32_t)b);
			memcpy(model + (sec << 9), p, 32 << 9);
			fc_queue(img, TD_OP_WRITE, sec, 32, p, 0);
		}
	}
	fc_run();
	assert_driver_reads(img, model, sectors, 8192);
	img_close(img);
	assert_int_equal(allocated_blocks(f->path[0]), 128);
	assert_libvhd_reads(f->path[0], model, sectors);
	assert_clean(f->path[0]);
	free(buf);
	free(model);
}

static void test_batmap_and_cache(void **state)
{
	struct fixture *f = *state;
	uint64_t sectors = 32 * MiB >> 9;
	char *model = calloc(1, sectors << 9);
	char *buf = abuf(SPB << 9), *rbuf = abuf(SPB << 9);
	struct td_image *img;
	vhd_context_t ctx;
	uint64_t before;

	assert_non_null(model);
	assert_int_equal(vhd_create(f->path[0], 32 * MiB, 0, 0), 0);
	make_room(f->path[0], 64 * MiB);
	img = img_must_open(f->path[0], 0);
	/* Block 2 in two halves, block 5 in four quarters, concurrently. */
	pattern(buf, 2 * SPB, SPB, 1);
	memcpy(model + (2 * SPB << 9), buf, SPB << 9);
	fc_queue(img, TD_OP_WRITE, 2 * SPB, SPB / 2, buf, 0);
	fc_queue(img, TD_OP_WRITE, 2 * SPB + SPB / 2, SPB / 2,
		 buf + (SPB / 2 << 9), 0);
	fc_run();
	pattern(buf, 5 * SPB, SPB, 2);
	memcpy(model + (5 * SPB << 9), buf, SPB << 9);
	for (int q = 0; q < 4; q++)
		fc_queue(img, TD_OP_WRITE, 5 * SPB + q * (SPB / 4), SPB / 4,
			 buf + ((size_t)q * (SPB / 4) << 9), q == 3 ? TD_TREQ_FUA : 0);
	fc_run();
	/* Block 7: only a few sectors. */
	pattern(buf, 7 * SPB + 100, 50, 3);
	memcpy(model + ((7 * SPB + 100) << 9), buf, 50 << 9);
	fc_queue(img, TD_OP_WRITE, 7 * SPB + 100, 50, buf, 0);
	fc_run();
	img_close(img);

	assert_int_equal(vhd_open(&ctx, f->path[0], VHD_OPEN_RDONLY), 0);
	assert_true(ctx.has_batmap);
	assert_true(vhd_batmap_test(&ctx, 2));
	assert_true(vhd_batmap_test(&ctx, 5));
	assert_false(vhd_batmap_test(&ctx, 7));
	vhd_close(&ctx);
	assert_clean(f->path[0]);

	/* Reads of full blocks: only the data, never the bitmap. */
	img = img_must_open(f->path[0], TD_IMAGE_RDONLY);
	before = tio_submitted();
	fc_queue(img, TD_OP_READ, 2 * SPB, SPB, rbuf, 0);
	fc_run();
	assert_int_equal(tio_submitted() - before, 1);
	assert_memory_equal(rbuf, model + (2 * SPB << 9), SPB << 9);

	/* A partial block: bitmap and data, then from the cache only data. */
	before = tio_submitted();
	fc_queue(img, TD_OP_READ, 7 * SPB, SPB, rbuf, 0);
	fc_run();
	assert_int_equal(tio_submitted() - before, 2);
	assert_memory_equal(rbuf, model + (7 * SPB << 9), SPB << 9);
	before = tio_submitted();
	fc_queue(img, TD_OP_READ, 7 * SPB, SPB, rbuf, 0);
	fc_run();
	assert_int_equal(tio_submitted() - before, 1);
	assert_memory_equal(rbuf, model + (7 * SPB << 9), SPB << 9);

	/* An unallocated block costs no I/O at all. */
	before = tio_submitted();
	fc_queue(img, TD_OP_READ, 9 * SPB, SPB, rbuf, 0);
	fc_run();
	assert_int_equal(tio_submitted() - before, 0);
	img_close(img);

	/* Rewriting part of a full block writes no bitmap. */
	img = img_must_open(f->path[0], 0);
	before = tio_submitted();
	pattern(buf, 2 * SPB + 10, 10, 4);
	memcpy(model + ((2 * SPB + 10) << 9), buf, 10 << 9);
	fc_queue(img, TD_OP_WRITE, 2 * SPB + 10, 10, buf, 0);
	fc_run();
	assert_int_equal(tio_submitted() - before, 1);
	img_close(img);
	assert_libvhd_reads(f->path[0], model, sectors);
	assert_clean(f->path[0]);
	free(buf);
	free(rbuf);
	free(model);
}

/* FUA: what makes the write visible is stable too, and no more than that. */
static void test_fua(void **state)
{
	struct fixture *f = *state;
	char *buf = abuf(8 << 9);
	struct td_image *img;
	uint64_t before;

	assert_int_equal(vhd_create(f->path[0], 16 * MiB, 0, 0), 0);
	make_room(f->path[0], 32 * MiB);
	img = img_must_open(f->path[0], 0);
	pattern(buf, 0, 8, 1);
	fc_queue(img, TD_OP_WRITE, 0, 8, buf, 0);
	fc_run();
	/* Its bits are down but not yet stable: data, then an fdatasync. */
	before = tio_submitted();
	fc_queue(img, TD_OP_WRITE, 0, 8, buf, TD_TREQ_FUA);
	fc_run();
	assert_int_equal(tio_submitted() - before, 2);
	/* Now they are: the data alone. */
	before = tio_submitted();
	fc_queue(img, TD_OP_WRITE, 0, 8, buf, TD_TREQ_FUA);
	fc_run();
	assert_int_equal(tio_submitted() - before, 1);
	/* Another bitmap write, then a flush covers it. */
	fc_queue(img, TD_OP_WRITE, 100, 8, buf, 0);
	fc_run();
	fc_queue(img, TD_OP_FLUSH, 0, 0, NULL, 0);
	fc_run();
	before = tio_submitted();
	fc_queue(img, TD_OP_WRITE, 0, 8, buf, TD_TREQ_FUA);
	fc_run();
	assert_int_equal(tio_submitted() - before, 1);
	/*
	 * A new block below the end of the file: zero bitmap, fdatasync,
	 * BAT, data (FUA), bitmap (FUA), and an fdatasync for the BAT sector.
	 */
	before = tio_submitted();
	fc_queue(img, TD_OP_WRITE, 3 * SPB, 8, buf, TD_TREQ_FUA);
	fc_run();
	assert_int_equal(tio_submitted() - before, 6);
	img_close(img);
	assert_clean(f->path[0]);

	/*
	 * A fresh image: the first new block moves the footer past several
	 * blocks (footer, fdatasync), then its all-ones bitmap, BAT, data
	 * (FUA), and an fdatasync for bitmap and BAT.
	 */
	assert_int_equal(vhd_create(f->path[1], 16 * MiB, 0, 0), 0);
	img = img_must_open(f->path[1], 0);
	before = tio_submitted();
	fc_queue(img, TD_OP_WRITE, 2 * SPB, 8, buf, TD_TREQ_FUA);
	fc_run();
	assert_int_equal(tio_submitted() - before, 6);
	/* The next one is in the space reserved: no footer, no bitmap later. */
	before = tio_submitted();
	fc_queue(img, TD_OP_WRITE, 5 * SPB, 8, buf, TD_TREQ_FUA);
	fc_run();
	assert_int_equal(tio_submitted() - before, 4);
	before = tio_submitted();
	fc_queue(img, TD_OP_WRITE, 5 * SPB + 100, 8, buf, TD_TREQ_FUA);
	fc_run();
	assert_int_equal(tio_submitted() - before, 1);
	img_close(img);
	assert_clean(f->path[1]);
	free(buf);
}

static void test_fixed(void **state)
{
	struct fixture *f = *state;
	uint64_t sectors = 8 * MiB >> 9;
	char *model = calloc(1, sectors << 9);
	struct td_image *img;

	assert_non_null(model);
	assert_int_equal(vhd_create(f->path[0], 8 * MiB, 0, VHD_CREATE_FIXED), 0);
	img = img_must_open(f->path[0], 0);
	assert_int_equal(img->sectors, sectors);
	assert_int_equal(img->chunk_sectors, 0);
	random_writes(img, model, sectors, 6, 32);
	assert_driver_reads(img, model, sectors, 999);
	img_close(img);
	assert_libvhd_reads(f->path[0], model, sectors);
	assert_clean(f->path[0]);
	free(model);
}

static void test_differencing(void **state)
{
	struct fixture *f = *state;
	uint64_t sectors = 32 * MiB >> 9;
	char *model = calloc(1, sectors << 9);
	char *buf = abuf(SPB << 9);
	struct td_image *leaf, *parent;
	struct td_parent par = { { 0 }, NULL };
	char real[4096];
	vhd_context_t ctx;
	struct fc_obs obs;
	uint64_t before;

	assert_non_null(model);
	/* The parent: block 0 full, parts of blocks 1 and 3. */
	assert_int_equal(vhd_create(f->path[0], 32 * MiB, 0, 0), 0);
	assert_int_equal(vhd_open(&ctx, f->path[0], VHD_OPEN_RDWR), 0);
	pattern(buf, 0, SPB, 10);
	assert_int_equal(vhd_io_write(&ctx, buf, 0, SPB), 0);
	memcpy(model, buf, SPB << 9);
	pattern(buf, SPB + 64, 512, 11);
	assert_int_equal(vhd_io_write(&ctx, buf, SPB + 64, 512), 0);
	memcpy(model + ((SPB + 64) << 9), buf, 512 << 9);
	pattern(buf, 3 * SPB, 8, 12);
	assert_int_equal(vhd_io_write(&ctx, buf, 3 * SPB, 8), 0);
	memcpy(model + (3 * SPB << 9), buf, 8 << 9);
	vhd_close(&ctx);
	assert_int_equal(vhd_snapshot(f->path[1], 0, f->path[0], 0, 0), 0);

	leaf = img_must_open(f->path[1], 0);
	assert_int_equal(td_drv_vhd.get_parent(leaf, &par), 0);
	assert_string_equal(par.type, "vhd");
	assert_non_null(realpath(f->path[0], real));
	assert_string_equal(par.path, real);
	parent = img_must_open(par.path, TD_IMAGE_RDONLY);
	free(par.path);
	parent->level = 1;
	leaf->parent = parent;
	assert_int_equal(td_drv_vhd.validate_parent(leaf, parent), 0);
	/* The parent itself has none. */
	assert_int_equal(td_drv_vhd.get_parent(parent, &par), -ENOENT);

	/* Before any write everything comes from the parent. */
	assert_driver_reads(leaf, model, sectors, 2048);

	/* Child writes over parent data, partly, and elsewhere. */
	pattern(buf, 100, 200, 20);
	memcpy(model + (100 << 9), buf, 200 << 9);
	fc_queue(leaf, TD_OP_WRITE, 100, 200, buf, 0);
	fc_run();
	pattern(buf, SPB + 500, 100, 21);
	memcpy(model + ((SPB + 500) << 9), buf, 100 << 9);
	fc_queue(leaf, TD_OP_WRITE, SPB + 500, 100, buf, 0);
	fc_run();
	pattern(buf, 6 * SPB, SPB, 22);
	memcpy(model + (6 * SPB << 9), buf, SPB << 9);
	fc_queue(leaf, TD_OP_WRITE, 6 * SPB, SPB, buf, 0);
	fc_run();
	assert_driver_reads(leaf, model, sectors, 1024);
	assert_driver_reads(leaf, model, sectors, 333);

	/* A read the child holds entirely never reaches the parent... */
	memset(&obs, 0, sizeof(obs));
	fc.observe = &obs;
	fc_queue(leaf, TD_OP_READ, 120, 100, buf, 0);
	fc_run();
	assert_int_equal(obs.treqs, 1);
	assert_int_equal(obs.forwards, 1);
	assert_int_equal(obs.at_parent, 0);
	/* ... one it lacks entirely is forwarded whole... */
	memset(&obs, 0, sizeof(obs));
	fc_queue(leaf, TD_OP_READ, SPB + 64, 400, buf, 0);
	fc_run();
	assert_int_equal(obs.at_parent, 1);
	assert_memory_equal(buf, model + ((SPB + 64) << 9), 400 << 9);
	/* ... and a block the parent lacks too reads as zeros. */
	memset(&obs, 0, sizeof(obs));
	before = tio_submitted();
	fc_queue(leaf, TD_OP_READ, 10 * SPB, 64, buf, 0);
	fc_run();
	fc.observe = NULL;
	assert_int_equal(obs.forwards, 2);
	assert_int_equal(tio_submitted() - before, 0);
	assert_memory_equal(buf, model + (10 * SPB << 9), 64 << 9);

	img_close(leaf);
	img_close(parent);
	assert_libvhd_reads(f->path[1], model, sectors);
	assert_clean(f->path[1]);
	free(buf);
	free(model);
}

static void test_parents(void **state)
{
	static const struct td_driver fake_aio = { .name = "aio" };
	struct fixture *f = *state;
	struct td_parent par = { { 0 }, NULL };
	struct td_image *leaf, *other, raw = { .drv = &fake_aio };
	char real[4096], *buf = abuf(MiB);
	int fd, err;

	/* A child whose parent was replaced by another image. */
	assert_int_equal(vhd_create(f->path[0], 16 * MiB, 0, 0), 0);
	assert_int_equal(vhd_snapshot(f->path[1], 0, f->path[0], 0, 0), 0);
	assert_int_equal(vhd_create(f->path[2], 16 * MiB, 0, 0), 0);
	leaf = img_must_open(f->path[1], 0);
	other = img_must_open(f->path[2], TD_IMAGE_RDONLY);
	assert_int_equal(td_drv_vhd.validate_parent(leaf, other), -EINVAL);
	assert_non_null(strstr(td_errmsg(), f->path[1]));
	assert_non_null(strstr(td_errmsg(), f->path[2]));
	assert_null(strchr(td_errmsg(), '\n'));
	/* Nor is a raw file what it expects. */
	raw.path = f->path[3];
	assert_int_equal(td_drv_vhd.validate_parent(leaf, &raw), -EINVAL);
	img_close(other);
	img_close(leaf);

	/* A child of a raw file: its parent is an "aio" image. */
	fd = open(f->path[3], O_CREAT | O_TRUNC | O_WRONLY, 0644);
	assert_true(fd >= 0);
	memset(buf, 0x5A, MiB);
	for (int i = 0; i < 8; i++)
		assert_int_equal(write(fd, buf, MiB), (ssize_t)MiB);
	close(fd);
	unlink(f->path[1]);
	assert_int_equal(vhd_snapshot(f->path[1], 0, f->path[3], 0,
				      VHD_CREATE_PARENT_RAW), 0);
	leaf = img_must_open(f->path[1], 0);
	assert_int_equal(td_drv_vhd.get_parent(leaf, &par), 0);
	assert_string_equal(par.type, "aio");
	assert_non_null(realpath(f->path[3], real));
	assert_string_equal(par.path, real);
	free(par.path);
	par.path = NULL;
	assert_int_equal(td_drv_vhd.validate_parent(leaf, &raw), 0);
	img_close(leaf);

	/* A fixed image has no parent either. */
	unlink(f->path[2]);
	assert_int_equal(vhd_create(f->path[2], 4 * MiB, 0, VHD_CREATE_FIXED), 0);
	leaf = img_must_open(f->path[2], TD_IMAGE_RDONLY);
	assert_int_equal(td_drv_vhd.get_parent(leaf, &par), -ENOENT);
	img_close(leaf);

	/* A parent that has gone: one line naming it. */
	unlink(f->path[3]);
	leaf = img_must_open(f->path[1], 0);
	/* An error, not -ENOENT, which would mean "no parent". */
	err = td_drv_vhd.get_parent(leaf, &par);
	assert_true(err < 0);
	assert_int_not_equal(err, -ENOENT);
	assert_null(par.path);
	assert_non_null(strstr(td_errmsg(), "img3.vhd"));
	img_close(leaf);
	free(buf);
}

static void assert_open_fails(const char *path, int err, const char *what)
{
	struct td_image *img = img_open(path, TD_IMAGE_RDONLY, NULL);
	int e;

	assert_null(img);
	img = img_open(path, 0, &e);
	assert_null(img);
	if (err)
		assert_int_equal(e, err);
	else
		assert_true(e < 0);
	assert_non_null(strstr(td_errmsg(), path));
	assert_null(strchr(td_errmsg(), '\n'));
	if (what)
		assert_non_null(strstr(td_errmsg(), what));
}

static void test_open_errors(void **state)
{
	struct fixture *f = *state;
	char *buf = abuf(64 * 1024);
	uint8_t sec[512];
	struct stat st;
	int fd;

	assert_open_fails(f->path[0], -ENOENT, NULL);

	/* Not a VHD at all. */
	fd = open(f->path[1], O_CREAT | O_TRUNC | O_WRONLY, 0644);
	assert_true(fd >= 0);
	pattern(buf, 0, 128, 7);
	assert_int_equal(write(fd, buf, 64 * 1024), 64 * 1024);
	close(fd);
	assert_open_fails(f->path[1], -EINVAL, NULL);

	/* Empty. */
	fd = open(f->path[2], O_CREAT | O_TRUNC | O_WRONLY, 0644);
	assert_true(fd >= 0);
	close(fd);
	assert_open_fails(f->path[2], -EINVAL, "too small");

	/* A damaged footer at the end (the copy at 0 is fine). */
	assert_int_equal(vhd_create(f->path[3], 16 * MiB, 0, 0), 0);
	assert_int_equal(stat(f->path[3], &st), 0);
	fd = open(f->path[3], O_RDWR);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, sec, 512, st.st_size - 512), 512);
	sec[70] ^= 0xFF;
	assert_int_equal(pwrite(fd, sec, 512, st.st_size - 512), 512);
	close(fd);
	assert_open_fails(f->path[3], -EINVAL, "repair");
	free(buf);
}

static void test_readonly(void **state)
{
	struct fixture *f = *state;
	char *buf = abuf(4096);
	struct td_image *img;
	int err;

	assert_int_equal(vhd_create(f->path[0], 16 * MiB, 0, 0), 0);
	img = img_must_open(f->path[0], TD_IMAGE_RDONLY);
	memset(buf, 1, 4096);
	fc_queue(img, TD_OP_WRITE, 0, 8, buf, 0);
	assert_int_equal(fc_run_errs(&err), 1);
	assert_int_equal(err, -EROFS);
	img_close(img);
	assert_int_equal(allocated_blocks(f->path[0]), 0);
	free(buf);
}

/*
 * With 8 data and 64 metadata tio entries, 300 concurrent writes to new
 * blocks (more than the allocation slots), then to cold blocks (more than
 * the bitmap cache holds) mixed with reads: everything has to wait and be
 * resumed, and the result must still be exact.
 */
static void test_pressure(void **state)
{
	struct fixture *f = *state;
	enum { NB = 300, W = 8, R = 32 };
	char *wbuf = abuf((size_t)NB * 2 * W << 9);
	char *rbuf = abuf((size_t)NB * R << 9), *expect = abuf(R << 9);
	struct td_image *img;
	vhd_context_t ctx;

	assert_int_equal(vhd_create(f->path[0], 1024 * MiB, 0, 0), 0);
	img = img_must_open(f->path[0], 0);
	for (int b = 0; b < NB; b++) {
		uint64_t sec = (uint64_t)b * SPB + (uint64_t)(b * 37 % 2000) + 4;
		char *p = wbuf + ((size_t)b * 2 * W << 9);

		pattern(p, sec, W, 100);
		fc_queue(img, TD_OP_WRITE, sec, W, p, b % 50 == 0 ? TD_TREQ_FUA : 0);
	}
	fc_run();
	img_close(img);

	img = img_must_open(f->path[0], 0);
	fc.tio_waits = 0;
	for (int b = 0; b < NB; b++) {
		uint64_t base = (uint64_t)b * SPB + (uint64_t)(b * 37 % 2000);
		char *p = wbuf + ((size_t)(b * 2 + 1) * W << 9);

		pattern(p, base + 20, W, 200);
		fc_queue(img, TD_OP_WRITE, base + 20, W, p, 0);
		/* The first write's sectors, while the second goes on. */
		fc_queue(img, TD_OP_READ, base + 4, W, rbuf + ((size_t)b * R << 9), 0);
	}
	fc_run();
	assert_true(fc.tio_waits > 0);
	for (int b = 0; b < NB; b++)
		assert_memory_equal(rbuf + ((size_t)b * R << 9),
				    wbuf + ((size_t)b * 2 * W << 9), W << 9);
	memset(rbuf, 0xAA, (size_t)NB * R << 9);
	for (int b = 0; b < NB; b++) {
		uint64_t base = (uint64_t)b * SPB + (uint64_t)(b * 37 % 2000);

		fc_queue(img, TD_OP_READ, base, R, rbuf + ((size_t)b * R << 9), 0);
	}
	fc_run();
	img_close(img);

	assert_int_equal(allocated_blocks(f->path[0]), NB);
	assert_clean(f->path[0]);
	assert_int_equal(vhd_open(&ctx, f->path[0], VHD_OPEN_RDONLY), 0);
	for (int b = 0; b < NB; b++) {
		uint64_t base = (uint64_t)b * SPB + (uint64_t)(b * 37 % 2000);
		char *got = rbuf + ((size_t)b * R << 9);

		memset(expect, 0, R << 9);
		memcpy(expect + (4 << 9), wbuf + ((size_t)b * 2 * W << 9), W << 9);
		memcpy(expect + (20 << 9), wbuf + ((size_t)(b * 2 + 1) * W << 9),
		       W << 9);
		assert_memory_equal(got, expect, R << 9);
		assert_int_equal(vhd_io_read(&ctx, got, base, R, NULL), 0);
		assert_memory_equal(got, expect, R << 9);
	}
	vhd_close(&ctx);
	free(wbuf);
	free(rbuf);
	free(expect);
}

/* Failed I/O fails the treq, leaves the image clean, and nothing sticks. */
static void test_faults(void **state)
{
	struct fixture *f = *state;
	uint64_t sectors = 16 * MiB >> 9;
	char *model = calloc(1, sectors << 9);
	char *buf = abuf(64 << 9), *rbuf = abuf(SPB << 9);
	struct td_image *img;
	int err;

	assert_non_null(model);
	assert_int_equal(vhd_create(f->path[0], 16 * MiB, 0, 0), 0);
	make_room(f->path[0], 32 * MiB);
	img = img_must_open(f->path[0], 0);

	/* The bitmap write of an allocation fails. */
	pattern(buf, SPB + 8, 64, 1);
	tio_inject_fault(1, EIO, TD_FAULT_WRITE);
	fc_queue(img, TD_OP_WRITE, SPB + 8, 64, buf, 0);
	fc_queue(img, TD_OP_WRITE, SPB + 100, 8, buf, 0);
	assert_int_equal(fc_run_errs(&err), 2);
	assert_int_equal(err, -EIO);
	fc_queue(img, TD_OP_WRITE, SPB + 8, 64, buf, 0);
	fc_run();
	memcpy(model + ((SPB + 8) << 9), buf, 64 << 9);

	/* The fdatasync of an allocation fails. */
	pattern(buf, 2 * SPB, 64, 2);
	tio_inject_fault(1, EIO, TD_FAULT_FLUSH);
	fc_queue(img, TD_OP_WRITE, 2 * SPB, 64, buf, 0);
	assert_int_equal(fc_run_errs(&err), 1);
	assert_int_equal(err, -EIO);
	fc_queue(img, TD_OP_WRITE, 2 * SPB, 64, buf, TD_TREQ_FUA);
	fc_run();
	memcpy(model + (2 * SPB << 9), buf, 64 << 9);

	/* The data write to an allocated block fails. */
	pattern(buf, SPB + 200, 64, 3);
	tio_inject_fault(1, EIO, TD_FAULT_WRITE);
	fc_queue(img, TD_OP_WRITE, SPB + 200, 64, buf, 0);
	assert_int_equal(fc_run_errs(&err), 1);
	assert_int_equal(err, -EIO);

	/* A flush fails. */
	tio_inject_fault(1, EIO, TD_FAULT_FLUSH);
	fc_queue(img, TD_OP_FLUSH, 0, 0, NULL, 0);
	assert_int_equal(fc_run_errs(&err), 1);
	assert_int_equal(err, -EIO);
	img_close(img);

	/* The bitmap read of a cold block fails; a second try works. */
	img = img_must_open(f->path[0], TD_IMAGE_RDONLY);
	tio_inject_fault(1, EIO, TD_FAULT_READ);
	fc_queue(img, TD_OP_READ, SPB, SPB, rbuf, 0);
	fc_queue(img, TD_OP_READ, SPB + 10, 100, rbuf, 0);
	assert_int_equal(fc_run_errs(&err), 2);
	assert_int_equal(err, -EIO);
	fc_queue(img, TD_OP_READ, SPB, SPB, rbuf, 0);
	fc_run();
	assert_memory_equal(rbuf, model + (SPB << 9), SPB << 9);
	img_close(img);

	assert_libvhd_reads(f->path[0], model, sectors);
	assert_clean(f->path[0]);

	/*
	 * Footer moves in a fresh image: the fdatasync of one fails, then
	 * the footer write of the next, while another allocation waits for
	 * the space; that one moves the footer itself and succeeds.
	 */
	assert_int_equal(vhd_create(f->path[1], 16 * MiB, 0, 0), 0);
	memset(model, 0, sectors << 9);
	img = img_must_open(f->path[1], 0);
	pattern(buf, SPB, 64, 5);
	tio_inject_fault(1, EIO, TD_FAULT_FLUSH);
	fc_queue(img, TD_OP_WRITE, SPB, 64, buf, 0);
	assert_int_equal(fc_run_errs(&err), 1);
	assert_int_equal(err, -EIO);
	tio_inject_fault(1, EIO, TD_FAULT_WRITE);
	fc_queue(img, TD_OP_WRITE, SPB, 64, buf, 0);
	fc_queue(img, TD_OP_WRITE, 3 * SPB, 64, buf, 0);
	assert_int_equal(fc_run_errs(&err), 1);
	assert_int_equal(err, -EIO);
	memcpy(model + (3 * SPB << 9), buf, 64 << 9);
	fc_queue(img, TD_OP_WRITE, SPB, 64, buf, 0);
	fc_run();
	memcpy(model + (SPB << 9), buf, 64 << 9);
	img_close(img);
	assert_int_equal(allocated_blocks(f->path[1]), 2);
	assert_libvhd_reads(f->path[1], model, sectors);
	assert_clean(f->path[1]);
	free(buf);
	free(rbuf);
	free(model);
}

/*
 * More cold blocks written at once than the bitmap cache has entries:
 * with plenty of tio entries all of them are loading together, so the
 * rest must wait for an entry.
 */
static void test_cache_pressure(void **state)
{
	struct fixture *f = *state;
	enum { NB = 300, W = 8 };
	char *wbuf = abuf((size_t)NB * 2 * W << 9), *rbuf = abuf(W << 9);
	struct td_image *img;
	vhd_context_t ctx;

	assert_int_equal(vhd_create(f->path[0], 1024 * MiB, 0, 0), 0);
	assert_int_equal(vhd_open(&ctx, f->path[0], VHD_OPEN_RDWR), 0);
	for (int b = 0; b < NB; b++) {
		char *p = wbuf + ((size_t)b * 2 * W << 9);

		pattern(p, (uint64_t)b * SPB, W, 1);
		assert_int_equal(vhd_io_write(&ctx, p, (uint64_t)b * SPB, W), 0);
	}
	vhd_close(&ctx);

	img = img_must_open(f->path[0], 0);
	for (int b = 0; b < NB; b++) {
		char *p = wbuf + ((size_t)(b * 2 + 1) * W << 9);

		pattern(p, (uint64_t)b * SPB + W, W, 2);
		fc_queue(img, TD_OP_WRITE, (uint64_t)b * SPB + W, W, p, 0);
	}
	fc_run();
	img_close(img);
	assert_clean(f->path[0]);
	assert_int_equal(vhd_open(&ctx, f->path[0], VHD_OPEN_RDONLY), 0);
	for (int b = 0; b < NB; b++) {
		assert_int_equal(vhd_io_read(&ctx, rbuf, (uint64_t)b * SPB, W,
					     NULL), 0);
		assert_memory_equal(rbuf, wbuf + ((size_t)b * 2 * W << 9), W << 9);
		assert_int_equal(vhd_io_read(&ctx, rbuf, (uint64_t)b * SPB + W,
					     W, NULL), 0);
		assert_memory_equal(rbuf, wbuf + ((size_t)(b * 2 + 1) * W << 9),
				    W << 9);
	}
	vhd_close(&ctx);
	free(wbuf);
	free(rbuf);
}

/*
 * An image whose file goes on past its last block (space a failed
 * allocation left behind): the footer already lies beyond a new block.
 */
static void test_leaked_gap(void **state)
{
	struct fixture *f = *state;
	uint64_t sectors = 16 * MiB >> 9;
	char *model = calloc(1, sectors << 9), *buf = abuf(64 << 9);
	struct td_image *img;
	vhd_context_t ctx;
	struct stat st, st2;

	assert_non_null(model);
	assert_int_equal(vhd_create(f->path[0], 16 * MiB, 0, 0), 0);
	assert_int_equal(vhd_open(&ctx, f->path[0], VHD_OPEN_RDWR), 0);
	pattern(buf, 0, 64, 1);
	assert_int_equal(vhd_io_write(&ctx, buf, 0, 64), 0);
	memcpy(model, buf, 64 << 9);
	pattern(buf, SPB, 64, 2);
	assert_int_equal(vhd_io_write(&ctx, buf, SPB, 64), 0);
	/* Forget block 1: its space stays, unreferenced, before the footer. */
	ctx.bat[1] = VHD_BAT_UNUSED;
	assert_int_equal(vhd_write_bat(&ctx), 0);
	vhd_close(&ctx);
	assert_int_equal(stat(f->path[0], &st), 0);

	img = img_must_open(f->path[0], 0);
	pattern(buf, 5 * SPB, 64, 3);
	memcpy(model + (5 * SPB << 9), buf, 64 << 9);
	fc_queue(img, TD_OP_WRITE, 5 * SPB, 64, buf, 0);
	fc_run();
	pattern(buf, 6 * SPB, 64, 4);
	memcpy(model + (6 * SPB << 9), buf, 64 << 9);
	fc_queue(img, TD_OP_WRITE, 6 * SPB, 64, buf, 0);
	fc_run();
	assert_driver_reads(img, model, sectors, 4096);
	img_close(img);
	/* The first new block reused the gap, the second grew the file. */
	assert_int_equal(stat(f->path[0], &st2), 0);
	assert_true(st2.st_size > st.st_size);
	assert_true(st2.st_size < st.st_size + 2 * (int64_t)MiB + 8192);
	assert_libvhd_reads(f->path[0], model, sectors);
	assert_clean(f->path[0]);
	free(buf);
	free(model);
}

/* A prepare hook that arms a fault once tio has submitted N batches. */
static struct {
	int	countdown;	/* 0: idle */
	int	err;
	unsigned ops;
} arm;

static void arm_hook(void *arg)
{
	(void)arg;
	if (arm.countdown > 0 && --arm.countdown == 0)
		tio_inject_fault(1, arm.err, arm.ops);
}

static uint64_t faults_injected(void)
{
	struct tio_stats st;

	tio_get_stats(&st);
	return st.faults_injected;
}

/* Metadata writes that fail after the data went down. */
static void test_meta_write_faults(void **state)
{
	struct fixture *f = *state;
	uint64_t sectors = 16 * MiB >> 9;
	char *model = calloc(1, sectors << 9), *buf = abuf(SPB << 9);
	struct td_image *img;
	vhd_context_t ctx;
	uint64_t before;
	int err;

	assert_non_null(model);
	assert_int_equal(td_loop_add_prepare(arm_hook, NULL), 0);
	assert_int_equal(vhd_create(f->path[0], 16 * MiB, 0, 0), 0);
	make_room(f->path[0], 32 * MiB);
	img = img_must_open(f->path[0], 0);
	pattern(buf, 0, 8, 1);
	memcpy(model, buf, 8 << 9);
	fc_queue(img, TD_OP_WRITE, 0, 8, buf, 0);
	fc_run();

	/*
	 * Block 0 is allocated and its bitmap cached: the first batch is the
	 * data write, the second the bitmap write, which fails.
	 */
	pattern(buf, 100, 8, 2);
	arm.countdown = 1;
	arm.err = EIO;
	arm.ops = TD_FAULT_WRITE;
	before = faults_injected();
	fc_queue(img, TD_OP_WRITE, 100, 8, buf, 0);
	assert_int_equal(fc_run_errs(&err), 1);
	assert_int_equal(err, -EIO);
	assert_int_equal(faults_injected() - before, 1);
	/* Written again: the bits set in memory must reach the disk now. */
	fc_queue(img, TD_OP_WRITE, 100, 8, buf, 0);
	fc_run();
	memcpy(model + (100 << 9), buf, 8 << 9);

	/*
	 * Filling block 0: data, bitmap, then the batmap write, which fails.
	 * Only a hint: the write succeeds and close stores the batmap.
	 */
	pattern(buf, 0, SPB, 3);
	memcpy(model, buf, SPB << 9);
	arm.countdown = 2;
	before = faults_injected();
	fc_queue(img, TD_OP_WRITE, 0, SPB, buf, 0);
	fc_run();
	assert_int_equal(faults_injected() - before, 1);
	img_close(img);
	assert_int_equal(vhd_open(&ctx, f->path[0], VHD_OPEN_RDONLY), 0);
	assert_true(vhd_batmap_test(&ctx, 0));
	vhd_close(&ctx);
	assert_libvhd_reads(f->path[0], model, sectors);
	assert_clean(f->path[0]);

	/* The BAT write of an allocation fails: bitmap, sync, BAT. */
	img = img_must_open(f->path[0], 0);
	pattern(buf, 3 * SPB, 8, 4);
	arm.countdown = 2;
	arm.ops = TD_FAULT_WRITE;
	before = faults_injected();
	fc_queue(img, TD_OP_WRITE, 3 * SPB, 8, buf, 0);
	assert_int_equal(fc_run_errs(&err), 1);
	assert_int_equal(err, -EIO);
	assert_int_equal(faults_injected() - before, 1);
	fc_queue(img, TD_OP_WRITE, 3 * SPB, 8, buf, 0);
	fc_run();
	memcpy(model + (3 * SPB << 9), buf, 8 << 9);
	img_close(img);
	arm.countdown = 0;
	tio_inject_fault(0, 0, 0);
	assert_libvhd_reads(f->path[0], model, sectors);
	assert_clean(f->path[0]);
	free(buf);
	free(model);
}

/*
 * tio starvation: a timer keeps taking the pool's free entries and giving
 * them back a few at a time, so that every step of the driver in turn
 * finds none (metadata included) and has to wait and be resumed.
 */
#define STARVE_MAX	(TIO_RESERVED + 8)

static struct {
	struct tio_req	*held[STARVE_MAX];
	unsigned	nheld;
	struct tio_file	file;
	char		*buf;
	unsigned	ticks;
} starve;

static void starve_done(struct tio_req *r, int err)
{
	(void)r;
	assert_int_equal(err, 0);
}

static void starve_give(unsigned n)
{
	while (n-- && starve.nheld) {
		struct tio_req *r = starve.held[--starve.nheld];

		r->file = &starve.file;
		r->op = TIO_READ;
		r->buf = starve.buf;
		r->len = 512;
		r->off = 0;
		r->done = starve_done;
		tio_submit(r);
	}
}

static void starve_tick(void *arg)
{
	struct tio_req *r;

	(void)arg;
	starve.ticks++;
	while (starve.nheld < STARVE_MAX && (r = tio_get(TIO_PRIO_META)))
		starve.held[starve.nheld++] = r;
	switch (rnd() % 4) {
	case 0:
		starve_give(STARVE_MAX);		/* a breather */
		break;
	case 1:
		starve_give(TIO_RESERVED + rnd() % 4);	/* data starves */
		break;
	default:
		starve_give(rnd() % 3);			/* everything does */
		break;
	}
}

static void test_starved(void **state)
{
	struct fixture *f = *state;
	uint64_t sectors = 64 * MiB >> 9;
	char *model = calloc(1, sectors << 9);
	struct td_image *img;
	int timer;

	assert_non_null(model);
	assert_int_equal(vhd_create(f->path[0], 64 * MiB, 0, 0), 0);
	assert_int_equal(tio_file_open(&starve.file, f->path[0], true, false), 0);
	starve.buf = abuf(512);
	starve.nheld = 0;
	fc.others_io = true;
	timer = td_loop_add_timer(1, 1, starve_tick, NULL);
	assert_true(timer >= 0);

	img = img_must_open(f->path[0], 0);
	/* Whole blocks too, so that batmap writes happen. */
	for (int r = 0; r < 4; r++) {
		char *bufs[6];

		for (int i = 0; i < 6; i++) {
			uint64_t sec = (uint64_t)(r * 6 + i) * SPB;

			bufs[i] = abuf(SPB << 9);
			pattern(bufs[i], sec, SPB, (uint32_t)i);
			memcpy(model + (sec << 9), bufs[i], SPB << 9);
			fc_queue(img, TD_OP_WRITE, sec, SPB / 2, bufs[i],
				 i == 1 ? TD_TREQ_FUA : 0);
			fc_queue(img, TD_OP_WRITE, sec + SPB / 2, SPB / 2,
				 bufs[i] + (SPB / 2 << 9), TD_TREQ_FUA);
		}
		fc_run();
		random_writes(img, model, sectors, 2, 48);
		for (int i = 0; i < 6; i++)
			free(bufs[i]);
	}
	assert_driver_reads(img, model, sectors, 4096);
	img_close(img);
	img = img_must_open(f->path[0], 0);
	random_writes(img, model, sectors, 3, 48);
	assert_driver_reads(img, model, sectors, 1500);
	img_close(img);

	td_loop_del_timer(timer);
	starve_give(STARVE_MAX);
	fc.outstanding = 0;
	assert_true(starve.ticks > 10);
	tio_file_close(&starve.file);
	free(starve.buf);
	assert_libvhd_reads(f->path[0], model, sectors);
	assert_clean(f->path[0]);
	free(model);
}

/* ---- crash ---- */

struct crash_rec {
	uint64_t	sec;
	uint32_t	len;
	uint32_t	seed;
};

#define CRASH_REGION	300u	/* sectors; every write has its own region */
#define CRASH_BATCH	16
#define CRASH_BATCHES	40

/* The child: batches of writes, each reported once all have completed. */
static void crash_child(const char *path, int out)
{
	uint32_t nregions = (uint32_t)((256 * MiB >> 9) / CRASH_REGION);
	uint32_t *perm = malloc(nregions * sizeof(*perm));
	char *buf = abuf((size_t)CRASH_BATCH * 256 << 9);
	struct crash_rec recs[CRASH_BATCH];
	struct td_image *img;
	uint32_t next = 0;

	if (!perm || td_loop_init() || tio_init(512))
		_exit(2);
	tio_set_available(fc_available, NULL);
	img = img_open(path, 0, NULL);
	if (!img)
		_exit(3);
	for (uint32_t i = 0; i < nregions; i++)
		perm[i] = i;
	for (uint32_t i = nregions - 1; i > 0; i--) {
		uint32_t j = (uint32_t)(rnd() % (i + 1)), t = perm[i];

		perm[i] = perm[j];
		perm[j] = t;
	}
	for (int b = 0; b < CRASH_BATCHES && next + CRASH_BATCH <= nregions; b++) {
		for (int i = 0; i < CRASH_BATCH; i++) {
			struct crash_rec *r = &recs[i];
			char *p = buf + ((size_t)i * 256 << 9);

			r->sec = (uint64_t)perm[next++] * CRASH_REGION;
			r->len = (uint32_t)(rnd() % 256) + 1;
			r->seed = (uint32_t)rnd();
			pattern(p, r->sec, r->len, r->seed);
			fc_queue(img, TD_OP_WRITE, r->sec, r->len, p,
				 i % 5 == 0 ? TD_TREQ_FUA : 0);
		}
		if (fc_run_errs(NULL))
			_exit(4);
		if (write(out, recs, sizeof(recs)) != (ssize_t)sizeof(recs))
			_exit(5);
	}
	img_close(img);
	_exit(0);
}

/*
 * kill -9 in the middle of allocating writes: the image is clean and
 * every write reported complete is there.
 */
static void test_crash(void **state)
{
	struct fixture *f = *state;
	struct crash_rec recs[CRASH_BATCH * CRASH_BATCHES];
	size_t got = 0;
	vhd_context_t ctx;
	char *expect = abuf(256 << 9), *buf = abuf(256 << 9);
	int fds[2], status;
	pid_t pid;

	/* The child gets a loop and tio of its own (aio does not fork). */
	tio_fini();
	td_loop_fini();
	assert_int_equal(vhd_create(f->path[0], 256 * MiB, 0, 0), 0);
	assert_int_equal(pipe(fds), 0);
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(fds[0]);
		crash_child(f->path[0], fds[1]);
	}
	close(fds[1]);
	for (;;) {
		ssize_t n = read(fds[0], (char *)recs + got, sizeof(recs) - got);

		if (n <= 0)
			break;
		got += (size_t)n;
		/* Some batches done: kill it in the middle of the next. */
		if (got >= 5 * sizeof(struct crash_rec) * CRASH_BATCH && pid > 0) {
			kill(pid, SIGKILL);
			assert_int_equal(waitpid(pid, &status, 0), pid);
			pid = 0;
		}
	}
	close(fds[0]);
	if (pid > 0) {
		assert_int_equal(waitpid(pid, &status, 0), pid);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
	} else {
		assert_true(!WIFEXITED(status) || WEXITSTATUS(status) == 0);
	}
	got /= sizeof(struct crash_rec);
	assert_true(got >= 5 * CRASH_BATCH);

	assert_clean(f->path[0]);
	assert_int_equal(vhd_open(&ctx, f->path[0], VHD_OPEN_RDONLY), 0);
	for (size_t i = 0; i < got; i++) {
		pattern(expect, recs[i].sec, recs[i].len, recs[i].seed);
		assert_int_equal(vhd_io_read(&ctx, buf, recs[i].sec, recs[i].len,
					     NULL), 0);
		assert_memory_equal(buf, expect, (size_t)recs[i].len << 9);
	}
	vhd_close(&ctx);
	free(expect);
	free(buf);
	/* For the teardown. */
	assert_int_equal(td_loop_init(), 0);
	assert_int_equal(tio_init(512), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_dynamic_random, setup, teardown),
		cmocka_unit_test_setup_teardown(test_same_new_block, setup, teardown),
		cmocka_unit_test_setup_teardown(test_many_new_blocks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_batmap_and_cache, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fua, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fixed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_differencing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_parents, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_readonly, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pressure, setup_small, teardown),
		cmocka_unit_test_setup_teardown(test_faults, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cache_pressure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_leaked_gap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_meta_write_faults, setup, teardown),
		cmocka_unit_test_setup_teardown(test_starved, setup_small, teardown),
		cmocka_unit_test_setup_teardown(test_crash, setup, teardown),
	};

	td_log_open("test-drv-vhd", false);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
