// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * xen-io: the PV guest's I/O and handshake helper for tests/xen (linked
 * statically: the guest has busybox and nothing else).
 *
 *   xen-io write DEV SEED [-b N] [-w FILE]
 *       Fill the whole of DEV with the pattern of SEED, through O_DIRECT,
 *       in chunks of 512 B .. 1 MiB written in a shuffled order.  -b N:
 *       every Nth chunk goes through the page cache instead, after the
 *       direct ones, followed by fsync.  -w FILE: start a new pass while
 *       FILE exists (at least one pass).
 *   xen-io verify DEV SEED [OFFSET LEN]
 *       Read DEV (or that part of it) back through O_DIRECT in chunks of
 *       other sizes and compare every byte with the pattern.
 *   xen-io fua DEV SEED OFFSET LEN
 *       Write that part of the pattern again, O_DIRECT with RWF_DSYNC
 *       (a FUA write).
 *   xen-io flush DEV
 *       fsync DEV: a cache flush.
 *   xen-io sync NAME [SECS]
 *       Handshake with dom0 through xenstore (/dev/xen/xenbus): write
 *       NAME to data/step of this domain, then wait until dom0 writes
 *       NAME to data/ack (default 300 s).
 *   xen-io xs-read KEY | xs-write KEY VALUE
 *       One xenstore read or write (KEY relative to this domain's home).
 *   xen-io records SEED [-w FILE] DEV...
 *       A stream of checksummed 4 KiB records 0, 1, 2, ...: record i goes
 *       to DEV number i % (number of DEVs), slot i / (number of DEVs),
 *       each written with O_DIRECT and RWF_DSYNC (a FUA write), one at a
 *       time: a record is written only once the one before is
 *       acknowledged.  After each, the number acknowledged goes to
 *       data/acked in xenstore.  Stops after the first record written
 *       while FILE no longer exists (without -w: at the end of the first
 *       DEV); any I/O error ends it with status 2.
 *   xen-io records-check FILE SEED STRIDE FIRST [BYTES]
 *       FILE (a device or an image, "-" for stdin) must hold records
 *       FIRST, FIRST + STRIDE, ... of SEED's stream in its slots 0, 1, ...
 *       up to some slot, and nothing but zeros after: prints that number
 *       of records.  A record with a bad checksum, out of place, or data
 *       after the prefix is a mismatch; so is a FILE of other than BYTES
 *       bytes, when given.
 *
 * The pattern depends only on the byte offset and SEED, so any chunking
 * reads it back.  Exit status 0 on success, 1 on a data mismatch or a
 * timeout, 2 on an error.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define SECTOR		512u
#define MAX_CHUNK	(1u << 20)
#define ALIGN		4096u

/* The xenstore wire protocol (xen/include/public/io/xs_wire.h). */
enum { XS_READ = 2, XS_WRITE = 11, XS_ERROR = 16 };
struct xs_hdr {
	uint32_t type;
	uint32_t req_id;
	uint32_t tx_id;
	uint32_t len;
};

static uint64_t splitmix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* The pattern's bytes for [off, off + len), off and len multiples of 8. */
static void pattern(uint64_t seed, uint64_t off, unsigned char *buf, size_t len)
{
	uint64_t w = off / 8, k = splitmix(seed);

	for (size_t i = 0; i < len; i += 8, w++) {
		uint64_t v = splitmix(k ^ w);

		memcpy(buf + i, &v, 8);
	}
}

static uint64_t rng_state;

static uint64_t rnd(void)
{
	rng_state = splitmix(rng_state);
	return rng_state;
}

/* A chunk size: 512 B .. 1 MiB, small and large ones alike. */
static uint32_t chunk_size(void)
{
	unsigned int shift = (unsigned int)(rnd() % 12);	/* 2^0 .. 2^11 sectors */
	uint64_t n = 1 + rnd() % (1u << shift);

	return (uint32_t)(n * SECTOR);
}

static void *xalloc(size_t len)
{
	void *p;

	if (posix_memalign(&p, ALIGN, len)) {
		fprintf(stderr, "xen-io: out of memory\n");
		exit(2);
	}
	return p;
}

static int open_dev(const char *dev, int flags, uint64_t *size)
{
	int fd = open(dev, flags);
	struct stat st;

	if (fd < 0) {
		fprintf(stderr, "xen-io: %s: %s\n", dev, strerror(errno));
		exit(2);
	}
	/* A regular file too, so that dom0 and the host can check images. */
	if (!fstat(fd, &st) && S_ISREG(st.st_mode)) {
		*size = (uint64_t)st.st_size;
		return fd;
	}
	if (ioctl(fd, BLKGETSIZE64, size)) {
		fprintf(stderr, "xen-io: %s: BLKGETSIZE64: %s\n", dev, strerror(errno));
		exit(2);
	}
	return fd;
}

static void full_pwrite(int fd, const char *dev, const void *buf, size_t len,
			uint64_t off, int rwflags)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	ssize_t n = pwritev2(fd, &iov, 1, (off_t)off, rwflags);

	if (n != (ssize_t)len) {
		fprintf(stderr, "xen-io: %s: write of %zu bytes at %" PRIu64 ": %s\n",
			dev, len, off, n < 0 ? strerror(errno) : "short write");
		exit(2);
	}
}

