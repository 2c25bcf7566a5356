/*
 * check_spoof.c - sender spoofing heuristics (issue 6).
 *
 * Display names: a From: display name that carries an address of another
 * domain ("ceo@example.org" <x@evil.test>), or that names a protected
 * identity (spoof_protected_names) while coming from a domain not allowed
 * for it. Look-alike domains: a domain that is not local but imitates one
 * after punycode decoding (RFC 3492) and a small confusables map, or is
 * one edit (Damerau) away from it, or is the same name under another
 * suffix. Pure: no I/O after loading, no state, safe from any thread.
 *
 * Public:
 *   spoof_conf_new(), spoof_conf_free(), spoof_conf_add_local(),
 *   spoof_conf_load_locals(), spoof_conf_load_names(),
 *   spoof_conf_names_count(), spoof_display_name(), spoof_lookalike(),
 *   spoof_punycode_decode(), spoof_skeleton(), spoof_edit_distance(),
 *   spoof_split_domain(), spoof_same_org()
 */

/* System. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Library. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

/* Project. */
#include "check_spoof.h"
#include "fmt.h"
#include "strcopy.h"

/* Longest label we compare (RFC 1035: 63 octets; decoded may be longer). */
#define SPOOF_LABEL_MAX 256
/* Shorter local names are not compared by edit distance ("ab" vs "ac"). */
#define SPOOF_EDIT_MIN_LEN 4

/* One protected display name and the domains allowed to use it. */
struct spoof_name {
	char *substr;          /* case-insensitive substring, or NULL */
	pcre2_code *re;        /* or a caseless regex */
	char **domains;
	size_t ndomains;
};

struct spoof_conf {
	char **locals;
	size_t nlocals;
	struct spoof_name *names;
	size_t nnames;
};

/* spoof_conf_new - an empty configuration. */
struct spoof_conf *
spoof_conf_new(void)
{
	return calloc(1, sizeof(struct spoof_conf));
}

/* spoof_conf_free - release everything; NULL is fine. */
void
spoof_conf_free(struct spoof_conf *sc)
{
	if (!sc)
		return;
	for (size_t i = 0; i < sc->nlocals; i++)
		free(sc->locals[i]);
	free(sc->locals);
	for (size_t i = 0; i < sc->nnames; i++) {
		free(sc->names[i].substr);
		if (sc->names[i].re)
			pcre2_code_free(sc->names[i].re);
		for (size_t k = 0; k < sc->names[i].ndomains; k++)
			free(sc->names[i].domains[k]);
		free(sc->names[i].domains);
	}
	free(sc->names);
	free(sc);
}

/* push - append a copy of s to a string array. */
static int
push(char ***arr, size_t *n, const char *s, size_t len)
{
	char **na = realloc(*arr, (*n + 1) * sizeof(*na));
	if (!na)
		return -1;
	*arr = na;
	if (!(na[*n] = strndup(s, len)))
		return -1;
	for (char *p = na[*n]; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	(*n)++;
	return 0;
}

/* spoof_conf_add_local - one local domain; a leading dot is dropped. */
int
spoof_conf_add_local(struct spoof_conf *sc, const char *domain)
{
	while (*domain == '.')
		domain++;
	if (!*domain || strchr(domain, '@') || strchr(domain, '/'))
		return 0;   /* not a domain (addresses in a shared file): ignore */
	return push(&sc->locals, &sc->nlocals, domain, strlen(domain));
}

/* spoof_conf_load_locals - the domain entries of a local_domains file. */
int
spoof_conf_load_locals(struct spoof_conf *sc, const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	char line[1024];

	if (!f) {
		str_copy(err, errlen, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), f)) {
		char *hash = strchr(line, '#'), *save = NULL;
		if (hash)
			*hash = '\0';
		for (char *t = strtok_r(line, " \t\r\n", &save); t; t = strtok_r(NULL, " \t\r\n", &save))
			if (spoof_conf_add_local(sc, t) < 0) {
				fclose(f);
				fmt_snprintf(err, errlen, "out of memory");
				return -1;
			}
	}
	fclose(f);
	return 0;
}

