"""DKIM and DMARC through the real ravelin (issue 5): messages signed in
the test with python3-dkim (rsa-sha256 and ed25519-sha256, keys made here
and published in the test DNS zones), verified while DATA streams and at
end of message; every DKIM result, several signatures, header.d/s/b in
Authentication-Results; DMARC pass/fail/none/temperror, the policies and
the shipped rules, organisational-domain fallback, relaxed and strict
alignment; the dkim, dkim.domain, dmarc and dmarc.policy rule fields; the
dkim_result_total and dmarc_result_total counters.
"""

import time

import pytest

from dnsserver import start_dns_server
import test_senderauth_lib as sa

KEYS = sa.Keys()

ZONES = {
    # The envelope domain of most tests: SPF passes, never aligned with From:.
    "env.example": [{"TXT": "v=spf1 ip4:192.0.2.0/24 -all"}],
    "_dmarc.signer.example": [{"TXT": "v=DMARC1; p=reject"}],
    "slow._domainkey.signer.example": ["TIMEOUT"],
    "revoked._domainkey.signer.example": [{"TXT": "v=DKIM1; k=rsa; p="}],
    "_dmarc.reject.example": [{"TXT": "v=DMARC1; p=reject"}],
    "_dmarc.quar.example": [{"TXT": "v=DMARC1; p=quarantine"}],
    "_dmarc.pnone.example": [{"TXT": "v=DMARC1; p=none"}],
    "_dmarc.slowdmarc.example": ["TIMEOUT"],
    "_dmarc.bad.example": [{"TXT": "v=DMARC1; p=bogus"}],
    "_dmarc.orgdom.example": [{"TXT": "v=DMARC1; p=reject; sp=quarantine"}],
    "_dmarc.strict.example": [{"TXT": "v=DMARC1; p=reject; adkim=s; aspf=s"}],
    "_dmarc.relaxed.example": [{"TXT": "v=DMARC1; p=reject"}],
    "spfal.example": [{"TXT": "v=spf1 ip4:192.0.2.0/24 -all"}],
    "_dmarc.spfal.example": [{"TXT": "v=DMARC1; p=reject"}],
    "mail.strict.example": [{"TXT": "v=spf1 ip4:192.0.2.0/24 -all"}],
    "mail.relaxed.example": [{"TXT": "v=spf1 ip4:192.0.2.0/24 -all"}],
}
for d in ("signer.example", "other.example", "orgdom.example", "mail.strict.example",
          "mail.relaxed.example", "example.org"):
    ZONES.update(sa.key_zones(KEYS, d))


@pytest.fixture(scope="module")
def kdns():
    srv = start_dns_server(ZONES)
    yield srv
    srv.stop()


@pytest.fixture
def plain(tmp_path, kdns, backend, ravelin_factory):
    return sa.start(ravelin_factory, backend, kdns, tmp_path)


@pytest.fixture
def shipped(tmp_path, kdns, backend, ravelin_factory):
    return sa.start(ravelin_factory, backend, kdns, tmp_path, rules="shipped")


def deliver(r, msg, sender="bounce@env.example", ip=sa.GOOD4):
    code, text = sa.send(r, ip, sender, msg)
    assert code == 250, text
    return sa.last(r.backend)


def signed(frm_domain, sign_domain, alg="rsa", selector=None, **kw):
    return sa.sign(KEYS, sa.message(frm="Alice <alice@%s>" % frm_domain, **kw), sign_domain,
                   selector=selector, alg=alg)


# ---- DKIM results -----------------------------------------------------------

@pytest.mark.parametrize("alg,canon", [
    ("rsa", (b"relaxed", b"relaxed")), ("rsa", (b"simple", b"simple")),
    ("ed", (b"relaxed", b"relaxed")), ("ed", (b"simple", b"relaxed"))])
