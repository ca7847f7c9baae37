// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The control socket: accept clients, read one request at a time from
 * each, validate it, dispatch it to the vbd and reply.
 *
 * PAUSE and CLOSE finish later (they drain in-flight I/O): the connection
 * keeps its reply pending and is not read from meanwhile, so replies stay
 * in request order.  A client that hangs up while waiting loses its reply;
 * its slot is freed when the operation completes.
 *
 * All buffers are static: one request and one reply are handled at a time.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "control.h"
#include "ctl-msg.h"
#include "event.h"
#include "log.h"
#include "vbd.h"

/* Room for one descriptor more than ATTACH takes, to count extras. */
#define CTL_MAX_RX_FDS		(TD_CTL_ATTACH_FDS + 1)

enum conn_state {
	CONN_FREE,
	CONN_OPEN,		/* reading requests */
	CONN_PENDING,		/* a PAUSE/CLOSE reply is owed */
	CONN_ORPHAN,		/* hung up while pending: waiting for done */
};

struct conn {
	enum conn_state	state;
	int		fd;
	int		loop_id;
	bool		reading;	/* EPOLLIN is being watched */
	/* The request being answered (or pending), for its reply. */
	uint16_t	type;
	uint32_t	cookie;
	int32_t		minor;
};

static struct {
	bool		up;
	bool		faults;
	int		lfd;
	int		lid;
	char		path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct conn	conn[TD_CTL_MAX_CLIENTS];
	struct td_ctl_msg rx;
	struct td_ctl_msg tx;
} ctl = { .lfd = -1, .lid = -1 };

static const char *ctl_dir(void)
{
	const char *d = getenv(TD_CTL_DIR_ENV);

	return d && *d ? d : TD_CTL_DIR;
}

const char *td_control_path(void)
{
	return ctl.path;
}

/* ---- replies --------------------------------------------------------- */

static void conn_close(struct conn *c);

/*
 * Send ctl.tx (header + @body bytes).  A client that cannot take its reply
 * (gone, or not reading) is dropped: it would be out of step anyway.
 */
static void conn_send(struct conn *c, size_t body)
{
	size_t len = TD_CTL_HDR_SIZE + body;
	ssize_t n;

	ctl.tx.magic = TD_CTL_MAGIC;
	ctl.tx.version = TD_CTL_VERSION;
	ctl.tx.length = (uint32_t)len;
	do
		n = send(c->fd, &ctl.tx, len, MSG_NOSIGNAL | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n != (ssize_t)len) {
		td_debug("control: dropping client fd %d: reply not sent: %s",
			 c->fd, n < 0 ? strerror(errno) : "short send");
		conn_close(c);
	}
}

static void reply_init(const struct conn *c)
{
	/* Only the header: bodies are filled (and sized) by the caller. */
	memset(&ctl.tx, 0, TD_CTL_HDR_SIZE);
	ctl.tx.type = c->type;
	ctl.tx.cookie = c->cookie;
	ctl.tx.minor = c->minor;
}

/*
 * The reason recorded for the failure being reported, or strerror when
 * none was (dispatch clears it first; td_errmsg() then says so).
 */
static const char *failure_reason(int err)
{
	const char *m = td_errmsg();

	if (!m || !*m || !strcmp(m, "unknown error"))
		return strerror(-err);
	return m;
}

/*
 * Reply to c's request: done (@err >= 0, no body), or failed with @err
 * and a reason, @why or else failure_reason().
 */
