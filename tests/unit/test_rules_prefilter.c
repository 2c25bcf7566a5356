/*
 * test_rules_prefilter.c - unit tests for the literal prefilter of the
 * rule evaluator (rules_prefilter.c): the requirement extracted from each
 * pattern (including every "no requirement" case), which rule conditions
 * get gated, soundness (whenever PCRE2 matches, the prefilter lets the
 * rule through - on seeds, case variants, U+017F / U+212A spellings and
 * random mutations), and equivalence of whole evaluations with and
 * without the prefilter (RAVELIN_RULES_NO_PREFILTER) over random sessions.
 */

/* System. */
#include <glob.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* Libraries. */
#include <cmocka.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

/* Project. */
#include "rules.h"
#include "rules_impl.h"
#include "rules_prefilter.h"

/* Deterministic pseudo-random numbers (xorshift64), so failures reproduce. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

/* rng - next pseudo-random number. */
static uint64_t
rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

/* pick - a pseudo-random index below n. */
static unsigned
pick(unsigned n)
{
	return (unsigned)(rng() % n);
}

/* ---- (a) requirement extraction ---- */

struct req_case {
	const char *re, *flags;
	const char *want; /* sorted literals joined by '|'; "" = no requirement */
};

static const struct req_case req_cases[] = {
	{ "\\b(viagra|cialis)\\b", "i", "cialis|viagra" },
	{ "\\b(spamword12|offer12x)\\b", "i", "offer12x|spamword12" },
	{ "^(promo|deals)14[.-]?[a-z]*@", "i", "deals14|promo14" },
	{ "unsubscribe-now-15|cheap meds 15", "i", "cheap meds 15|unsubscribe-now-15" },
	{ "colou?r", "", "color|colour" },
	{ "ab+cdef", "", "cdef" },
	{ "abc\\d+xyz", "i", "abc" },
	{ "foo.*", "s", "foo" },
	{ "(abc)?def", "", "def" },
	{ "Viagra", "", "viagra" },
	{ "v[i1]agra", "i", "agra" },
	{ "h\\.e\\-l\\@lo\\/x", "", "h.e-l@lo/x" },
	{ "^abc$", "m", "abc" },
	{ "abc{2}", "", "abc" },
	{ "(?:hello|world)+ there", "i", " there" },
	{ "café", "i", "caf" },
	{ "[]abc]xyz", "", "xyz" },
	{ "[^\\]]+hello", "", "hello" },
	{ "(foo|bar(baz|qux))end", "", "barbazend|barquxend|fooend" },
	{ "sp(a|)m", "i", "spam|spm" },
	{ "free\\s*money", "i", "money" },
	{ "abc+?def", "", "abc" },
	{ "abc*+def", "", "def" },
	{ "\\Nbcd", "", "bcd" },
	{ "foo\\tbar", "", "foo\tbar" },
	{ "(?:win|won) (?:a|the) (?:prize|lottery)", "i",
	  "win a lottery|win a prize|win the lottery|win the prize|"
	  "won a lottery|won a prize|won the lottery|won the prize" },
	{ "https?://[a-z0-9.-]+\\.(ru|cn)/", "i", "http://|https://" },
	{ "(?:v|\\\\/)iagra", "i", "\\/iagra|viagra" },
	{ "x{0}yzzy", "", "yzzy" },
	{ "abcdefghijklmnopqrstuvwxyz0123456789", "", "abcdefghijklmnopqrstuvwxyz012345" },
	{ "(?:a1|a2|a3|a4|a5|a6|a7|a8|a9|b1|b2|b3|b4|b5|b6|b7|b8)xyz", "", "xyz" },
	{ "(spam)+ham", "i", "spam" },
	{ "\\bno\\b.*\\bprescription\\b", "i", "prescription" },
	{ "\\w+@example\\.org", "i", "@example.org" },
	{ "abc|abcdef|xabcx", "", "abc" },
	{ "(ab|cd){1}efg", "", "abefg|cdefg" },
	/* Too weak: a literal shorter than 3 bytes. */
	{ "fo", "", "" },
	{ "(a|b)c", "", "" },
	{ "abc|de", "", "" },
	{ "o{2,}ps", "i", "" },
	{ "\\d{3}-\\d{4}", "", "" },
	{ "x?y?z?", "", "" },
	{ "", "", "" },
	{ "abc|", "", "" },
	{ "Ünïcödé", "i", "" },
	/* A branch or part without any literal. */
	{ "abc|\\d+", "", "" },
	{ "x*", "", "" },
	{ "(abc)*", "", "" },
	{ "(abc){0,3}", "", "" },
	/* Syntax we do not follow: never guess. */
	{ "(?i)viagra", "", "" },
	{ "(?=abc)abc", "", "" },
	{ "(?!x)abcdef", "", "" },
	{ "(?<=x)abcdef", "", "" },
	{ "(foo)\\1barbaz", "", "" },
	{ "\\Qa.bcd\\E", "", "" },
	{ "\\x41bcd", "", "" },
	{ "\\p{L}viagra", "", "" },
	{ "[[:alpha:]]viagra", "", "" },
	{ "foo(?<name>bar)", "", "" },
	{ "abc(*SKIP)def", "", "" },
	{ "abc\\Kdef", "", "" },
	{ "a{,3}bcdef", "", "" },
	{ "\\N{U+0041}bcd", "", "" },
	{ "((((((((((((abcdef))))))))))))", "", "" },
	{ "viagra #comment", "x", "" },
	{ "abc(?#note)def", "", "" },
	{ "abc\\", "", "" },
};

