/*
 * ratelimit.h - sliding-window rate limits for limit(KEY, N/PERIOD) rules,
 * kept in process memory or in a Redis server shared by several instances.
 *
 * Semantics (both stores):
 *   - An event at time t is "over" when the events of its key in the window
 *     (t - PERIOD, t], this event included, number more than N. So N events
 *     pass, event N+1 is refused, and one PERIOD after the oldest of them
 *     another event passes again.
 *   - Refused events are counted too (as Postfix anvil does): a client that
 *     keeps hammering stays refused until it slows down below N per PERIOD.
 *   - Only the newest N events of a key are kept (that is all the decision
 *     needs), so *count saturates at N + 1.
 *   - One call counts one event: a key should identify one limit (the rules
 *     engine puts the rule's name in it), or two rules on the same key
 *     would count each event twice.
 *
 * Threads: every function is thread-safe. The memory store never blocks
 * for long (one shard mutex among 64, amortised O(1) work per call, no
 * I/O) and may be called from event-loop threads; the Redis store blocks for up to timeout_ms per call
 * (ratelimit_may_block() says so) and belongs on the check pool.
 */
#ifndef RAVELIN_RATELIMIT_H
#define RAVELIN_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>

struct ratelimit;

/* Default key prefix for the Redis store (DESIGN.md: ratelimit_prefix). */
#define RATELIMIT_DEFAULT_PREFIX "ravelin:"
/* Default bound on keys held by the memory store. */
#define RATELIMIT_DEFAULT_MAX_KEYS 100000
/* Largest key accepted, in octets (longer keys are an error, -1). */
#define RATELIMIT_KEY_MAX 512

/*
 * ratelimit_new - open a store. url: "memory" or "redis://HOST:PORT/DB"
 * (HOST an IPv4 or [IPv6] address; PORT defaults to 6379, DB to 0).
 * prefix: Redis key prefix (NULL: RATELIMIT_DEFAULT_PREFIX); timeout_ms:
 * connect and command timeout for Redis (0: 200); max_keys: bound on the
 * memory store (0: RATELIMIT_DEFAULT_MAX_KEYS). NULL with a message in err
 * on a bad url. A Redis store does not connect here: it connects lazily,
 * per thread, so a Redis that is down at startup is not fatal.
 */
struct ratelimit *ratelimit_new(const char *url, const char *prefix, unsigned timeout_ms,
				size_t max_keys, char *err, size_t errlen);
/* ratelimit_free - close the store; no call may be running. Accepts NULL. */
void ratelimit_free(struct ratelimit *rl);
/* ratelimit_may_block - true when calls may wait on the network (Redis). */
bool ratelimit_may_block(const struct ratelimit *rl);

/*
 * ratelimit_hit - count one event for key against n per period_s seconds.
 * 1: this event is over n; 0: within; -1: store error (Redis down or
 * backing off: returns at once; the caller decides fail-open/tempfail).
 * *count (may be NULL) gets the events in the window including this one.
 */
int ratelimit_hit(struct ratelimit *rl, const char *key, unsigned n, unsigned period_s,
		  unsigned *count);
/* ratelimit_peek - events of key in the last period_s seconds without
 * counting one: 0 (with *count) or -1. */
int ratelimit_peek(struct ratelimit *rl, const char *key, unsigned period_s, unsigned *count);
/* ratelimit_clear - forget key: 1 removed, 0 was not there, -1 error. */
int ratelimit_clear(struct ratelimit *rl, const char *key);
/* ratelimit_store_errors - how many calls returned -1 so far. */
unsigned long ratelimit_store_errors(const struct ratelimit *rl);
/* ratelimit_keys - keys held now (memory store; 0 for Redis). */
size_t ratelimit_keys(const struct ratelimit *rl);
/* ratelimit_url - the store's url as given (for logs and show info). */
const char *ratelimit_url(const struct ratelimit *rl);

#endif
