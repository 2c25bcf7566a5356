/*
 * smtp_session.c - the server side of one SMTP connection.
 *
 * One command table drives the session, as in OpenSMTPD: each command is
 * split into check (syntax and order; answers 5xx itself), the policy
 * stage (possibly waiting on the check pool), and proceed (forward to the
 * backend in lockstep, or answer). Commands are taken one at a time from
 * the input buffer, so pipelined replies come out in order and leave in
 * as few writes as the event loop allows. The DATA phase and the end of a
 * transaction live in smtp_data.c.
 *
 * Public:
 *   smtp_session_start(), smtp_session_shutdown(), smtp_session_describe(),
 *   smtp_session_ref(), smtp_session_unref(), smtp_state_name(),
 *   smtp_out_handover(), smtp_flush_setup(), smtp_flush_cleanup(),
 *   smtp_evbuffer_write()
 */

/* System. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

/* Library. */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>

/* Project. */
#include "backend.h"
#include "bev_direct.h"
#include "config.h"
#include "fmt.h"
#include "lists.h"
#include "log.h"
#include "message.h"
#include "policy.h"
#include "proxyproto.h"
#include "server.h"
#include "smtp_internal.h"
#include "smtp_reply.h"
#include "smtp_session.h"
#include "stats.h"
#include "strcopy.h"

/* Stop taking commands while this much output waits for the client. */
#define SMTP_OUTPUT_HIGH  (64 * 1024)
/* Bytes read ahead from the client before libevent stops reading. */
#define SMTP_INPUT_HIGH   (256 * 1024)

static void session_loop(struct smtp_session *s);
static void write_cb(struct bufferevent *bev, void *arg);
static void session_timer_arm(struct smtp_session *s);
static void greeting_policy_done(struct smtp_session *s, const struct policy_verdict *v);

/* The command table: check, then the policy stage, then proceed. */
struct smtp_command {
	enum smtp_verb verb;
	const char *name;
	int stage;                                   /* enum policy_stage, -1 = none */
	int (*check)(struct smtp_session *, const char *arg);   /* 0 = go on */
	void (*proceed)(struct smtp_session *);
};

static int check_helo(struct smtp_session *, const char *);
static int check_mail(struct smtp_session *, const char *);
static int check_rcpt(struct smtp_session *, const char *);
static int check_data(struct smtp_session *, const char *);
static int check_bdat(struct smtp_session *, const char *);
static void proceed_bdat(struct smtp_session *);
static int check_noarg(struct smtp_session *, const char *);
static void proceed_helo(struct smtp_session *);
static void proceed_mail(struct smtp_session *);
static void proceed_rcpt(struct smtp_session *);
static void proceed_rset(struct smtp_session *);
static void proceed_noop(struct smtp_session *);
static void proceed_quit(struct smtp_session *);
static void proceed_help(struct smtp_session *);
static void proceed_vrfy(struct smtp_session *);
static void proceed_expn(struct smtp_session *);
static void proceed_etrn(struct smtp_session *);

static const struct smtp_command commands[] = {
	{ SMTP_HELO, "helo", PS_HELO, check_helo, proceed_helo },
	{ SMTP_EHLO, "ehlo", PS_HELO, check_helo, proceed_helo },
	{ SMTP_MAIL, "mail", PS_MAIL, check_mail, proceed_mail },
	{ SMTP_RCPT, "rcpt", PS_RCPT, check_rcpt, proceed_rcpt },
	{ SMTP_DATA, "data", PS_DATA, check_data, smtp_data_start },
	/* BDAT runs the data stage itself, for its first chunk only. */
	{ SMTP_BDAT, "bdat", -1, check_bdat, proceed_bdat },
	{ SMTP_RSET, "rset", -1, check_noarg, proceed_rset },
	{ SMTP_NOOP, "noop", -1, NULL, proceed_noop },
	{ SMTP_QUIT, "quit", -1, NULL, proceed_quit },
	{ SMTP_HELP, "help", -1, NULL, proceed_help },
	{ SMTP_VRFY, "vrfy", -1, NULL, proceed_vrfy },
	{ SMTP_EXPN, "expn", -1, NULL, proceed_expn },
	{ SMTP_ETRN, "etrn", -1, NULL, proceed_etrn },
	{ SMTP_STARTTLS, "starttls", -1, smtp_tls_check, smtp_tls_proceed },
	{ SMTP_AUTH, "auth", -1, smtp_auth_check, smtp_auth_proceed },
};

/* smtp_state_name - for `show sessions`. */
const char *
smtp_state_name(enum smtp_state st)
{
	static const char *names[] = { "proxy", "greeting", "command", "data", "bdat", "auth", "tls",
				       "closing" };
	return names[st];
}

/*
 * Replies on a plain socket are written by us, not by the bufferevent:
 * handing each reply to it would arm the write event and disarm it once
 * drained, two epoll_ctl calls per reply. Replies made during one round
 * of the event loop go out together (RFC 2920 batching) when the
 * worker's flush event runs at the end of that round; only what the
 * kernel does not take is left to the bufferevent, whose write timeout
 * then applies.
 */

/* smtp_evbuffer_write - write a socket bufferevent's output to its fd.
 * The bufferevent keeps the start of its output frozen, to be drained
 * only by its own write callback; we drain it the same way. */
ssize_t
smtp_evbuffer_write(struct evbuffer *out, int fd)
{
	struct evbuffer_iovec v[2];
	ssize_t n;

	evbuffer_unfreeze(out, 1);
	/* One piece (a round's replies, usually): send(), which costs the
	 * kernel less than the writev() evbuffer_write() always makes. */
	if (evbuffer_peek(out, -1, NULL, v, 2) == 1) {
		n = send(fd, v[0].iov_base, v[0].iov_len, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n > 0)
			evbuffer_drain(out, (size_t)n);
	} else {
		n = evbuffer_write(out, fd);
	}
	evbuffer_freeze(out, 1);
	return n;
}

/* out_write - write the queued replies now; the rest to the bufferevent. */
static void
out_write(struct smtp_session *s)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);
	int fd = bufferevent_getfd(s->bev);

	if (evbuffer_get_length(out) > 0 && fd >= 0)
		(void)smtp_evbuffer_write(out, fd);
	if (evbuffer_get_length(out) > 0)
		bufferevent_enable(s->bev, EV_WRITE);
	else if (s->out_direct)
		/* What the bufferevent would do after a write: unblock. */
		write_cb(s->bev, s);
}

