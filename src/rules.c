/*
 * rules.c - evaluate a compiled rule set (rules_impl.h) for one SMTP stage.
 *
 * Pure with respect to the session: every field value comes through the
 * caller's rules_ops.get() callback and every limit() through
 * rules_ops.limit(), so the same code serves the proxy, the milter and the
 * unit tests. A compiled set is never written to here; regular expression
 * match data, match context and JIT stack are per thread, and so is the
 * scratch of the literal prefilter (rules_prefilter.h) that lets a stage
 * skip regular-expression rules whose literals do not occur.
 *
 * Public:
 *   rules_eval(), rules_result_clear(), rules_count(), rules_name(),
 *   rules_stage_count(), rules_stage_has_limit(), rules_stage_uses_field(),
 *   rules_value_str(), rules_value_num(), rules_value_bool(),
 *   rules_stage_name(), rules_stage_from_name(), rules_field_name(),
 *   rules_field_kind(), rules_free(), rules_fields[]
 */

/* System. */
#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Libraries. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

/* Project. */
#include "fmt.h"
#include "lists.h"
#include "rules.h"
#include "rules_impl.h"
#include "rules_prefilter.h"

/* Backtracking budget per match: stops catastrophic patterns (also under JIT). */
#define RULES_MATCH_LIMIT 1000000
/* Interpreter heap limit, KiB, for patterns JIT could not compile. */
#define RULES_HEAP_LIMIT  (20 * 1024)
/* At most this many values of one multi-valued field are looked at. */
#define RULES_VALUES_MAX  10000
/* Longest limit() key; longer keys are cut (counters may then be shared). */
#define RULES_KEY_MAX	  1024

static const char *const rules_stage_names[RULES_STAGE_COUNT] = {
	"connect", "helo", "mail", "rcpt", "data", "header", "eoh", "body", "eom",
};

static const char *const kw_spf[] = {
	"pass", "fail", "softfail", "neutral", "none", "temperror", "permerror", NULL,
};
static const char *const kw_auth[] = {
	"pass", "fail", "none", "temperror", "permerror", NULL,
};
static const char *const kw_policy[] = { "none", "quarantine", "reject", NULL };

/*
 * The field table: name, kind, first stage, keywords. To add a field, add
 * a row here and a value to enum rules_field (rules.h), and document it
 * there and in doc/ravelin.rules.5.
 */
