"""bench.py - helpers for tests/bench/run.sh (run under /usr/bin/python3).

Subcommands:
  freeports N             N free TCP ports on 127.0.0.1, one a line
  waitport HOST PORT [S]  wait until HOST:PORT accepts a connection (S seconds)
  ticks PID               utime+stime of PID in clock ticks (all its threads)
  rss PID                 VmRSS of PID in KiB
  fixtures DIR            DKIM key, signed ~2 KB message, DNS zone, rule sets
  ratios RESULTS SECTION NUM:DEN[:TARGET] ...
                          a section's table (medians of the rounds) and ratios

Results file (written by run.sh), one run a line, tab-separated:
  section shape way round messages seconds cpu_ticks_of_way_process
Everything here only touches loopback and files under DIR.
"""

import json
import os
import socket
import statistics
import subprocess
import sys
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")

# The bench's mail: envelope and header addresses, all documentation names.
SENDER_DOMAIN = "sender.example.com"
SENDER = "bench@" + SENDER_DOMAIN
RCPT = "bench@example.org"
HELO = "client.example.com"
CLIENT_IP = "192.0.2.1"     # the netns address smtp-source comes from
SELECTOR = "bench"


def freeports(n):
    """Free ports, all held open at once so they are distinct."""
    socks, out = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        out.append(s.getsockname()[1])
    for s in socks:
        s.close()
    print("\n".join(str(p) for p in out))


def waitport(host, port, secs=10.0):
    """Exit 0 once host:port accepts, 1 on timeout."""
    end = time.time() + secs
    while time.time() < end:
        try:
            with socket.create_connection((host, port), timeout=0.5) as s:
                # Read the banner so that the server sees a tidy session.
                s.settimeout(2)
                try:
                    s.recv(512)
                except OSError:
                    pass
                return 0
        except OSError:
            time.sleep(0.05)
    return 1


def ticks(pid):
    """utime + stime from /proc/PID/stat (the process, all threads)."""
    with open("/proc/%s/stat" % pid) as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return int(rest[11]) + int(rest[12])


