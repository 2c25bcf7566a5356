/*
 * test_smtp_parse.c - unit tests for smtp_parse.c: finding command lines
 * (CRLF, LF, the 1000-octet limit), splitting commands (verbs, case, NUL
 * and control bytes), MAIL/RCPT paths (null path, <Postmaster>, quoted
 * local parts, source routes, address literals, UTF-8, length limits,
 * spacing, brackets), ESMTP parameters, domains and xtext.
 */

/* System. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Libraries. */
#include <cmocka.h>

/* Project. */
#include "smtp_parse.h"

#define NROWS(t) (sizeof(t) / sizeof((t)[0]))

/* One smtp_line_find() case on a literal buffer. */
struct line_case {
	const char *buf;
	size_t len;
	enum smtp_line_status st;
	size_t linelen, termlen;
};

static const struct line_case line_cases[] = {
	{ "QUIT\r\n", 6, SMTP_LINE_OK, 4, 2 },
	{ "QUIT\n", 5, SMTP_LINE_OK, 4, 1 },
	{ "QUIT", 4, SMTP_LINE_MORE, 0, 0 },
	{ "QUIT\r", 5, SMTP_LINE_MORE, 0, 0 },
	{ "", 0, SMTP_LINE_MORE, 0, 0 },
	{ "\r\n", 2, SMTP_LINE_OK, 0, 2 },
	{ "\n", 1, SMTP_LINE_OK, 0, 1 },
	{ "A\rB\n", 4, SMTP_LINE_OK, 3, 1 },	/* a CR inside stays in the line */
	{ "\r\r\n", 3, SMTP_LINE_OK, 1, 2 },
	{ "NOOP\r\nQUIT\r\n", 12, SMTP_LINE_OK, 4, 2 },	/* the first line only */
	{ "A\0B\r\n", 5, SMTP_LINE_OK, 3, 2 },	/* NUL is the command parser's business */
};

/* line_find_table - every row of line_cases. */
static void
line_find_table(void **state)
{
	for (size_t i = 0; i < NROWS(line_cases); i++) {
		const struct line_case *c = &line_cases[i];
		size_t linelen = 0, termlen = 0;
		enum smtp_line_status st = smtp_line_find(c->buf, c->len, &linelen, &termlen);

		if (st != c->st || (st == SMTP_LINE_OK && (linelen != c->linelen || termlen != c->termlen)))
			fail_msg("row %zu: status %d linelen %zu termlen %zu, want %d %zu %zu", i, st,
				 linelen, termlen, c->st, c->linelen, c->termlen);
	}
}

/* A line of n octets of text and a terminator, against the 1000 limit. */
struct long_case {
	size_t n;
	const char *term;
	enum smtp_line_status st;
};

static const struct long_case long_cases[] = {
	{ 998, "\r\n", SMTP_LINE_OK },		/* exactly 1000 with CRLF */
	{ 999, "\r\n", SMTP_LINE_TOO_LONG },	/* 1001 */
	{ 999, "\n", SMTP_LINE_OK },		/* 1000 with a bare LF */
	{ 1000, "\n", SMTP_LINE_TOO_LONG },
	{ 998, "\r", SMTP_LINE_MORE },		/* 999 so far, LF may follow */
	{ 999, "\r", SMTP_LINE_TOO_LONG },	/* 1000 and no LF: can never fit */
	{ 999, "", SMTP_LINE_MORE },
	{ 1000, "", SMTP_LINE_TOO_LONG },
	{ 5000, "\r\n", SMTP_LINE_TOO_LONG },
};

/* line_find_length_limit - 1000 octets including CRLF, not one more. */
static void
line_find_length_limit(void **state)
{
	char buf[6000];

	for (size_t i = 0; i < NROWS(long_cases); i++) {
		const struct long_case *c = &long_cases[i];
		size_t tl = strlen(c->term), linelen = 0, termlen = 0;

		memset(buf, 'x', c->n);
		memcpy(buf + c->n, c->term, tl);
		enum smtp_line_status st = smtp_line_find(buf, c->n + tl, &linelen, &termlen);
		if (st != c->st || (st == SMTP_LINE_OK && linelen != c->n))
			fail_msg("row %zu: %zu octets + %zu-octet terminator: status %d, want %d", i,
				 c->n, tl, st, c->st);
	}
}

