// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * tio: asynchronous file I/O on libaio (see tio.h for the contract).
 *
 * A request is always on exactly one list, linked through r->next:
 *   free      in the pool;
 *   queue     waiting for the prepare hook to submit it;
 *   slot      riding in an iocb the kernel holds (r->iocb is the slot);
 *   retry     waiting for its retry time after a transient error;
 *   local     completed without the kernel (injected fault, synchronous
 *             fdatasync, refused by io_submit), to be finished from the
 *             eventfd callback.
 * Every done() call happens in the eventfd callback, which the loop runs
 * at most once per iteration; that is also where the "available" hook is
 * called, so it too runs once per iteration.
 */
#include <errno.h>
#include <fcntl.h>
#include <libaio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "event.h"
#include "log.h"
#include "tapdisk-control.h"
#include "tio.h"

/* After io_submit had no room, try again this soon. */
#define TIO_KICK_MS		5

/* Phases of a request (private state). */
enum {
	PH_IO,		/* its own op */
	PH_FUA_SYNC,	/* FUA emulated: the write is done, now an fdsync */
};

/* How the last attempt was made: decides which fallbacks apply. */
enum {
	VIA_CHECK,	/* refused by tio_submit's checks */
	VIA_AIO,
	VIA_AIO_FUA,	/* an iocb with RWF_DSYNC */
	VIA_FDATASYNC,	/* synchronous fdatasync() */
	VIA_FAULT,	/* an injected fault */
};

struct tio_priv {
	uint64_t	seq;	/* submission order: the sort's tie-break */
	uint64_t	due;	/* retry list: when to submit again */
	int		res;	/* local list: the result */
	int		fd;	/* the descriptor for this submission */
	uint8_t		phase;
	uint8_t		via;
};

struct tio_slot {
	struct iocb	iocb;
	struct tio_req	*members;	/* in file order, via ->next */
	unsigned	nr;
	enum tio_op	op;
	struct tio_slot	*next_free;
	struct iovec	iov[TIO_MAX_MERGE_IOV];
};

struct tio_list {
	struct tio_req	*head;
	struct tio_req	*tail;
};

static struct {
	bool		ready;
	io_context_t	ctx;
	int		efd;
	int		efd_id;
	int		retry_timer;
	uint64_t	retry_due;	/* of retry_timer */
	int		kick_timer;
	unsigned	nr;
	unsigned	nr_free;
	uint64_t	seq;
	struct tio_req	*reqs;
	struct tio_priv	*priv;
	struct tio_slot	*slots;
	struct io_event	*events;
	struct iocb	**vec;
	struct tio_slot	**vec_slot;
	struct tio_req	*free;
	struct tio_slot	*free_slots;
	struct tio_list	queue;
	struct tio_list	retry;
	struct tio_list	local;
	bool		returned;	/* entries went back to the pool */
	void		(*avail_cb)(void *arg);
	void		*avail_arg;
	bool		eio_transient;
	bool		fdsync_emulated;	/* aio fdsync was refused */
	bool		fua_emulated;		/* RWF_DSYNC was refused */
	struct {
		unsigned	count;
		int		err;
		unsigned	ops;
	} fault;
	struct tio_stats st;
} tio = { .efd = -1, .efd_id = -1, .retry_timer = -1, .kick_timer = -1 };

static inline struct tio_priv *P(const struct tio_req *r)
{
	return &tio.priv[r - tio.reqs];
}

static void list_add(struct tio_list *l, struct tio_req *r)
{
	r->next = NULL;
	if (l->tail)
		l->tail->next = r;
	else
		l->head = r;
	l->tail = r;
}

/* Put the chain @head..@tail in front of @l. */
static void list_prepend(struct tio_list *l, struct tio_req *head,
			 struct tio_req *tail)
{
	if (!head)
		return;
	tail->next = l->head;
	if (!l->head)
		l->tail = tail;
	l->head = head;
}

static struct tio_req *list_take(struct tio_list *l)
{
	struct tio_req *head = l->head;

	l->head = l->tail = NULL;
	return head;
}

