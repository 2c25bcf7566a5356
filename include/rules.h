/*
 * rules.h - ravelin's rule language (ravelin.rules(5), DESIGN.md 5 and 11):
 * load rule files into an immutable compiled rule set, then evaluate one
 * SMTP stage at a time against field values supplied by the caller.
 *
 * A compiled set (struct rules) is read-only after rules_load() and may be
 * evaluated by any number of threads at once. It keeps pointers to the
 * sets in struct rules_env ($mynetworks, $local_domains): those must live
 * at least as long as the rule set (keep them in the same refcounted
 * configuration). Strings in a struct rules_result point into the rule
 * set, so they are valid while the rule set is.
 */
#ifndef RAVELIN_RULES_H
#define RAVELIN_RULES_H

#include <stdbool.h>
#include <stddef.h>

#include "lists.h"

/* SMTP stages, in transaction order (the milter stages). */
enum rules_stage {
	RULES_STAGE_CONNECT,
	RULES_STAGE_HELO,
	RULES_STAGE_MAIL,
	RULES_STAGE_RCPT,
	RULES_STAGE_DATA,
	RULES_STAGE_HEADER,
	RULES_STAGE_EOH,
	RULES_STAGE_BODY,
	RULES_STAGE_EOM,
	RULES_STAGE_COUNT
};

/*
 * Fields a condition can test. The caller supplies their values through
 * rules_ops.get(); "from" is the first stage at which a rule may use the
 * field (rules_load() refuses earlier use). Kinds decide how values
 * compare (see rules_field_kind):
 *   ip       textual IPv4/IPv6 address; == compares addresses; in matches
 *            networks (IPv4-mapped IPv6 counts as IPv4)
 *   domain   compared case-insensitively; in uses domain matching
 *            (".example.org" entries match subdomains)
 *   address  local@domain without angle brackets ("" = null sender),
 *            compared case-insensitively; in also matches "@domain" entries
 *   string   compared case-sensitively with ==/!= (in is case-insensitive)
 *   number   decimal text ("12", "-2.5"); compared numerically
 *   bool     "1" true; "0", "" or no value false; used bare (auth, !tls)
 *   keyword  one of a fixed word list, compared case-insensitively
 *
 * field               kind     from     multi  meaning
 * client.ip           ip       connect         client address (PROXY/XCLIENT-presented)
 * client.ptr          domain   connect         verified reverse name; no value if none
 * client.net          string   connect         client network: a.b.c.0/24 or x:x:x:x::/64;
 *                                              derived from client.ip when get() has none
 * listener            string   connect         listener profile name (inbound, submission)
 * tls                 bool     connect         session is encrypted now
 * helo                domain   helo            HELO/EHLO argument as given
 * helo.is_ours        bool     helo            HELO name is our hostname or our address
 * auth                bool     mail            client authenticated
 * auth.user           string   mail            authenticated user name
 * sender              address  mail            envelope sender
 * sender.domain       domain   mail            its domain ("" for the null sender)
 * spf                 keyword  mail            pass fail softfail neutral none temperror
 *                                              permerror
 * rcpt                address  rcpt     yes    rcpt stage: the recipient being checked;
 *                                              later: every accepted recipient
 * rcpt.domain         domain   rcpt     yes    likewise, their domains
 * rcpt_count          number   rcpt            recipients accepted so far (rcpt stage:
 *                                              including the one being checked)
 * header[Name]        string   header   yes    header stage: the field being processed,
 *                                              when its name is Name (case-insensitive);
 *                                              from eoh: every field named Name. Values
 *                                              are unfolded, leading white space removed
 * from.addr           address  eoh            the From: address
 * from.domain         domain   eoh            its domain
 * from.name           string   eoh            its display name (RFC 2047-decoded)
 * spoof.local         bool     eoh            From: is in local_domains but the client
 *                                              is neither authenticated nor mynetworks
 * spoof.display_name  bool     eoh            display name holds an address of another
 *                                              domain than from.domain
 * spoof.lookalike     bool     eoh            from.domain or sender.domain resembles a
 *                                              local domain without being one
 * spoof.mismatch      bool     eom            From: and MAIL FROM organisations differ
 *                                              and no DKIM signature aligns with From:
 * body                string   eom            the message body (bytes, CRLF lines)
 * size                number   eom            message size in octets
 * dkim                keyword  eom            best signature: pass fail none temperror
 *                                              permerror
 * dkim.domain         domain   eom      yes    d= of every signature that verified
 * dmarc               keyword  eom            pass fail none temperror permerror
 * dmarc.policy        keyword  eom            From: domain's policy: none quarantine
 *                                              reject ("none" when no record)
 * score               number   connect        caller's running score plus what rules
 *                                              of this evaluation added so far
 *
 * To add a field: one enum value here and one row in the table in
 * rules.c (name, kind, first stage, keywords).
 */