/* One smtp_cmd_parse() case. */
struct cmd_case {
	const char *line;
	size_t len;		/* 0: strlen(line) */
	int rc;
	enum smtp_verb verb;
	const char *arg;
};

static const struct cmd_case cmd_cases[] = {
	{ "EHLO client.example.org", 0, 0, SMTP_EHLO, "client.example.org" },
	{ "ehlo client.example.org", 0, 0, SMTP_EHLO, "client.example.org" },
	{ "eHlO x", 0, 0, SMTP_EHLO, "x" },
	{ "HELO x", 0, 0, SMTP_HELO, "x" },
	{ "MAIL FROM:<a@example.org>", 0, 0, SMTP_MAIL, "FROM:<a@example.org>" },
	{ "RCPT TO:<a@example.org>", 0, 0, SMTP_RCPT, "TO:<a@example.org>" },
	{ "DATA", 0, 0, SMTP_DATA, "" },
	{ "BDAT 10 LAST", 0, 0, SMTP_BDAT, "10 LAST" },
	{ "RSET", 0, 0, SMTP_RSET, "" },
	{ "NOOP  x", 0, 0, SMTP_NOOP, " x" },	/* one space separates, the rest is argument */
	{ "QUIT", 0, 0, SMTP_QUIT, "" },
	{ "quit", 0, 0, SMTP_QUIT, "" },
	{ "HELP", 0, 0, SMTP_HELP, "" },
	{ "VRFY bob", 0, 0, SMTP_VRFY, "bob" },
	{ "EXPN list", 0, 0, SMTP_EXPN, "list" },
	{ "STARTTLS", 0, 0, SMTP_STARTTLS, "" },
	{ "AUTH PLAIN AGJvYgBwdw==", 0, 0, SMTP_AUTH, "PLAIN AGJvYgBwdw==" },
	{ "XCLIENT ADDR=192.0.2.1", 0, 0, SMTP_XCLIENT, "ADDR=192.0.2.1" },
	{ "ETRN example.org", 0, 0, SMTP_ETRN, "example.org" },
	{ "GET / HTTP/1.0", 0, 0, SMTP_HTTP, "/ HTTP/1.0" },
	{ "POST /x HTTP/1.1", 0, 0, SMTP_HTTP, "/x HTTP/1.1" },
	{ "CONNECT host:25 HTTP/1.0", 0, 0, SMTP_HTTP, "host:25 HTTP/1.0" },
	{ "MAILFROM:<a@b>", 0, 0, SMTP_UNKNOWN, "" },
	{ "XYZZY", 0, 0, SMTP_UNKNOWN, "" },
	{ "EHLOX y", 0, 0, SMTP_UNKNOWN, "y" },
	{ "", 0, 0, SMTP_UNKNOWN, "" },
	{ " EHLO x", 0, 0, SMTP_UNKNOWN, "EHLO x" },
	{ "EHLO\tx", 0, 0, SMTP_UNKNOWN, "" },	/* a tab does not separate the verb */
	{ "EHLO \xc3\xa9t\xc3\xa9", 0, 0, SMTP_EHLO, "\xc3\xa9t\xc3\xa9" },	/* 8-bit allowed */
	{ "EHLO x\ty", 0, 0, SMTP_EHLO, "x\ty" },
	{ "EHLO x\0y", 8, -1, SMTP_UNKNOWN, NULL },	/* NUL */
	{ "\0", 1, -1, SMTP_UNKNOWN, NULL },
	{ "EHLO x\x01", 0, -1, SMTP_UNKNOWN, NULL },
	{ "EHLO x\x1b[0m", 0, -1, SMTP_UNKNOWN, NULL },
	{ "EHLO x\x7f", 0, -1, SMTP_UNKNOWN, NULL },
	{ "EHLO x\ry", 0, -1, SMTP_UNKNOWN, NULL },	/* bare CR */
	{ "EHLO x\ny", 0, -1, SMTP_UNKNOWN, NULL },
};

