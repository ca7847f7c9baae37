// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * td-rig: drive a tapdisk through the user-space ring, as the kernel will,
 * and check what comes back against a model of the disk.  See usage().
 *
 * Exit status: 0 success, 1 a failure (verification, an unexpected I/O
 * error, a protocol error, a request without answer), 2 bad usage,
 * 3 the tapdisk died while we ran (the model is saved first).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client.h"
#include "model.h"
#include "rig.h"

#define EXIT_FAIL	1
#define EXIT_USAGE	2
#define EXIT_DEAD	3

#define SECTOR		512u
#define OPEN_WAIT_MS	10000
#define WAIT_SLICE_MS	1000
#define CHUNK		(1u << 20)	/* bytes per file I/O */

static volatile sig_atomic_t got_signal;

static void usage(FILE *f)
{
	fprintf(f,
"usage: td-rig run -p PID -m MINOR [options]\n"
"       td-rig bad -p PID -m MINOR [-a TYPE:PATH] [-s SLOT_KB]\n"
"       td-rig fault -p PID -m MINOR -c COUNT -e ERRNO [-o read,write,flush]\n"
"       td-rig verify --model FILE --image RAW [--base RAW]\n"
"       td-rig expect --model FILE --out RAW [--base RAW]\n"
"\n"
"run: attach a ring to tapdisk PID as MINOR (memfd + two eventfds), open\n"
"the image if -a is given, run a workload, then close and detach.\n"
"  -a TYPE:PATH      open this image (and close it at the end); without -a,\n"
"                    use the one opened by tap-ctl open (before or after\n"
"                    td-rig starts), and leave it open: the ring is then\n"
"                    detached by tap-ctl close and tap-ctl detach\n"
"  -R, -D, -t S      open read-only, without O_DIRECT, request timeout S\n"
"  -d DEPTH          requests in flight (default 32, up to 256)\n"
"  -s SLOT_KB        data bytes per ring slot, in KiB (default 1024)\n"
"  --bs MIN[-MAX]    request size, e.g. 4k or 512-1m: sizes are spread\n"
"                    evenly over the powers of two between (default 4k)\n"
"  --align BYTES     offset alignment (default: the size when fixed, else 512)\n"
"  --rw MODE         randread randwrite randrw rw70 read write (default randrw)\n"
"  --read-pct P      reads in randrw, percent (default 50; rw70 is 70)\n"
"  --ops N           stop after N requests (default 1000)\n"
"  --seconds S       stop after S seconds instead\n"
"  --offset SECTOR   first sector of the range used (default 0)\n"
"  --range SECTORS   sectors used from there (default: to the end)\n"
"  --flush-every N   a FLUSH after every N writes\n"
"  --fua-pct P       percent of writes with FUA\n"
"  --seed N          workload (and new model data) seed (default 1)\n"
"  --timeout S       fail when a request has no answer after S s (default 60)\n"
"  --model FILE      check every read against the model in FILE (created\n"
"                    when missing) and save it at the end; concurrent\n"
"                    requests never overlap a write, so each read has one\n"
"                    right answer\n"
"  --model-init K    content of a new model: zero (default), file:PATH (the\n"
"                    raw file the image starts as), read (read the disk)\n"
"  --allow-errors    I/O errors are not failures (written sectors become\n"
"                    unknown in the model)\n"
"  --expect-errors   as --allow-errors, and fail if there was none\n"
"  --stop-on-signal  run until SIGTERM/SIGINT, then drain, save, exit 0\n"
"                    (without it a signal still drains and saves, exit 1)\n"
"  --json            the summary as JSON; --quiet: no summary\n"
"If the tapdisk dies, td-rig saves the model with the writes in flight\n"
"marked as either old or new, and exits 3.\n"
"\n"
"bad: send malformed requests one at a time (past the end, over the slot,\n"
"unknown op, no sectors...); each must fail, be counted in reqs_bad, and\n"
"leave the tapdisk serving.\n"
"fault: make the next COUNT I/Os of the given kinds fail with ERRNO\n"
"(a name such as EAGAIN or a number; COUNT 0 clears); the tapdisk must run\n"
"with TAPDISK_TEST_FAULTS=1.\n"
"verify: check a raw copy of the disk against the model; expect: write the\n"
"raw image the model describes (--base gives the initial content when the\n"
"model did not start from zeros).\n");
}

static void err_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void err_line(const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	for (char *p = msg; *p; p++)
		if (*p == '\n')
			*p = ' ';
	fprintf(stderr, "td-rig: %s\n", msg);
}

static int bad_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int bad_usage(const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "td-rig: %s (see td-rig --help)\n", msg);
	return EXIT_USAGE;
}

static bool parse_u64(const char *s, uint64_t *v)
{
	char *end;

	if (!s || !*s || *s == '-' || *s == '+')
		return false;
	errno = 0;
	*v = strtoull(s, &end, 10);
	return !errno && !*end;
}

/* A byte count: digits with an optional k, m or g (powers of 1024). */
static bool parse_size(const char *s, uint64_t *v)
{
	uint64_t mult = 1;
	char *end;

	if (!s || !*s || *s < '0' || *s > '9')
		return false;
	errno = 0;
	*v = strtoull(s, &end, 10);
	if (errno)
		return false;
	switch (*end) {
	case 'k': case 'K':
		mult = 1ull << 10;
		end++;
		break;
	case 'm': case 'M':
		mult = 1ull << 20;
		end++;
		break;
	case 'g': case 'G':
		mult = 1ull << 30;
		end++;
		break;
	}
	if (*end || *v > UINT64_MAX / mult)
		return false;
	*v *= mult;
	return true;
}

/* Option @what's number @arg, in [@min, @max]: 0, or the usage error. */
static int opt_num(const char *arg, const char *what, uint64_t min,
		   uint64_t max, uint64_t *v)
{
	if (!parse_u64(arg, v) || *v < min || *v > max)
		return bad_usage("invalid %s '%s'", what, arg);
	return 0;
}

/*
 * -p PID or -m MINOR (@opt), which run, bad and fault share.  Callers start
 * with pid 0 and minor -1, which no valid option gives: "not given".
 */
static int opt_target(int opt, const char *arg, pid_t *pid, int *minor)
{
	uint64_t v;
	int rc;

	if (opt == 'p') {
		rc = opt_num(arg, "pid", 1, INT32_MAX, &v);
		*pid = (pid_t)v;
	} else {
		rc = opt_num(arg, "minor", 0, INT32_MAX, &v);
		*minor = (int)v;
	}
	return rc;
}

/*
 * The getopt_long results run, bad, verify and expect treat alike: -h
 * prints the usage and exits 0; a missing argument or an unknown option
 * is a usage error naming the option as typed.
 */
static int opt_other(int opt, char **argv)
{
	switch (opt) {
	case 'h':
		usage(stdout);
		exit(0);
	case ':':
		return bad_usage("option %s needs an argument",
				 argv[optind - 1]);
	default:
		return bad_usage("unknown option '%s'", argv[optind - 1]);
	}
}

/* After the options: 0, or the usage error for a stray argument. */
static int no_operands(int argc, char **argv)
{
	if (optind < argc)
		return bad_usage("unexpected argument '%s'", argv[optind]);
	return 0;
}

/* ---- the workload ------------------------------------------------------ */

enum rw_mode { RW_READ, RW_WRITE, RW_RANDREAD, RW_RANDWRITE, RW_RANDRW };

enum init_kind { INIT_ZERO, INIT_FILE, INIT_READ };

