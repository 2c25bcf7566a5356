/*
 * received.h - the Received: trace field (RFC 5321 section 4.4) ravelin
 * prepends to every message it forwards in proxy mode, like Postfix's
 * smtpd with smtpd_tls_received_header: XCLIENT cannot tell the backend
 * that the client used TLS, so this field records it. Pure: no I/O, no
 * allocation.
 */
#ifndef RAVELIN_RECEIVED_H
#define RAVELIN_RECEIVED_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

/* Longest field we ever build (every line stays far below 998 octets). */
#define RECEIVED_MAX 2048

/*
 * What the session knows. Strings may come from the client (helo, rcpt):
 * control characters never reach the output, and characters that would
 * end the comment or the address they sit in are replaced by '?'.
 */
struct received_info {
	const char *helo;		/* HELO/EHLO argument; NULL or "": the address literal */
	const char *client_name;	/* PTR name, NULL or "": "unknown" */
	const char *client_ip;		/* textual address; IPv6 gets the "IPv6:" tag */
	const char *by;			/* our hostname */
	const char *id;			/* session id (an atom) */
	bool esmtp;			/* EHLO rather than HELO */
	bool tls;			/* the client session is TLS */
	bool auth;			/* the client authenticated (the login is never shown) */
	bool utf8;			/* MAIL FROM carried SMTPUTF8 (RFC 6531) */
	const char *tls_version;	/* "TLSv1.3" (when tls) */
	const char *tls_cipher;		/* "TLS_AES_256_GCM_SHA384" (when tls) */
	int tls_bits;			/* secret bits used */
	int tls_alg_bits;		/* the algorithm's bits */
	const char *rcpt;		/* the only recipient, or NULL (none or several) */
	time_t when;			/* the date-time stamp */
	bool utc;			/* write the date in UTC rather than local time */
};

/*
 * received_protocol - the RFC 3848 / RFC 6531 "with" keyword: SMTP, ESMTP,
 * ESMTPS, ESMTPA, ESMTPSA, UTF8SMTP, UTF8SMTPS, UTF8SMTPA, UTF8SMTPSA.
 */
const char *received_protocol(const struct received_info *ri);

/*
 * received_build - write "Received: from ... by ... with ... id ...;
 * date", folded with CRLF TAB between clauses, no trailing CRLF. Returns
 * the length, or -1 when size is too small (buf then holds "").
 */
int received_build(const struct received_info *ri, char *buf, size_t size);

#endif
