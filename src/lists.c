/*
 * lists.c - sets of networks (CIDR) and of case-insensitive strings.
 *
 * Networks are kept per address family and per prefix length in sorted
 * arrays of masked addresses; a lookup masks the address once per prefix
 * length in use and binary-searches that array, so a list of a million
 * entries costs a handful of probes. Arrays are sorted (and deduplicated)
 * lazily on the first lookup after an insertion, under a lock, so building
 * a large @FILE list is O(n log n) and a finished set is read-only and
 * safe to share between threads.
 *
 * Strings live in an open-addressing hash set (linear probing) of
 * ASCII-lowercased copies.
 *
 * Public:
 *   lists_netset_new(), lists_netset_add(), lists_netset_match(),
 *   lists_netset_match_str(), lists_netset_count(), lists_netset_free(),
 *   lists_strset_new(), lists_strset_add(), lists_strset_has(),
 *   lists_strset_match_domain(), lists_strset_count(), lists_strset_free(),
 *   lists_load_file(), lists_parse_ip(), lists_parse_cidr()
 */

/* System. */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Project. */
#include "lists.h"

typedef unsigned __int128 lists_u128;

/* One prefix length's entries: masked addresses, sorted once frozen. */
struct lists_v4arr {
	uint32_t *v;
	size_t n, cap;
};

struct lists_v6arr {
	lists_u128 *v;
	size_t n, cap;
};

struct lists_netset {
	struct lists_v4arr v4[33];
	struct lists_v6arr v6[129];
	/* Prefix lengths in use, longest first, rebuilt when sorting. */
	unsigned char v4len[33], v6len[129];
	unsigned nv4len, nv6len;
	atomic_bool sorted;
	pthread_mutex_t lock;
	size_t count;
};

struct lists_strset {
	char **slot;
	size_t cap; /* power of two */
	size_t count;
};

/* lists_lower - ASCII tolower, independent of the locale. */
static inline unsigned char
lists_lower(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

/* lists_parse_ip - parse a textual IPv4/IPv6 address; mapped IPv6 → IPv4. */
int
lists_parse_ip(const char *s, struct sockaddr_storage *out)
{
	struct in_addr a4;
	struct in6_addr a6;

	if (s == NULL || out == NULL)
		return -1;
	memset(out, 0, sizeof(*out));
	if (inet_pton(AF_INET, s, &a4) == 1) {
		struct sockaddr_in *sin = (struct sockaddr_in *)out;

		sin->sin_family = AF_INET;
		sin->sin_addr = a4;
		return 0;
	}
	if (inet_pton(AF_INET6, s, &a6) == 1) {
		if (IN6_IS_ADDR_V4MAPPED(&a6)) {
			struct sockaddr_in *sin = (struct sockaddr_in *)out;

			sin->sin_family = AF_INET;
			memcpy(&sin->sin_addr, &a6.s6_addr[12], 4);
			return 0;
		}
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)out;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_addr = a6;
		return 0;
	}
	return -1;
}

/* lists_v6_value - an IPv6 address as a 128-bit integer (network order). */
static lists_u128
lists_v6_value(const struct in6_addr *a)
{
	lists_u128 v = 0;

	for (int i = 0; i < 16; i++)
		v = (v << 8) | a->s6_addr[i];
	return v;
}

/* lists_v4_mask - network mask for a prefix length 0..32. */
static inline uint32_t
lists_v4_mask(unsigned len)
{
	return len == 0 ? 0 : (uint32_t)(0xffffffffu << (32 - len));
}

/* lists_v6_mask - network mask for a prefix length 0..128. */
static inline lists_u128
lists_v6_mask(unsigned len)
{
	return len == 0 ? 0 : (~(lists_u128)0) << (128 - len);
}

/*
 * lists_parse_cidr - parse "ADDR" or "ADDR/LEN" into family, value and
 * prefix length. An IPv4-mapped IPv6 network with a length of at least 96
 * becomes the IPv4 network. Host bits are cleared. 0 ok, -1 syntax.
 */
