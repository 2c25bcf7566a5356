/*
 * test_tls.c - server and client TLS contexts, handshaking in memory.
 *
 * The test makes its own CA, a server certificate signed by it (DNS and IP
 * names) and an unrelated CA with OpenSSL's APIs in a temporary directory,
 * then runs tls_server against tls_client over a BIO pair: verification on
 * and off, right and wrong names, protocol floors, cipher settings.
 */

/* System. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Libraries. */
#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

/* Project. */
#include "tls.h"

static char dir[] = "/tmp/ravelin-test-tls-XXXXXX";
static char ca_pem[128], other_ca_pem[128], cert_pem[128], key_pem[128], other_key_pem[128];

/* add_ext - add one X.509v3 extension in config syntax. */
static void
add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX ctx;
	X509_EXTENSION *ext;

	X509V3_set_ctx_nodb(&ctx);
	X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
	assert_non_null(ext);
	assert_int_equal(X509_add_ext(cert, ext, -1), 1);
	X509_EXTENSION_free(ext);
}

/* make_cert - a certificate for key, signed by issuer (self-signed if NULL). */
static X509 *
make_cert(EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key, const char *cn, const char *san,
	  long serial)
{
	X509 *c = X509_new();
	X509_NAME *name;

	assert_non_null(c);
	X509_set_version(c, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(c), serial);
	X509_gmtime_adj(X509_getm_notBefore(c), -3600);
	X509_gmtime_adj(X509_getm_notAfter(c), 86400L * 30);
	X509_set_pubkey(c, key);
	name = X509_get_subject_name(c);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
	X509_set_issuer_name(c, issuer ? X509_get_subject_name(issuer) : name);
	if (issuer == NULL) {
		add_ext(c, c, NID_basic_constraints, "critical,CA:TRUE");
		add_ext(c, c, NID_key_usage, "critical,keyCertSign,cRLSign");
		add_ext(c, c, NID_subject_key_identifier, "hash");
	} else {
		add_ext(c, issuer, NID_basic_constraints, "critical,CA:FALSE");
		add_ext(c, issuer, NID_ext_key_usage, "serverAuth");
		add_ext(c, issuer, NID_subject_alt_name, san);
	}
	assert_true(X509_sign(c, issuer_key ? issuer_key : key, EVP_sha256()) > 0);
	return c;
}

/* write_pem - store a certificate or a key as PEM. */
static void
write_pem(const char *path, X509 *cert, EVP_PKEY *key)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	if (cert)
		assert_int_equal(PEM_write_X509(f, cert), 1);
	if (key)
		assert_int_equal(PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL), 1);
	fclose(f);
}

/* setup - the CA, the server certificate and an unrelated CA on disk. */
static int
setup(void **state)
{
	EVP_PKEY *ca_key, *key, *other_key, *stray_key;
	X509 *ca, *cert, *other;

	if (mkdtemp(dir) == NULL)
		return -1;
	snprintf(ca_pem, sizeof(ca_pem), "%s/ca.pem", dir);
	snprintf(other_ca_pem, sizeof(other_ca_pem), "%s/other-ca.pem", dir);
	snprintf(cert_pem, sizeof(cert_pem), "%s/cert.pem", dir);
	snprintf(key_pem, sizeof(key_pem), "%s/key.pem", dir);
	snprintf(other_key_pem, sizeof(other_key_pem), "%s/other-key.pem", dir);

	ca_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	other_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	stray_key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	if (!ca_key || !key || !other_key || !stray_key)
		return -1;
	ca = make_cert(ca_key, NULL, NULL, "Ravelin Test CA", NULL, 1);
	other = make_cert(other_key, NULL, NULL, "Unrelated Test CA", NULL, 2);
	cert = make_cert(key, ca, ca_key, "mx.example.test",
			 "DNS:mx.example.test,DNS:*.relay.example.test,IP:127.0.0.1", 3);
	write_pem(ca_pem, ca, NULL);
	write_pem(other_ca_pem, other, NULL);
	/* The chain file: leaf first, then the CA (as operators ship it). */
	{
		FILE *f = fopen(cert_pem, "w");

		if (f == NULL)
			return -1;
		PEM_write_X509(f, cert);
		PEM_write_X509(f, ca);
		fclose(f);
	}
	write_pem(key_pem, NULL, key);
	write_pem(other_key_pem, NULL, stray_key);
	X509_free(ca);
	X509_free(other);
	X509_free(cert);
	EVP_PKEY_free(ca_key);
	EVP_PKEY_free(key);
	EVP_PKEY_free(other_key);
	EVP_PKEY_free(stray_key);
	return 0;
}

