/*
 * config.c - parse ravelin.conf into an immutable, reference-counted object.
 *
 * One directive per line, '#' comments, `include FILE` (relative to the
 * including file). Directives are a table of typed settings, as in
 * OpenDKIM; every error is reported as FILE:LINE: message and parsing goes
 * on so that `ravelin -t` shows all of them at once.
 *
 * Public:
 *   config_load(), config_ref(), config_unref(), config_parse_duration(),
 *   config_parse_size(), config_parse_sockaddr(), config_profile_name()
 */

/* System. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Project. */
#include "check_spoof.h"
#include "config.h"
#include "fmt.h"
#include "lists.h"

#define CONFIG_LINE_MAX   4096
#define CONFIG_MAX_ARGS   64
#define CONFIG_MAX_DEPTH  8

enum config_type {
	CT_STRING,      /* one word */
	CT_DURATION,    /* seconds */
	CT_MS,          /* a duration stored in milliseconds */
	CT_SIZE,        /* bytes */
	CT_UINT,
	CT_BOOL,        /* yes | no */
	CT_LOG,
	CT_WORKERS,
	CT_BARE_NEWLINE,
	CT_LONG_LINES,
	CT_LISTEN,
	CT_BACKEND,
	CT_DOMAINS,
	CT_NETWORKS,
	CT_RULES,
	CT_SPOOF_NAMES, /* spoof_protected_names @FILE (check_spoof.c) */
	CT_INCLUDE,
};

struct config_directive {
	const char *name;
	enum config_type type;
	size_t offset;
};

#define OFF(f) offsetof(struct config, f)

/* The directive table: DESIGN.md section 4, plus what operators need. */
static const struct config_directive directives[] = {
	{ "hostname", CT_STRING, OFF(hostname) },
	{ "log", CT_LOG, 0 },
	{ "log_level", CT_UINT, OFF(log_verbose) },
	{ "stats_socket", CT_STRING, OFF(stats_socket) },
	{ "user", CT_STRING, OFF(user) },
	{ "chroot", CT_STRING, OFF(chroot) },
	{ "workers", CT_WORKERS, OFF(workers) },
	{ "check_threads", CT_UINT, OFF(check_threads) },
	{ "listen", CT_LISTEN, 0 },
	{ "backend", CT_BACKEND, 0 },
	{ "tls_certificate", CT_STRING, OFF(tls_certificate) },
	{ "tls_key", CT_STRING, OFF(tls_key) },
	{ "tls_min_protocol", CT_STRING, OFF(tls_min_protocol) },
	{ "tls_ciphers", CT_STRING, OFF(tls_ciphers) },
	{ "tls_ciphersuites", CT_STRING, OFF(tls_ciphersuites) },
	{ "tls_backend_ca", CT_STRING, OFF(tls_backend_ca) },
	{ "tls_backend_name", CT_STRING, OFF(tls_backend_name) },
	{ "local_domains", CT_DOMAINS, 0 },
	{ "mynetworks", CT_NETWORKS, 0 },
	{ "auth_users", CT_STRING, OFF(auth_users_path) },
	{ "sender_logins", CT_STRING, OFF(sender_logins_path) },
	{ "auth_max_failures", CT_UINT, OFF(auth_max_failures) },
	{ "auth_max_failures_per_ip", CT_UINT, OFF(auth_max_failures_per_ip) },
	{ "auth_failure_delay", CT_MS, OFF(auth_failure_delay_ms) },
	{ "dns_resolver", CT_STRING, OFF(dns_resolver) },
	{ "dns_timeout", CT_MS, OFF(dns_timeout_ms) },
	{ "ratelimit_store", CT_STRING, OFF(ratelimit_store) },
	{ "ratelimit_prefix", CT_STRING, OFF(ratelimit_prefix) },
	{ "rules", CT_RULES, 0 },
	{ "spoof_protected_names", CT_SPOOF_NAMES, 0 },
	{ "milter_socket", CT_STRING, OFF(milter_socket) },
	{ "max_message_size", CT_SIZE, OFF(max_message_size) },
	{ "max_recipients", CT_UINT, OFF(max_recipients) },
	{ "max_errors", CT_UINT, OFF(max_errors) },
	{ "max_sessions", CT_UINT, OFF(max_sessions) },
	{ "max_sessions_per_ip", CT_UINT, OFF(max_sessions_per_ip) },
	{ "max_header_fields", CT_UINT, OFF(max_header_fields) },
	{ "spool_memory", CT_SIZE, OFF(spool_memory) },
	{ "pregreet_delay", CT_MS, OFF(pregreet_ms) },
	{ "bare_newline", CT_BARE_NEWLINE, 0 },
	{ "long_lines", CT_LONG_LINES, 0 },
	{ "received_header", CT_BOOL, OFF(received_header) },
	{ "client_timeout", CT_DURATION, OFF(client_timeout) },
	{ "data_timeout", CT_DURATION, OFF(data_timeout) },
	{ "backend_connect_timeout", CT_DURATION, OFF(backend_connect_timeout) },
	{ "backend_timeout", CT_DURATION, OFF(backend_timeout) },
	{ "shutdown_timeout", CT_DURATION, OFF(shutdown_timeout) },
	{ "include", CT_INCLUDE, 0 },
};

