// SPDX-License-Identifier: GPL-2.0-only OR LGPL-2.1-or-later
/*
 * tapdevN: a blk-mq disk whose requests go to a tapdisk over the ring.
 *
 * Tag == slot: the tag set is as deep as the ring has slots, so the
 * request with tag t owns data slot t for its lifetime.  Data is copied
 * between the request's pages and its slot (writes in queue_rq, reads at
 * completion), so tapdisk never sees a kernel address and nothing it
 * writes can point the kernel anywhere.
 *
 * When the tapdisk goes away the queue is quiesced and the requests on
 * the ring are requeued: blk-mq holds them, and new ones, until a new
 * tapdisk takes over (CREATE_DEVICE on a new ring, same capacity) or the
 * recovery window ends and everything fails with EIO.  Nothing waits for
 * a tapdisk that is not there for longer than the window.
 */
#include <linux/blk-mq.h>
#include <linux/blkdev.h>
#include <linux/log2.h>
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/workqueue.h>

#include "blktap.h"
#include "compat.h"

#define BLKTAP_FEAT_ALL	(BLKTAP_FEAT_FLUSH | BLKTAP_FEAT_FUA | \
			 BLKTAP_FEAT_DISCARD | BLKTAP_FEAT_WRITE_ZEROES | \
			 BLKTAP_FEAT_READONLY)
#define BLKTAP_MAX_CAPACITY	BIT_ULL(48)	/* sectors, as the ABI says */
#define BLKTAP_MAX_PHYS_BLOCK	65536u

int blktap_blk_major;

static void blktap_set_state(struct blktap *tap, enum blktap_dev_state state)
{
	unsigned long flags;

	spin_lock_irqsave(&tap->slock, flags);
	WRITE_ONCE(tap->dev_state, state);
	spin_unlock_irqrestore(&tap->slock, flags);
}

/* The ring operation for a request, or -1 if tapdisk cannot do it. */
static int blktap_rq_op(struct blktap *tap, struct request *rq, u8 *flags)
{
	u32 feat = tap->params.features;

	*flags = 0;
	switch (req_op(rq)) {
	case REQ_OP_READ:
		return BLKTAP_OP_READ;
	case REQ_OP_WRITE:
		if (rq->cmd_flags & REQ_FUA)
			*flags |= BLKTAP_REQ_FUA;
		return BLKTAP_OP_WRITE;
	case REQ_OP_FLUSH:
		return feat & BLKTAP_FEAT_FLUSH ? BLKTAP_OP_FLUSH : -1;
	case REQ_OP_DISCARD:
		return feat & BLKTAP_FEAT_DISCARD ? BLKTAP_OP_DISCARD : -1;
	case REQ_OP_WRITE_ZEROES:
		return feat & BLKTAP_FEAT_WRITE_ZEROES ?
		       BLKTAP_OP_WRITE_ZEROES : -1;
	default:
		return -1;
	}
}

/*
 * Which guest's pages these are, if blkback grant-mapped them: asked of
 * blkback-pagemap, for the request's first page (blkback's bios carry one
 * guest's pages).  Without that module there is no domid: blktap2 itself
 * knows nothing of Xen, and every domid tapdisk sees was counted there.
 */
static u16 blktap_rq_domid(struct blktap *tap, struct request *rq)
{
	struct blkback_pagemap_info info;

	if (!tap->pagemap || !blk_rq_bytes(rq) || !rq->bio)
		return BLKTAP_DOMID_NONE;
	if (tap->pagemap(req_bvec(rq).bv_page, &info))
		return BLKTAP_DOMID_NONE;
	return info.domid;
}

/*
 * Held from tapdevN's creation to its removal: blkback-pagemap cannot be
 * unloaded under queue_rq (rmmod is refused while it is held), and a
 * request costs no symbol search.  A tapdevN created before the module
 * was loaded goes without it.
 */
static void blktap_pagemap_get(struct blktap *tap)
{
	tap->pagemap = symbol_get(blkback_pagemap_lookup);
}

static void blktap_pagemap_put(struct blktap *tap)
{
	if (tap->pagemap) {
		symbol_put(blkback_pagemap_lookup);
		tap->pagemap = NULL;
	}
}

static void blktap_copy_to_slot(struct request *rq, char *slot)
{
	struct req_iterator iter;
	struct bio_vec bv;

	rq_for_each_segment(bv, rq, iter) {
		memcpy_from_bvec(slot, &bv);
		slot += bv.bv_len;
	}
}

