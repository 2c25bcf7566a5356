/*
 * test_dkim_canon.c - unit tests for dkim_canon.c: RFC 6376's own
 * canonicalisation example (3.4.5), the empty-body and trailing-line
 * rules, any chunking giving the same output as one piece (random bodies
 * fed whole and in random pieces, against a line-based model written
 * from the RFC text), tag lists and base64 with folding white space
 * (against OpenSSL's encoder).
 */

/* System. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Libraries. */
#include <cmocka.h>
#include <openssl/evp.h>

/* Project. */
#include "dkim_canon.h"

/* Collected sink output. */
struct out {
	char buf[1 << 16];
	size_t len;
};

/* collect - a dkim_body_sink appending to a struct out. */
static void
collect(void *arg, const unsigned char *p, size_t len)
{
	struct out *o = arg;

	assert_true(o->len + len <= sizeof o->buf);
	memcpy(o->buf + o->len, p, len);
	o->len += len;
}

/* canon - body in chunks of chunk octets (0: random sizes from seed). */
static size_t
canon(const char *body, size_t len, bool relaxed, size_t chunk, unsigned seed, struct out *o)
{
	struct dkim_body b;
	size_t pos = 0;

	o->len = 0;
	dkim_body_init(&b, relaxed, collect, o);
	while (pos < len) {
		size_t k = chunk ? chunk : 1 + (size_t)(rand_r(&seed) % 40);

		if (k > len - pos)
			k = len - pos;
		dkim_body_feed(&b, (const unsigned char *)body + pos, k);
		pos += k;
	}
	dkim_body_end(&b);
	assert_int_equal(b.total, o->len);
	return o->len;
}

/* rfc6376_example - RFC 6376 3.4.5, header and body, both forms. */
static void
rfc6376_example(void **state)
{
	static struct out o;
	const char *body = " C \r\nD \t E\r\n\r\n\r\n";
	char h[128];
	size_t n;

	canon(body, strlen(body), true, 4096, 0, &o);
	assert_int_equal(o.len, strlen(" C\r\nD E\r\n"));
	assert_memory_equal(o.buf, " C\r\nD E\r\n", o.len);
	canon(body, strlen(body), false, 1, 0, &o);
	assert_int_equal(o.len, strlen(" C \r\nD \t E\r\n"));
	assert_memory_equal(o.buf, " C \r\nD \t E\r\n", o.len);
	n = dkim_header_canon("A: X", 4, true, true, h, sizeof h);
	assert_int_equal(n, 5);
	assert_memory_equal(h, "a:X\r\n", 5);
	n = dkim_header_canon("B : Y\t\r\n\tZ  ", 12, true, true, h, sizeof h);
	assert_int_equal(n, 7);
	assert_memory_equal(h, "b:Y Z\r\n", 7);
	n = dkim_header_canon("B : Y\t\r\n\tZ  ", 12, false, false, h, sizeof h);
	assert_int_equal(n, 12);
	assert_int_equal(dkim_header_canon("Subject: x", 10, true, true, h, 5), (size_t)-1);
}