int
lists_parse_cidr(const char *cidr, int *family, unsigned char addr[16], unsigned *plen)
{
	char buf[INET6_ADDRSTRLEN + 8];
	const char *slash;
	struct in_addr a4;
	struct in6_addr a6;
	unsigned long len = ULONG_MAX;
	size_t alen;

	if (cidr == NULL)
		return -1;
	slash = strchr(cidr, '/');
	alen = slash ? (size_t)(slash - cidr) : strlen(cidr);
	if (alen == 0 || alen >= sizeof(buf))
		return -1;
	memcpy(buf, cidr, alen);
	buf[alen] = '\0';
	if (slash) {
		const char *p = slash + 1;
		char *end;

		if (*p < '0' || *p > '9' || strlen(p) > 3)
			return -1;
		errno = 0;
		len = strtoul(p, &end, 10);
		if (*end != '\0' || errno)
			return -1;
	}
	memset(addr, 0, 16);
	if (inet_pton(AF_INET, buf, &a4) == 1) {
		if (len == ULONG_MAX)
			len = 32;
		if (len > 32)
			return -1;
		uint32_t v = ntohl(a4.s_addr) & lists_v4_mask((unsigned)len);
		uint32_t n = htonl(v);

		memcpy(addr, &n, 4);
		*family = AF_INET;
		*plen = (unsigned)len;
		return 0;
	}
	if (inet_pton(AF_INET6, buf, &a6) == 1) {
		if (len == ULONG_MAX)
			len = 128;
		if (len > 128)
			return -1;
		if (IN6_IS_ADDR_V4MAPPED(&a6) && len >= 96) {
			uint32_t v, n;

			memcpy(&n, &a6.s6_addr[12], 4);
			v = ntohl(n) & lists_v4_mask((unsigned)len - 96);
			n = htonl(v);
			memcpy(addr, &n, 4);
			*family = AF_INET;
			*plen = (unsigned)len - 96;
			return 0;
		}
		lists_u128 v = lists_v6_value(&a6) & lists_v6_mask((unsigned)len);

		for (int i = 15; i >= 0; i--) {
			addr[i] = (unsigned char)(v & 0xff);
			v >>= 8;
		}
		*family = AF_INET6;
		*plen = (unsigned)len;
		return 0;
	}
	return -1;
}

/* lists_netset_new - an empty network set. */
struct lists_netset *
lists_netset_new(void)
{
	struct lists_netset *set = calloc(1, sizeof(*set));

	if (set == NULL)
		return NULL;
	atomic_init(&set->sorted, true);
	pthread_mutex_init(&set->lock, NULL);
	return set;
}

/* lists_netset_add - add one network or address; 0 ok, -1 syntax/memory. */
int
lists_netset_add(struct lists_netset *set, const char *cidr)
{
	unsigned char addr[16];
	unsigned plen;
	int family;

	if (set == NULL || lists_parse_cidr(cidr, &family, addr, &plen) < 0)
		return -1;
	if (family == AF_INET) {
		struct lists_v4arr *a = &set->v4[plen];
		uint32_t n;

		if (a->n == a->cap) {
			size_t cap = a->cap ? a->cap * 2 : 16;
			uint32_t *v = realloc(a->v, cap * sizeof(*v));

			if (v == NULL)
				return -1;
			a->v = v;
			a->cap = cap;
		}
		memcpy(&n, addr, 4);
		a->v[a->n++] = ntohl(n);
	} else {
		struct lists_v6arr *a = &set->v6[plen];
		lists_u128 v = 0;

		if (a->n == a->cap) {
			size_t cap = a->cap ? a->cap * 2 : 16;
			lists_u128 *nv = realloc(a->v, cap * sizeof(*nv));

			if (nv == NULL)
				return -1;
			a->v = nv;
			a->cap = cap;
		}
		for (int i = 0; i < 16; i++)
			v = (v << 8) | addr[i];
		a->v[a->n++] = v;
	}
	set->count++;
	atomic_store_explicit(&set->sorted, false, memory_order_release);
	return 0;
}

