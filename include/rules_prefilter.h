/*
 * rules_prefilter.h - literal prefilter for regular-expression rules.
 * Internal to the rules module (rules_parse.c builds it, rules.c uses it).
 *
 * At load time each =~ pattern gets a conservative requirement: a few
 * lower-cased literal strings such that every string the pattern matches
 * contains at least one of them. A rule whose condition can only hold
 * when some field value contains one of its literals is "gated" on that
 * field; per stage, the gated rules of one field share an Aho-Corasick
 * automaton, run once per evaluation over the field's values. A gated
 * rule whose literals do not occur is skipped: its condition is certainly
 * false, so verdicts, hits and scores never change.
 */
#ifndef RAVELIN_RULES_PREFILTER_H
#define RAVELIN_RULES_PREFILTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rules.h"
#include "rules_impl.h"

/* At most this many literals in one requirement. */
#define RULES_PF_MAX_LITS 16
/* Literals are at most this long (longer runs are cut into pieces). */
#define RULES_PF_LIT_MAX  32
/* A requirement whose shortest literal is shorter is not worth a gate. */
#define RULES_PF_MIN_LEN  3

/* A regular expression's requirement: one of lit[0..n-1] occurs in every match. */
struct rules_pf_req {
	unsigned n;
	unsigned char len[RULES_PF_MAX_LITS];
	char lit[RULES_PF_MAX_LITS][RULES_PF_LIT_MAX + 1]; /* lower-case, NUL-terminated */
};

/* One automaton: the gated rules of one stage that test one field. */
struct rules_pf_group {
	struct rules_fref f;	 /* the field (and header name) scanned */
	uint8_t cmap[256];	 /* byte -> class (folds case, see rules_prefilter.c) */
	uint8_t root_idle[256];	 /* 1: the byte leaves the start state where it is */
	unsigned ncls;		 /* classes, the width of a table row */
	uint32_t nstates;
	uint32_t *trans;	 /* [state * ncls + class] = next * ncls, | RULES_PF_REPORT */
	uint32_t *out_start;	 /* per state: first index into outs */
	uint32_t *out_n;	 /* per state: literals ending here (their rules) */
	uint32_t *dict;		 /* per state: nearest proper suffix state with output */
	uint32_t *outs;		 /* stage-local rule indices */
	size_t nrules;		 /* rules gated here */
};

/* Set in a transition target when the target state reports hits. */
#define RULES_PF_REPORT 0x80000000u

/* The prefilter of one stage. */
struct rules_pf_stage {
	int32_t *gate;	   /* per stage rule: its group, or -1 (always evaluated) */
	uint32_t *run_end; /* per gated rule: end of the run of rules in its group */
	unsigned ngroups;
	struct rules_pf_group *groups;
};

/* The prefilter of a rule set (r->pf); NULL when no rule is gated. */
struct rules_pf {
	struct rules_pf_stage st[RULES_STAGE_COUNT];
	size_t maxrules;    /* largest stage: bits of scratch needed */
	unsigned maxgroups; /* most groups in one stage */
	size_t ngated;	    /* rules gated, all stages */
};

/* rules_pf_regex_req - requirement of a pattern compiled with pcre2_flags; NULL = none. */
struct rules_pf_req *rules_pf_regex_req(const char *pat, size_t len, uint32_t pcre2_flags);

/* rules_pf_req_free - release a requirement; NULL is fine. */
void rules_pf_req_free(struct rules_pf_req *req);

/* rules_pf_req_format - "lit1|lit2|..." (sorted) into buf, for tests and debugging. */
void rules_pf_req_format(const struct rules_pf_req *req, char *buf, size_t size);

/* rules_prefilter_build - gate what can be gated in a loaded rule set; NULL = nothing. */
struct rules_pf *rules_prefilter_build(const struct rules *r);

/* rules_prefilter_free - release a prefilter; NULL is fine. */
void rules_prefilter_free(struct rules_pf *pf);

/* rules_pf_scan - run a group's automaton over one value, setting bits of rules hit. */
void rules_pf_scan(const struct rules_pf_group *g, const char *s, size_t len, uint64_t *bits);

/*
 * rules_pf_next - the first rule at or after the gated rule i, in the run
 * of consecutive rules of its group, that had a literal hit; or the end
 * of that run (every rule before it may be skipped).
 */
size_t rules_pf_next(const struct rules_pf_stage *ps, const uint64_t *bits, size_t i);

/*
 * rules_pf_possible - may the stage's i-th rule match when its gate field
 * holds only the value s? True when the rule is not gated. For tests.
 */
bool rules_pf_possible(const struct rules *r, enum rules_stage stage, size_t i, const char *s,
		       size_t len);

/* rules_pf_gated - how many rules of r are gated (0 without a prefilter). */
size_t rules_pf_gated(const struct rules *r);

#endif
