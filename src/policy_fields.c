/*
 * policy_fields.c - the facts a rule can ask for, read from the session,
 * and limit() against the rate-limit store.
 *
 * Called from rules_eval() on the session's loop or on a check-pool thread
 * (while the session is suspended, so nothing changes under it).
 *
 * Public:
 *   policy_rules_ops, policy_merge_result()
 */

/* System. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>

/* Library. */
#include <event2/buffer.h>

/* Project. */
#include "check_relay.h"
#include "config.h"
#include "fmt.h"
#include "log.h"
#include "message.h"
#include "policy.h"
#include "policy_internal.h"
#include "ratelimit.h"
#include "rules.h"
#include "server.h"
#include "smtp_session.h"
#include "stats.h"

/* Body bytes offered to `body` rules (a regex over megabytes helps nobody). */
#define POLICY_BODY_MAX (256 * 1024)

/* str - a string value (false for NULL, so the field "has no value"). */
static bool
str(struct rules_value *out, const char *s)
{
	if (!s)
		return false;
	rules_value_str(out, s);
	return true;
}

/* helo_is_ours - the client greets with our name or address. */
static bool
helo_is_ours(const struct smtp_session *s)
{
	char local[INET6_ADDRSTRLEN + 2] = "";
	const struct sockaddr *sa = (const struct sockaddr *)&s->local;

	if (strcasecmp(s->helo, s->cf->hostname) == 0)
		return true;
	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, local, sizeof(local));
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, local, sizeof(local));
	if (!local[0])
		return false;
	size_t n = strlen(local);
	const char *h = s->helo;
	if (h[0] == '[' && strncasecmp(h + 1, local, n) == 0 && h[n + 1] == ']' && !h[n + 2])
		return true;
	return strcasecmp(h, local) == 0;
}

/* body_text - the message body, read from the spool once. */
static const char *
body_text(struct smtp_session *s)
{
	struct policy_state *st = s->pol;

	/* No policy state (get() then uses a static empty one): nowhere to keep it. */
	if (st == NULL)
		return NULL;
	if (st->body)
		return st->body;
	struct message *m = msg_parser_message(s->txn->msg);
	struct evbuffer *b = evbuffer_new();
	off_t off = 0;
	ssize_t n;
	while (b && evbuffer_get_length(b) < POLICY_BODY_MAX &&
	       (n = msg_body_read(m, off, b, POLICY_BODY_MAX - evbuffer_get_length(b))) > 0)
		off += n;
	size_t len = b ? evbuffer_get_length(b) : 0;
	st->body = malloc(len + 1);
	if (st->body) {
		if (len)
			evbuffer_remove(b, st->body, len);
		st->body[len] = '\0';
		st->body_len = len;
	}
	if (b)
		evbuffer_free(b);
	return st->body;
}

/* header_value - the value of a field without the leading space. */
static bool
header_value(const struct msg_header *h, struct rules_value *out)
{
	size_t len;
	const char *v = msg_header_value(h, &len);
	while (len && (*v == ' ' || *v == '\t'))
		v++, len--;
	out->s = v;
	out->len = len;
	return true;
}

