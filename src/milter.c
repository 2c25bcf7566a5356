/*
 * milter.c - ravelin -M: the same policy engine behind libmilter.
 *
 * Each milter connection gets a session object of its own, filled from
 * the callbacks and the MTA's macros ({auth_authen}, {tls_version},
 * {daemon_name}, {if_addr}, i) instead of from an SMTP dialogue, so the
 * built-in checks, the rules and the counters are exactly those of proxy
 * mode. The message is fed through the same DATA parser (re-stuffed as
 * it would arrive on the wire), so DKIM streams and the From: checks see
 * what the proxy would see. Checks that wait run on libmilter's own
 * connection thread, bounded by the same DNS and Redis timeouts.
 *
 * Public:
 *   milter_run()
 */

/* System. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* Library. */
#include <event2/buffer.h>
#include <event2/thread.h>
#include <libmilter/mfapi.h>

/* Project. */
#include "config.h"
#include "control.h"
#include "log.h"
#include "message.h"
#include "milter.h"
#include "policy.h"
#include "policy_runtime.h"
#include "server.h"
#include "smtp_internal.h"
#include "smtp_session.h"
#include "stats.h"
#include "version.h"

/* One process-wide server and worker: libmilter owns the threads. */
static struct server milter_srv;
static struct worker milter_worker;
static struct server_listener milter_li;

struct milter_conn {
	struct smtp_session *s;
	bool leadspc;           /* the MTA keeps the space after "Name:" */
	bool bol;               /* body at the start of a line (for stuffing) */
	bool cr;                /* body's last byte was CR */
	char qid[32];
};

/* conn - our state for ctx. */
static struct milter_conn *
conn(SMFICTX *ctx)
{
	return smfi_getpriv(ctx);
}

/* reply - map a verdict to a milter answer with the proxy's reply text. */
static sfsistat
reply(SMFICTX *ctx, struct milter_conn *mc, const char *stage, const struct policy_verdict *v)
{
	struct smtp_session *s = mc->s;
	char code[4], ecode[16], text[512];

	switch (v->action) {
	case POLICY_REJECT:
	case POLICY_TEMPFAIL:
		/* "550 5.7.1 text" -> code, enhanced code, text */
		if (sscanf(v->reply, "%3s %15s %511[^\n]", code, ecode, text) == 3)
			smfi_setreply(ctx, code, ecode, text);
		log_info(s->id, "%s: %s from %s[%s]: %s; from=<%s> helo=<%s> rule=%s",
			 v->action == POLICY_REJECT ? "reject" : "tempfail", stage, s->client_name,
			 s->client_ip, v->reply, s->txn ? s->txn->mail.addr : "", s->helo, v->rule);
		if (s->txn)
			s->txn->last_refusal = atoi(v->reply);
		return v->action == POLICY_REJECT ? SMFIS_REJECT : SMFIS_TEMPFAIL;
	case POLICY_DISCARD:
		log_info(s->id, "discard: from=<%s> rule=%s", s->txn ? s->txn->mail.addr : "", v->rule);
		return SMFIS_DISCARD;
	default:
		return SMFIS_CONTINUE;
	}
}

/* The verdict of a stage: without an event loop, policy_run() does its
 * work on this thread and calls done() before it returns. */
static __thread struct policy_verdict stage_verdict;

/* keep - policy_done_fn: copy the verdict. */
static void
keep(struct smtp_session *s, const struct policy_verdict *v)
{
	stage_verdict = *v;
}

/* run - one stage, synchronously. */
static const struct policy_verdict *
run(struct smtp_session *s, enum policy_stage st)
{
	memset(&stage_verdict, 0, sizeof(stage_verdict));
	policy_run(s, st, keep);
	return &stage_verdict;
}

/* macros - facts the proxy would know itself. */
static void
macros(SMFICTX *ctx, struct smtp_session *s)
{
	const char *v;

	if ((v = smfi_getsymval(ctx, "{auth_authen}")) && *v) {
		s->auth = true;
		snprintf(s->auth_user, sizeof(s->auth_user), "%s", v);
	}
	if ((v = smfi_getsymval(ctx, "{tls_version}")) && *v) {
		s->tls = true;
		snprintf(s->tls_info, sizeof(s->tls_info), "%s", v);
	}
}

