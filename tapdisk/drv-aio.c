// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The "aio" driver: a raw image, a regular file or a block device, where
 * sector s lives at byte s * 512.  Everything goes straight to tio.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/fs.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "driver.h"
#include "log.h"

#define SECTOR_SHIFT	9
#define SECTOR_SIZE	(1u << SECTOR_SHIFT)

struct aio_priv {
	struct tio_file	file;
	bool		is_blk;
	char		path[PATH_MAX];	/* file.path points here */
};

/*
 * Does the device take discards?  Its queue says so in sysfs; a partition
 * has no queue of its own, its disk's is one level up.
 */
static bool blk_can_discard(dev_t rdev)
{
	static const char *const fmt[] = {
		"/sys/dev/block/%u:%u/queue/discard_max_bytes",
		"/sys/dev/block/%u:%u/../queue/discard_max_bytes",
	};

	for (size_t i = 0; i < sizeof(fmt) / sizeof(fmt[0]); i++) {
		char path[128];
		unsigned long long max = 0;
		FILE *f;
		int n;

		snprintf(path, sizeof(path), fmt[i], major(rdev), minor(rdev));
		f = fopen(path, "re");
		if (!f)
			continue;
		n = fscanf(f, "%llu", &max);
		fclose(f);
		return n == 1 && max > 0;
	}
	return false;
}

/*
 * Does the file system punch holes?  Punching a range past the end of the
 * file touches no data, and a file system without hole punching refuses
 * the mode before looking at the range.
 */
static bool file_can_discard(int fd, uint64_t size)
{
	return fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			 (off_t)size, 4096) == 0;
}

static int aio_open(struct td_image *img, const char *path, unsigned flags)
{
	struct aio_priv *p = img->priv;
	bool ro = flags & TD_IMAGE_RDONLY;
	uint64_t size;
	struct stat st;
	int err;

	snprintf(p->path, sizeof(p->path), "%s", path);
	err = tio_file_open(&p->file, p->path, ro,
			    !(flags & TD_IMAGE_NO_DIRECT));
	if (err)
		return err;
	if (fstat(p->file.fd_buffered, &st) < 0) {
		err = td_fail(errno, "%s: stat: %s", path, strerror(errno));
		goto fail;
	}
	p->is_blk = S_ISBLK(st.st_mode);
	if (p->is_blk) {
		if (ioctl(p->file.fd_buffered, BLKGETSIZE64, &size) < 0) {
			err = td_fail(errno, "%s: cannot get the device size: %s",
				      path, strerror(errno));
			goto fail;
		}
	} else {
		size = (uint64_t)st.st_size;
	}
	if (!size) {
		err = td_fail(EINVAL, "%s: empty image (size 0)", path);
		goto fail;
	}
	if (size % SECTOR_SIZE) {
		err = td_fail(EINVAL,
			      "%s: size %" PRIu64 " is not a multiple of 512 bytes",
			      path, size);
		goto fail;
	}
	img->sectors = size >> SECTOR_SHIFT;
	img->chunk_sectors = 0;
	if (ro)
		img->can_discard = false;
	else if (p->is_blk)
		img->can_discard = blk_can_discard(st.st_rdev);
	else
		img->can_discard = file_can_discard(p->file.fd_buffered, size);
	return 0;
fail:
	tio_file_close(&p->file);
	return err;
}

static void aio_close(struct td_image *img)
{
	struct aio_priv *p = img->priv;

	tio_file_close(&p->file);
}

/* Record @err on @t: a step that failed before it could start. */
static void fail_step(struct td_treq *t, int err)
{
	td_treq_get(t);
	td_treq_put(t, err);
}