enum rules_field {
	RULES_F_CLIENT_IP,
	RULES_F_CLIENT_PTR,
	RULES_F_CLIENT_NET,
	RULES_F_LISTENER,
	RULES_F_TLS,
	RULES_F_HELO,
	RULES_F_HELO_IS_OURS,
	RULES_F_AUTH,
	RULES_F_AUTH_USER,
	RULES_F_SENDER,
	RULES_F_SENDER_DOMAIN,
	RULES_F_SPF,
	RULES_F_RCPT,
	RULES_F_RCPT_DOMAIN,
	RULES_F_RCPT_COUNT,
	RULES_F_HEADER,
	RULES_F_FROM_ADDR,
	RULES_F_FROM_DOMAIN,
	RULES_F_FROM_NAME,
	RULES_F_SPOOF_LOCAL,
	RULES_F_SPOOF_DISPLAY_NAME,
	RULES_F_SPOOF_LOOKALIKE,
	RULES_F_SPOOF_MISMATCH,
	RULES_F_BODY,
	RULES_F_SIZE,
	RULES_F_DKIM,
	RULES_F_DKIM_DOMAIN,
	RULES_F_DMARC,
	RULES_F_DMARC_POLICY,
	RULES_F_SCORE,
	RULES_F_COUNT
};

/* How a field's values compare (see the table above). */
enum rules_kind {
	RULES_K_IP,
	RULES_K_DOMAIN,
	RULES_K_ADDRESS,
	RULES_K_STRING,
	RULES_K_NUMBER,
	RULES_K_BOOL,
	RULES_K_KEYWORD
};

/*
 * One value handed back by rules_ops.get(). s points at len bytes (need
 * not be NUL-terminated, may hold any byte) that stay valid until the next
 * get() call or the end of rules_eval(). buf is scratch space the caller
 * may point s at, e.g. through rules_value_num() and rules_value_bool().
 */
struct rules_value {
	const char *s;
	size_t len;
	char buf[64];
};

/* Callbacks through which rules_eval() learns about the session. */
struct rules_ops {
	/*
	 * Fetch the i-th value (i = 0, 1, ...) of field f into *out; return
	 * false when there is no i-th value. Single-valued fields have only
	 * i = 0. arg is the header name for RULES_F_HEADER, else NULL.
	 * A comparison on a multi-valued field is true when any value
	 * satisfies it; != and !~ are the negation of == and =~ (true when
	 * no value matches, so also when there is no value at all).
	 */
	bool (*get)(void *ctx, enum rules_field f, const char *arg, unsigned i,
		    struct rules_value *out);
	/*
	 * limit(KEY, N/PERIOD): count this event for key and return 1 when it
	 * goes over n per sliding period_s seconds, 0 when not, -1 on a store
	 * error (treated as not over). key is the key fields' first values
	 * joined with '+' as written, addresses and domains lowercased (e.g.
	 * "192.0.2.7+bob@example.org"; a missing value is empty). rule_name
	 * tells rules apart that use the same key. May be NULL when no rule
	 * uses limit(); it may block (Redis): see rules_stage_has_limit().
	 */
	int (*limit)(void *ctx, const char *key, unsigned n, unsigned period_s,
		     const char *rule_name);
};

/* What $mynetworks and $local_domains refer to (either may be NULL = empty). */
struct rules_env {
	const struct lists_netset *mynetworks;
	const struct lists_strset *local_domains;
};

/* Terminal outcome of a stage: the first terminal action that matched. */
enum rules_verdict {
	RULES_VERDICT_NONE,	/* no terminal action: go on */
	RULES_VERDICT_ACCEPT,	/* "accept": stop evaluating this stage */
	RULES_VERDICT_REJECT,	/* 5xx with code/ecode/text */
	RULES_VERDICT_TEMPFAIL, /* 4xx with code/ecode/text */
	RULES_VERDICT_DISCARD	/* accept the message and drop it */
};

