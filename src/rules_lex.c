/*
 * rules_lex.c - tokenizer for rule files (ravelin.rules(5)).
 *
 * Joins a rule file's physical lines into logical lines (one a rule),
 * every byte keeping its FILE:LINE:COLUMN position, and cuts each into
 * tokens: words, "strings" (backslash escapes the next byte), @FILE,
 * $list, operators and punctuation; # comments run to the end of the
 * physical line. Regular expressions /.../flags are lexed only when the
 * parser asks, after =~ or !~, since '/' is an ordinary word byte
 * elsewhere. Errors go to the parser's callbacks; an error inside a rule
 * abandons its logical line (rules_lex.h).
 *
 * Public:
 *   rules_lex_init(), rules_lex_fini(), rules_lex_append(),
 *   rules_lex_lines(), rules_lex_error(), rules_lex_begin(),
 *   rules_lex_next(), rules_lex_regex(), rules_lex_raw(), rules_lex_is(),
 *   rules_lex_desc()
 */

/* System. */
#include <ctype.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Libraries. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

/* Project. */
#include "fmt.h"
#include "rules_lex.h"

/* rules_lex_init - an empty lexer reporting errors to report(arg, ...). */
void
rules_lex_init(struct rules_lex *lx,
	       void (*report)(void *arg, size_t at, const char *fmt, va_list ap), void *arg)
{
	memset(lx, 0, sizeof(*lx));
	lx->report = report;
	lx->arg = arg;
}

/* rules_lex_fini - free the lexer's buffers (not lx itself); NULL is ignored. */
void
rules_lex_fini(struct rules_lex *lx)
{
	if (lx == NULL)
		return;
	free(lx->buf);
	free(lx->lno);
	free(lx->col);
	free(lx->text);
	memset(lx, 0, sizeof(*lx));
}

/* rules_lex_append - add n bytes of physical line `line`, from column col, to the logical line. */
int
rules_lex_append(struct rules_lex *lx, const char *s, size_t n, unsigned line, unsigned col)
{
	if (lx->len + n + 2 > lx->cap) {
		size_t cap = (lx->len + n + 2) * 2;
		char *b = realloc(lx->buf, cap);
		unsigned *l = b ? realloc(lx->lno, cap * sizeof(*l)) : NULL;
		unsigned *c = l ? realloc(lx->col, cap * sizeof(*c)) : NULL;

		if (b)
			lx->buf = b;
		if (l)
			lx->lno = l;
		if (c)
			lx->col = c;
		if (c == NULL)
			return -1;
		lx->cap = cap;
	}
	for (size_t i = 0; i < n; i++) {
		lx->buf[lx->len] = s[i];
		lx->lno[lx->len] = line;
		lx->col[lx->len] = col + (unsigned)i;
		lx->len++;
	}
	/* The position after the last byte, for errors at the end of the rule. */
	lx->buf[lx->len] = '\0';
	lx->lno[lx->len] = line;
	lx->col[lx->len] = col + (unsigned)n;
	return 0;
}

/*
 * rules_lex_lines - split text into logical lines and hand each to rule().
 * A line starting with white space continues the rule before it; blank
 * and # comment lines neither continue nor end one. Errors outside any
 * rule go to bad(); both callbacks get lx->arg.
 */
void
rules_lex_lines(struct rules_lex *lx, const char *text, size_t len, void (*rule)(void *arg),
		void (*bad)(void *arg, unsigned line, unsigned col, const char *msg))
{
	unsigned line = 0;
	size_t i = 0;

	lx->len = 0;
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
			bad(lx->arg, line, (unsigned)((const char *)memchr(s, '\0', n) - s) + 1,
			    "NUL byte in rule file");
			continue;
		}
		while (k < n && (s[k] == ' ' || s[k] == '\t'))
			k++;
		if (k == n || s[k] == '#')
			continue; /* blank or comment: does not end a rule */
		if (k > 0) {
			if (lx->len == 0) {
				bad(lx->arg, line, (unsigned)k + 1,
				    "continuation line without a rule");
				continue;
			}
			if (rules_lex_append(lx, "\n", 1, lx->lno[lx->len], lx->col[lx->len]) < 0 ||
			    rules_lex_append(lx, s, n, line, 1) < 0)
				goto oom;
			continue;
		}
		if (lx->len > 0)
			rule(lx->arg);
		lx->len = 0;
		if (rules_lex_append(lx, s, n, line, 1) < 0)
			goto oom;
	}
	if (lx->len > 0)
		rule(lx->arg);
	return;
