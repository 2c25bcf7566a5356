"""TLS on ravelin's listeners and towards the backend (DESIGN.md sections
4, 6, 9; RFC 3207): STARTTLS and implicit-TLS listeners, protocol and
cipher settings, certificate reload on SIGHUP, STARTTLS command
injection, require-tls, and STARTTLS to the backend.

Certificates are made by the test with the openssl CLI; clients are
Python's ssl/smtplib, `openssl s_client` and swaks.
"""

import os
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import time

import pytest

import harness
import test_access_lib as lib

BODY = "From: a@sender.example\r\nTo: u@example.org\r\nSubject: tls\r\n\r\nhello\r\n"


@pytest.fixture
def certs(tmp_path):
    return lib.make_cert(tmp_path)


def start(factory, tmp_path, backend, dns, certs, listens, extra="", backend_flags="xclient"):
    """listens: {"name": "PROFILE FLAGS"}; returns ravelin with .ports[name]."""
    ports = {name: harness.free_port() for name in listens}
    crt, key = certs
    conf = lib.config(["127.0.0.1:%d %s" % (ports[n], spec) for n, spec in listens.items()],
                      backend.port, dns.port, backend_flags=backend_flags,
                      extra="tls_certificate %s\ntls_key %s\n%s" % (crt, key, extra))
    first = next(iter(ports.values()))
    r = factory(conf, first, extra_ports=tuple(ports.values()))
    r.ports = ports
    r.backend = backend
    return r


@pytest.fixture
def tlsproxy(ravelin_factory, tmp_path, backend, dns, certs):
    return start(ravelin_factory, tmp_path, backend, dns, certs,
                 {"starttls": "inbound starttls", "implicit": "inbound tls",
                  "plain": "inbound"})


def ehlo_keywords(text):
    return [l[4:].split()[0].upper() for l in text.splitlines()[1:]]


def test_starttls_listener_announces_starttls_once(tlsproxy):
    c = lib.TLSClient(tlsproxy.ports["starttls"])
    c.reply()
    code, text = c.cmd("EHLO client.test")
    assert "STARTTLS" in ehlo_keywords(text)
    c.starttls()
    assert c.sock.version() in ("TLSv1.2", "TLSv1.3")
    code, text = c.cmd("EHLO client.test")
    assert code == 250 and "STARTTLS" not in ehlo_keywords(text)
    assert c.cmd("STARTTLS")[0] == 503
    c.cmd("QUIT")


def test_plain_listener_offers_no_starttls(tlsproxy):
    c = harness.Client(tlsproxy.ports["plain"])
    text = c.greet()
    assert "STARTTLS" not in ehlo_keywords(text)
    assert c.cmd("STARTTLS")[0] == 502
    c.cmd("QUIT")


def test_starttls_message_reaches_backend_smtplib(tlsproxy):
    with smtplib.SMTP("127.0.0.1", tlsproxy.ports["starttls"], timeout=10) as s:
        s.ehlo("client.test")
        s.starttls(context=lib.client_ctx())
        s.ehlo("client.test")
        s.sendmail("a@sender.example", ["u@example.org"], BODY)
    m = tlsproxy.backend.messages()
    assert len(m) == 1 and m[0]["rcpts"] == ["TO:<u@example.org>"]
    assert b"hello" in m[0]["data"]


def test_openssl_s_client_starttls(tlsproxy):
    rc, out = lib.s_client(tlsproxy.ports["starttls"],
                           send=b"EHLO client.test\r\nNOOP\r\nQUIT\r\n")
    assert "Protocol  : TLSv1.3" in out or "New, TLSv1.3" in out, out
    assert "250-mx.test.example" in out and "250 2.0.0 Ok" in out and "221 2.0.0" in out, out


def test_implicit_tls_openssl_s_client(tlsproxy):
    rc, out = lib.s_client(tlsproxy.ports["implicit"], starttls=False,
                           send=b"EHLO client.test\r\nQUIT\r\n")
    assert "220 mx.test.example ESMTP" in out, out
    assert "250-mx.test.example" in out and "221 2.0.0" in out, out
    # Already encrypted: no STARTTLS offered inside.
    assert "250-STARTTLS" not in out


