/*
 * smtp_internal.h - what the parts of the server-side session share:
 * smtp_session.c (commands), smtp_data.c (DATA and transactions),
 * smtp_tls.c (STARTTLS, implicit TLS) and smtp_auth.c (AUTH).
 */
#ifndef RAVELIN_SMTP_INTERNAL_H
#define RAVELIN_SMTP_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "backend.h"
#include "policy.h"
#include "smtp_reply.h"
#include "smtp_session.h"

struct bufferevent;

/* Replies. */
void smtp_reply(struct smtp_session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void smtp_reply_id(struct smtp_session *s, enum smtp_reply_id id);
void smtp_reply_raw(struct smtp_session *s, const char *text, size_t len);
void smtp_error(struct smtp_session *s, enum smtp_reply_id id);

/* Flow. */
void smtp_resume(struct smtp_session *s);
void smtp_close(struct smtp_session *s);
void smtp_drop(struct smtp_session *s);
void smtp_event_cb(struct bufferevent *bev, short what, void *arg);
void smtp_greet(struct smtp_session *s);
void smtp_addr_format(struct smtp_session *s);
void smtp_proxy_input(struct smtp_session *s);
void smtp_bev_install(struct smtp_session *s, struct bufferevent *bev);

/* DATA and transactions (smtp_data.c). */
void smtp_data_start(struct smtp_session *s);
void smtp_data_input(struct smtp_session *s);
/* smtp_bdat_start / smtp_bdat_skip - read the announced chunk into the
 * message, or consume it unread and then give reply (-1: none). */
void smtp_bdat_start(struct smtp_session *s);
void smtp_bdat_skip(struct smtp_session *s, int reply);
void smtp_bdat_input(struct smtp_session *s);
/* smtp_txn_abort - forget the transaction here and at the backend (RSET). */
void smtp_txn_abort(struct smtp_session *s);
/* smtp_txn_end - count and free the transaction; accepted or not. */
void smtp_txn_end(struct smtp_session *s, bool accepted);
void smtp_txn_release(struct smtp_session *s);
/* smtp_txn_refuse - answer a refusal of MAIL/DATA: reply, log, remember. */
void smtp_txn_refuse(struct smtp_session *s, const char *stage, const char *reply, const char *why);
/* smtp_rcpt_refuse - answer a refusal of one recipient. */
void smtp_rcpt_refuse(struct smtp_session *s, const char *reply, const char *why);
/* smtp_txn_backend_refused - relay a backend 4xx/5xx and log it. */
void smtp_txn_backend_refused(struct smtp_session *s, const char *stage, const struct backend_reply *r);
/* smtp_backend_usable - false (after answering and closing) when the
 * backend could not be reached or failed; r == NULL means fine. */
bool smtp_backend_usable(struct smtp_session *s, const struct backend_reply *r, const char *stage);
/* smtp_policy_refuse - a policy verdict refused a command. */
void smtp_policy_refuse(struct smtp_session *s, int stage, const struct policy_verdict *v);
bool smtp_path_is_utf8_ok(struct smtp_session *s);

/* TLS (smtp_tls.c). */
struct bufferevent *smtp_tls_wrap(struct smtp_session *s, int fd);
bool smtp_tls_offer(struct smtp_session *s);
int smtp_tls_check(struct smtp_session *s, const char *arg);
void smtp_tls_proceed(struct smtp_session *s);
void smtp_tls_connected(struct smtp_session *s);
/* smtp_tls_failed - the handshake failed: log why, let the alert out, close. */
void smtp_tls_failed(struct smtp_session *s, struct bufferevent *bev);

/* AUTH (smtp_auth.c). */
void smtp_auth_offer(struct smtp_session *s);
int smtp_auth_check(struct smtp_session *s, const char *arg);
void smtp_auth_proceed(struct smtp_session *s);
void smtp_auth_line(struct smtp_session *s, const char *line, size_t len);
void smtp_auth_free(struct smtp_session *s);
bool smtp_auth_sender_ok(struct smtp_session *s, const struct smtp_path *p);

#endif
