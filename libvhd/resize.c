// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Resizing images: the fast in-place resize within the preallocated BAT,
 * and the journaled resize for everything else, with its undo journal.
 *
 * Journal file format (all integers big-endian):
 *
 *   sector 0: header
 *     0   magic "vhdrsjnl"
 *     8   u32 version (1)
 *     12  u32 state: 1 = being written, 2 = complete
 *     16  uuid of the image (16 bytes)
 *     32  u64 size of the image file before the resize
 *     40  u32 number of entries
 *     48  u64 length of the journal file
 *     56  u64 requested new virtual size (informational)
 *     504 u64 FNV-1a 64 of bytes 0..503
 *   then per entry: one sector
 *     0   magic "vhdjentr"
 *     8   u64 offset in the image
 *     16  u64 length in bytes
 *     24  u64 FNV-1a 64 of the payload
 *     32  u32 index of the entry
 *     504 u64 FNV-1a 64 of bytes 0..503
 *   followed by the payload (the image's bytes before the resize), padded
 *   to a whole sector.
 *
 * The header is first written with state 1; the entries follow; after an
 * fsync the header is rewritten with state 2 and synced again.  Only then
 * is the image touched.  A journal in state 1 (or empty) therefore means the
 * image was never modified.  Reverting writes every saved range back and
 * truncates the image to its old size; the journal is removed last, so an
 * interrupted revert can simply be run again.
 */
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "private.h"

#define JNL_MAGIC	"vhdrsjnl"
#define JNL_ENT_MAGIC	"vhdjentr"
#define JNL_VERSION	1u
#define JNL_WRITING	1u
#define JNL_COMPLETE	2u
#define JNL_CSUM_OFF	504
#define COPY_CHUNK	(1u << 20)

void (*vhd_resize_step_hook)(int step);

static void step(int n)
{
	if (vhd_resize_step_hook)
		vhd_resize_step_hook(n);
}

static uint64_t fnv_init(void)
{
	return 0xcbf29ce484222325ull;
}

static uint64_t fnv_add(uint64_t h, const uint8_t *p, size_t len)
{
	while (len--) {
		h ^= *p++;
		h *= 0x100000001b3ull;
	}
	return h;
}

static int sync_dir_of(const char *path)
{
	char tmp[PATH_MAX];
	int fd, err = 0;

	if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	fd = open(dirname(tmp), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fsync(fd))
		err = -errno;
	close(fd);
	return err;
}

/* ---- fast resize ------------------------------------------------------ */

uint64_t vhd_max_fast_resize(const vhd_context_t *ctx)
{
	uint64_t max;

	if (!vhd_is_dynamic(ctx))
		return ctx->raw ? ctx->raw_size : ctx->footer.curr_size;
	max = (uint64_t)ctx->header.max_bat_size * ctx->header.block_size;
	if (max > VHD_MAX_BYTES)
		max = VHD_MAX_BYTES;
	if (max < ctx->footer.curr_size)
		max = ctx->footer.curr_size;
	return max;
}

/* The new virtual size of a dynamic image, or a negative errno. */
static int dynamic_target(const vhd_context_t *ctx, uint64_t bytes,
			  uint64_t *out)
{
	uint64_t want = round_up(bytes, ctx->header.block_size);

	if (!bytes)
		return vhd_fail(ctx->file, EINVAL, "size must be greater than zero");
	if (want > VHD_MAX_BYTES)
		return vhd_fail(ctx->file, EINVAL,
				"size %llu MiB exceeds the VHD limit of 2040 GiB (2088960 MiB)",
				(unsigned long long)(want >> 20));
	if (want < ctx->footer.curr_size)
		return vhd_fail(ctx->file, EINVAL,
				"shrinking a dynamic image is not supported (%llu MiB < current %llu MiB)",
				(unsigned long long)(want >> 20),
				(unsigned long long)(ctx->footer.curr_size >> 20));
	*out = want;
	return 0;
}

/* The new footer goes to the end copy first, then to offset 0; synced. */
static int set_virtual_size(vhd_context_t *ctx, uint64_t bytes)
{
	struct vhd_footer f = ctx->footer;
	int err;

	f.curr_size = bytes;
	f.geometry = vhd_chs(bytes >> VHD_SECTOR_SHIFT);
	err = vhd_write_footer(ctx, &f);
	if (err)
		return err;
	return vhd_sync(ctx->fd, ctx->file);
}

int vhd_resize_fast(vhd_context_t *ctx, uint64_t bytes)
{
	uint64_t want, max;
	int err;

	if (ctx->raw)
		return vhd_fail(ctx->file, EINVAL, "cannot resize a raw image");
	if (!vhd_is_dynamic(ctx))
		return vhd_fail(ctx->file, EINVAL,
				"a fixed image cannot be resized in place; use a journaled resize (-j)");
	if (!(ctx->oflags & VHD_OPEN_RDWR))
		return vhd_fail(ctx->file, EROFS, "image is open read-only");
	err = dynamic_target(ctx, bytes, &want);
	if (err)
		return err;
	if (want == ctx->footer.curr_size)
		return 0;
	max = vhd_max_fast_resize(ctx);
	if (want > max)
		return vhd_fail(ctx->file, EINVAL,
				"%llu MiB exceeds the %llu MiB the metadata was sized for (create -S); use a journaled resize (-j)",
				(unsigned long long)(want >> 20),
				(unsigned long long)(max >> 20));
	return set_virtual_size(ctx, want);
}

/* ---- the journal --------------------------------------------------------- */

struct range {
	uint64_t off, len;
};

#define MAX_RANGES	4

struct plan {
	uint64_t	orig_size;	/* of the file */
	uint64_t	new_bytes;	/* virtual */
	int		nranges;
	struct range	ranges[MAX_RANGES];
	bool		journal_made;	/* ours, complete: revert on failure */
};

static void add_range(struct plan *p, uint64_t off, uint64_t end)
{
	if (end > p->orig_size)
		end = p->orig_size;
	if (off >= end || p->nranges >= MAX_RANGES)
		return;
	p->ranges[p->nranges].off = off;
	p->ranges[p->nranges].len = end - off;
	p->nranges++;
}

static void encode_jheader(uint8_t buf[512], uint32_t state,
			   const uuid_t uuid, const struct plan *p,
			   uint64_t jlen)
{
	memset(buf, 0, 512);
	memcpy(buf, JNL_MAGIC, 8);
	put_be32(buf + 8, JNL_VERSION);
	put_be32(buf + 12, state);
	memcpy(buf + 16, uuid, 16);
	put_be64(buf + 32, p->orig_size);
	put_be32(buf + 40, (uint32_t)p->nranges);
	put_be64(buf + 48, jlen);
	put_be64(buf + 56, p->new_bytes);
	put_be64(buf + JNL_CSUM_OFF, fnv_add(fnv_init(), buf, JNL_CSUM_OFF));
}

static int journal_write(vhd_context_t *ctx, const char *journal,
			 struct plan *p)
{
	uint8_t hdr[512], *buf;
	uint64_t pos = VHD_SECTOR_SIZE;
	int fd, err = 0, i;

	fd = open(journal, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		if (errno == EEXIST)
			return vhd_fail(journal, EEXIST,
					"journal already exists (an interrupted resize? run 'vhd-util revert -n %s -j %s')",
					ctx->file, journal);
		return vhd_fail(journal, errno, "cannot create journal: %s",
				strerror(errno));
	}
	buf = malloc(COPY_CHUNK);
	if (!buf) {
		err = vhd_fail(journal, ENOMEM, "out of memory");
		goto out;
	}
	encode_jheader(hdr, JNL_WRITING, ctx->footer.uuid, p, 0);
	err = vhd_pwrite_full(fd, hdr, sizeof(hdr), 0);
	if (err)
		goto io;
	step(1);
	for (i = 0; i < p->nranges; i++) {
		const struct range *r = &p->ranges[i];
		uint64_t h = fnv_init(), done = 0, ent = pos;
		uint8_t eh[512];

		pos += VHD_SECTOR_SIZE;
		while (done < r->len) {
			size_t n = r->len - done > COPY_CHUNK ? COPY_CHUNK :
				   (size_t)(r->len - done);

			err = vhd_pread_full(ctx->fd, buf, n, r->off + done);
			if (err) {
				err = vhd_fail(ctx->file, err,
					       "cannot read 0x%llx for the journal: %s",
					       (unsigned long long)(r->off + done),
					       strerror(-err));
				goto out;
			}
			h = fnv_add(h, buf, n);
			err = vhd_pwrite_full(fd, buf, n, pos + done);
			if (err)
				goto io;
			done += n;
		}
		pos += round_up(r->len, VHD_SECTOR_SIZE);
		memset(eh, 0, sizeof(eh));
		memcpy(eh, JNL_ENT_MAGIC, 8);
		put_be64(eh + 8, r->off);
		put_be64(eh + 16, r->len);
		put_be64(eh + 24, h);
		put_be32(eh + 32, (uint32_t)i);
		put_be64(eh + JNL_CSUM_OFF, fnv_add(fnv_init(), eh, JNL_CSUM_OFF));
		err = vhd_pwrite_full(fd, eh, sizeof(eh), ent);
		if (err)
			goto io;
		step(2);
	}
	if (ftruncate(fd, (off_t)pos) || fsync(fd)) {
		err = -errno;
		goto io;
	}
	step(3);
	encode_jheader(hdr, JNL_COMPLETE, ctx->footer.uuid, p, pos);
	err = vhd_pwrite_full(fd, hdr, sizeof(hdr), 0);
	if (!err && fsync(fd))
		err = -errno;
	if (err)
		goto io;
	err = sync_dir_of(journal);
	if (err)
		goto io;
	step(4);
	p->journal_made = true;
	goto out;
io:
	err = vhd_fail(journal, err, "cannot write journal: %s", strerror(-err));
out:
	free(buf);
	close(fd);
	if (err)
		unlink(journal);
	return err;
}

static int remove_journal(const char *journal)
{
	if (unlink(journal) && errno != ENOENT)
		return vhd_fail(journal, errno, "cannot remove journal: %s",
				strerror(errno));
	sync_dir_of(journal);
	return 0;
}

/* The uuid in the image's footer (end copy, else the copy at 0). */
static bool image_uuid(int fd, uuid_t out)
{
	struct vhd_footer f;
	uint8_t buf[512];
	int64_t size = vhd_file_size(fd);
	char keep[512];
	bool ok = false;

	snprintf(keep, sizeof(keep), "%s", vhd_errmsg());
	if (size >= 512 &&
	    vhd_pread_full(fd, buf, 512, ((uint64_t)size - 512) & ~511ull) == 0 &&
	    vhd_footer_decode(&f, buf) == 0)
		ok = true;
	else if (vhd_pread_full(fd, buf, 512, 0) == 0 &&
		 vhd_footer_decode(&f, buf) == 0 && f.type != VHD_TYPE_FIXED)
		ok = true;
	if (ok)
		memcpy(out, f.uuid, sizeof(uuid_t));
	vhd_set_error("%s", keep);
	return ok;
}

int vhd_journal_revert(const char *path, const char *journal)
{
	uint8_t hdr[512], eh[512], *buf = NULL;
	uint64_t orig_size, jlen, pos;
	uint32_t entries, i;
	int64_t jsize;
	uuid_t uuid;
	int jfd, fd = -1, err;
	int pass;

	jfd = open(journal, O_RDONLY | O_CLOEXEC);
	if (jfd < 0)
		return vhd_fail(journal, errno, "cannot open journal: %s",
				strerror(errno));
	jsize = vhd_file_size(jfd);
	if (jsize < 0) {
		err = vhd_fail(journal, (int)jsize, "cannot stat journal: %s",
			       strerror((int)-jsize));
		goto out;
	}
	if (jsize == 0)
		goto incomplete;	/* crashed right after creating it */
	if (jsize < 512) {
		err = vhd_fail(journal, EINVAL, "not a resize journal (%lld bytes)",
			       (long long)jsize);
		goto out;
	}
	err = vhd_pread_full(jfd, hdr, sizeof(hdr), 0);
	if (err) {
		err = vhd_fail(journal, err, "cannot read journal: %s",
			       strerror(-err));
		goto out;
	}
	if (memcmp(hdr, JNL_MAGIC, 8)) {
		err = vhd_fail(journal, EINVAL, "not a resize journal (bad magic)");
		goto out;
	}
	if (get_be64(hdr + JNL_CSUM_OFF) != fnv_add(fnv_init(), hdr, JNL_CSUM_OFF)) {
		err = vhd_fail(journal, EINVAL, "journal header checksum is bad");
		goto out;
	}
	if (get_be32(hdr + 8) != JNL_VERSION) {
		err = vhd_fail(journal, EINVAL, "unsupported journal version %u",
			       get_be32(hdr + 8));
		goto out;
	}
	if (get_be32(hdr + 12) == JNL_WRITING)
		goto incomplete;
	if (get_be32(hdr + 12) != JNL_COMPLETE) {
		err = vhd_fail(journal, EINVAL, "invalid journal state %u",
			       get_be32(hdr + 12));
		goto out;
	}
	orig_size = get_be64(hdr + 32);
	entries = get_be32(hdr + 40);
	jlen = get_be64(hdr + 48);
	if (jlen != (uint64_t)jsize) {
		err = vhd_fail(journal, EINVAL,
			       "journal is %lld bytes, its header says %llu",
			       (long long)jsize, (unsigned long long)jlen);
		goto out;
	}
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		err = vhd_fail(path, errno, "cannot open: %s", strerror(errno));
		goto out;
	}
	if (image_uuid(fd, uuid) && memcmp(uuid, hdr + 16, 16)) {
		char a[40], b[40];

		uuid_unparse(hdr + 16, a);
		uuid_unparse(uuid, b);
		err = vhd_fail(path, EINVAL,
			       "journal %s belongs to the image with uuid %s, not %s",
			       journal, a, b);
		goto out;
	}
	buf = malloc(COPY_CHUNK);
	if (!buf) {
		err = vhd_fail(journal, ENOMEM, "out of memory");
		goto out;
	}
	/* Pass 0 verifies everything; only pass 1 writes. */
	for (pass = 0; pass < 2; pass++) {
		pos = 512;
		for (i = 0; i < entries; i++) {
			uint64_t off, len, h = fnv_init(), done = 0;

			if (pos + 512 > jlen) {
				err = vhd_fail(journal, EINVAL,
					       "journal entry %u lies past its end", i);
				goto out;
			}
			err = vhd_pread_full(jfd, eh, sizeof(eh), pos);
			if (err) {
				err = vhd_fail(journal, err,
					       "cannot read journal: %s",
					       strerror(-err));
				goto out;
			}
			if (memcmp(eh, JNL_ENT_MAGIC, 8) ||
			    get_be64(eh + JNL_CSUM_OFF) !=
			    fnv_add(fnv_init(), eh, JNL_CSUM_OFF) ||
			    get_be32(eh + 32) != i) {
				err = vhd_fail(journal, EINVAL,
					       "journal entry %u is corrupt", i);
				goto out;
			}
			off = get_be64(eh + 8);
			len = get_be64(eh + 16);
			pos += 512;
			if (len > jlen - pos || off + len < off ||
			    off + len > orig_size) {
				err = vhd_fail(journal, EINVAL,
					       "journal entry %u has a bad range", i);
				goto out;
			}
			while (done < len) {
				size_t n = len - done > COPY_CHUNK ? COPY_CHUNK :
					   (size_t)(len - done);

				err = vhd_pread_full(jfd, buf, n, pos + done);
				if (err) {
					err = vhd_fail(journal, err,
						       "cannot read journal: %s",
						       strerror(-err));
					goto out;
				}
				h = fnv_add(h, buf, n);
				if (pass) {
					err = vhd_pwrite_full(fd, buf, n,
							      off + done);
					if (err) {
						err = vhd_fail(path, err,
							       "cannot write: %s",
							       strerror(-err));
						goto out;
					}
					step(100);
				}
				done += n;
			}
			if (h != get_be64(eh + 24)) {
				err = vhd_fail(journal, EINVAL,
					       "journal entry %u: data checksum is bad", i);
				goto out;
			}
			pos += round_up(len, 512);
		}
	}
	if (ftruncate(fd, (off_t)orig_size) || fsync(fd)) {
		err = vhd_fail(path, errno, "cannot restore the size: %s",
			       strerror(errno));
		goto out;
	}
	step(101);
	close(fd);
	fd = -1;
	goto remove;
incomplete:
	/* Never completed, so the image was never touched. */
	err = 0;
remove:
	close(jfd);
	jfd = -1;
	err = remove_journal(journal);
out:
	free(buf);
	if (fd >= 0)
		close(fd);
	if (jfd >= 0)
		close(jfd);
	return err;
}

