/*
 * proxyproto.c - HAProxy PROXY protocol v1/v2 parser and v2 writer.
 *
 * The parser is pure and resumable in the simplest way: the caller hands
 * over everything received since the connection opened, and the parser
 * rescans it (at most 536 bytes). Every verdict depends only on the bytes
 * it has looked at, so a prefix that is ERROR stays ERROR and a prefix
 * that is DONE stays DONE with the same result, however the bytes arrive.
 * Garbage is refused at the first byte that cannot belong to a valid
 * header, so a client that speaks SMTP (or nothing) at a proxy-protocol
 * listener is dropped at once instead of holding a slot until a timeout.
 *
 * v1 is checked exactly: "PROXY TCP4|TCP6 src dst sport dport\r\n" with
 * single spaces, addresses of the declared family, decimal ports without
 * sign or leading zeros, CRLF required, 107 bytes at most;
 * "PROXY UNKNOWN[ anything printable]\r\n" means "use the real peer".
 * v2: signature, version 2, command LOCAL or PROXY, TCP over IPv4/IPv6
 * (UNSPEC and UNIX families mean "use the real peer"), address block
 * length, TLVs walked and length-checked but otherwise ignored.
 * Fuzzed by tests/fuzz/fuzz_proxyproto.c.
 *
 * Public:
 *   proxyproto_parse(), proxyproto_write_v2()
 */

/* System. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>

/* Project. */
#include "proxyproto.h"

/* v2 fixed part: 12-byte signature, version/command, family, length. */
#define PP_V2_HDR 16

/* Longest address tokens in a v1 line (INET6_ADDRSTRLEN - 1 for IPv6). */
#define PP_V1_IPV4_MAX 15
#define PP_V1_IPV6_MAX 45
#define PP_V1_PORT_MAX 5

static const unsigned char pp_v2_sig[12] = { 0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
					     0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a };

/* Kinds of v1 fields after the protocol word. */
enum pp_field { PP_F_IPV4, PP_F_IPV6, PP_F_PORT };

/* pp_fail - record why and return ERROR. */
static enum proxyproto_status
pp_fail(const char **why, const char *reason)
{
	if (why != NULL)
		*why = reason;
	return PROXYPROTO_ERROR;
}

/* pp_is_prefix - whether tok[0..len) is a prefix of the string word. */
static int
pp_is_prefix(const unsigned char *tok, size_t len, const char *word)
{
	return len <= strlen(word) && memcmp(tok, word, len) == 0;
}

/* pp_is_word - whether tok[0..len) is exactly the string word. */
static int
pp_is_word(const unsigned char *tok, size_t len, const char *word)
{
	return len == strlen(word) && memcmp(tok, word, len) == 0;
}

