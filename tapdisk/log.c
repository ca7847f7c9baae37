// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Logging to syslog or stderr, and the one-line message of the last
 * failure (sent back in control replies).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "tapdisk-control.h"

static bool log_syslog;
/* openlog() keeps the pointer it is given, so keep our own copy. */
static char log_ident[32] = "tapdisk";

/* As long as a control reply can carry. */
static _Thread_local char errbuf[TD_ERRMSG_MAX];

void td_log_open(const char *ident, bool use_syslog)
{
	if (ident && *ident)
		snprintf(log_ident, sizeof(log_ident), "%s", ident);
	if (log_syslog)
		closelog();
	log_syslog = use_syslog;
	if (use_syslog)
		openlog(log_ident, LOG_PID, LOG_DAEMON);
}

/* Messages are single lines whatever the caller's arguments held. */
static void one_line(char *s)
{
	for (; *s; s++)
		if (*s == '\n' || *s == '\r')
			*s = ' ';
}

void td_log(int prio, const char *fmt, ...)
{
	int saved = errno;
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	one_line(msg);
	if (log_syslog)
		syslog(prio, "%s", msg);
	else
		fprintf(stderr, "%s[%d]: %s\n", log_ident, (int)getpid(), msg);
	/* Callers often log between a failure and looking at errno. */
	errno = saved;
}

static void set_error(const char *fmt, va_list ap)
{
	vsnprintf(errbuf, sizeof(errbuf), fmt, ap);
	one_line(errbuf);
}

int td_fail(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	set_error(fmt, ap);
	va_end(ap);
	/* Either sign is accepted; a failure is never 0 (that reads as EIO). */
	if (err < 0)
		err = -err;
	return err ? -err : -EIO;
}

void td_set_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	set_error(fmt, ap);
	va_end(ap);
}

const char *td_errmsg(void)
{
	return errbuf[0] ? errbuf : "unknown error";
}
