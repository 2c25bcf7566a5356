/*
 * test_dkim_keycache.c - unit tests for dkim_keycache.c: the same bytes
 * give the same key (a hit), different bytes a different key, exactly
 * what OpenSSL's own decoding gives; garbage is refused and not cached;
 * Ed25519 and RSA keys of the same bytes are told apart; a bare PKCS#1
 * RSAPublicKey is accepted; keys handed out survive a cache clear.
 */

/* System. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Libraries. */
#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

/* Project. */
#include "dkim_keycache.h"

/* make_der - a fresh RSA public key as SubjectPublicKeyInfo DER. */
static unsigned char *
make_der(int bits, int *len)
{
	EVP_PKEY *k = EVP_RSA_gen((unsigned)bits);
	unsigned char *der = NULL;

	assert_non_null(k);
	*len = i2d_PUBKEY(k, &der);
	assert_true(*len > 0);
	EVP_PKEY_free(k);
	return der;
}

/* decode - an RSA key through the cache, as check_dkim.c asks for it. */
static EVP_PKEY *
decode(const unsigned char *der, int len)
{
	return dkim_keycache_get(false, der, (size_t)len);
}

/* same_as_openssl - the key equals OpenSSL's own decoding of der. */
static void
same_as_openssl(EVP_PKEY *k, const unsigned char *der, int len)
{
	const unsigned char *p = der;
	EVP_PKEY *ref = d2i_PUBKEY(NULL, &p, len);

	assert_non_null(ref);
	assert_int_equal(EVP_PKEY_eq(k, ref), 1);
	EVP_PKEY_free(ref);
}

/* hit_and_miss - same bytes: same key and a hit; other bytes: a miss. */
static void
hit_and_miss(void **state)
{
	int la, lb;
	unsigned char *a = make_der(1024, &la), *b = make_der(1024, &lb);
	unsigned long h0, m0, h, m;

	(void)state;
	dkim_keycache_clear();
	dkim_keycache_stats(&h0, &m0);
	EVP_PKEY *k1 = decode(a, la);
	EVP_PKEY *k2 = decode(a, la);
	/* A copy of the bytes elsewhere in memory hits too. (Before b: the
	 * cache is direct-mapped, and b may take a's slot.) */
	unsigned char *a2 = malloc((size_t)la);
	memcpy(a2, a, (size_t)la);
	EVP_PKEY *k4 = decode(a2, la);
	EVP_PKEY *k3 = decode(b, lb);
	assert_non_null(k1);
	assert_ptr_equal(k1, k2);
	assert_ptr_equal(k4, k1);
	assert_ptr_not_equal(k1, k3);
	dkim_keycache_stats(&h, &m);
	assert_int_equal(h - h0, 2);
	assert_int_equal(m - m0, 2);
	same_as_openssl(k1, a, la);
	same_as_openssl(k3, b, lb);
	assert_int_equal(EVP_PKEY_eq(k1, k3), 0);
	/* Keys handed out outlive the cache. */
	dkim_keycache_clear();
	assert_int_equal(EVP_PKEY_get_bits(k1), 1024);
	EVP_PKEY *k5 = decode(a, la);
	assert_ptr_not_equal(k5, NULL);
	same_as_openssl(k5, a, la);
	EVP_PKEY_free(k1);
	EVP_PKEY_free(k2);
	EVP_PKEY_free(k3);
	EVP_PKEY_free(k4);
	EVP_PKEY_free(k5);
	free(a2);
	OPENSSL_free(a);
	OPENSSL_free(b);
	dkim_keycache_clear();
}

/* one_byte_differs - a key differing in its last byte is not the cached one. */
static void
one_byte_differs(void **state)
{
	int la;
	unsigned char *a = make_der(1024, &la);
	unsigned char *t = malloc((size_t)la);

	(void)state;
	memcpy(t, a, (size_t)la);
	t[la - 1] ^= 0x02;	/* still a valid modulus byte, another key */
	EVP_PKEY *k1 = decode(a, la);
	EVP_PKEY *k2 = decode(t, la);
	assert_non_null(k1);
	if (k2 != NULL) {
		assert_ptr_not_equal(k1, k2);
		same_as_openssl(k2, t, la);
		EVP_PKEY_free(k2);
	}
	EVP_PKEY_free(k1);
	free(t);
	OPENSSL_free(a);
	dkim_keycache_clear();
}

/* garbage - what OpenSSL refuses is refused, and nothing is cached. */
static void
garbage(void **state)
{
	static const struct {
		const char *name;
		const char *bytes;
		int len;
	} rows[] = {
		{ "text", "not a key at all", 16 },
		{ "truncated sequence", "\x30\x82\x01\x22\x30\x0d", 6 },
		{ "one byte", "\x30", 1 },
	};
	unsigned long h0, m0, h, m;

	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		dkim_keycache_stats(&h0, &m0);
		EVP_PKEY *k = decode((const unsigned char *)rows[i].bytes, rows[i].len);
		dkim_keycache_stats(&h, &m);
		if (k != NULL || h != h0 || m != m0)
			fail_msg("row %zu (%s): decoded or cached", i, rows[i].name);
	}
}

/* pkcs1_and_ed25519 - a bare RSAPublicKey decodes to the same key as its
 * SubjectPublicKeyInfo; 32 raw octets are an Ed25519 key only when asked
 * for one, and the two are cached apart. */
static void
pkcs1_and_ed25519(void **state)
{
	EVP_PKEY *k = EVP_RSA_gen(1024), *ed = NULL, *rsa1;
	unsigned char *pk1 = NULL, raw[32];
	int l1 = i2d_PublicKey(k, &pk1);

	(void)state;
	assert_true(l1 > 0);
	rsa1 = dkim_keycache_get(false, pk1, (size_t)l1);
	assert_non_null(rsa1);
	assert_int_equal(EVP_PKEY_eq(rsa1, k), 1);
	memset(raw, 0x42, sizeof raw);
	assert_null(dkim_keycache_get(false, raw, sizeof raw));
	assert_null(dkim_keycache_get(true, raw, 31));
	ed = dkim_keycache_get(true, raw, sizeof raw);
	assert_non_null(ed);
	assert_int_equal(EVP_PKEY_get_base_id(ed), EVP_PKEY_ED25519);
	EVP_PKEY *ed2 = dkim_keycache_get(true, raw, sizeof raw);
	assert_ptr_equal(ed, ed2);
	EVP_PKEY_free(ed2);
	EVP_PKEY_free(ed);
	EVP_PKEY_free(rsa1);
	EVP_PKEY_free(k);
	OPENSSL_free(pk1);
	dkim_keycache_clear();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(hit_and_miss),
		cmocka_unit_test(one_byte_differs),
		cmocka_unit_test(garbage),
		cmocka_unit_test(pkcs1_and_ed25519),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
