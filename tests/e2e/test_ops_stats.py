"""Operations, part 1: the stats socket of the real daemon (DESIGN.md
sections 7 and 11).

build/ravelin runs in front of the recording backend with a stats_socket;
every command is asked through build/ravelinctl and through a plain
AF_UNIX socket. The counters are checked after a known sequence of
accepted, refused, tempfailed and abandoned transactions (a transaction
counts once, in one counter), `show metrics` is read by the strict
Prometheus parser of test_control.py and must agree with `show stats`,
and the counters stay exact under many parallel sessions.
"""

import base64
import json
import os
import re
import socket
import subprocess
import threading
import time

import pytest

import harness
from test_control import CONTRACT, LABELLED, parse_prometheus

CTL = os.path.join(harness.BUILD, "ravelinctl")
BODY = "From: a@sender.example\r\nTo: u@example.org\r\nSubject: ops\r\n\r\nhello\r\n"


# --- helpers shared by the test_ops_* files -----------------------------------

def ctl(sock, *args, timeout=20):
    """ravelinctl -s SOCK ARGS...; the CompletedProcess."""
    return subprocess.run([CTL, "-s", sock, *args], capture_output=True, text=True,
                          timeout=timeout)


def raw(sock, line, timeout=10):
    """One command over a plain AF_UNIX socket; the whole answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
        c.settimeout(timeout)
        c.connect(sock)
        c.sendall(line.encode() + b"\n")
        out = b""
        while True:
            chunk = c.recv(65536)
            if not chunk:
                return out.decode()
            out += chunk


def stats(sock):
    r = ctl(sock, "show", "stats")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def info(sock):
    r = ctl(sock, "show", "info")
    assert r.returncode == 0, r.stderr
    out = {}
    for line in r.stdout.splitlines():
        k, sep, v = line.partition(": ")
        assert sep, "not key: value: %r" % line
        out[k] = v
    return out


def wait_for(pred, timeout=5.0, step=0.02):
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


def start(tmp_path, factory, backend, dns, extra="", sockname="stats.sock", **kw):
    """A ravelin with a stats socket; .sock is its path."""
    sock = os.path.join(str(tmp_path), sockname)
    r = harness.start_proxy(factory, backend, dns,
                            extra="stats_socket %s\n%s" % (sock, extra), **kw)
    r.sock = sock
    return r


def mkpasswd(password):
    r = subprocess.run(["mkpasswd", "-m", "sha-512", "-s"], input=password.encode(),
                       check=True, capture_output=True)
    return r.stdout.decode().strip()


# --- fixtures -----------------------------------------------------------------

@pytest.fixture
def rcpt_backend(tmp_path):
    """A backend that refuses every recipient containing "reject" with 550."""
    b = harness.Backend(str(tmp_path), "--xclient", "--reply-rcpt", "550 5.1.1 No such user")
    yield b
    b.stop()


@pytest.fixture
def daemon(tmp_path, dns, rcpt_backend, ravelin_factory):
    return start(tmp_path, ravelin_factory, rcpt_backend, dns)


# --- every command ------------------------------------------------------------

def test_show_info_has_the_contract_keys(daemon):
    ver = subprocess.run([os.path.join(harness.BUILD, "ravelin"), "-V"], capture_output=True,
                         text=True, check=True).stdout.splitlines()[0].split()[1]
    a = harness.Client(daemon.port)
    a.greet()
    b = harness.Client(daemon.port)
    b.greet()
    i = wait_for(lambda: (lambda x: x if x["sessions"] == "2" else None)(info(daemon.sock)))
    assert i is not None, info(daemon.sock)
    assert list(i) == ["version", "uptime", "config", "workers", "sessions"]
    assert i["version"] == ver
    assert i["config"] == daemon.conf
    assert i["workers"] == "2"
    assert re.fullmatch(r"[0-9]+", i["uptime"])
    time.sleep(1.1)
    assert int(info(daemon.sock)["uptime"]) >= 1
    a.cmd("QUIT")
    b.close()
    assert wait_for(lambda: info(daemon.sock)["sessions"] == "0")
    assert raw(daemon.sock, "show info").splitlines()[:1] == ["version: " + ver]


def test_show_stats_has_every_counter_from_the_start(daemon):
    s = stats(daemon.sock)
    for name in CONTRACT:
        assert name in s, name
        if name in LABELLED:
            assert isinstance(s[name], dict)
    # Only the harness's port probe has happened yet.
    for name in CONTRACT:
        if name not in ("connections_total", "connections_active") and name not in LABELLED:
            assert s[name] == 0, name
    assert s["rule_hits_total"] == {}
    assert json.loads(raw(daemon.sock, "show stats")).keys() == s.keys()


def test_show_sessions_lists_each_open_session(daemon):
    idle = harness.Client(daemon.port)
    idle.greet("idle.test")
    intxn = harness.Client(daemon.port)
    intxn.greet("txn.test")
    assert intxn.cmd("MAIL FROM:<a@sender.example>")[0] == 250
    indata = harness.Client(daemon.port)
    indata.greet("data.test")
    assert indata.cmd("MAIL FROM:<a@sender.example>")[0] == 250
    assert indata.cmd("RCPT TO:<u@example.org>")[0] == 250
    assert indata.cmd("DATA")[0] == 354
    time.sleep(1.1)
    lines = ctl(daemon.sock, "show", "sessions").stdout.splitlines()
    assert len(lines) == 3, lines
    # The raw socket sees the same sessions (ages may have ticked).
    assert sorted(l.split()[0] for l in raw(daemon.sock, "show sessions").splitlines()) == \
        sorted(l.split()[0] for l in lines)
    pat = re.compile(r"([0-9A-F]{8}) \S+\[127\.0\.0\.1\]:(\d+) inbound (\w+) age=(\d+)s "
                     r"helo=(\S+)")
    seen = {}
    for line in lines:
        m = pat.match(line)
        assert m, line
        seen[m.group(5)] = (m.group(1), int(m.group(2)), m.group(3), int(m.group(4)))
    assert seen["idle.test"][1] == idle.sock.getsockname()[1]
    assert seen["idle.test"][2] == "command"
    assert seen["txn.test"][2] == "command"
    assert seen["data.test"][2] == "data"
    assert all(v[3] >= 1 for v in seen.values())
    # The id is the one on the session's log lines.
    assert daemon.wait_log("%s: connect from " % seen["idle.test"][0])
    indata.send(BODY + ".\r\n")
    assert indata.reply()[0] == 250
    for c in (idle, intxn, indata):
        c.cmd("QUIT")
    assert wait_for(lambda: ctl(daemon.sock, "show", "sessions").stdout == "")


def test_show_config_help_and_errors(daemon):
    r = ctl(daemon.sock, "show", "config")
    assert r.returncode == 0
    assert "listen 127.0.0.1:%d inbound" % daemon.port in r.stdout
    assert "backend 127.0.0.1:%d xclient" % daemon.backend.port in r.stdout
    assert "hostname mx.test.example" in r.stdout
    assert raw(daemon.sock, "show config") == r.stdout
    h = ctl(daemon.sock, "help")
    assert h.returncode == 0
    for cmd in ("show info", "show stats", "show metrics", "show sessions", "show config",
                "reload", "help"):
        assert cmd in h.stdout, cmd
    assert raw(daemon.sock, "help") == h.stdout
    bad = ctl(daemon.sock, "show", "nothing")
    assert bad.returncode == 1 and bad.stdout.startswith("error:")
    assert raw(daemon.sock, "frobnicate").startswith("error: unknown command")


def test_reload_over_the_socket_answers_ok(daemon):
    assert ctl(daemon.sock, "reload").stdout == "ok\n"
    assert raw(daemon.sock, "reload") == "ok\n"
    s = stats(daemon.sock)
    assert s["config_reloads_total"] == 2
    assert s["config_reload_failures_total"] == 0


# --- counter values after a known sequence ------------------------------------

def test_counters_after_a_known_sequence(tmp_path, dns, rcpt_backend, ravelin_factory):
    users = os.path.join(str(tmp_path), "users")
    with open(users, "w") as f:
        f.write("bob:%s\n" % mkpasswd("secret"))
    sub = harness.free_port()
    r = start(tmp_path, ravelin_factory, rcpt_backend, dns,
              extra="listen 127.0.0.1:%d submission auth-plaintext\nauth_users %s\n"
              "auth_failure_delay 0\n" % (sub, users))
    harness.wait_port(sub)
    # The two port probes (one per listener) are counted once accepted.
    before = wait_for(lambda: (lambda x: x if x["connections_total"] == 2 else None)(
        stats(r.sock)))
    assert before, stats(r.sock)
    c = harness.Client(r.port)
    c.greet()
    # 1. accepted
    assert c.message("a@sender.example", ["u@example.org"], BODY)[0] == 250
    # 2. relay denied twice, then DATA refused: one rejected transaction
    assert c.cmd("MAIL FROM:<a@sender.example>")[0] == 250
    assert c.cmd("RCPT TO:<x@other.example>")[0] == 554
    assert c.cmd("RCPT TO:<y@other.example>")[0] == 554
    assert c.cmd("DATA")[0] == 554
    assert c.cmd("RSET")[0] == 250
    # 3. recipient refused by the backend, the transaction abandoned: rejected
    assert c.cmd("MAIL FROM:<a@sender.example>")[0] == 250
    assert c.cmd("RCPT TO:<reject@example.org>")[0] == 550
    assert c.cmd("RSET")[0] == 250
    # 4. message refused for its content (bare LF): rejected
    assert c.message("a@sender.example", ["u@example.org"],
                     b"From: a@sender.example\r\n\r\nbare\nLF\r\n")[0] == 550
    assert c.cmd("RSET")[0] == 250
    # 5. the backend tempfails the message: tempfailed
    code, text = c.message("a@sender.example", ["u@example.org"],
                           "From: a@sender.example\r\nX-Backend-Fate: 4xx\r\n\r\nx\r\n")
    assert code // 100 == 4, text
    assert c.cmd("RSET")[0] == 250
    # 6. abandoned without any refusal: counts nowhere
    assert c.cmd("MAIL FROM:<a@sender.example>")[0] == 250
    assert c.cmd("RCPT TO:<u@example.org>")[0] == 250
    assert c.cmd("RSET")[0] == 250
    assert c.cmd("MAIL FROM:<a@sender.example>")[0] == 250
    assert c.cmd("QUIT")[0] == 221
    # 7. a refused recipient and then an accepted message: accepted only
    c = harness.Client(r.port)
    c.greet()
    assert c.message("a@sender.example", ["x@other.example", "u@example.org"], BODY)[0] == 250
    c.cmd("QUIT")
    # 8. MAIL without AUTH on the submission listener, bad AUTH, good AUTH
    s = harness.Client(sub)
    s.greet()
    assert s.cmd("MAIL FROM:<bob@example.org>")[0] == 530
    assert s.cmd("AUTH PLAIN " + base64.b64encode(
        b"\0bob\0wrong").decode())[0] == 535
    assert s.cmd("AUTH PLAIN " + base64.b64encode(
        b"\0bob\0secret").decode())[0] == 235
    assert s.message("bob@example.org", ["u@example.org"],
                     "From: bob@example.org\r\n\r\nsubmitted\r\n")[0] == 250
    s.cmd("QUIT")
    # 9. a client that disconnects in the middle of DATA without a refusal
    d = harness.Client(r.port)
    d.greet()
    assert d.cmd("MAIL FROM:<a@sender.example>")[0] == 250
    assert d.cmd("RCPT TO:<u@example.org>")[0] == 250
    assert d.cmd("DATA")[0] == 354
    d.send("From: a@sender.example\r\n\r\npartial")
    d.close()

    assert wait_for(lambda: stats(r.sock)["connections_active"] == 0)
    after = stats(r.sock)
    delta = {k: after[k] - before[k] for k in after if not isinstance(after[k], dict)}
    assert delta["connections_total"] == 4
    assert delta["messages_accepted_total"] == 3
    assert delta["messages_rejected_total"] == 4   # 2, 3, 4, 8's 530
    assert delta["messages_tempfailed_total"] == 1
    assert delta["messages_discarded_total"] == 0
    assert delta["recipients_rejected_total"] == 4  # 2 relay + backend 550 + 7's relay
    assert delta["relay_denied_total"] == 3
    assert delta["auth_success_total"] == 1
    assert delta["auth_failure_total"] == 1
    assert delta["backend_errors_total"] == 0
    assert delta["spoof_detected_total"] == 0
    assert delta["ratelimit_hits_total"] == 0
    # Messages that reached end of data were checked: spf/dkim/dmarc counted.
    assert sum(after["dkim_result_total"].values()) >= 3

    # show metrics says the same, strictly formatted.
    text = ctl(r.sock, "show", "metrics").stdout
    assert raw(r.sock, "show metrics").split("\n")[0] == text.split("\n")[0]
    fam = parse_prometheus(text)
    assert set(fam) == {"ravelin_" + k for k in after}
    for k, v in after.items():
        samples = fam["ravelin_" + k]["samples"]
        if isinstance(v, dict):
            label = {"rule_hits_total": "rule", "policy_checks_total": "where"}.get(k, "result")
            assert {s[0][label]: s[1] for s in samples} == v, k
        else:
            assert samples == [({}, float(v))], k
    assert fam["ravelin_connections_active"]["type"] == "gauge"
    assert fam["ravelin_messages_accepted_total"]["type"] == "counter"


# --- exact under concurrency --------------------------------------------------

def test_counters_are_exact_under_parallel_sessions(tmp_path, dns, rcpt_backend,
                                                    ravelin_factory):
    r = start(tmp_path, ravelin_factory, rcpt_backend, dns, extra="max_sessions_per_ip 0\n")
    before = wait_for(lambda: (lambda x: x if x["connections_total"] == 1 else None)(
        stats(r.sock)))
    assert before, stats(r.sock)
    threads, per = 16, 20
    errors = []
    accepted = []

    def run(n):
        try:
            for i in range(per):
                c = harness.Client(r.port)
                if i % 4 == 0:
                    c.greet("t%d.test" % n)
                    code, _ = c.message("a@sender.example", ["u@example.org"], BODY)
                    if code == 250:
                        accepted.append(1)
                    c.cmd("QUIT")
                elif i % 4 == 1:
                    c.greet("t%d.test" % n)
                    c.cmd("QUIT")
                else:
                    c.close()   # connect and leave at once
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    ts = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors[:3]
    assert wait_for(lambda: stats(r.sock)["connections_active"] == 0)
    after = stats(r.sock)
    assert after["connections_total"] - before["connections_total"] == threads * per
    assert len(accepted) == threads * per // 4
    assert after["messages_accepted_total"] - before["messages_accepted_total"] == len(accepted)
    assert len(rcpt_backend.messages()) == len(accepted)
    assert info(r.sock)["sessions"] == "0"
