// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The "ram" driver: a disk held in a POSIX shared memory object, which
 * any number of tapdisks may attach at once (the shared disk of a
 * cluster file system).  Reads and writes are memcpy.
 *
 *   ram:PATH[?save]             load the raw image PATH; with "save",
 *                               write the contents back to PATH when the
 *                               last user closes the disk
 *   ram:/dev/shm/NAME?size=SIZE an empty (zeroed) disk, the object
 *                               /dev/shm/NAME; SIZE in bytes or with a
 *                               K, M, G or T suffix
 *
 * The object of a file is /dev/shm/td-ram-f-<dev>-<inode>, so that every
 * spelling of the path finds the same disk.  Objects are files in
 * /dev/shm, as shm_open() makes them; BLKTAP_RAM_DIR names another
 * directory (tests).
 *
 * Users are counted by the kernel, not by a number a crash could leave
 * wrong: each holds a shared OFD lock on byte USERS_BYTE of the object
 * while it has the disk open.  Opening and closing take the exclusive
 * GATE_BYTE lock, so a closer that finds no other shared lock knows it is
 * the last user, saves if asked and unlinks the object, all before anyone
 * can attach.  An opener that finds the object already unlinked (it lost
 * that race) or with no users (everyone before it crashed) starts afresh:
 * the contents of a RAM disk are lost unless saved.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "driver.h"
#include "log.h"

#define SECTOR_SHIFT	9
#define HDR_BYTES	4096u		/* keeps the data page aligned */
#define RAM_MAGIC	"TDRAMv1"
#define RAM_SAVE	0x1u
#define GATE_BYTE	0
#define USERS_BYTE	1
#define GATE_WAIT_MS	60000
#define IO_CHUNK	(1u << 20)
#define NAME_MAX_LEN	100

/* The first HDR_BYTES of the object. */
struct ram_hdr {
	char		magic[8];
	uint64_t	bytes;		/* of data, after the header */
	uint32_t	flags;		/* RAM_SAVE */
	uint32_t	users;		/* informational; the locks decide */
};

struct ram_priv {
	int		fd;
	bool		rdonly;
	bool		file_backed;
	struct ram_hdr	*hdr;
	uint8_t		*data;
	size_t		map_len;
	char		obj[PATH_MAX];	/* the object's path */
	char		file[PATH_MAX];	/* the image file (file_backed) */
};

/* ---- parameters ---- */

static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v;
	unsigned shift = 0;

	errno = 0;
	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	v = strtoull(s, &end, 10);
	if (errno)
		return -EINVAL;
	if (*end) {
		const char *suf = strchr("kmgt", tolower((unsigned char)*end));

		if (suf) {
			shift = 10 * (unsigned int)(suf - "kmgt" + 1);
			end++;
		}
	}
	if (*end || !v || v > (UINT64_MAX >> (shift + SECTOR_SHIFT)))
		return -EINVAL;
	*out = (uint64_t)v << shift;
	return 0;
}

static bool valid_name(const char *n)
{
	size_t len = strlen(n);

	if (!len || len > NAME_MAX_LEN || n[0] == '.')
		return false;
	for (; *n; n++)
		if (!isalnum((unsigned char)*n) && !strchr("._-", *n))
			return false;
	return true;
}

/*
 * Split "WHAT?OPTS" into @what and the options; sets *size (0 if none)
 * and *save.
 */
static int parse_params(const char *params, char *what, size_t wlen,
			uint64_t *size, bool *save)
{
	const char *q = strchr(params, '?');
	size_t n = q ? (size_t)(q - params) : strlen(params);
	char opts[256], *tok, *sp = NULL;

	*size = 0;
	*save = false;
	if (!n || n >= wlen)
		return td_fail(EINVAL, "ram:%s: no file or name before the "
			       "options", params);
	memcpy(what, params, n);
	what[n] = '\0';
	if (!q)
		return 0;
	if (strlen(q + 1) >= sizeof(opts))
		return td_fail(EINVAL, "ram:%s: options too long", params);
	strcpy(opts, q + 1);
	for (tok = strtok_r(opts, ",&", &sp); tok;
	     tok = strtok_r(NULL, ",&", &sp)) {
		if (!strcmp(tok, "save")) {
			*save = true;
		} else if (!strncmp(tok, "size=", 5)) {
			if (parse_size(tok + 5, size) ||
			    *size % (1u << SECTOR_SHIFT))
				return td_fail(EINVAL, "ram:%s: bad size '%s' "
					       "(bytes, a multiple of 512, or "
					       "with a K, M, G or T suffix)",
					       params, tok + 5);
		} else {
			return td_fail(EINVAL, "ram:%s: unknown option '%s' "
				       "(size=SIZE or save)", params, tok);
		}
	}
	if (*size && *save)
		return td_fail(EINVAL, "ram:%s: 'save' needs a file, but "
			       "size= makes an empty named disk", params);
	return 0;
}

