"""The submission profile (DESIGN.md sections 4 and 6): AUTH before MAIL,
TLS before AUTH unless configured otherwise, and the authenticated user
must own the envelope sender and the From: address -- through
sender_logins (exact and @domain entries, several users per entry) or,
without it, the built-in rule (USER@local-domain, or the address that is
the user name).
"""

import json
import os
import smtplib

import pytest

import harness
import test_access_lib as lib

PW = {"bob": "pw-Bob-1", "alice": "pw-Alice-2", "carol": "pw-Carol-3",
      "joe@example.net": "pw-Joe-4"}

SENDERS = """# sender_logins
bob@example.org        bob
@example.net           alice, carol
shared@example.org     bob alice   # two owners
carol@other.example    carol
Mixed@Example.ORG      carol
"""


def body(frm, extra=""):
    return "From: %s\r\n%sTo: u@example.org\r\nSubject: sub\r\n\r\nhi\r\n" % (frm, extra)


@pytest.fixture
def users(tmp_path):
    return lib.write(tmp_path, "users", "".join(
        "%s:%s\n" % (u, lib.mkpasswd(p, "sha-512")) for u, p in PW.items()))


@pytest.fixture
def cmdbackend(tmp_path):
    cmdlog = os.path.join(str(tmp_path), "backend-commands.jsonl")
    open(cmdlog, "w").close()
    b = harness.Backend(str(tmp_path), "--xclient", "--cmdlog", cmdlog)
    b.cmdlog = cmdlog
    yield b
    b.stop()


def backend_mails(b):
    with open(b.cmdlog) as f:
        return [json.loads(l)["line"][5:] for l in f if json.loads(l)["line"].upper().startswith("MAIL")]


def start(factory, tmp_path, backend, dns, users, senders=True, listen="submission starttls"):
    crt, key = lib.make_cert(tmp_path)
    port, port465 = harness.free_port(), harness.free_port()
    extra = "tls_certificate %s\ntls_key %s\nauth_users %s\n" % (crt, key, users)
    if senders:
        extra += "sender_logins %s\n" % lib.write(tmp_path, "senders", SENDERS)
    conf = lib.config(["127.0.0.1:%d %s" % (port, listen),
                       "127.0.0.1:%d submission tls" % port465],
                      backend.port, dns.port, extra=extra)
    r = factory(conf, port, extra_ports=(port465,))
    r.port, r.port465, r.backend = port, port465, backend
    return r


@pytest.fixture
def sub(ravelin_factory, tmp_path, cmdbackend, dns, users):
    return start(ravelin_factory, tmp_path, cmdbackend, dns, users)


def login(r, user):
    c = lib.TLSClient(r.port)
    c.reply()
    c.cmd("EHLO client.test")
    c.starttls()
    c.cmd("EHLO client.test")
    code, text = c.cmd("AUTH PLAIN " + lib.plain(user, PW[user]))
    assert code == 235, text
    return c


def test_mail_before_auth_is_refused(sub):
    c = lib.TLSClient(sub.port)
    c.reply()
    c.cmd("EHLO client.test")
    # Before TLS, and after it: AUTH comes first.
    assert c.cmd("MAIL FROM:<bob@example.org>") == (530, "530 5.7.0 Authentication required")
    c.starttls()
    c.cmd("EHLO client.test")
    assert c.cmd("MAIL FROM:<bob@example.org>") == (530, "530 5.7.0 Authentication required")
    assert c.cmd("RCPT TO:<u@example.org>")[0] == 503
    # Even to a local domain: submission is not an MX.
    assert c.cmd("MAIL FROM:<>") == (530, "530 5.7.0 Authentication required")
    c.cmd("QUIT")
    assert backend_mails(sub.backend) == []
    assert lib.wait_log_re(sub, r"reject: MAIL from %s: 530 5\.7\.0 Authentication required"
                           % lib.CLIENT_127)


def test_submission_auth_needs_tls(sub):
    c = lib.TLSClient(sub.port)
    c.reply()
    code, text = c.cmd("EHLO client.test")
    assert "AUTH" not in text
    assert c.cmd("AUTH PLAIN " + lib.plain("bob", PW["bob"]))[0] == 538
    c.cmd("QUIT")


def test_submission_require_tls(ravelin_factory, tmp_path, cmdbackend, dns, users):
    r = start(ravelin_factory, tmp_path, cmdbackend, dns, users,
              listen="submission starttls require-tls")
    c = lib.TLSClient(r.port)
    c.reply()
    c.cmd("EHLO client.test")
    assert c.cmd("MAIL FROM:<bob@example.org>") == \
        (530, "530 5.7.0 Must issue a STARTTLS command first")
    assert c.cmd("AUTH PLAIN " + lib.plain("bob", PW["bob"]))[0] == 538
    c.cmd("QUIT")


