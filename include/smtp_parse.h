/*
 * smtp_parse.h - pure SMTP command, path and ESMTP parameter parsing.
 */
#ifndef RAVELIN_SMTP_PARSE_H
#define RAVELIN_SMTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>

/* Longest command line, CRLF included (DESIGN.md section 11). */
#define SMTP_LINE_MAX      1000
/* RFC 5321 4.5.3.1: path 256 octets, local part 64, domain 255. */
#define SMTP_PATH_MAX      256
#define SMTP_LOCAL_MAX     64
#define SMTP_DOMAIN_MAX    255
#define SMTP_PARAMS_MAX    16

enum smtp_verb {
	SMTP_UNKNOWN = 0,
	SMTP_HELO, SMTP_EHLO, SMTP_MAIL, SMTP_RCPT, SMTP_DATA, SMTP_BDAT, SMTP_RSET,
	SMTP_NOOP, SMTP_QUIT, SMTP_HELP, SMTP_VRFY, SMTP_EXPN, SMTP_STARTTLS, SMTP_AUTH,
	SMTP_XCLIENT, SMTP_ETRN,
	/* Not SMTP: an HTTP request or similar sent to the mail port. */
	SMTP_HTTP,
	SMTP_NVERBS
};

/* One command line, split; arg points into the caller's buffer. */
struct smtp_cmd {
	enum smtp_verb verb;
	const char *verb_text;
	size_t verb_len;
	const char *arg;          /* after the verb and one space; "" when none */
};

/* smtp_line_status - what smtp_line_find saw. */
enum smtp_line_status {
	SMTP_LINE_MORE,           /* no line terminator yet, still within bounds */
	SMTP_LINE_OK,             /* a whole line; *linelen excludes the terminator */
	SMTP_LINE_TOO_LONG,       /* over SMTP_LINE_MAX without a terminator */
};

struct smtp_param {
	const char *key;          /* NUL-terminated inside the caller's copy */
	const char *value;        /* NULL when the keyword has no value */
};

/* A parsed MAIL FROM / RCPT TO path. */
struct smtp_path {
	char addr[SMTP_PATH_MAX + 1];     /* local@domain, source route removed; "" = null path */
	char local[SMTP_LOCAL_MAX * 4 + 1];   /* as written (quoted form kept) */
	char domain[SMTP_DOMAIN_MAX + 1];     /* lower-cased; literal keeps its brackets */
	bool null_path;                   /* <> */
	bool postmaster;                  /* <Postmaster> without a domain (RCPT only) */
	bool source_route;                /* an @a,@b: prefix was given */
	bool quoted;                      /* the local part is a quoted string */
	bool literal;                     /* the domain is an address literal */
	bool utf8;                        /* non-ASCII in local part or domain */
	struct smtp_param params[SMTP_PARAMS_MAX];
	size_t nparams;
	char buf[SMTP_LINE_MAX];          /* storage for params */
};

enum smtp_path_error {
	SMTP_PATH_OK = 0,
	SMTP_PATH_SYNTAX,         /* 501 5.1.7 / 5.1.3 */
	SMTP_PATH_TOO_LONG,
	SMTP_PATH_PARAM_SYNTAX,   /* 501 5.5.4 */
	SMTP_PATH_TOO_MANY_PARAMS,
};

/* smtp_line_find - look for a line terminator (CRLF, or LF alone, which
 * is tolerated in commands) in buf; never examines past SMTP_LINE_MAX. */
enum smtp_line_status smtp_line_find(const char *buf, size_t len, size_t *linelen, size_t *termlen);

/* smtp_cmd_parse - split a line (without terminator) into verb and argument.
 * Returns 0, or -1 for a line holding NUL bytes or other control bytes. */
int smtp_cmd_parse(const char *line, size_t len, struct smtp_cmd *cmd);

/* smtp_path_parse - parse "FROM:<path> params" (is_mail) or "TO:<path> params". */
enum smtp_path_error smtp_path_parse(const char *arg, bool is_mail, struct smtp_path *p);

/* smtp_param_get - the parameter with this keyword (case-insensitive) or NULL. */
const struct smtp_param *smtp_param_get(const struct smtp_path *p, const char *key);

/* smtp_domain_valid - RFC 5321 Domain (optionally with UTF-8 U-labels). */
bool smtp_domain_valid(const char *d, size_t len, bool allow_utf8);

/* smtp_xtext_valid - RFC 3461 xtext (ENVID, ORCPT values). */
bool smtp_xtext_valid(const char *s);

#endif
