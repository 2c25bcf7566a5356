/*
 * rules_parse.c - tokenizer and recursive-descent parser for rule files.
 *
 * Reads rule files (ravelin.rules(5)) into the compiled form of
 * rules_impl.h: joins continuation lines into logical lines while keeping
 * every byte's FILE:LINE:COLUMN, lexes them (regular expressions only
 * where an =~ or !~ asks for one), parses
 *
 *	rule    := [NAME ':'] STAGE cond '->' action (';' action)*
 *	cond    := and ('||' and)*
 *	and     := unary ('&&' unary)*
 *	unary   := '!' unary | primary
 *	primary := '(' cond ')' | 'true' | limit | FIELD [op value]
 *
 * and checks each field against the stage it is used in. An error skips
 * the rest of its rule, so every error of every file is reported; any
 * error makes the whole load fail. Everything a rule set owns is kept on
 * one list (struct rules_mem) and freed by rules_free().
 *
 * Public:
 *   rules_load(), rules_load_text()
 */

/* System. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Project. */
#include "lists.h"
#include "rules.h"
#include "rules_impl.h"
#include "rules_prefilter.h"

/* Longest rule file we read, and longest logical line. */
#define RULES_FILE_MAX (64u * 1024 * 1024)
#define RULES_ACTS_MAX 16

/* Tokens. */
enum tok {
	T_EOF,
	T_WORD,
	T_STRING,
	T_FILE,	 /* @path or @"path" */
	T_VAR,	 /* $name */
	T_REGEX, /* only from lex_regex() */
	T_LPAREN,
	T_RPAREN,
	T_COMMA,
	T_SEMI,
	T_ARROW,
	T_AND,
	T_OR,
	T_NOT,
	T_MATCH,
	T_NOMATCH,
	T_EQ,
	T_NE,
	T_LT,
	T_LE,
	T_GT,
	T_GE
};

/* Parser state for one file; one logical line at a time. */
struct parser {
	struct rules *r;
	const struct rules_env *env;
	const char *file; /* as given, for messages and rule names */
	char *dir;	  /* for relative @FILE paths */
	void (*error)(void *, const char *);
	void *errarg;
	unsigned nerrors;

	/* The logical line, with each byte's physical line and column. */
	char *buf;
	unsigned *lno, *col;
	size_t len, cap;

	/* The current token: buf[start, end); its text (strings unescaped). */
	enum tok tok;
	size_t start, end;
	char *text;
	size_t textlen, textcap;
	uint32_t regex_flags;

	enum rules_stage stage;
	uint64_t fields;
	bool has_limit;
	jmp_buf jb;
};

static void perr(struct parser *p, size_t at, const char *fmt, ...)
	__attribute__((format(printf, 3, 4), noreturn));

/* report - pass one "FILE:LINE:COLUMN: text" message to the callback. */
static void
report(struct parser *p, unsigned line, unsigned col, const char *fmt, va_list ap)
{
	char msg[1024];
	int n;

	p->nerrors++;
	n = snprintf(msg, sizeof(msg), "%s:%u:%u: ", p->file, line, col);
	if (n < 0 || (size_t)n >= sizeof(msg))
		n = 0;
	vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap);
	if (p->error)
		p->error(p->errarg, msg);
}

/* perr - report an error at byte `at` of the logical line; abandon the rule. */
static void
perr(struct parser *p, size_t at, const char *fmt, ...)
{
	va_list ap;

	if (at > p->len)
		at = p->len;
	va_start(ap, fmt);
	report(p, p->lno[at], p->col[at], fmt, ap);
	va_end(ap);
	longjmp(p->jb, 1);
}

/* perr_line - report an error outside any rule (file level). */
static void
perr_line(struct parser *p, unsigned line, unsigned col, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	report(p, line, col, fmt, ap);
	va_end(ap);
}

/* rules_own - make the rule set free obj with dtor; NULL obj is ignored. */
static int
rules_own(struct rules *r, void (*dtor)(void *), void *obj)
{
	struct rules_mem *m;

	if (obj == NULL)
		return 0;
	if ((m = malloc(sizeof(*m))) == NULL) {
		dtor(obj);
		return -1;
	}
	m->next = r->mem;
	m->dtor = dtor;
	m->obj = obj;
	r->mem = m;
	return 0;
}

/* p_alloc - zeroed memory owned by the rule set. */
static void *
p_alloc(struct parser *p, size_t n)
{
	struct rules_mem *m = calloc(1, sizeof(*m) + n);

	if (m == NULL)
		perr(p, p->start, "out of memory");
	m->next = p->r->mem;
	m->obj = m + 1;
	p->r->mem = m;
	return m->obj;
}

/* p_strndup - a NUL-terminated copy owned by the rule set. */
static char *
p_strndup(struct parser *p, const char *s, size_t n)
{
	char *d = p_alloc(p, n + 1);

	memcpy(d, s, n);
	return d;
}

/* text_put - append one byte to the current token's text. */
static void
text_put(struct parser *p, char c)
{
	if (p->textlen + 2 > p->textcap) {
		size_t cap = p->textcap ? p->textcap * 2 : 256;
		char *t = realloc(p->text, cap);

		if (t == NULL)
			perr(p, p->start, "out of memory");
		p->text = t;
		p->textcap = cap;
	}
	p->text[p->textlen++] = c;
	p->text[p->textlen] = '\0';
}