/* ---- journaled resize ------------------------------------------------- */

struct block_ref {
	uint32_t block, off;
};

static int cmp_block_ref(const void *a, const void *b)
{
	const struct block_ref *x = a, *y = b;

	return x->off < y->off ? -1 : x->off > y->off;
}

/* The new layout after the BAT grows to @entries. */
struct layout {
	uint32_t	entries;
	uint64_t	bat_bytes;
	uint64_t	bm_hdr_off, map_off, map_bytes;	/* with a batmap */
	uint64_t	loc_off[VHD_LOC_COUNT];
	uint64_t	loc_space[VHD_LOC_COUNT];
	uint64_t	meta_end;
};

static bool locator_used(const struct vhd_locator *l)
{
	return l->code && (l->data_len || l->data_space);
}

static uint64_t locator_bytes(const struct vhd_locator *l)
{
	uint64_t space = vhd_locator_space(l);

	if (space < l->data_len)
		space = round_up(l->data_len, VHD_SECTOR_SIZE);
	return space;
}

static int plan_layout(const vhd_context_t *ctx, uint32_t entries,
		       struct layout *L)
{
	const struct vhd_header *h = &ctx->header;
	uint64_t p;
	int i;

	memset(L, 0, sizeof(*L));
	if (ctx->footer.data_offset + VHD_HEADER_SIZE > h->table_offset)
		return vhd_fail(ctx->file, ENOTSUP,
				"unusual layout (BAT before the header); cannot grow the BAT");
	L->entries = entries;
	L->bat_bytes = vhd_bat_bytes(entries);
	p = h->table_offset + L->bat_bytes;
	if (ctx->has_batmap) {
		L->bm_hdr_off = p;
		L->map_off = p + VHD_SECTOR_SIZE;
		L->map_bytes = vhd_batmap_bytes(entries);
		p = L->map_off + L->map_bytes;
	}
	for (i = 0; i < VHD_LOC_COUNT; i++) {
		if (!locator_used(&h->loc[i]))
			continue;
		L->loc_off[i] = p;
		L->loc_space[i] = locator_bytes(&h->loc[i]);
		p += L->loc_space[i];
	}
	L->meta_end = p;
	return 0;
}

