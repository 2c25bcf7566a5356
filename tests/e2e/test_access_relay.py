"""Relay restrictions of the inbound profile (DESIGN.md sections 4, 6, 9).

A recipient is accepted only when its domain is one of local_domains
(exact; a leading-dot entry matches subdomains only), or the client is in
mynetworks, or the session is authenticated. Everything else, and every
open-relay trick a backend could route on by itself, is refused with
`554 5.7.1 <rcpt>: Relay access denied`, logged and counted -- and never
reaches the backend, which records every command line it receives.
"""

import json
import os
import subprocess

import pytest

import harness
import test_access_lib as lib

UNTRUSTED = "192.0.2.7"        # TEST-NET-1: presented through PROXY, never dialled
TRUSTED = "198.51.100.7"       # in mynetworks below


@pytest.fixture
def cmdbackend(tmp_path):
    """The recording backend, logging every command line it receives."""
    cmdlog = os.path.join(str(tmp_path), "backend-commands.jsonl")
    open(cmdlog, "w").close()
    b = harness.Backend(str(tmp_path), "--xclient", "--cmdlog", cmdlog)
    b.cmdlog = cmdlog
    yield b
    b.stop()


def commands(b):
    with open(b.cmdlog) as f:
        return [json.loads(line)["line"] for line in f]


def rcpts_seen(b):
    return [c[8:] for c in commands(b) if c.upper().startswith("RCPT TO:")]


def start(factory, tmp_path, backend, dns, extra="", local_domains="example.org .sub.example.org",
          mynetworks="198.51.100.0/24 2001:db8:1::/48 10.255.255.0/24", plain_listener=False):
    port = harness.free_port()
    sock = os.path.join(str(tmp_path), "stats.sock")
    listens = ["127.0.0.1:%d inbound proxy-protocol" % port]
    r_port = port
    if plain_listener:
        r_port = harness.free_port()
        listens.append("127.0.0.1:%d inbound" % r_port)
    conf = lib.config(listens, backend.port, dns.port, local_domains=local_domains,
                      mynetworks=mynetworks, extra="stats_socket %s\n%s" % (sock, extra))
    r = factory(conf, port, extra_ports=(r_port,) if plain_listener else ())
    r.proxy_port = port
    r.plain_port = r_port
    r.stats_sock = sock
    r.backend = backend
    return r


def session(r, client_ip, helo="client.test"):
    c = harness.Client(r.proxy_port, preamble=harness.proxy_v1(client_ip))
    code, text = c.reply()
    assert code == 220, text
    assert c.cmd("EHLO " + helo)[0] == 250
    return c


@pytest.fixture
def relay(ravelin_factory, tmp_path, cmdbackend, dns):
    return start(ravelin_factory, tmp_path, cmdbackend, dns)


def test_relay_foreign_domain_refused_logged_counted(relay):
    c = session(relay, UNTRUSTED)
    assert c.cmd("MAIL FROM:<a@sender.example>")[0] == 250
    code, text = c.cmd("RCPT TO:<victim@other.example>")
    assert (code, text) == (554, "554 5.7.1 <victim@other.example>: Relay access denied")
    code, text = c.cmd("RCPT TO:<u@example.org>")
    assert code == 250, text
    c.cmd("QUIT")
    assert rcpts_seen(relay.backend) == ["<u@example.org>"]
    assert relay.wait_log("reject: RCPT from unknown[%s]: 554 5.7.1 <victim@other.example>: "
                          "Relay access denied; from=<a@sender.example> to=<victim@other.example>"
                          % UNTRUSTED)
    assert lib.wait_stat(relay.stats_sock, "relay_denied_total", 1) == 1


def test_relay_counter_counts_every_refusal(relay):
    c = session(relay, UNTRUSTED)
    assert c.cmd("MAIL FROM:<a@sender.example>")[0] == 250
    for i in range(3):
        assert c.cmd("RCPT TO:<v%d@other.example>" % i)[0] == 554
    c.cmd("QUIT")
    assert lib.wait_stat(relay.stats_sock, "relay_denied_total", 3) == 3
    assert rcpts_seen(relay.backend) == []