static void reply_status(struct conn *c, int err, const char *why)
{
	char *msg = ctl.tx.body.error.msg;

	reply_init(c);
	if (err >= 0) {
		conn_send(c, 0);
		return;
	}
	if (err < -4095)
		err = -EIO;
	if (!why || !*why)
		why = failure_reason(err);
	ctl.tx.status = err;
	memset(msg, 0, TD_ERRMSG_MAX);
	snprintf(msg, TD_ERRMSG_MAX, "%s", why);
	/* One line, whatever the reason held. */
	for (char *p = msg; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	conn_send(c, sizeof(ctl.tx.body.error));
}

/* ---- connections ----------------------------------------------------- */

static void conn_watch(struct conn *c, bool reading)
{
	uint32_t ev = EPOLLRDHUP | (reading ? EPOLLIN : 0);

	if (c->reading == reading)
		return;
	c->reading = reading;
	if (td_loop_mod_fd(c->loop_id, ev) < 0)
		td_warn("control: cannot change events of fd %d", c->fd);
}

static void conn_close(struct conn *c)
{
	if (c->fd >= 0) {
		td_loop_del_fd(c->loop_id);
		close(c->fd);
	}
	c->fd = -1;
	c->loop_id = -1;
	c->reading = false;
	/* A pending operation still holds the slot as its callback arg. */
	c->state = c->state == CONN_PENDING ? CONN_ORPHAN : CONN_FREE;
}

static void op_done(void *arg, int err)
{
	struct conn *c = arg;

	if (c->state == CONN_ORPHAN) {
		td_debug("control: %s of minor %d finished (%d) after its client left",
			 c->type == TD_CTL_PAUSE ? "pause" : "close", c->minor,
			 err);
		c->state = CONN_FREE;
		return;
	}
	if (c->state != CONN_PENDING)
		return;		/* reported already (the call failed) */
	c->state = CONN_OPEN;
	if (err == -EALREADY && c->type == TD_CTL_PAUSE) {
		char why[TD_ERRMSG_MAX];

		snprintf(why, sizeof(why), "minor %d is already paused",
			 (int)c->minor);
		reply_status(c, err, why);
	} else {
		reply_status(c, err, NULL);
	}
	if (c->state == CONN_OPEN)
		conn_watch(c, true);
}

/* PAUSE and CLOSE: the reply waits for @done. */
static void dispatch_async(struct conn *c)
{
	int err;

	c->state = CONN_PENDING;
	if (c->type == TD_CTL_PAUSE)
		err = vbd_pause(c->minor, op_done, c);
	else
		err = vbd_close(c->minor, ctl.rx.flags & TD_CLOSE_FORCE,
				op_done, c);
	if (c->state != CONN_PENDING)
		return;		/* done already ran (or the client left) */
	if (err < 0) {
		op_done(c, err);
		return;
	}
	conn_watch(c, false);
}

static int do_stats(void)
{
	struct td_ctl_stats *st = &ctl.tx.body.stats;

	memset(st, 0, sizeof(*st));
	vbd_stats(st);
	/* STATS has no minor argument in the vbd: check it here. */
	if (!st->state || (st->minor >= 0 && st->minor != ctl.rx.minor))
		return td_fail(ENXIO, "unknown minor %d", (int)ctl.rx.minor);
	return 0;
}

static void dispatch(struct conn *c, int *fds, int nfds)
{
	const struct td_ctl_open *o = &ctl.rx.body.open;
	int32_t minor = ctl.rx.minor;
	int err;

	td_set_error("%s", "");
	switch (ctl.rx.type) {
	case TD_CTL_INFO:
		reply_init(c);
		memset(&ctl.tx.body.info, 0, sizeof(ctl.tx.body.info));
		vbd_info(&ctl.tx.body.info);
		ctl.tx.body.info.pid = getpid();
		conn_send(c, sizeof(ctl.tx.body.info));
		return;
	case TD_CTL_STATS:
		reply_init(c);
		err = do_stats();
		if (err < 0)
			break;
		conn_send(c, sizeof(ctl.tx.body.stats));
		return;
	case TD_CTL_ATTACH:
		if (nfds == TD_CTL_ATTACH_FDS) {
			/* The vbd owns the descriptors from here on. */
			err = vbd_attach_fds(minor, fds[0], fds[1], fds[2]);
			for (int i = 0; i < nfds; i++)
				fds[i] = -1;
		} else {
			err = vbd_attach_kernel(minor);
		}
		break;
	case TD_CTL_DETACH:
		err = vbd_detach(minor);
		break;
	case TD_CTL_OPEN:
		err = vbd_open(minor, o->params, o->flags, o->timeout_s,
			       o->flags & TD_OPEN_SECONDARY ? o->secondary : -1);
		break;
	case TD_CTL_UNPAUSE:
		err = vbd_unpause(minor, o->params[0] ? o->params : NULL);
		break;
	case TD_CTL_PAUSE:
	case TD_CTL_CLOSE:
		dispatch_async(c);
		return;
	case TD_CTL_FAULT:
		if (!ctl.faults)
			err = td_fail(EPERM, "fault injection is disabled (%s is not set)",
				      TD_FAULTS_ENV);
		else
			err = vbd_fault(&ctl.rx.body.fault);
		break;
	default:
		/* td_ctl_validate() let through only the types above. */
		err = td_fail(EINVAL, "unknown request type %u", ctl.rx.type);
		break;
	}
	if (err < 0)
		td_info("control: request %u for minor %d failed: %s",
			ctl.rx.type, (int)minor, failure_reason(err));
	reply_status(c, err, NULL);
}

/* Every SCM_RIGHTS descriptor of @msg: @max kept in @fds, the rest closed. */
static int take_fds(struct msghdr *msg, int *fds, int max)
{
	int n = 0;

	for (struct cmsghdr *cm = CMSG_FIRSTHDR(msg); cm;
	     cm = CMSG_NXTHDR(msg, cm)) {
		size_t cnt;

		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		cnt = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < cnt; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(fd));
			if (n < max)
				fds[n] = fd;
			else
				close(fd);
			n++;
		}
	}
	return n;
}

