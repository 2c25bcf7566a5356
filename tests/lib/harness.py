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


# Under `make check-valgrind` (VALGRIND=1, RAVELIN_WRAPPER set by
# tests/run.sh) ravelin runs under memcheck, about 20 times slower: waits
# the harness owns are multiplied by SLOW (RAVELIN_SLOW overrides it). The
# normal path keeps SLOW = 1.
VALGRIND = bool(os.environ.get("VALGRIND")) and bool(os.environ.get("RAVELIN_WRAPPER"))
SLOW = float(os.environ.get("RAVELIN_SLOW", "10" if VALGRIND else "1"))


def wrapper(tmp, tag):
    """The command prefix ravelin is started with: empty normally, else
    RAVELIN_WRAPPER with memcheck's report written to its own file in tmp
    (so the daemon's log stays the daemon's). Returns (argv, report path)."""
    w = os.environ.get("RAVELIN_WRAPPER", "").split()
    if not w or not VALGRIND:
        return w, None
    # %p: valgrind's own pid, which is the daemon's (no fork, no exec), so
    # a restart on the same port does not overwrite the first report.
    path = os.path.join(tmp, "valgrind-%s.%%p.log" % tag)
    return w + ["--log-file=" + path], path


def valgrind_verdict(path):
    """None when memcheck's report at path is clean (no error, nothing
    definitely/indirectly/possibly lost), else the report's text. A report
    without its final ERROR SUMMARY (process killed) is not clean."""
    if path is None:
        return None
    try:
        with open(path, errors="replace") as f:
            text = f.read()
    except OSError:
        return "no valgrind report at %s" % path
    import re
    ok = re.search(r"ERROR SUMMARY: 0 errors", text) is not None
    for kind in ("definitely lost", "indirectly lost", "possibly lost"):
        m = re.search(kind + r": ([0-9,]+) bytes", text)
        if m and m.group(1) != "0":
            ok = False
    return None if ok else text


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, host="127.0.0.1", timeout=10.0, proc=None):
    end = time.time() + timeout * SLOW
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
        wrap, self.vglog = wrapper(tmp, str(port or free_port()))
        self.proc = subprocess.Popen(wrap + [os.path.join(BUILD, "ravelin"), "-d", "-c", self.conf],
                                     stdout=self.logfh, stderr=subprocess.STDOUT)
        if self.vglog:
            self.vglog = self.vglog.replace("%p", str(self.proc.pid))
        if wait and port:
            wait_port(port, proc=self.proc, timeout=10)
        for p in extra_ports:
            wait_port(p, proc=self.proc, timeout=10)
        if VALGRIND and wait and port:
            # The listening sockets accept (kernel backlog) before the
            # workers and the stats socket exist: a moment normally, a
            # second or more under memcheck.
            self.wait_log(" started: ", timeout=10)

    def log(self):
        with open(self.logfile, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_log(self, needle, timeout=5.0):
        end = time.time() + timeout * SLOW
        while time.time() < end:
            if needle in self.log():
                return True
            time.sleep(0.05)
        return False

    def wait_re(self, pattern, timeout=5.0):
        """Wait for a log line matching a regular expression; the match or None.
        "[IP]" in a pattern stands for any client name before that address."""
        import re
        end = time.time() + timeout * SLOW
        while True:
            m = re.search(pattern, self.log())
            if m or time.time() >= end:
                return m
            time.sleep(0.05)

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=20):
        """SIGTERM; returns the exit code. Sanitizer/valgrind reports fail it:
        under valgrind an unclean memcheck report is appended to the log
        and makes the exit code 99 (valgrind's --error-exitcode)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout * SLOW)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self.logfh.closed:
            self.logfh.close()
            bad = valgrind_verdict(self.vglog)
            if bad is not None:
                with open(self.logfile, "ab") as f:
                    f.write(b"\n--- valgrind memcheck report ---\n" + bad.encode())
                self.vgbad = True
        if getattr(self, "vgbad", False) and self.proc.returncode in (0, -15):
            return 99
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


def proxy_v1(src, dst="127.0.0.1", sport=40000, dport=25):
    fam = "TCP6" if ":" in src else "TCP4"
    if fam == "TCP6" and ":" not in dst:
        dst = "::1"
    return ("PROXY %s %s %s %d %d\r\n" % (fam, src, dst, sport, dport)).encode()


class Client:
    """A raw SMTP client for byte-exact and protocol-abuse tests."""

    def __init__(self, port, host="127.0.0.1", source=None, timeout=10, preamble=b""):
        timeout = timeout * SLOW if timeout else timeout
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
        self.sock.settimeout(timeout * SLOW)
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


ADDED_TOP = (b"authentication-results:", b"received-spf:")


def _fields(data):
    """The header section of data as a list of fields, each a list of its
    lines (folds included), and the index of the line after the header."""
    lines = data.split(b"\r\n")
    fields = []
    i = 0
    while i < len(lines) and lines[i] != b"":
        f = [lines[i]]
        i += 1
        while i < len(lines) and lines[i][:1] in (b" ", b"\t"):
            f.append(lines[i])
            i += 1
        fields.append(f)
    return fields, lines, i


def is_our_received(field):
    """A Received field ravelin wrote: its value says "(ravelin)". A
    client's own Received fields never match."""
    text = b" ".join(field)
    return text.lower().startswith(b"received:") and b" (ravelin) with " in text


def _added(data):
    """Indices (first line, line count) of the fields ravelin prepended:
    Authentication-Results and Received-SPF at the very top, and our
    Received field (the first one; it sits above the client's first
    field, below any add_header fields)."""
    fields, lines, _ = _fields(data)
    out = []
    pos = 0
    k = 0
    while k < len(fields) and fields[k][0].lower().startswith(ADDED_TOP):
        out.append((pos, len(fields[k])))
        pos += len(fields[k])
        k += 1
    while k < len(fields):
        if is_our_received(fields[k]):
            out.append((pos, len(fields[k])))
            break
        pos += len(fields[k])
        k += 1
    return out, lines


def strip_added(data):
    """The message as the client sent it: data without the header fields
    ravelin prepends (Authentication-Results, Received-SPF at the top, and
    its own Received trace field). Fields of rule add_header actions stay,
    and so do a client's own Received and Authentication-Results fields."""
    added, lines = _added(data)
    drop = set()
    for first, n in added:
        drop.update(range(first, first + n))
    return b"\r\n".join(l for j, l in enumerate(lines) if j not in drop)


def added_headers(data):
    """The header fields ravelin prepended, unfolded, as (name, value):
    Authentication-Results, Received-SPF and its own Received."""
    added, lines = _added(data)
    out = []
    for first, n in added:
        field = "\r\n".join(l.decode("utf-8", "replace") for l in lines[first:first + n])
        field = field.replace("\r\n\t", " ").replace("\r\n ", " ")
        name, _, value = field.partition(":")
        out.append((name, value.strip()))
    return out


def our_received(data):
    """ravelin's own Received field, unfolded (None when there is none)."""
    for name, value in added_headers(data):
        if name.lower() == "received":
            return value
    return None
