/*
 * test_lists.c - unit tests for lists.c: network sets (IPv4, IPv6, mapped
 * IPv6, prefix lengths, large lists), case-insensitive string sets with
 * domain matching, and lists_load_file().
 */

/* System. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

/* Libraries. */
#include <cmocka.h>

/* Project. */
#include "lists.h"

/* One address lookup against a fixed set of networks. */
struct net_case {
	const char *ip;
	bool expect;
};

static const char *const nets[] = {
	"192.0.2.0/24", "198.51.100.7", "10.0.0.0/8", "2001:db8::/32",
	"2001:db8:ffff::1/128", "::ffff:203.0.113.0/120", "172.16.5.9/16",
};

static const struct net_case net_cases[] = {
	{ "192.0.2.0", true },
	{ "192.0.2.255", true },
	{ "192.0.3.0", false },
	{ "198.51.100.7", true },
	{ "198.51.100.8", false },
	{ "10.255.255.255", true },
	{ "11.0.0.0", false },
	{ "2001:db8::1", true },
	{ "2001:DB8:1234::", true },
	{ "2001:db9::1", false },
	{ "::ffff:192.0.2.77", true },	/* mapped IPv6 matches as IPv4 */
	{ "::ffff:11.0.0.1", false },
	{ "203.0.113.200", true },	/* mapped network was stored as IPv4 /24 */
	{ "203.0.114.1", false },
	{ "172.16.200.1", true },	/* host bits of 172.16.5.9/16 are cleared */
	{ "172.17.0.1", false },
	{ "not-an-ip", false },
	{ "", false },
	{ "192.0.2.1/32", false },
};

/* netset_matches_table - every row of net_cases. */
static void
netset_matches_table(void **state)
{
	struct lists_netset *set = lists_netset_new();

	for (size_t i = 0; i < sizeof(nets) / sizeof(nets[0]); i++)
		assert_int_equal(lists_netset_add(set, nets[i]), 0);
	for (size_t i = 0; i < sizeof(net_cases) / sizeof(net_cases[0]); i++) {
		bool got = lists_netset_match_str(set, net_cases[i].ip);

		if (got != net_cases[i].expect)
			fail_msg("row %zu: %s: got %d, want %d", i, net_cases[i].ip, got,
				 net_cases[i].expect);
	}
	assert_int_equal(lists_netset_count(set), sizeof(nets) / sizeof(nets[0]));
	lists_netset_free(set);
}

/* netset_rejects_bad_syntax - malformed networks are refused. */
static void
netset_rejects_bad_syntax(void **state)
{
	static const char *const bad[] = {
		"", "/24", "192.0.2.0/", "192.0.2.0/33", "2001:db8::/129", "192.0.2.0/-1",
		"192.0.2.0/2x", "example.org", "192.0.2", "1.2.3.4/0024", "::1/ 8",
	};
	struct lists_netset *set = lists_netset_new();

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (lists_netset_add(set, bad[i]) != -1)
			fail_msg("row %zu: \"%s\" accepted", i, bad[i]);
	assert_int_equal(lists_netset_count(set), 0);
	lists_netset_free(set);
}

/* netset_sockaddr_and_zero_prefix - sockaddr API and /0 networks. */
static void
netset_sockaddr_and_zero_prefix(void **state)
{
	struct lists_netset *set = lists_netset_new();
	struct sockaddr_in6 s6 = { .sin6_family = AF_INET6 };
	struct sockaddr_in s4 = { .sin_family = AF_INET };

	inet_pton(AF_INET6, "::ffff:192.0.2.1", &s6.sin6_addr);
	inet_pton(AF_INET, "192.0.2.1", &s4.sin_addr);
	assert_false(lists_netset_match(set, (struct sockaddr *)&s4));
	assert_int_equal(lists_netset_add(set, "0.0.0.0/0"), 0);
	assert_true(lists_netset_match(set, (struct sockaddr *)&s4));
	assert_true(lists_netset_match(set, (struct sockaddr *)&s6));
	assert_false(lists_netset_match_str(set, "2001:db8::1"));
	assert_int_equal(lists_netset_add(set, "::/0"), 0);
	assert_true(lists_netset_match_str(set, "2001:db8::1"));
	/* Adding after a lookup re-sorts on the next lookup. */
	assert_int_equal(lists_netset_add(set, "0.0.0.0/0"), 0);
	assert_int_equal(lists_netset_count(set), 2);
	assert_false(lists_netset_match(NULL, (struct sockaddr *)&s4));
	lists_netset_free(set);
	lists_netset_free(NULL);
}