/* flags_of - PCRE2 options of a rule file's /.../flags. */
static uint32_t
flags_of(const char *f)
{
	uint32_t o = 0;

	for (; *f; f++)
		o |= *f == 'i' ? PCRE2_CASELESS : *f == 'm' ? PCRE2_MULTILINE :
		     *f == 's' ? PCRE2_DOTALL : *f == 'x' ? PCRE2_EXTENDED : 0;
	return o;
}

/* requirement_table - each pattern's requirement, or none. */
static void
requirement_table(void **state)
{
	for (size_t i = 0; i < sizeof(req_cases) / sizeof(req_cases[0]); i++) {
		const struct req_case *c = &req_cases[i];
		struct rules_pf_req *req = rules_pf_regex_req(c->re, strlen(c->re), flags_of(c->flags));
		char got[1024];

		rules_pf_req_format(req, got, sizeof(got));
		if (strcmp(got, c->want) != 0)
			fail_msg("/%s/%s: requirement \"%s\", want \"%s\"", c->re, c->flags, got, c->want);
		rules_pf_req_free(req);
	}
}

/* ---- which conditions are gated ---- */

struct gate_case {
	const char *rule;
	size_t gated;
};

static const struct gate_case gate_cases[] = {
	{ "header header[Subject] =~ /viagra/i -> score 1", 1 },
	{ "header header[Subject] !~ /viagra/i -> score 1", 0 },
	{ "header !(header[Subject] =~ /viagra/i) -> score 1", 0 },
	{ "header header[Subject] =~ /viagra/i && header[From] == \"x\" -> score 1", 1 },
	{ "header header[From] == \"x\" && header[Subject] =~ /viagra/i -> score 1", 1 },
	{ "header header[Subject] =~ /viagra/i || header[Subject] =~ /cialis/ -> score 1", 1 },
	{ "header header[Subject] =~ /viagra/i || header[From] =~ /cialis/ -> score 1", 0 },
	{ "header header[Subject] =~ /viagra/i || header[From] == \"x\" -> score 1", 0 },
	{ "mail sender =~ /bulk/i && limit(sender, 5/1m) -> score 1", 0 },
	{ "mail limit(sender, 5/1m) && sender =~ /bulkmail/i -> score 1", 0 },
	{ "mail sender =~ /^a/ -> score 1", 0 },
	{ "mail score =~ /^1000/ -> log \"x\"", 0 },
	{ "eom body =~ /(?i)click here/ -> score 1", 0 },
	{ "eom body =~ /click here/i && (size > 10 || body =~ /free/) -> score 1", 1 },
	{ "rcpt rcpt =~ /spamtrap/ -> reject 550 5.1.1 \"no\"", 1 },
	{ "helo true -> score 1", 0 },
};

/* gating_table - each rule gated or not as expected. */
static void
gating_table(void **state)
{
	for (size_t i = 0; i < sizeof(gate_cases) / sizeof(gate_cases[0]); i++) {
		struct rules *r = rules_load_text("t.rules", gate_cases[i].rule, NULL, NULL, NULL);

		if (r == NULL)
			fail_msg("does not load: %s", gate_cases[i].rule);
		if (rules_pf_gated(r) != gate_cases[i].gated)
			fail_msg("%s: %zu gated, want %zu", gate_cases[i].rule, rules_pf_gated(r),
				 gate_cases[i].gated);
		rules_free(r);
	}
}

/* ---- (b) soundness: PCRE2 matches imply "possible" ---- */

struct sound_case {
	const char *re, *flags;
	const char *seeds[4]; /* strings the pattern matches */
};

