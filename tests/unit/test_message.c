/*
 * test_message.c - unit tests for message.c, the DATA parser: where the
 * message ends (only <CRLF>.<CRLF>, also at the very start of DATA),
 * dot-unstuffing and the re-stuffed stored body, bare CR/LF (reject and
 * normalize), NUL, line and size limits, the header section (folding,
 * lines without a colon, limits), spilling to a file, the stream
 * callbacks, and header helpers. Every table row is fed whole, byte by
 * byte, and split in two at every position.
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
#include <event2/buffer.h>

/* Project. */
#include "message.h"

#define NROWS(t) (sizeof(t) / sizeof((t)[0]))

/* A literal and its length (NULs included); "ends with the input". */
#define L(s) s, sizeof(s) - 1
#define END SIZE_MAX

/* Row modes. */
#define NORM     0x01	/* bare_newline normalize */
#define LONGPASS 0x02	/* long_lines pass */

/* What the stream callbacks saw: events in order and their content. */
struct rec {
	char events[64];	/* 'H' header, 'E' end of headers, 'B' body (runs merged) */
	size_t nevents;
	char headers[4096];	/* fields joined with '|' */
	char body[65536];
	size_t body_len;
};

/* rec_event - note one event; consecutive body calls count once. */
static void
rec_event(struct rec *r, char ev)
{
	if (ev == 'B' && r->nevents && r->events[r->nevents - 1] == 'B')
		return;
	if (r->nevents + 1 < sizeof(r->events))
		r->events[r->nevents++] = ev;
}

/* on_header - ops.header. */
static void
on_header(void *arg, const char *field, size_t len)
{
	struct rec *r = arg;
	size_t n = strlen(r->headers);

	rec_event(r, 'H');
	snprintf(r->headers + n, sizeof(r->headers) - n, "%s%.*s", n ? "|" : "", (int)len, field);
}

/* on_eoh - ops.eoh. */
static void
on_eoh(void *arg)
{
	rec_event(arg, 'E');
}

/* on_body - ops.body. */
static void
on_body(void *arg, const char *buf, size_t len)
{
	struct rec *r = arg;

	rec_event(r, 'B');
	assert_true(r->body_len + len <= sizeof(r->body));
	memcpy(r->body + r->body_len, buf, len);
	r->body_len += len;
}

static const struct msg_stream_ops rec_ops = { on_header, on_eoh, on_body };

/* limits - the defaults of a row, with its mode. */
static struct msg_limits
limits(unsigned mode)
{
	struct msg_limits lim = {
		.max_size = 1 << 20,
		.max_header_fields = 1000,
		.max_header_bytes = 1 << 16,
		.spool_memory = 1 << 20,
		.normalize_newlines = (mode & NORM) != 0,
		.long_lines_pass = (mode & LONGPASS) != 0,
	};
	return lim;
}

/* wire_body - the stored body, read back in pieces of `step` octets. */
static char *
wire_body(const struct message *m, size_t step, size_t *len)
{
	struct evbuffer *out = evbuffer_new();
	off_t pos = 0;
	ssize_t n;

	while ((n = msg_body_read(m, pos, out, step)) > 0)
		pos += n;
	assert_int_equal(n, 0);
	assert_int_equal(pos, msg_body_length(m));
	*len = evbuffer_get_length(out);
	char *s = malloc(*len + 1);
	evbuffer_remove(out, s, *len);
	s[*len] = '\0';
	evbuffer_free(out);
	return s;
}

/* One parse of a row, fed in pieces. */
struct outcome {
	struct msg_parser *p;
	struct rec rec;
	size_t end;		/* octets consumed up to the terminator; 0: none */
};

/* feed_split - feed in, cut at the given positions (ascending, < len). */
static void
feed_split(struct outcome *o, const struct msg_limits *lim, const char *in, size_t len,
	   const size_t *cuts, size_t ncuts)
{
	size_t off = 0;

	memset(o, 0, sizeof(*o));
	o->p = msg_parser_new(lim, &rec_ops, &o->rec);
	assert_non_null(o->p);
	for (size_t k = 0; k <= ncuts && off < len; k++) {
		size_t stop = k < ncuts ? cuts[k] : len, used = 0;

		if (stop <= off)
			continue;
		enum msg_status st = msg_parser_feed(o->p, in + off, stop - off, &used);
		assert_true(used <= stop - off);
		off += used;
		if (st == MSG_FEED_END) {
			o->end = off;
			return;
		}
		/* Without the terminator every octet is taken. */
		assert_int_equal(off, stop);
	}
}

/* A DATA parser case: input and everything expected of it. */
struct msg_case {
	const char *name;
	const char *in;
	size_t len;
	unsigned mode;
	size_t end;		/* where the message ends; 0: never; END: at the end */
	enum msg_problem problem;
	const char *headers;	/* fields joined with '|'; NULL: not checked */
	int sep;		/* header section ended with an empty line; -1: not checked */
	const char *body;	/* unstuffed, as the stream saw it; NULL: not checked */
	const char *wire;	/* stored, dot-stuffed; NULL: the body stuffed */
};

