/*
 * fuzz_message.c - libFuzzer target for the DATA parser (message.c).
 *
 * The first two input bytes choose the settings (bare_newline reject or
 * normalize, long_lines, a tiny spool so the body spills to a file, small
 * size and header limits) and seed the split points; the rest is fed as
 * DATA content (or, when the second byte is odd, as BDAT content in
 * chunked mode ended by msg_parser_finish()), once whole and once in
 * random pieces. Checked:
 *  - the message ends exactly after the first <CRLF>.<CRLF> counting the
 *    DATA command's own CRLF, never elsewhere, with any split;
 *  - whole and split feeding build the same message;
 *  - the stored wire body never holds "<CRLF>.<CRLF>" nor starts with
 *    ".<CRLF>", has only CRLF line ends, and unstuffed it is exactly what
 *    the body stream callback saw;
 *  - callbacks come in the order header*, eoh, body*;
 *  - when the message is accepted, header fields + separator + body equal
 *    an independent model of the content: lines split at CRLF, bare CR and
 *    bare LF, and a leading dot removed only from lines that began after
 *    a real CRLF.
 *
 *   make -f tests/fuzz/Makefile build-fuzz/fuzz_message
 *   build-fuzz/fuzz_message tests/fuzz/corpus/message
 */

/* System. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Library. */
#include <event2/buffer.h>

/* Project. */
#include "message.h"

