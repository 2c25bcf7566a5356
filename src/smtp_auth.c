/*
 * smtp_auth.c - SMTP AUTH (RFC 4954) in a session: PLAIN and LOGIN, with
 * initial responses; offered only over TLS unless the listener says
 * auth-plaintext. Password hashing (yescrypt is slow on purpose) runs on
 * the check pool; failures are delayed, counted, logged for fail2ban, and
 * after auth_max_failures the client is disconnected. Passwords are wiped
 * as soon as they have been checked and never logged.
 *
 * Public (smtp_internal.h):
 *   smtp_auth_offer(), smtp_auth_check(), smtp_auth_proceed(),
 *   smtp_auth_line(), smtp_auth_free(), smtp_auth_sender_ok()
 */

/* System. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <ctype.h>

/* Library. */
#include <event2/event.h>

/* Project. */
#include "auth.h"
#include "backend.h"
#include "checkpool.h"
#include "config.h"
#include "fmt.h"
#include "log.h"
#include "ratelimit.h"
#include "server.h"
#include "smtp_internal.h"
#include "smtp_session.h"
#include "stats.h"

enum auth_step { AX_PLAIN, AX_LOGIN_USER, AX_LOGIN_PASS };

struct auth_exchange {
	struct smtp_session *s;
	enum auth_step step;
	char mech[8];
	char user[AUTH_USER_MAX];
	char pass[AUTH_PASS_MAX];
	int result;                 /* from auth_users_verify */
	char arg[SMTP_LINE_MAX];    /* "MECH [initial-response]" until proceed */
	struct auth_users *users;   /* referenced for the pool thread */
	struct event *delay;
};

/* wipe - forget the password. */
static void
wipe(struct auth_exchange *x)
{
	explicit_bzero(x->pass, sizeof(x->pass));
}

/* smtp_auth_free - release a pending exchange. */
void
smtp_auth_free(struct smtp_session *s)
{
	struct auth_exchange *x = s->auth_x;

	if (!x)
		return;
	wipe(x);
	explicit_bzero(x->arg, sizeof(x->arg));
	if (x->delay)
		event_free(x->delay);
	auth_users_free(x->users);
	free(x);
	s->auth_x = NULL;
}

/* allowed - AUTH may be used on this connection now. */
static bool
allowed(const struct smtp_session *s)
{
	return s->cf->auth_users && (s->tls || (s->li->conf.flags & LISTEN_AUTH_PLAINTEXT));
}

/* smtp_auth_offer - the EHLO line, when AUTH is usable. */
void
smtp_auth_offer(struct smtp_session *s)
{
	if (allowed(s) && !s->auth)
		smtp_reply(s, "250-AUTH PLAIN LOGIN");
}

/* smtp_auth_check - order and mechanism. */
int
smtp_auth_check(struct smtp_session *s, const char *arg)
{
	if (!s->cf->auth_users) {
		smtp_error(s, RPL_AUTH_NOT_OFFERED);
		return -1;
	}
	if (!allowed(s)) {
		smtp_error(s, RPL_AUTH_TLS_REQUIRED);
		return -1;
	}
	if (!s->helo[0] || !s->esmtp) {
		smtp_error(s, RPL_NEED_HELO);
		return -1;
	}
	if (s->auth) {
		smtp_error(s, RPL_AUTH_ALREADY);
		return -1;
	}
	if (s->txn) {
		smtp_error(s, RPL_AUTH_IN_MAIL);
		return -1;
	}
	size_t ml = strcspn(arg, " ");
	if (!((ml == 5 && strncasecmp(arg, "PLAIN", 5) == 0) ||
	      (ml == 5 && strncasecmp(arg, "LOGIN", 5) == 0))) {
		smtp_error(s, ml ? RPL_AUTH_MECH : RPL_AUTH_SYNTAX);
		return -1;
	}
	struct auth_exchange *x = calloc(1, sizeof(*x));
	if (!x) {
		smtp_reply_id(s, RPL_LOCAL_ERROR);
		return -1;
	}
	x->s = s;
	fmt_snprintf(x->arg, sizeof(x->arg), "%s", arg);
	s->auth_x = x;
	return 0;
}

