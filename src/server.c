/*
 * server.c - the process: listening sockets, worker threads, the current
 * configuration and its reload, per-address session counts, signals and
 * orderly shutdown.
 *
 * Every worker thread runs its own libevent loop and accepts on every
 * listening socket (they share the file descriptors; the kernel hands each
 * connection to one of them). The main thread owns the signals. A reload
 * builds a complete new configuration (rules, TLS, users) and swaps it in;
 * sessions keep the one they started with. SIGTERM stops accepting, lets
 * open transactions finish up to shutdown_timeout, then answers 421.
 *
 * Public:
 *   server_run(), server_config(), server_reload(), server_build(),
 *   server_ip_acquire(), server_ip_release()
 */

/* System. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Library. */
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/thread.h>

/* Project. */
#include "auth.h"
#include "checkpool.h"
#include "config.h"
#include "control.h"
#include "fmt.h"
#include "lists.h"
#include "log.h"
#include "policy_runtime.h"
#include "rules.h"
#include "server.h"
#include "smtp_session.h"
#include "stats.h"
#include "tls.h"
#include "version.h"

struct server_ipcount {
	struct server_ipcount *next;
	struct sockaddr_storage addr;
	unsigned count;
};

/* ---- configuration objects ---- */

/* release - free what server_build made (config->release). */
static void
release(struct config *cf)
{
	rules_free(cf->rules);
	tls_server_unref(cf->tls);
	tls_client_unref(cf->backend_tls);
	auth_users_free(cf->auth_users);
	auth_senders_free(cf->senders);
}

/* expand_rules - glob every `rules` pattern, sorted within each. */
static int
expand_rules(struct config *cf, config_error_fn *err, void *arg)
{
	int bad = 0;

	for (size_t i = 0; i < cf->nrule_globs; i++) {
		glob_t g;
		int r = glob(cf->rule_globs[i], GLOB_ERR, NULL, &g);
		if (r == GLOB_NOMATCH) {
			char msg[600];
			/* A pattern with no file is fine for a directory glob, an
			 * error for a plain name (a typo would silently drop rules). */
			if (!strpbrk(cf->rule_globs[i], "*?[")) {
				fmt_snprintf(msg, sizeof(msg), "%s: rules file not found", cf->rule_globs[i]);
				err(arg, msg);
				bad = 1;
			}
			continue;
		}
		if (r != 0) {
			char msg[600];
			fmt_snprintf(msg, sizeof(msg), "%s: cannot read rules: %s", cf->rule_globs[i], strerror(errno));
			err(arg, msg);
			bad = 1;
			continue;
		}
		for (size_t k = 0; k < g.gl_pathc; k++) {
			char **nf = realloc(cf->rule_files, (cf->nrule_files + 1) * sizeof(*nf));
			if (!nf)
				break;
			cf->rule_files = nf;
			cf->rule_files[cf->nrule_files++] = strdup(g.gl_pathv[k]);
		}
		globfree(&g);
	}
	return bad ? -1 : 0;
}

/* server_build - load the configuration's objects (rules, TLS, users). */
int
server_build(struct config *cf, config_error_fn *err, void *arg)
{
	char e[512], msg[1024];
	int bad = 0;

	cf->release = release;
	if (expand_rules(cf, err, arg) < 0)
		bad = 1;
	struct rules_env env = { cf->mynetworks, cf->local_domains };
	if (cf->nrule_files) {
		cf->rules = rules_load((const char *const *)cf->rule_files, cf->nrule_files, &env, err, arg);
		if (!cf->rules)
			bad = 1;
	}
	if (cf->tls_certificate && cf->tls_key) {
		cf->tls = tls_server_new(cf->tls_certificate, cf->tls_key, cf->tls_min_protocol,
					 cf->tls_ciphers, cf->tls_ciphersuites, e, sizeof(e));
		if (!cf->tls) {
			fmt_snprintf(msg, sizeof(msg), "%s: %s", cf->path, e);
			err(arg, msg);
			bad = 1;
		}
	}
	for (size_t i = 0; i < cf->nbackends; i++)
		if (cf->backends[i].flags & BACKEND_STARTTLS) {
			bool verify = cf->backends[i].flags & BACKEND_TLS_VERIFY;
			cf->backend_tls = tls_client_new(verify ? (cf->tls_backend_ca ? cf->tls_backend_ca : "system") : NULL,
							 cf->tls_backend_name, NULL, NULL, NULL, e, sizeof(e));
			if (!cf->backend_tls) {
				fmt_snprintf(msg, sizeof(msg), "%s: backend TLS: %s", cf->path, e);
				err(arg, msg);
				bad = 1;
			}
			break;
		}
	if (cf->auth_users_path) {
		cf->auth_users = auth_users_load(cf->auth_users_path, e, sizeof(e));
		if (!cf->auth_users) {
			err(arg, e);
			bad = 1;
		}
	}
	if (cf->sender_logins_path) {
		cf->senders = auth_senders_load(cf->sender_logins_path, e, sizeof(e));
		if (!cf->senders) {
			err(arg, e);
			bad = 1;
		}
	}
	return bad ? -1 : 0;
}

