/*
 * strcopy.h - bounded string building for the per-message paths: what
 * snprintf(dst, size, "%s%s...", ...) and asprintf() do there, without a
 * format parse for every field of every message. Every function cuts to
 * fit and leaves dst terminated (size > 0). Lists of strings end at a NULL;
 * str_copy() takes a NULL source as "".
 */
#ifndef RAVELIN_STRCOPY_H
#define RAVELIN_STRCOPY_H

#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* str_copy_n - the n octets at src (not terminated) into dst. */
static inline void
str_copy_n(char *dst, size_t size, const char *src, size_t n)
{
	if (size == 0)
		return;
	if (n > size - 1)
		n = size - 1;
	if (n)
		memcpy(dst, src, n);
	dst[n] = '\0';
}

/* str_copy - src into dst. */
static inline void
str_copy(char *dst, size_t size, const char *src)
{
	if (size == 0)
		return;
	str_copy_n(dst, size, src, src ? strnlen(src, size - 1) : 0);
}

/* str_vappend - the strings of ap, up to a NULL, after the used octets of dst. */
static inline void
str_vappend(char *dst, size_t size, size_t used, va_list ap)
{
	const char *p;

	while (used + 1 < size && (p = va_arg(ap, const char *)) != NULL) {
		size_t n = strnlen(p, size - 1 - used);
		memcpy(dst + used, p, n);
		used += n;
	}
	dst[used] = '\0';
}

/* str_join - dst = the strings up to a NULL, one after another. */
static inline void
str_join(char *dst, size_t size, ...)
{
	va_list ap;

	if (size == 0)
		return;
	va_start(ap, size);
	str_vappend(dst, size, 0, ap);
	va_end(ap);
}

/* str_append - the strings up to a NULL, after what dst holds. */
static inline void
str_append(char *dst, size_t size, ...)
{
	va_list ap;
	size_t used;

	if (size == 0)
		return;
	used = strnlen(dst, size - 1);
	va_start(ap, size);
	str_vappend(dst, size, used, ap);
	va_end(ap);
}

/* str_join_alloc - the strings up to a NULL in a new buffer (free() it);
 * NULL when out of memory. */
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
