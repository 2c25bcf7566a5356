/*
 * test_proxyproto.c - unit tests for the PROXY protocol parser and writer.
 *
 * One row per case. Every parser row is also fed byte by byte: each prefix
 * shorter than "at" must answer NEED_MORE, and every longer one the row's
 * final verdict (the same result for DONE), which checks resumability and
 * that garbage is refused at the first byte that gives it away.
 */

/* System. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

/* Libraries. */
#include <cmocka.h>

/* Project. */
#include "proxyproto.h"

/* A literal and its length (binary v2 headers hold NUL bytes). */
#define IN(s) s, sizeof(s) - 1
/* The length of a literal: "refused once this much has arrived". */
#define AT(s) (sizeof(s) - 1)

/* v2 signature, then version/command and family bytes. */
#define SIG "\r\n\r\n\0\r\nQUIT\n"
/* v2 TCP4 addresses 192.0.2.1:12345 -> 198.51.100.7:25. */
#define V2A4 "\xc0\x00\x02\x01" "\xc6\x33\x64\x07" "\x30\x39" "\x00\x19"
/* v2 TCP6 addresses [2001:db8::1]:54321 -> [2001:db8::25]:25. */
#define V2A6 "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x01" \
	     "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x25" "\xd4\x31" "\x00\x19"

#define V1A4 "PROXY TCP4 192.0.2.1 198.51.100.7 12345 25"

struct parse_case {
	const char *name;
	const char *in;
	size_t inlen;
	enum proxyproto_status st;
	size_t at; /* DONE: bytes consumed; ERROR: shortest refused prefix */
	int local;
	const char *src; /* expected addresses (NULL when local) */
	int sport;
	const char *dst;
	int dport;
	const char *why; /* substring of the ERROR reason */
};

/* Inputs too long to write as literals, filled in by main(). */
static char v2_unix[16 + 216 + 8];
static char v2_max[PROXYPROTO_V2_MAX + 4];
static char v1_unknown_max[PROXYPROTO_V1_MAX + 4];
static char v1_unknown_over[PROXYPROTO_V1_MAX + 4];