/* netset_large_list - 100,000 IPv4 /32s and 100,000 IPv6 /64s, looked up after building. */
static void
netset_large_list(void **state)
{
	struct lists_netset *set = lists_netset_new();
	char buf[64];

	for (unsigned i = 0; i < 100000; i++) {
		snprintf(buf, sizeof(buf), "10.%u.%u.%u", (i >> 16) & 255, (i >> 8) & 255, i & 255);
		assert_int_equal(lists_netset_add(set, buf), 0);
		snprintf(buf, sizeof(buf), "2001:db8:%x:%x::/64", i >> 16, i & 0xffff);
		assert_int_equal(lists_netset_add(set, buf), 0);
	}
	assert_int_equal(lists_netset_count(set), 200000);
	assert_true(lists_netset_match_str(set, "10.1.134.159"));	/* i = 99999 */
	assert_false(lists_netset_match_str(set, "10.1.134.160"));
	assert_true(lists_netset_match_str(set, "2001:db8:1:869f::5"));
	assert_false(lists_netset_match_str(set, "2001:db8:1:86a0::1"));
	lists_netset_free(set);
}

/* One lookup against its own small set: edge cases of prefix lengths,
 * mapped addresses, nesting and adjacency (networks are merged into ranges). */
struct edge_case {
	const char *name;
	const char *nets; /* space-separated */
	const char *ip;
	bool expect;
	size_t count; /* distinct networks */
};

