/*
 * store_redis.c - the shared rate-limit store (ratelimit_store redis://...).
 *
 * Several ravelin instances behind one load balancer enforce one limit by
 * keeping each key's window in one Redis sorted set: members are events,
 * scores their time in microseconds. One Lua script updates a window
 * atomically (trim, count, add, trim to the newest n, expire) and reads the
 * time with Redis's own TIME, so the instances' clocks do not matter. It is
 * sent with EVALSHA and, after a Redis restart flushed the script cache
 * (NOSCRIPT), with EVAL.
 *
 * Calls are blocking and meant for check-pool threads: every thread has
 * its own synchronous hiredis context (thread-specific data, connected on
 * first use), so no lock is held around network I/O. Connect and command
 * timeouts are the configured timeout_ms.
 *
 * Failures: when Redis cannot be reached or times out, the store goes
 * "down": one log line, and for a backoff (1 s doubling to 30 s) every call
 * fails at once with -1 instead of waiting; then one caller probes with a
 * fresh connection while the others keep failing fast. Each outage bumps an
 * epoch so that every thread drops its connection from before the outage.
 * A connection closed by the server (Redis restarted) is retried once on a
 * new connection before the store is declared down.
 *
 * Public (to ratelimit.c only, see ratelimit_store.h):
 *   ratelimit_redis_new(), ratelimit_redis_hit(), ratelimit_redis_peek(),
 *   ratelimit_redis_clear(), ratelimit_redis_free()
 */

/* System. */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

/* Libraries. */
#include <hiredis.h>
#include <openssl/evp.h>

/* Project. */
#include "fmt.h"
#include "log.h"
#include "ratelimit.h"
#include "ratelimit_store.h"

#define REDIS_BACKOFF_MIN_US 1000000ULL
#define REDIS_BACKOFF_MAX_US 30000000ULL
/* Longest prefix accepted; keys are bounded by RATELIMIT_KEY_MAX. */
#define REDIS_PREFIX_MAX 128
/* At most one log line per this interval for Redis error replies. */
#define REDIS_ERRLOG_US 10000000ULL

/*
 * The window update. KEYS[1] key; ARGV[1] n; ARGV[2] period (us); ARGV[3]
 * a token unique to this call (two events in one microsecond stay two
 * members); ARGV[4] "hit" or "peek". Returns {over, count}. Times pass
 * through string.format('%d'): Lua numbers are doubles, and Redis may
 * print a large one in exponent form. Only the newest n events are kept,
 * which is all the decision for the next event needs.
 */
static const char redis_script[] =
	"if redis.replicate_commands then redis.replicate_commands() end\n"
	"local t = redis.call('TIME')\n"
	"local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
	"local key, n, period = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2])\n"
	"if ARGV[4] == 'peek' then\n"
	"  return {0, redis.call('ZCOUNT', key, '(' .. string.format('%d', now - period), '+inf')}\n"
	"end\n"
	"redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('%d', now - period))\n"
	"local c = redis.call('ZCARD', key)\n"
	"redis.call('ZADD', key, string.format('%d', now), t[1] .. '.' .. t[2] .. ':' .. ARGV[3])\n"
	"if c >= n then redis.call('ZREMRANGEBYRANK', key, 0, -(n + 1)) end\n"
	"redis.call('PEXPIRE', key, math.ceil(period / 1000) + 1000)\n"
	"if c >= n then return {1, c + 1} end\n"
	"return {0, c + 1}\n";

struct ratelimit_redis;

/* One thread's connection; all of them are listed in the store. */
struct redis_conn {
	redisContext *c;
	unsigned epoch;			/* store epoch when connected */
	struct redis_conn *prev, *next;
	struct ratelimit_redis *r;
};