def test_implicit_tls_smtplib_message(tlsproxy):
    with smtplib.SMTP_SSL("127.0.0.1", tlsproxy.ports["implicit"], timeout=10,
                          context=lib.client_ctx()) as s:
        s.ehlo("client.test")
        s.sendmail("a@sender.example", ["u@example.org"], BODY)
    assert len(tlsproxy.backend.messages()) == 1


def test_implicit_tls_port_sends_no_plaintext_banner(tlsproxy):
    s = socket.create_connection(("127.0.0.1", tlsproxy.ports["implicit"]), timeout=2)
    s.settimeout(0.7)
    try:
        data = s.recv(100)
    except socket.timeout:
        data = b""
    assert not data.startswith(b"220"), data
    s.close()


@pytest.mark.skipif(not lib.swaks_tls(), reason="swaks without Net::SSLeay (libnet-ssleay-perl)")
def test_swaks_starttls_and_tls_on_connect(tlsproxy):
    for args in (["--tls", "-p", str(tlsproxy.ports["starttls"])],
                 ["--tls-on-connect", "-p", str(tlsproxy.ports["implicit"])]):
        r = subprocess.run(["swaks", "-s", "127.0.0.1", "--ehlo", "client.test",
                            "--from", "a@sender.example", "--to", "u@example.org",
                            "--header", "Subject: swaks", "--timeout", "10"] + args,
                           capture_output=True, timeout=30)
        out = r.stdout.decode()
        assert r.returncode == 0, out
        assert "TLS started" in out or "TLS started w/ cipher" in out, out
    assert len(tlsproxy.backend.messages()) == 2


def handshake(port, ctx, implicit=True):
    """Version and cipher of a handshake, or the ssl error text."""
    try:
        if implicit:
            c = lib.TLSClient(port, implicit=True, ctx=ctx)
        else:
            c = lib.TLSClient(port)
            c.reply()
            c.cmd("EHLO client.test")
            c.starttls(ctx)
        v, ci = c.sock.version(), c.sock.cipher()[0]
        c.close()
        return v, ci
    except ssl.SSLError as e:
        return "error", str(e)


def old_ctx(maxv):
    ctx = lib.client_ctx(maxv=maxv, ciphers="DEFAULT:@SECLEVEL=0")
    ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    return ctx


def test_default_minimum_is_tls12(tlsproxy):
    import warnings
    warnings.simplefilter("ignore", DeprecationWarning)
    for implicit, port in ((True, tlsproxy.ports["implicit"]), (False, tlsproxy.ports["starttls"])):
        v, why = handshake(port, old_ctx(ssl.TLSVersion.TLSv1_1), implicit)
        # The server's alert, not the client's refusal: ravelin said no.
        assert v == "error" and "PROTOCOL_VERSION" in why.upper(), why
        v, why = handshake(port, old_ctx(ssl.TLSVersion.TLSv1), implicit)
        assert v == "error" and "PROTOCOL_VERSION" in why.upper(), why
        assert handshake(port, lib.client_ctx(maxv=ssl.TLSVersion.TLSv1_2), implicit)[0] == "TLSv1.2"
        assert handshake(port, lib.client_ctx(), implicit)[0] == "TLSv1.3"


def test_min_protocol_tls13_refuses_tls12(ravelin_factory, tmp_path, backend, dns, certs):
    r = start(ravelin_factory, tmp_path, backend, dns, certs,
              {"implicit": "inbound tls", "starttls": "inbound starttls"},
              extra="tls_min_protocol TLSv1.3")
    for implicit, port in ((True, r.ports["implicit"]), (False, r.ports["starttls"])):
        v, why = handshake(port, lib.client_ctx(maxv=ssl.TLSVersion.TLSv1_2), implicit)
        assert v == "error" and "PROTOCOL_VERSION" in why.upper(), why
        assert handshake(port, lib.client_ctx(), implicit)[0] == "TLSv1.3"
    rc, out = lib.s_client(r.ports["starttls"], extra=["-tls1_2"])
    assert "alert protocol version" in out, out
    assert lib.wait_log_re(r, "TLS handshake failed with %s: unsupported protocol"
                           % lib.CLIENT_127)


