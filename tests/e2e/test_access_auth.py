"""SMTP AUTH (RFC 4954; DESIGN.md sections 4, 6, 9): PLAIN and LOGIN with
and without initial responses, cancellation, offered only over TLS unless
auth-plaintext, the auth_users file with yescrypt / SHA-512 / bcrypt
hashes made by mkpasswd, delayed and counted failures, disconnection
after auth_max_failures, the fail2ban log line, no password in the log,
and what authentication grants: relay, and LOGIN= in XCLIENT.
"""

import os
import smtplib
import subprocess
import time

import pytest

import harness
import test_access_lib as lib

PASSWORDS = {"bob": "Bob-s3cret-yescrypt", "alice": "Alice-s3cret-sha512",
             "carol": "Carol-s3cret-bcrypt"}
BODY = "From: %s\r\nTo: x@other.example\r\nSubject: auth\r\n\r\nhello\r\n"


@pytest.fixture
def users(tmp_path):
    return lib.write(tmp_path, "users", "".join([
        "# ravelin users\n",
        "bob:%s\n" % lib.mkpasswd(PASSWORDS["bob"], "yescrypt"),
        "alice:%s\n" % lib.mkpasswd(PASSWORDS["alice"], "sha-512"),
        "carol:%s\n" % lib.mkpasswd(PASSWORDS["carol"], "bcrypt"),
        "dave:!%s\n" % lib.mkpasswd("Dave-locked", "sha-512"),
    ]))


@pytest.fixture
def authproxy(ravelin_factory, tmp_path, backend, dns, users):
    crt, key = lib.make_cert(tmp_path)
    ports = {"starttls": harness.free_port(), "plaintext": harness.free_port(),
             "implicit": harness.free_port(), "noauth": harness.free_port()}
    sock = os.path.join(str(tmp_path), "stats.sock")
    conf = lib.config(
        ["127.0.0.1:%d inbound starttls" % ports["starttls"],
         "127.0.0.1:%d inbound auth-plaintext" % ports["plaintext"],
         "127.0.0.1:%d inbound tls" % ports["implicit"],
         "127.0.0.1:%d inbound" % ports["noauth"]],
        backend.port, dns.port,
        extra="tls_certificate %s\ntls_key %s\nauth_users %s\nauth_max_failures 3\n"
              "stats_socket %s\n" % (crt, key, users, sock))
    r = ravelin_factory(conf, ports["starttls"], extra_ports=tuple(ports.values()))
    r.ports = ports
    r.backend = backend
    r.stats_sock = sock
    return r


def tls_session(r):
    c = lib.TLSClient(r.ports["starttls"])
    c.reply()
    c.cmd("EHLO client.test")
    c.starttls()
    code, text = c.cmd("EHLO client.test")
    assert code == 250
    return c


def ehlo_auth_line(text):
    return [l[4:] for l in text.splitlines() if l[4:].upper().startswith("AUTH")]


def test_auth_offered_only_over_tls(authproxy):
    c = lib.TLSClient(authproxy.ports["starttls"])
    c.reply()
    code, text = c.cmd("EHLO client.test")
    assert ehlo_auth_line(text) == []
    code, text = c.cmd("AUTH PLAIN " + lib.plain("bob", PASSWORDS["bob"]))
    assert (code, text) == (538, "538 5.7.11 Encryption required for requested "
                                 "authentication mechanism")
    c.starttls()
    code, text = c.cmd("EHLO client.test")
    assert ehlo_auth_line(text) == ["AUTH PLAIN LOGIN"]
    c.cmd("QUIT")
    # No password check ran for the refused attempt.
    assert "auth failed" not in authproxy.log()


def test_auth_plaintext_listener_offers_auth_without_tls(authproxy):
    c = harness.Client(authproxy.ports["plaintext"])
    text = c.greet()
    assert ehlo_auth_line(text) == ["AUTH PLAIN LOGIN"]
    code, text = c.cmd("AUTH PLAIN " + lib.plain("bob", PASSWORDS["bob"]))
    assert (code, text) == (235, "235 2.7.0 Authentication successful")
    c.cmd("QUIT")


