/*
 * store_memory.c - the in-process rate-limit store (ratelimit_store memory).
 *
 * Keys live in 64 shards, each a chained hash table with its own mutex and
 * its own LRU list, so threads hitting different keys rarely meet and no
 * lock covers the whole store. Keys hash with SipHash-2-4 under a random
 * per-store key: they come from clients (IP addresses, senders), and a
 * predictable hash would let one client pile every key into one chain.
 *
 * Per key, for n <= RATELIMIT_MEM_LOG_MAX, a ring of event timestamps
 * (CLOCK_MONOTONIC, microseconds) that grows on demand up to n entries:
 * the window is exact, since an event is over exactly when the n-th newest
 * earlier event is still inside (now - period, now]. Larger limits use 64
 * counters of period/64 each (the window then moves in steps of 1/64 of
 * the period and may let up to one step's worth of old events slip out
 * early). Memory per key is therefore at most about
 * 8 * min(n, RATELIMIT_MEM_LOG_MAX) bytes plus the key.
 *
 * A key is idle once its newest event is older than the longest period it
 * was used with; idle keys at the cold end of a shard's LRU list are reaped
 * as the shard is used. The total number of keys is bounded for the whole
 * store: when it is full, the shard taking a new key reaps its idle keys
 * and, if the store is still full, evicts its least recently hit key (or,
 * holding none, another shard's).
 *
 * Public (to ratelimit.c only, see ratelimit_store.h):
 *   ratelimit_mem_new(), ratelimit_mem_hit(), ratelimit_mem_peek(),
 *   ratelimit_mem_clear(), ratelimit_mem_keys(), ratelimit_mem_free()
 */

/* System. */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/* Project. */
#include "ratelimit_store.h"

/* Largest n kept as an exact event log; above it, sub-slot counters. */
#define RATELIMIT_MEM_LOG_MAX 4096
/* Sub-slots per period for large n. */
#define MEM_SLOTS 64
/* Upper bound on shards (a power of two). */
#define MEM_SHARDS_MAX 64
/* Idle keys reaped per hit at most, so no single hit pays for a sweep. */
#define MEM_REAP_PER_HIT 4

/* One key's window. Exactly one of ring and slots is non-NULL. */
struct mem_entry {
	struct mem_entry *hnext;	/* hash chain */
	struct mem_entry *older, *newer; /* shard LRU list */
	uint64_t hash;
	uint64_t last_us;		/* newest event */
	uint64_t span_us;		/* longest period used with this key */
	uint64_t *ring;			/* event times, ring[head] the oldest */
	uint32_t cap, len, head;
	uint32_t *slots;		/* counters, slot s at slots[s % MEM_SLOTS] */
	uint64_t slot_us, slot_newest;
	size_t keylen;
	char key[];
};

/* A shard: hash table, LRU list (oldest = coldest) and its lock. */
struct mem_shard {
	pthread_mutex_t lock;
	struct mem_entry **buckets;
	size_t nbuckets, count;
	size_t *total;			/* the store's key count (atomic) */
	struct mem_entry *oldest, *newest;
} __attribute__((aligned(64)));

/* max_keys bounds the whole store, not each shard: a shard filled by an
 * uneven hash would otherwise evict long before the store is full. */
struct ratelimit_mem {
	uint64_t k0, k1;		/* SipHash key */
	size_t max_keys;
	size_t total;			/* keys held, all shards (atomic) */
	unsigned nshards;
	unsigned evict_next;		/* where eviction elsewhere starts (atomic) */
	struct mem_shard shards[];
};

#define ROTL64(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                   \
	do {                                                                                       \
		v0 += v1; v1 = ROTL64(v1, 13); v1 ^= v0; v0 = ROTL64(v0, 32);                     \
		v2 += v3; v3 = ROTL64(v3, 16); v3 ^= v2;                                           \
		v0 += v3; v3 = ROTL64(v3, 21); v3 ^= v0;                                           \
		v2 += v1; v1 = ROTL64(v1, 17); v1 ^= v2; v2 = ROTL64(v2, 32);                     \
	} while (0)

