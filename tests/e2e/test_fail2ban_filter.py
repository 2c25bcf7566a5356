"""The shipped fail2ban filter and jails against ravelin's log lines.

etc/fail2ban/filter.d/ravelin.conf must catch the two lines of DESIGN.md
section 9 that mark an abusive client -- failed AUTH and relay probing --
take the client address from the fixed part of the line (never from text
the client controls), and leave every other line alone.

The real fail2ban-regex (package fail2ban) is the judge when it is
installed; a plain-re rendering of the same failregexes runs everywhere.
"""

import ast
import configparser
import os
import re
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FILTER = os.path.join(ROOT, "etc", "fail2ban", "filter.d", "ravelin.conf")
JAIL = os.path.join(ROOT, "etc", "fail2ban", "jail.d", "ravelin.conf")
F2B_REGEX = shutil.which("fail2ban-regex") or (
    "/usr/bin/fail2ban-regex" if os.path.exists("/usr/bin/fail2ban-regex") else None)
F2B_CLIENT = shutil.which("fail2ban-client") or (
    "/usr/bin/fail2ban-client" if os.path.exists("/usr/bin/fail2ban-client") else None)
COMMON = "/etc/fail2ban/filter.d/common.conf"

BSD = "Jan  5 10:00:00 mx ravelin[4242]: "
ISO = "2024-01-05T10:00:01.123456+01:00 mx ravelin[4242]: "

# (name, line, kind, address): kind is "auth", "relay" or None (no match).
CASES = [
    ("auth failed, PLAIN, BSD syslog",
     BSD + "4F2A9C1D: auth failed: client=[192.0.2.7] user=bob mechanism=PLAIN",
     "auth", "192.0.2.7"),
    ("auth failed, LOGIN, RFC 3339 time (rsyslog)",
     ISO + "4F2A9C1E: auth failed: client=[192.0.2.8] user=alice@example.org mechanism=LOGIN",
     "auth", "192.0.2.8"),
    ("auth failed with an empty user",
     BSD + "4F2A9C1F: auth failed: client=[192.0.2.9] user= mechanism=PLAIN",
     "auth", "192.0.2.9"),
    ("auth failed from IPv6",
     BSD + "4F2A9C20: auth failed: client=[2001:db8::5] user=bob mechanism=PLAIN",
     "auth", "2001:db8::5"),
    ("user name cannot redirect the ban",
     BSD + "4F2A9C21: auth failed: client=[192.0.2.10] user=x client=[192.0.2.99] mechanism=PLAIN",
     "auth", "192.0.2.10"),
    ("auth failed with extra fields after the mechanism",
     BSD + "4F2A9C22: auth failed: client=[192.0.2.11] user=bob mechanism=LOGIN reason=bad",
     "auth", "192.0.2.11"),
    ("relay denied, DESIGN.md example",
     ISO + "4F2A9C23: reject: RCPT from host.example[198.51.100.9]: 554 5.7.1 <x@y.z>: "
     "Relay access denied; from=<a@b.c> to=<x@y.z> helo=<h>",
     "relay", "198.51.100.9"),
    ("relay denied, unknown client name",
     BSD + "4F2A9C24: reject: RCPT from unknown[203.0.113.4]: 554 5.7.1 "
     "<victim@example.com>: Relay access denied; from=<> to=<victim@example.com> "
     "helo=<[203.0.113.4]>",
     "relay", "203.0.113.4"),
    ("relay denied from IPv6",
     BSD + "4F2A9C25: reject: RCPT from unknown[2001:db8::77]: 554 5.7.1 <a@b.example>: "
     "Relay access denied; from=<s@t.example> to=<a@b.example> helo=<x>",
     "relay", "2001:db8::77"),
    ("recipient text cannot redirect the ban",
     BSD + "4F2A9C26: reject: RCPT from evil.example[192.0.2.12]: 554 5.7.1 "
     "<a[192.0.2.201]@y.z>: Relay access denied; from=<a@b.c> to=<a[192.0.2.201]@y.z> "
     "helo=<h>",
     "relay", "192.0.2.12"),
    ("connect line",
     BSD + "4F2A9C27: connect from host.example[192.0.2.100] listener=inbound",
     None, "192.0.2.100"),
    ("accepted line",
     BSD + "4F2A9C28: accepted: from=<a@b.c> to=<d@example.org> size=2048 spf=pass "
     "dkim=pass dmarc=pass score=1.5 backend=\"250 2.0.0 Ok: queued as 7A1B\"",
     None, None),
    ("other RCPT refusal is not relay probing",
     BSD + "4F2A9C29: reject: RCPT from h.example[192.0.2.102]: 550 5.1.1 <x@example.org>: "
     "Recipient address rejected; from=<a@b.c> to=<x@example.org> helo=<h>",
     None, "192.0.2.102"),
    ("sender not owned is not an attack on the server",
     BSD + "4F2A9C2A: reject: MAIL from h.example[192.0.2.103]: 553 5.7.1 <a@b.c>: "
     "Sender address not owned by user",
     None, "192.0.2.103"),
    ("another program's line",
     "Jan  5 10:00:00 mx postfix/smtpd[77]: 4F2A9C2B: auth failed: client=[192.0.2.104] "
     "user=x mechanism=PLAIN",
     None, "192.0.2.104"),
    ("successful auth",
     BSD + "4F2A9C2C: auth ok: client=[192.0.2.105] user=bob mechanism=PLAIN",
     None, "192.0.2.105"),
    ("HELO text cannot forge a failure line",
     BSD + "4F2A9C2D: reject: RCPT from h.example[192.0.2.106]: 550 5.7.1 <x@example.org>: "
     "Spam; helo=<x: auth failed: client=[192.0.2.107] user=a mechanism=PLAIN>",
     None, "192.0.2.107"),
]