/* stuff - the dot-stuffed form of an unstuffed CRLF text. */
static char *
stuff(const char *s)
{
	char *out = malloc(2 * strlen(s) + 1), *o = out;
	bool bol = true;

	for (; *s; s++) {
		if (bol && *s == '.')
			*o++ = '.';
		*o++ = *s;
		bol = *s == '\n';
	}
	*o = '\0';
	return out;
}

/* check_outcome - one outcome against its row; how tells the feeding. */
static void
check_outcome(const struct msg_case *c, size_t row, struct outcome *o, const char *how)
{
	const struct message *m = msg_parser_message(o->p);

	size_t end = c->end == END ? c->len : c->end;

	if (o->end != end)
		fail_msg("row %zu (%s, %s): ended at %zu, want %zu", row, c->name, how, o->end, end);
	if (!end)
		return;
	if (m->problem != c->problem)
		fail_msg("row %zu (%s, %s): problem %d, want %d", row, c->name, how, m->problem,
			 c->problem);
	if (c->problem != MSG_OK)
		return;
	if (c->headers && strcmp(o->rec.headers, c->headers) != 0)
		fail_msg("row %zu (%s, %s): headers \"%s\", want \"%s\"", row, c->name, how,
			 o->rec.headers, c->headers);
	if (c->sep >= 0 && m->separator != (bool)c->sep)
		fail_msg("row %zu (%s, %s): separator %d, want %d", row, c->name, how, m->separator,
			 c->sep);
	if (c->body && (o->rec.body_len != strlen(c->body) ||
			memcmp(o->rec.body, c->body, o->rec.body_len) != 0))
		fail_msg("row %zu (%s, %s): body \"%.*s\", want \"%s\"", row, c->name, how,
			 (int)o->rec.body_len, o->rec.body, c->body);
	/* The stored form: given, or the expected body stuffed. */
	size_t wl;
	char *w = wire_body(m, 7, &wl);
	char *want = c->wire ? strdup(c->wire) : c->body ? stuff(c->body) : NULL;
	if (want && (wl != strlen(want) || memcmp(w, want, wl) != 0))
		fail_msg("row %zu (%s, %s): wire \"%s\", want \"%s\"", row, c->name, how, w, want);
	if (strstr(w, "\r\n.\r\n") || strncmp(w, ".\r\n", 3) == 0)
		fail_msg("row %zu (%s, %s): the stored body holds a terminator", row, c->name, how);
	/* Stream order: fields, end of headers, body. */
	const char *ev = o->rec.events;
	while (*ev == 'H')
		ev++;
	if (*ev != 'E' || (ev[1] && (ev[1] != 'B' || ev[2])))
		fail_msg("row %zu (%s, %s): callbacks in order \"%s\"", row, c->name, how,
			 o->rec.events);
	free(w);
	free(want);
}

/* run_rows - each row whole, byte by byte, and cut in two everywhere. */
static void
run_rows(const struct msg_case *rows, size_t n, const struct msg_limits *base)
{
	for (size_t i = 0; i < n; i++) {
		const struct msg_case *c = &rows[i];
		size_t len = c->len;
		struct msg_limits lim = base ? *base : limits(c->mode);
		struct outcome o;
		char how[64];

		lim.normalize_newlines = (c->mode & NORM) != 0;
		lim.long_lines_pass = (c->mode & LONGPASS) != 0;
		feed_split(&o, &lim, c->in, len, NULL, 0);
		check_outcome(c, i, &o, "whole");
		msg_parser_free(o.p);

		size_t *cuts = malloc((len + 1) * sizeof(*cuts));
		for (size_t k = 0; k < len; k++)
			cuts[k] = k + 1;
		feed_split(&o, &lim, c->in, len, cuts, len ? len - 1 : 0);
		check_outcome(c, i, &o, "byte by byte");
		msg_parser_free(o.p);

		for (size_t k = 1; k < len; k++) {
			snprintf(how, sizeof(how), "cut at %zu", k);
			feed_split(&o, &lim, c->in, len, &k, 1);
			check_outcome(c, i, &o, how);
			msg_parser_free(o.p);
		}
		free(cuts);
	}
}

#define H "Subject: s\r\n\r\n"	/* a header section, 14 octets */

