/*
 * log.c - the tiny logging API: syslog facility mail, or stderr, with the
 * session id first on every line (Postfix style, so fail2ban and pflogsumm
 * habits carry over).
 *
 * Public:
 *   log_init(), log_set_verbose(), log_info(), log_warnx(), log_debug(),
 *   fatalx()
 */

/* System. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

/* Project. */
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

/* vlog - format one line and send it; stderr lines are written whole. */
static void
vlog(int pri, const char *sid, const char *fmt, va_list ap)
{
	char msg[2048];
	int n = 0;

	if (sid)
		n = snprintf(msg, sizeof(msg), "%s: ", sid);
	vsnprintf(msg + n, sizeof(msg) - n, fmt, ap);
	/* Never let a client-controlled byte break the one-line format. */
	for (char *c = msg; *c; c++)
		if ((unsigned char)*c < 0x20 || *c == 0x7f)
			*c = '?';
	if (log_dest == LOG_DEST_SYSLOG) {
		syslog(pri, "%s", msg);
		return;
	}
	/* localtime_r() once a second per thread, not once a line. */
	static __thread time_t last_sec = -1;
	static __thread char hms[16];
	char line[2200];
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	if (ts.tv_sec != last_sec) {
		struct tm tm;
		localtime_r(&ts.tv_sec, &tm);
		snprintf(hms, sizeof(hms), "%02d:%02d:%02d", tm.tm_hour, tm.tm_min, tm.tm_sec);
		last_sec = ts.tv_sec;
	}
	int len = snprintf(line, sizeof(line), "%s.%03ld %s[%d]: %s\n", hms,
			   ts.tv_nsec / 1000000, log_ident, log_pid, msg);
	if (len > (int)sizeof(line) - 1)
		len = sizeof(line) - 1;
	(void)!write(STDERR_FILENO, line, len);
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
	exit(1);
}
