"""Core proxy, the message path: byte-exact forwarding, the spool, SMTP
smuggling, bare CR/LF, NUL, long lines. The backend's record is the truth."""

import smtplib
import time

import pytest

import harness

HEAD = b"From: a@sender.example\r\nTo: u@example.org\r\nSubject: t\r\n\r\n"
MSG = HEAD + b"hello\r\n"


def stuff(body):
    """Dot-stuff a CRLF message as a client must."""
    out = []
    for line in body.split(b"\r\n"):
        out.append(b"." + line if line.startswith(b".") else line)
    return b"\r\n".join(out)


def unstuff(wire):
    """What a server makes of dot-stuffed CRLF text."""
    return b"\r\n".join(l[1:] if l.startswith(b".") else l for l in wire.split(b"\r\n"))


def start(ravelin_factory, backend, dns, extra=""):
    return harness.start_proxy(ravelin_factory, backend, dns, extra)


def open_data(c):
    assert c.cmd("MAIL FROM:<a@sender.example>")[0] == 250
    assert c.cmd("RCPT TO:<u@example.org>")[0] == 250
    assert c.cmd("DATA")[0] == 354


BODIES = {
    "dots": HEAD + b".\r\n..\r\n.leading\r\n..two\r\n...three\r\nend.\r\n",
    "eightbit": HEAD + b"\x80\x81\xfe\xff caf\xc3\xa9\r\n\xe2\x82\xac\r\n",
    # 998 octets as received, the stuffed one included.
    "line998": HEAD + b"a" * 998 + b"\r\n" + b"." + b"b" * 996 + b"\r\n",
    "no_separator": b"From: a@sender.example\r\nno colon: here\r\nbody line\r\n\r\nx\r\n",
    "no_separator_body_at_once": b"From: a@sender.example\r\nSubject: s\r\nthis is body\r\n",
    "headers_only": b"From: a@sender.example\r\nSubject: headers only\r\n",
    "separator_only_body": HEAD,
    "folded_headers": b"From: a@sender.example\r\nSubject: a\r\n folded\r\n\tagain\r\n\r\nx\r\n",
    "blank_lines": HEAD + b"\r\n\r\n\r\nx\r\n\r\n",
    "dotted_header": b"From: a@sender.example\r\n.Dotted: yes\r\n..Two: dots\r\nSubject: s\r\n\r\nx\r\n",
    "utf8_header": b"From: a@sender.example\r\nSubject: caf\xc3\xa9 \xe2\x82\xac\r\n\r\nx\r\n",
    "whitespace_lines": b"From: a@sender.example\r\n \r\nSubject: s\r\n\r\n \r\n\t\r\n",
}


def test_bodies_are_forwarded_byte_exact(proxy):
    c = harness.Client(proxy.port)
    c.greet()
    names = sorted(BODIES)
    for name in names:
        open_data(c)
        c.send(stuff(BODIES[name]) + b".\r\n")
        code, text = c.reply()
        assert code == 250, (name, text)
    msgs = proxy.backend.messages()
    assert len(msgs) == len(names)
    for name, m in zip(names, msgs):
        assert m["body"] == BODIES[name], name


def test_body_with_smtplib_dots_and_8bit(proxy):
    body = HEAD + b".\r\n..x\r\n\xff\xfe\r\n" + b"z" * 998 + b"\r\n"
    with smtplib.SMTP("127.0.0.1", proxy.port, timeout=10) as s:
        s.ehlo("client.test")
        s.sendmail("a@sender.example", ["u@example.org"], body, mail_options=["BODY=8BITMIME"])
    assert [m["body"] for m in proxy.backend.messages()] == [body]


def test_large_message_spills_to_disk_byte_exact(tmp_path, dns, backend, ravelin_factory):
    r = start(ravelin_factory, backend, dns, "spool_memory 4k")
    lines = [b"%06d " % i + bytes((i + k) % 94 + 33 for k in range(70)) for i in range(4000)]
    lines[100] = b"." + lines[100]
    body = HEAD + b"\r\n".join(lines) + b"\r\n"
    assert len(body) > 290 * 1024
    c = harness.Client(r.port)
    c.greet()
    open_data(c)
    c.send(stuff(body) + b".\r\n")
    code, text = c.reply()
    assert code == 250, text
    msgs = backend.messages()
    assert len(msgs) == 1 and msgs[0]["body"] == body