def test_dkim_pass(plain, alg, canon):
    msg = sa.sign(KEYS, sa.message(frm="<alice@signer.example>"), "signer.example",
                  alg=alg, canon=canon)
    data = deliver(plain, msg)
    res = sa.results(data)
    assert res["dkim"] == [("pass", {"header.d": "signer.example", "header.s": alg,
                                     "header.b": sa.b_tag(msg)[:8]}, None)], res
    assert res["dmarc"] == [("pass", {"header.from": "signer.example"}, None)]
    # The message itself reaches the backend untouched (signature included).
    assert data.endswith(msg)
    assert sa.wait_counter(plain, "dkim_result_total", "pass", 1) == 1
    assert sa.wait_counter(plain, "dmarc_result_total", "pass", 1) == 1


def test_dkim_fail_body_modified(plain):
    msg = signed("signer.example", "signer.example")
    msg = msg.replace(b"Hello.", b"Hellp.")
    data = deliver(plain, msg)
    (result, props, reason), = sa.results(data)["dkim"]
    assert result == "fail" and props["header.d"] == "signer.example", (result, props, reason)
    assert reason and "body" in reason
    assert sa.wait_counter(plain, "dkim_result_total", "fail", 1) == 1


@pytest.mark.parametrize("alg", ["rsa", "ed"])
def test_dkim_fail_header_modified(plain, alg):
    msg = signed("signer.example", "signer.example", alg=alg, subject="original")
    msg = msg.replace(b"Subject: original", b"Subject: changed")
    (result, props, _), = sa.results(deliver(plain, msg))["dkim"]
    assert result == "fail" and props["header.s"] == alg


def signature_last(msg):
    """msg with its DKIM-Signature moved below every other header field
    (as when a relay adds fields above and a signer sits below them)."""
    head, body = msg.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    sig, rest, i = [], [], 0
    while i < len(lines):
        if lines[i].lower().startswith(b"dkim-signature:"):
            sig.append(lines[i])
            i += 1
            while i < len(lines) and lines[i][:1] in (b" ", b"\t"):
                sig.append(lines[i])
                i += 1
        else:
            rest.append(lines[i])
            i += 1
    assert sig and rest
    return b"\r\n".join(rest + sig) + b"\r\n\r\n" + body


def test_dkim_signature_below_signed_fields(plain):
    # The verifier starts at the first DKIM-Signature: the fields above it
    # (From, Subject, ...) must still reach it, or this could not pass.
    msg = signature_last(signed("signer.example", "signer.example", subject="kept"))
    assert not msg.lower().startswith(b"dkim-signature")
    (result, props, _), = sa.results(deliver(plain, msg))["dkim"]
    assert result == "pass" and props["header.d"] == "signer.example"
    tampered = msg.replace(b"Subject: kept", b"Subject: swapped")
    (result, _, _), = sa.results(deliver(plain, tampered))["dkim"]
    assert result == "fail"


def test_dkim_none_unsigned(plain):
    data = deliver(plain, sa.message(frm="<alice@signer.example>"))
    assert sa.results(data)["dkim"] == [("none", {}, None)]
    assert "dkim=none" in sa.ar_fields(data)[0]
    assert sa.wait_counter(plain, "dkim_result_total", "none", 1) == 1


@pytest.mark.parametrize("selector", ["missing", "revoked"])
def test_dkim_permerror_no_key(plain, selector):
    msg = signed("signer.example", "signer.example", selector=selector)
    (result, props, _), = sa.results(deliver(plain, msg))["dkim"]
    assert result == "permerror", result
    assert props["header.s"] == selector and props["header.d"] == "signer.example"
    assert sa.wait_counter(plain, "dkim_result_total", "permerror", 1) == 1


def test_dkim_temperror_key_lookup_times_out(plain):
    msg = signed("signer.example", "signer.example", selector="slow")
    t0 = time.monotonic()
    data = deliver(plain, msg)
    elapsed = time.monotonic() - t0
    (result, props, _), = sa.results(data)["dkim"]
    assert result == "temperror" and props["header.s"] == "slow"
    assert elapsed < 3.5, elapsed   # one key lookup, dns_timeout 1s
    print("DKIM key-lookup timeout: message answered in %.2f s" % elapsed)
    assert sa.wait_counter(plain, "dkim_result_total", "temperror", 1) == 1


