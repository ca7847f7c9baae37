// SPDX-License-Identifier: LGPL-2.1-or-later
/*
 * td_ctl_validate(): every well-formed request passes, and each way of
 * being malformed is refused with its own errno and a reason that names
 * the problem.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "ctl-msg.h"

static struct td_ctl_msg msg;
static char why[TD_ERRMSG_MAX];

/* A valid request of @type in msg; returns its length. */
static size_t make(uint16_t type)
{
	memset(&msg, 0, sizeof(msg));
	msg.magic = TD_CTL_MAGIC;
	msg.version = TD_CTL_VERSION;
	msg.type = type;
	msg.length = td_ctl_request_size(type);
	msg.cookie = 42;
	msg.minor = 3;
	if (type == TD_CTL_OPEN) {
		msg.body.open.secondary = -1;
		strcpy(msg.body.open.params, "vhd:/images/a.vhd");
	}
	if (type == TD_CTL_FAULT) {
		msg.body.fault.count = 2;
		msg.body.fault.err = EIO;
		msg.body.fault.ops = TD_FAULT_READ | TD_FAULT_WRITE;
	}
	return msg.length;
}

static int check(size_t len, int nfds)
{
	memset(why, 0, sizeof(why));
	return td_ctl_validate(&msg, len, nfds, why, sizeof(why));
}

/* Refused with @err and a reason containing @word. */
#define assert_refused(len, nfds, err, word)				\
	do {								\
		assert_int_equal(check(len, nfds), -(err));		\
		if (!strstr(why, word))					\
			fail_msg("reason '%s' lacks '%s'", why, word);	\
	} while (0)

static void test_valid(void **state)
{
	(void)state;
	for (uint16_t t = 1; t <= TD_CTL_TYPE_MAX; t++) {
		size_t len = make(t);

		assert_int_equal(check(len, 0), 0);
		assert_string_equal(why, "");
	}
	assert_int_equal(check(make(TD_CTL_ATTACH), 3), 0);
	make(TD_CTL_CLOSE);
	msg.flags = TD_CLOSE_FORCE;
	assert_int_equal(check(msg.length, 0), 0);
	/* UNPAUSE with no image keeps the old one. */
	assert_int_equal(check(make(TD_CTL_UNPAUSE), 0), 0);
	make(TD_CTL_OPEN);
	msg.body.open.flags = TD_OPEN_RDONLY | TD_OPEN_NO_O_DIRECT |
			      TD_OPEN_SECONDARY;
	msg.body.open.secondary = 0;
	assert_int_equal(check(msg.length, 0), 0);
	/* INFO and STATS need no minor. */
	make(TD_CTL_INFO);
	msg.minor = -1;
	assert_int_equal(check(msg.length, 0), 0);
}

static void test_short(void **state)
{
	(void)state;
	make(TD_CTL_INFO);
	for (size_t len = 0; len < TD_CTL_HDR_SIZE; len++)
		assert_refused(len, 0, EPROTO, "shorter than");
	assert_int_equal(td_ctl_validate(NULL, 100, 0, why, sizeof(why)),
			 -EPROTO);
}

static void test_magic_version(void **state)
{
	(void)state;
	make(TD_CTL_INFO);
	msg.magic = 0x31434454;		/* byte-swapped */
	assert_refused(msg.length, 0, EPROTO, "magic");
	make(TD_CTL_INFO);
	msg.version = 2;
	assert_refused(msg.length, 0, EPROTO, "version 2");
}

static void test_type(void **state)
{
	static const uint16_t bad[] = { 0, TD_CTL_TYPE_MAX + 1, 0xffff };

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		make(TD_CTL_INFO);
		msg.type = bad[i];
		assert_refused(msg.length, 0, EINVAL, "unknown request type");
	}
}

static void test_length(void **state)
{
	size_t len;

	(void)state;
	/* The header disagrees with what arrived. */
	len = make(TD_CTL_OPEN);
	assert_refused(len - 1, 0, EPROTO, "arrived");
	/* Both agree, but not with the type's size. */
	make(TD_CTL_OPEN);
	msg.length = TD_CTL_HDR_SIZE;
	assert_refused(TD_CTL_HDR_SIZE, 0, EPROTO, "this request is");
	make(TD_CTL_INFO);
	msg.length += 8;
	assert_refused(msg.length, 0, EPROTO, "this request is");
}

