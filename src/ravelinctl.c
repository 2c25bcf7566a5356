/*
 * ravelinctl.c - command-line client of ravelin's stats socket.
 *
 *   ravelinctl [-s SOCKET] COMMAND ...        send one command, print the answer
 *   ravelinctl [-s SOCKET] top [-n COUNT] [-d SECONDS]
 *
 * A command's words are joined into one line; the answer is printed as is.
 * Exit status 1 when the socket cannot be reached, the answer starts with
 * "error:", or it is empty where it never is (all but the lists). `top` polls `show stats` and `show info` and redraws a plain
 * ANSI screen with per-second rates taken from two successive snapshots.
 * It reads only the JSON stats_json() writes (an object of integers and
 * objects of integers) with a small strict parser of its own.
 */

/* System. */
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* Project. */
#include "control.h"
#include "fmt.h"

#define CTL_SOCKET_DEFAULT "/run/ravelin/stats.sock"
/* Largest answer read; counters with thousands of rules stay far below. */
#define CTL_ANSWER_MAX (64u << 20)
/* Longest JSON string accepted (labels are truncated to 200 bytes by stats.c). */
#define CTL_JSTR_MAX 1024

struct ctl_buf {
	char *p;
	size_t len, cap;
};

/* One value of a snapshot: name, label ("" when unlabelled), value. */
struct ctl_entry {
	char *name, *label;
	int64_t value;
};

struct ctl_snap {
	struct ctl_entry *v;
	size_t n, cap;
	double t;		/* monotonic seconds when taken */
};

static volatile sig_atomic_t ctl_stop, ctl_winch;

/* ctl_usage - print usage and fail. */
static int
ctl_usage(void)
{
	fprintf(stderr, "usage: ravelinctl [-s SOCKET] COMMAND ...\n"
	    "       ravelinctl [-s SOCKET] top [-n COUNT] [-d SECONDS]\n"
	    "commands: show info|stats|metrics|sessions|config, show ratelimit KEY,\n"
	    "          clear ratelimit KEY, reload, help\n");
	return 1;
}

/* ctl_buf_add - append bytes, growing as needed. */
static int
ctl_buf_add(struct ctl_buf *b, const char *p, size_t len)
{
	char *np;
	size_t cap;

	if (len > SIZE_MAX / 4 - b->len)
		return -1;
	/* b->p == NULL: an empty buffer always allocates (even for len 0). */
	if (b->p == NULL || b->len + len + 1 > b->cap) {
		cap = b->cap ? b->cap : 4096;
		while (cap < b->len + len + 1)
			cap *= 2;
		if ((np = realloc(b->p, cap)) == NULL)
			return -1;
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, p, len);
	b->len += len;
	b->p[b->len] = '\0';
	return 0;
}

/* ctl_request - send one command line, read the whole answer; 0 or -1 (errno). */
static int
ctl_request(const char *path, const char *cmd, struct ctl_buf *ans)
{
	struct sockaddr_un sun;
	struct timeval tv = {10, 0};
	char buf[8192];
	size_t off = 0, len = strlen(cmd);
	ssize_t n;
	int fd, saved;

	ans->len = 0;
	if (strlen(path) >= sizeof(sun.sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, path, strlen(path));
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1)
		goto fail;
	while (off < len) {
		if ((n = send(fd, cmd + off, len - off, MSG_NOSIGNAL)) == -1) {
			if (errno == EINTR)
				continue;
			goto fail;
		}
		off += n;
	}
	shutdown(fd, SHUT_WR);
	for (;;) {
		if ((n = read(fd, buf, sizeof(buf))) == -1) {
			if (errno == EINTR && !ctl_stop)
				continue;
			goto fail;
		}
		if (n == 0)
			break;
		if (ans->len + n > CTL_ANSWER_MAX || ctl_buf_add(ans, buf, n) == -1) {
			errno = EFBIG;
			goto fail;
		}
	}
	close(fd);
	if (ans->p == NULL && ctl_buf_add(ans, "", 0) == -1)
		return -1;
	return 0;
fail:
	saved = errno;
	close(fd);
	errno = saved;
	return -1;
}

/* ctl_snap_clear - forget a snapshot's values. */
static void
ctl_snap_clear(struct ctl_snap *s)
{
	size_t i;

	for (i = 0; i < s->n; i++) {
		free(s->v[i].name);
		free(s->v[i].label);
	}
	free(s->v);
	memset(s, 0, sizeof(*s));
}

