/*
 * lists.c - sets of networks (CIDR) and of case-insensitive strings.
 *
 * Networks are kept per address family as ranges of 128-bit keys (IPv4
 * left-aligned, so both families share the code). On the first lookup
 * after an insertion the networks are sorted, deduplicated and merged into
 * disjoint ranges, under a lock, so building a large @FILE list is
 * O(n log n), a lookup is one binary search whatever the mix of prefix
 * lengths, and a finished set is read-only and safe to share between
 * threads.
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
#include <endian.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Project. */
#include "fmt.h"
#include "lists.h"

typedef unsigned __int128 lists_u128;

/*
 * Both families share one representation: an address is a 128-bit key,
 * left-aligned (an IPv4 address fills the top 32 bits), and a network is
 * the range of keys [lo, hi] it covers, so one sort, one merge and one
 * search serve IPv4 and IPv6 alike. The families stay apart so that an
 * IPv6 network such as ::/0 never matches an IPv4 client.
 */
enum lists_family { LISTS_V4, LISTS_V6, LISTS_NFAM };

/* A network, or a union of networks: the keys lo..hi inclusive. */
struct lists_range {
	lists_u128 lo, hi;
};

/*
 * One family's networks as added (sorted and deduplicated when frozen,
 * kept so that count is exact after later additions) and, once frozen,
 * their union as disjoint sorted ranges: nested or adjacent networks
 * merge, so a lookup is one binary search however many prefix lengths
 * the list mixes. The merged starts and ends are separate arrays so that
 * the search walks densely packed starts only. Every array has cap room,
 * so freezing never allocates.
 */
struct lists_fam {
	struct lists_range *net;
	lists_u128 *mlo, *mhi;
	size_t n, nmerged, cap;
};

struct lists_netset {
	struct lists_fam fam[LISTS_NFAM];
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

/* lists_key - 4 or 16 network-order bytes as a left-aligned 128-bit key. */
static inline lists_u128
lists_key(const unsigned char *b, size_t n)
{
	uint64_t hi, lo = 0;
	uint32_t v4;

	if (n == 4) {
		memcpy(&v4, b, 4);
		return (lists_u128)ntohl(v4) << 96;
	}
	memcpy(&hi, b, 8);
	memcpy(&lo, b + 8, 8);
	return (lists_u128)be64toh(hi) << 64 | be64toh(lo);
}

/* lists_mask - mask of a left-aligned prefix length 0..128. */
static inline lists_u128
lists_mask(unsigned len)
{
	return len == 0 ? 0 : (~(lists_u128)0) << (128 - len);
}

/* lists_sockaddr_key - a socket address's family and key; -1 when neither
 * IPv4 nor IPv6. IPv4-mapped IPv6 is IPv4. */
static int
lists_sockaddr_key(const struct sockaddr *sa, enum lists_family *fam, lists_u128 *key)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

		*fam = LISTS_V4;
		*key = lists_key((const unsigned char *)&sin->sin_addr, 4);
		return 0;
	}
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a6 = &((const struct sockaddr_in6 *)sa)->sin6_addr;

		if (IN6_IS_ADDR_V4MAPPED(a6)) {
			*fam = LISTS_V4;
			*key = lists_key(&a6->s6_addr[12], 4);
		} else {
			*fam = LISTS_V6;
			*key = lists_key(a6->s6_addr, 16);
		}
		return 0;
	}
	return -1;
}