/* cmd_parse_table - every row of cmd_cases. */
static void
cmd_parse_table(void **state)
{
	for (size_t i = 0; i < NROWS(cmd_cases); i++) {
		const struct cmd_case *c = &cmd_cases[i];
		size_t len = c->len ? c->len : strlen(c->line);
		struct smtp_cmd cmd;
		int rc = smtp_cmd_parse(c->line, len, &cmd);

		if (rc != c->rc)
			fail_msg("row %zu \"%s\": rc %d, want %d", i, c->line, rc, c->rc);
		if (rc < 0)
			continue;
		if (cmd.verb != c->verb)
			fail_msg("row %zu \"%s\": verb %d, want %d", i, c->line, cmd.verb, c->verb);
		if (strcmp(cmd.arg, c->arg) != 0)
			fail_msg("row %zu \"%s\": arg \"%s\", want \"%s\"", i, c->line, cmd.arg, c->arg);
		if (cmd.verb_text != c->line || cmd.verb_len > len)
			fail_msg("row %zu \"%s\": verb text not in the line", i, c->line);
	}
}

/* Path flags expected in a row. */
#define F_NULL    0x01
#define F_PM      0x02
#define F_ROUTE   0x04
#define F_QUOTED  0x08
#define F_LITERAL 0x10
#define F_UTF8    0x20

/* One smtp_path_parse() case. */
struct path_case {
	const char *arg;
	bool is_mail;
	enum smtp_path_error err;
	const char *addr;	/* when OK */
	const char *domain;	/* when OK; NULL: not checked */
	unsigned flags;		/* when OK */
	size_t nparams;		/* when OK */
};

#define MAILP(a, e, addr, dom, fl, np) { a, true, e, addr, dom, fl, np }
#define RCPTP(a, e, addr, dom, fl, np) { a, false, e, addr, dom, fl, np }
#define MBAD(a) { a, true, SMTP_PATH_SYNTAX, NULL, NULL, 0, 0 }
#define RBAD(a) { a, false, SMTP_PATH_SYNTAX, NULL, NULL, 0, 0 }

