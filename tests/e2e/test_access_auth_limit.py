"""AUTH failures per client address (auth_max_failures_per_ip): counted
across sessions in the rate-limit store; past the limit, AUTH from that
address gets 421 4.7.0 without the password being checked, even a right
one, while other addresses are unaffected."""

import harness
import test_access_lib as lib

GOOD = "Bob-s3cret-sha512"


def start(ravelin_factory, tmp_path, backend, dns):
    users = lib.write(tmp_path, "users", "bob:%s\n" % lib.mkpasswd(GOOD, "sha-512"))
    port = harness.free_port()
    conf = lib.config(["127.0.0.1:%d inbound auth-plaintext" % port], backend.port, dns.port,
                      extra="auth_users %s\nauth_max_failures 5\nauth_max_failures_per_ip 3\n" % users)
    return ravelin_factory(conf, port)


def auth(port, password, source="127.0.0.1"):
    c = harness.Client(port, source=source)
    c.reply()
    c.cmd("EHLO client.test")
    code, text = c.cmd("AUTH PLAIN " + lib.plain("bob", password))
    c.close()
    return code, text


def test_auth_failures_are_limited_per_address_across_sessions(ravelin_factory, tmp_path,
                                                                backend, dns):
    r = start(ravelin_factory, tmp_path, backend, dns)
    for _ in range(3):
        assert auth(r.port, "wrong")[0] == 535
    code, text = auth(r.port, GOOD)
    assert code == 421 and "4.7.0" in text, text
    assert "too many failures from this address" in r.log()
    # Another address still authenticates.
    assert auth(r.port, GOOD, source="127.0.0.5")[0] == 235
