/*
 * test_check_dkim.c - unit tests for check_dkim.c without a DNS server:
 * keys from an in-process table through dkimv_lib_set_txt_lookup() (found,
 * missing, temporary failure, several records, a long record), keys
 * from an OpenDKIM-style key file, the rsa-sha1 policy,
 * unsigned mail, byte-by-byte feeding and several threads sharing one
 * library handle. Messages come from ../shared/testdata (RFC 8463 A.3 and
 * OpenDKIM's library tests); the tests are skipped when it is absent.
 */

/* System. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* Libraries. */
#include <cmocka.h>

/* Project. */
#include "check_dkim.h"
#include "dkim_keycache.h"

#define TESTDATA "../shared/testdata/dkim/"
#define RFC8463 TESTDATA "rfc8463-mailauth/signed.eml"
#define LIBTESTS TESTDATA "opendkim-libtests/"

#define ED_KEY "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
#define RSA_KEY                                                                        \
	"v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWR"          \
	"iGs5V6NpP3idY6Wk08a5qhdR6wy5bdOKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutAC"        \
	"DfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4hstT5QjvHO9PzoxZyVYLzBfO2EeC3"        \
	"Ip3G+2kryOTIKT+l/K4w3QIDAQAB"

/* An in-process "zone": name -> answer. */
struct zone_entry {
	const char *name;
	enum dkimv_txt_status status;
	const char *records;
};

/* txt_table - a dkimv_txt_fn over a NULL-terminated zone_entry array. */
static enum dkimv_txt_status
txt_table(void *arg, const char *name, char *out, size_t outlen)
{
	const struct zone_entry *z;

	for (z = arg; z->name != NULL; z++)
		if (strcasecmp(z->name, name) == 0) {
			snprintf(out, outlen, "%s", z->records ? z->records : "");
			return z->status;
		}
	return DKIMV_TXT_NOTFOUND;
}

/* read_file - whole file with CRLF line ends, or NULL. */
static char *
read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf;
	long n;

	if (f == NULL)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	buf = malloc((size_t)n + 1);
	if (buf != NULL && fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		buf = NULL;
	}
	fclose(f);
	if (buf != NULL) {
		/* Bare LF line ends (signed.eml has them) become CRLF. */
		char *crlf = malloc(2 * (size_t)n + 1);
		size_t i, o = 0;

		for (i = 0; crlf != NULL && i < (size_t)n; i++) {
			if (buf[i] == '\n' && (i == 0 || buf[i - 1] != '\r'))
				crlf[o++] = '\r';
			crlf[o++] = buf[i];
		}
		free(buf);
		buf = crlf;
		if (buf != NULL) {
			buf[o] = '\0';
			*len = o;
		}
	}
	return buf;
}

/* verify - feed msg (CRLF) through a verifier in chunks of chunk bytes. */
static struct dkimv *
verify(struct dkimv_lib *lib, const char *msg, size_t len, size_t chunk)
{
	struct dkimv *v = dkimv_new(lib, "unit");
	size_t pos = 0;

	assert_non_null(v);
	while (pos < len) {
		size_t start = pos;
		const char *nl;

		if (len - pos >= 2 && msg[pos] == '\r' && msg[pos + 1] == '\n') {
			pos += 2;
			break;
		}
		for (;;) {
			nl = memmem(msg + pos, len - pos, "\r\n", 2);
			pos = nl ? (size_t)(nl - msg) + 2 : len;
			if (nl == NULL || pos >= len || (msg[pos] != ' ' && msg[pos] != '\t'))
				break;
		}
		dkimv_header(v, msg + start, pos - start - (nl ? 2 : 0));
	}
	if (dkimv_eoh(v))
		for (; pos < len; pos += chunk)
			dkimv_body(v, (const unsigned char *)msg + pos,
				   len - pos < chunk ? len - pos : chunk);
	dkimv_eom(v);
	return v;
}

/* One lookup scenario on the RFC 8463 message (ed25519 + rsa-sha256). */
struct lookup_case {
	const char *name;
	struct zone_entry zone[3];
	const char *ed, *rsa, *best;	/* expected results */
	const char *reason;		/* substring of a non-pass reason, or NULL */
};

