/*
 * test_config.c - unit tests for config.c: durations, sizes (k/m/g as
 * powers of 1024), socket addresses, every directive type with its
 * values, defaults, listen flags and profiles, backend options, include
 * relative to the including file, @FILE lists, and errors reported as
 * FILE:LINE: message with the right line numbers. Configuration files are
 * written to a temporary directory by the tests.
 */

/* System. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Libraries. */
#include <cmocka.h>

/* Project. */
#include "config.h"
#include "lists.h"

#define NROWS(t) (sizeof(t) / sizeof((t)[0]))

static char tmpdir[128];

/* put - write text to a file under tmpdir; returns its path (static). */
static const char *
put(const char *name, const char *text)
{
	static char path[4][256];
	static int slot;
	char *p = path[slot++ % 4];
	FILE *fp;

	snprintf(p, sizeof(path[0]), "%s/%s", tmpdir, name);
	fp = fopen(p, "w");
	assert_non_null(fp);
	fputs(text, fp);
	fclose(fp);
	return p;
}

/* Errors collected from config_load. */
struct errs {
	char msg[16][512];
	int n;
};

/* collect - config_error_fn. */
static void
collect(void *arg, const char *msg)
{
	struct errs *e = arg;

	if (e->n < 16)
		snprintf(e->msg[e->n], sizeof(e->msg[0]), "%s", msg);
	e->n++;
}

/* load_text - write text as NAME and load it. */
static struct config *
load_text(const char *name, const char *text, struct errs *e)
{
	memset(e, 0, sizeof(*e));
	return config_load(put(name, text), collect, e);
}

