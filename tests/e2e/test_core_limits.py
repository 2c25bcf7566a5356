"""Core proxy, limits: command line length, recipients, message size,
errors, timeouts, pregreet, sessions per address."""

import time

import harness

MSG = b"From: a@sender.example\r\nTo: u@example.org\r\nSubject: t\r\n\r\nhello\r\n"


def start(ravelin_factory, backend, dns, extra):
    return harness.start_proxy(ravelin_factory, backend, dns, extra)


def test_command_line_of_1000_octets_accepted_1001_refused(proxy):
    c = harness.Client(proxy.port)
    c.greet()
    line = "NOOP " + "x" * (998 - 5)
    assert len(line) + 2 == 1000
    assert c.cmd(line)[0] == 250
    code, text = c.cmd(line + "y")
    assert code == 500 and text == "500 5.5.2 Line too long"
    # The session goes on, and the rest of the long line was not a command.
    code, text = c.cmd("NOOP")
    assert code == 250, text
    c.send("NOOP " + "z" * 5000 + "\r\nNOOP\r\n")
    assert c.reply()[0] == 500
    assert c.reply()[0] == 250
    assert c.message("a@sender.example", ["u@example.org"], MSG)[0] == 250
    assert [m["body"] for m in proxy.backend.messages()] == [MSG]


def test_max_recipients(tmp_path, dns, backend, ravelin_factory):
    r = start(ravelin_factory, backend, dns, "max_recipients 3")
    c = harness.Client(r.port)
    c.greet()
    assert c.cmd("MAIL FROM:<a@sender.example>")[0] == 250
    for i in range(3):
        assert c.cmd("RCPT TO:<u%d@example.org>" % i)[0] == 250
    code, text = c.cmd("RCPT TO:<u9@example.org>")
    assert code == 452 and "4.5.3" in text
    assert c.cmd("DATA")[0] == 354
    c.send(MSG + b".\r\n")
    assert c.reply()[0] == 250
    m = backend.messages()
    assert len(m) == 1 and m[0]["rcpts"] == ["TO:<u%d@example.org>" % i for i in range(3)]


