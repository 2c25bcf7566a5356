/*
 * policy_runtime.c - the long-lived objects behind the checks.
 *
 * One resolver (dns_resolver) serves SPF, DKIM keys, DMARC records and PTR
 * names; one SPF checker, one DKIM and one DMARC library handle are shared
 * by all check threads; one rate-limit store (memory or Redis) serves all
 * workers. They live as long as the process: a reload that changes
 * dns_resolver or ratelimit_store is refused with a message saying so.
 *
 * Public:
 *   policy_runtime_start(), policy_runtime_reload(), policy_runtime_stop(),
 *   policy_runtime_probe_backend(), policy_runtime_rl_show(),
 *   policy_runtime_rl_clear()
 */

/* System. */
#include <ctype.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Library. */
#include <event2/buffer.h>

/* Project. */
#include "check_dkim.h"
#include "check_dmarc.h"
#include "check_spf.h"
#include "config.h"
#include "dns.h"
#include "fmt.h"
#include "log.h"
#include "policy_runtime.h"
#include "ratelimit.h"
#include "server.h"

#define PSL_PATH "/usr/share/publicsuffix/effective_tld_names.dat"

/* same - two optional strings equal? */
static int
same(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* policy_runtime_start - create the shared objects. */
int
policy_runtime_start(struct server *srv, char *err, size_t errlen)
{
	struct config *cf = srv->cf;
	char e[512];

	if (!(srv->dns = dns_new(cf->dns_resolver, cf->dns_timeout_ms, e, sizeof(e)))) {
		fmt_snprintf(err, errlen, "dns_resolver: %s", e);
		return -1;
	}
	if (!(srv->spf = spf_checker_new(srv->dns, cf->hostname))) {
		fmt_snprintf(err, errlen, "cannot set up SPF");
		return -1;
	}
	if (!(srv->dkim = dkimv_lib_new(srv->dns, NULL, e, sizeof(e)))) {
		fmt_snprintf(err, errlen, "DKIM: %s", e);
		return -1;
	}
	if (!(srv->dmarc = dmarcv_lib_new(srv->dns, PSL_PATH, e, sizeof(e)))) {
		fmt_snprintf(err, errlen, "DMARC: %s", e);
		return -1;
	}
	srv->ratelimit = ratelimit_new(cf->ratelimit_store ? cf->ratelimit_store : "memory",
				       cf->ratelimit_prefix, 0, 0, e, sizeof(e));
	if (!srv->ratelimit) {
		fmt_snprintf(err, errlen, "ratelimit_store: %s", e);
		return -1;
	}
	return 0;
}

/* policy_runtime_reload - what cannot change without a restart. */
int
policy_runtime_reload(struct server *srv, struct config *cf, char *err, size_t errlen)
{
	if (!same(cf->dns_resolver, srv->cf->dns_resolver)) {
		fmt_snprintf(err, errlen, "%s: dns_resolver cannot change on reload; restart ravelin", cf->path);
		return -1;
	}
	if (!same(cf->ratelimit_store, srv->cf->ratelimit_store)) {
		fmt_snprintf(err, errlen, "%s: ratelimit_store cannot change on reload; restart ravelin", cf->path);
		return -1;
	}
	return 0;
}

/* policy_runtime_stop - free everything; no check may be running. */
void
policy_runtime_stop(struct server *srv)
{
	ratelimit_free(srv->ratelimit);
	dmarcv_lib_free(srv->dmarc);
	dkimv_lib_free(srv->dkim);
	spf_checker_free(srv->spf);
	dns_free(srv->dns);
}

/* probe_read - read one whole reply within the deadline; its code or -1. */
static int
probe_read(int fd, char *buf, size_t len)
{
	size_t n = 0;
	for (;;) {
		struct pollfd p = { fd, POLLIN, 0 };
		if (poll(&p, 1, 2000) <= 0)
			return -1;
		ssize_t r = read(fd, buf + n, len - 1 - n);
		if (r <= 0)
			return -1;
		n += (size_t)r;
		buf[n] = '\0';
		/* The last line is "ddd text\r\n". */
		char *last = buf;
		for (char *c = buf; (c = strstr(c, "\n")) && c[1]; c++)
			last = c + 1;
		if (n >= 4 && buf[n - 1] == '\n' && strlen(last) >= 4 && last[3] != '-')
			return atoi(last);
		if (n >= len - 1)
			return -1;
	}
}

/* policy_runtime_probe_backend - EHLO the first backend once, so that the
 * first clients are offered what it really supports. Best effort. */
void
policy_runtime_probe_backend(struct server *srv)
{
	struct config *cf = srv->cf;
	char buf[8192];
	unsigned caps = BECAP_KNOWN;

	if (!cf->nbackends || cf->backends[0].mode == BACKEND_PROXY)
		return;
	int fd = socket(cf->backends[0].addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	struct timeval tv = { 2, 0 };
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&cf->backends[0].addr, cf->backends[0].addrlen) < 0 ||
	    probe_read(fd, buf, sizeof(buf)) != 220) {
		log_warnx(NULL, "backend %s not reachable at startup; will retry per session",
			  cf->backends[0].text);
		close(fd);
		return;
	}
	char ehlo[300];
	int n = fmt_snprintf(ehlo, sizeof(ehlo), "EHLO %s\r\n", cf->hostname);
	if (write(fd, ehlo, (size_t)n) != n || probe_read(fd, buf, sizeof(buf)) != 250) {
		close(fd);
		return;
	}
	for (char *line = strchr(buf, '\n'); line && line[1]; line = strchr(line + 1, '\n')) {
		const char *kw = line + 5;
		size_t k = strcspn(kw, " \r\n");
		if (k == 10 && !strncasecmp(kw, "PIPELINING", 10)) caps |= BECAP_PIPELINING;
		if (k == 8 && !strncasecmp(kw, "8BITMIME", 8)) caps |= BECAP_8BITMIME;
		if (k == 8 && !strncasecmp(kw, "SMTPUTF8", 8)) caps |= BECAP_SMTPUTF8;
		if (k == 3 && !strncasecmp(kw, "DSN", 3)) caps |= BECAP_DSN;
		if (k == 4 && !strncasecmp(kw, "SIZE", 4)) caps |= BECAP_SIZE;
		if (k == 7 && !strncasecmp(kw, "XCLIENT", 7)) caps |= BECAP_XCLIENT;
		if (k == 8 && !strncasecmp(kw, "STARTTLS", 8)) caps |= BECAP_STARTTLS;
	}
	(void)!write(fd, "QUIT\r\n", 6);
	close(fd);
	__atomic_store_n(&srv->becaps, caps, __ATOMIC_RELAXED);
	if (cf->backends[0].mode == BACKEND_XCLIENT && !(caps & BECAP_XCLIENT))
		log_warnx(NULL, "backend %s does not offer XCLIENT to us (Postfix: "
			  "smtpd_authorized_xclient_hosts)", cf->backends[0].text);
}

