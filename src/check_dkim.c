/*
 * check_dkim.c - DKIM verification (RFC 6376, RFC 8301, RFC 8463) on
 * OpenSSL.
 *
 * One verifier per message, fed field by field and chunk by chunk as the
 * message streams in. At end of header the DKIM-Signature fields are
 * parsed; the body is canonicalised once per form in use (simple,
 * relaxed) and hashed per signature, up to its l=. At end of message the
 * keys are fetched through a TXT lookup function (by default ravelin's
 * resolver, under one time budget per message), the signed header fields
 * are picked bottom-up and hashed, and the signature is checked with
 * EVP. Key records are checked by dkim_keyrec.c; decoded keys and RSA
 * verification contexts come from dkim_keycache.c.
 *
 * This replaced libopendkim, whose octet-by-octet canonicalisation cost
 * more than the RSA verification itself; libopendkim is still the
 * reference the unit tests compare every result with
 * (tests/unit/test_dkim_diff.c).
 *
 * Public:
 *   dkimv_lib_new(), dkimv_lib_set_txt_lookup(), dkimv_lib_set_time(),
 *   dkimv_lib_free(), dkimv_new(), dkimv_header(), dkimv_eoh(),
 *   dkimv_body(), dkimv_eom(), dkimv_nsigs(), dkimv_sig(), dkimv_best(),
 *   dkimv_free(), dkimv_result_str()
 */

/* System. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* Libraries. */
#include <openssl/evp.h>

/* Project. */
#include "check_dkim.h"
#include "dkim_canon.h"
#include "dkim_keycache.h"
#include "dkim_keyrec.h"
#include "dns.h"
#include "fmt.h"

/* Total time one message's key lookups may take (all signatures). */
#define DKIMV_BUDGET_MS 30000
/* Largest TXT answer we accept for a key name (all records). */
#define DKIMV_TXT_MAX 8192
/* Header bytes and fields kept for hashing; beyond, signatures fail. */
#define DKIMV_HDR_MAX (1024 * 1024)
#define DKIMV_FIELDS_MAX 2000
/* Names in one h= (oversigning lists a name more than once). */
#define DKIMV_HNAMES_MAX 128
/* Tags in one signature or key record. */
#define DKIMV_TAGS_MAX 32
/* Signatures of up to 8192-bit RSA keys. */
#define DKIMV_SIG_MAX 1024
/* Seconds a signature's t= may lie in the future (libopendkim's default). */
#define DKIMV_CLOCK_DRIFT 300

struct dkimv_lib {
	struct dns *dns;
	dkimv_txt_fn txt;
	void *txt_arg;
	long long now;		/* fixed clock, 0: the real one */
	char *keyfile;		/* "name<WSP>record" lines, or NULL */
	/* Fetched once: EVP_sha256() makes OpenSSL 3 look the digest up
	 * in its provider store (under a lock) at every use. */
	EVP_MD *sha1, *sha256;
};

/* One header field as received: its place in dkimv.hdr. */
struct field {
	uint32_t off, len, namelen;
};

/* A signature being verified. */
struct sig {
	struct dkimv_sig *out;
	bool done;		/* out->result is final */
	bool sha1, ed25519, hrelaxed, brelaxed, has_l, has_i;
	uint32_t field;		/* its DKIM-Signature field */
	uint32_t bstart, bend;	/* its b= value, as offsets in the field */
	uint64_t l, hashed;
	long long t, x;		/* -1: absent */
	char d[256], s[256], idom[256];
	size_t nh;
	uint32_t hoff[DKIMV_HNAMES_MAX];	/* h= names, in hnames */
	uint8_t hlen[DKIMV_HNAMES_MAX];
	char hnames[1024];
	unsigned char b[DKIMV_SIG_MAX], bh[EVP_MAX_MD_SIZE];
	size_t blen, bhlen;
	/* The body hash: computed by the first signature with the same
	 * form, digest and l= (body points to it), so sixteen signatures
	 * over one body cost one hash, not sixteen. */
	struct sig *body;
	EVP_MD_CTX *md;		/* only in the one that computes */
	unsigned char bhcalc[EVP_MAX_MD_SIZE];
	unsigned bhcalclen;
};

