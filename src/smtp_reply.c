/*
 * smtp_reply.c - the table of replies ravelin writes itself.
 *
 * Codes and texts follow DESIGN.md section 6, RFC 5321, RFC 3463 and
 * Postfix's wording where a peer or an operator might grep for it.
 *
 * Public:
 *   smtp_reply_text(), smtp_reply_code()
 */

/* System. */
#include <stdlib.h>

/* Project. */
#include "smtp_reply.h"

static const char *const replies[RPL_COUNT] = {
	[RPL_OK] = "250 2.0.0 Ok",
	[RPL_MAIL_OK] = "250 2.1.0 Ok",
	[RPL_RCPT_OK] = "250 2.1.5 Ok",
	[RPL_DATA_GO] = "354 End data with <CR><LF>.<CR><LF>",
	[RPL_BYE] = "221 2.0.0 Bye",
	[RPL_HELP] = "214 2.0.0 Commands: HELO EHLO MAIL RCPT DATA RSET NOOP QUIT HELP VRFY STARTTLS AUTH",
	[RPL_VRFY] = "252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery",
	[RPL_EXPN] = "502 5.5.1 Error: EXPN not available",
	[RPL_ETRN] = "502 5.5.1 Error: ETRN not available",
	[RPL_STARTTLS_GO] = "220 2.0.0 Ready to start TLS",
	[RPL_NEED_HELO] = "503 5.5.1 Error: send HELO/EHLO first",
	[RPL_NESTED_MAIL] = "503 5.5.1 Error: nested MAIL command",
	[RPL_NEED_MAIL] = "503 5.5.1 Error: need MAIL command",
	[RPL_NEED_RCPT] = "503 5.5.1 Error: need RCPT command",
	[RPL_NO_VALID_RCPT] = "554 5.5.1 Error: no valid recipients",
	[RPL_UNKNOWN_CMD] = "502 5.5.2 Error: command not recognized",
	[RPL_HTTP] = "421 4.7.0 Error: HTTP request refused",
	[RPL_LINE_TOO_LONG] = "500 5.5.2 Line too long",
	[RPL_BAD_CHAR] = "500 5.5.2 Error: bad character in command",
	[RPL_SYNTAX_HELO] = "501 5.5.4 Syntax: EHLO hostname",
	[RPL_SYNTAX_MAIL] = "501 5.5.4 Syntax: MAIL FROM:<address>",
	[RPL_SYNTAX_RCPT] = "501 5.5.4 Syntax: RCPT TO:<address>",
	[RPL_BAD_SENDER] = "501 5.1.7 Bad sender address syntax",
	[RPL_BAD_RCPT] = "501 5.1.3 Bad recipient address syntax",
	[RPL_PATH_TOO_LONG] = "501 5.1.0 Address too long",
	[RPL_NO_ARGS] = "501 5.5.4 Syntax: no arguments allowed",
	[RPL_PARAM_UNKNOWN] = "555 5.5.4 Unsupported option",
	[RPL_PARAM_SYNTAX] = "501 5.5.4 Bad parameter syntax",
	[RPL_TOO_BIG_DECLARED] = "552 5.3.4 Message size exceeds fixed limit",
	[RPL_TOO_BIG] = "552 5.3.4 Message size exceeds fixed limit",
	[RPL_HEADER_TOO_BIG] = "552 5.3.4 Message header size exceeds limit",
	[RPL_TOO_MANY_RCPTS] = "452 4.5.3 Error: too many recipients",
	[RPL_BARE_NEWLINE] = "550 5.5.2 Bare CR or LF not allowed",
	[RPL_NUL_DATA] = "550 5.6.0 NUL byte not allowed in message",
	[RPL_LONG_LINE] = "550 5.6.0 Message line too long",
	[RPL_LOCAL_ERROR] = "451 4.3.0 Error: local error, try again later",
	[RPL_BACKEND_DOWN] = "421 4.3.0 Service not available, try again later",
	[RPL_BACKEND_LOST] = "451 4.4.2 Error: lost connection with the mail server",
	[RPL_TIMEOUT] = "421 4.4.2 %s Error: timeout exceeded",
	[RPL_TOO_MANY_ERRORS] = "421 4.7.0 Error: too many errors",
	[RPL_PREGREET] = "554 5.5.1 Error: talking before the greeting",
	[RPL_SHUTDOWN] = "421 4.3.2 Service shutting down",
	[RPL_TOO_MANY_SESSIONS] = "421 4.7.0 Error: too many connections",
	[RPL_TOO_MANY_FROM_IP] = "421 4.7.0 Error: too many connections from your address",
	[RPL_RELAY_DENIED] = "554 5.7.1 <%s>: Relay access denied",
	[RPL_AUTH_REQUIRED] = "530 5.7.0 Authentication required",
	[RPL_TLS_REQUIRED] = "530 5.7.0 Must issue a STARTTLS command first",
	[RPL_AUTH_TLS_REQUIRED] = "538 5.7.11 Encryption required for requested authentication mechanism",
	[RPL_AUTH_OK] = "235 2.7.0 Authentication successful",
	[RPL_AUTH_BAD] = "535 5.7.8 Authentication credentials invalid",
	[RPL_AUTH_CANCELLED] = "501 5.7.0 Authentication cancelled",
	[RPL_AUTH_ALREADY] = "503 5.5.1 Error: already authenticated",
	[RPL_AUTH_MECH] = "504 5.5.4 Unsupported authentication mechanism",
	[RPL_AUTH_NOT_OFFERED] = "503 5.5.1 Error: authentication not enabled",
	[RPL_AUTH_IN_MAIL] = "503 5.5.1 Error: MAIL transaction in progress",
	[RPL_AUTH_SYNTAX] = "501 5.5.2 Error: malformed authentication data",
	[RPL_SENDER_NOT_OWNED] = "553 5.7.1 <%s>: Sender address not owned by user",
	[RPL_FROM_NOT_OWNED] = "550 5.7.1 From: header not owned by user",
	[RPL_FROM_COUNT] = "550 5.7.1 Message must have exactly one From: address",
	[RPL_SPOOF_LOCAL] = "550 5.7.1 Message From: spoofs a local domain",
	[RPL_STARTTLS_UNAVAIL] = "502 5.5.1 Error: STARTTLS not available",
	[RPL_STARTTLS_ALREADY] = "503 5.5.1 Error: TLS already active",
	[RPL_TLS_UNAVAILABLE] = "454 4.7.0 TLS not available due to local problem",
	[RPL_SMTPUTF8_REQUIRED] = "553 5.6.7 SMTPUTF8 parameter required for UTF-8 address",
	[RPL_BDAT_SYNTAX] = "501 5.5.4 Syntax: BDAT count [LAST]",
	[RPL_BDAT_IN_PROGRESS] = "503 5.5.1 Error: BDAT transaction in progress",
};

/* smtp_reply_text - the reply line without CRLF. */
const char *
smtp_reply_text(enum smtp_reply_id id)
{
	return replies[id];
}

/* smtp_reply_code - the numeric code of a reply. */
int
smtp_reply_code(enum smtp_reply_id id)
{
	return atoi(replies[id]);
}
