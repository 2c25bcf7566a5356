"""The shipped rule files (rules/*.rules) through the real proxy: each rule
produces the reply, score, header or log line its comment documents.

Outside clients (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24) come through
a proxy-protocol listener; 10.255.255.9 is in mynetworks; a plain loopback
submission listener serves authenticated users. DNS answers come from the
test's own server. SPF/DKIM/DMARC results themselves are tested in
test_spf*.py, test_dkim_vectors.py and test_dmarc.py; here only what the
shipped rules do with them.
"""

import base64
import os
import subprocess
import time

import pytest

import harness
from dnsserver import start_dns_server
from test_rules_stages import stats

SHIPPED = os.path.join(harness.ROOT, "rules", "*.rules")
OUT = "192.0.2.7"            # an outside client without reverse DNS
MYNET = "10.255.255.9"


def dkim_key(tmp):
    key = os.path.join(str(tmp), "dkim.key")
    subprocess.run(["openssl", "genrsa", "-out", key, "2048"], check=True, capture_output=True)
    der = subprocess.run(["openssl", "rsa", "-in", key, "-pubout", "-outform", "DER"],
                         check=True, capture_output=True).stdout
    return open(key, "rb").read(), base64.b64encode(der).decode()


class Shipped:
    def __init__(self, tmp):
        self.tmp = str(tmp)
        self.key, pub = dkim_key(tmp)
        self.dns = start_dns_server({
            "spf-fail.test": [{"TXT": "v=spf1 -all"}],
            "spf-soft.test": [{"TXT": "v=spf1 ~all"}],
            "spf-perm.test": [{"TXT": "v=spf1 frobnicate:x -all"}],
            "spf-temp.test": ["TIMEOUT"],
            "spf-pass.test": [{"TXT": "v=spf1 ip4:192.0.2.0/24 -all"}],
            "_dmarc.dmarc-reject.test": [{"TXT": "v=DMARC1; p=reject"}],
            "_dmarc.dmarc-quar.test": [{"TXT": "v=DMARC1; p=quarantine"}],
            "_dmarc.dmarc-none.test": [{"TXT": "v=DMARC1; p=none"}],
            "s1._domainkey.dkim.test": [{"TXT": "v=DKIM1; k=rsa; p=" + pub}],
            "99.2.0.192.in-addr.arpa": [{"PTR": "mail.ptr.test."}],
            "mail.ptr.test": [{"A": "192.0.2.99"}],
        })
        self.backend = harness.Backend(self.tmp, "--xclient")
        users = os.path.join(self.tmp, "users")
        h = subprocess.run(["mkpasswd", "-m", "sha-512", "-s"], input=b"secret",
                           check=True, capture_output=True).stdout.decode().strip()
        with open(users, "w") as f:
            f.write("alice:%s\nbob:%s\n" % (h, h))
        self.sock = os.path.join(self.tmp, "stats.sock")
        self.port = harness.free_port()       # proxy-protocol, inbound
        self.sub = harness.free_port()        # submission, AUTH without TLS
        conf = """hostname mx.test.example
log stderr
workers 2
listen 127.0.0.1:%d inbound proxy-protocol
listen 127.0.0.1:%d submission auth-plaintext
backend 127.0.0.1:%d xclient
local_domains example.org .sub.example.org
mynetworks 10.255.255.0/24
dns_resolver 127.0.0.1:%d
dns_timeout 1s
auth_users %s
auth_failure_delay 0s
stats_socket %s
rules %s
""" % (self.port, self.sub, self.backend.port, self.dns.port, users, self.sock, SHIPPED)
        self.r = harness.Ravelin(self.tmp, conf, port=self.port, extra_ports=(self.sub,))
        assert self.r.wait_log(" started: ")

    def close(self):
        rc = self.r.stop()
        self.backend.stop()
        self.dns.stop()
        assert rc in (0, None, -15), self.r.log()[-3000:]

    def client(self, ip=OUT):
        return harness.Client(self.port, preamble=harness.proxy_v1(ip))

    def delivered(self, sender):
        time.sleep(0.05)
        return [m for m in self.backend.messages() if ("<%s>" % sender) in m["mail"]]

    def accepted_line(self, sender):
        assert self.r.wait_log("accepted: from=<%s>" % sender), self.r.log()[-2000:]
        return [ln for ln in self.r.log().splitlines() if "accepted: from=<%s>" % sender in ln][-1]


@pytest.fixture(scope="module")
def sh(tmp_path_factory):
    e = Shipped(tmp_path_factory.mktemp("shipped"))
    yield e
    e.close()


