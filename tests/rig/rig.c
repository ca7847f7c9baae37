// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The rig: the front end of the blktap ring in user space (see rig.h).
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "rig.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open	434
#endif

#define CTL_TIMEOUT_MS	30000

static void rig_err(struct rig *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void rig_err(struct rig *r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r->errmsg, sizeof(r->errmsg), fmt, ap);
	va_end(ap);
}

uint64_t rig_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int rig_create(struct rig *r, uint32_t nr_slots, uint32_t slot_bytes)
{
	struct blktap_ring_header *h;
	int err;

	memset(r, 0, sizeof(*r));
	r->memfd = r->kick_fd = r->notify_fd = r->ctl = r->pidfd = -1;
	r->minor = -1;
	if (!nr_slots || nr_slots > BLKTAP_RING_MAX_SLOTS ||
	    (nr_slots & (nr_slots - 1))) {
		rig_err(r, "depth %u: must be a power of two up to %u",
			nr_slots, BLKTAP_RING_MAX_SLOTS);
		return -EINVAL;
	}
	if (!slot_bytes || slot_bytes > BLKTAP_RING_MAX_SLOT_BYTES ||
	    slot_bytes % BLKTAP_PAGE_SIZE) {
		rig_err(r, "slot size %u: must be a multiple of %u up to %u",
			slot_bytes, BLKTAP_PAGE_SIZE,
			BLKTAP_RING_MAX_SLOT_BYTES);
		return -EINVAL;
	}
	r->nr_slots = nr_slots;
	r->slot_bytes = slot_bytes;
	r->map_size = blktap_ring_map_size(nr_slots, slot_bytes);

	r->slots = calloc(nr_slots, sizeof(*r->slots));
	r->free_list = calloc(nr_slots, sizeof(*r->free_list));
	if (!r->slots || !r->free_list) {
		rig_err(r, "out of memory");
		err = -ENOMEM;
		goto fail;
	}
	r->memfd = memfd_create("blktap-ring", MFD_CLOEXEC);
	if (r->memfd < 0 || ftruncate(r->memfd, (off_t)r->map_size)) {
		err = -errno;
		rig_err(r, "cannot create the ring memory: %s", strerror(errno));
		goto fail;
	}
	r->map = mmap(NULL, r->map_size, PROT_READ | PROT_WRITE, MAP_SHARED,
		      r->memfd, 0);
	if (r->map == MAP_FAILED) {
		r->map = NULL;
		err = -errno;
		rig_err(r, "cannot map the ring: %s", strerror(errno));
		goto fail;
	}
	r->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	r->notify_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (r->kick_fd < 0 || r->notify_fd < 0) {
		err = -errno;
		rig_err(r, "cannot create eventfds: %s", strerror(errno));
		goto fail;
	}

	h = r->map;
	h->magic = BLKTAP_RING_MAGIC;
	h->version = BLKTAP_RING_VERSION;
	h->nr_slots = nr_slots;
	h->slot_bytes = slot_bytes;
	h->req_offset = blktap_ring_req_offset();
	h->rsp_offset = blktap_ring_rsp_offset(nr_slots);
	h->data_offset = blktap_ring_data_offset(nr_slots);
	h->map_size = r->map_size;
	/* Until it says otherwise, the back is woken by the first request. */
	h->req_event = 1;
	h->rsp_event = 1;
	r->hdr = h;
	r->reqs = (void *)((char *)r->map + h->req_offset);
	r->rsps = (void *)((char *)r->map + h->rsp_offset);
	r->data = (uint8_t *)r->map + h->data_offset;

	for (uint32_t i = 0; i < nr_slots; i++) {
		r->slots[i].data = rig_slot_data(r, i);
		/* Pop order 0, 1, 2...: the stack holds them reversed. */
		r->free_list[i] = nr_slots - 1 - i;
	}
	r->nr_free = nr_slots;
	return 0;
fail:
	rig_destroy(r);
	return err;
}

void rig_destroy(struct rig *r)
{
	if (r->ctl >= 0)
		close(r->ctl);
	if (r->pidfd >= 0)
		close(r->pidfd);
	if (r->map)
		munmap(r->map, r->map_size);
	if (r->memfd >= 0)
		close(r->memfd);
	if (r->kick_fd >= 0)
		close(r->kick_fd);
	if (r->notify_fd >= 0)
		close(r->notify_fd);
	free(r->slots);
	free(r->free_list);
	r->slots = NULL;
	r->free_list = NULL;
	r->map = NULL;
	r->ctl = r->pidfd = r->memfd = r->kick_fd = r->notify_fd = -1;
}

