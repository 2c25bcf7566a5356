/*
 * test_check_dmarc.c - unit tests for check_dmarc.c with records from an
 * in-process table (dmarcv_lib_set_txt_lookup): record selection
 * (v=DMARC1 first, several records, fallback to the organisational
 * domain), strict and relaxed alignment including the cases libopendmarc
 * 1.4.2 gets wrong, pct= with a fixed sampler, and the error results.
 */

/* System. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Libraries. */
#include <cmocka.h>

/* Project. */
#include "check_dmarc.h"

static const struct {
	const char *name;
	enum dmarcv_txt_status status;
	const char *records;
} zone[] = {
	{ "_dmarc.example.com", DMARCV_TXT_OK, "v=DMARC1; p=reject; sp=none" },
	{ "_dmarc.strict.example.net", DMARCV_TXT_OK, "v=DMARC1; p=quarantine; adkim=s; aspf=s" },
	{ "_dmarc.spaces.example.net", DMARCV_TXT_OK, "  v = DMARC1 ; p = reject" },
	{ "_dmarc.glued.example.net", DMARCV_TXT_OK, "v=DMARC1p=reject" },
	{ "_dmarc.two.example.net", DMARCV_TXT_OK, "v=DMARC1; p=reject\nv=DMARC1; p=none" },
	{ "_dmarc.mixed.example.net", DMARCV_TXT_OK, "v=spf1 -all\nv=DMARC1; p=quarantine" },
	{ "_dmarc.nop.example.net", DMARCV_TXT_OK, "v=DMARC1; rua=mailto:x@example.net" },
	{ "_dmarc.temp.example.net", DMARCV_TXT_TEMPFAIL, "" },
	{ "_dmarc.pct.example.net", DMARCV_TXT_OK, "v=DMARC1; p=reject; pct=30" },
	{ "_dmarc.example.co.uk", DMARCV_TXT_OK, "v=DMARC1; p=reject" },
	{ NULL, 0, NULL },
};

/* txt_table - a dmarcv_txt_fn over zone[]. */
static enum dmarcv_txt_status
txt_table(void *arg, const char *name, char *out, size_t outlen)
{
	size_t i;

	for (i = 0; zone[i].name != NULL; i++)
		if (strcasecmp(zone[i].name, name) == 0) {
			snprintf(out, outlen, "%s", zone[i].records);
			return zone[i].status;
		}
	out[0] = '\0';
	return DMARCV_TXT_NOTFOUND;
}

static unsigned sample_value;

/* sampler - the fixed pct= sample of the current row. */
static unsigned
sampler(void)
{
	return sample_value;
}

/* One evaluation: facts in, expected outcome. */
struct dmarc_case {
	const char *name;
	const char *from, *spf_result, *spf_domain;
	const char *dkim_result, *dkim_domain;
	unsigned sample;
	enum dmarcv_result result;
	enum dmarcv_policy policy, disposition;
	const char *record_domain;
};

static const struct dmarc_case cases[] = {
	{ "reject_no_auth", "example.com", "fail", "example.com", NULL, NULL, 0,
	  DMARCV_FAIL, DMARCV_POLICY_REJECT, DMARCV_POLICY_REJECT, "example.com" },
	{ "subdomain_sp_none", "a.b.example.com", NULL, NULL, NULL, NULL, 0,
	  DMARCV_FAIL, DMARCV_POLICY_NONE, DMARCV_POLICY_NONE, "example.com" },
	{ "relaxed_dkim_org_match", "a.b.example.com", NULL, NULL, "pass", "c.example.com", 0,
	  DMARCV_PASS, DMARCV_POLICY_NONE, DMARCV_POLICY_NONE, "example.com" },
	{ "strict_dkim_exact", "strict.example.net", NULL, NULL, "pass", "strict.example.net", 0,
	  DMARCV_PASS, DMARCV_POLICY_QUARANTINE, DMARCV_POLICY_NONE, "strict.example.net" },
	/* libopendmarc 1.4.2 would call these two aligned. */
	{ "strict_dkim_child_not_aligned", "strict.example.net", NULL, NULL, "pass",
	  "mail.strict.example.net", 0, DMARCV_FAIL, DMARCV_POLICY_QUARANTINE,
	  DMARCV_POLICY_QUARANTINE, "strict.example.net" },
	{ "relaxed_public_suffix_not_aligned", "example.co.uk", "pass", "co.uk", NULL, NULL, 0,
	  DMARCV_FAIL, DMARCV_POLICY_REJECT, DMARCV_POLICY_REJECT, "example.co.uk" },
	{ "strict_spf_parent_not_aligned", "strict.example.net", "pass", "example.net", NULL,
	  NULL, 0, DMARCV_FAIL, DMARCV_POLICY_QUARANTINE, DMARCV_POLICY_QUARANTINE,
	  "strict.example.net" },
	{ "spaces_around_equals", "spaces.example.net", NULL, NULL, NULL, NULL, 0,
	  DMARCV_FAIL, DMARCV_POLICY_REJECT, DMARCV_POLICY_REJECT, "spaces.example.net" },
	/* Not a DMARC record; example.net has none either. */
	{ "glued_tag_is_no_record", "glued.example.net", NULL, NULL, NULL, NULL, 0,
	  DMARCV_NONE, DMARCV_POLICY_UNSET, DMARCV_POLICY_UNSET, "" },
	{ "two_records_is_none", "two.example.net", NULL, NULL, NULL, NULL, 0,
	  DMARCV_NONE, DMARCV_POLICY_UNSET, DMARCV_POLICY_UNSET, "" },
	{ "spf_record_beside_dmarc", "mixed.example.net", NULL, NULL, NULL, NULL, 0,
	  DMARCV_FAIL, DMARCV_POLICY_QUARANTINE, DMARCV_POLICY_QUARANTINE, "mixed.example.net" },
	{ "missing_p_is_permerror", "nop.example.net", NULL, NULL, NULL, NULL, 0,
	  DMARCV_PERMERROR, DMARCV_POLICY_UNSET, DMARCV_POLICY_UNSET, "nop.example.net" },
	{ "tempfail_is_temperror", "temp.example.net", NULL, NULL, NULL, NULL, 0,
	  DMARCV_TEMPERROR, DMARCV_POLICY_UNSET, DMARCV_POLICY_UNSET, "" },
	{ "pct30_sample_29_applies", "pct.example.net", NULL, NULL, NULL, NULL, 29,
	  DMARCV_FAIL, DMARCV_POLICY_REJECT, DMARCV_POLICY_REJECT, "pct.example.net" },
	{ "pct30_sample_30_downgrades", "pct.example.net", NULL, NULL, NULL, NULL, 30,
	  DMARCV_FAIL, DMARCV_POLICY_REJECT, DMARCV_POLICY_QUARANTINE, "pct.example.net" },
	{ "dkim_temperror_is_not_pass", "example.com", NULL, NULL, "temperror", "example.com", 0,
	  DMARCV_FAIL, DMARCV_POLICY_REJECT, DMARCV_POLICY_REJECT, "example.com" },
	{ "bad_from_domain", "exa mple.com", NULL, NULL, NULL, NULL, 0,
	  DMARCV_NONE, DMARCV_POLICY_UNSET, DMARCV_POLICY_UNSET, "" },
};

