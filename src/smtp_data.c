/*
 * smtp_data.c - the DATA phase and the end of a transaction.
 *
 * DATA is answered 354 by ravelin itself; the message streams through the
 * message parser into the spool; at the real <CRLF>.<CRLF> the content
 * checks and the header..eom policy stages run, and only then does the
 * backend see DATA, our added header fields, the original ones (minus
 * forgeries) and the body. The client's final reply is the backend's reply
 * to that message: nothing is 250'd that the backend did not accept.
 * BDAT chunks (RFC 3030) fill the same parser by count and end the same way.
 * Every transaction ends here once, for the counters and the log line.
 *
 * Public (smtp_internal.h):
 *   smtp_data_start(), smtp_data_input(), smtp_bdat_start(), smtp_bdat_skip(),
 *   smtp_bdat_input(), smtp_txn_abort(), smtp_txn_end(),
 *   smtp_txn_refuse(), smtp_rcpt_refuse(), smtp_txn_backend_refused(),
 *   smtp_backend_usable(), smtp_policy_refuse(), smtp_path_is_utf8_ok()
 */

/* System. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Library. */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/ssl.h>

/* Project. */
#include "backend.h"
#include "config.h"
#include "fmt.h"
#include "log.h"
#include "message.h"
#include "policy.h"
#include "received.h"
#include "server.h"
#include "smtp_internal.h"
#include "smtp_session.h"
#include "stats.h"
#include "tls.h"

static void eom_stage(struct smtp_session *s, enum policy_stage st);
static enum smtp_reply_id content_refusal(enum msg_problem p);

/* rcpt_list - "a@b,c@d" for log lines (truncated). */
static void
rcpt_list(const struct smtp_txn *t, char *buf, size_t len)
{
	size_t n = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < t->nrcpts && n + 4 < len; i++) {
		int w = fmt_snprintf(buf + n, len - n, "%s%s", i ? "," : "", t->rcpts[i].addr);
		if (w < 0)
			break;
		n += (size_t)w;
	}
	if (n >= len)
		strcpy(buf + len - 4, "...");
}

/* chomp_reply - the first line of a reply without CRLF, for log lines. */
static void
chomp_reply(const char *text, size_t len, char *out, size_t outlen)
{
	size_t n = 0;
	while (n < len && text[n] != '\r' && text[n] != '\n' && n + 1 < outlen) {
		out[n] = text[n] == '"' ? '\'' : text[n];
		n++;
	}
	out[n] = '\0';
}

/* smtp_path_is_utf8_ok - MAIL FROM carried SMTPUTF8. */
bool
smtp_path_is_utf8_ok(struct smtp_session *s)
{
	return s->txn && s->txn->smtputf8;
}

/* txn_free - release a transaction's memory. */
static void
txn_free(struct smtp_txn *t)
{
	for (size_t i = 0; i < t->nrcpts; i++) {
		free(t->rcpts[i].addr);
		free(t->rcpts[i].domain);
		free(t->rcpts[i].arg);
	}
	free(t->rcpts);
	free(t->mail_arg);
	free(t->pending_rcpt_arg);
	msg_parser_free(t->msg);
	free(t);
}

/* smtp_txn_end - count and free the transaction (DESIGN.md section 11). */
void
smtp_txn_end(struct smtp_session *s, bool accepted)
{
	struct smtp_txn *t = s->txn;
	struct stats_worker *w = s->w->stats;

	if (!t)
		return;
	if (accepted)
		stats_inc(w, t->discard ? STATS_MESSAGES_DISCARDED_TOTAL : STATS_MESSAGES_ACCEPTED_TOTAL);
	else if (t->last_refusal >= 500)
		stats_inc(w, STATS_MESSAGES_REJECTED_TOTAL);
	else if (t->last_refusal >= 400)
		stats_inc(w, STATS_MESSAGES_TEMPFAILED_TOTAL);
	s->txn = NULL;
	policy_reset(s);
	txn_free(t);
}

/* smtp_txn_release - the client left during a check: free it now. */
void
smtp_txn_release(struct smtp_session *s)
{
	smtp_txn_end(s, false);
}

