/*
 * check_dmarc.c - DMARC evaluation with libopendmarc.
 *
 * We discover the policy ourselves (RFC 7489 6.6.3): _dmarc.<From domain>
 * through ravelin's resolver, then, when that has no DMARC record,
 * _dmarc.<organisational domain> with the organisational domain taken from
 * the Public Suffix List by libpsl. The one record found goes to
 * libopendmarc with opendmarc_policy_store_dmarc(), which parses it;
 * alignment, the choice of p= or sp= and pct= sampling are done here (see
 * aligned() for why not by libopendmarc). libopendmarc's own lookups (glibc's
 * resolver, port 53, no timeout) are never used. Everything here works on
 * per-call state, so any number of threads may call dmarcv_check() at once;
 * libopendmarc's PSL table is loaded once and locked inside the library.
 *
 * Public:
 *   dmarcv_lib_new(), dmarcv_lib_set_txt_lookup(), dmarcv_lib_set_sampler(),
 *   dmarcv_lib_free(), dmarcv_org_domain(), dmarcv_check(),
 *   dmarcv_result_str(), dmarcv_policy_str()
 */

/* System. */
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/types.h>

/* Libraries. */
#include <libpsl.h>
#include <opendmarc/dmarc.h>

/* Project. */
#include "check_dmarc.h"
#include "dns.h"
#include "fmt.h"
#include "strcopy.h"

#define DMARCV_PSL_DEFAULT "/usr/share/publicsuffix/effective_tld_names.dat"

/* Largest TXT answer we read for one _dmarc name (all records). */
#define DMARCV_TXT_MAX 8192

/* Longest record we hand to libopendmarc (it copies into BUFSIZ). */
#define DMARCV_RECORD_MAX 2048

struct dmarcv_lib {
	struct dns *dns;
	psl_ctx_t *psl;
	unsigned long gen;          /* tells org_cache entries of other libs apart */
	dmarcv_txt_fn txt;
	void *txt_arg;
	unsigned (*sampler)(void);
};

/* opendmarc_policy_library_init() sets process globals and is not
 * thread-safe: run it once. */
static pthread_mutex_t dmarcv_init_lock = PTHREAD_MUTEX_INITIALIZER;
static bool dmarcv_inited;
static unsigned long dmarcv_gen;

/* The organizational domains of the last few names, per thread (no lock):
 * the same sender domains come back message after message, and a public
 * suffix lookup costs a few thousand instructions. Direct-mapped; longer
 * names are not kept. */
#define ORG_CACHE_SLOTS 16
#define ORG_CACHE_NAME  64
struct org_cache_slot {
	unsigned long gen;          /* 0: empty */
	char name[ORG_CACHE_NAME];
	char org[ORG_CACHE_NAME];   /* "" when the name has none */
};
static __thread struct org_cache_slot org_cache[ORG_CACHE_SLOTS];

/* dmarcv_result_str - see check_dmarc.h. */
const char *
dmarcv_result_str(enum dmarcv_result r)
{
	switch (r) {
	case DMARCV_PASS:
		return "pass";
	case DMARCV_FAIL:
		return "fail";
	case DMARCV_TEMPERROR:
		return "temperror";
	case DMARCV_PERMERROR:
		return "permerror";
	case DMARCV_NONE:
		break;
	}
	return "none";
}

/* dmarcv_policy_str - see check_dmarc.h. */
const char *
dmarcv_policy_str(enum dmarcv_policy p)
{
	switch (p) {
	case DMARCV_POLICY_NONE:
		return "none";
	case DMARCV_POLICY_QUARANTINE:
		return "quarantine";
	case DMARCV_POLICY_REJECT:
		return "reject";
	case DMARCV_POLICY_UNSET:
		break;
	}
	return "";
}

