// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The back end of the blktap ring, over one of two transports:
 *
 *   the rig's:    a memfd holding the ring, an eventfd the front writes
 *                 when it published requests, one tapdisk writes when it
 *                 published responses;
 *   the kernel's: /dev/xen/blktap-2/blktapN, which allocates the ring
 *                 (SETUP_RING), is mmapped, polls readable when requests
 *                 were published, and takes an ioctl (KICK) for responses.
 *
 * Everything else (header validation, consuming, responding, pushing) is
 * one code path; the transports differ only in how the ring is obtained
 * and in struct ring_ops.
 *
 * The front owns the request ring and the data slots; we only read the
 * former, and read or write the latter as each request says.  Indices
 * and the header's fields are read once into locals: a front that
 * changes them under us may break its own requests but not tapdisk.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "event.h"
#include "log.h"
#include "ring.h"

/* The module's directory in sysfs: present while it is loaded. */
#define BLKTAP2_SYSFS_MODULE	"/sys/module/blktap2"

struct ring_ops {
	const char	*name;
	/* The watched descriptor became readable: acknowledge the wakeup. */
	void		(*ack)(void);
	/* Responses were published and the front asked to be woken. */
	int		(*wake_front)(void);
	/* Close the transport's descriptors. */
	void		(*release)(void);
};

static struct {
	bool			attached;
	bool			consuming;
	bool			dead;		/* until detached */
	bool			wake_failed;	/* said once */
	const struct ring_ops	*ops;
	uint8_t			*map;
	size_t			map_size;
	struct blktap_ring_header *hdr;
	struct blktap_ring_request *reqs;
	struct blktap_ring_response *rsps;
	uint8_t			*data;
	uint32_t		nr_slots;
	uint32_t		slot_bytes;
	uint32_t		req_cons;
	uint32_t		rsp_prod;	/* pushed in batches */
	uint32_t		rsp_pushed;
	/* rig */
	int			memfd;
	int			kick_fd;
	int			notify_fd;
	/* kernel */
	int			dev_fd;
	unsigned int		minor;
	/* the descriptor the loop watches, and for what */
	int			watch_id;
	uint32_t		watch_events;
	bool			hook_added;
	td_ring_request_fn	fn;
} ring = {
	.memfd = -1, .kick_fd = -1, .notify_fd = -1, .dev_fd = -1,
	.watch_id = -1,
};

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

/* ---- the rig's transport ---- */

