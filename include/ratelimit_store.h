/*
 * ratelimit_store.h - internal interface between ratelimit.c (front) and
 * its two stores, store_memory.c and store_redis.c. Not for other modules.
 *
 * The front validates arguments (key length, n > 0, period > 0) and counts
 * errors; a store only answers. Keys arrive with their length.
 */
#ifndef RAVELIN_RATELIMIT_STORE_H
#define RAVELIN_RATELIMIT_STORE_H

#include <stddef.h>

struct ratelimit_mem;
struct ratelimit_redis;

/* Memory store (store_memory.c). */
struct ratelimit_mem *ratelimit_mem_new(size_t max_keys);
void ratelimit_mem_free(struct ratelimit_mem *m);
int ratelimit_mem_hit(struct ratelimit_mem *m, const char *key, size_t keylen, unsigned n,
		      unsigned period_s, unsigned *count);
int ratelimit_mem_peek(struct ratelimit_mem *m, const char *key, size_t keylen, unsigned period_s,
		       unsigned *count);
int ratelimit_mem_clear(struct ratelimit_mem *m, const char *key, size_t keylen);
size_t ratelimit_mem_keys(struct ratelimit_mem *m);

/* Redis store (store_redis.c). host is a numeric address, without brackets. */
struct ratelimit_redis *ratelimit_redis_new(const char *host, int port, int db, const char *prefix,
					    unsigned timeout_ms, char *err, size_t errlen);
void ratelimit_redis_free(struct ratelimit_redis *r);
int ratelimit_redis_hit(struct ratelimit_redis *r, const char *key, size_t keylen, unsigned n,
			unsigned period_s, unsigned *count);
int ratelimit_redis_peek(struct ratelimit_redis *r, const char *key, size_t keylen,
			 unsigned period_s, unsigned *count);
int ratelimit_redis_clear(struct ratelimit_redis *r, const char *key, size_t keylen);

#endif
