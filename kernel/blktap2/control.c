// SPDX-License-Identifier: GPL-2.0-only OR LGPL-2.1-or-later
/*
 * /dev/xen/blktap-2/control: allocates and frees taps.
 *
 * Taps live in an IDR keyed by minor, so there is no small fixed limit;
 * minors are reused after FREE_TAP.
 */
#include <linux/capability.h>
#include <linux/fs.h>
#include <linux/idr.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "blktap.h"

/* Guards blktap_idr, and lookups that must not race with FREE_TAP. */
DEFINE_MUTEX(blktap_lock);
static DEFINE_IDR(blktap_idr);

/* With blktap_lock held: the tap with this minor, or NULL. */
struct blktap *blktap_find_locked(unsigned long minor)
{
	lockdep_assert_held(&blktap_lock);
	if (minor >= BLKTAP_MAX_MINORS)
		return NULL;
	return idr_find(&blktap_idr, minor);
}

/* Calls @fn on each tap in minor order, with blktap_lock held. */
void blktap_visit_taps(blktap_visit_fn fn, void *arg)
{
	struct blktap *tap;
	int id;

	mutex_lock(&blktap_lock);
	idr_for_each_entry(&blktap_idr, tap, id)
		fn(tap, arg);
	mutex_unlock(&blktap_lock);
}

static int blktap_control_alloc(unsigned int *minor)
{
	struct blktap *tap;
	int err;

	tap = kzalloc(sizeof(*tap), GFP_KERNEL);
	if (!tap)
		return -ENOMEM;
	mutex_init(&tap->lock);
	spin_lock_init(&tap->slock);
	init_waitqueue_head(&tap->ring.poll_wq);
	INIT_DELAYED_WORK(&tap->recovery_work, blktap_recovery_work);
	tap->recovery_ms = blktap_default_recovery_ms();

	mutex_lock(&blktap_lock);
	err = idr_alloc(&blktap_idr, tap, 0, BLKTAP_MAX_MINORS, GFP_KERNEL);
	if (err < 0)
		goto fail;
	tap->minor = err;
	/* Nobody can open the node before it exists: blktap_lock is held. */
	err = blktap_ring_create(tap);
	if (err) {
		idr_remove(&blktap_idr, tap->minor);
		goto fail;
	}
	/* Dropped by FREE_TAP: no unloading while taps exist. */
	__module_get(THIS_MODULE);
	mutex_unlock(&blktap_lock);
	*minor = tap->minor;
	return 0;
fail:
	mutex_unlock(&blktap_lock);
	kfree(tap);
	return err;
}

static int blktap_control_free(unsigned long minor)
{
	struct blktap *tap;
	int err = 0;

	mutex_lock(&blktap_lock);
	tap = blktap_find_locked(minor);
	if (!tap) {
		mutex_unlock(&blktap_lock);
		return -ENOENT;
	}
	mutex_lock(&tap->lock);
	if (tap->ring_open) {
		err = -EBUSY;		/* a tapdisk is attached */
	} else if (tap->dev_state != BLKTAP_DEV_NONE) {
		/*
		 * The tapdisk went away and left tapdevN behind (held or
		 * failing I/O): with nobody using it, it goes too, else
		 * this tap would outlive every way of cleaning it up.
		 */
		err = blktap_device_destroy(tap, false);
	}
	/* A forcibly removed disk still open calls us on its release. */
	if (!err && tap->openers)
		err = -EBUSY;
	if (!err)
		idr_remove(&blktap_idr, tap->minor);
	mutex_unlock(&tap->lock);
	mutex_unlock(&blktap_lock);
	if (err)
		return err;

	/* Unreachable now: no lookup finds it, nothing holds it open. */
	cancel_delayed_work_sync(&tap->recovery_work);
	blktap_ring_destroy(tap);
	kfree(tap);
	module_put(THIS_MODULE);
	return 0;
}

static long blktap_control_ioctl(struct file *file, unsigned int cmd,
				 unsigned long arg)
{
	struct blktap2_alloc alloc = { 0 };
	int err;

	if (!capable(CAP_SYS_ADMIN))
		return -EPERM;

	switch (cmd) {
	case BLKTAP2_IOC_ALLOC_TAP:
		err = blktap_control_alloc(&alloc.minor);
		if (err)
			return err;
		if (copy_to_user((void __user *)arg, &alloc, sizeof(alloc))) {
			/* Nobody learnt the minor: don't leak the tap. */
			blktap_control_free(alloc.minor);
			return -EFAULT;
		}
		return 0;
	case BLKTAP2_IOC_FREE_TAP:
		return blktap_control_free(arg);
	}
	return -ENOTTY;
}

static const struct file_operations blktap_control_fops = {
	.owner		= THIS_MODULE,
	.unlocked_ioctl	= blktap_control_ioctl,
	.compat_ioctl	= compat_ptr_ioctl,
	.llseek		= noop_llseek,
};

static struct miscdevice blktap_control = {
	.minor		= MISC_DYNAMIC_MINOR,
	.name		= "blktap-control",
	.nodename	= "xen/blktap-2/control",
	.mode		= 0600,
	.fops		= &blktap_control_fops,
};

int blktap_control_init(void)
{
	int err = misc_register(&blktap_control);

	if (err)
		pr_err("blktap2: cannot register the control device: %d\n",
		       err);
	return err;
}

void blktap_control_exit(void)
{
	misc_deregister(&blktap_control);
	/* Each tap held a module reference: none can be left. */
	WARN_ON(!idr_is_empty(&blktap_idr));
	idr_destroy(&blktap_idr);
}
