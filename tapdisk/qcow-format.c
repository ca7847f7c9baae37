// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * qcow version 1 codec: header, extension, checks, L1 checksum (MD5, as
 * RFC 1321), compressed clusters, backing files.  See qcow-format.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qcow-format.h"

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 |
	       (uint32_t)p[2] << 8 | p[3];
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

void qcow_header_decode(struct qcow_header *h, const uint8_t *b)
{
	memset(h, 0, sizeof(*h));
	h->magic = get32(b);
	h->version = get32(b + 4);
	h->backing_off = qcow_get_be64(b + 8);
	h->backing_len = get32(b + 16);
	h->mtime = get32(b + 20);
	h->size = qcow_get_be64(b + 24);
	h->cluster_bits = b[32];
	h->l2_bits = b[33];
	h->crypt = get32(b + 36);
	h->l1_off = qcow_get_be64(b + 40);
	/*
	 * blktap only trusts the extension with the L1 table page aligned;
	 * nor may the backing name overlap it.
	 */
	if (get32(b + 48) == QCOW_XEN_MAGIC && h->l1_off % 4096 == 0 &&
	    h->l1_off >= QCOW_HEAD_BYTES &&
	    (!h->backing_len || h->backing_off >= QCOW_HEAD_BYTES)) {
		h->has_ext = true;
		h->cksum = get32(b + 52);
		h->min_cluster_alloc = get32(b + 56);
		h->flags = get32(b + 60);
	}
}

void qcow_header_encode(const struct qcow_header *h, uint8_t *b)
{
	memset(b, 0, QCOW_HEAD_BYTES);
	put32(b, h->magic);
	put32(b + 4, h->version);
	qcow_put_be64(b + 8, h->backing_off);
	put32(b + 16, h->backing_len);
	put32(b + 20, h->mtime);
	qcow_put_be64(b + 24, h->size);
	b[32] = h->cluster_bits;
	b[33] = h->l2_bits;
	put32(b + 36, h->crypt);
	qcow_put_be64(b + 40, h->l1_off);
	if (h->has_ext) {
		put32(b + 48, QCOW_XEN_MAGIC);
		put32(b + 52, h->cksum);
		put32(b + 56, h->min_cluster_alloc);
		put32(b + 60, h->flags);
	}
}

int qcow_header_check(const struct qcow_header *h, uint64_t file_size,
		      struct qcow_geom *g, char *why, size_t whylen)
{
	unsigned shift;

	memset(g, 0, sizeof(*g));
	if (h->magic != QCOW_MAGIC) {
		snprintf(why, whylen, "not a qcow image (bad magic 0x%08x)",
			 h->magic);
		return -EINVAL;
	}
	if (h->version != QCOW_VERSION) {
		snprintf(why, whylen, "qcow version %u is not supported "
			 "(only version 1%s)", h->version,
			 h->version == 2 || h->version == 3 ?
			 "; this is qcow2" : "");
		return -EOPNOTSUPP;
	}
	if (h->crypt == QCOW_CRYPT_AES) {
		snprintf(why, whylen, "AES-encrypted qcow images are not "
			 "supported (the scheme is broken and deprecated; "
			 "convert it with qemu-img first)");
		return -EOPNOTSUPP;
	}
	if (h->crypt != QCOW_CRYPT_NONE) {
		snprintf(why, whylen, "unknown encryption method %u", h->crypt);
		return -EINVAL;
	}
	if (h->cluster_bits < QCOW_MIN_CLUSTER_BITS ||
	    h->cluster_bits > QCOW_MAX_CLUSTER_BITS) {
		snprintf(why, whylen, "cluster_bits %u out of range (%u-%u)",
			 h->cluster_bits, QCOW_MIN_CLUSTER_BITS,
			 QCOW_MAX_CLUSTER_BITS);
		return -EINVAL;
	}
	if (h->l2_bits < QCOW_MIN_L2_BITS || h->l2_bits > QCOW_MAX_L2_BITS) {
		snprintf(why, whylen, "l2_bits %u out of range (%u-%u)",
			 h->l2_bits, QCOW_MIN_L2_BITS, QCOW_MAX_L2_BITS);
		return -EINVAL;
	}
	if (h->size < 512 || h->size > (1ull << 62)) {
		snprintf(why, whylen, "virtual size %" PRIu64 " bytes is not "
			 "valid", h->size);
		return -EINVAL;
	}
	shift = h->cluster_bits + h->l2_bits;
	g->cluster_size = 1u << h->cluster_bits;
	g->cluster_secs = g->cluster_size >> 9;
	g->l2_size = 1u << h->l2_bits;
	g->l2_bytes = g->l2_size * 8;
	g->l2_secs = (uint32_t)(1ull << (shift - 9));
	g->l1_size = (h->size + (1ull << shift) - 1) >> shift;
	g->l1_bytes = g->l1_size * 8;
	g->sectors = h->size >> 9;
	if (g->l1_bytes > QCOW_MAX_L1_BYTES) {
		snprintf(why, whylen, "L1 table of %" PRIu64 " entries is too "
			 "large", g->l1_size);
		return -EINVAL;
	}
	if (h->l1_off < QCOW_HEADER_SIZE || h->l1_off > file_size ||
	    g->l1_bytes > file_size - h->l1_off) {
		snprintf(why, whylen, "L1 table (offset %" PRIu64 ", %" PRIu64
			 " bytes) lies past the end of the file (%" PRIu64
			 " bytes)", h->l1_off, g->l1_bytes, file_size);
		return -EINVAL;
	}
	if (h->backing_len) {
		if (h->backing_len > QCOW_MAX_BACKING_LEN) {
			snprintf(why, whylen, "backing file name of %u bytes "
				 "is too long", h->backing_len);
			return -EINVAL;
		}
		if (h->backing_off < QCOW_HEADER_SIZE ||
		    h->backing_off > file_size ||
		    h->backing_len > file_size - h->backing_off) {
			snprintf(why, whylen, "backing file name (offset %"
				 PRIu64 ") lies past the end of the file",
				 h->backing_off);
			return -EINVAL;
		}
	}
	/* Whole runs of clusters would hide a backing file's data. */
	g->optimised = h->has_ext && h->min_cluster_alloc == g->l2_size &&
		       !h->backing_len;
	return 0;
}

