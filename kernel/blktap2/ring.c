// SPDX-License-Identifier: GPL-2.0-only OR LGPL-2.1-or-later
/*
 * /dev/xen/blktap-2/blktapN: the ring a tapdisk maps (the ABI is
 * include/blktap-ring.h).
 *
 * One opener, the tapdisk.  SETUP_RING allocates the shared memory and
 * writes the front's half of the header; tapdisk maps it once, and from
 * then on only that process (its mm) may create or remove tapdevN or
 * report responses.  Closing the file while tapdevN exists starts the
 * recovery window (device.c).
 *
 * Whatever tapdisk can write is untrusted: indices and entries are read
 * once and validated, and the layout always comes from the kernel's own
 * copy, never from the header.
 */
#include <linux/fs.h>
#include <linux/log2.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/poll.h>
#include <linux/sched/mm.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/vmalloc.h>

#include "blktap.h"
#include "compat.h"

dev_t blktap_ring_devt;

void *blktap_ring_slot_data(struct blktap *tap, u32 slot)
{
	return tap->ring.data + (size_t)slot * tap->ring.slot_bytes;
}

static bool blktap_ring_is_mapper(struct blktap *tap)
{
	/* Pairs with the release in mmap: set up before mm is seen. */
	return current->mm && smp_load_acquire(&tap->ring.mm) == current->mm;
}

/* With tap->lock held: may the caller create or remove tapdevN? */
static int blktap_ring_check_mapper(struct blktap *tap)
{
	if (!tap->ring.mem)
		return -ENXIO;		/* no SETUP_RING yet */
	if (!tap->ring.mm)
		return -EINVAL;		/* not mapped yet */
	if (!blktap_ring_is_mapper(tap))
		return -EPERM;
	return 0;
}

/*
 * Fails every request on the ring with EIO.  The ring must already be
 * failed or the device dead, so that no new request takes a slot.
 */
void blktap_ring_drain(struct blktap *tap)
{
	struct blktap_ring *ring = &tap->ring;
	unsigned long flags;
	struct request *rq;
	u32 i;

	for (i = 0; i < ring->nr_slots; i++) {
		spin_lock_irqsave(&tap->slock, flags);
		rq = ring->slots[i].rq;
		ring->slots[i].rq = NULL;
		if (rq)
			tap->stats[BLKTAP_STAT_INFLIGHT]--;
		spin_unlock_irqrestore(&tap->slock, flags);
		if (rq)
			blktap_device_end_request(tap, rq, i, -EIO);
	}
}

/*
 * tapdisk published more responses than it could possibly have: nothing
 * it says can be trusted any more.  Fail what is in flight and all new
 * requests until a new ring is set up.
 */
void blktap_ring_fail(struct blktap *tap)
{
	unsigned long flags;
	bool first;

	spin_lock_irqsave(&tap->slock, flags);
	first = !tap->ring.failed;
	if (first) {
		tap->ring.failed = true;
		tap->stats[BLKTAP_STAT_RING_FAILURES]++;
	}
	spin_unlock_irqrestore(&tap->slock, flags);
	if (!first)
		return;
	dev_err(tap->dev, "tapdisk broke the ring protocol; failing its I/O\n");
	blktap_ring_drain(tap);
}

/* With tap->slock held: the request a response names, if it is valid. */
static struct request *blktap_ring_claim(struct blktap *tap, u64 id,
					 u32 *slot)
{
	struct blktap_ring *ring = &tap->ring;
	struct blktap_slot *s;
	struct request *rq;
	u32 i = BLKTAP_ID_SLOT(id);

	if (i >= ring->nr_slots)
		return NULL;
	s = &ring->slots[i];
	if (!s->rq || BLKTAP_ID_GEN(id) != s->gen)
		return NULL;		/* not in flight, or stale */
	rq = s->rq;
	s->rq = NULL;
	*slot = i;
	return rq;
}

/*
 * BLKTAP_IOC_KICK: consume the responses tapdisk published.  A bad
 * response is dropped and counted; a bad count fails the ring.  Only
 * tapdisk's own thread can be kept here by a tapdisk that never stops
 * publishing, and a fatal signal gets it out.
 */
