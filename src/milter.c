/*
 * milter.c - ravelin -M: the same policy engine behind libmilter.
 *
 * Each milter connection gets a session object of its own, filled from
 * the callbacks and the MTA's macros ({auth_authen}, {tls_version},
 * {if_addr} or Postfix's {daemon_addr}, j, {daemon_name}, i) instead of
 * from an SMTP dialogue, so the built-in checks, the rules and the
 * counters are exactly those of proxy mode. The message is fed through
 * the same DATA parser (re-stuffed as it would arrive on the wire), so
 * DKIM streams and the From: checks see what the proxy would see. Checks
 * that wait run on libmilter's own connection thread, bounded by the same
 * DNS and Redis timeouts. Verdicts become smfi_setreply() with the
 * proxy's code, enhanced code and text; our header fields are inserted at
 * the top, forged Authentication-Results deleted (doc/milter.md).
 *
 * libmilter owns SIGHUP (it stops the filter), so a reload comes through
 * the stats socket or SIGUSR1, as with OpenDKIM; open sessions are listed
 * on the stats socket as in proxy mode.
 *
 * Public:
 *   milter_run()
 */

/* System. */
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <pthread.h>
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
#include "fmt.h"
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
	bool data_done;         /* the data stage ran for this transaction */
	bool local_known;       /* {if_addr} gave our address */
	char qid[32];           /* macro i: the MTA's queue id */
	char mta[256];          /* macro j: the MTA's own name */
	char daemon[64];        /* macro {daemon_name} */
};

