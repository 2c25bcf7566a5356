/*
 * rules_bench.c - time rule evaluation for one typical message: the
 * shipped rules alone, and with the benchmark's 1,000 generated regex
 * rules (tests/bench/bench.py, "95-bench.rules") with and without the
 * literal prefilter (rules_prefilter.c).
 *
 *   rules_bench [-p] [-n COUNT] [-d RULESDIR]
 *       evaluates the mail stage, the header stage once per header field,
 *       eoh and the eom stage of a 2 KB message COUNT times (default
 *       20000) per rule set; prints CPU microseconds per message (best of
 *       5 rounds) for each and the ratio to the shipped rules. -p skips the run without the
 *       prefilter (for profiling).
 */

/* System. */
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* Project. */
#include "lists.h"
#include "rules.h"

#define NHDRS 14

/* The message: header fields as "Name: value", and a body. */
static const char *const hdrs[NHDRS] = {
	"Received: from mail.example.com (mail.example.com [192.0.2.1]) by mx.example.org "
	"with ESMTPS id 4F2A9C1D for <bob@example.org>; Mon, 3 Jun 2024 10:00:00 +0000",
	"Received: from [10.0.0.5] (unknown [10.0.0.5]) by mail.example.com with ESMTPSA; "
	"Mon, 3 Jun 2024 09:59:58 +0000",
	"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.com; s=sel; "
	"h=from:to:subject:date:message-id; bh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; "
	"b=dGhpcyBpcyBub3QgYSByZWFsIHNpZ25hdHVyZSBidXQgaXQgaGFzIHRoZSByaWdodCBsZW5ndGg=",
	"From: Alice Example <alice@example.com>",
	"To: Bob <bob@example.org>",
	"Subject: Minutes of the planning meeting",
	"Date: Mon, 3 Jun 2024 09:59:57 +0000",
	"Message-ID: <20240603095957.12345@mail.example.com>",
	"MIME-Version: 1.0",
	"Content-Type: text/plain; charset=utf-8",
	"Content-Transfer-Encoding: 8bit",
	"User-Agent: Mutt/2.2.9",
	"List-Id: planning <planning.example.com>",
	"X-Priority: 3",
};

/* A session: the one header field of the header stage (or -1: all of them). */
struct sess {
	int cur;
	const char *body;
	char size[24];
};

/* body_make - about 2 KB of ordinary text in CRLF lines. */
static char *
body_make(void)
{
	static const char *const lines[] = {
		"Hello all,\r\n",
		"here are the minutes of yesterday's planning meeting. We agreed on the\r\n",
		"schedule for the next release and on who reviews which part.\r\n",
		"Action items: Carol prepares the test plan, Dave updates the docs,\r\n",
		"and I will send the draft announcement around by Friday.\r\n",
		"Please reply to this message if I forgot anything important.\r\n",
	};
	size_t cap = 4096, used = 0;
	char *b = malloc(cap);

	if (b == NULL)
		exit(1);
	b[0] = '\0';
	for (unsigned i = 0; used < 2000; i++) {
		const char *l = lines[i % 6];

		memcpy(b + used, l, strlen(l) + 1);
		used += strlen(l);
	}
	return b;
}

/* header_value - the i-th field called name among the visible ones. */
static bool
header_value(const struct sess *s, const char *name, unsigned i, struct rules_value *out)
{
	size_t nl = strlen(name);
	unsigned seen = 0;

	for (int k = 0; k < NHDRS; k++) {
		const char *h = hdrs[k];

		if (s->cur >= 0 && k != s->cur)
			continue;
		if (strncasecmp(h, name, nl) == 0 && h[nl] == ':' && seen++ == i) {
			rules_value_str(out, h + nl + 2);
			return true;
		}
	}
	return false;
}

