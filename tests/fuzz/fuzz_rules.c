/*
 * fuzz_rules.c - libFuzzer target for the rule language (rules_lex.c,
 * rules_parse.c, rules.c, rules_prefilter*.c).
 *
 * Loads the input with rules_load_text(); a rule set that loads is then
 * evaluated at every stage against fixed session values (two values for
 * the multi-valued fields, a limit() that alternates its answer). Checked:
 * errors and success exclude each other, every error reads
 * "fuzz.rules:LINE:COLUMN: text" with LINE and COLUMN from 1, and results
 * are well formed (verdicts with codes where they need them, counts
 * within their arrays, the verdict rule among the hits).
 *
 * Inputs naming device, proc, sys or run paths are skipped: @FILE would
 * open them (a FIFO or /dev/stdin would block the fuzzer).
 *
 *   make -f tests/fuzz/Makefile build-fuzz/fuzz_rules
 *   build-fuzz/fuzz_rules tests/fuzz/corpus/rules
 */

/* System. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Project. */
#include "lists.h"
#include "rules.h"

/* check - abort with a message so libFuzzer records the input. */
#define check(cond)                                                              \
	do {                                                                     \
		if (!(cond)) {                                                   \
			fprintf(stderr, "fuzz_rules: %s failed at line %d\n", \
				#cond, __LINE__);                                \
			abort();                                                 \
		}                                                                \
	} while (0)

static struct rules_env env;

/* value_for - a plausible value of each field kind. */
static const char *
value_for(enum rules_field f, unsigned i)
{
	switch (rules_field_kind(f)) {
	case RULES_K_IP:
		return i ? "2001:db8::25" : "192.0.2.7";
	case RULES_K_DOMAIN:
		return i ? "mail.example.net" : "example.org";
	case RULES_K_ADDRESS:
		return i ? "" : "bob@example.org";
	case RULES_K_NUMBER:
		return i ? "-2.5" : "12";
	case RULES_K_BOOL:
		return i ? "false" : "true";
	case RULES_K_KEYWORD:
		return i ? "fail" : "pass";
	default:
		return i ? "Viagra \xff\xfe cheap" : "hello world";
	}
}

/* get - rules_ops.get: two values for most fields, one for some. */
static bool
get(void *ctx, enum rules_field f, const char *arg, unsigned i, struct rules_value *out)
{
	if (i > 1 || (i == 1 && (f == RULES_F_SCORE || f == RULES_F_SIZE)))
		return false;
	if (f == RULES_F_HEADER)
		check(arg != NULL);
	rules_value_str(out, value_for(f, i));
	return true;
}

/* limit - rules_ops.limit: over, not over and failing in turn. */
static int
limit(void *ctx, const char *key, unsigned n, unsigned period_s, const char *rule_name)
{
	unsigned *calls = ctx;

	check(key != NULL && rule_name != NULL);
	return (int)((*calls)++ % 3) - 1;
}

static const struct rules_ops ops = { get, limit };

/* on_error - "fuzz.rules:LINE:COLUMN: text". */
static void
on_error(void *arg, const char *msg)
{
	int *errors = arg;
	int line = 0, col = 0, n = 0;

	(*errors)++;
	check(sscanf(msg, "fuzz.rules:%d:%d: %n", &line, &col, &n) == 2 && n > 0);
	check(line >= 1 && col >= 1 && msg[n] != '\0');
}

/* unsafe - the input might name a file that blocks or never ends. */
static int
unsafe(const uint8_t *data, size_t size)
{
	static const char *const bad[] = { "dev", "proc", "sys", "run", "fd" };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (memmem(data, size, bad[i], strlen(bad[i])))
			return 1;
	return 0;
}

/* LLVMFuzzerInitialize - the lists $mynetworks and $local_domains name. */
int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct lists_netset *nets = lists_netset_new();
	struct lists_strset *doms = lists_strset_new();

	lists_netset_add(nets, "192.0.2.0/24");
	lists_strset_add(doms, "example.org");
	env.mynetworks = nets;
	env.local_domains = doms;
	return 0;
}

/* LLVMFuzzerTestOneInput - load the input as a rule file, then run it. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct rules_result res;
	unsigned calls = 0;
	int errors = 0;

	if (size > 8192 || unsafe(data, size))
		return 0;
	char *text = malloc(size + 1);
	check(text != NULL);
	memcpy(text, data, size);
	text[size] = '\0';
	struct rules *r = rules_load_text("fuzz.rules", text, &env, on_error, &errors);
	free(text);
	check((r == NULL) == (errors > 0));
	if (!r)
		return 0;
	for (size_t i = 0; i < rules_count(r); i++)
		check(rules_name(r, i) != NULL);
	for (int st = 0; st < RULES_STAGE_COUNT; st++) {
		if (rules_stage_count(r, st) == 0)
			continue;
		int v = rules_eval(r, st, &ops, &calls, &res);
		check(v == (int)res.verdict);
		check(res.nhits <= RULES_RESULT_MAX_HITS && res.nscores <= RULES_RESULT_MAX_SCORES);
		check(res.nheaders <= RULES_RESULT_MAX_HEADERS && res.nlogs <= RULES_RESULT_MAX_LOGS);
		if (res.verdict == RULES_VERDICT_REJECT)
			check(res.code >= 500 && res.code <= 599);
		if (res.verdict == RULES_VERDICT_TEMPFAIL)
			check(res.code >= 400 && res.code <= 499);
		if (res.verdict != RULES_VERDICT_NONE)
			check(res.verdict_rule != NULL);
	}
	rules_free(r);
	return 0;
}