int qcow_l2_entry_check(const struct qcow_geom *g, unsigned cluster_bits,
			uint64_t e, uint64_t limit, char *why, size_t whylen)
{
	uint64_t off;

	if (qcow_is_compressed(e)) {
		uint32_t len = qcow_csize(e, cluster_bits);

		off = qcow_coff(e, cluster_bits);
		if (!len || off < QCOW_HEADER_SIZE || off > limit ||
		    len > limit - off) {
			snprintf(why, whylen, "compressed cluster (offset %"
				 PRIu64 ", %u bytes) lies past the end of the "
				 "file (%" PRIu64 " bytes)", off, len, limit);
			return -EINVAL;
		}
		return 0;
	}
	(void)g;
	if (e % 512 || e < QCOW_HEADER_SIZE || e >= limit) {
		snprintf(why, whylen, "cluster offset %" PRIu64 " %s (file of %"
			 PRIu64 " bytes)", e,
			 e % 512 ? "is not sector aligned" :
			 "lies past the end of the file", limit);
		return -EINVAL;
	}
	return 0;
}

/* ---- MD5 (RFC 1321) ---- */

static const uint32_t md5_k[64] = {
	0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a,
	0xa8304613, 0xfd469501, 0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be,
	0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821, 0xf61e2562, 0xc040b340,
	0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
	0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8,
	0x676f02d9, 0x8d2a4c8a, 0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c,
	0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70, 0x289b7ec6, 0xeaa127fa,
	0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
	0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92,
	0xffeff47d, 0x85845dd1, 0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1,
	0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391,
};

static const uint8_t md5_r[64] = {
	7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22,
	5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20,
	4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23,
	6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
};

static void md5_block(uint32_t st[4], const uint8_t *p)
{
	uint32_t m[16], a = st[0], b = st[1], c = st[2], d = st[3];

	for (int i = 0; i < 16; i++)
		m[i] = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 |
		       (uint32_t)p[4 * i + 2] << 16 |
		       (uint32_t)p[4 * i + 3] << 24;
	for (int i = 0; i < 64; i++) {
		uint32_t f, t;
		int g;

		if (i < 16) {
			f = (b & c) | (~b & d);
			g = i;
		} else if (i < 32) {
			f = (d & b) | (~d & c);
			g = (5 * i + 1) % 16;
		} else if (i < 48) {
			f = b ^ c ^ d;
			g = (3 * i + 5) % 16;
		} else {
			f = c ^ (b | ~d);
			g = (7 * i) % 16;
		}
		t = d;
		d = c;
		c = b;
		f += a + md5_k[i] + m[g];
		b += (f << md5_r[i]) | (f >> (32 - md5_r[i]));
		a = t;
	}
	st[0] += a;
	st[1] += b;
	st[2] += c;
	st[3] += d;
}

