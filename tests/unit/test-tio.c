// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * tio on real files (under $TMPDIR, which must not be tmpfs for the
 * O_DIRECT paths to be exercised): reads, writes, flushes, merging, the
 * pool and its reserve, the retry policy through fault injection,
 * unaligned requests and reads at the end of the file.
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

#include "event.h"
#include "log.h"
#include "tapdisk-control.h"
#include "tio.h"

#define KiB		1024u
#define MiB		(1024u * KiB)
#define FILE_SIZE	(8 * MiB)
#define NR		256	/* NR - TIO_RESERVED data entries */
#define GUARD_MS	15000

struct fixture {
	char		dir[256];
	char		path[300];
	char		path2[300];
	struct tio_file	file;
};

/* One I/O's outcome, filled by on_done. */
struct io {
	int		calls;
	int		err;
	unsigned	retries;
};

static int outstanding;
static bool in_submit;
static bool guard_fired;

static uint8_t pat(uint64_t off, uint8_t seed)
{
	return (uint8_t)(off * 7 + (off >> 9) * 13 + seed);
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

static void *abuf(size_t len)
{
	void *p = NULL;

	assert_int_equal(posix_memalign(&p, 4096, len), 0);
	return p;
}

static void write_file(const char *path, size_t size, uint8_t seed)
{
	uint8_t *buf = malloc(MiB);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	assert_non_null(buf);
	assert_true(fd >= 0);
	/* The pattern repeats every MiB: one buffer serves every chunk. */
	fill(buf, MiB, 0, seed);
	for (size_t off = 0; off < size; off += MiB) {
		size_t n = size - off < MiB ? size - off : MiB;

		assert_int_equal(pwrite(fd, buf, n, (off_t)off), (ssize_t)n);
	}
	close(fd);
	free(buf);
}

/* What the file holds, through a descriptor of its own. */
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

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	const char *tmp = getenv("TMPDIR");

	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "%s/test-tio.XXXXXX",
		 tmp && *tmp ? tmp : "/var/tmp");
	if (!mkdtemp(f->dir)) {
		free(f);
		return -1;
	}
	snprintf(f->path, sizeof(f->path), "%s/data", f->dir);
	snprintf(f->path2, sizeof(f->path2), "%s/short", f->dir);
	write_file(f->path, FILE_SIZE, 0);
	if (td_loop_init() || tio_init(NR) ||
	    tio_file_open(&f->file, f->path, false, true)) {
		fprintf(stderr, "setup: %s\n", td_errmsg());
		return -1;
	}
	outstanding = 0;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	tio_file_close(&f->file);
	tio_fini();
	td_loop_fini();
	unlink(f->path);
	unlink(f->path2);
	rmdir(f->dir);
	free(f);
	return 0;
}

static void on_done(struct tio_req *r, int err)
{
	struct io *io = r->arg;

	/* Never from inside tio_submit(). */
	assert_false(in_submit);
	io->calls++;
	io->err = err;
	io->retries = r->retries;
	if (--outstanding == 0)
		td_loop_stop();
}

static struct tio_req *req(struct tio_file *file, enum tio_op op, void *buf,
			   size_t len, uint64_t off, struct io *io)
{
	struct tio_req *r = tio_get(TIO_PRIO_DATA);

	assert_non_null(r);
	r->file = file;
	r->op = op;
	r->buf = buf;
	r->len = len;
	r->off = off;
	r->done = on_done;
	r->arg = io;
	return r;
}

static void submit(struct tio_req *r)
{
	outstanding++;
	in_submit = true;
	tio_submit(r);
	in_submit = false;
}

static void on_guard(void *arg)
{
	(void)arg;
	guard_fired = true;
	td_loop_stop();
}

/* Run the loop until every submitted request is done. */
static void run(void)
{
	int id;

	guard_fired = false;
	id = td_loop_add_timer(GUARD_MS, 0, on_guard, NULL);
	assert_true(id >= 0);
	/* Work submitted after the last done() (by a hook) needs a new run. */
	do {
		assert_int_equal(td_loop_run(), 0);
	} while (outstanding && !guard_fired);
	td_loop_del_timer(id);
	assert_false(guard_fired);
	assert_int_equal(outstanding, 0);
}

/* Submit one request, run it, return its error. */
static int do_io(struct tio_file *file, enum tio_op op, void *buf, size_t len,
		 uint64_t off, unsigned flags, uint64_t deadline,
		 struct io *io)
{
	struct tio_req *r = req(file, op, buf, len, off, io);

	r->flags = flags;
	r->deadline_ms = deadline;
	submit(r);
	run();
	assert_int_equal(io->calls, 1);
	return io->err;
}