/* Parse state shared by a file and the files it includes. */
struct config_parser {
	struct config *cf;
	config_error_fn *err;
	void *arg;
	int errors;
	unsigned char seen[sizeof(directives) / sizeof(directives[0])];
	int depth;
	/* The files being read, outermost first: an include of one of them
	 * is a loop (without this check a file including itself k times
	 * would be read k^CONFIG_MAX_DEPTH times). */
	struct { dev_t dev; ino_t ino; } open[CONFIG_MAX_DEPTH + 1];
};

/* perr - report one error with its position. */
static void __attribute__((format(printf, 4, 5)))
perr(struct config_parser *p, const char *file, int line, const char *fmt, ...)
{
	char msg[1024], full[1400];
	va_list ap;

	va_start(ap, fmt);
	fmt_vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (line > 0)
		fmt_snprintf(full, sizeof(full), "%s:%d: %s", file, line, msg);
	else
		fmt_snprintf(full, sizeof(full), "%s: %s", file, msg);
	p->errors++;
	if (p->err)
		p->err(p->arg, full);
}

/* config_parse_duration - "30", "30s", "5m", "1h", "2d" into seconds. */
int
config_parse_duration(const char *s, unsigned *seconds)
{
	char *end;
	unsigned long v, mul = 1;

	if (!isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno)
		return -1;
	if (*end) {
		switch (*end) {
		case 's': mul = 1; break;
		case 'm': mul = 60; break;
		case 'h': mul = 3600; break;
		case 'd': mul = 86400; break;
		default: return -1;
		}
		if (end[1])
			return -1;
	}
	if (v > UINT_MAX / mul)
		return -1;
	*seconds = (unsigned)(v * mul);
	return 0;
}

/* config_parse_size - bytes, or a number with k, m, g (powers of 1024). */
int
config_parse_size(const char *s, size_t *bytes)
{
	char *end;
	unsigned long long v, mul = 1;

	if (!isdigit((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -1;
	if (*end) {
		switch (tolower((unsigned char)*end)) {
		case 'k': mul = 1024ULL; break;
		case 'm': mul = 1024ULL * 1024; break;
		case 'g': mul = 1024ULL * 1024 * 1024; break;
		default: return -1;
		}
		if (end[1])
			return -1;
	}
	if (v > SIZE_MAX / mul)
		return -1;
	*bytes = (size_t)(v * mul);
	return 0;
}

/* config_parse_sockaddr - "1.2.3.4:25", "[::1]:25", "*:25", ":25". */
int
config_parse_sockaddr(const char *s, int default_port, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[256];
	const char *port = NULL;
	const char *colon;
	long pn = default_port;
	char *end;

	memset(ss, 0, sizeof(*ss));
	if (*s == '[') {
		const char *rb = strchr(s, ']');
		if (!rb || (size_t)(rb - s - 1) >= sizeof(host))
			return -1;
		memcpy(host, s + 1, rb - s - 1);
		host[rb - s - 1] = '\0';
		if (rb[1] == ':')
			port = rb + 2;
		else if (rb[1] != '\0')
			return -1;
	} else {
		colon = strrchr(s, ':');
		if (colon && strchr(s, ':') != colon)
			return -1;      /* bare IPv6 needs brackets */
		size_t hl = colon ? (size_t)(colon - s) : strlen(s);
		if (hl >= sizeof(host))
			return -1;
		memcpy(host, s, hl);
		host[hl] = '\0';
		if (colon)
			port = colon + 1;
	}
	if (port) {
		if (!isdigit((unsigned char)*port))
			return -1;
		pn = strtol(port, &end, 10);
		if (*end || pn <= 0 || pn > 65535)
			return -1;
	}
	if (pn <= 0)
		return -1;
	if (host[0] == '\0' || strcmp(host, "*") == 0)
		strcpy(host, "0.0.0.0");
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)pn);
		*len = sizeof(*sin);
		return 0;
	}
	if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)pn);
		*len = sizeof(*sin6);
		return 0;
	}
	return -1;
}

