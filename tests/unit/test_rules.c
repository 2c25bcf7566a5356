/*
 * test_rules.c - unit tests for the rule language (rules_parse.c, rules.c):
 * every parser error with its FILE:LINE:COLUMN, operator truth tables,
 * precedence, '!' scope, lists (inline, @FILE, CIDR, $mynetworks,
 * $local_domains), regular expressions on UTF-8 and invalid UTF-8,
 * multi-valued fields, limit() keys, first-terminal-wins, scores, and the
 * shipped rule files (rules/NN-name.rules). Field values come from a fake table.
 */

/* System. */
#include <glob.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Libraries. */
#include <cmocka.h>

/* Project. */
#include "lists.h"
#include "rules.h"

#define MAXV 8

/* A fake session: up to MAXV values per field, headers as "Name: value". */
struct fake {
	const char *v[RULES_F_COUNT][MAXV];
	int limit_rc;
	unsigned limit_calls;
	char limit_key[512], limit_rule[128];
	unsigned limit_n, limit_period;
};

/* One field value for a table row; header values are "Name: value". */
struct kv {
	enum rules_field f;
	const char *v;
};

static char tmpdir[64];
static struct lists_netset *mynets;
static struct lists_strset *localdoms;
static struct rules_env env;

/* fake_get - rules_ops.get over the fake table. */
static bool
fake_get(void *ctx, enum rules_field f, const char *arg, unsigned i, struct rules_value *out)
{
	struct fake *fk = ctx;
	unsigned seen = 0;

	if (f != RULES_F_HEADER) {
		if (i >= MAXV || fk->v[f][i] == NULL)
			return false;
		rules_value_str(out, fk->v[f][i]);
		return true;
	}
	for (unsigned k = 0; k < MAXV && fk->v[f][k]; k++) {
		const char *h = fk->v[f][k], *colon = strchr(h, ':');

		if (colon && strlen(arg) == (size_t)(colon - h) && strncasecmp(h, arg, strlen(arg)) == 0 &&
		    seen++ == i) {
			rules_value_str(out, colon + 2);
			return true;
		}
	}
	return false;
}

/* fake_limit - rules_ops.limit: record the call, answer limit_rc. */
static int
fake_limit(void *ctx, const char *key, unsigned n, unsigned period_s, const char *rule)
{
	struct fake *fk = ctx;

	fk->limit_calls++;
	snprintf(fk->limit_key, sizeof(fk->limit_key), "%s", key);
	snprintf(fk->limit_rule, sizeof(fk->limit_rule), "%s", rule);
	fk->limit_n = n;
	fk->limit_period = period_s;
	return fk->limit_rc;
}

static const struct rules_ops fake_ops = { fake_get, fake_limit };

/* fake_fill - load table-row values into a fake. */
static void
fake_fill(struct fake *fk, const struct kv *kv)
{
	memset(fk, 0, sizeof(*fk));
	for (; kv && kv->v; kv++)
		for (unsigned i = 0; i < MAXV; i++)
			if (fk->v[kv->f][i] == NULL) {
				fk->v[kv->f][i] = kv->v;
				break;
			}
}

/* Errors collected from rules_load*. */
struct errs {
	unsigned n;
	char first[512], all[4096];
};

/* collect - rules error callback. */
static void
collect(void *arg, const char *msg)
{
	struct errs *e = arg;

	if (e->n++ == 0)
		snprintf(e->first, sizeof(e->first), "%s", msg);
	snprintf(e->all + strlen(e->all), sizeof(e->all) - strlen(e->all), "%s\n", msg);
}

/* write_file - create dir/name with text. */
static void
write_file(const char *name, const char *text)
{
	char path[256];
	FILE *fp;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	fp = fopen(path, "w");
	assert_non_null(fp);
	fputs(text, fp);
	fclose(fp);
}

/* setup - env sets and a directory with list files. */
static int
setup(void **state)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_rules.XXXXXX");
	if (mkdtemp(tmpdir) == NULL)
		return -1;
	write_file("blocked.list", "# blocked senders\nspam.example\n.bad.example\n"
				   "bob@evil.example  @junk.example\n198.51.100.0/24 2001:db8:bad::/48\n");
	write_file("bad.list", "ok.example\nthis is fine\n");
	mynets = lists_netset_new();
	localdoms = lists_strset_new();
	lists_netset_add(mynets, "127.0.0.0/8");
	lists_netset_add(mynets, "192.0.2.0/25");
	lists_netset_add(mynets, "::1");
	lists_strset_add(localdoms, "example.org");
	lists_strset_add(localdoms, ".example.net");
	env.mynetworks = mynets;
	env.local_domains = localdoms;
	return 0;
}

/* teardown - remove what setup made. */
static int
teardown(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		return -1;
	lists_netset_free(mynets);
	lists_strset_free(localdoms);
	return 0;
}

/* load - compile text as the file TMPDIR/t.rules; errors into *e. */
static struct rules *
load(const char *text, struct errs *e)
{
	char name[128];

	memset(e, 0, sizeof(*e));
	snprintf(name, sizeof(name), "%s/t.rules", tmpdir);
	return rules_load_text(name, text, &env, collect, e);
}

/* One parser error: the text and the exact first message after "FILE:". */
struct perr_case {
	const char *text;
	const char *msg; /* LINE:COLUMN: message */
};