static struct tio_stats stats(void)
{
	struct tio_stats st;

	tio_get_stats(&st);
	return st;
}

/* ---- basic I/O ---- */

static void test_read_write_fdsync(void **state)
{
	struct fixture *f = *state;
	uint8_t *buf = abuf(64 * KiB), *back = abuf(64 * KiB);
	struct io a = { 0 }, b = { 0 }, c = { 0 };
	struct tio_stats st;

	assert_true(f->file.fd >= 0 && f->file.fd_buffered >= 0);
	fill(buf, 64 * KiB, MiB, 1);
	assert_int_equal(do_io(&f->file, TIO_WRITE, buf, 64 * KiB, MiB, 0, 0,
			       &a), 0);
	assert_true(file_matches(f->path, MiB, 64 * KiB, 1));
	assert_true(file_matches(f->path, 0, MiB, 0));

	memset(back, 0, 64 * KiB);
	assert_int_equal(do_io(&f->file, TIO_READ, back, 64 * KiB, MiB, 0, 0,
			       &b), 0);
	assert_memory_equal(back, buf, 64 * KiB);

	assert_int_equal(do_io(&f->file, TIO_FDSYNC, NULL, 0, 0, 0, 0, &c), 0);
	st = stats();
	assert_int_equal(st.submitted, 3);
	assert_int_equal(st.iocbs, 3);
	assert_int_equal(st.merges, 0);
	assert_int_equal(st.inflight, 0);
	assert_int_equal(st.retries, 0);
	free(buf);
	free(back);
}

static void test_direct_file(void **state)
{
	struct fixture *f = *state;
	struct tio_file b;

	/* On a disk file system O_DIRECT works and has an alignment. */
	if (f->file.fd == f->file.fd_buffered)
		fprintf(stderr, "note: %s has no O_DIRECT; buffered only\n",
			f->dir);
	else
		assert_true(f->file.dio_align >= 512 &&
			    f->file.dio_align <= 4096);
	assert_string_equal(f->file.path, f->path);
	assert_false(f->file.readonly);

	assert_int_equal(tio_file_open(&b, f->path, true, false), 0);
	assert_int_equal(b.fd, b.fd_buffered);
	assert_true(b.readonly);
	tio_file_close(&b);
	assert_int_equal(b.fd, -1);
}

/* ---- merging ---- */

static void test_merge_adjacent(void **state)
{
	struct fixture *f = *state;
	static const int order[8] = { 3, 0, 7, 1, 5, 2, 6, 4 };
	const uint64_t base = 2 * MiB;
	uint8_t *buf[8];
	struct io io[8] = { { 0 } };
	struct tio_stats st;

	/* Queued out of order in one iteration: one iocb carries them all. */
	for (int i = 0; i < 8; i++) {
		buf[i] = abuf(4 * KiB);
		fill(buf[i], 4 * KiB, base + i * 4 * KiB, 2);
	}
	for (int i = 0; i < 8; i++) {
		int k = order[i];

		submit(req(&f->file, TIO_WRITE, buf[k], 4 * KiB,
			   base + k * 4 * KiB, &io[k]));
	}
	run();
	st = stats();
	assert_int_equal(st.submitted, 8);
	assert_int_equal(st.iocbs, 1);
	assert_int_equal(st.merges, 7);
	for (int i = 0; i < 8; i++) {
		assert_int_equal(io[i].calls, 1);
		assert_int_equal(io[i].err, 0);
	}
	assert_true(file_matches(f->path, base, 32 * KiB, 2));
	assert_true(file_matches(f->path, base - 4 * KiB, 4 * KiB, 0));
	assert_true(file_matches(f->path, base + 32 * KiB, 4 * KiB, 0));

	/* And the same for reads, into separate buffers. */
	for (int i = 0; i < 8; i++) {
		memset(buf[i], 0, 4 * KiB);
		io[i].calls = 0;
		submit(req(&f->file, TIO_READ, buf[order[i]], 4 * KiB,
			   base + order[i] * 4 * KiB, &io[order[i]]));
	}
	run();
	st = stats();
	assert_int_equal(st.iocbs, 2);
	assert_int_equal(st.merges, 14);
	for (int i = 0; i < 8; i++) {
		assert_int_equal(io[i].err, 0);
		assert_true(matches(buf[i], 4 * KiB, base + i * 4 * KiB, 2));
		free(buf[i]);
	}
}