static void blktap_copy_from_slot(struct request *rq, const char *slot)
{
	struct req_iterator iter;
	struct bio_vec bv;

	rq_for_each_segment(bv, rq, iter) {
		memcpy_to_bvec(&bv, slot);
		slot += bv.bv_len;
	}
}

/*
 * Puts one request on the ring.  Never sleeps.  tap->dev_state is read
 * once without the lock: it leaves RUNNING only while the queue is
 * quiesced, i.e. not while we are here, so the ring stays put.
 */
static blk_status_t blktap_queue_rq(struct blk_mq_hw_ctx *hctx,
				    const struct blk_mq_queue_data *bd)
{
	struct blktap *tap = hctx->queue->queuedata;
	struct blktap_ring *ring = &tap->ring;
	struct request *rq = bd->rq;
	struct blktap_ring_request *req;
	struct blktap_slot *s;
	unsigned long flags;
	u32 slot = rq->tag, bytes = blk_rq_bytes(rq), old;
	bool data, wake;
	u8 rflags;
	int op;

	switch (READ_ONCE(tap->dev_state)) {
	case BLKTAP_DEV_RUNNING:
		break;
	case BLKTAP_DEV_RECOVERING:
		/* Quiesced, so not expected; blk-mq retries later. */
		return BLK_STS_RESOURCE;
	default:
		return BLK_STS_IOERR;
	}
	op = blktap_rq_op(tap, rq, &rflags);
	if (op < 0)
		return BLK_STS_NOTSUPP;
	if (op_is_write(req_op(rq)) &&
	    (tap->params.features & BLKTAP_FEAT_READONLY))
		return BLK_STS_IOERR;
	data = op == BLKTAP_OP_READ || op == BLKTAP_OP_WRITE;
	/* The limits make both impossible; never index past the ring. */
	if (slot >= ring->nr_slots || (data && bytes > ring->slot_bytes)) {
		pr_err_ratelimited("blktap2: tapdev%d: request with tag %u of %u bytes does not fit the ring\n",
				   tap->minor, slot, bytes);
		return BLK_STS_IOERR;
	}

	blk_mq_start_request(rq);
	/* The slot is this tag's alone: no lock needed to fill it. */
	if (op == BLKTAP_OP_WRITE)
		blktap_copy_to_slot(rq, blktap_ring_slot_data(tap, slot));

	spin_lock_irqsave(&tap->slock, flags);
	s = &ring->slots[slot];
	if (ring->failed || s->rq) {
		spin_unlock_irqrestore(&tap->slock, flags);
		return BLK_STS_IOERR;
	}
	s->rq = rq;
	s->gen++;
	req = &ring->reqs[ring->req_prod & (ring->nr_slots - 1)];
	req->id = BLKTAP_MAKE_ID(s->gen, slot);
	/* A flush has no range (its position is not even set). */
	req->sector = op == BLKTAP_OP_FLUSH ? 0 : blk_rq_pos(rq);
	req->nr_sectors = op == BLKTAP_OP_FLUSH ? 0 : blk_rq_sectors(rq);
	req->op = op;
	req->flags = rflags;
	req->domid = data ? blktap_rq_domid(tap, rq) : BLKTAP_DOMID_NONE;
	req->reserved[0] = 0;
	req->reserved[1] = 0;
	old = ring->req_prod++;
	ring->unread++;
	/* The entry before the index that publishes it. */
	smp_wmb();
	WRITE_ONCE(ring->hdr->req_prod, ring->req_prod);
	/* The index before the event tapdisk set before it slept. */
	smp_mb();
	wake = blktap_ring_need_wake(ring->req_prod, old,
				     READ_ONCE(ring->hdr->req_event));
	tap->stats[BLKTAP_STAT_REQUESTS]++;
	tap->stats[BLKTAP_STAT_INFLIGHT]++;
	if (data && blk_rq_sectors(rq) > tap->stats[BLKTAP_STAT_MAX_SECTORS])
		tap->stats[BLKTAP_STAT_MAX_SECTORS] = blk_rq_sectors(rq);
	spin_unlock_irqrestore(&tap->slock, flags);

	if (wake)
		wake_up_interruptible(&ring->poll_wq);
	return BLK_STS_OK;
}

/* Completes a request taken off the ring; @slot holds its read data. */
void blktap_device_end_request(struct blktap *tap, struct request *rq,
			       u32 slot, int status)
{
	if (!status && req_op(rq) == REQ_OP_READ)
		blktap_copy_from_slot(rq, blktap_ring_slot_data(tap, slot));
	blk_mq_end_request(rq, errno_to_blk_status(status));
}

