"""smtpbackend.py - a recording SMTP server for end-to-end tests.

A real (small) SMTP server on a loopback port: it speaks ESMTP with the
extensions it is told to announce, accepts Postfix's XCLIENT and HAProxy
PROXY v2 headers, and records every transaction it accepts, byte for
byte, in a JSON-lines file. It can misbehave on purpose (seeded random
4xx/5xx at end of data, drop mid-DATA, hang) so the tests can check that
ravelin never acknowledges a message the backend did not accept.

Run: /usr/bin/python3 smtpbackend.py --port N --log FILE [--caps ...]
     [--chaos SEED] [--xclient] [--proxy] [--reply-rcpt REPLY]
     [--reply-mail REPLY]
Prints "ready PORT" when listening.

--xclient-after-ehlo: refuse XCLIENT before the connection's first EHLO.
Every --cmdlog record carries "conn", the connection's number.

--tls CERT,KEY: announce STARTTLS and switch to TLS on it (records carry
the TLS version in "tls"). --cmdlog FILE: append every command line
received, as JSON {"tls": ..., "line": ...}, to FILE.

--reply-rcpt / --reply-mail: that reply (e.g. "450 4.2.0 busy") to a RCPT
or MAIL whose address contains "reject". A message whose text holds
"X-Backend-Fate: F" meets fate F at end of data: 4xx, 5xx, drop (close
without a reply), hang (never reply), ok. A sender containing "refuse-data"
gets 451 to DATA.
"""

import argparse
import asyncio
import base64
import json
import random
import re
import socket
import ssl
import struct
import sys

FATE_RE = re.compile(rb"X-Backend-Fate: (4xx|5xx|drop|hang|ok)")
SIG_V2 = b"\r\n\r\n\x00\r\nQUIT\n"


def parse_proxy_v2(data):
    """Return (header_len, info dict) for a complete v2 header, or None."""
    if len(data) < 16 or not data.startswith(SIG_V2):
        return None
    ver_cmd, fam, length = data[12], data[13], struct.unpack("!H", data[14:16])[0]
    if len(data) < 16 + length:
        return None
    info = {"command": ver_cmd & 0x0F}
    body = data[16:16 + length]
    if fam == 0x11:
        info["src"] = socket.inet_ntop(socket.AF_INET, body[0:4])
        info["dst"] = socket.inet_ntop(socket.AF_INET, body[4:8])
        info["sport"], info["dport"] = struct.unpack("!HH", body[8:12])
    elif fam == 0x21:
        info["src"] = socket.inet_ntop(socket.AF_INET6, body[0:16])
        info["dst"] = socket.inet_ntop(socket.AF_INET6, body[16:32])
        info["sport"], info["dport"] = struct.unpack("!HH", body[32:36])
    return 16 + length, info