/* ctl_snap_add - append one value; takes ownership of name and label. */
static int
ctl_snap_add(struct ctl_snap *s, char *name, char *label, int64_t value)
{
	struct ctl_entry *nv;

	if (name == NULL || label == NULL)
		return -1;
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 64;
		if ((nv = realloc(s->v, cap * sizeof(*nv))) == NULL)
			return -1;
		s->v = nv;
		s->cap = cap;
	}
	s->v[s->n].name = name;
	s->v[s->n].label = label;
	s->v[s->n++].value = value;
	return 0;
}

/* ctl_json_ws - skip JSON white space. */
static void
ctl_json_ws(const char **p, const char *end)
{
	while (*p < end && (**p == ' ' || **p == '\t' || **p == '\n' || **p == '\r'))
		(*p)++;
}

/* ctl_json_string - a JSON string into a new allocation; NULL on bad input. */
static char *
ctl_json_string(const char **p, const char *end)
{
	struct ctl_buf b = {0};
	unsigned cp;
	char c, u[4];
	int i;

	if (*p >= end || **p != '"')
		return NULL;
	for ((*p)++; *p < end && **p != '"'; (*p)++) {
		c = **p;
		if ((unsigned char)c < 0x20 || b.len > CTL_JSTR_MAX)
			goto bad;
		if (c != '\\') {
			if (ctl_buf_add(&b, &c, 1) == -1)
				goto bad;
			continue;
		}
		if (++(*p) >= end)
			goto bad;
		switch (**p) {
		case '"': case '\\': case '/': c = **p; break;
		case 'b': c = '\b'; break;
		case 'f': c = '\f'; break;
		case 'n': c = '\n'; break;
		case 'r': c = '\r'; break;
		case 't': c = '\t'; break;
		case 'u':
			if (end - *p < 5)
				goto bad;
			for (cp = 0, i = 1; i <= 4; i++) {
				char h = (*p)[i];

				cp <<= 4;
				if (h >= '0' && h <= '9') cp |= h - '0';
				else if (h >= 'a' && h <= 'f') cp |= h - 'a' + 10;
				else if (h >= 'A' && h <= 'F') cp |= h - 'A' + 10;
				else goto bad;
			}
			*p += 4;
			/* stats.c escapes only control characters this way. */
			if (cp == 0 || cp > 0x7f) {
				u[0] = '?';
			} else
				u[0] = (char)cp;
			if (ctl_buf_add(&b, u, 1) == -1)
				goto bad;
			continue;
		default:
			goto bad;
		}
		if (ctl_buf_add(&b, &c, 1) == -1)
			goto bad;
	}
	if (*p >= end)
		goto bad;
	(*p)++;
	if (b.p == NULL && ctl_buf_add(&b, "", 0) == -1)
		return NULL;
	return b.p;
bad:
	free(b.p);
	return NULL;
}

/* ctl_json_int - an integer (stats_json writes nothing else); 0 or -1. */
static int
ctl_json_int(const char **p, const char *end, int64_t *v)
{
	int neg = 0, digits = 0;
	uint64_t n = 0;

	if (*p < end && **p == '-') {
		neg = 1;
		(*p)++;
	}
	while (*p < end && **p >= '0' && **p <= '9') {
		if (n > (UINT64_MAX - 9) / 10)
			return -1;
		n = n * 10 + (**p - '0');
		(*p)++;
		digits++;
	}
	if (digits == 0 || (*p < end && (**p == '.' || **p == 'e' || **p == 'E')))
		return -1;
	*v = neg ? -(int64_t)n : (int64_t)n;
	return 0;
}