def test_dkim_several_signatures(plain):
    inner = sa.sign(KEYS, sa.message(frm="<alice@signer.example>"), "other.example", alg="ed")
    msg = sa.sign(KEYS, inner, "signer.example", alg="rsa")
    res = sa.results(deliver(plain, msg))["dkim"]
    got = sorted((r, p["header.d"], p["header.s"]) for r, p, _ in res)
    assert got == [("pass", "other.example", "ed"), ("pass", "signer.example", "rsa")], res


def test_dkim_pass_and_fail_signatures_listed(plain):
    bad = sa.sign(KEYS, sa.message(frm="<alice@signer.example>"), "other.example", alg="ed",
                  selector="missing")
    msg = sa.sign(KEYS, bad, "signer.example", alg="rsa")
    res = sa.results(deliver(plain, msg))
    got = sorted((r, p["header.d"]) for r, p, _ in res["dkim"])
    assert got == [("pass", "signer.example"), ("permerror", "other.example")], res
    assert res["dmarc"][0][0] == "pass"


DKIM_RULES = """\
eom dkim == fail -> reject 550 5.7.20 "DKIM signature did not verify"
eom dkim == temperror -> tempfail 451 4.7.5 "DKIM key unavailable"
eom dkim == pass && dkim.domain == signer.example -> add_header X-Test-DKIM "signer"
eom dkim == pass && dkim.domain == other.example -> add_header X-Test-DKIM "other"
eom dkim == none -> add_header X-Test-DKIM "none"
eom dkim == permerror -> add_header X-Test-DKIM "permerror"
"""


def test_dkim_rule_fields(tmp_path, kdns, backend, ravelin_factory):
    r = sa.start(ravelin_factory, backend, kdns, tmp_path, rules=DKIM_RULES)
    cases = [
        (signed("signer.example", "signer.example"), 250, ["signer"]),
        (signed("signer.example", "other.example", alg="ed"), 250, ["other"]),
        (sa.message(), 250, ["none"]),
        (signed("signer.example", "signer.example", selector="missing"), 250, ["permerror"]),
        (signed("signer.example", "signer.example").replace(b"Hello.", b"Bye."),
         "550 5.7.20 DKIM signature did not verify", None),
        (signed("signer.example", "signer.example", selector="slow"),
         "451 4.7.5 DKIM key unavailable", None),
    ]
    for msg, expect, hdr in cases:
        n = len(backend.messages())
        code, text = sa.send(r, sa.GOOD4, "bounce@env.example", msg)
        if expect == 250:
            assert code == 250, text
            assert sa.added(sa.last(backend), "X-Test-DKIM") == hdr
        else:
            assert text == expect and len(backend.messages()) == n


def test_dkim_domain_field_sees_every_verified_signature(tmp_path, kdns, backend,
                                                          ravelin_factory):
    """dkim.domain is multi-valued: each d= that verified (ravelin.rules(5))."""
    r = sa.start(ravelin_factory, backend, kdns, tmp_path, rules=DKIM_RULES)
    inner = sa.sign(KEYS, sa.message(frm="<alice@signer.example>"), "other.example", alg="ed")
    msg = sa.sign(KEYS, inner, "signer.example", alg="rsa")
    assert sa.send(r, sa.GOOD4, "bounce@env.example", msg)[0] == 250
    assert sorted(sa.added(sa.last(backend), "X-Test-DKIM")) == ["other", "signer"]


# ---- DMARC ------------------------------------------------------------------

def dmarc_of(data):
    """(result, header.from) of our A-R and the raw dmarc resinfo text."""
    (result, props, _), = sa.results(data)["dmarc"]
    raw = [p for p in sa.ar_fields(data)[0].split(";") if p.strip().startswith("dmarc=")][0]
    return result, props.get("header.from"), raw.strip()


