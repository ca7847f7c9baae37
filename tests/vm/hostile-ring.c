// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * hostile-ring: a malicious tapdisk, to show that the blktap2 module
 * survives one (VM test 6; runs in the guest only).
 *
 *   hostile-ring [-n ITERATIONS] [-s SEED]
 *   hostile-ring -A COUNT
 *
 * It allocates a tap, sets up and maps its ring and creates tapdevN itself
 * (no tapdisk), serving the requests from a disk image in memory.  Child
 * processes keep tapdevN busy with direct reads, writes, flushes and
 * discards while the main loop answers requests with garbage, ITERATIONS
 * times (default 100000): unknown and duplicate ids, stale generations,
 * slots out of range, statuses outside [-4095, 0], scribbles over the
 * header fields the kernel owns, kicks without responses.  Then it answers
 * properly and checks that the tap still works (a write reads back), that
 * every request the kernel issued was seen to completion and that the
 * device can be removed and the tap freed.  Two more taps get responses
 * with impossible counts (rsp_prod beyond the ring, or going backwards):
 * the kernel must fail those taps, so that I/O ends with EIO instead of
 * hanging, and still let them be removed.  Before all that, invalid ring
 * and device parameters, oversized or misplaced mappings and requests from
 * a process that did not map the ring must be refused.
 *
 * It also checks what the kernel puts in the ring: each request must name
 * a free slot with a fresh generation and stay inside the disk and its
 * slot.  Exits 0 when the kernel passed; else prints one line saying what
 * went wrong and exits 1.
 *
 * With -A it only allocates COUNT taps at once (BLKTAP2_IOC_ALLOC_TAP),
 * checks that their minors differ and their ring nodes appear, then frees
 * them all and checks that the nodes go: no small fixed limit on taps.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/fs.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "blktap-ring.h"

#define NR_SLOTS	32u
#define SLOT_BYTES	(256u << 10)
#define DISK_BYTES	(64u << 20)
#define DISK_SECTORS	(DISK_BYTES >> BLKTAP_SECTOR_SHIFT)
#define NR_READERS	1
#define NR_WRITERS	1
#define HISTORY		64u
#define NODE_WAIT_MS	10000
#define DRAIN_MS	60000
#define EIO_WAIT_MS	30000
#define BLKTAP_MAX_MINOR_SEEN	(1u << 20)	/* MINORBITS */

struct pending {
	bool busy;
	uint64_t id;
	struct blktap_ring_request req;
};

struct tap {
	unsigned int minor;
	int fd;				/* the ring device */
	void *map;
	struct blktap_ring_header *hdr;
	struct blktap_ring_request *reqs;
	struct blktap_ring_response *rsps;
	uint8_t *data;
	uint32_t req_cons;		/* our private indices */
	uint32_t rsp_prod;
	uint32_t rsp_kicked;		/* rsp_prod at the last kick */
	struct pending slot[NR_SLOTS];
	uint64_t last_id[NR_SLOTS];	/* to spot a reused generation */
	bool seen[NR_SLOTS];
	uint64_t history[HISTORY];	/* ids answered, for duplicates */
	unsigned int nr_history;
	unsigned int inflight;
	unsigned long steps;
	pid_t kids[NR_READERS + NR_WRITERS];
	unsigned int nr_kids;
	char dev[64];
};

static struct {
	uint64_t requests, answered, bad_status, err_status, dup, bogus;
	uint64_t scribbles, kicks, kick_errors, polls;
} st;

static int control = -1;
static uint8_t *disk;
static uint64_t rng_state;

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2),
						       noreturn));