static void rig_ack(void)
{
	uint64_t n;

	if (read(ring.kick_fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		td_warn("ring: cannot read kick eventfd: %s", strerror(errno));
}

static int rig_wake_front(void)
{
	uint64_t one = 1;

	if (write(ring.notify_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		return -errno;
	return 0;
}

static void rig_release(void)
{
	close(ring.memfd);
	close(ring.kick_fd);
	close(ring.notify_fd);
	ring.memfd = ring.kick_fd = ring.notify_fd = -1;
}

static const struct ring_ops rig_ops = {
	.name		= "rig",
	.ack		= rig_ack,
	.wake_front	= rig_wake_front,
	.release	= rig_release,
};

/* ---- the kernel's transport ---- */

static void kernel_ack(void)
{
	/* Nothing to read: poll() says what the ring itself says. */
}

static int kernel_wake_front(void)
{
	while (ioctl(ring.dev_fd, BLKTAP_IOC_KICK) < 0)
		if (errno != EINTR)
			return -errno;
	return 0;
}

static void kernel_release(void)
{
	close(ring.dev_fd);
	ring.dev_fd = -1;
}

static const struct ring_ops kernel_ops = {
	.name		= "kernel",
	.ack		= kernel_ack,
	.wake_front	= kernel_wake_front,
	.release	= kernel_release,
};

/* ---- common ---- */

/*
 * Watch for requests only while consuming them: the kernel's ring polls
 * readable for as long as requests wait, which would spin a paused loop.
 */
static void update_watch(void)
{
	uint32_t want = ring.consuming ? EPOLLIN : 0;
	int err;

	if (ring.watch_id < 0 || want == ring.watch_events)
		return;
	err = td_loop_mod_fd(ring.watch_id, want);
	if (err)
		td_warn("ring: cannot change what the loop watches: %s",
			strerror(-err));
	else
		ring.watch_events = want;
}

static void set_dead(const char *why)
{
	if (ring.dead)
		return;
	td_err("ring: %s; the ring is dead until it is detached", why);
	ring.dead = true;
	ring.consuming = false;
	update_watch();
}

static void consume(void)
{
	while (ring.attached && ring.consuming) {
		uint32_t prod = load_acquire(&ring.hdr->req_prod);

		if (prod - ring.req_cons > ring.nr_slots) {
			char why[96];

			snprintf(why, sizeof(why), "front published %u "
				 "requests with %u slots",
				 prod - ring.req_cons, ring.nr_slots);
			set_dead(why);
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

static void ring_event(void *arg, uint32_t events)
{
	(void)arg;
	if (events & (EPOLLERR | EPOLLHUP)) {
		/* Reported whatever we watch for: stop watching at all. */
		td_loop_del_fd(ring.watch_id);
		ring.watch_id = -1;
		set_dead("the front hung up the ring");
		return;
	}
	ring.ops->ack();
	consume();
	update_watch();
}

/* Before the loop sleeps: publish responses, wake the front if it asked. */
static void push_responses(void *arg)
{
	uint32_t old = ring.rsp_pushed, event;
	int err;

	(void)arg;
	if (!ring.attached || old == ring.rsp_prod)
		return;
	store_release(&ring.hdr->rsp_prod, ring.rsp_prod);
	ring.rsp_pushed = ring.rsp_prod;
	full_barrier();
	event = load_acquire(&ring.hdr->rsp_event);
	if (!blktap_ring_need_wake(ring.rsp_prod, old, event))
		return;
	err = ring.ops->wake_front();
	if (err == -EIO) {
		/* The kernel failed the ring: our responses go nowhere. */
		set_dead("the front refused our responses (EIO)");
		return;
	}
	if (err && !ring.wake_failed) {
		/* Once: a front that stopped listening would flood the log. */
		ring.wake_failed = true;
		td_warn("ring: cannot wake the front (%s): %s",
			ring.ops->name, strerror(-err));
	}
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

/*
 * Take @map (validated as @h says) into use, watching @watch_fd for
 * requests.  0 or -errno; on failure nothing is kept (the caller unmaps
 * and closes).
 */
static int install(uint8_t *map, const struct blktap_ring_header *h,
		   int watch_fd, const struct ring_ops *ops,
		   td_ring_request_fn fn)
{
	int id;

	if (!ring.hook_added) {
		int err = td_loop_add_prepare(push_responses, NULL);

		if (err)
			return td_fail(-err, "ring: cannot add loop hook");
		ring.hook_added = true;
	}
	/* Not consuming yet: nothing to watch for until open. */
	id = td_loop_add_fd(watch_fd, 0, ring_event, NULL);
	if (id < 0)
		return td_fail(-id, "ring: cannot watch the %s ring",
			       ops->name);
	ring.watch_id = id;
	ring.watch_events = 0;
	ring.ops = ops;
	ring.map = map;
	ring.map_size = h->map_size;
	ring.hdr = (struct blktap_ring_header *)map;
	/* The layout as validated, not as the front may rewrite it later. */
	ring.nr_slots = h->nr_slots;
	ring.slot_bytes = h->slot_bytes;
	ring.reqs = (void *)(map + blktap_ring_req_offset());
	ring.rsps = (void *)(map + blktap_ring_rsp_offset(h->nr_slots));
	ring.data = map + blktap_ring_data_offset(h->nr_slots);
	ring.req_cons = load_acquire(&ring.hdr->req_prod);
	ring.rsp_prod = ring.req_cons;
	ring.rsp_pushed = ring.rsp_prod;
	store_release(&ring.hdr->rsp_prod, ring.rsp_prod);
	ring.fn = fn;
	ring.attached = true;
	ring.consuming = false;
	ring.dead = false;
	ring.wake_failed = false;
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
	ring.memfd = memfd;
	ring.kick_fd = kick_fd;
	ring.notify_fd = notify_fd;
	err = install(map, &h, kick_fd, &rig_ops, fn);
	if (err) {
		munmap(map, h.map_size);
		ring.memfd = ring.kick_fd = ring.notify_fd = -1;
		goto fail;
	}
	return 0;
fail:
	close(memfd);
	close(kick_fd);
	close(notify_fd);
	return err;
}

/* Why the ring device of @minor cannot be opened, as one line. */
static int open_failed(const char *path, unsigned int minor, int err)
{
	if (err == ENOENT && access(BLKTAP2_SYSFS_MODULE, F_OK) < 0)
		return td_fail(ENODEV, "no ring device %s: the blktap2 "
			       "kernel module is not loaded", path);
	if (err == ENOENT || err == ENXIO || err == ENODEV)
		return td_fail(ENODEV, "no ring device %s: minor %u is not "
			       "allocated (tap-ctl allocate)", path, minor);
	if (err == EBUSY)
		return td_fail(EBUSY, "ring device %s is in use by another "
			       "tapdisk", path);
	return td_fail(err, "cannot open ring device %s: %s", path,
		       strerror(err));
}

int td_ring_attach_kernel(unsigned int minor, uint32_t nr_slots,
			  uint32_t slot_bytes, td_ring_request_fn fn)
{
	struct blktap_ring_setup setup = {
		.nr_slots = nr_slots ? nr_slots : BLKTAP_RING_DEF_SLOTS,
		.slot_bytes = slot_bytes ? slot_bytes :
					   BLKTAP_RING_DEF_SLOT_BYTES,
	};
	struct blktap_ring_header h;
	char path[64];
	void *map;
	int fd, err;

	if (ring.attached)
		return td_fail(EBUSY, "a ring is already attached");
	snprintf(path, sizeof(path), BLKTAP2_RING_FMT, minor);
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return open_failed(path, minor, errno);
	if (ioctl(fd, BLKTAP_IOC_SETUP_RING, &setup) < 0) {
		err = td_fail(errno, "%s: the kernel refused a ring of %u "
			      "slots of %u bytes: %s", path, setup.nr_slots,
			      setup.slot_bytes, strerror(errno));
		close(fd);
		return err;
	}
	/* The kernel's answer is checked like everything it shares. */
	if (setup.map_size != blktap_ring_map_size(setup.nr_slots,
						   setup.slot_bytes)) {
		err = td_fail(EPROTO, "%s: the kernel made a ring of %llu "
			      "bytes for %u slots of %u bytes", path,
			      (unsigned long long)setup.map_size,
			      setup.nr_slots, setup.slot_bytes);
		close(fd);
		return err;
	}
	map = mmap(NULL, setup.map_size, PROT_READ | PROT_WRITE, MAP_SHARED,
		   fd, 0);
	if (map == MAP_FAILED) {
		err = td_fail(errno, "%s: cannot map %llu bytes: %s", path,
			      (unsigned long long)setup.map_size,
			      strerror(errno));
		close(fd);
		return err;
	}
	memcpy(&h, map, sizeof(h));
	err = check_header(&h, setup.map_size);
	if (!err && (h.nr_slots != setup.nr_slots ||
		     h.slot_bytes != setup.slot_bytes))
		err = td_fail(EPROTO, "ring: the kernel made %u slots of %u "
			      "bytes, not the %u of %u asked for",
			      h.nr_slots, h.slot_bytes, setup.nr_slots,
			      setup.slot_bytes);
	if (!err) {
		ring.dev_fd = fd;
		ring.minor = minor;
		err = install(map, &h, fd, &kernel_ops, fn);
	}
	if (err) {
		munmap(map, setup.map_size);
		close(fd);
		ring.dev_fd = -1;
		return err;
	}
	return 0;
}

void td_ring_detach(void)
{
	if (!ring.attached)
		return;
	push_responses(NULL);
	if (ring.watch_id >= 0)
		td_loop_del_fd(ring.watch_id);
	ring.watch_id = -1;
	munmap(ring.map, ring.map_size);
	ring.ops->release();
	ring.attached = false;
	ring.consuming = false;
	ring.dead = false;
	ring.map = NULL;
	ring.hdr = NULL;
	ring.ops = NULL;
}

bool td_ring_attached(void)
{
	return ring.attached;
}

bool td_ring_is_kernel(void)
{
	return ring.attached && ring.ops == &kernel_ops;
}

bool td_ring_dead(void)
{
	return ring.attached && ring.dead;
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

void td_ring_push(void)
{
	push_responses(NULL);
}

void td_ring_set_consuming(bool on)
{
	ring.consuming = on && ring.attached && !ring.dead;
	if (ring.consuming)
		consume();
	update_watch();
}

/* ---- the kernel's block device ---- */

static int need_kernel_ring(const char *what)
{
	if (!td_ring_is_kernel())
		return td_fail(ENOTTY, "%s needs the kernel's ring (none is "
			       "attached)", what);
	return 0;
}

int td_ring_create_device(uint64_t capacity, uint32_t sector_size,
			  uint32_t physical_sector_size, uint32_t features)
{
	struct blktap_device_params p = {
		.capacity = capacity,
		.sector_size = sector_size,
		.physical_sector_size = physical_sector_size,
		.features = features,
	};
	int err = need_kernel_ring("creating tapdev");

	if (err)
		return err;
	while (ioctl(ring.dev_fd, BLKTAP_IOC_CREATE_DEVICE, &p) < 0) {
		err = errno;
		if (err == EINTR)
			continue;
		if (err == EINVAL)
			return td_fail(err, "tapdev%u: the kernel refused "
				       "the disk (%llu sectors of %u bytes, "
				       "physical %u, features 0x%x): %s",
				       ring.minor,
				       (unsigned long long)capacity,
				       sector_size, physical_sector_size,
				       features, strerror(err));
		return td_fail(err, "tapdev%u: cannot create the block "
			       "device: %s", ring.minor, strerror(err));
	}
	return 0;
}

int td_ring_remove_device(bool force)
{
	int err = need_kernel_ring("removing tapdev");

	if (err)
		return err;
	/* The kernel may wait for answers: give it every one we have. */
	push_responses(NULL);
	while (ioctl(ring.dev_fd, BLKTAP_IOC_REMOVE_DEVICE,
		     force ? BLKTAP_REMOVE_FORCE : 0UL) < 0) {
		err = errno;
		if (err == EINTR)
			continue;
		if (err == EBUSY)
			return td_fail(EBUSY, "tapdev%u is in use (mounted or "
				       "held by blkback); not closed",
				       ring.minor);
		if (err == ENODEV || err == ENXIO)
			return 0;	/* there was no device to remove */
		return td_fail(err, "tapdev%u: cannot remove the block "
			       "device: %s", ring.minor, strerror(err));
	}
	return 0;
}
