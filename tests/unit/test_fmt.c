/*
 * test_fmt.c - fmt_snprintf() against glibc's snprintf(): for every case,
 * at every buffer size from 0 to past the full length, the same return
 * value and the same octets (terminator included), so that swapping one
 * for the other can change no log line, header or reply.
 */

/* System. */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <wchar.h>

/* Libraries. */
#include <cmocka.h>

/* Project. */
#include "fmt.h"

#define BUFMAX 700

/* compare - both formatters over the same arguments, at every size. */
static void __attribute__((format(printf, 1, 2)))
compare(const char *fmt, ...)
{
	char want[BUFMAX], got[BUFMAX];
	va_list ap, aq;

	va_start(ap, fmt);
	va_copy(aq, ap);
	int full = vsnprintf(want, sizeof(want), fmt, aq);
	va_end(aq);
	assert_true(full >= 0 && full < BUFMAX - 2);
	for (size_t size = 0; size <= (size_t)full + 2; size++) {
		memset(want, 'W', sizeof(want));
		memset(got, 'W', sizeof(got));
		va_copy(aq, ap);
		int a = vsnprintf(want, size, fmt, aq);
		va_end(aq);
		va_copy(aq, ap);
		int b = fmt_vsnprintf(got, size, fmt, aq);
		va_end(aq);
		if (a != b || memcmp(want, got, sizeof(want)) != 0)
			fail_msg("format \"%s\" at size %zu: snprintf %d \"%.*s\", fmt %d \"%.*s\"",
				 fmt, size, a, (int)(size ? size : 1), want, b, (int)(size ? size : 1), got);
	}
	va_end(ap);
}

/* test_strings - %s and %c with widths, precisions and flags. */
static void
test_strings(void **state)
{
	const char *s = "hello, world";

	compare("plain text, no conversion");
	compare("%s", "");
	compare("%s", s);
	compare("[%s] [%s]", s, "x");
	compare("%20s|%-20s|", s, s);
	compare("%.5s|%.0s|%.40s", s, s, s);
	compare("%*s|%-*s|%*s", 15, s, 15, s, -15, s);
	compare("%.*s|%.*s|%.*s", 3, s, 0, s, -1, s);
	compare("%*.*s", 10, 4, s);
	compare("%c%c%c", 'a', 'b', 0x7f);
	compare("%5c|%-5c|", 'z', 'z');
	compare("100%% sure: %s%%", s);
	compare("%s: accepted: from=<%s> to=<%s> size=%zu backend=\"%s\"",
		"4F2A9C1D", "a@b.c", "d@example.org", (size_t)2048, "250 2.0.0 Ok: queued");
	compare("\xc3\xa9t\xc3\xa9 %s \xff", "\xe2\x82\xac");
}