# Open-relay tricks from an untrusted client: none may be accepted, none may
# reach the backend in any form.
TRICKS = [
    "user%other.example@example.org",                 # percent hack
    "user%other.example%example.org@example.org",
    "other.example!user@example.org",                 # bang path
    "other.example!user%example.org@example.org",
    '"user@other.example"@example.org',               # quoted local parts
    '"user%other.example"@example.org',
    '"other.example!user"@example.org',
    '"user\\@other.example"@example.org',
    '"user@other.example"@other.example',
    "@example.org:user@other.example",                # source routes
    "@example.org,@example.org:user@other.example",
    "@other.example:user@example.org",
    "user@[192.0.2.1]",                               # address literals
    "user@[127.0.0.1]",
    "user@[IPv6:2001:db8::1]",
    "postmaster@[192.0.2.1]",
    "user@example.org.",                              # trailing dots
    "user@other.example.",
    "user@example.org..",
    "user@other.example@example.org",                 # double @
    "user@example.org@other.example",
    "user@@example.org",
    "@example.org",
    "user@",
    "user@example.org.other.example",                 # suffix / prefix games
    "user@other.example.org",
    "user@notexample.org",
    "user@example.org-other.example",
    "user@example.orgx",
    "user@sub.example.org.other.example",
    "user@other.example%example.org",
    "user@other.example!example.org",
    "user@ex\u0430mple.org",                          # Cyrillic a lookalike
    "user@\uff45xample.org",                          # fullwidth e
    "user\uff20other.example@example.org",            # fullwidth @ in the local part
    "user\ufe6bother.example@example.org",            # small commercial at
    "user\uff05other.example@example.org",            # fullwidth percent
    "other.example\uff01user@example.org",            # fullwidth bang
    "xn--user@other.example",
    "user@xn--exmple-cua.org",
]


