/*
 * control.c - the stats socket server.
 *
 * A UNIX stream socket served by one thread with an event base of its
 * own, so a slow or hostile client of the socket never touches a session
 * loop. Each client sends one command line (bounded, with a timeout), gets
 * the answer, and the connection closes. The daemon supplies the
 * answers that need its state through struct control_ops callbacks; the
 * counters come straight from struct stats.
 *
 * The socket is created so that it is never looser than 0660: umask 0177
 * around bind, then chown, then chmod. Only a stale socket (nobody
 * listening) is removed before binding; a live socket or any other file
 * is left alone and reported.
 *
 * The control thread is stopped through a pipe, so this module does not
 * depend on libevent's thread support.
 *
 * Public:
 *   control_new(), control_set_timeout(), control_free()
 */

/* System. */
#include <sys/types.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* Libraries. */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

/* Project. */
#include "control.h"
#include "fmt.h"
#include "log.h"
#include "stats.h"

/* Clients served at once; more are closed at accept (the socket is local and trusted-ish). */
#define CONTROL_CONNS_MAX 64

struct control_conn {
	struct control *c;
	struct bufferevent *bev;
	int answered;		/* answer queued, waiting for it to drain */
	int closing;		/* answer sent and write side shut down */
	int eof;		/* the client has closed its side */
	int privileged;		/* peer uid is 0 or ours */
	long uid;		/* peer uid, -1 when unknown (for the log) */
	TAILQ_ENTRY(control_conn) entry;
};

struct control {
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	dev_t dev;		/* identity of our socket file, so we remove only ours */
	ino_t ino;
	struct event_base *base;
	struct evconnlistener *listener;
	struct event *stopev;
	int stoppipe[2];
	pthread_t thread;
	int running;
	struct stats *stats;
	struct control_ops ops;
	void *arg;
	time_t started;
	unsigned timeout_ms;	/* atomic: set by the owner, read by the thread */
	TAILQ_HEAD(, control_conn) conns;
	unsigned nconns;
};

/* control_err - format an error message for the caller of control_new. */
static void
control_err(char *err, size_t len, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || len == 0)
		return;
	va_start(ap, fmt);
	fmt_vsnprintf(err, len, fmt, ap);
	va_end(ap);
}

/* control_conn_free - close one client. */
static void
control_conn_free(struct control_conn *cc)
{
	TAILQ_REMOVE(&cc->c->conns, cc, entry);
	cc->c->nconns--;
	bufferevent_free(cc->bev);
	free(cc);
}

/* control_error_answer - "error: TEXT" from what a failed callback wrote. */
static void
control_error_answer(struct evbuffer *out, struct evbuffer *text)
{
	size_t len = evbuffer_get_length(text);
	const char *p = (const char *)evbuffer_pullup(text, -1);

	while (len > 0 && (p[len - 1] == '\n' || p[len - 1] == '\r' || p[len - 1] == ' '))
		len--;
	if (len == 0)
		evbuffer_add_printf(out, "error: failed\n");
	else {
		evbuffer_add_printf(out, "error: ");
		evbuffer_add(out, p, len);
		evbuffer_add(out, "\n", 1);
	}
}

/* control_run_cb - answer from a callback's output, or its error. */
static void
control_run_cb(struct evbuffer *out, int rc, struct evbuffer *tmp, int ok_if_empty)
{
	if (rc == -1) {
		control_error_answer(out, tmp);
		return;
	}
	if (evbuffer_get_length(tmp) == 0 && ok_if_empty) {
		evbuffer_add_printf(out, "ok\n");
		return;
	}
	evbuffer_add_buffer(out, tmp);
}

/* control_info - the "key: value" lines of show info. */
static void
control_show_info(struct control *c, struct evbuffer *out)
{
	struct control_info info;
	time_t now = time(NULL);

	memset(&info, 0, sizeof(info));
	fmt_snprintf(info.version, sizeof(info.version), "unknown");
	info.started = c->started;
	info.workers = c->stats ? stats_nworkers(c->stats) : 0;
	info.sessions = c->stats ? (long)stats_value(c->stats, STATS_CONNECTIONS_ACTIVE) : 0;
	if (c->ops.info != NULL)
		c->ops.info(c->arg, &info);
	info.version[sizeof(info.version) - 1] = '\0';
	info.config[sizeof(info.config) - 1] = '\0';
	evbuffer_add_printf(out, "version: %s\nuptime: %lld\nconfig: %s\nworkers: %u\nsessions: %ld\n",
	    info.version, (long long)(now > info.started ? now - info.started : 0), info.config,
	    info.workers, info.sessions);
}