struct dkimv {
	struct dkimv_lib *lib;
	char *hdr;
	size_t hdrlen, hdrcap, maxfield;
	struct field *fields;
	size_t nfields, fieldcap;
	bool overflow;		/* header too large to keep */
	bool eoh_done, body_needed, finished, saw_signature;
	bool canon_used[2];	/* simple, relaxed */
	struct timespec deadline;
	struct sig *sig;
	size_t nsig;
	/* Not zeroed by dkimv_new(): written before they are read. */
	struct dkimv_sig sigs[DKIMV_MAX_SIGS];
	size_t nsigs;
	enum dkimv_result best;
	size_t bestidx;
	struct dkim_body canon[2];
};

/* dkimv_result_str - see check_dkim.h. */
const char *
dkimv_result_str(enum dkimv_result r)
{
	switch (r) {
	case DKIMV_PASS:
		return "pass";
	case DKIMV_FAIL:
		return "fail";
	case DKIMV_TEMPERROR:
		return "temperror";
	case DKIMV_PERMERROR:
		return "permerror";
	case DKIMV_NONE:
		break;
	}
	return "none";
}

/* dns_txt_until - TXT lookup through ravelin's resolver, never past
 * deadline (NULL: only the resolver's own timeout). */
static enum dkimv_txt_status
dns_txt_until(struct dns *dns, const struct timespec *deadline, const char *name, char *out,
	      size_t outlen)
{
	switch (dns_txt_text(dns, name, deadline, out, outlen)) {
	case DNS_OK:
		return DKIMV_TXT_OK;
	case DNS_NXDOMAIN:
	case DNS_NODATA:
	case DNS_BADNAME:
		return DKIMV_TXT_NOTFOUND;
	default:
		return DKIMV_TXT_TEMPFAIL;
	}
}

/* dns_txt - the default TXT lookup (a dkimv_txt_fn): ravelin's resolver. */
static enum dkimv_txt_status
dns_txt(void *arg, const char *name, char *out, size_t outlen)
{
	return dns_txt_until(arg, NULL, name, out, outlen);
}

/* file_txt - a dkimv_txt_fn over the key file's lines. */
static enum dkimv_txt_status
file_txt(void *arg, const char *name, char *out, size_t outlen)
{
	const char *p = arg;
	size_t nl = strlen(name);

	while (p != NULL && *p != '\0') {
		const char *eol = strchr(p, '\n'), *end = eol ? eol : p + strlen(p);

		if ((size_t)(end - p) > nl && strncasecmp(p, name, nl) == 0 &&
		    (p[nl] == ' ' || p[nl] == '\t')) {
			const char *r = p + nl;

			while (r < end && (*r == ' ' || *r == '\t'))
				r++;
			fmt_snprintf(out, outlen, "%.*s", (int)(end - r), r);
			return DKIMV_TXT_OK;
		}
		p = eol ? eol + 1 : NULL;
	}
	return DKIMV_TXT_NOTFOUND;
}

/* read_keyfile - the whole key file, NUL-terminated, or NULL. */
static char *
read_keyfile(const char *path)
{
	FILE *f = fopen(path, "r");
	char *buf = NULL;
	size_t len = 0, cap = 0, n;

	if (f == NULL)
		return NULL;
	do {
		if (cap - len < 4096) {
			char *nb = realloc(buf, cap + 65536);

			if (nb == NULL) {
				free(buf);
				fclose(f);
				return NULL;
			}
			buf = nb;
			cap += 65536;
		}
		n = fread(buf + len, 1, cap - len - 1, f);
		len += n;
	} while (n > 0 && len < 16 * 1024 * 1024);
	fclose(f);
	buf[len] = '\0';
	return buf;
}

/* dkimv_lib_new - see check_dkim.h. */
struct dkimv_lib *
dkimv_lib_new(struct dns *dns, const char *keyfile, char *err, size_t errlen)
{
	struct dkimv_lib *l = calloc(1, sizeof *l);

	if (l == NULL) {
		fmt_snprintf(err, errlen, "out of memory");
		return NULL;
	}
	l->dns = dns;
	l->txt = dns_txt;
	l->txt_arg = dns;
	l->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
	l->sha1 = EVP_MD_fetch(NULL, "SHA1", NULL);
	if (l->sha256 == NULL || l->sha1 == NULL) {
		fmt_snprintf(err, errlen, "OpenSSL has no SHA-256 or SHA-1");
		dkimv_lib_free(l);
		return NULL;
	}
	if (keyfile != NULL) {
		if ((l->keyfile = read_keyfile(keyfile)) == NULL) {
			fmt_snprintf(err, errlen, "cannot read key file %s", keyfile);
			dkimv_lib_free(l);
			return NULL;
		}
		l->txt = file_txt;
		l->txt_arg = l->keyfile;
	}
	return l;
}

