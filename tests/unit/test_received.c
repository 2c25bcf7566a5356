/*
 * test_received.c - unit tests for received.c: the exact Received: field
 * for plain, TLS, authenticated and SMTPUTF8 sessions, one or several
 * recipients, and hostile HELO names and recipients (control bytes,
 * comment breakers, very long values) that must not start a header line
 * of their own; also the received_header directive of ravelin.conf.
 */

/* System. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Libraries. */
#include <cmocka.h>

/* Project. */
#include "config.h"
#include "received.h"

#define NROWS(t) (sizeof(t) / sizeof((t)[0]))

/* Sun, 22 Nov 2026 01:02:03 +0000 */
#define WHEN ((time_t)1795309323)
#define DATE "Sun, 22 Nov 2026 01:02:03 +0000"

/* Rows name what they change; fill_base() supplies the rest of a plain
 * EHLO session from mail.example.net (a NULL string = the base value). */
#define BASE .esmtp = true

#define TLS13 .tls = true, .tls_version = "TLSv1.3", .tls_cipher = "TLS_AES_256_GCM_SHA384", \
	      .tls_bits = 256, .tls_alg_bits = 256

/* 300 'a's: longer than any name we copy. */
#define A50 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define A300 A50 A50 A50 A50 A50 A50
#define A255 A50 A50 A50 A50 A50 "aaaaa"

/* One build: input and exact output. */
struct rcv_case {
	const char *name;
	struct received_info in;
	const char *expect;
};

/* fill_base - the base session's values where a row left NULL. */
static void
fill_base(struct received_info *ri)
{
	if (!ri->helo)
		ri->helo = "mail.example.net";
	if (!ri->client_name)
		ri->client_name = "mail.example.net";
	if (!ri->client_ip)
		ri->client_ip = "192.0.2.7";
	if (!ri->by)
		ri->by = "mx.example.org";
	if (!ri->id)
		ri->id = "4F2A9C1D";
	ri->when = WHEN;
	ri->utc = true;
}