/* setup - a private temporary directory. */
static int
setup(void **state)
{
	snprintf(tmpdir, sizeof(tmpdir), "%s/ravelin-test-config.XXXXXX",
		 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	return mkdtemp(tmpdir) ? 0 : -1;
}

/* teardown - remove the temporary directory and what the tests put there. */
static int
teardown(void **state)
{
	char cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

/* One duration. */
struct dur_case {
	const char *s;
	int rc;
	unsigned secs;
};

static const struct dur_case dur_cases[] = {
	{ "30", 0, 30 },
	{ "30s", 0, 30 },
	{ "5m", 0, 300 },
	{ "1h", 0, 3600 },
	{ "2d", 0, 172800 },
	{ "0", 0, 0 },
	{ "4294967295", 0, 4294967295u },
	{ "49710d", 0, 49710u * 86400u },
	{ "49711d", -1, 0 },	/* over UINT_MAX seconds */
	{ "4294967296", -1, 0 },
	{ "", -1, 0 },
	{ "s", -1, 0 },
	{ "5x", -1, 0 },
	{ "5ms", -1, 0 },
	{ "5M", -1, 0 },
	{ "5 m", -1, 0 },
	{ " 5", -1, 0 },
	{ "-1", -1, 0 },
	{ "+5", -1, 0 },
	{ "1.5h", -1, 0 },
};

/* parse_duration_table - every row of dur_cases. */
static void
parse_duration_table(void **state)
{
	for (size_t i = 0; i < NROWS(dur_cases); i++) {
		unsigned v = 12345;
		int rc = config_parse_duration(dur_cases[i].s, &v);

		if (rc != dur_cases[i].rc || (rc == 0 && v != dur_cases[i].secs))
			fail_msg("row %zu \"%s\": rc %d value %u, want %d %u", i, dur_cases[i].s, rc, v,
				 dur_cases[i].rc, dur_cases[i].secs);
	}
}

/* One size. */
struct size_case {
	const char *s;
	int rc;
	size_t bytes;
};

static const struct size_case size_cases[] = {
	{ "0", 0, 0 },
	{ "100", 0, 100 },
	{ "1k", 0, 1024 },
	{ "1K", 0, 1024 },
	{ "10m", 0, 10485760 },
	{ "25M", 0, 26214400 },
	{ "2g", 0, 2147483648u },
	{ "17179869183g", 0, 17179869183ull << 30 },
	{ "17179869184g", -1, 0 },	/* 2^64 */
	{ "18446744073709551615", 0, SIZE_MAX },
	{ "18446744073709551616", -1, 0 },
	{ "1kb", -1, 0 },
	{ "k", -1, 0 },
	{ "", -1, 0 },
	{ "1.5m", -1, 0 },
	{ "-1", -1, 0 },
	{ "1t", -1, 0 },
	{ "1 k", -1, 0 },
};

/* parse_size_table - every row of size_cases. */
static void
parse_size_table(void **state)
{
	for (size_t i = 0; i < NROWS(size_cases); i++) {
		size_t v = 12345;
		int rc = config_parse_size(size_cases[i].s, &v);

		if (rc != size_cases[i].rc || (rc == 0 && v != size_cases[i].bytes))
			fail_msg("row %zu \"%s\": rc %d value %zu, want %d %zu", i, size_cases[i].s, rc, v,
				 size_cases[i].rc, size_cases[i].bytes);
	}
}

/* One socket address. */
struct addr_case {
	const char *s;
	int default_port;
	int rc;
	int family;
	const char *ip;
	int port;
};

static const struct addr_case addr_cases[] = {
	{ "127.0.0.1:25", 25, 0, AF_INET, "127.0.0.1", 25 },
	{ "127.0.0.1", 2525, 0, AF_INET, "127.0.0.1", 2525 },
	{ "[::1]:25", 0, 0, AF_INET6, "::1", 25 },
	{ "[::1]", 587, 0, AF_INET6, "::1", 587 },
	{ "[2001:db8::1]:10025", 0, 0, AF_INET6, "2001:db8::1", 10025 },
	{ "[127.0.0.1]:25", 0, 0, AF_INET, "127.0.0.1", 25 },
	{ "*:25", 0, 0, AF_INET, "0.0.0.0", 25 },
	{ ":25", 0, 0, AF_INET, "0.0.0.0", 25 },
	{ "0.0.0.0:65535", 0, 0, AF_INET, "0.0.0.0", 65535 },
	{ "127.0.0.1:1", 0, 0, AF_INET, "127.0.0.1", 1 },
	{ "127.0.0.1", 0, -1, 0, NULL, 0 },	/* no port and no default */
	{ "::1", 25, -1, 0, NULL, 0 },		/* IPv6 needs brackets */
	{ "::1:25", 25, -1, 0, NULL, 0 },
	{ "[::1]:", 25, -1, 0, NULL, 0 },
	{ "[::1", 25, -1, 0, NULL, 0 },
	{ "[::1]25", 25, -1, 0, NULL, 0 },
	{ "[nothing]:25", 25, -1, 0, NULL, 0 },
	{ "127.0.0.1:0", 25, -1, 0, NULL, 0 },
	{ "127.0.0.1:65536", 25, -1, 0, NULL, 0 },
	{ "127.0.0.1:25x", 25, -1, 0, NULL, 0 },
	{ "127.0.0.1:+25", 25, -1, 0, NULL, 0 },
	{ "127.0.0.1:-25", 25, -1, 0, NULL, 0 },
	{ "mx.example.org:25", 25, -1, 0, NULL, 0 },	/* no name resolution */
	{ "127.1:25", 25, -1, 0, NULL, 0 },
	{ "", 25, 0, AF_INET, "0.0.0.0", 25 },
};

/* parse_sockaddr_table - every row of addr_cases. */
static void
parse_sockaddr_table(void **state)
{
	for (size_t i = 0; i < NROWS(addr_cases); i++) {
		const struct addr_case *c = &addr_cases[i];
		struct sockaddr_storage ss;
		socklen_t len = 0;
		char ip[INET6_ADDRSTRLEN] = "";
		int port = 0;
		int rc = config_parse_sockaddr(c->s, c->default_port, &ss, &len);

		if (rc != c->rc)
			fail_msg("row %zu \"%s\": rc %d, want %d", i, c->s, rc, c->rc);
		if (rc < 0)
			continue;
		if (ss.ss_family == AF_INET) {
			struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
			inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip));
			port = ntohs(sin->sin_port);
			if (len != sizeof(*sin))
				fail_msg("row %zu \"%s\": length %u", i, c->s, (unsigned)len);
		} else if (ss.ss_family == AF_INET6) {
			struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
			inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof(ip));
			port = ntohs(sin6->sin6_port);
			if (len != sizeof(*sin6))
				fail_msg("row %zu \"%s\": length %u", i, c->s, (unsigned)len);
		}
		if (ss.ss_family != c->family || strcmp(ip, c->ip) != 0 || port != c->port)
			fail_msg("row %zu \"%s\": family %d %s port %d, want %d %s %d", i, c->s,
				 ss.ss_family, ip, port, c->family, c->ip, c->port);
	}
}

