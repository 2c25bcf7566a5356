/*
 * test_auth.c - SMTP AUTH decoding, the auth_users file and password
 * verification (yescrypt, SHA-512, SHA-256, bcrypt), and sender ownership.
 */

/* System. */
#include <crypt.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Libraries. */
#include <cmocka.h>

/* Project. */
#include "auth.h"
#include "lists.h"

/* A byte string with embedded NULs: pointer and length. */
#define RAW(s) s, sizeof(s) - 1

static char dir[] = "/tmp/ravelin-test-auth-XXXXXX";

/* write_file - a temporary file with this content; returns its path. */
static const char *
write_file(const char *name, const char *content)
{
	static char path[4][256];
	static int next;
	char *p = path[next++ % 4];
	FILE *f;

	snprintf(p, sizeof(path[0]), "%s/%s", dir, name);
	f = fopen(p, "w");
	assert_non_null(f);
	fputs(content, f);
	fclose(f);
	return p;
}

/* setup - a temporary directory for the files. */
static int
setup(void **state)
{
	return mkdtemp(dir) ? 0 : -1;
}

/* teardown - remove the temporary directory and what is in it. */
static int
teardown(void **state)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

struct b64_case {
	const char *in;
	const char *out; /* expected bytes (NULL when -1) */
	int len;	 /* expected result */
	size_t outsize;
};

/* base64_decode_strict - canonical base64 only. */
static void
base64_decode_strict(void **state)
{
	static const struct b64_case cases[] = {
		{"", "", 0, 16},
		{"Zg==", "f", 1, 16},
		{"Zm8=", "fo", 2, 16},
		{"Zm9v", "foo", 3, 16},
		{"Zm9vYg==", "foob", 4, 16},
		{"Zm9vYmFy", "foobar", 6, 16},
		{"AAEC/+7d", "\x00\x01\x02\xff\xee\xdd", 6, 16},
		{"Zm9vYmFy", "foobar", 6, 6},
		{"Zm9vYmFy", NULL, -1, 5},  /* does not fit */
		{"Zh==", NULL, -1, 16},	    /* non-zero unused bits */
		{"Zm9=", NULL, -1, 16},	    /* non-zero unused bits */
		{"Zg=", NULL, -1, 16},	    /* length not a multiple of 4 */
		{"Zg", NULL, -1, 16},	    /* padding missing */
		{"Zg==Zg==", NULL, -1, 16}, /* padding in the middle */
		{"Z===", NULL, -1, 16},
		{"====", NULL, -1, 16},
		{"=", NULL, -1, 16},
		{"Zg=A", NULL, -1, 16},
		{"Zm9v\r\n", NULL, -1, 16},
		{" Zm9v", NULL, -1, 16},
		{"Zm9 ", NULL, -1, 16},
		{"Zm9v!A==", NULL, -1, 16},
		{"Zm9v-_==", NULL, -1, 16}, /* base64url alphabet */
		{"*", NULL, -1, 16},
	};
	unsigned char out[16];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct b64_case *c = &cases[i];
		int n = auth_base64_decode(c->in, out, c->outsize);

		if (n != c->len)
			fail_msg("decode \"%s\" (outsize %zu): %d, want %d", c->in, c->outsize, n,
				 c->len);
		if (n > 0 && memcmp(out, c->out, (size_t)n) != 0)
			fail_msg("decode \"%s\": wrong bytes", c->in);
	}
	assert_int_equal(auth_base64_decode(NULL, out, sizeof(out)), -1);
}

/* base64_encode_round_trip - encode matches the RFC 4648 vectors and
 * decodes back for every length. */
