"""Operations, part 2: the life of the process (DESIGN.md sections 1 and 3).

SIGHUP and `reload` swap the configuration atomically for new sessions
(open ones keep theirs), a broken file keeps the old configuration and is
named FILE:LINE in the answer and the log; SIGTERM closes the listening
sockets, lets open transactions finish up to shutdown_timeout, then
answers 421 4.3.2 and exits 0; and no message is lost or acknowledged
twice while parallel clients stream through a reload and a shutdown.
"""

import os
import re
import signal
import socket
import threading
import time

import harness
from test_ops_stats import BODY, ctl, raw, start, stats, wait_for


def rewrite(r, old, new):
    """Edit the running daemon's configuration file in place."""
    with open(r.conf) as f:
        text = f.read()
    assert old in text
    with open(r.conf, "w") as f:
        f.write(text.replace(old, new))


def rcpt_code(port, rcpt):
    c = harness.Client(port)
    c.greet()
    assert c.cmd("MAIL FROM:<a@sender.example>")[0] == 250
    code = c.cmd("RCPT TO:<%s>" % rcpt)[0]
    c.cmd("QUIT")
    return code


def refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return False
    except ConnectionRefusedError:
        return True


# --- reload ---------------------------------------------------------------------

def test_sighup_changes_local_domains_for_new_sessions_only(tmp_path, dns, backend,
                                                            ravelin_factory):
    r = start(tmp_path, ravelin_factory, backend, dns)
    assert rcpt_code(r.port, "u@new.example") == 554
    old = harness.Client(r.port)
    old.greet()
    rewrite(r, "local_domains example.org", "local_domains example.org new.example")
    r.signal(signal.SIGHUP)
    assert r.wait_log("reloaded " + r.conf)
    assert rcpt_code(r.port, "u@new.example") == 250
    # The session opened before the reload keeps the configuration it began with.
    assert old.cmd("MAIL FROM:<a@sender.example>")[0] == 250
    assert old.cmd("RCPT TO:<u@new.example>")[0] == 554
    old.cmd("QUIT")
    assert stats(r.sock)["config_reloads_total"] == 1


def test_broken_config_keeps_the_old_one_and_names_file_and_line(tmp_path, dns, backend,
                                                                 ravelin_factory):
    r = start(tmp_path, ravelin_factory, backend, dns)
    with open(r.conf) as f:
        good = f.read()
    nlines = good.count("\n")
    with open(r.conf, "w") as f:
        f.write(good.replace("local_domains example.org", "local_domains example.org new.example")
                + "no_such_directive 1\n")
    # Through the socket: the answer carries FILE:LINE.
    res = ctl(r.sock, "reload")
    assert res.returncode == 1
    assert res.stdout.startswith("error: %s:%d: " % (r.conf, nlines + 1)), res.stdout
    assert "no_such_directive" in res.stdout
    assert rcpt_code(r.port, "u@new.example") == 554   # old configuration in force
    # Through SIGHUP: the log carries FILE:LINE.
    r.signal(signal.SIGHUP)
    assert r.wait_log("%s:%d: " % (r.conf, nlines + 1))
    assert r.wait_log("reload failed; the running configuration stays in force")
    assert rcpt_code(r.port, "u@example.org") == 250
    s = wait_for(lambda: (lambda x: x if x["config_reload_failures_total"] == 2 else None)(
        stats(r.sock)))
    assert s and s["config_reloads_total"] == 0
    # A broken rule file: FILE:LINE:COLUMN.
    rules = os.path.join(str(tmp_path), "bad.rules")
    with open(rules, "w") as f:
        f.write("# comment\nrcpt rcpt.domain == -> reject 550 5.7.1 \"x\"\n")
    with open(r.conf, "w") as f:
        f.write(good + "rules %s\n" % rules)
    ans = raw(r.sock, "reload")
    assert re.match(r"error: %s:2:\d+: " % re.escape(rules), ans), ans
    # Fixed: the reload goes through and the new settings apply.
    with open(r.conf, "w") as f:
        f.write(good.replace("local_domains example.org", "local_domains example.org new.example"))
    assert ctl(r.sock, "reload").stdout == "ok\n"
    assert rcpt_code(r.port, "u@new.example") == 250


def test_log_level_follows_reload(tmp_path, dns, backend, ravelin_factory):
    r = start(tmp_path, ravelin_factory, backend, dns, extra="log_level 0\n")
    ctl(r.sock, "show", "info")
    ctl(r.sock, "reload")   # logged at info level, so the log is flushed past show info
    assert r.wait_log("reload requested on the stats socket by uid 0")
    assert "stats socket: uid" not in r.log()
    rewrite(r, "log_level 0", "log_level 1")
    assert ctl(r.sock, "reload").stdout == "ok\n"
    ctl(r.sock, "show", "stats")
    assert r.wait_log("stats socket: uid 0: show stats")


# --- SIGTERM --------------------------------------------------------------------