/* parse_name_line - one "PATTERN domain[,domain...]" line; NULL or an error. */
static const char *
parse_name_line(struct spoof_conf *sc, char *line)
{
	struct spoof_name nm = { 0 };
	char *p = line, *pat, *end;

	while (isspace((unsigned char)*p))
		p++;
	if (*p == '"' || *p == '/') {
		char q = *p++;
		pat = p;
		if (!(end = strrchr(p, q)) || end == pat)
			return q == '"' ? "unterminated quoted name" : "unterminated /regex/";
		*end = '\0';
		p = end + 1;
		if (!isspace((unsigned char)*p))
			return "expected white space after the pattern";
		if (q == '/') {
			int ec;
			PCRE2_SIZE off;
			nm.re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_CASELESS, &ec,
					      &off, NULL);
			if (!nm.re)
				return "bad regular expression";
		} else
			nm.substr = strdup(pat);
	} else {
		pat = p;
		while (*p && !isspace((unsigned char)*p))
			p++;
		if (!*p)
			/* Before nm.substr is set: nothing leaks. */
			// cppcheck-suppress memleak
			return "expected PATTERN domain[,domain...]";
		*p++ = '\0';
		nm.substr = strdup(pat);
	}
	while (isspace((unsigned char)*p))
		p++;
	end = p + strlen(p);
	while (end > p && isspace((unsigned char)end[-1]))
		*--end = '\0';
	const char *err = NULL;
	if (!*p || strpbrk(p, " \t"))
		err = "expected one comma-separated domain list after the pattern";
	for (char *save = NULL, *d = err ? NULL : strtok_r(p, ",", &save); d; d = strtok_r(NULL, ",", &save))
		if (push(&nm.domains, &nm.ndomains, d, strlen(d)) < 0)
			err = "out of memory";
	if (!err && !nm.substr && !nm.re)
		err = "out of memory";
	struct spoof_name *nn = err ? NULL : realloc(sc->names, (sc->nnames + 1) * sizeof(*nn));
	if (!nn) {
		free(nm.substr);
		if (nm.re)
			pcre2_code_free(nm.re);
		for (size_t k = 0; k < nm.ndomains; k++)
			free(nm.domains[k]);
		free(nm.domains);
		return err ? err : "out of memory";
	}
	sc->names = nn;
	sc->names[sc->nnames++] = nm;
	return NULL;
}

/* spoof_conf_load_names - the spoof_protected_names file. */
int
spoof_conf_load_names(struct spoof_conf *sc, const char *path, char *err, size_t errlen)
{
	FILE *f = fopen(path, "r");
	char line[2048];
	int lno = 0, rc = 0;

	if (!f) {
		str_copy(err, errlen, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), f)) {
		lno++;
		char *p = line;
		while (isspace((unsigned char)*p))
			p++;
		if (!*p || *p == '#')
			continue;
		line[strcspn(line, "\r\n")] = '\0';
		const char *e = parse_name_line(sc, line);
		if (e) {
			fmt_snprintf(err, errlen, "%d: %s", lno, e);
			rc = -1;
			break;
		}
	}
	fclose(f);
	return rc;
}

/* spoof_conf_names_count - how many protected names were loaded. */
size_t
spoof_conf_names_count(const struct spoof_conf *sc)
{
	return sc ? sc->nnames : 0;
}

/* ---- display names ---- */

/* domain_allowed - d equals an entry, or is under a ".entry". */
static bool
domain_allowed(const struct spoof_name *nm, const char *d)
{
	size_t dl = strlen(d);
	for (size_t i = 0; i < nm->ndomains; i++) {
		const char *e = nm->domains[i];
		size_t el = strlen(e);
		if (e[0] == '.') {
			if (dl > el && strcasecmp(d + dl - el, e) == 0)
				return true;
		} else if (strcasecmp(d, e) == 0)
			return true;
	}
	return false;
}