static void test_no_merge(void **state)
{
	struct fixture *f = *state;
	uint8_t *buf = abuf(64 * KiB);
	struct io io[8] = { { 0 } };
	struct tio_stats st;
	struct tio_req *r;

	/* Gaps between them: nothing to merge. */
	for (int i = 0; i < 8; i++)
		submit(req(&f->file, TIO_READ, buf + i * 8 * KiB, 4 * KiB,
			   i * 8 * KiB, &io[i]));
	run();
	st = stats();
	assert_int_equal(st.iocbs, 8);
	assert_int_equal(st.merges, 0);
	for (int i = 0; i < 8; i++) {
		assert_int_equal(io[i].err, 0);
		assert_true(matches(buf + i * 8 * KiB, 4 * KiB, i * 8 * KiB, 0));
	}

	/* Contiguous, but a write and a read: two iocbs. */
	fill(buf, 4 * KiB, 3 * MiB, 3);
	submit(req(&f->file, TIO_WRITE, buf, 4 * KiB, 3 * MiB, &io[0]));
	submit(req(&f->file, TIO_READ, buf + 4 * KiB, 4 * KiB,
		   3 * MiB + 4 * KiB, &io[1]));
	run();
	assert_int_equal(stats().iocbs, 10);

	/* Contiguous writes, one FUA and one not: two iocbs. */
	fill(buf, 8 * KiB, 3 * MiB, 4);
	r = req(&f->file, TIO_WRITE, buf, 4 * KiB, 3 * MiB, &io[0]);
	r->flags = TIO_FUA;
	submit(r);
	submit(req(&f->file, TIO_WRITE, buf + 4 * KiB, 4 * KiB,
		   3 * MiB + 4 * KiB, &io[1]));
	run();
	st = stats();
	assert_int_equal(st.iocbs, 12);
	assert_int_equal(st.merges, 0);
	assert_int_equal(io[0].err, 0);
	assert_int_equal(io[1].err, 0);
	assert_true(file_matches(f->path, 3 * MiB, 8 * KiB, 4));
	free(buf);
}

static void test_merge_limits(void **state)
{
	struct fixture *f = *state;
	uint8_t *buf = abuf(5 * MiB);
	struct io io[TIO_MAX_MERGE_IOV + 1] = { { 0 } };
	struct tio_stats st;

	/* One more than an iocb may carry. */
	for (int i = 0; i <= TIO_MAX_MERGE_IOV; i++)
		submit(req(&f->file, TIO_READ, buf + i * 4 * KiB, 4 * KiB,
			   i * 4 * KiB, &io[i]));
	run();
	st = stats();
	assert_int_equal(st.iocbs, 2);
	assert_int_equal(st.merges, TIO_MAX_MERGE_IOV - 1);
	assert_true(matches(buf, (TIO_MAX_MERGE_IOV + 1) * 4 * KiB, 0, 0));

	/* Five 1 MiB writes: 4 MiB in the first iocb, the last alone. */
	fill(buf, 5 * MiB, MiB, 5);
	for (int i = 0; i < 5; i++)
		submit(req(&f->file, TIO_WRITE, buf + i * MiB, MiB,
			   MiB + i * MiB, &io[i]));
	run();
	st = stats();
	assert_int_equal(st.iocbs, 4);
	assert_int_equal(st.merges, TIO_MAX_MERGE_IOV - 1 + 3);
	for (int i = 0; i < 5; i++)
		assert_int_equal(io[i].err, 0);
	assert_true(file_matches(f->path, MiB, 5 * MiB, 5));
	free(buf);
}

static void test_fua(void **state)
{
	struct fixture *f = *state;
	uint8_t *buf = abuf(8 * KiB);
	struct io a = { 0 }, b = { 0 };

	fill(buf, 8 * KiB, 5 * MiB, 6);
	assert_int_equal(do_io(&f->file, TIO_WRITE, buf, 8 * KiB, 5 * MiB,
			       TIO_FUA, 0, &a), 0);
	assert_true(file_matches(f->path, 5 * MiB, 8 * KiB, 6));

	/* An injected EINVAL is an error, not a refused RWF_DSYNC. */
	tio_inject_fault(1, EINVAL, TD_FAULT_WRITE);
	assert_int_equal(do_io(&f->file, TIO_WRITE, buf, 8 * KiB, 5 * MiB,
			       TIO_FUA, td_now_ms() + 10000, &b), -EINVAL);
	assert_int_equal(b.retries, 0);
	assert_int_equal(stats().errors_permanent, 1);
	free(buf);
}

/* ---- the pool ---- */

struct avail {
	int		calls;
	struct tio_file	*file;
	void		*buf;
	struct io	io;
	bool		resubmit;
};

