"""test_dmarc.py - ravelin's DMARC evaluation (src/check_dmarc.c, driven by
build/tools/dmarccheck): policy discovery through ravelin's resolver
against a DNS server on loopback, p=/sp=/pct=, organisational-domain
fallback, relaxed and strict alignment, and the error results.
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
TOOL = os.path.join(BUILD, "tools", "dmarccheck")

ZONES = {
    "_dmarc.example.com": [{"TXT": "v=DMARC1; p=reject; sp=quarantine; rua=mailto:d@example.com"}],
    "_dmarc.example.net": [{"TXT": "v=DMARC1; p=quarantine"}],
    "_dmarc.example.org": [{"TXT": "v=DMARC1; p=none"}],
    "example.edu": [{"A": "192.0.2.10"}],
    "_dmarc.example.info": [{"TXT": "v=DMARC1; p=reject; adkim=s; aspf=s"}],
    "_dmarc.pct0.example.com": [{"TXT": "v=DMARC1; p=reject; pct=0"}],
    "_dmarc.pct50.example.com": [{"TXT": "v=DMARC1; p=reject; pct=50"}],
    "_dmarc.broken.example.net": [{"TXT": "v=DMARC1; p=bogus"}],
    "_dmarc.multi.example.org": [{"TXT": "v=DMARC1; p=reject"}, {"TXT": "v=DMARC1; p=none"}],
    "_dmarc.slow.example.net": ["TIMEOUT"],
    "_dmarc.notdmarc.example.org": [{"TXT": "v=spf1 -all"}],
    "_dmarc.split.example.net": [{"TXT": ["v=DMARC1; ", "p=reject"]}],
}


@pytest.fixture(scope="module")
def dns():
    srv = start_dns_server(ZONES)
    yield srv
    srv.stop()


def dmarc(dns, frm, spf=None, dkim=(), helo=False, sample=None, timeout_ms=2000):
    assert os.access(TOOL, os.X_OK), f"{TOOL} not built (make build/tools/dmarccheck)"
    cmd = [TOOL, "--dns", f"127.0.0.1:{dns.port}", "--timeout", str(timeout_ms), "--from", frm]
    if spf:
        cmd += ["--spf", spf]
    if helo:
        cmd += ["--helo"]
    for d in dkim:
        cmd += ["--dkim", d]
    if sample is not None:
        cmd += ["--sample", str(sample)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    m = re.match(r"dmarc (.*) reason=\"(.*)\"$", out.stdout.strip())
    assert m, out.stdout
    res = dict(kv.split("=", 1) for kv in m.group(1).split())
    res["reason"] = m.group(2)
    return res


# One row per case: (name, kwargs, expected subset of the outcome).
CASES = [
    ("p_reject_fail", dict(frm="example.com", spf="fail:example.com"),
     dict(result="fail", policy="reject", disposition="reject", used_sp="0", record="example.com")),
    ("p_reject_aligned_dkim_pass", dict(frm="example.com", dkim=["pass:example.com:s1"]),
     dict(result="pass", policy="reject", disposition="none", dkim_aligned="1")),
    ("p_reject_aligned_spf_pass", dict(frm="example.com", spf="pass:example.com"),
     dict(result="pass", spf_aligned="1", dkim_aligned="0")),
    ("p_quarantine_unaligned_dkim", dict(frm="example.net", dkim=["pass:other.example:s"]),
     dict(result="fail", policy="quarantine", disposition="quarantine", dkim_aligned="0")),
    ("p_none_fail", dict(frm="example.org", spf="softfail:example.org"),
     dict(result="fail", policy="none", disposition="none")),
    ("no_record_is_none", dict(frm="example.edu", spf="pass:example.edu"),
     dict(result="none", policy="", record="")),
    ("org_fallback_uses_sp", dict(frm="sub.example.com", spf="fail:sub.example.com"),
     dict(result="fail", policy="quarantine", disposition="quarantine", used_sp="1",
          record="example.com", **{"from": "sub.example.com"})),
    ("org_fallback_relaxed_dkim_parent", dict(frm="sub.example.com", dkim=["pass:example.com:s"]),
     dict(result="pass", dkim_aligned="1", adkim="r")),
    ("relaxed_spf_sibling_subdomain", dict(frm="example.com", spf="pass:bounce.example.com"),
     dict(result="pass", spf_aligned="1", aspf="r")),
    ("strict_dkim_subdomain_fails", dict(frm="example.info", dkim=["pass:mail.example.info:s"]),
     dict(result="fail", policy="reject", disposition="reject", dkim_aligned="0", adkim="s")),
    ("strict_dkim_exact_passes", dict(frm="example.info", dkim=["pass:example.info:s"]),
     dict(result="pass", dkim_aligned="1", adkim="s")),
    ("strict_spf_subdomain_fails", dict(frm="example.info", spf="pass:bounce.example.info"),
     dict(result="fail", spf_aligned="0", aspf="s")),
    ("aligned_dkim_fail_is_fail", dict(frm="example.com", dkim=["fail:example.com:s"]),
     dict(result="fail", disposition="reject")),
    ("one_of_several_dkim_passes", dict(frm="example.com",
                                        dkim=["fail:example.com:a", "pass:other.example:b",
                                              "pass:EXAMPLE.COM:c"]),
     dict(result="pass", dkim_aligned="1")),
    ("pct0_downgrades_reject", dict(frm="pct0.example.com", spf="fail:pct0.example.com"),
     dict(result="fail", policy="reject", disposition="quarantine", pct="0")),
    ("pct50_in_sample", dict(frm="pct50.example.com", sample=10),
     dict(result="fail", disposition="reject", pct="50")),
    ("pct50_outside_sample", dict(frm="pct50.example.com", sample=90),
     dict(result="fail", disposition="quarantine", pct="50")),
    ("bad_record_is_permerror", dict(frm="broken.example.net"),
     dict(result="permerror", record="broken.example.net")),
    ("several_records_is_none", dict(frm="multi.example.org"),
     dict(result="none", policy="")),
    ("dns_timeout_is_temperror", dict(frm="slow.example.net", timeout_ms=500),
     dict(result="temperror")),
    ("non_dmarc_txt_falls_back_to_org", dict(frm="notdmarc.example.org"),
     dict(result="fail", policy="none", record="example.org", used_sp="0")),
    ("record_in_two_strings", dict(frm="split.example.net"),
     dict(result="fail", policy="reject")),
    ("from_domain_case_and_dot", dict(frm="Example.COM.", dkim=["pass:example.com:s"]),
     dict(result="pass", **{"from": "example.com"})),
    ("helo_identity_spf", dict(frm="example.com", spf="pass:mx.example.com", helo=True),
     dict(result="pass", spf_aligned="1")),
    ("no_from_domain", dict(frm=""), dict(result="none")),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_dmarc_case(dns, case):
    name, kwargs, want = case
    got = dmarc(dns, **kwargs)
    diff = {k: (got.get(k), v) for k, v in want.items() if got.get(k) != v}
    assert not diff, f"{name}: (got, want) {diff}; full {got}"


def test_lookups_go_to_our_server_and_stop_at_org(dns):
    """sub.example.com: _dmarc.sub.example.com, then _dmarc.example.com; no more."""
    dns.reset_counts()
    dmarc(dns, "deep.sub.example.com")
    assert dns.count("_dmarc.deep.sub.example.com", "TXT") >= 1
    assert dns.count("_dmarc.example.com", "TXT") >= 1
    assert dns.count("_dmarc.sub.example.com", "TXT") == 0


def test_organisational_domain_from_psl():
    out = subprocess.run([TOOL, "--org", "a.b.example.co.uk"], capture_output=True, text=True)
    assert out.stdout.strip() == "org example.co.uk"
    out = subprocess.run([TOOL, "--org", "co.uk"], capture_output=True, text=True)
    assert out.stdout.strip() == "org -"
