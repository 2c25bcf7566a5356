"""test_spf.py - ravelin's SPF check (src/check_spf.c via build/tools/spfcheck)
on the behaviours ravelin adds around libspf2: IPv4-mapped clients,
loopback, the null sender's HELO identity, the Received-SPF header,
timeouts and the check budget, RFC 7208 limits libspf2 lacks, hostile
records, and one checker shared by many threads.
"""

import os
import re
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "lib"))

from dnsserver import start_dns_server  # noqa: E402

BUILD = os.environ.get("RAVELIN_BUILD", os.path.join(REPO, "build"))
TOOL = os.path.join(BUILD, "tools", "spfcheck")

ZONES = {
    "example.com": [{"TXT": "v=spf1 ip4:192.0.2.0/24 a:mail.example.com -all"}],
    "mail.example.com": [{"A": "198.51.100.7"}],
    "helo.example.net": [{"TXT": "v=spf1 a -all"}, {"A": "198.51.100.9"}],
    "v6.example": [{"TXT": "v=spf1 ip6:2001:db8::/32 -all"}],
    "exp.example": [{"TXT": "v=spf1 -all exp=why.exp.example"}],
    "why.exp.example": [{"TXT": "Mail from %{i} refused by %{d}"}],
    "slow.example": ["TIMEOUT"],
    "slowmech.example": [{"TXT": "v=spf1 a:slow.example -all"}],
    "manyslow.example": [{"TXT": "v=spf1 a:s1.slow.example a:s2.slow.example "
                                 "a:s3.slow.example a:s4.slow.example -all"}],
    "s1.slow.example": ["TIMEOUT"], "s2.slow.example": ["TIMEOUT"],
    "s3.slow.example": ["TIMEOUT"], "s4.slow.example": ["TIMEOUT"],
    "voids.example": [{"TXT": "v=spf1 a:n1.example a:n2.example a:n3.example ip4:192.0.2.0/24 -all"}],
    "mxmany.example": [{"TXT": "v=spf1 mx -all"}]
    + [{"MX": [i, f"mx{i}.example.com"]} for i in range(11)],
    "macro.example": [{"TXT": "v=spf1 exists:" + "%{l}.%{d}." * 30 + "x.example -all"}],
    "nul.example": [{"TXT": "v=spf1 ip4:192.0.2.1\x00 -all"}],
    "quoted.example": [{"TXT": "v=spf1 +all"}],
}


@pytest.fixture(scope="module")
def dns():
    srv = start_dns_server(ZONES)
    yield srv
    srv.stop()


def spf(port, ip, sender, helo="mail.client.example", timeout=800, budget=None, repeat=None):
    assert os.access(TOOL, os.X_OK), f"{TOOL} not built (make build/tools/spfcheck)"
    args = [TOOL, "--dns", f"127.0.0.1:{port}", "--ip", ip, "--helo", helo, "--sender", sender,
            "--hostname", "mx.ravelin.test", "--timeout", str(timeout)]
    if budget:
        args += ["--budget", str(budget)]
    if repeat:
        args += ["--repeat", str(repeat)]
    out = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    blocks = []
    for block in out.stdout.strip().split("\n\n"):
        blocks.append(dict(line.split(": ", 1) if ": " in line else (line.rstrip(":"), "")
                           for line in block.splitlines()))
    return blocks if repeat else blocks[0]


@pytest.mark.parametrize("ip,sender,want", [
    ("192.0.2.5", "a@example.com", "pass"),
    ("198.51.100.7", "a@example.com", "pass"),
    ("203.0.113.1", "a@example.com", "fail"),
    ("::ffff:192.0.2.5", "a@example.com", "pass"),       # mapped: checked as IPv4
    ("::ffff:203.0.113.1", "a@example.com", "fail"),
    ("2001:db8::5", "a@v6.example", "pass"),
    ("2001:db9::5", "a@v6.example", "fail"),
    ("192.0.2.1", "x@nx.example", "none"),
    ("192.0.2.1", "x@slow.example", "temperror"),
    ("192.0.2.1", "x@slowmech.example", "temperror"),
    ("192.0.2.1", "x@voids.example", "permerror"),      # third void lookup (RFC 7208 4.6.4)
    ("192.0.2.1", "x@mxmany.example", "permerror"),     # 11 MX records
    ("192.0.2.1", "x@macro.example", "permerror"),      # CVE-2023-42118 shape, refused
    ("192.0.2.1", "x@nul.example", "permerror"),
])
def test_results(dns, ip, sender, want):
    r = spf(dns.port, ip, sender)
    assert r["result"] == want, r
    assert r["received-spf"].startswith(want + " ("), r


def test_null_sender_checks_helo_identity(dns):
    ok = spf(dns.port, "198.51.100.9", "", helo="helo.example.net")
    bad = spf(dns.port, "198.51.100.10", "", helo="helo.example.net")
    assert (ok["result"], bad["result"]) == ("pass", "fail")
    assert ok["identity"] == "helo" and ok["domain"] == "helo.example.net"
    assert 'envelope-from="postmaster@helo.example.net";' in ok["received-spf"]
    assert "identity=helo;" in ok["received-spf"]


def test_loopback_is_not_waved_through(dns):
    r = spf(dns.port, "127.0.0.1", "a@example.com")
    assert r["result"] == "none"
    assert spf(dns.port, "::1", "a@example.com")["result"] == "none"


def test_received_spf_header_fields(dns):
    r = spf(dns.port, "192.0.2.5", "a@example.com")
    h = r["received-spf"]
    assert h == ("pass (mx.ravelin.test: domain of example.com designates 192.0.2.5 as "
                 "permitted sender) client-ip=192.0.2.5; envelope-from=\"a@example.com\"; "
                 "helo=mail.client.example; receiver=mx.ravelin.test; identity=mailfrom;")
    v6 = spf(dns.port, "2001:db8::5", "a@v6.example")["received-spf"]
    assert 'client-ip="2001:db8::5";' in v6
    weird = spf(dns.port, "192.0.2.9", 'a"b\\c@quoted.example', helo="x(y)")
    assert weird["result"] == "pass"
    assert 'envelope-from="a\\"b\\\\c@quoted.example";' in weird["received-spf"]
    assert 'helo="x(y)";' in weird["received-spf"]


def test_explanation_is_expanded(dns):
    r = spf(dns.port, "192.0.2.1", "x@exp.example")
    assert r["result"] == "fail"
    assert r["reason"] == "Mail from 192.0.2.1 refused by exp.example"
    d = spf(dns.port, "203.0.113.1", "a@example.com")
    assert d["reason"] == "example.com does not designate 203.0.113.1 as permitted sender"


def test_temperror_within_budget(dns):
    """Four mechanisms that each time out: the 1 s budget stops the check."""
    r = spf(dns.port, "192.0.2.1", "x@manyslow.example", timeout=800, budget=1000)
    assert r["result"] == "temperror", r
    assert int(r["ms"]) < 1500
    assert "problem=" in r["received-spf"]


def test_shared_checker_on_many_threads(dns):
    """8 concurrent checks on one checker; a timing-out one does not slow the others."""
    runs = spf(dns.port, "192.0.2.5", "a@example.com", repeat=8)
    assert [r["result"] for r in runs] == ["pass"] * 8
    assert max(int(r["ms"]) for r in runs) < 500


def test_headers_are_single_line_ascii(dns):
    r = spf(dns.port, "192.0.2.1", "x@exp.example")
    assert re.fullmatch(r"[\x20-\x7e]+", r["received-spf"])