static void wake(void)
{
	uint64_t one = 1;

	/* Only fails when the counter is saturated: it is readable then. */
	if (write(tio.efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		td_err("tio: eventfd write: %s", strerror(errno));
}

static void finish_local(struct tio_req *r, int res)
{
	P(r)->res = res;
	list_add(&tio.local, r);
}

/* ---- policy ---- */

bool tio_errno_transient(int err)
{
	switch (err) {
	case EAGAIN:
	case EBUSY:
	case EINTR:
		return true;
	case EIO:
		return tio.eio_transient;
	default:
		return false;
	}
}

void tio_set_eio_transient(bool on)
{
	tio.eio_transient = on;
}

static enum tio_op effective_op(const struct tio_req *r)
{
	return P(r)->phase == PH_FUA_SYNC ? TIO_FDSYNC : r->op;
}

static unsigned fault_kind(enum tio_op op)
{
	switch (op) {
	case TIO_READ:
		return TD_FAULT_READ;
	case TIO_WRITE:
		return TD_FAULT_WRITE;
	default:
		return TD_FAULT_FLUSH;
	}
}

void tio_inject_fault(unsigned count, int err, unsigned ops)
{
	tio.fault.count = count;
	tio.fault.err = err < 0 ? -err : err;
	tio.fault.ops = ops;
}

static bool fault_hits(const struct tio_req *r)
{
	return tio.fault.count && tio.fault.err &&
	       (tio.fault.ops & fault_kind(effective_op(r)));
}

/* ---- completion ---- */

static void give_back(struct tio_req *r)
{
	r->next = tio.free;
	tio.free = r;
	tio.nr_free++;
	tio.returned = true;
}

static void complete(struct tio_req *r, int err)
{
	r->last_err = err < 0 ? -err : 0;
	r->iocb = NULL;
	r->done(r, err);
	give_back(r);
}

static void arm_retry_timer(void);

static void schedule_retry(struct tio_req *r, uint64_t due)
{
	P(r)->due = due;
	list_add(&tio.retry, r);
	arm_retry_timer();
}

/*
 * An attempt of @r failed with @err (positive): fall back where the kernel
 * refused a feature, retry what is transient while the deadline allows,
 * fail the rest.
 */
static void failed(struct tio_req *r, int err)
{
	struct tio_priv *p = P(r);
	uint64_t now;

	r->last_err = err;
	if (p->via == VIA_AIO_FUA && (err == EINVAL || err == EOPNOTSUPP)) {
		if (!tio.fua_emulated)
			td_info("%s: RWF_DSYNC refused (%s): FUA becomes write + fdatasync",
				r->file->path, strerror(err));
		tio.fua_emulated = true;
		list_add(&tio.queue, r);
		return;
	}
	if (effective_op(r) == TIO_FDSYNC && p->via == VIA_AIO &&
	    err == EINVAL) {
		if (!tio.fdsync_emulated)
			td_info("%s: aio fdsync refused: flushing with fdatasync()",
				r->file->path);
		tio.fdsync_emulated = true;
		list_add(&tio.queue, r);
		return;
	}
	if (!tio_errno_transient(err)) {
		tio.st.errors_permanent++;
		complete(r, -err);
		return;
	}
	tio.st.errors_transient++;
	now = td_now_ms();
	if (!r->deadline_ms || now >= r->deadline_ms) {
		if (r->deadline_ms)
			tio.st.timeouts++;
		complete(r, -err);
		return;
	}
	r->retries++;
	tio.st.retries++;
	/* The last try lands on the deadline, not after it. */
	schedule_retry(r, now + TIO_RETRY_MS < r->deadline_ms ?
			  now + TIO_RETRY_MS : r->deadline_ms);
}

/* @r's attempt transferred everything it asked for. */
static void succeeded(struct tio_req *r)
{
	struct tio_priv *p = P(r);

	if (r->op == TIO_WRITE && (r->flags & TIO_FUA) &&
	    p->phase == PH_IO && p->via != VIA_AIO_FUA) {
		/* FUA without RWF_DSYNC: written, now make it stable. */
		p->phase = PH_FUA_SYNC;
		list_add(&tio.queue, r);
		return;
	}
	complete(r, 0);
}

static void slot_put(struct tio_slot *s)
{
	s->members = NULL;
	s->nr = 0;
	s->next_free = tio.free_slots;
	tio.free_slots = s;
}

/* The kernel finished slot @s with @res (bytes or -errno). */
static void slot_done(struct tio_slot *s, long res)
{
	struct tio_req *r = s->members, *next;
	enum tio_op op = s->op;
	size_t left = res > 0 ? (size_t)res : 0;

	slot_put(s);
	for (; r; r = next) {
		size_t want = r->len - r->done_bytes;

		next = r->next;
		r->iocb = NULL;
		if (res < 0) {
			failed(r, (int)-res);
		} else if (op == TIO_FDSYNC || left >= want) {
			r->done_bytes = r->len;
			left -= op == TIO_FDSYNC ? 0 : want;
			succeeded(r);
		} else if (left) {
			/* Short: keep what was covered, send the rest again. */
			r->done_bytes += left;
			left = 0;
			r->retries++;
			tio.st.retries++;
			list_add(&tio.queue, r);
		} else if (op == TIO_READ && res == 0) {
			/* The read started at or past the end of the file. */
			memset((char *)r->buf + r->done_bytes, 0, want);
			r->done_bytes = r->len;
			succeeded(r);
		} else if (op == TIO_READ) {
			/* Behind a short member: try again from its start. */
			list_add(&tio.queue, r);
		} else if (res == 0) {
			/* A write that moves nothing would loop for ever. */
			failed(r, EIO);
		} else {
			list_add(&tio.queue, r);
		}
	}
}

static void on_events(void *arg, uint32_t events)
{
	struct timespec zero = { 0, 0 };
	struct tio_req *r, *next;
	uint64_t cnt;
	int n;

	(void)arg;
	(void)events;
	/* Drain the counter before reaping so no completion goes unnoticed. */
	if (read(tio.efd, &cnt, sizeof(cnt)) < 0 && errno != EAGAIN)
		td_err("tio: eventfd read: %s", strerror(errno));
	do {
		n = io_getevents(tio.ctx, 0, tio.nr, tio.events, &zero);
		if (n < 0) {
			if (n != -EINTR)
				td_err("tio: io_getevents: %s", strerror(-n));
			break;
		}
		for (int i = 0; i < n; i++) {
			tio.st.inflight--;
			slot_done(tio.events[i].data, (long)tio.events[i].res);
		}
	} while (n == (int)tio.nr);

	for (r = list_take(&tio.local); r; r = next) {
		next = r->next;
		if (P(r)->res < 0)
			failed(r, -P(r)->res);
		else
			succeeded(r);
	}
	if (tio.returned) {
		tio.returned = false;
		if (tio.avail_cb)
			tio.avail_cb(tio.avail_arg);
	}
}

/* ---- timers ---- */

static void on_retry_timer(void *arg)
{
	struct tio_req *r, *next;
	uint64_t now = td_now_ms();

	(void)arg;
	tio.retry_timer = -1;
	r = list_take(&tio.retry);
	for (; r; r = next) {
		next = r->next;
		if (P(r)->due <= now)
			list_add(&tio.queue, r);
		else
			list_add(&tio.retry, r);
	}
	arm_retry_timer();
}

static void arm_retry_timer(void)
{
	uint64_t first = UINT64_MAX, now = td_now_ms();
	int id;

	for (struct tio_req *r = tio.retry.head; r; r = r->next)
		if (P(r)->due < first)
			first = P(r)->due;
	if (first == UINT64_MAX)
		return;
	if (tio.retry_timer >= 0) {
		if (tio.retry_due <= first)
			return;
		td_loop_del_timer(tio.retry_timer);
		tio.retry_timer = -1;
	}
	id = td_loop_add_timer(first > now ? first - now : 0, 0,
			       on_retry_timer, NULL);
	if (id < 0) {
		/* No timer free: retry at once rather than never. */
		td_err("tio: no timer for retries: %s", strerror(-id));
		for (struct tio_req *r = list_take(&tio.retry), *next; r;
		     r = next) {
			next = r->next;
			list_add(&tio.queue, r);
		}
		return;
	}
	tio.retry_timer = id;
	tio.retry_due = first;
}

static void on_kick_timer(void *arg)
{
	(void)arg;
	/* Nothing to do: waking the loop runs the prepare hook again. */
	tio.kick_timer = -1;
}

static void arm_kick_timer(void)
{
	if (tio.kick_timer < 0)
		tio.kick_timer = td_loop_add_timer(TIO_KICK_MS, 0,
						   on_kick_timer, NULL);
}

/* ---- submission ---- */

static bool aligned(const struct tio_file *f, uint64_t off, size_t len,
		    const void *buf)
{
	uint32_t a = f->dio_align ? f->dio_align : 1;

	return off % a == 0 && len % a == 0 && (uintptr_t)buf % a == 0;
}

/* Pick the descriptor for @r's next attempt. */
static void choose_fd(struct tio_req *r)
{
	struct tio_file *f = r->file;

	if (effective_op(r) == TIO_FDSYNC ||
	    aligned(f, r->off + r->done_bytes, r->len - r->done_bytes,
		    (char *)r->buf + r->done_bytes))
		P(r)->fd = f->fd;
	else
		P(r)->fd = f->fd_buffered;
}

static bool fua_wanted(const struct tio_req *r)
{
	return r->op == TIO_WRITE && (r->flags & TIO_FUA) &&
	       P(r)->phase == PH_IO;
}

/* Order for merging: file, descriptor, op, FUA, offset, then arrival. */
static int cmp(const struct tio_req *a, const struct tio_req *b)
{
	const struct tio_priv *pa = P(a), *pb = P(b);
	uint64_t oa = a->off + a->done_bytes, ob = b->off + b->done_bytes;
	int opa = effective_op(a), opb = effective_op(b);

	if (a->file != b->file)
		return (uintptr_t)a->file < (uintptr_t)b->file ? -1 : 1;
	if (pa->fd != pb->fd)
		return pa->fd < pb->fd ? -1 : 1;
	if (opa != opb)
		return opa < opb ? -1 : 1;
	if (a->flags != b->flags)
		return a->flags < b->flags ? -1 : 1;
	if (oa != ob)
		return oa < ob ? -1 : 1;
	return pa->seq < pb->seq ? -1 : pa->seq > pb->seq;
}

/* Bottom-up merge sort of a list: stable, in place, no allocation. */
static struct tio_req *sort(struct tio_req *list)
{
	for (size_t width = 1;; width *= 2) {
		struct tio_req *p = list, *head = NULL, *tail = NULL;
		size_t merges = 0;

		while (p) {
			struct tio_req *q = p;
			size_t psize = 0, qsize = width;

			merges++;
			while (psize < width && q) {
				psize++;
				q = q->next;
			}
			while (psize || (qsize && q)) {
				struct tio_req *e;

				if (!psize) {
					e = q;
					q = q->next;
					qsize--;
				} else if (!qsize || !q || cmp(p, q) <= 0) {
					e = p;
					p = p->next;
					psize--;
				} else {
					e = q;
					q = q->next;
					qsize--;
				}
				if (tail)
					tail->next = e;
				else
					head = e;
				tail = e;
			}
			p = q;
		}
		if (tail)
			tail->next = NULL;
		list = head;
		if (merges <= 1)
			return list;
	}
}

/* Can @n ride in slot @s right after @last? */
static bool can_merge(const struct tio_slot *s, const struct tio_req *last,
		      const struct tio_req *n, size_t bytes)
{
	const struct tio_req *h = s->members;

	return n && s->op != TIO_FDSYNC && s->nr < TIO_MAX_MERGE_IOV &&
	       n->file == h->file && P(n)->fd == P(h)->fd &&
	       effective_op(n) == s->op && n->flags == h->flags &&
	       n->off + n->done_bytes == last->off + last->len &&
	       bytes + (n->len - n->done_bytes) <= TIO_MAX_MERGE_BYTES &&
	       !fault_hits(n);
}

/*
 * Start an iocb with @r and take along the requests after it that
 * continue it.  Returns the first request not taken.
 */
static struct tio_req *build(struct tio_slot *s, struct tio_req *r)
{
	struct tio_req *last = r, *n = r->next;
	bool fua = fua_wanted(r) && !tio.fua_emulated;
	int fd = P(r)->fd;
	size_t bytes;

	s->op = effective_op(r);
	s->members = r;
	s->nr = 1;
	r->iocb = s;
	P(r)->via = VIA_AIO;
	if (s->op == TIO_FDSYNC) {
		io_prep_fdsync(&s->iocb, fd);
		r->next = NULL;
		goto out;
	}
	bytes = r->len - r->done_bytes;
	s->iov[0].iov_base = (char *)r->buf + r->done_bytes;
	s->iov[0].iov_len = bytes;
	while (can_merge(s, last, n, bytes)) {
		s->iov[s->nr].iov_base = (char *)n->buf + n->done_bytes;
		s->iov[s->nr].iov_len = n->len - n->done_bytes;
		bytes += s->iov[s->nr].iov_len;
		s->nr++;
		n->iocb = s;
		P(n)->via = VIA_AIO;
		last = n;
		n = n->next;
	}
	last->next = NULL;
	if (s->nr == 1 && s->op == TIO_READ)
		io_prep_pread(&s->iocb, fd, s->iov[0].iov_base, bytes,
			      (long long)(r->off + r->done_bytes));
	else if (s->nr == 1)
		io_prep_pwrite(&s->iocb, fd, s->iov[0].iov_base, bytes,
			       (long long)(r->off + r->done_bytes));
	else if (s->op == TIO_READ)
		io_prep_preadv(&s->iocb, fd, s->iov, (int)s->nr,
			       (long long)(r->off + r->done_bytes));
	else
		io_prep_pwritev(&s->iocb, fd, s->iov, (int)s->nr,
				(long long)(r->off + r->done_bytes));
	if (fua) {
		s->iocb.aio_rw_flags = RWF_DSYNC;
		for (struct tio_req *m = r; m; m = m->next)
			P(m)->via = VIA_AIO_FUA;
	}
out:
	s->iocb.data = s;
	io_set_eventfd(&s->iocb, tio.efd);
	return n;
}

/* Return slot @s unsubmitted; its members are handed back in order. */
static struct tio_req *unbuild(struct tio_slot *s, struct tio_req **tail)
{
	struct tio_req *head = s->members, *m;

	for (m = head; m; m = m->next) {
		m->iocb = NULL;
		*tail = m;
	}
	slot_put(s);
	return head;
}

/* Attempts that never reach the kernel: injected faults, fdatasync(). */
static bool handle_locally(struct tio_req *r)
{
	if (fault_hits(r)) {
		tio.fault.count--;
		tio.st.faults_injected++;
		P(r)->via = VIA_FAULT;
		finish_local(r, -tio.fault.err);
		return true;
	}
	if (effective_op(r) == TIO_FDSYNC && tio.fdsync_emulated) {
		/* The kernel cannot do it asynchronously: do it now. */
		P(r)->via = VIA_FDATASYNC;
		finish_local(r, fdatasync(r->file->fd) < 0 ? -errno : 0);
		return true;
	}
	return false;
}

static void tio_prepare(void *arg)
{
	struct tio_req *r, *next, *rest = NULL, *rest_tail = NULL;
	unsigned n = 0;
	int ret;

	(void)arg;
	if (!tio.ready || !tio.queue.head)
		goto out;
	for (r = tio.queue.head; r; r = r->next)
		choose_fd(r);
	r = sort(list_take(&tio.queue));

	while (r) {
		struct tio_slot *s;

		next = r->next;
		if (handle_locally(r)) {
			r = next;
			continue;
		}
		s = tio.free_slots;
		if (!s)
			break;
		tio.free_slots = s->next_free;
		next = build(s, r);
		tio.vec[n] = &s->iocb;
		tio.vec_slot[n] = s;
		n++;
		r = next;
	}
	/* Whatever found no slot waits for the next iteration. */
	if (r) {
		for (rest = r; r; r = r->next)
			rest_tail = r;
	}

	for (unsigned first = 0; first < n;) {
		ret = io_submit(tio.ctx, (long)(n - first), &tio.vec[first]);
		if (ret > 0) {
			for (unsigned i = first; i < first + (unsigned)ret;
			     i++) {
				tio.st.iocbs++;
				tio.st.inflight++;
				tio.st.merges += tio.vec_slot[i]->nr - 1;
			}
			first += (unsigned)ret;
			continue;
		}
		if (ret == 0 || ret == -EAGAIN || ret == -EINTR) {
			/* No room in the kernel now: keep the rest queued. */
			struct tio_req *h = NULL, *t = NULL;

			for (unsigned i = n; i-- > first;) {
				struct tio_req *mt = NULL, *mh;

				mh = unbuild(tio.vec_slot[i], &mt);

				mt->next = h;
				if (!h)
					t = mt;
				h = mh;
			}
			if (t) {
				t->next = rest;
				if (!rest)
					rest_tail = t;
				rest = h;
			}
			arm_kick_timer();
			break;
		}
		/* The first iocb was refused: fail it, try the others. */
		{
			struct tio_req *mt = NULL, *m, *mn;

			for (m = unbuild(tio.vec_slot[first], &mt); m; m = mn) {
				mn = m->next;
				finish_local(m, ret);
			}
			first++;
		}
	}
	list_prepend(&tio.queue, rest, rest_tail);
out:
	if (tio.ready && tio.local.head)
		wake();
}

void tio_submit(struct tio_req *r)
{
	struct tio_priv *p = P(r);

	p->seq = ++tio.seq;
	p->phase = PH_IO;
	p->via = VIA_CHECK;
	p->res = 0;
	r->done_bytes = 0;
	r->retries = 0;
	r->last_err = 0;
	r->iocb = NULL;
	tio.st.submitted++;
	if (!r->file || r->file->fd < 0 || r->op > TIO_FDSYNC ||
	    (r->op != TIO_FDSYNC && (!r->len || !r->buf))) {
		finish_local(r, -EINVAL);
		return;
	}
	if (r->op == TIO_WRITE && r->file->readonly) {
		finish_local(r, -EROFS);
		return;
	}
	list_add(&tio.queue, r);
}

/* ---- pool ---- */

struct tio_req *tio_get(enum tio_prio prio)
{
	struct tio_req *r;

	if (!tio.ready || !tio.nr_free ||
	    (prio != TIO_PRIO_META && tio.nr_free <= TIO_RESERVED))
		return NULL;
	r = tio.free;
	tio.free = r->next;
	tio.nr_free--;
	memset(r, 0, sizeof(*r));
	return r;
}

void tio_set_available(void (*cb)(void *arg), void *arg)
{
	tio.avail_cb = cb;
	tio.avail_arg = arg;
}

void tio_get_stats(struct tio_stats *st)
{
	*st = tio.st;
}

static void release(void)
{
	free(tio.reqs);
	free(tio.priv);
	free(tio.slots);
	free(tio.events);
	free(tio.vec);
	free(tio.vec_slot);
	tio.reqs = NULL;
	tio.priv = NULL;
	tio.slots = NULL;
	tio.events = NULL;
	tio.vec = NULL;
	tio.vec_slot = NULL;
}

int tio_init(unsigned nr_reqs)
{
	int err;

	if (tio.ready)
		return td_fail(EBUSY, "tio already initialised");
	if (nr_reqs <= TIO_RESERVED || nr_reqs > 65536)
		return td_fail(EINVAL, "tio: %u requests: need %u to 65536",
			       nr_reqs, TIO_RESERVED + 1);
	memset(&tio, 0, sizeof(tio));
	tio.efd = tio.efd_id = tio.retry_timer = tio.kick_timer = -1;
	tio.nr = nr_reqs;
	tio.reqs = calloc(nr_reqs, sizeof(*tio.reqs));
	tio.priv = calloc(nr_reqs, sizeof(*tio.priv));
	tio.slots = calloc(nr_reqs, sizeof(*tio.slots));
	tio.events = calloc(nr_reqs, sizeof(*tio.events));
	tio.vec = calloc(nr_reqs, sizeof(*tio.vec));
	tio.vec_slot = calloc(nr_reqs, sizeof(*tio.vec_slot));
	if (!tio.reqs || !tio.priv || !tio.slots || !tio.events ||
	    !tio.vec || !tio.vec_slot) {
		release();
		return td_fail(ENOMEM, "tio: out of memory for %u requests",
			       nr_reqs);
	}
	for (unsigned i = nr_reqs; i-- > 0;) {
		tio.reqs[i].next = tio.free;
		tio.free = &tio.reqs[i];
		tio.slots[i].next_free = tio.free_slots;
		tio.free_slots = &tio.slots[i];
	}
	tio.nr_free = nr_reqs;

	err = io_setup((int)nr_reqs, &tio.ctx);
	if (err < 0) {
		release();
		if (err == -EAGAIN)
			return td_fail(EAGAIN,
				       "io_setup(%u): over the system's aio limit (fs.aio-max-nr)",
				       nr_reqs);
		return td_fail(-err, "io_setup(%u): %s", nr_reqs,
			       strerror(-err));
	}
	tio.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (tio.efd < 0) {
		err = td_fail(errno, "tio: eventfd: %s", strerror(errno));
		goto fail;
	}
	tio.efd_id = td_loop_add_fd(tio.efd, EPOLLIN, on_events, NULL);
	if (tio.efd_id < 0) {
		err = tio.efd_id;
		goto fail;
	}
	err = td_loop_add_prepare(tio_prepare, NULL);
	if (err < 0)
		goto fail;
	tio.ready = true;
	return 0;
fail:
	if (tio.efd_id >= 0)
		td_loop_del_fd(tio.efd_id);
	if (tio.efd >= 0)
		close(tio.efd);
	io_destroy(tio.ctx);
	release();
	tio.efd = tio.efd_id = -1;
	return err;
}

void tio_fini(void)
{
	if (!tio.ready)
		return;
	/* Callers drain first; whatever is left is dropped untold. */
	if (tio.st.inflight || tio.queue.head || tio.retry.head ||
	    tio.local.head)
		td_warn("tio: closing with requests pending (%llu iocbs in flight)",
			(unsigned long long)tio.st.inflight);
	/* Waits for what the kernel still holds before the buffers go. */
	io_destroy(tio.ctx);
	td_loop_del_fd(tio.efd_id);
	if (tio.retry_timer >= 0)
		td_loop_del_timer(tio.retry_timer);
	if (tio.kick_timer >= 0)
		td_loop_del_timer(tio.kick_timer);
	close(tio.efd);
	release();
	memset(&tio, 0, sizeof(tio));
	tio.efd = tio.efd_id = tio.retry_timer = tio.kick_timer = -1;
}

/* ---- files ---- */

/*
 * The alignment O_DIRECT needs on @fd: what the kernel says (statx), else
 * the device's logical block size, else the classic 512.
 */
static uint32_t probe_align(int fd, const struct stat *st)
{
#ifdef STATX_DIOALIGN
	struct statx stx;

	if (statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
	    (stx.stx_mask & STATX_DIOALIGN)) {
		uint32_t a = stx.stx_dio_offset_align;

		if (!a)
			return 0;	/* no direct I/O on this file */
		if (stx.stx_dio_mem_align > a)
			a = stx.stx_dio_mem_align;
		return a;
	}
#endif
	if (S_ISBLK(st->st_mode)) {
		int ssz = 0;

		if (ioctl(fd, BLKSSZGET, &ssz) == 0 && ssz > 0)
			return (uint32_t)ssz;
	}
	return 512;
}

static int open_error(const char *path, int err)
{
	if (err == ENOENT)
		return td_fail(ENOENT, "%s: no such file", path);
	return td_fail(err, "%s: cannot open: %s", path, strerror(err));
}

int tio_file_open(struct tio_file *file, const char *path, bool readonly,
		  bool direct)
{
	int flags = (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC;
	struct stat st;
	int fd, err;

	memset(file, 0, sizeof(*file));
	file->fd = file->fd_buffered = -1;
	file->path = path;
	file->readonly = readonly;
	file->dio_align = 1;

	fd = open(path, flags);
	if (fd < 0)
		return open_error(path, errno);
	if (fstat(fd, &st) < 0) {
		err = td_fail(errno, "%s: stat: %s", path, strerror(errno));
		close(fd);
		return err;
	}
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		close(fd);
		return td_fail(EINVAL, "%s: not a regular file or block device",
			       path);
	}
	file->fd_buffered = fd;
	file->fd = fd;
	if (!direct)
		return 0;

	fd = open(path, flags | O_DIRECT);
	if (fd < 0 && errno != EINVAL) {
		err = open_error(path, errno);
		tio_file_close(file);
		return err;
	}
	if (fd >= 0) {
		uint32_t a = probe_align(fd, &st);

		if (a) {
			file->fd = fd;
			file->dio_align = a;
			return 0;
		}
		close(fd);
	}
	td_info("%s: O_DIRECT not supported here, using buffered I/O", path);
	return 0;
}

void tio_file_close(struct tio_file *file)
{
	if (file->fd >= 0 && file->fd != file->fd_buffered)
		close(file->fd);
	if (file->fd_buffered >= 0)
		close(file->fd_buffered);
	file->fd = file->fd_buffered = -1;
}
