"""harness.py - start the real build/ravelin, a recording backend and a
DNS server on loopback for end-to-end tests.

Everything listens on 127.0.0.1 on free ports; nothing else is contacted.
"""

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BUILD = os.environ.get("RAVELIN_BUILD", os.path.join(ROOT, "build"))
PY = "/usr/bin/python3"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, host="127.0.0.1", timeout=10.0, proc=None):
    end = time.time() + timeout
    while time.time() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("process exited with %s" % proc.returncode)
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.03)
    raise RuntimeError("port %d did not open" % port)


class Backend:
    """The recording SMTP backend (tests/lib/smtpbackend.py)."""

    def __init__(self, tmp, *extra, port=None):
        self.port = port or free_port()
        self.log = os.path.join(tmp, "backend-%d.jsonl" % self.port)
        open(self.log, "w").close()
        self.proc = subprocess.Popen(
            [PY, os.path.join(HERE, "smtpbackend.py"), "--port", str(self.port),
             "--log", self.log] + list(extra),
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        line = self.proc.stdout.readline()
        if not line.startswith(b"ready"):
            raise RuntimeError("backend did not start")

    def messages(self):
        out = []
        with open(self.log) as f:
            for line in f:
                m = json.loads(line)
                m["data"] = base64.b64decode(m["data"])
                m["body"] = strip_added(m["data"])
                out.append(m)
        return out

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


class Ravelin:
    """build/ravelin with a configuration written by the test."""

    def __init__(self, tmp, config, port=None, wait=True, extra_ports=()):
        self.tmp = tmp
        self.port = port
        self.conf = os.path.join(tmp, "ravelin-%d.conf" % (port or free_port()))
        with open(self.conf, "w") as f:
            f.write(config)
        self.logfile = os.path.join(tmp, "ravelin-%d.log" % (port or 0))
        self.logfh = open(self.logfile, "wb")
        wrapper = os.environ.get("RAVELIN_WRAPPER", "").split()
        self.proc = subprocess.Popen(wrapper + [os.path.join(BUILD, "ravelin"), "-d", "-c", self.conf],
                                     stdout=self.logfh, stderr=subprocess.STDOUT)
        if wait and port:
            wait_port(port, proc=self.proc, timeout=30 if wrapper else 10)
        for p in extra_ports:
            wait_port(p, proc=self.proc, timeout=30 if wrapper else 10)

    def log(self):
        with open(self.logfile, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_log(self, needle, timeout=5.0):
        end = time.time() + timeout
        while time.time() < end:
            if needle in self.log():
                return True
            time.sleep(0.05)
        return False

    def wait_re(self, pattern, timeout=5.0):
        """Wait for a log line matching a regular expression; the match or None.
        "[IP]" in a pattern stands for any client name before that address."""
        import re
        end = time.time() + timeout
        while True:
            m = re.search(pattern, self.log())
            if m or time.time() >= end:
                return m
            time.sleep(0.05)

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=20):
        """SIGTERM; returns the exit code. Sanitizer/valgrind reports fail it."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logfh.close()
        return self.proc.returncode


def base_config(port, backend_port, dns_port, extra="", profile="inbound", flags="",
                mode="xclient"):
    return """hostname mx.test.example
log stderr
workers 2
listen 127.0.0.1:%d %s %s
backend 127.0.0.1:%d %s
local_domains example.org .sub.example.org
mynetworks 10.255.255.0/24
dns_resolver 127.0.0.1:%d
dns_timeout 2s
%s
""" % (port, profile, flags, backend_port, mode, dns_port, extra)


ADDED_FIELDS = (b"authentication-results:", b"received-spf:")


def strip_added(data):
    """The message as the client sent it: data without the header fields
    ravelin prepends (Authentication-Results, Received-SPF). Only fields
    at the very top are removed, so a client's own are kept."""
    lines = data.split(b"\r\n")
    i = 0
    while i < len(lines) and lines[i].lower().startswith(ADDED_FIELDS):
        i += 1
        while i < len(lines) and lines[i][:1] in (b" ", b"\t"):
            i += 1
    return b"\r\n".join(lines[i:])


def proxy_v1(src, dst="127.0.0.1", sport=40000, dport=25):
    fam = "TCP6" if ":" in src else "TCP4"
    if fam == "TCP6" and ":" not in dst:
        dst = "::1"
    return ("PROXY %s %s %s %d %d\r\n" % (fam, src, dst, sport, dport)).encode()


class Client:
    """A raw SMTP client for byte-exact and protocol-abuse tests."""

    def __init__(self, port, host="127.0.0.1", source=None, timeout=10, preamble=b""):
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.buf = b""
        if preamble:
            self.sock.sendall(preamble)

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def reply(self):
        """One whole (multi-line) reply as (code, text)."""
        lines = []
        while True:
            while b"\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("closed; got %r" % (self.buf + b"".join(lines)))
                self.buf += chunk
            line, _, self.buf = self.buf.partition(b"\n")
            line = line.rstrip(b"\r").decode("utf-8", "replace")
            lines.append(line)
            if len(line) < 4 or line[3] != "-":
                return int(line[:3]), "\n".join(lines)

    def cmd(self, line):
        self.send(line + "\r\n")
        return self.reply()

    def closed(self, timeout=5):
        """True when the server closed the connection (after any pending data)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
        except socket.timeout:
            return False
        except OSError:
            return True

    def greet(self, ehlo="client.test"):
        """Read the banner and say EHLO; returns the EHLO reply text."""
        code, text = self.reply()
        assert code == 220, text
        code, text = self.cmd("EHLO " + ehlo)
        assert code == 250, text
        return text

    def replies(self, n):
        """n replies, in order, as a list of (code, text)."""
        return [self.reply() for _ in range(n)]

    def message(self, sender, rcpts, body, params=""):
        """One whole transaction; returns the final reply (code, text).
        body is the raw DATA content (dot-stuffed by the caller when
        needed); a CRLF is added when it does not end with one, then the
        terminating ".<CRLF>"."""
        code, text = self.cmd("MAIL FROM:<%s>%s" % (sender, params))
        if code != 250:
            return code, text
        ok = 0
        for r in rcpts:
            code, text = self.cmd("RCPT TO:<%s>" % r)
            ok += code == 250
        code, text = self.cmd("DATA")
        if code != 354:
            return code, text
        if isinstance(body, str):
            body = body.encode()
        if body and not body.endswith(b"\r\n"):
            body += b"\r\n"
        self.send(body + b".\r\n")
        return self.reply()

    def close(self):
        self.sock.close()


def start_proxy(factory, backend, dns, extra="", **kw):
    """A ravelin on a free port in front of backend, with extra config lines."""
    port = free_port()
    r = factory(base_config(port, backend.port, dns.port, extra=extra, **kw), port)
    r.backend = backend
    r.dns = dns
    return r


def strip_added(data):
    """The message as the client sent it: drop the header fields ravelin
    prepends (Authentication-Results, Received-SPF, rule add_header ones
    listed in extra) from the top of a forwarded message."""
    added = (b"authentication-results:", b"received-spf:")
    lines = data.split(b"\r\n")
    i = 0
    while i < len(lines) and lines[i].lower().startswith(added):
        i += 1
        while i < len(lines) and lines[i][:1] in (b" ", b"\t"):
            i += 1
    return b"\r\n".join(lines[i:])


def added_headers(data):
    """The header fields ravelin prepended, unfolded, as (name, value)."""
    out = []
    head = data[:len(data) - len(strip_added(data))]
    for field in head.decode("utf-8", "replace").replace("\r\n\t", " ").replace("\r\n ", " ").split("\r\n"):
        if ":" in field:
            n, _, v = field.partition(":")
            out.append((n, v.strip()))
    return out