/* ---- the shared object ---- */

/* Where the objects live: /dev/shm, as for shm_open(), unless overridden. */
static const char *shm_dir(void)
{
	const char *dir = getenv("BLKTAP_RAM_DIR");

	return dir && *dir ? dir : "/dev/shm";
}

static int obj_open(struct ram_priv *p)
{
	return open(p->obj, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
}

static int obj_unlink(struct ram_priv *p)
{
	return unlink(p->obj);
}

static int lock_byte(int fd, short type, off_t byte, bool wait)
{
	struct flock fl = {
		.l_type = type, .l_whence = SEEK_SET, .l_start = byte,
		.l_len = 1,
	};

	return fcntl(fd, wait ? F_OFD_SETLKW : F_OFD_SETLK, &fl);
}

/*
 * The gate, waiting at most GATE_WAIT_MS: another tapdisk may be loading
 * or saving a large image, but open must not hang for ever.
 */
static int gate_lock(struct ram_priv *p)
{
	struct timespec ts = { 0, 10 * 1000 * 1000 };

	for (int waited = 0; waited < GATE_WAIT_MS; waited += 10) {
		if (!lock_byte(p->fd, F_WRLCK, GATE_BYTE, false))
			return 0;
		if (errno != EAGAIN && errno != EACCES)
			return -errno;
		nanosleep(&ts, NULL);
	}
	return -ETIMEDOUT;
}

static void gate_unlock(struct ram_priv *p)
{
	lock_byte(p->fd, F_UNLCK, GATE_BYTE, false);
}

/* Is anybody but us holding the disk open? */
static bool others_attached(struct ram_priv *p)
{
	if (lock_byte(p->fd, F_WRLCK, USERS_BYTE, false))
		return true;
	/* Nobody: drop the probe (a later shared lock replaces it). */
	lock_byte(p->fd, F_UNLCK, USERS_BYTE, false);
	return false;
}

static int load_file(struct ram_priv *p)
{
	int fd = open(p->file, O_RDONLY | O_CLOEXEC);
	uint64_t off = 0;

	if (fd < 0)
		return td_fail(errno, "%s: %s", p->file, strerror(errno));
	while (off < p->hdr->bytes) {
		size_t n = p->hdr->bytes - off < IO_CHUNK ?
			   (size_t)(p->hdr->bytes - off) : IO_CHUNK;
		ssize_t r = pread(fd, p->data + off, n, (off_t)off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			int err = r < 0 ? errno : EIO;

			close(fd);
			return td_fail(err, "%s: cannot load it into RAM: %s",
				       p->file, r < 0 ? strerror(err) :
				       "file shrank while loading");
		}
		off += (uint64_t)r;
	}
	close(fd);
	return 0;
}

static int save_file(struct ram_priv *p)
{
	int fd = open(p->file, O_WRONLY | O_CLOEXEC);
	uint64_t off = 0;

	if (fd < 0)
		return td_fail(errno, "%s: cannot save the RAM disk: %s",
			       p->file, strerror(errno));
	while (off < p->hdr->bytes) {
		size_t n = p->hdr->bytes - off < IO_CHUNK ?
			   (size_t)(p->hdr->bytes - off) : IO_CHUNK;
		ssize_t r = pwrite(fd, p->data + off, n, (off_t)off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			int err = r < 0 ? errno : EIO;

			close(fd);
			return td_fail(err, "%s: cannot save the RAM disk: %s",
				       p->file, strerror(err));
		}
		off += (uint64_t)r;
	}
	if (fdatasync(fd) < 0) {
		int err = errno;

		close(fd);
		return td_fail(err, "%s: cannot save the RAM disk: %s",
			       p->file, strerror(err));
	}
	close(fd);
	return 0;
}

static void unmap(struct ram_priv *p)
{
	if (p->hdr)
		munmap(p->hdr, p->map_len);
	p->hdr = NULL;
	p->data = NULL;
}

static int map(struct ram_priv *p, uint64_t bytes)
{
	void *m;

	if (bytes > SIZE_MAX - HDR_BYTES)
		return -EFBIG;
	p->map_len = HDR_BYTES + (size_t)bytes;
	m = mmap(NULL, p->map_len, PROT_READ | PROT_WRITE, MAP_SHARED, p->fd,
		 0);
	if (m == MAP_FAILED)
		return -errno;
	p->hdr = m;
	p->data = (uint8_t *)m + HDR_BYTES;
	return 0;
}

/* We hold the gate and nobody else uses the object: (re)build it. */
static int obj_init(struct ram_priv *p, const char *what, uint64_t bytes)
{
	int err;

	/* Empty it first: what was there is lost, as documented. */
	if (ftruncate(p->fd, 0) < 0)
		return td_fail(errno, "ram:%s: %s", what, strerror(errno));
	/* Reserve the memory now, so that no write can hit SIGBUS later. */
	err = posix_fallocate(p->fd, 0, (off_t)(HDR_BYTES + bytes));
	if (err)
		return td_fail(err, "ram:%s: cannot reserve %" PRIu64 " bytes "
			       "of shared memory: %s", what, bytes,
			       strerror(err));
	err = map(p, bytes);
	if (err)
		return td_fail(-err, "ram:%s: cannot map %" PRIu64 " bytes: %s",
			       what, bytes, strerror(-err));
	p->hdr->bytes = bytes;
	if (p->file_backed) {
		err = load_file(p);
		if (err)
			return err;
	}
	/* Valid only once loaded: a half-built object has no magic. */
	memcpy(p->hdr->magic, RAM_MAGIC, sizeof(p->hdr->magic));
	return 0;
}

static int obj_attach(struct ram_priv *p, const char *what, uint64_t bytes)
{
	struct stat st;
	struct ram_hdr h;
	int err;

	if (fstat(p->fd, &st) < 0)
		return td_fail(errno, "ram:%s: %s", what, strerror(errno));
	if ((uint64_t)st.st_size < HDR_BYTES ||
	    pread(p->fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h) ||
	    memcmp(h.magic, RAM_MAGIC, sizeof(h.magic)) ||
	    h.bytes != (uint64_t)st.st_size - HDR_BYTES)
		return td_fail(EINVAL, "ram:%s: shared object %s is not a RAM "
			       "disk in use", what, p->obj);
	if (h.bytes != bytes)
		return td_fail(EINVAL, "ram:%s: the RAM disk in use has %"
			       PRIu64 " bytes, not %" PRIu64, what, h.bytes,
			       bytes);
	err = map(p, bytes);
	if (err)
		return td_fail(-err, "ram:%s: cannot map %" PRIu64 " bytes: %s",
			       what, bytes, strerror(-err));
	return 0;
}

static int ram_open(struct td_image *img, const char *params, unsigned flags)
{
	struct ram_priv *p = img->priv;
	char what[PATH_MAX];
	uint64_t bytes;
	bool save;
	int err;

	p->fd = -1;
	p->rdonly = flags & TD_IMAGE_RDONLY;
	err = parse_params(params, what, sizeof(what), &bytes, &save);
	if (err)
		return err;
	if (bytes) {
		const char *slash = strrchr(what, '/');
		const char *dir = shm_dir();
		size_t dlen = strlen(dir);

		while (dlen > 1 && dir[dlen - 1] == '/')
			dlen--;
		if (!slash || (size_t)(slash - what) != dlen ||
		    strncmp(what, dir, dlen) || !valid_name(slash + 1) ||
		    !strncmp(slash + 1, "td-ram-f-", 9))
			return td_fail(EINVAL, "ram:%s: an empty RAM disk is "
				       "ram:%.*s/NAME?size=SIZE, NAME of "
				       "letters, digits, '.', '_' and '-' (at "
				       "most %d)", params, (int)dlen, dir,
				       NAME_MAX_LEN);
		snprintf(p->obj, sizeof(p->obj), "%s", what);
	} else {
		struct stat st;
		int fd;

		/* Opened, not stat'ed: refuses what we could not use. */
		fd = open(what, (save ? O_RDWR : O_RDONLY) | O_CLOEXEC);
		if (fd < 0)
			return td_fail(errno, "%s: %s", what, strerror(errno));
		if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
			close(fd);
			return td_fail(EINVAL, "%s: not a regular file (for an "
				       "empty RAM disk: ram:NAME?size=SIZE)",
				       what);
		}
		close(fd);
		if (!st.st_size || st.st_size % (1 << SECTOR_SHIFT))
			return td_fail(EINVAL, "%s: size %jd is not a non-zero "
				       "multiple of 512 bytes", what,
				       (intmax_t)st.st_size);
		if (save && p->rdonly)
			return td_fail(EINVAL, "ram:%s: 'save' on a read-only "
				       "disk", params);
		bytes = (uint64_t)st.st_size;
		p->file_backed = true;
		snprintf(p->file, sizeof(p->file), "%s", what);
		if (snprintf(p->obj, sizeof(p->obj), "%s/td-ram-f-%jx-%jx",
			     shm_dir(), (uintmax_t)st.st_dev,
			     (uintmax_t)st.st_ino) >= (int)sizeof(p->obj))
			return td_fail(ENAMETOOLONG, "BLKTAP_RAM_DIR is too "
				       "long");
	}

	for (;;) {
		struct stat st;

		p->fd = obj_open(p);
		if (p->fd < 0)
			return td_fail(errno, "ram:%s: cannot open shared memory "
				       "%s: %s", what, p->obj, strerror(errno));
		err = gate_lock(p);
		if (err) {
			close(p->fd);
			p->fd = -1;
			return td_fail(-err, "ram:%s: cannot lock %s: %s", what,
				       p->obj, err == -ETIMEDOUT ?
				       "another tapdisk holds it (loading or "
				       "saving?)" : strerror(-err));
		}
		/* Unlinked by the last user between our open and our lock. */
		if (fstat(p->fd, &st) == 0 && st.st_nlink > 0)
			break;
		gate_unlock(p);
		close(p->fd);
	}
	if (others_attached(p)) {
		err = obj_attach(p, what, bytes);
	} else {
		if (lseek(p->fd, 0, SEEK_END) > 0)
			td_warn("ram:%s: %s had no users left (they crashed?); "
				"starting afresh", what, p->obj);
		err = obj_init(p, what, bytes);
	}
	if (!err && lock_byte(p->fd, F_RDLCK, USERS_BYTE, false) < 0)
		err = td_fail(errno, "ram:%s: cannot register as a user of %s: "
			      "%s", what, p->obj, strerror(errno));
	if (err) {
		/* Nobody else uses it: leave nothing behind. */
		if (!others_attached(p))
			obj_unlink(p);
		unmap(p);
		gate_unlock(p);
		close(p->fd);
		p->fd = -1;
		return err;
	}
	if (save)
		p->hdr->flags |= RAM_SAVE;
	p->hdr->users++;
	gate_unlock(p);
	img->sectors = bytes >> SECTOR_SHIFT;
	img->chunk_sectors = 0;
	img->can_discard = false;
	return 0;
}

