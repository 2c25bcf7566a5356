/*
 * check_spf.c - SPF check (RFC 7208) with libspf2 over ravelin's resolver.
 *
 * libspf2 asks DNS through an SPF_dns_server_t layer of ours that calls
 * dns_query(), so SPF uses the configured dns_resolver, its cache and its
 * timeouts. The per-check time budget, the void-lookup count and the
 * recovery point for libspf2's fatal errors live in thread-local state set
 * up by spf_check(): the layer has no per-request argument, and each check
 * runs on one thread from start to end.
 *
 * Where libspf2 departs from RFC 7208 we correct it here: type SPF (99)
 * records are not looked up (3.1), records go through spf_lint.c's
 * syntax check first (section 12), more than two void lookups or ten MX
 * hosts give permerror (4.6.4), explanations with spaces expand (6.2), a loopback client is not waved through, IPv4-mapped
 * IPv6 clients are checked as IPv4, and Received-SPF carries receiver=
 * and identity= with quoted values (9.1). SPF_error() would abort(): ours
 * jumps back to spf_check(), which answers temperror.
 *
 * Public:
 *   spf_checker_new(), spf_checker_set_budget(), spf_checker_free(),
 *   spf_check(), spf_result_name()
 */

/* System. */
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <ctype.h>
#include <netdb.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* Libraries. */
#include <spf2/spf.h>
#include <spf2/spf_dns.h>

/* Project. */
#include "check_spf.h"
#include "dns.h"
#include "fmt.h"
#include "spf_lint.h"
#include "strcopy.h"

#define SPF_DEFAULT_BUDGET_MS 20000	/* RFC 7208 4.6.4: at least 20 s */
#define SPF_VOID_LIMIT 2		/* RFC 7208 4.6.4 */
#define SPF_SENDER_MAX 320		/* 64 + @ + 255 */
#define SPF_HELO_MAX 255
#define SPF_MX_LIMIT 10			/* RFC 7208 4.6.4 */
/* What libspf2 gets instead of a record spf_lint refused: also a permerror. */
#define SPF_REFUSED "v=spf1 ip4:0.0.0.0/33"
#define SPF_COMMENT_MAX 1024		/* the header comment, before sanitising */
/* Spaces as %_: libspf2 1.2.10 misparses a space in macro-strings. */
#define SPF_CHECK_DEFAULT_EXP "%{o}%_does%_not%_designate%_%{i}%_as%_permitted%_sender"

struct spf_checker {
	struct dns *dns;
	SPF_dns_server_t *layer;
	SPF_server_t *server;
	unsigned budget_ms;
	char hostname[256];
};

/* State of the check running on this thread. */
struct spf_run {
	struct dns *dns;
	struct timespec deadline;
	int voids;		/* A/AAAA/MX lookups with no answer */
	int mx_over;		/* an MX answer with more than 10 hosts */
	const char *invalid;	/* why spf_lint_record() refused a record */
	int temp;		/* lookups that timed out or failed */
	jmp_buf env;		/* where SPF_error() lands */
	char fatal[160];	/* its message */
};

static __thread struct spf_run *spf_run;
static pthread_once_t spf_once = PTHREAD_ONCE_INIT;

/* spf_fatal - libspf2's SPF_error(): back to spf_check(), or abort outside one. */
static void __attribute__((noreturn))
spf_fatal(const char *file, int line, const char *msg)
{
	struct spf_run *run = spf_run;

	if (run == NULL)
		abort();
	fmt_snprintf(run->fatal, sizeof(run->fatal), "libspf2 %s:%d: %s", file, line, msg);
	longjmp(run->env, 1);
}

/* spf_quiet - libspf2 warnings and debug output: not ours to print. */
static void
spf_quiet(const char *file, int line, const char *msg)
{
}

/* spf_init_handlers - install the message handlers once per process. */
static void
spf_init_handlers(void)
{
	SPF_error_handler = spf_fatal;
	SPF_warning_handler = spf_quiet;
	SPF_info_handler = spf_quiet;
	SPF_debug_handler = spf_quiet;
}

/* spf_is_record - whether a TXT string is an SPF record (RFC 7208 4.5). */
static int
spf_is_record(const char *txt)
{
	return strncasecmp(txt, "v=spf1", 6) == 0 && (txt[6] == ' ' || txt[6] == '\0');
}

