/*
 * test_check_spoof.c - unit tests for check_spoof.c: RFC 3492 punycode
 * vectors, confusable skeletons, Damerau edit distance, domain splitting,
 * look-alike domains against a set of local domains, and display names
 * (foreign addresses, protected names from a file). One row per case; a
 * failing row prints its name, what it got and what it wanted.
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
#include <unistd.h>

/* Libraries. */
#include <cmocka.h>

/* Project. */
#include "check_spoof.h"

/* RFC 3492 section 7.1 samples (B, L), plus a few of our own. */
static const struct {
	const char *name, *in;
	int n;
	uint32_t cp[12];
} puny[] = {
	{ "rfc3492_B_chinese", "ihqwcrb4cv8a8dqg056pqjye", 9,
	  { 0x4ed6, 0x4eec, 0x4e3a, 0x4ec0, 0x4e48, 0x4e0d, 0x8bf4, 0x4e2d, 0x6587 } },
	{ "rfc3492_L_3nenBgumi", "3B-ww4c5e180e575a65lsy2b", 8,
	  { 0x33, 0x5e74, 0x42, 0x7d44, 0x91d1, 0x516b, 0x5148, 0x751f } },
	{ "rfc3492_L_uppercase_digits", "3B-WW4C5E180E575A65LSY2B", 8,
	  { 0x33, 0x5e74, 0x42, 0x7d44, 0x91d1, 0x516b, 0x5148, 0x751f } },
	{ "buecher", "bcher-kva", 6, { 'b', 0xfc, 'c', 'h', 'e', 'r' } },
	{ "cyrillic_a_in_example", "exmple-4nf", 7, { 'e', 'x', 0x430, 'm', 'p', 'l', 'e' } },
	{ "basic_only", "abc-", 3, { 'a', 'b', 'c' } },
	{ "bad_digit", "ab-c!d", -1, { 0 } },
	{ "truncated", "bcher-kv", -1, { 0 } },
	{ "overflow", "99999999999999999999", -1, { 0 } },
};

/* punycode_table - decode every vector. */
static void
punycode_table(void **state)
{
	int failed = 0;
	(void)state;
	for (size_t i = 0; i < sizeof puny / sizeof puny[0]; i++) {
		uint32_t out[64];
		int n = spoof_punycode_decode(puny[i].in, strlen(puny[i].in), out, 64);
		bool ok = n == puny[i].n;
		for (int k = 0; ok && k < n; k++)
			ok = out[k] == puny[i].cp[k];
		if (!ok) {
			fprintf(stderr, "case %s: [%s] decoded %d code points, want %d\n", puny[i].name,
				puny[i].in, n, puny[i].n);
			failed++;
		}
	}
	assert_int_equal(failed, 0);
}

/* Skeletons of single labels. */
static const struct {
	const char *name, *label, *want;
} skel[] = {
	{ "ascii", "Example", "example" },
	{ "digit_one_zero", "examp1e", "example" },
	{ "zero_for_o", "g00gle", "google" },
	{ "rn_is_m", "exarnple", "example" },
	{ "vv_is_w", "vvidget", "widget" },
	{ "cyrillic_a_punycode", "xn--exmple-4nf", "example" },
	{ "accented_u", "xn--bcher-kva", "bucher" },
	{ "unmapped_cjk", "xn--ihqwcrb4cv8a8dqg056pqjye", "#########" },
	{ "bad_punycode_as_written", "xn--!!", "xn--!!" },
};

/* skeleton_table - each label's skeleton. */
static void
skeleton_table(void **state)
{
	int failed = 0;
	(void)state;
	for (size_t i = 0; i < sizeof skel / sizeof skel[0]; i++) {
		char out[256];
		spoof_skeleton(skel[i].label, strlen(skel[i].label), out, sizeof out);
		if (strcmp(out, skel[i].want) != 0) {
			fprintf(stderr, "case %s: [%s] -> [%s], want [%s]\n", skel[i].name, skel[i].label,
				out, skel[i].want);
			failed++;
		}
	}
	assert_int_equal(failed, 0);
}