const struct rules_field_info rules_fields[RULES_F_COUNT] = {
	[RULES_F_CLIENT_IP] = { "client.ip", RULES_K_IP, RULES_STAGE_CONNECT, NULL },
	[RULES_F_CLIENT_PTR] = { "client.ptr", RULES_K_DOMAIN, RULES_STAGE_CONNECT, NULL },
	[RULES_F_CLIENT_NET] = { "client.net", RULES_K_STRING, RULES_STAGE_CONNECT, NULL },
	[RULES_F_LISTENER] = { "listener", RULES_K_STRING, RULES_STAGE_CONNECT, NULL },
	[RULES_F_TLS] = { "tls", RULES_K_BOOL, RULES_STAGE_CONNECT, NULL },
	[RULES_F_HELO] = { "helo", RULES_K_DOMAIN, RULES_STAGE_HELO, NULL },
	[RULES_F_HELO_IS_OURS] = { "helo.is_ours", RULES_K_BOOL, RULES_STAGE_HELO, NULL },
	[RULES_F_AUTH] = { "auth", RULES_K_BOOL, RULES_STAGE_MAIL, NULL },
	[RULES_F_AUTH_USER] = { "auth.user", RULES_K_STRING, RULES_STAGE_MAIL, NULL },
	[RULES_F_SENDER] = { "sender", RULES_K_ADDRESS, RULES_STAGE_MAIL, NULL },
	[RULES_F_SENDER_DOMAIN] = { "sender.domain", RULES_K_DOMAIN, RULES_STAGE_MAIL, NULL },
	[RULES_F_SPF] = { "spf", RULES_K_KEYWORD, RULES_STAGE_MAIL, kw_spf },
	[RULES_F_RCPT] = { "rcpt", RULES_K_ADDRESS, RULES_STAGE_RCPT, NULL },
	[RULES_F_RCPT_DOMAIN] = { "rcpt.domain", RULES_K_DOMAIN, RULES_STAGE_RCPT, NULL },
	[RULES_F_RCPT_COUNT] = { "rcpt_count", RULES_K_NUMBER, RULES_STAGE_RCPT, NULL },
	[RULES_F_HEADER] = { "header", RULES_K_STRING, RULES_STAGE_HEADER, NULL },
	[RULES_F_FROM_ADDR] = { "from.addr", RULES_K_ADDRESS, RULES_STAGE_EOH, NULL },
	[RULES_F_FROM_DOMAIN] = { "from.domain", RULES_K_DOMAIN, RULES_STAGE_EOH, NULL },
	[RULES_F_FROM_NAME] = { "from.name", RULES_K_STRING, RULES_STAGE_EOH, NULL },
	[RULES_F_SPOOF_LOCAL] = { "spoof.local", RULES_K_BOOL, RULES_STAGE_EOH, NULL },
	[RULES_F_SPOOF_DISPLAY_NAME] = { "spoof.display_name", RULES_K_BOOL, RULES_STAGE_EOH,
					 NULL },
	[RULES_F_SPOOF_LOOKALIKE] = { "spoof.lookalike", RULES_K_BOOL, RULES_STAGE_EOH, NULL },
	[RULES_F_SPOOF_MISMATCH] = { "spoof.mismatch", RULES_K_BOOL, RULES_STAGE_EOM, NULL },
	[RULES_F_BODY] = { "body", RULES_K_STRING, RULES_STAGE_EOM, NULL },
	[RULES_F_SIZE] = { "size", RULES_K_NUMBER, RULES_STAGE_EOM, NULL },
	[RULES_F_DKIM] = { "dkim", RULES_K_KEYWORD, RULES_STAGE_EOM, kw_auth },
	[RULES_F_DKIM_DOMAIN] = { "dkim.domain", RULES_K_DOMAIN, RULES_STAGE_EOM, NULL },
	[RULES_F_DMARC] = { "dmarc", RULES_K_KEYWORD, RULES_STAGE_EOM, kw_auth },
	[RULES_F_DMARC_POLICY] = { "dmarc.policy", RULES_K_KEYWORD, RULES_STAGE_EOM, kw_policy },
	[RULES_F_SCORE] = { "score", RULES_K_NUMBER, RULES_STAGE_CONNECT, NULL },
};

/*
 * Per-thread regular expression state (PCRE2 match data is not shareable)
 * and prefilter scratch: which gated rules had a literal hit, and which
 * groups' automata already ran in the current evaluation.
 */
struct rules_tls {
	pcre2_match_data *md;
	pcre2_match_context *mc;
	pcre2_jit_stack *js;
	uint64_t *pf_bits;
	size_t pf_nwords;
	uint8_t *pf_done;
	unsigned pf_ngroups;
	bool pf_busy; /* an evaluation on this thread is using the scratch */
};

static pthread_key_t rules_tls_key;
static pthread_once_t rules_tls_once = PTHREAD_ONCE_INIT;
static __thread struct rules_tls *rules_tls_cur;

/* One evaluation in progress. */
struct rules_eval_ctx {
	const struct rules_ops *ops;
	void *ctx;
	struct rules_result *out;
	const struct rules_rule *rule;
	double base_score;
	bool have_base;
	const struct rules_pf_stage *pf; /* the stage's prefilter, or NULL */
	struct rules_tls *pft;		 /* its scratch */
};

/* rules_tls_free - thread-exit destructor of the per-thread match state. */
static void
rules_tls_free(void *arg)
{
	struct rules_tls *t = arg;

	if (t == NULL)
		return;
	pcre2_match_data_free(t->md);
	pcre2_match_context_free(t->mc);
	pcre2_jit_stack_free(t->js);
	free(t->pf_bits);
	free(t->pf_done);
	free(t);
}

/* rules_tls_init - create the key whose destructor frees thread state. */
static void
rules_tls_init(void)
{
	pthread_key_create(&rules_tls_key, rules_tls_free);
}