static const struct parse_case parse_cases[] = {
	/* v1, valid */
	{ "v1_tcp4", IN(V1A4 "\r\n"), PROXYPROTO_DONE, AT(V1A4 "\r\n"), 0,
	  "192.0.2.1", 12345, "198.51.100.7", 25, NULL },
	{ "v1_tcp4_trailing_smtp_not_consumed", IN(V1A4 "\r\nEHLO client.example\r\n"),
	  PROXYPROTO_DONE, AT(V1A4 "\r\n"), 0, "192.0.2.1", 12345, "198.51.100.7", 25, NULL },
	{ "v1_tcp4_extremes", IN("PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n"),
	  PROXYPROTO_DONE, AT("PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n"), 0, "0.0.0.0", 0,
	  "255.255.255.255", 65535, NULL },
	{ "v1_tcp6", IN("PROXY TCP6 2001:db8::1 2001:db8::25 54321 25\r\n"), PROXYPROTO_DONE,
	  AT("PROXY TCP6 2001:db8::1 2001:db8::25 54321 25\r\n"), 0, "2001:db8::1", 54321,
	  "2001:db8::25", 25, NULL },
	{ "v1_tcp6_uppercase_hex", IN("PROXY TCP6 2001:DB8::A 2001:db8::25 1 25\r\n"),
	  PROXYPROTO_DONE, AT("PROXY TCP6 2001:DB8::A 2001:db8::25 1 25\r\n"), 0, "2001:db8::a", 1,
	  "2001:db8::25", 25, NULL },
	{ "v1_tcp6_mapped_becomes_ipv4", IN("PROXY TCP6 ::ffff:192.0.2.1 2001:db8::25 1025 25\r\n"),
	  PROXYPROTO_DONE, AT("PROXY TCP6 ::ffff:192.0.2.1 2001:db8::25 1025 25\r\n"), 0, "192.0.2.1",
	  1025, "2001:db8::25", 25, NULL },
	{ "v1_tcp6_mapped_both",
	  IN("PROXY TCP6 ::ffff:192.0.2.1 ::FFFF:198.51.100.7 1025 25\r\n"), PROXYPROTO_DONE,
	  AT("PROXY TCP6 ::ffff:192.0.2.1 ::FFFF:198.51.100.7 1025 25\r\n"), 0, "192.0.2.1", 1025,
	  "198.51.100.7", 25, NULL },
	{ "v1_tcp6_longest_plain_addresses",
	  IN("PROXY TCP6 2001:db8:ffff:ffff:ffff:ffff:ffff:ffff "
	     "2001:db8:ffff:ffff:ffff:ffff:ffff:fffe 65535 65535\r\n"),
	  PROXYPROTO_DONE,
	  AT("PROXY TCP6 2001:db8:ffff:ffff:ffff:ffff:ffff:ffff "
	     "2001:db8:ffff:ffff:ffff:ffff:ffff:fffe 65535 65535\r\n"),
	  0, "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", 65535, "2001:db8:ffff:ffff:ffff:ffff:ffff:fffe",
	  65535, NULL },
	{ "v1_unknown", IN("PROXY UNKNOWN\r\nEHLO x\r\n"), PROXYPROTO_DONE,
	  AT("PROXY UNKNOWN\r\n"), 1, NULL, 0, NULL, 0, NULL },
	{ "v1_unknown_rest_ignored", IN("PROXY UNKNOWN 2001:db8::1 2001:db8::2 1 2\r\n"),
	  PROXYPROTO_DONE, AT("PROXY UNKNOWN 2001:db8::1 2001:db8::2 1 2\r\n"), 1, NULL, 0, NULL, 0,
	  NULL },
	{ "v1_unknown_exactly_107_bytes", v1_unknown_max, PROXYPROTO_V1_MAX, PROXYPROTO_DONE,
	  PROXYPROTO_V1_MAX, 1, NULL, 0, NULL, 0, NULL },

	/* v1, refused */
	{ "v1_smtp_instead_of_header", IN("EHLO client.example\r\n"), PROXYPROTO_ERROR, 1, 0, NULL,
	  0, NULL, 0, "not a PROXY" },
	{ "v1_http_instead_of_header", IN("GET / HTTP/1.0\r\n"), PROXYPROTO_ERROR, 1, 0, NULL, 0,
	  NULL, 0, "not a PROXY" },
	{ "v1_lowercase_magic", IN("proxy TCP4"), PROXYPROTO_ERROR, 1, 0, NULL, 0, NULL, 0,
	  "not a PROXY" },
	{ "v1_wrong_magic", IN("PROXX TCP4"), PROXYPROTO_ERROR, AT("PROXX"), 0, NULL, 0, NULL, 0,
	  "not a PROXY" },
	{ "v1_tab_after_magic", IN("PROXY\tTCP4"), PROXYPROTO_ERROR, AT("PROXY\t"), 0, NULL, 0,
	  NULL, 0, "not a PROXY" },
	{ "v1_unknown_protocol", IN("PROXY TCP5 192.0.2.1"), PROXYPROTO_ERROR, AT("PROXY TCP5"),
	  0, NULL, 0, NULL, 0, "protocol" },
	{ "v1_lowercase_protocol", IN("PROXY tcp4 192.0.2.1"), PROXYPROTO_ERROR, AT("PROXY t"), 0,
	  NULL, 0, NULL, 0, "protocol" },
	{ "v1_protocol_prefix_only", IN("PROXY TCP 192.0.2.1"), PROXYPROTO_ERROR, AT("PROXY TCP "),
	  0, NULL, 0, NULL, 0, "protocol" },
	{ "v1_double_space", IN("PROXY  TCP4"), PROXYPROTO_ERROR, AT("PROXY  "), 0, NULL, 0, NULL,
	  0, "protocol" },
	{ "v1_double_space_between_fields", IN("PROXY TCP4 192.0.2.1  198.51.100.7 1 2\r\n"),
	  PROXYPROTO_ERROR, AT("PROXY TCP4 192.0.2.1  "), 0, NULL, 0, NULL, 0, "space" },
	{ "v1_tcp4_with_ipv6_address", IN("PROXY TCP4 2001:db8::1 2001:db8::2 1 2\r\n"),
	  PROXYPROTO_ERROR, AT("PROXY TCP4 2001"), 0, NULL, 0, NULL, 0, "address" },
	{ "v1_tcp6_with_ipv4_address", IN("PROXY TCP6 192.0.2.1 2001:db8::25 1 25\r\n"),
	  PROXYPROTO_ERROR, AT("PROXY TCP6 192.0.2.1 "), 0, NULL, 0, NULL, 0, "address" },
	{ "v1_tcp6_bad_grammar", IN("PROXY TCP6 2001:db8:::1 2001:db8::25 1 25\r\n"),
	  PROXYPROTO_ERROR, AT("PROXY TCP6 2001:db8:::1 "), 0, NULL, 0, NULL, 0, "address" },
	{ "v1_tcp6_bad_character", IN("PROXY TCP6 2001:db8::g 2001:db8::25 1 25\r\n"),
	  PROXYPROTO_ERROR, AT("PROXY TCP6 2001:db8::g"), 0, NULL, 0, NULL, 0, "address" },
	{ "v1_tcp6_address_over_45_chars",
	  IN("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.2550 ::1 1 2\r\n"),
	  PROXYPROTO_ERROR, AT("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.2550"), 0, NULL,
	  0, NULL, 0,
	  "address" },
	{ "v1_tcp4_octet_over_255", IN("PROXY TCP4 192.0.2.256 198.51.100.7 1 25\r\n"),
	  PROXYPROTO_ERROR, AT("PROXY TCP4 192.0.2.256"), 0, NULL, 0, NULL, 0, "address" },
	{ "v1_tcp4_octet_leading_zero", IN("PROXY TCP4 192.0.2.01 198.51.100.7 1 25\r\n"),
	  PROXYPROTO_ERROR, AT("PROXY TCP4 192.0.2.01"), 0, NULL, 0, NULL, 0, "address" },
	{ "v1_tcp4_three_octets", IN("PROXY TCP4 192.0.2 198.51.100.7 1 25\r\n"), PROXYPROTO_ERROR,
	  AT("PROXY TCP4 192.0.2 "), 0, NULL, 0, NULL, 0, "address" },
	{ "v1_tcp4_five_octets", IN("PROXY TCP4 192.0.2.1.5 198.51.100.7 1 25\r\n"),
	  PROXYPROTO_ERROR, AT("PROXY TCP4 192.0.2.1."), 0, NULL, 0, NULL, 0, "address" },
	{ "v1_tcp4_empty_octet", IN("PROXY TCP4 192..2.1 198.51.100.7 1 25\r\n"), PROXYPROTO_ERROR,
	  AT("PROXY TCP4 192.."), 0, NULL, 0, NULL, 0, "address" },
	{ "v1_tcp4_hostname", IN("PROXY TCP4 mx.example.org 198.51.100.7 1 25\r\n"),
	  PROXYPROTO_ERROR, AT("PROXY TCP4 m"), 0, NULL, 0, NULL, 0, "address" },
	{ "v1_port_leading_zero", IN("PROXY TCP4 192.0.2.1 198.51.100.7 012345 25\r\n"),
	  PROXYPROTO_ERROR, AT("PROXY TCP4 192.0.2.1 198.51.100.7 01"), 0, NULL, 0, NULL, 0, "port" },
	{ "v1_port_double_zero", IN("PROXY TCP4 192.0.2.1 198.51.100.7 00 25\r\n"),
	  PROXYPROTO_ERROR, AT("PROXY TCP4 192.0.2.1 198.51.100.7 00"), 0, NULL, 0, NULL, 0, "port" },
	{ "v1_port_over_65535", IN("PROXY TCP4 192.0.2.1 198.51.100.7 12345 65536\r\n"),
	  PROXYPROTO_ERROR, AT("PROXY TCP4 192.0.2.1 198.51.100.7 12345 65536"), 0, NULL, 0, NULL, 0,
	  "port" },
	{ "v1_port_six_digits", IN("PROXY TCP4 192.0.2.1 198.51.100.7 123456 25\r\n"),
	  PROXYPROTO_ERROR, AT("PROXY TCP4 192.0.2.1 198.51.100.7 123456"), 0, NULL, 0, NULL, 0,
	  "port" },
	{ "v1_port_plus_sign", IN("PROXY TCP4 192.0.2.1 198.51.100.7 +1 25\r\n"), PROXYPROTO_ERROR,
	  AT("PROXY TCP4 192.0.2.1 198.51.100.7 +"), 0, NULL, 0, NULL, 0, "port" },
	{ "v1_port_minus_sign", IN("PROXY TCP4 192.0.2.1 198.51.100.7 -1 25\r\n"), PROXYPROTO_ERROR,
	  AT("PROXY TCP4 192.0.2.1 198.51.100.7 -"), 0, NULL, 0, NULL, 0, "port" },
	{ "v1_port_empty", IN("PROXY TCP4 192.0.2.1 198.51.100.7 12345 \r\n"), PROXYPROTO_ERROR,
	  AT("PROXY TCP4 192.0.2.1 198.51.100.7 12345 \r"), 0, NULL, 0, NULL, 0, "ends early" },
	{ "v1_missing_field", IN("PROXY TCP4 192.0.2.1 198.51.100.7 12345\r\n"), PROXYPROTO_ERROR,
	  AT("PROXY TCP4 192.0.2.1 198.51.100.7 12345\r"), 0, NULL, 0, NULL, 0, "ends early" },
	{ "v1_protocol_only", IN("PROXY TCP4\r\n"), PROXYPROTO_ERROR, AT("PROXY TCP4\r"), 0, NULL,
	  0, NULL, 0, "ends early" },
	{ "v1_extra_field", IN(V1A4 " 26\r\n"), PROXYPROTO_ERROR, AT(V1A4 " "), 0, NULL, 0, NULL, 0,
	  "extra" },
	{ "v1_bare_lf", IN(V1A4 "\nEHLO x\r\n"), PROXYPROTO_ERROR, AT(V1A4 "\n"), 0, NULL, 0, NULL,
	  0, "bare LF" },
	{ "v1_cr_without_lf", IN(V1A4 "\rEHLO x\r\n"), PROXYPROTO_ERROR, AT(V1A4 "\rE"), 0, NULL, 0,
	  NULL, 0, "CR not followed" },
	{ "v1_unknown_bare_lf", IN("PROXY UNKNOWN\n"), PROXYPROTO_ERROR, AT("PROXY UNKNOWN\n"), 0,
	  NULL, 0, NULL, 0, "bare LF" },
	{ "v1_unknown_rest_bare_lf", IN("PROXY UNKNOWN x\n"), PROXYPROTO_ERROR,
	  AT("PROXY UNKNOWN x\n"), 0, NULL, 0, NULL, 0, "bare LF" },
	{ "v1_unknown_glued_word", IN("PROXY UNKNOWNX\r\n"), PROXYPROTO_ERROR, AT("PROXY UNKNOWNX"),
	  0, NULL, 0, NULL, 0, "protocol" },
	{ "v1_unknown_control_byte", IN("PROXY UNKNOWN \x01\r\n"), PROXYPROTO_ERROR,
	  AT("PROXY UNKNOWN \x01"), 0, NULL, 0, NULL, 0, "control" },
	{ "v1_nul_in_address", IN("PROXY TCP4 192.0\0.2.1 198.51.100.7 1 25\r\n"), PROXYPROTO_ERROR,
	  AT("PROXY TCP4 192.0\0"), 0, NULL, 0, NULL, 0, "address" },
	{ "v1_unknown_over_107_bytes", v1_unknown_over, PROXYPROTO_V1_MAX + 1, PROXYPROTO_ERROR,
	  PROXYPROTO_V1_MAX, 0, NULL, 0, NULL, 0, "107" },
	{ "v1_tcp6_mapped_dotted_over_107_bytes",
	  IN("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 "
	     "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255 65535 65535\r\n"),
	  PROXYPROTO_ERROR, PROXYPROTO_V1_MAX, 0, NULL, 0, NULL, 0, "107" },

	/* v1, incomplete */
	{ "empty_input", "", 0, PROXYPROTO_NEED_MORE, 0, 0, NULL, 0, NULL, 0, NULL },
	{ "v1_incomplete", IN("PROXY TCP4 192.0.2.1 198.51"), PROXYPROTO_NEED_MORE, 0, 0, NULL, 0,
	  NULL, 0, NULL },
	{ "v1_incomplete_before_lf", IN(V1A4 "\r"), PROXYPROTO_NEED_MORE, 0, 0, NULL, 0, NULL, 0,
	  NULL },

	/* v2, valid */
	{ "v2_tcp4", IN(SIG "\x21\x11\x00\x0c" V2A4), PROXYPROTO_DONE, 28, 0, "192.0.2.1", 12345,
	  "198.51.100.7", 25, NULL },
	{ "v2_tcp4_trailing_smtp_not_consumed", IN(SIG "\x21\x11\x00\x0c" V2A4 "EHLO x\r\n"),
	  PROXYPROTO_DONE, 28, 0, "192.0.2.1", 12345, "198.51.100.7", 25, NULL },
	{ "v2_tcp6", IN(SIG "\x21\x21\x00\x24" V2A6), PROXYPROTO_DONE, 52, 0, "2001:db8::1", 54321,
	  "2001:db8::25", 25, NULL },
	{ "v2_tcp6_mapped_becomes_ipv4",
	  IN(SIG "\x21\x21\x00\x24" "\0\0\0\0\0\0\0\0\0\0\xff\xff\xc0\x00\x02\x01"
	     "\x20\x01\x0d\xb8\0\0\0\0\0\0\0\0\0\0\0\x25" "\x04\x01" "\x00\x19"),
	  PROXYPROTO_DONE, 52, 0, "192.0.2.1", 1025, "2001:db8::25", 25, NULL },
	{ "v2_local_no_addresses", IN(SIG "\x20\x00\x00\x00" "QUIT\r\n"), PROXYPROTO_DONE, 16, 1,
	  NULL, 0, NULL, 0, NULL },
	{ "v2_local_family_ignored", IN(SIG "\x20\x11\x00\x0c" V2A4), PROXYPROTO_DONE, 28, 1, NULL,
	  0, NULL, 0, NULL },
	{ "v2_local_odd_family_ignored", IN(SIG "\x20\x77\x00\x03" "abc"), PROXYPROTO_DONE, 19, 1,
	  NULL, 0, NULL, 0, NULL },
	{ "v2_proxy_unspec_is_local", IN(SIG "\x21\x00\x00\x00"), PROXYPROTO_DONE, 16, 1, NULL, 0,
	  NULL, 0, NULL },
	{ "v2_proxy_unspec_with_tlv", IN(SIG "\x21\x00\x00\x07" "\x01\x00\x04smtp"),
	  PROXYPROTO_DONE, 23, 1, NULL, 0, NULL, 0, NULL },
	{ "v2_proxy_unix_is_local", v2_unix, sizeof(v2_unix), PROXYPROTO_DONE, 16 + 216, 1, NULL, 0,
	  NULL, 0, NULL },
	{ "v2_tcp4_tlvs_skipped",
	  IN(SIG "\x21\x11\x00\x23" V2A4 "\x01\x00\x04smtp" "\x04\x00\x00"
	     "\x02\x00\x0ahost.local" "EHLO x\r\n"),
	  PROXYPROTO_DONE, 16 + 35, 0, "192.0.2.1", 12345, "198.51.100.7", 25, NULL },
	{ "v2_tcp6_tlv", IN(SIG "\x21\x21\x00\x28" V2A6 "\x04\x00\x01\x00"), PROXYPROTO_DONE, 56, 0,
	  "2001:db8::1", 54321, "2001:db8::25", 25, NULL },
	{ "v2_exactly_536_bytes", v2_max, PROXYPROTO_V2_MAX, PROXYPROTO_DONE, PROXYPROTO_V2_MAX, 0,
	  "192.0.2.1", 12345, "198.51.100.7", 25, NULL },

	/* v2, refused */
	{ "v2_bad_signature_cr_cr", IN("\r\r\n\r\n\0"), PROXYPROTO_ERROR, 2, 0, NULL, 0, NULL, 0,
	  "not a PROXY" },
	{ "v2_signature_typo", IN("\r\n\r\n\0\r\nQUIX\n\x21\x11\x00\x0c" V2A4), PROXYPROTO_ERROR,
	  AT("\r\n\r\n\0\r\nQUIX"), 0, NULL, 0, NULL, 0, "not a PROXY" },
	{ "v2_cr_then_garbage", IN("\r\nX"), PROXYPROTO_ERROR, AT("\r\nX"), 0, NULL, 0, NULL, 0,
	  "not a PROXY" },
	{ "v2_version_1", IN(SIG "\x11\x11\x00\x0c" V2A4), PROXYPROTO_ERROR, 13, 0, NULL, 0, NULL, 0,
	  "version" },
	{ "v2_version_3", IN(SIG "\x31\x11\x00\x0c" V2A4), PROXYPROTO_ERROR, 13, 0, NULL, 0, NULL, 0,
	  "version" },
	{ "v2_command_2", IN(SIG "\x22\x11\x00\x0c" V2A4), PROXYPROTO_ERROR, 13, 0, NULL, 0, NULL, 0,
	  "command" },
	{ "v2_udp4", IN(SIG "\x21\x12\x00\x0c" V2A4), PROXYPROTO_ERROR, 14, 0, NULL, 0, NULL, 0,
	  "UDP" },
	{ "v2_udp6", IN(SIG "\x21\x22\x00\x24" V2A6), PROXYPROTO_ERROR, 14, 0, NULL, 0, NULL, 0,
	  "UDP" },
	{ "v2_inet_unspec_transport", IN(SIG "\x21\x10\x00\x0c" V2A4), PROXYPROTO_ERROR, 14, 0, NULL,
	  0, NULL, 0, "family" },
	{ "v2_family_4", IN(SIG "\x21\x41\x00\x0c" V2A4), PROXYPROTO_ERROR, 14, 0, NULL, 0, NULL, 0,
	  "family" },
	{ "v2_transport_3", IN(SIG "\x21\x13\x00\x0c" V2A4), PROXYPROTO_ERROR, 14, 0, NULL, 0, NULL,
	  0, "family" },
	{ "v2_length_over_536", IN(SIG "\x21\x11\x02\x09" V2A4), PROXYPROTO_ERROR, 16, 0, NULL, 0,
	  NULL, 0, "536" },
	{ "v2_length_65535", IN(SIG "\x20\x00\xff\xff"), PROXYPROTO_ERROR, 16, 0, NULL, 0, NULL, 0,
	  "536" },
	{ "v2_tcp4_block_too_short", IN(SIG "\x21\x11\x00\x0b" V2A4), PROXYPROTO_ERROR, 16, 0, NULL,
	  0, NULL, 0, "too short" },
	{ "v2_tcp6_block_too_short", IN(SIG "\x21\x21\x00\x23" V2A6), PROXYPROTO_ERROR, 16, 0, NULL,
	  0, NULL, 0, "too short" },
	{ "v2_unix_block_too_short", IN(SIG "\x21\x31\x00\xd7"), PROXYPROTO_ERROR, 16, 0, NULL, 0,
	  NULL, 0, "too short" },
	{ "v2_tlv_truncated_head", IN(SIG "\x21\x11\x00\x0e" V2A4 "\x04\x00" "EHLO x\r\n"),
	  PROXYPROTO_ERROR, 30, 0, NULL, 0, NULL, 0, "TLV" },
	{ "v2_tlv_value_overruns", IN(SIG "\x21\x11\x00\x10" V2A4 "\x01\x00\x05" "s" "EHLO x\r\n"),
	  PROXYPROTO_ERROR, 32, 0, NULL, 0, NULL, 0, "TLV" },
	{ "v2_second_tlv_overruns",
	  IN(SIG "\x21\x11\x00\x13" V2A4 "\x04\x00\x00" "\x01\x00\x02" "s" "EHLO x\r\n"),
	  PROXYPROTO_ERROR, 35, 0, NULL, 0, NULL, 0, "TLV" },

	/* v2, incomplete */
	{ "v2_signature_only", IN(SIG), PROXYPROTO_NEED_MORE, 0, 0, NULL, 0, NULL, 0, NULL },
	{ "v2_addresses_incomplete", IN(SIG "\x21\x11\x00\x0c\xc0\x00\x02"), PROXYPROTO_NEED_MORE, 0,
	  0, NULL, 0, NULL, 0, NULL },
};