def test_tls12_cipher_list_is_enforced(ravelin_factory, tmp_path, backend, dns, certs):
    r = start(ravelin_factory, tmp_path, backend, dns, certs, {"implicit": "inbound tls"},
              extra="tls_ciphers ECDHE-ECDSA-AES128-GCM-SHA256")
    port = r.ports["implicit"]
    tls12 = ssl.TLSVersion.TLSv1_2
    assert handshake(port, lib.client_ctx(maxv=tls12)) == ("TLSv1.2", "ECDHE-ECDSA-AES128-GCM-SHA256")
    v, why = handshake(port, lib.client_ctx(maxv=tls12, ciphers="ECDHE-ECDSA-AES256-GCM-SHA384"))
    assert v == "error", why
    assert lib.wait_log_re(r, "TLS established with %s: TLSv1.2 "
                           "ECDHE-ECDSA-AES128-GCM-SHA256 128/128" % lib.CLIENT_127)


def test_tls13_ciphersuites_are_enforced(ravelin_factory, tmp_path, backend, dns, certs):
    r = start(ravelin_factory, tmp_path, backend, dns, certs, {"starttls": "inbound starttls"},
              extra="tls_ciphersuites TLS_CHACHA20_POLY1305_SHA256")
    port = r.ports["starttls"]
    assert handshake(port, lib.client_ctx(), implicit=False) == \
        ("TLSv1.3", "TLS_CHACHA20_POLY1305_SHA256")
    rc, out = lib.s_client(port, extra=["-ciphersuites", "TLS_AES_256_GCM_SHA384"])
    assert "Cipher is TLS_AES_256_GCM_SHA384" not in out and "handshake failure" in out, out
    # The protocol and cipher are in the log line of the session.
    assert lib.wait_log_re(r, "TLS established with %s: TLSv1.3 "
                           "TLS_CHACHA20_POLY1305_SHA256 256/256" % lib.CLIENT_127)
    assert lib.wait_log_re(r, "TLS handshake failed with %s: no shared cipher" % lib.CLIENT_127)


def test_certificate_reloaded_on_sighup(ravelin_factory, tmp_path, backend, dns):
    live_crt = os.path.join(str(tmp_path), "live.crt")
    live_key = os.path.join(str(tmp_path), "live.key")
    old = lib.make_cert(tmp_path, "old", cn="old.test.example")
    new = lib.make_cert(tmp_path, "new", cn="new.test.example", kind="rsa")
    shutil.copy(old[0], live_crt)
    shutil.copy(old[1], live_key)
    r = start(ravelin_factory, tmp_path, backend, dns, (live_crt, live_key),
              {"implicit": "inbound tls", "starttls": "inbound starttls"})
    assert lib.peer_cn(r.ports["implicit"], implicit=True) == "old.test.example"
    # A session opened before the reload keeps working over the old context.
    before = lib.TLSClient(r.ports["implicit"], implicit=True)
    assert before.reply()[0] == 220
    shutil.copy(new[0], live_crt)
    shutil.copy(new[1], live_key)
    r.signal(signal.SIGHUP)
    assert r.wait_log(": reloaded ")
    assert lib.peer_cn(r.ports["implicit"], implicit=True) == "new.test.example"
    assert lib.peer_cn(r.ports["starttls"]) == "new.test.example"
    assert before.cmd("EHLO client.test")[0] == 250
    before.cmd("QUIT")


