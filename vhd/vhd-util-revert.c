// SPDX-License-Identifier: LGPL-2.1-or-later
/* vhd-util revert: undo an interrupted journaled resize. */
#include <errno.h>
#include <stdio.h>
#include <unistd.h>

#include "libvhd.h"
#include "vhd-util.h"

static void usage(void)
{
	printf("usage: vhd-util revert -n NAME -j JOURNAL [-h]\n");
}

int vhd_util_revert(int argc, char **argv)
{
	const char *name = NULL, *journal = NULL;
	int c, err;

	while ((c = getopt(argc, argv, ":n:j:h")) != -1) {
		switch (c) {
		case 'n':
			name = optarg;
			break;
		case 'j':
			journal = optarg;
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
	if (!journal)
		return vu_usage("missing -j journal");
	err = vhd_journal_revert(name, journal);
	return err ? vu_fail(err) : 0;
}