/* check_addr - compare a result address with the expected text and port. */
static void
check_addr(const char *name, const char *which, const struct sockaddr_storage *ss,
	   const char *want, int wport)
{
	char got[INET6_ADDRSTRLEN] = "";
	int family = strchr(want, ':') != NULL ? AF_INET6 : AF_INET;
	int port = -1;

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;

		inet_ntop(AF_INET, &sin->sin_addr, got, sizeof(got));
		port = ntohs(sin->sin_port);
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;

		inet_ntop(AF_INET6, &sin6->sin6_addr, got, sizeof(got));
		port = ntohs(sin6->sin6_port);
	}
	if (ss->ss_family != family || strcmp(got, want) != 0 || port != wport)
		fail_msg("case %s: %s is %s port %d (family %d), want %s port %d (family %d)", name,
			 which, got, port, ss->ss_family, want, wport, family);
}

/* check_result - compare a DONE result with the row. */
static void
check_result(const struct parse_case *c, const struct proxyproto_result *res)
{
	if (res->consumed != c->at)
		fail_msg("case %s: consumed %zu, want %zu", c->name, res->consumed, c->at);
	if (res->local != c->local)
		fail_msg("case %s: local %d, want %d", c->name, res->local, c->local);
	if (c->local) {
		if (res->src.ss_family != AF_UNSPEC || res->dst.ss_family != AF_UNSPEC)
			fail_msg("case %s: local result carries addresses", c->name);
		return;
	}
	check_addr(c->name, "src", &res->src, c->src, c->sport);
	check_addr(c->name, "dst", &res->dst, c->dst, c->dport);
}

