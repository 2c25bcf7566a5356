/*
 * smtp_tls.c - TLS on the client side of a session: implicit TLS
 * listeners (port 465) and STARTTLS (RFC 3207).
 *
 * STARTTLS command injection (CVE-2011-0411 class) is impossible: the
 * plaintext input buffer is emptied before the handshake starts, and any
 * byte the client had already sent behind STARTTLS reaches OpenSSL as
 * handshake garbage, never the command parser. After the handshake the
 * session forgets HELO, AUTH and the transaction; EHLO is required again.
 *
 * Public (smtp_internal.h):
 *   smtp_tls_wrap(), smtp_tls_offer(), smtp_tls_check(), smtp_tls_proceed(),
 *   smtp_tls_connected(), smtp_tls_failed()
 */

/* System. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Library. */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

/* Project. */
#include "backend.h"
#include "config.h"
#include "log.h"
#include "server.h"
#include "smtp_internal.h"
#include "smtp_session.h"
#include "tls.h"

/* smtp_tls_wrap - the bufferevent for a new connection (TLS when implicit). */
struct bufferevent *
smtp_tls_wrap(struct smtp_session *s, int fd)
{
	struct event_base *base = s->w->base;

	if (!(s->li->conf.flags & LISTEN_TLS))
		return bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
	SSL *ssl = s->cf->tls ? tls_server_ssl_new(s->cf->tls) : NULL;
	if (!ssl)
		return NULL;
	struct bufferevent *bev = bufferevent_openssl_socket_new(base, fd, ssl,
			BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (!bev) {
		SSL_free(ssl);
		return NULL;
	}
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	return bev;
}

/* smtp_tls_offer - announce STARTTLS? */
bool
smtp_tls_offer(struct smtp_session *s)
{
	return (s->li->conf.flags & LISTEN_STARTTLS) && !s->tls && s->cf->tls;
}

/* smtp_tls_check - STARTTLS allowed here and now? */
int
smtp_tls_check(struct smtp_session *s, const char *arg)
{
	if (s->tls) {
		smtp_error(s, RPL_STARTTLS_ALREADY);
		return -1;
	}
	if (!smtp_tls_offer(s)) {
		smtp_error(s, RPL_STARTTLS_UNAVAIL);
		return -1;
	}
	if (*arg) {
		smtp_error(s, RPL_NO_ARGS);
		return -1;
	}
	if (!s->helo[0]) {
		smtp_error(s, RPL_NEED_HELO);
		return -1;
	}
	if (s->txn) {
		smtp_error(s, RPL_AUTH_IN_MAIL);
		return -1;
	}
	return 0;
}

/* smtp_tls_proceed - 220, drop pipelined bytes, start the handshake. */
void
smtp_tls_proceed(struct smtp_session *s)
{
	SSL *ssl = tls_server_ssl_new(s->cf->tls);
	struct evbuffer *in = bufferevent_get_input(s->bev);

	if (!ssl) {
		smtp_reply_id(s, RPL_TLS_UNAVAILABLE);
		smtp_resume(s);
		return;
	}
	size_t junk = evbuffer_get_length(in);
	if (junk) {
		log_info(s->id, "discarding %zu bytes sent after STARTTLS by %s[%s]", junk,
			 s->client_name, s->client_ip);
		evbuffer_drain(in, junk);
	}
	smtp_reply_id(s, RPL_STARTTLS_GO);
	/* The 220 goes out in clear, ahead of the handshake. */
	smtp_out_handover(s);
	bufferevent_enable(s->bev, EV_WRITE);
	struct bufferevent *tb = bufferevent_openssl_filter_new(s->w->base, s->bev, ssl,
			BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (!tb) {
		SSL_free(ssl);
		smtp_close(s);
		return;
	}
	bufferevent_openssl_set_allow_dirty_shutdown(tb, 1);
	/* RFC 3207 4.2: forget everything learned before TLS. */
	s->helo[0] = '\0';
	s->esmtp = false;
	s->auth = false;
	s->auth_user[0] = '\0';
	s->be = (backend_free(s->be), NULL);
	s->state = SS_TLS;
	s->busy = true;
	smtp_bev_install(s, tb);
	lazytimer_set(&s->timer, s->cf->client_timeout * 1000u);
}

/* smtp_tls_connected - the handshake finished. */
void
smtp_tls_connected(struct smtp_session *s)
{
	SSL *ssl = bufferevent_openssl_get_ssl(s->bev);

	s->tls = true;
	if (ssl)
		tls_describe(ssl, s->tls_info, sizeof(s->tls_info));
	log_info(s->id, "TLS established with %s[%s]: %s", s->client_name, s->client_ip, s->tls_info);
	if (s->state == SS_TLS) {
		s->state = SS_CMD;
		smtp_resume(s);
	}
}

/* smtp_tls_failed - the handshake failed: log why, let the alert out, close. */
void
smtp_tls_failed(struct smtp_session *s, struct bufferevent *bev)
{
	unsigned long e, last = 0;
	const char *why;

	/* The first queued error is the cause; later ones are consequences. */
	while ((e = bufferevent_get_openssl_error(bev)) != 0)
		if (!last)
			last = e;
	why = last ? ERR_reason_error_string(last) : NULL;
	log_info(s->id, "TLS handshake failed with %s[%s]: %s", s->client_name, s->client_ip,
		 why ? why : "connection closed");
	/* Replies queued for the encrypted channel (the implicit-TLS banner)
	 * can never be sent; the alert OpenSSL wrote below a STARTTLS filter
	 * still can, and tells the client why. */
	struct evbuffer *out = bufferevent_get_output(s->bev);
	evbuffer_drain(out, evbuffer_get_length(out));
	smtp_close(s);
}
