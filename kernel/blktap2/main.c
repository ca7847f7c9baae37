// SPDX-License-Identifier: GPL-2.0-only OR LGPL-2.1-or-later
/*
 * blktap2: each user-space tapdisk as an ordinary block device.
 *
 * Module init and exit, and the parameters.  Every tap holds a reference
 * on the module, so it cannot be unloaded while taps exist.
 */
#include <linux/module.h>
#include <linux/moduleparam.h>

#include "blktap.h"

static unsigned int recovery_ms = BLKTAP_DEF_RECOVERY_MS;
module_param(recovery_ms, uint, 0644);
MODULE_PARM_DESC(recovery_ms,
		 "How long I/O waits for a new tapdisk after one died, in ms (default 30000; per tap in sysfs)");

unsigned int blktap_default_recovery_ms(void)
{
	return min(READ_ONCE(recovery_ms), BLKTAP_MAX_RECOVERY_MS);
}

static int __init blktap_init(void)
{
	int err;

	err = blktap_device_init();
	if (err)
		return err;
	err = blktap_ring_init();
	if (err)
		goto fail_ring;
	err = blktap_sysfs_init();
	if (err)
		goto fail_sysfs;
	err = blktap_control_init();
	if (err)
		goto fail_control;
	pr_info("blktap2: loaded (block major %d, ring major %d)\n",
		blktap_blk_major, MAJOR(blktap_ring_devt));
	return 0;

fail_control:
	blktap_sysfs_exit();
fail_sysfs:
	blktap_ring_exit();
fail_ring:
	blktap_device_exit();
	return err;
}

static void __exit blktap_exit(void)
{
	blktap_control_exit();
	blktap_sysfs_exit();
	blktap_ring_exit();
	blktap_device_exit();
}

module_init(blktap_init);
module_exit(blktap_exit);

MODULE_DESCRIPTION("blktap2: block devices served by user-space tapdisks");
MODULE_LICENSE("GPL");
