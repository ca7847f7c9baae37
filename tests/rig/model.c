// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The rig's model of a disk's expected content (see model.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model.h"

#define MODEL_MAGIC		"TDRIGMD1"
#define MODEL_FILE_VERSION	1u
#define WORDS			(MODEL_SECTOR / 8)

struct model_file_hdr {
	char		magic[8];
	uint32_t	version;
	uint32_t	base;
	uint64_t	sectors;
	uint64_t	seed;
	uint32_t	next_version;
	uint32_t	reserved;
	uint64_t	pad[3];
};

_Static_assert(sizeof(struct model_file_hdr) == 64, "model file header");
_Static_assert(sizeof(struct model_rec) == 8, "model record");

/* The splitmix64 finaliser: cheap, and every input bit reaches every output. */
static inline uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 31;
	return x;
}

static void set_err(char *err, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t len, const char *fmt, ...)
{
	va_list ap;

	if (!err || !len)
		return;
	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
}

int model_init(struct model *m, uint64_t sectors, uint64_t seed,
	       enum model_base base)
{
	memset(m, 0, sizeof(*m));
	if (!sectors || sectors > (UINT64_MAX >> 5))
		return -EINVAL;
	m->rec = calloc(sectors, sizeof(*m->rec));
	if (!m->rec)
		return -ENOMEM;
	if (base == MODEL_BASE_HASHED) {
		m->base_hash = calloc(sectors, sizeof(*m->base_hash));
		if (!m->base_hash) {
			free(m->rec);
			m->rec = NULL;
			return -ENOMEM;
		}
	}
	m->sectors = sectors;
	m->seed = seed;
	m->next_version = 1;
	m->base = base;
	return 0;
}

void model_free(struct model *m)
{
	free(m->rec);
	free(m->base_hash);
	memset(m, 0, sizeof(*m));
}

static int read_full(int fd, void *buf, size_t len)
{
	char *p = buf;

	while (len) {
		ssize_t n = read(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int write_full(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int model_load(struct model *m, const char *path, char *err, size_t errlen)
{
	struct model_file_hdr h;
	struct stat st;
	uint64_t want;
	int fd, rc;

	memset(m, 0, sizeof(*m));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		set_err(err, errlen, "cannot open model %s: %s", path,
			strerror(errno));
		return rc;
	}
	rc = fstat(fd, &st) ? -errno : read_full(fd, &h, sizeof(h));
	if (rc) {
		set_err(err, errlen, "cannot read model %s: %s", path,
			rc == -EIO ? "file too short" : strerror(-rc));
		goto out;
	}
	rc = -EINVAL;
	if (memcmp(h.magic, MODEL_MAGIC, sizeof(h.magic)) ||
	    h.version != MODEL_FILE_VERSION) {
		set_err(err, errlen,
			"%s is not a td-rig model (bad magic or version)", path);
		goto out;
	}
	if (h.base > MODEL_BASE_HASHED || !h.next_version ||
	    h.next_version > MODEL_UNKNOWN) {
		set_err(err, errlen, "model %s: bad header fields", path);
		goto out;
	}
	if (!h.sectors || h.sectors > (UINT64_MAX >> 5)) {
		set_err(err, errlen, "model %s: bad sector count %" PRIu64,
			path, h.sectors);
		goto out;
	}
	want = sizeof(h) + h.sectors * sizeof(struct model_rec);
	if (h.base == MODEL_BASE_HASHED)
		want += h.sectors * sizeof(uint64_t);
	if ((uint64_t)st.st_size != want) {
		set_err(err, errlen, "model %s: %" PRIu64 " bytes, expected %" PRIu64
			" for %" PRIu64 " sectors", path, (uint64_t)st.st_size,
			want, h.sectors);
		goto out;
	}
	rc = model_init(m, h.sectors, h.seed, (enum model_base)h.base);
	if (rc) {
		set_err(err, errlen, "model %s: %s", path, strerror(-rc));
		goto out;
	}
	m->next_version = h.next_version;
	rc = read_full(fd, m->rec, h.sectors * sizeof(*m->rec));
	if (!rc && m->base_hash)
		rc = read_full(fd, m->base_hash,
			       h.sectors * sizeof(*m->base_hash));
	if (rc) {
		set_err(err, errlen, "cannot read model %s: %s", path,
			strerror(-rc));
		model_free(m);
		goto out;
	}
	/* Versions the counter has not reached yet cannot be on disk. */
	for (uint64_t s = 0; s < m->sectors; s++) {
		uint32_t a = m->rec[s].acked & ~MODEL_UNKNOWN;
		uint32_t p = m->rec[s].pending;

		if (a >= m->next_version || p >= m->next_version) {
			set_err(err, errlen, "model %s: sector %" PRIu64
				" has a version beyond the counter", path, s);
			model_free(m);
			rc = -EINVAL;
			goto out;
		}
	}
out:
	close(fd);
	return rc;
}

int model_save(const struct model *m, const char *path, char *err,
	       size_t errlen)
{
	struct model_file_hdr h;
	char tmp[4096];
	int fd, rc;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp)) {
		set_err(err, errlen, "model path too long: %s", path);
		return -ENAMETOOLONG;
	}
	memset(&h, 0, sizeof(h));
	memcpy(h.magic, MODEL_MAGIC, sizeof(h.magic));
	h.version = MODEL_FILE_VERSION;
	h.base = m->base;
	h.sectors = m->sectors;
	h.seed = m->seed;
	h.next_version = m->next_version;

	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = -errno;
		set_err(err, errlen, "cannot create %s: %s", tmp,
			strerror(errno));
		return rc;
	}
	rc = write_full(fd, &h, sizeof(h));
	if (!rc)
		rc = write_full(fd, m->rec, m->sectors * sizeof(*m->rec));
	if (!rc && m->base_hash)
		rc = write_full(fd, m->base_hash,
				m->sectors * sizeof(*m->base_hash));
	if (!rc && fsync(fd))
		rc = -errno;
	if (close(fd) && !rc)
		rc = -errno;
	if (!rc && rename(tmp, path))
		rc = -errno;
	if (rc) {
		set_err(err, errlen, "cannot save model %s: %s", path,
			strerror(-rc));
		unlink(tmp);
	}
	return rc;
}

