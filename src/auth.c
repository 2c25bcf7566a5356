/*
 * auth.c - SMTP AUTH building blocks: strict base64, PLAIN (RFC 4616) and
 * LOGIN decoding, the auth_users password file checked with crypt(3), and
 * sender ownership from sender_logins (or the built-in rule).
 *
 * Decoding is pure and bounded by the caller's buffers. The two files are
 * parsed once into sorted arrays and never change afterwards, so lookups
 * from many threads need no lock; a reference count lets a check-pool job
 * finish with the old table while a reload installs a new one.
 *
 * Public:
 *   auth_status_str(), auth_base64_decode(), auth_base64_encode(),
 *   auth_response_decode(), auth_plain_decode(), auth_login_decode_user(),
 *   auth_login_decode_pass(), auth_user_valid(), auth_users_load(),
 *   auth_users_ref(), auth_users_free(), auth_users_count(),
 *   auth_users_exists(), auth_users_verify(), auth_senders_load(),
 *   auth_senders_ref(), auth_senders_free(), auth_senders_count(),
 *   auth_sender_owned()
 */

/* System. */
#include <crypt.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Project. */
#include "auth.h"
#include "base64.h"
#include "fmt.h"
#include "lists.h"

/* Longest line in auth_users / sender_logins files. */
#define AUTH_LINE_MAX 8192
/* Longest address auth_sender_owned() looks up (RFC 5321: 254 + slack). */
#define AUTH_ADDR_MAX 512

/* What the shared loader knows of an entry of either file: its key, which
 * must be unique (a user name, or an address or "@domain"), and the line it
 * came from. The first member of both entry types, so one comparison and
 * one duplicate check serve both. */
struct auth_entry {
	char *key;
	unsigned line;
};

struct auth_user {
	struct auth_entry e; /* key: the user name */
	char *hash;
	bool locked;
};

struct auth_users {
	atomic_int refs;
	struct auth_user *v; /* sorted by name */
	size_t n;
	const char *dummy; /* setting for unknown users: the first usable hash */
};

struct auth_sender {
	struct auth_entry e; /* key: lowercased address or "@domain" */
	char **users;
	size_t nusers;
};

struct auth_senders {
	atomic_int refs;
	struct auth_sender *v; /* sorted by key */
	size_t n;
};

/* auth_status_str - short names for log lines. */
const char *
auth_status_str(enum auth_status st)
{
	switch (st) {
	case AUTH_OK:
		return "ok";
	case AUTH_CANCEL:
		return "cancelled";
	case AUTH_BAD_BASE64:
		return "bad base64";
	case AUTH_BAD_FORMAT:
		return "bad format";
	case AUTH_TOO_LONG:
		return "too long";
	case AUTH_AUTHZID:
		return "authzid not allowed";
	}
	return "unknown";
}

/* auth_b64_decode - 0.. decoded length, -1 malformed, -2 too long for out. */
static int
auth_b64_decode(const char *in, unsigned char *out, size_t outsize)
{
	size_t len = strlen(in), o = 0;

	if (len % 4 != 0 || len / 4 * 3 > INT32_MAX)
		return -1;
	for (size_t i = 0; i < len; i += 4) {
		bool last = i + 4 == len;
		int a = base64_value((unsigned char)in[i]);
		int b = base64_value((unsigned char)in[i + 1]);
		int c = base64_value((unsigned char)in[i + 2]);
		int d = base64_value((unsigned char)in[i + 3]);
		unsigned char buf[3];
		size_t n = 3;

		if (a < 0 || b < 0)
			return -1;
		if (in[i + 2] == '=') {
			/* "xx==": one byte; the 4 low bits of b must be zero. */
			if (!last || in[i + 3] != '=' || (b & 0x0f) != 0)
				return -1;
			n = 1;
		} else if (in[i + 3] == '=') {
			/* "xxx=": two bytes; the 2 low bits of c must be zero. */
			if (!last || c < 0 || (c & 0x03) != 0)
				return -1;
			n = 2;
		} else if (c < 0 || d < 0) {
			return -1;
		}
		buf[0] = (unsigned char)(a << 2 | b >> 4);
		buf[1] = (unsigned char)((b & 0x0f) << 4 | (c > 0 ? c : 0) >> 2);
		buf[2] = (unsigned char)((c > 0 ? c & 0x03 : 0) << 6 | (d > 0 ? d : 0));
		/* Keep checking the syntax even once out is full. */
		if (o + n > outsize)
			o = SIZE_MAX / 2;
		else {
			memcpy(out + o, buf, n);
			o += n;
		}
	}
	if (o > outsize)
		return -2;
	return (int)o;
}

