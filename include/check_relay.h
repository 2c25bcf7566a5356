/*
 * check_relay.h - relay rights: may this client send to this recipient?
 */
#ifndef RAVELIN_CHECK_RELAY_H
#define RAVELIN_CHECK_RELAY_H

#include <stdbool.h>

struct config;
struct smtp_session;
struct smtp_path;

enum relay_result {
	RELAY_OK,
	RELAY_NOT_LOCAL,      /* the domain is not ours */
	RELAY_ROUTING_TRICK,  /* %, !, @ in the local part, source route: a backend could reroute */
	RELAY_LITERAL,        /* an address literal */
};

/* check_relay - judge the domain the backend will actually route on. */
enum relay_result check_relay(const struct config *cf, const struct smtp_session *s,
			      const struct smtp_path *rcpt);
/* check_relay_trusted - mynetworks or authenticated. */
bool check_relay_trusted(const struct config *cf, const struct smtp_session *s);
const char *check_relay_reason(enum relay_result r);

#endif