static const struct edge_case edge_cases[] = {
	{ "v4 /0 matches all v4", "0.0.0.0/0", "255.255.255.255", true, 1 },
	{ "v4 /0 matches mapped", "0.0.0.0/0", "::ffff:0.0.0.0", true, 1 },
	{ "v4 /0 not v6", "0.0.0.0/0", "::", false, 1 },
	{ "v6 /0 matches v6", "::/0", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true, 1 },
	{ "v6 /0 not v4", "::/0", "192.0.2.1", false, 1 },
	{ "v6 /0 not mapped", "::/0", "::ffff:192.0.2.1", false, 1 },
	{ "v4 /32 exact", "192.0.2.1/32", "192.0.2.1", true, 1 },
	{ "v4 /32 next", "192.0.2.1/32", "192.0.2.2", false, 1 },
	{ "v4 /32 previous", "192.0.2.1/32", "192.0.2.0", false, 1 },
	{ "v4 top address", "255.255.255.255/32", "255.255.255.255", true, 1 },
	{ "v4 bottom address", "0.0.0.0/32", "0.0.0.0", true, 1 },
	{ "v4 bottom not next", "0.0.0.0/32", "0.0.0.1", false, 1 },
	{ "v6 /128 exact", "2001:db8::1/128", "2001:db8::1", true, 1 },
	{ "v6 /128 next", "2001:db8::1/128", "2001:db8::2", false, 1 },
	{ "v6 top address", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128",
	  "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true, 1 },
	{ "v6 :: exact", "::/128", "::", true, 1 },
	{ "v6 :: not ::1", "::/128", "::1", false, 1 },
	{ "mapped /96 is v4 /0", "::ffff:0:0/96", "203.0.113.9", true, 1 },
	{ "mapped /96 not v6", "::ffff:0:0/96", "2001:db8::1", false, 1 },
	{ "mapped /128 is v4 /32", "::ffff:192.0.2.5/128", "192.0.2.5", true, 1 },
	{ "mapped /128 via mapped", "::ffff:192.0.2.5", "::ffff:192.0.2.5", true, 1 },
	{ "mapped /128 neighbour", "::ffff:192.0.2.5", "192.0.2.6", false, 1 },
	{ "mapped /95 stays v6", "::ffff:0:0/95", "192.0.2.1", false, 1 },
	{ "mapped /95 matches v6", "::ffff:0:0/95", "::fffe:0:1", true, 1 },
	{ "v4 and mapped same net", "192.0.2.0/24 ::ffff:192.0.2.0/120", "192.0.2.9", true, 1 },
	{ "v4 host bits cleared", "192.0.2.77/24", "192.0.2.1", true, 1 },
	{ "v4 host bits dedupe", "192.0.2.77/24 192.0.2.0/24", "192.0.3.0", false, 1 },
	{ "v6 host bits cleared", "2001:db8::ffff/112", "2001:db8::1", true, 1 },
	{ "mapped host bits cleared", "::ffff:192.0.2.77/120", "192.0.2.200", true, 1 },
	{ "nested: inner hit", "10.0.0.0/8 10.1.2.0/24", "10.1.2.3", true, 2 },
	{ "nested: outer hit", "10.1.2.0/24 10.0.0.0/8", "10.200.0.1", true, 2 },
	{ "nested: outside", "10.0.0.0/8 10.1.2.0/24", "11.0.0.0", false, 2 },
	{ "adjacent: end of first", "192.0.2.0/25 192.0.2.128/25", "192.0.2.127", true, 2 },
	{ "adjacent: start of second", "192.0.2.0/25 192.0.2.128/25", "192.0.2.128", true, 2 },
	{ "adjacent: after both", "192.0.2.0/25 192.0.2.128/25", "192.0.3.0", false, 2 },
	{ "gap between", "192.0.2.1 192.0.2.3", "192.0.2.2", false, 2 },
	{ "gap below", "192.0.2.1 192.0.2.3", "192.0.2.0", false, 2 },
	{ "gap above", "192.0.2.1 192.0.2.3", "192.0.2.4", false, 2 },
	{ "v6 nested in /0", "::/0 2001:db8::/32", "::1", true, 2 },
	{ "v6 adjacent /64s", "2001:db8:0:1::/64 2001:db8:0:2::/64", "2001:db8:0:2:ffff::", true,
	  2 },
	{ "v6 gap", "2001:db8:0:1::/64 2001:db8:0:3::/64", "2001:db8:0:2::1", false, 2 },
	{ "v4 top and v6 low", "255.255.255.255 ::", "::", true, 2 },
	{ "both families one each", "192.0.2.0/24 2001:db8::/32", "2001:db8:ffff::", true, 2 },
};

/* netset_edges - every row of edge_cases, each on a fresh set. */
static void
netset_edges(void **state)
{
	for (size_t i = 0; i < sizeof(edge_cases) / sizeof(edge_cases[0]); i++) {
		const struct edge_case *c = &edge_cases[i];
		struct lists_netset *set = lists_netset_new();
		char buf[256], *save = NULL;
		bool got;

		snprintf(buf, sizeof(buf), "%s", c->nets);
		for (char *w = strtok_r(buf, " ", &save); w; w = strtok_r(NULL, " ", &save))
			if (lists_netset_add(set, w) != 0)
				fail_msg("row %s: cannot add %s", c->name, w);
		got = lists_netset_match_str(set, c->ip);
		if (got != c->expect || lists_netset_count(set) != c->count)
			fail_msg("row %s: %s in {%s}: got %d count %zu, want %d count %zu", c->name,
				 c->ip, c->nets, got, lists_netset_count(set), c->expect, c->count);
		lists_netset_free(set);
	}
}

/* One lists_parse_cidr() case: family, masked address and length. */
struct cidr_case {
	const char *cidr;
	int family;
	const char *addr; /* canonical text of the masked address */
	unsigned plen;
};

static const struct cidr_case cidr_cases[] = {
	{ "192.0.2.77/24", AF_INET, "192.0.2.0", 24 },
	{ "192.0.2.77", AF_INET, "192.0.2.77", 32 },
	{ "192.0.2.77/0", AF_INET, "0.0.0.0", 0 },
	{ "::ffff:192.0.2.77/120", AF_INET, "192.0.2.0", 24 },
	{ "::ffff:192.0.2.77", AF_INET, "192.0.2.77", 32 },
	{ "::ffff:192.0.2.77/96", AF_INET, "0.0.0.0", 0 },
	{ "::ffff:192.0.2.77/95", AF_INET6, "::fffe:0:0", 95 },
	{ "2001:db8::ffff/112", AF_INET6, "2001:db8::", 112 },
	{ "2001:db8::1", AF_INET6, "2001:db8::1", 128 },
	{ "ffff::1/0", AF_INET6, "::", 0 },
	{ "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/127", AF_INET6,
	  "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", 127 },
};

/* parse_cidr_table - every row of cidr_cases. */
static void
parse_cidr_table(void **state)
{
	for (size_t i = 0; i < sizeof(cidr_cases) / sizeof(cidr_cases[0]); i++) {
		const struct cidr_case *c = &cidr_cases[i];
		unsigned char addr[16];
		char text[INET6_ADDRSTRLEN];
		unsigned plen;
		int family;

		if (lists_parse_cidr(c->cidr, &family, addr, &plen) != 0)
			fail_msg("row %s: refused", c->cidr);
		inet_ntop(family, addr, text, sizeof(text));
		if (family != c->family || plen != c->plen || strcmp(text, c->addr) != 0)
			fail_msg("row %s: family %d %s/%u, want %d %s/%u", c->cidr, family, text,
				 plen, c->family, c->addr, c->plen);
	}
}

/* One string lookup: exact membership and domain matching. */
struct str_case {
	const char *s;
	bool has, domain;
};

static const char *const strs[] = {
	"Example.ORG", ".example.net", "user@Example.com", "xn--bcher-kva.example",
};

static const struct str_case str_cases[] = {
	{ "example.org", true, true },
	{ "EXAMPLE.org", true, true },
	{ "example.org.", false, true },	/* absolute form matches as a domain */
	{ "sub.example.org", false, false },	/* exact entry: no subdomains */
	{ "example.net", false, false },	/* dot entry: subdomains only */
	{ "a.example.net", false, true },
	{ "a.b.EXAMPLE.net", false, true },
	{ ".example.net", true, true },
	{ "notexample.net", false, false },
	{ "USER@example.COM", true, true },	/* exact entry */
	{ "other@example.com", false, false },
	{ "xn--bcher-kva.example", true, true },
	{ "", false, false },
	{ ".", false, false },
};

/* strset_table - every row of str_cases. */
static void
strset_table(void **state)
{
	struct lists_strset *set = lists_strset_new();

	for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++)
		assert_int_equal(lists_strset_add(set, strs[i]), 0);
	assert_int_equal(lists_strset_add(set, "example.org"), 0);	/* duplicate */
	assert_int_equal(lists_strset_add(set, ""), -1);
	assert_int_equal(lists_strset_count(set), 4);
	for (size_t i = 0; i < sizeof(str_cases) / sizeof(str_cases[0]); i++) {
		const struct str_case *c = &str_cases[i];
		bool has = lists_strset_has(set, c->s);
		bool dom = lists_strset_match_domain(set, c->s);

		if (has != c->has || dom != c->domain)
			fail_msg("row %zu: \"%s\": has %d/%d domain %d/%d", i, c->s, has, c->has,
				 dom, c->domain);
	}
	lists_strset_free(set);
	lists_strset_free(NULL);
}