/* spf_txt_size - bytes spf_txt_copy() writes for a TXT string. */
static size_t
spf_txt_size(const char *txt)
{
	size_t n = strlen(txt) + 1, extra = 0;
	const char *p;

	if (spf_is_record(txt))
		return n > sizeof(SPF_REFUSED) ? n : sizeof(SPF_REFUSED);
	for (p = txt; *p; p++)
		if (*p == ' ')
			extra++;
	return n + extra;
}

/*
 * spf_txt_copy - a TXT string as libspf2 should see it. SPF records go
 * through spf_lint_record(); one it refuses is replaced by a record
 * libspf2 also refuses, and the reason is kept for spf_check(). Other TXT
 * strings may be explanations (exp=), which RFC 7208 6.2 writes with plain
 * spaces; libspf2 1.2.10 turns a space in a macro-string into "%" and
 * leaves the next macro unexpanded, so spaces become the %_ macro.
 */
static void
spf_txt_copy(char *dst, const struct dns_rr *r, struct spf_run *run)
{
	const char *txt = r->text, *why;
	char *start = dst;

	if (spf_is_record(txt)) {
		memcpy(dst, txt, strlen(txt) + 1);
		if ((why = spf_lint_record(dst, r->len)) != NULL) {
			memcpy(dst, SPF_REFUSED, sizeof(SPF_REFUSED));
			if (run != NULL && run->invalid == NULL)
				run->invalid = why;
		}
		return;
	}
	for (; *txt; txt++) {
		if (*txt == ' ')
			*dst++ = '%', *dst++ = '_';
		else
			*dst++ = *txt;
	}
	*dst = '\0';
	spf_lint_defuse_text(start);
}

/* spf_herrno - libspf2's h_errno-style status for a dns status. */
static SPF_dns_stat_t
spf_herrno(enum dns_status st)
{
	switch (st) {
	case DNS_OK:
		return NETDB_SUCCESS;
	case DNS_NODATA:
		return NO_DATA;
	case DNS_NXDOMAIN:
	case DNS_BADNAME:
		/* RFC 7208 4.3: a malformed domain is treated like NXDOMAIN. */
		return HOST_NOT_FOUND;
	case DNS_SERVFAIL:
	case DNS_TIMEOUT:
		break;
	}
	return TRY_AGAIN;
}

/* spf_fill_rr - copy our records into libspf2's answer; -1 when out of memory. */
static int
spf_fill_rr(SPF_dns_rr_t *rr, ns_type type, const struct dns_answer *ans)
{
	size_t i, need;
	int n = 0;

	for (i = 0; i < ans->count && n < 1000; i++) {
		const struct dns_rr *r = &ans->rr[i];

		if (type == ns_t_a)
			need = sizeof(struct in_addr);
		else if (type == ns_t_aaaa)
			need = sizeof(struct in6_addr);
		else if (type == ns_t_txt)
			need = spf_txt_size(r->text);
		else
			need = strlen(r->text) + 1;
		if (SPF_dns_rr_buf_realloc(rr, n, need) != SPF_E_SUCCESS)
			return -1;
		if (type == ns_t_a)
			memcpy(&rr->rr[n]->a, &r->addr.v4, need);
		else if (type == ns_t_aaaa)
			memcpy(&rr->rr[n]->aaaa, &r->addr.v6, need);
		else {
			/* A TXT string with a NUL in it ends there, as in libspf2's own layer. */
			if (type == ns_t_txt)
				spf_txt_copy(rr->rr[n]->txt, r, spf_run);
			else
				memcpy(rr->rr[n]->txt, r->text, need);
		}
		n++;
	}
	rr->num_rr = n;
	return 0;
}