/* Where a message ends: only CRLF.CRLF, the DATA line's CRLF counting. */
static const struct msg_case end_cases[] = {
	{ "empty message", L(".\r\n"), 0, 3, MSG_OK, "", 0, "", "" },
	{ "empty, then more", L(".\r\nMAIL FROM:<a@b>\r\n"), 0, 3, MSG_OK, "", 0, "", "" },
	{ "one body line", L(H "a\r\n.\r\n"), 0, END, MSG_OK, "Subject: s", 1, "a\r\n", NULL },
	{ "empty first line", L("\r\n.\r\n"), 0, END, MSG_OK, "", 1, "", "" },
	{ "dot LF at start", L(".\n"), 0, 0, MSG_OK, NULL, -1, NULL, NULL },
	{ "dot CR at start", L(".\r"), 0, 0, MSG_OK, NULL, -1, NULL, NULL },
	{ "LF dot LF", L(H "a\n.\n"), 0, 0, MSG_OK, NULL, -1, NULL, NULL },
	{ "LF dot CRLF", L(H "a\n.\r\n"), 0, 0, MSG_OK, NULL, -1, NULL, NULL },
	{ "LF dot CRLF, normalize", L(H "a\n.\r\n"), NORM, 0, MSG_OK, NULL, -1, NULL, NULL },
	{ "CRLF dot LF", L(H "a\r\n.\n"), 0, 0, MSG_OK, NULL, -1, NULL, NULL },
	{ "CRLF dot LF, normalize", L(H "a\r\n.\n"), NORM, 0, MSG_OK, NULL, -1, NULL, NULL },
	{ "CR dot CRLF", L(H "a\r.\r\n"), 0, 0, MSG_OK, NULL, -1, NULL, NULL },
	{ "CR dot CRLF, normalize", L(H "a\r.\r\n"), NORM, 0, MSG_OK, NULL, -1, NULL, NULL },
	{ "CRLF dot CR", L(H "a\r\n.\r"), 0, 0, MSG_OK, NULL, -1, NULL, NULL },
	{ "two dots", L(H "a\r\n..\r\n"), 0, 0, MSG_OK, NULL, -1, NULL, NULL },
	{ "dot space", L(H "a\r\n. \r\n"), 0, 0, MSG_OK, NULL, -1, NULL, NULL },
	{ "smuggling: LF dot LF then real end", L(H "a\n.\nMAIL FROM:<x@y>\r\n.\r\n"), 0, END,
	  MSG_BARE_NEWLINE, NULL, -1, NULL, NULL },
	{ "smuggling normalized stays content", L(H "a\n.\nMAIL FROM:<x@y>\r\n.\r\n"), NORM, END,
	  MSG_OK, "Subject: s", 1, "a\r\n.\r\nMAIL FROM:<x@y>\r\n", "a\r\n..\r\nMAIL FROM:<x@y>\r\n" },
	{ "CR CRLF dot CRLF", L(H "a\r\r\n.\r\n"), 0, END, MSG_BARE_NEWLINE, NULL, -1, NULL, NULL },
	{ "CR CRLF dot CRLF, normalize", L(H "a\r\r\n.\r\n"), NORM, END, MSG_OK, "Subject: s", 1,
	  "a\r\n\r\n", NULL },
	{ "dot CR CRLF dot CRLF", L(H ".\r\r\n.\r\n"), NORM, END, MSG_OK, "Subject: s", 1, "\r\n\r\n",
	  NULL },
	{ "terminator then more bytes", L(H "a\r\n.\r\nQUIT\r\n"), 0, 20, MSG_OK, "Subject: s", 1, "a\r\n",
	  NULL },
};

/* end_table - the terminator is found exactly, however the input is cut. */
static void
end_table(void **state)
{
	run_rows(end_cases, NROWS(end_cases), NULL);
}

/* Dot-unstuffing and the stored, re-stuffed body. */
static const struct msg_case dot_cases[] = {
	{ "stuffed dot", L(H "..x\r\n.\r\n"), 0, END, MSG_OK, NULL, 1, ".x\r\n", "..x\r\n" },
	{ "three dots", L(H "...\r\n.\r\n"), 0, END, MSG_OK, NULL, 1, "..\r\n", "...\r\n" },
	{ "lone stuffed dot", L(H "..\r\n.\r\n"), 0, END, MSG_OK, NULL, 1, ".\r\n", "..\r\n" },
	{ "unneeded stuffing removed", L(H ".x\r\n.\r\n"), 0, END, MSG_OK, NULL, 1, "x\r\n", "x\r\n" },
	{ "dot inside a line", L(H "a.\r\nb..c\r\n.\r\n"), 0, END, MSG_OK, NULL, 1, "a.\r\nb..c\r\n",
	  NULL },
	{ "stuffed header line", L("..X: y\r\n\r\nb\r\n.\r\n"), 0, END, MSG_OK, ".X: y", 1, "b\r\n",
	  NULL },
	{ "dot line ends headers", L("A: b\r\n..\r\nc\r\n.\r\n"), 0, END, MSG_OK, "A: b", 0,
	  ".\r\nc\r\n", "..\r\nc\r\n" },
};

/* dot_table - unstuffing, restuffing. */
static void
dot_table(void **state)
{
	run_rows(dot_cases, NROWS(dot_cases), NULL);
}