static const struct perr_case perr_cases[] = {
	{ "foo true -> accept",
	  "1:1: expected a stage (connect, helo, mail, rcpt, data, header, eoh, body, eom), found 'foo'" },
	{ "mail -> accept", "1:6: expected a condition before '->' (use 'true' for always)" },
	{ "mail bogus == x -> accept", "1:6: unknown field 'bogus'" },
	{ "connect sender == x -> accept",
	  "1:9: field 'sender' is not available at stage 'connect' (only from 'mail' on)" },
	{ "mail header[Subject] =~ /x/ -> accept",
	  "1:6: field 'header' is not available at stage 'mail' (only from 'header' on)" },
	{ "helo spf == pass -> accept",
	  "1:6: field 'spf' is not available at stage 'helo' (only from 'mail' on)" },
	{ "eoh dkim == pass -> accept",
	  "1:5: field 'dkim' is not available at stage 'eoh' (only from 'eom' on)" },
	{ "header from.domain == x -> accept",
	  "1:8: field 'from.domain' is not available at stage 'header' (only from 'eoh' on)" },
	{ "body body =~ /x/ -> accept",
	  "1:6: field 'body' is not available at stage 'body' (only from 'eom' on)" },
	{ "header header[Sub:j] == x -> accept", "1:15: bad header name in 'header[Sub:j]'" },
	{ "header header == x -> accept", "1:8: expected header[Name]" },
	{ "mail auth == yes -> accept", "1:11: 'auth' is a boolean: use it bare ('auth' or '!auth')" },
	{ "mail auth =~ /x/ -> accept", "1:11: 'auth' is a boolean: use it bare ('auth' or '!auth')" },
	{ "mail sender < 5 -> accept", "1:13: operator '<' needs a numeric field; 'sender' is not one" },
	{ "rcpt rcpt_count > many -> accept", "1:19: expected a number, found 'many'" },
	{ "rcpt rcpt_count > 0x10 -> accept", "1:19: expected a number, found '0x10'" },
	{ "mail spf == fial -> accept",
	  "1:13: 'fial' is not a value of spf (pass, fail, softfail, neutral, none, temperror, permerror)" },
	{ "mail spf in (pass, fial) -> accept",
	  "1:20: 'fial' is not a value of spf (pass, fail, softfail, neutral, none, temperror, permerror)" },
	{ "eom dmarc.policy == block -> accept",
	  "1:21: 'block' is not a value of dmarc.policy (none, quarantine, reject)" },
	{ "connect client == 192.0.2.0/24 -> accept",
	  "1:19: a network matches only with 'in', e.g. in (192.0.2.0/24)" },
	{ "mail sender == -> accept", "1:16: expected a value, found '->'" },
	{ "mail sender =~ foo -> accept", "1:16: expected a regular expression /.../ after '=~'" },
	{ "mail sender !~ -> accept", "1:16: expected a regular expression /.../ after '!~'" },
	{ "mail sender =~ /abc -> accept", "1:16: unterminated regular expression" },
	{ "mail sender =~ /abc\n  def/ -> accept", "1:16: unterminated regular expression" },
	{ "mail sender =~ /abc/q -> accept", "1:21: unknown regular expression flag 'q'" },
	{ "mail sender =~ /a(b/ -> accept",
	  "1:20: bad regular expression: missing closing parenthesis" },
	{ "mail sender in foo -> accept", "1:16: expected '(', @FILE or $list after 'in', found 'foo'" },
	{ "connect client in $mynets -> accept",
	  "1:19: unknown list '$mynets' (known: $mynetworks, $local_domains)" },
	{ "connect client in $ -> accept", "1:19: expected a name after '$'" },
	{ "mail sender in @ -> accept", "1:16: expected a name after '@'" },
	{ "mail sender in () -> accept", "1:17: expected a list element, found ')'" },
	{ "mail sender in (a b) -> accept", "1:19: expected ',' or ')', found 'b'" },
	{ "mail sender in (a, -> accept", "1:20: expected a list element, found '->'" },
	{ "mail (auth -> accept", "1:12: expected ')', found '->'" },
	{ "mail ! -> accept", "1:8: expected a condition, found '->'" },
	{ "mail auth && -> accept", "1:14: expected a condition, found '->'" },
	{ "mail auth accept", "1:11: expected '&&', '||' or '->', found 'accept'" },
	{ "mail auth", "1:10: expected '&&', '||' or '->', found end of rule" },
	{ "mail auth & tls -> accept", "1:11: unexpected character '&'" },
	{ "mail auth = tls -> accept", "1:11: unexpected character '='" },
	{ "mail auth ->", "1:13: expected an action, found end of rule" },
	{ "mail auth -> bounce", "1:14: unknown action 'bounce'" },
	{ "mail auth -> reject 450 5.7.1 \"x\"", "1:21: reject needs a 5xx reply code" },
	{ "mail auth -> reject 55 5.7.1 \"x\"", "1:21: reject needs a 5xx reply code" },
	{ "mail auth -> reject 550 4.7.1 \"x\"", "1:25: reject needs a 5.X.Y enhanced status code" },
	{ "mail auth -> reject 550 5.7 \"x\"", "1:25: reject needs a 5.X.Y enhanced status code" },
	{ "mail auth -> reject 550 5.7.1234 \"x\"", "1:25: reject needs a 5.X.Y enhanced status code" },
	{ "mail auth -> reject 550 5..1 \"x\"", "1:25: reject needs a 5.X.Y enhanced status code" },
	{ "mail auth -> reject 550 5.7.1 oops", "1:31: expected the reply text in double quotes" },
	{ "mail auth -> reject 550 5.7.1", "1:30: expected the reply text in double quotes" },
	{ "mail auth -> tempfail 550 4.7.1 \"x\"", "1:23: tempfail needs a 4xx reply code" },
	{ "mail auth -> tempfail 450 5.7.1 \"x\"", "1:27: tempfail needs a 4.X.Y enhanced status code" },
	{ "mail auth -> accept; discard",
	  "1:22: a rule can have only one terminal action (accept, reject, tempfail, discard)" },
	{ "helo true -> discard", "1:14: discard needs a message: use it from the mail stage on" },
	{ "mail auth -> score lots", "1:20: expected a score (a decimal number)" },
	{ "mail auth -> score 1e7", "1:20: expected a score (a decimal number)" },
	{ "mail auth -> add_header X:Y \"v\"", "1:25: expected a header name" },
	{ "mail auth -> add_header X-Y", "1:28: expected the header value in double quotes" },
	{ "mail auth -> log oops", "1:18: expected the log text in double quotes" },
	{ "mail auth -> log \"abc", "1:18: unterminated string" },
	{ "mail auth -> log \"a\x01b\"", "1:20: control character in string" },
	{ "mail auth -> accept now", "1:21: expected ';' or end of rule, found 'now'" },
	{ "connect limit(client.ip 30/1m) -> accept", "1:25: expected '+' between key fields" },
	{ "connect limit(client.ip, 30) -> accept",
	  "1:26: expected a rate N/PERIOD, e.g. 30/1m (PERIOD: number with s, m, h or d)" },
	{ "connect limit(client.ip, 0/1m) -> accept",
	  "1:26: expected a rate N/PERIOD, e.g. 30/1m (PERIOD: number with s, m, h or d)" },
	{ "connect limit(client.ip, 5/1w) -> accept",
	  "1:26: expected a rate N/PERIOD, e.g. 30/1m (PERIOD: number with s, m, h or d)" },
	{ "connect limit(, 30/1m) -> accept", "1:15: expected a key field" },
	{ "connect limit(+client.ip, 1/1m) -> accept", "1:15: expected a key field before '+'" },
	{ "connect limit(client.ip +, 1/1m) -> accept", "1:26: expected a key field" },
	{ "connect limit(client.ip, 5/1m -> accept", "1:31: expected ')' after the rate, found '->'" },
	{ "connect limit client.ip -> accept", "1:15: expected '(' after limit, found 'client.ip'" },
	{ "connect limit(sender, 5/1m) -> accept",
	  "1:15: field 'sender' is not available at stage 'connect' (only from 'mail' on)" },
	{ "connect limit(client.ip+bogus, 5/1m) -> accept", "1:25: unknown field 'bogus'" },
	{ "  mail true -> accept", "1:3: continuation line without a rule" },
	{ "a: mail true -> accept\nb: mail true -> accept\na: mail true -> accept",
	  "3:1: duplicate rule name 'a'" },
	{ "a@b: mail true -> accept", "1:2: bad character in rule name" },
	{ "mail auth\n# comment between\n\n  && bogus -> accept", "4:6: unknown field 'bogus'" },
	{ "mail\tauth -> bounce", "1:14: unknown action 'bounce'" },
	{ "mail auth\r\n -> bounce\r\n", "2:5: unknown action 'bounce'" },
	{ "mail sender in @missing.list -> accept", "1:16: TMP/missing.list: No such file or directory" },
	{ "mail sender in @bad.list -> accept", NULL }, /* bad.list is fine: strings only */
	{ "connect client in @bad.list -> accept", NULL },
};