def rss(pid):
    with open("/proc/%s/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _body(size):
    """Plain text lines up to size octets, deterministic."""
    words = ("lorem ipsum dolor sit amet consectetur adipiscing elit sed do "
             "eiusmod tempor incididunt ut labore et dolore magna aliqua").split()
    lines, line, total, i = [], [], 0, 0
    while total < size:
        w = words[i % len(words)]
        i += 1
        if len(" ".join(line + [w])) > 72:
            s = " ".join(line)
            lines.append(s)
            total += len(s) + 2
            line = []
        line.append(w)
    return "\r\n".join(lines) + "\r\n"


def fixtures(d):
    """Key pair, DKIM-signed message, DNS zone, shipped and 1,000-regex rule sets."""
    import dkim  # python3-dkim, only needed here

    os.makedirs(d, exist_ok=True)
    key = os.path.join(d, "dkim.key")
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                    "rsa_keygen_bits:2048", "-out", key], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    der = subprocess.run(["openssl", "pkey", "-in", key, "-pubout", "-outform", "DER"],
                         check=True, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout
    import base64
    pub = base64.b64encode(der).decode()

    hdr = ("From: Bench Sender <%s>\r\nTo: <%s>\r\nSubject: ravelin bench message\r\n"
           "Date: Sat, 01 Jan 2000 00:00:00 +0000\r\nMessage-ID: <bench.1@%s>\r\n"
           "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n"
           % (SENDER, RCPT, SENDER_DOMAIN))
    msg = (hdr + "\r\n" + _body(2048)).encode()
    with open(key, "rb") as f:
        priv = f.read()
    sig = dkim.sign(msg, SELECTOR.encode(), SENDER_DOMAIN.encode(), priv,
                    canonicalize=(b"relaxed", b"relaxed"),
                    include_headers=[b"from", b"to", b"subject", b"date", b"message-id"])
    signed = sig + msg
    assert dkim.verify(signed, dnsfunc=lambda name, timeout=5: (
        "v=DKIM1; k=rsa; p=" + pub).encode())
    # smtp-source -F appends CRLF to each line itself: store with LF.
    with open(os.path.join(d, "signed.eml"), "wb") as f:
        f.write(signed.replace(b"\r\n", b"\n"))

    zone = {
        SENDER_DOMAIN: [{"TXT": "v=spf1 ip4:192.0.2.0/24 -all"}, {"MX": [10, HELO]},
                        {"A": CLIENT_IP}],
        "%s._domainkey.%s" % (SELECTOR, SENDER_DOMAIN): [{"TXT": "v=DKIM1; k=rsa; p=" + pub}],
        "_dmarc." + SENDER_DOMAIN: [{"TXT": "v=DMARC1; p=reject"}],
        HELO: [{"A": CLIENT_IP}, {"TXT": "v=spf1 a -all"}],
        "1.2.0.192.in-addr.arpa": [{"PTR": HELO + "."}],
        "1.0.0.127.in-addr.arpa": [{"PTR": "localhost."}],
        "localhost": [{"A": "127.0.0.1"}],
        "example.org": [{"TXT": "v=spf1 -all"}],
    }
    with open(os.path.join(d, "zone.json"), "w") as f:
        json.dump(zone, f, indent=1)

    # Shipped rules with every limit(KEY, N/PERIOD) raised so that the
    # counters are still kept (the cost we measure) but never trip.
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import glob
    import re
    for sub in ("shipped", "regex1000"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
        for path in sorted(glob.glob(os.path.join(root, "rules", "*.rules"))):
            with open(path) as f:
                text = f.read()
            text = re.sub(r"limit\(([^,()]+),\s*[0-9]+/", r"limit(\1, 1000000000/", text)
            with open(os.path.join(d, sub, os.path.basename(path)), "w") as f:
                f.write(text)
    # 1,000 regex rules: header (run per field), envelope and body, none match.
    lines = ["# 95-bench.rules - 1,000 generated regex rules that never match."]
    for i in range(1000):
        k = i % 4
        if k == 0 or k == 1:
            lines.append('bench_subj_%d: header header[Subject] =~ /\\b(spamword%d|offer%dx)\\b/i'
                         ' -> score 0.01 "bench %d"' % (i, i, i, i))
        elif k == 2:
            lines.append('bench_sender_%d: mail sender =~ /^(promo|deals)%d[.-]?[a-z]*@/i'
                         ' -> score 0.01 "bench %d"' % (i, i, i))
        else:
            lines.append('bench_body_%d: eom body =~ /unsubscribe-now-%d|cheap meds %d/i'
                         ' -> score 0.01 "bench %d"' % (i, i, i, i))
    with open(os.path.join(d, "regex1000", "95-bench.rules"), "w") as f:
        f.write("\n".join(lines) + "\n")


def _ratio(a, b):
    return a / b if b else float("nan")


def report(path, section):
    """Medians per (shape, way) of one section and the ratios the issues ask for."""
    runs = {}
    with open(path) as f:
        for line in f:
            sec, shape, way, rnd, msgs, secs, tk = line.rstrip("\n").split("\t")
            if sec != section:
                continue
            runs.setdefault((shape, way), []).append((int(msgs), float(secs), int(tk)))
    if not runs:
        return
    shapes = sorted({s for s, _ in runs}, key=lambda s: (s != "1/conn", s))
    ways = []
    for _, w in runs:
        if w not in ways:
            ways.append(w)
    med, cpumed = {}, {}
    print()
    print("%-10s %-18s %10s %10s %10s %14s" % ("shape", "way", "msg/s", "min", "max",
                                                 "cpu s/1000msg"))
    for shape in shapes:
        for way in ways:
            rs = runs.get((shape, way))
            if not rs:
                continue
            rates = [m / s for m, s, _ in rs]
            cpu = [t / CLK_TCK / m * 1000 for m, _, t in rs if t >= 0]
            med[(shape, way)] = statistics.median(rates)
            if cpu:
                cpumed[(shape, way)] = statistics.median(cpu)
            print("%-10s %-18s %10.0f %10.0f %10.0f %14s" % (
                shape, way, statistics.median(rates), min(rates), max(rates),
                "%.3f" % statistics.median(cpu) if cpu else "-"))
    print()
    return med, cpumed, shapes


def ratios(path, section, pairs):
    """Print num/den ratios of medians for each shape; pairs: (num, den, target)."""
    out = report(path, section)
    if not out:
        return 0
    med, cpumed, shapes = out
    below = 0
    for shape in shapes:
        for num, den, target in pairs:
            if (shape, num) not in med or (shape, den) not in med:
                continue
            r = _ratio(med[(shape, num)], med[(shape, den)])
            note = ""
            if target:
                ok = r >= target
                below += not ok
                note = "  (target >= %.2f: %s)" % (target, "ok" if ok else "BELOW TARGET")
            cpu = ""
            if (shape, num) in cpumed and (shape, den) in cpumed:
                # CPU per message is the figure least disturbed by other load.
                cpu = "   CPU per message %.2fx" % _ratio(cpumed[(shape, num)],
                                                    cpumed[(shape, den)])
            print("%-10s %s/%s %.2f%s%s" % (shape, num, den, r, note, cpu))
    return below


def main(argv):
    cmd = argv[1]
    if cmd == "freeports":
        freeports(int(argv[2]))
    elif cmd == "waitport":
        return waitport(argv[2], int(argv[3]), float(argv[4]) if len(argv) > 4 else 10.0)
    elif cmd == "ticks":
        print(ticks(argv[2]))
    elif cmd == "rss":
        print(rss(argv[2]))
    elif cmd == "fixtures":
        fixtures(argv[2])
    elif cmd == "ratios":
        # ratios RESULTS SECTION num:den[:target] ...
        pairs = []
        for p in argv[4:]:
            parts = p.split(":")
            pairs.append((parts[0], parts[1], float(parts[2]) if len(parts) > 2 else 0))
        below = ratios(argv[2], argv[3], pairs)
        return 2 if below else 0
    else:
        sys.stderr.write("bench.py: unknown command %s\n" % cmd)
        return 64
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