/* Bare CR and LF: refused, or made CRLF with the new line taken literally. */
static const struct msg_case bare_cases[] = {
	{ "bare LF refused", L(H "a\nb\r\n.\r\n"), 0, END, MSG_BARE_NEWLINE, NULL, -1, NULL, NULL },
	{ "bare CR refused", L(H "a\rb\r\n.\r\n"), 0, END, MSG_BARE_NEWLINE, NULL, -1, NULL, NULL },
	{ "bare LF in headers refused", L("A: b\nC: d\r\n\r\n.\r\n"), 0, END, MSG_BARE_NEWLINE, NULL, -1,
	  NULL, NULL },
	{ "trailing bare CR refused", L(H "a\r\r\n.\r\n"), 0, END, MSG_BARE_NEWLINE, NULL, -1, NULL,
	  NULL },
	{ "bare LF normalized", L(H "a\nb\r\n.\r\n"), NORM, END, MSG_OK, NULL, 1, "a\r\nb\r\n", NULL },
	{ "bare CR normalized", L(H "a\rb\r\n.\r\n"), NORM, END, MSG_OK, NULL, 1, "a\r\nb\r\n", NULL },
	{ "LF LF normalized", L(H "a\n\nb\r\n.\r\n"), NORM, END, MSG_OK, NULL, 1, "a\r\n\r\nb\r\n",
	  NULL },
	{ "bare LF in headers normalized", L("A: b\nC: d\r\n\r\nx\r\n.\r\n"), NORM, END, MSG_OK,
	  "A: b|C: d", 1, "x\r\n", NULL },
	{ "bare LF as the separator", L("A: b\n\nx\r\n.\r\n"), NORM, END, MSG_OK, "A: b", 1, "x\r\n",
	  NULL },
	/* A dot line after a bare newline is content: stuffed on the wire. */
	{ "dot after LF is literal", L(H "a\n.\r\nb\r\n.\r\n"), NORM, END, MSG_OK, NULL, 1,
	  "a\r\n.\r\nb\r\n", "a\r\n..\r\nb\r\n" },
	{ "dot after CR is literal", L(H "a\r.\rb\r\n.\r\n"), NORM, END, MSG_OK, NULL, 1,
	  "a\r\n.\r\nb\r\n", "a\r\n..\r\nb\r\n" },
	{ "two dots after LF kept", L(H "a\n..\r\n.\r\n"), NORM, END, MSG_OK, NULL, 1, "a\r\n..\r\n",
	  "a\r\n...\r\n" },
	{ "dot LF after CRLF: dot unstuffed", L(H "a\r\n.\nb\r\n.\r\n"), NORM, END, MSG_OK, NULL, 1,
	  "a\r\n\r\nb\r\n", NULL },
	{ "dot CR x after CRLF", L(H "a\r\n.\rb\r\n.\r\n"), NORM, END, MSG_OK, NULL, 1,
	  "a\r\n\r\nb\r\n", NULL },
	{ "dot LF at start", L(".\n.\r\nx\r\n.\r\n"), NORM, END, MSG_OK, "", 1, ".\r\nx\r\n",
	  "..\r\nx\r\n" },
};

/* BDAT content (chunked mode): counted, so dots are data and nothing ends
 * it but msg_parser_finish(); the stored form is stuffed for DATA. */
static const struct msg_case chunked_cases[] = {
	{ "plain", L(H "a\r\n"), 0, END, MSG_OK, "Subject: s", 1, "a\r\n", NULL },
	{ "dots are data", L(H ".\r\n..\r\n.x\r\n"), 0, END, MSG_OK, "Subject: s", 1,
	  ".\r\n..\r\n.x\r\n", "..\r\n...\r\n..x\r\n" },
	{ "DATA terminator is data", L(H "a\r\n.\r\nQUIT\r\n"), 0, END, MSG_OK, "Subject: s", 1,
	  "a\r\n.\r\nQUIT\r\n", "a\r\n..\r\nQUIT\r\n" },
	{ "no final CRLF gets one", L(H "last"), 0, END, MSG_OK, "Subject: s", 1, "last\r\n", NULL },
	{ "empty", L(""), 0, END, MSG_OK, "", 0, "", "" },
	{ "headers only, no CRLF", L("A: b"), 0, END, MSG_OK, "A: b", 0, "", "" },
	{ "final bare CR refused", L(H "a\r"), 0, END, MSG_BARE_NEWLINE, NULL, -1, NULL, NULL },
	{ "final bare CR normalized", L(H "a\r"), NORM, END, MSG_OK, "Subject: s", 1, "a\r\n",
	  NULL },
	{ "bare LF refused", L(H "a\nb\r\n"), 0, END, MSG_BARE_NEWLINE, NULL, -1, NULL, NULL },
	{ "NUL refused", L(H "a\0b\r\n"), 0, END, MSG_NUL, NULL, -1, NULL, NULL },
};

/* feed_chunked - as the session feeds BDAT chunks: every octet taken. */
static void
feed_chunked(struct outcome *o, const struct msg_limits *lim, const char *in, size_t len, size_t cut)
{
	size_t used;

	memset(o, 0, sizeof(*o));
	o->p = msg_parser_new(lim, &rec_ops, &o->rec);
	assert_non_null(o->p);
	msg_parser_chunked(o->p);
	for (size_t off = 0; off < len; off += used) {
		size_t n = cut && off < cut ? cut - off : len - off;
		assert_int_equal(msg_parser_feed(o->p, in + off, n, &used), MSG_FEED_MORE);
		assert_int_equal(used, n);
	}
	msg_parser_finish(o->p);
	o->end = len;
}

