/* SPDX-License-Identifier: GPL-2.0-only OR LGPL-2.1-or-later */
/*
 * blktap2: one tapdisk (a user-space process) behind each block device
 * /dev/xen/blktap-2/tapdevN.  Internal interfaces between the parts:
 *
 *   main.c	module init/exit and parameters
 *   control.c	/dev/xen/blktap-2/control: allocates and frees taps
 *   ring.c	/dev/xen/blktap-2/blktapN: the ring tapdisk maps (ABI in
 *		include/blktap-ring.h), its ioctls, poll and responses
 *   device.c	tapdevN: blk-mq, requests to and from the ring, recovery
 *		after a tapdisk died, removal
 *   sysfs.c	class "blktap2", device nodes and attributes
 *
 * Locking, outermost first:
 *   blktap_lock	(mutex) the table of taps; lookups by minor that must
 *			not race with FREE_TAP.
 *   tap->lock		(mutex) a tap's control state: ring set up or torn
 *			down, tapdevN created, recovered or removed.  These
 *			paths sleep (allocation, quiescing the queue,
 *			del_gendisk), so a mutex.
 *   tap->slock		(spinlock) what the data path touches: slots, ring
 *			indices, ring failure, openers of tapdevN, counters.
 *			queue_rq and the KICK ioctl take it and must not
 *			sleep, so a spinlock; irqsave because blk-mq gives
 *			no promise about the context of queue_rq.
 * No user memory is touched with tap->lock held: mmap() takes it under
 * the mmap lock, so faulting on user memory under it could deadlock.
 *
 * tap->dev_state changes from RUNNING to anything else only while the
 * queue is quiesced, so queue_rq may read it once without the spinlock
 * and rely on the ring staying in place until it returns.
 */
#ifndef BLKTAP2_BLKTAP_H
#define BLKTAP2_BLKTAP_H

#include <linux/blk-mq.h>
#include <linux/cdev.h>
#include <linux/device.h>
#include <linux/kdev_t.h>
#include <linux/mutex.h>
#include <linux/spinlock.h>
#include <linux/types.h>
#include <linux/wait.h>
#include <linux/workqueue.h>

#include "blktap-ring.h"
#include "blkback-pagemap.h"

#define BLKTAP_NAME_LEN		256
/* Every minor a device number can carry: no small fixed limit. */
#define BLKTAP_MAX_MINORS	(MINORMASK + 1)
/* A tapdisk dying with I/O in flight: hold it this long by default. */
#define BLKTAP_DEF_RECOVERY_MS	30000u
#define BLKTAP_MAX_RECOVERY_MS	(24u * 3600u * 1000u)

enum blktap_dev_state {
	BLKTAP_DEV_NONE,	/* no tapdevN */
	BLKTAP_DEV_RUNNING,	/* tapdevN served by the current ring */
	BLKTAP_DEV_RECOVERING,	/* no tapdisk: I/O held, queue quiesced */
	BLKTAP_DEV_DEAD,	/* window over, or being removed: I/O fails */
};

struct blktap_slot {
	struct request	*rq;	/* in flight on the ring; NULL when free */
	u32		gen;	/* bumped at each use: stale ids are seen */
};

/* Counters, in sysfs as stats/<name>; under tap->slock. */
enum blktap_stat {
	BLKTAP_STAT_REQUESTS,		/* put on the ring */
	BLKTAP_STAT_BAD_RESPONSES,	/* dropped: bad id, not in flight */
	BLKTAP_STAT_BAD_STATUS,		/* out of range: failed with EIO */
	BLKTAP_STAT_RING_FAILURES,	/* more responses than possible */
	BLKTAP_STAT_HELD,		/* requeued when a tapdisk went away */
	BLKTAP_STAT_RECOVERIES,		/* tapdisks that took over held I/O */
	BLKTAP_STAT_INFLIGHT,		/* on the ring now */
	BLKTAP_STAT_MAX_SECTORS,	/* largest READ/WRITE on the ring */
	BLKTAP_NR_STATS
};