/* name_matches - a protected pattern occurs in the display name. */
static bool
name_matches(const struct spoof_name *nm, const char *name)
{
	if (nm->substr)
		return strcasestr(name, nm->substr) != NULL;
	pcre2_match_data *md = pcre2_match_data_create_from_pattern(nm->re, NULL);
	if (!md)
		return false;
	int rc = pcre2_match(nm->re, (PCRE2_SPTR)name, strlen(name), 0, 0, md, NULL);
	pcre2_match_data_free(md);
	return rc >= 0;
}

/* addr_char - may appear in an address's local part. */
static bool
local_char(unsigned char c)
{
	return isalnum(c) || strchr("._%+-'", c) != NULL;
}

/* foreign_address - an address-like "x@y.z" in name whose domain is not from. */
static bool
foreign_address(const char *name, const char *from, char *dom, size_t domlen)
{
	for (const char *at = strchr(name, '@'); at; at = strchr(at + 1, '@')) {
		if (at == name || !local_char((unsigned char)at[-1]))
			continue;
		const char *e = at + 1;
		while (isalnum((unsigned char)*e) || *e == '.' || *e == '-')
			e++;
		while (e > at + 1 && e[-1] == '.')
			e--;
		size_t n = (size_t)(e - at - 1);
		if (n == 0 || !memchr(at + 1, '.', n))
			continue;
		if (n == strlen(from) && strncasecmp(at + 1, from, n) == 0)
			continue;
		fmt_snprintf(dom, domlen, "%.*s", (int)n, at + 1);
		return true;
	}
	return false;
}

/* spoof_display_name - see check_spoof.h. */
bool
spoof_display_name(const struct spoof_conf *sc, const char *name, const char *from_domain,
		   char *why, size_t whylen)
{
	char dom[256];

	if (!name || !*name || !from_domain)
		return false;
	if (foreign_address(name, from_domain, dom, sizeof(dom))) {
		if (why)
			fmt_snprintf(why, whylen, "display name holds an address at %s", dom);
		return true;
	}
	for (size_t i = 0; sc && i < sc->nnames; i++)
		if (name_matches(&sc->names[i], name) && !domain_allowed(&sc->names[i], from_domain)) {
			if (why)
				fmt_snprintf(why, whylen, "protected name %s from %s",
					 sc->names[i].substr ? sc->names[i].substr : "/regex/", from_domain);
			return true;
		}
	return false;
}

/* ---- look-alike domains ---- */

/* RFC 3492 section 5 parameters. */
enum { PC_BASE = 36, PC_TMIN = 1, PC_TMAX = 26, PC_SKEW = 38, PC_DAMP = 700, PC_BIAS = 72, PC_N = 128 };

/* adapt - RFC 3492 section 6.1 bias adaptation. */
static uint32_t
adapt(uint32_t delta, uint32_t numpoints, bool first)
{
	uint32_t k = 0;
	delta = first ? delta / PC_DAMP : delta / 2;
	delta += delta / numpoints;
	while (delta > ((PC_BASE - PC_TMIN) * PC_TMAX) / 2) {
		delta /= PC_BASE - PC_TMIN;
		k += PC_BASE;
	}
	return k + (PC_BASE - PC_TMIN + 1) * delta / (delta + PC_SKEW);
}

/* digit - a base-36 digit, case-insensitive; PC_BASE when invalid. */
static uint32_t
digit(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return (uint32_t)(c - '0' + 26);
	if (c >= 'a' && c <= 'z')
		return (uint32_t)(c - 'a');
	if (c >= 'A' && c <= 'Z')
		return (uint32_t)(c - 'A');
	return PC_BASE;
}

