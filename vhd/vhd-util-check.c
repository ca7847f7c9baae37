// SPDX-License-Identifier: LGPL-2.1-or-later
/* vhd-util check: report every problem of an image, one line each. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "libvhd.h"
#include "vhd-util.h"

static void usage(void)
{
	printf("options: -n <file> [-i ignore an invalid primary footer or footer copy] "
	       "[-I ignore parent uuids] [-t ignore timestamps] "
	       "[-B ignore the batmap] [-p check parents] [-b check bitmaps] "
	       "[-s stats] [-h help]\n");
}

static void report(void *arg, const char *msg)
{
	vu_error("%s: %s", (const char *)arg, msg);
}

/* Count the set bits of a bitmap of @bits bits. */
static uint64_t count_bits(const uint8_t *bm, uint32_t bits)
{
	uint64_t n = 0;

	for (uint32_t i = 0; i < bits; i++)
		n += vhd_bitmap_test(bm, i);
	return n;
}

static int print_stats(const char *name)
{
	vhd_context_t ctx;
	uint64_t alloc = 0, written = 0;
	uint8_t *bm = NULL;
	int err;

	err = vhd_open(&ctx, name, VHD_OPEN_RDONLY);
	if (err)
		return vu_fail(err);
	if (!vhd_is_dynamic(&ctx)) {
		alloc = written = vhd_sectors(&ctx);
	} else {
		bm = malloc((size_t)ctx.bm_secs << 9);
		if (!bm) {
			vhd_close(&ctx);
			vu_error("%s: out of memory", name);
			return ENOMEM;
		}
		for (uint32_t i = 0; i < ctx.header.max_bat_size; i++) {
			if (vhd_bat_entry(&ctx, i) == VHD_BAT_UNUSED)
				continue;
			alloc += ctx.spb;
			if (vhd_batmap_test(&ctx, i)) {
				written += ctx.spb;
				continue;
			}
			err = vhd_read_bitmap(&ctx, i, bm);
			if (err) {
				free(bm);
				vhd_close(&ctx);
				return vu_fail(err);
			}
			written += count_bits(bm, ctx.spb);
		}
		free(bm);
	}
	printf("%s: secs allocated: 0x%llx secs written: 0x%llx (%.2f%%)\n",
	       name, (unsigned long long)alloc, (unsigned long long)written,
	       alloc ? 100.0 * (double)written / (double)alloc : 0.0);
	vhd_close(&ctx);
	return 0;
}

int vhd_util_check(int argc, char **argv)
{
	struct vhd_check_opts opts;
	const char *name = NULL;
	bool stats = false;
	int c, n;

	memset(&opts, 0, sizeof(opts));
	while ((c = getopt(argc, argv, ":n:iItpbBsh")) != -1) {
		switch (c) {
		case 'n':
			name = optarg;
			break;
		case 'i':
			opts.ignore_footer_copy = true;
			break;
		case 'I':
			opts.ignore_parent_uuid = true;
			break;
		case 't':
			opts.ignore_timestamps = true;
			break;
		case 'p':
			opts.check_parents = true;
			break;
		case 'b':
			opts.check_bitmaps = true;
			break;
		case 'B':
			opts.ignore_batmap = true;
			break;
		case 's':
			stats = true;
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

	n = vhd_check(name, &opts, report, (void *)name);
	if (n < 0)
		return vu_fail(n);
	if (n > 0)
		return EINVAL;
	if (stats)
		return print_stats(name);
	printf("%s is valid\n", name);
	return 0;
}
