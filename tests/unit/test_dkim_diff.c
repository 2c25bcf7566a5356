/*
 * test_dkim_diff.c - ravelin's DKIM verifier (src/check_dkim.c) against
 * libopendkim (tests/unit/dkim_oracle.c, the verifier ravelin used
 * before): every OpenDKIM library test message and RFC 8463's, each as
 * is and in 100 seeded random mutations (DKIM_DIFF_SEED and
 * DKIM_DIFF_MUTATIONS change them; DKIM_DIFF_DUMP=DIR saves every message
 * that differs) (body and header bytes, white
 * space, folding, trailing lines, field order and case, duplicated and
 * dropped fields, changed l= t= x= c= a= h=), fed to both in different
 * random chunkings. Per signature the result, d=, s= and a= must agree,
 * except where libopendkim departs from RFC 6376 in a known way
 * (explained() below; dkimpy sides with ravelin on each).
 */

/* System. */
#include <ctype.h>
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Libraries. */
#include <cmocka.h>

/* Project. */
#include "check_dkim.h"
#include "dkim_oracle.h"

#define TESTDATA "../shared/testdata/dkim/"
#define LIBTESTS TESTDATA "opendkim-libtests/"
#define RFC8463 TESTDATA "rfc8463-mailauth/signed.eml"
#define MUTATIONS 100	/* per message; DKIM_DIFF_MUTATIONS= for longer runs */
#define NOW 1600000000LL	/* 2020: t-test103 expired, t-test104 future, RFC 8463 fine */

/* The key "zone": name TAB record lines (dns-keys.txt plus RFC 8463's). */
static char *zone;

/* txt_zone - a dkimv_txt_fn over the zone lines. */
static enum dkimv_txt_status
txt_zone(void *arg, const char *name, char *out, size_t outlen)
{
	size_t nl = strlen(name);

	for (const char *p = zone; p && *p;) {
		const char *eol = strchr(p, '\n');
		size_t len = eol ? (size_t)(eol - p) : strlen(p);

		if (len > nl && p[nl] == '\t' && strncasecmp(p, name, nl) == 0) {
			snprintf(out, outlen, "%.*s", (int)(len - nl - 1), p + nl + 1);
			return DKIMV_TXT_OK;
		}
		p = eol ? eol + 1 : NULL;
	}
	return DKIMV_TXT_NOTFOUND;
}

/* slurp - a whole file, bare LFs made CRLF; NULL when absent. */
static char *
slurp(const char *path, size_t *len, bool crlf)
{
	FILE *f = fopen(path, "rb");
	char *raw, *out;
	long n;
	size_t o = 0;

	if (f == NULL)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	raw = malloc((size_t)n + 1);
	out = malloc(2 * (size_t)n + 1);
	assert_true(raw && out && fread(raw, 1, (size_t)n, f) == (size_t)n);
	fclose(f);
	for (long i = 0; i < n; i++) {
		if (crlf && raw[i] == '\n' && (i == 0 || raw[i - 1] != '\r'))
			out[o++] = '\r';
		out[o++] = raw[i];
	}
	out[o] = '\0';
	free(raw);
	*len = o;
	return out;
}

/* A growable message. */
struct msg {
	char *p;
	size_t len, cap;
};

/* rnd - xorshift64. */
static uint64_t
rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/* splice - replace n octets at off with ins (len k). */
static void
splice(struct msg *m, size_t off, size_t n, const char *ins, size_t k)
{
	if (m->len - n + k + 1 > m->cap) {
		m->cap = m->len - n + k + 1024;
		m->p = realloc(m->p, m->cap);
		assert_non_null(m->p);
	}
	memmove(m->p + off + k, m->p + off + n, m->len - off - n);
	memcpy(m->p + off, ins, k);
	m->len = m->len - n + k;
	m->p[m->len] = '\0';
}

/* body_start - offset of the body (after the first empty line). */
static size_t
body_start(const struct msg *m)
{
	const char *e = strstr(m->p, "\r\n\r\n");

	return e ? (size_t)(e - m->p) + 4 : m->len;
}

/* field_at - start and length (CRLF included) of the header field that
 * number i (counted from 0) is; false when there are fewer. */
