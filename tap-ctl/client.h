/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The client side of the tapdisk control protocol, shared by tap-ctl and
 * the test rig.  Functions return 0 (or a count) or a negative errno, and
 * leave a one-line reason in tdc_errmsg() (for a refused request, the
 * tapdisk's own message).
 */
#ifndef TAP_CTL_CLIENT_H
#define TAP_CTL_CLIENT_H

#include <stdbool.h>
#include <sys/types.h>

#include "tapdisk-control.h"

const char *tdc_errmsg(void);

/* The control directory (TD_CTL_DIR or $BLKTAP_CONTROL_DIR). */
const char *tdc_dir(void);

/* Connect to tapdisk @pid: -ESRCH "no tapdisk with pid N" when absent. */
int tdc_connect(pid_t pid);

/*
 * Send @req (length, magic, version and cookie are filled in here) with
 * @nfds descriptors, and wait up to @timeout_ms (0: forever) for the reply
 * into @rep.  Returns rep->status, or -errno when the exchange failed.
 */
int tdc_call(int sock, struct td_ctl_msg *req, const int *fds, int nfds,
	     struct td_ctl_msg *rep, int timeout_ms);

/* Connect, call, close: the usual one-shot. */
int tdc_request(pid_t pid, struct td_ctl_msg *req, struct td_ctl_msg *rep);

/*
 * Start a tapdisk (the binary next to the caller's, or $TAPDISK) and wait
 * until its control socket is up.  Returns its pid, or -errno.
 */
pid_t tdc_spawn(void);

/* Every running tapdisk's info; *out malloc'd.  Returns the count. */
int tdc_list(struct td_ctl_info **out);

/* Fill an OPEN/UNPAUSE body; -EINVAL on a params string that is too long. */
int tdc_set_params(struct td_ctl_open *o, const char *params);

#endif