/* config_profile_name - the profile as written in the config. */
const char *
config_profile_name(enum config_profile p)
{
	return p == PROFILE_SUBMISSION ? "submission" : "inbound";
}

/* split - cut a line into words; '#' starts a comment. Returns the count. */
static int
split(char *line, char **argv, int max)
{
	int n = 0;
	char *s = line;

	for (;;) {
		while (*s == ' ' || *s == '\t')
			s++;
		if (*s == '\0' || *s == '#')
			break;
		if (n == max)
			return -1;
		argv[n++] = s;
		while (*s && *s != ' ' && *s != '\t')
			s++;
		if (*s)
			*s++ = '\0';
	}
	return n;
}

/* resolve_path - a relative path taken from the including file's directory. */
static char *
resolve_path(const char *base, const char *path)
{
	const char *slash;
	char *out;

	if (path[0] == '/' || !(slash = strrchr(base, '/')))
		return strdup(path);
	if (asprintf(&out, "%.*s/%s", (int)(slash - base), base, path) < 0)
		return NULL;
	return out;
}

/* set_string - store a one-word value. */
static void
set_string(char **slot, const char *v)
{
	free(*slot);
	*slot = strdup(v);
}

/* parse_listen - "ADDR:PORT PROFILE [flags...]". */
static void
parse_listen(struct config_parser *p, const char *file, int line, int argc, char **argv)
{
	static const struct { const char *name; unsigned flag; } flags[] = {
		{ "starttls", LISTEN_STARTTLS }, { "tls", LISTEN_TLS },
		{ "require-tls", LISTEN_REQUIRE_TLS }, { "require-auth", LISTEN_REQUIRE_AUTH },
		{ "auth-plaintext", LISTEN_AUTH_PLAINTEXT }, { "proxy-protocol", LISTEN_PROXY_PROTOCOL },
	};
	struct config *cf = p->cf;
	struct config_listen l;

	memset(&l, 0, sizeof(l));
	if (argc < 3) {
		perr(p, file, line, "listen: expected ADDRESS:PORT PROFILE [FLAGS]");
		return;
	}
	if (config_parse_sockaddr(argv[1], 25, &l.addr, &l.addrlen) < 0) {
		perr(p, file, line, "listen: bad address '%s'", argv[1]);
		return;
	}
	if (strcmp(argv[2], "inbound") == 0)
		l.profile = PROFILE_INBOUND;
	else if (strcmp(argv[2], "submission") == 0)
		l.profile = PROFILE_SUBMISSION;
	else {
		perr(p, file, line, "listen: unknown profile '%s' (inbound or submission)", argv[2]);
		return;
	}
	if (l.profile == PROFILE_SUBMISSION)
		l.flags |= LISTEN_REQUIRE_AUTH;
	for (int i = 3; i < argc; i++) {
		size_t k;
		for (k = 0; k < sizeof(flags) / sizeof(flags[0]); k++)
			if (strcmp(argv[i], flags[k].name) == 0)
				break;
		if (k == sizeof(flags) / sizeof(flags[0])) {
			perr(p, file, line, "listen: unknown flag '%s'", argv[i]);
			return;
		}
		l.flags |= flags[k].flag;
	}
	if ((l.flags & LISTEN_STARTTLS) && (l.flags & LISTEN_TLS)) {
		perr(p, file, line, "listen: 'starttls' and 'tls' exclude each other");
		return;
	}
	l.text = strdup(argv[1]);
	struct config_listen *nl = realloc(cf->listens, (cf->nlistens + 1) * sizeof(*nl));
	if (!nl) {
		free(l.text);
		perr(p, file, line, "out of memory");
		return;
	}
	cf->listens = nl;
	cf->listens[cf->nlistens++] = l;
}

