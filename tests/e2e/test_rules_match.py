"""Rules end to end: `in` against inline lists, @FILE (domains, addresses,
CIDRs), $mynetworks and $local_domains; regular expressions with /i;
score accumulation over stages and `score >= N` at eom; rule names
(label or FILE:LINE) in log lines and rule_hits_total; `ravelin -t`.

Non-loopback clients come through a proxy-protocol listener.
"""

import os
import subprocess
import time

import pytest

import harness
from test_rules_stages import Env, stats

RULES = r"""# match.rules - written by test_rules_match.py
net_file: connect client in @nets.txt -> reject 554 5.7.1 "Network blocked"
dom_file: mail sender.domain in @domains.txt -> reject 554 5.7.1 "Sender domain blocked"
addr_file: mail sender in @senders.txt -> reject 553 5.7.1 "Sender listed"
inline: mail sender in (Bad@Spam.test, "worse@spam.test", @evil.test) -> reject 553 5.7.1 "Sender listed inline"
inline_net: connect client in (198.51.100.0/28, 2001:db8:beef::/48) -> tempfail 421 4.7.0 "Inline network"
mynet: mail client in $mynetworks -> add_header X-Mynet "yes"
notmynet: mail !client in $mynetworks -> add_header X-Mynet "no"
localdom: mail sender.domain in $local_domains -> add_header X-Local-Sender "yes"
helo_score: helo helo =~ /^scorer\./ -> score 2 "helo scorer"
mail_score: mail sender =~ /^scorer@/ -> score 2.5 "mail scorer"
rcpt_score: rcpt rcpt =~ /^scorer@/ -> score 1.5 "rcpt scorer"
pharma: header header[Subject] =~ /\bviagra\b/i -> score 6 "pharma subject"
caps: header header[Subject] =~ /SHOUT/ -> score 1 "shouting"
body_word: eom body =~ /cheap\s+pills/i -> score 4 "body words"
partner: eom header[X-Partner] == "yes" -> score -100 "partner"
spam_reject: eom score >= 10 -> reject 550 5.7.1 "Message looks like spam"
spam_tag: eom score >= 5 -> add_header X-Spam-Flag "YES"; log "tagged as spam"
mail sender == unnamed@client.test -> log "an unnamed rule"
"""
UNNAMED_LINE = 19


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("match")
    (tmp / "nets.txt").write_text("# blocked networks\n192.0.2.0/25\n2001:db8:bad::/48  198.51.100.77\n")
    (tmp / "domains.txt").write_text("blocked.test\n.spammy.test  # subdomains only\n")
    (tmp / "senders.txt").write_text("Listed@Client.test\n@all-listed.test\n")
    pport = harness.free_port()
    e = Env(tmp, RULES, extra="listen 127.0.0.1:%d inbound proxy-protocol\n" % pport)
    harness.wait_port(pport)
    e.pport = pport
    yield e
    e.close()


def session(env, ip=None, helo="client.test"):
    if ip is None:
        c = harness.Client(env.port)
    else:
        c = harness.Client(env.pport, preamble=harness.proxy_v1(ip))
    return c


def send(env, sender, ip=None, rcpts=("u@example.org",), subject="hello", body="hi",
         helo="client.test", extra_hdr=""):
    c = session(env, ip)
    code, text = c.reply()
    if code != 220:
        return code, text, c
    assert c.cmd("EHLO " + helo)[0] == 250
    msg = "From: a@client.test\r\nSubject: %s\r\n%s\r\n%s" % (subject, extra_hdr, body)
    code, text = c.message(sender, list(rcpts), msg)
    c.cmd("QUIT")
    return code, text, c


def head_of(env, sender):
    time.sleep(0.05)
    m = env.delivered(sender)
    assert len(m) == 1, m
    return m[0]["data"].split(b"\r\n\r\n")[0].decode().split("\r\n")