class Backend:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.chaos) if args.chaos is not None else None
        self.log = open(args.log, "a", buffering=1)
        self.cmdlog = open(args.cmdlog, "a", buffering=1) if args.cmdlog else None
        self.sslctx = None
        if args.tls:
            cert, key = args.tls.split(",", 1)
            self.sslctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.sslctx.load_cert_chain(cert, key)
        self.seq = 0
        self.conns = 0

    def record(self, obj):
        self.log.write(json.dumps(obj) + "\n")

    async def handle(self, reader, writer):
        a = self.args
        self.conns += 1
        state = {"xclient": {}, "proxy": None, "helo": None, "tls": False, "conn": self.conns}
        buf = b""

        async def readline():
            nonlocal buf
            while b"\n" not in buf:
                chunk = await reader.read(65536)
                if not chunk:
                    raise ConnectionError
                buf += chunk
            line, _, buf = buf.partition(b"\n")
            return line.rstrip(b"\r")

        async def readline_raw():
            nonlocal buf
            while b"\n" not in buf:
                chunk = await reader.read(65536)
                if not chunk:
                    raise ConnectionError
                buf += chunk
            i = buf.index(b"\n")
            line, buf = buf[:i + 1], buf[i + 1:]
            return line

        async def send(text):
            writer.write(text.encode() + b"\r\n")
            await writer.drain()

        try:
            if a.proxy:
                while True:
                    r = parse_proxy_v2(buf)
                    if r:
                        n, info = r
                        buf = buf[n:]
                        state["proxy"] = info
                        break
                    chunk = await reader.read(4096)
                    if not chunk:
                        return
                    buf += chunk
            await send("220 backend.test ESMTP recording")
            mail, rcpts = None, []
            while True:
                line = await readline()
                verb = line[:4].upper()
                text = line.decode("utf-8", "replace")
                if self.cmdlog:
                    self.cmdlog.write(json.dumps({"tls": state["tls"], "line": text,
                                                  "conn": state["conn"]}) + "\n")
                if verb in (b"EHLO", b"HELO"):
                    state["helo"] = text[5:]
                    caps = ["backend.test"] + [c for c in a.caps.split(",") if c]
                    if a.xclient:
                        caps.append("XCLIENT NAME ADDR PORT PROTO HELO LOGIN DESTADDR DESTPORT")
                    if self.sslctx and not state["tls"]:
                        caps.append("STARTTLS")
                    for c in caps[:-1]:
                        await send("250-" + c)
                    await send("250 " + caps[-1])
                elif line.upper() == b"STARTTLS" and self.sslctx and not state["tls"]:
                    await send("220 2.0.0 Ready to start TLS")
                    buf = b""  # RFC 3207: nothing pipelined behind STARTTLS counts
                    await writer.start_tls(self.sslctx)
                    state["tls"] = writer.get_extra_info("ssl_object").version()
                    state["helo"] = None
                elif line.upper().startswith(b"XCLIENT "):
                    if a.xclient_after_ehlo and state["helo"] is None:
                        await send("503 5.5.1 Error: send EHLO first")
                        continue
                    for kv in text[8:].split():
                        k, _, v = kv.partition("=")
                        state["xclient"][k.upper()] = v
                    await send("220 backend.test ESMTP recording")
                elif verb == b"MAIL":
                    if mail is not None:
                        # As Postfix: the client must end a transaction first.
                        await send("503 5.5.1 Error: nested MAIL command")
                        continue
                    if a.reply_mail and "reject" in text:
                        await send(a.reply_mail)
                        continue
                    mail, rcpts = text[5:], []
                    await send("250 2.1.0 Ok")
                elif verb == b"RCPT":
                    if mail is None:
                        await send("503 5.5.1 Error: need MAIL command")
                        continue
                    if a.reply_rcpt and "reject" in text:
                        await send(a.reply_rcpt + " backend refuses this recipient")
                        continue
                    rcpts.append(text[5:])
                    await send("250 2.1.5 Ok")
                elif verb == b"DATA":
                    if not rcpts:
                        await send("554 5.5.1 no valid recipients")
                        continue
                    fate = self.fate()
                    if "refuse-data" in mail:
                        fate = "refuse-data"
                    if fate == "refuse-data":
                        await send("451 4.3.0 chaos: DATA refused")
                        continue
                    await send("354 go ahead")
                    lines = []
                    while True:
                        l = await readline_raw()
                        if l == b".\r\n":
                            break
                        if fate == "drop" and len(lines) > 2:
                            writer.close()
                            return
                        if l.startswith(b"."):
                            l = l[1:]
                        lines.append(l)
                    data = b"".join(lines)
                    forced = FATE_RE.search(data)
                    if forced:
                        fate = forced.group(1).decode()
                    if fate == "drop":
                        writer.close()
                        return
                    if fate == "hang":
                        await asyncio.sleep(3600)
                    if fate == "4xx":
                        await send("451 4.3.0 chaos: try later")
                    elif fate == "5xx":
                        await send("554 5.7.0 chaos: refused")
                    else:
                        self.seq += 1
                        qid = "Q%06d" % self.seq
                        self.record({
                            "id": qid, "mail": mail, "rcpts": rcpts, "helo": state["helo"],
                            "xclient": state["xclient"], "proxy": state["proxy"],
                            "tls": state["tls"],
                            "data": base64.b64encode(data).decode(),
                        })
                        await send("250 2.0.0 Ok: queued as " + qid)
                    mail, rcpts = None, []
                elif verb == b"RSET":
                    mail, rcpts = None, []
                    await send("250 2.0.0 Ok")
                elif verb == b"NOOP":
                    await send("250 2.0.0 Ok")
                elif verb == b"QUIT":
                    await send("221 2.0.0 Bye")
                    break
                else:
                    await send("502 5.5.2 Error: command not recognized")
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            try:
                writer.close()
            except Exception:
                pass

        return

    def fate(self):
        if not self.rng:
            return "ok"
        r = self.rng.random()
        if r < 0.15:
            return "4xx"
        if r < 0.25:
            return "5xx"
        if r < 0.33:
            return "drop"
        if r < 0.38:
            return "refuse-data"
        return "ok"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--log", required=True)
    p.add_argument("--caps", default="PIPELINING,SIZE 50000000,8BITMIME,DSN,SMTPUTF8,ENHANCEDSTATUSCODES")
    p.add_argument("--chaos", type=int, default=None)
    p.add_argument("--xclient", action="store_true")
    p.add_argument("--proxy", action="store_true")
    p.add_argument("--xclient-after-ehlo", action="store_true",
                   help="refuse XCLIENT before EHLO (as some servers might)")
    p.add_argument("--reply-rcpt", default=None)
    p.add_argument("--reply-mail", default=None)
    p.add_argument("--tls", default=None, help="CERT,KEY: offer STARTTLS")
    p.add_argument("--cmdlog", default=None, help="append every command line here")
    args = p.parse_args()
    backend = Backend(args)

    async def run():
        server = await asyncio.start_server(backend.handle, args.host, args.port, limit=1 << 20)
        print("ready %d" % args.port, flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(run())


if __name__ == "__main__":
    main()