/* m_connect - a new SMTP client at the MTA. */
static sfsistat
m_connect(SMFICTX *ctx, char *hostname, _SOCK_ADDR *sa)
{
	struct milter_conn *mc = conn(ctx);
	struct smtp_session *s = calloc(1, sizeof(*s));

	if (!mc)
		mc = calloc(1, sizeof(*mc));
	if (!mc || !s) {
		free(mc);
		free(s);
		smfi_setpriv(ctx, NULL);
		return SMFIS_TEMPFAIL;
	}
	mc->s = s;
	s->w = &milter_worker;
	s->li = &milter_li;
	s->cf = server_config(&milter_srv);
	s->refs = 1;
	s->fd = -1;
	s->state = SS_CMD;
	s->started = time(NULL);
	unsigned long seq = __atomic_add_fetch(&milter_srv.session_seq, 1, __ATOMIC_RELAXED);
	snprintf(s->id, sizeof(s->id), "%08lX", (seq * 2654435761UL) & 0xffffffffUL);
	if (sa && (sa->sa_family == AF_INET || sa->sa_family == AF_INET6))
		memcpy(&s->peer, sa, sa->sa_family == AF_INET ? sizeof(struct sockaddr_in) :
							     sizeof(struct sockaddr_in6));
	smtp_addr_format(s);
	if (hostname && hostname[0] && hostname[0] != '[')
		snprintf(s->client_name, sizeof(s->client_name), "%s", hostname);
	smfi_setpriv(ctx, mc);
	stats_inc(milter_worker.stats, STATS_CONNECTIONS_TOTAL);
	stats_gauge_add(milter_worker.stats, STATS_CONNECTIONS_ACTIVE, 1);
	log_info(s->id, "connect from %s[%s] listener=milter", s->client_name, s->client_ip);
	macros(ctx, s);
	return reply(ctx, mc, "CONNECT", run(s, PS_CONNECT));
}

/* m_helo - HELO/EHLO. */
static sfsistat
m_helo(SMFICTX *ctx, char *helo)
{
	struct milter_conn *mc = conn(ctx);

	snprintf(mc->s->helo, sizeof(mc->s->helo), "%s", helo ? helo : "");
	mc->s->esmtp = true;
	return reply(ctx, mc, "HELO", run(mc->s, PS_HELO));
}

/* join - "FROM:<addr> params" from libmilter's argv. */
static void
join(char *buf, size_t len, const char *kw, char **argv)
{
	size_t n = snprintf(buf, len, "%s%s", kw, argv[0]);
	for (int i = 1; argv[i] && n < len; i++)
		n += snprintf(buf + n, len - n, " %s", argv[i]);
}

/* m_envfrom - MAIL FROM: a new transaction. */
static sfsistat
m_envfrom(SMFICTX *ctx, char **argv)
{
	struct milter_conn *mc = conn(ctx);
	struct smtp_session *s = mc->s;
	char arg[SMTP_LINE_MAX + 16];

	smtp_txn_end(s, false);
	macros(ctx, s);
	struct smtp_txn *t = calloc(1, sizeof(*t));
	if (!t)
		return SMFIS_TEMPFAIL;
	join(arg, sizeof(arg), "FROM:", argv);
	if (smtp_path_parse(arg, true, &t->mail) != SMTP_PATH_OK) {
		/* The MTA accepted it; judge what we can of the address. */
		memset(&t->mail, 0, sizeof(t->mail));
		snprintf(t->mail.addr, sizeof(t->mail.addr), "%.*s", (int)strcspn(argv[0] + 1, ">"),
			 argv[0][0] == '<' ? argv[0] + 1 : argv[0]);
		const char *at = strrchr(t->mail.addr, '@');
		if (at)
			snprintf(t->mail.domain, sizeof(t->mail.domain), "%s", at + 1);
		t->mail.null_path = !t->mail.addr[0];
	}
	t->started = time(NULL);
	s->txn = t;
	const char *qid = smfi_getsymval(ctx, "i");
	snprintf(mc->qid, sizeof(mc->qid), "%s", qid ? qid : "");
	return reply(ctx, mc, "MAIL", run(s, PS_MAIL));
}

