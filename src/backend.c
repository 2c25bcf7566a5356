/*
 * backend.c - the client side: one lockstep SMTP session with the real MTA.
 *
 * Opened lazily at the first MAIL that passed ravelin's checks, reused by
 * the session's later transactions. The handshake is its own phase, as in
 * nginx's mail proxy: greeting, EHLO, STARTTLS when configured, XCLIENT
 * (then the new greeting and EHLO again, as the XCLIENT protocol requires)
 * or a PROXY v2 header. Several `backend` lines give failover. After that,
 * one command at a time: the session's commands queue here and each reply
 * goes back to the callback that asked. A reply is bounded in lines and
 * octets, and every wait has backend_timeout.
 *
 * Public:
 *   backend_new(), backend_ready(), backend_open(), backend_command(),
 *   backend_message(), backend_free(), backend_describe()
 */

/* System. */
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

/* Library. */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/ssl.h>

/* Project. */
#include "backend.h"
#include "bev_direct.h"
#include "config.h"
#include "fmt.h"
#include "log.h"
#include "message.h"
#include "proxyproto.h"
#include "server.h"
#include "smtp_session.h"
#include "strcopy.h"
#include "tls.h"

#define BE_REPLY_LINE_MAX  2048
#define BE_REPLY_LINES_MAX 100
#define BE_BODY_CHUNK      (64 * 1024)

enum be_phase {
	BP_IDLE, BP_CONNECTING, BP_GREETING, BP_EHLO, BP_STARTTLS, BP_TLS, BP_EHLO_TLS,
	BP_XCLIENT, BP_EHLO_XCLIENT, BP_READY, BP_DATA, BP_BODY, BP_DOT, BP_DEAD
};

struct be_cmd {
	struct be_cmd *next;
	char *line;                 /* with CRLF; NULL for a message */
	backend_cb *cb;
	struct evbuffer *headers;   /* message only */
	const struct message *msg;
};

struct backend {
	struct smtp_session *s;
	struct bufferevent *bev;
	struct bev_direct *rd;      /* plain socket: we read it ourselves */
	struct lazytimer timer;     /* backend_connect_timeout, backend_timeout */
	size_t idx;                 /* which `backend` line */
	enum be_phase phase;
	unsigned caps;
	char xclient_attrs[256];
	backend_cb *open_cb;
	struct be_cmd *head, *tail; /* queued commands */
	struct be_cmd *cur;         /* waiting for its reply */
	struct evbuffer *reply;     /* the reply being read, CRLF lines */
	unsigned reply_lines;
	off_t body_off;             /* message body sent so far */
	bool tls;
	bool plain;                 /* bev is the socket itself: write directly */
	unsigned depth;             /* inside one of our libevent callbacks */
	bool zombie;                /* backend_free() was called meanwhile */
	bool early_xclient;         /* XCLIENT sent before any EHLO (a hint) */
	char desc[96];
};

static void be_really_free(struct backend *be);

/* be_enter / be_leave - keep be alive while a callback into the session
 * may call backend_free(); the last one out frees it. */
static void
be_enter(struct backend *be)
{
	be->depth++;
}

/* be_leave - returns true when be is gone and must not be touched. */
static bool
be_leave(struct backend *be)
{
	if (--be->depth == 0 && be->zombie) {
		be_really_free(be);
		return true;
	}
	return be->zombie;
}

static void be_connect(struct backend *be);
static void be_next_command(struct backend *be);
static void be_send_body(struct backend *be);

/* be_timer_arm - wait for the backend at most backend_timeout. */
static void
be_timer_arm(struct backend *be, unsigned seconds)
{
	lazytimer_set(&be->timer, (uint64_t)seconds * 1000);
}

/* be_send - write now when the socket takes it; the bufferevent only
 * gets what is left. Lockstep commands almost always fit, and handing
 * each one to the bufferevent would cost two epoll_ctl calls (arm the
 * write event, disarm it once drained) for every command. */
static void
be_send(struct backend *be, const void *data, size_t len)
{
	struct evbuffer *out = bufferevent_get_output(be->bev);
	int fd = bufferevent_getfd(be->bev);

	if (be->plain && fd >= 0 && evbuffer_get_length(out) == 0) {
		ssize_t n = send(fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n == (ssize_t)len)
			return;
		if (n > 0) {
			data = (const char *)data + n;
			len -= (size_t)n;
		}
		/* EAGAIN or an error: the bufferevent retries and reports it. */
	}
	bufferevent_write(be->bev, data, len);
	bufferevent_enable(be->bev, EV_WRITE);
}

