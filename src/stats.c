/*
 * stats.c - counters and gauges without locks on the hot path.
 *
 * Each counting thread owns a struct stats_worker, cache-line aligned, so
 * an update is one relaxed atomic add on memory no other writer touches.
 * Readers sum every worker with relaxed loads: each value read is one
 * that really existed, and no update is ever lost.
 *
 * Labelled counters live in a per-worker open-addressing hash table of
 * pointers to label entries. Lookups are lock-free (acquire loads of the
 * table and of its slots); only inserting a new label takes the worker's
 * mutex. A full table is replaced by a bigger copy of the pointers; the
 * old one is kept until stats_free, because another thread may still be
 * probing it, and entries never move, so counts survive every resize.
 * Readers take the worker's mutex to walk a table.
 *
 * One table (stats_descs) names every counter, its type, label and help
 * text; both JSON and Prometheus output walk it, so the two never differ.
 *
 * Public:
 *   stats_new(), stats_free(), stats_worker_new(), stats_nworkers(),
 *   stats_add(), stats_gauge_add(), stats_add_label(), stats_value(),
 *   stats_label_value(), stats_desc(), stats_lookup(), stats_json(),
 *   stats_prometheus()
 */

/* System. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Libraries. */
#include <event2/buffer.h>

/* Project. */
#include "stats.h"

/* The contract's names (DESIGN.md section 7); order follows enum stats_id. */
static const struct stats_desc stats_descs[STATS__COUNT] = {
	[STATS_CONNECTIONS_TOTAL] = {"connections_total", STATS_COUNTER, NULL,
	    "Client connections accepted."},
	[STATS_CONNECTIONS_ACTIVE] = {"connections_active", STATS_GAUGE, NULL,
	    "Client connections open now."},
	[STATS_MESSAGES_ACCEPTED_TOTAL] = {"messages_accepted_total", STATS_COUNTER, NULL,
	    "Messages accepted by the backend and acknowledged to the client."},
	[STATS_MESSAGES_REJECTED_TOTAL] = {"messages_rejected_total", STATS_COUNTER, NULL,
	    "Transactions that ended refused with a 5xx reply."},
	[STATS_MESSAGES_TEMPFAILED_TOTAL] = {"messages_tempfailed_total", STATS_COUNTER, NULL,
	    "Transactions that ended refused with a 4xx reply."},
	[STATS_MESSAGES_DISCARDED_TOTAL] = {"messages_discarded_total", STATS_COUNTER, NULL,
	    "Messages acknowledged to the client but discarded by a rule."},
	[STATS_RECIPIENTS_REJECTED_TOTAL] = {"recipients_rejected_total", STATS_COUNTER, NULL,
	    "RCPT commands refused."},
	[STATS_RELAY_DENIED_TOTAL] = {"relay_denied_total", STATS_COUNTER, NULL,
	    "Recipients refused because relaying was not permitted."},
	[STATS_AUTH_SUCCESS_TOTAL] = {"auth_success_total", STATS_COUNTER, NULL,
	    "Successful SMTP AUTH attempts."},
	[STATS_AUTH_FAILURE_TOTAL] = {"auth_failure_total", STATS_COUNTER, NULL,
	    "Failed SMTP AUTH attempts."},
	[STATS_SPF_RESULT] = {"spf_result_total", STATS_COUNTER, "result",
	    "SPF check results."},
	[STATS_DKIM_RESULT] = {"dkim_result_total", STATS_COUNTER, "result",
	    "DKIM verification results (best signature per message)."},
	[STATS_DMARC_RESULT] = {"dmarc_result_total", STATS_COUNTER, "result",
	    "DMARC evaluation results."},
	[STATS_RATELIMIT_HITS_TOTAL] = {"ratelimit_hits_total", STATS_COUNTER, NULL,
	    "Events that went over a rate limit."},
	[STATS_RATELIMIT_STORE_ERRORS_TOTAL] = {"ratelimit_store_errors_total", STATS_COUNTER, NULL,
	    "Rate-limit store failures (e.g. Redis unreachable)."},
	[STATS_SPOOF_DETECTED_TOTAL] = {"spoof_detected_total", STATS_COUNTER, NULL,
	    "Messages whose From: spoofed a local domain from outside."},
	[STATS_RULE_HITS] = {"rule_hits_total", STATS_COUNTER, "rule",
	    "Rule matches by rule name."},
	[STATS_BACKEND_ERRORS_TOTAL] = {"backend_errors_total", STATS_COUNTER, NULL,
	    "Failures to reach or talk to the backend MTA."},
	[STATS_CONFIG_RELOADS_TOTAL] = {"config_reloads_total", STATS_COUNTER, NULL,
	    "Successful configuration reloads."},
	[STATS_CONFIG_RELOAD_FAILURES_TOTAL] = {"config_reload_failures_total", STATS_COUNTER, NULL,
	    "Configuration reloads refused because of an error."},
	[STATS_POLICY_CHECKS] = {"policy_checks_total", STATS_COUNTER, "where",
	    "Stages needing DNS, Redis or DKIM keys: run from cache on the event loop (inline) or on the check pool (pool)."},
};

