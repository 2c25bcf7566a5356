/*
 * fmt.c - snprintf() for the per-connection and per-message paths, without
 * stdio's per-call FILE set-up (see fmt.h for what it formats itself).
 *
 * Public:
 *   fmt_snprintf(), fmt_vsnprintf()
 */

/* System. */
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>

/* Project. */
#include "fmt.h"

/* The output so far: what fits is written, everything is counted. */
struct fmt_out {
	char *buf;
	size_t size;   /* room, the terminating NUL included */
	size_t len;    /* octets produced, written or not */
};

/* put - n octets from s. Most pieces are a few octets: a byte loop for
 * those is cheaper than a call to memcpy(). */
static inline void
put(struct fmt_out *o, const char *s, size_t n)
{
	if (o->len + n < o->size) {
		char *d = o->buf + o->len;
		if (n <= 16)
			for (size_t i = 0; i < n; i++)
				d[i] = s[i];
		else
			memcpy(d, s, n);
	} else if (o->len + 1 < o->size) {
		memcpy(o->buf + o->len, s, o->size - 1 - o->len);
	}
	o->len += n;
}

/* pad - n copies of c. */
static void
pad(struct fmt_out *o, char c, size_t n)
{
	if (o->len + 1 < o->size) {
		size_t room = o->size - 1 - o->len;
		memset(o->buf + o->len, c, n < room ? n : room);
	}
	o->len += n;
}

/* One conversion specification, parsed. */
struct fmt_spec {
	bool minus, zero, plus, space, alt;
	int width;       /* -1: none */
	int prec;        /* -1: none */
	int len;         /* 'H' hh, 'h', 'l', 'q' ll, 'z', 'j', 't', 'L', 0 */
	char conv;
};

/* field - body (with its prefix: sign or 0x) padded to the width. zeros is
 * the number of leading zeros the precision asks for. */
static void
field(struct fmt_out *o, const struct fmt_spec *sp, const char *prefix, size_t plen,
      size_t zeros, const char *body, size_t blen)
{
	size_t total = plen + zeros + blen;
	size_t fill = sp->width > 0 && (size_t)sp->width > total ? (size_t)sp->width - total : 0;

	if (fill && !sp->minus && !sp->zero)
		pad(o, ' ', fill);
	put(o, prefix, plen);
	if (fill && !sp->minus && sp->zero)
		pad(o, '0', fill);
	pad(o, '0', zeros);
	put(o, body, blen);
	if (fill && sp->minus)
		pad(o, ' ', fill);
}

/* integer - d i u o x X p with their flags. */
static void
integer(struct fmt_out *o, struct fmt_spec *sp, uintmax_t v, bool neg)
{
	char digits[64];
	char *end = digits + sizeof(digits), *d = end;
	char prefix[3];
	size_t plen = 0;
	unsigned base = 10;
	const char *set = "0123456789abcdef";

	if (sp->conv == 'o')
		base = 8;
	else if (sp->conv == 'x' || sp->conv == 'p')
		base = 16;
	else if (sp->conv == 'X') {
		base = 16;
		set = "0123456789ABCDEF";
	}
	/* Constant divisors: a multiply or a shift, not a division. */
	if (base == 10) {
		if (v <= UINT32_MAX) {
			for (uint32_t w = (uint32_t)v; w; w /= 10)
				*--d = (char)('0' + w % 10);
		} else {
			for (; v; v /= 10)
				*--d = (char)('0' + v % 10);
		}
	} else if (base == 16) {
		for (; v; v >>= 4)
			*--d = set[v & 15];
	} else {
		for (; v; v >>= 3)
			*--d = set[v & 7];
	}
	size_t n = (size_t)(end - d);
	if (sp->prec >= 0)
		sp->zero = false;     /* C11 7.21.6.1: 0 is ignored with a precision */
	size_t zeros = sp->prec >= 0 && (size_t)sp->prec > n ? (size_t)sp->prec - n : 0;
	if (n == 0 && sp->prec < 0)
		zeros = 1;            /* the value 0 */
	if (neg)
		prefix[plen++] = '-';
	else if ((sp->conv == 'd' || sp->conv == 'i') && sp->plus)
		prefix[plen++] = '+';
	else if ((sp->conv == 'd' || sp->conv == 'i') && sp->space)
		prefix[plen++] = ' ';
	if (sp->conv == 'o' && sp->alt && zeros == 0 && (n == 0 || *d != '0'))
		zeros = 1;
	if ((sp->conv == 'x' || sp->conv == 'X') && sp->alt && n > 0) {
		prefix[plen++] = '0';
		prefix[plen++] = sp->conv;
	}
	if (sp->conv == 'p') {
		prefix[plen++] = '0';
		prefix[plen++] = 'x';
	}
	field(o, sp, prefix, plen, zeros, d, n);
}

