// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * tapdisk's back end of the ring (tapdisk/ring.c), through the rig's
 * transport: the header checks both transports share, consuming and the
 * event index, responses and the wakeup, pause (no wakeups while not
 * consuming), a front that overflows the ring (dead until detached), and
 * what the kernel's transport says where there is no kernel module.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>
#include <cmocka.h>

#include "event.h"
#include "log.h"
#include "ring.h"

#define SLOTS		8u
#define SLOT_BYTES	8192u

/* The front's side of the test ring. */
static struct {
	int				memfd, kick, notify;
	uint8_t				*map;
	size_t				size;
	struct blktap_ring_header	*hdr;
	struct blktap_ring_request	*reqs;
	struct blktap_ring_response	*rsps;
} f;

/* What the back's request callback saw. */
static struct {
	uint64_t	ids[64];
	unsigned int	n;
} seen;

static bool on_request(const struct blktap_ring_request *req)
{
	if (seen.n < sizeof(seen.ids) / sizeof(seen.ids[0]))
		seen.ids[seen.n] = req->id;
	seen.n++;
	return true;
}

/* A ring as the rig makes it; @mutate may spoil the header first. */
static void make_ring(void (*mutate)(struct blktap_ring_header *h))
{
	f.size = blktap_ring_map_size(SLOTS, SLOT_BYTES);
	f.memfd = memfd_create("test-ring", MFD_CLOEXEC);
	assert_true(f.memfd >= 0);
	assert_int_equal(ftruncate(f.memfd, (off_t)f.size), 0);
	f.map = mmap(NULL, f.size, PROT_READ | PROT_WRITE, MAP_SHARED,
		     f.memfd, 0);
	assert_true(f.map != MAP_FAILED);
	f.hdr = (struct blktap_ring_header *)f.map;
	f.hdr->magic = BLKTAP_RING_MAGIC;
	f.hdr->version = BLKTAP_RING_VERSION;
	f.hdr->nr_slots = SLOTS;
	f.hdr->slot_bytes = SLOT_BYTES;
	f.hdr->req_offset = blktap_ring_req_offset();
	f.hdr->rsp_offset = blktap_ring_rsp_offset(SLOTS);
	f.hdr->data_offset = blktap_ring_data_offset(SLOTS);
	f.hdr->map_size = f.size;
	f.hdr->req_event = 1;
	f.hdr->rsp_event = 1;
	f.reqs = (void *)(f.map + f.hdr->req_offset);
	f.rsps = (void *)(f.map + f.hdr->rsp_offset);
	if (mutate)
		mutate(f.hdr);
	f.kick = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	f.notify = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	assert_true(f.kick >= 0 && f.notify >= 0);
}

/* The front's copies of the descriptors (the back takes the originals). */
static int attach(void)
{
	int m = dup(f.memfd), k = dup(f.kick), n = dup(f.notify);

	assert_true(m >= 0 && k >= 0 && n >= 0);
	return td_ring_attach_fds(m, k, n, on_request);
}

static void drop_ring(void)
{
	td_ring_detach();
	munmap(f.map, f.size);
	close(f.memfd);
	close(f.kick);
	close(f.notify);
}

/* Publish @n requests with ids @first..., and kick. */
static void publish(uint64_t first, unsigned int n)
{
	uint32_t prod = f.hdr->req_prod;
	uint64_t one = 1;

	for (unsigned int i = 0; i < n; i++) {
		struct blktap_ring_request *r =
			&f.reqs[(prod + i) & (SLOTS - 1)];

		memset(r, 0, sizeof(*r));
		r->id = first + i;
		r->op = BLKTAP_OP_FLUSH;
	}
	__atomic_store_n(&f.hdr->req_prod, prod + n, __ATOMIC_RELEASE);
	assert_int_equal(write(f.kick, &one, sizeof(one)), sizeof(one));
}

static void stop(void *arg)
{
	(void)arg;
	td_loop_stop();
}

/* Run the event loop for @ms. */
static void run_for(uint64_t ms)
{
	int id = td_loop_add_timer(ms, 0, stop, NULL);

	assert_true(id >= 0);
	assert_int_equal(td_loop_run(), 0);
}

static uint64_t notified(void)
{
	uint64_t n = 0;

	if (read(f.notify, &n, sizeof(n)) < 0)
		return 0;
	return n;
}

static int setup(void **state)
{
	(void)state;
	memset(&seen, 0, sizeof(seen));
	return 0;
}

/* One loop for all: the ring registers its hook with the loop once. */
static int group_setup(void **state)
{
	(void)state;
	return td_loop_init();
}

static int group_teardown(void **state)
{
	(void)state;
	td_loop_fini();
	return 0;
}

static void bad_magic(struct blktap_ring_header *h) { h->magic ^= 1; }
static void bad_version(struct blktap_ring_header *h) { h->version++; }
static void bad_slots(struct blktap_ring_header *h) { h->nr_slots = 6; }
static void no_slots(struct blktap_ring_header *h) { h->nr_slots = 0; }
static void bad_slot_bytes(struct blktap_ring_header *h)
{
	h->slot_bytes = 1000;
}
static void huge_slots(struct blktap_ring_header *h)
{
	h->slot_bytes = BLKTAP_RING_MAX_SLOT_BYTES * 2;
}
static void bad_offset(struct blktap_ring_header *h) { h->rsp_offset += 16; }
static void bad_size(struct blktap_ring_header *h) { h->map_size += 4096; }
/* A consistent layout bigger than the memory holds. */
static void too_big(struct blktap_ring_header *h)
{
	h->slot_bytes = 2 * SLOT_BYTES;
	h->map_size = blktap_ring_map_size(SLOTS, 2 * SLOT_BYTES);
}

