"""End-to-end tests of what ships: `make install` into a DESTDIR, the man
pages, `ravelin -V`, the sample configuration and systemd unit in etc/,
and the `make run` demo (tests/demo.sh).

Only loopback is used (the demo starts its own DNS server and smtp-sink).
"""

import glob
import os
import re
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("RAVELIN_BUILD", os.path.join(ROOT, "build"))

# Where `make install PREFIX=/usr` must put things (relative to DESTDIR).
INSTALLED = [
    # path, mode
    ("usr/sbin/ravelin", 0o755),
    ("usr/sbin/ravelinctl", 0o755),
    ("usr/share/man/man8/ravelin.8", 0o644),
    ("usr/share/man/man8/ravelinctl.8", 0o644),
    ("usr/share/man/man5/ravelin.conf.5", 0o644),
    ("usr/share/man/man5/ravelin.rules.5", 0o644),
    ("etc/ravelin/ravelin.conf.sample", 0o644),
    ("etc/ravelin/ravelin.conf", 0o644),
    ("usr/lib/systemd/system/ravelin.service", 0o644),
    ("usr/share/doc/ravelin/README.md", 0o644),
    ("usr/share/doc/ravelin/deploy.md", 0o644),
    ("usr/share/doc/ravelin/architecture.md", 0o644),
] + [("etc/ravelin/rules/" + os.path.basename(r), 0o644)
     for r in sorted(glob.glob(os.path.join(ROOT, "rules", "*.rules")))]

MAN_PAGES = [
    # installed path, NAME line must start with
    ("usr/share/man/man8/ravelin.8", "ravelin - "),
    ("usr/share/man/man8/ravelinctl.8", "ravelinctl - "),
    ("usr/share/man/man5/ravelin.conf.5", "ravelin.conf - "),
    ("usr/share/man/man5/ravelin.rules.5", "ravelin.rules - "),
]

UNIT_SETTINGS = [
    # key, a value the shipped unit must have (substring)
    ("Type", "simple"),
    ("ExecStart", "/usr/sbin/ravelin -c /etc/ravelin/ravelin.conf"),
    ("ExecReload", "kill -HUP $MAINPID"),
    ("NoNewPrivileges", "yes"),
    ("ProtectSystem", "strict"),
    ("ProtectHome", "yes"),
    ("PrivateTmp", "yes"),
    ("PrivateDevices", "yes"),
    ("CapabilityBoundingSet", "CAP_NET_BIND_SERVICE CAP_SETUID CAP_SETGID"),
    ("RuntimeDirectory", "ravelin"),
]


def build_args():
    """make arguments that select the build directory the tests run."""
    # The directory itself, not its name under the source tree: a build
    # kept elsewhere (RAVELIN_BUILD=/tmp/x) must not make ./x.
    name = os.path.basename(os.path.normpath(BUILD))
    args = ["BUILD=" + os.path.abspath(BUILD)]
    if "san" in name:
        args.append("SAN=1")
    return args