/* server_config - the current configuration, referenced. */
struct config *
server_config(struct server *srv)
{
	pthread_mutex_lock(&srv->cf_lock);
	struct config *cf = config_ref(srv->cf);
	pthread_mutex_unlock(&srv->cf_lock);
	return cf;
}

/* collect - gather errors into one buffer (reload answers with them). */
struct errbuf {
	char *buf;
	size_t len, used;
};

static void
collect(void *arg, const char *msg)
{
	struct errbuf *eb = arg;
	log_warnx(NULL, "%s", msg);
	if (eb->used < eb->len) {
		int n = fmt_snprintf(eb->buf + eb->used, eb->len - eb->used, "%s%s", eb->used ? "; " : "", msg);
		if (n > 0)
			eb->used += (size_t)n;
	}
}

/*
 * SIGHUP (main thread) and `reload` (control thread) may arrive together;
 * one reload at a time keeps policy_runtime_reload single-threaded.
 */
static pthread_mutex_t reload_lock = PTHREAD_MUTEX_INITIALIZER;

/* server_reload - build a new configuration; on any error keep the old. */
int
server_reload(struct server *srv, char *err, size_t errlen)
{
	struct errbuf eb = { err, errlen, 0 };
	struct stats_worker *sw = srv->workers[0].stats;
	int rc = -1;

	err[0] = '\0';
	pthread_mutex_lock(&reload_lock);
	struct config *cf = config_load(srv->config_path, collect, &eb);
	if (cf && server_build(cf, collect, &eb) < 0)
		cf = config_unref(cf);
	if (!cf) {
		log_warnx(NULL, "reload failed; the running configuration stays in force");
		stats_inc(sw, STATS_CONFIG_RELOAD_FAILURES_TOTAL);
		goto done;
	}
	if (policy_runtime_reload(srv, cf, err, errlen) < 0) {
		log_warnx(NULL, "reload failed: %s; the running configuration stays in force", err);
		config_unref(cf);
		stats_inc(sw, STATS_CONFIG_RELOAD_FAILURES_TOTAL);
		goto done;
	}
	if (cf->nlistens != srv->cf->nlistens)
		log_warnx(NULL, "reload: listen lines changed; they take effect at the next restart");
	pthread_mutex_lock(&srv->cf_lock);
	struct config *old = srv->cf;
	srv->cf = cf;
	pthread_mutex_unlock(&srv->cf_lock);
	log_set_verbose(cf->log_verbose);
	config_unref(old);
	stats_inc(sw, STATS_CONFIG_RELOADS_TOTAL);
	log_info(NULL, "reloaded %s (%zu rule files)", cf->path, cf->nrule_files);
	rc = 0;
done:
	pthread_mutex_unlock(&reload_lock);
	return rc;
}

/* ---- per-address session counts ---- */