/* policy_runtime_rl_show - `show ratelimit KEY`. */
int
policy_runtime_rl_show(void *arg, const char *key, struct evbuffer *out)
{
	struct server *srv = arg;
	unsigned count = 0;
	const char *slash = strrchr(key, '/');
	unsigned period = 3600;
	char k[600];

	/* "KEY" or "KEY/PERIOD" (seconds) */
	fmt_snprintf(k, sizeof(k), "%s", key);
	if (slash && atoi(slash + 1) > 0) {
		period = (unsigned)atoi(slash + 1);
		k[slash - key] = '\0';
	}
	if (ratelimit_peek(srv->ratelimit, k, period, &count) < 0) {
		evbuffer_add_printf(out, "store error");
		return -1;
	}
	evbuffer_add_printf(out, "%s: %u events in the last %us\n", k, count, period);
	return 0;
}

/* policy_runtime_rl_clear - `clear ratelimit KEY` or `KEY/PERIOD` (as shown):
 * "ok" when a key was removed, an error when there was none (control.h). */
int
policy_runtime_rl_clear(void *arg, const char *key, struct evbuffer *out)
{
	struct server *srv = arg;
	const char *slash = strrchr(key, '/');
	char k[600];

	int r = ratelimit_clear(srv->ratelimit, key);
	if (r == 0 && slash && slash[1] && strspn(slash + 1, "0123456789") == strlen(slash + 1)) {
		/* "RULE:KEY/PERIOD", the form `show ratelimit` takes; keys may hold '/'
		 * themselves (client.net), so the exact key was tried first. */
		fmt_snprintf(k, sizeof(k), "%.*s", (int)(slash - key), key);
		r = ratelimit_clear(srv->ratelimit, k);
	}
	if (r < 0) {
		evbuffer_add_printf(out, "store error");
		return -1;
	}
	if (r == 0) {
		evbuffer_add_printf(out, "no such key: %s", key);
		return -1;
	}
	return 0;
}