/* chunked_table - BDAT mode, whole and cut in two everywhere. */
static void
chunked_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < NROWS(chunked_cases); i++) {
		const struct msg_case *c = &chunked_cases[i];
		struct msg_limits lim = limits(c->mode);
		struct outcome o;
		char how[64];

		for (size_t k = 0; k < c->len || k == 0; k++) {
			snprintf(how, sizeof(how), k ? "cut at %zu" : "whole", k);
			feed_chunked(&o, &lim, c->in, c->len, k);
			check_outcome(c, i, &o, how);
			msg_parser_free(o.p);
		}
	}
}

/* bare_newline_table - reject and normalize. */
static void
bare_newline_table(void **state)
{
	run_rows(bare_cases, NROWS(bare_cases), NULL);
}

/* NUL in the content refuses the message, which is still read to its end. */
static const struct msg_case nul_cases[] = {
	{ "NUL in body", L(H "a\0b\r\n.\r\n"), 0, END, MSG_NUL, NULL, -1, NULL, NULL },
	{ "NUL in body, normalize", L(H "a\0b\r\n.\r\n"), NORM, END, MSG_NUL, NULL, -1, NULL, NULL },
	{ "NUL in header", L("A: \0\r\n\r\n.\r\n"), 0, END, MSG_NUL, NULL, -1, NULL, NULL },
	{ "NUL after dot", L(H ".\0\r\n.\r\n"), 0, END, MSG_NUL, NULL, -1, NULL, NULL },
};

/* nul_table - NUL octets. */
static void
nul_table(void **state)
{
	run_rows(nul_cases, NROWS(nul_cases), NULL);
}

/* Line lengths: 998 octets as received (before unstuffing) pass. */
struct len_case {
	const char *prefix;	/* before the long line */
	const char *lead;	/* the long line starts with this */
	size_t n;		/* octets of the line as received */
	unsigned mode;
	enum msg_problem problem;
};

static const struct len_case len_cases[] = {
	{ H, "", 998, 0, MSG_OK },
	{ H, "", 999, 0, MSG_LONG_LINE },
	{ H, "", 999, LONGPASS, MSG_OK },
	{ H, "", 5000, LONGPASS, MSG_OK },
	{ H, "..", 998, 0, MSG_OK },		/* the stuffing dot counts */
	{ H, "..", 999, 0, MSG_LONG_LINE },
	{ "", "X: ", 998, 0, MSG_OK },		/* header lines too */
	{ "", "X: ", 999, 0, MSG_LONG_LINE },
	{ H "short\r\n", "", 999, 0, MSG_LONG_LINE },	/* counted per line */
};

/* line_length_limit - 998 vs 999 octets, fed whole and byte by byte. */
static void
line_length_limit(void **state)
{
	char in[6000];

	for (size_t i = 0; i < NROWS(len_cases); i++) {
		const struct len_case *c = &len_cases[i];
		size_t pl = strlen(c->prefix), ll = strlen(c->lead);

		memcpy(in, c->prefix, pl);
		memcpy(in + pl, c->lead, ll);
		memset(in + pl + ll, 'x', c->n - ll);
		memcpy(in + pl + c->n, "\r\n.\r\n", 6);
		struct msg_case mc = { "long line", in, pl + c->n + 5, c->mode, pl + c->n + 5, c->problem,
				       NULL, -1, NULL, NULL };
		struct msg_limits lim = limits(c->mode);
		struct outcome o;
		size_t cuts[6000];

		for (size_t k = 0; k + 1 < mc.len; k++)
			cuts[k] = k + 1;
		for (int split = 0; split < 2; split++) {
			feed_split(&o, &lim, mc.in, mc.len, cuts, split ? mc.len - 1 : 0);
			check_outcome(&mc, i, &o, split ? "byte by byte" : "whole");
			if (c->problem == MSG_OK) {
				size_t wl;
				char *w = wire_body(msg_parser_message(o.p), 4096, &wl);
				assert_int_equal(wl, o.rec.body_len + (c->lead[0] == '.' ? 1 : 0));
				free(w);
			}
			msg_parser_free(o.p);
		}
	}
}

/* Size: unstuffed content with its CRLFs, against max_size. */
static const struct msg_case size_cases[] = {
	/* 14 + 6 = 20 octets */
	{ "at the limit", L(H "abcd\r\n.\r\n"), 0, END, MSG_OK, NULL, 1, "abcd\r\n", NULL },
	{ "one over", L(H "abcde\r\n.\r\n"), 0, END, MSG_TOO_BIG, NULL, -1, NULL, NULL },
	{ "stuffing not counted", L(H "..cd\r\n.\r\n"), 0, END, MSG_OK, NULL, 1, ".cd\r\n", NULL },
	{ "far over", L(H "abcdefghijklmnopqrstuvwxyz\r\nmore\r\n.\r\n"), 0, END, MSG_TOO_BIG, NULL,
	  -1, NULL, NULL },
	{ "first problem wins: size", L(H "abcdefg\0\r\n.\r\n"), 0, END, MSG_TOO_BIG, NULL, -1, NULL,
	  NULL },
	{ "first problem wins: NUL", L(H "a\0cdefghi\r\n.\r\n"), 0, END, MSG_NUL, NULL, -1, NULL,
	  NULL },
};

/* size_limit - max_size 20. */
static void
size_limit(void **state)
{
	struct msg_limits lim = limits(0);

	lim.max_size = 20;
	run_rows(size_cases, NROWS(size_cases), &lim);
}

