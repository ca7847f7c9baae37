// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The event loop: one epoll set, timers in a fixed array whose nearest
 * deadline becomes epoll_wait's timeout, and prepare hooks run before
 * every wait.
 *
 * Ids carry a generation next to the slot index, and so does each epoll
 * event, so that a descriptor or timer deleted (or deleted and its slot
 * reused) by one callback is never dispatched from the events already
 * collected in the same batch.
 */
#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "event.h"
#include "log.h"

/* Generations wrap well before an id could overflow an int. */
#define GEN_LIMIT(max)	((uint32_t)(INT_MAX / (max)))

struct fd_slot {
	td_fd_cb	cb;
	void		*arg;
	int		fd;
	uint32_t	gen;
	bool		used;
};

struct timer_slot {
	td_timer_cb	cb;
	void		*arg;
	uint64_t	due;
	uint64_t	period;
	uint64_t	seq;	/* creation order: ties, and a pass's end */
	uint32_t	gen;
	bool		used;
};

struct prepare_slot {
	td_prepare_cb	cb;
	void		*arg;
};

static struct {
	int			epfd;
	bool			running;
	uint64_t		now_ms;		/* td_loop_now_ms(); 0: not running */
	unsigned		nr_prepare;
	uint64_t		timer_seq;
	struct fd_slot		fds[TD_LOOP_MAX_FDS];
	struct timer_slot	timers[TD_LOOP_MAX_TIMERS];
	struct prepare_slot	prepare[TD_LOOP_MAX_PREPARE];
	struct epoll_event	events[TD_LOOP_MAX_FDS];
} loop = { .epfd = -1 };

uint64_t td_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t td_loop_now_ms(void)
{
	return loop.now_ms ? loop.now_ms : td_now_ms();
}

int td_loop_init(void)
{
	int fd;

	if (loop.epfd >= 0)
		return td_fail(EBUSY, "event loop already initialised");
	fd = epoll_create1(EPOLL_CLOEXEC);
	if (fd < 0)
		return td_fail(errno, "epoll_create1: %s", strerror(errno));
	memset(&loop, 0, sizeof(loop));
	loop.epfd = fd;
	return 0;
}

void td_loop_fini(void)
{
	if (loop.epfd >= 0)
		close(loop.epfd);
	memset(&loop, 0, sizeof(loop));
	loop.epfd = -1;
}

/* ---- descriptors ---- */

static struct fd_slot *fd_lookup(int id)
{
	struct fd_slot *s;

	if (id < 0)
		return NULL;
	s = &loop.fds[id % TD_LOOP_MAX_FDS];
	if (!s->used || s->gen != (uint32_t)id / TD_LOOP_MAX_FDS)
		return NULL;
	return s;
}

