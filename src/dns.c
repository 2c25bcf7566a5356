/*
 * dns.c - ravelin's one DNS resolver, on libunbound.
 *
 * Every check that needs DNS (SPF, DKIM, DMARC, DNSBL) asks through here
 * so that the configured dns_resolver, the timeouts and the cache apply to
 * all of them. libunbound runs forward-only to the configured server (or
 * the resolv.conf nameservers), never recursing from the root itself, and
 * without DNSSEC validation. Its message and rrset caches keep answers for
 * their TTL (and denials for the SOA minimum), which is the cache ravelin
 * uses; tests/e2e/test_dns.py checks that by counting queries at the
 * server.
 *
 * ub_resolve() has no timeout, so queries go through ub_resolve_async()
 * (unbound's own resolver thread) and one dispatcher thread that calls
 * ub_process() whenever answers arrive; the asking thread waits on its own
 * condition variable until the answer, the per-query timeout or the
 * caller's deadline, whichever is first. A query that times out is
 * cancelled and never holds up the others.
 *
 * Public:
 *   dns_new(), dns_free(), dns_query(), dns_answer_free(), dns_deadline(),
 *   dns_status_name(), dns_type_name(), dns_ptr_name()
 */

/* System. */
#include <sys/socket.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* Libraries. */
#include <unbound.h>

/* Project. */
#include "dns.h"
#include "fmt.h"

#define DNS_DEFAULT_TIMEOUT_MS 5000
#define DNS_NAME_MAX 253	/* presentation form, no final dot */
#define DNS_LABEL_MAX 63

/* A front cache of converted answers: a hit costs a lock and a copy
 * instead of two thread hand-offs through unbound's dispatcher. Direct-
 * mapped (a collision replaces), bounded, honouring the answer's TTL. */
#define DNS_CACHE_SLOTS 4096
#define DNS_CACHE_SHARDS 16

struct dns_cache_slot {
	char *name;                 /* lower-cased, NULL when empty */
	int type;
	struct timespec expires;
	struct dns_answer *ans;
};

struct dns {
	struct ub_ctx *ctx;
	unsigned timeout_ms;
	pthread_mutex_t cache_lock[DNS_CACHE_SHARDS];
	struct dns_cache_slot cache[DNS_CACHE_SLOTS];
	pthread_t dispatcher;
	int stop_pipe[2];	/* written once by dns_free to stop the dispatcher */
};

/*
 * One outstanding query. Shared by the asking thread and the callback that
 * ub_process() runs on the dispatcher thread: whoever comes second frees
 * it (see dns_query and dns_callback).
 */
struct dns_pending {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	int done;		/* the callback has stored err/result */
	int abandoned;		/* the asker gave up and left */
	int err;
	struct ub_result *result;
};

/* dns_set_err - format a message into the caller's error buffer. */
static void
dns_set_err(char *err, size_t errlen, const char *what, const char *detail)
{
	if (err != NULL && errlen > 0)
		fmt_snprintf(err, errlen, "%s%s%s", what, detail ? ": " : "", detail ? detail : "");
}

/* dns_parse_server - turn "ADDR[:PORT]" or "[V6]:PORT" into unbound's "ADDR@PORT". */
static int
dns_parse_server(const char *server, char *out, size_t outlen)
{
	char addr[INET6_ADDRSTRLEN + 1];
	const char *port = NULL, *end;
	struct in6_addr a6;
	struct in_addr a4;
	size_t alen;
	char *ep;
	long p = 53;

	if (server[0] == '[') {
		end = strchr(server, ']');
		if (end == NULL)
			return -1;
		alen = end - (server + 1);
		if (alen >= sizeof(addr))
			return -1;
		memcpy(addr, server + 1, alen);
		addr[alen] = '\0';
		if (end[1] == ':')
			port = end + 2;
		else if (end[1] != '\0')
			return -1;
		if (inet_pton(AF_INET6, addr, &a6) != 1)
			return -1;
	} else {
		end = strchr(server, ':');
		/* More than one colon: a bare IPv6 address without port. */
		if (end != NULL && strchr(end + 1, ':') != NULL)
			end = NULL;
		alen = end ? (size_t)(end - server) : strlen(server);
		if (alen >= sizeof(addr))
			return -1;
		memcpy(addr, server, alen);
		addr[alen] = '\0';
		if (end != NULL)
			port = end + 1;
		if (inet_pton(AF_INET, addr, &a4) != 1 && inet_pton(AF_INET6, addr, &a6) != 1)
			return -1;
	}
	if (port != NULL) {
		errno = 0;
		p = strtol(port, &ep, 10);
		if (*port == '\0' || *ep != '\0' || errno != 0 || p < 1 || p > 65535)
			return -1;
	}
	if ((size_t)fmt_snprintf(out, outlen, "%s@%ld", addr, p) >= outlen)
		return -1;
	return 0;
}