/* The header section: fields, folding, where it ends. */
static const struct msg_case header_cases[] = {
	{ "two fields", L("Subject: a\r\nTo: b\r\n\r\nbody\r\n.\r\n"), 0, END, MSG_OK, "Subject: a|To: b",
	  1, "body\r\n", NULL },
	{ "folding", L("Subject: a\r\n b\r\n\tc\r\nTo: x\r\n\r\nbody\r\n.\r\n"), 0, END, MSG_OK,
	  "Subject: a\r\n b\r\n\tc|To: x", 1, "body\r\n", NULL },
	{ "no separator: a line without colon", L("Subject: a\r\nNot a header\r\nmore\r\n.\r\n"), 0, END, MSG_OK, "Subject: a", 0, "Not a header\r\nmore\r\n", NULL },
	{ "no separator: a line with a space before the name", L("Subject: a\r\nbad name: x\r\n.\r\n"), 0, END, MSG_OK, "Subject: a", 0, "bad name: x\r\n", NULL },
	{ "obsolete space before colon", L("Subject : a\r\n\r\n.\r\n"), 0, END, MSG_OK, "Subject : a", 1,
	  "", NULL },
	{ "empty value", L("X-Empty:\r\n\r\n.\r\n"), 0, END, MSG_OK, "X-Empty:", 1, "", NULL },
	{ "headers only, no separator", L("Subject: a\r\n.\r\n"), 0, END, MSG_OK, "Subject: a", 0, "",
	  "" },
	{ "continuation first: body", L(" x: y\r\n.\r\n"), 0, END, MSG_OK, "", 0, " x: y\r\n", NULL },
	{ "colon first: body", L(": y\r\n.\r\n"), 0, END, MSG_OK, "", 0, ": y\r\n", NULL },
	{ "header-like line in the body", L("A: b\r\n\r\nC: d\r\n.\r\n"), 0, END, MSG_OK, "A: b", 1,
	  "C: d\r\n", NULL },
	{ "8-bit name ends headers", L("A: b\r\n\xc3\xa9: x\r\n.\r\n"), 0, END, MSG_OK, "A: b", 0,
	  "\xc3\xa9: x\r\n", NULL },
	{ "empty body after separator", L("A: b\r\n\r\n.\r\n"), 0, END, MSG_OK, "A: b", 1, "", "" },
	{ "body blank lines", L("A: b\r\n\r\n\r\n\r\n.\r\n"), 0, END, MSG_OK, "A: b", 1, "\r\n\r\n",
	  NULL },
};

/* header_table - header parsing. */
static void
header_table(void **state)
{
	run_rows(header_cases, NROWS(header_cases), NULL);
}

/* Header limits: fields and bytes. */
static const struct msg_case hlimit_cases[] = {
	{ "two fields allowed", L("A: 1\r\nB: 2\r\n\r\n.\r\n"), 0, END, MSG_OK, "A: 1|B: 2", 1, "", NULL },
	{ "three fields refused", L("A: 1\r\nB: 2\r\nC: 3\r\n\r\n.\r\n"), 0, END, MSG_HEADER_TOO_BIG,
	  NULL, -1, NULL, NULL },
	{ "folding is one field", L("A: 1\r\n 1\r\nB: 2\r\n\r\n.\r\n"), 0, END, MSG_OK, "A: 1\r\n 1|B: 2", 1,
	  "", NULL },
	/* max_header_bytes 30: "Subject: " + n + CRLF + CRLF = n + 13. */
	{ "header bytes at the limit", L("Subject: 12345678901234567\r\n\r\nbody\r\n.\r\n"), 0, END, MSG_OK,
	  "Subject: 12345678901234567", 1, "body\r\n", NULL },
	{ "header bytes one over", L("Subject: 123456789012345678\r\n\r\nbody\r\n.\r\n"), 0, END,
	  MSG_HEADER_TOO_BIG, NULL, -1, NULL, NULL },
	{ "body bytes do not count", L("A: 1\r\n\r\n0123456789012345678901234567890123456789\r\n.\r\n"), 0, END, MSG_OK, "A: 1", 1, "0123456789012345678901234567890123456789\r\n", NULL },
};

/* header_limits - max_header_fields 2, max_header_bytes 30. */
static void
header_limits(void **state)
{
	struct msg_limits lim = limits(0);

	lim.max_header_fields = 2;
	lim.max_header_bytes = 30;
	run_rows(hlimit_cases, NROWS(hlimit_cases), &lim);
}

/* spill_to_file - a tiny spool_memory puts the body in a file; reading it
 * back in pieces of any size gives the bytes kept in memory otherwise. */
