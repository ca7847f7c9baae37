// SPDX-License-Identifier: LGPL-2.1-or-later
/* vhd-util create: a new dynamic (or, with -r, fixed) image. */
#include <errno.h>
#include <stdio.h>
#include <unistd.h>

#include "libvhd.h"
#include "vhd-util.h"

static void usage(void)
{
	printf("usage: vhd-util create -n NAME -s SIZE_MB [-r] [-S MAX_SIZE_MB] [-h]\n");
}

int vhd_util_create(int argc, char **argv)
{
	const char *name = NULL, *size_arg = NULL, *reserve_arg = NULL;
	uint64_t bytes = 0, reserve = 0;
	int flags = 0, c, err;

	while ((c = getopt(argc, argv, ":n:s:S:rh")) != -1) {
		switch (c) {
		case 'n':
			name = optarg;
			break;
		case 's':
			size_arg = optarg;
			break;
		case 'S':
			reserve_arg = optarg;
			break;
		case 'r':
			flags |= VHD_CREATE_FIXED;
			break;
		case 'h':
			usage();
			return 0;
		default:
			return vu_opt_error(c);
		}
	}
	if (!vu_args_done(argc, argv, name))
		return EINVAL;
	if (!size_arg)
		return vu_usage("missing -s size (MiB)");
	if (!vu_parse_mb(size_arg, &bytes))
		return vu_usage("invalid size '%s' (a whole number of MiB)", size_arg);
	if (reserve_arg && !vu_parse_mb(reserve_arg, &reserve))
		return vu_usage("invalid -S size '%s' (a whole number of MiB)",
				reserve_arg);
	if (reserve && (flags & VHD_CREATE_FIXED))
		return vu_usage("-S (metadata preallocation) makes no sense with -r (fixed image)");
	err = vhd_create(name, bytes, reserve, flags);
	if (err)
		return vu_fail(err);
	return 0;
}
