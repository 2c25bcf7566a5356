/*
 * rules_impl.h - the compiled form of a rule set, shared by rules_parse.c
 * (which builds it) and rules.c (which evaluates it). Not for other
 * modules: use rules.h.
 */
#ifndef RAVELIN_RULES_IMPL_H
#define RAVELIN_RULES_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "lists.h"
#include "rules.h"

struct rules_pf;
struct rules_pf_req;

/* Comparison operators. */
enum rules_op {
	RULES_OP_MATCH,	  /* =~ */
	RULES_OP_NOMATCH, /* !~ */
	RULES_OP_EQ,
	RULES_OP_NE,
	RULES_OP_LT,
	RULES_OP_LE,
	RULES_OP_GT,
	RULES_OP_GE,
	RULES_OP_IN
};

/* Condition tree nodes. */
enum rules_node_type {
	RULES_N_TRUE,  /* the word "true" */
	RULES_N_AND,   /* a && b */
	RULES_N_OR,    /* a || b */
	RULES_N_NOT,   /* !a */
	RULES_N_CMP,   /* field op value */
	RULES_N_BARE,  /* field used bare: boolean true / has a non-empty value */
	RULES_N_LIMIT  /* limit(keys, n/period) */
};

/* One field reference: the field and, for header[Name], the name. */
struct rules_fref {
	enum rules_field field;
	const char *arg;
};

struct rules_node {
	enum rules_node_type type;
	struct rules_node *a, *b;	 /* AND/OR operands; NOT operand in a */
	struct rules_fref f;		 /* CMP, BARE */
	enum rules_op op;		 /* CMP */
	const char *str;		 /* CMP ==/!=: value text (NUL-terminated) */
	size_t len;
	double num;			 /* CMP on numbers: the value */
	pcre2_code *re;			 /* CMP =~ !~ */
	struct rules_pf_req *pf_req;	 /* CMP =~ !~: literals every match holds, or NULL */
	const struct lists_strset *strs; /* CMP in: strings (may be NULL) */
	const struct lists_netset *nets; /* CMP in: networks (may be NULL) */
	struct rules_fref *keys;	 /* LIMIT */
	unsigned nkeys, limit_n, limit_period;
};

/* Actions. */
enum rules_act_type {
	RULES_A_ACCEPT,
	RULES_A_REJECT,
	RULES_A_TEMPFAIL,
	RULES_A_DISCARD,
	RULES_A_SCORE,
	RULES_A_ADD_HEADER,
	RULES_A_LOG
};

struct rules_action {
	enum rules_act_type type;
	int code;	   /* REJECT, TEMPFAIL */
	const char *ecode; /* REJECT, TEMPFAIL */
	const char *text;  /* reply text, score reason (may be NULL), header value, log text */
	const char *name;  /* ADD_HEADER: header name */
	double score;	   /* SCORE */
};

struct rules_rule {
	const char *name; /* label or FILE:LINE */
	enum rules_stage stage;
	struct rules_node *cond;
	struct rules_action *acts;
	unsigned nacts;
};

/* Something the rule set owns, freed by rules_free(). */
struct rules_mem {
	struct rules_mem *next;
	void (*dtor)(void *);
	void *obj;
};

/* An @FILE already loaded for this rule set (each file is read once). */
struct rules_file {
	struct rules_file *next;
	const char *path;
	const struct lists_strset *strs;
	const struct lists_netset *nets;
};

struct rules {
	struct rules_rule **rule; /* all rules, file order */
	size_t nrules, caprules;
	struct rules_rule **stage[RULES_STAGE_COUNT];
	size_t nstage[RULES_STAGE_COUNT];
	bool has_limit[RULES_STAGE_COUNT];
	uint64_t fields[RULES_STAGE_COUNT]; /* bit per rules_field read */
	struct rules_env env;
	struct rules_mem *mem;
	struct rules_file *files; /* memory owned through mem */
	struct rules_pf *pf;	  /* literal prefilter (rules_prefilter.h), or NULL */
};

/* Kinds and keywords of the field table (rules.c). */
struct rules_field_info {
	const char *name;
	enum rules_kind kind;
	enum rules_stage from;
	const char *const *keywords; /* RULES_K_KEYWORD: NULL-terminated */
};
extern const struct rules_field_info rules_fields[RULES_F_COUNT];

#endif
