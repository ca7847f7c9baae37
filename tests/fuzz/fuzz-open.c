// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * libFuzzer target for whole images: the input becomes a file (a memfd,
 * reached through /proc/self/fd) that goes through vhd_check() with every
 * check switched on, vhd_open() (strict and lenient) and a few reads.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "libvhd.h"

static int fd = -1;
static char path[64];

static void ignore(void *arg, const char *msg)
{
	(*(int *)arg)++;
	if (!msg || !*msg)
		abort();	/* every problem has a description */
}

static void reads(vhd_context_t *ctx)
{
	static uint8_t buf[64 << 9];
	static uint8_t present[8];
	uint64_t n = vhd_sectors(ctx);
	uint64_t at[4] = { 0, n / 2, n > 8 ? n - 8 : 0, n > 64 ? n - 64 : 0 };

	for (int i = 0; i < 4; i++) {
		uint32_t count = n - at[i] < 64 ? (uint32_t)(n - at[i]) : 64;

		if (count)
			(void)vhd_io_read(ctx, buf, at[i], count, present);
	}
	/* Out of range must fail, not read. */
	if (vhd_io_read(ctx, buf, n, 1, NULL) == 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct vhd_check_opts opts;
	vhd_context_t ctx;
	int problems = 0, n;

	if (fd < 0) {
		fd = memfd_create("fuzz-open", MFD_CLOEXEC);
		if (fd < 0) {
			char tmpl[] = "/tmp/fuzz-open.XXXXXX";

			fd = mkstemp(tmpl);
			if (fd < 0)
				abort();
			snprintf(path, sizeof(path), "%s", tmpl);
			unlink(tmpl);
		}
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	}
	if (ftruncate(fd, 0) ||
	    (size && pwrite(fd, data, size, 0) != (ssize_t)size))
		abort();

	memset(&opts, 0, sizeof(opts));
	opts.check_bitmaps = true;
	n = vhd_check(path, &opts, ignore, &problems);
	if (n >= 0 && n != problems)
		abort();	/* the count is the number of reports */
	opts.ignore_footer_copy = opts.ignore_batmap = true;
	opts.ignore_timestamps = true;
	(void)vhd_check(path, &opts, NULL, NULL);

	if (vhd_open(&ctx, path, VHD_OPEN_RDONLY) == 0) {
		reads(&ctx);
		(void)vhd_metadata_end(&ctx);
		vhd_close(&ctx);
	}
	if (vhd_open(&ctx, path, VHD_OPEN_RDONLY | VHD_OPEN_LENIENT) == 0) {
		reads(&ctx);
		vhd_close(&ctx);
	}
	return 0;
}
