/*
 * spf_lint.c - RFC 7208 section 12 syntax check of SPF records.
 *
 * libspf2 1.2.10 evaluates records that RFC 7208 calls permerror (bad
 * domain-spec top labels, invalid macro characters, duplicate redirect=
 * or exp=, NUL or 8-bit bytes, leading zeros in CIDR lengths, unknown
 * mechanisms such as "redirect:") and refuses valid unknown modifiers with
 * dots in their names. check_spf.c runs every SPF record it hands to
 * libspf2 through here first. Pure: no I/O, no allocation.
 *
 * Public:
 *   spf_lint_record(), spf_lint_defuse_text()
 */

/* System. */
#include <ctype.h>
#include <string.h>
#include <strings.h>

/* Project. */
#include "spf_lint.h"

/*
 * libspf2 compiles each term into a 511-byte buffer and underflows its
 * size when macros nearly fill it (CVE-2023-42118, not fixed in Debian
 * 12): terms whose estimated compiled size exceeds this are refused.
 */
#define SPF_LINT_TERM_MAX 300

/* spf_lint_estimate - rough upper bound of a term's compiled size in libspf2. */
static size_t
spf_lint_estimate(const char *s, size_t len)
{
	size_t i, est = len + 8;

	/* Only "%{" starts a new compiled block; %_ %% %- stay in the literal. */
	for (i = 0; i + 1 < len; i++)
		if (s[i] == '%' && s[i + 1] == '{')
			est += 8;
	return est;
}

/*
 * spf_lint_macro_string - validate a macro-string of len bytes; in_exp
 * allows the c, r, t letters. Sets *ends_macro when it ends with a
 * macro-expand. 0 or -1.
 */
static int
spf_lint_macro_string(const char *s, size_t len, int in_exp, int *ends_macro)
{
	size_t i = 0;

	*ends_macro = 0;
	while (i < len) {
		unsigned char c = s[i];

		if (c != '%') {
			if (c < 0x21 || c > 0x7e)
				return -1;
			*ends_macro = 0;
			i++;
			continue;
		}
		if (i + 1 >= len)
			return -1;
		c = s[i + 1];
		if (c == '%' || c == '_' || c == '-') {
			i += 2;
			*ends_macro = 1;
			continue;
		}
		if (c != '{' || i + 2 >= len)
			return -1;
		i += 2;
		c = tolower((unsigned char)s[i]);
		if (strchr("slodiphv", c) == NULL && !(in_exp && strchr("crt", c) != NULL))
			return -1;
		i++;
		while (i < len && isdigit((unsigned char)s[i]))
			i++;
		if (i < len && (s[i] == 'r' || s[i] == 'R'))
			i++;
		while (i < len && strchr(".-+,/_=", s[i]) != NULL)
			i++;
		if (i >= len || s[i] != '}')
			return -1;
		i++;
		*ends_macro = 1;
	}
	return 0;
}

/* spf_lint_toplabel - RFC 7208 toplabel: alphanumerics and "-", not all digits. */
static int
spf_lint_toplabel(const char *s, size_t len)
{
	size_t i;
	int alpha = 0, hyphen = 0;

	if (len == 0 || s[0] == '-' || s[len - 1] == '-')
		return 0;
	for (i = 0; i < len; i++) {
		if (isalpha((unsigned char)s[i]))
			alpha = 1;
		else if (s[i] == '-')
			hyphen = 1;
		else if (!isdigit((unsigned char)s[i]))
			return 0;
	}
	return alpha || hyphen;
}

/* spf_lint_domain_spec - macro-string domain-end (RFC 7208 7.1). 0 or -1. */
static int
spf_lint_domain_spec(const char *s, size_t len)
{
	const char *dot;
	int ends_macro;

	if (len == 0 || spf_lint_macro_string(s, len, 0, &ends_macro) < 0)
		return -1;
	if (ends_macro)
		return 0;
	if (s[len - 1] == '.')
		len--;
	dot = NULL;
	for (size_t i = 0; i < len; i++)
		if (s[i] == '.')
			dot = s + i;
	if (dot == NULL)
		return -1;
	return spf_lint_toplabel(dot + 1, len - (dot + 1 - s)) ? 0 : -1;
}