/* test_integers - every length, base, flag, width and precision. */
static void
test_integers(void **state)
{
	int iv[] = { 0, 1, -1, 7, -7, 42, 1000, -1000, INT_MAX, INT_MIN };

	for (size_t i = 0; i < sizeof(iv) / sizeof(iv[0]); i++) {
		int v = iv[i];
		compare("%d|%i|%u|%o|%x|%X", v, v, (unsigned)v, (unsigned)v, (unsigned)v, (unsigned)v);
		compare("%5d|%-5d|%05d|%+d|% d|%+05d|% 5d", v, v, v, v, v, v, v);
		/* 0 with a precision: gcc warns that C ignores it; so must we. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat"
		compare("%.3d|%.0d|%8.3d|%-8.3d|%08.3d", v, v, v, v, v);
#pragma GCC diagnostic pop
		compare("%#o|%#x|%#X|%#.0o|%#8x|%#08x", (unsigned)v, (unsigned)v, (unsigned)v,
			(unsigned)v, (unsigned)v, (unsigned)v);
		compare("%*d|%-*d|%.*d|%*.*d", 6, v, 6, v, 4, v, 9, 4, v);
		compare("%hhd|%hhu|%hd|%hu|%hhx", v, v, v, v, v);
	}
	compare("%ld|%lu|%lx|%li", LONG_MIN, ULONG_MAX, ULONG_MAX, LONG_MAX);
	compare("%lld|%llu|%llX", LLONG_MIN, ULLONG_MAX, ULLONG_MAX);
	compare("%zu|%zd|%zx", SIZE_MAX, (ssize_t)-5, (size_t)0xdeadbeef);
	compare("%jd|%ju|%td", INTMAX_MIN, UINTMAX_MAX, (ptrdiff_t)-99);
	compare("%02d:%02d:%02d.%03ld", 9, 5, 0, 7L);
	compare("%08lX|%04x|%02X", 0xabcdefUL, 0x1fu, 0xau);
	compare("%.0d|%5.0d|%-5.0d|", 0, 0, 0);
	compare("%+.0d|% .0d|%#.0x|%#x", 0, 0, 0u, 0u);
}

/* test_pointers_and_floats - %p, and the floats handed to snprintf(). */
static void
test_pointers_and_floats(void **state)
{
	int x;

	compare("%p|%20p|%-20p|", (void *)&x, (void *)&x, (void *)&x);
	compare("%p|%8p|%-8p|", (void *)NULL, (void *)NULL, (void *)NULL);
	compare("score=%.1f", 1.5);
	/* The exact %f path (whole scaled values) and its limits. */
	compare("%.1f|%.1f|%.1f|%.0f|%.2f|%.3f", 5.0, -2.5, 0.0, 3.0, 0.25, -7.125);
	compare("%.1f|%.1f|%+.1f|% .1f|%8.1f|%-8.1f|%08.1f|%+08.2f", -0.0, 100.0, 1.5, 1.5, 1.5,
		-1.5, -1.5, 2.25);
	compare("%F|%f|%.9f|%.1f|%.0f|%.2f", 2.5, -4.0, 0.5, 1e15, 4503599627370495.0, 1.005);
	compare("%.1f|%.2f|%.1f|%.1f|%#.0f|%.0f", 0.05, 0.125, 0.25, 450359962737049.6, 3.0, 2.5);
	for (int i = -200; i <= 200; i++)
		compare("%.1f %.2f %.0f %f", i / 8.0, i / 4.0, i / 2.0, i / 16.0);
	/* %g of whole numbers (the rules' "%.15g"), and what it leaves. */
	compare("%.15g|%g|%G|%.0g|%.1g|%.2g|%8g|%-8g|%+g|% g", 12345.0, 100000.0, 42.0, 7.0,
		9.0, 99.0, 3.0, 3.0, 5.0, 5.0);
	compare("%.15g|%g|%.3g|%.15g|%.15g|%g|%.16g|%#g", 999999999999999.0, 1000000.0, 1000.0,
		-0.0, 1e15, 0.5, 12.0, 3.0);
	compare("%.15g|%.2g|%g|%.1g", 2918.0, 100.0, 123456.0, 10.0);
	for (long long v = 1; v < 1000000000000000LL; v = v * 7 + 3)
		compare("%.15g %g %.3g", (double)v, (double)-v, (double)v);
	compare("%.1f|%12.1f|%-12.3f|%+g|%.15g|%e|%a", -0.05, 3.14159, 2.5, 1e-7, 0.1, 12345.678,
		1.0);
	compare("%f|%lf|%Lf|%010.2f|% f", 1e10, 2.0, (long double)3.25, -1.5, 7.0);
	compare("%*.*f|%-*f", 12, 3, 2.0 / 3.0, 10, 1.0);
	compare("%g|%G|%E", 1e300, 1e-300, 6.02e23);
}

/* test_fallbacks - what fmt hands to vsnprintf() still comes out right. */
static void
test_fallbacks(void **state)
{
	int n = 0;
	char buf[64];

	/* NULL for %s is undefined in C; glibc prints "(null)" (or nothing
	 * under a short precision), and so must fmt. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-overflow"
	compare("%s and %s", "a", (const char *)NULL);
	compare("%.3s|%10s", (const char *)NULL, (const char *)NULL);
#pragma GCC diagnostic pop
	compare("%ls", L"wide");
	compare("%lc", (wint_t)'w');
	compare("%f", 1e308);                              /* longer than the scratch */
	/* A width past fmt's own limit: vsnprintf()'s result, untruncated count. */
	assert_int_equal(fmt_snprintf(NULL, 0, "%100001d", 5), snprintf(NULL, 0, "%100001d", 5));
	/* %n writes the count so far, as snprintf() does. */
	int r = fmt_snprintf(buf, sizeof(buf), "abc%nxyz", &n);
	assert_int_equal(r, 6);
	assert_int_equal(n, 3);
	assert_string_equal(buf, "abcxyz");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_strings),
		cmocka_unit_test(test_integers),
		cmocka_unit_test(test_pointers_and_floats),
		cmocka_unit_test(test_fallbacks),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