struct opts {
	pid_t		pid;
	int		minor;
	const char	*params;
	uint32_t	open_flags;
	uint32_t	td_timeout;
	uint32_t	depth;
	uint32_t	slot_bytes;
	uint64_t	bs_min, bs_max;
	uint64_t	align;		/* bytes; 0 = default */
	enum rw_mode	mode;
	unsigned	read_pct;
	uint64_t	ops;
	uint64_t	seconds;
	uint64_t	offset;
	uint64_t	range;
	uint64_t	flush_every;
	unsigned	fua_pct;
	uint64_t	seed;
	uint64_t	io_timeout_s;
	const char	*model_path;
	enum init_kind	init;
	const char	*init_file;
	bool		init_given;
	bool		allow_errors;
	bool		expect_errors;
	bool		stop_on_signal;
	bool		json;
	bool		quiet;
};

struct job {
	struct opts	o;
	struct rig	rig;
	struct model	m;
	bool		have_model;
	uint64_t	capacity;
	uint32_t	gran;		/* sectors per logical block */
	uint32_t	min_secs, max_secs, align_secs;
	uint64_t	lo, hi;		/* the sectors used: [lo, hi) */
	uint64_t	rng;
	uint64_t	seq_next;
	uint64_t	scan_next;	/* read passes: next sector */
	uint64_t	next_check_ns;	/* for requests without an answer */
	uint64_t	writes_since_flush;
	uint64_t	submitted;	/* workload requests */
	bool		stopping;
	bool		failed;
	bool		dead;
	bool		interrupted;
	/* Results. */
	uint64_t	done, reads, writes, flushes, errors;
	uint64_t	bytes_rd, bytes_wr;
	uint64_t	lat_sum_ns, lat_max_ns;
	uint64_t	verify_bad;
	uint64_t	start_ns, end_ns;
	uint64_t	cpu_start_us, cpu_end_us;	/* td-rig's own CPU */
	char		first_error[320];
	char		first_bad[400];
};

static uint64_t rnd(struct job *j)
{
	/* xorshift64*: plenty for choosing offsets, and cheap. */
	j->rng ^= j->rng >> 12;
	j->rng ^= j->rng << 25;
	j->rng ^= j->rng >> 27;
	return j->rng * 0x2545f4914f6cdd1dull;
}

static const char *op_name(uint8_t op)
{
	switch (op) {
	case BLKTAP_OP_READ:
		return "read";
	case BLKTAP_OP_WRITE:
		return "write";
	case BLKTAP_OP_FLUSH:
		return "flush";
	case BLKTAP_OP_DISCARD:
		return "discard";
	case BLKTAP_OP_WRITE_ZEROES:
		return "write-zeroes";
	default:
		return "unknown op";
	}
}

