// SPDX-License-Identifier: LGPL-2.1-or-later
/* Helpers shared by the vhd-util verbs. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "libvhd.h"
#include "vhd-util.h"

const char *vhd_util_verb = "";

static void vprint(const char *fmt, va_list ap)
{
	char msg[1024];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	/* One line, whatever the message held. */
	for (char *p = msg; *p; p++)
		if (*p == '\n')
			*p = ' ';
	fprintf(stderr, "vhd-util %s: %s\n", vhd_util_verb, msg);
}

void vu_error(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vprint(fmt, ap);
	va_end(ap);
}

int vu_fail(int err)
{
	vu_error("%s", vhd_errmsg());
	if (err < 0)
		err = -err;
	return err > 0 && err < 256 ? err : EIO;
}

int vu_usage(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vprint(fmt, ap);
	va_end(ap);
	return EINVAL;
}

int vu_bad_option(int opt)
{
	if (opt == '?')
		return vu_usage("unknown option or missing argument (see 'man vhd-util')");
	return vu_usage("unknown option -%c", opt);
}

int vu_opt_error(int opt)
{
	if (opt == ':')
		return vu_usage("option -%c needs an argument", optopt);
	return vu_bad_option(optopt ? optopt : '?');
}

bool vu_args_done(int argc, char **argv, const char *name)
{
	if (optind < argc) {
		vu_usage("unexpected argument '%s'", argv[optind]);
		return false;
	}
	if (!name) {
		vu_usage("missing -n name");
		return false;
	}
	return true;
}

bool vu_parse_u64(const char *s, uint64_t *out)
{
	unsigned long long v;
	char *end;

	if (!s || !*s || *s == '-' || *s == '+')
		return false;
	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || *end)
		return false;
	*out = v;
	return true;
}

bool vu_parse_mb(const char *s, uint64_t *bytes)
{
	uint64_t mb;

	if (!vu_parse_u64(s, &mb) || mb > (UINT64_MAX >> 20))
		return false;
	*bytes = mb << 20;
	return true;
}
