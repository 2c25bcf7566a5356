/*
 * msg_addr.c - mailboxes out of an address-list header value.
 *
 * Lenient where real mail is sloppy (obsolete spacing, comments anywhere,
 * unquoted dots in display names), strict where it matters for policy:
 * every mailbox must have exactly one '@' outside quotes with a non-empty
 * local part and domain, or the value is a syntax error. Pure; fuzzed
 * through the session's header path.
 *
 * Public:
 *   msg_addr_parse()
 */

/* System. */
#include <ctype.h>
#include <stdbool.h>
#include <string.h>

/* Project. */
#include "msg_addr.h"

/* finish - split and store one mailbox; false on a syntax error. */
static bool
finish(const char *raw, size_t rlen, const char *name, size_t nlen, struct msg_addr *out,
       size_t max, int *count)
{
	char addr[MSG_ADDR_MAX];
	size_t alen = 0;
	const char *at = NULL;
	bool inq = false;

	/* Trim spaces around the address. */
	while (rlen && isspace((unsigned char)*raw))
		raw++, rlen--;
	while (rlen && isspace((unsigned char)raw[rlen - 1]))
		rlen--;
	if (rlen == 0)
		return nlen == 0;       /* empty element ("a@b, , c@d") */
	/* obs-route ("@relay.example,@b.example:user@example.org"): drop it. */
	if (*raw == '@') {
		const char *colon = memchr(raw, ':', rlen);
		if (!colon)
			return false;
		rlen -= (size_t)(colon + 1 - raw);
		raw = colon + 1;
	}
	/*
	 * Copy, dropping the white space RFC 5322's obsolete syntax allows
	 * around '.' and '@' ("john . doe @ example . org"); any other space
	 * outside quotes ("john doe@example.org") is an error.
	 */
	for (size_t i = 0; i < rlen; i++) {
		char c = raw[i];
		if (c == '"')
			inq = !inq;
		else if (c == '\\' && inq && i + 1 < rlen) {
			if (alen + 2 >= sizeof(addr))
				return false;
			addr[alen++] = c;
			c = raw[++i];
		} else if (!inq && isspace((unsigned char)c)) {
			size_t j = i;
			while (j < rlen && isspace((unsigned char)raw[j]))
				j++;
			char prev = alen ? addr[alen - 1] : '\0', next = j < rlen ? raw[j] : '\0';
			if (prev != '.' && prev != '@' && next != '.' && next != '@')
				return false;
			i = j - 1;
			continue;
		} else if (!inq && (c == '<' || c == '>'))
			return false;
		if (alen + 1 >= sizeof(addr))
			return false;   /* longer than any address can be */
		addr[alen++] = c;
	}
	if (inq)
		return false;
	inq = false;
	for (size_t i = 0; i < alen; i++) {
		if (addr[i] == '"')
			inq = !inq;
		else if (addr[i] == '\\' && inq)
			i++;
		else if (addr[i] == '@' && !inq) {
			if (at)
				return false;
			at = addr + i;
		}
	}
	if (!at || at == addr || at == addr + alen - 1)
		return false;
	size_t ll = (size_t)(at - addr), dl = alen - ll - 1;
	if (dl >= sizeof(out->domain))
		return false;
	if ((size_t)*count < max) {
		struct msg_addr *m = &out[*count];
		memcpy(m->addr, addr, ll + 1);
		for (size_t i = 0; i < dl; i++)
			m->domain[i] = (char)tolower((unsigned char)at[1 + i]);
		m->domain[dl] = '\0';
		memcpy(m->addr + ll + 1, m->domain, dl + 1);
		while (nlen && isspace((unsigned char)*name))
			name++, nlen--;
		while (nlen && isspace((unsigned char)name[nlen - 1]))
			nlen--;
		if (nlen >= sizeof(m->name))
			nlen = sizeof(m->name) - 1;
		memcpy(m->name, name, nlen);
		m->name[nlen] = '\0';
	}
	(*count)++;
	return true;
}

/* msg_addr_parse - the mailboxes of an address list. */
int
msg_addr_parse(const char *value, size_t len, struct msg_addr *out, size_t max)
{
	char plain[4096], name[MSG_ADDR_MAX];
	size_t pn = 0, nn = 0;
	int count = 0, depth = 0;
	bool inq = false, angle = false, had_angle = false;
	/* As long as the input: finish() refuses what is too long, nothing is cut. */
	char addr[sizeof(plain)];
	size_t an = 0;

	if (len >= sizeof(plain))
		return -1;
	for (size_t i = 0; i <= len; i++) {
		char c = i < len ? value[i] : ',';
		if (c == '\r' || c == '\n')
			continue;   /* folding */
		if (depth) {
			if (c == '\\' && i + 1 < len)
				i++;
			else if (c == '(')
				depth++;
			else if (c == ')')
				depth--;
			continue;
		}
		if (inq) {
			if (c == '\\' && i + 1 < len) {
				/* A quoted-pair: the address keeps it, the name only the character. */
				if (angle)
					addr[an++] = c;
				else
					plain[pn++] = c;
				c = value[++i];
			} else if (c == '"') {
				inq = false;
				if (angle && an + 1 < sizeof(addr))
					addr[an++] = c;
				else if (!angle)
					plain[pn++] = c;
				continue;
			}
			if (angle) {
				if (an + 1 < sizeof(addr))
					addr[an++] = c;
			} else if (pn + 1 < sizeof(plain))
				plain[pn++] = c;
			if (!angle && nn + 1 < sizeof(name))
				name[nn++] = c;
			continue;
		}
		switch (c) {
		case '(':
			depth = 1;
			continue;
		case '"':
			inq = true;
			if (angle && an + 1 < sizeof(addr))
				addr[an++] = c;
			else if (!angle)
				plain[pn++] = c;
			continue;
		case '<':
			if (angle || had_angle)
				return -1;
			angle = true;
			had_angle = true;
			an = 0;
			continue;
		case '>':
			if (!angle)
				return -1;
			angle = false;
			continue;
		case ':':
			/* A group "name: a@b, c@d;" — the name is not an address. */
			if (!angle) {
				pn = 0;
				nn = 0;
				continue;
			}
			break;
		case ';':
			if (!angle)
				c = ',';
			break;
		default:
			break;
		}
		if (c == ',' && !angle) {
			bool ok = had_angle ? finish(addr, an, name, nn, out, max, &count)
					    : finish(plain, pn, "", 0, out, max, &count);
			if (!ok)
				return -1;
			pn = nn = an = 0;
			had_angle = false;
			continue;
		}
		if (angle) {
			if (an + 1 < sizeof(addr))
				addr[an++] = c;
		} else {
			if (pn + 1 < sizeof(plain))
				plain[pn++] = c;
			if (!had_angle && nn + 1 < sizeof(name))
				name[nn++] = c;
		}
	}
	if (inq || angle || depth)
		return -1;
	return count;
}
