// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * vhd-util coalesce: fold a differencing image's data into an image below
 * it, or flatten a whole chain into a new standalone image.
 *
 *   coalesce -n name                 into the immediate parent
 *   coalesce -n name -a ancestor     into a named ancestor further down;
 *                                    the images in between stop shadowing
 *                                    the coalesced sectors
 *   coalesce -n name -o output       the chain of name, flattened into a
 *                                    new dynamic VHD (all-zero blocks are
 *                                    never written)
 *   -s  sparse: do not write zero runs that the destination already reads
 *       as zeros (a zero run that would shadow non-zero data below is
 *       still written, so the result reads the same as without -s)
 *   -p  progress on stderr
 *
 * Ordering with -a: every sector goes into the ancestor, which is synced,
 * before any intermediate image loses a bitmap bit; in an intermediate the
 * block's batmap "full" bit is cleared (and synced) before its bitmap, so a
 * batmap bit never claims a block full whose bitmap is not.  A crash at any
 * point leaves the child's view intact, and running the command again
 * finishes the job.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "libvhd.h"
#include "vhd-util.h"

/* Zero runs shorter than this are written anyway (keeps requests large). */
#define ZERO_RUN_MIN	8u

struct coalesce_opts {
	const char	*name;
	const char	*output;
	const char	*ancestor;
	bool		sparse;
	bool		progress;
};

struct progress {
	bool		on;
	bool		started;
	uint64_t	total;
	char		last[16];
};

static void progress_step(struct progress *p, uint64_t done)
{
	char now[16];

	if (!p->on)
		return;
	snprintf(now, sizeof(now), "%6.2f",
		 p->total ? 100.0 * (double)done / (double)p->total : 100.0);
	if (p->started && !strcmp(now, p->last))
		return;		/* nothing new to show */
	memcpy(p->last, now, sizeof(now));
	p->started = true;
	fprintf(stderr, "\r%s%%", now);
	fflush(stderr);
}

static void progress_done(struct progress *p)
{
	if (p->on)
		fprintf(stderr, "\r100.00%%\n");
	p->started = false;
}

/* Before an error line: end the progress line so the error stands alone. */
static void progress_abort(struct progress *p)
{
	if (p->on && p->started)
		fputc('\n', stderr);
	p->started = false;
}

static int usage(void)
{
	printf("usage: vhd-util coalesce -n name [-a ancestor | -o output] "
	       "[-s sparse] [-p progress] [-h help]\n");
	return 0;
}

static bool all_zero(const uint8_t *buf, size_t len)
{
	/* Bytes up to an 8-byte boundary, then whole words. */
	while (len && ((uintptr_t)buf & 7)) {
		if (*buf++)
			return false;
		len--;
	}
	for (; len >= 8; buf += 8, len -= 8) {
		uint64_t w;

		memcpy(&w, buf, 8);
		if (w)
			return false;
	}
	while (len--)
		if (*buf++)
			return false;
	return true;
}

/* ---- the destination of default and -a coalescing ---- */

struct dest {
	vhd_chain_t	chain;		/* img[0] is the destination */
	vhd_context_t	*img;
};

/*
 * Write @count sectors of @buf at @sec, skipping (with -s) each long zero
 * run that the destination already reads as zeros.  @scratch holds as many
 * sectors as @buf.
 */
static int put_run(struct dest *d, const uint8_t *buf, uint64_t sec,
		   uint32_t count, bool sparse, uint8_t *scratch)
{
	uint32_t i = 0, start = 0;
	int err;

	if (!sparse)
		return vhd_io_write(d->img, buf, sec, count);
	while (i < count) {
		uint32_t j = i;

		while (j < count && all_zero(buf + ((size_t)j << VHD_SECTOR_SHIFT),
					     VHD_SECTOR_SIZE))
			j++;
		if (j - i < ZERO_RUN_MIN && j - i < count) {
			i = j + 1;	/* short zero run: part of the data */
			continue;
		}
		/* [i, j) is a zero run worth skipping: write what precedes it. */
		if (i > start) {
			err = vhd_io_write(d->img, buf + ((size_t)start << VHD_SECTOR_SHIFT),
					 sec + start, i - start);
			if (err)
				return err;
		}
		/* Zeros must still shadow whatever non-zero data lies below. */
		err = vhd_chain_read(&d->chain, scratch, sec + i, j - i);
		if (err)
			return err;
		if (!all_zero(scratch, (size_t)(j - i) << VHD_SECTOR_SHIFT)) {
			err = vhd_io_write(d->img, buf + ((size_t)i << VHD_SECTOR_SHIFT),
					 sec + i, j - i);
			if (err)
				return err;
		}
		start = i = j;
	}
	if (count > start)
		return vhd_io_write(d->img, buf + ((size_t)start << VHD_SECTOR_SHIFT),
				  sec + start, count - start);
	return 0;
}

