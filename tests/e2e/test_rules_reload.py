"""Rules and reload: SIGHUP (and `ravelinctl reload`) with a broken rule
file keeps the old rules and logs the error; a good file switches;
sessions in progress finish on the rules they started with; a stream of
messages while SIGHUPs arrive loses none."""

import os
import signal
import subprocess
import threading
import time

import pytest

import harness
from test_rules_stages import CTL, stats

OLD = 'blocker: mail sender == old@client.test -> reject 550 5.7.1 "old rules"\n'
NEW = 'blocker: mail sender == new@client.test -> reject 550 5.7.1 "new rules"\n'
BROKEN = 'blocker: mail sender == new@client.test -> reject 550 5.7.1 "new rules"\n' \
         'mail sender =~ /(/ -> accept\n'


@pytest.fixture
def rp(tmp_path, dns, backend, ravelin_factory):
    rules = tmp_path / "r.rules"
    rules.write_text(OLD)
    sock = str(tmp_path / "stats.sock")
    r = harness.start_proxy(ravelin_factory, backend, dns,
                            extra="rules %s\nstats_socket %s\n" % (rules, sock))
    r.rules = rules
    r.sock = sock
    # Signals and the stats socket are safe only once startup is over.
    assert r.wait_log(" started: ")
    return r


def mail_reply(r, sender):
    c = harness.Client(r.port)
    c.greet()
    code, text = c.cmd("MAIL FROM:<%s>" % sender)
    c.cmd("QUIT")
    return code, text


def reload_sighup(r, expect):
    before = r.log().count(expect)
    r.signal(signal.SIGHUP)
    end = time.time() + 5
    while time.time() < end and r.log().count(expect) == before:
        time.sleep(0.02)
    assert r.log().count(expect) > before, r.log()[-2000:]


def test_broken_rules_keep_the_old_ones_and_log_the_error(rp):
    assert mail_reply(rp, "old@client.test")[0] == 550
    rp.rules.write_text(BROKEN)
    reload_sighup(rp, "the running configuration stays in force")
    assert "%s:2:" % rp.rules in rp.log(), "the error names FILE:LINE:COLUMN"
    code, text = mail_reply(rp, "old@client.test")
    assert code == 550 and "old rules" in text
    assert mail_reply(rp, "new@client.test")[0] == 250


def test_good_rules_switch(rp):
    rp.rules.write_text(NEW)
    reload_sighup(rp, "reloaded ")
    assert mail_reply(rp, "old@client.test")[0] == 250
    code, text = mail_reply(rp, "new@client.test")
    assert code == 550 and "new rules" in text


def test_ravelinctl_reload_reports_the_rule_error(rp):
    rp.rules.write_text(BROKEN)
    p = subprocess.run([CTL, "-s", rp.sock, "reload"], capture_output=True, text=True, timeout=10)
    assert p.returncode == 1
    assert "%s:2:" % rp.rules in p.stdout, p.stdout
    assert mail_reply(rp, "old@client.test")[0] == 550
    rp.rules.write_text(NEW)
    p = subprocess.run([CTL, "-s", rp.sock, "reload"], capture_output=True, text=True, timeout=10)
    assert (p.returncode, p.stdout) == (0, "ok\n")
    assert mail_reply(rp, "new@client.test")[0] == 550


def test_session_in_progress_keeps_its_rules(rp):
    rp.rules.write_text(OLD + 'eom header[X-Tag] == "t" -> reject 550 5.7.1 "old eom rule"\n')
    reload_sighup(rp, "reloaded ")
    c = harness.Client(rp.port)
    c.greet()
    assert c.cmd("MAIL FROM:<a@client.test>")[0] == 250
    assert c.cmd("RCPT TO:<u@example.org>")[0] == 250
    # The rules change under the open session.
    rp.rules.write_text(NEW)
    reload_sighup(rp, "reloaded ")
    assert c.cmd("DATA")[0] == 354
    c.send("From: a@client.test\r\nX-Tag: t\r\n\r\nx\r\n.\r\n")
    code, text = c.reply()
    assert code == 550 and "old eom rule" in text
    # ...and the whole session stays on them (old@ still refused here).
    assert c.cmd("MAIL FROM:<old@client.test>")[0] == 550
    c.cmd("QUIT")
    # A new session has the new rules.
    assert mail_reply(rp, "old@client.test")[0] == 250
    assert mail_reply(rp, "new@client.test")[0] == 550


def test_reload_under_load_drops_no_session(rp):
    results = []
    errors = []

    def client(n):
        try:
            for i in range(8):
                c = harness.Client(rp.port)
                c.greet()
                for j in range(3):
                    results.append(c.message("load%d-%d-%d@client.test" % (n, i, j), ["u@example.org"],
                                             "From: a@client.test\r\nSubject: load\r\n\r\nbody\r\n")[0])
                c.cmd("QUIT")
                c.close()
                time.sleep(0.02)   # spread the load over several reloads
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    reloads = 0
    while any(t.is_alive() for t in threads):
        rp.signal(signal.SIGHUP)
        reloads += 1
        time.sleep(0.01)
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(results) == 4 * 8 * 3 and set(results) == {250}, results
    assert len([m for m in rp.backend.messages() if "load" in m["mail"]]) == 96
    assert reloads >= 3
    assert stats(rp.sock)["messages_accepted_total"] >= 96