static void
base64_encode_round_trip(void **state)
{
	static const char *vectors[][2] = {{"", ""},	     {"f", "Zg=="},
					   {"fo", "Zm8="},   {"foo", "Zm9v"},
					   {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="},
					   {"foobar", "Zm9vYmFy"}};
	unsigned char in[64], back[64];
	char out[128];

	for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
		int n = auth_base64_encode((const unsigned char *)vectors[i][0],
					   strlen(vectors[i][0]), out, sizeof(out));

		if (n != (int)strlen(vectors[i][1]) || strcmp(out, vectors[i][1]) != 0)
			fail_msg("encode \"%s\": \"%s\"", vectors[i][0], out);
	}
	for (size_t len = 0; len <= sizeof(in); len++) {
		for (size_t j = 0; j < len; j++)
			in[j] = (unsigned char)(j * 37 + len);
		int n = auth_base64_encode(in, len, out, sizeof(out));

		assert_int_equal(n, (int)((len + 2) / 3 * 4));
		if (auth_base64_decode(out, back, sizeof(back)) != (int)len ||
		    memcmp(in, back, len) != 0)
			fail_msg("round trip of %zu bytes failed", len);
	}
	/* Exactly enough room, then one byte short (the NUL counts). */
	assert_int_equal(auth_base64_encode((const unsigned char *)"foo", 3, out, 5), 4);
	assert_int_equal(auth_base64_encode((const unsigned char *)"foo", 3, out, 4), -1);
}

struct resp_case {
	const char *line;
	enum auth_status st;
	size_t len;
	size_t outsize;
};

/* response_decode - cancel, empty initial response, errors. */
static void
response_decode(void **state)
{
	static const struct resp_case cases[] = {
		{"*", AUTH_CANCEL, 0, 16},
		{"=", AUTH_OK, 0, 16},
		{"", AUTH_OK, 0, 16},
		{"Zm9v", AUTH_OK, 3, 16},
		{"Zm9vYmFy", AUTH_TOO_LONG, 0, 4},
		{"Zm9", AUTH_BAD_BASE64, 0, 16},
		{"**", AUTH_BAD_BASE64, 0, 16},
		{"==", AUTH_BAD_BASE64, 0, 16},
		{" *", AUTH_BAD_BASE64, 0, 16},
	};
	unsigned char out[16];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t len = 99;
		enum auth_status st = auth_response_decode(cases[i].line, out, cases[i].outsize,
							   &len);

		if (st != cases[i].st || len != cases[i].len)
			fail_msg("response \"%s\": %s/%zu, want %s/%zu", cases[i].line,
				 auth_status_str(st), len, auth_status_str(cases[i].st),
				 cases[i].len);
	}
}

struct plain_case {
	const char *name;
	const char *raw; /* decoded message, encoded by the test; NULL: use b64 */
	size_t rawlen;
	const char *b64;
	enum auth_status st;
	const char *user, *authzid, *pass;
	size_t user_size; /* 0 = AUTH_USER_MAX */
};