/* Which of the block's sectors the image holds, one bit each, MSB first. */
static int block_present(vhd_context_t *ctx, uint32_t block, uint8_t *bm)
{
	if (vhd_batmap_test(ctx, block)) {
		memset(bm, 0xFF, (size_t)ctx->bm_secs << VHD_SECTOR_SHIFT);
		return 0;
	}
	return vhd_read_bitmap(ctx, block, bm);
}

/* Sectors the child holds in [from, its end): any at all? */
static int holds_data_from(vhd_context_t *child, uint64_t from, bool *found)
{
	uint64_t secs = vhd_sectors(child);
	uint8_t *bm;
	int err = 0;

	*found = false;
	if (from >= secs)
		return 0;
	bm = malloc((size_t)child->bm_secs << VHD_SECTOR_SHIFT);
	if (!bm) {
		vhd_set_error("%s: out of memory", child->file);
		return -ENOMEM;
	}
	for (uint32_t b = (uint32_t)(from / child->spb);
	     b < vhd_blocks(child) && !*found; b++) {
		uint64_t base = (uint64_t)b * child->spb;

		if (vhd_bat_entry(child, b) == VHD_BAT_UNUSED)
			continue;
		err = block_present(child, b, bm);
		if (err)
			break;
		for (uint32_t i = 0; i < child->spb && base + i < secs; i++) {
			if (base + i >= from && vhd_bitmap_test(bm, i)) {
				*found = true;
				break;
			}
		}
	}
	free(bm);
	return err;
}

/*
 * The images in between must stop shadowing the ancestor wherever the
 * child had data: clear those bits (the batmap bit first).
 */
static int unshadow(vhd_context_t *img, uint64_t base, uint32_t n,
		    const uint8_t *child_bm, uint8_t *bm)
{
	uint64_t end = base + n;
	int err;

	for (uint64_t b = base / img->spb; b * img->spb < end; b++) {
		uint64_t ib = b * img->spb;
		uint64_t from = base > ib ? base : ib;
		uint64_t to = end < ib + img->spb ? end : ib + img->spb;
		bool changed = false, was_full;

		if (b >= VHD_BAT_UNUSED ||
		    vhd_bat_entry(img, (uint32_t)b) == VHD_BAT_UNUSED)
			continue;
		was_full = vhd_batmap_test(img, (uint32_t)b);
		if (was_full) {
			/* The batmap speaks for the whole block. */
			memset(bm, 0xFF, (size_t)img->bm_secs << VHD_SECTOR_SHIFT);
		} else {
			err = vhd_read_bitmap(img, (uint32_t)b, bm);
			if (err)
				return err;
		}
		for (uint64_t s = from; s < to; s++) {
			uint32_t bit = (uint32_t)(s - ib);

			if (!vhd_bitmap_test(child_bm, (uint32_t)(s - base)) ||
			    !vhd_bitmap_test(bm, bit))
				continue;
			bm[bit >> 3] &= (uint8_t)~(0x80 >> (bit & 7));
			changed = true;
		}
		if (!changed)
			continue;
		if (was_full) {
			err = vhd_batmap_update(img, (uint32_t)b, false);
			if (!err)
				err = vhd_flush(img);
			if (err)
				return err;
		}
		err = vhd_write_bitmap(img, (uint32_t)b, bm);
		if (err)
			return err;
	}
	return 0;
}

static bool same_file(const char *a, const struct stat *st)
{
	struct stat sa;

	return !stat(a, &sa) && sa.st_dev == st->st_dev && sa.st_ino == st->st_ino;
}