oom:
	bad(lx->arg, line, 1, "out of memory");
}


/* rules_lex_error - report an error at byte `at` of the line; abandon the line. */
void
rules_lex_error(struct rules_lex *lx, size_t at, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	lx->report(lx->arg, at, fmt, ap);
	va_end(ap);
	longjmp(lx->jb, 1);
}

/* text_put - append one byte to the current token's text. */
static void
text_put(struct rules_lex *lx, char c)
{
	if (lx->textlen + 2 > lx->textcap) {
		size_t cap = lx->textcap ? lx->textcap * 2 : 256;
		char *t = realloc(lx->text, cap);

		if (t == NULL)
			rules_lex_error(lx, lx->start, "out of memory");
		lx->text = t;
		lx->textcap = cap;
	}
	lx->text[lx->textlen++] = c;
	lx->text[lx->textlen] = '\0';
}

/* is_word_char - bytes that may appear in a bare word. */
static bool
is_word_char(const struct rules_lex *lx, size_t i)
{
	unsigned char c = (unsigned char)lx->buf[i];

	if (c <= ' ' || strchr("()\",;!=<>&|", c) != NULL)
		return false;
	/* "->" ends a word even without a space before it. */
	return !(c == '-' && i + 1 < lx->len && lx->buf[i + 1] == '>');
}

/* skip_space - skip white space and # comments (to the end of the physical line). */
static size_t
skip_space(const struct rules_lex *lx, size_t i)
{
	for (;;) {
		while (i < lx->len && isspace((unsigned char)lx->buf[i]))
			i++;
		if (i < lx->len && lx->buf[i] == '#') {
			while (i < lx->len && lx->buf[i] != '\n')
				i++;
			continue;
		}
		return i;
	}
}

/* lex_string - a "..." string at byte i; backslash escapes the next byte. */
static size_t
lex_string(struct rules_lex *lx, size_t i)
{
	size_t open = i++;

	for (;;) {
		if (i >= lx->len || lx->buf[i] == '\n')
			rules_lex_error(lx, open, "unterminated string");
		unsigned char c = (unsigned char)lx->buf[i];

		if (c == '"')
			return i + 1;
		if (c == '\\' && i + 1 < lx->len && lx->buf[i + 1] != '\n')
			c = (unsigned char)lx->buf[++i];
		if ((c < ' ' && c != '\t') || c == 0x7f)
			rules_lex_error(lx, i, "control character in string");
		text_put(lx, (char)c);
		i++;
	}
}

/* rules_lex_begin - lex the first token of the logical line. */
void
rules_lex_begin(struct rules_lex *lx)
{
	lx->end = 0;
	rules_lex_next(lx);
}