/* get - the i-th value of a field. */
static bool
get(void *ctx, enum rules_field f, const char *arg, unsigned i, struct rules_value *out)
{
	static struct policy_state none;   /* before MAIL: nothing known */
	struct smtp_session *s = ctx;
	struct policy_state *st = s->pol ? s->pol : &none;
	struct smtp_txn *t = s->txn;

	if (f == RULES_F_HEADER) {
		if (!t || !t->msg)
			return false;
		if (st->cur_header) {
			if (i || !msg_header_is(st->cur_header, arg))
				return false;
			return header_value(st->cur_header, out);
		}
		struct message *m = msg_parser_message(t->msg);
		unsigned k = 0;
		for (size_t n = 0; n < m->nheaders; n++)
			if (msg_header_is(&m->headers[n], arg) && k++ == i)
				return header_value(&m->headers[n], out);
		return false;
	}
	if (f == RULES_F_RCPT || f == RULES_F_RCPT_DOMAIN) {
		if (!t)
			return false;
		if (s->pol_stage == PS_RCPT) {
			/* rcpt stage: the recipient being decided */
			if (i)
				return false;
			return str(out, f == RULES_F_RCPT ? t->rcpt.addr : t->rcpt.domain);
		}
		if (i >= t->nrcpts)
			return false;
		return str(out, f == RULES_F_RCPT ? t->rcpts[i].addr : t->rcpts[i].domain);
	}
	if (f == RULES_F_DKIM_DOMAIN) {
		/* Multi-valued: the d= of each signature that verified. */
		unsigned k = 0;
		for (size_t n = 0; st->dkim_ran && st->dkim && n < dkimv_nsigs(st->dkim); n++) {
			const struct dkimv_sig *sig = dkimv_sig(st->dkim, n);
			if (sig->result == DKIMV_PASS && sig->domain[0] && k++ == i)
				return str(out, sig->domain);
		}
		return false;
	}
	if (i)
		return false;
	switch (f) {
	case RULES_F_CLIENT_IP:
		return str(out, s->client_ip);
	case RULES_F_CLIENT_PTR:
		return strcmp(s->client_name, "unknown") ? str(out, s->client_name) : false;
	case RULES_F_CLIENT_NET:
		return false;   /* derived from client.ip by the rules engine */
	case RULES_F_LISTENER:
		return str(out, config_profile_name(s->li->conf.profile));
	case RULES_F_TLS:
		rules_value_bool(out, s->tls);
		return true;
	case RULES_F_HELO:
		return str(out, s->helo);
	case RULES_F_HELO_IS_OURS:
		rules_value_bool(out, helo_is_ours(s));
		return true;
	case RULES_F_AUTH:
		rules_value_bool(out, s->auth);
		return true;
	case RULES_F_AUTH_USER:
		return s->auth ? str(out, s->auth_user) : false;
	case RULES_F_SENDER:
		return t ? str(out, t->mail.addr) : false;
	case RULES_F_SENDER_DOMAIN:
		return t && !t->mail.null_path ? str(out, t->mail.domain) : false;
	case RULES_F_SPF:
		return st->spf_ran ? str(out, spf_result_name(st->spf.result)) : false;
	case RULES_F_RCPT_COUNT:
		rules_value_num(out, t ? (double)t->nrcpts : 0);
		return true;
	case RULES_F_FROM_ADDR:
		return st->from_addr[0] ? str(out, st->from_addr) : false;
	case RULES_F_FROM_DOMAIN:
		return st->from_domain[0] ? str(out, st->from_domain) : false;
	case RULES_F_FROM_NAME:
		return st->from_name[0] ? str(out, st->from_name) : false;
	case RULES_F_SPOOF_LOCAL:
		rules_value_bool(out, st->spoof_local);
		return true;
	case RULES_F_SPOOF_DISPLAY_NAME:
		rules_value_bool(out, st->spoof_display_name);
		return true;
	case RULES_F_SPOOF_LOOKALIKE:
		rules_value_bool(out, st->spoof_lookalike);
		return true;
	case RULES_F_SPOOF_MISMATCH:
		rules_value_bool(out, st->spoof_mismatch);
		return true;
	case RULES_F_BODY:
		if (!t || !t->msg || !body_text(s))
			return false;
		out->s = st->body;
		out->len = st->body_len;
		return true;
	case RULES_F_SIZE:
		rules_value_num(out, t && t->msg ? (double)msg_parser_message(t->msg)->size : 0);
		return true;
	case RULES_F_DKIM:
		return st->dkim_ran ? str(out, dkimv_result_str(st->dkim_best)) : false;
	case RULES_F_DMARC:
		return st->dmarc_ran ? str(out, dmarcv_result_str(st->dmarc.result)) :
		       st->dkim_ran ? str(out, "none") : false;
	case RULES_F_DMARC_POLICY:
		if (!st->dmarc_ran || st->dmarc.disposition == DMARCV_POLICY_UNSET)
			return st->dkim_ran ? str(out, "none") : false;
		return str(out, dmarcv_policy_str(st->dmarc.disposition));
	case RULES_F_SCORE:
		rules_value_num(out, s->pol_score + st->txn_score);
		return true;
	default:
		return false;
	}
}

/* limit - count this event for the rule's key in the store. */
static int
limit(void *ctx, const char *key, unsigned n, unsigned period_s, const char *rule_name)
{
	struct smtp_session *s = ctx;
	struct server *srv = s->w->srv;
	char k[1024];
	unsigned count = 0;

	/* One key per rule, so two rules never count each other's events. */
	fmt_snprintf(k, sizeof(k), "%s:%s", rule_name, key);
	int r = ratelimit_hit(srv->ratelimit, k, n, period_s, &count);
	if (r < 0) {
		stats_inc(s->w->stats, STATS_RATELIMIT_STORE_ERRORS_TOTAL);
		log_warnx(s->id, "ratelimit store error for key %s (rule %s): failing open", key, rule_name);
		return 0;
	}
	if (r > 0) {
		stats_inc(s->w->stats, STATS_RATELIMIT_HITS_TOTAL);
		log_info(s->id, "ratelimit: key=%s count=%u limit=%u/%us rule=%s client=[%s]", key, count, n,
			 period_s, rule_name, s->client_ip);
	}
	return r;
}

const struct rules_ops policy_rules_ops = { get, limit };

/* policy_merge_result - add one header-field evaluation to the stage's. */
void
policy_merge_result(struct rules_result *into, const struct rules_result *one)
{
	if (into->verdict == RULES_VERDICT_NONE && one->verdict != RULES_VERDICT_NONE) {
		into->verdict = one->verdict;
		into->code = one->code;
		into->ecode = one->ecode;
		into->text = one->text;
		into->verdict_rule = one->verdict_rule;
	}
	into->score += one->score;
	for (unsigned i = 0; i < one->nscores; i++) {
		if (into->nscores < RULES_RESULT_MAX_SCORES)
			into->scores[into->nscores++] = one->scores[i];
		else
			into->scores_dropped++;
	}
	into->scores_dropped += one->scores_dropped;
	into->hits_dropped += one->hits_dropped;
	into->headers_dropped += one->headers_dropped;
	into->logs_dropped += one->logs_dropped;
	for (unsigned i = 0; i < one->nhits; i++) {
		if (into->nhits < RULES_RESULT_MAX_HITS)
			into->hits[into->nhits++] = one->hits[i];
		else
			into->hits_dropped++;
	}
	for (unsigned i = 0; i < one->nheaders; i++) {
		if (into->nheaders < RULES_RESULT_MAX_HEADERS)
			into->headers[into->nheaders++] = one->headers[i];
		else
			into->headers_dropped++;
	}
	for (unsigned i = 0; i < one->nlogs; i++) {
		if (into->nlogs < RULES_RESULT_MAX_LOGS)
			into->logs[into->nlogs++] = one->logs[i];
		else
			into->logs_dropped++;
	}
}
