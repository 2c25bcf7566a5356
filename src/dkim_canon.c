/*
 * dkim_canon.c - the pure parts of DKIM verification (RFC 6376): tag
 * lists (3.2), base64 with folding white space, header field
 * canonicalisation (3.4.1, 3.4.2) and streaming body canonicalisation
 * (3.4.3, 3.4.4).
 *
 * The body canonicaliser works on any chunking: a CR at the end of a
 * chunk waits for the next one (a CR without LF is content; an LF without
 * CR ends a line, as libopendkim and dkimpy have it), and empty lines are counted rather than
 * written until content follows, because trailing empty lines are not
 * part of the canonical body. Runs of ordinary octets are copied whole,
 * so a 2 KB body costs a few dozen copies, not an octet-by-octet state
 * machine.
 *
 * Public:
 *   dkim_tags_parse(), dkim_tag_find(), dkim_compact(), dkim_b64_decode(),
 *   dkim_header_canon(), dkim_body_init(), dkim_body_feed(), dkim_body_end()
 */

/* System. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Project. */
#include "dkim_canon.h"

/* is_fws - white space that may fold a tag list: SP, TAB, CR, LF. */
static inline bool
is_fws(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* is_alpha - ASCII letter. */
static inline bool
is_alpha(unsigned char c)
{
	return (c | 0x20) >= 'a' && (c | 0x20) <= 'z';
}

/* VALCHAR - tag value octets: 0 part of a value (printable ASCII but
 * ';', FWS, and 8-bit, which is let through), 1 ';', 2 refused (other
 * control characters). */
static const unsigned char VALCHAR[256] = {
	2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 2, 2, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

/* dkim_tags_parse - see dkim_canon.h. */
enum dkim_tags_status
dkim_tags_parse(const char *text, size_t len, struct dkim_tag *tags, size_t max, size_t *n)
{
	const unsigned char *s = (const unsigned char *)text;
	size_t i = 0;

	*n = 0;
	while (i < len) {
		size_t ns, ne, vs, ve, k;

		while (i < len && is_fws(s[i]))
			i++;
		if (i == len)
			break;
		if (s[i] == ';') {	/* an empty tag-spec: tolerated */
			i++;
			continue;
		}
		if (!is_alpha(s[i]))
			return DKIM_TAGS_SYNTAX;
		ns = i;
		while (i < len && (is_alpha(s[i]) || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
			i++;
		ne = i;
		while (i < len && is_fws(s[i]))
			i++;
		if (i == len || s[i] != '=')
			return DKIM_TAGS_SYNTAX;
		i++;
		vs = i;
		while (i < len && VALCHAR[s[i]] == 0)
			i++;
		if (i < len && VALCHAR[s[i]] == 2)
			return DKIM_TAGS_SYNTAX;
		ve = i;
		if (i < len)
			i++;	/* the ';' */
		if (*n == max)
			return DKIM_TAGS_TOOMANY;
		for (k = 0; k < *n; k++)
			if (tags[k].namelen == ne - ns && memcmp(tags[k].name, s + ns, ne - ns) == 0)
				return DKIM_TAGS_DUPLICATE;
		struct dkim_tag *t = &tags[(*n)++];

		t->name = text + ns;
		t->namelen = ne - ns;
		t->vstart = vs;
		t->vend = ve;
		while (vs < ve && is_fws(s[vs]))
			vs++;
		while (ve > vs && is_fws(s[ve - 1]))
			ve--;
		t->value = text + vs;
		t->valuelen = ve - vs;
	}
	return DKIM_TAGS_OK;
}

/* dkim_tag_find - see dkim_canon.h. */
const struct dkim_tag *
dkim_tag_find(const struct dkim_tag *tags, size_t n, const char *name)
{
	size_t len = strlen(name);

	for (size_t i = 0; i < n; i++)
		if (tags[i].namelen == len && memcmp(tags[i].name, name, len) == 0)
			return &tags[i];
	return NULL;
}

/* dkim_compact - see dkim_canon.h. */
bool
dkim_compact(char *dst, size_t n, const char *src, size_t len)
{
	size_t o = 0;

	if (n == 0)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (is_fws((unsigned char)src[i]))
			continue;
		if (o + 1 >= n) {
			dst[0] = '\0';
			return false;
		}
		dst[o++] = src[i];
	}
	dst[o] = '\0';
	return true;
}

/* B64 - each octet's 6-bit value plus one; 0: not base64; B64_FWS:
 * white space to skip; B64_PAD: '='. A table, because key records and
 * signatures are decoded for every message and a chain of range tests
 * mispredicts. */
#define B64_FWS 100
#define B64_PAD 101
static const unsigned char B64[256] = {
	  0,   0,   0,   0,   0,   0,   0,   0,   0, 100, 100,   0,   0, 100,   0,   0,
	  0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,
	100,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,  63,   0,   0,   0,  64,
	 53,  54,  55,  56,  57,  58,  59,  60,  61,  62,   0,   0,   0, 101,   0,   0,
	  0,   1,   2,   3,   4,   5,   6,   7,   8,   9,  10,  11,  12,  13,  14,  15,
	 16,  17,  18,  19,  20,  21,  22,  23,  24,  25,  26,   0,   0,   0,   0,   0,
	  0,  27,  28,  29,  30,  31,  32,  33,  34,  35,  36,  37,  38,  39,  40,  41,
	 42,  43,  44,  45,  46,  47,  48,  49,  50,  51,  52,   0,   0,   0,   0,   0,
	  0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,
	  0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,
	  0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,
	  0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,
	  0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,
	  0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,
	  0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,
	  0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,
};

/* dkim_b64_decode - see dkim_canon.h. */
bool
dkim_b64_decode(const char *src, size_t len, unsigned char *out, size_t max, size_t *outlen)
{
	const unsigned char *q = (const unsigned char *)src;
	uint32_t acc = 0;
	size_t o = 0, pad = 0, i = 0;
	unsigned bits = 0, chars = 0;

	while (i < len) {
		/* On a quantum boundary, four plain characters make three
		 * octets at once; white space and padding go one by one. */
		if (bits == 0 && pad == 0 && len - i >= 4 && max - o >= 3) {
			unsigned a = B64[q[i]] - 1u, b = B64[q[i + 1]] - 1u,
				 c = B64[q[i + 2]] - 1u, d = B64[q[i + 3]] - 1u;

			if ((a | b | c | d) < 64) {
				uint32_t w = (a << 18) | (b << 12) | (c << 6) | d;

				out[o++] = (unsigned char)(w >> 16);
				out[o++] = (unsigned char)(w >> 8);
				out[o++] = (unsigned char)w;
				chars += 4;
				i += 4;
				continue;
			}
		}
		unsigned v = B64[q[i++]] - 1u;

		if (v < 64) {
			if (pad > 0)
				return false;	/* data after padding */
			acc = (acc << 6) | v;
			bits += 6;
			chars++;
			if (bits >= 8) {
				bits -= 8;
				if (o == max)
					return false;
				out[o++] = (unsigned char)(acc >> bits);
			}
		} else if (v == B64_PAD - 1u) {
			pad++;
		} else if (v != B64_FWS - 1u) {
			return false;
		}
	}
	/* Whole quanta only: 2 or 3 characters end with 2 or 1 '='. */
	if (pad > 2 || (chars + pad) % 4 != 0 || (pad > 0 && chars % 4 == 0))
		return false;
	*outlen = o;
	return true;
}

/* put - append n octets to out at *o; false when out is full. */
static inline bool
put(char *out, size_t max, size_t *o, const char *p, size_t n)
{
	if (n > max - *o)
		return false;
	memcpy(out + *o, p, n);
	*o += n;
	return true;
}

/* dkim_header_canon - see dkim_canon.h. */
size_t
dkim_header_canon(const char *field, size_t len, bool relaxed, bool crlf, char *out, size_t max)
{
	size_t o = 0;

	if (!relaxed) {
		if (!put(out, max, &o, field, len) || (crlf && !put(out, max, &o, "\r\n", 2)))
			return (size_t)-1;
		return o;
	}
	const char *colon = memchr(field, ':', len);
	size_t nl = colon ? (size_t)(colon - field) : len, i;
	bool wsp = false, content = false;

	/* Name: lower case, white space before the colon dropped. */
	while (nl > 0 && (field[nl - 1] == ' ' || field[nl - 1] == '\t'))
		nl--;
	if (nl > max)
		return (size_t)-1;
	for (i = 0; i < nl; i++) {
		char c = field[i];

		out[o++] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
	}
	if (!put(out, max, &o, ":", 1))
		return (size_t)-1;
	/* Value: unfolded, white space runs as one SP, none at either end. */
	for (i = colon ? (size_t)(colon - field) + 1 : len; i < len; i++) {
		char c = field[i];

		if (c == '\r' || c == '\n')
			continue;
		if (c == ' ' || c == '\t') {
			wsp = true;
			continue;
		}
		if (wsp && content && !put(out, max, &o, " ", 1))
			return (size_t)-1;
		wsp = false;
		content = true;
		if (o == max)
			return (size_t)-1;
		out[o++] = c;
	}
	if (crlf && !put(out, max, &o, "\r\n", 2))
		return (size_t)-1;
	return o;
}

/* body_flush - hand the staged output to the sink. */
static void
body_flush(struct dkim_body *b)
{
	if (b->n > 0) {
		b->sink(b->arg, b->out, b->n);
		b->n = 0;
	}
}

/* body_put - stage canonical octets. */
static void
body_put(struct dkim_body *b, const unsigned char *p, size_t len)
{
	b->total += len;
	while (len > 0) {
		size_t room = sizeof(b->out) - b->n, k = len < room ? len : room;

		memcpy(b->out + b->n, p, k);
		b->n += k;
		p += k;
		len -= k;
		if (b->n == sizeof(b->out))
			body_flush(b);
	}
}

/* content - octets of a line: held-back empty lines and white space first. */
static void
content(struct dkim_body *b, const unsigned char *p, size_t len)
{
	if (!b->midline) {
		for (; b->pending > 0; b->pending--)
			body_put(b, (const unsigned char *)"\r\n", 2);
		b->midline = true;
	}
	if (b->wsp) {
		body_put(b, (const unsigned char *)" ", 1);
		b->wsp = false;
	}
	body_put(b, p, len);
}

/* line_end - a CRLF: ends a line with content, or counts an empty one. */
static void
line_end(struct dkim_body *b)
{
	b->wsp = false;	/* relaxed: white space at the end of a line goes */
	if (b->midline) {
		body_put(b, (const unsigned char *)"\r\n", 2);
		b->midline = false;
	} else {
		b->pending++;
	}
}

/* dkim_body_init - see dkim_canon.h. */
void
dkim_body_init(struct dkim_body *b, bool relaxed, dkim_body_sink sink, void *arg)
{
	memset(b, 0, offsetof(struct dkim_body, out));
	b->relaxed = relaxed;
	b->sink = sink;
	b->arg = arg;
}

/* bytes_eq - 0x80 in each octet of w that equals c, 0 elsewhere (exact:
 * no borrow from one octet into the next). */
static inline uint64_t
bytes_eq(uint64_t w, unsigned char c)
{
	uint64_t v = w ^ (0x0101010101010101ULL * c);
	uint64_t t = (v & 0x7f7f7f7f7f7f7f7fULL) + 0x7f7f7f7f7f7f7f7fULL;

	return ~(t | v | 0x7f7f7f7f7f7f7f7fULL);
}

/* plain_run - end of the run of octets copied as they are: up to a CR;
 * in relaxed form also up to white space, except one SP between two
 * ordinary octets (the commonest case: it stays one SP). */
static const unsigned char *
plain_run(const struct dkim_body *b, const unsigned char *p, const unsigned char *end)
{
	if (!b->relaxed) {
		const unsigned char *q = memchr(p, '\r', (size_t)(end - p)), *lf;

		if (q == NULL)
			q = end;
		lf = memchr(p, '\n', (size_t)(q - p));
		return lf ? lf : q;
	}
	/* Eight octets at a time while they hold no CR, no TAB and no two
	 * SPs in a row (nor an SP before white space or CR). */
	while (end - p >= 9) {
		uint64_t w, sp;

		memcpy(&w, p, 8);
		if (bytes_eq(w, '\r') | bytes_eq(w, '\n') | bytes_eq(w, '\t'))
			break;
		sp = bytes_eq(w, ' ');
		if (sp & (sp << 8))
			break;
		if ((sp >> 63) &&
		    (p[8] == ' ' || p[8] == '\t' || p[8] == '\r' || p[8] == '\n'))
			break;
		p += 8;
	}
	while (p < end) {
		unsigned char c = *p;

		if (c == '\r' || c == '\n' || c == '\t')
			break;
		if (c == ' ') {
			if (p + 1 >= end || p[1] == ' ' || p[1] == '\t' || p[1] == '\r' ||
			    p[1] == '\n')
				break;
			/* A lone SP is kept only after an ordinary octet of
			 * this run; the caller never starts a run with SP. */
		}
		p++;
	}
	return p;
}

/* dkim_body_feed - see dkim_canon.h. */
void
dkim_body_feed(struct dkim_body *b, const unsigned char *p, size_t len)
{
	const unsigned char *end = p + len;

	while (p < end) {
		if (b->cr) {
			b->cr = false;
			if (*p == '\n') {
				p++;
				line_end(b);
				continue;
			}
			content(b, (const unsigned char *)"\r", 1);	/* a bare CR is content */
		}
		if (*p == '\r') {
			b->cr = true;
			p++;
			continue;
		}
		if (*p == '\n') {
			/* A bare LF ends a line, as in libopendkim and dkimpy
			 * (RFC 6376 5.3 has signers turn it into CRLF). */
			p++;
			line_end(b);
			continue;
		}
		if (b->relaxed && (*p == ' ' || *p == '\t')) {
			b->wsp = true;
			p++;
			continue;
		}
		const unsigned char *q = plain_run(b, p, end);

		if (q == p)	/* cannot happen: *p is ordinary here */
			q = p + 1;
		content(b, p, (size_t)(q - p));
		p = q;
	}
}

/* dkim_body_end - see dkim_canon.h. */
void
dkim_body_end(struct dkim_body *b)
{
	if (b->cr) {
		b->cr = false;
		content(b, (const unsigned char *)"\r", 1);
	}
	b->wsp = false;
	/* A last line without CRLF gets one (RFC 6376 3.4.3, 3.4.4). */
	if (b->midline) {
		body_put(b, (const unsigned char *)"\r\n", 2);
		b->midline = false;
	}
	/* simple: an empty body is one CRLF; relaxed: nothing. */
	if (!b->relaxed && b->total == 0)
		body_put(b, (const unsigned char *)"\r\n", 2);
	b->pending = 0;
	body_flush(b);
}