struct ratelimit_redis {
	char host[INET6_ADDRSTRLEN];
	int port, db;
	char prefix[REDIS_PREFIX_MAX + 1];
	size_t prefixlen;
	struct timeval tv;
	uint64_t timeout_us;
	char sha[41];			/* SHA1 of redis_script, for EVALSHA */
	uint64_t token;			/* random: members unique across instances */
	atomic_uint_fast64_t seq;	/* per call: members unique within one */
	pthread_key_t tkey;		/* this thread's struct redis_conn */
	pthread_mutex_t lock;		/* conns list and outage state changes */
	struct redis_conn *conns;
	uint64_t backoff_us;		/* under lock */
	atomic_uint_fast64_t down_until; /* 0 up, else fail fast until then */
	atomic_uint epoch;		/* bumped by every outage */
	atomic_uint_fast64_t errlog_at;	/* last error-reply log line */
};

/* redis_now_us - monotonic microseconds, for backoff deadlines. */
static uint64_t
redis_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* redis_conn_destroy - close and free one connection; caller holds r->lock. */
static void
redis_conn_destroy(struct ratelimit_redis *r, struct redis_conn *rc)
{
	if (rc->prev)
		rc->prev->next = rc->next;
	else
		r->conns = rc->next;
	if (rc->next)
		rc->next->prev = rc->prev;
	if (rc->c)
		redisFree(rc->c);
	free(rc);
}

/* redis_conn_exit - thread-exit destructor of a thread's connection. */
static void
redis_conn_exit(void *arg)
{
	struct redis_conn *rc = arg;
	struct ratelimit_redis *r = rc->r;

	pthread_mutex_lock(&r->lock);
	redis_conn_destroy(r, rc);
	pthread_mutex_unlock(&r->lock);
}

/* redis_conn_get - this thread's connection record, made on first use. */
static struct redis_conn *
redis_conn_get(struct ratelimit_redis *r)
{
	struct redis_conn *rc = pthread_getspecific(r->tkey);

	if (rc)
		return rc;
	if ((rc = calloc(1, sizeof(*rc))) == NULL)
		return NULL;
	rc->r = r;
	pthread_mutex_lock(&r->lock);
	rc->next = r->conns;
	if (r->conns)
		r->conns->prev = rc;
	r->conns = rc;
	pthread_mutex_unlock(&r->lock);
	if (pthread_setspecific(r->tkey, rc) != 0) {
		pthread_mutex_lock(&r->lock);
		redis_conn_destroy(r, rc);
		pthread_mutex_unlock(&r->lock);
		return NULL;
	}
	return rc;
}

/* redis_connect - open rc's context (timeouts set, database selected); 0 or -1. */
static int
redis_connect(struct ratelimit_redis *r, struct redis_conn *rc, char *err, size_t errlen)
{
	redisReply *reply;

	rc->epoch = atomic_load(&r->epoch);
	rc->c = redisConnectWithTimeout(r->host, r->port, r->tv);
	if (rc->c == NULL || rc->c->err) {
		fmt_snprintf(err, errlen, "connect: %s", rc->c ? rc->c->errstr : "out of memory");
		goto fail;
	}
	if (redisSetTimeout(rc->c, r->tv) != REDIS_OK) {
		fmt_snprintf(err, errlen, "set timeout: %s", rc->c->errstr);
		goto fail;
	}
	if (r->db != 0) {
		reply = redisCommand(rc->c, "SELECT %d", r->db);
		if (reply == NULL || reply->type != REDIS_REPLY_STATUS) {
			fmt_snprintf(err, errlen, "SELECT %d: %s", r->db,
				 reply ? (reply->str ? reply->str : "bad reply") : rc->c->errstr);
			freeReplyObject(reply);
			goto fail;
		}
		freeReplyObject(reply);
	}
	return 0;
fail:
	if (rc->c)
		redisFree(rc->c);
	rc->c = NULL;
	return -1;
}

/* redis_mark_down - note an outage: log it when new, double the backoff when a
 * probe failed, ignore late failures of calls that began before it. */