/* get - rules_ops.get for the benchmark session. */
static bool
get(void *ctx, enum rules_field f, const char *arg, unsigned i, struct rules_value *out)
{
	struct sess *s = ctx;

	if (f == RULES_F_HEADER)
		return header_value(s, arg, i, out);
	if (i > 0 && f != RULES_F_RCPT && f != RULES_F_RCPT_DOMAIN)
		return false;
	switch (f) {
	case RULES_F_CLIENT_IP: rules_value_str(out, "192.0.2.1"); return true;
	case RULES_F_CLIENT_PTR: rules_value_str(out, "mail.example.com"); return true;
	case RULES_F_LISTENER: rules_value_str(out, "inbound"); return true;
	case RULES_F_TLS: rules_value_bool(out, true); return true;
	case RULES_F_HELO: rules_value_str(out, "mail.example.com"); return true;
	case RULES_F_HELO_IS_OURS: rules_value_bool(out, false); return true;
	case RULES_F_AUTH: rules_value_bool(out, false); return true;
	case RULES_F_SENDER: rules_value_str(out, "alice@example.com"); return true;
	case RULES_F_SENDER_DOMAIN: rules_value_str(out, "example.com"); return true;
	case RULES_F_SPF: rules_value_str(out, "pass"); return true;
	case RULES_F_RCPT:
		if (i > 0)
			return false;
		rules_value_str(out, "bob@example.org");
		return true;
	case RULES_F_RCPT_DOMAIN:
		if (i > 0)
			return false;
		rules_value_str(out, "example.org");
		return true;
	case RULES_F_RCPT_COUNT: rules_value_num(out, 1); return true;
	case RULES_F_FROM_ADDR: rules_value_str(out, "alice@example.com"); return true;
	case RULES_F_FROM_DOMAIN: rules_value_str(out, "example.com"); return true;
	case RULES_F_FROM_NAME: rules_value_str(out, "Alice Example"); return true;
	case RULES_F_BODY: rules_value_str(out, s->body); return true;
	case RULES_F_SIZE: rules_value_str(out, s->size); return true;
	case RULES_F_DKIM: rules_value_str(out, "pass"); return true;
	case RULES_F_DKIM_DOMAIN: rules_value_str(out, "example.com"); return true;
	case RULES_F_DMARC: rules_value_str(out, "pass"); return true;
	case RULES_F_DMARC_POLICY: rules_value_str(out, "reject"); return true;
	case RULES_F_SCORE: rules_value_num(out, 0); return true;
	default: rules_value_bool(out, false); return true;
	}
}

/* limit - never over (the bench measures evaluation, not counters). */
static int
limit(void *ctx, const char *key, unsigned n, unsigned period_s, const char *rule)
{
	return 0;
}

/* now_us - this thread's CPU time in microseconds (other load on the host matters less). */
static double
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/* one_message - every stage evaluation of one message; returns the hit count. */
static unsigned
one_message(const struct rules *r, struct sess *s)
{
	static const struct rules_ops ops = { get, limit };
	struct rules_result res;
	unsigned hits = 0;

	s->cur = -1;
	rules_eval(r, RULES_STAGE_MAIL, &ops, s, &res);
	hits += res.nhits;
	for (int k = 0; k < NHDRS; k++) {
		s->cur = k;
		rules_eval(r, RULES_STAGE_HEADER, &ops, s, &res);
		hits += res.nhits;
	}
	s->cur = -1;
	rules_eval(r, RULES_STAGE_EOH, &ops, s, &res);
	hits += res.nhits;
	rules_eval(r, RULES_STAGE_EOM, &ops, s, &res);
	return hits + res.nhits;
}

/* run - microseconds per message: the best of 5 rounds of n/5 messages, after a warm-up. */
static double
run(const struct rules *r, struct sess *s, unsigned long n, unsigned *hits)
{
	unsigned long per = n / 5 + 1;
	double best = 0;

	for (unsigned long i = 0; i < per / 10 + 1; i++)
		*hits = one_message(r, s);
	for (int round = 0; round < 5; round++) {
		double t0 = now_us(), t;

		for (unsigned long i = 0; i < per; i++)
			*hits = one_message(r, s);
		t = (now_us() - t0) / (double)per;
		if (round == 0 || t < best)
			best = t;
	}
	return best;
}

/* error - rules_load error callback. */
static void
error(void *arg, const char *msg)
{
	fprintf(stderr, "rules_bench: %s\n", msg);
}

/* load - the rule files, with or without the prefilter; exits on error. */
static struct rules *
load(const char *const *paths, size_t n, const struct rules_env *env, bool prefilter)
{
	struct rules *r;

	if (prefilter)
		unsetenv("RAVELIN_RULES_NO_PREFILTER");
	else
		setenv("RAVELIN_RULES_NO_PREFILTER", "1", 1);
	if ((r = rules_load(paths, n, env, error, NULL)) == NULL)
		exit(1);
	unsetenv("RAVELIN_RULES_NO_PREFILTER");
	return r;
}

