/*
 * spfcheck.c - run ravelin's SPF check (src/check_spf.c) from the command line.
 *
 *   spfcheck --dns ADDR:PORT --ip IP --helo NAME --sender ADDR
 *            [--hostname NAME] [--timeout MS] [--budget MS] [--repeat N]
 *
 * Prints "key: value" lines: result, identity, domain, received-spf,
 * reason, ms. --repeat N runs the same check N times on N threads at once
 * (sharing one checker) and prints each block, separated by blank lines.
 * Exit status 0 whatever the SPF result; 1 on setup errors, 2 on usage.
 * Used by tests/e2e/test_spf*.py.
 */

/* System. */
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Project. */
#include "check_spf.h"
#include "dns.h"

struct run {
	struct spf_checker *ck;
	struct sockaddr_storage ss;
	const char *helo, *sender;
	struct spf_outcome out;
	long ms;
};

/* check_thread - one spf_check, timed. */
static void *
check_thread(void *arg)
{
	struct run *r = arg;
	struct timespec a, b;

	clock_gettime(CLOCK_MONOTONIC, &a);
	spf_check(r->ck, (struct sockaddr *)&r->ss, r->helo, r->sender, &r->out);
	clock_gettime(CLOCK_MONOTONIC, &b);
	r->ms = (b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000;
	return NULL;
}

/* usage - print the synopsis and exit 2. */
static void
usage(void)
{
	fprintf(stderr, "usage: spfcheck --dns ADDR:PORT --ip IP --helo NAME --sender ADDR "
			"[--hostname NAME] [--timeout MS] [--budget MS] [--repeat N]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	const char *server = NULL, *ip = NULL, *helo = "", *sender = "", *host = "mx.ravelin.test";
	unsigned timeout = 2000, budget = 0;
	int i, repeat = 1;
	struct sockaddr_storage ss;
	struct spf_checker *ck;
	struct dns *dns;
	struct run *runs;
	pthread_t *tids;
	char err[256];

	for (i = 1; i < argc; i++) {
		if (i + 1 >= argc)
			usage();
		if (strcmp(argv[i], "--dns") == 0)
			server = argv[++i];
		else if (strcmp(argv[i], "--ip") == 0)
			ip = argv[++i];
		else if (strcmp(argv[i], "--helo") == 0)
			helo = argv[++i];
		else if (strcmp(argv[i], "--sender") == 0)
			sender = argv[++i];
		else if (strcmp(argv[i], "--hostname") == 0)
			host = argv[++i];
		else if (strcmp(argv[i], "--timeout") == 0)
			timeout = atoi(argv[++i]);
		else if (strcmp(argv[i], "--budget") == 0)
			budget = atoi(argv[++i]);
		else if (strcmp(argv[i], "--repeat") == 0)
			repeat = atoi(argv[++i]);
		else
			usage();
	}
	if (ip == NULL || repeat < 1)
		usage();
	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, ip, &((struct sockaddr_in *)&ss)->sin_addr) == 1)
		ss.ss_family = AF_INET;
	else if (inet_pton(AF_INET6, ip, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1)
		ss.ss_family = AF_INET6;
	else {
		fprintf(stderr, "spfcheck: bad --ip %s\n", ip);
		return 1;
	}
	if ((dns = dns_new(server, timeout, err, sizeof(err))) == NULL) {
		fprintf(stderr, "spfcheck: %s\n", err);
		return 1;
	}
	if ((ck = spf_checker_new(dns, host)) == NULL) {
		fprintf(stderr, "spfcheck: spf_checker_new failed\n");
		return 1;
	}
	if (budget)
		spf_checker_set_budget(ck, budget);
	runs = calloc(repeat, sizeof(*runs));
	tids = calloc(repeat, sizeof(*tids));
	if (runs == NULL || tids == NULL)
		return 1;
	for (i = 0; i < repeat; i++) {
		runs[i].ck = ck;
		runs[i].ss = ss;
		runs[i].helo = helo;
		runs[i].sender = sender;
		pthread_create(&tids[i], NULL, check_thread, &runs[i]);
	}
	for (i = 0; i < repeat; i++) {
		struct spf_outcome *o = &runs[i].out;

		pthread_join(tids[i], NULL);
		printf("%sresult: %s\nidentity: %s\ndomain: %s\nreceived-spf: %s\nreason: %s\nms: %ld\n",
		       i ? "\n" : "", spf_result_name(o->result), o->identity, o->domain,
		       o->received_spf, o->reason, runs[i].ms);
	}
	spf_checker_free(ck);
	dns_free(dns);
	free(runs);
	free(tids);
	return 0;
}