static bool
field_at(const struct msg *m, size_t i, size_t *start, size_t *len)
{
	size_t end = body_start(m) - 2, p = 0, n = 0;

	while (p < end) {
		size_t q = p;

		do {
			const char *nl = strstr(m->p + q, "\r\n");

			q = nl ? (size_t)(nl - m->p) + 2 : end;
		} while (q < end && (m->p[q] == ' ' || m->p[q] == '\t'));
		if (n++ == i) {
			*start = p;
			*len = q - p;
			return true;
		}
		p = q;
	}
	return false;
}

/* nfields - header fields in the message. */
static size_t
nfields(const struct msg *m)
{
	size_t n = 0, a, b;

	while (field_at(m, n, &a, &b))
		n++;
	return n;
}

/* tag_mutation - change one tag value of the first DKIM-Signature. */
static const char *
tag_mutation(struct msg *m, uint64_t *s)
{
	static const struct {
		const char *tag, *value;
	} subs[] = {
		{ "l=", "l=10" },   { "l=", "l=0" },	     { "l=", "l=999999" },
		{ "t=", "t=99999999999" }, { "x=", "x=1" }, { "c=", "c=relaxed" },
		{ "c=", "c=simple/relaxed" }, { "c=", "c=bogus" }, { "a=", "a=rsa-sha256" },
		{ "a=", "a=rsa-sha1" }, { "h=", "h=From" }, { "h=", "h=to:from:from" },
	};
	size_t k = rnd(s) % (sizeof subs / sizeof subs[0]), a, len;
	const char *sig = NULL;

	for (size_t i = 0; field_at(m, i, &a, &len); i++)
		if (strncasecmp(m->p + a, "DKIM-Signature", 14) == 0) {
			sig = m->p + a;
			break;
		}
	if (sig == NULL)
		return "no signature";
	/* The tag at a tag boundary: after ';' or ':' and white space. */
	for (const char *t = sig; t < sig + len - 2; t++) {
		if (strncmp(t, subs[k].tag, 2) != 0 || !(t[-1] == ' ' || t[-1] == ';' ||
							t[-1] == '\t' || t[-1] == ':'))
			continue;
		size_t off = (size_t)(t - m->p), vend = off;

		while (vend < a + len - 2 && m->p[vend] != ';')
			vend++;
		splice(m, off, vend - off, subs[k].value, strlen(subs[k].value));
		return subs[k].value;
	}
	/* Absent: add it before the first ';'. */
	const char *semi = memchr(sig, ';', len);

	if (semi != NULL) {
		char ins[64];

		snprintf(ins, sizeof ins, "; %s", subs[k].value);
		splice(m, (size_t)(semi - m->p), 0, ins, strlen(ins));
	}
	return subs[k].value;
}

/* pick - one of two strings, at random. */
static const char *
pick(uint64_t *s, const char *a, const char *b)
{
	return rnd(s) % 2 ? a : b;
}

/* insert - a string at off. */
static void
insert(struct msg *m, size_t off, const char *str)
{
	splice(m, off, 0, str, strlen(str));
}

