// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * vhd-util snapshot: a differencing image on top of a parent.  Unless told
 * otherwise (-e, -m), empty differencing parents are skipped: the child is
 * linked to the first ancestor that holds data, as blktap does.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "libvhd.h"
#include "libvhd-info.h"
#include "vhd-util.h"

static void usage(void)
{
	printf("usage: vhd-util snapshot -n NAME -p PARENT [-l DEPTH_LIMIT] [-m] [-S MAX_SIZE_MB] [-e] [-h]\n");
}

/*
 * From @parent down, skip differencing images without a single allocated
 * block.  *backing gets the first image that holds data (malloc'd), and
 * *raw tells whether it is a raw file.
 */
static int find_backing(const char *parent, char **backing, bool *raw)
{
	char *path = strdup(parent);
	int hops = 0, err;

	*raw = false;
	if (!path) {
		vhd_set_error("%s: out of memory", parent);
		return -ENOMEM;
	}
	for (;;) {
		vhd_context_t ctx;
		char *next = NULL;
		bool empty, praw;

		if (hops++ > VHD_MAX_CHAIN) {
			vhd_set_error("%s: chain deeper than %d images", parent,
				      VHD_MAX_CHAIN);
			free(path);
			return -ELOOP;
		}
		err = vhd_open(&ctx, path, VHD_OPEN_RDONLY);
		if (err) {
			free(path);
			return err;
		}
		empty = ctx.footer.type == VHD_TYPE_DIFF &&
			!vhd_allocated_blocks(&ctx);
		praw = uuid_is_null(ctx.header.prt_uuid);
		if (empty)
			err = vhd_parent_path(&ctx, false, &next);
		vhd_close(&ctx);
		if (err) {
			free(path);
			return err;
		}
		if (!empty)
			break;
		free(path);
		path = next;
		if (praw) {
			*raw = true;
			break;
		}
	}
	*backing = path;
	return 0;
}

static bool same_file(const char *a, const char *b)
{
	char ra[PATH_MAX], rb[PATH_MAX];

	if (!realpath(a, ra) || !realpath(b, rb))
		return !strcmp(a, b);
	return !strcmp(ra, rb);
}

int vhd_util_snapshot(int argc, char **argv)
{
	const char *name = NULL, *parent = NULL, *reserve_arg = NULL;
	const char *limit_arg = NULL;
	uint64_t reserve = 0, limit = 0, bytes = 0;
	bool parent_raw = false, use_given = false;
	char *backing = NULL;
	int c, err, flags = 0;

	while ((c = getopt(argc, argv, ":n:p:S:l:meh")) != -1) {
		switch (c) {
		case 'n':
			name = optarg;
			break;
		case 'p':
			parent = optarg;
			break;
		case 'S':
			reserve_arg = optarg;
			break;
		case 'l':
			limit_arg = optarg;
			break;
		case 'm':
			parent_raw = true;
			break;
		case 'e':
			use_given = true;
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
	if (!parent)
		return vu_usage("missing -p parent");
	if (reserve_arg && !vu_parse_mb(reserve_arg, &reserve))
		return vu_usage("invalid -S size '%s' (a whole number of MiB)",
				reserve_arg);
	if (limit_arg && (!vu_parse_u64(limit_arg, &limit) || !limit ||
			  limit > INT_MAX))
		return vu_usage("invalid -l depth limit '%s'", limit_arg);

	if (parent_raw || use_given) {
		backing = strdup(parent);
		if (!backing) {
			vu_error("out of memory");
			return ENOMEM;
		}
	} else {
		err = find_backing(parent, &backing, &parent_raw);
		if (err)
			return vu_fail(err);
		if (!same_file(backing, parent)) {
			/*
			 * Keep the size of the parent we were given; when the
			 * backing image has that size already, inherit it
			 * exactly (an explicit size is rounded to 2 MiB).
			 */
			vhd_context_t ctx;
			uint64_t bsize;

			err = vhd_open(&ctx, parent, VHD_OPEN_RDONLY);
			if (!err) {
				bytes = ctx.footer.curr_size;
				vhd_close(&ctx);
				err = vhd_open(&ctx, backing, VHD_OPEN_RDONLY |
					       (parent_raw ? VHD_OPEN_RAW : 0));
			}
			if (err) {
				free(backing);
				return vu_fail(err);
			}
			bsize = vhd_sectors(&ctx) << 9;
			vhd_close(&ctx);
			if (bsize == bytes)
				bytes = 0;
		}
	}
	if (parent_raw)
		flags |= VHD_CREATE_PARENT_RAW;

	if (limit_arg) {
		int depth = 1;

		if (!parent_raw) {
			err = vhd_chain_depth(backing, &depth);
			if (err) {
				free(backing);
				return vu_fail(err);
			}
		}
		if ((uint64_t)depth + 1 > limit) {
			vu_error("snapshot depth exceeded: current depth: %d, limit: %llu",
				 depth, (unsigned long long)limit);
			free(backing);
			return ENOSPC;
		}
	}
	err = vhd_snapshot(name, bytes, backing, reserve, flags);
	free(backing);
	if (err)
		return vu_fail(err);
	return 0;
}
