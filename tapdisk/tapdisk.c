// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * tapdisk: one process serving one virtual disk.
 *
 *   tapdisk [-F] [-h]
 *
 * Without -F it daemonizes and the parent prints the daemon's pid once the
 * control socket is up (or the daemon's one-line error, exit 1), so that
 * `pid=$(tapdisk)` is all a caller needs.  With -F it stays in the
 * foreground, logs to stderr and prints nothing else.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "control.h"
#include "event.h"
#include "log.h"
#include "tio.h"
#include "vbd.h"

#define TD_NR_TIO_REQS		1024
/* SIGTERM waits this long for in-flight I/O before failing it. */
#define TD_TERM_GRACE_MS	30000

static struct {
	int	sfd;
	int	sfd_id;
	int	grace_timer;
	bool	stopping;	/* a SIGTERM is being honoured */
	bool	forced;
	int	stage;		/* how far setup() got, for teardown() */
	int	status;		/* exit status */
} td = { .sfd = -1, .sfd_id = -1, .grace_timer = -1 };

static void usage(FILE *out)
{
	fprintf(out,
		"usage: tapdisk [-F] [-h]\n"
		"  -F  stay in the foreground and log to stderr\n"
		"  -h  show this help\n"
		"Without -F, tapdisk daemonizes and prints its pid.\n");
}

static void close_done(void *arg, int err)
{
	(void)arg;
	if (err < 0) {
		td_err("shutdown: closing the disk failed: %s", td_errmsg());
		td.status = 1;
	}
	td_loop_stop();
}

static void start_close(bool force)
{
	struct td_ctl_info info;
	int err;

	memset(&info, 0, sizeof(info));
	vbd_info(&info);
	td.forced = force;
	err = vbd_close(info.minor, force, close_done, NULL);
	if (err < 0) {
		/* Nothing to drain (not open, say): vbd_fini() cleans up. */
		td_debug("shutdown: close: %s", td_errmsg());
		td_loop_stop();
	}
}

static void grace_expired(void *arg)
{
	(void)arg;
	td.grace_timer = -1;
	td_warn("shutdown: in-flight I/O still pending after %d s; failing it",
		TD_TERM_GRACE_MS / 1000);
	start_close(true);
}

static void on_terminate(int signo)
{
	if (vbd_idle()) {
		td_info("%s: exiting", strsignal(signo));
		td_loop_stop();
		return;
	}
	if (td.stopping) {
		/* A second signal: do not wait any longer. */
		if (!td.forced) {
			td_warn("%s again: failing in-flight I/O",
				strsignal(signo));
			start_close(true);
		}
		return;
	}
	td.stopping = true;
	td_info("%s: closing the disk, then exiting", strsignal(signo));
	td.grace_timer = td_loop_add_timer(TD_TERM_GRACE_MS, 0, grace_expired,
					   NULL);
	start_close(false);
}

static void signal_event(void *arg, uint32_t events)
{
	struct signalfd_siginfo si;

	(void)arg;
	(void)events;
	while (read(td.sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT)
			on_terminate((int)si.ssi_signo);
	}
}

static int signals_init(const sigset_t *set)
{
	td.sfd = signalfd(-1, set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (td.sfd < 0)
		return td_fail(errno, "signalfd: %s", strerror(errno));
	td.sfd_id = td_loop_add_fd(td.sfd, EPOLLIN, signal_event, NULL);
	if (td.sfd_id < 0)
		return td_fail(-td.sfd_id, "cannot watch signals: %s",
			       strerror(-td.sfd_id));
	return 0;
}

enum { ST_NONE, ST_LOOP, ST_TIO, ST_VBD, ST_SIGNALS, ST_CONTROL };

static void teardown(void)
{
	if (td.stage >= ST_CONTROL)
		td_control_fini();
	if (td.stage >= ST_VBD)
		vbd_fini();
	if (td.stage >= ST_TIO)
		tio_fini();
	if (td.sfd_id >= 0)
		td_loop_del_fd(td.sfd_id);
	if (td.sfd >= 0)
		close(td.sfd);
	td.sfd = td.sfd_id = -1;
	if (td.stage >= ST_LOOP)
		td_loop_fini();
	td.stage = ST_NONE;
}

/* Everything before serving; 0 or -errno with td_errmsg() set. */
static int setup(const sigset_t *set)
{
	int err;

	err = td_loop_init();
	if (err < 0)
		return err;
	td.stage = ST_LOOP;
	err = tio_init(TD_NR_TIO_REQS);
	if (err < 0)
		return err;
	td.stage = ST_TIO;
	err = vbd_init();
	if (err < 0)
		return err;
	td.stage = ST_VBD;
	err = signals_init(set);
	if (err < 0)
		return err;
	td.stage = ST_SIGNALS;
	err = td_control_init();
	if (err < 0)
		return err;
	td.stage = ST_CONTROL;
	return 0;
}

static int serve(void)
{
	int err = td_loop_run();

	if (err < 0) {
		td_err("event loop failed: %s", strerror(-err));
		td.status = 1;
	}
	teardown();
	td_info("exited");
	return td.status;
}

static int run_foreground(const sigset_t *set)
{
	td_log_open("tapdisk", false);
	if (setup(set) < 0) {
		fprintf(stderr, "tapdisk: %s\n", td_errmsg());
		teardown();
		return 1;
	}
	return serve();
}

static void stdio_to_null(void)
{
	int fd = open("/dev/null", O_RDWR | O_CLOEXEC);

	if (fd < 0)
		return;
	dup2(fd, STDIN_FILENO);
	dup2(fd, STDOUT_FILENO);
	dup2(fd, STDERR_FILENO);
	if (fd > STDERR_FILENO)
		close(fd);
}

/* Write all of @s to @fd; a dead reader is not our problem. */
static void write_all(int fd, const char *s)
{
	size_t len = strlen(s);

	while (len) {
		ssize_t n = write(fd, s, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		s += n;
		len -= (size_t)n;
	}
}

/* The daemon: report "ok" or the error line through @wfd, then serve. */
static int run_daemon(const sigset_t *set, int wfd)
{
	char line[TD_ERRMSG_MAX + 8];

	if (setsid() < 0 || chdir("/") < 0) {
		snprintf(line, sizeof(line), "cannot detach: %s\n",
			 strerror(errno));
		write_all(wfd, line);
		return 1;
	}
	/* Before "ok": the caller's pipe must see EOF once we report. */
	stdio_to_null();
	td_log_open("tapdisk", true);
	if (setup(set) < 0) {
		snprintf(line, sizeof(line), "%s\n", td_errmsg());
		write_all(wfd, line);
		close(wfd);
		teardown();
		return 1;
	}
	write_all(wfd, "ok\n");
	close(wfd);
	return serve();
}

/* The parent: relay the daemon's pid or its error, then exit. */
static int run_parent(pid_t child, int rfd)
{
	char buf[TD_ERRMSG_MAX + 8];
	size_t len = 0;
	ssize_t n;
	int st;

	for (;;) {
		n = read(rfd, buf + len, sizeof(buf) - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
		/* One line is all the daemon sends. */
		if (memchr(buf + len - (size_t)n, '\n', (size_t)n) ||
		    len == sizeof(buf) - 1)
			break;
	}
	close(rfd);
	buf[len] = '\0';
	if (!strcmp(buf, "ok\n")) {
		printf("%d\n", (int)child);
		return fflush(stdout) ? 1 : 0;
	}
	buf[strcspn(buf, "\n")] = '\0';
	if (!buf[0]) {
		/* It died before reporting anything: say how. */
		if (waitpid(child, &st, 0) == child && WIFSIGNALED(st))
			snprintf(buf, sizeof(buf),
				 "the daemon died during start-up (%s)",
				 strsignal(WTERMSIG(st)));
		else
			snprintf(buf, sizeof(buf),
				 "the daemon exited during start-up");
	} else {
		waitpid(child, &st, 0);
	}
	fprintf(stderr, "tapdisk: %s\n", buf);
	return 1;
}

int main(int argc, char **argv)
{
	bool foreground = false;
	sigset_t set;
	int c, p[2];
	pid_t pid;

	opterr = 0;
	while ((c = getopt(argc, argv, ":Fh")) != -1) {
		switch (c) {
		case 'F':
			foreground = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			fprintf(stderr, "tapdisk: unknown option -%c (usage: tapdisk [-F] [-h])\n",
				optopt);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "tapdisk: unexpected argument '%s' (usage: tapdisk [-F] [-h])\n",
			argv[optind]);
		return 2;
	}

	/*
	 * Block the signals we take through signalfd before anything else:
	 * one sent early stays pending instead of killing us uncleanly.
	 */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigprocmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (foreground)
		return run_foreground(&set);

	if (pipe2(p, O_CLOEXEC) < 0) {
		fprintf(stderr, "tapdisk: pipe: %s\n", strerror(errno));
		return 1;
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		fprintf(stderr, "tapdisk: fork: %s\n", strerror(errno));
		return 1;
	}
	if (pid == 0) {
		close(p[0]);
		return run_daemon(&set, p[1]);
	}
	close(p[1]);
	return run_parent(pid, p[0]);
}