/* mutate - one random change; returns its name. */
static const char *
mutate(struct msg *m, uint64_t *s)
{
	size_t b = body_start(m), nf = nfields(m), a, len;
	size_t blen = m->len - b;
	unsigned kind = (unsigned)(rnd(s) % 15);

	switch (kind) {
	case 0:
		if (blen == 0)
			break;
		m->p[b + rnd(s) % blen] ^= 0x01;
		return "flip a body octet";
	case 1:
		insert(m, b + (blen ? rnd(s) % blen : 0), "x");
		return "insert a body octet";
	case 2:
		if (blen == 0)
			break;
		splice(m, b + rnd(s) % blen, 1, "", 0);
		return "delete a body octet";
	case 3:
		if (!field_at(m, rnd(s) % nf, &a, &len) || len < 6)
			break;
		m->p[a + len - 3] ^= 0x01;
		return "change a header value octet";
	case 4: {
		if (!field_at(m, rnd(s) % nf, &a, &len))
			break;
		char *colon = memchr(m->p + a, ':', len);

		if (colon == NULL)
			break;
		insert(m, (size_t)(colon - m->p) + 1, pick(s, "  \t", " "));
		return "white space after a colon";
	}
	case 5: {
		if (!field_at(m, rnd(s) % nf, &a, &len))
			break;
		char *colon = memchr(m->p + a, ':', len);

		if (colon == NULL)
			break;
		insert(m, (size_t)(colon - m->p), " ");
		return "space before a colon";
	}
	case 6: {
		char *nl = blen ? strstr(m->p + b + rnd(s) % blen, "\r\n") : NULL;

		if (nl == NULL)
			break;
		insert(m, (size_t)(nl - m->p), pick(s, " \t ", "\t"));
		return "white space at a body line end";
	}
	case 7:
		insert(m, m->len, pick(s, "\r\n\r\n", " \r\n\t\r\n"));
		return "trailing empty or blank lines";
	case 8:
		if (blen < 2 || memcmp(m->p + m->len - 2, "\r\n", 2) != 0)
			break;
		m->len -= 2;
		m->p[m->len] = '\0';
		return "no final CRLF";
	case 9:
		if (!field_at(m, rnd(s) % nf, &a, &len))
			break;
		for (size_t i = a; i < a + len && m->p[i] != ':'; i++)
			m->p[i] = (char)toupper((unsigned char)m->p[i]);
		return "upper-case field name";
	case 10: {
		if (!field_at(m, rnd(s) % nf, &a, &len))
			break;
		char *sp = memchr(m->p + a, ' ', len - 2);

		if (sp == NULL)
			break;
		insert(m, (size_t)(sp - m->p), "\r\n");
		return "refold a field";
	}
	case 11: {
		if (!field_at(m, rnd(s) % nf, &a, &len))
			break;
		char *copy = strndup(m->p + a, len);

		splice(m, rnd(s) % 2 ? a : b - 2, 0, copy, len);
		free(copy);
		return "duplicate a field";
	}
	case 12:
		if (nf < 2 || !field_at(m, rnd(s) % nf, &a, &len))
			break;
		splice(m, a, len, "", 0);
		return "drop a field";
	case 13:
		return tag_mutation(m, s);
	case 14: {
		size_t from = blen ? b + rnd(s) % blen : m->len;
		char *sp = memchr(m->p + from, ' ', m->len - from);

		if (sp == NULL)
			break;
		const char *w = pick(s, "\t", "  ");

		splice(m, (size_t)(sp - m->p), 1, w, strlen(w));
		return "body space to tab or two";
	}
	}
	return "none";
}

/* Both verifiers' handles, fed in parallel. */
struct pair {
	struct dkimv *n;
	struct odkv *o;
};

/* feed - the message through both: fields one by one, body in chunks. */
static void
feed(struct pair *v, const struct msg *m, uint64_t *s)
{
	size_t b = body_start(m), a, len;
	size_t end = b >= 2 ? b - 2 : 0;

	for (size_t i = 0; field_at(m, i, &a, &len); i++) {
		size_t flen = a + len > end ? end - a : len - 2;

		dkimv_header(v->n, m->p + a, flen);
		odkv_header(v->o, m->p + a, flen);
	}
	bool nb = dkimv_eoh(v->n), ob = odkv_eoh(v->o);

	for (int which = 0; which < 2; which++) {
		size_t chunk = 1 + rnd(s) % 5000;

		if (!(which ? ob : nb))
			continue;
		for (size_t p = b; p < m->len; p += chunk) {
			size_t k = m->len - p < chunk ? m->len - p : chunk;

			if (which)
				odkv_body(v->o, (const unsigned char *)m->p + p, k);
			else
				dkimv_body(v->n, (const unsigned char *)m->p + p, k);
		}
	}
	dkimv_eom(v->n);
	odkv_eom(v->o);
}

/* has_bare - a CR not followed by LF (cr), or an LF without CR before
 * it (!cr), in the body. */
static bool
has_bare(const struct msg *m, bool cr)
{
	for (size_t i = body_start(m); i < m->len; i++) {
		if (cr && m->p[i] == '\r' && (i + 1 == m->len || m->p[i + 1] != '\n'))
			return true;
		if (!cr && m->p[i] == '\n' && (i == 0 || m->p[i - 1] != '\r'))
			return true;
	}
	return false;
}

/* unterminated - a non-empty body whose last line has no CRLF. */
static bool
unterminated(const struct msg *m)
{
	size_t b = body_start(m);

	return m->len > b && (m->len - b < 2 || memcmp(m->p + m->len - 2, "\r\n", 2) != 0);
}