static void
redis_mark_down(struct ratelimit_redis *r, bool probe, const char *err)
{
	uint64_t now = redis_now_us();

	pthread_mutex_lock(&r->lock);
	if (atomic_load(&r->down_until) == 0) {
		r->backoff_us = REDIS_BACKOFF_MIN_US;
		atomic_fetch_add(&r->epoch, 1);
		log_warnx(NULL, "ratelimit store redis://%s:%d/%d: %s; retrying in %" PRIu64 "s",
			  r->host, r->port, r->db, err, r->backoff_us / 1000000);
	} else if (probe) {
		r->backoff_us *= 2;
		if (r->backoff_us > REDIS_BACKOFF_MAX_US)
			r->backoff_us = REDIS_BACKOFF_MAX_US;
		log_debug(NULL, "ratelimit store redis://%s:%d/%d: still down (%s); retrying in %" PRIu64
				"s", r->host, r->port, r->db, err, r->backoff_us / 1000000);
	} else {
		pthread_mutex_unlock(&r->lock);
		return;
	}
	atomic_store(&r->down_until, now + r->backoff_us);
	pthread_mutex_unlock(&r->lock);
}

/* redis_mark_up - a probe succeeded: end the outage. */
static void
redis_mark_up(struct ratelimit_redis *r)
{
	pthread_mutex_lock(&r->lock);
	if (atomic_load(&r->down_until) != 0) {
		atomic_store(&r->down_until, 0);
		r->backoff_us = REDIS_BACKOFF_MIN_US;
		log_info(NULL, "ratelimit store redis://%s:%d/%d: reconnected", r->host, r->port,
			 r->db);
	}
	pthread_mutex_unlock(&r->lock);
}

/* redis_gate - 0 go ahead, 1 go ahead as the probe, -1 fail fast (backing off). */
static int
redis_gate(struct ratelimit_redis *r)
{
	uint_fast64_t du = atomic_load(&r->down_until), now;

	if (du == 0)
		return 0;
	now = redis_now_us();
	if (now < du)
		return -1;
	/* Claim the probe; the others keep failing until it has answered. */
	if (!atomic_compare_exchange_strong(&r->down_until, &du, now + 3 * r->timeout_us + 1000000))
		return -1;
	return 1;
}

/* redis_argv - send one command on rc; an evalsha that meets NOSCRIPT is
 * sent again as eval. NULL on a connection error (rc->c->err set). */
static redisReply *
redis_argv(struct redis_conn *rc, int argc, const char **argv, size_t *argvlen)
{
	redisReply *reply = redisCommandArgv(rc->c, argc, argv, argvlen);

	if (reply && reply->type == REDIS_REPLY_ERROR && strncmp(argv[0], "EVALSHA", 7) == 0 &&
	    strncmp(reply->str, "NOSCRIPT", 8) == 0) {
		freeReplyObject(reply);
		argv[0] = "EVAL";
		argvlen[0] = 4;
		argv[1] = redis_script;
		argvlen[1] = sizeof(redis_script) - 1;
		reply = redisCommandArgv(rc->c, argc, argv, argvlen);
	}
	return reply;
}

/* redis_exec - run a command on this thread's connection with the outage
 * rules above; NULL on any failure to get a reply. */
static redisReply *
redis_exec(struct ratelimit_redis *r, int argc, const char **argv, size_t *argvlen)
{
	struct redis_conn *rc;
	redisReply *reply;
	char err[256] = "out of memory";
	bool fresh, dropped;
	int gate, attempt;

	if ((gate = redis_gate(r)) < 0)
		return NULL;
	if ((rc = redis_conn_get(r)) == NULL)
		goto down;
	if (rc->c && rc->epoch != atomic_load(&r->epoch)) {
		redisFree(rc->c);
		rc->c = NULL;
	}
	for (attempt = 0; attempt < 2; attempt++) {
		fresh = rc->c == NULL;
		if (fresh && redis_connect(r, rc, err, sizeof(err)) < 0)
			break;
		errno = 0;
		if ((reply = redis_argv(rc, argc, argv, argvlen)) != NULL) {
			if (gate == 1)
				redis_mark_up(r);
			return reply;
		}
		/* Closed by the server (restart, client timeout): worth one retry.
		 * A timeout is not: Redis is slow or gone, and callers wait. */
		dropped = rc->c->err == REDIS_ERR_EOF || errno == ECONNRESET || errno == EPIPE;
		fmt_snprintf(err, sizeof(err), "%s", rc->c->errstr);
		redisFree(rc->c);
		rc->c = NULL;
		if (fresh || !dropped)
			break;
	}
down:
	redis_mark_down(r, gate == 1, err);
	return NULL;
}

