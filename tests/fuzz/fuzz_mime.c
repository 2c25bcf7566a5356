/*
 * fuzz_mime.c - libFuzzer target for RFC 2047 display-name decoding
 * (mime_words.c).
 *
 * The input is a display name as a sender could write it; the first byte
 * chooses the output size (1..256). Checked: the result is NUL-terminated
 * within the size, its length is what the function returned, it holds no
 * control character, and input without "=?" comes out unchanged (bar
 * control characters and truncation).
 *
 *   make -f tests/fuzz/Makefile build-fuzz/fuzz_mime
 *   build-fuzz/fuzz_mime tests/fuzz/corpus/mime
 */

/* System. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Project. */
#include "mime_words.h"

/* check - abort with a message so libFuzzer records the input. */
#define check(cond)                                                               \
	do {                                                                      \
		if (!(cond)) {                                                    \
			fprintf(stderr, "fuzz_mime: %s failed at line %d\n", #cond, \
				__LINE__);                                        \
			abort();                                                  \
		}                                                                 \
	} while (0)

/* LLVMFuzzerTestOneInput - one size byte, then the name. */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char out[257];

	if (size < 1)
		return 0;
	size_t osize = 1 + data[0];
	const char *in = (const char *)data + 1;
	size_t len = size - 1;

	memset(out, 'X', sizeof(out));
	size_t n = mime_words_decode(in, len, out, osize);
	check(n < osize);
	check(out[n] == '\0');
	check(osize == sizeof(out) || out[osize] == 'X');
	for (size_t i = 0; i < n; i++)
		check((unsigned char)out[i] >= 0x20 && out[i] != 0x7f);
	if (!memmem(in, len, "=?", 2)) {
		size_t want = len < osize - 1 ? len : osize - 1;
		check(n == want);
		for (size_t i = 0; i < n; i++) {
			unsigned char c = (unsigned char)in[i];
			check(out[i] == ((c < 0x20 || c == 0x7f) ? ' ' : (char)c));
		}
	}
	return 0;
}
