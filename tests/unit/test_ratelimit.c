/*
 * test_ratelimit.c - unit tests for ratelimit.c and store_memory.c: store
 * urls, the exact sliding window (N allowed, N+1 refused, recovery one
 * period later, with 1 s periods), per-key isolation, peek and clear, the
 * bound on keys and the reaping of idle ones, and exact counts when many
 * threads hit one key. The Redis store is tested end to end
 * (tests/e2e/test_ratelimit_redis.py) against a real redis-server.
 */

/* System. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Libraries. */
#include <cmocka.h>

/* Project. */
#include "ratelimit.h"

/* sleep_ms - sleep that many milliseconds. */
static void
sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0)
		;
}

/* new_memory - a memory store holding at most max_keys keys. */
static struct ratelimit *
new_memory(size_t max_keys)
{
	char err[256];
	struct ratelimit *rl = ratelimit_new("memory", NULL, 0, max_keys, err, sizeof(err));

	if (rl == NULL)
		fail_msg("ratelimit_new(memory): %s", err);
	return rl;
}

/* One store url and whether it is accepted. */
struct url_case {
	const char *url;
	bool ok;
	bool blocking;
};

static const struct url_case url_cases[] = {
	{ "memory", true, false },
	{ "redis://127.0.0.1:6379/0", true, true },
	{ "redis://127.0.0.1:6379/15", true, true },
	{ "redis://127.0.0.1", true, true },
	{ "redis://127.0.0.1:6380", true, true },
	{ "redis://127.0.0.1/3", true, true },
	{ "redis://[::1]:6379/2", true, true },
	{ "redis://localhost:6379/0", false, false },	/* names would resolve blocking */
	{ "redis://127.0.0.1:0/0", false, false },
	{ "redis://127.0.0.1:65536/0", false, false },
	{ "redis://127.0.0.1:6379/x", false, false },
	{ "redis://127.0.0.1:6379/0/1", false, false },
	{ "redis://[::1:6379/0", false, false },
	{ "redis://", false, false },
	{ "rediss://127.0.0.1:6379/0", false, false },
	{ "Memory", false, false },
	{ "", false, false },
};

/* store_urls_are_checked - every row of url_cases. */
static void
store_urls_are_checked(void **state)
{
	for (size_t i = 0; i < sizeof(url_cases) / sizeof(url_cases[0]); i++) {
		const struct url_case *c = &url_cases[i];
		char err[256] = "";
		struct ratelimit *rl = ratelimit_new(c->url, NULL, 100, 0, err, sizeof(err));

		if ((rl != NULL) != c->ok)
			fail_msg("row %zu: %s: got %s (%s), want %s", i, c->url, rl ? "ok" : "error",
				 err, c->ok ? "ok" : "error");
		if (rl && ratelimit_may_block(rl) != c->blocking)
			fail_msg("row %zu: %s: may_block %d", i, c->url, ratelimit_may_block(rl));
		if (rl == NULL && err[0] == '\0')
			fail_msg("row %zu: %s: no error message", i, c->url);
		if (rl && strcmp(ratelimit_url(rl), c->url) != 0)
			fail_msg("row %zu: url %s", i, ratelimit_url(rl));
		ratelimit_free(rl);
	}
}

/* One exactness case: n events pass, then `extra` more are refused. */
struct window_case {
	const char *name;
	unsigned n, period_s, extra;
};

static const struct window_case window_cases[] = {
	{ "one per minute", 1, 60, 3 },
	{ "three per second", 3, 1, 2 },
	{ "ten per hour", 10, 3600, 5 },
	{ "hundred per day", 100, 86400, 50 },
	{ "largest exact log", 4096, 60, 10 },
	{ "sub-slot counters", 5000, 60, 10 },
};