struct chunk {
	uint64_t off;
	uint32_t len;
};

/* Cut [0, size) into chunks of mixed sizes; *n gets their number. */
static struct chunk *cut(uint64_t size, size_t *n)
{
	size_t cap = (size_t)(size / SECTOR) + 1, i = 0;
	struct chunk *c = calloc(cap, sizeof(*c));
	uint64_t off = 0;

	if (!c) {
		fprintf(stderr, "xen-io: out of memory\n");
		exit(2);
	}
	while (off < size) {
		uint64_t len = chunk_size();

		if (len > size - off)
			len = size - off;
		c[i].off = off;
		c[i].len = (uint32_t)len;
		off += len;
		i++;
	}
	*n = i;
	return c;
}

static int cmd_write(const char *dev, uint64_t seed, unsigned int every,
		     const char *while_file)
{
	uint64_t size;
	int fd = open_dev(dev, O_RDWR | O_DIRECT, &size), pass = 0;
	int bfd = every ? open(dev, O_RDWR) : -1;
	unsigned char *buf = xalloc(MAX_CHUNK);

	if (every && bfd < 0) {
		fprintf(stderr, "xen-io: %s: %s\n", dev, strerror(errno));
		return 2;
	}
	if (size % SECTOR) {
		fprintf(stderr, "xen-io: %s: size %" PRIu64 " is not whole sectors\n",
			dev, size);
		return 2;
	}
	do {
		size_t n, i, direct = 0, buffered = 0;
		struct chunk *c;

		rng_state = seed * 7919 + (uint64_t)pass;
		c = cut(size, &n);
		/* Shuffled: the image gets its blocks out of order. */
		for (i = n - 1; i > 0; i--) {
			size_t j = (size_t)(rnd() % (i + 1));
			struct chunk t = c[i];

			c[i] = c[j];
			c[j] = t;
		}
		for (i = 0; i < n; i++) {
			if (every && i % every == every - 1)
				continue;
			pattern(seed, c[i].off, buf, c[i].len);
			full_pwrite(fd, dev, buf, c[i].len, c[i].off, 0);
			direct++;
		}
		for (i = every ? every - 1 : n; i < n; i += every) {
			pattern(seed, c[i].off, buf, c[i].len);
			full_pwrite(bfd, dev, buf, c[i].len, c[i].off, 0);
			buffered++;
		}
		if (bfd >= 0 && fsync(bfd)) {
			fprintf(stderr, "xen-io: %s: fsync: %s\n", dev, strerror(errno));
			return 2;
		}
		printf("xen-io: %s: pass %d: %zu direct and %zu page-cache writes, %" PRIu64 " bytes\n",
		       dev, pass, direct, buffered, size);
		fflush(stdout);
		free(c);
		pass++;
	} while (while_file && access(while_file, F_OK) == 0);
	free(buf);
	if (bfd >= 0)
		close(bfd);
	return close(fd) ? 2 : 0;
}