/* control_help - the command list. */
static void
control_help(struct evbuffer *out)
{
	evbuffer_add_printf(out,
	    "show info              version, uptime, config, workers, sessions\n"
	    "show stats             counters as one JSON object\n"
	    "show metrics           counters in Prometheus text format\n"
	    "show sessions          one line per open session\n"
	    "show config            the configuration in force\n"
	    "show ratelimit KEY     the rate-limit state of KEY\n"
	    "clear ratelimit KEY    forget the rate-limit state of KEY\n"
	    "reload                 reload configuration and rules (as SIGHUP)\n"
	    "help                   this list\n");
}

/* control_word - split the next blank-separated word off *p (NUL-terminates it). */
static char *
control_word(char **p)
{
	char *s = *p, *w;

	while (*s == ' ' || *s == '\t')
		s++;
	if (*s == '\0') {
		*p = s;
		return NULL;
	}
	w = s;
	while (*s != '\0' && *s != ' ' && *s != '\t')
		s++;
	if (*s != '\0')
		*s++ = '\0';
	while (*s == ' ' || *s == '\t')
		s++;
	*p = s;
	return w;
}

/* control_ratelimit - show or clear ratelimit KEY. */
static void
control_ratelimit(struct control_conn *cc, int clear, char *key, struct evbuffer *out,
		  struct evbuffer *tmp)
{
	struct control *c = cc->c;
	int (*fn)(void *, const char *, struct evbuffer *) =
	    clear ? c->ops.ratelimit_clear : c->ops.ratelimit_show;

	if (clear && !cc->privileged)
		evbuffer_add_printf(out, "error: permission denied\n");
	else if (*key == '\0')
		evbuffer_add_printf(out, "error: usage: %s ratelimit KEY\n", clear ? "clear" : "show");
	else if (fn == NULL)
		evbuffer_add_printf(out, "error: not available\n");
	else
		control_run_cb(out, fn(c->arg, key, tmp), tmp, clear);
}

/* control_dispatch - run one command line and write its answer. */
static void
control_dispatch(struct control_conn *cc, char *line, struct evbuffer *out)
{
	struct control *c = cc->c;
	struct evbuffer *tmp;
	char *p = line, *verb, *obj;
	size_t len;

	/* control_answer() never passes NULL here; said so for the analysers. */
	if (line == NULL)
		return;
	len = strlen(line);
	while (len > 0 && isspace((unsigned char)line[len - 1]))
		line[--len] = '\0';
	for (p = line; *p; p++)
		if ((unsigned char)*p < 0x20 && *p != '\t') {
			evbuffer_add_printf(out, "error: invalid character in command\n");
			return;
		}
	if ((tmp = evbuffer_new()) == NULL) {
		evbuffer_add_printf(out, "error: out of memory\n");
		return;
	}
	log_debug(NULL, "stats socket: uid %ld: %s", cc->uid, line);
	p = line;
	verb = control_word(&p);
	obj = verb ? control_word(&p) : NULL;
	if (verb == NULL)
		evbuffer_add_printf(out, "error: empty command\n");
	else if (strcasecmp(verb, "help") == 0 && obj == NULL)
		control_help(out);
	else if (strcasecmp(verb, "reload") == 0 && obj == NULL) {
		if (!cc->privileged)
			evbuffer_add_printf(out, "error: permission denied\n");
		else if (c->ops.reload == NULL)
			evbuffer_add_printf(out, "error: not available\n");
		else {
			log_info(NULL, "reload requested on the stats socket by uid %ld", cc->uid);
			control_run_cb(out, c->ops.reload(c->arg, tmp), tmp, 1);
		}
	} else if (strcasecmp(verb, "clear") == 0 && obj != NULL &&
	    strcasecmp(obj, "ratelimit") == 0)
		control_ratelimit(cc, 1, p, out, tmp);
	else if (strcasecmp(verb, "show") != 0 || obj == NULL)
		evbuffer_add_printf(out, "error: unknown command\n");
	else if (strcasecmp(obj, "ratelimit") == 0)
		control_ratelimit(cc, 0, p, out, tmp);
	else if (*p != '\0')
		evbuffer_add_printf(out, "error: unknown command\n");
	else if (strcasecmp(obj, "info") == 0)
		control_show_info(c, out);
	else if (strcasecmp(obj, "stats") == 0 || strcasecmp(obj, "metrics") == 0) {
		if (c->stats == NULL)
			evbuffer_add_printf(out, "error: not available\n");
		else if ((strcasecmp(obj, "stats") == 0 ? stats_json(c->stats, tmp) :
		    stats_prometheus(c->stats, tmp)) == -1)
			evbuffer_add_printf(out, "error: out of memory\n");
		else
			evbuffer_add_buffer(out, tmp);
	} else if (strcasecmp(obj, "sessions") == 0 || strcasecmp(obj, "config") == 0) {
		int (*fn)(void *, struct evbuffer *) =
		    strcasecmp(obj, "sessions") == 0 ? c->ops.sessions : c->ops.config;

		if (fn == NULL)
			evbuffer_add_printf(out, "error: not available\n");
		else
			control_run_cb(out, fn(c->arg, tmp), tmp, 0);
	} else
		evbuffer_add_printf(out, "error: unknown command\n");
	evbuffer_free(tmp);
}

