/*
 * lazytimer.c - a timeout that is moved far more often than it fires (see
 * lazytimer.h).
 *
 * Public:
 *   lazytimer_init(), lazytimer_set(), lazytimer_stop(), lazytimer_kill(),
 *   lazytimer_expired(), lazytimer_free()
 */

/* System. */
#include <sys/time.h>
#include <time.h>

/* Project. */
#include "lazytimer.h"

/* now_ms - monotonic milliseconds. */
static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* add - (re)schedule the event itself, ms after now. */
static void
add(struct lazytimer *t, uint64_t now, uint64_t ms)
{
	struct timeval tv = { (time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000 };

	event_add(t->ev, &tv);
	t->at = now + ms;
	t->pending = true;
}

/* lazytimer_init - see lazytimer.h. */
int
lazytimer_init(struct lazytimer *t, struct event_base *base, event_callback_fn cb, void *arg)
{
	t->due = t->at = 0;
	t->pending = false;
	t->ev = evtimer_new(base, cb, arg);
	return t->ev ? 0 : -1;
}

/* lazytimer_set - see lazytimer.h. */
void
lazytimer_set(struct lazytimer *t, uint64_t ms)
{
	uint64_t now = now_ms();

	t->due = now + ms;
	if (!t->pending || t->at > t->due)
		add(t, now, ms);
}

/* lazytimer_stop - see lazytimer.h. */
void
lazytimer_stop(struct lazytimer *t)
{
	t->due = 0;
}

/* lazytimer_kill - see lazytimer.h. */
void
lazytimer_kill(struct lazytimer *t)
{
	t->due = 0;
	t->pending = false;
	if (t->ev)
		event_del(t->ev);
}

/* lazytimer_expired - see lazytimer.h. */
bool
lazytimer_expired(struct lazytimer *t)
{
	uint64_t now = now_ms();

	t->pending = false;
	if (t->due == 0)
		return false;
	if (now < t->due) {
		add(t, now, t->due - now);
		return false;
	}
	t->due = 0;
	return true;
}

/* lazytimer_free - see lazytimer.h. */
void
lazytimer_free(struct lazytimer *t)
{
	if (t->ev)
		event_free(t->ev);
	t->ev = NULL;
	t->pending = false;
	t->due = 0;
}