/* teardown - remove the temporary directory. */
static int
teardown(void **state)
{
	unlink(ca_pem);
	unlink(other_ca_pem);
	unlink(cert_pem);
	unlink(key_pem);
	unlink(other_key_pem);
	rmdir(dir);
	return 0;
}

/* step - one handshake step; 1 done, 0 wants more, -1 failed. */
static int
step(SSL *ssl)
{
	int r = SSL_do_handshake(ssl);

	if (r == 1)
		return 1;
	switch (SSL_get_error(ssl, r)) {
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		return 0;
	default:
		return -1;
	}
}

/* handshake - connect two SSLs through a BIO pair; 0 ok, -1 failed. */
static int
handshake(SSL *cli, SSL *srv)
{
	BIO *bc, *bs;
	int cd = 0, sd = 0;

	assert_int_equal(BIO_new_bio_pair(&bc, 0, &bs, 0), 1);
	SSL_set_bio(cli, bc, bc);
	SSL_set_bio(srv, bs, bs);
	for (int i = 0; i < 50 && !(cd == 1 && sd == 1); i++) {
		if (cd == 0)
			cd = step(cli);
		if (sd == 0)
			sd = step(srv);
		if (cd < 0 || sd < 0)
			return -1;
	}
	return cd == 1 && sd == 1 ? 0 : -1;
}

/* exchange - a command and a reply over the established connection. */
static void
exchange(SSL *cli, SSL *srv)
{
	char buf[64];
	int n;

	assert_int_equal(SSL_write(cli, "EHLO client.test\r\n", 18), 18);
	n = SSL_read(srv, buf, sizeof(buf));
	assert_int_equal(n, 18);
	assert_memory_equal(buf, "EHLO client.test\r\n", 18);
	assert_int_equal(SSL_write(srv, "250 ok\r\n", 8), 8);
	n = SSL_read(cli, buf, sizeof(buf));
	assert_int_equal(n, 8);
}

enum ca_choice { CA_NONE, CA_GOOD, CA_OTHER };

struct hs_case {
	const char *name;
	const char *srv_min, *srv_ciphers, *srv_suites;
	enum ca_choice ca;
	const char *verify_name;
	int cli_min, cli_max; /* 0 = leave the context's setting */
	bool ok;
	const char *version;   /* expected when ok (NULL = any) */
	const char *cipher;    /* expected when ok (NULL = any) */
	bool verified;	       /* tls_peer_verified on the client when ok */
	const char *sni;       /* what the server saw (NULL = none) */
	long verify_error;     /* expected SSL_get_verify_result when !ok (0 = any) */
};