/*
 * Grow the BAT of a dynamic image: move the blocks in the way to the end
 * of the file, then write the bigger BAT, the batmap, the locators and the
 * header.  The footer with the new size is written by the caller.
 */
static int grow_bat(vhd_context_t *ctx, const struct layout *L)
{
	struct vhd_header h = ctx->header;
	uint64_t blk_bytes = (uint64_t)(ctx->spb + ctx->bm_secs) << VHD_SECTOR_SHIFT;
	uint8_t *loc_data[VHD_LOC_COUNT] = { 0 };
	struct block_ref *moves = NULL;
	uint8_t *map = NULL;
	uint32_t nmoves = 0, i, *bat;
	uint64_t cursor;
	int err = 0;

	/* Read everything the new metadata will overwrite first. */
	for (i = 0; i < VHD_LOC_COUNT; i++) {
		const struct vhd_locator *l = &h.loc[i];

		if (!L->loc_space[i])
			continue;
		loc_data[i] = calloc(1, L->loc_space[i]);
		if (!loc_data[i]) {
			err = vhd_fail(ctx->file, ENOMEM, "out of memory");
			goto out;
		}
		err = vhd_pread_full(ctx->fd, loc_data[i], L->loc_space[i],
				     l->data_offset);
		if (err) {
			err = vhd_fail(ctx->file, err,
				       "cannot read parent locator %u: %s", i,
				       strerror(-err));
			goto out;
		}
	}
	moves = malloc(sizeof(*moves) * (h.max_bat_size ? h.max_bat_size : 1));
	if (!moves) {
		err = vhd_fail(ctx->file, ENOMEM, "out of memory");
		goto out;
	}
	for (i = 0; i < h.max_bat_size; i++)
		if (ctx->bat[i] != VHD_BAT_UNUSED &&
		    ((uint64_t)ctx->bat[i] << VHD_SECTOR_SHIFT) < L->meta_end) {
			moves[nmoves].block = i;
			moves[nmoves].off = ctx->bat[i];
			nmoves++;
		}
	qsort(moves, nmoves, sizeof(*moves), cmp_block_ref);

	/* 1. Move the blocks in the way, one at a time, each crash-safe. */
	cursor = ctx->next_block > L->meta_end ? ctx->next_block : L->meta_end;
	for (i = 0; i < nmoves; i++) {
		uint64_t dst = vhd_align_block(cursor, ctx->bm_secs);

		err = vhd_relocate_block(ctx, moves[i].block, dst, step);
		if (err)
			goto out;
		cursor = dst + blk_bytes;
	}
	/* 2. The footer must lie beyond the new metadata. */
	if (ctx->footer_offset < L->meta_end) {
		err = vhd_move_footer(ctx, L->meta_end);
		if (!err)
			err = vhd_sync(ctx->fd, ctx->file);
		if (err)
			goto out;
		step(12);
	}
	if (ctx->next_block < L->meta_end)
		ctx->next_block = L->meta_end;

	/* 3. The new batmap, locators and BAT. */
	if (ctx->has_batmap) {
		uint64_t old = (uint64_t)ctx->batmap_hdr.batmap_size << VHD_SECTOR_SHIFT;
		struct vhd_batmap_header b = ctx->batmap_hdr;

		map = calloc(1, VHD_SECTOR_SIZE + L->map_bytes);
		if (!map) {
			err = vhd_fail(ctx->file, ENOMEM, "out of memory");
			goto out;
		}
		memcpy(map + VHD_SECTOR_SIZE, ctx->batmap,
		       old < L->map_bytes ? old : L->map_bytes);
		/* No bits for blocks beyond the old BAT. */
		for (i = h.max_bat_size; i < L->entries && i < old * 8; i++)
			map[VHD_SECTOR_SIZE + (i >> 3)] &= (uint8_t)~(0x80 >> (i & 7));
		b.batmap_offset = L->map_off;
		b.batmap_size = (uint32_t)(L->map_bytes >> VHD_SECTOR_SHIFT);
		b.checksum = vhd_checksum(map + VHD_SECTOR_SIZE, L->map_bytes,
					  SIZE_MAX);
		vhd_batmap_header_encode(&b, map);
		err = vhd_pwrite_full(ctx->fd, map, VHD_SECTOR_SIZE + L->map_bytes,
				      L->bm_hdr_off);
		if (err) {
			err = vhd_fail(ctx->file, err, "cannot write batmap: %s",
				       strerror(-err));
			goto out;
		}
		free(ctx->batmap);
		ctx->batmap = malloc(L->map_bytes);
		if (!ctx->batmap) {
			ctx->has_batmap = false;
			err = vhd_fail(ctx->file, ENOMEM, "out of memory");
			goto out;
		}
		memcpy(ctx->batmap, map + VHD_SECTOR_SIZE, L->map_bytes);
		ctx->batmap_hdr = b;
		step(13);
	}
	for (i = 0; i < VHD_LOC_COUNT; i++) {
		if (!L->loc_space[i])
			continue;
		err = vhd_pwrite_full(ctx->fd, loc_data[i], L->loc_space[i],
				      L->loc_off[i]);
		if (err) {
			err = vhd_fail(ctx->file, err,
				       "cannot write parent locator %u: %s", i,
				       strerror(-err));
			goto out;
		}
		h.loc[i].data_offset = L->loc_off[i];
	}
	step(14);
	bat = realloc(ctx->bat, L->bat_bytes);
	if (!bat) {
		err = vhd_fail(ctx->file, ENOMEM, "out of memory");
		goto out;
	}
	ctx->bat = bat;
	for (i = h.max_bat_size; i < L->entries; i++)
		ctx->bat[i] = VHD_BAT_UNUSED;
	ctx->header.max_bat_size = L->entries;
	err = vhd_write_bat(ctx);
	if (!err)
		err = vhd_sync(ctx->fd, ctx->file);
	if (err)
		goto out;
	step(15);

	/* 4. The header that describes it all. */
	h.max_bat_size = L->entries;
	err = vhd_write_header(ctx, &h);
	if (!err)
		err = vhd_sync(ctx->fd, ctx->file);
	if (err)
		goto out;
	step(16);
out:
	for (i = 0; i < VHD_LOC_COUNT; i++)
		free(loc_data[i]);
	free(moves);
	free(map);
	return err;
}

