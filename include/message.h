/*
 * message.h - the DATA phase: a resumable byte-level parser that finds the
 * real <CRLF>.<CRLF>, checks every line (bare CR/LF, NUL, length, size),
 * splits the header section into fields and keeps the body, still in wire
 * (dot-stuffed) form, in a bounded spool: memory up to a threshold, then an
 * unlinked temporary file.
 */
#ifndef RAVELIN_MESSAGE_H
#define RAVELIN_MESSAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct evbuffer;

/* Why a message is refused at end of data (first problem wins). */
enum msg_problem {
	MSG_OK = 0,
	MSG_BARE_NEWLINE,       /* 550 5.5.2 */
	MSG_NUL,                /* 550 5.6.0 */
	MSG_LONG_LINE,          /* 550 5.6.0 */
	MSG_TOO_BIG,            /* 552 5.3.4 */
	MSG_HEADER_TOO_BIG,     /* 552 5.3.4 (fields or bytes) */
	MSG_IO_ERROR,           /* 451 4.3.0 */
};

/* One header field as received: "Name: value" with its folding CRLFs,
 * without the final CRLF, dot-stuffing undone. */
struct msg_header {
	char *raw;
	size_t len;
	size_t name_len;
};

/* Consumers that want the message as it streams (DKIM). */
struct msg_stream_ops {
	void (*header)(void *arg, const char *field, size_t len);
	void (*eoh)(void *arg);
	void (*body)(void *arg, const char *buf, size_t len);   /* unstuffed CRLF text */
};

struct msg_limits {
	size_t max_size;            /* message bytes */
	size_t max_header_fields;
	size_t max_header_bytes;
	size_t spool_memory;        /* bytes of body in memory before spilling */
	bool normalize_newlines;    /* bare CR/LF -> CRLF instead of refusing */
	bool long_lines_pass;
	const char *spool_dir;      /* NULL: $TMPDIR or /tmp */
};

struct message {
	struct msg_header *headers;
	size_t nheaders;
	bool separator;             /* the header section ended with an empty line */
	size_t size;                /* bytes received, unstuffed */
	enum msg_problem problem;
	/* Body in wire form, dot-stuffed, CRLF line ends, no terminator. */
	struct evbuffer *mem;
	int fd;                     /* -1 while in memory */
	off_t filelen;
};

enum msg_status { MSG_FEED_MORE, MSG_FEED_END };

struct msg_parser;

struct msg_parser *msg_parser_new(const struct msg_limits *lim, const struct msg_stream_ops *ops,
				  void *arg);
/* msg_parser_feed - consume bytes; *used tells how many (up to and
 * including the terminator when MSG_FEED_END). */
enum msg_status msg_parser_feed(struct msg_parser *p, const char *buf, size_t len, size_t *used);
/* msg_parser_chunked - BDAT content (RFC 3030): counted, not dot-stuffed,
 * no terminator; msg_parser_finish() ends it after the LAST chunk. */
void msg_parser_chunked(struct msg_parser *p);
void msg_parser_finish(struct msg_parser *p);
/* msg_parser_message - the message built so far (owned by the parser). */
struct message *msg_parser_message(struct msg_parser *p);
void msg_parser_free(struct msg_parser *p);

/* msg_header_value - the value of field i (after "Name:"), and its length. */
const char *msg_header_value(const struct msg_header *h, size_t *len);
/* msg_header_is - does field i have this name (case-insensitive)? */
bool msg_header_is(const struct msg_header *h, const char *name);

/* msg_stuff_header - append one header field, dot-stuffed, with CRLF. */
void msg_stuff_header(struct evbuffer *out, const char *raw, size_t len);
/* msg_body_read - copy up to max bytes of the wire-form body at offset
 * into out; returns bytes copied, 0 at the end, -1 on I/O error. */
ssize_t msg_body_read(const struct message *m, off_t offset, struct evbuffer *out, size_t max);
off_t msg_body_length(const struct message *m);

#endif