/* parse_backend - "ADDR:PORT [xclient|proxy|none] [starttls[=require]] [verify]". */
static void
parse_backend(struct config_parser *p, const char *file, int line, int argc, char **argv)
{
	struct config *cf = p->cf;
	struct config_backend b;

	memset(&b, 0, sizeof(b));
	b.mode = BACKEND_NONE;
	if (argc < 2) {
		perr(p, file, line, "backend: expected ADDRESS:PORT [xclient|proxy|none] [starttls]");
		return;
	}
	if (config_parse_sockaddr(argv[1], 25, &b.addr, &b.addrlen) < 0) {
		perr(p, file, line, "backend: bad address '%s'", argv[1]);
		return;
	}
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "xclient") == 0)
			b.mode = BACKEND_XCLIENT;
		else if (strcmp(argv[i], "proxy") == 0)
			b.mode = BACKEND_PROXY;
		else if (strcmp(argv[i], "none") == 0)
			b.mode = BACKEND_NONE;
		else if (strcmp(argv[i], "starttls") == 0)
			b.flags |= BACKEND_STARTTLS;
		else if (strcmp(argv[i], "starttls=require") == 0)
			b.flags |= BACKEND_STARTTLS | BACKEND_STARTTLS_REQUIRE;
		else if (strcmp(argv[i], "verify") == 0)
			b.flags |= BACKEND_TLS_VERIFY;
		else {
			perr(p, file, line, "backend: unknown option '%s'", argv[i]);
			return;
		}
	}
	b.text = strdup(argv[1]);
	struct config_backend *nb = realloc(cf->backends, (cf->nbackends + 1) * sizeof(*nb));
	if (!nb) {
		free(b.text);
		perr(p, file, line, "out of memory");
		return;
	}
	cf->backends = nb;
	cf->backends[cf->nbackends++] = b;
}

/* parse_list - inline entries or @FILE into a domain or network set. */
static void
parse_list(struct config_parser *p, const char *file, int line, int argc, char **argv, int nets)
{
	struct config *cf = p->cf;
	char err[512];

	for (int i = 1; i < argc; i++) {
		if (argv[i][0] == '@') {
			char *path = resolve_path(file, argv[i] + 1);
			if (!path || lists_load_file(path, nets ? NULL : cf->local_domains,
						     nets ? cf->mynetworks : NULL, err, sizeof(err)) < 0)
				perr(p, file, line, "%s: %s: %s", argv[0], argv[i] + 1, path ? err : "out of memory");
			/* The look-alike check needs the domains as a list, too. */
			else if (!nets && spoof_conf_load_locals(cf->spoof, path, err, sizeof(err)) < 0)
				perr(p, file, line, "%s: %s: %s", argv[0], argv[i] + 1, err);
			free(path);
		} else if (nets) {
			if (lists_netset_add(cf->mynetworks, argv[i]) < 0)
				perr(p, file, line, "mynetworks: bad network '%s'", argv[i]);
		} else {
			const char *d = argv[i];
			size_t n = strlen(d);
			if (n == 0 || d[n - 1] == '.' || strchr(d, '@') || strchr(d, '/'))
				perr(p, file, line, "local_domains: bad domain '%s'", d);
			else if (lists_strset_add(cf->local_domains, d) < 0 ||
				 spoof_conf_add_local(cf->spoof, d) < 0)
				perr(p, file, line, "local_domains: cannot add '%s'", d);
		}
	}
}

static int parse_file(struct config_parser *p, const char *path);