/* conn - our state for ctx, with a session (NULL before connect). */
static struct milter_conn *
conn(SMFICTX *ctx)
{
	struct milter_conn *mc = smfi_getpriv(ctx);
	return mc && mc->s ? mc : NULL;
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
		log_info(s->id, "%s: %s from %s[%s]: %s; from=<%s>%s%s%s helo=<%s> rule=%s",
			 v->action == POLICY_REJECT ? "reject" : "tempfail", stage, s->client_name,
			 s->client_ip, v->reply, s->txn ? s->txn->mail.addr : "",
			 strcmp(stage, "RCPT") == 0 ? " to=<" : "",
			 strcmp(stage, "RCPT") == 0 ? s->txn->rcpt.addr : "",
			 strcmp(stage, "RCPT") == 0 ? ">" : "", s->helo, v->rule);
		if (s->txn)
			s->txn->last_refusal = atoi(v->reply);
		return v->action == POLICY_REJECT ? SMFIS_REJECT : SMFIS_TEMPFAIL;
	case POLICY_DISCARD:
		log_info(s->id, "discard: from=<%s> rule=%s", s->txn ? s->txn->mail.addr : "", v->rule);
		if (s->txn)
			s->txn->discard = true;   /* counted as discarded, not accepted */
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

/* local_addr - our address from {if_addr} (Sendmail) or {daemon_addr}
 * (Postfix), for helo.is_ours; Sendmail writes IPv6 as "IPv6:...". */
static void
local_addr(struct milter_conn *mc, const char *v)
{
	struct sockaddr_in *a4 = (struct sockaddr_in *)&mc->s->local;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&mc->s->local;

	if (strncasecmp(v, "IPv6:", 5) == 0)
		v += 5;
	memset(&mc->s->local, 0, sizeof(mc->s->local));
	if (inet_pton(AF_INET, v, &a4->sin_addr) == 1)
		a4->sin_family = AF_INET;
	else if (inet_pton(AF_INET6, v, &a6->sin6_addr) == 1)
		a6->sin6_family = AF_INET6;
	else
		return;
	mc->local_known = true;
}

/* link_session - keep the open sessions listed for `show sessions`. */
static void
link_session(struct smtp_session *s, bool add)
{
	struct worker *w = &milter_worker;

	pthread_mutex_lock(&w->lock);
	if (add) {
		s->prev = NULL;
		s->next = w->sessions;
		if (w->sessions)
			w->sessions->prev = s;
		w->sessions = s;
		milter_srv.sessions++;
	} else {
		if (s->prev)
			s->prev->next = s->next;
		else
			w->sessions = s->next;
		if (s->next)
			s->next->prev = s->prev;
		s->prev = s->next = NULL;
		milter_srv.sessions--;
	}
	pthread_mutex_unlock(&w->lock);
}

/* macros - facts the proxy would know itself, as the MTA sends them
 * (connect: j {daemon_name} {if_addr}; helo: {tls_version}; mail:
 * {auth_authen} i). Each is read once it appears. */
static void
macros(SMFICTX *ctx, struct milter_conn *mc)
{
	struct smtp_session *s = mc->s;
	const char *v;

	if (!s->auth && (v = smfi_getsymval(ctx, "{auth_authen}")) && *v) {
		s->auth = true;
		fmt_snprintf(s->auth_user, sizeof(s->auth_user), "%s", v);
		if ((v = smfi_getsymval(ctx, "{auth_type}")) && *v)
			fmt_snprintf(s->auth_mech, sizeof(s->auth_mech), "%s", v);
	}
	if (!s->tls && (v = smfi_getsymval(ctx, "{tls_version}")) && *v) {
		s->tls = true;
		fmt_snprintf(s->tls_info, sizeof(s->tls_info), "%s", v);
	}
	if (!mc->local_known && (((v = smfi_getsymval(ctx, "{if_addr}")) && *v) ||
				 ((v = smfi_getsymval(ctx, "{daemon_addr}")) && *v)))
		local_addr(mc, v);
	if (!mc->mta[0] && (v = smfi_getsymval(ctx, "j")) && *v)
		fmt_snprintf(mc->mta, sizeof(mc->mta), "%s", v);
	if (!mc->daemon[0] && (v = smfi_getsymval(ctx, "{daemon_name}")) && *v)
		fmt_snprintf(mc->daemon, sizeof(mc->daemon), "%s", v);
}

/* m_connect - a new SMTP client at the MTA. */
static sfsistat
m_connect(SMFICTX *ctx, char *hostname, _SOCK_ADDR *sa)
{
	/* Made by m_negotiate. A milter connection the MTA reuses after
	 * SMFIC_QUIT_NC (m_close freed it) comes without a new negotiation:
	 * it is made here, and SMFIP_HDR_LEADSPC is then assumed off. */
	struct milter_conn *mc = smfi_getpriv(ctx);
	struct smtp_session *s = calloc(1, sizeof(*s));

	if (!mc)
		mc = calloc(1, sizeof(*mc));
	if (!mc || !s) {
		free(mc);
		free(s);
		smfi_setpriv(ctx, NULL);
		return SMFIS_TEMPFAIL;
	}
	bool leadspc = mc->leadspc;
	memset(mc, 0, sizeof(*mc));
	mc->leadspc = leadspc;
	mc->s = s;
	s->w = &milter_worker;
	s->li = &milter_li;
	s->cf = server_config(&milter_srv);
	s->refs = 1;
	s->fd = -1;
	s->state = SS_CMD;
	s->started = time(NULL);
	unsigned long seq = __atomic_add_fetch(&milter_srv.session_seq, 1, __ATOMIC_RELAXED);
	fmt_snprintf(s->id, sizeof(s->id), "%08lX", (seq * 2654435761UL) & 0xffffffffUL);
	if (sa && (sa->sa_family == AF_INET || sa->sa_family == AF_INET6))
		memcpy(&s->peer, sa, sa->sa_family == AF_INET ? sizeof(struct sockaddr_in) :
							     sizeof(struct sockaddr_in6));
	smtp_addr_format(s);
	if (hostname && hostname[0] && hostname[0] != '[')
		fmt_snprintf(s->client_name, sizeof(s->client_name), "%s", hostname);
	smfi_setpriv(ctx, mc);
	link_session(s, true);
	stats_inc(milter_worker.stats, STATS_CONNECTIONS_TOTAL);
	stats_gauge_add(milter_worker.stats, STATS_CONNECTIONS_ACTIVE, 1);
	macros(ctx, mc);
	log_info(s->id, "connect from %s[%s] listener=milter mta=%s daemon=%s", s->client_name,
		 s->client_ip, mc->mta[0] ? mc->mta : s->cf->hostname, mc->daemon[0] ? mc->daemon : "-");
	return reply(ctx, mc, "CONNECT", run(s, PS_CONNECT));
}

/* m_helo - HELO/EHLO. */
static sfsistat
m_helo(SMFICTX *ctx, char *helo)
{
	struct milter_conn *mc = conn(ctx);

	if (!mc)
		return SMFIS_CONTINUE;
	macros(ctx, mc);
	fmt_snprintf(mc->s->helo, sizeof(mc->s->helo), "%s", helo ? helo : "");
	mc->s->esmtp = true;
	return reply(ctx, mc, "HELO", run(mc->s, PS_HELO));
}

/* join - "FROM:<addr> params" from libmilter's argv. */
static void
join(char *buf, size_t len, const char *kw, char **argv)
{
	size_t n = fmt_snprintf(buf, len, "%s%s", kw, argv[0]);
	for (int i = 1; argv[i] && n < len; i++)
		n += fmt_snprintf(buf + n, len - n, " %s", argv[i]);
}

/* path - the MTA's MAIL/RCPT argument as the proxy's parser sees it. The
 * MTA already accepted it, so what our parser refuses (a parameter it does
 * not know, an odd address) is still judged: first without parameters,
 * then by its bare address, never skipped. */
static void
path(char **argv, bool is_mail, struct smtp_path *p)
{
	char arg[SMTP_LINE_MAX + 16];
	const char *kw = is_mail ? "FROM:" : "TO:";

	if (!argv || !argv[0]) {
		memset(p, 0, sizeof(*p));
		p->null_path = is_mail;
		return;
	}
	join(arg, sizeof(arg), kw, argv);
	if (smtp_path_parse(arg, is_mail, p) == SMTP_PATH_OK)
		return;
	const char *a = argv[0];
	fmt_snprintf(arg, sizeof(arg), "%s%s%s%s", kw, a[0] == '<' ? "" : "<", a,
		 a[0] && a[strlen(a) - 1] == '>' ? "" : ">");
	if (smtp_path_parse(arg, is_mail, p) == SMTP_PATH_OK)
		return;
	memset(p, 0, sizeof(*p));
	if (*a == '<')
		a++;
	fmt_snprintf(p->addr, sizeof(p->addr), "%.*s", (int)strcspn(a, ">"), a);
	const char *at = strrchr(p->addr, '@');
	if (at) {
		fmt_snprintf(p->domain, sizeof(p->domain), "%s", at + 1);
		for (char *d = p->domain; *d; d++)
			*d = (char)tolower((unsigned char)*d);
		fmt_snprintf(p->local, sizeof(p->local), "%.*s", (int)(at - p->addr), p->addr);
	} else
		fmt_snprintf(p->local, sizeof(p->local), "%s", p->addr);
	p->null_path = is_mail && !p->addr[0];
}

/* refuse - a verdict of our own (not from policy_run) as a milter answer. */
static sfsistat
refuse(SMFICTX *ctx, struct milter_conn *mc, const char *stage, enum policy_action a,
       const char *rule, const char *text)
{
	struct policy_verdict v = { .action = a };

	fmt_snprintf(v.rule, sizeof(v.rule), "%s", rule);
	fmt_snprintf(v.reply, sizeof(v.reply), "%s", text);
	return reply(ctx, mc, stage, &v);
}

/* m_envfrom - MAIL FROM: a new transaction. */
static sfsistat
m_envfrom(SMFICTX *ctx, char **argv)
{
	struct milter_conn *mc = conn(ctx);

	if (!mc)
		return SMFIS_CONTINUE;
	struct smtp_session *s = mc->s;
	smtp_txn_end(s, false);
	macros(ctx, mc);
	struct smtp_txn *t = calloc(1, sizeof(*t));
	if (!t)
		return SMFIS_TEMPFAIL;
	path(argv, true, &t->mail);
	t->started = time(NULL);
	s->txn = t;
	mc->data_done = false;
	mc->bol = true;
	const char *qid = smfi_getsymval(ctx, "i");
	fmt_snprintf(mc->qid, sizeof(mc->qid), "%s", qid ? qid : "");
	/* As the proxy does after AUTH: the user must own the sender. */
	if (s->auth && !smtp_auth_sender_ok(s, &t->mail)) {
		char text[sizeof(((struct policy_verdict *)0)->reply)];
		fmt_snprintf(text, sizeof(text), smtp_reply_text(RPL_SENDER_NOT_OWNED), t->mail.addr);
		return refuse(ctx, mc, "MAIL", POLICY_REJECT, "sender-login", text);
	}
	return reply(ctx, mc, "MAIL", run(s, PS_MAIL));
}

/* m_envrcpt - one RCPT TO. */
static sfsistat
m_envrcpt(SMFICTX *ctx, char **argv)
{
	struct milter_conn *mc = conn(ctx);

	if (!mc || !mc->s->txn)
		return SMFIS_CONTINUE;
	struct smtp_session *s = mc->s;
	struct smtp_txn *t = s->txn;
	path(argv, false, &t->rcpt);
	t->rcpt_attempts++;
	if (t->nrcpts >= s->cf->max_recipients) {
		stats_inc(milter_worker.stats, STATS_RECIPIENTS_REJECTED_TOTAL);
		return refuse(ctx, mc, "RCPT", POLICY_TEMPFAIL, "max_recipients",
			      smtp_reply_text(RPL_TOO_MANY_RCPTS));
	}
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

/* data_stage - the data stage and the message parser, once per
 * transaction: from DATA, or from the first header for MTAs that do not
 * send DATA (milter protocol before version 4). */
static sfsistat
data_stage(SMFICTX *ctx, struct milter_conn *mc)
{
	struct smtp_session *s = mc->s;
	struct config *cf = s->cf;

	if (!s->txn || mc->data_done)
		return SMFIS_CONTINUE;
	mc->data_done = true;
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

/* m_data - DATA: start the message parser. */
static sfsistat
m_data(SMFICTX *ctx)
{
	struct milter_conn *mc = conn(ctx);

	return mc ? data_stage(ctx, mc) : SMFIS_CONTINUE;
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
	sfsistat r;

	if (!mc || (r = data_stage(ctx, mc)) != SMFIS_CONTINUE)
		return mc ? r : SMFIS_CONTINUE;
	if (!mc->s->txn || !mc->s->txn->msg)
		return SMFIS_CONTINUE;
	struct evbuffer *b = evbuffer_new();
	if (!b)
		return SMFIS_TEMPFAIL;
	/* Without SMFIP_HDR_LEADSPC the MTA dropped the space after the
	 * colon; put the usual one back. */
	evbuffer_add_printf(b, "%s:%s", name, mc->leadspc ? "" : " ");
	/* Postfix and Sendmail pass folds as bare LF: make them CRLF. */
	for (const char *v = value ? value : ""; *v; v++) {
		if (*v == '\n' && (v == value || v[-1] != '\r'))
			evbuffer_add(b, "\r", 1);
		evbuffer_add(b, v, 1);
	}
	evbuffer_add(b, "\r\n", 2);
	size_t len = evbuffer_get_length(b);
	mc->bol = true;
	feed(mc, (const char *)evbuffer_pullup(b, (ev_ssize_t)len), len);
	evbuffer_free(b);
	return SMFIS_CONTINUE;
}

/* m_eoh - end of headers. */
static sfsistat
m_eoh(SMFICTX *ctx)
{
	struct milter_conn *mc = conn(ctx);
	sfsistat r;

	if (!mc || (r = data_stage(ctx, mc)) != SMFIS_CONTINUE)
		return mc ? r : SMFIS_CONTINUE;
	mc->bol = true;
	feed(mc, "\r\n", 2);
	mc->bol = true;
	return SMFIS_CONTINUE;
}

/* m_body - a body chunk (CRLF text, not stuffed). */
static sfsistat
m_body(SMFICTX *ctx, unsigned char *buf, size_t len)
{
	struct milter_conn *mc = conn(ctx);

	if (mc)
		feed(mc, (const char *)buf, len);
	return SMFIS_CONTINUE;
}

/* headers_out - remove forged fields, then add ours at the top. */
static void
headers_out(SMFICTX *ctx, struct milter_conn *mc)
{
	struct smtp_session *s = mc->s;
	struct message *m = msg_parser_message(s->txn->msg);
	struct evbuffer *b = evbuffer_new();
	int pos = 0, nar = 0, *forged = calloc(m->nheaders + 1, sizeof(int));
	size_t nforged = 0;

	if (!b || !forged) {
		if (b)
			evbuffer_free(b);
		free(forged);
		return;
	}
	for (size_t i = 0; i < m->nheaders; i++) {
		if (!msg_header_is(&m->headers[i], "Authentication-Results"))
			continue;
		nar++;
		if (policy_drop_header(s, m->headers[i].raw, m->headers[i].len))
			forged[nforged++] = nar;
	}
	/* Last first: whether the MTA renumbers the later instances after a
	 * deletion (Postfix) or not (Sendmail), the earlier ones keep their
	 * index. Deletions go before our insertions, which share the name. */
	while (nforged > 0)
		smfi_chgheader(ctx, "Authentication-Results", forged[--nforged], NULL);
	free(forged);
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
				/* Without SMFIP_HDR_LEADSPC the MTA adds the space. */
				if (!mc->leadspc && *v == ' ')
					v++;
				/* libmilter wants folds as bare LF. */
				for (char *r = v; (r = strstr(r, "\r\n")); )
					memmove(r, r + 1, strlen(r));
				if (smfi_insheader(ctx, pos++, p, v) != MI_SUCCESS)
					log_warnx(s->id, "cannot insert the %s header", p);
			}
			p = end + 2;
		}
		free(text);
	}
	evbuffer_free(b);
}

