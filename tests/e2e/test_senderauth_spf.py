"""SPF through the real ravelin (issue 5): every result at the mail stage
for IPv4 and IPv6 clients presented through the PROXY protocol, the HELO
identity of the null sender, the `spf` rule field, the shipped rules'
replies, the Authentication-Results and Received-SPF fields, the
spf_result_total counter, and the clients SPF skips (authenticated,
mynetworks).
"""

import base64
import os
import time

import pytest

import harness
from dnsserver import start_dns_server
import test_senderauth_lib as sa

ZONES = {
    "pass.example": [{"TXT": "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8:1::/48 -all"}],
    "fail.example": [{"TXT": "v=spf1 ip4:203.0.113.0/24 -all"}],
    "softfail.example": [{"TXT": "v=spf1 ip4:203.0.113.0/24 ~all"}],
    "neutral.example": [{"TXT": "v=spf1 ip4:203.0.113.0/24 ?all"}],
    "none.example": [{"A": "203.0.113.1"}, {"TXT": "not an spf record"}],
    "slow.example": ["TIMEOUT"],
    "manyslow.example": [{"TXT": "v=spf1 a:s1.slow.example a:s2.slow.example "
                                 "a:s3.slow.example a:s4.slow.example -all"}],
    "s1.slow.example": ["TIMEOUT"], "s2.slow.example": ["TIMEOUT"],
    "s3.slow.example": ["TIMEOUT"], "s4.slow.example": ["TIMEOUT"],
    "perm.example": [{"TXT": "v=spf1 ip4:192.0.2.0/24 frobnicate:x -all"}],
    "twice.example": [{"TXT": "v=spf1 -all"}, {"TXT": "v=spf1 +all"}],
    "helo.example": [{"A": "192.0.2.9"}, {"AAAA": "2001:db8:1::9"},
                     {"TXT": "v=spf1 a -all"}],
    "example.org": [{"TXT": "v=spf1 -all"}],
}


@pytest.fixture(scope="module")
def sdns():
    srv = start_dns_server(ZONES)
    yield srv
    srv.stop()


@pytest.fixture
def plain(tmp_path, sdns, backend, ravelin_factory):
    """No rules: every SPF result lets the message through to the headers."""
    return sa.start(ravelin_factory, backend, sdns, tmp_path)


@pytest.fixture
def shipped(tmp_path, sdns, backend, ravelin_factory):
    return sa.start(ravelin_factory, backend, sdns, tmp_path, rules="shipped")


def body(frm="a@pass.example"):
    return sa.message(frm="<%s>" % frm)