/* directive - apply one parsed line. */
static void
directive(struct config_parser *p, const char *file, int line, int argc, char **argv)
{
	struct config *cf = p->cf;
	size_t i;
	const struct config_directive *d = NULL;

	for (i = 0; i < sizeof(directives) / sizeof(directives[0]); i++)
		if (strcmp(directives[i].name, argv[0]) == 0) {
			d = &directives[i];
			break;
		}
	if (!d) {
		perr(p, file, line, "unknown directive '%s'", argv[0]);
		return;
	}
	/* Single-value directives may appear once; lists accumulate. */
	switch (d->type) {
	case CT_LISTEN: case CT_BACKEND: case CT_INCLUDE:
	case CT_DOMAINS: case CT_NETWORKS: case CT_RULES:
		break;
	default:
		if (p->seen[i]) {
			perr(p, file, line, "'%s' given twice", argv[0]);
			return;
		}
		if (argc != 2) {
			perr(p, file, line, "'%s' takes exactly one value", argv[0]);
			return;
		}
	}
	p->seen[i] = 1;

	char *slot = (char *)cf + d->offset;
	const char *v = argc > 1 ? argv[1] : "";
	if (argc < 2 && (d->type == CT_DOMAINS || d->type == CT_NETWORKS)) {
		perr(p, file, line, "%s: expected at least one entry or @FILE", argv[0]);
		return;
	}
	switch (d->type) {
	case CT_STRING:
		set_string((char **)slot, v);
		break;
	case CT_DURATION:
		if (config_parse_duration(v, (unsigned *)slot) < 0)
			perr(p, file, line, "%s: bad duration '%s' (number with s, m, h or d)", argv[0], v);
		break;
	case CT_MS: {
		/* Milliseconds: "250ms" or a duration. */
		unsigned s;
		size_t n = strlen(v);
		if (n > 2 && strcmp(v + n - 2, "ms") == 0) {
			char buf[32];
			fmt_snprintf(buf, sizeof(buf), "%.*s", (int)(n - 2), v);
			/* Digits only: "5mms" is not 5 minutes of milliseconds. */
			if (strspn(buf, "0123456789") != strlen(buf) || config_parse_duration(buf, &s) < 0)
				perr(p, file, line, "%s: bad duration '%s'", argv[0], v);
			else
				*(unsigned *)slot = s;
		} else if (config_parse_duration(v, &s) < 0 || s > UINT_MAX / 1000)
			perr(p, file, line, "%s: bad duration '%s'", argv[0], v);
		else
			*(unsigned *)slot = s * 1000;
		break;
	}
	case CT_SIZE:
		if (config_parse_size(v, (size_t *)slot) < 0)
			perr(p, file, line, "%s: bad size '%s' (bytes, or a number with k, m, g)", argv[0], v);
		break;
	case CT_UINT: {
		char *end;
		unsigned long n;
		errno = 0;
		n = strtoul(v, &end, 10);
		if (!isdigit((unsigned char)*v) || *end || errno || n > UINT_MAX)
			perr(p, file, line, "%s: bad number '%s'", argv[0], v);
		else if (d->offset == OFF(log_verbose))
			cf->log_verbose = (int)n;
		else
			*(unsigned *)slot = (unsigned)n;
		break;
	}
	case CT_BOOL:
		if (strcmp(v, "yes") == 0)
			*(bool *)slot = true;
		else if (strcmp(v, "no") == 0)
			*(bool *)slot = false;
		else
			perr(p, file, line, "%s: expected yes or no, not '%s'", argv[0], v);
		break;
	case CT_LOG:
		if (strcmp(v, "syslog") == 0)
			cf->log = LOG_DEST_SYSLOG;
		else if (strcmp(v, "stderr") == 0)
			cf->log = LOG_DEST_STDERR;
		else
			perr(p, file, line, "log: expected syslog or stderr, not '%s'", v);
		break;
	case CT_WORKERS:
		if (strcmp(v, "auto") == 0) {
			long n = sysconf(_SC_NPROCESSORS_ONLN);
			cf->workers = n > 0 ? (unsigned)n : 1;
		} else {
			char *end;
			long n = strtol(v, &end, 10);
			if (*end || n < 1 || n > 256)
				perr(p, file, line, "workers: expected auto or 1-256, not '%s'", v);
			else
				cf->workers = (unsigned)n;
		}
		break;
	case CT_BARE_NEWLINE:
		if (strcmp(v, "reject") == 0)
			cf->bare_newline_normalize = false;
		else if (strcmp(v, "normalize") == 0)
			cf->bare_newline_normalize = true;
		else
			perr(p, file, line, "bare_newline: expected reject or normalize, not '%s'", v);
		break;
	case CT_LONG_LINES:
		if (strcmp(v, "reject") == 0)
			cf->long_lines_pass = false;
		else if (strcmp(v, "pass") == 0)
			cf->long_lines_pass = true;
		else
			perr(p, file, line, "long_lines: expected reject or pass, not '%s'", v);
		break;
	case CT_LISTEN:
		parse_listen(p, file, line, argc, argv);
		break;
	case CT_BACKEND:
		parse_backend(p, file, line, argc, argv);
		break;
	case CT_DOMAINS:
		parse_list(p, file, line, argc, argv, 0);
		break;
	case CT_NETWORKS:
		parse_list(p, file, line, argc, argv, 1);
		break;
	case CT_RULES:
		if (argc < 2) {
			perr(p, file, line, "rules: expected FILE or GLOB");
			break;
		}
		for (int k = 1; k < argc; k++) {
			char **ng = realloc(cf->rule_globs, (cf->nrule_globs + 1) * sizeof(*ng));
			if (!ng)
				break;
			cf->rule_globs = ng;
			cf->rule_globs[cf->nrule_globs++] = resolve_path(file, argv[k]);
		}
		break;
	case CT_SPOOF_NAMES: {
		char err[512], *path = v[0] == '@' ? resolve_path(file, v + 1) : NULL;
		if (!path)
			perr(p, file, line, "spoof_protected_names: expected @FILE");
		else if (spoof_conf_load_names(cf->spoof, path, err, sizeof(err)) < 0)
			perr(p, file, line, "spoof_protected_names: %s:%s", path, err);
		free(path);
		break;
	}
	case CT_INCLUDE: {
		if (argc != 2) {
			perr(p, file, line, "include: expected one FILE");
			break;
		}
		char *path = resolve_path(file, v);
		int rc = 0;
		if (p->depth >= CONFIG_MAX_DEPTH)
			perr(p, file, line, "include: nested too deeply");
		else if (path && (rc = parse_file(p, path)) == -2)
			perr(p, file, line, "include: '%s' is already being read (include loop)", path);
		else if (path && rc < 0)
			perr(p, file, line, "include: cannot read '%s': %s", path, strerror(errno));
		free(path);
		break;
	}
	}
}