/* pp_is_hex - hexadecimal digit test that ignores the locale. */
static int
pp_is_hex(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/*
 * pp_ipv4_prefix - check a (possibly partial) dotted quad: at most four
 * octets of 1-3 digits, each 0-255 without leading zeros (which some
 * parsers read as octal). With complete set, also require exactly four
 * non-empty octets and store the address.
 */
static int
pp_ipv4_prefix(const unsigned char *tok, size_t len, int complete, struct in_addr *out)
{
	unsigned int octet = 0, digits = 0, dots = 0;
	uint32_t addr = 0;
	size_t i;

	for (i = 0; i < len; i++) {
		if (tok[i] == '.') {
			if (digits == 0 || ++dots > 3)
				return 0;
			addr = (addr << 8) | octet;
			octet = digits = 0;
			continue;
		}
		if (tok[i] < '0' || tok[i] > '9')
			return 0;
		if (digits == 1 && octet == 0)
			return 0;
		octet = octet * 10 + (tok[i] - '0');
		if (++digits > 3 || octet > 255)
			return 0;
	}
	if (!complete)
		return 1;
	if (dots != 3 || digits == 0)
		return 0;
	addr = (addr << 8) | octet;
	out->s_addr = htonl(addr);
	return 1;
}

/* pp_port_prefix - check a (possibly partial) decimal port 0-65535. */
static int
pp_port_prefix(const unsigned char *tok, size_t len, int complete, uint16_t *out)
{
	unsigned long v = 0;
	size_t i;

	if (len > PP_V1_PORT_MAX || (len > 1 && tok[0] == '0'))
		return 0;
	for (i = 0; i < len; i++) {
		if (tok[i] < '0' || tok[i] > '9')
			return 0;
		v = v * 10 + (tok[i] - '0');
	}
	if (v > 65535)
		return 0;
	if (complete) {
		if (len == 0)
			return 0;
		*out = (uint16_t)v;
	}
	return 1;
}

/* pp_ipv6_prefix - check the characters of a (possibly partial) IPv6 token;
 * the complete token goes through inet_pton for the real grammar. */
static int
pp_ipv6_prefix(const unsigned char *tok, size_t len, int complete, struct in6_addr *out)
{
	char tmp[PP_V1_IPV6_MAX + 1];
	size_t i;

	if (len > PP_V1_IPV6_MAX)
		return 0;
	for (i = 0; i < len; i++)
		if (!pp_is_hex(tok[i]) && tok[i] != ':' && tok[i] != '.')
			return 0;
	if (!complete)
		return 1;
	memcpy(tmp, tok, len);
	tmp[len] = '\0';
	return inet_pton(AF_INET6, tmp, out) == 1;
}

/* pp_set_inet - store an IPv4 address and port (network order). */
static void
pp_set_inet(struct sockaddr_storage *ss, const void *addr4, uint16_t nport)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;

	memset(ss, 0, sizeof(*ss));
	sin->sin_family = AF_INET;
	memcpy(&sin->sin_addr, addr4, 4);
	sin->sin_port = nport;
}

/* pp_set_inet6 - store an IPv6 address and port (network order); an
 * IPv4-mapped address becomes AF_INET so that every check sees the client
 * as the IPv4 host it is (SPF in particular evaluates mapped ones wrongly). */
static void
pp_set_inet6(struct sockaddr_storage *ss, const void *addr16, uint16_t nport)
{
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	struct in6_addr a;

	memcpy(&a, addr16, 16);
	if (IN6_IS_ADDR_V4MAPPED(&a)) {
		pp_set_inet(ss, a.s6_addr + 12, nport);
		return;
	}
	memset(ss, 0, sizeof(*ss));
	sin6->sin6_family = AF_INET6;
	sin6->sin6_addr = a;
	sin6->sin6_port = nport;
}

/* pp_v1_field - check one v1 field (partial or complete) of its kind. */
static int
pp_v1_field(enum pp_field kind, const unsigned char *tok, size_t len, int complete,
	    struct in_addr *a4, struct in6_addr *a6, uint16_t *port)
{
	switch (kind) {
	case PP_F_IPV4:
		return len <= PP_V1_IPV4_MAX && pp_ipv4_prefix(tok, len, complete, a4);
	case PP_F_IPV6:
		return pp_ipv6_prefix(tok, len, complete, a6);
	default:
		return pp_port_prefix(tok, len, complete, port);
	}
}

/* pp_v1_more - out of bytes: wait, unless the line is already too long. */
static enum proxyproto_status
pp_v1_more(size_t len, const char **why)
{
	if (len >= PROXYPROTO_V1_MAX)
		return pp_fail(why, "v1 header longer than 107 bytes");
	return PROXYPROTO_NEED_MORE;
}

/* pp_v1_badchar - the reason for an unexpected byte in a v1 line. */
static enum proxyproto_status
pp_v1_badchar(unsigned char c, const char **why, const char *reason)
{
	if (c == '\n')
		return pp_fail(why, "v1 bare LF (CRLF required)");
	if (c == '\r')
		return pp_fail(why, "v1 line ends early");
	if (c == ' ')
		return pp_fail(why, "v1 empty field or extra space");
	return pp_fail(why, reason);
}

