"""limit() on a Redis ratelimit_store through two real ravelin instances:
one limit across both; Redis killed mid-run fails open (mail still
accepted, a log line, ratelimit_store_errors_total), no crash, and the
limit is enforced again once Redis is back. redis-server runs here on
127.0.0.1 (random port, --save '', temp dir)."""

import os
import time

import pytest

import harness
from test_ratelimit_redis import REDIS_SERVER, Redis
from test_rules_stages import stats

pytestmark = pytest.mark.skipif(not os.path.exists(REDIS_SERVER), reason="redis-server not installed")

RULES = r"""
shared_mail: mail sender =~ /@shared\.test$/ && limit(sender, 4/2s)
    -> tempfail 450 4.7.1 "Sending rate exceeded"
shared_conn: connect client.ip == 127.0.0.6 && limit(client.ip, 2/2s)
    -> tempfail 421 4.7.0 "Too many connections, slow down"
"""


@pytest.fixture
def redis():
    r = Redis()
    yield r
    r.close()


@pytest.fixture
def pair(tmp_path, dns, backend, ravelin_factory, redis):
    rules = tmp_path / "limits.rules"
    rules.write_text(RULES)
    out = []
    for i in range(2):
        sock = str(tmp_path / ("stats%d.sock" % i))
        r = harness.start_proxy(ravelin_factory, backend, dns,
                                extra="rules %s\nstats_socket %s\nratelimit_store %s\n"
                                      % (rules, sock, redis.url()))
        r.sock = sock
        assert r.wait_log(" started: ")
        out.append(r)
    return out


def mail(r, sender, body=True):
    c = harness.Client(r.port)
    c.greet()
    if body:
        code, text = c.message(sender, ["u@example.org"], "From: a@client.test\r\n\r\nx")
    else:
        code, text = c.cmd("MAIL FROM:<%s>" % sender)
    c.cmd("QUIT")
    return code, text


def test_two_instances_share_one_limit(pair, redis):
    a, b = pair
    codes = [mail(x, "s@shared.test", body=False)[0] for x in (a, b, a, b)]
    assert codes == [250] * 4
    code, text = mail(a, "s@shared.test", body=False)
    assert code == 450 and "4.7.1 Sending rate exceeded" in text
    assert mail(b, "s@shared.test", body=False)[0] == 450
    assert mail(b, "t@shared.test", body=False)[0] == 250
    # Keys carry the prefix and the rule name.
    assert redis.cli("EXISTS", "ravelin:shared_mail:s@shared.test") == "1"
    assert stats(a.sock)["ratelimit_hits_total"] == 1
    assert stats(b.sock)["ratelimit_hits_total"] == 1
    assert a.wait_log("ratelimit: key=s@shared.test count=5 limit=4/2s rule=shared_mail")
    time.sleep(2.2)
    assert mail(a, "s@shared.test", body=False)[0] == 250


def test_connect_limit_shared_through_redis(pair):
    a, b = pair

    def banner(r):
        c = harness.Client(r.port, source="127.0.0.6")
        code = c.reply()[0]
        c.close()
        return code
    assert [banner(a), banner(b), banner(a), banner(b)] == [220, 220, 421, 421]


def test_redis_killed_fails_open_and_recovers(pair, redis):
    a, b = pair
    assert [mail(a, "k@shared.test")[0] for _ in range(4)] == [250] * 4
    assert mail(a, "k@shared.test")[0] == 450
    redis.kill()
    # Fail open: every message is accepted, delivered, no crash.
    codes = [mail(x, "k@shared.test")[0] for x in (a, b) * 4]
    assert codes == [250] * 8
    assert len([m for m in a.backend.messages() if "<k@shared.test>" in m["mail"]]) == 12
    for r in (a, b):
        assert r.proc.poll() is None
        assert r.wait_log("failing open")
        assert r.wait_log("ratelimit store redis://127.0.0.1:%d/0" % redis.port)
        assert stats(r.sock)["ratelimit_store_errors_total"] >= 1
    # Back: once the store's backoff (1 s) is over the limit holds again.
    redis.start()
    deadline = time.time() + 8
    while time.time() < deadline and not a.log().count("reconnected"):
        mail(a, "probe@client.test")   # not limited: only a probe of the store
        mail(a, "p@shared.test", body=False)
        time.sleep(0.2)
    assert "reconnected" in a.log()
    time.sleep(2.2)   # let the probe's own events age out
    codes = [mail(a, "r@shared.test", body=False)[0] for _ in range(5)]
    assert codes == [250] * 4 + [450]
