/*
 * tls.c - OpenSSL 3 contexts for the listeners and for the backend.
 *
 * Only builds and describes contexts and SSL objects; the session code
 * wraps them in libevent's bufferevent_openssl (STARTTLS as a filter over
 * the plain bufferevent, implicit TLS as an accepting socket bufferevent).
 * Defaults: TLS 1.2 at least, no compression, no renegotiation, server
 * cipher preference, one TLS 1.3 ticket per handshake with per-context
 * random ticket keys (so a reload also rotates them), a bounded server
 * session cache, and idle buffers released (most SMTP sessions are idle
 * most of the time).
 *
 * Public:
 *   tls_server_new(), tls_server_ref(), tls_server_unref(),
 *   tls_server_ssl_new(), tls_server_ctx(), tls_client_new(),
 *   tls_client_ref(), tls_client_unref(), tls_client_ssl_new(),
 *   tls_client_verifies(), tls_version(), tls_cipher(), tls_cipher_bits(),
 *   tls_describe(), tls_peer_verified(), tls_error_string()
 */

/* System. */
#include <arpa/inet.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Libraries. */
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

/* Project. */
#include "fmt.h"
#include "tls.h"

/* Server sessions kept for TLS 1.2 resumption by session id. */
#define TLS_SESS_CACHE_SIZE 1024

struct tls_server {
	atomic_int refs;
	SSL_CTX *ctx;
};

struct tls_client {
	atomic_int refs;
	SSL_CTX *ctx;
	char *verify_name; /* NULL: no SNI, no name check */
	bool verify;	   /* a trust store was configured */
	bool name_is_ip;
};

/* tls_error_string - the oldest queued OpenSSL error, then clear the queue. */
char *
tls_error_string(const char *what, char *buf, size_t len)
{
	unsigned long e = ERR_get_error();
	const char *reason = e ? ERR_reason_error_string(e) : NULL;
	char tmp[256];

	if (e && reason == NULL) {
		ERR_error_string_n(e, tmp, sizeof(tmp));
		reason = tmp;
	}
	if (len > 0)
		fmt_snprintf(buf, len, "%s%s%s", what ? what : "", what && reason ? ": " : "",
			 reason ? reason : "");
	ERR_clear_error();
	return buf;
}

/* tls_parse_proto - map a configured protocol name to its version number. */
static int
tls_parse_proto(const char *s)
{
	if (s == NULL || *s == '\0' || strcasecmp(s, "TLSv1.2") == 0)
		return TLS1_2_VERSION;
	if (strcasecmp(s, "TLSv1.3") == 0)
		return TLS1_3_VERSION;
	if (strcasecmp(s, "TLSv1.1") == 0)
		return TLS1_1_VERSION;
	if (strcasecmp(s, "TLSv1") == 0 || strcasecmp(s, "TLSv1.0") == 0)
		return TLS1_VERSION;
	return -1;
}

/* tls_ctx_common - settings shared by both sides; 0 or -1 with err set. */
static int
tls_ctx_common(SSL_CTX *ctx, const char *min_proto, const char *ciphers,
	       const char *ciphersuites, char *err, size_t errlen)
{
	int v = tls_parse_proto(min_proto);

	if (v < 0) {
		fmt_snprintf(err, errlen, "unknown minimum TLS protocol \"%s\" (TLSv1.2 or TLSv1.3)",
			 min_proto);
		return -1;
	}
	if (!SSL_CTX_set_min_proto_version(ctx, v)) {
		tls_error_string("cannot set the minimum TLS protocol", err, errlen);
		return -1;
	}
	/*
	 * Compression invites CRIME-style attacks; renegotiation is a DoS
	 * vector and useless for SMTP. A peer that closes without
	 * close_notify is normal for SMTP, whose framing (QUIT, the final
	 * dot) makes truncation harmless, so treat it as a clean EOF:
	 * libevent 2.1 otherwise reports OpenSSL 3's "unexpected eof" as an
	 * error even with dirty shutdown allowed.
	 */
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
					 SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_SSLv2 |
					 SSL_OP_NO_SSLv3);
	/* bufferevent_openssl may retry a write from a moved buffer. */
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
				      SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	if (ciphers != NULL && *ciphers != '\0' && !SSL_CTX_set_cipher_list(ctx, ciphers)) {
		tls_error_string("bad TLS cipher list", err, errlen);
		return -1;
	}
	if (ciphersuites != NULL && *ciphersuites != '\0' &&
	    !SSL_CTX_set_ciphersuites(ctx, ciphersuites)) {
		tls_error_string("bad TLS 1.3 cipher suites", err, errlen);
		return -1;
	}
	return 0;
}