/* strset_grows - many entries survive rehashing. */
static void
strset_grows(void **state)
{
	struct lists_strset *set = lists_strset_new();
	char buf[64];

	for (unsigned i = 0; i < 50000; i++) {
		snprintf(buf, sizeof(buf), "Host%u.Example.org", i);
		assert_int_equal(lists_strset_add(set, buf), 0);
	}
	assert_int_equal(lists_strset_count(set), 50000);
	for (unsigned i = 0; i < 50000; i += 997) {
		snprintf(buf, sizeof(buf), "host%u.example.ORG", i);
		if (!lists_strset_has(set, buf))
			fail_msg("lost %s", buf);
	}
	assert_false(lists_strset_has(set, "host50000.example.org"));
	lists_strset_free(set);
}

/* write_tmp - write text to a fresh temporary file; returns its path. */
static char *
write_tmp(const char *text)
{
	char *path = strdup("/tmp/test_lists.XXXXXX");
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return path;
}

/* One lists_load_file() case. */
struct load_case {
	const char *name;
	const char *text;
	bool with_strs, with_nets;
	int rc;
	const char *err;	/* prefix of the error text */
	size_t nstrs, nnets;
};

static const struct load_case load_cases[] = {
	{ "mixed", "# blocked\n192.0.2.0/24 example.org\n\n  spam.example  # trailing\n2001:db8::1\n",
	  true, true, 0, "", 2, 2 },
	{ "nets_only_bad_word", "192.0.2.1\n10.0.0.0/8\nbogus\n", false, true, -1, "3: not an address",
	  0, 2 },
	{ "strs_only_keeps_ips_as_strings", "192.0.2.1\nexample.org\n", true, false, 0, "", 2, 0 },
	{ "crlf_lines", "a.example\r\nb.example\r\n", true, true, 0, "", 2, 0 },
	{ "empty", "", true, true, 0, "", 0, 0 },
};

