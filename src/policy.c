/*
 * policy.c - the policy engine: one verdict per stage.
 *
 * At each milter-style stage the built-in checks run first (relay rights,
 * From: sanity and ownership, local-domain spoofing; at eoh the spoofing
 * heuristics of check_spoof.c for the spoof.* fields), then the checks that
 * need the network (SPF at mail; DKIM and DMARC at eom), then the
 * operator's rules. A stage that has network work, or rules with limit()
 * on a store that may block, runs on the check pool; the session is
 * suspended meanwhile and only its own loop touches it again. Facts for
 * the rules come from the session through policy_fields.c.
 *
 * Public:
 *   policy_run(), policy_headers(), policy_drop_header(), policy_summary(),
 *   policy_reset(), policy_session_free(), policy_stage_name(),
 *   policy_stream_ops(), policy_busy()
 */

/* System. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <stdarg.h>

/* Library. */
#include <event2/buffer.h>

/* Project. */
#include "auth.h"
#include "authres.h"
#include "check_dkim.h"
#include "check_dmarc.h"
#include "check_ptr.h"
#include "check_relay.h"
#include "check_spf.h"
#include "check_spoof.h"
#include "checkpool.h"
#include "config.h"
#include "dns.h"
#include "fmt.h"
#include "lists.h"
#include "log.h"
#include "message.h"
#include "mime_words.h"
#include "msg_addr.h"
#include "policy.h"
#include "policy_internal.h"
#include "ratelimit.h"
#include "rules.h"
#include "server.h"
#include "smtp_reply.h"
#include "smtp_session.h"
#include "stats.h"
#include "strcopy.h"

/* A stage whose work runs on the check pool. */
struct policy_job {
	struct smtp_session *s;
	enum policy_stage stage;
	policy_done_fn *done;
	struct policy_verdict v;
	bool ptr, spf, dkim, rules;
	struct rules_result rr;
};

/* policy_stage_name - the rule-file name of a stage. */
const char *
policy_stage_name(enum policy_stage st)
{
	static const char *names[PS_COUNT] = { "connect", "helo", "mail", "rcpt", "data",
					       "header", "eoh", "body", "eom" };
	return names[st];
}

/* state - the session's policy state, created on first use. */
struct policy_state *
policy_state(struct smtp_session *s)
{
	if (!s->pol && (s->pol = calloc(1, sizeof(*s->pol))))
		s->pol->hdrs = evbuffer_new();
	return s->pol;
}

/* policy_busy - a job is on the check pool (the session must stay put). */
bool
policy_busy(const struct smtp_session *s)
{
	return s->pol_job != NULL;
}

/* reply - fill a verdict. */
static void __attribute__((format(printf, 4, 5)))
verdict(struct policy_verdict *v, enum policy_action a, const char *rule, const char *fmt, ...)
{
	va_list ap;
	v->action = a;
	str_copy(v->rule, sizeof(v->rule), rule);
	va_start(ap, fmt);
	fmt_vsnprintf(v->reply, sizeof(v->reply), fmt, ap);
	va_end(ap);
}

/* ---- From: checks (eom, built in) ---- */

/* from_facts - parse From: once (eoh, for the rules) into the state. */
static int
from_facts(struct smtp_session *s, struct msg_addr addrs[2], int *nfrom, bool *sender)
{
	struct policy_state *st = s->pol;
	struct message *m = msg_parser_message(s->txn->msg);
	const struct msg_header *from = NULL;

	*nfrom = 0;
	*sender = false;
	for (size_t i = 0; i < m->nheaders; i++) {
		if (msg_header_is(&m->headers[i], "From")) {
			(*nfrom)++;
			from = &m->headers[i];
		} else if (msg_header_is(&m->headers[i], "Sender"))
			*sender = true;
	}
	size_t vlen;
	const char *val = from ? msg_header_value(from, &vlen) : NULL;
	int n = val ? msg_addr_parse(val, vlen, addrs, 2) : 0;
	if (!st->from_parsed) {
		st->from_parsed = true;
		st->from_count = n;
		if (n >= 1) {
			str_copy(st->from_addr, sizeof(st->from_addr), addrs[0].addr);
			str_copy(st->from_domain, sizeof(st->from_domain), addrs[0].domain);
			/* As mail clients show it: "=?UTF-8?B?...?=" names hide nothing. */
			mime_words_decode(addrs[0].name, strlen(addrs[0].name), st->from_name,
					  sizeof(st->from_name));
		}
	}
	return n;
}