/* auth_base64_decode - strict base64; the length or -1. */
int
auth_base64_decode(const char *in, unsigned char *out, size_t outsize)
{
	int n = in ? auth_b64_decode(in, out, outsize) : -1;

	return n < 0 ? -1 : n;
}

/* auth_base64_encode - padded base64, NUL-terminated; length or -1. */
int
auth_base64_encode(const unsigned char *in, size_t inlen, char *out, size_t outsize)
{
	static const char tab[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t need = (inlen + 2) / 3 * 4, o = 0;

	if (inlen > INT32_MAX / 2 || outsize < need + 1)
		return -1;
	for (size_t i = 0; i < inlen; i += 3) {
		unsigned v = (unsigned)in[i] << 16;
		size_t rest = inlen - i;

		if (rest > 1)
			v |= (unsigned)in[i + 1] << 8;
		if (rest > 2)
			v |= in[i + 2];
		out[o++] = tab[v >> 18 & 63];
		out[o++] = tab[v >> 12 & 63];
		out[o++] = rest > 1 ? tab[v >> 6 & 63] : '=';
		out[o++] = rest > 2 ? tab[v & 63] : '=';
	}
	out[o] = '\0';
	return (int)o;
}

/* auth_response_decode - one AUTH response: "*", "=", "" or base64. */
enum auth_status
auth_response_decode(const char *line, unsigned char *out, size_t outsize, size_t *outlen)
{
	int n;

	*outlen = 0;
	if (line == NULL)
		return AUTH_BAD_BASE64;
	if (strcmp(line, "*") == 0)
		return AUTH_CANCEL;
	if (strcmp(line, "=") == 0 || *line == '\0')
		return AUTH_OK;
	n = auth_b64_decode(line, out, outsize);
	if (n == -2)
		return AUTH_TOO_LONG;
	if (n < 0)
		return AUTH_BAD_BASE64;
	*outlen = (size_t)n;
	return AUTH_OK;
}

/* auth_namen_valid - 1..255 octets, none of them a control or a space. */
static bool
auth_namen_valid(const char *s, size_t len)
{
	if (len == 0 || len >= AUTH_USER_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		/* Names reach log lines: no way to forge a field or a line. */
		if (c <= ' ' || c == 0x7f)
			return false;
	}
	return true;
}

/* auth_user_valid - a user name ravelin accepts. */
bool
auth_user_valid(const char *user)
{
	return user != NULL && auth_namen_valid(user, strlen(user));
}

/* auth_copy - copy a field of known length into a caller's buffer. */
static bool
auth_copy(char *dst, size_t dstsize, const unsigned char *src, size_t len)
{
	if (dst == NULL || len >= dstsize)
		return false;
	memcpy(dst, src, len);
	dst[len] = '\0';
	return true;
}

/* auth_plain_split - check and copy out the three fields of a PLAIN message. */
static enum auth_status
auth_plain_split(const unsigned char *buf, size_t len, char *authzid, size_t authzid_size,
		 char *user, size_t user_size, char *pass, size_t pass_size)
{
	const unsigned char *n1, *n2, *p;
	size_t zlen, ulen, plen;

	if ((n1 = memchr(buf, '\0', len)) == NULL)
		return AUTH_BAD_FORMAT;
	if ((n2 = memchr(n1 + 1, '\0', len - (size_t)(n1 + 1 - buf))) == NULL)
		return AUTH_BAD_FORMAT;
	p = n2 + 1;
	plen = len - (size_t)(p - buf);
	if (memchr(p, '\0', plen) != NULL)
		return AUTH_BAD_FORMAT;
	zlen = (size_t)(n1 - buf);
	ulen = (size_t)(n2 - (n1 + 1));
	if (ulen == 0 || plen == 0)
		return AUTH_BAD_FORMAT;
	if (zlen >= AUTH_USER_MAX || ulen >= AUTH_USER_MAX || plen >= AUTH_PASS_MAX)
		return AUTH_TOO_LONG;
	if (!auth_namen_valid((const char *)n1 + 1, ulen))
		return AUTH_BAD_FORMAT;
	if (zlen > 0 && !auth_namen_valid((const char *)buf, zlen))
		return AUTH_BAD_FORMAT;
	/* Acting for someone else would need an authorisation policy. */
	if (zlen > 0 && (zlen != ulen || memcmp(buf, n1 + 1, ulen) != 0))
		return AUTH_AUTHZID;
	if (!auth_copy(user, user_size, n1 + 1, ulen) || !auth_copy(pass, pass_size, p, plen))
		return AUTH_TOO_LONG;
	if (authzid != NULL && !auth_copy(authzid, authzid_size, buf, zlen))
		return AUTH_TOO_LONG;
	return AUTH_OK;
}

/* auth_plain_decode - decode and check an RFC 4616 PLAIN message. */
enum auth_status
auth_plain_decode(const char *b64, char *authzid, size_t authzid_size, char *user,
		  size_t user_size, char *pass, size_t pass_size)
{
	unsigned char buf[AUTH_DECODED_MAX];
	enum auth_status st;
	size_t len;

	if (user_size > 0)
		user[0] = '\0';
	if (pass_size > 0)
		pass[0] = '\0';
	if (authzid != NULL && authzid_size > 0)
		authzid[0] = '\0';
	st = auth_response_decode(b64, buf, sizeof(buf), &len);
	if (st == AUTH_OK)
		st = auth_plain_split(buf, len, authzid, authzid_size, user, user_size, pass,
				      pass_size);
	/* The buffer held a password. */
	explicit_bzero(buf, sizeof(buf));
	if (st != AUTH_OK && pass_size > 0)
		explicit_bzero(pass, pass_size);
	return st;
}

/* auth_login_decode_user - LOGIN's user name response. */
enum auth_status
auth_login_decode_user(const char *b64, char *user, size_t user_size)
{
	unsigned char buf[AUTH_DECODED_MAX];
	enum auth_status st;
	size_t len;

	if (user_size > 0)
		user[0] = '\0';
	st = auth_response_decode(b64, buf, sizeof(buf), &len);
	if (st != AUTH_OK)
		return st;
	if (len >= AUTH_USER_MAX)
		return AUTH_TOO_LONG;
	if (memchr(buf, '\0', len) != NULL || !auth_namen_valid((const char *)buf, len))
		return AUTH_BAD_FORMAT;
	return auth_copy(user, user_size, buf, len) ? AUTH_OK : AUTH_TOO_LONG;
}

/* auth_login_decode_pass - LOGIN's password response. */
enum auth_status
auth_login_decode_pass(const char *b64, char *pass, size_t pass_size)
{
	unsigned char buf[AUTH_DECODED_MAX];
	enum auth_status st;
	size_t len;

	if (pass_size > 0)
		pass[0] = '\0';
	st = auth_response_decode(b64, buf, sizeof(buf), &len);
	if (st == AUTH_OK) {
		if (len >= AUTH_PASS_MAX)
			st = AUTH_TOO_LONG;
		else if (len == 0 || memchr(buf, '\0', len) != NULL)
			st = AUTH_BAD_FORMAT;
		else if (!auth_copy(pass, pass_size, buf, len))
			st = AUTH_TOO_LONG;
	}
	explicit_bzero(buf, sizeof(buf));
	return st;
}

/* auth_read_line - next line without its newline (CR stripped too);
 * 1 got one, 0 at EOF, -1 too long. */
static int
auth_read_line(FILE *f, char *buf, size_t size, unsigned *lineno)
{
	size_t len;

	if (fgets(buf, (int)size, f) == NULL)
		return 0;
	(*lineno)++;
	len = strlen(buf);
	if (len > 0 && buf[len - 1] == '\n')
		buf[--len] = '\0';
	else if (!feof(f))
		return -1;
	while (len > 0 && (buf[len - 1] == '\r' || buf[len - 1] == ' ' || buf[len - 1] == '\t'))
		buf[--len] = '\0';
	return 1;
}

/* auth_skip_ws - past spaces and tabs. */
static char *
auth_skip_ws(char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	return s;
}

/* auth_entry_cmp - qsort/bsearch order of entries of either file by key. */
static int
auth_entry_cmp(const void *a, const void *b)
{
	return strcmp(((const struct auth_entry *)a)->key, ((const struct auth_entry *)b)->key);
}

/*
 * One file format for auth_file_load(): the entry size, what a duplicate
 * key is called in the error, how one line becomes an entry, and how an
 * entry (possibly half-built by a failed parse) is released.
 */
struct auth_format {
	size_t size;
	const char *what;
	int (*parse)(char *line, void *entry, const char **why);
	void (*clear)(void *entry);
};

/* auth_entries_free - clear n entries of a format and free the array. */
static void
auth_entries_free(const struct auth_format *fmt, void *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		fmt->clear((char *)v + i * fmt->size);
	free(v);
}

/* auth_entries_unique - sort by key; 0, or -1 with the later duplicate's
 * FILE:LINE error in err. */
static int
auth_entries_unique(const struct auth_format *fmt, const char *path, void *v, size_t n,
		    char *err, size_t errlen)
{
	if (n > 1)
		qsort(v, n, fmt->size, auth_entry_cmp);
	for (size_t i = 1; i < n; i++) {
		const struct auth_entry *p = (const void *)((char *)v + (i - 1) * fmt->size);
		const struct auth_entry *q = (const void *)((char *)v + i * fmt->size);

		if (strcmp(p->key, q->key) == 0) {
			unsigned a = p->line, b = q->line;

			fmt_snprintf(err, errlen, "%s:%u: duplicate %s %s (first on line %u)", path,
				 a > b ? a : b, fmt->what, q->key, a < b ? a : b);
			return -1;
		}
	}
	return 0;
}

/*
 * auth_file_load - read a file of one entry per line (bounded lines, '#'
 * comments, blank lines) into a key-sorted array of fmt entries. Returns
 * 0 with *vp and *np set, or -1 with "FILE:LINE: message" (or "FILE:
 * errno") in err. Every entry in the array, even one whose parse failed
 * half-way, is counted, so fmt->clear() releases all of it.
 */
static int
auth_file_load(const struct auth_format *fmt, const char *path, void **vp, size_t *np,
	       char *err, size_t errlen)
{
	char buf[AUTH_LINE_MAX];
	unsigned lineno = 0;
	size_t n = 0, cap = 0;
	void *v = NULL;
	FILE *f;
	int r;

	if ((f = fopen(path, "re")) == NULL) {
		fmt_snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	while ((r = auth_read_line(f, buf, sizeof(buf), &lineno)) != 0) {
		const char *why = NULL;
		char *line = auth_skip_ws(buf);
		struct auth_entry *e;

		if (r < 0) {
			fmt_snprintf(err, errlen, "%s:%u: line too long", path, lineno);
			goto fail;
		}
		if (*line == '\0' || *line == '#')
			continue;
		if (n == cap) {
			void *nv;

			cap = cap ? cap * 2 : 16;
			if ((nv = reallocarray(v, cap, fmt->size)) == NULL) {
				fmt_snprintf(err, errlen, "%s:%u: out of memory", path, lineno);
				goto fail;
			}
			v = nv;
		}
		e = (void *)((char *)v + n * fmt->size);
		memset(e, 0, fmt->size);
		e->line = lineno;
		n++;
		if (fmt->parse(line, e, &why) < 0) {
			fmt_snprintf(err, errlen, "%s:%u: %s", path, lineno, why);
			goto fail;
		}
	}
	if (ferror(f)) {
		fmt_snprintf(err, errlen, "%s: %s", path, strerror(errno));
		goto fail;
	}
	fclose(f);
	f = NULL;
	if (auth_entries_unique(fmt, path, v, n, err, errlen) < 0)
		goto fail;
	*vp = v;
	*np = n;
	return 0;
fail:
	if (f != NULL)
		fclose(f);
	auth_entries_free(fmt, v, n);
	return -1;
}

/* auth_hash_usable - whether this libcrypt can verify the hash. */
static bool
auth_hash_usable(const char *hash)
{
	switch (crypt_checksalt(hash)) {
	case CRYPT_SALT_OK:
	case CRYPT_SALT_METHOD_LEGACY:
	case CRYPT_SALT_TOO_CHEAP:
		return true;
	default:
		return false;
	}
}

/* auth_users_parse - one "user:hash" line into an auth_user; 0 or -1 with
 * why set (what was allocated is left for auth_user_clear()). */
static int
auth_users_parse(char *line, void *entry, const char **why)
{
	struct auth_user *e = entry;
	char *colon, *hash, *end;

	if ((colon = strchr(line, ':')) == NULL) {
		*why = "expected user:hash";
		return -1;
	}
	*colon = '\0';
	hash = colon + 1;
	if ((end = strchr(hash, ':')) != NULL)
		*end = '\0'; /* shadow-style trailing fields */
	if (!auth_user_valid(line)) {
		*why = "bad user name (1..255 characters, no spaces or controls)";
		return -1;
	}
	if (*hash == '\0') {
		*why = "empty password hash (use ! to lock an account)";
		return -1;
	}
	e->locked = *hash == '!' || *hash == '*';
	if (!e->locked && !auth_hash_usable(hash)) {
		*why = "password hash method unknown to or disabled in libcrypt";
		return -1;
	}
	if ((e->e.key = strdup(line)) == NULL || (e->hash = strdup(hash)) == NULL) {
		*why = "out of memory";
		return -1;
	}
	return 0;
}

/* auth_user_clear - release one auth_user's strings. */
static void
auth_user_clear(void *entry)
{
	struct auth_user *e = entry;

	free(e->e.key);
	if (e->hash != NULL) {
		/* Hashes are secrets too (offline cracking). */
		explicit_bzero(e->hash, strlen(e->hash));
		free(e->hash);
	}
}

static const struct auth_format auth_users_format = {
	.size = sizeof(struct auth_user),
	.what = "user",
	.parse = auth_users_parse,
	.clear = auth_user_clear,
};

/* auth_users_load - read the auth_users file. */
struct auth_users *
auth_users_load(const char *path, char *err, size_t errlen)
{
	struct auth_users *u;
	unsigned first = 0;
	void *v;
	size_t n;

	if (auth_file_load(&auth_users_format, path, &v, &n, err, errlen) < 0)
		return NULL;
	if ((u = calloc(1, sizeof(*u))) == NULL) {
		auth_entries_free(&auth_users_format, v, n);
		fmt_snprintf(err, errlen, "%s: out of memory", path);
		return NULL;
	}
	atomic_init(&u->refs, 1);
	u->v = v;
	u->n = n;
	/* The first usable hash in file order sets the cost for unknown users. */
	for (size_t i = 0; i < u->n; i++) {
		if (!u->v[i].locked && (u->dummy == NULL || u->v[i].e.line < first)) {
			u->dummy = u->v[i].hash;
			first = u->v[i].e.line;
		}
	}
	return u;
}

/* auth_users_ref - one more reference. */
struct auth_users *
auth_users_ref(struct auth_users *u)
{
	if (u != NULL)
		atomic_fetch_add(&u->refs, 1);
	return u;
}

/* auth_users_free - drop a reference; frees the table at zero. */
void
auth_users_free(struct auth_users *u)
{
	if (u == NULL || atomic_fetch_sub(&u->refs, 1) != 1)
		return;
	auth_entries_free(&auth_users_format, u->v, u->n);
	free(u);
}

/* auth_users_count - number of users loaded. */
size_t
auth_users_count(const struct auth_users *u)
{
	return u ? u->n : 0;
}

/* auth_users_find - the entry for user, or NULL. */
static const struct auth_user *
auth_users_find(const struct auth_users *u, const char *user)
{
	struct auth_user key = {.e.key = (char *)user};

	if (u == NULL || user == NULL || u->n == 0)
		return NULL;
	return bsearch(&key, u->v, u->n, sizeof(*u->v), auth_entry_cmp);
}

/* auth_users_exists - whether user is listed. */
bool
auth_users_exists(const struct auth_users *u, const char *user)
{
	return auth_users_find(u, user) != NULL;
}

/* auth_ct_streq - compare two strings in time that depends only on lengths. */
static bool
auth_ct_streq(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	volatile unsigned char d = la != lb;

	for (size_t i = 0; i < lb; i++)
		d |= (unsigned char)((i < la ? a[i] : 0) ^ b[i]);
	return d == 0;
}

/* auth_users_verify - check user's password with crypt(3). Blocking. */
int
auth_users_verify(const struct auth_users *u, const char *user, const char *pass)
{
	const struct auth_user *e = auth_users_find(u, user);
	const char *setting = e && !e->locked ? e->hash : u ? u->dummy : NULL;
	struct crypt_data *cd;
	const char *out;
	int rc = 0;

	if (pass == NULL || setting == NULL)
		return 0;
	/* struct crypt_data is 32 KiB: too big for a pool thread's stack. */
	if ((cd = calloc(1, sizeof(*cd))) == NULL)
		return -1;
	errno = 0;
	out = crypt_rn(pass, setting, cd, sizeof(*cd));
	if (out == NULL) {
		/* An unusable stored hash simply never matches. */
		rc = errno == ENOMEM ? -1 : 0;
	} else if (auth_ct_streq(out, setting) && e != NULL && !e->locked) {
		rc = 1;
	}
	explicit_bzero(cd, sizeof(*cd));
	free(cd);
	return rc;
}

/* auth_lower - ASCII lowercase in place. */
static void
auth_lower(char *s)
{
	for (; *s; s++)
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s + 32);
}

/* auth_key_valid - "local@domain" or "@domain", no spaces. */
static bool
auth_key_valid(const char *k)
{
	const char *at = strrchr(k, '@');

	if (at == NULL || at[1] == '\0' || strchr(at + 1, '.') == at + 1)
		return false;
	return at != k || strchr(k + 1, '@') == NULL;
}

/* auth_senders_parse - one "key user[,user...]" line into an auth_sender
 * (what was allocated is left for auth_sender_clear()). */
static int
auth_senders_parse(char *line, void *entry, const char **why)
{
	struct auth_sender *e = entry;
	char *key = line, *rest, *tok, *save = NULL;

	rest = line + strcspn(line, " \t");
	if (*rest != '\0')
		*rest++ = '\0';
	if (!auth_key_valid(key)) {
		*why = "expected an address or @domain";
		return -1;
	}
	if ((e->e.key = strdup(key)) == NULL)
		goto nomem;
	auth_lower(e->e.key);
	for (tok = strtok_r(rest, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save)) {
		char **nu;

		if (*tok == '#')
			break; /* a trailing comment */
		if (!auth_user_valid(tok)) {
			*why = "bad user name";
			return -1;
		}
		if ((nu = reallocarray(e->users, e->nusers + 1, sizeof(*nu))) == NULL)
			goto nomem;
		e->users = nu;
		if ((e->users[e->nusers] = strdup(tok)) == NULL)
			goto nomem;
		e->nusers++;
	}
	if (e->nusers == 0) {
		*why = "no user for this address";
		return -1;
	}
	return 0;
nomem:
	*why = "out of memory";
	return -1;
}

/* auth_sender_clear - release one auth_sender's strings. */
static void
auth_sender_clear(void *entry)
{
	struct auth_sender *e = entry;

	for (size_t j = 0; j < e->nusers; j++)
		free(e->users[j]);
	free(e->users);
	free(e->e.key);
}

static const struct auth_format auth_senders_format = {
	.size = sizeof(struct auth_sender),
	.what = "entry",
	.parse = auth_senders_parse,
	.clear = auth_sender_clear,
};

/* auth_senders_load - read the sender_logins file. */
struct auth_senders *
auth_senders_load(const char *path, char *err, size_t errlen)
{
	struct auth_senders *s;
	void *v;
	size_t n;

	if (auth_file_load(&auth_senders_format, path, &v, &n, err, errlen) < 0)
		return NULL;
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		auth_entries_free(&auth_senders_format, v, n);
		fmt_snprintf(err, errlen, "%s: out of memory", path);
		return NULL;
	}
	atomic_init(&s->refs, 1);
	s->v = v;
	s->n = n;
	return s;
}

