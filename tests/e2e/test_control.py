"""End-to-end tests of the stats socket (src/control.c, src/stats.c) and
build/ravelinctl, served by build/tools/controlserver (fake callbacks, two
stats workers with known counts) so that no proxy is needed.

Every command goes through a plain AF_UNIX socket and through ravelinctl;
`show metrics` is checked by a strict Prometheus text-format parser; reload
is tried as another uid (setpriv); `ravelinctl top` runs under tmux.
"""

import json
import os
import re
import shutil
import socket
import stat
import subprocess
import tempfile
import threading
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("RAVELIN_BUILD", os.path.join(ROOT, "build"))
CTL = os.path.join(BUILD, "ravelinctl")
SERVER = os.path.join(BUILD, "tools", "controlserver")

CONTRACT = [
    "connections_total", "connections_active", "messages_accepted_total",
    "messages_rejected_total", "messages_tempfailed_total",
    "recipients_rejected_total", "relay_denied_total", "auth_success_total",
    "auth_failure_total", "spf_result_total", "dkim_result_total",
    "dmarc_result_total", "ratelimit_hits_total", "spoof_detected_total",
    "rule_hits_total", "backend_errors_total",
]
LABELLED = {"spf_result_total", "dkim_result_total", "dmarc_result_total",
            "rule_hits_total"}
WEIRD_RULE = 'we"ird\\rule\nname'


