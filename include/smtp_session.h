/*
 * smtp_session.h - the server side of one SMTP connection: state, the
 * transaction, and the facts the policy engine reads.
 */
#ifndef RAVELIN_SMTP_SESSION_H
#define RAVELIN_SMTP_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <time.h>

#include "lazytimer.h"
#include "policy.h"
#include "smtp_parse.h"

struct worker;
struct config;
struct server_listener;
struct bufferevent;
struct event;
struct backend;
struct msg_parser;
struct policy_state;

enum smtp_state {
	SS_PROXY,       /* waiting for the PROXY protocol header */
	SS_GREETING,    /* pregreet wait / connect policy before the banner */
	SS_CMD,         /* reading commands */
	SS_DATA,        /* reading the message */
	SS_BDAT,        /* reading a BDAT chunk (RFC 3030) */
	SS_AUTH,        /* reading an AUTH continuation line */
	SS_TLS,         /* STARTTLS handshake under way */
	SS_CLOSING,     /* flushing the last reply, then close */
};

struct smtp_rcpt {
	char *addr;             /* local@domain as parsed */
	char *domain;
	char *arg;              /* the RCPT argument as forwarded ("TO:<...> params") */
};

struct smtp_txn {
	struct smtp_path mail;  /* MAIL FROM: parsed, with params */
	char *mail_arg;         /* MAIL argument as forwarded */
	struct smtp_rcpt *rcpts;    /* accepted by us and by the backend */
	size_t nrcpts;
	unsigned rcpt_attempts;
	struct smtp_path rcpt;  /* the RCPT being decided (rcpt stage facts) */
	char *pending_rcpt_arg; /* its forwarded form */
	bool smtputf8;
	struct msg_parser *msg;
	bool backend_mail;      /* MAIL was accepted by the backend */
	bool refused;           /* last refusal; for the counters */
	int last_refusal;       /* its code (4xx/5xx), 0 = none */
	bool discard;
	time_t started;
};

struct smtp_session {
	struct smtp_session *prev, *next;   /* worker list */
	struct worker *w;
	struct config *cf;
	const struct server_listener *li;
	char id[16];
	int refs;

	int fd;
	struct bufferevent *bev;
	struct lazytimer timer;     /* client_timeout, data_timeout, pregreet */
	enum smtp_state state;
	bool busy;              /* a command is in its policy/backend phase */
	bool in_loop, again;
	bool closed;            /* connection gone; free when refs drop */
	unsigned errors;
	unsigned ncommands;
	bool skip_line;         /* discarding the rest of an overlong line */
	bool out_blocked;       /* reading paused: replies wait for the client */
	bool out_direct;        /* plain socket: we write replies (flush_cb) */
	struct bev_direct *rd;  /* plain socket: we read it ourselves */
	bool flush_queued;      /* on the worker's flush list */
	struct smtp_session *flush_next;
	bool proxy_wait;
	time_t started;

	struct sockaddr_storage peer;       /* the client (PROXY-presented if any) */
	struct sockaddr_storage local;
	char client_ip[INET6_ADDRSTRLEN];
	unsigned client_port;
	char client_name[256];              /* PTR name or "unknown" */
	bool ip_counted;

	bool esmtp;
	char helo[256];
	bool tls;
	char tls_info[128];
	bool auth;
	char auth_user[256];
	char auth_mech[16];
	unsigned auth_failures;
	struct auth_exchange *auth_x;

	struct smtp_txn *txn;   /* NULL outside a transaction */
	struct backend *be;
	struct policy_state *pol;   /* per transaction, from MAIL on */
	struct policy_job *pol_job; /* a stage's work on the check pool */
	int pol_stage;              /* the stage being evaluated */
	double pol_score;           /* score from the connect and helo stages */

	/* The BDAT chunk being read: octets left, its size, LAST; when
	 * skipped (refused), the reply to give once it is in (-1: given). */
	size_t bdat_left, bdat_size;
	bool bdat_last, bdat_skip;
	int bdat_reply;

	/* The verdict of the stage in progress, for proceed(). */
	enum smtp_verb pending_verb;
	int eom_stage;          /* header..eom stage in progress */
};

/* smtp_session_start - take over an accepted socket on worker w. */
void smtp_session_start(struct worker *w, const struct server_listener *li, int fd,
			const struct sockaddr *sa, socklen_t salen);
/* smtp_session_shutdown - 421 and close (after shutdown_timeout). */
void smtp_session_shutdown(struct smtp_session *s);
/* smtp_session_describe - one line for `show sessions`. */
void smtp_session_describe(const struct smtp_session *s, char *buf, size_t len);
/* smtp_session_ref/unref - keep the session across async work. */
void smtp_session_ref(struct smtp_session *s);
void smtp_session_unref(struct smtp_session *s);

/* smtp_evbuffer_write - evbuffer_write() for a socket bufferevent's output. */
ssize_t smtp_evbuffer_write(struct evbuffer *out, int fd);
/* smtp_out_handover - stop writing replies directly (before STARTTLS). */
void smtp_out_handover(struct smtp_session *s);
/* smtp_flush_arm - run the worker's flush at the end of this round. */
void smtp_flush_arm(void *worker);
/* smtp_flush_setup/cleanup - the worker's reply writer (server.c). */
int smtp_flush_setup(struct worker *w);
void smtp_flush_cleanup(struct worker *w);

const char *smtp_state_name(enum smtp_state st);

#endif