/* load_file_table - every row of load_cases. */
static void
load_file_table(void **state)
{
	for (size_t i = 0; i < sizeof(load_cases) / sizeof(load_cases[0]); i++) {
		const struct load_case *c = &load_cases[i];
		char *path = write_tmp(c->text);
		struct lists_strset *s = c->with_strs ? lists_strset_new() : NULL;
		struct lists_netset *n = c->with_nets ? lists_netset_new() : NULL;
		char err[256];
		int rc = lists_load_file(path, s, n, err, sizeof(err));

		if (rc != c->rc || strncmp(err, c->err, strlen(c->err)) != 0 ||
		    lists_strset_count(s) != c->nstrs || lists_netset_count(n) != c->nnets)
			fail_msg("row %s: rc %d err \"%s\" strs %zu nets %zu", c->name, rc, err,
				 lists_strset_count(s), lists_netset_count(n));
		lists_strset_free(s);
		lists_netset_free(n);
		unlink(path);
		free(path);
	}
}

/* load_file_missing - a missing file reports the errno text. */
static void
load_file_missing(void **state)
{
	char err[256];
	struct lists_strset *s = lists_strset_new();

	assert_int_equal(lists_load_file("/nonexistent/x", s, NULL, err, sizeof(err)), -1);
	assert_string_equal(err, "No such file or directory");
	lists_strset_free(s);
}

/* parse_ip_table - address parsing and IPv4-mapped conversion. */
static void
parse_ip_table(void **state)
{
	static const struct {
		const char *s;
		int rc, family;
	} rows[] = {
		{ "192.0.2.1", 0, AF_INET },	 { "::ffff:192.0.2.1", 0, AF_INET },
		{ "2001:db8::1", 0, AF_INET6 }, { "::1", 0, AF_INET6 },
		{ "192.0.2.256", -1, 0 },	 { "[192.0.2.1]", -1, 0 },
		{ "192.0.2.1/32", -1, 0 },	 { "", -1, 0 },
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct sockaddr_storage ss;
		int rc = lists_parse_ip(rows[i].s, &ss);

		if (rc != rows[i].rc || (rc == 0 && ss.ss_family != rows[i].family))
			fail_msg("row %zu: %s", i, rows[i].s);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(netset_matches_table),
		cmocka_unit_test(netset_rejects_bad_syntax),
		cmocka_unit_test(netset_sockaddr_and_zero_prefix),
		cmocka_unit_test(netset_large_list),
		cmocka_unit_test(netset_edges),
		cmocka_unit_test(parse_cidr_table),
		cmocka_unit_test(strset_table),
		cmocka_unit_test(strset_grows),
		cmocka_unit_test(load_file_table),
		cmocka_unit_test(load_file_missing),
		cmocka_unit_test(parse_ip_table),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
