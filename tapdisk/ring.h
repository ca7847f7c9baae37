/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * tapdisk's end of the ring (the back): it consumes requests, copies each
 * out of shared memory before looking at it (the front may change it
 * under us), and publishes responses in batches before the loop sleeps.
 * Two transports: the rig's (a memfd and two eventfds) and the kernel's
 * (/dev/xen/blktap-2/blktapN); only attaching and waking differ.
 */
#ifndef TD_RING_H
#define TD_RING_H

#include <stdbool.h>
#include <stdint.h>

#include "blktap-ring.h"

/* Called for each request; return false to stop consuming (paused). */
typedef bool (*td_ring_request_fn)(const struct blktap_ring_request *req);

/*
 * Take over the rig's shared memory and eventfds: validate the header the
 * front wrote and map it.  0 or -errno with td_errmsg() set; on failure
 * the descriptors are closed.
 */
int td_ring_attach_fds(int memfd, int kick_fd, int notify_fd,
		       td_ring_request_fn fn);
/*
 * Open the kernel's ring device of @minor, have the kernel make a ring of
 * @nr_slots x @slot_bytes (0: BLKTAP_RING_DEF_*), map it and validate its
 * header as above.  0 or -errno with td_errmsg() set (-ENODEV: no module
 * or no such minor).
 */
int td_ring_attach_kernel(unsigned int minor, uint32_t nr_slots,
			  uint32_t slot_bytes, td_ring_request_fn fn);
void td_ring_detach(void);
bool td_ring_attached(void);
/* Attached to the kernel's ring (not the rig's). */
bool td_ring_is_kernel(void);
/* The front broke the ring or hung up: no requests until re-attached. */
bool td_ring_dead(void);

uint32_t td_ring_nr_slots(void);
uint32_t td_ring_slot_bytes(void);
/* The data slot of a request id (slot already validated < nr_slots). */
char *td_ring_slot_data(uint32_t slot);

/* Publish the disk's geometry for the front (on open and unpause). */
void td_ring_set_disk(uint64_t capacity, uint32_t sector_size,
		      uint32_t features);

/* Queue a response; published (and the front woken) before the loop sleeps. */
void td_ring_respond(uint64_t id, int32_t status);
/* Publish queued responses now (before a call that may wait for them). */
void td_ring_push(void);

/* Start or stop consuming requests (pause); starting looks at once. */
void td_ring_set_consuming(bool on);

/*
 * The kernel's block device tapdevN (kernel ring only; -ENOTTY on the
 * rig's).  Create (or, after a tapdisk died, re-attach: same capacity)
 * with the disk's geometry; remove, -EBUSY while it is open unless
 * @force, which fails its outstanding I/O.  0 or -errno, td_errmsg() set;
 * removing a device that does not exist succeeds.
 */
int td_ring_create_device(uint64_t capacity, uint32_t sector_size,
			  uint32_t physical_sector_size, uint32_t features);
int td_ring_remove_device(bool force);

#endif
