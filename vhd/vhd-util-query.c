// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * vhd-util query: print facts about an image, one per line, always in the
 * order v, s, p, f, m, d, S, a whatever the order of the flags.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "libvhd.h"
#include "libvhd-info.h"
#include "vhd-util.h"

static void usage(void)
{
	printf("usage: vhd-util query -n NAME [-v] [-s] [-p [-u]] [-f] [-m] [-d] [-S] [-a] [-h]\n");
}

/* Keep the first failure as the exit status; every output is attempted. */
static void note(int *status, int err)
{
	int st = vu_fail(err);

	if (!*status)
		*status = st;
}

int vhd_util_query(int argc, char **argv)
{
	bool virt = false, phys = false, parent = false, fields = false;
	bool marker = false, depth = false, maxsize = false, alloc = false;
	bool unresolved = false;
	const char *name = NULL;
	vhd_context_t ctx;
	int c, err, status = 0;

	while ((c = getopt(argc, argv, ":n:vspfmdSauh")) != -1) {
		switch (c) {
		case 'n':
			name = optarg;
			break;
		case 'v':
			virt = true;
			break;
		case 's':
			phys = true;
			break;
		case 'p':
			parent = true;
			break;
		case 'f':
			fields = true;
			break;
		case 'm':
			marker = true;
			break;
		case 'd':
			depth = true;
			break;
		case 'S':
			maxsize = true;
			break;
		case 'a':
			alloc = true;
			break;
		case 'u':
			unresolved = true;
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
	if (unresolved && !parent)
		return vu_usage("-u modifies -p; give -p too");

	err = vhd_open(&ctx, name, VHD_OPEN_RDONLY);
	if (err)
		return vu_fail(err);

	if (virt)
		printf("%" PRIu64 "\n", ctx.footer.curr_size >> 20);
	if (phys) {
		uint64_t bytes;

		err = vhd_phys_size(&ctx, &bytes);
		if (err)
			note(&status, err);
		else
			printf("%" PRIu64 "\n", bytes);
	}
	if (parent) {
		if (ctx.footer.type != VHD_TYPE_DIFF) {
			printf("%s has no parent\n", name);
		} else {
			char *path = NULL;

			err = vhd_parent_path(&ctx, unresolved, &path);
			if (err)
				note(&status, err);
			else
				printf("%s\n", path);
			free(path);
		}
	}
	if (fields)
		printf("hidden: %u\n", ctx.footer.hidden);
	if (marker) {
		uint8_t m;

		err = vhd_get_marker(&ctx, &m);
		if (err)
			note(&status, err);
		else
			printf("marker: %u\n", m);
	}
	if (depth) {
		int d;

		err = vhd_chain_depth(name, &d);
		if (err)
			note(&status, err);
		else
			printf("chain depth: %d\n", d);
	}
	if (maxsize) {
		uint64_t mb = 0;

		if (vhd_is_dynamic(&ctx))
			mb = ((uint64_t)ctx.header.max_bat_size *
			      ctx.header.block_size) >> 20;
		printf("%" PRIu64 "\n", mb);
	}
	if (alloc)
		printf("%u\n", vhd_allocated_blocks(&ctx));
	vhd_close(&ctx);
	fflush(stdout);
	return status;
}