/* defaults_when_empty - an empty file gives the documented defaults. */
static void
defaults_when_empty(void **state)
{
	struct errs e;
	struct config *cf = load_text("empty.conf", "# nothing\n\n   \n\t# indented comment\n", &e);

	assert_non_null(cf);
	assert_int_equal(e.n, 0);
	assert_int_equal(cf->refs, 1);
	assert_non_null(cf->hostname);
	assert_int_equal(cf->log, LOG_DEST_SYSLOG);
	assert_true(cf->workers >= 1);
	assert_int_equal(cf->max_message_size, 25 * 1024 * 1024);
	assert_int_equal(cf->max_recipients, 100);
	assert_int_equal(cf->client_timeout, 300);
	assert_int_equal(cf->data_timeout, 600);
	assert_int_equal(cf->backend_connect_timeout, 30);
	assert_int_equal(cf->backend_timeout, 300);
	assert_int_equal(cf->shutdown_timeout, 30);
	assert_false(cf->bare_newline_normalize);
	assert_false(cf->long_lines_pass);
	assert_int_equal(cf->nlistens, 0);
	assert_int_equal(cf->nbackends, 0);
	assert_null(cf->user);
	assert_null(cf->dns_resolver);
	assert_string_equal(cf->ratelimit_prefix, "ravelin:");
	assert_int_equal(lists_strset_count(cf->local_domains), 0);
	assert_int_equal(lists_netset_count(cf->mynetworks), 0);
	assert_string_equal(cf->path, put("empty.conf", "# nothing\n"));
	config_unref(cf);
}

/* every_directive - one file with every directive type, values checked. */
static void
every_directive(void **state)
{
	struct errs e;
	struct config *cf = load_text("all.conf",
		"hostname mx.example.org\n"
		"log stderr\n"
		"log_level 2\n"
		"stats_socket /run/ravelin/stats.sock\n"
		"user ravelin\n"
		"chroot /var/empty\n"
		"workers 3\n"
		"check_threads 8\n"
		"listen 127.0.0.1:2525 inbound\n"
		"backend 127.0.0.1:10025 xclient\n"
		"tls_certificate /etc/ravelin/cert.pem\n"
		"tls_key /etc/ravelin/key.pem\n"
		"tls_min_protocol TLSv1.3\n"
		"tls_ciphers HIGH\n"
		"tls_ciphersuites TLS_AES_128_GCM_SHA256\n"
		"tls_backend_ca /etc/ssl/ca.pem\n"
		"tls_backend_name backend.example.org\n"
		"local_domains example.org .example.net\n"
		"mynetworks 127.0.0.0/8 ::1/128\n"
		"auth_users /etc/ravelin/users\n"
		"sender_logins /etc/ravelin/senders\n"
		"auth_max_failures 5\n"
		"auth_failure_delay 250ms\n"
		"dns_resolver 127.0.0.1:5353\n"
		"dns_timeout 2s\n"
		"ratelimit_store redis://127.0.0.1:6379/0\n"
		"ratelimit_prefix test:\n"
		"rules /etc/ravelin/rules/*.rules\n"
		"milter_socket inet:8891@127.0.0.1\n"
		"max_message_size 10m\n"
		"max_recipients 50\n"
		"max_errors 7\n"
		"max_sessions 2000\n"
		"max_sessions_per_ip 20\n"
		"max_header_fields 300\n"
		"spool_memory 64k\n"
		"pregreet_delay 1500ms\n"
		"bare_newline normalize\n"
		"long_lines pass\n"
		"client_timeout 5m\n"
		"data_timeout 1h\n"
		"backend_connect_timeout 10\n"
		"backend_timeout 2m\n"
		"shutdown_timeout 1d\n", &e);

	if (!cf)
		fail_msg("load failed: %s", e.msg[0]);
	assert_string_equal(cf->hostname, "mx.example.org");
	assert_int_equal(cf->log, LOG_DEST_STDERR);
	assert_int_equal(cf->log_verbose, 2);
	assert_string_equal(cf->stats_socket, "/run/ravelin/stats.sock");
	assert_string_equal(cf->user, "ravelin");
	assert_string_equal(cf->chroot, "/var/empty");
	assert_int_equal(cf->workers, 3);
	assert_int_equal(cf->check_threads, 8);
	assert_int_equal(cf->nlistens, 1);
	assert_int_equal(cf->nbackends, 1);
	assert_string_equal(cf->tls_certificate, "/etc/ravelin/cert.pem");
	assert_string_equal(cf->tls_key, "/etc/ravelin/key.pem");
	assert_string_equal(cf->tls_min_protocol, "TLSv1.3");
	assert_string_equal(cf->tls_ciphers, "HIGH");
	assert_string_equal(cf->tls_ciphersuites, "TLS_AES_128_GCM_SHA256");
	assert_string_equal(cf->tls_backend_ca, "/etc/ssl/ca.pem");
	assert_string_equal(cf->tls_backend_name, "backend.example.org");
	assert_true(lists_strset_match_domain(cf->local_domains, "example.org"));
	assert_true(lists_strset_match_domain(cf->local_domains, "a.example.net"));
	assert_false(lists_strset_match_domain(cf->local_domains, "example.net"));
	assert_true(lists_netset_match_str(cf->mynetworks, "127.1.2.3"));
	assert_true(lists_netset_match_str(cf->mynetworks, "::1"));
	assert_false(lists_netset_match_str(cf->mynetworks, "192.0.2.1"));
	assert_string_equal(cf->auth_users_path, "/etc/ravelin/users");
	assert_string_equal(cf->sender_logins_path, "/etc/ravelin/senders");
	assert_int_equal(cf->auth_max_failures, 5);
	assert_int_equal(cf->auth_failure_delay_ms, 250);
	assert_string_equal(cf->dns_resolver, "127.0.0.1:5353");
	assert_int_equal(cf->dns_timeout_ms, 2000);
	assert_string_equal(cf->ratelimit_store, "redis://127.0.0.1:6379/0");
	assert_string_equal(cf->ratelimit_prefix, "test:");
	assert_int_equal(cf->nrule_globs, 1);
	assert_string_equal(cf->rule_globs[0], "/etc/ravelin/rules/*.rules");
	assert_string_equal(cf->milter_socket, "inet:8891@127.0.0.1");
	assert_int_equal(cf->max_message_size, 10 * 1024 * 1024);
	assert_int_equal(cf->max_recipients, 50);
	assert_int_equal(cf->max_errors, 7);
	assert_int_equal(cf->max_sessions, 2000);
	assert_int_equal(cf->max_sessions_per_ip, 20);
	assert_int_equal(cf->max_header_fields, 300);
	assert_int_equal(cf->spool_memory, 64 * 1024);
	assert_int_equal(cf->pregreet_ms, 1500);
	assert_true(cf->bare_newline_normalize);
	assert_true(cf->long_lines_pass);
	assert_int_equal(cf->client_timeout, 300);
	assert_int_equal(cf->data_timeout, 3600);
	assert_int_equal(cf->backend_connect_timeout, 10);
	assert_int_equal(cf->backend_timeout, 120);
	assert_int_equal(cf->shutdown_timeout, 86400);
	config_unref(cf);
}