# (From: domain, signing domain or None, envelope sender, result, comment)
DMARC_CASES = [
    ("signer.example", "signer.example", "bounce@env.example", "pass", "(p=reject dis=none)"),
    ("spfal.example", None, "bounce@spfal.example", "pass", "(p=reject dis=none)"),
    ("reject.example", None, "bounce@env.example", "fail", "(p=reject dis=reject)"),
    ("reject.example", "signer.example", "bounce@env.example", "fail", "(p=reject dis=reject)"),
    ("quar.example", None, "bounce@env.example", "fail", "(p=quarantine dis=quarantine)"),
    ("pnone.example", None, "bounce@env.example", "fail", "(p=none dis=none)"),
    ("nodmarc.example", None, "bounce@env.example", "none", None),
    ("slowdmarc.example", None, "bounce@env.example", "temperror", None),
    ("bad.example", None, "bounce@env.example", "permerror", None),
    # Organisational domain fallback: sp= applies below orgdom.example.
    ("sub.orgdom.example", None, "bounce@env.example", "fail",
     "(p=quarantine dis=quarantine)"),
    ("sub.orgdom.example", "orgdom.example", "bounce@env.example", "pass",
     "(p=quarantine dis=none)"),
    # Alignment: relaxed takes the same organisational domain, strict not.
    ("relaxed.example", "mail.relaxed.example", "bounce@env.example", "pass",
     "(p=reject dis=none)"),
    ("strict.example", "mail.strict.example", "bounce@env.example", "fail",
     "(p=reject dis=reject)"),
    ("relaxed.example", None, "bounce@mail.relaxed.example", "pass", "(p=reject dis=none)"),
    ("strict.example", None, "bounce@mail.strict.example", "fail", "(p=reject dis=reject)"),
]


@pytest.mark.parametrize("case", DMARC_CASES,
                         ids=["%s-%s-%s" % (c[0], c[1] or "unsigned", c[3]) for c in DMARC_CASES])
def test_dmarc_result(plain, case):
    frm, signer, sender, result, comment = case
    msg = sa.message(frm="<alice@%s>" % frm)
    if signer:
        msg = sa.sign(KEYS, msg, signer)
    data = deliver(plain, msg, sender=sender)
    got, hfrom, raw = dmarc_of(data)
    assert (got, hfrom) == (result, frm), raw
    if comment:
        assert comment in raw, raw
    else:
        assert "(" not in raw, raw
    assert sa.wait_counter(plain, "dmarc_result_total", result, 1) == 1


def test_dmarc_reject_by_shipped_rule(shipped):
    code, text = sa.send(shipped, sa.GOOD4, "bounce@env.example",
                         sa.message(frm="<alice@reject.example>"))
    assert (code, text) == (550, "550 5.7.1 Rejected by the DMARC policy of the From: domain")
    assert shipped.backend.messages() == []
    assert shipped.wait_log("rule=dmarc_reject")


def test_dmarc_reject_forged_signature_by_shipped_rule(shipped):
    msg = sa.sign(KEYS, sa.message(frm="<alice@signer.example>"), "signer.example")
    code, text = sa.send(shipped, sa.GOOD4, "bounce@env.example", msg.replace(b"Hello", b"Pay"))
    assert (code, text) == (550, "550 5.7.1 Rejected by the DMARC policy of the From: domain")


def test_dmarc_quarantine_tags_and_scores(shipped):
    data = deliver(shipped, sa.message(frm="<alice@quar.example>"))
    assert sa.added(data, "X-Ravelin-DMARC") == ["fail (policy quarantine)"]
    line = [l for l in shipped.log().splitlines() if "accepted:" in l][-1]
    assert "dmarc=fail" in line
    assert float(line.split("score=")[1].split()[0]) >= 5.0, line


def test_dmarc_pass_accepted_by_shipped_rules(shipped):
    data = deliver(shipped, signed("signer.example", "signer.example", alg="ed"))
    assert sa.added(data, "X-Ravelin-DMARC") == []
    assert dmarc_of(data)[0] == "pass"