/* Label under which counts go once a worker holds STATS_LABELS_MAX labels. */
#define STATS_OTHER "_other"

/* One label of one labelled counter in one worker; never moves or dies before stats_free. */
struct stats_label {
	uint64_t count;		/* atomic */
	uint32_t hash;
	size_t len;
	char name[];
};

/* A hash table of label pointers; cap is a power of two, at most half full. */
struct stats_ltab {
	size_t cap;
	struct stats_ltab *retired;	/* older, smaller tables still being probed */
	struct stats_label *slot[];	/* atomic */
};

struct stats_lmap {
	struct stats_ltab *tab;		/* atomic; NULL until the first label */
	size_t n;			/* under the worker's lock */
};

struct stats_worker {
	uint64_t c[STATS__COUNT];	/* atomic; gauges as two's complement */
	struct stats_lmap lmap[STATS__COUNT];
	pthread_mutex_t lock;		/* label inserts and label readers */
	struct stats_worker *next;
	struct stats *st;
};

struct stats {
	pthread_mutex_t lock;		/* the worker list */
	struct stats_worker *workers;
	unsigned nworkers;
};

/* One merged label for output. */
struct stats_pair {
	const char *name;
	uint64_t count;
};

/* stats_new - all counters at zero, no workers yet. */
struct stats *
stats_new(void)
{
	struct stats *st;

	if ((st = calloc(1, sizeof(*st))) == NULL)
		return NULL;
	pthread_mutex_init(&st->lock, NULL);
	return st;
}

/* stats_lmap_free - free a map's entries, its table and the retired tables. */
static void
stats_lmap_free(struct stats_lmap *m)
{
	struct stats_ltab *t, *next;
	size_t i;

	if ((t = m->tab) == NULL)
		return;
	for (i = 0; i < t->cap; i++)
		free(t->slot[i]);
	for (; t != NULL; t = next) {
		next = t->retired;
		free(t);
	}
}

/* stats_free - free everything; no thread may use a worker any more. */
void
stats_free(struct stats *st)
{
	struct stats_worker *w, *next;
	int i;

	if (st == NULL)
		return;
	for (w = st->workers; w != NULL; w = next) {
		next = w->next;
		for (i = 0; i < STATS__COUNT; i++)
			stats_lmap_free(&w->lmap[i]);
		pthread_mutex_destroy(&w->lock);
		free(w);
	}
	pthread_mutex_destroy(&st->lock);
	free(st);
}

/* stats_worker_new - a worker, cache-line aligned so writers never share a line. */
struct stats_worker *
stats_worker_new(struct stats *st)
{
	struct stats_worker *w;
	void *p;

	if (posix_memalign(&p, 64, sizeof(*w)) != 0)
		return NULL;
	w = memset(p, 0, sizeof(*w));
	pthread_mutex_init(&w->lock, NULL);
	w->st = st;
	pthread_mutex_lock(&st->lock);
	w->next = st->workers;
	__atomic_store_n(&st->workers, w, __ATOMIC_RELEASE);
	st->nworkers++;
	pthread_mutex_unlock(&st->lock);
	return w;
}

/* stats_nworkers - number of workers created so far. */
unsigned
stats_nworkers(struct stats *st)
{
	unsigned n;

	pthread_mutex_lock(&st->lock);
	n = st->nworkers;
	pthread_mutex_unlock(&st->lock);
	return n;
}

