"""Sender spoofing heuristics through the real ravelin (issue 6):
display names holding a foreign address or a protected name
(spoof_protected_names), look-alike domains of local domains in From: and
in MAIL FROM (IDN homoglyphs, one typo, another TLD), From:/MAIL FROM
mismatch without DKIM alignment and its exemptions (aligned DKIM, same
organisation, a signing mailing list with List-Id, trusted clients); the
spoof.* rule fields, the shipped 60-spoof.rules and spoof_detected_total.

Rules under test add a header per field, so the assertions are on what the
backend received. Clients come through a proxy-protocol listener with
TEST-NET addresses; DNS is the test's own server; loopback only.
"""
import os
import subprocess

import pytest

from dnsserver import start_dns_server
import harness
import test_senderauth_lib as sa

KEYS = sa.Keys()
ZONES = {}
for d in ("other.example", "env.example", "lists.example"):
    ZONES.update(sa.key_zones(KEYS, d))

RULES = """
sd: eoh spoof.display_name -> add_header X-Spoof-Display "yes"
sl: eoh spoof.lookalike -> add_header X-Spoof-Lookalike "yes"
sm: eom spoof.mismatch -> add_header X-Spoof-Mismatch "yes"
"""

NAMES = """# protected display names
"Jane Doe"      example.org,partner.example
/\\bpayroll\\b/   .example.org
"""


@pytest.fixture(scope="module")
def sdns():
    srv = start_dns_server(ZONES)
    yield srv
    srv.stop()


def start_spoof(tmp_path, factory, backend, dns, rules=RULES):
    names = os.path.join(str(tmp_path), "names")
    with open(names, "w") as f:
        f.write(NAMES)
    locals_ = os.path.join(str(tmp_path), "locals")
    with open(locals_, "w") as f:
        f.write("# more local domains\ncorp-mail.example\n")
    extra = "spoof_protected_names @%s\nlocal_domains @%s" % (names, locals_)
    return sa.start(factory, backend, dns, tmp_path, rules=rules, extra=extra)


@pytest.fixture
def rv(tmp_path, sdns, backend, ravelin_factory):
    return start_spoof(tmp_path, ravelin_factory, backend, sdns)


def flags(r):
    """The X-Spoof-* headers of the last message the backend received."""
    head = sa.last(r.backend).split(b"\r\n\r\n", 1)[0].decode()
    return sorted(line.split(":")[0][8:] for line in head.split("\r\n")
                  if line.startswith("X-Spoof-"))


def deliver(r, frm, sender="x@env.example", ip=sa.GOOD4, extra="", sign=None):
    body = sa.message(frm=frm, extra=extra)
    if sign:
        body = sa.sign(KEYS, body, sign)
    code, text = sa.send(r, ip, sender, body)
    assert code == 250, text
    return flags(r)


def spoofs(r):
    return sa.stats(r).get("spoof_detected_total", 0)


# ---- display names ----

@pytest.mark.parametrize("frm, want", [
    ('"ceo@example.org" <x@evil.test>', ["Display"]),
    ('"Jane (jane@partner.example)" <jane@evil.test>', ["Display"]),
    ('"jane@env.example" <jane@env.example>', []),
    ('"Jane Doe" <jane@evil.test>', ["Display"]),
    ('"jane doe" <jane@partner.example>', []),
    ('Payroll Team <pay@evil.test>', ["Display"]),
    ('Payroll Team <pay@hr.example.org>', []),
    ('"Payrolls" <pay@evil.test>', []),
    ('John Smith <john@env.example>', []),
    # RFC 2047: what the recipient's client shows is what counts.
    ('=?UTF-8?B?Y2VvQGV4YW1wbGUub3Jn?= <x@evil.test>', ["Display"]),
    ('=?UTF-8?Q?Jane_Doe?= <jane@evil.test>', ["Display"]),
    ('"=?ISO-8859-1?Q?ceo=40example=2Eorg?=" <x@evil.test>', ["Display"]),
    ('=?UTF-8?Q?John_Smith?= <john@env.example>', []),
], ids=["foreign_address", "address_in_words", "own_address", "protected_name",
        "protected_name_allowed_domain", "protected_regex", "protected_regex_subdomain_allowed",
        "regex_word_boundary", "plain_name", "encoded_address", "encoded_protected_name",
        "encoded_in_quotes", "encoded_plain_name"])
def test_display_name_spoofing(rv, frm, want):
    got = [f for f in deliver(rv, frm, sender="x@env.example") if f == "Display"]
    assert got == want


def test_display_name_counts_once_per_message(rv):
    before = spoofs(rv)
    deliver(rv, '"a@one.test b@two.test Jane Doe" <x@env.example>')
    assert spoofs(rv) == before + 1


