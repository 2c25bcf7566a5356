/*
 * backend.h - the client side: one lockstep SMTP session with the real MTA
 * per client session, opened lazily and reused across transactions.
 */
#ifndef RAVELIN_BACKEND_H
#define RAVELIN_BACKEND_H

#include <stdbool.h>
#include <stddef.h>

struct smtp_session;
struct evbuffer;
struct message;

enum backend_status {
	BE_OK,            /* a reply was read */
	BE_CONNECT_FAIL,  /* no backend reachable */
	BE_LOST,          /* disconnected */
	BE_TIMEOUT,
	BE_PROTOCOL,      /* unparsable or oversized reply */
};

struct backend_reply {
	enum backend_status status;
	int code;                 /* 0 unless BE_OK */
	const char *text;         /* the whole reply, CRLF-separated lines, ending in CRLF */
	size_t len;
};

typedef void backend_cb(struct smtp_session *s, const struct backend_reply *r);

struct backend;

struct backend *backend_new(struct smtp_session *s);
/* backend_ready - true when connected and past the handshake. */
bool backend_ready(const struct backend *be);
/* backend_open - connect, greeting, EHLO, XCLIENT or PROXY, STARTTLS. */
void backend_open(struct backend *be, backend_cb *cb);
/* backend_command - send one command line (no CRLF) and read its reply. */
void backend_command(struct backend *be, const char *line, backend_cb *cb);
/* backend_message - send DATA, then (on 354) headers + body + ".", read the reply. */
void backend_message(struct backend *be, struct evbuffer *headers, const struct message *m,
		     backend_cb *cb);
/* backend_free - QUIT politely when idle, then close; accepts NULL. */
void backend_free(struct backend *be);
/* backend_describe - "127.0.0.1:10025" of the current backend. */
const char *backend_describe(const struct backend *be);

#endif
