/*
 * test_authres.c - unit tests for authres.c: exact Authentication-Results
 * and Received-SPF fields (which checks are listed, quoting of hostile
 * values, folding to 78 columns), and the forgery detection table of
 * authres_is_ours().
 */

/* System. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* Libraries. */
#include <cmocka.h>

/* Project. */
#include "authres.h"

static const struct authres_dkim dkim_pass[] = {
	{ "pass", "example.com", "sel1", "AbCdEfGh", NULL },
};

static const struct authres_dkim dkim_two[] = {
	{ "fail", "example.com", "old", "12345678", NULL },
	{ "pass", "mail.example.net", "s2024", "a/b+c=de", NULL },
};

/* A long MAIL FROM to force folding inside a resinfo. */
#define LONG_FROM "a-very-long-local-part-for-folding-tests@sub.department.example.com"

/* One Authentication-Results build: input and exact output. */
struct ar_case {
	const char *name;
	struct authres in;
	const char *expect;
};

static const struct ar_case ar_cases[] = {
	{ "unsigned_mail_only_dkim_none",
	  { .authserv_id = "mx.example.org", .dkim_ran = true },
	  "Authentication-Results: mx.example.org;\r\n\tdkim=none" },
	{ "nothing_ran_is_none",
	  { .authserv_id = "mx.example.org" },
	  "Authentication-Results: mx.example.org; none" },
	{ "spf_dkim_dmarc_pass",
	  { .authserv_id = "mx.example.org", .spf = "pass", .spf_mailfrom = "user@example.com",
	    .dkim = dkim_pass, .ndkim = 1, .dkim_ran = true, .dmarc = "pass",
	    .dmarc_from = "example.com" },
	  "Authentication-Results: mx.example.org;\r\n"
	  "\tspf=pass smtp.mailfrom=user@example.com;\r\n"
	  "\tdkim=pass header.d=example.com header.s=sel1 header.b=AbCdEfGh;\r\n"
	  "\tdmarc=pass header.from=example.com" },
	{ "spf_helo_identity",
	  { .authserv_id = "mx.example.org", .spf = "none", .spf_helo = "mail.example.net",
	    .dkim_ran = true },
	  "Authentication-Results: mx.example.org;\r\n"
	  "\tspf=none smtp.helo=mail.example.net;\r\n"
	  "\tdkim=none" },
	{ "two_signatures_quoted_b",
	  { .authserv_id = "mx.example.org", .dkim = dkim_two, .ndkim = 2, .dkim_ran = true },
	  "Authentication-Results: mx.example.org;\r\n"
	  "\tdkim=fail header.d=example.com header.s=old header.b=12345678;\r\n"
	  "\tdkim=pass header.d=mail.example.net header.s=s2024 header.b=\"a/b+c=de\"" },
	{ "dmarc_policy_comment",
	  { .authserv_id = "mx.example.org", .dkim_ran = true, .dmarc = "fail",
	    .dmarc_from = "example.com", .dmarc_policy = "reject",
	    .dmarc_disposition = "quarantine" },
	  "Authentication-Results: mx.example.org;\r\n"
	  "\tdkim=none;\r\n"
	  "\tdmarc=fail (p=reject dis=quarantine) header.from=example.com" },
	{ "auth_user",
	  { .authserv_id = "mx.example.org", .dkim_ran = true, .auth = "pass",
	    .auth_user = "alice" },
	  "Authentication-Results: mx.example.org;\r\n"
	  "\tdkim=none;\r\n"
	  "\tauth=pass smtp.auth=alice" },
	{ "crlf_injection_is_quoted",
	  { .authserv_id = "mx.example.org", .spf = "fail",
	    .spf_mailfrom = "x@evil.example\r\nX-Injected: yes" },
	  "Authentication-Results: mx.example.org;\r\n"
	  "\tspf=fail smtp.mailfrom=\"x@evil.example??X-Injected: yes\"" },
	{ "quote_and_backslash_escaped",
	  { .authserv_id = "mx.example.org", .spf = "pass",
	    .spf_mailfrom = "\"a\\b\"@example.com" },
	  "Authentication-Results: mx.example.org;\r\n"
	  "\tspf=pass smtp.mailfrom=\"\\\"a\\\\b\\\"@example.com\"" },
	{ "bad_result_word_becomes_permerror",
	  { .authserv_id = "mx.example.org", .spf = "pass; dkim=pass" },
	  "Authentication-Results: mx.example.org;\r\n"
	  "\tspf=permerror" },
	{ "long_values_fold",
	  { .authserv_id = "mx.example.org", .spf = "softfail", .spf_mailfrom = LONG_FROM,
	    .spf_helo = "helo-name.sub.department.example.com" },
	  "Authentication-Results: mx.example.org;\r\n"
	  "\tspf=softfail\r\n"
	  "\tsmtp.mailfrom=" LONG_FROM "\r\n"
	  "\tsmtp.helo=helo-name.sub.department.example.com" },
};

