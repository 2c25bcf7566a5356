/*
 * dkim_keyrec.c - DKIM key records (RFC 6376 3.6.1, RFC 8463, RFC 8301):
 * choose one among a name's TXT records, check its tags against the
 * signature asking for it, and decode its p= (through dkim_keycache, so a
 * busy signer's key is decoded once).
 *
 * Public:
 *   dkim_keyrec_use()
 */

/* System. */
#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

/* Libraries. */
#include <openssl/evp.h>

/* Project. */
#include "dkim_canon.h"
#include "dkim_keycache.h"
#include "dkim_keyrec.h"

/* Tags in one key record. */
#define KEYREC_TAGS_MAX 32
/* Decoded p= of up to an 8192-bit RSA key (about 1.1 KB). */
#define KEYREC_DER_MAX 2048

/* pick_key - the key record to use among several TXT records (RFC 6376
 * 3.6.2.2 lets the verifier choose): the first that says v=DKIM1, else
 * the first. Returns its start and sets *len. */
static const char *
pick_key(const char *recs, size_t *len)
{
	for (const char *p = recs; *p != '\0';) {
		const char *q = p, *nl = strchr(p, '\n');

		while (*q == ' ' || *q == '\t')
			q++;
		if (strncmp(q, "v=DKIM1", 7) == 0) {
			*len = nl ? (size_t)(nl - p) : strlen(p);
			return p;
		}
		if (nl == NULL)
			break;
		p = nl + 1;
	}
	*len = strcspn(recs, "\n");
	return recs;
}

/* list_has - whether the colon-separated list (FWS allowed) holds word. */
static bool
list_has(const struct dkim_tag *t, const char *word)
{
	char buf[256];
	char *save = NULL;

	if (!dkim_compact(buf, sizeof buf, t->value, t->valuelen))
		return false;
	for (char *m = strtok_r(buf, ":", &save); m; m = strtok_r(NULL, ":", &save))
		if (strcasecmp(m, word) == 0)
			return true;
	return false;
}

/* check_tags - the record's tags against req; why it is unusable, or NULL. */
static const char *
check_tags(const struct dkim_tag *tags, size_t n, const struct dkim_keyreq *req)
{
	const struct dkim_tag *t;
	bool ed = false;

	if ((t = dkim_tag_find(tags, n, "v")) != NULL &&
	    (t->valuelen != 5 || memcmp(t->value, "DKIM1", 5) != 0 || t != &tags[0]))
		return "key record version";
	if ((t = dkim_tag_find(tags, n, "h")) != NULL && !list_has(t, req->sha1 ? "sha1" : "sha256"))
		return "hash not allowed by key";
	if ((t = dkim_tag_find(tags, n, "s")) != NULL && !list_has(t, "*") && !list_has(t, "email"))
		return "key not for email";
	/* t=s: i= must not be a subdomain of d= (RFC 6376 3.6.1). */
	if ((t = dkim_tag_find(tags, n, "t")) != NULL && list_has(t, "s") && req->idom != NULL &&
	    strcasecmp(req->idom, req->d) != 0)
		return "i= must be d= (key t=s)";
	if ((t = dkim_tag_find(tags, n, "k")) != NULL) {
		if (t->valuelen == 7 && strncasecmp(t->value, "ed25519", 7) == 0)
			ed = true;
		else if (t->valuelen != 3 || strncasecmp(t->value, "rsa", 3) != 0)
			return "unknown key type";
	}
	if (ed != req->ed25519)
		return "key type does not match a=";
	if ((t = dkim_tag_find(tags, n, "p")) == NULL)
		return "key record has no p=";
	if (t->valuelen == 0)
		return "key revoked";
	return NULL;
}

/* dkim_keyrec_use - see dkim_keyrec.h. */
const char *
dkim_keyrec_use(const char *recs, const struct dkim_keyreq *req, EVP_PKEY **pkey)
{
	struct dkim_tag tags[KEYREC_TAGS_MAX];
	unsigned char der[KEYREC_DER_MAX];
	const struct dkim_tag *p;
	size_t len, n, derlen;
	const char *key = pick_key(recs, &len), *why;

	*pkey = NULL;
	if (dkim_tags_parse(key, len, tags, KEYREC_TAGS_MAX, &n) != DKIM_TAGS_OK)
		return "key record malformed";
	if ((why = check_tags(tags, n, req)) != NULL)
		return why;
	p = dkim_tag_find(tags, n, "p");
	if (!dkim_b64_decode(p->value, p->valuelen, der, sizeof der, &derlen) ||
	    (*pkey = dkim_keycache_get(req->ed25519, der, derlen)) == NULL)
		return "key unusable";
	if (!req->ed25519 && EVP_PKEY_get_bits(*pkey) < 1024) {
		EVP_PKEY_free(*pkey);
		*pkey = NULL;
		return "key too small";	/* RFC 8301 section 3.2 */
	}
	return NULL;
}