/* parser_errors - each row's first error, exactly, with position. */
static void
parser_errors(void **state)
{
	for (size_t i = 0; i < sizeof(perr_cases) / sizeof(perr_cases[0]); i++) {
		const struct perr_case *c = &perr_cases[i];
		struct errs e;
		struct rules *r = load(c->text, &e);
		char want[1024], msg[512];
		const char *got = e.first;
		size_t tl = strlen(tmpdir);

		if (c->msg == NULL) {
			if (r == NULL || e.n != 0)
				fail_msg("row %zu (%s): unexpected error %s", i, c->text, e.first);
			rules_free(r);
			continue;
		}
		/* Messages start with the file name; tmpdir varies, so say TMP. */
		snprintf(want, sizeof(want), "TMP/t.rules:%s", c->msg);
		size_t m = 0;

		for (const char *s = got; *s && m + 4 < sizeof(msg);) {
			if (strncmp(s, tmpdir, tl) == 0) {
				memcpy(msg + m, "TMP", 3);
				m += 3;
				s += tl;
			} else {
				msg[m++] = *s++;
			}
		}
		msg[m] = '\0';
		if (r != NULL || e.n != 1 || strcmp(msg, want) != 0)
			fail_msg("row %zu (%s):\n got %u errors, first \"%s\"\nwant \"%s\"", i, c->text,
				 e.n, msg, want);
	}
}

/* parser_reports_all_errors - one error per broken rule, all files, and NULL. */
static void
parser_reports_all_errors(void **state)
{
	struct errs e;
	char p1[128], p2[128], p3[128];
	const char *paths[] = { p1, p2, p3 };

	assert_null(load("mail bogus -> accept\nhelo x -> accept\nmail true -> accept\n"
			 "rcpt rcpt_count > x -> accept\n",
			 &e));
	assert_int_equal(e.n, 3);
	write_file("a.rules", "mail true -> bounce\n");
	write_file("b.rules", "mail true -> accept\n");
	snprintf(p1, sizeof(p1), "%s/a.rules", tmpdir);
	snprintf(p2, sizeof(p2), "%s/none.rules", tmpdir);
	snprintf(p3, sizeof(p3), "%s/b.rules", tmpdir);
	memset(&e, 0, sizeof(e));
	assert_null(rules_load(paths, 3, &env, collect, &e));
	assert_int_equal(e.n, 2);
	assert_non_null(strstr(e.all, "a.rules:1:14: unknown action 'bounce'"));
	assert_non_null(strstr(e.all, "none.rules:1:1: cannot read: No such file or directory"));
	memset(&e, 0, sizeof(e));
	struct rules *r = rules_load(paths + 2, 1, &env, collect, &e);

	assert_non_null(r);
	assert_int_equal(rules_count(r), 1);
	rules_free(r);
	/* An empty set is valid; NULL error callback is allowed. */
	r = rules_load_text("empty.rules", "# nothing\n\n", NULL, NULL, NULL);
	assert_non_null(r);
	assert_int_equal(rules_count(r), 0);
	rules_free(r);
	rules_free(NULL);
}