int rig_call(struct rig *r, struct td_ctl_msg *req, struct td_ctl_msg *rep,
	     int timeout_ms)
{
	int err;

	if (r->ctl < 0) {
		rig_err(r, "not connected to a tapdisk");
		return -ENOTCONN;
	}
	req->minor = r->minor;
	err = tdc_call(r->ctl, req, NULL, 0, rep, timeout_ms);
	if (err)
		rig_err(r, "%s", tdc_errmsg());
	return err;
}

int rig_attach(struct rig *r, pid_t pid, int minor)
{
	static struct td_ctl_msg req, rep;
	int fds[3] = { r->memfd, r->kick_fd, r->notify_fd };
	int err;

	r->pid = pid;
	r->minor = minor;
	r->ctl = tdc_connect(pid);
	if (r->ctl < 0) {
		err = r->ctl;
		r->ctl = -1;
		rig_err(r, "%s", tdc_errmsg());
		return err;
	}
	r->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (r->pidfd < 0)
		r->pidfd = -1;	/* old kernel: kill(pid, 0) instead */

	memset(&req, 0, sizeof(req));
	req.type = TD_CTL_ATTACH;
	req.minor = minor;
	err = tdc_call(r->ctl, &req, fds, 3, &rep, CTL_TIMEOUT_MS);
	if (err) {
		rig_err(r, "attach: %s", tdc_errmsg());
		return err;
	}
	r->attached = true;
	return 0;
}

int rig_open(struct rig *r, const char *params, uint32_t flags,
	     uint32_t timeout_s)
{
	static struct td_ctl_msg req, rep;
	int err;

	memset(&req, 0, sizeof(req));
	req.type = TD_CTL_OPEN;
	req.body.open.flags = flags;
	req.body.open.timeout_s = timeout_s;
	req.body.open.secondary = -1;
	if (tdc_set_params(&req.body.open, params)) {
		rig_err(r, "image name too long: %s", params);
		return -EINVAL;
	}
	err = rig_call(r, &req, &rep, CTL_TIMEOUT_MS);
	if (err)
		rig_err(r, "open %s: %s", params, tdc_errmsg());
	return err;
}

static int simple_call(struct rig *r, enum td_ctl_type type, const char *what)
{
	static struct td_ctl_msg req, rep;
	int err;

	memset(&req, 0, sizeof(req));
	req.type = (uint16_t)type;
	err = rig_call(r, &req, &rep, CTL_TIMEOUT_MS);
	if (err)
		rig_err(r, "%s: %s", what, tdc_errmsg());
	return err;
}

int rig_close(struct rig *r)
{
	return simple_call(r, TD_CTL_CLOSE, "close");
}

int rig_detach(struct rig *r)
{
	int err = simple_call(r, TD_CTL_DETACH, "detach");

	if (!err)
		r->attached = false;
	return err;
}

bool rig_tapdisk_dead(struct rig *r)
{
	struct pollfd p;

	if (r->dead)
		return true;
	if (r->pidfd >= 0) {
		p.fd = r->pidfd;
		p.events = POLLIN;
		if (poll(&p, 1, 0) == 1)
			r->dead = true;
	} else if (r->pid > 0 && kill(r->pid, 0) && errno == ESRCH) {
		r->dead = true;
	}
	return r->dead;
}

int rig_wait_open(struct rig *r, int timeout_ms)
{
	uint64_t end = rig_now_ns() + (uint64_t)timeout_ms * 1000000ull;
	uint64_t cap;
	uint32_t ssz;

	for (;;) {
		cap = __atomic_load_n(&r->hdr->capacity, __ATOMIC_ACQUIRE);
		if (cap)
			break;
		if (rig_tapdisk_dead(r)) {
			rig_err(r, "tapdisk %d exited", (int)r->pid);
			return -ESRCH;
		}
		if (r->stop && *r->stop) {
			rig_err(r, "interrupted while waiting for an image");
			return -EINTR;
		}
		if (rig_now_ns() > end) {
			rig_err(r, "no image opened on minor %d within %d ms",
				r->minor, timeout_ms);
			return -ETIMEDOUT;
		}
		usleep(10000);
	}
	ssz = r->hdr->sector_size;
	if (cap > (1ull << 48)) {
		rig_err(r, "tapdisk published capacity %" PRIu64
			" sectors, more than 2^48", cap);
		return -EPROTO;
	}
	if (ssz != 512 && ssz != 4096) {
		rig_err(r, "tapdisk published sector size %u", ssz);
		return -EPROTO;
	}
	return 0;
}

