/*
 * mime_words.h - RFC 2047 encoded-words in a header phrase (a display
 * name), decoded to UTF-8.
 */
#ifndef RAVELIN_MIME_WORDS_H
#define RAVELIN_MIME_WORDS_H

#include <stddef.h>

/* mime_words_decode - in (len bytes) with its encoded-words decoded into
 * out (size bytes, always NUL-terminated; cut when too long); returns the
 * length written. Words that cannot be decoded are copied as they are;
 * control characters become spaces. */
size_t mime_words_decode(const char *in, size_t len, char *out, size_t size);

#endif
