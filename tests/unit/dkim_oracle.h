/*
 * dkim_oracle.h - the tests' reference DKIM verifier: libopendkim with
 * ravelin's former result mapping (see dkim_oracle.c). Results use the
 * types of check_dkim.h so they compare directly.
 */
#ifndef RAVELIN_DKIM_ORACLE_H
#define RAVELIN_DKIM_ORACLE_H

#include <stdbool.h>
#include <stddef.h>

#include "check_dkim.h"

struct odkv_lib;
struct odkv;

/* odkv_lib_new - libopendkim, keys through the TXT function set below. */
struct odkv_lib *odkv_lib_new(char *err, size_t errlen);
/* odkv_lib_set_txt_lookup - where keys come from (before odkv_new()). */
void odkv_lib_set_txt_lookup(struct odkv_lib *lib, dkimv_txt_fn fn, void *arg);
/* odkv_lib_set_time - verify as if the clock said now. */
void odkv_lib_set_time(struct odkv_lib *lib, long long now);
/* odkv_lib_free - accepts NULL. */
void odkv_lib_free(struct odkv_lib *lib);

/* As dkimv_new() ... dkimv_free() in check_dkim.h. */
struct odkv *odkv_new(struct odkv_lib *lib, const char *id);
void odkv_header(struct odkv *v, const char *field, size_t len);
bool odkv_eoh(struct odkv *v);
void odkv_body(struct odkv *v, const unsigned char *buf, size_t len);
void odkv_eom(struct odkv *v);
size_t odkv_nsigs(const struct odkv *v);
const struct dkimv_sig *odkv_sig(const struct odkv *v, size_t i);
enum dkimv_result odkv_best(const struct odkv *v, const char **domain);
/* odkv_status - libopendkim's final status name and phase (diagnostics). */
const char *odkv_status(const struct odkv *v, const char **phase);
void odkv_free(struct odkv *v);

#endif