/* content_refusal - the proxy's reply for a message refused for its bytes. */
static enum smtp_reply_id
content_refusal(enum msg_problem p)
{
	switch (p) {
	case MSG_BARE_NEWLINE: return RPL_BARE_NEWLINE;
	case MSG_NUL: return RPL_NUL_DATA;
	case MSG_LONG_LINE: return RPL_LONG_LINE;
	case MSG_TOO_BIG: return RPL_TOO_BIG;
	case MSG_HEADER_TOO_BIG: return RPL_HEADER_TOO_BIG;
	default: return RPL_LOCAL_ERROR;
	}
}

/* txn_done - end the transaction; a discarded one counts as such. */
static void
txn_done(struct smtp_session *s)
{
	smtp_txn_end(s, s->txn && s->txn->discard);
}

/* m_eom - end of message: the header..eom stages, then our headers. */
static sfsistat
m_eom(SMFICTX *ctx)
{
	struct milter_conn *mc = conn(ctx);
	size_t used;
	sfsistat r;

	if (!mc || (r = data_stage(ctx, mc)) != SMFIS_CONTINUE)
		return mc ? r : SMFIS_CONTINUE;
	struct smtp_session *s = mc->s;
	if (!s->txn || !s->txn->msg)
		return SMFIS_CONTINUE;
	if (!mc->qid[0]) {
		/* Postfix knows the queue id only once a recipient was accepted. */
		const char *qid = smfi_getsymval(ctx, "i");
		fmt_snprintf(mc->qid, sizeof(mc->qid), "%s", qid ? qid : "");
	}
	if (!mc->bol)
		feed(mc, "\r\n", 2);
	msg_parser_feed(s->txn->msg, ".\r\n", 3, &used);
	struct message *m = msg_parser_message(s->txn->msg);
	if (m->problem != MSG_OK) {
		const char *text = smtp_reply_text(content_refusal(m->problem));
		r = refuse(ctx, mc, "END-OF-MESSAGE", text[0] == '4' ? POLICY_TEMPFAIL : POLICY_REJECT,
			   "content", text);
		txn_done(s);
		return r;
	}
	for (enum policy_stage st = PS_HEADER; st <= PS_EOM; st++) {
		const struct policy_verdict *v = run(s, st);
		if (v->action == POLICY_REJECT || v->action == POLICY_TEMPFAIL ||
		    v->action == POLICY_DISCARD) {
			r = reply(ctx, mc, "END-OF-MESSAGE", v);
			txn_done(s);
			return r;
		}
	}
	headers_out(ctx, mc);
	char checks[512];
	policy_summary(s, checks, sizeof(checks));
	log_info(s->id, "accepted: queue_id=%s from=<%s> size=%zu %s", mc->qid[0] ? mc->qid : "-",
		 s->txn->mail.addr, m->size, checks);
	smtp_txn_end(s, true);
	return SMFIS_CONTINUE;
}