static int cmd_verify(const char *dev, uint64_t seed, uint64_t off, uint64_t len)
{
	uint64_t size, end, start = off;
	int fd = open_dev(dev, O_RDONLY | O_DIRECT, &size);
	unsigned char *buf = xalloc(MAX_CHUNK), *want = xalloc(MAX_CHUNK);
	unsigned long reads = 0;

	end = len ? off + len : size;
	if (off % SECTOR || end % SECTOR || end > size || off >= end) {
		fprintf(stderr, "xen-io: verify: bad range %" PRIu64 "+%" PRIu64 "\n", off, len);
		return 2;
	}
	/* Other chunk sizes than the writes had. */
	rng_state = ~seed;
	while (off < end) {
		uint64_t cl = chunk_size();
		ssize_t n;

		if (cl > end - off)
			cl = end - off;
		n = pread(fd, buf, (size_t)cl, (off_t)off);
		if (n != (ssize_t)cl) {
			fprintf(stderr, "xen-io: %s: read of %" PRIu64 " bytes at %" PRIu64 ": %s\n",
				dev, cl, off, n < 0 ? strerror(errno) : "short read");
			return 2;
		}
		pattern(seed, off, want, (size_t)cl);
		if (memcmp(buf, want, (size_t)cl)) {
			uint64_t i = 0;

			while (buf[i] == want[i])
				i++;
			fprintf(stderr, "xen-io: %s: byte %" PRIu64 " differs from the pattern of seed %" PRIu64 "\n",
				dev, off + i, seed);
			return 1;
		}
		off += cl;
		reads++;
	}
	printf("xen-io: %s: %" PRIu64 " bytes match seed %" PRIu64 " (%lu reads)\n",
	       dev, end - start, seed, reads);
	free(buf);
	free(want);
	return close(fd) ? 2 : 0;
}

static int cmd_fua(const char *dev, uint64_t seed, uint64_t off, uint64_t len)
{
	uint64_t size;
	int fd = open_dev(dev, O_RDWR | O_DIRECT, &size);
	unsigned char *buf;

	if (!len || len > MAX_CHUNK || off % SECTOR || len % SECTOR || off + len > size) {
		fprintf(stderr, "xen-io: fua: bad range %" PRIu64 "+%" PRIu64 "\n", off, len);
		return 2;
	}
	buf = xalloc((size_t)len);
	pattern(seed, off, buf, (size_t)len);
	full_pwrite(fd, dev, buf, (size_t)len, off, RWF_DSYNC);
	free(buf);
	return close(fd) ? 2 : 0;
}

static int cmd_flush(const char *dev)
{
	int fd = open(dev, O_RDWR);

	if (fd < 0 || fsync(fd)) {
		fprintf(stderr, "xen-io: %s: fsync: %s\n", dev, strerror(errno));
		return 2;
	}
	return close(fd) ? 2 : 0;
}

/*
 * One xenstore request on /dev/xen/xenbus.  Returns the reply's payload
 * (NUL-terminated, malloc'd), or NULL with *err set to the error name.
 * With @keep, the device stays open for the next request (the record
 * writer makes one after each record).
 */