/* ip_hash - bucket of an address. */
static size_t
ip_hash(const struct sockaddr *sa, size_t n)
{
	const unsigned char *p;
	size_t len, h = 2166136261u;
	if (sa->sa_family == AF_INET) {
		p = (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr;
		len = 4;
	} else {
		p = (const unsigned char *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
		len = 16;
	}
	for (size_t i = 0; i < len; i++)
		h = (h ^ p[i]) * 16777619u;
	return h % n;
}

/* same_ip - compare addresses, ports ignored. */
static bool
same_ip(const struct sockaddr *a, const struct sockaddr *b)
{
	if (a->sa_family != b->sa_family)
		return false;
	if (a->sa_family == AF_INET)
		return memcmp(&((const struct sockaddr_in *)a)->sin_addr,
			      &((const struct sockaddr_in *)b)->sin_addr, 4) == 0;
	return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
		      &((const struct sockaddr_in6 *)b)->sin6_addr, 16) == 0;
}

/* server_ip_acquire - count a session from addr; false when over limit. */
bool
server_ip_acquire(struct server *srv, const struct sockaddr *sa, unsigned limit)
{
	bool ok = true;

	if (sa->sa_family != AF_INET && sa->sa_family != AF_INET6)
		return true;
	size_t b = ip_hash(sa, srv->ipcount_buckets);
	pthread_mutex_lock(&srv->iplock);
	struct server_ipcount *c;
	for (c = srv->ipcounts[b]; c; c = c->next)
		if (same_ip((struct sockaddr *)&c->addr, sa))
			break;
	if (!c && (c = calloc(1, sizeof(*c)))) {
		memcpy(&c->addr, sa, sa->sa_family == AF_INET ? sizeof(struct sockaddr_in) :
							   sizeof(struct sockaddr_in6));
		c->next = srv->ipcounts[b];
		srv->ipcounts[b] = c;
	}
	if (c) {
		if (limit && c->count >= limit)
			ok = false;
		else
			c->count++;
	}
	pthread_mutex_unlock(&srv->iplock);
	return ok;
}

/* server_ip_release - one session from addr ended. */
void
server_ip_release(struct server *srv, const struct sockaddr *sa)
{
	if (sa->sa_family != AF_INET && sa->sa_family != AF_INET6)
		return;
	size_t b = ip_hash(sa, srv->ipcount_buckets);
	pthread_mutex_lock(&srv->iplock);
	for (struct server_ipcount **pp = &srv->ipcounts[b]; *pp; pp = &(*pp)->next) {
		struct server_ipcount *c = *pp;
		if (!same_ip((struct sockaddr *)&c->addr, sa))
			continue;
		if (--c->count == 0) {
			*pp = c->next;
			free(c);
		}
		break;
	}
	pthread_mutex_unlock(&srv->iplock);
}

/* ---- listening and workers ---- */

/* open_listener - bind one `listen` line. */
static int
open_listener(const struct config_listen *l)
{
	int one = 1;
	int fd = socket(l->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (l->addr.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)&l->addr, l->addrlen) < 0 || listen(fd, 1024) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

/* accept_cb - a new connection on one of the worker's listeners. */
static void
accept_cb(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa, int salen,
	  void *arg)
{
	struct server_listener *li = arg;
	struct event_base *base = evconnlistener_get_base(lev);
	struct server *srv = li->srv;

	/* Find our worker through the base (one listener object per worker). */
	for (unsigned i = 0; i < srv->nworkers; i++)
		if (srv->workers[i].base == base) {
			smtp_session_start(&srv->workers[i], li, fd, sa, (socklen_t)salen);
			return;
		}
	close(fd);
}

/* accept_error_cb - EMFILE and friends: pause instead of spinning. */
static void
accept_error_cb(struct evconnlistener *lev, void *arg)
{
	int e = EVUTIL_SOCKET_ERROR();
	log_warnx(NULL, "accept: %s", evutil_socket_error_to_string(e));
}

/* worker_main - one event loop thread. */
static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	sigset_t all;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	/* stderr lines leave once a round, with the replies (flush_cb). */
	log_batch_begin(smtp_flush_arm, w);
	event_base_loop(w->base, EVLOOP_NO_EXIT_ON_EMPTY);
	/* A request posted just before worker_exit() still gets its answer
	 * (and its memory back): one more pass over what is due. */
	event_base_loop(w->base, EVLOOP_NONBLOCK);
	log_flush();
	return NULL;
}

/* Workers that have let go of the listening sockets (SIGTERM). */
static unsigned stopped_accepting;

/*
 * worker_stop_accepting - runs on the worker: drop its listeners. The last
 * worker to do so closes the shared sockets, so that new connections are
 * refused by the kernel (and those waiting in the backlog reset) instead
 * of hanging unanswered until the process exits. Closing earlier would
 * leave a descriptor registered in another worker's epoll set.
 */
static void
worker_stop_accepting(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	struct server *srv = w->srv;

	for (unsigned i = 0; i < srv->nlisteners; i++)
		if (w->lev[i]) {
			evconnlistener_free(w->lev[i]);
			w->lev[i] = NULL;
		}
	if (__atomic_add_fetch(&stopped_accepting, 1, __ATOMIC_ACQ_REL) < srv->nworkers)
		return;
	for (unsigned i = 0; i < srv->nlisteners; i++)
		if (srv->listeners[i].fd >= 0) {
			close(srv->listeners[i].fd);
			srv->listeners[i].fd = -1;
		}
	log_info(NULL, "listening sockets closed");
}

/* worker_sweep - runs on the worker: 421 to idle sessions, or to all. */
static void
worker_sweep(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;
	bool all = __atomic_load_n(&w->srv->stopping, __ATOMIC_ACQUIRE) > 1;

	for (struct smtp_session *s = w->sessions, *next; s; s = next) {
		next = s->next;
		if (all || (!s->txn && !s->busy && s->state == SS_CMD))
			smtp_session_shutdown(s);
	}
}

/* worker_exit - runs on the worker: leave the loop. */
static void
worker_exit(evutil_socket_t fd, short what, void *arg)
{
	struct worker *w = arg;

	/* From now on `show sessions` does not post here (see below). */
	pthread_mutex_lock(&w->lock);
	w->running = false;
	pthread_mutex_unlock(&w->lock);
	event_base_loopexit(w->base, NULL);
}

/* ---- main thread ---- */

struct mainloop {
	struct server *srv;
	struct event_base *base;
	struct event *sigterm, *sigint, *sighup, *tick;
	double deadline;	/* monotonic seconds */
};

/* mono_now - monotonic seconds; shutdown_timeout is not rounded to a second. */
static double
mono_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* on_sighup - reload. */
static void
on_sighup(evutil_socket_t sig, short what, void *arg)
{
	struct mainloop *m = arg;
	char err[2048];
	server_reload(m->srv, err, sizeof(err));
}

/* post - run fn on every worker's loop. */
static void
post(struct server *srv, void (*fn)(evutil_socket_t, short, void *))
{
	static const struct timeval now = { 0, 0 };
	for (unsigned i = 0; i < srv->nworkers; i++)
		event_base_once(srv->workers[i].base, -1, EV_TIMEOUT, fn, &srv->workers[i], &now);
}

/* on_tick - during shutdown: sweep sessions until none is left. */
static void
on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct mainloop *m = arg;
	struct server *srv = m->srv;
	unsigned n = __atomic_load_n(&srv->sessions, __ATOMIC_RELAXED);

	if (n == 0) {
		event_base_loopexit(m->base, NULL);
		return;
	}
	int stopping = __atomic_load_n(&srv->stopping, __ATOMIC_ACQUIRE);
	if (mono_now() >= m->deadline && stopping == 1) {
		log_info(NULL, "shutdown_timeout reached: closing %u sessions", n);
		__atomic_store_n(&srv->stopping, 2, __ATOMIC_RELEASE);
		m->deadline = mono_now() + 5;
	} else if (stopping == 2 && mono_now() >= m->deadline) {
		log_warnx(NULL, "%u sessions did not close; exiting", n);
		event_base_loopexit(m->base, NULL);
		return;
	}
	post(srv, worker_sweep);
	struct timeval tv = { 0, 100000 };
	evtimer_add(m->tick, &tv);
}

