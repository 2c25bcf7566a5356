/*
 * authres.c - Authentication-Results: (RFC 8601) and Received-SPF:
 * (RFC 7208 section 9.1) header fields, and detection of forged
 * Authentication-Results fields carrying our authserv-id.
 *
 * Pure: the caller says which checks ran and with what outcome; we only
 * format. Everything that goes into a field may come from the client
 * (MAIL FROM, HELO, d=, s=), so values are written as RFC 2045 tokens
 * when they are plain and as quoted-strings otherwise, and control
 * characters (CR and LF above all) never reach the output: a hostile
 * value cannot start a header field of its own.
 *
 * Public:
 *   authres_build(), authres_received_spf(), authres_is_ours()
 */

/* System. */
#include <ctype.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Project. */
#include "authres.h"
#include "fmt.h"
#include "strcopy.h"

/* RFC 5322 section 2.1.1: lines SHOULD stay within 78 characters. */
#define AUTHRES_COLS 78

/* Longest single value we copy; SMTP limits keep real ones far below. */
#define AUTHRES_VALUE_MAX 1000

/* Output buffer with column tracking for folding. */
struct writer {
	char *buf;
	size_t len;
	size_t cap;
	size_t col;		/* display column, tabs to multiples of 8 */
	bool line_empty;	/* nothing but the fold yet on this line */
	bool overflow;
};

/* w_init - start writing into buf. */
static void
w_init(struct writer *w, char *buf, size_t cap)
{
	w->buf = buf;
	w->len = 0;
	w->cap = cap;
	w->col = 0;
	w->line_empty = true;
	w->overflow = cap == 0;
	if (cap > 0)
		buf[0] = '\0';
}

/* w_copy - append bytes, column untouched; false once out of room. */
static bool
w_copy(struct writer *w, const char *s, size_t n)
{
	if (w->overflow)
		return false;
	if (w->len + n + 1 > w->cap) {
		w->overflow = true;
		return false;
	}
	memcpy(w->buf + w->len, s, n);
	w->len += n;
	w->buf[w->len] = '\0';
	return true;
}

/* w_raw - append bytes as they are, tracking the column. */
static void
w_raw(struct writer *w, const char *s, size_t n)
{
	size_t i = 0;

	if (!w_copy(w, s, n))
		return;
	/* Only what follows the last newline moves the column. */
	const char *nl = memrchr(s, '\n', n);
	if (nl) {
		i = (size_t)(nl - s) + 1;
		w->col = 0;
		w->line_empty = true;
	}
	if (!memchr(s + i, '\t', n - i) && !memchr(s + i, '\r', n - i)) {
		/* The common case: a word. */
		w->col += n - i;
		for (size_t k = i; w->line_empty && k < n; k++)
			if (s[k] != ' ')
				w->line_empty = false;
		return;
	}
	for (; i < n; i++) {
		char c = s[i];

		if (c == '\t') {
			w->col = (w->col / 8 + 1) * 8;
		} else if (c != '\r') {
			w->col++;
			if (c != ' ')
				w->line_empty = false;
		}
	}
}

/* w_str - append a C string. */
static void
w_str(struct writer *w, const char *s)
{
	w_raw(w, s, strlen(s));
}

/* w_fold - start a continuation line. */
static void
w_fold(struct writer *w)
{
	w_str(w, "\r\n\t");
}

/* w_word - append a word after a space, folding first when it would
 * pass the column limit (unless the line holds nothing yet). */
static void
w_word(struct writer *w, const char *word)
{
	size_t n = strlen(word);

	if (w->line_empty) {
		w_raw(w, word, n);
		return;
	}
	if (w->col + 1 + n > AUTHRES_COLS)
		w_fold(w);
	else
		w_raw(w, " ", 1);
	w_raw(w, word, n);
}

/* is_token_char - RFC 2045 token character (plus '@' for RFC 8601
 * pvalue addresses); bytes >= 0x80 force quoting. */
static bool
is_token_char(unsigned char c, bool allow_at)
{
	if (c <= 0x20 || c >= 0x7f)
		return false;
	if (c == '@')
		return allow_at;
	switch (c) {
	case '(': case ')': case '<': case '>': case ',': case ';': case ':':
	case '\\': case '"': case '/': case '[': case ']': case '?': case '=':
		return false;
	}
	return true;
}

