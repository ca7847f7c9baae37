/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The virtual block device: the one disk this tapdisk serves.
 *
 * It owns the image chain, the request pool and the ring transport, and
 * applies the request timeout and the watchdog.  Calls return 0 or a
 * negative errno with td_errmsg() naming the problem.  Pause and close
 * wait for in-flight requests, so they complete through a callback.
 */
#ifndef TD_VBD_H
#define TD_VBD_H

#include <stdbool.h>
#include <stdint.h>

#include "tapdisk-control.h"

#define TD_DEFAULT_TIMEOUT_S	120
#define TD_WATCHDOG_S		10

struct blktap_ring_request;

typedef void (*vbd_done_fn)(void *arg, int err);

int vbd_init(void);
void vbd_fini(void);

/* The ring of the rig: shared memory and two eventfds (taken over). */
int vbd_attach_fds(int minor, int memfd, int kick_fd, int notify_fd);
/* The kernel's ring device for @minor. */
int vbd_attach_kernel(int minor);
/* Refused while an image is open. */
int vbd_detach(int minor);

/*
 * Open "type:path" (and its parents).  @timeout_s 0 means the default.
 * @secondary is the -e minor or -1.
 */
int vbd_open(int minor, const char *params, uint32_t flags,
	     uint32_t timeout_s, int secondary);
/* Drain (or with @force fail in-flight requests) and close the images. */
int vbd_close(int minor, bool force, vbd_done_fn done, void *arg);
/* Stop admitting, drain, close images; done(-EALREADY) if already paused. */
int vbd_pause(int minor, vbd_done_fn done, void *arg);
/* Reopen, onto @params when not NULL/empty; refuses a different size. */
int vbd_unpause(int minor, const char *params);

void vbd_info(struct td_ctl_info *info);
void vbd_stats(struct td_ctl_stats *st);
int vbd_fault(const struct td_ctl_fault *f);

/* True when nothing is attached or open (SIGTERM may exit at once). */
bool vbd_idle(void);

/* From the transport: a request arrived (already copied out of the ring). */
void vbd_queue(const struct blktap_ring_request *req);

#endif
