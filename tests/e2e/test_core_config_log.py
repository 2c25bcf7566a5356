"""Core proxy: `ravelin -c FILE -t` error reports, the IPv6 listener, and
the log lines of DESIGN.md section 9."""

import os
import re
import smtplib
import socket
import subprocess

import harness

RAVELIN = os.path.join(harness.BUILD, "ravelin")
MSG = b"From: a@sender.example\r\nTo: u@example.org\r\nSubject: t\r\n\r\nhello\r\n"


def check(path):
    p = subprocess.run([RAVELIN, "-c", path, "-t"], capture_output=True, timeout=20, cwd="/")
    return p.returncode, p.stderr.decode() + p.stdout.decode()


def test_config_check_reports_every_error_with_file_and_line(tmp_path):
    d = tmp_path / "etc"
    (d / "sub").mkdir(parents=True)
    main = d / "main.conf"
    main.write_text("hostname mx.test.example\n"
                    "log stderr\n"
                    "frobnicate 1\n"
                    "client_timeout 5x\n"
                    "max_message_size 10q\n"
                    "hostname again.example\n"
                    "listen 127.0.0.1:2525 inbound bogus\n"
                    "backend 127.0.0.1:2526 xclient\n"
                    "# a comment\n"
                    "include sub/extra.conf\n"
                    "include missing.conf\n")
    (d / "sub" / "extra.conf").write_text("max_recipients 10\ndata_timeout -1\n")
    rc, out = check(str(main))
    assert rc == 1
    m = str(main)
    for expected in (m + ":3: unknown directive 'frobnicate'",
                     m + ":4: client_timeout: bad duration '5x'",
                     m + ":5: max_message_size: bad size '10q'",
                     m + ":6: 'hostname' given twice",
                     m + ":7: listen: unknown flag 'bogus'",
                     # The include is resolved from the including file's directory.
                     str(d / "sub" / "extra.conf") + ":2: data_timeout: bad duration '-1'",
                     m + ":11: include: cannot read '%s'" % (d / "missing.conf")):
        assert expected in out, (expected, out)
    # Nothing else: every reported line is FILE:LINE: message.
    for line in out.strip().splitlines():
        assert re.match(r"^/\S+:\d+: \S", line), line


def test_config_check_good_file_exits_0(tmp_path):
    d = tmp_path / "etc"
    d.mkdir()
    (d / "inc.conf").write_text("max_recipients 50\nspool_memory 1m\n")
    main = d / "main.conf"
    main.write_text("hostname mx.test.example\nlog stderr\n"
                    "listen 127.0.0.1:2525 inbound\nlisten [::1]:2525 inbound proxy-protocol\n"
                    "backend 127.0.0.1:2526 xclient\nbackend 127.0.0.1:2527 proxy\n"
                    "local_domains example.org .example.org\nmynetworks 10.0.0.0/8 ::1/128\n"
                    "client_timeout 5m\ndata_timeout 10m\nbackend_timeout 300\n"
                    "max_message_size 25m\npregreet_delay 250ms\nbare_newline normalize\n"
                    "long_lines pass\ninclude inc.conf\n")
    rc, out = check(str(main))
    assert rc == 0, out


def test_config_check_repeated_and_bad_values(tmp_path):
    main = tmp_path / "r.conf"
    main.write_text("log stderr\nmax_recipients 10\nmax_recipients 20\nmax_errors many\n"
                    "bare_newline sometimes\nbackend 127.0.0.1:1 carrier-pigeon\n")
    rc, out = check(str(main))
    assert rc == 1
    p = str(main)
    assert p + ":3: 'max_recipients' given twice" in out
    assert p + ":4: " in out and p + ":5: " in out and p + ":6: " in out


def test_ipv6_listener(tmp_path, dns, backend, ravelin_factory):
    s = socket.socket(socket.AF_INET6)
    s.bind(("::1", 0))  # ::1 must be there; fail loudly if not
    s.close()
    port = harness.free_port()
    conf = harness.base_config(port, backend.port, dns.port).replace(
        "listen 127.0.0.1:%d" % port, "listen [::1]:%d" % port)
    r = ravelin_factory(conf, None, wait=False)
    harness.wait_port(port, host="::1", proc=r.proc)
    with smtplib.SMTP("::1", port, timeout=10) as c:
        c.ehlo("v6.client.test")
        c.sendmail("a@sender.example", ["u@example.org"], MSG)
    m = backend.messages()
    assert len(m) == 1 and m[0]["body"] == MSG
    assert m[0]["xclient"]["ADDR"] == "IPV6:::1"


def test_log_lines(proxy):
    c = harness.Client(proxy.port)
    c.greet("log.client.test")
    assert c.cmd("MAIL FROM:<a@sender.example>")[0] == 250
    assert c.cmd("RCPT TO:<x@other.example>")[0] == 554
    assert c.cmd("RCPT TO:<u@example.org>")[0] == 250
    assert c.cmd("DATA")[0] == 354
    c.send(MSG + b".\r\n")
    code, text = c.reply()
    assert code == 250
    qid = text.split()[-1]
    c.cmd("QUIT")
    c.close()
    assert proxy.wait_log("accepted: ")
    log = proxy.log()
    sid = r"[0-9A-F]{8}"
    assert re.search(r"ravelin\[\d+\]: (%s): connect from \S+\[127\.0\.0\.1\] listener=inbound" % sid, log)
    # The harness's port probe is a session too: take the one that sent mail.
    sess = re.search(r"(%s): accepted: " % sid, log).group(1)
    assert re.search(r"%s: connect from \S+\[127\.0\.0\.1\] listener=inbound" % sess, log)
    assert re.search(r"%s: reject: RCPT from \S+\[127\.0\.0\.1\]: 554 5\.7\.1 <x@other\.example>: "
                     r"Relay access denied; from=<a@sender\.example> to=<x@other\.example> "
                     r"helo=<log\.client\.test>" % sess, log), log
    acc = re.search(r'%s: accepted: from=<a@sender\.example> to=<u@example\.org> size=(\d+) .*'
                    r'backend="250 2\.0\.0 Ok: queued as %s"' % (sess, qid), log)
    assert acc, log
    # size counts the message as the client sent it.
    assert int(acc.group(1)) == len(MSG)
    assert proxy.wait_re(r"%s: disconnect from \S+\[127\.0\.0\.1\]" % sess)


def test_null_sender_in_reject_log(proxy):
    c = harness.Client(proxy.port)
    c.greet("null.test")
    assert c.cmd("MAIL FROM:<>")[0] == 250
    assert c.cmd("RCPT TO:<x@other.example>")[0] == 554
    c.cmd("QUIT")
    assert proxy.wait_log("from=<> to=<x@other.example> helo=<null.test>")
