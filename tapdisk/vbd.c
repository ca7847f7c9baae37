// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The virtual block device: ring requests in, image I/O out.
 *
 * Each ring request becomes a vreq (one per ring slot, so the pool is the
 * ring itself), split into treqs that never cross the leaf's chunk size.
 * A read treq walks down the chain: each image fills what it holds and
 * forwards the rest; the bottom fills zeros.  Writes and flushes go to the
 * leaf.  Nothing here allocates once an image is open: vreqs, treqs and
 * their "filled" bitmaps are all made in vbd_init().
 *
 * States: CLOSED -> OPEN -> (PAUSE_REQ -> PAUSED -> OPEN)* -> CLOSED.
 * While pausing or paused, requests stay in the ring; a pause completes
 * when the last in-flight vreq has answered.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "driver.h"
#include "event.h"
#include "log.h"
#include "ring.h"
#include "tio.h"
#include "vbd.h"

#define MAX_SLOTS		BLKTAP_RING_MAX_SLOTS
#define TREQS_PER_SLOT		4
#define NR_TREQS		(MAX_SLOTS * TREQS_PER_SLOT)
#define FILLED_BYTES		(TD_TREQ_MAX_SECTORS / 8)
#define ZERO_BYTES		((size_t)TD_TREQ_MAX_SECTORS << 9)
#define MAX_PAUSE_WAITERS	8
#define MAX_DOMAINS		TD_STATS_MAX_DOMAINS
#define MAX_CHAIN		256	/* as libvhd's VHD_MAX_CHAIN */
#define NFS_MAGIC		0x6969	/* statfs f_type of NFS */
#define RETRY_EIO_ENV		"TAPDISK_RETRY_EIO"	/* 1: EIO is transient */

struct td_vreq {
	uint64_t	id;
	uint8_t		op;
	uint8_t		flags;
	uint16_t	domid;
	uint64_t	sec;
	uint32_t	secs;
	char		*buf;		/* slot data, or the zero buffer */
	uint32_t	split;		/* sectors handed to treqs so far */
	int		pending;	/* treqs not finished, + dispatch hold */
	int		err;
	bool		busy;
	uint64_t	start_ms;
	uint64_t	deadline_ms;
	uint64_t	progress_ms;
	uint64_t	stall_logged_ms;
	struct td_vreq	*next_starved;
};

struct pause_waiter {
	vbd_done_fn	fn;
	void		*arg;
};

struct domain_stats {
	bool		used;
	struct td_ctl_domain_stats s;
};

static struct {
	int		minor;		/* -1: none bound */
	uint32_t	state;		/* TD_STATE_* */
	struct td_image	*leaf;
	char		*params;	/* leaf's "type:path" */
	uint32_t	open_flags;
	uint32_t	timeout_s;
	uint64_t	capacity;	/* sectors, fixed across unpause */
	bool		closing;	/* the drain ends in close, not pause */
	bool		force;
	int		watchdog;

	struct td_vreq	vreqs[MAX_SLOTS];
	struct td_treq	treqs[NR_TREQS];
	struct td_treq	*free_treqs;
	struct td_vreq	*starved, **starved_tail;
	struct td_treq	*tio_waiters;
	uint8_t		*filled;	/* NR_TREQS * FILLED_BYTES */
	char		*zeros;		/* read-only source for WRITE_ZEROES */
	int		inflight;
	bool		dispatching;
	bool		drain_due;	/* check_drained() before the next wait */

	struct pause_waiter waiters[MAX_PAUSE_WAITERS];
	int		nr_waiters;

	struct td_ctl_stats st;		/* the counters kept here */
	struct domain_stats domains[MAX_DOMAINS];
} vbd = { .minor = -1 };

/* ---- drivers ---- */

static const struct td_driver *const drivers[] = {
	&td_drv_aio,
	&td_drv_vhd,
	&td_drv_qcow,
	&td_drv_ram,
	&td_drv_vmdk,
};

const struct td_driver *td_driver_find(const char *name)
{
	for (size_t i = 0; i < sizeof(drivers) / sizeof(drivers[0]); i++)
		if (!strcmp(drivers[i]->name, name))
			return drivers[i];
	return NULL;
}

/* ---- images ---- */

static void image_free(struct td_image *img)
{
	if (!img)
		return;
	free(img->priv);
	free(img->path);
	free(img->params);
	free(img);
}

static void chain_close(struct td_image *leaf)
{
	while (leaf) {
		struct td_image *parent = leaf->parent;

		leaf->drv->close(leaf);
		image_free(leaf);
		leaf = parent;
	}
}

/* Split "type:path"; the type must name a driver. */
static int parse_params(const char *params, const struct td_driver **drv,
			const char **path)
{
	const char *colon = strchr(params, ':');
	char type[16];
	size_t n;

	if (!colon || colon == params)
		return td_fail(EINVAL, "'%s' is not type:path", params);
	n = (size_t)(colon - params);
	if (n >= sizeof(type))
		return td_fail(EINVAL, "unknown image type in '%s'", params);
	memcpy(type, params, n);
	type[n] = '\0';
	if (!colon[1])
		return td_fail(EINVAL, "'%s' names no file", params);
	*drv = td_driver_find(type);
	if (!*drv)
		return td_fail(EINVAL, "unknown image type '%s'", type);
	*path = colon + 1;
	return 0;
}