static const struct blk_mq_ops blktap_mq_ops = {
	.queue_rq	= blktap_queue_rq,
};

/*
 * Openers are counted here rather than read from the block layer, whose
 * counters differ between kernel versions.  Not under tap->lock: the
 * block layer calls us with its open_mutex held, which del_gendisk takes
 * while we hold tap->lock.
 */
int blktap_disk_open(struct gendisk *disk, bool write)
{
	struct blktap *tap = disk->private_data;
	unsigned long flags;
	int err = 0;

	spin_lock_irqsave(&tap->slock, flags);
	if (tap->removing)
		err = -ENXIO;
	else if (write && (tap->params.features & BLKTAP_FEAT_READONLY))
		err = -EROFS;
	else
		tap->openers++;
	spin_unlock_irqrestore(&tap->slock, flags);
	return err;
}

void blktap_disk_release(struct gendisk *disk)
{
	struct blktap *tap = disk->private_data;
	unsigned long flags;

	spin_lock_irqsave(&tap->slock, flags);
	tap->openers--;
	spin_unlock_irqrestore(&tap->slock, flags);
}

static char *blktap_disk_devnode(struct gendisk *disk, umode_t *mode)
{
	return kasprintf(GFP_KERNEL, "xen/blktap-2/%s", disk->disk_name);
}

static const struct block_device_operations blktap_bdev_ops = {
	.owner		= THIS_MODULE,
	.open		= blktap_bdev_open,
	.release	= blktap_bdev_release,
	.devnode	= blktap_disk_devnode,
};

/* With tap->lock held. */
static void blktap_quiesce(struct blktap *tap)
{
	if (!tap->quiesced) {
		blk_mq_quiesce_queue(tap->disk->queue);
		tap->quiesced = true;
	}
}

/* With tap->lock held: let queue_rq see the new state, held I/O too. */
static void blktap_unquiesce(struct blktap *tap)
{
	struct request_queue *q = tap->disk->queue;

	if (tap->quiesced) {
		blk_mq_unquiesce_queue(q);
		tap->quiesced = false;
	}
	blk_mq_kick_requeue_list(q);
}

static int blktap_check_params(struct blktap *tap,
			       const struct blktap_device_params *p)
{
	u32 lbs = p->sector_size;
	u32 pbs = p->physical_sector_size ? p->physical_sector_size : lbs;

	if (!p->capacity || p->capacity > BLKTAP_MAX_CAPACITY) {
		dev_warn(tap->dev, "capacity %llu sectors: must be 1 to 2^48\n",
			 p->capacity);
		return -EINVAL;
	}
	if (lbs != 512 && lbs != 4096) {
		dev_warn(tap->dev, "sector size %u: must be 512 or 4096\n",
			 lbs);
		return -EINVAL;
	}
	if (pbs < lbs || pbs > BLKTAP_MAX_PHYS_BLOCK || !is_power_of_2(pbs)) {
		dev_warn(tap->dev, "physical sector size %u: must be a power of two from %u to %u\n",
			 pbs, lbs, BLKTAP_MAX_PHYS_BLOCK);
		return -EINVAL;
	}
	if (p->capacity & ((lbs >> SECTOR_SHIFT) - 1)) {
		dev_warn(tap->dev, "capacity %llu sectors is not a multiple of the %u-byte sector\n",
			 p->capacity, lbs);
		return -EINVAL;
	}
	if (p->reserved) {
		dev_warn(tap->dev, "device parameters: reserved field not zero\n");
		return -EINVAL;
	}
	return 0;
}

/* A new tapdisk on a new ring takes over a tapdevN whose tapdisk died. */
static int blktap_device_reattach(struct blktap *tap,
				  const struct blktap_device_params *p)
{
	struct blktap_ring *ring = &tap->ring;
	unsigned long flags;

	if (tap->dev_state == BLKTAP_DEV_RUNNING)
		return -EEXIST;
	if (p->capacity != tap->params.capacity ||
	    p->sector_size != tap->params.sector_size) {
		dev_warn(tap->dev, "cannot take over tapdev%d: it has %llu sectors of %u bytes, not %llu of %u\n",
			 tap->minor, tap->params.capacity,
			 tap->params.sector_size, p->capacity, p->sector_size);
		return -EINVAL;
	}
	/* Tags must stay slots, and held requests must fit a slot. */
	if (ring->nr_slots < tap->tag_set.queue_depth ||
	    ring->slot_bytes < tap->dev_slot_bytes) {
		dev_warn(tap->dev, "cannot take over tapdev%d: the ring needs at least %u slots of %u bytes\n",
			 tap->minor, tap->tag_set.queue_depth,
			 tap->dev_slot_bytes);
		return -EINVAL;
	}
	/* The disk keeps its limits; only the ring changes. */
	spin_lock_irqsave(&tap->slock, flags);
	WRITE_ONCE(tap->dev_state, BLKTAP_DEV_RUNNING);
	tap->stats[BLKTAP_STAT_RECOVERIES]++;
	spin_unlock_irqrestore(&tap->slock, flags);
	blktap_unquiesce(tap);
	dev_info(tap->dev, "tapdev%d taken over by a new tapdisk\n",
		 tap->minor);
	return 0;
}

