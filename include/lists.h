/*
 * lists.h - sets of networks (CIDR) and of domains/addresses, loaded inline
 * or from @FILE, shared read-only across threads once built.
 */
#ifndef RAVELIN_LISTS_H
#define RAVELIN_LISTS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

struct lists_netset;
struct lists_strset;

/* Networks: "192.0.2.0/24", "2001:db8::/32", bare addresses (= /32, /128).
 * IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) match as IPv4; host bits
 * after the prefix are ignored. Build a set in one thread, then share it:
 * lookups may run in many threads at once (the first lookup after adding
 * sorts the set, under a lock), adding while others look up may not.
 * Networks are merged into disjoint address ranges when the set is sorted,
 * so a lookup costs one binary search whatever the mix of prefix lengths. */
struct lists_netset *lists_netset_new(void);
int lists_netset_add(struct lists_netset *set, const char *cidr); /* 0 ok, -1 syntax */
bool lists_netset_match(const struct lists_netset *set, const struct sockaddr *sa);
bool lists_netset_match_str(const struct lists_netset *set, const char *ip);
size_t lists_netset_count(const struct lists_netset *set);
void lists_netset_free(struct lists_netset *set);

/* Strings compared case-insensitively (ASCII only; domains, addresses),
 * kept in a hash set: build first, then share read-only. In domain
 * matching, an entry with a leading dot (".example.org") matches every
 * subdomain of example.org but not example.org itself. */
struct lists_strset *lists_strset_new(void);
int lists_strset_add(struct lists_strset *set, const char *s); /* 0 ok, -1 empty */
bool lists_strset_has(const struct lists_strset *set, const char *s);
bool lists_strset_match_domain(const struct lists_strset *set, const char *domain);
size_t lists_strset_count(const struct lists_strset *set);
void lists_strset_free(struct lists_strset *set);

/* lists_load_file - read one entry per line (# comments, blank lines and
 * white-space-separated entries allowed); entries that parse as an address
 * or CIDR go to nets (when non-NULL), the others to strs (when non-NULL).
 * With nets NULL, addresses go to strs as text; with strs NULL, an entry
 * that is not an address or CIDR is an error.
 * Returns 0, or -1 with "LINE: message" (or the errno text) in err. */
int lists_load_file(const char *path, struct lists_strset *strs, struct lists_netset *nets,
		    char *err, size_t errlen);

/* lists_parse_ip - parse a textual IPv4/IPv6 address; IPv4-mapped IPv6 is
 * returned as AF_INET. Returns 0 or -1. */
int lists_parse_ip(const char *s, struct sockaddr_storage *out);

/* lists_parse_cidr - parse "ADDR" or "ADDR/LEN": family (AF_INET or
 * AF_INET6), the masked address in network order (4 or 16 bytes used) and
 * the prefix length. IPv4-mapped IPv6 (length >= 96) becomes IPv4.
 * Returns 0 or -1. */
int lists_parse_cidr(const char *cidr, int *family, unsigned char addr[16], unsigned *plen);

#endif
