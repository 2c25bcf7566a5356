/*
 * control.h - the stats socket (DESIGN.md section 7): a UNIX socket served
 * by a thread of its own with its own event base. A client sends one
 * command line; the answer follows and the connection closes.
 *
 *   show info | show stats | show metrics | show sessions | show config
 *   show ratelimit KEY | clear ratelimit KEY | reload | help
 *
 * Callbacks run on the control thread (never on a session loop): they must
 * be thread-safe with respect to the daemon's other threads and may block
 * briefly (only the stats socket waits). An unset callback answers
 * "error: not available". `reload` and `clear ...` are allowed only to
 * peers whose uid (SO_PEERCRED) is 0 or the daemon's own.
 *
 * Public:
 *   control_new(), control_free(), control_set_timeout()
 */
#ifndef RAVELIN_CONTROL_H
#define RAVELIN_CONTROL_H

#include <limits.h>
#include <sys/types.h>
#include <time.h>

struct evbuffer;
struct stats;
struct control;

/* What `show info` prints; control fills defaults, the info callback overrides. */
struct control_info {
	char version[64];	/* default "unknown" */
	time_t started;		/* default: when control_new ran; uptime derives from it */
	char config[PATH_MAX];	/* default "" */
	unsigned workers;	/* default: stats_nworkers() */
	long sessions;		/* default: the connections_active gauge */
};

/*
 * Callbacks. Those returning int return 0 for success or -1 for failure;
 * on failure what they wrote to `out` is the error text, sent as
 * "error: TEXT". reload and ratelimit_clear answer "ok" when they succeed
 * without writing anything.
 */
struct control_ops {
	void (*info)(void *arg, struct control_info *info);
	int (*sessions)(void *arg, struct evbuffer *out);	/* one line per session */
	int (*reload)(void *arg, struct evbuffer *out);	/* error: FILE:LINE: message */
	int (*config)(void *arg, struct evbuffer *out);
	int (*ratelimit_show)(void *arg, const char *key, struct evbuffer *out);
	int (*ratelimit_clear)(void *arg, const char *key, struct evbuffer *out);
};

/* Longest command line accepted, newline included. */
#define CONTROL_LINE_MAX 1024
/* Default time a client has to send its command and read the answer. */
#define CONTROL_TIMEOUT_MS 10000

/*
 * control_new - create the socket at path and start serving it.
 * mode: permission bits, masked with 0660 (0 means 0660); uid/gid: owner
 * to set, (uid_t)-1/(gid_t)-1 to leave as is. A stale socket at path is
 * removed; anything else there (a file, a live socket) is an error.
 * stats may be NULL (show stats/metrics then answer an error). ops may be
 * NULL. On failure: NULL and a message in err.
 */
struct control *control_new(const char *path, mode_t mode, uid_t uid, gid_t gid,
			    struct stats *stats, const struct control_ops *ops, void *arg,
			    char *err, size_t errlen);
/* control_set_timeout - per-client timeout in milliseconds (tests use a short one). */
void control_set_timeout(struct control *c, unsigned ms);
/* control_free - stop the thread, close clients, remove the socket; accepts NULL. */
void control_free(struct control *c);

#endif