/* mem_hash - SipHash-2-4 of the key under the store's random key. */
static uint64_t
mem_hash(const struct ratelimit_mem *m, const char *key, size_t len)
{
	uint64_t v0 = 0x736f6d6570736575ULL ^ m->k0, v1 = 0x646f72616e646f6dULL ^ m->k1;
	uint64_t v2 = 0x6c7967656e657261ULL ^ m->k0, v3 = 0x7465646279746573ULL ^ m->k1;
	const unsigned char *p = (const unsigned char *)key;
	uint64_t b = (uint64_t)len << 56, w;
	size_t i, full = len & ~(size_t)7;

	for (i = 0; i < full; i += 8) {
		memcpy(&w, p + i, 8);
		v3 ^= w;
		SIPROUND;
		SIPROUND;
		v0 ^= w;
	}
	for (i = 0; i < (len & 7); i++)
		b |= (uint64_t)p[full + i] << (8 * i);
	v3 ^= b;
	SIPROUND;
	SIPROUND;
	v0 ^= b;
	v2 ^= 0xff;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}

/* mem_now_us - monotonic microseconds: wall-clock steps must not move windows. */
static uint64_t
mem_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* mem_shard_of - the shard a hash belongs to (top bits; buckets use low bits). */
static struct mem_shard *
mem_shard_of(struct ratelimit_mem *m, uint64_t h)
{
	return &m->shards[(h >> 58) & (m->nshards - 1)];
}

/* mem_lru_unlink - take an entry out of its shard's LRU list. */
static void
mem_lru_unlink(struct mem_shard *s, struct mem_entry *e)
{
	if (e->older)
		e->older->newer = e->newer;
	else
		s->oldest = e->newer;
	if (e->newer)
		e->newer->older = e->older;
	else
		s->newest = e->older;
	e->older = e->newer = NULL;
}

/* mem_lru_push - make an entry the shard's most recently hit. */
static void
mem_lru_push(struct mem_shard *s, struct mem_entry *e)
{
	e->older = s->newest;
	e->newer = NULL;
	if (s->newest)
		s->newest->newer = e;
	else
		s->oldest = e;
	s->newest = e;
}

/* mem_entry_free - release one entry's memory. */
static void
mem_entry_free(struct mem_entry *e)
{
	free(e->ring);
	free(e->slots);
	free(e);
}

/* mem_remove - unlink an entry from its shard and free it. */
static void
mem_remove(struct mem_shard *s, struct mem_entry *e)
{
	struct mem_entry **pp = &s->buckets[e->hash & (s->nbuckets - 1)];

	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	mem_lru_unlink(s, e);
	s->count--;
	__atomic_sub_fetch(s->total, 1, __ATOMIC_RELAXED);
	mem_entry_free(e);
}

/* mem_idle - true once every window this key was used with is empty. */
static bool
mem_idle(const struct mem_entry *e, uint64_t now)
{
	return now - e->last_us >= e->span_us;
}

/* mem_reap - drop up to limit idle entries from the cold end, sparing keep. */
static void
mem_reap(struct mem_shard *s, uint64_t now, unsigned limit, const struct mem_entry *keep)
{
	while (limit-- > 0 && s->oldest && s->oldest != keep && mem_idle(s->oldest, now))
		mem_remove(s, s->oldest);
}

/* mem_find - the entry for key in shard s, or NULL. */
static struct mem_entry *
mem_find(struct mem_shard *s, uint64_t h, const char *key, size_t keylen)
{
	struct mem_entry *e;

	for (e = s->buckets[h & (s->nbuckets - 1)]; e; e = e->hnext)
		if (e->hash == h && e->keylen == keylen && memcmp(e->key, key, keylen) == 0)
			return e;
	return NULL;
}

/* mem_grow_table - double a shard's bucket array; failure only costs speed. */
static void
mem_grow_table(struct mem_shard *s)
{
	size_t nb = s->nbuckets * 2, i;
	struct mem_entry **nbk, *e, *next;

	if ((nbk = calloc(nb, sizeof(*nbk))) == NULL)
		return;
	for (i = 0; i < s->nbuckets; i++)
		for (e = s->buckets[i]; e; e = next) {
			next = e->hnext;
			e->hnext = nbk[e->hash & (nb - 1)];
			nbk[e->hash & (nb - 1)] = e;
		}
	free(s->buckets);
	s->buckets = nbk;
	s->nbuckets = nb;
}

