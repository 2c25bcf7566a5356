/*
 * dkim_oracle.c - the reference DKIM verifier for the tests: libopendkim
 * driven as ravelin drove it until its own verifier (src/check_dkim.c)
 * replaced it, with the same result mapping (RFC 8601 words, rsa-sha1 a
 * permerror by RFC 8301). tests/unit/test_dkim_diff.c compares the two.
 * Keys come only through a dkimv_txt_fn.
 *
 * Public:
 *   odkv_lib_new(), odkv_lib_set_txt_lookup(), odkv_lib_set_time(),
 *   odkv_lib_free(), odkv_new(), odkv_header(), odkv_eoh(), odkv_body(),
 *   odkv_eom(), odkv_nsigs(), odkv_sig(), odkv_best(), odkv_free()
 */

/* System. */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* Libraries. */
#include <dkim.h>

/* Project. */
#include "check_dkim.h"
#include "dkim_oracle.h"

/* Largest TXT answer we accept for a key name (all records). */
#define DKIMV_TXT_MAX 8192

struct odkv_lib {
	DKIM_LIB *lib;
	dkimv_txt_fn txt;
	void *txt_arg;
};

/* Why a key lookup did not hand a key to libopendkim. */
enum dkimv_mark {
	MARK_NONE = 0,
	MARK_TEMPFAIL,		/* DNS timeout or SERVFAIL */
	MARK_TOOLONG,		/* key record longer than libopendkim's buffer */
};

struct odkv {
	struct odkv_lib *lib;
	DKIM *dkim;
	DKIM_STAT status;	/* last libopendkim status */
	const char *phase;	/* where status came from */
	bool eoh_done, body_needed, finished, saw_signature;
	/* Key lookups that failed in a way libopendkim cannot record. */
	DKIM_SIGINFO *marked[DKIMV_MAX_SIGS];
	enum dkimv_mark mark[DKIMV_MAX_SIGS];
	size_t nmarked;
	struct dkimv_sig sigs[DKIMV_MAX_SIGS];
	size_t nsigs;
	enum dkimv_result best;
	size_t bestidx;
};

/* set_mark - remember why sig's key did not arrive. */
static void
set_mark(struct odkv *v, DKIM_SIGINFO *sig, enum dkimv_mark m)
{
	if (v->nmarked < DKIMV_MAX_SIGS) {
		v->marked[v->nmarked] = sig;
		v->mark[v->nmarked] = m;
		v->nmarked++;
	}
}

/* get_mark - the mark of sig, MARK_NONE when none. */
static enum dkimv_mark
get_mark(const struct odkv *v, const DKIM_SIGINFO *sig)
{
	size_t i;

	for (i = 0; i < v->nmarked; i++)
		if (v->marked[i] == sig)
			return v->mark[i];
	return MARK_NONE;
}

/* pick_key - the key record to use among several TXT records (RFC 6376
 * 3.6.2.2 lets the verifier choose): the first that says v=DKIM1, else
 * the first. Returns its start and sets *len. */
static const char *
pick_key(const char *recs, size_t *len)
{
	const char *p = recs, *first = recs;

	while (p != NULL && *p != '\0') {
		const char *q = p, *nl = strchr(p, '\n');

		while (*q == ' ' || *q == '\t')
			q++;
		if (strncmp(q, "v=DKIM1", 7) == 0) {
			*len = nl ? (size_t)(nl - p) : strlen(p);
			return p;
		}
		p = nl ? nl + 1 : NULL;
	}
	*len = strcspn(first, "\n");
	return first;
}