static char *xs_request_fd(uint32_t type, const char *a, const char *b, char *err,
			   size_t errlen, int keep)
{
	static uint32_t req_id;
	static int kept = -1;
	size_t la = strlen(a) + 1, lb = b ? strlen(b) : 0;
	struct xs_hdr h = { .type = type, .req_id = ++req_id, .len = (uint32_t)(la + lb) };
	char *msg = malloc(sizeof(h) + la + lb), *rep;
	int fd = kept >= 0 ? kept : open("/dev/xen/xenbus", O_RDWR);
	ssize_t n;

	kept = keep ? fd : -1;
	if (fd < 0 || !msg) {
		snprintf(err, errlen, "/dev/xen/xenbus: %s", strerror(errno));
		free(msg);
		if (fd >= 0)
			close(fd);
		kept = -1;
		return NULL;
	}
	memcpy(msg, &h, sizeof(h));
	memcpy(msg + sizeof(h), a, la);
	if (lb)
		memcpy(msg + sizeof(h) + la, b, lb);
	/* The device takes the whole message in one write. */
	n = write(fd, msg, sizeof(h) + la + lb);
	free(msg);
	if (n != (ssize_t)(sizeof(h) + la + lb) ||
	    read(fd, &h, sizeof(h)) != (ssize_t)sizeof(h)) {
		snprintf(err, errlen, "xenbus: %s", strerror(errno));
		close(fd);
		kept = -1;
		return NULL;
	}
	rep = calloc(1, (size_t)h.len + 1);
	if (!rep || (h.len && read(fd, rep, h.len) != (ssize_t)h.len)) {
		snprintf(err, errlen, "xenbus reply: %s", strerror(errno));
		free(rep);
		close(fd);
		kept = -1;
		return NULL;
	}
	if (!keep)
		close(fd);
	if (h.type == XS_ERROR) {
		snprintf(err, errlen, "%s", rep);
		free(rep);
		return NULL;
	}
	return rep;
}

