/*
 * dmarccheck.c - run ravelin's DMARC evaluation (check_dmarc.c) for one
 * set of facts, records fetched through ravelin's resolver, and print
 *
 *   dmarc result=R policy=P disposition=D used_sp=0|1 pct=N adkim=r|s
 *         aspf=r|s dkim_aligned=0|1 spf_aligned=0|1 from=F record=DOMAIN
 *         reason="..."
 *
 * usage: dmarccheck --dns ADDR:PORT [--timeout MS] --from DOMAIN
 *                   [--spf RESULT:DOMAIN] [--helo] [--dkim RESULT:DOMAIN[:SELECTOR]]...
 *                   [--sample N]   (pct= sampler always returns N, 0..99)
 *                   [--org DOMAIN] (just print the organisational domain)
 */

/* System. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Project. */
#include "check_dmarc.h"
#include "dns.h"

#define MAXDKIM 16

static unsigned fixed_sample;

/* sample_fixed - the --sample value. */
static unsigned
sample_fixed(void)
{
	return fixed_sample;
}

/* split - cut "a:b[:c]" in place. */
static void
split(char *s, char **a, char **b, char **c)
{
	*a = s;
	*b = *c = NULL;
	if ((s = strchr(s, ':')) != NULL) {
		*s++ = '\0';
		*b = s;
		if ((s = strchr(s, ':')) != NULL) {
			*s++ = '\0';
			*c = s;
		}
	}
}

int
main(int argc, char **argv)
{
	const char *server = NULL, *orgq = NULL;
	unsigned timeout = 2000;
	struct dmarcv_dkim dk[MAXDKIM];
	struct dmarcv_input in;
	struct dmarcv_outcome out;
	struct dmarcv_lib *lib;
	struct dns *dns = NULL;
	char err[256], *x;
	bool sample = false;
	int a;

	memset(&in, 0, sizeof in);
	for (a = 1; a < argc; a++) {
		if (strcmp(argv[a], "--dns") == 0 && a + 1 < argc)
			server = argv[++a];
		else if (strcmp(argv[a], "--timeout") == 0 && a + 1 < argc)
			timeout = (unsigned)strtoul(argv[++a], NULL, 10);
		else if (strcmp(argv[a], "--from") == 0 && a + 1 < argc)
			in.from_domain = argv[++a];
		else if (strcmp(argv[a], "--spf") == 0 && a + 1 < argc)
			split(argv[++a], (char **)&in.spf_result, (char **)&in.spf_domain, &x);
		else if (strcmp(argv[a], "--helo") == 0)
			in.spf_helo = true;
		else if (strcmp(argv[a], "--dkim") == 0 && a + 1 < argc && in.ndkim < MAXDKIM) {
			struct dmarcv_dkim *d = &dk[in.ndkim++];

			split(argv[++a], (char **)&d->result, (char **)&d->domain,
			      (char **)&d->selector);
		} else if (strcmp(argv[a], "--sample") == 0 && a + 1 < argc) {
			fixed_sample = (unsigned)strtoul(argv[++a], NULL, 10);
			sample = true;
		} else if (strcmp(argv[a], "--org") == 0 && a + 1 < argc)
			orgq = argv[++a];
		else {
			fprintf(stderr, "dmarccheck: bad argument %s\n", argv[a]);
			return 2;
		}
	}
	in.dkim = dk;
	if (server != NULL && (dns = dns_new(server, timeout, err, sizeof err)) == NULL) {
		fprintf(stderr, "dmarccheck: dns: %s\n", err);
		return 2;
	}
	if ((lib = dmarcv_lib_new(dns, NULL, err, sizeof err)) == NULL) {
		fprintf(stderr, "dmarccheck: %s\n", err);
		return 2;
	}
	if (orgq != NULL) {
		char org[256];

		if (dmarcv_org_domain(lib, orgq, org, sizeof org) == 0)
			printf("org %s\n", org);
		else
			printf("org -\n");
	} else {
		if (dns == NULL) {
			fprintf(stderr, "dmarccheck: need --dns\n");
			return 2;
		}
		if (sample)
			dmarcv_lib_set_sampler(lib, sample_fixed);
		dmarcv_check(lib, &in, &out);
		printf("dmarc result=%s policy=%s disposition=%s used_sp=%d pct=%d adkim=%c "
		       "aspf=%c dkim_aligned=%d spf_aligned=%d from=%s record=%s reason=\"%s\"\n",
		       dmarcv_result_str(out.result), dmarcv_policy_str(out.policy),
		       dmarcv_policy_str(out.disposition), out.used_sp, out.pct,
		       out.adkim_strict ? 's' : 'r', out.aspf_strict ? 's' : 'r', out.dkim_aligned,
		       out.spf_aligned, out.from_domain, out.record_domain, out.reason);
	}
	dmarcv_lib_free(lib);
	dns_free(dns);
	return 0;
}