/* pp_v1_crlf - expect LF after the CR at buf[i]; DONE with consumed set. */
static enum proxyproto_status
pp_v1_crlf(const unsigned char *buf, size_t n, size_t len, size_t i,
	   struct proxyproto_result *res, const char **why)
{
	if (i + 1 >= n)
		return pp_v1_more(len, why);
	if (buf[i + 1] != '\n')
		return pp_fail(why, "v1 CR not followed by LF");
	res->consumed = i + 2;
	return PROXYPROTO_DONE;
}

/* pp_v1_unknown - "PROXY UNKNOWN" then optional " ignored text", CRLF. */
static enum proxyproto_status
pp_v1_unknown(const unsigned char *buf, size_t n, size_t len, size_t i,
	      struct proxyproto_result *res, const char **why)
{
	if (buf[i] == ' ') {
		/* The spec says to ignore the rest; we only insist that it is
		 * text, so a binary blob is not taken for a header. */
		for (i++; i < n && buf[i] != '\r'; i++)
			if (buf[i] < 0x20 || buf[i] > 0x7e)
				return pp_v1_badchar(buf[i], why, "v1 control byte after UNKNOWN");
		if (i == n)
			return pp_v1_more(len, why);
	}
	res->local = 1;
	return pp_v1_crlf(buf, n, len, i, res, why);
}

/* pp_v1 - parse a v1 text header (buf starts with 'P'). */
static enum proxyproto_status
pp_v1(const unsigned char *buf, size_t len, struct proxyproto_result *res, const char **why)
{
	static const char magic[] = "PROXY ";
	static const enum pp_field fields4[4] = { PP_F_IPV4, PP_F_IPV4, PP_F_PORT, PP_F_PORT };
	static const enum pp_field fields6[4] = { PP_F_IPV6, PP_F_IPV6, PP_F_PORT, PP_F_PORT };
	const enum pp_field *fields;
	struct in_addr a4[2];
	struct in6_addr a6[2];
	uint16_t port[2];
	size_t n = len < PROXYPROTO_V1_MAX ? len : PROXYPROTO_V1_MAX;
	size_t i, start, f;
	int v6;

	for (i = 0; i < sizeof(magic) - 1; i++) {
		if (i >= n)
			return PROXYPROTO_NEED_MORE;
		if (buf[i] != (unsigned char)magic[i])
			return pp_fail(why, "not a PROXY protocol header");
	}

	/* Protocol word, checked as a prefix so a wrong one fails early. */
	for (start = i; i < n && buf[i] != ' ' && buf[i] != '\r'; i++)
		if (!pp_is_prefix(buf + start, i + 1 - start, "TCP4") &&
		    !pp_is_prefix(buf + start, i + 1 - start, "TCP6") &&
		    !pp_is_prefix(buf + start, i + 1 - start, "UNKNOWN"))
			return pp_v1_badchar(buf[i], why, "v1 unknown protocol");
	if (i == n)
		return pp_v1_more(len, why);
	if (pp_is_word(buf + start, i - start, "UNKNOWN"))
		return pp_v1_unknown(buf, n, len, i, res, why);
	if (pp_is_word(buf + start, i - start, "TCP4"))
		v6 = 0;
	else if (pp_is_word(buf + start, i - start, "TCP6"))
		v6 = 1;
	else
		return pp_fail(why, "v1 unknown protocol");
	if (buf[i] != ' ')
		return pp_fail(why, "v1 line ends early");
	fields = v6 ? fields6 : fields4;

	/* Four fields, each after one space; the last one ends at CR. Each
	 * checker accepts every prefix of a valid field, so a partial field
	 * that fails can never become valid and is refused at once. */
	for (f = 0; f < 4; f++) {
		const unsigned char *tok;
		size_t tlen;

		for (start = ++i; i < n && buf[i] != ' ' && buf[i] != '\r'; i++)
			;
		tok = buf + start;
		tlen = i - start;
		if (!pp_v1_field(fields[f], tok, tlen, 0, &a4[f & 1], &a6[f & 1], &port[f & 1])) {
			if (memchr(tok, '\n', tlen) != NULL)
				return pp_fail(why, "v1 bare LF (CRLF required)");
			return pp_fail(why, f < 2 ? "v1 bad address" : "v1 bad port");
		}
		if (i == n)
			return pp_v1_more(len, why);
		if (tlen == 0)
			return pp_v1_badchar(buf[i], why, "v1 empty field");
		if (!pp_v1_field(fields[f], tok, tlen, 1, &a4[f & 1], &a6[f & 1], &port[f & 1]))
			return pp_fail(why, f < 2 ? "v1 bad address" : "v1 bad port");
		if (buf[i] != (f == 3 ? '\r' : ' '))
			return pp_fail(why, f == 3 ? "v1 extra field" : "v1 line ends early");
	}
	if (v6) {
		pp_set_inet6(&res->src, &a6[0], htons(port[0]));
		pp_set_inet6(&res->dst, &a6[1], htons(port[1]));
	} else {
		pp_set_inet(&res->src, &a4[0], htons(port[0]));
		pp_set_inet(&res->dst, &a4[1], htons(port[1]));
	}
	return pp_v1_crlf(buf, n, len, i, res, why);
}