def _filter_definition():
    """The [Definition] section of the shipped filter, uninterpolated."""
    cp = configparser.RawConfigParser()
    cp.read(FILTER)
    return cp["Definition"]


def _plain_regexes(mode):
    """The filter's failregexes for a mode as Python regexes.

    fail2ban replaces <HOST> by an alternation of IPv4, IPv6 and DNS-name
    patterns; this does the same with simpler patterns of its own.
    """
    d = _filter_definition()
    host = (r"(?P<host>(?:\d{1,3}\.){3}\d{1,3}"
            r"|[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}"
            r"|[\w.-]*\w)")
    names = {"normal": ["mdre-auth", "mdre-relay"], "auth": ["mdre-auth"],
             "relay": ["mdre-relay"]}[mode]
    out = []
    for name in names:
        rx = d[name].replace("%(_port)s", d["_port"]).replace("<HOST>", host)
        out.append(re.compile(rx))
    return out


def _plain_match(line, mode="normal"):
    """What the filter would ban for one line, or None (plain re)."""
    sid = _filter_definition()["_sid"]
    m = re.match(r"^(?:\w{3} [ \d]\d \d\d:\d\d:\d\d|\d{4}-\d\d-\d\dT\S+)\s+\S+\s+"
                 r"ravelin(?:\[\d+\])?:\s+" + sid +
                 r": (?P<content>(?:auth failed|reject): .+)$", line)
    if not m:
        return None
    for rx in _plain_regexes(mode):
        hit = rx.search(m.group("content"))
        if hit:
            return hit.group("host")
    return None


@pytest.mark.parametrize("name,line,kind,addr", CASES, ids=[c[0] for c in CASES])
def test_failregex_with_python_re(name, line, kind, addr):
    got = _plain_match(line)
    assert got == (addr if kind else None), name
    for mode in ("auth", "relay"):
        want = addr if kind == mode else None
        assert _plain_match(line, mode) == want, f"{name} (mode={mode})"


def _fail2ban_regex(tmp_path, mode):
    """Addresses fail2ban-regex finds in all the CASES lines, in order."""
    fdir = tmp_path / "filter.d"
    fdir.mkdir(exist_ok=True)
    # A filter given by path reads its includes (common.conf) beside it.
    shutil.copy(FILTER, fdir / "ravelin.conf")
    shutil.copy(COMMON, fdir / "common.conf")
    log = tmp_path / "mail.log"
    log.write_text("".join(c[1] + "\n" for c in CASES))
    spec = str(fdir / "ravelin.conf")
    if mode != "normal":
        spec += f"[mode={mode}]"
    r = subprocess.run([F2B_REGEX, "-o", "row", str(log), spec], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    rows = [ast.literal_eval(ln.strip().rstrip(",")) for ln in r.stdout.splitlines()
            if ln.startswith("[")]
    return [row[0] for row in rows]


@pytest.mark.skipif(F2B_REGEX is None or not os.path.exists(COMMON),
                    reason="fail2ban is not installed")
@pytest.mark.parametrize("mode", ["normal", "auth", "relay"])
def test_fail2ban_regex_bans_exactly_the_abusive_lines(tmp_path, mode):
    want = [c[3] for c in CASES if c[2] and (mode == "normal" or c[2] == mode)]
    assert _fail2ban_regex(tmp_path, mode) == want


@pytest.mark.skipif(F2B_CLIENT is None or not os.path.isdir("/etc/fail2ban"),
                    reason="fail2ban is not installed")
def test_jail_example_passes_fail2ban_config_test(tmp_path):
    """The jail example loads in a copy of the system's fail2ban config."""
    cfg = tmp_path / "fail2ban"
    shutil.copytree("/etc/fail2ban", cfg)
    # Only our jails: Debian's default enables sshd, whose log may not exist.
    for f in (cfg / "jail.d").iterdir():
        f.unlink()
    shutil.copy(FILTER, cfg / "filter.d" / "ravelin.conf")
    jail = open(JAIL).read().replace("enabled  = false", "enabled  = true")
    (cfg / "jail.d" / "ravelin.conf").write_text(jail)
    log = tmp_path / "mail.log"
    log.write_text("")
    (cfg / "paths-overrides.local").write_text(
        f"[DEFAULT]\nsyslog_mail = {log}\nsyslog_backend = polling\n")
    r = subprocess.run([F2B_CLIENT, "-c", str(cfg), "-d"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "['add', 'ravelin', 'polling']" in r.stdout
    assert "['add', 'ravelin-auth', 'polling']" in r.stdout
    # mode=auth leaves the relay expression out of the second jail.
    auth_jail = [ln for ln in r.stdout.splitlines()
                 if ln.startswith("['set', 'ravelin-auth', 'addfailregex'")]
    assert len(auth_jail) == 1 and "auth failed" in auth_jail[0]
    assert "Relay" not in auth_jail[0]
    r = subprocess.run([F2B_CLIENT, "-c", str(cfg), "-t"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and "successful" in r.stdout + r.stderr, r.stdout + r.stderr