static void note_error(struct job *j, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void note_error(struct job *j, const char *fmt, ...)
{
	va_list ap;

	if (j->first_error[0])
		return;
	va_start(ap, fmt);
	vsnprintf(j->first_error, sizeof(j->first_error), fmt, ap);
	va_end(ap);
}

static void io_done(void *arg, struct rig *r, uint32_t slot, int status)
{
	struct job *j = arg;
	struct rig_slot *s = &r->slots[slot];
	uint64_t lat = rig_now_ns() - s->t_submit_ns;
	uint64_t bytes = (uint64_t)s->nr_sectors * SECTOR;

	j->done++;
	j->lat_sum_ns += lat;
	if (lat > j->lat_max_ns)
		j->lat_max_ns = lat;
	if (status) {
		j->errors++;
		note_error(j, "%s of %u sectors at %" PRIu64 " failed: %s",
			   op_name(s->op), s->nr_sectors, s->sector,
			   strerror(-status));
		if (s->op == BLKTAP_OP_WRITE && j->have_model)
			model_write_done(&j->m, s->sector, s->nr_sectors,
					 (uint32_t)s->tag, status);
		if (!j->o.allow_errors && !j->o.expect_errors) {
			j->failed = true;
			j->stopping = true;
		}
		return;
	}
	switch (s->op) {
	case BLKTAP_OP_READ:
		j->reads++;
		j->bytes_rd += bytes;
		if (j->have_model) {
			struct model_bad bad;
			uint64_t n = model_check(&j->m, s->sector,
						 s->nr_sectors, s->data, NULL,
						 true, &bad);

			if (n) {
				if (!j->verify_bad)
					snprintf(j->first_bad,
						 sizeof(j->first_bad),
						 "read of %u sectors at %" PRIu64
						 ": %s", s->nr_sectors,
						 s->sector, bad.what);
				j->verify_bad += n;
				j->failed = true;
				j->stopping = true;
			}
		}
		break;
	case BLKTAP_OP_WRITE:
		j->writes++;
		j->bytes_wr += bytes;
		if (j->have_model)
			model_write_done(&j->m, s->sector, s->nr_sectors,
					 (uint32_t)s->tag, 0);
		break;
	default:
		j->flushes++;
		break;
	}
}

/* Does [sec, sec + n) collide with a request in flight? */
static bool overlaps(struct job *j, uint64_t sec, uint32_t n, bool write)
{
	struct rig *r = &j->rig;

	for (uint32_t i = 0; i < r->nr_slots; i++) {
		struct rig_slot *s = &r->slots[i];

		if (!s->inflight || s->op == BLKTAP_OP_FLUSH)
			continue;
		if (!write && s->op == BLKTAP_OP_READ)
			continue;
		if (sec < s->sector + s->nr_sectors && s->sector < sec + n)
			return true;
	}
	return false;
}

/*
 * A request size in sectors: first a power-of-two class, then a size
 * inside it, so small and large requests are equally common.
 */
static uint32_t pick_secs(struct job *j)
{
	uint32_t lo = j->min_secs, hi = j->max_secs, a, b, n;
	int kmin, kmax, k;

	if (lo == hi)
		return lo;
	kmin = 31 - __builtin_clz(lo);
	kmax = 31 - __builtin_clz(hi);
	k = kmin + (int)(rnd(j) % (uint64_t)(kmax - kmin + 1));
	a = 1u << k;
	b = k == 31 ? UINT32_MAX : (2u << k) - 1;
	if (a < lo)
		a = lo;
	if (b > hi)
		b = hi;
	n = a + (uint32_t)(rnd(j) % ((uint64_t)b - a + 1));
	n -= n % j->gran;
	return n ? n : j->gran;
}

static bool is_read(struct job *j)
{
	switch (j->o.mode) {
	case RW_READ:
	case RW_RANDREAD:
		return true;
	case RW_WRITE:
	case RW_RANDWRITE:
		return false;
	default:
		return rnd(j) % 100 < j->o.read_pct;
	}
}

/*
 * Queue one workload request on a free slot.  False when it must wait
 * (sequential I/O that would overlap a write in flight).
 */
static bool submit_one(struct job *j)
{
	struct rig *r = &j->rig;
	int slot = rig_get(r);
	uint32_t n, version = 0;
	uint64_t sec = 0, span = j->hi - j->lo;
	uint8_t op, flags = 0;
	bool seq = j->o.mode == RW_READ || j->o.mode == RW_WRITE;

	if (slot < 0)
		return false;
	if (j->o.flush_every && j->writes_since_flush >= j->o.flush_every) {
		j->writes_since_flush = 0;
		rig_queue(r, (uint32_t)slot, BLKTAP_OP_FLUSH, 0, 0, 0, 0);
		j->submitted++;
		return true;
	}
	op = is_read(j) ? BLKTAP_OP_READ : BLKTAP_OP_WRITE;
	n = pick_secs(j);
	if (n > span)
		n = (uint32_t)(span - span % j->gran);
	for (int tries = 0;; tries++) {
		if (seq) {
			if (j->seq_next + n > j->hi)
				j->seq_next = j->lo;
			sec = j->seq_next;
		} else {
			uint64_t slots = (span - n) / j->align_secs + 1;

			sec = j->lo + rnd(j) % slots * j->align_secs;
		}
		if (!j->have_model ||
		    !overlaps(j, sec, n, op == BLKTAP_OP_WRITE))
			break;
		if (seq || tries == 8)
			return false;
	}
	if (seq)
		j->seq_next = sec + n;

	if (op == BLKTAP_OP_WRITE) {
		j->writes_since_flush++;
		if (j->o.fua_pct && rnd(j) % 100 < j->o.fua_pct)
			flags |= BLKTAP_REQ_FUA;
		if (j->have_model) {
			uint8_t *p = rig_slot_data(r, (uint32_t)slot);

			version = model_new_version(&j->m);
			if (!version) {
				note_error(j, "the model's version counter "
					   "is exhausted");
				j->failed = true;
				j->stopping = true;
				return false;
			}
			for (uint32_t i = 0; i < n; i++)
				model_fill(j->m.seed, sec + i, version,
					   p + (size_t)i * SECTOR);
			model_write_issued(&j->m, sec, n, version);
		}
	}
	rig_queue(r, (uint32_t)slot, op, flags, sec, n, version);
	j->submitted++;
	return true;
}

/* The oldest request in flight, when it has waited too long. */
static bool stuck(struct job *j)
{
	struct rig *r = &j->rig;
	uint64_t now = rig_now_ns();
	uint64_t limit = j->o.io_timeout_s * 1000000000ull;

	for (uint32_t i = 0; i < r->nr_slots; i++) {
		struct rig_slot *s = &r->slots[i];

		if (s->inflight && now - s->t_submit_ns > limit) {
			note_error(j, "%s of %u sectors at %" PRIu64
				   " has had no answer for %" PRIu64 " s",
				   op_name(s->op), s->nr_sectors, s->sector,
				   (uint64_t)((now - s->t_submit_ns) /
					      1000000000ull));
			return true;
		}
	}
	return false;
}

/*
 * Handle what has completed, or sleep until something does.  Returns 0 to
 * go on, -1 when the run cannot continue (j->dead or the error noted).
 */
static int pump(struct job *j, rig_done_fn done)
{
	struct rig *r = &j->rig;
	uint64_t now = rig_now_ns();
	int n, w;

	/* Once a second: a busy ring must not hide one stuck request. */
	if (now >= j->next_check_ns) {
		j->next_check_ns = now + 1000000000ull;
		if (r->inflight && stuck(j)) {
			j->failed = true;
			return -1;
		}
	}
	n = rig_reap(r, done, j);
	if (n < 0) {
		note_error(j, "%s", r->errmsg);
		j->failed = true;
		return -1;
	}
	if (n > 0 || !r->inflight)
		return 0;
	w = rig_wait(r, WAIT_SLICE_MS);
	if (w == -ESRCH) {
		/* Answers it gave before dying still count. */
		if (rig_reap(r, done, j) < 0)
			note_error(j, "%s", r->errmsg);
		j->dead = true;
		return -1;
	}
	if (w < 0 && w != -EINTR) {
		note_error(j, "waiting for tapdisk: %s", strerror(-w));
		j->failed = true;
		return -1;
	}
	return 0;
}

static void check_signal(struct job *j)
{
	if (got_signal && !j->interrupted) {
		j->interrupted = true;
		j->stopping = true;
	}
}

/* CPU time this process used, user + system, in microseconds. */
static uint64_t cpu_us(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru))
		return 0;
	return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000u +
	       (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

/* Run the workload until its end, then drain.  0, or -1 (see pump). */
static int workload(struct job *j)
{
	struct rig *r = &j->rig;
	uint64_t end_ns = 0;

	j->cpu_start_us = cpu_us();
	j->start_ns = rig_now_ns();
	if (j->o.seconds)
		end_ns = j->start_ns + j->o.seconds * 1000000000ull;
	for (;;) {
		check_signal(j);
		if (end_ns && rig_now_ns() >= end_ns)
			j->stopping = true;
		if (j->o.ops && j->submitted >= j->o.ops)
			j->stopping = true;
		if (!j->stopping) {
			while (r->inflight < j->o.depth &&
			       (!j->o.ops || j->submitted < j->o.ops) &&
			       submit_one(j))
				;
			rig_push(r);
		}
		if (j->stopping && !r->inflight)
			break;
		if (pump(j, io_done)) {
			j->end_ns = rig_now_ns();
			j->cpu_end_us = cpu_us();
			return -1;
		}
	}
	j->end_ns = rig_now_ns();
	j->cpu_end_us = cpu_us();
	return 0;
}

/* ---- read passes: initial content, and sectors left ambiguous ---------- */

typedef bool (*next_chunk_fn)(struct job *j, uint64_t *sec, uint32_t *n);

static bool next_whole(struct job *j, uint64_t *sec, uint32_t *n)
{
	uint64_t left = j->capacity - j->scan_next;
	uint32_t max = j->rig.slot_bytes / SECTOR;

	if (!left)
		return false;
	*sec = j->scan_next;
	*n = left < max ? (uint32_t)left : max;
	j->scan_next += *n;
	return true;
}

static bool next_pending(struct job *j, uint64_t *sec, uint32_t *n)
{
	uint32_t max = j->rig.slot_bytes / SECTOR;
	uint64_t s = j->scan_next;

	while (s < j->m.sectors && !j->m.rec[s].pending)
		s++;
	if (s >= j->m.sectors)
		return false;
	*sec = s;
	*n = 0;
	while (s < j->m.sectors && j->m.rec[s].pending && *n < max) {
		s++;
		(*n)++;
	}
	j->scan_next = s;
	return true;
}

static void init_done(void *arg, struct rig *r, uint32_t slot, int status)
{
	struct job *j = arg;
	struct rig_slot *s = &r->slots[slot];

	if (status) {
		note_error(j, "reading the initial content at sector %" PRIu64
			   " failed: %s", s->sector, strerror(-status));
		j->failed = true;
		return;
	}
	for (uint32_t i = 0; i < s->nr_sectors; i++)
		model_set_base(&j->m, s->sector + i,
			       (uint8_t *)s->data + (size_t)i * SECTOR);
}

static void resolve_done(void *arg, struct rig *r, uint32_t slot, int status)
{
	struct job *j = arg;
	struct rig_slot *s = &r->slots[slot];
	struct model_bad bad;
	uint64_t n;

	if (status) {
		note_error(j, "reading back sectors left by a crash at %" PRIu64
			   " failed: %s", s->sector, strerror(-status));
		j->failed = true;
		return;
	}
	n = model_check(&j->m, s->sector, s->nr_sectors, s->data, NULL, true,
			&bad);
	if (n) {
		if (!j->verify_bad)
			snprintf(j->first_bad, sizeof(j->first_bad),
				 "after the crash, %s", bad.what);
		j->verify_bad += n;
		j->failed = true;
	}
}

static int read_pass(struct job *j, next_chunk_fn next, rig_done_fn done)
{
	struct rig *r = &j->rig;
	bool more = true;

	j->scan_next = 0;
	for (;;) {
		check_signal(j);
		while (more && !j->failed && !j->interrupted &&
		       r->inflight < j->o.depth && rig_get(r) >= 0) {
			uint64_t sec;
			uint32_t n;

			more = next(j, &sec, &n);
			if (more)
				rig_queue(r, (uint32_t)rig_get(r),
					  BLKTAP_OP_READ, 0, sec, n, 0);
		}
		rig_push(r);
		if (!r->inflight)
			break;
		if (pump(j, done))
			return -1;
	}
	return j->failed || j->interrupted ? -1 : 0;
}

/* ---- the model ---------------------------------------------------------- */

static int hash_file(struct model *m, const char *path)
{
	uint8_t *buf;
	uint64_t s = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		err_line("cannot open %s: %s", path, strerror(errno));
		return -1;
	}
	buf = malloc(CHUNK);
	if (!buf) {
		close(fd);
		err_line("out of memory");
		return -1;
	}
	while (s < m->sectors) {
		ssize_t got = read(fd, buf, CHUNK);

		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			err_line("cannot read %s: %s", path, strerror(errno));
			break;
		}
		if (got == 0) {
			/* Past its end, the image starts as zeros. */
			memset(buf, 0, CHUNK);
			got = (ssize_t)CHUNK;
		}
		if (got % SECTOR) {
			size_t pad = SECTOR - (size_t)got % SECTOR;

			memset(buf + got, 0, pad);
			got += (ssize_t)pad;
		}
		for (ssize_t off = 0; off < got && s < m->sectors;
		     off += SECTOR, s++)
			model_set_base(m, s, buf + off);
	}
	free(buf);
	close(fd);
	return s < m->sectors ? -1 : 0;
}

