// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Sector I/O on real files: writes and reads across block boundaries,
 * bitmaps, the batmap, 4 KiB aligned data, chains, and creation limits.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "libvhd.h"

#define MiB		(1ull << 20)
#define SPB		(VHD_BLOCK_SIZE >> VHD_SECTOR_SHIFT)	/* 4096 */

struct fixture {
	char	dir[256];
	char	path[3][300];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	const char *tmp = getenv("TMPDIR");

	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "%s/test-io.XXXXXX",
		 tmp && *tmp ? tmp : "/tmp");
	if (!mkdtemp(f->dir)) {
		free(f);
		return -1;
	}
	for (int i = 0; i < 3; i++) {
		char dir[sizeof(f->dir)];

		memcpy(dir, f->dir, sizeof(dir));
		snprintf(f->path[i], sizeof(f->path[i]), "%s/img%d.vhd", dir, i);
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	for (int i = 0; i < 3; i++)
		unlink(f->path[i]);
	rmdir(f->dir);
	free(f);
	return 0;
}

/* Sector @s of a recognisable pattern: every byte depends on s and @seed. */
static void fill(uint8_t *buf, uint64_t sec, uint32_t count, uint8_t seed)
{
	for (uint32_t i = 0; i < count; i++)
		for (uint32_t b = 0; b < VHD_SECTOR_SIZE; b++)
			buf[(size_t)i * VHD_SECTOR_SIZE + b] =
				(uint8_t)((sec + i) * 31 + b + seed);
}

static bool is_zero(const uint8_t *buf, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (buf[i])
			return false;
	return true;
}

static void test_write_read_across_blocks(void **state)
{
	struct fixture *f = *state;
	vhd_context_t ctx;
	uint32_t n = 24;		/* 4090 .. 4113: blocks 0 and 1 */
	uint8_t *w = malloc(n * 512), *r = malloc(SPB * 2 * 512);

	assert_non_null(w);
	assert_non_null(r);
	assert_int_equal(vhd_create(f->path[0], 10 * MiB, 0, 0), 0);
	assert_int_equal(vhd_open(&ctx, f->path[0], VHD_OPEN_RDWR), 0);
	assert_int_equal(ctx.footer.type, VHD_TYPE_DYNAMIC);
	assert_int_equal(vhd_sectors(&ctx), 10 * MiB / 512);
	fill(w, 4090, n, 1);
	assert_int_equal(vhd_io_write(&ctx, w, 4090, n), 0);
	vhd_close(&ctx);

	/* Persisted: read it back after reopening, and around it zeros. */
	assert_int_equal(vhd_open(&ctx, f->path[0], VHD_OPEN_RDONLY), 0);
	assert_int_equal(vhd_io_read(&ctx, r, 0, 2 * SPB, NULL), 0);
	assert_true(is_zero(r, 4090 * 512));
	assert_memory_equal(r + 4090 * 512, w, n * 512);
	assert_true(is_zero(r + (4090 + n) * 512, (2 * SPB - 4090 - n) * 512));
	/* An unaligned small read inside the run. */
	assert_int_equal(vhd_io_read(&ctx, r, 4095, 2, NULL), 0);
	assert_memory_equal(r, w + 5 * 512, 2 * 512);
	/* Past the end of the disk. */
	assert_int_not_equal(vhd_io_read(&ctx, r, 10 * MiB / 512 - 1, 2, NULL), 0);
	/* Read-only images refuse writes. */
	assert_int_equal(vhd_io_write(&ctx, w, 0, 1), -EROFS);
	vhd_close(&ctx);
	free(w);
	free(r);
}