/* out_queued - a reply was queued: have it written this round. */
static void
out_queued(struct smtp_session *s)
{
	struct worker *w = s->w;

	if (!s->out_direct) {
		/* Handed over with nothing left (closing): arm it again. */
		if (!(bufferevent_get_enabled(s->bev) & EV_WRITE))
			bufferevent_enable(s->bev, EV_WRITE);
		return;
	}
	if (s->flush_queued)
		return;
	s->flush_queued = true;
	smtp_session_ref(s);
	if (!w->flush_list)
		event_active(w->flush_ev, EV_TIMEOUT, 0);
	s->flush_next = w->flush_list;
	w->flush_list = s;
}

/* smtp_out_handover - the bufferevent reads and writes from now on (STARTTLS, close). */
void
smtp_out_handover(struct smtp_session *s)
{
	if (s->rd) {
		/* A TLS filter reads through the socket's bufferevent. */
		s->rd = bev_direct_free(s->rd);
		if (!s->out_blocked)
			bufferevent_enable(s->bev, EV_READ);
	}
	if (!s->out_direct)
		return;
	s->out_direct = false;
	out_write(s);
}

/* read_on - take input from the client again. */
static void
read_on(struct smtp_session *s)
{
	if (s->rd)
		bev_direct_enable(s->rd);
	else
		bufferevent_enable(s->bev, EV_READ);
}

/* read_off - take no input from the client for now. */
static void
read_off(struct smtp_session *s)
{
	if (s->rd)
		bev_direct_disable(s->rd);
	else
		bufferevent_disable(s->bev, EV_READ);
}

/* flush_cb - the end of a round: write every session's replies. */
static void
flush_cb(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	struct smtp_session *list = w->flush_list;

	(void)fd;
	(void)what;
	/* The round's log lines first (log_batch_begin()): a line about a
	 * reply ("accepted: ...") is on record before the client has it. */
	log_flush();
	w->flush_list = NULL;
	while (list) {
		struct smtp_session *s = list;
		list = s->flush_next;
		s->flush_queued = false;
		if (!s->closed && s->bev && s->out_direct)
			out_write(s);
		/* The list's reference (out_queued()) kept s allocated. */
		smtp_session_unref(s); // NOLINT(clang-analyzer-unix.Malloc)
	}
	/* And those the replies' callbacks logged meanwhile. */
	log_flush();
}

/* smtp_flush_arm - have the worker's flush event run at the end of this
 * round (log.c calls it for the round's first log line). */
void
smtp_flush_arm(void *arg)
{
	struct worker *w = arg;

	if (w->flush_ev)
		event_active(w->flush_ev, EV_TIMEOUT, 0);
}

/* smtp_flush_setup - the worker's flush event. */
int
smtp_flush_setup(struct worker *w)
{
	w->flush_list = NULL;
	w->flush_ev = event_new(w->base, -1, 0, flush_cb, w);
	return w->flush_ev ? 0 : -1;
}

/* smtp_flush_cleanup - release the flush event and what waits on it. */
void
smtp_flush_cleanup(struct worker *w)
{
	while (w->flush_list) {
		struct smtp_session *s = w->flush_list;
		w->flush_list = s->flush_next;
		s->flush_queued = false;
		smtp_session_unref(s);
	}
	if (w->flush_ev)
		event_free(w->flush_ev);
	w->flush_ev = NULL;
}

/* smtp_reply - queue one reply line; replies leave in order. */
void
smtp_reply(struct smtp_session *s, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n;

	if (s->closed)
		return;
	va_start(ap, fmt);
	n = fmt_vsnprintf(line, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (n > (int)sizeof(line) - 3)
		n = sizeof(line) - 3;
	line[n++] = '\r';
	line[n++] = '\n';
	bufferevent_write(s->bev, line, n);
	out_queued(s);
}

/* smtp_reply_id - queue a reply from the table. */
void
smtp_reply_id(struct smtp_session *s, enum smtp_reply_id id)
{
	if (id == RPL_TIMEOUT)
		smtp_reply(s, smtp_reply_text(id), s->cf->hostname);
	else
		smtp_reply(s, "%s", smtp_reply_text(id));
}

/* smtp_reply_raw - relay a (multi-line) backend reply as it came. */
void
smtp_reply_raw(struct smtp_session *s, const char *text, size_t len)
{
	if (!s->closed) {
		bufferevent_write(s->bev, text, len);
		out_queued(s);
	}
}

/* smtp_error - a refused command: count it, and close past max_errors. */
void
smtp_error(struct smtp_session *s, enum smtp_reply_id id)
{
	smtp_reply_id(s, id);
	if (++s->errors >= s->cf->max_errors) {
		log_info(s->id, "too many errors from %s[%s]", s->client_name, s->client_ip);
		smtp_reply_id(s, RPL_TOO_MANY_ERRORS);
		smtp_close(s);
	}
}

/* closing_write_cb - the last reply left; drop the connection. */
static void
closing_write_cb(struct bufferevent *bev, void *arg)
{
	struct smtp_session *s = arg;
	struct bufferevent *under = bufferevent_get_underlying(s->bev);

	if (evbuffer_get_length(bufferevent_get_output(s->bev)) > 0)
		return;
	if (under && evbuffer_get_length(bufferevent_get_output(under)) > 0) {
		/* After STARTTLS the TLS filter has already encrypted the last
		 * reply into the socket's bufferevent below it: freeing now
		 * would lose it (the 221 to QUIT, a 421). Wait for that one. */
		if (bev != under) {
			struct timeval tv = { 10, 0 };
			bufferevent_setcb(under, NULL, closing_write_cb, smtp_event_cb, s);
			bufferevent_disable(under, EV_READ);
			bufferevent_set_timeouts(under, NULL, &tv);
		}
		return;
	}
	smtp_drop(s);
}

/* smtp_close - send what is queued, then close. */
void
smtp_close(struct smtp_session *s)
{
	if (s->closed || s->state == SS_CLOSING)
		return;
	s->state = SS_CLOSING;
	s->busy = true;
	lazytimer_kill(&s->timer);
	/* Nothing more is read: no point handing reading over first. */
	s->rd = bev_direct_free(s->rd);
	smtp_out_handover(s);
	bufferevent_disable(s->bev, EV_READ);
	bufferevent_setcb(s->bev, NULL, closing_write_cb, smtp_event_cb, s);
	/* A client that does not read its last reply must not hold us. */
	struct timeval tv = { 10, 0 };
	bufferevent_set_timeouts(s->bev, NULL, &tv);
	closing_write_cb(s->bev, s);
}

/* smtp_drop - the connection is finished: log, release, free when idle. */
void
smtp_drop(struct smtp_session *s)
{
	struct worker *w = s->w;

	if (s->closed)
		return;
	s->closed = true;
	/* A check-pool job still reads the transaction: it frees it later. */
	if (!policy_busy(s))
		smtp_txn_end(s, false);
	lazytimer_kill(&s->timer);
	s->rd = bev_direct_free(s->rd);
	if (s->bev) {
		bufferevent_free(s->bev);
		s->bev = NULL;
	}
	s->be = (backend_free(s->be), NULL);
	log_info(s->id, "disconnect from %s[%s]", s->client_name, s->client_ip);
	stats_gauge_add(w->stats, STATS_CONNECTIONS_ACTIVE, -1);
	if (s->ip_counted)
		server_ip_release(w->srv, (struct sockaddr *)&s->peer);
	__atomic_sub_fetch(&w->srv->sessions, 1, __ATOMIC_RELAXED);
	pthread_mutex_lock(&w->lock);
	if (s->prev)
		s->prev->next = s->next;
	else
		w->sessions = s->next;
	if (s->next)
		s->next->prev = s->prev;
	w->nsessions--;
	pthread_mutex_unlock(&w->lock);
	smtp_session_unref(s);
}

/* smtp_session_ref - keep the session across async work. */
void
smtp_session_ref(struct smtp_session *s)
{
	s->refs++;
}

/* smtp_session_unref - free on the last reference. */
void
smtp_session_unref(struct smtp_session *s)
{
	if (--s->refs > 0)
		return;
	policy_session_free(s);
	smtp_auth_free(s);
	lazytimer_free(&s->timer);
	config_unref(s->cf);
	free(s);
}

/* smtp_event_cb - EOF, errors and timeouts on the client connection. */
void
smtp_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct smtp_session *s = arg;

	if (what & BEV_EVENT_CONNECTED) {
		smtp_tls_connected(s);
		return;
	}
	if (what & BEV_EVENT_TIMEOUT)
		log_info(s->id, "timeout writing to %s[%s]", s->client_name, s->client_ip);
	else if ((what & BEV_EVENT_ERROR) && !s->tls && s->state != SS_CLOSING &&
		 (s->state == SS_TLS || (s->li->conf.flags & LISTEN_TLS))) {
		smtp_tls_failed(s, bev);
		return;
	} else if (what & BEV_EVENT_EOF && s->state != SS_CLOSING && s->txn)
		log_info(s->id, "lost connection after %s from %s[%s]",
			 s->state == SS_DATA ? "DATA" : s->state == SS_BDAT ? "BDAT" : "command", s->client_name, s->client_ip);
	smtp_drop(s);
}

