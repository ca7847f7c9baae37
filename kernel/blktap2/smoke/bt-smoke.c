// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * bt-smoke: a minimal stand-in for tapdisk against the blktap2 module,
 * for the module's own smoke test in a VM (run-smoke).  It serves one
 * tap from a backing file, or attacks the ring, or checks that bad
 * arguments are refused.
 *
 *   bt-smoke alloc                       prints the new minor
 *   bt-smoke free MINOR
 *   bt-smoke serve MINOR FILE [SLOTS SLOT_BYTES]
 *        SIGUSR1: REMOVE_DEVICE, SIGUSR2: REMOVE_DEVICE force,
 *        SIGTERM: REMOVE_DEVICE then exit
 *   bt-smoke hostile MINOR ITER          maps, creates, sends garbage
 *   bt-smoke badsetup MINOR              argument validation checks
 *   bt-smoke cycles N SLOTS SLOT_BYTES   N whole lifecycles, no I/O
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "blktap-ring.h"

#define LA(p)		__atomic_load_n((p), __ATOMIC_ACQUIRE)
#define SR(p, v)	__atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define MB()		__atomic_thread_fence(__ATOMIC_SEQ_CST)

static int die(const char *what)
{
	fprintf(stderr, "bt-smoke: %s: %s\n", what, strerror(errno));
	exit(1);
}

static int ctl_open(void)
{
	int fd = open(BLKTAP2_CONTROL, O_RDWR | O_CLOEXEC);

	if (fd < 0)
		die("open control");
	return fd;
}

struct ring {
	int fd;
	uint8_t *map;
	struct blktap_ring_header *h;
	struct blktap_ring_request *reqs;
	struct blktap_ring_response *rsps;
	uint8_t *data;
	uint32_t n, sb, cons, rsp_prod, rsp_pushed;
};

static void ring_open(struct ring *r, unsigned minor, uint32_t n, uint32_t sb)
{
	struct blktap_ring_setup s = { .nr_slots = n, .slot_bytes = sb };
	char path[64];

	snprintf(path, sizeof(path), BLKTAP2_RING_FMT, minor);
	r->fd = open(path, O_RDWR | O_CLOEXEC);
	if (r->fd < 0)
		die(path);
	if (ioctl(r->fd, BLKTAP_IOC_SETUP_RING, &s))
		die("SETUP_RING");
	r->map = mmap(NULL, s.map_size, PROT_READ | PROT_WRITE, MAP_SHARED,
		      r->fd, 0);
	if (r->map == MAP_FAILED)
		die("mmap");
	r->h = (void *)r->map;
	if (r->h->magic != BLKTAP_RING_MAGIC || r->h->nr_slots != n ||
	    r->h->map_size != s.map_size || r->h->data_offset !=
	    blktap_ring_data_offset(n)) {
		fprintf(stderr, "bt-smoke: bad header\n");
		exit(1);
	}
	r->n = n;
	r->sb = sb;
	r->reqs = (void *)(r->map + r->h->req_offset);
	r->rsps = (void *)(r->map + r->h->rsp_offset);
	r->data = r->map + r->h->data_offset;
	r->cons = r->rsp_prod = r->rsp_pushed = LA(&r->h->req_prod);
}

static long slow_us;

static int handle(struct ring *r, int fd, struct blktap_ring_request *q)
{
	uint32_t slot = BLKTAP_ID_SLOT(q->id);
	uint8_t *buf = r->data + (uint64_t)slot * r->sb;
	size_t len = (size_t)q->nr_sectors << 9;
	off_t off = (off_t)q->sector << 9;
	ssize_t n;

	if (slot >= r->n)
		return -EINVAL;
	if (slow_us)
		usleep(slow_us);
	switch (q->op) {
	case BLKTAP_OP_READ:
		if (len > r->sb)
			return -EINVAL;
		n = pread(fd, buf, len, off);
		return n == (ssize_t)len ? 0 : -EIO;
	case BLKTAP_OP_WRITE:
		if (len > r->sb)
			return -EINVAL;
		n = pwrite(fd, buf, len, off);
		if (n != (ssize_t)len)
			return -EIO;
		if ((q->flags & BLKTAP_REQ_FUA) && fdatasync(fd))
			return -errno;
		return 0;
	case BLKTAP_OP_FLUSH:
		return fdatasync(fd) ? -errno : 0;
	case BLKTAP_OP_DISCARD:
		return fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				 off, len) ? -errno : 0;
	case BLKTAP_OP_WRITE_ZEROES:
		return fallocate(fd, FALLOC_FL_ZERO_RANGE, off, len) ?
		       -errno : 0;
	}
	return -EOPNOTSUPP;
}