static void
spill_to_file(void **state)
{
	static const size_t steps[] = { 1, 7, 100, 4096, 65536 };
	static char in[40000];
	struct msg_limits big = limits(0), tiny = limits(0);
	struct outcome a, b;
	size_t n = 0;

	n += snprintf(in + n, sizeof(in) - n, "Subject: spill\r\n\r\n");
	for (int i = 0; n + 200 < sizeof(in); i++)
		n += snprintf(in + n, sizeof(in) - n, "%sline %d of the body, with some text\r\n",
			      i % 7 == 0 ? ".." : "", i);
	n += snprintf(in + n, sizeof(in) - n, ".\r\n");
	tiny.spool_memory = 16;
	feed_split(&a, &big, in, n, NULL, 0);
	feed_split(&b, &tiny, in, n, NULL, 0);
	assert_int_equal(a.end, n);
	assert_int_equal(b.end, n);
	struct message *ma = msg_parser_message(a.p), *mb = msg_parser_message(b.p);
	assert_int_equal(ma->problem, MSG_OK);
	assert_int_equal(mb->problem, MSG_OK);
	assert_true(ma->fd < 0);
	assert_true(mb->fd >= 0);
	assert_int_equal(msg_body_length(ma), msg_body_length(mb));
	for (size_t i = 0; i < NROWS(steps); i++) {
		size_t la, lb;
		char *wa = wire_body(ma, steps[i], &la), *wb = wire_body(mb, steps[i], &lb);

		if (la != lb || memcmp(wa, wb, la) != 0)
			fail_msg("step %zu: file and memory bodies differ", steps[i]);
		/* The wire form is the input between the header section and the end. */
		if (la != n - 18 - 3 || memcmp(wa, in + 18, la) != 0)
			fail_msg("step %zu: stored body is not the input's", steps[i]);
		free(wa);
		free(wb);
	}
	/* Reading at or past the end gives nothing. */
	struct evbuffer *out = evbuffer_new();
	assert_int_equal(msg_body_read(mb, msg_body_length(mb), out, 10), 0);
	assert_int_equal(msg_body_read(ma, msg_body_length(ma) + 5, out, 10), 0);
	/* A read in the middle returns the bytes at that offset. */
	assert_int_equal(msg_body_read(mb, 6, out, 10), 10);
	assert_memory_equal(evbuffer_pullup(out, -1), in + 18 + 6, 10);
	evbuffer_free(out);
	msg_parser_free(a.p);
	msg_parser_free(b.p);
}

/* stream_callbacks - order and content of header, eoh and body calls. */
static void
stream_callbacks(void **state)
{
	static const char in[] = "From: a@example.org\r\nSubject: x\r\n y\r\n\r\n..dot\r\nline\r\n.\r\n";
	struct msg_limits lim = limits(0);
	struct outcome o;

	feed_split(&o, &lim, in, sizeof(in) - 1, NULL, 0);
	assert_int_equal(o.end, sizeof(in) - 1);
	assert_string_equal(o.rec.events, "HHEB");
	assert_string_equal(o.rec.headers, "From: a@example.org|Subject: x\r\n y");
	assert_int_equal(o.rec.body_len, strlen(".dot\r\nline\r\n"));
	assert_memory_equal(o.rec.body, ".dot\r\nline\r\n", o.rec.body_len);
	struct message *m = msg_parser_message(o.p);
	assert_int_equal(m->nheaders, 2);
	assert_true(m->separator);
	/* Size: unstuffed content with CRLFs. */
	assert_int_equal(m->size, sizeof(in) - 1 - 1 - 3);
	msg_parser_free(o.p);

	/* A large body fed in pieces reaches the consumer complete, in order. */
	static char big[60000];
	static size_t cuts[100];
	size_t n = snprintf(big, sizeof(big), "A: b\r\n\r\n");
	while (n + 100 < sizeof(big))
		n += snprintf(big + n, sizeof(big) - n, "%05zu abcdefghijklmnopqrstuvwxyz\r\n", n);
	memcpy(big + n, ".\r\n", 3);
	for (size_t k = 0; k < NROWS(cuts); k++)
		cuts[k] = (k + 1) * 599;
	feed_split(&o, &lim, big, n + 3, cuts, NROWS(cuts));
	assert_int_equal(o.end, n + 3);
	assert_string_equal(o.rec.events, "HEB");
	assert_int_equal(o.rec.body_len, n - 8);
	assert_memory_equal(o.rec.body, big + 8, n - 8);
	msg_parser_free(o.p);
}