def test_dmarc_rule_fields(tmp_path, kdns, backend, ravelin_factory):
    rules = ('eom dmarc == fail && dmarc.policy == reject -> reject 550 5.7.1 "DMARC reject"\n'
             'eom dmarc == fail && dmarc.policy == quarantine -> add_header X-Test-DMARC "q"\n'
             'eom dmarc == none && dmarc.policy == none -> add_header X-Test-DMARC "none"\n'
             'eom dmarc == pass -> add_header X-Test-DMARC "pass"\n'
             'eom dmarc == temperror -> tempfail 451 4.7.1 "DMARC temperror"\n')
    r = sa.start(ravelin_factory, backend, kdns, tmp_path, rules=rules)
    s = "bounce@env.example"
    assert sa.send(r, sa.GOOD4, s, sa.message(frm="<a@reject.example>")) == \
        (550, "550 5.7.1 DMARC reject")
    assert sa.send(r, sa.GOOD4, s, sa.message(frm="<a@slowdmarc.example>")) == \
        (451, "451 4.7.1 DMARC temperror")
    for frm, signer, hdr in [("quar.example", None, "q"), ("nodmarc.example", None, "none"),
                             ("sub.orgdom.example", None, "q"),
                             ("signer.example", "signer.example", "pass")]:
        msg = sa.message(frm="<a@%s>" % frm)
        if signer:
            msg = sa.sign(KEYS, msg, signer)
        assert sa.send(r, sa.GOOD4, s, msg)[0] == 250
        assert sa.added(sa.last(backend), "X-Test-DMARC") == [hdr], frm


def test_dmarc_lookups_stop_at_org_domain(plain, kdns):
    kdns.reset_counts()
    deliver(plain, sa.message(frm="<a@deep.sub.orgdom.example>"))
    assert kdns.count("_dmarc.deep.sub.orgdom.example", "TXT") == 1
    assert kdns.count("_dmarc.orgdom.example", "TXT") == 1
    assert kdns.count("_dmarc.sub.orgdom.example", "TXT") == 0
    assert kdns.count("_dmarc.example", "TXT") == 0


def test_dkim_dmarc_counters(plain):
    deliver(plain, signed("signer.example", "signer.example"))
    deliver(plain, signed("signer.example", "signer.example", alg="ed"))
    deliver(plain, sa.message(frm="<a@reject.example>"))
    assert sa.wait_counter(plain, "dkim_result_total", "pass", 2) == 2
    st = sa.stats(plain)
    assert st["dkim_result_total"] == {"pass": 2, "none": 1}, st
    assert st["dmarc_result_total"] == {"pass": 2, "fail": 1}, st


@pytest.mark.parametrize("alg", ["rsa", "ed"])
def test_dkim_cached_key_verifies_on_the_loop(plain, kdns, alg):
    """Once a signer's key (and everything else the transaction needs) is
    in ravelin's DNS cache, end of message runs on the event loop instead
    of the check pool, and gives the same verdicts: the key is asked for
    once, every copy passes, a tampered copy still fails."""
    kdns.reset_counts()
    deliver(plain, signed("signer.example", "signer.example", alg=alg))
    before = sa.stats(plain).get("policy_checks_total", {})
    for i in range(3):
        msg = signed("signer.example", "signer.example", alg=alg, subject="copy %d" % i)
        res = sa.results(deliver(plain, msg))
        assert res["dkim"][0][0] == "pass", res
        assert res["dmarc"][0][0] == "pass", res
    bad = signed("signer.example", "signer.example", alg=alg).replace(b"\r\n\r\n", b"\r\n\r\nX", 1)
    res = sa.results(deliver(plain, bad))
    assert res["dkim"][0][0] == "fail", res
    after = sa.stats(plain).get("policy_checks_total", {})
    assert kdns.count("%s._domainkey.signer.example" % alg, "TXT") == 1
    # Nothing went to the pool after the first message; each later one
    # ran its checks (end of message included) inline.
    assert after.get("pool", 0) == before.get("pool", 0), (before, after)
    assert after.get("inline", 0) - before.get("inline", 0) >= 4, (before, after)