@pytest.mark.parametrize("rcpt", TRICKS)
def test_relay_trick_is_refused_and_never_forwarded(relay, rcpt):
    c = session(relay, UNTRUSTED)
    assert c.cmd("MAIL FROM:<a@sender.example> SMTPUTF8")[0] == 250
    code, text = c.cmd("RCPT TO:<%s>" % rcpt)
    assert code >= 500, (rcpt, code, text)
    # A well-formed local recipient still works in the same transaction.
    assert c.cmd("RCPT TO:<u@example.org>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send("From: a@sender.example\r\nSubject: t\r\n\r\nbody\r\n.\r\n")
    assert c.reply()[0] == 250
    c.cmd("QUIT")
    seen = rcpts_seen(relay.backend)
    assert seen == ["<u@example.org>"], (rcpt, seen)
    assert relay.backend.messages()[0]["rcpts"] == ["TO:<u@example.org>"]


# Command-level variants: white space, brackets, extra arguments.
LINE_TRICKS = [
    "RCPT TO: <victim@other.example>",
    "RCPT TO:<victim@other.example >",
    "RCPT TO:< victim@other.example>",
    "RCPT TO:<victim@other.example\t>",
    "RCPT TO:\t<victim@other.example>",
    "RCPT  TO:<victim@other.example>",
    "RCPT TO:victim@other.example",
    "RCPT TO:<<victim@other.example>>",
    "RCPT TO:<u@example.org> <victim@other.example>",
    "RCPT TO:<u@example.org>,<victim@other.example>",
    "RCPT TO:<u@example.org,victim@other.example>",
    "RCPT TO:<u@example.org;victim@other.example>",
    "RCPT TO:<victim@other.example> NOTIFY=NEVER",
    "RCPT TO:<victim@other.example> ORCPT=rfc822;u@example.org",
    "rcpt to:<victim@other.example>",
    "RCPT TO:<victim@OTHER.EXAMPLE>",
    "RCPT TO:<victim@other.example>\rRCPT TO:<u@example.org>",
    "RCPT TO:<u@example.org>\x00<victim@other.example>",
]


@pytest.mark.parametrize("line", LINE_TRICKS)
def test_relay_command_variant_never_forwards_foreign_rcpt(relay, line):
    c = session(relay, UNTRUSTED)
    assert c.cmd("MAIL FROM:<a@sender.example>")[0] == 250
    code, text = c.cmd(line)
    assert code >= 500, (line, code, text)
    assert c.cmd("NOOP")[0] == 250
    c.cmd("QUIT")
    for r in rcpts_seen(relay.backend):
        assert "other.example" not in r.lower(), (line, r)


@pytest.mark.parametrize("rcpt,forwarded", [
    ("USER@EXAMPLE.ORG", "USER@example.org"),
    ("User@Example.Org", "User@example.org"),
    ("u@a.sub.example.org", "u@a.sub.example.org"),
    ("u@A.Sub.Example.ORG", "u@a.sub.example.org"),
    ("u@deep.a.sub.example.org", "u@deep.a.sub.example.org"),
    ("first.last+tag@example.org", "first.last+tag@example.org"),
    ("Postmaster", "postmaster"),
])
def test_local_recipient_variants_are_accepted(relay, rcpt, forwarded):
    c = session(relay, UNTRUSTED)
    assert c.cmd("MAIL FROM:<a@sender.example>")[0] == 250
    code, text = c.cmd("RCPT TO:<%s>" % rcpt)
    assert code == 250, text
    c.cmd("QUIT")
    seen = rcpts_seen(relay.backend)
    assert len(seen) == 1 and seen[0].lower() == "<%s>" % forwarded.lower(), seen


def test_dot_entry_matches_subdomains_only(ravelin_factory, tmp_path, cmdbackend, dns):
    r = start(ravelin_factory, tmp_path, cmdbackend, dns,
              local_domains="example.net .example.com")
    c = session(r, UNTRUSTED)
    assert c.cmd("MAIL FROM:<a@sender.example>")[0] == 250
    verdicts = {}
    for rcpt in ["u@example.net", "u@a.example.com", "u@b.a.example.com", "u@example.com",
                 "u@a.example.net", "u@xexample.com", "u@aexample.net", "u@example.net.com"]:
        verdicts[rcpt] = c.cmd("RCPT TO:<%s>" % rcpt)[0]
    c.cmd("QUIT")
    assert verdicts == {"u@example.net": 250, "u@a.example.com": 250, "u@b.a.example.com": 250,
                        "u@example.com": 554, "u@a.example.net": 554, "u@xexample.com": 554,
                        "u@aexample.net": 554, "u@example.net.com": 554}
    assert sorted(rcpts_seen(cmdbackend)) == sorted(
        ["<u@example.net>", "<u@a.example.com>", "<u@b.a.example.com>"])


def relay_verdict(r, client_ip, rcpt="victim@other.example"):
    c = session(r, client_ip)
    assert c.cmd("MAIL FROM:<a@sender.example>")[0] == 250
    code, text = c.cmd("RCPT TO:<%s>" % rcpt)
    c.cmd("QUIT")
    return code


def test_mynetworks_ipv4_and_ipv6_cidr(relay):
    assert relay_verdict(relay, "198.51.100.7") == 250
    assert relay_verdict(relay, "198.51.100.255") == 250
    assert relay_verdict(relay, "198.51.101.1") == 554
    assert relay_verdict(relay, "192.0.2.7") == 554
    assert relay_verdict(relay, "2001:db8:1::5") == 250
    assert relay_verdict(relay, "2001:db8:1:ffff::1") == 250
    assert relay_verdict(relay, "2001:db8:2::5") == 554
    seen = rcpts_seen(relay.backend)
    assert seen == ["<victim@other.example>"] * 4, seen


def test_ipv4_mapped_client_matches_ipv4_mynetworks(relay):
    assert relay_verdict(relay, "::ffff:198.51.100.9") == 250
    assert relay_verdict(relay, "::ffff:192.0.2.9") == 554
    assert rcpts_seen(relay.backend) == ["<victim@other.example>"]
    # Treated as IPv4 everywhere: the log and XCLIENT show the IPv4 form.
    assert relay.wait_log("[192.0.2.9]: 554 5.7.1 <victim@other.example>: Relay access denied")
    assert "XCLIENT" in " ".join(commands(relay.backend))
    xc = [c for c in commands(relay.backend) if c.upper().startswith("XCLIENT")]
    assert any("ADDR=198.51.100.9" in x for x in xc), xc


def test_trusted_client_relays_and_backend_receives(relay):
    c = session(relay, TRUSTED)
    assert c.message("a@sender.example", ["x@other.example", "u@example.org"],
                     "From: a@sender.example\r\nSubject: t\r\n\r\nhi\r\n")[0] == 250
    c.cmd("QUIT")
    m = relay.backend.messages()
    assert len(m) == 1 and m[0]["rcpts"] == ["TO:<x@other.example>", "TO:<u@example.org>"]
    assert m[0]["xclient"]["ADDR"] == TRUSTED


def test_loopback_client_outside_mynetworks(ravelin_factory, tmp_path, cmdbackend, dns):
    """127.0.0.2 is not trusted when mynetworks lists only 127.0.0.1."""
    r = start(ravelin_factory, tmp_path, cmdbackend, dns, mynetworks="127.0.0.1/32",
              plain_listener=True)
    verdicts = []
    for src in ("127.0.0.2", "127.0.0.1"):
        c = harness.Client(r.plain_port, source=src)
        c.greet()
        assert c.cmd("MAIL FROM:<a@sender.example>")[0] == 250
        verdicts.append(c.cmd("RCPT TO:<victim@other.example>")[0])
        c.cmd("QUIT")
    assert verdicts == [554, 250]
    assert rcpts_seen(cmdbackend) == ["<victim@other.example>"]


def test_lists_from_files(ravelin_factory, tmp_path, cmdbackend, dns):
    lib.write(tmp_path, "domains", "# local domains\nexample.org\n\n.lists.example\n")
    lib.write(tmp_path, "nets", "# trusted\n203.0.113.0/25\n2001:db8:77::/64\n")
    r = start(ravelin_factory, tmp_path, cmdbackend, dns,
              local_domains="@domains", mynetworks="@nets")
    assert relay_verdict(r, UNTRUSTED, "u@example.org") == 250
    assert relay_verdict(r, UNTRUSTED, "u@a.lists.example") == 250
    assert relay_verdict(r, UNTRUSTED, "u@lists.example") == 554
    assert relay_verdict(r, UNTRUSTED, "u@example.net") == 554
    assert relay_verdict(r, "203.0.113.100") == 250
    assert relay_verdict(r, "203.0.113.200") == 554
    assert relay_verdict(r, "2001:db8:77::9") == 250
    assert relay_verdict(r, "2001:db8:78::9") == 554
    assert sorted(rcpts_seen(cmdbackend)) == sorted(
        ["<u@example.org>", "<u@a.lists.example>", "<victim@other.example>",
         "<victim@other.example>"])


def test_refusal_line_matches_fail2ban_filter(relay, tmp_path):
    c = session(relay, UNTRUSTED)
    assert c.cmd("MAIL FROM:<a@sender.example>")[0] == 250
    assert c.cmd("RCPT TO:<victim@other.example>")[0] == 554
    c.cmd("QUIT")
    assert relay.wait_log("Relay access denied")
    if not lib.have_fail2ban():
        pytest.skip("fail2ban-regex not installed")
    path = lib.syslog_copy(relay, tmp_path, "reject: RCPT")
    assert lib.fail2ban_regex(path) == [UNTRUSTED]


def test_client_xclient_grants_nothing(relay):
    """Only ravelin speaks XCLIENT, to its backend: a client's XCLIENT
    naming a mynetworks address must not make it trusted."""
    c = session(relay, UNTRUSTED)
    code, text = c.cmd("XCLIENT ADDR=%s NAME=trusted.example LOGIN=bob" % TRUSTED)
    assert code >= 500, text
    c.cmd("EHLO client.test")
    assert c.cmd("MAIL FROM:<a@sender.example>")[0] == 250
    assert c.cmd("RCPT TO:<victim@other.example>")[0] == 554
    c.cmd("QUIT")
    assert rcpts_seen(relay.backend) == []


def test_mail_auth_parameter_grants_nothing(relay):
    c = session(relay, UNTRUSTED)
    assert c.cmd("MAIL FROM:<a@sender.example> AUTH=bob@example.org")[0] == 250
    assert c.cmd("RCPT TO:<victim@other.example>")[0] == 554
    c.cmd("QUIT")
    assert rcpts_seen(relay.backend) == []
    assert not any("AUTH=" in m for m in commands(relay.backend))


def test_proxy_header_on_plain_listener_is_not_honoured(ravelin_factory, tmp_path, cmdbackend,
                                                        dns):
    r = start(ravelin_factory, tmp_path, cmdbackend, dns, mynetworks="198.51.100.0/24",
              plain_listener=True)
    c = harness.Client(r.plain_port, source="127.0.0.2")
    assert c.reply()[0] == 220
    code, text = c.cmd(harness.proxy_v1(TRUSTED).decode().rstrip("\r\n"))
    assert code >= 500, text
    c.cmd("EHLO client.test")
    assert c.cmd("MAIL FROM:<a@sender.example>")[0] == 250
    assert c.cmd("RCPT TO:<victim@other.example>")[0] == 554
    c.cmd("QUIT")
    assert rcpts_seen(cmdbackend) == []