/* max_line - longest line of a folded field, tabs counted as 8 columns. */
static size_t
max_line(const char *s)
{
	size_t col = 0, max = 0;

	for (; *s; s++) {
		if (*s == '\n')
			col = 0;
		else if (*s == '\t')
			col = (col / 8 + 1) * 8;
		else if (*s != '\r')
			col++;
		if (col > max)
			max = col;
	}
	return max;
}

/* authres_build_table - every row of ar_cases. */
static void
authres_build_table(void **state)
{
	char buf[AUTHRES_MAX];
	size_t i;
	int failed = 0;

	for (i = 0; i < sizeof ar_cases / sizeof ar_cases[0]; i++) {
		const struct ar_case *c = &ar_cases[i];
		int n = authres_build(&c->in, buf, sizeof buf);

		if (n < 0 || strcmp(buf, c->expect) != 0 || (size_t)n != strlen(buf)) {
			fprintf(stderr, "case %s:\n got: [%s]\nwant: [%s]\n", c->name, buf, c->expect);
			failed++;
		} else if (strstr(c->name, "long_values") == NULL && max_line(buf) > 78) {
			fprintf(stderr, "case %s: line over 78 columns\n", c->name);
			failed++;
		}
	}
	assert_int_equal(failed, 0);
}

/* authres_build_small_buffer - a short buffer fails cleanly. */
static void
authres_build_small_buffer(void **state)
{
	char buf[30];
	struct authres ar = { .authserv_id = "mx.example.org", .dkim_ran = true,
			      .spf = "pass", .spf_mailfrom = "user@example.com" };

	assert_int_equal(authres_build(&ar, buf, sizeof buf), -1);
	assert_string_equal(buf, "");
}

/* authres_value_offset - the value starts at AUTHRES_NAME_LEN. */
static void
authres_value_offset(void **state)
{
	char buf[AUTHRES_MAX];
	struct authres ar = { .authserv_id = "mx.example.org", .dkim_ran = true };

	assert_true(authres_build(&ar, buf, sizeof buf) > 0);
	assert_int_equal(strncmp(buf + AUTHRES_NAME_LEN, "mx.example.org;", 15), 0);
}

/* A Received-SPF case: parts or library text, exact output. */
struct spf_case {
	const char *name;
	struct authres_spf in;
	const char *text;
	const char *expect;
};

static const struct spf_case spf_cases[] = {
	{ "from_parts",
	  { "pass", "mx.example.org: domain of user@example.com designates 192.0.2.1 as permitted sender",
	    "192.0.2.1", "user@example.com", "mail.example.com", "mx.example.org", "mailfrom" },
	  NULL,
	  "Received-SPF: pass (mx.example.org: domain of user@example.com designates\r\n"
	  "\t192.0.2.1 as permitted sender) receiver=mx.example.org;\r\n"
	  "\tclient-ip=192.0.2.1; envelope-from=\"user@example.com\";\r\n"
	  "\thelo=mail.example.com; identity=mailfrom;" },
	{ "null_sender_helo_identity",
	  { "none", NULL, "2001:db8::1", "", "mail.example.com", "mx.example.org", "helo" },
	  NULL,
	  "Received-SPF: none receiver=mx.example.org; client-ip=\"2001:db8::1\";\r\n"
	  "\tenvelope-from=\"\"; helo=mail.example.com; identity=helo;" },
	{ "library_text_refolded",
	  { 0 },
	  "Received-SPF: softfail (mx.example.org: transitioning domain of example.com does\r\n"
	  "  not designate 192.0.2.9 as permitted sender) client-ip=192.0.2.9;\n"
	  " envelope-from=\"u@example.com\"; helo=h.example.com;",
	  "Received-SPF: softfail (mx.example.org: transitioning domain of example.com\r\n"
	  "\tdoes not designate 192.0.2.9 as permitted sender) client-ip=192.0.2.9;\r\n"
	  "\tenvelope-from=\"u@example.com\"; helo=h.example.com;" },
	{ "library_value_without_name",
	  { 0 },
	  "neutral (x) client-ip=192.0.2.1;",
	  "Received-SPF: neutral (x) client-ip=192.0.2.1;" },
	{ "injected_crlf_in_helo_is_quoted",
	  { "fail", NULL, "192.0.2.1", "a@b.example", "evil\r\nX-Bad: 1", "mx.example.org",
	    "mailfrom" },
	  NULL,
	  "Received-SPF: fail receiver=mx.example.org; client-ip=192.0.2.1;\r\n"
	  "\tenvelope-from=\"a@b.example\"; helo=\"evil??X-Bad: 1\"; identity=mailfrom;" },
};