static void ram_close(struct td_image *img)
{
	struct ram_priv *p = img->priv;
	int err;

	if (p->fd < 0)
		return;
	err = gate_lock(p);
	if (err)
		td_err("%s: cannot lock it to close: %s", p->obj,
		       strerror(-err));
	lock_byte(p->fd, F_UNLCK, USERS_BYTE, false);
	p->hdr->users--;
	if (!err && !others_attached(p)) {
		if (p->file_backed && (p->hdr->flags & RAM_SAVE)) {
			if (save_file(p))
				td_err("%s", td_errmsg());
			else
				td_info("%s: RAM disk saved", p->file);
		}
		if (obj_unlink(p) < 0)
			td_err("%s: cannot remove it: %s", p->obj,
			       strerror(errno));
	}
	unmap(p);
	if (!err)
		gate_unlock(p);
	close(p->fd);
	p->fd = -1;
}

static void ram_queue_read(struct td_image *img, struct td_treq *t)
{
	struct ram_priv *p = img->priv;
	uint32_t i;

	for (i = 0; i < t->secs; i++) {
		uint32_t n = 0;

		if (td_treq_filled(t, i) || t->sec + i >= img->sectors)
			continue;
		while (i + n < t->secs && t->sec + i + n < img->sectors &&
		       !td_treq_filled(t, i + n))
			n++;
		memcpy(t->buf + ((size_t)i << SECTOR_SHIFT),
		       p->data + ((t->sec + i) << SECTOR_SHIFT),
		       (size_t)n << SECTOR_SHIFT);
		td_treq_fill(t, i, n);
		i += n - 1;
	}
	td_treq_forward(t);
}