static const struct sound_case sound_cases[] = {
	{ "\\b(viagra|cialis)\\b", "i", { "buy viagra now", "CIALIS" } },
	{ "\\b(spamword12|offer12x)\\b", "i", { "spamword12", "an Offer12x!" } },
	{ "^(promo|deals)14[.-]?[a-z]*@", "i", { "deals14.abc@x", "PROMO14@" } },
	{ "unsubscribe-now-15|cheap meds 15", "i", { "x unsubscribe-now-15", "Cheap Meds 15" } },
	{ "colou?r", "", { "color", "colour" } },
	{ "ab+cdef", "", { "abbbcdef" } },
	{ "abc\\d+xyz", "i", { "ABC123xyz" } },
	{ "foo.*bar", "s", { "foo\nbar" } },
	{ "(abc)?def", "", { "def", "abcdef" } },
	{ "Viagra", "", { "Viagra" } },
	{ "v[i1]agra", "i", { "v1agra" } },
	{ "h\\.e\\-l\\@lo", "", { "h.e-l@lo" } },
	{ "^abc$", "m", { "x\nabc\ny" } },
	{ "abc{2}", "i", { "abcc" } },
	{ "(?:hello|world)+ there", "i", { "hello world there" } },
	{ "café", "i", { "CAFÉ", "café" } },
	{ "[]abc]xyz", "", { "]xyz" } },
	{ "[^\\]]+hello", "", { "xhello" } },
	{ "(foo|bar(baz|qux))end", "i", { "barquxend", "FOOEND" } },
	{ "sp(a|)m", "i", { "spm", "SPAM", "\xc5\xbfpam" } },
	{ "free\\s*money", "i", { "FREE   MONEY" } },
	{ "abc+?def", "", { "abcccdef" } },
	{ "abc*+def", "", { "abdef" } },
	{ "foo\\nbar", "", { "foo\nbar" } },
	{ "\\Nbcd", "", { "xbcd" } },
	{ "key(word|note)s?", "i", { "KEYWORDS", "\xe2\x84\xaa" "eynote" } },
	{ "kiss", "i", { "\xe2\x84\xaai\xc5\xbf\xc5\xbf", "KISS" } },
	{ "\\bcasino\\b|jackpot", "i", { "Casino", "JackPot" } },
	{ "(?:win|won) (?:a|the) (?:prize|lottery)", "i", { "you WON THE LOTTERY" } },
	{ "\\$\\d+ ?(million|billion)", "i", { "$5 million", "$12BILLION" } },
	{ "https?:\\/\\/[a-z0-9.-]+\\.(ru|cn)\\/", "i", { "see HTTPS://x.RU/", "http://a.cn/" } },
	{ "re: ?re: ?re:", "i", { "RE:RE: re:" } },
	{ "(?:v|\\\\\\/)iagra", "i", { "\\/IAGRA" } },
	{ "(spam)+ham", "i", { "spamSPAMham" } },
	{ "million dollars?", "i", { "MILLION DOLLAR" } },
	{ "x{0}yzzy", "", { "yzzy" } },
	{ "\\bno\\b.*\\bprescription\\b", "i", { "No need for a PRESCRIPTION" } },
	{ "(?:ab|cd|ef|gh|ij|kl|mn|op|qr|st|uv|wx|yz|AB|CD|EF|GH)xyz", "i", { "GHXYZ" } },
	{ "\\w+@example\\.org", "i", { "bob@EXAMPLE.ORG" } },
	{ "(?:sale|discount)s? [0-9]+%", "i", { "SALES 50%", "discount 5%" } },
	{ "Ünïcödé|s\\x{17f}s", "i", { "ÜNÏCÖDÉ" } },
};

/* Bytes mutations insert: letters, punctuation, and the bytes of U+017F/U+212A. */
static const char mut_bytes[] = "aeiksSKxyz019 .-@/\\\n\xc5\xbf\xe2\x84\xaa\xc3\xa9";

/* mutate - one random edit of s (case flip, s/k spelling, insert, delete, replace). */
static void
mutate(char *s, size_t *len, size_t cap)
{
	size_t n = *len, at = n ? pick((unsigned)n) : 0;
	char c = n ? s[at] : 'a';

	switch (pick(7)) {
	case 0: /* flip the case of one letter */
		if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z')
			s[at] = (char)(c ^ 0x20);
		break;
	case 1: /* spell s as U+017F or k as U+212A */
		if (n + 2 < cap && ((c | 0x20) == 's' || (c | 0x20) == 'k')) {
			const char *u = (c | 0x20) == 's' ? "\xc5\xbf" : "\xe2\x84\xaa";
			size_t ul = strlen(u);

			memmove(s + at + ul, s + at + 1, n - at - 1);
			memcpy(s + at, u, ul);
			*len = n - 1 + ul;
		}
		break;
	case 2: /* insert a byte */
		if (n + 1 < cap) {
			memmove(s + at + 1, s + at, n - at);
			s[at] = mut_bytes[pick(sizeof(mut_bytes) - 1)];
			*len = n + 1;
		}
		break;
	case 3: /* delete a byte */
		if (n > 0) {
			memmove(s + at, s + at + 1, n - at - 1);
			*len = n - 1;
		}
		break;
	case 4: /* replace a byte */
		if (n > 0)
			s[at] = mut_bytes[pick(sizeof(mut_bytes) - 1)];
		break;
	case 5: /* all upper case */
		for (size_t i = 0; i < n; i++)
			if (s[i] >= 'a' && s[i] <= 'z')
				s[i] = (char)(s[i] - 32);
		break;
	default: /* wrap in noise */
		if (n + 8 < cap) {
			memmove(s + 4, s, n);
			memcpy(s, "xx, ", 4);
			memcpy(s + n + 4, " zz.", 4);
			*len = n + 8;
		}
		break;
	}
}