/* rules_lex_next - lex the next token after the current one. */
void
rules_lex_next(struct rules_lex *lx)
{
	static const struct {
		const char *s;
		enum rules_lex_tok t;
	} ops[] = {
		{ "->", RULES_LEX_ARROW }, { "&&", RULES_LEX_AND },    { "||", RULES_LEX_OR },
		{ "=~", RULES_LEX_MATCH }, { "!~", RULES_LEX_NOMATCH }, { "==", RULES_LEX_EQ },
		{ "!=", RULES_LEX_NE },	   { "<=", RULES_LEX_LE },     { ">=", RULES_LEX_GE },
		{ "<", RULES_LEX_LT },	   { ">", RULES_LEX_GT },      { "!", RULES_LEX_NOT },
		{ "(", RULES_LEX_LPAREN }, { ")", RULES_LEX_RPAREN },  { ",", RULES_LEX_COMMA },
		{ ";", RULES_LEX_SEMI },
	};
	size_t i = skip_space(lx, lx->end);

	lx->start = i;
	lx->textlen = 0;
	text_put(lx, '\0');
	lx->textlen = 0;
	if (i >= lx->len) {
		lx->tok = RULES_LEX_EOF;
		lx->end = i;
		return;
	}
	for (size_t k = 0; k < sizeof(ops) / sizeof(ops[0]); k++) {
		size_t n = strlen(ops[k].s);

		if (i + n <= lx->len && memcmp(lx->buf + i, ops[k].s, n) == 0) {
			lx->tok = ops[k].t;
			lx->end = i + n;
			return;
		}
	}
	if (lx->buf[i] == '"') {
		lx->tok = RULES_LEX_STRING;
		lx->end = lex_string(lx, i);
		return;
	}
	lx->tok = RULES_LEX_WORD;
	if (lx->buf[i] == '@' || lx->buf[i] == '$') {
		lx->tok = lx->buf[i] == '@' ? RULES_LEX_FILE : RULES_LEX_VAR;
		if (lx->buf[i] == '@' && i + 1 < lx->len && lx->buf[i + 1] == '"') {
			lx->end = lex_string(lx, i + 1);
			return;
		}
		i++;
	}
	lx->end = i;
	while (lx->end < lx->len && is_word_char(lx, lx->end))
		text_put(lx, lx->buf[lx->end++]);
	if (lx->end == i) {
		if (lx->tok == RULES_LEX_WORD)
			rules_lex_error(lx, i, "unexpected character '%c'", lx->buf[i]);
		rules_lex_error(lx, lx->start, "expected a name after '%c'", lx->buf[lx->start]);
	}
}

/* rules_lex_regex - after =~ or !~: a /pattern/flags token into text and regex_flags. */
void
rules_lex_regex(struct rules_lex *lx)
{
	size_t i = skip_space(lx, lx->end);

	lx->start = i;
	lx->textlen = 0;
	lx->regex_flags = 0;
	if (i >= lx->len || lx->buf[i] != '/')
		rules_lex_error(lx, i, "expected a regular expression /.../ after '%s'",
				lx->tok == RULES_LEX_MATCH ? "=~" : "!~");
	for (i++;; i++) {
		if (i >= lx->len || lx->buf[i] == '\n')
			rules_lex_error(lx, lx->start, "unterminated regular expression");
		if (lx->buf[i] == '/')
			break;
		if (lx->buf[i] == '\\' && i + 1 < lx->len && lx->buf[i + 1] != '\n')
			text_put(lx, lx->buf[i++]);
		text_put(lx, lx->buf[i]);
	}
	text_put(lx, '\0');
	lx->textlen--;
	for (i++; i < lx->len && isalnum((unsigned char)lx->buf[i]); i++) {
		switch (lx->buf[i]) {
		case 'i': lx->regex_flags |= PCRE2_CASELESS; break;
		case 'm': lx->regex_flags |= PCRE2_MULTILINE; break;
		case 's': lx->regex_flags |= PCRE2_DOTALL; break;
		case 'x': lx->regex_flags |= PCRE2_EXTENDED; break;
		default:
			rules_lex_error(lx, i, "unknown regular expression flag '%c'", lx->buf[i]);
		}
	}
	lx->tok = RULES_LEX_REGEX;
	lx->end = i;
}

/* rules_lex_raw - make the token's text its bytes as written ("@example.org" as a word). */
void
rules_lex_raw(struct rules_lex *lx)
{
	lx->textlen = 0;
	for (size_t k = lx->start; k < lx->end; k++)
		text_put(lx, lx->buf[k]);
}

/* rules_lex_is - is the current token the word w? */
bool
rules_lex_is(const struct rules_lex *lx, const char *w)
{
	return lx->tok == RULES_LEX_WORD && strcmp(lx->text, w) == 0;
}

/* rules_lex_desc - short description of the current token for messages. */
const char *
rules_lex_desc(const struct rules_lex *lx, char *buf, size_t len)
{
	if (lx->tok == RULES_LEX_EOF)
		return "end of rule";
	fmt_snprintf(buf, len, "'%.*s'", (int)(lx->end - lx->start > 40 ? 40 : lx->end - lx->start),
		 lx->buf + lx->start);
	return buf;
}
