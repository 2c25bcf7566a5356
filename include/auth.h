/*
 * auth.h - SMTP AUTH (RFC 4954) building blocks: strict base64, the PLAIN
 * (RFC 4616) and LOGIN mechanisms' decoding, the auth_users password file
 * with crypt(3) verification, and sender ownership (sender_logins).
 *
 * Everything here is pure or read-only after loading, and thread-safe.
 * auth_users_verify() is deliberately slow (yescrypt, bcrypt): run it on
 * the check pool, never on an event loop.
 */
#ifndef RAVELIN_AUTH_H
#define RAVELIN_AUTH_H

#include <stdbool.h>
#include <stddef.h>

struct lists_strset;

/* Buffer sizes, terminating NUL included. A command line is at most 1000
 * octets, so no decoded response can be longer than AUTH_DECODED_MAX. */
#define AUTH_USER_MAX 256
#define AUTH_PASS_MAX 512
#define AUTH_DECODED_MAX 1024

/* The LOGIN mechanism's challenges ("Username:", "Password:"), base64. */
#define AUTH_LOGIN_CHALLENGE_USER "VXNlcm5hbWU6"
#define AUTH_LOGIN_CHALLENGE_PASS "UGFzc3dvcmQ6"

/*
 * Decoding results. Suggested replies (DESIGN.md section 6 and RFC 4954):
 *   AUTH_CANCEL           501 5.7.0 Authentication aborted
 *   AUTH_BAD_BASE64       501 5.5.2 Cannot decode response
 *   AUTH_BAD_FORMAT, AUTH_TOO_LONG, AUTH_AUTHZID
 *                         535 5.7.8 Authentication credentials invalid
 */
enum auth_status {
	AUTH_OK = 0,
	AUTH_CANCEL,	 /* the client sent "*" */
	AUTH_BAD_BASE64, /* not canonical base64 (or empty where not allowed) */
	AUTH_BAD_FORMAT, /* decoded, but not a valid message for the mechanism */
	AUTH_TOO_LONG,	 /* a field does not fit its bound */
	AUTH_AUTHZID,	 /* PLAIN authzid names someone other than the authcid */
};

/* auth_status_str - a short lowercase name for logs ("bad base64"). */
const char *auth_status_str(enum auth_status st);

/*
 * auth_base64_decode - strict RFC 4648 base64: length a multiple of 4,
 * '=' only as final padding, zero unused bits, no white space or other
 * characters. "" decodes to nothing. Writes at most outsize bytes; returns
 * the decoded length, or -1 (malformed or too long for out).
 */
int auth_base64_decode(const char *in, unsigned char *out, size_t outsize);
/* auth_base64_encode - encode with padding, NUL-terminated; returns the
 * length without the NUL, or -1 when outsize is too small. */
int auth_base64_encode(const unsigned char *in, size_t inlen, char *out, size_t outsize);

/*
 * auth_response_decode - one client response of an AUTH exchange: "*"
 * cancels; "=" (the RFC 4954 empty initial response, also taken in a
 * continuation) and "" are empty; anything else is strict base64.
 * Returns AUTH_OK with *outlen set, AUTH_CANCEL, AUTH_BAD_BASE64 or
 * AUTH_TOO_LONG.
 */
enum auth_status auth_response_decode(const char *line, unsigned char *out, size_t outsize,
				      size_t *outlen);

/*
 * auth_plain_decode - an RFC 4616 message "authzid NUL authcid NUL passwd"
 * from its base64 form (initial response or continuation, "*" and "="
 * handled as above). Exactly two NULs; authcid and passwd non-empty; the
 * user name (authcid) and authzid are 1..255 printable, non-space
 * characters (they end up in log lines); passwd at most 511 octets; a
 * non-empty authzid must equal authcid (ravelin has no proxy
 * authorisation). authzid may be NULL when the caller does not want it.
 */
enum auth_status auth_plain_decode(const char *b64, char *authzid, size_t authzid_size,
				   char *user, size_t user_size, char *pass, size_t pass_size);

