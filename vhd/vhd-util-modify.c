// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * vhd-util modify: dangerous metadata changes.  -p points a differencing
 * image at another parent, -z drops every data block, -s moves the footer
 * to make the file a given size.  Done in that order when combined.
 */
#include <errno.h>
#include <stdio.h>
#include <unistd.h>

#include "libvhd.h"
#include "libvhd-info.h"
#include "vhd-util.h"

static void usage(void)
{
	printf("usage: vhd-util modify -n NAME [-p NEW_PARENT [-m]] [-s PHYS_SIZE_BYTES] [-z] [-h]\n"
	       "*** dangerous operations, use with care ***\n");
}

int vhd_util_modify(int argc, char **argv)
{
	const char *name = NULL, *parent = NULL, *size_arg = NULL;
	bool raw = false, zero = false;
	uint64_t bytes = 0;
	vhd_context_t ctx;
	int c, err;

	while ((c = getopt(argc, argv, ":n:s:p:mzh")) != -1) {
		switch (c) {
		case 'n':
			name = optarg;
			break;
		case 's':
			size_arg = optarg;
			break;
		case 'p':
			parent = optarg;
			break;
		case 'm':
			raw = true;
			break;
		case 'z':
			zero = true;
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
	if (raw && !parent)
		return vu_usage("-m (raw parent) needs -p parent");
	if (!parent && !zero && !size_arg)
		return vu_usage("nothing to do: give -p, -s or -z");
	if (size_arg && !vu_parse_u64(size_arg, &bytes))
		return vu_usage("invalid size '%s' (bytes)", size_arg);

	err = vhd_open(&ctx, name, VHD_OPEN_RDWR);
	if (err)
		return vu_fail(err);
	if (parent)
		err = vhd_set_parent(&ctx, parent, raw);
	if (!err && zero)
		err = vhd_zero(&ctx);
	if (!err && size_arg)
		err = vhd_set_phys_size(&ctx, bytes);
	if (err) {
		int st = vu_fail(err);

		vhd_close(&ctx);
		return st;
	}
	vhd_close(&ctx);
	return 0;
}