@pytest.mark.parametrize("ip,blocked", [
    ("192.0.2.7", True), ("192.0.2.127", True), ("192.0.2.128", False),
    ("198.51.100.77", True), ("198.51.100.78", False),
    ("2001:db8:bad::1", True), ("2001:db8:bad:ffff::9", True), ("2001:db8:900d::1", False),
    ("::ffff:192.0.2.9", True),
])
def test_client_in_cidr_file(env, ip, blocked):
    c = session(env, ip)
    code, text = c.reply()
    if blocked:
        assert code == 554 and "5.7.1 Network blocked" in text
        assert c.closed()
    else:
        assert code == 220, text
    c.close()


@pytest.mark.parametrize("ip,hit", [("198.51.100.3", True), ("198.51.100.16", False),
                                    ("2001:db8:beef:1::2", True)])
def test_client_in_inline_networks(env, ip, hit):
    c = session(env, ip)
    code, text = c.reply()
    assert (code == 421 and "4.7.0 Inline network" in text) if hit else code == 220, text
    c.close()


@pytest.mark.parametrize("sender,reply", [
    ("x@blocked.test", "554 5.7.1 Sender domain blocked"),
    ("x@BLOCKED.Test", "554 5.7.1 Sender domain blocked"),
    ("x@a.spammy.test", "554 5.7.1 Sender domain blocked"),
    ("x@spammy.test", None),                         # leading dot: subdomains only
    ("x@notblocked.test", None),
    ("listed@client.test", "553 5.7.1 Sender listed"),  # addresses compare case-insensitively
    ("other@all-listed.test", "553 5.7.1 Sender listed"),
    ("bad@spam.test", "553 5.7.1 Sender listed inline"),
    ("WORSE@spam.test", "553 5.7.1 Sender listed inline"),
    ("fine@spam.test", None),
    ("any@evil.test", "553 5.7.1 Sender listed inline"),
])
def test_sender_lists(env, sender, reply):
    code, text, _ = send(env, sender)
    if reply:
        assert text.startswith(reply), text
        assert env.delivered(sender) == []
    else:
        assert code == 250, text


def test_mynetworks_and_local_domains(env):
    assert send(env, "m1@client.test", ip="10.255.255.9")[0] == 250
    assert "X-Mynet: yes" in head_of(env, "m1@client.test")
    assert send(env, "m2@client.test", ip="192.0.2.200")[0] == 250
    assert "X-Mynet: no" in head_of(env, "m2@client.test")
    # $local_domains: example.org and subdomains of sub.example.org only.
    for sender, local in (("u@example.org", True), ("u@deep.sub.example.org", True),
                          ("u@sub.example.org", False), ("u@example.net", False)):
        assert send(env, sender, ip="10.255.255.9")[0] == 250
        assert ("X-Local-Sender: yes" in head_of(env, sender)) == local, sender
        env.backend.messages()  # keep reading; senders are unique


def test_regex_case_insensitive_flag(env):
    code, _, _ = send(env, "r1@client.test", subject="Cheap ViAgRa now")
    assert code == 250
    assert "X-Spam-Flag: YES" in head_of(env, "r1@client.test")       # 6 >= 5
    code, _, _ = send(env, "r2@client.test", subject="shout quietly")  # /SHOUT/ has no i
    assert code == 250
    assert "X-Spam-Flag: YES" not in head_of(env, "r2@client.test")
    code, _, _ = send(env, "r3@client.test", body="CHEAP   Pills here\r\n")
    assert code == 250
    assert "X-Spam-Flag: YES" not in head_of(env, "r3@client.test")   # 4 < 5


def test_scores_add_up_over_stages_to_the_eom_threshold(env):
    # helo 2 + mail 2.5 + rcpt 1.5 + body 4 = 10: refused at eom.
    code, text, _ = send(env, "scorer@client.test", rcpts=["scorer@example.org"],
                         helo="scorer.client.test", body="cheap pills\r\n")
    assert code == 550 and "5.7.1 Message looks like spam" in text
    assert env.delivered("scorer@client.test") == []
    assert env.r.wait_log("rule=spam_reject")
    # 2 + 2.5 + 1.5 = 6: tagged, logged, delivered.
    code, text, _ = send(env, "scorer@client.test", rcpts=["scorer@example.org"],
                         helo="scorer.client.test")
    assert code == 250, text
    assert "X-Spam-Flag: YES" in head_of(env, "scorer@client.test")
    assert env.r.wait_log("rule spam_tag: tagged as spam")


