/*
 * rules_prefilter_re.c - the literal requirement of a regular expression,
 * for the rule prefilter (rules_prefilter.c).
 *
 * Reads a safe subset of PCRE2 syntax - literals, escaped punctuation,
 * \b \B ^ $ (zero width), classes and \d \w \s . (any character),
 * quantifiers, ( ) and (?: ) groups with alternation - and works out a
 * few lower-cased literals one of which every match contains. Exact
 * strings of consecutive items are multiplied out (colou?r: color,
 * colour) up to RULES_PF_MAX_LITS strings of RULES_PF_LIT_MAX bytes; an
 * item that is not exact ends the run, and the best run or group
 * requirement of a branch (longest shortest literal) is kept.
 * Alternatives unite their requirements; one without any leaves the whole
 * without. Anything not understood (flags, lookaround, back references,
 * \Q..\E, \x, \p, POSIX classes, odd braces) gives no requirement: a
 * missing gate costs time, a wrong one would cost correctness.
 * Non-ASCII bytes are never part of a literal (caseless UTF-8 folding).
 *
 * Public (internal to the rules module):
 *   rules_pf_regex_req(), rules_pf_req_free(), rules_pf_req_format()
 */

/* System. */
#include <stdlib.h>
#include <string.h>

/* Libraries. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

/* Project. */
#include "rules_prefilter.h"

/* Deepest group nesting we follow (deeper: no requirement). */
#define PF_DEPTH_MAX 10

/* A set of literal strings (same layout as a requirement). */
typedef struct rules_pf_req pf_set;

/* What one regex item (atom, group, branch) can match. */
struct pf_info {
	bool exact;   /* e holds every string it can match */
	bool brk;     /* exact, but the literal run ends after it (x+, x{2,}) */
	bool has_req; /* not exact: every match contains one of r */
	pf_set e, r;
};

/* The pattern being read. */
struct pf_parse {
	const unsigned char *p, *end;
	int depth;
	bool bail; /* something we do not understand: no requirement */
};

/* A concatenation being read: the current literal run and the best factor. */
struct pf_seq {
	pf_set run;   /* exact strings of the items since the last break */
	pf_set best;  /* best requirement seen so far */
	bool has_best;
	bool flushed; /* a break happened: the branch is not exact */
};

static void pf_alt(struct pf_parse *pp, struct pf_info *out);

/* set_empty_str - the set holding only "". */
static void
set_empty_str(pf_set *s)
{
	s->n = 1;
	s->len[0] = 0;
	s->lit[0][0] = '\0';
}

/* set_min - length of the shortest string (0 for an empty set). */
static unsigned
set_min(const pf_set *s)
{
	unsigned m = s->n ? s->len[0] : 0;

	for (unsigned i = 1; i < s->n; i++)
		if (s->len[i] < m)
			m = s->len[i];
	return m;
}

/* set_has - is the string already in the set? */
static bool
set_has(const pf_set *s, const char *str, unsigned len)
{
	for (unsigned i = 0; i < s->n; i++)
		if (s->len[i] == len && memcmp(s->lit[i], str, len) == 0)
			return true;
	return false;
}

/* set_add - add a string unless present; false when the set is full or it is too long. */
static bool
set_add(pf_set *s, const char *str, unsigned len)
{
	if (set_has(s, str, len))
		return true;
	if (s->n >= RULES_PF_MAX_LITS || len > RULES_PF_LIT_MAX)
		return false;
	memcpy(s->lit[s->n], str, len);
	s->lit[s->n][len] = '\0';
	s->len[s->n++] = (unsigned char)len;
	return true;
}

/* set_union - a or b into out; false when it does not fit. */
static bool
set_union(const pf_set *a, const pf_set *b, pf_set *out)
{
	if (out != a)
		*out = *a;
	for (unsigned i = 0; i < b->n; i++)
		if (!set_add(out, b->lit[i], b->len[i]))
			return false;
	return true;
}

/* set_cross - every a followed by every b; false when it does not fit. */
static bool
set_cross(const pf_set *a, const pf_set *b, pf_set *out)
{
	char buf[2 * RULES_PF_LIT_MAX];

	out->n = 0;
	for (unsigned i = 0; i < a->n; i++)
		for (unsigned j = 0; j < b->n; j++) {
			unsigned len = a->len[i] + b->len[j];

			if (len > RULES_PF_LIT_MAX)
				return false;
			memcpy(buf, a->lit[i], a->len[i]);
			memcpy(buf + a->len[i], b->lit[j], b->len[j]);
			if (!set_add(out, buf, len))
				return false;
		}
	return true;
}