/* enc_value - write value as a token when it is one, else as a
 * quoted-string; controls become '?'. Bounded by AUTHRES_VALUE_MAX. */
static void
enc_value(char *out, size_t outlen, const char *value, bool allow_at)
{
	size_t n = strnlen(value, AUTHRES_VALUE_MAX), i, o = 0;
	bool plain = n > 0;

	for (i = 0; i < n && plain; i++)
		if (!is_token_char((unsigned char)value[i], allow_at))
			plain = false;
	if (plain) {
		if (outlen == 0)
			return;
		if (n > outlen - 1)
			n = outlen - 1;
		memcpy(out, value, n);
		out[n] = '\0';
		return;
	}
	/* Worst case: every byte escaped, plus quotes and NUL. */
	if (outlen < 3)
		return;
	out[o++] = '"';
	for (i = 0; i < n && o + 4 < outlen; i++) {
		unsigned char c = (unsigned char)value[i];

		if (c < 0x20 || c == 0x7f)
			c = '?';
		if (c == '"' || c == '\\')
			out[o++] = '\\';
		out[o++] = (char)c;
	}
	out[o++] = '"';
	out[o] = '\0';
}

/* enc_comment - write text as an RFC 5322 comment "(...)". */
static void
enc_comment(char *out, size_t outlen, const char *text)
{
	size_t n = strnlen(text, AUTHRES_VALUE_MAX), i, o = 0;

	if (outlen < 3)
		return;
	out[o++] = '(';
	for (i = 0; i < n && o + 4 < outlen; i++) {
		unsigned char c = (unsigned char)text[i];

		if (c < 0x20 || c == 0x7f)
			c = ' ';
		if (c == '(' || c == ')' || c == '\\')
			out[o++] = '\\';
		out[o++] = (char)c;
	}
	out[o++] = ')';
	out[o] = '\0';
}

/* keyword - a result word as is when it is letters, digits, - and _;
 * "none" when empty, "permerror" when it holds anything else. */