static const struct path_case path_cases[] = {
	/* Plain paths, case and spacing. */
	MAILP("FROM:<bob@example.org>", SMTP_PATH_OK, "bob@example.org", "example.org", 0, 0),
	MAILP("from:<Bob@Example.ORG>", SMTP_PATH_OK, "Bob@example.org", "example.org", 0, 0),
	MAILP("FROM: <bob@example.org>", SMTP_PATH_OK, "bob@example.org", "example.org", 0, 0),
	MAILP("FROM:   <bob@example.org>", SMTP_PATH_OK, "bob@example.org", "example.org", 0, 0),
	MAILP("FROM:<bob@example.org>   ", SMTP_PATH_OK, "bob@example.org", "example.org", 0, 0),
	RCPTP("TO:<alice@example.net>", SMTP_PATH_OK, "alice@example.net", "example.net", 0, 0),
	RCPTP("to: <alice@example.net>", SMTP_PATH_OK, "alice@example.net", "example.net", 0, 0),
	MAILP("FROM:<a.b.c+tag-x=y@sub.example.org>", SMTP_PATH_OK, "a.b.c+tag-x=y@sub.example.org",
	      "sub.example.org", 0, 0),
	MAILP("FROM:<!#$%&'*+-/=?^_`{|}~@example.org>", SMTP_PATH_OK,
	      "!#$%&'*+-/=?^_`{|}~@example.org", "example.org", 0, 0),
	MBAD("FROM :<bob@example.org>"),
	MBAD("FROM<bob@example.org>"),
	MBAD("TO:<bob@example.org>"),
	RBAD("FROM:<bob@example.org>"),
	/* Brackets. */
	MBAD("FROM:bob@example.org"),
	MBAD("FROM:<bob@example.org"),
	MBAD("FROM:bob@example.org>"),
	MBAD("FROM:<<bob@example.org>>"),
	MBAD("FROM:<bob@example.org>x"),
	MBAD("FROM:<bob@example.org>\tSIZE=1"),
	MBAD("FROM:"),
	/* Null path and Postmaster. */
	MAILP("FROM:<>", SMTP_PATH_OK, "", "", F_NULL, 0),
	MAILP("FROM:<> SIZE=100", SMTP_PATH_OK, "", "", F_NULL, 1),
	RBAD("TO:<>"),
	RCPTP("TO:<Postmaster>", SMTP_PATH_OK, "postmaster", "", F_PM, 0),
	RCPTP("TO:<postmaster>", SMTP_PATH_OK, "postmaster", "", F_PM, 0),
	RCPTP("TO:<POSTMASTER> NOTIFY=NEVER", SMTP_PATH_OK, "postmaster", "", F_PM, 1),
	RCPTP("TO:<Postmaster@Example.org>", SMTP_PATH_OK, "Postmaster@example.org", "example.org", 0, 0),
	MBAD("FROM:<Postmaster>"),
	RBAD("TO:<Postmasters>"),
	RBAD("TO:<bob>"),
	/* Local parts. */
	MBAD("FROM:<.bob@example.org>"),
	MBAD("FROM:<bob.@example.org>"),
	MBAD("FROM:<bo..b@example.org>"),
	MBAD("FROM:<bo b@example.org>"),
	MBAD("FROM:<bo(b)@example.org>"),
	MBAD("FROM:<bo,b@example.org>"),
	MBAD("FROM:<@example.org>"),
	MBAD("FROM:<bob@>"),
	MBAD("FROM:<bob>"),
	MBAD("FROM:<bob@@example.org>"),
	MBAD("FROM:<bob@alice@example.org>"),
	/* Quoted local parts. */
	MAILP("FROM:<\"john doe\"@example.org>", SMTP_PATH_OK, "\"john doe\"@example.org", "example.org",
	      F_QUOTED, 0),
	MAILP("FROM:<\"a\\\"b\"@example.org>", SMTP_PATH_OK, "\"a\\\"b\"@example.org", "example.org",
	      F_QUOTED, 0),
	MAILP("FROM:<\"a>b\"@example.org>", SMTP_PATH_OK, "\"a>b\"@example.org", "example.org", F_QUOTED,
	      0),
	MAILP("FROM:<\"a@b\"@example.org>", SMTP_PATH_OK, "\"a@b\"@example.org", "example.org", F_QUOTED,
	      0),
	MAILP("FROM:<\"\"@example.org>", SMTP_PATH_OK, "\"\"@example.org", "example.org", F_QUOTED, 0),
	MAILP("FROM:<\"j\xc3\xb6rg\"@example.org>", SMTP_PATH_OK, "\"j\xc3\xb6rg\"@example.org",
	      "example.org", F_QUOTED | F_UTF8, 0),
	MBAD("FROM:<\"unterminated@example.org>"),
	MBAD("FROM:<\"a\"b@example.org>"),
	MBAD("FROM:<a\"b\"@example.org>"),
	MBAD("FROM:<\"a\tb\"@example.org>"),
	MBAD("FROM:<\"a\\\x01\"@example.org>"),
	/* Source routes: removed from addr, remembered. */
	MAILP("FROM:<@relay.example:bob@example.org>", SMTP_PATH_OK, "bob@example.org", "example.org",
	      F_ROUTE, 0),
	MAILP("FROM:<@a.example,@b.example:bob@example.org>", SMTP_PATH_OK, "bob@example.org",
	      "example.org", F_ROUTE, 0),
	RCPTP("TO:<@[192.0.2.1]:bob@example.org>", SMTP_PATH_OK, "bob@example.org", "example.org", F_ROUTE,
	      0),
	RCPTP("TO:<@[IPv6:2001:db8::1]:bob@example.org>", SMTP_PATH_OK, "bob@example.org", "example.org",
	      F_ROUTE, 0),
	MBAD("FROM:<@a.example bob@example.org>"),
	MBAD("FROM:<@:bob@example.org>"),
	MBAD("FROM:<@a.example,:bob@example.org>"),
	MBAD("FROM:<@a.example,b.example:bob@example.org>"),
	MBAD("FROM:<@a..example:bob@example.org>"),
	MBAD("FROM:<@a.example:>"),
	/* Address literals. */
	MAILP("FROM:<bob@[192.0.2.1]>", SMTP_PATH_OK, "bob@[192.0.2.1]", "[192.0.2.1]", F_LITERAL, 0),
	MAILP("FROM:<bob@[IPv6:2001:db8::1]>", SMTP_PATH_OK, NULL, NULL, F_LITERAL, 0),
	MAILP("FROM:<bob@[ipv6:::1]>", SMTP_PATH_OK, NULL, NULL, F_LITERAL, 0),
	MAILP("FROM:<bob@[IPv6:::ffff:192.0.2.1]>", SMTP_PATH_OK, NULL, NULL, F_LITERAL, 0),
	MAILP("FROM:<bob@[x-tag:some-content]>", SMTP_PATH_OK, "bob@[x-tag:some-content]",
	      "[x-tag:some-content]", F_LITERAL, 0),
	MBAD("FROM:<bob@[IPv6:2001:db8::zz]>"),
	MBAD("FROM:<bob@[IPv6:192.0.2.1]>"),
	MBAD("FROM:<bob@[300.1.1.1]>"),
	MBAD("FROM:<bob@[192.0.2]>"),
	MBAD("FROM:<bob@[192.0.2.1>"),
	MBAD("FROM:<bob@192.0.2.1]>"),
	MBAD("FROM:<bob@[]>"),
	MBAD("FROM:<bob@[:abc]>"),
	MBAD("FROM:<bob@[tag:]>"),
	MBAD("FROM:<bob@[ta_g:x]>"),
	MBAD("FROM:<bob@[tag:a[b]>"),
	MBAD("FROM:<bob@[tag:a\\b]>"),
	MBAD("FROM:<bob@[tag:a b]>"),
	MBAD("FROM:<bob@[192.0.2.1].example>"),
	/* UTF-8 (RFC 6531). */
	MAILP("FROM:<j\xc3\xb6rg@example.org>", SMTP_PATH_OK, "j\xc3\xb6rg@example.org", "example.org",
	      F_UTF8, 0),
	MAILP("FROM:<bob@b\xc3\xbc\x63her.example>", SMTP_PATH_OK, "bob@b\xc3\xbc\x63her.example",
	      "b\xc3\xbc\x63her.example", F_UTF8, 0),
	RCPTP("TO:<\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf\xe5\x91\x8a>",
	      SMTP_PATH_OK, NULL, NULL, F_UTF8, 0),
	MAILP("FROM:<\xf0\x9f\x98\x80@example.org>", SMTP_PATH_OK, NULL, "example.org", F_UTF8, 0),
	MBAD("FROM:<j\xc3rg@example.org>"),		/* lead byte without continuation */
	MBAD("FROM:<\x80@example.org>"),		/* lone continuation byte */
	MBAD("FROM:<\xc0\xaf@example.org>"),		/* overlong '/' (2 bytes) */
	MBAD("FROM:<\xc1\xbf@example.org>"),		/* overlong (2 bytes) */
	MBAD("FROM:<\xe0\x80\xaf@example.org>"),	/* overlong (3 bytes) */
	MBAD("FROM:<\xf0\x80\x80\xaf@example.org>"),	/* overlong (4 bytes) */
	MBAD("FROM:<\xed\xa0\x80@example.org>"),	/* UTF-16 surrogate */
	MBAD("FROM:<\xf4\x90\x80\x80@example.org>"),	/* above U+10FFFF */
	MBAD("FROM:<\xf8\x88\x80\x80\x80@example.org>"),	/* 5-byte form */
	MBAD("FROM:<\xff@example.org>"),
	MBAD("FROM:<bob@example.\xc3>"),		/* truncated at the end */
	MBAD("FROM:<bob@ex\xe2\x82mple.org>"),	/* truncated in the middle */
	MBAD("FROM:<bob@@\xc3\xb6>"),
	/* Domains. */
	MBAD("FROM:<bob@example.org.>"),		/* trailing dot */
	MBAD("FROM:<bob@example..org>"),		/* empty label */
	MBAD("FROM:<bob@.example.org>"),
	MBAD("FROM:<bob@-example.org>"),
	MBAD("FROM:<bob@example-.org>"),
	MBAD("FROM:<bob@exa_mple.org>"),
	MBAD("FROM:<bob@exa mple.org>"),
	MAILP("FROM:<bob@ex-ample.org>", SMTP_PATH_OK, "bob@ex-ample.org", "ex-ample.org", 0, 0),
	MAILP("FROM:<bob@localhost>", SMTP_PATH_OK, "bob@localhost", "localhost", 0, 0),
	MAILP("FROM:<bob@123.example>", SMTP_PATH_OK, "bob@123.example", "123.example", 0, 0),
	/* Parameters. */
	MAILP("FROM:<bob@example.org> SIZE=1000 BODY=8BITMIME", SMTP_PATH_OK, "bob@example.org", NULL, 0, 2),
	MAILP("FROM:<bob@example.org> SMTPUTF8", SMTP_PATH_OK, "bob@example.org", NULL, 0, 1),
	MAILP("FROM:<bob@example.org>  SIZE=1   BODY=7BIT  ", SMTP_PATH_OK, "bob@example.org", NULL, 0, 2),
	MAILP("FROM:<bob@example.org> X-EXT=a-b", SMTP_PATH_OK, "bob@example.org", NULL, 0, 1),
	MAILP("FROM:<bob@example.org> ENVID=a\xc3\xa9", SMTP_PATH_OK, "bob@example.org", NULL, 0, 1),
	RCPTP("TO:<bob@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob+2B1@example.org",
	      SMTP_PATH_OK, "bob@example.org", NULL, 0, 2),
	{ "FROM:<bob@example.org> SIZE=", true, SMTP_PATH_PARAM_SYNTAX, NULL, NULL, 0, 0 },
	{ "FROM:<bob@example.org> =1", true, SMTP_PATH_PARAM_SYNTAX, NULL, NULL, 0, 0 },
	{ "FROM:<bob@example.org> -X=1", true, SMTP_PATH_PARAM_SYNTAX, NULL, NULL, 0, 0 },
	{ "FROM:<bob@example.org> SI_ZE=1", true, SMTP_PATH_PARAM_SYNTAX, NULL, NULL, 0, 0 },
	{ "FROM:<bob@example.org> SIZE=1=2", true, SMTP_PATH_PARAM_SYNTAX, NULL, NULL, 0, 0 },
	{ "FROM:<bob@example.org> SIZE=1\tBODY=7BIT", true, SMTP_PATH_PARAM_SYNTAX, NULL, NULL, 0, 0 },
	{ "FROM:<bob@example.org> SIZE=a\x7f", true, SMTP_PATH_PARAM_SYNTAX, NULL, NULL, 0, 0 },
	{ "FROM:<bob@example.org> SIZE=\x01", true, SMTP_PATH_PARAM_SYNTAX, NULL, NULL, 0, 0 },
	{ "FROM:<bob@example.org> SIZE:1", true, SMTP_PATH_PARAM_SYNTAX, NULL, NULL, 0, 0 },
	{ "FROM:<bob@example.org> <x>", true, SMTP_PATH_PARAM_SYNTAX, NULL, NULL, 0, 0 },
	MAILP("FROM:<bob@example.org> A B C D E F G H I J K L M N O P", SMTP_PATH_OK, "bob@example.org",
	      NULL, 0, 16),
	{ "FROM:<bob@example.org> A B C D E F G H I J K L M N O P Q", true, SMTP_PATH_TOO_MANY_PARAMS,
	  NULL, NULL, 0, 0 },
};