static void test_bitmaps(void **state)
{
	struct fixture *f = *state;
	vhd_context_t ctx;
	uint8_t bm[512], present[2 * SPB / 8];
	uint8_t *w = malloc(24 * 512), *r = malloc(2 * SPB * 512);

	assert_non_null(w);
	assert_non_null(r);
	assert_int_equal(vhd_create(f->path[0], 10 * MiB, 0, 0), 0);
	assert_int_equal(vhd_open(&ctx, f->path[0], VHD_OPEN_RDWR), 0);
	fill(w, 4090, 24, 2);
	assert_int_equal(vhd_io_write(&ctx, w, 4090, 24), 0);
	fill(w, 100, 3, 3);
	assert_int_equal(vhd_io_write(&ctx, w, 100, 3), 0);
	assert_int_equal(ctx.bm_secs, 1);

	assert_int_equal(vhd_read_bitmap(&ctx, 0, bm), 0);
	for (uint32_t i = 0; i < SPB; i++)
		assert_int_equal(vhd_bitmap_test(bm, i),
				 (i >= 100 && i < 103) || i >= 4090);
	/* MSB first within each byte. */
	assert_int_equal(bm[100 / 8], 0x0E);	/* bits 100..102: 0000 1110 */
	assert_int_equal(vhd_read_bitmap(&ctx, 1, bm), 0);
	for (uint32_t i = 0; i < SPB; i++)
		assert_int_equal(vhd_bitmap_test(bm, i), i < 18);
	assert_int_equal(vhd_bat_entry(&ctx, 2), VHD_BAT_UNUSED);
	assert_int_not_equal(vhd_read_bitmap(&ctx, 2, bm), 0);

	/* vhd_io_read reports the same sectors as present. */
	memset(present, 0, sizeof(present));
	assert_int_equal(vhd_io_read(&ctx, r, 0, 2 * SPB, present), 0);
	for (uint32_t i = 0; i < 2 * SPB; i++)
		assert_int_equal(vhd_bitmap_test(present, i),
				 (i >= 100 && i < 103) || (i >= 4090 && i < 4114));
	assert_false(vhd_batmap_test(&ctx, 0));
	assert_false(vhd_batmap_test(&ctx, 1));
	vhd_close(&ctx);
	free(w);
	free(r);
}

static void test_batmap_full_block(void **state)
{
	struct fixture *f = *state;
	vhd_context_t ctx;
	uint8_t *w = malloc(SPB * 512), *r = malloc(SPB * 512);

	assert_non_null(w);
	assert_non_null(r);
	assert_int_equal(vhd_create(f->path[0], 10 * MiB, 0, 0), 0);
	assert_int_equal(vhd_open(&ctx, f->path[0], VHD_OPEN_RDWR), 0);
	assert_true(ctx.has_batmap);
	/* Block 2 in two halves: full only after the second. */
	fill(w, 2 * SPB, SPB, 4);
	assert_int_equal(vhd_io_write(&ctx, w, 2 * SPB, SPB / 2), 0);
	assert_false(vhd_batmap_test(&ctx, 2));
	assert_int_equal(vhd_io_write(&ctx, w + SPB / 2 * 512,
				      2 * SPB + SPB / 2, SPB / 2), 0);
	assert_true(vhd_batmap_test(&ctx, 2));
	assert_false(vhd_batmap_test(&ctx, 1));
	/* Block 4 at once. */
	assert_int_equal(vhd_io_write(&ctx, w, 4 * SPB, SPB), 0);
	assert_true(vhd_batmap_test(&ctx, 4));
	vhd_close(&ctx);

	/* On disk too, with a good checksum; and the data reads back. */
	assert_int_equal(vhd_open(&ctx, f->path[0], VHD_OPEN_RDONLY), 0);
	assert_true(ctx.has_batmap);
	assert_true(vhd_batmap_test(&ctx, 2));
	assert_true(vhd_batmap_test(&ctx, 4));
	assert_false(vhd_batmap_test(&ctx, 3));
	assert_int_equal(vhd_io_read(&ctx, r, 2 * SPB, SPB, NULL), 0);
	assert_memory_equal(r, w, SPB * 512);
	vhd_close(&ctx);
	free(w);
	free(r);
}

static void test_data_alignment(void **state)
{
	struct fixture *f = *state;
	vhd_context_t ctx;
	uint8_t w[512];
	const uint32_t blocks[] = { 3, 0, 4, 1 };

	assert_int_equal(vhd_create(f->path[0], 10 * MiB, 0, 0), 0);
	assert_int_equal(vhd_open(&ctx, f->path[0], VHD_OPEN_RDWR), 0);
	fill(w, 0, 1, 5);
	for (size_t i = 0; i < sizeof(blocks) / sizeof(blocks[0]); i++)
		assert_int_equal(vhd_io_write(&ctx, w, blocks[i] * SPB + 7, 1), 0);
	for (size_t i = 0; i < sizeof(blocks) / sizeof(blocks[0]); i++) {
		uint32_t e = vhd_bat_entry(&ctx, blocks[i]);
		uint64_t data = ((uint64_t)e + ctx.bm_secs) * 512;

		assert_int_not_equal(e, VHD_BAT_UNUSED);
		assert_int_equal(data % VHD_DATA_ALIGN, 0);
		assert_true((uint64_t)e * 512 >= vhd_metadata_end(&ctx));
	}
	vhd_close(&ctx);
	/* The file still opens cleanly: BAT valid, footer at the end. */
	assert_int_equal(vhd_open(&ctx, f->path[0], VHD_OPEN_RDONLY), 0);
	vhd_close(&ctx);
}