/* stats_add - add n to an unlabelled counter. */
void
stats_add(struct stats_worker *w, enum stats_id id, uint64_t n)
{
	if (w == NULL || (unsigned)id >= STATS__COUNT)
		return;
	__atomic_fetch_add(&w->c[id], n, __ATOMIC_RELAXED);
}

/* stats_gauge_add - move a gauge up or down. */
void
stats_gauge_add(struct stats_worker *w, enum stats_id id, int64_t delta)
{
	if (w == NULL || (unsigned)id >= STATS__COUNT)
		return;
	__atomic_fetch_add(&w->c[id], (uint64_t)delta, __ATOMIC_RELAXED);
}

/* stats_hash - FNV-1a; labels are short and trusted (rule names, result words). */
static uint32_t
stats_hash(const char *s, size_t len)
{
	uint32_t h = 2166136261u;
	size_t i;

	for (i = 0; i < len; i++) {
		h ^= (unsigned char)s[i];
		h *= 16777619u;
	}
	return h;
}

/* stats_ltab_find - probe one table without locks; NULL when absent. */
static struct stats_label *
stats_ltab_find(struct stats_ltab *t, const char *s, size_t len, uint32_t h)
{
	struct stats_label *e;
	size_t i, mask;

	if (t == NULL)
		return NULL;
	mask = t->cap - 1;
	for (i = h & mask;; i = (i + 1) & mask) {
		if ((e = __atomic_load_n(&t->slot[i], __ATOMIC_ACQUIRE)) == NULL)
			return NULL;
		if (e->hash == h && e->len == len && memcmp(e->name, s, len) == 0)
			return e;
	}
}

/* stats_ltab_place - put e in the first free slot of its probe sequence. */
static void
stats_ltab_place(struct stats_ltab *t, struct stats_label *e)
{
	size_t i, mask = t->cap - 1;

	for (i = e->hash & mask; t->slot[i] != NULL; i = (i + 1) & mask)
		;
	__atomic_store_n(&t->slot[i], e, __ATOMIC_RELEASE);
}

/* stats_lmap_grow - publish a table twice the size; the old one stays probe-able. */
static int
stats_lmap_grow(struct stats_lmap *m)
{
	struct stats_ltab *old = m->tab, *t;
	size_t cap = old ? old->cap * 2 : 16, i;

	if ((t = calloc(1, sizeof(*t) + cap * sizeof(t->slot[0]))) == NULL)
		return -1;
	t->cap = cap;
	t->retired = old;
	if (old != NULL)
		for (i = 0; i < old->cap; i++)
			if (old->slot[i] != NULL)
				stats_ltab_place(t, old->slot[i]);
	__atomic_store_n(&m->tab, t, __ATOMIC_RELEASE);
	return 0;
}

/* stats_lmap_insert - find or add a label under the worker's lock. */
static struct stats_label *
stats_lmap_insert(struct stats_lmap *m, const char *s, size_t len, uint32_t h)
{
	struct stats_label *e;

	if ((e = stats_ltab_find(m->tab, s, len, h)) != NULL)
		return e;
	if (m->n >= STATS_LABELS_MAX && !(len == strlen(STATS_OTHER) &&
	    memcmp(s, STATS_OTHER, len) == 0)) {
		/* Bounded memory: a runaway label set folds into one label. */
		len = strlen(STATS_OTHER);
		return stats_lmap_insert(m, STATS_OTHER, len, stats_hash(STATS_OTHER, len));
	}
	if ((m->tab == NULL || (m->n + 1) * 2 > m->tab->cap) && stats_lmap_grow(m) == -1)
		return NULL;
	if ((e = calloc(1, sizeof(*e) + len + 1)) == NULL)
		return NULL;
	e->hash = h;
	e->len = len;
	memcpy(e->name, s, len);
	stats_ltab_place(m->tab, e);
	m->n++;
	return e;
}