static void close_fds(int *fds, int n)
{
	for (int i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

/*
 * recvmsg() returns 0 both at the end of the stream and for an empty
 * datagram; only the second deserves a reply.
 */
static bool peer_gone(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLRDHUP };

	return poll(&p, 1, 0) > 0 &&
	       (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

/* Read and answer one message; false when nothing more is to be read now. */
static bool conn_read_one(struct conn *c)
{
	union {
		char buf[CMSG_SPACE(CTL_MAX_RX_FDS * sizeof(int))];
		struct cmsghdr align;
	} cbuf;
	struct iovec iov = { .iov_base = &ctl.rx, .iov_len = sizeof(ctl.rx) };
	struct msghdr msg = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = cbuf.buf,
		.msg_controllen = sizeof(cbuf.buf),
	};
	int fds[CTL_MAX_RX_FDS], nfds, err;
	char why[TD_ERRMSG_MAX];
	ssize_t n;

	/* A short message leaves the rest of the header zero in the reply. */
	memset(&ctl.rx, 0, TD_CTL_HDR_SIZE);
	n = recvmsg(c->fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (n < 0) {
		if (errno == EINTR)
			return true;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			conn_close(c);
		return false;
	}
	nfds = take_fds(&msg, fds, CTL_MAX_RX_FDS);
	if (n == 0 && !nfds && peer_gone(c->fd)) {
		conn_close(c);
		return false;
	}
	if (msg.msg_flags & MSG_TRUNC) {
		snprintf(why, sizeof(why),
			 "message longer than %zu bytes (no request is)",
			 sizeof(ctl.rx));
		err = -EPROTO;
	} else if (msg.msg_flags & MSG_CTRUNC) {
		snprintf(why, sizeof(why),
			 "too many descriptors (at most %d)", TD_CTL_ATTACH_FDS);
		err = -EINVAL;
	} else {
		err = td_ctl_validate(&ctl.rx, (size_t)n,
				      nfds, why, sizeof(why));
	}
	/* The reply echoes these, even for a request refused here. */
	c->type = ctl.rx.type;
	c->cookie = ctl.rx.cookie;
	c->minor = ctl.rx.minor;
	if (err < 0) {
		td_warn("control: refused a message from fd %d: %s", c->fd, why);
		reply_status(c, err, why);
	} else {
		dispatch(c, fds, nfds);
	}
	close_fds(fds, nfds < CTL_MAX_RX_FDS ? nfds : CTL_MAX_RX_FDS);
	return c->state == CONN_OPEN;
}

static void conn_event(void *arg, uint32_t events)
{
	struct conn *c = arg;

	if (c->state == CONN_OPEN && (events & EPOLLIN)) {
		/* Drain the queue: the loop's trigger mode does not matter. */
		while (conn_read_one(c))
			;
		return;
	}
	/* Pending (not reading) or nothing to read: only a hangup matters. */
	if ((c->state == CONN_OPEN || c->state == CONN_PENDING) &&
	    (events & (EPOLLHUP | EPOLLRDHUP | EPOLLERR)))
		conn_close(c);
}

static bool peer_allowed(int fd)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	/* The directory's mode keeps others out; this is a second lock. */
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return false;
	return cred.uid == 0 || cred.uid == geteuid();
}

static void accept_event(void *arg, uint32_t events)
{
	(void)arg;
	(void)events;
	for (;;) {
		struct conn *c = NULL;
		int fd, id;

		fd = accept4(ctl.lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				td_warn("control: accept: %s", strerror(errno));
			return;
		}
		if (!peer_allowed(fd)) {
			td_warn("control: refused a client of another user");
			close(fd);
			continue;
		}
		for (int i = 0; i < TD_CTL_MAX_CLIENTS && !c; i++)
			if (ctl.conn[i].state == CONN_FREE)
				c = &ctl.conn[i];
		if (!c) {
			td_warn("control: %d clients already connected; refusing one more",
				TD_CTL_MAX_CLIENTS);
			close(fd);
			continue;
		}
		id = td_loop_add_fd(fd, EPOLLIN | EPOLLRDHUP, conn_event, c);
		if (id < 0) {
			td_warn("control: cannot watch a client: %s",
				strerror(-id));
			close(fd);
			continue;
		}
		c->state = CONN_OPEN;
		c->fd = fd;
		c->loop_id = id;
		c->reading = true;
	}
}

/* ---- set-up ---------------------------------------------------------- */

/* The directory must be ours and 0700: root-only access rests on it. */
static int prepare_dir(const char *dir)
{
	struct stat st;
	int fd, err = 0;

	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		return td_fail(errno, "cannot create control directory %s: %s",
			       dir, strerror(errno));
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 && (errno == ELOOP || errno == ENOTDIR))
		return td_fail(ENOTDIR, "%s exists and is not a directory",
			       dir);
	if (fd < 0)
		return td_fail(errno, "control directory %s: %s", dir,
			       strerror(errno));
	if (fstat(fd, &st) < 0) {
		err = td_fail(errno, "control directory %s: %s", dir,
			      strerror(errno));
	} else if (st.st_uid != geteuid()) {
		err = td_fail(EPERM,
			      "control directory %s is owned by uid %u, not by us (uid %u)",
			      dir, (unsigned)st.st_uid, (unsigned)geteuid());
	} else if ((st.st_mode & 07777) != 0700) {
		td_warn("control directory %s had mode %04o; setting 0700",
			dir, (unsigned)(st.st_mode & 07777));
		if (fchmod(fd, 0700) < 0)
			err = td_fail(errno,
				      "control directory %s has mode %04o and cannot be made 0700: %s",
				      dir, (unsigned)(st.st_mode & 07777),
				      strerror(errno));
	}
	close(fd);
	return err;
}

/* A file at our socket's path is left from a dead process with our pid. */
static int remove_stale(const char *path)
{
	struct stat st;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 :
		       td_fail(errno, "%s: %s", path, strerror(errno));
	if (!S_ISSOCK(st.st_mode))
		return td_fail(EEXIST, "%s exists and is not a socket", path);
	if (unlink(path) < 0)
		return td_fail(errno, "cannot remove stale socket %s: %s", path,
			       strerror(errno));
	return 0;
}

/* Undo what td_control_init() set up of the listening socket. */
static void listener_close(void)
{
	if (ctl.lid >= 0)
		td_loop_del_fd(ctl.lid);
	if (ctl.lfd >= 0)
		close(ctl.lfd);
	if (ctl.path[0])
		unlink(ctl.path);
	ctl.lid = -1;
	ctl.lfd = -1;
	ctl.path[0] = '\0';
}

int td_control_init(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char final[sizeof(sa.sun_path)];
	const char *dir = ctl_dir();
	const char *faults;
	mode_t old;
	int err, n;

	if (ctl.up)
		return td_fail(EBUSY, "control socket already set up");
	if (dir[0] != '/')
		return td_fail(EINVAL, "%s=%s is not an absolute path",
			       TD_CTL_DIR_ENV, dir);
	/*
	 * Bound under a temporary name and renamed once listening, so that
	 * a client never finds the socket before it accepts connections.
	 */
	n = snprintf(final, sizeof(final), "%s/%s%d", dir, TD_CTL_PREFIX,
		     (int)getpid());
	if (n < 0 || (size_t)n + 4 >= sizeof(sa.sun_path))
		return td_fail(ENAMETOOLONG,
			       "socket path %s/%s%d is too long (at most %zu bytes)",
			       dir, TD_CTL_PREFIX, (int)getpid(),
			       sizeof(sa.sun_path) - 5);
	memcpy(sa.sun_path, final, (size_t)n);
	memcpy(sa.sun_path + n, ".new", 5);
	err = prepare_dir(dir);
	if (err)
		return err;
	err = remove_stale(final);
	if (!err)
		err = remove_stale(sa.sun_path);
	if (err)
		return err;

	ctl.lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC,
			 0);
	if (ctl.lfd < 0)
		return td_fail(errno, "control socket: %s", strerror(errno));
	/* Born 0600: no window in which others could connect. */
	old = umask(0177);
	err = bind(ctl.lfd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (err < 0) {
		err = td_fail(errno, "cannot bind %s: %s", sa.sun_path,
			      strerror(errno));
		goto fail;
	}
	memcpy(ctl.path, sa.sun_path, sizeof(ctl.path));
	if (listen(ctl.lfd, TD_CTL_MAX_CLIENTS) < 0) {
		err = td_fail(errno, "cannot listen on %s: %s", ctl.path,
			      strerror(errno));
		goto fail;
	}
	if (rename(sa.sun_path, final) < 0) {
		err = td_fail(errno, "cannot rename %s to %s: %s", sa.sun_path,
			      final, strerror(errno));
		goto fail;
	}
	memcpy(ctl.path, final, sizeof(ctl.path));
	err = td_loop_add_fd(ctl.lfd, EPOLLIN, accept_event, NULL);
	if (err < 0) {
		err = td_fail(-err, "cannot watch the control socket: %s",
			      strerror(-err));
		goto fail;
	}
	ctl.lid = err;
	for (int i = 0; i < TD_CTL_MAX_CLIENTS; i++) {
		ctl.conn[i].state = CONN_FREE;
		ctl.conn[i].fd = -1;
		ctl.conn[i].loop_id = -1;
	}
	faults = getenv(TD_FAULTS_ENV);
	ctl.faults = faults && *faults;
	ctl.up = true;
	td_info("control socket %s%s", ctl.path,
		ctl.faults ? " (fault injection enabled)" : "");
	return 0;

fail:
	listener_close();
	return err;
}

void td_control_fini(void)
{
	if (!ctl.up)
		return;
	for (int i = 0; i < TD_CTL_MAX_CLIENTS; i++) {
		struct conn *c = &ctl.conn[i];

		conn_close(c);
		/* Late completions find a free slot and are ignored. */
		c->state = CONN_FREE;
	}
	listener_close();
	ctl.up = false;
}