/* on_sigterm - stop accepting; drain. */
static void
on_sigterm(evutil_socket_t sig, short what, void *arg)
{
	struct mainloop *m = arg;
	struct server *srv = m->srv;

	if (__atomic_load_n(&srv->stopping, __ATOMIC_ACQUIRE))
		return;
	log_info(NULL, "stopping: no new connections; %u sessions open",
		 __atomic_load_n(&srv->sessions, __ATOMIC_RELAXED));
	__atomic_store_n(&srv->stopping, 1, __ATOMIC_RELEASE);
	struct config *cf = server_config(srv);
	m->deadline = mono_now() + cf->shutdown_timeout;
	config_unref(cf);
	post(srv, worker_stop_accepting);
	on_tick(-1, 0, m);
}

/* drop_privileges - setgid, setgroups, setuid to `user`. */
static int
drop_privileges(const struct config *cf)
{
	if (cf->chroot && chroot(cf->chroot) < 0) {
		log_warnx(NULL, "chroot %s: %s", cf->chroot, strerror(errno));
		return -1;
	}
	if (cf->chroot && chdir("/") < 0)
		return -1;
	if (!cf->user) {
		if (geteuid() == 0)
			log_warnx(NULL, "running as root: set `user` to drop privileges");
		return 0;
	}
	struct passwd *pw = getpwnam(cf->user);
	if (!pw) {
		log_warnx(NULL, "user %s: no such user", cf->user);
		return -1;
	}
	/* Started as that user already (a test, a systemd User=): nothing to drop. */
	if (geteuid() != 0 && geteuid() == pw->pw_uid && getuid() == pw->pw_uid)
		return 0;
	if (setgroups(1, &pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0) {
		log_warnx(NULL, "cannot become %s: %s", cf->user, strerror(errno));
		return -1;
	}
	if (setuid(0) == 0) {
		log_warnx(NULL, "could regain root after dropping privileges");
		return -1;
	}
	log_info(NULL, "running as %s (uid %d)", cf->user, (int)pw->pw_uid);
	return 0;
}

/* ctl_info - `show info`. */
static void
ctl_info(void *arg, struct control_info *info)
{
	struct server *srv = arg;
	fmt_snprintf(info->version, sizeof(info->version), "%s", RAVELIN_VERSION);
	info->started = srv->started;
	fmt_snprintf(info->config, sizeof(info->config), "%s", srv->config_path);
	info->workers = srv->nworkers;
	info->sessions = (long)__atomic_load_n(&srv->sessions, __ATOMIC_RELAXED);
}

static int server_describe_sessions(struct server *srv, struct evbuffer *out);

/* ctl_sessions - `show sessions`: each worker describes its own sessions. */
static int
ctl_sessions(void *arg, struct evbuffer *out)
{
	return server_describe_sessions(arg, out);
}

/* ctl_reload - `reload`. */
static int
ctl_reload(void *arg, struct evbuffer *out)
{
	char err[2048];
	if (server_reload(arg, err, sizeof(err)) < 0) {
		evbuffer_add_printf(out, "%s", err[0] ? err : "reload failed");
		return -1;
	}
	return 0;
}

/* ctl_config - `show config`: the effective settings. */
static int
ctl_config(void *arg, struct evbuffer *out)
{
	struct server *srv = arg;
	struct config *cf = server_config(srv);

	evbuffer_add_printf(out, "config %s\nhostname %s\nworkers %u\n", cf->path, cf->hostname,
			    srv->nworkers);
	for (size_t i = 0; i < cf->nlistens; i++)
		evbuffer_add_printf(out, "listen %s %s flags=0x%x\n", cf->listens[i].text,
				    config_profile_name(cf->listens[i].profile), cf->listens[i].flags);
	for (size_t i = 0; i < cf->nbackends; i++)
		evbuffer_add_printf(out, "backend %s %s\n", cf->backends[i].text,
				    cf->backends[i].mode == BACKEND_XCLIENT ? "xclient" :
				    cf->backends[i].mode == BACKEND_PROXY ? "proxy" : "none");
	evbuffer_add_printf(out, "local_domains %zu entries\nmynetworks %zu entries\n",
			    lists_strset_count(cf->local_domains), lists_netset_count(cf->mynetworks));
	evbuffer_add_printf(out, "rules %zu files, %zu rules\n", cf->nrule_files,
			    cf->rules ? rules_count(cf->rules) : 0);
	evbuffer_add_printf(out, "max_message_size %zu\nmax_recipients %u\nclient_timeout %us\n"
			    "data_timeout %us\nbackend_timeout %us\n", cf->max_message_size,
			    cf->max_recipients, cf->client_timeout, cf->data_timeout, cf->backend_timeout);
	config_unref(cf);
	return 0;
}

/* server_run - start workers and serve until SIGTERM. */
int
server_run(const char *config_path, struct config *cf)
{
	struct server *srv = calloc(1, sizeof(*srv));
	struct mainloop m;
	char err[512];
	int rc = 1;

	if (!srv)
		return 1;
	evthread_use_pthreads();
	signal(SIGPIPE, SIG_IGN);
	/*
	 * Until the main loop handles them, SIGHUP/SIGTERM/SIGINT stay pending
	 * instead of killing a daemon that is still starting (a SIGHUP from a
	 * too-early logrotate, say). Threads started meanwhile inherit the
	 * mask, so the main thread is the one that receives them.
	 */
	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGHUP);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	pthread_mutex_init(&srv->cf_lock, NULL);
	pthread_mutex_init(&srv->iplock, NULL);
	srv->cf = cf;
	srv->config_path = strdup(config_path);
	srv->started = time(NULL);
	srv->ipcount_buckets = 4096;
	srv->ipcounts = calloc(srv->ipcount_buckets, sizeof(*srv->ipcounts));
	srv->stats = stats_new();

	/* Bind everything while we may still be root. */
	srv->nlisteners = (unsigned)cf->nlistens;
	srv->listeners = calloc(cf->nlistens ? cf->nlistens : 1, sizeof(*srv->listeners));
	for (size_t i = 0; i < cf->nlistens; i++) {
		struct server_listener *li = &srv->listeners[i];
		li->srv = srv;
		li->index = (unsigned)i;
		li->conf = cf->listens[i];
		li->conf.text = strdup(cf->listens[i].text);
		if ((li->fd = open_listener(&cf->listens[i])) < 0) {
			log_warnx(NULL, "listen %s: %s", cf->listens[i].text, strerror(errno));
			return 1;
		}
		log_info(NULL, "listening on %s (%s)", li->conf.text, config_profile_name(li->conf.profile));
	}
	/*
	 * The workers exist (loops not yet running) before the stats socket
	 * opens: its callbacks walk them, and `reload` counts on them.
	 */
	srv->nworkers = cf->workers;
	srv->workers = calloc(srv->nworkers, sizeof(*srv->workers));
	for (unsigned i = 0; i < srv->nworkers; i++) {
		struct worker *w = &srv->workers[i];
		w->srv = srv;
		w->id = i;
		pthread_mutex_init(&w->lock, NULL);
		w->base = event_base_new();
		if (!w->base || smtp_flush_setup(w) < 0)
			fatalx("cannot set up the event loop of worker %u", i);
		w->stats = stats_worker_new(srv->stats);
		w->lev = calloc(srv->nlisteners ? srv->nlisteners : 1, sizeof(*w->lev));
		for (unsigned k = 0; k < srv->nlisteners; k++) {
			w->lev[k] = evconnlistener_new(w->base, accept_cb, &srv->listeners[k],
						       LEV_OPT_CLOSE_ON_EXEC, 0, srv->listeners[k].fd);
			if (w->lev[k])
				evconnlistener_set_error_cb(w->lev[k], accept_error_cb);
		}
	}
	/*
	 * A `reload` on the stats socket waits until startup is over: it would
	 * free the startup configuration (cf) while we still read it.
	 */
	pthread_mutex_lock(&reload_lock);
	if (cf->stats_socket) {
		static const struct control_ops ops = {
			.info = ctl_info, .sessions = ctl_sessions, .reload = ctl_reload,
			.config = ctl_config, .ratelimit_show = policy_runtime_rl_show,
			.ratelimit_clear = policy_runtime_rl_clear,
		};
		/* Group of `user`, so that its group may read the counters. */
		struct passwd *pw = cf->user ? getpwnam(cf->user) : NULL;
		srv->control = control_new(cf->stats_socket, 0660, (uid_t)-1,
					   pw ? pw->pw_gid : (gid_t)-1, srv->stats, &ops, srv, err,
					   sizeof(err));
		if (!srv->control) {
			log_warnx(NULL, "stats_socket %s: %s", cf->stats_socket, err);
			return 1;
		}
	}
	if (drop_privileges(cf) < 0)
		return 1;
	if (!(srv->pool = checkpool_new(cf->check_threads))) {
		log_warnx(NULL, "cannot start the check threads");
		return 1;
	}
	if (policy_runtime_start(srv, err, sizeof(err)) < 0) {
		log_warnx(NULL, "%s", err);
		return 1;
	}
	policy_runtime_probe_backend(srv);

	for (unsigned i = 0; i < srv->nworkers; i++) {
		srv->workers[i].running = true;
		pthread_create(&srv->workers[i].thread, NULL, worker_main, &srv->workers[i]);
	}
	log_info(NULL, "ravelin %s started: %u workers, %zu backends, config %s", RAVELIN_VERSION,
		 srv->nworkers, cf->nbackends, config_path);
	pthread_mutex_unlock(&reload_lock);
	cf = NULL;	/* from here on srv->cf, which a reload replaces */

	memset(&m, 0, sizeof(m));
	m.srv = srv;
	m.base = event_base_new();
	m.sigterm = evsignal_new(m.base, SIGTERM, on_sigterm, &m);
	m.sigint = evsignal_new(m.base, SIGINT, on_sigterm, &m);
	m.sighup = evsignal_new(m.base, SIGHUP, on_sighup, &m);
	m.tick = evtimer_new(m.base, on_tick, &m);
	event_add(m.sigterm, NULL);
	event_add(m.sigint, NULL);
	event_add(m.sighup, NULL);
	pthread_sigmask(SIG_UNBLOCK, &sigs, NULL);
	event_base_dispatch(m.base);

	/*
	 * A session that went away during a check is freed by the check's
	 * result, which the pool posts to the session's loop: with every
	 * session gone, let the pool finish while the loops still run. After
	 * a forced exit (sessions left) live sessions may still submit, so
	 * the loops stop first and whatever is in flight is abandoned.
	 */
	bool drained = __atomic_load_n(&srv->sessions, __ATOMIC_RELAXED) == 0;
	if (drained) {
		checkpool_free(srv->pool);
		srv->pool = NULL;
	}
	post(srv, worker_exit);
	for (unsigned i = 0; i < srv->nworkers; i++)
		pthread_join(srv->workers[i].thread, NULL);
	control_free(srv->control);
	checkpool_free(srv->pool);
	policy_runtime_stop(srv);
	for (unsigned i = 0; i < srv->nworkers; i++) {
		struct worker *w = &srv->workers[i];
		for (unsigned k = 0; k < srv->nlisteners; k++)
			if (w->lev[k])
				evconnlistener_free(w->lev[k]);
		free(w->lev);
		smtp_flush_cleanup(w);
		event_base_free(w->base);
		pthread_mutex_destroy(&w->lock);
	}
	for (unsigned k = 0; k < srv->nlisteners; k++) {
		if (srv->listeners[k].fd >= 0)
			close(srv->listeners[k].fd);
		free(srv->listeners[k].conf.text);
	}
	event_free(m.sigterm);
	event_free(m.sigint);
	event_free(m.sighup);
	event_free(m.tick);
	event_base_free(m.base);
	for (size_t b = 0; b < srv->ipcount_buckets; b++)
		while (srv->ipcounts[b]) {
			struct server_ipcount *c = srv->ipcounts[b];
			srv->ipcounts[b] = c->next;
			free(c);
		}
	free(srv->ipcounts);
	free(srv->listeners);
	free(srv->workers);
	stats_free(srv->stats);
	config_unref(srv->cf);
	free(srv->config_path);
	log_info(NULL, "stopped");
	free(srv);
	rc = 0;
	return rc;
}

