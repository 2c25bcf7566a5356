/*
 * received.c - the Received: trace field ravelin prepends to forwarded
 * mail (RFC 5321 section 4.4), with the TLS protocol and cipher as
 * Postfix's smtpd_tls_received_header writes them and the RFC 3848 /
 * RFC 6531 protocol keyword (ESMTPSA, UTF8SMTPS ...).
 *
 * Pure: the caller passes what the session knows. The HELO name and the
 * recipient come from the client, so every value is cleaned on the way
 * in: control characters (CR and LF above all) and characters that would
 * close the comment, the address literal or the stamp they sit in become
 * '?', and each value is bounded, so no line reaches 998 octets and no
 * hostile value can start a header field of its own. The login name of an
 * authenticated client is never written (Postfix omits it by default).
 *
 * Public:
 *   received_protocol(), received_build()
 */

/* System. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* Project. */
#include "fmt.h"
#include "received.h"

/* Longest HELO, PTR name, hostname or address we copy (SMTP caps them at 255). */
#define RECEIVED_NAME_MAX 255
/* Longest id, TLS version or cipher name we copy. */
#define RECEIVED_WORD_MAX 64

/* What a cleaned value may keep. */
enum clean_kind {
	CLEAN_NAME,	/* a domain or address literal: no space, no ( ) \ ; " */
	CLEAN_PATH,	/* a mailbox inside < >: no < > ; */
	CLEAN_WORD,	/* an atom: letters, digits, - _ . / */
};

/* Output buffer that remembers running out of room. */
struct rbuf {
	char *buf;
	size_t len;
	size_t cap;
	bool overflow;
};

/* rb_add - append n bytes. */
static void
rb_add(struct rbuf *b, const char *s, size_t n)
{
	if (b->overflow || b->cap - b->len <= n) {
		b->overflow = true;
		return;
	}
	memcpy(b->buf + b->len, s, n);
	b->len += n;
	b->buf[b->len] = '\0';
}

/* rb_str - append a string we wrote ourselves. */
static void
rb_str(struct rbuf *b, const char *s)
{
	rb_add(b, s, strlen(s));
}

/* clean_ok - may byte c stay in a value of this kind? */
static bool
clean_ok(unsigned char c, enum clean_kind kind, bool utf8)
{
	if (c < 0x20 || c == 0x7f)
		return false;
	if (c >= 0x80)
		return kind == CLEAN_PATH && utf8;
	switch (kind) {
	case CLEAN_NAME:
		return c != ' ' && c != '(' && c != ')' && c != '\\' && c != ';' && c != '"';
	case CLEAN_PATH:
		return c != '<' && c != '>' && c != ';';
	case CLEAN_WORD:
		return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		       c == '-' || c == '_' || c == '.' || c == '/';
	}
	return false;
}

/* rb_clean - append a value from outside, cleaned and cut at max bytes. */
static void
rb_clean(struct rbuf *b, const char *s, enum clean_kind kind, size_t max, bool utf8)
{
	size_t i, start = 0;

	/* Runs of clean bytes go in at once; each other byte becomes '?'. */
	for (i = 0; i < max && s[i]; i++) {
		if (clean_ok((unsigned char)s[i], kind, utf8))
			continue;
		if (i > start)
			rb_add(b, s + start, i - start);
		rb_add(b, "?", 1);
		start = i + 1;
	}
	if (i > start)
		rb_add(b, s + start, i - start);
}

