"""Shared helpers for the access-control end-to-end tests (issue 3):
certificates made with the openssl CLI, password hashes made with
mkpasswd, configurations with TLS/AUTH/relay settings, the stats socket,
and small SMTP/TLS client helpers. No tests live here.

Everything listens on and talks to loopback only.
"""

import ast
import base64
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import time

import harness

CTL = os.path.join(harness.BUILD, "ravelinctl")
F2B_REGEX = "/usr/bin/fail2ban-regex"
F2B_FILTER = os.path.join(harness.ROOT, "etc", "fail2ban", "filter.d", "ravelin.conf")
HOST = "mx.test.example"


def make_cert(tmp, name="cert", cn=HOST, kind="ec"):
    """A self-signed certificate and key in tmp; returns (cert, key)."""
    crt = os.path.join(str(tmp), name + ".crt")
    key = os.path.join(str(tmp), name + ".key")
    if kind == "ec":
        newkey = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    else:
        newkey = ["-newkey", "rsa:2048"]
    subprocess.run(["openssl", "req", "-x509"] + newkey +
                   ["-nodes", "-keyout", key, "-out", crt, "-days", "2",
                    "-subj", "/CN=" + cn, "-addext", "subjectAltName=DNS:" + cn],
                   check=True, capture_output=True)
    return crt, key


def mkpasswd(password, method="yescrypt"):
    """A crypt(3) hash made by mkpasswd (package whois)."""
    r = subprocess.run(["mkpasswd", "-m", method, "-s"], input=password.encode(),
                       check=True, capture_output=True)
    return r.stdout.decode().strip()


def write(tmp, name, text):
    path = os.path.join(str(tmp), name)
    with open(path, "w") as f:
        f.write(text)
    return path


def config(listens, backend_port, dns_port, extra="", backend_flags="xclient",
           local_domains="example.org .sub.example.org", mynetworks="10.255.255.0/24"):
    """A ravelin.conf: listens is a list of "ADDR:PORT PROFILE FLAGS" strings."""
    lines = ["hostname " + HOST, "log stderr", "workers 2"]
    lines += ["listen " + li for li in listens]
    lines += ["backend 127.0.0.1:%d %s" % (backend_port, backend_flags),
              "local_domains " + local_domains,
              "mynetworks " + mynetworks,
              "dns_resolver 127.0.0.1:%d" % dns_port,
              "dns_timeout 2s",
              "client_timeout 20s",
              "backend_timeout 10s",
              "backend_connect_timeout 5s",
              "auth_failure_delay 200ms",
              "shutdown_timeout 2s",
              extra]
    return "\n".join(lines) + "\n"


def stats(sock_path):
    """`ravelinctl -s SOCK show stats` as a dict."""
    r = subprocess.run([CTL, "-s", sock_path, "show", "stats"], check=True,
                       capture_output=True, timeout=10)
    return json.loads(r.stdout.decode())


def wait_stat(sock_path, key, value, timeout=5.0):
    """Counters are per worker and merged on demand: poll a little."""
    end = time.time() + timeout
    got = None
    while time.time() < end:
        got = stats(sock_path).get(key)
        if got == value:
            return got
        time.sleep(0.05)
    return got


def b64(s):
    if isinstance(s, str):
        s = s.encode()
    return base64.b64encode(s).decode()


def plain(user, password, authzid=""):
    return b64("%s\0%s\0%s" % (authzid, user, password))


