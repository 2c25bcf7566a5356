/*
 * controlserver.c - the stats socket without the proxy, for end-to-end tests
 * of control.c and ravelinctl (tests/e2e/test_control.py).
 *
 *   controlserver [-m MODE] [-u UID] [-g GID] [-t TIMEOUT_MS] [-N] SOCKET
 *
 * Serves SOCKET with fake callbacks (-N: no config/ratelimit callbacks) and
 * two stats workers preloaded with known counts. Prints "ready" once the
 * socket is up, then reads commands on stdin, answering "ok" to each:
 *
 *   inc NAME N | inc NAME LABEL N | gauge NAME DELTA
 *   reload-fail TEXT | reload-ok
 *
 * Exits (removing the socket) at end of input.
 */

/* System. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Libraries. */
#include <event2/buffer.h>
#include <event2/thread.h>

/* Project. */
#include "control.h"
#include "stats.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char reload_error[1024];
static int reloads;
static int limited = 1;	/* the fake rate-limit store holds one key until cleared */
static const char *limited_key = "client.ip:192.0.2.7";

/* fake_info - version and config; workers and sessions keep control's defaults. */
static void
fake_info(void *arg, struct control_info *info)
{
	snprintf(info->version, sizeof(info->version), "ravelin-test 1.0");
	snprintf(info->config, sizeof(info->config), "/etc/ravelin/test.conf");
}

/* fake_sessions - two made-up sessions. */
static int
fake_sessions(void *arg, struct evbuffer *out)
{
	evbuffer_add_printf(out, "4F2A9C1D 192.0.2.7 rcpt 12\n9B00C0DE 198.51.100.9 data 3\n");
	return 0;
}

/* fake_reload - succeeds unless told to fail. */
static int
fake_reload(void *arg, struct evbuffer *out)
{
	int rc = 0;

	pthread_mutex_lock(&lock);
	reloads++;
	if (reload_error[0] != '\0') {
		evbuffer_add_printf(out, "%s", reload_error);
		rc = -1;
	}
	pthread_mutex_unlock(&lock);
	return rc;
}

/* fake_config - a config dump that shows how many reloads ran. */
static int
fake_config(void *arg, struct evbuffer *out)
{
	pthread_mutex_lock(&lock);
	evbuffer_add_printf(out, "hostname test.example\nreloads %d\n", reloads);
	pthread_mutex_unlock(&lock);
	return 0;
}

/* fake_rl_show - state of the one known key. */
static int
fake_rl_show(void *arg, const char *key, struct evbuffer *out)
{
	int rc = 0;

	pthread_mutex_lock(&lock);
	if (limited && strcmp(key, limited_key) == 0)
		evbuffer_add_printf(out, "%s: 31 events in 60s (limit 30)\n", key);
	else {
		evbuffer_add_printf(out, "no such key: %s", key);
		rc = -1;
	}
	pthread_mutex_unlock(&lock);
	return rc;
}

/* fake_rl_clear - forget the one known key. */
static int
fake_rl_clear(void *arg, const char *key, struct evbuffer *out)
{
	int rc = 0;

	pthread_mutex_lock(&lock);
	if (limited && strcmp(key, limited_key) == 0)
		limited = 0;
	else {
		evbuffer_add_printf(out, "no such key: %s", key);
		rc = -1;
	}
	pthread_mutex_unlock(&lock);
	return rc;
}

/* preload - the known starting counts the test checks. */
static void
preload(struct stats_worker *w0, struct stats_worker *w1)
{
	stats_add(w0, STATS_CONNECTIONS_TOTAL, 3);
	stats_add(w1, STATS_CONNECTIONS_TOTAL, 4);
	stats_gauge_add(w0, STATS_CONNECTIONS_ACTIVE, 3);
	stats_gauge_add(w1, STATS_CONNECTIONS_ACTIVE, -1);
	stats_add(w1, STATS_MESSAGES_ACCEPTED_TOTAL, 2);
	stats_inc(w0, STATS_MESSAGES_REJECTED_TOTAL);
	stats_inc_label(w0, STATS_SPF_RESULT, "pass");
	stats_inc_label(w0, STATS_SPF_RESULT, "pass");
	stats_inc_label(w1, STATS_SPF_RESULT, "pass");
	stats_inc_label(w1, STATS_SPF_RESULT, "fail");
	stats_add_label(w0, STATS_RULE_HITS, "local.rules:12", 5);
	stats_inc_label(w1, STATS_RULE_HITS, "we\"ird\\rule\nname");
}