/* ---- show sessions ---- */

/* How long `show sessions` waits for every worker's answer. */
#define SERVER_DESCRIBE_TIMEOUT_MS 2000

/*
 * One `show sessions` request. A session's fields (state, helo, the
 * transaction) change on its worker's loop without a lock, so only that
 * loop may read them: the control thread posts a job to every worker and
 * waits, bounded, for all of them. A worker that answers after the wait
 * gave up still finds its job: the last of the control thread and the
 * posted jobs to let go frees the request.
 */
struct server_describe;

struct server_describe_job {
	struct server_describe *req;
	struct worker *w;
	struct evbuffer *text; /* this worker's lines */
};

struct server_describe {
	pthread_mutex_t lock;
	pthread_cond_t done;
	unsigned pending; /* posted jobs not yet run */
	unsigned refs;	  /* the control thread + posted jobs not yet run */
	unsigned n;
	struct server_describe_job job[];
};

/* server_describe_free - release a request and its buffers. */
static void
server_describe_free(struct server_describe *req)
{
	for (unsigned i = 0; i < req->n; i++)
		if (req->job[i].text != NULL)
			evbuffer_free(req->job[i].text);
	pthread_cond_destroy(&req->done);
	pthread_mutex_destroy(&req->lock);
	free(req);
}

