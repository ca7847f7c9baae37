// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The back end of the blktap ring, over the rig's memfd and eventfds.
 *
 * The front owns the request ring and the data slots; we only read the
 * former, and read or write the latter as each request says.  Indices
 * and the header's fields are read once into locals: a front that
 * changes them under us may break its own requests but not tapdisk.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "event.h"
#include "log.h"
#include "ring.h"

static struct {
	bool			attached;
	bool			consuming;
	uint8_t			*map;
	size_t			map_size;
	struct blktap_ring_header *hdr;
	struct blktap_ring_request *reqs;
	struct blktap_ring_response *rsps;
	uint8_t			*data;
	uint32_t		nr_slots;
	uint32_t		slot_bytes;
	uint32_t		req_cons;
	uint32_t		rsp_prod;	/* private; published in batches */
	uint32_t		rsp_pushed;
	int			memfd;
	int			kick_fd;
	int			notify_fd;
	int			kick_id;
	bool			hook_added;
	td_ring_request_fn	fn;
} ring = { .memfd = -1, .kick_fd = -1, .notify_fd = -1, .kick_id = -1 };

static uint32_t load_acquire(const uint32_t *p)
{
	return atomic_load_explicit((const _Atomic uint32_t *)p,
				    memory_order_acquire);
}

static void store_release(uint32_t *p, uint32_t v)
{
	atomic_store_explicit((_Atomic uint32_t *)p, v, memory_order_release);
}

static void full_barrier(void)
{
	atomic_thread_fence(memory_order_seq_cst);
}

static void consume(void)
{
	while (ring.attached && ring.consuming) {
		uint32_t prod = load_acquire(&ring.hdr->req_prod);

		if (prod - ring.req_cons > ring.nr_slots) {
			td_err("ring: front published %u requests with %u slots; "
			       "ignoring the ring until it is re-attached",
			       prod - ring.req_cons, ring.nr_slots);
			ring.consuming = false;
			return;
		}
		if (prod == ring.req_cons) {
			/* Ask for a wakeup, then look again: none is lost. */
			store_release(&ring.hdr->req_event, ring.req_cons + 1);
			full_barrier();
			if (load_acquire(&ring.hdr->req_prod) == ring.req_cons)
				return;
			continue;
		}
		while (ring.req_cons != prod && ring.consuming) {
			struct blktap_ring_request req;

			memcpy(&req, &ring.reqs[ring.req_cons &
						(ring.nr_slots - 1)],
			       sizeof(req));
			ring.req_cons++;
			if (!ring.fn(&req))
				ring.consuming = false;
		}
	}
}