/* auth_senders_ref - one more reference. */
struct auth_senders *
auth_senders_ref(struct auth_senders *s)
{
	if (s != NULL)
		atomic_fetch_add(&s->refs, 1);
	return s;
}

/* auth_senders_free - drop a reference; frees the table at zero. */
void
auth_senders_free(struct auth_senders *s)
{
	if (s == NULL || atomic_fetch_sub(&s->refs, 1) != 1)
		return;
	auth_entries_free(&auth_senders_format, s->v, s->n);
	free(s);
}

/* auth_senders_count - number of entries. */
size_t
auth_senders_count(const struct auth_senders *s)
{
	return s ? s->n : 0;
}

/* auth_senders_find - the entry for a lowercased key, or NULL. */
static const struct auth_sender *
auth_senders_find(const struct auth_senders *s, const char *key)
{
	struct auth_sender k = {.e.key = (char *)key};

	if (s->n == 0)
		return NULL;
	return bsearch(&k, s->v, s->n, sizeof(*s->v), auth_entry_cmp);
}

/* auth_sender_lists - whether the entry names the user. */
static bool
auth_sender_lists(const struct auth_sender *e, const char *user)
{
	for (size_t i = 0; i < e->nusers; i++)
		if (strcmp(e->users[i], user) == 0)
			return true;
	return false;
}