/* stats_add_label - add n to one label of a labelled counter. */
void
stats_add_label(struct stats_worker *w, enum stats_id id, const char *label, uint64_t n)
{
	struct stats_lmap *m;
	struct stats_label *e;
	size_t len;
	uint32_t h;

	if (w == NULL || (unsigned)id >= STATS__COUNT || stats_descs[id].label == NULL)
		return;
	if (label == NULL)
		label = "";
	len = strnlen(label, STATS_LABEL_LEN);
	h = stats_hash(label, len);
	m = &w->lmap[id];
	e = stats_ltab_find(__atomic_load_n(&m->tab, __ATOMIC_ACQUIRE), label, len, h);
	if (e == NULL) {
		pthread_mutex_lock(&w->lock);
		e = stats_lmap_insert(m, label, len, h);
		pthread_mutex_unlock(&w->lock);
		if (e == NULL)
			return;
	}
	__atomic_fetch_add(&e->count, n, __ATOMIC_RELAXED);
}

/* stats_value - sum of one counter or gauge over all workers (labels summed too). */
int64_t
stats_value(struct stats *st, enum stats_id id)
{
	struct stats_worker *w;
	struct stats_ltab *t;
	uint64_t sum = 0;
	size_t i;

	if ((unsigned)id >= STATS__COUNT)
		return 0;
	pthread_mutex_lock(&st->lock);
	for (w = st->workers; w != NULL; w = w->next) {
		if (stats_descs[id].label == NULL) {
			sum += __atomic_load_n(&w->c[id], __ATOMIC_RELAXED);
			continue;
		}
		pthread_mutex_lock(&w->lock);
		if ((t = w->lmap[id].tab) != NULL)
			for (i = 0; i < t->cap; i++)
				if (t->slot[i] != NULL)
					sum += __atomic_load_n(&t->slot[i]->count, __ATOMIC_RELAXED);
		pthread_mutex_unlock(&w->lock);
	}
	pthread_mutex_unlock(&st->lock);
	return (int64_t)sum;
}

/* stats_label_value - sum of one label over all workers. */
uint64_t
stats_label_value(struct stats *st, enum stats_id id, const char *label)
{
	struct stats_worker *w;
	struct stats_label *e;
	uint64_t sum = 0;
	size_t len;
	uint32_t h;

	if ((unsigned)id >= STATS__COUNT || stats_descs[id].label == NULL || label == NULL)
		return 0;
	len = strnlen(label, STATS_LABEL_LEN);
	h = stats_hash(label, len);
	pthread_mutex_lock(&st->lock);
	for (w = st->workers; w != NULL; w = w->next) {
		pthread_mutex_lock(&w->lock);
		if ((e = stats_ltab_find(w->lmap[id].tab, label, len, h)) != NULL)
			sum += __atomic_load_n(&e->count, __ATOMIC_RELAXED);
		pthread_mutex_unlock(&w->lock);
	}
	pthread_mutex_unlock(&st->lock);
	return sum;
}

/* stats_desc - the description of one counter. */
const struct stats_desc *
stats_desc(enum stats_id id)
{
	if ((unsigned)id >= STATS__COUNT)
		return NULL;
	return &stats_descs[id];
}

/* stats_lookup - counter id by JSON name. */
int
stats_lookup(const char *name)
{
	int i;

	for (i = 0; i < STATS__COUNT; i++)
		if (strcmp(stats_descs[i].name, name) == 0)
			return i;
	return -1;
}

/* stats_pair_cmp - order labels by name for stable output. */
static int
stats_pair_cmp(const void *a, const void *b)
{
	return strcmp(((const struct stats_pair *)a)->name, ((const struct stats_pair *)b)->name);
}

/*
 * stats_collect - all labels of id over all workers, merged and sorted.
 * Names point into label entries, which live until stats_free.
 */
static int
stats_collect(struct stats *st, enum stats_id id, struct stats_pair **out, size_t *nout)
{
	struct stats_pair *v = NULL, *nv;
	struct stats_worker *w;
	struct stats_ltab *t;
	size_t n = 0, cap = 0, i, j;
	int rc = 0;

	pthread_mutex_lock(&st->lock);
	for (w = st->workers; w != NULL && rc == 0; w = w->next) {
		pthread_mutex_lock(&w->lock);
		t = w->lmap[id].tab;
		for (i = 0; t != NULL && i < t->cap; i++) {
			if (t->slot[i] == NULL)
				continue;
			if (n == cap) {
				cap = cap ? cap * 2 : 32;
				if ((nv = realloc(v, cap * sizeof(*v))) == NULL) {
					rc = -1;
					break;
				}
				v = nv;
			}
			v[n].name = t->slot[i]->name;
			v[n++].count = __atomic_load_n(&t->slot[i]->count, __ATOMIC_RELAXED);
		}
		pthread_mutex_unlock(&w->lock);
	}
	pthread_mutex_unlock(&st->lock);
	if (rc == -1) {
		free(v);
		return -1;
	}
	if (n > 1)
		qsort(v, n, sizeof(*v), stats_pair_cmp);
	for (i = 0, j = 0; i < n; i++) {
		if (j > 0 && strcmp(v[j - 1].name, v[i].name) == 0)
			v[j - 1].count += v[i].count;
		else
			v[j++] = v[i];
	}
	*out = v;
	*nout = j;
	return 0;
}