static void on_available(void *arg)
{
	struct avail *a = arg;

	a->calls++;
	/* Entries are free by now: resume parked work here. */
	if (a->resubmit) {
		a->resubmit = false;
		submit(req(a->file, TIO_READ, a->buf, 4 * KiB, 0, &a->io));
	}
}

static int iterations;

static void on_iteration(void *arg)
{
	(void)arg;
	iterations++;
}

static void test_pool_and_reserve(void **state)
{
	struct fixture *f = *state;
	uint8_t *buf = abuf(NR * 4 * KiB), *extra = abuf(4 * KiB);
	struct tio_req *r[NR + 1];	/* and the NULL ending a scan */
	struct io io[NR] = { { 0 } };
	struct avail av = { .file = &f->file, .buf = extra, .resubmit = true };
	int data = 0, meta = 0;

	/* Data callers get all but the reserve... */
	while ((r[data] = tio_get(TIO_PRIO_DATA)))
		data++;
	assert_int_equal(data, NR - TIO_RESERVED);
	/* ...which is left for metadata. */
	while ((r[data + meta] = tio_get(TIO_PRIO_META)))
		meta++;
	assert_int_equal(meta, TIO_RESERVED);
	assert_null(tio_get(TIO_PRIO_DATA));

	for (int i = 0; i < NR; i++) {
		r[i]->file = &f->file;
		r[i]->op = TIO_READ;
		r[i]->buf = buf + i * 4 * KiB;
		r[i]->len = 4 * KiB;
		r[i]->off = (uint64_t)i * 4 * KiB;
		r[i]->done = on_done;
		r[i]->arg = &io[i];
		submit(r[i]);
	}
	tio_set_available(on_available, &av);
	iterations = 0;
	assert_int_equal(td_loop_add_prepare(on_iteration, NULL), 0);
	run();
	for (int i = 0; i < NR; i++)
		assert_int_equal(io[i].err, 0);
	assert_true(matches(buf, NR * 4 * KiB, 0, 0));
	/* Called, at most once per iteration, and usable from the hook. */
	assert_true(av.calls >= 1);
	assert_true(av.calls <= iterations);
	assert_false(av.resubmit);
	assert_int_equal(av.io.calls, 1);
	assert_int_equal(av.io.err, 0);
	assert_true(matches(extra, 4 * KiB, 0, 0));
	/* Everything went back. */
	for (data = 0; (r[data] = tio_get(TIO_PRIO_META)); data++)
		;
	assert_int_equal(data, NR);
	for (int i = 0; i < NR; i++) {
		r[i]->file = &f->file;
		r[i]->op = TIO_FDSYNC;
		r[i]->done = on_done;
		r[i]->arg = &io[i];
		submit(r[i]);
	}
	run();
	for (int i = 0; i < NR; i++)
		assert_int_equal(io[i].err, 0);
	tio_set_available(NULL, NULL);
	free(buf);
	free(extra);
}

/* Each completion submits the next: the pool must recycle entries. */
struct chain {
	struct tio_file	*file;
	uint8_t		*buf;
	int		left;
	int		err;
};

static void on_chain(struct tio_req *r, int err)
{
	struct chain *c = r->arg;
	struct tio_req *n;

	if (err && !c->err)
		c->err = err;
	if (--c->left == 0 || err) {
		td_loop_stop();
		return;
	}
	n = tio_get(TIO_PRIO_DATA);
	assert_non_null(n);
	n->file = c->file;
	n->op = TIO_READ;
	n->buf = c->buf;
	n->len = 4 * KiB;
	n->off = (uint64_t)(c->left % 64) * 4 * KiB;
	n->done = on_chain;
	n->arg = c;
	tio_submit(n);
}

static void test_chain_from_done(void **state)
{
	struct fixture *f = *state;
	struct chain c = { &f->file, abuf(4 * KiB), 3 * NR, 0 };
	struct tio_req *r = tio_get(TIO_PRIO_DATA);

	assert_non_null(r);
	r->file = &f->file;
	r->op = TIO_READ;
	r->buf = c.buf;
	r->len = 4 * KiB;
	r->done = on_chain;
	r->arg = &c;
	tio_submit(r);
	guard_fired = false;
	int id = td_loop_add_timer(GUARD_MS, 0, on_guard, NULL);

	assert_int_equal(td_loop_run(), 0);
	td_loop_del_timer(id);
	assert_false(guard_fired);
	assert_int_equal(c.err, 0);
	assert_int_equal(c.left, 0);
	assert_int_equal(stats().submitted, 3 * NR);
	free(c.buf);
}

/* ---- the retry policy ---- */