/* The shared ring; set up by SETUP_RING, freed when the file is released. */
struct blktap_ring {
	void				*mem;	/* vmalloc_user; NULL: none */
	struct blktap_ring_header	*hdr;
	struct blktap_ring_request	*reqs;
	struct blktap_ring_response	*rsps;
	u8				*data;
	u32				nr_slots;	/* the kernel's copy */
	u32				slot_bytes;
	u64				map_size;
	struct blktap_slot		*slots;
	u32				req_prod;	/* published */
	u32				rsp_cons;
	u64				unread;	/* published since read() */
	bool				failed;
	/* The process that mapped the ring: only it may answer. */
	struct mm_struct		*mm;
	wait_queue_head_t		poll_wq;
};

struct blktap {
	int			minor;
	struct mutex		lock;		/* control state, see above */
	spinlock_t		slock;		/* data path state, see above */
	struct cdev		*cdev;
	struct device		*dev;		/* blktapN in class blktap2 */

	/* The ring device: one opener, the tapdisk. */
	bool			ring_open;
	struct pid		*task;
	struct blktap_ring	ring;

	/* tapdevN */
	enum blktap_dev_state	dev_state;
	struct blk_mq_tag_set	tag_set;
	struct gendisk		*disk;
	struct blktap_device_params params;
	u32			dev_slot_bytes;	/* largest request it sends */
	bool			quiesced;	/* by us, for recovery */
	/*
	 * blkback-pagemap's lookup, taken with symbol_get() when tapdevN
	 * was created with that module loaded, put when tapdevN goes;
	 * NULL without it.  Set before the disk is live, read by queue_rq.
	 */
	int			(*pagemap)(struct page *page,
					   struct blkback_pagemap_info *info);
	bool			removing;	/* refuse new openers */
	unsigned int		openers;

	/* Recovery after the tapdisk went away. */
	unsigned int		recovery_ms;
	unsigned long		recovery_deadline;	/* jiffies */
	struct delayed_work	recovery_work;

	char			name[BLKTAP_NAME_LEN];
	u64			stats[BLKTAP_NR_STATS];
};

/* main.c */
unsigned int blktap_default_recovery_ms(void);

/* control.c */
extern struct mutex blktap_lock;
struct blktap *blktap_find_locked(unsigned long minor);
typedef void (*blktap_visit_fn)(struct blktap *tap, void *arg);
void blktap_visit_taps(blktap_visit_fn fn, void *arg);
int blktap_control_init(void);
void blktap_control_exit(void);

/* ring.c */
extern dev_t blktap_ring_devt;
int blktap_ring_init(void);
void blktap_ring_exit(void);
int blktap_ring_create(struct blktap *tap);
void blktap_ring_destroy(struct blktap *tap);
void blktap_ring_fail(struct blktap *tap);
void blktap_ring_drain(struct blktap *tap);
void *blktap_ring_slot_data(struct blktap *tap, u32 slot);

/* device.c */
extern int blktap_blk_major;
int blktap_device_init(void);
void blktap_device_exit(void);
int blktap_device_create(struct blktap *tap,
			 const struct blktap_device_params *p);
int blktap_device_destroy(struct blktap *tap, bool force);
void blktap_device_ring_lost(struct blktap *tap);
void blktap_device_end_request(struct blktap *tap, struct request *rq,
			       u32 slot, int status);
void blktap_recovery_work(struct work_struct *work);
int blktap_disk_open(struct gendisk *disk, bool write);
void blktap_disk_release(struct gendisk *disk);

/* sysfs.c */
extern struct class blktap_class;
extern const struct attribute_group *blktap_groups[];
int blktap_sysfs_init(void);
void blktap_sysfs_exit(void);
const char *blktap_state_name(struct blktap *tap);

#endif /* BLKTAP2_BLKTAP_H */
