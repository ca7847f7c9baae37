// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * crash-writer: deterministic writes to an image, to be killed at random
 * moments, and a verifier for what was acknowledged before the kill.
 *
 *   crash-writer write IMG SEED [COUNT]
 *       Open IMG read-write and do COUNT writes (0 or absent: until
 *       killed).  Write k goes to a pseudo-random place (mostly blocks
 *       never written before, so blocks are allocated all the time) with
 *       512 B .. 1 MiB of data, all derived from SEED and k.  Prints first
 *       "seed SEED sectors N", then after each write returns
 *       "ack K SECTOR COUNT DATASEED", flushed at once.
 *   crash-writer verify IMG LOG [BASELOG...]
 *       Replay the BASELOGs (writes made to the parents, all complete) and
 *       then LOG into a model of the disk, and compare the whole virtual
 *       disk, read through the chain, with it.  Every acknowledged write
 *       must be there (later ones win); the one write in flight at the
 *       kill may be there or not, sector by sector; nothing else may
 *       differ (unwritten sectors read as zero or as the parent's data).
 *       Beyond the size in LOG (after a resize) the disk must read zeros.
 *   crash-writer resize IMG JOURNAL MB...
 *       vhd_resize_journaled to each size in turn, printing
 *       "resized BYTES" after each.
 *   crash-writer revert IMG JOURNAL
 *       vhd_journal_revert.
 *   With VHD_CRASH_AT_STEP=N in the environment, resize and revert kill
 *   the process (SIGKILL) at the N-th step of the library's test hook;
 *   both print "steps N" (the steps seen) when they finish.
 *
 * Exit status 0 on success, 1 on a verification failure, 2 on errors.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "libvhd.h"
#include "../../libvhd/private.h"

#define SPB	(VHD_BLOCK_SIZE >> VHD_SECTOR_SHIFT)	/* model granularity */

static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static uint64_t h3(uint64_t seed, uint64_t k, uint64_t what)
{
	return mix(mix(mix(seed) ^ k) ^ what);
}

struct op {
	uint64_t sector;
	uint32_t count;
	uint64_t dseed;
};

static struct op gen_op(uint64_t seed, uint64_t k, uint64_t nsect)
{
	uint64_t nblocks = (nsect + SPB - 1) / SPB;
	uint64_t r = h3(seed, k, 1), j = k, block;
	struct op op;
	unsigned e = (unsigned)(h3(seed, k, 2) % 12);	/* 1 .. 2048 sectors */

	op.count = 1 + (uint32_t)(h3(seed, k, 3) % (1u << e));
	/* Three in ten rewrite an earlier write's block; most are new. */
	if (k && r % 10 < 3)
		j = h3(seed, k, 4) % k;
	block = h3(seed, j, 5) % nblocks;
	op.sector = block * SPB + h3(seed, k, 6) % SPB;
	if (op.count > nsect)
		op.count = (uint32_t)nsect;
	if (op.sector + op.count > nsect)
		op.sector = nsect - op.count;
	op.dseed = h3(seed, k, 7);
	return op;
}

/* The data of one sector of a write. */
static void gen_sector(uint64_t dseed, uint32_t idx, uint8_t *out)
{
	for (int w = 0; w < 64; w++) {
		uint64_t v = mix(dseed ^ ((uint64_t)idx << 8 | (uint64_t)w));

		memcpy(out + 8 * w, &v, 8);
	}
}

static int die_usage(void)
{
	fprintf(stderr,
		"usage: crash-writer write IMG SEED [COUNT] | verify IMG LOG [BASELOG...] |\n"
		"       resize IMG JOURNAL MB... | revert IMG JOURNAL\n");
	return 2;
}

static int do_write(const char *img, uint64_t seed, uint64_t count)
{
	vhd_context_t ctx;
	uint8_t *buf = malloc(2048 * VHD_SECTOR_SIZE);
	uint64_t nsect, k;
	int err;

	if (!buf)
		return 2;
	err = vhd_open(&ctx, img, VHD_OPEN_RDWR);
	if (err) {
		fprintf(stderr, "crash-writer: %s\n", vhd_errmsg());
		free(buf);
		return 2;
	}
	nsect = vhd_sectors(&ctx);
	printf("seed %llu sectors %llu\n", (unsigned long long)seed,
	       (unsigned long long)nsect);
	fflush(stdout);
	for (k = 0; !count || k < count; k++) {
		struct op op = gen_op(seed, k, nsect);

		for (uint32_t i = 0; i < op.count; i++)
			gen_sector(op.dseed, i, buf + (size_t)i * VHD_SECTOR_SIZE);
		err = vhd_io_write(&ctx, buf, op.sector, op.count);
		if (err) {
			fprintf(stderr, "crash-writer: write %llu: %s\n",
				(unsigned long long)k, vhd_errmsg());
			vhd_close(&ctx);
			free(buf);
			return 2;
		}
		printf("ack %llu %llu %u %llu\n", (unsigned long long)k,
		       (unsigned long long)op.sector, op.count,
		       (unsigned long long)op.dseed);
		fflush(stdout);
	}
	vhd_close(&ctx);
	free(buf);
	return 0;
}

/* ---- verify ---- */

/*
 * True when no image of the chain holds block @b: it reads as zeros by
 * construction, so a 64 GiB disk need not be read in full.
 */
static bool block_absent(const vhd_chain_t *chain, uint64_t b)
{
	for (int i = 0; i < chain->depth; i++) {
		const vhd_context_t *c = chain->img[i];

		if (!vhd_is_dynamic(c) || c->header.block_size != VHD_BLOCK_SIZE ||
		    vhd_bat_entry(c, (uint32_t)b) != VHD_BAT_UNUSED)
			return false;
	}
	return true;
}

struct model {
	uint64_t nsect;
	uint64_t nblocks;
	uint8_t **blk;		/* NULL: all zero */
};

static uint8_t *model_sector(struct model *m, uint64_t sec)
{
	uint64_t b = sec / SPB;

	if (!m->blk[b]) {
		m->blk[b] = calloc(1, VHD_BLOCK_SIZE);
		if (!m->blk[b]) {
			fprintf(stderr, "crash-writer: out of memory\n");
			exit(2);
		}
	}
	return m->blk[b] + (sec % SPB) * VHD_SECTOR_SIZE;
}

static void model_apply(struct model *m, const struct op *op)
{
	for (uint32_t i = 0; i < op->count; i++)
		gen_sector(op->dseed, i, model_sector(m, op->sector + i));
}

/*
 * Replay LOG into the model.  Returns the number of acks; *seed and
 * *nsect from its first line.
 */
static long replay(struct model *m, const char *log, uint64_t *seed,
		   uint64_t *nsect)
{
	FILE *f = fopen(log, "r");
	char line[256];
	long acks = 0;

	if (!f) {
		fprintf(stderr, "crash-writer: cannot open %s: %s\n", log,
			strerror(errno));
		return -1;
	}
	if (!fgets(line, sizeof(line), f) || !strchr(line, '\n') ||
	    sscanf(line, "seed %llu sectors %llu", (unsigned long long *)seed,
		   (unsigned long long *)nsect) != 2) {
		/* Killed before it even started: nothing was written. */
		fclose(f);
		*nsect = 0;
		return 0;
	}
	if (*nsect > m->nsect) {
		fprintf(stderr, "crash-writer: %s: disk of %llu sectors is smaller than the log's %llu\n",
			log, (unsigned long long)m->nsect,
			(unsigned long long)*nsect);
		fclose(f);
		return -1;
	}
	while (fgets(line, sizeof(line), f)) {
		unsigned long long k, sec, ds;
		unsigned cnt;
		struct op op;

		if (!strchr(line, '\n'))
			break;		/* torn by the kill: not acknowledged */
		if (sscanf(line, "ack %llu %llu %u %llu", &k, &sec, &cnt, &ds) != 4) {
			fprintf(stderr, "crash-writer: %s: bad line: %s", log, line);
			fclose(f);
			return -1;
		}
		op = gen_op(*seed, (uint64_t)acks, *nsect);
		if (k != (unsigned long long)acks || op.sector != sec ||
		    op.count != cnt || op.dseed != ds) {
			fprintf(stderr, "crash-writer: %s: ack %llu does not match the generator\n",
				log, k);
			fclose(f);
			return -1;
		}
		model_apply(m, &op);
		acks++;
	}
	fclose(f);
	return acks;
}

static int do_verify(const char *img, const char *log, char **bases, int nbases)
{
	struct model m = { 0 };
	vhd_chain_t chain;
	uint8_t *disk = NULL, *alt = NULL;
	struct op inflight = { 0, 0, 0 };
	uint64_t seed, nsect, bad = 0, inflight_hits = 0;
	long acks;
	int err, rc = 2;

	err = vhd_chain_open(&chain, img, VHD_OPEN_RDONLY);
	if (err) {
		fprintf(stderr, "crash-writer: %s\n", vhd_errmsg());
		return 2;
	}
	m.nsect = vhd_sectors(chain.img[0]);
	m.nblocks = (m.nsect + SPB - 1) / SPB;
	m.blk = calloc(m.nblocks ? m.nblocks : 1, sizeof(*m.blk));
	disk = malloc(VHD_BLOCK_SIZE);
	alt = malloc(VHD_SECTOR_SIZE);
	if (!m.blk || !disk || !alt)
		goto out;
	for (int i = 0; i < nbases; i++)
		if (replay(&m, bases[i], &seed, &nsect) < 0)
			goto out;
	acks = replay(&m, log, &seed, &nsect);
	if (acks < 0)
		goto out;
	if (nsect)
		inflight = gen_op(seed, (uint64_t)acks, nsect);

	for (uint64_t b = 0; b < m.nblocks; b++) {
		uint64_t first = b * SPB;
		uint32_t n = (uint32_t)(m.nsect - first < SPB ? m.nsect - first : SPB);

		if (!m.blk[b] && block_absent(&chain, b))
			continue;
		err = vhd_chain_read(&chain, disk, first, n);
		if (err) {
			fprintf(stderr, "crash-writer: %s\n", vhd_errmsg());
			goto out;
		}
		for (uint32_t i = 0; i < n; i++) {
			uint64_t sec = first + i;
			const uint8_t *got = disk + (size_t)i * VHD_SECTOR_SIZE;
			static const uint8_t zero[VHD_SECTOR_SIZE];
			const uint8_t *want = m.blk[b] ?
				m.blk[b] + (size_t)i * VHD_SECTOR_SIZE : zero;

			if (!memcmp(got, want, VHD_SECTOR_SIZE))
				continue;
			if (inflight.count && sec >= inflight.sector &&
			    sec < inflight.sector + inflight.count) {
				gen_sector(inflight.dseed,
					   (uint32_t)(sec - inflight.sector), alt);
				if (!memcmp(got, alt, VHD_SECTOR_SIZE)) {
					inflight_hits++;
					continue;
				}
			}
			if (bad++ < 10)
				fprintf(stderr, "crash-writer: sector %llu differs from the model\n",
					(unsigned long long)sec);
		}
	}
	if (bad) {
		fprintf(stderr, "crash-writer: %s: %llu sectors differ (%ld writes acknowledged)\n",
			img, (unsigned long long)bad, acks);
		rc = 1;
	} else {
		printf("verified %ld acknowledged writes (%llu sectors of the write in flight present)\n",
		       acks, (unsigned long long)inflight_hits);
		rc = 0;
	}
out:
	if (m.blk)
		for (uint64_t b = 0; b < m.nblocks; b++)
			free(m.blk[b]);
	free(m.blk);
	free(disk);
	free(alt);
	vhd_chain_close(&chain);
	return rc;
}

/* ---- resize / revert with a crash point ---- */

static long crash_at, steps;

static void hook(int step)
{
	(void)step;
	steps++;
	if (crash_at && steps == crash_at)
		kill(getpid(), SIGKILL);
}

static void install_hook(void)
{
	const char *s = getenv("VHD_CRASH_AT_STEP");

	crash_at = s ? atol(s) : 0;
	vhd_resize_step_hook = hook;
}

static int do_resize(const char *img, const char *journal, char **sizes, int n)
{
	install_hook();
	for (int i = 0; i < n; i++) {
		uint64_t bytes = strtoull(sizes[i], NULL, 10) << 20;
		int err = vhd_resize_journaled(img, bytes, journal);

		if (err) {
			fprintf(stderr, "crash-writer: %s\n", vhd_errmsg());
			return 2;
		}
		printf("resized %llu\n", (unsigned long long)bytes);
		fflush(stdout);
	}
	printf("steps %ld\n", steps);
	return 0;
}

static int do_revert(const char *img, const char *journal)
{
	int err;

	install_hook();
	err = vhd_journal_revert(img, journal);
	if (err) {
		fprintf(stderr, "crash-writer: %s\n", vhd_errmsg());
		return 2;
	}
	printf("steps %ld\n", steps);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return die_usage();
	if (!strcmp(argv[1], "write") && (argc == 4 || argc == 5))
		return do_write(argv[2], strtoull(argv[3], NULL, 0),
				argc == 5 ? strtoull(argv[4], NULL, 0) : 0);
	if (!strcmp(argv[1], "verify") && argc >= 4)
		return do_verify(argv[2], argv[3], argv + 4, argc - 4);
	if (!strcmp(argv[1], "resize") && argc >= 5)
		return do_resize(argv[2], argv[3], argv + 4, argc - 4);
	if (!strcmp(argv[1], "revert") && argc == 4)
		return do_revert(argv[2], argv[3]);
	return die_usage();
}