def msg(frm="a@client.test", subject="hello", extra="", body="Hi.\r\n", date=True):
    h = "From: %s\r\nTo: u@example.org\r\nSubject: %s\r\n" % (frm, subject)
    if date:
        h += "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <%s.%f@client.test>\r\n" % (
            subject.replace(" ", "."), time.time())
    return h + extra + "\r\n" + body


def helo_reply(sh, name, ip=OUT):
    c = sh.client(ip)
    assert c.reply()[0] == 220
    code, text = c.cmd("EHLO " + name)
    c.cmd("QUIT")
    return code, text


# ---- 10-helo.rules ----

@pytest.mark.parametrize("name,reply", [
    ("localhost", "550 5.7.1 HELO name refused: you are not localhost"),
    ("LOCALHOST.localdomain", "550 5.7.1 HELO name refused: you are not localhost"),
    ("[127.0.0.1]", "550 5.7.1 HELO name refused: you are not localhost"),
    ("[IPv6:::1]", "550 5.7.1 HELO name refused: you are not localhost"),
    ("mx.test.example", "550 5.7.1 HELO name refused: that is my name"),
    ("MX.Test.Example", "550 5.7.1 HELO name refused: that is my name"),
    ("192.0.2.7", "501 5.5.2 HELO name refused: an address literal needs brackets"),
    ("[192.0.2.7]", None),
    ("mail.client.test", None),
    ("localhost.client.test", None),
])
def test_helo_sanity_from_outside(sh, name, reply):
    code, text = helo_reply(sh, name)
    if reply:
        assert text.startswith(reply), text
        assert "rule=helo_" in sh.r.log()
    else:
        assert code == 250, text


@pytest.mark.parametrize("name", ["localhost", "mx.test.example", "192.0.2.7"])
def test_helo_sanity_exempts_mynetworks(sh, name):
    assert helo_reply(sh, name, ip=MYNET)[0] == 250


def test_refused_helo_leaves_the_session_usable(sh):
    c = sh.client()
    c.reply()
    assert c.cmd("EHLO localhost")[0] == 550
    assert c.cmd("MAIL FROM:<h@client.test>")[0] == 503       # no HELO accepted yet
    assert c.cmd("EHLO mail.client.test")[0] == 250
    assert c.message("h@client.test", ["u@example.org"], msg())[0] == 250
    c.cmd("QUIT")


def test_helo_not_fqdn_and_no_ptr_only_score(sh):
    # helo_not_fqdn 1.5 + helo_no_ptr 1 (no reverse DNS for outside clients).
    c = sh.client()
    c.greet("mypc")
    assert c.message("nf@client.test", ["u@example.org"], msg())[0] == 250
    c.cmd("QUIT")
    assert "score=2.5" in sh.accepted_line("nf@client.test")


def test_client_with_confirmed_reverse_dns_does_not_score(sh):
    c = sh.client("192.0.2.99")
    c.greet("mail.ptr.test")
    assert c.message("ptr@client.test", ["u@example.org"], msg(subject="ptr"))[0] == 250
    c.cmd("QUIT")
    line = sh.accepted_line("ptr@client.test")
    assert "score=0.0" in line and "mail.ptr.test[192.0.2.99]" in sh.r.log(), line


# ---- 20-envelope.rules ----

def test_sender_not_fqdn_refused_from_outside_only(sh):
    c = sh.client()
    c.greet("mail.client.test")
    code, text = c.cmd("MAIL FROM:<user@localhost>")
    assert code == 504 and "5.5.2 Sender address rejected: need a fully-qualified address" in text
    c.cmd("QUIT")
    c = sh.client(MYNET)
    c.greet("mail.client.test")
    assert c.cmd("MAIL FROM:<user@localhost>")[0] == 250
    c.cmd("QUIT")


def test_null_sender_with_several_recipients_scores(sh):
    c = sh.client("192.0.2.21")
    c.greet("mail.client.test")
    # Null sender: the SPF identity is the HELO name (no record: none).
    assert c.message("", ["u@example.org", "v@example.org"], msg(subject="bounce2"))[0] == 250
    c.cmd("QUIT")
    line = [ln for ln in sh.r.log().splitlines() if "accepted: from=<>" in ln][-1]
    assert "score=4.0" in line, line      # no_ptr 1 + bounce_many_rcpt 3


def test_local_sender_from_outside_scores(sh):
    c = sh.client()
    c.greet("mail.client.test")
    assert c.message("u@example.org", ["v@example.org"], msg(subject="localsender"))[0] == 250
    c.cmd("QUIT")
    assert "score=3.0" in sh.accepted_line("u@example.org")   # no_ptr 1 + local sender 1 + spoof_mismatch 1