/* spf_lint_cidr - "/" length without leading zero, at most max. 0 or -1. */
static int
spf_lint_cidr(const char *s, size_t len, int max)
{
	int v = 0;
	size_t i;

	if (len < 2 || s[0] != '/' || len > 4)
		return -1;
	if (s[1] == '0' && len > 2)
		return -1;
	for (i = 1; i < len; i++) {
		if (!isdigit((unsigned char)s[i]))
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v <= max ? 0 : -1;
}

/* spf_lint_dual_cidr - [ "/" ip4-len ] [ "//" ip6-len ] after a or mx. 0 or -1. */
static int
spf_lint_dual_cidr(const char *s, size_t len)
{
	const char *v6 = NULL;
	size_t i;

	if (len == 0)
		return 0;
	for (i = 0; i + 1 < len; i++)
		if (s[i] == '/' && s[i + 1] == '/') {
			v6 = s + i;
			break;
		}
	if (v6 == NULL)
		return spf_lint_cidr(s, len, 32);
	if (v6 > s && spf_lint_cidr(s, v6 - s, 32) < 0)
		return -1;
	return spf_lint_cidr(v6 + 1, len - (v6 + 1 - s), 128);
}

/* spf_lint_slash - offset of the first "/" outside a %{...} macro, or len. */
static size_t
spf_lint_slash(const char *s, size_t len)
{
	size_t i;
	int in_macro = 0;

	for (i = 0; i < len; i++) {
		if (s[i] == '%' && i + 1 < len && s[i + 1] == '{')
			in_macro = 1;
		else if (s[i] == '}')
			in_macro = 0;
		else if (s[i] == '/' && !in_macro)
			return i;
	}
	return len;
}

/* spf_lint_trailing_cidr - where a trailing "/N", "//N" or "/N//N" starts, else len. */
static size_t
spf_lint_trailing_cidr(const char *s, size_t len)
{
	size_t p = len, d;

	/* One "/digits" group from the end; 0 if there is none at p. */
	for (int group = 0; group < 2; group++) {
		d = p;
		while (d > 0 && isdigit((unsigned char)s[d - 1]))
			d--;
		if (d == p || d == 0 || s[d - 1] != '/')
			break;
		d--;
		if (group == 0 && d > 0 && s[d - 1] == '/') {
			/* "//N": the IPv6 length; an IPv4 one may precede it. */
			p = d - 1;
			continue;
		}
		p = d;
		break;
	}
	return p;
}

/* spf_lint_mechanism - one directive without its qualifier. NULL or a reason. */
static const char *
spf_lint_mechanism(const char *t, size_t len)
{
	size_t n = 0, slash;
	const char *arg;
	size_t alen, cidr;

	while (n < len && isalnum((unsigned char)t[n]))
		n++;
	arg = t + n;
	alen = len - n;
	if (n == 3 && strncasecmp(t, "all", 3) == 0)
		return alen == 0 ? NULL : "arguments to all";
	if ((n == 7 && strncasecmp(t, "include", 7) == 0) ||
	    (n == 6 && strncasecmp(t, "exists", 6) == 0)) {
		if (alen < 1 || arg[0] != ':' || spf_lint_domain_spec(arg + 1, alen - 1) < 0)
			return "bad domain-spec";
		return NULL;
	}
	if (n == 3 && strncasecmp(t, "ptr", 3) == 0) {
		if (alen == 0)
			return NULL;
		if (arg[0] != ':' || spf_lint_domain_spec(arg + 1, alen - 1) < 0)
			return "bad domain-spec";
		return NULL;
	}
	if ((n == 1 && strncasecmp(t, "a", 1) == 0) || (n == 2 && strncasecmp(t, "mx", 2) == 0)) {
		/* The domain-spec may hold "/": the CIDR part is a trailing /N[//N]. */
		cidr = spf_lint_trailing_cidr(arg, alen);
		if (alen > 0 && arg[0] == ':' && spf_lint_domain_spec(arg + 1, cidr - 1) < 0)
			return "bad domain-spec";
		if (alen > 0 && arg[0] != ':' && cidr != 0)
			return "bad a/mx argument";
		arg += cidr;
		alen -= cidr;
		return spf_lint_dual_cidr(arg, alen) < 0 ? "bad CIDR length" : NULL;
	}
	if ((n == 3 && strncasecmp(t, "ip4", 3) == 0) || (n == 3 && strncasecmp(t, "ip6", 3) == 0)) {
		/* libspf2 checks the address; catch what it lets through. */
		if (alen < 2 || arg[0] != ':')
			return "bad ip4/ip6 argument";
		slash = spf_lint_slash(arg, alen);
		if (slash < alen && spf_lint_cidr(arg + slash, alen - slash, t[2] == '4' ? 32 : 128) < 0)
			return "bad CIDR length";
		return NULL;
	}
	return "unknown mechanism";
}

/*
 * spf_lint_term - classify and check one term. Returns a reason, or NULL
 * with *drop set for an unknown modifier to remove; counts redirect/exp.
 */
static const char *
spf_lint_term(const char *t, size_t len, int *drop, int *redirects, int *exps)
{
	size_t n = 0;
	int ends_macro;

	*drop = 0;
	if (spf_lint_estimate(t, len) > SPF_LINT_TERM_MAX)
		return "term too long";
	/* A modifier: name "=" ...; name = ALPHA *( ALPHA / DIGIT / "-" / "_" / "." ). */
	if (isalpha((unsigned char)t[0])) {
		while (n < len && (isalnum((unsigned char)t[n]) || strchr("-_.", t[n]) != NULL))
			n++;
		if (n < len && t[n] == '=') {
			if (n == 8 && strncasecmp(t, "redirect", 8) == 0) {
				(*redirects)++;
				return spf_lint_domain_spec(t + 9, len - 9) < 0 ? "bad redirect= domain" : NULL;
			}
			if (n == 3 && strncasecmp(t, "exp", 3) == 0) {
				(*exps)++;
				return spf_lint_domain_spec(t + 4, len - 4) < 0 ? "bad exp= domain" : NULL;
			}
			if (spf_lint_macro_string(t + n + 1, len - n - 1, 0, &ends_macro) < 0)
				return "bad modifier value";
			*drop = 1;
			return NULL;
		}
	}
	if (t[0] == '+' || t[0] == '-' || t[0] == '?' || t[0] == '~') {
		t++;
		len--;
	}
	if (len == 0)
		return "empty directive";
	return spf_lint_mechanism(t, len);
}

/* spf_lint_record - check and normalise one SPF record (see spf_lint.h). */
const char *
spf_lint_record(char *rec, size_t len)
{
	const char *why;
	size_t r, w, start;
	int drop, redirects = 0, exps = 0;

	if (strlen(rec) != len)
		return "NUL byte in record";
	for (r = 0; r < len; r++)
		if ((unsigned char)rec[r] < 0x20 || (unsigned char)rec[r] > 0x7e)
			return "non-ASCII or control character in record";
	if (len < 6 || strncasecmp(rec, "v=spf1", 6) != 0 || (len > 6 && rec[6] != ' '))
		return "not an SPF record";
	/* Copy kept terms down over dropped ones: w never passes r. */
	w = 6;
	r = 6;
	while (r < len) {
		while (r < len && rec[r] == ' ')
			r++;
		if (r >= len)
			break;
		start = r;
		while (r < len && rec[r] != ' ')
			r++;
		if ((why = spf_lint_term(rec + start, r - start, &drop, &redirects, &exps)) != NULL)
			return why;
		if (drop)
			continue;
		rec[w++] = ' ';
		memmove(rec + w, rec + start, r - start);
		w += r - start;
	}
	rec[w] = '\0';
	if (redirects > 1)
		return "more than one redirect=";
	if (exps > 1)
		return "more than one exp=";
	return NULL;
}

/* spf_lint_defuse_text - an explanation too big for libspf2 loses its macros. */
void
spf_lint_defuse_text(char *txt)
{
	size_t i, len = strlen(txt);

	if (spf_lint_estimate(txt, len) <= SPF_LINT_TERM_MAX)
		return;
	for (i = 0; i + 1 < len; i++)
		if (txt[i] == '%' && txt[i + 1] == '{')
			txt[i] = '?';
}
