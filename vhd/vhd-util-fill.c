// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * vhd-util fill: allocate every block of an image, keeping what the disk
 * reads (through its chain), so that it no longer depends on its parents
 * for data.  One block per request.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "libvhd.h"
#include "vhd-util.h"

static void usage(void)
{
	printf("usage: vhd-util fill -n NAME [-h]\n");
}

int vhd_util_fill(int argc, char **argv)
{
	const char *name = NULL;
	vhd_chain_t chain;
	vhd_context_t *leaf;
	uint64_t sectors;
	uint32_t blocks, b;
	uint8_t *buf;
	int c, err = 0;

	while ((c = getopt(argc, argv, ":n:h")) != -1) {
		switch (c) {
		case 'n':
			name = optarg;
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

	err = vhd_chain_open(&chain, name, VHD_OPEN_RDWR);
	if (err)
		return vu_fail(err);
	leaf = chain.img[0];
	if (!vhd_is_dynamic(leaf)) {
		/* A fixed image holds every block already. */
		vhd_chain_close(&chain);
		return 0;
	}
	sectors = vhd_sectors(leaf);
	blocks = vhd_blocks(leaf);
	buf = malloc((size_t)leaf->spb << 9);
	if (!buf) {
		vhd_chain_close(&chain);
		vu_error("out of memory");
		return ENOMEM;
	}
	for (b = 0; b < blocks && !err; b++) {
		uint64_t sec = (uint64_t)b * leaf->spb;
		uint32_t n = leaf->spb;

		/* Already complete in the leaf: nothing to copy. */
		if (vhd_bat_entry(leaf, b) != VHD_BAT_UNUSED &&
		    vhd_batmap_test(leaf, b))
			continue;
		if (n > sectors - sec)
			n = (uint32_t)(sectors - sec);
		err = vhd_chain_read(&chain, buf, sec, n);
		if (!err)
			err = vhd_io_write(leaf, buf, sec, n);
	}
	free(buf);
	if (!err)
		err = vhd_flush(leaf);
	vhd_chain_close(&chain);
	return err ? vu_fail(err) : 0;
}