/* timer_cb - the client was silent for too long. */
static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_session *s = arg;

	if (!lazytimer_expired(&s->timer))
		return;

	if (s->state == SS_PROXY) {
		log_info(s->id, "timeout waiting for the PROXY header from [%s]", s->client_ip);
		smtp_drop(s);
		return;
	}
	if (s->state == SS_GREETING) {
		/* Pregreet wait over: the client stayed silent, as it should. */
		policy_run(s, PS_CONNECT, greeting_policy_done);
		return;
	}
	log_info(s->id, "timeout after %s from %s[%s]", s->state == SS_DATA ? "DATA" : s->state == SS_BDAT ? "BDAT" : "command",
		 s->client_name, s->client_ip);
	if (s->txn)
		s->txn->last_refusal = 421;
	smtp_reply_id(s, RPL_TIMEOUT);
	smtp_close(s);
}

/* session_timer_arm - wait for the client: client_timeout or data_timeout. */
static void
session_timer_arm(struct smtp_session *s)
{
	bool data = s->state == SS_DATA || s->state == SS_BDAT;
	lazytimer_set(&s->timer, (data ? s->cf->data_timeout : s->cf->client_timeout) * 1000u);
}

/* write_cb - output drained below the mark: take commands again. */
static void
write_cb(struct bufferevent *bev, void *arg)
{
	struct smtp_session *s = arg;

	if (s->out_blocked) {
		/* The client read its replies: listen to it again. */
		s->out_blocked = false;
		read_on(s);
	}
	if (s->out_direct && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		/* Drained: back to writing replies ourselves. */
		bufferevent_disable(bev, EV_WRITE);
	if (!s->busy)
		session_loop(s);
}

/* read_cb - bytes from the client. */
static void
read_cb(struct bufferevent *bev, void *arg)
{
	struct smtp_session *s = arg;

	if (s->state == SS_GREETING) {
		/* Talking before the banner: postscreen's pregreet test. */
		log_info(s->id, "reject: pregreet from %s[%s]", s->client_name, s->client_ip);
		smtp_reply_id(s, RPL_PREGREET);
		smtp_close(s);
		return;
	}
	session_loop(s);
}

/* find_command - the table row for a verb. */
static const struct smtp_command *
find_command(enum smtp_verb v)
{
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (commands[i].verb == v)
			return &commands[i];
	return NULL;
}

/* command_policy_done - a command's policy stage decided. */
static void
command_policy_done(struct smtp_session *s, const struct policy_verdict *v)
{
	const struct smtp_command *c = find_command(s->pending_verb);

	if (s->closed)
		return;
	if (v->action == POLICY_REJECT || v->action == POLICY_TEMPFAIL) {
		smtp_policy_refuse(s, c->stage, v);
		smtp_resume(s);
		return;
	}
	/* discard at mail, rcpt or data drops the whole message (milter semantics). */
	if (v->action == POLICY_DISCARD && s->txn)
		s->txn->discard = true;
	c->proceed(s);
}

/* run_command - dispatch one complete command line. */
static void
run_command(struct smtp_session *s, char *line, size_t len)
{
	struct smtp_cmd cmd;

	/* Trailing white space is noise some clients add. */
	while (len && (line[len - 1] == ' ' || line[len - 1] == '\t'))
		line[--len] = '\0';
	if (smtp_cmd_parse(line, len, &cmd) < 0) {
		smtp_error(s, RPL_BAD_CHAR);
		return;
	}
	if (cmd.verb == SMTP_HTTP) {
		log_info(s->id, "reject: HTTP command from %s[%s]", s->client_name, s->client_ip);
		smtp_reply_id(s, RPL_HTTP);
		smtp_close(s);
		return;
	}
	const struct smtp_command *c = find_command(cmd.verb);
	if (!c) {
		smtp_error(s, RPL_UNKNOWN_CMD);
		return;
	}
	s->pending_verb = cmd.verb;
	s->ncommands++;
	if (c->check && c->check(s, cmd.arg) != 0)
		return;
	s->busy = true;
	if (c->stage >= 0)
		policy_run(s, (enum policy_stage)c->stage, command_policy_done);
	else
		c->proceed(s);
}

/* smtp_resume - a command finished; go on with the input. */
void
smtp_resume(struct smtp_session *s)
{
	if (s->closed || s->state == SS_CLOSING)
		return;
	s->busy = false;
	session_loop(s);
}

/* session_loop - take commands from the input while nothing is pending.
 * Trampolined: a command that completes synchronously does not recurse. */
static void
session_loop(struct smtp_session *s)
{
	if (s->in_loop) {
		s->again = true;
		return;
	}
	s->in_loop = true;
	bool progress = false;
	smtp_session_ref(s);
	do {
		s->again = false;
		/* s stays allocated: the reference taken above outlives any smtp_drop(). */
		while (!s->busy && !s->closed && s->state != SS_CLOSING) { // NOLINT(clang-analyzer-unix.Malloc)
			struct evbuffer *in = bufferevent_get_input(s->bev);
			struct evbuffer *out = bufferevent_get_output(s->bev);
			if (evbuffer_get_length(out) > SMTP_OUTPUT_HIGH) {
				/* A client that pipelines without reading: stop
				 * reading it (the kernel's window pushes back) until
				 * write_cb sees the output drain; the write timeout
				 * cuts it off if it never does. */
				s->out_blocked = true;
				read_off(s);
				break;
			}
			if (s->state == SS_PROXY) {
				smtp_proxy_input(s);
				continue;
			}
			size_t avail = evbuffer_get_length(in);
			if (avail == 0)
				break;
			if (s->state == SS_DATA) {
				/* data_timeout is per block read (RFC 5321 4.5.3.2.6). */
				smtp_data_input(s);
				progress = true;
				continue;
			}
			if (s->state == SS_BDAT) {
				smtp_bdat_input(s);
				progress = true;
				continue;
			}
			size_t want = avail < SMTP_LINE_MAX ? avail : SMTP_LINE_MAX;
			char *buf = (char *)evbuffer_pullup(in, (ev_ssize_t)want);
			size_t linelen, termlen;
			if (s->skip_line) {
				/* The rest of an overlong line: not a command, so
				 * it does not restart the command timeout. */
				char *lf = memchr(buf, '\n', want);
				evbuffer_drain(in, lf ? (size_t)(lf - buf + 1) : want);
				if (lf) {
					s->skip_line = false;
					progress = true;
				}
				continue;
			}
			enum smtp_line_status ls = smtp_line_find(buf, want, &linelen, &termlen);
			if (ls == SMTP_LINE_MORE)
				break;
			if (ls == SMTP_LINE_TOO_LONG) {
				evbuffer_drain(in, want);
				s->skip_line = true;
				smtp_error(s, RPL_LINE_TOO_LONG);
				continue;
			}
			char line[SMTP_LINE_MAX + 1];
			memcpy(line, buf, linelen);
			line[linelen] = '\0';
			evbuffer_drain(in, linelen + termlen);
			progress = true;
			if (s->state == SS_AUTH)
				smtp_auth_line(s, line, linelen);
			else
				run_command(s, line, linelen);
		}
	} while (s->again && !s->closed);
	s->in_loop = false;
	if (!s->closed) {
		if (s->rd)
			bev_direct_check(s->rd);
		if (s->busy || s->state == SS_CLOSING || s->out_blocked)
			lazytimer_stop(&s->timer);
		else if (progress || !lazytimer_running(&s->timer))
			/* Per command: bytes of an unfinished line do not
			 * restart it (a line without end is cut off). */
			session_timer_arm(s);
	}
	smtp_session_unref(s);
}

/* send_banner - the 220 greeting, once the connect stage passed. */
static void
send_banner(struct smtp_session *s)
{
	s->state = SS_CMD;
	smtp_reply(s, "220 %s ESMTP ravelin", s->cf->hostname);
	smtp_resume(s);
}

/* greeting_policy_done - the connect stage decided. */
static void
greeting_policy_done(struct smtp_session *s, const struct policy_verdict *v)
{
	if (s->closed)
		return;
	/* Logged once the client's name is known (the connect stage looks it up). */
	log_info(s->id, "connect from %s[%s] listener=%s", s->client_name, s->client_ip,
		 config_profile_name(s->li->conf.profile));
	if (v->action == POLICY_REJECT || v->action == POLICY_TEMPFAIL) {
		/* As postscreen: the refusal replaces the banner, then close. */
		log_info(s->id, "reject: CONNECT from %s[%s]: %s; rule=%s", s->client_name, s->client_ip,
			 v->reply, v->rule);
		smtp_reply(s, "%s", v->reply);
		smtp_close(s);
		return;
	}
	send_banner(s);
}

/* start_greeting - after the PROXY header (if any): log, limits, banner. */
void
smtp_greet(struct smtp_session *s)
{
	struct server *srv = s->w->srv;

	smtp_addr_format(s);
	if (!server_ip_acquire(srv, (struct sockaddr *)&s->peer, s->cf->max_sessions_per_ip)) {
		log_info(s->id, "reject: too many connections from %s[%s]", s->client_name, s->client_ip);
		smtp_reply_id(s, RPL_TOO_MANY_FROM_IP);
		smtp_close(s);
		return;
	}
	s->ip_counted = true;
	s->state = SS_GREETING;
	s->busy = true;
	if (s->cf->pregreet_ms) {
		lazytimer_set(&s->timer, s->cf->pregreet_ms);
		return;
	}
	policy_run(s, PS_CONNECT, greeting_policy_done);
}

/* smtp_addr_format - client_ip / client_port from the peer address. */
void
smtp_addr_format(struct smtp_session *s)
{
	const struct sockaddr *sa = (const struct sockaddr *)&s->peer;

	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)sa;
		if (IN6_IS_ADDR_V4MAPPED(&a6->sin6_addr)) {
			/* Treated as IPv4 everywhere (DESIGN.md section 11). */
			struct sockaddr_in a4;
			memset(&a4, 0, sizeof(a4));
			a4.sin_family = AF_INET;
			a4.sin_port = a6->sin6_port;
			memcpy(&a4.sin_addr, &a6->sin6_addr.s6_addr[12], 4);
			memset(&s->peer, 0, sizeof(s->peer));
			memcpy(&s->peer, &a4, sizeof(a4));
		}
	}
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *a4 = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &a4->sin_addr, s->client_ip, sizeof(s->client_ip));
		s->client_port = ntohs(a4->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)sa;
		inet_ntop(AF_INET6, &a6->sin6_addr, s->client_ip, sizeof(s->client_ip));
		s->client_port = ntohs(a6->sin6_port);
	} else {
		strcpy(s->client_ip, "unknown");
	}
	strcpy(s->client_name, "unknown");
}

