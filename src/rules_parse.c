/*
 * rules_parse.c - recursive-descent parser for rule files.
 *
 * Reads rule files (ravelin.rules(5)) into the compiled form of
 * rules_impl.h: joins continuation lines into logical lines, each byte
 * keeping its FILE:LINE:COLUMN, has rules_lex.c cut them into tokens,
 * parses
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
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Project. */
#include "fmt.h"
#include "lists.h"
#include "rules.h"
#include "rules_impl.h"
#include "rules_lex.h"
#include "rules_prefilter.h"

/* Longest rule file we read, and most actions in one rule. */
#define RULES_FILE_MAX (64u * 1024 * 1024)
#define RULES_ACTS_MAX 16

/* Parser state for one file; one logical line (in lx) at a time. */
struct parser {
	struct rules *r;
	const struct rules_env *env;
	const char *file; /* as given, for messages and rule names */
	char *dir;	  /* for relative @FILE paths */
	void (*error)(void *, const char *);
	void *errarg;
	unsigned nerrors;

	struct rules_lex lx;

	enum rules_stage stage;
	uint64_t fields;
	bool has_limit;
};

static void perr(struct parser *p, size_t at, const char *fmt, ...)
	__attribute__((format(printf, 3, 4), noreturn));
static void perr_found(struct parser *p, const char *what) __attribute__((noreturn));

/* report - pass one "FILE:LINE:COLUMN: text" message to the callback. */
static void
report(struct parser *p, unsigned line, unsigned col, const char *fmt, va_list ap)
{
	char msg[1024];
	int n;

	p->nerrors++;
	n = fmt_snprintf(msg, sizeof(msg), "%s:%u:%u: ", p->file, line, col);
	if (n < 0 || (size_t)n >= sizeof(msg))
		n = 0;
	fmt_vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap);
	if (p->error)
		p->error(p->errarg, msg);
}

/* report_at - the lexer's report callback: an error at byte `at` of the logical line. */
static void
report_at(void *arg, size_t at, const char *fmt, va_list ap)
{
	struct parser *p = arg;

	if (at > p->lx.len)
		at = p->lx.len;
	report(p, p->lx.lno[at], p->lx.col[at], fmt, ap);
}

