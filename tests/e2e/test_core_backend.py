"""Core proxy, the backend side: XCLIENT, PROXY v2 to the backend, the
proxy-protocol listener, failover, and every way a backend can refuse,
die or hang. Nothing is 250'd that the backend did not accept."""

import json
import os
import re
import socket
import struct
import time

import harness

HEAD = b"From: a@sender.example\r\nTo: u@example.org\r\nSubject: t\r\n\r\n"
MSG = HEAD + b"hello\r\n"
SIG_V2 = b"\r\n\r\n\x00\r\nQUIT\n"


def config(port, dns, backends, extra="", listen=None, flags=""):
    return """hostname mx.test.example
log stderr
workers 2
listen %s inbound %s
%s
local_domains example.org
mynetworks 10.255.255.0/24
dns_resolver 127.0.0.1:%d
dns_timeout 2s
%s
""" % (listen or "127.0.0.1:%d" % port, flags,
       "\n".join("backend 127.0.0.1:%d %s" % (p, m) for p, m in backends), dns.port, extra)


def proxy_v2(src, dst, sport=40000, dport=25, command=1):
    if ":" in src:
        fam, body = 0x21, (socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
                           + struct.pack("!HH", sport, dport))
    else:
        fam, body = 0x11, (socket.inet_pton(socket.AF_INET, src) + socket.inet_pton(socket.AF_INET, dst)
                           + struct.pack("!HH", sport, dport))
    return SIG_V2 + bytes([0x20 | command, fam]) + struct.pack("!H", len(body)) + body


def dead_port():
    """A loopback port nobody listens on."""
    return harness.free_port()


# ---- what the backend learns about the client ----

def test_xclient_attributes(proxy):
    c = harness.Client(proxy.port)
    c.greet("xc.client.test")
    cport = c.sock.getsockname()[1]
    assert c.message("a@sender.example", ["u@example.org"], MSG)[0] == 250
    m = proxy.backend.messages()[0]
    x = m["xclient"]
    assert x["ADDR"] == "127.0.0.1"
    assert x["PORT"] == str(cport)
    assert x["HELO"] == "xc.client.test"
    # The PTR name ravelin found (its log says which), or [UNAVAILABLE].
    name = proxy.wait_re(r": connect from (\S+)\[127\.0\.0\.1\]").group(1)
    assert x["NAME"] == ("[UNAVAILABLE]" if name == "unknown" else name)
    assert x["PROTO"] == "ESMTP"
    # EHLO again after XCLIENT, with our own name.
    assert m["helo"] == "mx.test.example"


def test_xclient_ipv6_client(tmp_path, dns, backend, ravelin_factory):
    port = harness.free_port()
    r = ravelin_factory(config(port, dns, [(backend.port, "xclient")], listen="[::1]:%d" % port),
                        None, wait=False)
    harness.wait_port(port, host="::1", proc=r.proc)
    c = harness.Client(port, host="::1")
    c.greet()
    assert c.message("a@sender.example", ["u@example.org"], MSG)[0] == 250
    m = backend.messages()[0]
    assert m["xclient"]["ADDR"] == "IPV6:::1"
    assert m["body"] == MSG
    assert r.wait_re(r"connect from \S+\[::1\] listener=inbound")


def test_backend_proxy_mode_sends_proxy_v2(tmp_path, dns, ravelin_factory):
    b = harness.Backend(str(tmp_path), "--proxy")
    try:
        port = harness.free_port()
        r = ravelin_factory(config(port, dns, [(b.port, "proxy")]), port)
        c = harness.Client(r.port)
        c.greet()
        cport = c.sock.getsockname()[1]
        assert c.message("a@sender.example", ["u@example.org"], MSG)[0] == 250
        m = b.messages()[0]
        assert m["proxy"]["src"] == "127.0.0.1" and m["proxy"]["sport"] == cport
        assert m["proxy"]["dport"] == r.port
        assert m["xclient"] == {}
        assert m["body"] == MSG
    finally:
        b.stop()


