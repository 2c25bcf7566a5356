"""Sender spoofing heuristics in milter mode (issue 6): `build/ravelin -M`
computes spoof.display_name, spoof.lookalike and spoof.mismatch as the
proxy does, the rules act on them at end of message, and
spoof_detected_total counts them. Driven by miltertest; the client
addresses are TEST-NET data, everything talks over loopback.
"""

import pytest

from dnsserver import start_dns_server
import test_milter_lib as ml
from test_milter_policy import content, envelope
import test_senderauth_lib as sa

GOOD = "192.0.2.5"

RULES = {
    "60-test.rules": """
dn: eom spoof.display_name -> reject 550 5.7.1 "Display name spoof"
la: eom spoof.lookalike -> reject 550 5.7.1 "Look-alike domain"
mm: eom spoof.mismatch -> reject 550 5.7.1 "From/envelope mismatch"
""",
}


@pytest.fixture(scope="module")
def sdns():
    srv = start_dns_server({})
    yield srv
    srv.stop()


@pytest.fixture
def milter(tmp_path, sdns):
    m = ml.Milter(tmp_path, sdns, rules=RULES)
    yield m
    rc = m.stop()
    assert rc in (0, -15), "ravelin -M exited with %r:\n%s" % (rc, m.log()[-3000:])


@pytest.mark.parametrize("frm, sender, reply", [
    ('"ceo@example.org" <x@env.example>', "x@env.example", "Display name spoof"),
    ("<a@examp1e.org>", "x@examp1e.org", "Look-alike domain"),
    ("<a@other.example>", "x@env.example", "From/envelope mismatch"),
], ids=["display_name", "lookalike", "mismatch"])
def test_spoof_refused_at_eom(milter, frm, sender, reply):
    script = envelope(GOOD, sender) + content(sa.message(frm=frm), eom="SMFIR_REPLYCODE") + '''
check(mt.eom_check(conn, MT_SMTPREPLY, "550", "5.7.1", %s), "reply text")
''' % ml.lua(reply)
    milter.run(script)
    st = milter.wait_stats(lambda s: s["spoof_detected_total"] == 1)
    assert st["spoof_detected_total"] == 1


def test_clean_message_passes(milter):
    script = envelope(GOOD, "x@env.example") + content(sa.message(frm="Jane <jane@env.example>"))
    milter.run(script)
    assert milter.stats()["spoof_detected_total"] == 0