static const struct lookup_case lookup_cases[] = {
	{ "both_keys_pass",
	  { { "brisbane._domainkey.football.example.com", DKIMV_TXT_OK, ED_KEY },
	    { "test._domainkey.football.example.com", DKIMV_TXT_OK, RSA_KEY } },
	  "pass", "pass", "pass", NULL },
	{ "ed_key_missing_is_permerror",
	  { { "test._domainkey.football.example.com", DKIMV_TXT_OK, RSA_KEY } },
	  "permerror", "pass", "pass", "key not found" },
	{ "tempfail_is_temperror",
	  { { "brisbane._domainkey.football.example.com", DKIMV_TXT_TEMPFAIL, NULL },
	    { "test._domainkey.football.example.com", DKIMV_TXT_TEMPFAIL, NULL } },
	  "temperror", "temperror", "temperror", "temporarily" },
	{ "temperror_beats_permerror",
	  { { "brisbane._domainkey.football.example.com", DKIMV_TXT_TEMPFAIL, NULL } },
	  "temperror", "permerror", "temperror", NULL },
	{ "several_records_pick_dkim1",
	  { { "brisbane._domainkey.football.example.com", DKIMV_TXT_OK,
	      "some unrelated text\n" ED_KEY },
	    { "test._domainkey.football.example.com", DKIMV_TXT_OK, RSA_KEY "\nv=spf1 -all" } },
	  "pass", "pass", "pass", NULL },
	{ "wrong_key_type_fails",
	  { { "brisbane._domainkey.football.example.com", DKIMV_TXT_OK, RSA_KEY },
	    { "test._domainkey.football.example.com", DKIMV_TXT_OK, ED_KEY } },
	  "permerror", "permerror", "permerror", NULL },
	{ "revoked_key",
	  { { "brisbane._domainkey.football.example.com", DKIMV_TXT_OK, "v=DKIM1; k=ed25519; p=" },
	    { "test._domainkey.football.example.com", DKIMV_TXT_OK, RSA_KEY } },
	  "permerror", "pass", "pass", "revoked" },
};

/* lookup_table - every row of lookup_cases. */
static void
lookup_table(void **state)
{
	char err[256], *msg;
	size_t len, i, j;
	int failed = 0;

	if ((msg = read_file(RFC8463, &len)) == NULL)
		skip();
	for (i = 0; i < sizeof lookup_cases / sizeof lookup_cases[0]; i++) {
		const struct lookup_case *c = &lookup_cases[i];
		struct dkimv_lib *lib = dkimv_lib_new(NULL, NULL, err, sizeof err);
		struct dkimv *v;
		const char *ed = "?", *rsa = "?", *reasons = "";
		const char *bestd;

		assert_non_null(lib);
		dkimv_lib_set_txt_lookup(lib, txt_table, (void *)c->zone);
		v = verify(lib, msg, len, 4096);
		for (j = 0; j < dkimv_nsigs(v); j++) {
			const struct dkimv_sig *s = dkimv_sig(v, j);

			if (strcmp(s->algorithm, "ed25519-sha256") == 0)
				ed = dkimv_result_str(s->result);
			else
				rsa = dkimv_result_str(s->result);
			if (s->reason[0] != '\0')
				reasons = s->reason;
		}
		if (strcmp(ed, c->ed) != 0 || strcmp(rsa, c->rsa) != 0 ||
		    strcmp(dkimv_result_str(dkimv_best(v, &bestd)), c->best) != 0 ||
		    (c->reason != NULL && strstr(reasons, c->reason) == NULL)) {
			fprintf(stderr, "case %s: ed=%s rsa=%s best=%s reason=%s\n", c->name, ed,
				rsa, dkimv_result_str(dkimv_best(v, NULL)), reasons);
			failed++;
		}
		dkimv_free(v);
		dkimv_lib_free(lib);
	}
	free(msg);
	assert_int_equal(failed, 0);
}

/* long_key_record_passes - a key record of 3,000 characters (a long n=
 * note before p=) still verifies: no fixed key buffer (libopendkim's
 * was about 2 KB and gave up). */
static void
long_key_record_passes(void **state)
{
	static char big[3100];
	struct zone_entry zone[] = {
		{ "brisbane._domainkey.football.example.com", DKIMV_TXT_OK, big },
		{ "test._domainkey.football.example.com", DKIMV_TXT_OK, RSA_KEY },
		{ NULL, 0, NULL },
	};
	char err[256], *msg;
	size_t len;
	struct dkimv_lib *lib;
	struct dkimv *v;

	if ((msg = read_file(RFC8463, &len)) == NULL)
		skip();
	memset(big, 'A', 3000);
	memcpy(big, "v=DKIM1; k=ed25519; n=", 22);
	snprintf(big + 3000, sizeof big - 3000, "; %s", ED_KEY + 20);
	lib = dkimv_lib_new(NULL, NULL, err, sizeof err);
	dkimv_lib_set_txt_lookup(lib, txt_table, zone);
	v = verify(lib, msg, len, 4096);
	assert_int_equal(dkimv_nsigs(v), 2);
	assert_string_equal(dkimv_sig(v, 0)->algorithm, "ed25519-sha256");
	assert_int_equal(dkimv_sig(v, 0)->result, DKIMV_PASS);
	dkimv_free(v);
	/* The same record without its p= is a permerror that says so. */
	big[3000] = '\0';
	v = verify(lib, msg, len, 4096);
	assert_int_equal(dkimv_sig(v, 0)->result, DKIMV_PERMERROR);
	assert_string_equal(dkimv_sig(v, 0)->reason, "key record has no p=");
	assert_int_equal(dkimv_sig(v, 1)->result, DKIMV_PASS);
	dkimv_free(v);
	dkimv_lib_free(lib);
	free(msg);
}

