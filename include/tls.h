/*
 * tls.h - OpenSSL contexts for ravelin: the server side (STARTTLS and
 * implicit-TLS listeners) and the client side (STARTTLS to the backend).
 *
 * Contexts are refcounted so that a reload can build a new one and swap it
 * in while open sessions keep theirs: every SSL object also holds its own
 * reference to its SSL_CTX, so dropping the last tls_server reference never
 * pulls the context from under a live connection. All functions are safe to
 * call from any thread; a context is read-only once built.
 */
#ifndef RAVELIN_TLS_H
#define RAVELIN_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

struct tls_server;
struct tls_client;

/*
 * tls_server_new - load the certificate chain (PEM, leaf first) and the
 * private key, check they match, and build a server context.
 * min_proto: NULL or "" = "TLSv1.2"; also "TLSv1.3", and (for old peers on
 * port 25, at the operator's request) "TLSv1" / "TLSv1.1".
 * ciphers: the TLS 1.2-and-below list (OpenSSL syntax), NULL = default.
 * ciphersuites: the TLS 1.3 list, NULL = default.
 * Returns NULL with a message (naming the file where one is at fault) in err.
 */
struct tls_server *tls_server_new(const char *cert, const char *key, const char *min_proto,
				  const char *ciphers, const char *ciphersuites, char *err,
				  size_t errlen);
/* tls_server_ref - take one more reference; returns its argument. */
struct tls_server *tls_server_ref(struct tls_server *srv);
/* tls_server_unref - drop one reference; frees at zero; accepts NULL. */
void tls_server_unref(struct tls_server *srv);
/* tls_server_ssl_new - a server-side SSL (accept state) or NULL. */
SSL *tls_server_ssl_new(struct tls_server *srv);
/* tls_server_ctx - the underlying SSL_CTX (borrowed). */
SSL_CTX *tls_server_ctx(struct tls_server *srv);

/*
 * tls_client_new - a client context for STARTTLS to the backend.
 * ca_file: NULL = no verification (opportunistic, any certificate);
 *          "system" = the system trust store; otherwise a PEM bundle.
 * verify_name: the name sent as SNI and, when ca_file is set, checked
 *          against the certificate (SAN/CN, wildcards as RFC 6125); NULL
 *          = no SNI and the chain alone is verified. An IP address literal
 *          is checked against IP SANs and not sent as SNI.
 * min_proto, ciphers, ciphersuites: as for tls_server_new.
 * With verification on, a handshake with a bad chain or name fails
 * (SSL_get_verify_result() tells why).
 */
struct tls_client *tls_client_new(const char *ca_file, const char *verify_name,
				  const char *min_proto, const char *ciphers,
				  const char *ciphersuites, char *err, size_t errlen);
/* tls_client_ref - take one more reference; returns its argument. */
struct tls_client *tls_client_ref(struct tls_client *cli);
/* tls_client_unref - drop one reference; frees at zero; accepts NULL. */
void tls_client_unref(struct tls_client *cli);
/* tls_client_ssl_new - a client-side SSL (connect state) with SNI and host
 * name verification set as configured, or NULL. */
SSL *tls_client_ssl_new(struct tls_client *cli);
/* tls_client_verifies - whether this context verifies the peer. */
bool tls_client_verifies(const struct tls_client *cli);

/* After a completed handshake: */
/* tls_version - "TLSv1.3" etc. ("none" before the handshake). */
const char *tls_version(const SSL *ssl);
/* tls_cipher - the IANA/OpenSSL cipher name, e.g. "TLS_AES_256_GCM_SHA384" ("none"). */
const char *tls_cipher(const SSL *ssl);
/* tls_cipher_bits - secret bits used; *alg_bits (may be NULL) gets the
 * algorithm's bits. */
int tls_cipher_bits(const SSL *ssl, int *alg_bits);
/* tls_describe - "TLSv1.3 TLS_AES_256_GCM_SHA384 256/256" into buf
 * (truncated safely); returns buf. */
char *tls_describe(const SSL *ssl, char *buf, size_t len);
/* tls_peer_verified - a peer certificate was presented and verified. */
bool tls_peer_verified(const SSL *ssl);

/* tls_error_string - the oldest queued OpenSSL error as text (or what when
 * the queue is empty) into buf, and clear the queue; returns buf. */
char *tls_error_string(const char *what, char *buf, size_t len);

#endif