static void push(struct ring *r)
{
	uint32_t old = r->rsp_pushed;

	if (old == r->rsp_prod)
		return;
	SR(&r->h->rsp_prod, r->rsp_prod);
	r->rsp_pushed = r->rsp_prod;
	MB();
	if (blktap_ring_need_wake(r->rsp_prod, old, LA(&r->h->rsp_event)) &&
	    ioctl(r->fd, BLKTAP_IOC_KICK))
		fprintf(stderr, "bt-smoke: KICK: %s\n", strerror(errno));
}

static void consume(struct ring *r, int fd)
{
	for (;;) {
		uint32_t prod = LA(&r->h->req_prod);

		if (prod == r->cons) {
			SR(&r->h->req_event, r->cons + 1);
			MB();
			if (LA(&r->h->req_prod) == r->cons)
				return;
			continue;
		}
		while (r->cons != prod) {
			struct blktap_ring_request q;
			struct blktap_ring_response *p;

			memcpy(&q, &r->reqs[r->cons & (r->n - 1)], sizeof(q));
			r->cons++;
			p = &r->rsps[r->rsp_prod & (r->n - 1)];
			p->id = q.id;
			p->status = handle(r, fd, &q);
			p->reserved = 0;
			r->rsp_prod++;
		}
	}
}

static void do_remove(struct ring *r, unsigned long flags)
{
	if (ioctl(r->fd, BLKTAP_IOC_REMOVE_DEVICE, flags))
		printf("remove: %s\n", strerror(errno));
	else
		printf("remove: ok\n");
	fflush(stdout);
}

static int serve(unsigned minor, const char *file, uint32_t n, uint32_t sb)
{
	struct blktap_device_params p = { 0 };
	struct ring r;
	struct stat st;
	sigset_t mask;
	int fd, sfd;

	fd = open(file, O_RDWR);
	if (fd < 0 || fstat(fd, &st))
		die(file);
	if (getenv("BT_SLOW_MS"))
		slow_us = atol(getenv("BT_SLOW_MS")) * 1000;
	sigemptyset(&mask);
	sigaddset(&mask, SIGUSR1);
	sigaddset(&mask, SIGUSR2);
	sigaddset(&mask, SIGTERM);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	sfd = signalfd(-1, &mask, SFD_CLOEXEC);
	ring_open(&r, minor, n, sb);
	p.capacity = (uint64_t)st.st_size >> 9;
	p.sector_size = 512;
	p.physical_sector_size = 4096;
	p.features = BLKTAP_FEAT_FLUSH | BLKTAP_FEAT_FUA |
		     BLKTAP_FEAT_DISCARD | BLKTAP_FEAT_WRITE_ZEROES;
	if (ioctl(r.fd, BLKTAP_IOC_CREATE_DEVICE, &p))
		die("CREATE_DEVICE");
	printf("serving minor %u pid %d\n", minor, (int)getpid());
	fflush(stdout);
	for (;;) {
		struct pollfd pf[2] = { { r.fd, POLLIN, 0 }, { sfd, POLLIN, 0 } };
		uint64_t cnt;

		if (poll(pf, 2, -1) < 0 && errno != EINTR)
			die("poll");
		if (pf[0].revents & POLLIN) {
			if (read(r.fd, &cnt, sizeof(cnt)) < 0 && errno != EAGAIN)
				die("read ring");
			consume(&r, fd);
		}
		push(&r);
		if (pf[1].revents & POLLIN) {
			struct signalfd_siginfo si;

			if (read(sfd, &si, sizeof(si)) != sizeof(si))
				die("signalfd");
			if (si.ssi_signo == SIGUSR1)
				do_remove(&r, 0);
			else if (si.ssi_signo == SIGUSR2)
				do_remove(&r, BLKTAP_REMOVE_FORCE);
			else {
				do_remove(&r, 0);
				return 0;
			}
		}
	}
}