/* syntax_details - tabs, CRLF line ends, trailing comments, auto workers,
 * explicit reject/pass values, and a relative rules glob. */
static void
syntax_details(void **state)
{
	struct errs e;
	struct config *cf = load_text("syntax.conf",
		"hostname\tmx.example.org   # the banner name\r\n"
		"  workers auto\r\n"
		"bare_newline reject\n"
		"long_lines reject\n"
		"auth_failure_delay 2s\n"
		"rules rules.d/*.rules extra.rules\n"
		"log syslog", &e);

	if (!cf)
		fail_msg("load failed: %s", e.msg[0]);
	assert_string_equal(cf->hostname, "mx.example.org");
	assert_true(cf->workers >= 1);
	assert_false(cf->bare_newline_normalize);
	assert_false(cf->long_lines_pass);
	assert_int_equal(cf->auth_failure_delay_ms, 2000);
	assert_int_equal(cf->log, LOG_DEST_SYSLOG);
	assert_int_equal(cf->nrule_globs, 2);
	char want[300];
	snprintf(want, sizeof(want), "%s/rules.d/*.rules", tmpdir);
	assert_string_equal(cf->rule_globs[0], want);
	snprintf(want, sizeof(want), "%s/extra.rules", tmpdir);
	assert_string_equal(cf->rule_globs[1], want);
	config_unref(cf);
}

/* One listen line and what it becomes. */
struct listen_case {
	const char *line;
	enum config_profile profile;
	unsigned flags;
	int family, port;
};

static const struct listen_case listen_cases[] = {
	{ "listen 0.0.0.0:25 inbound", PROFILE_INBOUND, 0, AF_INET, 25 },
	{ "listen 127.0.0.1 inbound", PROFILE_INBOUND, 0, AF_INET, 25 },
	{ "listen [::1]:587 submission starttls require-tls", PROFILE_SUBMISSION,
	  LISTEN_REQUIRE_AUTH | LISTEN_STARTTLS | LISTEN_REQUIRE_TLS, AF_INET6, 587 },
	{ "listen 0.0.0.0:465 submission tls", PROFILE_SUBMISSION, LISTEN_REQUIRE_AUTH | LISTEN_TLS,
	  AF_INET, 465 },
	{ "listen 127.0.0.1:10024 inbound proxy-protocol", PROFILE_INBOUND, LISTEN_PROXY_PROTOCOL,
	  AF_INET, 10024 },
	{ "listen 127.0.0.1:8025 submission auth-plaintext", PROFILE_SUBMISSION,
	  LISTEN_REQUIRE_AUTH | LISTEN_AUTH_PLAINTEXT, AF_INET, 8025 },
	{ "listen 127.0.0.1:26 inbound starttls require-auth", PROFILE_INBOUND,
	  LISTEN_STARTTLS | LISTEN_REQUIRE_AUTH, AF_INET, 26 },
};