/* be_flush - after adding to the output with the write event off (fd >= 0):
 * write what the kernel takes now, arm the event for the rest. */
static void
be_flush(struct backend *be, int fd)
{
	struct evbuffer *out = bufferevent_get_output(be->bev);

	if (fd < 0)
		return;
	if (evbuffer_get_length(out) > 0)
		(void)smtp_evbuffer_write(out, fd);
	if (evbuffer_get_length(out) > 0)
		bufferevent_enable(be->bev, EV_WRITE);
}

/* be_write - one command line with CRLF; arm the reply timer. */
static void
be_write(struct backend *be, const char *line)
{
	char buf[4200];
	int n = fmt_snprintf(buf, sizeof(buf), "%s\r\n", line);

	if (n > 0 && (size_t)n < sizeof(buf))
		be_send(be, buf, (size_t)n);
	be_timer_arm(be, be->s->cf->backend_timeout);
}

/* be_bev_free - close the connection (its reader first: it watches the fd). */
static void
be_bev_free(struct backend *be)
{
	be->rd = bev_direct_free(be->rd);
	if (be->bev) {
		bufferevent_free(be->bev);
		be->bev = NULL;
	}
}

/* be_fail_all - tell every waiter the backend is gone. */
static void
be_fail_all(struct backend *be, enum backend_status st)
{
	struct backend_reply r = { .status = st };
	struct smtp_session *s = be->s;
	backend_cb *cb = NULL;

	be->phase = BP_DEAD;
	lazytimer_kill(&be->timer);
	be_bev_free(be);
	if (be->open_cb) {
		cb = be->open_cb;
		be->open_cb = NULL;
	} else if (be->cur) {
		cb = be->cur->cb;
	}
	/* Queued fire-and-forget commands (RSET) die quietly. */
	while (be->head) {
		struct be_cmd *c = be->head;
		be->head = c->next;
		if (!cb && c->cb)
			cb = c->cb;
		if (c->headers)
			evbuffer_free(c->headers);
		free(c->line);
		free(c);
	}
	be->tail = NULL;
	if (be->cur) {
		if (be->cur->headers)
			evbuffer_free(be->cur->headers);
		free(be->cur->line);
		free(be->cur);
		be->cur = NULL;
	}
	if (cb)
		cb(s, &r);
}

/* be_next_backend - this one failed during the handshake: try the next. */
static void
be_next_backend(struct backend *be, const char *why)
{
	struct config *cf = be->s->cf;

	log_warnx(be->s->id, "backend %s: %s", be->desc, why);
	be_bev_free(be);
	lazytimer_stop(&be->timer);
	if (++be->idx < cf->nbackends) {
		be_connect(be);
		return;
	}
	be_fail_all(be, BE_CONNECT_FAIL);
}

/* parse_caps - EHLO keywords we care about. */
static void
parse_caps(struct backend *be)
{
	size_t len = evbuffer_get_length(be->reply);
	char *text = (char *)evbuffer_pullup(be->reply, (ev_ssize_t)len);
	char *line = text, *end = text + len;

	be->caps = BECAP_KNOWN;
	be->xclient_attrs[0] = '\0';
	while (line < end) {
		char *eol = memchr(line, '\n', end - line);
		size_t n = eol ? (size_t)(eol - line) : (size_t)(end - line);
		if (n > 4 && line != text) {
			char kw[64];
			size_t k = 0;
			const char *p = line + 4;
			while (k < sizeof(kw) - 1 && p < line + n && *p != ' ' && *p != '\r')
				kw[k++] = toupper((unsigned char)*p++);
			kw[k] = '\0';
			if (!strcmp(kw, "PIPELINING"))
				be->caps |= BECAP_PIPELINING;
			else if (!strcmp(kw, "8BITMIME"))
				be->caps |= BECAP_8BITMIME;
			else if (!strcmp(kw, "SMTPUTF8"))
				be->caps |= BECAP_SMTPUTF8;
			else if (!strcmp(kw, "DSN"))
				be->caps |= BECAP_DSN;
			else if (!strcmp(kw, "STARTTLS"))
				be->caps |= BECAP_STARTTLS;
			else if (!strcmp(kw, "SIZE"))
				be->caps |= BECAP_SIZE;
			else if (!strcmp(kw, "XCLIENT")) {
				be->caps |= BECAP_XCLIENT;
				size_t an = (size_t)(line + n - p);
				while (an && (p[an - 1] == '\r'))
					an--;
				if (an >= sizeof(be->xclient_attrs))
					an = sizeof(be->xclient_attrs) - 1;
				memcpy(be->xclient_attrs, p, an);
				be->xclient_attrs[an] = '\0';
			}
		}
		line += n + 1;
	}
	if (be->idx == 0)
		__atomic_store_n(&be->s->w->srv->becaps, be->caps, __ATOMIC_RELAXED);
}