def test_negative_score_allow_lists(env):
    code, text, _ = send(env, "p@client.test", subject="viagra viagra", body="cheap pills",
                         extra_hdr="X-Partner: yes\r\n")
    assert code == 250, text
    assert "X-Spam-Flag: YES" not in head_of(env, "p@client.test")


def test_session_score_carries_over_transaction_score_does_not(env):
    c = harness.Client(env.port)
    c.greet("scorer.client.test")                       # +2 for the session
    msg = "From: a@client.test\r\nSubject: viagra\r\n\r\nx"
    assert c.message("s1@client.test", ["u@example.org"], msg)[0] == 250       # 2 + 6
    assert c.message("s2@client.test", ["u@example.org"],
                     "From: a@client.test\r\nSubject: fine\r\n\r\nx")[0] == 250  # 2
    c.cmd("QUIT")
    assert "X-Spam-Flag: YES" in head_of(env, "s1@client.test")
    assert "X-Spam-Flag: YES" not in head_of(env, "s2@client.test")


def test_rule_names_in_logs_and_counters(env):
    assert send(env, "unnamed@client.test")[0] == 250
    name = "%s:%d" % (env.rules, UNNAMED_LINE)
    assert env.r.wait_log("rule %s: an unnamed rule" % name), env.r.log()[-2000:]
    send(env, "x@blocked.test")
    hits = stats(env.sock)["rule_hits_total"]
    assert hits.get(name, 0) >= 1, hits
    assert hits.get("dom_file", 0) >= 1, hits
    assert "rule=dom_file" in env.r.log()


# ---- ravelin -t ----

def check_config(tmp, rules_text, name="t.rules"):
    path = os.path.join(str(tmp), name)
    with open(path, "w") as f:
        f.write(rules_text)
    conf = os.path.join(str(tmp), "t.conf")
    with open(conf, "w") as f:
        f.write(harness.base_config(2525, 2526, 53, extra="rules %s\n" % path))
    p = subprocess.run([os.path.join(harness.BUILD, "ravelin"), "-c", conf, "-t"],
                       capture_output=True, text=True, timeout=10)
    return p, path


def test_check_mode_accepts_good_rules(tmp_path):
    p, _ = check_config(tmp_path, RULES.replace("@nets.txt", "(192.0.2.0/24)")
                        .replace("@domains.txt", "(a.test)").replace("@senders.txt", "(b@c.test)"))
    assert p.returncode == 0, p.stderr


@pytest.mark.parametrize("text,line,col,what", [
    ("mail sender == a@b.test -> reject 550 5.7.1 \"x\"\nhelo helo =~ /(/ -> accept\n", 2, 16, ""),
    ("eom bogus.field == 1 -> accept\n", 1, 5, "bogus.field"),
    ("nostage true -> accept\n", 1, 1, "nostage"),
    ("connect true -> discard\n", 1, 17, "discard"),
    ("helo body =~ /x/ -> accept\n", 1, 6, "body"),
    ("mail true -> reject 450 5.7.1 \"wrong class\"\n", 1, 21, ""),
    ("mail sender in @missing-file.txt -> accept\n", 1, 16, "missing-file.txt"),
    ("a: mail true -> accept\na: mail true -> accept\n", 2, 1, "a"),
])
def test_check_mode_reports_file_line_column(tmp_path, text, line, col, what):
    p, path = check_config(tmp_path, text)
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert "%s:%d:%d:" % (path, line, col) in p.stderr, p.stderr
    assert what in p.stderr


def test_check_mode_reports_every_error(tmp_path):
    p, path = check_config(tmp_path, "eom nope == 1 -> accept\nmail true -> frobnicate\n"
                                     "rcpt rcpt == x@y.test -> accept\n")
    assert p.returncode == 1
    assert "%s:1:" % path in p.stderr and "%s:2:" % path in p.stderr, p.stderr
    assert "%s:3:" % path not in p.stderr
