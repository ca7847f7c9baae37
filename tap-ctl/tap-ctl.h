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
#include <stdint.h>
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
/* The kernel verbs (tap-ctl/kernel.h). */
int tap_ctl_allocate(int argc, char **argv);
int tap_ctl_free(int argc, char **argv);
int tap_ctl_create(int argc, char **argv);
int tap_ctl_destroy(int argc, char **argv);
int tap_ctl_major(int argc, char **argv);
int tap_ctl_check(int argc, char **argv);

/* The verb being run, for messages. */
extern const char *tc_verb;

/* Print "tap-ctl: VERB: message" as one line on stderr; returns @status. */
int tc_error(int status, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* A failed client call: its message, exit status TC_EXIT_FAIL. */
int tc_fail(void);

/* Strict numbers: the whole string, decimal, in [min, max]. */
bool tc_parse_long(const char *s, long min, long max, long *out);

/* The disk a verb addresses: -p and -m.  0 and -1 when not given. */
struct tc_target {
	pid_t	pid;
	int	minor;
};

/*
 * A verb's command line: its own flags besides -p, -m and -h, which
 * tc_parse() handles for every verb.
 */
struct tc_cmdline {
	const char	*usage;		/* printed by -h */
	const char	*flags;		/* the verb's own getopt letters */
	/* One of @flags (with @arg if it takes one); 0 or an exit status. */
	int		(*flag)(void *ctx, int opt, const char *arg);
	enum {
		TC_TARGET_REQUIRED,	/* -p and -m, both needed */
		TC_TARGET_OPTIONAL,	/* -p and -m, both optional */
		TC_TARGET_NONE,		/* no -p, no -m */
	} target;
};

/* tc_parse(): the command line is good, go on. */
#define TC_CONTINUE		(-1)

/*
 * Parse argv as @cl says, -p and -m into @t (NULL for TC_TARGET_NONE),
 * the verb's own flags through cl->flag(@ctx, ...).  No arguments may
 * follow the options.  TC_CONTINUE, or the exit status to return now
 * (message printed; -h: usage printed, TC_EXIT_OK).
 */
int tc_parse(int argc, char **argv, const struct tc_cmdline *cl, void *ctx,
	     struct tc_target *t);

/*
 * Fill @o's image from a "type:path" argument (NULL: none): a known type,
 * a path, made absolute (tapdisk runs in "/").  0 or an exit status
 * (message printed).
 */
int tc_open_params(struct td_ctl_open *o, const char *image);
/*
 * The image flags open and create share: -a (into *@image), -R, -D,
 * -e MINOR, -t SECS (into @o).  Other flags are ignored.  0 or an exit
 * status (message printed).
 */
int tc_open_flag(struct td_ctl_open *o, const char **image, int opt,
		 const char *arg);
/* Is @type (up to @len bytes) one of the known image types? */
bool tc_known_type(const char *type, size_t len);
/* Make @path absolute against the working directory; false if too long. */
bool tc_abspath(const char *path, char *out, size_t size);

/*
 * Send a request of @type to @t.  @req carries the body (NULL: none) and
 * @rep receives the reply (NULL: not wanted).  tc_request() returns 0 or
 * a negative errno (tdc_errmsg() says why); tc_send() returns the exit
 * status, the reason printed on failure.
 */
int tc_request(const struct tc_target *t, uint16_t type,
	       struct td_ctl_msg *req, struct td_ctl_msg *rep);
int tc_send(const struct tc_target *t, uint16_t type, struct td_ctl_msg *req,
	    struct td_ctl_msg *rep);

/* A whole verb that is only its command line and a bodiless request. */
int tc_target_verb(int argc, char **argv, const struct tc_cmdline *cl,
		   uint16_t type);

#endif