static const struct hs_case hs_cases[] = {
	{"no verification, defaults", NULL, NULL, NULL, CA_NONE, NULL, 0, 0, true, "TLSv1.3",
	 NULL, false, NULL, 0},
	{"no verification still sends SNI", NULL, NULL, NULL, CA_NONE, "mx.example.test", 0, 0,
	 true, "TLSv1.3", NULL, false, "mx.example.test", 0},
	{"verified chain and name", NULL, NULL, NULL, CA_GOOD, "mx.example.test", 0, 0, true,
	 "TLSv1.3", NULL, true, "mx.example.test", 0},
	{"name checked case-insensitively", NULL, NULL, NULL, CA_GOOD, "MX.Example.TEST", 0, 0,
	 true, "TLSv1.3", NULL, true, NULL, 0},
	{"wildcard name", NULL, NULL, NULL, CA_GOOD, "a.relay.example.test", 0, 0, true, NULL,
	 NULL, true, "a.relay.example.test", 0},
	{"wildcard covers one label only", NULL, NULL, NULL, CA_GOOD, "b.a.relay.example.test",
	 0, 0, false, NULL, NULL, false, NULL, X509_V_ERR_HOSTNAME_MISMATCH},
	{"wrong name fails", NULL, NULL, NULL, CA_GOOD, "other.example.test", 0, 0, false, NULL,
	 NULL, false, NULL, X509_V_ERR_HOSTNAME_MISMATCH},
	{"verified chain, no name", NULL, NULL, NULL, CA_GOOD, NULL, 0, 0, true, NULL, NULL,
	 true, NULL, 0},
	{"unrelated CA fails", NULL, NULL, NULL, CA_OTHER, "mx.example.test", 0, 0, false, NULL,
	 NULL, false, NULL, X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN},
	{"IP address name matches IP SAN, no SNI", NULL, NULL, NULL, CA_GOOD, "127.0.0.1", 0, 0,
	 true, NULL, NULL, true, NULL, 0},
	{"wrong IP address fails", NULL, NULL, NULL, CA_GOOD, "192.0.2.1", 0, 0, false, NULL,
	 NULL, false, NULL, X509_V_ERR_IP_ADDRESS_MISMATCH},
	{"server TLSv1.3 floor refuses a TLSv1.2 client", "TLSv1.3", NULL, NULL, CA_NONE, NULL,
	 0, TLS1_2_VERSION, false, NULL, NULL, false, NULL, 0},
	{"default floor refuses a TLSv1.1 client", NULL, NULL, NULL, CA_NONE, NULL,
	 TLS1_VERSION, TLS1_1_VERSION, false, NULL, NULL, false, NULL, 0},
	{"explicit TLSv1.2 floor refuses TLSv1.0", "TLSv1.2", NULL, NULL, CA_NONE, NULL,
	 TLS1_VERSION, TLS1_VERSION, false, NULL, NULL, false, NULL, 0},
	{"TLSv1.2 client accepted by default", NULL, NULL, NULL, CA_GOOD, "mx.example.test", 0,
	 TLS1_2_VERSION, true, "TLSv1.2", NULL, true, NULL, 0},
	{"TLSv1.3 floor with a TLSv1.3 client", "TLSv1.3", NULL, NULL, CA_NONE, NULL, 0, 0, true,
	 "TLSv1.3", NULL, false, NULL, 0},
	{"TLS1.2 cipher list honoured", NULL, "ECDHE-ECDSA-AES128-GCM-SHA256", NULL, CA_NONE,
	 NULL, 0, TLS1_2_VERSION, true, "TLSv1.2", "ECDHE-ECDSA-AES128-GCM-SHA256", false, NULL,
	 0},
	{"TLS1.3 suites honoured", NULL, NULL, "TLS_CHACHA20_POLY1305_SHA256", CA_NONE, NULL, 0,
	 0, true, "TLSv1.3", "TLS_CHACHA20_POLY1305_SHA256", false, NULL, 0},
	{"server cipher preference wins", NULL, NULL,
	 "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384", CA_NONE, NULL, 0, 0, true, "TLSv1.3",
	 "TLS_AES_128_GCM_SHA256", false, NULL, 0},
};