/* spoof_eoh - display-name and look-alike spoofing (rules decide what to do). */
static void
spoof_eoh(struct smtp_session *s)
{
	struct policy_state *st = s->pol;
	struct msg_addr addrs[2];
	int nfrom;
	bool sender;
	char why[300];
	const char *env = s->txn->mail.null_path ? "" : s->txn->mail.domain;

	from_facts(s, addrs, &nfrom, &sender);
	/* Trusted clients are not spoofing: sender ownership covers them. */
	if (check_relay_trusted(s->cf, s) || !st->from_domain[0])
		return;
	if (spoof_display_name(s->cf->spoof, st->from_name, st->from_domain, why, sizeof(why))) {
		st->spoof_display_name = true;
		stats_inc(s->w->stats, STATS_SPOOF_DETECTED_TOTAL);
		log_info(s->id, "spoof: display name \"%s\" <%s>: %s", st->from_name, st->from_addr, why);
	}
	const char *doms[2] = { st->from_domain, env };
	for (int i = 0; i < 2 && !st->spoof_lookalike; i++) {
		if (!doms[i][0] || lists_strset_match_domain(s->cf->local_domains, doms[i]))
			continue;
		if (spoof_lookalike(s->cf->spoof, doms[i], why, sizeof(why))) {
			st->spoof_lookalike = true;
			stats_inc(s->w->stats, STATS_SPOOF_DETECTED_TOTAL);
			log_info(s->id, "spoof: %s domain %s looks like local domain %s",
				 i ? "envelope sender" : "From:", doms[i], why);
		}
	}
}

/* spoof_eom - From: and MAIL FROM organisations differ and DKIM does not
 * vouch for From: (mailing lists: ravelin.rules(5), "Spoofing"). */
static void
spoof_eom(struct smtp_session *s)
{
	struct policy_state *st = s->pol;
	const char *env = s->txn->mail.domain;

	if (st->spoof_mismatch || check_relay_trusted(s->cf, s) || !st->from_domain[0] ||
	    s->txn->mail.null_path || !env[0] || spoof_same_org(st->from_domain, env))
		return;
	/* A local From: domain is the built-in check's (spoof.local, stricter). */
	if (lists_strset_match_domain(s->cf->local_domains, st->from_domain))
		return;
	bool list_signed = false;
	for (size_t i = 0; st->dkim && i < dkimv_nsigs(st->dkim); i++) {
		const struct dkimv_sig *sig = dkimv_sig(st->dkim, i);
		if (sig->result != DKIMV_PASS || !sig->domain[0])
			continue;
		if (spoof_same_org(sig->domain, st->from_domain))
			return;   /* aligned DKIM: the From: domain signed it */
		if (spoof_same_org(sig->domain, env))
			list_signed = true;
	}
	if (list_signed) {
		struct message *m = msg_parser_message(s->txn->msg);
		for (size_t i = 0; i < m->nheaders; i++)
			if (msg_header_is(&m->headers[i], "List-Id"))
				return;   /* a mailing list that signs its own envelope domain */
	}
	st->spoof_mismatch = true;
	stats_inc(s->w->stats, STATS_SPOOF_DETECTED_TOTAL);
	log_info(s->id, "spoof: From: domain %s differs from MAIL FROM domain %s without DKIM alignment",
		 st->from_domain, env);
}

/* from_checks - exactly one From: mailbox (or a Sender:), owned when
 * authenticated, no local-domain spoofing from outside (DESIGN.md 4, 6). */