/* rules_tls_get - this thread's match state, created on first use; NULL on ENOMEM. */
static struct rules_tls *
rules_tls_get(void)
{
	struct rules_tls *t;

	if (rules_tls_cur != NULL)
		return rules_tls_cur;
	pthread_once(&rules_tls_once, rules_tls_init);
	if ((t = calloc(1, sizeof(*t))) == NULL)
		return NULL;
	/* One ovector pair: we only ask whether there is a match. */
	t->md = pcre2_match_data_create(1, NULL);
	t->mc = pcre2_match_context_create(NULL);
	t->js = pcre2_jit_stack_create(32 * 1024, 1024 * 1024, NULL);
	if (t->md == NULL || t->mc == NULL) {
		rules_tls_free(t);
		return NULL;
	}
	pcre2_set_match_limit(t->mc, RULES_MATCH_LIMIT);
	pcre2_set_heap_limit(t->mc, RULES_HEAP_LIMIT);
	if (t->js != NULL)
		pcre2_jit_stack_assign(t->mc, NULL, t->js);
	pthread_setspecific(rules_tls_key, t);
	rules_tls_cur = t;
	return t;
}

/* rules_value_str - point v at a NUL-terminated string. */
void
rules_value_str(struct rules_value *v, const char *s)
{
	v->s = s ? s : "";
	v->len = strlen(v->s);
}

/* rules_value_num - a number, as decimal text in v->buf. */
void
rules_value_num(struct rules_value *v, double n)
{
	fmt_snprintf(v->buf, sizeof(v->buf), "%.15g", n);
	rules_value_str(v, v->buf);
}

/* rules_value_bool - a boolean, as "1" or "0". */
void
rules_value_bool(struct rules_value *v, bool b)
{
	rules_value_str(v, b ? "1" : "0");
}

/* rules_result_clear - nothing decided, nothing accumulated. */
void
rules_result_clear(struct rules_result *out)
{
	/* The arrays are read only below their counts: zeroing their 2 KiB
	 * for every header field of every message showed in profiles. */
	out->verdict = RULES_VERDICT_NONE;
	out->code = 0;
	out->ecode = out->text = out->verdict_rule = NULL;
	out->score = 0;
	out->nscores = out->scores_dropped = 0;
	out->nheaders = out->headers_dropped = 0;
	out->nlogs = out->logs_dropped = 0;
	out->nhits = out->hits_dropped = 0;
}

/* derive_net - client.net from client.ip: the /24 or /64 around it. */
static bool
derive_net(struct rules_eval_ctx *e, struct rules_value *v)
{
	struct rules_value ip = { 0 };
	char text[INET6_ADDRSTRLEN];
	struct sockaddr_storage ss;
	char out[INET6_ADDRSTRLEN];

	if (!e->ops->get(e->ctx, RULES_F_CLIENT_IP, NULL, 0, &ip) || ip.s == NULL ||
	    ip.len >= sizeof(text))
		return false;
	memcpy(text, ip.s, ip.len);
	text[ip.len] = '\0';
	if (lists_parse_ip(text, &ss) < 0)
		return false;
	if (ss.ss_family == AF_INET) {
		struct in_addr a = ((struct sockaddr_in *)&ss)->sin_addr;

		a.s_addr &= htonl(0xffffff00u);
		inet_ntop(AF_INET, &a, out, sizeof(out));
		fmt_snprintf(v->buf, sizeof(v->buf), "%s/24", out);
	} else {
		struct in6_addr a = ((struct sockaddr_in6 *)&ss)->sin6_addr;

		memset(&a.s6_addr[8], 0, 8);
		inet_ntop(AF_INET6, &a, out, sizeof(out));
		fmt_snprintf(v->buf, sizeof(v->buf), "%s/64", out);
	}
	rules_value_str(v, v->buf);
	return true;
}

