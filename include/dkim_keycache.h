/*
 * dkim_keycache.h - decoded DKIM public keys kept between messages (see
 * dkim_keycache.c for why).
 */
#ifndef RAVELIN_DKIM_KEYCACHE_H
#define RAVELIN_DKIM_KEYCACHE_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/evp.h>

/* dkim_keycache_get - the key for a record's decoded p= (Ed25519 raw key
 * or RSA public key), as a new reference the caller frees; NULL when the
 * bytes are no such key. */
EVP_PKEY *dkim_keycache_get(bool ed25519, const unsigned char *der, size_t len);
/* dkim_keycache_rsa_ctx - this thread's RSA PKCS#1 verification context
 * for pkey and md (kept for the last four keys; the caller must not free
 * it); NULL on failure. */
EVP_PKEY_CTX *dkim_keycache_rsa_ctx(EVP_PKEY *pkey, const EVP_MD *md);
/* dkim_keycache_thread_clear - free the calling thread's contexts (other
 * threads' go when they exit). */
void dkim_keycache_thread_clear(void);
/* dkim_keycache_stats - hits and misses so far. */
void dkim_keycache_stats(unsigned long *hits, unsigned long *misses);
/* dkim_keycache_clear - drop every cached key. */
void dkim_keycache_clear(void);

#endif
