"""limit(KEY, N/PERIOD) through the real proxy with the memory store:
exactly N events pass and event N+1 gets the rule's reply (connect 421
4.7.0 in place of the banner, mail 450 4.7.1, rcpt 452 4.5.3), the limit
recovers after the period (2 s), keys are isolated (127.0.0.2 and
127.0.0.3 source addresses, PROXY-presented networks), every key field
and a combination work, ratelimit_hits_total and the log line count
hits, and `ravelinctl show/clear ratelimit` read and reset a key.
"""

import base64
import os
import subprocess
import time

import pytest

import harness
from test_rules_stages import CTL, Env, stats

RULES = r"""
conn: connect client.ip in (127.0.0.2, 127.0.0.3) && limit(client.ip, 3/2s)
    -> tempfail 421 4.7.0 "Too many connections, slow down"
by_sender: mail sender =~ /@snd\.test$/ && limit(sender, 3/2s)
    -> tempfail 450 4.7.1 "Sending rate exceeded"
by_domain: mail sender =~ /@dom[0-9]\.test$/ && limit(sender.domain, 3/2s)
    -> tempfail 450 4.7.1 "Domain sending rate exceeded"
by_user: mail auth && limit(auth.user, 2/2s)
    -> tempfail 450 4.7.1 "User sending rate exceeded"
combo: mail sender =~ /^combo@/ && limit(client.ip + sender, 2/2s)
    -> tempfail 450 4.7.1 "Combination rate exceeded"
by_rcpt: rcpt rcpt =~ /^limited/ && limit(rcpt, 3/2s)
    -> tempfail 452 4.5.3 "Too many recipients"
by_net: rcpt sender == net@client.test && limit(client.net, 3/2s)
    -> tempfail 452 4.5.3 "Network recipient rate exceeded"
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("limits")
    users = tmp / "users"
    h = subprocess.run(["mkpasswd", "-m", "sha-512", "-s"], input=b"secret",
                       check=True, capture_output=True).stdout.decode().strip()
    users.write_text("alice:%s\nbob:%s\n" % (h, h))
    pport, sport = harness.free_port(), harness.free_port()
    e = Env(tmp, RULES, extra="listen 127.0.0.1:%d inbound proxy-protocol\n"
                              "listen 127.0.0.1:%d submission auth-plaintext\n"
                              "auth_users %s\nauth_failure_delay 0s\n" % (pport, sport, users))
    harness.wait_port(pport)
    harness.wait_port(sport)
    assert e.r.wait_log(" started: ")
    e.pport, e.sport = pport, sport
    yield e
    e.close()


def banner(env, source):
    c = harness.Client(env.port, source=source)
    code, text = c.reply()
    closed = code != 220 and c.closed()
    c.close()
    return code, text, closed


def mail(env, sender, source=None, c=None):
    own = c is None
    if own:
        c = harness.Client(env.port, source=source)
        c.greet()
    code, text = c.cmd("MAIL FROM:<%s>" % sender)
    c.cmd("RSET")
    if own:
        c.cmd("QUIT")
    return code, text


def test_connect_limit_exact_isolated_and_recovers(env):
    before = stats(env.sock)["ratelimit_hits_total"]
    assert [banner(env, "127.0.0.2")[0] for _ in range(3)] == [220, 220, 220]
    code, text, closed = banner(env, "127.0.0.2")
    assert code == 421 and "4.7.0 Too many connections, slow down" in text and closed
    # Another address has its own counter.
    assert [banner(env, "127.0.0.3")[0] for _ in range(3)] == [220, 220, 220]
    assert banner(env, "127.0.0.3")[0] == 421
    # Refused attempts count too: hammering keeps it refused...
    assert banner(env, "127.0.0.2")[0] == 421
    assert stats(env.sock)["ratelimit_hits_total"] == before + 3
    assert env.r.wait_log("ratelimit: key=127.0.0.2 count=4 limit=3/2s rule=conn")
    assert "rule=conn" in env.r.log()
    # ...until the window slides past.
    time.sleep(2.2)
    assert banner(env, "127.0.0.2")[0] == 220


def test_mail_limit_by_sender(env):
    c = harness.Client(env.port)
    c.greet()
    assert [mail(env, "a@snd.test", c=c)[0] for _ in range(3)] == [250] * 3
    code, text = mail(env, "a@snd.test", c=c)
    assert code == 450 and "4.7.1 Sending rate exceeded" in text
    assert mail(env, "b@snd.test", c=c)[0] == 250           # another sender
    assert mail(env, "A@SND.test", c=c)[0] == 450           # addresses are lowercased
    # The session goes on after the refusal.
    assert c.message("ok@client.test", ["u@example.org"], "From: a@client.test\r\n\r\nx")[0] == 250
    c.cmd("QUIT")
    assert env.r.wait_log("ratelimit: key=a@snd.test")


def test_mail_limit_by_sender_domain(env):
    c = harness.Client(env.port)
    c.greet()
    codes = [mail(env, "u%d@dom1.test" % i, c=c)[0] for i in range(4)]
    assert codes == [250, 250, 250, 450]
    assert mail(env, "x@dom2.test", c=c)[0] == 250
    c.cmd("QUIT")


def test_mail_limit_by_client_ip_plus_sender(env):
    assert [mail(env, "combo@client.test", source="127.0.0.4")[0] for _ in range(3)] == [250, 250, 450]
    assert mail(env, "combo@client.test", source="127.0.0.5")[0] == 250
    assert env.r.wait_log("key=127.0.0.4+combo@client.test")


def auth_client(env, user):
    c = harness.Client(env.sport)
    c.greet()
    tok = base64.b64encode(b"\0" + user.encode() + b"\0secret").decode()
    assert c.cmd("AUTH PLAIN " + tok)[0] == 235
    return c


def test_mail_limit_by_auth_user(env):
    c = auth_client(env, "alice")
    assert [mail(env, "alice@example.org", c=c)[0] for _ in range(3)] == [250, 250, 450]
    c.cmd("QUIT")
    c = auth_client(env, "alice")                           # a new session: same user, same count
    code, text = mail(env, "alice@example.org", c=c)
    assert code == 450 and "User sending rate exceeded" in text
    c.cmd("QUIT")
    c = auth_client(env, "bob")
    assert mail(env, "bob@example.org", c=c)[0] == 250
    c.cmd("QUIT")


def test_rcpt_limit_by_recipient(env):
    c = harness.Client(env.port)
    c.greet()
    assert c.cmd("MAIL FROM:<r@client.test>")[0] == 250
    codes = [c.cmd("RCPT TO:<limited1@example.org>")[0] for _ in range(4)]
    assert codes == [250, 250, 250, 452]
    code, text = c.cmd("RCPT TO:<limited1@example.org>")
    assert code == 452 and "4.5.3 Too many recipients" in text
    assert c.cmd("RCPT TO:<limited2@example.org>")[0] == 250
    c.cmd("QUIT")


def test_rcpt_limit_by_client_network(env):
    def rcpt(ip):
        c = harness.Client(env.pport, preamble=harness.proxy_v1(ip))
        c.greet()
        assert c.cmd("MAIL FROM:<net@client.test>")[0] == 250
        code = c.cmd("RCPT TO:<u@example.org>")[0]
        c.cmd("QUIT")
        return code
    assert [rcpt(ip) for ip in ("192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4")] == \
        [250, 250, 250, 452]
    assert rcpt("192.0.3.1") == 250                         # another /24
    assert [rcpt(ip) for ip in ("2001:db8:1:2::1", "2001:db8:1:2:ffff::9", "2001:db8:1:2::7",
                                "2001:db8:1:2::8")] == [250, 250, 250, 452]   # one /64
    assert env.r.wait_log("key=192.0.2.0/24")
    # A key holding '/' itself: the period comes last.
    p = subprocess.run([CTL, "-s", env.sock, "show", "ratelimit", "by_net:192.0.2.0/24/2"],
                       capture_output=True, text=True, timeout=10)
    assert p.stdout == "by_net:192.0.2.0/24: 3 events in the last 2s\n", p.stdout
    p = subprocess.run([CTL, "-s", env.sock, "clear", "ratelimit", "by_net:192.0.2.0/24"],
                       capture_output=True, text=True, timeout=10)
    assert (p.returncode, p.stdout) == (0, "ok\n"), p.stdout
    assert rcpt("192.0.2.5") == 250


def test_ravelinctl_show_and_clear_ratelimit(env):
    c = harness.Client(env.port)
    c.greet()
    assert [mail(env, "show@snd.test", c=c)[0] for _ in range(4)] == [250, 250, 250, 450]
    p = subprocess.run([CTL, "-s", env.sock, "show", "ratelimit", "by_sender:show@snd.test/2"],
                       capture_output=True, text=True, timeout=10)
    assert p.returncode == 0, p.stdout + p.stderr
    # Only the newest N events are kept (ratelimit.h), so the count saturates at N.
    assert p.stdout == "by_sender:show@snd.test: 3 events in the last 2s\n", p.stdout
    p = subprocess.run([CTL, "-s", env.sock, "clear", "ratelimit", "by_sender:show@snd.test"],
                       capture_output=True, text=True, timeout=10)
    assert (p.returncode, p.stdout) == (0, "ok\n"), p.stdout + p.stderr
    assert mail(env, "show@snd.test", c=c)[0] == 250       # counting starts again
    # The form show takes (RULE:KEY/PERIOD) clears too; an unknown key is an error.
    p = subprocess.run([CTL, "-s", env.sock, "clear", "ratelimit", "by_sender:show@snd.test/2"],
                       capture_output=True, text=True, timeout=10)
    assert (p.returncode, p.stdout) == (0, "ok\n"), p.stdout
    p = subprocess.run([CTL, "-s", env.sock, "clear", "ratelimit", "by_sender:nobody@snd.test"],
                       capture_output=True, text=True, timeout=10)
    assert p.returncode == 1 and p.stdout.startswith("error: no such key"), p.stdout
    c.cmd("QUIT")