static int blktap_ring_kick(struct blktap *tap)
{
	struct blktap_ring *ring = &tap->ring;
	struct blktap_ring_response *r;
	unsigned long flags;
	struct request *rq;
	u32 prod, slot = 0;
	bool done;
	u64 id;
	int status;

	for (;;) {
		spin_lock_irqsave(&tap->slock, flags);
		if (ring->failed) {
			spin_unlock_irqrestore(&tap->slock, flags);
			return -EIO;
		}
		prod = READ_ONCE(ring->hdr->rsp_prod);
		/* The index before the entries it publishes. */
		smp_rmb();
		if (prod - ring->rsp_cons > ring->nr_slots) {
			spin_unlock_irqrestore(&tap->slock, flags);
			blktap_ring_fail(tap);
			return -EIO;
		}
		if (prod == ring->rsp_cons) {
			WRITE_ONCE(ring->hdr->rsp_event, ring->rsp_cons + 1);
			/* The event before looking again: no kick is lost. */
			smp_mb();
			done = READ_ONCE(ring->hdr->rsp_prod) == ring->rsp_cons;
			spin_unlock_irqrestore(&tap->slock, flags);
			if (done)
				return 0;
			continue;
		}
		/* One read of each field: tapdisk may rewrite the entry. */
		r = &ring->rsps[ring->rsp_cons & (ring->nr_slots - 1)];
		id = READ_ONCE(r->id);
		status = READ_ONCE(r->status);
		ring->rsp_cons++;
		rq = blktap_ring_claim(tap, id, &slot);
		if (!rq) {
			tap->stats[BLKTAP_STAT_BAD_RESPONSES]++;
		} else {
			tap->stats[BLKTAP_STAT_INFLIGHT]--;
			if (status > 0 || status < -MAX_ERRNO) {
				tap->stats[BLKTAP_STAT_BAD_STATUS]++;
				status = -EIO;
			}
		}
		spin_unlock_irqrestore(&tap->slock, flags);

		if (rq)
			blktap_device_end_request(tap, rq, slot, status);
		else
			dev_warn_ratelimited(tap->dev,
					     "dropped a response with bad id %#llx\n",
					     id);
		if (fatal_signal_pending(current))
			return -EINTR;
		cond_resched();
	}
}

static int blktap_ring_setup(struct blktap *tap, struct blktap_ring_setup *s)
{
	struct blktap_ring *ring = &tap->ring;
	struct blktap_ring_header *h;
	struct blktap_slot *slots;
	u32 n = s->nr_slots, sb = s->slot_bytes;
	unsigned long flags;
	void *mem;
	u64 size;
	int err = 0;

	if (!n || n > BLKTAP_RING_MAX_SLOTS || !is_power_of_2(n))
		return -EINVAL;
	if (!sb || sb > BLKTAP_RING_MAX_SLOT_BYTES || sb % BLKTAP_PAGE_SIZE)
		return -EINVAL;
	size = blktap_ring_map_size(n, sb);

	mutex_lock(&tap->lock);
	if (ring->mem) {
		err = -EBUSY;		/* one ring per open */
		goto out;
	}
	mem = vmalloc_user(size);
	slots = kvcalloc(n, sizeof(*slots), GFP_KERNEL);
	if (!mem || !slots) {
		vfree(mem);
		kvfree(slots);
		err = -ENOMEM;
		goto out;
	}
	h = mem;
	h->magic = BLKTAP_RING_MAGIC;
	h->version = BLKTAP_RING_VERSION;
	h->nr_slots = n;
	h->slot_bytes = sb;
	h->req_offset = blktap_ring_req_offset();
	h->rsp_offset = blktap_ring_rsp_offset(n);
	h->data_offset = blktap_ring_data_offset(n);
	h->map_size = size;
	/* Until they say otherwise, both sides want the first entry. */
	h->req_event = 1;
	h->rsp_event = 1;

	spin_lock_irqsave(&tap->slock, flags);
	ring->mem = mem;
	ring->hdr = h;
	ring->reqs = mem + blktap_ring_req_offset();
	ring->rsps = mem + blktap_ring_rsp_offset(n);
	ring->data = mem + blktap_ring_data_offset(n);
	ring->nr_slots = n;
	ring->slot_bytes = sb;
	ring->map_size = size;
	ring->slots = slots;
	ring->req_prod = 0;
	ring->rsp_cons = 0;
	ring->unread = 0;
	ring->failed = false;
	spin_unlock_irqrestore(&tap->slock, flags);
	s->map_size = size;
out:
	mutex_unlock(&tap->lock);
	return err;
}