/* contains - does hay hold needle as a substring? */
static bool
contains(const char *hay, unsigned hlen, const char *needle, unsigned nlen)
{
	if (nlen > hlen)
		return false;
	for (unsigned i = 0; i + nlen <= hlen; i++)
		if (memcmp(hay + i, needle, nlen) == 0)
			return true;
	return false;
}

/*
 * set_reduce - drop strings that contain another member: "one of {ab,
 * abc} occurs" is "ab occurs", and the automaton gets smaller.
 */
static void
set_reduce(pf_set *s)
{
	unsigned k = 0;

	for (unsigned i = 0; i < s->n; i++) {
		bool drop = false;

		for (unsigned j = 0; j < s->n && !drop; j++) {
			if (j == i || !contains(s->lit[i], s->len[i], s->lit[j], s->len[j]))
				continue;
			/* Equal strings: keep the first only. */
			drop = s->len[j] < s->len[i] || j < i;
		}
		if (drop)
			continue;
		if (k != i) {
			memcpy(s->lit[k], s->lit[i], s->len[i] + 1);
			s->len[k] = s->len[i];
		}
		k++;
	}
	s->n = k;
}

/* set_better - is requirement a stronger than b (longer shortest, then fewer)? */
static bool
set_better(const pf_set *a, const pf_set *b)
{
	unsigned ma = set_min(a), mb = set_min(b);

	return ma > mb || (ma == mb && a->n < b->n);
}

/* seq_consider - keep cand as the sequence's requirement if it beats the best. */
static void
seq_consider(struct pf_seq *q, const pf_set *cand)
{
	pf_set c = *cand;

	if (c.n == 0)
		return;
	set_reduce(&c);
	if (!q->has_best || set_better(&c, &q->best)) {
		q->best = c;
		q->has_best = true;
	}
}

/* seq_flush - end the literal run: it becomes a candidate, a new run starts. */
static void
seq_flush(struct pf_seq *q)
{
	seq_consider(q, &q->run);
	set_empty_str(&q->run);
	q->flushed = true;
}

/* seq_append - concatenate one (quantified) item to the sequence. */
static void
seq_append(struct pf_seq *q, const struct pf_info *a)
{
	if (a->exact) {
		pf_set tmp;

		if (set_cross(&q->run, &a->e, &tmp)) {
			q->run = tmp;
		} else {
			/* Too many or too long: the run so far is still a factor. */
			seq_flush(q);
			q->run = a->e;
		}
		if (a->brk)
			seq_flush(q);
		return;
	}
	seq_flush(q);
	if (a->has_req)
		seq_consider(q, &a->r);
}

/* info_exact1 - an item matching exactly one byte c (lower-cased). */
static void
info_exact1(struct pf_info *a, unsigned char c)
{
	memset(a, 0, sizeof(*a));
	if (c >= 'A' && c <= 'Z')
		c = (unsigned char)(c - 'A' + 'a');
	a->exact = true;
	a->e.n = 1;
	a->e.len[0] = 1;
	a->e.lit[0][0] = (char)c;
	a->e.lit[0][1] = '\0';
}

/* info_empty - a zero-width item (\b, ^, $): matches "". */
static void
info_empty(struct pf_info *a)
{
	memset(a, 0, sizeof(*a));
	a->exact = true;
	set_empty_str(&a->e);
}

/* info_any - an item matching some character we do not track (class, \d, .). */
static void
info_any(struct pf_info *a)
{
	memset(a, 0, sizeof(*a));
}

/* pf_class - skip a [...] class; true when its end was found safely. */
static bool
pf_class(struct pf_parse *pp)
{
	const unsigned char *p = pp->p + 1;

	if (p < pp->end && *p == '^')
		p++;
	if (p < pp->end && *p == ']')
		p++; /* a leading ']' is a member */
	while (p < pp->end) {
		if (*p == ']') {
			pp->p = p + 1;
			return true;
		}
		if (*p == '\\') {
			/* \Q..\E may hide a ']': do not guess. */
			if (p + 1 >= pp->end || p[1] == 'Q' || p[1] == 'E')
				return false;
			p += 2;
			continue;
		}
		/* POSIX [:name:] (and [. .] [= =]) hold a ']' of their own. */
		if (*p == '[' && p + 1 < pp->end && (p[1] == ':' || p[1] == '.' || p[1] == '='))
			return false;
		p++;
	}
	return false;
}