/* mem_evict_elsewhere - the store is full and shard s (locked) holds
 * nothing to give: drop the coldest key of another shard. trylock only,
 * so two shards evicting into each other cannot deadlock; when every
 * other shard is busy the store goes over by one key for a moment. */
static void
mem_evict_elsewhere(struct ratelimit_mem *m, const struct mem_shard *s)
{
	unsigned start = __atomic_fetch_add(&m->evict_next, 1, __ATOMIC_RELAXED);

	for (unsigned i = 0; i < m->nshards; i++) {
		struct mem_shard *o = &m->shards[(start + i) % m->nshards];
		bool done = false;

		if (o == s || pthread_mutex_trylock(&o->lock) != 0)
			continue;
		if (o->oldest) {
			mem_remove(o, o->oldest);
			done = true;
		}
		pthread_mutex_unlock(&o->lock);
		if (done)
			return;
	}
}

/* mem_full - the store holds max_keys keys. */
static bool
mem_full(struct ratelimit_mem *m)
{
	return __atomic_load_n(&m->total, __ATOMIC_RELAXED) >= m->max_keys;
}

/* mem_insert - add an empty entry for key, making room first; NULL on ENOMEM. */
static struct mem_entry *
mem_insert(struct ratelimit_mem *m, struct mem_shard *s, uint64_t h, const char *key,
	   size_t keylen, uint64_t now)
{
	struct mem_entry *e;

	if (mem_full(m)) {
		mem_reap(s, now, (unsigned)-1, NULL);
		if (mem_full(m)) {
			if (s->oldest)
				mem_remove(s, s->oldest);
			else
				mem_evict_elsewhere(m, s);
		}
	}
	if ((e = calloc(1, sizeof(*e) + keylen + 1)) == NULL)
		return NULL;
	e->hash = h;
	e->keylen = keylen;
	memcpy(e->key, key, keylen);
	e->last_us = now;
	if (s->count >= s->nbuckets)
		mem_grow_table(s);
	e->hnext = s->buckets[h & (s->nbuckets - 1)];
	s->buckets[h & (s->nbuckets - 1)] = e;
	mem_lru_push(s, e);
	s->count++;
	__atomic_add_fetch(s->total, 1, __ATOMIC_RELAXED);
	return e;
}

/* mem_ring_at - the i-th oldest stored event time. */
static uint64_t
mem_ring_at(const struct mem_entry *e, uint32_t i)
{
	return e->ring[(e->head + i) % e->cap];
}

/* mem_log_count - stored events inside (now - period, now], by binary search
 * (the ring is in time order because times are taken under the shard lock). */
static uint32_t
mem_log_count(const struct mem_entry *e, uint64_t now, uint64_t period_us)
{
	uint32_t lo = 0, hi = e->len, mid;

	while (lo < hi) {
		mid = lo + (hi - lo) / 2;
		if (now - mem_ring_at(e, mid) < period_us)
			hi = mid;
		else
			lo = mid + 1;
	}
	return e->len - lo;
}

/* mem_log_append - store one event time, growing the ring up to want entries
 * and otherwise overwriting the oldest. -1 on ENOMEM. */
static int
mem_log_append(struct mem_entry *e, uint64_t now, uint32_t want)
{
	uint64_t *nr;
	uint32_t ncap, i;

	/* A limit of 0 still keeps the newest event: never a ring of 0 (% 0). */
	if (want == 0)
		want = 1;
	if (e->len == e->cap && e->cap < want) {
		ncap = e->cap < 4 ? 4 : e->cap * 2;
		if (ncap > want)
			ncap = want;
		if ((nr = malloc((size_t)ncap * sizeof(*nr))) == NULL)
			return -1;
		for (i = 0; i < e->len; i++)
			nr[i] = mem_ring_at(e, i);
		free(e->ring);
		e->ring = nr;
		e->cap = ncap;
		e->head = 0;
	}
	if (e->len == e->cap) {
		e->head = (e->head + 1) % e->cap;
		e->len--;
	}
	e->ring[(e->head + e->len) % e->cap] = now;
	e->len++;
	return 0;
}

