"""Fixtures for ravelin's end-to-end tests: a temp dir, a DNS server, a
recording backend and a ravelin factory, all on 127.0.0.1."""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))

import harness  # noqa: E402
from dnsserver import start_dns_server  # noqa: E402


@pytest.fixture
def dns():
    srv = start_dns_server({})
    yield srv
    srv.stop()


@pytest.fixture
def backend(tmp_path):
    b = harness.Backend(str(tmp_path), "--xclient")
    yield b
    b.stop()


@pytest.fixture
def ravelin_factory(tmp_path):
    started = []

    def make(config, port, **kw):
        r = harness.Ravelin(str(tmp_path), config, port=port, **kw)
        started.append(r)
        return r

    yield make
    bad = []
    for r in started:
        rc = r.stop()
        if rc not in (0, None, -15):
            bad.append((rc, r.log()[-3000:]))
    assert not bad, "ravelin exited badly (sanitizer/valgrind report?): %r" % bad


@pytest.fixture
def proxy(tmp_path, dns, backend, ravelin_factory):
    """A ravelin on a free port in front of the recording backend."""
    port = harness.free_port()
    r = ravelin_factory(harness.base_config(port, backend.port, dns.port), port)
    r.backend = backend
    r.dns = dns
    return r