/* listen_table - profiles and flags; listen repeats. */
static void
listen_table(void **state)
{
	char text[2048] = "tls_certificate c.pem\ntls_key k.pem\n";
	struct errs e;

	for (size_t i = 0; i < NROWS(listen_cases); i++)
		snprintf(text + strlen(text), sizeof(text) - strlen(text), "%s\n", listen_cases[i].line);
	struct config *cf = load_text("listen.conf", text, &e);
	if (!cf)
		fail_msg("load failed: %s", e.msg[0]);
	assert_int_equal(cf->nlistens, NROWS(listen_cases));
	for (size_t i = 0; i < NROWS(listen_cases); i++) {
		const struct listen_case *c = &listen_cases[i];
		const struct config_listen *l = &cf->listens[i];
		int port = l->addr.ss_family == AF_INET ?
				   ntohs(((const struct sockaddr_in *)&l->addr)->sin_port) :
				   ntohs(((const struct sockaddr_in6 *)&l->addr)->sin6_port);

		if (l->profile != c->profile || l->flags != c->flags || l->addr.ss_family != c->family ||
		    port != c->port)
			fail_msg("row %zu \"%s\": profile %d flags %#x family %d port %d", i, c->line,
				 l->profile, l->flags, l->addr.ss_family, port);
		if (strncmp(c->line + 7, l->text, strlen(l->text)) != 0)
			fail_msg("row %zu: text \"%s\"", i, l->text);
	}
	assert_string_equal(config_profile_name(PROFILE_INBOUND), "inbound");
	assert_string_equal(config_profile_name(PROFILE_SUBMISSION), "submission");
	config_unref(cf);
}

/* One backend line. */
struct backend_case {
	const char *line;
	enum config_backend_mode mode;
	unsigned flags;
};

static const struct backend_case backend_cases[] = {
	{ "backend 127.0.0.1:10025", BACKEND_NONE, 0 },
	{ "backend 127.0.0.1:10025 xclient", BACKEND_XCLIENT, 0 },
	{ "backend [::1]:10026 proxy", BACKEND_PROXY, 0 },
	{ "backend 127.0.0.1:10027 none", BACKEND_NONE, 0 },
	{ "backend 127.0.0.1:10028 xclient starttls", BACKEND_XCLIENT, BACKEND_STARTTLS },
	{ "backend 127.0.0.1:10029 starttls=require verify proxy", BACKEND_PROXY,
	  BACKEND_STARTTLS | BACKEND_STARTTLS_REQUIRE | BACKEND_TLS_VERIFY },
};

/* backend_table - modes and options; backend repeats, in order. */
static void
backend_table(void **state)
{
	char text[2048] = "";
	struct errs e;

	for (size_t i = 0; i < NROWS(backend_cases); i++)
		snprintf(text + strlen(text), sizeof(text) - strlen(text), "%s\n", backend_cases[i].line);
	struct config *cf = load_text("backend.conf", text, &e);
	if (!cf)
		fail_msg("load failed: %s", e.msg[0]);
	assert_int_equal(cf->nbackends, NROWS(backend_cases));
	for (size_t i = 0; i < NROWS(backend_cases); i++) {
		const struct config_backend *b = &cf->backends[i];

		if (b->mode != backend_cases[i].mode || b->flags != backend_cases[i].flags)
			fail_msg("row %zu \"%s\": mode %d flags %#x", i, backend_cases[i].line, b->mode,
				 b->flags);
		if (b->addrlen == 0 || strncmp(backend_cases[i].line + 8, b->text, strlen(b->text)) != 0)
			fail_msg("row %zu: text \"%s\"", i, b->text);
	}
	config_unref(cf);
}

/* An invalid configuration and the errors it must produce, in order. */
struct err_case {
	const char *text;
	const char *errs[4];	/* "LINE: text" (a substring after FILE:), or ": text" without line */
};