/* test_parse_row - one row: the whole input, then every prefix of it. */
static void
test_parse_row(void **state)
{
	const struct parse_case *c = *state;
	struct proxyproto_result res;
	const char *why = NULL;
	enum proxyproto_status st;
	size_t k;

	st = proxyproto_parse((const unsigned char *)c->in, c->inlen, &res, &why);
	if (st != c->st)
		fail_msg("case %s: status %d, want %d (why: %s)", c->name, st, c->st,
			 why ? why : "-");
	if (st == PROXYPROTO_DONE)
		check_result(c, &res);
	if (st == PROXYPROTO_ERROR && (why == NULL || (c->why && strstr(why, c->why) == NULL)))
		fail_msg("case %s: reason \"%s\", want one with \"%s\"", c->name, why ? why : "(null)",
			 c->why ? c->why : "?");

	/* Byte by byte: NEED_MORE up to "at", then the final verdict. */
	for (k = 0; k <= c->inlen; k++) {
		enum proxyproto_status want = PROXYPROTO_NEED_MORE;

		if (c->st != PROXYPROTO_NEED_MORE && k >= c->at)
			want = c->st;
		st = proxyproto_parse((const unsigned char *)c->in, k, &res, &why);
		if (st != want)
			fail_msg("case %s: prefix of %zu bytes gives %d, want %d (why: %s)", c->name, k,
				 st, want, st == PROXYPROTO_ERROR && why ? why : "-");
		if (st == PROXYPROTO_DONE)
			check_result(c, &res);
		if (st == PROXYPROTO_NEED_MORE && k > PROXYPROTO_V2_MAX)
			fail_msg("case %s: NEED_MORE after %zu bytes", c->name, k);
	}
}