# (sender domain, IPv4 client, IPv6 client, result, shipped rules' reply at MAIL)
CASES = [
    ("pass.example", sa.GOOD4, sa.GOOD6, "pass", 250),
    ("pass.example", sa.BAD4, sa.BAD6, "fail", "550 5.7.23"),
    ("fail.example", sa.GOOD4, sa.GOOD6, "fail", "550 5.7.23"),
    ("softfail.example", sa.GOOD4, sa.GOOD6, "softfail", 250),
    ("neutral.example", sa.GOOD4, sa.GOOD6, "neutral", 250),
    ("none.example", sa.GOOD4, sa.GOOD6, "none", 250),
    ("nxdomain.example", sa.GOOD4, sa.GOOD6, "none", 250),
    ("slow.example", sa.GOOD4, sa.GOOD6, "temperror", "451 4.7.24"),
    ("manyslow.example", sa.GOOD4, sa.GOOD6, "temperror", "451 4.7.24"),
    ("perm.example", sa.GOOD4, sa.GOOD6, "permerror", "550 5.7.24"),
    ("twice.example", sa.GOOD4, sa.GOOD6, "permerror", "550 5.7.24"),
]
IDS = ["%s-%s" % (c[0].split(".")[0], c[3]) for c in CASES]


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_spf_result_in_headers(plain, case, family):
    dom, ip4, ip6, result, _ = case
    ip = ip4 if family == "ipv4" else ip6
    sender = "bob@" + dom
    code, text = sa.send(plain, ip, sender, body(sender))
    assert code == 250, text
    data = sa.last(plain.backend)
    res = sa.results(data)
    assert res["spf"] == [(result, {"smtp.mailfrom": sender}, None)], res
    rspf = sa.added(data, "Received-SPF")
    assert len(rspf) == 1, data[:800]
    assert rspf[0].startswith(result + " ("), rspf[0]
    for kv in ("client-ip=%s;" % (ip if family == "ipv4" else '"%s"' % ip),
               'envelope-from="%s";' % sender, "helo=mail.client.example;",
               "receiver=%s;" % sa.HOST, "identity=mailfrom;"):
        assert kv in rspf[0], (kv, rspf[0])
    # The proxy's log line carries it too.
    assert plain.wait_log("spf=%s" % result)
    assert sa.wait_counter(plain, "spf_result_total", result, 1) == 1


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_spf_shipped_rules_at_mail(shipped, case, family):
    dom, ip4, ip6, result, expect = case
    ip = ip4 if family == "ipv4" else ip6
    c = sa.Session(shipped, ip)
    t0 = time.monotonic()
    code, text = c.cmd("MAIL FROM:<bob@%s>" % dom)
    elapsed = time.monotonic() - t0
    if expect == 250:
        assert code == 250, text
        assert c.cmd("RCPT TO:<u@example.org>")[0] == 250
    else:
        assert text.startswith(expect), text
        # Refused at MAIL: the session goes on.
        assert c.cmd("RSET")[0] == 250
        assert c.cmd("NOOP")[0] == 250
    if result == "temperror":
        assert elapsed < 3.0, elapsed     # dns_timeout 1s, not the 20 s SPF budget
    c.cmd("QUIT")
    c.close()


def test_spf_softfail_scores_under_shipped_rules(shipped):
    code, text = sa.send(shipped, sa.GOOD4, "bob@softfail.example", body())
    assert code == 250, text
    assert shipped.wait_log("spf=softfail")
    assert "SPF softfail" not in text
    line = [l for l in shipped.log().splitlines() if "accepted:" in l][-1]
    score = float(line.split("score=")[1].split()[0])
    assert score >= 2.0, line


@pytest.mark.parametrize("ip,helo,result", [
    (sa.GOOD4, "helo.example", "fail"),          # 192.0.2.5 is not helo.example's A
    ("192.0.2.9", "helo.example", "pass"),
    ("2001:db8:1::9", "helo.example", "pass"),
    ("192.0.2.9", "nothing.example", "none"),
    ("192.0.2.9", "slow.example", "temperror"),
])
def test_null_sender_checks_helo(plain, ip, helo, result):
    code, text = sa.send(plain, ip, "", body("mailer-daemon@helo.example"), helo=helo)
    assert code == 250, text
    data = sa.last(plain.backend)
    res = sa.results(data)
    assert res["spf"] == [(result, {"smtp.helo": helo}, None)], res
    rspf = sa.added(data, "Received-SPF")[0]
    assert rspf.startswith(result + " ("), rspf
    assert "identity=helo;" in rspf and 'envelope-from="postmaster@%s";' % helo in rspf, rspf


@pytest.mark.parametrize("presented,seen", [("::ffff:192.0.2.5", "192.0.2.5"),
                                             ("::ffff:198.51.100.66", "198.51.100.66")])
def test_ipv4_mapped_client_checked_as_ipv4(plain, presented, seen):
    code, text = sa.send(plain, presented, "bob@pass.example", body())
    assert code == 250, text
    data = sa.last(plain.backend)
    result = "pass" if seen.startswith("192.") else "fail"
    assert sa.results(data)["spf"][0][0] == result
    assert "client-ip=%s;" % seen in sa.added(data, "Received-SPF")[0]


