/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * tapdisk's end of the ring (the back): it consumes requests, copies each
 * out of shared memory before looking at it (the front may change it
 * under us), and publishes responses in batches before the loop sleeps.
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
void td_ring_detach(void);
bool td_ring_attached(void);

uint32_t td_ring_nr_slots(void);
uint32_t td_ring_slot_bytes(void);
/* The data slot of a request id (slot already validated < nr_slots). */
char *td_ring_slot_data(uint32_t slot);

/* Publish the disk's geometry for the front (on open and unpause). */
void td_ring_set_disk(uint64_t capacity, uint32_t sector_size,
		      uint32_t features);

/* Queue a response; published (and the front woken) before the loop sleeps. */
void td_ring_respond(uint64_t id, int32_t status);

/* Start or stop consuming requests (pause); starting looks at once. */
void td_ring_set_consuming(bool on);

#endif
