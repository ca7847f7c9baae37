/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The rig: a user-space front end of the blktap ring, standing in for the
 * kernel module.  It creates the shared memory (a memfd) and two eventfds,
 * hands them to a tapdisk with TD_CTL_ATTACH, submits requests and checks
 * every response the way the kernel must (include/blktap-ring.h): the
 * back is untrusted.
 *
 * Everything is allocated by rig_create(); submitting and reaping never
 * allocate, so the rig costs little next to the tapdisk it measures.
 *
 * Use: rig_get() a free slot, fill its data, rig_queue() the request,
 * rig_push() to publish (and kick tapdisk if it asked to be woken), then
 * rig_reap() responses, rig_wait() when there are none.
 */
#ifndef RIG_H
#define RIG_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "blktap-ring.h"
#include "tapdisk-control.h"

struct rig_slot {
	uint32_t	gen;		/* bumped each time the slot is reused */
	bool		inflight;
	uint8_t		op;
	uint8_t		flags;
	uint64_t	sector;
	uint32_t	nr_sectors;
	uint64_t	t_submit_ns;
	uint64_t	tag;		/* the caller's */
	void		*data;		/* this slot's data area */
};

struct rig_stats {
	uint64_t	submitted;
	uint64_t	completed;
	uint64_t	bad_responses;	/* dropped: bad id, stale generation */
	uint64_t	bad_status;	/* status out of range: failed with EIO */
	uint64_t	kicks;		/* eventfd writes to tapdisk */
	uint64_t	waits;		/* sleeps in poll() */
};

struct rig {
	/* Shared memory. */
	int		memfd;
	int		kick_fd;	/* wakes tapdisk */
	int		notify_fd;	/* tapdisk wakes us */
	void		*map;
	uint64_t	map_size;
	struct blktap_ring_header *hdr;
	struct blktap_ring_request *reqs;
	struct blktap_ring_response *rsps;
	uint8_t		*data;
	uint32_t	nr_slots;
	uint32_t	slot_bytes;
	/* Front-private indices. */
	uint32_t	req_prod_pvt;	/* requests queued, published or not */
	uint32_t	req_prod;	/* last published */
	uint32_t	rsp_cons;
	/* Slots. */
	struct rig_slot	*slots;
	uint32_t	*free_list;	/* stack of free slot numbers */
	uint32_t	nr_free;
	uint32_t	inflight;
	/* The tapdisk. */
	pid_t		pid;
	int		minor;
	int		ctl;		/* control socket, -1 when closed */
	int		pidfd;		/* -1: fall back to kill(pid, 0) */
	bool		attached;
	bool		dead;		/* the tapdisk exited */
	bool		failed;		/* the back broke the protocol */
	/* Set by a signal handler: rig_wait_open() gives up (-EINTR). */
	volatile sig_atomic_t *stop;
	struct rig_stats stats;
	char		errmsg[256];
};

/* Completion: @slot is still in flight (its data readable) during the call. */
typedef void (*rig_done_fn)(void *arg, struct rig *r, uint32_t slot,
			    int status);

/* Depth must be a power of two; slot_bytes a page multiple.  0 or -errno. */
int rig_create(struct rig *r, uint32_t nr_slots, uint32_t slot_bytes);
void rig_destroy(struct rig *r);

/*
 * Connect to tapdisk @pid and attach the ring as @minor.  0 or -errno,
 * with the reason in r->errmsg.
 */
int rig_attach(struct rig *r, pid_t pid, int minor);
/* One control request on the rig's connection (minor filled in). */
int rig_call(struct rig *r, struct td_ctl_msg *req, struct td_ctl_msg *rep,
	     int timeout_ms);
/* OPEN / CLOSE / DETACH on the rig's minor. */
int rig_open(struct rig *r, const char *params, uint32_t flags,
	     uint32_t timeout_s);
int rig_close(struct rig *r);
int rig_detach(struct rig *r);

/*
 * Wait until the back has published a capacity (it opened an image), and
 * check what it published.  0, -ETIMEDOUT, -ESRCH (tapdisk died), -EINTR
 * (*stop was set), or -EPROTO for values out of range.
 */
int rig_wait_open(struct rig *r, int timeout_ms);

/* A free slot's number, or -1 when all are in flight. */
static inline int rig_get(struct rig *r)
{
	return r->nr_free ? (int)r->free_list[r->nr_free - 1] : -1;
}

/* Queue a request on the slot rig_get() returned; not yet visible. */
void rig_queue(struct rig *r, uint32_t slot, uint8_t op, uint8_t flags,
	       uint64_t sector, uint32_t nr_sectors, uint64_t tag);
/*
 * Queue @q exactly as given, bypassing the slot table: for tests of what
 * tapdisk does with requests a correct front never sends.
 */
void rig_queue_raw(struct rig *r, const struct blktap_ring_request *q);
/* Publish queued requests; kick tapdisk only if it waits for them. */
void rig_push(struct rig *r);

/*
 * Consume the responses published so far, validating each; @done is
 * called for each valid one.  Returns the number handled, or -EPROTO when
 * the back produced more responses than possible (the ring is failed).
 */
int rig_reap(struct rig *r, rig_done_fn done, void *arg);

/*
 * Sleep until tapdisk signals, at most @timeout_ms.  Returns 1 when
 * responses are waiting, 0 on timeout or a spurious wakeup, -EINTR for a
 * signal, -ESRCH when the tapdisk has exited.
 */
int rig_wait(struct rig *r, int timeout_ms);

/* Is the tapdisk gone? (checks the pidfd without sleeping) */
bool rig_tapdisk_dead(struct rig *r);

static inline void *rig_slot_data(struct rig *r, uint32_t slot)
{
	return r->data + (uint64_t)slot * r->slot_bytes;
}

uint64_t rig_now_ns(void);

#endif