/* tls_server_new - build a server context from a certificate chain and key. */
struct tls_server *
tls_server_new(const char *cert, const char *key, const char *min_proto, const char *ciphers,
	       const char *ciphersuites, char *err, size_t errlen)
{
	struct tls_server *srv;
	SSL_CTX *ctx;
	char msg[512];

	ERR_clear_error();
	if (cert == NULL || *cert == '\0' || key == NULL || *key == '\0') {
		fmt_snprintf(err, errlen, "tls_certificate and tls_key are both required");
		return NULL;
	}
	if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL) {
		tls_error_string("SSL_CTX_new", err, errlen);
		return NULL;
	}
	if (tls_ctx_common(ctx, min_proto, ciphers, ciphersuites, err, errlen) < 0)
		goto fail;
	SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
	/* Old clients that only offer DHE get parameters matching the key. */
	SSL_CTX_set_dh_auto(ctx, 1);
	SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"ravelin", 7);
	SSL_CTX_sess_set_cache_size(ctx, TLS_SESS_CACHE_SIZE);
	SSL_CTX_set_num_tickets(ctx, 1);

	if (!SSL_CTX_use_certificate_chain_file(ctx, cert)) {
		fmt_snprintf(msg, sizeof(msg), "tls_certificate %s", cert);
		tls_error_string(msg, err, errlen);
		goto fail;
	}
	if (!SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM)) {
		/* Loading already compares the key with the certificate. */
		if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH)
			goto mismatch;
		fmt_snprintf(msg, sizeof(msg), "tls_key %s", key);
		tls_error_string(msg, err, errlen);
		goto fail;
	}
	if (!SSL_CTX_check_private_key(ctx)) {
mismatch:
		fmt_snprintf(msg, sizeof(msg), "tls_key %s does not match tls_certificate %s", key,
			 cert);
		tls_error_string(msg, err, errlen);
		goto fail;
	}
	if ((srv = calloc(1, sizeof(*srv))) == NULL) {
		fmt_snprintf(err, errlen, "out of memory");
		goto fail;
	}
	atomic_init(&srv->refs, 1);
	srv->ctx = ctx;
	return srv;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

/* tls_server_ref - take one more reference. */
struct tls_server *
tls_server_ref(struct tls_server *srv)
{
	if (srv != NULL)
		atomic_fetch_add(&srv->refs, 1);
	return srv;
}

/* tls_server_unref - drop a reference; live SSL objects keep the SSL_CTX. */
void
tls_server_unref(struct tls_server *srv)
{
	if (srv == NULL || atomic_fetch_sub(&srv->refs, 1) != 1)
		return;
	SSL_CTX_free(srv->ctx);
	free(srv);
}

/* tls_server_ssl_new - a new server-side connection object. */
SSL *
tls_server_ssl_new(struct tls_server *srv)
{
	SSL *ssl;

	if (srv == NULL || (ssl = SSL_new(srv->ctx)) == NULL)
		return NULL;
	SSL_set_accept_state(ssl);
	return ssl;
}

/* tls_server_ctx - the context itself, for callers that need OpenSSL. */
SSL_CTX *
tls_server_ctx(struct tls_server *srv)
{
	return srv ? srv->ctx : NULL;
}

/* tls_client_load_ca - install the trust store: "system", a file or a dir. */
static int
tls_client_load_ca(SSL_CTX *ctx, const char *ca_file, char *err, size_t errlen)
{
	struct stat st;
	char msg[512];
	int ok;

	if (strcmp(ca_file, "system") == 0)
		ok = SSL_CTX_set_default_verify_paths(ctx);
	else if (stat(ca_file, &st) == 0 && S_ISDIR(st.st_mode))
		ok = SSL_CTX_load_verify_locations(ctx, NULL, ca_file);
	else
		ok = SSL_CTX_load_verify_locations(ctx, ca_file, NULL);
	if (!ok) {
		fmt_snprintf(msg, sizeof(msg), "backend CA %s", ca_file);
		tls_error_string(msg, err, errlen);
		return -1;
	}
	return 0;
}