/* spoof_punycode_decode - RFC 3492 section 6.2, with overflow checks. */
int
spoof_punycode_decode(const char *in, size_t len, uint32_t *out, size_t max)
{
	uint32_t n = PC_N, i = 0, bias = PC_BIAS;
	size_t nout = 0, b = 0, pos;

	for (size_t j = 0; j < len; j++)
		if (in[j] == '-')
			b = j;
	for (size_t j = 0; j < b; j++) {
		if ((unsigned char)in[j] >= 0x80 || nout >= max)
			return -1;
		out[nout++] = (unsigned char)in[j];
	}
	for (pos = b > 0 ? b + 1 : 0; pos < len;) {
		uint32_t oldi = i, w = 1;
		for (uint32_t k = PC_BASE;; k += PC_BASE) {
			if (pos >= len)
				return -1;
			uint32_t d = digit((unsigned char)in[pos++]);
			if (d >= PC_BASE || d > (UINT32_MAX - i) / w)
				return -1;
			i += d * w;
			uint32_t t = k <= bias ? PC_TMIN : k >= bias + PC_TMAX ? PC_TMAX : k - bias;
			if (d < t)
				break;
			if (w > UINT32_MAX / (PC_BASE - t))
				return -1;
			w *= PC_BASE - t;
		}
		bias = adapt(i - oldi, (uint32_t)nout + 1, oldi == 0);
		if (i / (nout + 1) > UINT32_MAX - n)
			return -1;
		n += i / (uint32_t)(nout + 1);
		i %= (uint32_t)(nout + 1);
		if (nout >= max || n > 0x10FFFF)
			return -1;
		memmove(out + i + 1, out + i, (nout - i) * sizeof(*out));
		out[i++] = n;
		nout++;
	}
	return (int)nout;
}

/* Confusable code points and the Latin letter they pass for. */
static const struct {
	uint32_t cp;
	char to;
} confusables[] = {
	/* Cyrillic */
	{ 0x0430, 'a' }, { 0x0435, 'e' }, { 0x043e, 'o' }, { 0x0440, 'p' }, { 0x0441, 'c' },
	{ 0x0443, 'y' }, { 0x0445, 'x' }, { 0x0456, 'i' }, { 0x0458, 'j' }, { 0x0455, 's' },
	{ 0x0501, 'd' }, { 0x04bb, 'h' }, { 0x0432, 'b' }, { 0x043a, 'k' }, { 0x043c, 'm' },
	{ 0x043d, 'h' }, { 0x0442, 't' }, { 0x051b, 'q' }, { 0x051d, 'w' }, { 0x0457, 'i' },
	/* Greek */
	{ 0x03b1, 'a' }, { 0x03bf, 'o' }, { 0x03c1, 'p' }, { 0x03bd, 'v' }, { 0x03b9, 'i' },
	{ 0x03ba, 'k' }, { 0x03c4, 't' }, { 0x03c5, 'u' }, { 0x03b5, 'e' }, { 0x03c7, 'x' },
	/* Latin with diacritics and other Latin look-alikes */
	{ 0x00e0, 'a' }, { 0x00e1, 'a' }, { 0x00e2, 'a' }, { 0x00e3, 'a' }, { 0x00e4, 'a' },
	{ 0x00e5, 'a' }, { 0x00e7, 'c' }, { 0x00e8, 'e' }, { 0x00e9, 'e' }, { 0x00ea, 'e' },
	{ 0x00eb, 'e' }, { 0x00ec, 'i' }, { 0x00ed, 'i' }, { 0x00ee, 'i' }, { 0x00ef, 'i' },
	{ 0x00f1, 'n' }, { 0x00f2, 'o' }, { 0x00f3, 'o' }, { 0x00f4, 'o' }, { 0x00f5, 'o' },
	{ 0x00f6, 'o' }, { 0x00f8, 'o' }, { 0x00f9, 'u' }, { 0x00fa, 'u' }, { 0x00fb, 'u' },
	{ 0x00fc, 'u' }, { 0x00fd, 'y' }, { 0x00ff, 'y' }, { 0x0131, 'i' }, { 0x0261, 'g' },
	{ 0x0251, 'a' }, { 0x1e37, 'l' }, { 0x1ecd, 'o' }, { 0x0142, 'l' },
};