def test_implicit_tls_offers_auth(authproxy):
    with smtplib.SMTP_SSL("127.0.0.1", authproxy.ports["implicit"], timeout=10,
                          context=lib.client_ctx()) as s:
        s.ehlo("client.test")
        assert s.has_extn("auth")
        code, _ = s.login("alice", PASSWORDS["alice"])
        assert code == 235


def test_listener_without_auth_users_refuses_auth(ravelin_factory, tmp_path, backend, dns):
    port = harness.free_port()
    r = ravelin_factory(lib.config(["127.0.0.1:%d inbound auth-plaintext" % port],
                                   backend.port, dns.port), port)
    c = harness.Client(port)
    text = c.greet()
    assert ehlo_auth_line(text) == []
    code, text = c.cmd("AUTH PLAIN " + lib.plain("bob", "x"))
    assert code == 503, text
    c.cmd("QUIT")


@pytest.mark.parametrize("user", ["bob", "alice", "carol"])
def test_plain_with_initial_response_each_hash(authproxy, user):
    c = tls_session(authproxy)
    code, text = c.cmd("AUTH PLAIN " + lib.plain(user, PASSWORDS[user]))
    assert (code, text) == (235, "235 2.7.0 Authentication successful")
    assert c.cmd("AUTH PLAIN " + lib.plain(user, PASSWORDS[user]))[0] == 503   # only once
    c.cmd("QUIT")
    assert authproxy.wait_log("auth: client=[127.0.0.1] user=%s mechanism=PLAIN" % user)


def test_plain_without_initial_response(authproxy):
    c = tls_session(authproxy)
    code, text = c.cmd("AUTH PLAIN")
    assert (code, text) == (334, "334 ")
    code, text = c.cmd(lib.plain("bob", PASSWORDS["bob"], authzid="bob"))
    assert code == 235, text
    c.cmd("QUIT")


def test_login_mechanism_both_forms(authproxy):
    c = tls_session(authproxy)
    assert c.cmd("AUTH LOGIN") == (334, "334 VXNlcm5hbWU6")
    assert c.cmd(lib.b64("carol")) == (334, "334 UGFzc3dvcmQ6")
    code, text = c.cmd(lib.b64(PASSWORDS["carol"]))
    assert code == 235, text
    c.cmd("QUIT")
    c = tls_session(authproxy)
    assert c.cmd("auth login " + lib.b64("alice")) == (334, "334 UGFzc3dvcmQ6")
    assert c.cmd(lib.b64(PASSWORDS["alice"]))[0] == 235
    c.cmd("QUIT")
    assert authproxy.wait_log("auth: client=[127.0.0.1] user=alice mechanism=LOGIN")


def test_smtplib_login(authproxy):
    with smtplib.SMTP("127.0.0.1", authproxy.ports["starttls"], timeout=10) as s:
        s.ehlo("client.test")
        s.starttls(context=lib.client_ctx())
        s.ehlo("client.test")
        assert s.login("bob", PASSWORDS["bob"])[0] == 235
        s.sendmail("bob@example.org", ["x@other.example"], BODY % "bob@example.org")
    m = authproxy.backend.messages()
    assert len(m) == 1 and m[0]["rcpts"] == ["TO:<x@other.example>"]


@pytest.mark.parametrize("steps", [
    ["AUTH PLAIN", "*"],
    ["AUTH PLAIN *"],
    ["AUTH LOGIN", "*"],
    ["AUTH LOGIN", lib.b64("bob"), "*"],
    ["AUTH LOGIN *"],
], ids=["plain-continuation", "plain-initial", "login-user", "login-password", "login-initial"])
def test_cancel_gives_501(authproxy, steps):
    c = tls_session(authproxy)
    for line in steps[:-1]:
        assert c.cmd(line)[0] == 334
    code, text = c.cmd(steps[-1])
    assert code == 501 and text.startswith("501 5.7.0"), text
    # Still usable, still unauthenticated: relay is refused.
    assert c.cmd("MAIL FROM:<a@sender.example>")[0] == 250
    assert c.cmd("RCPT TO:<x@other.example>")[0] == 554
    c.cmd("QUIT")
    assert "auth failed" not in authproxy.log()