/* lists_parse_len - the "/LEN" of a CIDR: 0 with *len set, -1 syntax. */
static int
lists_parse_len(const char *p, unsigned *len)
{
	unsigned long v;
	char *end;

	/* At most 3 digits: "0024" and the like are refused. */
	if (*p < '0' || *p > '9' || strlen(p) > 3)
		return -1;
	errno = 0;
	v = strtoul(p, &end, 10);
	if (*end != '\0' || errno)
		return -1;
	*len = (unsigned)v;
	return 0;
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
	union {
		struct in6_addr v6;
		unsigned char b[16];
	} a;
	const char *slash;
	unsigned len, bits;
	size_t alen, off;
	lists_u128 v;

	if (cidr == NULL)
		return -1;
	slash = strchr(cidr, '/');
	alen = slash ? (size_t)(slash - cidr) : strlen(cidr);
	if (alen == 0 || alen >= sizeof(buf))
		return -1;
	memcpy(buf, cidr, alen);
	buf[alen] = '\0';
	if (inet_pton(AF_INET, buf, a.b) == 1) {
		bits = 32;
		off = 0;
	} else if (inet_pton(AF_INET6, buf, &a.v6) == 1) {
		bits = 128;
		/* A mapped network of /96 or longer is the IPv4 network after it. */
		off = IN6_IS_ADDR_V4MAPPED(&a.v6) ? 12 : 0;
	} else {
		return -1;
	}
	len = bits;
	if (slash != NULL && (lists_parse_len(slash + 1, &len) < 0 || len > bits))
		return -1;
	if (off != 0 && len < 96)
		off = 0;
	bits -= (unsigned)off * 8;
	len -= (unsigned)off * 8;
	v = lists_key(a.b + off, bits / 8) & lists_mask(len);
	memset(addr, 0, 16);
	for (unsigned i = 0; i < bits / 8; i++)
		addr[i] = (unsigned char)(v >> (120 - 8 * i));
	*family = bits == 32 ? AF_INET : AF_INET6;
	*plen = len;
	return 0;
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

/* lists_fam_grow - room for one more network in both arrays; 0 or -1. */
static int
lists_fam_grow(struct lists_fam *f)
{
	size_t cap = f->cap ? f->cap * 2 : 16;
	struct lists_range *v;
	lists_u128 *k;

	if (f->n < f->cap)
		return 0;
	/* cap only grows once every array has the room. */
	if ((v = reallocarray(f->net, cap, sizeof(*v))) == NULL)
		return -1;
	f->net = v;
	if ((k = reallocarray(f->mlo, cap, sizeof(*k))) == NULL)
		return -1;
	f->mlo = k;
	if ((k = reallocarray(f->mhi, cap, sizeof(*k))) == NULL)
		return -1;
	f->mhi = k;
	f->cap = cap;
	return 0;
}

/* lists_netset_add - add one network or address; 0 ok, -1 syntax/memory. */
int
lists_netset_add(struct lists_netset *set, const char *cidr)
{
	unsigned char addr[16];
	struct lists_fam *f;
	lists_u128 lo;
	unsigned plen;
	int family;

	if (set == NULL || lists_parse_cidr(cidr, &family, addr, &plen) < 0)
		return -1;
	f = &set->fam[family == AF_INET ? LISTS_V4 : LISTS_V6];
	if (lists_fam_grow(f) < 0)
		return -1;
	lo = lists_key(addr, family == AF_INET ? 4 : 16);
	f->net[f->n].lo = lo;
	/* For IPv4 the unused low 96 bits are ones too: lookups leave them zero. */
	f->net[f->n].hi = lo | ~lists_mask(plen);
	f->n++;
	set->count++;
	atomic_store_explicit(&set->sorted, false, memory_order_release);
	return 0;
}

/* lists_cmp_range - qsort order: by start, the wider network first. */
static int
lists_cmp_range(const void *a, const void *b)
{
	const struct lists_range *x = a, *y = b;

	if (x->lo != y->lo)
		return x->lo < y->lo ? -1 : 1;
	return x->hi > y->hi ? -1 : x->hi < y->hi;
}

/* lists_fam_freeze - deduplicate one family's networks and merge them into
 * disjoint ranges; returns the number of distinct networks. */
static size_t
lists_fam_freeze(struct lists_fam *f)
{
	size_t o = 0, m = 0;

	if (f->n == 0) {
		f->nmerged = 0;
		return 0;
	}
	qsort(f->net, f->n, sizeof(*f->net), lists_cmp_range);
	for (size_t i = 0; i < f->n; i++)
		if (o == 0 || f->net[o - 1].lo != f->net[i].lo || f->net[o - 1].hi != f->net[i].hi)
			f->net[o++] = f->net[i];
	f->n = o;
	f->mlo[0] = f->net[0].lo;
	f->mhi[0] = f->net[0].hi;
	m = 1;
	for (size_t i = 1; i < f->n; i++) {
		const struct lists_range *r = &f->net[i];

		/* Sorted by start, so r overlaps or touches the last range, or
		 * starts a new one (r->lo > hi here keeps r->lo - 1 from wrapping). */
		if (r->lo <= f->mhi[m - 1] || r->lo - 1 == f->mhi[m - 1]) {
			if (r->hi > f->mhi[m - 1])
				f->mhi[m - 1] = r->hi;
		} else {
			f->mlo[m] = r->lo;
			f->mhi[m++] = r->hi;
		}
	}
	f->nmerged = m;
	return o;
}

/* lists_netset_freeze - deduplicate and merge every family (once, locked). */
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
	set->count = 0;
	for (int i = 0; i < LISTS_NFAM; i++)
		set->count += lists_fam_freeze(&set->fam[i]);
	atomic_store_explicit(&set->sorted, true, memory_order_release);
	pthread_mutex_unlock(&set->lock);
}

/* lists_netset_match - does the address fall in one of the networks? */
bool
lists_netset_match(const struct lists_netset *set, const struct sockaddr *sa)
{
	const struct lists_fam *f;
	const lists_u128 *base;
	enum lists_family fam;
	lists_u128 key;
	size_t n;

	if (set == NULL || sa == NULL || lists_sockaddr_key(sa, &fam, &key) < 0)
		return false;
	if (!atomic_load_explicit(&set->sorted, memory_order_acquire))
		lists_netset_freeze(set);
	f = &set->fam[fam];
	if ((n = f->nmerged) == 0)
		return false;
	/* The last range starting at or before key is the only candidate;
	 * the halving has no unpredictable branch (the compiler uses cmov). */
	base = f->mlo;
	while (n > 1) {
		size_t half = n / 2;

		base = base[half] <= key ? base + half : base;
		n -= half;
	}
	return *base <= key && key <= f->mhi[base - f->mlo];
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
	for (int f = 0; f < LISTS_NFAM; f++) {
		free(set->fam[f].net);
		free(set->fam[f].mlo);
		free(set->fam[f].mhi);
	}
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
			fmt_snprintf(err, errlen, "%lu: out of memory", line);
			return -1;
		}
		return 0;
	}
	if (strs == NULL) {
		fmt_snprintf(err, errlen, "%lu: not an address or network: %.200s", line, w);
		return -1;
	}
	if (lists_strset_add(strs, w) < 0) {
		fmt_snprintf(err, errlen, "%lu: out of memory", line);
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
		fmt_snprintf(err, errlen, "%s", strerror(errno));
		return -1;
	}
	while (rc == 0 && (n = getline(&line, &cap, fp)) != -1) {
		char *p, *save = NULL, *w;

		lineno++;
		if ((size_t)n != strlen(line)) {
			fmt_snprintf(err, errlen, "%lu: NUL byte in line", lineno);
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
		fmt_snprintf(err, errlen, "%s", strerror(errno));
		rc = -1;
	}
	free(line);
	fclose(fp);
	return rc;
}
