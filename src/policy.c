/*
 * policy.c - the policy engine: one verdict per stage.
 *
 * At each milter-style stage the built-in checks run first (relay rights),
 * then the operator's rules. A stage whose work may wait (DNS, Redis) runs
 * on the check pool and its verdict comes back on the session's loop.
 *
 * Public:
 *   policy_run(), policy_headers(), policy_drop_header(), policy_summary(),
 *   policy_reset(), policy_session_free(), policy_stage_name()
 */

/* System. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Library. */
#include <event2/buffer.h>

/* Project. */
#include "check_relay.h"
#include "config.h"
#include "log.h"
#include "policy.h"
#include "server.h"
#include "smtp_reply.h"
#include "smtp_session.h"
#include "stats.h"

/* policy_stage_name - the rule-file name of a stage. */
const char *
policy_stage_name(enum policy_stage st)
{
	static const char *names[PS_COUNT] = { "connect", "helo", "mail", "rcpt", "data",
					       "header", "eoh", "body", "eom" };
	return names[st];
}

/* builtin - the always-on checks of a stage (DESIGN.md section 4). */
static void
builtin(struct smtp_session *s, enum policy_stage st, struct policy_verdict *v)
{
	if (st == PS_RCPT) {
		enum relay_result rr = check_relay(s->cf, s, &s->txn->rcpt);
		if (rr != RELAY_OK) {
			v->action = POLICY_REJECT;
			snprintf(v->reply, sizeof(v->reply), smtp_reply_text(RPL_RELAY_DENIED),
				 s->txn->rcpt.addr);
			snprintf(v->rule, sizeof(v->rule), "relay:%s", check_relay_reason(rr));
			stats_inc(s->w->stats, STATS_RELAY_DENIED_TOTAL);
		}
	}
}

/* policy_run - evaluate a stage; done() may run before this returns. */
void
policy_run(struct smtp_session *s, enum policy_stage stage, policy_done_fn *done)
{
	struct policy_verdict v;

	memset(&v, 0, sizeof(v));
	builtin(s, stage, &v);
	done(s, &v);
}

/* policy_headers - fields prepended to the forwarded message. */
void
policy_headers(struct smtp_session *s, struct evbuffer *out)
{
}

/* policy_drop_header - true for a field that must not be forwarded. */
bool
policy_drop_header(struct smtp_session *s, const char *raw, size_t len)
{
	return false;
}

/* policy_summary - check results for the transaction's log line. */
void
policy_summary(struct smtp_session *s, char *buf, size_t len)
{
	buf[0] = '\0';
}

/* policy_reset - forget transaction facts. */
void
policy_reset(struct smtp_session *s)
{
}

/* policy_stream_ops - none yet. */
const struct msg_stream_ops *
policy_stream_ops(struct smtp_session *s)
{
	return NULL;
}

/* policy_session_free - release per-session policy state. */
void
policy_session_free(struct smtp_session *s)
{
}
