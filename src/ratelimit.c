/*
 * ratelimit.c - front of the rate-limit stores behind limit(KEY, N/PERIOD).
 *
 * Parses the store url ("memory" or "redis://HOST:PORT/DB"), checks the
 * arguments every store relies on, dispatches to store_memory.c or
 * store_redis.c and counts store errors. Semantics are in ratelimit.h.
 *
 * Public:
 *   ratelimit_new(), ratelimit_free(), ratelimit_may_block(),
 *   ratelimit_hit(), ratelimit_peek(), ratelimit_clear(),
 *   ratelimit_store_errors(), ratelimit_keys(), ratelimit_url()
 */

/* System. */
#include <arpa/inet.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Project. */
#include "fmt.h"
#include "ratelimit.h"
#include "ratelimit_store.h"

/* Redis call timeout when the caller passes 0. */
#define RATELIMIT_DEFAULT_TIMEOUT_MS 200

struct ratelimit {
	struct ratelimit_mem *mem;	/* exactly one of mem and redis is set */
	struct ratelimit_redis *redis;
	atomic_ulong errors;
	char *url;
};

/* rl_parse_redis - split "redis://HOST[:PORT][/DB]" into its parts; 0 or -1. */
static int
rl_parse_redis(const char *url, char *host, size_t hostlen, int *port, int *db, char *err,
	       size_t errlen)
{
	const char *p = url + strlen("redis://"), *end;
	unsigned char addr[sizeof(struct in6_addr)];
	char *num_end;
	long v;
	size_t len;

	if (*p == '[') {
		if ((end = strchr(++p, ']')) == NULL) {
			fmt_snprintf(err, errlen, "%s: missing ']'", url);
			return -1;
		}
		len = end - p;
		end++;
	} else {
		end = p + strcspn(p, ":/");
		len = end - p;
	}
	if (len == 0 || len >= hostlen) {
		fmt_snprintf(err, errlen, "%s: bad host", url);
		return -1;
	}
	memcpy(host, p, len);
	host[len] = '\0';
	if (inet_pton(AF_INET, host, addr) != 1 && inet_pton(AF_INET6, host, addr) != 1) {
		/* hiredis would resolve a name with blocking getaddrinfo. */
		fmt_snprintf(err, errlen, "%s: host must be an IP address", url);
		return -1;
	}
	*port = 6379;
	*db = 0;
	p = end;
	if (*p == ':') {
		v = strtol(p + 1, &num_end, 10);
		if (num_end == p + 1 || v < 1 || v > 65535) {
			fmt_snprintf(err, errlen, "%s: bad port", url);
			return -1;
		}
		*port = (int)v;
		p = num_end;
	}
	if (*p == '/' && p[1] != '\0') {
		v = strtol(p + 1, &num_end, 10);
		if (num_end == p + 1 || v < 0 || v > 1000000) {
			fmt_snprintf(err, errlen, "%s: bad database number", url);
			return -1;
		}
		*db = (int)v;
		p = num_end;
	} else if (*p == '/') {
		p++;
	}
	if (*p != '\0') {
		fmt_snprintf(err, errlen, "%s: unexpected \"%s\"", url, p);
		return -1;
	}
	return 0;
}

/* ratelimit_new - open the store named by url; NULL with err on failure. */
struct ratelimit *
ratelimit_new(const char *url, const char *prefix, unsigned timeout_ms, size_t max_keys,
	      char *err, size_t errlen)
{
	struct ratelimit *rl;
	char host[INET6_ADDRSTRLEN];
	int port, db;

	if (err && errlen)
		err[0] = '\0';
	if (url == NULL)
		url = "memory";
	if ((rl = calloc(1, sizeof(*rl))) == NULL || (rl->url = strdup(url)) == NULL) {
		fmt_snprintf(err, errlen, "out of memory");
		free(rl);
		return NULL;
	}
	atomic_init(&rl->errors, 0);
	if (strcmp(url, "memory") == 0) {
		rl->mem = ratelimit_mem_new(max_keys ? max_keys : RATELIMIT_DEFAULT_MAX_KEYS);
		if (rl->mem == NULL)
			fmt_snprintf(err, errlen, "out of memory");
	} else if (strncmp(url, "redis://", 8) == 0) {
		if (rl_parse_redis(url, host, sizeof(host), &port, &db, err, errlen) == 0)
			rl->redis = ratelimit_redis_new(host, port, db,
							prefix ? prefix : RATELIMIT_DEFAULT_PREFIX,
							timeout_ms ? timeout_ms
								   : RATELIMIT_DEFAULT_TIMEOUT_MS,
							err, errlen);
	} else {
		fmt_snprintf(err, errlen, "%s: store must be memory or redis://HOST:PORT/DB", url);
	}
	if (rl->mem == NULL && rl->redis == NULL) {
		ratelimit_free(rl);
		return NULL;
	}
	return rl;
}

