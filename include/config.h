/*
 * config.h - ravelin.conf: typed directives, FILE:LINE errors, and an
 * immutable reference-counted configuration object. A reload builds a new
 * object; sessions keep the one they started with until they end.
 */
#ifndef RAVELIN_CONFIG_H
#define RAVELIN_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "log.h"

enum config_profile { PROFILE_INBOUND, PROFILE_SUBMISSION };

/* listen flags */
#define LISTEN_STARTTLS       0x01
#define LISTEN_TLS            0x02
#define LISTEN_REQUIRE_TLS    0x04
#define LISTEN_REQUIRE_AUTH   0x08
#define LISTEN_AUTH_PLAINTEXT 0x10
#define LISTEN_PROXY_PROTOCOL 0x20

struct config_listen {
	char *text;                       /* "0.0.0.0:25" as written */
	struct sockaddr_storage addr;
	socklen_t addrlen;
	enum config_profile profile;
	unsigned flags;
};

enum config_backend_mode { BACKEND_XCLIENT, BACKEND_PROXY, BACKEND_NONE };

/* backend flags */
#define BACKEND_STARTTLS         0x01  /* use STARTTLS when offered */
#define BACKEND_STARTTLS_REQUIRE 0x02  /* fail when not offered or the handshake fails */
#define BACKEND_TLS_VERIFY       0x04  /* verify the certificate (tls_backend_ca) */

struct config_backend {
	char *text;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	enum config_backend_mode mode;
	unsigned flags;
};

struct rules;
struct tls_server;
struct tls_client;
struct auth_users;
struct auth_senders;
struct lists_strset;
struct spoof_conf;
struct lists_netset;

struct config {
	int refs;
	char *path;

	char *hostname;
	enum log_dest log;
	int log_verbose;
	char *stats_socket;
	char *user;
	char *chroot;
	unsigned workers;
	unsigned check_threads;

	struct config_listen *listens;
	size_t nlistens;
	struct config_backend *backends;
	size_t nbackends;

	char *tls_certificate;
	char *tls_key;
	char *tls_min_protocol;
	char *tls_ciphers;
	char *tls_ciphersuites;
	char *tls_backend_ca;
	char *tls_backend_name;

	struct lists_strset *local_domains;
	struct lists_netset *mynetworks;
	struct spoof_conf *spoof;         /* local domains as a list, spoof_protected_names */
	char *auth_users_path;
	char *sender_logins_path;
	unsigned auth_max_failures;       /* per session, then disconnect */
	unsigned auth_max_failures_per_ip;  /* per client address and hour (rate-limit store) */
	unsigned auth_failure_delay_ms;

	char *dns_resolver;
	unsigned dns_timeout_ms;
	char *ratelimit_store;
	char *ratelimit_prefix;
	char **rule_globs;
	size_t nrule_globs;
	char *milter_socket;

	size_t max_message_size;
	unsigned max_recipients;
	unsigned max_errors;
	unsigned max_sessions;
	unsigned max_sessions_per_ip;
	size_t spool_memory;              /* bytes kept in memory before spilling to a temp file */
	unsigned max_header_fields;
	bool bare_newline_normalize;
	bool long_lines_pass;
	bool received_header;             /* prepend our Received: field (proxy mode) */
	unsigned pregreet_ms;             /* wait before the banner to catch early talkers; 0 = off */

	unsigned client_timeout;          /* seconds */
	unsigned data_timeout;
	unsigned backend_connect_timeout;
	unsigned backend_timeout;
	unsigned shutdown_timeout;

	/* Built from the above by the loader (server.c); freed with the config. */
	struct rules *rules;
	struct tls_server *tls;
	struct tls_client *backend_tls;
	struct auth_users *auth_users;
	struct auth_senders *senders;
	char **rule_files;                /* expanded rule_globs, sorted */
	size_t nrule_files;
	void (*release)(struct config *); /* frees the built objects above */
};

/* config_error_fn - receives each error as "FILE:LINE: message". */
typedef void config_error_fn(void *arg, const char *msg);

/* config_load - parse FILE; NULL when there was any error (all reported). */
struct config *config_load(const char *path, config_error_fn *err, void *arg);
struct config *config_ref(struct config *cf);
/* config_unref - drop one reference; frees on the last. Returns NULL. */
struct config *config_unref(struct config *cf);

/* Parsers shared with the rule language and tests. */
int config_parse_duration(const char *s, unsigned *seconds);
int config_parse_size(const char *s, size_t *bytes);
int config_parse_sockaddr(const char *s, int default_port, struct sockaddr_storage *ss, socklen_t *len);
const char *config_profile_name(enum config_profile p);

#endif