void qcow_md5(const void *data, size_t len, uint8_t out[16])
{
	uint32_t st[4] = { 0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476 };
	const uint8_t *p = data;
	uint8_t tail[128];
	uint64_t bits = (uint64_t)len * 8;
	size_t left, n;

	for (n = len; n >= 64; n -= 64, p += 64)
		md5_block(st, p);
	left = n;
	memset(tail, 0, sizeof(tail));
	if (left)
		memcpy(tail, p, left);
	tail[left] = 0x80;
	n = left < 56 ? 64 : 128;
	for (int i = 0; i < 8; i++)
		tail[n - 8 + i] = (uint8_t)(bits >> (8 * i));
	md5_block(st, tail);
	if (n == 128)
		md5_block(st, tail + 64);
	for (int i = 0; i < 4; i++)
		for (int j = 0; j < 4; j++)
			out[4 * i + j] = (uint8_t)(st[i] >> (8 * j));
}

uint32_t qcow_l1_cksum(const void *l1_be, size_t bytes)
{
	uint8_t md[16];

	qcow_md5(l1_be, bytes, md);
	/* blktap copied the first 4 digest bytes into a u32 on x86. */
	return (uint32_t)md[0] | (uint32_t)md[1] << 8 |
	       (uint32_t)md[2] << 16 | (uint32_t)md[3] << 24;
}

/* ---- compressed clusters ---- */

int qcow_inflate(z_stream *zs, const void *in, size_t inlen, void *out,
		 size_t outlen)
{
	int ret;

	if (inflateReset(zs) != Z_OK)
		return -EIO;
	zs->next_in = (Bytef *)(uintptr_t)in;
	zs->avail_in = (uInt)inlen;
	zs->next_out = out;
	zs->avail_out = (uInt)outlen;
	ret = inflate(zs, Z_FINISH);
	/* QEMU stops at the cluster's size: the stream may not end there. */
	if ((ret != Z_STREAM_END && ret != Z_BUF_ERROR && ret != Z_OK) ||
	    zs->avail_out)
		return -EIO;
	return 0;
}

/* ---- the L1 table ---- */

bool qcow_l1_to_be(const struct qcow_header *h, const struct qcow_geom *g,
		   uint8_t *l1)
{
	if (!h->has_ext || (h->flags & QCOW_EXT_L1_BE))
		return false;
	for (uint64_t k = 0; k < g->l1_size; k++) {
		uint64_t v = 0;

		for (int b = 7; b >= 0; b--)
			v = v << 8 | l1[k * 8 + (unsigned)b];
		qcow_put_be64(l1 + k * 8, v);
	}
	return true;
}

int qcow_l1_decode(const struct qcow_geom *g, const uint8_t *l1,
		   uint64_t file_size, uint64_t *out, char *why, size_t whylen)
{
	for (uint64_t k = 0; k < g->l1_size; k++) {
		uint64_t v = qcow_get_be64(l1 + k * 8);

		if (v && (v < QCOW_HEADER_SIZE || v > file_size ||
			  g->l2_bytes > file_size - v)) {
			snprintf(why, whylen, "L1 entry %" PRIu64 " points past "
				 "the end of the file (L2 table at %" PRIu64
				 ", file of %" PRIu64 " bytes)", k, v,
				 file_size);
			return -EINVAL;
		}
		out[k] = v;
	}
	return 0;
}

/* ---- files ---- */

/*
 * pread (@rbuf) or pwrite (@wbuf) until @len bytes are done, EINTR
 * retried.  A read stops at the end of the file (*done short); a write
 * that makes no progress is an EIO.  0 or -errno.
 */
static int rw_all(int fd, void *rbuf, const void *wbuf, size_t len,
		  uint64_t off, size_t *done)
{
	*done = 0;
	while (*done < len) {
		ssize_t n = rbuf ?
			pread(fd, (char *)rbuf + *done, len - *done,
			      (off_t)(off + *done)) :
			pwrite(fd, (const char *)wbuf + *done, len - *done,
			       (off_t)(off + *done));

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (!n)
			return rbuf ? 0 : -EIO;
		*done += (size_t)n;
	}
	return 0;
}

int qcow_pread(int fd, void *buf, size_t len, uint64_t off)
{
	size_t done;
	int err = rw_all(fd, buf, NULL, len, off, &done);

	if (!err)
		memset((char *)buf + done, 0, len - done);
	return err;
}

int qcow_pwrite(int fd, const void *buf, size_t len, uint64_t off)
{
	size_t done;

	return rw_all(fd, NULL, buf, len, off, &done);
}