def test_broken_certificate_on_sighup_keeps_old_one(ravelin_factory, tmp_path, backend, dns):
    live_crt = os.path.join(str(tmp_path), "live.crt")
    live_key = os.path.join(str(tmp_path), "live.key")
    old = lib.make_cert(tmp_path, "old", cn="old.test.example")
    other = lib.make_cert(tmp_path, "other", cn="other.test.example")
    shutil.copy(old[0], live_crt)
    shutil.copy(old[1], live_key)
    r = start(ravelin_factory, tmp_path, backend, dns, (live_crt, live_key),
              {"implicit": "inbound tls"})
    shutil.copy(other[0], live_crt)       # certificate and key no longer match
    r.signal(signal.SIGHUP)
    assert r.wait_log(": reload failed")
    assert lib.peer_cn(r.ports["implicit"], implicit=True) == "old.test.example"


INJECTIONS = [
    ("RSET", "RSET\r\n"),
    ("HELP", "HELP\r\n"),
    ("MAIL", "MAIL FROM:<evil@attacker.example>\r\n"),
    ("MAIL+RCPT", "MAIL FROM:<evil@attacker.example>\r\nRCPT TO:<u@example.org>\r\n"),
    ("EHLO", "EHLO injected.example\r\n"),
]


@pytest.mark.parametrize("name,injected", INJECTIONS, ids=[i[0] for i in INJECTIONS])
def test_starttls_injection_is_never_executed(tlsproxy, name, injected):
    c = lib.TLSClient(tlsproxy.ports["starttls"])
    c.reply()
    c.cmd("EHLO client.test")
    c.send("STARTTLS\r\n" + injected)        # one write: the CVE-2011-0411 pattern
    code, text = c.reply()
    assert code == 220, text
    # No plaintext reply to the injected command.
    assert c.pending(0.4) == b""
    c.sock = lib.client_ctx().wrap_socket(c.sock, server_hostname=lib.HOST)
    # Nor an encrypted one: nothing arrives before we speak.
    assert c.pending(0.4) == b""
    # The session was reset: the injected MAIL/EHLO did not count.
    code, text = c.cmd("MAIL FROM:<a@sender.example>")
    assert code == 503, text
    code, text = c.cmd("EHLO client.test")
    assert code == 250 and text.splitlines()[0] == "250-mx.test.example", text
    code, text = c.cmd("RCPT TO:<u@example.org>")
    assert code == 503, text              # no MAIL transaction survived
    c.cmd("QUIT")
    assert tlsproxy.wait_log("discarding %d bytes sent after STARTTLS" % len(injected))
    assert tlsproxy.backend.messages() == []
    assert "evil@attacker.example" not in tlsproxy.log()[tlsproxy.log().find("discarding"):]


def test_state_forgotten_after_starttls(tlsproxy):
    c = lib.TLSClient(tlsproxy.ports["starttls"])
    c.reply()
    c.cmd("EHLO client.test")
    c.starttls()
    code, text = c.cmd("MAIL FROM:<a@sender.example>")
    assert code == 503 and "5.5.1" in text, text
    c.cmd("EHLO client.test")
    assert c.cmd("MAIL FROM:<a@sender.example>")[0] == 250
    c.cmd("QUIT")


def test_starttls_refused_during_transaction_and_with_argument(tlsproxy):
    c = lib.TLSClient(tlsproxy.ports["starttls"])
    c.reply()
    assert c.cmd("STARTTLS")[0] == 503     # before EHLO
    c.cmd("EHLO client.test")
    assert c.cmd("STARTTLS now")[0] == 501
    assert c.cmd("MAIL FROM:<a@sender.example>")[0] == 250
    assert c.cmd("STARTTLS")[0] == 503
    assert c.cmd("RSET")[0] == 250
    c.starttls()
    c.cmd("QUIT")


