"""Milter mode through miltertest (issue 8): `build/ravelin -M` runs the
same built-in checks, rules and counters as the proxy, answers with the
same SMTP codes (smfi_setreply), inserts Authentication-Results at the
top, deletes forged ones, tempfails on rate limits and discards; the
{auth_authen}, {if_addr} and i macros stand for what the proxy would know
itself; the stats socket works in milter mode.

miltertest only exposes the kind of a reply before end of message, so the
code and text of an earlier refusal are checked in ravelin's log line,
which prints the reply handed to smfi_setreply; at end of message they are
checked byte for byte with MT_SMTPREPLY.
"""

import os

import pytest

from dnsserver import start_dns_server
import test_milter_lib as ml
import test_senderauth_lib as sa

KEYS = sa.Keys()

ZONES = {
    "pass.example": [{"TXT": "v=spf1 ip4:192.0.2.0/24 -all"}],
    "fail.example": [{"TXT": "v=spf1 -all"}],
    # SPF would fail for the local domain: proves it is not run for
    # authenticated clients.
    "example.org": [{"TXT": "v=spf1 -all"}],
    "_dmarc.signer.example": [{"TXT": "v=DMARC1; p=reject"}],
}
ZONES.update(sa.key_zones(KEYS, "signer.example"))

GOOD = "192.0.2.5"       # allowed by pass.example
BAD = "198.51.100.66"    # allowed by nothing

RULES = {
    "50-auth.rules": open(os.path.join(os.path.dirname(sa.SHIPPED_RULES), "50-auth.rules")).read(),
    "60-test.rules": """
ratelimit: mail sender =~ /^limited@/ && limit(client.ip, 2/1m)
    -> tempfail 450 4.7.1 "Sending rate exceeded"
blocked: connect client.ip in (203.0.113.0/24) -> reject 554 5.7.1 "Connection refused"
ours: helo helo.is_ours -> reject 550 5.7.1 "You are not me"
drop: header header[Subject] =~ /discard me/ -> discard
late: eom header[Subject] =~ /reject at eom/ -> reject 550 5.7.1 "Message refused at end"
""",
}


@pytest.fixture(scope="module")
def mdns():
    srv = start_dns_server(ZONES)
    yield srv
    srv.stop()


@pytest.fixture
def milter(tmp_path, mdns):
    m = ml.Milter(tmp_path, mdns, rules=RULES)
    yield m
    rc = m.stop()
    assert rc in (0, -15), "ravelin -M exited with %r:\n%s" % (rc, m.log()[-3000:])


def envelope(ip, sender, rcpts=("u@example.org",), helo="mail.client.example",
             host="mail.client.example", mail_macros=None):
    """Lua for connect, HELO, MAIL and RCPTs, all expected to continue."""
    out = ['expect(SMFIR_CONTINUE, "conninfo", mt.conninfo(conn, %s, %s))' % (ml.lua(host), ml.lua(ip)),
           'expect(SMFIR_CONTINUE, "helo", mt.helo(conn, %s))' % ml.lua(helo)]
    if mail_macros:
        args = ", ".join("%s, %s" % (ml.lua(k), ml.lua(v)) for k, v in mail_macros.items())
        out.append("mt.macro(conn, SMFIC_MAIL, %s)" % args)
    out.append('expect(SMFIR_CONTINUE, "mail", mt.mailfrom(conn, %s))' % ml.lua("<%s>" % sender))
    for r in rcpts:
        out.append('expect(SMFIR_CONTINUE, "rcpt", mt.rcptto(conn, %s))' % ml.lua("<%s>" % r))
    return "\n".join(out) + "\n"