def test_sigterm_refuses_new_connections_drains_then_421(tmp_path, dns, backend,
                                                         ravelin_factory):
    r = start(tmp_path, ravelin_factory, backend, dns, extra="shutdown_timeout 3s\n")
    idle = harness.Client(r.port)
    idle.greet()
    busy = harness.Client(r.port)           # finishes its transaction during the drain
    busy.greet()
    assert busy.cmd("MAIL FROM:<a@sender.example>")[0] == 250
    assert busy.cmd("RCPT TO:<u@example.org>")[0] == 250
    stuck = harness.Client(r.port)          # never finishes: 421 at the deadline
    stuck.greet()
    assert stuck.cmd("MAIL FROM:<a@sender.example>")[0] == 250
    t0 = time.monotonic()
    r.signal(signal.SIGTERM)
    # The idle session goes at once; nobody new gets in.
    code, text = idle.reply()
    assert code == 421 and "4.3.2" in text, text
    assert idle.closed()
    assert wait_for(lambda: refused(r.port), timeout=3)
    # The open transaction may still finish.
    assert busy.cmd("DATA")[0] == 354
    busy.send(BODY + ".\r\n")
    assert busy.reply()[0] == 250
    code, text = busy.reply()          # idle again: closed with 421
    assert code == 421 and "4.3.2" in text
    # The one that never finishes is told 421 once shutdown_timeout is over.
    code, text = stuck.reply()
    waited = time.monotonic() - t0
    assert code == 421 and "4.3.2" in text, text
    assert 2.5 <= waited < 6, waited
    assert r.proc.wait(timeout=10) == 0
    assert len(backend.messages()) == 1
    log = r.log()
    assert "stopping: no new connections; 3 sessions open" in log
    assert "shutdown_timeout reached: closing 1 sessions" in log
    assert log.rstrip().endswith("stopped")


def test_sigterm_with_no_sessions_exits_at_once(tmp_path, dns, backend, ravelin_factory):
    r = start(tmp_path, ravelin_factory, backend, dns, extra="shutdown_timeout 30s\n")
    assert os.path.exists(r.sock)
    t0 = time.monotonic()
    r.signal(signal.SIGTERM)
    assert r.proc.wait(timeout=10) == 0
    assert time.monotonic() - t0 < 2
    assert not os.path.exists(r.sock), "stats socket left behind"


# --- nothing lost ---------------------------------------------------------------

def test_nothing_lost_across_reload_and_shutdown(tmp_path, dns, backend, ravelin_factory):
    r = start(tmp_path, ravelin_factory, backend, dns, extra="shutdown_timeout 2s\n")
    lock = threading.Lock()
    acked, unknown, refusedd = set(), set(), set()
    counter = iter(range(1, 10 ** 9))
    stop = threading.Event()
    errors = []

    def client(n):
        deadline = time.monotonic() + 15
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                c = harness.Client(r.port, timeout=10)
            except ConnectionRefusedError:
                return
            except OSError as e:
                errors.append(repr(e))
                return
            try:
                code, _ = c.reply()
                if code != 220:
                    c.close()
                    continue
                c.cmd("EHLO c%d.test" % n)
                while True:
                    with lock:
                        tok = "T%06d" % next(counter)
                    code, _ = c.cmd("MAIL FROM:<a@sender.example>")
                    if code != 250:
                        break
                    if c.cmd("RCPT TO:<u@example.org>")[0] != 250:
                        break
                    if c.cmd("DATA")[0] != 354:
                        break
                    c.send("From: a@sender.example\r\nSubject: %s\r\n\r\n%s\r\n.\r\n" % (tok, tok))
                    with lock:
                        unknown.add(tok)      # until the final reply is read
                    code, _ = c.reply()
                    with lock:
                        if code == 250:
                            unknown.discard(tok)
                            acked.add(tok)
                        elif code // 100 == 5:
                            unknown.discard(tok)
                            refusedd.add(tok)
                    if code != 250:
                        break
            except (ConnectionError, socket.timeout, OSError):
                pass
            finally:
                c.close()

    ts = [threading.Thread(target=client, args=(n,)) for n in range(6)]
    for t in ts:
        t.start()
    time.sleep(0.7)
    n_before_hup = len(acked)
    rewrite(r, "local_domains example.org", "local_domains example.org reload.example")
    r.signal(signal.SIGHUP)
    assert r.wait_log("reloaded " + r.conf)
    time.sleep(0.7)
    n_before_term = len(acked)
    r.signal(signal.SIGTERM)
    assert r.proc.wait(timeout=15) == 0
    stop.set()
    for t in ts:
        t.join(20)
    assert not errors, errors[:3]
    assert n_before_hup > 0 and n_before_term > n_before_hup, (n_before_hup, n_before_term)
    assert not refusedd
    got = {}
    for m in backend.messages():
        tok = re.search(rb"Subject: (T\d+)", m["data"]).group(1).decode()
        got[tok] = got.get(tok, 0) + 1
    dup = {t: n for t, n in got.items() if n != 1}
    assert not dup, dup
    missing = acked - set(got)
    assert not missing, sorted(missing)[:10]
    # Whatever the backend has beyond that was sent by a client that saw no 2xx.
    assert set(got) - acked <= unknown
    log = r.log()
    assert "stopping: no new connections" in log and log.rstrip().endswith("stopped")