static int image_open(const struct td_driver *drv, const char *path,
		      unsigned flags, struct td_image **out)
{
	struct td_image *img = calloc(1, sizeof(*img));
	size_t plen;
	int err;

	if (!img)
		return td_fail(ENOMEM, "out of memory");
	img->drv = drv;
	img->flags = flags;
	img->path = strdup(path);
	plen = strlen(drv->name) + 1 + strlen(path) + 1;
	img->params = malloc(plen);
	img->priv = drv->priv_size ? calloc(1, drv->priv_size) : NULL;
	if (!img->path || !img->params || (drv->priv_size && !img->priv)) {
		image_free(img);
		return td_fail(ENOMEM, "out of memory");
	}
	snprintf(img->params, plen, "%s:%s", drv->name, path);
	err = drv->open(img, path, flags);
	if (err) {
		image_free(img);
		return err;
	}
	*out = img;
	return 0;
}

/* Open @params and every parent below it, read-only. */
static int chain_open(const char *params, unsigned flags,
		      struct td_image **out)
{
	const struct td_driver *drv;
	struct td_image *leaf, *img;
	const char *path = NULL;
	int err, depth = 1;

	err = parse_params(params, &drv, &path);
	if (err)
		return err;
	err = image_open(drv, path, flags, &leaf);
	if (err)
		return err;
	for (img = leaf;; img = img->parent, depth++) {
		struct td_parent p = { { 0 }, NULL };
		struct td_image *parent;

		if (!img->drv->get_parent)
			break;
		err = img->drv->get_parent(img, &p);
		if (err == -ENOENT) {
			err = 0;
			break;
		}
		if (err)
			goto fail;
		if (depth >= MAX_CHAIN) {
			free(p.path);
			err = td_fail(ELOOP, "%s: chain deeper than %d images "
				      "(a parent loop?)", leaf->path,
				      MAX_CHAIN);
			goto fail;
		}
		drv = td_driver_find(p.type);
		if (!drv) {
			err = td_fail(EINVAL, "%s: parent %s has unknown type "
				      "'%s'", img->path, p.path, p.type);
			free(p.path);
			goto fail;
		}
		err = image_open(drv, p.path, TD_IMAGE_RDONLY |
				 (flags & TD_IMAGE_NO_DIRECT), &parent);
		free(p.path);
		if (err)
			goto fail;
		parent->level = img->level + 1;
		img->parent = parent;
		if (img->drv->validate_parent) {
			err = img->drv->validate_parent(img, parent);
			if (err)
				goto fail;
		}
	}
	*out = leaf;
	return 0;
fail:
	chain_close(leaf);
	return err;
}

static uint32_t disk_features(void)
{
	struct td_image *leaf = vbd.leaf;
	uint32_t f;

	if (leaf->flags & TD_IMAGE_RDONLY)
		return BLKTAP_FEAT_READONLY;
	f = BLKTAP_FEAT_FLUSH | BLKTAP_FEAT_FUA | BLKTAP_FEAT_WRITE_ZEROES;
	/* Discarding in a child would let the parent's data show through. */
	if (leaf->drv->discard && leaf->can_discard && !leaf->parent)
		f |= BLKTAP_FEAT_DISCARD;
	return f;
}

static void publish_disk(void)
{
	if (vbd.leaf)
		td_ring_set_disk(vbd.capacity, 512, disk_features());
}

/*
 * The kernel's tapdevN, once the disk is both attached to the kernel's
 * ring and open.  4 KiB physical sectors, when the size allows, keep file
 * systems' I/O aligned to what O_DIRECT and VHD bitmaps like best.
 */
static int create_kernel_device(void)
{
	if (!td_ring_is_kernel() || !vbd.leaf)
		return 0;
	return td_ring_create_device(vbd.capacity, 512,
				     vbd.capacity % 8 ? 512 : 4096,
				     disk_features());
}

/*
 * EIO is transient on NFS soft mounts (a server that went away comes
 * back); elsewhere it is a real error.  TAPDISK_RETRY_EIO=1 or 0 in the
 * environment overrides the guess.
 */
static void configure_eio(const struct td_image *leaf)
{
	const char *env = getenv(RETRY_EIO_ENV);
	struct statfs sfs;
	bool on = false;

	if (env && *env)
		on = !strcmp(env, "1");
	else
		for (; leaf; leaf = leaf->parent)
			if (!statfs(leaf->path, &sfs) && sfs.f_type == NFS_MAGIC)
				on = true;
	tio_set_eio_transient(on);
	if (on)
		td_info("EIO is treated as transient and retried");
}

static unsigned image_flags(uint32_t open_flags)
{
	return (open_flags & TD_OPEN_RDONLY ? TD_IMAGE_RDONLY : 0) |
	       (open_flags & TD_OPEN_NO_O_DIRECT ? TD_IMAGE_NO_DIRECT : 0);
}

/* ---- minors ---- */

static int check_minor(int minor)
{
	if (minor < 0)
		return td_fail(EINVAL, "minor %d is not valid", minor);
	if (vbd.minor < 0)
		return td_fail(ENXIO, "unknown minor %d: this tapdisk serves "
			       "no minor yet", minor);
	if (minor != vbd.minor)
		return td_fail(ENXIO, "unknown minor %d: this tapdisk serves "
			       "minor %d", minor, vbd.minor);
	return 0;
}