/* Damerau (optimal string alignment) distances. */
static const struct {
	const char *name, *a, *b;
	int d;
} edits[] = {
	{ "equal", "example", "example", 0 },
	{ "substitution", "exbmple", "example", 1 },
	{ "insertion", "exxample", "example", 1 },
	{ "deletion", "exaple", "example", 1 },
	{ "transposition", "exmaple", "example", 1 },
	{ "two_edits", "exmapel", "example", 2 },
	{ "empty", "", "abc", 3 },
	{ "unrelated", "kitten", "sitting", 3 },
};

/* edit_distance_table - each pair's distance, both ways round. */
static void
edit_distance_table(void **state)
{
	int failed = 0;
	(void)state;
	for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
		int d1 = spoof_edit_distance(edits[i].a, edits[i].b);
		int d2 = spoof_edit_distance(edits[i].b, edits[i].a);
		if (d1 != edits[i].d || d2 != edits[i].d) {
			fprintf(stderr, "case %s: %d/%d, want %d\n", edits[i].name, d1, d2, edits[i].d);
			failed++;
		}
	}
	assert_int_equal(failed, 0);
}

/* Registrable label and suffix. */
static const struct {
	const char *domain, *name, *suffix;
} splits[] = {
	{ "example.org", "example", "org" },
	{ "mail.example.org", "example", "org" },
	{ "example.co.uk", "example", "co.uk" },
	{ "a.b.example.com.au", "example", "com.au" },
	{ "co.uk", NULL, NULL },
	{ "localhost", NULL, NULL },
	{ "example.de", "example", "de" },
};

/* split_table - each domain's split (NULL: none). */
static void
split_table(void **state)
{
	int failed = 0;
	(void)state;
	for (size_t i = 0; i < sizeof splits / sizeof splits[0]; i++) {
		char n[256] = "", s[256] = "";
		bool ok = spoof_split_domain(splits[i].domain, n, sizeof n, s, sizeof s);
		if (ok != (splits[i].name != NULL) ||
		    (ok && (strcmp(n, splits[i].name) || strcmp(s, splits[i].suffix)))) {
			fprintf(stderr, "case %s: got %d [%s] [%s]\n", splits[i].domain, ok, n, s);
			failed++;
		}
	}
	assert_int_equal(failed, 0);
}

/* Look-alikes of local domains example.org, .example.net, shop.co.uk, ab.org. */
static const struct {
	const char *name, *domain;
	bool want;
} looks[] = {
	{ "homoglyph_punycode", "xn--exmple-4nf.org", true },
	{ "homoglyph_other_suffix", "xn--exmple-4nf.com", true },
	{ "digit_one", "examp1e.org", true },
	{ "rn_for_m", "exarnple.org", true },
	{ "substitution", "exbmple.org", true },
	{ "insertion", "examplle.org", true },
	{ "deletion", "exmple.org", true },
	{ "transposition", "exmaple.org", true },
	{ "swapped_tld_com", "example.com", true },
	{ "swapped_tld_co", "example.co", true },
	{ "swapped_tld_subdomain", "mail.example.com", true },
	{ "dot_entry_swapped_tld", "example.io", true },
	{ "two_letter_suffix_pair", "shop.com.au", true },
	{ "same_org_subdomain", "mail.example.org", false },
	{ "unrelated", "evil.test", false },
	{ "two_edits", "exmapel.org", false },
	{ "typo_other_suffix", "exbmple.com", false },
	{ "short_name_no_edit", "ac.org", false },
	{ "short_name_skeleton", "a8.org", false },
	{ "no_registrable", "org", false },
};

/* lookalike_table - each domain against the local set. */
static void
lookalike_table(void **state)
{
	struct spoof_conf *sc = spoof_conf_new();
	int failed = 0;
	(void)state;
	assert_non_null(sc);
	assert_int_equal(spoof_conf_add_local(sc, "example.org"), 0);
	assert_int_equal(spoof_conf_add_local(sc, ".example.net"), 0);
	assert_int_equal(spoof_conf_add_local(sc, "shop.co.uk"), 0);
	assert_int_equal(spoof_conf_add_local(sc, "ab.org"), 0);
	for (size_t i = 0; i < sizeof looks / sizeof looks[0]; i++) {
		char which[256] = "";
		bool got = spoof_lookalike(sc, looks[i].domain, which, sizeof which);
		if (got != looks[i].want) {
			fprintf(stderr, "case %s: [%s] got %d (%s), want %d\n", looks[i].name, looks[i].domain,
				got, which, looks[i].want);
			failed++;
		}
	}
	spoof_conf_free(sc);
	spoof_conf_free(NULL);
	assert_int_equal(failed, 0);
}