/*
 * control_finish - the answer is out: half-close and wait for the client's
 * EOF (or the timeout). Closing at once would make the kernel reset the
 * connection if the client is still sending, and the answer would be lost.
 */
static void
control_finish(struct control_conn *cc)
{
	if (cc->eof) {
		control_conn_free(cc);
		return;
	}
	if (!cc->closing) {
		shutdown(bufferevent_getfd(cc->bev), SHUT_WR);
		cc->closing = 1;
	}
}

/* control_answer - answer line (or refuse it with error); may free cc. */
static void
control_answer(struct control_conn *cc, char *line, const char *error)
{
	struct evbuffer *out = bufferevent_get_output(cc->bev);

	cc->answered = 1;
	if (error != NULL)
		evbuffer_add_printf(out, "error: %s\n", error);
	else
		control_dispatch(cc, line, out);
	/* An empty answer (no sessions) is out at once: writecb never fires. */
	if (evbuffer_get_length(out) == 0)
		control_finish(cc);
}

/* control_readcb - wait for one complete command line; discard anything after it. */
static void
control_readcb(struct bufferevent *bev, void *arg)
{
	struct control_conn *cc = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t len;
	char *line;

	if (cc->answered) {
		evbuffer_drain(in, evbuffer_get_length(in));
		return;
	}
	if ((line = evbuffer_readln(in, &len, EVBUFFER_EOL_CRLF)) == NULL) {
		if (evbuffer_get_length(in) >= CONTROL_LINE_MAX)
			control_answer(cc, NULL, "line too long");
		return;
	}
	if (len >= CONTROL_LINE_MAX)
		control_answer(cc, NULL, "line too long");
	else if (memchr(line, '\0', len) != NULL)
		control_answer(cc, NULL, "invalid character in command");
	else
		control_answer(cc, line, NULL);
	free(line);
}