/* path_parse_table - every row of path_cases. */
static void
path_parse_table(void **state)
{
	static struct smtp_path p;

	for (size_t i = 0; i < NROWS(path_cases); i++) {
		const struct path_case *c = &path_cases[i];
		enum smtp_path_error err = smtp_path_parse(c->arg, c->is_mail, &p);

		if (err != c->err)
			fail_msg("row %zu \"%s\": error %d, want %d", i, c->arg, err, c->err);
		if (err != SMTP_PATH_OK)
			continue;
		if (c->addr && strcmp(p.addr, c->addr) != 0)
			fail_msg("row %zu \"%s\": addr \"%s\", want \"%s\"", i, c->arg, p.addr, c->addr);
		if (c->domain && strcmp(p.domain, c->domain) != 0)
			fail_msg("row %zu \"%s\": domain \"%s\", want \"%s\"", i, c->arg, p.domain,
				 c->domain);
		unsigned fl = (p.null_path ? F_NULL : 0) | (p.postmaster ? F_PM : 0) |
			      (p.source_route ? F_ROUTE : 0) | (p.quoted ? F_QUOTED : 0) |
			      (p.literal ? F_LITERAL : 0) | (p.utf8 ? F_UTF8 : 0);
		if (fl != c->flags)
			fail_msg("row %zu \"%s\": flags %#x, want %#x", i, c->arg, fl, c->flags);
		if (p.nparams != c->nparams)
			fail_msg("row %zu \"%s\": %zu params, want %zu", i, c->arg, p.nparams, c->nparams);
	}
}