/* redis_key - prefix + key into buf; its length. */
static size_t
redis_key(const struct ratelimit_redis *r, const char *key, size_t keylen, char *buf)
{
	memcpy(buf, r->prefix, r->prefixlen);
	memcpy(buf + r->prefixlen, key, keylen);
	return r->prefixlen + keylen;
}

/* redis_error_reply - log an error reply now and then (a full or misconfigured
 * Redis answers every call with one). */
static void
redis_error_reply(struct ratelimit_redis *r, const redisReply *reply)
{
	uint_fast64_t now = redis_now_us(), last = atomic_load(&r->errlog_at);

	if ((last == 0 || now - last >= REDIS_ERRLOG_US) &&
	    atomic_compare_exchange_strong(&r->errlog_at, &last, now))
		log_warnx(NULL, "ratelimit store redis://%s:%d/%d: %s", r->host, r->port, r->db,
			  reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
}

/* redis_window - run the script in mode "hit" or "peek"; over (0/1) or -1. */
static int
redis_window(struct ratelimit_redis *r, const char *mode, const char *key, size_t keylen,
	     unsigned n, unsigned period_s, unsigned *count)
{
	char kbuf[REDIS_PREFIX_MAX + RATELIMIT_KEY_MAX], nbuf[16], pbuf[24], tbuf[48];
	const char *argv[8];
	size_t argvlen[8];
	redisReply *reply;
	int rc = -1, i;

	fmt_snprintf(nbuf, sizeof(nbuf), "%u", n);
	fmt_snprintf(pbuf, sizeof(pbuf), "%" PRIu64, (uint64_t)period_s * 1000000u);
	fmt_snprintf(tbuf, sizeof(tbuf), "%016" PRIx64 "-%" PRIx64, r->token,
		 (uint64_t)atomic_fetch_add(&r->seq, 1));
	argv[0] = "EVALSHA";
	argv[1] = r->sha;
	argv[2] = "1";
	argv[3] = kbuf;
	argv[4] = nbuf;
	argv[5] = pbuf;
	argv[6] = tbuf;
	argv[7] = mode;
	argvlen[3] = redis_key(r, key, keylen, kbuf);
	for (i = 0; i < 8; i++)
		if (i != 3)
			argvlen[i] = strlen(argv[i]);
	if ((reply = redis_exec(r, 8, argv, argvlen)) == NULL)
		return -1;
	if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
	    reply->element[0]->type == REDIS_REPLY_INTEGER &&
	    reply->element[1]->type == REDIS_REPLY_INTEGER) {
		if (count)
			*count = reply->element[1]->integer > UINT32_MAX
					 ? UINT32_MAX
					 : (unsigned)reply->element[1]->integer;
		rc = reply->element[0]->integer != 0;
	} else {
		redis_error_reply(r, reply);
	}
	freeReplyObject(reply);
	return rc;
}