/* get_value - the i-th value of a field, with the evaluator's own fields. */
static bool
get_value(struct rules_eval_ctx *e, const struct rules_fref *fr, unsigned i, struct rules_value *v)
{
	v->s = NULL;
	v->len = 0;
	if (fr->field == RULES_F_SCORE) {
		/* The caller's running score plus what this stage added so far. */
		if (i > 0)
			return false;
		if (!e->have_base) {
			struct rules_value b = { 0 };
			char num[64];

			e->base_score = 0;
			if (e->ops->get(e->ctx, RULES_F_SCORE, NULL, 0, &b) && b.s != NULL &&
			    b.len < sizeof(num)) {
				memcpy(num, b.s, b.len);
				num[b.len] = '\0';
				e->base_score = strtod(num, NULL);
				if (!isfinite(e->base_score))
					e->base_score = 0;
			}
			e->have_base = true;
		}
		rules_value_num(v, e->base_score + e->out->score);
		return true;
	}
	if (i >= RULES_VALUES_MAX)
		return false;
	if (!e->ops->get(e->ctx, fr->field, fr->arg, i, v)) {
		if (fr->field == RULES_F_CLIENT_NET && i == 0)
			return derive_net(e, v);
		return false;
	}
	if (v->s == NULL) {
		v->s = "";
		v->len = 0;
	}
	return true;
}

/* value_number - the value as a number; false when it is not one. */
static bool
value_number(const struct rules_value *v, double *out)
{
	char buf[64], *end;

	if (v->len == 0 || v->len >= sizeof(buf))
		return false;
	memcpy(buf, v->s, v->len);
	buf[v->len] = '\0';
	*out = strtod(buf, &end);
	return *end == '\0' && isfinite(*out);
}

/* value_true - a boolean value: non-empty and not "0". */
static bool
value_true(const struct rules_value *v)
{
	return v->len > 0 && !(v->len == 1 && v->s[0] == '0');
}

/* ip_equal - do two textual addresses denote the same address? -1 if not both IPs. */
static int
ip_equal(const char *a, const char *b)
{
	struct sockaddr_storage x, y;

	if (lists_parse_ip(a, &x) < 0 || lists_parse_ip(b, &y) < 0)
		return -1;
	if (x.ss_family != y.ss_family)
		return 0;
	if (x.ss_family == AF_INET)
		return ((struct sockaddr_in *)&x)->sin_addr.s_addr ==
		       ((struct sockaddr_in *)&y)->sin_addr.s_addr;
	return memcmp(&((struct sockaddr_in6 *)&x)->sin6_addr,
		      &((struct sockaddr_in6 *)&y)->sin6_addr, 16) == 0;
}

/* value_cstr - a NUL-terminated copy in buf, or malloc'd when longer (*heap set). */
static char *
value_cstr(const struct rules_value *v, char *buf, size_t size, char **heap)
{
	char *s = buf;

	*heap = NULL;
	if (v->len >= size) {
		if ((s = malloc(v->len + 1)) == NULL)
			return NULL;
		*heap = s;
	}
	memcpy(s, v->s, v->len);
	s[v->len] = '\0';
	return s;
}

/* in_list - membership of one value in an `in` right side. */
static bool
in_list(const struct rules_node *n, enum rules_kind kind, const char *s)
{
	const char *at;

	if (n->nets != NULL && lists_netset_count(n->nets) > 0 &&
	    lists_netset_match_str(n->nets, s))
		return true;
	if (n->strs == NULL || lists_strset_count(n->strs) == 0)
		return false;
	switch (kind) {
	case RULES_K_DOMAIN:
		return lists_strset_match_domain(n->strs, s);
	case RULES_K_ADDRESS:
		/* "user@example.org", or "@example.org" for the whole domain. */
		return lists_strset_has(n->strs, s) ||
		       ((at = strrchr(s, '@')) != NULL && lists_strset_has(n->strs, at));
	default:
		return lists_strset_has(n->strs, s);
	}
}

/* regex_match - does the pattern match somewhere in the value? */
static bool
regex_match(const pcre2_code *re, const struct rules_value *v)
{
	struct rules_tls *t = rules_tls_get();
	int rc;

	if (t == NULL)
		return false;
	rc = pcre2_match(re, (PCRE2_SPTR)v->s, v->len, 0, 0, t->md, t->mc);
	/* 0 means "matched, ovector too small": still a match. */
	return rc >= 0;
}