static void aio_queue_read(struct td_image *img, struct td_treq *t)
{
	struct aio_priv *p = img->priv;
	uint32_t inside = 0, i;

	if (t->sec < img->sectors)
		inside = img->sectors - t->sec < t->secs ?
			 (uint32_t)(img->sectors - t->sec) : t->secs;

	/* One read per run of sectors nobody above has filled. */
	for (i = t->cursor; i < inside;) {
		uint32_t n = 0;
		int err;

		if (td_treq_filled(t, i)) {
			i++;
			continue;
		}
		while (i + n < inside && !td_treq_filled(t, i + n))
			n++;
		err = td_treq_submit(t, &p->file, TIO_READ,
				     t->buf + ((size_t)i << SECTOR_SHIFT),
				     (size_t)n << SECTOR_SHIFT,
				     (t->sec + i) << SECTOR_SHIFT, 0);
		if (err == -EAGAIN) {
			t->cursor = i;
			td_treq_wait_tio(t);
			return;
		}
		if (err)
			fail_step(t, err);
		td_treq_fill(t, i, n);
		i += n;
	}
	/* Past our end reads as zeros; nothing below may show through. */
	for (i = inside; i < t->secs; i++) {
		if (td_treq_filled(t, i))
			continue;
		memset(t->buf + ((size_t)i << SECTOR_SHIFT), 0, SECTOR_SIZE);
		td_treq_fill(t, i, 1);
	}
	td_treq_forward(t);
}

static void aio_queue_write(struct td_image *img, struct td_treq *t)
{
	struct aio_priv *p = img->priv;
	int err;

	if (t->sec > img->sectors || t->secs > img->sectors - t->sec) {
		td_err("%s: write of %u sectors at %" PRIu64 " past the end",
		       p->path, t->secs, t->sec);
		fail_step(t, -EINVAL);
		td_treq_issued(t);
		return;
	}
	err = td_treq_submit(t, &p->file, TIO_WRITE, t->buf,
			     (size_t)t->secs << SECTOR_SHIFT,
			     t->sec << SECTOR_SHIFT,
			     t->flags & TD_TREQ_FUA ? TIO_FUA : 0);
	if (err == -EAGAIN) {
		td_treq_wait_tio(t);
		return;
	}
	if (err)
		fail_step(t, err);
	td_treq_issued(t);
}

static void aio_queue_flush(struct td_image *img, struct td_treq *t)
{
	struct aio_priv *p = img->priv;
	int err;

	err = td_treq_submit(t, &p->file, TIO_FDSYNC, NULL, 0, 0, 0);
	if (err == -EAGAIN) {
		td_treq_wait_tio(t);
		return;
	}
	if (err)
		fail_step(t, err);
	td_treq_issued(t);
}

static int aio_get_parent(struct td_image *img, struct td_parent *parent)
{
	(void)img;
	(void)parent;
	return -ENOENT;
}

static int aio_validate_parent(struct td_image *img, struct td_image *parent)
{
	(void)img;
	(void)parent;
	return 0;
}

static int aio_discard(struct td_image *img, uint64_t sec, uint32_t secs)
{
	struct aio_priv *p = img->priv;
	uint64_t off = sec << SECTOR_SHIFT;
	uint64_t len = (uint64_t)secs << SECTOR_SHIFT;

	if (p->file.readonly)
		return -EROFS;
	if (!img->can_discard)
		return -EOPNOTSUPP;
	if (sec > img->sectors || secs > img->sectors - sec)
		return -EINVAL;
	if (!secs)
		return 0;
	if (p->is_blk) {
		uint64_t range[2] = { off, len };

		if (ioctl(p->file.fd_buffered, BLKDISCARD, range) < 0)
			return -errno;
		return 0;
	}
	if (fallocate(p->file.fd_buffered,
		      FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
		      (off_t)off, (off_t)len) < 0)
		return -errno;
	return 0;
}

const struct td_driver td_drv_aio = {
	.name			= "aio",
	.priv_size		= sizeof(struct aio_priv),
	.open			= aio_open,
	.close			= aio_close,
	.queue_read		= aio_queue_read,
	.queue_write		= aio_queue_write,
	.queue_flush		= aio_queue_flush,
	.get_parent		= aio_get_parent,
	.validate_parent	= aio_validate_parent,
	.discard		= aio_discard,
};
