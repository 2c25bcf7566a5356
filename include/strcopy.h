/*
 * strcopy.h - a bounded string copy: what snprintf(dst, size, "%s", src)
 * does, without a format parse for every field of every message.
 */
#ifndef RAVELIN_STRCOPY_H
#define RAVELIN_STRCOPY_H

#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* str_copy - src into dst, cut to size - 1 octets and terminated (size > 0);
 * a NULL src copies as "". */
static inline void
str_copy(char *dst, size_t size, const char *src)
{
	size_t n;

	if (size == 0)
		return;
	n = src ? strnlen(src, size - 1) : 0;
	if (n)
		memcpy(dst, src, n);
	dst[n] = '\0';
}

/* str_join_alloc - the strings up to a NULL, one after another, in a new
 * buffer (free() it); NULL when out of memory. asprintf() without the
 * format parse, for the command lines built for every message. */
static inline char *
str_join_alloc(const char *first, ...)
{
	va_list ap;
	size_t len = 0;
	const char *p;
	char *out, *o;

	va_start(ap, first);
	for (p = first; p != NULL; p = va_arg(ap, const char *))
		len += strlen(p);
	va_end(ap);
	if ((out = malloc(len + 1)) == NULL)
		return NULL;
	o = out;
	va_start(ap, first);
	for (p = first; p != NULL; p = va_arg(ap, const char *)) {
		size_t n = strlen(p);
		memcpy(o, p, n);
		o += n;
	}
	va_end(ap);
	*o = '\0';
	return out;
}

#endif
