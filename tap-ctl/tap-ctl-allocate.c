// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * tap-ctl allocate: have the kernel allocate a tap (a minor, its ring
 * device) and print the path its block device will have.
 */
#include <stdio.h>

#include "blktap-ring.h"
#include "kernel.h"
#include "tap-ctl.h"

/* -d: a name of the caller's choosing for the block device. */
static int allocate_flag(void *ctx, int opt, const char *arg)
{
	(void)opt;
	if (!*arg || *arg != '/')
		return tc_error(TC_EXIT_USAGE,
				"invalid -d devname '%s' (an absolute path)",
				arg);
	*(const char **)ctx = arg;
	return 0;
}

static const struct tc_cmdline cmdline = {
	.usage = "usage: tap-ctl allocate [-d DEVNAME] [-h]\n"
		 "  -d  also name the block device DEVNAME (a symlink), and print that\n",
	.flags = "d:",
	.flag = allocate_flag,
	.target = TC_TARGET_NONE,
};

int tap_ctl_allocate(int argc, char **argv)
{
	const char *devname = NULL;
	unsigned int minor;
	int rc = tc_parse(argc, argv, &cmdline, &devname, NULL);

	if (rc != TC_CONTINUE)
		return rc;
	rc = tck_allocate(&minor);
	if (rc)
		return rc;
	if (devname) {
		rc = tck_link_devname(devname, minor);
		if (rc) {
			tck_release(minor);
			return rc;
		}
		printf("%s\n", devname);
	} else {
		printf(BLKTAP2_TAPDEV_FMT "\n", minor);
	}
	return fflush(stdout) ? tc_error(TC_EXIT_FAIL, "cannot write the "
					 "device's name") : TC_EXIT_OK;
}