/* smtp_proxy_input - read the PROXY v1/v2 header before anything else. */
void
smtp_proxy_input(struct smtp_session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	size_t avail = evbuffer_get_length(in);
	struct proxyproto_result res;
	const char *why = "";

	if (avail == 0) {
		/* Nothing yet: wait for more (the loop stops on busy). */
		s->busy = true;
		s->proxy_wait = true;
		return;
	}
	size_t want = avail < PROXYPROTO_V2_MAX ? avail : PROXYPROTO_V2_MAX;
	const unsigned char *buf = evbuffer_pullup(in, (ev_ssize_t)want);
	switch (proxyproto_parse(buf, want, &res, &why)) {
	case PROXYPROTO_NEED_MORE:
		s->busy = true;
		s->proxy_wait = true;
		return;
	case PROXYPROTO_ERROR:
		log_info(s->id, "reject: bad PROXY header from [%s]: %s", s->client_ip, why);
		smtp_drop(s);
		return;
	case PROXYPROTO_DONE:
		break;
	}
	evbuffer_drain(in, res.consumed);
	s->proxy_wait = false;
	if (!res.local) {
		memcpy(&s->peer, &res.src, sizeof(s->peer));
		memcpy(&s->local, &res.dst, sizeof(s->local));
	}
	lazytimer_kill(&s->timer);
	smtp_greet(s);
}