/* dns_txt - the default TXT lookup: ravelin's resolver. */
static enum dmarcv_txt_status
dns_txt(void *arg, const char *name, char *out, size_t outlen)
{
	switch (dns_txt_text(arg, name, NULL, out, outlen)) {
	case DNS_OK:
		return DMARCV_TXT_OK;
	case DNS_NXDOMAIN:
	case DNS_NODATA:
	case DNS_BADNAME:
		return DMARCV_TXT_NOTFOUND;
	default:
		return DMARCV_TXT_TEMPFAIL;
	}
}

/* default_sampler - pct= sampling: uniform 0..99. */
static unsigned
default_sampler(void)
{
	return arc4random_uniform(100);
}

/* dmarcv_lib_new - see check_dmarc.h. */
struct dmarcv_lib *
dmarcv_lib_new(struct dns *dns, const char *psl_path, char *err, size_t errlen)
{
	struct dmarcv_lib *l;
	OPENDMARC_LIB_T init;
	int st;

	if (psl_path == NULL)
		psl_path = DMARCV_PSL_DEFAULT;
	l = calloc(1, sizeof *l);
	if (l == NULL) {
		fmt_snprintf(err, errlen, "out of memory");
		return NULL;
	}
	l->gen = __atomic_add_fetch(&dmarcv_gen, 1, __ATOMIC_RELAXED);
	l->psl = psl_load_file(psl_path);
	if (l->psl == NULL) {
		fmt_snprintf(err, errlen, "cannot load public suffix list %s", psl_path);
		free(l);
		return NULL;
	}
	pthread_mutex_lock(&dmarcv_init_lock);
	if (!dmarcv_inited) {
		memset(&init, 0, sizeof init);
		init.tld_type = OPENDMARC_TLD_TYPE_MOZILLA;
		str_copy((char *)init.tld_source_file, sizeof init.tld_source_file, psl_path);
		st = opendmarc_policy_library_init(&init);
		if (st != DMARC_PARSE_OKAY) {
			pthread_mutex_unlock(&dmarcv_init_lock);
			fmt_snprintf(err, errlen, "opendmarc_policy_library_init: %s",
				 opendmarc_policy_status_to_str(st));
			psl_free(l->psl);
			free(l);
			return NULL;
		}
		dmarcv_inited = true;
	}
	pthread_mutex_unlock(&dmarcv_init_lock);
	l->dns = dns;
	l->txt = dns_txt;
	l->txt_arg = dns;
	l->sampler = default_sampler;
	return l;
}

/* dmarcv_lib_set_txt_lookup - see check_dmarc.h. */
void
dmarcv_lib_set_txt_lookup(struct dmarcv_lib *lib, dmarcv_txt_fn fn, void *arg)
{
	lib->txt = fn;
	lib->txt_arg = arg;
}

/* dmarcv_lib_set_sampler - see check_dmarc.h. */
void
dmarcv_lib_set_sampler(struct dmarcv_lib *lib, unsigned (*sampler)(void))
{
	lib->sampler = sampler != NULL ? sampler : default_sampler;
}

/* dmarcv_lib_free - see check_dmarc.h. libopendmarc's globals stay: other
 * handles may still use them, and the process is ending anyway. */
void
dmarcv_lib_free(struct dmarcv_lib *lib)
{
	if (lib == NULL)
		return;
	psl_free(lib->psl);
	free(lib);
}

/* clean_domain - lower-case copy without a final dot; false when it is
 * not a plausible ASCII host name. */
static bool
clean_domain(const char *in, char *out, size_t outlen)
{
	size_t n, i;

	if (in == NULL)
		return false;
	n = strlen(in);
	if (n > 0 && in[n - 1] == '.')
		n--;
	if (n == 0 || n > 253 || n >= outlen)
		return false;
	for (i = 0; i < n; i++) {
		/* in[0..n) is a C string (n = strlen): the analyser loses that when in
		 * is another call's output buffer, e.g. aligned() -> dmarcv_org_domain(). */
		unsigned char c = (unsigned char)in[i]; // NOLINT(clang-analyzer-core.uninitialized.Assign)

		if (!isalnum(c) && c != '-' && c != '.' && c != '_')
			return false;
		out[i] = (char)tolower(c);
	}
	out[n] = '\0';
	return strstr(out, "..") == NULL && out[0] != '.';
}