/* pp_be16 - a port in network byte order, as stored in sin_port. */
static uint16_t
pp_be16(const unsigned char *p)
{
	return htons((uint16_t)(p[0] << 8 | p[1]));
}

/* pp_v2_tlvs - walk the TLVs in buf[p..end): each needs its 3-byte head
 * and a value that fits; their contents are of no use to us. */
static int
pp_v2_tlvs(const unsigned char *buf, size_t p, size_t end)
{
	while (p < end) {
		size_t vlen;

		if (end - p < 3)
			return 0;
		vlen = ((size_t)buf[p + 1] << 8) | buf[p + 2];
		if (vlen > end - p - 3)
			return 0;
		p += 3 + vlen;
	}
	return 1;
}

/* pp_v2 - parse a v2 binary header (buf starts with CR). */
static enum proxyproto_status
pp_v2(const unsigned char *buf, size_t len, struct proxyproto_result *res, const char **why)
{
	size_t i, addrlen = 0, blen;
	int cmd, fam = 0;

	for (i = 0; i < sizeof(pp_v2_sig); i++) {
		if (i >= len)
			return PROXYPROTO_NEED_MORE;
		if (buf[i] != pp_v2_sig[i])
			return pp_fail(why, "not a PROXY protocol header");
	}
	if (len < 13)
		return PROXYPROTO_NEED_MORE;
	if ((buf[12] >> 4) != 2)
		return pp_fail(why, "v2 unsupported version");
	cmd = buf[12] & 0x0f;
	if (cmd > 1)
		return pp_fail(why, "v2 unknown command");
	if (len < 14)
		return PROXYPROTO_NEED_MORE;
	/* LOCAL: the spec says to ignore the family and the whole block. */
	if (cmd == 1) {
		fam = buf[13];
		switch (fam) {
		case 0x00: /* UNSPEC: no addresses, only TLVs */
			addrlen = 0;
			break;
		case 0x11: /* TCP over IPv4 */
			addrlen = 12;
			break;
		case 0x21: /* TCP over IPv6 */
			addrlen = 36;
			break;
		case 0x31: /* UNIX stream/datagram: nothing we can use */
		case 0x32:
			addrlen = 216;
			break;
		case 0x12:
		case 0x22:
			return pp_fail(why, "v2 UDP is not SMTP");
		default:
			return pp_fail(why, "v2 unknown address family");
		}
	}
	if (len < PP_V2_HDR)
		return PROXYPROTO_NEED_MORE;
	blen = ((size_t)buf[14] << 8) | buf[15];
	if (PP_V2_HDR + blen > PROXYPROTO_V2_MAX)
		return pp_fail(why, "v2 header longer than 536 bytes");
	if (blen < addrlen)
		return pp_fail(why, "v2 address block too short");
	if (len < PP_V2_HDR + blen)
		return PROXYPROTO_NEED_MORE;
	if (cmd == 1 && !pp_v2_tlvs(buf, PP_V2_HDR + addrlen, PP_V2_HDR + blen))
		return pp_fail(why, "v2 malformed TLV");

	res->consumed = PP_V2_HDR + blen;
	if (fam == 0x11) {
		pp_set_inet(&res->src, buf + 16, pp_be16(buf + 24));
		pp_set_inet(&res->dst, buf + 20, pp_be16(buf + 26));
	} else if (fam == 0x21) {
		pp_set_inet6(&res->src, buf + 16, pp_be16(buf + 48));
		pp_set_inet6(&res->dst, buf + 32, pp_be16(buf + 50));
	} else
		res->local = 1;
	return PROXYPROTO_DONE;
}

