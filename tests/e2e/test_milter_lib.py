"""Shared helpers for the milter-mode end-to-end tests (issue 8): start the
real `build/ravelin -M` with a configuration and rule files written by the
test, and drive it with miltertest (Debian package miltertest) through Lua
scripts written into the test's temporary directory. No tests live here.

Everything listens on 127.0.0.1 (or a UNIX socket in the temp dir); the
client addresses presented through mt.conninfo are documentation-range
data, never dialled.
"""

import json
import os
import shutil
import subprocess
import time

import harness

MILTERTEST = shutil.which("miltertest") or "/usr/bin/miltertest"
CTL = os.path.join(harness.BUILD, "ravelinctl")
HOST = "mx.test.example"

# Lua helpers every script starts with. SOCK is set with -D by run().
PRELUDE = r'''
conn = mt.connect(SOCK, 100, 0.05)
if conn == nil then error("cannot connect to " .. SOCK) end
mt.set_timeout(20)

-- expect: the call succeeded and the milter answered want.
function expect(want, what, err)
  if err ~= nil then error(what .. ": " .. tostring(err)) end
  local got = mt.getreply(conn)
  if got ~= want then
    error(string.format("%s: reply '%s', want '%s'", what,
          string.char(math.floor(got)), string.char(math.floor(want))))
  end
end

-- check: an eom_check (or any condition) held.
function check(cond, what)
  if not cond then error("check failed: " .. what) end
end

-- headers: send {name, value} pairs, each answered with continue.
function headers(list)
  for i, h in ipairs(list) do
    expect(SMFIR_CONTINUE, "header " .. h[1], mt.header(conn, h[1], h[2]))
  end
end
'''


def lua(s):
    """A Lua string literal for s (bytes or str), byte-exact."""
    if isinstance(s, str):
        s = s.encode()
    out = []
    for b in s:
        c = chr(b)
        if c in '"\\':
            out.append("\\" + c)
        elif 32 <= b < 127:
            out.append(c)
        else:
            out.append("\\%03d" % b)
    return '"' + "".join(out) + '"'


def split_message(msg, fold="\r\n"):
    """(headers, body) of a CRLF message: headers as [(name, value)] with
    the value as the MTA passes it (leading space dropped, folds given as
    fold: Postfix and Sendmail pass "\\n")."""
    head, _, body = msg.partition(b"\r\n\r\n")
    fields = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1][1] += fold.encode() + line
        else:
            name, _, value = line.partition(b":")
            fields.append([name, value])
    out = []
    for name, value in fields:
        if value.startswith(b" "):
            value = value[1:]
        out.append((name.decode(), value))
    return out, body


def lua_headers(fields):
    """A Lua list of {name, value} for headers()."""
    return "{" + ", ".join("{%s, %s}" % (lua(n), lua(v)) for n, v in fields) + "}"


class Milter:
    """build/ravelin -M with a configuration written by the test."""

    def __init__(self, tmp, dns, rules=None, extra="", socket=None):
        self.tmp = str(tmp)
        self.port = harness.free_port()
        self.sock = socket or "inet:%d@127.0.0.1" % self.port
        self.stats_sock = os.path.join(self.tmp, "stats.sock")
        lines = [
            "hostname %s" % HOST,
            "log stderr",
            "milter_socket %s" % self.sock,
            "local_domains example.org .sub.example.org",
            "mynetworks 10.255.255.0/24",
            "dns_resolver 127.0.0.1:%d" % dns.port,
            "dns_timeout 1s",
            "stats_socket %s" % self.stats_sock,
        ]
        if rules is not None:
            rdir = os.path.join(self.tmp, "rules")
            os.makedirs(rdir, exist_ok=True)
            for name, text in rules.items():
                with open(os.path.join(rdir, name), "w") as f:
                    f.write(text)
            lines.append("rules %s/*.rules" % rdir)
        lines.append(extra)
        self.conf = os.path.join(self.tmp, "milter.conf")
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        self.logfile = os.path.join(self.tmp, "milter.log")
        self.logfh = open(self.logfile, "wb")
        wrapper = os.environ.get("RAVELIN_WRAPPER", "").split()
        self.proc = subprocess.Popen(
            wrapper + [os.path.join(harness.BUILD, "ravelin"), "-d", "-M", "-c", self.conf],
            stdout=self.logfh, stderr=subprocess.STDOUT)
        slow = 30 if wrapper else 10
        if self.sock.startswith("inet:"):
            harness.wait_port(self.port, proc=self.proc, timeout=slow)
        else:
            path = self.sock.split(":", 1)[1]
            end = time.time() + slow
            while not os.path.exists(path) and time.time() < end:
                if self.proc.poll() is not None:
                    raise RuntimeError("ravelin -M exited: %s" % self.log())
                time.sleep(0.03)
        self.nscript = 0

    def run(self, script, check=True):
        """Run a miltertest script (PRELUDE prepended); its stdout. A Lua
        error (a failed expect/check) fails the test with the output."""
        self.nscript += 1
        path = os.path.join(self.tmp, "t%d.lua" % self.nscript)
        with open(path, "w") as f:
            # miltertest does not print a script's error: catch and echo it.
            f.write(PRELUDE + "local good, err = pcall(function()\n" + script +
                    "\nend)\nif not good then mt.echo(\"FAILED: \" .. tostring(err)) end\n"
                    "mt.disconnect(conn)\nif not good then error(err) end\n")
        r = subprocess.run([MILTERTEST, "-D", "SOCK=" + self.sock, "-s", path],
                           capture_output=True, text=True, timeout=60)
        if check:
            assert r.returncode == 0 and "FAILED: " not in r.stdout, \
                "miltertest failed (%d):\n%s\n%s\n--- ravelin log:\n%s" % (
                    r.returncode, r.stdout, r.stderr, self.log()[-3000:])
        return r.stdout

    def log(self):
        with open(self.logfile, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_log(self, needle, timeout=5.0):
        end = time.time() + timeout
        while time.time() < end:
            if needle in self.log():
                return True
            time.sleep(0.03)
        return False

    def stats(self):
        r = subprocess.run([CTL, "-s", self.stats_sock, "show", "stats"], capture_output=True,
                           text=True, timeout=20)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    def wait_stats(self, pred, timeout=5.0):
        """The stats once pred(stats) holds (counters of a closing
        connection land a moment after miltertest returns)."""
        end = time.time() + timeout
        while True:
            st = self.stats()
            if pred(st) or time.time() > end:
                return st
            time.sleep(0.05)

    def stop(self, timeout=20):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.logfh.close()
        return self.proc.returncode


def echoed(out, key):
    """The values a script printed with mt.echo(KEY .. "=" .. value)."""
    return [line[len(key) + 1:] for line in out.splitlines() if line.startswith(key + "=")]