/* window_allows_n_refuses_n_plus_1 - every row of window_cases. */
static void
window_allows_n_refuses_n_plus_1(void **state)
{
	struct ratelimit *rl = new_memory(1000);

	for (size_t i = 0; i < sizeof(window_cases) / sizeof(window_cases[0]); i++) {
		const struct window_case *c = &window_cases[i];
		char key[64];
		unsigned count, j;
		int rc;

		snprintf(key, sizeof(key), "row%zu", i);
		for (j = 1; j <= c->n + c->extra; j++) {
			count = 0;
			rc = ratelimit_hit(rl, key, c->n, c->period_s, &count);
			if (rc != (j > c->n))
				fail_msg("row %zu (%s): event %u: got %d, want %d", i, c->name, j, rc,
					 j > c->n);
			if (count != (j <= c->n ? j : c->n + 1))
				fail_msg("row %zu (%s): event %u: count %u", i, c->name, j, count);
		}
		assert_int_equal(ratelimit_peek(rl, key, c->period_s, &count), 0);
		if (count < c->n)
			fail_msg("row %zu (%s): peek %u", i, c->name, count);
	}
	assert_int_equal(ratelimit_store_errors(rl), 0);
	ratelimit_free(rl);
}

/* One step of a timed scenario on one key (3 per 1 s). */
struct slide_step {
	unsigned at_ms;			/* since the start */
	int want;			/* ratelimit_hit result */
	unsigned count;
};

/* 3 per second, refused events counted: the window slides, it is not a
 * fixed interval reset every second. */
static const struct slide_step slide_steps[] = {
	{ 0, 0, 1 },
	{ 0, 0, 2 },
	{ 500, 0, 3 },
	{ 500, 1, 4 },		/* N+1 */
	{ 1100, 0, 3 },		/* the two at 0 left; 500, 500 and this one remain */
	{ 1100, 1, 4 },
	{ 1700, 0, 3 },		/* 500, 500 left; 1100, 1100, 1700 */
	{ 2250, 0, 2 },		/* 1100, 1100 left too */
};

/* window_slides_and_recovers - refused at N+1, allowed again once old
 * events leave the window. */