static void test_bad_headers(void **state)
{
	static const struct {
		void		(*mutate)(struct blktap_ring_header *h);
		const char	*msg;
	} cases[] = {
		{ bad_magic, "bad magic" },
		{ bad_version, "version" },
		{ bad_slots, "not a power of two" },
		{ no_slots, "not a power of two" },
		{ bad_slot_bytes, "page multiple" },
		{ huge_slots, "page multiple" },
		{ bad_offset, "layout does not match" },
		{ bad_size, "layout does not match" },
		{ too_big, "the layout needs" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		make_ring(cases[i].mutate);
		assert_int_equal(attach(), -EINVAL);
		assert_non_null(strstr(td_errmsg(), cases[i].msg));
		assert_false(td_ring_attached());
		drop_ring();
	}
}

static void test_attach_twice(void **state)
{
	(void)state;
	make_ring(NULL);
	assert_int_equal(attach(), 0);
	assert_true(td_ring_attached());
	assert_false(td_ring_is_kernel());
	assert_int_equal(td_ring_nr_slots(), SLOTS);
	assert_int_equal(td_ring_slot_bytes(), SLOT_BYTES);
	assert_int_equal(attach(), -EBUSY);
	assert_int_equal(td_ring_attach_kernel(0, 0, 0, on_request), -EBUSY);
	/* The block device ioctls are the kernel's ring's alone. */
	assert_int_equal(td_ring_create_device(2048, 512, 4096, 0), -ENOTTY);
	assert_int_equal(td_ring_remove_device(false), -ENOTTY);
	drop_ring();
	assert_false(td_ring_attached());
}

static void test_consume_respond(void **state)
{
	(void)state;
	make_ring(NULL);
	assert_int_equal(attach(), 0);
	publish(100, 3);
	/* Not consuming until open: nothing is taken. */
	run_for(50);
	assert_int_equal(seen.n, 0);
	td_ring_set_consuming(true);
	assert_int_equal(seen.n, 3);
	assert_int_equal(seen.ids[0], 100);
	assert_int_equal(seen.ids[2], 102);
	/* Caught up: asks to be woken by the next request. */
	assert_int_equal(f.hdr->req_event, 4);

	/* Woken through the loop. */
	publish(200, 2);
	run_for(50);
	assert_int_equal(seen.n, 5);
	assert_int_equal(seen.ids[4], 201);

	/* Responses go out in one batch, before the loop sleeps. */
	td_ring_respond(100, 0);
	td_ring_respond(101, -EIO);
	assert_int_equal(f.hdr->rsp_prod, 0);
	run_for(10);
	assert_int_equal(f.hdr->rsp_prod, 2);
	assert_int_equal(f.rsps[1].id, 101);
	assert_int_equal(f.rsps[1].status, -EIO);
	assert_int_equal(notified(), 1);

	/* The front did not ask (rsp_event behind): no wakeup. */
	f.hdr->rsp_event = 1;
	td_ring_respond(102, 0);
	td_ring_push();
	assert_int_equal(f.hdr->rsp_prod, 3);
	assert_int_equal(notified(), 0);
	drop_ring();
}

static void test_paused(void **state)
{
	uint64_t kicks = 0;

	(void)state;
	make_ring(NULL);
	assert_int_equal(attach(), 0);
	td_ring_set_consuming(true);
	td_ring_set_consuming(false);
	publish(1, 2);
	run_for(50);
	assert_int_equal(seen.n, 0);
	/*
	 * Not even woken: the kick is still there (a kernel ring would poll
	 * readable all along, and a loop watching it would spin).
	 */
	assert_int_equal(read(f.kick, &kicks, sizeof(kicks)), sizeof(kicks));
	assert_int_equal(kicks, 1);
	/* The requests waited in the ring. */
	td_ring_set_consuming(true);
	assert_int_equal(seen.n, 2);
	drop_ring();
}

static void test_overflow_is_dead(void **state)
{
	(void)state;
	make_ring(NULL);
	assert_int_equal(attach(), 0);
	td_ring_set_consuming(true);
	f.hdr->req_prod = SLOTS + 1;
	td_ring_set_consuming(true);
	assert_int_equal(seen.n, 0);
	assert_true(td_ring_dead());
	/* Until detached, whatever comes. */
	f.hdr->req_prod = 1;
	td_ring_set_consuming(true);
	run_for(20);
	assert_int_equal(seen.n, 0);
	assert_true(td_ring_dead());
	drop_ring();
	assert_false(td_ring_dead());

	/* A new ring works. */
	make_ring(NULL);
	assert_int_equal(attach(), 0);
	td_ring_set_consuming(true);
	publish(7, 1);
	run_for(20);
	assert_int_equal(seen.n, 1);
	drop_ring();
}

static void test_kernel_without_module(void **state)
{
	(void)state;
	if (access("/sys/module/blktap2", F_OK) == 0)
		skip();
	assert_int_equal(td_ring_attach_kernel(3, 0, 0, on_request), -ENODEV);
	assert_non_null(strstr(td_errmsg(), "/dev/xen/blktap-2/blktap3"));
	assert_non_null(strstr(td_errmsg(), "module is not loaded"));
	assert_false(td_ring_attached());
	assert_false(td_ring_is_kernel());
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_bad_headers, setup),
		cmocka_unit_test_setup(test_attach_twice, setup),
		cmocka_unit_test_setup(test_consume_respond, setup),
		cmocka_unit_test_setup(test_paused, setup),
		cmocka_unit_test_setup(test_overflow_is_dead, setup),
		cmocka_unit_test_setup(test_kernel_without_module, setup),
	};

	td_log_open("test-ring-transport", false);
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