static const struct err_case err_cases[] = {
	{ "bogus 1\n", { "1: unknown directive 'bogus'" } },
	{ "hostname a\nhostname b\n", { "2: 'hostname' given twice" } },
	{ "log stderr\n\nlog stderr\n", { "3: 'log' given twice" } },
	{ "client_timeout 1m\nclient_timeout 2m\n", { "2: 'client_timeout' given twice" } },
	{ "hostname\n", { "1: 'hostname' takes exactly one value" } },
	{ "hostname a b\n", { "1: 'hostname' takes exactly one value" } },
	{ "client_timeout 5x\n", { "1: client_timeout: bad duration '5x'" } },
	{ "data_timeout -1\n", { "1: data_timeout: bad duration" } },
	{ "auth_failure_delay 5mms\n", { "1: auth_failure_delay: bad duration '5mms'" } },
	{ "dns_timeout xms\n", { "1: dns_timeout: bad duration" } },
	{ "max_message_size 1t\n", { "1: max_message_size: bad size '1t'" } },
	{ "spool_memory 1kb\n", { "1: spool_memory: bad size" } },
	{ "max_recipients -1\n", { "1: max_recipients: bad number '-1'" } },
	{ "max_errors 4294967296\n", { "1: max_errors: bad number" } },
	{ "max_sessions 10k\n", { "1: max_sessions: bad number" } },
	{ "log file\n", { "1: log: expected syslog or stderr, not 'file'" } },
	{ "workers 0\n", { "1: workers: expected auto or 1-256" } },
	{ "workers 257\n", { "1: workers: expected auto or 1-256" } },
	{ "workers two\n", { "1: workers: expected auto or 1-256" } },
	{ "bare_newline maybe\n", { "1: bare_newline: expected reject or normalize" } },
	{ "long_lines cut\n", { "1: long_lines: expected reject or pass" } },
	{ "listen 127.0.0.1:25\n", { "1: listen: expected ADDRESS:PORT PROFILE" } },
	{ "listen nowhere:25 inbound\n", { "1: listen: bad address 'nowhere:25'" } },
	{ "listen ::1:25 inbound\n", { "1: listen: bad address" } },
	{ "listen 127.0.0.1:25 outbound\n", { "1: listen: unknown profile 'outbound'" } },
	{ "listen 127.0.0.1:25 Inbound\n", { "1: listen: unknown profile" } },
	{ "listen 127.0.0.1:25 inbound bogus\n", { "1: listen: unknown flag 'bogus'" } },
	{ "tls_certificate c\ntls_key k\nlisten 127.0.0.1:25 inbound starttls tls\n",
	  { "3: listen: 'starttls' and 'tls' exclude each other" } },
	{ "listen 127.0.0.1:465 submission tls\n",
	  { ": listen 127.0.0.1:465 uses TLS but tls_certificate or tls_key is not set" } },
	{ "tls_certificate c\nlisten 127.0.0.1:25 inbound starttls\n", { ": listen 127.0.0.1:25 uses TLS" } },
	{ "listen 127.0.0.1:25 inbound require-tls\n", { ": listen 127.0.0.1:25: require-tls without" } },
	{ "backend\n", { "1: backend: expected ADDRESS:PORT" } },
	{ "backend 127.0.0.1:x\n", { "1: backend: bad address '127.0.0.1:x'" } },
	{ "backend 127.0.0.1:25 fancy\n", { "1: backend: unknown option 'fancy'" } },
	{ "mynetworks 10.0.0.0/33\n", { "1: mynetworks: bad network '10.0.0.0/33'" } },
	{ "mynetworks\n", { "1: mynetworks: expected at least one entry" } },
	{ "local_domains\n", { "1: local_domains: expected at least one entry" } },
	{ "local_domains example.org.\n", { "1: local_domains: bad domain 'example.org.'" } },
	{ "local_domains a@example.org\n", { "1: local_domains: bad domain" } },
	{ "local_domains @missing.list\n", { "1: local_domains: missing.list:" } },
	{ "mynetworks @missing.list\n", { "1: mynetworks: missing.list:" } },
	{ "rules\n", { "1: rules: expected FILE or GLOB" } },
	{ "include\n", { "1: include: expected one FILE" } },
	{ "include a b\n", { "1: include: expected one FILE" } },
	{ "include missing.conf\n", { "1: include: cannot read" } },
	{ "max_recipients 0\n", { ": max_recipients must be at least 1" } },
	{ "client_timeout 0\n", { ": timeouts must be at least 1s" } },
	/* Several errors, each at its own line; parsing goes on. */
	{ "# comment\n\nbogus\nhostname x\nhostname y\n   \nlog nowhere\n",
	  { "3: unknown directive 'bogus'", "5: 'hostname' given twice", "7: log: expected" } },
	{ "hostname a\r\nbogus\r\n\r\nlisten 1 inbound\r\n",
	  { "2: unknown directive", "4: listen: bad address" } },
};

