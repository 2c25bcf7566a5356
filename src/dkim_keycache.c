/*
 * dkim_keycache.c - decoded DKIM public keys, kept between messages.
 *
 * Turning a key record's p= into an EVP_PKEY with d2i_PUBKEY() builds,
 * under OpenSSL 3.0, a decoder chain from every provider's decoders
 * under a global read-write lock: profiled at 46% of ravelin's CPU with
 * DKIM-signed mail when done per message (the RSA verification itself
 * was 8%), and worse as threads contend for the lock. The key of a busy
 * signing domain changes once in months.
 *
 * So decoded keys are cached, keyed by the key type and the exact bytes
 * of p=, and every caller gets a new reference to the same immutable
 * key. The same bytes always decode to the same key, so a hit answers
 * exactly what OpenSSL would; DNS caching and TTLs still decide which
 * bytes come in.
 *
 * RSA verification contexts are kept too, per thread and key (see
 * dkim_keycache_rsa_ctx()).
 *
 * Public:
 *   dkim_keycache_get(), dkim_keycache_rsa_ctx(),
 *   dkim_keycache_thread_clear(), dkim_keycache_stats(),
 *   dkim_keycache_clear()
 */

/* System. */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Libraries. */
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

/* Project. */
#include "dkim_keycache.h"

/* Slots (a power of two); a key that collides replaces the older one. */
#define KEYCACHE_SLOTS 256
/* Larger DER blobs are decoded every time (an RSA-8192 key is ~1.1 KB). */
#define KEYCACHE_DER_MAX 4096

struct keycache_slot {
	uint64_t hash;
	size_t len;
	unsigned char *der;
	EVP_PKEY *pkey;
};

static pthread_mutex_t keycache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct keycache_slot keycache[KEYCACHE_SLOTS];
static unsigned long keycache_hits, keycache_misses;

/* RSA verification contexts kept per thread, by key and digest: setting
 * one up (EVP_PKEY_CTX_new, padding, digest) costs a fifth of the RSA
 * check itself under OpenSSL 3, and a busy signer's key repeats. Each
 * context holds a reference to its key, so a key's address cannot be
 * reused while its context is here. */
#define VCTX_SLOTS 4
struct vctx {
	EVP_PKEY *pkey;
	const EVP_MD *md;
	EVP_PKEY_CTX *ctx;
};
static pthread_key_t vctx_key;
static pthread_once_t vctx_once = PTHREAD_ONCE_INIT;

/* der_hash - FNV-1a over the DER bytes. */
static uint64_t
der_hash(const unsigned char *p, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

/* decode - p= bytes to a key: Ed25519's raw 32 octets (RFC 8463), or an
 * RSA SubjectPublicKeyInfo, or a bare RSAPublicKey as some publish. */
static EVP_PKEY *
decode(bool ed25519, const unsigned char *der, size_t len)
{
	const unsigned char *p = der;
	EVP_PKEY *k;

	if (ed25519)
		return len == 32 ? EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, der, len)
				 : NULL;
	if ((k = d2i_PUBKEY(NULL, &p, (long)len)) != NULL && p == der + len) {
		if (EVP_PKEY_get_base_id(k) == EVP_PKEY_RSA)
			return k;
	}
	EVP_PKEY_free(k);
	p = der;
	k = d2i_PublicKey(EVP_PKEY_RSA, NULL, &p, (long)len);
	if (k != NULL && p != der + len) {
		EVP_PKEY_free(k);
		k = NULL;
	}
	return k;
}