/* Attach and open both bind the minor when none is bound. */
static int bind_minor(int minor)
{
	if (minor < 0)
		return td_fail(EINVAL, "minor %d is not valid", minor);
	if (vbd.minor < 0) {
		vbd.minor = minor;
		return 0;
	}
	return check_minor(minor);
}

static void unbind_if_unused(void)
{
	if (!(vbd.state & (TD_STATE_ATTACHED | TD_STATE_OPEN |
			   TD_STATE_PAUSED | TD_STATE_PAUSE_REQ)))
		vbd.minor = -1;
}

/* ---- stats ---- */

static struct td_ctl_domain_stats *domain_stats(uint16_t domid)
{
	struct domain_stats *free_slot = NULL;

	for (int i = 0; i < MAX_DOMAINS; i++) {
		if (vbd.domains[i].used && vbd.domains[i].s.domid == domid)
			return &vbd.domains[i].s;
		if (!vbd.domains[i].used && !free_slot)
			free_slot = &vbd.domains[i];
	}
	if (!free_slot)
		return NULL;	/* more guests than slots: not counted */
	free_slot->used = true;
	free_slot->s.domid = domid;
	return &free_slot->s;
}

static void account_request(const struct td_vreq *v)
{
	struct td_ctl_domain_stats *d = domain_stats(v->domid);
	uint64_t bytes = (uint64_t)v->secs << 9;

	switch (v->op) {
	case BLKTAP_OP_READ:
		vbd.st.reqs_rd++;
		if (d) {
			d->reqs_rd++;
			d->bytes_rd += bytes;
		}
		break;
	case BLKTAP_OP_WRITE:
		vbd.st.reqs_wr++;
		if (d) {
			d->reqs_wr++;
			d->bytes_wr += bytes;
		}
		break;
	case BLKTAP_OP_FLUSH:
		vbd.st.reqs_flush++;
		break;
	case BLKTAP_OP_DISCARD:
		vbd.st.reqs_discard++;
		break;
	case BLKTAP_OP_WRITE_ZEROES:
		vbd.st.reqs_write_zeroes++;
		break;
	}
}

/* ---- treqs ---- */

static struct td_treq *treq_get(void)
{
	struct td_treq *t = vbd.free_treqs;

	if (t)
		vbd.free_treqs = t->core_next;
	return t;
}

static void treq_put_free(struct td_treq *t)
{
	t->core_next = vbd.free_treqs;
	vbd.free_treqs = t;
}

static void vreq_dispatch(struct td_vreq *v);
static void vreq_finish(struct td_vreq *v);
static void check_drained(void);

/* Hand starved vreqs the treqs that came back; not re-entered. */
static void feed_starved(void)
{
	if (vbd.dispatching)
		return;
	vbd.dispatching = true;
	while (vbd.starved && vbd.free_treqs) {
		struct td_vreq *v = vbd.starved;

		vbd.starved = v->next_starved;
		if (!vbd.starved)
			vbd.starved_tail = &vbd.starved;
		v->next_starved = NULL;
		vreq_dispatch(v);
	}
	vbd.dispatching = false;
}

static void vreq_put(struct td_vreq *v, int err)
{
	if (err && !v->err)
		v->err = err;
	if (--v->pending == 0 && v->split == v->secs)
		vreq_finish(v);
}

static void treq_complete(struct td_treq *t)
{
	struct td_vreq *v = t->vreq;
	int err = t->err;

	treq_put_free(t);
	vreq_put(v, err);
	feed_starved();
}

static void treq_maybe_done(struct td_treq *t)
{
	if (t->issued && t->pending == 0)
		treq_complete(t);
}

void td_treq_get(struct td_treq *t)
{
	t->pending++;
}

void td_treq_put(struct td_treq *t, int err)
{
	t->vreq->progress_ms = td_loop_now_ms();
	if (err) {
		if (!t->err)
			t->err = err;
		if (t->op == TD_OP_READ)
			t->img->stats.fail_rd++;
		else
			t->img->stats.fail_wr++;
	}
	t->pending--;
	treq_maybe_done(t);
}

bool td_treq_filled(const struct td_treq *t, uint32_t i)
{
	return t->filled[i >> 3] & (0x80 >> (i & 7));
}

void td_treq_fill(struct td_treq *t, uint32_t first, uint32_t n)
{
	for (uint32_t i = first; i < first + n && i < t->secs; i++)
		t->filled[i >> 3] |= (uint8_t)(0x80 >> (i & 7));
	t->img->stats.hits_rd++;
	t->img->stats.bytes_rd += (uint64_t)n << 9;
}

static bool all_filled(const struct td_treq *t)
{
	uint32_t full = t->secs >> 3, i;

	for (i = 0; i < full; i++)
		if (t->filled[i] != 0xFF)
			return false;
	for (i = full << 3; i < t->secs; i++)
		if (!td_treq_filled(t, i))
			return false;
	return true;
}

