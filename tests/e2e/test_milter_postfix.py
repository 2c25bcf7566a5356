"""Milter mode behind a real Postfix (Debian's package; issue 8): a private
Postfix instance configured in a temp directory listens on a loopback
port with `smtpd_milters = inet:127.0.0.1:PORT` (milter_protocol 6,
milter_default_action tempfail) in front of `build/ravelin -M`, and relays
to the recording backend (tests/lib/smtpbackend.py). The SMTP client sees
ravelin's exact reply texts through Postfix; the backend sees the headers
ravelin inserted at the top and not the forged ones it deleted.

Client addresses other than 127.0.0.1 are presented with Postfix's own
XCLIENT (smtpd_authorized_xclient_hosts = 127.0.0.0/8), so SPF runs as it
would for an Internet client. Postfix never resolves anything: no DNS
(smtp_dns_support_level = disabled, smtpd_peername_lookup = no), relayhost
is a loopback address literal. Needs root (Postfix's master) and the
postfix user; skipped otherwise.
"""

import os
import pwd
import shutil
import smtplib
import subprocess
import tempfile
import time

import pytest

import harness
from dnsserver import start_dns_server
import test_milter_lib as ml
import test_senderauth_lib as sa

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"

KEYS = sa.Keys()
ZONES = {
    "pass.example": [{"TXT": "v=spf1 ip4:192.0.2.0/24 -all"}],
    "fail.example": [{"TXT": "v=spf1 -all"}],
    "_dmarc.signer.example": [{"TXT": "v=DMARC1; p=reject"}],
}
ZONES.update(sa.key_zones(KEYS, "signer.example"))

RULES = {
    "50-auth.rules": open(os.path.join(os.path.dirname(sa.SHIPPED_RULES), "50-auth.rules")).read(),
    "60-test.rules": """
ratelimit: mail sender =~ /^limited@/ && limit(client.ip, 2/1m)
    -> tempfail 450 4.7.1 "Sending rate exceeded"
""",
}

MASTER_CF = """\
127.0.0.1:{smtp_port} inet n - n - - smtpd
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n - - proxymap
smtp      unix  - - n - - smtp
relay     unix  - - n - - smtp
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {d}/queue
data_directory = {d}/data
daemon_directory = /usr/lib/postfix/sbin
command_directory = /usr/sbin
mail_owner = postfix
setgid_group = postdrop
myhostname = mta.test.example
mydomain = test.example
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
# The presented test clients may relay as far as Postfix is concerned:
# ravelin decides. The instance is reachable on loopback only.
mynetworks = 127.0.0.0/8 192.0.2.0/24 198.51.100.0/24
relay_domains = example.org
relayhost = [127.0.0.1]:{backend_port}
smtp_dns_support_level = disabled
smtpd_peername_lookup = no
smtpd_authorized_xclient_hosts = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_milters = inet:127.0.0.1:{milter_port}
milter_protocol = 6
milter_default_action = tempfail
milter_connect_timeout = 5s
maillog_file = {d}/maillog
maillog_file_prefixes = {d}
alias_maps =
alias_database =
local_recipient_maps =
biff = no
"""


class Postfix:
    """A private Postfix instance in dir, started with postfix -c."""

    def __init__(self, d, backend_port, milter_port):
        self.dir = d
        self.etc = os.path.join(d, "etc")
        self.port = harness.free_port()
        for sub in ("etc", "queue", "data"):
            os.makedirs(os.path.join(d, sub), exist_ok=True)
        shutil.chown(os.path.join(d, "data"), "postfix")
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write(MAIN_CF.format(d=d, backend_port=backend_port, milter_port=milter_port))
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write(MASTER_CF.format(smtp_port=self.port))
        r = subprocess.run([POSTFIX, "-c", self.etc, "start"], capture_output=True, text=True,
                           timeout=60)
        if r.returncode != 0:
            raise RuntimeError("postfix start: %s %s %s" % (r.stdout, r.stderr, self.log()))
        harness.wait_port(self.port, timeout=20)

    def log(self):
        try:
            with open(os.path.join(self.dir, "maillog")) as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        pidfile = os.path.join(self.dir, "queue", "pid", "master.pid")
        subprocess.run([POSTFIX, "-c", self.etc, "stop"], capture_output=True, timeout=60)
        try:
            pid = int(open(pidfile).read().split()[0])
        except (OSError, ValueError, IndexError):
            return
        end = time.time() + 20
        while time.time() < end:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)