static uint64_t rnd(void)
{
	static uint64_t x = 88172645463325252ull;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return x;
}

static void hostile_attach(struct ring *r, unsigned minor)
{
	struct blktap_device_params p = { 0 };

	ring_open(r, minor, 32, 65536);
	p.capacity = 2048;
	p.sector_size = 512;
	p.features = BLKTAP_FEAT_FLUSH;
	if (ioctl(r->fd, BLKTAP_IOC_CREATE_DEVICE, &p))
		die("CREATE_DEVICE");
}

/*
 * Garbage in every field tapdisk controls, with a live disk behind it.
 * When the kernel fails the ring, close it and take the disk over again
 * (the recovery path), and go on.
 */
static int hostile(unsigned minor, long iter)
{
	struct ring r;
	long i, good = 0, failures = 0;

	hostile_attach(&r, minor);
	printf("hostile on minor %u pid %d\n", minor, (int)getpid());
	fflush(stdout);
	for (i = 0; i < iter; i++) {
		uint32_t prod = r.rsp_prod, k, m = rnd() % 4;
		uint32_t rp = LA(&r.h->req_prod);

		switch (rnd() % 6) {
		case 0:	/* random ids and statuses */
			for (k = 0; k <= m; k++) {
				r.rsps[prod & (r.n - 1)].id = rnd();
				r.rsps[prod & (r.n - 1)].status = (int)rnd();
				prod++;
			}
			break;
		case 1:	/* answer real requests, sometimes twice */
			while (r.cons != rp && prod - r.rsp_prod < r.n / 2) {
				struct blktap_ring_request q = r.reqs[r.cons & (r.n - 1)];

				r.cons++;
				for (k = 0; k < 1 + (rnd() & 1); k++) {
					r.rsps[prod & (r.n - 1)].id = q.id;
					r.rsps[prod & (r.n - 1)].status =
						(rnd() & 3) ? 0 : (int)(rnd() % 5000) - 4500;
					prod++;
				}
				good++;
			}
			break;
		case 2:	/* stale generations */
			r.rsps[prod & (r.n - 1)].id = BLKTAP_MAKE_ID(rnd() & 0xffff, rnd() % r.n);
			r.rsps[prod & (r.n - 1)].status = 0;
			prod++;
			break;
		case 3:	/* scribble over the header's front fields */
			r.h->nr_slots = (uint32_t)rnd();
			r.h->slot_bytes = (uint32_t)rnd();
			r.h->req_event = (uint32_t)rnd();
			r.h->rsp_event = (uint32_t)rnd();
			break;
		case 4:	/* an impossible count, rarely: fails the ring */
			if (rnd() % 3000 == 0)
				prod += r.n + 1 + (uint32_t)(rnd() % 1000);
			break;
		default:	/* kick with nothing new */
			break;
		}
		r.rsp_prod = prod;
		SR(&r.h->rsp_prod, prod);
		if (ioctl(r.fd, BLKTAP_IOC_KICK) && errno == EIO) {
			failures++;
			munmap(r.map, r.h->map_size ? blktap_ring_map_size(32, 65536) : 0);
			close(r.fd);
			hostile_attach(&r, minor);
		}
	}
	printf("hostile done: %ld iterations, %ld requests answered, %ld ring failures\n",
	       iter, good, failures);
	if (ioctl(r.fd, BLKTAP_IOC_REMOVE_DEVICE, BLKTAP_REMOVE_FORCE))
		die("REMOVE_DEVICE force");
	printf("hostile removed\n");
	return 0;
}

static void expect(const char *what, int rc, int err)
{
	if (rc == 0 && err == 0) {
		printf("ok   %s\n", what);
	} else if (rc < 0 && errno == err) {
		printf("ok   %s: %s\n", what, strerror(err));
	} else {
		printf("FAIL %s: rc %d errno %s, wanted %s\n", what, rc,
		       strerror(errno), err ? strerror(err) : "success");
	}
}