/* header_helpers - msg_header_is, msg_header_value, msg_stuff_header. */
static void
header_helpers(void **state)
{
	static const char in[] = "Subject : hello\r\n world\r\nX-A:v\r\n\r\n.\r\n";
	struct msg_limits lim = limits(0);
	struct outcome o;
	size_t len;

	feed_split(&o, &lim, in, sizeof(in) - 1, NULL, 0);
	struct message *m = msg_parser_message(o.p);
	assert_int_equal(m->nheaders, 2);
	assert_true(msg_header_is(&m->headers[0], "subject"));
	assert_true(msg_header_is(&m->headers[0], "SUBJECT"));
	assert_false(msg_header_is(&m->headers[0], "Subj"));
	assert_false(msg_header_is(&m->headers[0], "Subject "));
	const char *v = msg_header_value(&m->headers[0], &len);
	assert_int_equal(len, strlen(" hello\r\n world"));
	assert_memory_equal(v, " hello\r\n world", len);
	assert_true(msg_header_is(&m->headers[1], "x-a"));
	v = msg_header_value(&m->headers[1], &len);
	assert_int_equal(len, 1);
	assert_memory_equal(v, "v", 1);
	msg_parser_free(o.p);

	/* Stuffing: a leading dot doubled, folding kept, CRLF added. */
	static const struct {
		const char *raw, *want;
	} stuff_rows[] = {
		{ "Subject: a", "Subject: a\r\n" },
		{ ".X: y", "..X: y\r\n" },
		{ "Subject: a\r\n b", "Subject: a\r\n b\r\n" },
		{ "X: a\r\n.b", "X: a\r\n..b\r\n" },
	};
	for (size_t i = 0; i < NROWS(stuff_rows); i++) {
		struct evbuffer *out = evbuffer_new();
		msg_stuff_header(out, stuff_rows[i].raw, strlen(stuff_rows[i].raw));
		size_t n = evbuffer_get_length(out);
		const char *got = (const char *)evbuffer_pullup(out, -1);
		if (n != strlen(stuff_rows[i].want) || memcmp(got, stuff_rows[i].want, n) != 0)
			fail_msg("stuff row %zu: \"%.*s\", want \"%s\"", i, (int)n, got,
				 stuff_rows[i].want);
		evbuffer_free(out);
	}
}

/* random_message - a message of plain lines with, now and then, what the
 * parser must treat octet by octet: leading dots, bare CR and LF, NUL,
 * lines near the length limit, the terminator. */
static size_t
random_message(unsigned *seed, char *out, size_t cap)
{
	size_t n = 0;
	int lines = 1 + rand_r(seed) % 40;

	n += (size_t)snprintf(out, cap, "From: <a@b.example>\r\nSubject: r\r\n\r\n");
	for (int l = 0; l < lines && n + 1100 < cap; l++) {
		int kind = rand_r(seed) % 12;
		size_t len = (size_t)(rand_r(seed) % 90);
		if (kind == 0)
			len = 990 + (size_t)(rand_r(seed) % 16);   /* around the 998 limit */
		if (kind == 1)
			out[n++] = '.';
		for (size_t k = 0; k < len; k++)
			out[n++] = (char)('a' + rand_r(seed) % 26);
		if (kind == 2 && len)
			out[n - len / 2 - 1] = '\r';
		if (kind == 3 && len)
			out[n - len / 2 - 1] = '\n';
		if (kind == 4 && len)
			out[n - 1] = '\0';
		if (kind == 5) {
			out[n++] = '\n';      /* a bare LF ends it */
			continue;
		}
		out[n++] = '\r';
		out[n++] = '\n';
	}
	memcpy(out + n, ".\r\n", 3);
	return n + 3;
}

/* whole_vs_octets - random messages parsed whole (the line-at-a-time fast
 * path) and octet by octet (never that path) come out the same: where the
 * message ends, the problem, the headers, the streamed body, the spool. */
static void
whole_vs_octets(void **state)
{
	static char in[48 * 1024];
	unsigned seed = 20261122;

	for (int round = 0; round < 400; round++) {
		size_t len = random_message(&seed, in, sizeof(in));
		for (unsigned mode = 0; mode < 4; mode++) {
			struct msg_limits lim = limits((mode & 1 ? NORM : 0) | (mode & 2 ? LONGPASS : 0));
			struct outcome a, b;
			size_t *cuts = malloc(len * sizeof(*cuts));
			for (size_t k = 0; k + 1 < len; k++)
				cuts[k] = k + 1;
			if (round % 3 == 0)
				lim.max_size = len / 2;     /* and a message too big halfway */
			feed_split(&a, &lim, in, len, NULL, 0);
			feed_split(&b, &lim, in, len, cuts, len - 1);
			free(cuts);
			const struct message *ma = msg_parser_message(a.p), *mb = msg_parser_message(b.p);
			assert_int_equal(a.end, b.end);
			assert_int_equal(ma->problem, mb->problem);
			assert_int_equal(ma->size, mb->size);
			assert_string_equal(a.rec.headers, b.rec.headers);
			assert_int_equal(a.rec.body_len, b.rec.body_len);
			assert_memory_equal(a.rec.body, b.rec.body, a.rec.body_len);
			if (ma->problem == MSG_OK) {
				size_t wa, wb;
				char *sa = wire_body(ma, 4096, &wa), *sb = wire_body(mb, 4096, &wb);
				assert_int_equal(wa, wb);
				assert_memory_equal(sa, sb, wa);
				free(sa);
				free(sb);
			}
			msg_parser_free(a.p);
			msg_parser_free(b.p);
		}
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(end_table),
		cmocka_unit_test(dot_table),
		cmocka_unit_test(bare_newline_table),
		cmocka_unit_test(chunked_table),
		cmocka_unit_test(nul_table),
		cmocka_unit_test(line_length_limit),
		cmocka_unit_test(size_limit),
		cmocka_unit_test(header_table),
		cmocka_unit_test(header_limits),
		cmocka_unit_test(spill_to_file),
		cmocka_unit_test(stream_callbacks),
		cmocka_unit_test(header_helpers),
		cmocka_unit_test(whole_vs_octets),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
