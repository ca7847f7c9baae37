/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * tio: asynchronous file I/O for tapdisk, on libaio.
 *
 * - Requests come from a pool sized at tio_init(); nothing is allocated
 *   while I/O runs.  tio_get() returns NULL when the pool is empty, and
 *   the hook given to tio_set_available() is called whenever entries are
 *   returned, so callers park work and resume it there.  The last
 *   TIO_RESERVED entries go only to TIO_PRIO_META callers (drivers'
 *   metadata), so data I/O can never starve the metadata it waits for.
 * - tio_submit() only queues.  Before the loop sleeps, queued requests are
 *   sorted and adjacent ones (same file, same direction, contiguous bytes,
 *   same FUA flag) merged into one preadv/pwritev iocb, up to
 *   TIO_MAX_MERGE_IOV requests or TIO_MAX_MERGE_BYTES; then one io_submit.
 *   Merges are counted (tio_stats).
 * - Completions arrive on an eventfd watched by the event loop.
 * - TIO_FDSYNC is IOCB_CMD_FDSYNC: a flush that does not stall other I/O.
 *   It covers every write that completed before it was submitted.
 * - TIO_FUA writes carry RWF_DSYNC.
 * - Transient errors (EAGAIN, EBUSY, EINTR, and EIO when tio_set_eio_
 *   transient(true)) are retried every TIO_RETRY_MS until the request's
 *   deadline; then, and for any other error, done() gets the error.
 *   A short read or write is retried for the remainder like a transient
 *   error; at EOF a read is completed with zeros for the rest.
 * - Requests whose offset, length or buffer are not aligned for O_DIRECT
 *   on their file go through the file's buffered descriptor instead.
 */
#ifndef TD_TIO_H
#define TD_TIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TIO_RESERVED		64
#define TIO_MAX_MERGE_IOV	64
#define TIO_MAX_MERGE_BYTES	(4u << 20)
#define TIO_RETRY_MS		1000

enum tio_op { TIO_READ, TIO_WRITE, TIO_FDSYNC };

#define TIO_FUA			0x1	/* write: RWF_DSYNC */

enum tio_prio { TIO_PRIO_DATA, TIO_PRIO_META };

struct tio_file {
	int		fd;		/* O_DIRECT unless opened with direct=false */
	int		fd_buffered;	/* same file, page cache; for unaligned I/O */
	uint32_t	dio_align;	/* offset/length/buffer alignment for fd */
	bool		readonly;
	const char	*path;		/* for messages; owned by the caller */
};

struct tio_req;
/* @err: 0, or a negative errno after retries are exhausted. */
typedef void (*tio_done_fn)(struct tio_req *r, int err);

struct tio_req {
	/* Set by the caller between tio_get() and tio_submit(). */
	struct tio_file	*file;
	enum tio_op	op;
	unsigned	flags;		/* TIO_FUA */
	void		*buf;
	size_t		len;		/* bytes */
	uint64_t	off;		/* bytes */
	uint64_t	deadline_ms;	/* td_now_ms() after which no retry; 0: none */
	tio_done_fn	done;
	void		*arg;		/* caller's */
	/* Private to tio. */
	struct tio_req	*next;
	size_t		done_bytes;
	unsigned	retries;
	int		last_err;
	void		*iocb;
};

struct tio_stats {
	uint64_t	submitted;	/* tio requests */
	uint64_t	iocbs;		/* iocbs given to io_submit */
	uint64_t	merges;		/* requests that rode in another's iocb */
	uint64_t	retries;
	uint64_t	errors_transient;	/* seen, whether or not retried away */
	uint64_t	errors_permanent;
	uint64_t	timeouts;	/* transient errors given up at the deadline */
	uint64_t	inflight;	/* iocbs in the kernel now */
	uint64_t	faults_injected;
};

/* Set up for @nr_reqs requests (and as many iocbs); registers with the loop. */
int tio_init(unsigned nr_reqs);
void tio_fini(void);

/* Open @path for I/O; @direct: O_DIRECT on file->fd. -errno, td_errmsg set. */
int tio_file_open(struct tio_file *file, const char *path, bool readonly,
		  bool direct);
void tio_file_close(struct tio_file *file);

struct tio_req *tio_get(enum tio_prio prio);
/*
 * Queue @r; done() is always called later from the loop, never inside
 * tio_submit(), and @r returns to the pool when done() returns.
 */
void tio_submit(struct tio_req *r);
/* Entries were returned to the pool: called once per loop iteration. */
void tio_set_available(void (*cb)(void *arg), void *arg);

/* Treat EIO as transient (storage like NFS soft mounts). */
void tio_set_eio_transient(bool on);
bool tio_errno_transient(int err);	/* positive errno */

/* Test-only: the next @count I/Os of the TD_FAULT_* kinds in @ops fail with -@err. */
void tio_inject_fault(unsigned count, int err, unsigned ops);

void tio_get_stats(struct tio_stats *st);

#endif
