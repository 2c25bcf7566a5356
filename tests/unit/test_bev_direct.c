/*
 * test_bev_direct.c - unit tests of bev_direct.c over a socketpair and a
 * real event loop: bytes reach the bufferevent's input and its read
 * callback, reading stops at the mark and resumes when the input is
 * consumed, disable holds bytes in the kernel, and EOF reaches the event
 * callback. No ioctl(FIONREAD) is involved by construction (one recv()).
 */

/* System. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Libraries. */
#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

/* Project. */
#include "bev_direct.h"

struct fixture {
	struct event_base *base;
	struct bufferevent *bev;
	struct bev_direct *d;
	int peer;               /* the other end: the test writes here */
	int reads;              /* read callback calls */
	short events;           /* what the event callback saw */
	size_t consume;         /* drain this much per read callback (0: none) */
};

/* on_read - the owner's read callback: count, maybe consume. */
static void
on_read(struct bufferevent *bev, void *arg)
{
	struct fixture *f = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	f->reads++;
	if (f->consume > 0) {
		size_t n = evbuffer_get_length(in);
		evbuffer_drain(in, n < f->consume ? n : f->consume);
		bev_direct_check(f->d);
	}
}

/* on_event - the owner's event callback: remember what came. */
static void
on_event(struct bufferevent *bev, short what, void *arg)
{
	struct fixture *f = arg;

	(void)bev;
	f->events |= what;
}

/* setup - a bufferevent on one end of a socketpair, read by bev_direct. */
static int
setup(void **state)
{
	static struct fixture f;
	int sv[2];

	memset(&f, 0, sizeof(f));
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(evutil_make_socket_nonblocking(sv[0]), 0);
	f.base = event_base_new();
	f.bev = bufferevent_socket_new(f.base, sv[0], BEV_OPT_CLOSE_ON_FREE);
	assert_non_null(f.bev);
	bufferevent_setcb(f.bev, on_read, NULL, on_event, &f);
	f.d = bev_direct_new(f.bev, 1000);
	assert_non_null(f.d);
	f.peer = sv[1];
	*state = &f;
	return 0;
}

/* teardown - free in the order the daemon does: reader, then bufferevent. */
static int
teardown(void **state)
{
	struct fixture *f = *state;

	f->d = bev_direct_free(f->d);
	bufferevent_free(f->bev);
	close(f->peer);
	event_base_free(f->base);
	return 0;
}

/* spin - run the loop until nothing is ready. */
static void
spin(struct fixture *f)
{
	for (int i = 0; i < 20; i++)
		event_base_loop(f->base, EVLOOP_NONBLOCK);
}

/* put - write n bytes of c to the peer end. */
static void
put(struct fixture *f, char c, size_t n)
{
	char buf[4096];

	memset(buf, c, sizeof(buf));
	while (n > 0) {
		size_t k = n < sizeof(buf) ? n : sizeof(buf);
		assert_int_equal(write(f->peer, buf, k), (ssize_t)k);
		n -= k;
	}
}

/* bytes_reach_input - what the peer writes is in the input, callback called. */
static void
bytes_reach_input(void **state)
{
	struct fixture *f = *state;

	bev_direct_enable(f->d);
	assert_int_equal(write(f->peer, "EHLO x\r\n", 8), 8);
	spin(f);
	assert_true(f->reads >= 1);
	struct evbuffer *in = bufferevent_get_input(f->bev);
	assert_int_equal(evbuffer_get_length(in), 8);
	assert_memory_equal(evbuffer_pullup(in, -1), "EHLO x\r\n", 8);
	assert_int_equal(f->events, 0);
}

/* disabled_reads_nothing - bytes stay in the kernel until enabled. */
static void
disabled_reads_nothing(void **state)
{
	struct fixture *f = *state;
	struct evbuffer *in = bufferevent_get_input(f->bev);

	put(f, 'a', 100);
	spin(f);
	assert_int_equal(f->reads, 0);
	assert_int_equal(evbuffer_get_length(in), 0);
	bev_direct_enable(f->d);
	spin(f);
	assert_int_equal(evbuffer_get_length(in), 100);
	bev_direct_disable(f->d);
	put(f, 'b', 50);
	spin(f);
	assert_int_equal(evbuffer_get_length(in), 100);
}

/* stops_at_mark - never more than the mark in the input; resumes on check. */
static void
stops_at_mark(void **state)
{
	struct fixture *f = *state;
	struct evbuffer *in = bufferevent_get_input(f->bev);

	bev_direct_enable(f->d);
	put(f, 'x', 5000);
	spin(f);
	assert_int_equal(evbuffer_get_length(in), 1000);
	int before = f->reads;
	spin(f);
	assert_int_equal(f->reads, before);	/* parked: no busy loop */
	/* The owner consumes and says so: the rest arrives, mark by mark. */
	f->consume = 1000;
	evbuffer_drain(in, 1000);
	bev_direct_check(f->d);
	spin(f);
	spin(f);
	spin(f);
	spin(f);
	assert_true(f->reads > before);
	assert_int_equal(f->events, 0);
	/* 5000 written, at most 1000 buffered at any time, all read by now. */
	char probe;
	assert_int_equal(recv(bufferevent_getfd(f->bev), &probe, 1, MSG_DONTWAIT), -1);
}

/* eof_reaches_event_cb - a closed peer is BEV_EVENT_EOF | READING, once. */
static void
eof_reaches_event_cb(void **state)
{
	struct fixture *f = *state;

	bev_direct_enable(f->d);
	assert_int_equal(write(f->peer, "QUIT\r\n", 6), 6);
	shutdown(f->peer, SHUT_WR);
	spin(f);
	assert_int_equal(evbuffer_get_length(bufferevent_get_input(f->bev)), 6);
	assert_true(f->events & BEV_EVENT_EOF);
	assert_true(f->events & BEV_EVENT_READING);
	assert_false(f->events & BEV_EVENT_ERROR);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(bytes_reach_input, setup, teardown),
		cmocka_unit_test_setup_teardown(disabled_reads_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(stops_at_mark, setup, teardown),
		cmocka_unit_test_setup_teardown(eof_reaches_event_cb, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