/* One key-file case: an OpenDKIM test message and the expected results. */
struct file_case {
	const char *file;
	const char *best;
	size_t chunk;
};

static const struct file_case file_cases[] = {
	{ "t-test20.eml", "pass", 4096 },	/* relaxed/relaxed rsa-sha256 */
	{ "t-test23.eml", "pass", 1 },		/* simple/simple, body byte by byte */
	{ "t-test04.eml", "permerror", 4096 },	/* rsa-sha1: RFC 8301 */
	{ "t-test35.eml", "fail", 4096 },	/* BADSIG */
	{ "t-test36.eml", "permerror", 4096 },	/* no such key */
	{ "t-test116.eml", "none", 4096 },	/* unsigned */
	{ "t-test45.eml", "pass", 7 },		/* sig0 fails, sig1 passes */
};

/* keyfile_table - DKIM_QUERY_FILE keys, every row of file_cases. */
static void
keyfile_table(void **state)
{
	char err[256], path[256];
	struct dkimv_lib *lib;
	size_t i, len;
	int failed = 0;

	lib = dkimv_lib_new(NULL, LIBTESTS "dns-keys.txt", err, sizeof err);
	if (lib == NULL || access(LIBTESTS "dns-keys.txt", R_OK) != 0)
		skip();
	for (i = 0; i < sizeof file_cases / sizeof file_cases[0]; i++) {
		char *msg;
		struct dkimv *v;
		const char *got;

		snprintf(path, sizeof path, LIBTESTS "%s", file_cases[i].file);
		msg = read_file(path, &len);
		assert_non_null(msg);
		v = verify(lib, msg, len, file_cases[i].chunk);
		got = dkimv_result_str(dkimv_best(v, NULL));
		if (strcmp(got, file_cases[i].best) != 0) {
			fprintf(stderr, "case %s: got %s want %s\n", file_cases[i].file, got,
				file_cases[i].best);
			failed++;
		}
		dkimv_free(v);
		free(msg);
	}
	dkimv_lib_free(lib);
	assert_int_equal(failed, 0);
}

/* Shared by the threads of threads_share_one_library. */
struct thread_arg {
	struct dkimv_lib *lib;
	const char *msg;
	size_t len;
	int passes;
};

/* worker - verify the message 50 times. */
static void *
worker(void *p)
{
	struct thread_arg *a = p;
	int i;

	for (i = 0; i < 50; i++) {
		struct dkimv *v = verify(a->lib, a->msg, a->len, 100);

		if (dkimv_best(v, NULL) == DKIMV_PASS && dkimv_nsigs(v) == 2 &&
		    dkimv_sig(v, 0)->result == DKIMV_PASS && dkimv_sig(v, 1)->result == DKIMV_PASS)
			a->passes++;
		dkimv_free(v);
	}
	return NULL;
}

/* threads_share_one_library - 4 threads, one dkimv_lib, all pass. */
static void
threads_share_one_library(void **state)
{
	static const struct zone_entry zone[] = {
		{ "brisbane._domainkey.football.example.com", DKIMV_TXT_OK, ED_KEY },
		{ "test._domainkey.football.example.com", DKIMV_TXT_OK, RSA_KEY },
		{ NULL, 0, NULL },
	};
	struct thread_arg args[4];
	pthread_t th[4];
	char err[256], *msg;
	size_t len;
	struct dkimv_lib *lib;
	int i;

	if ((msg = read_file(RFC8463, &len)) == NULL)
		skip();
	unsigned long h0, m0, h, m;

	lib = dkimv_lib_new(NULL, NULL, err, sizeof err);
	dkimv_lib_set_txt_lookup(lib, txt_table, (void *)zone);
	dkim_keycache_stats(&h0, &m0);
	for (i = 0; i < 4; i++) {
		args[i] = (struct thread_arg){ lib, msg, len, 0 };
		assert_int_equal(pthread_create(&th[i], NULL, worker, &args[i]), 0);
	}
	for (i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(args[i].passes, 50);
	}
	/* Key decoding went through dkim_keycache: 400 verifications (two
	 * keys), two decodes (a few more if the threads raced to them). */
	dkim_keycache_stats(&h, &m);
	assert_true(m - m0 >= 2 && m - m0 <= 8);
	assert_true(h - h0 >= 392);
	dkimv_lib_free(lib);
	free(msg);
}

/* free_accepts_null - the _free functions accept NULL. */
static void
free_accepts_null(void **state)
{
	dkimv_free(NULL);
	dkimv_lib_free(NULL);
	assert_string_equal(dkimv_result_str(DKIMV_NONE), "none");
	assert_string_equal(dkimv_result_str(DKIMV_TEMPERROR), "temperror");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(lookup_table),
		cmocka_unit_test(long_key_record_passes),
		cmocka_unit_test(keyfile_table),
		cmocka_unit_test(threads_share_one_library),
		cmocka_unit_test(free_accepts_null),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