/*
 * explained - whether a difference in one signature's result is one of
 * the known ones, where ravelin follows RFC 6376 (and dkimpy agrees)
 * and libopendkim is lenient or gives up. Counts each kind.
 */
static unsigned explained_counts[4];

static bool
explained(const struct msg *m, const char *what, const struct dkimv_sig *n,
	  const struct dkimv_sig *o)
{
	/* b= holding a character outside base64 is not a valid tag value
	 * (RFC 6376 3.5, base64string): a permerror. libopendkim skips the
	 * character and may even pass. */
	if (n->result == DKIMV_PERMERROR && strcmp(n->reason, "bad b=") == 0) {
		explained_counts[0]++;
		return true;
	}
	/* A body whose last line has no CRLF gets one (RFC 6376 3.4.3,
	 * 3.4.4; dkimpy agrees); libopendkim never finishes such a body
	 * ("not verified"). SMTP cannot deliver one: DATA ends in CRLF.CRLF. */
	if (unterminated(m) && o->result == DKIMV_TEMPERROR &&
	    strcmp(o->reason, "not verified") == 0) {
		explained_counts[1]++;
		return true;
	}
	/* A bare CR is body content (RFC 6376 3.4.3; dkimpy agrees);
	 * libopendkim drops one before a line end, so its body hash
	 * differs. ravelin refuses bare CR in DATA (bare_newline reject). */
	if (has_bare(m, true) && n->result == DKIMV_FAIL &&
	    strcmp(n->reason, "body hash did not verify") == 0) {
		explained_counts[2]++;
		return true;
	}
	/* A bare LF ends a line here and in dkimpy; libopendkim hashes it as
	 * content inside the body but as a line end at its end. ravelin's
	 * SMTP side refuses bare LF or turns it into CRLF first. */
	if (has_bare(m, false) && (strcmp(o->reason, "body hash did not verify") == 0 ||
				   strcmp(n->reason, "body hash did not verify") == 0)) {
		explained_counts[3]++;
		return true;
	}
	return false;
}

/* compare - per signature: result, d=, s=, a=. Returns differences. */
static int
compare(const char *file, const char *what, const struct msg *m, struct pair *v,
	unsigned *sigs)
{
	size_t nn = dkimv_nsigs(v->n), no = odkv_nsigs(v->o);
	const char *ph, *st = odkv_status(v->o, &ph);
	int bad = 0;

	if (nn != no) {
		/* libopendkim refused the whole header (no From:, say) and
		 * lists one stand-in permerror; every signature must then be
		 * a permerror here too. */
		bool all_perm = strcmp(ph, "eoh") == 0 && no == 1 &&
				odkv_sig(v->o, 0)->result == DKIMV_PERMERROR;

		for (size_t i = 0; all_perm && i < nn; i++)
			all_perm = dkimv_sig(v->n, i)->result == DKIMV_PERMERROR;
		if (all_perm)
			return 0;
		fprintf(stderr, "%s [%s]: %zu signatures, libopendkim %zu (%s at %s)\n", file, what,
			nn, no, st, ph);
		return 1;
	}
	for (size_t i = 0; i < nn; i++) {
		const struct dkimv_sig *a = dkimv_sig(v->n, i), *b = odkv_sig(v->o, i);

		(*sigs)++;
		if (a->result != b->result && !explained(m, what, a, b)) {
			fprintf(stderr, "%s [%s] sig %zu: %s (%s), libopendkim %s (%s)\n", file, what, i,
				dkimv_result_str(a->result), a->reason, dkimv_result_str(b->result),
				b->reason);
			bad++;
		} else if (a->result == b->result && a->result != DKIMV_PERMERROR &&
			   (strcmp(a->domain, b->domain) != 0 || strcmp(a->selector, b->selector) != 0 ||
			    strcmp(a->algorithm, b->algorithm) != 0)) {
			fprintf(stderr, "%s [%s] sig %zu: d=%s s=%s a=%s, libopendkim d=%s s=%s a=%s\n",
				file, what, i, a->domain, a->selector, a->algorithm, b->domain,
				b->selector, b->algorithm);
			bad++;
		}
	}
	return bad;
}