/* auth_sender_owned - may user send as address (DESIGN.md section 4). */
bool
auth_sender_owned(const struct auth_senders *s, const struct lists_strset *local_domains,
		  const char *user, const char *address)
{
	char addr[AUTH_ADDR_MAX];
	const struct auth_sender *e;
	const char *at;
	size_t len, ulen;

	if (address == NULL || user == NULL || *user == '\0')
		return false;
	if (*address == '\0')
		return true; /* the null sender: see auth.h */
	len = strlen(address);
	/* "@domain" is a sender_logins key, never an address. */
	if (len >= sizeof(addr) || *address == '@')
		return false;
	if (s != NULL) {
		memcpy(addr, address, len + 1);
		auth_lower(addr);
		if ((e = auth_senders_find(s, addr)) == NULL &&
		    (at = strrchr(addr, '@')) != NULL && at != addr)
			e = auth_senders_find(s, at);
		return e != NULL && auth_sender_lists(e, user);
	}
	if (strcasecmp(address, user) == 0)
		return true;
	if ((at = strrchr(address, '@')) == NULL)
		return false;
	ulen = strlen(user);
	return (size_t)(at - address) == ulen && strncasecmp(address, user, ulen) == 0 &&
	       local_domains != NULL && lists_strset_match_domain(local_domains, at + 1);
}
