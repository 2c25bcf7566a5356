/*
 * checkpool.h - a small pool of threads for checks that may wait (DNS,
 * Redis, password hashing). A job's work() runs on a pool thread; its
 * done() runs afterwards on the event loop that submitted it, so session
 * state is only ever touched by its own loop.
 */
#ifndef RAVELIN_CHECKPOOL_H
#define RAVELIN_CHECKPOOL_H

struct event_base;
struct checkpool;

struct checkpool *checkpool_new(unsigned nthreads);
/* checkpool_submit - queue work(arg) then done(arg) on base. 0 or -1. */
int checkpool_submit(struct checkpool *pool, struct event_base *base, void (*work)(void *),
		     void (*done)(void *), void *arg);
/* checkpool_free - finish queued jobs, join threads; accepts NULL. */
void checkpool_free(struct checkpool *pool);

#endif