/* soundness - on seeds and their mutations, a PCRE2 match always passes the gate. */
static void
soundness(void **state)
{
	unsigned gated = 0, matched = 0, skipped = 0;

	for (size_t i = 0; i < sizeof(sound_cases) / sizeof(sound_cases[0]); i++) {
		const struct sound_case *c = &sound_cases[i];
		char text[512];
		struct rules *r;
		pcre2_code *re;
		pcre2_match_data *md;
		int err;
		PCRE2_SIZE off;

		snprintf(text, sizeof(text), "header header[Subject] =~ /%s/%s -> score 1\n", c->re,
			 c->flags);
		if ((r = rules_load_text("s.rules", text, NULL, NULL, NULL)) == NULL)
			fail_msg("does not load: %s", text);
		gated += rules_pf_gated(r) > 0;
		re = pcre2_compile((PCRE2_SPTR)c->re, strlen(c->re),
				   PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | flags_of(c->flags), &err, &off,
				   NULL);
		assert_non_null(re);
		md = pcre2_match_data_create(1, NULL);
		for (unsigned k = 0; k < 4 && c->seeds[k]; k++) {
			if (pcre2_match(re, (PCRE2_SPTR)c->seeds[k], strlen(c->seeds[k]), 0, 0, md, NULL) < 0)
				fail_msg("/%s/%s: seed \"%s\" does not match", c->re, c->flags, c->seeds[k]);
			for (unsigned round = 0; round < 400; round++) {
				char s[256];
				size_t len = strlen(c->seeds[k]);
				unsigned edits = round == 0 ? 0 : 1 + pick(4);

				memcpy(s, c->seeds[k], len);
				for (unsigned e = 0; e < edits; e++)
					mutate(s, &len, sizeof(s));
				if (pcre2_match(re, (PCRE2_SPTR)s, len, 0, 0, md, NULL) < 0) {
					skipped += !rules_pf_possible(r, RULES_STAGE_HEADER, 0, s, len);
					continue;
				}
				matched++;
				if (!rules_pf_possible(r, RULES_STAGE_HEADER, 0, s, len))
					fail_msg("/%s/%s matches \"%.*s\" but the prefilter says no", c->re,
						 c->flags, (int)len, s);
			}
		}
		pcre2_match_data_free(md);
		pcre2_code_free(re);
		rules_free(r);
	}
	print_message("soundness: %u of %zu patterns gated, %u matching subjects passed, "
		      "%u others skipped\n",
		      gated, sizeof(sound_cases) / sizeof(sound_cases[0]), matched, skipped);
	assert_true(gated >= 30);
	assert_true(matched > 5000);
	assert_true(skipped > 1000);
}

/* Pieces of random patterns and subjects: few letters, so that matches are common. */
static const char *const re_atoms[] = {
	"a", "b", "s", "k", "A", "S", "K", "-", " ", "\\.", "\\-", "\\b", "^", "$", "[ab]", "[^s]",
	"\\d", "\\w", "\\s", ".", "ab", "sk", "kas", "bask",
};
static const char *const re_quants[] = {
	"", "", "", "", "?", "*", "+", "{2}", "{1,3}", "{0,2}", "{2,}", "+?", "*+", "??",
};
static const char *const subj_pieces[] = {
	"a", "b", "s", "k", "A", "B", "S", "K", "\xc5\xbf", "\xe2\x84\xaa", "-", ".", " ", "1",
	"\xc3\xa9", "ab", "sk", "kas", "bask", "BASK", "ka\xc5\xbf", "aa", "ss", "a-", "s.",
};

/* gen_re - append a random pattern (items, groups, alternation) to out. */
static void
gen_re(char *out, size_t cap, int depth)
{
	unsigned items = 1 + pick(5);

	for (unsigned i = 0; i < items && strlen(out) + 40 < cap; i++) {
		if (depth < 3 && pick(5) == 0) {
			strcat(out, pick(2) ? "(" : "(?:");
			gen_re(out, cap, depth + 1);
			while (pick(3) == 0 && strlen(out) + 40 < cap) {
				strcat(out, "|");
				gen_re(out, cap, depth + 1);
			}
			strcat(out, ")");
		} else {
			strcat(out, re_atoms[pick(sizeof(re_atoms) / sizeof(re_atoms[0]))]);
		}
		strcat(out, re_quants[pick(sizeof(re_quants) / sizeof(re_quants[0]))]);
	}
	if (depth == 0 && pick(4) == 0 && strlen(out) + 40 < cap) {
		strcat(out, "|");
		gen_re(out, cap, 1);
	}
}