/* pf_escape - one backslash item into *a; false for anything not understood. */
static bool
pf_escape(struct pf_parse *pp, struct pf_info *a)
{
	unsigned char c;

	if (pp->p + 1 >= pp->end)
		return false;
	c = pp->p[1];
	pp->p += 2;
	if (c >= 0x80)
		return false;
	if (!(c >= '0' && c <= '9') && !(c >= 'a' && c <= 'z') && !(c >= 'A' && c <= 'Z')) {
		info_exact1(a, c); /* escaped punctuation or space: itself */
		return true;
	}
	switch (c) {
	case 'd': case 'D': case 'w': case 'W': case 's': case 'S':
	case 'h': case 'H': case 'v': case 'V': case 'R': case 'X':
		info_any(a);
		return true;
	case 'N':
		/* \N{U+..} is a character name, \N{3} a quantifier: do not guess. */
		if (pp->p < pp->end && *pp->p == '{')
			return false;
		info_any(a);
		return true;
	case 'b': case 'B': case 'A': case 'z': case 'Z': case 'G':
		info_empty(a);
		return true;
	case 't': info_exact1(a, '\t'); return true;
	case 'n': info_exact1(a, '\n'); return true;
	case 'r': info_exact1(a, '\r'); return true;
	case 'f': info_exact1(a, '\f'); return true;
	case 'e': info_exact1(a, 0x1b); return true;
	case 'a': info_exact1(a, 0x07); return true;
	default:
		/* Back references, \x \o \c \p \Q \E \K \g \k ...: none. */
		return false;
	}
}

/* pf_number - a decimal count of at most 5 digits; false when there is none. */
static bool
pf_number(struct pf_parse *pp, unsigned *out)
{
	unsigned v = 0, nd = 0;

	while (pp->p < pp->end && *pp->p >= '0' && *pp->p <= '9') {
		if (++nd > 5)
			return false;
		v = v * 10 + (unsigned)(*pp->p++ - '0');
	}
	*out = v;
	return nd > 0;
}

/* pf_quant - apply a quantifier after an item, if there is one. */
static void
pf_quant(struct pf_parse *pp, struct pf_info *a)
{
	unsigned min, max;
	const unsigned char *p = pp->p;

	if (p >= pp->end)
		return;
	switch (*p) {
	case '?': min = 0; max = 1; pp->p++; break;
	case '*': min = 0; max = UINT32_MAX; pp->p++; break;
	case '+': min = 1; max = UINT32_MAX; pp->p++; break;
	case '{':
		/* Only {n} {n,} {n,m}; anything else differs between PCRE2 versions. */
		pp->p++;
		if (!pf_number(pp, &min)) {
			pp->bail = true;
			return;
		}
		max = min;
		if (pp->p < pp->end && *pp->p == ',') {
			pp->p++;
			max = UINT32_MAX;
			if (pp->p < pp->end && *pp->p >= '0' && *pp->p <= '9' && !pf_number(pp, &max)) {
				pp->bail = true;
				return;
			}
		}
		if (pp->p >= pp->end || *pp->p != '}') {
			pp->bail = true;
			return;
		}
		pp->p++;
		break;
	default:
		return;
	}
	/* Lazy and possessive forms match a subset of the same strings. */
	if (pp->p < pp->end && (*pp->p == '?' || *pp->p == '+'))
		pp->p++;
	if (pp->p < pp->end && (*pp->p == '?' || *pp->p == '*' || *pp->p == '+' || *pp->p == '{')) {
		pp->bail = true; /* stacked quantifiers: do not guess */
		return;
	}
	if (max == 0) {
		info_empty(a);
	} else if (min == 0) {
		pf_set tmp, empty;

		set_empty_str(&empty);
		if (max == 1 && a->exact && set_union(&a->e, &empty, &tmp)) {
			a->e = tmp; /* x? is "" or x */
			a->brk = false;
		} else {
			info_any(a); /* may be absent: requires nothing */
		}
	} else if (max > 1 && a->exact) {
		a->brk = true; /* one copy is certain, what follows it is not */
	}
	/* min >= 1, not exact: its requirement holds for the first copy. */
}

/* pf_atom - one item (literal, escape, class, group, anchor) into *a. */
static void
pf_atom(struct pf_parse *pp, struct pf_info *a)
{
	unsigned char c = *pp->p;

	switch (c) {
	case '(':
		pp->p++;
		if (pp->p < pp->end && (*pp->p == '?' || *pp->p == '*')) {
			/* Only (?: ... ); no flags, lookaround, names, verbs. */
			if (*pp->p != '?' || pp->p + 1 >= pp->end || pp->p[1] != ':') {
				pp->bail = true;
				return;
			}
			pp->p += 2;
		}
		if (++pp->depth > PF_DEPTH_MAX) {
			pp->bail = true;
			return;
		}
		pf_alt(pp, a);
		pp->depth--;
		if (pp->bail || pp->p >= pp->end || *pp->p != ')') {
			pp->bail = true;
			return;
		}
		pp->p++;
		a->brk = false;
		return;
	case '[':
		if (!pf_class(pp))
			pp->bail = true;
		info_any(a);
		return;
	case '.':
		pp->p++;
		info_any(a);
		return;
	case '^':
	case '$':
		pp->p++;
		info_empty(a);
		return;
	case '\\':
		if (!pf_escape(pp, a))
			pp->bail = true;
		return;
	case '?':
	case '*':
	case '+':
	case '{':
		pp->bail = true;
		return;
	default:
		pp->p++;
		if (c >= 0x80)
			info_any(a); /* part of a UTF-8 character: not tracked */
		else
			info_exact1(a, c);
		return;
	}
}