def _can_run_postfix():
    if os.geteuid() != 0 or not os.path.exists(POSTFIX):
        return "needs root and Debian's postfix package"
    try:
        pwd.getpwnam("postfix")
    except KeyError:
        return "no postfix user"
    return None


@pytest.fixture(scope="module")
def stack():
    why = _can_run_postfix()
    if why:
        pytest.skip(why)
    # Postfix's daemons run as the postfix user: every directory above the
    # queue must be searchable by it (pytest's own temp dirs are 0700).
    tmp = tempfile.mkdtemp(prefix="ravelin-pf-", dir="/tmp")
    os.chmod(tmp, 0o755)
    dns = start_dns_server(ZONES)
    backend = harness.Backend(tmp)
    milter = ml.Milter(tmp, dns, rules=RULES)
    try:
        pf = Postfix(os.path.join(tmp, "postfix"), backend.port, milter.port)
    except Exception:
        milter.stop()
        backend.stop()
        dns.stop()
        raise
    yield pf, milter, backend
    pf.stop()
    rc = milter.stop()
    backend.stop()
    dns.stop()
    shutil.rmtree(tmp, ignore_errors=True)
    assert rc in (0, -15), milter.log()[-3000:]


def client(pf, ip=None, helo="mail.client.example"):
    """smtplib to the Postfix instance, presented as ip through XCLIENT."""
    c = smtplib.SMTP("127.0.0.1", pf.port, timeout=30)
    c.ehlo(helo)
    if ip:
        code, text = c.docmd("XCLIENT", "ADDR=%s NAME=mail.client.example HELO=%s" % (ip, helo))
        assert code == 220, (code, text)
        c.ehlo(helo)
    return c


def delivered(backend, marker, timeout=20):
    """The backend's record of the message whose data contains marker."""
    end = time.time() + timeout
    while time.time() < end:
        for m in backend.messages():
            if marker in m["data"]:
                return m
        time.sleep(0.1)
    raise AssertionError("not delivered: %r" % marker)


def top_fields(data):
    """The header fields at the top of data, unfolded, as (name, value)."""
    head = data.split(b"\r\n\r\n", 1)[0].decode()
    head = head.replace("\r\n\t", " ").replace("\r\n ", " ")
    return [tuple(x.strip() for x in line.split(":", 1)) for line in head.split("\r\n")]


def test_postfix_relay_denied_text_and_headers_at_the_top(stack):
    pf, milter, backend = stack
    c = client(pf, "192.0.2.5")
    assert c.mail("alice@pass.example")[0] == 250
    code, text = c.rcpt("x@elsewhere.example")
    assert (code, text) == (554, b"5.7.1 <x@elsewhere.example>: Relay access denied"), pf.log()
    assert c.rcpt("u@example.org")[0] == 250
    marker = b"pf-relay-%d" % time.time_ns()
    msg = (b"From: Alice <alice@pass.example>\r\nTo: <u@example.org>\r\nSubject: "
           + marker + b"\r\nAuthentication-Results: mx.test.example; dkim=pass\r\n"
           b"Authentication-Results: other.example; spf=pass\r\n\r\nhello\r\n.dot line\r\n")
    code, text = c.data(msg)
    assert code == 250, text
    c.quit()
    m = delivered(backend, marker)
    fields = top_fields(m["data"])
    # Ours first, then Received-SPF, then Postfix's Received:.
    assert fields[0][0] == "Authentication-Results", fields
    assert fields[0][1].startswith("mx.test.example;") and "spf=pass" in fields[0][1], fields
    assert "dkim=none" in fields[0][1]
    assert fields[1][0] == "Received-SPF" and fields[1][1].startswith("pass"), fields
    ars = [v for n, v in fields if n.lower() == "authentication-results"]
    assert len(ars) == 2 and ars[1].startswith("other.example;"), ars   # the forged one is gone
    assert m["data"].endswith(b"\r\n\r\nhello\r\n.dot line\r\n")