/* command - one stdin command. */
static void
command(char *line, struct stats_worker **w, unsigned *turn)
{
	char *argv[4], *save = NULL, *p;
	int argc = 0, id;

	line[strcspn(line, "\n")] = '\0';
	if (strncmp(line, "reload-fail ", 12) == 0) {
		pthread_mutex_lock(&lock);
		snprintf(reload_error, sizeof(reload_error), "%s", line + 12);
		pthread_mutex_unlock(&lock);
		goto ok;
	}
	if (strcmp(line, "reload-ok") == 0) {
		pthread_mutex_lock(&lock);
		reload_error[0] = '\0';
		pthread_mutex_unlock(&lock);
		goto ok;
	}
	for (p = strtok_r(line, " ", &save); p && argc < 4; p = strtok_r(NULL, " ", &save))
		argv[argc++] = p;
	if (argc < 3 || (id = stats_lookup(argv[1])) == -1) {
		printf("bad command\n");
		fflush(stdout);
		return;
	}
	*turn ^= 1;
	if (strcmp(argv[0], "gauge") == 0)
		stats_gauge_add(w[*turn], id, atoll(argv[2]));
	else if (argc == 4)
		stats_add_label(w[*turn], id, argv[2], strtoull(argv[3], NULL, 10));
	else
		stats_add(w[*turn], id, strtoull(argv[2], NULL, 10));
ok:
	printf("ok\n");
	fflush(stdout);
}

int
main(int argc, char **argv)
{
	struct control_ops ops = {fake_info, fake_sessions, fake_reload, fake_config,
	    fake_rl_show, fake_rl_clear};
	struct stats_worker *w[2];
	struct control *c;
	struct stats *st;
	char err[512], line[1024];
	uid_t uid = (uid_t)-1;
	gid_t gid = (gid_t)-1;
	mode_t mode = 0660;
	unsigned timeout = 0, turn = 0;
	int ch;

	while ((ch = getopt(argc, argv, "m:u:g:t:N")) != -1) {
		switch (ch) {
		case 'm': mode = strtoul(optarg, NULL, 8); break;
		case 'u': uid = atoi(optarg); break;
		case 'g': gid = atoi(optarg); break;
		case 't': timeout = atoi(optarg); break;
		case 'N':
			ops.config = NULL;
			ops.ratelimit_show = ops.ratelimit_clear = NULL;
			break;
		default:
			fprintf(stderr, "usage: controlserver [-m MODE] [-u UID] [-g GID] "
			    "[-t MS] [-N] SOCKET\n");
			return 2;
		}
	}
	if (optind + 1 != argc)
		return 2;
	evthread_use_pthreads();
	if ((st = stats_new()) == NULL || (w[0] = stats_worker_new(st)) == NULL ||
	    (w[1] = stats_worker_new(st)) == NULL)
		return 1;
	preload(w[0], w[1]);
	if ((c = control_new(argv[optind], mode, uid, gid, st, &ops, NULL, err,
	    sizeof(err))) == NULL) {
		fprintf(stderr, "controlserver: %s\n", err);
		stats_free(st);
		return 1;
	}
	if (timeout)
		control_set_timeout(c, timeout);
	printf("ready\n");
	fflush(stdout);
	while (fgets(line, sizeof(line), stdin) != NULL)
		command(line, w, &turn);
	control_free(c);
	stats_free(st);
	return 0;
}