/* Zeros for every sector no image filled, from sector @from on. */
static void zero_unfilled(struct td_treq *t, uint32_t from)
{
	for (uint32_t i = from; i < t->secs;) {
		uint32_t j = i;

		while (j < t->secs && !td_treq_filled(t, j))
			j++;
		if (j > i) {
			memset(t->buf + ((size_t)i << 9), 0, (size_t)(j - i) << 9);
			for (uint32_t k = i; k < j; k++)
				t->filled[k >> 3] |= (uint8_t)(0x80 >> (k & 7));
		}
		i = j + 1;
	}
}

/* A read treq arrives at t->img. */
static void read_at_image(struct td_treq *t)
{
	struct td_image *img = t->img;

	/* Past this image's end nothing below can hold data either. */
	if (t->sec + t->secs > img->sectors) {
		uint32_t inside = t->sec >= img->sectors ? 0 :
				  (uint32_t)(img->sectors - t->sec);

		zero_unfilled(t, inside);
	}
	if (all_filled(t)) {
		t->issued = true;
		treq_maybe_done(t);
		return;
	}
	t->cursor = 0;
	t->drv_state = 0;
	img->drv->queue_read(img, t);
}

void td_treq_forward(struct td_treq *t)
{
	if (t->img->parent) {
		t->img = t->img->parent;
		read_at_image(t);
		return;
	}
	zero_unfilled(t, 0);
	t->issued = true;
	treq_maybe_done(t);
}

void td_treq_issued(struct td_treq *t)
{
	t->issued = true;
	treq_maybe_done(t);
}

void td_treq_resume(struct td_treq *t)
{
	struct td_image *img = t->img;

	switch (t->op) {
	case TD_OP_READ:
		img->drv->queue_read(img, t);
		break;
	case TD_OP_WRITE:
		img->drv->queue_write(img, t);
		break;
	case TD_OP_FLUSH:
		img->drv->queue_flush(img, t);
		break;
	}
}

void td_treq_wait_tio(struct td_treq *t)
{
	t->core_next = vbd.tio_waiters;
	vbd.tio_waiters = t;
}

static void tio_available(void *arg)
{
	struct td_treq *list = vbd.tio_waiters, *t;

	(void)arg;
	vbd.tio_waiters = NULL;
	while (list) {
		t = list;
		list = t->core_next;
		t->core_next = NULL;
		td_treq_resume(t);
	}
}

static void treq_tio_done(struct tio_req *r, int err)
{
	td_treq_put(r->arg, err);
}

int td_treq_submit(struct td_treq *t, struct tio_file *file, enum tio_op op,
		   void *buf, size_t len, uint64_t off, unsigned tio_flags)
{
	struct tio_req *r = tio_get(TIO_PRIO_DATA);

	if (!r)
		return -EAGAIN;
	r->file = file;
	r->op = op;
	r->flags = tio_flags;
	r->buf = buf;
	r->len = len;
	r->off = off;
	r->deadline_ms = t->deadline_ms;
	r->done = treq_tio_done;
	r->arg = t;
	td_treq_get(t);
	tio_submit(r);
	return 0;
}

/* ---- vreqs ---- */

static void start_treq(struct td_treq *t)
{
	struct td_image *leaf = vbd.leaf;

	switch (t->op) {
	case TD_OP_READ:
		memset(t->filled, 0, (t->secs + 7) / 8);
		read_at_image(t);
		break;
	case TD_OP_WRITE:
		leaf->stats.hits_wr++;
		leaf->stats.bytes_wr += (uint64_t)t->secs << 9;
		leaf->drv->queue_write(leaf, t);
		break;
	case TD_OP_FLUSH:
		leaf->drv->queue_flush(leaf, t);
		break;
	}
}

static enum td_op treq_op(const struct td_vreq *v)
{
	switch (v->op) {
	case BLKTAP_OP_READ:
		return TD_OP_READ;
	case BLKTAP_OP_FLUSH:
		return TD_OP_FLUSH;
	default:
		return TD_OP_WRITE;	/* WRITE, WRITE_ZEROES */
	}
}

/* Give @v treqs until it is fully split or the pool runs dry. */
static void vreq_dispatch(struct td_vreq *v)
{
	uint32_t chunk = vbd.leaf->chunk_sectors;

	v->pending++;	/* hold: treqs may finish before we return */
	do {
		struct td_treq *t;
		uint64_t s = v->sec + v->split;
		uint32_t n = v->secs - v->split;

		if (td_loop_now_ms() > v->deadline_ms) {
			vbd.st.timeouts++;
			if (!v->err)
				v->err = -ETIMEDOUT;
			v->split = v->secs;
			break;
		}
		t = treq_get();
		if (!t) {
			*vbd.starved_tail = v;
			vbd.starved_tail = &v->next_starved;
			break;
		}
		if (chunk && n > chunk - s % chunk)
			n = (uint32_t)(chunk - s % chunk);
		if (n > TD_TREQ_MAX_SECTORS)
			n = TD_TREQ_MAX_SECTORS;
		t->vreq = v;
		t->img = vbd.leaf;
		t->op = treq_op(v);
		t->flags = v->flags & BLKTAP_REQ_FUA ? TD_TREQ_FUA : 0;
		t->sec = s;
		t->secs = n;
		/* WRITE_ZEROES writes from the shared zero buffer. */
		t->buf = v->op == BLKTAP_OP_WRITE_ZEROES ? vbd.zeros :
			 v->buf + ((size_t)v->split << 9);
		t->deadline_ms = v->deadline_ms;
		t->cursor = 0;
		t->drv_state = 0;
		t->next = NULL;
		t->core_next = NULL;
		t->pending = 0;
		t->err = 0;
		t->issued = false;
		v->split += n;
		v->pending++;
		start_treq(t);
	} while (v->split < v->secs);
	vreq_put(v, 0);
}