/* model_load, saying why it failed: 0 or -1. */
static int load_model(struct model *m, const char *path)
{
	char msg[512];

	if (model_load(m, path, msg, sizeof(msg))) {
		err_line("%s", msg);
		return -1;
	}
	return 0;
}

static int setup_model(struct job *j)
{
	struct stat st;
	int err;

	if (!stat(j->o.model_path, &st)) {
		if (j->o.init_given) {
			err_line("model %s exists: remove it or drop --model-init",
				 j->o.model_path);
			return -1;
		}
		if (load_model(&j->m, j->o.model_path))
			return -1;
		j->have_model = true;
		if (j->m.sectors != j->capacity) {
			err_line("model %s covers %" PRIu64 " sectors but the "
				 "disk has %" PRIu64, j->o.model_path,
				 j->m.sectors, j->capacity);
			return -1;
		}
		return 0;
	}
	if (errno != ENOENT) {
		err_line("cannot stat %s: %s", j->o.model_path, strerror(errno));
		return -1;
	}
	err = model_init(&j->m, j->capacity, j->o.seed,
			 j->o.init == INIT_ZERO ? MODEL_BASE_ZERO :
			 MODEL_BASE_HASHED);
	if (err) {
		err_line("cannot make a model of %" PRIu64 " sectors: %s",
			 j->capacity, strerror(-err));
		return -1;
	}
	j->have_model = true;
	if (j->o.init == INIT_FILE)
		return hash_file(&j->m, j->o.init_file);
	return 0;
}

/* ---- run ----------------------------------------------------------------- */

static void print_summary(struct job *j)
{
	double secs = (double)(j->end_ns - j->start_ns) / 1e9;
	uint64_t bytes = j->bytes_rd + j->bytes_wr;
	double iops = secs > 0 ? (double)j->done / secs : 0;
	double mibps = secs > 0 ? (double)bytes / secs / (1 << 20) : 0;
	double lat_us = j->done ? (double)j->lat_sum_ns / (double)j->done / 1e3 : 0;
	double cpu_op = j->done ? (double)(j->cpu_end_us - j->cpu_start_us) /
				  (double)j->done : 0;

	if (j->o.quiet)
		return;
	if (j->o.json) {
		printf("{\"ops\": %" PRIu64 ", \"reads\": %" PRIu64
		       ", \"writes\": %" PRIu64 ", \"flushes\": %" PRIu64
		       ", \"errors\": %" PRIu64 ", \"bytes_read\": %" PRIu64
		       ", \"bytes_written\": %" PRIu64 ", \"iops\": %.1f"
		       ", \"mibps\": %.2f, \"elapsed_s\": %.3f"
		       ", \"lat_avg_us\": %.1f, \"lat_max_us\": %.1f"
		       ", \"bad_responses\": %" PRIu64 ", \"bad_status\": %" PRIu64
		       ", \"verify_failures\": %" PRIu64 ", \"kicks\": %" PRIu64
		       ", \"waits\": %" PRIu64 ", \"rig_cpu_us_per_op\": %.2f}\n",
		       j->done, j->reads, j->writes, j->flushes, j->errors,
		       j->bytes_rd, j->bytes_wr, iops, mibps, secs, lat_us,
		       (double)j->lat_max_ns / 1e3, j->rig.stats.bad_responses,
		       j->rig.stats.bad_status, j->verify_bad,
		       j->rig.stats.kicks, j->rig.stats.waits, cpu_op);
	} else {
		printf("ops=%" PRIu64 " reads=%" PRIu64 " writes=%" PRIu64
		       " flushes=%" PRIu64 " errors=%" PRIu64 " bytes=%" PRIu64
		       " iops=%.0f MiB/s=%.1f elapsed=%.3fs lat_avg=%.0fus"
		       " bad_responses=%" PRIu64 "\n",
		       j->done, j->reads, j->writes, j->flushes, j->errors,
		       bytes, iops, mibps, secs, lat_us,
		       j->rig.stats.bad_responses);
	}
	fflush(stdout);
}

static int parse_rw(const char *s, struct opts *o)
{
	static const struct {
		const char *name;
		enum rw_mode mode;
		int pct;
	} modes[] = {
		{ "read", RW_READ, -1 }, { "write", RW_WRITE, -1 },
		{ "randread", RW_RANDREAD, -1 },
		{ "randwrite", RW_RANDWRITE, -1 },
		{ "randrw", RW_RANDRW, -1 }, { "rw70", RW_RANDRW, 70 },
	};

	for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
		if (!strcmp(s, modes[i].name)) {
			o->mode = modes[i].mode;
			if (modes[i].pct >= 0)
				o->read_pct = (unsigned)modes[i].pct;
			return 0;
		}
	}
	return bad_usage("unknown --rw mode '%s'", s);
}

enum {
	OPT_BS = 256, OPT_ALIGN, OPT_RW, OPT_READ_PCT, OPT_OPS, OPT_SECONDS,
	OPT_OFFSET, OPT_RANGE, OPT_FLUSH_EVERY, OPT_FUA_PCT, OPT_SEED,
	OPT_TIMEOUT, OPT_MODEL, OPT_MODEL_INIT, OPT_ALLOW, OPT_EXPECT,
	OPT_STOP, OPT_JSON, OPT_QUIET, OPT_IMAGE, OPT_BASE, OPT_OUT,
};

static const struct option long_opts[] = {
	{ "bs", required_argument, NULL, OPT_BS },
	{ "align", required_argument, NULL, OPT_ALIGN },
	{ "rw", required_argument, NULL, OPT_RW },
	{ "read-pct", required_argument, NULL, OPT_READ_PCT },
	{ "ops", required_argument, NULL, OPT_OPS },
	{ "seconds", required_argument, NULL, OPT_SECONDS },
	{ "offset", required_argument, NULL, OPT_OFFSET },
	{ "range", required_argument, NULL, OPT_RANGE },
	{ "flush-every", required_argument, NULL, OPT_FLUSH_EVERY },
	{ "fua-pct", required_argument, NULL, OPT_FUA_PCT },
	{ "seed", required_argument, NULL, OPT_SEED },
	{ "timeout", required_argument, NULL, OPT_TIMEOUT },
	{ "model", required_argument, NULL, OPT_MODEL },
	{ "model-init", required_argument, NULL, OPT_MODEL_INIT },
	{ "allow-errors", no_argument, NULL, OPT_ALLOW },
	{ "expect-errors", no_argument, NULL, OPT_EXPECT },
	{ "stop-on-signal", no_argument, NULL, OPT_STOP },
	{ "json", no_argument, NULL, OPT_JSON },
	{ "quiet", no_argument, NULL, OPT_QUIET },
	{ "image", required_argument, NULL, OPT_IMAGE },
	{ "base", required_argument, NULL, OPT_BASE },
	{ "out", required_argument, NULL, OPT_OUT },
	{ "help", no_argument, NULL, 'h' },
	{ NULL, 0, NULL, 0 },
};