def test_message_sent_one_byte_at_a_time(proxy):
    c = harness.Client(proxy.port)
    c.greet()
    open_data(c)
    wire = stuff(BODIES["dots"]) + b".\r\n"
    for i in range(len(wire)):
        c.send(wire[i:i + 1])
    assert c.reply()[0] == 250
    assert [m["body"] for m in proxy.backend.messages()] == [BODIES["dots"]]


# ---- SMTP smuggling ----

SMUGGLED = (b"MAIL FROM:<evil@sender.example>\r\nRCPT TO:<victim@example.org>\r\nDATA\r\n"
            b"From: evil@sender.example\r\nSubject: smuggled\r\n\r\nsmuggled\r\n")

# Fake terminators that a lax server takes for the end of data.
SMUGGLE_BARE = [b"\n.\n", b"\n.\r\n", b"\r\n.\n", b"\r.\r\n", b"\r\n.\r", b"\r.\r", b"\n.\r",
                b"\r\n.\r\r\n", b"\r\n\r.\r\n", b"\n\n.\n\n", b"\r\n.\n\r\n"]
# Look-alikes without a bare CR or LF: no refusal, and still one message.
SMUGGLE_CLEAN = [b"x.\r\n", b"\r\n .\r\n", b"\r\n..\r\n", b"\r\n.x\r\n", b"\r\n\x2e\x2e\x2e\r\n"]


def smuggle_payload(fake):
    return HEAD + b"first part" + fake + SMUGGLED


def test_smuggling_with_bare_newline_reject(proxy):
    c = harness.Client(proxy.port)
    c.greet()
    for fake in SMUGGLE_BARE:
        open_data(c)
        c.send(smuggle_payload(fake) + b".\r\n")
        code, text = c.reply()
        assert text == "550 5.5.2 Bare CR or LF not allowed", fake
        # Everything up to the real terminator was data: the next reply is HELP's.
        assert c.cmd("HELP")[0] == 214, fake
        assert c.cmd("RSET")[0] == 250
    assert c.message("a@sender.example", ["u@example.org"], MSG)[0] == 250
    msgs = proxy.backend.messages()
    assert [m["body"] for m in msgs] == [MSG]
    assert proxy.wait_re(r"reject: DATA from \S+\[127\.0\.0\.1\]: 550 5\.5\.2 Bare CR or LF not allowed; "
                         r"from=<a@sender\.example> to=<u@example\.org> helo=<client\.test>")


def test_smuggling_with_bare_newline_normalize(tmp_path, dns, backend, ravelin_factory):
    r = start(ravelin_factory, backend, dns, "bare_newline normalize")
    c = harness.Client(r.port)
    c.greet()
    variants = SMUGGLE_BARE + SMUGGLE_CLEAN
    for fake in variants:
        open_data(c)
        c.send(smuggle_payload(fake) + b".\r\n")
        code, text = c.reply()
        assert code == 250, (fake, text)
        assert c.cmd("HELP")[0] == 214, fake
    msgs = backend.messages()
    assert len(msgs) == len(variants)
    for fake, m in zip(variants, msgs):
        assert m["mail"] == "FROM:<a@sender.example>" and m["rcpts"] == ["TO:<u@example.org>"], fake
        data = m["body"]
        assert data.startswith(HEAD + b"first part"), fake
        assert data.endswith(b"smuggled\r\n"), fake
        # Forwarded with CRLF only: no bare CR or LF reaches the backend.
        assert b"\r" not in data.replace(b"\r\n", b""), fake
        assert b"\n" not in data.replace(b"\r\n", b""), fake
        assert b"MAIL FROM:<evil@sender.example>" in data, fake


