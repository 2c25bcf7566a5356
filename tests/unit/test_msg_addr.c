/*
 * test_msg_addr.c - unit tests for msg_addr.c, the From:/Sender:
 * address-list parser: display names, quoted strings holding commas and
 * '@', comments, groups, obsolete forms (spacing, routes, empty list
 * elements) and invalid values. One row per case; a failing row prints
 * its name, what it got and what it wanted.
 */

/* System. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* Libraries. */
#include <cmocka.h>

/* Project. */
#include "msg_addr.h"

/* One header value and what msg_addr_parse() must make of it. */
struct addr_case {
	const char *name;
	const char *value;
	int count;			/* return value: mailboxes, or -1 */
	const char *addr[3];		/* the first mailboxes' addresses */
	const char *domain[3];
	const char *display[3];
};

static const struct addr_case cases[] = {
	/* Plain forms. */
	{ "bare", "alice@example.org", 1,
	  { "alice@example.org" }, { "example.org" }, { "" } },
	{ "leading_space", " \talice@example.org ", 1,
	  { "alice@example.org" }, { "example.org" }, { "" } },
	{ "angle_only", "<alice@example.org>", 1,
	  { "alice@example.org" }, { "example.org" }, { "" } },
	{ "display_name", "Alice Smith <alice@example.org>", 1,
	  { "alice@example.org" }, { "example.org" }, { "Alice Smith" } },
	{ "domain_lowercased_local_kept", "Bob <Bob.Jones@Example.ORG>", 1,
	  { "Bob.Jones@example.org" }, { "example.org" }, { "Bob" } },
	{ "folded", "Alice\r\n Smith\r\n\t<alice@example.org>", 1,
	  { "alice@example.org" }, { "example.org" }, { "Alice Smith" } },
	/* Quoted strings. */
	{ "quoted_name_with_comma", "\"Doe, John\" <john@example.org>", 1,
	  { "john@example.org" }, { "example.org" }, { "Doe, John" } },
	{ "quoted_name_with_at", "\"ceo@example.org\" <evil@attacker.example>", 1,
	  { "evil@attacker.example" }, { "attacker.example" }, { "ceo@example.org" } },
	{ "quoted_name_with_angle", "\"<x@y.example>\" <real@example.net>", 1,
	  { "real@example.net" }, { "example.net" }, { "<x@y.example>" } },
	{ "quoted_name_escaped_quote", "\"John \\\"JD\\\" Doe\" <jd@example.org>", 1,
	  { "jd@example.org" }, { "example.org" }, { "John \"JD\" Doe" } },
	{ "quoted_local_part_with_space", "\"john doe\"@example.org", 1,
	  { "\"john doe\"@example.org" }, { "example.org" }, { "" } },
	{ "quoted_local_part_with_at", "<\"a@b\"@Example.org>", 1,
	  { "\"a@b\"@example.org" }, { "example.org" }, { "" } },
	{ "quoted_local_part_escape", "\"a\\\"b\"@example.org", 1,
	  { "\"a\\\"b\"@example.org" }, { "example.org" }, { "" } },
	/* Comments. */
	{ "trailing_comment", "alice@example.org (Alice Smith)", 1,
	  { "alice@example.org" }, { "example.org" }, { "" } },
	{ "comment_before_name", "(work) Alice <alice@example.org>", 1,
	  { "alice@example.org" }, { "example.org" }, { "Alice" } },
	{ "nested_comment_with_at_and_comma", "a@example.org (x (y@z, w) v)", 1,
	  { "a@example.org" }, { "example.org" }, { "" } },
	{ "comment_in_angle", "<alice@example.org (c)>", 1,
	  { "alice@example.org" }, { "example.org" }, { "" } },
	{ "comment_escaped_paren", "a@example.org (smile \\) still comment)", 1,
	  { "a@example.org" }, { "example.org" }, { "" } },
	/* Lists. */
	{ "two_mailboxes", "a@example.org, Bob <b@example.net>", 2,
	  { "a@example.org", "b@example.net" }, { "example.org", "example.net" }, { "", "Bob" } },
	{ "three_mailboxes_counted_beyond_max", "a@x.example, b@y.example, c@z.example", 3,
	  { "a@x.example", "b@y.example" }, { "x.example", "y.example" }, { "", "" } },
	{ "quoted_comma_is_one", "\"a, b\" <a@x.example>", 1,
	  { "a@x.example" }, { "x.example" }, { "a, b" } },
	/* Groups. */
	{ "group_two", "friends: a@x.example, Bob <b@y.example>;", 2,
	  { "a@x.example", "b@y.example" }, { "x.example", "y.example" }, { "", "Bob" } },
	{ "empty_group", "undisclosed-recipients:;", 0, { 0 }, { 0 }, { 0 } },
	{ "group_then_mailbox", "g: a@x.example; c@z.example", 2,
	  { "a@x.example", "c@z.example" }, { "x.example", "z.example" }, { "", "" } },
	/* Obsolete forms (RFC 5322 section 4). */
	{ "obs_spaces_around_at_and_dots", "john . doe @ example . org", 1,
	  { "john.doe@example.org" }, { "example.org" }, { "" } },
	{ "obs_spaces_in_angle", "John <john @ example.org>", 1,
	  { "john@example.org" }, { "example.org" }, { "John" } },
	{ "obs_route", "<@relay.example,@b.example:user@Example.org>", 1,
	  { "user@example.org" }, { "example.org" }, { "" } },
	{ "obs_empty_elements", "a@x.example,, ,b@y.example,", 2,
	  { "a@x.example", "b@y.example" }, { "x.example", "y.example" }, { "", "" } },
	{ "obs_unquoted_dot_in_name", "John Q. Public <jqp@example.org>", 1,
	  { "jqp@example.org" }, { "example.org" }, { "John Q. Public" } },
	{ "empty_value", "", 0, { 0 }, { 0 }, { 0 } },
	{ "only_spaces", "   ", 0, { 0 }, { 0 }, { 0 } },
	/* Invalid. */
	{ "no_at", "alice", -1, { 0 }, { 0 }, { 0 } },
	{ "no_at_with_name", "Alice <alice>", -1, { 0 }, { 0 }, { 0 } },
	{ "empty_local", "@example.org", -1, { 0 }, { 0 }, { 0 } },
	{ "empty_domain", "alice@", -1, { 0 }, { 0 }, { 0 } },
	{ "two_ats", "a@b@example.org", -1, { 0 }, { 0 }, { 0 } },
	{ "space_in_local", "john doe@example.org", -1, { 0 }, { 0 }, { 0 } },
	{ "empty_angle", "Alice <>", -1, { 0 }, { 0 }, { 0 } },
	{ "unclosed_angle", "Alice <alice@example.org", -1, { 0 }, { 0 }, { 0 } },
	{ "stray_close_angle", "alice@example.org>", -1, { 0 }, { 0 }, { 0 } },
	{ "two_angles", "A <a@x.example> <b@y.example>", -1, { 0 }, { 0 }, { 0 } },
	{ "nested_angle", "<<a@x.example>>", -1, { 0 }, { 0 }, { 0 } },
	{ "unterminated_quote", "\"Alice <alice@example.org>", -1, { 0 }, { 0 }, { 0 } },
	{ "unterminated_comment", "alice@example.org (oops", -1, { 0 }, { 0 }, { 0 } },
	{ "route_without_colon", "<@relay.example>", -1, { 0 }, { 0 }, { 0 } },
	{ "second_bad_element", "a@x.example, bogus", -1, { 0 }, { 0 }, { 0 } },
};