/* cmp_value - the positive form of a comparison (=~ == in < ...) on one value. */
static bool
cmp_value(const struct rules_node *n, const struct rules_value *v)
{
	enum rules_kind kind = rules_fields[n->f.field].kind;
	double num;

	switch (n->op) {
	case RULES_OP_MATCH:
	case RULES_OP_NOMATCH:
		return regex_match(n->re, v);
	case RULES_OP_EQ:
	case RULES_OP_NE:
		if (kind == RULES_K_NUMBER)
			return value_number(v, &num) && num == n->num;
		if (kind == RULES_K_IP && v->len < 64) {
			char buf[64];
			int eq;

			memcpy(buf, v->s, v->len);
			buf[v->len] = '\0';
			if ((eq = ip_equal(buf, n->str)) >= 0)
				return eq;
		}
		if (v->len != n->len)
			return false;
		if (kind == RULES_K_STRING)
			return memcmp(v->s, n->str, v->len) == 0;
		return strncasecmp(v->s, n->str, v->len) == 0 && memchr(v->s, '\0', v->len) == NULL;
	case RULES_OP_LT:
		return value_number(v, &num) && num < n->num;
	case RULES_OP_LE:
		return value_number(v, &num) && num <= n->num;
	case RULES_OP_GT:
		return value_number(v, &num) && num > n->num;
	case RULES_OP_GE:
		return value_number(v, &num) && num >= n->num;
	case RULES_OP_IN: {
		char buf[512], *heap, *s = value_cstr(v, buf, sizeof(buf), &heap);
		bool in = s != NULL && in_list(n, kind, s);

		free(heap);
		return in;
	}
	}
	return false;
}

/* eval_cmp - any value satisfies it; != and !~ are "no value matches". */
static bool
eval_cmp(struct rules_eval_ctx *e, const struct rules_node *n)
{
	struct rules_value v;
	bool any = false;

	for (unsigned i = 0; !any && get_value(e, &n->f, i, &v); i++)
		any = cmp_value(n, &v);
	return (n->op == RULES_OP_NE || n->op == RULES_OP_NOMATCH) ? !any : any;
}

/* eval_bare - a boolean field is true, another field has a non-empty value. */
static bool
eval_bare(struct rules_eval_ctx *e, const struct rules_node *n)
{
	struct rules_value v;

	if (rules_fields[n->f.field].kind == RULES_K_BOOL)
		return get_value(e, &n->f, 0, &v) && value_true(&v);
	for (unsigned i = 0; get_value(e, &n->f, i, &v); i++)
		if (v.len > 0)
			return true;
	return false;
}

/* eval_limit - build the key from the first value of each key field; ask the caller. */
static bool
eval_limit(struct rules_eval_ctx *e, const struct rules_node *n)
{
	char key[RULES_KEY_MAX];
	size_t len = 0;

	if (e->ops->limit == NULL)
		return false;
	for (unsigned k = 0; k < n->nkeys; k++) {
		enum rules_kind kind = rules_fields[n->keys[k].field].kind;
		struct rules_value v;
		bool fold = kind == RULES_K_ADDRESS || kind == RULES_K_DOMAIN ||
			    kind == RULES_K_KEYWORD;

		if (k > 0 && len + 1 < sizeof(key))
			key[len++] = '+';
		if (!get_value(e, &n->keys[k], 0, &v))
			continue;
		for (size_t i = 0; i < v.len && len + 1 < sizeof(key); i++) {
			char c = v.s[i];

			if (c == '\0')
				break;
			if (fold && c >= 'A' && c <= 'Z')
				c = (char)(c - 'A' + 'a');
			key[len++] = c;
		}
	}
	key[len] = '\0';
	return e->ops->limit(e->ctx, key, n->limit_n, n->limit_period, e->rule->name) == 1;
}

/* eval_node - the truth of a condition tree (&& and || short-circuit). */
static bool
eval_node(struct rules_eval_ctx *e, const struct rules_node *n)
{
	switch (n->type) {
	case RULES_N_TRUE:
		return true;
	case RULES_N_AND:
		return eval_node(e, n->a) && eval_node(e, n->b);
	case RULES_N_OR:
		return eval_node(e, n->a) || eval_node(e, n->b);
	case RULES_N_NOT:
		return !eval_node(e, n->a);
	case RULES_N_CMP:
		return eval_cmp(e, n);
	case RULES_N_BARE:
		return eval_bare(e, n);
	case RULES_N_LIMIT:
		return eval_limit(e, n);
	}
	return false;
}