/* dns_dispatch - thread body: hand arriving answers to their callbacks. */
static void *
dns_dispatch(void *arg)
{
	struct dns *dns = arg;
	struct pollfd pfd[2];

	for (;;) {
		pfd[0].fd = ub_fd(dns->ctx);
		pfd[0].events = POLLIN;
		pfd[1].fd = dns->stop_pipe[0];
		pfd[1].events = POLLIN;
		if (poll(pfd, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			/* Nothing sensible left to do; don't spin. */
			usleep(10000);
			continue;
		}
		if (pfd[1].revents)
			break;
		if (pfd[0].revents && ub_process(dns->ctx) != 0)
			usleep(1000);
	}
	return NULL;
}

/* dns_set_options - forward-only, no validation, loopback servers allowed. */
static int
dns_set_options(struct ub_ctx *ctx, char *err, size_t errlen)
{
	static const char *const opts[][2] = {
		/* Test servers and local caches live on 127.0.0.1. */
		{ "do-not-query-localhost:", "no" },
		/* No DNSSEC validation (DESIGN.md 6a): the iterator alone. */
		{ "module-config:", "iterator" },
		/* Full names to the forwarder, as a stub resolver sends them. */
		{ "qname-minimisation:", "no" },
		/*
		 * One forwarder that once timed out must still be asked:
		 * without this unbound may mark it down for minutes and fail
		 * every other query meanwhile.
		 */
		{ "infra-keep-probing:", "yes" },
		{ "infra-host-ttl:", "60" },
		/* Records in the order the server gave them: SPF's ptr mechanism
		 * checks the first ten names, and its result must not change
		 * from one query to the next. */
		{ "rrset-roundrobin:", "no" },
		/*
		 * unbound answers some zones itself (RFC 6303, 6761). The
		 * configured server decides instead: PTR records for private
		 * and documentation ranges are real data to a mail filter,
		 * and tests serve names under test. Only localhost, its
		 * reverse zones and onion. stay local.
		 */
		{ "unblock-lan-zones:", "yes" },
		{ "local-zone:", "test. transparent" },
		{ "local-zone:", "invalid. transparent" },
		{ "local-zone:", "home.arpa. transparent" },
	};
	size_t i;
	int rc;

	for (i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
		rc = ub_ctx_set_option(ctx, opts[i][0], opts[i][1]);
		if (rc != 0) {
			dns_set_err(err, errlen, opts[i][0], ub_strerror(rc));
			return -1;
		}
	}
	/* Resolve in a thread of this process, not a forked one. */
	if ((rc = ub_ctx_async(ctx, 1)) != 0) {
		dns_set_err(err, errlen, "ub_ctx_async", ub_strerror(rc));
		return -1;
	}
	return 0;
}

/* dns_new - create the resolver and its dispatcher thread. */
struct dns *
dns_new(const char *server, unsigned timeout_ms, char *err, size_t errlen)
{
	struct dns *dns;
	char fwd[INET6_ADDRSTRLEN + 16];
	int rc;

	if ((dns = calloc(1, sizeof(*dns))) == NULL) {
		dns_set_err(err, errlen, "out of memory", NULL);
		return NULL;
	}
	dns->stop_pipe[0] = dns->stop_pipe[1] = -1;
	dns->timeout_ms = timeout_ms ? timeout_ms : DNS_DEFAULT_TIMEOUT_MS;
	for (int i = 0; i < DNS_CACHE_SHARDS; i++)
		pthread_mutex_init(&dns->cache_lock[i], NULL);
	if ((dns->ctx = ub_ctx_create()) == NULL) {
		dns_set_err(err, errlen, "ub_ctx_create failed", NULL);
		goto fail;
	}
	if (dns_set_options(dns->ctx, err, errlen) < 0)
		goto fail;
	if (server != NULL) {
		if (dns_parse_server(server, fwd, sizeof(fwd)) < 0) {
			dns_set_err(err, errlen, "bad dns server address (want ADDR[:PORT])", server);
			goto fail;
		}
		rc = ub_ctx_set_fwd(dns->ctx, fwd);
	} else {
		/* With no nameserver line unbound forwards to 127.0.0.1. */
		rc = ub_ctx_resolvconf(dns->ctx, NULL);
	}
	if (rc != 0) {
		dns_set_err(err, errlen, server ? "ub_ctx_set_fwd" : "/etc/resolv.conf",
			    rc == UB_READFILE ? strerror(errno) : ub_strerror(rc));
		goto fail;
	}
	if (pipe2(dns->stop_pipe, O_CLOEXEC) < 0) {
		dns_set_err(err, errlen, "pipe", strerror(errno));
		goto fail;
	}
	if ((rc = pthread_create(&dns->dispatcher, NULL, dns_dispatch, dns)) != 0) {
		dns_set_err(err, errlen, "pthread_create", strerror(rc));
		goto fail;
	}
	return dns;
fail:
	if (dns->stop_pipe[0] >= 0) {
		close(dns->stop_pipe[0]);
		close(dns->stop_pipe[1]);
	}
	if (dns->ctx != NULL)
		ub_ctx_delete(dns->ctx);
	free(dns);
	return NULL;
}

/* dns_free - stop the dispatcher, then unbound. */
void
dns_free(struct dns *dns)
{
	char c = 0;

	if (dns == NULL)
		return;
	while (write(dns->stop_pipe[1], &c, 1) < 0 && errno == EINTR)
		;
	pthread_join(dns->dispatcher, NULL);
	ub_ctx_delete(dns->ctx);
	close(dns->stop_pipe[0]);
	close(dns->stop_pipe[1]);
	for (size_t i = 0; i < DNS_CACHE_SLOTS; i++) {
		free(dns->cache[i].name);
		dns_answer_free(dns->cache[i].ans);
	}
	for (int i = 0; i < DNS_CACHE_SHARDS; i++)
		pthread_mutex_destroy(&dns->cache_lock[i]);
	free(dns);
}

/* dns_pending_free - release a pending query and any result in it. */
static void
dns_pending_free(struct dns_pending *p)
{
	if (p->result != NULL)
		ub_resolve_free(p->result);
	pthread_cond_destroy(&p->cond);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

/* dns_callback - runs in ub_process() on the dispatcher: deliver or discard. */
static void
dns_callback(void *arg, int err, struct ub_result *result)
{
	struct dns_pending *p = arg;
	int abandoned;

	pthread_mutex_lock(&p->lock);
	abandoned = p->abandoned;
	p->err = err;
	p->result = result;
	p->done = 1;
	if (!abandoned)
		pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
	/* The asker timed out and could not cancel: we are last. */
	if (abandoned)
		dns_pending_free(p);
}

/*
 * dns_escape_name - check a name (labels of 1-63 octets, 253 in all) and
 * write it as unbound reads names: octets other than letters, digits and
 * plain punctuation as \DDD, so that a label may hold any octet (SPF
 * macros put local-parts in names). 0, or -1 if it is not a valid name.
 */
static int
dns_escape_name(const char *name, char *out, size_t outlen)
{
	size_t len = strlen(name), label = 0, i, o = 0;

	if (len > 0 && name[len - 1] == '.')
		len--;
	if (len == 0 || len > DNS_NAME_MAX)
		return -1;
	for (i = 0; i < len; i++) {
		unsigned char c = name[i];

		if (o + 5 >= outlen)
			return -1;
		if (c == '.') {
			if (label == 0)
				return -1;
			label = 0;
			out[o++] = '.';
			continue;
		}
		if (++label > DNS_LABEL_MAX)
			return -1;
		if (c <= ' ' || c >= 0x7f || c == '\\' || c == '"' || c == ';' || c == '(' || c == ')')
			o += fmt_snprintf(out + o, outlen - o, "\\%03u", c);
		else
			out[o++] = c;
	}
	if (label == 0)
		return -1;
	out[o] = '\0';
	return 0;
}

/* dns_wire_name - uncompressed wire-format name to text, no final dot; -1 if malformed. */
static int
dns_wire_name(const unsigned char *p, size_t len, char *out, size_t outlen)
{
	size_t i = 0, o = 0;

	while (i < len && p[i] != 0) {
		size_t l = p[i++], j;

		if (l > DNS_LABEL_MAX || i + l > len)
			return -1;
		if (o > 0 && o + 1 < outlen)
			out[o++] = '.';
		for (j = 0; j < l; j++) {
			unsigned char c = p[i + j];

			if (o + 5 >= outlen)
				return -1;
			if (c == '.' || c == '\\')
				o += fmt_snprintf(out + o, outlen - o, "\\%c", c);
			else if (c <= ' ' || c >= 0x7f)
				o += fmt_snprintf(out + o, outlen - o, "\\%03u", c);
			else
				out[o++] = c;
		}
		i += l;
	}
	if (i >= len)
		return -1;
	out[o] = '\0';
	return 0;
}

/* dns_txt_join - concatenate a TXT rdata's character-strings; -1 if malformed. */
static int
dns_txt_join(const unsigned char *p, size_t len, struct dns_rr *rr)
{
	size_t i = 0, o = 0;

	if ((rr->text = malloc(len + 1)) == NULL)
		return -1;
	while (i < len) {
		size_t l = p[i++];

		if (i + l > len) {
			free(rr->text);
			rr->text = NULL;
			return -1;
		}
		memcpy(rr->text + o, p + i, l);
		o += l;
		i += l;
	}
	rr->text[o] = '\0';
	rr->len = o;
	return 0;
}

/* dns_convert_rr - one rdata item into a dns_rr; -1 if malformed or no memory. */
static int
dns_convert_rr(int type, const unsigned char *p, size_t len, struct dns_rr *rr)
{
	char buf[DNS_NAME_MAX * 4 + 8];

	memset(rr, 0, sizeof(*rr));
	switch (type) {
	case DNS_T_A:
		if (len != 4)
			return -1;
		memcpy(&rr->addr.v4, p, 4);
		inet_ntop(AF_INET, p, buf, sizeof(buf));
		break;
	case DNS_T_AAAA:
		if (len != 16)
			return -1;
		memcpy(&rr->addr.v6, p, 16);
		inet_ntop(AF_INET6, p, buf, sizeof(buf));
		break;
	case DNS_T_MX:
		if (len < 3 || dns_wire_name(p + 2, len - 2, buf, sizeof(buf)) < 0)
			return -1;
		rr->pref = (p[0] << 8) | p[1];
		break;
	case DNS_T_PTR:
	case DNS_T_CNAME:
	case DNS_T_NS:
		if (dns_wire_name(p, len, buf, sizeof(buf)) < 0)
			return -1;
		break;
	case DNS_T_TXT:
		return dns_txt_join(p, len, rr);
	default:
		/* Types without a text form here: raw rdata bytes. */
		if ((rr->text = malloc(len + 1)) == NULL)
			return -1;
		memcpy(rr->text, p, len);
		rr->text[len] = '\0';
		rr->len = len;
		return 0;
	}
	if ((rr->text = strdup(buf)) == NULL)
		return -1;
	rr->len = strlen(buf);
	return 0;
}

/* dns_same_name - compare two names ignoring case and a final dot. */
static int
dns_same_name(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);

	if (la > 0 && a[la - 1] == '.')
		la--;
	if (lb > 0 && b[lb - 1] == '.')
		lb--;
	return la == lb && strncasecmp(a, b, la) == 0;
}

/* dns_convert - build our answer from unbound's error code and result. */
static void
dns_convert(struct dns_answer *ans, const char *name, int type, int err, struct ub_result *r)
{
	size_t n, i;

	if (err != 0 || r == NULL) {
		ans->status = DNS_SERVFAIL;
		return;
	}
	ans->rcode = r->rcode;
	ans->ttl = r->ttl > 0 ? (unsigned)r->ttl : 0;
	if (r->canonname != NULL && !dns_same_name(r->canonname, name)) {
		ans->canonname = strdup(r->canonname);
		if (ans->canonname != NULL && ans->canonname[0] != '\0' &&
		    ans->canonname[strlen(ans->canonname) - 1] == '.')
			ans->canonname[strlen(ans->canonname) - 1] = '\0';
	}
	if (r->rcode == 3) {
		ans->status = DNS_NXDOMAIN;
		return;
	}
	if (r->rcode != 0) {
		ans->status = DNS_SERVFAIL;
		return;
	}
	for (n = 0; r->havedata && r->data[n] != NULL; n++)
		;
	if (n > 0 && (ans->rr = calloc(n, sizeof(*ans->rr))) == NULL) {
		ans->status = DNS_SERVFAIL;
		return;
	}
	for (i = 0; i < n; i++)
		if (dns_convert_rr(type, (unsigned char *)r->data[i], r->len[i],
				   &ans->rr[ans->count]) == 0)
			ans->count++;
	ans->status = ans->count > 0 ? DNS_OK : DNS_NODATA;
}

/* dns_ts_before - whether a is earlier than b. */
static int
dns_ts_before(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

/* dns_pending_new - a pending query whose condition waits on CLOCK_MONOTONIC. */
static struct dns_pending *
dns_pending_new(void)
{
	struct dns_pending *p;
	pthread_condattr_t ca;

	if ((p = calloc(1, sizeof(*p))) == NULL)
		return NULL;
	pthread_mutex_init(&p->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&p->cond, &ca);
	pthread_condattr_destroy(&ca);
	return p;
}

/* answer_dup - a deep copy of an answer (NULL on allocation failure). */
static struct dns_answer *
answer_dup(const struct dns_answer *a)
{
	struct dns_answer *c = calloc(1, sizeof(*c));

	if (!c)
		return NULL;
	*c = *a;
	c->rr = NULL;
	c->count = 0;
	c->canonname = a->canonname ? strdup(a->canonname) : NULL;
	if (a->count) {
		c->rr = calloc(a->count, sizeof(*c->rr));
		if (!c->rr) {
			dns_answer_free(c);
			return NULL;
		}
		for (size_t i = 0; i < a->count; i++) {
			c->rr[i] = a->rr[i];
			c->rr[i].text = malloc(a->rr[i].len + 1);
			if (!c->rr[i].text) {
				dns_answer_free(c);
				return NULL;
			}
			memcpy(c->rr[i].text, a->rr[i].text, a->rr[i].len + 1);
			c->count = i + 1;
		}
	}
	return c;
}

/* cache_slot - where (name, type) lives; name lower-cased into key. */
static size_t
cache_slot(const char *name, int type, char *key, size_t keylen)
{
	uint64_t h = 1469598103934665603ULL ^ (uint64_t)type;
	size_t i;

	for (i = 0; name[i] && i + 1 < keylen; i++) {
		key[i] = (char)((name[i] >= 'A' && name[i] <= 'Z') ? name[i] + 32 : name[i]);
		h = (h ^ (unsigned char)key[i]) * 1099511628211ULL;
	}
	key[i] = '\0';
	return (size_t)(h % DNS_CACHE_SLOTS);
}

/* cache_get - a fresh copy of a cached answer, or NULL. */
static struct dns_answer *
cache_get(struct dns *dns, const char *name, int type)
{
	char key[DNS_NAME_MAX * 4 + 8];
	size_t slot = cache_slot(name, type, key, sizeof(key));
	pthread_mutex_t *lock = &dns->cache_lock[slot % DNS_CACHE_SHARDS];
	struct dns_cache_slot *e = &dns->cache[slot];
	struct dns_answer *copy = NULL;
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	pthread_mutex_lock(lock);
	if (e->name && e->type == type && strcmp(e->name, key) == 0 && dns_ts_before(&now, &e->expires)) {
		copy = answer_dup(e->ans);
		if (copy) {
			/* What is left of the TTL, as a resolver would say. */
			copy->ttl = (unsigned)(e->expires.tv_sec - now.tv_sec);
		}
	}
	pthread_mutex_unlock(lock);
	return copy;
}

/* cache_put - remember a definite answer (data, NODATA, NXDOMAIN). */
static void
cache_put(struct dns *dns, const char *name, int type, const struct dns_answer *ans)
{
	char key[DNS_NAME_MAX * 4 + 8];
	struct dns_answer *copy;

	if (ans->ttl == 0 || (ans->status != DNS_OK && ans->status != DNS_NODATA &&
			      ans->status != DNS_NXDOMAIN))
		return;
	if (!(copy = answer_dup(ans)))
		return;
	size_t slot = cache_slot(name, type, key, sizeof(key));
	pthread_mutex_t *lock = &dns->cache_lock[slot % DNS_CACHE_SHARDS];
	struct dns_cache_slot *e = &dns->cache[slot];
	char *k = strdup(key);
	if (!k) {
		dns_answer_free(copy);
		return;
	}
	pthread_mutex_lock(lock);
	free(e->name);
	dns_answer_free(e->ans);
	e->name = k;
	e->type = type;
	e->ans = copy;
	clock_gettime(CLOCK_MONOTONIC, &e->expires);
	e->expires.tv_sec += ans->ttl;
	pthread_mutex_unlock(lock);
}

/* Per thread: answer from the front cache only (see dns_cache_only). */
static __thread bool dns_only_cached, dns_missed;

/* dns_cache_only - on this thread, queries that are not cached fail at
 * once (DNS_TIMEOUT) instead of waiting; dns_cache_missed() tells. */
void
dns_cache_only(bool on)
{
	dns_only_cached = on;
	dns_missed = false;
}

/* dns_cache_only_suspend - queries on this thread may wait again, and
 * dns_cache_missed() keeps its answer; returns the mode to resume. */
bool
dns_cache_only_suspend(void)
{
	bool was = dns_only_cached;

	dns_only_cached = false;
	return was;
}

/* dns_cache_only_resume - back to the mode dns_cache_only_suspend() left. */
void
dns_cache_only_resume(bool was)
{
	dns_only_cached = was;
}

/* dns_cache_missed - a query failed for want of a cached answer. */
bool
dns_cache_missed(void)
{
	return dns_missed;
}

/* dns_query - ask, wait until answer/timeout/deadline, convert. */
enum dns_status
dns_query(struct dns *dns, const char *name, enum dns_type type, const struct timespec *deadline,
	  struct dns_answer **answerp)
{
	struct dns_answer *ans;
	struct dns_pending *p;
	struct timespec now, limit;
	char qname[DNS_NAME_MAX * 4 + 8];
	int id, rc, done;

	if ((*answerp = cache_get(dns, name, (int)type)) != NULL)
		return (*answerp)->status;
	if ((*answerp = ans = calloc(1, sizeof(*ans))) == NULL)
		return DNS_SERVFAIL;
	ans->rcode = -1;
	if (dns_only_cached) {
		dns_missed = true;
		return ans->status = DNS_TIMEOUT;
	}
	if (dns_escape_name(name, qname, sizeof(qname)) < 0)
		return ans->status = DNS_BADNAME;

	clock_gettime(CLOCK_MONOTONIC, &now);
	dns_deadline(&limit, dns->timeout_ms);
	if (deadline != NULL && dns_ts_before(deadline, &limit))
		limit = *deadline;
	if (!dns_ts_before(&now, &limit))
		return ans->status = DNS_TIMEOUT;

	if ((p = dns_pending_new()) == NULL)
		return ans->status = DNS_SERVFAIL;
	rc = ub_resolve_async(dns->ctx, qname, type, 1 /* IN */, p, dns_callback, &id);
	if (rc != 0) {
		dns_pending_free(p);
		return ans->status = DNS_SERVFAIL;
	}

	pthread_mutex_lock(&p->lock);
	while (!p->done) {
		if (pthread_cond_timedwait(&p->cond, &p->lock, &limit) == ETIMEDOUT)
			break;
	}
	done = p->done;
	if (!done)
		p->abandoned = 1;
	pthread_mutex_unlock(&p->lock);

	if (done) {
		dns_convert(ans, name, type, p->err, p->result);
		dns_pending_free(p);
		cache_put(dns, name, (int)type, ans);
		return ans->status;
	}
	/*
	 * Timed out. If unbound still knows the query, cancelling means the
	 * callback will never run and p is ours to free; otherwise the
	 * callback has run or is about to, sees abandoned and frees p.
	 */
	if (ub_cancel(dns->ctx, id) == 0)
		dns_pending_free(p);
	return ans->status = DNS_TIMEOUT;
}

/* dns_txt_text - every TXT record of name as one printable string,
 * records separated by '\n' (control bytes become spaces), truncated to
 * outlen. Returns the query's status; out is "" unless DNS_OK. */
enum dns_status
dns_txt_text(struct dns *dns, const char *name, const struct timespec *deadline, char *out,
	     size_t outlen)
{
	struct dns_answer *a = NULL;
	enum dns_status st;
	size_t o = 0;

	out[0] = '\0';
	if (dns == NULL)
		return DNS_SERVFAIL;
	st = dns_query(dns, name, DNS_T_TXT, deadline, &a);
	if (st == DNS_OK && a != NULL) {
		for (size_t i = 0; i < a->count; i++) {
			if (i > 0 && o + 1 < outlen)
				out[o++] = '\n';
			for (size_t j = 0; j < a->rr[i].len && o + 1 < outlen; j++) {
				unsigned char c = (unsigned char)a->rr[i].text[j];
				out[o++] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
			}
		}
		out[o] = '\0';
	}
	dns_answer_free(a);
	return st;
}

/* dns_answer_free - free an answer and its records. */
void
dns_answer_free(struct dns_answer *ans)
{
	size_t i;

	if (ans == NULL)
		return;
	for (i = 0; i < ans->count; i++)
		free(ans->rr[i].text);
	free(ans->rr);
	free(ans->canonname);
	free(ans);
}

/* dns_deadline - now + ms on the monotonic clock. */
void
dns_deadline(struct timespec *deadline, unsigned ms)
{
	clock_gettime(CLOCK_MONOTONIC, deadline);
	deadline->tv_sec += ms / 1000;
	deadline->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (deadline->tv_nsec >= 1000000000L) {
		deadline->tv_sec++;
		deadline->tv_nsec -= 1000000000L;
	}
}

/* dns_status_name - lower-case name of a status, for logs and tests. */
const char *
dns_status_name(enum dns_status status)
{
	switch (status) {
	case DNS_OK:
		return "ok";
	case DNS_NODATA:
		return "nodata";
	case DNS_NXDOMAIN:
		return "nxdomain";
	case DNS_SERVFAIL:
		return "servfail";
	case DNS_TIMEOUT:
		return "timeout";
	case DNS_BADNAME:
		return "badname";
	}
	return "unknown";
}

/* dns_type_name - mnemonic of a record type. */
const char *
dns_type_name(enum dns_type type)
{
	switch (type) {
	case DNS_T_A:
		return "A";
	case DNS_T_NS:
		return "NS";
	case DNS_T_CNAME:
		return "CNAME";
	case DNS_T_SOA:
		return "SOA";
	case DNS_T_PTR:
		return "PTR";
	case DNS_T_MX:
		return "MX";
	case DNS_T_TXT:
		return "TXT";
	case DNS_T_AAAA:
		return "AAAA";
	}
	return NULL;
}

/* dns_ptr_name - reverse name of an IPv4 or IPv6 address (mapped IPv6 as IPv4). */
int
dns_ptr_name(const struct sockaddr *sa, char *buf, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *b;
	size_t o = 0;
	int i;

	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;

		b = s6->sin6_addr.s6_addr;
		if (!IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
			if (len < 16 * 4 + sizeof("ip6.arpa"))
				return -1;
			for (i = 15; i >= 0; i--) {
				buf[o++] = hex[b[i] & 0xf];
				buf[o++] = '.';
				buf[o++] = hex[b[i] >> 4];
				buf[o++] = '.';
			}
			memcpy(buf + o, "ip6.arpa", sizeof("ip6.arpa"));
			return 0;
		}
		b += 12;
	} else if (sa->sa_family == AF_INET) {
		b = (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr;
	} else
		return -1;
	if ((size_t)fmt_snprintf(buf, len, "%u.%u.%u.%u.in-addr.arpa", b[3], b[2], b[1], b[0]) >= len)
		return -1;
	return 0;
}
