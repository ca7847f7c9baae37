// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The event loop (timers, descriptors, prepare hooks, deletion from inside
 * callbacks) and the logging helpers.
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
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <cmocka.h>

#include "event.h"
#include "log.h"

/* Every loop run in these tests ends well before this. */
#define GUARD_MS	5000

static bool guard_fired;

static void on_guard(void *arg)
{
	(void)arg;
	guard_fired = true;
	td_loop_stop();
}

/* Run the loop with a guard timer so a broken loop fails, not hangs. */
static void run_loop(void)
{
	int id;

	guard_fired = false;
	id = td_loop_add_timer(GUARD_MS, 0, on_guard, NULL);
	assert_true(id >= 0);
	assert_int_equal(td_loop_run(), 0);
	td_loop_del_timer(id);
	assert_false(guard_fired);
}

static int setup(void **state)
{
	(void)state;
	return td_loop_init();
}

static int teardown(void **state)
{
	(void)state;
	td_loop_fini();
	return 0;
}

static void stop_cb(void *arg)
{
	(void)arg;
	td_loop_stop();
}

/* ---- timers ---- */

struct order {
	int	seen[16];
	int	n;
	int	stop_after;
};

struct tag {
	struct order	*o;
	int		value;
};

static void record(void *arg)
{
	struct tag *t = arg;

	t->o->seen[t->o->n++] = t->value;
	if (t->o->n == t->o->stop_after)
		td_loop_stop();
}

static void test_timers_fire_in_order(void **state)
{
	struct order o = { .stop_after = 5 };
	struct tag tags[5];
	/*
	 * Created in this order, due in the order of the values; of the two
	 * with equal delays, the one created first fires first.
	 */
	static const struct { int delay, value; } plan[] = {
		{ 60, 4 }, { 20, 1 }, { 0, 0 }, { 40, 3 }, { 20, 2 },
	};

	(void)state;
	for (int i = 0; i < 5; i++) {
		tags[i].o = &o;
		tags[i].value = plan[i].value;
	}
	for (int i = 0; i < 5; i++)
		assert_true(td_loop_add_timer(plan[i].delay, 0, record,
					      &tags[i]) >= 0);
	run_loop();
	assert_int_equal(o.n, 5);
	for (int i = 0; i < 5; i++)
		assert_int_equal(o.seen[i], i);
}

struct periodic {
	int	id;
	int	count;
	int	stop_id;
};

static void on_periodic(void *arg)
{
	struct periodic *p = arg;

	if (++p->count == 4) {
		/* Delete ourselves from our own callback; then stop later. */
		td_loop_del_timer(p->id);
		p->stop_id = td_loop_add_timer(30, 0, stop_cb, NULL);
	}
}

static void test_periodic_timer_repeats(void **state)
{
	struct periodic p = { 0 };
	uint64_t start = td_now_ms();

	(void)state;
	p.id = td_loop_add_timer(5, 5, on_periodic, &p);
	assert_true(p.id >= 0);
	run_loop();
	assert_int_equal(p.count, 4);
	assert_true(p.stop_id >= 0);
	/* Four beats of 5 ms cannot have taken less than 20 ms. */
	assert_true(td_now_ms() - start >= 20);
}

struct killer {
	int	victim;
	int	fired;
};

static void on_killer(void *arg)
{
	struct killer *k = arg;

	k->fired++;
	td_loop_del_timer(k->victim);
}

static void on_victim(void *arg)
{
	int *fired = arg;

	(*fired)++;
}

static void test_timer_deleted_by_earlier_timer(void **state)
{
	struct killer k = { 0 };
	int victim_fired = 0;

	(void)state;
	/* Both due in the same pass; the first deletes the second. */
	assert_true(td_loop_add_timer(0, 0, on_killer, &k) >= 0);
	k.victim = td_loop_add_timer(0, 0, on_victim, &victim_fired);
	assert_true(k.victim >= 0);
	assert_true(td_loop_add_timer(20, 0, stop_cb, NULL) >= 0);
	run_loop();
	assert_int_equal(k.fired, 1);
	assert_int_equal(victim_fired, 0);
}

/* A timer added by a callback waits for the next pass, even if due now. */
static int chain_count;

