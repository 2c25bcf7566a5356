/*
 * dnsquery.c - drive ravelin's resolver (src/dns.c) from the command line.
 *
 *   dnsquery --dns ADDR:PORT [--timeout MS] [--budget MS] [--parallel] QUERY...
 *
 * QUERY is NAME/TYPE (TYPE: A AAAA MX TXT PTR CNAME NS) or sleep:MS. Queries
 * run one after the other on one resolver (so its cache is shared), or all
 * at once on one thread each with --parallel. --budget sets one deadline
 * for the whole run, as a check does. Prints one JSON object per query:
 *   {"q": "NAME/TYPE", "status": "ok", "rcode": 0, "ttl": 300, "ms": 3,
 *    "canon": null, "rr": ["..."]}
 * MX records print as "PREF NAME". Used by tests/e2e/test_dns.py.
 */

/* System. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* Project. */
#include "dns.h"

struct job {
	struct dns *dns;
	const char *arg;
	const struct timespec *deadline;
	char *out;		/* the JSON line, printed by main in order */
	size_t outlen;
	FILE *fp;
};

/* json_str - write s (len bytes) as a JSON string. */
static void
json_str(FILE *fp, const char *s, size_t len)
{
	size_t i;

	fputc('"', fp);
	for (i = 0; i < len; i++) {
		unsigned char c = s[i];

		if (c == '"' || c == '\\')
			fprintf(fp, "\\%c", c);
		else if (c < 0x20 || c >= 0x7f)
			fprintf(fp, "\\u%04x", c);
		else
			fputc(c, fp);
	}
	fputc('"', fp);
}

/* parse_type - record type from its mnemonic; 0 if unknown. */
static int
parse_type(const char *s)
{
	static const int types[] = { DNS_T_A, DNS_T_AAAA, DNS_T_MX, DNS_T_TXT, DNS_T_PTR,
				     DNS_T_CNAME, DNS_T_NS, DNS_T_SOA };
	size_t i;

	for (i = 0; i < sizeof(types) / sizeof(types[0]); i++)
		if (strcasecmp(s, dns_type_name(types[i])) == 0)
			return types[i];
	return 0;
}

/* elapsed_ms - milliseconds since start. */
static long
elapsed_ms(const struct timespec *start)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - start->tv_sec) * 1000 + (now.tv_nsec - start->tv_nsec) / 1000000;
}

/* run_job - one query (or sleep), result as a JSON line into job->out. */
static void *
run_job(void *arg)
{
	struct job *j = arg;
	struct dns_answer *ans = NULL;
	struct timespec start;
	char name[1024], *slash;
	enum dns_status st;
	int type;
	size_t i;

	j->fp = open_memstream(&j->out, &j->outlen);
	if (strncmp(j->arg, "sleep:", 6) == 0) {
		usleep(atoi(j->arg + 6) * 1000);
		fclose(j->fp);
		return NULL;
	}
	snprintf(name, sizeof(name), "%s", j->arg);
	slash = strrchr(name, '/');
	if (slash == NULL || (type = parse_type(slash + 1)) == 0) {
		fprintf(j->fp, "{\"q\": ");
		json_str(j->fp, j->arg, strlen(j->arg));
		fprintf(j->fp, ", \"status\": \"usage\"}\n");
		fclose(j->fp);
		return NULL;
	}
	*slash = '\0';
	clock_gettime(CLOCK_MONOTONIC, &start);
	st = dns_query(j->dns, name, type, j->deadline, &ans);
	fprintf(j->fp, "{\"q\": ");
	json_str(j->fp, j->arg, strlen(j->arg));
	fprintf(j->fp, ", \"status\": \"%s\", \"ms\": %ld", dns_status_name(st), elapsed_ms(&start));
	if (ans != NULL) {
		fprintf(j->fp, ", \"rcode\": %d, \"ttl\": %u, \"canon\": ", ans->rcode, ans->ttl);
		if (ans->canonname)
			json_str(j->fp, ans->canonname, strlen(ans->canonname));
		else
			fprintf(j->fp, "null");
		fprintf(j->fp, ", \"rr\": [");
		for (i = 0; i < ans->count; i++) {
			char buf[1100];

			if (i > 0)
				fprintf(j->fp, ", ");
			if (type == DNS_T_MX) {
				snprintf(buf, sizeof(buf), "%u %s", ans->rr[i].pref, ans->rr[i].text);
				json_str(j->fp, buf, strlen(buf));
			} else
				json_str(j->fp, ans->rr[i].text, ans->rr[i].len);
		}
		fprintf(j->fp, "]");
	}
	fprintf(j->fp, "}\n");
	dns_answer_free(ans);
	fclose(j->fp);
	return NULL;
}

/* usage - print the synopsis and exit 2. */
static void
usage(void)
{
	fprintf(stderr, "usage: dnsquery --dns ADDR:PORT [--timeout MS] [--budget MS] [--parallel] "
			"NAME/TYPE|sleep:MS ...\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	const char *server = NULL;
	unsigned timeout = 2000, budget = 0;
	int parallel = 0, i, first, n;
	struct timespec deadline;
	struct job *jobs;
	pthread_t *tids;
	struct dns *dns;
	char err[256];

	for (i = 1; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
		if (strcmp(argv[i], "--dns") == 0 && i + 1 < argc)
			server = argv[++i];
		else if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc)
			timeout = atoi(argv[++i]);
		else if (strcmp(argv[i], "--budget") == 0 && i + 1 < argc)
			budget = atoi(argv[++i]);
		else if (strcmp(argv[i], "--parallel") == 0)
			parallel = 1;
		else
			usage();
	}
	if (i >= argc)
		usage();
	first = i;
	n = argc - first;
	if ((dns = dns_new(server, timeout, err, sizeof(err))) == NULL) {
		fprintf(stderr, "dnsquery: %s\n", err);
		return 1;
	}
	if (budget)
		dns_deadline(&deadline, budget);
	jobs = calloc(n, sizeof(*jobs));
	tids = calloc(n, sizeof(*tids));
	if (jobs == NULL || tids == NULL)
		return 1;
	for (i = 0; i < n; i++) {
		jobs[i].dns = dns;
		jobs[i].arg = argv[first + i];
		jobs[i].deadline = budget ? &deadline : NULL;
		if (parallel)
			pthread_create(&tids[i], NULL, run_job, &jobs[i]);
		else
			run_job(&jobs[i]);
	}
	for (i = 0; i < n; i++) {
		if (parallel)
			pthread_join(tids[i], NULL);
		fputs(jobs[i].out, stdout);
		free(jobs[i].out);
	}
	fflush(stdout);
	dns_free(dns);
	free(jobs);
	free(tids);
	return 0;
}