/* mem_log_trim - forget events older than every window of this key. */
static void
mem_log_trim(struct mem_entry *e, uint64_t now)
{
	while (e->len > 0 && now - e->ring[e->head] >= e->span_us) {
		e->head = (e->head + 1) % e->cap;
		e->len--;
	}
}

/* mem_slots_advance - zero the counters of slots that left the window. */
static void
mem_slots_advance(struct mem_entry *e, uint64_t now)
{
	uint64_t slot = now / e->slot_us, k;

	if (slot <= e->slot_newest)
		return;
	for (k = e->slot_newest + 1; k <= slot && k <= e->slot_newest + MEM_SLOTS; k++)
		e->slots[k % MEM_SLOTS] = 0;
	e->slot_newest = slot;
}

/* mem_slots_sum - events in the last MEM_SLOTS slots. */
static uint64_t
mem_slots_sum(const struct mem_entry *e)
{
	uint64_t sum = 0;
	unsigned i;

	for (i = 0; i < MEM_SLOTS; i++)
		sum += e->slots[i];
	return sum;
}

/* mem_set_mode - (re)shape an entry for n and period; old events go when the
 * shape changes (a key normally keeps one limit, so this is rare). -1 ENOMEM. */
static int
mem_set_mode(struct mem_entry *e, unsigned n, uint64_t period_us, uint64_t now)
{
	bool want_slots = n > RATELIMIT_MEM_LOG_MAX;
	uint64_t slot_us = period_us / MEM_SLOTS ? period_us / MEM_SLOTS : 1;

	if (want_slots ? e->slots && e->slot_us == slot_us : e->slots == NULL)
		return 0;
	free(e->ring);
	free(e->slots);
	e->ring = NULL;
	e->slots = NULL;
	e->cap = e->len = e->head = 0;
	if (want_slots) {
		if ((e->slots = calloc(MEM_SLOTS, sizeof(*e->slots))) == NULL)
			return -1;
		e->slot_us = slot_us;
		e->slot_newest = now / slot_us;
	}
	return 0;
}

/* ratelimit_mem_new - an empty store holding at most max_keys keys. */
struct ratelimit_mem *
ratelimit_mem_new(size_t max_keys)
{
	struct ratelimit_mem *m;
	unsigned nshards = MEM_SHARDS_MAX, i;

	if (max_keys == 0)
		max_keys = 1;
	while (nshards > 1 && nshards > max_keys)
		nshards /= 2;
	if ((m = calloc(1, sizeof(*m) + nshards * sizeof(m->shards[0]))) == NULL)
		return NULL;
	m->nshards = nshards;
	m->max_keys = max_keys;
	if (getrandom(&m->k0, sizeof(m->k0), 0) != sizeof(m->k0) ||
	    getrandom(&m->k1, sizeof(m->k1), 0) != sizeof(m->k1)) {
		/* No entropy this early is unlikely; a weaker key still works. */
		m->k0 = mem_now_us() ^ (uintptr_t)m;
		m->k1 = ~m->k0 * 0x9e3779b97f4a7c15ULL;
	}
	for (i = 0; i < nshards; i++) {
		struct mem_shard *s = &m->shards[i];

		pthread_mutex_init(&s->lock, NULL);
		s->total = &m->total;
		s->nbuckets = 16;
		if ((s->buckets = calloc(s->nbuckets, sizeof(*s->buckets))) == NULL) {
			m->nshards = i + 1;
			ratelimit_mem_free(m);
			return NULL;
		}
	}
	return m;
}

/* ratelimit_mem_free - free every key and the store; accepts NULL. */
void
ratelimit_mem_free(struct ratelimit_mem *m)
{
	unsigned i;

	if (m == NULL)
		return;
	for (i = 0; i < m->nshards; i++) {
		struct mem_shard *s = &m->shards[i];

		while (s->oldest)
			mem_remove(s, s->oldest);
		free(s->buckets);
		pthread_mutex_destroy(&s->lock);
	}
	free(m);
}

