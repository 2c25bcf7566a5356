"""Rules end to end: every action at every stage through the real
build/ravelin, a real client and the recording backend.

One ravelin serves the whole matrix: each rule fires on a tag that only
its own case sends (a client address for connect, the HELO name, the
sender, a recipient, an X-Tag header field, a body word), so the cases
do not disturb each other. Also: DATA with no accepted recipient, score
accumulation over stages, rule names in the log and in rule_hits_total.
"""

import json
import os
import subprocess
import time

import pytest

import harness
from dnsserver import start_dns_server

CTL = os.path.join(harness.BUILD, "ravelinctl")

STAGES = ["connect", "helo", "mail", "rcpt", "data", "header", "eoh", "body", "eom"]
ACTIONS = ["accept", "reject", "tempfail", "discard", "score", "add_header", "log"]
MESSAGE_STAGES = ["header", "eoh", "body", "eom"]


def connect_ip(action):
    """connect-stage rules tell cases apart by the client's loopback address."""
    return "127.0.0.%d" % (10 + ACTIONS.index(action))


def trigger(stage, action):
    """The condition that only the case (stage, action) satisfies."""
    tag = "%s-%s" % (stage, action)
    return {
        "connect": "client.ip == %s" % connect_ip(action),
        "helo": "helo == %s.test" % tag,
        "mail": "sender == %s@client.test" % tag,
        "rcpt": "rcpt == %s@example.org" % tag,
        "data": "sender == %s@client.test" % tag,
        "header": 'header[X-Tag] == "%s"' % tag,
        "eoh": 'header[X-Tag] == "%s"' % tag,
        # (the body field itself is known from eom on; see ravelin.rules(5))
        "body": 'header[X-Tag] == "%s"' % tag,
        "eom": 'header[X-Tag] == "%s"' % tag,
    }[stage]


def action_text(stage, action):
    name = "%s_%s" % (stage, action)
    return {
        "accept": "accept",
        "reject": 'reject %d 5.7.1 "refused by %s"' % (554 if stage == "connect" else 550, name),
        "tempfail": 'tempfail 451 4.7.1 "later, says %s"' % name,
        "discard": "discard",
        "score": 'score 3.5 "reason of %s"' % name,
        "add_header": 'add_header X-Added "from %s"' % name,
        "log": 'log "note from %s"' % name,
    }[action]


def matrix_rules():
    lines = []
    for st in STAGES:
        for a in ACTIONS:
            if a == "discard" and st in ("connect", "helo"):
                continue   # refused by the parser: see test_rules_errors.py
            name = "%s_%s" % (st, a)
            lines.append("%s: %s %s -> %s" % (name, st, trigger(st, a), action_text(st, a)))
            if a == "accept":
                # accept stops the stage: this rule must never fire.
                lines.append('%s_shadow: %s %s -> reject 550 5.7.1 "shadowed"'
                             % (name, st, trigger(st, a)))
    return "\n".join(lines) + "\n"


def stats(sock):
    p = subprocess.run([CTL, "-s", sock, "show", "stats"], capture_output=True, text=True, timeout=10)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


class Env:
    """dns, backend and ravelin living for a whole module."""

    def __init__(self, tmp, rules, extra=""):
        self.tmp = str(tmp)
        self.dns = start_dns_server({})
        self.backend = harness.Backend(self.tmp, "--xclient")
        self.rules = os.path.join(self.tmp, "matrix.rules")
        with open(self.rules, "w") as f:
            f.write(rules)
        self.sock = os.path.join(self.tmp, "stats.sock")
        self.port = harness.free_port()
        conf = harness.base_config(self.port, self.backend.port, self.dns.port,
                                   extra="rules %s\nstats_socket %s\n%s" % (self.rules, self.sock, extra))
        self.r = harness.Ravelin(self.tmp, conf, port=self.port)

    def close(self):
        rc = self.r.stop()
        self.backend.stop()
        self.dns.stop()
        assert rc in (0, None, -15), self.r.log()[-3000:]

    def delivered(self, sender):
        return [m for m in self.backend.messages() if ("<%s>" % sender) in m["mail"]]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    e = Env(tmp_path_factory.mktemp("matrix"), matrix_rules())
    yield e
    e.close()


def run_case(env, stage, action):
    """One session carrying the tag of (stage, action) at its stage only.
    Returns (replies by step, client sender)."""
    tag = "%s-%s" % (stage, action)
    sender = "n-%s@client.test" % tag
    out = {}
    c = harness.Client(env.port, source=connect_ip(action) if stage == "connect" else None)
    out["banner"] = c.reply()
    if out["banner"][0] != 220:
        out["closed"] = c.closed()
        return out, sender
    out["helo"] = c.cmd("EHLO %s" % ("%s.test" % tag if stage == "helo" else "client.test"))
    if out["helo"][0] != 250:
        c.cmd("QUIT")
        return out, sender
    if stage in ("mail", "data"):
        sender = "%s@client.test" % tag
    out["mail"] = c.cmd("MAIL FROM:<%s>" % sender)
    if out["mail"][0] != 250:
        c.cmd("QUIT")
        return out, sender
    rcpts = (["%s@example.org" % tag] if stage == "rcpt" else []) + ["u@example.org"]
    out["rcpt"] = [c.cmd("RCPT TO:<%s>" % r) for r in rcpts]
    out["data"] = c.cmd("DATA")
    if out["data"][0] != 354:
        c.cmd("QUIT")
        return out, sender
    xtag = tag if stage in MESSAGE_STAGES else "none"
    body = "body plain here"
    c.send("From: a@client.test\r\nTo: u@example.org\r\nSubject: s\r\nX-Tag: %s\r\n\r\n%s\r\n.\r\n"
           % (xtag, body))
    out["eom"] = c.reply()
    c.cmd("QUIT")
    return out, sender