/* empty_and_trailing - the end-of-body rules of 3.4.3 and 3.4.4. */
static void
empty_and_trailing(void **state)
{
	static const struct {
		const char *in, *simple, *relaxed;
	} rows[] = {
		{ "", "\r\n", "" },
		{ "\r\n\r\n\r\n", "\r\n", "" },
		{ " \t \r\n", " \t \r\n", "" },
		{ "x", "x\r\n", "x\r\n" },
		{ "x\r\n \r\n\r\n", "x\r\n \r\n", "x\r\n" },
		{ "a\rb\r\n", "a\rb\r\n", "a\rb\r\n" },
		{ "a\r", "a\r\r\n", "a\r\r\n" },
		{ "\r\n\r\nx\r\n", "\r\n\r\nx\r\n", "\r\n\r\nx\r\n" },
		{ "a  b\t\tc \r\n", "a  b\t\tc \r\n", "a b c\r\n" },
		{ "  lead\r\n", "  lead\r\n", " lead\r\n" },
		{ "a\nb  \n", "a\r\nb  \r\n", "a\r\nb\r\n" },	/* bare LF: a line end */
		{ "x\r\n\n\r\n\n", "x\r\n", "x\r\n" },
		{ "a b\nc", "a b\r\nc\r\n", "a b\r\nc\r\n" },
	};
	static struct out o;

	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		for (size_t chunk = 1; chunk <= 3; chunk += 2) {
			canon(rows[i].in, strlen(rows[i].in), false, chunk, 0, &o);
			if (o.len != strlen(rows[i].simple) || memcmp(o.buf, rows[i].simple, o.len))
				fail_msg("row %zu simple (chunk %zu): %.*s", i, chunk, (int)o.len, o.buf);
			canon(rows[i].in, strlen(rows[i].in), true, chunk, 0, &o);
			if (o.len != strlen(rows[i].relaxed) || memcmp(o.buf, rows[i].relaxed, o.len))
				fail_msg("row %zu relaxed (chunk %zu): %.*s", i, chunk, (int)o.len,
					 o.buf);
		}
	}
}

/* model - canonical body from the RFC's line rules, for whole CRLF lines
 * without bare CR (what random_bodies makes). */
static size_t
model(const char *in, size_t len, bool relaxed, char *out)
{
	size_t o = 0, keep = 0, i = 0;

	while (i < len) {
		const char *eol = strstr(in + i, "\r\n");
		size_t n = (size_t)(eol - (in + i)), start = o;

		if (!relaxed) {
			memcpy(out + o, in + i, n);
			o += n;
		} else {
			bool wsp = false;

			for (size_t k = 0; k < n; k++) {
				char c = in[i + k];

				if (c == ' ' || c == '\t') {
					wsp = true;
					continue;
				}
				if (wsp)
					out[o++] = ' ';
				wsp = false;
				out[o++] = c;
			}
		}
		memcpy(out + o, "\r\n", 2);
		o += 2;
		if (o - start > 2)
			keep = o;	/* last line with content */
		i += n + 2;
	}
	if (!relaxed && keep == 0) {
		memcpy(out, "\r\n", 2);
		return 2;
	}
	return keep;
}

/* random_bodies - 500 random bodies: whole = byte by byte = random
 * pieces = the model, in both forms. */
static void
random_bodies(void **state)
{
	static const char alphabet[] = "ab .\t  xyzwv";
	static char body[16384], want[32768];
	static struct out o1, o2, o3;
	unsigned seed = 12345;

	for (int t = 0; t < 500; t++) {
		size_t len = 0, lines = (size_t)(rand_r(&seed) % 12);

		for (size_t l = 0; l < lines; l++) {
			/* Short lines, and long ones (the 8-octet scan). */
			size_t n = (size_t)(rand_r(&seed) % (t % 2 ? 8 : 60));

			for (size_t k = 0; k < n; k++)
				body[len++] = alphabet[rand_r(&seed) % (sizeof alphabet - 1)];
			body[len++] = '\r';
			body[len++] = '\n';
		}
		body[len] = '\0';
		for (int r = 0; r < 2; r++) {
			size_t w = model(body, len, r == 1, want);

			canon(body, len, r == 1, 4096, 0, &o1);
			canon(body, len, r == 1, 1, 0, &o2);
			canon(body, len, r == 1, 0, (unsigned)t, &o3);
			if (o1.len != w || memcmp(o1.buf, want, w) || o2.len != w ||
			    memcmp(o2.buf, want, w) || o3.len != w || memcmp(o3.buf, want, w))
				fail_msg("body %d form %d differs", t, r);
		}
	}
}

