/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * qcow version 1: the on-disk codec shared by tapdisk's qcow driver and
 * the qcow tools (qcow-create, img2qcow, qcow2raw).
 *
 * Layout: a 48-byte big-endian header; optionally blktap's extension
 * right after it (16 bytes: "XEN\xfb", an L1 checksum, min_cluster_alloc,
 * flags), recognised only when the L1 table starts on a 4 KiB boundary;
 * the backing file's name; the L1 table of u64 L2 table offsets; L2
 * tables of u64 cluster offsets.  An L2 entry with bit 63 set is a
 * zlib-compressed (raw deflate) cluster: the next cluster_bits bits hold
 * its byte length, the bits below its byte offset.  Zero means "not
 * allocated": read from the backing file, or zeros.
 *
 * The extension's checksum is the first four bytes of the MD5 of the
 * big-endian L1 table, taken as a little-endian u32 and stored
 * big-endian.  Flag 0x2 says the L1 table is big-endian; without it
 * (older images) it is little-endian.  Flag 0x1 marks a sparse file.
 * min_cluster_alloc == the L2 size asks for "optimised" allocation: a
 * new L2 table comes with all of its clusters, right after it.
 */
#ifndef TD_QCOW_FORMAT_H
#define TD_QCOW_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <zlib.h>

#define QCOW_MAGIC		0x514649fbu	/* "QFI\xfb" */
#define QCOW_XEN_MAGIC		0x58454efbu	/* "XEN\xfb" */
#define QCOW_VERSION		1u
#define QCOW_HEADER_SIZE	48u
#define QCOW_EXT_SIZE		16u
#define QCOW_EXT_CKSUM_OFF	(QCOW_HEADER_SIZE + 4u)
#define QCOW_CRYPT_NONE		0u
#define QCOW_CRYPT_AES		1u
#define QCOW_EXT_SPARSE		0x1u
#define QCOW_EXT_L1_BE		0x2u
#define QCOW_OFLAG_COMPRESSED	(1ull << 63)

/* The limits QEMU applies too. */
#define QCOW_MIN_CLUSTER_BITS	9u
#define QCOW_MAX_CLUSTER_BITS	16u
#define QCOW_MIN_L2_BITS	6u
#define QCOW_MAX_L2_BITS	13u
#define QCOW_MAX_L1_BYTES	(32u << 20)
#define QCOW_MAX_BACKING_LEN	1023u
#define QCOW_MAX_CHAIN		256

struct qcow_header {
	uint32_t	magic;
	uint32_t	version;
	uint64_t	backing_off;
	uint32_t	backing_len;
	uint32_t	mtime;
	uint64_t	size;		/* bytes */
	uint8_t		cluster_bits;
	uint8_t		l2_bits;
	uint32_t	crypt;
	uint64_t	l1_off;
	/* blktap's extension, when has_ext. */
	bool		has_ext;
	uint32_t	cksum;
	uint32_t	min_cluster_alloc;
	uint32_t	flags;
};

/* Sizes that follow from a header. */
struct qcow_geom {
	uint32_t	cluster_size;	/* bytes */
	uint32_t	cluster_secs;
	uint32_t	l2_size;	/* entries */
	uint32_t	l2_bytes;
	uint32_t	l2_secs;	/* sectors one L2 table maps */
	uint64_t	l1_size;	/* entries */
	uint64_t	l1_bytes;
	uint64_t	sectors;	/* virtual size */
	bool		optimised;	/* whole L2 runs asked for */
};

/* Bytes of the header and extension: read at least this much. */
#define QCOW_HEAD_BYTES		(QCOW_HEADER_SIZE + QCOW_EXT_SIZE)

void qcow_header_decode(struct qcow_header *h, const uint8_t *buf);
/* QCOW_HEAD_BYTES, the extension only when h->has_ext (else zeros). */
void qcow_header_encode(const struct qcow_header *h, uint8_t *buf);