static int parse_bs(const char *arg, struct opts *o)
{
	char buf[64];
	char *dash;

	if (strlen(arg) >= sizeof(buf))
		return bad_usage("invalid --bs '%s'", arg);
	strcpy(buf, arg);
	dash = strchr(buf, '-');
	if (dash)
		*dash = '\0';
	if (!parse_size(buf, &o->bs_min) ||
	    !parse_size(dash ? dash + 1 : buf, &o->bs_max))
		return bad_usage("invalid --bs '%s'", arg);
	if (!o->bs_min || o->bs_min % SECTOR || o->bs_max % SECTOR ||
	    o->bs_max < o->bs_min)
		return bad_usage("--bs '%s': sizes must be multiples of 512, "
				 "MIN <= MAX", arg);
	return 0;
}

static int parse_pct(const char *arg, unsigned *pct, const char *what)
{
	uint64_t v;

	if (!parse_u64(arg, &v) || v > 100)
		return bad_usage("invalid %s '%s' (0 to 100)", what, arg);
	*pct = (unsigned)v;
	return 0;
}

static int parse_common(int argc, char **argv, struct opts *o, bool run)
{
	uint64_t v;
	int opt, rc = 0;

	o->minor = -1;
	optind = 1;
	while ((opt = getopt_long(argc, argv, ":p:m:a:RDt:d:s:h", long_opts,
				  NULL)) != -1) {
		switch (opt) {
		case 'p':
		case 'm':
			rc = opt_target(opt, optarg, &o->pid, &o->minor);
			break;
		case 'a':
			o->params = optarg;
			break;
		case 'R':
			o->open_flags |= TD_OPEN_RDONLY;
			break;
		case 'D':
			o->open_flags |= TD_OPEN_NO_O_DIRECT;
			break;
		case 't':
			rc = opt_num(optarg, "timeout", 0, UINT32_MAX, &v);
			o->td_timeout = (uint32_t)v;
			break;
		case 'd':
			if (!parse_u64(optarg, &v) || !v ||
			    v > BLKTAP_RING_MAX_SLOTS)
				return bad_usage("invalid depth '%s' (1 to %u)",
						 optarg, BLKTAP_RING_MAX_SLOTS);
			o->depth = (uint32_t)v;
			break;
		case 's':
			if (!parse_u64(optarg, &v) || !v || v % 4 ||
			    v > BLKTAP_RING_MAX_SLOT_BYTES >> 10)
				return bad_usage("invalid slot size '%s' KiB "
						 "(a multiple of 4 up to %u)",
						 optarg,
						 BLKTAP_RING_MAX_SLOT_BYTES >> 10);
			o->slot_bytes = (uint32_t)(v << 10);
			break;
		case OPT_BS:
			rc = parse_bs(optarg, o);
			break;
		case OPT_ALIGN:
			if (!parse_size(optarg, &o->align) || !o->align ||
			    o->align % SECTOR)
				return bad_usage("invalid --align '%s'", optarg);
			break;
		case OPT_RW:
			rc = parse_rw(optarg, o);
			break;
		case OPT_READ_PCT:
			rc = parse_pct(optarg, &o->read_pct, "--read-pct");
			break;
		case OPT_OPS:
			rc = opt_num(optarg, "--ops", 1, UINT64_MAX, &o->ops);
			break;
		case OPT_SECONDS:
			rc = opt_num(optarg, "--seconds", 1, UINT64_MAX,
				     &o->seconds);
			break;
		case OPT_OFFSET:
			rc = opt_num(optarg, "--offset", 0, UINT64_MAX,
				     &o->offset);
			break;
		case OPT_RANGE:
			rc = opt_num(optarg, "--range", 1, UINT64_MAX,
				     &o->range);
			break;
		case OPT_FLUSH_EVERY:
			rc = opt_num(optarg, "--flush-every", 0, UINT64_MAX,
				     &o->flush_every);
			break;
		case OPT_FUA_PCT:
			rc = parse_pct(optarg, &o->fua_pct, "--fua-pct");
			break;
		case OPT_SEED:
			rc = opt_num(optarg, "--seed", 0, UINT64_MAX, &o->seed);
			break;
		case OPT_TIMEOUT:
			rc = opt_num(optarg, "--timeout", 1, UINT64_MAX,
				     &o->io_timeout_s);
			break;
		case OPT_MODEL:
			o->model_path = optarg;
			break;
		case OPT_MODEL_INIT:
			o->init_given = true;
			if (!strcmp(optarg, "zero")) {
				o->init = INIT_ZERO;
			} else if (!strcmp(optarg, "read")) {
				o->init = INIT_READ;
			} else if (!strncmp(optarg, "file:", 5) && optarg[5]) {
				o->init = INIT_FILE;
				o->init_file = optarg + 5;
			} else {
				return bad_usage("invalid --model-init '%s' "
						 "(zero, read or file:PATH)",
						 optarg);
			}
			break;
		case OPT_ALLOW:
			o->allow_errors = true;
			break;
		case OPT_EXPECT:
			o->expect_errors = true;
			break;
		case OPT_STOP:
			o->stop_on_signal = true;
			break;
		case OPT_JSON:
			o->json = true;
			break;
		case OPT_QUIET:
			o->quiet = true;
			break;
		default:
			rc = opt_other(opt, argv);
			break;
		}
		if (rc)
			return rc;
	}
	rc = no_operands(argc, argv);
	if (rc)
		return rc;
	if (!o->pid)
		return bad_usage("missing -p PID");
	if (o->minor < 0)
		return bad_usage("missing -m MINOR");
	if (!run)
		return 0;
	if (o->bs_max > o->slot_bytes)
		return bad_usage("--bs %" PRIu64 " is larger than the slot "
				 "(%u KiB, see -s)", o->bs_max,
				 o->slot_bytes >> 10);
	if (o->init_given && !o->model_path)
		return bad_usage("--model-init needs --model");
	if (o->seconds && o->ops)
		return bad_usage("give --ops or --seconds, not both");
	return 0;
}

static uint32_t pow2_at_least(uint32_t n)
{
	uint32_t p = 1;

	while (p < n)
		p <<= 1;
	return p;
}

static void on_signal(int sig)
{
	(void)sig;
	got_signal = 1;
}

static void catch_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	/* No SA_RESTART: poll() must return so the loop notices. */
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

/* Attach (and open); fill j->capacity and the derived geometry. */
static int start_rig(struct job *j, uint32_t nr_slots)
{
	struct rig *r = &j->rig;
	int err;

	err = rig_create(r, nr_slots, j->o.slot_bytes);
	if (err) {
		err_line("%s", r->errmsg);
		return -1;
	}
	r->stop = &got_signal;
	err = rig_attach(r, j->o.pid, j->o.minor);
	if (!err && j->o.params)
		err = rig_open(r, j->o.params, j->o.open_flags,
			       j->o.td_timeout);
	if (!err)
		err = rig_wait_open(r, OPEN_WAIT_MS);
	if (err) {
		err_line("%s", r->errmsg);
		if (r->attached && !r->dead) {
			if (j->o.params && err != -ESRCH &&
			    r->hdr->capacity)
				rig_close(r);
			rig_detach(r);
		}
		return -1;
	}
	j->capacity = r->hdr->capacity;
	j->gran = r->hdr->sector_size / SECTOR;
	return 0;
}

/* Close what we opened and detach; quietly, unless it fails. */
static int stop_rig(struct job *j)
{
	struct rig *r = &j->rig;
	int rc = 0;

	if (j->dead || r->failed || !r->attached)
		return 0;
	if (j->o.params && rig_close(r)) {
		err_line("%s", r->errmsg);
		return -1;
	}
	/*
	 * Without -a the image is someone else's, and the ring can only be
	 * detached once they closed it (tap-ctl detach does it then).
	 */
	if (!j->o.params &&
	    __atomic_load_n(&r->hdr->capacity, __ATOMIC_ACQUIRE))
		return 0;
	if (rig_detach(r)) {
		err_line("%s", r->errmsg);
		rc = -1;
	}
	return rc;
}