static void test_transient_fault_retried(void **state)
{
	struct fixture *f = *state;
	uint8_t *buf = abuf(8 * KiB);
	struct io io = { 0 };
	struct tio_stats st;

	tio_inject_fault(1, EAGAIN, TD_FAULT_READ);
	assert_int_equal(do_io(&f->file, TIO_READ, buf, 8 * KiB, 64 * KiB, 0,
			       td_now_ms() + 10000, &io), 0);
	assert_int_equal(io.retries, 1);
	assert_true(matches(buf, 8 * KiB, 64 * KiB, 0));
	st = stats();
	assert_int_equal(st.faults_injected, 1);
	assert_int_equal(st.errors_transient, 1);
	assert_int_equal(st.retries, 1);
	assert_int_equal(st.timeouts, 0);
	assert_int_equal(st.errors_permanent, 0);
	free(buf);
}

static void test_transient_fault_times_out(void **state)
{
	struct fixture *f = *state;
	uint8_t *buf = abuf(4 * KiB);
	struct io io = { 0 };
	struct tio_stats st;

	fill(buf, 4 * KiB, 0, 9);
	tio_inject_fault(1000, EAGAIN, TD_FAULT_WRITE);
	assert_int_equal(do_io(&f->file, TIO_WRITE, buf, 4 * KiB, 0, 0,
			       td_now_ms() + 1500, &io), -EAGAIN);
	assert_true(io.retries >= 1);
	st = stats();
	assert_int_equal(st.timeouts, 1);
	assert_true(st.retries >= 1);
	assert_int_equal(st.errors_transient, st.retries + 1);
	assert_int_equal(st.faults_injected, st.retries + 1);
	/* It never reached the file. */
	assert_true(file_matches(f->path, 0, 4 * KiB, 0));
	tio_inject_fault(0, 0, 0);
	free(buf);
}

static void test_permanent_fault(void **state)
{
	struct fixture *f = *state;
	uint8_t *buf = abuf(4 * KiB);
	struct io a = { 0 }, b = { 0 };
	struct tio_stats st;

	fill(buf, 4 * KiB, 0, 10);
	tio_inject_fault(1, ENOSPC, TD_FAULT_WRITE);
	assert_int_equal(do_io(&f->file, TIO_WRITE, buf, 4 * KiB, 0, 0,
			       td_now_ms() + 10000, &a), -ENOSPC);
	assert_int_equal(a.retries, 0);
	st = stats();
	assert_int_equal(st.errors_permanent, 1);
	assert_int_equal(st.retries, 0);
	assert_true(file_matches(f->path, 0, 4 * KiB, 0));
	/* The fault is used up: the next write goes through. */
	assert_int_equal(do_io(&f->file, TIO_WRITE, buf, 4 * KiB, 0, 0, 0, &b),
			 0);
	assert_true(file_matches(f->path, 0, 4 * KiB, 10));
	free(buf);
}

static void test_eio_policy(void **state)
{
	struct fixture *f = *state;
	uint8_t *buf = abuf(4 * KiB);
	struct io a = { 0 }, b = { 0 };

	assert_true(tio_errno_transient(EAGAIN));
	assert_true(tio_errno_transient(EBUSY));
	assert_true(tio_errno_transient(EINTR));
	assert_false(tio_errno_transient(ENOSPC));
	assert_false(tio_errno_transient(EROFS));
	assert_false(tio_errno_transient(EINVAL));
	assert_false(tio_errno_transient(EIO));

	tio_inject_fault(1, EIO, TD_FAULT_READ);
	assert_int_equal(do_io(&f->file, TIO_READ, buf, 4 * KiB, 0, 0,
			       td_now_ms() + 10000, &a), -EIO);
	assert_int_equal(a.retries, 0);

	tio_set_eio_transient(true);
	assert_true(tio_errno_transient(EIO));
	tio_inject_fault(1, EIO, TD_FAULT_READ);
	assert_int_equal(do_io(&f->file, TIO_READ, buf, 4 * KiB, 0, 0,
			       td_now_ms() + 10000, &b), 0);
	assert_int_equal(b.retries, 1);
	assert_true(matches(buf, 4 * KiB, 0, 0));
	tio_set_eio_transient(false);
	assert_false(tio_errno_transient(EIO));
	free(buf);
}

