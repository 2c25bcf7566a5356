/*
 * fuzz_dkim.c - libFuzzer target for the DKIM verifier (check_dkim.c,
 * dkim_canon.c, dkim_keyrec.c) on hostile messages.
 *
 * The input is a message (header fields, an empty line, the body); keys
 * come from a fixed in-memory table (the RFC 8463 keys and OpenDKIM's test
 * keys, good and broken), so signatures in the corpus really verify and
 * mutations reach every step: tag lists, base64, both canonicalisations,
 * l=, field selection, key records, the RSA and Ed25519 checks. The body
 * goes in twice, whole and in pieces of a size the first octet picks;
 * both runs must give the same results. Checked as well: at most
 * DKIMV_MAX_SIGS signatures, every result within the enum, best equal to
 * the best signature, every string NUL-terminated within its array.
 *
 *   make -f tests/fuzz/Makefile build-fuzz/fuzz_dkim
 *   build-fuzz/fuzz_dkim tests/fuzz/corpus/dkim
 */

/* System. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Project. */
#include "check_dkim.h"

/* check - abort with a message so libFuzzer records the input. */
#define check(cond)                                                                \
	do {                                                                       \
		if (!(cond)) {                                                     \
			fprintf(stderr, "fuzz_dkim: %s failed at line %d\n", #cond, \
				__LINE__);                                         \
			abort();                                                   \
		}                                                                  \
	} while (0)

#define RSA1024                                                                        \
	"MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDkHlOQoBTzWRiGs5V6NpP3idY6Wk08a5qhdR6wy5bd"   \
	"OKb2jLQiY/J16JYi0Qvx/byYzCNb3W91y3FutACDfzwQ/BC/e/8uBsCR+yz1Lxj+PL6lHvqMKrM3rG4h"   \
	"stT5QjvHO9PzoxZyVYLzBfO2EeC3Ip3G+2kryOTIKT+l/K4w3QIDAQAB"
#define LIBTEST                                                                        \
	"MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQC4GUGr+d/6SFNzVLYpphnRd0QPGKz2uWnV65RAxa1P" \
	"w352BqizqiKOBjgYGzj8pJQSs8tOvv/2k6jpI809RnESqOFgF0gu3UJbNnu3+cd8k/kiQj+q4cKKRpAT" \
	"92ccxc7svhCNgN1sBGmROYZuysG3Vu3Dyc079gSLtnSrgXb+gQIDAQAB"

/* The key table: selector._domainkey.domain and its TXT records. */
static const struct {
	const char *name, *records;
} keys[] = {
	{ "brisbane._domainkey.football.example.com",
	  "v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=" },
	{ "test._domainkey.football.example.com", "v=DKIM1; k=rsa; p=" RSA1024 },
	{ "test._domainkey.example.com", "v=DKIM1; k=rsa; t=y:s; h=sha1:sha256; p=" LIBTEST },
	{ "brisbane._domainkey.example.com", "v=spf1 -all\nv=DKIM1; p=" LIBTEST },
	{ "test._domainkey.sendmail.com", "v=DKIM1; k=rsa; t=y; p=" LIBTEST },
	{ "badv._domainkey.example.com", "v=DKIM0; p=" LIBTEST },
	{ "emptyp._domainkey.example.com", "v=DKIM1; k=rsa; p=" },
	{ "corruptp._domainkey.example.com", "v=DKIM1; k=rsa; p=MIGfMA0GCSqG" },
	{ "edrsa._domainkey.example.com", "v=DKIM1; k=ed25519; p=" LIBTEST },
};

/* txt - a dkimv_txt_fn over the table; "temp" selectors fail temporarily. */
static enum dkimv_txt_status
txt(void *arg, const char *name, char *out, size_t outlen)
{
	if (strncasecmp(name, "temp.", 5) == 0)
		return DKIMV_TXT_TEMPFAIL;
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
		if (strcasecmp(keys[i].name, name) == 0) {
			snprintf(out, outlen, "%s", keys[i].records);
			return DKIMV_TXT_OK;
		}
	return DKIMV_TXT_NOTFOUND;
}

static struct dkimv_lib *lib;

/* terminated - a NUL within the n octets of s. */
static int
terminated(const char *s, size_t n)
{
	return memchr(s, '\0', n) != NULL;
}

/* run - one verification; chunk 0 feeds the body whole. */
static struct dkimv *
run(const uint8_t *data, size_t size, size_t chunk)
{
	struct dkimv *v = dkimv_new(lib, "fuzz");
	size_t pos = 0;

	check(v != NULL);
	/* Header fields: up to a CRLF not followed by WSP; an empty line ends them. */
	while (pos < size) {
		size_t start = pos, end;

		if (size - pos >= 2 && data[pos] == '\r' && data[pos + 1] == '\n') {
			pos += 2;
			break;
		}
		for (;;) {
			const uint8_t *nl = memmem(data + pos, size - pos, "\r\n", 2);

			pos = nl ? (size_t)(nl - data) + 2 : size;
			end = nl ? pos - 2 : size;
			if (nl == NULL || pos >= size || (data[pos] != ' ' && data[pos] != '\t'))
				break;
		}
		dkimv_header(v, (const char *)data + start, end - start);
	}
	if (dkimv_eoh(v)) {
		while (pos < size) {
			size_t k = chunk == 0 || size - pos < chunk ? size - pos : chunk;

			dkimv_body(v, data + pos, k);
			pos += k;
		}
	}
	dkimv_eom(v);
	return v;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char err[128];

	if (lib == NULL) {
		lib = dkimv_lib_new(NULL, NULL, err, sizeof err);
		check(lib != NULL);
		dkimv_lib_set_txt_lookup(lib, txt, NULL);
		dkimv_lib_set_time(lib, 1600000000);
	}
	if (size < 1)
		return 0;
	size_t chunk = 1 + data[0] % 97;
	struct dkimv *a = run(data + 1, size - 1, 0), *b = run(data + 1, size - 1, chunk);
	size_t n = dkimv_nsigs(a);
	enum dkimv_result best = DKIMV_NONE;
	const char *bestd;

	check(n <= DKIMV_MAX_SIGS);
	check(dkimv_nsigs(b) == n);
	for (size_t i = 0; i < n; i++) {
		const struct dkimv_sig *s = dkimv_sig(a, i), *t = dkimv_sig(b, i);

		check(s->result >= DKIMV_NONE && s->result <= DKIMV_PASS);
		check(s->result == t->result);
		check(terminated(s->domain, sizeof s->domain));
		check(terminated(s->selector, sizeof s->selector));
		check(terminated(s->b, sizeof s->b));
		check(terminated(s->algorithm, sizeof s->algorithm));
		check(terminated(s->reason, sizeof s->reason));
		check(strcmp(s->reason, t->reason) == 0);
		if (s->result > best)
			best = s->result;
	}
	check(dkimv_sig(a, n) == NULL);
	check(dkimv_best(a, &bestd) == best);
	check(bestd != NULL && (best != DKIMV_NONE || bestd[0] == '\0'));
	dkimv_free(a);
	dkimv_free(b);
	return 0;
}