/* dkim_keycache_get - see dkim_keycache.h. */
EVP_PKEY *
dkim_keycache_get(bool ed25519, const unsigned char *der, size_t len)
{
	if (len == 0 || len > KEYCACHE_DER_MAX)
		return decode(ed25519, der, len);

	uint64_t h = der_hash(der, len) ^ (uint64_t)ed25519;
	struct keycache_slot *slot = &keycache[h & (KEYCACHE_SLOTS - 1)];
	EVP_PKEY *pkey = NULL;

	pthread_mutex_lock(&keycache_lock);
	if (slot->pkey && slot->hash == h && slot->len == len &&
	    memcmp(slot->der, der, len) == 0 && EVP_PKEY_up_ref(slot->pkey)) {
		pkey = slot->pkey;
		keycache_hits++;
	}
	pthread_mutex_unlock(&keycache_lock);
	if (pkey)
		return pkey;

	/* Decode outside the lock: it is the slow part. */
	unsigned char *copy = malloc(len);
	if (copy)
		memcpy(copy, der, len);
	pkey = decode(ed25519, der, len);
	if (!pkey || !copy) {
		free(copy);
		return pkey;
	}
	EVP_PKEY *old = NULL;
	unsigned char *old_der = NULL;
	if (EVP_PKEY_up_ref(pkey)) {
		pthread_mutex_lock(&keycache_lock);
		old = slot->pkey;
		old_der = slot->der;
		slot->hash = h;
		slot->len = len;
		slot->der = copy;
		slot->pkey = pkey;
		keycache_misses++;
		pthread_mutex_unlock(&keycache_lock);
		copy = NULL;
	}
	free(copy);
	free(old_der);
	EVP_PKEY_free(old);
	return pkey;
}

/* vctx_free - a thread's contexts (its exit, or dkimv_lib_free()). */
static void
vctx_free(void *p)
{
	struct vctx *c = p;

	for (int i = 0; c != NULL && i < VCTX_SLOTS; i++)
		EVP_PKEY_CTX_free(c[i].ctx);
	free(c);
}

/* vctx_init - the thread-specific key, once. */
static void
vctx_init(void)
{
	(void)pthread_key_create(&vctx_key, vctx_free);
}

/* dkim_keycache_rsa_ctx - this thread's verification context for pkey and md, set up
 * when missing (the oldest slot makes room); NULL on failure. */
EVP_PKEY_CTX *
dkim_keycache_rsa_ctx(EVP_PKEY *pkey, const EVP_MD *md)
{
	struct vctx *c;

	(void)pthread_once(&vctx_once, vctx_init);
	c = pthread_getspecific(vctx_key);
	EVP_PKEY_CTX *ctx;

	if (c == NULL) {
		if ((c = calloc(VCTX_SLOTS, sizeof *c)) == NULL)
			return NULL;
		(void)pthread_setspecific(vctx_key, c);
	}
	for (int i = 0; i < VCTX_SLOTS; i++)
		if (c[i].ctx != NULL && c[i].pkey == pkey && c[i].md == md) {
			if (i > 0) {	/* most recent first */
				struct vctx hit = c[i];

				memmove(&c[1], &c[0], (size_t)i * sizeof *c);
				c[0] = hit;
			}
			return c[0].ctx;
		}
	ctx = EVP_PKEY_CTX_new(pkey, NULL);
	if (ctx == NULL || EVP_PKEY_verify_init(ctx) != 1 ||
	    EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) != 1 ||
	    EVP_PKEY_CTX_set_signature_md(ctx, md) != 1) {
		EVP_PKEY_CTX_free(ctx);
		return NULL;
	}
	EVP_PKEY_CTX_free(c[VCTX_SLOTS - 1].ctx);
	memmove(&c[1], &c[0], (VCTX_SLOTS - 1) * sizeof *c);
	c[0] = (struct vctx){ pkey, md, ctx };
	return ctx;
}

/* dkim_keycache_thread_clear - see dkim_keycache.h. */
void
dkim_keycache_thread_clear(void)
{
	(void)pthread_once(&vctx_once, vctx_init);
	vctx_free(pthread_getspecific(vctx_key));
	(void)pthread_setspecific(vctx_key, NULL);
}

/* dkim_keycache_stats - hits and misses so far (tests, logs). */
void
dkim_keycache_stats(unsigned long *hits, unsigned long *misses)
{
	pthread_mutex_lock(&keycache_lock);
	*hits = keycache_hits;
	*misses = keycache_misses;
	pthread_mutex_unlock(&keycache_lock);
}

/* dkim_keycache_clear - drop every cached key (shutdown, leak checks). */
void
dkim_keycache_clear(void)
{
	pthread_mutex_lock(&keycache_lock);
	for (size_t i = 0; i < KEYCACHE_SLOTS; i++) {
		EVP_PKEY_free(keycache[i].pkey);
		free(keycache[i].der);
		memset(&keycache[i], 0, sizeof(keycache[i]));
	}
	pthread_mutex_unlock(&keycache_lock);
}