static const struct rcv_case rcv_cases[] = {
	{ "plain_esmtp_several_rcpts",
	  { BASE },
	  "Received: from mail.example.net (mail.example.net [192.0.2.7])\r\n"
	  "\tby mx.example.org (ravelin) with ESMTP id 4F2A9C1D;\r\n"
	  "\t" DATE },
	{ "helo_is_smtp",
	  { .client_name = "unknown" },
	  "Received: from mail.example.net (unknown [192.0.2.7])\r\n"
	  "\tby mx.example.org (ravelin) with SMTP id 4F2A9C1D;\r\n"
	  "\t" DATE },
	{ "one_rcpt_gets_for",
	  { BASE, .rcpt = "bob@example.org" },
	  "Received: from mail.example.net (mail.example.net [192.0.2.7])\r\n"
	  "\tby mx.example.org (ravelin) with ESMTP id 4F2A9C1D\r\n"
	  "\tfor <bob@example.org>; " DATE },
	{ "tls_esmtps",
	  { BASE, TLS13 },
	  "Received: from mail.example.net (mail.example.net [192.0.2.7])\r\n"
	  "\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits))\r\n"
	  "\tby mx.example.org (ravelin) with ESMTPS id 4F2A9C1D;\r\n"
	  "\t" DATE },
	{ "auth_esmtpa_no_login",
	  { BASE, .auth = true },
	  "Received: from mail.example.net (mail.example.net [192.0.2.7])\r\n"
	  "\tby mx.example.org (ravelin) with ESMTPA id 4F2A9C1D;\r\n"
	  "\t" DATE },
	{ "tls_auth_esmtpsa",
	  { BASE, .auth = true, .tls = true, .tls_version = "TLSv1.2",
	    .tls_cipher = "ECDHE-RSA-AES128-GCM-SHA256", .tls_bits = 128, .tls_alg_bits = 128,
	    .rcpt = "bob@example.org" },
	  "Received: from mail.example.net (mail.example.net [192.0.2.7])\r\n"
	  "\t(using TLSv1.2 with cipher ECDHE-RSA-AES128-GCM-SHA256 (128/128 bits))\r\n"
	  "\tby mx.example.org (ravelin) with ESMTPSA id 4F2A9C1D\r\n"
	  "\tfor <bob@example.org>; " DATE },
	{ "smtputf8",
	  { BASE, .utf8 = true, .rcpt = "j\xc3\xb8rn@example.org" },
	  "Received: from mail.example.net (mail.example.net [192.0.2.7])\r\n"
	  "\tby mx.example.org (ravelin) with UTF8SMTP id 4F2A9C1D\r\n"
	  "\tfor <j\xc3\xb8rn@example.org>; " DATE },
	{ "smtputf8_tls_auth",
	  { BASE, .utf8 = true, .auth = true, TLS13 },
	  "Received: from mail.example.net (mail.example.net [192.0.2.7])\r\n"
	  "\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits))\r\n"
	  "\tby mx.example.org (ravelin) with UTF8SMTPSA id 4F2A9C1D;\r\n"
	  "\t" DATE },
	{ "smtputf8_tls",
	  { BASE, .utf8 = true, TLS13 },
	  "Received: from mail.example.net (mail.example.net [192.0.2.7])\r\n"
	  "\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits))\r\n"
	  "\tby mx.example.org (ravelin) with UTF8SMTPS id 4F2A9C1D;\r\n"
	  "\t" DATE },
	{ "smtputf8_auth",
	  { BASE, .utf8 = true, .auth = true },
	  "Received: from mail.example.net (mail.example.net [192.0.2.7])\r\n"
	  "\tby mx.example.org (ravelin) with UTF8SMTPA id 4F2A9C1D;\r\n"
	  "\t" DATE },
	{ "ipv6_literal_and_no_ptr",
	  { BASE, .client_name = "", .client_ip = "2001:db8::25", .helo = "[IPv6:2001:db8::25]" },
	  "Received: from [IPv6:2001:db8::25] (unknown [IPv6:2001:db8::25])\r\n"
	  "\tby mx.example.org (ravelin) with ESMTP id 4F2A9C1D;\r\n"
	  "\t" DATE },
	{ "no_helo_uses_literal",
	  { BASE, .helo = "" },
	  "Received: from [192.0.2.7] (mail.example.net [192.0.2.7])\r\n"
	  "\tby mx.example.org (ravelin) with ESMTP id 4F2A9C1D;\r\n"
	  "\t" DATE },
	{ "helo_crlf_cannot_inject",
	  { BASE, .helo = "evil\r\nX-Injected: yes" },
	  "Received: from evil??X-Injected:?yes (mail.example.net [192.0.2.7])\r\n"
	  "\tby mx.example.org (ravelin) with ESMTP id 4F2A9C1D;\r\n"
	  "\t" DATE },
	{ "helo_controls_and_comment_breakers",
	  { BASE, .helo = "a\tb\x01(c)\\d;e\"f\x7fg\xc3\xa9" },
	  "Received: from a?b??c??d?e?f?g?? (mail.example.net [192.0.2.7])\r\n"
	  "\tby mx.example.org (ravelin) with ESMTP id 4F2A9C1D;\r\n"
	  "\t" DATE },
	{ "rcpt_breakers_replaced",
	  { BASE, .rcpt = "\"a>b;c\"@example.org\x01\xff" },
	  "Received: from mail.example.net (mail.example.net [192.0.2.7])\r\n"
	  "\tby mx.example.org (ravelin) with ESMTP id 4F2A9C1D\r\n"
	  "\tfor <\"a?b?c\"@example.org?" "?>; " DATE },
	{ "long_helo_cut_at_255",
	  { BASE, .helo = A300 },
	  "Received: from " A255 " (mail.example.net [192.0.2.7])\r\n"
	  "\tby mx.example.org (ravelin) with ESMTP id 4F2A9C1D;\r\n"
	  "\t" DATE },
	{ "long_rcpt_is_left_out",
	  { BASE, .rcpt = A300 "@example.org" },
	  "Received: from mail.example.net (mail.example.net [192.0.2.7])\r\n"
	  "\tby mx.example.org (ravelin) with ESMTP id 4F2A9C1D;\r\n"
	  "\t" DATE },
	{ "hostile_tls_strings_are_words",
	  { BASE, .tls = true, .tls_version = "TLS 1\r\n", .tls_cipher = "X(Y)", .tls_bits = 1,
	    .tls_alg_bits = 2 },
	  "Received: from mail.example.net (mail.example.net [192.0.2.7])\r\n"
	  "\t(using TLS?1?? with cipher X?Y? (1/2 bits))\r\n"
	  "\tby mx.example.org (ravelin) with ESMTPS id 4F2A9C1D;\r\n"
	  "\t" DATE },
};