/* path_params_values - keywords, values, case-insensitive lookup. */
static void
path_params_values(void **state)
{
	static struct smtp_path p;
	const struct smtp_param *sp;

	assert_int_equal(smtp_path_parse("FROM:<bob@example.org> SIZE=1000 body=8BITMIME SMTPUTF8",
					 true, &p), SMTP_PATH_OK);
	assert_int_equal(p.nparams, 3);
	assert_non_null(sp = smtp_param_get(&p, "size"));
	assert_string_equal(sp->key, "SIZE");
	assert_string_equal(sp->value, "1000");
	assert_non_null(sp = smtp_param_get(&p, "BODY"));
	assert_string_equal(sp->value, "8BITMIME");
	assert_non_null(sp = smtp_param_get(&p, "SmtpUtf8"));
	assert_null(sp->value);
	assert_null(smtp_param_get(&p, "SIZ"));
	assert_null(smtp_param_get(&p, "RET"));
	/* The path itself is untouched by the parameters. */
	assert_string_equal(p.addr, "bob@example.org");
}

/* Path length: local part and domain built to a given total. */
struct plen_case {
	size_t local, domain;	/* octets */
	enum smtp_path_error err;
};

static const struct plen_case plen_cases[] = {
	{ 64, 191, SMTP_PATH_OK },		/* 256 inside the brackets */
	{ 64, 192, SMTP_PATH_TOO_LONG },	/* 257 */
	{ 1, 254, SMTP_PATH_OK },		/* 256 */
	{ 10, 255, SMTP_PATH_TOO_LONG },	/* 266 */
	{ 300, 10, SMTP_PATH_TOO_LONG },
};