/* random_patterns - random patterns against random subjects: a match always passes. */
static void
random_patterns(void **state)
{
	unsigned patterns = 0, gated = 0, matched = 0;
	pcre2_match_data *md = pcre2_match_data_create(1, NULL);
	pcre2_match_context *mc = pcre2_match_context_create(NULL);

	/* Random nested quantifiers can backtrack for ages: such subjects are skipped. */
	pcre2_set_match_limit(mc, 100000);

	for (unsigned n = 0; n < 5000; n++) {
		char re_text[256] = "", rule[512];
		const char *flags = pick(3) ? "i" : "";
		struct rules *r;
		pcre2_code *re;
		int err;
		PCRE2_SIZE off;

		gen_re(re_text, sizeof(re_text), 0);
		re = pcre2_compile((PCRE2_SPTR)re_text, strlen(re_text),
				   PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | flags_of(flags), &err, &off, NULL);
		if (re == NULL)
			continue; /* e.g. a quantifier after an anchor */
		snprintf(rule, sizeof(rule), "header header[Subject] =~ /%s/%s -> score 1\n", re_text,
			 flags);
		if ((r = rules_load_text("r.rules", rule, NULL, NULL, NULL)) == NULL)
			fail_msg("does not load: %s", rule);
		patterns++;
		if (rules_pf_gated(r) == 0) {
			rules_free(r);
			pcre2_code_free(re);
			continue;
		}
		gated++;
		for (unsigned k = 0; k < 500; k++) {
			char subj[160] = "";
			unsigned len = pick(24);

			for (unsigned j = 0; j < len; j++)
				strcat(subj, subj_pieces[pick(sizeof(subj_pieces) / sizeof(subj_pieces[0]))]);
			if (pcre2_match(re, (PCRE2_SPTR)subj, strlen(subj), 0, 0, md, mc) < 0)
				continue;
			matched++;
			if (!rules_pf_possible(r, RULES_STAGE_HEADER, 0, subj, strlen(subj)))
				fail_msg("/%s/%s matches \"%s\" but the prefilter says no", re_text, flags,
					 subj);
		}
		rules_free(r);
		pcre2_code_free(re);
	}
	pcre2_match_data_free(md);
	pcre2_match_context_free(mc);
	print_message("random patterns: %u compiled, %u gated, %u matching subjects passed\n",
		      patterns, gated, matched);
	assert_true(gated > 300);
	assert_true(matched > 5000);
}

/* ---- (c) equivalence of evaluations with and without the prefilter ---- */

#define MAXV 8

/* A fake session: values per field; headers as "Name: value". */
struct fake {
	const char *v[RULES_F_COUNT][MAXV];
	char body[4096];
	unsigned limit_calls;
	char limit_keys[1024];
};

/* fake_get - rules_ops.get over the fake table. */
static bool
fake_get(void *ctx, enum rules_field f, const char *arg, unsigned i, struct rules_value *out)
{
	struct fake *fk = ctx;
	unsigned seen = 0;

	if (f != RULES_F_HEADER) {
		if (i >= MAXV || fk->v[f][i] == NULL)
			return false;
		rules_value_str(out, fk->v[f][i]);
		return true;
	}
	for (unsigned k = 0; k < MAXV && fk->v[f][k]; k++) {
		const char *h = fk->v[f][k], *colon = strchr(h, ':');

		if (colon && strlen(arg) == (size_t)(colon - h) &&
		    strncasecmp(h, arg, strlen(arg)) == 0 && seen++ == i) {
			rules_value_str(out, colon + 2);
			return true;
		}
	}
	return false;
}

/* fake_limit - count limit() calls and remember their keys; over every third call. */
static int
fake_limit(void *ctx, const char *key, unsigned n, unsigned period_s, const char *rule)
{
	struct fake *fk = ctx;
	size_t used = strlen(fk->limit_keys);

	snprintf(fk->limit_keys + used, sizeof(fk->limit_keys) - used, "%s/%s;", rule, key);
	return ++fk->limit_calls % 3 == 0;
}

static const struct rules_ops fake_ops = { fake_get, fake_limit };