/* map_cp - the skeleton letter of one code point ('#' when it has none). */
static char
map_cp(uint32_t cp)
{
	if (cp < 0x80) {
		char c = (char)tolower((int)cp);
		return c == '0' ? 'o' : c == '1' ? 'l' : c;
	}
	for (size_t i = 0; i < sizeof(confusables) / sizeof(confusables[0]); i++)
		if (confusables[i].cp == cp)
			return confusables[i].to;
	return '#';
}

/* spoof_skeleton - see check_spoof.h. */
size_t
spoof_skeleton(const char *label, size_t len, char *out, size_t outlen)
{
	uint32_t cps[SPOOF_LABEL_MAX];
	int n;
	char tmp[SPOOF_LABEL_MAX + 1];
	size_t k = 0;

	if (len > 4 && strncasecmp(label, "xn--", 4) == 0)
		n = spoof_punycode_decode(label + 4, len - 4, cps, SPOOF_LABEL_MAX);
	else {
		n = len > SPOOF_LABEL_MAX ? -1 : (int)len;
		for (int i = 0; i < n; i++)
			cps[i] = (unsigned char)label[i];
	}
	if (n < 0) {
		/* Undecodable: compare it as written, which resembles nothing. */
		n = len > SPOOF_LABEL_MAX ? SPOOF_LABEL_MAX : (int)len;
		for (int i = 0; i < n; i++)
			cps[i] = (unsigned char)label[i];
	}
	for (int i = 0; i < n; i++)
		tmp[i] = map_cp(cps[i]);
	tmp[n] = '\0';
	/* Multi-letter look-alikes: "rn" reads as "m", "vv" as "w". */
	for (int i = 0; i < n && k + 1 < outlen; i++) {
		if ((tmp[i] == 'r' && tmp[i + 1] == 'n') || (tmp[i] == 'v' && tmp[i + 1] == 'v')) {
			out[k++] = tmp[i] == 'r' ? 'm' : 'w';
			i++;
		} else
			out[k++] = tmp[i];
	}
	if (outlen)
		out[k] = '\0';
	return k;
}

/* spoof_edit_distance - optimal string alignment distance, two rows kept. */
int
spoof_edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la > SPOOF_LABEL_MAX || lb > SPOOF_LABEL_MAX)
		return -1;
	int prev2[SPOOF_LABEL_MAX + 1], prev[SPOOF_LABEL_MAX + 1], cur[SPOOF_LABEL_MAX + 1];

	for (size_t j = 0; j <= lb; j++)
		prev[j] = (int)j;
	for (size_t i = 1; i <= la; i++) {
		cur[0] = (int)i;
		for (size_t j = 1; j <= lb; j++) {
			int cost = a[i - 1] != b[j - 1];
			int v = prev[j] + 1;
			if (cur[j - 1] + 1 < v)
				v = cur[j - 1] + 1;
			if (prev[j - 1] + cost < v)
				v = prev[j - 1] + cost;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && prev2[j - 2] + 1 < v)
				v = prev2[j - 2] + 1;
			cur[j] = v;
		}
		memcpy(prev2, prev, sizeof(int) * (lb + 1));
		memcpy(prev, cur, sizeof(int) * (lb + 1));
	}
	return prev[lb];
}

