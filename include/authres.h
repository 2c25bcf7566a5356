/*
 * authres.h - build the Authentication-Results: (RFC 8601) and
 * Received-SPF: (RFC 7208 section 9.1) header fields ravelin adds, and
 * recognise existing Authentication-Results fields that claim our
 * authserv-id (forgeries to remove). Pure: no I/O, no allocation.
 */
#ifndef RAVELIN_AUTHRES_H
#define RAVELIN_AUTHRES_H

#include <stdbool.h>
#include <stddef.h>

/* Longest field we ever build; callers may use smaller buffers. */
#define AUTHRES_MAX 4096

/* One DKIM signature's outcome. */
struct authres_dkim {
	const char *result;	/* pass fail none temperror permerror policy neutral */
	const char *domain;	/* header.d (NULL: omitted) */
	const char *selector;	/* header.s (NULL: omitted) */
	const char *b;		/* header.b prefix, e.g. first 8 chars (NULL: omitted) */
	const char *reason;	/* optional reason="..." (NULL: omitted) */
};

/*
 * What ran for this message. A NULL result means the check did not run and
 * is not listed. Values may come from hostile input: they are quoted or
 * cleaned as needed, CR/LF and other controls never reach the output.
 */
struct authres {
	const char *authserv_id;	/* our hostname */

	const char *spf;		/* pass fail softfail neutral none temperror permerror */
	const char *spf_mailfrom;	/* smtp.mailfrom (address or domain) */
	const char *spf_helo;		/* smtp.helo (when SPF checked HELO) */

	const struct authres_dkim *dkim; /* ndkim entries; ndkim == 0 && dkim_ran: dkim=none */
	size_t ndkim;
	bool dkim_ran;

	const char *dmarc;		/* pass fail none temperror permerror */
	const char *dmarc_from;		/* header.from domain */
	const char *dmarc_policy;	/* record's policy for a comment "(p=reject dis=quarantine)" or NULL */
	const char *dmarc_disposition;	/* applied policy (after pct=), or NULL */

	const char *auth;		/* pass (or fail) when SMTP AUTH was used, else NULL */
	const char *auth_user;		/* smtp.auth */
};

/* Length of "Authentication-Results: "; the value starts there in the
 * built field. */
#define AUTHRES_NAME_LEN 24

/*
 * authres_build - write "Authentication-Results: id; method=result ...",
 * one result per line, folded with CRLF TAB to at most 78 columns where
 * the tokens allow it, no trailing CRLF. Returns the length, or -1 when
 * buflen is too small (buf then holds an empty string).
 */
int authres_build(const struct authres *ar, char *buf, size_t buflen);

/* Inputs for a Received-SPF field built from parts. */
struct authres_spf {
	const char *result;		/* pass fail ... */
	const char *comment;		/* free text for the comment, or NULL */
	const char *client_ip;
	const char *envelope_from;	/* MAIL FROM address ("" for <>) or NULL */
	const char *helo;
	const char *receiver;		/* our hostname */
	const char *identity;		/* mailfrom | helo */
};

/*
 * authres_received_spf - write "Received-SPF: ..." folded to 78 columns,
 * no trailing CRLF. When text is non-NULL it is the SPF library's own
 * field or value (libspf2's SPF_response_get_received_spf(), with or
 * without the "Received-SPF:" name) and is used instead of the parts:
 * refolded, controls removed. Returns the length or -1 (too small/empty).
 */
int authres_received_spf(const struct authres_spf *spf, const char *text, char *buf,
			 size_t buflen);

/*
 * authres_is_ours - true when an Authentication-Results field value
 * names hostname as its authserv-id (case-insensitively, a trailing dot
 * ignored), as a token or quoted-string, after any CFWS, optionally
 * followed by a version ("mx.example.org 1;").
 */
bool authres_is_ours(const char *field_value, const char *hostname);

#endif