/* auth_login_decode_user - the LOGIN mechanism's first response (or the
 * initial response of "AUTH LOGIN xxx"): a user name as above. */
enum auth_status auth_login_decode_user(const char *b64, char *user, size_t user_size);
/* auth_login_decode_pass - the LOGIN mechanism's second response: a
 * password of 1..511 octets without NUL. */
enum auth_status auth_login_decode_pass(const char *b64, char *pass, size_t pass_size);

/* auth_user_valid - a user name acceptable to ravelin (as above). */
bool auth_user_valid(const char *user);

/*
 * auth_users - the auth_users file: "user:hash" per line, '#' comments and
 * blank lines; fields after a further ':' are ignored (so shadow-style
 * lines work). A hash starting with '!' or '*' locks the account. Hashes
 * are crypt(3) strings that this libcrypt supports ($y$ yescrypt, $gy$,
 * $7$, $6$ SHA-512, $5$, $2b$ bcrypt, ...); unknown or disabled methods
 * are load errors. Immutable once loaded; refcounted so a verification
 * running on the check pool survives a reload.
 */
struct auth_users;

/* auth_users_load - NULL with "FILE:LINE: message" (or "FILE: errno") in err. */
struct auth_users *auth_users_load(const char *path, char *err, size_t errlen);
/* auth_users_ref - one more reference; returns its argument. */
struct auth_users *auth_users_ref(struct auth_users *u);
/* auth_users_free - drop one reference; frees at zero; accepts NULL. */
void auth_users_free(struct auth_users *u);
/* auth_users_count - number of users. */
size_t auth_users_count(const struct auth_users *u);
/* auth_users_exists - whether the user is listed (for sender checks;
 * never to answer a client differently). */
bool auth_users_exists(const struct auth_users *u, const char *user);

/*
 * auth_users_verify - check a password. BLOCKING (crypt(3) costs tens of
 * milliseconds by design): call it from the check pool. Returns 1 when
 * the password matches, 0 when it does not or the user is unknown or
 * locked, -1 on an internal failure (answer 454 4.7.0 Temporary
 * authentication failure). Unknown and locked users still cost one
 * crypt() with the same settings as the first user's hash, and the result
 * is compared in constant time, so timing does not tell which users exist.
 */
int auth_users_verify(const struct auth_users *u, const char *user, const char *pass);

/*
 * auth_senders - the sender_logins file: "address-or-@domain user[,user...]"
 * per line; users separated by commas and/or white space; '#' comments
 * (whole lines, or after the users).
 * Keys compare case-insensitively, user names exactly. A repeated key is
 * an error. Immutable once loaded; refcounted like auth_users.
 */
struct auth_senders;

struct auth_senders *auth_senders_load(const char *path, char *err, size_t errlen);
struct auth_senders *auth_senders_ref(struct auth_senders *s);
void auth_senders_free(struct auth_senders *s);
size_t auth_senders_count(const struct auth_senders *s);

/*
 * auth_sender_owned - may this authenticated user use this address (the
 * envelope sender, or the From: header address)? address is bare, without
 * angle brackets.
 * - "" (the null sender <>) is always allowed: bounces, vacation replies
 *   and MDNs from webmail legitimately use it, and it claims no identity.
 *   Callers never pass "" for From: (a From: without an address is
 *   refused earlier, DESIGN.md section 11).
 * - With sender_logins (s != NULL), as Postfix's smtpd_sender_login_maps:
 *   the exact address entry if there is one, else the "@domain" entry,
 *   must list the user; an address with neither entry is owned by nobody.
 * - Without (s == NULL): the user owns the address equal to the user
 *   name, and LOCAL@DOMAIN where LOCAL is the user name and DOMAIN is in
 *   local_domains (both compared case-insensitively).
 */
bool auth_sender_owned(const struct auth_senders *s, const struct lists_strset *local_domains,
		       const char *user, const char *address);

#endif
