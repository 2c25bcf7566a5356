/*
 * rules_prefilter.c - literal prefilter that lets rules_eval() skip
 * regular-expression rules that certainly cannot match.
 *
 * Three steps, all at load time except the last:
 *  1. rules_pf_regex_req() (rules_prefilter_re.c) works out each
 *     pattern's requirement: a few literals, one of which every match
 *     contains.
 *  2. rules_prefilter_build() lifts requirements from =~ comparisons to
 *     whole rule conditions (&&: the better side; ||: both sides on the
 *     same field; !, !~, limit(): none) and, per stage and field, builds
 *     one Aho-Corasick automaton over the literals of the gated rules.
 *  3. rules.c runs a group's automaton over the field's values when it
 *     first meets a rule of that group (rules_pf_scan()), and skips the
 *     gated rules no literal of which occurred.
 *
 * Case: literals are lower-cased and the automaton folds ASCII case of
 * the subject, so case-sensitive patterns get a slightly weaker filter.
 * Patterns are compiled with PCRE2_UTF, where caseless 's' also matches
 * U+017F (C5 BF) and 'k' matches U+212A (E2 84 AA) - the only non-ASCII
 * characters that fold to ASCII (checked against PCRE2 10.42 for every
 * code point). The automaton therefore reads byte BF as 's', AA as 'k'
 * and ignores bytes C5, E2 and 84: that maps every subject through a
 * byte homomorphism that sends each character matching a literal's
 * letter to that letter, so no match is ever missed (other bytes can
 * only produce extra candidates).
 *
 * Public (internal to the rules module):
 *   rules_prefilter_build(), rules_prefilter_free(), rules_pf_scan(),
 *   rules_pf_next(), rules_pf_possible(), rules_pf_gated()
 */

/* System. */
#include <stdlib.h>
#include <string.h>

/* Project. */
#include "rules.h"
#include "rules_impl.h"
#include "rules_prefilter.h"

/* Classes every automaton has: bytes in no literal, and bytes it ignores. */
#define PF_CLS_OTHER 0
#define PF_CLS_SKIP  1

/* A rule condition's requirement: literals (pointing into regex requirements) on a field. */
struct pf_lift {
	const struct rules_fref *f;
	unsigned n;
	const char *lit[RULES_PF_MAX_LITS];
	unsigned len[RULES_PF_MAX_LITS];
};

/* lift_min - shortest literal of a lifted requirement. */
static unsigned
lift_min(const struct pf_lift *l)
{
	unsigned m = l->n ? l->len[0] : 0;

	for (unsigned i = 1; i < l->n; i++)
		if (l->len[i] < m)
			m = l->len[i];
	return m;
}

/* same_fref - do two field references read the same values? */
static bool
same_fref(const struct rules_fref *a, const struct rules_fref *b)
{
	if (a->field != b->field)
		return false;
	if (a->arg == NULL || b->arg == NULL)
		return a->arg == b->arg;
	return strcmp(a->arg, b->arg) == 0;
}

/* has_limit - does the tree call limit() anywhere (a side effect we must keep)? */
static bool
has_limit(const struct rules_node *n)
{
	if (n == NULL)
		return false;
	if (n->type == RULES_N_LIMIT)
		return true;
	return has_limit(n->a) || has_limit(n->b);
}

/* lift - a literal requirement for the truth of a condition; false when none. */
static bool
lift(const struct rules_node *n, struct pf_lift *out)
{
	struct pf_lift a, b;

	switch (n->type) {
	case RULES_N_CMP:
		/* score changes during an evaluation: never gate on it. */
		if (n->op != RULES_OP_MATCH || n->pf_req == NULL || n->f.field == RULES_F_SCORE)
			return false;
		out->f = &n->f;
		out->n = n->pf_req->n;
		for (unsigned i = 0; i < out->n; i++) {
			out->lit[i] = n->pf_req->lit[i];
			out->len[i] = n->pf_req->len[i];
		}
		return true;
	case RULES_N_AND:
		/* Both must hold: either side's requirement will do; take the better. */
		if (!lift(n->a, &a))
			return lift(n->b, out);
		if (!lift(n->b, &b) || lift_min(&a) > lift_min(&b) ||
		    (lift_min(&a) == lift_min(&b) && a.n <= b.n))
			*out = a;
		else
			*out = b;
		return true;
	case RULES_N_OR:
		/* One of them must hold: both need literals, on the same values. */
		if (!lift(n->a, &a) || !lift(n->b, &b) || !same_fref(a.f, b.f))
			return false;
		*out = a;
		for (unsigned i = 0; i < b.n; i++) {
			bool dup = false;

			for (unsigned j = 0; j < out->n && !dup; j++)
				dup = out->len[j] == b.len[i] && memcmp(out->lit[j], b.lit[i], b.len[i]) == 0;
			if (dup)
				continue;
			if (out->n >= RULES_PF_MAX_LITS)
				return false;
			out->lit[out->n] = b.lit[i];
			out->len[out->n++] = b.len[i];
		}
		return true;
	default:
		/* !, !~, ==, in, bare fields, true: nothing to require. */
		return false;
	}
}

