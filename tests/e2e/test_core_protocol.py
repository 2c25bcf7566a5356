"""Core proxy, SMTP protocol: pipelining (RFC 2920), the command set,
ESMTP parameters, multi-transaction sessions. Asserts on what the backend
received as well as on the replies."""

import smtplib
import subprocess

import harness

MSG = b"From: a@sender.example\r\nTo: u@example.org\r\nSubject: t\r\n\r\nhello\r\n"


def msg(i):
    return (b"From: a@sender.example\r\nTo: u@example.org\r\nMessage-ID: <%d@t>\r\n"
            b"Subject: m%d\r\n\r\nbody %d\r\n" % (i, i, i))


# ---- pipelining ----

def test_pipelined_transaction_in_one_write_replies_in_order(proxy):
    c = harness.Client(proxy.port)
    c.greet()
    c.send(b"MAIL FROM:<a@sender.example>\r\nRCPT TO:<u@example.org>\r\n"
           b"RCPT TO:<v@example.org>\r\nDATA\r\n")
    codes = [r[0] for r in c.replies(4)]
    assert codes == [250, 250, 250, 354]
    c.send(MSG + b".\r\n")
    assert c.reply()[0] == 250
    assert c.cmd("QUIT")[0] == 221
    msgs = proxy.backend.messages()
    assert len(msgs) == 1
    assert msgs[0]["body"] == MSG
    assert msgs[0]["rcpts"] == ["TO:<u@example.org>", "TO:<v@example.org>"]


def test_whole_session_in_one_write_with_refused_rcpt(proxy):
    """Everything from EHLO to QUIT in one write; the refused recipient does
    not end the transaction, replies come back in order."""
    c = harness.Client(proxy.port)
    assert c.reply()[0] == 220
    c.send(b"EHLO pipe.test\r\nMAIL FROM:<a@sender.example>\r\nRCPT TO:<x@other.example>\r\n"
           b"RCPT TO:<u@example.org>\r\nDATA\r\n" + MSG + b".\r\nNOOP\r\nRSET\r\n"
           b"MAIL FROM:<b@sender.example>\r\nRCPT TO:<w@example.org>\r\nDATA\r\n" + msg(2) +
           b".\r\nQUIT\r\n")
    got = c.replies(13)
    codes = [g[0] for g in got]
    assert codes == [250, 250, 554, 250, 354, 250, 250, 250, 250, 250, 354, 250, 221], got
    assert "Relay access denied" in got[2][1]
    assert c.closed()
    msgs = proxy.backend.messages()
    assert [m["body"] for m in msgs] == [MSG, msg(2)]
    assert msgs[0]["rcpts"] == ["TO:<u@example.org>"]
    assert msgs[1]["mail"] == "FROM:<b@sender.example>"


def test_many_commands_in_one_write(proxy):
    c = harness.Client(proxy.port)
    c.greet()
    c.send(b"NOOP\r\n" * 200 + b"RSET\r\n" * 50)
    codes = [r[0] for r in c.replies(250)]
    assert codes == [250] * 250
    assert c.cmd("NOOP")[0] == 250


def test_several_messages_in_one_session_with_smtplib(proxy):
    with smtplib.SMTP("127.0.0.1", proxy.port, timeout=10) as s:
        s.ehlo("multi.test")
        for i in range(5):
            s.sendmail("a@sender.example", ["u@example.org"], msg(i))
            if i == 2:
                s.rset()
    assert [m["body"] for m in proxy.backend.messages()] == [msg(i) for i in range(5)]


def test_data_with_every_rcpt_refused_is_554_and_nothing_forwarded(proxy):
    c = harness.Client(proxy.port)
    c.greet()
    c.send(b"MAIL FROM:<a@sender.example>\r\nRCPT TO:<x@other.example>\r\n"
           b"RCPT TO:<y@other.example>\r\nDATA\r\n")
    got = c.replies(4)
    assert [g[0] for g in got] == [250, 554, 554, 554]
    assert "5.5.1" in got[3][1]
    # The pipelined message text that followed is read as commands (RFC 2920).
    assert c.cmd("RSET")[0] == 250
    assert c.message("a@sender.example", ["u@example.org"], MSG)[0] == 250
    assert [m["body"] for m in proxy.backend.messages()] == [MSG]