/* dkimv_lib_set_txt_lookup - see check_dkim.h. */
void
dkimv_lib_set_txt_lookup(struct dkimv_lib *lib, dkimv_txt_fn fn, void *arg)
{
	lib->txt = fn;
	lib->txt_arg = arg;
}

/* dkimv_lib_set_time - see check_dkim.h. */
void
dkimv_lib_set_time(struct dkimv_lib *lib, long long now)
{
	lib->now = now;
}

/* dkimv_lib_free - see check_dkim.h. */
void
dkimv_lib_free(struct dkimv_lib *lib)
{
	if (lib == NULL)
		return;
	free(lib->keyfile);
	EVP_MD_free(lib->sha1);
	EVP_MD_free(lib->sha256);
	free(lib);
	/* Only caches: the next verification decodes its key again. */
	dkim_keycache_clear();
	dkim_keycache_thread_clear();
}

/* dkimv_new - see check_dkim.h. */
struct dkimv *
dkimv_new(struct dkimv_lib *lib, const char *id)
{
	struct dkimv *v = malloc(sizeof *v);

	(void)id;
	if (v == NULL)
		return NULL;
	memset(v, 0, offsetof(struct dkimv, sigs));
	v->nsigs = 0;
	v->best = DKIMV_NONE;
	v->bestidx = 0;
	v->lib = lib;
	return v;
}

/* dkimv_header - see check_dkim.h. */
void
dkimv_header(struct dkimv *v, const char *field, size_t len)
{
	const char *colon;

	if (v->eoh_done || len == 0)
		return;
	if (len >= 15 && strncasecmp(field, "DKIM-Signature", 14) == 0 &&
	    (field[14] == ':' || field[14] == ' ' || field[14] == '\t'))
		v->saw_signature = true;
	if (v->overflow || len > DKIMV_HDR_MAX - v->hdrlen || v->nfields == DKIMV_FIELDS_MAX) {
		v->overflow = true;
		return;
	}
	if (v->hdrlen + len > v->hdrcap) {
		size_t cap = v->hdrcap ? v->hdrcap : 4096;
		char *nb;

		while (cap < v->hdrlen + len)
			cap *= 2;
		if ((nb = realloc(v->hdr, cap)) == NULL) {
			v->overflow = true;
			return;
		}
		v->hdr = nb;
		v->hdrcap = cap;
	}
	if (v->nfields == v->fieldcap) {
		size_t cap = v->fieldcap ? v->fieldcap * 2 : 32;
		struct field *nf = realloc(v->fields, cap * sizeof *nf);

		if (nf == NULL) {
			v->overflow = true;
			return;
		}
		v->fields = nf;
		v->fieldcap = cap;
	}
	memcpy(v->hdr + v->hdrlen, field, len);
	colon = memchr(field, ':', len);
	size_t nl = colon ? (size_t)(colon - field) : len;

	while (nl > 0 && (field[nl - 1] == ' ' || field[nl - 1] == '\t'))
		nl--;	/* "From :" is From (OpenDKIM's t-test80) */
	v->fields[v->nfields++] = (struct field){ (uint32_t)v->hdrlen, (uint32_t)len, (uint32_t)nl };
	v->hdrlen += len;
	if (len > v->maxfield)
		v->maxfield = len;
}

/* field_is - whether field i is called name (case-insensitive). */
static bool
field_is(const struct dkimv *v, size_t i, const char *name, size_t nl)
{
	return v->fields[i].namelen == nl && strncasecmp(v->hdr + v->fields[i].off, name, nl) == 0;
}

/* sig_md - the digest of s's a=. */
static const EVP_MD *
sig_md(const struct dkimv *v, const struct sig *s)
{
	return s->sha1 ? v->lib->sha1 : v->lib->sha256;
}

/* fail_sig - a final result for s, with a reason. */
static void
fail_sig(struct sig *s, enum dkimv_result r, const char *reason)
{
	if (s->done)
		return;
	s->done = true;
	s->out->result = r;
	fmt_snprintf(s->out->reason, sizeof s->out->reason, "%s", reason);
}

