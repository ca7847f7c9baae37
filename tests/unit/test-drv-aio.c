// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The aio driver through a small fake core: the td_treq_* services of
 * driver.h implemented here just far enough to run treqs on one image
 * with the real event loop and tio underneath.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "driver.h"
#include "event.h"
#include "log.h"
#include "tapdisk-control.h"
#include "tio.h"

#define SECTOR		512u
#define IMG_SECTORS	2048u		/* 1 MiB */
#define NR		256
#define GUARD_MS	15000

/* ---- the fake core ---- */

struct box {
	struct td_treq	t;
	uint8_t		filled[TD_TREQ_MAX_SECTORS / 8];
	bool		complete;
	int		err;
};

static struct {
	int		outstanding;	/* treqs not complete */
	struct td_treq	*parked;	/* waiting for tio, FIFO */
	struct td_treq	*parked_tail;
	int		submits;
	int		eagain;
	int		forwards;
	bool		guard_fired;
} core;

static void maybe_complete(struct td_treq *t)
{
	struct box *b = (struct box *)t;

	if (!t->issued || t->pending || b->complete)
		return;
	b->complete = true;
	b->err = t->err;
	if (--core.outstanding == 0)
		td_loop_stop();
}

void td_treq_get(struct td_treq *t)
{
	t->pending++;
}

void td_treq_put(struct td_treq *t, int err)
{
	assert_true(t->pending > 0);
	if (err && !t->err)
		t->err = err;
	t->pending--;
	maybe_complete(t);
}

void td_treq_fill(struct td_treq *t, uint32_t first, uint32_t n)
{
	for (uint32_t i = first; i < first + n; i++) {
		assert_false(td_treq_filled(t, i));
		t->filled[i >> 3] |= (uint8_t)(0x80 >> (i & 7));
	}
}

bool td_treq_filled(const struct td_treq *t, uint32_t i)
{
	return t->filled[i >> 3] & (0x80 >> (i & 7));
}

void td_treq_forward(struct td_treq *t)
{
	/* No parent: what nobody filled reads as zeros. */
	for (uint32_t i = 0; i < t->secs; i++)
		if (!td_treq_filled(t, i))
			memset(t->buf + (size_t)i * SECTOR, 0, SECTOR);
	core.forwards++;
	t->issued = true;
	maybe_complete(t);
}

void td_treq_issued(struct td_treq *t)
{
	t->issued = true;
	maybe_complete(t);
}

void td_treq_resume(struct td_treq *t)
{
	const struct td_driver *drv = t->img->drv;

	switch (t->op) {
	case TD_OP_READ:
		drv->queue_read(t->img, t);
		break;
	case TD_OP_WRITE:
		drv->queue_write(t->img, t);
		break;
	case TD_OP_FLUSH:
		drv->queue_flush(t->img, t);
		break;
	}
}

void td_treq_wait_tio(struct td_treq *t)
{
	t->next = NULL;
	if (core.parked_tail)
		core.parked_tail->next = t;
	else
		core.parked = t;
	core.parked_tail = t;
}

static void on_available(void *arg)
{
	struct td_treq *t = core.parked, *next;

	(void)arg;
	/* Those that find the pool empty again park themselves anew. */
	core.parked = core.parked_tail = NULL;
	for (; t; t = next) {
		next = t->next;
		td_treq_resume(t);
	}
}

static void on_tio_done(struct tio_req *r, int err)
{
	td_treq_put(r->arg, err);
}

int td_treq_submit(struct td_treq *t, struct tio_file *file, enum tio_op op,
		   void *buf, size_t len, uint64_t off, unsigned tio_flags)
{
	struct tio_req *r = tio_get(TIO_PRIO_DATA);

	if (!r) {
		core.eagain++;
		return -EAGAIN;
	}
	r->file = file;
	r->op = op;
	r->flags = tio_flags;
	r->buf = buf;
	r->len = len;
	r->off = off;
	r->deadline_ms = t->deadline_ms;
	r->done = on_tio_done;
	r->arg = t;
	td_treq_get(t);
	tio_submit(r);
	core.submits++;
	return 0;
}

/* ---- helpers ---- */

struct fixture {
	char		dir[256];
	char		path[300];
	char		other[300];
	struct td_image	img;
	bool		open;
};

static uint8_t pat(uint64_t off, uint8_t seed)
{
	return (uint8_t)(off * 5 + (off >> 9) * 11 + seed);
}

