/*
 * policy_internal.h - what policy.c and policy_fields.c share: the
 * per-session policy state and the rule-field callbacks.
 */
#ifndef RAVELIN_POLICY_INTERNAL_H
#define RAVELIN_POLICY_INTERNAL_H

#include <stdbool.h>

#include "check_dkim.h"
#include "check_dmarc.h"
#include "check_spf.h"
#include "msg_addr.h"
#include "rules.h"

struct smtp_session;
struct policy_job;
struct msg_header;
struct evbuffer;

/* Per transaction: created at MAIL, freed when the transaction ends. */
struct policy_state {
	double txn_score;
	struct evbuffer *hdrs;           /* add_header actions */

	bool spf_ran;
	struct spf_outcome spf;

	struct dkimv *dkim;
	bool dkim_body;
	bool dkim_ran;
	enum dkimv_result dkim_best;
	char dkim_domain[256];

	bool dmarc_ran;
	struct dmarcv_outcome dmarc;

	int from_count;
	char from_addr[MSG_ADDR_MAX];
	char from_domain[256];
	char from_name[MSG_ADDR_MAX];
	bool spoof_local;
	bool from_parsed;                /* from_* above are filled (eoh, or eom) */
	bool spoof_display_name;         /* check_spoof.c, at eoh */
	bool spoof_lookalike;
	bool spoof_mismatch;             /* at eom, once DKIM is known */

	const struct msg_header *cur_header;   /* header stage: the field at hand */
	char *body;                      /* the body for `body` rules, read once */
	size_t body_len;
};

extern const struct rules_ops policy_rules_ops;

/* policy_state - the session's state, created on first use. */
struct policy_state *policy_state(struct smtp_session *s);
/* policy_merge_result - add one header-field evaluation to the stage's. */
void policy_merge_result(struct rules_result *into, const struct rules_result *one);
/* policy_busy - a check-pool job holds the session. */
bool policy_busy(const struct smtp_session *s);
/* smtp_txn_release - free the transaction once nothing uses it. */
void smtp_txn_release(struct smtp_session *s);

#endif