static void
from_checks(struct smtp_session *s, struct policy_verdict *v, bool with_dkim)
{
	struct policy_state *st = s->pol;

	if (!with_dkim) {
		struct msg_addr addrs[2];
		int nfrom;
		bool sender;
		int n = from_facts(s, addrs, &nfrom, &sender);
		if (nfrom != 1 || n < 1 || (n > 1 && !sender)) {
			verdict(v, POLICY_REJECT, "from-count", "%s", smtp_reply_text(RPL_FROM_COUNT));
			return;
		}
		if (s->auth) {
			for (int i = 0; i < n && i < 2; i++)
				if (!auth_sender_owned(s->cf->senders, s->cf->local_domains, s->auth_user,
						       addrs[i].addr)) {
					verdict(v, POLICY_REJECT, "from-login", "%s",
						smtp_reply_text(RPL_FROM_NOT_OWNED));
					return;
				}
		}
		return;
	}
	/* With DKIM known: a local From: domain from outside must be vouched for. */
	if (check_relay_trusted(s->cf, s) || !st->from_domain[0] ||
	    !lists_strset_match_domain(s->cf->local_domains, st->from_domain))
		return;
	const char *d;
	if (st->dkim && dkimv_best(st->dkim, &d) == DKIMV_PASS) {
		for (size_t i = 0; i < dkimv_nsigs(st->dkim); i++) {
			const struct dkimv_sig *sig = dkimv_sig(st->dkim, i);
			if (sig->result == DKIMV_PASS && strcasecmp(sig->domain, st->from_domain) == 0)
				return;
		}
	}
	if (st->spf_ran && st->spf.result == SPF_RES_PASS && strcasecmp(st->spf.domain, st->from_domain) == 0)
		return;
	st->spoof_local = true;
	stats_inc(s->w->stats, STATS_SPOOF_DETECTED_TOTAL);
	verdict(v, POLICY_REJECT, "spoof-local", "%s", smtp_reply_text(RPL_SPOOF_LOCAL));
}

/* ---- network checks, on the pool ---- */

/* run_spf - the MAIL FROM (or HELO) identity. */
static void
run_spf(struct smtp_session *s)
{
	struct policy_state *st = s->pol;
	struct server *srv = s->w->srv;

	spf_check(srv->spf, (struct sockaddr *)&s->peer, s->helo,
		  s->txn->mail.null_path ? "" : s->txn->mail.addr, &st->spf);
	st->spf_ran = true;
}

/* run_dkim_dmarc - finish DKIM verification, then DMARC. */
static void
run_dkim_dmarc(struct smtp_session *s)
{
	struct policy_state *st = s->pol;
	struct server *srv = s->w->srv;
	const char *d = "";

	/* Once only: a cache-only attempt that missed runs DMARC again. On
	 * the loop, try_inline() saw every key in the cache; one evicted
	 * since is looked up for real (it must not fail as a miss). */
	if (!st->dkim_ran) {
		if (st->dkim) {
			bool was = dns_cache_only_suspend();
			dkimv_eom(st->dkim);
			dns_cache_only_resume(was);
		}
		st->dkim_ran = true;
	}
	st->dkim_best = st->dkim ? dkimv_best(st->dkim, &d) : DKIMV_NONE;
	str_copy(st->dkim_domain, sizeof(st->dkim_domain), d ? d : "");
	if (!st->from_domain[0])
		return;
	struct dmarcv_dkim sigs[DKIMV_MAX_SIGS];
	size_t n = 0;
	for (size_t i = 0; st->dkim && i < dkimv_nsigs(st->dkim) && n < DKIMV_MAX_SIGS; i++) {
		const struct dkimv_sig *sig = dkimv_sig(st->dkim, i);
		sigs[n].domain = sig->domain;
		sigs[n].selector = sig->selector;
		sigs[n].result = dkimv_result_str(sig->result);
		n++;
	}
	const char *spf_dom = st->spf_ran ? st->spf.domain : NULL;
	struct dmarcv_input in = {
		.from_domain = st->from_domain,
		.spf_domain = spf_dom && *spf_dom ? spf_dom : NULL,
		.spf_result = st->spf_ran ? spf_result_name(st->spf.result) : "none",
		.spf_helo = st->spf_ran && st->spf.identity && strcmp(st->spf.identity, "helo") == 0,
		.dkim = sigs,
		.ndkim = n,
	};
	dmarcv_check(srv->dmarc, &in, &st->dmarc);
	st->dmarc_ran = true;
}

