/*
 * check_ptr.c - the client's name, as Postfix logs it: the PTR name only
 * when it is forward-confirmed (one of its addresses is the client's),
 * otherwise "unknown". A name that does not confirm is a forgery as far
 * as rules and logs are concerned.
 *
 * Public:
 *   check_ptr()
 */

/* System. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* Project. */
#include "check_ptr.h"
#include "dns.h"
#include "fmt.h"
#include "strcopy.h"

/* check_ptr - forward-confirmed reverse DNS name or "unknown". */
void
check_ptr(struct dns *dns, const struct sockaddr *sa, unsigned budget_ms, char *name, size_t len)
{
	char q[128];
	struct timespec deadline;
	struct dns_answer *ptr = NULL;

	fmt_snprintf(name, len, "unknown");
	if (!dns || dns_ptr_name(sa, q, sizeof(q)) < 0)
		return;
	dns_deadline(&deadline, budget_ms);
	if (dns_query(dns, q, DNS_T_PTR, &deadline, &ptr) != DNS_OK) {
		dns_answer_free(ptr);
		return;
	}
	bool v4 = sa->sa_family == AF_INET;
	for (size_t i = 0; i < ptr->count && i < 4; i++) {
		struct dns_answer *fwd = NULL;
		const char *host = ptr->rr[i].text;
		if (dns_query(dns, host, v4 ? DNS_T_A : DNS_T_AAAA, &deadline, &fwd) == DNS_OK) {
			for (size_t k = 0; k < fwd->count; k++) {
				bool same = v4 ? memcmp(&fwd->rr[k].addr.v4, &((const struct sockaddr_in *)sa)->sin_addr, 4) == 0
					       : memcmp(&fwd->rr[k].addr.v6, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16) == 0;
				if (same) {
					str_copy(name, len, host);
					dns_answer_free(fwd);
					dns_answer_free(ptr);
					return;
				}
			}
		}
		dns_answer_free(fwd);
	}
	dns_answer_free(ptr);
}