/* One literal of a group being built. */
struct pf_lit {
	const char *s;
	unsigned len;
	uint32_t rule; /* stage-local index */
};

/* A group being built. */
struct pf_build {
	const struct rules_fref *f;
	struct pf_lit *lits;
	size_t nlits, cap;
	size_t nrules;
};

/* group_free - release one group's tables. */
static void
group_free(struct rules_pf_group *g)
{
	free(g->trans);
	free(g->out_start);
	free(g->out_n);
	free(g->dict);
	free(g->outs);
}

/* fold - the class-map view of a literal byte (literals are lower-case already). */
static unsigned char
fold(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? (unsigned char)(c - 'A' + 'a') : c;
}

/* group_classes - byte classes: OTHER, SKIP, then one per byte used by a literal. */
static void
group_classes(struct rules_pf_group *g, const struct pf_build *b)
{
	memset(g->cmap, PF_CLS_OTHER, sizeof(g->cmap));
	g->ncls = 2;
	for (size_t i = 0; i < b->nlits; i++)
		for (unsigned k = 0; k < b->lits[i].len; k++) {
			unsigned char c = fold((unsigned char)b->lits[i].s[k]);

			if (g->cmap[c] == PF_CLS_OTHER)
				g->cmap[c] = (uint8_t)g->ncls++;
		}
	/* Subject bytes fold like the literals: ASCII case, then U+017F and U+212A. */
	for (unsigned c = 'A'; c <= 'Z'; c++)
		g->cmap[c] = g->cmap[c - 'A' + 'a'];
	g->cmap[0xbf] = g->cmap['s'];
	g->cmap[0xaa] = g->cmap['k'];
	g->cmap[0xc5] = PF_CLS_SKIP;
	g->cmap[0xe2] = PF_CLS_SKIP;
	g->cmap[0x84] = PF_CLS_SKIP;
}

/* group_build - the Aho-Corasick automaton of one group; -1 on ENOMEM. */
static int
group_build(struct rules_pf_group *g, const struct pf_build *b)
{
	size_t maxst = 1, nout = 0, qh = 0, qt = 0;
	uint32_t *fail = NULL, *queue = NULL, *fill = NULL;
	unsigned nc;
	int rc = -1;

	memset(g, 0, sizeof(*g));
	g->f = *b->f;
	g->nrules = b->nrules;
	group_classes(g, b);
	nc = g->ncls;
	for (size_t i = 0; i < b->nlits; i++)
		maxst += b->lits[i].len;
	if (maxst >= RULES_PF_REPORT / nc)
		return -1;
	g->trans = calloc(maxst * nc, sizeof(*g->trans));
	g->out_start = calloc(maxst, sizeof(uint32_t));
	g->out_n = calloc(maxst, sizeof(uint32_t));
	g->dict = calloc(maxst, sizeof(uint32_t));
	g->outs = calloc(b->nlits ? b->nlits : 1, sizeof(uint32_t));
	fail = calloc(maxst, sizeof(uint32_t));
	queue = calloc(maxst, sizeof(uint32_t));
	fill = calloc(maxst, sizeof(uint32_t));
	if (!g->trans || !g->out_start || !g->out_n || !g->dict || !g->outs || !fail || !queue ||
	    !fill)
		goto out;

	/* The trie: 0 means "no edge yet" (the root is never a child). */
	g->nstates = 1;
	for (size_t i = 0; i < b->nlits; i++) {
		uint32_t s = 0;

		for (unsigned k = 0; k < b->lits[i].len; k++) {
			uint32_t *t = &g->trans[(size_t)s * nc + g->cmap[fold((unsigned char)b->lits[i].s[k])]];

			if (*t == 0)
				*t = g->nstates++;
			s = *t;
		}
		g->out_n[s]++;
	}
	for (uint32_t s = 0; s < g->nstates; s++) {
		g->out_start[s] = (uint32_t)nout;
		nout += g->out_n[s];
	}
	for (size_t i = 0; i < b->nlits; i++) {
		uint32_t s = 0;

		for (unsigned k = 0; k < b->lits[i].len; k++)
			s = g->trans[(size_t)s * nc + g->cmap[fold((unsigned char)b->lits[i].s[k])]];
		g->outs[g->out_start[s] + fill[s]++] = b->lits[i].rule;
	}

	/* Breadth first: failure links, dictionary links, full transitions. */
	queue[qt++] = 0;
	while (qh < qt) {
		uint32_t s = queue[qh++];

		for (unsigned c = 2; c < nc; c++) {
			uint32_t *t = &g->trans[(size_t)s * nc + c];
			uint32_t u = *t;

			if (u != 0) {
				uint32_t f = s == 0 ? 0 : g->trans[(size_t)fail[s] * nc + c];

				fail[u] = f;
				g->dict[u] = g->out_n[f] ? f : g->dict[f];
				queue[qt++] = u;
			} else {
				*t = s == 0 ? 0 : g->trans[(size_t)fail[s] * nc + c];
			}
		}
		g->trans[(size_t)s * nc + PF_CLS_OTHER] = 0;
		g->trans[(size_t)s * nc + PF_CLS_SKIP] = s; /* ignored byte: stay */
	}
	/* Premultiply targets by the row width; flag the states that report. */
	for (size_t i = 0; i < (size_t)g->nstates * nc; i++) {
		uint32_t u = g->trans[i];

		g->trans[i] = u * nc | (g->out_n[u] || g->dict[u] ? RULES_PF_REPORT : 0);
	}
	for (unsigned c = 0; c < 256; c++)
		g->root_idle[c] = g->trans[g->cmap[c]] == 0;
	rc = 0;
out:
	free(fail);
	free(queue);
	free(fill);
	if (rc < 0)
		group_free(g);
	return rc;
}