def client_ctx(minv=None, maxv=None, ciphers=None):
    """A client context that accepts any certificate (tests check names themselves)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if minv:
        ctx.minimum_version = minv
    if maxv:
        ctx.maximum_version = maxv
    if ciphers:
        ctx.set_ciphers(ciphers)
    return ctx


class TLSClient(harness.Client):
    """harness.Client that can switch to TLS (STARTTLS) or start in TLS."""

    def __init__(self, port, implicit=False, ctx=None, **kw):
        super().__init__(port, **kw)
        if implicit:
            self.sock = (ctx or client_ctx()).wrap_socket(self.sock, server_hostname=HOST)

    def starttls(self, ctx=None):
        code, text = self.cmd("STARTTLS")
        assert code == 220, text
        assert self.buf == b"", "bytes after the 220 to STARTTLS: %r" % self.buf
        self.sock = (ctx or client_ctx()).wrap_socket(self.sock, server_hostname=HOST)
        return self.sock

    def pending(self, wait=0.3):
        """Bytes the server sent without being asked (within wait seconds)."""
        self.sock.settimeout(wait)
        try:
            data = self.buf + self.sock.recv(65536)
        except (socket.timeout, ssl.SSLWantReadError):
            data = self.buf
        finally:
            self.sock.settimeout(10)
        return data


def s_client(port, starttls=True, extra=(), send=b"QUIT\r\n", timeout=15):
    """Run `openssl s_client` against 127.0.0.1:port; returns (rc, output)."""
    cmd = ["openssl", "s_client", "-connect", "127.0.0.1:%d" % port,
           "-servername", HOST, "-ign_eof"]
    if starttls:
        cmd += ["-starttls", "smtp"]
    cmd += list(extra)
    r = subprocess.run(cmd, input=send, capture_output=True, timeout=timeout)
    return r.returncode, (r.stdout + r.stderr).decode("utf-8", "replace")


def peer_cn(port, implicit=False, ctx=None):
    """The subject CN of the certificate ravelin presents now."""
    der = None
    if implicit:
        c = TLSClient(port, implicit=True, ctx=ctx)
        der = c.sock.getpeercert(binary_form=True)
    else:
        c = TLSClient(port)
        c.reply()
        c.cmd("EHLO client.test")
        c.starttls(ctx)
        der = c.sock.getpeercert(binary_form=True)
    c.close()
    pem = ssl.DER_cert_to_PEM_cert(der)
    r = subprocess.run(["openssl", "x509", "-noout", "-subject"], input=pem.encode(),
                       capture_output=True, check=True)
    return r.stdout.decode().strip().split("CN", 1)[1].lstrip(" =")


def have_fail2ban():
    return os.path.exists(F2B_REGEX) and os.path.exists("/etc/fail2ban/filter.d/common.conf")


def syslog_copy(r, tmp, needle):
    """ravelin's stderr lines holding needle, rewritten with the prefix
    syslog gives them ("Jan  5 10:00:00 mx ravelin[PID]: SID: ..."), so
    fail2ban-regex judges the very text ravelin wrote."""
    out = []
    for line in r.log().splitlines():
        if needle in line and "]: " in line:
            prog, _, rest = line.partition(" ")[2].partition("]: ")
            out.append("Jan  5 10:00:00 mx %s]: %s\n" % (prog, rest))
    assert out, "no log line with %r" % needle
    return write(tmp, "syslog-copy", "".join(out))


def fail2ban_regex(path):
    """Hosts fail2ban-regex (the real one) finds in path with the shipped
    filter, one per matched line, in order."""
    fdir = os.path.join(os.path.dirname(path), "filter.d")
    os.makedirs(fdir, exist_ok=True)
    # A filter given by path reads its includes (common.conf) beside it.
    shutil.copy(F2B_FILTER, os.path.join(fdir, "ravelin.conf"))
    shutil.copy("/etc/fail2ban/filter.d/common.conf", os.path.join(fdir, "common.conf"))
    r = subprocess.run([F2B_REGEX, "-o", "row", path, os.path.join(fdir, "ravelin.conf")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    rows = [ast.literal_eval(ln.strip().rstrip(",")) for ln in r.stdout.splitlines()
            if ln.startswith("[")]
    return [row[0] for row in rows]


def wait_log_re(r, pattern, timeout=5.0):
    """The first match of a regular expression in ravelin's log, waiting for it."""
    end = time.time() + timeout
    while True:
        m = re.search(pattern, r.log())
        if m or time.time() > end:
            return m
        time.sleep(0.05)


# A client as the log names it: "name[addr]" (the name depends on PTR data).
CLIENT_127 = r"\S+\[127\.0\.0\.1\]"


def swaks_tls():
    """swaks can do TLS (it needs Net::SSLeay, package libnet-ssleay-perl)."""
    r = subprocess.run(["swaks", "--support"], capture_output=True, timeout=30)
    return b"TLS supported" in r.stdout + r.stderr