/* smtp_txn_abort - forget the transaction here and at the backend. */
void
smtp_txn_abort(struct smtp_session *s)
{
	if (!s->txn)
		return;
	if (s->txn->backend_mail && s->be && backend_ready(s->be))
		backend_command(s->be, "RSET", NULL);
	smtp_txn_end(s, false);
}

/* log_reject - the Postfix-style reject line (DESIGN.md section 9). */
static void
log_reject(struct smtp_session *s, const char *stage, const char *reply, const char *to,
	   const char *why)
{
	const struct smtp_txn *t = s->txn;

	log_info(s->id, "%s: %s from %s[%s]: %s; from=<%s> to=<%s> helo=<%s>%s%s",
		 reply[0] == '4' ? "tempfail" : "reject", stage, s->client_name, s->client_ip, reply,
		 t ? t->mail.addr : "", to ? to : "", s->helo, why ? " rule=" : "", why ? why : "");
}

/* smtp_txn_refuse - answer a refusal of MAIL or the message. */
void
smtp_txn_refuse(struct smtp_session *s, const char *stage, const char *reply, const char *why)
{
	char to[512] = "";

	if (s->txn) {
		rcpt_list(s->txn, to, sizeof(to));
		s->txn->last_refusal = atoi(reply);
	}
	log_reject(s, stage, reply, to, why);
	smtp_reply(s, "%s", reply);
}

/* smtp_rcpt_refuse - answer a refusal of one recipient. */
void
smtp_rcpt_refuse(struct smtp_session *s, const char *reply, const char *why)
{
	s->txn->last_refusal = atoi(reply);
	stats_inc(s->w->stats, STATS_RECIPIENTS_REJECTED_TOTAL);
	log_reject(s, "RCPT", reply, s->txn->rcpt.addr, why);
	smtp_reply(s, "%s", reply);
}

/* smtp_policy_refuse - a policy verdict refused a command. */
void
smtp_policy_refuse(struct smtp_session *s, int stage, const struct policy_verdict *v)
{
	if (stage == PS_RCPT && s->txn) {
		smtp_rcpt_refuse(s, v->reply, v->rule);
	} else if (stage == PS_MAIL || stage == PS_DATA) {
		smtp_txn_refuse(s, stage == PS_MAIL ? "MAIL" : "DATA", v->reply, v->rule);
		if (stage == PS_MAIL)
			smtp_txn_abort(s);
	} else {
		log_info(s->id, "%s: %s from %s[%s]: %s; helo=<%s> rule=%s",
			 v->reply[0] == '4' ? "tempfail" : "reject",
			 stage == PS_HELO ? "HELO" : "command", s->client_name, s->client_ip, v->reply,
			 s->helo, v->rule);
		smtp_reply(s, "%s", v->reply);
		if (stage == PS_HELO)
			s->helo[0] = '\0';
	}
	if (v->disconnect)
		smtp_close(s);
}

/* smtp_txn_backend_refused - relay a backend 4xx/5xx and log it. */
void
smtp_txn_backend_refused(struct smtp_session *s, const char *stage, const struct backend_reply *r)
{
	char first[512], to[512] = "";
	bool rcpt = strcmp(stage, "RCPT") == 0;

	chomp_reply(r->text, r->len, first, sizeof(first));
	if (s->txn) {
		s->txn->last_refusal = r->code;
		if (rcpt)
			stats_inc(s->w->stats, STATS_RECIPIENTS_REJECTED_TOTAL);
		else
			rcpt_list(s->txn, to, sizeof(to));
	}
	/* to=<> names the refused recipient, or those of the refused message. */
	log_reject(s, stage, first, rcpt && s->txn ? s->txn->rcpt.addr : to, "backend");
	smtp_reply_raw(s, r->text, r->len);
}