/* plain_decode - the RFC 4616 message and its edge cases. */
static void
plain_decode(void **state)
{
	static char long_user[300], long_pass[600], ok_pass[600], huge[1500];
	const struct plain_case cases[] = {
		{"no authzid", RAW("\0bob\0secret"), NULL, AUTH_OK, "bob", "", "secret", 0},
		{"authzid equal to authcid", RAW("bob\0bob\0secret"), NULL, AUTH_OK, "bob", "bob",
		 "secret", 0},
		{"authzid of someone else", RAW("alice\0bob\0secret"), NULL, AUTH_AUTHZID, "", "",
		 "", 0},
		{"authzid differing in case", RAW("Bob\0bob\0secret"), NULL, AUTH_AUTHZID, "", "",
		 "", 0},
		{"address as user, spaces in password",
		 RAW("\0bob@example.org\0pass with spaces \xc3\xbc"), NULL, AUTH_OK,
		 "bob@example.org", "", "pass with spaces \xc3\xbc", 0},
		{"empty user", RAW("\0\0secret"), NULL, AUTH_BAD_FORMAT, "", "", "", 0},
		{"empty password", RAW("\0bob\0"), NULL, AUTH_BAD_FORMAT, "", "", "", 0},
		{"one NUL only", RAW("bob\0secret"), NULL, AUTH_BAD_FORMAT, "", "", "", 0},
		{"no NUL", RAW("bobsecret"), NULL, AUTH_BAD_FORMAT, "", "", "", 0},
		{"three NULs", RAW("\0bob\0sec\0ret"), NULL, AUTH_BAD_FORMAT, "", "", "", 0},
		{"trailing NUL", RAW("\0bob\0secret\0"), NULL, AUTH_BAD_FORMAT, "", "", "", 0},
		{"space in user", RAW("\0bob smith\0x"), NULL, AUTH_BAD_FORMAT, "", "", "", 0},
		{"CRLF in user (log injection)", RAW("\0bob\r\nx\0x"), NULL, AUTH_BAD_FORMAT, "",
		 "", "", 0},
		{"control in authzid", RAW("b\x01\0bob\0x"), NULL, AUTH_BAD_FORMAT, "", "", "", 0},
		{"user of 256 octets", long_user, 0, NULL, AUTH_TOO_LONG, "", "", "", 0},
		{"password of 512 octets", long_pass, 0, NULL, AUTH_TOO_LONG, "", "", "", 0},
		{"password of 511 octets", ok_pass, 0, NULL, AUTH_OK, "bob", "", ok_pass + 5, 0},
		{"user buffer too small", RAW("\0bob\0secret"), NULL, AUTH_TOO_LONG, "", "", "", 3},
		{"cancel", NULL, 0, "*", AUTH_CANCEL, "", "", "", 0},
		{"empty initial response", NULL, 0, "=", AUTH_BAD_FORMAT, "", "", "", 0},
		{"padding missing", NULL, 0, "AGJvYgBzZWNyZXQ", AUTH_BAD_BASE64, "", "", "", 0},
		{"space inside base64", NULL, 0, "AGJvYgBz ZWNyZXQ=", AUTH_BAD_BASE64, "", "", "",
		 0},
		{"valid literal", NULL, 0, "AGJvYgBzZWNyZXQ=", AUTH_OK, "bob", "", "secret", 0},
		{"decoded message over the bound", NULL, 0, huge, AUTH_TOO_LONG, "", "", "", 0},
	};
	size_t long_user_len, long_pass_len, ok_pass_len;

	/* "\0" + 256 x "u" + "\0p" */
	long_user[0] = '\0';
	memset(long_user + 1, 'u', 256);
	long_user[257] = '\0';
	long_user[258] = 'p';
	long_user_len = 259;
	/* "\0bob\0" + 512 x "p", and 511 x "p" */
	memcpy(long_pass, "\0bob\0", 5);
	memset(long_pass + 5, 'p', 512);
	long_pass_len = 517;
	memcpy(ok_pass, "\0bob\0", 5);
	memset(ok_pass + 5, 'p', 511);
	ok_pass[516] = '\0';
	ok_pass_len = 516;
	/* 1400 base64 characters decode to 1050 octets > AUTH_DECODED_MAX. */
	memset(huge, 'A', 1400);
	huge[1400] = '\0';

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct plain_case *c = &cases[i];
		char b64[1600], user[AUTH_USER_MAX], authzid[AUTH_USER_MAX], pass[AUTH_PASS_MAX];
		const char *in = c->b64;
		size_t rawlen = c->rawlen;
		enum auth_status st;

		if (c->raw == long_user)
			rawlen = long_user_len;
		else if (c->raw == long_pass)
			rawlen = long_pass_len;
		else if (c->raw == ok_pass)
			rawlen = ok_pass_len;
		if (c->raw != NULL) {
			assert_true(auth_base64_encode((const unsigned char *)c->raw, rawlen, b64,
						       sizeof(b64)) >= 0);
			in = b64;
		}
		st = auth_plain_decode(in, authzid, sizeof(authzid), user,
				       c->user_size ? c->user_size : sizeof(user), pass,
				       sizeof(pass));
		if (st != c->st)
			fail_msg("%s: %s, want %s", c->name, auth_status_str(st),
				 auth_status_str(c->st));
		if (st == AUTH_OK && (strcmp(user, c->user) != 0 ||
				      strcmp(authzid, c->authzid) != 0 ||
				      strcmp(pass, c->pass) != 0))
			fail_msg("%s: got user \"%s\" authzid \"%s\"", c->name, user, authzid);
		if (st != AUTH_OK && pass[0] != '\0')
			fail_msg("%s: password left in the buffer after a failure", c->name);
	}
	/* The authzid is optional for the caller. */
	{
		char user[AUTH_USER_MAX], pass[AUTH_PASS_MAX];

		assert_int_equal(auth_plain_decode("Ym9iAGJvYgBzZWNyZXQ=", NULL, 0, user,
						   sizeof(user), pass, sizeof(pass)),
				 AUTH_OK);
		assert_string_equal(user, "bob");
	}
}

