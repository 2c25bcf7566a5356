/*
 * message.c - the DATA phase, byte by byte, resumable.
 *
 * Only <CRLF>.<CRLF> ends a message (SMTP smuggling). Lines are unstuffed
 * only when they began after a real CRLF; a bare CR or LF either refuses
 * the message (bare_newline reject) or becomes CRLF (normalize), and a line
 * it starts is taken literally. The body is stored re-stuffed from the
 * unstuffed lines, so whatever reaches the backend has exactly one
 * terminator, the one we write. Header fields are kept apart so that the
 * session can add and remove fields before forwarding.
 *
 * BDAT content (RFC 3030) goes through the same parser in chunked mode:
 * counted by the session, never unstuffed, ended by msg_parser_finish().
 *
 * Public:
 *   msg_parser_new(), msg_parser_feed(), msg_parser_chunked(),
 *   msg_parser_finish(), msg_parser_message(),
 *   msg_parser_free(), msg_header_value(), msg_header_is(),
 *   msg_stuff_header(), msg_body_read(), msg_body_length()
 */

/* System. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* Library. */
#include <event2/buffer.h>

/* Project. */
#include "fmt.h"
#include "message.h"

/* RFC 5321 4.5.3.1.6: 1000 octets with CRLF. */
#define MSG_LINE_MAX     998
#define MSG_BODYCHUNK    16384
#define MSG_FILEBUF      65536
#define MSG_STAGE        4096

enum msg_state { ST_BOL, ST_DOT, ST_DOT_CR, ST_TEXT, ST_CR };

struct msg_parser {
	struct msg_limits lim;
	const struct msg_stream_ops *ops;
	void *arg;
	struct message msg;

	enum msg_state state;
	bool crlf_start;        /* this line began after a real CRLF */
	size_t linelen;         /* octets of the line as received */

	/* Header section. */
	bool in_headers;
	char *line;             /* current unstuffed header line */
	size_t line_len, line_cap;
	char *field;            /* pending field (may grow by continuations) */
	size_t field_len, field_cap;
	size_t header_bytes;

	bool chunked;           /* BDAT content: no dot-stuffing, no terminator */

	/* Body. */
	bool body_bol;          /* at the start of an output body line */
	size_t chunk_len;
	size_t stage_len;
	struct evbuffer *filebuf;   /* pending writes once spilled */
	/* Last: not zeroed at birth (20 KiB a message would be). */
	char chunk[MSG_BODYCHUNK];  /* unstuffed body for ops->body */
	char stage[MSG_STAGE];      /* wire-form body on its way to the spool */
};

/* problem - remember the first reason to refuse; stop storing. */
static void
problem(struct msg_parser *p, enum msg_problem why)
{
	if (p->msg.problem == MSG_OK)
		p->msg.problem = why;
}

/* grow - make room for n more bytes in a dynamic buffer. */
static int
grow(char **buf, size_t *cap, size_t len, size_t n)
{
	if (len + n <= *cap)
		return 0;
	size_t nc = *cap ? *cap : 256;
	while (nc < len + n)
		nc *= 2;
	char *nb = realloc(*buf, nc);
	if (!nb)
		return -1;
	*buf = nb;
	*cap = nc;
	return 0;
}

/* spill - move the in-memory body to an unlinked temporary file. */
static int
spill(struct msg_parser *p)
{
	const char *dir = p->lim.spool_dir;
	char path[4096];

	if (!dir && !(dir = getenv("TMPDIR")))
		dir = "/tmp";
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0) {
		fmt_snprintf(path, sizeof(path), "%s/ravelin.XXXXXX", dir);
		if ((fd = mkstemp(path)) < 0)
			return -1;
		unlink(path);
	}
	p->msg.fd = fd;
	p->msg.filelen = 0;
	p->filebuf = p->msg.mem;
	p->msg.mem = NULL;
	return 0;
}

