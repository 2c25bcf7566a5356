/*
 * dkim_canon.h - the pure parts of DKIM verification (RFC 6376): tag
 * lists, base64 with folding white space, header field and streaming
 * body canonicalisation ("simple" and "relaxed"). No I/O, no crypto;
 * check_dkim.c drives them.
 */
#ifndef RAVELIN_DKIM_CANON_H
#define RAVELIN_DKIM_CANON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One tag of a tag list (RFC 6376 3.2): name and raw value, both
 * pointing into the parsed text; the value has its surrounding FWS
 * trimmed but may contain FWS inside. */
struct dkim_tag {
	const char *name, *value;
	size_t namelen, valuelen;
	size_t vstart, vend;	/* value's offsets in the text, FWS around it included */
};

enum dkim_tags_status {
	DKIM_TAGS_OK = 0,
	DKIM_TAGS_SYNTAX,	/* not a tag list */
	DKIM_TAGS_DUPLICATE,	/* a tag name twice (RFC 6376 3.2: invalid) */
	DKIM_TAGS_TOOMANY,	/* more than max tags */
};

/* dkim_tags_parse - split text into tags (at most max); *n gets the count. */
enum dkim_tags_status dkim_tags_parse(const char *text, size_t len, struct dkim_tag *tags,
				      size_t max, size_t *n);

/* dkim_tag_find - the tag called name (case-sensitive, as RFC 6376 3.2
 * says), or NULL. */
const struct dkim_tag *dkim_tag_find(const struct dkim_tag *tags, size_t n, const char *name);

/* dkim_compact - copy src without SP, TAB, CR and LF into dst (size n,
 * NUL-terminated); false when it does not fit. */
bool dkim_compact(char *dst, size_t n, const char *src, size_t len);

/* dkim_b64_decode - base64 (FWS ignored, '=' padding) into out (size
 * max); false on a bad character, bad padding or no room. */
bool dkim_b64_decode(const char *src, size_t len, unsigned char *out, size_t max,
		     size_t *outlen);

/* dkim_header_canon - one header field "Name: value" (folded, no final
 * CRLF) in canonical form, plus CRLF when crlf, into out (size max).
 * Returns the length, or (size_t)-1 when it does not fit. */
size_t dkim_header_canon(const char *field, size_t len, bool relaxed, bool crlf, char *out,
			 size_t max);

/* Streaming body canonicalisation; output goes to sink in pieces. */
typedef void (*dkim_body_sink)(void *arg, const unsigned char *buf, size_t len);

struct dkim_body {
	bool relaxed;
	bool cr;		/* a CR ended the last chunk */
	bool wsp;		/* relaxed: white space seen, not yet written */
	bool midline;		/* the current line has content */
	uint64_t pending;	/* empty lines held back (they may be trailing) */
	uint64_t total;		/* canonical octets written so far */
	dkim_body_sink sink;
	void *arg;
	size_t n;
	unsigned char out[4096];
};

/* dkim_body_init - start a body in simple or relaxed form. */
void dkim_body_init(struct dkim_body *b, bool relaxed, dkim_body_sink sink, void *arg);
/* dkim_body_feed - body octets (CRLF text), any chunking. */
void dkim_body_feed(struct dkim_body *b, const unsigned char *p, size_t len);
/* dkim_body_end - end of body: the final CRLF rules, then flush. */
void dkim_body_end(struct dkim_body *b);

#endif