/* smtp_backend_usable - handle a failed backend: answer and close. */
bool
smtp_backend_usable(struct smtp_session *s, const struct backend_reply *r, const char *stage)
{
	if (s->closed)
		return false;
	if (!r || r->status == BE_OK)
		return true;
	stats_inc(s->w->stats, STATS_BACKEND_ERRORS_TOTAL);
	log_warnx(s->id, "backend %s %s while sending %s for %s[%s]",
		  s->be ? backend_describe(s->be) : "-",
		  r->status == BE_CONNECT_FAIL ? "unreachable" :
		  r->status == BE_TIMEOUT ? "timed out" :
		  r->status == BE_LOST ? "lost the connection" : "sent a broken reply",
		  stage, s->client_name, s->client_ip);
	if (s->txn)
		s->txn->last_refusal = 421;
	s->be = (backend_free(s->be), NULL);
	smtp_txn_end(s, false);
	smtp_reply_id(s, RPL_BACKEND_DOWN);
	smtp_close(s);
	return false;
}

/* new_parser - the transaction's message parser, with this config's limits. */
static struct msg_parser *
new_parser(struct smtp_session *s)
{
	struct config *cf = s->cf;
	struct msg_limits lim = {
		.max_size = cf->max_message_size,
		.max_header_fields = cf->max_header_fields,
		.max_header_bytes = cf->max_message_size < 1024 * 1024 ? cf->max_message_size : 1024 * 1024,
		.spool_memory = cf->spool_memory,
		.normalize_newlines = cf->bare_newline_normalize,
		.long_lines_pass = cf->long_lines_pass,
	};

	return msg_parser_new(&lim, policy_stream_ops(s), s);
}

/* smtp_data_start - 354 and start reading the message. */
void
smtp_data_start(struct smtp_session *s)
{
	s->txn->msg = new_parser(s);
	if (!s->txn->msg) {
		smtp_reply_id(s, RPL_LOCAL_ERROR);
		smtp_resume(s);
		return;
	}
	smtp_reply_id(s, RPL_DATA_GO);
	s->state = SS_DATA;
	smtp_resume(s);
}

/* ---- BDAT (RFC 3030) ----
 * A chunk is read by count into the same parser in chunked mode; the
 * message goes to the backend with DATA at the end, so the backend need
 * not know CHUNKING. A refused chunk is still read (its octets are not
 * commands) and answered once it is in; the transaction is then over,
 * so chunks the client pipelined after it are refused the same way. */

/* bdat_chunk_end - the chunk is in: answer it, or end the message. */
static void
bdat_chunk_end(struct smtp_session *s)
{
	s->state = SS_CMD;
	if (s->bdat_skip) {
		s->bdat_skip = false;
		if (s->bdat_reply >= 0)
			smtp_error(s, (enum smtp_reply_id)s->bdat_reply);
		smtp_resume(s);
		return;
	}
	struct message *m = msg_parser_message(s->txn->msg);
	if (s->bdat_last && m->problem == MSG_OK)
		msg_parser_finish(s->txn->msg);
	if (m->problem != MSG_OK) {
		smtp_txn_refuse(s, "BDAT", smtp_reply_text(content_refusal(m->problem)), "content");
		smtp_txn_abort(s);
		smtp_resume(s);
		return;
	}
	if (!s->bdat_last) {
		smtp_reply(s, "250 2.0.0 Ok: %zu octets", s->bdat_size);
		smtp_resume(s);
		return;
	}
	s->busy = true;
	eom_stage(s, PS_HEADER);
}

/* bdat_read - read the chunk from the input (an empty one is in already). */
static void
bdat_read(struct smtp_session *s)
{
	s->state = SS_BDAT;
	if (s->bdat_left == 0)
		bdat_chunk_end(s);
	else
		smtp_resume(s);
}

/* smtp_bdat_start - the chunk's checks passed: read it into the message. */
void
smtp_bdat_start(struct smtp_session *s)
{
	if (!s->txn->msg) {
		if (!(s->txn->msg = new_parser(s))) {
			smtp_bdat_skip(s, RPL_LOCAL_ERROR);
			return;
		}
		msg_parser_chunked(s->txn->msg);
	}
	s->bdat_skip = false;
	bdat_read(s);
}

/* smtp_bdat_skip - consume the chunk unread, then give reply (-1: none). */
void
smtp_bdat_skip(struct smtp_session *s, int reply)
{
	s->bdat_skip = true;
	s->bdat_reply = reply;
	bdat_read(s);
}