/* eval_rules - the operator's rules for a stage (any thread). */
static void
eval_rules(struct smtp_session *s, enum policy_stage stage, struct rules_result *rr)
{
	const struct rules *r = s->cf->rules;

	rules_result_clear(rr);
	if (!r)
		return;
	if (stage == PS_HEADER) {
		/* Once per field; the first terminal verdict wins. */
		struct message *m = msg_parser_message(s->txn->msg);
		struct rules_result one;
		for (size_t i = 0; i < m->nheaders && rr->verdict == RULES_VERDICT_NONE; i++) {
			s->pol->cur_header = &m->headers[i];
			rules_eval(r, RULES_STAGE_HEADER, &policy_rules_ops, s, &one);
			policy_merge_result(rr, &one);
		}
		s->pol->cur_header = NULL;
		return;
	}
	rules_eval(r, (enum rules_stage)stage, &policy_rules_ops, s, rr);
}

/* apply_rules - turn a rules result into score, headers, logs, a verdict. */
static void
apply_rules(struct smtp_session *s, const struct rules_result *rr, struct policy_verdict *v)
{
	struct policy_state *st = s->pol;

	for (unsigned i = 0; i < rr->nhits; i++)
		stats_inc_label(s->w->stats, STATS_RULE_HITS, rr->hits[i]);
	for (unsigned i = 0; i < rr->nlogs; i++)
		log_info(s->id, "rule %s: %s", rr->logs[i].rule, rr->logs[i].text);
	/* ravelin.rules(5): a score's reason is logged, so operators can tune. */
	for (unsigned i = 0; i < rr->nscores; i++)
		log_info(s->id, "rule %s: score %+g \"%s\"", rr->scores[i].rule, rr->scores[i].delta,
			 rr->scores[i].reason);
	if (s->txn && st)
		st->txn_score += rr->score;
	else
		s->pol_score += rr->score;
	/* add_header before MAIL applies to the session's first message. */
	if (rr->nheaders && (st = policy_state(s)))
		for (unsigned i = 0; i < rr->nheaders; i++)
			evbuffer_add_printf(st->hdrs, "%s: %s\r\n", rr->headers[i].name,
					    rr->headers[i].value);
	if (v->action != POLICY_CONTINUE)
		return;   /* a built-in check already decided */
	switch (rr->verdict) {
	case RULES_VERDICT_REJECT:
	case RULES_VERDICT_TEMPFAIL:
		verdict(v, rr->verdict == RULES_VERDICT_REJECT ? POLICY_REJECT : POLICY_TEMPFAIL,
			rr->verdict_rule, "%d %s %s", rr->code, rr->ecode, rr->text);
		/* 421 closes, as its meaning says (connect-stage limits). */
		v->disconnect = rr->code == 421;
		break;
	case RULES_VERDICT_DISCARD:
		verdict(v, POLICY_DISCARD, rr->verdict_rule, "250 2.0.0 Ok: discarded");
		break;
	case RULES_VERDICT_ACCEPT:
		verdict(v, POLICY_ACCEPT, rr->verdict_rule, "-");
		break;
	default:
		break;
	}
}

/* job_checks - the checks that ask DNS (any thread). */
static void
job_checks(struct policy_job *j)
{
	if (j->ptr) {
		struct smtp_session *s = j->s;
		unsigned budget = s->cf->dns_timeout_ms < 3000 ? s->cf->dns_timeout_ms : 3000;
		check_ptr(s->w->srv->dns, (struct sockaddr *)&s->peer, budget, s->client_name,
			  sizeof(s->client_name));
	}
	if (j->spf)
		run_spf(j->s);
	if (j->dkim)
		run_dkim_dmarc(j->s);
}

/* job_rules - built-in eom checks and the rules (any thread). */
static void
job_rules(struct policy_job *j)
{
	if (j->rules && j->v.action == POLICY_CONTINUE) {
		if (j->stage == PS_EOM) {
			spoof_eom(j->s);
			from_checks(j->s, &j->v, true);
		}
		if (j->v.action == POLICY_CONTINUE)
			eval_rules(j->s, j->stage, &j->rr);
	}
}

/* job_work - on a pool thread. */
static void
job_work(void *arg)
{
	job_checks(arg);
	job_rules(arg);
}