/* m_envrcpt - one RCPT TO. */
static sfsistat
m_envrcpt(SMFICTX *ctx, char **argv)
{
	struct milter_conn *mc = conn(ctx);
	struct smtp_session *s = mc->s;
	struct smtp_txn *t = s->txn;
	char arg[SMTP_LINE_MAX + 16];

	if (!t)
		return SMFIS_CONTINUE;
	join(arg, sizeof(arg), "TO:", argv);
	if (smtp_path_parse(arg, false, &t->rcpt) != SMTP_PATH_OK)
		return SMFIS_CONTINUE;
	t->rcpt_attempts++;
	const struct policy_verdict *v = run(s, PS_RCPT);
	sfsistat r = reply(ctx, mc, "RCPT", v);
	if (r != SMFIS_CONTINUE) {
		stats_inc(milter_worker.stats, STATS_RECIPIENTS_REJECTED_TOTAL);
		return r;
	}
	struct smtp_rcpt *nr = realloc(t->rcpts, (t->nrcpts + 1) * sizeof(*nr));
	if (!nr)
		return SMFIS_TEMPFAIL;
	t->rcpts = nr;
	nr[t->nrcpts].addr = strdup(t->rcpt.addr);
	nr[t->nrcpts].domain = strdup(t->rcpt.domain);
	nr[t->nrcpts].arg = NULL;
	t->nrcpts++;
	return SMFIS_CONTINUE;
}

/* m_data - DATA: start the message parser. */
static sfsistat
m_data(SMFICTX *ctx)
{
	struct milter_conn *mc = conn(ctx);
	struct smtp_session *s = mc->s;
	struct config *cf = s->cf;

	if (!s->txn)
		return SMFIS_CONTINUE;
	const struct policy_verdict *v = run(s, PS_DATA);
	if (v->action == POLICY_REJECT || v->action == POLICY_TEMPFAIL)
		return reply(ctx, mc, "DATA", v);
	struct msg_limits lim = {
		.max_size = (size_t)-1,   /* the MTA enforces its own limit */
		.max_header_fields = cf->max_header_fields,
		.max_header_bytes = 1024 * 1024,
		.spool_memory = cf->spool_memory,
		.normalize_newlines = true,
		.long_lines_pass = true,
	};
	s->txn->msg = msg_parser_new(&lim, policy_stream_ops(s), s);
	mc->bol = true;
	return s->txn->msg ? SMFIS_CONTINUE : SMFIS_TEMPFAIL;
}

/* feed - bytes into the parser as the wire would carry them. */
static void
feed(struct milter_conn *mc, const char *buf, size_t len)
{
	size_t used;
	struct msg_parser *p = mc->s->txn ? mc->s->txn->msg : NULL;

	if (!p || !len)
		return;
	/* Dot-stuff at line starts so a "." line is content, not the end. */
	const char *q = buf, *end = buf + len;
	while (q < end) {
		if (mc->bol && *q == '.')
			msg_parser_feed(p, ".", 1, &used);
		const char *lf = memchr(q, '\n', (size_t)(end - q));
		size_t n = lf ? (size_t)(lf - q + 1) : (size_t)(end - q);
		msg_parser_feed(p, q, n, &used);
		mc->bol = lf != NULL;
		q += n;
	}
}

/* m_header - one header field. */
static sfsistat
m_header(SMFICTX *ctx, char *name, char *value)
{
	struct milter_conn *mc = conn(ctx);
	struct evbuffer *b = evbuffer_new();

	if (!b || !mc->s->txn || !mc->s->txn->msg) {
		if (b)
			evbuffer_free(b);
		return SMFIS_CONTINUE;
	}
	evbuffer_add_printf(b, "%s:%s", name, mc->leadspc ? "" : " ");
	/* Folded values come with bare LF from some MTAs: make them CRLF. */
	for (const char *v = value; *v; v++) {
		if (*v == '\n' && (v == value || v[-1] != '\r'))
			evbuffer_add(b, "\r", 1);
		evbuffer_add(b, v, 1);
	}
	evbuffer_add(b, "\r\n", 2);
	size_t len = evbuffer_get_length(b);
	feed(mc, (const char *)evbuffer_pullup(b, (ev_ssize_t)len), len);
	evbuffer_free(b);
	return SMFIS_CONTINUE;
}

/* m_eoh - end of headers. */
static sfsistat
m_eoh(SMFICTX *ctx)
{
	struct milter_conn *mc = conn(ctx);
	feed(mc, "\r\n", 2);
	mc->bol = true;
	return SMFIS_CONTINUE;
}

/* m_body - a body chunk (CRLF text, not stuffed). */
static sfsistat
m_body(SMFICTX *ctx, unsigned char *buf, size_t len)
{
	feed(conn(ctx), (const char *)buf, len);
	return SMFIS_CONTINUE;
}