/* spf_layer_lookup - libspf2's DNS entry point: ask ravelin's resolver. */
static SPF_dns_rr_t *
spf_layer_lookup(SPF_dns_server_t *layer, const char *domain, ns_type type, int should_cache)
{
	struct spf_checker *ck = layer->hook;
	struct spf_run *run = spf_run;
	struct dns_answer *ans = NULL;
	enum dns_status st;
	enum dns_type qtype;
	SPF_dns_rr_t *rr;

	switch (type) {
	case ns_t_a:
		qtype = DNS_T_A;
		break;
	case ns_t_aaaa:
		qtype = DNS_T_AAAA;
		break;
	case ns_t_mx:
		qtype = DNS_T_MX;
		break;
	case ns_t_ptr:
		qtype = DNS_T_PTR;
		break;
	case ns_t_txt:
		qtype = DNS_T_TXT;
		break;
	default:
		/* Type SPF (99) is obsolete (RFC 7208 3.1); libspf2 then asks TXT. */
		return SPF_dns_rr_new_init(layer, domain, type, 0, NO_DATA);
	}
	st = dns_query(ck->dns, domain, qtype, run ? &run->deadline : NULL, &ans);
	if (run != NULL) {
		if (st == DNS_TIMEOUT || st == DNS_SERVFAIL)
			run->temp++;
		if (st == DNS_OK && ans != NULL && type == ns_t_mx && ans->count > SPF_MX_LIMIT)
			run->mx_over = 1;
		if ((st == DNS_NODATA || st == DNS_NXDOMAIN) &&
		    (type == ns_t_a || type == ns_t_aaaa || type == ns_t_mx))
			run->voids++;
	}
	rr = SPF_dns_rr_new_init(layer, domain, type, ans ? (int)ans->ttl : 0, spf_herrno(st));
	/* dns_query() always sets ans on DNS_OK; the test is for the analyser. */
	if (rr != NULL && st == DNS_OK && ans != NULL && spf_fill_rr(rr, type, ans) < 0)
		rr->herrno = TRY_AGAIN;
	dns_answer_free(ans);
	return rr;
}

/* spf_checker_new - a libspf2 server on our DNS layer. */
struct spf_checker *
spf_checker_new(struct dns *dns, const char *our_hostname)
{
	struct spf_checker *ck;
	SPF_response_t *resp = NULL;
	struct spf_run run;

	pthread_once(&spf_once, spf_init_handlers);
	if (dns == NULL || our_hostname == NULL || strlen(our_hostname) >= sizeof(ck->hostname))
		return NULL;
	if ((ck = calloc(1, sizeof(*ck))) == NULL)
		return NULL;
	ck->dns = dns;
	ck->budget_ms = SPF_DEFAULT_BUDGET_MS;
	str_copy(ck->hostname, sizeof(ck->hostname), our_hostname);
	if ((ck->layer = calloc(1, sizeof(*ck->layer))) == NULL)
		goto fail;
	/* No destroy: libspf2 must not free our layer (SPF_server_free doesn't). */
	ck->layer->lookup = spf_layer_lookup;
	ck->layer->name = "ravelin";
	ck->layer->hook = ck;

	memset(&run, 0, sizeof(run));
	spf_run = &run;
	if (setjmp(run.env) != 0) {
		spf_run = NULL;
		goto fail;	/* leaks what libspf2 had; it only happens without memory */
	}
	ck->server = SPF_server_new_dns(ck->layer, 0);
	if (ck->server == NULL)
		goto fail_run;
	SPF_server_set_rec_dom(ck->server, ck->hostname);
	SPF_server_set_sanitize(ck->server, 1);
	if (SPF_server_set_explanation(ck->server, SPF_CHECK_DEFAULT_EXP, &resp) != SPF_E_SUCCESS) {
		if (resp)
			SPF_response_free(resp);
		goto fail_run;
	}
	if (resp)
		SPF_response_free(resp);
	spf_run = NULL;
	return ck;
fail_run:
	spf_run = NULL;
fail:
	if (ck->server)
		SPF_server_free(ck->server);
	free(ck->layer);
	free(ck);
	return NULL;
}

/* spf_checker_set_budget - time allowed for one check's DNS. */
void
spf_checker_set_budget(struct spf_checker *ck, unsigned ms)
{
	ck->budget_ms = ms ? ms : SPF_DEFAULT_BUDGET_MS;
}

/* spf_checker_free - free the libspf2 server and our layer. */
void
spf_checker_free(struct spf_checker *ck)
{
	if (ck == NULL)
		return;
	SPF_server_free(ck->server);
	free(ck->layer);
	free(ck);
}

/* spf_result_name - the result keyword of RFC 7208 2.6 / DESIGN.md. */
const char *
spf_result_name(enum spf_result r)
{
	switch (r) {
	case SPF_RES_NONE:
		return "none";
	case SPF_RES_NEUTRAL:
		return "neutral";
	case SPF_RES_PASS:
		return "pass";
	case SPF_RES_FAIL:
		return "fail";
	case SPF_RES_SOFTFAIL:
		return "softfail";
	case SPF_RES_TEMPERROR:
		return "temperror";
	case SPF_RES_PERMERROR:
		return "permerror";
	}
	return "permerror";
}