/* m_abort - the transaction ended without a message. */
static sfsistat
m_abort(SMFICTX *ctx)
{
	struct milter_conn *mc = conn(ctx);

	if (mc)
		txn_done(mc->s);
	return SMFIS_CONTINUE;
}

/* m_close - the SMTP connection ended (also after a negotiation alone). */
static sfsistat
m_close(SMFICTX *ctx)
{
	struct milter_conn *mc = smfi_getpriv(ctx);

	if (!mc)
		return SMFIS_CONTINUE;
	smfi_setpriv(ctx, NULL);
	if (mc->s) {
		struct smtp_session *s = mc->s;
		txn_done(s);
		log_info(s->id, "disconnect from %s[%s]", s->client_name, s->client_ip);
		link_session(s, false);
		stats_gauge_add(milter_worker.stats, STATS_CONNECTIONS_ACTIVE, -1);
		smtp_session_unref(s);
	}
	free(mc);
	return SMFIS_CONTINUE;
}

/* m_negotiate - ask for header values with their leading space (DKIM
 * simple canonicalisation needs the bytes as sent). */
static sfsistat
m_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1, unsigned long f2, unsigned long f3,
	    unsigned long *pf0, unsigned long *pf1, unsigned long *pf2, unsigned long *pf3)
{
	(void)f2;
	(void)f3;
	*pf0 = f0 & (SMFIF_ADDHDRS | SMFIF_CHGHDRS);
	*pf1 = f1 & SMFIP_HDR_LEADSPC;
	*pf2 = 0;
	*pf3 = 0;
	struct milter_conn *mc = smfi_getpriv(ctx);
	if (!mc && (mc = calloc(1, sizeof(*mc))))
		smfi_setpriv(ctx, mc);
	if (mc)
		mc->leadspc = (*pf1 & SMFIP_HDR_LEADSPC) != 0;
	return SMFIS_CONTINUE;
}