/* With tap->lock held and tapdevN no longer using the ring. */
static void blktap_ring_free(struct blktap *tap)
{
	struct blktap_ring *ring = &tap->ring;
	struct blktap_slot *slots;
	struct mm_struct *mm;
	unsigned long flags;
	void *mem;

	spin_lock_irqsave(&tap->slock, flags);
	mem = ring->mem;
	slots = ring->slots;
	mm = ring->mm;
	ring->mem = NULL;
	ring->hdr = NULL;
	ring->reqs = NULL;
	ring->rsps = NULL;
	ring->data = NULL;
	ring->slots = NULL;
	ring->mm = NULL;
	ring->nr_slots = 0;
	ring->slot_bytes = 0;
	ring->map_size = 0;
	ring->failed = false;
	spin_unlock_irqrestore(&tap->slock, flags);
	vfree(mem);
	kvfree(slots);
	if (mm)
		mmdrop(mm);
}

static int blktap_ring_open(struct inode *inode, struct file *file)
{
	struct blktap *tap;
	int err = 0;

	mutex_lock(&blktap_lock);
	tap = blktap_find_locked(iminor(inode));
	if (!tap) {
		err = -ENXIO;
		goto out;
	}
	mutex_lock(&tap->lock);
	if (tap->ring_open) {
		err = -EBUSY;
	} else {
		tap->ring_open = true;
		tap->task = get_pid(task_tgid(current));
		file->private_data = tap;
	}
	mutex_unlock(&tap->lock);
out:
	mutex_unlock(&blktap_lock);
	if (err)
		return err;
	return stream_open(inode, file);
}

/*
 * The last reference to the file is gone, so are all mappings of the
 * ring (each holds the file) and every ioctl on it.
 */
static int blktap_ring_release(struct inode *inode, struct file *file)
{
	struct blktap *tap = file->private_data;

	mutex_lock(&tap->lock);
	if (tap->dev_state == BLKTAP_DEV_RUNNING)
		blktap_device_ring_lost(tap);
	blktap_ring_free(tap);
	put_pid(tap->task);
	tap->task = NULL;
	tap->ring_open = false;
	mutex_unlock(&tap->lock);
	return 0;
}

static int blktap_ring_mmap(struct file *file, struct vm_area_struct *vma)
{
	struct blktap *tap = file->private_data;
	struct blktap_ring *ring = &tap->ring;
	unsigned long size = vma->vm_end - vma->vm_start;
	int err;

	mutex_lock(&tap->lock);
	if (!ring->mem)
		err = -ENXIO;		/* SETUP_RING first */
	else if (ring->mm)
		err = -EBUSY;		/* one mapping, one answering process */
	else if (vma->vm_pgoff || size != ring->map_size)
		err = -EINVAL;
	else if (!(vma->vm_flags & VM_SHARED))
		err = -EINVAL;		/* a private copy would see nothing */
	else
		err = remap_vmalloc_range(vma, ring->mem, 0);
	if (!err) {
		/* A child of tapdisk gets no copy it could answer with. */
		blktap_vma_set_flags(vma, VM_DONTCOPY);
		mmgrab(current->mm);
		/* The ring complete before the KICK path sees its mapper. */
		smp_store_release(&ring->mm, current->mm);
	}
	mutex_unlock(&tap->lock);
	return err;
}

/*
 * POLLIN while requests were published that tapdisk asked to hear about
 * (req_prod passed its req_event) and that it has not acknowledged with
 * read() (optional; it stops the wakeups while tapdisk deliberately
 * leaves requests on the ring, e.g. when paused).
 */
static __poll_t blktap_ring_poll(struct file *file, poll_table *wait)
{
	struct blktap *tap = file->private_data;
	struct blktap_ring *ring = &tap->ring;
	unsigned long flags;
	__poll_t mask = 0;

	poll_wait(file, &ring->poll_wq, wait);
	spin_lock_irqsave(&tap->slock, flags);
	if (ring->mem && !ring->failed && ring->unread &&
	    (s32)(ring->req_prod - READ_ONCE(ring->hdr->req_event)) >= 0)
		mask = EPOLLIN | EPOLLRDNORM;
	spin_unlock_irqrestore(&tap->slock, flags);
	return mask;
}