static void test_fault_kinds_and_no_deadline(void **state)
{
	struct fixture *f = *state;
	uint8_t *buf = abuf(8 * KiB);
	struct io rd = { 0 }, wr = { 0 }, fl = { 0 };

	/* Only flushes are hit; reads and writes pass by. */
	tio_inject_fault(1, EAGAIN, TD_FAULT_FLUSH);
	fill(buf, 4 * KiB, 6 * MiB, 11);
	submit(req(&f->file, TIO_WRITE, buf, 4 * KiB, 6 * MiB, &wr));
	submit(req(&f->file, TIO_READ, buf + 4 * KiB, 4 * KiB, 0, &rd));
	run();
	assert_int_equal(wr.err, 0);
	assert_int_equal(rd.err, 0);
	assert_int_equal(stats().faults_injected, 0);
	/* No deadline: no retry, and it is not a timeout. */
	assert_int_equal(do_io(&f->file, TIO_FDSYNC, NULL, 0, 0, 0, 0, &fl),
			 -EAGAIN);
	assert_int_equal(fl.retries, 0);
	assert_int_equal(stats().faults_injected, 1);
	assert_int_equal(stats().timeouts, 0);
	assert_int_equal(stats().errors_transient, 1);
	free(buf);
}

/* ---- fallbacks when the kernel refuses ---- */

/*
 * procfs files have no fsync and no write_iter, so the kernel refuses
 * aio fdsync and aio writes on them with EINVAL: tio must switch to
 * fdatasync() and to write + fdsync for FUA, for every file after that.
 */
static void test_fdsync_fallback(void **state)
{
	struct fixture *f = *state;
	struct tio_file proc;
	struct io a = { 0 }, b = { 0 };
	uint64_t iocbs;

	if (tio_file_open(&proc, "/proc/self/status", true, false)) {
		fprintf(stderr, "note: no /proc: %s\n", td_errmsg());
		skip();
	}
	/* Refused by aio, then by fdatasync() itself: a plain error. */
	assert_int_equal(do_io(&proc, TIO_FDSYNC, NULL, 0, 0, 0, 0, &a),
			 -EINVAL);
	tio_file_close(&proc);
	/* From now on flushes are synchronous: no iocb. */
	iocbs = stats().iocbs;
	assert_int_equal(do_io(&f->file, TIO_FDSYNC, NULL, 0, 0, 0, 0, &b), 0);
	assert_int_equal(stats().iocbs, iocbs);
	assert_int_equal(b.retries, 0);
}

static void test_fua_fallback(void **state)
{
	struct fixture *f = *state;
	uint8_t *buf = abuf(8 * KiB);
	struct tio_file proc;
	struct io a = { 0 }, b = { 0 }, c = { 0 };
	uint64_t iocbs;
	char comm[16] = "test-tio";

	if (tio_file_open(&proc, "/proc/self/comm", false, false)) {
		fprintf(stderr, "note: no /proc: %s\n", td_errmsg());
		skip();
	}
	memcpy(buf, comm, sizeof(comm));
	if (do_io(&proc, TIO_WRITE, buf, 8, 0, TIO_FUA, 0, &a) != -EINVAL) {
		tio_file_close(&proc);
		free(buf);
		fprintf(stderr, "note: this kernel takes aio writes to procfs\n");
		skip();
	}
	tio_file_close(&proc);
	/* FUA is now a write and then an fdsync: two iocbs. */
	iocbs = stats().iocbs;
	fill(buf, 8 * KiB, 7 * MiB, 13);
	assert_int_equal(do_io(&f->file, TIO_WRITE, buf, 8 * KiB, 7 * MiB,
			       TIO_FUA, 0, &b), 0);
	assert_int_equal(stats().iocbs, iocbs + 2);
	assert_true(file_matches(f->path, 7 * MiB, 8 * KiB, 13));
	/* The flush half is a flush to fault injection. */
	tio_inject_fault(1, ENOSPC, TD_FAULT_FLUSH);
	assert_int_equal(do_io(&f->file, TIO_WRITE, buf, 8 * KiB, 7 * MiB,
			       TIO_FUA, 0, &c), -ENOSPC);
	free(buf);
}

/* ---- alignment and the end of the file ---- */