/* sig_tag - the value of tag t= in a DKIM-Signature value, into out. */
static bool
sig_tag(const char *v, size_t len, char t, char *out, size_t outlen)
{
	const char *end = v + len;

	while (v < end) {
		while (v < end && (*v == ' ' || *v == '\t' || *v == '\r' || *v == '\n'))
			v++;
		if (v >= end)
			break;
		const char *semi = memchr(v, ';', (size_t)(end - v));
		const char *te = semi ? semi : end;
		if (v < te && *v == t) {
			const char *p = v + 1;
			while (p < te && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
				p++;
			if (p < te && *p == '=') {
				size_t n = 0;
				for (p++; p < te; p++) {
					if (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
						continue;
					if (n + 1 >= outlen)
						return false;
					out[n++] = *p;
				}
				out[n] = '\0';
				return n > 0;
			}
		}
		v = te < end ? te + 1 : end;
	}
	return false;
}

/* dkim_keys_cached - is the key of every DKIM-Signature in the DNS cache,
 * with a few seconds of its TTL left? Then verification may run on the
 * loop: it would only wait for DNS if a key were evicted in between. */
static bool
dkim_keys_cached(struct smtp_session *s)
{
	struct message *m = s->txn && s->txn->msg ? msg_parser_message(s->txn->msg) : NULL;
	struct dns *dns = s->w->srv->dns;
	struct timespec deadline;
	unsigned nsigs = 0;
	bool ok = dns != NULL;

	clock_gettime(CLOCK_MONOTONIC, &deadline);
	dns_cache_only(true);
	for (size_t i = 0; ok && m && i < m->nheaders; i++) {
		char d[256], sel[256], name[sizeof(d) + sizeof(sel) + 16];
		size_t vlen;
		const char *v;
		struct dns_answer *a = NULL;

		if (!msg_header_is(&m->headers[i], "DKIM-Signature"))
			continue;
		v = msg_header_value(&m->headers[i], &vlen);
		ok = ++nsigs <= DKIMV_MAX_SIGS && sig_tag(v, vlen, 'd', d, sizeof(d)) &&
		     sig_tag(v, vlen, 's', sel, sizeof(sel)) &&
		     (size_t)fmt_snprintf(name, sizeof(name), "%s._domainkey.%s", sel, d) < sizeof(name);
		if (ok) {
			dns_query(dns, name, DNS_T_TXT, &deadline, &a);
			ok = !dns_cache_missed() && a && a->ttl >= 2;
			dns_answer_free(a);
		}
	}
	dns_cache_only(false);
	return ok;
}

/* try_inline - run the stage on the loop when every DNS answer it needs
 * is already cached: no hand-off to the check pool and back. A miss
 * leaves nothing behind that the pool's run would not redo. */
static bool
try_inline(struct smtp_session *s, struct policy_job *j)
{
	/* dkimv_eom() runs once: only with every key at hand. */
	/* A verifier exists only once a DKIM-Signature came (st_header()). */
	if (j->dkim && s->pol && s->pol->dkim && !dkim_keys_cached(s))
		return false;
	if (j->rules && s->cf->rules &&
	    rules_stage_has_limit(s->cf->rules, (enum rules_stage)j->stage) &&
	    ratelimit_may_block(s->w->srv->ratelimit))
		return false;
	dns_cache_only(true);
	job_checks(j);
	bool missed = dns_cache_missed();
	dns_cache_only(false);
	if (missed)
		return false;
	job_rules(j);
	return true;
}

/* finish - after the work: counters, rules' effects, then done(). */
static void
finish(struct smtp_session *s, struct policy_job *j)
{
	struct policy_state *st = s->pol;

	if (j->spf && st && st->spf_ran)
		stats_inc_label(s->w->stats, STATS_SPF_RESULT, spf_result_name(st->spf.result));
	if (j->dkim && st && st->dkim_ran)
		stats_inc_label(s->w->stats, STATS_DKIM_RESULT, dkimv_result_str(st->dkim_best));
	if (j->dkim && st && st->dmarc_ran)
		stats_inc_label(s->w->stats, STATS_DMARC_RESULT, dmarcv_result_str(st->dmarc.result));
	apply_rules(s, &j->rr, &j->v);
	j->done(s, &j->v);
}

/* job_done - back on the session's loop. */
static void
job_done(void *arg)
{
	struct policy_job *j = arg;
	struct smtp_session *s = j->s;

	s->pol_job = NULL;
	if (s->closed) {
		/* The client left while we were busy: now the transaction may go. */
		smtp_txn_release(s);
	} else
		finish(s, j);
	free(j);
	smtp_session_unref(s);
}

/* builtin - the always-on checks that need no network. */
static void
builtin(struct smtp_session *s, enum policy_stage st, struct policy_verdict *v)
{
	if (st == PS_RCPT) {
		enum relay_result rr = check_relay(s->cf, s, &s->txn->rcpt);
		if (rr != RELAY_OK) {
			verdict(v, POLICY_REJECT, check_relay_reason(rr), smtp_reply_text(RPL_RELAY_DENIED),
				s->txn->rcpt.addr);
			fmt_snprintf(v->rule, sizeof(v->rule), "relay:%s", check_relay_reason(rr));
			stats_inc(s->w->stats, STATS_RELAY_DENIED_TOTAL);
		}
	} else if (st == PS_EOH)
		spoof_eoh(s);
	else if (st == PS_EOM)
		from_checks(s, v, false);
}

/* job_new - a job with nothing decided. */
static struct policy_job *
job_new(struct smtp_session *s, enum policy_stage stage, policy_done_fn *done)
{
	/* Not calloc: the job is 2.8 KiB, most of it arrays read only below
	 * their counts, and a message runs about eight stages. */
	struct policy_job *j = malloc(sizeof(*j));

	if (j == NULL)
		return NULL;
	j->s = s;
	j->stage = stage;
	j->done = done;
	j->v.action = POLICY_CONTINUE;
	j->v.reply[0] = j->v.rule[0] = '\0';
	j->v.disconnect = false;
	j->ptr = j->spf = j->dkim = j->rules = false;
	rules_result_clear(&j->rr);
	return j;
}

/* policy_run - evaluate a stage; done() may run before this returns. */
void
policy_run(struct smtp_session *s, enum policy_stage stage, policy_done_fn *done)
{
	/* Idle sessions carry no policy state: it is per transaction. */
	struct policy_state *st = stage >= PS_MAIL ? policy_state(s) : NULL;
	struct policy_job *j = job_new(s, stage, done);
	struct server *srv = s->w->srv;

	if ((stage >= PS_MAIL && !st) || !j) {
		struct policy_verdict v = { .action = POLICY_TEMPFAIL, .rule = "memory" };
		str_copy(v.reply, sizeof(v.reply), smtp_reply_text(RPL_LOCAL_ERROR));
		free(j);
		done(s, &v);
		return;
	}
	s->pol_stage = stage;
	builtin(s, stage, &j->v);
	if (j->v.action == POLICY_CONTINUE) {
		bool trusted = check_relay_trusted(s->cf, s);
		j->spf = stage == PS_MAIL && !trusted;
		/* Milter mode: the MTA passed the name it looked up itself. */
		j->ptr = stage == PS_CONNECT && s->w->base != NULL;
		j->dkim = stage == PS_EOM;
		j->rules = true;
	}
	if (stage == PS_EOM && j->v.action == POLICY_CONTINUE)
		j->rules = true;
	if (!s->w->base) {
		/* Milter mode: libmilter's thread may wait; no loop to post to. */
		job_work(j);
		finish(s, j);
		free(j);
		return;
	}
	bool blocking = j->ptr || j->spf || j->dkim ||
		(j->rules && s->cf->rules && rules_stage_has_limit(s->cf->rules, (enum rules_stage)stage) &&
		 ratelimit_may_block(srv->ratelimit));
	if (!blocking) {
		if (j->rules && j->v.action == POLICY_CONTINUE)
			eval_rules(s, stage, &j->rr);
		finish(s, j);
		free(j);
		return;
	}
	/* Counted so that operators see how often a stage waits for DNS,
	 * Redis or a key (pool) rather than running from cache (inline). */
	if (try_inline(s, j)) {
		stats_inc_label(s->w->stats, STATS_POLICY_CHECKS, "inline");
		finish(s, j);
		free(j);
		return;
	}
	stats_inc_label(s->w->stats, STATS_POLICY_CHECKS, "pool");
	s->pol_job = j;
	smtp_session_ref(s);
	if (checkpool_submit(srv->pool, s->w->base, job_work, job_done, j) < 0) {
		s->pol_job = NULL;
		smtp_session_unref(s);
		verdict(&j->v, POLICY_TEMPFAIL, "checkpool", "%s", smtp_reply_text(RPL_LOCAL_ERROR));
		done(s, &j->v);
		free(j);
	}
}

/* ---- message stream (DKIM) ---- */

/* st_header - one header field as it arrives. The verifier is made at
 * the first DKIM-Signature and given every field so far (a signature may
 * cover any of them): unsigned mail never reaches libopendkim, whose
 * result for it would be "none" anyway. */
static void
st_header(void *arg, const char *field, size_t len)
{
	struct smtp_session *s = arg;
	struct policy_state *st = s->pol;

	if (!st)
		return;
	if (st->dkim) {
		dkimv_header(st->dkim, field, len);
		return;
	}
	struct message *m = s->txn && s->txn->msg ? msg_parser_message(s->txn->msg) : NULL;
	if (!m || m->nheaders == 0 || m->headers[m->nheaders - 1].raw != field ||
	    !msg_header_is(&m->headers[m->nheaders - 1], "DKIM-Signature"))
		return;
	st->dkim = dkimv_new(s->w->srv->dkim, s->id);
	for (size_t i = 0; st->dkim && i < m->nheaders; i++)
		dkimv_header(st->dkim, m->headers[i].raw, m->headers[i].len);
}

/* st_eoh - end of the header section. */
static void
st_eoh(void *arg)
{
	struct smtp_session *s = arg;
	if (s->pol && s->pol->dkim)
		s->pol->dkim_body = dkimv_eoh(s->pol->dkim);
}

/* st_body - body bytes as they arrive. */
static void
st_body(void *arg, const char *buf, size_t len)
{
	struct smtp_session *s = arg;
	if (s->pol && s->pol->dkim && s->pol->dkim_body)
		dkimv_body(s->pol->dkim, (const unsigned char *)buf, len);
}

static const struct msg_stream_ops stream_ops = { st_header, st_eoh, st_body };

/* policy_stream_ops - DKIM verification while the message streams in. */
const struct msg_stream_ops *
policy_stream_ops(struct smtp_session *s)
{
	struct policy_state *st = policy_state(s);

	if (!st)
		return NULL;
	if (st->dkim)
		dkimv_free(st->dkim);
	st->dkim = NULL;    /* made at the first DKIM-Signature (st_header) */
	st->dkim_body = false;
	return &stream_ops;
}

/* ---- forwarded headers and logs ---- */

/* policy_headers - Authentication-Results, Received-SPF, add_header. */
void
policy_headers(struct smtp_session *s, struct evbuffer *out)
{
	struct policy_state *st = s->pol;
	char buf[AUTHRES_MAX];
	struct authres_dkim sigs[DKIMV_MAX_SIGS];
	size_t n = 0;

	if (!st)
		return;
	for (size_t i = 0; st->dkim && i < dkimv_nsigs(st->dkim) && n < DKIMV_MAX_SIGS; i++) {
		const struct dkimv_sig *sig = dkimv_sig(st->dkim, i);
		sigs[n].result = dkimv_result_str(sig->result);
		sigs[n].domain = sig->domain[0] ? sig->domain : NULL;
		sigs[n].selector = sig->selector[0] ? sig->selector : NULL;
		sigs[n].b = sig->b[0] ? sig->b : NULL;
		sigs[n].reason = sig->reason[0] ? sig->reason : NULL;
		n++;
	}
	const char *mailfrom = s->txn->mail.null_path ? NULL : s->txn->mail.addr;
	bool helo_id = st->spf_ran && st->spf.identity && strcmp(st->spf.identity, "helo") == 0;
	struct authres ar = {
		.authserv_id = s->cf->hostname,
		.spf = st->spf_ran ? spf_result_name(st->spf.result) : NULL,
		.spf_mailfrom = st->spf_ran && !helo_id ? mailfrom : NULL,
		.spf_helo = st->spf_ran && (helo_id || !mailfrom) ? s->helo : NULL,
		.dkim = sigs,
		.ndkim = n,
		.dkim_ran = true,
		.dmarc = st->dmarc_ran ? dmarcv_result_str(st->dmarc.result) : NULL,
		.dmarc_from = st->dmarc_ran ? st->from_domain : NULL,
		.dmarc_policy = st->dmarc_ran && st->dmarc.policy != DMARCV_POLICY_UNSET ?
				dmarcv_policy_str(st->dmarc.policy) : NULL,
		.dmarc_disposition = st->dmarc_ran && st->dmarc.disposition != DMARCV_POLICY_UNSET ?
				     dmarcv_policy_str(st->dmarc.disposition) : NULL,
		.auth = s->auth ? "pass" : NULL,
		.auth_user = s->auth ? s->auth_user : NULL,
	};
	if (authres_build(&ar, buf, sizeof(buf)) > 0)
		msg_stuff_header(out, buf, strlen(buf));
	if (st->spf_ran && authres_received_spf(&(struct authres_spf){ .receiver = s->cf->hostname },
						st->spf.received_spf, buf, sizeof(buf)) > 0)
		msg_stuff_header(out, buf, strlen(buf));
	/* add_header actions, in rule order; already "Name: value\r\n". */
	size_t len = evbuffer_get_length(st->hdrs);
	if (len) {
		char *h = (char *)evbuffer_pullup(st->hdrs, (ev_ssize_t)len);
		const char *p = h, *end = h + len;
		while (p < end) {
			const char *eol = memchr(p, '\n', end - p);
			size_t l = eol ? (size_t)(eol - p) : (size_t)(end - p);
			size_t k = l && p[l - 1] == '\r' ? l - 1 : l;
			msg_stuff_header(out, p, k);
			p += l + 1;
		}
	}
}

/* policy_drop_header - an Authentication-Results forged with our id. */
bool
policy_drop_header(struct smtp_session *s, const char *raw, size_t len)
{
	/* raw is not NUL-terminated: find the colon within len only. */
	const char *colon = memchr(raw, ':', len);
	struct msg_header h = { (char *)raw, len, colon ? (size_t)(colon - raw) : len };
	size_t vlen;
	char val[2048];

	if (!colon)
		return false;
	while (h.name_len && (raw[h.name_len - 1] == ' ' || raw[h.name_len - 1] == '\t'))
		h.name_len--;
	if (!msg_header_is(&h, "Authentication-Results"))
		return false;
	const char *v = msg_header_value(&h, &vlen);
	if (vlen >= sizeof(val))
		vlen = sizeof(val) - 1;
	memcpy(val, v, vlen);
	val[vlen] = '\0';
	if (!authres_is_ours(val, s->cf->hostname))
		return false;
	log_info(s->id, "removed a forged Authentication-Results header claiming %s", s->cf->hostname);
	return true;
}

/* policy_summary - the check results for the transaction's log line. */
void
policy_summary(struct smtp_session *s, char *buf, size_t len)
{
	struct policy_state *st = s->pol;

	if (!st) {
		fmt_snprintf(buf, len, "spf=skipped dkim=none dmarc=none score=%.1f", s->pol_score);
		return;
	}
	fmt_snprintf(buf, len, "spf=%s dkim=%s dmarc=%s score=%.1f",
		 st->spf_ran ? spf_result_name(st->spf.result) : "skipped",
		 st->dkim_ran ? dkimv_result_str(st->dkim_best) : "none",
		 st->dmarc_ran ? dmarcv_result_str(st->dmarc.result) : "none",
		 s->pol_score + st->txn_score);
}

/* policy_reset - forget transaction facts (end of a transaction). */
void
policy_reset(struct smtp_session *s)
{
	struct policy_state *st = s->pol;

	if (!st)
		return;
	if (st->dkim)
		dkimv_free(st->dkim);
	if (st->hdrs)
		evbuffer_free(st->hdrs);
	free(st->body);
	free(st);
	s->pol = NULL;
}

/* policy_session_free - release per-session policy state. */
void
policy_session_free(struct smtp_session *s)
{
	policy_reset(s);
}