/* dmarc_table - every row of cases. */
static void
dmarc_table(void **state)
{
	struct dmarcv_lib *lib;
	char err[256];
	size_t i;
	int failed = 0;

	lib = dmarcv_lib_new(NULL, NULL, err, sizeof err);
	assert_non_null(lib);
	dmarcv_lib_set_txt_lookup(lib, txt_table, NULL);
	dmarcv_lib_set_sampler(lib, sampler);
	for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		const struct dmarc_case *c = &cases[i];
		struct dmarcv_dkim dk = { c->dkim_domain, "s", c->dkim_result };
		struct dmarcv_input in = { c->from, c->spf_domain, c->spf_result, false,
					   &dk, c->dkim_result ? 1 : 0 };
		struct dmarcv_outcome out;

		sample_value = c->sample;
		dmarcv_check(lib, &in, &out);
		if (out.result != c->result || out.policy != c->policy ||
		    out.disposition != c->disposition ||
		    strcmp(out.record_domain, c->record_domain) != 0) {
			fprintf(stderr, "case %s: got %s %s %s [%s] (%s)\n", c->name,
				dmarcv_result_str(out.result), dmarcv_policy_str(out.policy),
				dmarcv_policy_str(out.disposition), out.record_domain, out.reason);
			failed++;
		}
	}
	dmarcv_lib_free(lib);
	assert_int_equal(failed, 0);
}

/* org_domains - PSL answers. */
static void
org_domains(void **state)
{
	struct dmarcv_lib *lib;
	char err[256], buf[256];

	lib = dmarcv_lib_new(NULL, NULL, err, sizeof err);
	assert_non_null(lib);
	assert_int_equal(dmarcv_org_domain(lib, "A.B.Example.COM.", buf, sizeof buf), 0);
	assert_string_equal(buf, "example.com");
	assert_int_equal(dmarcv_org_domain(lib, "x.example.co.uk", buf, sizeof buf), 0);
	assert_string_equal(buf, "example.co.uk");
	assert_int_equal(dmarcv_org_domain(lib, "co.uk", buf, sizeof buf), -1);
	assert_int_equal(dmarcv_org_domain(lib, "", buf, sizeof buf), -1);
	dmarcv_lib_free(lib);
	dmarcv_lib_free(NULL);
}

/* org_domains_cached - answers come from the per-thread cache the second
 * time, still right: many names share its 16 slots, a name without an
 * organizational domain stays without one, a short buffer still refuses,
 * and a new library does not see the old one's entries. */
static void
org_domains_cached(void **state)
{
	struct dmarcv_lib *lib;
	char err[256], buf[256], name[64], want[64];

	lib = dmarcv_lib_new(NULL, NULL, err, sizeof err);
	assert_non_null(lib);
	for (int round = 0; round < 3; round++)
		for (int i = 0; i < 100; i++) {
			snprintf(name, sizeof name, "mx%d.d%d.co.uk", i, i);
			snprintf(want, sizeof want, "d%d.co.uk", i);
			assert_int_equal(dmarcv_org_domain(lib, name, buf, sizeof buf), 0);
			assert_string_equal(buf, want);
			assert_int_equal(dmarcv_org_domain(lib, "co.uk", buf, sizeof buf), -1);
		}
	assert_int_equal(dmarcv_org_domain(lib, "mx1.d1.co.uk", buf, 8), -1);
	assert_int_equal(dmarcv_org_domain(lib, "mx1.d1.co.uk", buf, sizeof buf), 0);
	assert_string_equal(buf, "d1.co.uk");
	dmarcv_lib_free(lib);
	lib = dmarcv_lib_new(NULL, NULL, err, sizeof err);
	assert_non_null(lib);
	assert_int_equal(dmarcv_org_domain(lib, "mx1.d1.co.uk", buf, sizeof buf), 0);
	assert_string_equal(buf, "d1.co.uk");
	dmarcv_lib_free(lib);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(dmarc_table),
		cmocka_unit_test(org_domains),
		cmocka_unit_test(org_domains_cached),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
