/*
 * fuzz_auth.c - libFuzzer target for SMTP AUTH response decoding.
 *
 * The input (cut at the first NUL, as a command line would be) goes
 * through auth_response_decode(), auth_plain_decode(),
 * auth_login_decode_user() and auth_login_decode_pass(). Checked: the
 * results stay within their buffers and are NUL-terminated, accepted
 * user names pass auth_user_valid(), a PLAIN authzid is empty or the
 * user, and base64 round-trips: what decodes re-encodes to the input.
 *
 *   make -f tests/fuzz/Makefile build-fuzz/fuzz_auth
 *   build-fuzz/fuzz_auth tests/fuzz/corpus/auth
 */

/* System. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Project. */
#include "auth.h"

/* check - abort with a message so libFuzzer records the input. */
#define check(cond)                                                             \
	do {                                                                    \
		if (!(cond)) {                                                  \
			fprintf(stderr, "fuzz_auth: %s failed at line %d\n", \
				#cond, __LINE__);                               \
			abort();                                                \
		}                                                               \
	} while (0)

/* LLVMFuzzerTestOneInput - decode the input every way the session does. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char line[1200], zid[AUTH_USER_MAX], user[AUTH_USER_MAX], pass[AUTH_PASS_MAX];
	unsigned char out[AUTH_DECODED_MAX];
	char enc[AUTH_DECODED_MAX * 2];
	size_t outlen = (size_t)-1;
	enum auth_status st;

	if (size >= sizeof(line))
		size = sizeof(line) - 1;
	memcpy(line, data, size);
	line[size] = '\0';

	st = auth_response_decode(line, out, sizeof(out), &outlen);
	check(st == AUTH_OK || st == AUTH_CANCEL || st == AUTH_BAD_BASE64 || st == AUTH_TOO_LONG);
	if (st == AUTH_OK) {
		check(outlen <= sizeof(out));
		/* Canonical base64 only: it re-encodes to what was sent. */
		if (strcmp(line, "=") != 0 && line[0] != '\0') {
			int n = auth_base64_encode(out, outlen, enc, sizeof(enc));
			check(n >= 0 && strcmp(enc, line) == 0);
		} else
			check(outlen == 0);
	}
	check(auth_status_str(st) != NULL);

	memset(zid, 'x', sizeof(zid));
	memset(user, 'x', sizeof(user));
	memset(pass, 'x', sizeof(pass));
	st = auth_plain_decode(line, zid, sizeof(zid), user, sizeof(user), pass, sizeof(pass));
	if (st == AUTH_OK) {
		check(memchr(zid, '\0', sizeof(zid)) && memchr(user, '\0', sizeof(user)));
		check(memchr(pass, '\0', sizeof(pass)));
		check(auth_user_valid(user) && pass[0] != '\0');
		check(zid[0] == '\0' || strcmp(zid, user) == 0);
	}
	st = auth_plain_decode(line, NULL, 0, user, sizeof(user), pass, sizeof(pass));
	(void)st;

	memset(user, 'x', sizeof(user));
	if (auth_login_decode_user(line, user, sizeof(user)) == AUTH_OK)
		check(memchr(user, '\0', sizeof(user)) && auth_user_valid(user));
	memset(pass, 'x', sizeof(pass));
	if (auth_login_decode_pass(line, pass, sizeof(pass)) == AUTH_OK)
		check(memchr(pass, '\0', sizeof(pass)) && pass[0] != '\0');

	/* Small output buffers must be refused, never overrun. */
	(void)auth_login_decode_user(line, user, 4);
	(void)auth_login_decode_pass(line, pass, 4);
	(void)auth_response_decode(line, out, 3, &outlen);
	(void)auth_base64_decode(line, out, 2);
	return 0;
}
