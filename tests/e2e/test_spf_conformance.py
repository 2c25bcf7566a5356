"""test_spf_conformance.py - the openspf RFC 7208 test suite (2014.04, 193
tests, <repo>/../shared/testdata/spf/rfc7208-tests-2014-05.yml) through
ravelin's SPF check (src/check_spf.c via build/tools/spfcheck), each
scenario's zonedata served by tests/lib/dnsserver.py on loopback.

Zone data follows the suite's driver convention: SPF-type records are also
served as TXT when a name has no TXT record ("TXT: NONE" suppresses that),
TIMEOUT means the server never answers (unless a record of the asked type
comes first).

Every test is run; agreement is counted and must not fall below MIN_AGREE
(the figure measured when this file was written). Known disagreements are
listed in KNOWN_DISAGREE with the reason; the test prints every
disagreement, and a new one fails test_no_new_disagreement.
"""

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "lib"))

from dnsserver import start_dns_server  # noqa: E402

BUILD = os.environ.get("RAVELIN_BUILD", os.path.join(REPO, "build"))
TOOL = os.path.join(BUILD, "tools", "spfcheck")
SUITE = os.path.join(os.path.dirname(REPO), "shared", "testdata", "spf", "rfc7208-tests-2014-05.yml")
TIMEOUT_MS = 1000  # per DNS query; the suite's TIMEOUT names cost this much

# Measured: 173 of 193 on an idle machine; ptr-limit (below) makes it 172
# now and then on a loaded one.
MIN_AGREE = 172
_ZERO = ("libspf2 1.2.10 refuses a CIDR length of 0 (RFC 7208 5.6 allows /0): "
         "the record compiles to permerror")
KNOWN_DISAGREE = {
    # Agrees (pass) when run alone; under load (4 checks in parallel beside
    # other work) libspf2 has returned permerror with no reason of ours for
    # this 11-PTR case, twice in a dozen full runs. Not understood yet.
    "ptr-limit": "intermittent permerror under load (under investigation)",
    **{name: _ZERO for name in (
        "a-cidr4-0", "a-cidr4-0-ip6", "a-cidr6-0-ip4", "a-cidr6-0-ip4mapped", "a-cidr6-0-ip6",
        "a-cidr6-0-nxdomain", "a-nxdomain", "cidr4-0", "cidr6-0", "cidr6-0-ip4", "cidr6-ip4",
        "mx-cidr4-0", "mx-cidr4-0-ip6", "mx-cidr6-0-ip4", "mx-cidr6-0-ip4mapped", "mx-cidr6-0-ip6",
        "mx-cidr6-0-nxdomain", "mx-nxdomain")},
    "include-over-limit": ("libspf2 counts the 10 DNS-querying terms per record, not across "
                           "include: (RFC 7208 4.6.4), so 12 terms in all still pass"),
    "redirect-after-mechanisms1": ("libspf2 follows redirect= although the record has an 'all' "
                                   "(RFC 7208 6.1: then redirect is ignored) and the "
                                   "self-redirect ends in permerror instead of softfail"),
}


def spf_zones(zonedata):
    """The suite's zonedata as dnsserver zones (SPF copied to TXT, see above)."""
    zones = {}
    for name, records in (zonedata or {}).items():
        entries, spf, has_txt = [], [], False
        for r in records:
            if r == "TIMEOUT":
                entries.append("TIMEOUT")
                continue
            (t, v), = r.items()
            if t == "TXT":
                has_txt = True
            elif t == "SPF" and v != "NONE":
                spf.append(v)
            entries.append({t: v})
        if not has_txt:
            entries += [{"TXT": v} for v in spf]
        zones[name] = entries
    return zones


def load_suite():
    yaml = pytest.importorskip("yaml")
    with open(SUITE, "rb") as f:
        return list(yaml.safe_load_all(f))


def run_spfcheck(port, test):
    args = [TOOL, "--dns", f"127.0.0.1:{port}", "--timeout", str(TIMEOUT_MS),
            "--ip", str(test["host"]), "--helo", str(test.get("helo", "")),
            "--sender", str(test.get("mailfrom", "")), "--hostname", "receiver.ravelin.test"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"spfcheck failed: {out.stderr}"
    fields = {}
    for line in out.stdout.splitlines():
        k, _, v = line.partition(": ")
        fields[k] = v
    return fields


@pytest.fixture(scope="module")
def outcomes():
    """Run the whole suite once: {(scenario, test): (expected, got, fields)}."""
    assert os.access(TOOL, os.X_OK), f"{TOOL} not built (make build/tools/spfcheck)"
    docs = load_suite()
    srv = start_dns_server({})
    res = {}
    try:
        for doc in docs:
            srv.set_zones(spf_zones(doc.get("zonedata")))
            tests = sorted(doc["tests"].items())
            with ThreadPoolExecutor(max_workers=4) as pool:
                got = list(pool.map(lambda kv: run_spfcheck(srv.port, kv[1]), tests))
            for (name, t), fields in zip(tests, got):
                want = t["result"] if isinstance(t["result"], list) else [t["result"]]
                res[(doc["description"], name)] = (want, fields["result"], fields)
    finally:
        srv.stop()
    return res


def disagreements(outcomes):
    return {name: (want, got, f) for (_, name), (want, got, f) in outcomes.items() if got not in want}


def test_suite_has_193_tests(outcomes):
    assert len(outcomes) == 193


def test_conformance_count(outcomes):
    bad = disagreements(outcomes)
    agree = len(outcomes) - len(bad)
    print(f"\nSPF RFC 7208 suite: {agree} of {len(outcomes)} agree")
    for name, (want, got, f) in sorted(bad.items()):
        why = KNOWN_DISAGREE.get(name, "NEW")
        print(f"  {name}: want {'/'.join(want)}, got {got} ({f.get('reason', '')}) -- {why}")
    assert agree >= MIN_AGREE


def test_no_new_disagreement(outcomes):
    new = sorted(set(disagreements(outcomes)) - set(KNOWN_DISAGREE))
    assert not new, f"new SPF disagreements: {new}"


def test_every_outcome_has_a_received_spf_header(outcomes):
    for key, (_want, got, f) in outcomes.items():
        hdr = f["received-spf"]
        assert hdr.startswith(got + " ("), (key, hdr)
        assert "receiver=receiver.ravelin.test;" in hdr, (key, hdr)
        assert all(0x20 <= ord(c) < 0x7f for c in hdr), (key, hdr)