/* spf_map_result - libspf2's result as ours. */
static enum spf_result
spf_map_result(SPF_result_t r)
{
	switch (r) {
	case SPF_RESULT_PASS:
		return SPF_RES_PASS;
	case SPF_RESULT_FAIL:
		return SPF_RES_FAIL;
	case SPF_RESULT_SOFTFAIL:
		return SPF_RES_SOFTFAIL;
	case SPF_RESULT_NEUTRAL:
		return SPF_RES_NEUTRAL;
	case SPF_RESULT_NONE:
		return SPF_RES_NONE;
	case SPF_RESULT_TEMPERROR:
		return SPF_RES_TEMPERROR;
	case SPF_RESULT_PERMERROR:
	case SPF_RESULT_INVALID:
	default:
		return SPF_RES_PERMERROR;
	}
}

/* spf_sanitize - copy src into dst as printable ASCII, without the listed bytes. */
static void
spf_sanitize(char *dst, size_t dstlen, const char *src, const char *drop)
{
	size_t o = 0;

	for (; src != NULL && *src != '\0' && o + 1 < dstlen; src++) {
		unsigned char c = *src;

		if (c < ' ' || c >= 0x7f)
			c = '?';
		if (drop != NULL && strchr(drop, c) != NULL)
			continue;
		dst[o++] = c;
	}
	dst[o] = '\0';
}

/* spf_is_dot_atom - whether a header value may go unquoted (RFC 5322 dot-atom). */
static int
spf_is_dot_atom(const char *s)
{
	const char *p;

	if (*s == '\0' || *s == '.')
		return 0;
	for (p = s; *p; p++) {
		if (isalnum((unsigned char)*p) || strchr("!#$%&'*+-/=?^_`{|}~", *p))
			continue;
		if (*p == '.' && p[1] != '.' && p[1] != '\0')
			continue;
		return 0;
	}
	return 1;
}

/* spf_append_pair - append " key=value;" with value as dot-atom or quoted-string. */
static void
spf_append_pair(char *buf, size_t len, const char *key, const char *value)
{
	char clean[SPF_OUT_TEXT_MAX * 2], quoted[SPF_OUT_TEXT_MAX * 2 + 3];
	size_t o = 0, i;

	spf_sanitize(clean, sizeof(clean), value, NULL);
	if (spf_is_dot_atom(clean)) {
		str_append(buf, len, " ", key, "=", clean, ";", (char *)NULL);
		return;
	}
	quoted[o++] = '"';
	for (i = 0; clean[i] != '\0' && o + 3 < sizeof(quoted); i++) {
		if (clean[i] == '"' || clean[i] == '\\')
			quoted[o++] = '\\';
		quoted[o++] = clean[i];
	}
	quoted[o++] = '"';
	quoted[o] = '\0';
	str_append(buf, len, " ", key, "=", quoted, ";", (char *)NULL);
}

/* spf_finish - compose the Received-SPF value from what is known. */
static void
spf_finish(struct spf_checker *ck, struct spf_outcome *out, const char *comment, const char *ip,
	   const char *helo, const char *sender)
{
	char cmt[SPF_COMMENT_MAX], from[SPF_SENDER_MAX + 16];

	/* A comment may not hold parentheses or backslashes of its own. */
	spf_sanitize(cmt, sizeof(cmt), comment, "()\\");
	fmt_snprintf(out->received_spf, sizeof(out->received_spf), "%s (%s)",
		 spf_result_name(out->result), cmt);
	spf_append_pair(out->received_spf, sizeof(out->received_spf), "client-ip", ip);
	if (*sender != '\0')
		str_copy(from, sizeof(from), sender);
	else
		fmt_snprintf(from, sizeof(from), "postmaster@%s", helo);
	spf_append_pair(out->received_spf, sizeof(out->received_spf), "envelope-from", from);
	if (*helo != '\0')
		spf_append_pair(out->received_spf, sizeof(out->received_spf), "helo", helo);
	spf_append_pair(out->received_spf, sizeof(out->received_spf), "receiver", ck->hostname);
	spf_append_pair(out->received_spf, sizeof(out->received_spf), "identity", out->identity);
	if ((out->result == SPF_RES_PERMERROR || out->result == SPF_RES_TEMPERROR) &&
	    out->reason[0] != '\0')
		spf_append_pair(out->received_spf, sizeof(out->received_spf), "problem", out->reason);
}