/* Display names, with the protected names file written below. */
static const struct {
	const char *name, *display, *from;
	bool want;
} names[] = {
	{ "address_other_domain", "ceo@example.org", "evil.test", true },
	{ "address_in_words", "Jane (jane@example.org) via", "evil.test", true },
	{ "address_same_domain", "jane@example.org", "example.org", false },
	{ "address_same_domain_case", "Jane@Example.ORG", "example.org", false },
	{ "not_an_address", "Jane @ home", "evil.test", false },
	{ "no_dot_domain", "user@localhost", "evil.test", false },
	{ "plain_name", "John Smith", "evil.test", false },
	{ "protected_quoted_substring", "Mr. JANE DOE", "evil.test", true },
	{ "protected_from_allowed", "Jane Doe", "example.org", false },
	{ "protected_second_domain", "Jane Doe", "example.net", false },
	{ "protected_regex", "The CEO", "evil.test", true },
	{ "regex_word_boundary", "ceoffice", "evil.test", false },
	{ "regex_subdomain_allowed", "CEO", "mail.example.org", true },
	{ "protected_bare_word", "payroll team", "evil.test", true },
	{ "bare_word_dot_entry", "Payroll", "hr.example.org", false },
	{ "empty", "", "evil.test", false },
};

/* display_name_table - each display name and From: domain. */
static void
display_name_table(void **state)
{
	char path[] = "/tmp/test_check_spoof_XXXXXX", err[256];
	int fd = mkstemp(path);
	int failed = 0;
	(void)state;
	assert_true(fd >= 0);
	const char *text = "# protected names\n"
			   "\"Jane Doe\"   example.org,example.net\n"
			   "/\\bceo\\b/     example.org\n"
			   "\n"
			   "payroll       .example.org\n";
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	struct spoof_conf *sc = spoof_conf_new();
	assert_int_equal(spoof_conf_load_names(sc, path, err, sizeof err), 0);
	assert_int_equal(spoof_conf_names_count(sc), 3);
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		char why[256] = "";
		bool got = spoof_display_name(sc, names[i].display, names[i].from, why, sizeof why);
		if (got != names[i].want) {
			fprintf(stderr, "case %s: [%s] from %s got %d (%s), want %d\n", names[i].name,
				names[i].display, names[i].from, got, why, names[i].want);
			failed++;
		}
	}
	spoof_conf_free(sc);
	unlink(path);
	assert_int_equal(failed, 0);
}

/* Bad lines in a protected names file, one row per error. */
static const struct {
	const char *name, *text, *err;
} bad[] = {
	{ "no_domain", "Jane\n", "1: expected PATTERN domain[,domain...]" },
	{ "bad_regex", "# c\n/(/ example.org\n", "2: bad regular expression" },
	{ "unterminated_quote", "\"Jane example.org\n", "1: unterminated quoted name" },
	{ "two_lists", "Jane a.org b.org\n", "1: expected one comma-separated domain list after the pattern" },
};

/* bad_names_table - each bad file is refused with its line number. */
static void
bad_names_table(void **state)
{
	int failed = 0;
	(void)state;
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		char path[] = "/tmp/test_check_spoof_XXXXXX", err[256] = "";
		int fd = mkstemp(path);
		assert_true(fd >= 0);
		assert_int_equal(write(fd, bad[i].text, strlen(bad[i].text)), (ssize_t)strlen(bad[i].text));
		close(fd);
		struct spoof_conf *sc = spoof_conf_new();
		int rc = spoof_conf_load_names(sc, path, err, sizeof err);
		if (rc != -1 || strcmp(err, bad[i].err) != 0) {
			fprintf(stderr, "case %s: rc %d err [%s], want [%s]\n", bad[i].name, rc, err, bad[i].err);
			failed++;
		}
		spoof_conf_free(sc);
		unlink(path);
	}
	assert_int_equal(failed, 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(punycode_table),    cmocka_unit_test(skeleton_table),
		cmocka_unit_test(edit_distance_table), cmocka_unit_test(split_table),
		cmocka_unit_test(lookalike_table),   cmocka_unit_test(display_name_table),
		cmocka_unit_test(bad_names_table),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
