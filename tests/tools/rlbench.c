/*
 * rlbench.c - drive a rate-limit store from the outside: measure the cost
 * of a limit check, or serve commands on stdin for end-to-end tests.
 *
 *   rlbench --store URL [--count N] [--keys K] [--threads T]
 *       N checks (default 200000) spread over K keys (default 1000), limit
 *       100 per 10 s; prints "memory: 0.35 us/check" (or "redis: ...") for
 *       one thread and, with T > 1, the aggregate of T threads.
 *   rlbench --store URL --serve
 *       one command per stdin line, one answer line each (flushed):
 *         hit KEY N PERIOD        -> RC COUNT USEC
 *         burst KEY N PERIOD M    -> WITHIN OVER ERRORS USEC   (M hits)
 *         tburst KEY N PERIOD M T -> the same, M hits spread over T threads
 *         peek KEY PERIOD         -> RC COUNT USEC
 *         clear KEY               -> RC USEC
 *         errors                  -> store error count
 *   Common: --prefix P (default ravelin:), --timeout MS (default 200).
 */

/* System. */
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Project. */
#include "log.h"
#include "ratelimit.h"

/* Options shared by the bench threads. */
struct bench {
	struct ratelimit *rl;
	unsigned long count, keys;
	unsigned id;
	unsigned long errors;
};

/* now_us - monotonic microseconds. */
static double
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/* bench_run - one thread's share of checks. */
static void *
bench_run(void *arg)
{
	struct bench *b = arg;
	char key[64];

	for (unsigned long i = 0; i < b->count; i++) {
		snprintf(key, sizeof(key), "bench:%u:%lu", b->id, i % b->keys);
		if (ratelimit_hit(b->rl, key, 100, 10, NULL) < 0)
			b->errors++;
	}
	return NULL;
}

/* bench - time count checks on nthreads threads; microseconds per check. */
static double
bench(struct ratelimit *rl, unsigned long count, unsigned long keys, unsigned nthreads,
      unsigned long *errors)
{
	struct bench b[64];
	pthread_t tid[64];
	double t0 = now_us();

	*errors = 0;
	for (unsigned i = 0; i < nthreads; i++) {
		b[i] = (struct bench){ rl, count / nthreads, keys, i, 0 };
		if (pthread_create(&tid[i], NULL, bench_run, &b[i]) != 0) {
			fprintf(stderr, "rlbench: pthread_create failed\n");
			exit(1);
		}
	}
	for (unsigned i = 0; i < nthreads; i++) {
		pthread_join(tid[i], NULL);
		*errors += b[i].errors;
	}
	return (now_us() - t0) / (double)(count / nthreads * nthreads);
}

/* One thread's part of a tburst. */
struct burst {
	struct ratelimit *rl;
	const char *key;
	unsigned n, period, m;
	unsigned within, over, errors;
};

/* burst_run - m hits on one key, tallied. */
static void *
burst_run(void *arg)
{
	struct burst *b = arg;
	int rc;

	for (unsigned i = 0; i < b->m; i++) {
		rc = ratelimit_hit(b->rl, b->key, b->n, b->period, NULL);
		if (rc == 0)
			b->within++;
		else if (rc == 1)
			b->over++;
		else
			b->errors++;
	}
	return NULL;
}

/* burst - m hits over nthreads threads; prints WITHIN OVER ERRORS USEC. */
static void
burst(struct ratelimit *rl, const char *key, unsigned n, unsigned period, unsigned m,
      unsigned nthreads)
{
	struct burst b[64];
	pthread_t tid[64];
	unsigned within = 0, over = 0, errors = 0;
	double t0 = now_us();

	if (nthreads == 0 || nthreads > 64)
		nthreads = 1;
	for (unsigned i = 0; i < nthreads; i++) {
		b[i] = (struct burst){ rl, key, n, period, m / nthreads + (i < m % nthreads), 0, 0, 0 };
		if (pthread_create(&tid[i], NULL, burst_run, &b[i]) != 0) {
			fprintf(stderr, "rlbench: pthread_create failed\n");
			exit(1);
		}
	}
	for (unsigned i = 0; i < nthreads; i++) {
		pthread_join(tid[i], NULL);
		within += b[i].within;
		over += b[i].over;
		errors += b[i].errors;
	}
	printf("%u %u %u %.0f\n", within, over, errors, now_us() - t0);
}

