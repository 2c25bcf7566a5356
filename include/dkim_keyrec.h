/*
 * dkim_keyrec.h - DKIM key records (RFC 6376 3.6.1, RFC 8463): pick one
 * among a name's TXT records, check it against the signature that asks
 * for it, and hand out its decoded key.
 */
#ifndef RAVELIN_DKIM_KEYREC_H
#define RAVELIN_DKIM_KEYREC_H

#include <stdbool.h>

#include <openssl/evp.h>

/* What the signature needs from the key. */
struct dkim_keyreq {
	bool sha1;		/* a=rsa-sha1 (else sha256) */
	bool ed25519;		/* a=ed25519-sha256 (else rsa) */
	const char *d;		/* the signature's d= */
	const char *idom;	/* the domain of its i=, NULL when it has none */
};

/*
 * dkim_keyrec_use - recs holds a name's TXT records, one per line. Returns
 * NULL and sets *pkey (a reference the caller frees) when the chosen
 * record gives a usable key for req; else why not (revoked, wrong type,
 * hash not allowed, not for email, t=s with a subdomain i=, RSA under
 * 1024 bits, undecodable p=, ...), *pkey NULL: a permerror.
 */
const char *dkim_keyrec_use(const char *recs, const struct dkim_keyreq *req, EVP_PKEY **pkey);

#endif
