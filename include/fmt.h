/*
 * fmt.h - snprintf() for the per-connection and per-message paths.
 *
 * glibc's snprintf() sets up a FILE and goes through its vtable for every
 * call: about a thousand instructions to format a log line's fields, and
 * a 1-message connection made two dozen such calls (a seventh of ravelin's
 * own CPU). fmt_snprintf() formats the usual conversions itself and gives
 * exactly snprintf()'s result (tests/unit/test_fmt.c compares the two):
 * the same octets, the same return value (the length it would have
 * written), the same truncation.
 *
 * Done here: flags - 0 + space #, width and precision (numbers or *),
 * lengths hh h l ll z j t, conversions d i u o x X c s p %, %f with a
 * precision up to 9 when the scaled value is a whole number (the exact
 * case), and %g of a whole number under 10^precision. Other floating conversions (f F e E g G a A) are
 * formatted by snprintf() one at a time; anything else (%n, %ls, %m ...)
 * hands the whole call to vsnprintf().
 */
#ifndef RAVELIN_FMT_H
#define RAVELIN_FMT_H

#include <stdarg.h>
#include <stddef.h>

int fmt_snprintf(char *out, size_t size, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int fmt_vsnprintf(char *out, size_t size, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));

#endif