int td_loop_add_fd(int fd, uint32_t events, td_fd_cb cb, void *arg)
{
	struct epoll_event ev = { .events = events };
	struct fd_slot *s = NULL;
	int i;

	if (loop.epfd < 0 || fd < 0 || !cb)
		return -EINVAL;
	for (i = 0; i < TD_LOOP_MAX_FDS; i++) {
		if (!loop.fds[i].used) {
			s = &loop.fds[i];
			break;
		}
	}
	if (!s)
		return td_fail(ENOSPC, "event loop: more than %d descriptors",
			       TD_LOOP_MAX_FDS);
	s->gen = (s->gen + 1) % GEN_LIMIT(TD_LOOP_MAX_FDS);
	ev.data.u64 = (uint64_t)s->gen << 32 | (uint32_t)i;
	if (epoll_ctl(loop.epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
		return td_fail(errno, "epoll_ctl(ADD, %d): %s", fd,
			       strerror(errno));
	s->fd = fd;
	s->cb = cb;
	s->arg = arg;
	s->used = true;
	return (int)(s->gen * TD_LOOP_MAX_FDS + (uint32_t)i);
}

int td_loop_mod_fd(int id, uint32_t events)
{
	struct fd_slot *s = fd_lookup(id);
	struct epoll_event ev = { .events = events };

	if (!s)
		return -ENOENT;
	ev.data.u64 = (uint64_t)s->gen << 32 | (uint32_t)(s - loop.fds);
	if (epoll_ctl(loop.epfd, EPOLL_CTL_MOD, s->fd, &ev) < 0)
		return -errno;
	return 0;
}

void td_loop_del_fd(int id)
{
	struct fd_slot *s = fd_lookup(id);

	if (!s)
		return;
	/* Fails only if the caller closed the fd first; it is gone anyway. */
	epoll_ctl(loop.epfd, EPOLL_CTL_DEL, s->fd, NULL);
	s->used = false;
	s->cb = NULL;
	s->arg = NULL;
	s->fd = -1;
}

static void dispatch(const struct epoll_event *ev)
{
	uint32_t idx = (uint32_t)ev->data.u64;
	uint32_t gen = (uint32_t)(ev->data.u64 >> 32);
	struct fd_slot *s;

	if (idx >= TD_LOOP_MAX_FDS)
		return;
	s = &loop.fds[idx];
	/* Deleted, or deleted and reused, since epoll_wait returned. */
	if (!s->used || s->gen != gen)
		return;
	s->cb(s->arg, ev->events);
}

/* ---- timers ---- */

static struct timer_slot *timer_lookup(int id)
{
	struct timer_slot *t;

	if (id < 0)
		return NULL;
	t = &loop.timers[id % TD_LOOP_MAX_TIMERS];
	if (!t->used || t->gen != (uint32_t)id / TD_LOOP_MAX_TIMERS)
		return NULL;
	return t;
}

int td_loop_add_timer(uint64_t delay_ms, uint64_t period_ms,
		      td_timer_cb cb, void *arg)
{
	struct timer_slot *t = NULL;
	int i;

	if (loop.epfd < 0 || !cb)
		return -EINVAL;
	for (i = 0; i < TD_LOOP_MAX_TIMERS; i++) {
		if (!loop.timers[i].used) {
			t = &loop.timers[i];
			break;
		}
	}
	if (!t)
		return td_fail(ENOSPC, "event loop: more than %d timers",
			       TD_LOOP_MAX_TIMERS);
	t->gen = (t->gen + 1) % GEN_LIMIT(TD_LOOP_MAX_TIMERS);
	t->due = td_now_ms() + delay_ms;
	t->period = period_ms;
	t->seq = ++loop.timer_seq;
	t->cb = cb;
	t->arg = arg;
	t->used = true;
	return (int)(t->gen * TD_LOOP_MAX_TIMERS + (uint32_t)i);
}

void td_loop_del_timer(int id)
{
	struct timer_slot *t = timer_lookup(id);

	if (!t)
		return;
	t->used = false;
	t->cb = NULL;
	t->arg = NULL;
}

/*
 * Milliseconds until the nearest timer, 0 if one is due, -1 if none.
 * From the time of the last wakeup: a timer may fire late by what the
 * iteration took, never early.
 */
static int next_timeout(void)
{
	uint64_t now = td_loop_now_ms(), first = UINT64_MAX;

	for (int i = 0; i < TD_LOOP_MAX_TIMERS; i++)
		if (loop.timers[i].used && loop.timers[i].due < first)
			first = loop.timers[i].due;
	if (first == UINT64_MAX)
		return -1;
	if (first <= now)
		return 0;
	return first - now > INT_MAX ? INT_MAX : (int)(first - now);
}

/*
 * Fire every due timer, earliest first (creation order on ties).  Timers
 * created during the pass wait for the next one, and a periodic timer is
 * rescheduled past now before its callback runs, so a pass always ends.
 */
static void fire_timers(void)
{
	uint64_t now = td_loop_now_ms(), limit = loop.timer_seq;

	for (;;) {
		struct timer_slot *best = NULL;
		td_timer_cb cb;
		void *arg;

		for (int i = 0; i < TD_LOOP_MAX_TIMERS; i++) {
			struct timer_slot *t = &loop.timers[i];

			if (!t->used || t->seq > limit || t->due > now)
				continue;
			if (!best || t->due < best->due ||
			    (t->due == best->due && t->seq < best->seq))
				best = t;
		}
		if (!best)
			return;
		cb = best->cb;
		arg = best->arg;
		if (best->period) {
			best->due += best->period;
			/* After a stall, skip the missed beats, don't burst. */
			if (best->due <= now)
				best->due = now + best->period;
		} else {
			best->used = false;
			best->cb = NULL;
			best->arg = NULL;
		}
		cb(arg);
	}
}

/* ---- prepare hooks ---- */

int td_loop_add_prepare(td_prepare_cb cb, void *arg)
{
	if (loop.epfd < 0 || !cb)
		return -EINVAL;
	/*
	 * Registering the same hook twice is a no-op: there is no way to
	 * remove one, so a user set up again on the same loop (tio_init
	 * after tio_fini) must not run twice per iteration.
	 */
	for (unsigned i = 0; i < loop.nr_prepare; i++)
		if (loop.prepare[i].cb == cb && loop.prepare[i].arg == arg)
			return 0;
	if (loop.nr_prepare == TD_LOOP_MAX_PREPARE)
		return td_fail(ENOSPC, "event loop: more than %d prepare hooks",
			       TD_LOOP_MAX_PREPARE);
	loop.prepare[loop.nr_prepare].cb = cb;
	loop.prepare[loop.nr_prepare].arg = arg;
	loop.nr_prepare++;
	return 0;
}

/* ---- the loop ---- */

int td_loop_run(void)
{
	if (loop.epfd < 0)
		return -EBADF;
	loop.running = true;
	loop.now_ms = td_now_ms();
	while (loop.running) {
		int n, err;

		for (unsigned i = 0; i < loop.nr_prepare; i++)
			loop.prepare[i].cb(loop.prepare[i].arg);
		if (!loop.running)
			break;
		n = epoll_wait(loop.epfd, loop.events, TD_LOOP_MAX_FDS,
			       next_timeout());
		err = n < 0 ? errno : 0;
		/* The one clock read of this iteration. */
		loop.now_ms = td_now_ms();
		if (n < 0) {
			if (err == EINTR)
				continue;
			loop.running = false;
			loop.now_ms = 0;
			td_err("epoll_wait: %s", strerror(err));
			return -err;
		}
		for (int i = 0; i < n; i++)
			dispatch(&loop.events[i]);
		fire_timers();
	}
	loop.now_ms = 0;
	return 0;
}

void td_loop_stop(void)
{
	loop.running = false;
}