/* build_add - add a rule's literals to the group of its field, creating it. */
static int
build_add(struct pf_build **groups, unsigned *ngroups, const struct pf_lift *l, uint32_t rule,
	  int32_t *gate)
{
	struct pf_build *b = NULL;
	unsigned g;

	for (g = 0; g < *ngroups; g++)
		if (same_fref((*groups)[g].f, l->f)) {
			b = &(*groups)[g];
			break;
		}
	if (b == NULL) {
		struct pf_build *ng = realloc(*groups, (*ngroups + 1) * sizeof(*ng));

		if (ng == NULL)
			return -1;
		*groups = ng;
		b = &ng[*ngroups];
		memset(b, 0, sizeof(*b));
		b->f = l->f;
		g = (*ngroups)++;
	}
	if (b->nlits + l->n > b->cap) {
		size_t cap = b->cap ? b->cap * 2 : 64;
		struct pf_lit *nl;

		while (cap < b->nlits + l->n)
			cap *= 2;
		if ((nl = realloc(b->lits, cap * sizeof(*nl))) == NULL)
			return -1;
		b->lits = nl;
		b->cap = cap;
	}
	for (unsigned i = 0; i < l->n; i++)
		b->lits[b->nlits++] = (struct pf_lit){ l->lit[i], l->len[i], rule };
	b->nrules++;
	*gate = (int32_t)g;
	return 0;
}

/* build_stage - gates and automata of one stage; -1 on ENOMEM. */
static int
build_stage(struct rules_pf *pf, const struct rules *r, int stage)
{
	struct rules_pf_stage *ps = &pf->st[stage];
	struct pf_build *groups = NULL;
	unsigned ngroups = 0;
	int rc = -1;

	if (r->nstage[stage] == 0)
		return 0;
	if ((ps->gate = malloc(r->nstage[stage] * sizeof(*ps->gate))) == NULL)
		return -1;
	for (size_t i = 0; i < r->nstage[stage]; i++) {
		const struct rules_rule *rule = r->stage[stage][i];
		struct pf_lift l;

		ps->gate[i] = -1;
		if (has_limit(rule->cond) || !lift(rule->cond, &l) || l.n == 0 ||
		    lift_min(&l) < RULES_PF_MIN_LEN)
			continue;
		if (build_add(&groups, &ngroups, &l, (uint32_t)i, &ps->gate[i]) < 0)
			goto out;
		pf->ngated++;
	}
	if ((ps->run_end = malloc(r->nstage[stage] * sizeof(*ps->run_end))) == NULL)
		goto out;
	for (size_t i = r->nstage[stage]; i-- > 0;)
		ps->run_end[i] = i + 1 < r->nstage[stage] && ps->gate[i + 1] == ps->gate[i] ?
					 ps->run_end[i + 1] :
					 (uint32_t)(i + 1);
	if (ngroups > 0 && (ps->groups = calloc(ngroups, sizeof(*ps->groups))) == NULL)
		goto out;
	for (unsigned g = 0; g < ngroups; g++) {
		if (group_build(&ps->groups[g], &groups[g]) < 0)
			goto out;
		ps->ngroups++;
	}
	if (r->nstage[stage] > pf->maxrules)
		pf->maxrules = r->nstage[stage];
	if (ps->ngroups > pf->maxgroups)
		pf->maxgroups = ps->ngroups;
	rc = 0;
out:
	for (unsigned g = 0; g < ngroups; g++)
		free(groups[g].lits);
	free(groups);
	return rc;
}