/* stats_json_string - append s as a JSON string. */
static void
stats_json_string(struct evbuffer *out, const char *s)
{
	const unsigned char *p;

	evbuffer_add(out, "\"", 1);
	for (p = (const unsigned char *)s; *p; p++) {
		if (*p == '"' || *p == '\\')
			evbuffer_add_printf(out, "\\%c", *p);
		else if (*p == '\n')
			evbuffer_add(out, "\\n", 2);
		else if (*p < 0x20 || *p == 0x7f)
			evbuffer_add_printf(out, "\\u%04x", *p);
		else
			evbuffer_add(out, p, 1);
	}
	evbuffer_add(out, "\"", 1);
}

/* stats_json - every counter, labelled ones as nested objects, one per line. */
int
stats_json(struct stats *st, struct evbuffer *out)
{
	struct stats_pair *v;
	size_t n, j;
	int i;

	evbuffer_add(out, "{\n", 2);
	for (i = 0; i < STATS__COUNT; i++) {
		evbuffer_add(out, "  ", 2);
		stats_json_string(out, stats_descs[i].name);
		if (stats_descs[i].label == NULL) {
			evbuffer_add_printf(out, ": %lld", (long long)stats_value(st, i));
		} else {
			if (stats_collect(st, i, &v, &n) == -1)
				return -1;
			evbuffer_add(out, ": {", 3);
			for (j = 0; j < n; j++) {
				if (j > 0)
					evbuffer_add(out, ", ", 2);
				stats_json_string(out, v[j].name);
				evbuffer_add_printf(out, ": %llu", (unsigned long long)v[j].count);
			}
			evbuffer_add(out, "}", 1);
			free(v);
		}
		evbuffer_add(out, i + 1 < STATS__COUNT ? ",\n" : "\n", i + 1 < STATS__COUNT ? 2 : 1);
	}
	evbuffer_add(out, "}\n", 2);
	return 0;
}

/* stats_prom_escape - append s escaped for a label value or (help=1) HELP text. */
static void
stats_prom_escape(struct evbuffer *out, const char *s, int help)
{
	for (; *s; s++) {
		if (*s == '\\')
			evbuffer_add(out, "\\\\", 2);
		else if (*s == '\n')
			evbuffer_add(out, "\\n", 2);
		else if (*s == '"' && !help)
			evbuffer_add(out, "\\\"", 2);
		else
			evbuffer_add(out, s, 1);
	}
}

/* stats_prometheus - HELP and TYPE for every metric, then its samples. */
int
stats_prometheus(struct stats *st, struct evbuffer *out)
{
	const struct stats_desc *d;
	struct stats_pair *v;
	size_t n, j;
	int i;

	for (i = 0; i < STATS__COUNT; i++) {
		d = &stats_descs[i];
		evbuffer_add_printf(out, "# HELP ravelin_%s ", d->name);
		stats_prom_escape(out, d->help, 1);
		evbuffer_add_printf(out, "\n# TYPE ravelin_%s %s\n", d->name,
		    d->type == STATS_GAUGE ? "gauge" : "counter");
		if (d->label == NULL) {
			evbuffer_add_printf(out, "ravelin_%s %lld\n", d->name,
			    (long long)stats_value(st, i));
			continue;
		}
		if (stats_collect(st, i, &v, &n) == -1)
			return -1;
		for (j = 0; j < n; j++) {
			evbuffer_add_printf(out, "ravelin_%s{%s=\"", d->name, d->label);
			stats_prom_escape(out, v[j].name, 0);
			evbuffer_add_printf(out, "\"} %llu\n", (unsigned long long)v[j].count);
		}
		free(v);
	}
	return 0;
}
