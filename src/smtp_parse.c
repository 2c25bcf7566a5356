/*
 * smtp_parse.c - pure SMTP command, path and ESMTP parameter parsing.
 *
 * Knows nothing about session state and does no I/O: the session hands it
 * the bytes it has, and it answers with complete commands, strictly parsed
 * RFC 5321 paths (RFC 6531 UTF-8 allowed) and ESMTP parameters. Bounded by
 * SMTP_LINE_MAX everywhere; fuzzed by tests/fuzz/fuzz_smtp_parse.c.
 *
 * Public:
 *   smtp_line_find(), smtp_cmd_parse(), smtp_path_parse(), smtp_param_get(),
 *   smtp_domain_valid(), smtp_xtext_valid()
 */

/* System. */
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <string.h>
#include <strings.h>

/* Project. */
#include "smtp_parse.h"

static const struct {
	const char *name;
	enum smtp_verb verb;
} verbs[] = {
	{ "HELO", SMTP_HELO }, { "EHLO", SMTP_EHLO }, { "MAIL", SMTP_MAIL }, { "RCPT", SMTP_RCPT },
	{ "DATA", SMTP_DATA }, { "BDAT", SMTP_BDAT }, { "RSET", SMTP_RSET }, { "NOOP", SMTP_NOOP },
	{ "QUIT", SMTP_QUIT }, { "HELP", SMTP_HELP }, { "VRFY", SMTP_VRFY }, { "EXPN", SMTP_EXPN },
	{ "STARTTLS", SMTP_STARTTLS }, { "AUTH", SMTP_AUTH }, { "XCLIENT", SMTP_XCLIENT },
	{ "ETRN", SMTP_ETRN },
	/* Postfix's smtpd_forbidden_commands: an HTTP proxy abusing port 25. */
	{ "GET", SMTP_HTTP }, { "POST", SMTP_HTTP }, { "CONNECT", SMTP_HTTP }, { "PUT", SMTP_HTTP },
	{ "HEAD", SMTP_HTTP },
};

/* smtp_line_find - look for CRLF (or LF) within SMTP_LINE_MAX bytes. */
enum smtp_line_status
smtp_line_find(const char *buf, size_t len, size_t *linelen, size_t *termlen)
{
	size_t max = len < SMTP_LINE_MAX ? len : SMTP_LINE_MAX;
	const char *lf = memchr(buf, '\n', max);

	if (!lf)
		return len >= SMTP_LINE_MAX ? SMTP_LINE_TOO_LONG : SMTP_LINE_MORE;
	size_t n = lf - buf;
	if (n > 0 && buf[n - 1] == '\r') {
		*linelen = n - 1;
		*termlen = 2;
	} else {
		*linelen = n;
		*termlen = 1;
	}
	return SMTP_LINE_OK;
}

/* smtp_cmd_parse - split a line into verb and argument. */
int
smtp_cmd_parse(const char *line, size_t len, struct smtp_cmd *cmd)
{
	size_t i, vlen;

	memset(cmd, 0, sizeof(*cmd));
	for (i = 0; i < len; i++) {
		unsigned char c = line[i];
		/* NUL or other control bytes have no business in a command. */
		if (c == 0 || (c < 0x20 && c != '\t') || c == 0x7f)
			return -1;
	}
	for (vlen = 0; vlen < len && line[vlen] != ' '; vlen++)
		;
	cmd->verb_text = line;
	cmd->verb_len = vlen;
	cmd->verb = SMTP_UNKNOWN;
	for (i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++)
		if (strlen(verbs[i].name) == vlen && strncasecmp(verbs[i].name, line, vlen) == 0) {
			cmd->verb = verbs[i].verb;
			break;
		}
	/* One space separates verb and argument; trailing spaces are dropped
	 * by the caller's copy (see smtp_session). */
	cmd->arg = vlen < len ? line + vlen + 1 : line + len;
	return 0;
}

/* utf8_seq - length of a valid UTF-8 sequence at s (0 when invalid). */
static size_t
utf8_seq(const unsigned char *s, size_t len)
{
	size_t n;
	unsigned cp;

	if (s[0] < 0x80)
		return 1;
	if ((s[0] & 0xe0) == 0xc0) {
		n = 2;
		cp = s[0] & 0x1f;
	} else if ((s[0] & 0xf0) == 0xe0) {
		n = 3;
		cp = s[0] & 0x0f;
	} else if ((s[0] & 0xf8) == 0xf0) {
		n = 4;
		cp = s[0] & 0x07;
	} else
		return 0;
	if (n > len)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	/* Overlong forms, surrogates and out-of-range code points. */
	if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
	    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return n;
}

/* is_atext - RFC 5322 atext. */
static int
is_atext(unsigned char c)
{
	return isalnum(c) || (c && strchr("!#$%&'*+-/=?^_`{|}~", c));
}