static int geometry(struct job *j)
{
	struct opts *o = &j->o;
	uint64_t align = o->align;

	if (o->offset >= j->capacity)
		return bad_usage("--offset %" PRIu64 " is past the disk's %"
				 PRIu64 " sectors", o->offset, j->capacity);
	j->lo = o->offset;
	j->hi = o->range ? o->offset + o->range : j->capacity;
	if (j->hi > j->capacity || j->hi < j->lo)
		return bad_usage("--offset/--range go past the disk's %" PRIu64
				 " sectors", j->capacity);
	if (!align)
		align = o->bs_min == o->bs_max ? o->bs_min : SECTOR;
	j->min_secs = (uint32_t)(o->bs_min / SECTOR);
	j->max_secs = (uint32_t)(o->bs_max / SECTOR);
	j->align_secs = (uint32_t)(align / SECTOR);
	if (j->min_secs % j->gran || j->max_secs % j->gran ||
	    j->align_secs % j->gran || j->lo % j->gran || j->hi % j->gran)
		return bad_usage("the disk has %u-byte sectors: sizes, offsets "
				 "and alignment must be multiples",
				 j->gran * SECTOR);
	if (j->hi - j->lo < j->min_secs)
		return bad_usage("the range (%" PRIu64 " sectors) is smaller "
				 "than a request", j->hi - j->lo);
	if ((j->rig.hdr->features & BLKTAP_FEAT_READONLY) &&
	    o->mode != RW_READ && o->mode != RW_RANDREAD)
		return bad_usage("the disk is read-only; use a read workload");
	j->seq_next = j->lo;
	return 0;
}

static int cmd_run(int argc, char **argv)
{
	static struct job job;
	struct job *j = &job;
	char msg[512];
	int rc, status = 0;
	bool has_writes;

	j->o.depth = 32;
	j->o.slot_bytes = BLKTAP_RING_DEF_SLOT_BYTES;
	j->o.bs_min = j->o.bs_max = 4096;
	j->o.mode = RW_RANDRW;
	j->o.read_pct = 50;
	j->o.seed = 1;
	j->o.io_timeout_s = 60;
	rc = parse_common(argc, argv, &j->o, true);
	if (rc)
		return rc;
	if (!j->o.ops && !j->o.seconds && !j->o.stop_on_signal)
		j->o.ops = 1000;
	j->rng = j->o.seed * 0x9e3779b97f4a7c15ull + 0x632be59bd9b4e019ull;
	catch_signals();

	if (start_rig(j, pow2_at_least(j->o.depth)))
		return EXIT_FAIL;
	rc = geometry(j);
	if (rc) {
		stop_rig(j);
		rig_destroy(&j->rig);
		return rc;
	}
	has_writes = j->o.mode != RW_READ && j->o.mode != RW_RANDREAD;
	if (!j->o.model_path && has_writes) {
		/* Unchecked writes carry a non-zero pattern, set once. */
		for (uint32_t s = 0; s < j->rig.nr_slots; s++)
			memset(rig_slot_data(&j->rig, s), 0xa5 ^ (int)s,
			       j->rig.slot_bytes);
	}

	if (j->o.model_path) {
		if (setup_model(j)) {
			stop_rig(j);
			status = EXIT_FAIL;
			goto out;
		}
		if (j->o.init == INIT_READ && j->o.init_given &&
		    read_pass(j, next_whole, init_done))
			goto ended;
		if (model_count_pending(&j->m) &&
		    read_pass(j, next_pending, resolve_done))
			goto ended;
	}
	workload(j);
ended:
	if (j->have_model) {
		if (model_save(&j->m, j->o.model_path, msg, sizeof(msg))) {
			err_line("%s", msg);
			status = EXIT_FAIL;
		}
	}
	print_summary(j);
	if (j->rig.stats.bad_responses || j->rig.stats.bad_status) {
		err_line("tapdisk sent %" PRIu64 " responses with a bad id and %"
			 PRIu64 " with a bad status", j->rig.stats.bad_responses,
			 j->rig.stats.bad_status);
		status = EXIT_FAIL;
	}
	if (j->dead) {
		err_line("tapdisk %d exited with %u requests in flight",
			 (int)j->o.pid, j->rig.inflight);
		status = EXIT_DEAD;
		goto out;
	}
	if (j->verify_bad) {
		err_line("verification failed: %" PRIu64 " bad sectors; first: %s",
			 j->verify_bad, j->first_bad);
		status = EXIT_FAIL;
	} else if (j->failed && j->first_error[0]) {
		err_line("%s", j->first_error);
		status = EXIT_FAIL;
	}
	if (j->o.expect_errors && !j->errors) {
		err_line("expected I/O errors, but all %" PRIu64
			 " requests succeeded", j->done);
		status = EXIT_FAIL;
	}
	if (j->interrupted && !j->o.stop_on_signal) {
		err_line("interrupted by a signal");
		status = EXIT_FAIL;
	}
	/* Requests without an answer would leave tapdisk writing our slots. */
	if (!j->rig.inflight && stop_rig(j) && !status)
		status = EXIT_FAIL;
out:
	rig_destroy(&j->rig);
	if (j->have_model)
		model_free(&j->m);
	return status;
}

/* ---- bad: malformed requests ------------------------------------------- */

struct bad_case {
	const char	*name;
	uint8_t		op;
	uint8_t		flags;
	int		sector_kind;	/* 0: @sector, 1: capacity + @sector */
	int64_t		sector;
	int		secs_kind;	/* 0: @secs, 1: slot sectors + @secs */
	uint32_t	secs;
};

static int get_stats(struct rig *r, struct td_ctl_stats *st)
{
	static struct td_ctl_msg req, rep;
	int err;

	memset(&req, 0, sizeof(req));
	req.type = TD_CTL_STATS;
	err = rig_call(r, &req, &rep, 10000);
	if (err) {
		err_line("stats: %s", r->errmsg);
		return err;
	}
	*st = rep.body.stats;
	return 0;
}

static void status_done(void *arg, struct rig *r, uint32_t slot, int status)
{
	(void)r;
	(void)slot;
	*(int *)arg = status;
}

static int one_request(struct job *j, uint8_t op, uint8_t flags,
		       uint64_t sector, uint32_t secs, int *status)
{
	struct rig *r = &j->rig;
	uint64_t end = rig_now_ns() + 10000ull * 1000000ull;

	*status = 1;
	rig_queue(r, (uint32_t)rig_get(r), op, flags, sector, secs, 0);
	rig_push(r);
	while (r->inflight) {
		int n = rig_reap(r, status_done, status);

		if (n < 0)
			return n;
		if (!r->inflight)
			break;
		if (rig_now_ns() > end)
			return -ETIMEDOUT;
		n = rig_wait(r, 200);
		if (n == -ESRCH)
			return n;
	}
	return 0;
}