/* signed_arg - the next signed argument of the spec's length. */
static intmax_t
signed_arg(const struct fmt_spec *sp, va_list *ap)
{
	switch (sp->len) {
	case 'H': return (signed char)va_arg(*ap, int);
	case 'h': return (short)va_arg(*ap, int);
	case 'l': return va_arg(*ap, long);
	case 'q': return va_arg(*ap, long long);
	case 'z': return va_arg(*ap, ssize_t);
	case 'j': return va_arg(*ap, intmax_t);
	case 't': return va_arg(*ap, ptrdiff_t);
	default: return va_arg(*ap, int);
	}
}

/* unsigned_arg - the next unsigned argument of the spec's length. */
static uintmax_t
unsigned_arg(const struct fmt_spec *sp, va_list *ap)
{
	switch (sp->len) {
	case 'H': return (unsigned char)va_arg(*ap, unsigned);
	case 'h': return (unsigned short)va_arg(*ap, unsigned);
	case 'l': return va_arg(*ap, unsigned long);
	case 'q': return va_arg(*ap, unsigned long long);
	case 'z': return va_arg(*ap, size_t);
	case 'j': return va_arg(*ap, uintmax_t);
	case 't': return (uintmax_t)va_arg(*ap, ptrdiff_t);
	default: return va_arg(*ap, unsigned);
	}
}

/*
 * fixed - %f with a precision of 0 to 9 when x scaled by 10^prec is, in
 * floating point, a whole number under 2^52 (the log's "score=5.0"). The
 * exact product then lies within half an ulp of that number, far from
 * any .5, so printing it is what correct rounding gives. Also %g of a
 * whole number under 10^precision (the rules' numbers, "%.15g"). Anything
 * else (ties, fractions for %g, huge or non-finite values, '#') is left
 * to snprintf().
 */
static bool
fixed(struct fmt_out *o, const struct fmt_spec *sp, double x)
{
	static const double scale[] = { 1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9 };
	int prec = sp->prec < 0 ? 6 : sp->prec;
	char digits[32], *end = digits + sizeof(digits), *d = end, prefix[1];
	size_t plen = 0;

	if (sp->alt || !isfinite(x))
		return false;
	if (sp->conv == 'g' || sp->conv == 'G') {
		/* A whole number under 10^P (P the precision, 6 by default,
		 * at least 1) prints as its digits: %g picks the %f style,
		 * and the zero fraction and the point are dropped. */
		int p = sp->prec < 0 ? 6 : sp->prec == 0 ? 1 : sp->prec;
		double lim = 1;

		for (int i = 0; i < p && i < 16; i++)
			lim *= 10;
		if (p > 15 || !(fabs(x) < lim))
			return false;
		prec = 0;
	} else if ((sp->conv != 'f' && sp->conv != 'F') || prec > 9) {
		return false;
	}
	double y = fabs(x) * scale[prec];

	if (!(y < 4503599627370496.0))	/* 2^52 */
		return false;
	uint64_t v = (uint64_t)y;

	if ((double)v != y)
		return false;

	for (int i = 0; i < prec; i++, v /= 10)
		*--d = (char)('0' + v % 10);
	if (prec > 0)
		*--d = '.';
	do
		*--d = (char)('0' + v % 10);
	while ((v /= 10) != 0);
	if (signbit(x))
		prefix[plen++] = '-';
	else if (sp->plus)
		prefix[plen++] = '+';
	else if (sp->space)
		prefix[plen++] = ' ';
	field(o, sp, prefix, plen, 0, d, (size_t)(end - d));
	return true;
}

/* floating - one f e g a conversion through snprintf(); false when it
 * does not fit the scratch buffer (the caller falls back). */
static bool
floating(struct fmt_out *o, const struct fmt_spec *sp, va_list *ap)
{
	char spec[32], tmp[512];
	size_t k = 0;
	int n;

	spec[k++] = '%';
	if (sp->minus) spec[k++] = '-';
	if (sp->zero) spec[k++] = '0';
	if (sp->plus) spec[k++] = '+';
	if (sp->space) spec[k++] = ' ';
	if (sp->alt) spec[k++] = '#';
	spec[k] = '\0';
	/* The numbers go as * arguments: no second parse of digits. */
	memcpy(spec + k, "*.*", 4);
	k += 3;
	if (sp->len == 'L')
		spec[k++] = 'L';
	spec[k++] = sp->conv;
	spec[k] = '\0';
	if (sp->len == 'L') {
		n = snprintf(tmp, sizeof(tmp), spec, sp->width < 0 ? 0 : sp->width, sp->prec, va_arg(*ap, long double));
	} else {
		double x = va_arg(*ap, double);

		if (fixed(o, sp, x))
			return true;
		n = snprintf(tmp, sizeof(tmp), spec, sp->width < 0 ? 0 : sp->width, sp->prec, x);
	}
	if (n < 0 || (size_t)n >= sizeof(tmp))
		return false;
	put(o, tmp, (size_t)n);
	return true;
}