/* is_word_char - bytes that may appear in a bare word. */
static bool
is_word_char(const struct parser *p, size_t i)
{
	unsigned char c = (unsigned char)p->buf[i];

	if (c <= ' ' || strchr("()\",;!=<>&|", c) != NULL)
		return false;
	/* "->" ends a word even without a space before it. */
	return !(c == '-' && i + 1 < p->len && p->buf[i + 1] == '>');
}

/* skip_space - skip white space and # comments (to the end of the physical line). */
static size_t
skip_space(struct parser *p, size_t i)
{
	for (;;) {
		while (i < p->len && isspace((unsigned char)p->buf[i]))
			i++;
		if (i < p->len && p->buf[i] == '#') {
			while (i < p->len && p->buf[i] != '\n')
				i++;
			continue;
		}
		return i;
	}
}

/* lex_string - a "..." string at p->start; backslash escapes the next byte. */
static size_t
lex_string(struct parser *p, size_t i)
{
	size_t open = i++;

	for (;;) {
		if (i >= p->len || p->buf[i] == '\n')
			perr(p, open, "unterminated string");
		unsigned char c = (unsigned char)p->buf[i];

		if (c == '"')
			return i + 1;
		if (c == '\\' && i + 1 < p->len && p->buf[i + 1] != '\n')
			c = (unsigned char)p->buf[++i];
		if ((c < ' ' && c != '\t') || c == 0x7f)
			perr(p, i, "control character in string");
		text_put(p, (char)c);
		i++;
	}
}

/* advance - lex the next token after the current one. */
static void
advance(struct parser *p)
{
	static const struct {
		const char *s;
		enum tok t;
	} ops[] = {
		{ "->", T_ARROW }, { "&&", T_AND }, { "||", T_OR }, { "=~", T_MATCH },
		{ "!~", T_NOMATCH }, { "==", T_EQ }, { "!=", T_NE }, { "<=", T_LE },
		{ ">=", T_GE }, { "<", T_LT }, { ">", T_GT }, { "!", T_NOT },
		{ "(", T_LPAREN }, { ")", T_RPAREN }, { ",", T_COMMA }, { ";", T_SEMI },
	};
	size_t i = skip_space(p, p->end);

	p->start = i;
	p->textlen = 0;
	text_put(p, '\0');
	p->textlen = 0;
	if (i >= p->len) {
		p->tok = T_EOF;
		p->end = i;
		return;
	}
	for (size_t k = 0; k < sizeof(ops) / sizeof(ops[0]); k++) {
		size_t n = strlen(ops[k].s);

		if (i + n <= p->len && memcmp(p->buf + i, ops[k].s, n) == 0) {
			p->tok = ops[k].t;
			p->end = i + n;
			return;
		}
	}
	if (p->buf[i] == '"') {
		p->tok = T_STRING;
		p->end = lex_string(p, i);
		return;
	}
	p->tok = T_WORD;
	if (p->buf[i] == '@' || p->buf[i] == '$') {
		p->tok = p->buf[i] == '@' ? T_FILE : T_VAR;
		if (p->buf[i] == '@' && i + 1 < p->len && p->buf[i + 1] == '"') {
			p->end = lex_string(p, i + 1);
			return;
		}
		i++;
	}
	p->end = i;
	while (p->end < p->len && is_word_char(p, p->end))
		text_put(p, p->buf[p->end++]);
	if (p->end == i) {
		if (p->tok == T_WORD)
			perr(p, i, "unexpected character '%c'", p->buf[i]);
		perr(p, p->start, "expected a name after '%c'", p->buf[p->start]);
	}
}

/* lex_regex - after =~ or !~: a /pattern/flags token into text and regex_flags. */
static void
lex_regex(struct parser *p)
{
	size_t i = skip_space(p, p->end);

	p->start = i;
	p->textlen = 0;
	p->regex_flags = 0;
	if (i >= p->len || p->buf[i] != '/')
		perr(p, i, "expected a regular expression /.../ after '%s'",
		     p->tok == T_MATCH ? "=~" : "!~");
	for (i++;; i++) {
		if (i >= p->len || p->buf[i] == '\n')
			perr(p, p->start, "unterminated regular expression");
		if (p->buf[i] == '/')
			break;
		if (p->buf[i] == '\\' && i + 1 < p->len && p->buf[i + 1] != '\n')
			text_put(p, p->buf[i++]);
		text_put(p, p->buf[i]);
	}
	text_put(p, '\0');
	p->textlen--;
	for (i++; i < p->len && isalnum((unsigned char)p->buf[i]); i++) {
		switch (p->buf[i]) {
		case 'i': p->regex_flags |= PCRE2_CASELESS; break;
		case 'm': p->regex_flags |= PCRE2_MULTILINE; break;
		case 's': p->regex_flags |= PCRE2_DOTALL; break;
		case 'x': p->regex_flags |= PCRE2_EXTENDED; break;
		default: perr(p, i, "unknown regular expression flag '%c'", p->buf[i]);
		}
	}
	p->tok = T_REGEX;
	p->end = i;
}

/* tok_is - is the current token the word w? */
static bool
tok_is(const struct parser *p, const char *w)
{
	return p->tok == T_WORD && strcmp(p->text, w) == 0;
}

/* tok_desc - short description of the current token for messages. */
static const char *
tok_desc(struct parser *p, char *buf, size_t len)
{
	if (p->tok == T_EOF)
		return "end of rule";
	snprintf(buf, len, "'%.*s'", (int)(p->end - p->start > 40 ? 40 : p->end - p->start),
		 p->buf + p->start);
	return buf;
}