/* ctl_info - `show info` in milter mode. */
static void
ctl_info(void *arg, struct control_info *info)
{
	fmt_snprintf(info->version, sizeof(info->version), "%s", RAVELIN_VERSION);
	info->started = milter_srv.started;
	fmt_snprintf(info->config, sizeof(info->config), "%s", milter_srv.config_path);
	info->workers = 0;
	pthread_mutex_lock(&milter_worker.lock);
	info->sessions = (long)milter_srv.sessions;
	pthread_mutex_unlock(&milter_worker.lock);
}

/* ctl_sessions - `show sessions`: the MTA connections open now. */
static int
ctl_sessions(void *arg, struct evbuffer *out)
{
	char line[640];

	pthread_mutex_lock(&milter_worker.lock);
	for (struct smtp_session *s = milter_worker.sessions; s; s = s->next) {
		smtp_session_describe(s, line, sizeof(line));
		evbuffer_add_printf(out, "%s\n", line);
	}
	pthread_mutex_unlock(&milter_worker.lock);
	return 0;
}

/* ctl_reload - `reload`: libmilter takes SIGHUP as "stop", so in milter
 * mode this is the way to load changed rules and settings. New MTA
 * connections get the new configuration; open ones keep theirs. */
static int
ctl_reload(void *arg, struct evbuffer *out)
{
	char err[2048];

	if (server_reload(&milter_srv, err, sizeof(err)) < 0) {
		evbuffer_add_printf(out, "%s", err[0] ? err : "reload failed");
		return -1;
	}
	return 0;
}