static void verify_work(void *arg);
static void verify_done(void *arg);

/* fail - a refused exchange (bad data, bad credentials). */
static void
fail(struct smtp_session *s, enum smtp_reply_id id)
{
	struct auth_exchange *x = s->auth_x;

	stats_inc(s->w->stats, STATS_AUTH_FAILURE_TOTAL);
	log_info(s->id, "auth failed: client=[%s] user=%s mechanism=%s", s->client_ip,
		 x && x->user[0] ? x->user : "-", x ? x->mech : "-");
	s->auth_failures++;
	smtp_auth_free(s);
	s->state = SS_CMD;
	smtp_reply_id(s, id);
	if (s->auth_failures >= s->cf->auth_max_failures && s->cf->auth_max_failures) {
		smtp_reply_id(s, RPL_TOO_MANY_ERRORS);
		smtp_close(s);
		return;
	}
	smtp_resume(s);
}

/* delay_cb - the failure delay passed: answer 535. */
static void
delay_cb(evutil_socket_t fd, short what, void *arg)
{
	struct smtp_session *s = arg;

	fail(s, RPL_AUTH_BAD);
}

/* verify - hand user and password to the check pool. */
static void
verify(struct smtp_session *s)
{
	struct auth_exchange *x = s->auth_x;

	s->state = SS_CMD;
	s->busy = true;
	x->users = auth_users_ref(s->cf->auth_users);
	smtp_session_ref(s);
	if (checkpool_submit(s->w->srv->pool, s->w->base, verify_work, verify_done, x) < 0) {
		smtp_session_unref(s);
		wipe(x);
		smtp_reply_id(s, RPL_LOCAL_ERROR);
		smtp_auth_free(s);
		smtp_resume(s);
	}
}

/* Result of verify_work when the client's address is over its limit. */
#define AUTH_BLOCKED (-2)

/* verify_work - on a pool thread: the per-address failure limit (the
 * store may be Redis, shared by several instances), then crypt(3). */
static void
verify_work(void *arg)
{
	struct auth_exchange *x = arg;
	struct smtp_session *s = x->s;
	struct ratelimit *rl = s->w->srv->ratelimit;
	unsigned limit = s->cf->auth_max_failures_per_ip, count = 0;
	char key[96];

	fmt_snprintf(key, sizeof(key), "auth-failures:%s", s->client_ip);
	if (limit && ratelimit_peek(rl, key, 3600, &count) == 0 && count >= limit) {
		x->result = AUTH_BLOCKED;
		wipe(x);
		return;
	}
	x->result = auth_users_verify(x->users, x->user, x->pass);
	wipe(x);
	if (limit && x->result == 0)
		ratelimit_hit(rl, key, limit, 3600, &count);
}

/* verify_done - back on the loop with the answer. */
static void
verify_done(void *arg)
{
	struct auth_exchange *x = arg;
	struct smtp_session *s = x->s;

	if (s->closed) {
		smtp_auth_free(s);
		smtp_session_unref(s);
		return;
	}
	if (x->result == AUTH_BLOCKED) {
		/* Guessing from this address: no answer about the password. */
		stats_inc(s->w->stats, STATS_AUTH_FAILURE_TOTAL);
		stats_inc(s->w->stats, STATS_RATELIMIT_HITS_TOTAL);
		log_info(s->id, "auth failed: client=[%s] user=%s mechanism=%s reason=too many failures "
			 "from this address in the last hour", s->client_ip, x->user, x->mech);
		smtp_auth_free(s);
		smtp_reply(s, "421 4.7.0 Error: too many authentication failures; try again later");
		smtp_close(s);
	} else if (x->result == 1) {
		s->auth = true;
		fmt_snprintf(s->auth_user, sizeof(s->auth_user), "%s", x->user);
		fmt_snprintf(s->auth_mech, sizeof(s->auth_mech), "%s", x->mech);
		stats_inc(s->w->stats, STATS_AUTH_SUCCESS_TOTAL);
		log_info(s->id, "auth: client=[%s] user=%s mechanism=%s", s->client_ip, s->auth_user,
			 s->auth_mech);
		/* A backend opened earlier has no LOGIN attribute: reopen later. */
		s->be = (backend_free(s->be), NULL);
		smtp_auth_free(s);
		smtp_reply_id(s, RPL_AUTH_OK);
		smtp_resume(s);
	} else if (x->result < 0) {
		smtp_auth_free(s);
		smtp_reply(s, "454 4.7.0 Temporary authentication failure");
		smtp_resume(s);
	} else {
		/* Slow down guessing; the reply waits, nothing else does. */
		struct timeval tv = { s->cf->auth_failure_delay_ms / 1000,
				      (s->cf->auth_failure_delay_ms % 1000) * 1000 };
		x->delay = evtimer_new(s->w->base, delay_cb, s);
		if (!x->delay)
			fail(s, RPL_AUTH_BAD);
		else
			event_add(x->delay, &tv);
	}
	smtp_session_unref(s);
}