static void test_unaligned_goes_buffered(void **state)
{
	struct fixture *f = *state;
	uint8_t *buf = abuf(16 * KiB);
	struct io a = { 0 }, b = { 0 }, c = { 0 }, d = { 0 };

	/* With O_DIRECT these would fail with EINVAL. */
	memset(buf, 0, 16 * KiB);
	assert_int_equal(do_io(&f->file, TIO_READ, buf + 3, 1000, 100, 0, 0,
			       &a), 0);
	assert_true(matches(buf + 3, 1000, 100, 0));

	fill(buf + 1, 777, 3 * 4096 + 5, 12);
	assert_int_equal(do_io(&f->file, TIO_WRITE, buf + 1, 777, 3 * 4096 + 5,
			       0, 0, &b), 0);
	assert_true(file_matches(f->path, 3 * 4096 + 5, 777, 12));
	assert_true(file_matches(f->path, 3 * 4096, 5, 0));
	assert_true(file_matches(f->path, 3 * 4096 + 5 + 777, 100, 0));

	/* Aligned and unaligned side by side are not merged. */
	memset(buf, 0, 16 * KiB);
	submit(req(&f->file, TIO_READ, buf, 4096, 0, &c));
	submit(req(&f->file, TIO_READ, buf + 4096 + 1, 4096, 4096, &d));
	run();
	assert_int_equal(c.err, 0);
	assert_int_equal(d.err, 0);
	assert_true(matches(buf, 4096, 0, 0));
	assert_true(matches(buf + 4096 + 1, 4096, 4096, 0));
	if (f->file.fd != f->file.fd_buffered)
		assert_int_equal(stats().merges, 0);
	free(buf);
}

static void short_file_reads(struct tio_file *file, uint64_t size)
{
	uint8_t *buf = abuf(16 * KiB);
	struct io a = { 0 }, b = { 0 }, c = { 0 }, d = { 0 };

	/* EOF inside the request: the data, then zeros. */
	memset(buf, 0xaa, 16 * KiB);
	assert_int_equal(do_io(file, TIO_READ, buf, 4096, 8192, 0, 0, &a), 0);
	assert_true(matches(buf, size - 8192, 8192, 0));
	assert_true(all(buf + size - 8192, 4096 - (size - 8192), 0));

	/* Wholly past EOF: zeros. */
	memset(buf, 0xaa, 16 * KiB);
	assert_int_equal(do_io(file, TIO_READ, buf, 4096, 5 * 4096, 0, 0, &b),
			 0);
	assert_true(all(buf, 4096, 0));

	/* Merged across EOF: each member gets its share. */
	memset(buf, 0xaa, 16 * KiB);
	submit(req(file, TIO_READ, buf, 4096, 8192, &c));
	submit(req(file, TIO_READ, buf + 4096, 4096, 12288, &d));
	run();
	assert_int_equal(c.err, 0);
	assert_int_equal(d.err, 0);
	assert_true(matches(buf, size - 8192, 8192, 0));
	assert_true(all(buf + size - 8192, 8192 - (size - 8192), 0));
	free(buf);
}

static void test_short_read_at_eof(void **state)
{
	struct fixture *f = *state;
	const uint64_t size = 8192 + 1000;
	struct tio_file direct, buffered;

	write_file(f->path2, size, 0);
	assert_int_equal(tio_file_open(&direct, f->path2, true, true), 0);
	short_file_reads(&direct, size);
	tio_file_close(&direct);
	assert_int_equal(tio_file_open(&buffered, f->path2, true, false), 0);
	short_file_reads(&buffered, size);
	tio_file_close(&buffered);
}

/* ---- everything together, against a model ---- */

#define REGION		(64 * KiB)
#define NREGIONS	(FILE_SIZE / REGION)

static uint32_t rnd_state = 1;

static uint32_t rnd(uint32_t n)
{
	rnd_state = rnd_state * 1103515245u + 12345u;
	return (rnd_state >> 8) % n;
}