# ---- commands ----

def test_ehlo_announces_extensions(proxy):
    c = harness.Client(proxy.port)
    text = c.greet()
    lines = [l[4:] for l in text.splitlines()]
    assert lines[0] == "mx.test.example"
    assert "PIPELINING" in lines
    assert "SIZE 26214400" in lines
    assert "8BITMIME" in lines
    assert "ENHANCEDSTATUSCODES" in lines
    # The recording backend offers both: so do we.
    assert "SMTPUTF8" in lines and "DSN" in lines


def test_ehlo_hides_dsn_and_smtputf8_the_backend_lacks(tmp_path, dns, ravelin_factory):
    b = harness.Backend(str(tmp_path), "--xclient", "--caps", "PIPELINING,SIZE 1000000,8BITMIME")
    try:
        r = harness.start_proxy(ravelin_factory, b, dns)
        c = harness.Client(r.port)
        lines = [l[4:] for l in c.greet().splitlines()]
        assert "SMTPUTF8" not in lines and "DSN" not in lines
        assert "8BITMIME" in lines and "PIPELINING" in lines
        # What was not offered is refused, or (DSN) not passed on.
        code, text = c.cmd("MAIL FROM:<jörg@sender.example> SMTPUTF8")
        assert code == 555, text
        assert c.cmd("MAIL FROM:<a@sender.example> RET=FULL ENVID=x1")[0] == 250
        assert c.cmd("RCPT TO:<u@example.org> NOTIFY=NEVER")[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(MSG + b".\r\n")
        assert c.reply()[0] == 250
        m = b.messages()[0]
        assert m["mail"] == "FROM:<a@sender.example>" and m["rcpts"] == ["TO:<u@example.org>"]
    finally:
        b.stop()


def test_body_8bitmime_refused_when_backend_lacks_it(tmp_path, dns, ravelin_factory):
    b = harness.Backend(str(tmp_path), "--xclient", "--caps", "PIPELINING")
    try:
        r = harness.start_proxy(ravelin_factory, b, dns)
        c = harness.Client(r.port)
        lines = [l[4:] for l in c.greet().splitlines()]
        assert "8BITMIME" not in lines
        assert c.cmd("MAIL FROM:<a@sender.example> BODY=8BITMIME")[0] == 555
        assert c.cmd("MAIL FROM:<a@sender.example> BODY=7BIT")[0] == 250
        assert c.cmd("RCPT TO:<u@example.org>")[0] == 250
        assert c.cmd("DATA")[0] == 354
        c.send(MSG + b".\r\n")
        assert c.reply()[0] == 250
        assert b.messages()[0]["mail"] == "FROM:<a@sender.example>"
    finally:
        b.stop()


def test_helo_gives_plain_250(proxy):
    c = harness.Client(proxy.port)
    assert c.reply()[0] == 220
    code, text = c.cmd("HELO old.test")
    assert code == 250 and "\n" not in text and "PIPELINING" not in text
    assert c.message("a@sender.example", ["u@example.org"], MSG)[0] == 250
    m = proxy.backend.messages()[0]
    assert m["xclient"]["HELO"] == "old.test"
    assert m["xclient"]["PROTO"] == "SMTP"


def test_simple_commands(proxy):
    c = harness.Client(proxy.port)
    c.greet()
    assert c.cmd("NOOP")[0] == 250
    assert c.cmd("RSET")[0] == 250
    assert c.cmd("HELP")[0] == 214
    assert c.cmd("VRFY u@example.org")[0] == 252
    code, text = c.cmd("EXPN staff")
    assert code == 502
    code, text = c.cmd("FOO bar")
    assert code == 502 and "5.5.2" in text
    code, text = c.cmd("QUIT")
    assert code == 221
    assert c.closed()


def test_command_order_errors(proxy):
    c = harness.Client(proxy.port)
    assert c.reply()[0] == 220
    code, text = c.cmd("MAIL FROM:<a@sender.example>")
    assert code == 503 and "5.5.1" in text
    assert c.cmd("EHLO client.test")[0] == 250
    code, text = c.cmd("RCPT TO:<u@example.org>")
    assert code == 503 and "5.5.1" in text
    code, text = c.cmd("DATA")
    assert code == 503
    assert c.cmd("MAIL FROM:<a@sender.example>")[0] == 250
    code, text = c.cmd("MAIL FROM:<a@sender.example>")
    assert code == 503 and "nested" in text
    code, text = c.cmd("DATA")
    assert code == 503 and "5.5.1" in text
    assert c.cmd("RCPT TO:<u@example.org>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send(MSG + b".\r\n")
    assert c.reply()[0] == 250
    assert len(proxy.backend.messages()) == 1


def test_syntax_errors_are_501(proxy):
    c = harness.Client(proxy.port)
    assert c.reply()[0] == 220
    assert c.cmd("EHLO")[0] == 501
    assert c.cmd("EHLO client.test")[0] == 250
    for bad in ("MAIL FROM:a@sender.example", "MAIL FROM:<a@@sender.example>", "MAIL TO:<a@b.example>",
                "MAIL FROM:<a@sender.example> SIZE=abc"):
        code, text = c.cmd(bad)
        assert code == 501, (bad, text)
    assert c.cmd("MAIL FROM:<a@sender.example>")[0] == 250
    for bad in ("RCPT TO:u@example.org", "RCPT TO:<u@exa mple.org>", "RCPT FROM:<u@example.org>"):
        code, text = c.cmd(bad)
        assert code == 501, (bad, text)
    code, text = c.cmd("RSET now")
    assert code == 501
    assert c.cmd("RSET")[0] == 250


def test_http_request_is_421_and_closed(proxy):
    c = harness.Client(proxy.port)
    assert c.reply()[0] == 220
    c.send(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
    code, text = c.reply()
    assert code == 421
    assert c.closed()


# ---- ESMTP parameters ----

def test_size_over_limit_is_552_before_data(tmp_path, dns, backend, ravelin_factory):
    r = harness.start_proxy(ravelin_factory, backend, dns, "max_message_size 10k")
    c = harness.Client(r.port)
    c.greet()
    code, text = c.cmd("MAIL FROM:<a@sender.example> SIZE=10241")
    assert code == 552 and "5.3.4" in text
    assert c.cmd("MAIL FROM:<a@sender.example> SIZE=10240")[0] == 250
    assert c.cmd("RCPT TO:<u@example.org>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send(MSG + b".\r\n")
    assert c.reply()[0] == 250
    m = backend.messages()
    assert len(m) == 1 and "SIZE=10240" in m[0]["mail"]


def test_unknown_parameter_is_555(proxy):
    c = harness.Client(proxy.port)
    c.greet()
    code, text = c.cmd("MAIL FROM:<a@sender.example> FOO=BAR")
    assert code == 555 and "5.5.4" in text
    assert c.cmd("MAIL FROM:<a@sender.example>")[0] == 250
    code, text = c.cmd("RCPT TO:<u@example.org> BAR")
    assert code == 555 and "5.5.4" in text


def test_body_8bitmime_is_forwarded(proxy):
    body = MSG.replace(b"hello", b"caf\xc3\xa9 \xff")
    c = harness.Client(proxy.port)
    c.greet()
    assert c.message("a@sender.example", ["u@example.org"], body, " BODY=8BITMIME")[0] == 250
    m = proxy.backend.messages()[0]
    assert m["mail"] == "FROM:<a@sender.example> BODY=8BITMIME"
    assert m["body"] == body


def test_smtputf8_address_is_accepted_and_forwarded(proxy):
    c = harness.Client(proxy.port)
    c.greet()
    code, text = c.cmd("MAIL FROM:<jörg@sender.example> SMTPUTF8")
    assert code == 250, text
    code, text = c.cmd("RCPT TO:<ü@example.org>")
    assert code == 250, text
    assert c.cmd("DATA")[0] == 354
    c.send(MSG + b".\r\n")
    assert c.reply()[0] == 250
    m = proxy.backend.messages()[0]
    assert m["mail"] == "FROM:<jörg@sender.example> SMTPUTF8"
    assert m["rcpts"] == ["TO:<ü@example.org>"]


def test_utf8_address_without_smtputf8_is_553(proxy):
    c = harness.Client(proxy.port)
    c.greet()
    code, text = c.cmd("MAIL FROM:<jörg@sender.example>")
    assert code == 553 and "5.6.7" in text
    assert c.cmd("MAIL FROM:<a@sender.example>")[0] == 250
    code, text = c.cmd("RCPT TO:<ü@example.org>")
    assert code == 553 and "5.6.7" in text


def test_dsn_parameters_reach_the_backend(proxy):
    c = harness.Client(proxy.port)
    c.greet()
    assert c.cmd("MAIL FROM:<a@sender.example> RET=HDRS ENVID=abc+2Bdef")[0] == 250
    code, text = c.cmd("RCPT TO:<u@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;u+40example.org")
    assert code == 250, text
    assert c.cmd("DATA")[0] == 354
    c.send(MSG + b".\r\n")
    assert c.reply()[0] == 250
    m = proxy.backend.messages()[0]
    assert m["mail"] == "FROM:<a@sender.example> RET=HDRS ENVID=abc+2Bdef"
    assert m["rcpts"] == ["TO:<u@example.org> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;u+40example.org"]


def test_swaks_pipelined_message(proxy):
    out = subprocess.run(
        ["swaks", "--server", "127.0.0.1", "--port", str(proxy.port), "--from", "a@sender.example",
         "--to", "u@example.org", "--helo", "swaks.test", "--pipeline", "--header",
         "Subject: from swaks", "--body", "swaks body", "--timeout", "10"],
        capture_output=True, timeout=30)
    assert out.returncode == 0, out.stdout.decode() + out.stderr.decode()
    msgs = proxy.backend.messages()
    assert len(msgs) == 1
    assert b"Subject: from swaks" in msgs[0]["body"] and b"swaks body" in msgs[0]["body"]
    assert msgs[0]["xclient"]["HELO"] == "swaks.test"


def test_ehlo_in_a_transaction_resets_it(proxy):
    c = harness.Client(proxy.port)
    c.greet()
    assert c.cmd("MAIL FROM:<a@sender.example>")[0] == 250
    assert c.cmd("RCPT TO:<u@example.org>")[0] == 250
    assert c.cmd("EHLO again.test")[0] == 250
    assert c.cmd("DATA")[0] == 503
    assert c.cmd("RCPT TO:<u@example.org>")[0] == 503
    assert c.message("b@sender.example", ["v@example.org"], MSG)[0] == 250
    m = proxy.backend.messages()
    assert len(m) == 1 and m[0]["mail"] == "FROM:<b@sender.example>"
    assert m[0]["rcpts"] == ["TO:<v@example.org>"] and m[0]["xclient"]["HELO"] == "again.test"


def test_pipelined_flood_with_a_client_that_reads_late(proxy):
    """Output backpressure: the client writes 30000 commands before reading a
    single reply; every reply arrives, in order, and nothing is dropped."""
    import threading
    c = harness.Client(proxy.port, timeout=30)
    c.greet()
    n = 30000
    t = threading.Thread(target=c.send, args=(b"NOOP\r\n" * n + b"HELP\r\n",))
    t.start()
    codes = [c.reply()[0] for _ in range(n + 1)]
    t.join(30)
    assert codes[:n] == [250] * n and codes[n] == 214
    assert c.cmd("QUIT")[0] == 221