/* names_and_queries - rule names, stage counts, limit and field queries. */
static void
names_and_queries(void **state)
{
	struct errs e;
	struct rules *r = load("# header\n"
			       "connect limit(client.ip, 10/1m) -> tempfail 421 4.7.0 \"slow\"\n"
			       "helo_local: helo helo =~ /^localhost$/i\n"
			       "   && !client in $mynetworks -> reject 550 5.7.1 \"no\"\n"
			       "eom body =~ /x/ -> score 1\n",
			       &e);
	char want[128];

	assert_non_null(r);
	assert_int_equal(rules_count(r), 3);
	snprintf(want, sizeof(want), "%s/t.rules:2", tmpdir);
	assert_string_equal(rules_name(r, 0), want);
	assert_string_equal(rules_name(r, 1), "helo_local");
	assert_null(rules_name(r, 3));
	assert_int_equal(rules_stage_count(r, RULES_STAGE_CONNECT), 1);
	assert_int_equal(rules_stage_count(r, RULES_STAGE_RCPT), 0);
	assert_true(rules_stage_has_limit(r, RULES_STAGE_CONNECT));
	assert_false(rules_stage_has_limit(r, RULES_STAGE_HELO));
	assert_true(rules_stage_uses_field(r, RULES_STAGE_HELO, RULES_F_HELO));
	assert_true(rules_stage_uses_field(r, RULES_STAGE_HELO, RULES_F_CLIENT_IP));
	assert_true(rules_stage_uses_field(r, RULES_STAGE_EOM, RULES_F_BODY));
	assert_false(rules_stage_uses_field(r, RULES_STAGE_HEADER, RULES_F_BODY));
	assert_string_equal(rules_stage_name(RULES_STAGE_EOH), "eoh");
	assert_int_equal(rules_stage_from_name("rcpt"), RULES_STAGE_RCPT);
	assert_int_equal(rules_stage_from_name("x"), -1);
	assert_string_equal(rules_field_name(RULES_F_DMARC_POLICY), "dmarc.policy");
	assert_int_equal(rules_field_kind(RULES_F_CLIENT_IP), RULES_K_IP);
	rules_free(r);
}

/* One condition evaluated against fake values: "STAGE COND -> accept". */
struct eval_case {
	enum rules_stage stage;
	const char *cond;
	struct kv kv[8];
	bool expect;
};

#define IP    RULES_F_CLIENT_IP
#define HELO  RULES_F_HELO
#define SND   RULES_F_SENDER
#define SDOM  RULES_F_SENDER_DOMAIN
#define RCPT  RULES_F_RCPT
#define HDR   RULES_F_HEADER
#define E_    RULES_STAGE_EOM
#define M_    RULES_STAGE_MAIL
#define C_    RULES_STAGE_CONNECT