/* proxy_read_cb - more header bytes arrived. */
static void
proxy_read_cb(struct bufferevent *bev, void *arg)
{
	struct smtp_session *s = arg;

	if (s->state == SS_PROXY && s->proxy_wait) {
		s->busy = false;
		smtp_proxy_input(s);
		return;
	}
	read_cb(bev, arg);
}

/* smtp_bev_install - make bev the session's connection (after STARTTLS too). */
void
smtp_bev_install(struct smtp_session *s, struct bufferevent *bev)
{
	s->bev = bev;
	bufferevent_setcb(bev, proxy_read_cb, write_cb, smtp_event_cb, s);
	bufferevent_setwatermark(bev, EV_READ, 0, SMTP_INPUT_HIGH);
	bufferevent_setwatermark(bev, EV_WRITE, SMTP_OUTPUT_HIGH / 2, 0);
	/* Replies the client does not take within client_timeout: gone. */
	struct timeval wt = { s->cf->client_timeout, 0 };
	bufferevent_set_timeouts(bev, NULL, &wt);
	s->out_direct = bufferevent_get_underlying(bev) == NULL &&
			bufferevent_openssl_get_ssl(bev) == NULL;
	if (s->out_direct) {
		/* Enabled from birth: would arm itself on every reply. */
		bufferevent_disable(bev, EV_WRITE);
		/* Our own reads where we can; libevent's if not. */
		if (!s->rd)
			s->rd = bev_direct_new(bev, SMTP_INPUT_HIGH);
		read_on(s);
	} else {
		bufferevent_enable(bev, EV_READ | EV_WRITE);
	}
}

/* smtp_session_start - take over an accepted socket on worker w. */
void
smtp_session_start(struct worker *w, const struct server_listener *li, int fd,
		   const struct sockaddr *sa, socklen_t salen)
{
	struct server *srv = w->srv;
	struct smtp_session *s = calloc(1, sizeof(*s));
	int one = 1;

	if (!s) {
		close(fd);
		return;
	}
	s->w = w;
	s->li = li;
	s->cf = server_config(srv);
	s->refs = 1;
	s->fd = fd;
	s->started = time(NULL);
	unsigned long seq = __atomic_add_fetch(&srv->session_seq, 1, __ATOMIC_RELAXED);
	fmt_snprintf(s->id, sizeof(s->id), "%08lX", (seq * 2654435761UL + (unsigned long)srv->started) & 0xffffffffUL);
	memcpy(&s->peer, sa, salen < sizeof(s->peer) ? salen : sizeof(s->peer));
	socklen_t ll = sizeof(s->local);
	getsockname(fd, (struct sockaddr *)&s->local, &ll);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	smtp_addr_format(s);

	stats_inc(w->stats, STATS_CONNECTIONS_TOTAL);
	stats_gauge_add(w->stats, STATS_CONNECTIONS_ACTIVE, 1);
	unsigned n = __atomic_add_fetch(&srv->sessions, 1, __ATOMIC_RELAXED);
	pthread_mutex_lock(&w->lock);
	s->next = w->sessions;
	if (s->next)
		s->next->prev = s;
	w->sessions = s;
	w->nsessions++;
	pthread_mutex_unlock(&w->lock);

	int timer_ok = lazytimer_init(&s->timer, w->base, timer_cb, s);
	s->bev = smtp_tls_wrap(s, fd);
	if (timer_ok < 0 || !s->bev) {
		log_warnx(s->id, "cannot set up a session for [%s]", s->client_ip);
		if (!s->bev)
			close(fd);
		s->closed = false;
		smtp_drop(s);
		return;
	}
	smtp_bev_install(s, s->bev);

	int stopping = __atomic_load_n(&srv->stopping, __ATOMIC_ACQUIRE);
	if (n > s->cf->max_sessions || stopping) {
		log_info(s->id, "reject: too many connections (%u) from [%s]", n, s->client_ip);
		smtp_reply_id(s, stopping ? RPL_SHUTDOWN : RPL_TOO_MANY_SESSIONS);
		smtp_close(s);
		return;
	}
	if (li->conf.flags & LISTEN_PROXY_PROTOCOL) {
		s->state = SS_PROXY;
		s->busy = true;
		s->proxy_wait = true;
		lazytimer_set(&s->timer, (s->cf->client_timeout < 10 ? s->cf->client_timeout : 10) * 1000u);
		return;
	}
	smtp_greet(s);
}

/* smtp_session_shutdown - the daemon stops: 421 and close. */
void
smtp_session_shutdown(struct smtp_session *s)
{
	if (s->closed || s->state == SS_CLOSING)
		return;
	log_info(s->id, "shutdown: closing session with %s[%s]", s->client_name, s->client_ip);
	if (s->txn)
		s->txn->last_refusal = 421;     /* counts as tempfailed (DESIGN.md 11) */
	smtp_reply_id(s, RPL_SHUTDOWN);
	smtp_close(s);
}

/* smtp_session_describe - one line for `show sessions`. Call it only on
 * the session's own worker loop (server.c posts the request there): the
 * fields it reads change on that loop without a lock. */
void
smtp_session_describe(const struct smtp_session *s, char *buf, size_t len)
{
	/* Until the connect stage is over a check-pool thread may be writing
	 * the PTR name; the loop still knows it as "unknown". */
	const char *name = s->state == SS_GREETING ? "unknown" : s->client_name;

	fmt_snprintf(buf, len, "%s %s[%s]:%u %s %s age=%lds helo=%s%s%s", s->id, name,
		 s->client_ip, s->client_port, config_profile_name(s->li->conf.profile),
		 smtp_state_name(s->state), (long)(time(NULL) - s->started),
		 s->helo[0] ? s->helo : "-", s->auth ? " user=" : "", s->auth ? s->auth_user : "");
}