/* lists_cmp_u32 - qsort comparator for IPv4 values. */
static int
lists_cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* lists_cmp_u128 - qsort comparator for IPv6 values. */
static int
lists_cmp_u128(const void *a, const void *b)
{
	lists_u128 x, y;

	memcpy(&x, a, sizeof(x));
	memcpy(&y, b, sizeof(y));
	return x < y ? -1 : x > y;
}

/* lists_netset_freeze - sort and deduplicate every array (once, locked). */
static void
lists_netset_freeze(const struct lists_netset *cset)
{
	/* The set is logically const: sorting changes no membership. */
	struct lists_netset *set = (struct lists_netset *)cset;

	pthread_mutex_lock(&set->lock);
	if (atomic_load_explicit(&set->sorted, memory_order_acquire)) {
		pthread_mutex_unlock(&set->lock);
		return;
	}
	set->nv4len = set->nv6len = 0;
	set->count = 0;
	for (int len = 32; len >= 0; len--) {
		struct lists_v4arr *a = &set->v4[len];
		size_t o = 0;

		if (a->n == 0)
			continue;
		qsort(a->v, a->n, sizeof(*a->v), lists_cmp_u32);
		for (size_t i = 0; i < a->n; i++)
			if (o == 0 || a->v[o - 1] != a->v[i])
				a->v[o++] = a->v[i];
		a->n = o;
		set->count += o;
		set->v4len[set->nv4len++] = (unsigned char)len;
	}
	for (int len = 128; len >= 0; len--) {
		struct lists_v6arr *a = &set->v6[len];
		size_t o = 0;

		if (a->n == 0)
			continue;
		qsort(a->v, a->n, sizeof(*a->v), lists_cmp_u128);
		for (size_t i = 0; i < a->n; i++)
			if (o == 0 || a->v[o - 1] != a->v[i])
				a->v[o++] = a->v[i];
		a->n = o;
		set->count += o;
		set->v6len[set->nv6len++] = (unsigned char)len;
	}
	atomic_store_explicit(&set->sorted, true, memory_order_release);
	pthread_mutex_unlock(&set->lock);
}

/* lists_bsearch4 - is v in the sorted array? */
static bool
lists_bsearch4(const struct lists_v4arr *a, uint32_t v)
{
	size_t lo = 0, hi = a->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (a->v[mid] == v)
			return true;
		if (a->v[mid] < v)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

/* lists_bsearch6 - is v in the sorted array? */
static bool
lists_bsearch6(const struct lists_v6arr *a, lists_u128 v)
{
	size_t lo = 0, hi = a->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (a->v[mid] == v)
			return true;
		if (a->v[mid] < v)
			lo = mid + 1;
		else
			hi = mid;
	}
	return false;
}

/* lists_netset_match4 - does a host-order IPv4 address fall in the set? */
static bool
lists_netset_match4(const struct lists_netset *set, uint32_t ip)
{
	for (unsigned i = 0; i < set->nv4len; i++) {
		unsigned len = set->v4len[i];

		if (lists_bsearch4(&set->v4[len], ip & lists_v4_mask(len)))
			return true;
	}
	return false;
}

/* lists_netset_match - does the address fall in one of the networks? */
bool
lists_netset_match(const struct lists_netset *set, const struct sockaddr *sa)
{
	if (set == NULL || sa == NULL)
		return false;
	if (!atomic_load_explicit(&set->sorted, memory_order_acquire))
		lists_netset_freeze(set);
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

		return lists_netset_match4(set, ntohl(sin->sin_addr.s_addr));
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;

		if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
			uint32_t n;

			memcpy(&n, &sin6->sin6_addr.s6_addr[12], 4);
			return lists_netset_match4(set, ntohl(n));
		}
		lists_u128 v = lists_v6_value(&sin6->sin6_addr);

		for (unsigned i = 0; i < set->nv6len; i++) {
			unsigned len = set->v6len[i];

			if (lists_bsearch6(&set->v6[len], v & lists_v6_mask(len)))
				return true;
		}
	}
	return false;
}

