/*
 * rules_lex.h - tokenizer for rule files, shared by rules_lex.c and
 * rules_parse.c only. Not for other modules: use rules.h.
 *
 * rules_lex_lines() joins a file's physical lines into logical lines (each
 * byte keeps its physical line and column, for FILE:LINE:COLUMN messages)
 * and calls the parser once per logical line; the parser sets jb and
 * pulls the line's tokens with rules_lex_begin() and rules_lex_next(). An
 * error inside a rule goes to the report callback and abandons the line
 * with a longjmp to jb (rules_lex_error()); one outside any rule goes to
 * rules_lex_lines()' bad callback.
 */
#ifndef RAVELIN_RULES_LEX_H
#define RAVELIN_RULES_LEX_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Tokens. */
enum rules_lex_tok {
	RULES_LEX_EOF,
	RULES_LEX_WORD,
	RULES_LEX_STRING,
	RULES_LEX_FILE,	 /* @path or @"path" */
	RULES_LEX_VAR,	 /* $name */
	RULES_LEX_REGEX, /* only from rules_lex_regex() */
	RULES_LEX_LPAREN,
	RULES_LEX_RPAREN,
	RULES_LEX_COMMA,
	RULES_LEX_SEMI,
	RULES_LEX_ARROW,
	RULES_LEX_AND,
	RULES_LEX_OR,
	RULES_LEX_NOT,
	RULES_LEX_MATCH,
	RULES_LEX_NOMATCH,
	RULES_LEX_EQ,
	RULES_LEX_NE,
	RULES_LEX_LT,
	RULES_LEX_LE,
	RULES_LEX_GT,
	RULES_LEX_GE
};

/* Lexer state: one logical line and its current token. */
struct rules_lex {
	/* The logical line, with each byte's physical line and column. */
	char *buf;
	unsigned *lno, *col;
	size_t len, cap;

	/* The current token: buf[start, end); its text (strings unescaped). */
	enum rules_lex_tok tok;
	size_t start, end;
	char *text;
	size_t textlen, textcap;
	uint32_t regex_flags; /* PCRE2 options of a RULES_LEX_REGEX token */

	/* Errors: report() gets byte `at` of the line; then longjmp(jb, 1). */
	void (*report)(void *arg, size_t at, const char *fmt, va_list ap);
	void *arg;
	jmp_buf jb;
};

void rules_lex_init(struct rules_lex *lx,
		    void (*report)(void *arg, size_t at, const char *fmt, va_list ap), void *arg);
void rules_lex_fini(struct rules_lex *lx);
int rules_lex_append(struct rules_lex *lx, const char *s, size_t n, unsigned line, unsigned col);
void rules_lex_lines(struct rules_lex *lx, const char *text, size_t len, void (*rule)(void *arg),
		     void (*bad)(void *arg, unsigned line, unsigned col, const char *msg));
void rules_lex_error(struct rules_lex *lx, size_t at, const char *fmt, ...)
	__attribute__((format(printf, 3, 4), noreturn));
void rules_lex_begin(struct rules_lex *lx);
void rules_lex_next(struct rules_lex *lx);
void rules_lex_regex(struct rules_lex *lx);
void rules_lex_raw(struct rules_lex *lx);
bool rules_lex_is(const struct rules_lex *lx, const char *word);
const char *rules_lex_desc(const struct rules_lex *lx, char *buf, size_t len);

#endif