/* run_actions - apply a matching rule's actions; true if one was terminal. */
static bool
run_actions(struct rules_eval_ctx *e, const struct rules_rule *rule)
{
	struct rules_result *out = e->out;
	bool terminal = false;

	for (unsigned i = 0; i < rule->nacts; i++) {
		const struct rules_action *a = &rule->acts[i];

		switch (a->type) {
		case RULES_A_ACCEPT:
		case RULES_A_REJECT:
		case RULES_A_TEMPFAIL:
		case RULES_A_DISCARD:
			terminal = true;
			if (out->verdict != RULES_VERDICT_NONE)
				break;
			out->verdict = a->type == RULES_A_ACCEPT	 ? RULES_VERDICT_ACCEPT :
				       a->type == RULES_A_REJECT	 ? RULES_VERDICT_REJECT :
				       a->type == RULES_A_TEMPFAIL ? RULES_VERDICT_TEMPFAIL :
								     RULES_VERDICT_DISCARD;
			out->code = a->code;
			out->ecode = a->ecode;
			out->text = a->text;
			out->verdict_rule = rule->name;
			break;
		case RULES_A_SCORE:
			out->score += a->score;
			if (out->nscores < RULES_RESULT_MAX_SCORES) {
				out->scores[out->nscores].delta = a->score;
				out->scores[out->nscores].reason = a->text ? a->text : rule->name;
				out->scores[out->nscores++].rule = rule->name;
			} else {
				out->scores_dropped++;
			}
			break;
		case RULES_A_ADD_HEADER:
			if (out->nheaders < RULES_RESULT_MAX_HEADERS) {
				out->headers[out->nheaders].name = a->name;
				out->headers[out->nheaders].value = a->text;
				out->headers[out->nheaders++].rule = rule->name;
			} else {
				out->headers_dropped++;
			}
			break;
		case RULES_A_LOG:
			if (out->nlogs < RULES_RESULT_MAX_LOGS) {
				out->logs[out->nlogs].text = a->text;
				out->logs[out->nlogs++].rule = rule->name;
			} else {
				out->logs_dropped++;
			}
			break;
		}
	}
	return terminal;
}

/* pf_begin - set up the prefilter scratch for an evaluation of a stage (or go without). */
static void
pf_begin(struct rules_eval_ctx *e, const struct rules *r, enum rules_stage stage)
{
	const struct rules_pf_stage *ps;
	struct rules_tls *t;
	size_t nwords;

	if (r->pf == NULL || (ps = &r->pf->st[stage])->ngroups == 0 || (t = rules_tls_get()) == NULL ||
	    t->pf_busy)
		return; /* busy: get() evaluated rules itself; plain is always right */
	nwords = r->pf->maxrules / 64 + 1;
	if (t->pf_nwords < nwords) {
		uint64_t *b = realloc(t->pf_bits, nwords * sizeof(*b));

		if (b == NULL)
			return;
		t->pf_bits = b;
		t->pf_nwords = nwords;
	}
	if (t->pf_ngroups < r->pf->maxgroups) {
		uint8_t *d = realloc(t->pf_done, r->pf->maxgroups);

		if (d == NULL)
			return;
		t->pf_done = d;
		t->pf_ngroups = r->pf->maxgroups;
	}
	memset(t->pf_bits, 0, (r->nstage[stage] / 64 + 1) * sizeof(*t->pf_bits));
	memset(t->pf_done, 0, ps->ngroups);
	t->pf_busy = true;
	e->pf = ps;
	e->pft = t;
}

/*
 * pf_next - the next rule to evaluate from the i-th on: i itself unless
 * it is gated and none of its literals occurs in its field (its condition
 * is then certainly false), in which case the rules of the same group that
 * follow it without a hit are passed over too. A group's automaton runs
 * once, when its first rule is reached, so a stage that stops early never
 * fetches fields it would not have read.
 */
static size_t
pf_next(struct rules_eval_ctx *e, size_t i)
{
	int32_t g = e->pf->gate[i];
	struct rules_tls *t = e->pft;

	if (g < 0)
		return i;
	if (!t->pf_done[g]) {
		const struct rules_pf_group *grp = &e->pf->groups[g];
		struct rules_value v;

		for (unsigned k = 0; get_value(e, &grp->f, k, &v); k++)
			rules_pf_scan(grp, v.s, v.len, t->pf_bits);
		t->pf_done[g] = 1;
	}
	return rules_pf_next(e->pf, t->pf_bits, i);
}

