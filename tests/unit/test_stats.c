/*
 * test_stats.c - unit tests of stats.c: exact sums under many threads,
 * every counter present from start in JSON and Prometheus output, label
 * escaping, label bounds.
 */

/* System. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Libraries. */
#include <cmocka.h>
#include <event2/buffer.h>

/* Project. */
#include "stats.h"

#define NTHREADS_OWN 6		/* threads with a worker each */
#define NTHREADS_SHARED 3	/* threads sharing one worker */
#define NITER 60000
#define NRULES 300		/* distinct rule labels, inserted concurrently */

static const char *spf_words[] = {"pass", "fail", "softfail", "neutral", "none", "temperror",
    "permerror"};

struct counter_arg {
	struct stats_worker *w;
};

/* render - output of stats_json (json=1) or stats_prometheus as a C string. */
static char *
render(struct stats *st, int json)
{
	struct evbuffer *b = evbuffer_new();
	size_t len;
	char *s;

	assert_non_null(b);
	assert_int_equal(json ? stats_json(st, b) : stats_prometheus(st, b), 0);
	len = evbuffer_get_length(b);
	s = malloc(len + 1);
	assert_non_null(s);
	evbuffer_remove(b, s, len);
	s[len] = '\0';
	evbuffer_free(b);
	return s;
}

/* has_line - whether text holds exactly this line. */
static int
has_line(const char *text, const char *line)
{
	size_t n = strlen(line);
	const char *p;

	for (p = text; (p = strstr(p, line)) != NULL; p++)
		if ((p == text || p[-1] == '\n') && (p[n] == '\n' || p[n] == '\0'))
			return 1;
	return 0;
}

/* counter_thread - a session loop's worth of counting. */
static void *
counter_thread(void *arg)
{
	struct stats_worker *w = ((struct counter_arg *)arg)->w;
	char rule[48];
	int i;

	stats_gauge_add(w, STATS_CONNECTIONS_ACTIVE, 1);
	for (i = 0; i < NITER; i++) {
		stats_inc(w, STATS_CONNECTIONS_TOTAL);
		stats_gauge_add(w, STATS_CONNECTIONS_ACTIVE, 1);
		stats_add(w, STATS_MESSAGES_ACCEPTED_TOTAL, 2);
		stats_inc_label(w, STATS_SPF_RESULT, spf_words[i % 7]);
		snprintf(rule, sizeof(rule), "rules/%d.rules:%d", i % NRULES, i % NRULES);
		stats_inc_label(w, STATS_RULE_HITS, rule);
		stats_gauge_add(w, STATS_CONNECTIONS_ACTIVE, -1);
	}
	return NULL;
}

struct reader_arg {
	struct stats *st;
	int stop;		/* atomic */
	int rounds;
};

/* reader_thread - the control thread reading while workers count. */
static void *
reader_thread(void *arg)
{
	struct reader_arg *r = arg;
	struct evbuffer *b = evbuffer_new();

	while (!__atomic_load_n(&r->stop, __ATOMIC_RELAXED)) {
		stats_json(r->st, b);
		stats_prometheus(r->st, b);
		evbuffer_drain(b, evbuffer_get_length(b));
		r->rounds++;
	}
	evbuffer_free(b);
	return NULL;
}

/* many_threads_count_exactly - no update lost, with own and shared workers. */
static void
many_threads_count_exactly(void **state)
{
	enum { N = NTHREADS_OWN + NTHREADS_SHARED };
	struct stats *st = stats_new();
	struct counter_arg args[N];
	struct reader_arg r = {st, 0, 0};
	pthread_t t[N], rt;
	struct stats_worker *shared;
	const uint64_t total = (uint64_t)N * NITER;
	char rule[48];
	int i;

	assert_non_null(st);
	shared = stats_worker_new(st);
	for (i = 0; i < N; i++)
		args[i].w = i < NTHREADS_OWN ? stats_worker_new(st) : shared;
	assert_int_equal(pthread_create(&rt, NULL, reader_thread, &r), 0);
	for (i = 0; i < N; i++)
		assert_int_equal(pthread_create(&t[i], NULL, counter_thread, &args[i]), 0);
	for (i = 0; i < N; i++)
		pthread_join(t[i], NULL);
	__atomic_store_n(&r.stop, 1, __ATOMIC_RELAXED);
	pthread_join(rt, NULL);

	assert_int_equal(stats_nworkers(st), NTHREADS_OWN + 1);
	assert_int_equal(stats_value(st, STATS_CONNECTIONS_TOTAL), total);
	assert_int_equal(stats_value(st, STATS_MESSAGES_ACCEPTED_TOTAL), 2 * total);
	assert_int_equal(stats_value(st, STATS_CONNECTIONS_ACTIVE), N);
	assert_int_equal(stats_value(st, STATS_SPF_RESULT), total);
	for (i = 0; i < 7; i++) {
		uint64_t want = 0;
		int j;

		for (j = 0; j < NITER; j++)
			want += (j % 7 == i);
		if (stats_label_value(st, STATS_SPF_RESULT, spf_words[i]) != want * N)
			fail_msg("spf %s: %llu, want %llu", spf_words[i],
			    (unsigned long long)stats_label_value(st, STATS_SPF_RESULT,
			    spf_words[i]), (unsigned long long)(want * N));
	}
	for (i = 0; i < NRULES; i++) {
		snprintf(rule, sizeof(rule), "rules/%d.rules:%d", i, i);
		if (stats_label_value(st, STATS_RULE_HITS, rule) != (uint64_t)N * NITER / NRULES)
			fail_msg("rule %s: %llu", rule,
			    (unsigned long long)stats_label_value(st, STATS_RULE_HITS, rule));
	}
	assert_int_equal(stats_value(st, STATS_RULE_HITS), total);
	print_message("reader rounds during the run: %d\n", r.rounds);
	stats_free(st);
}