@pytest.mark.parametrize("line,codes", [
    ("AUTH PLAIN =", (501, 535)),                   # empty initial response: no credentials
    ("AUTH PLAIN %%%%", (501,)),                    # not base64
    ("AUTH PLAIN " + lib.plain("bob", PASSWORDS["bob"])[:-1], (501,)),
    ("AUTH PLAIN " + lib.b64("bob\0" + PASSWORDS["bob"]), (501, 535)),   # one NUL only
    ("AUTH PLAIN " + lib.plain("bob", PASSWORDS["bob"], authzid="alice"), (535,)),
    ("AUTH CRAM-MD5", (504,)),
    ("AUTH", (501,)),
], ids=["empty", "garbage", "truncated", "one-nul", "authzid-other", "cram-md5", "no-mech"])
def test_malformed_auth_is_refused(authproxy, line, codes):
    c = tls_session(authproxy)
    code, text = c.cmd(line)
    assert code in codes, text
    assert c.cmd("MAIL FROM:<a@sender.example>")[0] == 250
    assert c.cmd("RCPT TO:<x@other.example>")[0] == 554
    c.cmd("QUIT")


def test_auth_refused_inside_transaction(authproxy):
    c = tls_session(authproxy)
    assert c.cmd("MAIL FROM:<a@sender.example>")[0] == 250
    assert c.cmd("AUTH PLAIN " + lib.plain("bob", PASSWORDS["bob"]))[0] == 503
    c.cmd("QUIT")


@pytest.mark.parametrize("user,password", [
    ("bob", "wrong-password"),
    ("nosuchuser", "whatever"),
    ("dave", "Dave-locked"),           # locked account: right password, still refused
    ("Bob", PASSWORDS["bob"]),         # user names are exact
])
def test_bad_credentials_535_delayed_counted_logged(authproxy, user, password):
    c = tls_session(authproxy)
    t0 = time.monotonic()
    code, text = c.cmd("AUTH PLAIN " + lib.plain(user, password))
    elapsed = time.monotonic() - t0
    assert (code, text) == (535, "535 5.7.8 Authentication credentials invalid")
    assert elapsed >= 0.19, elapsed                   # auth_failure_delay 200ms
    assert c.cmd("MAIL FROM:<a@sender.example>")[0] == 250
    assert c.cmd("RCPT TO:<x@other.example>")[0] == 554
    c.cmd("QUIT")
    assert authproxy.wait_log("auth failed: client=[127.0.0.1] user=%s mechanism=PLAIN" % user)
    assert lib.wait_stat(authproxy.stats_sock, "auth_failure_total", 1) == 1
    assert lib.stats(authproxy.stats_sock)["auth_success_total"] == 0


def test_disconnect_after_max_failures(authproxy):
    c = tls_session(authproxy)
    for i in range(2):
        assert c.cmd("AUTH PLAIN " + lib.plain("bob", "wrong-%d" % i))[0] == 535
    assert c.cmd("AUTH LOGIN") == (334, "334 VXNlcm5hbWU6")
    assert c.cmd(lib.b64("bob"))[0] == 334
    code, text = c.cmd(lib.b64("wrong-3"))
    assert code == 535, text
    code, text = c.reply()
    assert code == 421 and "4.7.0" in text, text
    assert c.closed()
    assert lib.wait_stat(authproxy.stats_sock, "auth_failure_total", 3) == 3
    assert authproxy.wait_log("auth failed: client=[127.0.0.1] user=bob mechanism=LOGIN")