/* write_bench_rules - the generated 1,000 regex rules (as bench.py writes them). */
static void
write_bench_rules(const char *path)
{
	FILE *fp = fopen(path, "w");

	if (fp == NULL) {
		perror(path);
		exit(1);
	}
	fprintf(fp, "# 95-bench.rules - 1,000 generated regex rules that never match.\n");
	for (unsigned i = 0; i < 1000; i++) {
		switch (i % 4) {
		case 0:
		case 1:
			fprintf(fp, "bench_subj_%u: header header[Subject] =~ /\\b(spamword%u|offer%ux)\\b/i"
				    " -> score 0.01 \"bench %u\"\n", i, i, i, i);
			break;
		case 2:
			fprintf(fp, "bench_sender_%u: mail sender =~ /^(promo|deals)%u[.-]?[a-z]*@/i"
				    " -> score 0.01 \"bench %u\"\n", i, i, i);
			break;
		default:
			fprintf(fp, "bench_body_%u: eom body =~ /unsubscribe-now-%u|cheap meds %u/i"
				    " -> score 0.01 \"bench %u\"\n", i, i, i, i);
		}
	}
	fclose(fp);
}

int
main(int argc, char **argv)
{
	unsigned long n = 20000;
	const char *dir = "rules";
	char pattern[1024], tmp[] = "/tmp/rules_bench.XXXXXX", bench[1100];
	const char *paths[64];
	size_t np = 0;
	struct lists_netset *nets = lists_netset_new();
	struct lists_strset *doms = lists_strset_new();
	struct rules_env env = { nets, doms };
	struct rules *shipped, *with, *without;
	struct sess s = { -1, NULL, "" };
	double t_shipped, t_with, t_without;
	unsigned h1 = 0, h2 = 0, h3 = 0;
	bool only_with = false;
	glob_t g;
	int c;

	while ((c = getopt(argc, argv, "n:d:p")) != -1) {
		switch (c) {
		case 'p': only_with = true; break;
		case 'n': n = strtoul(optarg, NULL, 10); break;
		case 'd': dir = optarg; break;
		default:
			fprintf(stderr, "usage: rules_bench [-p] [-n COUNT] [-d RULESDIR]\n");
			return 2;
		}
	}
	if (nets == NULL || doms == NULL || lists_netset_add(nets, "127.0.0.0/8") < 0 ||
	    lists_netset_add(nets, "::1/128") < 0 || lists_strset_add(doms, "example.org") < 0)
		return 1;
	snprintf(pattern, sizeof(pattern), "%s/*.rules", dir);
	if (glob(pattern, 0, NULL, &g) != 0 || g.gl_pathc == 0) {
		fprintf(stderr, "rules_bench: no %s\n", pattern);
		return 1;
	}
	for (size_t i = 0; i < g.gl_pathc && np < 62; i++)
		paths[np++] = g.gl_pathv[i];
	if (mkdtemp(tmp) == NULL)
		return 1;
	snprintf(bench, sizeof(bench), "%s/95-bench.rules", tmp);
	write_bench_rules(bench);

	s.body = body_make();
	snprintf(s.size, sizeof(s.size), "%zu", strlen(s.body) + 800);
	shipped = load(paths, np, &env, true);
	paths[np++] = bench;
	with = load(paths, np, &env, true);
	without = load(paths, np, &env, false);

	t_shipped = run(shipped, &s, n, &h1);
	t_without = only_with ? 0 : run(without, &s, n, &h2);
	t_with = run(with, &s, n, &h3);
	printf("rules_bench: %lu messages (mail, %d header fields, eoh, eom; body %zu bytes)\n", n,
	       NHDRS, strlen(s.body));
	printf("shipped rules (%zu):                  %8.2f us/msg  (%u hits)\n", rules_count(shipped),
	       t_shipped, h1);
	printf("shipped + 1000 regex, no prefilter:  %8.2f us/msg  (%u hits)  %.2fx\n", t_without, h2,
	       t_without / t_shipped);
	printf("shipped + 1000 regex, prefilter:     %8.2f us/msg  (%u hits)  %.2fx\n", t_with, h3,
	       t_with / t_shipped);
	rules_free(shipped);
	rules_free(with);
	rules_free(without);
	unlink(bench);
	rmdir(tmp);
	globfree(&g);
	free((char *)s.body);
	lists_netset_free(nets);
	lists_strset_free(doms);
	return h2 == h3 ? 0 : 1;
}