struct write_case {
	const char *name;
	int sfam; /* AF_INET, AF_INET6 or AF_UNIX */
	const char *src;
	int sport;
	int dfam;
	const char *dst;
	int dport;
	size_t outlen;
	int ret; /* expected length or -1 */
	const char *psrc, *pdst; /* as parsed back */
};

static const struct write_case write_cases[] = {
	{ "write_ipv4", AF_INET, "192.0.2.1", 12345, AF_INET, "198.51.100.7", 25, 64, 28,
	  "192.0.2.1", "198.51.100.7" },
	{ "write_ipv4_exact_buffer", AF_INET, "192.0.2.1", 1, AF_INET, "198.51.100.7", 25, 28, 28,
	  "192.0.2.1", "198.51.100.7" },
	{ "write_ipv6", AF_INET6, "2001:db8::1", 54321, AF_INET6, "2001:db8::25", 25, 52, 52,
	  "2001:db8::1", "2001:db8::25" },
	{ "write_mapped_as_ipv4", AF_INET6, "::ffff:192.0.2.1", 1025, AF_INET6,
	  "::ffff:198.51.100.7", 25, 64, 28, "192.0.2.1", "198.51.100.7" },
	{ "write_mixed_as_ipv6", AF_INET, "192.0.2.1", 1025, AF_INET6, "2001:db8::25", 25, 64, 52,
	  "192.0.2.1", "2001:db8::25" },
	{ "write_port_zero_and_max", AF_INET, "192.0.2.1", 0, AF_INET, "198.51.100.7", 65535, 64,
	  28, "192.0.2.1", "198.51.100.7" },
	{ "write_ipv4_buffer_too_small", AF_INET, "192.0.2.1", 1, AF_INET, "198.51.100.7", 25, 27,
	  -1, NULL, NULL },
	{ "write_ipv6_buffer_too_small", AF_INET6, "2001:db8::1", 1, AF_INET6, "2001:db8::25", 25,
	  51, -1, NULL, NULL },
	{ "write_buffer_under_16", AF_INET, "192.0.2.1", 1, AF_INET, "198.51.100.7", 25, 10, -1,
	  NULL, NULL },
	{ "write_unix_refused", AF_UNIX, "/run/x", 0, AF_INET, "198.51.100.7", 25, 64, -1, NULL,
	  NULL },
};

