/*
 * check_spoof.h - sender spoofing heuristics: display names that carry a
 * foreign address or a protected identity, and domains that look like a
 * local domain (IDN homoglyphs, one typo, another TLD). Pure and
 * read-only once built, so any thread may use a spoof_conf.
 */
#ifndef RAVELIN_CHECK_SPOOF_H
#define RAVELIN_CHECK_SPOOF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct spoof_conf;

/* spoof_conf_new/free - the local domains and protected names; free takes NULL. */
struct spoof_conf *spoof_conf_new(void);
void spoof_conf_free(struct spoof_conf *sc);

/* spoof_conf_add_local - one local domain (".example.org" counts as example.org). */
int spoof_conf_add_local(struct spoof_conf *sc, const char *domain);
/* spoof_conf_load_locals - the domains of a local_domains @FILE (entries without '@' or '/'). */
int spoof_conf_load_locals(struct spoof_conf *sc, const char *path, char *err, size_t errlen);
/*
 * spoof_conf_load_names - "PATTERN domain[,domain...]" lines: PATTERN is
 * a case-insensitive substring ("quoted" when it holds spaces) or a
 * /regex/ (PCRE2, caseless). Returns 0, or -1 with "LINE: message" in err.
 */
int spoof_conf_load_names(struct spoof_conf *sc, const char *path, char *err, size_t errlen);
size_t spoof_conf_names_count(const struct spoof_conf *sc);

/*
 * spoof_display_name - the display name holds an address whose domain is
 * not from_domain, or matches a protected name whose allowed domains do
 * not include from_domain. why (may be NULL) says which.
 */
bool spoof_display_name(const struct spoof_conf *sc, const char *name, const char *from_domain,
			char *why, size_t whylen);

/*
 * spoof_lookalike - domain (lower case, not itself local: the caller
 * checks) imitates a local domain: same skeleton after punycode decoding
 * and confusable mapping, one edit (Damerau) away, or the same name under
 * another public suffix. which (may be NULL) receives the local domain.
 */
bool spoof_lookalike(const struct spoof_conf *sc, const char *domain, char *which, size_t whichlen);

/* spoof_same_org - a and b share their registrable domain (see below). */
bool spoof_same_org(const char *a, const char *b);

/* spoof_punycode_decode - RFC 3492 decoding of one label without "xn--";
 * returns the number of code points, or -1 (bad input, more than max). */
int spoof_punycode_decode(const char *in, size_t len, uint32_t *out, size_t max);

/* spoof_skeleton - one label (xn-- decoded) reduced to ASCII look-alike
 * letters: Cyrillic/Greek/accented letters to Latin, 0->o, 1->l, rn->m,
 * vv->w. Returns the length written (out is NUL-terminated). */
size_t spoof_skeleton(const char *label, size_t len, char *out, size_t outlen);

/* spoof_edit_distance - Damerau (optimal string alignment) distance. */
int spoof_edit_distance(const char *a, const char *b);

/* spoof_split_domain - the registrable label and its public suffix
 * (a heuristic: the last label, or two with co/com/net/org/ac/gov/edu
 * before a two-letter country code). false when there is no such label. */
bool spoof_split_domain(const char *domain, char *name, size_t namelen, char *suffix,
			size_t suffixlen);

#endif
