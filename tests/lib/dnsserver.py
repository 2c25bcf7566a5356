"""dnsserver.py - a small authoritative DNS server on loopback for tests.

Serves zones given as a dict (or a YAML/JSON file) over UDP and TCP on
127.0.0.1, counts the queries it gets, and can be told never to answer.

Zone format: {name: [record, ...]}, names without the final dot, any case.
A record is a one-key dict, optionally with "ttl":
    {"A": "192.0.2.1"}            {"AAAA": "2001:db8::1"}
    {"TXT": "v=spf1 -all"}        {"TXT": ["part one", "part two"]}   (one record, several strings)
    {"SPF": "v=spf1 -all"}        (type 99, same rdata as TXT)
    {"MX": [10, "mx.example.com"]}
    {"PTR": "host.example.com."}  {"CNAME": "other.example.com"}
    {"TXT": "NONE"}               (no record: placeholder, as in the openspf suite)
    {"DELAY": 0.5}                (answer this name 0.5 s late)
    "TIMEOUT"                     (never answer: see below)
TIMEOUT follows the openspf test-suite convention: a query of type T for
the name is never answered unless a record of type T is listed before the
TIMEOUT entry. A name that does not exist but has names below it is an
empty non-terminal (NODATA); other unknown names get NXDOMAIN. Negative
answers carry an SOA (owner: the last two labels) whose minimum is the
negative TTL. CNAMEs are followed inside the served data.

Use from pytest:
    from dnsserver import start_dns_server
    srv = start_dns_server({"example.com": [{"TXT": "v=spf1 -all"}]})
    ... f"127.0.0.1:{srv.port}" ...
    srv.count("example.com", "TXT"); srv.set_zones({...}); srv.stop()
or as a fixture helper: `yield from dns_server_fixture(zones)`.

Command line:
    /usr/bin/python3 tests/lib/dnsserver.py [--port N] [--ttl N] ZONEFILE.yaml|.json
prints "PORT <n>" once listening (--port 0, the default, picks a free one)
and serves until killed; it logs each query to stderr with -v.
"""

import json
import socket
import socketserver
import struct
import sys
import threading
import time

from dnslib import AAAA, CNAME, MX, PTR, QTYPE, RCODE, RR, SOA, TXT, A, DNSRecord, EDNS0
from dnslib.dns import DNSError

DEFAULT_TTL = 300

_TYPES = {"A", "AAAA", "TXT", "SPF", "MX", "PTR", "CNAME", "NS"}


def _norm(name):
    return str(name).rstrip(".").lower()


def _txt_bytes(value):
    """One TXT record's strings as bytes, long strings split at 255."""
    parts = value if isinstance(value, (list, tuple)) else [value]
    out = []
    for p in parts:
        if isinstance(p, str):
            try:
                b = p.encode("latin-1")  # YAML "\xEF" escapes mean those octets
            except UnicodeEncodeError:
                b = p.encode("utf-8")
        else:
            b = bytes(p)
        if not b:
            out.append(b"")
        while b:
            out.append(b[:255])
            b = b[255:]
    return out or [b""]


