// SPDX-License-Identifier: LGPL-2.1-or-later
/* tap-ctl free: give a tap's minor back to the kernel. */
#include "kernel.h"
#include "tap-ctl.h"

/* -m, the only flag (tapdisks are not involved: no -p). */
static int free_flag(void *ctx, int opt, const char *arg)
{
	long v;

	(void)opt;
	if (!tc_parse_long(arg, 0, TC_MINOR_MAX, &v))
		return tc_error(TC_EXIT_USAGE,
				"invalid minor '%s' (a number from 0 to %d)",
				arg, TC_MINOR_MAX);
	*(long *)ctx = v;
	return 0;
}

static const struct tc_cmdline cmdline = {
	.usage = "usage: tap-ctl free -m MINOR [-h]\n"
		 "  refused while a tapdisk is attached or the block device is open\n",
	.flags = "m:",
	.flag = free_flag,
	.target = TC_TARGET_NONE,
};

int tap_ctl_free(int argc, char **argv)
{
	long minor = -1;
	int rc = tc_parse(argc, argv, &cmdline, &minor, NULL);

	if (rc != TC_CONTINUE)
		return rc;
	if (minor < 0)
		return tc_error(TC_EXIT_USAGE, "missing -m minor");
	return tck_free((unsigned int)minor);
}
