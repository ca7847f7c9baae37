// SPDX-License-Identifier: LGPL-2.1-or-later
/* The last error message, kept per thread so callers can print one line. */
#include <stdarg.h>
#include <stdio.h>

#include "libvhd.h"

static _Thread_local char errbuf[512];

const char *vhd_errmsg(void)
{
	return errbuf[0] ? errbuf : "unknown error";
}

void vhd_set_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(errbuf, sizeof(errbuf), fmt, ap);
	va_end(ap);
}