/* fmt_vsnprintf - see fmt.h. */
int
fmt_vsnprintf(char *out, size_t size, const char *fmt, va_list ap0)
{
	struct fmt_out o = { out, size, 0 };
	va_list ap;
	const char *p = fmt;

	va_copy(ap, ap0);
	for (;;) {
		/* Literal runs are a few octets: a plain loop beats strchrnul(). */
		const char *pct = p;
		while (*pct && *pct != '%')
			pct++;
		if (pct > p)
			put(&o, p, (size_t)(pct - p));
		if (*pct == '\0')
			break;
		p = pct + 1;
		if (*p == '%') {
			put(&o, "%", 1);
			p++;
			continue;
		}
		/* The common plain conversions skip the general parse. */
		if (*p == 's') {
			const char *s = va_arg(ap, const char *);
			if (!s)
				goto fallback;     /* glibc's "(null)" */
			put(&o, s, strlen(s));
			p++;
			continue;
		}
		struct fmt_spec sp = { .width = -1, .prec = -1 };
		for (;; p++) {
			if (*p == '-') sp.minus = true;
			else if (*p == '0') sp.zero = true;
			else if (*p == '+') sp.plus = true;
			else if (*p == ' ') sp.space = true;
			else if (*p == '#') sp.alt = true;
			else break;
		}
		if (*p == '*') {
			int w = va_arg(ap, int);
			if (w < 0) {
				sp.minus = true;
				w = w == INT_MIN ? INT_MAX : -w;
			}
			sp.width = w;
			p++;
		} else if (*p >= '1' && *p <= '9') {
			sp.width = 0;
			while (*p >= '0' && *p <= '9' && sp.width < 100000)
				sp.width = sp.width * 10 + (*p++ - '0');
			if (*p >= '0' && *p <= '9')
				goto fallback;
		}
		if (*p == '.') {
			p++;
			if (*p == '*') {
				int pr = va_arg(ap, int);
				sp.prec = pr < 0 ? -1 : pr;
				p++;
			} else {
				sp.prec = 0;
				while (*p >= '0' && *p <= '9' && sp.prec < 100000)
					sp.prec = sp.prec * 10 + (*p++ - '0');
				if (*p >= '0' && *p <= '9')
					goto fallback;
			}
		}
		if (sp.minus)
			sp.zero = false;
		if (sp.plus)
			sp.space = false;
		switch (*p) {
		case 'h':
			sp.len = p[1] == 'h' ? 'H' : 'h';
			p += p[1] == 'h' ? 2 : 1;
			break;
		case 'l':
			sp.len = p[1] == 'l' ? 'q' : 'l';
			p += p[1] == 'l' ? 2 : 1;
			break;
		case 'z': case 'j': case 't': case 'L':
			sp.len = (unsigned char)*p++;
			break;
		}
		sp.conv = *p++;
		switch (sp.conv) {
		case 'd':
		case 'i': {
			if (sp.len == 'L')
				goto fallback;
			intmax_t v = signed_arg(&sp, &ap);
			integer(&o, &sp, v < 0 ? (uintmax_t)0 - (uintmax_t)v : (uintmax_t)v, v < 0);
			break;
		}
		case 'u': case 'o': case 'x': case 'X':
			if (sp.len == 'L')
				goto fallback;
			integer(&o, &sp, unsigned_arg(&sp, &ap), false);
			break;
		case 'p': {
			if (sp.len || sp.zero || sp.plus || sp.space || sp.alt || sp.prec >= 0)
				goto fallback;
			void *v = va_arg(ap, void *);
			if (!v) {
				field(&o, &sp, "", 0, 0, "(nil)", 5);
				break;
			}
			integer(&o, &sp, (uintptr_t)v, false);
			break;
		}
		case 'c': {
			if (sp.len || sp.zero || sp.prec >= 0)
				goto fallback;
			char c = (char)va_arg(ap, int);
			sp.zero = false;
			field(&o, &sp, "", 0, 0, &c, 1);
			break;
		}
		case 's': {
			if (sp.len || sp.zero)
				goto fallback;
			const char *s = va_arg(ap, const char *);
			if (!s)
				goto fallback;     /* glibc's "(null)" rules */
			size_t n = sp.prec >= 0 ? strnlen(s, (size_t)sp.prec) : strlen(s);
			field(&o, &sp, "", 0, 0, s, n);
			break;
		}
		case 'f': case 'F': case 'e': case 'E': case 'g': case 'G': case 'a': case 'A':
			if (sp.len && sp.len != 'L' && sp.len != 'l')
				goto fallback;
			if (sp.len == 'l')
				sp.len = 0;        /* %lf is %f */
			if (!floating(&o, &sp, &ap))
				goto fallback;
			break;
		default:
			goto fallback;
		}
	}
	va_end(ap);
	if (size > 0)
		out[o.len < size ? o.len : size - 1] = '\0';
	if (o.len > INT_MAX)
		return -1;
	return (int)o.len;
fallback:
	va_end(ap);
	return vsnprintf(out, size, fmt, ap0);
}

/* fmt_snprintf - see fmt.h. */
int
fmt_snprintf(char *out, size_t size, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = fmt_vsnprintf(out, size, fmt, ap);
	va_end(ap);
	return n;
}