static void on_chain(void *arg)
{
	(void)arg;
	if (++chain_count < 3)
		assert_true(td_loop_add_timer(0, 0, on_chain, NULL) >= 0);
	else
		td_loop_stop();
}

static void test_timer_added_from_timer(void **state)
{
	(void)state;
	chain_count = 0;
	assert_true(td_loop_add_timer(0, 0, on_chain, NULL) >= 0);
	run_loop();
	assert_int_equal(chain_count, 3);
}

static void test_timer_limits(void **state)
{
	int ids[TD_LOOP_MAX_TIMERS];

	(void)state;
	for (int i = 0; i < TD_LOOP_MAX_TIMERS; i++) {
		ids[i] = td_loop_add_timer(100000, 0, stop_cb, NULL);
		assert_true(ids[i] >= 0);
	}
	assert_int_equal(td_loop_add_timer(1, 0, stop_cb, NULL), -ENOSPC);
	assert_non_null(strstr(td_errmsg(), "timers"));
	/* A deleted id stays dead even once its slot is reused. */
	td_loop_del_timer(ids[3]);
	int again = td_loop_add_timer(100000, 0, stop_cb, NULL);

	assert_true(again >= 0);
	assert_int_not_equal(again, ids[3]);
	td_loop_del_timer(ids[3]);
	assert_int_equal(td_loop_add_timer(1, 0, stop_cb, NULL), -ENOSPC);
	td_loop_del_timer(-1);
	td_loop_del_timer(123456789);
	assert_int_equal(td_loop_add_timer(1, 0, NULL, NULL), -EINVAL);
}

/* ---- descriptors ---- */

struct fdctx {
	int		fd;
	int		id;
	int		calls;
	uint32_t	events;
	struct fdctx	*other;	/* to delete */
	struct fdctx	*spare;	/* to register in other's place */
	bool		del_self;
	bool		drain;	/* an eventfd: read it to quiet it */
	bool		stop;
};

static void on_fd(void *arg, uint32_t events)
{
	struct fdctx *c = arg;

	c->calls++;
	c->events = events;
	if (c->drain) {
		uint64_t v;

		assert_int_equal(read(c->fd, &v, sizeof(v)), 8);
	}
	if (c->other) {
		td_loop_del_fd(c->other->id);
		c->other = NULL;
	}
	if (c->spare) {
		c->spare->id = td_loop_add_fd(c->spare->fd, EPOLLIN, on_fd,
					      c->spare);
		assert_true(c->spare->id >= 0);
		c->spare = NULL;
	}
	if (c->del_self)
		td_loop_del_fd(c->id);
	if (c->stop)
		td_loop_stop();
}

static int ready_eventfd(void)
{
	int fd = eventfd(1, EFD_NONBLOCK | EFD_CLOEXEC);

	assert_true(fd >= 0);
	return fd;
}

