// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * vhd-util repair -n NAME [-b]: make a damaged image clean (vhd_repair()
 * says what it fixes, in libvhd/repair.c), then check that it is.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "libvhd.h"
#include "vhd-util.h"

static void said(void *arg, const char *msg)
{
	printf("%s: %s\n", (const char *)arg, msg);
}

static void still(void *arg, const char *msg)
{
	vu_error("%s: still invalid after repair: %s", (const char *)arg, msg);
}

int vhd_util_repair(int argc, char **argv)
{
	struct vhd_check_opts opts;
	const char *name = NULL;
	bool rebuild = false;
	int c, n, err;

	while ((c = getopt(argc, argv, ":n:bh")) != -1) {
		switch (c) {
		case 'n':
			name = optarg;
			break;
		case 'b':
			rebuild = true;
			break;
		case 'h':
			printf("options: <-n name> [-b rebuild the batmap] [-h help]\n");
			return 0;
		default:
			return vu_opt_error(c);
		}
	}
	if (!vu_args_done(argc, argv, name))
		return EINVAL;
	err = vhd_repair(name, rebuild, said, (void *)name);
	if (err)
		return vu_fail(err);
	memset(&opts, 0, sizeof(opts));
	n = vhd_check(name, &opts, still, (void *)name);
	if (n < 0)
		return vu_fail(n);
	return n ? EINVAL : 0;
}
