/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * tapdisk's control socket: <dir>/ctl<pid>, where dir is
 * $BLKTAP_CONTROL_DIR or /run/blktap-control.  Requests are validated
 * (ctl-msg.h) and dispatched to the vbd; every request gets exactly one
 * reply while its client stays connected.
 */
#ifndef TD_CONTROL_H
#define TD_CONTROL_H

/* Clients served at once; one more is accepted and closed at once. */
#define TD_CTL_MAX_CLIENTS	16

/*
 * Create the directory (0700, ours) if needed, bind and listen, and
 * register with the event loop (td_loop_init() first).  Fault injection
 * is allowed only if TD_FAULTS_ENV is set (non-empty) at this point.
 * 0 or -errno with td_errmsg() set.
 */
int td_control_init(void);
/* Close every connection and the socket, and remove the socket file. */
void td_control_fini(void);

/* The socket's path, "" before td_control_init(). */
const char *td_control_path(void);

#endif
