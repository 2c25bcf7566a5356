"""Nothing is lost (DESIGN.md 1.1): a few hundred messages over parallel
sessions through a backend that misbehaves at random (--chaos: 4xx/5xx at
end of data, disconnects mid-DATA, refused DATA). Every message the client
saw accepted is in the backend exactly once, byte for byte; none that the
client saw refused (or abandoned mid-DATA) is there at all."""

import os
import random
import threading

import harness

SESSIONS = 10
PER_SESSION = 30


def make_message(rng, sid, n):
    mid = "<s%d.m%d.%d@client.test>" % (sid, n, rng.randrange(1 << 30))
    lines = [b"From: a@sender.example", b"To: u@example.org", b"Message-ID: " + mid.encode(),
             b"Subject: chaos %d/%d" % (sid, n), b""]
    for i in range(rng.choice((3, 5, 20, 200, 1500))):
        kind = rng.random()
        if kind < 0.1:
            lines.append(b"." * rng.randint(1, 3) + b"dot line %d" % i)
        elif kind < 0.15:
            lines.append(bytes(rng.randrange(128, 256) for _ in range(20)))
        else:
            lines.append(b"line %d " % i + b"x" * rng.randrange(0, 120))
    return mid, b"\r\n".join(lines) + b"\r\n"


def stuffed(body):
    return b"\r\n".join(b"." + l if l.startswith(b".") else l for l in body.split(b"\r\n"))


def run_session(port, sid, outcomes, errors):
    rng = random.Random(sid)
    pipelined = sid % 2 == 0
    c = None
    try:
        c = harness.Client(port, timeout=20)
        c.greet("chaos%d.test" % sid)
        for n in range(PER_SESSION):
            mid, body = make_message(rng, sid, n)
            wire = stuffed(body) + b".\r\n"
            if rng.random() < 0.03:
                # The client gives up mid-DATA: that message must not be delivered.
                c.send(b"MAIL FROM:<a@sender.example>\r\nRCPT TO:<u@example.org>\r\nDATA\r\n")
                if c.replies(3)[2][0] == 354:
                    c.send(wire[:len(wire) // 2])
                outcomes[mid] = ("abandoned", body)
                c.close()
                c = harness.Client(port, timeout=20)
                c.greet("chaos%d.test" % sid)
                continue
            if pipelined:
                c.send(b"MAIL FROM:<a@sender.example>\r\nRCPT TO:<u@example.org>\r\nDATA\r\n")
                replies = c.replies(3)
                if replies[2][0] == 354:
                    c.send(wire)
                    final = c.reply()
                else:
                    final = replies[2]
                    c.cmd("RSET")
            else:
                if c.cmd("MAIL FROM:<a@sender.example>")[0] != 250 or \
                        c.cmd("RCPT TO:<u@example.org>")[0] != 250:
                    outcomes[mid] = ("refused", body)
                    c.cmd("RSET")
                    continue
                code, text = c.cmd("DATA")
                if code != 354:
                    final = (code, text)
                else:
                    c.send(wire)
                    final = c.reply()
            outcomes[mid] = ("accepted" if final[0] // 100 == 2 else "refused", body)
            if final[0] // 100 not in (2, 4, 5):
                errors.append((mid, final))
        c.cmd("QUIT")
    except Exception as e:  # noqa: BLE001 - reported by the test
        errors.append((sid, repr(e)))
    finally:
        if c:
            c.close()


def test_nothing_lost_under_backend_chaos(tmp_path, dns, ravelin_factory):
    seed = os.environ.get("RAVELIN_CHAOS_SEED", "4242")
    b = harness.Backend(str(tmp_path), "--xclient", "--chaos", seed)
    try:
        r = harness.start_proxy(ravelin_factory, b, dns, "spool_memory 16k\nbackend_timeout 5s")
        outcomes, errors = {}, []
        threads = [threading.Thread(target=run_session, args=(r.port, sid, outcomes, errors))
                   for sid in range(SESSIONS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads), "sessions hung"
        assert not errors, errors[:5]
        assert len(outcomes) == SESSIONS * PER_SESSION

        by_mid = {}
        for m in b.messages():
            body = m["body"]
            mid = [l for l in body.split(b"\r\n") if l.startswith(b"Message-ID: ")][0][12:].decode()
            by_mid.setdefault(mid, []).append(body)
        accepted = [mid for mid, (st, _) in outcomes.items() if st == "accepted"]
        refused = [mid for mid, (st, _) in outcomes.items() if st != "accepted"]
        abandoned = [mid for mid, (st, _) in outcomes.items() if st == "abandoned"]
        print("\nnothing-lost: %d messages, %d accepted, %d refused (%d abandoned by the client), "
              "backend holds %d" % (len(outcomes), len(accepted), len(refused), len(abandoned),
                                     sum(map(len, by_mid.values()))))
        # The chaos must have bitten, or the test proves nothing.
        assert len(refused) > 30 and len(accepted) > 100
        for mid in accepted:
            assert by_mid.get(mid) == [outcomes[mid][1]], "accepted message %s lost or altered" % mid
        for mid in refused:
            assert mid not in by_mid, "refused message %s reached the backend" % mid
        assert set(by_mid) <= set(accepted)
    finally:
        b.stop()