/* control_writecb - the answer is out. */
static void
control_writecb(struct bufferevent *bev, void *arg)
{
	struct control_conn *cc = arg;

	if (cc->answered && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		control_finish(cc);
}

/* control_eventcb - EOF before a newline ends the command; errors and timeouts close. */
static void
control_eventcb(struct bufferevent *bev, short what, void *arg)
{
	struct control_conn *cc = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t len = evbuffer_get_length(in);
	char *line;

	if (!(what & BEV_EVENT_EOF) || (what & BEV_EVENT_ERROR)) {
		control_conn_free(cc);
		return;
	}
	cc->eof = 1;
	if (cc->answered) {
		/* Still writing: writecb finishes; already finished: done. */
		if (cc->closing)
			control_conn_free(cc);
		return;
	}
	if (len == 0 || (line = malloc(len + 1)) == NULL) {
		control_conn_free(cc);
		return;
	}
	/* `printf 'show stats' | socat` sends no newline; the half-close ends the line. */
	evbuffer_remove(in, line, len);
	line[len] = '\0';
	control_answer(cc, line, memchr(line, '\0', len) ? "invalid character in command" : NULL);
	free(line);
}

/* control_acceptcb - one new client: note whether it may change state. */
static void
control_acceptcb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
		 void *arg)
{
	struct control *c = arg;
	struct control_conn *cc;
	struct ucred cred;
	socklen_t credlen = sizeof(cred);
	struct timeval tv;
	unsigned ms;

	if (c->nconns >= CONTROL_CONNS_MAX || (cc = calloc(1, sizeof(*cc))) == NULL) {
		close(fd);
		return;
	}
	cc->uid = -1;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &credlen) == 0 &&
	    credlen == sizeof(cred)) {
		cc->privileged = cred.uid == 0 || cred.uid == geteuid();
		cc->uid = (long)cred.uid;
	}
	if ((cc->bev = bufferevent_socket_new(c->base, fd, BEV_OPT_CLOSE_ON_FREE)) == NULL) {
		close(fd);
		free(cc);
		return;
	}
	cc->c = c;
	TAILQ_INSERT_TAIL(&c->conns, cc, entry);
	c->nconns++;
	ms = __atomic_load_n(&c->timeout_ms, __ATOMIC_RELAXED);
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	bufferevent_set_timeouts(cc->bev, &tv, &tv);
	bufferevent_setwatermark(cc->bev, EV_READ, 0, CONTROL_LINE_MAX + 1);
	bufferevent_setcb(cc->bev, control_readcb, control_writecb, control_eventcb, cc);
	bufferevent_enable(cc->bev, EV_READ | EV_WRITE);
}

/* control_stopcb - control_free asked the thread to end. */
static void
control_stopcb(evutil_socket_t fd, short what, void *arg)
{
	struct control *c = arg;

	event_base_loopbreak(c->base);
}

/* control_thread - the control thread's loop. */
static void *
control_thread(void *arg)
{
	struct control *c = arg;

	event_base_dispatch(c->base);
	return NULL;
}