def test_smuggling_clean_lookalikes_pass_in_reject_mode(proxy):
    c = harness.Client(proxy.port)
    c.greet()
    for fake in SMUGGLE_CLEAN:
        open_data(c)
        c.send(smuggle_payload(fake) + b".\r\n")
        assert c.reply()[0] == 250
    msgs = proxy.backend.messages()
    assert len(msgs) == len(SMUGGLE_CLEAN)
    for fake, m in zip(SMUGGLE_CLEAN, msgs):
        assert m["body"] == unstuff(smuggle_payload(fake))


def test_terminator_split_across_writes(proxy):
    c = harness.Client(proxy.port)
    c.greet()
    open_data(c)
    for part in (MSG[:-1], b"\n", b".", b"\r", b"\n"):
        c.send(part)
        time.sleep(0.02)
    assert c.reply()[0] == 250
    assert [m["body"] for m in proxy.backend.messages()] == [MSG]


def test_bare_lf_normalized_to_crlf(tmp_path, dns, backend, ravelin_factory):
    r = start(ravelin_factory, backend, dns, "bare_newline normalize")
    c = harness.Client(r.port)
    c.greet()
    open_data(c)
    c.send(b"From: a@sender.example\nSubject: lf\n\nline1\nline2\rline3\r\n.\r\n")
    assert c.reply()[0] == 250
    assert [m["body"] for m in backend.messages()] == [
        b"From: a@sender.example\r\nSubject: lf\r\n\r\nline1\r\nline2\r\nline3\r\n"]


# ---- NUL, long lines ----

def test_nul_in_data_is_550_and_session_goes_on(proxy):
    c = harness.Client(proxy.port)
    c.greet()
    open_data(c)
    c.send(HEAD + b"nul\x00here\r\n.\r\n")
    code, text = c.reply()
    assert code == 550 and "5.6.0" in text
    assert c.cmd("RSET")[0] == 250
    assert c.message("a@sender.example", ["u@example.org"], MSG)[0] == 250
    assert [m["body"] for m in proxy.backend.messages()] == [MSG]


def test_nul_in_command_is_500(proxy):
    c = harness.Client(proxy.port)
    c.greet()
    code, text = c.cmd("NOOP \x00")
    assert code == 500 and "5.5.2" in text
    code, text = c.cmd("MAIL FROM:<a@sender.example>\x00")
    assert code == 500
    assert c.cmd("NOOP")[0] == 250


def test_message_without_from_refused(proxy):
    c = harness.Client(proxy.port)
    c.greet()
    open_data(c)
    c.send(b".\r\n")
    code, text = c.reply()
    assert code == 550 and "5.7.1" in text
    open_data(c)
    c.send(b"Subject: no from\r\n\r\nx\r\n.\r\n")
    assert c.reply()[0] == 550
    assert proxy.backend.messages() == []


def test_line_over_998_refused(proxy):
    c = harness.Client(proxy.port)
    c.greet()
    open_data(c)
    c.send(HEAD + b"a" * 999 + b"\r\n.\r\n")
    code, text = c.reply()
    assert text == "550 5.6.0 Message line too long"
    # The limit counts the line as received: a stuffed 998-octet line is 999.
    open_data(c)
    c.send(HEAD + b".." + b"b" * 997 + b"\r\n.\r\n")
    assert c.reply()[0] == 550
    assert c.cmd("RSET")[0] == 250
    assert c.message("a@sender.example", ["u@example.org"], MSG)[0] == 250
    assert [m["body"] for m in proxy.backend.messages()] == [MSG]


def test_long_header_line_refused(proxy):
    c = harness.Client(proxy.port)
    c.greet()
    open_data(c)
    c.send(b"Subject: " + b"s" * 1200 + b"\r\n" + HEAD + b"x\r\n.\r\n")
    assert c.reply()[0] == 550
    assert proxy.backend.messages() == []


def test_long_lines_pass_forwards(tmp_path, dns, backend, ravelin_factory):
    r = start(ravelin_factory, backend, dns, "long_lines pass")
    body = HEAD + b"a" * 5000 + b"\r\nshort\r\n"
    c = harness.Client(r.port)
    c.greet()
    open_data(c)
    c.send(body + b".\r\n")
    assert c.reply()[0] == 250
    assert [m["body"] for m in backend.messages()] == [body]
