// SPDX-License-Identifier: LGPL-2.1-or-later
/* tap-ctl stats: a disk's counters as JSON (built with json-c). */
#include <stdio.h>
#include <string.h>

#include <json-c/json.h>

#include "blktap-ring.h"
#include "tap-ctl.h"

static const struct tc_cmdline cmdline = {
	.usage = "usage: tap-ctl stats -p PID -m MINOR [-h]\n",
};

static void add_u64(json_object *o, const char *key, uint64_t v)
{
	json_object_object_add(o, key, json_object_new_uint64(v));
}

/* {"read": r, "write": w} */
static json_object *rw(uint64_t r, uint64_t w)
{
	json_object *o = json_object_new_object();

	add_u64(o, "read", r);
	add_u64(o, "write", w);
	return o;
}

static json_object *image_json(const struct td_ctl_image_stats *im)
{
	json_object *o = json_object_new_object();

	json_object_object_add(o, "params",
		json_object_new_string_len(im->params,
			(int)strnlen(im->params, sizeof(im->params))));
	json_object_object_add(o, "hits", rw(im->hits_rd, im->hits_wr));
	json_object_object_add(o, "fails", rw(im->fail_rd, im->fail_wr));
	json_object_object_add(o, "bytes", rw(im->bytes_rd, im->bytes_wr));
	return o;
}

static json_object *domain_json(const struct td_ctl_domain_stats *d)
{
	json_object *o = json_object_new_object();

	/* dom0's own I/O has no domain id: null rather than 65535. */
	json_object_object_add(o, "domid", d->domid == BLKTAP_DOMID_NONE ?
			       NULL : json_object_new_int(d->domid));
	json_object_object_add(o, "requests", rw(d->reqs_rd, d->reqs_wr));
	json_object_object_add(o, "bytes", rw(d->bytes_rd, d->bytes_wr));
	return o;
}

static json_object *stats_json(pid_t pid, const struct td_ctl_stats *st)
{
	json_object *o = json_object_new_object();
	json_object *reqs = json_object_new_object();
	json_object *images = json_object_new_array();
	json_object *domains = json_object_new_array();
	uint32_t ni = st->nr_images, nd = st->nr_domains;

	json_object_object_add(o, "pid", json_object_new_int(pid));
	json_object_object_add(o, "minor", json_object_new_int(st->minor));
	json_object_object_add(o, "state", json_object_new_int64(st->state));
	json_object_object_add(o, "timeout", json_object_new_int64(st->timeout_s));
	add_u64(reqs, "read", st->reqs_rd);
	add_u64(reqs, "write", st->reqs_wr);
	add_u64(reqs, "flush", st->reqs_flush);
	add_u64(reqs, "discard", st->reqs_discard);
	add_u64(reqs, "write_zeroes", st->reqs_write_zeroes);
	json_object_object_add(o, "requests", reqs);
	add_u64(o, "errors", st->reqs_err);
	add_u64(o, "bad", st->reqs_bad);
	add_u64(o, "inflight", st->inflight);
	add_u64(o, "inflight_max", st->inflight_max);
	add_u64(o, "merges", st->merges);
	add_u64(o, "iocbs", st->iocbs);
	add_u64(o, "retries", st->retries);
	add_u64(o, "timeouts", st->timeouts);
	add_u64(o, "stalls", st->stalls);
	add_u64(o, "errors_transient", st->errors_transient);
	add_u64(o, "errors_permanent", st->errors_permanent);
	/* The counts come from tapdisk: never index past the arrays. */
	if (ni > TD_STATS_MAX_IMAGES)
		ni = TD_STATS_MAX_IMAGES;
	if (nd > TD_STATS_MAX_DOMAINS)
		nd = TD_STATS_MAX_DOMAINS;
	for (uint32_t i = 0; i < ni; i++)
		json_object_array_add(images, image_json(&st->image[i]));
	for (uint32_t i = 0; i < nd; i++)
		json_object_array_add(domains, domain_json(&st->domain[i]));
	json_object_object_add(o, "images", images);
	json_object_object_add(o, "domains", domains);
	return o;
}

int tap_ctl_stats(int argc, char **argv)
{
	static struct td_ctl_msg rep;
	struct tc_target t;
	json_object *o;
	int rc = tc_parse(argc, argv, &cmdline, NULL, &t);

	if (rc != TC_CONTINUE)
		return rc;
	rc = tc_send(&t, TD_CTL_STATS, NULL, &rep);
	if (rc)
		return rc;
	o = stats_json(t.pid, &rep.body.stats);
	printf("%s\n", json_object_to_json_string_ext(o,
			JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED |
			JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(o);
	return fflush(stdout) ? tc_error(TC_EXIT_FAIL, "cannot write the stats") :
				TC_EXIT_OK;
}
