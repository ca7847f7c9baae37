/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What every vhd-util verb shares: its entry point and a few helpers. */
#ifndef VHD_UTIL_H
#define VHD_UTIL_H

#include <stdbool.h>
#include <stdint.h>

/*
 * Each verb lives in vhd/vhd-util-<verb>.c and returns the process exit
 * status: 0, or a positive errno (as the established tool does).
 * argv[0] is the verb's name; getopt starts afresh (optind is reset).
 */
int vhd_util_create(int argc, char **argv);
int vhd_util_snapshot(int argc, char **argv);
int vhd_util_query(int argc, char **argv);
int vhd_util_read(int argc, char **argv);
int vhd_util_set(int argc, char **argv);
int vhd_util_repair(int argc, char **argv);
int vhd_util_resize(int argc, char **argv);
int vhd_util_fill(int argc, char **argv);
int vhd_util_coalesce(int argc, char **argv);
int vhd_util_modify(int argc, char **argv);
int vhd_util_scan(int argc, char **argv);
int vhd_util_check(int argc, char **argv);
int vhd_util_revert(int argc, char **argv);

/* The verb being run, for messages. */
extern const char *vhd_util_verb;

/* Print "vhd-util VERB: message" as one line on stderr. */
void vu_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Report a libvhd failure (its message names the file); returns the status. */
int vu_fail(int err);
/* A usage error: one line naming the problem, then exit status EINVAL. */
int vu_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Strict number parsing: the whole string, in range; false on junk. */
bool vu_parse_u64(const char *s, uint64_t *out);
/* A size in MiB, checked against overflow, returned in bytes. */
bool vu_parse_mb(const char *s, uint64_t *bytes);
/* Called for an option getopt did not recognise. */
int vu_bad_option(int opt);
/*
 * The end of every verb's getopt loop (option strings start with ':'):
 * @opt ':' is a missing argument, anything else an unknown option.
 */
int vu_opt_error(int opt);
/* After getopt: no stray arguments, and -n was given.  Prints the error. */
bool vu_args_done(int argc, char **argv, const char *name);

#endif