def test_custom_spf_rule_field(tmp_path, sdns, backend, ravelin_factory):
    rules = ('mail spf == fail -> reject 550 5.7.23 "SPF check failed"\n'
             'mail spf in (softfail, neutral) -> add_header X-SPF-Test "weak"\n'
             'mail spf == none -> tempfail 450 4.7.1 "no SPF here"\n'
             'eom spf == neutral -> reject 550 5.7.23 "neutral at eom"\n')
    r = sa.start(ravelin_factory, backend, sdns, tmp_path, rules=rules)
    assert sa.send(r, sa.BAD4, "bob@pass.example", body()) == (550, "550 5.7.23 SPF check failed")
    assert sa.send(r, sa.GOOD4, "bob@none.example", body()) == (450, "450 4.7.1 no SPF here")
    assert sa.send(r, sa.GOOD4, "bob@softfail.example", body())[0] == 250
    assert sa.added(sa.last(backend), "X-SPF-Test") == ["weak"]
    assert sa.send(r, sa.GOOD4, "bob@pass.example", body())[0] == 250
    assert sa.added(sa.last(backend), "X-SPF-Test") == []
    # spf stays known until the end of the message.
    assert sa.send(r, sa.GOOD4, "bob@neutral.example", body()) == \
        (550, "550 5.7.23 neutral at eom")
    assert len(backend.messages()) == 2


def test_authenticated_client_skips_spf(tmp_path, sdns, backend, ravelin_factory):
    users = os.path.join(str(tmp_path), "users")
    with open(users, "w") as f:
        f.write("alice:%s\n" % sa.mkpasswd("secret"))
    r = sa.start(ravelin_factory, backend, sdns, tmp_path, rules="shipped",
                 extra="auth_users %s\nauth_failure_delay 100ms" % users,
                 flags="proxy-protocol auth-plaintext")
    c = sa.Session(r, sa.BAD4)
    code, text = c.cmd("AUTH PLAIN " + base64.b64encode(b"\0alice\0secret").decode())
    assert code == 235, text
    # example.org's SPF record (-all) would fail this client.
    code, text = c.message("alice@example.org", ["someone@elsewhere.example"],
                           sa.message(frm="<alice@example.org>"))
    assert code == 250, text
    c.close()
    data = sa.last(backend)
    res = sa.results(data)
    assert "spf" not in res, res
    assert res["auth"] == [("pass", {"smtp.auth": "alice"}, None)]
    assert sa.added(data, "Received-SPF") == []
    assert "spf=" not in sa.ar_fields(data)[0]
    assert r.wait_log("spf=skipped")
    assert sa.stats(r)["spf_result_total"] == {}


def test_mynetworks_client_skips_spf(shipped, sdns):
    before = sdns.count("fail.example", "TXT")
    code, text = sa.send(shipped, sa.MYNET, "bob@fail.example", body("bob@fail.example"),
                         rcpts=["x@elsewhere.example"])
    assert code == 250, text
    data = sa.last(shipped.backend)
    res = sa.results(data)
    assert "spf" not in res and "auth" not in res, res
    assert sa.added(data, "Received-SPF") == []
    assert sdns.count("fail.example", "TXT") == before   # not even asked
    assert sa.stats(shipped)["spf_result_total"] == {}


def test_loopback_client_is_not_checked(tmp_path, sdns, backend, ravelin_factory):
    r = sa.start(ravelin_factory, backend, sdns, tmp_path, rules="shipped", flags="")
    c = harness.Client(r.port)
    c.greet("mail.client.example")
    before = sdns.count("fail.example", "TXT")
    code, text = c.message("bob@fail.example", ["u@example.org"], body("bob@fail.example"))
    assert code == 250, text
    c.close()
    res = sa.results(sa.last(backend))
    assert res["spf"][0][0] == "none"
    assert sdns.count("fail.example", "TXT") == before


def test_spf_counters_add_up(plain):
    for dom, ip in [("pass.example", sa.GOOD4), ("pass.example", sa.GOOD6),
                    ("fail.example", sa.GOOD4), ("none.example", sa.GOOD4)]:
        assert sa.send(plain, ip, "bob@" + dom, body())[0] == 250
    assert sa.wait_counter(plain, "spf_result_total", "pass", 2) == 2
    got = sa.stats(plain)["spf_result_total"]
    assert got == {"pass": 2, "fail": 1, "none": 1}, got
