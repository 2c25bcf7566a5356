/*
 * check_dmarc.h - DMARC evaluation (RFC 7489): policy discovery through
 * ravelin's resolver (never libopendmarc's own lookups), records parsed by
 * libopendmarc, organisational domain from the Public Suffix List
 * (libpsl), identifier alignment (relaxed/strict; computed here, because
 * libopendmarc 1.4.2 aligns strict-mode subdomains), p=/sp=/pct=.
 *
 * One dmarcv_lib per process, shared by all threads; dmarcv_check() is
 * thread-safe and blocks on DNS (at most two TXT lookups, each bounded by
 * the resolver's timeout): run it on a check-pool thread.
 *
 * Results:
 *   pass       an aligned SPF pass or an aligned DKIM pass
 *   fail       a DMARC record applies and nothing aligned passed;
 *              disposition says what the policy asks for
 *   none       no usable record (none, several, or no From: domain)
 *   temperror  the record lookup failed temporarily
 *   permerror  a record was found (v=DMARC1) but does not parse (bad p=...)
 * pct= below 100: a failing message outside the sample gets the next
 * weaker disposition (reject -> quarantine -> none, RFC 7489 6.6.4).
 */
#ifndef RAVELIN_CHECK_DMARC_H
#define RAVELIN_CHECK_DMARC_H

#include <stdbool.h>
#include <stddef.h>

struct dns;
struct dmarcv_lib;

enum dmarcv_result {
	DMARCV_NONE = 0,
	DMARCV_PASS,
	DMARCV_FAIL,
	DMARCV_TEMPERROR,
	DMARCV_PERMERROR,
};

enum dmarcv_policy {
	DMARCV_POLICY_UNSET = 0,	/* no record */
	DMARCV_POLICY_NONE,
	DMARCV_POLICY_QUARANTINE,
	DMARCV_POLICY_REJECT,
};

/* Outcome of one TXT lookup (see dmarcv_txt_fn). */
enum dmarcv_txt_status {
	DMARCV_TXT_OK = 0,
	DMARCV_TXT_NOTFOUND,	/* NXDOMAIN or no TXT record */
	DMARCV_TXT_TEMPFAIL,
};

/* A TXT lookup: every record of name into out, each record's strings
 * joined, records separated by '\n', controls replaced by spaces.
 * Thread-safe. Same contract as dkimv_txt_fn. */
typedef enum dmarcv_txt_status (*dmarcv_txt_fn)(void *arg, const char *name, char *out,
					       size_t outlen);

/* One DKIM signature's outcome as check_dkim reports it. */
struct dmarcv_dkim {
	const char *domain;	/* d= */
	const char *selector;	/* s= */
	const char *result;	/* pass fail none temperror permerror */
};

/* What the message offers. */
struct dmarcv_input {
	const char *from_domain;	/* RFC5322.From domain */
	const char *spf_domain;		/* MAIL FROM domain (or HELO when MAIL FROM was <>) */
	const char *spf_result;		/* pass fail softfail neutral none temperror permerror; NULL: not run */
	bool spf_helo;			/* spf_domain is the HELO identity (null sender;
					 * informational: it aligns the same way) */
	const struct dmarcv_dkim *dkim;
	size_t ndkim;
};

/* The verdict. */
struct dmarcv_outcome {
	enum dmarcv_result result;
	enum dmarcv_policy policy;	/* p= or sp= that applies (UNSET: no record) */
	enum dmarcv_policy disposition;	/* what to do: policy after pct= (NONE on pass) */
	bool used_sp;			/* policy came from sp= of the organisational domain */
	int pct;			/* pct= (100 by default) */
	bool adkim_strict, aspf_strict;
	bool dkim_aligned, spf_aligned;	/* an aligned pass of each kind */
	char from_domain[256];		/* header.from */
	char record_domain[256];	/* where the record was found ("" when none) */
	char reason[80];		/* for logs */
};

/*
 * dmarcv_lib_new - initialise libopendmarc (once per process) and libpsl
 * with the Public Suffix List at psl_path (NULL: the Mozilla list at
 * /usr/share/publicsuffix/effective_tld_names.dat). Records are fetched
 * through dns. NULL with a message in err on failure.
 */
struct dmarcv_lib *dmarcv_lib_new(struct dns *dns, const char *psl_path, char *err,
				  size_t errlen);

/* dmarcv_lib_set_txt_lookup - fetch records through fn(arg, ...) instead. */
void dmarcv_lib_set_txt_lookup(struct dmarcv_lib *lib, dmarcv_txt_fn fn, void *arg);

/* dmarcv_lib_set_sampler - replace the pct= sampler (returns 0..99;
 * default: arc4random_uniform(100)); for tests. */
void dmarcv_lib_set_sampler(struct dmarcv_lib *lib, unsigned (*sampler)(void));

/* dmarcv_lib_free - accepts NULL. */
void dmarcv_lib_free(struct dmarcv_lib *lib);

/* dmarcv_org_domain - the organisational domain of domain (PSL
 * registrable domain) into buf; 0, or -1 when it has none. */
int dmarcv_org_domain(const struct dmarcv_lib *lib, const char *domain, char *buf, size_t len);

/* dmarcv_check - evaluate one message. Blocking (DNS). Always fills out. */
void dmarcv_check(struct dmarcv_lib *lib, const struct dmarcv_input *in,
		  struct dmarcv_outcome *out);

/* dmarcv_result_str - "pass", "fail", "none", "temperror", "permerror". */
const char *dmarcv_result_str(enum dmarcv_result r);

/* dmarcv_policy_str - "none", "quarantine", "reject" ("" for UNSET). */
const char *dmarcv_policy_str(enum dmarcv_policy p);

#endif