/* dmarcv_org_domain - see check_dmarc.h. */
int
dmarcv_org_domain(const struct dmarcv_lib *lib, const char *domain, char *buf, size_t len)
{
	const char *reg;
	char d[256];
	unsigned h = 2166136261u;

	if (!clean_domain(domain, d, sizeof d))
		return -1;
	for (const char *c = d; *c; c++)
		h = (h ^ (unsigned char)*c) * 16777619u;
	struct org_cache_slot *slot = &org_cache[h % ORG_CACHE_SLOTS];
	if (slot->gen == lib->gen && strcmp(slot->name, d) == 0) {
		reg = slot->org;
	} else {
		reg = psl_registrable_domain(lib->psl, d);
		if (strlen(d) < ORG_CACHE_NAME && (reg == NULL || strlen(reg) < ORG_CACHE_NAME)) {
			slot->gen = lib->gen;
			str_copy(slot->name, sizeof slot->name, d);
			str_copy(slot->org, sizeof slot->org, reg ? reg : "");
		}
	}
	if (reg == NULL || reg[0] == '\0' || strlen(reg) >= len)
		return -1;
	str_copy(buf, len, reg);
	return 0;
}

/* is_dmarc_record - the record starts with "v=DMARC1" (RFC 7489 6.6.3:
 * others are discarded); white space around '=' tolerated. */
static bool
is_dmarc_record(const char *r, size_t len)
{
	const char *e = r + len;

	while (r < e && (*r == ' ' || *r == '\t'))
		r++;
	if (r >= e || *r++ != 'v')
		return false;
	while (r < e && (*r == ' ' || *r == '\t'))
		r++;
	if (r >= e || *r++ != '=')
		return false;
	while (r < e && (*r == ' ' || *r == '\t'))
		r++;
	if (e - r < 6 || strncmp(r, "DMARC1", 6) != 0)
		return false;
	r += 6;
	while (r < e && (*r == ' ' || *r == '\t'))
		r++;
	return r == e || *r == ';';
}

/* Outcome of policy discovery at one name. */
enum fetch_status { FETCH_FOUND, FETCH_NONE, FETCH_MANY, FETCH_TEMPFAIL };

/* fetch_record - look up _dmarc.domain and keep the one DMARC record. */
static enum fetch_status
fetch_record(struct dmarcv_lib *lib, const char *domain, char *record, size_t reclen)
{
	char name[300], *recs, *p;
	enum dmarcv_txt_status ts;
	int found = 0;

	fmt_snprintf(name, sizeof name, "_dmarc.%s", domain);
	if ((recs = malloc(DMARCV_TXT_MAX)) == NULL)
		return FETCH_TEMPFAIL;
	ts = lib->txt(lib->txt_arg, name, recs, DMARCV_TXT_MAX);
	if (ts != DMARCV_TXT_OK) {
		free(recs);
		return ts == DMARCV_TXT_NOTFOUND ? FETCH_NONE : FETCH_TEMPFAIL;
	}
	for (p = recs; p != NULL;) {
		char *nl = strchr(p, '\n');
		size_t n = nl ? (size_t)(nl - p) : strlen(p);

		if (is_dmarc_record(p, n)) {
			if (found++ == 0)
				fmt_snprintf(record, reclen, "%.*s", (int)n, p);
		}
		p = nl ? nl + 1 : NULL;
	}
	free(recs);
	if (found > 1)
		return FETCH_MANY;
	return found == 1 ? FETCH_FOUND : FETCH_NONE;
}

