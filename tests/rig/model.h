/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The rig's model of what a disk must hold.
 *
 * One record per 512-byte sector: the version of the last acknowledged
 * write (0: the initial content) and the version of a write that was in
 * flight when the back died (0: none), since after a crash either may be
 * on disk.  Write data is a pure function of (seed, sector, version), so
 * the model is 8 bytes a sector and any sector read back can be checked,
 * and even named ("version 7 of sector 12") when it is wrong.
 *
 * The initial content (version 0) is either zeros or, for an image that
 * started with data, a 64-bit hash per sector of that data.
 *
 * Versions are numbered from 1 by one counter for the whole model; a
 * version whose MODEL_UNKNOWN bit is set marks a sector whose content
 * cannot be known (a write to it failed), and any data is accepted there
 * until the next acknowledged write.
 */
#ifndef RIG_MODEL_H
#define RIG_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MODEL_SECTOR		512u
#define MODEL_UNKNOWN		0x80000000u
#define MODEL_MAX_VERSION	(MODEL_UNKNOWN - 1)

enum model_base { MODEL_BASE_ZERO = 0, MODEL_BASE_HASHED = 1 };

struct model_rec {
	uint32_t	acked;		/* version on disk for sure */
	uint32_t	pending;	/* version that may be on disk instead */
};

struct model {
	uint64_t	sectors;
	uint64_t	seed;		/* of the write data */
	uint32_t	next_version;	/* the next write's version */
	enum model_base	base;
	struct model_rec *rec;		/* sectors entries */
	uint64_t	*base_hash;	/* sectors entries, MODEL_BASE_HASHED */
};

/* What a check found wrong with one sector, for the message. */
struct model_bad {
	uint64_t	sector;
	char		what[256];
};

/* 0 or -errno; the model is empty (every sector at version 0). */
int model_init(struct model *m, uint64_t sectors, uint64_t seed,
	       enum model_base base);
void model_free(struct model *m);

/*
 * Load or save a model file.  -errno, with a one-line reason in @err
 * (@errlen bytes) on failure.  Saving writes a temporary file and renames
 * it, so an interrupted save leaves the old model.
 */
int model_load(struct model *m, const char *path, char *err, size_t errlen);
int model_save(const struct model *m, const char *path, char *err,
	       size_t errlen);

/* The data of @version of @sector: MODEL_SECTOR bytes at @buf. */
void model_fill(uint64_t seed, uint64_t sector, uint32_t version, void *buf);
/* The hash kept for initial content. */
uint64_t model_hash(const void *buf);
/* Record @buf as the initial content of @sector (MODEL_BASE_HASHED). */
void model_set_base(struct model *m, uint64_t sector, const void *buf);

/* A new version for a write; 0 when the counter is exhausted. */
uint32_t model_new_version(struct model *m);
/* A write of @version to [@sec, @sec + @n) was issued. */
void model_write_issued(struct model *m, uint64_t sec, uint32_t n,
			uint32_t version);
/* ... and completed with @status (0 or -errno). */
void model_write_done(struct model *m, uint64_t sec, uint32_t n,
		      uint32_t version, int status);
/* The range was discarded or zeroed and its content is now unknown. */
void model_forget(struct model *m, uint64_t sec, uint32_t n);

/*
 * Check @n sectors read from @sec.  @base, when not NULL, is the initial
 * content of the range (compared instead of the hashes).  With @resolve, a
 * sector that may hold either of two versions (left by a crash) is settled
 * by what was read.  Returns the number of bad sectors; the first one is
 * described in @bad.
 */
uint64_t model_check(struct model *m, uint64_t sec, uint32_t n,
		     const void *buf, const void *base, bool resolve,
		     struct model_bad *bad);

/* Sectors still holding either of two versions (after a crash). */
uint64_t model_count_pending(const struct model *m);

/* Describe what @buf holds ("version 3 of sector 8", "zeros", ...). */
void model_describe(const struct model *m, const void *buf, char *out,
		    size_t len);

#endif