/* tags - RFC 6376 3.2 tag lists: FWS, duplicates, syntax, b= offsets. */
static void
tags(void **state)
{
	struct dkim_tag t[8];
	size_t n;
	const char *s = " v=1;\r\n\ta = rsa-sha256 ; b=ab\r\n cd ;";

	assert_int_equal(dkim_tags_parse(s, strlen(s), t, 8, &n), DKIM_TAGS_OK);
	assert_int_equal(n, 3);
	const struct dkim_tag *a = dkim_tag_find(t, n, "a"), *b = dkim_tag_find(t, n, "b");
	assert_non_null(a);
	assert_int_equal(a->valuelen, 10);
	assert_memory_equal(a->value, "rsa-sha256", 10);
	assert_int_equal(b->valuelen, 7);	/* "ab\r\n cd", FWS inside kept */
	assert_int_equal(s[b->vstart - 1], '=');
	assert_int_equal(s[b->vend], ';');
	assert_null(dkim_tag_find(t, n, "bh"));
	assert_int_equal(dkim_tags_parse("a=1; a=2", 8, t, 8, &n), DKIM_TAGS_DUPLICATE);
	assert_int_equal(dkim_tags_parse("a 1", 3, t, 8, &n), DKIM_TAGS_SYNTAX);
	assert_int_equal(dkim_tags_parse("=1", 2, t, 8, &n), DKIM_TAGS_SYNTAX);
	assert_int_equal(dkim_tags_parse("a=\001", 3, t, 8, &n), DKIM_TAGS_SYNTAX);
	assert_int_equal(dkim_tags_parse("a=1;b=2;c=3", 11, t, 2, &n), DKIM_TAGS_TOOMANY);
	assert_int_equal(dkim_tags_parse("", 0, t, 8, &n), DKIM_TAGS_OK);
	assert_int_equal(n, 0);
}

/* base64 - folding white space ignored, padding checked, room checked. */
static void
base64(void **state)
{
	unsigned char out[16];
	size_t n;
	char c[8];

	assert_true(dkim_b64_decode("aGVs\r\n bG8=", 11, out, sizeof out, &n));
	assert_int_equal(n, 5);
	assert_memory_equal(out, "hello", 5);
	assert_true(dkim_b64_decode("aGk=", 4, out, sizeof out, &n) && n == 2);
	assert_false(dkim_b64_decode("aGk", 3, out, sizeof out, &n));
	assert_false(dkim_b64_decode("aG=k", 4, out, sizeof out, &n));
	assert_false(dkim_b64_decode("aGk*", 4, out, sizeof out, &n));
	assert_false(dkim_b64_decode("aGVsbG8=", 8, out, 4, &n));
	assert_true(dkim_compact(c, sizeof c, " a\r\n\tb ", 7));
	assert_string_equal(c, "ab");
	assert_false(dkim_compact(c, 2, "abc", 3));
}

/* base64_random - random data encoded by OpenSSL, folded at random
 * places, decodes to the same octets (both the 4-character and the
 * one-by-one paths, and their switches). */
static void
base64_random(void **state)
{
	static unsigned char data[600], enc[1000], back[600];
	static char folded[3000];
	unsigned seed = 99;

	for (int t = 0; t < 300; t++) {
		size_t n = (size_t)(rand_r(&seed) % sizeof data), o = 0, got;
		int el;

		for (size_t i = 0; i < n; i++)
			data[i] = (unsigned char)rand_r(&seed);
		el = EVP_EncodeBlock(enc, data, (int)n);
		for (int i = 0; i < el; i++) {
			if (rand_r(&seed) % 9 == 0) {
				static const char *fws[] = { " ", "\t", "\r\n ", "\r\n\t" };
				const char *f = fws[rand_r(&seed) % 4];

				memcpy(folded + o, f, strlen(f));
				o += strlen(f);
			}
			folded[o++] = (char)enc[i];
		}
		if (!dkim_b64_decode(folded, o, back, sizeof back, &got) || got != n ||
		    memcmp(back, data, n) != 0)
			fail_msg("case %d (%zu octets) did not round-trip", t, n);
		/* One octet too little room is refused, not overrun. */
		if (n > 0)
			assert_false(dkim_b64_decode(folded, o, back, n - 1, &got));
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(rfc6376_example),
		cmocka_unit_test(empty_and_trailing),
		cmocka_unit_test(random_bodies),
		cmocka_unit_test(tags),
		cmocka_unit_test(base64),
		cmocka_unit_test(base64_random),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
