/*
 * stats.h - ravelin's counters and gauges (DESIGN.md sections 7 and 11).
 *
 * Every thread that counts owns a struct stats_worker (one per event-loop
 * thread); updates are relaxed atomic adds on that worker's own memory, so
 * the hot path takes no lock and loses no update. Readers (the control
 * thread) sum all workers. A worker may also be shared by several threads
 * (counts stay exact, it is only slower).
 *
 * Labelled counters (spf_result_total{result}, rule_hits_total{rule}, ...)
 * take a dynamic label string: stats_inc_label(w, STATS_SPF_RESULT, "pass").
 *
 * Public:
 *   stats_new(), stats_free(), stats_worker_new(),
 *   stats_inc(), stats_add(), stats_gauge_add(), stats_inc_label(),
 *   stats_add_label(), stats_value(), stats_label_value(), stats_nworkers(),
 *   stats_desc(), stats_lookup(), stats_json(), stats_prometheus()
 */
#ifndef RAVELIN_STATS_H
#define RAVELIN_STATS_H

#include <stdint.h>

struct evbuffer;
struct stats;
struct stats_worker;

/* Every counter and gauge; the order is the output order. */
enum stats_id {
	STATS_CONNECTIONS_TOTAL,
	STATS_CONNECTIONS_ACTIVE,		/* gauge */
	STATS_MESSAGES_ACCEPTED_TOTAL,
	STATS_MESSAGES_REJECTED_TOTAL,
	STATS_MESSAGES_TEMPFAILED_TOTAL,
	STATS_MESSAGES_DISCARDED_TOTAL,
	STATS_RECIPIENTS_REJECTED_TOTAL,
	STATS_RELAY_DENIED_TOTAL,
	STATS_AUTH_SUCCESS_TOTAL,
	STATS_AUTH_FAILURE_TOTAL,
	STATS_SPF_RESULT,			/* labelled: result */
	STATS_DKIM_RESULT,			/* labelled: result */
	STATS_DMARC_RESULT,			/* labelled: result */
	STATS_RATELIMIT_HITS_TOTAL,
	STATS_RATELIMIT_STORE_ERRORS_TOTAL,
	STATS_SPOOF_DETECTED_TOTAL,
	STATS_RULE_HITS,			/* labelled: rule */
	STATS_BACKEND_ERRORS_TOTAL,
	STATS_CONFIG_RELOADS_TOTAL,
	STATS_CONFIG_RELOAD_FAILURES_TOTAL,
	STATS_POLICY_CHECKS,			/* labelled: where (inline, pool) */
	STATS__COUNT
};

enum stats_type { STATS_COUNTER, STATS_GAUGE };

/* One row of the table that drives JSON and Prometheus output. */
struct stats_desc {
	const char *name;	/* JSON key; Prometheus adds "ravelin_" */
	enum stats_type type;
	const char *label;	/* label name, NULL when unlabelled */
	const char *help;	/* Prometheus HELP text */
};

/* Distinct labels kept per labelled counter and worker; more count as "_other". */
#define STATS_LABELS_MAX 4096
/* Labels are truncated to this many bytes. */
#define STATS_LABEL_LEN 200

/* stats_new - an empty set of counters, all zero. NULL on allocation failure. */
struct stats *stats_new(void);
/* stats_free - free the counters and all workers; accepts NULL. */
void stats_free(struct stats *st);
/* stats_worker_new - a worker for one counting thread; freed by stats_free. */
struct stats_worker *stats_worker_new(struct stats *st);
/* stats_nworkers - how many workers exist. */
unsigned stats_nworkers(struct stats *st);

/* Hot path: lock-free, exact. w may be NULL (no-op), for code running without stats. */
void stats_add(struct stats_worker *w, enum stats_id id, uint64_t n);
void stats_gauge_add(struct stats_worker *w, enum stats_id id, int64_t delta);
void stats_add_label(struct stats_worker *w, enum stats_id id, const char *label, uint64_t n);
/* stats_inc - add one to an unlabelled counter. */
static inline void
stats_inc(struct stats_worker *w, enum stats_id id)
{
	stats_add(w, id, 1);
}
/* stats_inc_label - add one to a labelled counter's label. */
static inline void
stats_inc_label(struct stats_worker *w, enum stats_id id, const char *label)
{
	stats_add_label(w, id, label, 1);
}

/* Readers: sums over all workers. */
int64_t stats_value(struct stats *st, enum stats_id id);
uint64_t stats_label_value(struct stats *st, enum stats_id id, const char *label);

/* stats_desc - the table row of id (NULL when out of range). */
const struct stats_desc *stats_desc(enum stats_id id);
/* stats_lookup - id of a counter by its JSON name, or -1. */
int stats_lookup(const char *name);

/* stats_json - append one JSON object with every counter; 0 or -1. */
int stats_json(struct stats *st, struct evbuffer *out);
/* stats_prometheus - append text exposition format 0.0.4; 0 or -1. */
int stats_prometheus(struct stats *st, struct evbuffer *out);

#endif
