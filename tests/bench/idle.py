"""idle.py - open N idle SMTP sessions to HOST:PORT and keep them open.

usage: /usr/bin/python3 idle.py HOST PORT N [SOURCES]

Connects from 127.0.0.2 ... (SOURCES addresses, default 40, round robin)
so that per-address limits and the ephemeral port range are no obstacle,
reads each session's 220 banner, then prints "ready N" (N = sessions that
got a banner) and stays idle until stdin closes or SIGTERM. Non-blocking
connects through epoll: 10,000 sessions open in about a second.
Loopback only. Needs RLIMIT_NOFILE > N (run.sh raises it).
"""

import errno
import os
import resource
import selectors
import signal
import socket
import sys
import time


def main(argv):
    host, port, n = argv[1], int(argv[2]), int(argv[3])
    nsrc = int(argv[4]) if len(argv) > 4 else 40
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 1024), hard))
    sel = selectors.DefaultSelector()
    socks = []
    pending = {}
    why = {"refused": 0, "closed": 0, "not220": 0}
    batch = 100   # connects in flight at once, below the listen backlog
    i = 0
    deadline = time.time() + float(os.environ.get("IDLE_DEADLINE", "60"))
    while (i < n or pending) and time.time() < deadline:
        while i < n and len(pending) < batch:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.bind(("127.0.0.%d" % (2 + i % nsrc), 0))
            err = s.connect_ex((host, port))
            if err not in (0, errno.EINPROGRESS):
                why["refused"] += 1
                s.close()
            else:
                pending[s.fileno()] = [s, b""]
                sel.register(s, selectors.EVENT_READ)
            i += 1
        for key, _ in sel.select(timeout=1.0):
            s, buf = pending[key.fd]
            try:
                chunk = s.recv(512)
            except OSError:
                chunk = b""
            if not chunk:
                why["closed"] += 1
                sel.unregister(s)
                del pending[key.fd]
                s.close()
                continue
            buf += chunk
            if b"\n" in buf:
                sel.unregister(s)
                del pending[key.fd]
                if buf.startswith(b"220"):
                    socks.append(s)
                else:
                    why["not220"] += 1
                    s.close()
            else:
                pending[key.fd][1] = buf
    bad = sum(why.values()) + len(pending)
    sys.stdout.write("ready %d bad %d (refused %d, closed %d, not 220 %d, no banner %d)\n" % (
        len(socks), bad, why["refused"], why["closed"], why["not220"], len(pending)))
    sys.stdout.flush()
    signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
    try:
        sys.stdin.read()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