def test_success_is_counted_and_failures_reset_per_session(authproxy):
    for i in range(2):
        c = tls_session(authproxy)
        for j in range(2):
            assert c.cmd("AUTH PLAIN " + lib.plain("bob", "bad"))[0] == 535
        assert c.cmd("AUTH PLAIN " + lib.plain("bob", PASSWORDS["bob"]))[0] == 235
        c.cmd("QUIT")
    st = lib.stats(authproxy.stats_sock)
    assert st["auth_success_total"] == 2 and st["auth_failure_total"] == 4, st


def test_password_never_logged(authproxy):
    secret = PASSWORDS["bob"]
    c = tls_session(authproxy)
    c.cmd("AUTH PLAIN " + lib.plain("bob", secret + "x"))      # wrong
    c.cmd("AUTH LOGIN " + lib.b64("bob"))
    c.cmd(lib.b64(secret + "y"))                              # wrong
    assert c.cmd("AUTH PLAIN " + lib.plain("bob", secret))[0] == 235
    c.cmd("QUIT")
    assert authproxy.wait_log("user=bob mechanism=PLAIN")
    log = authproxy.log()
    for needle in (secret, lib.b64(secret + "y"), lib.plain("bob", secret),
                   lib.plain("bob", secret + "x"), "Bob-s3cret"):
        assert needle not in log, needle


def test_fail2ban_matches_real_auth_failure_line(authproxy, tmp_path):
    c = tls_session(authproxy)
    assert c.cmd("AUTH PLAIN " + lib.plain("bob", "nope"))[0] == 535
    c.cmd("QUIT")
    assert authproxy.wait_log("auth failed: client=[127.0.0.1] user=bob mechanism=PLAIN")
    if not lib.have_fail2ban():
        pytest.skip("fail2ban-regex not installed")
    path = lib.syslog_copy(authproxy, tmp_path, "auth failed")
    assert lib.fail2ban_regex(path) == ["127.0.0.1"]


def test_authenticated_user_relays_and_reaches_backend_as_login(authproxy):
    c = tls_session(authproxy)
    assert c.cmd("MAIL FROM:<bob@example.org>")[0] == 250
    assert c.cmd("RCPT TO:<x@other.example>")[0] == 554       # not yet
    assert c.cmd("RSET")[0] == 250
    assert c.cmd("AUTH PLAIN " + lib.plain("bob", PASSWORDS["bob"]))[0] == 235
    code, text = c.message("bob@example.org", ["x@other.example", "u@example.org"],
                           BODY % "bob@example.org", params=" AUTH=<>")
    assert code == 250, text
    c.cmd("QUIT")
    m = authproxy.backend.messages()
    assert len(m) == 1
    assert m[0]["rcpts"] == ["TO:<x@other.example>", "TO:<u@example.org>"]
    assert m[0]["xclient"].get("LOGIN") == "bob", m[0]["xclient"]
    assert "AUTH=" not in m[0]["mail"]      # RFC 4954 5: ours to judge, not forwarded


def test_unauthenticated_session_sends_no_login(authproxy):
    c = tls_session(authproxy)
    assert c.message("a@sender.example", ["u@example.org"], BODY % "a@sender.example")[0] == 250
    c.cmd("QUIT")
    m = authproxy.backend.messages()
    assert len(m) == 1 and "LOGIN" not in m[0]["xclient"], m[0]["xclient"]


@pytest.mark.skipif(not lib.swaks_tls(), reason="swaks without Net::SSLeay (libnet-ssleay-perl)")
@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_swaks_auth(authproxy, mech):
    r = subprocess.run(["swaks", "-s", "127.0.0.1", "-p", str(authproxy.ports["starttls"]),
                        "--tls", "--ehlo", "client.test", "--auth", mech,
                        "--auth-user", "carol", "--auth-password", PASSWORDS["carol"],
                        "--from", "carol@example.org", "--to", "x@other.example",
                        "--header", "Subject: swaks auth", "--timeout", "10"],
                       capture_output=True, timeout=30)
    out = r.stdout.decode()
    assert r.returncode == 0, out
    assert "235 2.7.0" in out, out
    m = authproxy.backend.messages()
    assert len(m) == 1 and m[0]["xclient"].get("LOGIN") == "carol"
