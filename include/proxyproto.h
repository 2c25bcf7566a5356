/*
 * proxyproto.h - HAProxy PROXY protocol (v1 text, v2 binary): a pure,
 * resumable parser for the header a load balancer puts in front of an
 * inbound connection, and a v2 header writer for the backend side.
 */
#ifndef RAVELIN_PROXYPROTO_H
#define RAVELIN_PROXYPROTO_H

#include <stddef.h>
#include <sys/socket.h>

/* Longest header proxyproto_parse() ever waits for: a v1 line (CRLF
 * included) and a v2 header with its address block and TLVs. A caller that
 * buffers this many bytes without DONE will have had ERROR instead. */
#define PROXYPROTO_V1_MAX 107
#define PROXYPROTO_V2_MAX 536

/* Size of a v2 header written by proxyproto_write_v2() (IPv4 / IPv6). */
#define PROXYPROTO_V2_LEN_INET  28
#define PROXYPROTO_V2_LEN_INET6 52

enum proxyproto_status { PROXYPROTO_NEED_MORE, PROXYPROTO_DONE, PROXYPROTO_ERROR };

struct proxyproto_result {
	int local;                        /* v2 LOCAL (or UNSPEC/UNIX family) or v1 "UNKNOWN":
					     use the real peer address; src/dst are AF_UNSPEC */
	struct sockaddr_storage src, dst; /* presented addresses; IPv4-mapped IPv6 converted to AF_INET */
	size_t consumed;                  /* bytes of the header (the rest of the buffer is SMTP input) */
};

/* proxyproto_parse - examine the bytes received so far (buf, len: the whole
 * input from the start of the connection). Returns PROXYPROTO_NEED_MORE
 * while the header may still be incomplete (never once len reaches
 * PROXYPROTO_V2_MAX; v1 never past PROXYPROTO_V1_MAX), PROXYPROTO_DONE with
 * *res filled, or PROXYPROTO_ERROR as soon as the bytes so far cannot start
 * a valid header (a short static reason in *why when why is non-NULL).
 * The verdict for a prefix never changes once it is DONE or ERROR. */
enum proxyproto_status proxyproto_parse(const unsigned char *buf, size_t len,
					struct proxyproto_result *res, const char **why);

/* proxyproto_write_v2 - build a v2 PROXY header (command PROXY, TCP over
 * IPv4 or IPv6) for src/dst into out. IPv4-mapped IPv6 addresses are
 * written as IPv4 when both are IPv4; a mix of IPv4 and IPv6 is written as
 * IPv6 with the IPv4 one mapped. Returns the length written, or -1 (other
 * family, or outlen too small). */
int proxyproto_write_v2(const struct sockaddr *src, const struct sockaddr *dst, unsigned char *out,
			size_t outlen);

#endif
