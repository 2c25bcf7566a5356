/*
 * bev_direct.c - read a plain socket bufferevent's input ourselves.
 *
 * libevent's socket bufferevent asks the kernel how many bytes are
 * waiting (ioctl FIONREAD) before every read, and reads through a fresh
 * chain with readv(): on a session that trades one short line at a time
 * that is a third of its read syscalls. This reader does one recv() into
 * the input buffer, then calls the bufferevent's own read callback (or
 * its event callback on EOF or error), so the code above it sees the
 * same bufferevent, the same buffer and the same callbacks. The
 * bufferevent's own reading stays disabled while this one is in use.
 *
 * Public (bev_direct.h):
 *   bev_direct_new(), bev_direct_free(), bev_direct_enable(),
 *   bev_direct_disable(), bev_direct_check()
 */

/* System. */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/socket.h>

/* Library. */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

/* Project. */
#include "bev_direct.h"

/* One recv() takes at most this much (libevent's own limit is 4 KiB). */
#define BEV_DIRECT_READ 16384

struct bev_direct {
	struct bufferevent *bev;
	struct event *ev;
	size_t high;            /* stop reading at this much input (0: never) */
	bool want;              /* the owner wants input */
	bool armed;             /* ev is added */
};

/* arm - add or delete the read event to match want and the watermark. */
static void
arm(struct bev_direct *d)
{
	bool on = d->want && (d->high == 0 ||
			      evbuffer_get_length(bufferevent_get_input(d->bev)) < d->high);

	if (on && !d->armed)
		event_add(d->ev, NULL);
	else if (!on && d->armed)
		event_del(d->ev);
	d->armed = on;
}

/* read_cb - the socket is readable: one recv(), then the owner's callback. */
static void
read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct bev_direct *d = arg;
	struct bufferevent *bev = d->bev;
	struct evbuffer *in = bufferevent_get_input(bev);
	bufferevent_data_cb readcb;
	bufferevent_event_cb eventcb;
	void *cbarg;
	char buf[BEV_DIRECT_READ];
	size_t room = sizeof(buf), have = evbuffer_get_length(in);
	ssize_t n;

	(void)what;
	if (d->high != 0) {
		if (have >= d->high) {
			arm(d);
			return;
		}
		if (room > d->high - have)
			room = d->high - have;
	}
	/* Into the stack, then added: the chain is sized to what came (a
	 * command line fits a small, recycled allocation), where reserving
	 * room for a large read would allocate a large chain every time. */
	n = recv(fd, buf, room, 0);
	if (n > 0) {
		/* The socket bufferevent keeps its input's end frozen: only its
		 * own reader may add, and we are reading in its place. */
		evbuffer_unfreeze(in, 0);
		if (evbuffer_add(in, buf, (size_t)n) < 0) {
			n = -1;
			errno = ENOMEM;
		}
		evbuffer_freeze(in, 0);
	}
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	bufferevent_getcb(bev, &readcb, NULL, &eventcb, &cbarg);
	/* The callbacks may free bev and d: nothing of either after them. */
	if (n > 0) {
		if (d->high != 0 && have + (size_t)n >= d->high)
			arm(d);
		if (readcb)
			readcb(bev, cbarg);
	} else {
		d->want = false;
		arm(d);
		if (eventcb)
			eventcb(bev, BEV_EVENT_READING | (n == 0 ? BEV_EVENT_EOF : BEV_EVENT_ERROR), cbarg);
	}
}

/* bev_direct_new - read bev's socket ourselves (nothing is read until enabled). */
struct bev_direct *
bev_direct_new(struct bufferevent *bev, size_t high)
{
	struct bev_direct *d = calloc(1, sizeof(*d));
	int fd = bufferevent_getfd(bev);

	if (d == NULL || fd < 0) {
		free(d);
		return NULL;
	}
	d->bev = bev;
	d->high = high;
	d->ev = event_new(bufferevent_get_base(bev), fd, EV_READ | EV_PERSIST, read_cb, d);
	if (d->ev == NULL) {
		free(d);
		return NULL;
	}
	bufferevent_disable(bev, EV_READ);
	return d;
}

/* bev_direct_free - stop reading; the bufferevent itself is untouched. */
struct bev_direct *
bev_direct_free(struct bev_direct *d)
{
	if (d != NULL) {
		event_free(d->ev);
		free(d);
	}
	return NULL;
}

/* bev_direct_enable - the owner wants input. */
void
bev_direct_enable(struct bev_direct *d)
{
	d->want = true;
	arm(d);
}

/* bev_direct_disable - the owner wants no input for now. */
void
bev_direct_disable(struct bev_direct *d)
{
	d->want = false;
	arm(d);
}

/* bev_direct_check - input was consumed: read again if it fell below the mark. */
void
bev_direct_check(struct bev_direct *d)
{
	if (d->want && !d->armed)
		arm(d);
}