/* errors_table - every row: the errors, their order and FILE:LINE form. */
static void
errors_table(void **state)
{
	for (size_t i = 0; i < NROWS(err_cases); i++) {
		const struct err_case *c = &err_cases[i];
		struct errs e;
		char path[256];
		int want = 0;

		snprintf(path, sizeof(path), "%s/err%zu.conf", tmpdir, i);
		struct config *cf = load_text(path + strlen(tmpdir) + 1, c->text, &e);
		while (want < 4 && c->errs[want])
			want++;
		if (cf) {
			config_unref(cf);
			fail_msg("row %zu: loaded without errors", i);
		}
		if (e.n != want)
			fail_msg("row %zu: %d errors, want %d (first: %s)", i, e.n, want, e.msg[0]);
		for (int k = 0; k < want; k++) {
			char full[600];
			const char *sep = c->errs[k][0] == ':' ? "" : ":";

			snprintf(full, sizeof(full), "%s%s%s", path, sep, c->errs[k]);
			if (strncmp(e.msg[k], full, strlen(full)) != 0)
				fail_msg("row %zu error %d: \"%s\", want it to start \"%s\"", i, k, e.msg[k],
					 full);
		}
	}
}

/* long_line_error - an over-long line is one error at its line; the next
 * line keeps its own number. */
static void
long_line_error(void **state)
{
	static char text[6000];
	struct errs e;

	memset(text, 'x', 5000);
	strcpy(text + 5000, "\nbogus\n");
	assert_null(load_text("long.conf", text, &e));
	assert_int_equal(e.n, 2);
	assert_non_null(strstr(e.msg[0], "long.conf:1: line too long"));
	assert_non_null(strstr(e.msg[1], "long.conf:2: unknown directive 'bogus'"));
}

/* include_relative - includes resolve from the including file's directory,
 * errors name the included file and its line, and single-value directives
 * may not repeat across files. */
static void
include_relative(void **state)
{
	char dir[256], path[600];
	struct errs e;

	snprintf(dir, sizeof(dir), "%s/conf.d", tmpdir);
	mkdir(dir, 0700);
	put("conf.d/a.conf", "max_recipients 7\ninclude b.conf\nlisten 127.0.0.1:2526 inbound\n");
	put("conf.d/b.conf", "\n\nmax_errors 3\nlocal_domains @domains\n");
	put("conf.d/domains", "example.org\n.example.net\n# comment\nexample.com example.info\n");
	struct config *cf = load_text("main.conf",
		"listen 127.0.0.1:2525 inbound\ninclude conf.d/a.conf\nhostname mx.example.org\n", &e);
	if (!cf)
		fail_msg("load failed: %s", e.msg[0]);
	assert_int_equal(cf->max_recipients, 7);
	assert_int_equal(cf->max_errors, 3);
	assert_int_equal(cf->nlistens, 2);
	assert_string_equal(cf->listens[0].text, "127.0.0.1:2525");
	assert_string_equal(cf->listens[1].text, "127.0.0.1:2526");
	assert_true(lists_strset_match_domain(cf->local_domains, "example.com"));
	assert_true(lists_strset_match_domain(cf->local_domains, "example.info"));
	assert_true(lists_strset_match_domain(cf->local_domains, "mail.example.net"));
	config_unref(cf);

	/* An error inside an included file: its own name and line. */
	put("conf.d/bad.conf", "# one\nmax_errors x\n");
	assert_null(load_text("main2.conf", "hostname a\n\ninclude conf.d/bad.conf\n", &e));
	assert_int_equal(e.n, 1);
	snprintf(path, sizeof(path), "%s/conf.d/bad.conf:2: max_errors: bad number", tmpdir);
	assert_string_equal(strstr(e.msg[0], path) == e.msg[0] ? path : e.msg[0], path);

	/* Repeating across files is repeating. */
	put("conf.d/host.conf", "hostname b\n");
	assert_null(load_text("main3.conf", "hostname a\ninclude conf.d/host.conf\n", &e));
	assert_int_equal(e.n, 1);
	snprintf(path, sizeof(path), "%s/conf.d/host.conf:1: 'hostname' given twice", tmpdir);
	assert_string_equal(e.msg[0], path);

	/* Include loops are one error each, found at once, however spelled. */
	assert_null(load_text("loop.conf", "include loop.conf\ninclude ./loop.conf\n", &e));
	assert_int_equal(e.n, 2);
	snprintf(path, sizeof(path), "%s/loop.conf:1: include: '%s/loop.conf' is already being read",
		 tmpdir, tmpdir);
	assert_int_equal(strncmp(e.msg[0], path, strlen(path)), 0);
	assert_non_null(strstr(e.msg[1], "loop.conf:2: include: "));
	put("conf.d/x.conf", "include y.conf\n");
	put("conf.d/y.conf", "\ninclude ../loop2.conf\n");
	assert_null(load_text("loop2.conf", "include conf.d/x.conf\n", &e));
	assert_int_equal(e.n, 1);
	assert_non_null(strstr(e.msg[0], "conf.d/y.conf:2: include: "));
	assert_non_null(strstr(e.msg[0], "(include loop)"));

	/* Nesting deeper than 8 files is refused where it happens. */
	for (int i = 0; i < 10; i++) {
		char name[32], text[64];
		snprintf(name, sizeof(name), "conf.d/n%d.conf", i);
		snprintf(text, sizeof(text), "include n%d.conf\n", i + 1);
		put(name, text);
	}
	memset(&e, 0, sizeof(e));
	snprintf(path, sizeof(path), "%s/conf.d/n0.conf", tmpdir);
	assert_null(config_load(path, collect, &e));
	assert_int_equal(e.n, 1);
	assert_non_null(strstr(e.msg[0], "conf.d/n7.conf:1: include: nested too deeply"));

	/* The same file included twice (not nested) is fine. */
	put("conf.d/twice.conf", "listen 127.0.0.1:2600 inbound\n");
	cf = load_text("twice.conf", "include conf.d/twice.conf\ninclude conf.d/twice.conf\n", &e);
	assert_non_null(cf);
	assert_int_equal(cf->nlistens, 2);
	config_unref(cf);
}

