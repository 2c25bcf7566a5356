/*
 * fuzz_proxyproto.c - libFuzzer target for the PROXY protocol parser.
 *
 * Beyond "no crash", it checks the properties the listener relies on:
 * verdicts never change once given (a prefix that is DONE or ERROR stays
 * so, with the same result), NEED_MORE never lasts past 536 bytes,
 * results are well formed (no IPv4-mapped IPv6 left, consumed within the
 * input), and an accepted header survives a round trip through the v2
 * writer and through a v1 line built from it.
 *
 *   clang -fsanitize=fuzzer,address,undefined -Iinclude \
 *       tests/fuzz/fuzz_proxyproto.c src/proxyproto.c
 *   ./a.out -dict=tests/fuzz/proxyproto.dict tests/fuzz/corpus/proxyproto
 */

/* System. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Project. */
#include "proxyproto.h"

/* check - abort with a message so libFuzzer records the input. */
#define check(cond)                                                                  \
	do {                                                                         \
		if (!(cond)) {                                                       \
			fprintf(stderr, "fuzz_proxyproto: %s failed at line %d\n", \
				#cond, __LINE__);                                    \
			abort();                                                     \
		}                                                                    \
	} while (0)

/* same_result - two DONE results describe the same header. */
static int
same_result(const struct proxyproto_result *a, const struct proxyproto_result *b)
{
	return a->local == b->local && a->consumed == b->consumed &&
	       memcmp(&a->src, &b->src, sizeof(a->src)) == 0 &&
	       memcmp(&a->dst, &b->dst, sizeof(a->dst)) == 0;
}

/* check_addr - a presented address is plain IPv4 or non-mapped IPv6. */
static void
check_addr(const struct sockaddr_storage *ss)
{
	check(ss->ss_family == AF_INET || ss->ss_family == AF_INET6);
	if (ss->ss_family == AF_INET6)
		check(!IN6_IS_ADDR_V4MAPPED(&((const struct sockaddr_in6 *)ss)->sin6_addr));
}

/* fmt_addr - address text and port of a result address. */
static void
fmt_addr(const struct sockaddr_storage *ss, char *buf, size_t len, unsigned *port)
{
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;

		check(inet_ntop(AF_INET, &sin->sin_addr, buf, len) != NULL);
		*port = ntohs(sin->sin_port);
	} else {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;

		check(inet_ntop(AF_INET6, &sin6->sin6_addr, buf, len) != NULL);
		*port = ntohs(sin6->sin6_port);
	}
}

/* round_trip - write the result as v2 and as v1 and parse both back. */
static void
round_trip(const struct proxyproto_result *res)
{
	struct proxyproto_result back;
	unsigned char out[PROXYPROTO_V2_MAX];
	char line[160], s[INET6_ADDRSTRLEN], d[INET6_ADDRSTRLEN];
	unsigned sp, dp;
	const char *why;
	int n;

	n = proxyproto_write_v2((const struct sockaddr *)&res->src,
				(const struct sockaddr *)&res->dst, out, sizeof(out));
	check(n == PROXYPROTO_V2_LEN_INET || n == PROXYPROTO_V2_LEN_INET6);
	check(proxyproto_parse(out, (size_t)n, &back, &why) == PROXYPROTO_DONE);
	check(back.consumed == (size_t)n && back.local == 0);
	check(memcmp(&back.src, &res->src, sizeof(back.src)) == 0);
	check(memcmp(&back.dst, &res->dst, sizeof(back.dst)) == 0);

	/* v1 needs both addresses of one family; mixed ones exist only in v2. */
	if (res->src.ss_family != res->dst.ss_family)
		return;
	fmt_addr(&res->src, s, sizeof(s), &sp);
	fmt_addr(&res->dst, d, sizeof(d), &dp);
	n = snprintf(line, sizeof(line), "PROXY %s %s %s %u %u\r\n",
		     res->src.ss_family == AF_INET ? "TCP4" : "TCP6", s, d, sp, dp);
	if (n > PROXYPROTO_V1_MAX)
		return;
	check(proxyproto_parse((const unsigned char *)line, (size_t)n, &back, &why) ==
	      PROXYPROTO_DONE);
	check(back.consumed == (size_t)n && back.local == 0);
	check(memcmp(&back.src, &res->src, sizeof(back.src)) == 0);
	check(memcmp(&back.dst, &res->dst, sizeof(back.dst)) == 0);
}

/* LLVMFuzzerTestOneInput - parse one input and check the properties above. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proxyproto_result res, pre;
	enum proxyproto_status st, pst = PROXYPROTO_NEED_MORE;
	const char *why = NULL;
	size_t k;

	st = proxyproto_parse(data, size, &res, &why);
	switch (st) {
	case PROXYPROTO_NEED_MORE:
		check(size < PROXYPROTO_V2_MAX);
		break;
	case PROXYPROTO_ERROR:
		check(why != NULL && *why != '\0');
		break;
	case PROXYPROTO_DONE:
		check(res.consumed > 0 && res.consumed <= size);
		check(res.consumed <= PROXYPROTO_V2_MAX);
		if (res.local) {
			check(res.src.ss_family == AF_UNSPEC && res.dst.ss_family == AF_UNSPEC);
		} else {
			check_addr(&res.src);
			check_addr(&res.dst);
			round_trip(&res);
		}
		break;
	default:
		check(0);
	}

	/* Feed the input byte by byte: the first verdict must be the final
	 * one, and DONE must appear exactly when the header is complete. */
	for (k = 0; k <= size; k++) {
		pst = proxyproto_parse(data, k, &pre, &why);
		if (pst != PROXYPROTO_NEED_MORE)
			break;
	}
	check(pst == st);
	if (st == PROXYPROTO_DONE) {
		check(k == res.consumed);
		check(same_result(&pre, &res));
	}
	if (st != PROXYPROTO_NEED_MORE && k < size) {
		check(proxyproto_parse(data, k + 1, &pre, &why) == st);
		if (st == PROXYPROTO_DONE)
			check(same_result(&pre, &res));
	}
	return 0;
}