/* decode_failed - the reply for a malformed response. */
static void
decode_failed(struct smtp_session *s, enum auth_status st)
{
	if (st == AUTH_CANCEL) {
		smtp_auth_free(s);
		s->state = SS_CMD;
		smtp_reply_id(s, RPL_AUTH_CANCELLED);
		smtp_resume(s);
		return;
	}
	fail(s, st == AUTH_BAD_BASE64 ? RPL_AUTH_SYNTAX : RPL_AUTH_BAD);
}

/* smtp_auth_proceed - start the exchange, with or without initial response. */
void
smtp_auth_proceed(struct smtp_session *s)
{
	struct auth_exchange *x = s->auth_x;
	char *arg = x->arg;
	char *ir = strchr(arg, ' ');
	if (ir)
		*ir++ = '\0';
	for (char *c = arg; *c; c++)
		*c = (char)toupper((unsigned char)*c);
	fmt_snprintf(x->mech, sizeof(x->mech), "%.7s", arg);
	if (strcmp(x->mech, "PLAIN") == 0) {
		x->step = AX_PLAIN;
		if (ir) {
			smtp_auth_line(s, ir, strlen(ir));
			return;
		}
		smtp_reply(s, "334 ");
	} else {
		if (ir) {
			enum auth_status st = auth_login_decode_user(ir, x->user, sizeof(x->user));
			if (st != AUTH_OK) {
				decode_failed(s, st);
				return;
			}
			x->step = AX_LOGIN_PASS;
			smtp_reply(s, "334 %s", AUTH_LOGIN_CHALLENGE_PASS);
		} else {
			x->step = AX_LOGIN_USER;
			smtp_reply(s, "334 %s", AUTH_LOGIN_CHALLENGE_USER);
		}
	}
	s->state = SS_AUTH;
	smtp_resume(s);
}

/* smtp_auth_line - one client response line of the exchange. */
void
smtp_auth_line(struct smtp_session *s, const char *line, size_t len)
{
	struct auth_exchange *x = s->auth_x;
	enum auth_status st;

	switch (x->step) {
	case AX_PLAIN:
		st = auth_plain_decode(line, NULL, 0, x->user, sizeof(x->user), x->pass, sizeof(x->pass));
		if (st != AUTH_OK) {
			decode_failed(s, st);
			return;
		}
		verify(s);
		return;
	case AX_LOGIN_USER:
		st = auth_login_decode_user(line, x->user, sizeof(x->user));
		if (st != AUTH_OK) {
			decode_failed(s, st);
			return;
		}
		x->step = AX_LOGIN_PASS;
		smtp_reply(s, "334 %s", AUTH_LOGIN_CHALLENGE_PASS);
		return;
	case AX_LOGIN_PASS:
		st = auth_login_decode_pass(line, x->pass, sizeof(x->pass));
		if (st != AUTH_OK) {
			decode_failed(s, st);
			return;
		}
		verify(s);
		return;
	}
}

/* smtp_auth_sender_ok - does the authenticated user own this sender? */
bool
smtp_auth_sender_ok(struct smtp_session *s, const struct smtp_path *p)
{
	return auth_sender_owned(s->cf->senders, s->cf->local_domains, s->auth_user,
				 p->null_path ? "" : p->addr);
}