static int coalesce_down(const struct coalesce_opts *o)
{
	vhd_context_t *imgs[VHD_MAX_CHAIN] = { NULL };
	static struct stat seen[VHD_MAX_CHAIN];
	struct progress prog = { .on = o->progress };
	struct dest d;
	struct stat anc_st, self_st;
	uint8_t *buf = NULL, *scratch = NULL, *pres = NULL, *bm = NULL;
	char *target = NULL;
	bool target_raw = false, beyond;
	vhd_context_t *child;
	uint64_t child_secs;
	uint32_t blocks;
	int depth = 0, err = 0, status = 0;

	memset(&d, 0, sizeof(d));
	if (o->ancestor) {
		if (stat(o->ancestor, &anc_st)) {
			err = errno;
			vu_error("%s: %s", o->ancestor, strerror(err));
			return err;
		}
		if (!stat(o->name, &self_st) && self_st.st_dev == anc_st.st_dev &&
		    self_st.st_ino == anc_st.st_ino)
			return vu_usage("the ancestor %s is the image itself",
					o->ancestor);
	}

	/* Walk down from the child; in between, images are opened for writing. */
	for (;;) {
		vhd_context_t *img, *cur;
		char *path = NULL;

		if (depth == VHD_MAX_CHAIN) {
			vu_error("%s: chain deeper than %d images", o->name,
				 VHD_MAX_CHAIN);
			status = ELOOP;
			goto out;
		}
		img = calloc(1, sizeof(*img));
		if (!img) {
			vu_error("out of memory");
			status = ENOMEM;
			goto out;
		}
		err = vhd_open(img, depth ? target : o->name,
			       depth ? VHD_OPEN_RDWR : VHD_OPEN_RDONLY);
		if (err) {
			free(img);
			goto fail;
		}
		imgs[depth++] = img;
		free(target);
		target = NULL;
		cur = img;
		if (fstat(cur->fd, &seen[depth - 1])) {
			err = -errno;
			vhd_set_error("%s: %s", cur->file, strerror(errno));
			goto fail;
		}
		for (int k = 0; k < depth - 1; k++) {
			if (seen[k].st_dev == seen[depth - 1].st_dev &&
			    seen[k].st_ino == seen[depth - 1].st_ino) {
				vu_error("%s: parent loop: %s appears twice in the chain",
					 o->name, cur->file);
				status = ELOOP;
				goto out;
			}
		}
		if (depth > 1 &&
		    uuid_compare(imgs[depth - 2]->header.prt_uuid, cur->footer.uuid)) {
			vu_error("%s: parent %s has a different uuid than the child expects",
				 imgs[depth - 2]->file, cur->file);
			status = EINVAL;
			goto out;
		}
		if (cur->footer.type != VHD_TYPE_DIFF) {
			if (depth == 1)
				vu_error("%s: a %s image has no parent to coalesce into",
					 o->name, vhd_type_name(cur->footer.type));
			else
				vu_error("%s is not an ancestor of %s",
					 o->ancestor, o->name);
			status = EINVAL;
			goto out;
		}
		err = vhd_parent_path(cur, false, &path);
		if (err)
			goto fail;
		target = path;
		target_raw = uuid_is_null(cur->header.prt_uuid);
		if (!o->ancestor || same_file(path, &anc_st))
			break;
		if (target_raw) {
			vu_error("%s is not an ancestor of %s", o->ancestor,
				 o->name);
			status = EINVAL;
			goto out;
		}
	}
	child = imgs[0];

	/* The destination, with its own ancestors when -s must read them. */
	{
		int flags = VHD_OPEN_RDWR | (target_raw ? VHD_OPEN_RAW : 0);

		if (o->sparse) {
			err = vhd_chain_open(&d.chain, target, flags);
			if (err)
				goto fail;
		} else {
			vhd_context_t *img = calloc(1, sizeof(*img));

			if (!img) {
				vu_error("out of memory");
				status = ENOMEM;
				goto out;
			}
			err = vhd_open(img, target, flags);
			if (err) {
				free(img);
				goto fail;
			}
			d.chain.img[0] = img;
			d.chain.depth = 1;
		}
		d.img = d.chain.img[0];
	}
	if (!d.img->raw &&
	    uuid_compare(imgs[depth - 1]->header.prt_uuid, d.img->footer.uuid)) {
		vu_error("%s: parent %s has a different uuid than the child expects",
			 imgs[depth - 1]->file, d.img->file);
		status = EINVAL;
		goto out;
	}

	/* Everything the child holds must fit into the destination. */
	child_secs = vhd_sectors(child);
	err = holds_data_from(child, vhd_sectors(d.img), &beyond);
	if (err)
		goto fail;
	if (beyond) {
		vu_error("%s holds data past the end of %s (%llu sectors); resize %s first",
			 o->name, d.img->file,
			 (unsigned long long)vhd_sectors(d.img), d.img->file);
		status = ENOSPC;
		goto out;
	}

	blocks = vhd_blocks(child);
	buf = malloc((size_t)child->spb << VHD_SECTOR_SHIFT);
	scratch = malloc((size_t)child->spb << VHD_SECTOR_SHIFT);
	pres = malloc((size_t)child->bm_secs << VHD_SECTOR_SHIFT);
	{
		uint32_t most = 1;

		for (int k = 1; k < depth; k++)
			if (imgs[k]->bm_secs > most)
				most = imgs[k]->bm_secs;
		bm = malloc((size_t)most << VHD_SECTOR_SHIFT);
	}
	if (!buf || !scratch || !pres || !bm) {
		vu_error("out of memory");
		status = ENOMEM;
		goto out;
	}
	prog.total = (uint64_t)blocks * (depth > 1 ? 2 : 1);

	/* 1. The data, block by block, each run of present sectors at once. */
	for (uint32_t b = 0; b < blocks; b++) {
		uint64_t base = (uint64_t)b * child->spb;
		uint32_t n = child->spb;

		progress_step(&prog, b);
		if (vhd_bat_entry(child, b) == VHD_BAT_UNUSED)
			continue;
		if (base + n > child_secs)
			n = (uint32_t)(child_secs - base);
		memset(pres, 0, (size_t)child->bm_secs << VHD_SECTOR_SHIFT);
		err = vhd_io_read(child, buf, base, n, pres);
		if (err)
			goto fail;
		for (uint32_t i = 0; i < n;) {
			uint32_t j = i;

			if (!vhd_bitmap_test(pres, i)) {
				i++;
				continue;
			}
			while (j < n && vhd_bitmap_test(pres, j))
				j++;
			err = put_run(&d, buf + ((size_t)i << VHD_SECTOR_SHIFT),
				      base + i, j - i, o->sparse, scratch);
			if (err)
				goto fail;
			i = j;
		}
	}
	err = vhd_flush(d.img);
	if (err)
		goto fail;

	/* 2. With -a: the images in between must not hide what was moved. */
	for (uint32_t b = 0; depth > 1 && b < blocks; b++) {
		uint64_t base = (uint64_t)b * child->spb;
		uint32_t n = child->spb;

		progress_step(&prog, (uint64_t)blocks + b);
		if (vhd_bat_entry(child, b) == VHD_BAT_UNUSED)
			continue;
		if (base + n > child_secs)
			n = (uint32_t)(child_secs - base);
		err = block_present(child, b, pres);
		if (err)
			goto fail;
		for (int k = 1; k < depth; k++) {
			err = unshadow(imgs[k], base, n, pres, bm);
			if (err)
				goto fail;
		}
	}
	for (int k = 1; k < depth; k++) {
		err = vhd_flush(imgs[k]);
		if (err)
			goto fail;
	}
	progress_done(&prog);
	goto out;

fail:
	progress_abort(&prog);
	status = vu_fail(err);
out:
	progress_abort(&prog);
	free(buf);
	free(scratch);
	free(pres);
	free(bm);
	free(target);
	if (d.chain.depth)
		vhd_chain_close(&d.chain);
	for (int k = 0; k < depth; k++) {
		vhd_close(imgs[k]);
		free(imgs[k]);
	}
	return status;
}