/* make_domain - n octets of labels of at most 63, dot separated. */
static void
make_domain(char *d, size_t n)
{
	size_t label = 0;

	for (size_t i = 0; i < n; i++) {
		if (label == 63 && i + 1 < n) {
			d[i] = '.';
			label = 0;
		} else {
			d[i] = 'a' + (char)(i % 26);
			label++;
		}
	}
	d[n] = '\0';
}

/* path_length_limit - 256 octets of path, not one more. */
static void
path_length_limit(void **state)
{
	static struct smtp_path p;
	char arg[1000], dom[400];

	for (size_t i = 0; i < NROWS(plen_cases); i++) {
		const struct plen_case *c = &plen_cases[i];
		int n = snprintf(arg, sizeof(arg), "FROM:<");

		memset(arg + n, 'l', c->local);
		n += (int)c->local;
		make_domain(dom, c->domain);
		snprintf(arg + n, sizeof(arg) - n, "@%s>", dom);
		enum smtp_path_error err = smtp_path_parse(arg, true, &p);
		if (err != c->err)
			fail_msg("row %zu: local %zu domain %zu: error %d, want %d", i, c->local,
				 c->domain, err, c->err);
		if (err == SMTP_PATH_OK && strlen(p.addr) != c->local + 1 + c->domain)
			fail_msg("row %zu: addr has %zu octets", i, strlen(p.addr));
	}
}

/* One smtp_domain_valid() case. */
struct domain_case {
	const char *d;
	bool utf8;
	bool valid;
};