static void vreq_finish(struct td_vreq *v)
{
	int err = v->err;

	if (err < -4095 || err > 0)
		err = -EIO;
	if (err)
		vbd.st.reqs_err++;
	td_ring_respond(v->id, err);
	v->busy = false;
	vbd.inflight--;
	/*
	 * Not here: a driver may be completing this request from inside
	 * its own callback and still touch its state after we return, so
	 * the images must not be closed under it.  drain_hook() finishes
	 * the pause or close before the loop next waits.
	 */
	if (!vbd.inflight && (vbd.state & TD_STATE_PAUSE_REQ))
		vbd.drain_due = true;
}

static void drain_hook(void *arg)
{
	(void)arg;
	if (!vbd.drain_due)
		return;
	vbd.drain_due = false;
	check_drained();
}

static int validate_request(const struct blktap_ring_request *req)
{
	uint32_t max_secs = td_ring_slot_bytes() >> 9;
	uint64_t end;

	if (req->op > BLKTAP_OP_MAX)
		return -EOPNOTSUPP;
	if (req->flags & ~BLKTAP_REQ_FUA)
		return -EINVAL;
	if ((req->flags & BLKTAP_REQ_FUA) && req->op != BLKTAP_OP_WRITE)
		return -EINVAL;
	/* A flush has no range; Linux's own flush requests say sector -1. */
	if (req->op == BLKTAP_OP_FLUSH)
		return req->nr_sectors ? -EINVAL : 0;
	if (req->nr_sectors == 0)
		return -EINVAL;
	if ((req->op == BLKTAP_OP_READ || req->op == BLKTAP_OP_WRITE) &&
	    req->nr_sectors > max_secs)
		return -EINVAL;
	end = req->sector + req->nr_sectors;
	if (end < req->sector || end > vbd.capacity)
		return -EINVAL;
	if (req->op != BLKTAP_OP_READ &&
	    (vbd.leaf->flags & TD_IMAGE_RDONLY))
		return -EROFS;
	return 0;
}

static void respond_bad(const struct blktap_ring_request *req, int err)
{
	vbd.st.reqs_bad++;
	td_ring_respond(req->id, err);
}

/* A request copied out of the ring. */
static bool ring_request(const struct blktap_ring_request *req)
{
	uint32_t slot = BLKTAP_ID_SLOT(req->id);
	struct td_vreq *v;
	uint64_t now;
	int err;

	if (slot >= td_ring_nr_slots()) {
		/* No answer: the id is not one the front can match. */
		vbd.st.reqs_bad++;
		td_warn("ring: request id 0x%llx names slot %u of %u; ignored",
			(unsigned long long)req->id, slot, td_ring_nr_slots());
		return true;
	}
	v = &vbd.vreqs[slot];
	if (v->busy) {
		/* An answer would look like the in-flight one's. */
		vbd.st.reqs_bad++;
		td_warn("ring: request id 0x%llx reuses slot %u while in "
			"flight; ignored", (unsigned long long)req->id, slot);
		return true;
	}
	if (!vbd.leaf) {
		respond_bad(req, -ENXIO);
		return true;
	}
	err = validate_request(req);
	if (err) {
		respond_bad(req, err);
		return true;
	}
	now = td_loop_now_ms();
	memset(v, 0, sizeof(*v));
	v->id = req->id;
	v->op = req->op;
	v->flags = req->flags;
	v->domid = req->domid;
	v->sec = req->sector;
	v->secs = req->op == BLKTAP_OP_FLUSH ? 0 : req->nr_sectors;
	v->buf = td_ring_slot_data(slot);
	v->busy = true;
	v->start_ms = now;
	v->progress_ms = now;
	v->deadline_ms = now + (uint64_t)vbd.timeout_s * 1000;
	vbd.inflight++;
	if ((uint64_t)vbd.inflight > vbd.st.inflight_max)
		vbd.st.inflight_max = (uint64_t)vbd.inflight;
	account_request(v);

	if (req->op == BLKTAP_OP_DISCARD) {
		/*
		 * Discard may leave any contents, so doing nothing is a
		 * correct discard; only a lone leaf really punches holes.
		 */
		if (disk_features() & BLKTAP_FEAT_DISCARD)
			v->err = vbd.leaf->drv->discard(vbd.leaf, v->sec,
							v->secs);
		v->pending = 1;
		v->split = v->secs;
		vreq_put(v, 0);
		return true;
	}
	/* A flush becomes one treq of no sectors. */
	vreq_dispatch(v);
	return true;
}

/* ---- watchdog ---- */