int blktap_device_create(struct blktap *tap,
			 const struct blktap_device_params *p)
{
	struct blktap_ring *ring = &tap->ring;
	struct blktap_limits lim = { 0 };
	struct blk_mq_tag_set *set = &tap->tag_set;
	struct gendisk *disk;
	u32 features = p->features & BLKTAP_FEAT_ALL, lbs = p->sector_size;
	u32 pbs = p->physical_sector_size ? p->physical_sector_size : lbs;
	unsigned int nodata;
	int err;

	lockdep_assert_held(&tap->lock);
	err = blktap_check_params(tap, p);
	if (err)
		return err;
	if (ring->failed)
		return -EIO;
	if (tap->dev_state != BLKTAP_DEV_NONE)
		return blktap_device_reattach(tap, p);
	/* A forcibly removed tapdevN still open shares the count. */
	if (tap->openers)
		return -EBUSY;

	memset(set, 0, sizeof(*set));
	set->ops = &blktap_mq_ops;
	set->nr_hw_queues = 1;
	set->queue_depth = ring->nr_slots;
	set->numa_node = NUMA_NO_NODE;
	set->flags = BLK_MQ_F_SHOULD_MERGE;
	set->driver_data = tap;
	err = blk_mq_alloc_tag_set(set);
	if (err)
		return err;

	lim.logical_block_size = lbs;
	lim.physical_block_size = pbs;
	lim.max_hw_sectors = ring->slot_bytes >> SECTOR_SHIFT;
	/* Data is copied, so segments cost nothing: as many as sectors. */
	lim.max_segments = min_t(u32, USHRT_MAX,
				 ring->slot_bytes >> SECTOR_SHIFT);
	/* No data: only the request's byte count (32 bits) limits these. */
	nodata = round_down(UINT_MAX >> SECTOR_SHIFT, lbs >> SECTOR_SHIFT);
	if (features & BLKTAP_FEAT_DISCARD) {
		lim.max_discard_sectors = nodata;
		lim.discard_granularity = pbs;
	}
	if (features & BLKTAP_FEAT_WRITE_ZEROES)
		lim.max_write_zeroes_sectors = nodata;
	lim.write_cache = features & BLKTAP_FEAT_FLUSH;
	/* FUA means nothing to the block layer without a write cache. */
	lim.fua = lim.write_cache && (features & BLKTAP_FEAT_FUA);

	disk = blktap_alloc_disk(set, &lim, tap);
	if (IS_ERR(disk)) {
		err = PTR_ERR(disk);
		goto fail_set;
	}
	disk->major = blktap_blk_major;
	disk->first_minor = tap->minor;
	disk->minors = 1;
	/* No partition scan: add_disk must not wait for tapdisk's I/O. */
	disk->flags |= GENHD_FL_NO_PART;
	disk->fops = &blktap_bdev_ops;
	disk->private_data = tap;
	snprintf(disk->disk_name, DISK_NAME_LEN, "tapdev%d", tap->minor);
	set_capacity(disk, p->capacity);
	set_disk_ro(disk, features & BLKTAP_FEAT_READONLY);

	tap->params = *p;
	tap->params.physical_sector_size = pbs;
	tap->params.features = features;
	tap->dev_slot_bytes = ring->slot_bytes;
	tap->quiesced = false;
	tap->removing = false;
	tap->disk = disk;
	blktap_pagemap_get(tap);
	blktap_set_state(tap, BLKTAP_DEV_RUNNING);
	err = add_disk(disk);
	if (err) {
		blktap_set_state(tap, BLKTAP_DEV_NONE);
		tap->disk = NULL;
		put_disk(disk);
		blktap_pagemap_put(tap);
		goto fail_set;
	}
	dev_info(tap->dev, "tapdev%d: %llu sectors, %u/%u-byte blocks, features %#x%s\n",
		 tap->minor, p->capacity, lbs, pbs, features,
		 tap->pagemap ? ", domids from blkback-pagemap" : "");
	return 0;

fail_set:
	blk_mq_free_tag_set(set);
	return err;
}