def test_message_over_max_size_refused_after_reading_it_all(tmp_path, dns, backend, ravelin_factory):
    r = start(ravelin_factory, backend, dns, "max_message_size 10k")
    c = harness.Client(r.port)
    c.greet()
    big = MSG + (b"y" * 78 + b"\r\n") * 200
    assert c.cmd("MAIL FROM:<a@sender.example>")[0] == 250
    assert c.cmd("RCPT TO:<u@example.org>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    # A ".\r\n"-looking line inside the big body must not be taken as commands.
    c.send(big + b"RSET\r\n" + b".\r\n")
    code, text = c.reply()
    assert code == 552 and "5.3.4" in text
    assert c.cmd("NOOP")[0] == 250
    assert c.message("a@sender.example", ["u@example.org"], MSG)[0] == 250
    assert [m["body"] for m in backend.messages()] == [MSG]


def test_max_errors_closes_with_421(tmp_path, dns, backend, ravelin_factory):
    r = start(ravelin_factory, backend, dns, "max_errors 3")
    c = harness.Client(r.port)
    c.greet()
    assert c.cmd("BOGUS1")[0] == 502
    assert c.cmd("BOGUS2")[0] == 502
    c.send("BOGUS3\r\n")
    assert c.reply()[0] == 502
    code, text = c.reply()
    assert code == 421 and "4.7.0" in text
    assert c.closed()


def test_client_timeout(tmp_path, dns, backend, ravelin_factory):
    r = start(ravelin_factory, backend, dns, "client_timeout 1s")
    c = harness.Client(r.port)
    c.greet()
    t0 = time.time()
    code, text = c.reply()
    assert text == "421 4.4.2 mx.test.example Error: timeout exceeded"
    assert 0.8 < time.time() - t0 < 4
    assert c.closed()
    assert r.wait_re(r"timeout after command from \S+\[127\.0\.0\.1\]")


def test_client_timeout_restarts_with_each_command(tmp_path, dns, backend, ravelin_factory):
    r = start(ravelin_factory, backend, dns, "client_timeout 1s")
    c = harness.Client(r.port)
    c.greet()
    for _ in range(4):
        time.sleep(0.5)
        assert c.cmd("NOOP")[0] == 250
    # The wait runs from the last command: not cut short by a deadline an
    # earlier command set (the timer is re-armed lazily), not missed.
    t0 = time.time()
    code, text = c.reply()
    assert code == 421 and "4.4.2" in text
    assert 0.8 < time.time() - t0 < 2.5


def test_data_timeout(tmp_path, dns, backend, ravelin_factory):
    r = start(ravelin_factory, backend, dns, "data_timeout 1s\nclient_timeout 30s")
    c = harness.Client(r.port)
    c.greet()
    assert c.cmd("MAIL FROM:<a@sender.example>")[0] == 250
    assert c.cmd("RCPT TO:<u@example.org>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send(MSG)
    t0 = time.time()
    code, text = c.reply()
    assert code == 421 and "4.4.2" in text
    assert time.time() - t0 < 4
    assert c.closed()
    assert backend.messages() == []


def test_pregreet_talker_is_refused(tmp_path, dns, backend, ravelin_factory):
    r = start(ravelin_factory, backend, dns, "pregreet_delay 500ms")
    c = harness.Client(r.port)
    c.send("EHLO eager.test\r\n")
    code, text = c.reply()
    assert code == 554
    assert c.closed()
    assert r.wait_log("pregreet")


def test_pregreet_patient_client_gets_banner(tmp_path, dns, backend, ravelin_factory):
    r = start(ravelin_factory, backend, dns, "pregreet_delay 500ms")
    t0 = time.time()
    c = harness.Client(r.port)
    code, text = c.reply()
    assert code == 220
    assert time.time() - t0 >= 0.45
    assert c.cmd("EHLO patient.test")[0] == 250
    assert c.message("a@sender.example", ["u@example.org"], MSG)[0] == 250
    assert len(backend.messages()) == 1


def test_max_sessions_per_ip(tmp_path, dns, backend, ravelin_factory):
    r = start(ravelin_factory, backend, dns, "max_sessions_per_ip 2")
    a1 = harness.Client(r.port, source="127.0.0.2")
    a2 = harness.Client(r.port, source="127.0.0.2")
    assert a1.reply()[0] == 220 and a2.reply()[0] == 220
    a3 = harness.Client(r.port, source="127.0.0.2")
    code, text = a3.reply()
    assert code == 421
    assert a3.closed()
    b1 = harness.Client(r.port, source="127.0.0.3")
    assert b1.reply()[0] == 220
    # One leaves: its place is free again.
    assert a1.cmd("QUIT")[0] == 221
    assert a1.closed()
    time.sleep(0.2)
    a4 = harness.Client(r.port, source="127.0.0.2")
    assert a4.reply()[0] == 220
    for c in (a2, a4, b1):
        c.cmd("QUIT")


def test_max_message_size_boundary(tmp_path, dns, backend, ravelin_factory):
    r = start(ravelin_factory, backend, dns, "max_message_size 1k")
    c = harness.Client(r.port)
    c.greet()
    exact = MSG + b"x" * (1024 - len(MSG) - 2) + b"\r\n"
    assert len(exact) == 1024
    assert c.message("a@sender.example", ["u@example.org"], exact)[0] == 250
    # One octet more; dot-stuffing does not count (the size is the message's).
    over = MSG + b"x" * (1024 - len(MSG) - 1) + b"\r\n"
    code, text = c.message("a@sender.example", ["u@example.org"], over)
    assert code == 552 and "5.3.4" in text
    stuffed_exact = MSG + b"." + b"x" * (1024 - len(MSG) - 3) + b"\r\n"
    c.cmd("RSET")
    assert c.message("a@sender.example", ["u@example.org"],
                     stuffed_exact.replace(b"\r\n.", b"\r\n.."))[0] == 250
    assert [m["body"] for m in backend.messages()] == [exact, stuffed_exact]


def test_max_errors_counts_long_and_bad_lines(tmp_path, dns, backend, ravelin_factory):
    r = start(ravelin_factory, backend, dns, "max_errors 3")
    c = harness.Client(r.port)
    c.greet()
    c.send(b"NOOP " + b"x" * 2000 + b"\r\nNOOP \x01\r\nMAIL FROM:<bad\r\n")
    got = [c.reply()[0] for _ in range(4)]
    assert got == [500, 500, 501, 421]
    assert c.closed()