/* ratelimit_free - close the store; accepts NULL. */
void
ratelimit_free(struct ratelimit *rl)
{
	if (rl == NULL)
		return;
	ratelimit_mem_free(rl->mem);
	ratelimit_redis_free(rl->redis);
	free(rl->url);
	free(rl);
}

/* ratelimit_may_block - Redis calls wait on the network; memory calls do not. */
bool
ratelimit_may_block(const struct ratelimit *rl)
{
	return rl->redis != NULL;
}

/* rl_error - count a store error and pass it on. */
static int
rl_error(struct ratelimit *rl)
{
	atomic_fetch_add_explicit(&rl->errors, 1, memory_order_relaxed);
	return -1;
}

/* ratelimit_hit - count one event for key against n per period_s. */
int
ratelimit_hit(struct ratelimit *rl, const char *key, unsigned n, unsigned period_s,
	      unsigned *count)
{
	size_t keylen = strlen(key);
	int rc;

	if (keylen > RATELIMIT_KEY_MAX)
		return rl_error(rl);
	if (n == 0 || period_s == 0) {
		/* Nothing to remember: a zero limit refuses all, an empty window none. */
		if (count)
			*count = 1;
		return n == 0;
	}
	if (rl->mem)
		rc = ratelimit_mem_hit(rl->mem, key, keylen, n, period_s, count);
	else
		rc = ratelimit_redis_hit(rl->redis, key, keylen, n, period_s, count);
	return rc < 0 ? rl_error(rl) : rc;
}

/* ratelimit_peek - events of key in the last period_s seconds. */
int
ratelimit_peek(struct ratelimit *rl, const char *key, unsigned period_s, unsigned *count)
{
	size_t keylen = strlen(key);
	int rc;

	if (keylen > RATELIMIT_KEY_MAX)
		return rl_error(rl);
	if (period_s == 0) {
		if (count)
			*count = 0;
		return 0;
	}
	if (rl->mem)
		rc = ratelimit_mem_peek(rl->mem, key, keylen, period_s, count);
	else
		rc = ratelimit_redis_peek(rl->redis, key, keylen, period_s, count);
	return rc < 0 ? rl_error(rl) : rc;
}

/* ratelimit_clear - forget key: 1 removed, 0 absent, -1 error. */
int
ratelimit_clear(struct ratelimit *rl, const char *key)
{
	size_t keylen = strlen(key);
	int rc;

	if (keylen > RATELIMIT_KEY_MAX)
		return rl_error(rl);
	if (rl->mem)
		rc = ratelimit_mem_clear(rl->mem, key, keylen);
	else
		rc = ratelimit_redis_clear(rl->redis, key, keylen);
	return rc < 0 ? rl_error(rl) : rc;
}

/* ratelimit_store_errors - calls that returned -1 so far. */
unsigned long
ratelimit_store_errors(const struct ratelimit *rl)
{
	return atomic_load_explicit(&((struct ratelimit *)rl)->errors, memory_order_relaxed);
}

/* ratelimit_keys - keys held by the memory store (0 for Redis). */
size_t
ratelimit_keys(const struct ratelimit *rl)
{
	return rl->mem ? ratelimit_mem_keys(rl->mem) : 0;
}

/* ratelimit_url - the store url as configured. */
const char *
ratelimit_url(const struct ratelimit *rl)
{
	return rl->url;
}
