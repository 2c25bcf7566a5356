"""ravelin's own Received: trace field (issue 3; RFC 5321 section 4.4,
RFC 3848 / RFC 6531 protocol keywords): XCLIENT cannot tell the backend
that the client used TLS, so ravelin prepends a Received field with the
client's HELO, address, TLS protocol and cipher, as Postfix's
smtpd_tls_received_header does.

The field must sit below Authentication-Results / Received-SPF / add_header
fields and directly above the client's first header field, appear exactly
once, name the cipher the client itself negotiated, never show the login,
and never let a hostile HELO start a header line of its own.
`received_header no` turns it off.
"""

import os
import re
import smtplib
import ssl

import pytest

import harness
import test_access_lib as lib
import test_senderauth_lib as sa
# The milter fixtures (a ravelin -M driven by miltertest).
from test_milter_policy import GOOD, content, envelope, mdns, milter  # noqa: F401

HEAD = b"From: a@sender.example\r\nTo: u@example.org\r\nSubject: trace\r\n"
MSG = HEAD + b"\r\nhello\r\n"
BOB_MSG = b"From: bob@example.org\r\nTo: x@other.example\r\nSubject: trace\r\n\r\nhello\r\n"
PASSWORD = "Bob-s3cret-sha512"


def fields(data):
    """The header fields of a forwarded message, unfolded, as (name, value)."""
    head = data.split(b"\r\n\r\n")[0].decode("utf-8", "replace")
    out = []
    for f in re.split(r"\r\n(?![ \t])", head):
        name, _, value = f.partition(":")
        out.append((name, re.sub(r"\r\n[ \t]", " ", value).strip()))
    return out


def ours(data):
    """Every Received field ravelin wrote (its value says "(ravelin)")."""
    return [v for n, v in fields(data) if n.lower() == "received" and " (ravelin) with " in v]


def only_message(backend):
    msgs = backend.messages()
    assert len(msgs) == 1, msgs
    return msgs[0]


def session_id(r):
    """The id of the session that delivered the last message. (Not the last
    "connect from": the harness's readiness probes connect too, and with
    two workers a probe's line can come after the client's.)"""
    ids = re.findall(r"(\w+): accepted: ", r.log())
    assert ids, r.log()[-2000:]
    return ids[-1]


DATE_RE = r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d [+-]\d{4}$"


@pytest.fixture
def certs(tmp_path):
    return lib.make_cert(tmp_path)


@pytest.fixture
def users(tmp_path):
    return lib.write(tmp_path, "users", "bob:%s\n" % lib.mkpasswd(PASSWORD, "sha-512"))


@pytest.fixture
def tlsproxy(ravelin_factory, tmp_path, backend, dns, certs, users):
    """Listeners: STARTTLS, implicit TLS, plaintext with AUTH allowed, and
    a PROXY-protocol one that can present any client address."""
    ports = {"starttls": harness.free_port(), "implicit": harness.free_port(),
             "plain": harness.free_port(), "proxy": harness.free_port()}
    crt, key = certs
    conf = lib.config(
        ["127.0.0.1:%d inbound starttls" % ports["starttls"],
         "127.0.0.1:%d inbound tls" % ports["implicit"],
         "127.0.0.1:%d inbound auth-plaintext" % ports["plain"],
         "127.0.0.1:%d inbound proxy-protocol" % ports["proxy"]],
        backend.port, dns.port,
        extra="tls_certificate %s\ntls_key %s\nauth_users %s\n" % (crt, key, users))
    r = ravelin_factory(conf, ports["starttls"], extra_ports=tuple(ports.values()))
    r.ports = ports
    r.backend = backend
    return r


def test_plaintext_session_is_esmtp_without_using(proxy):
    c = harness.Client(proxy.port)
    c.greet("client.test")
    assert c.message("a@sender.example", ["u@example.org"], MSG)[0] == 250
    c.cmd("QUIT")
    m = only_message(proxy.backend)
    rcv = ours(m["data"])
    assert len(rcv) == 1, m["data"]
    v = rcv[0]
    assert v.startswith("from client.test (")
    assert "[127.0.0.1])" in v
    assert "using" not in v
    assert " by mx.test.example (ravelin) with ESMTP id %s " % session_id(proxy) in v
    assert " for <u@example.org>; " in v
    assert re.search(DATE_RE, v), v
    # Every line of it folds with a TAB, and each stays short.
    raw = m["data"].split(b"\r\n\r\n")[0]
    assert b"\r\n\tby mx.test.example (ravelin) with ESMTP" in raw
    assert all(len(line) < 998 for line in raw.split(b"\r\n"))


def test_helo_session_is_smtp(proxy):
    c = harness.Client(proxy.port)
    c.reply()
    assert c.cmd("HELO old.client.test")[0] == 250
    assert c.message("a@sender.example", ["u@example.org"], MSG)[0] == 250
    c.cmd("QUIT")
    v = ours(only_message(proxy.backend)["data"])[0]
    assert v.startswith("from old.client.test (") and " with SMTP id " in v, v


