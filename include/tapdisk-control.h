/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The control protocol between tap-ctl (or the test rig) and a tapdisk.
 *
 * Each tapdisk listens on a SOCK_SEQPACKET unix socket named
 * TD_CTL_DIR/ctl<pid>; the directory is 0700 and owned by root, so only
 * root connects.  BLKTAP_CONTROL_DIR in the environment overrides the
 * directory (tests use it to stay out of the system's way).
 *
 * A client sends one request message and reads one reply; it may send
 * several requests on one connection.  Every message is a struct
 * td_ctl_msg: a fixed header and a fixed-size body for its type, so a
 * message whose length, magic, version or type is wrong is refused by
 * looking at the header alone.  Strings are NUL-terminated inside their
 * fixed arrays; one that is not is refused.
 *
 * A reply has the request's type, the same cookie, status 0 or a negative
 * errno, and on failure a one-line reason in body.error.msg.  The ATTACH
 * request of the rig carries three file descriptors (SCM_RIGHTS): the
 * ring's shared memory, the eventfd that wakes tapdisk, and the eventfd
 * tapdisk signals.  Without descriptors, ATTACH opens the kernel's ring
 * device for the minor.
 */
#ifndef TAPDISK_CONTROL_H
#define TAPDISK_CONTROL_H

#include <stddef.h>
#include <stdint.h>

#define TD_CTL_DIR		"/run/blktap-control"
#define TD_CTL_DIR_ENV		"BLKTAP_CONTROL_DIR"
#define TD_CTL_PREFIX		"ctl"		/* socket: <dir>/ctl<pid> */

#define TD_CTL_MAGIC		0x54444331u	/* "TDC1" */
#define TD_CTL_VERSION		1u

#define TD_PARAMS_MAX		4096		/* "type:/path" with its NUL */
#define TD_ERRMSG_MAX		256
#define TD_STATS_MAX_IMAGES	16		/* leaf first; deeper are summed */
#define TD_STATS_PARAMS_MAX	1024		/* shown cut to this */

enum td_ctl_type {
	TD_CTL_INFO = 1,	/* -> td_ctl_info: pid, minor, state, params */
	TD_CTL_ATTACH,		/* minor (+ 3 fds from the rig) */
	TD_CTL_DETACH,		/* minor */
	TD_CTL_OPEN,		/* td_ctl_open */
	TD_CTL_CLOSE,		/* minor, flags TD_CLOSE_FORCE */
	TD_CTL_PAUSE,		/* minor */
	TD_CTL_UNPAUSE,		/* td_ctl_open: params empty = same image */
	TD_CTL_STATS,		/* -> td_ctl_stats */
	TD_CTL_FAULT,		/* td_ctl_fault; only with TD_FAULTS_ENV set */
	TD_CTL_TYPE_MAX = TD_CTL_FAULT,
};

/* OPEN flags (the established tap-ctl flags). */
#define TD_OPEN_RDONLY		0x1	/* -R */
#define TD_OPEN_NO_O_DIRECT	0x2	/* -D */
#define TD_OPEN_SECONDARY	0x4	/* -e parent_minor given */

#define TD_CLOSE_FORCE		0x1	/* -f: fail in-flight I/O, close now */

/* State bits, shown by `tap-ctl list` as state=0x... */
#define TD_STATE_ATTACHED	0x01	/* a ring is attached */
#define TD_STATE_OPEN		0x02	/* an image is open */
#define TD_STATE_PAUSE_REQ	0x04	/* draining towards pause */
#define TD_STATE_PAUSED		0x08
#define TD_STATE_DEAD		0x10	/* the ring failed; waiting for detach */

/* Test-only fault injection, enabled by this variable in the environment. */
#define TD_FAULTS_ENV		"TAPDISK_TEST_FAULTS"
#define TD_FAULT_READ		0x1
#define TD_FAULT_WRITE		0x2
#define TD_FAULT_FLUSH		0x4

struct td_ctl_open {
	uint32_t	flags;		/* TD_OPEN_* */
	uint32_t	timeout_s;	/* -t: request timeout, 0 = default */
	int32_t		secondary;	/* -e minor, or -1 */
	uint32_t	reserved;
	char		params[TD_PARAMS_MAX];	/* "vhd:/path", NUL-terminated */
};

struct td_ctl_info {
	int32_t		pid;
	int32_t		minor;		/* -1: none attached */
	uint32_t	state;		/* TD_STATE_* */
	uint32_t	reserved;
	char		params[TD_PARAMS_MAX];	/* "" when nothing is open */
};

struct td_ctl_fault {
	uint32_t	count;		/* the next @count matching I/Os fail */
	int32_t		err;		/* with this positive errno */
	uint32_t	ops;		/* TD_FAULT_* */
	uint32_t	reserved;
};

struct td_ctl_image_stats {
	char		params[TD_STATS_PARAMS_MAX];
	uint64_t	hits_rd;	/* read requests this image served */
	uint64_t	hits_wr;
	uint64_t	fail_rd;	/* I/O errors on this image */
	uint64_t	fail_wr;
	uint64_t	bytes_rd;
	uint64_t	bytes_wr;
};

struct td_ctl_domain_stats {
	uint16_t	domid;		/* BLKTAP_DOMID_NONE: dom0's own I/O */
	uint16_t	reserved[3];
	uint64_t	reqs_rd;
	uint64_t	reqs_wr;
	uint64_t	bytes_rd;
	uint64_t	bytes_wr;
};

#define TD_STATS_MAX_DOMAINS	8

struct td_ctl_stats {
	int32_t		minor;
	uint32_t	state;
	uint32_t	nr_images;	/* filled entries of image[] */
	uint32_t	nr_domains;
	uint64_t	reqs_rd;	/* ring requests by op */
	uint64_t	reqs_wr;
	uint64_t	reqs_flush;
	uint64_t	reqs_discard;
	uint64_t	reqs_write_zeroes;
	uint64_t	reqs_err;	/* completed with an error */
	uint64_t	reqs_bad;	/* refused as malformed */
	uint64_t	inflight;	/* ring requests in flight now */
	uint64_t	inflight_max;
	uint64_t	merges;		/* requests merged into a neighbour's iocb */
	uint64_t	iocbs;		/* iocbs submitted */
	uint64_t	retries;	/* I/Os retried after a transient error */
	uint64_t	timeouts;	/* requests failed after the timeout */
	uint64_t	stalls;		/* watchdog reports of a stuck request */
	uint64_t	errors_transient;
	uint64_t	errors_permanent;
	uint32_t	timeout_s;
	uint32_t	reserved;
	struct td_ctl_image_stats image[TD_STATS_MAX_IMAGES];
	struct td_ctl_domain_stats domain[TD_STATS_MAX_DOMAINS];
};

struct td_ctl_msg {
	uint32_t	magic;		/* TD_CTL_MAGIC */
	uint16_t	version;	/* TD_CTL_VERSION */
	uint16_t	type;		/* enum td_ctl_type */
	uint32_t	length;		/* bytes of header + body sent */
	uint32_t	cookie;		/* echoed in the reply */
	int32_t		minor;		/* the disk addressed, or -1 */
	int32_t		status;		/* reply: 0 or -errno */
	uint32_t	flags;		/* per type, e.g. TD_CLOSE_FORCE */
	uint32_t	reserved;
	union {
		struct td_ctl_open	open;
		struct td_ctl_info	info;
		struct td_ctl_fault	fault;
		struct td_ctl_stats	stats;
		struct {
			char	msg[TD_ERRMSG_MAX];
		} error;
	} body;
};

#define TD_CTL_HDR_SIZE		offsetof(struct td_ctl_msg, body)

/*
 * Bytes a request of @type must carry (header + its body), or 0 for an
 * unknown type.  Replies carry TD_CTL_HDR_SIZE + the reply body, or the
 * error body on failure.
 */
static inline uint32_t td_ctl_request_size(uint16_t type)
{
	switch (type) {
	case TD_CTL_OPEN:
	case TD_CTL_UNPAUSE:
		return TD_CTL_HDR_SIZE + sizeof(struct td_ctl_open);
	case TD_CTL_FAULT:
		return TD_CTL_HDR_SIZE + sizeof(struct td_ctl_fault);
	case TD_CTL_INFO:
	case TD_CTL_ATTACH:
	case TD_CTL_DETACH:
	case TD_CTL_CLOSE:
	case TD_CTL_PAUSE:
	case TD_CTL_STATS:
		return TD_CTL_HDR_SIZE;
	default:
		return 0;
	}
}

#endif /* TAPDISK_CONTROL_H */
