/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * tap-ctl's side of the blktap2 kernel module: its device nodes and the
 * control device's ioctls, for the kernel verbs (allocate, free, major,
 * check, create, destroy).
 *
 * The module names its nodes under /dev/xen/blktap-2 through devtmpfs.
 * Where /dev is not a devtmpfs (or udev moved things), tap-ctl makes a
 * missing or stale node itself with mknod, from the device number sysfs
 * gives.  Functions return 0 or an exit status, the reason printed.
 */
#ifndef TAP_CTL_KERNEL_H
#define TAP_CTL_KERNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/*
 * What the module registers (kernel/blktap2): a misc device, a char major
 * for the rings and a block major for the tapdevs, both with the tap's
 * minor as their minor.
 */
#define TCK_MODULE_SYSFS	"/sys/module/blktap2"
#define TCK_CONTROL_SYSFS	"/sys/class/misc/blktap-control/dev"
#define TCK_RING_SYSFS_FMT	"/sys/class/blktap2/blktap%u/dev"
#define TCK_TAPDEV_SYSFS_FMT	"/sys/block/tapdev%u/dev"
#define TCK_MISC_MAJOR		10
#define TCK_CONTROL_NAME	"blktap-control"	/* in /proc/misc */
#define TCK_RING_NAME		"blktap2"	/* in /proc/devices */
#define TCK_BLOCK_NAME		"tapdev"	/* in /proc/devices */

/* How long tck_wait_gone() waits for a tapdisk told to exit. */
#define TCK_WAIT_GONE_MS	10000

bool tck_module_loaded(void);
/* 0, or "blktap2 kernel module is not loaded" printed and its status. */
int tck_need_module(void);

/* Open the control device (making its node if needed) into *@fd. */
int tck_open_control(int *fd);

/*
 * Allocate a tap: its minor into *@minor, its ring node
 * /dev/xen/blktap-2/blktapN made if needed.
 */
int tck_allocate(unsigned int *minor);
/* Free a tap; refused while a tapdisk holds it or tapdevN is in use. */
int tck_free(unsigned int minor);
/* The same, when undoing: nothing printed, 0 or -errno. */
int tck_release(unsigned int minor);

/* The block major of the tapdevs, from /proc/devices. */
int tck_block_major(unsigned int *major);

/*
 * The node of tapdevN (which must exist in sysfs: an image is open),
 * made if needed; its path into @path.
 */
int tck_tapdev_node(unsigned int minor, char *path, size_t size);

/*
 * -d DEVNAME: make @devname a symbolic link to /dev/xen/blktap-2/tapdevN
 * (which need not exist yet).  tap-ctl never removes it.
 */
int tck_link_devname(const char *devname, unsigned int minor);

/* Wait (TCK_WAIT_GONE_MS at most) for tapdisk @pid to exit. */
void tck_wait_gone(pid_t pid);

/*
 * Is the control node what the module registered?  0, or an exit status
 * with the reason printed (nothing is made).
 */
int tck_check(void);

#endif