/* expect - consume a token of type t or fail with "expected what". */
static void
expect(struct parser *p, enum tok t, const char *what)
{
	char b[64];

	if (p->tok != t)
		perr(p, p->start, "expected %s, found %s", what, tok_desc(p, b, sizeof(b)));
	advance(p);
}

/* valid_header_name - RFC 5322 field name: printable ASCII except ':'. */
static bool
valid_header_name(const char *s, size_t n)
{
	if (n == 0 || n > 100)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] <= ' ' || s[i] >= 0x7f || s[i] == ':')
			return false;
	return true;
}

/* field_at - resolve the field named buf[at, at+n); check its stage. */
static struct rules_fref
field_at(struct parser *p, size_t at, const char *s, size_t n)
{
	struct rules_fref fr = { RULES_F_COUNT, NULL };

	if (n == 6 && memcmp(s, "client", 6) == 0) {
		fr.field = RULES_F_CLIENT_IP;
	} else if (n > 8 && memcmp(s, "header[", 7) == 0 && s[n - 1] == ']') {
		if (!valid_header_name(s + 7, n - 8))
			perr(p, at + 7, "bad header name in '%.*s'", (int)n, s);
		fr.field = RULES_F_HEADER;
		fr.arg = p_strndup(p, s + 7, n - 8);
	} else if ((n == 6 && memcmp(s, "header", 6) == 0) || (n > 6 && memcmp(s, "header[", 7) == 0)) {
		perr(p, at, "expected header[Name]");
	} else {
		for (int f = 0; f < RULES_F_COUNT; f++)
			if (f != RULES_F_HEADER && strlen(rules_fields[f].name) == n &&
			    memcmp(rules_fields[f].name, s, n) == 0)
				fr.field = (enum rules_field)f;
	}
	if (fr.field == RULES_F_COUNT)
		perr(p, at, "unknown field '%.*s'", (int)n, s);
	if (rules_fields[fr.field].from > p->stage)
		perr(p, at, "field '%s' is not available at stage '%s' (only from '%s' on)",
		     rules_fields[fr.field].name, rules_stage_name(p->stage),
		     rules_stage_name(rules_fields[fr.field].from));
	p->fields |= (uint64_t)1 << fr.field;
	return fr;
}

/* parse_number - a whole decimal number in s, finite; false if not. */
static bool
parse_number(const char *s, double *out)
{
	char *end;

	if (*s == '\0' || isspace((unsigned char)*s))
		return false;
	errno = 0;
	*out = strtod(s, &end);
	if (*end != '\0' || errno != 0 || !isfinite(*out))
		return false;
	/* Decimal only: no hex, inf, nan (strtod accepts them). */
	for (const char *c = s; *c; c++)
		if (!isdigit((unsigned char)*c) && !strchr("+-.eE", *c))
			return false;
	return true;
}

/* check_keyword - a keyword field's value must be one of its words. */
static void
check_keyword(struct parser *p, enum rules_field f, const char *v, size_t at)
{
	const char *const *kw = rules_fields[f].keywords;
	char list[256] = "";

	if (kw == NULL)
		return;
	for (size_t i = 0; kw[i]; i++) {
		if (strcasecmp(kw[i], v) == 0)
			return;
		snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", i ? ", " : "",
			 kw[i]);
	}
	perr(p, at, "'%s' is not a value of %s (%s)", v, rules_fields[f].name, list);
}

/* free_code - rules_mem destructor for a compiled regular expression. */
static void
free_code(void *code)
{
	pcre2_code_free(code);
}

/* free_strset - rules_mem destructor. */
static void
free_strset(void *s)
{
	lists_strset_free(s);
}

/* free_netset - rules_mem destructor. */
static void
free_netset(void *s)
{
	lists_netset_free(s);
}

/* free_pf_req - rules_mem destructor for a prefilter requirement. */
static void
free_pf_req(void *req)
{
	rules_pf_req_free(req);
}