static void kicked(void *arg, uint32_t events)
{
	uint64_t n;

	(void)arg;
	(void)events;
	if (read(ring.kick_fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		td_warn("ring: cannot read kick eventfd: %s", strerror(errno));
	consume();
}

/* Before the loop sleeps: publish responses, wake the front if it asked. */
static void push_responses(void *arg)
{
	uint32_t old = ring.rsp_pushed, event;
	uint64_t one = 1;

	(void)arg;
	if (!ring.attached || old == ring.rsp_prod)
		return;
	store_release(&ring.hdr->rsp_prod, ring.rsp_prod);
	ring.rsp_pushed = ring.rsp_prod;
	full_barrier();
	event = load_acquire(&ring.hdr->rsp_event);
	if (blktap_ring_need_wake(ring.rsp_prod, old, event) &&
	    write(ring.notify_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		td_warn("ring: cannot wake the front: %s", strerror(errno));
}

static int check_header(const struct blktap_ring_header *h, uint64_t file_size)
{
	uint32_t n = h->nr_slots, sb = h->slot_bytes;

	if (h->magic != BLKTAP_RING_MAGIC)
		return td_fail(EINVAL, "ring: bad magic 0x%08x", h->magic);
	if (h->version != BLKTAP_RING_VERSION)
		return td_fail(EINVAL, "ring: version %u, tapdisk speaks %u",
			       h->version, BLKTAP_RING_VERSION);
	if (n == 0 || n > BLKTAP_RING_MAX_SLOTS || (n & (n - 1)))
		return td_fail(EINVAL, "ring: %u slots is not a power of two "
			       "up to %u", n, BLKTAP_RING_MAX_SLOTS);
	if (sb == 0 || sb > BLKTAP_RING_MAX_SLOT_BYTES ||
	    sb % BLKTAP_PAGE_SIZE)
		return td_fail(EINVAL, "ring: slot size %u is not a page "
			       "multiple up to %u", sb,
			       BLKTAP_RING_MAX_SLOT_BYTES);
	if (h->req_offset != blktap_ring_req_offset() ||
	    h->rsp_offset != blktap_ring_rsp_offset(n) ||
	    h->data_offset != blktap_ring_data_offset(n) ||
	    h->map_size != blktap_ring_map_size(n, sb))
		return td_fail(EINVAL, "ring: layout does not match %u slots "
			       "of %u bytes", n, sb);
	if (file_size < h->map_size)
		return td_fail(EINVAL, "ring: shared memory holds %llu bytes, "
			       "the layout needs %llu",
			       (unsigned long long)file_size,
			       (unsigned long long)h->map_size);
	return 0;
}

int td_ring_attach_fds(int memfd, int kick_fd, int notify_fd,
		       td_ring_request_fn fn)
{
	struct blktap_ring_header h;
	struct stat st;
	void *map;
	int err;

	if (ring.attached) {
		err = td_fail(EBUSY, "a ring is already attached");
		goto fail;
	}
	if (fstat(memfd, &st) < 0) {
		err = td_fail(errno, "ring: cannot stat shared memory: %s",
			      strerror(errno));
		goto fail;
	}
	if ((uint64_t)st.st_size < sizeof(h)) {
		err = td_fail(EINVAL, "ring: shared memory of %lld bytes is "
			      "smaller than the header", (long long)st.st_size);
		goto fail;
	}
	if (pread(memfd, &h, sizeof(h), 0) != (ssize_t)sizeof(h)) {
		err = td_fail(EIO, "ring: cannot read the header");
		goto fail;
	}
	err = check_header(&h, (uint64_t)st.st_size);
	if (err)
		goto fail;
	map = mmap(NULL, h.map_size, PROT_READ | PROT_WRITE, MAP_SHARED,
		   memfd, 0);
	if (map == MAP_FAILED) {
		err = td_fail(errno, "ring: cannot map %llu bytes: %s",
			      (unsigned long long)h.map_size, strerror(errno));
		goto fail;
	}
	if (!ring.hook_added) {
		err = td_loop_add_prepare(push_responses, NULL);
		if (err) {
			munmap(map, h.map_size);
			td_fail(-err, "ring: cannot add loop hook");
			goto fail;
		}
		ring.hook_added = true;
	}
	ring.kick_id = td_loop_add_fd(kick_fd, EPOLLIN, kicked, NULL);
	if (ring.kick_id < 0) {
		err = td_fail(-ring.kick_id, "ring: cannot watch the kick eventfd");
		munmap(map, h.map_size);
		goto fail;
	}
	ring.map = map;
	ring.map_size = h.map_size;
	ring.hdr = map;
	/* The layout as validated, not as the front may rewrite it later. */
	ring.nr_slots = h.nr_slots;
	ring.slot_bytes = h.slot_bytes;
	ring.reqs = (void *)(ring.map + blktap_ring_req_offset());
	ring.rsps = (void *)(ring.map + blktap_ring_rsp_offset(h.nr_slots));
	ring.data = ring.map + blktap_ring_data_offset(h.nr_slots);
	ring.req_cons = load_acquire(&ring.hdr->req_prod);
	ring.rsp_prod = ring.req_cons;
	ring.rsp_pushed = ring.rsp_prod;
	store_release(&ring.hdr->rsp_prod, ring.rsp_prod);
	ring.memfd = memfd;
	ring.kick_fd = kick_fd;
	ring.notify_fd = notify_fd;
	ring.fn = fn;
	ring.attached = true;
	ring.consuming = false;
	return 0;
fail:
	close(memfd);
	close(kick_fd);
	close(notify_fd);
	return err;
}

void td_ring_detach(void)
{
	if (!ring.attached)
		return;
	push_responses(NULL);
	td_loop_del_fd(ring.kick_id);
	munmap(ring.map, ring.map_size);
	close(ring.memfd);
	close(ring.kick_fd);
	close(ring.notify_fd);
	ring.memfd = ring.kick_fd = ring.notify_fd = ring.kick_id = -1;
	ring.attached = false;
	ring.consuming = false;
	ring.map = NULL;
	ring.hdr = NULL;
}

bool td_ring_attached(void)
{
	return ring.attached;
}

uint32_t td_ring_nr_slots(void)
{
	return ring.nr_slots;
}

uint32_t td_ring_slot_bytes(void)
{
	return ring.slot_bytes;
}

char *td_ring_slot_data(uint32_t slot)
{
	return (char *)ring.data + (uint64_t)slot * ring.slot_bytes;
}

void td_ring_set_disk(uint64_t capacity, uint32_t sector_size,
		      uint32_t features)
{
	if (!ring.attached)
		return;
	ring.hdr->sector_size = sector_size;
	ring.hdr->features = features;
	/* Capacity last: the front waits for it to become non-zero. */
	atomic_thread_fence(memory_order_release);
	atomic_store_explicit((_Atomic uint64_t *)&ring.hdr->capacity,
			      capacity, memory_order_release);
}

void td_ring_respond(uint64_t id, int32_t status)
{
	struct blktap_ring_response *r;

	if (!ring.attached)
		return;
	r = &ring.rsps[ring.rsp_prod & (ring.nr_slots - 1)];
	r->id = id;
	r->status = status;
	r->reserved = 0;
	ring.rsp_prod++;
}

void td_ring_set_consuming(bool on)
{
	ring.consuming = on && ring.attached;
	if (ring.consuming)
		consume();
}