static void test_fd_events(void **state)
{
	struct fdctx r = { 0 }, w = { 0 };
	int p[2];
	char c = 'x';

	(void)state;
	assert_int_equal(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
	r.fd = p[0];
	w.fd = p[1];
	r.stop = true;
	r.id = td_loop_add_fd(p[0], EPOLLIN, on_fd, &r);
	assert_true(r.id >= 0);

	/* Nothing to read yet: only a write wakes the reader. */
	w.id = td_loop_add_fd(p[1], EPOLLOUT, on_fd, &w);
	assert_true(w.id >= 0);
	w.stop = true;
	run_loop();
	assert_int_equal(r.calls, 0);
	assert_true(w.calls >= 1);
	assert_true(w.events & EPOLLOUT);

	/* Stop watching the writer; make the reader readable. */
	assert_int_equal(td_loop_mod_fd(w.id, 0), 0);
	w.calls = 0;
	assert_int_equal(write(p[1], &c, 1), 1);
	run_loop();
	assert_int_equal(r.calls, 1);
	assert_true(r.events & EPOLLIN);
	assert_int_equal(w.calls, 0);

	/* The writer gone: the reader sees the hang-up. */
	assert_int_equal(read(p[0], &c, 1), 1);
	td_loop_del_fd(w.id);
	close(p[1]);
	run_loop();
	assert_int_equal(r.calls, 2);
	assert_true(r.events & EPOLLHUP);

	assert_int_equal(td_loop_mod_fd(w.id, EPOLLIN), -ENOENT);
	td_loop_del_fd(r.id);
	close(p[0]);
}

static void test_fd_deleted_in_same_batch(void **state)
{
	struct fdctx a = { 0 }, b = { 0 };

	(void)state;
	/* Both ready at once: whichever runs first deletes the other. */
	a.fd = ready_eventfd();
	b.fd = ready_eventfd();
	a.other = &b;
	b.other = &a;
	a.drain = b.drain = true;
	a.id = td_loop_add_fd(a.fd, EPOLLIN, on_fd, &a);
	b.id = td_loop_add_fd(b.fd, EPOLLIN, on_fd, &b);
	assert_true(a.id >= 0 && b.id >= 0);
	assert_true(td_loop_add_timer(20, 0, stop_cb, NULL) >= 0);
	run_loop();
	assert_int_equal(a.calls + b.calls, 1);
	td_loop_del_fd(a.calls ? a.id : b.id);
	close(a.fd);
	close(b.fd);
}

static void test_fd_slot_reused_in_same_batch(void **state)
{
	struct fdctx a = { 0 }, b = { 0 }, c = { 0 };
	int fired_first;

	(void)state;
	/*
	 * The first to run deletes the other and registers a new, idle
	 * descriptor, which takes the freed slot: the stale event collected
	 * for the deleted one must not reach the newcomer.
	 */
	a.fd = ready_eventfd();
	b.fd = ready_eventfd();
	c.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	assert_true(c.fd >= 0);
	a.other = &b;
	b.other = &a;
	a.drain = b.drain = true;
	a.spare = &c;
	b.spare = &c;
	a.id = td_loop_add_fd(a.fd, EPOLLIN, on_fd, &a);
	b.id = td_loop_add_fd(b.fd, EPOLLIN, on_fd, &b);
	assert_true(td_loop_add_timer(20, 0, stop_cb, NULL) >= 0);
	run_loop();
	assert_int_equal(a.calls + b.calls, 1);
	assert_int_equal(c.calls, 0);
	fired_first = a.calls ? a.id : b.id;
	/* The newcomer took the deleted one's slot, under a new id. */
	assert_int_equal(c.id % TD_LOOP_MAX_FDS,
			 (a.calls ? b.id : a.id) % TD_LOOP_MAX_FDS);
	assert_int_not_equal(c.id, a.calls ? b.id : a.id);
	td_loop_del_fd(fired_first);
	td_loop_del_fd(c.id);
	close(a.fd);
	close(b.fd);
	close(c.fd);
}

static void test_fd_deletes_itself(void **state)
{
	struct fdctx a = { 0 };

	(void)state;
	/* Level-triggered and never drained: only the deletion stops it. */
	a.fd = ready_eventfd();
	a.del_self = true;
	a.id = td_loop_add_fd(a.fd, EPOLLIN, on_fd, &a);
	assert_true(a.id >= 0);
	assert_true(td_loop_add_timer(30, 0, stop_cb, NULL) >= 0);
	run_loop();
	assert_int_equal(a.calls, 1);
	close(a.fd);
}

static void test_fd_errors(void **state)
{
	int fds[TD_LOOP_MAX_FDS + 1];
	int ids[TD_LOOP_MAX_FDS];

	(void)state;
	assert_int_equal(td_loop_add_fd(-1, EPOLLIN, on_fd, NULL), -EINVAL);
	for (int i = 0; i <= TD_LOOP_MAX_FDS; i++) {
		fds[i] = eventfd(0, EFD_CLOEXEC);
		assert_true(fds[i] >= 0);
	}
	for (int i = 0; i < TD_LOOP_MAX_FDS; i++) {
		ids[i] = td_loop_add_fd(fds[i], EPOLLIN, on_fd, NULL);
		assert_true(ids[i] >= 0);
	}
	assert_int_equal(td_loop_add_fd(fds[TD_LOOP_MAX_FDS], EPOLLIN, on_fd,
					NULL), -ENOSPC);
	td_loop_del_fd(ids[0]);
	/* The same descriptor twice is refused by epoll. */
	assert_int_equal(td_loop_add_fd(fds[1], EPOLLIN, on_fd, NULL),
			 -EEXIST);
	for (int i = 1; i < TD_LOOP_MAX_FDS; i++)
		td_loop_del_fd(ids[i]);
	for (int i = 0; i <= TD_LOOP_MAX_FDS; i++)
		close(fds[i]);
}

/* ---- prepare hooks ---- */

struct prep {
	int	*log;
	int	*n;
	int	tag;
	bool	stop;
};

static void on_prepare(void *arg)
{
	struct prep *p = arg;

	p->log[(*p->n)++] = p->tag;
	if (p->stop)
		td_loop_stop();
}

static void test_prepare_order(void **state)
{
	int log[16], n = 0;
	struct prep a = { log, &n, 1, false }, b = { log, &n, 2, true };

	(void)state;
	assert_int_equal(td_loop_add_prepare(on_prepare, &a), 0);
	assert_int_equal(td_loop_add_prepare(on_prepare, &b), 0);
	/* The same hook again is not run twice. */
	assert_int_equal(td_loop_add_prepare(on_prepare, &a), 0);
	/* Registration order, every run; b stops before any wait. */
	run_loop();
	run_loop();
	assert_int_equal(n, 4);
	for (int i = 0; i < n; i++)
		assert_int_equal(log[i], i % 2 ? 2 : 1);
	assert_int_equal(td_loop_add_prepare(NULL, NULL), -EINVAL);
}

struct kick {
	int	efd;
	int	prepared;
	int	woken;
};

/* Work pushed out by a hook is seen by the wait that follows it. */
static void on_kick_prepare(void *arg)
{
	struct kick *k = arg;
	uint64_t one = 1;

	if (k->prepared++ == 0)
		assert_int_equal(write(k->efd, &one, sizeof(one)), 8);
}

static void on_kicked(void *arg, uint32_t events)
{
	struct kick *k = arg;
	uint64_t v;

	(void)events;
	assert_int_equal(read(k->efd, &v, sizeof(v)), 8);
	k->woken++;
	td_loop_stop();
}

static void test_prepare_before_wait(void **state)
{
	struct kick k = { .efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC) };
	int id;

	(void)state;
	assert_true(k.efd >= 0);
	id = td_loop_add_fd(k.efd, EPOLLIN, on_kicked, &k);
	assert_true(id >= 0);
	assert_int_equal(td_loop_add_prepare(on_kick_prepare, &k), 0);
	run_loop();
	assert_int_equal(k.prepared, 1);
	assert_int_equal(k.woken, 1);
	td_loop_del_fd(id);
	close(k.efd);
}