/* json_has_every_counter_from_start - zeros and {} before anything counted. */
static void
json_has_every_counter_from_start(void **state)
{
	struct stats *st = stats_new();
	char line[256], *out;
	int i, pass;

	/* Pass 0: no worker at all; pass 1: one idle worker. */
	for (pass = 0; pass < 2; pass++) {
		if (pass == 1)
			stats_worker_new(st);
		out = render(st, 1);
		assert_true(out[0] == '{');
		for (i = 0; i < STATS__COUNT; i++) {
			const struct stats_desc *d = stats_desc(i);

			snprintf(line, sizeof(line), "  \"%s\": %s%s", d->name,
			    d->label ? "{}" : "0", i + 1 < STATS__COUNT ? "," : "");
			if (!has_line(out, line))
				fail_msg("pass %d: missing line [%s] in\n%s", pass, line, out);
		}
		free(out);
	}
	stats_free(st);
}

/* The contract's counter names (DESIGN.md section 7) must all exist. */
static void
contract_names_exist(void **state)
{
	static const char *names[] = {"connections_total", "connections_active",
	    "messages_accepted_total", "messages_rejected_total", "messages_tempfailed_total",
	    "recipients_rejected_total", "relay_denied_total", "auth_success_total",
	    "auth_failure_total", "spf_result_total", "dkim_result_total",
	    "dmarc_result_total", "ratelimit_hits_total", "spoof_detected_total",
	    "rule_hits_total", "backend_errors_total", "messages_discarded_total",
	    "ratelimit_store_errors_total"};
	size_t i;
	int id;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if ((id = stats_lookup(names[i])) == -1 || strcmp(stats_desc(id)->name, names[i]))
			fail_msg("counter %s missing", names[i]);
	assert_int_equal(stats_lookup("no_such_counter"), -1);
	assert_null(stats_desc(STATS__COUNT));
	assert_int_equal(stats_desc(STATS_CONNECTIONS_ACTIVE)->type, STATS_GAUGE);
	assert_string_equal(stats_desc(STATS_SPF_RESULT)->label, "result");
	assert_string_equal(stats_desc(STATS_RULE_HITS)->label, "rule");
}

/* One row: what to count, then a line expected in JSON (json=1) or Prometheus output. */
struct out_row {
	const char *name;
	int json;
	const char *line;
};

static const struct out_row out_rows[] = {
	{"prom help first", 0, "# HELP ravelin_connections_total Client connections accepted."},
	{"prom counter type", 0, "# TYPE ravelin_connections_total counter"},
	{"prom counter sample", 0, "ravelin_connections_total 5"},
	{"prom gauge type", 0, "# TYPE ravelin_connections_active gauge"},
	{"prom gauge sample", 0, "ravelin_connections_active 1"},
	{"prom labelled type", 0, "# TYPE ravelin_spf_result_total counter"},
	{"prom label sample", 0, "ravelin_spf_result_total{result=\"pass\"} 3"},
	{"prom label sample 2", 0, "ravelin_spf_result_total{result=\"fail\"} 1"},
	{"prom label escaping", 0, "ravelin_rule_hits_total{rule=\"a\\\"b\\\\c\\nd\"} 2"},
	{"prom empty labelled has type", 0, "# TYPE ravelin_dkim_result_total counter"},
	{"json plain", 1, "  \"connections_total\": 5,"},
	{"json gauge", 1, "  \"connections_active\": 1,"},
	{"json labelled sorted", 1, "  \"spf_result_total\": {\"fail\": 1, \"pass\": 3},"},
	{"json empty labelled", 1, "  \"dkim_result_total\": {},"},
	{"json escaping", 1, "  \"rule_hits_total\": {\"a\\\"b\\\\c\\nd\": 2, \"tab\\u0009x\": 1},"},
	{"json last line", 1, "}"},
};