/* compile_regex - compile the current T_REGEX token into n->re (and its literals). */
static void
compile_regex(struct parser *p, struct rules_node *n)
{
	int errcode;
	PCRE2_SIZE erroff;
	pcre2_code *re;

	re = pcre2_compile((PCRE2_SPTR)p->text, p->textlen,
			   PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | p->regex_flags, &errcode, &erroff,
			   NULL);
	if (re == NULL) {
		PCRE2_UCHAR msg[256];

		pcre2_get_error_message(errcode, msg, sizeof(msg));
		perr(p, p->start + 1 + (erroff <= p->textlen ? erroff : 0),
		     "bad regular expression: %s", (char *)msg);
	}
	/* Without JIT (e.g. no executable memory) pcre2_match interprets. */
	(void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
	if (rules_own(p->r, free_code, re) < 0)
		perr(p, p->start, "out of memory");
	n->re = re;
	/* No requirement (or no memory for one) only means no prefilter gate. */
	n->pf_req = rules_pf_regex_req(p->text, p->textlen, p->regex_flags);
	if (rules_own(p->r, free_pf_req, n->pf_req) < 0)
		n->pf_req = NULL;
}

/* file_set - load @path (relative to the rule file's directory) once per rule set. */
static void
file_set(struct parser *p, struct rules_node *n, size_t at)
{
	char path[4096], err[512];
	struct lists_strset *strs;
	struct lists_netset *nets;

	if (p->text[0] == '\0')
		perr(p, at, "expected a file name after '@'");
	if (p->text[0] == '/' || strcmp(p->dir, ".") == 0)
		snprintf(path, sizeof(path), "%s", p->text);
	else
		snprintf(path, sizeof(path), "%s/%s", p->dir, p->text);
	for (struct rules_file *f = p->r->files; f != NULL; f = f->next)
		if (strcmp(f->path, path) == 0) {
			n->strs = f->strs;
			n->nets = f->nets;
			return;
		}
	strs = lists_strset_new();
	nets = lists_netset_new();
	if (rules_own(p->r, free_strset, strs) < 0 || rules_own(p->r, free_netset, nets) < 0 ||
	    strs == NULL || nets == NULL)
		perr(p, at, "out of memory");
	if (lists_load_file(path, strs, nets, err, sizeof(err)) < 0)
		perr(p, at, "%s%s%s", path, isdigit((unsigned char)err[0]) ? ":" : ": ", err);
	(void)lists_netset_count(nets);
	n->strs = strs;
	n->nets = nets;
	struct rules_file *f = p_alloc(p, sizeof(*f));

	f->path = p_strndup(p, path, strlen(path));
	f->strs = strs;
	f->nets = nets;
	f->next = p->r->files;
	p->r->files = f;
}

/* parse_list - "(a, b, c)" after in: strings and networks. */
static void
parse_list(struct parser *p, struct rules_node *n)
{
	struct lists_strset *strs = lists_strset_new();
	struct lists_netset *nets = lists_netset_new();
	unsigned char addr[16];
	unsigned plen;
	int family;

	if (rules_own(p->r, free_strset, strs) < 0 || rules_own(p->r, free_netset, nets) < 0 ||
	    strs == NULL || nets == NULL)
		perr(p, p->start, "out of memory");
	advance(p);
	for (;;) {
		char b[64];

		if (p->tok == T_FILE && p->buf[p->start + 1] != '"') {
			/* "@example.org" in a list is a domain entry, not a file. */
			p->textlen = 0;
			for (size_t k = p->start; k < p->end; k++)
				text_put(p, p->buf[k]);
		} else if (p->tok != T_WORD && p->tok != T_STRING) {
			perr(p, p->start, "expected a list element, found %s",
			     tok_desc(p, b, sizeof(b)));
		}
		check_keyword(p, n->f.field, p->text, p->start);
		bool cidr = lists_parse_cidr(p->text, &family, addr, &plen) == 0;

		if (cidr && lists_netset_add(nets, p->text) < 0)
			perr(p, p->start, "out of memory");
		/* Addresses also go in as strings: helo in (192.0.2.1) compares text. */
		if (p->textlen > 0 && (!cidr || strchr(p->text, '/') == NULL) &&
		    lists_strset_add(strs, p->text) < 0)
			perr(p, p->start, "out of memory");
		advance(p);
		if (p->tok == T_RPAREN)
			break;
		expect(p, T_COMMA, "',' or ')'");
	}
	advance(p);
	/* Sort now, so evaluation never takes the set's lock. */
	(void)lists_netset_count(nets);
	n->strs = strs;
	n->nets = nets;
}

/* parse_in_rhs - what follows "in": (list), @FILE or $name. */
static void
parse_in_rhs(struct parser *p, struct rules_node *n)
{
	char b[64];

	if (p->tok == T_LPAREN) {
		parse_list(p, n);
	} else if (p->tok == T_FILE) {
		file_set(p, n, p->start);
		advance(p);
	} else if (p->tok == T_VAR) {
		if (strcmp(p->text, "mynetworks") == 0)
			n->nets = p->env ? p->env->mynetworks : NULL;
		else if (strcmp(p->text, "local_domains") == 0)
			n->strs = p->env ? p->env->local_domains : NULL;
		else
			perr(p, p->start, "unknown list '$%s' (known: $mynetworks, $local_domains)",
			     p->text);
		advance(p);
	} else {
		perr(p, p->start, "expected '(', @FILE or $list after 'in', found %s",
		     tok_desc(p, b, sizeof(b)));
	}
}

/* parse_value - the right side of == != < <= > >=. */
static void
parse_value(struct parser *p, struct rules_node *n)
{
	enum rules_kind kind = rules_fields[n->f.field].kind;
	char b[64];

	if (p->tok != T_WORD && p->tok != T_STRING)
		perr(p, p->start, "expected a value, found %s", tok_desc(p, b, sizeof(b)));
	if (kind == RULES_K_NUMBER) {
		if (!parse_number(p->text, &n->num))
			perr(p, p->start, "expected a number, found %s", tok_desc(p, b, sizeof(b)));
	}
	check_keyword(p, n->f.field, p->text, p->start);
	if (kind == RULES_K_IP && strchr(p->text, '/') != NULL)
		perr(p, p->start, "a network matches only with 'in', e.g. in (%s)", p->text);
	n->str = p_strndup(p, p->text, p->textlen);
	n->len = p->textlen;
	advance(p);
}

/* parse_comparison - after a field: an operator and its right side, or bare use. */
static struct rules_node *
parse_comparison(struct parser *p, struct rules_fref fr)
{
	struct rules_node *n = p_alloc(p, sizeof(*n));
	enum rules_kind kind = rules_fields[fr.field].kind;
	size_t opat = p->start;

	n->f = fr;
	switch (p->tok) {
	case T_MATCH: n->op = RULES_OP_MATCH; break;
	case T_NOMATCH: n->op = RULES_OP_NOMATCH; break;
	case T_EQ: n->op = RULES_OP_EQ; break;
	case T_NE: n->op = RULES_OP_NE; break;
	case T_LT: n->op = RULES_OP_LT; break;
	case T_LE: n->op = RULES_OP_LE; break;
	case T_GT: n->op = RULES_OP_GT; break;
	case T_GE: n->op = RULES_OP_GE; break;
	default:
		if (!tok_is(p, "in")) {
			n->type = RULES_N_BARE;
			return n;
		}
		n->op = RULES_OP_IN;
	}
	n->type = RULES_N_CMP;
	if (kind == RULES_K_BOOL)
		perr(p, opat, "'%s' is a boolean: use it bare ('%s' or '!%s')",
		     rules_fields[fr.field].name, rules_fields[fr.field].name,
		     rules_fields[fr.field].name);
	if (n->op >= RULES_OP_LT && n->op <= RULES_OP_GE && kind != RULES_K_NUMBER)
		perr(p, opat, "operator '%.*s' needs a numeric field; '%s' is not one",
		     (int)(p->end - p->start), p->buf + p->start, rules_fields[fr.field].name);
	if (n->op == RULES_OP_MATCH || n->op == RULES_OP_NOMATCH) {
		lex_regex(p);
		compile_regex(p, n);
		advance(p);
	} else if (n->op == RULES_OP_IN) {
		advance(p);
		parse_in_rhs(p, n);
	} else {
		advance(p);
		parse_value(p, n);
	}
	return n;
}

/* parse_rate - "N/PERIOD" (period: number with s, m, h or d) into n. */
static void
parse_rate(struct parser *p, struct rules_node *n, const char *s, size_t at)
{
	char *end;
	unsigned long num, per;
	unsigned long mult = 1;

	errno = 0;
	if (!isdigit((unsigned char)s[0]))
		goto bad;
	num = strtoul(s, &end, 10);
	if (errno || *end != '/' || num == 0 || num > 1000000000UL)
		goto bad;
	s = end + 1;
	if (!isdigit((unsigned char)s[0]))
		goto bad;
	per = strtoul(s, &end, 10);
	if (errno || per == 0)
		goto bad;
	switch (*end) {
	case '\0': break;
	case 's': mult = 1; end++; break;
	case 'm': mult = 60; end++; break;
	case 'h': mult = 3600; end++; break;
	case 'd': mult = 86400; end++; break;
	default: goto bad;
	}
	if (*end != '\0' || per > 366UL * 86400 / mult)
		goto bad;
	n->limit_n = (unsigned)num;
	n->limit_period = (unsigned)(per * mult);
	return;
bad:
	perr(p, at, "expected a rate N/PERIOD, e.g. 30/1m (PERIOD: number with s, m, h or d)");
}

/* parse_limit - limit(KEY[+KEY...], N/PERIOD). */
static struct rules_node *
parse_limit(struct parser *p)
{
	struct rules_node *n = p_alloc(p, sizeof(*n));
	struct rules_fref keys[8];
	bool need_field = true;
	char rate[64] = "";
	size_t rateat;

	n->type = RULES_N_LIMIT;
	advance(p);
	expect(p, T_LPAREN, "'(' after limit");
	while (p->tok == T_WORD) {
		const char *w = p->text;
		size_t i = 0;

		while (w[i]) {
			if (w[i] == '+') {
				if (need_field)
					perr(p, p->start + i, "expected a key field before '+'");
				need_field = true;
				i++;
				continue;
			}
			size_t j = i;

			while (w[j] && w[j] != '+')
				j++;
			if (!need_field)
				perr(p, p->start + i, "expected '+' between key fields");
			if (n->nkeys == sizeof(keys) / sizeof(keys[0]))
				perr(p, p->start + i, "too many key fields");
			keys[n->nkeys++] = field_at(p, p->start + i, w + i, j - i);
			need_field = false;
			i = j;
		}
		advance(p);
	}
	if (need_field)
		perr(p, p->start, "expected a key field");
	expect(p, T_COMMA, "',' after the limit key");
	rateat = p->start;
	while (p->tok == T_WORD) {
		if (strlen(rate) + p->textlen >= sizeof(rate))
			perr(p, rateat, "rate too long");
		strcat(rate, p->text);
		advance(p);
	}
	parse_rate(p, n, rate, rateat);
	expect(p, T_RPAREN, "')' after the rate");
	n->keys = p_alloc(p, n->nkeys * sizeof(*n->keys));
	memcpy(n->keys, keys, n->nkeys * sizeof(*n->keys));
	p->has_limit = true;
	return n;
}

static struct rules_node *parse_or(struct parser *p);

/* parse_primary - a group, true, limit() or a comparison. */
static struct rules_node *
parse_primary(struct parser *p)
{
	struct rules_node *n;
	char b[64];

	if (p->tok == T_LPAREN) {
		advance(p);
		n = parse_or(p);
		expect(p, T_RPAREN, "')'");
		return n;
	}
	if (tok_is(p, "true")) {
		n = p_alloc(p, sizeof(*n));
		n->type = RULES_N_TRUE;
		advance(p);
		return n;
	}
	if (tok_is(p, "limit"))
		return parse_limit(p);
	if (p->tok != T_WORD)
		perr(p, p->start, "expected a condition, found %s", tok_desc(p, b, sizeof(b)));
	size_t at = p->start;
	struct rules_fref fr = field_at(p, at, p->text, p->textlen);

	advance(p);
	return parse_comparison(p, fr);
}

/* parse_unary - '!' negates the whole comparison or group after it. */
static struct rules_node *
parse_unary(struct parser *p)
{
	if (p->tok == T_NOT) {
		struct rules_node *n = p_alloc(p, sizeof(*n));

		advance(p);
		n->type = RULES_N_NOT;
		n->a = parse_unary(p);
		return n;
	}
	return parse_primary(p);
}

/* parse_and - unary ('&&' unary)*; binds tighter than ||. */
static struct rules_node *
parse_and(struct parser *p)
{
	struct rules_node *n = parse_unary(p);

	while (p->tok == T_AND) {
		struct rules_node *m = p_alloc(p, sizeof(*m));

		advance(p);
		m->type = RULES_N_AND;
		m->a = n;
		m->b = parse_unary(p);
		n = m;
	}
	return n;
}

/* parse_or - and ('||' and)*. */
static struct rules_node *
parse_or(struct parser *p)
{
	struct rules_node *n = parse_and(p);

	while (p->tok == T_OR) {
		struct rules_node *m = p_alloc(p, sizeof(*m));

		advance(p);
		m->type = RULES_N_OR;
		m->a = n;
		m->b = parse_and(p);
		n = m;
	}
	return n;
}

/* parse_reply - CODE X.Y.Z "text" for reject (class 5) or tempfail (class 4). */
static void
parse_reply(struct parser *p, struct rules_action *a, char cls, const char *verb)
{
	const char *t;
	int parts = 0, digits = 0;

	if (p->tok != T_WORD || strlen(p->text) != 3 || !isdigit((unsigned char)p->text[0]) ||
	    !isdigit((unsigned char)p->text[1]) || !isdigit((unsigned char)p->text[2]) ||
	    p->text[0] != cls)
		perr(p, p->start, "%s needs a %cxx reply code", verb, cls);
	a->code = atoi(p->text);
	advance(p);
	t = p->text;
	if (p->tok == T_WORD && t[0] == cls && t[1] == '.') {
		for (const char *c = t + 2;; c++) {
			if (isdigit((unsigned char)*c) && digits < 3) {
				digits++;
			} else if ((*c == '.' || *c == '\0') && digits > 0) {
				parts++;
				digits = 0;
				if (*c == '\0')
					break;
			} else {
				parts = -1;
				break;
			}
		}
	}
	if (parts != 2)
		perr(p, p->start, "%s needs a %c.X.Y enhanced status code", verb, cls);
	a->ecode = p_strndup(p, p->text, p->textlen);
	advance(p);
	if (p->tok != T_STRING)
		perr(p, p->start, "expected the reply text in double quotes");
	if (p->textlen > 400)
		perr(p, p->start, "reply text too long");
	a->text = p_strndup(p, p->text, p->textlen);
	advance(p);
}

/* parse_action - one action; returns true when it is terminal. */
static bool
parse_action(struct parser *p, struct rules_action *a)
{
	char b[64];
	size_t at = p->start;

	if (p->tok != T_WORD)
		perr(p, at, "expected an action, found %s", tok_desc(p, b, sizeof(b)));
	if (tok_is(p, "accept")) {
		a->type = RULES_A_ACCEPT;
		advance(p);
	} else if (tok_is(p, "discard")) {
		if (p->stage < RULES_STAGE_MAIL)
			perr(p, at, "discard needs a message: use it from the mail stage on");
		a->type = RULES_A_DISCARD;
		advance(p);
	} else if (tok_is(p, "reject")) {
		a->type = RULES_A_REJECT;
		advance(p);
		parse_reply(p, a, '5', "reject");
	} else if (tok_is(p, "tempfail")) {
		a->type = RULES_A_TEMPFAIL;
		advance(p);
		parse_reply(p, a, '4', "tempfail");
	} else if (tok_is(p, "score")) {
		a->type = RULES_A_SCORE;
		advance(p);
		if (p->tok != T_WORD || !parse_number(p->text, &a->score) || fabs(a->score) > 1e6)
			perr(p, p->start, "expected a score (a decimal number)");
		advance(p);
		if (p->tok == T_STRING) {
			a->text = p_strndup(p, p->text, p->textlen);
			advance(p);
		}
	} else if (tok_is(p, "add_header")) {
		a->type = RULES_A_ADD_HEADER;
		advance(p);
		if (p->tok != T_WORD || !valid_header_name(p->text, p->textlen))
			perr(p, p->start, "expected a header name");
		a->name = p_strndup(p, p->text, p->textlen);
		advance(p);
		if (p->tok != T_STRING && p->tok != T_WORD)
			perr(p, p->start, "expected the header value in double quotes");
		if (p->textlen > 900)
			perr(p, p->start, "header value too long");
		a->text = p_strndup(p, p->text, p->textlen);
		advance(p);
	} else if (tok_is(p, "log")) {
		a->type = RULES_A_LOG;
		advance(p);
		if (p->tok != T_STRING)
			perr(p, p->start, "expected the log text in double quotes");
		a->text = p_strndup(p, p->text, p->textlen);
		advance(p);
	} else {
		perr(p, at, "unknown action '%s'", p->text);
	}
	return a->type <= RULES_A_DISCARD;
}

/* add_rule - append a finished rule to the set. */
static void
add_rule(struct parser *p, struct rules_rule *rule)
{
	struct rules *r = p->r;

	if (r->nrules == r->caprules) {
		size_t cap = r->caprules ? r->caprules * 2 : 32;
		struct rules_rule **v = realloc(r->rule, cap * sizeof(*v));

		if (v == NULL)
			perr(p, 0, "out of memory");
		r->rule = v;
		r->caprules = cap;
	}
	r->rule[r->nrules++] = rule;
	r->fields[rule->stage] |= p->fields;
	if (p->has_limit)
		r->has_limit[rule->stage] = true;
}

/* parse_rule_body - [NAME:] STAGE cond -> actions, from the logical line. */
static void
parse_rule_body(struct parser *p)
{
	struct rules_action acts[RULES_ACTS_MAX];
	struct rules_rule *rule;
	const char *label = NULL;
	unsigned nacts = 0;
	bool terminal = false;
	char b[64];
	int st;

	memset(acts, 0, sizeof(acts));
	p->end = 0;
	p->fields = 0;
	p->has_limit = false;
	advance(p);
	if (p->tok == T_WORD && p->textlen > 1 && p->text[p->textlen - 1] == ':') {
		for (size_t i = 0; i + 1 < p->textlen; i++)
			if (!isalnum((unsigned char)p->text[i]) && !strchr("_-.", p->text[i]))
				perr(p, p->start + i, "bad character in rule name");
		label = p_strndup(p, p->text, p->textlen - 1);
		for (size_t i = 0; i < p->r->nrules; i++)
			if (strcmp(p->r->rule[i]->name, label) == 0)
				perr(p, p->start, "duplicate rule name '%s'", label);
		advance(p);
	}
	if (p->tok != T_WORD || (st = rules_stage_from_name(p->text)) < 0)
		perr(p, p->start, "expected a stage (connect, helo, mail, rcpt, data, header, eoh, body, eom), found %s",
		     tok_desc(p, b, sizeof(b)));
	p->stage = (enum rules_stage)st;
	advance(p);
	rule = p_alloc(p, sizeof(*rule));
	rule->stage = p->stage;
	if (p->tok == T_ARROW)
		perr(p, p->start, "expected a condition before '->' (use 'true' for always)");
	rule->cond = parse_or(p);
	if (p->tok != T_ARROW)
		perr(p, p->start, "expected '&&', '||' or '->', found %s", tok_desc(p, b, sizeof(b)));
	advance(p);
	for (;;) {
		size_t at = p->start;

		if (nacts == RULES_ACTS_MAX)
			perr(p, at, "too many actions");
		if (parse_action(p, &acts[nacts++])) {
			if (terminal)
				perr(p, at, "a rule can have only one terminal action (accept, reject, tempfail, discard)");
			terminal = true;
		}
		if (p->tok == T_EOF)
			break;
		if (p->tok != T_SEMI)
			perr(p, p->start, "expected ';' or end of rule, found %s",
			     tok_desc(p, b, sizeof(b)));
		advance(p);
		if (p->tok == T_EOF)
			break;
	}
	rule->acts = p_alloc(p, nacts * sizeof(*rule->acts));
	memcpy(rule->acts, acts, nacts * sizeof(*rule->acts));
	rule->nacts = nacts;
	if (label != NULL) {
		rule->name = label;
	} else {
		char name[4096];
		int n = snprintf(name, sizeof(name), "%s:%u", p->file, p->lno[0]);

		rule->name = p_strndup(p, name, n < 0 ? 0 : strlen(name));
	}
	add_rule(p, rule);
}

/* parse_rule - the current logical line; on error perr() jumps back here. */
static void
parse_rule(struct parser *p)
{
	if (setjmp(p->jb) == 0)
		parse_rule_body(p);
}

/* line_put - append n bytes of physical line `line` (from column col) to the logical line. */
static int
line_put(struct parser *p, const char *s, size_t n, unsigned line, unsigned col)
{
	if (p->len + n + 2 > p->cap) {
		size_t cap = (p->len + n + 2) * 2;
		char *b = realloc(p->buf, cap);
		unsigned *l = b ? realloc(p->lno, cap * sizeof(*l)) : NULL;
		unsigned *c = l ? realloc(p->col, cap * sizeof(*c)) : NULL;

		if (b)
			p->buf = b;
		if (l)
			p->lno = l;
		if (c)
			p->col = c;
		if (c == NULL)
			return -1;
		p->cap = cap;
	}
	for (size_t i = 0; i < n; i++) {
		p->buf[p->len] = s[i];
		p->lno[p->len] = line;
		p->col[p->len] = col + (unsigned)i;
		p->len++;
	}
	/* The position after the last byte, for errors at the end of the rule. */
	p->buf[p->len] = '\0';
	p->lno[p->len] = line;
	p->col[p->len] = col + (unsigned)n;
	return 0;
}

/* parse_text - split text into logical lines and parse each. */
static void
parse_text(struct parser *p, const char *text, size_t len)
{
	unsigned line = 0;
	size_t i = 0;

	p->len = 0;
	while (i < len) {
		const char *s = text + i;
		const char *nl = memchr(s, '\n', len - i);
		size_t n = nl ? (size_t)(nl - s) : len - i;
		size_t k = 0;

		i += n + (nl != NULL);
		line++;
		if (n > 0 && s[n - 1] == '\r')
			n--;
		if (memchr(s, '\0', n) != NULL) {
			perr_line(p, line, (unsigned)((const char *)memchr(s, '\0', n) - s) + 1,
				  "NUL byte in rule file");
			continue;
		}
		while (k < n && (s[k] == ' ' || s[k] == '\t'))
			k++;
		if (k == n || s[k] == '#')
			continue; /* blank or comment: does not end a rule */
		if (k > 0) {
			if (p->len == 0) {
				perr_line(p, line, (unsigned)k + 1, "continuation line without a rule");
				continue;
			}
			if (line_put(p, "\n", 1, p->lno[p->len], p->col[p->len]) < 0 ||
			    line_put(p, s, n, line, 1) < 0)
				goto oom;
			continue;
		}
		if (p->len > 0)
			parse_rule(p);
		p->len = 0;
		if (line_put(p, s, n, line, 1) < 0)
			goto oom;
	}
	if (p->len > 0)
		parse_rule(p);
	return;
oom:
	perr_line(p, line, 1, "out of memory");
}

/* rules_new - an empty rule set bound to env. */
static struct rules *
rules_new(const struct rules_env *env)
{
	struct rules *r = calloc(1, sizeof(*r));

	if (r && env)
		r->env = *env;
	return r;
}

/* index_stages - per-stage arrays of the rules, in file order. */
static int
index_stages(struct rules *r)
{
	for (size_t i = 0; i < r->nrules; i++)
		r->nstage[r->rule[i]->stage]++;
	for (int s = 0; s < RULES_STAGE_COUNT; s++) {
		if (r->nstage[s] == 0)
			continue;
		if ((r->stage[s] = calloc(r->nstage[s], sizeof(*r->stage[s]))) == NULL)
			return -1;
		r->nstage[s] = 0;
	}
	for (size_t i = 0; i < r->nrules; i++) {
		enum rules_stage s = r->rule[i]->stage;

		r->stage[s][r->nstage[s]++] = r->rule[i];
	}
	return 0;
}

/*
 * finish - index the stages and build the literal prefilter (skipped when
 * RAVELIN_RULES_NO_PREFILTER is set, for tests and measurements; without
 * it, e.g. on ENOMEM, evaluation is the same, only slower).
 */
static int
finish(struct rules *r)
{
	if (index_stages(r) < 0)
		return -1;
	if (getenv("RAVELIN_RULES_NO_PREFILTER") == NULL)
		r->pf = rules_prefilter_build(r);
	return 0;
}

/* parse_one - parse one file's text into r; returns its error count. */
static unsigned
parse_one(struct rules *r, const struct rules_env *env, const char *name, const char *text,
	  size_t len, void (*error)(void *, const char *), void *arg)
{
	struct parser p = { .r = r, .env = env, .file = name, .error = error, .errarg = arg };
	const char *slash = strrchr(name, '/');

	p.dir = slash ? strndup(name, slash == name ? 1 : (size_t)(slash - name)) : strdup(".");
	if (p.dir == NULL || line_put(&p, "", 0, 1, 1) < 0) {
		perr_line(&p, 1, 1, "out of memory");
	} else {
		parse_text(&p, text, len);
	}
	free(p.dir);
	free(p.buf);
	free(p.lno);
	free(p.col);
	free(p.text);
	return p.nerrors;
}

/* read_file - the whole file into a malloc'd buffer; NULL with errno. */
static char *
read_file(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	char *buf = NULL;
	size_t cap = 0, n = 0, got;

	if (fp == NULL)
		return NULL;
	do {
		if (n == cap) {
			char *b;

			cap = cap ? cap * 2 : 65536;
			if (cap > RULES_FILE_MAX || (b = realloc(buf, cap)) == NULL) {
				free(buf);
				fclose(fp);
				errno = cap > RULES_FILE_MAX ? EFBIG : ENOMEM;
				return NULL;
			}
			buf = b;
		}
		got = fread(buf + n, 1, cap - n, fp);
		n += got;
	} while (got > 0);
	if (ferror(fp)) {
		int e = errno;

		free(buf);
		fclose(fp);
		errno = e ? e : EIO;
		return NULL;
	}
	fclose(fp);
	*len = n;
	return buf ? buf : strdup("");
}

/* rules_load - parse and compile rule files; NULL after reporting every error. */
struct rules *
rules_load(const char *const *paths, size_t npaths, const struct rules_env *env,
	   void (*error)(void *arg, const char *msg), void *arg)
{
	struct rules *r = rules_new(env);
	unsigned nerrors = 0;

	if (r == NULL) {
		if (error)
			error(arg, "rules: out of memory");
		return NULL;
	}
	for (size_t i = 0; i < npaths; i++) {
		size_t len = 0;
		char *text = read_file(paths[i], &len);

		if (text == NULL) {
			char msg[1024];

			snprintf(msg, sizeof(msg), "%s:1:1: cannot read: %s", paths[i], strerror(errno));
			if (error)
				error(arg, msg);
			nerrors++;
			continue;
		}
		nerrors += parse_one(r, env, paths[i], text, len, error, arg);
		free(text);
	}
	if (nerrors == 0 && finish(r) < 0) {
		if (error)
			error(arg, "rules: out of memory");
		nerrors++;
	}
	if (nerrors > 0) {
		rules_free(r);
		return NULL;
	}
	return r;
}

/* rules_load_text - rules_load() for one in-memory file. */
struct rules *
rules_load_text(const char *name, const char *text, const struct rules_env *env,
		void (*error)(void *arg, const char *msg), void *arg)
{
	struct rules *r = rules_new(env);
	unsigned nerrors;

	if (r == NULL) {
		if (error)
			error(arg, "rules: out of memory");
		return NULL;
	}
	nerrors = parse_one(r, env, name, text, strlen(text), error, arg);
	if (nerrors == 0 && finish(r) < 0) {
		if (error)
			error(arg, "rules: out of memory");
		nerrors++;
	}
	if (nerrors > 0) {
		rules_free(r);
		return NULL;
	}
	return r;
}