/* rules_prefilter_build - gate what can be gated in a loaded rule set; NULL = nothing. */
struct rules_pf *
rules_prefilter_build(const struct rules *r)
{
	struct rules_pf *pf = calloc(1, sizeof(*pf));

	if (pf == NULL)
		return NULL;
	for (int s = 0; s < RULES_STAGE_COUNT; s++)
		if (build_stage(pf, r, s) < 0) {
			/* Out of memory: run without a prefilter, which is always correct. */
			rules_prefilter_free(pf);
			return NULL;
		}
	if (pf->ngated == 0) {
		rules_prefilter_free(pf);
		return NULL;
	}
	return pf;
}

/* rules_prefilter_free - release a prefilter; NULL is fine. */
void
rules_prefilter_free(struct rules_pf *pf)
{
	if (pf == NULL)
		return;
	for (int s = 0; s < RULES_STAGE_COUNT; s++) {
		for (unsigned g = 0; g < pf->st[s].ngroups; g++)
			group_free(&pf->st[s].groups[g]);
		free(pf->st[s].groups);
		free(pf->st[s].gate);
		free(pf->st[s].run_end);
	}
	free(pf);
}

/* report - mark the rules of every literal ending at state s. */
static void
report(const struct rules_pf_group *g, uint32_t s, uint64_t *bits)
{
	for (; s != 0; s = g->dict[s])
		for (uint32_t k = 0; k < g->out_n[s]; k++) {
			uint32_t i = g->outs[g->out_start[s] + k];

			bits[i / 64] |= (uint64_t)1 << (i % 64);
		}
}

/* rules_pf_scan - run a group's automaton over one value, setting bits of rules hit. */
void
rules_pf_scan(const struct rules_pf_group *g, const char *s, size_t len, uint64_t *bits)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + len;
	const uint32_t *t = g->trans;
	const uint8_t *cmap = g->cmap;
	uint32_t st = 0;

	for (; p < end; p++) {
		/* Most text never leaves the start state: skip it cheaply. */
		if (st == 0) {
			while (p < end && g->root_idle[*p])
				p++;
			if (p == end)
				break;
		}
		st = t[st + cmap[*p]];
		if (st & RULES_PF_REPORT) {
			st &= ~RULES_PF_REPORT;
			report(g, st / g->ncls, bits);
		}
	}
}

/* rules_pf_next - first rule with a hit in the run from gated rule i, or the run's end. */
size_t
rules_pf_next(const struct rules_pf_stage *ps, const uint64_t *bits, size_t i)
{
	size_t end = ps->run_end[i];

	while (i < end) {
		uint64_t w = bits[i / 64] >> (i % 64);

		if (w != 0) {
			i += (size_t)__builtin_ctzll(w);
			return i < end ? i : end;
		}
		i = (i / 64 + 1) * 64;
	}
	return end;
}

/* rules_pf_possible - may the stage's i-th rule match on the single value s? */
bool
rules_pf_possible(const struct rules *r, enum rules_stage stage, size_t i, const char *s,
		  size_t len)
{
	const struct rules_pf_stage *ps;
	uint64_t *bits;
	bool hit;

	if (r == NULL || r->pf == NULL || (unsigned)stage >= RULES_STAGE_COUNT ||
	    i >= r->nstage[stage])
		return true;
	ps = &r->pf->st[stage];
	if (ps->gate == NULL || ps->gate[i] < 0)
		return true;
	if ((bits = calloc(r->nstage[stage] / 64 + 1, sizeof(*bits))) == NULL)
		return true;
	rules_pf_scan(&ps->groups[ps->gate[i]], s, len, bits);
	hit = (bits[i / 64] >> (i % 64)) & 1;
	free(bits);
	return hit;
}

/* rules_pf_gated - how many rules of r are gated. */
size_t
rules_pf_gated(const struct rules *r)
{
	return r && r->pf ? r->pf->ngated : 0;
}