# ---- proxy-protocol listener ----

def pp_proxy(tmp_path, dns, backend, ravelin_factory, extra=""):
    port = harness.free_port()
    return ravelin_factory(config(port, dns, [(backend.port, "xclient")], extra,
                                  flags="proxy-protocol"), port)


def test_proxy_protocol_listener_presents_addresses(tmp_path, dns, backend, ravelin_factory):
    r = pp_proxy(tmp_path, dns, backend, ravelin_factory)
    cases = [
        (harness.proxy_v1("192.0.2.7"), "192.0.2.7"),
        (harness.proxy_v1("2001:db8::5"), "IPV6:2001:db8::5"),
        (harness.proxy_v1("::ffff:192.0.2.9"), "192.0.2.9"),
        (proxy_v2("192.0.2.8", "192.0.2.1", sport=12345), "192.0.2.8"),
        (proxy_v2("2001:db8::6", "2001:db8::1"), "IPV6:2001:db8::6"),
        (proxy_v2("::ffff:192.0.2.9", "::ffff:192.0.2.1"), "192.0.2.9"),
    ]
    for i, (hdr, _) in enumerate(cases):
        c = harness.Client(r.port, preamble=hdr)
        c.greet()
        code, text = c.message("a@sender.example", ["u@example.org"],
                               HEAD + b"case %d\r\n" % i)
        assert code == 250, (hdr, text)
        c.cmd("QUIT")
    msgs = backend.messages()
    assert len(msgs) == len(cases)
    got = {m["body"]: m["xclient"] for m in msgs}
    for i, (hdr, addr) in enumerate(cases):
        x = got[HEAD + b"case %d\r\n" % i]
        assert x["ADDR"] == addr, hdr
    assert got[HEAD + b"case 3\r\n"]["PORT"] == "12345"
    log = r.log()
    assert re.search(r"connect from \S+\[192\.0\.2\.9\] listener=inbound", log)
    assert "::ffff:" not in log


def test_proxy_protocol_v2_local_uses_real_peer(tmp_path, dns, backend, ravelin_factory):
    r = pp_proxy(tmp_path, dns, backend, ravelin_factory)
    hdr = SIG_V2 + bytes([0x20, 0x00]) + struct.pack("!H", 0)
    c = harness.Client(r.port, preamble=hdr)
    c.greet()
    assert c.message("a@sender.example", ["u@example.org"], MSG)[0] == 250
    assert backend.messages()[0]["xclient"]["ADDR"] == "127.0.0.1"


def test_proxy_protocol_missing_header_closes_without_banner(tmp_path, dns, backend, ravelin_factory):
    r = pp_proxy(tmp_path, dns, backend, ravelin_factory, "client_timeout 1s")
    # A client that speaks SMTP first.
    c = harness.Client(r.port, preamble=b"EHLO x.test\r\n")
    c.sock.settimeout(5)
    assert c.sock.recv(100) == b""
    # A silent one: closed after the timeout, still without a banner.
    c = harness.Client(r.port)
    c.sock.settimeout(5)
    t0 = time.time()
    assert c.sock.recv(100) == b""
    assert time.time() - t0 < 4
    assert backend.messages() == []


def test_proxy_protocol_garbage_header_closes(tmp_path, dns, backend, ravelin_factory):
    r = pp_proxy(tmp_path, dns, backend, ravelin_factory)
    for junk in (b"PROXY TCP4 999.1.1.1 127.0.0.1 1 2\r\n", b"PROXY UDP 1 2 3 4\r\n",
                 b"PROXY TCP4 192.0.2.1\r\n", SIG_V2 + b"\x21\x11\xff\xff" + b"\x00" * 20,
                 b"\x00" * 300):
        c = harness.Client(r.port, preamble=junk)
        c.sock.settimeout(5)
        try:
            data = c.sock.recv(100)
        except ConnectionResetError:
            data = b""
        assert data == b"", junk
    assert r.wait_log("bad PROXY header")


