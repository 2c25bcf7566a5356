/*
 * test_mime_words.c - unit tests for mime_words.c: RFC 2047 B and Q
 * words in UTF-8 and in other charsets (through iconv), white space
 * between adjacent words, words that must stay as they are (unknown
 * charset, bad base64, bad hex, no end, spaces inside), control
 * characters, and output that does not fit.
 */

/* System. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* Libraries. */
#include <cmocka.h>

/* Project. */
#include "mime_words.h"

#define NROWS(t) (sizeof(t) / sizeof((t)[0]))

static const struct {
	const char *name, *in, *want;
} rows[] = {
	{ "plain", "Alice Example", "Alice Example" },
	{ "empty", "", "" },
	{ "B utf-8", "=?UTF-8?B?Q0VPIDxjZW9AZXhhbXBsZS5vcmc+?=", "CEO <ceo@example.org>" },
	{ "b lower case", "=?utf-8?b?Q0VP?=", "CEO" },
	{ "Q utf-8", "=?UTF-8?Q?caf=C3=A9_au_lait?=", "caf\xc3\xa9 au lait" },
	{ "Q lower hex", "=?utf-8?q?caf=c3=a9?=", "caf\xc3\xa9" },
	{ "latin-1 via iconv", "=?ISO-8859-1?Q?Andr=E9?=", "Andr\xc3\xa9" },
	{ "windows-1252 euro", "=?windows-1252?Q?=80_5?=", "\xe2\x82\xac 5" },
	{ "language suffix", "=?UTF-8*en?Q?hi?=", "hi" },
	{ "text around", "Dear =?UTF-8?Q?B=C3=B6b?= Smith", "Dear B\xc3\xb6" "b Smith" },
	{ "adjacent words joined", "=?UTF-8?Q?ce?= =?UTF-8?Q?o?=", "ceo" },
	{ "adjacent words, folded", "=?UTF-8?Q?ce?=\r\n =?UTF-8?Q?o?=", "ceo" },
	{ "space kept before text", "=?UTF-8?Q?ceo?= boss", "ceo boss" },
	{ "space kept after text", "boss =?UTF-8?Q?ceo?=", "boss ceo" },
	{ "B without padding", "=?UTF-8?B?Y2VvQA?=", "ceo@" },
	{ "split address", "=?UTF-8?B?Y2VvQA==?= =?UTF-8?B?ZXhhbXBsZS5vcmc=?=", "ceo@example.org" },
	{ "unknown charset kept", "=?X-NO-SUCH?Q?a?=", "=?X-NO-SUCH?Q?a?=" },
	{ "bad base64 kept", "=?UTF-8?B?Q0V!?=", "=?UTF-8?B?Q0V!?=" },
	{ "bad hex kept", "=?UTF-8?Q?a=ZZ?=", "=?UTF-8?Q?a=ZZ?=" },
	{ "truncated hex kept", "=?UTF-8?Q?a=4?=", "=?UTF-8?Q?a=4?=" },
	{ "unknown encoding kept", "=?UTF-8?X?abc?=", "=?UTF-8?X?abc?=" },
	{ "no end kept", "=?UTF-8?Q?abc", "=?UTF-8?Q?abc" },
	{ "space inside kept", "=?UTF-8?Q?a b?=", "=?UTF-8?Q?a b?=" },
	{ "empty charset kept", "=??Q?a?=", "=??Q?a?=" },
	{ "bad word then good one", "=?UTF-8?B?!?= =?UTF-8?Q?x?=", "=?UTF-8?B?!?= x" },
	{ "decoded CR LF become spaces", "=?UTF-8?Q?a=0D=0Ab?=", "a  b" },
	{ "decoded NUL becomes space", "=?UTF-8?B?YQBi?=", "a b" },
	{ "raw tab becomes space", "a\tb", "a b" },
	{ "lone =?", "x =? y", "x =? y" },
	{ "quoted string inside", "\"=?UTF-8?Q?ceo=40example=2Eorg?=\"", "\"ceo@example.org\"" },
};

/* decode_table - every row. */
static void
decode_table(void **state)
{
	char out[256];

	(void)state;
	for (size_t i = 0; i < NROWS(rows); i++) {
		size_t n = mime_words_decode(rows[i].in, strlen(rows[i].in), out, sizeof(out));
		if (n != strlen(out) || strcmp(out, rows[i].want) != 0)
			fail_msg("row %zu (%s): got \"%s\", want \"%s\"", i, rows[i].name, out,
				 rows[i].want);
	}
}

/* small_output - cut at the size, always NUL-terminated, never past it. */
static void
small_output(void **state)
{
	static const char *in[] = {
		"Alice Example", "=?UTF-8?B?Q0VPIDxjZW9AZXhhbXBsZS5vcmc+?=",
		"=?ISO-8859-1?Q?=E9=E9=E9=E9=E9=E9?=",
	};
	char out[8];

	(void)state;
	for (size_t i = 0; i < NROWS(in); i++) {
		for (size_t size = 1; size <= sizeof(out); size++) {
			memset(out, 'X', sizeof(out));
			size_t n = mime_words_decode(in[i], strlen(in[i]), out, size);
			if (n >= size || out[n] != '\0' || (size < sizeof(out) && out[size] != 'X'))
				fail_msg("input %zu, size %zu: length %zu", i, size, n);
		}
	}
	assert_int_equal(mime_words_decode("abc", 3, out, 0), 0);
}

/* not_nul_terminated - the input length is what counts. */
static void
not_nul_terminated(void **state)
{
	char out[64];
	const char in[] = "=?UTF-8?Q?ab?=XYZ";

	(void)state;
	assert_int_equal(mime_words_decode(in, 14, out, sizeof(out)), 2);
	assert_string_equal(out, "ab");
	assert_int_equal(mime_words_decode(in, 13, out, sizeof(out)), 13);
	assert_string_equal(out, "=?UTF-8?Q?ab?");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(decode_table),
		cmocka_unit_test(small_output),
		cmocka_unit_test(not_nul_terminated),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