/* lists_netset_match_str - match a textual address; false if unparsable. */
bool
lists_netset_match_str(const struct lists_netset *set, const char *ip)
{
	struct sockaddr_storage ss;

	if (lists_parse_ip(ip, &ss) < 0)
		return false;
	return lists_netset_match(set, (const struct sockaddr *)&ss);
}

/* lists_netset_count - number of distinct networks in the set. */
size_t
lists_netset_count(const struct lists_netset *set)
{
	if (set == NULL)
		return 0;
	if (!atomic_load_explicit(&set->sorted, memory_order_acquire))
		lists_netset_freeze(set);
	return set->count;
}

/* lists_netset_free - release the set; NULL is fine. */
void
lists_netset_free(struct lists_netset *set)
{
	if (set == NULL)
		return;
	for (int i = 0; i <= 32; i++)
		free(set->v4[i].v);
	for (int i = 0; i <= 128; i++)
		free(set->v6[i].v);
	pthread_mutex_destroy(&set->lock);
	free(set);
}

/* lists_hash - FNV-1a over the lowercased bytes of s[0..len). */
static uint64_t
lists_hash(const char *s, size_t len)
{
	uint64_t h = 1469598103934665603ULL;

	for (size_t i = 0; i < len; i++) {
		h ^= lists_lower((unsigned char)s[i]);
		h *= 1099511628211ULL;
	}
	return h;
}

/* lists_streq - does the stored lowercase key equal s[0..len) ignoring case? */
static bool
lists_streq(const char *key, const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (key[i] == '\0' || key[i] != (char)lists_lower((unsigned char)s[i]))
			return false;
	return key[len] == '\0';
}

/* lists_strset_find - slot holding s[0..len), or the empty slot for it. */
static size_t
lists_strset_find(const struct lists_strset *set, const char *s, size_t len)
{
	size_t mask = set->cap - 1;
	size_t i = (size_t)lists_hash(s, len) & mask;

	while (set->slot[i] != NULL && !lists_streq(set->slot[i], s, len))
		i = (i + 1) & mask;
	return i;
}

/* lists_strset_new - an empty string set. */
struct lists_strset *
lists_strset_new(void)
{
	struct lists_strset *set = calloc(1, sizeof(*set));

	if (set == NULL)
		return NULL;
	set->cap = 16;
	set->slot = calloc(set->cap, sizeof(*set->slot));
	if (set->slot == NULL) {
		free(set);
		return NULL;
	}
	return set;
}

/* lists_strset_grow - double the table (kept under 70% full). */
static int
lists_strset_grow(struct lists_strset *set)
{
	struct lists_strset n = { .cap = set->cap * 2 };

	n.slot = calloc(n.cap, sizeof(*n.slot));
	if (n.slot == NULL)
		return -1;
	for (size_t i = 0; i < set->cap; i++)
		if (set->slot[i] != NULL) {
			size_t j = lists_strset_find(&n, set->slot[i], strlen(set->slot[i]));

			n.slot[j] = set->slot[i];
		}
	free(set->slot);
	set->slot = n.slot;
	set->cap = n.cap;
	return 0;
}

/* lists_strset_add - add a string (stored lowercased); 0 ok, -1 empty/memory. */
int
lists_strset_add(struct lists_strset *set, const char *s)
{
	size_t len, i;
	char *copy;

	if (set == NULL || s == NULL || (len = strlen(s)) == 0)
		return -1;
	if ((set->count + 1) * 10 > set->cap * 7 && lists_strset_grow(set) < 0)
		return -1;
	i = lists_strset_find(set, s, len);
	if (set->slot[i] != NULL)
		return 0;
	if ((copy = malloc(len + 1)) == NULL)
		return -1;
	for (size_t k = 0; k < len; k++)
		copy[k] = (char)lists_lower((unsigned char)s[k]);
	copy[len] = '\0';
	set->slot[i] = copy;
	set->count++;
	return 0;
}