/* ratelimit_redis_new - a store for Redis at host:port, database db. */
struct ratelimit_redis *
ratelimit_redis_new(const char *host, int port, int db, const char *prefix, unsigned timeout_ms,
		    char *err, size_t errlen)
{
	struct ratelimit_redis *r;
	struct sigaction sa;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0, i;

	if (strlen(prefix) > REDIS_PREFIX_MAX) {
		fmt_snprintf(err, errlen, "ratelimit prefix longer than %d", REDIS_PREFIX_MAX);
		return NULL;
	}
	if ((r = calloc(1, sizeof(*r))) == NULL) {
		fmt_snprintf(err, errlen, "out of memory");
		return NULL;
	}
	fmt_snprintf(r->host, sizeof(r->host), "%s", host);
	r->port = port;
	r->db = db;
	r->prefixlen = strlen(prefix);
	memcpy(r->prefix, prefix, r->prefixlen);
	r->tv.tv_sec = timeout_ms / 1000;
	r->tv.tv_usec = (timeout_ms % 1000) * 1000;
	r->timeout_us = (uint64_t)timeout_ms * 1000;
	r->backoff_us = REDIS_BACKOFF_MIN_US;
	atomic_init(&r->seq, 0);
	atomic_init(&r->down_until, 0);
	atomic_init(&r->epoch, 0);
	atomic_init(&r->errlog_at, 0);
	if (getrandom(&r->token, sizeof(r->token), 0) != sizeof(r->token))
		r->token = redis_now_us() ^ ((uint64_t)getpid() << 32);
	if (!EVP_Digest(redis_script, sizeof(redis_script) - 1, md, &mdlen, EVP_sha1(), NULL) ||
	    mdlen != 20) {
		fmt_snprintf(err, errlen, "SHA1 unavailable");
		free(r);
		return NULL;
	}
	for (i = 0; i < mdlen; i++)
		fmt_snprintf(r->sha + 2 * i, 3, "%02x", md[i]);
	if (pthread_key_create(&r->tkey, redis_conn_exit) != 0) {
		fmt_snprintf(err, errlen, "pthread_key_create failed");
		free(r);
		return NULL;
	}
	pthread_mutex_init(&r->lock, NULL);
	/* hiredis writes with write(2): a Redis that dies under us would raise
	 * SIGPIPE, whose default action kills the process. */
	if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL)
		signal(SIGPIPE, SIG_IGN);
	return r;
}

/* ratelimit_redis_free - close every thread's connection; accepts NULL. */
void
ratelimit_redis_free(struct ratelimit_redis *r)
{
	struct redis_conn *rc, *next;

	if (r == NULL)
		return;
	/* After this no thread-exit destructor will touch r. */
	pthread_key_delete(r->tkey);
	pthread_mutex_lock(&r->lock);
	/* Next saved before each free: no read of a freed node, even to an analyser. */
	for (rc = r->conns; rc != NULL; rc = next) {
		next = rc->next;
		redis_conn_destroy(r, rc);
	}
	pthread_mutex_unlock(&r->lock);
	pthread_mutex_destroy(&r->lock);
	free(r);
}

/* ratelimit_redis_hit - count one event in the shared window. */
int
ratelimit_redis_hit(struct ratelimit_redis *r, const char *key, size_t keylen, unsigned n,
		    unsigned period_s, unsigned *count)
{
	return redis_window(r, "hit", key, keylen, n, period_s, count);
}

/* ratelimit_redis_peek - events in the shared window, none added. */
int
ratelimit_redis_peek(struct ratelimit_redis *r, const char *key, size_t keylen, unsigned period_s,
		     unsigned *count)
{
	return redis_window(r, "peek", key, keylen, 0, period_s, count) < 0 ? -1 : 0;
}

/* ratelimit_redis_clear - delete the key: 1 removed, 0 absent, -1 error. */
int
ratelimit_redis_clear(struct ratelimit_redis *r, const char *key, size_t keylen)
{
	char kbuf[REDIS_PREFIX_MAX + RATELIMIT_KEY_MAX];
	const char *argv[2] = {"DEL", kbuf};
	size_t argvlen[2] = {3, 0};
	redisReply *reply;
	int rc = -1;

	argvlen[1] = redis_key(r, key, keylen, kbuf);
	if ((reply = redis_exec(r, 2, argv, argvlen)) == NULL)
		return -1;
	if (reply->type == REDIS_REPLY_INTEGER)
		rc = reply->integer > 0;
	else
		redis_error_reply(r, reply);
	freeReplyObject(reply);
	return rc;
}