/* ctl_json_parse - {"name": N, "name": {"label": N, ...}, ...} into s; 0 or -1. */
static int
ctl_json_parse(const char *text, size_t len, struct ctl_snap *s)
{
	const char *p = text, *end = text + len;
	char *name = NULL, *label;
	int64_t v;

	ctl_json_ws(&p, end);
	if (p >= end || *p++ != '{')
		return -1;
	ctl_json_ws(&p, end);
	if (p < end && *p == '}')
		goto close;
	for (;;) {
		ctl_json_ws(&p, end);
		if ((name = ctl_json_string(&p, end)) == NULL)
			return -1;
		ctl_json_ws(&p, end);
		if (p >= end || *p++ != ':')
			goto bad;
		ctl_json_ws(&p, end);
		if (p < end && *p == '{') {
			/* A labelled counter: one entry per label. */
			p++;
			ctl_json_ws(&p, end);
			while (p < end && *p != '}') {
				char *dup = NULL;
				if ((label = ctl_json_string(&p, end)) == NULL)
					goto bad;
				ctl_json_ws(&p, end);
				if (p >= end || *p++ != ':' || (ctl_json_ws(&p, end),
				    ctl_json_int(&p, end, &v)) == -1 ||
				    ctl_snap_add(s, (dup = strdup(name)), label, v) == -1) {
					free(dup);
					free(label);
					goto bad;
				}
				ctl_json_ws(&p, end);
				if (p < end && *p == ',') {
					p++;
					ctl_json_ws(&p, end);
				} else if (p >= end || *p != '}')
					goto bad;
			}
			if (p >= end)
				goto bad;
			p++;
			free(name);
		} else {
			if (ctl_json_int(&p, end, &v) == -1 || (label = strdup("")) == NULL)
				goto bad;
			if (ctl_snap_add(s, name, label, v) == -1) {
				free(label);
				goto bad;
			}
		}
		name = NULL;
		ctl_json_ws(&p, end);
		if (p < end && *p == ',') {
			p++;
			continue;
		}
		break;
	}
	if (p >= end || *p != '}')
		return -1;
close:
	p++;
	ctl_json_ws(&p, end);
	return p == end ? 0 : -1;
bad:
	free(name);
	return -1;
}

/* ctl_get - a value of a snapshot, or 0 (missing counters are still zero). */
static int64_t
ctl_get(const struct ctl_snap *s, const char *name, const char *label)
{
	size_t i;

	for (i = 0; i < s->n; i++)
		if (strcmp(s->v[i].name, name) == 0 && strcmp(s->v[i].label, label) == 0)
			return s->v[i].value;
	return 0;
}

/* ctl_now - monotonic seconds. */
static double
ctl_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ctl_fetch - one `show stats` snapshot; 0 or -1 with a message in err. */
static int
ctl_fetch(const char *path, struct ctl_snap *s, char *err, size_t errlen)
{
	struct ctl_buf ans = {0};

	ctl_snap_clear(s);
	if (ctl_request(path, "show stats\n", &ans) == -1) {
		fmt_snprintf(err, errlen, "%s: %s", path, strerror(errno));
		free(ans.p);
		return -1;
	}
	s->t = ctl_now();
	if (ctl_json_parse(ans.p, ans.len, s) == -1) {
		fmt_snprintf(err, errlen, "%s: unreadable answer to show stats", path);
		ctl_snap_clear(s);
		free(ans.p);
		return -1;
	}
	free(ans.p);
	return 0;
}

/* The rows of `top`: title, counter, and whether it is a gauge (no rate). */
static const struct {
	const char *title, *name;
	int gauge;
} ctl_top_rows[] = {
	{"connections", "connections_total", 0},
	{"active connections", "connections_active", 1},
	{"messages accepted", "messages_accepted_total", 0},
	{"messages rejected", "messages_rejected_total", 0},
	{"messages tempfailed", "messages_tempfailed_total", 0},
	{"messages discarded", "messages_discarded_total", 0},
	{"recipients rejected", "recipients_rejected_total", 0},
	{"relay denied", "relay_denied_total", 0},
	{"auth success", "auth_success_total", 0},
	{"auth failures", "auth_failure_total", 0},
	{"rate-limit hits", "ratelimit_hits_total", 0},
	{"spoofs detected", "spoof_detected_total", 0},
	{"backend errors", "backend_errors_total", 0},
};

/* Labelled counters shown label by label. */
static const struct {
	const char *title, *name;
} ctl_top_labelled[] = {
	{"spf", "spf_result_total"},
	{"dkim", "dkim_result_total"},
	{"dmarc", "dmarc_result_total"},
	{"rule", "rule_hits_total"},
	{"checks", "policy_checks_total"},
};

/* Screen state shared by drawing and the SIGWINCH redraw. */
struct ctl_screen {
	int tty;
	unsigned rows, cols, shown;
	const char *path;
	char info[512];
};