/* headers_out - add our fields at the top, remove forged ones. */
static void
headers_out(SMFICTX *ctx, struct milter_conn *mc)
{
	struct smtp_session *s = mc->s;
	struct message *m = msg_parser_message(s->txn->msg);
	struct evbuffer *b = evbuffer_new();
	int ar_index = 0, pos = 0;

	if (!b)
		return;
	for (size_t i = 0; i < m->nheaders; i++) {
		if (!msg_header_is(&m->headers[i], "Authentication-Results"))
			continue;
		ar_index++;
		if (policy_drop_header(s, m->headers[i].raw, m->headers[i].len)) {
			smfi_chgheader(ctx, "Authentication-Results", ar_index, NULL);
			ar_index--;   /* later instances move up one */
		}
	}
	policy_headers(s, b);
	size_t len = evbuffer_get_length(b);
	char *text = malloc(len + 1);
	if (text) {
		evbuffer_remove(b, text, len);
		text[len] = '\0';
		/* Fields are "Name: value\r\n" with folds "\r\n\t". */
		char *p = text;
		while (*p) {
			char *end = strstr(p, "\r\n");
			while (end && (end[2] == ' ' || end[2] == '\t'))
				end = strstr(end + 2, "\r\n");
			if (!end)
				break;
			*end = '\0';
			char *colon = strchr(p, ':');
			if (colon) {
				*colon = '\0';
				char *v = colon + 1;
				if (!mc->leadspc && *v == ' ')
					v++;
				/* libmilter wants folds as bare LF. */
				for (char *r = v; (r = strstr(r, "\r\n")); )
					memmove(r, r + 1, strlen(r));
				smfi_insheader(ctx, pos++, p, v);
			}
			p = end + 2;
		}
		free(text);
	}
	evbuffer_free(b);
}

/* m_eom - end of message: the header..eom stages, then our headers. */
static sfsistat
m_eom(SMFICTX *ctx)
{
	struct milter_conn *mc = conn(ctx);
	struct smtp_session *s = mc->s;
	size_t used;

	if (!s->txn || !s->txn->msg)
		return SMFIS_CONTINUE;
	if (!mc->bol)
		feed(mc, "\r\n", 2);
	msg_parser_feed(s->txn->msg, ".\r\n", 3, &used);
	for (enum policy_stage st = PS_HEADER; st <= PS_EOM; st++) {
		const struct policy_verdict *v = run(s, st);
		if (v->action == POLICY_REJECT || v->action == POLICY_TEMPFAIL ||
		    v->action == POLICY_DISCARD) {
			sfsistat r = reply(ctx, mc, "END-OF-MESSAGE", v);
			smtp_txn_end(s, v->action == POLICY_DISCARD);
			return r;
		}
	}
	headers_out(ctx, mc);
	char checks[512];
	policy_summary(s, checks, sizeof(checks));
	log_info(s->id, "accepted: queue_id=%s from=<%s> size=%zu %s", mc->qid, s->txn->mail.addr,
		 msg_parser_message(s->txn->msg)->size, checks);
	smtp_txn_end(s, true);
	return SMFIS_CONTINUE;
}

/* m_abort - the transaction ended without a message. */
static sfsistat
m_abort(SMFICTX *ctx)
{
	struct milter_conn *mc = conn(ctx);
	if (mc)
		smtp_txn_end(mc->s, false);
	return SMFIS_CONTINUE;
}

/* m_close - the SMTP connection ended. */
static sfsistat
m_close(SMFICTX *ctx)
{
	struct milter_conn *mc = conn(ctx);

	if (!mc)
		return SMFIS_CONTINUE;
	smtp_txn_end(mc->s, false);
	log_info(mc->s->id, "disconnect from %s[%s]", mc->s->client_name, mc->s->client_ip);
	stats_gauge_add(milter_worker.stats, STATS_CONNECTIONS_ACTIVE, -1);
	smtp_session_unref(mc->s);
	free(mc);
	smfi_setpriv(ctx, NULL);
	return SMFIS_CONTINUE;
}

/* m_negotiate - ask for header values with their leading space (DKIM
 * simple canonicalisation needs the bytes as sent). */