/* received_spf_table - every row of spf_cases. */
static void
received_spf_table(void **state)
{
	char buf[AUTHRES_MAX];
	size_t i;
	int failed = 0;

	for (i = 0; i < sizeof spf_cases / sizeof spf_cases[0]; i++) {
		const struct spf_case *c = &spf_cases[i];
		int n = authres_received_spf(c->text ? NULL : &c->in, c->text, buf, sizeof buf);

		if (n < 0 || strcmp(buf, c->expect) != 0) {
			fprintf(stderr, "case %s:\n got: [%s]\nwant: [%s]\n", c->name, buf, c->expect);
			failed++;
		} else if (max_line(buf) > 78) {
			fprintf(stderr, "case %s: line over 78 columns\n", c->name);
			failed++;
		}
	}
	assert_int_equal(failed, 0);
}

/* One forgery check: an existing field value and whether it is ours. */
struct ours_case {
	const char *value;
	bool expect;
};

static const struct ours_case ours_cases[] = {
	{ "mx.example.org; spf=pass smtp.mailfrom=a@example.org", true },
	{ " mx.example.org;dkim=pass", true },
	{ "MX.Example.ORG; dkim=pass", true },
	{ "mx.example.org 1; dkim=pass", true },		/* versioned */
	{ "mx.example.org\r\n\t1; dkim=pass", true },		/* folded before version */
	{ "(forged) mx.example.org; dkim=pass", true },		/* comment before */
	{ "(nested (comment) \\) here)\r\n mx.example.org; none", true },
	{ "\"mx.example.org\"; dkim=pass", true },		/* quoted-string id */
	{ "\"mx.exa\\mple.org\"; dkim=pass", true },		/* quoted-pair */
	{ "mx.example.org.; dkim=pass", true },			/* trailing dot */
	{ "mx.example.org(comment); dkim=pass", true },
	{ "mx.example.org", true },				/* bare id */
	{ "mx.example.org; none", true },
	{ "mx.example.net; dkim=pass", false },
	{ "mx.example.org.evil.example; dkim=pass", false },
	{ "evil.mx.example.org; dkim=pass", false },
	{ "mx.example.or; dkim=pass", false },
	{ "other.example; mx.example.org; dkim=pass", false },
	{ "(mx.example.org) other.example; dkim=pass", false },	/* ours only in a comment */
	{ "\"mx.example.org; dkim=pass", false },		/* unterminated quote */
	{ "", false },
	{ "   ", false },
	{ "(unterminated mx.example.org; dkim=pass", false },
};

/* authres_is_ours_table - every row of ours_cases. */
static void
authres_is_ours_table(void **state)
{
	size_t i;
	int failed = 0;

	for (i = 0; i < sizeof ours_cases / sizeof ours_cases[0]; i++) {
		bool got = authres_is_ours(ours_cases[i].value, "mx.example.org");

		if (got != ours_cases[i].expect) {
			fprintf(stderr, "case [%s]: got %d want %d\n", ours_cases[i].value, got,
				ours_cases[i].expect);
			failed++;
		}
	}
	assert_false(authres_is_ours("mx.example.org;", ""));
	assert_false(authres_is_ours(NULL, "mx.example.org"));
	assert_true(authres_is_ours("MX.EXAMPLE.ORG;", "mx.example.org."));
	assert_int_equal(failed, 0);
}

/* is_ours_accepts_what_build_writes - our own output is recognised. */
static void
is_ours_accepts_what_build_writes(void **state)
{
	char buf[AUTHRES_MAX];
	struct authres ar = { .authserv_id = "mx.example.org", .dkim_ran = true };

	assert_true(authres_build(&ar, buf, sizeof buf) > 0);
	assert_true(authres_is_ours(buf + AUTHRES_NAME_LEN, "mx.example.org"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(authres_build_table),
		cmocka_unit_test(authres_build_small_buffer),
		cmocka_unit_test(authres_value_offset),
		cmocka_unit_test(received_spf_table),
		cmocka_unit_test(authres_is_ours_table),
		cmocka_unit_test(is_ours_accepts_what_build_writes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
