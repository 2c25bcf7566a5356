/*
 * msg_addr.h - the addresses in an RFC 5322 address-list header value
 * (From:, Sender:): display names, comments, quoted strings, groups.
 */
#ifndef RAVELIN_MSG_ADDR_H
#define RAVELIN_MSG_ADDR_H

#include <stddef.h>

#define MSG_ADDR_MAX 320

struct msg_addr {
	char addr[MSG_ADDR_MAX];   /* local@domain, domain lower-cased; "" when unparsable */
	char domain[256];
	char name[MSG_ADDR_MAX];   /* display name, unquoted, or "" */
};

/* msg_addr_parse - fill up to max addresses from value; returns how many
 * mailboxes the value holds (may exceed max), or -1 on a syntax error. */
int msg_addr_parse(const char *value, size_t len, struct msg_addr *out, size_t max);

#endif
