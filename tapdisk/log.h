/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Logging: syslog once daemonized, stderr in the foreground.  Also the
 * one-line error message of the last failure, for control replies.
 */
#ifndef TD_LOG_H
#define TD_LOG_H

#include <stdbool.h>
#include <syslog.h>

void td_log_open(const char *ident, bool use_syslog);
void td_log(int prio, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define td_err(...)	td_log(LOG_ERR, __VA_ARGS__)
#define td_warn(...)	td_log(LOG_WARNING, __VA_ARGS__)
#define td_info(...)	td_log(LOG_INFO, __VA_ARGS__)
#define td_debug(...)	td_log(LOG_DEBUG, __VA_ARGS__)

/*
 * Record a one-line reason for the failure being returned, and return
 * -@err, so that "return td_fail(ENOENT, "...", ...)" reads naturally.
 */
int td_fail(int err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void td_set_error(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));
const char *td_errmsg(void);

#endif