/* ---- HELO / EHLO ---- */

/* check_helo - a hostname or address literal is required. */
static int
check_helo(struct smtp_session *s, const char *arg)
{
	if (!*arg || strchr(arg, ' ') || strlen(arg) >= sizeof(s->helo)) {
		smtp_error(s, RPL_SYNTAX_HELO);
		return -1;
	}
	/* EHLO/HELO resets the transaction (RFC 5321 4.1.4). */
	smtp_txn_abort(s);
	/* The backend learnt the old name through XCLIENT: a new connection
	 * at the next MAIL tells it the new one. */
	if (s->be && strcmp(s->helo, arg) != 0)
		s->be = (backend_free(s->be), NULL);
	str_copy(s->helo, sizeof(s->helo), arg);
	s->esmtp = s->pending_verb == SMTP_EHLO;
	return 0;
}

/* proceed_helo - 250, with our extensions for EHLO. */
static void
proceed_helo(struct smtp_session *s)
{
	unsigned caps = __atomic_load_n(&s->w->srv->becaps, __ATOMIC_RELAXED);
	bool known = caps & BECAP_KNOWN;

	if (!s->esmtp) {
		smtp_reply(s, "250 %s", s->cf->hostname);
		smtp_resume(s);
		return;
	}
	smtp_reply(s, "250-%s", s->cf->hostname);
	smtp_reply(s, "250-PIPELINING");
	smtp_reply(s, "250-SIZE %zu", s->cf->max_message_size);
	if (smtp_tls_offer(s))
		smtp_reply(s, "250-STARTTLS");
	smtp_auth_offer(s);
	smtp_reply(s, "250-ENHANCEDSTATUSCODES");
	/* The backend gets DATA whatever the client used: no backend check. */
	smtp_reply(s, "250-CHUNKING");
	/* Extensions that change what reaches the backend are announced only
	 * when the backend has them too. */
	if (!known || (caps & BECAP_8BITMIME))
		smtp_reply(s, "250-8BITMIME");
	if (!known || (caps & BECAP_DSN))
		smtp_reply(s, "250-DSN");
	if (!known || (caps & BECAP_SMTPUTF8))
		smtp_reply(s, "250-SMTPUTF8");
	smtp_reply(s, "250 HELP");
	smtp_resume(s);
}

/* ---- MAIL ---- */

/* mail_params - validate MAIL parameters and build the forwarded ones. */
static int
mail_params(struct smtp_session *s, struct smtp_path *p, char *fwd, size_t fwdlen)
{
	unsigned caps = __atomic_load_n(&s->w->srv->becaps, __ATOMIC_RELAXED);
	bool smtputf8 = false;
	size_t n = 0;

	fwd[0] = '\0';
	for (size_t i = 0; i < p->nparams; i++) {
		const char *k = p->params[i].key, *v = p->params[i].value;
		bool pass = true;
		if (strcasecmp(k, "SIZE") == 0) {
			char *end;
			if (!v || !*v)
				return RPL_PARAM_SYNTAX;
			errno = 0;
			unsigned long long sz = strtoull(v, &end, 10);
			if (*end || errno || *v == '-')
				return RPL_PARAM_SYNTAX;
			if (sz > s->cf->max_message_size)
				return RPL_TOO_BIG_DECLARED;
			pass = !(caps & BECAP_KNOWN) || (caps & BECAP_SIZE);
		} else if (strcasecmp(k, "BODY") == 0) {
			if (!v || (strcasecmp(v, "7BIT") != 0 && strcasecmp(v, "8BITMIME") != 0))
				return RPL_PARAM_UNKNOWN;
			/* Only what EHLO offered; the backend would refuse it anyway. */
			pass = !(caps & BECAP_KNOWN) || (caps & BECAP_8BITMIME);
			if (!pass && strcasecmp(v, "8BITMIME") == 0)
				return RPL_PARAM_UNKNOWN;
		} else if (strcasecmp(k, "SMTPUTF8") == 0) {
			if (v)
				return RPL_PARAM_SYNTAX;
			if ((caps & BECAP_KNOWN) && !(caps & BECAP_SMTPUTF8))
				return RPL_PARAM_UNKNOWN;
			smtputf8 = true;
		} else if (strcasecmp(k, "RET") == 0) {
			if (!v || (strcasecmp(v, "FULL") != 0 && strcasecmp(v, "HDRS") != 0))
				return RPL_PARAM_SYNTAX;
			pass = !(caps & BECAP_KNOWN) || (caps & BECAP_DSN);
		} else if (strcasecmp(k, "ENVID") == 0) {
			if (!v || !smtp_xtext_valid(v) || strlen(v) > 100)
				return RPL_PARAM_SYNTAX;
			pass = !(caps & BECAP_KNOWN) || (caps & BECAP_DSN);
		} else if (strcasecmp(k, "AUTH") == 0) {
			/* RFC 4954 5: ours to judge, not the backend's. */
			pass = false;
		} else
			return RPL_PARAM_UNKNOWN;
		if (pass) {
			int w = fmt_snprintf(fwd + n, fwdlen - n, " %s%s%s", k, v ? "=" : "", v ? v : "");
			if (w < 0 || (size_t)w >= fwdlen - n)
				return RPL_PARAM_SYNTAX;
			n += w;
		}
	}
	if (p->utf8 && !smtputf8)
		return RPL_SMTPUTF8_REQUIRED;
	return -1;
}