struct login_case {
	const char *name;
	bool is_pass;
	const char *raw; /* encoded by the test; NULL: use b64 */
	size_t rawlen;
	const char *b64;
	enum auth_status st;
	const char *out;
};

/* login_decode - the LOGIN mechanism's two responses. */
static void
login_decode(void **state)
{
	static const struct login_case cases[] = {
		{"user", false, RAW("bob"), NULL, AUTH_OK, "bob"},
		{"user as address", false, RAW("bob@example.org"), NULL, AUTH_OK,
		 "bob@example.org"},
		{"empty user", false, NULL, 0, "", AUTH_BAD_FORMAT, ""},
		{"empty user with =", false, NULL, 0, "=", AUTH_BAD_FORMAT, ""},
		{"user with NUL", false, RAW("bo\0b"), NULL, AUTH_BAD_FORMAT, ""},
		{"user with LF", false, RAW("bob\nuser=x"), NULL, AUTH_BAD_FORMAT, ""},
		{"user cancel", false, NULL, 0, "*", AUTH_CANCEL, ""},
		{"user bad base64", false, NULL, 0, "Ym9i\r", AUTH_BAD_BASE64, ""},
		{"password", true, RAW("s3cret pass"), NULL, AUTH_OK, "s3cret pass"},
		{"empty password", true, NULL, 0, "", AUTH_BAD_FORMAT, ""},
		{"password with NUL", true, RAW("s3c\0ret"), NULL, AUTH_BAD_FORMAT, ""},
		{"password cancel", true, NULL, 0, "*", AUTH_CANCEL, ""},
		{"password bad base64", true, NULL, 0, "c2VjcmV0===", AUTH_BAD_BASE64, ""},
	};
	unsigned char ch[32];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct login_case *c = &cases[i];
		char b64[256], out[AUTH_PASS_MAX];
		const char *in = c->b64;
		enum auth_status st;

		if (c->raw) {
			auth_base64_encode((const unsigned char *)c->raw, c->rawlen, b64,
					   sizeof(b64));
			in = b64;
		}
		st = c->is_pass ? auth_login_decode_pass(in, out, sizeof(out))
				: auth_login_decode_user(in, out, AUTH_USER_MAX);
		if (st != c->st)
			fail_msg("%s: %s, want %s", c->name, auth_status_str(st),
				 auth_status_str(c->st));
		if (st == AUTH_OK && strcmp(out, c->out) != 0)
			fail_msg("%s: got \"%s\"", c->name, out);
	}
	/* The challenges say what they should. */
	int n = auth_base64_decode(AUTH_LOGIN_CHALLENGE_USER, ch, sizeof(ch));
	assert_int_equal(n, 9);
	assert_memory_equal(ch, "Username:", 9);
	n = auth_base64_decode(AUTH_LOGIN_CHALLENGE_PASS, ch, sizeof(ch));
	assert_int_equal(n, 9);
	assert_memory_equal(ch, "Password:", 9);
}

/* Hashes of "correct horse" made with mkpasswd(1) (package whois). */
#define H_YESCRYPT "$y$j9T$nXZbHzCIoV7VfV6DQAg1J1$A3KFOWG3uo7ib3fAFT13XhdN0x/D.rm1NOG00t0xWe7"
#define H_SHA512                                                                          \
	"$6$wReSXCRYbEPk2EfF$mWAocw.RTcMPa62zHR3X/qrUaGXZ/FmVjWU9ZokPg/Qr2qvA4oWINeUund/" \
	"fUxHlCskcFsU2EjSiLYKRT5u7H."
#define H_BCRYPT "$2b$05$iN/QHo7SW3bVFX05xZIAuOQAiG8muDQPTUG5qV.8e3vSHUzY2QDU6"
#define H_SHA256 "$5$z5YDHz9qISYbvYH1$Cac.RTYZ2LylBUwhYIdY0HYJPjppe6LTpn1IIng/9jD"