def test_require_tls(ravelin_factory, tmp_path, backend, dns, certs):
    users = lib.write(tmp_path, "users", "bob:%s\n" % lib.mkpasswd("pw-bob", "sha-512"))
    r = start(ravelin_factory, tmp_path, backend, dns, certs,
              {"rt": "inbound starttls require-tls"}, extra="auth_users %s" % users)
    c = lib.TLSClient(r.ports["rt"])
    c.reply()
    code, text = c.cmd("EHLO client.test")
    assert "AUTH" not in ehlo_keywords(text)
    code, text = c.cmd("MAIL FROM:<a@sender.example>")
    assert (code, text) == (530, "530 5.7.0 Must issue a STARTTLS command first")
    code, text = c.cmd("AUTH PLAIN " + lib.plain("bob", "pw-bob"))
    assert code == 538 and text.startswith("538 5.7.11 Encryption required"), text
    assert c.cmd("RCPT TO:<u@example.org>")[0] == 503
    c.starttls()
    code, text = c.cmd("EHLO client.test")
    assert "AUTH" in ehlo_keywords(text)
    assert c.message("a@sender.example", ["u@example.org"], BODY)[0] == 250
    c.cmd("QUIT")
    assert len(r.backend.messages()) == 1
    assert lib.wait_log_re(r, r"reject: MAIL from %s: 530 5\.7\.0 Must issue a STARTTLS"
                           % lib.CLIENT_127)


@pytest.fixture
def tlsbackend(tmp_path):
    crt, key = lib.make_cert(tmp_path, "backend", cn="backend.test")
    cmdlog = os.path.join(str(tmp_path), "tls-backend-cmds.jsonl")
    open(cmdlog, "w").close()
    b = harness.Backend(str(tmp_path), "--xclient", "--tls", "%s,%s" % (crt, key),
                        "--cmdlog", cmdlog)
    b.cmdlog = cmdlog
    yield b
    b.stop()


def backend_commands(b):
    import json
    with open(b.cmdlog) as f:
        return [json.loads(l) for l in f]


@pytest.mark.parametrize("flag", ["starttls", "starttls=require"])
def test_backend_starttls(ravelin_factory, tmp_path, tlsbackend, dns, certs, flag):
    r = start(ravelin_factory, tmp_path, tlsbackend, dns, certs, {"plain": "inbound"},
              backend_flags="xclient " + flag)
    c = harness.Client(r.ports["plain"])
    c.greet()
    assert c.message("a@sender.example", ["u@example.org"], BODY)[0] == 250
    c.cmd("QUIT")
    m = tlsbackend.messages()
    assert len(m) == 1 and m[0]["tls"] in ("TLSv1.2", "TLSv1.3"), m
    assert m[0]["xclient"]["ADDR"] == "127.0.0.1"
    cmds = backend_commands(tlsbackend)
    # Everything after STARTTLS -- XCLIENT, the envelope -- went encrypted.
    i = [x["line"] for x in cmds].index("STARTTLS")
    assert all(x["tls"] for x in cmds[i + 1:]), cmds
    assert any(x["line"].startswith("XCLIENT") for x in cmds[i + 1:]), cmds
    assert not any(x["line"].startswith(("MAIL", "XCLIENT")) for x in cmds[:i]), cmds


def test_backend_starttls_required_but_not_offered(ravelin_factory, tmp_path, dns, certs):
    cmdlog = os.path.join(str(tmp_path), "plain-backend-cmds.jsonl")
    open(cmdlog, "w").close()
    b = harness.Backend(str(tmp_path), "--xclient", "--cmdlog", cmdlog)
    try:
        r = start(ravelin_factory, tmp_path, b, dns, certs, {"plain": "inbound"},
                  backend_flags="xclient starttls=require")
        c = harness.Client(r.ports["plain"])
        c.greet()
        code, text = c.cmd("MAIL FROM:<a@sender.example>")
        assert code == 421 and "4.3.0" in text, text
        assert c.closed()
        with open(cmdlog) as f:
            lines = f.read()
        assert "MAIL" not in lines and "XCLIENT" not in lines, lines
        assert b.messages() == []
    finally:
        b.stop()


def test_backend_opportunistic_starttls_falls_back_to_plain(ravelin_factory, tmp_path,
                                                            backend, dns, certs):
    r = start(ravelin_factory, tmp_path, backend, dns, certs, {"plain": "inbound"},
              backend_flags="xclient starttls")
    c = harness.Client(r.ports["plain"])
    c.greet()
    assert c.message("a@sender.example", ["u@example.org"], BODY)[0] == 250
    c.cmd("QUIT")
    m = backend.messages()
    assert len(m) == 1 and not m[0].get("tls")