/* rb_date - an RFC 5322 date-time: "Sun, 22 Nov 2026 01:02:03 +0000". */
static void
rb_date(struct rbuf *b, time_t when, bool utc)
{
	static const char days[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char months[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
					    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	/* The same second is formatted once per thread, not per message. */
	static __thread time_t last_when = -1;
	static __thread bool last_utc;
	static __thread char out[64];
	struct tm tm;
	long off;

	if (when == last_when && utc == last_utc && when != -1) {
		rb_str(b, out);
		return;
	}
	last_when = when;
	last_utc = utc;
	/* Written by hand: strftime's %a and %b follow the locale. */
	if (utc ? !gmtime_r(&when, &tm) : !localtime_r(&when, &tm)) {
		when = 0;
		gmtime_r(&when, &tm);
		utc = true;
	}
	off = utc ? 0 : tm.tm_gmtoff / 60;
	fmt_snprintf(out, sizeof(out), "%s, %02d %s %04d %02d:%02d:%02d %c%02ld%02ld",
		 days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12], tm.tm_year + 1900,
		 tm.tm_hour, tm.tm_min, tm.tm_sec, off < 0 ? '-' : '+',
		 (off < 0 ? -off : off) / 60, (off < 0 ? -off : off) % 60);
	rb_str(b, out);
}

/* received_protocol - the RFC 3848 / RFC 6531 "with" keyword. */
const char *
received_protocol(const struct received_info *ri)
{
	/* Indexed by utf8 * 4 + tls * 2 + auth. */
	static const char *const esmtp[8] = {
		"ESMTP", "ESMTPA", "ESMTPS", "ESMTPSA",
		"UTF8SMTP", "UTF8SMTPA", "UTF8SMTPS", "UTF8SMTPSA",
	};

	/* HELO has no extensions: no AUTH, no SMTPUTF8, and no registered
	 * keyword for TLS (the "using" clause still says it was TLS). */
	if (!ri->esmtp)
		return "SMTP";
	return esmtp[(ri->utf8 ? 4 : 0) + (ri->tls ? 2 : 0) + (ri->auth ? 1 : 0)];
}

/* rb_literal - "[192.0.2.1]" or "[IPv6:2001:db8::1]" (RFC 5321 4.1.3). */
static void
rb_literal(struct rbuf *b, const char *ip)
{
	rb_str(b, "[");
	if (strchr(ip, ':'))
		rb_str(b, "IPv6:");
	rb_clean(b, ip, CLEAN_NAME, RECEIVED_NAME_MAX, false);
	rb_str(b, "]");
}

/* received_build - the whole field, folded with CRLF TAB, no final CRLF. */
int
received_build(const struct received_info *ri, char *buf, size_t size)
{
	struct rbuf b = { buf, 0, size, size == 0 };
	const char *ip = ri->client_ip && *ri->client_ip ? ri->client_ip : "unknown";
	char bits[64];

	if (size > 0)
		buf[0] = '\0';
	/* from HELO (PTR [IP]) */
	rb_str(&b, "Received: from ");
	if (ri->helo && *ri->helo)
		rb_clean(&b, ri->helo, CLEAN_NAME, RECEIVED_NAME_MAX, false);
	else
		rb_literal(&b, ip);
	rb_str(&b, " (");
	rb_clean(&b, ri->client_name && *ri->client_name ? ri->client_name : "unknown", CLEAN_NAME,
		 RECEIVED_NAME_MAX, false);
	rb_str(&b, " ");
	rb_literal(&b, ip);
	rb_str(&b, ")");
	/* (using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)) */
	if (ri->tls) {
		rb_str(&b, "\r\n\t(using ");
		rb_clean(&b, ri->tls_version ? ri->tls_version : "TLS", CLEAN_WORD, RECEIVED_WORD_MAX,
			 false);
		rb_str(&b, " with cipher ");
		rb_clean(&b, ri->tls_cipher ? ri->tls_cipher : "unknown", CLEAN_WORD,
			 RECEIVED_WORD_MAX, false);
		fmt_snprintf(bits, sizeof(bits), " (%d/%d bits))", ri->tls_bits, ri->tls_alg_bits);
		rb_str(&b, bits);
	}
	/* by HOST (ravelin) with PROTO id ID */
	rb_str(&b, "\r\n\tby ");
	rb_clean(&b, ri->by && *ri->by ? ri->by : "localhost", CLEAN_NAME, RECEIVED_NAME_MAX, false);
	rb_str(&b, " (ravelin) with ");
	rb_str(&b, received_protocol(ri));
	if (ri->id && *ri->id) {
		rb_str(&b, " id ");
		rb_clean(&b, ri->id, CLEAN_WORD, RECEIVED_WORD_MAX, false);
	}
	/* for <rcpt> only for a single recipient that fits (RFC 5321 4.4:
	 * several would disclose the others' addresses to each one). */
	if (ri->rcpt && *ri->rcpt && strlen(ri->rcpt) <= RECEIVED_NAME_MAX) {
		rb_str(&b, "\r\n\tfor <");
		rb_clean(&b, ri->rcpt, CLEAN_PATH, RECEIVED_NAME_MAX, ri->utf8);
		rb_str(&b, ">; ");
	} else {
		rb_str(&b, ";\r\n\t");
	}
	rb_date(&b, ri->when, ri->utc);
	if (b.overflow) {
		if (size > 0)
			buf[0] = '\0';
		return -1;
	}
	return (int)b.len;
}