static void test_random_against_model(void **state)
{
	struct fixture *f = *state;
	uint8_t *model = malloc(FILE_SIZE), *bufs = abuf(NREGIONS * REGION);
	uint8_t *check = malloc(FILE_SIZE);
	struct io io[NREGIONS];
	struct {
		enum tio_op	op;
		uint64_t	off;
		size_t		len;
		uint8_t		*buf;
	} q[NREGIONS];
	int fd;

	assert_non_null(model);
	assert_non_null(check);
	fill(model, FILE_SIZE, 0, 0);
	for (int round = 0; round < 40; round++) {
		bool used[NREGIONS] = { false };
		int n = 1 + (int)rnd(NREGIONS / 2);

		/* Once, a transient fault that is retried away. */
		if (round == 20)
			tio_inject_fault(3, EBUSY,
					 TD_FAULT_READ | TD_FAULT_WRITE);
		for (int i = 0; i < n; i++) {
			uint32_t reg = rnd(NREGIONS);
			struct tio_req *r;
			uint8_t *base;

			/* In flight together, requests never overlap. */
			if (used[reg]) {
				q[i].len = 0;
				continue;
			}
			used[reg] = true;
			base = bufs + (size_t)reg * REGION;
			q[i].op = rnd(2) ? TIO_WRITE : TIO_READ;
			switch (rnd(3)) {
			case 0:		/* a whole region: merges */
				q[i].off = (uint64_t)reg * REGION;
				q[i].len = REGION;
				q[i].buf = base;
				break;
			case 1:		/* sector aligned */
				q[i].off = (uint64_t)reg * REGION +
					   rnd(64) * 512;
				q[i].len = 512 * (1 + rnd(64));
				if (q[i].off + q[i].len >
				    (uint64_t)(reg + 1) * REGION)
					q[i].len = (reg + 1) * REGION - q[i].off;
				q[i].buf = base;
				break;
			default:	/* anything */
				q[i].off = (uint64_t)reg * REGION +
					   rnd(REGION / 2);
				q[i].len = 1 + rnd(REGION / 2 - 1);
				q[i].buf = base + 1 + rnd(7);
				break;
			}
			if (q[i].op == TIO_WRITE)
				fill(q[i].buf, q[i].len, q[i].off,
				     (uint8_t)round);
			else
				memset(q[i].buf, 0x5a, q[i].len);
			io[i].calls = 0;
			r = req(&f->file, q[i].op, q[i].buf, q[i].len,
				q[i].off, &io[i]);
			r->deadline_ms = td_now_ms() + 10000;
			submit(r);
		}
		run();
		for (int i = 0; i < n; i++) {
			if (!q[i].len)
				continue;
			assert_int_equal(io[i].calls, 1);
			assert_int_equal(io[i].err, 0);
			if (q[i].op == TIO_WRITE)
				memcpy(model + q[i].off, q[i].buf, q[i].len);
			else
				assert_memory_equal(q[i].buf,
						    model + q[i].off, q[i].len);
		}
	}
	assert_true(stats().merges > 0);
	assert_int_equal(stats().faults_injected, 3);
	fd = open(f->path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, check, FILE_SIZE, 0), FILE_SIZE);
	close(fd);
	assert_memory_equal(check, model, FILE_SIZE);
	free(model);
	free(check);
	free(bufs);
}

/* ---- bad input ---- */

static void test_bad_requests(void **state)
{
	struct fixture *f = *state;
	uint8_t *buf = abuf(4 * KiB);
	struct io a = { 0 }, b = { 0 };
	struct tio_file ro, x;
	char dir_path[300];

	/* Refused requests still complete from the loop. */
	assert_int_equal(do_io(&f->file, TIO_READ, buf, 0, 0, 0, 0, &a),
			 -EINVAL);
	assert_int_equal(tio_file_open(&ro, f->path, true, true), 0);
	assert_int_equal(do_io(&ro, TIO_WRITE, buf, 4 * KiB, 0, 0, 0, &b),
			 -EROFS);
	tio_file_close(&ro);

	snprintf(dir_path, sizeof(dir_path), "%s/missing", f->dir);
	assert_int_equal(tio_file_open(&x, dir_path, false, true), -ENOENT);
	assert_non_null(strstr(td_errmsg(), dir_path));
	assert_non_null(strstr(td_errmsg(), "no such file"));
	assert_null(strchr(td_errmsg(), '\n'));
	assert_int_equal(x.fd, -1);

	assert_int_equal(tio_file_open(&x, f->dir, true, true), -EINVAL);
	assert_non_null(strstr(td_errmsg(), "not a regular file"));

	assert_int_equal(tio_init(NR), -EBUSY);
	free(buf);
}

static void test_init_limits(void **state)
{
	(void)state;
	assert_int_equal(td_loop_init(), 0);
	assert_int_equal(tio_init(TIO_RESERVED), -EINVAL);
	assert_non_null(strstr(td_errmsg(), "tio"));
	assert_null(tio_get(TIO_PRIO_META));
	assert_int_equal(tio_init(TIO_RESERVED + 1), 0);
	assert_non_null(tio_get(TIO_PRIO_DATA));
	assert_null(tio_get(TIO_PRIO_DATA));
	tio_fini();
	/* Set up again on the same loop. */
	assert_int_equal(tio_init(NR), 0);
	tio_fini();
	td_loop_fini();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
		T(test_read_write_fdsync),
		T(test_direct_file),
		T(test_merge_adjacent),
		T(test_no_merge),
		T(test_merge_limits),
		T(test_fua),
		T(test_pool_and_reserve),
		T(test_chain_from_done),
		T(test_transient_fault_retried),
		T(test_transient_fault_times_out),
		T(test_permanent_fault),
		T(test_eio_policy),
		T(test_fault_kinds_and_no_deadline),
		T(test_fdsync_fallback),
		T(test_fua_fallback),
		T(test_unaligned_goes_buffered),
		T(test_short_read_at_eof),
		T(test_random_against_model),
		T(test_bad_requests),
#undef T
		cmocka_unit_test(test_init_limits),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