/* smtp_bdat_input - as many of the chunk's octets as have come. */
void
smtp_bdat_input(struct smtp_session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	struct evbuffer_iovec v;
	size_t used;

	while (s->bdat_left && evbuffer_peek(in, -1, NULL, &v, 1) > 0 && v.iov_len > 0) {
		size_t n = v.iov_len < s->bdat_left ? v.iov_len : s->bdat_left;
		if (!s->bdat_skip)
			(void)msg_parser_feed(s->txn->msg, v.iov_base, n, &used);
		evbuffer_drain(in, n);
		s->bdat_left -= n;
	}
	if (s->bdat_left == 0) {
		s->busy = true;
		bdat_chunk_end(s);
	}
}

/* content_refusal - the reply for a message refused for its content. */
static enum smtp_reply_id
content_refusal(enum msg_problem p)
{
	switch (p) {
	case MSG_BARE_NEWLINE: return RPL_BARE_NEWLINE;
	case MSG_NUL: return RPL_NUL_DATA;
	case MSG_LONG_LINE: return RPL_LONG_LINE;
	case MSG_TOO_BIG: return RPL_TOO_BIG;
	case MSG_HEADER_TOO_BIG: return RPL_HEADER_TOO_BIG;
	default: return RPL_LOCAL_ERROR;
	}
}

/* smtp_data_input - feed the message parser; at the end, decide. */
void
smtp_data_input(struct smtp_session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	struct evbuffer_iovec v;
	size_t used;

	while (evbuffer_peek(in, -1, NULL, &v, 1) > 0 && v.iov_len > 0) {
		enum msg_status st = msg_parser_feed(s->txn->msg, v.iov_base, v.iov_len, &used);
		evbuffer_drain(in, used);
		if (st == MSG_FEED_END) {
			s->state = SS_CMD;
			s->busy = true;
			struct message *m = msg_parser_message(s->txn->msg);
			if (m->problem != MSG_OK) {
				const char *reply = smtp_reply_text(content_refusal(m->problem));
				smtp_txn_refuse(s, "DATA", reply, "content");
				smtp_txn_abort(s);
				smtp_resume(s);
				return;
			}
			eom_stage(s, PS_HEADER);
			return;
		}
	}
	/* All consumed: the loop stops on the empty buffer. */
}

/* message_done - the backend answered the message. */
static void
message_done(struct smtp_session *s, const struct backend_reply *r)
{
	struct smtp_txn *t = s->txn;
	char to[512], first[512], checks[512];

	if (s->closed)
		return;
	if (!r || r->status != BE_OK) {
		/* DESIGN.md section 11: lost during DATA is 451 4.4.2. */
		stats_inc(s->w->stats, STATS_BACKEND_ERRORS_TOTAL);
		log_warnx(s->id, "backend %s %s while sending the message for %s[%s]",
			  s->be ? backend_describe(s->be) : "-",
			  r && r->status == BE_TIMEOUT ? "timed out" : "lost the connection",
			  s->client_name, s->client_ip);
		smtp_txn_refuse(s, "DATA", smtp_reply_text(RPL_BACKEND_LOST), "backend");
		s->be = (backend_free(s->be), NULL);
		smtp_txn_end(s, false);
		smtp_resume(s);
		return;
	}
	if (r->code / 100 != 2) {
		smtp_txn_backend_refused(s, "END-OF-MESSAGE", r);
		smtp_txn_end(s, false);
		smtp_resume(s);
		return;
	}
	rcpt_list(t, to, sizeof(to));
	chomp_reply(r->text, r->len, first, sizeof(first));
	policy_summary(s, checks, sizeof(checks));
	log_info(s->id, "accepted: from=<%s> to=<%s> size=%zu%s%s backend=\"%s\"", t->mail.addr, to,
		 msg_parser_message(t->msg)->size, checks[0] ? " " : "", checks, first);
	smtp_reply_raw(s, r->text, r->len);
	smtp_txn_end(s, true);
	smtp_resume(s);
}

/* received_header - our Received: trace field (proxy mode only: in milter
 * mode the MTA writes its own). XCLIENT has no attribute for TLS, so this
 * is how the backend and the recipient learn the client's protocol and
 * cipher. It goes below the fields policy_headers() wrote (RFC 7208 9.1
 * and RFC 8601 want Received-SPF and Authentication-Results above it). */
