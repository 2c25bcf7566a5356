/*
 * dkim_keycache.c - decoded DKIM public keys, kept between messages.
 *
 * libopendkim turns the p= of every key record it fetches into an
 * EVP_PKEY with d2i_PUBKEY_bio(), once per signature per message. Under
 * OpenSSL 3.0 each call builds a decoder chain from every provider's
 * decoders under a global read-write lock: profiled at 46% of ravelin's
 * CPU with DKIM-signed mail (the RSA verification itself: 8%), and worse
 * as threads contend for the lock. The key of a busy signing domain
 * changes once in months.
 *
 * So this file defines d2i_PUBKEY_bio() in the executable. The dynamic
 * linker binds libopendkim's call to it (a definition in the executable
 * comes first in symbol lookup, as for malloc), and it answers from a
 * small cache keyed by the exact DER bytes, handing out a new reference
 * to the same immutable key; libopendkim's EVP_PKEY_free() drops that
 * reference only. Anything it does not recognise (not a memory BIO, a
 * caller passing a reuse pointer) goes to OpenSSL's own function. The
 * same bytes always decode to the same key, so a hit answers exactly
 * what OpenSSL would; DNS caching and TTLs still decide which bytes
 * libopendkim gets.
 *
 * Public:
 *   dkim_keycache_init(), dkim_keycache_stats(), dkim_keycache_clear(),
 *   d2i_PUBKEY_bio() (the interposed OpenSSL function)
 */

/* System. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Libraries. */
#include <openssl/bio.h>
#include <openssl/evp.h>
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

typedef EVP_PKEY *d2i_pubkey_bio_fn(BIO *, EVP_PKEY **);

static pthread_mutex_t keycache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct keycache_slot keycache[KEYCACHE_SLOTS];
static unsigned long keycache_hits, keycache_misses;
static d2i_pubkey_bio_fn *keycache_real;
static pthread_once_t keycache_once = PTHREAD_ONCE_INIT;

/* find_real - OpenSSL's own d2i_PUBKEY_bio, the next definition after ours. */
static void
find_real(void)
{
	keycache_real = (d2i_pubkey_bio_fn *)dlsym(RTLD_NEXT, "d2i_PUBKEY_bio");
}

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

/* real_decode - OpenSSL's decoding, for misses and what we do not cache. */
static EVP_PKEY *
real_decode(BIO *bp, EVP_PKEY **a)
{
	pthread_once(&keycache_once, find_real);
	if (keycache_real && keycache_real != d2i_PUBKEY_bio)
		return keycache_real(bp, a);
	return ASN1_d2i_bio_of(EVP_PKEY, EVP_PKEY_new, d2i_PUBKEY, bp, a);
}

/* d2i_PUBKEY_bio - OpenSSL's function, answered from the cache when it can. */
EVP_PKEY *
d2i_PUBKEY_bio(BIO *bp, EVP_PKEY **a)
{
	char *data = NULL;
	long len;

	if (a != NULL || bp == NULL || BIO_method_type(bp) != BIO_TYPE_MEM ||
	    (len = BIO_get_mem_data(bp, &data)) <= 0 || len > KEYCACHE_DER_MAX)
		return real_decode(bp, a);

	const unsigned char *der = (const unsigned char *)data;
	uint64_t h = der_hash(der, (size_t)len);
	struct keycache_slot *slot = &keycache[h & (KEYCACHE_SLOTS - 1)];
	EVP_PKEY *pkey = NULL;

	pthread_mutex_lock(&keycache_lock);
	if (slot->pkey && slot->hash == h && slot->len == (size_t)len &&
	    memcmp(slot->der, der, (size_t)len) == 0 && EVP_PKEY_up_ref(slot->pkey)) {
		pkey = slot->pkey;
		keycache_hits++;
	}
	pthread_mutex_unlock(&keycache_lock);
	if (pkey)
		return pkey;

	/* Decode outside the lock: it is the slow part. */
	unsigned char *copy = malloc((size_t)len);
	if (copy)
		memcpy(copy, der, (size_t)len);
	pkey = real_decode(bp, NULL);
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
		slot->len = (size_t)len;
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

/* dkim_keycache_init - resolve OpenSSL's function now, not on a pool thread. */
void
dkim_keycache_init(void)
{
	pthread_once(&keycache_once, find_real);
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