/* ratelimit_mem_hit - count one event for key; 1 over, 0 within, -1 ENOMEM. */
int
ratelimit_mem_hit(struct ratelimit_mem *m, const char *key, size_t keylen, unsigned n,
		  unsigned period_s, unsigned *count)
{
	uint64_t h = mem_hash(m, key, keylen), now, period_us = (uint64_t)period_s * 1000000u;
	uint64_t inwin;
	struct mem_shard *s = mem_shard_of(m, h);
	struct mem_entry *e;
	int rc = -1;

	pthread_mutex_lock(&s->lock);
	now = mem_now_us();
	if ((e = mem_find(s, h, key, keylen)) == NULL) {
		if ((e = mem_insert(m, s, h, key, keylen, now)) == NULL)
			goto out;
	} else {
		mem_lru_unlink(s, e);
		mem_lru_push(s, e);
	}
	if (period_us > e->span_us)
		e->span_us = period_us;
	if (mem_set_mode(e, n, period_us, now) < 0)
		goto out;
	if (e->slots) {
		mem_slots_advance(e, now);
		/* Report as the log would: it keeps only the newest n. */
		inwin = mem_slots_sum(e);
		if (inwin > n)
			inwin = n;
		if (e->slots[e->slot_newest % MEM_SLOTS] < UINT32_MAX)
			e->slots[e->slot_newest % MEM_SLOTS]++;
	} else {
		mem_log_trim(e, now);
		inwin = mem_log_count(e, now, period_us);
		if (mem_log_append(e, now, n) < 0)
			goto out;
	}
	e->last_us = now;
	if (count)
		*count = inwin >= UINT32_MAX ? UINT32_MAX : (unsigned)inwin + 1;
	rc = inwin >= n;
	mem_reap(s, now, MEM_REAP_PER_HIT, e);
out:
	pthread_mutex_unlock(&s->lock);
	return rc;
}

/* ratelimit_mem_peek - events of key in the last period_s seconds. */
int
ratelimit_mem_peek(struct ratelimit_mem *m, const char *key, size_t keylen, unsigned period_s,
		   unsigned *count)
{
	uint64_t h = mem_hash(m, key, keylen), now, c = 0;
	struct mem_shard *s = mem_shard_of(m, h);
	struct mem_entry *e;

	pthread_mutex_lock(&s->lock);
	now = mem_now_us();
	if ((e = mem_find(s, h, key, keylen)) != NULL) {
		if (e->slots) {
			/* Counters of slots that have left the window read as zero. */
			uint64_t slot = now / e->slot_us, k;

			for (k = 0; k < MEM_SLOTS; k++)
				if (e->slot_newest >= k && slot - (e->slot_newest - k) < MEM_SLOTS)
					c += e->slots[(e->slot_newest - k) % MEM_SLOTS];
		} else if (e->len > 0) {
			c = mem_log_count(e, now, (uint64_t)period_s * 1000000u);
		}
	}
	pthread_mutex_unlock(&s->lock);
	if (count)
		*count = c > UINT32_MAX ? UINT32_MAX : (unsigned)c;
	return 0;
}

/* ratelimit_mem_clear - forget key: 1 removed, 0 absent. */
int
ratelimit_mem_clear(struct ratelimit_mem *m, const char *key, size_t keylen)
{
	uint64_t h = mem_hash(m, key, keylen);
	struct mem_shard *s = mem_shard_of(m, h);
	struct mem_entry *e;
	int rc = 0;

	pthread_mutex_lock(&s->lock);
	if ((e = mem_find(s, h, key, keylen)) != NULL) {
		mem_remove(s, e);
		rc = 1;
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

/* ratelimit_mem_keys - keys held now, idle ones not yet reaped included. */
size_t
ratelimit_mem_keys(struct ratelimit_mem *m)
{
	size_t total = 0;
	unsigned i;

	for (i = 0; i < m->nshards; i++) {
		pthread_mutex_lock(&m->shards[i].lock);
		total += m->shards[i].count;
		pthread_mutex_unlock(&m->shards[i].lock);
	}
	return total;
}
