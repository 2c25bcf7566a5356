/*
 * test_lazytimer.c - lazytimer.c on a real event loop: a wait ends when
 * its latest deadline says, not when an earlier one would have; a shorter
 * deadline than the pending event's pulls it in; a stopped or killed wait
 * never expires; moving the deadline does not re-add the event.
 */

/* System. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Libraries. */
#include <cmocka.h>
#include <event2/event.h>

/* Project. */
#include "lazytimer.h"

struct fixture {
	struct event_base *base;
	struct lazytimer t;
	int fired;              /* callback runs */
	int expired;            /* of which the wait had ended */
	uint64_t expired_at;    /* ms since start, at the first expiry */
	uint64_t start;
};

/* ms - monotonic milliseconds. */
static uint64_t
ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* on_timer - the owner's callback: ask lazytimer_expired() first. */
static void
on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct fixture *f = arg;

	f->fired++;
	if (!lazytimer_expired(&f->t))
		return;
	if (f->expired++ == 0)
		f->expired_at = ms() - f->start;
}

/* at - run fn(f) after delay ms on the loop. */
struct step {
	struct fixture *f;
	void (*fn)(struct fixture *);
};
static void
step_cb(evutil_socket_t fd, short what, void *arg)
{
	struct step *s = arg;
	s->fn(s->f);
}
static void
at(struct fixture *f, struct step *s, unsigned delay)
{
	struct timeval tv = { 0, (suseconds_t)delay * 1000 };
	event_base_once(f->base, -1, EV_TIMEOUT, step_cb, s, &tv);
}

static void move_to_200(struct fixture *f) { lazytimer_set(&f->t, 200); }
static void move_to_50(struct fixture *f) { lazytimer_set(&f->t, 50); }
static void stop(struct fixture *f) { lazytimer_stop(&f->t); }
static void kill_it(struct fixture *f) { lazytimer_kill(&f->t); }

/* run - the loop for at most limit ms. */
static void
run(struct fixture *f, unsigned limit)
{
	struct timeval tv = { 0, (suseconds_t)limit * 1000 };
	event_base_loopexit(f->base, &tv);
	event_base_dispatch(f->base);
}

/* setup - a loop and a timer. */
static void
setup(struct fixture *f)
{
	f->base = event_base_new();
	assert_non_null(f->base);
	f->fired = f->expired = 0;
	f->expired_at = 0;
	assert_int_equal(lazytimer_init(&f->t, f->base, on_timer, f), 0);
	f->start = ms();
}

/* teardown - release both. */
static void
teardown(struct fixture *f)
{
	lazytimer_free(&f->t);
	event_base_free(f->base);
}

/* later_deadline - set 100 ms, moved at 60 ms to 200 ms from then: the
 * event fires early once (100 ms), the wait ends near 260 ms, once. */
static void
later_deadline(void **state)
{
	struct fixture f;
	struct step s = { &f, move_to_200 };

	setup(&f);
	lazytimer_set(&f.t, 100);
	at(&f, &s, 60);
	run(&f, 600);
	assert_int_equal(f.expired, 1);
	assert_true(f.expired_at >= 255 && f.expired_at < 480);
	assert_int_equal(f.fired, 2);
	teardown(&f);
}

/* earlier_deadline - set 300 ms, moved at 20 ms to 50 ms from then: the
 * event is pulled in and the wait ends near 70 ms, not at 300. */
static void
earlier_deadline(void **state)
{
	struct fixture f;
	struct step s = { &f, move_to_50 };

	setup(&f);
	lazytimer_set(&f.t, 300);
	at(&f, &s, 20);
	run(&f, 500);
	assert_int_equal(f.expired, 1);
	assert_true(f.expired_at >= 65 && f.expired_at < 250);
	teardown(&f);
}

/* stopped_and_killed - a stopped wait fires idle, a killed one not at all;
 * neither expires. */
static void
stopped_and_killed(void **state)
{
	struct fixture f;
	struct step s1 = { &f, stop }, s2 = { &f, kill_it };

	setup(&f);
	lazytimer_set(&f.t, 80);
	at(&f, &s1, 20);
	run(&f, 200);
	assert_int_equal(f.expired, 0);
	assert_int_equal(f.fired, 1);
	assert_false(lazytimer_running(&f.t));
	teardown(&f);

	setup(&f);
	lazytimer_set(&f.t, 80);
	at(&f, &s2, 20);
	run(&f, 200);
	assert_int_equal(f.expired, 0);
	assert_int_equal(f.fired, 0);
	teardown(&f);
}

/* many_moves - a hundred moves before the first deadline add the event
 * once: it fires as few times as the deadline needs. */
static void
many_moves(void **state)
{
	struct fixture f;

	setup(&f);
	for (int i = 0; i < 100; i++)
		lazytimer_set(&f.t, 50);
	assert_true(lazytimer_running(&f.t));
	run(&f, 300);
	assert_int_equal(f.expired, 1);
	assert_true(f.fired <= 2);
	teardown(&f);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(later_deadline),
		cmocka_unit_test(earlier_deadline),
		cmocka_unit_test(stopped_and_killed),
		cmocka_unit_test(many_moves),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