/* pf_seq - one branch: items up to '|', ')' or the end. */
static void
pf_seq(struct pf_parse *pp, struct pf_info *out)
{
	struct pf_seq q;
	struct pf_info a;

	memset(&q, 0, sizeof(q));
	set_empty_str(&q.run);
	while (!pp->bail && pp->p < pp->end && *pp->p != '|' && *pp->p != ')') {
		pf_atom(pp, &a);
		if (pp->bail)
			break;
		pf_quant(pp, &a);
		if (pp->bail)
			break;
		seq_append(&q, &a);
	}
	memset(out, 0, sizeof(*out));
	if (pp->bail)
		return;
	if (!q.flushed) {
		out->exact = true;
		out->e = q.run;
		return;
	}
	seq_consider(&q, &q.run);
	out->has_req = q.has_best;
	out->r = q.best;
}

/* info_req - the requirement of an item, or NULL. */
static const pf_set *
info_req(const struct pf_info *a)
{
	return a->exact ? &a->e : a->has_req ? &a->r : NULL;
}

/* pf_alt - branches separated by '|', up to ')' or the end. */
static void
pf_alt(struct pf_parse *pp, struct pf_info *out)
{
	struct pf_info b;
	bool first = true;

	for (;;) {
		pf_seq(pp, first ? out : &b);
		if (pp->bail)
			return;
		if (!first) {
			const pf_set *ra = info_req(out), *rb = info_req(&b);
			pf_set u;

			if (out->exact && b.exact && set_union(&out->e, &b.e, &u)) {
				out->e = u;
			} else if (ra != NULL && rb != NULL && set_union(ra, rb, &u)) {
				set_reduce(&u);
				out->exact = false;
				out->has_req = true;
				out->r = u;
			} else {
				/* A branch without a requirement, or too many literals. */
				info_any(out);
			}
		}
		first = false;
		if (pp->p < pp->end && *pp->p == '|') {
			pp->p++;
			continue;
		}
		return;
	}
}

/* rules_pf_regex_req - requirement of a pattern compiled with pcre2_flags; NULL = none. */
struct rules_pf_req *
rules_pf_regex_req(const char *pat, size_t len, uint32_t pcre2_flags)
{
	struct pf_parse pp = { (const unsigned char *)pat, (const unsigned char *)pat + len, 0,
			       false };
	struct pf_info *top;
	struct rules_pf_req *req = NULL;
	const pf_set *r;

	/* Extended syntax changes what white space and '#' mean. */
	if (pcre2_flags & (PCRE2_EXTENDED | PCRE2_EXTENDED_MORE | PCRE2_LITERAL))
		return NULL;
	if ((top = malloc(sizeof(*top))) == NULL)
		return NULL;
	pf_alt(&pp, top);
	if (!pp.bail && pp.p == pp.end && (r = info_req(top)) != NULL) {
		pf_set s = *r;

		set_reduce(&s);
		if (s.n > 0 && set_min(&s) >= RULES_PF_MIN_LEN && (req = malloc(sizeof(*req))) != NULL)
			*req = s;
	}
	free(top);
	return req;
}

/* rules_pf_req_free - release a requirement; NULL is fine. */
void
rules_pf_req_free(struct rules_pf_req *req)
{
	free(req);
}

/* cmp_lit - qsort order for rules_pf_req_format. */
static int
cmp_lit(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* rules_pf_req_format - "lit1|lit2|..." (sorted) into buf; "" for none. */
void
rules_pf_req_format(const struct rules_pf_req *req, char *buf, size_t size)
{
	const char *v[RULES_PF_MAX_LITS];
	size_t used = 0;

	if (size == 0)
		return;
	buf[0] = '\0';
	if (req == NULL)
		return;
	for (unsigned i = 0; i < req->n; i++)
		v[i] = req->lit[i];
	qsort(v, req->n, sizeof(v[0]), cmp_lit);
	for (unsigned i = 0; i < req->n && used + 1 < size; i++) {
		size_t l = strlen(v[i]);

		if (i > 0)
			buf[used++] = '|';
		if (used + l >= size)
			l = size - used - 1;
		memcpy(buf + used, v[i], l);
		used += l;
		buf[used] = '\0';
	}
}