/* control_clear_path - remove a stale socket at path; refuse anything else. */
static int
control_clear_path(const char *path, char *err, size_t errlen)
{
	struct sockaddr_un sun;
	struct stat sb;
	int fd, rc;

	if (lstat(path, &sb) == -1) {
		if (errno == ENOENT)
			return 0;
		control_err(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (!S_ISSOCK(sb.st_mode)) {
		control_err(err, errlen, "%s: exists and is not a socket", path);
		return -1;
	}
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) == -1) {
		control_err(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, path, strlen(path));
	rc = connect(fd, (struct sockaddr *)&sun, sizeof(sun));
	if (rc == 0 || errno == EAGAIN || errno == EINPROGRESS) {
		close(fd);
		control_err(err, errlen, "%s: in use by a running process", path);
		return -1;
	}
	close(fd);
	if (errno != ECONNREFUSED && errno != ENOENT) {
		control_err(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (unlink(path) == -1 && errno != ENOENT) {
		control_err(err, errlen, "unlink %s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

/* control_listen - create, bind and protect the socket; the fd or -1. */
static int
control_listen(struct control *c, mode_t mode, uid_t uid, gid_t gid, char *err, size_t errlen)
{
	struct sockaddr_un sun;
	struct stat sb;
	mode_t old;
	int fd, rc;

	if (control_clear_path(c->path, err, errlen) == -1)
		return -1;
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) == -1) {
		control_err(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, c->path, strlen(c->path));
	/* Born 0600: never looser than the final mode, even for an instant. */
	old = umask(0177);
	rc = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
	umask(old);
	if (rc == -1) {
		control_err(err, errlen, "bind %s: %s", c->path, strerror(errno));
		close(fd);
		return -1;
	}
	if ((uid != (uid_t)-1 || gid != (gid_t)-1) && lchown(c->path, uid, gid) == -1) {
		control_err(err, errlen, "chown %s: %s", c->path, strerror(errno));
		goto fail;
	}
	if (chmod(c->path, mode) == -1 || lstat(c->path, &sb) == -1) {
		control_err(err, errlen, "chmod %s: %s", c->path, strerror(errno));
		goto fail;
	}
	c->dev = sb.st_dev;
	c->ino = sb.st_ino;
	if (listen(fd, 128) == -1) {
		control_err(err, errlen, "listen %s: %s", c->path, strerror(errno));
		goto fail;
	}
	return fd;
fail:
	unlink(c->path);
	close(fd);
	return -1;
}

/* control_new - create the socket and start the control thread. */
struct control *
control_new(const char *path, mode_t mode, uid_t uid, gid_t gid, struct stats *stats,
	    const struct control_ops *ops, void *arg, char *err, size_t errlen)
{
	struct control *c;
	sigset_t all, old;
	int fd;

	if (path == NULL || *path == '\0' || strlen(path) >= sizeof(c->path)) {
		control_err(err, errlen, "stats socket path empty or too long");
		return NULL;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		control_err(err, errlen, "out of memory");
		return NULL;
	}
	c->stoppipe[0] = c->stoppipe[1] = -1;
	TAILQ_INIT(&c->conns);
	memcpy(c->path, path, strlen(path) + 1);
	c->stats = stats;
	if (ops != NULL)
		c->ops = *ops;
	c->arg = arg;
	c->started = time(NULL);
	c->timeout_ms = CONTROL_TIMEOUT_MS;
	mode = mode == 0 ? 0660 : (mode & 0660);

	if ((fd = control_listen(c, mode, uid, gid, err, errlen)) == -1) {
		free(c);
		return NULL;
	}
	if (pipe2(c->stoppipe, O_CLOEXEC | O_NONBLOCK) == -1 ||
	    (c->base = event_base_new()) == NULL ||
	    (c->stopev = event_new(c->base, c->stoppipe[0], EV_READ | EV_PERSIST, control_stopcb,
	    c)) == NULL || event_add(c->stopev, NULL) == -1 ||
	    (c->listener = evconnlistener_new(c->base, control_acceptcb, c,
	    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd)) == NULL) {
		control_err(err, errlen, "stats socket: cannot set up event loop");
		if (c->listener == NULL)
			close(fd);
		control_free(c);
		return NULL;
	}
	/* Signals belong to the main thread: the control thread starts with all blocked. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	if (pthread_create(&c->thread, NULL, control_thread, c) != 0) {
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		control_err(err, errlen, "stats socket: cannot start thread");
		control_free(c);
		return NULL;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	c->running = 1;
	return c;
}

/* control_set_timeout - per-client timeout for clients accepted from now on. */
void
control_set_timeout(struct control *c, unsigned ms)
{
	__atomic_store_n(&c->timeout_ms, ms ? ms : CONTROL_TIMEOUT_MS, __ATOMIC_RELAXED);
}

/* control_free - stop serving and remove the socket (only if it is still ours). */
void
control_free(struct control *c)
{
	struct control_conn *cc, *next;
	struct stat sb;

	if (c == NULL)
		return;
	if (c->running) {
		while (write(c->stoppipe[1], "x", 1) == -1 && errno == EINTR)
			;
		pthread_join(c->thread, NULL);
	}
	/* Next saved before each free (clang's analyser cannot follow TAILQ_REMOVE). */
	for (cc = TAILQ_FIRST(&c->conns); cc != NULL; cc = next) {
		next = TAILQ_NEXT(cc, entry);
		control_conn_free(cc);
	}
	if (c->listener != NULL)
		evconnlistener_free(c->listener);
	if (c->stopev != NULL)
		event_free(c->stopev);
	if (c->base != NULL)
		event_base_free(c->base);
	if (c->stoppipe[0] != -1)
		close(c->stoppipe[0]);
	if (c->stoppipe[1] != -1)
		close(c->stoppipe[1]);
	if (c->ino != 0 && lstat(c->path, &sb) == 0 && sb.st_dev == c->dev && sb.st_ino == c->ino)
		unlink(c->path);
	free(c);
}
