"""
test_ratelimit_redis.py - the Redis rate-limit store against a real
redis-server started here (127.0.0.1, random port, no persistence, temp dir).

Drives build/tools/rlbench --serve, one process per "instance": exactness of
the sliding window, per-key isolation and the key prefix, database selection,
two instances sharing one limit (also under concurrent multi-threaded
bursts), Redis killed (also under threaded load) or frozen mid-run (-1 within a bounded time, no crash, fast failures while
backing off) and recovery once Redis is back.
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

BUILD = os.environ.get("RAVELIN_BUILD", os.path.join(os.path.dirname(__file__), "..", "..", "build"))
RLBENCH = os.path.join(BUILD, "tools", "rlbench")
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"

pytestmark = [
    pytest.mark.skipif(not os.path.exists(REDIS_SERVER), reason="redis-server not installed"),
    pytest.mark.skipif(not os.path.exists(RLBENCH), reason="build/tools/rlbench not built"),
]


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Redis:
    """One redis-server on loopback that the test may kill and restart."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="rl-redis-")
        self.port = free_port()
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", self.dir,
             "--daemonize", "no", "--logfile", os.path.join(self.dir, "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 5
        while time.time() < deadline:
            try:
                if self.cli("PING") == "PONG":
                    return
            except subprocess.CalledProcessError:
                pass
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def cli(self, *args, db=0):
        """Run one command with redis-cli; its output without the newline."""
        out = subprocess.run([REDIS_CLI, "-h", "127.0.0.1", "-p", str(self.port), "-n", str(db)]
                             + list(args), capture_output=True, text=True, timeout=5, check=True)
        return out.stdout.strip()

    def kill(self):
        self.proc.kill()
        self.proc.wait()

    def url(self, db=0):
        return "redis://127.0.0.1:%d/%d" % (self.port, db)

    def close(self):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class Instance:
    """One rlbench --serve process: stands for one ravelin instance."""

    def __init__(self, url, prefix=None, timeout_ms=200):
        args = [RLBENCH, "--store", url, "--serve", "--timeout", str(timeout_ms)]
        if prefix is not None:
            args += ["--prefix", prefix]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1)

    def ask(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        out = self.proc.stdout.readline()
        assert out, "rlbench died: rc=%s stderr=%s" % (self.proc.poll(), self.proc.stderr.read())
        return [int(x) for x in out.split()]

    def hit(self, key, n, period):
        """(rc, count, microseconds) of one ratelimit_hit."""
        return tuple(self.ask("hit %s %d %d" % (key, n, period)))

    def peek(self, key, period):
        return tuple(self.ask("peek %s %d" % (key, period)))

    def clear(self, key):
        return self.ask("clear %s" % key)[0]

    def errors(self):
        return self.ask("errors")[0]

    def close(self):
        self.proc.stdin.close()
        rc = self.proc.wait(timeout=10)
        err = self.proc.stderr.read()
        self.proc.stdout.close()
        self.proc.stderr.close()
        assert rc == 0, "rlbench exited %d: %s" % (rc, err)
        return err


@pytest.fixture
def redis():
    r = Redis()
    yield r
    r.close()


@pytest.fixture
def instances():
    made = []

    def make(*args, **kw):
        inst = Instance(*args, **kw)
        made.append(inst)
        return inst
    yield make
    for inst in made:
        if inst.proc.poll() is None:
            inst.proc.kill()
            inst.proc.wait()
        for f in (inst.proc.stdin, inst.proc.stdout, inst.proc.stderr):
            if not f.closed:
                f.close()


def test_window_allows_n_refuses_n_plus_1_and_recovers(redis, instances):
    inst = instances(redis.url())
    for i in range(1, 6):
        rc, count, _ = inst.hit("exact", 5, 1)
        assert (rc, count) == (0, i), "event %d" % i
    assert inst.hit("exact", 5, 1)[:2] == (1, 6)
    assert inst.hit("exact", 5, 1)[:2] == (1, 6)          # refused events count; count saturates
    assert inst.peek("exact", 1)[:2] == (0, 5)
    time.sleep(1.1)
    assert inst.hit("exact", 5, 1)[:2] == (0, 1)          # one period later: a fresh window
    assert inst.errors() == 0
    inst.close()


def test_window_slides(redis, instances):
    """3 per second: events leave the window one by one, not all at once."""
    inst = instances(redis.url())
    t0 = time.monotonic()
    steps = [  # (at seconds, rc, count)
        (0.0, 0, 1), (0.0, 0, 2), (0.5, 0, 3), (0.5, 1, 4),
        (1.1, 0, 3),   # the two at 0.0 have left, 0.5, 0.5 remain
        (1.1, 1, 4),
    ]
    for at, want_rc, want_count in steps:
        delay = t0 + at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        rc, count, _ = inst.hit("slide", 3, 1)
        assert (rc, count) == (want_rc, want_count), "step at %.1fs" % at
    inst.close()


def test_keys_are_isolated_and_prefixed(redis, instances):
    inst = instances(redis.url())
    other = instances(redis.url(), prefix="site2:")
    for _ in range(3):
        inst.hit("192.0.2.1", 3, 60)
    assert inst.hit("192.0.2.1", 3, 60)[:2] == (1, 4)
    assert inst.hit("192.0.2.2", 3, 60)[:2] == (0, 1)
    assert other.hit("192.0.2.1", 3, 60)[:2] == (0, 1)   # another prefix, another counter
    assert redis.cli("ZCARD", "ravelin:192.0.2.1") == "3"  # only the newest n are kept
    assert redis.cli("ZCARD", "site2:192.0.2.1") == "1"
    ttl = int(redis.cli("PTTL", "ravelin:192.0.2.1"))
    assert 60000 < ttl <= 61000
    assert inst.clear("192.0.2.1") == 1
    assert inst.clear("192.0.2.1") == 0
    assert inst.hit("192.0.2.1", 3, 60)[:2] == (0, 1)
    assert inst.peek("nothing", 60)[:2] == (0, 0)
    inst.close()
    other.close()


def test_database_is_selected(redis, instances):
    inst = instances(redis.url(db=3))
    assert inst.hit("dbkey", 2, 60)[:2] == (0, 1)
    assert redis.cli("EXISTS", "ravelin:dbkey", db=3) == "1"
    assert redis.cli("EXISTS", "ravelin:dbkey", db=0) == "0"
    inst.close()


def test_two_instances_share_one_limit(redis, instances):
    a = instances(redis.url())
    b = instances(redis.url())
    results = []
    for i in range(12):
        inst = a if i % 2 == 0 else b
        results.append(inst.hit("shared", 7, 60)[:2])
    assert results == [(0, i) for i in range(1, 8)] + [(1, 8)] * 5
    # Concurrent bursts from both instances, 3 threads each: exactly n pass.
    a.proc.stdin.write("tburst burst 1000 60 1500 3\n")
    b.proc.stdin.write("tburst burst 1000 60 1500 3\n")
    a.proc.stdin.flush()
    b.proc.stdin.flush()
    ra = [int(x) for x in a.proc.stdout.readline().split()]
    rb = [int(x) for x in b.proc.stdout.readline().split()]
    assert ra[2] == 0 and rb[2] == 0, "store errors"
    assert ra[0] + rb[0] == 1000
    assert ra[1] + rb[1] == 2000
    assert ra[0] > 0 and rb[0] > 0, "both instances took part"
    a.close()
    b.close()


def test_redis_killed_mid_run_fails_fast_and_recovers(redis, instances):
    inst = instances(redis.url(), timeout_ms=200)
    for i in range(1, 4):
        assert inst.hit("k", 100, 60)[:2] == (0, i)
    redis.kill()
    t0 = time.monotonic()
    rc, _, _ = inst.hit("k", 100, 60)
    assert rc == -1
    assert time.monotonic() - t0 < 1.0
    # Backing off: every call fails at once, the process survives.
    for _ in range(50):
        rc, _, us = inst.hit("k", 100, 60)
        assert rc == -1
        assert us < 5000
    assert inst.errors() == 51
    # Down for a while (probes fail, backoff grows), then back empty.
    time.sleep(1.5)
    assert inst.hit("k", 100, 60)[0] == -1
    redis.start()
    deadline = time.monotonic() + 10
    while True:
        rc, count, _ = inst.hit("k", 100, 60)
        if rc == 0:
            break
        assert rc == -1
        assert time.monotonic() < deadline, "no recovery after restart"
        time.sleep(0.1)
    assert count == 1                     # no persistence: a fresh window; script reloaded
    assert inst.hit("k", 100, 60)[:2] == (0, 2)
    err = inst.close()
    assert "retrying in 1s" in err
    assert "reconnected" in err


def test_redis_killed_under_threaded_load(redis, instances):
    inst = instances(redis.url(), timeout_ms=200)
    inst.proc.stdin.write("tburst load 1000000 60 60000 4\n")
    inst.proc.stdin.flush()
    time.sleep(0.3)
    redis.kill()
    within, over, errors, _ = [int(x) for x in inst.proc.stdout.readline().split()]
    assert within > 0 and over == 0 and errors > 0
    assert within + errors == 60000
    redis.start()
    deadline = time.monotonic() + 10
    while inst.hit("load", 10, 60)[0] != 0:
        assert time.monotonic() < deadline, "no recovery after restart"
        time.sleep(0.1)
    inst.close()


def test_redis_frozen_times_out(redis, instances):
    inst = instances(redis.url(), timeout_ms=200)
    assert inst.hit("f", 10, 60)[:2] == (0, 1)
    os.kill(redis.proc.pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        assert inst.hit("f", 10, 60)[0] == -1
        took = time.monotonic() - t0
        assert 0.15 < took < 1.0, "took %.3fs" % took
        t0 = time.monotonic()
        assert inst.hit("f", 10, 60)[0] == -1
        assert time.monotonic() - t0 < 0.05   # backing off: no second wait
    finally:
        os.kill(redis.proc.pid, signal.SIGCONT)
    deadline = time.monotonic() + 10
    while inst.hit("f", 10, 60)[0] != 0:
        assert time.monotonic() < deadline, "no recovery after SIGCONT"
        time.sleep(0.1)
    inst.close()


def test_redis_down_at_startup_is_not_fatal(instances):
    port = free_port()
    inst = instances("redis://127.0.0.1:%d/0" % port)
    t0 = time.monotonic()
    assert inst.hit("s", 1, 60)[0] == -1
    assert inst.peek("s", 60)[0] == -1
    assert inst.clear("s") == -1
    assert time.monotonic() - t0 < 1.0
    inst.close()
