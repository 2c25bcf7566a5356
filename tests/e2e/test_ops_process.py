"""Operations, part 3: the process seen from outside (DESIGN.md sections 3
and 9).

Privilege drop (`user nobody`, run as root: sockets bound first, then the
process's uids and gids are nobody's, and the stats socket keeps working);
`ravelin -V`; log lines with the session id first, on stderr and through
syslog (a /dev/log of the test's own inside a private mount namespace, so
the host's /dev is never touched); `ravelinctl top` under tmux against the
real daemon while mail flows.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

import harness
from test_ops_stats import BODY, CTL, ctl, start, stats, wait_for

RAVELIN = os.path.join(harness.BUILD, "ravelin")
LINE = re.compile(r"\d\d:\d\d:\d\d\.\d{3} ravelin\[(\d+)\]: (.*)\Z")
SID = re.compile(r"[0-9A-F]{8}\Z")


def send_one(port, rcpt="u@example.org", helo="client.test"):
    c = harness.Client(port)
    c.greet(helo)
    code = c.message("a@sender.example", [rcpt], BODY)[0]
    c.cmd("QUIT")
    return code


# --- privilege drop -------------------------------------------------------------

def status_ids(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("Uid", "Gid", "Groups"):
                out[k] = v.split()
    return out


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop privileges")
def test_runs_as_nobody_after_binding(tmp_path, dns, backend, ravelin_factory):
    import pwd
    nobody = pwd.getpwnam("nobody")
    # Port 25-like: a privileged port only root may bind.
    low = None
    for p in range(700, 1000):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", p))
            low = p
            break
        except OSError:
            continue
        finally:
            s.close()
    assert low, "no free port below 1024"
    port = harness.free_port()
    sock = os.path.join(str(tmp_path), "stats.sock")
    conf = harness.base_config(port, backend.port, dns.port,
                               extra="stats_socket %s\nuser nobody\nlisten 127.0.0.1:%d inbound\n"
                               % (sock, low))
    r = ravelin_factory(conf, port, extra_ports=(low,))
    assert r.wait_log("running as nobody (uid %d)" % nobody.pw_uid)
    ids = wait_for(lambda: (lambda x: x if x["Uid"][0] == str(nobody.pw_uid) else None)(
        status_ids(r.proc.pid)))
    assert ids, status_ids(r.proc.pid)
    assert ids["Uid"] == [str(nobody.pw_uid)] * 4      # real, effective, saved, fs
    assert ids["Gid"] == [str(nobody.pw_gid)] * 4
    assert ids["Groups"] == [str(nobody.pw_gid)]
    # Every thread, not only the main one.
    for tid in os.listdir("/proc/%d/task" % r.proc.pid):
        with open("/proc/%d/task/%s/status" % (r.proc.pid, tid)) as f:
            uid_line = [l for l in f if l.startswith("Uid:")][0]
        assert uid_line.split()[1:] == [str(nobody.pw_uid)] * 4, tid
    # Still serving: both listeners, and the stats socket (group nobody's, 0660).
    assert send_one(port) == 250
    assert send_one(low) == 250
    st = os.lstat(sock)
    assert st.st_gid == nobody.pw_gid and st.st_mode & 0o777 == 0o660
    s = stats(sock)
    assert s["messages_accepted_total"] == 2
    assert len(backend.messages()) == 2
    # The configuration is re-read as nobody: here it is out of nobody's
    # reach (the test's directory is root's), so a reload fails cleanly,
    # names the file, and the running configuration stays.
    ans = ctl(sock, "reload")
    assert ans.returncode == 1 and ans.stdout.startswith("error: " + r.conf), ans.stdout
    assert send_one(port) == 250
    assert r.stop() == 0


def test_version_flag_names_ravelin_and_its_libraries():
    r = subprocess.run([RAVELIN, "-V"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert re.fullmatch(r"ravelin \d+\.\d+\.\d+", lines[0]), lines[0]
    libs = {}
    for line in lines[1:]:
        m = re.search(r"(\d+\.\d+(\.\d+)?)", line)
        assert m, "no version in %r" % line
        libs[line.split()[0]] = m.group(1)
    for name in ("libevent", "OpenSSL", "PCRE2", "libspf2", "libopendmarc",
                 "libmilter", "hiredis", "libunbound", "libpsl"):
        assert name in libs, (name, lines)
    assert libs["libspf2"].startswith("1.2")
    assert "libopendkim" not in libs  # DKIM is verified natively (check_dkim.c)
    assert libs["OpenSSL"].startswith("3.")


# --- log lines ------------------------------------------------------------------

def test_every_session_line_starts_with_the_session_id(proxy):
    assert send_one(proxy.port) == 250
    assert send_one(proxy.port, rcpt="x@other.example") == 554
    c = harness.Client(proxy.port)
    c.greet()
    assert c.message("a@sender.example", ["u@example.org"],
                     b"From: a@sender.example\r\n\r\nbare\nLF\r\n")[0] == 550
    c.close()
    assert proxy.wait_log("disconnect from", timeout=5)
    assert wait_for(lambda: proxy.log().count("disconnect from") >= 4)
    lines = proxy.log().splitlines()
    sessions = {}
    for line in lines:
        m = LINE.match(line)
        assert m, "bad log line %r" % line
        assert int(m.group(1)) == proxy.proc.pid
        text = m.group(2)
        # A line about a client (its address, an envelope) belongs to a session.
        if "[127.0.0.1]" in text or "from=<" in text:
            sid, sep, rest = text.partition(": ")
            assert sep and SID.match(sid), "no session id first: %r" % line
            sessions.setdefault(sid, []).append(rest)
    # The port probe (gone before its connect stage ended: only its
    # disconnect is logged) and three sessions from connect to disconnect.
    assert len(sessions) == 4, sessions
    full = [ev for ev in sessions.values() if len(ev) > 1]
    assert len(full) == 3, sessions
    for ev in sessions.values():
        assert re.match(r"disconnect from \S+\[127\.0\.0\.1\]", ev[-1]), ev
    for ev in full:
        assert re.match(r"connect from \S+\[127\.0\.0\.1\] listener=inbound", ev[0]), ev
    kinds = sorted(e.split(":")[0] for ev in full for e in ev[1:-1])
    assert kinds == ["accepted", "reject", "reject"], kinds
    assert any("RCPT" in e and "Relay access denied" in e for ev in sessions.values() for e in ev)
    assert any("DATA" in e and "Bare CR or LF" in e for ev in sessions.values() for e in ev)


SYSLOG_WRAPPER = r"""
set -e
T="$1"; shift
mkdir -p "$T/olddev"
mount --bind /dev "$T/olddev"
mount -t tmpfs -o mode=0755 ravelin-test-dev /dev
for f in null zero random urandom; do ln -s "$T/olddev/$f" "/dev/$f"; done
ln -s "$T/devlog" /dev/log
exec "$@"
"""


def can_unshare():
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "true"],
                       capture_output=True, timeout=10)
    return r.returncode == 0


@pytest.mark.skipif(not can_unshare(), reason="needs root and mount namespaces")
def test_syslog_lines_are_facility_mail_with_session_id(tmp_path, dns, backend):
    t = str(tmp_path)
    devlog = os.path.join(t, "devlog")
    got = []
    rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    rx.bind(devlog)
    rx.settimeout(0.2)
    stop = threading.Event()

    def listen():
        while not stop.is_set():
            try:
                got.append(rx.recv(65536).decode("utf-8", "replace"))
            except socket.timeout:
                continue

    th = threading.Thread(target=listen)
    th.start()
    port = harness.free_port()
    conf = os.path.join(t, "ravelin.conf")
    with open(conf, "w") as f:
        f.write(harness.base_config(port, backend.port, dns.port).replace(
            "log stderr", "log syslog"))
    wrapper = os.path.join(t, "wrap.sh")
    with open(wrapper, "w") as f:
        f.write(SYSLOG_WRAPPER)
    errlog = open(os.path.join(t, "stderr"), "wb")
    p = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", wrapper, t,
                          RAVELIN, "-c", conf], stdout=errlog, stderr=subprocess.STDOUT)
    try:
        harness.wait_port(port, proc=p)
        assert send_one(port) == 250
        assert send_one(port, rcpt="x@other.example") == 554
        assert wait_for(lambda: sum("disconnect from" in g for g in got) >= 3)
    finally:
        p.send_signal(signal.SIGTERM)
        rc = p.wait(timeout=20)
        stop.set()
        th.join()
        rx.close()
        errlog.close()
    assert rc == 0
    with open(os.path.join(t, "stderr"), "rb") as f:
        assert f.read() == b"", "logged to stderr although log syslog"
    # <PRI>TIMESTAMP ravelin[PID]: MESSAGE, PRI = facility mail (2) * 8 + severity.
    pat = re.compile(r"<(\d+)>\w{3} [ \d]\d \d\d:\d\d:\d\d ravelin\[(\d+)\]: (.*)\Z", re.S)
    msgs = []
    for g in got:
        m = pat.match(g)
        assert m, "not a syslog line: %r" % g
        assert int(m.group(1)) // 8 == 2, g          # LOG_MAIL
        assert int(m.group(2)) > 1
        msgs.append((int(m.group(1)) % 8, m.group(3)))
    sess = [t for _, t in msgs if "[127.0.0.1]" in t]
    assert len(sess) >= 6
    for text in sess:
        assert SID.match(text.split(": ")[0]), text
    assert any(sev == 6 and "accepted: from=<a@sender.example>" in t for sev, t in msgs)
    assert any(sev == 6 and "Relay access denied" in t for sev, t in msgs)
    assert any(t.startswith("ravelin 0.") and "started" in t for _, t in msgs)
    assert msgs[-1][1] == "stopped"


# --- ravelinctl top ---------------------------------------------------------------

@pytest.mark.skipif(not shutil.which("tmux"), reason="tmux not installed")
def test_top_shows_moving_numbers_against_the_daemon(tmp_path, dns, backend, ravelin_factory):
    r = start(tmp_path, ravelin_factory, backend, dns)
    tmux = ["env", "-u", "TMUX", "tmux", "-L", "ravelin-ops-top-%d" % os.getpid()]
    stop = threading.Event()
    sent = []

    def feed():
        while not stop.is_set():
            sent.append(send_one(r.port))
            time.sleep(0.01)

    feeder = threading.Thread(target=feed)
    feeder.start()
    screens = []
    try:
        subprocess.run(tmux + ["new-session", "-d", "-s", "top", "-x", "110", "-y", "45",
                               "%s -s %s top -n 4 -d 0.4; echo TOP-EXIT=$?; sleep 30"
                               % (CTL, r.sock)], check=True, timeout=10)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            out = subprocess.run(tmux + ["capture-pane", "-p", "-t", "top"],
                                 capture_output=True, text=True, timeout=10).stdout
            if not screens or screens[-1] != out:
                screens.append(out)
            if "TOP-EXIT=" in out:
                break
            time.sleep(0.05)
    finally:
        stop.set()
        feeder.join()
        subprocess.run(tmux + ["kill-server"], capture_output=True, timeout=10)
    assert "TOP-EXIT=0" in screens[-1], screens[-1]
    totals, rates = [], []
    for sc in screens:
        m = re.search(r"^messages accepted\s+([\d.]+)\s+(\d+)\s*$", sc, re.M)
        if m:
            rates.append(float(m.group(1)))
            totals.append(int(m.group(2)))
    assert len(set(totals)) >= 3, screens       # the numbers move between refreshes
    assert totals == sorted(totals)
    assert max(rates) > 0
    final = screens[-1]
    assert "refresh 4" in final and "version: " in final
    assert re.search(r"^connections\s+[\d.]+\s+\d+", final, re.M)
    assert all(code == 250 for code in sent)