/* load_zone - dns-keys.txt plus the RFC 8463 keys; false when absent. */
static bool
load_zone(void)
{
	size_t len;
	char *keys = slurp(LIBTESTS "dns-keys.txt", &len, false);
	static const char extra[] =
		"brisbane._domainkey.football.example.com\tv=DKIM1; k=ed25519; "
		"p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\n"
		"test._domainkey.football.example.com\tv=DKIM1; k=rsa; "
		"p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWRiGs5V6NpP3idY6Wk08a5qhdR6wy5bd"
		"OKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4h"
		"stT5QjvHO9PzoxZyVYLzBfO2EeC3Ip3G+2kryOTIKT+l/K4w3QIDAQAB\n";

	if (keys == NULL)
		return false;
	zone = malloc(len + sizeof extra + 2);
	memcpy(zone, keys, len);
	zone[len] = '\n';
	memcpy(zone + len + 1, extra, sizeof extra);
	free(keys);
	return true;
}

/* every_vector_and_mutation - the whole comparison. */
static void
every_vector_and_mutation(void **state)
{
	char err[256], path[512];
	struct dkimv_lib *nl;
	struct odkv_lib *ol;
	DIR *d;
	struct dirent *e;
	char *files[128];
	size_t nfiles = 0;
	unsigned messages = 0, sigs = 0;
	int bad = 0;
	uint64_t seed = 0x9e3779b97f4a7c15ULL;
	int mutations = MUTATIONS;

	if (getenv("DKIM_DIFF_SEED") != NULL)
		seed = strtoull(getenv("DKIM_DIFF_SEED"), NULL, 0) | 1;
	if (getenv("DKIM_DIFF_MUTATIONS") != NULL)
		mutations = atoi(getenv("DKIM_DIFF_MUTATIONS"));

	if (!load_zone() || (d = opendir(LIBTESTS)) == NULL)
		skip();
	while ((e = readdir(d)) != NULL && nfiles < 127)
		if (strstr(e->d_name, ".eml") != NULL)
			files[nfiles++] = strdup(e->d_name);
	closedir(d);
	files[nfiles++] = strdup("rfc8463");
	nl = dkimv_lib_new(NULL, NULL, err, sizeof err);
	ol = odkv_lib_new(err, sizeof err);
	assert_non_null(nl);
	assert_non_null(ol);
	dkimv_lib_set_txt_lookup(nl, txt_zone, NULL);
	odkv_lib_set_txt_lookup(ol, txt_zone, NULL);
	dkimv_lib_set_time(nl, NOW);
	odkv_lib_set_time(ol, NOW);
	for (size_t f = 0; f < nfiles; f++) {
		size_t len;
		char *orig;

		if (strcmp(files[f], "rfc8463") == 0)
			orig = slurp(RFC8463, &len, true);
		else {
			snprintf(path, sizeof path, LIBTESTS "%s", files[f]);
			orig = slurp(path, &len, false);
		}
		assert_non_null(orig);
		for (int k = 0; k <= mutations; k++) {
			struct msg m = { strdup(orig), len, len + 1 };
			const char *what = k == 0 ? "as is" : mutate(&m, &seed);

			/* A third of them get a second change, a third a third. */
			for (int more = k % 3; k > 0 && more > 0; more--)
				what = mutate(&m, &seed);
			struct pair v = { dkimv_new(nl, "diff"), odkv_new(ol, "diff") };

			feed(&v, &m, &seed);
			int diff = compare(files[f], what, &m, &v, &sigs);

			bad += diff;
			if (diff && getenv("DKIM_DIFF_DUMP") != NULL) {
				/* The message, to look at it with other verifiers. */
				snprintf(path, sizeof path, "%s/%s.%d.eml", getenv("DKIM_DIFF_DUMP"),
					 files[f], k);
				FILE *out = fopen(path, "wb");

				if (out != NULL) {
					fwrite(m.p, 1, m.len, out);
					fclose(out);
				}
			}
			messages++;
			dkimv_free(v.n);
			odkv_free(v.o);
			free(m.p);
		}
		free(orig);
		free(files[f]);
	}
	dkimv_lib_free(nl);
	odkv_lib_free(ol);
	free(zone);
	fprintf(stderr,
		"dkim diff: %u messages, %u signatures, %d unexplained differences; explained: "
		"%u bad b=, %u no final CRLF, %u bare CR, %u bare LF\n",
		messages, sigs, bad, explained_counts[0], explained_counts[1], explained_counts[2],
		explained_counts[3]);
	assert_int_equal(bad, 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(every_vector_and_mutation),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