/* proxyproto_parse - classify by the first byte and parse that version. */
enum proxyproto_status
proxyproto_parse(const unsigned char *buf, size_t len, struct proxyproto_result *res,
		 const char **why)
{
	enum proxyproto_status st;

	memset(res, 0, sizeof(*res));
	if (why != NULL)
		*why = NULL;
	if (len == 0)
		return PROXYPROTO_NEED_MORE;
	if (buf[0] == 'P')
		st = pp_v1(buf, len, res, why);
	else if (buf[0] == pp_v2_sig[0])
		st = pp_v2(buf, len, res, why);
	else
		st = pp_fail(why, "not a PROXY protocol header");
	if (st != PROXYPROTO_DONE)
		memset(res, 0, sizeof(*res));
	return st;
}

/* pp_as_v4 - the IPv4 address and port of sa (plain or IPv4-mapped). */
static int
pp_as_v4(const struct sockaddr *sa, unsigned char addr[4], unsigned char port[2])
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

		memcpy(addr, &sin->sin_addr, 4);
		memcpy(port, &sin->sin_port, 2);
		return 1;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;

		if (!IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr))
			return 0;
		memcpy(addr, sin6->sin6_addr.s6_addr + 12, 4);
		memcpy(port, &sin6->sin6_port, 2);
		return 1;
	}
	return 0;
}

/* pp_as_v6 - the IPv6 address and port of sa (IPv4 written mapped). */
static int
pp_as_v6(const struct sockaddr *sa, unsigned char addr[16], unsigned char port[2])
{
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;

		memcpy(addr, &sin6->sin6_addr, 16);
		memcpy(port, &sin6->sin6_port, 2);
		return 1;
	}
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

		memset(addr, 0, 10);
		addr[10] = addr[11] = 0xff;
		memcpy(addr + 12, &sin->sin_addr, 4);
		memcpy(port, &sin->sin_port, 2);
		return 1;
	}
	return 0;
}

/* proxyproto_write_v2 - build a v2 PROXY header for TCP from src to dst. */
int
proxyproto_write_v2(const struct sockaddr *src, const struct sockaddr *dst, unsigned char *out,
		    size_t outlen)
{
	unsigned char *p;

	if (src == NULL || dst == NULL || out == NULL)
		return -1;
	if (outlen < PP_V2_HDR)
		return -1;
	p = out + PP_V2_HDR;
	memcpy(out, pp_v2_sig, sizeof(pp_v2_sig));
	out[12] = 0x21; /* version 2, PROXY */
	if (outlen >= PROXYPROTO_V2_LEN_INET && pp_as_v4(src, p, p + 8) &&
	    pp_as_v4(dst, p + 4, p + 10)) {
		out[13] = 0x11;
		out[14] = 0;
		out[15] = 12;
		return PROXYPROTO_V2_LEN_INET;
	}
	if (outlen >= PROXYPROTO_V2_LEN_INET6 && pp_as_v6(src, p, p + 32) &&
	    pp_as_v6(dst, p + 16, p + 34)) {
		/* At least one side is real IPv6: the other goes mapped. */
		out[13] = 0x21;
		out[14] = 0;
		out[15] = 36;
		return PROXYPROTO_V2_LEN_INET6;
	}
	return -1;
}