static void fail(const char *fmt, ...)
{
	va_list ap;

	fputs("hostile-ring: FAILED: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	/* The children die with us (PR_SET_PDEATHSIG). */
	exit(1);
}

static void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void note(const char *fmt, ...)
{
	va_list ap;

	fputs("hostile-ring: ", stdout);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
	fflush(stdout);
}

/* xorshift64*: reproducible from the seed, no locking. */
static uint64_t rnd(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545F4914F6CDD1Dull;
}

static uint32_t rnd_below(uint32_t n)
{
	return (uint32_t)(rnd() % n);
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(unsigned int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000 };

	nanosleep(&ts, NULL);
}

/*
 * Wait for a device node that devtmpfs creates; if it does not (an old
 * setup), make it from the dev_t sysfs shows.
 */
static void wait_node(const char *path, const char *sysdev, bool block)
{
	uint64_t end = now_ms() + NODE_WAIT_MS;
	struct stat sb;
	unsigned int maj, min;
	FILE *f;

	while (now_ms() < end) {
		if (!stat(path, &sb)) {
			if (block ? S_ISBLK(sb.st_mode) : S_ISCHR(sb.st_mode))
				return;
			fail("%s exists but is not a %s device", path,
			     block ? "block" : "character");
		}
		f = fopen(sysdev, "r");
		if (f) {
			int n = fscanf(f, "%u:%u", &maj, &min);

			fclose(f);
			if (n == 2 && !stat(path, &sb))
				return;
			if (n == 2 && !mknod(path, (block ? S_IFBLK : S_IFCHR) |
					     0600, makedev(maj, min)))
				return;
		}
		sleep_ms(20);
	}
	fail("%s did not appear within %u ms", path, NODE_WAIT_MS);
}

/* ---- the ring ------------------------------------------------------------ */

static uint32_t load_acquire(const uint32_t *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static void store_release(uint32_t *p, uint32_t v)
{
	__atomic_store_n(p, v, __ATOMIC_RELEASE);
}

static void kick(struct tap *t)
{
	/* The kernel reads responses only when kicked. */
	t->rsp_kicked = t->rsp_prod;
	st.kicks++;
	if (ioctl(t->fd, BLKTAP_IOC_KICK))
		st.kick_errors++;
}

static void bad_request(uint64_t id, const char *fmt, ...)
	__attribute__((format(printf, 2, 3), noreturn));

static void bad_request(uint64_t id, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fail("the kernel published request id %#" PRIx64 ": %s", id, msg);
}

/* Is the request one tapdisk accepts (as tapdisk/vbd.c checks)? */
static void check_request(struct tap *t, const struct blktap_ring_request *q)
{
	uint64_t id = q->id, sector = q->sector;
	uint32_t s = BLKTAP_ID_SLOT(id), n = q->nr_sectors;
	bool data_op = q->op == BLKTAP_OP_READ || q->op == BLKTAP_OP_WRITE;

	if (s >= NR_SLOTS)
		bad_request(id, "slot %u of %u", s, NR_SLOTS);
	if (t->slot[s].busy)
		bad_request(id, "slot %u is still in flight (id %#" PRIx64 ")",
			    s, t->slot[s].id);
	if (t->seen[s] && t->last_id[s] == id)
		bad_request(id, "slot %u reused without a new generation", s);
	if (q->op > BLKTAP_OP_MAX)
		bad_request(id, "op %u", q->op);
	if ((q->flags & ~BLKTAP_REQ_FUA) ||
	    ((q->flags & BLKTAP_REQ_FUA) && q->op != BLKTAP_OP_WRITE))
		bad_request(id, "flags %#x on op %u", q->flags, q->op);
	if (q->reserved[0] || q->reserved[1])
		bad_request(id, "reserved fields not zero");
	if (q->op == BLKTAP_OP_FLUSH && (sector || n))
		bad_request(id, "FLUSH with sector %" PRIu64 " and %u sectors "
			    "(tapdisk refuses a FLUSH that is not 0+0)",
			    sector, n);
	if (q->op != BLKTAP_OP_FLUSH && !n)
		bad_request(id, "op %u with 0 sectors", q->op);
	if (data_op && n > SLOT_BYTES >> BLKTAP_SECTOR_SHIFT)
		bad_request(id, "%u sectors for a slot of %u bytes", n,
			    SLOT_BYTES);
	if (sector > DISK_SECTORS || n > DISK_SECTORS - sector)
		bad_request(id, "sectors %" PRIu64 "+%u beyond the disk's %u",
			    sector, n, DISK_SECTORS);
}

/*
 * Take the requests the kernel published.  Everything about them must be
 * right: a bad request is a kernel bug, not something to survive.
 */
static void harvest(struct tap *t)
{
	uint32_t prod = load_acquire(&t->hdr->req_prod);

	if (prod - t->req_cons > NR_SLOTS)
		fail("the kernel published req_prod %u with only %u consumed "
		     "on a ring of %u", prod, t->req_cons, NR_SLOTS);
	while (t->req_cons != prod) {
		struct blktap_ring_request q =
			t->reqs[t->req_cons & (NR_SLOTS - 1)];
		uint32_t s = BLKTAP_ID_SLOT(q.id);

		t->req_cons++;
		st.requests++;
		check_request(t, &q);
		t->slot[s].busy = true;
		t->slot[s].id = q.id;
		t->slot[s].req = q;
		t->seen[s] = true;
		t->last_id[s] = q.id;
		t->inflight++;
	}
}

/* Do what a request asks of the in-memory disk. */
static void execute(struct tap *t, const struct blktap_ring_request *q)
{
	uint8_t *slot = t->data + (size_t)BLKTAP_ID_SLOT(q->id) * SLOT_BYTES;
	size_t off = (size_t)q->sector << BLKTAP_SECTOR_SHIFT;
	size_t len = (size_t)q->nr_sectors << BLKTAP_SECTOR_SHIFT;

	switch (q->op) {
	case BLKTAP_OP_READ:
		memcpy(slot, disk + off, len);
		break;
	case BLKTAP_OP_WRITE:
		memcpy(disk + off, slot, len);
		break;
	case BLKTAP_OP_DISCARD:
	case BLKTAP_OP_WRITE_ZEROES:
		memset(disk + off, 0, len);
		break;
	default:
		break;
	}
}

static void put_response(struct tap *t, uint64_t id, int32_t status)
{
	struct blktap_ring_response *r =
		&t->rsps[t->rsp_prod & (NR_SLOTS - 1)];

	r->id = id;
	r->status = status;
	/* Reserved fields are not the kernel's business either. */
	r->reserved = (uint32_t)rnd();
	t->rsp_prod++;
}

static void remember(struct tap *t, uint64_t id)
{
	t->history[t->nr_history++ % HISTORY] = id;
}

/* A random busy slot, or -1. */
static int pick_busy(struct tap *t)
{
	uint32_t start = rnd_below(NR_SLOTS);

	for (uint32_t i = 0; i < NR_SLOTS; i++) {
		uint32_t s = (start + i) & (NR_SLOTS - 1);

		if (t->slot[s].busy)
			return (int)s;
	}
	return -1;
}

/* Answer slot s with status; the kernel completes it whatever the status. */
static void answer(struct tap *t, int s, int32_t status)
{
	if (!status)
		execute(t, &t->slot[s].req);
	put_response(t, t->slot[s].id, status);
	remember(t, t->slot[s].id);
	t->slot[s].busy = false;
	t->inflight--;
	st.answered++;
}

/* Answer everything in flight properly. */
static void answer_all(struct tap *t)
{
	unsigned int n = 0;

	harvest(t);
	for (uint32_t s = 0; s < NR_SLOTS; s++) {
		if (t->slot[s].busy) {
			answer(t, (int)s, 0);
			n++;
		}
	}
	store_release(&t->hdr->rsp_prod, t->rsp_prod);
	/*
	 * Also when only an earlier chaos step left responses published
	 * but not kicked: the I/O they answer would wait for ever.
	 */
	if (n || t->rsp_kicked != t->rsp_prod)
		kick(t);
}

/*
 * Serve properly for up to ms milliseconds, or until done() says so.
 * Sleeps in poll() with the event index set, as tapdisk does.
 */
static bool serve(struct tap *t, unsigned int ms, bool (*done)(struct tap *))
{
	uint64_t end = now_ms() + ms;
	struct pollfd p = { .fd = t->fd, .events = POLLIN };

	while (now_ms() < end) {
		answer_all(t);
		if (done && done(t))
			return true;
		store_release(&t->hdr->req_event, t->req_cons + 1);
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		if (load_acquire(&t->hdr->req_prod) != t->req_cons)
			continue;
		/* Short sleeps: a lost wakeup must not look like a hang. */
		if (poll(&p, 1, 20) < 0 && errno != EINTR)
			fail("poll on the ring: %s", strerror(errno));
		st.polls++;
	}
	return done ? done(t) : true;
}

/* ---- garbage ------------------------------------------------------------- */

static int32_t bad_status(void)
{
	static const int32_t bad[] = {
		1, 2, 4096, INT_MAX, -4096, -4097, -100000, INT_MIN,
	};

	return bad[rnd_below(sizeof(bad) / sizeof(bad[0]))];
}

static uint64_t bogus_id(struct tap *t)
{
	int s = pick_busy(t);

	switch (rnd_below(6)) {
	case 0:
		return rnd();
	case 1:		/* a slot beyond the ring, any generation */
		return BLKTAP_MAKE_ID(rnd() & 0xffffffff,
				      NR_SLOTS + rnd_below(0x10000 - NR_SLOTS));
	case 2:		/* an in-flight slot, the next generation */
		if (s >= 0)
			return t->slot[s].id + (1ull << 16);
		return rnd();
	case 3:		/* an in-flight slot, the previous generation */
		if (s >= 0)
			return t->slot[s].id - (1ull << 16);
		return rnd();
	case 4:		/* an in-flight slot with high bits set */
		if (s >= 0)
			return t->slot[s].id | (1ull << (48 + rnd_below(16)));
		return rnd();
	default:	/* a free slot, with its last (answered) generation */
		for (uint32_t i = 0; i < NR_SLOTS; i++)
			if (!t->slot[i].busy && t->seen[i])
				return t->last_id[i];
		return rnd();
	}
}

/*
 * Overwrite one header field the kernel owns, kick, and put it back
 * (compare-and-swap: if the kernel wrote the field meanwhile, its value
 * stays).  The kernel must never trust what it reads there.  req_prod is
 * left alone: the kernel may publish between our load and our store, and
 * putting the old value back would hide a request from us.
 */
static void scribble(struct tap *t)
{
	struct blktap_ring_header *h = t->hdr;
	uint32_t *f32[] = {
		&h->magic, &h->version, &h->nr_slots, &h->slot_bytes,
		&h->rsp_event, &h->req_event, &h->sector_size, &h->features,
	};
	__u64 *f64[] = {
		&h->req_offset, &h->rsp_offset, &h->data_offset,
		&h->map_size, &h->capacity,
	};
	uint32_t n32 = sizeof(f32) / sizeof(f32[0]);
	uint32_t i = rnd_below(n32 + sizeof(f64) / sizeof(f64[0]));

	if (i < n32) {
		uint32_t *f = f32[i];
		uint32_t old = __atomic_load_n(f, __ATOMIC_ACQUIRE);
		uint32_t junk = (uint32_t)rnd();

		__atomic_store_n(f, junk, __ATOMIC_RELEASE);
		kick(t);
		__atomic_compare_exchange_n(f, &junk, old, false,
					    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
	} else {
		__u64 *f = f64[i - n32];
		__u64 old = __atomic_load_n(f, __ATOMIC_ACQUIRE);
		__u64 junk = rnd();

		__atomic_store_n(f, junk, __ATOMIC_RELEASE);
		kick(t);
		__atomic_compare_exchange_n(f, &junk, old, false,
					    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
	}
	st.scribbles++;
}

/* Wait up to ms for a request, as tapdisk does (event index, poll). */
static void wait_request(struct tap *t, int ms)
{
	struct pollfd p = { .fd = t->fd, .events = POLLIN };

	store_release(&t->hdr->req_event, t->req_cons + 1);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (load_acquire(&t->hdr->req_prod) != t->req_cons)
		return;
	if (poll(&p, 1, ms) < 0 && errno != EINTR)
		fail("poll on the ring: %s", strerror(errno));
	st.polls++;
}

/* One round of garbage: a few responses, good and bad, then a kick. */
static void chaos_step(struct tap *t)
{
	unsigned int n = 1 + rnd_below(4);
	uint32_t r;
	int s;

	harvest(t);
	/*
	 * Keep requests coming (garbage alone tests little), but do not
	 * wait for them every time: each costs a round trip through the
	 * I/O children, slow under TCG.
	 */
	if (!t->inflight && !(t->steps++ % 8)) {
		wait_request(t, 2);
		harvest(t);
	}
	for (unsigned int i = 0; i < n; i++) {
		r = rnd_below(100);
		s = pick_busy(t);
		if (r < 45 && s >= 0) {
			answer(t, s, 0);
		} else if (r < 55 && s >= 0) {
			answer(t, s, bad_status());
			st.bad_status++;
		} else if (r < 62 && s >= 0) {
			static const int32_t errs[] = { -EIO, -ENOSPC,
							-EOPNOTSUPP, -4095 };

			answer(t, s, errs[rnd_below(4)]);
			st.err_status++;
		} else if (r < 77 && t->nr_history) {
			uint32_t h = t->nr_history < HISTORY ?
				     t->nr_history : HISTORY;

			put_response(t, t->history[rnd_below(h)],
				     rnd_below(2) ? 0 : -EIO);
			st.dup++;
		} else if (r < 92) {
			put_response(t, bogus_id(t), 0);
			st.bogus++;
		}
	}
	store_release(&t->hdr->rsp_prod, t->rsp_prod);
	r = rnd_below(100);
	if (r < 3) {
		scribble(t);
	} else if (r < 6 && t->inflight) {
		/*
		 * Garbage in a request entry already consumed.  Only the
		 * last `inflight` ones are safe: the kernel, with that many
		 * slots still busy, can publish at most nr_slots - inflight
		 * new entries, which land on the other positions.
		 */
		t->reqs[(t->req_cons - 1 - rnd_below(t->inflight)) &
			(NR_SLOTS - 1)].id = rnd();
		kick(t);
	} else if (r < 8) {
		struct pollfd p = { .fd = t->fd, .events = POLLIN };

		if (poll(&p, 1, 0) < 0)
			fail("poll on the ring: %s", strerror(errno));
		st.polls++;
	} else {
		kick(t);
	}
}

/* ---- I/O from child processes -------------------------------------------- */

static volatile sig_atomic_t stop_io;

static void on_term(int sig)
{
	(void)sig;
	stop_io = 1;
}

/* A child that does random direct I/O on dev until SIGTERM. */
static void io_child(const char *dev, bool writer, uint64_t seed)
{
	struct sigaction sa = { .sa_handler = on_term };
	sigset_t term;
	uint8_t *buf;
	int fd;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	sigaction(SIGTERM, &sa, NULL);
	/* Blocked by start_io() across fork(): now it finds the handler. */
	sigemptyset(&term);
	sigaddset(&term, SIGTERM);
	sigprocmask(SIG_UNBLOCK, &term, NULL);
	rng_state = seed | 1;
	fd = open(dev, (writer ? O_RDWR : O_RDONLY) | O_DIRECT);
	if (fd < 0 || posix_memalign((void **)&buf, 4096, 1u << 20))
		_exit(2);
	memset(buf, 0xa5, 1u << 20);
	while (!stop_io) {
		/* Mostly small (more requests), now and then 1 MiB. */
		size_t len = (size_t)(rnd_below(16) ? 1 + rnd_below(32) :
				      256) << 12;
		off_t off = (off_t)rnd_below(DISK_SECTORS >> 3) << 12;
		uint32_t r = rnd_below(100);

		if (off + (off_t)len > (off_t)DISK_BYTES)
			len = (size_t)(DISK_BYTES - (uint64_t)off);
		/*
		 * Errors are expected (the answers are garbage) and not
		 * checked here: the children only make load.
		 */
		if (!writer || r < 50) {
			if (pread(fd, buf, len, off) < 0)
				continue;
		} else if (r < 85) {
			if (pwrite(fd, buf, len, off) < 0)
				continue;
		} else if (r < 92) {
			fsync(fd);
		} else {
			uint64_t range[2] = { (uint64_t)off, len };

			ioctl(fd, r < 96 ? BLKDISCARD : BLKZEROOUT, range);
		}
	}
	_exit(0);
}

static void start_io(struct tap *t)
{
	sigset_t term, old;

	/* A SIGTERM before the child's handler is set must not kill it. */
	sigemptyset(&term);
	sigaddset(&term, SIGTERM);
	sigprocmask(SIG_BLOCK, &term, &old);
	t->nr_kids = 0;
	for (unsigned int i = 0; i < NR_READERS + NR_WRITERS; i++) {
		uint64_t seed = rnd();
		pid_t pid = fork();

		if (pid < 0)
			fail("fork: %s", strerror(errno));
		if (!pid) {
			/* The ring is not the child's to touch. */
			munmap(t->map, blktap_ring_map_size(NR_SLOTS,
							     SLOT_BYTES));
			close(t->fd);
			io_child(t->dev, i >= NR_READERS, seed);
		}
		t->kids[t->nr_kids++] = pid;
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
}

static bool kids_gone(struct tap *t)
{
	for (unsigned int i = 0; i < t->nr_kids; i++) {
		int status;
		pid_t r;

		if (!t->kids[i])
			continue;
		r = waitpid(t->kids[i], &status, WNOHANG);
		if (!r)
			return false;
		if (r < 0 || !WIFEXITED(status) || WEXITSTATUS(status))
			fail("I/O child %d: %s", (int)t->kids[i],
			     r < 0 ? strerror(errno) :
			     WIFEXITED(status) ? "cannot open the device" :
			     "killed by a signal");
		t->kids[i] = 0;
	}
	return true;
}

/* Stop the children; every I/O they wait for must complete. */
static void stop_io_kids(struct tap *t, bool serving)
{
	for (unsigned int i = 0; i < t->nr_kids; i++)
		if (t->kids[i])
			kill(t->kids[i], SIGTERM);
	if (serving) {
		if (!serve(t, DRAIN_MS, kids_gone))
			fail("I/O on %s still waits %u ms after the ring is "
			     "answered properly again (lost requests?)",
			     t->dev, DRAIN_MS);
		return;
	}
	for (uint64_t end = now_ms() + EIO_WAIT_MS; !kids_gone(t);) {
		if (now_ms() > end)
			fail("I/O on %s still waits %u ms after the tap was "
			     "failed", t->dev, EIO_WAIT_MS);
		sleep_ms(20);
	}
}

/* ---- taps ---------------------------------------------------------------- */

struct create_arg {
	struct tap *t;
	struct blktap_device_params p;
	int err;
	int done;		/* __atomic */
};

static void *create_thread(void *p)
{
	struct create_arg *a = p;

	a->err = ioctl(a->t->fd, BLKTAP_IOC_CREATE_DEVICE, &a->p) ? errno : 0;
	__atomic_store_n(&a->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static bool create_done(struct tap *t)
{
	(void)t;
	return false;
}

/*
 * CREATE_DEVICE from a thread while this one serves: adding the disk may
 * read it (partition scan) before the ioctl returns.
 */
static void create_device(struct tap *t)
{
	struct create_arg a = { .t = t };
	pthread_t th;
	int err;

	a.p.capacity = DISK_SECTORS;
	a.p.sector_size = 512;
	a.p.physical_sector_size = 4096;
	a.p.features = BLKTAP_FEAT_FLUSH | BLKTAP_FEAT_FUA |
		       BLKTAP_FEAT_DISCARD | BLKTAP_FEAT_WRITE_ZEROES;
	err = pthread_create(&th, NULL, create_thread, &a);
	if (err)
		fail("pthread_create: %s", strerror(err));
	for (uint64_t end = now_ms() + DRAIN_MS;
	     !__atomic_load_n(&a.done, __ATOMIC_ACQUIRE);) {
		if (now_ms() > end)
			fail("CREATE_DEVICE on minor %u did not return in "
			     "%u ms", t->minor, DRAIN_MS);
		serve(t, 20, create_done);
	}
	pthread_join(th, NULL);
	if (a.err)
		fail("CREATE_DEVICE on minor %u: %s", t->minor,
		     strerror(a.err));
	snprintf(t->dev, sizeof(t->dev), BLKTAP2_TAPDEV_FMT, t->minor);
	{
		char sys[96];

		snprintf(sys, sizeof(sys), "/sys/block/tapdev%u/dev", t->minor);
		wait_node(t->dev, sys, true);
	}
}

/* ioctl must fail (any errno but the one that would mean "not checked"). */
static void must_refuse(int fd, unsigned long req, void *arg, const char *what)
{
	if (!ioctl(fd, req, arg))
		fail("%s was accepted", what);
	if (errno == ENOTTY)
		fail("%s: ENOTTY (the ioctl is not implemented)", what);
}

static void check_setup_refusals(int fd)
{
	static const struct { uint32_t n, b; const char *what; } bad[] = {
		{ 0, SLOT_BYTES, "SETUP_RING with 0 slots" },
		{ 3, SLOT_BYTES, "SETUP_RING with 3 slots" },
		{ BLKTAP_RING_MAX_SLOTS * 2, SLOT_BYTES,
		  "SETUP_RING with too many slots" },
		{ NR_SLOTS, 0, "SETUP_RING with 0-byte slots" },
		{ NR_SLOTS, 1000, "SETUP_RING with 1000-byte slots" },
		{ NR_SLOTS, BLKTAP_RING_MAX_SLOT_BYTES * 2,
		  "SETUP_RING with 8 MiB slots" },
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct blktap_ring_setup s = { bad[i].n, bad[i].b, 0 };

		must_refuse(fd, BLKTAP_IOC_SETUP_RING, &s, bad[i].what);
	}
}

static void check_map_refusals(struct tap *t, size_t size)
{
	void *p = mmap(NULL, size + 4096, PROT_READ | PROT_WRITE, MAP_SHARED,
		       t->fd, 0);

	if (p != MAP_FAILED)
		fail("a mapping one page beyond the ring was accepted");
	p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, t->fd, 4096);
	if (p != MAP_FAILED)
		fail("a mapping at offset 4096 (past the ring's end) was "
		     "accepted");
}

static void check_create_refusals(struct tap *t)
{
	struct blktap_device_params p = {
		.capacity = DISK_SECTORS, .sector_size = 512,
		.physical_sector_size = 512,
	};

	p.capacity = (1ull << 48) + 1;
	must_refuse(t->fd, BLKTAP_IOC_CREATE_DEVICE, &p,
		    "CREATE_DEVICE with 2^48+1 sectors");
	p.capacity = DISK_SECTORS;
	p.sector_size = 1000;
	must_refuse(t->fd, BLKTAP_IOC_CREATE_DEVICE, &p,
		    "CREATE_DEVICE with 1000-byte sectors");
	p.sector_size = 4096;
	p.physical_sector_size = 512;
	must_refuse(t->fd, BLKTAP_IOC_CREATE_DEVICE, &p,
		    "CREATE_DEVICE with a physical sector smaller than the "
		    "logical one");
}

/* A process that did not map the ring may not answer on it. */
static void check_other_process(struct tap *t)
{
	int status;
	pid_t pid = fork();

	if (pid < 0)
		fail("fork: %s", strerror(errno));
	if (!pid) {
		if (!ioctl(t->fd, BLKTAP_IOC_KICK))
			_exit(10);
		if (!ioctl(t->fd, BLKTAP_IOC_REMOVE_DEVICE, 0))
			_exit(11);
		_exit(0);
	}
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
		fail("the KICK child did not exit");
	if (WEXITSTATUS(status) == 10)
		fail("KICK from a process that did not map the ring was "
		     "accepted");
	if (WEXITSTATUS(status) == 11)
		fail("REMOVE_DEVICE from a process that did not map the ring "
		     "was accepted");
	if (WEXITSTATUS(status))
		fail("the KICK child exited %d", WEXITSTATUS(status));
}

static void tap_up(struct tap *t, bool refusals)
{
	struct blktap2_alloc al = { 0 };
	struct blktap_ring_setup s = { NR_SLOTS, SLOT_BYTES, 0 };
	uint64_t want = blktap_ring_map_size(NR_SLOTS, SLOT_BYTES);
	char path[64], sys[96];

	memset(t, 0, sizeof(*t));
	if (ioctl(control, BLKTAP2_IOC_ALLOC_TAP, &al))
		fail("ALLOC_TAP: %s", strerror(errno));
	t->minor = al.minor;
	snprintf(path, sizeof(path), BLKTAP2_RING_FMT, t->minor);
	snprintf(sys, sizeof(sys), "/sys/class/blktap2/blktap%u/dev",
		 t->minor);
	wait_node(path, sys, false);
	t->fd = open(path, O_RDWR | O_CLOEXEC);
	if (t->fd < 0)
		fail("open %s: %s", path, strerror(errno));
	if (refusals) {
		int fd2 = open(path, O_RDWR | O_CLOEXEC);

		if (fd2 >= 0)
			fail("%s opened twice (one opener only)", path);
		check_setup_refusals(t->fd);
	}
	if (ioctl(t->fd, BLKTAP_IOC_SETUP_RING, &s))
		fail("SETUP_RING: %s", strerror(errno));
	if (s.map_size != want)
		fail("SETUP_RING says map_size %" PRIu64 ", the ABI %" PRIu64,
		     (uint64_t)s.map_size, want);
	if (refusals)
		check_map_refusals(t, want);
	t->map = mmap(NULL, want, PROT_READ | PROT_WRITE, MAP_SHARED, t->fd, 0);
	if (t->map == MAP_FAILED)
		fail("mmap of the ring: %s", strerror(errno));
	t->hdr = t->map;
	if (t->hdr->magic != BLKTAP_RING_MAGIC ||
	    t->hdr->version != BLKTAP_RING_VERSION ||
	    t->hdr->nr_slots != NR_SLOTS || t->hdr->slot_bytes != SLOT_BYTES ||
	    t->hdr->req_offset != blktap_ring_req_offset() ||
	    t->hdr->rsp_offset != blktap_ring_rsp_offset(NR_SLOTS) ||
	    t->hdr->data_offset != blktap_ring_data_offset(NR_SLOTS) ||
	    t->hdr->map_size != want)
		fail("the ring header the kernel wrote disagrees with the ABI");
	t->reqs = (void *)((uint8_t *)t->map + t->hdr->req_offset);
	t->rsps = (void *)((uint8_t *)t->map + t->hdr->rsp_offset);
	t->data = (uint8_t *)t->map + t->hdr->data_offset;
	t->req_cons = load_acquire(&t->hdr->req_prod);
	t->rsp_prod = load_acquire(&t->hdr->rsp_prod);
	t->rsp_kicked = t->rsp_prod;
	t->hdr->capacity = DISK_SECTORS;
	t->hdr->sector_size = 512;
	t->hdr->features = BLKTAP_FEAT_FLUSH | BLKTAP_FEAT_FUA |
			   BLKTAP_FEAT_DISCARD | BLKTAP_FEAT_WRITE_ZEROES;
	if (refusals)
		check_create_refusals(t);
	create_device(t);
	if (refusals)
		check_other_process(t);
	note("tap %u: %s, %u slots of %u KiB", t->minor, t->dev, NR_SLOTS,
	     SLOT_BYTES >> 10);
}

static void tap_down(struct tap *t)
{
	struct stat sb;

	if (ioctl(t->fd, BLKTAP_IOC_REMOVE_DEVICE, 0))
		fail("REMOVE_DEVICE of %s (nothing has it open): %s", t->dev,
		     strerror(errno));
	munmap(t->map, blktap_ring_map_size(NR_SLOTS, SLOT_BYTES));
	close(t->fd);
	/* The ring's release may finish asynchronously. */
	for (uint64_t end = now_ms() + NODE_WAIT_MS;;) {
		if (!ioctl(control, BLKTAP2_IOC_FREE_TAP, t->minor))
			break;
		if (errno != EBUSY || now_ms() > end)
			fail("FREE_TAP %u: %s", t->minor, strerror(errno));
		sleep_ms(20);
	}
	for (uint64_t end = now_ms() + NODE_WAIT_MS; !stat(t->dev, &sb);) {
		if (now_ms() > end)
			fail("%s still exists after REMOVE_DEVICE and FREE_TAP",
			     t->dev);
		sleep_ms(20);
	}
}

/* ---- checks -------------------------------------------------------------- */

/*
 * Write 1 MiB of fresh data at off, read it back, compare: the exit status
 * of a child process (0, or the failing step).  Not a thread: a thread
 * waiting for its own process's ring would keep the process, and so the
 * ring, alive after a failure.
 */
static int roundtrip_child(const char *dev, off_t off)
{
	size_t len = 1u << 20;
	uint8_t *w, *r;
	int fd;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	fd = open(dev, O_RDWR | O_DIRECT);
	if (fd < 0 || posix_memalign((void **)&w, 4096, len) ||
	    posix_memalign((void **)&r, 4096, len))
		return 1;
	for (size_t i = 0; i < len; i++)
		w[i] = (uint8_t)(i * 31 + (size_t)off);
	if (pwrite(fd, w, len, off) != (ssize_t)len)
		return 2;
	if (fsync(fd) || pread(fd, r, len, off) != (ssize_t)len)
		return 3;
	return memcmp(w, r, len) ? 4 : 0;
}

static pid_t rt_pid;
static int rt_status;

static bool rt_done(struct tap *t)
{
	(void)t;
	return waitpid(rt_pid, &rt_status, WNOHANG) == rt_pid;
}

static void check_roundtrip(struct tap *t, off_t off)
{
	static const char *const step[] = {
		"", "open", "write", "flush or read", "compare",
	};
	int e;

	rt_pid = fork();
	if (rt_pid < 0)
		fail("fork: %s", strerror(errno));
	if (!rt_pid) {
		munmap(t->map, blktap_ring_map_size(NR_SLOTS, SLOT_BYTES));
		close(t->fd);
		_exit(roundtrip_child(t->dev, off));
	}
	if (!serve(t, DRAIN_MS, rt_done))
		fail("a 1 MiB write and read on %s did not finish in %u ms",
		     t->dev, DRAIN_MS);
	if (!WIFEXITED(rt_status))
		fail("the write-and-read child was killed by a signal");
	e = WEXITSTATUS(rt_status);
	if (e)
		fail("%s does not work: the %s step of a 1 MiB write and read "
		     "failed", t->dev, e < 5 ? step[e] : "?");
}

/* Direct read of 4 KiB in a child; its errno, or -1 if it hung. */
static int read_errno(struct tap *t)
{
	int status;
	pid_t pid = fork();

	if (pid < 0)
		fail("fork: %s", strerror(errno));
	if (!pid) {
		void *buf;
		int fd = open(t->dev, O_RDONLY | O_DIRECT);

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (fd < 0 || posix_memalign(&buf, 4096, 4096))
			_exit(100);
		_exit(pread(fd, buf, 4096, 0) == 4096 ? 0 :
		      errno > 99 ? 99 : errno);
	}
	for (uint64_t end = now_ms() + EIO_WAIT_MS;;) {
		pid_t r = waitpid(pid, &status, WNOHANG);

		if (r == pid)
			break;
		if (now_ms() > end) {
			kill(pid, SIGKILL);
			return -1;
		}
		sleep_ms(20);
	}
	return WIFEXITED(status) ? WEXITSTATUS(status) : 100;
}

/*
 * Impossible response counts must fail the whole tap: from then on I/O
 * ends with EIO, nothing waits for this ring any more, and the device can
 * still be removed.
 */
static void bad_count_round(const char *what, uint32_t delta)
{
	struct tap t;
	int e;

	tap_up(&t, false);
	start_io(&t);
	serve(&t, 300, NULL);
	harvest(&t);
	for (uint32_t i = 0; i < NR_SLOTS; i++)
		put_response(&t, bogus_id(&t), 0);
	t.rsp_prod = load_acquire(&t.hdr->rsp_prod) + delta;
	store_release(&t.hdr->rsp_prod, t.rsp_prod);
	kick(&t);
	stop_io_kids(&t, false);
	e = read_errno(&t);
	if (e < 0)
		fail("%s: a read of %s hangs after the tap was failed", what,
		     t.dev);
	if (e != EIO)
		fail("%s: a read of %s ended with %s, not EIO", what, t.dev,
		     e == 0 ? "success" : e >= 100 ? "no result" : strerror(e));
	tap_down(&t);
	note("%s: the tap was failed, I/O ends with EIO, removed", what);
}

/* -A: COUNT taps at once, then none. */
static void alloc_many(unsigned long count)
{
	unsigned int *minor = calloc(count, sizeof(*minor));
	uint8_t *used = calloc(BLKTAP_MAX_MINOR_SEEN / 8, 1);
	char path[64], sys[96];
	struct stat sb;

	if (!minor || !used)
		fail("out of memory for %lu minors", count);
	for (unsigned long i = 0; i < count; i++) {
		struct blktap2_alloc al = { 0 };

		if (ioctl(control, BLKTAP2_IOC_ALLOC_TAP, &al))
			fail("ALLOC_TAP number %lu: %s", i + 1,
			     strerror(errno));
		if (al.minor >= BLKTAP_MAX_MINOR_SEEN)
			fail("ALLOC_TAP gave minor %u", al.minor);
		if (used[al.minor / 8] & (1u << (al.minor % 8)))
			fail("ALLOC_TAP gave minor %u twice", al.minor);
		used[al.minor / 8] |= (uint8_t)(1u << (al.minor % 8));
		minor[i] = al.minor;
	}
	/* devtmpfs works in order: when the last node is there, all are. */
	for (unsigned long i = 0; i < count; i++) {
		snprintf(path, sizeof(path), BLKTAP2_RING_FMT, minor[i]);
		snprintf(sys, sizeof(sys), "/sys/class/blktap2/blktap%u/dev",
			 minor[i]);
		wait_node(path, sys, false);
	}
	note("%lu taps allocated at once, minors %u to %u", count, minor[0],
	     minor[count - 1]);
	for (unsigned long i = 0; i < count; i++)
		if (ioctl(control, BLKTAP2_IOC_FREE_TAP, minor[i]))
			fail("FREE_TAP %u: %s", minor[i], strerror(errno));
	for (unsigned long i = 0; i < count; i++) {
		uint64_t end = now_ms() + NODE_WAIT_MS;

		snprintf(path, sizeof(path), BLKTAP2_RING_FMT, minor[i]);
		while (!stat(path, &sb)) {
			if (now_ms() > end)
				fail("%s still exists after FREE_TAP", path);
			sleep_ms(20);
		}
	}
	note("all %lu freed", count);
	free(minor);
	free(used);
}

static void usage(void)
{
	fprintf(stderr, "usage: hostile-ring [-n ITERATIONS] [-s SEED]\n"
			"       hostile-ring -A COUNT\n");
	exit(2);
}

int main(int argc, char **argv)
{
	unsigned long iterations = 100000, alloc = 0;
	uint64_t seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
	struct tap t;
	char *end;
	int c;

	while ((c = getopt(argc, argv, "n:s:A:h")) != -1) {
		switch (c) {
		case 'A':
			errno = 0;
			alloc = strtoul(optarg, &end, 0);
			if (errno || *end || !alloc || alloc > 1u << 20)
				fail("-A %s: not a count from 1 to 2^20",
				     optarg);
			break;
		case 'n':
			errno = 0;
			iterations = strtoul(optarg, &end, 0);
			if (errno || *end || !iterations)
				fail("-n %s: not a positive number", optarg);
			break;
		case 's':
			errno = 0;
			seed = strtoull(optarg, &end, 0);
			if (errno || *end)
				fail("-s %s: not a number", optarg);
			break;
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();
	rng_state = seed | 1;
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	control = open(BLKTAP2_CONTROL, O_RDWR | O_CLOEXEC);
	if (control < 0)
		fail("open %s: %s", BLKTAP2_CONTROL, strerror(errno));
	if (alloc) {
		alloc_many(alloc);
		return 0;
	}
	note("seed %#" PRIx64 ", %lu iterations", seed, iterations);

	disk = calloc(1, DISK_BYTES);
	if (!disk)
		fail("out of memory for a %u MiB disk", DISK_BYTES >> 20);

	tap_up(&t, true);
	check_roundtrip(&t, 0);
	start_io(&t);
	for (unsigned long i = 0; i < iterations; i++) {
		chaos_step(&t);
		if (!(i % 20000))
			note("%lu/%lu: %" PRIu64 " requests, %u in flight", i,
			     iterations, st.requests, t.inflight);
	}
	note("garbage done: %" PRIu64 " requests, %" PRIu64 " answered, %"
	     PRIu64 " bad statuses, %" PRIu64 " errors, %" PRIu64
	     " duplicates, %" PRIu64 " bogus ids, %" PRIu64 " scribbles, %"
	     PRIu64 " kicks (%" PRIu64 " refused)", st.requests, st.answered,
	     st.bad_status, st.err_status, st.dup, st.bogus, st.scribbles,
	     st.kicks, st.kick_errors);
	if (st.requests < 100)
		fail("only %" PRIu64 " requests reached the ring under load",
		     st.requests);
	/*
	 * End as the unluckiest chaos step can: answers published without
	 * a kick.  Serving properly must still get them to the kernel (once
	 * it did not, and a child waited for ever).  First let every child
	 * block on a request (none new for 300 ms), so that no new request
	 * hides a missing kick.
	 */
	for (uint64_t quiet = now_ms() + 300, end = now_ms() + 10000;
	     now_ms() < quiet && now_ms() < end;) {
		uint32_t before = t.req_cons;

		wait_request(&t, 20);
		harvest(&t);
		if (t.req_cons != before)
			quiet = now_ms() + 300;
	}
	for (int s; (s = pick_busy(&t)) >= 0;)
		answer(&t, s, 0);
	store_release(&t.hdr->rsp_prod, t.rsp_prod);
	stop_io_kids(&t, true);
	serve(&t, 200, NULL);
	if (t.inflight)
		fail("%u requests still in flight after all I/O ended",
		     t.inflight);
	check_roundtrip(&t, 8 << 20);
	tap_down(&t);
	note("the tap works after the garbage and was removed");

	bad_count_round("rsp_prod beyond the ring", NR_SLOTS + 1 + NR_SLOTS);
	bad_count_round("rsp_prod going backwards", (uint32_t)-5);
	note("PASSED");
	return 0;
}
