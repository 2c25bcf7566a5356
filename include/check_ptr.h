/*
 * check_ptr.h - the client's name: forward-confirmed reverse DNS.
 */
#ifndef RAVELIN_CHECK_PTR_H
#define RAVELIN_CHECK_PTR_H

#include <stddef.h>

struct dns;
struct sockaddr;

/* check_ptr - the PTR name of sa when one of its A/AAAA records leads
 * back to sa; else "unknown". Blocking (check pool), bounded by budget_ms. */
void check_ptr(struct dns *dns, const struct sockaddr *sa, unsigned budget_ms, char *name,
	       size_t len);

#endif