/* spf_error_text - libspf2's first error message for a response, if any. */
static const char *
spf_error_text(SPF_response_t *resp)
{
	int i, n = SPF_response_messages(resp);

	for (i = 0; i < n; i++) {
		SPF_error_t *e = SPF_response_message(resp, i);

		if (e != NULL && SPF_error_errorp(e))
			return SPF_error_message(e);
	}
	return NULL;
}

/* spf_compile_failed - whether a response holds errors beyond "no SPF record". */
static int
spf_compile_failed(SPF_response_t *resp)
{
	int i, n = SPF_response_messages(resp);

	for (i = 0; i < n; i++) {
		SPF_error_t *e = SPF_response_message(resp, i);

		if (e != NULL && SPF_error_errorp(e) && SPF_error_code(e) != SPF_E_NOT_SPF)
			return 1;
	}
	return 0;
}

/*
 * spf_override - RFC 7208 permerrors libspf2 does not know: a record that
 * spf_lint refused, an MX answer over the limit, too many void lookups.
 * A temperror stands: the check stopped before it could know.
 */
static void
spf_override(struct spf_checker *ck, struct spf_run *run, struct spf_outcome *out,
	     char *comment, size_t clen)
{
	if (out->result == SPF_RES_TEMPERROR) {
		if (out->reason[0] == '\0')
			fmt_snprintf(out->reason, sizeof(out->reason), "%s",
				 run->temp ? "DNS lookup timed out or failed" : "temporary error");
		return;
	}
	if (run->invalid != NULL)
		fmt_snprintf(out->reason, sizeof(out->reason), "invalid SPF record: %s", run->invalid);
	else if (run->mx_over)
		fmt_snprintf(out->reason, sizeof(out->reason), "more than %d MX records", SPF_MX_LIMIT);
	else if (run->voids > SPF_VOID_LIMIT)
		fmt_snprintf(out->reason, sizeof(out->reason), "more than %d void DNS lookups",
			 SPF_VOID_LIMIT);
	else
		return;
	out->result = SPF_RES_PERMERROR;
	fmt_snprintf(comment, clen, "%s: error in processing during lookup of %s: %s", ck->hostname,
		 out->domain, out->reason);
}

/* spf_evaluate - run libspf2 for one request; fills result, reason, comment. */
static void
spf_evaluate(struct spf_checker *ck, struct spf_run *run, const struct in_addr *v4,
	     const struct in6_addr *v6, const char *helo, const char *sender,
	     struct spf_outcome *out, char *comment, size_t clen)
{
	SPF_request_t *volatile req = NULL;
	SPF_response_t *resp = NULL;
	SPF_errcode_t err;
	const char *txt;

	if (setjmp(run->env) != 0) {
		/* libspf2 hit a fatal error: its objects are abandoned. */
		out->result = SPF_RES_TEMPERROR;
		spf_sanitize(out->reason, sizeof(out->reason), run->fatal, NULL);
		fmt_snprintf(comment, clen, "%s: internal error in SPF library", ck->hostname);
		return;
	}
	if ((req = SPF_request_new(ck->server)) == NULL)
		goto nomem;
	if (v4 != NULL)
		SPF_request_set_ipv4(req, *v4);
	else
		SPF_request_set_ipv6(req, *v6);
	/* HELO first: the null sender falls back to it only if already set. */
	if (*helo != '\0' && SPF_request_set_helo_dom(req, helo) != SPF_E_SUCCESS)
		goto nomem;
	if (SPF_request_set_env_from(req, sender) != 0)
		goto nomem;
	err = SPF_request_query_mailfrom(req, &resp);
	if (resp == NULL)
		goto nomem;
	out->result = spf_map_result(SPF_response_result(resp));
	if (SPF_response_result(resp) == SPF_RESULT_INVALID) {
		/*
		 * libspf2 1.2.10 leaves the result unset when the record
		 * lookup fails (fixed upstream after 1.2.10): decide here.
		 */
		if (err == SPF_E_NOT_SPF && !spf_compile_failed(resp))
			out->result = SPF_RES_NONE;
		else if (err == SPF_E_DNS_ERROR && run->temp > 0)
			out->result = SPF_RES_TEMPERROR;
		txt = spf_error_text(resp);
		spf_sanitize(out->reason, sizeof(out->reason), txt ? txt : SPF_strerror(err), NULL);
		fmt_snprintf(comment, clen, "%s: %s %s: %s", ck->hostname,
			 out->result == SPF_RES_TEMPERROR ? "temporary error looking up" :
			 out->result == SPF_RES_NONE ? "no SPF record for" : "error looking up",
			 out->domain, out->reason);
	} else {
		fmt_snprintf(comment, clen, "%s", SPF_response_get_header_comment(resp)
						  ? SPF_response_get_header_comment(resp) : "");
		if (out->result == SPF_RES_FAIL)
			txt = SPF_response_get_explanation(resp);
		else if (out->result == SPF_RES_TEMPERROR || out->result == SPF_RES_PERMERROR)
			txt = spf_error_text(resp);
		else
			txt = NULL;
		spf_sanitize(out->reason, sizeof(out->reason), txt, NULL);
	}
	spf_override(ck, run, out, comment, clen);
	SPF_response_free(resp);
	SPF_request_free(req);
	return;
nomem:
	if (req != NULL)
		SPF_request_free(req);
	out->result = SPF_RES_TEMPERROR;
	fmt_snprintf(out->reason, sizeof(out->reason), "out of memory");
	fmt_snprintf(comment, clen, "%s: temporary error: out of memory", ck->hostname);
}