/* serve - answer stdin commands until EOF. */
static void
serve(struct ratelimit *rl)
{
	char line[1024], key[600];
	unsigned n, period, count, m, t;
	double t0;
	int rc;

	while (fgets(line, sizeof(line), stdin)) {
		count = 0;
		t0 = now_us();
		if (sscanf(line, "hit %599s %u %u", key, &n, &period) == 3) {
			rc = ratelimit_hit(rl, key, n, period, &count);
			printf("%d %u %.0f\n", rc, count, now_us() - t0);
		} else if (sscanf(line, "tburst %599s %u %u %u %u", key, &n, &period, &m, &t) == 5) {
			burst(rl, key, n, period, m, t);
		} else if (sscanf(line, "burst %599s %u %u %u", key, &n, &period, &m) == 4) {
			burst(rl, key, n, period, m, 1);
		} else if (sscanf(line, "peek %599s %u", key, &period) == 2) {
			rc = ratelimit_peek(rl, key, period, &count);
			printf("%d %u %.0f\n", rc, count, now_us() - t0);
		} else if (sscanf(line, "clear %599s", key) == 1) {
			rc = ratelimit_clear(rl, key);
			printf("%d %.0f\n", rc, now_us() - t0);
		} else if (strncmp(line, "errors", 6) == 0) {
			printf("%lu\n", ratelimit_store_errors(rl));
		} else {
			printf("? %s", line);
		}
		fflush(stdout);
	}
}

/* usage - say how to call and exit 2. */
static void __attribute__((noreturn))
usage(void)
{
	fprintf(stderr, "usage: rlbench --store URL [--count N] [--keys K] [--threads T] "
			"[--prefix P] [--timeout MS] [--serve]\n");
	exit(2);
}

/* main - parse options, then bench or serve. */
int
main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "store", required_argument, NULL, 's' },
		{ "count", required_argument, NULL, 'n' },
		{ "keys", required_argument, NULL, 'k' },
		{ "threads", required_argument, NULL, 't' },
		{ "prefix", required_argument, NULL, 'p' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "serve", no_argument, NULL, 'S' },
		{ NULL, 0, NULL, 0 },
	};
	const char *url = "memory", *prefix = NULL;
	unsigned long count = 200000, keys = 1000, errors;
	unsigned threads = 1, timeout = 200;
	int c, do_serve = 0;
	struct ratelimit *rl;
	char err[256];
	double us;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 's': url = optarg; break;
		case 'n': count = strtoul(optarg, NULL, 10); break;
		case 'k': keys = strtoul(optarg, NULL, 10); break;
		case 't': threads = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'p': prefix = optarg; break;
		case 'T': timeout = (unsigned)strtoul(optarg, NULL, 10); break;
		case 'S': do_serve = 1; break;
		default: usage();
		}
	}
	if (count == 0 || keys == 0 || threads == 0 || threads > 64)
		usage();
	log_init("rlbench", LOG_DEST_STDERR, 0);
	if ((rl = ratelimit_new(url, prefix, timeout, 0, err, sizeof(err))) == NULL) {
		fprintf(stderr, "rlbench: %s\n", err);
		return 1;
	}
	if (do_serve) {
		serve(rl);
	} else {
		const char *kind = ratelimit_may_block(rl) ? "redis" : "memory";

		us = bench(rl, count, keys, 1, &errors);
		printf("%s: %.3f us/check (1 thread, %lu checks, %lu keys, %lu errors)\n", kind, us,
		       count, keys, errors);
		if (threads > 1) {
			us = bench(rl, count, keys, threads, &errors);
			printf("%s: %.3f us/check (%u threads aggregate, %lu errors)\n", kind, us,
			       threads, errors);
		}
	}
	ratelimit_free(rl);
	return 0;
}