static const struct domain_case domain_cases[] = {
	{ "example.org", false, true },
	{ "EXAMPLE.Org", false, true },
	{ "a", false, true },
	{ "a-b.c-d.example", false, true },
	{ "1.2.3.4", false, true },
	{ "xn--bcher-kva.example", false, true },
	{ "", false, false },
	{ ".", false, false },
	{ "a..b", false, false },
	{ ".a", false, false },
	{ "a.", false, false },
	{ "-a", false, false },
	{ "a-", false, false },
	{ "a.-b", false, false },
	{ "a-.b", false, false },
	{ "a_b", false, false },
	{ "a b", false, false },
	{ "a@b", false, false },
	{ "[192.0.2.1]", false, false },
	{ "b\xc3\xbc\x63her.example", true, true },
	{ "b\xc3\xbc\x63her.example", false, false },
	{ "\xc3", true, false },
	{ "\xc0\xaf.example", true, false },
	{ "\xed\xa0\x80.example", true, false },
};

/* domain_valid_table - every row of domain_cases. */
static void
domain_valid_table(void **state)
{
	for (size_t i = 0; i < NROWS(domain_cases); i++) {
		const struct domain_case *c = &domain_cases[i];
		bool got = smtp_domain_valid(c->d, strlen(c->d), c->utf8);

		if (got != c->valid)
			fail_msg("row %zu \"%s\" (utf8 %d): got %d, want %d", i, c->d, c->utf8, got,
				 c->valid);
	}
}

/* Label and total lengths. */
struct dlen_case {
	size_t len;
	bool valid;
};

static const struct dlen_case dlen_cases[] = {
	{ 63, true },	/* one label of 63 */
	{ 64, false },	/* one label of 64 */
	{ 255, true },	/* labels of 63, total 255 */
	{ 256, false },
};

/* domain_valid_lengths - 63 octets a label, 255 a domain. */
static void
domain_valid_lengths(void **state)
{
	char d[300];

	for (size_t i = 0; i < NROWS(dlen_cases); i++) {
		const struct dlen_case *c = &dlen_cases[i];

		if (c->len <= 64) {
			memset(d, 'a', c->len);
			d[c->len] = '\0';
		} else
			make_domain(d, c->len);
		bool got = smtp_domain_valid(d, c->len, false);
		if (got != c->valid)
			fail_msg("row %zu: %zu octets: got %d, want %d", i, c->len, got, c->valid);
	}
	/* The length given is what counts, not a NUL. */
	assert_true(smtp_domain_valid("example.org.junk", 11, false));
}

/* One smtp_xtext_valid() case. */
struct xtext_case {
	const char *s;
	bool valid;
};

static const struct xtext_case xtext_cases[] = {
	{ "", true },
	{ "abc", true },
	{ "rfc822;bob+2B1@example.org", true },
	{ "+2B", true },
	{ "+2B+3D", true },
	{ "a~!\"#$%&'()*,-./:;<>?@[\\]^_`{|}", true },
	{ "a+2", false },
	{ "a+", false },
	{ "a+zz", false },
	{ "a+G0", false },
	{ "a=b", false },
	{ "a b", false },
	{ "a\tb", false },
	{ "a\x7f", false },
	{ "a\xc3\xa9", false },
};

/* xtext_valid_table - every row of xtext_cases. */
static void
xtext_valid_table(void **state)
{
	for (size_t i = 0; i < NROWS(xtext_cases); i++) {
		bool got = smtp_xtext_valid(xtext_cases[i].s);

		if (got != xtext_cases[i].valid)
			fail_msg("row %zu \"%s\": got %d, want %d", i, xtext_cases[i].s, got,
				 xtext_cases[i].valid);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(line_find_table),
		cmocka_unit_test(line_find_length_limit),
		cmocka_unit_test(cmd_parse_table),
		cmocka_unit_test(path_parse_table),
		cmocka_unit_test(path_params_values),
		cmocka_unit_test(path_length_limit),
		cmocka_unit_test(domain_valid_table),
		cmocka_unit_test(domain_valid_lengths),
		cmocka_unit_test(xtext_valid_table),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