/* Room in a rules_result; matches beyond it are counted in *_dropped. */
#define RULES_RESULT_MAX_HITS	 64
#define RULES_RESULT_MAX_HEADERS 16
#define RULES_RESULT_MAX_LOGS	 16
#define RULES_RESULT_MAX_SCORES	 32

/*
 * Everything one rules_eval() call decided. Fixed size, nothing to free
 * (rules_result_clear() only zeroes it); strings point into the rule set.
 */
struct rules_result {
	enum rules_verdict verdict;
	int code;		/* reply code for reject/tempfail, else 0 */
	const char *ecode;	/* enhanced status code, e.g. "5.7.1", else NULL */
	const char *text;	/* reply text, else NULL */
	const char *verdict_rule; /* name of the rule that gave the verdict */

	double score;		/* sum of the "score" actions that ran */
	struct {
		double delta;
		const char *reason; /* the rule's reason, or its name when none */
		const char *rule;
	} scores[RULES_RESULT_MAX_SCORES];
	unsigned nscores, scores_dropped;

	struct {
		const char *name, *value, *rule;
	} headers[RULES_RESULT_MAX_HEADERS]; /* add_header, in rule order */
	unsigned nheaders, headers_dropped;

	struct {
		const char *text, *rule;
	} logs[RULES_RESULT_MAX_LOGS];	/* log actions, in rule order */
	unsigned nlogs, logs_dropped;

	const char *hits[RULES_RESULT_MAX_HITS]; /* every rule whose condition held */
	unsigned nhits, hits_dropped;
};

struct rules;

/*
 * rules_load - parse and compile rule files, in the order given (callers
 * pass a glob sorted by name). Relative @FILE paths resolve from the
 * directory of the rule file naming them. Every error is passed to
 * error(arg, "FILE:LINE:COLUMN: text") (error may be NULL); returns NULL
 * when there was any. An empty rule set is valid.
 */
struct rules *rules_load(const char *const *paths, size_t npaths, const struct rules_env *env,
			 void (*error)(void *arg, const char *msg), void *arg);

/* rules_load_text - the same for one in-memory file called name (tests, -t). */
struct rules *rules_load_text(const char *name, const char *text, const struct rules_env *env,
			      void (*error)(void *arg, const char *msg), void *arg);

/* rules_free - release a rule set; NULL is fine. */
void rules_free(struct rules *rules);

/* rules_count - number of rules; rules_name - name of the i-th (file order). */
size_t rules_count(const struct rules *rules);
const char *rules_name(const struct rules *rules, size_t i);

/* rules_stage_count - number of rules of a stage (0: no need to evaluate). */
size_t rules_stage_count(const struct rules *rules, enum rules_stage stage);

/* rules_stage_has_limit - does any rule of the stage use limit() (may block)? */
bool rules_stage_has_limit(const struct rules *rules, enum rules_stage stage);

/* rules_stage_uses_field - does any rule of the stage read field f? */
bool rules_stage_uses_field(const struct rules *rules, enum rules_stage stage,
			    enum rules_field f);

/*
 * rules_eval - run the stage's rules in order. For each rule whose
 * condition holds: its name is added to hits, then its actions run in
 * order (score, add_header, log accumulate; the first terminal action
 * sets the verdict), and if the rule had a terminal action evaluation
 * stops. *out is overwritten (no need to clear it first). Returns
 * out->verdict.
 */
int rules_eval(const struct rules *rules, enum rules_stage stage, const struct rules_ops *ops,
	       void *ctx, struct rules_result *out);

/* rules_result_clear - reset a result to "nothing happened". */
void rules_result_clear(struct rules_result *out);

/* Helpers for get() implementations: fill *v from text, a number, a bool. */
void rules_value_str(struct rules_value *v, const char *s);
void rules_value_num(struct rules_value *v, double n);
void rules_value_bool(struct rules_value *v, bool b);

/* Names: "connect".."eom", "client.ip".., stage/field from a name (-1 if none). */
const char *rules_stage_name(enum rules_stage stage);
int rules_stage_from_name(const char *name);
const char *rules_field_name(enum rules_field f);
enum rules_kind rules_field_kind(enum rules_field f);

#endif