# ---- failover and unreachable ----

def test_failover_to_second_backend(tmp_path, dns, backend, ravelin_factory):
    port = harness.free_port()
    r = ravelin_factory(config(port, dns, [(dead_port(), "xclient"), (backend.port, "xclient")]), port)
    c = harness.Client(r.port)
    c.greet()
    assert c.message("a@sender.example", ["u@example.org"], MSG)[0] == 250
    assert [m["body"] for m in backend.messages()] == [MSG]


def test_no_backend_reachable_is_421(tmp_path, dns, ravelin_factory):
    port = harness.free_port()
    r = ravelin_factory(config(port, dns, [(dead_port(), "xclient"), (dead_port(), "none")]), port)
    c = harness.Client(r.port)
    c.greet()
    code, text = c.cmd("MAIL FROM:<a@sender.example>")
    assert code == 421 and "4.3.0" in text
    assert c.closed()


def test_backend_silent_at_greeting_is_421(tmp_path, dns, ravelin_factory):
    mute = socket.socket()
    mute.bind(("127.0.0.1", 0))
    mute.listen(5)
    try:
        port = harness.free_port()
        r = ravelin_factory(config(port, dns, [(mute.getsockname()[1], "xclient")],
                                   "backend_timeout 1s"), port)
        c = harness.Client(r.port)
        c.greet()
        t0 = time.time()
        code, text = c.cmd("MAIL FROM:<a@sender.example>")
        assert code == 421 and "4.3.0" in text
        assert time.time() - t0 < 5
    finally:
        mute.close()


# ---- the backend refuses ----