static int cmd_bad(int argc, char **argv)
{
	static const struct bad_case cases[] = {
		{ "read starting at the end", BLKTAP_OP_READ, 0, 1, 0, 0, 8 },
		{ "read across the end", BLKTAP_OP_READ, 0, 1, -4, 0, 8 },
		{ "write across the end", BLKTAP_OP_WRITE, 0, 1, -1, 0, 2 },
		{ "sector + count wraps around", BLKTAP_OP_READ, 0, 0, -4, 0, 8 },
		{ "read larger than the slot", BLKTAP_OP_READ, 0, 0, 0, 1, 8 },
		{ "write larger than the slot", BLKTAP_OP_WRITE, 0, 0, 0, 1, 1 },
		{ "unknown op", 0x7f, 0, 0, 0, 0, 8 },
		{ "op just past the last", BLKTAP_OP_MAX + 1, 0, 0, 0, 0, 8 },
		{ "read of 0 sectors", BLKTAP_OP_READ, 0, 0, 0, 0, 0 },
		{ "write of 0 sectors", BLKTAP_OP_WRITE, 0, 0, 0, 0, 0 },
		{ "unknown flag", BLKTAP_OP_WRITE, 0x80, 0, 0, 0, 8 },
		{ "FUA on a read", BLKTAP_OP_READ, BLKTAP_REQ_FUA, 0, 0, 0, 8 },
		{ "flush with sectors", BLKTAP_OP_FLUSH, 0, 0, 0, 0, 8 },
	};
	static struct job job;
	struct job *j = &job;
	struct td_ctl_stats before, after;
	struct blktap_ring_request raw;
	int rc, status, failures = 0;

	j->o.slot_bytes = BLKTAP_RING_DEF_SLOT_BYTES;
	rc = parse_common(argc, argv, &j->o, false);
	if (rc)
		return rc;
	catch_signals();
	if (start_rig(j, 4))
		return EXIT_FAIL;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct bad_case *c = &cases[i];
		uint64_t sec = (uint64_t)c->sector;
		uint32_t secs = c->secs;

		if (c->sector_kind == 1)
			sec = j->capacity + (uint64_t)c->sector;
		if (c->secs_kind == 1)
			secs += j->rig.slot_bytes / SECTOR;
		if (get_stats(&j->rig, &before))
			goto fail;
		rc = one_request(j, c->op, c->flags, sec, secs, &status);
		if (rc) {
			err_line("%s: %s", c->name, rc == -ESRCH ?
				 "tapdisk died" : "no answer within 10 s");
			goto fail;
		}
		if (get_stats(&j->rig, &after))
			goto fail;
		printf("%-30s status %d (%s), reqs_bad +%" PRIu64 "\n", c->name,
		       status, status < 0 ? strerror(-status) : "success",
		       after.reqs_bad - before.reqs_bad);
		if (status >= 0 || after.reqs_bad != before.reqs_bad + 1) {
			err_line("%s: expected an error and reqs_bad + 1, got "
				 "status %d and reqs_bad + %" PRIu64, c->name,
				 status, after.reqs_bad - before.reqs_bad);
			failures++;
		}
	}

	/* An id naming no slot cannot be answered: dropped and counted. */
	if (get_stats(&j->rig, &before))
		goto fail;
	memset(&raw, 0, sizeof(raw));
	raw.id = BLKTAP_MAKE_ID(1, j->rig.nr_slots + 3);
	raw.op = BLKTAP_OP_READ;
	raw.nr_sectors = 8;
	raw.domid = BLKTAP_DOMID_NONE;
	rig_queue_raw(&j->rig, &raw);
	rig_push(&j->rig);
	for (int tries = 0; tries < 50; tries++) {
		if (get_stats(&j->rig, &after))
			goto fail;
		if (after.reqs_bad != before.reqs_bad)
			break;
		usleep(20000);
	}
	printf("%-30s no answer, reqs_bad +%" PRIu64 "\n", "id naming no slot",
	       after.reqs_bad - before.reqs_bad);
	if (after.reqs_bad != before.reqs_bad + 1) {
		err_line("a request with a bad id was not counted in reqs_bad");
		failures++;
	}

	/* Still serving: a good request works. */
	rc = one_request(j, BLKTAP_OP_READ, 0, 0, j->gran * 8, &status);
	if (rc || status) {
		err_line("a valid read after the malformed ones failed: %s",
			 rc ? (rc == -ESRCH ? "tapdisk died" : "no answer") :
			 strerror(-status));
		goto fail;
	}
	if (j->rig.stats.bad_responses) {
		err_line("tapdisk sent %" PRIu64 " responses with bad ids",
			 j->rig.stats.bad_responses);
		failures++;
	}
	printf("%-30s status 0\n", "valid read afterwards");
	if (stop_rig(j))
		failures++;
	rig_destroy(&j->rig);
	return failures ? EXIT_FAIL : 0;
fail:
	if (!rig_tapdisk_dead(&j->rig))
		stop_rig(j);
	rig_destroy(&j->rig);
	return EXIT_FAIL;
}

/* ---- fault ---------------------------------------------------------------- */

static int parse_errno(const char *s, int *err)
{
	static const struct {
		const char *name;
		int err;
	} names[] = {
		{ "EAGAIN", EAGAIN }, { "EBUSY", EBUSY }, { "EINTR", EINTR },
		{ "EIO", EIO }, { "ENOSPC", ENOSPC }, { "EROFS", EROFS },
		{ "EINVAL", EINVAL }, { "ENOMEM", ENOMEM }, { "EPERM", EPERM },
		{ "ENXIO", ENXIO }, { "EDQUOT", EDQUOT }, { "ETIMEDOUT", ETIMEDOUT },
	};
	uint64_t v;

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (!strcasecmp(s, names[i].name)) {
			*err = names[i].err;
			return 0;
		}
	}
	if (!parse_u64(s, &v) || !v || v > 4095)
		return -1;
	*err = (int)v;
	return 0;
}

static int cmd_fault(int argc, char **argv)
{
	static struct td_ctl_msg req, rep;
	bool have_c = false, have_e = false;
	uint32_t ops = TD_FAULT_READ | TD_FAULT_WRITE | TD_FAULT_FLUSH;
	pid_t pid = 0;
	int minor = -1, e = 0, opt, rc;
	uint64_t count = 0;

	optind = 1;
	while ((opt = getopt(argc, argv, ":p:m:c:e:o:h")) != -1) {
		switch (opt) {
		case 'p':
		case 'm':
			rc = opt_target(opt, optarg, &pid, &minor);
			if (rc)
				return rc;
			break;
		case 'c':
			rc = opt_num(optarg, "count", 0, UINT32_MAX, &count);
			if (rc)
				return rc;
			have_c = true;
			break;
		case 'e':
			if (parse_errno(optarg, &e))
				return bad_usage("invalid errno '%s' (a name "
						 "like EIO or 1..4095)", optarg);
			have_e = true;
			break;
		case 'o': {
			char buf[64], *tok, *save;

			if (strlen(optarg) >= sizeof(buf))
				return bad_usage("invalid -o '%s'", optarg);
			strcpy(buf, optarg);
			ops = 0;
			for (tok = strtok_r(buf, ",", &save); tok;
			     tok = strtok_r(NULL, ",", &save)) {
				if (!strcmp(tok, "read"))
					ops |= TD_FAULT_READ;
				else if (!strcmp(tok, "write"))
					ops |= TD_FAULT_WRITE;
				else if (!strcmp(tok, "flush"))
					ops |= TD_FAULT_FLUSH;
				else
					return bad_usage("unknown I/O kind '%s' "
							 "(read, write, flush)",
							 tok);
			}
			if (!ops)
				return bad_usage("-o names no I/O kind");
			break;
		}
		case 'h':
			usage(stdout);
			return 0;
		case ':':
			return bad_usage("option -%c needs an argument", optopt);
		default:
			return bad_usage("unknown option -%c", optopt);
		}
	}
	rc = no_operands(argc, argv);
	if (rc)
		return rc;
	if (!pid || minor < 0 || !have_c)
		return bad_usage("fault needs -p PID, -m MINOR and -c COUNT");
	if (!have_e) {
		if (count)
			return bad_usage("fault needs -e ERRNO");
		e = EIO;	/* clearing: any valid errno */
	}
	memset(&req, 0, sizeof(req));
	req.type = TD_CTL_FAULT;
	req.minor = minor;
	req.body.fault.count = (uint32_t)count;
	req.body.fault.err = e;
	req.body.fault.ops = ops;
	rc = tdc_request(pid, &req, &rep);
	if (rc) {
		err_line("fault: %s", tdc_errmsg());
		return EXIT_FAIL;
	}
	return 0;
}