static void ram_queue_write(struct td_image *img, struct td_treq *t)
{
	struct ram_priv *p = img->priv;

	td_treq_get(t);
	if (p->rdonly) {
		td_treq_put(t, -EROFS);
	} else if (t->sec > img->sectors || t->secs > img->sectors - t->sec) {
		td_err("%s: write of %u sectors at %" PRIu64 " past the end",
		       img->params, t->secs, t->sec);
		td_treq_put(t, -EINVAL);
	} else {
		memcpy(p->data + (t->sec << SECTOR_SHIFT), t->buf,
		       (size_t)t->secs << SECTOR_SHIFT);
		td_treq_put(t, 0);
	}
	td_treq_issued(t);
}

/* The disk is memory: nothing is more stable after a flush (see man). */
static void ram_queue_flush(struct td_image *img, struct td_treq *t)
{
	(void)img;
	td_treq_issued(t);
}

static int ram_get_parent(struct td_image *img, struct td_parent *parent)
{
	(void)img;
	(void)parent;
	return -ENOENT;
}

const struct td_driver td_drv_ram = {
	.name		= "ram",
	.priv_size	= sizeof(struct ram_priv),
	.open		= ram_open,
	.close		= ram_close,
	.queue_read	= ram_queue_read,
	.queue_write	= ram_queue_write,
	.queue_flush	= ram_queue_flush,
	.get_parent	= ram_get_parent,
};