/* Set when milter_run() is done: the SIGUSR1 thread's next wake-up ends it. */
static volatile sig_atomic_t milter_usr1_stop;

/* usr1_thread - reload on SIGUSR1 (blocked in every other thread). */
static void *
usr1_thread(void *arg)
{
	sigset_t set;
	int sig;

	(void)arg;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	while (sigwait(&set, &sig) == 0 && !milter_usr1_stop) {
		char err[2048];

		log_info(NULL, "SIGUSR1: reloading");
		/* server_reload() logs the outcome itself. */
		(void)server_reload(&milter_srv, err, sizeof(err));
	}
	return NULL;
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
	/* Blocked before any thread starts: SIGUSR1 for usr1_thread only, and
	 * SIGHUP, SIGTERM, SIGINT for libmilter's signal thread only (left
	 * open in our DNS, check-pool and stats threads, SIGTERM would end
	 * the process at once instead of stopping libmilter cleanly). */
	sigset_t usr1;
	pthread_t usr1_tid;
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	sigaddset(&usr1, SIGHUP);
	sigaddset(&usr1, SIGTERM);
	sigaddset(&usr1, SIGINT);
	pthread_sigmask(SIG_BLOCK, &usr1, NULL);
	pthread_mutex_init(&milter_srv.cf_lock, NULL);
	pthread_mutex_init(&milter_worker.lock, NULL);
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
			.sessions = ctl_sessions,
			.reload = ctl_reload,
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
	/* No smfi_settimeout(client_timeout): the MTA is silent towards the
	 * milter while its client sends DATA (Postfix passes the message only
	 * once it is all in), so libmilter's default (2 hours) stays. */
	bool usr1_running = pthread_create(&usr1_tid, NULL, usr1_thread, NULL) == 0;
	log_info(NULL, "ravelin %s milter listening on %s", RAVELIN_VERSION, cf->milter_socket);
	int r = smfi_main();
	if (usr1_running) {
		milter_usr1_stop = 1;
		pthread_kill(usr1_tid, SIGUSR1);
		pthread_join(usr1_tid, NULL);
	}
	control_free(milter_srv.control);
	policy_runtime_stop(&milter_srv);
	stats_free(milter_srv.stats);
	config_unref(milter_srv.cf);
	free(milter_srv.config_path);
	log_info(NULL, "milter stopped");
	return r == MI_SUCCESS ? 0 : 1;
}