/* Rules mixing gated and ungated conditions, terminal actions, limit(). */
static const char equiv_rules[] =
	"h_pharma: header header[Subject] =~ /\\b(viagra|cialis)\\b/i -> score 5 \"pharma\"\n"
	"h_caps: header header[Subject] =~ /^(?=(?:[^A-Z]*[A-Z]){12})[^a-z]*$/ -> score 1\n"
	"h_and: header header[Subject] =~ /lottery/i && header[Subject] !~ /newsletter/ -> score 2\n"
	"h_or: header header[Subject] =~ /casino/i || header[Subject] =~ /jackpot/i -> score 2\n"
	"h_or2: header header[Subject] =~ /casino/i || header[From] =~ /jackpot/i -> log \"or2\"\n"
	"h_not: header !(header[Subject] =~ /hello/i) -> log \"no hello\"\n"
	"h_rej: header header[Subject] =~ /reject me now/i -> reject 550 5.7.1 \"go away\"\n"
	"h_after: header header[Subject] =~ /viagra/ -> score 1 \"after\"\n"
	"h_from: header header[From] =~ /@(bulk|mass)mailer\\./i -> add_header X-Bulk \"yes\"\n"
	"m_promo: mail sender =~ /^(promo|deals)[0-9]*@/i -> score 1 \"promo\"\n"
	"m_lim: mail sender =~ /bulk/i && limit(sender, 1/1m) -> tempfail 450 4.7.1 \"slow\"\n"
	"m_score: mail score =~ /^1/ -> log \"score starts with 1\"\n"
	"m_accept: mail sender =~ /trusted-sender/ -> accept\n"
	"m_after: mail sender =~ /deals/i -> score 1 \"deals again\"\n"
	"r_trap: rcpt rcpt =~ /spamtrap/i -> reject 550 5.1.1 \"trap\"\n"
	"r_dom: rcpt rcpt.domain =~ /example\\.(net|com)/ -> score 1 \"ex\"\n"
	"e_mass: eoh header[Subject] =~ /urgent/i && header[X-Mailer] =~ /massmail/i -> score 3\n"
	"e_any: eoh header[Received] =~ /from unknown/ -> score 1 \"unknown relay\"\n"
	"b_body: eom body =~ /unsubscribe-now|cheap meds/i -> score 2 \"body\"\n"
	"b_click: eom body =~ /click here/i -> add_header X-Click \"yes\"\n"
	"b_accept: eom body =~ /whitelisted-token-123/ -> accept\n"
	"b_after: eom body =~ /click/i -> score 1 \"click\"\n"
	"b_lim: eom body =~ /newsletter/ || limit(sender, 2/1m) -> log \"limit or news\"\n"
	"b_spam: eom score >= 5 -> reject 550 5.7.1 \"spam\"\n";

static const char *const subjects[] = {
	"Hello there", "BUY VIAGRA NOW", "buy viagra now", "Cheap Cialis", "Win the lottery!",
	"Lottery newsletter", "casino night", "JACKPOT WINNER TODAY", "reject me now please",
	"THIS IS ALL CAPITALS SUBJECT", "urgent: read", "Re: meeting", "\xc5\xbfpam",
	"v\xc3\xaf" "agra", "Via\xe2\x84\xaa" "GRA", "ci\xc5\xbf" "alis", "bench offer12x",
	"spamword3 deals", "",
};
static const char *const senders[] = {
	"promo12@example.org", "DEALS@shop.example", "bulk@list.example", "alice@example.org",
	"trusted-sender@example.org", "deals-bulk@x.example", "", "bob@mass.example",
};
static const char *const rcpts[] = {
	"bob@example.org", "spamtrap@example.net", "x@example.com", "carol@EXAMPLE.NET",
	"SpamTrap@x.example",
};
static const char *const froms[] = {
	"Alice <alice@example.org>", "News <n@bulkmailer.example>", "jackpot@casino.example",
	"x@MASSMAILER.example",
};
static const char *const body_parts[] = {
	"Dear customer,\r\n", "Please CLICK HERE to confirm.\r\n", "unsubscribe-now-15\r\n",
	"Cheap Meds at low prices\r\n", "whitelisted-token-123\r\n", "Monthly newsletter\r\n",
	"Lorem ipsum dolor sit amet, consectetur adipiscing elit.\r\n",
	"spamword12 offer7x deals99@\r\n", "\xc3\xa9t\xc3\xa9 \xe2\x84\xaa\r\n",
};

/* equal_str - two result strings the same (either may be NULL)? */
static bool
equal_str(const char *a, const char *b)
{
	return (a == NULL || b == NULL) ? a == b : strcmp(a, b) == 0;
}

/* results_differ - a description of the first difference, or NULL. */
static const char *
results_differ(const struct rules_result *a, const struct rules_result *b)
{
	if (a->verdict != b->verdict || a->code != b->code || !equal_str(a->ecode, b->ecode) ||
	    !equal_str(a->text, b->text) || !equal_str(a->verdict_rule, b->verdict_rule))
		return "verdict";
	if (a->score != b->score || a->nscores != b->nscores)
		return "score";
	for (unsigned i = 0; i < a->nscores; i++)
		if (a->scores[i].delta != b->scores[i].delta ||
		    !equal_str(a->scores[i].reason, b->scores[i].reason) ||
		    !equal_str(a->scores[i].rule, b->scores[i].rule))
			return "scores";
	if (a->nhits != b->nhits)
		return "hit count";
	for (unsigned i = 0; i < a->nhits; i++)
		if (!equal_str(a->hits[i], b->hits[i]))
			return "hits";
	if (a->nheaders != b->nheaders || a->nlogs != b->nlogs)
		return "headers or logs";
	for (unsigned i = 0; i < a->nheaders; i++)
		if (!equal_str(a->headers[i].name, b->headers[i].name) ||
		    !equal_str(a->headers[i].value, b->headers[i].value))
			return "headers";
	for (unsigned i = 0; i < a->nlogs; i++)
		if (!equal_str(a->logs[i].text, b->logs[i].text))
			return "logs";
	return NULL;
}

