// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * vhd-util resize: change the virtual size of an image, either in place
 * within the preallocated metadata (-f), or offline with an undo journal
 * (-j) for any growth (and for shrinking fixed images).
 */
#include <errno.h>
#include <stdio.h>
#include <unistd.h>

#include "libvhd.h"
#include "vhd-util.h"

static void usage(void)
{
	printf("usage: vhd-util resize -n NAME -s SIZE_MB (-j JOURNAL | -f) [-h]\n"
	       "  -f          fast: grow in place, up to the size the metadata was\n"
	       "              created for (create/snapshot -S)\n"
	       "  -j JOURNAL  journaled: any growth (moves data blocks if the BAT\n"
	       "              must grow); undo with 'vhd-util revert' after a crash\n");
}

int vhd_util_resize(int argc, char **argv)
{
	const char *name = NULL, *size_arg = NULL, *journal = NULL;
	bool fast = false;
	uint64_t bytes;
	vhd_context_t ctx;
	int c, err;

	while ((c = getopt(argc, argv, ":n:s:j:fh")) != -1) {
		switch (c) {
		case 'n':
			name = optarg;
			break;
		case 's':
			size_arg = optarg;
			break;
		case 'j':
			journal = optarg;
			break;
		case 'f':
			fast = true;
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
	if (!bytes)
		return vu_usage("size must be greater than zero");
	if (fast == !!journal)
		return vu_usage("give exactly one of -j JOURNAL (journaled) or -f (fast)");

	if (journal) {
		err = vhd_resize_journaled(name, bytes, journal);
		return err ? vu_fail(err) : 0;
	}
	err = vhd_open(&ctx, name, VHD_OPEN_RDWR);
	if (err)
		return vu_fail(err);
	err = vhd_resize_fast(&ctx, bytes);
	vhd_close(&ctx);
	return err ? vu_fail(err) : 0;
}
