"""Core proxy, CHUNKING/BDAT (RFC 3030): chunks are read by count, never
unstuffed or searched for a terminator, and the message reaches the
backend with DATA, byte for byte, after the LAST chunk; the client's final
reply is the backend's. Refused chunks are still read (their octets are not
commands), pipelined chunks get their replies in order, and a count that
cannot be read ends the session. The backend's record is the truth."""

import pytest

import harness

HEAD = b"From: a@sender.example\r\nTo: u@example.org\r\nSubject: t\r\n\r\n"
MSG = HEAD + b"hello\r\n"


def envelope(c):
    assert c.cmd("MAIL FROM:<a@sender.example>")[0] == 250
    assert c.cmd("RCPT TO:<u@example.org>")[0] == 250


def bdat(c, data, last=False):
    """One chunk; returns its reply (code, text)."""
    c.send(b"BDAT %d%s\r\n" % (len(data), b" LAST" if last else b"") + data)
    return c.reply()


def test_chunking_announced(proxy):
    c = harness.Client(proxy.port)
    c.greet()
    code, text = c.cmd("EHLO client.example")
    assert code == 250 and "250-CHUNKING" in text.split("\n"), text


@pytest.mark.parametrize("body", [
    MSG,
    # What DATA would have to stuff or could read as an end: data in BDAT.
    HEAD + b".\r\n..\r\n.leading\r\n\r\n.\r\nafter a lone dot\r\n",
    HEAD + b"\x80\xff 8-bit\r\n" + b"x" * 998 + b"\r\n",
])
def test_message_in_chunks_reaches_backend_byte_exact(proxy, backend, body):
    c = harness.Client(proxy.port)
    c.greet()
    envelope(c)
    pieces = [body[:7], body[7:40], body[40:]]
    for p in pieces[:-1]:
        code, text = bdat(c, p)
        assert code == 250 and "%d octets" % len(p) in text, text
    code, text = bdat(c, pieces[-1], last=True)
    assert code == 250, text
    got = backend.messages()[-1]
    assert harness.strip_added(got["data"]) == body
    assert got["rcpts"] == ["<u@example.org>"] or "u@example.org" in str(got["rcpts"])


def test_pipelined_chunks_replies_in_order(proxy, backend):
    c = harness.Client(proxy.port)
    c.greet()
    c.send(b"MAIL FROM:<a@sender.example>\r\nRCPT TO:<u@example.org>\r\n" +
           b"BDAT 20\r\n" + MSG[:20] + b"BDAT %d LAST\r\n" % (len(MSG) - 20) + MSG[20:] +
           b"NOOP\r\n")
    codes = [c.reply()[0] for _ in range(5)]
    assert codes == [250, 250, 250, 250, 250], codes
    assert harness.strip_added(backend.messages()[-1]["data"]) == MSG


def test_empty_last_chunk_ends_the_message(proxy, backend):
    c = harness.Client(proxy.port)
    c.greet()
    envelope(c)
    assert bdat(c, MSG)[0] == 250
    code, text = bdat(c, b"", last=True)
    assert code == 250, text
    assert harness.strip_added(backend.messages()[-1]["data"]) == MSG


def test_last_line_without_crlf_gets_one(proxy, backend):
    c = harness.Client(proxy.port)
    c.greet()
    envelope(c)
    assert bdat(c, HEAD + b"no newline at the end", last=True)[0] == 250
    assert harness.strip_added(backend.messages()[-1]["data"]) == HEAD + b"no newline at the end\r\n"


def test_chunk_without_transaction_is_read_and_refused(proxy, backend):
    c = harness.Client(proxy.port)
    c.greet()
    # The chunk looks like commands; none of them may run.
    evil = b"RCPT TO:<x@other.example>\r\nQUIT\r\n"
    code, text = bdat(c, evil)
    assert code == 503, text
    assert c.cmd("NOOP")[0] == 250
    assert backend.messages() == []