/* key_lookup - libopendkim's key callback: fetch sel._domainkey.domain. */
static DKIM_CBSTAT
key_lookup(DKIM *dkim, DKIM_SIGINFO *sig, u_char *buf, size_t buflen)
{
	struct odkv *v = dkim_get_user_context(dkim);
	const char *sel = (const char *)dkim_sig_getselector(sig);
	const char *dom = (const char *)dkim_sig_getdomain(sig);
	char name[512], *recs;
	const char *key;
	enum dkimv_txt_status ts;
	size_t len;
	int n;

	if (v == NULL || sel == NULL || dom == NULL)
		return DKIM_CBSTAT_NOTFOUND;
	n = snprintf(name, sizeof name, "%s._domainkey.%s", sel, dom);
	if (n < 0 || (size_t)n >= 254)
		return DKIM_CBSTAT_NOTFOUND;	/* no such name can exist */
	recs = malloc(DKIMV_TXT_MAX);
	if (recs == NULL) {
		set_mark(v, sig, MARK_TEMPFAIL);
		return DKIM_CBSTAT_ERROR;
	}
	ts = v->lib->txt(v->lib->txt_arg, name, recs, DKIMV_TXT_MAX);
	switch (ts) {
	case DKIMV_TXT_OK:
		break;
	case DKIMV_TXT_NOTFOUND:
		free(recs);
		return DKIM_CBSTAT_NOTFOUND;
	default:
		free(recs);
		set_mark(v, sig, MARK_TEMPFAIL);
		return DKIM_CBSTAT_ERROR;
	}
	key = pick_key(recs, &len);
	if (len + 1 > buflen) {
		free(recs);
		set_mark(v, sig, MARK_TOOLONG);
		return DKIM_CBSTAT_ERROR;
	}
	memcpy(buf, key, len);
	buf[len] = '\0';
	free(recs);
	return DKIM_CBSTAT_CONTINUE;
}

/* prescreen - ignore signatures beyond DKIMV_MAX_SIGS, so one message
 * cannot make us do an unbounded number of key lookups. */
static DKIM_CBSTAT
prescreen(DKIM *dkim, DKIM_SIGINFO **sigs, int nsigs)
{
	int i;

	for (i = DKIMV_MAX_SIGS; i < nsigs; i++)
		dkim_sig_ignore(sigs[i]);
	return DKIM_CBSTAT_CONTINUE;
}