static void on_count_prepare(void *arg)
{
	(*(int *)arg)++;
}

static int beats;

static void on_beat(void *arg)
{
	(void)arg;
	if (++beats == 3)
		td_loop_stop();
}

static void test_prepare_every_iteration(void **state)
{
	int count = 0;

	(void)state;
	beats = 0;
	assert_int_equal(td_loop_add_prepare(on_count_prepare, &count), 0);
	assert_true(td_loop_add_timer(2, 2, on_beat, NULL) >= 0);
	run_loop();
	assert_int_equal(beats, 3);
	/* Each beat needed a wait of its own, and a hook run before it. */
	assert_true(count >= 3);
}

static void test_prepare_limit(void **state)
{
	int args[TD_LOOP_MAX_PREPARE + 1];

	(void)state;
	for (int i = 0; i < TD_LOOP_MAX_PREPARE; i++)
		assert_int_equal(td_loop_add_prepare(on_count_prepare,
						     &args[i]), 0);
	assert_int_equal(td_loop_add_prepare(on_count_prepare,
					     &args[TD_LOOP_MAX_PREPARE]),
			 -ENOSPC);
}

/* ---- the loop itself ---- */

static void test_loop_state(void **state)
{
	uint64_t a, b;

	(void)state;
	/* Initialised by setup(): a second init is refused. */
	assert_int_equal(td_loop_init(), -EBUSY);
	td_loop_fini();
	assert_int_equal(td_loop_run(), -EBADF);
	assert_int_equal(td_loop_add_timer(1, 0, stop_cb, NULL), -EINVAL);
	assert_int_equal(td_loop_init(), 0);

	a = td_now_ms();
	usleep(20000);
	b = td_now_ms();
	assert_true(b >= a + 19);
}