/* check_case - run one row; prints and returns false when it fails. */
static bool
check_case(const struct addr_case *c)
{
	struct msg_addr out[2];
	int n;

	memset(out, 0x5a, sizeof out);
	n = msg_addr_parse(c->value, strlen(c->value), out, 2);
	if (n != c->count) {
		fprintf(stderr, "case %s: [%s] returned %d, want %d\n", c->name, c->value, n,
			c->count);
		return false;
	}
	for (int i = 0; i < n && i < 2; i++) {
		if (strcmp(out[i].addr, c->addr[i]) != 0 || strcmp(out[i].domain, c->domain[i]) != 0 ||
		    strcmp(out[i].name, c->display[i]) != 0) {
			fprintf(stderr, "case %s: mailbox %d got addr=[%s] domain=[%s] name=[%s], "
				"want [%s] [%s] [%s]\n", c->name, i, out[i].addr, out[i].domain,
				out[i].name, c->addr[i], c->domain[i], c->display[i]);
			return false;
		}
	}
	return true;
}

/* msg_addr_table - every row of the table. */
static void
msg_addr_table(void **state)
{
	int failed = 0;

	(void)state;
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
		if (!check_case(&cases[i]))
			failed++;
	assert_int_equal(failed, 0);
}

/* msg_addr_limits - lengths: too-long addresses and values are errors,
 * never cut into a different address; a long display name is cut. */
static void
msg_addr_limits(void **state)
{
	struct msg_addr out[1];
	char buf[5000];
	int n;

	(void)state;
	/* Local part + domain over MSG_ADDR_MAX inside angle brackets. */
	n = snprintf(buf, sizeof buf, "<%0100d@%0250d.example>", 0, 0);
	assert_int_equal(msg_addr_parse(buf, (size_t)n, out, 1), -1);
	/* Domain over 255. */
	n = snprintf(buf, sizeof buf, "a@%0260d.example", 0);
	assert_int_equal(msg_addr_parse(buf, (size_t)n, out, 1), -1);
	/* A value longer than the parser takes at all. */
	memset(buf, 'a', 4200);
	memcpy(buf + 4100, "@example.org", 12);
	assert_int_equal(msg_addr_parse(buf, 4200, out, 1), -1);
	/* A long display name is kept short, the address intact. */
	memset(buf, 'N', 1000);
	n = 1000 + snprintf(buf + 1000, sizeof buf - 1000, " <n@example.org>");
	assert_int_equal(msg_addr_parse(buf, (size_t)n, out, 1), 1);
	assert_string_equal(out[0].addr, "n@example.org");
	assert_int_equal(strlen(out[0].name), MSG_ADDR_MAX - 1);
	/* Just under the limit still parses. */
	n = snprintf(buf, sizeof buf, "<%064d@%0200d.example>", 0, 0);
	assert_int_equal(msg_addr_parse(buf, (size_t)n, out, 1), 1);
	assert_int_equal(strlen(out[0].addr), (size_t)n - 2);
}

/* msg_addr_not_nul_terminated - the value is read within len only. */
static void
msg_addr_not_nul_terminated(void **state)
{
	struct msg_addr out[2];
	const char v[] = "a@x.example, b@y.exampleGARBAGE";

	(void)state;
	assert_int_equal(msg_addr_parse(v, strlen("a@x.example, b@y.example"), out, 2), 2);
	assert_string_equal(out[1].addr, "b@y.example");
	assert_int_equal(msg_addr_parse(v, 0, out, 2), 0);
	/* max 0: only counted. */
	assert_int_equal(msg_addr_parse(v, strlen(v), NULL, 0), 2);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(msg_addr_table),
		cmocka_unit_test(msg_addr_limits),
		cmocka_unit_test(msg_addr_not_nul_terminated),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
