/*
 * dns.h - ravelin's one DNS resolver (libunbound, forward-only, cached).
 *
 * Blocking queries meant for check-pool threads: every query is bounded by
 * the resolver's per-query timeout and by an optional per-check deadline,
 * and any number of threads may query one struct dns at once.
 */
#ifndef RAVELIN_DNS_H
#define RAVELIN_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>
#include <netinet/in.h>

struct sockaddr;
struct dns;

/* Record types ravelin asks for (values are the DNS TYPE codes). */
enum dns_type {
	DNS_T_A = 1,
	DNS_T_NS = 2,
	DNS_T_CNAME = 5,
	DNS_T_SOA = 6,
	DNS_T_PTR = 12,
	DNS_T_MX = 15,
	DNS_T_TXT = 16,
	DNS_T_AAAA = 28,
};

/* What became of a query. Only DNS_OK carries records. */
enum dns_status {
	DNS_OK,		/* NOERROR with at least one record of the type */
	DNS_NODATA,	/* NOERROR, the name exists but has no such record */
	DNS_NXDOMAIN,	/* the name does not exist (RCODE 3) */
	DNS_SERVFAIL,	/* SERVFAIL, REFUSED, resolver error: temporary */
	DNS_TIMEOUT,	/* no answer before the timeout or the deadline */
	DNS_BADNAME,	/* not a valid domain name: nothing was asked */
};

/* One record of an answer. */
struct dns_rr {
	/*
	 * TXT: the record's character-strings joined without separator
	 * (RFC 7208 3.3, RFC 6376 3.6.2.2); may hold NUL bytes, see len.
	 * MX, PTR, CNAME, NS: the target name, no final dot.
	 * A, AAAA: the address in text form. Always NUL-terminated.
	 */
	char *text;
	size_t len;		/* bytes in text, without the final NUL */
	unsigned pref;		/* MX preference; 0 otherwise */
	union {
		struct in_addr v4;	/* A */
		struct in6_addr v6;	/* AAAA */
	} addr;
};

/* An answer: status plus the records of the asked type. */
struct dns_answer {
	enum dns_status status;
	int rcode;		/* RCODE received, -1 when none (timeout) */
	unsigned ttl;		/* seconds the data (or the denial) may be kept */
	char *canonname;	/* the name after CNAMEs, NULL if no CNAME */
	size_t count;		/* records in rr (0 unless DNS_OK) */
	struct dns_rr *rr;
};

/*
 * dns_new - a resolver forwarding to server ("ADDR", "ADDR:PORT",
 * "[V6ADDR]:PORT"; NULL: the nameservers of /etc/resolv.conf). Never
 * recurses from the root itself. timeout_ms bounds each query (0: 5000).
 * NULL with a message in err on failure.
 */
struct dns *dns_new(const char *server, unsigned timeout_ms, char *err, size_t errlen);

/* dns_free - stop and free; no query may be running. Accepts NULL. */
void dns_free(struct dns *dns);

/*
 * dns_query - ask for (name, type) and wait, at most the resolver's
 * timeout and never past *deadline (CLOCK_MONOTONIC; NULL: no deadline).
 * Always stores an answer in *answerp (free it with dns_answer_free)
 * unless memory runs out (then NULL and DNS_SERVFAIL). Returns its status.
 * Thread-safe.
 */
enum dns_status dns_query(struct dns *dns, const char *name, enum dns_type type,
			  const struct timespec *deadline, struct dns_answer **answerp);

/* dns_cache_only - on this thread, queries not in ravelin's own cache
 * fail at once instead of waiting; dns_cache_missed() says whether one
 * did (so the caller can redo the work where waiting is allowed). */
void dns_cache_only(bool on);
bool dns_cache_missed(void);
/* dns_cache_only_suspend/resume - let one lookup wait (it must not fail
 * for a cache miss) inside a cache-only stretch, keeping the miss flag. */
bool dns_cache_only_suspend(void);
void dns_cache_only_resume(bool was);

/* dns_txt_text - all TXT records of name, printable, '\n'-separated, in
 * out (truncated to outlen); the query's status. Blocking. */
enum dns_status dns_txt_text(struct dns *dns, const char *name, const struct timespec *deadline,
			     char *out, size_t outlen);

/* dns_answer_free - free an answer; accepts NULL. */
void dns_answer_free(struct dns_answer *answer);

/* dns_deadline - set *deadline to now + ms on CLOCK_MONOTONIC (a per-check budget). */
void dns_deadline(struct timespec *deadline, unsigned ms);

/* dns_status_name - "ok", "nodata", "nxdomain", "servfail", "timeout", "badname". */
const char *dns_status_name(enum dns_status status);

/* dns_type_name - "A", "TXT", ... or NULL for a type ravelin does not know. */
const char *dns_type_name(enum dns_type type);

/* dns_ptr_name - the in-addr.arpa / ip6.arpa name of an address; 0 or -1. */
int dns_ptr_name(const struct sockaddr *sa, char *buf, size_t len);

#endif