@pytest.mark.parametrize("user,sender,ok", [
    ("bob", "bob@example.org", True),            # exact entry
    ("bob", "BOB@Example.Org", True),            # keys compare case-insensitively
    ("bob", "shared@example.org", True),         # one of two owners
    ("alice", "shared@example.org", True),
    ("carol", "shared@example.org", False),
    ("alice", "anything@example.net", True),     # @domain entry, several users
    ("carol", "other@example.net", True),
    ("bob", "bob@example.net", False),           # @domain entry without bob
    ("alice", "alice@example.org", False),       # no entry: nobody owns it
    ("bob", "bob@sub.example.net", False),       # @domain is not @subdomain
    ("carol", "carol@other.example", True),
    ("bob", "carol@other.example", False),
    ("carol", "mixed@example.org", True),
    ("bob", "", True),                           # the null sender claims no identity
], ids=lambda v: str(v) if v != "" else "null")
def test_sender_logins(sub, user, sender, ok):
    c = login(sub, user)
    code, text = c.cmd("MAIL FROM:<%s>" % sender)
    if ok:
        assert code == 250, text
        assert backend_mails(sub.backend)[-1].lower().startswith("from:<%s>" % sender.lower())
    else:
        assert (code, text) == (553, "553 5.7.1 <%s>: Sender address not owned by user" % sender)
        assert backend_mails(sub.backend) == []
        assert sub.wait_log("reject: MAIL from")
    c.cmd("QUIT")


@pytest.mark.parametrize("user,sender,ok", [
    ("bob", "bob@example.org", True),            # USER@local-domain
    ("bob", "Bob@EXAMPLE.org", True),
    ("bob", "bob@a.sub.example.org", True),      # .sub.example.org lists subdomains
    ("bob", "bob@sub.example.org", False),       # ...but not sub.example.org itself
    ("bob", "bob@other.example", False),         # not a local domain
    ("bob", "alice@example.org", False),
    ("bob", "bobby@example.org", False),
    ("bob", "bo@example.org", False),
    ("joe@example.net", "joe@example.net", True),   # the address that is the user name
    ("joe@example.net", "joe@example.org", False),  # the local part must be the whole user name
    ("joe@example.net", "other@example.net", False),
], ids=lambda v: str(v))
def test_default_ownership_without_sender_logins(ravelin_factory, tmp_path, cmdbackend, dns,
                                                 users, user, sender, ok):
    r = start(ravelin_factory, tmp_path, cmdbackend, dns, users, senders=False)
    c = login(r, user)
    code, text = c.cmd("MAIL FROM:<%s>" % sender)
    if ok:
        assert code == 250, text
    else:
        assert (code, text) == (553, "553 5.7.1 <%s>: Sender address not owned by user" % sender)
    c.cmd("QUIT")


def test_refused_sender_then_owned_sender_in_same_session(sub):
    c = login(sub, "bob")
    assert c.cmd("MAIL FROM:<alice@example.org>")[0] == 553
    code, text = c.message("bob@example.org", ["x@other.example"], body("bob@example.org"))
    assert code == 250, text
    c.cmd("QUIT")
    m = sub.backend.messages()
    assert len(m) == 1 and m[0]["mail"].startswith("FROM:<bob@example.org>")
    assert m[0]["xclient"]["LOGIN"] == "bob"
    assert backend_mails(sub.backend) == ["FROM:<bob@example.org>"]


@pytest.mark.parametrize("frm,extra,ok", [
    ("bob@example.org", "", True),
    ("Bob Example <bob@example.org>", "", True),
    ('"Bob, the Builder" <BOB@example.org>', "", True),
    ("shared@example.org", "", True),
    ("alice@example.org", "", False),
    ("Bob <alice@example.org>", "", False),
    ("bob@example.org, alice@example.org", "Sender: bob@example.org\r\n", False),
    ("bob@example.org, shared@example.org", "Sender: bob@example.org\r\n", True),
], ids=lambda v: str(v))
def test_from_header_must_be_owned(sub, frm, extra, ok):
    c = login(sub, "bob")
    code, text = c.message("bob@example.org", ["u@example.org"], body(frm, extra))
    c.cmd("QUIT")
    if ok:
        assert code == 250, text
        assert len(sub.backend.messages()) == 1
    else:
        assert (code, text) == (550, "550 5.7.1 From: header not owned by user")
        assert sub.backend.messages() == []


def test_implicit_tls_submission_end_to_end(sub):
    with smtplib.SMTP_SSL("127.0.0.1", sub.port465, timeout=10,
                          context=lib.client_ctx()) as s:
        s.ehlo("client.test")
        with pytest.raises(smtplib.SMTPSenderRefused) as e:
            s.sendmail("alice@example.net", ["x@other.example"], body("alice@example.net"))
        assert e.value.smtp_code == 530
        s.login("alice", PW["alice"])
        s.sendmail("alice@example.net", ["x@other.example"], body("alice@example.net"))
    m = sub.backend.messages()
    assert len(m) == 1 and m[0]["xclient"]["LOGIN"] == "alice"
    assert m[0]["rcpts"] == ["TO:<x@other.example>"]
