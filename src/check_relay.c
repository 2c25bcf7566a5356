/*
 * check_relay.c - relay rights for the inbound profile.
 *
 * A recipient passes when its domain is one of local_domains, or the
 * client is in mynetworks, or the session is authenticated. The domain
 * judged is the one after the last '@' of the mailbox (source routes are
 * dropped by the parser and never forwarded); local parts that a backend
 * could route on by themselves (the percent hack, bang paths, a quoted
 * local part holding '@', '%' or '!') are refused for untrusted clients,
 * even for a local domain, as Postfix's allow_untrusted_routing = no does.
 * With SMTPUTF8 the same holds for the Unicode compatibility forms of
 * those characters (fullwidth and small '@', '%', '!'), which a backend
 * that applies NFKC would turn back into routing characters.
 *
 * Public:
 *   check_relay(), check_relay_trusted(), check_relay_reason()
 */

/* System. */
#include <string.h>

/* Project. */
#include "check_relay.h"
#include "config.h"
#include "lists.h"
#include "smtp_parse.h"
#include "smtp_session.h"

/* UTF-8 forms whose NFKC normalisation holds '@', '%' or '!'. */
static const char *const routing_lookalikes[] = {
	"\xef\xbc\xa0", "\xef\xb9\xab",                  /* U+FF20, U+FE6B  @ */
	"\xef\xbc\x85", "\xef\xb9\xaa",                  /* U+FF05, U+FE6A  % */
	"\xef\xbc\x81", "\xef\xb9\x97", "\xef\xb8\x95", /* U+FF01, U+FE57, U+FE15  ! */
	"\xe2\x80\xbc", "\xe2\x81\x88", "\xe2\x81\x89", /* U+203C, U+2048, U+2049 */
};

/* routing_chars - a local part a backend could route on by itself. */
static bool
routing_chars(const char *local)
{
	if (strpbrk(local, "%!@"))
		return true;
	for (size_t i = 0; i < sizeof(routing_lookalikes) / sizeof(routing_lookalikes[0]); i++)
		if (strstr(local, routing_lookalikes[i]))
			return true;
	return false;
}

/* check_relay_trusted - mynetworks or authenticated. */
bool
check_relay_trusted(const struct config *cf, const struct smtp_session *s)
{
	return s->auth || lists_netset_match(cf->mynetworks, (const struct sockaddr *)&s->peer);
}

/* check_relay - judge the domain the backend will actually route on. */
enum relay_result
check_relay(const struct config *cf, const struct smtp_session *s, const struct smtp_path *rcpt)
{
	if (check_relay_trusted(cf, s))
		return RELAY_OK;
	if (rcpt->postmaster)
		return RELAY_OK;        /* RFC 5321 4.5.1: <Postmaster> is always ours */
	if (rcpt->literal)
		return RELAY_LITERAL;
	if (routing_chars(rcpt->local) || rcpt->source_route)
		return RELAY_ROUTING_TRICK;
	if (!lists_strset_match_domain(cf->local_domains, rcpt->domain))
		return RELAY_NOT_LOCAL;
	return RELAY_OK;
}

/* check_relay_reason - for log lines. */
const char *
check_relay_reason(enum relay_result r)
{
	switch (r) {
	case RELAY_OK: return "ok";
	case RELAY_NOT_LOCAL: return "not-local";
	case RELAY_ROUTING_TRICK: return "routing-in-local-part";
	case RELAY_LITERAL: return "address-literal";
	}
	return "?";
}