class Zones:
    """Parsed zone data: name -> ordered list of entries."""

    def __init__(self, data, ttl=DEFAULT_TTL):
        self.ttl = ttl
        self.names = {}
        for name, records in (data or {}).items():
            if isinstance(records, (dict, str)):
                records = [records]
            self.names[_norm(name)] = [self._entry(r) for r in records]
        # Every ancestor of a served name exists (empty non-terminal).
        self.ancestors = set()
        for n in self.names:
            labels = n.split(".")
            for i in range(1, len(labels)):
                self.ancestors.add(".".join(labels[i:]))

    def _entry(self, r):
        if r == "TIMEOUT":
            return ("TIMEOUT", None, None)
        if isinstance(r, (list, tuple)) and len(r) == 2 and isinstance(r[0], str):
            r = {r[0]: r[1]}
        if not isinstance(r, dict):
            raise ValueError(f"bad record {r!r}")
        ttl = r.get("ttl", self.ttl)
        keys = [k for k in r if k != "ttl"]
        if len(keys) != 1:
            raise ValueError(f"bad record {r!r}")
        t = keys[0].upper()
        v = r[keys[0]]
        if t == "TIMEOUT":
            return ("TIMEOUT", None, None)
        if t == "DELAY":
            return ("DELAY", float(v), None)
        if t not in _TYPES:
            raise ValueError(f"unsupported type {t}")
        if v == "NONE":
            return ("NONE", t, None)
        return (t, v, ttl)

    def rdata(self, t, v):
        if t == "A":
            return A(v)
        if t == "AAAA":
            return AAAA(v)
        if t in ("TXT", "SPF"):
            return TXT(_txt_bytes(v))
        if t == "MX":
            return MX(v[1], int(v[0]))
        if t == "PTR":
            return PTR(v)
        if t == "CNAME":
            return CNAME(v)
        if t == "NS":
            from dnslib import NS
            return NS(v)
        raise ValueError(t)

    def lookup(self, name, qtype):
        """(kind, records, delay): kind is 'timeout', 'nxdomain', 'nodata', 'data' or 'cname'."""
        entries = self.names.get(name)
        if entries is None:
            return ("nodata" if name in self.ancestors else "nxdomain"), [], 0
        delay = sum(v for t, v, _ in entries if t == "DELAY")
        found = []
        for t, v, ttl in entries:
            if t == "TIMEOUT":
                if not found:
                    return "timeout", [], delay
                continue
            if t == "CNAME" and qtype != "CNAME":
                return "cname", [(t, v, ttl)], delay
            if t == qtype:
                found.append((t, v, ttl))
        return ("data" if found else "nodata"), found, delay


class DNSServer:
    """The server: UDP and TCP on one port, one thread per request."""

    def __init__(self, zones=None, port=0, host="127.0.0.1", ttl=DEFAULT_TTL, verbose=False):
        self.host = host
        self.ttl = ttl
        self.verbose = verbose
        self.lock = threading.Lock()
        self.queries = []  # (name, type, proto), in arrival order
        self.zones = Zones(zones, ttl)
        self.port = port
        self._udp = self._tcp = None
        self._threads = []

    # -- public API -------------------------------------------------------

    def start(self):
        """Bind UDP and TCP on the same port and serve in threads; returns the port."""
        last = None
        for _ in range(20):
            try:
                self._udp = _UDPServer((self.host, self.port), _UDPHandler)
                port = self._udp.server_address[1]
                self._tcp = _TCPServer((self.host, port), _TCPHandler)
                break
            except OSError as e:  # the TCP side of a random port was taken
                last = e
                if self._udp:
                    self._udp.server_close()
                    self._udp = None
                if self.port:
                    raise
        else:
            raise last
        self.port = port
        for s in (self._udp, self._tcp):
            s.dns = self
            t = threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
            t.start()
            self._threads.append(t)
        return self.port

    def stop(self):
        for s in (self._udp, self._tcp):
            if s:
                s.shutdown()
                s.server_close()
        self._udp = self._tcp = None

    def set_zones(self, zones, ttl=None):
        """Replace the served data (queries already counted stay)."""
        z = Zones(zones, self.ttl if ttl is None else ttl)
        with self.lock:
            self.zones = z

    def count(self, name=None, qtype=None):
        """Number of queries received for name (any case) and type (e.g. "TXT")."""
        with self.lock:
            return sum(1 for n, t, _ in self.queries
                       if (name is None or n == _norm(name)) and (qtype is None or t == qtype))

    def reset_counts(self):
        with self.lock:
            self.queries.clear()

    @property
    def address(self):
        return f"{self.host}:{self.port}"

    # -- answering --------------------------------------------------------

    def answer(self, data, proto):
        """Reply bytes for one query packet, or None to stay silent."""
        try:
            q = DNSRecord.parse(data)
        except (DNSError, Exception):
            return None
        if not q.questions:
            return None
        # From the raw labels: str() would show a space as \\032.
        qname = ".".join(l.decode("latin-1") for l in q.q.qname.label).lower()
        qtype = QTYPE.get(q.q.qtype, str(q.q.qtype))
        with self.lock:
            self.queries.append((qname, qtype, proto))
            zones = self.zones
        if self.verbose:
            print(f"query {proto} {qname} {qtype}", file=sys.stderr, flush=True)
        reply = q.reply(ra=1, aa=1)
        edns = next((r for r in q.ar if r.rtype == QTYPE.OPT), None)
        name, kind, delay = qname, None, 0
        owner = q.q.qname  # answers for the asked name keep its exact labels
        for _ in range(9):  # CNAME chain bound
            kind, recs, d = zones.lookup(name, qtype)
            delay += d
            if kind == "timeout":
                return None
            for t, v, ttl in recs:
                reply.add_answer(RR(owner if name == qname else name, getattr(QTYPE, t),
                                    ttl=ttl, rdata=zones.rdata(t, v)))
            if kind != "cname":
                break
            name = _norm(recs[0][1])
        if kind == "nxdomain" and name == qname:
            reply.header.rcode = RCODE.NXDOMAIN
        elif kind == "nxdomain":
            reply.header.rcode = RCODE.NXDOMAIN  # dangling CNAME: RFC 6604
        if kind in ("nxdomain", "nodata"):
            apex = ".".join(name.split(".")[-2:])
            reply.add_auth(RR(apex, QTYPE.SOA, ttl=zones.ttl,
                              rdata=SOA("ns." + apex, "hostmaster." + apex,
                                        (1, 3600, 600, 86400, zones.ttl))))
        if edns is not None:
            reply.add_ar(EDNS0(udp_len=1232))
        if delay:
            time.sleep(delay)
        out = reply.pack()
        limit = (max(512, edns.rclass) if edns is not None else 512)
        if proto == "udp" and len(out) > limit:
            t = q.reply(ra=1, aa=1)
            t.header.tc = 1
            if edns is not None:
                t.add_ar(EDNS0(udp_len=1232))
            out = t.pack()
        return out