/* ---- -o: flatten the chain into a new image ---- */

/* True when no image of the chain can hold data in the range. */
static bool chain_range_empty(const vhd_chain_t *c, uint64_t sec, uint32_t n)
{
	for (int i = 0; i < c->depth; i++) {
		const vhd_context_t *img = c->img[i];
		uint64_t secs = vhd_sectors(img), last;

		if (sec >= secs)
			continue;	/* reads as zeros past its end */
		if (!vhd_is_dynamic(img))
			return false;
		last = sec + n - 1 < secs ? sec + n - 1 : secs - 1;
		for (uint64_t b = sec / img->spb; b <= last / img->spb; b++)
			if (b >= VHD_BAT_UNUSED ||
			    vhd_bat_entry(img, (uint32_t)b) != VHD_BAT_UNUSED)
				return false;
	}
	return true;
}

static int set_exact_size(vhd_context_t *out, uint64_t bytes)
{
	struct vhd_footer f = out->footer;

	if (f.curr_size == bytes)
		return 0;
	f.curr_size = bytes;
	f.orig_size = bytes;
	f.geometry = vhd_chs(bytes >> VHD_SECTOR_SHIFT);
	return vhd_write_footer(out, &f);
}

static int coalesce_output(const struct coalesce_opts *o)
{
	struct progress prog = { .on = o->progress };
	vhd_chain_t chain;
	vhd_context_t out;
	struct stat st;
	uint8_t *buf = NULL;
	uint64_t secs, bytes;
	bool created = false, opened = false;
	uint32_t spb = VHD_BLOCK_SIZE >> VHD_SECTOR_SHIFT, blocks;
	int err, status = 0;

	if (!lstat(o->output, &st)) {
		vu_error("%s already exists", o->output);
		return EEXIST;
	}
	err = vhd_chain_open(&chain, o->name, VHD_OPEN_RDONLY);
	if (err)
		return vu_fail(err);
	secs = vhd_sectors(chain.img[0]);
	bytes = secs << VHD_SECTOR_SHIFT;

	err = vhd_create(o->output, bytes, 0, 0);
	if (err)
		goto fail;
	created = true;
	err = vhd_open(&out, o->output, VHD_OPEN_RDWR);
	if (err)
		goto fail;
	opened = true;
	/* vhd_create rounds dynamic disks up to 2 MiB; keep the exact size. */
	err = set_exact_size(&out, bytes);
	if (err)
		goto fail;
	spb = out.spb;
	buf = malloc((size_t)spb << VHD_SECTOR_SHIFT);
	if (!buf) {
		vhd_set_error("%s: out of memory", o->output);
		err = -ENOMEM;
		goto fail;
	}
	blocks = (uint32_t)((secs + spb - 1) / spb);
	prog.total = blocks;
	for (uint32_t b = 0; b < blocks; b++) {
		uint64_t base = (uint64_t)b * spb;
		uint32_t n = secs - base < spb ? (uint32_t)(secs - base) : spb;

		progress_step(&prog, b);
		if (chain_range_empty(&chain, base, n))
			continue;
		err = vhd_chain_read(&chain, buf, base, n);
		if (err)
			goto fail;
		if (all_zero(buf, (size_t)n << VHD_SECTOR_SHIFT))
			continue;
		err = vhd_io_write(&out, buf, base, n);
		if (err)
			goto fail;
	}
	err = vhd_flush(&out);
	if (err)
		goto fail;
	progress_done(&prog);
	goto out;
fail:
	progress_abort(&prog);
	status = vu_fail(err);
	if (opened) {
		vhd_close(&out);
		opened = false;
	}
	if (created)
		unlink(o->output);
out:
	free(buf);
	if (opened)
		vhd_close(&out);
	vhd_chain_close(&chain);
	return status;
}

int vhd_util_coalesce(int argc, char **argv)
{
	struct coalesce_opts o = { 0 };
	int c;

	while ((c = getopt(argc, argv, ":n:o:a:sph")) != -1) {
		switch (c) {
		case 'n':
			o.name = optarg;
			break;
		case 'o':
			o.output = optarg;
			break;
		case 'a':
			o.ancestor = optarg;
			break;
		case 's':
			o.sparse = true;
			break;
		case 'p':
			o.progress = true;
			break;
		case 'h':
			return usage();
		default:
			return vu_opt_error(c);
		}
	}
	if (optind < argc)
		return vu_usage("unexpected argument '%s'", argv[optind]);
	if (!o.name)
		return vu_usage("missing -n name");
	if (o.output && o.ancestor)
		return vu_usage("-o output and -a ancestor cannot be combined");
	if (o.output)
		return coalesce_output(&o);
	return coalesce_down(&o);
}