/* handshakes - every row of hs_cases. */
static void
handshakes(void **state)
{
	char err[256];

	for (size_t i = 0; i < sizeof(hs_cases) / sizeof(hs_cases[0]); i++) {
		const struct hs_case *c = &hs_cases[i];
		const char *ca = c->ca == CA_GOOD ? ca_pem : c->ca == CA_OTHER ? other_ca_pem : NULL;
		struct tls_server *srv;
		struct tls_client *cli;
		SSL *ss, *cs;
		int rc;

		print_message("case: %s\n", c->name);
		srv = tls_server_new(cert_pem, key_pem, c->srv_min, c->srv_ciphers, c->srv_suites,
				     err, sizeof(err));
		if (srv == NULL)
			fail_msg("%s: tls_server_new: %s", c->name, err);
		cli = tls_client_new(ca, c->verify_name, NULL, NULL, NULL, err, sizeof(err));
		if (cli == NULL)
			fail_msg("%s: tls_client_new: %s", c->name, err);
		assert_int_equal(tls_client_verifies(cli), ca != NULL);
		ss = tls_server_ssl_new(srv);
		cs = tls_client_ssl_new(cli);
		assert_non_null(ss);
		assert_non_null(cs);
		if (c->cli_min)
			SSL_set_min_proto_version(cs, c->cli_min);
		if (c->cli_max)
			SSL_set_max_proto_version(cs, c->cli_max);
		/* A TLS 1.0 client needs SHA-1 signatures: allow them on its side. */
		if (c->cli_min && c->cli_min < TLS1_2_VERSION)
			SSL_set_cipher_list(cs, "DEFAULT:@SECLEVEL=0");
		rc = handshake(cs, ss);
		ERR_clear_error();
		if (c->ok != (rc == 0))
			fail_msg("%s: handshake %s (verify result %ld)", c->name,
				 rc == 0 ? "succeeded" : "failed", SSL_get_verify_result(cs));
		if (c->ok) {
			char desc[128];
			const char *sni = SSL_get_servername(ss, TLSEXT_NAMETYPE_host_name);

			exchange(cs, ss);
			if (c->version && strcmp(tls_version(cs), c->version) != 0)
				fail_msg("%s: version %s", c->name, tls_version(cs));
			if (c->cipher && strcmp(tls_cipher(ss), c->cipher) != 0)
				fail_msg("%s: cipher %s", c->name, tls_cipher(ss));
			if (tls_peer_verified(cs) != c->verified)
				fail_msg("%s: verified %d", c->name, tls_peer_verified(cs));
			if (c->sni && (sni == NULL || strcmp(sni, c->sni) != 0))
				fail_msg("%s: server saw SNI %s", c->name, sni ? sni : "(none)");
			if (c->verify_name && strcmp(c->verify_name, "127.0.0.1") == 0 && sni)
				fail_msg("%s: IP literal sent as SNI", c->name);
			/* Both ends describe the same connection. */
			tls_describe(ss, desc, sizeof(desc));
			assert_string_equal(desc, tls_describe(cs, (char[128]){0}, 128));
			/* No renegotiation, no compression on either side. */
			assert_true(SSL_get_options(ss) & SSL_OP_NO_RENEGOTIATION);
			assert_true(SSL_get_options(cs) & SSL_OP_NO_RENEGOTIATION);
			assert_true(SSL_get_options(ss) & SSL_OP_NO_COMPRESSION);
			assert_null(SSL_get_current_compression(ss));
		} else if (c->verify_error) {
			if (SSL_get_verify_result(cs) != c->verify_error)
				fail_msg("%s: verify result %ld, want %ld", c->name,
					 SSL_get_verify_result(cs), c->verify_error);
		}
		SSL_free(ss);
		SSL_free(cs);
		tls_server_unref(srv);
		tls_client_unref(cli);
	}
}

struct err_case {
	const char *name;
	const char *cert, *key, *min, *ciphers, *suites;
	const char *want; /* substring of the error */
};

/* server_errors - broken settings are refused with a useful message. */
static void
server_errors(void **state)
{
	char missing[160];
	const struct err_case cases[] = {
		{"missing certificate file", missing, key_pem, NULL, NULL, NULL, missing},
		{"missing key file", cert_pem, missing, NULL, NULL, NULL, missing},
		{"key does not match", cert_pem, other_key_pem, NULL, NULL, NULL, "does not match"},
		{"certificate is not PEM", key_pem, key_pem, NULL, NULL, NULL, "tls_certificate"},
		{"no certificate configured", NULL, key_pem, NULL, NULL, NULL, "required"},
		{"unknown minimum protocol", cert_pem, key_pem, "SSLv3", NULL, NULL, "SSLv3"},
		{"bad cipher list", cert_pem, key_pem, NULL, "NO-SUCH-CIPHER", NULL, "cipher"},
		{"bad TLS 1.3 suites", cert_pem, key_pem, NULL, NULL, "TLS_NOPE", "suites"},
	};

	snprintf(missing, sizeof(missing), "%s/missing.pem", dir);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char err[512] = "";
		struct tls_server *srv;

		print_message("case: %s\n", cases[i].name);
		srv = tls_server_new(cases[i].cert, cases[i].key, cases[i].min, cases[i].ciphers,
				     cases[i].suites, err, sizeof(err));
		if (srv != NULL)
			fail_msg("%s: accepted", cases[i].name);
		if (strstr(err, cases[i].want) == NULL)
			fail_msg("%s: error \"%s\" lacks \"%s\"", cases[i].name, err, cases[i].want);
	}
}