/* parse_num - a decimal tag value; huge values saturate (t-test78). */
static bool
parse_num(const struct dkim_tag *t, uint64_t *out)
{
	uint64_t n = 0;

	if (t->valuelen == 0 || t->valuelen > 76)
		return false;
	for (size_t i = 0; i < t->valuelen; i++) {
		unsigned d = (unsigned char)t->value[i] - '0';

		if (d > 9)
			return false;
		n = n > (UINT64_MAX - d) / 10 ? UINT64_MAX : n * 10 + d;
	}
	*out = n;
	return true;
}

/* domain_within - whether sub is dom or a subdomain of it. */
static bool
domain_within(const char *sub, const char *dom)
{
	size_t ls = strlen(sub), ld = strlen(dom);

	if (ls == ld)
		return strcasecmp(sub, dom) == 0;
	return ls > ld && sub[ls - ld - 1] == '.' && strcasecmp(sub + ls - ld, dom) == 0;
}

/* parse_h - the h= list into s->hnames; why it is unusable, or NULL. */
static const char *
parse_h(struct sig *s, const struct dkim_tag *t)
{
	bool from = false;

	if (!dkim_compact(s->hnames, sizeof s->hnames, t->value, t->valuelen))
		return "h= too long";
	for (const char *p = s->hnames;;) {
		const char *e = strchr(p, ':');
		size_t n = e ? (size_t)(e - p) : strlen(p);

		if (n == 0 || n > 255)
			return "h= malformed";
		if (s->nh == DKIMV_HNAMES_MAX)
			return "h= too long";
		s->hoff[s->nh] = (uint32_t)(p - s->hnames);
		s->hlen[s->nh++] = (uint8_t)n;
		if (n == 4 && strncasecmp(p, "from", 4) == 0)
			from = true;
		if (e == NULL)
			break;
		p = e + 1;
	}
	return from ? NULL : "From: not signed";
}

/* first_chars - the first n-1 characters of a value without FWS (header.b). */
static void
first_chars(char *dst, size_t n, const char *src, size_t len)
{
	size_t o = 0;

	for (size_t i = 0; i < len && o + 1 < n; i++)
		if ((unsigned char)src[i] > ' ' && src[i] != 0x7f)
			dst[o++] = src[i];
	dst[o] = '\0';
}