static const char *
keyword(const char *s)
{
	const char *p;

	if (s == NULL || *s == '\0')
		return "none";
	for (p = s; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_')
			return "permerror";
	return s;
}

/* w_prop - append word "name=<encoded value>" with an optional ';'. */
static void
w_prop(struct writer *w, const char *name, const char *value, bool allow_at, const char *tail)
{
	char enc[2 * AUTHRES_VALUE_MAX + 8];
	char word[sizeof enc + 64];

	enc_value(enc, sizeof enc, value, allow_at);
	str_join(word, sizeof word, name, "=", enc, tail, (char *)NULL);
	w_word(w, word);
}

/* A resinfo under construction: words are only written when complete, so
 * the ';' ending the previous resinfo sticks to its last word. */
struct resinfo {
	const char *method;
	const char *result;
	const char *comment;
	const char *pname[4];
	const char *pvalue[4];
	bool pat[4];
	int nprop;
};

/* w_resinfo - write one "method=result (comment) prop=value ..." on a new
 * line, ending with ';' unless it is the last one. */
static void
w_resinfo(struct writer *w, const struct resinfo *ri, bool last)
{
	char word[2 * AUTHRES_VALUE_MAX + 80];
	const char *tail = last ? "" : ";";
	int i;

	w_fold(w);
	str_join(word, sizeof word, ri->method, "=", keyword(ri->result),
	     ri->comment == NULL && ri->nprop == 0 ? tail : "", (char *)NULL);
	w_word(w, word);
	if (ri->comment != NULL) {
		char c[2 * AUTHRES_VALUE_MAX + 8];

		enc_comment(c, sizeof c, ri->comment);
		str_join(word, sizeof word, c, ri->nprop == 0 ? tail : "", (char *)NULL);
		w_word(w, word);
	}
	for (i = 0; i < ri->nprop; i++)
		w_prop(w, ri->pname[i], ri->pvalue[i], ri->pat[i], i == ri->nprop - 1 ? tail : "");
}

/* ri_add - add a property to a resinfo when its value is known. */
static void
ri_add(struct resinfo *ri, const char *name, const char *value, bool allow_at)
{
	if (value == NULL || ri->nprop >= 4)
		return;
	ri->pname[ri->nprop] = name;
	ri->pvalue[ri->nprop] = value;
	ri->pat[ri->nprop] = allow_at;
	ri->nprop++;
}

/* authres_build - see authres.h. */
int
authres_build(const struct authres *ar, char *buf, size_t buflen)
{
	struct resinfo ri[64];
	char idbuf[2 * AUTHRES_VALUE_MAX + 8], comment[128];
	struct writer w;
	size_t n = 0, i;

	memset(ri, 0, sizeof ri);
	if (ar->spf != NULL) {
		ri[n].method = "spf";
		ri[n].result = ar->spf;
		ri_add(&ri[n], "smtp.mailfrom", ar->spf_mailfrom, true);
		ri_add(&ri[n], "smtp.helo", ar->spf_helo, false);
		n++;
	}
	if (ar->dkim_ran && ar->ndkim == 0) {
		ri[n].method = "dkim";
		ri[n].result = "none";
		n++;
	}
	for (i = 0; i < ar->ndkim && n < 60; i++) {
		const struct authres_dkim *d = &ar->dkim[i];

		ri[n].method = "dkim";
		ri[n].result = d->result;
		ri_add(&ri[n], "reason", d->reason, false);
		ri_add(&ri[n], "header.d", d->domain, false);
		ri_add(&ri[n], "header.s", d->selector, false);
		ri_add(&ri[n], "header.b", d->b, false);
		n++;
	}
	if (ar->dmarc != NULL) {
		ri[n].method = "dmarc";
		ri[n].result = ar->dmarc;
		if (ar->dmarc_policy != NULL || ar->dmarc_disposition != NULL) {
			fmt_snprintf(comment, sizeof comment, "%s%s%s%s%s",
				 ar->dmarc_policy ? "p=" : "",
				 ar->dmarc_policy ? keyword(ar->dmarc_policy) : "",
				 ar->dmarc_policy && ar->dmarc_disposition ? " " : "",
				 ar->dmarc_disposition ? "dis=" : "",
				 ar->dmarc_disposition ? keyword(ar->dmarc_disposition) : "");
			ri[n].comment = comment;
		}
		ri_add(&ri[n], "header.from", ar->dmarc_from, false);
		n++;
	}
	if (ar->auth != NULL) {
		ri[n].method = "auth";
		ri[n].result = ar->auth;
		ri_add(&ri[n], "smtp.auth", ar->auth_user, true);
		n++;
	}

	w_init(&w, buf, buflen);
	w_str(&w, "Authentication-Results:");
	enc_value(idbuf, sizeof idbuf,
		  ar->authserv_id != NULL && *ar->authserv_id ? ar->authserv_id : "localhost",
		  false);
	w_word(&w, idbuf);
	w_str(&w, ";");
	if (n == 0)
		w_word(&w, "none");
	for (i = 0; i < n; i++)
		w_resinfo(&w, &ri[i], i == n - 1);
	if (w.overflow) {
		if (buflen > 0)
			buf[0] = '\0';
		return -1;
	}
	return (int)w.len;
}

/* w_text_folded - append free text (already on one line) word by word,
 * folding at spaces; runs of white space collapse to one. The text holds
 * no tab, CR or LF (callers unfold it), so a word moves the column by its
 * length and is appended as it stands, without a copy or a scan. */
static void
w_text_folded(struct writer *w, const char *text)
{
	const char *p = text;

	while (*p) {
		while (*p == ' ')
			p++;
		const char *word = p;
		while (*p && *p != ' ')
			p++;
		size_t n = (size_t)(p - word);
		if (n == 0)
			break;
		if (n > AUTHRES_VALUE_MAX) {
			/* As ever: an overlong run goes out in pieces. */
			n = AUTHRES_VALUE_MAX;
			p = word + n;
		}
		if (!w->line_empty) {
			if (w->col + 1 + n > AUTHRES_COLS)
				w_fold(w);
			else
				w_raw(w, " ", 1);
		}
		if (!w_copy(w, word, n))
			return;
		w->col += n;
		w->line_empty = false;
	}
}

/* authres_received_spf - see authres.h. */
int
authres_received_spf(const struct authres_spf *spf, const char *text, char *buf, size_t buflen)
{
	char line[4 * AUTHRES_VALUE_MAX], enc[2 * AUTHRES_VALUE_MAX + 8];
	struct writer w;
	size_t o = 0;

	if (text != NULL) {
		const char *p = text;

		while (*p == ' ' || *p == '\t')
			p++;
		if (strncasecmp(p, "Received-SPF:", 13) == 0)
			p += 13;
		/* Unfold; any control character becomes a space. */
		for (; *p && o < sizeof line - 1; p++) {
			unsigned char c = (unsigned char)*p;

			line[o++] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
		}
		line[o] = '\0';
	} else if (spf != NULL) {
		str_join(line, sizeof line, keyword(spf->result), (char *)NULL);
		if (spf->comment != NULL) {
			enc_comment(enc, sizeof enc, spf->comment);
			str_append(line, sizeof line, " ", enc, (char *)NULL);
		}
		if (spf->receiver != NULL) {
			enc_value(enc, sizeof enc, spf->receiver, false);
			str_append(line, sizeof line, " receiver=", enc, ";", (char *)NULL);
		}
		if (spf->client_ip != NULL) {
			enc_value(enc, sizeof enc, spf->client_ip, false);
			str_append(line, sizeof line, " client-ip=", enc, ";", (char *)NULL);
		}
		if (spf->envelope_from != NULL) {
			/* Always quoted: a local part may hold anything. */
			enc_value(enc + 1, sizeof enc - 2, spf->envelope_from, true);
			if (enc[1] == '"')
				str_append(line, sizeof line, " envelope-from=", enc + 1, ";", (char *)NULL);
			else
				str_append(line, sizeof line, " envelope-from=\"", enc + 1, "\";", (char *)NULL);
		}
		if (spf->helo != NULL) {
			enc_value(enc, sizeof enc, spf->helo, false);
			str_append(line, sizeof line, " helo=", enc, ";", (char *)NULL);
		}
		if (spf->identity != NULL)
			str_append(line, sizeof line, " identity=", keyword(spf->identity), ";", (char *)NULL);
	} else {
		line[0] = '\0';
	}

	w_init(&w, buf, buflen);
	w_str(&w, "Received-SPF:");
	w_text_folded(&w, line);
	if (w.overflow || w.len <= strlen("Received-SPF:")) {
		if (buflen > 0)
			buf[0] = '\0';
		return -1;
	}
	return (int)w.len;
}

/* skip_cfws - skip white space, line breaks and (nested) comments. */
static const char *
skip_cfws(const char *p)
{
	int depth = 0;

	for (; *p; p++) {
		if (depth > 0) {
			if (*p == '\\' && p[1] != '\0')
				p++;
			else if (*p == '(')
				depth++;
			else if (*p == ')')
				depth--;
			continue;
		}
		if (*p == '(')
			depth++;
		else if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n')
			break;
	}
	return p;
}

/* same_host - compare host names case-insensitively, ignoring one
 * trailing dot on either side. */
static bool
same_host(const char *a, size_t alen, const char *b)
{
	size_t blen = strlen(b);

	if (alen > 0 && a[alen - 1] == '.')
		alen--;
	if (blen > 0 && b[blen - 1] == '.')
		blen--;
	return alen > 0 && alen == blen && strncasecmp(a, b, alen) == 0;
}

/* authres_is_ours - see authres.h. Anything after the authserv-id is not
 * checked: a field that starts with our id is ours or a forgery either
 * way, and removing a malformed one costs nothing. */
bool
authres_is_ours(const char *field_value, const char *hostname)
{
	char id[256];
	size_t n = 0;
	const char *p;

	if (field_value == NULL || hostname == NULL || *hostname == '\0')
		return false;
	p = skip_cfws(field_value);
	if (*p == '"') {
		for (p++; *p && *p != '"'; p++) {
			if (*p == '\\' && p[1] != '\0')
				p++;
			if (*p == '\r' || *p == '\n')
				continue;	/* folding inside the quotes */
			if (n >= sizeof id - 1)
				return false;
			id[n++] = *p;
		}
		if (*p != '"')
			return false;
	} else {
		for (; is_token_char((unsigned char)*p, false); p++) {
			if (n >= sizeof id - 1)
				return false;
			id[n++] = *p;
		}
	}
	id[n] = '\0';
	return same_host(id, n, hostname);
}