/* odkv_lib_new - see dkim_oracle.h. */
struct odkv_lib *
odkv_lib_new(char *err, size_t errlen)
{
	struct odkv_lib *l;
	/* No DKIM_LIBFLAGS_BADSIGHANDLES: it also makes libopendkim ignore an
	 * unusable From: at end of header. Signatures it cannot parse at all
	 * are reported by collect() instead. */
	unsigned int flags = DKIM_LIBFLAGS_DELAYSIGPROC;
	unsigned int minbits = 1024;	/* RFC 8301 section 3.2 */

	l = calloc(1, sizeof *l);
	if (l == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	l->lib = dkim_init(NULL, NULL);
	if (l->lib == NULL) {
		snprintf(err, errlen, "dkim_init failed");
		free(l);
		return NULL;
	}
	if (!dkim_libfeature(l->lib, DKIM_FEATURE_ED25519) ||
	    !dkim_libfeature(l->lib, DKIM_FEATURE_SHA256)) {
		snprintf(err, errlen, "libopendkim lacks sha256 or ed25519 support");
		odkv_lib_free(l);
		return NULL;
	}
	if (dkim_options(l->lib, DKIM_OP_SETOPT, DKIM_OPTS_FLAGS, &flags, sizeof flags) !=
		DKIM_STAT_OK ||
	    dkim_options(l->lib, DKIM_OP_SETOPT, DKIM_OPTS_MINKEYBITS, &minbits,
			 sizeof minbits) != DKIM_STAT_OK) {
		snprintf(err, errlen, "dkim_options failed");
		odkv_lib_free(l);
		return NULL;
	}
	dkim_set_prescreen(l->lib, prescreen);
	dkim_set_key_lookup(l->lib, key_lookup);
	return l;
}

/* odkv_lib_set_txt_lookup - see dkim_oracle.h. */
void
odkv_lib_set_txt_lookup(struct odkv_lib *lib, dkimv_txt_fn fn, void *arg)
{
	lib->txt = fn;
	lib->txt_arg = arg;
	dkim_set_key_lookup(lib->lib, key_lookup);
}

/* odkv_lib_set_time - see dkim_oracle.h. */
void
odkv_lib_set_time(struct odkv_lib *lib, long long now)
{
	uint64_t t = (uint64_t)now;

	(void)dkim_options(lib->lib, DKIM_OP_SETOPT, DKIM_OPTS_FIXEDTIME, &t, sizeof t);
}

/* odkv_lib_free - see dkim_oracle.h. */
void
odkv_lib_free(struct odkv_lib *lib)
{
	if (lib == NULL)
		return;
	if (lib->lib != NULL)
		dkim_close(lib->lib);
	free(lib);
}

/* odkv_new - see dkim_oracle.h. */
struct odkv *
odkv_new(struct odkv_lib *lib, const char *id)
{
	struct odkv *v;
	DKIM_STAT st = DKIM_STAT_OK;

	v = calloc(1, sizeof *v);
	if (v == NULL)
		return NULL;
	v->lib = lib;
	v->phase = "header";
	v->dkim = dkim_verify(lib->lib, (const unsigned char *)(id ? id : "ravelin"), NULL, &st);
	if (v->dkim == NULL) {
		free(v);
		return NULL;
	}
	dkim_set_user_context(v->dkim, v);
	return v;
}

/* failed - libopendkim gave up on the message; keep the first reason. */
static void
failed(struct odkv *v, DKIM_STAT st, const char *phase)
{
	if (!v->finished) {
		v->status = st;
		v->phase = phase;
		v->finished = true;
	}
}

/* odkv_header - see dkim_oracle.h. */
void
odkv_header(struct odkv *v, const char *field, size_t len)
{
	DKIM_STAT st;

	if (v->finished || v->eoh_done)
		return;
	if (len >= 15 && strncasecmp(field, "DKIM-Signature", 14) == 0 &&
	    (field[14] == ':' || field[14] == ' ' || field[14] == '\t'))
		v->saw_signature = true;
	if (len == 0)
		return;
	/*
	 * A field libopendkim refuses (a malformed DKIM-Signature, an odd
	 * field name) is not the end of the message: other signatures may
	 * still verify; collect() reports a permerror when none could be
	 * listed at all. Only running out of memory stops us.
	 */
	st = dkim_header(v->dkim, (u_char *)field, len);
	if (st == DKIM_STAT_NORESOURCE || st == DKIM_STAT_INTERNAL)
		failed(v, st, "header");
}

/* odkv_eoh - see dkim_oracle.h. */
bool
odkv_eoh(struct odkv *v)
{
	DKIM_STAT st;

	if (v->finished || v->eoh_done)
		return v->body_needed;
	v->eoh_done = true;
	st = dkim_eoh(v->dkim);
	v->status = st;
	v->phase = "eoh";
	if (st == DKIM_STAT_OK) {
		v->body_needed = true;
	} else {
		/* NOSIG, or the header is unusable (SYNTAX, INVALID, ...). */
		v->finished = true;
	}
	return v->body_needed;
}

/* odkv_body - see dkim_oracle.h. */
void
odkv_body(struct odkv *v, const unsigned char *buf, size_t len)
{
	DKIM_STAT st;

	if (v->finished || !v->body_needed || len == 0)
		return;
	st = dkim_body(v->dkim, (u_char *)buf, len);
	if (st != DKIM_STAT_OK)
		failed(v, st, "body");
}

/* copy_tag - copy a tag value without white space (folded b= values),
 * at most n-1 characters. */
static void
copy_tag(char *dst, size_t n, const unsigned char *src)
{
	size_t o = 0;

	dst[0] = '\0';
	if (src == NULL || n == 0)
		return;
	for (; *src && o + 1 < n; src++)
		if (!isspace(*src) && *src >= 0x21 && *src < 0x7f)
			dst[o++] = (char)*src;
	dst[o] = '\0';
}

/* map_sig - libopendkim's verdict on one signature, in RFC 8601 terms. */
static void
map_sig(struct odkv *v, DKIM_SIGINFO *sig, struct dkimv_sig *out)
{
	unsigned int flags = dkim_sig_getflags(sig);
	int error = dkim_sig_geterror(sig), bh = dkim_sig_getbh(sig);
	dkim_alg_t alg = DKIM_SIGN_UNKNOWN;
	enum dkimv_mark mark = get_mark(v, sig);
	const char *es;

	memset(out, 0, sizeof *out);
	copy_tag(out->domain, sizeof out->domain, dkim_sig_getdomain(sig));
	copy_tag(out->selector, sizeof out->selector, dkim_sig_getselector(sig));
	copy_tag(out->b, sizeof out->b, dkim_sig_gettagvalue(sig, 0, (u_char *)"b"));
	copy_tag(out->algorithm, sizeof out->algorithm,
		 dkim_sig_gettagvalue(sig, 0, (u_char *)"a"));
	(void)dkim_sig_getsignalg(sig, &alg);

	if (mark == MARK_TEMPFAIL) {
		out->result = DKIMV_TEMPERROR;
		snprintf(out->reason, sizeof out->reason, "key lookup failed temporarily");
	} else if (mark == MARK_TOOLONG) {
		out->result = DKIMV_PERMERROR;
		snprintf(out->reason, sizeof out->reason, "key record too long");
	} else if (error == DKIM_SIGERROR_OK && (flags & DKIM_SIGFLAG_PASSED) &&
		   bh == DKIM_SIGBH_MATCH) {
		if (alg == DKIM_SIGN_RSASHA1) {
			out->result = DKIMV_PERMERROR;
			snprintf(out->reason, sizeof out->reason,
				 "rsa-sha1 not accepted (RFC 8301)");
		} else {
			out->result = DKIMV_PASS;
		}
	} else if (error == DKIM_SIGERROR_BADSIG) {
		out->result = DKIMV_FAIL;
		snprintf(out->reason, sizeof out->reason, "%s",
			 bh == DKIM_SIGBH_MISMATCH ? "body hash did not verify"
						   : "signature did not verify");
	} else if (error == DKIM_SIGERROR_KEYFAIL) {
		out->result = DKIMV_TEMPERROR;
		snprintf(out->reason, sizeof out->reason, "key lookup failed temporarily");
	} else if (error == DKIM_SIGERROR_UNKNOWN || error == DKIM_SIGERROR_OK) {
		/* Never processed: libopendkim stopped early (out of memory,
		 * internal error); a later attempt may succeed. */
		out->result = DKIMV_TEMPERROR;
		snprintf(out->reason, sizeof out->reason, "not verified");
	} else {
		out->result = DKIMV_PERMERROR;
		es = dkim_sig_geterrorstr(error);
		snprintf(out->reason, sizeof out->reason, "%s", es ? es : "invalid signature");
	}
}

/* collect - turn libopendkim's signature list into our results. */
static void
collect(struct odkv *v)
{
	DKIM_SIGINFO **sigs = NULL;
	int n = 0, i;

	v->nsigs = 0;
	v->best = DKIMV_NONE;
	if (dkim_getsiglist(v->dkim, &sigs, &n) == DKIM_STAT_OK && sigs != NULL) {
		for (i = 0; i < n && v->nsigs < DKIMV_MAX_SIGS; i++) {
			if (dkim_sig_getflags(sigs[i]) & DKIM_SIGFLAG_IGNORE)
				continue;
			map_sig(v, sigs[i], &v->sigs[v->nsigs++]);
		}
	}
	/* DKIM-Signature fields but none libopendkim could list (all
	 * malformed, or the header block unusable, e.g. no From:): report
	 * one permerror rather than "none". */
	if (v->nsigs == 0 && v->saw_signature) {
		struct dkimv_sig *s = &v->sigs[v->nsigs++];
		const char *why = dkim_getresultstr(v->status);

		memset(s, 0, sizeof *s);
		s->result = DKIMV_PERMERROR;
		if (v->status == DKIM_STAT_NOSIG)
			why = "malformed signature";
		snprintf(s->reason, sizeof s->reason, "%s", why ? why : "unusable message");
	}
	for (i = 0; i < (int)v->nsigs; i++) {
		if (v->sigs[i].result > v->best) {
			v->best = v->sigs[i].result;
			v->bestidx = (size_t)i;
		}
	}
}

/* odkv_eom - see dkim_oracle.h. */
void
odkv_eom(struct odkv *v)
{
	DKIM_STAT st;

	if (!v->eoh_done)
		(void)odkv_eoh(v);
	if (!v->finished) {
		st = dkim_eom(v->dkim, NULL);
		v->status = st;
		v->phase = "eom";
		v->finished = true;
	}
	collect(v);
}

/* odkv_nsigs - see dkim_oracle.h. */
size_t
odkv_nsigs(const struct odkv *v)
{
	return v->nsigs;
}

/* odkv_sig - see dkim_oracle.h. */
const struct dkimv_sig *
odkv_sig(const struct odkv *v, size_t i)
{
	return i < v->nsigs ? &v->sigs[i] : NULL;
}

/* odkv_best - see dkim_oracle.h. */
enum dkimv_result
odkv_best(const struct odkv *v, const char **domain)
{
	if (domain != NULL)
		*domain = v->best != DKIMV_NONE ? v->sigs[v->bestidx].domain : "";
	return v->best;
}

/* status_name - DKIM_STAT_* constant name. */
static const char *
status_name(DKIM_STAT st)
{
	static const struct {
		DKIM_STAT st;
		const char *name;
	} names[] = {
		{ DKIM_STAT_OK, "DKIM_STAT_OK" },
		{ DKIM_STAT_BADSIG, "DKIM_STAT_BADSIG" },
		{ DKIM_STAT_NOSIG, "DKIM_STAT_NOSIG" },
		{ DKIM_STAT_NOKEY, "DKIM_STAT_NOKEY" },
		{ DKIM_STAT_CANTVRFY, "DKIM_STAT_CANTVRFY" },
		{ DKIM_STAT_SYNTAX, "DKIM_STAT_SYNTAX" },
		{ DKIM_STAT_NORESOURCE, "DKIM_STAT_NORESOURCE" },
		{ DKIM_STAT_INTERNAL, "DKIM_STAT_INTERNAL" },
		{ DKIM_STAT_REVOKED, "DKIM_STAT_REVOKED" },
		{ DKIM_STAT_INVALID, "DKIM_STAT_INVALID" },
		{ DKIM_STAT_NOTIMPLEMENT, "DKIM_STAT_NOTIMPLEMENT" },
		{ DKIM_STAT_KEYFAIL, "DKIM_STAT_KEYFAIL" },
		{ DKIM_STAT_CBREJECT, "DKIM_STAT_CBREJECT" },
		{ DKIM_STAT_CBINVALID, "DKIM_STAT_CBINVALID" },
		{ DKIM_STAT_CBTRYAGAIN, "DKIM_STAT_CBTRYAGAIN" },
		{ DKIM_STAT_CBERROR, "DKIM_STAT_CBERROR" },
		{ DKIM_STAT_MULTIDNSREPLY, "DKIM_STAT_MULTIDNSREPLY" },
		{ DKIM_STAT_SIGGEN, "DKIM_STAT_SIGGEN" },
	};
	size_t i;

	for (i = 0; i < sizeof names / sizeof names[0]; i++)
		if (names[i].st == st)
			return names[i].name;
	return "DKIM_STAT_UNKNOWN";
}

/* odkv_status - see dkim_oracle.h. */
const char *
odkv_status(const struct odkv *v, const char **phase)
{
	if (phase != NULL)
		*phase = v->phase;
	return status_name(v->status);
}

/* odkv_free - see dkim_oracle.h. */
void
odkv_free(struct odkv *v)
{
	if (v == NULL)
		return;
	if (v->dkim != NULL)
		dkim_free(v->dkim);
	free(v);
}