static void
received_header(struct smtp_session *s, struct evbuffer *out)
{
	const struct smtp_txn *t = s->txn;
	SSL *ssl = s->tls && s->bev ? bufferevent_openssl_get_ssl(s->bev) : NULL;
	char buf[RECEIVED_MAX];
	struct received_info ri = {
		.helo = s->helo,
		.client_name = s->client_name,
		.client_ip = s->client_ip,
		.by = s->cf->hostname,
		.id = s->id,
		.esmtp = s->esmtp,
		.tls = s->tls,
		.auth = s->auth,
		.utf8 = t->smtputf8,
		.rcpt = t->nrcpts == 1 ? t->rcpts[0].addr : NULL,
		.when = time(NULL),
	};

	if (!s->cf->received_header)
		return;
	if (ssl) {
		ri.tls_version = tls_version(ssl);
		ri.tls_cipher = tls_cipher(ssl);
		ri.tls_bits = tls_cipher_bits(ssl, &ri.tls_alg_bits);
	}
	if (received_build(&ri, buf, sizeof(buf)) > 0)
		msg_stuff_header(out, buf, strlen(buf));
}

/* send_message - the message passed every stage: hand it to the backend. */
static void
send_message(struct smtp_session *s)
{
	struct smtp_txn *t = s->txn;
	struct message *m = msg_parser_message(t->msg);
	struct evbuffer *hdr = evbuffer_new();
	char to[512], checks[512];

	if (!hdr) {
		smtp_txn_refuse(s, "DATA", smtp_reply_text(RPL_LOCAL_ERROR), "memory");
		smtp_txn_abort(s);
		smtp_resume(s);
		return;
	}
	if (t->discard) {
		/* The operator asked for it: the client hears 250, nobody gets it. */
		rcpt_list(t, to, sizeof(to));
		policy_summary(s, checks, sizeof(checks));
		log_info(s->id, "discard: from=<%s> to=<%s> size=%zu %s", t->mail.addr, to, m->size, checks);
		evbuffer_free(hdr);
		smtp_reply(s, "250 2.0.0 Ok: discarded");
		if (t->backend_mail && s->be)
			backend_command(s->be, "RSET", NULL);
		smtp_txn_end(s, true);
		smtp_resume(s);
		return;
	}
	/* One allocation for the whole header section, not one per chain. */
	size_t est = 4096;
	for (size_t i = 0; i < m->nheaders; i++)
		est += m->headers[i].len + 8;
	evbuffer_expand(hdr, est);
	policy_headers(s, hdr);
	received_header(s, hdr);
	for (size_t i = 0; i < m->nheaders; i++) {
		if (policy_drop_header(s, m->headers[i].raw, m->headers[i].len))
			continue;
		msg_stuff_header(hdr, m->headers[i].raw, m->headers[i].len);
	}
	if (m->separator)
		evbuffer_add(hdr, "\r\n", 2);
	backend_message(s->be, hdr, m, message_done);
}

/* eom_policy_done - one of header, eoh, body, eom decided. */
static void
eom_policy_done(struct smtp_session *s, const struct policy_verdict *v)
{
	if (s->closed)
		return;
	switch (v->action) {
	case POLICY_REJECT:
	case POLICY_TEMPFAIL:
		smtp_txn_refuse(s, "END-OF-MESSAGE", v->reply, v->rule);
		smtp_txn_abort(s);
		if (v->disconnect)
			smtp_close(s);
		else
			smtp_resume(s);
		return;
	case POLICY_DISCARD:
		s->txn->discard = true;
		send_message(s);
		return;
	default:
		break;
	}
	if (s->eom_stage == PS_EOM)
		send_message(s);
	else
		eom_stage(s, (enum policy_stage)(s->eom_stage + 1));
}

/* eom_stage - run one of the end-of-message stages in order. */
static void
eom_stage(struct smtp_session *s, enum policy_stage st)
{
	s->eom_stage = st;
	policy_run(s, st, eom_policy_done);
}