def refused_at(stage, out, code, text):
    """The refusal shows where the stage says it must."""
    if stage == "connect":
        assert out["banner"][0] == code and text in out["banner"][1], out
        assert out["closed"], "connection left open after a connect-stage refusal"
    elif stage == "helo":
        assert out["helo"][0] == code and text in out["helo"][1], out
    elif stage == "mail":
        assert out["mail"][0] == code and text in out["mail"][1], out
    elif stage == "rcpt":
        # Only that recipient is refused; the transaction goes on.
        assert out["rcpt"][0][0] == code and text in out["rcpt"][0][1], out
        assert out["rcpt"][1][0] == 250, out
        assert out["eom"][0] == 250, out
    elif stage == "data":
        assert out["data"][0] == code and text in out["data"][1], out
    else:
        assert out["eom"][0] == code and text in out["eom"][1], out


CASES = [(st, a) for st in STAGES for a in ACTIONS if not (a == "discard" and st in ("connect", "helo"))]


@pytest.mark.parametrize("stage,action", CASES, ids=["%s-%s" % c for c in CASES])
def test_action_at_stage(env, stage, action):
    name = "%s_%s" % (stage, action)
    out, sender = run_case(env, stage, action)
    time.sleep(0.05)
    msgs = env.delivered(sender)
    log = env.r.log()
    if action in ("reject", "tempfail"):
        code, text = (554 if stage == "connect" else 550, "5.7.1 refused by %s" % name) \
            if action == "reject" else (451, "4.7.1 later, says %s" % name)
        refused_at(stage, out, code, text)
        if stage == "rcpt":
            assert len(msgs) == 1 and msgs[0]["rcpts"] == ["TO:<u@example.org>"]
        else:
            assert msgs == []
        assert "rule=%s" % name in log, "refusal log line names the rule"
        return
    # Every other action lets the session through to a 250 for the message.
    assert out["eom"][0] == 250, out
    if action == "discard":
        assert "discarded" in out["eom"][1], out
        assert msgs == [], "a discarded message reached the backend"
        assert env.r.wait_log("discard: from=<%s>" % sender), "discard is logged"
        return
    assert len(msgs) == 1, msgs
    data = msgs[0]["data"]
    if action == "accept":
        assert "%s_shadow" % name not in log
    elif action == "score":
        assert env.r.wait_log("accepted: from=<%s>" % sender)
        line = [ln for ln in env.r.log().splitlines() if "accepted: from=<%s>" % sender in ln][0]
        assert "score=3.5" in line, line
        assert 'rule %s: score +3.5 "reason of %s"' % (name, name) in env.r.log()
    elif action == "add_header":
        head = data.split(b"\r\n\r\n")[0].decode()
        assert "X-Added: from %s" % name in head.split("\r\n"), head
        # The client's own fields follow, unchanged.
        assert "X-Tag: " in head
    elif action == "log":
        assert env.r.wait_log("rule %s: note from %s" % (name, name)), "log action line"


def test_rule_hits_total_counts_every_matching_rule_by_name(env):
    # The matrix above ran first (file order); every rule that fired is counted.
    st = stats(env.sock)["rule_hits_total"]
    for stage, action in CASES:
        name = "%s_%s" % (stage, action)
        assert st.get(name, 0) >= 1, (name, st)
        assert "%s_shadow" % name not in st
    assert "reject_everything" not in st


def test_data_without_accepted_recipient_is_554_5_5_1(env):
    c = harness.Client(env.port)
    c.greet()
    assert c.cmd("MAIL FROM:<x@client.test>")[0] == 250
    code, text = c.cmd("RCPT TO:<rcpt-reject@example.org>")
    assert code == 550
    code, text = c.cmd("DATA")
    assert code == 554 and "5.5.1" in text, text
    # The session is still usable.
    assert c.cmd("RSET")[0] == 250
    assert c.message("y@client.test", ["u@example.org"], "From: a@client.test\r\n\r\nx")[0] == 250
    c.cmd("QUIT")
    assert env.delivered("x@client.test") == []
    assert len(env.delivered("y@client.test")) == 1


def test_several_recipients_refused_one_by_one(env):
    c = harness.Client(env.port)
    c.greet()
    assert c.cmd("MAIL FROM:<z@client.test>")[0] == 250
    assert c.cmd("RCPT TO:<rcpt-reject@example.org>")[0] == 550
    assert c.cmd("RCPT TO:<rcpt-tempfail@example.org>")[0] == 451
    assert c.cmd("RCPT TO:<v@example.org>")[0] == 250
    assert c.cmd("RCPT TO:<w@example.org>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send("From: a@client.test\r\n\r\nhi\r\n.\r\n")
    assert c.reply()[0] == 250
    c.cmd("QUIT")
    msgs = env.delivered("z@client.test")
    assert len(msgs) == 1 and msgs[0]["rcpts"] == ["TO:<v@example.org>", "TO:<w@example.org>"]