static void fill(void *buf, size_t len, uint64_t off, uint8_t seed)
{
	for (size_t i = 0; i < len; i++)
		((uint8_t *)buf)[i] = pat(off + i, seed);
}

static bool matches(const void *buf, size_t len, uint64_t off, uint8_t seed)
{
	for (size_t i = 0; i < len; i++)
		if (((const uint8_t *)buf)[i] != pat(off + i, seed))
			return false;
	return true;
}

static bool all(const void *buf, size_t len, uint8_t v)
{
	for (size_t i = 0; i < len; i++)
		if (((const uint8_t *)buf)[i] != v)
			return false;
	return true;
}

static void make_file(const char *path, size_t size, uint8_t seed)
{
	uint8_t *buf = malloc(size ? size : 1);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	assert_non_null(buf);
	assert_true(fd >= 0);
	fill(buf, size, 0, seed);
	assert_int_equal(pwrite(fd, buf, size, 0), (ssize_t)size);
	close(fd);
	free(buf);
}

static bool file_matches(const char *path, uint64_t off, size_t len,
			 uint8_t seed)
{
	uint8_t *buf = malloc(len);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	bool ok;

	assert_non_null(buf);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, buf, len, (off_t)off), (ssize_t)len);
	ok = matches(buf, len, off, seed);
	close(fd);
	free(buf);
	return ok;
}

static int open_image(struct td_image *img, const char *path, unsigned flags)
{
	int err;

	memset(img, 0, sizeof(*img));
	img->drv = &td_drv_aio;
	img->priv = calloc(1, td_drv_aio.priv_size);
	assert_non_null(img->priv);
	img->flags = flags;
	err = td_drv_aio.open(img, path, flags);
	if (err) {
		free(img->priv);
		img->priv = NULL;
	}
	return err;
}

static void close_image(struct td_image *img)
{
	td_drv_aio.close(img);
	free(img->priv);
	img->priv = NULL;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	const char *tmp = getenv("TMPDIR");

	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "%s/test-drv-aio.XXXXXX",
		 tmp && *tmp ? tmp : "/var/tmp");
	if (!mkdtemp(f->dir)) {
		free(f);
		return -1;
	}
	snprintf(f->path, sizeof(f->path), "%s/raw.img", f->dir);
	snprintf(f->other, sizeof(f->other), "%s/other.img", f->dir);
	make_file(f->path, IMG_SECTORS * SECTOR, 0);
	memset(&core, 0, sizeof(core));
	if (td_loop_init() || tio_init(NR))
		return -1;
	tio_set_available(on_available, NULL);
	if (open_image(&f->img, f->path, 0)) {
		fprintf(stderr, "setup: %s\n", td_errmsg());
		return -1;
	}
	f->open = true;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	if (f->open)
		close_image(&f->img);
	tio_fini();
	td_loop_fini();
	unlink(f->path);
	unlink(f->other);
	rmdir(f->dir);
	free(f);
	return 0;
}

static struct box *new_treq(struct td_image *img, enum td_op op, uint64_t sec,
			    uint32_t secs)
{
	struct box *b = calloc(1, sizeof(*b));

	assert_non_null(b);
	b->t.img = img;
	b->t.op = op;
	b->t.sec = sec;
	b->t.secs = secs;
	b->t.filled = b->filled;
	if (secs) {
		assert_int_equal(posix_memalign((void **)&b->t.buf, 4096,
						(size_t)secs * SECTOR), 0);
		memset(b->t.buf, 0xee, (size_t)secs * SECTOR);
	}
	return b;
}

static void free_treq(struct box *b)
{
	free(b->t.buf);
	free(b);
}

static void queue(struct box *b)
{
	core.outstanding++;
	td_treq_resume(&b->t);
}

static void on_guard(void *arg)
{
	(void)arg;
	core.guard_fired = true;
	td_loop_stop();
}

static void run(void)
{
	int id;

	core.guard_fired = false;
	if (!core.outstanding)
		return;
	id = td_loop_add_timer(GUARD_MS, 0, on_guard, NULL);
	assert_true(id >= 0);
	assert_int_equal(td_loop_run(), 0);
	td_loop_del_timer(id);
	assert_false(core.guard_fired);
	assert_int_equal(core.outstanding, 0);
}

/* Queue one treq, run it to completion, return its error. */
static int do_treq(struct box *b)
{
	queue(b);
	run();
	assert_true(b->complete);
	return b->err;
}

/* ---- tests ---- */