/* parse_sig - one DKIM-Signature field; returns why it is unusable, or NULL. */
static const char *
parse_sig(struct dkimv *v, struct sig *s)
{
	const struct field *f = &v->fields[s->field];
	const char *val = v->hdr + f->off + f->namelen;
	size_t vlen = f->len - f->namelen, n;
	struct dkim_tag tags[DKIMV_TAGS_MAX];
	const struct dkim_tag *t;
	char a[32], buf[256];
	uint64_t num;

	val = memchr(val, ':', vlen);
	if (val == NULL)
		return "malformed signature";
	val++;
	vlen = f->len - (size_t)(val - (v->hdr + f->off));
	if (dkim_tags_parse(val, vlen, tags, DKIMV_TAGS_MAX, &n) != DKIM_TAGS_OK)
		return "malformed signature";
	/* What the results show, first: even an unusable signature has a d=. */
	if ((t = dkim_tag_find(tags, n, "d")) != NULL &&
	    dkim_compact(s->d, sizeof s->d, t->value, t->valuelen))
		fmt_snprintf(s->out->domain, sizeof s->out->domain, "%s", s->d);
	if ((t = dkim_tag_find(tags, n, "s")) != NULL &&
	    dkim_compact(s->s, sizeof s->s, t->value, t->valuelen))
		fmt_snprintf(s->out->selector, sizeof s->out->selector, "%s", s->s);
	if ((t = dkim_tag_find(tags, n, "b")) != NULL)
		first_chars(s->out->b, sizeof s->out->b, t->value, t->valuelen);
	if ((t = dkim_tag_find(tags, n, "a")) != NULL)
		(void)dkim_compact(s->out->algorithm, sizeof s->out->algorithm, t->value,
				   t->valuelen);
	if (dkim_tag_find(tags, n, "v") == NULL || dkim_tag_find(tags, n, "a") == NULL ||
	    dkim_tag_find(tags, n, "b") == NULL || dkim_tag_find(tags, n, "bh") == NULL ||
	    dkim_tag_find(tags, n, "d") == NULL || dkim_tag_find(tags, n, "h") == NULL ||
	    dkim_tag_find(tags, n, "s") == NULL)
		return "missing required tag";
	t = dkim_tag_find(tags, n, "v");
	if (t->valuelen != 1 || t->value[0] != '1')
		return "unsupported version";
	if (s->d[0] == '\0' || s->s[0] == '\0' || strlen(s->d) > 253)
		return "bad d= or s=";
	if (!dkim_compact(a, sizeof a, dkim_tag_find(tags, n, "a")->value,
			  dkim_tag_find(tags, n, "a")->valuelen))
		return "unknown algorithm";
	if (strcasecmp(a, "rsa-sha256") == 0) {
	} else if (strcasecmp(a, "ed25519-sha256") == 0) {
		s->ed25519 = true;
	} else if (strcasecmp(a, "rsa-sha1") == 0) {
		s->sha1 = true;
	} else {
		return "unknown algorithm";
	}
	if ((t = dkim_tag_find(tags, n, "c")) != NULL) {
		char *slash;

		if (!dkim_compact(buf, sizeof buf, t->value, t->valuelen))
			return "bad c=";
		slash = strchr(buf, '/');
		if (slash != NULL)
			*slash++ = '\0';
		if (strcasecmp(buf, "relaxed") == 0)
			s->hrelaxed = true;
		else if (strcasecmp(buf, "simple") != 0)
			return "bad c=";
		if (slash != NULL && strcasecmp(slash, "relaxed") == 0)
			s->brelaxed = true;
		else if (slash != NULL && strcasecmp(slash, "simple") != 0)
			return "bad c=";
	}
	if ((t = dkim_tag_find(tags, n, "q")) != NULL) {
		bool ok = false;

		if (!dkim_compact(buf, sizeof buf, t->value, t->valuelen))
			return "bad q=";
		for (char *save = NULL, *m = strtok_r(buf, ":", &save); m;
		     m = strtok_r(NULL, ":", &save))
			ok = ok || strcasecmp(m, "dns/txt") == 0;
		if (!ok)
			return "no dns/txt in q=";
	}
	t = dkim_tag_find(tags, n, "h");
	const char *why = parse_h(s, t);

	if (why != NULL)
		return why;
	t = dkim_tag_find(tags, n, "bh");
	if (!dkim_b64_decode(t->value, t->valuelen, s->bh, sizeof s->bh, &s->bhlen) ||
	    s->bhlen == 0)
		return "bad bh=";
	t = dkim_tag_find(tags, n, "b");
	if (!dkim_b64_decode(t->value, t->valuelen, s->b, sizeof s->b, &s->blen) || s->blen == 0)
		return "bad b=";
	s->bstart = (uint32_t)((size_t)(val - (v->hdr + f->off)) + t->vstart);
	s->bend = (uint32_t)((size_t)(val - (v->hdr + f->off)) + t->vend);
	if ((t = dkim_tag_find(tags, n, "i")) != NULL) {
		char *at;

		if (!dkim_compact(buf, sizeof buf, t->value, t->valuelen) ||
		    (at = strrchr(buf, '@')) == NULL)
			return "bad i=";
		fmt_snprintf(s->idom, sizeof s->idom, "%s", at + 1);
		s->has_i = true;
		if (!domain_within(s->idom, s->d))
			return "i= not within d=";
	}
	if ((t = dkim_tag_find(tags, n, "l")) != NULL) {
		if (!parse_num(t, &s->l))
			return "bad l=";
		s->has_l = true;
	}
	s->t = s->x = -1;
	if ((t = dkim_tag_find(tags, n, "t")) != NULL) {
		if (!parse_num(t, &num))
			return "bad t=";
		s->t = num > INT64_MAX ? INT64_MAX : (long long)num;
	}
	if ((t = dkim_tag_find(tags, n, "x")) != NULL) {
		if (!parse_num(t, &num))
			return "bad x=";
		s->x = num > INT64_MAX ? INT64_MAX : (long long)num;
	}
	long long now = v->lib->now ? v->lib->now : (long long)time(NULL);

	if (s->x >= 0 && s->t >= 0 && s->x < s->t)
		return "x= before t=";
	if (s->x >= 0 && s->x < now)
		return "signature expired";
	if (s->t >= 0 && s->t > now + DKIMV_CLOCK_DRIFT)
		return "signature in the future";
	return NULL;
}