/* aligned - identifier alignment (RFC 7489 3.1): strict needs the same
 * name, relaxed the same organisational domain. Done here rather than by
 * libopendmarc: 1.4.2's opendmarc_policy_check_alignment() compares the
 * From: domain with the organisational domain of the other identifier
 * even in strict mode, so d=mail.example.com aligned strictly with
 * From: example.com, and its relaxed prefix test lets d=co.uk align with
 * anything under .co.uk. */
static bool
aligned(const struct dmarcv_lib *lib, const char *from, const char *other, bool strict)
{
	char d[256], o1[256], o2[256];

	if (!clean_domain(other, d, sizeof d))
		return false;
	if (strcmp(from, d) == 0)
		return true;
	if (strict)
		return false;
	return dmarcv_org_domain(lib, from, o1, sizeof o1) == 0 &&
	       dmarcv_org_domain(lib, d, o2, sizeof o2) == 0 && strcmp(o1, o2) == 0;
}

/* policy_of - a p=/sp= letter as our enum. */
static enum dmarcv_policy
policy_of(int p)
{
	switch (p) {
	case DMARC_RECORD_P_NONE:
		return DMARCV_POLICY_NONE;
	case DMARC_RECORD_P_QUARANTINE:
		return DMARCV_POLICY_QUARANTINE;
	case DMARC_RECORD_P_REJECT:
		return DMARCV_POLICY_REJECT;
	}
	return DMARCV_POLICY_UNSET;
}

/* discover - find the policy record for from (RFC 7489 6.6.3). Returns
 * the result to report when no record will be evaluated (NONE/TEMPERROR),
 * or PASS meaning "record found"; *org is set when it came from the
 * organisational domain. */
static enum dmarcv_result
discover(struct dmarcv_lib *lib, const char *from, char *record, size_t reclen,
	 struct dmarcv_outcome *out, bool *org)
{
	char orgdom[256];
	enum fetch_status fs;

	*org = false;
	fs = fetch_record(lib, from, record, reclen);
	if (fs == FETCH_FOUND) {
		str_copy(out->record_domain, sizeof out->record_domain, from);
		return DMARCV_PASS;
	}
	if (fs == FETCH_TEMPFAIL) {
		fmt_snprintf(out->reason, sizeof out->reason, "DNS error looking up _dmarc.%.40s", from);
		return DMARCV_TEMPERROR;
	}
	if (fs == FETCH_MANY) {
		fmt_snprintf(out->reason, sizeof out->reason, "several DMARC records at %.40s", from);
		return DMARCV_NONE;
	}
	if (dmarcv_org_domain(lib, from, orgdom, sizeof orgdom) != 0 ||
	    strcmp(orgdom, from) == 0) {
		fmt_snprintf(out->reason, sizeof out->reason, "no DMARC record");
		return DMARCV_NONE;
	}
	fs = fetch_record(lib, orgdom, record, reclen);
	if (fs == FETCH_FOUND) {
		*org = true;
		str_copy(out->record_domain, sizeof out->record_domain, orgdom);
		return DMARCV_PASS;
	}
	if (fs == FETCH_TEMPFAIL) {
		fmt_snprintf(out->reason, sizeof out->reason, "DNS error looking up _dmarc.%.40s", orgdom);
		return DMARCV_TEMPERROR;
	}
	fmt_snprintf(out->reason, sizeof out->reason, "%s",
		 fs == FETCH_MANY ? "several DMARC records" : "no DMARC record");
	return DMARCV_NONE;
}

/* weaker - the next weaker disposition (pct= sampling, RFC 7489 6.6.4). */
static enum dmarcv_policy
weaker(enum dmarcv_policy p)
{
	return p == DMARCV_POLICY_REJECT ? DMARCV_POLICY_QUARANTINE : DMARCV_POLICY_NONE;
}