static int resize_dynamic(vhd_context_t *ctx, const char *journal,
			  struct plan *p)
{
	struct layout L;
	uint64_t need;
	bool grow_meta;
	int err;

	need = p->new_bytes / ctx->header.block_size;
	grow_meta = need > ctx->header.max_bat_size;
	if (grow_meta) {
		err = plan_layout(ctx, (uint32_t)need, &L);
		if (err)
			return err;
		/* Everything up to the new end of the metadata... */
		add_range(p, 0, L.meta_end);
		/* ...and the old footer (with anything after the last block). */
		add_range(p, ctx->next_block > L.meta_end ? ctx->next_block :
			  L.meta_end, p->orig_size);
	} else {
		add_range(p, 0, VHD_FOOTER_SIZE);
		add_range(p, ctx->next_block > VHD_FOOTER_SIZE ?
			  ctx->next_block : VHD_FOOTER_SIZE, p->orig_size);
	}
	err = journal_write(ctx, journal, p);
	if (err)
		return err;
	if (grow_meta) {
		err = grow_bat(ctx, &L);
		if (err)
			return err;
	}
	/* The new size: the end copy first, then the copy at 0. */
	err = set_virtual_size(ctx, p->new_bytes);
	if (!err)
		step(17);
	return err;
}

static int resize_fixed(vhd_context_t *ctx, const char *journal,
			struct plan *p)
{
	uint64_t old = ctx->footer.curr_size;
	struct vhd_footer f = ctx->footer;
	int err;