/* flush_file - write pending spool bytes to the file. */
static int
flush_file(struct msg_parser *p)
{
	while (evbuffer_get_length(p->filebuf) > 0) {
		int n = evbuffer_write(p->filebuf, p->msg.fd);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p->msg.filelen += n;
	}
	return 0;
}

/* spool_put - append wire-form body bytes to the spool itself. */
static void
spool_put(struct msg_parser *p, const char *b, size_t n)
{
	if (p->msg.fd < 0) {
		evbuffer_add(p->msg.mem, b, n);
		if (evbuffer_get_length(p->msg.mem) > p->lim.spool_memory && spill(p) < 0)
			problem(p, MSG_IO_ERROR);
		return;
	}
	evbuffer_add(p->filebuf, b, n);
	if (evbuffer_get_length(p->filebuf) >= MSG_FILEBUF && flush_file(p) < 0)
		problem(p, MSG_IO_ERROR);
}

/* stage_flush - what the stage holds goes to the spool. */
static void
stage_flush(struct msg_parser *p)
{
	if (p->stage_len && p->msg.problem == MSG_OK)
		spool_put(p, p->stage, p->stage_len);
	p->stage_len = 0;
}

/* spool_add - append wire-form body bytes. A line arrives in two or three
 * pieces (content, CRLF, a stuffing dot): they gather in the stage and
 * reach the spool a few KiB at a time, not one evbuffer_add() each. */
static void
spool_add(struct msg_parser *p, const char *b, size_t n)
{
	if (p->msg.problem != MSG_OK)
		return;
	if (p->stage_len + n > sizeof(p->stage)) {
		stage_flush(p);
		if (n > sizeof(p->stage)) {
			spool_put(p, b, n);
			return;
		}
	}
	memcpy(p->stage + p->stage_len, b, n);
	p->stage_len += n;
}

/* chunk_flush - hand buffered unstuffed body to the stream consumer. */
static void
chunk_flush(struct msg_parser *p)
{
	if (p->chunk_len && p->ops && p->ops->body && p->msg.problem == MSG_OK)
		p->ops->body(p->arg, p->chunk, p->chunk_len);
	p->chunk_len = 0;
}

/* body_bytes - unstuffed body content (no line ends) of the current line. */
static void
body_bytes(struct msg_parser *p, const char *b, size_t n)
{
	if (n == 0)
		return;
	if (p->body_bol && b[0] == '.')
		spool_add(p, ".", 1);
	p->body_bol = false;
	spool_add(p, b, n);
	if (p->chunk_len + n > sizeof(p->chunk))
		chunk_flush(p);
	if (n > sizeof(p->chunk)) {
		if (p->ops && p->ops->body && p->msg.problem == MSG_OK)
			p->ops->body(p->arg, b, n);
	} else {
		memcpy(p->chunk + p->chunk_len, b, n);
		p->chunk_len += n;
	}
}

/* body_eol - end of a body line. */
static void
body_eol(struct msg_parser *p)
{
	spool_add(p, "\r\n", 2);
	p->body_bol = true;
	if (p->chunk_len + 2 > sizeof(p->chunk))
		chunk_flush(p);
	memcpy(p->chunk + p->chunk_len, "\r\n", 2);
	p->chunk_len += 2;
}