/* client_errors - a missing trust store or bad protocol is refused. */
static void
client_errors(void **state)
{
	char err[512] = "", missing[160];

	snprintf(missing, sizeof(missing), "%s/missing-ca.pem", dir);
	assert_null(tls_client_new(missing, "mx.example.test", NULL, NULL, NULL, err, sizeof(err)));
	assert_non_null(strstr(err, missing));
	assert_null(tls_client_new(NULL, NULL, "TLSv9", NULL, NULL, err, sizeof(err)));
	assert_non_null(strstr(err, "TLSv9"));
	/* The system store loads (it may be empty on a minimal machine). */
	struct tls_client *cli = tls_client_new("system", "mx.example.test", "TLSv1.3", NULL, NULL,
						err, sizeof(err));
	assert_non_null(cli);
	tls_client_unref(cli);
}

/* reload_keeps_live_sessions - an SSL outlives its context's last unref. */
static void
reload_keeps_live_sessions(void **state)
{
	char err[256];
	struct tls_server *srv = tls_server_new(cert_pem, key_pem, NULL, NULL, NULL, err,
						sizeof(err));
	struct tls_client *cli = tls_client_new(ca_pem, "mx.example.test", NULL, NULL, NULL, err,
						sizeof(err));
	SSL *ss, *cs;

	assert_non_null(srv);
	assert_non_null(cli);
	assert_ptr_equal(tls_server_ref(srv), srv);
	tls_server_unref(srv); /* back to one reference */
	ss = tls_server_ssl_new(srv);
	cs = tls_client_ssl_new(cli);
	tls_server_unref(srv); /* the "reload" drops the old context */
	tls_client_unref(cli);
	assert_int_equal(handshake(cs, ss), 0);
	exchange(cs, ss);
	assert_true(tls_peer_verified(cs));
	SSL_free(ss);
	SSL_free(cs);
	tls_server_unref(NULL);
	tls_client_unref(NULL);
}

/* describe_format - "VERSION CIPHER BITS/ALGBITS", safe when truncated. */
static void
describe_format(void **state)
{
	char err[256], desc[128], tiny[8];
	struct tls_server *srv = tls_server_new(cert_pem, key_pem, NULL, NULL,
						"TLS_AES_256_GCM_SHA384", err, sizeof(err));
	struct tls_client *cli = tls_client_new(NULL, NULL, NULL, NULL, NULL, err, sizeof(err));
	SSL *ss = tls_server_ssl_new(srv), *cs = tls_client_ssl_new(cli);
	int alg = 0;

	assert_string_equal(tls_describe(cs, desc, sizeof(desc)), "none none 0/0");
	assert_int_equal(handshake(cs, ss), 0);
	assert_string_equal(tls_describe(ss, desc, sizeof(desc)),
			    "TLSv1.3 TLS_AES_256_GCM_SHA384 256/256");
	assert_string_equal(tls_version(ss), "TLSv1.3");
	assert_string_equal(tls_cipher(ss), "TLS_AES_256_GCM_SHA384");
	assert_int_equal(tls_cipher_bits(ss, &alg), 256);
	assert_int_equal(alg, 256);
	assert_int_equal(tls_cipher_bits(ss, NULL), 256);
	tls_describe(ss, tiny, sizeof(tiny));
	assert_string_equal(tiny, "TLSv1.3");
	assert_false(tls_peer_verified(ss)); /* no client certificate */
	assert_string_equal(tls_version(NULL), "none");
	SSL_free(ss);
	SSL_free(cs);
	tls_server_unref(srv);
	tls_client_unref(cli);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(handshakes),
		cmocka_unit_test(server_errors),
		cmocka_unit_test(client_errors),
		cmocka_unit_test(reload_keeps_live_sessions),
		cmocka_unit_test(describe_format),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