def test_backend_refusals_of_mail_and_rcpt_are_relayed(tmp_path, dns, ravelin_factory):
    b = harness.Backend(str(tmp_path), "--xclient", "--reply-mail", "451 4.7.1 backend greylisted you",
                        "--reply-rcpt", "550 5.1.1 backend: no such user")
    try:
        r = harness.start_proxy(ravelin_factory, b, dns)
        c = harness.Client(r.port)
        c.greet()
        code, text = c.cmd("MAIL FROM:<reject@sender.example>")
        assert text == "451 4.7.1 backend greylisted you"
        assert c.cmd("MAIL FROM:<a@sender.example>")[0] == 250
        code, text = c.cmd("RCPT TO:<reject@example.org>")
        assert text == "550 5.1.1 backend: no such user backend refuses this recipient"
        assert c.cmd("RCPT TO:<u@example.org>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(MSG + b".\r\n")
        assert c.reply()[0] == 250
        m = b.messages()
        assert len(m) == 1 and m[0]["rcpts"] == ["TO:<u@example.org>"]
        assert r.wait_re(r"reject: RCPT from \S+\[127\.0\.0\.1\]: 550 5\.1\.1 backend: no such user "
                         r"backend refuses this recipient; "
                         r"from=<a@sender\.example> to=<reject@example\.org> helo=<client\.test>")
    finally:
        b.stop()


def test_backend_refusal_at_end_of_data_is_relayed(proxy):
    c = harness.Client(proxy.port)
    c.greet()
    code, text = c.message("a@sender.example", ["u@example.org"], HEAD + b"X-Backend-Fate: 5xx\r\n")
    assert text == "554 5.7.0 chaos: refused"
    code, text = c.message("a@sender.example", ["u@example.org"], HEAD + b"X-Backend-Fate: 4xx\r\n")
    assert text == "451 4.3.0 chaos: try later"
    assert c.message("a@sender.example", ["u@example.org"], MSG)[0] == 250
    assert [m["body"] for m in proxy.backend.messages()] == [MSG]


def test_backend_dies_during_data_is_451_then_recovers(proxy):
    c = harness.Client(proxy.port)
    c.greet()
    code, text = c.message("a@sender.example", ["u@example.org"], HEAD + b"X-Backend-Fate: drop\r\n")
    assert code == 451 and "4.4.2" in text
    # The session goes on with a new backend connection.
    code, text = c.message("a@sender.example", ["u@example.org"], MSG)
    assert code == 250, text
    assert [m["body"] for m in proxy.backend.messages()] == [MSG]
    assert proxy.wait_log("lost the connection while sending the message")


def test_backend_hangs_at_end_of_data_is_451(tmp_path, dns, backend, ravelin_factory):
    r = harness.start_proxy(ravelin_factory, backend, dns, "backend_timeout 1s")
    c = harness.Client(r.port)
    c.greet()
    t0 = time.time()
    code, text = c.message("a@sender.example", ["u@example.org"], HEAD + b"X-Backend-Fate: hang\r\n")
    assert code == 451 and "4.4.2" in text
    assert 0.8 < time.time() - t0 < 5
    assert backend.messages() == []
    assert c.message("a@sender.example", ["u@example.org"], MSG)[0] == 250
    assert [m["body"] for m in backend.messages()] == [MSG]


def test_backend_restarted_between_messages(tmp_path, dns, ravelin_factory):
    b = harness.Backend(str(tmp_path), "--xclient")
    try:
        r = harness.start_proxy(ravelin_factory, b, dns)
        c = harness.Client(r.port)
        c.greet()
        assert c.message("a@sender.example", ["u@example.org"], MSG)[0] == 250
        port = b.port
        b.stop()
        b = harness.Backend(str(tmp_path / ".."), "--xclient", port=port)
        time.sleep(0.2)
        code, text = c.message("a@sender.example", ["u@example.org"], HEAD + b"second\r\n")
        assert code == 250, text
        assert [m["body"] for m in b.messages()] == [HEAD + b"second\r\n"]
    finally:
        b.stop()


def test_xclient_helo_is_xtext_encoded(proxy):
    c = harness.Client(proxy.port)
    c.greet("odd+name=x")
    assert c.message("a@sender.example", ["u@example.org"], MSG)[0] == 250
    assert proxy.backend.messages()[0]["xclient"]["HELO"] == "odd+2Bname+3Dx"


def test_client_abandons_mid_data(proxy):
    c = harness.Client(proxy.port)
    c.greet()
    assert c.cmd("MAIL FROM:<a@sender.example>")[0] == 250
    assert c.cmd("RCPT TO:<u@example.org>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send(HEAD + b"partial")
    c.close()
    assert proxy.wait_re(r"lost connection after DATA from \S+\[127\.0\.0\.1\]")
    assert proxy.wait_log("disconnect from")
    c = harness.Client(proxy.port)
    c.greet()
    assert c.message("a@sender.example", ["u@example.org"], MSG)[0] == 250
    assert [m["body"] for m in proxy.backend.messages()] == [MSG]


def test_backend_refuses_data_command_then_next_message_goes_through(proxy):
    """A backend that refuses DATA still holds the envelope: ravelin must end
    it (RSET) before the next MAIL, or the backend answers 503 nested MAIL."""
    c = harness.Client(proxy.port)
    c.greet()
    code, text = c.message("refuse-data@sender.example", ["u@example.org"], MSG)
    assert text == "451 4.3.0 chaos: DATA refused"
    code, text = c.message("a@sender.example", ["u@example.org"], MSG)
    assert code == 250, text
    # Pipelined, right after the refusal (ravelin answers DATA 354 itself;
    # the backend's refusal of DATA is the message's final reply).
    c.send(b"MAIL FROM:<refuse-data@sender.example>\r\nRCPT TO:<u@example.org>\r\nDATA\r\n")
    assert [r[0] for r in c.replies(3)] == [250, 250, 354]
    c.send(MSG + b".\r\nMAIL FROM:<b@sender.example>\r\nRCPT TO:<v@example.org>\r\nDATA\r\n")
    assert [r[0] for r in c.replies(4)] == [451, 250, 250, 354]
    c.send(MSG + b".\r\n")
    assert c.reply()[0] == 250
    assert proxy.wait_re(r"tempfail: END-OF-MESSAGE from \S+\[127\.0\.0\.1\]: 451 4\.3\.0 chaos: DATA "
                         r"refused; from=<refuse-data@sender\.example> to=<u@example\.org> "
                         r"helo=<client\.test>")
    m = proxy.backend.messages()
    assert [x["mail"] for x in m] == ["FROM:<a@sender.example>", "FROM:<b@sender.example>"]


# ---- the handshake: XCLIENT right after the greeting once it is known ----

def cmdlog_backend(tmp_path, *extra):
    """The recording backend, logging each command line with its connection."""
    path = os.path.join(str(tmp_path), "backend-commands.jsonl")
    open(path, "w").close()
    b = harness.Backend(str(tmp_path), "--xclient", "--cmdlog", path, *extra)
    b.cmdlog = path
    return b


def mail_conns(b):
    """Command lines of each backend connection that carried a MAIL, in order."""
    conns = {}
    with open(b.cmdlog) as f:
        for line in f:
            r = json.loads(line)
            conns.setdefault(r["conn"], []).append(r["line"])
    return [conns[k] for k in sorted(conns) if any(l.startswith("MAIL") for l in conns[k])]


def one_worker(port, dns, b):
    # One worker: the hint is per worker, and every connection must meet it.
    return config(port, dns, [(b.port, "xclient")]).replace("workers 2", "workers 1")


def deliver(r, n, helo="client.test"):
    c = harness.Client(r.port)
    c.greet(helo)
    assert c.message("a@sender.example", ["u@example.org"], MSG)[0] == 250
    c.cmd("QUIT")


def test_xclient_right_after_greeting_once_the_backend_is_known(tmp_path, dns, ravelin_factory):
    b = cmdlog_backend(tmp_path)
    try:
        port = harness.free_port()
        r = ravelin_factory(one_worker(port, dns, b), port)
        for i in range(3):
            deliver(r, i, helo="c%d.client.test" % i)
        conns = mail_conns(b)
        assert len(conns) == 3, conns
        verbs = [[l.split()[0].upper() for l in c[:3]] for c in conns]
        # First: learn what it offers. Then: one round trip less.
        assert verbs[0] == ["EHLO", "XCLIENT", "EHLO"], conns[0]
        assert verbs[1] == ["XCLIENT", "EHLO", "MAIL"], conns[1]
        assert verbs[2] == ["XCLIENT", "EHLO", "MAIL"], conns[2]
        # Each connection still tells the backend its own client.
        helos = [m["xclient"]["HELO"] for m in b.messages()]
        assert helos == ["c0.client.test", "c1.client.test", "c2.client.test"]
        assert all(m["xclient"]["ADDR"] == "127.0.0.1" for m in b.messages())
    finally:
        b.stop()


def test_xclient_refused_before_ehlo_falls_back_for_good(tmp_path, dns, ravelin_factory):
    b = cmdlog_backend(tmp_path, "--xclient-after-ehlo")
    try:
        port = harness.free_port()
        r = ravelin_factory(one_worker(port, dns, b), port)
        for i in range(3):
            deliver(r, i)
        conns = mail_conns(b)
        verbs = [[l.split()[0].upper() for l in c[:4]] for c in conns]
        assert verbs[0][:3] == ["EHLO", "XCLIENT", "EHLO"], conns[0]
        # Tried once, refused: EHLO, XCLIENT, EHLO again on the same connection.
        assert verbs[1] == ["XCLIENT", "EHLO", "XCLIENT", "EHLO"], conns[1]
        assert verbs[2][:3] == ["EHLO", "XCLIENT", "EHLO"], conns[2]
        assert len(b.messages()) == 3
        assert all(m["xclient"]["ADDR"] == "127.0.0.1" for m in b.messages())
        assert r.wait_re(r"XCLIENT before EHLO answered 503; EHLO first from now on")
        assert r.log().count("EHLO first from now on") == 1
    finally:
        b.stop()
