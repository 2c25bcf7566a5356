/*
 * policy.h - the policy engine: at each milter-style stage, run the
 * built-in checks and the operator's rules against the facts the session
 * knows, possibly on the check pool, and hand back one verdict.
 */
#ifndef RAVELIN_POLICY_H
#define RAVELIN_POLICY_H

#include <stdbool.h>
#include <stddef.h>

struct smtp_session;
struct evbuffer;

enum policy_stage {
	PS_CONNECT, PS_HELO, PS_MAIL, PS_RCPT, PS_DATA, PS_HEADER, PS_EOH, PS_BODY, PS_EOM,
	PS_COUNT
};

enum policy_action {
	POLICY_CONTINUE,        /* no terminal verdict: go on */
	POLICY_ACCEPT,          /* stop evaluating this stage; go on */
	POLICY_REJECT,          /* 5xx */
	POLICY_TEMPFAIL,        /* 4xx */
	POLICY_DISCARD,         /* accept from the client, drop the message */
};

struct policy_verdict {
	enum policy_action action;
	char reply[512];        /* "550 5.7.1 text" for reject/tempfail */
	char rule[256];         /* which rule or check decided ("relay", "FILE:LINE", ...) */
	bool disconnect;        /* close after the reply (421, connect stage) */
};

/* policy_done_fn - called on the session's loop with the stage's verdict. */
typedef void policy_done_fn(struct smtp_session *s, const struct policy_verdict *v);

/* policy_run - evaluate a stage; done() may run before policy_run returns. */
void policy_run(struct smtp_session *s, enum policy_stage stage, policy_done_fn *done);

/* policy_headers - header fields to prepend to the forwarded message
 * (Authentication-Results, Received-SPF, add_header actions), each
 * "Name: value" with CRLF, dot-stuffed. */
void policy_headers(struct smtp_session *s, struct evbuffer *out);
/* policy_drop_header - true when an incoming field must not be forwarded
 * (an Authentication-Results forged with our authserv-id). */
bool policy_drop_header(struct smtp_session *s, const char *raw, size_t len);
/* policy_summary - the check results for the transaction's log line. */
void policy_summary(struct smtp_session *s, char *buf, size_t len);
/* policy_reset - forget transaction facts (RSET, new MAIL). */
void policy_reset(struct smtp_session *s);
/* policy_session_free - release per-session policy state. */
void policy_session_free(struct smtp_session *s);

const char *policy_stage_name(enum policy_stage st);
/* policy_busy - a check-pool job holds the session (keep its transaction). */
bool policy_busy(const struct smtp_session *s);

struct msg_stream_ops;
/* policy_stream_ops - consumers of the message as it streams in (DKIM),
 * called with the session as argument; NULL when none is needed. */
const struct msg_stream_ops *policy_stream_ops(struct smtp_session *s);

#endif