static void
window_slides_and_recovers(void **state)
{
	struct ratelimit *rl = new_memory(100000);
	struct timespec t0, now;
	unsigned count;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (size_t i = 0; i < sizeof(slide_steps) / sizeof(slide_steps[0]); i++) {
		const struct slide_step *s = &slide_steps[i];
		long el;
		int rc;

		clock_gettime(CLOCK_MONOTONIC, &now);
		el = (now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000;
		if (el < (long)s->at_ms)
			sleep_ms(s->at_ms - el);
		rc = ratelimit_hit(rl, "slide", 3, 1, &count);
		if (rc != s->want || count != s->count)
			fail_msg("step %zu (t=%ums): got %d count %u, want %d count %u", i, s->at_ms,
				 rc, count, s->want, s->count);
	}
	ratelimit_free(rl);
}

/* keys_are_isolated - one key over its limit leaves others alone; clear
 * resets only that key. (Room for many keys: the bound is per shard, and
 * keys land in shards by a random-keyed hash.) */
static void
keys_are_isolated(void **state)
{
	struct ratelimit *rl = new_memory(100000);
	unsigned count, i;

	for (i = 0; i < 5; i++)
		ratelimit_hit(rl, "192.0.2.1", 5, 60, NULL);
	assert_int_equal(ratelimit_hit(rl, "192.0.2.1", 5, 60, &count), 1);
	assert_int_equal(count, 6);
	assert_int_equal(ratelimit_hit(rl, "192.0.2.2", 5, 60, &count), 0);
	assert_int_equal(count, 1);
	assert_int_equal(ratelimit_hit(rl, "192.0.2.10", 5, 60, &count), 0);
	assert_int_equal(ratelimit_hit(rl, "", 5, 60, &count), 0);
	assert_int_equal(ratelimit_peek(rl, "192.0.2.1", 60, &count), 0);
	assert_int_equal(count, 5);		/* only the newest n are kept */
	assert_int_equal(ratelimit_peek(rl, "192.0.2.2", 60, &count), 0);
	assert_int_equal(count, 1);
	assert_int_equal(ratelimit_peek(rl, "198.51.100.1", 60, &count), 0);
	assert_int_equal(count, 0);
	assert_int_equal(ratelimit_clear(rl, "192.0.2.1"), 1);
	assert_int_equal(ratelimit_clear(rl, "192.0.2.1"), 0);
	assert_int_equal(ratelimit_hit(rl, "192.0.2.1", 5, 60, &count), 0);
	assert_int_equal(count, 1);
	assert_int_equal(ratelimit_hit(rl, "192.0.2.2", 5, 60, &count), 0);
	assert_int_equal(count, 2);
	ratelimit_free(rl);
}

/* edge_arguments - zero limit, zero period, overlong keys. */
static void
edge_arguments(void **state)
{
	struct ratelimit *rl = new_memory(100000);
	char longkey[RATELIMIT_KEY_MAX + 2];
	unsigned count;

	assert_int_equal(ratelimit_hit(rl, "k", 0, 60, &count), 1);	/* 0/PERIOD refuses all */
	assert_int_equal(ratelimit_hit(rl, "k", 1, 0, &count), 0);	/* empty window */
	memset(longkey, 'x', sizeof(longkey) - 1);
	longkey[sizeof(longkey) - 1] = '\0';
	assert_int_equal(ratelimit_hit(rl, longkey, 1, 60, &count), -1);
	assert_int_equal(ratelimit_store_errors(rl), 1);
	longkey[RATELIMIT_KEY_MAX] = '\0';
	assert_int_equal(ratelimit_hit(rl, longkey, 1, 60, &count), 0);
	ratelimit_free(rl);
	ratelimit_free(NULL);
}

/* keys_are_bounded - the store never holds more than max_keys, and evicts
 * the least recently hit. */
static void
keys_are_bounded(void **state)
{
	struct ratelimit *rl = new_memory(640);
	char key[32];
	unsigned count, i;

	for (i = 0; i < 20000; i++) {
		snprintf(key, sizeof(key), "k%u", i);
		assert_int_equal(ratelimit_hit(rl, key, 10, 3600, NULL), 0);
		if (ratelimit_keys(rl) > 640)
			fail_msg("after %u keys: %zu held", i + 1, ratelimit_keys(rl));
	}
	assert_true(ratelimit_keys(rl) >= 600);
	assert_int_equal(ratelimit_peek(rl, "k0", 3600, &count), 0);
	assert_int_equal(count, 0);		/* evicted */
	assert_int_equal(ratelimit_peek(rl, "k19999", 3600, &count), 0);
	assert_int_equal(count, 1);
	ratelimit_free(rl);

	/* Up to max_keys distinct keys: none evicted (shards are never so
	 * small that one fills while the store has room). */
	static const size_t sizes[] = { 1, 10, 100, 1000, 5000, 20000 };
	for (size_t z = 0; z < sizeof(sizes) / sizeof(sizes[0]); z++) {
		rl = new_memory(sizes[z]);
		for (i = 0; i < sizes[z]; i++) {
			snprintf(key, sizeof(key), "k%u", i);
			ratelimit_hit(rl, key, 10, 3600, NULL);
		}
		if (ratelimit_keys(rl) != sizes[z])
			fail_msg("max_keys %zu: %zu keys held after %zu distinct ones", sizes[z],
				 ratelimit_keys(rl), sizes[z]);
		ratelimit_free(rl);
	}

	rl = new_memory(10);			/* fewer keys than shards */
	for (i = 0; i < 1000; i++) {
		snprintf(key, sizeof(key), "k%u", i);
		ratelimit_hit(rl, key, 10, 3600, NULL);
	}
	assert_true(ratelimit_keys(rl) <= 10);
	ratelimit_free(rl);
}

/* idle_keys_are_reaped - keys whose windows emptied go away as the store is used. */
static void
idle_keys_are_reaped(void **state)
{
	struct ratelimit *rl = new_memory(100000);
	char key[32];
	unsigned count, i;

	for (i = 0; i < 1000; i++) {
		snprintf(key, sizeof(key), "old%u", i);
		ratelimit_hit(rl, key, 10, 1, NULL);
	}
	assert_int_equal(ratelimit_keys(rl), 1000);
	sleep_ms(1050);
	for (i = 0; i < 2000; i++) {
		snprintf(key, sizeof(key), "new%u", i);
		ratelimit_hit(rl, key, 10, 60, NULL);
	}
	if (ratelimit_keys(rl) > 2100)
		fail_msg("%zu keys held, idle ones not reaped", ratelimit_keys(rl));
	assert_int_equal(ratelimit_peek(rl, "old1", 1, &count), 0);
	assert_int_equal(count, 0);
	ratelimit_free(rl);
}

/* Shared by the hammering threads. */
struct hammer {
	struct ratelimit *rl;
	const char *key;		/* NULL: a key per thread */
	unsigned n, per_thread;
	unsigned within, over, errors;	/* this thread's results */
	unsigned id;
};

/* hammer_run - one thread's hits. */
static void *
hammer_run(void *arg)
{
	struct hammer *h = arg;
	char own[32];
	const char *key = h->key;
	int rc;

	if (key == NULL) {
		snprintf(own, sizeof(own), "thread%u", h->id);
		key = own;
	}
	for (unsigned i = 0; i < h->per_thread; i++) {
		rc = ratelimit_hit(h->rl, key, h->n, 60, NULL);
		if (rc == 0)
			h->within++;
		else if (rc == 1)
			h->over++;
		else
			h->errors++;
	}
	return NULL;
}

/* One hammering case. */
struct hammer_case {
	const char *name;
	bool shared_key;
	unsigned threads, per_thread, n;
};

static const struct hammer_case hammer_cases[] = {
	{ "8 threads, one key, exact log", true, 8, 2000, 5000 },
	{ "8 threads, one key, small n", true, 8, 2000, 7 },
	{ "8 threads, one key, sub-slot counters", true, 8, 2000, 10000 },
	{ "8 threads, own keys", false, 8, 2000, 1500 },
};

/* threads_get_exact_counts - every row of hammer_cases: exactly n pass per key. */
static void
threads_get_exact_counts(void **state)
{
	for (size_t r = 0; r < sizeof(hammer_cases) / sizeof(hammer_cases[0]); r++) {
		const struct hammer_case *c = &hammer_cases[r];
		struct ratelimit *rl = new_memory(1000);
		struct hammer h[16];
		pthread_t tid[16];
		unsigned within = 0, over = 0, errors = 0, keys, want_within;

		for (unsigned i = 0; i < c->threads; i++) {
			h[i] = (struct hammer){ rl, c->shared_key ? "shared" : NULL, c->n,
						c->per_thread, 0, 0, 0, i };
			assert_int_equal(pthread_create(&tid[i], NULL, hammer_run, &h[i]), 0);
		}
		for (unsigned i = 0; i < c->threads; i++) {
			pthread_join(tid[i], NULL);
			within += h[i].within;
			over += h[i].over;
			errors += h[i].errors;
		}
		keys = c->shared_key ? 1 : c->threads;
		want_within = keys * (c->n < c->per_thread * c->threads / keys
					      ? c->n
					      : c->per_thread * c->threads / keys);
		if (within != want_within || errors != 0 ||
		    within + over != c->threads * c->per_thread)
			fail_msg("row %zu (%s): within %u over %u errors %u, want within %u", r,
				 c->name, within, over, errors, want_within);
		ratelimit_free(rl);
	}
}

/* main - run every test. */
int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(store_urls_are_checked),
		cmocka_unit_test(window_allows_n_refuses_n_plus_1),
		cmocka_unit_test(window_slides_and_recovers),
		cmocka_unit_test(keys_are_isolated),
		cmocka_unit_test(edge_arguments),
		cmocka_unit_test(keys_are_bounded),
		cmocka_unit_test(idle_keys_are_reaped),
		cmocka_unit_test(threads_get_exact_counts),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
