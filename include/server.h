/*
 * server.h - the process: worker threads with their event loops, the
 * listening sockets, the current configuration and its reload, session
 * limits, and orderly shutdown.
 */
#ifndef RAVELIN_SERVER_H
#define RAVELIN_SERVER_H

#include <pthread.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <time.h>

#include "config.h"

struct event_base;
struct event;
struct evconnlistener;
struct checkpool;
struct stats;
struct stats_worker;
struct smtp_session;
struct ratelimit;
struct dns;
struct spf_checker;
struct dkimv_lib;
struct dmarcv_lib;
struct control;

/* One listening socket, fixed at startup (reload cannot rebind). */
struct server_listener {
	struct server *srv;
	int fd;
	unsigned index;                   /* position among `listen` lines */
	struct config_listen conf;        /* text points into the startup config */
};

/* What a backend line's first EHLO offered, kept per worker (no locks) so
 * that later connections send XCLIENT right after the greeting instead of
 * EHLO, XCLIENT, EHLO (backend.c). */
#define SERVER_BE_HINTS 8
struct server_be_hint {
	char text[256];           /* the `backend` line it is about ("" = free) */
	char xclient_attrs[256];  /* the attributes its EHLO listed */
	bool refused;             /* an early XCLIENT failed there: EHLO first */
};

struct worker {
	struct server *srv;
	unsigned id;
	pthread_t thread;
	struct event_base *base;
	struct evconnlistener **lev;
	struct stats_worker *stats;
	pthread_mutex_t lock;             /* guards the session list for readers */
	bool running;                     /* under lock: its loop takes requests */
	struct smtp_session *sessions;    /* doubly linked */
	unsigned nsessions;
	struct event *stop_ev;
	struct event *flush_ev;           /* writes the replies queued this round */
	struct smtp_session *flush_list;  /* sessions with replies to write */
	struct server_be_hint be_hints[SERVER_BE_HINTS];
};

/* Capabilities learned from the backend's last EHLO, shared by workers. */
#define BECAP_PIPELINING  0x01
#define BECAP_8BITMIME    0x02
#define BECAP_SMTPUTF8    0x04
#define BECAP_DSN         0x08
#define BECAP_XCLIENT     0x10
#define BECAP_STARTTLS    0x20
#define BECAP_SIZE        0x40
#define BECAP_KNOWN       0x80000000u

struct server {
	pthread_mutex_t cf_lock;
	struct config *cf;                /* current; sessions hold their own ref */
	char *config_path;
	struct server_listener *listeners;
	unsigned nlisteners;
	struct worker *workers;
	unsigned nworkers;
	unsigned next_worker;
	struct checkpool *pool;
	struct stats *stats;
	struct control *control;
	struct ratelimit *ratelimit;
	struct dns *dns;
	struct spf_checker *spf;
	struct dkimv_lib *dkim;
	struct dmarcv_lib *dmarc;
	time_t started;
	int stopping;                     /* 0, 1 draining, 2 closing: __atomic_* only */
	unsigned sessions;                /* atomic */
	pthread_mutex_t iplock;           /* per-client-address session counts */
	struct server_ipcount **ipcounts;
	size_t ipcount_buckets;
	unsigned becaps;                  /* atomic BECAP_* of the first backend */
	unsigned long session_seq;        /* atomic, for session ids */
};

/* server_config - the current configuration, referenced. */
struct config *server_config(struct server *srv);
/* server_reload - build a new configuration; 0, or -1 with the error text. */
int server_reload(struct server *srv, char *err, size_t errlen);
/* server_build - load the configuration's objects (rules, TLS, users). */
int server_build(struct config *cf, config_error_fn *err, void *arg);
/* server_ip_acquire - count a session from addr; false when over the limit. */
bool server_ip_acquire(struct server *srv, const struct sockaddr *sa, unsigned limit);
void server_ip_release(struct server *srv, const struct sockaddr *sa);
/* server_run - start workers and serve until SIGTERM. */
int server_run(const char *config_path, struct config *cf);

#endif