static void test_strings(void **state)
{
	(void)state;
	make(TD_CTL_OPEN);
	memset(msg.body.open.params, 'a', sizeof(msg.body.open.params));
	assert_refused(msg.length, 0, EINVAL, "NUL-terminated");
	make(TD_CTL_UNPAUSE);
	memset(msg.body.open.params, 'a', sizeof(msg.body.open.params));
	assert_refused(msg.length, 0, EINVAL, "NUL-terminated");
	make(TD_CTL_OPEN);
	msg.body.open.params[0] = '\0';
	assert_refused(msg.length, 0, EINVAL, "no image");
	make(TD_CTL_OPEN);
	strcpy(msg.body.open.params, "/images/a.vhd");
	assert_refused(msg.length, 0, EINVAL, "type:path");
	make(TD_CTL_OPEN);
	strcpy(msg.body.open.params, "vhd:");
	assert_refused(msg.length, 0, EINVAL, "type:path");
	make(TD_CTL_UNPAUSE);
	strcpy(msg.body.open.params, ":/x");
	assert_refused(msg.length, 0, EINVAL, "type:path");
}

static void test_flags(void **state)
{
	(void)state;
	make(TD_CTL_PAUSE);
	msg.flags = TD_CLOSE_FORCE;	/* only CLOSE takes it */
	assert_refused(msg.length, 0, EINVAL, "unknown flags");
	make(TD_CTL_CLOSE);
	msg.flags = 0x80;
	assert_refused(msg.length, 0, EINVAL, "unknown flags");
	make(TD_CTL_OPEN);
	msg.body.open.flags = 0x100;
	assert_refused(msg.length, 0, EINVAL, "open flags");
	make(TD_CTL_OPEN);
	msg.body.open.flags = TD_OPEN_SECONDARY;
	msg.body.open.secondary = -1;
	assert_refused(msg.length, 0, EINVAL, "secondary");
	make(TD_CTL_UNPAUSE);
	msg.body.open.flags = TD_OPEN_RDONLY;
	assert_refused(msg.length, 0, EINVAL, "not allowed");
}

static void test_fds(void **state)
{
	(void)state;
	assert_refused(make(TD_CTL_ATTACH), 1, EINVAL, "0 or 3");
	assert_refused(make(TD_CTL_ATTACH), 4, EINVAL, "0 or 3");
	assert_refused(make(TD_CTL_OPEN), 1, EINVAL, "only ATTACH");
	assert_refused(make(TD_CTL_INFO), 3, EINVAL, "only ATTACH");
}

static void test_minor(void **state)
{
	(void)state;
	make(TD_CTL_PAUSE);
	msg.minor = -1;
	assert_refused(msg.length, 0, EINVAL, "invalid minor -1");
}

static void test_fault(void **state)
{
	(void)state;
	make(TD_CTL_FAULT);
	msg.body.fault.ops = 0;
	assert_refused(msg.length, 0, EINVAL, "ops");
	make(TD_CTL_FAULT);
	msg.body.fault.ops = 0x10;
	assert_refused(msg.length, 0, EINVAL, "ops");
	make(TD_CTL_FAULT);
	msg.body.fault.err = 0;
	assert_refused(msg.length, 0, EINVAL, "errno 0");
	make(TD_CTL_FAULT);
	msg.body.fault.err = -5;
	assert_refused(msg.length, 0, EINVAL, "errno -5");
	make(TD_CTL_FAULT);
	msg.body.fault.count = 0;
	msg.body.fault.err = 0;
	assert_int_equal(check(msg.length, 0), 0);
}

/* Unaligned input and a tiny reason buffer are fine too. */
static void test_unaligned(void **state)
{
	size_t len = make(TD_CTL_OPEN);
	char *buf = malloc(len + 1), small[8];

	(void)state;
	assert_non_null(buf);
	memcpy(buf + 1, &msg, len);
	assert_int_equal(td_ctl_validate(buf + 1, len, 0, why, sizeof(why)), 0);
	buf[1] ^= 1;
	assert_int_equal(td_ctl_validate(buf + 1, len, 0, small, sizeof(small)),
			 -EPROTO);
	assert_int_equal(strlen(small), sizeof(small) - 1);
	assert_int_equal(td_ctl_validate(buf + 1, len, 0, NULL, 0), -EPROTO);
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid),
		cmocka_unit_test(test_short),
		cmocka_unit_test(test_magic_version),
		cmocka_unit_test(test_type),
		cmocka_unit_test(test_length),
		cmocka_unit_test(test_strings),
		cmocka_unit_test(test_flags),
		cmocka_unit_test(test_fds),
		cmocka_unit_test(test_minor),
		cmocka_unit_test(test_fault),
		cmocka_unit_test(test_unaligned),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