static void test_open_errors(void **state)
{
	struct fixture *f = *state;
	struct td_image img;
	char missing[320];

	snprintf(missing, sizeof(missing), "%s/nope.img", f->dir);
	assert_int_equal(open_image(&img, missing, 0), -ENOENT);
	assert_non_null(strstr(td_errmsg(), missing));
	assert_non_null(strstr(td_errmsg(), "no such file"));

	make_file(f->other, 1000, 0);
	assert_int_equal(open_image(&img, f->other, 0), -EINVAL);
	assert_non_null(strstr(td_errmsg(), "not a multiple of 512"));
	assert_non_null(strstr(td_errmsg(), f->other));

	make_file(f->other, 0, 0);
	assert_int_equal(open_image(&img, f->other, TD_IMAGE_RDONLY), -EINVAL);
	assert_non_null(strstr(td_errmsg(), "empty"));

	assert_int_equal(open_image(&img, f->dir, TD_IMAGE_RDONLY), -EINVAL);
	assert_non_null(strstr(td_errmsg(), "not a regular file"));

	make_file(f->other, 4096, 0);
	assert_int_equal(chmod(f->other, 0400), 0);
	/* Root may write anyway; otherwise opening for writing is refused. */
	if (geteuid() != 0) {
		assert_int_equal(open_image(&img, f->other, 0), -EACCES);
		assert_non_null(strstr(td_errmsg(), f->other));
	}
	assert_int_equal(open_image(&img, f->other, TD_IMAGE_RDONLY), 0);
	close_image(&img);
}

static void test_open_geometry(void **state)
{
	struct fixture *f = *state;
	struct td_image ro, nd;
	int fd;
	bool punch;

	assert_int_equal(f->img.sectors, IMG_SECTORS);
	assert_int_equal(f->img.chunk_sectors, 0);
	/* The probe says what the file system says. */
	make_file(f->other, 8192, 0);
	fd = open(f->other, O_RDWR | O_CLOEXEC);
	assert_true(fd >= 0);
	punch = fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			  0, 4096) == 0;
	close(fd);
	assert_int_equal(f->img.can_discard, punch);

	assert_int_equal(open_image(&ro, f->path, TD_IMAGE_RDONLY), 0);
	assert_int_equal(ro.sectors, IMG_SECTORS);
	assert_false(ro.can_discard);
	close_image(&ro);

	assert_int_equal(open_image(&nd, f->path, TD_IMAGE_NO_DIRECT), 0);
	assert_int_equal(nd.sectors, IMG_SECTORS);
	close_image(&nd);
}

static void test_write_read_flush(void **state)
{
	struct fixture *f = *state;
	struct box *w = new_treq(&f->img, TD_OP_WRITE, 8, 64);
	struct box *fua = new_treq(&f->img, TD_OP_WRITE, 100, 8);
	struct box *r = new_treq(&f->img, TD_OP_READ, 0, 128);
	struct box *fl = new_treq(&f->img, TD_OP_FLUSH, 0, 0);

	fill(w->t.buf, 64 * SECTOR, 8 * SECTOR, 1);
	assert_int_equal(do_treq(w), 0);
	assert_true(file_matches(f->path, 8 * SECTOR, 64 * SECTOR, 1));
	assert_true(file_matches(f->path, 0, 8 * SECTOR, 0));
	assert_true(file_matches(f->path, 72 * SECTOR, 8 * SECTOR, 0));

	fua->t.flags = TD_TREQ_FUA;
	fill(fua->t.buf, 8 * SECTOR, 100 * SECTOR, 2);
	assert_int_equal(do_treq(fua), 0);
	assert_true(file_matches(f->path, 100 * SECTOR, 8 * SECTOR, 2));

	core.submits = core.forwards = 0;
	assert_int_equal(do_treq(r), 0);
	/* One read for the whole treq, then forwarded (to nothing). */
	assert_int_equal(core.submits, 1);
	assert_int_equal(core.forwards, 1);
	assert_true(matches(r->t.buf, 8 * SECTOR, 0, 0));
	assert_true(matches(r->t.buf + 8 * SECTOR, 64 * SECTOR, 8 * SECTOR, 1));
	assert_true(matches(r->t.buf + 72 * SECTOR, 28 * SECTOR, 72 * SECTOR,
			    0));
	assert_true(matches(r->t.buf + 100 * SECTOR, 8 * SECTOR, 100 * SECTOR,
			    2));
	assert_true(matches(r->t.buf + 108 * SECTOR, 20 * SECTOR,
			    108 * SECTOR, 0));
	for (uint32_t i = 0; i < 128; i++)
		assert_true(td_treq_filled(&r->t, i));

	assert_int_equal(do_treq(fl), 0);
	free_treq(w);
	free_treq(fua);
	free_treq(r);
	free_treq(fl);
}