def test_conn_rate_61st_connection_gets_421_instead_of_the_banner(sh):
    ip = "198.51.100.60"
    for i in range(60):
        c = sh.client(ip)
        assert c.reply()[0] == 220, i
        c.close()
    c = sh.client(ip)
    code, text = c.reply()
    assert code == 421 and "4.7.0 Too many connections, slow down" in text
    assert c.closed()
    # Another address is not affected; mynetworks never counts.
    c = sh.client("198.51.100.61")
    assert c.reply()[0] == 220
    c.close()
    assert sh.r.wait_log("rule=conn_rate")


def test_rcpt_rate_per_client_network(sh):
    # 200 recipients an hour per /24, shared by two addresses of one network.
    n = 0
    for ip in ("203.0.113.5", "203.0.113.6"):
        c = sh.client(ip)
        c.greet("mail.client.test")
        for k in range(2):
            assert c.cmd("MAIL FROM:<rr@client.test>")[0] == 250
            for j in range(50):
                code, text = c.cmd("RCPT TO:<r%d@example.org>" % n)
                assert code == 250, (n, text)
                n += 1
            assert c.cmd("RSET")[0] == 250
        c.cmd("QUIT")
    c = sh.client("203.0.113.77")
    c.greet("mail.client.test")
    assert c.cmd("MAIL FROM:<rr@client.test>")[0] == 250
    code, text = c.cmd("RCPT TO:<one-too-many@example.org>")
    assert code == 452 and "4.5.3 Too many recipients, slow down" in text
    c.cmd("QUIT")
    c = sh.client("203.0.114.5")   # another /24
    c.greet("mail.client.test")
    assert c.cmd("MAIL FROM:<rr@client.test>")[0] == 250
    assert c.cmd("RCPT TO:<u@example.org>")[0] == 250
    c.cmd("QUIT")


def auth_session(sh, user):
    c = harness.Client(sh.sub)
    c.greet("laptop.client.test")
    tok = base64.b64encode(b"\0" + user.encode() + b"\0secret").decode()
    code, text = c.cmd("AUTH PLAIN " + tok)
    assert code == 235, text
    return c


def test_auth_msg_rate_300_per_user(sh):
    c = auth_session(sh, "alice")
    for i in range(300):
        code, text = c.cmd("MAIL FROM:<alice@example.org>")
        assert code == 250, (i, text)
        assert c.cmd("RSET")[0] == 250
    code, text = c.cmd("MAIL FROM:<alice@example.org>")
    assert code == 450 and "4.7.1 Sending rate exceeded, try again later" in text
    c.cmd("QUIT")
    c = auth_session(sh, "bob")
    assert c.cmd("MAIL FROM:<bob@example.org>")[0] == 250
    c.cmd("QUIT")


# ---- 50-auth.rules ----

@pytest.mark.parametrize("domain,reply", [
    ("spf-fail.test", "550 5.7.23 SPF validation failed"),
    ("spf-perm.test", "550 5.7.24 SPF record of the sender domain is invalid"),
    ("spf-temp.test", "451 4.7.24 SPF temporary error, try again later"),
])
def test_spf_refusals_at_mail(sh, domain, reply):
    c = sh.client()
    c.greet("mail.client.test")
    code, text = c.cmd("MAIL FROM:<x@%s>" % domain)
    assert text.startswith(reply), text
    c.cmd("QUIT")
    # Not for mynetworks (SPF does not even run) nor authenticated users.
    c = sh.client(MYNET)
    c.greet("mail.client.test")
    assert c.cmd("MAIL FROM:<x@%s>" % domain)[0] == 250
    c.cmd("QUIT")


def test_spf_softfail_only_scores(sh):
    c = sh.client()
    c.greet("mail.client.test")
    assert c.message("x@spf-soft.test", ["u@example.org"], msg())[0] == 250
    c.cmd("QUIT")
    assert "score=4.0" in sh.accepted_line("x@spf-soft.test")   # no_ptr 1 + softfail 2 + spoof_mismatch 1