/* make_hash - hash pass with a fresh salt for this method prefix. */
static void
make_hash(const char *prefix, const char *pass, char *out, size_t outsize)
{
	char salt[CRYPT_GENSALT_OUTPUT_SIZE];
	struct crypt_data cd;
	const char *h;

	memset(&cd, 0, sizeof(cd));
	assert_non_null(crypt_gensalt_rn(prefix, 0, NULL, 0, salt, sizeof(salt)));
	h = crypt_rn(pass, salt, &cd, sizeof(cd));
	assert_non_null(h);
	snprintf(out, outsize, "%s", h);
}

struct verify_case {
	const char *user, *pass;
	int want;
};

/* now_ms - a monotonic clock in milliseconds. */
static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* users_verify - every hash scheme, right and wrong, unknown and locked. */
static void
users_verify(void **state)
{
	static const struct verify_case cases[] = {
		{"yes", "correct horse", 1},
		{"yes", "correct horse ", 0},
		{"yes", "Correct horse", 0},
		{"sha512", "correct horse", 1},
		{"sha512", "wrong", 0},
		{"bcrypt", "correct horse", 1},
		{"bcrypt", "correct hors", 0},
		{"sha256", "correct horse", 1},
		{"sha256", "", 0},
		{"gen-y", "s3cret", 1},
		{"gen-y", "s3creT", 0},
		{"gen-6", "s3cret", 1},
		{"gen-6", "x", 0},
		{"gen-2b", "s3cret", 1},
		{"gen-2b", "s3cret\n", 0},
		{"locked", "correct horse", 0},
		{"starred", "correct horse", 0},
		{"nobody", "correct horse", 0},
		{"YES", "correct horse", 0}, /* user names are exact */
		{"", "correct horse", 0},
	};
	char gy[256], g6[256], g2b[256], content[4096], err[256];
	struct auth_users *u;
	const char *path;

	make_hash("$y$", "s3cret", gy, sizeof(gy));
	make_hash("$6$", "s3cret", g6, sizeof(g6));
	make_hash("$2b$", "s3cret", g2b, sizeof(g2b));
	snprintf(content, sizeof(content),
		 "# users of ravelin\n"
		 "yes:" H_YESCRYPT "\n"
		 "\n"
		 "   # indented comment\n"
		 "sha512:" H_SHA512 "\r\n"
		 "bcrypt:" H_BCRYPT "\n"
		 "sha256:" H_SHA256 ":1000:1000::/home/x:/bin/sh\n"
		 "gen-y:%s\ngen-6:%s\ngen-2b:%s   \n"
		 "locked:!" H_YESCRYPT "\n"
		 "starred:*\n",
		 gy, g6, g2b);
	path = write_file("users", content);
	u = auth_users_load(path, err, sizeof(err));
	if (u == NULL)
		fail_msg("load: %s", err);
	assert_int_equal(auth_users_count(u), 9);
	assert_true(auth_users_exists(u, "gen-2b"));
	assert_false(auth_users_exists(u, "nobody"));
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int r = auth_users_verify(u, cases[i].user, cases[i].pass);

		if (r != cases[i].want)
			fail_msg("verify %s/\"%s\": %d, want %d", cases[i].user, cases[i].pass, r,
				 cases[i].want);
	}
	assert_int_equal(auth_users_verify(u, "yes", NULL), 0);
	assert_int_equal(auth_users_verify(NULL, "yes", "correct horse"), 0);

	/*
	 * Unknown users cost a crypt() with the first user's (yescrypt)
	 * settings: not a free, fast "no". Compared loosely so a busy
	 * machine does not make this flaky: without the dummy hash the
	 * unknown user takes microseconds, yescrypt takes milliseconds.
	 */
	double t0 = now_ms();
	for (int i = 0; i < 5; i++)
		auth_users_verify(u, "yes", "wrong");
	double known = now_ms() - t0;
	t0 = now_ms();
	for (int i = 0; i < 5; i++)
		auth_users_verify(u, "nobody", "wrong");
	double unknown = now_ms() - t0;
	t0 = now_ms();
	for (int i = 0; i < 5; i++)
		auth_users_verify(u, "locked", "wrong");
	double locked = now_ms() - t0;
	print_message("5 verifications: known %.1f ms, unknown %.1f ms, locked %.1f ms\n", known,
		      unknown, locked);
	/* Absolute, not relative: load on the machine inflates any one
	 * measurement, never shrinks a crypt() to microseconds. */
	if (unknown / 5 < 1.0 || locked / 5 < 1.0)
		fail_msg("unknown or locked users are answered faster than known ones");

	/* A reference outlives the loader's free (reload during a check). */
	assert_ptr_equal(auth_users_ref(u), u);
	auth_users_free(u);
	assert_int_equal(auth_users_verify(u, "gen-y", "s3cret"), 1);
	auth_users_free(u);
	auth_users_free(NULL);

	/* An empty file loads; nobody can log in. */
	u = auth_users_load(write_file("empty", "# nobody yet\n"), err, sizeof(err));
	assert_non_null(u);
	assert_int_equal(auth_users_count(u), 0);
	assert_int_equal(auth_users_verify(u, "yes", "correct horse"), 0);
	auth_users_free(u);
}