static void test_read_skips_filled(void **state)
{
	struct fixture *f = *state;
	struct box *r = new_treq(&f->img, TD_OP_READ, 32, 16);

	/* An image above already supplied sectors 0-3 and 10-11. */
	td_treq_fill(&r->t, 0, 4);
	td_treq_fill(&r->t, 10, 2);
	core.submits = 0;
	assert_int_equal(do_treq(r), 0);
	assert_int_equal(core.submits, 2);
	assert_true(all(r->t.buf, 4 * SECTOR, 0xee));
	assert_true(matches(r->t.buf + 4 * SECTOR, 6 * SECTOR, 36 * SECTOR, 0));
	assert_true(all(r->t.buf + 10 * SECTOR, 2 * SECTOR, 0xee));
	assert_true(matches(r->t.buf + 12 * SECTOR, 4 * SECTOR, 44 * SECTOR,
			    0));
	free_treq(r);
}

static void test_read_past_end(void **state)
{
	struct fixture *f = *state;
	struct box *r = new_treq(&f->img, TD_OP_READ, IMG_SECTORS - 4, 8);
	struct box *beyond = new_treq(&f->img, TD_OP_READ, IMG_SECTORS + 10, 4);

	assert_int_equal(do_treq(r), 0);
	assert_true(matches(r->t.buf, 4 * SECTOR,
			    (uint64_t)(IMG_SECTORS - 4) * SECTOR, 0));
	assert_true(all(r->t.buf + 4 * SECTOR, 4 * SECTOR, 0));
	/* Zeros of our own: nothing below shows through. */
	for (uint32_t i = 0; i < 8; i++)
		assert_true(td_treq_filled(&r->t, i));

	core.submits = 0;
	assert_int_equal(do_treq(beyond), 0);
	assert_int_equal(core.submits, 0);
	assert_true(all(beyond->t.buf, 4 * SECTOR, 0));
	free_treq(r);
	free_treq(beyond);
}

static void test_write_past_end(void **state)
{
	struct fixture *f = *state;
	struct box *w = new_treq(&f->img, TD_OP_WRITE, IMG_SECTORS - 2, 4);
	struct stat st;

	fill(w->t.buf, 4 * SECTOR, 0, 3);
	assert_int_equal(do_treq(w), -EINVAL);
	assert_int_equal(stat(f->path, &st), 0);
	assert_int_equal(st.st_size, IMG_SECTORS * SECTOR);
	assert_true(file_matches(f->path, (IMG_SECTORS - 2) * SECTOR,
				 2 * SECTOR, 0));
	free_treq(w);
}

static void test_waits_for_tio(void **state)
{
	struct fixture *f = *state;
	struct td_image img;
	struct box *r[6], *w[3], *fl[2];

	/* Two data entries in all: most submissions find the pool empty. */
	close_image(&f->img);
	f->open = false;
	tio_fini();
	assert_int_equal(tio_init(TIO_RESERVED + 2), 0);
	tio_set_available(on_available, NULL);
	assert_int_equal(open_image(&img, f->path, 0), 0);

	for (int i = 0; i < 6; i++) {
		/*
		 * Three runs each and two entries: every read stops half way
		 * at least once and must resume from its cursor (filling a
		 * sector twice fails the fake core's assertion).
		 */
		r[i] = new_treq(&img, TD_OP_READ, (uint64_t)i * 64, 64);
		td_treq_fill(&r[i]->t, 20, 4);
		td_treq_fill(&r[i]->t, 40, 4);
	}
	for (int i = 0; i < 3; i++) {
		w[i] = new_treq(&img, TD_OP_WRITE, 1024 + (uint64_t)i * 64, 64);
		fill(w[i]->t.buf, 64 * SECTOR, (1024 + i * 64) * SECTOR, 4);
	}
	for (int i = 0; i < 2; i++)
		fl[i] = new_treq(&img, TD_OP_FLUSH, 0, 0);
	core.eagain = core.submits = 0;
	for (int i = 0; i < 6; i++)
		queue(r[i]);
	for (int i = 0; i < 3; i++)
		queue(w[i]);
	for (int i = 0; i < 2; i++)
		queue(fl[i]);
	run();
	assert_true(core.eagain >= 6);
	assert_int_equal(core.submits, 6 * 3 + 3 + 2);
	for (int i = 0; i < 6; i++) {
		uint64_t off = (uint64_t)i * 64 * SECTOR;

		assert_true(r[i]->complete);
		assert_int_equal(r[i]->err, 0);
		assert_true(matches(r[i]->t.buf, 20 * SECTOR, off, 0));
		assert_true(all(r[i]->t.buf + 20 * SECTOR, 4 * SECTOR, 0xee));
		assert_true(matches(r[i]->t.buf + 24 * SECTOR, 16 * SECTOR,
				    off + 24 * SECTOR, 0));
		assert_true(all(r[i]->t.buf + 40 * SECTOR, 4 * SECTOR, 0xee));
		assert_true(matches(r[i]->t.buf + 44 * SECTOR, 20 * SECTOR,
				    off + 44 * SECTOR, 0));
		free_treq(r[i]);
	}
	for (int i = 0; i < 3; i++) {
		assert_int_equal(w[i]->err, 0);
		free_treq(w[i]);
	}
	assert_true(file_matches(f->path, 1024 * SECTOR, 3 * 64 * SECTOR, 4));
	for (int i = 0; i < 2; i++) {
		assert_int_equal(fl[i]->err, 0);
		free_treq(fl[i]);
	}
	close_image(&img);
}