@pytest.mark.parametrize("policy,outcome", [
    ("reject", "550 5.7.1 Rejected by the DMARC policy of the From: domain"),
    ("quar", "quarantine"),
    ("none", "none"),
])
def test_dmarc_policies(sh, policy, outcome):
    # SPF passes for spf-pass.test but is not aligned with the From: domain.
    sender = "d-%s@spf-pass.test" % policy
    c = sh.client()
    c.greet("mail.client.test")
    code, text = c.message(sender, ["u@example.org"], msg(frm="x@dmarc-%s.test" % policy))
    c.cmd("QUIT")
    if outcome.startswith("550"):
        assert text.startswith(outcome), text
        assert sh.delivered(sender) == []
        return
    assert code == 250, text
    head = sh.delivered(sender)[0]["data"].split(b"\r\n\r\n")[0].decode().split("\r\n")
    line = sh.accepted_line(sender)
    if outcome == "quarantine":
        assert "X-Ravelin-DMARC: fail (policy quarantine)" in head
        assert "X-Spam-Flag: YES" in head                         # 1 + 5 >= 5
        assert "score=7.0" in line, line     # + spoof_mismatch 1
    else:
        assert "X-Ravelin-DMARC: fail (policy quarantine)" not in head
        assert "score=3.0" in line, line          # no_ptr 1 + dmarc_none 1 + spoof_mismatch 1


def test_dkim_fail_scores(sh):
    import dkim
    raw = msg(frm="x@dkim.test", subject="signed").encode()
    sig = dkim.sign(raw, b"s1", b"dkim.test", sh.key, include_headers=[b"from", b"subject"])
    tampered = sig + raw.replace(b"Hi.", b"Ho.")
    c = sh.client()
    c.greet("mail.client.test")
    assert c.message("dk@client.test", ["u@example.org"], tampered)[0] == 250
    c.cmd("QUIT")
    line = sh.accepted_line("dk@client.test")
    assert "dkim=fail" in line and "score=3.5" in line, line       # no_ptr 1 + dkim_fail 1.5 + spoof_mismatch 1


def test_local_domain_spoofing_from_outside_refused(sh):
    c = sh.client()
    c.greet("mail.client.test")
    code, text = c.message("sp@client.test", ["u@example.org"], msg(frm="boss@example.org"))
    c.cmd("QUIT")
    assert code == 550 and "5.7.1 Message From: spoofs a local domain" in text
    assert sh.delivered("sp@client.test") == []
    assert stats(sh.sock)["spoof_detected_total"] >= 1


# ---- 90-score.rules ----

def test_score_thresholds(sh):
    c = sh.client()
    c.greet("mail.client.test")
    # pharma 5 + no_ptr 1 = 6: tagged and logged.
    assert c.message("s5@client.test", ["u@example.org"], msg(subject="Cheap Viagra"))[0] == 250
    # + subject in capitals 1 + no Date 1 + no Message-ID 1 = 9: tagged.
    assert c.message("s9@client.test", ["u@example.org"],
                     msg(subject="BUY VIAGRA NOW TODAY", date=False))[0] == 250
    # + HELO mypc (1.5) in a new session = 10.5: refused.
    c.cmd("QUIT")
    c = sh.client()
    c.greet("mypc")
    code, text = c.message("s10@client.test", ["u@example.org"],
                           msg(subject="BUY VIAGRA NOW TODAY", date=False))
    assert code == 550 and "5.7.1 Message looks like spam" in text
    c.cmd("QUIT")
    for s, score in (("s5@client.test", "6.0"), ("s9@client.test", "9.0")):
        head = sh.delivered(s)[0]["data"].split(b"\r\n\r\n")[0].decode().split("\r\n")
        assert "X-Spam-Flag: YES" in head
        assert "score=%s" % score in sh.accepted_line(s)
    assert sh.delivered("s10@client.test") == []
    assert "rule spam_tag: tagged as spam" in sh.r.log()
    hits = stats(sh.sock)["rule_hits_total"]
    for name in ("subject_pharma", "subject_all_caps", "no_date", "no_message_id", "spam_tag",
                 "spam_reject", "helo_no_ptr"):
        assert hits.get(name, 0) >= 1, (name, hits)


def test_shipped_rules_pass_check_mode(sh):
    p = subprocess.run([os.path.join(harness.BUILD, "ravelin"), "-c", sh.r.conf, "-t"],
                       capture_output=True, text=True, timeout=10)
    assert p.returncode == 0, p.stderr


@pytest.mark.parametrize("subject,caps", [("Re: Meeting at NOON", False), ("URGENT BUSINESS PROPOSAL", True),
                                          ("WIN 1000000 EUROS RIGHT NOW!!", True), ("ABCDEFGHIJK", False)])
def test_subject_in_capitals(sh, subject, caps):
    sender = "caps%d@client.test" % abs(hash(subject))
    c = sh.client()
    c.greet("mail.client.test")
    assert c.message(sender, ["u@example.org"], msg(subject=subject))[0] == 250
    c.cmd("QUIT")
    assert ("score=2.0" if caps else "score=1.0") in sh.accepted_line(sender)   # + no_ptr 1