static const struct eval_case eval_cases[] = {
	/* == and != : strings exact, addresses/domains/keywords case-insensitive. */
	{ M_, "sender == bob@Example.org", { { SND, "BOB@example.ORG" } }, true },
	{ M_, "sender != bob@example.org", { { SND, "bob@example.org" } }, false },
	{ M_, "sender != bob@example.org", { { SND, "eve@example.org" } }, true },
	{ M_, "sender == \"\"", { { SND, "" } }, true },
	{ M_, "sender == \"\"", { { SND, "a@b" } }, false },
	{ M_, "sender.domain == EXAMPLE.org", { { SDOM, "example.ORG" } }, true },
	{ M_, "auth.user == Bob", { { RULES_F_AUTH_USER, "bob" } }, false },
	{ M_, "auth.user == bob", { { RULES_F_AUTH_USER, "bob" } }, true },
	{ M_, "spf == FAIL", { { RULES_F_SPF, "fail" } }, true },
	{ M_, "spf == fail", { { RULES_F_SPF, "softfail" } }, false },
	{ M_, "auth.user == bob", { { 0, NULL } }, false },	/* no value */
	{ M_, "auth.user != bob", { { 0, NULL } }, true },
	/* IP equality compares addresses. */
	{ C_, "client == 192.0.2.1", { { IP, "::ffff:192.0.2.1" } }, true },
	{ C_, "client.ip == 2001:DB8::1", { { IP, "2001:db8:0::1" } }, true },
	{ C_, "client.ip != 192.0.2.1", { { IP, "192.0.2.2" } }, true },
	/* Numbers. */
	{ E_, "size > 1000", { { RULES_F_SIZE, "1001" } }, true },
	{ E_, "size > 1000", { { RULES_F_SIZE, "1000" } }, false },
	{ E_, "size >= 1000", { { RULES_F_SIZE, "1000" } }, true },
	{ E_, "size < 1000", { { RULES_F_SIZE, "999" } }, true },
	{ E_, "size < 1000", { { RULES_F_SIZE, "1000" } }, false },
	{ E_, "size <= 1000", { { RULES_F_SIZE, "1000" } }, true },
	{ E_, "size <= 1000", { { RULES_F_SIZE, "1000.5" } }, false },
	{ E_, "size == 10", { { RULES_F_SIZE, "10.0" } }, true },	/* numeric, not textual */
	{ E_, "size != 10", { { RULES_F_SIZE, "9" } }, true },
	{ E_, "size > 9", { { RULES_F_SIZE, "10" } }, true },	/* not "10" < "9" textually */
	{ E_, "size > -1", { { RULES_F_SIZE, "junk" } }, false },
	{ E_, "score > -2.5", { { RULES_F_SCORE, "-2" } }, true },
	{ E_, "score < 0", { { 0, NULL } }, false },	/* no base score: 0 */
	{ RULES_STAGE_RCPT, "rcpt_count >= 50", { { RULES_F_RCPT_COUNT, "50" } }, true },
	/* Regular expressions: flags, UTF-8, invalid UTF-8. */
	{ RULES_STAGE_HEADER, "header[Subject] =~ /\\bviagra\\b/i", { { HDR, "Subject: Cheap VIAGRA now" } }, true },
	{ RULES_STAGE_HEADER, "header[Subject] =~ /\\bviagra\\b/", { { HDR, "Subject: Cheap VIAGRA now" } }, false },
	{ RULES_STAGE_HEADER, "header[subject] =~ /cheap/", { { HDR, "SUBJECT: cheap" } }, true },
	{ RULES_STAGE_HEADER, "header[Subject] !~ /x/", { { HDR, "To: x" } }, true },	/* absent */
	{ RULES_STAGE_HEADER, "header[Subject] =~ /^Größe$/i", { { HDR, "Subject: GRÖSSE" } }, false },
	{ RULES_STAGE_HEADER, "header[Subject] =~ /^grÖße$/i", { { HDR, "Subject: GRöße" } }, true },
	{ RULES_STAGE_HEADER, "header[Subject] =~ /^.{5}$/", { { HDR, "Subject: Größe" } }, true },	/* UTF: 5 characters */
	{ RULES_STAGE_HEADER, "header[Subject] =~ /win/", { { HDR, "Subject: \xff\xfe win \xc3" } }, true },
	{ RULES_STAGE_HEADER, "header[Subject] =~ /lose/", { { HDR, "Subject: \xff\xfe win \xc3" } }, false },
	{ RULES_STAGE_HEADER, "header[Subject] =~ /^a.b$/", { { HDR, "Subject: a\x80" "b" } }, false },
	{ E_, "body =~ /^line2$/m", { { RULES_F_BODY, "line1\r\nline2\nline3" } }, true },
	{ E_, "body =~ /^line2$/", { { RULES_F_BODY, "line1\nline2\nline3" } }, false },
	{ E_, "body =~ /a.b/s", { { RULES_F_BODY, "a\nb" } }, true },
	{ E_, "body =~ /a.b/", { { RULES_F_BODY, "a\nb" } }, false },
	{ E_, "body =~ / a b /x", { { RULES_F_BODY, "ab" } }, true },
	{ E_, "body =~ /a\\/b/", { { RULES_F_BODY, "a/b" } }, true },
	{ E_, "body =~ /(a+)+$/", { { RULES_F_BODY, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab" } }, false },	/* match limit */
	{ M_, "sender !~ /@example\\.org$/i", { { SND, "x@EXAMPLE.org" } }, false },
	{ M_, "sender !~ /@example\\.org$/i", { { SND, "x@example.com" } }, true },
	/* Booleans and bare fields. */
	{ M_, "auth", { { RULES_F_AUTH, "1" } }, true },
	{ M_, "auth", { { RULES_F_AUTH, "0" } }, false },
	{ M_, "auth", { { 0, NULL } }, false },
	{ M_, "!auth", { { RULES_F_AUTH, "0" } }, true },
	{ C_, "!tls", { { RULES_F_TLS, "1" } }, false },
	{ C_, "client.ptr", { { RULES_F_CLIENT_PTR, "mx.example.org" } }, true },
	{ C_, "!client.ptr", { { 0, NULL } }, true },
	{ C_, "true", { { 0, NULL } }, true },
	/* && binds tighter than ||; '!' takes the whole comparison or group. */
	{ M_, "auth || tls && spf == fail", { { RULES_F_AUTH, "1" } }, true },
	{ M_, "auth || tls && spf == fail", { { RULES_F_TLS, "1" } }, false },
	{ M_, "auth || tls && spf == fail", { { RULES_F_TLS, "1" }, { RULES_F_SPF, "fail" } }, true },
	{ M_, "(auth || tls) && spf == fail", { { RULES_F_AUTH, "1" } }, false },
	{ M_, "!auth && tls", { { RULES_F_TLS, "1" } }, true },
	{ M_, "!(auth && tls)", { { RULES_F_TLS, "1" } }, true },
	{ M_, "!(auth || tls)", { { RULES_F_TLS, "1" } }, false },
	{ M_, "!!auth", { { RULES_F_AUTH, "1" } }, true },
	{ C_, "!client in $mynetworks", { { IP, "192.0.2.200" } }, true },
	{ C_, "!client in $mynetworks", { { IP, "192.0.2.1" } }, false },
	{ C_, "!client in $mynetworks || tls", { { IP, "192.0.2.1" }, { RULES_F_TLS, "1" } }, true },
	/* Inline lists. */
	{ M_, "sender.domain in (a.example, \"B.Example\")", { { SDOM, "b.example" } }, true },
	{ M_, "sender.domain in (a.example, b.example)", { { SDOM, "c.example" } }, false },
	{ M_, "sender.domain in (.example)", { { SDOM, "x.example" } }, true },
	{ M_, "sender in (@example.com)", { { SND, "Anyone@EXAMPLE.com" } }, true },
	{ M_, "spf in (fail, softfail)", { { RULES_F_SPF, "softfail" } }, true },
	{ C_, "client in (192.0.2.0/24, 2001:db8::/32)", { { IP, "2001:db8::5" } }, true },
	{ C_, "client in (192.0.2.0/24, 2001:db8::/32)", { { IP, "::ffff:192.0.2.9" } }, true },
	{ C_, "client in (192.0.2.0/24, 2001:db8::/32)", { { IP, "198.51.100.1" } }, false },
	{ C_, "client in (192.0.2.7)", { { IP, "192.0.2.7" } }, true },
	{ RULES_STAGE_HELO, "helo in (192.0.2.7, \"[192.0.2.7]\")", { { HELO, "[192.0.2.7]" } }, true },
	/* @FILE (relative to the rule file), $mynetworks, $local_domains. */
	{ M_, "sender.domain in @blocked.list", { { SDOM, "SPAM.example" } }, true },
	{ M_, "sender.domain in @\"blocked.list\" # comment\n ", { { SDOM, "spam.example" } }, true },
	{ M_, "sender.domain in @blocked.list\r\n  || auth", { { RULES_F_AUTH, "1" } }, true },
	{ M_, "sender.domain in @blocked.list", { { SDOM, "a.bad.example" } }, true },
	{ M_, "sender.domain in @blocked.list", { { SDOM, "bad.example" } }, false },
	{ M_, "sender in @blocked.list", { { SND, "Bob@evil.example" } }, true },
	{ M_, "sender in @blocked.list", { { SND, "alice@evil.example" } }, false },
	{ M_, "sender in @blocked.list", { { SND, "x@junk.example" } }, true },
	{ C_, "client in @blocked.list", { { IP, "198.51.100.77" } }, true },
	{ C_, "client in @blocked.list", { { IP, "2001:db8:bad:1::1" } }, true },
	{ C_, "client in @blocked.list", { { IP, "2001:db8:bae::1" } }, false },
	{ C_, "client in $mynetworks", { { IP, "::1" } }, true },
	{ C_, "client in $mynetworks", { { IP, "not an ip" } }, false },
	{ RULES_STAGE_RCPT, "rcpt.domain in $local_domains", { { RULES_F_RCPT_DOMAIN, "Example.ORG" } }, true },
	{ RULES_STAGE_RCPT, "rcpt.domain in $local_domains", { { RULES_F_RCPT_DOMAIN, "mail.example.net" } }, true },
	{ RULES_STAGE_RCPT, "rcpt.domain in $local_domains", { { RULES_F_RCPT_DOMAIN, "example.net" } }, false },
	/* Multi-valued fields: any value; negation is "none". */
	{ E_, "rcpt == b@x.example", { { RCPT, "a@x.example" }, { RCPT, "B@x.example" } }, true },
	{ E_, "rcpt != b@x.example", { { RCPT, "a@x.example" }, { RCPT, "b@x.example" } }, false },
	{ E_, "rcpt != c@x.example", { { RCPT, "a@x.example" }, { RCPT, "b@x.example" } }, true },
	{ E_, "rcpt =~ /^b@/", { { RCPT, "a@x.example" }, { RCPT, "b@x.example" } }, true },
	{ E_, "rcpt !~ /^b@/", { { RCPT, "a@x.example" }, { RCPT, "b@x.example" } }, false },
	{ E_, "header[Received] =~ /evil/", { { HDR, "Received: from a" }, { HDR, "Received: from evil" } }, true },
	{ E_, "dkim.domain in (a.example)", { { RULES_F_DKIM_DOMAIN, "b.example" }, { RULES_F_DKIM_DOMAIN, "a.example" } }, true },
	/* client.net is derived from client.ip when the caller has none. */
	{ C_, "client.net == \"192.0.2.0/24\"", { { IP, "192.0.2.77" } }, true },
	{ C_, "client.net == \"2001:db8:1:2::/64\"", { { IP, "2001:db8:1:2:3::4" } }, true },
	{ C_, "client.net", { { 0, NULL } }, false },
	/* The spoof booleans and helo.is_ours. */
	{ RULES_STAGE_EOH, "spoof.local || spoof.display_name || spoof.lookalike", { { RULES_F_SPOOF_LOOKALIKE, "1" } }, true },
	{ RULES_STAGE_HELO, "helo.is_ours && !client in $mynetworks", { { RULES_F_HELO_IS_OURS, "1" }, { IP, "198.51.100.1" } }, true },
};

/* eval_table - every row of eval_cases. */
static void
eval_table(void **state)
{
	for (size_t i = 0; i < sizeof(eval_cases) / sizeof(eval_cases[0]); i++) {
		const struct eval_case *c = &eval_cases[i];
		char text[512];
		struct errs e;
		struct fake fk;
		struct rules_result res;
		struct rules *r;
		int v;

		snprintf(text, sizeof(text), "%s %s -> accept", rules_stage_name(c->stage), c->cond);
		if ((r = load(text, &e)) == NULL)
			fail_msg("row %zu (%s): %s", i, text, e.first);
		fake_fill(&fk, c->kv);
		v = rules_eval(r, c->stage, &fake_ops, &fk, &res);
		if ((v == RULES_VERDICT_ACCEPT) != c->expect)
			fail_msg("row %zu (%s): got %d, want %d", i, text, v == RULES_VERDICT_ACCEPT,
				 c->expect);
		/* Other stages never run this rule. */
		if (rules_eval(r, c->stage == E_ ? C_ : E_, &fake_ops, &fk, &res) != RULES_VERDICT_NONE)
			fail_msg("row %zu: rule ran at another stage", i);
		rules_free(r);
	}
}

/* One limit() case: rule, values, what limit() answers, what it must receive. */
struct limit_case {
	const char *text;
	enum rules_stage stage;
	struct kv kv[4];
	int rc;
	bool expect;
	unsigned calls;
	const char *key;
	unsigned n, period;
};

static const struct limit_case limit_cases[] = {
	{ "connect limit(client.ip, 30/1m) -> accept", C_, { { IP, "192.0.2.7" } }, 1, true, 1,
	  "192.0.2.7", 30, 60 },
	{ "connect limit(client.ip, 30/1m) -> accept", C_, { { IP, "192.0.2.7" } }, 0, false, 1,
	  "192.0.2.7", 30, 60 },
	{ "connect limit(client.ip, 30/1m) -> accept", C_, { { IP, "192.0.2.7" } }, -1, false, 1,
	  "192.0.2.7", 30, 60 },
	{ "mail limit(client.ip + sender, 5/2h) -> accept", M_,
	  { { IP, "192.0.2.7" }, { SND, "Bob@Example.ORG" } }, 1, true, 1,
	  "192.0.2.7+bob@example.org", 5, 7200 },
	{ "mail limit(client.ip+sender+auth.user, 1/3d) -> accept", M_,
	  { { IP, "2001:db8::1" }, { RULES_F_AUTH_USER, "Bob" } }, 1, true, 1,
	  "2001:db8::1++Bob", 1, 259200 },
	{ "mail limit(sender.domain, 100 / 30s) -> accept", M_, { { SDOM, "A.example" } }, 1, true, 1,
	  "a.example", 100, 30 },
	{ "mail limit(client.net, 100/45) -> accept", M_, { { IP, "198.51.100.9" } }, 1, true, 1,
	  "198.51.100.0/24", 100, 45 },
	{ "rcpt limit(auth.user, 500/1h) -> accept", RULES_STAGE_RCPT, { { RULES_F_AUTH_USER, "u" } }, 1,
	  true, 1, "u", 500, 3600 },
	/* Short-circuit: limit() is not counted when the left side is false. */
	{ "rcpt auth && limit(auth.user, 500/1h) -> accept", RULES_STAGE_RCPT, { { 0, NULL } }, 1,
	  false, 0, "", 0, 0 },
	{ "rcpt !limit(rcpt, 2/1m) -> accept", RULES_STAGE_RCPT, { { RCPT, "x@y" } }, 1, false, 1,
	  "x@y", 2, 60 },
};

/* limit_table - every row of limit_cases: key, rate, rule name, result. */
static void
limit_table(void **state)
{
	for (size_t i = 0; i < sizeof(limit_cases) / sizeof(limit_cases[0]); i++) {
		const struct limit_case *c = &limit_cases[i];
		struct errs e;
		struct fake fk;
		struct rules_result res;
		struct rules *r = load(c->text, &e);
		char name[128];

		if (r == NULL)
			fail_msg("row %zu: %s", i, e.first);
		fake_fill(&fk, c->kv);
		fk.limit_rc = c->rc;
		bool got = rules_eval(r, c->stage, &fake_ops, &fk, &res) == RULES_VERDICT_ACCEPT;

		snprintf(name, sizeof(name), "%s/t.rules:1", tmpdir);
		if (got != c->expect || fk.limit_calls != c->calls ||
		    (c->calls && (strcmp(fk.limit_key, c->key) != 0 || fk.limit_n != c->n ||
				  fk.limit_period != c->period || strcmp(fk.limit_rule, name) != 0)))
			fail_msg("row %zu (%s): got %d calls %u key \"%s\" n %u period %u rule %s", i,
				 c->text, got, fk.limit_calls, fk.limit_key, fk.limit_n,
				 fk.limit_period, fk.limit_rule);
		rules_free(r);
	}
	/* No limit callback: never over. */
	struct errs e;
	struct rules *r = load("connect limit(client, 1/1s) -> accept", &e);
	struct rules_ops ops = { fake_get, NULL };
	struct fake fk;
	struct rules_result res;

	fake_fill(&fk, NULL);
	assert_int_equal(rules_eval(r, C_, &ops, &fk, &res), RULES_VERDICT_NONE);
	rules_free(r);
}

/* verdicts_and_accumulation - first terminal wins, accept stops, scores add up. */
static void
verdicts_and_accumulation(void **state)
{
	struct errs e;
	struct fake fk;
	struct rules_result res;
	struct rules *r = load(
		"eom true -> score 2.5 \"a\"; add_header X-A \"1\"\n"
		"neg: eom true -> score -1 ; log \"allow-listed\"\n"
		"eom size > 100 -> reject 552 5.3.4 \"too big\"; log \"big\"\n"
		"eom true -> tempfail 451 4.7.1 \"later\"\n"
		"eom score >= 1.5 -> add_header X-Score \"high\"\n"
		"eom score >= 10 -> discard\n"
		"eom true -> score 100 \"never\"\n"
		"mail auth -> accept\n"
		"mail true -> reject 554 5.7.1 \"no\"\n",
		&e);

	if (r == NULL)
		fail_msg("%s", e.all);
	/* Small message: no reject; the tempfail rule wins and stops the stage. */
	fake_fill(&fk, (struct kv[]){ { RULES_F_SIZE, "50" }, { 0, NULL } });
	assert_int_equal(rules_eval(r, E_, &fake_ops, &fk, &res), RULES_VERDICT_TEMPFAIL);
	assert_int_equal(res.code, 451);
	assert_string_equal(res.ecode, "4.7.1");
	assert_string_equal(res.text, "later");
	assert_true(res.score > 1.49 && res.score < 1.51);
	assert_int_equal(res.nscores, 2);
	assert_string_equal(res.scores[0].reason, "a");
	assert_string_equal(res.scores[1].reason, "neg");	/* no reason: the rule name */
	assert_true(res.scores[1].delta < -0.99 && res.scores[1].delta > -1.01);
	assert_int_equal(res.nheaders, 1);
	assert_string_equal(res.headers[0].name, "X-A");
	assert_string_equal(res.headers[0].value, "1");
	assert_int_equal(res.nlogs, 1);
	assert_string_equal(res.logs[0].text, "allow-listed");
	assert_string_equal(res.logs[0].rule, "neg");
	assert_int_equal(res.nhits, 3);
	assert_string_equal(res.hits[1], "neg");
	assert_non_null(strstr(res.verdict_rule, "t.rules:4"));

	/* Big message: the reject rule comes first and wins; its log still runs. */
	fake_fill(&fk, (struct kv[]){ { RULES_F_SIZE, "500" }, { 0, NULL } });
	assert_int_equal(rules_eval(r, E_, &fake_ops, &fk, &res), RULES_VERDICT_REJECT);
	assert_int_equal(res.code, 552);
	assert_string_equal(res.ecode, "5.3.4");
	assert_int_equal(res.nlogs, 2);
	assert_string_equal(res.logs[1].text, "big");
	assert_int_equal(res.nhits, 3);

	/* accept stops the stage before the reject rule. */
	fake_fill(&fk, (struct kv[]){ { RULES_F_AUTH, "1" }, { 0, NULL } });
	assert_int_equal(rules_eval(r, M_, &fake_ops, &fk, &res), RULES_VERDICT_ACCEPT);
	assert_null(res.text);
	assert_int_equal(res.nhits, 1);
	fake_fill(&fk, NULL);
	assert_int_equal(rules_eval(r, M_, &fake_ops, &fk, &res), RULES_VERDICT_REJECT);
	rules_free(r);

	/* The score field adds the caller's score and this stage's so far. */
	r = load("eom true -> score 6 \"a\"\n"
		 "eom true -> score 5 \"b\"\n"
		 "eom score >= 10 -> reject 550 5.7.1 \"spam\"\n",
		 &e);
	fake_fill(&fk, NULL);
	assert_int_equal(rules_eval(r, E_, &fake_ops, &fk, &res), RULES_VERDICT_REJECT);
	fake_fill(&fk, (struct kv[]){ { RULES_F_SCORE, "-3" }, { 0, NULL } });
	assert_int_equal(rules_eval(r, E_, &fake_ops, &fk, &res), RULES_VERDICT_NONE);
	assert_true(res.score > 10.99 && res.score < 11.01);	/* delta only */
	rules_free(r);

	/* Evaluating without rules or at a bad stage does nothing. */
	assert_int_equal(rules_eval(NULL, E_, &fake_ops, &fk, &res), RULES_VERDICT_NONE);
	rules_result_clear(&res);
	assert_int_equal(res.nhits, 0);
}

/* result_overflow - more hits than the result holds are counted, not stored. */
static void
result_overflow(void **state)
{
	char *text = calloc(1, 100 * 64);
	struct errs e;
	struct fake fk;
	struct rules_result res;
	struct rules *r;

	for (int i = 0; i < 100; i++)
		sprintf(text + strlen(text), "eom true -> score 1 \"r%d\"; log \"l\"\n", i);
	r = load(text, &e);
	fake_fill(&fk, NULL);
	rules_eval(r, E_, &fake_ops, &fk, &res);
	assert_int_equal(res.nhits, RULES_RESULT_MAX_HITS);
	assert_int_equal(res.hits_dropped, 100 - RULES_RESULT_MAX_HITS);
	assert_int_equal(res.nscores, RULES_RESULT_MAX_SCORES);
	assert_int_equal(res.nlogs, RULES_RESULT_MAX_LOGS);
	assert_true(res.score > 99.9 && res.score < 100.1);
	rules_free(r);
	free(text);
}

/* Shared by the threads of threads_share_a_rule_set. */
static struct rules *shared;

/* regex_worker - evaluate header rules many times from one thread. */
static void *
regex_worker(void *arg)
{
	long bad = 0;

	for (int i = 0; i < 2000; i++) {
		struct fake fk;
		struct rules_result res;
		bool spam = (i + (int)(intptr_t)arg) % 2;

		fake_fill(&fk, (struct kv[]){ { HDR, spam ? "Subject: buy viagra" : "Subject: hello" },
					      { 0, NULL } });
		if ((rules_eval(shared, RULES_STAGE_HEADER, &fake_ops, &fk, &res) ==
		     RULES_VERDICT_REJECT) != spam)
			bad++;
	}
	return (void *)bad;
}

/* threads_share_a_rule_set - concurrent evaluation with per-thread match data. */
static void
threads_share_a_rule_set(void **state)
{
	struct errs e;
	pthread_t t[4];

	shared = load("header header[Subject] =~ /\\bviagra\\b/i -> reject 550 5.7.1 \"no\"", &e);
	assert_non_null(shared);
	for (long i = 0; i < 4; i++)
		assert_int_equal(pthread_create(&t[i], NULL, regex_worker, (void *)i), 0);
	for (int i = 0; i < 4; i++) {
		void *bad;

		pthread_join(t[i], &bad);
		assert_int_equal((long)bad, 0);
	}
	rules_free(shared);
}

/* shipped_rules_parse - every shipped rule file loads (run from the tree's top). */
static void
shipped_rules_parse(void **state)
{
	glob_t g;
	struct errs e = { 0 };
	struct rules *r;

	assert_int_equal(glob("rules/*.rules", 0, NULL, &g), 0);
	assert_true(g.gl_pathc >= 4);
	r = rules_load((const char *const *)g.gl_pathv, g.gl_pathc, &env, collect, &e);
	if (r == NULL)
		fail_msg("%s", e.all);
	assert_true(rules_count(r) > 5);
	/* SPF fail from an outside client is refused; authenticated clients skip SPF. */
	struct fake fk;
	struct rules_result res;

	fake_fill(&fk, (struct kv[]){ { RULES_F_SPF, "fail" }, { IP, "198.51.100.1" }, { 0, NULL } });
	assert_int_equal(rules_eval(r, M_, &fake_ops, &fk, &res), RULES_VERDICT_REJECT);
	assert_int_equal(res.code, 550);
	assert_string_equal(res.ecode, "5.7.23");
	fake_fill(&fk, (struct kv[]){ { RULES_F_SPF, "fail" }, { RULES_F_AUTH, "1" }, { 0, NULL } });
	assert_int_equal(rules_eval(r, M_, &fake_ops, &fk, &res), RULES_VERDICT_NONE);
	fake_fill(&fk, (struct kv[]){ { HELO, "localhost" }, { IP, "198.51.100.1" }, { 0, NULL } });
	assert_int_equal(rules_eval(r, RULES_STAGE_HELO, &fake_ops, &fk, &res), RULES_VERDICT_REJECT);
	fake_fill(&fk, (struct kv[]){ { HELO, "localhost" }, { IP, "127.0.0.1" }, { 0, NULL } });
	assert_int_equal(rules_eval(r, RULES_STAGE_HELO, &fake_ops, &fk, &res), RULES_VERDICT_NONE);
	rules_free(r);
	globfree(&g);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(parser_errors),
		cmocka_unit_test(parser_reports_all_errors),
		cmocka_unit_test(names_and_queries),
		cmocka_unit_test(eval_table),
		cmocka_unit_test(limit_table),
		cmocka_unit_test(verdicts_and_accumulation),
		cmocka_unit_test(result_overflow),
		cmocka_unit_test(threads_share_a_rule_set),
		cmocka_unit_test(shipped_rules_parse),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