class Server:
    """One controlserver process on a socket in a directory of its own."""

    def __init__(self, *opts, directory=None):
        self.dir = directory or tempfile.mkdtemp(prefix="ravelin-ctl-")
        os.chmod(self.dir, 0o755)  # so that other uids can reach the socket
        self.path = os.path.join(self.dir, "stats.sock")
        self.proc = subprocess.Popen(
            [SERVER, *opts, self.path], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if line != "ready\n":
            self.proc.wait(5)
            raise RuntimeError("controlserver: " + self.proc.stderr.read())
        self.lock = threading.Lock()

    def cmd(self, line):
        """Send a stdin command (inc/gauge/reload-fail/reload-ok), wait for ok."""
        with self.lock:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
            assert self.proc.stdout.readline() == "ok\n", line

    def stop(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(10)
        return self.proc.returncode


@pytest.fixture
def server():
    s = Server()
    yield s
    assert s.stop() == 0
    assert not os.path.exists(s.path), "socket left behind"
    shutil.rmtree(s.dir, ignore_errors=True)


def ask(path, data, half_close=True, timeout=10):
    """Raw client: send data, read the answer until the server closes."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
        c.connect(path)  # blocking: waits for room in the backlog
        c.settimeout(timeout)
        c.sendall(data)
        if half_close:
            c.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            chunk = c.recv(65536)
            if not chunk:
                return out.decode()
            out += chunk


def ctl(path, *args, prefix=(), timeout=20):
    return subprocess.run([*prefix, CTL, "-s", path, *args], capture_output=True,
                          text=True, timeout=timeout)


# --- a strict parser of the Prometheus text exposition format 0.0.4 ---------

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
VALUE = re.compile(r"(-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?|[-+]?Inf|NaN)\Z")


def parse_labels(s, i):
    """Parse {name="value",...} starting at s[i] == '{'; return (dict, index after '}')."""
    assert s[i] == "{"
    i += 1
    labels = {}
    while s[i] != "}":
        m = LABEL_NAME.match(s, i)
        assert m, "bad label name at %r" % s[i:]
        name = m.group(0)
        i = m.end()
        assert s[i:i + 2] == '="', "label %s: expected =\" in %r" % (name, s)
        i += 2
        value = ""
        while s[i] != '"':
            if s[i] == "\\":
                esc = s[i + 1]
                assert esc in '\\"n', "bad escape \\%s in %r" % (esc, s)
                value += {"\\": "\\", '"': '"', "n": "\n"}[esc]
                i += 2
            else:
                assert s[i] != "\n"
                value += s[i]
                i += 1
        i += 1
        assert name not in labels, "label %s twice" % name
        labels[name] = value
        if s[i] == ",":
            i += 1
        else:
            assert s[i] == "}", "expected , or } in %r" % s
    return labels, i + 1


def parse_prometheus(text):
    """Families {name: {"help", "type", "samples": [(labels, value)]}}; asserts on any deviation."""
    assert text.endswith("\n"), "exposition must end with a newline"
    families = {}
    current = None
    for line in text.split("\n")[:-1]:
        assert line, "empty line"
        if line.startswith("# HELP "):
            name, _, helptext = line[7:].partition(" ")
            assert METRIC_NAME.match(name), name
            assert name not in families, "family %s twice" % name
            assert "\\" not in helptext.replace("\\\\", "").replace("\\n", ""), line
            families[name] = {"help": helptext, "type": None, "samples": []}
            current = name
        elif line.startswith("# TYPE "):
            name, typ = line[7:].split(" ")
            assert name == current, "TYPE %s after HELP %s" % (name, current)
            assert families[name]["type"] is None and not families[name]["samples"]
            assert typ in ("counter", "gauge"), typ
            families[name]["type"] = typ
        else:
            assert not line.startswith("#"), "stray comment %r" % line
            m = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line)
            assert m, "bad sample %r" % line
            name = m.group(0)
            assert name == current, "sample %s outside its family %s" % (name, current)
            assert families[name]["type"], "sample before TYPE: %r" % line
            i = m.end()
            labels = {}
            if line[i] == "{":
                labels, i = parse_labels(line, i)
            assert line[i] == " ", "expected one space in %r" % line
            value = line[i + 1:]
            assert VALUE.match(value), "value %r not numeric" % value
            families[name]["samples"].append((labels, float(value)))
    for name, f in families.items():
        assert f["type"], "family %s has no TYPE" % name
        if f["type"] == "counter":
            assert name.endswith("_total"), name
        else:
            assert not name.endswith("_total"), name
    return families


# --- the socket -------------------------------------------------------------

def test_socket_is_created_with_mode_0660(server):
    st = os.lstat(server.path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660


@pytest.mark.parametrize("mode,want", [("0600", 0o600), ("0666", 0o660), ("0777", 0o660)])
def test_socket_mode_is_never_looser_than_0660(mode, want):
    s = Server("-m", mode)
    try:
        assert stat.S_IMODE(os.lstat(s.path).st_mode) == want
    finally:
        s.stop()
        shutil.rmtree(s.dir, ignore_errors=True)


def test_stale_socket_is_replaced():
    d = tempfile.mkdtemp(prefix="ravelin-ctl-")
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(os.path.join(d, "stats.sock"))
    stale.close()  # the file stays, nobody listens
    s = Server(directory=d)
    try:
        assert ask(s.path, b"show info\n").startswith("version: ")
    finally:
        s.stop()
        shutil.rmtree(d, ignore_errors=True)


def test_regular_file_at_socket_path_is_left_alone():
    d = tempfile.mkdtemp(prefix="ravelin-ctl-")
    path = os.path.join(d, "stats.sock")
    with open(path, "w") as f:
        f.write("precious")
    p = subprocess.run([SERVER, path], stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=10)
    assert p.returncode == 1
    assert "not a socket" in p.stderr
    assert open(path).read() == "precious"
    shutil.rmtree(d, ignore_errors=True)


def test_live_socket_is_not_taken_over(server):
    p = subprocess.run([SERVER, server.path], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=10)
    assert p.returncode == 1
    assert "in use" in p.stderr
    assert ask(server.path, b"show info\n").startswith("version: ")


# --- commands over a raw socket ---------------------------------------------

def test_show_info_has_the_contract_keys(server):
    out = ask(server.path, b"show info\n")
    pairs = [line.split(": ", 1) for line in out.splitlines()]
    assert [k for k, _ in pairs] == ["version", "uptime", "config", "workers", "sessions"]
    info = dict(pairs)
    assert info["version"] == "ravelin-test 1.0"
    assert info["config"] == "/etc/ravelin/test.conf"
    assert info["workers"] == "2"
    assert info["sessions"] == "2"  # the connections_active gauge
    assert int(info["uptime"]) >= 0


def test_show_stats_is_one_json_object_with_every_counter(server):
    stats = json.loads(ask(server.path, b"show stats\n"))
    for name in CONTRACT + ["messages_discarded_total", "ratelimit_store_errors_total"]:
        assert name in stats, name
        if name in LABELLED:
            assert isinstance(stats[name], dict), name
        else:
            assert isinstance(stats[name], int), name
    assert stats["connections_total"] == 7
    assert stats["connections_active"] == 2
    assert stats["messages_accepted_total"] == 2
    assert stats["messages_rejected_total"] == 1
    assert stats["spf_result_total"] == {"pass": 3, "fail": 1}
    assert stats["dkim_result_total"] == {}
    assert stats["dmarc_result_total"] == {}
    assert stats["rule_hits_total"] == {"local.rules:12": 5, WEIRD_RULE: 1}
    assert stats["backend_errors_total"] == 0


def test_show_stats_follows_the_workers(server):
    server.cmd("inc messages_rejected_total 5")
    server.cmd("inc messages_rejected_total 4")
    server.cmd("inc dkim_result_total pass 2")
    server.cmd("inc dkim_result_total pass 1")
    server.cmd("gauge connections_active -2")
    stats = json.loads(ask(server.path, b"show stats\n"))
    assert stats["messages_rejected_total"] == 10
    assert stats["dkim_result_total"] == {"pass": 3}
    assert stats["connections_active"] == 0


def test_show_metrics_parses_strictly_and_matches_stats(server):
    server.cmd("inc dmarc_result_total fail 2")
    text = ask(server.path, b"show metrics\n")
    fams = parse_prometheus(text)
    stats = json.loads(ask(server.path, b"show stats\n"))
    assert set(fams) == {"ravelin_" + k for k in stats}
    assert fams["ravelin_connections_active"]["type"] == "gauge"
    assert fams["ravelin_connections_total"]["type"] == "counter"
    for key, value in stats.items():
        fam = fams["ravelin_" + key]
        assert fam["help"], key
        if isinstance(value, dict):
            label = "rule" if key == "rule_hits_total" else "result"
            got = {}
            for labels, v in fam["samples"]:
                assert list(labels) == [label], (key, labels)
                got[labels[label]] = int(v)
            assert got == value, key
        else:
            assert fam["samples"] == [({}, float(value))], key


def test_show_sessions(server):
    out = ask(server.path, b"show sessions\n")
    assert out == "4F2A9C1D 192.0.2.7 rcpt 12\n9B00C0DE 198.51.100.9 data 3\n"


def test_reload_answers_ok_or_the_error(server):
    assert ask(server.path, b"reload\n") == "ok\n"
    server.cmd('reload-fail /etc/ravelin/ravelin.conf:12: unknown directive "foo"')
    assert ask(server.path, b"reload\n") == \
        'error: /etc/ravelin/ravelin.conf:12: unknown directive "foo"\n'
    server.cmd("reload-ok")
    assert ask(server.path, b"reload\n") == "ok\n"
    assert "reloads 3\n" in ask(server.path, b"show config\n")


def test_ratelimit_show_and_clear(server):
    key = b"client.ip:192.0.2.7"
    assert ask(server.path, b"show ratelimit " + key + b"\n") == \
        "client.ip:192.0.2.7: 31 events in 60s (limit 30)\n"
    assert ask(server.path, b"clear ratelimit " + key + b"\n") == "ok\n"
    assert ask(server.path, b"show ratelimit " + key + b"\n") == \
        "error: no such key: client.ip:192.0.2.7\n"
    assert ask(server.path, b"clear ratelimit " + key + b"\n").startswith("error: ")


def test_missing_callbacks_answer_not_available():
    s = Server("-N")
    try:
        for cmd in (b"show config\n", b"show ratelimit k\n", b"clear ratelimit k\n"):
            assert ask(s.path, cmd) == "error: not available\n", cmd
        assert ask(s.path, b"show sessions\n").startswith("4F2A9C1D")
    finally:
        s.stop()
        shutil.rmtree(s.dir, ignore_errors=True)


@pytest.mark.parametrize("line,answer", [
    (b"bogus\n", "error: unknown command\n"),
    (b"show\n", "error: unknown command\n"),
    (b"show bogus\n", "error: unknown command\n"),
    (b"show stats now\n", "error: unknown command\n"),
    (b"reload now\n", "error: unknown command\n"),
    (b"clear\n", "error: unknown command\n"),
    (b"show ratelimit\n", "error: usage: show ratelimit KEY\n"),
    (b"clear ratelimit   \n", "error: usage: clear ratelimit KEY\n"),
    (b"\n", "error: empty command\n"),
    (b"show\x01info\n", "error: invalid character in command\n"),
    (b"show info\x00\n", "error: invalid character in command\n"),
])
def test_bad_commands_get_an_error_line(server, line, answer):
    assert ask(server.path, line) == answer


@pytest.mark.parametrize("line", [
    b"show info",             # no newline: the half-close ends the command
    b"show info\r\n",
    b"  SHOW   Info  \n",
    b"show info\nshow stats\n",  # one command per connection
])
def test_command_line_forms(server, line):
    out = ask(server.path, line)
    assert out.startswith("version: ") and out.count("\n") == 5


def test_help_lists_every_command(server):
    out = ask(server.path, b"help\n")
    for cmd in ("show info", "show stats", "show metrics", "show sessions", "show config",
                "show ratelimit KEY", "clear ratelimit KEY", "reload", "help"):
        assert cmd in out, cmd


def test_overlong_line_is_refused(server):
    out = ask(server.path, b"A" * 5000, half_close=False)
    assert out == "error: line too long\n"


def test_idle_client_is_closed_after_the_timeout():
    s = Server("-t", "300")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
            c.settimeout(5)
            c.connect(s.path)
            t0 = time.monotonic()
            assert c.recv(100) == b""
            assert time.monotonic() - t0 < 3
    finally:
        s.stop()
        shutil.rmtree(s.dir, ignore_errors=True)


def test_many_clients_at_once(server):
    results, errors = [], []

    def client():
        try:
            results.append(json.loads(ask(server.path, b"show stats\n")))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=client) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 40 and all(r["connections_total"] == 7 for r in results)


def test_clients_that_leave_without_reading_do_not_hurt(server):
    # Hundreds of kilobytes of metrics: more than the socket buffer holds.
    for i in range(2000):
        server.cmd("inc rule_hits_total %s%d 1" % ("r" * 150, i))
    for _ in range(30):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
            c.connect(server.path)
            c.sendall(b"show metrics\n")  # then close at once: EPIPE/reset on the server side
    for _ in range(10):
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.connect(server.path)
        c.close()  # nothing sent at all
    assert server.proc.poll() is None
    assert json.loads(ask(server.path, b"show stats\n"))["connections_total"] == 7


# --- ravelinctl -------------------------------------------------------------

@pytest.mark.parametrize("args,expect,rc", [
    (["show", "info"], "version: ravelin-test 1.0\n", 0),
    (["show", "stats"], '"connections_total": 7', 0),
    (["show", "metrics"], "# TYPE ravelin_connections_total counter\n", 0),
    (["show", "sessions"], "9B00C0DE 198.51.100.9 data 3\n", 0),
    (["show", "config"], "hostname test.example\n", 0),
    (["show", "ratelimit", "client.ip:192.0.2.7"], "31 events", 0),
    (["show", "ratelimit", "nope"], "error: no such key: nope\n", 1),
    (["reload"], "ok\n", 0),
    (["help"], "clear ratelimit KEY", 0),
    (["bogus", "command"], "error: unknown command\n", 1),
    (["show stats"], '"rule_hits_total"', 0),  # one argument with a space
])
def test_ravelinctl_commands(server, args, expect, rc):
    p = ctl(server.path, *args)
    assert p.returncode == rc, (args, p.stdout, p.stderr)
    assert expect in p.stdout, (args, p.stdout)


def test_ravelinctl_clear_ratelimit(server):
    p = ctl(server.path, "clear", "ratelimit", "client.ip:192.0.2.7")
    assert (p.returncode, p.stdout) == (0, "ok\n")
    assert ctl(server.path, "clear", "ratelimit", "client.ip:192.0.2.7").returncode == 1


def test_ravelinctl_reload_error_exits_1(server):
    server.cmd("reload-fail /etc/ravelin/rules/local.rules:3:7: unknown field")
    p = ctl(server.path, "reload")
    assert p.returncode == 1
    assert p.stdout == "error: /etc/ravelin/rules/local.rules:3:7: unknown field\n"


def test_ravelinctl_without_a_socket_exits_1():
    p = ctl("/nonexistent/ravelin/stats.sock", "show", "info")
    assert p.returncode == 1
    assert "No such file or directory" in p.stderr
    assert p.stdout == ""


def test_ravelinctl_usage_errors(server):
    assert subprocess.run([CTL], capture_output=True).returncode == 1
    assert ctl(server.path, "show", "in\nfo").returncode == 1
    assert ctl(server.path, "show", "x" * 2000).returncode == 1


def test_ravelinctl_default_socket_path():
    p = subprocess.run([CTL, "show", "info"], capture_output=True, text=True, timeout=10)
    if os.path.exists("/run/ravelin/stats.sock"):
        pytest.skip("a ravelin runs on this machine")
    assert p.returncode == 1 and "/run/ravelin/stats.sock" in p.stderr


# --- peer credentials -------------------------------------------------------

def as_nobody(gid=65534):
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv")
    return ["setpriv", "--reuid=65534", "--regid=%d" % gid, "--clear-groups"]


@pytest.fixture
def nobody_server():
    """Socket group nogroup, so uid 65534 may connect but is not the daemon's uid."""
    s = Server("-g", "65534")
    yield s
    s.stop()
    shutil.rmtree(s.dir, ignore_errors=True)


def test_other_uid_may_read_but_not_reload(nobody_server):
    s = nobody_server
    prefix = as_nobody()
    p = ctl(s.path, "show", "stats", prefix=prefix)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["connections_total"] == 7
    for args in (["reload"], ["clear", "ratelimit", "client.ip:192.0.2.7"]):
        p = ctl(s.path, *args, prefix=prefix)
        assert (p.returncode, p.stdout) == (1, "error: permission denied\n"), args
    # Nothing happened: no reload ran and the key is still limited.
    assert "reloads 0\n" in ask(s.path, b"show config\n")
    assert ask(s.path, b"show ratelimit client.ip:192.0.2.7\n").endswith("(limit 30)\n")
    # Root (the daemon's own uid here) may.
    assert ctl(s.path, "reload").stdout == "ok\n"


def test_uid_outside_the_socket_group_cannot_connect(server):
    p = ctl(server.path, "show", "info", prefix=as_nobody(gid=65533))
    assert p.returncode == 1
    assert "Permission denied" in p.stderr


# --- ravelinctl top under tmux ----------------------------------------------

def test_top_shows_changing_rates_under_tmux(server):
    if not shutil.which("tmux"):
        pytest.skip("tmux not installed")
    tmux = ["env", "-u", "TMUX", "tmux", "-L", "ravelin-top-%d" % os.getpid()]
    stop = threading.Event()

    def feed():
        while not stop.is_set():
            server.cmd("inc connections_total 10")
            server.cmd("inc spf_result_total pass 1")
            time.sleep(0.03)

    feeder = threading.Thread(target=feed)
    feeder.start()
    screens = []
    try:
        subprocess.run(tmux + ["new-session", "-d", "-s", "top", "-x", "120", "-y", "50",
                               "%s -s %s top -n 3 -d 0.3; echo TOP-EXIT=$?; sleep 30"
                               % (CTL, server.path)], check=True, timeout=10)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            out = subprocess.run(tmux + ["capture-pane", "-p", "-t", "top"],
                                 capture_output=True, text=True, timeout=10).stdout
            if not screens or screens[-1] != out:
                screens.append(out)
            if "TOP-EXIT=" in out:
                break
            time.sleep(0.05)
    finally:
        stop.set()
        feeder.join()
        subprocess.run(tmux + ["kill-server"], capture_output=True, timeout=10)
    final = screens[-1]
    assert "TOP-EXIT=0" in final, final
    assert "refresh 3" in final and "\x1b" not in final
    totals, rates = [], []
    for scr in screens:
        m = re.search(r"^connections\s+([0-9.]+)\s+([0-9]+)\s*$", scr, re.M)
        if m:
            rates.append(float(m.group(1)))
            totals.append(int(m.group(2)))
    assert len(set(totals)) >= 2, screens  # the numbers change from refresh to refresh
    assert max(rates) > 0, screens
    assert re.search(r"^spf pass\s+[0-9.]+\s+[0-9]+\s*$", final, re.M), final
    assert re.search(r"^active connections\s+2\s*$", final, re.M), final
    assert "version: ravelin-test 1.0" in final


def test_top_without_a_socket_exits_1():
    p = subprocess.run([CTL, "-s", "/nonexistent/stats.sock", "top", "-n", "1", "-d", "0.1"],
                       capture_output=True, text=True, timeout=10)
    assert p.returncode == 1 and "stats.sock" in p.stderr


def test_top_plain_output_when_not_a_terminal(server):
    p = subprocess.run([CTL, "-s", server.path, "top", "-n", "2", "-d", "0.1"],
                       capture_output=True, text=True, timeout=10)
    assert p.returncode == 0
    assert "\x1b" not in p.stdout
    assert p.stdout.count("----\n") == 2
    assert re.search(r"^connections\s+0\.0\s+7\s*$", p.stdout, re.M), p.stdout