/* max_line - the longest line (CRLF excluded) in s. */
static size_t
max_line(const char *s)
{
	size_t max = 0;

	while (*s) {
		const char *e = strstr(s, "\r\n");
		size_t n = e ? (size_t)(e - s) : strlen(s);
		if (n > max)
			max = n;
		s += n + (e ? 2 : 0);
	}
	return max;
}

/* well_folded - every CR is part of CRLF TAB; no bare LF. */
static bool
well_folded(const char *s)
{
	for (size_t i = 0; s[i]; i++) {
		if (s[i] == '\r' && (s[i + 1] != '\n' || s[i + 2] != '\t'))
			return false;
		if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r'))
			return false;
	}
	return true;
}

/* received_build_table - every row of rcv_cases, exact. */
static void
received_build_table(void **state)
{
	char buf[RECEIVED_MAX];
	int failed = 0;

	(void)state;
	for (size_t i = 0; i < NROWS(rcv_cases); i++) {
		const struct rcv_case *c = &rcv_cases[i];
		struct received_info in = c->in;
		fill_base(&in);
		int n = received_build(&in, buf, sizeof(buf));

		if (n < 0 || strcmp(buf, c->expect) != 0 || (size_t)n != strlen(buf)) {
			fprintf(stderr, "case %s:\n got: [%s]\nwant: [%s]\n", c->name, n < 0 ? "(-1)" : buf,
				c->expect);
			failed++;
		} else if (max_line(buf) >= 998 || !well_folded(buf)) {
			fprintf(stderr, "case %s: a line is too long or badly folded\n", c->name);
			failed++;
		}
	}
	assert_int_equal(failed, 0);
}

/* received_worst_case_fits - every value at its longest still fits
 * RECEIVED_MAX with every line under 998 octets. */
static void
received_worst_case_fits(void **state)
{
	char buf[RECEIVED_MAX];
	char rcpt[256];
	struct received_info ri = { .esmtp = true, .tls = true, .auth = true, .utf8 = true,
				    .helo = A300, .client_name = A300, .by = A300, .id = A300,
				    .client_ip = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255",
				    .tls_version = A300, .tls_cipher = A300,
				    .tls_bits = -2147483647 - 1, .tls_alg_bits = -2147483647 - 1 };

	(void)state;
	memset(rcpt, 'r', 255);
	rcpt[255] = '\0';
	ri.rcpt = rcpt;
	int n = received_build(&ri, buf, sizeof(buf));
	assert_true(n > 0);
	assert_true(max_line(buf) < 998);
	assert_true(well_folded(buf));
	assert_non_null(strstr(buf, "with UTF8SMTPSA id "));
}

/* received_small_buffer - too small fails cleanly with an empty string. */
static void
received_small_buffer(void **state)
{
	char buf[40];
	struct received_info ri = { BASE };

	(void)state;
	fill_base(&ri);
	memset(buf, 'x', sizeof(buf));
	assert_int_equal(received_build(&ri, buf, sizeof(buf)), -1);
	assert_string_equal(buf, "");
	assert_int_equal(received_build(&ri, buf, 0), -1);
}

/* One protocol keyword. */
struct proto_case {
	bool esmtp, tls, auth, utf8;
	const char *expect;
};

static const struct proto_case proto_cases[] = {
	{ false, false, false, false, "SMTP" },
	{ false, true, false, false, "SMTP" },
	{ true, false, false, false, "ESMTP" },
	{ true, true, false, false, "ESMTPS" },
	{ true, false, true, false, "ESMTPA" },
	{ true, true, true, false, "ESMTPSA" },
	{ true, false, false, true, "UTF8SMTP" },
	{ true, true, false, true, "UTF8SMTPS" },
	{ true, false, true, true, "UTF8SMTPA" },
	{ true, true, true, true, "UTF8SMTPSA" },
};