static void watchdog(void *arg)
{
	uint64_t now = td_now_ms();

	(void)arg;
	for (unsigned i = 0; i < MAX_SLOTS; i++) {
		struct td_vreq *v = &vbd.vreqs[i];

		if (!v->busy || now - v->progress_ms < TD_WATCHDOG_S * 1000ull)
			continue;
		if (v->stall_logged_ms &&
		    now - v->stall_logged_ms < TD_WATCHDOG_S * 1000ull)
			continue;
		v->stall_logged_ms = now;
		vbd.st.stalls++;
		td_warn("request 0x%llx (op %u, sector %llu, %u sectors) has "
			"made no progress for %llu s",
			(unsigned long long)v->id, v->op,
			(unsigned long long)v->sec, v->secs,
			(unsigned long long)((now - v->progress_ms) / 1000));
	}
}

/* ---- pause, close ---- */

static void finish_waiters(int err)
{
	int n = vbd.nr_waiters;
	struct pause_waiter w[MAX_PAUSE_WAITERS];

	memcpy(w, vbd.waiters, sizeof(w[0]) * (size_t)n);
	vbd.nr_waiters = 0;
	for (int i = 0; i < n; i++)
		w[i].fn(w[i].arg, err);
}

static void close_images(void)
{
	chain_close(vbd.leaf);
	vbd.leaf = NULL;
}

static void check_drained(void)
{
	if (!(vbd.state & TD_STATE_PAUSE_REQ) || vbd.inflight)
		return;
	close_images();
	vbd.state &= ~(uint32_t)TD_STATE_PAUSE_REQ;
	if (vbd.closing) {
		vbd.state &= ~(uint32_t)(TD_STATE_OPEN | TD_STATE_PAUSED);
		free(vbd.params);
		vbd.params = NULL;
		vbd.capacity = 0;
		vbd.closing = false;
		td_ring_set_disk(0, 512, 0);
		td_info("closed");
		unbind_if_unused();
	} else {
		vbd.state |= TD_STATE_PAUSED;
		td_info("paused");
	}
	finish_waiters(0);
}

static int add_waiter(vbd_done_fn done, void *arg)
{
	if (vbd.nr_waiters == MAX_PAUSE_WAITERS)
		return td_fail(EBUSY, "too many callers waiting for the drain");
	vbd.waiters[vbd.nr_waiters].fn = done;
	vbd.waiters[vbd.nr_waiters].arg = arg;
	vbd.nr_waiters++;
	return 0;
}

/* Stop taking requests and drain; check_drained() finishes the job. */
static void start_drain(void)
{
	vbd.state |= TD_STATE_PAUSE_REQ;
	td_ring_set_consuming(false);
}

int vbd_pause(int minor, vbd_done_fn done, void *arg)
{
	int err = check_minor(minor);

	if (err)
		return err;
	if (vbd.state & TD_STATE_PAUSED)
		return td_fail(EALREADY, "minor %d is already paused", minor);
	if (!(vbd.state & TD_STATE_OPEN))
		return td_fail(EINVAL, "minor %d has no image open", minor);
	if (vbd.closing)
		return td_fail(EBUSY, "minor %d is closing", minor);
	err = add_waiter(done, arg);
	if (err)
		return err;
	td_info("pausing with %d requests in flight", vbd.inflight);
	start_drain();
	check_drained();
	return 0;
}

int vbd_close(int minor, bool force, vbd_done_fn done, void *arg)
{
	int err = check_minor(minor);

	if (err)
		return err;
	if (!(vbd.state & TD_STATE_OPEN))
		return td_fail(EINVAL, "minor %d has no image open", minor);
	if (vbd.nr_waiters == MAX_PAUSE_WAITERS)
		return td_fail(EBUSY, "too many callers waiting for the drain");
	/* The kernel refuses while tapdevN is open: then nothing changes. */
	if (td_ring_is_kernel()) {
		err = td_ring_remove_device(force);
		if (err)
			return err;
	}
	err = add_waiter(done, arg);
	if (err)
		return err;
	vbd.closing = true;
	if (force) {
		/* Requests not yet on an image fail now; the rest drain. */
		while (vbd.starved) {
			struct td_vreq *v = vbd.starved;

			vbd.starved = v->next_starved;
			v->next_starved = NULL;
			if (!v->err)
				v->err = -EIO;
			v->split = v->secs;
			v->pending++;
			vreq_put(v, 0);
		}
		vbd.starved_tail = &vbd.starved;
	}
	if (vbd.state & TD_STATE_PAUSED) {
		vbd.state &= ~(uint32_t)TD_STATE_PAUSED;
		vbd.state |= TD_STATE_PAUSE_REQ;
		check_drained();
		return 0;
	}
	td_info("closing with %d requests in flight", vbd.inflight);
	start_drain();
	check_drained();
	return 0;
}

static int open_leaf(const char *params, uint32_t flags)
{
	struct td_image *leaf;
	char *copy;
	int err;

	err = chain_open(params, image_flags(flags), &leaf);
	if (err)
		return err;
	copy = strdup(params);
	if (!copy) {
		chain_close(leaf);
		return td_fail(ENOMEM, "out of memory");
	}
	free(vbd.params);
	vbd.params = copy;
	vbd.leaf = leaf;
	return 0;
}