/* body_sink - canonical body octets of one form to its signatures' hashes. */
static void
body_sink(struct dkimv *v, bool relaxed, const unsigned char *buf, size_t len)
{
	for (size_t i = 0; i < v->nsig; i++) {
		struct sig *s = &v->sig[i];
		size_t k = len;

		if (s->md == NULL || s->brelaxed != relaxed)
			continue;
		if (s->has_l && s->l - s->hashed < k)
			k = (size_t)(s->l - s->hashed);
		if (k > 0)
			(void)EVP_DigestUpdate(s->md, buf, k);
		s->hashed += k;
	}
}

/* sink_simple - a dkim_body_sink for the simple form. */
static void
sink_simple(void *arg, const unsigned char *buf, size_t len)
{
	body_sink(arg, false, buf, len);
}

/* sink_relaxed - a dkim_body_sink for the relaxed form. */
static void
sink_relaxed(void *arg, const unsigned char *buf, size_t len)
{
	body_sink(arg, true, buf, len);
}

/* has_from - a From: field with an address (libopendkim refuses a
 * message without one, and so does DMARC). */
static bool
has_from(const struct dkimv *v)
{
	for (size_t i = 0; i < v->nfields; i++)
		if (field_is(v, i, "From", 4)) {
			const struct field *f = &v->fields[i];

			return memchr(v->hdr + f->off, '@', f->len) != NULL;
		}
	return false;
}

/* dkimv_eoh - see check_dkim.h. */
bool
dkimv_eoh(struct dkimv *v)
{
	size_t i, n = 0;

	if (v->eoh_done)
		return v->body_needed;
	v->eoh_done = true;
	for (i = 0; i < v->nfields; i++)
		if (field_is(v, i, "DKIM-Signature", 14) && n < DKIMV_MAX_SIGS)
			n++;
	if (n == 0 && v->saw_signature && v->overflow)
		n = 1;	/* signed, but the fields did not fit: report it */
	if (n == 0)
		return false;
	if ((v->sig = calloc(n, sizeof *v->sig)) == NULL) {
		v->finished = true;	/* results: temperror, below */
		return false;
	}
	for (i = 0; i < n; i++) {
		v->sig[i].out = &v->sigs[i];
		memset(v->sig[i].out, 0, sizeof *v->sig[i].out);
	}
	for (i = 0; i < v->nfields && v->nsig < n; i++) {
		if (!field_is(v, i, "DKIM-Signature", 14))
			continue;
		struct sig *s = &v->sig[v->nsig++];

		s->field = (uint32_t)i;
		const char *why = parse_sig(v, s);

		if (why != NULL)
			fail_sig(s, DKIMV_PERMERROR, why);
	}
	if (v->nsig == 0)
		fail_sig(&v->sig[v->nsig++], DKIMV_PERMERROR, "header too large");
	bool from = has_from(v);

	for (i = 0; i < v->nsig; i++) {
		struct sig *s = &v->sig[i];

		if (v->overflow)
			fail_sig(s, DKIMV_PERMERROR, "header too large");
		else if (!from)
			fail_sig(s, DKIMV_PERMERROR, "no usable From: field");
		if (s->done)
			continue;
		for (size_t j = 0; j < i && s->body == NULL; j++) {
			struct sig *o = &v->sig[j];

			if (o->md != NULL && o->brelaxed == s->brelaxed && o->sha1 == s->sha1 &&
			    o->has_l == s->has_l && (!s->has_l || o->l == s->l))
				s->body = o;
		}
		if (s->body == NULL) {
			s->body = s;
			s->md = EVP_MD_CTX_new();
			if (s->md == NULL || !EVP_DigestInit_ex(s->md, sig_md(v, s), NULL)) {
				fail_sig(s, DKIMV_TEMPERROR, "out of memory");
				EVP_MD_CTX_free(s->md);
				s->md = NULL;
				s->body = NULL;
				continue;
			}
		}
		v->canon_used[s->brelaxed] = true;
		v->body_needed = true;
	}
	if (v->canon_used[0])
		dkim_body_init(&v->canon[0], false, sink_simple, v);
	if (v->canon_used[1])
		dkim_body_init(&v->canon[1], true, sink_relaxed, v);
	return v->body_needed;
}

/* dkimv_body - see check_dkim.h. */
void
dkimv_body(struct dkimv *v, const unsigned char *buf, size_t len)
{
	if (!v->body_needed || v->finished || len == 0)
		return;
	for (int r = 0; r < 2; r++)
		if (v->canon_used[r])
			dkim_body_feed(&v->canon[r], buf, len);
}

