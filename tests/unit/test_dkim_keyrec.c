/*
 * test_dkim_keyrec.c - unit tests for dkim_keyrec.c: which record of
 * several is used, and every way a key record can refuse a signature
 * (version, h=, s=, t=s, k=, p= missing, empty, corrupt, RSA under 1024
 * bits), each with the reason that reaches the logs.
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
#include <openssl/x509.h>

/* Project. */
#include "dkim_keycache.h"
#include "dkim_keyrec.h"

#define P1024                                                                          \
	"MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWRiGs5V6NpP3idY6Wk08a5qhdR6wy5bd"   \
	"OKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4h"   \
	"stT5QjvHO9PzoxZyVYLzBfO2EeC3Ip3G+2kryOTIKT+l/K4w3QIDAQAB"
#define PED "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="

/* b64_key - a fresh RSA key of bits as base64 SubjectPublicKeyInfo. */
static char *
b64_key(int bits)
{
	EVP_PKEY *k = EVP_RSA_gen((unsigned)bits);
	unsigned char *der = NULL;
	int len = i2d_PUBKEY(k, &der);
	char *out = malloc((size_t)len * 2 + 4);

	EVP_EncodeBlock((unsigned char *)out, der, len);
	OPENSSL_free(der);
	EVP_PKEY_free(k);
	return out;
}

/* table - every row: record(s), request, expected reason (NULL: usable). */
static void
table(void **state)
{
	static const struct dkim_keyreq rsa = { false, false, "example.com", NULL },
					sha1 = { true, false, "example.com", NULL },
					ed = { false, true, "example.com", NULL },
					sub_i = { false, false, "example.com", "mail.example.com" },
					same_i = { false, false, "example.com", "EXAMPLE.com" };
	static const struct {
		const char *recs;
		const struct dkim_keyreq *req;
		const char *why;
	} rows[] = {
		{ "v=DKIM1; k=rsa; p=" P1024, &rsa, NULL },
		{ "p=" P1024, &rsa, NULL },	/* v= and k= are optional */
		{ "v=spf1 -all\nv=DKIM1; p=" P1024, &rsa, NULL },	/* the DKIM1 one */
		{ "v=DKIM1; k=ed25519; p=" PED, &ed, NULL },
		{ "v=DKIM0; p=" P1024, &rsa, "key record version" },
		{ "p=" P1024 "; v=DKIM1", &rsa, "key record version" },	/* v= not first */
		{ "v=DKIM1; h=sha256; p=" P1024, &sha1, "hash not allowed by key" },
		{ "v=DKIM1; h=sha1 : sha256; p=" P1024, &sha1, NULL },
		{ "v=DKIM1; h=sha0; p=" P1024, &rsa, "hash not allowed by key" },
		{ "v=DKIM1; s=email:other; p=" P1024, &rsa, NULL },
		{ "v=DKIM1; s=*; p=" P1024, &rsa, NULL },
		{ "v=DKIM1; s=other; p=" P1024, &rsa, "key not for email" },
		{ "v=DKIM1; t=y:s; p=" P1024, &sub_i, "i= must be d= (key t=s)" },
		{ "v=DKIM1; t=y:s; p=" P1024, &same_i, NULL },
		{ "v=DKIM1; t=y; p=" P1024, &sub_i, NULL },
		{ "v=DKIM1; k=xxx; p=" P1024, &rsa, "unknown key type" },
		{ "v=DKIM1; k=rsa; p=" P1024, &ed, "key type does not match a=" },
		{ "v=DKIM1; k=ed25519; p=" PED, &rsa, "key type does not match a=" },
		{ "v=DKIM1; k=rsa", &rsa, "key record has no p=" },
		{ "v=DKIM1; k=rsa; p=", &rsa, "key revoked" },
		{ "v=DKIM1; k=rsa; p=MIGfMA0G", &rsa, "key unusable" },
		{ "v=DKIM1; k=rsa; p=!!!!", &rsa, "key unusable" },
		{ "v=DKIM1; k=ed25519; p=" P1024, &ed, "key unusable" },
		{ "v=DKIM1; k rsa", &rsa, "key record malformed" },
		{ "", &rsa, "key record has no p=" },
	};
	int failed = 0;

	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		EVP_PKEY *k = (EVP_PKEY *)1;
		const char *why = dkim_keyrec_use(rows[i].recs, rows[i].req, &k);

		if ((why == NULL) != (rows[i].why == NULL) ||
		    (why != NULL && strcmp(why, rows[i].why) != 0) || (why == NULL) != (k != NULL)) {
			fprintf(stderr, "row %zu: got %s, want %s\n", i, why ? why : "usable",
				rows[i].why ? rows[i].why : "usable");
			failed++;
		}
		EVP_PKEY_free(k);
	}
	dkim_keycache_clear();
	assert_int_equal(failed, 0);
}

/* rsa_sizes - RSA keys under 1024 bits are refused (RFC 8301 3.2). */
static void
rsa_sizes(void **state)
{
	static const struct dkim_keyreq rsa = { false, false, "example.com", NULL };
	char rec[2048];
	char *small = b64_key(768), *big = b64_key(2048);
	EVP_PKEY *k;

	snprintf(rec, sizeof rec, "v=DKIM1; p=%s", small);
	assert_string_equal(dkim_keyrec_use(rec, &rsa, &k), "key too small");
	assert_null(k);
	snprintf(rec, sizeof rec, "v=DKIM1; p=%s", big);
	assert_null(dkim_keyrec_use(rec, &rsa, &k));
	assert_int_equal(EVP_PKEY_get_bits(k), 2048);
	EVP_PKEY_free(k);
	free(small);
	free(big);
	dkim_keycache_clear();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(table),
		cmocka_unit_test(rsa_sizes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