/* check_mail - order, syntax, parameters, profile requirements. */
static int
check_mail(struct smtp_session *s, const char *arg)
{
	char fwd[SMTP_LINE_MAX];
	int r;

	if (!s->helo[0]) {
		smtp_error(s, RPL_NEED_HELO);
		return -1;
	}
	if (s->txn) {
		smtp_error(s, RPL_NESTED_MAIL);
		return -1;
	}
	struct smtp_txn *t = calloc(1, sizeof(*t));
	if (!t) {
		smtp_reply_id(s, RPL_LOCAL_ERROR);
		return -1;
	}
	switch (smtp_path_parse(arg, true, &t->mail)) {
	case SMTP_PATH_OK:
		break;
	case SMTP_PATH_TOO_LONG:
		free(t);
		smtp_error(s, RPL_PATH_TOO_LONG);
		return -1;
	case SMTP_PATH_PARAM_SYNTAX:
	case SMTP_PATH_TOO_MANY_PARAMS:
		free(t);
		smtp_error(s, RPL_PARAM_SYNTAX);
		return -1;
	default:
		free(t);
		smtp_error(s, strncasecmp(arg, "FROM:", 5) == 0 ? RPL_BAD_SENDER : RPL_SYNTAX_MAIL);
		return -1;
	}
	if ((r = mail_params(s, &t->mail, fwd, sizeof(fwd))) >= 0) {
		free(t);
		smtp_error(s, (enum smtp_reply_id)r);
		return -1;
	}
	/* RCPT checks UTF-8 recipients against it (RFC 6531 3.4). */
	t->smtputf8 = smtp_param_get(&t->mail, "SMTPUTF8") != NULL;
	if ((t->mail_arg = str_join_alloc("FROM:<", t->mail.addr, ">", fwd, (char *)NULL)) == NULL) {
		free(t);
		smtp_reply_id(s, RPL_LOCAL_ERROR);
		return -1;
	}
	t->started = time(NULL);
	s->txn = t;
	/* From here on a refusal counts as a refused transaction. */
	if ((s->li->conf.flags & LISTEN_REQUIRE_TLS) && !s->tls) {
		smtp_txn_refuse(s, "MAIL", smtp_reply_text(RPL_TLS_REQUIRED), "require-tls");
		smtp_txn_abort(s);
		return -1;
	}
	if ((s->li->conf.flags & LISTEN_REQUIRE_AUTH) && !s->auth) {
		smtp_txn_refuse(s, "MAIL", smtp_reply_text(RPL_AUTH_REQUIRED), "require-auth");
		smtp_txn_abort(s);
		return -1;
	}
	if (s->auth && !smtp_auth_sender_ok(s, &t->mail)) {
		char text[600];
		fmt_snprintf(text, sizeof(text), smtp_reply_text(RPL_SENDER_NOT_OWNED), t->mail.addr);
		smtp_txn_refuse(s, "MAIL", text, "sender-login");
		smtp_txn_abort(s);
		return -1;
	}
	return 0;
}

/* mail_backend_done - the backend answered MAIL. */
static void
mail_backend_done(struct smtp_session *s, const struct backend_reply *r)
{
	if (!smtp_backend_usable(s, r, "MAIL"))
		return;
	if (r->code / 100 == 2) {
		s->txn->backend_mail = true;
		smtp_reply_raw(s, r->text, r->len);
	} else {
		smtp_txn_backend_refused(s, "MAIL", r);
		smtp_txn_abort(s);
	}
	smtp_resume(s);
}

/* mail_backend_open - the backend connection is ready (or not). */
static void
mail_backend_open(struct smtp_session *s, const struct backend_reply *r)
{
	char line[SMTP_LINE_MAX + 16];

	if (!smtp_backend_usable(s, r, "MAIL"))
		return;
	fmt_snprintf(line, sizeof(line), "MAIL %s", s->txn->mail_arg);
	backend_command(s->be, line, mail_backend_done);
}

/* proceed_mail - open the backend if needed and forward MAIL. */
static void
proceed_mail(struct smtp_session *s)
{
	if (!s->be && !(s->be = backend_new(s))) {
		smtp_reply_id(s, RPL_LOCAL_ERROR);
		smtp_txn_abort(s);
		smtp_resume(s);
		return;
	}
	if (!backend_ready(s->be))
		backend_open(s->be, mail_backend_open);
	else
		mail_backend_open(s, NULL);
}

/* ---- RCPT ---- */

/* rcpt_params - validate RCPT parameters (DSN) and build the forwarded ones. */
static int
rcpt_params(struct smtp_session *s, struct smtp_path *p, char *fwd, size_t fwdlen)
{
	unsigned caps = __atomic_load_n(&s->w->srv->becaps, __ATOMIC_RELAXED);
	bool dsn = !(caps & BECAP_KNOWN) || (caps & BECAP_DSN);
	size_t n = 0;

	fwd[0] = '\0';
	for (size_t i = 0; i < p->nparams; i++) {
		const char *k = p->params[i].key, *v = p->params[i].value;
		if (strcasecmp(k, "NOTIFY") == 0) {
			if (!v)
				return RPL_PARAM_SYNTAX;
			/* NEVER alone, or any of SUCCESS, FAILURE, DELAY. */
			char tmp[64];
			str_copy(tmp, sizeof(tmp), v);
			for (char *tok = strtok(tmp, ","); tok; tok = strtok(NULL, ","))
				if (strcasecmp(tok, "NEVER") && strcasecmp(tok, "SUCCESS") &&
				    strcasecmp(tok, "FAILURE") && strcasecmp(tok, "DELAY"))
					return RPL_PARAM_SYNTAX;
		} else if (strcasecmp(k, "ORCPT") == 0) {
			const char *semi = v ? strchr(v, ';') : NULL;
			if (!semi || semi == v || !smtp_xtext_valid(semi + 1))
				return RPL_PARAM_SYNTAX;
		} else
			return RPL_PARAM_UNKNOWN;
		if (dsn) {
			int w = fmt_snprintf(fwd + n, fwdlen - n, " %s=%s", k, v);
			if (w < 0 || (size_t)w >= fwdlen - n)
				return RPL_PARAM_SYNTAX;
			n += w;
		}
	}
	if (p->utf8 && !smtp_path_is_utf8_ok(s))
		return RPL_SMTPUTF8_REQUIRED;
	return -1;
}

/* check_rcpt - order, syntax, parameters, recipient count. */
static int
check_rcpt(struct smtp_session *s, const char *arg)
{
	char fwd[SMTP_LINE_MAX];
	int r;

	if (!s->txn) {
		smtp_error(s, RPL_NEED_MAIL);
		return -1;
	}
	struct smtp_txn *t = s->txn;
	switch (smtp_path_parse(arg, false, &t->rcpt)) {
	case SMTP_PATH_OK:
		break;
	case SMTP_PATH_TOO_LONG:
		smtp_error(s, RPL_PATH_TOO_LONG);
		return -1;
	case SMTP_PATH_PARAM_SYNTAX:
	case SMTP_PATH_TOO_MANY_PARAMS:
		smtp_error(s, RPL_PARAM_SYNTAX);
		return -1;
	default:
		smtp_error(s, strncasecmp(arg, "TO:", 3) == 0 ? RPL_BAD_RCPT : RPL_SYNTAX_RCPT);
		return -1;
	}
	if ((r = rcpt_params(s, &t->rcpt, fwd, sizeof(fwd))) >= 0) {
		smtp_error(s, (enum smtp_reply_id)r);
		return -1;
	}
	t->rcpt_attempts++;
	if (t->nrcpts >= s->cf->max_recipients) {
		smtp_rcpt_refuse(s, smtp_reply_text(RPL_TOO_MANY_RCPTS), "max_recipients");
		return -1;
	}
	free(t->pending_rcpt_arg);
	if ((t->pending_rcpt_arg = str_join_alloc("TO:<", t->rcpt.addr, ">", fwd, (char *)NULL)) ==
	    NULL) {
		smtp_reply_id(s, RPL_LOCAL_ERROR);
		return -1;
	}
	return 0;
}

