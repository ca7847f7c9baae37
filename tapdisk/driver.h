/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The interface between tapdisk's core and its image drivers.
 *
 * An image is one file of a chain (leaf first).  The core splits each ring
 * request into treqs, none crossing a multiple of the leaf's
 * chunk_sectors, and hands each treq to the leaf's driver.
 *
 * Reads walk down the chain.  t->filled has one bit per sector of the
 * treq.  A driver's queue_read() issues I/O for every sector it holds
 * whose bit is clear, sets those bits (td_treq_fill), and then calls
 * td_treq_forward(): the core passes the treq to the parent, or fills the
 * remaining sectors with zeros when there is none.  Sectors at or past an
 * image's own size read as zeros and are not forwarded further.
 *
 * Writes go to the leaf only.  queue_write() issues what it needs and
 * calls td_treq_issued() once everything has been started.
 *
 * Every asynchronous step a driver starts for a treq is bracketed by
 * td_treq_get() and td_treq_put(err); the treq completes when it has been
 * forwarded to the bottom (reads) or issued (writes, flushes) and every
 * step has been put.  The first error wins.
 *
 * Waiting: a driver that cannot go on (a bitmap being read, a block being
 * allocated, no tio entry free) records where it stopped in t->cursor,
 * keeps the treq on its own list (t->next) and returns; later it calls
 * td_treq_resume(t), which calls queue_read/queue_write again.  For an
 * empty tio pool, td_treq_wait_tio() does the parking and resuming.
 */
#ifndef TD_DRIVER_H
#define TD_DRIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tio.h"

struct td_vreq;
struct td_image;

enum td_op { TD_OP_READ, TD_OP_WRITE, TD_OP_FLUSH };

#define TD_TREQ_FUA		0x1

/* The largest treq: one ring slot (BLKTAP_RING_MAX_SLOT_BYTES). */
#define TD_TREQ_MAX_SECTORS	8192u

struct td_treq {
	struct td_vreq	*vreq;		/* core's; opaque to drivers */
	struct td_image	*img;		/* the image working on it now */
	enum td_op	op;
	unsigned	flags;		/* TD_TREQ_FUA */
	uint64_t	sec;		/* first sector */
	uint32_t	secs;		/* sectors; 0 for FLUSH */
	char		*buf;		/* secs * 512 bytes, page aligned */
	uint8_t		*filled;	/* READ: one bit per sector (MSB first) */
	uint64_t	deadline_ms;	/* for tio requests: copy into tio_req */
	uint32_t	cursor;		/* driver's resume point, 0 on arrival */
	uint32_t	drv_state;	/* driver's, 0 on arrival at each image */
	struct td_treq	*next;		/* for the driver's wait lists */
	/* Core's bookkeeping. */
	int		pending;
	int		err;
	bool		issued;
	struct td_treq	*core_next;
};

#define TD_IMAGE_RDONLY		0x1	/* opened read-only (parents, -R) */
#define TD_IMAGE_NO_DIRECT	0x2	/* -D: no O_DIRECT */

struct td_parent {
	char		type[16];	/* driver name, e.g. "vhd" or "aio" */
	char		*path;		/* malloc'd; the core frees it */
};

struct td_image_stats {
	uint64_t	hits_rd, hits_wr;	/* treqs served */
	uint64_t	fail_rd, fail_wr;
	uint64_t	bytes_rd, bytes_wr;
};

struct td_image {
	const struct td_driver *drv;
	void		*priv;		/* drv->priv_size bytes, zeroed */
	char		*path;
	char		*params;	/* "type:path", for list and stats */
	unsigned	flags;		/* TD_IMAGE_* */
	/* Set by open(). */
	uint64_t	sectors;	/* virtual size */
	uint32_t	chunk_sectors;	/* treqs never cross a multiple; 0 = any */
	bool		can_discard;	/* drv->discard may be called */
	/* Set by the core. */
	struct td_image	*parent;	/* next image down, or NULL */
	int		level;		/* 0 = leaf */
	struct td_image_stats stats;
};

struct td_driver {
	const char	*name;		/* the type prefix: "aio", "vhd" */
	size_t		priv_size;
	/* Synchronous; 0 or -errno with td_fail() describing it. */
	int	(*open)(struct td_image *img, const char *path, unsigned flags);
	void	(*close)(struct td_image *img);
	void	(*queue_read)(struct td_image *img, struct td_treq *t);
	void	(*queue_write)(struct td_image *img, struct td_treq *t);
	/*
	 * Make every write completed so far stable (and any metadata the
	 * driver has not yet written, written).  Calls td_treq_issued().
	 */
	void	(*queue_flush)(struct td_image *img, struct td_treq *t);
	/* 0 and @p filled; -ENOENT when the image has no parent; -errno. */
	int	(*get_parent)(struct td_image *img, struct td_parent *p);
	/* Is @parent the image @img was made on?  0 or -errno (td_fail). */
	int	(*validate_parent)(struct td_image *img,
				   struct td_image *parent);
	/* Optional: may drop the data of the range (synchronous is fine). */
	int	(*discard)(struct td_image *img, uint64_t sec, uint32_t secs);
	/*
	 * Optional: close all but the tio files and reopen (after pause,
	 * when the file may have changed underneath).  Unused for now.
	 */
};

/* The drivers tapdisk knows; NULL when @name is not one. */
const struct td_driver *td_driver_find(const char *name);
extern const struct td_driver td_drv_aio;
extern const struct td_driver td_drv_vhd;
extern const struct td_driver td_drv_qcow;
extern const struct td_driver td_drv_ram;
extern const struct td_driver td_drv_vmdk;

/* ---- core services for drivers (vbd.c) ---- */
void td_treq_get(struct td_treq *t);
void td_treq_put(struct td_treq *t, int err);
void td_treq_fill(struct td_treq *t, uint32_t first, uint32_t n);
bool td_treq_filled(const struct td_treq *t, uint32_t i);
void td_treq_forward(struct td_treq *t);
void td_treq_issued(struct td_treq *t);
void td_treq_resume(struct td_treq *t);
void td_treq_wait_tio(struct td_treq *t);

/*
 * The common case in one call: take a data tio entry and submit
 * @op on @file for @len bytes at @off from @buf, bracketed by get/put on
 * @t (deadline copied).  -EAGAIN when the pool is empty: nothing was done;
 * the driver saves its cursor and calls td_treq_wait_tio(t).
 */
int td_treq_submit(struct td_treq *t, struct tio_file *file, enum tio_op op,
		   void *buf, size_t len, uint64_t off, unsigned tio_flags);

#endif