int qcow_read_meta(int fd, struct qcow_header *h, struct qcow_geom *g,
		   uint64_t *file_size, char *backing, size_t backing_len,
		   char *why, size_t whylen)
{
	uint8_t head[QCOW_HEAD_BYTES];
	struct stat st;
	int err;

	backing[0] = '\0';
	if (fstat(fd, &st) < 0) {
		err = -errno;
		snprintf(why, whylen, "stat: %s", strerror(errno));
		return err;
	}
	*file_size = (uint64_t)st.st_size;
	if (*file_size < QCOW_HEADER_SIZE) {
		snprintf(why, whylen, "file of %" PRIu64 " bytes is too small "
			 "for a qcow header", *file_size);
		return -EINVAL;
	}
	err = qcow_pread(fd, head, sizeof(head), 0);
	if (err) {
		snprintf(why, whylen, "cannot read the header: %s",
			 strerror(-err));
		return err;
	}
	qcow_header_decode(h, head);
	err = qcow_header_check(h, *file_size, g, why, whylen);
	if (err)
		return err;
	if (h->backing_len) {
		if (h->backing_len >= backing_len) {
			snprintf(why, whylen, "backing file name too long");
			return -ENAMETOOLONG;
		}
		err = qcow_pread(fd, backing, h->backing_len, h->backing_off);
		if (err) {
			snprintf(why, whylen, "cannot read the backing file "
				 "name: %s", strerror(-err));
			return err;
		}
		backing[h->backing_len] = '\0';
		if (strlen(backing) != h->backing_len) {
			snprintf(why, whylen, "backing file name holds a NUL");
			return -EINVAL;
		}
	}
	return 0;
}

void qcow_backing_path(const char *image, const char *name, char *out,
		       size_t outlen)
{
	const char *slash = strrchr(image, '/');

	if (name[0] == '/' || !slash)
		snprintf(out, outlen, "%s", name);
	else
		snprintf(out, outlen, "%.*s/%s", (int)(slash - image), image,
			 name);
}

int qcow_probe(const char *path, char *type, size_t typelen, char *why,
	       size_t whylen)
{
	uint8_t head[8] = { 0 };
	int fd = open(path, O_RDONLY | O_CLOEXEC), err;

	if (fd < 0) {
		err = -errno;
		snprintf(why, whylen, "%s: %s", path, strerror(errno));
		return err;
	}
	err = qcow_pread(fd, head, sizeof(head), 0);
	close(fd);
	if (err) {
		snprintf(why, whylen, "%s: %s", path, strerror(-err));
		return err;
	}
	if (get32(head) == QCOW_MAGIC)
		snprintf(type, typelen, "qcow");
	else if (!memcmp(head, "conectix", 8))
		snprintf(type, typelen, "vhd");
	else
		snprintf(type, typelen, "aio");
	return 0;
}

int qcow_chain_check(const char *path, char *why, size_t whylen)
{
	struct { dev_t dev; ino_t ino; } seen[QCOW_MAX_CHAIN];
	char cur[PATH_MAX], name[QCOW_MAX_BACKING_LEN + 1], next[PATH_MAX];
	int depth;

	snprintf(cur, sizeof(cur), "%s", path);
	for (depth = 0; depth < QCOW_MAX_CHAIN; depth++) {
		struct qcow_header h;
		struct qcow_geom g;
		uint64_t fsize;
		struct stat st;
		char sub[256];
		int fd, err;

		fd = open(cur, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return 0;	/* opening it will say what is wrong */
		if (fstat(fd, &st) < 0) {
			close(fd);
			return 0;
		}
		for (int i = 0; i < depth; i++) {
			if (seen[i].dev == st.st_dev &&
			    seen[i].ino == st.st_ino) {
				close(fd);
				snprintf(why, whylen, "backing file loop: %.*s "
					 "comes back in its own chain", 900,
					 cur);
				return -ELOOP;
			}
		}
		seen[depth].dev = st.st_dev;
		seen[depth].ino = st.st_ino;
		err = qcow_read_meta(fd, &h, &g, &fsize, name, sizeof(name),
				     sub, sizeof(sub));
		close(fd);
		if (err || !name[0])
			return 0;	/* not qcow, or the end of the chain */
		qcow_backing_path(cur, name, next, sizeof(next));
		snprintf(cur, sizeof(cur), "%s", next);
	}
	snprintf(why, whylen, "backing chain deeper than %d images",
		 QCOW_MAX_CHAIN);
	return -ELOOP;
}