/* field_done - the pending header field is complete. */
static void
field_done(struct msg_parser *p)
{
	if (!p->field_len)
		return;
	if (p->msg.nheaders >= p->lim.max_header_fields) {
		problem(p, MSG_HEADER_TOO_BIG);
		p->field_len = 0;
		return;
	}
	if (p->msg.problem == MSG_OK) {
		struct msg_header *nh = realloc(p->msg.headers, (p->msg.nheaders + 1) * sizeof(*nh));
		char *raw = malloc(p->field_len + 1);
		if (!nh || !raw) {
			free(raw);
			if (nh)
				p->msg.headers = nh;
			problem(p, MSG_IO_ERROR);
			p->field_len = 0;
			return;
		}
		p->msg.headers = nh;
		memcpy(raw, p->field, p->field_len);
		raw[p->field_len] = '\0';
		struct msg_header *h = &p->msg.headers[p->msg.nheaders++];
		h->raw = raw;
		h->len = p->field_len;
		h->name_len = strcspn(raw, ":");
		while (h->name_len > 0 && (raw[h->name_len - 1] == ' ' || raw[h->name_len - 1] == '\t'))
			h->name_len--;
		if (p->ops && p->ops->header)
			p->ops->header(p->arg, raw, p->field_len);
	}
	p->field_len = 0;
}

/* is_field_start - "Name:" with printable name octets (RFC 5322 2.2),
 * allowing white space before the colon as obsolete syntax does. */
static bool
is_field_start(const char *l, size_t n)
{
	size_t i = 0;
	while (i < n && l[i] != ':' && (unsigned char)l[i] > 32 && (unsigned char)l[i] < 127)
		i++;
	if (i == 0)
		return false;
	while (i < n && (l[i] == ' ' || l[i] == '\t'))
		i++;
	return i < n && l[i] == ':';
}

/* end_headers - leave the header section. */
static void
end_headers(struct msg_parser *p, bool separator)
{
	field_done(p);
	p->in_headers = false;
	p->msg.separator = separator;
	if (p->ops && p->ops->eoh && p->msg.problem == MSG_OK)
		p->ops->eoh(p->arg);
}

/* header_eol - a complete unstuffed line while in the header section. */
static void
header_eol(struct msg_parser *p)
{
	const char *l = p->line;
	size_t n = p->line_len;

	p->line_len = 0;
	if (n == 0) {
		end_headers(p, true);
		return;
	}
	if ((l[0] == ' ' || l[0] == '\t') && p->field_len) {
		if (grow(&p->field, &p->field_cap, p->field_len, n + 2) < 0) {
			problem(p, MSG_IO_ERROR);
			return;
		}
		memcpy(p->field + p->field_len, "\r\n", 2);
		memcpy(p->field + p->field_len + 2, l, n);
		p->field_len += n + 2;
		return;
	}
	if (is_field_start(l, n)) {
		field_done(p);
		if (grow(&p->field, &p->field_cap, 0, n) < 0) {
			problem(p, MSG_IO_ERROR);
			return;
		}
		memcpy(p->field, l, n);
		p->field_len = n;
		return;
	}
	/* Not a header line: the body starts here, without a separator. */
	end_headers(p, false);
	body_bytes(p, l, n);
	body_eol(p);
}

/* out_bytes - unstuffed content bytes of the current line. */
static void
out_bytes(struct msg_parser *p, const char *b, size_t n)
{
	p->msg.size += n;
	if (p->msg.size > p->lim.max_size)
		problem(p, MSG_TOO_BIG);
	if (!p->in_headers) {
		body_bytes(p, b, n);
		return;
	}
	p->header_bytes += n;
	if (p->header_bytes > p->lim.max_header_bytes) {
		problem(p, MSG_HEADER_TOO_BIG);
		return;
	}
	if (grow(&p->line, &p->line_cap, p->line_len, n) < 0) {
		problem(p, MSG_IO_ERROR);
		return;
	}
	memcpy(p->line + p->line_len, b, n);
	p->line_len += n;
}

/* out_eol - a line ends (real CRLF, or a normalized bare CR/LF). */
static void
out_eol(struct msg_parser *p)
{
	p->msg.size += 2;
	if (p->msg.size > p->lim.max_size)
		problem(p, MSG_TOO_BIG);
	if (p->in_headers) {
		/* The CRLFs count towards the header section's bytes too. */
		p->header_bytes += 2;
		if (p->header_bytes > p->lim.max_header_bytes)
			problem(p, MSG_HEADER_TOO_BIG);
		header_eol(p);
	} else
		body_eol(p);
}