int vbd_open(int minor, const char *params, uint32_t flags,
	     uint32_t timeout_s, int secondary)
{
	int err;

	if (vbd.state & (TD_STATE_OPEN | TD_STATE_PAUSED | TD_STATE_PAUSE_REQ))
		return td_fail(EBUSY, "minor %d already has %s open",
			       vbd.minor, vbd.params ? vbd.params : "an image");
	if (flags & TD_OPEN_SECONDARY || secondary >= 0)
		return td_fail(EOPNOTSUPP, "serving a parent from minor %d (-e) "
			       "is not supported by this tapdisk", secondary);
	err = bind_minor(minor);
	if (err)
		return err;
	err = open_leaf(params, flags);
	if (err) {
		unbind_if_unused();
		return err;
	}
	vbd.open_flags = flags;
	vbd.timeout_s = timeout_s ? timeout_s : TD_DEFAULT_TIMEOUT_S;
	vbd.capacity = vbd.leaf->sectors;
	/* No request can be in flight before tapdevN exists. */
	err = create_kernel_device();
	if (err) {
		close_images();
		free(vbd.params);
		vbd.params = NULL;
		vbd.capacity = 0;
		unbind_if_unused();
		return err;
	}
	vbd.state |= TD_STATE_OPEN;
	configure_eio(vbd.leaf);
	memset(vbd.domains, 0, sizeof(vbd.domains));
	publish_disk();
	td_info("opened %s: %llu sectors, timeout %u s", params,
		(unsigned long long)vbd.capacity, vbd.timeout_s);
	td_ring_set_consuming(true);
	return 0;
}

int vbd_unpause(int minor, const char *params)
{
	const char *p = params && *params ? params : vbd.params;
	struct td_image *old_leaf;
	int err = check_minor(minor);

	if (err)
		return err;
	if (vbd.state & TD_STATE_PAUSE_REQ)
		return td_fail(EBUSY, "minor %d is still pausing", minor);
	if (!(vbd.state & TD_STATE_PAUSED))
		return td_fail(EINVAL, "minor %d is not paused", minor);
	old_leaf = vbd.leaf;	/* NULL: the images were closed */
	err = chain_open(p, image_flags(vbd.open_flags), &vbd.leaf);
	if (err) {
		vbd.leaf = old_leaf;
		return err;
	}
	if (vbd.leaf->sectors != vbd.capacity) {
		uint64_t n = vbd.leaf->sectors;

		chain_close(vbd.leaf);
		vbd.leaf = old_leaf;
		return td_fail(EINVAL, "%s has %llu sectors but the disk has "
			       "%llu; refusing to change its size", p,
			       (unsigned long long)n,
			       (unsigned long long)vbd.capacity);
	}
	if (p != vbd.params) {
		char *copy = strdup(p);

		if (!copy) {
			chain_close(vbd.leaf);
			vbd.leaf = old_leaf;
			return td_fail(ENOMEM, "out of memory");
		}
		free(vbd.params);
		vbd.params = copy;
	}
	vbd.state &= ~(uint32_t)TD_STATE_PAUSED;
	configure_eio(vbd.leaf);
	publish_disk();
	/*
	 * tapdevN exists (EEXIST) unless the ring was attached while paused;
	 * the images are open again either way, so a refusal only warns.
	 */
	err = create_kernel_device();
	if (err && err != -EEXIST)
		td_warn("unpause: %s", td_errmsg());
	td_info("unpaused on %s", vbd.params);
	td_ring_set_consuming(true);
	return 0;
}

/* ---- attach ---- */

int vbd_attach_fds(int minor, int memfd, int kick_fd, int notify_fd)
{
	int err = bind_minor(minor);

	if (err) {
		close(memfd);
		close(kick_fd);
		close(notify_fd);
		return err;
	}
	err = td_ring_attach_fds(memfd, kick_fd, notify_fd, ring_request);
	if (err) {
		unbind_if_unused();
		return err;
	}
	vbd.state |= TD_STATE_ATTACHED;
	publish_disk();
	if ((vbd.state & TD_STATE_OPEN) &&
	    !(vbd.state & (TD_STATE_PAUSED | TD_STATE_PAUSE_REQ)))
		td_ring_set_consuming(true);
	td_info("ring attached for minor %d: %u slots of %u bytes", minor,
		td_ring_nr_slots(), td_ring_slot_bytes());
	return 0;
}

int vbd_attach_kernel(int minor)
{
	int err = bind_minor(minor);

	if (err)
		return err;
	err = td_ring_attach_kernel((unsigned int)minor, 0, 0, ring_request);
	if (err) {
		unbind_if_unused();
		return err;
	}
	publish_disk();
	/* Opened before the ring came: tapdevN can be made now. */
	if ((vbd.state & TD_STATE_OPEN) &&
	    !(vbd.state & (TD_STATE_PAUSED | TD_STATE_PAUSE_REQ))) {
		err = create_kernel_device();
		if (err) {
			td_ring_detach();
			unbind_if_unused();
			return err;
		}
		td_ring_set_consuming(true);
	}
	vbd.state |= TD_STATE_ATTACHED;
	td_info("kernel ring attached for minor %d: %u slots of %u bytes",
		minor, td_ring_nr_slots(), td_ring_slot_bytes());
	return 0;
}

int vbd_detach(int minor)
{
	int err = check_minor(minor);

	if (err)
		return err;
	if (!(vbd.state & TD_STATE_ATTACHED))
		return td_fail(EINVAL, "minor %d has no ring attached", minor);
	if (vbd.state & (TD_STATE_OPEN | TD_STATE_PAUSE_REQ))
		return td_fail(EBUSY, "minor %d still has %s open; close it "
			       "first", minor, vbd.params);
	td_ring_detach();
	vbd.state &= ~(uint32_t)TD_STATE_ATTACHED;
	unbind_if_unused();
	return 0;
}