/* make_sa - build a sockaddr of the row's family. */
static void
make_sa(struct sockaddr_storage *ss, int fam, const char *addr, int port)
{
	memset(ss, 0, sizeof(*ss));
	ss->ss_family = fam;
	if (fam == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;

		assert_int_equal(inet_pton(AF_INET, addr, &sin->sin_addr), 1);
		sin->sin_port = htons(port);
	} else if (fam == AF_INET6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

		assert_int_equal(inet_pton(AF_INET6, addr, &sin6->sin6_addr), 1);
		sin6->sin6_port = htons(port);
	} else {
		struct sockaddr_un *sun = (struct sockaddr_un *)ss;

		snprintf(sun->sun_path, sizeof(sun->sun_path), "%s", addr);
	}
}

/* test_write_row - write a header, then parse it back (round trip). */
static void
test_write_row(void **state)
{
	const struct write_case *c = *state;
	struct sockaddr_storage src, dst;
	struct proxyproto_result res;
	unsigned char out[128];
	const char *why = NULL;
	int n;

	make_sa(&src, c->sfam, c->src, c->sport);
	make_sa(&dst, c->dfam, c->dst, c->dport);
	memset(out, 0xaa, sizeof(out));
	n = proxyproto_write_v2((struct sockaddr *)&src, (struct sockaddr *)&dst, out, c->outlen);
	if (n != c->ret)
		fail_msg("case %s: wrote %d bytes, want %d", c->name, n, c->ret);
	if (n < 0)
		return;
	if (out[n] != 0xaa)
		fail_msg("case %s: wrote past its length", c->name);
	/* Parse the header followed by SMTP bytes that must stay unconsumed. */
	memcpy(out + n, "EHLO x\r\n", 8);
	if (proxyproto_parse(out, (size_t)n + 8, &res, &why) != PROXYPROTO_DONE)
		fail_msg("case %s: written header does not parse: %s", c->name, why);
	if (res.consumed != (size_t)n || res.local)
		fail_msg("case %s: consumed %zu local %d", c->name, res.consumed, res.local);
	check_addr(c->name, "src", &res.src, c->psrc, c->sport);
	check_addr(c->name, "dst", &res.dst, c->pdst, c->dport);
}