@pytest.fixture(scope="module")
def destdir(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("destdir"))
    r = subprocess.run(["make", "-s", "-C", ROOT, "install", "DESTDIR=" + d, "PREFIX=/usr"]
                       + build_args(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=600)
    assert r.returncode == 0, r.stdout.decode(errors="replace")
    return d


@pytest.mark.parametrize("path,mode", INSTALLED, ids=[p for p, _ in INSTALLED])
def test_install_puts_file_in_place(destdir, path, mode):
    full = os.path.join(destdir, path)
    assert os.path.isfile(full), "%s not installed" % path
    assert os.stat(full).st_mode & 0o777 == mode, "%s: mode %o" % (path, os.stat(full).st_mode & 0o777)


def test_install_copies_rules_and_sample_unchanged(destdir):
    for r in glob.glob(os.path.join(ROOT, "rules", "*.rules")):
        with open(r, "rb") as a, open(os.path.join(destdir, "etc/ravelin/rules", os.path.basename(r)), "rb") as b:
            assert a.read() == b.read(), r
    with open(os.path.join(ROOT, "etc/ravelin.conf"), "rb") as a, \
            open(os.path.join(destdir, "etc/ravelin/ravelin.conf.sample"), "rb") as b:
        assert a.read() == b.read()


def test_install_keeps_the_operators_configuration(destdir):
    conf = os.path.join(destdir, "etc/ravelin/ravelin.conf")
    rule = sorted(glob.glob(os.path.join(destdir, "etc/ravelin/rules/*.rules")))[0]
    for f in (conf, rule):
        with open(f, "a") as fh:
            fh.write("# edited by the operator\n")
    r = subprocess.run(["make", "-s", "-C", ROOT, "install", "DESTDIR=" + destdir, "PREFIX=/usr"]
                       + build_args(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=600)
    assert r.returncode == 0, r.stdout.decode(errors="replace")
    for f in (conf, rule):
        with open(f) as fh:
            assert fh.read().endswith("# edited by the operator\n"), f


@pytest.mark.parametrize("page,name", MAN_PAGES, ids=[os.path.basename(p) for p, _ in MAN_PAGES])
def test_man_page_renders_without_warnings(destdir, page, name):
    path = os.path.join(destdir, page)
    env = dict(os.environ, MANPAGER="cat", PAGER="cat", MANWIDTH="80", LANG="C.UTF-8")
    r = subprocess.run(["man", "-l", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       env=env, timeout=60)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    assert r.stderr == b"", r.stderr.decode(errors="replace")
    text = r.stdout.decode("utf-8", "replace")
    lines = [l.strip() for l in text.splitlines()]
    assert "NAME" in lines, text[:500]
    first = re.sub(r"\s+", " ", lines[lines.index("NAME") + 1].replace("\u2010", "-"))
    assert first.startswith(name), text[:500]
    # groff itself, with every warning enabled.
    g = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", path], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=60)
    assert g.returncode == 0 and g.stderr == b"", g.stderr.decode(errors="replace")


def test_conf_page_documents_every_directive():
    with open(os.path.join(ROOT, "src/config.c")) as f:
        names = re.findall(r'\{\s*"([a-z_]+)",\s*CT_', f.read())
    assert len(names) > 30, names
    with open(os.path.join(ROOT, "doc/ravelin.conf.5")) as f:
        page = f.read().replace("\\_", "_")
    missing = [n for n in names if not re.search(r"^\.(B|BI|BR|TQ)\s+%s\b" % re.escape(n), page, re.M)]
    assert not missing, "directives without an entry in ravelin.conf.5: %s" % missing


def test_version_flag_prints_ravelin_and_library_versions(destdir):
    with open(os.path.join(ROOT, "include/version.h")) as f:
        version = re.search(r'RAVELIN_VERSION "([^"]+)"', f.read()).group(1)
    r = subprocess.run([os.path.join(destdir, "usr/sbin/ravelin"), "-V"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=30)
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert out.splitlines()[0] == "ravelin " + version, out
    for lib in ("libevent", "OpenSSL", "PCRE2", "libunbound", "hiredis", "libmilter", "libpsl"):
        assert re.search(r"^%s \d+\.\d+" % lib, out, re.M), "%s version missing:\n%s" % (lib, out)


def test_sample_config_passes_check_once_its_files_exist(destdir, tmp_path):
    """etc/ravelin.conf as installed, with /etc/ravelin pointing into DESTDIR
    and a freshly made certificate where tls_certificate/tls_key say."""
    etc = os.path.join(destdir, "etc/ravelin")
    os.makedirs(os.path.join(etc, "tls"), exist_ok=True)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=mx.example.org", "-keyout", os.path.join(etc, "tls/key.pem"),
                    "-out", os.path.join(etc, "tls/cert.pem")], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    with open(os.path.join(etc, "ravelin.conf.sample")) as f:
        text = f.read().replace("/etc/ravelin/", etc + "/")
    conf = tmp_path / "ravelin.conf"
    conf.write_text(text)
    r = subprocess.run([os.path.join(destdir, "usr/sbin/ravelin"), "-c", str(conf), "-t"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    nrules = len(glob.glob(os.path.join(ROOT, "rules", "*.rules")))
    assert r.returncode == 0, r.stderr.decode()
    assert "ok (2 listen, 1 backend, %d rule files)" % nrules in r.stdout.decode(), r.stdout


def test_sample_config_as_shipped_lacks_only_site_files():
    """In the source tree -t may only miss what an installation provides."""
    r = subprocess.run([os.path.join(BUILD, "ravelin"), "-c", os.path.join(ROOT, "etc/ravelin.conf"), "-t"],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    for line in r.stderr.decode().splitlines():
        assert "/etc/ravelin/tls/" in line or "/etc/ravelin/rules/" in line, line


@pytest.mark.parametrize("key,value", UNIT_SETTINGS, ids=[k for k, _ in UNIT_SETTINGS])
def test_systemd_unit_has_setting(key, value):
    with open(os.path.join(ROOT, "etc/ravelin.service")) as f:
        settings = {}
        for line in f:
            if "=" in line and not line.startswith("#"):
                k, _, v = line.strip().partition("=")
                settings.setdefault(k, v)
    assert key in settings, key
    assert value in settings[key], (key, settings[key])


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="no systemd-analyze")
def test_systemd_unit_verifies(destdir, tmp_path):
    with open(os.path.join(destdir, "usr/lib/systemd/system/ravelin.service")) as f:
        text = f.read().replace("/usr/sbin/", os.path.join(destdir, "usr/sbin") + "/")
    unit = tmp_path / "ravelin.service"
    unit.write_text(text)
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=60)
    # The man pages are not installed on this system: that line is expected.
    problems = [l for l in r.stdout.decode().splitlines() if l and "Command 'man " not in l]
    assert not problems, problems


def test_demo_sends_a_message_through(tmp_path):
    env = dict(os.environ, BUILD=BUILD, TMPDIR=str(tmp_path))
    env.pop("KEEP", None)
    r = subprocess.run(["sh", os.path.join(ROOT, "tests/demo.sh")], cwd=ROOT, env=env,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=180)
    out = r.stdout.decode("utf-8", "replace")
    assert r.returncode == 0, out[-4000:]
    # swaks shows the dialogue; the message is accepted with 250 after DATA.
    assert re.search(r"-> \.\r?\n<-  250 ", out), out[-4000:]
    assert "accepted: from=<alice@example.com> to=<postmaster@example.org>" in out
    assert "Relay access denied" in out
    assert "Subject: ravelin demo" in out.split("what the MTA received")[1]
    assert "demo finished" in out
    # Everything it started is gone, and so is its temp directory.
    assert os.listdir(str(tmp_path)) == []
