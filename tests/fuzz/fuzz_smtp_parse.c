/*
 * fuzz_smtp_parse.c - libFuzzer target for the SMTP command parser.
 *
 * Splits the input into command lines with smtp_line_find() exactly as the
 * session does, parses each with smtp_cmd_parse(), and each argument as a
 * MAIL and as a RCPT path with smtp_path_parse(). Beyond "no crash", it
 * checks what the session relies on: line bounds (never past
 * SMTP_LINE_MAX, the terminator really there), parsed paths that fit
 * their buffers, a domain that smtp_domain_valid() accepts, well-formed
 * parameters, and that a parsed address parses again to itself.
 *
 *   make -f tests/fuzz/Makefile build-fuzz/fuzz_smtp_parse
 *   build-fuzz/fuzz_smtp_parse tests/fuzz/corpus/smtp_parse
 */

/* System. */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Project. */
#include "smtp_parse.h"

/* check - abort with a message so libFuzzer records the input. */
#define check(cond)                                                                  \
	do {                                                                         \
		if (!(cond)) {                                                       \
			fprintf(stderr, "fuzz_smtp_parse: %s failed at line %d\n", \
				#cond, __LINE__);                                    \
			abort();                                                     \
		}                                                                    \
	} while (0)

/* check_path - invariants of one successfully parsed path. */
static void
check_path(const struct smtp_path *p, bool is_mail)
{
	size_t alen = strlen(p->addr);

	check(alen <= SMTP_PATH_MAX);
	check(strlen(p->local) < sizeof(p->local));
	check(strlen(p->domain) <= SMTP_DOMAIN_MAX);
	check(p->nparams <= SMTP_PARAMS_MAX);
	for (size_t i = 0; i < p->nparams; i++) {
		const char *k = p->params[i].key;

		check(k != NULL && isalnum((unsigned char)k[0]));
		for (; *k; k++)
			check(isalnum((unsigned char)*k) || *k == '-');
		if (p->params[i].value) {
			check(p->params[i].value[0] != '\0');
			check(strchr(p->params[i].value, ' ') == NULL);
			check(strchr(p->params[i].value, '=') == NULL);
		}
		check(smtp_param_get(p, p->params[i].key) != NULL);
		if (p->params[i].value)
			(void)smtp_xtext_valid(p->params[i].value);
	}
	if (p->null_path) {
		check(is_mail && alen == 0);
		return;
	}
	if (p->postmaster) {
		check(!is_mail && strcmp(p->addr, "postmaster") == 0);
		return;
	}
	check(alen > 0);
	if (!p->literal)
		check(smtp_domain_valid(p->domain, strlen(p->domain), true));
	else
		check(p->domain[0] == '[' && p->domain[strlen(p->domain) - 1] == ']');
	/* addr is local@domain. */
	size_t llen = strlen(p->local);
	check(strncmp(p->addr, p->local, llen) == 0 && p->addr[llen] == '@');
	check(strcmp(p->addr + llen + 1, p->domain) == 0);

	/* What we forward must parse again to the same address. */
	static struct smtp_path again;
	char line[SMTP_PATH_MAX + 16];
	snprintf(line, sizeof(line), "%s<%s>", is_mail ? "FROM:" : "TO:", p->addr);
	check(smtp_path_parse(line, is_mail, &again) == SMTP_PATH_OK);
	check(strcmp(again.addr, p->addr) == 0);
	check(again.quoted == p->quoted && again.literal == p->literal);
	check(again.utf8 == p->utf8);
}

/* one_line - parse one command line as the session would. */
static void
one_line(const char *line, size_t len)
{
	static struct smtp_path path;
	struct smtp_cmd cmd;
	char copy[SMTP_LINE_MAX + 1];

	check(len < sizeof(copy));
	memcpy(copy, line, len);
	copy[len] = '\0';
	if (smtp_cmd_parse(copy, len, &cmd) < 0) {
		/* Refused lines hold a NUL or a control byte. */
		int bad = 0;
		for (size_t i = 0; i < len; i++) {
			unsigned char c = copy[i];
			if (c < 0x20 ? c != '\t' : c == 0x7f)
				bad = 1;
		}
		check(bad);
		return;
	}
	check(cmd.verb >= SMTP_UNKNOWN && cmd.verb < SMTP_NVERBS);
	check(cmd.verb_text == copy && cmd.verb_len <= len);
	check(cmd.arg >= copy && cmd.arg <= copy + len);
	check(memchr(copy, ' ', cmd.verb_len) == NULL);

	/* Every argument as a MAIL and as a RCPT path. */
	if (smtp_path_parse(cmd.arg, true, &path) == SMTP_PATH_OK)
		check_path(&path, true);
	if (smtp_path_parse(cmd.arg, false, &path) == SMTP_PATH_OK)
		check_path(&path, false);
	(void)smtp_domain_valid(cmd.arg, strlen(cmd.arg), true);
	(void)smtp_domain_valid(cmd.arg, strlen(cmd.arg), false);
	(void)smtp_xtext_valid(cmd.arg);
}

/* LLVMFuzzerTestOneInput - split the input into lines, parse each. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	size_t off = 0;

	while (off < size) {
		size_t linelen = 0, termlen = 0, left = size - off;
		enum smtp_line_status st = smtp_line_find(buf + off, left, &linelen, &termlen);
		const char *lf = memchr(buf + off, '\n', left < SMTP_LINE_MAX ? left : SMTP_LINE_MAX);

		if (st == SMTP_LINE_MORE) {
			check(left < SMTP_LINE_MAX && lf == NULL);
			/* The session parses nothing until the line is complete. */
			break;
		}
		if (st == SMTP_LINE_TOO_LONG) {
			check(left >= SMTP_LINE_MAX && lf == NULL);
			/* The session skips to the next LF, as we do. */
			lf = memchr(buf + off, '\n', left);
			if (!lf)
				break;
			off = lf + 1 - buf;
			continue;
		}
		check(st == SMTP_LINE_OK);
		check(lf != NULL && lf == buf + off + linelen + termlen - 1);
		check(termlen == 1 || (termlen == 2 && buf[off + linelen] == '\r'));
		check(linelen + termlen <= SMTP_LINE_MAX);
		one_line(buf + off, linelen);
		off += linelen + termlen;
	}
	return 0;
}