/* perr - report an error at byte `at` of the logical line; abandon the rule. */
static void
perr(struct parser *p, size_t at, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	report_at(p, at, fmt, ap);
	va_end(ap);
	longjmp(p->lx.jb, 1);
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
		perr(p, p->lx.start, "out of memory");
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

/* perr_found - "expected WHAT, found TOKEN" at the current token; abandon the rule. */
static void
perr_found(struct parser *p, const char *what)
{
	char b[64];

	perr(p, p->lx.start, "expected %s, found %s", what, rules_lex_desc(&p->lx, b, sizeof(b)));
}

/* expect - consume a token of type t or fail with "expected what". */
static void
expect(struct parser *p, enum rules_lex_tok t, const char *what)
{
	if (p->lx.tok != t)
		perr_found(p, what);
	rules_lex_next(&p->lx);
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
		fmt_snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", i ? ", " : "",
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

/* compile_regex - compile the current RULES_LEX_REGEX token into n->re (and its literals). */
static void
compile_regex(struct parser *p, struct rules_node *n)
{
	int errcode;
	PCRE2_SIZE erroff;
	pcre2_code *re;

	re = pcre2_compile((PCRE2_SPTR)p->lx.text, p->lx.textlen,
			   PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | p->lx.regex_flags, &errcode,
			   &erroff, NULL);
	if (re == NULL) {
		PCRE2_UCHAR msg[256];

		pcre2_get_error_message(errcode, msg, sizeof(msg));
		perr(p, p->lx.start + 1 + (erroff <= p->lx.textlen ? erroff : 0),
		     "bad regular expression: %s", (char *)msg);
	}
	/* Without JIT (e.g. no executable memory) pcre2_match interprets. */
	(void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
	if (rules_own(p->r, free_code, re) < 0)
		perr(p, p->lx.start, "out of memory");
	n->re = re;
	/* No requirement (or no memory for one) only means no prefilter gate. */
	n->pf_req = rules_pf_regex_req(p->lx.text, p->lx.textlen, p->lx.regex_flags);
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

	if (p->lx.text[0] == '\0')
		perr(p, at, "expected a file name after '@'");
	if (p->lx.text[0] == '/' || strcmp(p->dir, ".") == 0)
		fmt_snprintf(path, sizeof(path), "%s", p->lx.text);
	else
		fmt_snprintf(path, sizeof(path), "%s/%s", p->dir, p->lx.text);
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
		perr(p, p->lx.start, "out of memory");
	rules_lex_next(&p->lx);
	for (;;) {
		if (p->lx.tok == RULES_LEX_FILE && p->lx.buf[p->lx.start + 1] != '"') {
			/* "@example.org" in a list is a domain entry, not a file. */
			rules_lex_raw(&p->lx);
		} else if (p->lx.tok != RULES_LEX_WORD && p->lx.tok != RULES_LEX_STRING) {
			perr_found(p, "a list element");
		}
		check_keyword(p, n->f.field, p->lx.text, p->lx.start);
		bool cidr = lists_parse_cidr(p->lx.text, &family, addr, &plen) == 0;

		if (cidr && lists_netset_add(nets, p->lx.text) < 0)
			perr(p, p->lx.start, "out of memory");
		/* Addresses also go in as strings: helo in (192.0.2.1) compares text. */
		if (p->lx.textlen > 0 && (!cidr || strchr(p->lx.text, '/') == NULL) &&
		    lists_strset_add(strs, p->lx.text) < 0)
			perr(p, p->lx.start, "out of memory");
		rules_lex_next(&p->lx);
		if (p->lx.tok == RULES_LEX_RPAREN)
			break;
		expect(p, RULES_LEX_COMMA, "',' or ')'");
	}
	rules_lex_next(&p->lx);
	/* Sort now, so evaluation never takes the set's lock. */
	(void)lists_netset_count(nets);
	n->strs = strs;
	n->nets = nets;
}

/* parse_in_rhs - what follows "in": (list), @FILE or $name. */
static void
parse_in_rhs(struct parser *p, struct rules_node *n)
{
	if (p->lx.tok == RULES_LEX_LPAREN) {
		parse_list(p, n);
	} else if (p->lx.tok == RULES_LEX_FILE) {
		file_set(p, n, p->lx.start);
		rules_lex_next(&p->lx);
	} else if (p->lx.tok == RULES_LEX_VAR) {
		if (strcmp(p->lx.text, "mynetworks") == 0)
			n->nets = p->env ? p->env->mynetworks : NULL;
		else if (strcmp(p->lx.text, "local_domains") == 0)
			n->strs = p->env ? p->env->local_domains : NULL;
		else
			perr(p, p->lx.start,
			     "unknown list '$%s' (known: $mynetworks, $local_domains)", p->lx.text);
		rules_lex_next(&p->lx);
	} else {
		perr_found(p, "'(', @FILE or $list after 'in'");
	}
}

/* parse_value - the right side of == != < <= > >=. */
static void
parse_value(struct parser *p, struct rules_node *n)
{
	enum rules_kind kind = rules_fields[n->f.field].kind;

	if (p->lx.tok != RULES_LEX_WORD && p->lx.tok != RULES_LEX_STRING)
		perr_found(p, "a value");
	if (kind == RULES_K_NUMBER) {
		if (!parse_number(p->lx.text, &n->num))
			perr_found(p, "a number");
	}
	check_keyword(p, n->f.field, p->lx.text, p->lx.start);
	if (kind == RULES_K_IP && strchr(p->lx.text, '/') != NULL)
		perr(p, p->lx.start, "a network matches only with 'in', e.g. in (%s)", p->lx.text);
	n->str = p_strndup(p, p->lx.text, p->lx.textlen);
	n->len = p->lx.textlen;
	rules_lex_next(&p->lx);
}

/* parse_comparison - after a field: an operator and its right side, or bare use. */
static struct rules_node *
parse_comparison(struct parser *p, struct rules_fref fr)
{
	struct rules_node *n = p_alloc(p, sizeof(*n));
	enum rules_kind kind = rules_fields[fr.field].kind;
	size_t opat = p->lx.start;

	n->f = fr;
	switch (p->lx.tok) {
	case RULES_LEX_MATCH: n->op = RULES_OP_MATCH; break;
	case RULES_LEX_NOMATCH: n->op = RULES_OP_NOMATCH; break;
	case RULES_LEX_EQ: n->op = RULES_OP_EQ; break;
	case RULES_LEX_NE: n->op = RULES_OP_NE; break;
	case RULES_LEX_LT: n->op = RULES_OP_LT; break;
	case RULES_LEX_LE: n->op = RULES_OP_LE; break;
	case RULES_LEX_GT: n->op = RULES_OP_GT; break;
	case RULES_LEX_GE: n->op = RULES_OP_GE; break;
	default:
		if (!rules_lex_is(&p->lx, "in")) {
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
		     (int)(p->lx.end - p->lx.start), p->lx.buf + p->lx.start,
		     rules_fields[fr.field].name);
	if (n->op == RULES_OP_MATCH || n->op == RULES_OP_NOMATCH) {
		rules_lex_regex(&p->lx);
		compile_regex(p, n);
		rules_lex_next(&p->lx);
	} else if (n->op == RULES_OP_IN) {
		rules_lex_next(&p->lx);
		parse_in_rhs(p, n);
	} else {
		rules_lex_next(&p->lx);
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
	rules_lex_next(&p->lx);
	expect(p, RULES_LEX_LPAREN, "'(' after limit");
	while (p->lx.tok == RULES_LEX_WORD) {
		const char *w = p->lx.text;
		size_t i = 0;

		while (w[i]) {
			if (w[i] == '+') {
				if (need_field)
					perr(p, p->lx.start + i, "expected a key field before '+'");
				need_field = true;
				i++;
				continue;
			}
			size_t j = i;

			while (w[j] && w[j] != '+')
				j++;
			if (!need_field)
				perr(p, p->lx.start + i, "expected '+' between key fields");
			if (n->nkeys == sizeof(keys) / sizeof(keys[0]))
				perr(p, p->lx.start + i, "too many key fields");
			keys[n->nkeys++] = field_at(p, p->lx.start + i, w + i, j - i);
			need_field = false;
			i = j;
		}
		rules_lex_next(&p->lx);
	}
	if (need_field)
		perr(p, p->lx.start, "expected a key field");
	expect(p, RULES_LEX_COMMA, "',' after the limit key");
	rateat = p->lx.start;
	while (p->lx.tok == RULES_LEX_WORD) {
		if (strlen(rate) + p->lx.textlen >= sizeof(rate))
			perr(p, rateat, "rate too long");
		strcat(rate, p->lx.text);
		rules_lex_next(&p->lx);
	}
	parse_rate(p, n, rate, rateat);
	expect(p, RULES_LEX_RPAREN, "')' after the rate");
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

	if (p->lx.tok == RULES_LEX_LPAREN) {
		rules_lex_next(&p->lx);
		n = parse_or(p);
		expect(p, RULES_LEX_RPAREN, "')'");
		return n;
	}
	if (rules_lex_is(&p->lx, "true")) {
		n = p_alloc(p, sizeof(*n));
		n->type = RULES_N_TRUE;
		rules_lex_next(&p->lx);
		return n;
	}
	if (rules_lex_is(&p->lx, "limit"))
		return parse_limit(p);
	if (p->lx.tok != RULES_LEX_WORD)
		perr_found(p, "a condition");
	size_t at = p->lx.start;
	struct rules_fref fr = field_at(p, at, p->lx.text, p->lx.textlen);

	rules_lex_next(&p->lx);
	return parse_comparison(p, fr);
}

/* parse_unary - '!' negates the whole comparison or group after it. */
static struct rules_node *
parse_unary(struct parser *p)
{
	if (p->lx.tok == RULES_LEX_NOT) {
		struct rules_node *n = p_alloc(p, sizeof(*n));

		rules_lex_next(&p->lx);
		n->type = RULES_N_NOT;
		n->a = parse_unary(p);
		return n;
	}
	return parse_primary(p);
}

/*
 * parse_chain - operand (op operand)*, left-associative, for && and ||;
 * the grammar's levels differ only in their operator and operand.
 */
static struct rules_node *
parse_chain(struct parser *p, enum rules_lex_tok op, enum rules_node_type type,
	    struct rules_node *(*operand)(struct parser *))
{
	struct rules_node *n = operand(p);

	while (p->lx.tok == op) {
		struct rules_node *m = p_alloc(p, sizeof(*m));

		rules_lex_next(&p->lx);
		m->type = type;
		m->a = n;
		m->b = operand(p);
		n = m;
	}
	return n;
}

/* parse_and - unary ('&&' unary)*; binds tighter than ||. */
static struct rules_node *
parse_and(struct parser *p)
{
	return parse_chain(p, RULES_LEX_AND, RULES_N_AND, parse_unary);
}

/* parse_or - and ('||' and)*. */
static struct rules_node *
parse_or(struct parser *p)
{
	return parse_chain(p, RULES_LEX_OR, RULES_N_OR, parse_and);
}

/* take - the current token's text, owned by the rule set; moves on. */
static const char *
take(struct parser *p)
{
	const char *s = p_strndup(p, p->lx.text, p->lx.textlen);

	rules_lex_next(&p->lx);
	return s;
}

/*
 * take_text - an action's text argument: a "string" (or also a bare word
 * if words) of at most max bytes; what names it in messages.
 */
static const char *
take_text(struct parser *p, const char *what, size_t max, bool words)
{
	if (p->lx.tok != RULES_LEX_STRING && !(words && p->lx.tok == RULES_LEX_WORD))
		perr(p, p->lx.start, "expected the %s in double quotes", what);
	if (p->lx.textlen > max)
		perr(p, p->lx.start, "%s too long", what);
	return take(p);
}

struct action_def;

/* Arguments of one action: parse them after its keyword into a. */
typedef void action_args_fn(struct parser *p, struct rules_action *a,
			    const struct action_def *def);

/* One action keyword. */
struct action_def {
	const char *name;
	enum rules_act_type type;
	bool terminal;	       /* ends evaluation; a rule has one at most */
	enum rules_stage from; /* first stage it may be used at */
	action_args_fn *args;  /* NULL: takes no arguments */
};

/* parse_reply - CODE X.Y.Z "text" for reject (class 5) or tempfail (class 4). */
static void
parse_reply(struct parser *p, struct rules_action *a, const struct action_def *def)
{
	char cls = def->type == RULES_A_REJECT ? '5' : '4';
	const char *t = p->lx.text;
	int parts = 0, digits = 0;

	if (p->lx.tok != RULES_LEX_WORD || strlen(t) != 3 || !isdigit((unsigned char)t[0]) ||
	    !isdigit((unsigned char)t[1]) || !isdigit((unsigned char)t[2]) || t[0] != cls)
		perr(p, p->lx.start, "%s needs a %cxx reply code", def->name, cls);
	a->code = atoi(t);
	rules_lex_next(&p->lx);
	t = p->lx.text;
	if (p->lx.tok == RULES_LEX_WORD && t[0] == cls && t[1] == '.') {
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
		perr(p, p->lx.start, "%s needs a %c.X.Y enhanced status code", def->name, cls);
	a->ecode = take(p);
	a->text = take_text(p, "reply text", 400, false);
}

/* parse_score - a decimal number and an optional "reason". */
static void
parse_score(struct parser *p, struct rules_action *a, const struct action_def *def)
{
	if (p->lx.tok != RULES_LEX_WORD || !parse_number(p->lx.text, &a->score) ||
	    fabs(a->score) > 1e6)
		perr(p, p->lx.start, "expected a score (a decimal number)");
	rules_lex_next(&p->lx);
	if (p->lx.tok == RULES_LEX_STRING)
		a->text = take(p);
}

/* parse_add_header - a header name and its value (quoted, or one bare word). */
static void
parse_add_header(struct parser *p, struct rules_action *a, const struct action_def *def)
{
	if (p->lx.tok != RULES_LEX_WORD || !valid_header_name(p->lx.text, p->lx.textlen))
		perr(p, p->lx.start, "expected a header name");
	a->name = take(p);
	a->text = take_text(p, "header value", 900, true);
}

/* parse_log - the "text" to log. */
static void
parse_log(struct parser *p, struct rules_action *a, const struct action_def *def)
{
	a->text = take_text(p, "log text", SIZE_MAX, false);
}

/* The actions, with what they take after their keyword. */
static const struct action_def actions[] = {
	{ "accept", RULES_A_ACCEPT, true, RULES_STAGE_CONNECT, NULL },
	/* A message to discard exists from the mail stage on. */
	{ "discard", RULES_A_DISCARD, true, RULES_STAGE_MAIL, NULL },
	{ "reject", RULES_A_REJECT, true, RULES_STAGE_CONNECT, parse_reply },
	{ "tempfail", RULES_A_TEMPFAIL, true, RULES_STAGE_CONNECT, parse_reply },
	{ "score", RULES_A_SCORE, false, RULES_STAGE_CONNECT, parse_score },
	{ "add_header", RULES_A_ADD_HEADER, false, RULES_STAGE_CONNECT, parse_add_header },
	{ "log", RULES_A_LOG, false, RULES_STAGE_CONNECT, parse_log },
};

/* parse_action - one action; returns true when it is terminal. */
static bool
parse_action(struct parser *p, struct rules_action *a)
{
	const struct action_def *def = NULL;
	size_t at = p->lx.start;

	if (p->lx.tok != RULES_LEX_WORD)
		perr_found(p, "an action");
	for (size_t i = 0; i < sizeof(actions) / sizeof(actions[0]) && def == NULL; i++)
		if (rules_lex_is(&p->lx, actions[i].name))
			def = &actions[i];
	if (def == NULL)
		perr(p, at, "unknown action '%s'", p->lx.text);
	if (p->stage < def->from)
		perr(p, at, "%s needs a message: use it from the %s stage on", def->name,
		     rules_stage_name(def->from));
	a->type = def->type;
	rules_lex_next(&p->lx);
	if (def->args != NULL)
		def->args(p, a, def);
	return def->terminal;
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
	int st;

	memset(acts, 0, sizeof(acts));
	p->fields = 0;
	p->has_limit = false;
	rules_lex_begin(&p->lx);
	if (p->lx.tok == RULES_LEX_WORD && p->lx.textlen > 1 &&
	    p->lx.text[p->lx.textlen - 1] == ':') {
		for (size_t i = 0; i + 1 < p->lx.textlen; i++)
			if (!isalnum((unsigned char)p->lx.text[i]) && !strchr("_-.", p->lx.text[i]))
				perr(p, p->lx.start + i, "bad character in rule name");
		label = p_strndup(p, p->lx.text, p->lx.textlen - 1);
		for (size_t i = 0; i < p->r->nrules; i++)
			if (strcmp(p->r->rule[i]->name, label) == 0)
				perr(p, p->lx.start, "duplicate rule name '%s'", label);
		rules_lex_next(&p->lx);
	}
	if (p->lx.tok != RULES_LEX_WORD || (st = rules_stage_from_name(p->lx.text)) < 0)
		perr_found(p, "a stage (connect, helo, mail, rcpt, data, header, eoh, body, eom)");
	p->stage = (enum rules_stage)st;
	rules_lex_next(&p->lx);
	rule = p_alloc(p, sizeof(*rule));
	rule->stage = p->stage;
	if (p->lx.tok == RULES_LEX_ARROW)
		perr(p, p->lx.start, "expected a condition before '->' (use 'true' for always)");
	rule->cond = parse_or(p);
	if (p->lx.tok != RULES_LEX_ARROW)
		perr_found(p, "'&&', '||' or '->'");
	rules_lex_next(&p->lx);
	for (;;) {
		size_t at = p->lx.start;

		if (nacts == RULES_ACTS_MAX)
			perr(p, at, "too many actions");
		if (parse_action(p, &acts[nacts++])) {
			if (terminal)
				perr(p, at, "a rule can have only one terminal action (accept, reject, tempfail, discard)");
			terminal = true;
		}
		if (p->lx.tok == RULES_LEX_EOF)
			break;
		if (p->lx.tok != RULES_LEX_SEMI)
			perr_found(p, "';' or end of rule");
		rules_lex_next(&p->lx);
		if (p->lx.tok == RULES_LEX_EOF)
			break;
	}
	rule->acts = p_alloc(p, nacts * sizeof(*rule->acts));
	memcpy(rule->acts, acts, nacts * sizeof(*rule->acts));
	rule->nacts = nacts;
	if (label != NULL) {
		rule->name = label;
	} else {
		char name[4096];
		int n = fmt_snprintf(name, sizeof(name), "%s:%u", p->file, p->lx.lno[0]);

		rule->name = p_strndup(p, name, n < 0 ? 0 : strlen(name));
	}
	add_rule(p, rule);
}

/* parse_rule - the current logical line; on error perr() jumps back here. */
static void
parse_rule(void *arg)
{
	struct parser *p = arg;

	if (setjmp(p->lx.jb) == 0)
		parse_rule_body(p);
}

/* line_error - the lexer's callback for errors outside any rule. */
static void
line_error(void *arg, unsigned line, unsigned col, const char *msg)
{
	perr_line(arg, line, col, "%s", msg);
}

/* rules_new - an empty rule set bound to env; NULL after reporting. */
static struct rules *
rules_new(const struct rules_env *env, void (*error)(void *, const char *), void *arg)
{
	struct rules *r = calloc(1, sizeof(*r));

	if (r == NULL && error)
		error(arg, "rules: out of memory");
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
 * finish - r ready for use, or NULL (r freed) after nerrors or running out
 * of memory. Indexes the stages and builds the literal prefilter (skipped
 * when RAVELIN_RULES_NO_PREFILTER is set, for tests and measurements;
 * without it, e.g. on ENOMEM, evaluation is the same, only slower).
 */
static struct rules *
finish(struct rules *r, unsigned nerrors, void (*error)(void *, const char *), void *arg)
{
	if (nerrors == 0 && index_stages(r) < 0) {
		if (error)
			error(arg, "rules: out of memory");
		nerrors++;
	}
	if (nerrors > 0) {
		rules_free(r);
		return NULL;
	}
	if (getenv("RAVELIN_RULES_NO_PREFILTER") == NULL)
		r->pf = rules_prefilter_build(r);
	return r;
}

/* parse_one - parse one file's text into r; returns its error count. */
static unsigned
parse_one(struct rules *r, const struct rules_env *env, const char *name, const char *text,
	  size_t len, void (*error)(void *, const char *), void *arg)
{
	struct parser p = { .r = r, .env = env, .file = name, .error = error, .errarg = arg };
	const char *slash = strrchr(name, '/');

	rules_lex_init(&p.lx, report_at, &p);
	p.dir = slash ? strndup(name, slash == name ? 1 : (size_t)(slash - name)) : strdup(".");
	if (p.dir == NULL || rules_lex_append(&p.lx, "", 0, 1, 1) < 0) {
		perr_line(&p, 1, 1, "out of memory");
	} else {
		rules_lex_lines(&p.lx, text, len, parse_rule, line_error);
	}
	free(p.dir);
	rules_lex_fini(&p.lx);
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
	struct rules *r = rules_new(env, error, arg);
	unsigned nerrors = 0;

	if (r == NULL)
		return NULL;
	for (size_t i = 0; i < npaths; i++) {
		size_t len = 0;
		char *text = read_file(paths[i], &len);

		if (text == NULL) {
			char msg[1024];

			fmt_snprintf(msg, sizeof(msg), "%s:1:1: cannot read: %s", paths[i], strerror(errno));
			if (error)
				error(arg, msg);
			nerrors++;
			continue;
		}
		nerrors += parse_one(r, env, paths[i], text, len, error, arg);
		free(text);
	}
	return finish(r, nerrors, error, arg);
}

/* rules_load_text - rules_load() for one in-memory file. */
struct rules *
rules_load_text(const char *name, const char *text, const struct rules_env *env,
		void (*error)(void *arg, const char *msg), void *arg)
{
	struct rules *r = rules_new(env, error, arg);

	if (r == NULL)
		return NULL;
	return finish(r, parse_one(r, env, name, text, strlen(text), error, arg), error, arg);
}