/* parse_file - read one file; -1 (errno set) when it cannot be opened,
 * -2 when it is one of the files being read (an include loop). */
static int
parse_file(struct config_parser *p, const char *path)
{
	FILE *fp;
	char buf[CONFIG_LINE_MAX];
	char *argv[CONFIG_MAX_ARGS];
	int line = 0;

	if (!(fp = fopen(path, "r")))
		return -1;
	struct stat st;
	if (fstat(fileno(fp), &st) == 0) {
		for (int i = 0; i < p->depth; i++)
			if (p->open[i].dev == st.st_dev && p->open[i].ino == st.st_ino) {
				fclose(fp);
				return -2;
			}
		p->open[p->depth].dev = st.st_dev;
		p->open[p->depth].ino = st.st_ino;
	} else {
		p->open[p->depth].dev = 0;
		p->open[p->depth].ino = 0;
	}
	p->depth++;
	while (fgets(buf, sizeof(buf), fp)) {
		size_t n = strlen(buf);
		line++;
		if (n == sizeof(buf) - 1 && buf[n - 1] != '\n') {
			int c;
			perr(p, path, line, "line too long");
			while ((c = getc(fp)) != EOF && c != '\n')
				;
			continue;
		}
		while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
			buf[--n] = '\0';
		int argc = split(buf, argv, CONFIG_MAX_ARGS);
		if (argc < 0)
			perr(p, path, line, "too many words");
		else if (argc > 0)
			directive(p, path, line, argc, argv);
	}
	if (ferror(fp))
		perr(p, path, line, "read error: %s", strerror(errno));
	fclose(fp);
	p->depth--;
	return 0;
}

/* defaults - values used when a directive is absent. */
static void
defaults(struct config *cf)
{
	char host[256];

	if (gethostname(host, sizeof(host)) < 0 || !*host)
		strcpy(host, "localhost");
	host[sizeof(host) - 1] = '\0';
	cf->hostname = strdup(host);
	cf->log = LOG_DEST_SYSLOG;
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	cf->workers = n > 0 ? (unsigned)n : 1;
	cf->check_threads = 4;
	cf->max_message_size = 25 * 1024 * 1024;
	cf->max_recipients = 100;
	cf->max_errors = 10;
	cf->max_sessions = 10000;
	cf->max_sessions_per_ip = 50;
	cf->max_header_fields = 1000;
	cf->spool_memory = 256 * 1024;
	cf->auth_max_failures = 3;
	cf->auth_max_failures_per_ip = 20;
	cf->auth_failure_delay_ms = 1000;
	cf->dns_timeout_ms = 5000;
	cf->client_timeout = 300;
	cf->data_timeout = 600;
	cf->backend_connect_timeout = 30;
	cf->backend_timeout = 300;
	cf->shutdown_timeout = 30;
	cf->ratelimit_prefix = strdup("ravelin:");
	cf->tls_min_protocol = strdup("TLSv1.2");
	cf->received_header = true;
}