struct load_case {
	const char *name;
	const char *content;
	const char *want; /* expected error after "PATH" */
};

/* users_load_errors - FILE:LINE messages for every kind of bad line. */
static void
users_load_errors(void **state)
{
	static char toolong[9000];
	const struct load_case cases[] = {
		{"no colon", "bob " H_SHA512 "\n", ":1: expected user:hash"},
		{"bad user", "# c\nbob smith:" H_SHA512 "\n", ":2: bad user name"},
		{"empty hash", "\n\nbob:\n", ":3: empty password hash"},
		{"unknown method", "bob:$zz$abc$def\n", ":1: password hash method"},
		{"duplicate user", "bob:" H_SHA512 "\nalice:" H_BCRYPT "\nbob:" H_BCRYPT "\n",
		 ":3: duplicate user bob (first on line 1)"},
		{"line too long", toolong, ":2: line too long"},
	};
	char err[512];

	snprintf(toolong, sizeof(toolong), "bob:%s\n", H_SHA512);
	memset(toolong + strlen(toolong), 'x', 8500);
	toolong[sizeof(toolong) - 2] = '\n';
	toolong[sizeof(toolong) - 1] = '\0';
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *path = write_file("bad-users", cases[i].content);
		char want[600];

		snprintf(want, sizeof(want), "%s%s", path, cases[i].want);
		err[0] = '\0';
		if (auth_users_load(path, err, sizeof(err)) != NULL)
			fail_msg("%s: loaded", cases[i].name);
		if (strncmp(err, want, strlen(want)) != 0)
			fail_msg("%s: \"%s\", want \"%s\"", cases[i].name, err, want);
	}
	assert_null(auth_users_load("/nonexistent/ravelin-users", err, sizeof(err)));
	assert_string_equal(err, "/nonexistent/ravelin-users: No such file or directory");
}

struct owned_case {
	bool with_file;
	const char *user, *address;
	bool want;
};