	if (p->new_bytes > old) {
		/* The old footer becomes data; it is all we overwrite. */
		add_range(p, old, p->orig_size);
	} else {
		/* Shrinking: the journal keeps the data cut off. */
		add_range(p, p->new_bytes, p->orig_size);
	}
	err = journal_write(ctx, journal, p);
	if (err)
		return err;
	f.curr_size = p->new_bytes;
	f.geometry = vhd_chs(p->new_bytes >> VHD_SECTOR_SHIFT);
	if (p->new_bytes > old) {
		uint64_t zend = p->orig_size < p->new_bytes ? p->orig_size :
				p->new_bytes;
		uint8_t *zero;

		if (fallocate(ctx->fd, 0, (off_t)p->orig_size,
			      (off_t)(p->new_bytes + VHD_FOOTER_SIZE - p->orig_size)) &&
		    errno != EOPNOTSUPP && errno != ENOSYS)
			return vhd_fail(ctx->file, errno,
					"cannot allocate %llu bytes: %s",
					(unsigned long long)p->new_bytes,
					strerror(errno));
		/* 1. The new footer at the new end: a valid, bigger image. */
		ctx->footer_offset = p->new_bytes;
		err = vhd_write_footer(ctx, &f);
		if (!err)
			err = vhd_sync(ctx->fd, ctx->file);
		if (err)
			return err;
		step(20);
		/* 2. The old footer is now data that must read as zeros. */
		if (zend > old) {
			zero = calloc(1, zend - old);
			if (!zero)
				return vhd_fail(ctx->file, ENOMEM, "out of memory");
			err = vhd_pwrite_full(ctx->fd, zero, zend - old, old);
			free(zero);
			if (err)
				return vhd_fail(ctx->file, err,
						"cannot clear the old footer: %s",
						strerror(-err));
		}
	} else {
		/* 1. Cut (the journal holds what goes). */
		if (ftruncate(ctx->fd, (off_t)p->new_bytes))
			return vhd_fail(ctx->file, errno, "cannot truncate: %s",
					strerror(errno));
		err = vhd_sync(ctx->fd, ctx->file);
		if (err)
			return err;
		step(21);
		/* 2. The footer at the new end. */
		ctx->footer_offset = p->new_bytes;
		err = vhd_write_footer(ctx, &f);
		if (err)
			return err;
	}
	if (ftruncate(ctx->fd, (off_t)(p->new_bytes + VHD_FOOTER_SIZE)))
		return vhd_fail(ctx->file, errno, "cannot truncate: %s",
				strerror(errno));
	err = vhd_sync(ctx->fd, ctx->file);
	if (!err)
		step(22);
	return err;
}