/* received_protocol_table - RFC 3848 and RFC 6531 keywords. */
static void
received_protocol_table(void **state)
{
	int failed = 0;

	(void)state;
	for (size_t i = 0; i < NROWS(proto_cases); i++) {
		const struct proto_case *c = &proto_cases[i];
		struct received_info ri = { .esmtp = c->esmtp, .tls = c->tls, .auth = c->auth,
					    .utf8 = c->utf8 };
		const char *got = received_protocol(&ri);
		if (strcmp(got, c->expect) != 0) {
			fprintf(stderr, "row %zu: got %s, want %s\n", i, got, c->expect);
			failed++;
		}
	}
	assert_int_equal(failed, 0);
}

/* received_local_time - without utc, the offset is the local zone's. */
static void
received_local_time(void **state)
{
	char buf[RECEIVED_MAX];
	struct received_info ri = { BASE };
	const char *old = getenv("TZ");
	char *saved = old ? strdup(old) : NULL;

	(void)state;
	fill_base(&ri);
	ri.utc = false;
	setenv("TZ", "EST5", 1);
	tzset();
	assert_true(received_build(&ri, buf, sizeof(buf)) > 0);
	assert_non_null(strstr(buf, ";\r\n\tSat, 21 Nov 2026 20:02:03 -0500"));
	if (saved)
		setenv("TZ", saved, 1);
	else
		unsetenv("TZ");
	tzset();
	free(saved);
}

/* ---- the received_header directive ---- */

static char tmpdir[128];

/* config_row - one received_header line and what it gives. */
struct config_case {
	const char *text;
	bool ok;
	bool value;
	const char *error;	/* substring of the first error */
};

static const struct config_case config_cases[] = {
	{ "", true, true, NULL },
	{ "received_header yes\n", true, true, NULL },
	{ "received_header no\n", true, false, NULL },
	{ "received_header maybe\n", false, false, "1: received_header: expected yes or no, not 'maybe'" },
	{ "received_header\n", false, false, "1: 'received_header' takes exactly one value" },
	{ "received_header no\nreceived_header yes\n", false, false, "2: 'received_header' given twice" },
};

/* collect - keep the first config error. */
static void
collect(void *arg, const char *msg)
{
	char *first = arg;

	if (!first[0])
		snprintf(first, 512, "%s", msg);
}

/* received_config_table - the directive parses yes/no, default yes. */
static void
received_config_table(void **state)
{
	char path[256], err[512];
	int failed = 0;

	(void)state;
	snprintf(path, sizeof(path), "%s/r.conf", tmpdir);
	for (size_t i = 0; i < NROWS(config_cases); i++) {
		const struct config_case *c = &config_cases[i];
		FILE *fp = fopen(path, "w");
		assert_non_null(fp);
		fputs(c->text, fp);
		fclose(fp);
		err[0] = '\0';
		struct config *cf = config_load(path, collect, err);
		if (c->ok && (!cf || cf->received_header != c->value)) {
			fprintf(stderr, "row %zu [%s]: %s\n", i, c->text, cf ? "wrong value" : err);
			failed++;
		} else if (!c->ok && (cf || !strstr(err, c->error))) {
			fprintf(stderr, "row %zu [%s]: got error [%s], want [%s]\n", i, c->text, err,
				c->error);
			failed++;
		}
		config_unref(cf);
	}
	unlink(path);
	assert_int_equal(failed, 0);
}

/* setup - a private temporary directory for config files. */
static int
setup(void **state)
{
	(void)state;
	snprintf(tmpdir, sizeof(tmpdir), "%s/ravelin-test-received.XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	return mkdtemp(tmpdir) ? 0 : -1;
}

/* teardown - remove it. */
static int
teardown(void **state)
{
	(void)state;
	return rmdir(tmpdir);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(received_build_table),
		cmocka_unit_test(received_worst_case_fits),
		cmocka_unit_test(received_small_buffer),
		cmocka_unit_test(received_protocol_table),
		cmocka_unit_test(received_local_time),
		cmocka_unit_test(received_config_table),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