/*
 * Removes tapdevN.  Refused while it is open unless @force; either way
 * nothing left on the ring or held for recovery waits: it all fails with
 * EIO first, so del_gendisk cannot wait on a tapdisk (which may be the
 * very caller, blocked in this ioctl).
 */
int blktap_device_destroy(struct blktap *tap, bool force)
{
	struct gendisk *disk = tap->disk;
	unsigned long flags;

	lockdep_assert_held(&tap->lock);
	if (tap->dev_state == BLKTAP_DEV_NONE)
		return 0;
	spin_lock_irqsave(&tap->slock, flags);
	if (tap->openers && !force) {
		spin_unlock_irqrestore(&tap->slock, flags);
		return -EBUSY;
	}
	tap->removing = true;
	spin_unlock_irqrestore(&tap->slock, flags);

	blktap_quiesce(tap);
	blktap_set_state(tap, BLKTAP_DEV_DEAD);
	blktap_ring_drain(tap);
	blktap_unquiesce(tap);

	del_gendisk(disk);
	put_disk(disk);
	blk_mq_free_tag_set(&tap->tag_set);
	/* No queue_rq can run any more. */
	blktap_pagemap_put(tap);

	spin_lock_irqsave(&tap->slock, flags);
	tap->disk = NULL;
	WRITE_ONCE(tap->dev_state, BLKTAP_DEV_NONE);
	tap->removing = false;
	spin_unlock_irqrestore(&tap->slock, flags);
	dev_info(tap->dev, "tapdev%d removed%s\n", tap->minor,
		 force ? " (forced)" : "");
	return 0;
}

/*
 * The tapdisk closed the ring (it died, or detached without removing
 * tapdevN): hold its requests for the recovery window.
 */
void blktap_device_ring_lost(struct blktap *tap)
{
	struct blktap_ring *ring = &tap->ring;
	unsigned long flags, delay;
	struct request *rq;
	u32 i, held = 0;

	lockdep_assert_held(&tap->lock);
	blktap_quiesce(tap);
	blktap_set_state(tap, BLKTAP_DEV_RECOVERING);
	for (i = 0; i < ring->nr_slots; i++) {
		spin_lock_irqsave(&tap->slock, flags);
		rq = ring->slots[i].rq;
		ring->slots[i].rq = NULL;
		if (rq) {
			tap->stats[BLKTAP_STAT_INFLIGHT]--;
			tap->stats[BLKTAP_STAT_HELD]++;
		}
		spin_unlock_irqrestore(&tap->slock, flags);
		if (rq) {
			/* Back to blk-mq, which keeps it while quiesced. */
			blk_mq_requeue_request(rq, false);
			held++;
		}
	}
	delay = msecs_to_jiffies(tap->recovery_ms);
	tap->recovery_deadline = jiffies + delay;
	mod_delayed_work(system_wq, &tap->recovery_work, delay);
	dev_warn(tap->dev, "tapdisk gone with %u requests in flight; holding I/O for %u ms\n",
		 held, tap->recovery_ms);
}

/* The recovery window ended: fail everything held, and what comes. */
void blktap_recovery_work(struct work_struct *work)
{
	struct blktap *tap = container_of(to_delayed_work(work),
					  struct blktap, recovery_work);

	mutex_lock(&tap->lock);
	if (tap->dev_state != BLKTAP_DEV_RECOVERING)
		goto out;
	/* A later tapdisk died again: its own window counts. */
	if (time_before(jiffies, tap->recovery_deadline)) {
		mod_delayed_work(system_wq, &tap->recovery_work,
				 tap->recovery_deadline - jiffies);
		goto out;
	}
	dev_err(tap->dev, "no tapdisk took over tapdev%d within %u ms; failing its I/O\n",
		tap->minor, tap->recovery_ms);
	blktap_set_state(tap, BLKTAP_DEV_DEAD);
	blktap_unquiesce(tap);
out:
	mutex_unlock(&tap->lock);
}

int blktap_device_init(void)
{
	int major = register_blkdev(0, "tapdev");

	if (major < 0) {
		pr_err("blktap2: cannot register block major: %d\n", major);
		return major;
	}
	blktap_blk_major = major;
	return 0;
}

void blktap_device_exit(void)
{
	unregister_blkdev(blktap_blk_major, "tapdev");
}