/* spf_check - evaluate one client and identity (see check_spf.h). */
enum spf_result
spf_check(struct spf_checker *ck, const struct sockaddr *client, const char *helo,
	  const char *sender, struct spf_outcome *out)
{
	struct in_addr v4;
	struct in6_addr v6;
	int is_v4 = 0, loopback;
	char ip[INET6_ADDRSTRLEN], comment[SPF_COMMENT_MAX];
	const char *at;
	struct spf_run run;

	memset(out, 0, sizeof(*out));
	if (helo == NULL)
		helo = "";
	if (sender == NULL)
		sender = "";
	out->identity = *sender != '\0' ? "mailfrom" : "helo";
	at = strrchr(sender, '@');
	fmt_snprintf(out->domain, sizeof(out->domain), "%s",
		 *sender == '\0' ? helo : at != NULL ? at + 1 : sender);

	if (client->sa_family == AF_INET) {
		v4 = ((const struct sockaddr_in *)client)->sin_addr;
		is_v4 = 1;
	} else if (client->sa_family == AF_INET6) {
		v6 = ((const struct sockaddr_in6 *)client)->sin6_addr;
		/* libspf2 would evaluate ::ffff:a.b.c.d against ip6 terms. */
		if (IN6_IS_ADDR_V4MAPPED(&v6)) {
			memcpy(&v4, &v6.s6_addr[12], 4);
			is_v4 = 1;
		}
	} else {
		out->result = SPF_RES_PERMERROR;
		fmt_snprintf(out->reason, sizeof(out->reason), "client address family not supported");
		spf_finish(ck, out, "unknown client address family", "", helo, sender);
		return out->result;
	}
	inet_ntop(is_v4 ? AF_INET : AF_INET6, is_v4 ? (void *)&v4 : (void *)&v6, ip, sizeof(ip));
	loopback = is_v4 ? (ntohl(v4.s_addr) >> 24) == 127 : IN6_IS_ADDR_LOOPBACK(&v6);

	if (loopback) {
		/* libspf2 passes loopback unconditionally; claim nothing instead. */
		out->result = SPF_RES_NONE;
		fmt_snprintf(comment, sizeof(comment), "%s: loopback client %s not checked", ck->hostname, ip);
	} else if (*sender == '\0' && *helo == '\0') {
		out->result = SPF_RES_NONE;
		fmt_snprintf(comment, sizeof(comment), "%s: no HELO name for the null sender", ck->hostname);
	} else if (strlen(sender) > SPF_SENDER_MAX || strlen(helo) > SPF_HELO_MAX) {
		/* RFC 7208 4.3: a malformed domain gives none. */
		out->result = SPF_RES_NONE;
		fmt_snprintf(comment, sizeof(comment), "%s: identity too long to check", ck->hostname);
	} else {
		memset(&run, 0, sizeof(run));
		run.dns = ck->dns;
		dns_deadline(&run.deadline, ck->budget_ms);
		spf_run = &run;
		spf_evaluate(ck, &run, is_v4 ? &v4 : NULL, is_v4 ? NULL : &v6, helo, sender, out,
			     comment, sizeof(comment));
		spf_run = NULL;
	}
	spf_finish(ck, out, comment, ip, helo, sender);
	return out->result;
}