void rig_queue(struct rig *r, uint32_t slot, uint8_t op, uint8_t flags,
	       uint64_t sector, uint32_t nr_sectors, uint64_t tag)
{
	struct rig_slot *s = &r->slots[slot];
	struct blktap_ring_request *q;

	/* The slot is the one on top of the free stack (rig_get). */
	r->nr_free--;
	s->gen = (s->gen + 1) & 0xFFFFFFFFu;
	s->inflight = true;
	s->op = op;
	s->flags = flags;
	s->sector = sector;
	s->nr_sectors = nr_sectors;
	s->tag = tag;
	s->t_submit_ns = rig_now_ns();
	r->inflight++;

	q = &r->reqs[r->req_prod_pvt & (r->nr_slots - 1)];
	q->id = BLKTAP_MAKE_ID(s->gen, slot);
	q->sector = sector;
	q->nr_sectors = nr_sectors;
	q->op = op;
	q->flags = flags;
	q->domid = BLKTAP_DOMID_NONE;
	q->reserved[0] = q->reserved[1] = 0;
	r->req_prod_pvt++;
	r->stats.submitted++;
}

void rig_queue_raw(struct rig *r, const struct blktap_ring_request *q)
{
	r->reqs[r->req_prod_pvt & (r->nr_slots - 1)] = *q;
	r->req_prod_pvt++;
}

void rig_push(struct rig *r)
{
	uint32_t old = r->req_prod, new = r->req_prod_pvt;
	uint32_t event;

	if (old == new)
		return;
	/* Entries before the index that publishes them. */
	__atomic_store_n(&r->hdr->req_prod, new, __ATOMIC_RELEASE);
	r->req_prod = new;
	/* The index before reading the event the back set before sleeping. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	event = __atomic_load_n(&r->hdr->req_event, __ATOMIC_RELAXED);
	if (blktap_ring_need_wake(new, old, event)) {
		uint64_t one = 1;

		if (write(r->kick_fd, &one, sizeof(one)) == sizeof(one))
			r->stats.kicks++;
	}
}

static void free_slot(struct rig *r, uint32_t slot)
{
	r->slots[slot].inflight = false;
	r->free_list[r->nr_free++] = slot;
	r->inflight--;
}

int rig_reap(struct rig *r, rig_done_fn done, void *arg)
{
	uint32_t prod, cons = r->rsp_cons;
	int n = 0;

	if (r->failed)
		return -EPROTO;
	prod = __atomic_load_n(&r->hdr->rsp_prod, __ATOMIC_ACQUIRE);
	if (prod - cons > r->nr_slots) {
		r->failed = true;
		rig_err(r, "tapdisk published %u responses with at most %u "
			"possible: ring failed", prod - cons, r->nr_slots);
		return -EPROTO;
	}
	while (cons != prod) {
		struct blktap_ring_response rsp;
		uint32_t slot;
		uint64_t gen;
		int status;

		/* One copy: the back may rewrite the entry under us. */
		memcpy(&rsp, &r->rsps[cons & (r->nr_slots - 1)], sizeof(rsp));
		cons++;
		slot = BLKTAP_ID_SLOT(rsp.id);
		gen = BLKTAP_ID_GEN(rsp.id);
		if (slot >= r->nr_slots || !r->slots[slot].inflight ||
		    gen != r->slots[slot].gen) {
			r->stats.bad_responses++;
			continue;
		}
		status = rsp.status;
		if (status > 0 || status < -4095) {
			r->stats.bad_status++;
			status = -EIO;
		}
		r->stats.completed++;
		if (done)
			done(arg, r, slot, status);
		free_slot(r, slot);
		n++;
	}
	r->rsp_cons = cons;
	return n;
}

int rig_wait(struct rig *r, int timeout_ms)
{
	struct pollfd p[2];
	uint64_t cnt;
	int nfds = 1, rc;

	/* Ask for a wakeup at the next response, then look once more. */
	__atomic_store_n(&r->hdr->rsp_event, r->rsp_cons + 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (__atomic_load_n(&r->hdr->rsp_prod, __ATOMIC_ACQUIRE) != r->rsp_cons)
		return 1;
	if (rig_tapdisk_dead(r))
		return -ESRCH;

	p[0].fd = r->notify_fd;
	p[0].events = POLLIN;
	if (r->pidfd >= 0) {
		p[1].fd = r->pidfd;
		p[1].events = POLLIN;
		nfds = 2;
	} else if (timeout_ms > 1000 || timeout_ms < 0) {
		timeout_ms = 1000;	/* to notice a dead tapdisk */
	}
	r->stats.waits++;
	rc = poll(p, (nfds_t)nfds, timeout_ms);
	if (rc < 0)
		return -errno;
	if (p[0].revents & POLLIN) {
		/* Nonblocking: a racing reader would only leave it at 0. */
		if (read(r->notify_fd, &cnt, sizeof(cnt)) < 0 && errno != EAGAIN)
			return -errno;
	}
	if (nfds == 2 && (p[1].revents & POLLIN))
		r->dead = true;
	if (__atomic_load_n(&r->hdr->rsp_prod, __ATOMIC_ACQUIRE) != r->rsp_cons)
		return 1;
	if (r->dead || (nfds == 1 && rig_tapdisk_dead(r)))
		return -ESRCH;
	return 0;
}