/* random_session - fill a fake with a random message and envelope. */
static void
random_session(struct fake *fk, const char **hdrs, unsigned *nhdrs)
{
	static char subj[8][128], score[16];
	unsigned n = 0;

	memset(fk, 0, sizeof(*fk));
	fk->v[RULES_F_SENDER][0] = senders[pick(sizeof(senders) / sizeof(senders[0]))];
	for (unsigned i = 0, k = pick(4); i < k; i++) {
		const char *rc = rcpts[pick(sizeof(rcpts) / sizeof(rcpts[0]))];

		fk->v[RULES_F_RCPT][i] = rc;
		fk->v[RULES_F_RCPT_DOMAIN][i] = strchr(rc, '@') + 1;
	}
	snprintf(score, sizeof(score), "%u", pick(12));
	fk->v[RULES_F_SCORE][0] = score;
	for (unsigned i = 0, k = pick(3); i < k && n < 7; i++) {
		snprintf(subj[n], sizeof(subj[n]), "Subject: %s",
			 subjects[pick(sizeof(subjects) / sizeof(subjects[0]))]);
		hdrs[n] = subj[n];
		n++;
	}
	snprintf(subj[n], sizeof(subj[n]), "From: %s", froms[pick(sizeof(froms) / sizeof(froms[0]))]);
	hdrs[n] = subj[n];
	n++;
	if (pick(2)) {
		hdrs[n++] = "X-Mailer: MassMail 2.0";
		hdrs[n++] = pick(2) ? "Received: from unknown (x)" : "Received: from mx.example";
	}
	*nhdrs = n;
	for (unsigned i = 0; i < n; i++)
		fk->v[RULES_F_HEADER][i] = hdrs[i];
	for (unsigned i = 0, k = pick(6); i < k; i++) {
		const char *part = body_parts[pick(sizeof(body_parts) / sizeof(body_parts[0]))];

		if (strlen(fk->body) + strlen(part) < sizeof(fk->body))
			strcat(fk->body, part);
	}
	fk->v[RULES_F_BODY][0] = fk->body;
}

/* load_both - the same files loaded with and without the prefilter. */
static void
load_both(const char *const *paths, size_t n, struct rules **with, struct rules **without)
{
	*without = NULL;
	setenv("RAVELIN_RULES_NO_PREFILTER", "1", 1);
	*without = rules_load(paths, n, NULL, NULL, NULL);
	unsetenv("RAVELIN_RULES_NO_PREFILTER");
	*with = rules_load(paths, n, NULL, NULL, NULL);
	assert_non_null(*with);
	assert_non_null(*without);
	assert_int_equal(rules_pf_gated(*without), 0);
	assert_true(rules_pf_gated(*with) > 0);
}

/* eval_both - evaluate one stage both ways on copies of the session; compare. */
static void
eval_both(struct rules *with, struct rules *without, enum rules_stage stage,
	  const struct fake *fk, unsigned session, unsigned *hits)
{
	struct fake a = *fk, b = *fk;
	struct rules_result ra, rb;
	const char *diff;

	/* The body lives inside the fake: point each copy at its own. */
	a.v[RULES_F_BODY][0] = a.body;
	b.v[RULES_F_BODY][0] = b.body;
	rules_eval(with, stage, &fake_ops, &a, &ra);
	rules_eval(without, stage, &fake_ops, &b, &rb);
	if ((diff = results_differ(&ra, &rb)) != NULL)
		fail_msg("session %u stage %s: %s differs with the prefilter", session,
			 rules_stage_name(stage), diff);
	if (a.limit_calls != b.limit_calls || strcmp(a.limit_keys, b.limit_keys) != 0)
		fail_msg("session %u stage %s: limit() calls differ: \"%s\" vs \"%s\"", session,
			 rules_stage_name(stage), a.limit_keys, b.limit_keys);
	*hits += ra.nhits;
}

/* write_tmp - a file under dir with text; returns its path (static buffer per slot). */
static const char *
write_tmp(const char *dir, const char *name, const char *text)
{
	static char paths[4][256];
	static unsigned slot;
	char *p = paths[slot++ % 4];
	FILE *fp;

	snprintf(p, 256, "%s/%s", dir, name);
	assert_non_null(fp = fopen(p, "w"));
	fputs(text, fp);
	fclose(fp);
	return p;
}