/* smtp_domain_valid - RFC 5321 Domain (optionally with UTF-8 U-labels). */
bool
smtp_domain_valid(const char *d, size_t len, bool allow_utf8)
{
	size_t label = 0;
	const unsigned char *s = (const unsigned char *)d;

	if (len == 0 || len > SMTP_DOMAIN_MAX)
		return false;
	for (size_t i = 0; i < len;) {
		unsigned char c = s[i];
		if (c == '.') {
			/* No empty label, no label ending in '-'. */
			if (label == 0 || s[i - 1] == '-')
				return false;
			label = 0;
			i++;
			continue;
		}
		if (c >= 0x80) {
			size_t n;
			if (!allow_utf8 || !(n = utf8_seq(s + i, len - i)))
				return false;
			label += n;
			i += n;
			continue;
		}
		if (!isalnum(c) && !(c == '-' && label > 0))
			return false;
		if (++label > 63)
			return false;
		i++;
	}
	return label > 0 && s[len - 1] != '-';
}

/* literal_valid - "[1.2.3.4]", "[IPv6:...]" or a general literal. */
static bool
literal_valid(const char *s, size_t len)
{
	char buf[128];

	if (len < 3 || s[0] != '[' || s[len - 1] != ']' || len - 2 >= sizeof(buf))
		return false;
	memcpy(buf, s + 1, len - 2);
	buf[len - 2] = '\0';
	struct in_addr a4;
	struct in6_addr a6;
	if (strncasecmp(buf, "IPv6:", 5) == 0)
		return inet_pton(AF_INET6, buf + 5, &a6) == 1;
	if (inet_pton(AF_INET, buf, &a4) == 1)
		return true;
	/* General-address-literal: Standardized-tag ":" 1*dcontent. */
	const char *colon = strchr(buf, ':');
	if (!colon || colon == buf || !colon[1])
		return false;
	for (const char *c = buf; c < colon; c++)
		if (!isalnum((unsigned char)*c) && *c != '-')
			return false;
	for (const char *c = colon + 1; *c; c++)
		if (*c < 33 || *c > 126 || *c == '[' || *c == ']' || *c == '\\')
			return false;
	return true;
}

/* smtp_xtext_valid - RFC 3461 xtext. */
bool
smtp_xtext_valid(const char *s)
{
	for (; *s; s++) {
		unsigned char c = *s;
		if (c == '+') {
			if (!isxdigit((unsigned char)s[1]) || !isxdigit((unsigned char)s[2]))
				return false;
			s += 2;
		} else if (c < 33 || c > 126 || c == '=')
			return false;
	}
	return true;
}

/* parse_local - Dot-string or Quoted-string; returns bytes used or 0. */
static size_t
parse_local(const char *s, size_t len, struct smtp_path *p)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0;

	if (len && s[0] == '"') {
		p->quoted = true;
		for (i = 1; i < len && s[i] != '"'; i++) {
			if (s[i] == '\\') {
				if (i + 1 >= len || u[i + 1] < 32 || u[i + 1] > 126)
					return 0;
				i++;
			} else if (u[i] >= 0x80) {
				size_t n = utf8_seq(u + i, len - i);
				if (!n)
					return 0;
				p->utf8 = true;
				i += n - 1;
			} else if (u[i] < 32 || u[i] > 126)
				return 0;
		}
		if (i >= len)
			return 0;
		return i + 1;
	}
	size_t atom = 0;
	for (i = 0; i < len; i++) {
		if (s[i] == '.') {
			if (atom == 0)
				return 0;
			atom = 0;
		} else if (u[i] >= 0x80) {
			size_t n = utf8_seq(u + i, len - i);
			if (!n)
				return 0;
			p->utf8 = true;
			i += n - 1;
			atom++;
		} else if (is_atext(u[i]))
			atom++;
		else
			break;
	}
	return atom ? i : 0;
}

/* parse_params - space-separated keyword[=value] (RFC 5321 4.1.2). */
static enum smtp_path_error
parse_params(const char *s, struct smtp_path *p)
{
	size_t n = strlen(s);

	if (n >= sizeof(p->buf))
		return SMTP_PATH_TOO_LONG;
	memcpy(p->buf, s, n + 1);
	char *c = p->buf;
	while (*c) {
		while (*c == ' ')
			c++;
		if (!*c)
			break;
		if (p->nparams == SMTP_PARAMS_MAX)
			return SMTP_PATH_TOO_MANY_PARAMS;
		char *key = c;
		if (!isalnum((unsigned char)*c))
			return SMTP_PATH_PARAM_SYNTAX;
		while (isalnum((unsigned char)*c) || *c == '-')
			c++;
		char *value = NULL;
		if (*c == '=') {
			*c++ = '\0';
			value = c;
			/* esmtp-value = 1*(%d33-60 / %d62-126), UTF-8 with SMTPUTF8. */
			while (*c && *c != ' ') {
				unsigned char u = *c;
				if (u == '=' || u < 33 || u == 127)
					return SMTP_PATH_PARAM_SYNTAX;
				c++;
			}
			if (c == value)
				return SMTP_PATH_PARAM_SYNTAX;
		}
		if (*c == ' ')
			*c++ = '\0';
		else if (*c)
			return SMTP_PATH_PARAM_SYNTAX;
		p->params[p->nparams].key = key;
		p->params[p->nparams].value = value;
		p->nparams++;
	}
	return SMTP_PATH_OK;
}