/*
 * Word 0 names the sector and word 1 the version (and the seed), so a
 * misplaced or stale sector can be identified; the rest is splitmix64
 * output keyed by all three, so no two versions share a byte pattern.
 */
void model_fill(uint64_t seed, uint64_t sector, uint32_t version, void *buf)
{
	uint64_t *w = buf;
	uint64_t s = mix64(seed ^ mix64(sector ^ ((uint64_t)version << 40)));

	w[0] = sector;
	w[1] = (uint64_t)version << 32 | (uint32_t)seed;
	for (unsigned i = 2; i < WORDS; i++) {
		s += 0x9e3779b97f4a7c15ull;
		w[i] = mix64(s);
	}
}

uint64_t model_hash(const void *buf)
{
	const uint64_t *w = buf;
	uint64_t h = 0x6a09e667f3bcc908ull;

	for (unsigned i = 0; i < WORDS; i++)
		h = mix64(h ^ w[i]) + i;
	return h;
}

void model_set_base(struct model *m, uint64_t sector, const void *buf)
{
	if (m->base_hash && sector < m->sectors)
		m->base_hash[sector] = model_hash(buf);
}

uint32_t model_new_version(struct model *m)
{
	if (m->next_version > MODEL_MAX_VERSION)
		return 0;
	return m->next_version++;
}

void model_write_issued(struct model *m, uint64_t sec, uint32_t n,
			uint32_t version)
{
	for (uint64_t s = sec; s < sec + n && s < m->sectors; s++)
		m->rec[s].pending = version;
}

void model_write_done(struct model *m, uint64_t sec, uint32_t n,
		      uint32_t version, int status)
{
	for (uint64_t s = sec; s < sec + n && s < m->sectors; s++) {
		m->rec[s].acked = status ? MODEL_UNKNOWN : version;
		m->rec[s].pending = 0;
	}
}