/* rcpt_backend_done - the backend answered RCPT. */
static void
rcpt_backend_done(struct smtp_session *s, const struct backend_reply *r)
{
	struct smtp_txn *t = s->txn;

	if (!smtp_backend_usable(s, r, "RCPT"))
		return;
	if (r->code / 100 == 2) {
		struct smtp_rcpt *nr = realloc(t->rcpts, (t->nrcpts + 1) * sizeof(*nr));
		if (!nr) {
			smtp_reply_id(s, RPL_LOCAL_ERROR);
			smtp_resume(s);
			return;
		}
		t->rcpts = nr;
		nr[t->nrcpts].addr = strdup(t->rcpt.addr);
		nr[t->nrcpts].domain = strdup(t->rcpt.domain);
		nr[t->nrcpts].arg = t->pending_rcpt_arg;
		t->pending_rcpt_arg = NULL;
		t->nrcpts++;
		smtp_reply_raw(s, r->text, r->len);
	} else
		smtp_txn_backend_refused(s, "RCPT", r);
	smtp_resume(s);
}

/* proceed_rcpt - our verdict was yes: ask the backend. */
static void
proceed_rcpt(struct smtp_session *s)
{
	char line[SMTP_LINE_MAX + 16];

	fmt_snprintf(line, sizeof(line), "RCPT %s", s->txn->pending_rcpt_arg);
	backend_command(s->be, line, rcpt_backend_done);
}

/* ---- DATA ---- */

/* check_data - a transaction with at least one accepted recipient. */
static int
check_data(struct smtp_session *s, const char *arg)
{
	if (*arg) {
		smtp_error(s, RPL_NO_ARGS);
		return -1;
	}
	if (!s->txn) {
		smtp_error(s, RPL_NEED_MAIL);
		return -1;
	}
	if (s->txn->msg) {
		smtp_error(s, RPL_BDAT_IN_PROGRESS);
		return -1;
	}
	if (s->txn->nrcpts == 0) {
		if (s->txn->rcpt_attempts) {
			/* RFC 2920 3.1: every recipient was refused. */
			smtp_reply_id(s, RPL_NO_VALID_RCPT);
			s->txn->last_refusal = 554;
		} else
			smtp_error(s, RPL_NEED_RCPT);
		return -1;
	}
	return 0;
}

/* ---- BDAT (RFC 3030) ---- */

/* Largest chunk we agree to count (the message size limit applies anyway). */
#define SMTP_BDAT_MAX ((size_t)1 << 40)

/* check_bdat - "count [LAST]". Nothing can be told from data after a
 * count we could not read, so a syntax error ends the session. */
static int
check_bdat(struct smtp_session *s, const char *arg)
{
	const char *p = arg;
	size_t n = 0;

	while (*p >= '0' && *p <= '9' && n <= SMTP_BDAT_MAX)
		n = n * 10 + (size_t)(*p++ - '0');
	bool ok = p > arg && n <= SMTP_BDAT_MAX;
	bool last = false;
	if (ok && *p) {
		while (*p == ' ')
			p++;
		ok = strcasecmp(p, "LAST") == 0;
		last = true;
	}
	if (!ok) {
		log_info(s->id, "reject: BDAT from %s[%s]: bad chunk size; disconnecting",
			 s->client_name, s->client_ip);
		smtp_reply_id(s, RPL_BDAT_SYNTAX);
		smtp_close(s);
		return -1;
	}
	s->bdat_left = s->bdat_size = n;
	s->bdat_last = last;
	return 0;
}

/* bdat_policy_done - the data stage decided on the first chunk. */
static void
bdat_policy_done(struct smtp_session *s, const struct policy_verdict *v)
{
	if (s->closed)
		return;
	if (v->action == POLICY_REJECT || v->action == POLICY_TEMPFAIL) {
		smtp_policy_refuse(s, PS_DATA, v);
		smtp_txn_abort(s);
		smtp_bdat_skip(s, -1);
		return;
	}
	if (v->action == POLICY_DISCARD)
		s->txn->discard = true;
	smtp_bdat_start(s);
}

/* proceed_bdat - take the chunk into the transaction, or read it and refuse. */
static void
proceed_bdat(struct smtp_session *s)
{
	if (!s->txn) {
		smtp_bdat_skip(s, RPL_NEED_MAIL);
	} else if (s->txn->nrcpts == 0) {
		if (s->txn->rcpt_attempts) {
			s->txn->last_refusal = 554;
			smtp_bdat_skip(s, RPL_NO_VALID_RCPT);
		} else {
			smtp_bdat_skip(s, RPL_NEED_RCPT);
		}
	} else if (!s->txn->msg) {
		policy_run(s, PS_DATA, bdat_policy_done);
	} else {
		smtp_bdat_start(s);
	}
}

/* ---- simple commands ---- */

/* check_noarg - RSET takes no argument. */
static int
check_noarg(struct smtp_session *s, const char *arg)
{
	if (*arg) {
		smtp_error(s, RPL_NO_ARGS);
		return -1;
	}
	return 0;
}

/* proceed_rset - end the transaction here and at the backend. */
static void
proceed_rset(struct smtp_session *s)
{
	smtp_txn_abort(s);
	smtp_reply_id(s, RPL_OK);
	smtp_resume(s);
}

/* proceed_noop - 250. */
static void
proceed_noop(struct smtp_session *s)
{
	smtp_reply_id(s, RPL_OK);
	smtp_resume(s);
}

/* proceed_quit - 221 and close. */
static void
proceed_quit(struct smtp_session *s)
{
	smtp_reply_id(s, RPL_BYE);
	smtp_close(s);
}

/* proceed_help - 214. */
static void
proceed_help(struct smtp_session *s)
{
	smtp_reply_id(s, RPL_HELP);
	smtp_resume(s);
}

/* proceed_vrfy - 252, as RFC 5321 3.5.3 allows. */
static void
proceed_vrfy(struct smtp_session *s)
{
	smtp_reply_id(s, RPL_VRFY);
	smtp_resume(s);
}

/* proceed_expn - not offered. */
static void
proceed_expn(struct smtp_session *s)
{
	smtp_reply_id(s, RPL_EXPN);
	smtp_resume(s);
}

/* proceed_etrn - not offered. */
static void
proceed_etrn(struct smtp_session *s)
{
	smtp_reply_id(s, RPL_ETRN);
	smtp_resume(s);
}