/* Like an eventfd: the number of requests published since the last read. */
static ssize_t blktap_ring_read(struct file *file, char __user *buf,
				size_t len, loff_t *ppos)
{
	struct blktap *tap = file->private_data;
	struct blktap_ring *ring = &tap->ring;
	unsigned long flags;
	u64 n;

	if (len < sizeof(n))
		return -EINVAL;
	spin_lock_irqsave(&tap->slock, flags);
	if (!ring->mem) {
		spin_unlock_irqrestore(&tap->slock, flags);
		return -ENXIO;
	}
	n = ring->unread;
	ring->unread = 0;
	spin_unlock_irqrestore(&tap->slock, flags);
	if (!n)
		return -EAGAIN;
	if (copy_to_user(buf, &n, sizeof(n)))
		return -EFAULT;
	return sizeof(n);
}

static long blktap_ring_ioctl(struct file *file, unsigned int cmd,
			      unsigned long arg)
{
	struct blktap *tap = file->private_data;
	void __user *uarg = (void __user *)arg;
	struct blktap_device_params params;
	struct blktap_ring_setup setup;
	int err;

	switch (cmd) {
	case BLKTAP_IOC_SETUP_RING:
		if (copy_from_user(&setup, uarg, sizeof(setup)))
			return -EFAULT;
		err = blktap_ring_setup(tap, &setup);
		if (!err && copy_to_user(uarg, &setup, sizeof(setup)))
			err = -EFAULT;
		return err;
	case BLKTAP_IOC_CREATE_DEVICE:
		if (copy_from_user(&params, uarg, sizeof(params)))
			return -EFAULT;
		mutex_lock(&tap->lock);
		err = blktap_ring_check_mapper(tap);
		if (!err)
			err = blktap_device_create(tap, &params);
		mutex_unlock(&tap->lock);
		return err;
	case BLKTAP_IOC_REMOVE_DEVICE:
		if (arg & ~(unsigned long)BLKTAP_REMOVE_FORCE)
			return -EINVAL;
		mutex_lock(&tap->lock);
		err = blktap_ring_check_mapper(tap);
		if (!err)
			err = blktap_device_destroy(tap,
						    arg & BLKTAP_REMOVE_FORCE);
		mutex_unlock(&tap->lock);
		return err;
	case BLKTAP_IOC_KICK:
		if (!blktap_ring_is_mapper(tap))
			return -EPERM;
		return blktap_ring_kick(tap);
	}
	return -ENOTTY;
}

static const struct file_operations blktap_ring_fops = {
	.owner		= THIS_MODULE,
	.open		= blktap_ring_open,
	.release	= blktap_ring_release,
	.read		= blktap_ring_read,
	.mmap		= blktap_ring_mmap,
	.poll		= blktap_ring_poll,
	.unlocked_ioctl	= blktap_ring_ioctl,
	.compat_ioctl	= compat_ptr_ioctl,
};

/* blktapN: its char device and its node in class blktap2. */
int blktap_ring_create(struct blktap *tap)
{
	dev_t devt = MKDEV(MAJOR(blktap_ring_devt), tap->minor);
	struct cdev *cdev;
	int err;

	/* Allocated: an open racing with cdev_del keeps it alive. */
	cdev = cdev_alloc();
	if (!cdev)
		return -ENOMEM;
	cdev->owner = THIS_MODULE;
	cdev->ops = &blktap_ring_fops;
	err = cdev_add(cdev, devt, 1);
	if (err) {
		kobject_put(&cdev->kobj);
		return err;
	}
	tap->dev = device_create_with_groups(&blktap_class, NULL, devt, tap,
					     blktap_groups, "blktap%d",
					     tap->minor);
	if (IS_ERR(tap->dev)) {
		err = PTR_ERR(tap->dev);
		tap->dev = NULL;
		cdev_del(cdev);
		return err;
	}
	tap->cdev = cdev;
	return 0;
}

void blktap_ring_destroy(struct blktap *tap)
{
	device_unregister(tap->dev);
	cdev_del(tap->cdev);
	tap->dev = NULL;
	tap->cdev = NULL;
}

int blktap_ring_init(void)
{
	int err;

	/* Keep the shared layout what include/blktap-ring.h says. */
	BUILD_BUG_ON(PAGE_SIZE != BLKTAP_PAGE_SIZE);
	BUILD_BUG_ON(sizeof(struct blktap_ring_header) != BLKTAP_PAGE_SIZE);
	err = alloc_chrdev_region(&blktap_ring_devt, 0, BLKTAP_MAX_MINORS,
				  "blktap2");
	if (err)
		pr_err("blktap2: cannot allocate ring device numbers: %d\n",
		       err);
	return err;
}

void blktap_ring_exit(void)
{
	unregister_chrdev_region(blktap_ring_devt, BLKTAP_MAX_MINORS);
}