void model_forget(struct model *m, uint64_t sec, uint32_t n)
{
	for (uint64_t s = sec; s < sec + n && s < m->sectors; s++) {
		m->rec[s].acked = MODEL_UNKNOWN;
		m->rec[s].pending = 0;
	}
}

static bool is_zero(const void *buf)
{
	const uint64_t *w = buf;

	for (unsigned i = 0; i < WORDS; i++)
		if (w[i])
			return false;
	return true;
}

/* Does @buf hold @version of @sector? */
static bool matches(const struct model *m, uint64_t sector, uint32_t version,
		    const void *buf, const void *base)
{
	uint64_t want[WORDS];
	const uint64_t *w = buf;

	if (!version) {
		if (base)
			return !memcmp(buf, base, MODEL_SECTOR);
		if (m->base == MODEL_BASE_HASHED)
			return model_hash(buf) == m->base_hash[sector];
		return is_zero(buf);
	}
	/* The two label words reject almost every mismatch cheaply. */
	if (w[0] != sector || w[1] != ((uint64_t)version << 32 |
				       (uint32_t)m->seed))
		return false;
	model_fill(m->seed, sector, version, want);
	return !memcmp(buf, want, MODEL_SECTOR);
}

static void version_name(uint32_t v, char *out, size_t len)
{
	if (v)
		snprintf(out, len, "version %" PRIu32, v);
	else
		snprintf(out, len, "the initial content");
}

uint64_t model_check(struct model *m, uint64_t sec, uint32_t n,
		     const void *buf, const void *base, bool resolve,
		     struct model_bad *bad)
{
	const char *p = buf;
	const char *b = base;
	uint64_t nbad = 0;

	for (uint32_t i = 0; i < n; i++, p += MODEL_SECTOR,
	     b = b ? b + MODEL_SECTOR : NULL) {
		uint64_t s = sec + i;
		struct model_rec *r;
		char a[32], alt[40], want[80], got[96];

		if (s >= m->sectors) {
			if (!nbad++ && bad) {
				bad->sector = s;
				snprintf(bad->what, sizeof(bad->what),
					 "sector %" PRIu64 " is past the model's %"
					 PRIu64 " sectors", s, m->sectors);
			}
			continue;
		}
		r = &m->rec[s];
		if (r->acked & MODEL_UNKNOWN)
			continue;
		if (matches(m, s, r->acked, p, b)) {
			if (resolve)
				r->pending = 0;
			continue;
		}
		if (r->pending && matches(m, s, r->pending, p, b)) {
			if (resolve) {
				r->acked = r->pending;
				r->pending = 0;
			}
			continue;
		}
		if (!nbad++ && bad) {
			bad->sector = s;
			version_name(r->acked, a, sizeof(a));
			alt[0] = '\0';
			if (r->pending) {
				snprintf(alt, sizeof(alt), " or version %" PRIu32,
					 r->pending);
			}
			snprintf(want, sizeof(want), "%s%s", a, alt);
			model_describe(m, p, got, sizeof(got));
			snprintf(bad->what, sizeof(bad->what),
				 "sector %" PRIu64 ": expected %s, found %s",
				 s, want, got);
		}
	}
	return nbad;
}

uint64_t model_count_pending(const struct model *m)
{
	uint64_t n = 0;

	for (uint64_t s = 0; s < m->sectors; s++)
		if (m->rec[s].pending)
			n++;
	return n;
}

void model_describe(const struct model *m, const void *buf, char *out,
		    size_t len)
{
	const uint64_t *w = buf;
	uint64_t want[WORDS];
	uint32_t v = (uint32_t)(w[1] >> 32);

	if (is_zero(buf)) {
		snprintf(out, len, "zeros");
		return;
	}
	if (v && (uint32_t)w[1] == (uint32_t)m->seed) {
		model_fill(m->seed, w[0], v, want);
		snprintf(out, len, "version %" PRIu32 " of sector %" PRIu64 "%s",
			 v, w[0], memcmp(buf, want, MODEL_SECTOR) ?
			 " (damaged)" : "");
		return;
	}
	snprintf(out, len, "other data (%016" PRIx64 " %016" PRIx64 "...)",
		 w[0], w[1]);
}