static void test_snapshot_chain(void **state)
{
	struct fixture *f = *state;
	vhd_context_t ctx;
	vhd_chain_t chain;
	uint32_t total = 3 * SPB;
	uint8_t *p = malloc(total * 512), *c = malloc(100 * 512);
	uint8_t *r = malloc(total * 512), *want = malloc(total * 512);

	assert_non_null(p);
	assert_non_null(c);
	assert_non_null(r);
	assert_non_null(want);
	/* The parent holds blocks 0..2 entirely. */
	assert_int_equal(vhd_create(f->path[0], 6 * MiB, 0, 0), 0);
	assert_int_equal(vhd_open(&ctx, f->path[0], VHD_OPEN_RDWR), 0);
	fill(p, 0, total, 6);
	assert_int_equal(vhd_io_write(&ctx, p, 0, total), 0);
	vhd_close(&ctx);

	assert_int_equal(vhd_snapshot(f->path[1], 0, f->path[0], 0, 0), 0);
	assert_int_equal(vhd_open(&ctx, f->path[1], VHD_OPEN_RDWR), 0);
	assert_int_equal(ctx.footer.type, VHD_TYPE_DIFF);
	assert_int_equal(vhd_sectors(&ctx), 6 * MiB / 512);
	fill(c, 4050, 100, 7);		/* across the block 0/1 boundary */
	assert_int_equal(vhd_io_write(&ctx, c, 4050, 100), 0);
	vhd_close(&ctx);

	memcpy(want, p, total * 512);
	memcpy(want + 4050 * 512, c, 100 * 512);
	assert_int_equal(vhd_chain_open(&chain, f->path[1], VHD_OPEN_RDONLY), 0);
	assert_int_equal(chain.depth, 2);
	assert_int_equal(vhd_chain_read(&chain, r, 0, total), 0);
	assert_memory_equal(r, want, total * 512);
	/* Small reads at the edges of the child's run. */
	assert_int_equal(vhd_chain_read(&chain, r, 4049, 2), 0);
	assert_memory_equal(r, want + 4049 * 512, 2 * 512);
	assert_int_equal(vhd_chain_read(&chain, r, 4149, 2), 0);
	assert_memory_equal(r, want + 4149 * 512, 2 * 512);
	vhd_chain_close(&chain);

	/* The child alone holds only its own sectors. */
	assert_int_equal(vhd_open(&ctx, f->path[1], VHD_OPEN_RDONLY), 0);
	assert_int_equal(vhd_io_read(&ctx, r, 4000, 200, NULL), 0);
	assert_true(is_zero(r, 50 * 512));
	assert_memory_equal(r + 50 * 512, c, 100 * 512);
	assert_true(is_zero(r + 150 * 512, 50 * 512));
	vhd_close(&ctx);
	free(p);
	free(c);
	free(r);
	free(want);
}

static void test_bigger_child_reads_zeros(void **state)
{
	struct fixture *f = *state;
	vhd_context_t ctx;
	vhd_chain_t chain;
	uint32_t psecs = 4 * MiB / 512, csecs = 8 * MiB / 512;
	uint8_t *p = malloc((size_t)psecs * 512), *r = malloc((size_t)csecs * 512);

	assert_non_null(p);
	assert_non_null(r);
	assert_int_equal(vhd_create(f->path[0], 4 * MiB, 0, 0), 0);
	assert_int_equal(vhd_open(&ctx, f->path[0], VHD_OPEN_RDWR), 0);
	memset(p, 0xAA, (size_t)psecs * 512);
	assert_int_equal(vhd_io_write(&ctx, p, 0, psecs), 0);
	vhd_close(&ctx);

	/* Smaller than the parent: refused.  Bigger: fine. */
	assert_int_not_equal(vhd_snapshot(f->path[1], 2 * MiB, f->path[0], 0, 0), 0);
	assert_int_equal(access(f->path[1], F_OK), -1);
	assert_int_equal(vhd_snapshot(f->path[1], 8 * MiB, f->path[0], 0, 0), 0);
	assert_int_equal(vhd_chain_open(&chain, f->path[1], VHD_OPEN_RDONLY), 0);
	assert_int_equal(vhd_sectors(chain.img[0]), csecs);
	assert_int_equal(vhd_chain_read(&chain, r, 0, csecs), 0);
	assert_memory_equal(r, p, (size_t)psecs * 512);
	assert_true(is_zero(r + (size_t)psecs * 512, (size_t)(csecs - psecs) * 512));
	/* A read straddling the parent's end. */
	memset(r, 0x55, 4 * 512);
	assert_int_equal(vhd_chain_read(&chain, r, psecs - 2, 4), 0);
	assert_memory_equal(r, p, 2 * 512);
	assert_true(is_zero(r + 2 * 512, 2 * 512));
	vhd_chain_close(&chain);
	free(p);
	free(r);
}

