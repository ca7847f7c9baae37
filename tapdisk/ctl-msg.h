/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Validation of control requests, kept free of any state or I/O so that
 * unit tests and the fuzzer can call it on arbitrary bytes.
 */
#ifndef TD_CTL_MSG_H
#define TD_CTL_MSG_H

#include <stddef.h>

#include "tapdisk-control.h"

/* Descriptors an ATTACH from the rig carries: memfd, kick, notify. */
#define TD_CTL_ATTACH_FDS	3

/*
 * Check one received request: @buf holds the @len bytes of the message
 * (any alignment), @nfds the number of descriptors that came with it.
 * Returns 0, or -EPROTO (not a message of this protocol: too short, bad
 * magic, version or length) or -EINVAL (a well-framed request with a bad
 * field), with a one-line reason in @why.
 */
int td_ctl_validate(const void *buf, size_t len, int nfds, char *why,
		    size_t whylen);

#endif