/* validate - checks across directives. */
static void
validate(struct config_parser *p, const char *path)
{
	struct config *cf = p->cf;

	for (size_t i = 0; i < cf->nlistens; i++) {
		if ((cf->listens[i].flags & (LISTEN_STARTTLS | LISTEN_TLS)) &&
		    (!cf->tls_certificate || !cf->tls_key))
			perr(p, path, 0, "listen %s uses TLS but tls_certificate or tls_key is not set",
			     cf->listens[i].text);
		if ((cf->listens[i].flags & LISTEN_REQUIRE_TLS) &&
		    !(cf->listens[i].flags & (LISTEN_STARTTLS | LISTEN_TLS)))
			perr(p, path, 0, "listen %s: require-tls without starttls or tls", cf->listens[i].text);
	}
	if (cf->max_recipients == 0)
		perr(p, path, 0, "max_recipients must be at least 1");
	if (cf->client_timeout == 0 || cf->data_timeout == 0 || cf->backend_timeout == 0 ||
	    cf->backend_connect_timeout == 0)
		perr(p, path, 0, "timeouts must be at least 1s");
	if (strlen(cf->hostname) > 255)
		perr(p, path, 0, "hostname too long");
}

/* config_load - parse FILE; NULL when there was any error (all reported). */
struct config *
config_load(const char *path, config_error_fn *err, void *arg)
{
	struct config_parser p;
	struct config *cf;

	if (!(cf = calloc(1, sizeof(*cf))))
		return NULL;
	cf->refs = 1;
	cf->path = strdup(path);
	cf->local_domains = lists_strset_new();
	cf->mynetworks = lists_netset_new();
	cf->spoof = spoof_conf_new();
	defaults(cf);
	memset(&p, 0, sizeof(p));
	p.cf = cf;
	p.err = err;
	p.arg = arg;
	if (parse_file(&p, path) < 0)
		perr(&p, path, 0, "cannot read: %s", strerror(errno));
	else
		validate(&p, path);
	if (p.errors) {
		config_unref(cf);
		return NULL;
	}
	return cf;
}

/* config_ref - take one more reference. */
struct config *
config_ref(struct config *cf)
{
	__atomic_add_fetch(&cf->refs, 1, __ATOMIC_RELAXED);
	return cf;
}

/* config_unref - drop one reference; frees on the last. Returns NULL. */
struct config *
config_unref(struct config *cf)
{
	if (!cf || __atomic_sub_fetch(&cf->refs, 1, __ATOMIC_ACQ_REL) > 0)
		return NULL;
	if (cf->release)
		cf->release(cf);
	for (size_t i = 0; i < cf->nlistens; i++)
		free(cf->listens[i].text);
	free(cf->listens);
	for (size_t i = 0; i < cf->nbackends; i++)
		free(cf->backends[i].text);
	free(cf->backends);
	for (size_t i = 0; i < cf->nrule_globs; i++)
		free(cf->rule_globs[i]);
	free(cf->rule_globs);
	for (size_t i = 0; i < cf->nrule_files; i++)
		free(cf->rule_files[i]);
	free(cf->rule_files);
	lists_strset_free(cf->local_domains);
	lists_netset_free(cf->mynetworks);
	spoof_conf_free(cf->spoof);
	free(cf->path);
	free(cf->hostname);
	free(cf->stats_socket);
	free(cf->user);
	free(cf->chroot);
	free(cf->tls_certificate);
	free(cf->tls_key);
	free(cf->tls_min_protocol);
	free(cf->tls_ciphers);
	free(cf->tls_ciphersuites);
	free(cf->tls_backend_ca);
	free(cf->tls_backend_name);
	free(cf->auth_users_path);
	free(cf->sender_logins_path);
	free(cf->dns_resolver);
	free(cf->ratelimit_store);
	free(cf->ratelimit_prefix);
	free(cf->milter_socket);
	free(cf);
	return NULL;
}
