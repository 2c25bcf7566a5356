/*
 * lazytimer.h - a timeout that is moved far more often than it fires.
 *
 * A session or backend waits with a timeout for every command: stopping
 * the event while a command is busy and adding it again afterwards costs
 * the timer heap (and libevent's lock) two operations per command. Like
 * nginx's lazy timers, a lazytimer only moves its deadline; the event is
 * added when it is not pending or would fire too late, and when it fires
 * early lazytimer_expired() adds it again for what is left.
 */
#ifndef RAVELIN_LAZYTIMER_H
#define RAVELIN_LAZYTIMER_H

#include <stdbool.h>
#include <stdint.h>

#include <event2/event.h>

struct lazytimer {
	struct event *ev;
	uint64_t due;      /* monotonic ms when the wait ends; 0 = no wait */
	uint64_t at;       /* when the pending event fires */
	bool pending;
};

/* lazytimer_init - cb runs on base when the event fires; -1 on failure. */
int lazytimer_init(struct lazytimer *t, struct event_base *base, event_callback_fn cb, void *arg);
/* lazytimer_set - the wait ends ms from now. */
void lazytimer_set(struct lazytimer *t, uint64_t ms);
/* lazytimer_stop - no wait runs; the event may still fire, to no effect. */
void lazytimer_stop(struct lazytimer *t);
/* lazytimer_kill - no wait, and the event is removed too. */
void lazytimer_kill(struct lazytimer *t);
/* lazytimer_expired - first thing in cb: true when the wait has ended
 * (and is over); false when the event fired early or idle. */
bool lazytimer_expired(struct lazytimer *t);
/* lazytimer_running - a wait is on. */
static inline bool
lazytimer_running(const struct lazytimer *t)
{
	return t->due != 0;
}
/* lazytimer_free - release the event; accepts a zeroed timer. */
void lazytimer_free(struct lazytimer *t);

#endif