def content(msg, fold="\r\n", eom="SMFIR_CONTINUE", chunks=1):
    """Lua for DATA, the header fields, EOH, the body and EOM."""
    fields, body = ml.split_message(msg, fold)
    out = ['expect(SMFIR_CONTINUE, "data", mt.data(conn))',
           "headers(%s)" % ml.lua_headers(fields),
           'expect(SMFIR_CONTINUE, "eoh", mt.eoh(conn))']
    step = max(1, -(-len(body) // chunks))
    for i in range(0, len(body), step):
        out.append('expect(SMFIR_CONTINUE, "body", mt.bodystring(conn, %s))' % ml.lua(body[i:i + step]))
    out.append('expect(%s, "eom", mt.eom(conn))' % eom)
    return "\n".join(out) + "\n"


# mt.echo one inserted header field: KEY=value (folds shown as \n).
ECHO = '''
local v = mt.getheader(conn, %s, %d)
if v ~= nil then mt.echo(%s .. "=" .. (string.gsub(v, "\\n", "\\\\n"))) end
'''


def echo_header(name, n=0, key=None):
    return ECHO % (ml.lua(name), n, ml.lua(key or name))


# ---- refusals at the envelope stages ---------------------------------------

def test_relay_denied_with_the_proxy_reply(milter):
    script = envelope(BAD, "bob@none.example", rcpts=()) + '''
expect(SMFIR_REPLYCODE, "rcpt elsewhere", mt.rcptto(conn, "<x@elsewhere.example>"))
expect(SMFIR_CONTINUE, "rcpt local", mt.rcptto(conn, "<u@example.org>"))
'''
    milter.run(script)
    assert milter.wait_log("reject: RCPT from mail.client.example[198.51.100.66]: "
                           "554 5.7.1 <x@elsewhere.example>: Relay access denied; "
                           "from=<bob@none.example>"), milter.log()
    st = milter.wait_stats(lambda s: s["connections_active"] == 0)
    assert st["relay_denied_total"] == 1
    assert st["recipients_rejected_total"] == 1
    assert st["connections_total"] == 1


def test_spf_fail_rejected_at_mail(milter):
    script = '''
expect(SMFIR_CONTINUE, "conninfo", mt.conninfo(conn, "mail.client.example", "198.51.100.66"))
expect(SMFIR_CONTINUE, "helo", mt.helo(conn, "mail.client.example"))
expect(SMFIR_REPLYCODE, "mail", mt.mailfrom(conn, "<bob@fail.example>"))
'''
    milter.run(script)
    assert milter.wait_log("550 5.7.23 SPF validation failed"), milter.log()
    st = milter.wait_stats(lambda s: s["messages_rejected_total"] == 1)
    assert st["spf_result_total"] == {"fail": 1}
    assert st["messages_rejected_total"] == 1
    assert st["rule_hits_total"].get("spf_fail") == 1


def test_spf_pass_and_unsigned_mail_get_headers_at_the_top(milter):
    msg = sa.message(frm="Alice <alice@pass.example>")
    script = envelope(GOOD, "alice@pass.example") + content(msg) + '''
check(mt.eom_check(conn, MT_HDRINSERT, "Authentication-Results"), "A-R inserted")
''' + echo_header("Authentication-Results", key="AR") + echo_header("Received-SPF", key="SPF")
    out = milter.run(script)
    (ar,) = ml.echoed(out, "AR")
    # SMFIP_HDR_LEADSPC was negotiated (miltertest offers it): the value
    # keeps its leading space, folds are bare LF as libmilter wants.
    assert ar.startswith(" mx.test.example;"), ar
    assert "spf=pass" in ar and "smtp.mailfrom=alice@pass.example" in ar, ar
    assert "dkim=none" in ar, ar
    assert "\r" not in ar
    (spf,) = ml.echoed(out, "SPF")
    assert spf.startswith(" pass"), spf
    st = milter.wait_stats(lambda s: s["messages_accepted_total"] == 1)
    assert st["spf_result_total"] == {"pass": 1}
    assert st["dkim_result_total"] == {"none": 1}


def test_authentication_results_is_inserted_at_index_zero(milter):
    msg = sa.message(frm="Alice <alice@pass.example>")
    script = envelope(GOOD, "alice@pass.example") + content(msg) + '''
local v = mt.getheader(conn, "Authentication-Results", 0)
check(mt.eom_check(conn, MT_HDRINSERT, "Authentication-Results", v, 0), "A-R at index 0")
'''
    milter.run(script)


# ---- DKIM -------------------------------------------------------------------

BODY_WITH_DOTS = ("Hello.\r\n.leading dot\r\n.\r\n..two dots\r\n\r\n"
                  "last line without much\r\n")


@pytest.mark.parametrize("canon,fold,leadspc,chunks", [
    ((b"relaxed", b"relaxed"), "\r\n", True, 1),
    ((b"simple", b"simple"), "\r\n", True, 1),
    ((b"simple", b"simple"), "\n", True, 3),      # folds as Postfix passes them
    ((b"relaxed", b"simple"), "\n", False, 7),    # MTA without SMFIP_HDR_LEADSPC
])
def test_dkim_pass_adds_authentication_results(milter, canon, fold, leadspc, chunks):
    msg = sa.sign(KEYS, sa.message(frm="Alice <alice@signer.example>", body=BODY_WITH_DOTS,
                                   extra="X-Folded: one\r\n\ttwo\r\n  three\r\n"),
                  "signer.example", canon=canon)
    # A DKIM-Signature header is folded: the fold style matters.
    assert b"\r\n\t" in msg.split(b"\r\n\r\n")[0] or b"\r\n " in msg.split(b"\r\n\r\n")[0]
    nego = "" if leadspc else \
        'check(mt.negotiate(conn, nil, 0x000FFFFF, nil) == nil, "negotiate")\n'  # (version, protocol, actions)
    script = nego + envelope(GOOD, "bounce@pass.example") + content(msg, fold=fold, chunks=chunks) + \
        echo_header("Authentication-Results", key="AR")
    out = milter.run(script)
    (ar,) = ml.echoed(out, "AR")
    assert ar.startswith(" mx.test.example;" if leadspc else "mx.test.example;"), ar
    assert "dkim=pass" in ar and "header.d=signer.example" in ar, (ar, milter.log())
    assert "dmarc=pass" in ar, ar
    st = milter.wait_stats(lambda s: s["messages_accepted_total"] == 1)
    assert st["dkim_result_total"] == {"pass": 1}
    assert "dkim=pass" in milter.log()


def test_dkim_fail_when_body_changed(milter):
    # From: a domain without DMARC, so the failure is not refused.
    msg = sa.sign(KEYS, sa.message(frm="Alice <alice@nodmarc.example>"), "signer.example")
    msg = msg.replace(b"Hello.", b"Hellp.")
    script = envelope(GOOD, "bounce@pass.example") + content(msg) + \
        echo_header("Authentication-Results", key="AR")
    (ar,) = ml.echoed(milter.run(script), "AR")
    assert "dkim=fail" in ar, ar


# ---- headers removed --------------------------------------------------------

def test_forged_authentication_results_are_deleted(milter):
    msg = sa.message(frm="Alice <alice@pass.example>", extra=(
        "Authentication-Results: mx.test.example; dkim=pass header.d=forged.example\r\n"
        "Authentication-Results: other.example; spf=pass\r\n"
        "Authentication-Results: MX.TEST.EXAMPLE 1;\r\n\tdmarc=pass\r\n"))
    script = envelope(GOOD, "alice@pass.example") + content(msg) + '''
check(mt.eom_check(conn, MT_HDRDELETE, "Authentication-Results", 1), "forged #1 deleted")
check(mt.eom_check(conn, MT_HDRDELETE, "Authentication-Results", 3), "forged #3 deleted")
check(not mt.eom_check(conn, MT_HDRDELETE, "Authentication-Results", 2), "other.example kept")
check(mt.eom_check(conn, MT_HDRINSERT, "Authentication-Results"), "ours inserted")
'''
    milter.run(script)
    assert milter.log().count("removed a forged Authentication-Results") == 2


# ---- rate limit, discard, refusals at end of message ------------------------

def test_rate_limit_tempfails_the_third_transaction(milter):
    script = '''
expect(SMFIR_CONTINUE, "conninfo", mt.conninfo(conn, "mail.client.example", "192.0.2.5"))
expect(SMFIR_CONTINUE, "helo", mt.helo(conn, "mail.client.example"))
expect(SMFIR_CONTINUE, "mail 1", mt.mailfrom(conn, "<limited@pass.example>"))
expect(SMFIR_CONTINUE, "abort 1", mt.abort(conn))
expect(SMFIR_CONTINUE, "mail 2", mt.mailfrom(conn, "<limited@pass.example>"))
expect(SMFIR_CONTINUE, "abort 2", mt.abort(conn))
expect(SMFIR_REPLYCODE, "mail 3", mt.mailfrom(conn, "<limited@pass.example>"))
'''
    milter.run(script)
    assert milter.wait_log("tempfail: MAIL from mail.client.example[192.0.2.5]: "
                           "450 4.7.1 Sending rate exceeded"), milter.log()
    st = milter.wait_stats(lambda s: s["messages_tempfailed_total"] == 1)
    assert st["messages_tempfailed_total"] == 1
    assert st["ratelimit_hits_total"] >= 1
    assert st["rule_hits_total"].get("ratelimit") == 1


def test_discard_rule(milter):
    msg = sa.message(frm="<alice@pass.example>", subject="please discard me")
    script = envelope(GOOD, "alice@pass.example") + content(msg, eom="SMFIR_DISCARD")
    milter.run(script)
    st = milter.wait_stats(lambda s: s["messages_discarded_total"] == 1)
    assert st["messages_discarded_total"] == 1
    assert st["messages_accepted_total"] == 0


def test_eom_refusal_carries_code_and_text(milter):
    msg = sa.message(frm="<alice@pass.example>", subject="reject at eom")
    script = envelope(GOOD, "alice@pass.example") + content(msg, eom="SMFIR_REPLYCODE") + '''
check(mt.eom_check(conn, MT_SMTPREPLY, "550", "5.7.1", "Message refused at end"), "reply text")
'''
    milter.run(script)
    st = milter.wait_stats(lambda s: s["messages_rejected_total"] == 1)
    assert st["messages_rejected_total"] == 1


def test_two_from_fields_refused_like_the_proxy(milter):
    msg = sa.message(frm="<alice@pass.example>", extra="From: <bob@pass.example>\r\n")
    script = envelope(GOOD, "alice@pass.example") + content(msg, eom="SMFIR_REPLYCODE") + '''
check(mt.eom_check(conn, MT_SMTPREPLY, "550", "5.7.1",
      "Message must have exactly one From: address"), "reply text")
'''
    milter.run(script)


def test_local_domain_spoof_refused(milter):
    msg = sa.message(frm="<ceo@example.org>")
    script = envelope(GOOD, "alice@pass.example") + content(msg, eom="SMFIR_REPLYCODE") + '''
check(mt.eom_check(conn, MT_SMTPREPLY, "550", "5.7.1",
      "Message From: spoofs a local domain"), "reply text")
'''
    milter.run(script)
    st = milter.wait_stats(lambda s: s["spoof_detected_total"] == 1)
    assert st["spoof_detected_total"] == 1


# ---- connect and HELO facts from the MTA's macros ---------------------------

def test_connect_rule_refuses_the_client(milter):
    milter.run('''
expect(SMFIR_REPLYCODE, "conninfo", mt.conninfo(conn, "bad.example", "203.0.113.9"))
''')
    assert milter.wait_log("554 5.7.1 Connection refused"), milter.log()


@pytest.mark.parametrize("helo,refused", [
    ("mx.test.example", True),        # our hostname
    ("[192.0.2.1]", True),            # our address, from {if_addr}
    ("192.0.2.1", True),
    ("mail.client.example", False),
])
def test_helo_is_ours_uses_if_addr(milter, helo, refused):
    milter.run('''
mt.macro(conn, SMFIC_CONNECT, "j", "mta.test.example", "{daemon_name}", "smtpd",
         "{if_addr}", "192.0.2.1")
expect(SMFIR_CONTINUE, "conninfo", mt.conninfo(conn, "mail.client.example", "198.51.100.66"))
expect(%s, "helo", mt.helo(conn, %s))
''' % ("SMFIR_REPLYCODE" if refused else "SMFIR_CONTINUE", ml.lua(helo)))
    if refused:
        assert milter.wait_log("550 5.7.1 You are not me"), milter.log()


def test_auth_authen_makes_the_client_trusted(milter):
    msg = sa.message(frm="Alice <alice@example.org>")
    script = envelope(BAD, "alice@example.org", rcpts=("x@elsewhere.example",),
                      mail_macros={"{auth_authen}": "alice", "{auth_type}": "PLAIN",
                                   "i": "4QUEUEID"}) + \
        content(msg) + echo_header("Authentication-Results", key="AR") + '''
check(not mt.eom_check(conn, MT_HDRINSERT, "Received-SPF"), "no Received-SPF")
'''
    (ar,) = ml.echoed(milter.run(script), "AR")
    assert "auth=pass" in ar and "alice" in ar, ar
    assert "spf=" not in ar, ar
    assert milter.wait_log("queue_id=4QUEUEID"), milter.log()
    st = milter.wait_stats(lambda s: s["messages_accepted_total"] == 1)
    assert st["relay_denied_total"] == 0
    assert st["spf_result_total"] == {}


def test_auth_authen_sender_must_be_owned(milter):
    script = '''
expect(SMFIR_CONTINUE, "conninfo", mt.conninfo(conn, "mail.client.example", "198.51.100.66"))
expect(SMFIR_CONTINUE, "helo", mt.helo(conn, "mail.client.example"))
mt.macro(conn, SMFIC_MAIL, "{auth_authen}", "alice")
expect(SMFIR_REPLYCODE, "mail", mt.mailfrom(conn, "<bob@example.org>"))
'''
    milter.run(script)
    assert milter.wait_log("553 5.7.1 <bob@example.org>: Sender address not owned by user"), \
        milter.log()


def test_from_header_must_be_owned_when_authenticated(milter):
    msg = sa.message(frm="<bob@example.org>")
    script = envelope(BAD, "alice@example.org", mail_macros={"{auth_authen}": "alice"}) + \
        content(msg, eom="SMFIR_REPLYCODE") + '''
check(mt.eom_check(conn, MT_SMTPREPLY, "550", "5.7.1", "From: header not owned by user"),
      "reply text")
'''
    milter.run(script)


# ---- sessions, counters, sockets --------------------------------------------

def test_stats_socket_counts_a_mixed_run(milter):
    ok = sa.message(frm="<alice@pass.example>")
    for _ in range(2):
        milter.run(envelope(GOOD, "alice@pass.example") + content(ok))
    milter.run(envelope(BAD, "bob@none.example", rcpts=()) + '''
expect(SMFIR_REPLYCODE, "rcpt", mt.rcptto(conn, "<x@elsewhere.example>"))
''')
    st = milter.wait_stats(lambda s: s["connections_active"] == 0 and s["connections_total"] == 3)
    assert st["connections_total"] == 3
    assert st["connections_active"] == 0
    assert st["messages_accepted_total"] == 2
    assert st["relay_denied_total"] == 1
    # A transaction with only refused recipients, then QUIT: counted rejected.
    assert st["messages_rejected_total"] == 1
    assert st["spf_result_total"] == {"pass": 2, "none": 1}
    r = ml.subprocess.run([ml.CTL, "-s", milter.stats_sock, "show", "info"],
                          capture_output=True, text=True, timeout=20)
    assert r.returncode == 0 and "version:" in r.stdout, r
    r = ml.subprocess.run([ml.CTL, "-s", milter.stats_sock, "show", "metrics"],
                          capture_output=True, text=True, timeout=20)
    assert "ravelin_messages_accepted_total 2" in r.stdout, r.stdout


def test_two_transactions_on_one_connection(milter):
    ok = sa.message(frm="<alice@pass.example>")
    script = envelope(GOOD, "alice@pass.example") + content(ok) + '''
expect(SMFIR_CONTINUE, "mail 2", mt.mailfrom(conn, "<alice@pass.example>"))
expect(SMFIR_CONTINUE, "rcpt 2", mt.rcptto(conn, "<v@example.org>"))
''' + content(ok)
    milter.run(script)
    st = milter.wait_stats(lambda s: s["messages_accepted_total"] == 2)
    assert st["messages_accepted_total"] == 2


def test_unix_socket(tmp_path, mdns):
    path = os.path.join(str(tmp_path), "milter.sock")
    m = ml.Milter(tmp_path, mdns, socket="unix:" + path)
    try:
        m.run(envelope(GOOD, "alice@pass.example") + content(sa.message(frm="<alice@pass.example>")))
        assert m.wait_stats(lambda s: s["messages_accepted_total"] == 1)["messages_accepted_total"] == 1
    finally:
        assert m.stop() in (0, -15), m.log()


def test_reload_through_the_stats_socket(milter):
    # libmilter stops on SIGHUP, so milter mode reloads through the socket.
    with open(os.path.join(milter.tmp, "rules", "70-new.rules"), "w") as f:
        f.write('newrule: mail sender == new@pass.example -> reject 550 5.7.1 "New rule"\n')
    r = ml.subprocess.run([ml.CTL, "-s", milter.stats_sock, "reload"], capture_output=True,
                          text=True, timeout=20)
    assert r.returncode == 0, (r.stdout, r.stderr, milter.log())
    milter.run('''
expect(SMFIR_CONTINUE, "conninfo", mt.conninfo(conn, "mail.client.example", "192.0.2.5"))
expect(SMFIR_REPLYCODE, "mail", mt.mailfrom(conn, "<new@pass.example>"))
''')
    assert milter.wait_log("550 5.7.1 New rule"), milter.log()
    # A broken file is refused with FILE:LINE and the old rules stay.
    with open(os.path.join(milter.tmp, "rules", "70-new.rules"), "w") as f:
        f.write("mail sender == -> reject\n")
    r = ml.subprocess.run([ml.CTL, "-s", milter.stats_sock, "reload"], capture_output=True,
                          text=True, timeout=20)
    assert r.returncode != 0 and "70-new.rules:1" in (r.stdout + r.stderr), r
    milter.run('''
expect(SMFIR_CONTINUE, "conninfo", mt.conninfo(conn, "mail.client.example", "192.0.2.5"))
expect(SMFIR_REPLYCODE, "mail", mt.mailfrom(conn, "<new@pass.example>"))
''')


def test_reload_on_sigusr1(milter):
    # As with OpenDKIM, SIGUSR1 reloads (libmilter keeps SIGHUP for "stop").
    import signal
    with open(os.path.join(milter.tmp, "rules", "70-new.rules"), "w") as f:
        f.write('usr1rule: mail sender == usr1@pass.example -> reject 550 5.7.1 "USR1 rule"\n')
    milter.proc.send_signal(signal.SIGUSR1)
    assert milter.wait_log("reloaded"), milter.log()
    milter.run('''
expect(SMFIR_CONTINUE, "conninfo", mt.conninfo(conn, "mail.client.example", "192.0.2.5"))
expect(SMFIR_REPLYCODE, "mail", mt.mailfrom(conn, "<usr1@pass.example>"))
''')
    assert milter.wait_log("550 5.7.1 USR1 rule"), milter.log()
    # A broken file: logged with FILE:LINE, the milter keeps running the old rules.
    with open(os.path.join(milter.tmp, "rules", "70-new.rules"), "w") as f:
        f.write("mail sender == -> reject\n")
    milter.proc.send_signal(signal.SIGUSR1)
    assert milter.wait_log("70-new.rules:1"), milter.log()
    assert milter.proc.poll() is None
    milter.run('''
expect(SMFIR_CONTINUE, "conninfo", mt.conninfo(conn, "mail.client.example", "192.0.2.5"))
expect(SMFIR_REPLYCODE, "mail", mt.mailfrom(conn, "<usr1@pass.example>"))
''')


def test_show_sessions_lists_open_milter_connections(milter):
    import subprocess
    path = os.path.join(milter.tmp, "slow.lua")
    with open(path, "w") as f:
        f.write(ml.PRELUDE + '''
expect(SMFIR_CONTINUE, "conninfo", mt.conninfo(conn, "slow.client.example", "192.0.2.77"))
expect(SMFIR_CONTINUE, "helo", mt.helo(conn, "slow.client.example"))
mt.sleep(2)
mt.disconnect(conn)
''')
    p = subprocess.Popen([ml.MILTERTEST, "-D", "SOCK=" + milter.sock, "-s", path],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        seen = ""
        for _ in range(100):
            r = subprocess.run([ml.CTL, "-s", milter.stats_sock, "show", "sessions"],
                               capture_output=True, text=True, timeout=20)
            seen = r.stdout
            if "192.0.2.77" in seen and "helo=slow.client.example" in seen:
                break
            ml.time.sleep(0.02)
        assert "slow.client.example[192.0.2.77]" in seen and "helo=slow.client.example" in seen, seen
        r = subprocess.run([ml.CTL, "-s", milter.stats_sock, "show", "info"],
                           capture_output=True, text=True, timeout=20)
        assert "sessions: 1" in r.stdout, r.stdout
    finally:
        assert p.wait(timeout=30) == 0, p.stdout.read()
    st = milter.wait_stats(lambda s: s["connections_active"] == 0)
    assert st["connections_active"] == 0


def test_max_recipients_as_in_the_proxy(tmp_path, mdns):
    m = ml.Milter(tmp_path, mdns, extra="max_recipients 2")
    try:
        m.run(envelope(GOOD, "alice@pass.example", rcpts=("a@example.org", "b@example.org")) + '''
expect(SMFIR_REPLYCODE, "rcpt 3", mt.rcptto(conn, "<c@example.org>"))
''')
        assert m.wait_log("452 4.5.3 Error: too many recipients"), m.log()
    finally:
        assert m.stop() in (0, -15), m.log()