/* get_key - fetch and check s's key record; NULL with s done on failure. */
static EVP_PKEY *
get_key(struct dkimv *v, struct sig *s)
{
	char name[512], *recs;
	EVP_PKEY *pkey = NULL;
	const char *why = NULL;
	enum dkimv_txt_status ts;
	int r;

	r = fmt_snprintf(name, sizeof name, "%s._domainkey.%s", s->s, s->d);
	if (r < 0 || (size_t)r > 253) {
		fail_sig(s, DKIMV_PERMERROR, "key name too long");
		return NULL;
	}
	if ((recs = malloc(DKIMV_TXT_MAX)) == NULL) {
		fail_sig(s, DKIMV_TEMPERROR, "out of memory");
		return NULL;
	}
	/* Our own resolver gets the message's deadline too. */
	if (v->lib->txt == dns_txt)
		ts = dns_txt_until(v->lib->dns, &v->deadline, name, recs, DKIMV_TXT_MAX);
	else
		ts = v->lib->txt(v->lib->txt_arg, name, recs, DKIMV_TXT_MAX);

	if (ts == DKIMV_TXT_OK) {
		struct dkim_keyreq req = { s->sha1, s->ed25519, s->d, s->has_i ? s->idom : NULL };

		why = dkim_keyrec_use(recs, &req, &pkey);
	} else if (ts == DKIMV_TXT_NOTFOUND) {
		why = "key not found";
	} else {
		fail_sig(s, DKIMV_TEMPERROR, "key lookup failed temporarily");
	}
	free(recs);
	if (why != NULL)
		fail_sig(s, DKIMV_PERMERROR, why);
	return pkey;
}

/* hash_field - canonicalise one field into md; the signature's own field
 * with its b= value removed and no CRLF when self. */
static bool
hash_field(struct dkimv *v, const struct sig *s, size_t i, bool self, EVP_MD_CTX *md,
	   char *scratch, size_t max)
{
	const struct field *f = &v->fields[i];
	const char *raw = v->hdr + f->off;
	size_t len = f->len, n;

	if (self) {
		/* Take the b= value out (RFC 6376 3.7), keeping "b=". */
		char *copy = scratch + max / 2;

		if (len > max / 2)
			return false;
		memcpy(copy, raw, s->bstart);
		memcpy(copy + s->bstart, raw + s->bend, len - s->bend);
		len -= s->bend - s->bstart;
		n = dkim_header_canon(copy, len, s->hrelaxed, false, scratch, max / 2);
	} else {
		n = dkim_header_canon(raw, len, s->hrelaxed, true, scratch, max);
	}
	return n != (size_t)-1 && EVP_DigestUpdate(md, scratch, n);
}

/* header_digest - the hash of the signed fields and the signature field. */
static bool
header_digest(struct dkimv *v, const struct sig *s, unsigned char *dg, unsigned *dglen)
{
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	size_t max = 2 * v->maxfield + 4096;
	char *scratch = malloc(max);
	/* Fields used so far: each name takes its last unused instance
	 * (RFC 6376 5.4.2). */
	unsigned char *used = calloc(v->nfields, 1);
	bool ok = md && scratch && used &&
		  EVP_DigestInit_ex(md, sig_md(v, s), NULL);

	for (size_t h = 0; ok && h < s->nh; h++) {
		const char *name = s->hnames + s->hoff[h];
		size_t nl = s->hlen[h], i = v->nfields;

		while (i-- > 0)
			if (!used[i] && field_is(v, i, name, nl))
				break;
		if (i == (size_t)-1)
			continue;	/* absent (or oversigned): hashes nothing */
		used[i] = 1;
		ok = hash_field(v, s, i, false, md, scratch, max);
	}
	ok = ok && hash_field(v, s, s->field, true, md, scratch, max) &&
	     EVP_DigestFinal_ex(md, dg, dglen);
	free(scratch);
	free(used);
	EVP_MD_CTX_free(md);
	return ok;
}

/* check_signature - the public-key check of digest dg against s->b. */
static bool
check_signature(const struct dkimv *v, const struct sig *s, EVP_PKEY *pkey, const unsigned char *dg, unsigned dglen)
{
	bool ok = false;

	if (s->ed25519) {
		/* RFC 8463: Ed25519 (pure) over the SHA-256 of the data. */
		EVP_MD_CTX *m = EVP_MD_CTX_new();

		ok = m && EVP_DigestVerifyInit(m, NULL, NULL, NULL, pkey) == 1 &&
		     EVP_DigestVerify(m, s->b, s->blen, dg, dglen) == 1;
		EVP_MD_CTX_free(m);
	} else {
		EVP_PKEY_CTX *c = dkim_keycache_rsa_ctx(pkey, sig_md(v, s));

		ok = c && EVP_PKEY_verify(c, s->b, s->blen, dg, dglen) == 1;
	}
	return ok;
}