static void test_create_limits(void **state)
{
	struct fixture *f = *state;
	vhd_context_t ctx;
	struct stat st;
	int fd;

	/* More than 2040 GiB, fixed or dynamic: refused, nothing left. */
	assert_int_equal(vhd_create(f->path[0], VHD_MAX_BYTES + 1, 0, 0), -EINVAL);
	assert_non_null(strstr(vhd_errmsg(), "2040"));
	assert_int_equal(access(f->path[0], F_OK), -1);
	assert_int_equal(vhd_create(f->path[0], VHD_MAX_BYTES + VHD_BLOCK_SIZE, 0,
				    VHD_CREATE_FIXED), -EINVAL);
	assert_int_equal(access(f->path[0], F_OK), -1);
	assert_int_equal(vhd_create(f->path[0], 0, 0, 0), -EINVAL);
	assert_int_equal(access(f->path[0], F_OK), -1);
	/* Exactly the limit is fine for a dynamic image (a small file). */
	assert_int_equal(vhd_create(f->path[0], VHD_MAX_BYTES, 0, 0), 0);
	assert_int_equal(vhd_open(&ctx, f->path[0], VHD_OPEN_RDONLY), 0);
	assert_int_equal(vhd_sectors(&ctx), VHD_MAX_SECTORS);
	vhd_close(&ctx);
	assert_int_equal(unlink(f->path[0]), 0);

	/* An existing file is never touched (O_EXCL). */
	fd = open(f->path[0], O_WRONLY | O_CREAT | O_EXCL, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "keep", 4), 4);
	close(fd);
	assert_int_equal(vhd_create(f->path[0], 10 * MiB, 0, 0), -EEXIST);
	assert_int_equal(vhd_create(f->path[0], 10 * MiB, 0, VHD_CREATE_FIXED), -EEXIST);
	assert_int_equal(stat(f->path[0], &st), 0);
	assert_int_equal(st.st_size, 4);
	/* Dynamic sizes are rounded up to whole 2 MiB blocks. */
	assert_int_equal(vhd_create(f->path[1], 3 * MiB, 0, 0), 0);
	assert_int_equal(vhd_open(&ctx, f->path[1], VHD_OPEN_RDONLY), 0);
	assert_int_equal(ctx.footer.curr_size, 4 * MiB);
	vhd_close(&ctx);
}

static void test_fixed_io(void **state)
{
	struct fixture *f = *state;
	vhd_context_t ctx;
	struct stat st;
	uint8_t w[8 * 512], r[8 * 512];

	assert_int_equal(vhd_create(f->path[0], 3 * MiB, 0, VHD_CREATE_FIXED), 0);
	assert_int_equal(stat(f->path[0], &st), 0);
	assert_int_equal(st.st_size, 3 * MiB + 512);
	assert_int_equal(vhd_open(&ctx, f->path[0], VHD_OPEN_RDWR), 0);
	assert_int_equal(ctx.footer.type, VHD_TYPE_FIXED);
	fill(w, 2044, 8, 8);
	assert_int_equal(vhd_io_write(&ctx, w, 2044, 8), 0);
	assert_int_equal(vhd_io_read(&ctx, r, 2044, 8, NULL), 0);
	assert_memory_equal(r, w, sizeof(w));
	/* The last sector, and one past it. */
	assert_int_equal(vhd_io_write(&ctx, w, 3 * MiB / 512 - 1, 1), 0);
	assert_int_not_equal(vhd_io_write(&ctx, w, 3 * MiB / 512, 1), 0);
	vhd_close(&ctx);
	/* The footer is intact after the writes. */
	assert_int_equal(vhd_open(&ctx, f->path[0], VHD_OPEN_RDONLY), 0);
	vhd_close(&ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_write_read_across_blocks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bitmaps, setup, teardown),
		cmocka_unit_test_setup_teardown(test_batmap_full_block, setup, teardown),
		cmocka_unit_test_setup_teardown(test_data_alignment, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot_chain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bigger_child_reads_zeros, setup, teardown),
		cmocka_unit_test_setup_teardown(test_create_limits, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fixed_io, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