/* xtext - RFC 3461 / XCLIENT encoding of an attribute value. */
static void
xtext(char *out, size_t outlen, const char *in)
{
	size_t n = 0;
	for (; *in && n + 4 < outlen; in++) {
		unsigned char c = *in;
		if (c < 33 || c > 126 || c == '+' || c == '=')
			n += fmt_snprintf(out + n, outlen - n, "+%02X", c);
		else
			out[n++] = c;
	}
	out[n] = '\0';
}

/* has_attr - did the backend announce this XCLIENT attribute? */
static bool
has_attr(const struct backend *be, const char *attr)
{
	size_t n = strlen(attr);
	for (const char *p = be->xclient_attrs; (p = strcasestr(p, attr)); p += n)
		if ((p == be->xclient_attrs || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0'))
			return true;
	return false;
}

/* send_xclient - the client's identity, only announced attributes. */
static void
send_xclient(struct backend *be)
{
	struct smtp_session *s = be->s;
	char line[4096], v[1024];   /* every attribute at its longest fits */
	size_t n = fmt_snprintf(line, sizeof(line), "XCLIENT");

	if (has_attr(be, "ADDR")) {
		bool v6 = strchr(s->client_ip, ':') != NULL;
		n += fmt_snprintf(line + n, sizeof(line) - n, " ADDR=%s%s", v6 ? "IPV6:" : "", s->client_ip);
	}
	if (has_attr(be, "PORT"))
		n += fmt_snprintf(line + n, sizeof(line) - n, " PORT=%u", s->client_port);
	if (has_attr(be, "NAME")) {
		xtext(v, sizeof(v), strcmp(s->client_name, "unknown") ? s->client_name : "[UNAVAILABLE]");
		n += fmt_snprintf(line + n, sizeof(line) - n, " NAME=%s", v);
	}
	if (has_attr(be, "HELO") && s->helo[0]) {
		xtext(v, sizeof(v), s->helo);
		n += fmt_snprintf(line + n, sizeof(line) - n, " HELO=%s", v);
	}
	if (has_attr(be, "PROTO"))
		n += fmt_snprintf(line + n, sizeof(line) - n, " PROTO=%s", s->esmtp ? "ESMTP" : "SMTP");
	if (has_attr(be, "LOGIN") && s->auth) {
		xtext(v, sizeof(v), s->auth_user);
		fmt_snprintf(line + n, sizeof(line) - n, " LOGIN=%s", v);	/* the last attribute */
	}
	be->phase = BP_XCLIENT;
	be_write(be, line);
}

/* send_ehlo - EHLO with our own name. */
static void
send_ehlo(struct backend *be, enum be_phase next)
{
	char line[300];
	fmt_snprintf(line, sizeof(line), "EHLO %s", be->s->cf->hostname);
	be->phase = next;
	be_write(be, line);
}

/* be_ready - handshake done. */
static void
be_ready(struct backend *be)
{
	backend_cb *cb = be->open_cb;

	be->phase = BP_READY;
	be->open_cb = NULL;
	lazytimer_stop(&be->timer);
	if (cb)
		cb(be->s, NULL);
	if (!be->zombie)
		be_next_command(be);
}

/* be_hint - this worker's hint for the backend line in use; with
 * create, a slot for it (the oldest-numbered one recycled when full). */
static struct server_be_hint *
be_hint(struct backend *be, bool create)
{
	struct server_be_hint *h = be->s->w->be_hints;
	const char *text = be->s->cf->backends[be->idx].text;

	for (size_t i = 0; i < SERVER_BE_HINTS; i++)
		if (strcmp(h[i].text, text) == 0)
			return &h[i];
	if (!create)
		return NULL;
	for (size_t i = 0; i < SERVER_BE_HINTS; i++)
		if (h[i].text[0] == '\0') {
			h = &h[i];
			break;
		}
	memset(h, 0, sizeof(*h));
	str_copy(h->text, sizeof(h->text), text);
	return h;
}

/* be_hint_applies - may this backend line start with XCLIENT at all?
 * Only in xclient mode and without STARTTLS (that needs EHLO first). */
static bool
be_hint_applies(const struct backend *be)
{
	const struct config_backend *cb = &be->s->cf->backends[be->idx];

	return cb->mode == BACKEND_XCLIENT && !(cb->flags & BACKEND_STARTTLS);
}

/* be_hint_learn - after the first EHLO: may the next connection start
 * with XCLIENT? */
static void
be_hint_learn(struct backend *be)
{
	struct server_be_hint *h;

	if (!be_hint_applies(be))
		return;
	if (!(be->caps & BECAP_XCLIENT)) {
		if ((h = be_hint(be, false)) != NULL)
			h->xclient_attrs[0] = '\0';
		return;
	}
	if ((h = be_hint(be, true)) != NULL)
		str_copy(h->xclient_attrs, sizeof(h->xclient_attrs), be->xclient_attrs);
}

/* be_early_xclient - after the greeting: XCLIENT at once when this worker
 * already knows the backend offers it (Postfix's XCLIENT_README: "at any
 * time, except in the middle of a mail delivery transaction"). Saves one
 * round trip per connection; a refusal falls back to EHLO for good. */
static bool
be_early_xclient(struct backend *be)
{
	struct server_be_hint *h;

	if (!be_hint_applies(be) || (h = be_hint(be, false)) == NULL || h->refused ||
	    h->xclient_attrs[0] == '\0')
		return false;
	str_copy(be->xclient_attrs, sizeof(be->xclient_attrs), h->xclient_attrs);
	be->caps |= BECAP_XCLIENT;
	be->early_xclient = true;
	log_debug(be->s->id, "backend %s: XCLIENT right after the greeting", be->desc);
	send_xclient(be);
	return true;
}

/* after_ehlo - decide what the handshake does next. */
static void
after_ehlo(struct backend *be)
{
	const struct config_backend *cb = &be->s->cf->backends[be->idx];

	parse_caps(be);
	if (be->phase == BP_EHLO)
		be_hint_learn(be);
	if (be->phase == BP_EHLO && (cb->flags & BACKEND_STARTTLS)) {
		if (be->caps & BECAP_STARTTLS) {
			be->phase = BP_STARTTLS;
			be_write(be, "STARTTLS");
			return;
		}
		if (cb->flags & BACKEND_STARTTLS_REQUIRE) {
			be_next_backend(be, "STARTTLS required but not offered");
			return;
		}
	}
	if (cb->mode == BACKEND_XCLIENT && be->phase != BP_EHLO_XCLIENT) {
		if (be->caps & BECAP_XCLIENT) {
			send_xclient(be);
			return;
		}
		log_warnx(be->s->id, "backend %s does not offer XCLIENT to us "
			  "(Postfix: smtpd_authorized_xclient_hosts); going on without it", be->desc);
	}
	be_ready(be);
}

/* be_tls_event - the backend TLS handshake finished (or failed). */
static void be_event_cb(struct bufferevent *bev, short what, void *arg);
static void be_read_cb(struct bufferevent *bev, void *arg);

/* start_tls - wrap the connection after 220 to STARTTLS. */
static void
start_tls(struct backend *be)
{
	struct config *cf = be->s->cf;
	SSL *ssl = cf->backend_tls ? tls_client_ssl_new(cf->backend_tls) : NULL;

	if (!ssl) {
		be_next_backend(be, "cannot set up TLS");
		return;
	}
	/* The TLS filter reads through the socket's bufferevent. */
	be->rd = bev_direct_free(be->rd);
	bufferevent_enable(be->bev, EV_READ);
	struct bufferevent *tb = bufferevent_openssl_filter_new(be->s->w->base, be->bev, ssl,
			BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (!tb) {
		SSL_free(ssl);
		be_next_backend(be, "cannot set up TLS");
		return;
	}
	bufferevent_openssl_set_allow_dirty_shutdown(tb, 1);
	be->bev = tb;
	be->plain = false;
	be->phase = BP_TLS;
	bufferevent_setcb(tb, be_read_cb, NULL, be_event_cb, be);
	bufferevent_enable(tb, EV_READ | EV_WRITE);
	be_timer_arm(be, cf->backend_timeout);
}

/* handshake_reply - a reply during the handshake phases. */
static void
handshake_reply(struct backend *be, int code)
{
	char why[128];
	const struct config_backend *cb = &be->s->cf->backends[be->idx];

	switch (be->phase) {
	case BP_GREETING:
		if (code != 220) {
			fmt_snprintf(why, sizeof(why), "greeting %d", code);
			be_next_backend(be, why);
			return;
		}
		if (!be_early_xclient(be))
			send_ehlo(be, BP_EHLO);
		return;
	case BP_EHLO:
	case BP_EHLO_TLS:
	case BP_EHLO_XCLIENT:
		if (code != 250) {
			fmt_snprintf(why, sizeof(why), "EHLO answered %d", code);
			be_next_backend(be, why);
			return;
		}
		after_ehlo(be);
		return;
	case BP_STARTTLS:
		if (code != 220) {
			if (cb->flags & BACKEND_STARTTLS_REQUIRE) {
				be_next_backend(be, "STARTTLS refused");
				return;
			}
			/* Opportunistic: go on in plain text. */
			be->phase = BP_EHLO_TLS;
			after_ehlo(be);
			return;
		}
		start_tls(be);
		return;
	case BP_XCLIENT:
		/* Success is a new 220 greeting (some sinks say 250); then
		 * EHLO again, as the XCLIENT protocol requires. */
		if (code / 100 != 2 && be->early_xclient) {
			struct server_be_hint *h = be_hint(be, false);
			log_info(be->s->id, "backend %s: XCLIENT before EHLO answered %d; "
				 "EHLO first from now on", be->desc, code);
			if (h)
				h->refused = true;
			be->early_xclient = false;
			send_ehlo(be, BP_EHLO);
			return;
		}
		be->early_xclient = false;
		if (code / 100 != 2) {
			fmt_snprintf(why, sizeof(why), "XCLIENT answered %d", code);
			be_next_backend(be, why);
			return;
		}
		send_ehlo(be, BP_EHLO_XCLIENT);
		return;
	default:
		return;
	}
}

/* finish_cmd - deliver a reply to the command that asked. */
static void
finish_cmd(struct backend *be, int code)
{
	struct be_cmd *c = be->cur;
	size_t len = evbuffer_get_length(be->reply);
	struct backend_reply r = {
		.status = BE_OK,
		.code = code,
		.text = (const char *)evbuffer_pullup(be->reply, (ev_ssize_t)len),
		.len = len,
	};

	if (be->phase == BP_DATA) {
		if (code == 354) {
			be->phase = BP_BODY;
			evbuffer_drain(be->reply, len);
			be->reply_lines = 0;
			be_send_body(be);
			return;
		}
		/* DATA refused: that is the message's answer. */
	}
	bool data_refused = be->phase == BP_DATA;
	be->phase = BP_READY;
	be->cur = NULL;
	lazytimer_stop(&be->timer);
	if (data_refused) {
		/* The backend still holds the envelope (RFC 5321 4.1.1.4): end
		 * it before anything the callback may queue (the next MAIL). */
		struct be_cmd *rs = calloc(1, sizeof(*rs));
		if (rs && (rs->line = strdup("RSET\r\n"))) {
			rs->next = be->head;
			be->head = rs;
			if (!be->tail)
				be->tail = rs;
		} else
			free(rs);
	}
	if (c->cb)
		c->cb(be->s, &r);
	if (be->zombie) {
		if (c->headers)
			evbuffer_free(c->headers);
		free(c->line);
		free(c);
		return;
	}
	evbuffer_drain(be->reply, len);
	be->reply_lines = 0;
	if (c->headers)
		evbuffer_free(c->headers);
	free(c->line);
	free(c);
	if (be->phase == BP_READY)
		be_next_command(be);
}

static void be_read_lines(struct backend *be, struct bufferevent *bev, struct evbuffer *in);

/* be_read_cb - reply lines from the backend. */
static void
be_read_cb(struct bufferevent *bev, void *arg)
{
	struct backend *be = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	be_enter(be);
	be_read_lines(be, bev, in);
	be_leave(be);
}

/* be_read_lines - parse complete reply lines; dispatch whole replies. */
static void
be_read_lines(struct backend *be, struct bufferevent *bev, struct evbuffer *in)
{
	for (;;) {
		/* Copied out, not evbuffer_readln(): no malloc per reply line. */
		char line[BE_REPLY_LINE_MAX + 1];
		size_t eol;
		struct evbuffer_ptr p = evbuffer_search_eol(in, NULL, &eol, EVBUFFER_EOL_CRLF);
		if (p.pos < 0) {
			if (evbuffer_get_length(in) > BE_REPLY_LINE_MAX)
				goto broken;
			return;
		}
		size_t n = (size_t)p.pos;
		if (n > BE_REPLY_LINE_MAX)
			goto broken;
		evbuffer_remove(in, line, n);
		evbuffer_drain(in, eol);
		line[n] = '\0';
		if (n < 3 || !isdigit((unsigned char)line[0]) ||
		    !isdigit((unsigned char)line[1]) || !isdigit((unsigned char)line[2]) ||
		    (n > 3 && line[3] != ' ' && line[3] != '-') ||
		    ++be->reply_lines > BE_REPLY_LINES_MAX)
			goto broken;
		/* Unsolicited output outside a command: a broken peer. */
		if ((be->phase == BP_READY && !be->cur) || be->phase == BP_BODY || be->phase == BP_IDLE)
			goto broken;
		evbuffer_add(be->reply, line, n);
		evbuffer_add(be->reply, "\r\n", 2);
		bool last = n == 3 || line[3] == ' ';
		int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
		if (!last)
			continue;
		if (be->phase < BP_READY) {
			/* parse_caps reads the EHLO text before it goes. */
			handshake_reply(be, code);
			evbuffer_drain(be->reply, evbuffer_get_length(be->reply));
			be->reply_lines = 0;
		} else
			finish_cmd(be, code);
		if (be->zombie || be->phase == BP_DEAD || !be->bev || be->bev != bev)
			return;
	}
broken:
	if (be->phase < BP_READY) {
		be_next_backend(be, "broken reply");
		return;
	}
	be_fail_all(be, BE_PROTOCOL);
}

static void be_event(struct backend *be, struct bufferevent *bev, short what);

/* be_event_cb - connected, EOF, errors. */
static void
be_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct backend *be = arg;

	be_enter(be);
	be_event(be, bev, what);
	be_leave(be);
}

/* be_event - body of be_event_cb. */
static void
be_event(struct backend *be, struct bufferevent *bev, short what)
{
	if (what & BEV_EVENT_CONNECTED) {
		if (be->phase == BP_TLS) {
			be->tls = true;
			send_ehlo(be, BP_EHLO_TLS);
			return;
		}
		int one = 1;
		setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		/* Our own reads (no FIONREAD per reply); libevent's if not. */
		if ((be->rd = bev_direct_new(bev, 0)) != NULL)
			bev_direct_enable(be->rd);
		else
			bufferevent_enable(bev, EV_READ);
		be->phase = BP_GREETING;
		const struct config_backend *cb = &be->s->cf->backends[be->idx];
		if (cb->mode == BACKEND_PROXY) {
			unsigned char hdr[PROXYPROTO_V2_MAX];
			int n = proxyproto_write_v2((struct sockaddr *)&be->s->peer,
						    (struct sockaddr *)&be->s->local, hdr, sizeof(hdr));
			if (n > 0)
				be_send(be, hdr, (size_t)n);
		}
		be_timer_arm(be, be->s->cf->backend_timeout);
		return;
	}
	if (be->phase < BP_READY) {
		be_next_backend(be, (what & BEV_EVENT_EOF) ? "closed the connection" :
				    be->phase == BP_TLS ? "TLS handshake failed" : "connection failed");
		return;
	}
	be_fail_all(be, BE_LOST);
}

/* be_timer_cb - the backend kept us waiting too long. */
static void
be_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct backend *be = arg;

	if (!lazytimer_expired(&be->timer))
		return;
	be_enter(be);
	if (be->phase < BP_READY)
		be_next_backend(be, be->phase == BP_CONNECTING ? "connect timeout" : "timeout");
	else
		be_fail_all(be, BE_TIMEOUT);
	be_leave(be);
}

/* be_connect - start connecting to backend be->idx. */
static void
be_connect(struct backend *be)
{
	struct config *cf = be->s->cf;
	const struct config_backend *b = &cf->backends[be->idx];

	str_copy(be->desc, sizeof(be->desc), b->text);
	be->bev = bufferevent_socket_new(be->s->w->base, -1,
					 BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (!be->bev) {
		be_fail_all(be, BE_CONNECT_FAIL);
		return;
	}
	bufferevent_setcb(be->bev, be_read_cb, NULL, be_event_cb, be);
	/* Reading starts once connected (our own reader, be_event()). */
	bufferevent_enable(be->bev, EV_WRITE);
	be->phase = BP_CONNECTING;
	be->tls = false;
	be->plain = true;
	be_timer_arm(be, cf->backend_connect_timeout);
	if (bufferevent_socket_connect(be->bev, (struct sockaddr *)&b->addr, (int)b->addrlen) < 0) {
		/* Deferred callbacks: the error arrives through be_event_cb,
		 * unless the bufferevent refused at once. */
		if (bufferevent_getfd(be->bev) < 0)
			be_next_backend(be, "cannot connect");
	}
}

/* backend_new - a backend for session s (not yet connected). */
struct backend *
backend_new(struct smtp_session *s)
{
	struct backend *be = calloc(1, sizeof(*be));

	if (!be)
		return NULL;
	be->s = s;
	be->reply = evbuffer_new();
	int timer_ok = lazytimer_init(&be->timer, s->w->base, be_timer_cb, be);
	if (!be->reply || timer_ok < 0 || s->cf->nbackends == 0) {
		backend_free(be);
		return NULL;
	}
	return be;
}

/* backend_ready - connected and past the handshake. */
bool
backend_ready(const struct backend *be)
{
	return be && be->phase >= BP_READY && be->phase != BP_DEAD;
}

/* backend_open - connect and run the handshake; cb(s, NULL) when ready. */
void
backend_open(struct backend *be, backend_cb *cb)
{
	be->open_cb = cb;
	be->idx = 0;
	be_connect(be);
}

/* be_next_command - send the next queued command, if idle. */
static void
be_next_command(struct backend *be)
{
	if (be->cur || !be->head || be->phase != BP_READY)
		return;
	struct be_cmd *c = be->head;
	be->head = c->next;
	if (!be->head)
		be->tail = NULL;
	be->cur = c;
	/* backend_message() queues a message (msg set, no line); backend_command() a line. */
	if (c->line == NULL) {
		be->phase = BP_DATA;
		be->body_off = 0;
		be_write(be, "DATA");
		return;
	}
	be_send(be, c->line, strlen(c->line));
	be_timer_arm(be, be->s->cf->backend_timeout);
}

/* enqueue - add a command to the queue and kick it. */
static void
enqueue(struct backend *be, struct be_cmd *c)
{
	if (be->phase == BP_DEAD) {
		struct backend_reply r = { .status = BE_LOST };
		if (c->headers)
			evbuffer_free(c->headers);
		free(c->line);
		backend_cb *cb = c->cb;
		free(c);
		if (cb)
			cb(be->s, &r);
		return;
	}
	if (be->tail)
		be->tail->next = c;
	else
		be->head = c;
	be->tail = c;
	be_next_command(be);
}

/* backend_command - send one command line and read its reply. */
void
backend_command(struct backend *be, const char *line, backend_cb *cb)
{
	struct be_cmd *c = calloc(1, sizeof(*c));

	if (!c || (c->line = str_join_alloc(line, "\r\n", (char *)NULL)) == NULL) {
		free(c);
		struct backend_reply r = { .status = BE_LOST };
		if (cb)
			cb(be->s, &r);
		return;
	}
	c->cb = cb;
	enqueue(be, c);
}

/* backend_message - DATA, then headers, body and the terminator. */
void
backend_message(struct backend *be, struct evbuffer *headers, const struct message *m,
		backend_cb *cb)
{
	struct be_cmd *c = calloc(1, sizeof(*c));

	if (!c) {
		evbuffer_free(headers);
		struct backend_reply r = { .status = BE_LOST };
		cb(be->s, &r);
		return;
	}
	c->cb = cb;
	c->headers = headers;
	c->msg = m;
	enqueue(be, c);
}

/* body_write_cb - room in the output: send more of the body. */
static void
body_write_cb(struct bufferevent *bev, void *arg)
{
	struct backend *be = arg;

	be_enter(be);
	if (be->phase == BP_BODY)
		be_send_body(be);
	be_leave(be);
}

/* be_send_body - stream the spool, bounded by the output buffer. */
static void
be_send_body(struct backend *be)
{
	struct be_cmd *c = be->cur;
	struct evbuffer *out = bufferevent_get_output(be->bev);
	int fd = be->plain ? bufferevent_getfd(be->bev) : -1;

	/* On a plain socket we write ourselves while the kernel takes it
	 * (see be_send); the write event is armed only when it does not. */
	if (fd >= 0)
		bufferevent_disable(be->bev, EV_WRITE);
	if (c->headers) {
		evbuffer_add_buffer(out, c->headers);
		evbuffer_free(c->headers);
		c->headers = NULL;
	}
	for (;;) {
		while (evbuffer_get_length(out) < BE_BODY_CHUNK) {
			ssize_t n = msg_body_read(c->msg, be->body_off, out, BE_BODY_CHUNK);
			if (n < 0) {
				log_warnx(be->s->id, "cannot read the spool: %s", strerror(errno));
				be_fail_all(be, BE_LOST);
				return;
			}
			if (n == 0) {
				evbuffer_add(out, ".\r\n", 3);
				bufferevent_setcb(be->bev, be_read_cb, NULL, be_event_cb, be);
				be->phase = BP_DOT;
				be_flush(be, fd);
				be_timer_arm(be, be->s->cf->backend_timeout);
				return;
			}
			be->body_off += n;
		}
		/* Go on filling only while the kernel takes everything. */
		if (fd < 0 || smtp_evbuffer_write(out, fd) <= 0 || evbuffer_get_length(out) > 0)
			break;
	}
	/* More later, when the output drains. */
	bufferevent_setwatermark(be->bev, EV_WRITE, BE_BODY_CHUNK / 2, 0);
	bufferevent_setcb(be->bev, be_read_cb, body_write_cb, be_event_cb, be);
	be_flush(be, fd);
	be_timer_arm(be, be->s->cf->backend_timeout);
}

/* backend_free - QUIT when idle, then close; accepts NULL. Inside one of
 * our own callbacks the memory goes when that callback returns. */
void
backend_free(struct backend *be)
{
	if (!be)
		return;
	if (be->depth) {
		be->zombie = true;
		be->open_cb = NULL;
		lazytimer_kill(&be->timer);
		if (be->rd)
			bev_direct_disable(be->rd);
		if (be->bev) {
			bufferevent_disable(be->bev, EV_READ | EV_WRITE);
			bufferevent_setcb(be->bev, NULL, NULL, NULL, NULL);
		}
		return;
	}
	be_really_free(be);
}

/* be_really_free - release everything now. */
static void
be_really_free(struct backend *be)
{
	if (be->bev && !be->zombie && be->phase == BP_READY && !be->cur) {
		/* Best effort: the kernel sends it after we close. */
		if (be->plain) {
			int fd = bufferevent_getfd(be->bev);
			if (fd >= 0 && evbuffer_get_length(bufferevent_get_output(be->bev)) == 0)
				(void)send(fd, "QUIT\r\n", 6, MSG_NOSIGNAL | MSG_DONTWAIT);
		} else {
			bufferevent_write(be->bev, "QUIT\r\n", 6);
		}
	}
	be_bev_free(be);
	while (be->head) {
		struct be_cmd *c = be->head;
		be->head = c->next;
		if (c->headers)
			evbuffer_free(c->headers);
		free(c->line);
		free(c);
	}
	if (be->cur) {
		if (be->cur->headers)
			evbuffer_free(be->cur->headers);
		free(be->cur->line);
		free(be->cur);
	}
	lazytimer_free(&be->timer);
	if (be->reply)
		evbuffer_free(be->reply);
	free(be);
}

/* backend_describe - the address of the current backend. */
const char *
backend_describe(const struct backend *be)
{
	return be->desc[0] ? be->desc : "-";
}