/* ---- the loop's clock ---- */

struct clock_probe {
	uint64_t	loop_a, loop_b;	/* td_loop_now_ms() before/after a sleep */
	uint64_t	real_a;		/* td_now_ms() at the start of the callback */
};

static void on_clock_probe(void *arg)
{
	struct clock_probe *c = arg;

	c->loop_a = td_loop_now_ms();
	c->real_a = td_now_ms();
	usleep(30000);
	c->loop_b = td_loop_now_ms();
	td_loop_stop();
}

static void test_loop_clock(void **state)
{
	struct clock_probe c = { 0 };
	uint64_t start, a, b;

	(void)state;
	/* Outside td_loop_run() it is the clock itself. */
	a = td_loop_now_ms();
	usleep(20000);
	b = td_loop_now_ms();
	assert_true(b >= a + 19);

	start = td_now_ms();
	assert_true(td_loop_add_timer(10, 0, on_clock_probe, &c) >= 0);
	assert_int_equal(td_loop_run(), 0);
	/* Read when the loop woke up: the timer was due, never ahead. */
	assert_true(c.loop_a >= start + 10);
	assert_true(c.loop_a <= c.real_a);
	/* One reading per iteration: 30 ms in a callback do not move it. */
	assert_int_equal(c.loop_b, c.loop_a);
	/* After the loop, the clock again. */
	assert_true(td_loop_now_ms() >= c.real_a + 30);
}

/* ---- logging ---- */

static void test_fail_message(void **state)
{
	(void)state;
	assert_int_equal(td_fail(ENOENT, "%s: no such file", "/x/y"), -ENOENT);
	assert_string_equal(td_errmsg(), "/x/y: no such file");
	/* Either sign; never 0. */
	assert_int_equal(td_fail(-EINVAL, "bad"), -EINVAL);
	assert_int_equal(td_fail(0, "odd"), -EIO);
	/* Always one line. */
	td_set_error("two\nlines");
	assert_string_equal(td_errmsg(), "two lines");
	/* Cut to what a reply carries, not overflowing. */
	char big[1000];

	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	td_set_error("%s", big);
	assert_true(strlen(td_errmsg()) < 300);
}

static void test_log_to_stderr(void **state)
{
	const char *tmp = getenv("TMPDIR");
	char path[512], buf[256] = { 0 }, want[64];
	int fd, saved;

	(void)state;
	snprintf(path, sizeof(path), "%s/test-event-log.XXXXXX",
		 tmp && *tmp ? tmp : "/tmp");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	saved = dup(STDERR_FILENO);
	assert_true(saved >= 0);
	fflush(stderr);
	assert_true(dup2(fd, STDERR_FILENO) >= 0);
	td_log_open("tdtest", false);
	errno = ERANGE;
	td_err("disk %d\nis %s", 3, "gone");
	/* Logging leaves errno alone. */
	assert_int_equal(errno, ERANGE);
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	assert_true(pread(fd, buf, sizeof(buf) - 1, 0) > 0);
	close(fd);
	snprintf(want, sizeof(want), "tdtest[%d]: disk 3 is gone\n",
		 (int)getpid());
	assert_string_equal(buf, want);
	td_log_open("tapdisk", false);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
		T(test_timers_fire_in_order),
		T(test_periodic_timer_repeats),
		T(test_timer_deleted_by_earlier_timer),
		T(test_timer_added_from_timer),
		T(test_timer_limits),
		T(test_fd_events),
		T(test_fd_deleted_in_same_batch),
		T(test_fd_slot_reused_in_same_batch),
		T(test_fd_deletes_itself),
		T(test_fd_errors),
		T(test_prepare_order),
		T(test_prepare_before_wait),
		T(test_prepare_every_iteration),
		T(test_prepare_limit),
		T(test_loop_state),
		T(test_loop_clock),
		T(test_fail_message),
		T(test_log_to_stderr),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