/* bare_newline - a CR or LF that is not part of CRLF. Returns true when
 * the line is broken there (normalize) so the caller starts a new one. */
static bool
bare_newline(struct msg_parser *p)
{
	if (!p->lim.normalize_newlines) {
		problem(p, MSG_BARE_NEWLINE);
		return false;
	}
	out_eol(p);
	p->linelen = 0;
	p->crlf_start = false;
	return true;
}

/* count - one more received octet on this line. */
static void
count(struct msg_parser *p, size_t n)
{
	p->linelen += n;
	if (p->linelen > MSG_LINE_MAX && !p->lim.long_lines_pass)
		problem(p, MSG_LONG_LINE);
}

/* run_cap - the longest run of content octets that crosses a limit (line,
 * size, header bytes) at most at its last octet: limits are then checked
 * at the exact octet that crosses them, so the first problem, the one the
 * client hears about, does not depend on how TCP split the input. */
static size_t
run_cap(const struct msg_parser *p)
{
	size_t cap = SIZE_MAX, room;

	if (p->msg.problem != MSG_OK)
		return cap;
	if (!p->lim.long_lines_pass && p->linelen <= MSG_LINE_MAX)
		cap = MSG_LINE_MAX + 1 - p->linelen;
	if (p->msg.size <= p->lim.max_size && (room = p->lim.max_size - p->msg.size) < cap)
		cap = room + 1;
	if (p->in_headers && p->header_bytes <= p->lim.max_header_bytes &&
	    (room = p->lim.max_header_bytes - p->header_bytes) < cap)
		cap = room + 1;
	return cap;
}

/* end_message - the message is complete: flush everything pending. */
static void
end_message(struct msg_parser *p)
{
	if (p->in_headers)
		end_headers(p, false);
	field_done(p);
	chunk_flush(p);
	stage_flush(p);
	if (p->msg.fd >= 0 && flush_file(p) < 0)
		problem(p, MSG_IO_ERROR);
}

/* plain_line - the content length of a body line at b that needs nothing
 * of the octet-by-octet path: it ends in CRLF within the line limit, holds
 * no other CR and no NUL, does not start with '.', and keeps the message
 * within its size. SIZE_MAX otherwise (the caller takes the slow path,
 * which then reaches the same verdicts octet by octet). */
static size_t
plain_line(const struct msg_parser *p, const char *b, size_t len)
{
	const char *lf = memchr(b, '\n', len < MSG_LINE_MAX + 2 ? len : MSG_LINE_MAX + 2);

	if (!lf || lf == b || lf[-1] != '\r' || b[0] == '.')
		return SIZE_MAX;
	size_t n = (size_t)(lf - b) - 1;
	if (memchr(b, '\r', n) || memchr(b, '\0', n) || p->msg.problem != MSG_OK ||
	    p->msg.size + n + 2 > p->lim.max_size)
		return SIZE_MAX;
	return n;
}

/* body_line - a whole plain body line (plain_line()), its CRLF included:
 * one piece for the spool and one for the stream, as the input has it. */
static void
body_line(struct msg_parser *p, const char *b, size_t n)
{
	p->msg.size += n + 2;
	spool_add(p, b, n + 2);
	if (p->chunk_len + n + 2 > sizeof(p->chunk))
		chunk_flush(p);
	memcpy(p->chunk + p->chunk_len, b, n + 2);
	p->chunk_len += n + 2;
	p->body_bol = true;
}

/* plain_run - how many octets of b[0..n) hold no CR, LF or NUL. Three
 * vectorised memchr()s beat one test per octet on every body line. */
static size_t
plain_run(const char *b, size_t n)
{
	const char *cr = memchr(b, '\r', n);
	size_t m = cr ? (size_t)(cr - b) : n;
	const char *lf = memchr(b, '\n', m);

	if (lf)
		m = (size_t)(lf - b);
	const char *nul = memchr(b, '\0', m);
	return nul ? (size_t)(nul - b) : m;
}