int vhd_resize_journaled(const char *path, uint64_t bytes, const char *journal)
{
	vhd_context_t ctx;
	struct plan p;
	struct stat st;
	int64_t size;
	char msg[512];
	int err, rerr;

	err = vhd_open(&ctx, path, VHD_OPEN_RDWR);
	if (err)
		return err;
	memset(&p, 0, sizeof(p));
	if (fstat(ctx.fd, &st) || !S_ISREG(st.st_mode)) {
		err = vhd_fail(path, ENOTSUP,
			       "a journaled resize needs a regular file");
		goto out;
	}
	size = vhd_file_size(ctx.fd);
	if (size < 0) {
		err = vhd_fail(path, (int)size, "cannot stat: %s",
			       strerror((int)-size));
		goto out;
	}
	p.orig_size = (uint64_t)size;
	if (vhd_is_dynamic(&ctx)) {
		err = dynamic_target(&ctx, bytes, &p.new_bytes);
		if (err)
			goto out;
		if (p.new_bytes == ctx.footer.curr_size)
			goto out;
		err = resize_dynamic(&ctx, journal, &p);
	} else {
		if (!bytes) {
			err = vhd_fail(path, EINVAL, "size must be greater than zero");
			goto out;
		}
		p.new_bytes = round_up(bytes, VHD_SECTOR_SIZE);
		if (p.new_bytes > VHD_MAX_BYTES) {
			err = vhd_fail(path, EINVAL,
				       "size %llu MiB exceeds the VHD limit of 2040 GiB (2088960 MiB)",
				       (unsigned long long)(p.new_bytes >> 20));
			goto out;
		}
		if (p.new_bytes == ctx.footer.curr_size)
			goto out;
		err = resize_fixed(&ctx, journal, &p);
	}
out:
	vhd_close(&ctx);
	if (!err && !p.journal_made)
		return 0;	/* nothing to do */
	if (!err) {
		step(30);
		return remove_journal(journal);
	}
	if (!p.journal_made)
		return err;	/* the image was not touched */
	/* Undo what was done; keep the first message. */
	snprintf(msg, sizeof(msg), "%s", vhd_errmsg());
	rerr = vhd_journal_revert(path, journal);
	if (rerr)
		vhd_set_error("%s (and reverting failed: %s; the journal %s is kept)",
			      msg, vhd_errmsg(), journal);
	else
		vhd_set_error("%s (the image was restored)", msg);
	return err;
}