/* ctl_line - print one line cut to the terminal width, counting rows. */
static void
ctl_line(struct ctl_screen *sc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void
ctl_line(struct ctl_screen *sc, const char *fmt, ...)
{
	char buf[1024], *p;
	va_list ap;

	if (sc->rows && sc->shown + 1 >= sc->rows)
		return;
	va_start(ap, fmt);
	fmt_vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	/* Labels are data: never let one move the cursor or break the screen. */
	for (p = buf; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	if (sc->cols && strlen(buf) > sc->cols)
		buf[sc->cols] = '\0';
	fputs(buf, stdout);
	fputs(sc->tty ? "\033[K\n" : "\n", stdout);
	sc->shown++;
}

/* ctl_row - one counter row: rate from the two snapshots, and the total. */
static void
ctl_row(struct ctl_screen *sc, const char *title, int64_t a, int64_t b, double dt, int gauge)
{
	if (gauge)
		ctl_line(sc, "%-34s %12s %14lld", title, "", (long long)b);
	else
		ctl_line(sc, "%-34s %12.1f %14lld", title,
		    dt > 0 && b >= a ? (b - a) / dt : 0.0, (long long)b);
}

/* ctl_draw - the whole screen from snapshots a (older) and b (newer). */
static void
ctl_draw(struct ctl_screen *sc, const struct ctl_snap *a, const struct ctl_snap *b,
	 unsigned iter, const char *err)
{
	struct winsize ws;
	double dt = b->t - a->t;
	char title[256], stamp[64];
	time_t now = time(NULL);
	size_t i, k;

	sc->rows = sc->cols = sc->shown = 0;
	if (sc->tty && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0) {
		sc->rows = ws.ws_row;
		sc->cols = ws.ws_col;
	}
	fputs(sc->tty ? "\033[H\033[2J" : "----\n", stdout);
	strftime(stamp, sizeof(stamp), "%H:%M:%S", localtime(&now));
	ctl_line(sc, "ravelin top  %s  %s  refresh %u  (Ctrl-C quits)", sc->path, stamp, iter);
	ctl_line(sc, "%s", sc->info);
	ctl_line(sc, "%s", err ? err : "");
	ctl_line(sc, "%-34s %12s %14s", "COUNTER", "PER SEC", "TOTAL");
	for (i = 0; i < sizeof(ctl_top_rows) / sizeof(ctl_top_rows[0]); i++)
		ctl_row(sc, ctl_top_rows[i].title, ctl_get(a, ctl_top_rows[i].name, ""),
		    ctl_get(b, ctl_top_rows[i].name, ""), dt, ctl_top_rows[i].gauge);
	for (k = 0; k < sizeof(ctl_top_labelled) / sizeof(ctl_top_labelled[0]); k++)
		for (i = 0; i < b->n; i++) {
			if (strcmp(b->v[i].name, ctl_top_labelled[k].name) != 0)
				continue;
			fmt_snprintf(title, sizeof(title), "%s %s", ctl_top_labelled[k].title,
			    b->v[i].label);
			ctl_row(sc, title, ctl_get(a, b->v[i].name, b->v[i].label),
			    b->v[i].value, dt, 0);
		}
	fflush(stdout);
}

/* ctl_info - one-line summary from `show info`. */
static void
ctl_info(const char *path, char *out, size_t len)
{
	struct ctl_buf ans = {0};
	char *line, *save = NULL;
	size_t off = 0;

	out[0] = '\0';
	if (ctl_request(path, "show info\n", &ans) == -1 || strncmp(ans.p, "error:", 6) == 0) {
		free(ans.p);
		return;
	}
	for (line = strtok_r(ans.p, "\n", &save); line && off < len;
	    line = strtok_r(NULL, "\n", &save))
		off += fmt_snprintf(out + off, len - off, "%s%s", off ? "  " : "", line);
	free(ans.p);
}

/* ctl_signal - SIGINT/SIGTERM stop, SIGWINCH redraws. */
static void
ctl_signal(int sig)
{
	if (sig == SIGWINCH)
		ctl_winch = 1;
	else
		ctl_stop = 1;
}

/* ctl_top - the live view. */
static int
ctl_top(const char *path, int argc, char **argv)
{
	struct ctl_snap prev = {0}, cur = {0}, next = {0};
	struct ctl_screen sc = {0};
	struct sigaction sa;
	struct timespec ts;
	double delay = 1.0, deadline, left;
	long count = -1;
	unsigned iter = 0;
	char err[512];
	int ch, failed = 0;

	optind = 1;
	while ((ch = getopt(argc, argv, "n:d:")) != -1) {
		switch (ch) {
		case 'n': count = strtol(optarg, NULL, 10); break;
		case 'd': delay = strtod(optarg, NULL); break;
		default: return ctl_usage();
		}
	}
	if (optind != argc || count == 0 || !(delay >= 0.05))
		return ctl_usage();
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = ctl_signal;	/* no SA_RESTART: nanosleep must wake up */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGWINCH, &sa, NULL);
	sc.tty = isatty(STDOUT_FILENO);
	sc.path = path;
	if (ctl_fetch(path, &cur, err, sizeof(err)) == -1) {
		fprintf(stderr, "ravelinctl: %s\n", err);
		return 1;
	}
	prev.t = cur.t;
	if (sc.tty)
		fputs("\033[?25l", stdout);
	while (!ctl_stop && (count < 0 || iter < (unsigned long)count)) {
		deadline = ctl_now() + delay;
		while (!ctl_stop && (left = deadline - ctl_now()) > 0) {
			ts.tv_sec = (time_t)left;
			ts.tv_nsec = (long)((left - ts.tv_sec) * 1e9);
			nanosleep(&ts, NULL);
			if (ctl_winch && iter > 0) {
				ctl_winch = 0;
				ctl_draw(&sc, &prev, &cur, iter, failed ? err : NULL);
			}
		}
		if (ctl_stop)
			break;
		iter++;
		ctl_info(path, sc.info, sizeof(sc.info));
		/* On failure the last good figures stay on screen under the error. */
		if ((failed = ctl_fetch(path, &next, err, sizeof(err)) == -1) == 0) {
			ctl_snap_clear(&prev);
			prev = cur;
			cur = next;
			memset(&next, 0, sizeof(next));
		}
		ctl_draw(&sc, &prev, &cur, iter, failed ? err : NULL);
	}
	if (sc.tty)
		fputs("\033[?25h", stdout);
	fflush(stdout);
	ctl_snap_clear(&prev);
	ctl_snap_clear(&cur);
	ctl_snap_clear(&next);
	return failed ? 1 : 0;
}

int
main(int argc, char **argv)
{
	const char *path = CTL_SOCKET_DEFAULT;
	struct ctl_buf cmd = {0}, ans = {0};
	int ch, i, rc;

	while ((ch = getopt(argc, argv, "+s:h")) != -1) {
		switch (ch) {
		case 's': path = optarg; break;
		default: return ctl_usage();
		}
	}
	argc -= optind;
	argv += optind;
	if (argc < 1)
		return ctl_usage();
	if (strcmp(argv[0], "top") == 0)
		return ctl_top(path, argc, argv);
	for (i = 0; i < argc; i++) {
		if (strpbrk(argv[i], "\r\n") != NULL) {
			fprintf(stderr, "ravelinctl: newline in command\n");
			free(cmd.p);
			return 1;
		}
		if ((i > 0 && ctl_buf_add(&cmd, " ", 1) == -1) ||
		    ctl_buf_add(&cmd, argv[i], strlen(argv[i])) == -1) {
			free(cmd.p);
			return 1;
		}
	}
	if (ctl_buf_add(&cmd, "\n", 1) == -1) {
		free(cmd.p);
		return 1;
	}
	if (cmd.len >= CONTROL_LINE_MAX) {
		fprintf(stderr, "ravelinctl: command too long\n");
		free(cmd.p);
		return 1;
	}
	if (ctl_request(path, cmd.p, &ans) == -1) {
		fprintf(stderr, "ravelinctl: %s: %s\n", path, strerror(errno));
		free(cmd.p);
		free(ans.p);
		return 1;
	}
	fwrite(ans.p, 1, ans.len, stdout);
	rc = strncmp(ans.p, "error:", 6) == 0 ? 1 : 0;
	/*
	 * Only a list may be empty; any other command always gets text (at
	 * least "ok"), so nothing means the daemon died while answering.
	 */
	if (ans.len == 0 && !(argc >= 2 && strcasecmp(argv[0], "show") == 0 &&
	    (strcasecmp(argv[1], "sessions") == 0 || strcasecmp(argv[1], "ratelimit") == 0))) {
		fprintf(stderr, "ravelinctl: %s: empty answer\n", path);
		rc = 1;
	}
	free(cmd.p);
	free(ans.p);
	return rc;
}