/* evaluate - parse the record with libopendmarc, then decide. */
static void
evaluate(struct dmarcv_lib *lib, const struct dmarcv_input *in, const char *from,
	 char *record, bool org, struct dmarcv_outcome *out)
{
	DMARC_POLICY_T *pctx;
	int st, p = 0, sp = 0, pct = 100, adkim = 0, aspf = 0;
	size_t i;

	pctx = opendmarc_policy_connect_init((u_char *)"0.0.0.0", 0);
	if (pctx == NULL) {
		out->result = DMARCV_TEMPERROR;
		fmt_snprintf(out->reason, sizeof out->reason, "out of memory");
		return;
	}
	(void)opendmarc_policy_store_from_domain(pctx, (u_char *)from);
	st = opendmarc_policy_store_dmarc(pctx, (u_char *)record, (u_char *)from,
					  org ? (u_char *)out->record_domain : NULL);
	if (st != DMARC_PARSE_OKAY) {
		out->result = DMARCV_PERMERROR;
		fmt_snprintf(out->reason, sizeof out->reason, "bad record: %s",
			 opendmarc_policy_status_to_str(st));
		opendmarc_policy_connect_shutdown(pctx);
		return;
	}
	(void)opendmarc_policy_fetch_p(pctx, &p);
	(void)opendmarc_policy_fetch_sp(pctx, &sp);
	(void)opendmarc_policy_fetch_pct(pctx, &pct);
	(void)opendmarc_policy_fetch_adkim(pctx, &adkim);
	(void)opendmarc_policy_fetch_aspf(pctx, &aspf);
	opendmarc_policy_connect_shutdown(pctx);

	out->adkim_strict = adkim == DMARC_RECORD_A_STRICT;
	out->aspf_strict = aspf == DMARC_RECORD_A_STRICT;
	out->pct = pct;
	/* sp= governs mail from below the organisational domain whose record
	 * we used (RFC 7489 6.3); p= otherwise, and when sp= is absent. */
	out->used_sp = org && policy_of(sp) != DMARCV_POLICY_UNSET;
	out->policy = policy_of(out->used_sp ? sp : p);

	if (in->spf_result != NULL && strcasecmp(in->spf_result, "pass") == 0 &&
	    aligned(lib, from, in->spf_domain, out->aspf_strict))
		out->spf_aligned = true;
	for (i = 0; i < in->ndkim && !out->dkim_aligned; i++)
		if (in->dkim[i].result != NULL && strcasecmp(in->dkim[i].result, "pass") == 0 &&
		    aligned(lib, from, in->dkim[i].domain, out->adkim_strict))
			out->dkim_aligned = true;

	if (out->spf_aligned || out->dkim_aligned) {
		out->result = DMARCV_PASS;
		out->disposition = DMARCV_POLICY_NONE;
		return;
	}
	out->result = DMARCV_FAIL;
	out->disposition = out->policy;
	if (pct < 100 && lib->sampler() >= (unsigned)pct)
		out->disposition = weaker(out->disposition);
	fmt_snprintf(out->reason, sizeof out->reason, "no aligned SPF or DKIM pass");
}

/* dmarcv_check - see check_dmarc.h. */
void
dmarcv_check(struct dmarcv_lib *lib, const struct dmarcv_input *in, struct dmarcv_outcome *out)
{
	char from[256], record[DMARCV_RECORD_MAX + 2];
	enum dmarcv_result r;
	bool org;

	memset(out, 0, sizeof *out);
	out->pct = 100;
	if (!clean_domain(in->from_domain, from, sizeof from)) {
		out->result = DMARCV_NONE;
		fmt_snprintf(out->reason, sizeof out->reason, "no usable From: domain");
		return;
	}
	str_copy(out->from_domain, sizeof out->from_domain, from);
	r = discover(lib, from, record, sizeof record, out, &org);
	if (r != DMARCV_PASS) {
		out->result = r;
		return;
	}
	if (strlen(record) > DMARCV_RECORD_MAX) {
		out->result = DMARCV_PERMERROR;
		fmt_snprintf(out->reason, sizeof out->reason, "DMARC record too long");
		return;
	}
	evaluate(lib, in, from, record, org, out);
}
