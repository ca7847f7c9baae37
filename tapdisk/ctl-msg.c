// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * Control request validation.  Everything is read through memcpy: the
 * buffer may come from a fuzzer at any alignment, and a request must be
 * judged before anything trusts its fields.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "ctl-msg.h"

static int refuse(char *why, size_t whylen, int err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int refuse(char *why, size_t whylen, int err, const char *fmt, ...)
{
	va_list ap;

	if (why && whylen) {
		va_start(ap, fmt);
		vsnprintf(why, whylen, fmt, ap);
		va_end(ap);
	}
	return -err;
}

static const char *type_name(uint16_t type)
{
	static const char *const names[] = {
		[TD_CTL_INFO] = "INFO",		[TD_CTL_ATTACH] = "ATTACH",
		[TD_CTL_DETACH] = "DETACH",	[TD_CTL_OPEN] = "OPEN",
		[TD_CTL_CLOSE] = "CLOSE",	[TD_CTL_PAUSE] = "PAUSE",
		[TD_CTL_UNPAUSE] = "UNPAUSE",	[TD_CTL_STATS] = "STATS",
		[TD_CTL_FAULT] = "FAULT",
	};

	if (type < 1 || type > TD_CTL_TYPE_MAX)
		return "?";
	return names[type];
}

/* Types that address one disk must name a real minor. */
static int needs_minor(uint16_t type)
{
	return type != TD_CTL_INFO && type != TD_CTL_STATS &&
	       type != TD_CTL_FAULT;
}

static int check_open(const unsigned char *p, uint16_t type, char *why,
		      size_t whylen)
{
	const uint32_t known = TD_OPEN_RDONLY | TD_OPEN_NO_O_DIRECT |
			       TD_OPEN_SECONDARY;
	struct td_ctl_open o;
	const char *colon;
	size_t n;

	/* The params array is the last and biggest field: copy it whole. */
	memcpy(&o, p + TD_CTL_HDR_SIZE, sizeof(o));
	if (!memchr(o.params, '\0', sizeof(o.params)))
		return refuse(why, whylen, EINVAL,
			      "%s: params are not NUL-terminated",
			      type_name(type));
	n = strlen(o.params);
	if (type == TD_CTL_UNPAUSE) {
		/* Unpause may leave the image as it was. */
		if (o.flags)
			return refuse(why, whylen, EINVAL,
				      "UNPAUSE: open flags 0x%x are not allowed",
				      o.flags);
		if (!n)
			return 0;
	} else {
		if (o.flags & ~known)
			return refuse(why, whylen, EINVAL,
				      "OPEN: unknown open flags 0x%x",
				      o.flags & ~known);
		if ((o.flags & TD_OPEN_SECONDARY) && o.secondary < 0)
			return refuse(why, whylen, EINVAL,
				      "OPEN: secondary minor %d is negative",
				      (int)o.secondary);
		if (!n)
			return refuse(why, whylen, EINVAL,
				      "OPEN: no image given (params are empty)");
	}
	colon = strchr(o.params, ':');
	if (!colon || colon == o.params || !colon[1])
		return refuse(why, whylen, EINVAL,
			      "%s: params '%.64s' are not type:path",
			      type_name(type), o.params);
	return 0;
}

static int check_fault(const unsigned char *p, char *why, size_t whylen)
{
	const uint32_t known = TD_FAULT_READ | TD_FAULT_WRITE | TD_FAULT_FLUSH;
	struct td_ctl_fault f;

	memcpy(&f, p + TD_CTL_HDR_SIZE, sizeof(f));
	if (!f.ops || (f.ops & ~known))
		return refuse(why, whylen, EINVAL,
			      "FAULT: invalid ops 0x%x (known: 0x%x)",
			      f.ops, known);
	/* A zero count injects nothing, so err matters only otherwise. */
	if (f.count && (f.err <= 0 || f.err >= 4096))
		return refuse(why, whylen, EINVAL,
			      "FAULT: errno %d is not in 1..4095", (int)f.err);
	return 0;
}

int td_ctl_validate(const void *buf, size_t len, int nfds, char *why,
		    size_t whylen)
{
	const unsigned char *p = buf;
	struct td_ctl_msg h;
	uint32_t want;

	if (why && whylen)
		why[0] = '\0';
	if (!buf || len < TD_CTL_HDR_SIZE)
		return refuse(why, whylen, EPROTO,
			      "message of %zu bytes is shorter than the %zu-byte header",
			      buf ? len : 0, (size_t)TD_CTL_HDR_SIZE);
	memcpy(&h, p, TD_CTL_HDR_SIZE);
	if (h.magic != TD_CTL_MAGIC)
		return refuse(why, whylen, EPROTO,
			      "bad magic 0x%08x (expected 0x%08x)",
			      h.magic, TD_CTL_MAGIC);
	if (h.version != TD_CTL_VERSION)
		return refuse(why, whylen, EPROTO,
			      "unsupported protocol version %u (this tapdisk speaks %u)",
			      h.version, TD_CTL_VERSION);
	want = td_ctl_request_size(h.type);
	if (!want)
		return refuse(why, whylen, EINVAL, "unknown request type %u",
			      h.type);
	if (h.length != len)
		return refuse(why, whylen, EPROTO,
			      "%s: header says %u bytes but %zu arrived",
			      type_name(h.type), h.length, len);
	if (len != want)
		return refuse(why, whylen, EPROTO,
			      "%s: %zu bytes, but this request is %u bytes",
			      type_name(h.type), len, want);
	if (nfds < 0)
		nfds = 0;
	if (h.type == TD_CTL_ATTACH) {
		if (nfds != 0 && nfds != TD_CTL_ATTACH_FDS)
			return refuse(why, whylen, EINVAL,
				      "ATTACH: %d descriptors (0 or %d expected)",
				      nfds, TD_CTL_ATTACH_FDS);
	} else if (nfds) {
		return refuse(why, whylen, EINVAL,
			      "%s: %d descriptors attached (only ATTACH takes any)",
			      type_name(h.type), nfds);
	}
	if (h.flags & ~(h.type == TD_CTL_CLOSE ? TD_CLOSE_FORCE : 0u))
		return refuse(why, whylen, EINVAL, "%s: unknown flags 0x%x",
			      type_name(h.type), h.flags);
	if (needs_minor(h.type) && h.minor < 0)
		return refuse(why, whylen, EINVAL, "%s: invalid minor %d",
			      type_name(h.type), (int)h.minor);
	switch (h.type) {
	case TD_CTL_OPEN:
	case TD_CTL_UNPAUSE:
		return check_open(p, h.type, why, whylen);
	case TD_CTL_FAULT:
		return check_fault(p, why, whylen);
	default:
		return 0;
	}
}
