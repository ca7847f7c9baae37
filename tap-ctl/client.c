// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * The client side of the control protocol (tap-ctl and the test rig).
 *
 * Every failure leaves one line in tdc_errmsg(): the tapdisk's own reason
 * for a refused request, ours for anything that went wrong on the way.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "client.h"

/* How long list waits for each tapdisk, and spawn for the daemon. */
#define TDC_LIST_TIMEOUT_MS	10000
#define TDC_SPAWN_TIMEOUT_MS	60000

extern char **environ;

static char errmsg[TD_ERRMSG_MAX + 256];

static int fail(int err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int fail(int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(errmsg, sizeof(errmsg), fmt, ap);
	va_end(ap);
	return -err;
}

const char *tdc_errmsg(void)
{
	return errmsg;
}

const char *tdc_dir(void)
{
	const char *d = getenv(TD_CTL_DIR_ENV);

	return d && *d ? d : TD_CTL_DIR;
}

static int sock_path(pid_t pid, struct sockaddr_un *sa)
{
	int n;

	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	n = snprintf(sa->sun_path, sizeof(sa->sun_path), "%s/%s%d", tdc_dir(),
		     TD_CTL_PREFIX, (int)pid);
	if (n < 0 || (size_t)n >= sizeof(sa->sun_path))
		return fail(ENAMETOOLONG, "control directory %s: path too long",
			    tdc_dir());
	return 0;
}

int tdc_connect(pid_t pid)
{
	struct sockaddr_un sa;
	int fd, err;

	if (pid <= 0)
		return fail(EINVAL, "invalid pid %d", (int)pid);
	err = sock_path(pid, &sa);
	if (err)
		return err;
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return fail(errno, "socket: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
		return fd;
	err = errno;
	close(fd);
	switch (err) {
	case ENOENT:
	case ECONNREFUSED:
		return fail(ESRCH, "no tapdisk with pid %d", (int)pid);
	case EACCES:
	case EPERM:
		return fail(err, "%s: permission denied (only root may control tapdisks)",
			    sa.sun_path);
	default:
		return fail(err, "cannot connect to %s: %s", sa.sun_path,
			    strerror(err));
	}
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Wait for @fd to be readable until @deadline (0: forever). */
static int wait_readable(int fd, uint64_t deadline, int timeout_ms)
{
	struct pollfd pfd = { .fd = fd, .events = POLLIN };

	for (;;) {
		int t = -1, n;

		if (deadline) {
			uint64_t now = now_ms();

			if (now >= deadline)
				return fail(ETIMEDOUT,
					    "no reply from tapdisk within %d ms",
					    timeout_ms);
			t = (int)(deadline - now);
		}
		n = poll(&pfd, 1, t);
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return fail(errno, "poll: %s", strerror(errno));
	}
}

static int send_req(int sock, const struct td_ctl_msg *req, const int *fds,
		    int nfds)
{
	union {
		char buf[CMSG_SPACE(8 * sizeof(int))];
		struct cmsghdr align;
	} cbuf;
	struct iovec iov = {
		.iov_base = (void *)req,
		.iov_len = req->length,
	};
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	ssize_t n;

	if (nfds < 0 || nfds > 8)
		return fail(EINVAL, "cannot pass %d descriptors", nfds);
	if (nfds) {
		struct cmsghdr *cm;

		memset(&cbuf, 0, sizeof(cbuf));
		msg.msg_control = cbuf.buf;
		msg.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
		cm = CMSG_FIRSTHDR(&msg);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(nfds * sizeof(int));
		memcpy(CMSG_DATA(cm), fds, nfds * sizeof(int));
	}
	do
		n = sendmsg(sock, &msg, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		if (errno == EPIPE || errno == ECONNRESET)
			return fail(errno, "tapdisk closed the connection");
		return fail(errno, "cannot send to tapdisk: %s",
			    strerror(errno));
	}
	return 0;
}

/* Bytes a successful reply to @type carries. */
static size_t reply_size(uint16_t type)
{
	switch (type) {
	case TD_CTL_INFO:
		return TD_CTL_HDR_SIZE + sizeof(struct td_ctl_info);
	case TD_CTL_STATS:
		return TD_CTL_HDR_SIZE + sizeof(struct td_ctl_stats);
	default:
		return TD_CTL_HDR_SIZE;
	}
}

static int check_reply(const struct td_ctl_msg *req,
		       const struct td_ctl_msg *rep, ssize_t n, int flags)
{
	if (n == 0)
		return fail(ECONNRESET,
			    "tapdisk closed the connection without replying");
	if (flags & MSG_TRUNC)
		return fail(EPROTO, "reply from tapdisk is too long");
	if ((size_t)n < TD_CTL_HDR_SIZE || rep->magic != TD_CTL_MAGIC ||
	    rep->version != TD_CTL_VERSION || rep->length != (size_t)n)
		return fail(EPROTO, "malformed reply from tapdisk (%zd bytes)",
			    n);
	if (rep->type != req->type || rep->cookie != req->cookie)
		return fail(EPROTO, "reply from tapdisk does not match the request");
	if (rep->status < 0) {
		if ((size_t)n < TD_CTL_HDR_SIZE + sizeof(rep->body.error))
			return fail(-rep->status, "%s", strerror(-rep->status));
		/* Bounded: the message may lack its NUL. */
		return fail(-rep->status, "%.*s", TD_ERRMSG_MAX,
			    rep->body.error.msg);
	}
	if (rep->status > 0 || (size_t)n != reply_size(req->type))
		return fail(EPROTO, "malformed reply from tapdisk (%zd bytes)",
			    n);
	return 0;
}

int tdc_call(int sock, struct td_ctl_msg *req, const int *fds, int nfds,
	     struct td_ctl_msg *rep, int timeout_ms)
{
	static uint32_t cookie;
	uint64_t deadline = timeout_ms > 0 ? now_ms() + (uint64_t)timeout_ms : 0;
	uint32_t len = td_ctl_request_size(req->type);
	struct iovec iov = { .iov_base = rep, .iov_len = sizeof(*rep) };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	ssize_t n;
	int err;

	if (!len)
		return fail(EINVAL, "unknown request type %u", req->type);
	if (!cookie)
		cookie = (uint32_t)getpid() << 16;
	req->magic = TD_CTL_MAGIC;
	req->version = TD_CTL_VERSION;
	req->length = len;
	req->cookie = ++cookie;
	req->status = 0;
	err = send_req(sock, req, fds, nfds);
	if (err)
		return err;
	for (;;) {
		err = wait_readable(sock, deadline, timeout_ms);
		if (err)
			return err;
		n = recvmsg(sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (n >= 0)
			break;
		if (errno == EAGAIN || errno == EINTR)
			continue;
		if (errno == ECONNRESET)
			return fail(errno, "tapdisk closed the connection without replying");
		return fail(errno, "cannot read tapdisk's reply: %s",
			    strerror(errno));
	}
	err = check_reply(req, rep, n, msg.msg_flags);
	return err ? err : rep->status;
}

int tdc_request(pid_t pid, struct td_ctl_msg *req, struct td_ctl_msg *rep)
{
	int sock, err;

	sock = tdc_connect(pid);
	if (sock < 0)
		return sock;
	err = tdc_call(sock, req, NULL, 0, rep, 0);
	close(sock);
	return err;
}

int tdc_set_params(struct td_ctl_open *o, const char *params)
{
	size_t len = params ? strlen(params) : 0;

	if (len >= sizeof(o->params))
		return fail(EINVAL, "image argument too long (%zu bytes, at most %zu)",
			    len, sizeof(o->params) - 1);
	memset(o->params, 0, sizeof(o->params));
	if (len)
		memcpy(o->params, params, len);
	return 0;
}

/* ---- spawn ----------------------------------------------------------- */

/* $TAPDISK, else tapdisk next to our own binary, else "tapdisk" on PATH. */
static void tapdisk_binary(char *out, size_t size)
{
	const char *env = getenv("TAPDISK");
	char self[PATH_MAX];
	ssize_t n;
	char *slash;

	if (env && *env) {
		snprintf(out, size, "%s", env);
		return;
	}
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		self[n] = '\0';
		slash = strrchr(self, '/');
		if (slash) {
			*slash = '\0';
			if ((size_t)snprintf(out, size, "%s/tapdisk", self) <
			    size && access(out, X_OK) == 0)
				return;
		}
	}
	snprintf(out, size, "tapdisk");
}

/*
 * Read @fd until its first line is complete (or EOF, the deadline, a full
 * buffer).  Not until EOF: a copy of the pipe may live on in the daemon
 * (valgrind keeps one for its own log, for instance).
 */
static int read_output(int fd, char *buf, size_t size, uint64_t deadline)
{
	size_t len = 0;

	for (;;) {
		ssize_t n;
		int err = wait_readable(fd, deadline, TDC_SPAWN_TIMEOUT_MS);

		if (err)
			return err;
		n = read(fd, buf + len, size - 1 - len);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0)
			return fail(errno, "reading tapdisk's output: %s",
				    strerror(errno));
		if (n == 0)
			break;
		len += (size_t)n;
		if (memchr(buf + len - (size_t)n, '\n', (size_t)n) ||
		    len == size - 1)
			break;
	}
	buf[len] = '\0';
	return 0;
}

pid_t tdc_spawn(void)
{
	char bin[PATH_MAX], out[TD_ERRMSG_MAX + 64], *end;
	char *argv[] = { bin, NULL };
	posix_spawn_file_actions_t fa;
	pid_t child, w;
	long pid;
	int p[2], err, st = 0;

	tapdisk_binary(bin, sizeof(bin));
	/* Said here, as posix_spawn cannot always report it (under valgrind). */
	if (strchr(bin, '/') && access(bin, X_OK) < 0)
		return fail(errno, "cannot run %s: %s", bin, strerror(errno));
	if (pipe2(p, O_CLOEXEC) < 0)
		return fail(errno, "pipe: %s", strerror(errno));
	/* stdout carries the pid, stderr the error line: both come to us. */
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, p[1], STDOUT_FILENO);
	posix_spawn_file_actions_adddup2(&fa, p[1], STDERR_FILENO);
	err = posix_spawnp(&child, bin, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(p[1]);
	if (err) {
		close(p[0]);
		return fail(err, "cannot run %s: %s", bin, strerror(err));
	}
	err = read_output(p[0], out, sizeof(out),
			  now_ms() + TDC_SPAWN_TIMEOUT_MS);
	close(p[0]);
	if (err) {
		kill(child, SIGKILL);
		waitpid(child, NULL, 0);
		return err;
	}
	do
		w = waitpid(child, &st, 0);
	while (w < 0 && errno == EINTR);
	out[strcspn(out, "\n")] = '\0';
	/* Without a status (SIGCHLD ignored by our caller), trust the output. */
	if (w == child && (!WIFEXITED(st) || WEXITSTATUS(st))) {
		if (out[0])
			return fail(EIO, "%s", out);
		if (WIFEXITED(st) && WEXITSTATUS(st) == 127)
			return fail(ENOENT, "cannot run %s: not found", bin);
		if (WIFSIGNALED(st))
			return fail(EIO, "%s died: %s", bin,
				    strsignal(WTERMSIG(st)));
		return fail(EIO, "%s failed without a message", bin);
	}
	errno = 0;
	pid = strtol(out, &end, 10);
	if (errno || end == out || *end || pid <= 0 || pid > INT_MAX)
		return fail(EPROTO, "%s printed '%s' instead of a pid", bin,
			    out);
	return (pid_t)pid;
}

/* ---- list ------------------------------------------------------------ */

static bool pid_alive(pid_t pid)
{
	return kill(pid, 0) == 0 || errno == EPERM;
}

/* The pid of a directory entry named ctl<pid>, or 0. */
static pid_t entry_pid(const char *name)
{
	size_t pl = strlen(TD_CTL_PREFIX);
	const char *d = name + pl;
	long v = 0;

	if (strncmp(name, TD_CTL_PREFIX, pl) || !*d || *d == '0')
		return 0;
	for (; *d; d++) {
		if (!isdigit((unsigned char)*d) || v > INT_MAX / 10)
			return 0;
		v = v * 10 + (*d - '0');
	}
	return v <= INT_MAX ? (pid_t)v : 0;
}

static int cmp_info(const void *a, const void *b)
{
	const struct td_ctl_info *x = a, *y = b;

	return (x->pid > y->pid) - (x->pid < y->pid);
}

int tdc_list(struct td_ctl_info **out)
{
	struct td_ctl_info *list = NULL, *grown;
	struct td_ctl_msg *req, *rep;
	size_t n = 0, cap = 0;
	struct dirent *de;
	DIR *dir;
	int err = 0;

	*out = NULL;
	dir = opendir(tdc_dir());
	if (!dir) {
		if (errno == ENOENT)
			return 0;	/* no tapdisk ever ran */
		return fail(errno, "cannot read %s: %s", tdc_dir(),
			    strerror(errno));
	}
	/* Messages are big (the stats body): keep them off the stack. */
	req = calloc(1, sizeof(*req));
	rep = calloc(1, sizeof(*rep));
	if (!req || !rep) {
		err = fail(ENOMEM, "out of memory");
		goto out;
	}
	while ((de = readdir(dir))) {
		pid_t pid = entry_pid(de->d_name);
		int sock;

		if (!pid)
			continue;
		if (!pid_alive(pid)) {
			/* Left by a tapdisk that died without cleaning up. */
			char path[PATH_MAX];

			snprintf(path, sizeof(path), "%s/%s", tdc_dir(),
				 de->d_name);
			unlink(path);
			continue;
		}
		sock = tdc_connect(pid);
		if (sock < 0)
			continue;	/* starting up, or not a tapdisk */
		memset(req, 0, sizeof(*req));
		req->type = TD_CTL_INFO;
		req->minor = -1;
		err = tdc_call(sock, req, NULL, 0, rep, TDC_LIST_TIMEOUT_MS);
		close(sock);
		if (err) {
			err = 0;	/* unresponsive: not listed */
			continue;
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 8;
			grown = realloc(list, cap * sizeof(*list));
			if (!grown) {
				err = fail(ENOMEM, "out of memory");
				goto out;
			}
			list = grown;
		}
		list[n] = rep->body.info;
		list[n].params[sizeof(list[n].params) - 1] = '\0';
		n++;
	}
	if (n)	/* list is NULL when empty: not for qsort() */
		qsort(list, n, sizeof(*list), cmp_info);
out:
	closedir(dir);
	free(req);
	free(rep);
	if (err) {
		free(list);
		return err;
	}
	*out = list;
	return (int)n;
}