/* Argument validation on a fresh tap. */
static int badsetup(unsigned minor)
{
	struct blktap_ring_setup s = { 0 };
	struct blktap_device_params p = { 0 };
	char path[64];
	void *m;
	int fd, fd2;
	pid_t pid;

	snprintf(path, sizeof(path), BLKTAP2_RING_FMT, minor);
	fd = open(path, O_RDWR);
	if (fd < 0)
		die(path);
	fd2 = open(path, O_RDWR);
	expect("second opener", fd2, EBUSY);
	expect("KICK before setup", ioctl(fd, BLKTAP_IOC_KICK), EPERM);
	expect("CREATE before setup", ioctl(fd, BLKTAP_IOC_CREATE_DEVICE, &p), ENXIO);
	s.nr_slots = 3; s.slot_bytes = 4096;
	expect("3 slots", ioctl(fd, BLKTAP_IOC_SETUP_RING, &s), EINVAL);
	s.nr_slots = 512;
	expect("512 slots", ioctl(fd, BLKTAP_IOC_SETUP_RING, &s), EINVAL);
	s.nr_slots = 4; s.slot_bytes = 1000;
	expect("slot 1000 bytes", ioctl(fd, BLKTAP_IOC_SETUP_RING, &s), EINVAL);
	s.slot_bytes = 8u << 20;
	expect("slot 8 MiB", ioctl(fd, BLKTAP_IOC_SETUP_RING, &s), EINVAL);
	s.slot_bytes = 4096;
	expect("setup 4x4096", ioctl(fd, BLKTAP_IOC_SETUP_RING, &s), 0);
	expect("setup twice", ioctl(fd, BLKTAP_IOC_SETUP_RING, &s), EBUSY);
	m = mmap(NULL, s.map_size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	expect("private mmap", m == MAP_FAILED ? -1 : 0, EINVAL);
	m = mmap(NULL, s.map_size + 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	expect("oversized mmap", m == MAP_FAILED ? -1 : 0, EINVAL);
	m = mmap(NULL, s.map_size - 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 4096);
	expect("offset mmap", m == MAP_FAILED ? -1 : 0, EINVAL);
	expect("CREATE unmapped", ioctl(fd, BLKTAP_IOC_CREATE_DEVICE, &p), EINVAL);
	m = mmap(NULL, s.map_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	expect("mmap", m == MAP_FAILED ? -1 : 0, 0);
	expect("mmap twice", mmap(NULL, s.map_size, PROT_READ | PROT_WRITE,
				  MAP_SHARED, fd, 0) == MAP_FAILED ? -1 : 0, EBUSY);
	pid = fork();
	if (pid == 0) {
		/* Same file, other mm: may not answer. */
		expect("KICK from child", ioctl(fd, BLKTAP_IOC_KICK), EPERM);
		expect("CREATE from child", ioctl(fd, BLKTAP_IOC_CREATE_DEVICE, &p), EPERM);
		expect("REMOVE from child", ioctl(fd, BLKTAP_IOC_REMOVE_DEVICE, 0), EPERM);
		fflush(stdout);
		_exit(0);
	}
	waitpid(pid, NULL, 0);
	p.sector_size = 512;
	expect("capacity 0", ioctl(fd, BLKTAP_IOC_CREATE_DEVICE, &p), EINVAL);
	p.capacity = (1ull << 48) + 8;
	expect("capacity 2^48+8", ioctl(fd, BLKTAP_IOC_CREATE_DEVICE, &p), EINVAL);
	p.capacity = 1024;
	p.sector_size = 1024;
	expect("sector 1024", ioctl(fd, BLKTAP_IOC_CREATE_DEVICE, &p), EINVAL);
	p.sector_size = 4096;
	p.capacity = 1001;
	expect("capacity not 4k multiple", ioctl(fd, BLKTAP_IOC_CREATE_DEVICE, &p), EINVAL);
	p.capacity = 1024;
	p.physical_sector_size = 512;
	expect("physical < logical", ioctl(fd, BLKTAP_IOC_CREATE_DEVICE, &p), EINVAL);
	p.physical_sector_size = 0;
	p.reserved = 1;
	expect("reserved set", ioctl(fd, BLKTAP_IOC_CREATE_DEVICE, &p), EINVAL);
	p.reserved = 0;
	p.features = 0xffffffff & ~BLKTAP_FEAT_READONLY;
	expect("create 4k disk, unknown features", ioctl(fd, BLKTAP_IOC_CREATE_DEVICE, &p), 0);
	expect("create twice", ioctl(fd, BLKTAP_IOC_CREATE_DEVICE, &p), EEXIST);
	expect("remove bad flags", ioctl(fd, BLKTAP_IOC_REMOVE_DEVICE, 2), EINVAL);
	expect("unknown ioctl", ioctl(fd, _IO(BLKTAP_IOC_MAGIC, 99)), ENOTTY);
	{
		int cfd = ctl_open();

		expect("free while ring open", ioctl(cfd, BLKTAP2_IOC_FREE_TAP, minor), EBUSY);
		expect("free unknown minor", ioctl(cfd, BLKTAP2_IOC_FREE_TAP, 999999), ENOENT);
		close(cfd);
	}
	expect("remove", ioctl(fd, BLKTAP_IOC_REMOVE_DEVICE, 0), 0);
	expect("remove again (no device)", ioctl(fd, BLKTAP_IOC_REMOVE_DEVICE, 0), 0);
	munmap(m, s.map_size);
	close(fd);
	return 0;
}

/* Whole lifecycles, kernel side only: alloc, ring, disk, remove, free. */
static int cycles(long n, uint32_t slots, uint32_t slot_bytes)
{
	struct blktap_device_params p = { .capacity = 2048, .sector_size = 512 };
	struct blktap2_alloc a = { 0 };
	int cfd = ctl_open();
	struct ring r;
	long i;

	for (i = 0; i < n; i++) {
		if (ioctl(cfd, BLKTAP2_IOC_ALLOC_TAP, &a))
			die("ALLOC_TAP");
		ring_open(&r, a.minor, slots, slot_bytes);
		if (ioctl(r.fd, BLKTAP_IOC_CREATE_DEVICE, &p))
			die("CREATE_DEVICE");
		if (ioctl(r.fd, BLKTAP_IOC_REMOVE_DEVICE, 0))
			die("REMOVE_DEVICE");
		munmap(r.map, blktap_ring_map_size(slots, slot_bytes));
		close(r.fd);
		if (ioctl(cfd, BLKTAP2_IOC_FREE_TAP, a.minor))
			die("FREE_TAP");
	}
	printf("%ld cycles of %u x %u bytes\n", n, slots, slot_bytes);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && !strcmp(argv[1], "alloc")) {
		struct blktap2_alloc a = { 0 };
		int fd = ctl_open();
		long i, n = argc > 2 ? atol(argv[2]) : 1;

		for (i = 0; i < n; i++) {
			if (ioctl(fd, BLKTAP2_IOC_ALLOC_TAP, &a))
				die("ALLOC_TAP");
			if (n == 1)
				printf("%u\n", a.minor);
		}
		if (n > 1)
			printf("allocated %ld, last minor %u\n", n, a.minor);
		return 0;
	}
	if (argc >= 3 && !strcmp(argv[1], "free")) {
		int fd = ctl_open();
		long i, first = atol(argv[2]);
		long last = argc > 3 ? atol(argv[3]) : first;

		for (i = first; i <= last; i++)
			if (ioctl(fd, BLKTAP2_IOC_FREE_TAP, i))
				die("FREE_TAP");
		return 0;
	}
	if (argc >= 4 && !strcmp(argv[1], "serve"))
		return serve(atoi(argv[2]), argv[3],
			     argc > 4 ? atoi(argv[4]) : 128,
			     argc > 5 ? atoi(argv[5]) : (1 << 20));
	if (argc >= 4 && !strcmp(argv[1], "hostile"))
		return hostile(atoi(argv[2]), atol(argv[3]));
	if (argc >= 5 && !strcmp(argv[1], "cycles"))
		return cycles(atol(argv[2]), atoi(argv[3]), atoi(argv[4]));
	if (argc >= 3 && !strcmp(argv[1], "badsetup"))
		return badsetup(atoi(argv[2]));
	fprintf(stderr, "usage: bt-smoke alloc [N]|free MINOR [LAST]|serve MINOR FILE [SLOTS SLOTBYTES]|hostile MINOR ITER|badsetup MINOR|cycles N SLOTS SLOTBYTES\n");
	return 2;
}
