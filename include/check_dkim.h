/*
 * check_dkim.h - DKIM verification (RFC 6376, RFC 8463 ed25519, RFC 8301)
 * on OpenSSL, fed while the message streams in; key lookups go through
 * ravelin's resolver (or any TXT lookup function).
 *
 * One dkimv_lib per process, shared by all threads. One dkimv per message,
 * used by one thread at a time: header/eoh/body calls may run on the event
 * loop (they never touch DNS: signatures are processed at end of message),
 * dkimv_eom() does the key lookups and blocks up to the resolver's timeout
 * per key, so run it on a check-pool thread unless every key is cached.
 *
 * Result mapping (RFC 8601 words; DESIGN.md section 5 values):
 *   pass       the signature verified (rsa-sha256 or ed25519-sha256)
 *   fail       the cryptographic check failed: header signature or body hash
 *   temperror  the key lookup failed temporarily (timeout, SERVFAIL)
 *   permerror  everything else that makes a signature unusable: syntax,
 *              no key (NXDOMAIN/no TXT), revoked key (p=), key/hash/type
 *              mismatch, key under 1024 bits, expired or future signature,
 *              l= longer than the body, and rsa-sha1 (RFC 8301 section 3.1:
 *              verifiers MUST NOT consider rsa-sha1 signatures valid; the
 *              reason says "rsa-sha1 not accepted")
 *   none       the message carries no DKIM-Signature
 * Best result over all signatures: pass > temperror > fail > permerror > none
 * (a temporary error ranks above fail: a retry may still pass).
 */
#ifndef RAVELIN_CHECK_DKIM_H
#define RAVELIN_CHECK_DKIM_H

#include <stdbool.h>
#include <stddef.h>

struct dns;
struct dkimv_lib;
struct dkimv;

enum dkimv_result {
	DKIMV_NONE = 0,
	DKIMV_PERMERROR,
	DKIMV_FAIL,
	DKIMV_TEMPERROR,
	DKIMV_PASS,		/* ordered: a larger value is a better result */
};

/* Outcome of one TXT lookup (see dkimv_txt_fn). */
enum dkimv_txt_status {
	DKIMV_TXT_OK = 0,	/* out holds the records */
	DKIMV_TXT_NOTFOUND,	/* NXDOMAIN or no TXT record */
	DKIMV_TXT_TEMPFAIL,	/* timeout, SERVFAIL, resolver error */
};

/*
 * A TXT lookup: write every TXT record of name into out (each record's
 * character-strings concatenated, records separated by '\n', control
 * characters inside a record replaced by spaces, NUL-terminated) and
 * return a dkimv_txt_status. Must be safe to call from several threads.
 */
typedef enum dkimv_txt_status (*dkimv_txt_fn)(void *arg, const char *name, char *out,
					      size_t outlen);

/* Limits on what one message may cost. */
#define DKIMV_MAX_SIGS 16	/* signatures reported (and verified) per message */

/* One signature's outcome. Strings are empty when unknown. */
struct dkimv_sig {
	enum dkimv_result result;
	char domain[256];	/* d= */
	char selector[64];	/* s= (longer selectors are cut) */
	char b[9];		/* first 8 characters of b= (header.b) */
	char algorithm[24];	/* a=, e.g. rsa-sha256 */
	char reason[80];	/* why it is not a pass, for logs and reason= */
};

/*
 * dkimv_lib_new - the verifier's shared settings. Keys are looked up
 * through dns (ravelin's resolver, see dns.h) when keyfile is NULL; with
 * a keyfile ("selector._domainkey.domain<white space>record" lines, as
 * OpenDKIM's key files) keys come from that file instead (tests, tools).
 * Returns NULL with a message in err on failure.
 */
struct dkimv_lib *dkimv_lib_new(struct dns *dns, const char *keyfile, char *err, size_t errlen);

/* dkimv_lib_set_txt_lookup - route key lookups through fn(arg, ...)
 * instead (tests, or another resolver). Call before any dkimv_new(). */
void dkimv_lib_set_txt_lookup(struct dkimv_lib *lib, dkimv_txt_fn fn, void *arg);

/* dkimv_lib_set_time - verify as if the clock said now (0: the real
 * clock); for expiry tests with fixed vectors. */
void dkimv_lib_set_time(struct dkimv_lib *lib, long long now);

/* dkimv_lib_free - release the library handle; accepts NULL. */
void dkimv_lib_free(struct dkimv_lib *lib);

/* dkimv_new - start verifying one message; id is the session id (kept
 * for logs). NULL on allocation failure. */
struct dkimv *dkimv_new(struct dkimv_lib *lib, const char *id);

/* dkimv_header - one complete header field "Name: value", possibly folded
 * (CRLF + WSP inside), without the trailing CRLF. */
void dkimv_header(struct dkimv *v, const char *field, size_t len);

/* dkimv_eoh - end of the header. Returns true when the body is needed
 * (the message carries at least one usable signature). */
bool dkimv_eoh(struct dkimv *v);

/* dkimv_body - body bytes in CRLF form, dot-stuffing undone, without the
 * terminating ".CRLF"; any chunking. */
void dkimv_body(struct dkimv *v, const unsigned char *buf, size_t len);

/* dkimv_eom - end of message: fetch keys and verify. Blocking (DNS). */
void dkimv_eom(struct dkimv *v);

/* Results, valid after dkimv_eom(). */
size_t dkimv_nsigs(const struct dkimv *v);
const struct dkimv_sig *dkimv_sig(const struct dkimv *v, size_t i);
/* dkimv_best - the best result; *domain (when non-NULL) gets its d= ("" when none). */
enum dkimv_result dkimv_best(const struct dkimv *v, const char **domain);
/* dkimv_free - release a verifier; accepts NULL. */
void dkimv_free(struct dkimv *v);

/* dkimv_result_str - "pass", "fail", "none", "temperror", "permerror". */
const char *dkimv_result_str(enum dkimv_result r);

#endif
