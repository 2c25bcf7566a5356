/*
 * mime_words.c - RFC 2047 encoded-words in a header phrase, decoded to
 * UTF-8, for the checks that read display names (spoofing, from.name).
 *
 * "=?UTF-8?B?Q0VPIDxjZW9AZXhhbXBsZS5vcmc+?=" is how a spoofer hides
 * "CEO <ceo@example.org>" from a filter that reads the raw header, while
 * every mail client shows it decoded. So the decoder is liberal where
 * clients are: encoded-words are decoded wherever they stand (also inside
 * a quoted string, which RFC 2047 5(3) forbids but clients accept), and
 * white space between two adjacent encoded-words is dropped (6.2). A word
 * that cannot be decoded (unknown charset, bad base64) stays as it was.
 * Control characters in the result become spaces, so a decoded name can
 * never carry a line break or NUL into a log line or a rule.
 *
 * Public:
 *   mime_words_decode()
 */

/* System. */
#include <ctype.h>
#include <errno.h>
#include <iconv.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

/* Project. */
#include "base64.h"
#include "mime_words.h"

/* Longest encoded-word we look at (RFC 2047 says 75; some senders exceed it). */
#define WORD_MAX 1024

/* Output being built: bounded, always room for the final NUL. */
struct out {
	char *s;
	size_t len, size;
};

/* put - append n bytes, as many as fit. */
static void
put(struct out *o, const char *p, size_t n)
{
	size_t room = o->size - 1 - o->len;

	if (n > room)
		n = room;
	memcpy(o->s + o->len, p, n);
	o->len += n;
}

/* decode_b - base64 text into buf; -1 when malformed. Padding is not
 * counted: a sender that drops it still reaches the reader's screen. */
static int
decode_b(const char *t, size_t n, char *buf, size_t size, size_t *len)
{
	unsigned acc = 0, bits = 0;
	size_t k = 0, pad = 0;

	for (size_t i = 0; i < n; i++) {
		int v;

		if (t[i] == '=') {
			pad++;
			continue;
		}
		if (pad || (v = base64_value((unsigned char)t[i])) < 0)
			return -1;
		acc = (acc << 6) | (unsigned)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (k >= size)
				return -1;
			buf[k++] = (char)((acc >> bits) & 0xff);
		}
	}
	if (pad > 2)
		return -1;
	*len = k;
	return 0;
}

/* hex - one hex digit, or -1. */
static int
hex(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (unsigned char)tolower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* decode_q - the "Q" encoding (RFC 2047 4.2) into buf; -1 when malformed. */
static int
decode_q(const char *t, size_t n, char *buf, size_t size, size_t *len)
{
	size_t k = 0;

	for (size_t i = 0; i < n; i++) {
		char c = t[i];

		if (c == '_') {
			c = ' ';
		} else if (c == '=') {
			int hi, lo;

			if (i + 2 >= n || (hi = hex((unsigned char)t[i + 1])) < 0 ||
			    (lo = hex((unsigned char)t[i + 2])) < 0)
				return -1;
			c = (char)(hi * 16 + lo);
			i += 2;
		}
		if (k >= size)
			return -1;
		buf[k++] = c;
	}
	*len = k;
	return 0;
}

/* to_utf8 - bytes in charset appended to o as UTF-8; -1 when not possible. */
static int
to_utf8(struct out *o, const char *charset, const char *b, size_t n)
{
	if (strcasecmp(charset, "utf-8") == 0 || strcasecmp(charset, "utf8") == 0 ||
	    strcasecmp(charset, "us-ascii") == 0) {
		put(o, b, n);
		return 0;
	}
	iconv_t cd = iconv_open("UTF-8", charset);
	if (cd == (iconv_t)-1)
		return -1;
	char tmp[WORD_MAX * 4];
	char *in = (char *)b, *op = tmp;
	size_t inleft = n, outleft = sizeof(tmp);
	size_t r = iconv(cd, &in, &inleft, &op, &outleft);
	iconv_close(cd);
	if (r == (size_t)-1)
		return -1;
	put(o, tmp, sizeof(tmp) - outleft);
	return 0;
}

/* encoded_word - decode the word at s (starting "=?") into o; the length
 * of the word in the input, or 0 when it is not a decodable word. */
static size_t
encoded_word(struct out *o, const char *s, size_t len)
{
	char charset[64], buf[WORD_MAX];
	size_t i = 2, c = 0, blen = 0;

	/* charset, with an RFC 2231 "*language" suffix dropped */
	while (i < len && s[i] != '?' && c + 1 < sizeof(charset)) {
		if (s[i] == ' ' || s[i] == '\t' || (unsigned char)s[i] < 0x20)
			return 0;
		charset[c++] = s[i++];
	}
	charset[c] = '\0';
	char *star = strchr(charset, '*');
	if (star)
		*star = '\0';
	if (!charset[0] || i + 3 > len || s[i] != '?' || s[i + 2] != '?')
		return 0;
	char enc = (char)toupper((unsigned char)s[i + 1]);
	if (enc != 'B' && enc != 'Q')
		return 0;
	size_t t0 = i + 3, t = t0;
	while (t + 1 < len && !(s[t] == '?' && s[t + 1] == '=')) {
		if (s[t] == ' ' || s[t] == '\t' || s[t] == '\r' || s[t] == '\n' || t - t0 > WORD_MAX)
			return 0;
		t++;
	}
	if (t + 1 >= len)
		return 0;
	int rc = enc == 'B' ? decode_b(s + t0, t - t0, buf, sizeof(buf), &blen)
			    : decode_q(s + t0, t - t0, buf, sizeof(buf), &blen);
	if (rc < 0)
		return 0;
	size_t mark = o->len;
	if (to_utf8(o, charset, buf, blen) < 0) {
		o->len = mark;
		return 0;
	}
	return t + 2;
}

/* mime_words_decode - see mime_words.h. */
size_t
mime_words_decode(const char *in, size_t len, char *out, size_t size)
{
	struct out o = { out, 0, size };
	size_t i = 0, ws = 0, ws_len = 0;
	bool after_word = false;

	if (size == 0)
		return 0;
	while (i < len) {
		if (in[i] == '=' && i + 1 < len && in[i + 1] == '?') {
			/* White space between two encoded-words is dropped. */
			bool held = after_word && ws_len;
			size_t n;

			if (ws_len && !held) {
				put(&o, in + ws, ws_len);
				ws_len = 0;
			}
			if ((n = encoded_word(&o, in + i, len - i)) > 0) {
				ws_len = 0;
				i += n;
				after_word = true;
				continue;
			}
			if (ws_len) {
				put(&o, in + ws, ws_len);
				ws_len = 0;
			}
			put(&o, in + i, 2);
			i += 2;
			after_word = false;
			continue;
		}
		if (in[i] == ' ' || in[i] == '\t' || in[i] == '\r' || in[i] == '\n') {
			/* Held back: dropped if an encoded-word follows one. */
			if (!ws_len)
				ws = i;
			ws_len = i - ws + 1;
			i++;
			continue;
		}
		if (ws_len) {
			put(&o, in + ws, ws_len);
			ws_len = 0;
		}
		put(&o, in + i, 1);
		after_word = false;
		i++;
	}
	if (ws_len)
		put(&o, in + ws, ws_len);
	for (size_t k = 0; k < o.len; k++)
		if ((unsigned char)out[k] < 0x20 || out[k] == 0x7f)
			out[k] = ' ';
	out[o.len] = '\0';
	return o.len;
}