/* ---- verify / expect ------------------------------------------------------ */

/* Sectors from @s in one chunk of the model's disk: CHUNK, or the rest. */
static uint32_t chunk_secs(const struct model *m, uint64_t s)
{
	uint64_t left = m->sectors - s;

	return left < CHUNK / SECTOR ? (uint32_t)left : CHUNK / SECTOR;
}

/* Read up to @len bytes at @off; zeros past the end of the file. */
static int read_at(int fd, void *buf, size_t len, uint64_t off,
		   const char *path)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(fd, (char *)buf + done, len - done,
				  (off_t)(off + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			err_line("cannot read %s: %s", path, strerror(errno));
			return -1;
		}
		if (n == 0) {
			memset((char *)buf + done, 0, len - done);
			break;
		}
		done += (size_t)n;
	}
	return 0;
}

static int open_sized(const char *path, uint64_t want, bool exact)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		err_line("cannot open %s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st)) {
		err_line("cannot stat %s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	if (exact && (uint64_t)st.st_size != want) {
		err_line("%s holds %lld bytes, the model covers %" PRIu64,
			 path, (long long)st.st_size, want);
		close(fd);
		return -1;
	}
	return fd;
}

/* verify's and expect's files: their names from the options, then opened. */
struct files {
	const char	*model;
	const char	*image;		/* verify's RAW */
	const char	*base;
	const char	*out;		/* expect's RAW */
	struct model	m;
	int		fd;		/* verify's image, or -1 */
	int		bfd;		/* the base, or -1 */
};

static void close_files(struct files *f)
{
	if (f->fd >= 0)
		close(f->fd);
	if (f->bfd >= 0)
		close(f->bfd);
	model_free(&f->m);
}

/*
 * The options of verify or expect (argv[0]: the command), then the model,
 * verify's image and the base: 0, EXIT_USAGE, or EXIT_FAIL (a file cannot
 * be used; said why).
 */
static int open_files(int argc, char **argv, struct files *f)
{
	bool verify = !strcmp(argv[0], "verify");
	int opt, rc;

	optind = 1;
	while ((opt = getopt_long(argc, argv, ":h", long_opts, NULL)) != -1) {
		switch (opt) {
		case OPT_MODEL:
			f->model = optarg;
			break;
		case OPT_IMAGE:
			f->image = optarg;
			break;
		case OPT_BASE:
			f->base = optarg;
			break;
		case OPT_OUT:
			f->out = optarg;
			break;
		default:
			return opt_other(opt, argv);
		}
	}
	rc = no_operands(argc, argv);
	if (rc)
		return rc;
	if (!f->model)
		return bad_usage("missing --model FILE");
	if (verify && !f->image)
		return bad_usage("verify needs --image RAW");
	if (!verify && !f->out)
		return bad_usage("expect needs --out RAW");
	if (load_model(&f->m, f->model))
		return EXIT_FAIL;
	if (verify) {
		f->fd = open_sized(f->image, f->m.sectors * SECTOR, true);
		if (f->fd < 0)
			goto fail;
	}
	if (f->base) {
		f->bfd = open_sized(f->base, 0, false);
		if (f->bfd < 0)
			goto fail;
	}
	return 0;
fail:
	close_files(f);
	return EXIT_FAIL;
}

static int cmd_verify(int argc, char **argv)
{
	struct files f = { .fd = -1, .bfd = -1 };
	struct model *m = &f.m;
	struct model_bad bad, first;
	uint8_t *buf = NULL, *bbuf = NULL;
	uint64_t nbad = 0, unknown = 0, either = 0, k;
	int rc;

	rc = open_files(argc, argv, &f);
	if (rc)
		return rc;
	rc = EXIT_FAIL;
	buf = malloc(CHUNK);
	bbuf = malloc(CHUNK);
	if (!buf || !bbuf) {
		err_line("out of memory");
		goto out;
	}
	for (uint64_t s = 0; s < m->sectors;) {
		uint32_t n = chunk_secs(m, s);

		if (read_at(f.fd, buf, (size_t)n * SECTOR, s * SECTOR, f.image))
			goto out;
		if (f.bfd >= 0 && read_at(f.bfd, bbuf, (size_t)n * SECTOR,
					  s * SECTOR, f.base))
			goto out;
		k = model_check(m, s, n, buf, f.bfd >= 0 ? bbuf : NULL, false,
				&bad);
		if (k && !nbad)
			first = bad;
		nbad += k;
		s += n;
	}
	for (uint64_t s = 0; s < m->sectors; s++) {
		if (m->rec[s].acked & MODEL_UNKNOWN)
			unknown++;
		else if (m->rec[s].pending)
			either++;
	}
	if (nbad) {
		err_line("%s does not match the model in %" PRIu64
			 " sectors; first: %s", f.image, nbad, first.what);
		goto out;
	}
	printf("%s matches the model: %" PRIu64 " sectors (%" PRIu64
	       " either of two versions, %" PRIu64 " unknown)\n", f.image,
	       m->sectors, either, unknown);
	rc = 0;
out:
	free(buf);
	free(bbuf);
	close_files(&f);
	return rc;
}

static int cmd_expect(int argc, char **argv)
{
	struct files f = { .fd = -1, .bfd = -1 };
	struct model *m = &f.m;
	uint8_t *buf = NULL;
	int out = -1, rc;

	rc = open_files(argc, argv, &f);
	if (rc)
		return rc;
	rc = EXIT_FAIL;
	if (m->base == MODEL_BASE_HASHED && !f.base) {
		err_line("model %s did not start from zeros: give --base RAW",
			 f.model);
		goto out;
	}
	buf = malloc(CHUNK);
	if (!buf) {
		err_line("out of memory");
		goto out;
	}
	out = open(f.out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (out < 0) {
		err_line("cannot create %s: %s", f.out, strerror(errno));
		goto out;
	}
	for (uint64_t s = 0; s < m->sectors;) {
		uint32_t n = chunk_secs(m, s);
		size_t len = (size_t)n * SECTOR;

		if (f.bfd >= 0) {
			if (read_at(f.bfd, buf, len, s * SECTOR, f.base))
				goto out;
		} else {
			memset(buf, 0, len);
		}
		for (uint32_t i = 0; i < n; i++) {
			struct model_rec *r = &m->rec[s + i];
			uint8_t *p = buf + (size_t)i * SECTOR;

			if (r->pending || (r->acked & MODEL_UNKNOWN)) {
				err_line("sector %" PRIu64 " has no single "
					 "expected content (a write failed or "
					 "was in flight at a crash); use verify",
					 s + i);
				goto out;
			}
			if (r->acked)
				model_fill(m->seed, s + i, r->acked, p);
			else if (m->base == MODEL_BASE_HASHED &&
				 model_hash(p) != m->base_hash[s + i]) {
				err_line("%s differs from the model's initial "
					 "content at sector %" PRIu64, f.base,
					 s + i);
				goto out;
			}
		}
		if (pwrite(out, buf, len, (off_t)(s * SECTOR)) != (ssize_t)len) {
			err_line("cannot write %s: %s", f.out, strerror(errno));
			goto out;
		}
		s += n;
	}
	if (close(out)) {
		out = -1;
		err_line("cannot write %s: %s", f.out, strerror(errno));
		goto out;
	}
	out = -1;
	rc = 0;
out:
	free(buf);
	if (out >= 0)
		close(out);
	close_files(&f);
	return rc;
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(int argc, char **argv);
	} cmds[] = {
		{ "run", cmd_run }, { "bad", cmd_bad }, { "fault", cmd_fault },
		{ "verify", cmd_verify }, { "expect", cmd_expect },
	};

	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") ||
	    !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (!strcmp(argv[1], cmds[i].name))
			return cmds[i].fn(argc - 1, argv + 1);
	return bad_usage("unknown command '%s'", argv[1]);
}
