/*
 * base64.h - the base64 alphabet (RFC 4648 section 4), shared by the strict
 * SASL decoder (auth.c) and the lenient RFC 2047 one (mime_words.c): they
 * differ in what they forgive, not in what a digit is worth.
 */
#ifndef RAVELIN_BASE64_H
#define RAVELIN_BASE64_H

/* base64_value - the 6-bit value of a base64 digit, or -1. */
static inline int
base64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

#endif