/* rules_eval - run one stage's rules; the first terminal action wins. */
int
rules_eval(const struct rules *r, enum rules_stage stage, const struct rules_ops *ops, void *ctx,
	   struct rules_result *out)
{
	struct rules_eval_ctx e = { .ops = ops, .ctx = ctx, .out = out };

	rules_result_clear(out);
	if (r == NULL || (unsigned)stage >= RULES_STAGE_COUNT || ops == NULL || ops->get == NULL)
		return RULES_VERDICT_NONE;
	pf_begin(&e, r, stage);
	for (size_t i = 0; i < r->nstage[stage]; i++) {
		const struct rules_rule *rule;
		size_t next;

		if (e.pf != NULL && (next = pf_next(&e, i)) != i) {
			i = next - 1; /* the skipped rules' conditions are false */
			continue;
		}
		rule = e.rule = r->stage[stage][i];
		if (!eval_node(&e, rule->cond))
			continue;
		if (out->nhits < RULES_RESULT_MAX_HITS)
			out->hits[out->nhits++] = rule->name;
		else
			out->hits_dropped++;
		if (run_actions(&e, rule))
			break;
	}
	if (e.pft != NULL)
		e.pft->pf_busy = false;
	return out->verdict;
}

/* rules_count - number of rules in the set. */
size_t
rules_count(const struct rules *r)
{
	return r ? r->nrules : 0;
}

/* rules_name - name of the i-th rule in file order, or NULL. */
const char *
rules_name(const struct rules *r, size_t i)
{
	return r && i < r->nrules ? r->rule[i]->name : NULL;
}

/* rules_stage_count - number of rules of a stage. */
size_t
rules_stage_count(const struct rules *r, enum rules_stage stage)
{
	return r && (unsigned)stage < RULES_STAGE_COUNT ? r->nstage[stage] : 0;
}

/* rules_stage_has_limit - may evaluating this stage call limit() (and block)? */
bool
rules_stage_has_limit(const struct rules *r, enum rules_stage stage)
{
	return r && (unsigned)stage < RULES_STAGE_COUNT && r->has_limit[stage];
}

/* rules_stage_uses_field - does a rule of this stage read f (skip costly fields)? */
bool
rules_stage_uses_field(const struct rules *r, enum rules_stage stage, enum rules_field f)
{
	return r && (unsigned)stage < RULES_STAGE_COUNT && (unsigned)f < RULES_F_COUNT &&
	       (r->fields[stage] & ((uint64_t)1 << f)) != 0;
}

/* rules_stage_name - "connect" .. "eom". */
const char *
rules_stage_name(enum rules_stage stage)
{
	return (unsigned)stage < RULES_STAGE_COUNT ? rules_stage_names[stage] : "?";
}

/* rules_stage_from_name - stage for a name, or -1. */
int
rules_stage_from_name(const char *name)
{
	for (int i = 0; i < RULES_STAGE_COUNT; i++)
		if (strcmp(name, rules_stage_names[i]) == 0)
			return i;
	return -1;
}

/* rules_field_name - "client.ip" ... */
const char *
rules_field_name(enum rules_field f)
{
	return (unsigned)f < RULES_F_COUNT ? rules_fields[f].name : "?";
}

/* rules_field_kind - how values of f compare. */
enum rules_kind
rules_field_kind(enum rules_field f)
{
	return (unsigned)f < RULES_F_COUNT ? rules_fields[f].kind : RULES_K_STRING;
}

/* rules_free - release a rule set and everything it owns; NULL is fine. */
void
rules_free(struct rules *r)
{
	struct rules_mem *m, *next;

	if (r == NULL)
		return;
	for (m = r->mem; m != NULL; m = next) {
		next = m->next;
		if (m->dtor)
			m->dtor(m->obj);
		free(m);
	}
	rules_prefilter_free(r->pf);
	for (int s = 0; s < RULES_STAGE_COUNT; s++)
		free(r->stage[s]);
	free(r->rule);
	free(r);
}