/* check - abort with a message so libFuzzer records the input. */
#define check(cond)                                                                \
	do {                                                                       \
		if (!(cond)) {                                                     \
			fprintf(stderr, "fuzz_message: %s failed at line %d\n", \
				#cond, __LINE__);                                  \
			abort();                                                   \
		}                                                                  \
	} while (0)

/* A growing byte string. */
struct bytes {
	char *s;
	size_t len, cap;
};

/* bytes_add - append n bytes. */
static void
bytes_add(struct bytes *b, const void *p, size_t n)
{
	if (b->len + n > b->cap) {
		size_t nc = b->cap ? b->cap : 256;
		while (nc < b->len + n)
			nc *= 2;
		b->s = realloc(b->s, nc);
		check(b->s != NULL);
		b->cap = nc;
	}
	if (n)
		memcpy(b->s + b->len, p, n);
	b->len += n;
}

/* What the stream callbacks saw. */
struct seen {
	struct bytes headers;   /* each field followed by CRLF */
	struct bytes body;
	size_t nheaders;
	int eoh;
	int body_before_eoh, header_after_eoh;
};

/* on_header - a complete header field. */
static void
on_header(void *arg, const char *field, size_t len)
{
	struct seen *s = arg;

	if (s->eoh)
		s->header_after_eoh = 1;
	check(len > 0);
	bytes_add(&s->headers, field, len);
	bytes_add(&s->headers, "\r\n", 2);
	s->nheaders++;
}

/* on_eoh - end of the header section. */
static void
on_eoh(void *arg)
{
	((struct seen *)arg)->eoh++;
}

/* on_body - unstuffed body text. */
static void
on_body(void *arg, const char *buf, size_t len)
{
	struct seen *s = arg;

	if (!s->eoh)
		s->body_before_eoh = 1;
	check(len > 0);
	bytes_add(&s->body, buf, len);
}

static const struct msg_stream_ops ops = { on_header, on_eoh, on_body };

/* One run of the parser over the input. */
struct run {
	struct msg_parser *p;
	struct seen seen;
	int ended;
	size_t used;            /* total consumed when ended */
	struct bytes wire;      /* body as msg_body_read() returns it */
};

/* rng - a small deterministic generator for the split points. */
static uint32_t
rng(uint32_t *st)
{
	*st ^= *st << 13;
	*st ^= *st >> 17;
	*st ^= *st << 5;
	return *st;
}

/* feed - run the parser over data; pieces of random size unless whole. */
static void
feed(struct run *r, const struct msg_limits *lim, const char *data, size_t size, int whole,
     uint32_t seed, int chunked)
{
	size_t off = 0;

	memset(r, 0, sizeof(*r));
	r->p = msg_parser_new(lim, &ops, &r->seen);
	check(r->p != NULL);
	if (chunked)
		msg_parser_chunked(r->p);
	while (off < size && !r->ended) {
		size_t n = whole ? size - off : 1 + rng(&seed) % 17;
		size_t used = (size_t)-1;

		if (n > size - off)
			n = size - off;
		enum msg_status st = msg_parser_feed(r->p, data + off, n, &used);
		check(used <= n);
		if (st == MSG_FEED_END) {
			check(used > 0);
			r->ended = 1;
		} else {
			check(st == MSG_FEED_MORE && used == n);
		}
		off += used;
	}
	r->used = off;
	if (chunked) {
		/* BDAT: nothing in the content ends it; the LAST chunk does. */
		check(!r->ended && off == size);
		msg_parser_finish(r->p);
		r->ended = 1;
	}
	if (!r->ended)
		return;

	/* Read the stored body back in odd-sized pieces. */
	struct message *m = msg_parser_message(r->p);
	struct evbuffer *out = evbuffer_new();
	off_t pos = 0;
	ssize_t got;
	check(out != NULL);
	while ((got = msg_body_read(m, pos, out, 1 + rng(&seed) % 5000)) > 0)
		pos += got;
	check(got == 0);
	check(pos == msg_body_length(m));
	check(evbuffer_get_length(out) == (size_t)pos);
	bytes_add(&r->wire, evbuffer_pullup(out, -1), (size_t)pos);
	evbuffer_free(out);
}

/* run_free - release one run. */
static void
run_free(struct run *r)
{
	msg_parser_free(r->p);
	free(r->seen.headers.s);
	free(r->seen.body.s);
	free(r->wire.s);
}

/* model - the content as an independent reading of the rules: lines end
 * at CRLF, bare CR or bare LF; a leading dot is removed from lines that
 * began after a real CRLF (or at the start of DATA). */
static void
model(const char *d, size_t n, struct bytes *out, int chunked)
{
	size_t i = 0;
	int crlf_start = !chunked;	/* BDAT content is never unstuffed */

	while (i < n) {
		size_t j = i;
		while (j < n && d[j] != '\r' && d[j] != '\n')
			j++;
		size_t s = i;
		if (crlf_start && s < j && d[s] == '.')
			s++;
		bytes_add(out, d + s, j - s);
		bytes_add(out, "\r\n", 2);
		if (j + 1 < n && d[j] == '\r' && d[j + 1] == '\n') {
			crlf_start = !chunked;
			i = j + 2;
		} else {
			crlf_start = 0;
			i = j + 1;
		}
		/* A lone "." line after CRLF is the dot removed: "" (handled above). */
	}
}

/* check_wire - the stored body is safe to send and unstuffs to body. */
static void
check_wire(const struct bytes *w, const struct bytes *body)
{
	struct bytes un = { 0 };
	size_t i = 0;

	if (w->len >= 3)
		check(memcmp(w->s, ".\r\n", 3) != 0);
	check(w->len == 0 || (w->len >= 2 && memcmp(w->s + w->len - 2, "\r\n", 2) == 0));
	check(w->len == 0 || memmem(w->s, w->len, "\r\n.\r\n", 5) == NULL);
	while (i < w->len) {
		const char *eol = memmem(w->s + i, w->len - i, "\r\n", 2);
		check(eol != NULL);
		size_t n = eol - (w->s + i);
		check(memchr(w->s + i, '\r', n) == NULL && memchr(w->s + i, '\n', n) == NULL);
		size_t s = i;
		if (n > 0 && w->s[i] == '.') {
			/* Stuffed: a line starting with a dot has two. */
			check(n >= 2 && w->s[i + 1] == '.');
			s++;
		}
		bytes_add(&un, w->s + s, i + n - s);
		bytes_add(&un, "\r\n", 2);
		i += n + 2;
	}
	check(un.len == body->len && (un.len == 0 || memcmp(un.s, body->s, un.len) == 0));
	free(un.s);
}

/* same_message - whole and split feeding built the same message. */
static void
same_message(struct run *a, struct run *b)
{
	struct message *ma = msg_parser_message(a->p), *mb = msg_parser_message(b->p);

	check(a->ended == b->ended && a->used == b->used);
	if (!a->ended)
		return;
	check(ma->problem == mb->problem);
	check(ma->size == mb->size);
	if (ma->problem != MSG_OK)
		return;
	check(ma->nheaders == mb->nheaders && ma->separator == mb->separator);
	for (size_t i = 0; i < ma->nheaders; i++) {
		check(ma->headers[i].len == mb->headers[i].len);
		check(memcmp(ma->headers[i].raw, mb->headers[i].raw, ma->headers[i].len) == 0);
	}
	check(a->wire.len == b->wire.len &&
	      (a->wire.len == 0 || memcmp(a->wire.s, b->wire.s, a->wire.len) == 0));
}

/* LLVMFuzzerTestOneInput - settings from two bytes, the rest is DATA. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct msg_limits lim;
	struct run whole, split;

	if (size < 2)
		return 0;
	uint8_t mode = data[0];
	uint32_t seed = data[1] | 0x100u;
	int chunked = data[1] & 1;	/* BDAT: counted content, ended by finish */
	const char *d = (const char *)data + 2;
	size_t n = size - 2;

	memset(&lim, 0, sizeof(lim));
	lim.normalize_newlines = mode & 1;
	lim.long_lines_pass = (mode >> 1) & 1;
	lim.spool_memory = (mode & 4) ? (mode >> 4) : 1 << 20;
	lim.max_size = (mode & 8) ? 64 + (mode >> 3) * 8 : 1 << 24;
	lim.max_header_fields = (mode & 0x40) ? 2 : 1000;
	lim.max_header_bytes = (mode & 0x80) ? 100 : 1 << 20;

	/* Where the message must end: the first CRLF.CRLF, the DATA command's
	 * own CRLF counting as the first one. */
	size_t expect_end = 0;
	if (chunked)
		expect_end = n;
	else if (n >= 3 && memcmp(d, ".\r\n", 3) == 0)
		expect_end = 3;
	else {
		const char *t = memmem(d, n, "\r\n.\r\n", 5);
		if (t)
			expect_end = (size_t)(t - d) + 5;
	}

	feed(&whole, &lim, d, n, 1, seed, chunked);
	feed(&split, &lim, d, n, 0, seed, chunked);
	for (struct run *r = &whole; r; r = r == &whole ? &split : NULL) {
		struct message *m = msg_parser_message(r->p);

		if (!expect_end && !chunked) {
			check(!r->ended && r->used == n);
			continue;
		}
		check(r->ended && r->used == expect_end);
		check(!r->seen.body_before_eoh && !r->seen.header_after_eoh);
		if (m->problem != MSG_OK)
			continue;
		check(r->seen.eoh == 1);
		check(r->seen.nheaders == m->nheaders);
		check_wire(&r->wire, &r->seen.body);

		/* Headers, separator and body against the model. */
		struct bytes got = { 0 }, want = { 0 };
		for (size_t i = 0; i < m->nheaders; i++) {
			const struct msg_header *h = &m->headers[i];
			check(h->len > 0 && h->name_len > 0 && h->name_len < h->len);
			check(h->raw[h->len] == '\0');
			bytes_add(&got, h->raw, h->len);
			bytes_add(&got, "\r\n", 2);
		}
		check(got.len == r->seen.headers.len &&
		      (got.len == 0 || memcmp(got.s, r->seen.headers.s, got.len) == 0));
		if (m->separator)
			bytes_add(&got, "\r\n", 2);
		if (r->seen.body.len)
			bytes_add(&got, r->seen.body.s, r->seen.body.len);
		model(d, chunked ? n : expect_end - 3, &want, chunked);
		check(got.len == want.len && (got.len == 0 || memcmp(got.s, want.s, got.len) == 0));
		check(m->size == want.len);
		free(got.s);
		free(want.s);
	}
	same_message(&whole, &split);
	run_free(&whole);
	run_free(&split);
	return 0;
}