/*
 * Check @h against a file of @file_size bytes and fill @g.  0, or -errno
 * with a reason in @why (no file name: the caller adds it).
 */
int qcow_header_check(const struct qcow_header *h, uint64_t file_size,
		      struct qcow_geom *g, char *why, size_t whylen);

/* An L2 entry: 0 when fine, else -EINVAL and @why. */
int qcow_l2_entry_check(const struct qcow_geom *g, unsigned cluster_bits,
			uint64_t e, uint64_t limit, char *why, size_t whylen);

static inline bool qcow_is_compressed(uint64_t e)
{
	return e & QCOW_OFLAG_COMPRESSED;
}

static inline uint64_t qcow_coff(uint64_t e, unsigned cluster_bits)
{
	return e & ((1ull << (63 - cluster_bits)) - 1);
}

static inline uint32_t qcow_csize(uint64_t e, unsigned cluster_bits)
{
	return (uint32_t)((e >> (63 - cluster_bits)) &
			  ((1ull << cluster_bits) - 1));
}

static inline uint64_t qcow_get_be64(const uint8_t *p)
{
	return (uint64_t)p[0] << 56 | (uint64_t)p[1] << 48 |
	       (uint64_t)p[2] << 40 | (uint64_t)p[3] << 32 |
	       (uint64_t)p[4] << 24 | (uint64_t)p[5] << 16 |
	       (uint64_t)p[6] << 8 | p[7];
}

static inline void qcow_put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

void qcow_md5(const void *data, size_t len, uint8_t out[16]);
/* The extension's checksum of a big-endian L1 table of @bytes. */
uint32_t qcow_l1_cksum(const void *l1_be, size_t bytes);

/*
 * Inflate one compressed cluster: @zs was set up with
 * inflateInit2(zs, -15); exactly @outlen bytes must come out.  0 or -EIO.
 */
int qcow_inflate(z_stream *zs, const void *in, size_t inlen, void *out,
		 size_t outlen);

/*
 * An old blktap image's L1 table (extension without QCOW_EXT_L1_BE) is
 * little-endian: turn @l1 (g->l1_bytes of it) big-endian in place, and
 * say true.  False, @l1 untouched, for a big-endian table.
 */
bool qcow_l1_to_be(const struct qcow_header *h, const struct qcow_geom *g,
		   uint8_t *l1);
/*
 * The big-endian L1 table @l1 into @out (g->l1_size entries, host
 * order), each entry checked to leave room for an L2 table in a file of
 * @file_size bytes.  0, or -EINVAL with @why naming the first bad entry.
 */
int qcow_l1_decode(const struct qcow_geom *g, const uint8_t *l1,
		   uint64_t file_size, uint64_t *out, char *why, size_t whylen);

/*
 * pread/pwrite of all @len bytes, EINTR retried; 0 or -errno.  Past the
 * end of the file qcow_pread() reads zeros.
 */
int qcow_pread(int fd, void *buf, size_t len, uint64_t off);
int qcow_pwrite(int fd, const void *buf, size_t len, uint64_t off);

/*
 * Read the header (and the backing file's name into @backing, "" when
 * none) from @fd, and check them.  0 or -errno with @why.
 */
int qcow_read_meta(int fd, struct qcow_header *h, struct qcow_geom *g,
		   uint64_t *file_size, char *backing, size_t backing_len,
		   char *why, size_t whylen);

/* A relative backing name is relative to the image's directory. */
void qcow_backing_path(const char *image, const char *name, char *out,
		       size_t outlen);

/*
 * The driver for @path by its content: "qcow", "vhd" or "aio" (raw).
 * 0 or -errno with @why.
 */
int qcow_probe(const char *path, char *type, size_t typelen, char *why,
	       size_t whylen);

/*
 * Walk the backing chain below @path (qcow images only) and fail with
 * -ELOOP when a file comes back, or a chain deeper than QCOW_MAX_CHAIN.
 */
int qcow_chain_check(const char *path, char *why, size_t whylen);

#endif