def test_postfix_spf_fail_rejected(stack):
    pf, milter, backend = stack
    c = client(pf, "198.51.100.66")
    code, text = c.mail("bob@fail.example")
    assert (code, text) == (550, b"5.7.23 SPF validation failed"), pf.log()
    c.quit()


def test_postfix_dkim_pass_header(stack):
    pf, milter, backend = stack
    marker = "pf-dkim-%d" % time.time_ns()
    msg = sa.sign(KEYS, sa.message(frm="Alice <alice@signer.example>", subject=marker,
                                   body="Hello.\r\n.dotted\r\n"),
                  "signer.example", canon=(b"simple", b"simple"))
    c = client(pf, "192.0.2.5")
    c.sendmail("bounce@pass.example", ["u@example.org"], msg)
    c.quit()
    m = delivered(backend, marker.encode())
    name, value = top_fields(m["data"])[0]
    assert name == "Authentication-Results", m["data"][:500]
    assert "dkim=pass header.d=signer.example" in value and "dmarc=pass" in value, value


def test_postfix_rate_limit_tempfail(stack):
    pf, milter, backend = stack
    c = client(pf, "192.0.2.9")
    for _ in range(2):
        assert c.mail("limited@pass.example")[0] == 250
        c.rset()
    code, text = c.mail("limited@pass.example")
    assert (code, text) == (450, b"4.7.1 Sending rate exceeded"), pf.log()
    c.quit()
    st = milter.wait_stats(lambda s: s["messages_tempfailed_total"] >= 1)
    assert st["messages_tempfailed_total"] >= 1 and st["ratelimit_hits_total"] >= 1


def test_postfix_counts_on_the_stats_socket(stack):
    pf, milter, backend = stack
    st = milter.wait_stats(lambda s: s["connections_active"] == 0)
    assert st["connections_total"] >= 4
    assert st["relay_denied_total"] >= 1
    assert st["messages_accepted_total"] >= 2
    assert st["spf_result_total"].get("fail", 0) >= 1


def test_postfix_takes_xclient_right_after_its_greeting(stack, dns, ravelin_factory):
    # ravelin as a proxy in front of this Postfix: once a worker has seen
    # Postfix offer XCLIENT, later connections send it before any EHLO
    # (XCLIENT_README: "at any time, except in the middle of a mail
    # transaction"). Postfix must take it, and the mail must go through.
    # (Kept above the test that stops the stack's milter.)
    pf, milter, backend = stack
    port = harness.free_port()
    conf = """hostname mx.test.example
log stderr
workers 1
listen 127.0.0.1:%d inbound
backend 127.0.0.1:%d xclient
local_domains example.org
mynetworks 10.255.255.0/24
dns_resolver 127.0.0.1:%d
dns_timeout 2s
log_level 1
""" % (port, pf.port, dns.port)
    r = ravelin_factory(conf, port)
    markers = []
    for i in range(3):
        marker = b"pf-early-xclient-%d-%d" % (i, time.time_ns())
        markers.append(marker)
        c = smtplib.SMTP("127.0.0.1", r.port, timeout=30)
        c.ehlo("c%d.client.example" % i)
        msg = (b"From: <a@client.example>\r\nTo: <u@example.org>\r\nSubject: " + marker
               + b"\r\n\r\nhello\r\n")
        c.sendmail("a@client.example", ["u@example.org"], msg)
        c.quit()
    for i, marker in enumerate(markers):
        m = delivered(backend, marker)
        assert m is not None, pf.log()[-3000:]
        # Postfix's own Received: names the client ravelin presented.
        assert b"c%d.client.example" % i in m["data"], m["data"][:600]
    # The first connection learnt it; the other two used it.
    assert r.log().count("XCLIENT right after the greeting") == 2, r.log()[-3000:]
    assert "EHLO first from now on" not in r.log()
    assert "XCLIENT before EHLO" not in r.log()


def test_postfix_tempfails_when_the_milter_is_down(stack):
    # Last in this file: it stops the milter.
    pf, milter, backend = stack
    milter.stop()
    c = client(pf, "192.0.2.5")
    code, _ = c.mail("alice@pass.example")
    if code == 250:
        code, _ = c.rcpt("u@example.org")
    assert 400 <= code < 500, code
    c.close()

