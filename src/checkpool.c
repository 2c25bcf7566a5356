/*
 * checkpool.c - a small pool of threads for checks that may wait.
 *
 * A job's work() runs on a pool thread; its done() is then posted to the
 * event loop that submitted it with event_base_once(), which libevent makes
 * thread-safe once evthread_use_pthreads() was called. The session that
 * submitted a job stays alive until done() has run.
 *
 * The pool grows (up to CHECKPOOL_MAX threads) when a job arrives and no
 * thread is idle: checks mostly wait on the network, so a few slow DNS
 * servers must not make every other session queue behind them.
 *
 * Public:
 *   checkpool_new(), checkpool_submit(), checkpool_free()
 */

/* System. */
#include <pthread.h>
#include <stdlib.h>
#include <sys/time.h>

/* Library. */
#include <event2/event.h>

/* Project. */
#include "checkpool.h"
#include "log.h"

/* Threads at most: each costs a stack, and waits are bounded anyway. */
#define CHECKPOOL_MAX 128

struct checkpool_job {
	struct checkpool_job *next;
	struct event_base *base;
	void (*work)(void *);
	void (*done)(void *);
	void *arg;
};

struct checkpool {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct checkpool_job *head, *tail;
	int stopping;
	unsigned nthreads;
	unsigned idle;              /* threads waiting for a job */
	unsigned queued;            /* jobs not yet taken */
	pthread_t *threads;
};

/* job_done - runs on the submitting loop. */
static void
job_done(evutil_socket_t fd, short what, void *arg)
{
	struct checkpool_job *job = arg;

	job->done(job->arg);
	free(job);
}

/* worker - take jobs until the pool stops and the queue is empty. */
static void *
worker(void *arg)
{
	struct checkpool *pool = arg;
	static const struct timeval now = { 0, 0 };

	for (;;) {
		pthread_mutex_lock(&pool->lock);
		pool->idle++;
		while (!pool->head && !pool->stopping)
			pthread_cond_wait(&pool->cond, &pool->lock);
		pool->idle--;
		struct checkpool_job *job = pool->head;
		if (!job) {
			pthread_mutex_unlock(&pool->lock);
			return NULL;
		}
		pool->head = job->next;
		if (!pool->head)
			pool->tail = NULL;
		pool->queued--;
		pthread_mutex_unlock(&pool->lock);

		job->work(job->arg);
		if (event_base_once(job->base, -1, EV_TIMEOUT, job_done, job, &now) < 0)
			fatalx("checkpool: cannot post a result to its event loop");
	}
}

/* checkpool_new - start nthreads threads. */
struct checkpool *
checkpool_new(unsigned nthreads)
{
	struct checkpool *pool = calloc(1, sizeof(*pool));

	if (!pool)
		return NULL;
	pthread_mutex_init(&pool->lock, NULL);
	pthread_cond_init(&pool->cond, NULL);
	pool->threads = calloc(CHECKPOOL_MAX, sizeof(pthread_t));
	if (!pool->threads) {
		free(pool);
		return NULL;
	}
	if (nthreads > CHECKPOOL_MAX)
		nthreads = CHECKPOOL_MAX;
	for (unsigned i = 0; i < (nthreads ? nthreads : 1); i++) {
		if (pthread_create(&pool->threads[i], NULL, worker, pool) != 0)
			break;
		pool->nthreads++;
	}
	if (!pool->nthreads) {
		checkpool_free(pool);
		return NULL;
	}
	return pool;
}

/* checkpool_submit - queue work(arg) then done(arg) on base. 0 or -1. */
int
checkpool_submit(struct checkpool *pool, struct event_base *base, void (*work)(void *),
		 void (*done)(void *), void *arg)
{
	struct checkpool_job *job = malloc(sizeof(*job));

	if (!job)
		return -1;
	job->next = NULL;
	job->base = base;
	job->work = work;
	job->done = done;
	job->arg = arg;
	pthread_mutex_lock(&pool->lock);
	if (pool->tail)
		pool->tail->next = job;
	else
		pool->head = job;
	pool->tail = job;
	pool->queued++;
	/* More jobs than idle threads (the others wait on DNS, most likely):
	 * add a thread rather than make this job wait behind them. */
	if (pool->queued > pool->idle && pool->nthreads < CHECKPOOL_MAX &&
	    pthread_create(&pool->threads[pool->nthreads], NULL, worker, pool) == 0)
		pool->nthreads++;
	pthread_cond_signal(&pool->cond);
	pthread_mutex_unlock(&pool->lock);
	return 0;
}

/* checkpool_free - finish queued jobs, join threads; accepts NULL. */
void
checkpool_free(struct checkpool *pool)
{
	if (!pool)
		return;
	pthread_mutex_lock(&pool->lock);
	pool->stopping = 1;
	pthread_cond_broadcast(&pool->cond);
	pthread_mutex_unlock(&pool->lock);
	for (unsigned i = 0; i < pool->nthreads; i++)
		pthread_join(pool->threads[i], NULL);
	pthread_mutex_destroy(&pool->lock);
	pthread_cond_destroy(&pool->cond);
	free(pool->threads);
	free(pool);
}
