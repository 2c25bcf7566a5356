"""Core proxy basics: a message goes through byte for byte; relay refused."""

import smtplib

import harness


def test_message_goes_through_byte_exact(proxy):
    body = (b"From: a@sender.example\r\nTo: u@example.org\r\nSubject: t\r\n\r\n"
            b".leading dot\r\n..two dots\r\n8bit \xc3\xa9\xff\r\n" + b"x" * 998 + b"\r\n")
    with smtplib.SMTP("127.0.0.1", proxy.port, timeout=10) as c:
        c.ehlo("client.test")
        c.sendmail("a@sender.example", ["u@example.org"], body)
    msgs = proxy.backend.messages()
    assert len(msgs) == 1
    assert harness.strip_added(msgs[0]["data"]) == body
    assert msgs[0]["data"].startswith(b"Authentication-Results: mx.test.example;")
    assert msgs[0]["mail"].startswith("FROM:<a@sender.example>")
    assert msgs[0]["rcpts"] == ["TO:<u@example.org>"]
    assert msgs[0]["xclient"]["ADDR"] == "127.0.0.1"
    assert msgs[0]["xclient"]["HELO"] == "client.test"


def test_relay_to_foreign_domain_is_refused(proxy):
    c = harness.Client(proxy.port)
    assert c.reply()[0] == 220
    assert c.cmd("EHLO client.test")[0] == 250
    assert c.cmd("MAIL FROM:<a@sender.example>")[0] == 250
    code, text = c.cmd("RCPT TO:<x@other.example>")
    assert code == 554 and "5.7.1 <x@other.example>: Relay access denied" in text
    assert c.cmd("DATA")[0] == 554
    c.cmd("QUIT")
    assert proxy.backend.messages() == []