static void test_discard(void **state)
{
	struct fixture *f = *state;
	struct box *r = new_treq(&f->img, TD_OP_READ, 0, 32);
	struct td_image ro;

	assert_int_equal(td_drv_aio.discard(&f->img, IMG_SECTORS - 4, 8),
			 f->img.can_discard ? -EINVAL : -EOPNOTSUPP);
	if (!f->img.can_discard) {
		assert_int_equal(td_drv_aio.discard(&f->img, 8, 8),
				 -EOPNOTSUPP);
		fprintf(stderr, "note: no hole punching under %s\n", f->dir);
	} else {
		assert_int_equal(td_drv_aio.discard(&f->img, 8, 8), 0);
		assert_int_equal(td_drv_aio.discard(&f->img, 0, 0), 0);
		assert_int_equal(do_treq(r), 0);
		assert_true(matches(r->t.buf, 8 * SECTOR, 0, 0));
		assert_true(all(r->t.buf + 8 * SECTOR, 8 * SECTOR, 0));
		assert_true(matches(r->t.buf + 16 * SECTOR, 16 * SECTOR,
				    16 * SECTOR, 0));
	}
	assert_int_equal(open_image(&ro, f->path, TD_IMAGE_RDONLY), 0);
	assert_int_equal(td_drv_aio.discard(&ro, 8, 8), -EROFS);
	close_image(&ro);
	free_treq(r);
}

static void test_io_errors(void **state)
{
	struct fixture *f = *state;
	struct box *w = new_treq(&f->img, TD_OP_WRITE, 0, 8);
	struct box *r = new_treq(&f->img, TD_OP_READ, 0, 8);
	struct box *fl = new_treq(&f->img, TD_OP_FLUSH, 0, 0);

	fill(w->t.buf, 8 * SECTOR, 0, 5);
	tio_inject_fault(1, EIO, TD_FAULT_WRITE);
	assert_int_equal(do_treq(w), -EIO);
	assert_true(file_matches(f->path, 0, 8 * SECTOR, 0));

	/* A transient fault within the deadline does not show. */
	tio_inject_fault(1, EBUSY, TD_FAULT_READ);
	r->t.deadline_ms = td_now_ms() + 10000;
	assert_int_equal(do_treq(r), 0);
	assert_true(matches(r->t.buf, 8 * SECTOR, 0, 0));

	tio_inject_fault(1, ENOSPC, TD_FAULT_FLUSH);
	assert_int_equal(do_treq(fl), -ENOSPC);
	free_treq(w);
	free_treq(r);
	free_treq(fl);
}

static void test_no_parent(void **state)
{
	struct fixture *f = *state;
	struct td_parent p = { { 0 }, NULL };

	assert_string_equal(td_drv_aio.name, "aio");
	assert_int_equal(td_drv_aio.get_parent(&f->img, &p), -ENOENT);
	assert_null(p.path);
	assert_int_equal(td_drv_aio.validate_parent(&f->img, &f->img), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
		T(test_open_errors),
		T(test_open_geometry),
		T(test_write_read_flush),
		T(test_read_skips_filled),
		T(test_read_past_end),
		T(test_write_past_end),
		T(test_waits_for_tio),
		T(test_discard),
		T(test_io_errors),
		T(test_no_parent),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