/* msg_parser_feed - consume bytes up to and including the terminator. */
enum msg_status
msg_parser_feed(struct msg_parser *p, const char *buf, size_t len, size_t *used)
{
	size_t i = 0;

	while (i < len) {
		char c = buf[i];
		switch (p->state) {
		case ST_BOL:
			/* Body lines without anything special go whole. */
			if (!p->in_headers && c != '.') {
				size_t n = plain_line(p, buf + i, len - i);
				if (n != SIZE_MAX) {
					body_line(p, buf + i, n);
					p->linelen = 0;
					p->crlf_start = true;
					i += n + 2;
					continue;
				}
			}
			if (c == '.' && p->crlf_start && !p->chunked) {
				count(p, 1);
				p->state = ST_DOT;
				i++;
				continue;
			}
			p->state = ST_TEXT;
			continue;
		case ST_DOT:
			if (c == '\r') {
				p->state = ST_DOT_CR;
				i++;
				continue;
			}
			/* The dot was stuffing. */
			p->state = ST_TEXT;
			continue;
		case ST_DOT_CR:
			if (c == '\n') {
				i++;
				*used = i;
				end_message(p);
				return MSG_FEED_END;
			}
			/* ".<CR>x": the CR is bare. */
			if (bare_newline(p)) {
				p->state = ST_BOL;
				continue;
			}
			out_bytes(p, "\r", 1);
			count(p, 1);
			p->state = ST_TEXT;
			continue;
		case ST_TEXT: {
			/* Fast path: a run of ordinary octets. */
			size_t cap = run_cap(p);
			size_t j = i + plain_run(buf + i, cap < len - i ? cap : len - i);
			if (j > i) {
				out_bytes(p, buf + i, j - i);
				count(p, j - i);
				i = j;
				continue;
			}
			if (c == '\r') {
				p->state = ST_CR;
				i++;
			} else if (c == '\n') {
				i++;
				if (bare_newline(p))
					p->state = ST_BOL;
				else
					out_bytes(p, "\n", 1), count(p, 1);
			} else {
				problem(p, MSG_NUL);
				out_bytes(p, buf + i, 1);
				count(p, 1);
				i++;
			}
			continue;
		}
		case ST_CR:
			if (c == '\n') {
				i++;
				out_eol(p);
				p->linelen = 0;
				p->crlf_start = true;
				p->state = ST_BOL;
				continue;
			}
			if (bare_newline(p)) {
				p->state = ST_BOL;
				continue;
			}
			out_bytes(p, "\r", 1);
			count(p, 1);
			p->state = ST_TEXT;
			continue;
		}
	}
	*used = len;
	return MSG_FEED_MORE;
}

/* msg_parser_chunked - BDAT (RFC 3030): the content comes by count, so
 * a '.' is data and nothing in it ends the message; msg_parser_finish()
 * does, after the LAST chunk. Call before the first msg_parser_feed(). */
void
msg_parser_chunked(struct msg_parser *p)
{
	p->chunked = true;
}

/* msg_parser_finish - the end of BDAT content. A last line without CRLF
 * gets one (the backend receives the message with DATA, where the dot
 * must start a line); a CR at the very end is a bare CR. */
void
msg_parser_finish(struct msg_parser *p)
{
	if (p->state == ST_CR)
		(void)bare_newline(p);	/* refused, or normalized into CRLF */
	else if (p->state != ST_BOL)
		out_eol(p);
	p->state = ST_BOL;
	p->linelen = 0;
	p->crlf_start = true;
	end_message(p);
}