/* output_lines - each row's line appears in the right output. */
static void
output_lines(void **state)
{
	struct stats *st = stats_new();
	struct stats_worker *w1 = stats_worker_new(st), *w2 = stats_worker_new(st);
	char *json, *prom;
	size_t i;

	stats_add(w1, STATS_CONNECTIONS_TOTAL, 2);
	stats_add(w2, STATS_CONNECTIONS_TOTAL, 3);
	stats_gauge_add(w1, STATS_CONNECTIONS_ACTIVE, 2);
	stats_gauge_add(w2, STATS_CONNECTIONS_ACTIVE, -1);
	stats_inc_label(w1, STATS_SPF_RESULT, "pass");
	stats_add_label(w2, STATS_SPF_RESULT, "pass", 2);
	stats_inc_label(w2, STATS_SPF_RESULT, "fail");
	stats_inc_label(w1, STATS_RULE_HITS, "a\"b\\c\nd");
	stats_inc_label(w2, STATS_RULE_HITS, "a\"b\\c\nd");
	stats_inc_label(w2, STATS_RULE_HITS, "tab\tx");
	json = render(st, 1);
	prom = render(st, 0);
	for (i = 0; i < sizeof(out_rows) / sizeof(out_rows[0]); i++)
		if (!has_line(out_rows[i].json ? json : prom, out_rows[i].line))
			fail_msg("row \"%s\": no line [%s] in\n%s", out_rows[i].name,
			    out_rows[i].line, out_rows[i].json ? json : prom);
	free(json);
	free(prom);
	stats_free(st);
}

/* prometheus_help_type_before_samples - every family: HELP, TYPE, then its samples only. */
static void
prometheus_help_type_before_samples(void **state)
{
	struct stats *st = stats_new();
	struct stats_worker *w = stats_worker_new(st);
	char *prom, *line, *save = NULL, family[128] = "";
	int help = 0, type = 0, families = 0;

	stats_inc_label(w, STATS_DMARC_RESULT, "pass");
	stats_inc(w, STATS_BACKEND_ERRORS_TOTAL);
	prom = render(st, 0);
	for (line = strtok_r(prom, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (strncmp(line, "# HELP ", 7) == 0) {
			sscanf(line + 7, "%127s", family);
			help = 1;
			type = 0;
			families++;
		} else if (strncmp(line, "# TYPE ", 7) == 0) {
			assert_true(help);
			assert_int_equal(strncmp(line + 7, family, strlen(family)), 0);
			type = 1;
		} else {
			if (!type || strncmp(line, family, strlen(family)) != 0 ||
			    (line[strlen(family)] != ' ' && line[strlen(family)] != '{'))
				fail_msg("sample [%s] outside its family %s", line, family);
		}
	}
	assert_int_equal(families, STATS__COUNT);
	free(prom);
	stats_free(st);
}

/* labels_are_bounded - long labels truncate; too many fold into "_other". */
static void
labels_are_bounded(void **state)
{
	struct stats *st = stats_new();
	struct stats_worker *w = stats_worker_new(st);
	char label[STATS_LABEL_LEN + 50];
	int i;

	memset(label, 'x', sizeof(label) - 1);
	label[sizeof(label) - 1] = '\0';
	stats_inc_label(w, STATS_RULE_HITS, label);
	label[STATS_LABEL_LEN] = '\0';
	assert_int_equal(stats_label_value(st, STATS_RULE_HITS, label), 1);
	for (i = 0; i < STATS_LABELS_MAX + 10; i++) {
		snprintf(label, sizeof(label), "r%d", i);
		stats_inc_label(w, STATS_DKIM_RESULT, label);
	}
	assert_int_equal(stats_label_value(st, STATS_DKIM_RESULT, "_other"), 10);
	assert_int_equal(stats_value(st, STATS_DKIM_RESULT), STATS_LABELS_MAX + 10);
	/* Misuse is harmless: NULL worker, label on an unlabelled counter. */
	stats_inc(NULL, STATS_CONNECTIONS_TOTAL);
	stats_inc_label(w, STATS_CONNECTIONS_TOTAL, "x");
	stats_inc_label(w, STATS_SPF_RESULT, NULL);
	assert_int_equal(stats_value(st, STATS_CONNECTIONS_TOTAL), 0);
	assert_int_equal(stats_label_value(st, STATS_SPF_RESULT, ""), 1);
	stats_free(st);
	stats_free(NULL);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(many_threads_count_exactly),
		cmocka_unit_test(json_has_every_counter_from_start),
		cmocka_unit_test(contract_names_exist),
		cmocka_unit_test(output_lines),
		cmocka_unit_test(prometheus_help_type_before_samples),
		cmocka_unit_test(labels_are_bounded),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
