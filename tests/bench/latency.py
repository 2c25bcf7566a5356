"""latency.py - time single SMTP transactions, interleaved across targets.

usage: /usr/bin/python3 latency.py N MESSAGE-FILE SENDER RCPT HELO NAME=HOST:PORT ...

For i in 1..N, for each target in turn: connect, banner, EHLO, MAIL, RCPT,
DATA, the message (LF or CRLF file, dot-stuffed here), and the reply to
the final dot; that span is one transaction's latency. QUIT is sent after
the clock stops. One client, no concurrency: this measures the time ravelin
adds to a transaction, not throughput. Prints, per target,
  NAME p50_ms p99_ms mean_ms
and, for every target after the first, the added p50/p99 against the first.
Loopback (or the bench's own netns addresses) only.
"""

import socket
import statistics
import sys
import time


def reply(sock, buf):
    """Read one whole reply; returns (code, rest-of-buffer)."""
    while True:
        while b"\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            buf += chunk
        line, _, buf = buf.partition(b"\n")
        if len(line) < 4 or line[3:4] != b"-":
            return int(line[:3]), buf


def transaction(addr, data, sender, rcpt, helo):
    """One session; seconds from connect to the reply after the final dot."""
    t0 = time.perf_counter()
    s = socket.create_connection(addr, timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = b""
    code, buf = reply(s, buf)
    steps = [b"EHLO " + helo, b"MAIL FROM:<" + sender + b">", b"RCPT TO:<" + rcpt + b">",
             b"DATA"]
    want = [250, 250, 250, 354]
    if code != 220:
        raise RuntimeError("%s: banner %d" % (addr, code))
    for cmd, w in zip(steps, want):
        s.sendall(cmd + b"\r\n")
        code, buf = reply(s, buf)
        if code != w:
            raise RuntimeError("%s: %r -> %d" % (addr, cmd, code))
    s.sendall(data)
    code, buf = reply(s, buf)
    t1 = time.perf_counter()
    if code != 250:
        raise RuntimeError("%s: end of data -> %d" % (addr, code))
    s.sendall(b"QUIT\r\n")
    try:
        reply(s, buf)
    except (ConnectionError, OSError):
        pass
    s.close()
    return t1 - t0


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def main(argv):
    n = int(argv[1])
    with open(argv[2], "rb") as f:
        raw = f.read().replace(b"\r\n", b"\n")
    lines = raw.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    data = b"".join((b"." + l if l.startswith(b".") else l) + b"\r\n" for l in lines) + b".\r\n"
    sender, rcpt, helo = argv[3].encode(), argv[4].encode(), argv[5].encode()
    targets = []
    for t in argv[6:]:
        name, _, hp = t.partition("=")
        host, _, port = hp.rpartition(":")
        targets.append((name, (host, int(port))))
    times = {name: [] for name, _ in targets}
    for _ in range(20):   # warm caches (DNS, TLS-free paths, allocator)
        for name, addr in targets:
            transaction(addr, data, sender, rcpt, helo)
    for _ in range(n):
        for name, addr in targets:
            times[name].append(transaction(addr, data, sender, rcpt, helo))
    base = None
    print("%-18s %9s %9s %9s" % ("latency", "p50 ms", "p99 ms", "mean ms"))
    rows = []
    for name, _ in targets:
        xs = times[name]
        r = (pct(xs, 50) * 1000, pct(xs, 99) * 1000, statistics.mean(xs) * 1000)
        rows.append((name, r))
        print("%-18s %9.3f %9.3f %9.3f" % (name, r[0], r[1], r[2]))
        if base is None:
            base = r
    for name, r in rows[1:]:
        print("added by %-9s p50 %+.3f ms  p99 %+.3f ms  (vs %s)" % (
            name, r[0] - base[0], r[1] - base[1], rows[0][0]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