/* msg_parser_new - a parser at the first octet after "354". */
struct msg_parser *
msg_parser_new(const struct msg_limits *lim, const struct msg_stream_ops *ops, void *arg)
{
	struct msg_parser *p = malloc(sizeof(*p));

	if (!p)
		return NULL;
	memset(p, 0, offsetof(struct msg_parser, chunk));
	p->lim = *lim;
	p->ops = ops;
	p->arg = arg;
	p->state = ST_BOL;
	p->crlf_start = true;
	p->in_headers = true;
	p->body_bol = true;
	p->msg.fd = -1;
	if (!(p->msg.mem = evbuffer_new())) {
		free(p);
		return NULL;
	}
	return p;
}

/* msg_parser_message - the message built so far. */
struct message *
msg_parser_message(struct msg_parser *p)
{
	return &p->msg;
}

/* msg_parser_free - release everything; accepts NULL. */
void
msg_parser_free(struct msg_parser *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->msg.nheaders; i++)
		free(p->msg.headers[i].raw);
	free(p->msg.headers);
	if (p->msg.mem)
		evbuffer_free(p->msg.mem);
	if (p->filebuf)
		evbuffer_free(p->filebuf);
	if (p->msg.fd >= 0)
		close(p->msg.fd);
	free(p->line);
	free(p->field);
	free(p);
}

/* msg_header_value - the value after "Name:". */
const char *
msg_header_value(const struct msg_header *h, size_t *len)
{
	const char *colon = memchr(h->raw, ':', h->len);
	if (!colon) {
		*len = 0;
		return h->raw + h->len;
	}
	*len = h->len - (colon + 1 - h->raw);
	return colon + 1;
}

/* msg_header_is - does the field have this name (case-insensitive)? */
bool
msg_header_is(const struct msg_header *h, const char *name)
{
	size_t n = strlen(name);
	return h->name_len == n && strncasecmp(h->raw, name, n) == 0;
}

/* msg_stuff_header - append one header field, dot-stuffed, with CRLF. */
void
msg_stuff_header(struct evbuffer *out, const char *raw, size_t len)
{
	const char *s = raw, *end = raw + len;

	while (s < end) {
		const char *eol = memchr(s, '\n', end - s);
		size_t n = eol ? (size_t)(eol + 1 - s) : (size_t)(end - s);
		if (*s == '.')
			evbuffer_add(out, ".", 1);
		evbuffer_add(out, s, n);
		s += n;
	}
	evbuffer_add(out, "\r\n", 2);
}

/* msg_body_length - bytes of wire-form body. */
off_t
msg_body_length(const struct message *m)
{
	return m->fd >= 0 ? m->filelen : (off_t)evbuffer_get_length(m->mem);
}

/* msg_body_read - copy up to max bytes of the body at offset into out. */
ssize_t
msg_body_read(const struct message *m, off_t offset, struct evbuffer *out, size_t max)
{
	off_t total = msg_body_length(m);

	if (offset >= total)
		return 0;
	if ((off_t)max > total - offset)
		max = (size_t)(total - offset);
	if (m->fd < 0) {
		struct evbuffer_ptr pos;
		struct evbuffer_iovec v[16];
		if (evbuffer_ptr_set(m->mem, &pos, (size_t)offset, EVBUFFER_PTR_SET) < 0)
			return -1;
		int nv = evbuffer_peek(m->mem, (ev_ssize_t)max, &pos, v, 16);
		size_t done = 0;
		for (int i = 0; i < nv && i < 16 && done < max; i++) {
			size_t n = v[i].iov_len;
			if (n > max - done)
				n = max - done;
			evbuffer_add(out, v[i].iov_base, n);
			done += n;
		}
		return (ssize_t)done;
	}
	char buf[65536];
	if (max > sizeof(buf))
		max = sizeof(buf);
	ssize_t n;
	do
		n = pread(m->fd, buf, max, offset);
	while (n < 0 && errno == EINTR);
	if (n > 0)
		evbuffer_add(out, buf, (size_t)n);
	return n;
}