static char *xs_request(uint32_t type, const char *a, const char *b, char *err,
			size_t errlen)
{
	return xs_request_fd(type, a, b, err, errlen, 0);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmd_sync(const char *name, double secs)
{
	char err[128], *v;
	double end = now() + secs;

	v = xs_request(XS_WRITE, "data/step", name, err, sizeof(err));
	if (!v) {
		fprintf(stderr, "xen-io: xenstore write data/step: %s\n", err);
		return 2;
	}
	free(v);
	for (;;) {
		v = xs_request(XS_READ, "data/ack", NULL, err, sizeof(err));
		if (v && !strcmp(v, name)) {
			free(v);
			return 0;
		}
		free(v);
		if (now() > end) {
			fprintf(stderr, "xen-io: no ack for step %s from dom0 in %.0f s\n",
				name, secs);
			return 1;
		}
		usleep(50000);
	}
}

/* ---- the record stream (records, records-check) ---- */

#define REC_SIZE	4096u
#define REC_MAGIC	"XMSNAPR1"
#define REC_SUM_WORD	3	/* magic, seq, seed, sum, then the payload */

static uint64_t rec_sum(const unsigned char *rec)
{
	uint64_t h = 0x243f6a8885a308d3ull, w;

	for (unsigned int i = 0; i < REC_SIZE / 8; i++) {
		if (i == REC_SUM_WORD)
			continue;
		memcpy(&w, rec + 8 * i, 8);
		h = splitmix(h ^ w);
	}
	return h;
}

static void rec_make(unsigned char *rec, uint64_t seed, uint64_t seq)
{
	uint64_t sum;

	memcpy(rec, REC_MAGIC, 8);
	memcpy(rec + 8, &seq, 8);
	memcpy(rec + 16, &seed, 8);
	pattern(seed * 31 + seq, 0, rec + 32, REC_SIZE - 32);
	sum = rec_sum(rec);
	memcpy(rec + 8 * REC_SUM_WORD, &sum, 8);
}

static int xs_put_number(const char *key, uint64_t v)
{
	char val[32], err[128], *r;

	snprintf(val, sizeof(val), "%" PRIu64, v);
	r = xs_request_fd(XS_WRITE, key, val, err, sizeof(err), 1);
	if (!r) {
		fprintf(stderr, "xen-io: xenstore write %s: %s\n", key, err);
		return -1;
	}
	free(r);
	return 0;
}

static int cmd_records(uint64_t seed, const char *while_file, char **devs, int ndev)
{
	int fd[8];
	uint64_t slots = UINT64_MAX, size, i;
	unsigned char *rec = xalloc(REC_SIZE);

	if (ndev < 1 || ndev > 8) {
		fprintf(stderr, "xen-io: records: 1 to 8 devices, not %d\n", ndev);
		return 2;
	}
	for (int d = 0; d < ndev; d++) {
		fd[d] = open_dev(devs[d], O_RDWR | O_DIRECT, &size);
		if (size / REC_SIZE < slots)
			slots = size / REC_SIZE;
	}
	for (i = 0;; i++) {
		uint64_t slot = i / (uint64_t)ndev;
		int d = (int)(i % (uint64_t)ndev);

		if (slot >= slots) {
			printf("xen-io: records: the disks are full after %" PRIu64 " records\n", i);
			break;
		}
		rec_make(rec, seed, i);
		/* FUA: acknowledged means on the disk. */
		full_pwrite(fd[d], devs[d], rec, REC_SIZE, slot * REC_SIZE, RWF_DSYNC);
		if (xs_put_number("data/acked", i + 1)) {
			free(rec);
			return 2;
		}
		if (while_file && access(while_file, F_OK)) {
			i++;
			break;
		}
	}
	printf("xen-io: records: %" PRIu64 " acknowledged on %d disk(s), seed %" PRIu64 "\n",
	       i, ndev, seed);
	free(rec);
	for (int d = 0; d < ndev; d++)
		if (close(fd[d]))
			return 2;
	return 0;
}

/* Read up to @len bytes (less only at the end); -1 on an error. */
static ssize_t read_full(int fd, unsigned char *buf, size_t len)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = read(fd, buf + got, len - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (!n)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

static int cmd_records_check(const char *file, uint64_t seed, uint64_t stride,
			     uint64_t first, uint64_t bytes)
{
	/* Large reads: 4 KiB ones through blkfront take minutes under TCG. */
	unsigned char *buf = xalloc(MAX_CHUNK), *rec;
	uint64_t size, slot = 0, prefix = 0, seq, sum, v, total = 0;
	int fd = 0, zeros = 0, rc = 0;
	struct stat st;
	ssize_t n, off;

	if (!stride) {
		fprintf(stderr, "xen-io: records-check: STRIDE must be at least 1\n");
		free(buf);
		return 2;
	}
	if (strcmp(file, "-")) {
		/* A device is read past the page cache. */
		int flags = O_RDONLY;

		if (!stat(file, &st) && S_ISBLK(st.st_mode))
			flags |= O_DIRECT;
		fd = open_dev(file, flags, &size);
	}
	while ((n = read_full(fd, buf, MAX_CHUNK)) > 0) {
		total += (uint64_t)n;
		for (off = 0; off < n; off += REC_SIZE, slot++) {
			ssize_t len = n - off < (ssize_t)REC_SIZE ? n - off : (ssize_t)REC_SIZE;

			rec = buf + off;
			seq = first + slot * stride;
			memcpy(&v, rec + 8, 8);
			memcpy(&sum, rec + 8 * REC_SUM_WORD, 8);
			if (!zeros && len == REC_SIZE && !memcmp(rec, REC_MAGIC, 8) &&
			    v == seq && !memcmp(rec + 16, &seed, 8) && sum == rec_sum(rec)) {
				prefix++;
				continue;
			}
			for (ssize_t i = 0; i < len; i++) {
				if (rec[i])
					goto bad;
			}
			zeros = 1;
		}
	}
	if (n < 0) {
		fprintf(stderr, "xen-io: %s: read after slot %" PRIu64 ": %s\n", file,
			slot, strerror(errno));
		rc = 2;
		goto out;
	}
	if (bytes && total != bytes) {
		fprintf(stderr, "xen-io: %s: %" PRIu64 " bytes, not %" PRIu64 "\n", file,
			total, bytes);
		rc = 1;
		goto out;
	}
	printf("%" PRIu64 "\n", prefix);
	goto out;
bad:
	rc = 1;
	if (zeros)
		fprintf(stderr, "xen-io: %s: slot %" PRIu64 " holds data after the %" PRIu64 " records of the prefix\n",
			file, slot, prefix);
	else if (memcmp(rec, REC_MAGIC, 8))
		fprintf(stderr, "xen-io: %s: slot %" PRIu64 " (record %" PRIu64 ") is neither a record nor zeros\n",
			file, slot, seq);
	else if (v != seq)
		fprintf(stderr, "xen-io: %s: slot %" PRIu64 " holds record %" PRIu64 ", not %" PRIu64 "\n",
			file, slot, v, seq);
	else
		fprintf(stderr, "xen-io: %s: record %" PRIu64 " in slot %" PRIu64 ": bad seed or checksum (torn)\n",
			file, seq, slot);
out:
	free(buf);
	if (fd && close(fd) && !rc)
		rc = 2;
	return rc;
}

static uint64_t num(const char *s)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(s, &end, 0);
	if (errno || !*s || *end) {
		fprintf(stderr, "xen-io: '%s' is not a number\n", s);
		exit(2);
	}
	return v;
}

static int usage(void)
{
	fprintf(stderr,
		"usage: xen-io write DEV SEED [-b N] [-w FILE] | verify DEV SEED [OFFSET LEN] |\n"
		"       fua DEV SEED OFFSET LEN | flush DEV | sync NAME [SECS] |\n"
		"       xs-read KEY | xs-write KEY VALUE | records SEED [-w FILE] DEV... |\n"
		"       records-check FILE SEED STRIDE FIRST [BYTES]\n");
	return 2;
}

int main(int argc, char **argv)
{
	const char *cmd = argc > 1 ? argv[1] : "";
	char err[128], *v;

	if (!strcmp(cmd, "write") && argc >= 4) {
		unsigned int every = 0;
		const char *wf = NULL;

		for (int i = 4; i < argc; i++) {
			if (!strcmp(argv[i], "-b") && i + 1 < argc)
				every = (unsigned int)num(argv[++i]);
			else if (!strcmp(argv[i], "-w") && i + 1 < argc)
				wf = argv[++i];
			else
				return usage();
		}
		return cmd_write(argv[2], num(argv[3]), every, wf);
	}
	if (!strcmp(cmd, "verify") && argc == 4)
		return cmd_verify(argv[2], num(argv[3]), 0, 0);
	if (!strcmp(cmd, "verify") && argc == 6)
		return cmd_verify(argv[2], num(argv[3]), num(argv[4]), num(argv[5]));
	if (!strcmp(cmd, "fua") && argc == 6)
		return cmd_fua(argv[2], num(argv[3]), num(argv[4]), num(argv[5]));
	if (!strcmp(cmd, "flush") && argc == 3)
		return cmd_flush(argv[2]);
	if (!strcmp(cmd, "sync") && (argc == 3 || argc == 4))
		return cmd_sync(argv[2], argc == 4 ? (double)num(argv[3]) : 300.0);
	if (!strcmp(cmd, "records") && argc >= 4) {
		const char *wf = NULL;
		int i = 3;

		if (!strcmp(argv[i], "-w") && argc >= 6) {
			wf = argv[i + 1];
			i += 2;
		}
		return cmd_records(num(argv[2]), wf, argv + i, argc - i);
	}
	if (!strcmp(cmd, "records-check") && (argc == 6 || argc == 7))
		return cmd_records_check(argv[2], num(argv[3]), num(argv[4]), num(argv[5]),
					 argc == 7 ? num(argv[6]) : 0);
	if (!strcmp(cmd, "xs-read") && argc == 3) {
		v = xs_request(XS_READ, argv[2], NULL, err, sizeof(err));
		if (!v) {
			fprintf(stderr, "xen-io: xenstore read %s: %s\n", argv[2], err);
			return 1;
		}
		printf("%s\n", v);
		free(v);
		return 0;
	}
	if (!strcmp(cmd, "xs-write") && argc == 4) {
		v = xs_request(XS_WRITE, argv[2], argv[3], err, sizeof(err));
		if (!v) {
			fprintf(stderr, "xen-io: xenstore write %s: %s\n", argv[2], err);
			return 1;
		}
		free(v);
		return 0;
	}
	return usage();
}