/* tls_client_new - build the backend-side context. */
struct tls_client *
tls_client_new(const char *ca_file, const char *verify_name, const char *min_proto,
	       const char *ciphers, const char *ciphersuites, char *err, size_t errlen)
{
	struct tls_client *cli;
	unsigned char addr[16];
	SSL_CTX *ctx;

	ERR_clear_error();
	if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL) {
		tls_error_string("SSL_CTX_new", err, errlen);
		return NULL;
	}
	if (tls_ctx_common(ctx, min_proto, ciphers, ciphersuites, err, errlen) < 0)
		goto fail;
	/* One backend, few connections: resumption is not worth the state. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	if (ca_file != NULL && *ca_file != '\0') {
		if (tls_client_load_ca(ctx, ca_file, err, errlen) < 0)
			goto fail;
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	} else {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	}
	if ((cli = calloc(1, sizeof(*cli))) == NULL) {
		fmt_snprintf(err, errlen, "out of memory");
		goto fail;
	}
	atomic_init(&cli->refs, 1);
	cli->ctx = ctx;
	cli->verify = ca_file != NULL && *ca_file != '\0';
	if (verify_name != NULL && *verify_name != '\0') {
		if ((cli->verify_name = strdup(verify_name)) == NULL) {
			fmt_snprintf(err, errlen, "out of memory");
			free(cli);
			goto fail;
		}
		cli->name_is_ip = inet_pton(AF_INET, verify_name, addr) == 1 ||
				  inet_pton(AF_INET6, verify_name, addr) == 1;
	}
	return cli;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

/* tls_client_ref - take one more reference. */
struct tls_client *
tls_client_ref(struct tls_client *cli)
{
	if (cli != NULL)
		atomic_fetch_add(&cli->refs, 1);
	return cli;
}

/* tls_client_unref - drop a reference; frees at zero. */
void
tls_client_unref(struct tls_client *cli)
{
	if (cli == NULL || atomic_fetch_sub(&cli->refs, 1) != 1)
		return;
	SSL_CTX_free(cli->ctx);
	free(cli->verify_name);
	free(cli);
}

/* tls_client_verifies - whether the peer's certificate is checked. */
bool
tls_client_verifies(const struct tls_client *cli)
{
	return cli != NULL && cli->verify;
}

/* tls_client_ssl_new - a connect-state SSL with SNI and name checks set. */
SSL *
tls_client_ssl_new(struct tls_client *cli)
{
	SSL *ssl;

	if (cli == NULL || (ssl = SSL_new(cli->ctx)) == NULL)
		return NULL;
	SSL_set_connect_state(ssl);
	if (cli->verify_name == NULL)
		return ssl;
	if (cli->name_is_ip) {
		/* RFC 6066 forbids IP literals in SNI; check the IP SAN only. */
		if (cli->verify &&
		    !X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), cli->verify_name))
			goto fail;
		return ssl;
	}
	if (!SSL_set_tlsext_host_name(ssl, cli->verify_name))
		goto fail;
	if (cli->verify) {
		SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		if (!SSL_set1_host(ssl, cli->verify_name))
			goto fail;
	}
	return ssl;
fail:
	SSL_free(ssl);
	return NULL;
}

/* tls_version - the negotiated protocol version's name. */
const char *
tls_version(const SSL *ssl)
{
	/* Before the handshake SSL_get_version names the method's maximum. */
	if (ssl == NULL || SSL_get_current_cipher(ssl) == NULL)
		return "none";
	return SSL_get_version(ssl);
}

/* tls_cipher - the negotiated cipher's name. */
const char *
tls_cipher(const SSL *ssl)
{
	const SSL_CIPHER *c = ssl ? SSL_get_current_cipher(ssl) : NULL;

	return c ? SSL_CIPHER_get_name(c) : "none";
}

/* tls_cipher_bits - the negotiated cipher's secret (and algorithm) bits. */
int
tls_cipher_bits(const SSL *ssl, int *alg_bits)
{
	const SSL_CIPHER *c = ssl ? SSL_get_current_cipher(ssl) : NULL;
	int alg = 0, bits = 0;

	if (c != NULL)
		bits = SSL_CIPHER_get_bits(c, &alg);
	if (alg_bits != NULL)
		*alg_bits = alg;
	return bits;
}

/* tls_describe - "VERSION CIPHER BITS/ALGBITS" for logs and headers. */
char *
tls_describe(const SSL *ssl, char *buf, size_t len)
{
	int alg, bits = tls_cipher_bits(ssl, &alg);

	if (len > 0)
		fmt_snprintf(buf, len, "%s %s %d/%d", tls_version(ssl), tls_cipher(ssl), bits, alg);
	return buf;
}

/* tls_peer_verified - a certificate came and its chain (and name) verified. */
bool
tls_peer_verified(const SSL *ssl)
{
	X509 *peer;
	bool ok;

	if (ssl == NULL || (peer = SSL_get1_peer_certificate(ssl)) == NULL)
		return false;
	ok = SSL_get_verify_result(ssl) == X509_V_OK;
	X509_free(peer);
	return ok;
}