/* spoof_split_domain - see check_spoof.h. */
bool
spoof_split_domain(const char *domain, char *name, size_t namelen, char *suffix, size_t suffixlen)
{
	static const char *const sld[] = { "co", "com", "net", "org", "ac", "gov", "edu", NULL };
	size_t len = strlen(domain), dots[3], nd = 0;

	while (len && domain[len - 1] == '.')
		len--;
	/* The last three dots, right to left. */
	for (size_t i = len; i > 0 && nd < 3; i--)
		if (domain[i - 1] == '.')
			dots[nd++] = i - 1;
	if (nd == 0)
		return false;
	size_t suf = dots[0] + 1;   /* start of the suffix */
	size_t k = 1;               /* dots[k], if any, precedes the name */
	if (len - suf == 2) {
		size_t ps = nd >= 2 ? dots[1] + 1 : 0, pl = dots[0] - ps;
		for (int i = 0; sld[i]; i++)
			if (strlen(sld[i]) == pl && strncasecmp(domain + ps, sld[i], pl) == 0) {
				if (nd < 2)
					return false;   /* "co.uk" is a suffix, nobody's name */
				suf = dots[1] + 1;
				k = 2;
				break;
			}
	}
	size_t start = k < nd ? dots[k] + 1 : 0;
	if (suf - 1 <= start)
		return false;
	/* Not snprintf: this runs for every local domain on every message. */
	str_copy_n(name, namelen, domain + start, suf - 1 - start);
	str_copy_n(suffix, suffixlen, domain + suf, len - suf);
	return true;
}

/* spoof_same_org - same registrable label under the same suffix. */
bool
spoof_same_org(const char *a, const char *b)
{
	char an[SPOOF_LABEL_MAX], as[SPOOF_LABEL_MAX], bn[SPOOF_LABEL_MAX], bs[SPOOF_LABEL_MAX];

	if (!spoof_split_domain(a, an, sizeof(an), as, sizeof(as)) ||
	    !spoof_split_domain(b, bn, sizeof(bn), bs, sizeof(bs)))
		return strcasecmp(a, b) == 0;
	return strcasecmp(an, bn) == 0 && strcasecmp(as, bs) == 0;
}

/* resembles - one non-local domain against one local domain. */
static bool
resembles(const char *dname, const char *dsuf, const char *dskel, const char *local)
{
	char lname[SPOOF_LABEL_MAX], lsuf[SPOOF_LABEL_MAX], lskel[SPOOF_LABEL_MAX];

	if (!spoof_split_domain(local, lname, sizeof(lname), lsuf, sizeof(lsuf)))
		return false;
	bool same_suffix = strcasecmp(dsuf, lsuf) == 0;
	if (strcasecmp(dname, lname) == 0)
		return !same_suffix;   /* a swapped TLD (same suffix: caught before) */
	spoof_skeleton(lname, strlen(lname), lskel, sizeof(lskel));
	if (strcmp(dskel, lskel) == 0)
		return true;           /* homoglyphs, any suffix */
	return same_suffix && strlen(lskel) >= SPOOF_EDIT_MIN_LEN && spoof_edit_distance(dskel, lskel) == 1;
}

/* spoof_lookalike - see check_spoof.h. */
bool
spoof_lookalike(const struct spoof_conf *sc, const char *domain, char *which, size_t whichlen)
{
	char dname[SPOOF_LABEL_MAX], dsuf[SPOOF_LABEL_MAX], dskel[SPOOF_LABEL_MAX];

	if (!sc || !domain || !*domain ||
	    !spoof_split_domain(domain, dname, sizeof(dname), dsuf, sizeof(dsuf)))
		return false;
	spoof_skeleton(dname, strlen(dname), dskel, sizeof(dskel));
	/* A sibling of a local domain (mail.example.org) is the same organisation. */
	for (size_t i = 0; i < sc->nlocals; i++) {
		char lname[SPOOF_LABEL_MAX], lsuf[SPOOF_LABEL_MAX];
		if (spoof_split_domain(sc->locals[i], lname, sizeof(lname), lsuf, sizeof(lsuf)) &&
		    strcasecmp(dname, lname) == 0 && strcasecmp(dsuf, lsuf) == 0)
			return false;
	}
	for (size_t i = 0; i < sc->nlocals; i++)
		if (resembles(dname, dsuf, dskel, sc->locals[i])) {
			if (which)
				str_copy(which, whichlen, sc->locals[i]);
			return true;
		}
	return false;
}
