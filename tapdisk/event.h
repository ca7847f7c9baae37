/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The event loop: epoll for descriptors, a monotonic clock for timers,
 * and "prepare" hooks run before each wait (where work queued during an
 * iteration is pushed out in one batch: io_submit, ring wakeups).
 *
 * Capacities are fixed at compile time, so registering nothing allocates
 * and the loop itself never allocates.
 */
#ifndef TD_EVENT_H
#define TD_EVENT_H

#include <stdbool.h>
#include <stdint.h>

#define TD_LOOP_MAX_FDS		64
#define TD_LOOP_MAX_TIMERS	32
#define TD_LOOP_MAX_PREPARE	8

/* @events: EPOLLIN | EPOLLOUT | EPOLLERR | EPOLLHUP as reported. */
typedef void (*td_fd_cb)(void *arg, uint32_t events);
typedef void (*td_timer_cb)(void *arg);
typedef void (*td_prepare_cb)(void *arg);

int td_loop_init(void);
void td_loop_fini(void);

/* Watch @fd for @events (EPOLLIN...); returns an id >= 0 or -errno. */
int td_loop_add_fd(int fd, uint32_t events, td_fd_cb cb, void *arg);
int td_loop_mod_fd(int id, uint32_t events);
/* Safe to call from inside any callback, including the fd's own. */
void td_loop_del_fd(int id);

/*
 * Call @cb once after @delay_ms, then every @period_ms if it is not 0.
 * Returns an id >= 0 or -errno.  td_loop_del_timer() is safe from any
 * callback, including the timer's own.
 */
int td_loop_add_timer(uint64_t delay_ms, uint64_t period_ms,
		      td_timer_cb cb, void *arg);
void td_loop_del_timer(int id);

/* Call @cb before every wait; returns 0 or -errno. */
int td_loop_add_prepare(td_prepare_cb cb, void *arg);

/* Run until td_loop_stop(); returns 0, or -errno if epoll itself fails. */
int td_loop_run(void);
void td_loop_stop(void);

/* Milliseconds on CLOCK_MONOTONIC. */
uint64_t td_now_ms(void);

/*
 * td_now_ms() as read when the loop last woke up: for per-request
 * bookkeeping (deadlines, progress), so that the clock is read once per
 * loop iteration rather than several times per request (a system call
 * where the clock source has no vDSO, e.g. in a TCG guest).  Never ahead
 * of the clock; behind it by at most the current iteration.  Outside
 * td_loop_run() it reads the clock.
 */
uint64_t td_loop_now_ms(void);

#endif