static sfsistat
m_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1, unsigned long f2, unsigned long f3,
	    unsigned long *pf0, unsigned long *pf1, unsigned long *pf2, unsigned long *pf3)
{
	*pf0 = f0 & (SMFIF_ADDHDRS | SMFIF_CHGHDRS);
	*pf1 = f1 & SMFIP_HDR_LEADSPC;
	*pf2 = 0;
	*pf3 = 0;
	struct milter_conn *mc = calloc(1, sizeof(*mc));
	if (mc) {
		mc->leadspc = (*pf1 & SMFIP_HDR_LEADSPC) != 0;
		smfi_setpriv(ctx, mc);
	}
	return SMFIS_CONTINUE;
}

/* ctl_info - `show info` in milter mode. */
static void
ctl_info(void *arg, struct control_info *info)
{
	snprintf(info->version, sizeof(info->version), "%s", RAVELIN_VERSION);
	info->started = milter_srv.started;
	snprintf(info->config, sizeof(info->config), "%s", milter_srv.config_path);
	info->workers = 0;
}

/* milter_run - register with libmilter and serve until stopped. */
int
milter_run(const char *config_path, struct config *cf)
{
	static struct smfiDesc desc = {
		.xxfi_name = "ravelin",
		.xxfi_version = SMFI_VERSION,
		.xxfi_flags = SMFIF_ADDHDRS | SMFIF_CHGHDRS,
		.xxfi_connect = m_connect,
		.xxfi_helo = m_helo,
		.xxfi_envfrom = m_envfrom,
		.xxfi_envrcpt = m_envrcpt,
		.xxfi_header = m_header,
		.xxfi_eoh = m_eoh,
		.xxfi_body = m_body,
		.xxfi_eom = m_eom,
		.xxfi_abort = m_abort,
		.xxfi_close = m_close,
		.xxfi_data = m_data,
		.xxfi_negotiate = m_negotiate,
	};
	char err[512];

	if (!cf->milter_socket) {
		fprintf(stderr, "%s: milter mode needs milter_socket\n", config_path);
		config_unref(cf);
		return 1;
	}
	if (cf->nlistens || cf->nbackends)
		log_warnx(NULL, "milter mode: listen and backend lines are ignored");
	evthread_use_pthreads();
	signal(SIGPIPE, SIG_IGN);
	pthread_mutex_init(&milter_srv.cf_lock, NULL);
	milter_srv.cf = cf;
	milter_srv.config_path = strdup(config_path);
	milter_srv.started = time(NULL);
	milter_srv.stats = stats_new();
	milter_srv.nworkers = 1;
	milter_srv.workers = &milter_worker;
	milter_worker.srv = &milter_srv;
	milter_worker.stats = stats_worker_new(milter_srv.stats);
	milter_li.srv = &milter_srv;
	milter_li.fd = -1;
	milter_li.conf.profile = PROFILE_INBOUND;
	if (policy_runtime_start(&milter_srv, err, sizeof(err)) < 0) {
		log_warnx(NULL, "%s", err);
		return 1;
	}
	if (cf->stats_socket) {
		static const struct control_ops ops = {
			.info = ctl_info,
			.ratelimit_show = policy_runtime_rl_show,
			.ratelimit_clear = policy_runtime_rl_clear,
		};
		milter_srv.control = control_new(cf->stats_socket, 0660, (uid_t)-1, (gid_t)-1,
						 milter_srv.stats, &ops, &milter_srv, err, sizeof(err));
		if (!milter_srv.control) {
			log_warnx(NULL, "stats_socket %s: %s", cf->stats_socket, err);
			return 1;
		}
	}
	if (strncmp(cf->milter_socket, "unix:", 5) == 0 || strncmp(cf->milter_socket, "local:", 6) == 0)
		unlink(strchr(cf->milter_socket, ':') + 1);
	if (smfi_setconn(cf->milter_socket) == MI_FAILURE || smfi_register(desc) == MI_FAILURE ||
	    smfi_opensocket(true) == MI_FAILURE) {
		log_warnx(NULL, "milter_socket %s: cannot listen", cf->milter_socket);
		return 1;
	}
	smfi_settimeout(cf->client_timeout);
	log_info(NULL, "ravelin %s milter listening on %s", RAVELIN_VERSION, cf->milter_socket);
	int r = smfi_main();
	control_free(milter_srv.control);
	policy_runtime_stop(&milter_srv);
	stats_free(milter_srv.stats);
	config_unref(milter_srv.cf);
	free(milter_srv.config_path);
	log_info(NULL, "milter stopped");
	return r == MI_SUCCESS ? 0 : 1;
}