/* server_describe_release - drop one reference; marks one job done when
 * asked; frees the request at zero. */
static void
server_describe_release(struct server_describe *req, bool job_done)
{
	bool last;

	pthread_mutex_lock(&req->lock);
	if (job_done && --req->pending == 0)
		pthread_cond_signal(&req->done);
	last = --req->refs == 0;
	pthread_mutex_unlock(&req->lock);
	if (last)
		server_describe_free(req);
}

/* server_describe_worker - runs on a worker: one line per session it owns. */
static void
server_describe_worker(evutil_socket_t fd, short what, void *arg)
{
	struct server_describe_job *job = arg;
	char line[640];

	/* This loop is the only writer of its list and of its sessions. */
	for (struct smtp_session *s = job->w->sessions; s; s = s->next) {
		smtp_session_describe(s, line, sizeof(line));
		evbuffer_add_printf(job->text, "%s\n", line);
	}
	server_describe_release(job->req, true);
}

/* server_describe_new - a request for n workers with its buffers; NULL
 * when out of memory. */
static struct server_describe *
server_describe_new(struct server *srv)
{
	struct server_describe *req;
	pthread_condattr_t ca;
	unsigned n = srv->nworkers;

	if ((req = calloc(1, sizeof(*req) + n * sizeof(req->job[0]))) == NULL)
		return NULL;
	pthread_mutex_init(&req->lock, NULL);
	pthread_condattr_init(&ca);
	/* The wait's deadline must not move with the wall clock. */
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&req->done, &ca);
	pthread_condattr_destroy(&ca);
	req->n = n;
	req->refs = 1;
	for (unsigned i = 0; i < n; i++) {
		req->job[i].req = req;
		req->job[i].w = &srv->workers[i];
		if ((req->job[i].text = evbuffer_new()) == NULL) {
			server_describe_free(req);
			return NULL;
		}
	}
	return req;
}

