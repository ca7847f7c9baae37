/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What the tap-ctl verbs share.  Each verb lives in tap-ctl-<verb>.c, is
 * one entry of the table in tap-ctl.c, and returns the exit status.
 * argv[0] is the verb's name; getopt starts afresh for each verb.
 */
#ifndef TAP_CTL_H
#define TAP_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "client.h"

/* Exit statuses (documented in tap-ctl(8)). */
#define TC_EXIT_OK		0
#define TC_EXIT_FAIL		1	/* the operation failed */
#define TC_EXIT_USAGE		2	/* bad flags, arguments or numbers */
#define TC_EXIT_ALREADY		3	/* pause: the disk was already paused */

/* Minors are Linux minor numbers: 20 bits. */
#define TC_MINOR_MAX		((1 << 20) - 1)
#define TC_TIMEOUT_MAX		86400	/* -t: one day */

int tap_ctl_spawn(int argc, char **argv);
int tap_ctl_attach(int argc, char **argv);
int tap_ctl_detach(int argc, char **argv);
int tap_ctl_open(int argc, char **argv);
int tap_ctl_close(int argc, char **argv);
int tap_ctl_pause(int argc, char **argv);
int tap_ctl_unpause(int argc, char **argv);
int tap_ctl_list(int argc, char **argv);
int tap_ctl_stats(int argc, char **argv);

/* The verb being run, for messages. */
extern const char *tc_verb;

/* Print "tap-ctl: VERB: message" as one line on stderr; returns @status. */
int tc_error(int status, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* A failed client call: its message, exit status TC_EXIT_FAIL. */
int tc_fail(void);
/* The end of each getopt loop (option strings start with ':'). */
int tc_opt_error(int opt);
/* No arguments may follow the options. */
bool tc_no_args(int argc, char **argv);

/* Strict numbers: the whole string, decimal, in [min, max]. */
bool tc_parse_long(const char *s, long min, long max, long *out);

/* -p and -m, parsed and required by the verbs that address one disk. */
struct tc_target {
	pid_t	pid;
	int	minor;
};
/* Handle option @opt (p or m) of @t; returns 0 or an exit status. */
int tc_target_opt(struct tc_target *t, int opt, const char *arg);
/* After getopt: both were given.  0 or an exit status (message printed). */
int tc_target_done(const struct tc_target *t);

/*
 * Check "type:path" (a known type, a path) and make the path absolute
 * (tapdisk runs in "/").  0 or an exit status (message printed).
 */
int tc_image_arg(const char *arg, char *out, size_t size);
/* Is @type (up to @len bytes) one of the known image types? */
bool tc_known_type(const char *type, size_t len);
/* Make @path absolute against the working directory; false if too long. */
bool tc_abspath(const char *path, char *out, size_t size);

/* One request to @t; 0 or a negative errno (tdc_errmsg() says why). */
int tc_request(const struct tc_target *t, struct td_ctl_msg *req,
	       struct td_ctl_msg *rep);

#endif