/* verify_sig - key, header hash, signature and body hash of one signature. */
static void
verify_sig(struct dkimv *v, struct sig *s)
{
	unsigned char dg[EVP_MAX_MD_SIZE];
	unsigned dglen = 0;
	EVP_PKEY *pkey;

	if (s->done)
		return;
	if (s->has_l && s->l > v->canon[s->brelaxed].total) {
		fail_sig(s, DKIMV_PERMERROR, "l= longer than the body");
		return;
	}
	if ((pkey = get_key(v, s)) == NULL)
		return;
	if (!header_digest(v, s, dg, &dglen) || s->body->bhcalclen == 0) {
		EVP_PKEY_free(pkey);
		fail_sig(s, DKIMV_TEMPERROR, "not verified");
		return;
	}
	bool sig_ok = check_signature(v, s, pkey, dg, dglen);
	bool bh_ok = s->body->bhcalclen == s->bhlen &&
		     memcmp(s->body->bhcalc, s->bh, s->bhlen) == 0;

	EVP_PKEY_free(pkey);
	if (!sig_ok)
		fail_sig(s, DKIMV_FAIL, "signature did not verify");
	else if (!bh_ok)
		fail_sig(s, DKIMV_FAIL, "body hash did not verify");
	else if (s->sha1)
		fail_sig(s, DKIMV_PERMERROR, "rsa-sha1 not accepted (RFC 8301)");
	else
		fail_sig(s, DKIMV_PASS, "");
}

/* dkimv_eom - see check_dkim.h. */
void
dkimv_eom(struct dkimv *v)
{
	size_t i;

	if (!v->eoh_done)
		(void)dkimv_eoh(v);
	if (v->finished)
		return;
	v->finished = true;
	for (int r = 0; r < 2; r++)
		if (v->canon_used[r])
			dkim_body_end(&v->canon[r]);
	for (i = 0; i < v->nsig; i++)
		if (v->sig[i].md != NULL &&
		    !EVP_DigestFinal_ex(v->sig[i].md, v->sig[i].bhcalc, &v->sig[i].bhcalclen))
			v->sig[i].bhcalclen = 0;
	dns_deadline(&v->deadline, DKIMV_BUDGET_MS);
	for (i = 0; i < v->nsig; i++)
		verify_sig(v, &v->sig[i]);
	if (v->saw_signature && v->nsig == 0) {
		/* Only after an allocation failure in dkimv_eoh(). */
		memset(&v->sigs[0], 0, sizeof v->sigs[0]);
		v->sigs[0].result = DKIMV_TEMPERROR;
		fmt_snprintf(v->sigs[0].reason, sizeof v->sigs[0].reason, "not verified");
		v->nsigs = 1;
	} else {
		v->nsigs = v->nsig;
	}
	for (i = 0; i < v->nsigs; i++)
		if (v->sigs[i].result > v->best) {
			v->best = v->sigs[i].result;
			v->bestidx = i;
		}
}

/* dkimv_nsigs - see check_dkim.h. */
size_t
dkimv_nsigs(const struct dkimv *v)
{
	return v->nsigs;
}

/* dkimv_sig - see check_dkim.h. */
const struct dkimv_sig *
dkimv_sig(const struct dkimv *v, size_t i)
{
	return i < v->nsigs ? &v->sigs[i] : NULL;
}

/* dkimv_best - see check_dkim.h. */
enum dkimv_result
dkimv_best(const struct dkimv *v, const char **domain)
{
	if (domain != NULL)
		*domain = v->best != DKIMV_NONE ? v->sigs[v->bestidx].domain : "";
	return v->best;
}

/* dkimv_free - see check_dkim.h. */
void
dkimv_free(struct dkimv *v)
{
	if (v == NULL)
		return;
	for (size_t i = 0; i < v->nsig; i++)
		EVP_MD_CTX_free(v->sig[i].md);
	free(v->sig);
	free(v->fields);
	free(v->hdr);
	free(v);
}