# ---- look-alike domains ----

@pytest.mark.parametrize("frm, sender, want", [
    ("a@xn--exmple-4nf.org", "x@env.example", True),       # Cyrillic a
    ("a@examp1e.org", "x@env.example", True),              # digit one
    ("a@exmaple.org", "x@env.example", True),              # transposition
    ("a@example.com", "x@env.example", True),              # another TLD
    ("a@c0rp-mail.example", "x@env.example", True),        # local domain from @FILE
    ("a@env.example", "x@exarnple.org", True),             # envelope sender, rn for m
    ("a@mail.example.org", "x@mail.example.org", False),   # same organisation
    ("a@env.example", "x@env.example", False),             # unrelated
], ids=["idn_homoglyph", "digit", "transposition", "swapped_tld", "file_local",
        "envelope_sender", "same_org", "unrelated"])
def test_lookalike_domains(rv, frm, sender, want):
    assert ("Lookalike" in deliver(rv, frm, sender=sender)) == want


def test_lookalike_and_mismatch_count_per_kind(rv):
    before = spoofs(rv)
    # From: look-alike and MAIL FROM look-alike: one lookalike; plus mismatch.
    got = deliver(rv, "a@examp1e.org", sender="x@exmaple.org")
    assert got == ["Lookalike", "Mismatch"]
    assert spoofs(rv) == before + 2


# ---- From: vs MAIL FROM ----

@pytest.mark.parametrize("frm, sender, extra, sign, want", [
    ("a@other.example", "x@env.example", "", None, True),
    ("a@other.example", "x@env.example", "", "other.example", False),     # aligned DKIM
    ("a@news.env.example", "x@env.example", "", None, False),             # same organisation
    ("a@other.example", "x@lists.example", "List-Id: <t.lists.example>\r\n",
     "lists.example", False),                                              # signing list
    ("a@other.example", "x@lists.example", "", "lists.example", True),     # no List-Id
    ("a@other.example", "x@lists.example", "List-Id: <t.lists.example>\r\n",
     None, True),                                                          # list, unsigned
    ("a@other.example", "", "", None, False),                              # bounce
], ids=["unsigned", "dkim_aligned", "same_org", "mailing_list", "signed_no_list_id",
        "list_unsigned", "null_sender"])
def test_header_envelope_mismatch(rv, frm, sender, extra, sign, want):
    assert ("Mismatch" in deliver(rv, frm, sender=sender, extra=extra, sign=sign)) == want


# ---- trusted clients ----

def test_trusted_client_is_not_checked(rv):
    before = spoofs(rv)
    assert deliver(rv, '"ceo@example.org" <a@examp1e.org>', sender="x@other.example",
                   ip=sa.MYNET) == []
    assert spoofs(rv) == before


# ---- shipped rules ----

def test_shipped_rules_score_display_name_and_lookalike(tmp_path, sdns, backend, ravelin_factory):
    r = start_spoof(tmp_path, ravelin_factory, backend, sdns, rules="shipped")
    # Each alone scores 5: tagged, delivered.
    for frm, reason in (('"ceo@example.org" <a@other.example>',
                         "From: display name impersonates another sender"),
                        ("a@examp1e.org", "sender domain looks like a local domain")):
        code, text = sa.send(r, sa.GOOD4, "x@env.example", sa.message(frm=frm))
        assert code == 250, text
        assert r.wait_log('score +5 "%s"' % reason)
        head = sa.last(backend).split(b"\r\n\r\n", 1)[0]
        assert b"X-Spam-Flag: YES" in head
    # The mismatch is only logged by default.
    assert r.wait_log("From: domain differs from envelope sender, no DKIM alignment")
    # Both at once reach the reject threshold (10).
    code, text = sa.send(r, sa.GOOD4, "x@env.example",
                         sa.message(frm='"ceo@example.org" <a@examp1e.org>'))
    assert code == 550 and "Message looks like spam" in text


# ---- configuration ----

def test_bad_protected_names_file_is_a_config_error(tmp_path, sdns, backend):
    names = os.path.join(str(tmp_path), "bad-names")
    with open(names, "w") as f:
        f.write("# ok\n/(/ example.org\n")
    conf = os.path.join(str(tmp_path), "t.conf")
    with open(conf, "w") as f:
        f.write(harness.base_config(harness.free_port(), backend.port, sdns.port,
                                    extra="spoof_protected_names @%s" % names))
    p = subprocess.run([os.path.join(harness.BUILD, "ravelin"), "-t", "-c", conf],
                       capture_output=True, text=True, timeout=20)
    assert p.returncode != 0
    assert "spoof_protected_names" in p.stderr + p.stdout and "2: bad regular expression" in \
        p.stderr + p.stdout