/* lists_strset_hasn - exact (case-insensitive) membership of s[0..len). */
static bool
lists_strset_hasn(const struct lists_strset *set, const char *s, size_t len)
{
	if (set == NULL || set->count == 0 || len == 0)
		return false;
	return set->slot[lists_strset_find(set, s, len)] != NULL;
}

/* lists_strset_has - exact case-insensitive membership. */
bool
lists_strset_has(const struct lists_strset *set, const char *s)
{
	if (s == NULL)
		return false;
	return lists_strset_hasn(set, s, strlen(s));
}

/*
 * lists_strset_match_domain - the domain itself, or a ".parent" entry for
 * any proper parent domain. One trailing dot (absolute form) is ignored.
 */
bool
lists_strset_match_domain(const struct lists_strset *set, const char *domain)
{
	size_t len;

	if (set == NULL || domain == NULL)
		return false;
	len = strlen(domain);
	if (len > 1 && domain[len - 1] == '.')
		len--;
	if (lists_strset_hasn(set, domain, len))
		return true;
	/* Each suffix starting at a dot, e.g. ".b.example.org", ".example.org". */
	for (size_t i = 1; i < len; i++)
		if (domain[i] == '.' && lists_strset_hasn(set, domain + i, len - i))
			return true;
	return false;
}

/* lists_strset_count - number of distinct strings. */
size_t
lists_strset_count(const struct lists_strset *set)
{
	return set ? set->count : 0;
}

/* lists_strset_free - release the set; NULL is fine. */
void
lists_strset_free(struct lists_strset *set)
{
	if (set == NULL)
		return;
	for (size_t i = 0; i < set->cap; i++)
		free(set->slot[i]);
	free(set->slot);
	free(set);
}

/* lists_load_entry - file one entry in nets or strs; 0 ok or -1 with err. */
static int
lists_load_entry(const char *w, struct lists_strset *strs, struct lists_netset *nets,
		 unsigned long line, char *err, size_t errlen)
{
	unsigned char addr[16];
	unsigned plen;
	int family;

	if (nets != NULL && lists_parse_cidr(w, &family, addr, &plen) == 0) {
		if (lists_netset_add(nets, w) < 0) {
			snprintf(err, errlen, "%lu: out of memory", line);
			return -1;
		}
		return 0;
	}
	if (strs == NULL) {
		snprintf(err, errlen, "%lu: not an address or network: %.200s", line, w);
		return -1;
	}
	if (lists_strset_add(strs, w) < 0) {
		snprintf(err, errlen, "%lu: out of memory", line);
		return -1;
	}
	return 0;
}

/* lists_load_file - read entries, one or more a line, into strs/nets. */
int
lists_load_file(const char *path, struct lists_strset *strs, struct lists_netset *nets,
		char *err, size_t errlen)
{
	FILE *fp;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	unsigned long lineno = 0;
	int rc = 0;

	if (err && errlen)
		err[0] = '\0';
	if ((fp = fopen(path, "r")) == NULL) {
		snprintf(err, errlen, "%s", strerror(errno));
		return -1;
	}
	while (rc == 0 && (n = getline(&line, &cap, fp)) != -1) {
		char *p, *save = NULL, *w;

		lineno++;
		if ((size_t)n != strlen(line)) {
			snprintf(err, errlen, "%lu: NUL byte in line", lineno);
			rc = -1;
			break;
		}
		if ((p = strchr(line, '#')) != NULL)
			*p = '\0';
		for (w = strtok_r(line, " \t\r\n\f\v", &save); w != NULL;
		     w = strtok_r(NULL, " \t\r\n\f\v", &save))
			if ((rc = lists_load_entry(w, strs, nets, lineno, err, errlen)) < 0)
				break;
	}
	if (rc == 0 && ferror(fp)) {
		snprintf(err, errlen, "%s", strerror(errno));
		rc = -1;
	}
	free(line);
	fclose(fp);
	return rc;
}
