"""Shared helpers for the sender-authentication end-to-end tests (issue 5):
SPF, DKIM, DMARC, Authentication-Results and From: checks through the real
build/ravelin, the test DNS server and the recording backend. No tests
live here.

Client addresses are presented through a `proxy-protocol` listener
(harness.proxy_v1) with TEST-NET addresses: SPF does not check loopback
clients. Signing keys are generated per test module (python3-dkim signs,
cryptography and PyNaCl make the keys) and published in the DNS zones.
Everything listens on and talks to loopback only.
"""

import base64
import json
import os
import subprocess
import time

import authres
import dkim
import nacl.signing
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

import harness

HOST = "mx.test.example"
CTL = os.path.join(harness.BUILD, "ravelinctl")
SHIPPED_RULES = os.path.join(harness.ROOT, "rules", "*.rules")

# Client addresses (data only: never dialled).
GOOD4 = "192.0.2.5"          # allowed by the pass.example SPF record
BAD4 = "198.51.100.66"       # allowed by nothing
GOOD6 = "2001:db8:1::5"      # allowed by pass.example (ip6)
BAD6 = "2001:db8:ffff::66"
MYNET = "10.255.255.7"       # in base_config's mynetworks


class Keys:
    """One RSA (2048) and one ed25519 key pair, and their DNS records."""

    def __init__(self):
        k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.rsa_priv = k.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.TraditionalOpenSSL,
                                        serialization.NoEncryption())
        spki = k.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
        self.rsa_txt = "v=DKIM1; k=rsa; p=" + base64.b64encode(spki).decode()
        sk = nacl.signing.SigningKey.generate()
        self.ed_priv = base64.b64encode(bytes(sk))
        self.ed_txt = "v=DKIM1; k=ed25519; p=" + base64.b64encode(bytes(sk.verify_key)).decode()


def key_zones(keys, domain, rsa_sel="rsa", ed_sel="ed"):
    """The two key records of a signing domain."""
    return {
        "%s._domainkey.%s" % (rsa_sel, domain): [{"TXT": keys.rsa_txt}],
        "%s._domainkey.%s" % (ed_sel, domain): [{"TXT": keys.ed_txt}],
    }


def sign(keys, msg, domain, selector=None, alg="rsa", canon=(b"relaxed", b"relaxed")):
    """msg (bytes, CRLF) with a DKIM-Signature prepended."""
    if alg == "rsa":
        sig = dkim.sign(msg, (selector or "rsa").encode(), domain.encode(), keys.rsa_priv,
                        canonicalize=canon, signature_algorithm=b"rsa-sha256")
    else:
        sig = dkim.sign(msg, (selector or "ed").encode(), domain.encode(), keys.ed_priv,
                        canonicalize=canon, signature_algorithm=b"ed25519-sha256")
    return sig + msg


def b_tag(signed):
    """The b= value of the first DKIM-Signature of a signed message."""
    head = signed.split(b"\r\n\r\n", 1)[0].decode()
    unfolded = head.replace("\r\n\t", "\t").replace("\r\n ", " ")
    for line in unfolded.split("\r\n"):
        if line.lower().startswith("dkim-signature:"):
            for tag in line.split(":", 1)[1].split(";"):
                name, _, value = tag.strip().partition("=")
                if name.strip() == "b":
                    return "".join(value.split())
    raise AssertionError("no b= tag")


def message(frm="Alice <alice@pass.example>", subject="test", body="Hello.\r\n",
            extra=""):
    """A small well-formed message (CRLF) as bytes."""
    head = ""
    if frm is not None:
        head += "From: %s\r\n" % frm
    head += ("To: <u@example.org>\r\nSubject: %s\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
             "Message-ID: <%s@test.example>\r\n%s" % (subject, time.time_ns(), extra))
    return (head + "\r\n" + body).encode()