/* smtp_path_parse - parse "FROM:<path> params" or "TO:<path> params". */
enum smtp_path_error
smtp_path_parse(const char *arg, bool is_mail, struct smtp_path *p)
{
	const char *kw = is_mail ? "FROM:" : "TO:";
	size_t kwlen = strlen(kw);
	const char *s, *gt;

	memset(p, 0, sizeof(*p));
	if (strncasecmp(arg, kw, kwlen) != 0)
		return SMTP_PATH_SYNTAX;
	s = arg + kwlen;
	/* Tolerated by every MTA: "MAIL FROM: <a@b>". */
	while (*s == ' ')
		s++;
	if (*s != '<')
		return SMTP_PATH_SYNTAX;
	s++;
	/* The path ends at the first '>' outside a quoted local part. */
	bool inq = false;
	for (gt = s; *gt; gt++) {
		if (inq && *gt == '\\' && gt[1])
			gt++;
		else if (*gt == '"')
			inq = !inq;
		else if (!inq && *gt == '>')
			break;
	}
	if (*gt != '>')
		return SMTP_PATH_SYNTAX;
	size_t plen = gt - s;
	if (plen > SMTP_PATH_MAX)
		return SMTP_PATH_TOO_LONG;
	const char *rest = gt + 1;
	if (*rest && *rest != ' ')
		return SMTP_PATH_SYNTAX;

	if (plen == 0) {
		if (!is_mail)
			return SMTP_PATH_SYNTAX;
		p->null_path = true;
		return parse_params(rest, p);
	}
	if (!is_mail && plen == 10 && strncasecmp(s, "postmaster", 10) == 0) {
		p->postmaster = true;
		strcpy(p->addr, "postmaster");
		strcpy(p->local, "postmaster");
		return parse_params(rest, p);
	}
	/* A-d-l ":" — a source route, obsolete; the mailbox after it is what
	 * a backend routes on. */
	const char *mbox = s;
	if (*s == '@') {
		/* The route ends at the first ':' outside an address literal
		 * ("@[IPv6:2001:db8::1]:u@d" is one hop). */
		const char *colon = NULL;
		bool inlit = false;
		for (const char *c = s; c < gt && !colon; c++) {
			if (*c == '[')
				inlit = true;
			else if (*c == ']')
				inlit = false;
			else if (*c == ':' && !inlit)
				colon = c;
		}
		if (!colon)
			return SMTP_PATH_SYNTAX;
		const char *c = s;
		while (c < colon) {
			if (*c != '@')
				return SMTP_PATH_SYNTAX;
			const char *e = c + 1;
			while (e < colon && *e != ',')
				e++;
			if (!smtp_domain_valid(c + 1, e - c - 1, false) && !literal_valid(c + 1, e - c - 1))
				return SMTP_PATH_SYNTAX;
			/* "@a,:" - a comma promises another hop. */
			if (e < colon && e + 1 == colon)
				return SMTP_PATH_SYNTAX;
			c = e < colon ? e + 1 : e;
		}
		p->source_route = true;
		mbox = colon + 1;
	}
	size_t mlen = gt - mbox;
	size_t llen = parse_local(mbox, mlen, p);
	if (!llen || llen > sizeof(p->local) - 1 || llen >= mlen || mbox[llen] != '@')
		return SMTP_PATH_SYNTAX;
	const char *dom = mbox + llen + 1;
	size_t dlen = gt - dom;
	if (dlen && dom[0] == '[') {
		if (!literal_valid(dom, dlen))
			return SMTP_PATH_SYNTAX;
		p->literal = true;
	} else if (!smtp_domain_valid(dom, dlen, true))
		return SMTP_PATH_SYNTAX;
	memcpy(p->local, mbox, llen);
	p->local[llen] = '\0';
	for (size_t i = 0; i < dlen; i++)
		p->domain[i] = tolower((unsigned char)dom[i]);
	p->domain[dlen] = '\0';
	for (size_t i = 0; i < dlen; i++)
		if ((unsigned char)dom[i] >= 0x80)
			p->utf8 = true;
	if (llen + 1 + dlen > SMTP_PATH_MAX)
		return SMTP_PATH_TOO_LONG;
	memcpy(p->addr, mbox, llen + 1);
	memcpy(p->addr + llen + 1, p->domain, dlen + 1);
	return parse_params(rest, p);
}

/* smtp_param_get - the parameter with this keyword (case-insensitive). */
const struct smtp_param *
smtp_param_get(const struct smtp_path *p, const char *key)
{
	for (size_t i = 0; i < p->nparams; i++)
		if (strcasecmp(p->params[i].key, key) == 0)
			return &p->params[i];
	return NULL;
}
