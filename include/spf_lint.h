/*
 * spf_lint.h - RFC 7208 syntax check of one SPF record, for the libspf2
 * layer in check_spf.c (libspf2 1.2.10 accepts many broken records and
 * rejects some valid ones). Pure: no I/O, no allocation.
 */
#ifndef RAVELIN_SPF_LINT_H
#define RAVELIN_SPF_LINT_H

#include <stddef.h>

/*
 * spf_lint_record - check the record rec (len bytes, NUL-terminated; it
 * starts with "v=spf1"). Returns NULL when it is valid, after rewriting
 * it in place to what libspf2 handles: unknown modifiers (which RFC 7208
 * section 6 says to ignore) are removed. Returns a static reason when it
 * is invalid (RFC 7208 permerror): bad characters, unknown mechanisms,
 * bad domain-specs, bad macros, duplicate redirect/exp, bad CIDR lengths,
 * or a term too big for libspf2 to compile safely (CVE-2023-42118).
 */
const char *spf_lint_record(char *rec, size_t len);

/* spf_lint_defuse_text - neutralise macros in an oversized explanation text. */
void spf_lint_defuse_text(char *txt);

#endif