/* bench_rules - the benchmark's 1,000 generated regex rules, plus some that match. */
static char *
bench_rules(void)
{
	size_t cap = 256 * 1024, used = 0;
	char *t = malloc(cap);

	assert_non_null(t);
	t[0] = '\0';
	for (unsigned i = 0; i < 1000; i++) {
		unsigned k = i % 4;

		if (k <= 1)
			used += snprintf(t + used, cap - used,
					 "bench_subj_%u: header header[Subject] =~ "
					 "/\\b(spamword%u|offer%ux)\\b/i -> score 0.01 \"bench %u\"\n",
					 i, i, i, i);
		else if (k == 2)
			used += snprintf(t + used, cap - used,
					 "bench_sender_%u: mail sender =~ /^(promo|deals)%u[.-]?[a-z]*@/i"
					 " -> score 0.01 \"bench %u\"\n", i, i, i);
		else
			used += snprintf(t + used, cap - used,
					 "bench_body_%u: eom body =~ /unsubscribe-now-%u|cheap meds %u/i"
					 " -> score 0.01 \"bench %u\"\n", i, i, i, i);
	}
	return t;
}

/* equivalence - shipped + test + 1,000 bench rules: identical results both ways. */
static void
equivalence(void **state)
{
	char dir[] = "/tmp/test_rules_pf.XXXXXX";
	const char *paths[16];
	size_t n = 0;
	glob_t g;
	struct rules *with, *without;
	unsigned hits = 0;
	char *bench;

	assert_non_null(mkdtemp(dir));
	assert_int_equal(glob("rules/*.rules", 0, NULL, &g), 0);
	for (size_t i = 0; i < g.gl_pathc && n < 12; i++)
		paths[n++] = g.gl_pathv[i];
	paths[n++] = write_tmp(dir, "80-equiv.rules", equiv_rules);
	bench = bench_rules();
	paths[n++] = write_tmp(dir, "95-bench.rules", bench);
	free(bench);
	load_both(paths, n, &with, &without);
	assert_true(rules_pf_gated(with) >= 1000);

	for (unsigned s = 0; s < 3000; s++) {
		struct fake fk;
		const char *hdrs[MAXV];
		unsigned nhdrs;

		random_session(&fk, hdrs, &nhdrs);
		eval_both(with, without, RULES_STAGE_MAIL, &fk, s, &hits);
		eval_both(with, without, RULES_STAGE_RCPT, &fk, s, &hits);
		/* header stage: one field at a time, as the proxy does. */
		for (unsigned h = 0; h < nhdrs; h++) {
			struct fake one = fk;

			memset(one.v[RULES_F_HEADER], 0, sizeof(one.v[RULES_F_HEADER]));
			one.v[RULES_F_HEADER][0] = hdrs[h];
			eval_both(with, without, RULES_STAGE_HEADER, &one, s, &hits);
		}
		eval_both(with, without, RULES_STAGE_EOH, &fk, s, &hits);
		eval_both(with, without, RULES_STAGE_EOM, &fk, s, &hits);
	}
	print_message("equivalence: 3000 sessions, %u rule hits, %zu rules gated\n", hits,
		      rules_pf_gated(with));
	assert_true(hits > 3000);
	rules_free(with);
	rules_free(without);
	for (size_t i = n - 2; i < n; i++)
		unlink(paths[i]);
	rmdir(dir);
	globfree(&g);
}

/* nested_eval - get() that evaluates rules itself still gets right answers. */
struct nested {
	struct rules *r;
	const char *subject;
	int inner_verdict;
};

/* nested_get - Subject value; evaluates the set once more from inside. */
static bool
nested_get(void *ctx, enum rules_field f, const char *arg, unsigned i, struct rules_value *out)
{
	struct nested *ns = ctx;
	struct rules_result res;

	if (f != RULES_F_HEADER || i > 0 || strcasecmp(arg, "Subject") != 0)
		return false;
	if (ns->inner_verdict < 0) {
		struct rules_ops ops = { nested_get, NULL };

		ns->inner_verdict = 0;
		ns->inner_verdict = rules_eval(ns->r, RULES_STAGE_HEADER, &ops, ns, &res);
	}
	rules_value_str(out, ns->subject);
	return true;
}

/* nested_evaluation - the per-thread scratch survives a re-entrant rules_eval(). */
static void
nested_evaluation(void **state)
{
	static const char text[] = "a: header header[Subject] =~ /viagra/i -> score 1\n"
				   "b: header header[Subject] =~ /cialis/i -> reject 550 5.7.1 \"x\"\n";
	struct rules *r = rules_load_text("n.rules", text, NULL, NULL, NULL);
	struct nested ns = { r, "cheap CIALIS", -1 };
	struct rules_ops ops = { nested_get, NULL };
	struct rules_result res;

	assert_non_null(r);
	assert_int_equal(rules_pf_gated(r), 2);
	assert_int_equal(rules_eval(r, RULES_STAGE_HEADER, &ops, &ns, &res), RULES_VERDICT_REJECT);
	assert_int_equal(ns.inner_verdict, RULES_VERDICT_REJECT);
	assert_int_equal(res.nhits, 1);
	assert_string_equal(res.hits[0], "b");
	rules_free(r);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(requirement_table),
		cmocka_unit_test(gating_table),
		cmocka_unit_test(soundness),
		cmocka_unit_test(random_patterns),
		cmocka_unit_test(equivalence),
		cmocka_unit_test(nested_evaluation),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
