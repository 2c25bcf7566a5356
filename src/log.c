/*
 * log.c - the tiny logging API: syslog facility mail, or stderr, with the
 * session id first on every line (Postfix style, so fail2ban and pflogsumm
 * habits carry over).
 *
 * Public:
 *   log_init(), log_set_verbose(), log_info(), log_warnx(), log_debug(),
 *   fatalx(), log_batch_begin(), log_flush()
 */

/* System. */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

/* Project. */
#include "fmt.h"
#include "log.h"

static enum log_dest log_dest = LOG_DEST_STDERR;
static int log_verbose;		/* atomic: a reload may change it */
static const char *log_ident = "ravelin";
static int log_pid;

/* log_init - choose the destination; verbose > 0 enables log_debug. */
void
log_init(const char *ident, enum log_dest dest, int verbose)
{
	log_ident = ident;
	log_pid = (int)getpid();
	log_dest = dest;
	log_verbose = verbose;
	if (dest == LOG_DEST_SYSLOG)
		openlog(ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
}

/* log_set_verbose - a new log_level (reload); other threads see it at once. */
void
log_set_verbose(int verbose)
{
	__atomic_store_n(&log_verbose, verbose, __ATOMIC_RELAXED);
}

/* A worker's stderr lines of one loop round, written with one write(). */
struct log_batch {
	char buf[16384];
	size_t len;
	bool on;
	void (*arm)(void *);
	void *arg;
};
static __thread struct log_batch batch;

/* log_batch_begin - see log.h. */
void
log_batch_begin(void (*arm)(void *), void *arg)
{
	batch.len = 0;
	batch.arm = arm;
	batch.arg = arg;
	batch.on = true;
}

/* log_flush - see log.h. */
void
log_flush(void)
{
	if (batch.len > 0)
		(void)!write(STDERR_FILENO, batch.buf, batch.len);
	batch.len = 0;
}

/* emit - one whole stderr line: into the round's batch, or written now. */
static void
emit(const char *line, size_t len)
{
	if (!batch.on) {
		(void)!write(STDERR_FILENO, line, len);
		return;
	}
	/* A line is at most vlog()'s 2200 octets: it always fits once flushed. */
	if (batch.len + len > sizeof(batch.buf))
		log_flush();
	if (batch.len == 0 && batch.arm)
		batch.arm(batch.arg);
	memcpy(batch.buf + batch.len, line, len);
	batch.len += len;
}

/* stamp - "HH:MM:SS.mmm ident[pid]: " for a stderr line into out; its length.
 * Put together by hand from parts kept per thread: localtime_r() once a
 * second, " ident[pid]: " once. */
static size_t
stamp(char *out, size_t size)
{
	static __thread time_t last_sec = -1;
	static __thread char hms[16];
	static __thread char tail[96];
	static __thread size_t tail_len;
	static __thread const char *tail_ident;
	static __thread int tail_pid;
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	if (ts.tv_sec != last_sec) {
		struct tm tm;
		localtime_r(&ts.tv_sec, &tm);
		fmt_snprintf(hms, sizeof(hms), "%02d:%02d:%02d.", tm.tm_hour, tm.tm_min, tm.tm_sec);
		last_sec = ts.tv_sec;
	}
	if (tail_ident != log_ident || tail_pid != log_pid) {
		tail_ident = log_ident;
		tail_pid = log_pid;
		int n = fmt_snprintf(tail, sizeof(tail), " %s[%d]: ", log_ident, log_pid);
		tail_len = n < 0 ? 0 : (size_t)n < sizeof(tail) ? (size_t)n : sizeof(tail) - 1;
	}
	long ms = ts.tv_nsec / 1000000;
	if (size < 12 + tail_len + 1)
		return 0;
	memcpy(out, hms, 9);
	out[9] = (char)('0' + ms / 100);
	out[10] = (char)('0' + ms / 10 % 10);
	out[11] = (char)('0' + ms % 10);
	memcpy(out + 12, tail, tail_len);
	return 12 + tail_len;
}

/* vlog - format one line and send it; stderr lines are written whole. */
static void
vlog(int pri, const char *sid, const char *fmt, va_list ap)
{
	char line[2200];
	size_t off = log_dest == LOG_DEST_SYSLOG ? 0 : stamp(line, 128);
	char *msg = line + off;
	size_t room = sizeof(line) - off - 1;   /* one left for the newline */
	size_t n = 0;

	/* Formatted once, in place after the stamp. */
	if (sid) {
		size_t k = strnlen(sid, room - 3);
		memcpy(msg, sid, k);
		memcpy(msg + k, ": ", 3);
		n = k + 2;
	}
	int m = fmt_vsnprintf(msg + n, room - n, fmt, ap);
	if (m > 0)
		n = n + (size_t)m < room - 1 ? n + (size_t)m : room - 1;
	msg[n] = '\0';
	/* Never let a client-controlled byte break the one-line format. */
	for (char *c = msg; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			*c = '?';
	if (log_dest == LOG_DEST_SYSLOG) {
		syslog(pri, "%s", msg);
		return;
	}
	msg[n] = '\n';
	emit(line, off + n + 1);
}

/* log_info - an ordinary event. */
void
log_info(const char *sid, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog(LOG_INFO, sid, fmt, ap);
	va_end(ap);
}

/* log_warnx - something an operator should look at. */
void
log_warnx(const char *sid, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog(LOG_WARNING, sid, fmt, ap);
	va_end(ap);
}

/* log_debug - detail shown with log_level > 0. */
void
log_debug(const char *sid, const char *fmt, ...)
{
	va_list ap;
	if (__atomic_load_n(&log_verbose, __ATOMIC_RELAXED) <= 0)
		return;
	va_start(ap, fmt);
	vlog(LOG_DEBUG, sid, fmt, ap);
	va_end(ap);
}

/* fatalx - a broken invariant or a startup failure: log and exit. */
void
fatalx(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog(LOG_CRIT, NULL, fmt, ap);
	va_end(ap);
	log_flush();
	exit(1);
}