/* list_files - @FILE for local_domains and mynetworks, relative to the
 * configuration file, mixed with inline entries. */
static void
list_files(void **state)
{
	struct errs e;

	put("domains.list", "example.org\n.example.net\n");
	put("nets.list", "192.0.2.0/24\n2001:db8::/32 # documentation\n198.51.100.7\n");
	struct config *cf = load_text("lists.conf",
		"local_domains @domains.list example.com\nlocal_domains example.info\n"
		"mynetworks 127.0.0.0/8 @nets.list\n", &e);
	if (!cf)
		fail_msg("load failed: %s", e.msg[0]);
	assert_int_equal(lists_strset_count(cf->local_domains), 4);
	assert_true(lists_strset_match_domain(cf->local_domains, "EXAMPLE.org"));
	assert_true(lists_strset_match_domain(cf->local_domains, "example.com"));
	assert_true(lists_strset_match_domain(cf->local_domains, "example.info"));
	assert_true(lists_strset_match_domain(cf->local_domains, "a.example.net"));
	assert_false(lists_strset_match_domain(cf->local_domains, "example.net"));
	assert_false(lists_strset_match_domain(cf->local_domains, "notexample.org"));
	assert_true(lists_netset_match_str(cf->mynetworks, "127.0.0.1"));
	assert_true(lists_netset_match_str(cf->mynetworks, "192.0.2.200"));
	assert_true(lists_netset_match_str(cf->mynetworks, "2001:db8::5"));
	assert_true(lists_netset_match_str(cf->mynetworks, "198.51.100.7"));
	assert_false(lists_netset_match_str(cf->mynetworks, "198.51.100.8"));
	config_unref(cf);

	/* A bad entry inside the list file is reported against the directive. */
	put("badnets.list", "192.0.2.0/24\nnot-a-network\n");
	assert_null(load_text("badlists.conf", "\nmynetworks @badnets.list\n", &e));
	assert_int_equal(e.n, 1);
	assert_non_null(strstr(e.msg[0], "badlists.conf:2: mynetworks: badnets.list: "));
}

/* refcount - config_ref/config_unref; unref of NULL is fine. */
static void
refcount(void **state)
{
	struct errs e;
	struct config *cf = load_text("ref.conf", "hostname x\n", &e);

	assert_non_null(cf);
	assert_ptr_equal(config_ref(cf), cf);
	assert_int_equal(cf->refs, 2);
	assert_null(config_unref(cf));
	assert_int_equal(cf->refs, 1);
	assert_null(config_unref(cf));
	assert_null(config_unref(NULL));

	/* A file that cannot be read: one error naming it. */
	char path[300];
	memset(&e, 0, sizeof(e));
	snprintf(path, sizeof(path), "%s/does-not-exist.conf", tmpdir);
	assert_null(config_load(path, collect, &e));
	assert_int_equal(e.n, 1);
	assert_int_equal(strncmp(e.msg[0], path, strlen(path)), 0);
	assert_non_null(strstr(e.msg[0], ": cannot read: "));
	/* And without an error callback. */
	assert_null(config_load(path, NULL, NULL));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(parse_duration_table),
		cmocka_unit_test(parse_size_table),
		cmocka_unit_test(parse_sockaddr_table),
		cmocka_unit_test(defaults_when_empty),
		cmocka_unit_test(every_directive),
		cmocka_unit_test(syntax_details),
		cmocka_unit_test(listen_table),
		cmocka_unit_test(backend_table),
		cmocka_unit_test(errors_table),
		cmocka_unit_test(long_line_error),
		cmocka_unit_test(include_relative),
		cmocka_unit_test(list_files),
		cmocka_unit_test(refcount),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