class _UDPServer(socketserver.ThreadingUDPServer):
    daemon_threads = True
    allow_reuse_address = True


class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class _UDPHandler(socketserver.BaseRequestHandler):
    def handle(self):
        data, sock = self.request
        out = self.server.dns.answer(data, "udp")
        if out is not None:
            sock.sendto(out, self.client_address)


class _TCPHandler(socketserver.BaseRequestHandler):
    def handle(self):
        self.request.settimeout(30)
        try:
            while True:
                hdr = self._read(2)
                if not hdr:
                    return
                data = self._read(struct.unpack("!H", hdr)[0])
                if data is None:
                    return
                out = self.server.dns.answer(data, "tcp")
                if out is not None:
                    self.request.sendall(struct.pack("!H", len(out)) + out)
        except OSError:
            return

    def _read(self, n):
        buf = b""
        while len(buf) < n:
            chunk = self.request.recv(n - len(buf))
            if not chunk:
                return None
            buf += chunk
        return buf


def load_zone_file(path):
    """Zones from a .json or .yaml file (YAML needs python3-yaml)."""
    with open(path, "rb") as f:
        text = f.read()
    if path.endswith(".json"):
        return json.loads(text)
    import yaml
    return yaml.safe_load(text)


def start_dns_server(zones=None, port=0, ttl=DEFAULT_TTL, verbose=False):
    """Start a server on 127.0.0.1 and return it (call .stop() when done)."""
    srv = DNSServer(zones, port=port, ttl=ttl, verbose=verbose)
    srv.start()
    return srv


def dns_server_fixture(zones=None, **kw):
    """Generator for a pytest fixture: `yield from dns_server_fixture(zones)`."""
    srv = start_dns_server(zones, **kw)
    try:
        yield srv
    finally:
        srv.stop()


def main(argv):
    import argparse
    ap = argparse.ArgumentParser(description="test DNS server on 127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--ttl", type=int, default=DEFAULT_TTL)
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("zonefile")
    a = ap.parse_args(argv)
    srv = start_dns_server(load_zone_file(a.zonefile), port=a.port, ttl=a.ttl, verbose=a.verbose)
    print(f"PORT {srv.port}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    srv.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
