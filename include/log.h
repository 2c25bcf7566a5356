/*
 * log.h - tiny logging API: syslog (facility mail) or stderr, session id first.
 */
#ifndef RAVELIN_LOG_H
#define RAVELIN_LOG_H

#include <stdarg.h>

enum log_dest { LOG_DEST_SYSLOG, LOG_DEST_STDERR };

/* log_init - choose the destination; verbose > 0 enables log_debug. */
void log_init(const char *ident, enum log_dest dest, int verbose);
/* log_set_verbose - change the level at run time (reload of log_level). */
void log_set_verbose(int verbose);

/* log_batch_begin - this thread (a worker's loop) gathers its stderr
 * lines and writes them once a round: arm(arg) asks for log_flush() at
 * the end of the round when the first line of one is buffered. */
void log_batch_begin(void (*arm)(void *), void *arg);
/* log_flush - write this thread's gathered lines now (end of a round, exit). */
void log_flush(void);

/* Each takes the session id (or NULL for process-wide lines) first. */
void log_info(const char *sid, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_warnx(const char *sid, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_debug(const char *sid, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void fatalx(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