def mkpasswd(password):
    """A crypt(3) hash made by mkpasswd (package whois)."""
    r = subprocess.run(["mkpasswd", "-m", "sha-512", "-s"], input=password.encode(),
                       check=True, capture_output=True)
    return r.stdout.decode().strip()


def start(factory, backend, dns, tmp, rules=None, extra="", flags="proxy-protocol"):
    """A ravelin behind a proxy-protocol listener. rules: None (no rules),
    "shipped" (rules/*.rules), or the text of a rule file."""
    tmp = str(tmp)
    lines = ["dns_timeout 1s", "stats_socket %s" % os.path.join(tmp, "stats.sock")]
    if rules == "shipped":
        lines.append("rules %s" % SHIPPED_RULES)
    elif rules:
        path = os.path.join(tmp, "test.rules")
        with open(path, "w") as f:
            f.write(rules)
        lines.append("rules %s" % path)
    lines.append(extra)
    port = harness.free_port()
    conf = harness.base_config(port, backend.port, dns.port, extra="\n".join(lines),
                               flags=flags).replace("dns_timeout 2s\n", "")
    r = factory(conf, port)
    r.backend = backend
    r.dns = dns
    r.stats_sock = os.path.join(tmp, "stats.sock")
    return r


class Session(harness.Client):
    """A client presented as ip through the PROXY header."""

    def __init__(self, r, ip, helo="mail.client.example"):
        super().__init__(r.port, preamble=harness.proxy_v1(ip))
        self.greet(helo)


def send(r, ip, sender, body, rcpts=("u@example.org",), helo="mail.client.example"):
    """One transaction from ip; returns (code, text) of the last reply."""
    c = Session(r, ip, helo)
    try:
        return c.message(sender, list(rcpts), body)
    finally:
        c.close()


def last(backend):
    """The data of the last message the backend received."""
    msgs = backend.messages()
    assert msgs, "the backend got no message"
    return msgs[-1]["data"]


def ar_fields(data):
    """Every Authentication-Results field of the header, unfolded, with name."""
    head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    out = []
    for field in head.replace("\r\n\t", "\t").replace("\r\n ", " ").split("\r\n"):
        if field.lower().startswith("authentication-results:"):
            out.append(field.replace("\t", " "))
    return out


def ar(data):
    """Our (first, prepended) Authentication-Results parsed with python3-authres."""
    fields = ar_fields(data)
    assert fields and data.lower().startswith(b"authentication-results:"), data[:300]
    h = authres.AuthenticationResultsHeader.parse(fields[0])
    assert h.authserv_id == HOST
    return h


def results(data):
    """{method: [(result, {ptype.name: value}, reason), ...]} from our A-R."""
    out = {}
    for res in ar(data).results:
        props = {"%s.%s" % (p.type, p.name): p.value for p in res.properties}
        out.setdefault(res.method, []).append((res.result, props, res.reason))
    return out


def fields(data):
    """Every header field of a message as (name, unfolded value)."""
    head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    out = []
    for f in head.replace("\r\n\t", " ").replace("\r\n ", " ").split("\r\n"):
        n, _, v = f.partition(":")
        out.append((n, v.strip()))
    return out


def added(data, name):
    """Values of the header fields called name (the test messages never
    carry the names ravelin adds, so these are ravelin's)."""
    return [v for n, v in fields(data) if n.lower() == name.lower()]


def stats(r):
    """`ravelinctl -s SOCK show stats` as a dict."""
    out = subprocess.run([CTL, "-s", r.stats_sock, "show", "stats"], check=True,
                         capture_output=True, timeout=10)
    return json.loads(out.stdout.decode())


def wait_counter(r, name, label, value, timeout=5.0):
    """Poll a labelled counter until it reaches value; returns what it was."""
    end = time.time() + timeout
    got = None
    while time.time() < end:
        got = stats(r).get(name, {}).get(label, 0)
        if got == value:
            return got
        time.sleep(0.05)
    return got