/* test_null_why - a NULL reason pointer is allowed. */
static void
test_null_why(void **state)
{
	struct proxyproto_result res;

	assert_int_equal(proxyproto_parse((const unsigned char *)"X", 1, &res, NULL),
			 PROXYPROTO_ERROR);
	assert_int_equal(proxyproto_parse((const unsigned char *)IN(V1A4 "\r\n"), &res, NULL),
			 PROXYPROTO_DONE);
}

/* fill_inputs - build the rows whose inputs are too long for literals. */
static void
fill_inputs(void)
{
	size_t n;

	/* v2 PROXY over UNIX stream: 216 bytes of paths, ignored. */
	memcpy(v2_unix, SIG "\x21\x31\x00\xd8", 16);
	memset(v2_unix + 16, 'p', 216);
	memcpy(v2_unix + 16 + 216, "EHLO x\r\n", 8);

	/* v2 TCP4 with one NOOP TLV padding the header to exactly 536. */
	memcpy(v2_max, SIG "\x21\x11\x02\x08" V2A4, 28);
	n = PROXYPROTO_V2_MAX - 28 - 3;
	v2_max[28] = 0x04;
	v2_max[29] = (char)(n >> 8);
	v2_max[30] = (char)(n & 0xff);
	memset(v2_max + 31, 0, n);

	/* "PROXY UNKNOWN " and filler: 107 bytes with CRLF, or no CRLF. */
	memset(v1_unknown_max, 'x', sizeof(v1_unknown_max));
	memcpy(v1_unknown_max, "PROXY UNKNOWN ", 14);
	memcpy(v1_unknown_max + PROXYPROTO_V1_MAX - 2, "\r\n", 2);
	memset(v1_unknown_over, 'x', sizeof(v1_unknown_over));
	memcpy(v1_unknown_over, "PROXY UNKNOWN ", 14);
}

/* main - one cmocka test per row, named after it. */
int
main(void)
{
	enum { NP = sizeof(parse_cases) / sizeof(parse_cases[0]) };
	enum { NW = sizeof(write_cases) / sizeof(write_cases[0]) };
	struct CMUnitTest tests[NP + NW + 1];
	size_t i, n = 0;

	fill_inputs();
	for (i = 0; i < NP; i++) {
		tests[n] = (struct CMUnitTest){ parse_cases[i].name, test_parse_row, NULL, NULL,
						(void *)&parse_cases[i] };
		n++;
	}
	for (i = 0; i < NW; i++)
		tests[n++] = (struct CMUnitTest){ write_cases[i].name, test_write_row, NULL, NULL,
						  (void *)&write_cases[i] };
	tests[n++] = (struct CMUnitTest){ "parse_null_why", test_null_why, NULL, NULL, NULL };
	return _cmocka_run_group_tests("proxyproto", tests, n, NULL, NULL);
}