def test_several_recipients_have_no_for(proxy):
    c = harness.Client(proxy.port)
    c.greet()
    assert c.message("a@sender.example", ["u@example.org", "v@example.org"], MSG)[0] == 250
    c.cmd("QUIT")
    v = ours(only_message(proxy.backend)["data"])[0]
    assert " for " not in v and "u@example.org" not in v, v
    assert re.search(r" with ESMTP id \w+; " + DATE_RE, v), v


def test_smtputf8_is_utf8smtp(proxy):
    c = harness.Client(proxy.port)
    c.greet()
    assert c.cmd("MAIL FROM:<jörg@sender.example> SMTPUTF8")[0] == 250
    assert c.cmd("RCPT TO:<ü@example.org>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send(MSG + b".\r\n")
    assert c.reply()[0] == 250
    c.cmd("QUIT")
    v = ours(only_message(proxy.backend)["data"])[0]
    assert " with UTF8SMTP id " in v and " for <ü@example.org>; " in v, v


def test_position_below_added_fields_above_client_fields(tmp_path, dns, backend,
                                                         ravelin_factory):
    """Order: Authentication-Results, Received-SPF, add_header fields, our
    Received, then the client's fields untouched, its own Received first."""
    rules = lib.write(tmp_path, "tag.rules", 'tag: mail sender =~ /./ -> add_header X-Tag "yes"\n')
    r = harness.start_proxy(ravelin_factory, backend, dns, extra="rules %s" % rules)
    theirs = (b"Received: from relay.sender.example (relay.sender.example [192.0.2.9])\r\n"
              b"\tby mail.sender.example with ESMTP id 123; Sun, 1 Nov 2026 00:00:00 +0000\r\n")
    c = harness.Client(r.port)
    c.greet()
    assert c.message("a@sender.example", ["u@example.org"], theirs + MSG)[0] == 250
    c.cmd("QUIT")
    m = only_message(backend)
    names = [n.lower() for n, _ in fields(m["data"])]
    assert names[0] == "authentication-results", names
    i = names.index("x-tag")
    assert names[i + 1] == "received" and " (ravelin) " in fields(m["data"])[i + 1][1]
    assert "received-spf" not in names[i:], names
    assert len(ours(m["data"])) == 1
    # The client's own Received stays, right below ours, byte for byte.
    assert theirs + MSG in m["data"]
    assert harness.strip_added(m["data"]) == b'X-Tag: yes\r\n' + theirs + MSG
    assert harness.our_received(m["data"]).startswith("from client.test (")


def test_received_header_no_adds_none(tmp_path, dns, backend, ravelin_factory):
    r = harness.start_proxy(ravelin_factory, backend, dns, extra="received_header no")
    c = harness.Client(r.port)
    c.greet()
    assert c.message("a@sender.example", ["u@example.org"], MSG)[0] == 250
    c.cmd("QUIT")
    m = only_message(backend)
    assert ours(m["data"]) == []
    assert [n for n, _ in fields(m["data"])][-3:] == ["From", "To", "Subject"]
    assert not any(n.lower() == "received" for n, _ in fields(m["data"]))
    assert m["body"] == MSG


def check_tls(v, sock, proto):
    """v names the version and cipher the client's own socket negotiated."""
    name, version, bits = sock.cipher()
    assert version == sock.version()
    want = "(using %s with cipher %s (%d/" % (version, name, bits)
    assert want in v, (want, v)
    assert re.search(r"\(using \S+ with cipher \S+ \(\d+/\d+ bits\)\) by ", v), v
    assert " (ravelin) with %s id " % proto in v, v


@pytest.mark.parametrize("maxv", [None, ssl.TLSVersion.TLSv1_2], ids=["best", "tls12"])
def test_starttls_session_names_negotiated_cipher(tlsproxy, maxv):
    c = lib.TLSClient(tlsproxy.ports["starttls"])
    c.reply()
    c.cmd("EHLO client.test")
    sock = c.starttls(lib.client_ctx(maxv=maxv))
    c.cmd("EHLO client.test")
    assert c.message("a@sender.example", ["u@example.org"], MSG)[0] == 250
    c.cmd("QUIT")
    v = ours(only_message(tlsproxy.backend)["data"])[0]
    if maxv:
        assert "using TLSv1.2 " in v
    check_tls(v, sock, "ESMTPS")


def test_starttls_with_smtplib(tlsproxy):
    with smtplib.SMTP("127.0.0.1", tlsproxy.ports["starttls"], timeout=10) as s:
        s.ehlo("client.test")
        s.starttls(context=lib.client_ctx())
        s.ehlo("client.test")
        s.sendmail("a@sender.example", ["u@example.org"], MSG)
        sock = s.sock
        check = sock.cipher(), sock.version()
    v = ours(only_message(tlsproxy.backend)["data"])[0]
    assert "(using %s with cipher %s (%d/" % (check[1], check[0][0], check[0][2]) in v, v
    assert " with ESMTPS id " in v


def test_implicit_tls_session_is_esmtps(tlsproxy):
    c = lib.TLSClient(tlsproxy.ports["implicit"], implicit=True)
    c.greet()
    assert c.message("a@sender.example", ["u@example.org"], MSG)[0] == 250
    c.cmd("QUIT")
    check_tls(ours(only_message(tlsproxy.backend)["data"])[0], c.sock, "ESMTPS")


def test_authenticated_over_tls_is_esmtpsa_without_login(tlsproxy):
    c = lib.TLSClient(tlsproxy.ports["starttls"])
    c.reply()
    c.cmd("EHLO client.test")
    c.starttls()
    c.cmd("EHLO client.test")
    assert c.cmd("AUTH PLAIN " + lib.plain("bob", PASSWORD))[0] == 235
    assert c.message("bob@example.org", ["x@other.example"], BOB_MSG)[0] == 250
    c.cmd("QUIT")
    m = only_message(tlsproxy.backend)
    v = ours(m["data"])[0]
    check_tls(v, c.sock, "ESMTPSA")
    assert "bob" not in v and "Authenticated" not in v, v
    assert " for <x@other.example>; " in v


def test_authenticated_plaintext_is_esmtpa(tlsproxy):
    c = harness.Client(tlsproxy.ports["plain"])
    c.greet()
    assert c.cmd("AUTH PLAIN " + lib.plain("bob", PASSWORD))[0] == 235
    assert c.message("bob@example.org", ["x@other.example"], BOB_MSG)[0] == 250
    c.cmd("QUIT")
    v = ours(only_message(tlsproxy.backend)["data"])[0]
    assert " with ESMTPA id " in v and "using" not in v and "bob" not in v, v


def test_proxy_protocol_ipv6_client_is_an_ipv6_literal(tlsproxy):
    c = harness.Client(tlsproxy.ports["proxy"], preamble=harness.proxy_v1("2001:db8::25"))
    c.greet("[IPv6:2001:db8::25]")
    assert c.message("a@sender.example", ["u@example.org"], MSG)[0] == 250
    c.cmd("QUIT")
    v = ours(only_message(tlsproxy.backend)["data"])[0]
    assert v.startswith("from [IPv6:2001:db8::25] (unknown [IPv6:2001:db8::25]) by "), v


@pytest.mark.parametrize("helo,shown", [
    (b"evil(x)\\y;z\"q<a>", b"evil?x??y?z?q<a>"),
    (b"a\x0bb\x0cc\x1bd\x7f", None),
    (b"\xc3\xa9t\xc3\xa9.example", b"??t??.example"),
    (b"x" * 250, b"x" * 250),
], ids=["comment_breakers", "controls", "eight_bit", "long"])
def test_hostile_helo_cannot_inject(proxy, helo, shown):
    c = harness.Client(proxy.port)
    c.reply()
    c.send(b"EHLO " + helo + b"\r\n")
    code, text = c.reply()
    if shown is None:
        # Control bytes never get as far as a header: the command is refused.
        assert code == 500, text
        c.cmd("QUIT")
        return
    assert code == 250, text
    assert c.message("a@sender.example", ["u@example.org"], MSG)[0] == 250
    c.cmd("QUIT")
    data = only_message(proxy.backend)["data"]
    head = data.split(b"\r\n\r\n")[0]
    ours_raw = [l for l in head.split(b"\r\n") if l.startswith(b"Received: from ")]
    assert len(ours_raw) == 1, head
    line = ours_raw[0]
    assert line == b"Received: from " + shown + b" (localhost [127.0.0.1])" or \
        line == b"Received: from " + shown + b" (unknown [127.0.0.1])", line
    # Nothing the client wrote reached a header line of its own.
    assert harness.strip_added(data) == MSG
    assert all(len(l) < 998 for l in head.split(b"\r\n"))


def test_helo_with_bare_cr_cannot_start_a_field(proxy):
    c = harness.Client(proxy.port)
    c.reply()
    c.send(b"EHLO evil\rX-Injected: yes\r\n")
    code, text = c.reply()
    if code == 250:
        assert c.message("a@sender.example", ["u@example.org"], MSG)[0] == 250
        c.cmd("QUIT")
        data = only_message(proxy.backend)["data"]
        assert b"\rX-Injected" not in data and b"\nX-Injected" not in data, data
        assert harness.strip_added(data) == MSG
    else:
        assert code >= 500, text


def test_milter_mode_adds_no_received(milter):
    """In milter mode the MTA writes its own Received field: ravelin only
    inserts Authentication-Results (and Received-SPF)."""
    msg = sa.message(frm="Alice <alice@pass.example>")
    script = envelope(GOOD, "alice@pass.example") + content(msg) + '''
check(mt.eom_check(conn, MT_HDRINSERT, "Authentication-Results"), "A-R inserted")
check(not mt.eom_check(conn, MT_HDRINSERT, "Received"), "no Received inserted")
check(not mt.eom_check(conn, MT_HDRADD, "Received"), "no Received added")
'''
    milter.run(script)