/* sender_ownership - with and without sender_logins. */
static void
sender_ownership(void **state)
{
	static const struct owned_case cases[] = {
		/* Built-in rule: local part = user in local_domains, or address = user. */
		{false, "bob", "bob@example.org", true},
		{false, "bob", "BOB@Example.ORG", true},
		{false, "Bob", "bob@example.org", true},
		{false, "bob", "alice@example.org", false},
		{false, "bob", "bobby@example.org", false},
		{false, "bob", "bo@example.org", false},
		{false, "bob", "bob@other.test", false},
		{false, "bob", "bob@example.org.evil.test", false},
		{false, "bob", "bob@x.sub.example.net", true},
		{false, "bob", "bob@sub.example.net", false}, /* ".sub..." is subdomains only */
		{false, "bob@other.test", "bob@other.test", true},
		{false, "bob@other.test", "BOB@OTHER.test", true},
		{false, "bob@other.test", "bob@example.org", false},
		{false, "bob", "bob", true},
		{false, "bob", "", true}, /* null sender */
		{false, "bob", "@example.org", false},
		{false, "", "bob@example.org", false},
		/* sender_logins: exact entry, else @domain entry, else nobody. */
		{true, "bob", "info@example.org", true},
		{true, "alice", "info@example.org", true},
		{true, "carol", "info@example.org", false},
		{true, "Bob", "info@example.org", false}, /* user names are exact */
		{true, "bob", "INFO@Example.Org", true},
		{true, "carol", "anyone@example.net", true},
		{true, "dave", "anyone@EXAMPLE.NET", true},
		{true, "erin", "x@example.net", true},
		{true, "bob", "x@example.net", false},
		{true, "frank", "ceo@example.net", true},
		{true, "carol", "ceo@example.net", false}, /* exact entry wins */
		{true, "bob", "sales@example.org", true},
		{true, "bob", "bob@example.org", false}, /* not listed: nobody's */
		{true, "bob", "", true},
		{true, "carol", "@example.net", false},
		{true, "carol", "x@sub.example.net", false},
	};
	const char *path = write_file("senders", "# sender_logins\n"
						 "info@example.org    bob, alice\n"
						 "@example.net\tcarol dave,erin\n"
						 "\n"
						 "ceo@example.net     frank\n"
						 "Sales@Example.ORG bob   # a trailing comment\n");
	struct lists_strset *local = lists_strset_new();
	struct auth_senders *s;
	char err[256];

	assert_non_null(local);
	assert_int_equal(lists_strset_add(local, "example.org"), 0);
	assert_int_equal(lists_strset_add(local, ".sub.example.net"), 0);
	s = auth_senders_load(path, err, sizeof(err));
	if (s == NULL)
		fail_msg("load: %s", err);
	assert_int_equal(auth_senders_count(s), 4);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct owned_case *c = &cases[i];
		bool got = auth_sender_owned(c->with_file ? s : NULL, local, c->user, c->address);

		if (got != c->want)
			fail_msg("%s: user \"%s\" address \"%s\": %d, want %d",
				 c->with_file ? "sender_logins" : "built-in", c->user, c->address,
				 got, c->want);
	}
	/* No local_domains: only the address equal to the user name. */
	assert_false(auth_sender_owned(NULL, NULL, "bob", "bob@example.org"));
	assert_true(auth_sender_owned(NULL, NULL, "bob@example.org", "bob@example.org"));
	assert_ptr_equal(auth_senders_ref(s), s);
	auth_senders_free(s);
	auth_senders_free(s);
	auth_senders_free(NULL);
	lists_strset_free(local);
}

/* senders_load_errors - FILE:LINE messages. */
static void
senders_load_errors(void **state)
{
	static const struct load_case cases[] = {
		{"no users", "info@example.org\n", ":1: no user for this address"},
		{"only commas", "info@example.org , ,\n", ":1: no user for this address"},
		{"no @", "\nexample.org bob\n", ":2: expected an address or @domain"},
		{"lone @", "@ bob\n", ":1: expected an address or @domain"},
		{"@.domain", "@.example.org bob\n", ":1: expected an address or @domain"},
		{"control in user", "a@example.org bo\x01" "b\n", ":1: bad user name"},
		{"duplicate, case-insensitive", "a@example.org bob\nA@EXAMPLE.org carol\n",
		 ":2: duplicate entry a@example.org (first on line 1)"},
	};
	char err[512];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *path = write_file("bad-senders", cases[i].content);
		char want[600];

		snprintf(want, sizeof(want), "%s%s", path, cases[i].want);
		err[0] = '\0';
		if (auth_senders_load(path, err, sizeof(err)) != NULL)
			fail_msg("%s: loaded", cases[i].name);
		if (strcmp(err, want) != 0)
			fail_msg("%s: \"%s\", want \"%s\"", cases[i].name, err, want);
	}
	assert_null(auth_senders_load("/nonexistent/senders", err, sizeof(err)));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(base64_decode_strict),
		cmocka_unit_test(base64_encode_round_trip),
		cmocka_unit_test(response_decode),
		cmocka_unit_test(plain_decode),
		cmocka_unit_test(login_decode),
		cmocka_unit_test(users_verify),
		cmocka_unit_test(users_load_errors),
		cmocka_unit_test(sender_ownership),
		cmocka_unit_test(senders_load_errors),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