def test_chunk_without_recipient_is_refused(proxy):
    c = harness.Client(proxy.port)
    c.greet()
    assert c.cmd("MAIL FROM:<a@sender.example>")[0] == 250
    assert bdat(c, MSG, last=True)[0] == 503
    assert c.cmd("RCPT TO:<x@other.example>")[0] == 554
    assert bdat(c, MSG, last=True)[0] == 554
    assert c.cmd("NOOP")[0] == 250


def test_data_after_bdat_refused(proxy):
    c = harness.Client(proxy.port)
    c.greet()
    envelope(c)
    assert bdat(c, MSG[:10])[0] == 250
    assert c.cmd("DATA")[0] == 503
    assert bdat(c, MSG[10:], last=True)[0] == 250


@pytest.mark.parametrize("arg", [b"", b"x", b"-1", b"10 NOTLAST", b"99999999999999999999"])
def test_unreadable_count_ends_the_session(proxy, backend, arg):
    c = harness.Client(proxy.port)
    c.greet()
    envelope(c)
    c.send(b"BDAT " + arg + b"\r\n" + MSG)
    code, text = c.reply()
    assert code == 501, text
    assert c.closed()
    assert backend.messages() == []


def test_bare_lf_in_a_chunk_is_refused_and_transaction_ends(proxy, backend):
    c = harness.Client(proxy.port)
    c.greet()
    envelope(c)
    code, text = bdat(c, HEAD + b"bare\nLF\r\n")
    assert code == 550 and "5.5.2" in text, text
    # The transaction is over: the next chunk is read and refused.
    assert bdat(c, b"more\r\n", last=True)[0] == 503
    assert c.cmd("NOOP")[0] == 250
    assert backend.messages() == []


def test_too_big_refused_at_the_chunk_that_crosses(ravelin_factory, backend, dns):
    r = harness.start_proxy(ravelin_factory, backend, dns, "max_message_size 1k\n")
    c = harness.Client(r.port)
    c.greet()
    envelope(c)
    assert bdat(c, HEAD)[0] == 250
    code, text = bdat(c, b"y" * 990 + b"\r\n")
    assert code == 552, text
    assert bdat(c, b"z\r\n", last=True)[0] == 503
    assert backend.messages() == []


def test_backend_refusal_is_the_final_reply(proxy, backend):
    c = harness.Client(proxy.port)
    c.greet()
    envelope(c)
    code, text = bdat(c, HEAD + b"X-Backend-Fate: 5xx\r\n", last=True)
    assert code == 554 and "chaos: refused" in text, text
    # The transaction is over either way; the session goes on.
    envelope(c)
    assert bdat(c, MSG, last=True)[0] == 250
    assert harness.strip_added(backend.messages()[-1]["data"]) == MSG


def test_two_messages_in_one_session(proxy, backend):
    c = harness.Client(proxy.port)
    c.greet()
    for i in range(2):
        envelope(c)
        body = HEAD + b"message %d\r\n" % i
        assert bdat(c, body, last=True)[0] == 250
        assert harness.strip_added(backend.messages()[-1]["data"]) == body
    assert len(backend.messages()) == 2


def test_data_rule_refuses_first_chunk(ravelin_factory, backend, dns, tmp_path):
    rules = tmp_path / "r.rules"
    rules.write_text('nodata: data sender == a@sender.example -> reject 550 5.7.1 "No data for you"\n')
    r = harness.start_proxy(ravelin_factory, backend, dns, "rules %s\n" % rules)
    c = harness.Client(r.port)
    c.greet()
    envelope(c)
    code, text = bdat(c, MSG)
    assert code == 550 and "No data for you" in text, text
    # Read, not run: the chunk's bytes never became commands.
    assert bdat(c, b"QUIT\r\n", last=True)[0] == 503
    assert c.cmd("NOOP")[0] == 250
    assert backend.messages() == []
