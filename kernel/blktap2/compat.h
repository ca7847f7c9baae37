/* SPDX-License-Identifier: GPL-2.0-only OR LGPL-2.1-or-later */
/*
 * Kernel API differences between the kernels blktap2 builds for (Debian
 * bookworm's 6.1 and 6.12), kept here so the rest reads as one version.
 * Only 6.1 and 6.12 are built and tested; the boundaries in between are
 * the upstream releases that made each change.  (The version is on the
 * right of each test, where checkpatch wants the constant.)
 */
#ifndef BLKTAP2_COMPAT_H
#define BLKTAP2_COMPAT_H

#include <linux/blk-mq.h>
#include <linux/blkdev.h>
#include <linux/mm.h>
#include <linux/version.h>

#include "blktap.h"

/* 6.2: class devnode() takes a const device. */
#if KERNEL_VERSION(6, 2, 0) <= LINUX_VERSION_CODE
#define BLKTAP_DEVNODE_CONST const
#else
#define BLKTAP_DEVNODE_CONST
#endif

/* 6.4: class attribute callbacks take a const class. */
#if KERNEL_VERSION(6, 4, 0) <= LINUX_VERSION_CODE
#define BLKTAP_CLASS_CONST const
#else
#define BLKTAP_CLASS_CONST
#endif

/* 6.3: vm_flags may only be changed through vm_flags_set(). */
static inline void blktap_vma_set_flags(struct vm_area_struct *vma,
					unsigned long flags)
{
#if KERNEL_VERSION(6, 3, 0) <= LINUX_VERSION_CODE
	vm_flags_set(vma, flags);
#else
	vma->vm_flags |= flags;
#endif
}

/* 6.5: ->open() gets the gendisk and a blk_mode_t, ->release() no mode. */
#if KERNEL_VERSION(6, 5, 0) <= LINUX_VERSION_CODE
static inline int blktap_bdev_open(struct gendisk *disk, blk_mode_t mode)
{
	return blktap_disk_open(disk, mode & BLK_OPEN_WRITE);
}

static inline void blktap_bdev_release(struct gendisk *disk)
{
	blktap_disk_release(disk);
}
#else
static inline int blktap_bdev_open(struct block_device *bdev, fmode_t mode)
{
	return blktap_disk_open(bdev->bd_disk, mode & FMODE_WRITE);
}

static inline void blktap_bdev_release(struct gendisk *disk, fmode_t mode)
{
	blktap_disk_release(disk);
}
#endif

/* What tapdevN's queue looks like, whichever way the kernel takes it. */
struct blktap_limits {
	unsigned int	logical_block_size;
	unsigned int	physical_block_size;
	unsigned int	max_hw_sectors;
	unsigned short	max_segments;
	unsigned int	max_discard_sectors;	/* 0: no discard */
	unsigned int	discard_granularity;
	unsigned int	max_write_zeroes_sectors;	/* 0: none */
	bool		write_cache;		/* accepts FLUSH */
	bool		fua;
};

/*
 * 6.9: blk_mq_alloc_disk() takes the queue limits; before, they were set
 * one by one afterwards.  6.11: the write cache and FUA became features
 * in the limits instead of blk_queue_write_cache().
 */
static inline struct gendisk *blktap_alloc_disk(struct blk_mq_tag_set *set,
						const struct blktap_limits *l,
						void *data)
{
	struct gendisk *disk;
#if KERNEL_VERSION(6, 9, 0) <= LINUX_VERSION_CODE
	struct queue_limits lim = {
		.logical_block_size	= l->logical_block_size,
		.physical_block_size	= l->physical_block_size,
		.max_hw_sectors		= l->max_hw_sectors,
		.max_segments		= l->max_segments,
		.max_segment_size	= UINT_MAX,
		.max_hw_discard_sectors	= l->max_discard_sectors,
		.discard_granularity	= l->discard_granularity,
		.max_write_zeroes_sectors = l->max_write_zeroes_sectors,
	};

#if KERNEL_VERSION(6, 11, 0) <= LINUX_VERSION_CODE
	if (l->write_cache)
		lim.features |= BLK_FEAT_WRITE_CACHE;
	if (l->fua)
		lim.features |= BLK_FEAT_FUA;
#endif
	disk = blk_mq_alloc_disk(set, &lim, data);
	if (IS_ERR(disk))
		return disk;
#if KERNEL_VERSION(6, 11, 0) > LINUX_VERSION_CODE
	blk_queue_write_cache(disk->queue, l->write_cache, l->fua);
#endif
#else
	struct request_queue *q;

	disk = blk_mq_alloc_disk(set, data);
	if (IS_ERR(disk))
		return disk;
	q = disk->queue;
	/* The block size first: the sector limits are rounded to it. */
	blk_queue_logical_block_size(q, l->logical_block_size);
	blk_queue_physical_block_size(q, l->physical_block_size);
	blk_queue_max_hw_sectors(q, l->max_hw_sectors);
	blk_queue_max_segments(q, l->max_segments);
	blk_queue_max_segment_size(q, UINT_MAX);
	blk_queue_max_discard_sectors(q, l->max_discard_sectors);
	q->limits.discard_granularity = l->discard_granularity;
	blk_queue_max_write_zeroes_sectors(q, l->max_write_zeroes_sectors);
	blk_queue_write_cache(q, l->write_cache, l->fua);
	/* Later kernels assume non-rotational unless told otherwise. */
	blk_queue_flag_set(QUEUE_FLAG_NONROT, q);
#endif
	return disk;
}

#endif /* BLKTAP2_COMPAT_H */