/*
 * server_describe_sessions - every worker's sessions, in worker order, one
 * line each (smtp_session_describe()). Blocks the calling (control)
 * thread for at most SERVER_DESCRIBE_TIMEOUT_MS. 0, or -1 with the reason
 * in out.
 */
static int
server_describe_sessions(struct server *srv, struct evbuffer *out)
{
	static const struct timeval now = {0, 0};
	struct server_describe *req;
	unsigned posted = 0, late;
	struct timespec deadline;
	int rc = 0;

	if ((req = server_describe_new(srv)) == NULL) {
		evbuffer_add_printf(out, "out of memory");
		return -1;
	}
	/* Counted before posting: a worker may answer before the loop ends. */
	pthread_mutex_lock(&req->lock);
	req->pending = req->n;
	req->refs = req->n + 1;
	pthread_mutex_unlock(&req->lock);
	for (unsigned i = 0; i < req->n; i++) {
		struct worker *w = req->job[i].w;
		int ok = -1;

		/* A worker that is leaving would never run it: no 2 s wait, no leak. */
		pthread_mutex_lock(&w->lock);
		if (w->running)
			ok = event_base_once(w->base, -1, EV_TIMEOUT, server_describe_worker,
					     &req->job[i], &now);
		pthread_mutex_unlock(&w->lock);
		if (ok == 0) {
			posted++;
			continue;
		}
		server_describe_release(req, true);
	}
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += SERVER_DESCRIBE_TIMEOUT_MS / 1000;
	deadline.tv_nsec += (SERVER_DESCRIBE_TIMEOUT_MS % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&req->lock);
	while (req->pending > 0 &&
	       pthread_cond_timedwait(&req->done, &req->lock, &deadline) != ETIMEDOUT)
		;
	late = req->pending;
	pthread_mutex_unlock(&req->lock);
	if (posted < req->n) {
		evbuffer_add_printf(out, "cannot reach %u of %u workers", req->n - posted, req->n);
		rc = -1;
	} else if (late > 0) {
		evbuffer_add_printf(out, "%u of %u workers did not answer in time", late, req->n);
		rc = -1;
	} else {
		for (unsigned i = 0; i < req->n; i++)
			evbuffer_add_buffer(out, req->job[i].text);
	}
	server_describe_release(req, false);
	return rc;
}