/* ---- info, stats, faults ---- */

void vbd_info(struct td_ctl_info *info)
{
	memset(info, 0, sizeof(*info));
	info->pid = (int32_t)getpid();
	info->minor = vbd.minor;
	info->state = vbd.state | (td_ring_dead() ? TD_STATE_DEAD : 0);
	if (vbd.params && (vbd.state & (TD_STATE_OPEN | TD_STATE_PAUSED)))
		snprintf(info->params, sizeof(info->params), "%s", vbd.params);
}

void vbd_stats(struct td_ctl_stats *st)
{
	struct tio_stats ts;
	struct td_image *img;
	uint32_t n = 0;

	*st = vbd.st;
	tio_get_stats(&ts);
	st->minor = vbd.minor;
	st->state = vbd.state | (td_ring_dead() ? TD_STATE_DEAD : 0);
	st->inflight = (uint64_t)vbd.inflight;
	st->merges = ts.merges;
	st->iocbs = ts.iocbs;
	st->retries = ts.retries;
	st->timeouts += ts.timeouts;
	st->errors_transient = ts.errors_transient;
	st->errors_permanent = ts.errors_permanent;
	st->timeout_s = vbd.timeout_s;
	for (img = vbd.leaf; img; img = img->parent) {
		/* Deeper images than fit are summed into the last entry. */
		struct td_ctl_image_stats *is =
			&st->image[n < TD_STATS_MAX_IMAGES ? n :
				   TD_STATS_MAX_IMAGES - 1];

		if (n < TD_STATS_MAX_IMAGES)
			snprintf(is->params, sizeof(is->params), "%s",
				 img->params);
		is->hits_rd += img->stats.hits_rd;
		is->hits_wr += img->stats.hits_wr;
		is->fail_rd += img->stats.fail_rd;
		is->fail_wr += img->stats.fail_wr;
		is->bytes_rd += img->stats.bytes_rd;
		is->bytes_wr += img->stats.bytes_wr;
		n++;
	}
	st->nr_images = n < TD_STATS_MAX_IMAGES ? n : TD_STATS_MAX_IMAGES;
	for (int i = 0; i < MAX_DOMAINS; i++)
		if (vbd.domains[i].used)
			st->domain[st->nr_domains++] = vbd.domains[i].s;
}

int vbd_fault(const struct td_ctl_fault *f)
{
	if (f->err <= 0 || f->err > 4095)
		return td_fail(EINVAL, "fault errno %d is not valid", f->err);
	if (f->ops & ~(uint32_t)(TD_FAULT_READ | TD_FAULT_WRITE |
				 TD_FAULT_FLUSH))
		return td_fail(EINVAL, "unknown fault kinds 0x%x", f->ops);
	tio_inject_fault(f->count, f->err, f->ops);
	td_info("fault injection: next %u I/Os (kinds 0x%x) fail with %s",
		f->count, f->ops, strerror(f->err));
	return 0;
}

bool vbd_idle(void)
{
	return !(vbd.state & (TD_STATE_OPEN | TD_STATE_PAUSED |
			      TD_STATE_PAUSE_REQ));
}

void vbd_queue(const struct blktap_ring_request *req)
{
	ring_request(req);
}

/* ---- setup ---- */

int vbd_init(void)
{
	int err;

	vbd.filled = calloc(NR_TREQS, FILLED_BYTES);
	vbd.zeros = mmap(NULL, ZERO_BYTES, PROT_READ,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (!vbd.filled || vbd.zeros == MAP_FAILED) {
		free(vbd.filled);
		vbd.filled = NULL;
		if (vbd.zeros != MAP_FAILED)
			munmap(vbd.zeros, ZERO_BYTES);
		vbd.zeros = NULL;
		return td_fail(ENOMEM, "out of memory for the request pool");
	}
	vbd.free_treqs = NULL;
	for (int i = NR_TREQS - 1; i >= 0; i--) {
		vbd.treqs[i].filled = vbd.filled + (size_t)i * FILLED_BYTES;
		treq_put_free(&vbd.treqs[i]);
	}
	vbd.starved = NULL;
	vbd.starved_tail = &vbd.starved;
	vbd.timeout_s = TD_DEFAULT_TIMEOUT_S;
	tio_set_available(tio_available, NULL);
	err = td_loop_add_timer(1000, 1000, watchdog, NULL);
	if (err < 0)
		return td_fail(-err, "cannot start the watchdog");
	vbd.watchdog = err;
	err = td_loop_add_prepare(drain_hook, NULL);
	if (err)
		return td_fail(-err, "cannot add the drain hook");
	return 0;
}

void vbd_fini(void)
{
	if (vbd.leaf)
		close_images();
	td_ring_detach();
	td_loop_del_timer(vbd.watchdog);
	free(vbd.filled);
	vbd.filled = NULL;
	free(vbd.params);
	vbd.params = NULL;
	if (vbd.zeros)
		munmap(vbd.zeros, ZERO_BYTES);
	vbd.zeros = NULL;
}
