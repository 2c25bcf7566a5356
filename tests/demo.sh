#!/bin/sh
# demo.sh - `make run`: ravelin in front of a local MTA, one message through.
#
# Starts, all on 127.0.0.1 and nothing else:
#   - a small DNS server (tests/lib/dnsserver.py) that ravelin uses as its
#     only resolver, so no query leaves the machine;
#   - Postfix's smtp-sink as the "real MTA" (it accepts everything and
#     writes what it received to a file);
#   - build/ravelin on port 2525 (or a free port) in front of it, with the
#     shipped rules/*.rules, logging to stderr;
# then sends a message with swaks (the SMTP dialogue is shown), tries to
# relay (refused), prints the message as the MTA received it, ravelin's log
# lines and its counters, stops everything and exits 0.
#
#   KEEP=1 sh tests/demo.sh    keep everything running until Ctrl-C
#   PORT=N                     listen on N instead of 2525
#   BUILD=build-san            use another build directory
set -u

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-build}
case "$BUILD" in /*) ;; *) BUILD="$ROOT/$BUILD" ;; esac
RAVELIN="$BUILD/ravelin"
RAVELINCTL="$BUILD/ravelinctl"
PY=/usr/bin/python3
KEEP=${KEEP:-0}

# say - a section heading.
say() {
	if [ -t 1 ]; then
		printf '\n\033[1m== %s\033[0m\n' "$*"
	else
		printf '\n== %s\n' "$*"
	fi
}

# die - explain and stop (the trap cleans up).
die() {
	echo "demo: $*" >&2
	exit 1
}

for tool in smtp-sink swaks "$PY"; do
	command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] ||
		die "$tool not found: run 'make deps' first"
done
SINK=$(command -v smtp-sink 2>/dev/null || echo /usr/sbin/smtp-sink)
[ -x "$RAVELIN" ] || die "$RAVELIN not built: run 'make' first"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ravelin-demo.XXXXXX") || die "mktemp failed"
dns_pid='' sink_pid='' ravelin_pid='' tail_pid=''

# cleanup - stop what we started (ravelin gently, to show its last lines).
# shellcheck disable=SC2317 # called by the trap
cleanup() {
	trap - EXIT INT TERM
	[ -n "$tail_pid" ] && kill "$tail_pid" 2>/dev/null
	if [ -n "$ravelin_pid" ] && kill -0 "$ravelin_pid" 2>/dev/null; then
		kill -TERM "$ravelin_pid" 2>/dev/null
		i=0
		while kill -0 "$ravelin_pid" 2>/dev/null && [ "$i" -lt 100 ]; do
			sleep 0.1
			i=$((i + 1))
		done
		kill -KILL "$ravelin_pid" 2>/dev/null
	fi
	for p in $sink_pid $dns_pid; do
		kill "$p" 2>/dev/null
	done
	wait 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# port_free - true when nothing listens on 127.0.0.1:$1 and we may bind it.
port_free() {
	"$PY" -c 'import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)' "$1"
}

# free_port - a port the kernel says is free on 127.0.0.1.
free_port() {
	"$PY" -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_port PORT PID NAME - until something accepts on 127.0.0.1:PORT.
wait_port() {
	i=0
	while [ "$i" -lt 100 ]; do
		kill -0 "$2" 2>/dev/null || return 1
		"$PY" -c 'import socket, sys
socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=0.5).close()' "$1" \
			2>/dev/null && return 0
		sleep 0.1
		i=$((i + 1))
	done
	echo "demo: $3 did not open port $1" >&2
	return 1
}

# 1. DNS: the demo sender's domain publishes SPF (only 192.0.2.0/24 may
# send for it) and a DMARC record; the "Internet" client 192.0.2.10 has
# matching reverse and forward names. Documentation addresses, as data
# only: nothing is ever sent to them.
cat >"$tmp/zones.json" <<'EOF'
{
  "example.com": [{"TXT": "v=spf1 ip4:192.0.2.0/24 -all"}],
  "_dmarc.example.com": [{"TXT": "v=DMARC1; p=none"}],
  "10.2.0.192.in-addr.arpa": [{"PTR": "client.example.com."}],
  "client.example.com": [{"A": "192.0.2.10"}],
  "example.org": [{"MX": [10, "mx.example.org"]}]
}
EOF
"$PY" "$ROOT/tests/lib/dnsserver.py" --port 0 "$tmp/zones.json" >"$tmp/dns.out" 2>"$tmp/dns.err" &
dns_pid=$!
dns_port=
i=0
while [ -z "$dns_port" ] && [ "$i" -lt 100 ]; do
	kill -0 "$dns_pid" 2>/dev/null || { cat "$tmp/dns.err" >&2; die "DNS server failed"; }
	dns_port=$(sed -n 's/^PORT //p' "$tmp/dns.out")
	[ -n "$dns_port" ] || sleep 0.1
	i=$((i + 1))
done
[ -n "$dns_port" ] || die "DNS server did not start"

# 2. The "real MTA": smtp-sink keeps root privileges only when run as root
# (-u root), so that it can write the dump file in our temp directory.
sink_port=$(free_port)
user_opt=
[ "$(id -u)" = 0 ] && user_opt="-u root"
# shellcheck disable=SC2086
"$SINK" $user_opt -D "$tmp/received.eml" -h mta.example.org "127.0.0.1:$sink_port" 64 \
	>"$tmp/sink.log" 2>&1 &
sink_pid=$!
wait_port "$sink_port" "$sink_pid" smtp-sink || { cat "$tmp/sink.log" >&2; exit 1; }

# 3. ravelin in front of it.
port=${PORT:-2525}
port_free "$port" || port=$(free_port)
pport=$(free_port)
cat >"$tmp/ravelin.conf" <<EOF
# Written by tests/demo.sh; see doc/ravelin.conf.5 and etc/ravelin.conf.
hostname          mx.example.org
log               stderr
workers           2
stats_socket      $tmp/stats.sock
listen            127.0.0.1:$port inbound
# As behind HAProxy: the PROXY header names the real client.
listen            127.0.0.1:$pport inbound proxy-protocol
backend           127.0.0.1:$sink_port xclient
local_domains     example.org
# No client of the demo is in mynetworks: all are treated like hosts on
# the Internet, which may only send to example.org.
mynetworks        10.255.255.0/24
dns_resolver      127.0.0.1:$dns_port
dns_timeout       2s
rules             $ROOT/rules/*.rules
EOF
say "configuration ($tmp/ravelin.conf)"
grep -v '^#' "$tmp/ravelin.conf"
say "ravelin -t"
"$RAVELIN" -c "$tmp/ravelin.conf" -t || die "configuration check failed"
"$RAVELIN" -d -c "$tmp/ravelin.conf" >"$tmp/ravelin.log" 2>&1 &
ravelin_pid=$!
# Wait for its "started" line rather than probing the port, so that the
# log shows only the demo's own connections.
i=0
while ! grep -q ' started: ' "$tmp/ravelin.log"; do
	if ! kill -0 "$ravelin_pid" 2>/dev/null || [ "$i" -ge 100 ]; then
		cat "$tmp/ravelin.log" >&2
		die "ravelin did not start"
	fi
	sleep 0.1
	i=$((i + 1))
done
echo "ravelin listening on 127.0.0.1:$port (and 127.0.0.1:$pport with PROXY protocol)," \
	"backend smtp-sink on 127.0.0.1:$sink_port, DNS on 127.0.0.1:$dns_port"

# 4. A message from an Internet host, 192.0.2.10 (presented with a PROXY
# header, as HAProxy would): SPF passes, and the message is accepted
# because the MTA accepted it.
say "a message from client.example.com [192.0.2.10] for postmaster@example.org"
swaks --server "127.0.0.1:$pport" --proxy "TCP4 192.0.2.10 127.0.0.1 40000 25" \
	--helo client.example.com --from alice@example.com --to postmaster@example.org \
	--header "Subject: ravelin demo" \
	--body "Hello from the ravelin demo." 2>&1
sent=$?

# 5. A forger on 198.51.100.7 using the same sender: SPF fails at MAIL.
say "the same sender from 198.51.100.7, not allowed by SPF (refused)"
swaks --server "127.0.0.1:$pport" --proxy "TCP4 198.51.100.7 127.0.0.1 40001 25" \
	--helo forger.example.net --from alice@example.com --to postmaster@example.org \
	--quit-after RCPT 2>&1

# 6. An attempt to relay to someone else's domain: refused by ravelin.
say "an attempt to relay to someone@example.net (refused)"
swaks --server "127.0.0.1:$port" --helo client.example.com \
	--from alice@example.com --to someone@example.net --quit-after RCPT 2>&1
i=0
while ! grep -q 'Relay access denied' "$tmp/ravelin.log" && [ "$i" -lt 20 ]; do
	sleep 0.1
	i=$((i + 1))
done

say "what the MTA received (smtp-sink -D)"
if [ -s "$tmp/received.eml" ]; then
	cat "$tmp/received.eml"
else
	echo "(nothing)"
fi

say "ravelin's log"
cat "$tmp/ravelin.log"

if [ -x "$RAVELINCTL" ]; then
	say "ravelinctl show stats"
	"$RAVELINCTL" -s "$tmp/stats.sock" show stats
	echo
fi

ok=0
if [ "$sent" -ne 0 ] || ! grep -q 'accepted: from=<alice@example.com>' "$tmp/ravelin.log"; then
	echo "demo: the message did not go through" >&2
	ok=1
fi

if [ "$KEEP" = 1 ]; then
	say "running until Ctrl-C"
	cat <<EOF
Try:
  swaks --server 127.0.0.1:$port --from alice@example.com --to bob@example.org
  swaks --server 127.0.0.1:$pport --proxy "TCP4 192.0.2.10 127.0.0.1 40000 25" \\
        --from alice@example.com --to bob@example.org
  $RAVELINCTL -s $tmp/stats.sock show info
  kill -HUP $ravelin_pid        # reload $tmp/ravelin.conf
Log follows:
EOF
	tail -n 0 -f "$tmp/ravelin.log" &
	tail_pid=$!
	wait "$ravelin_pid"
	ravelin_pid=
	exit 0
fi

say "stopping"
kill -TERM "$ravelin_pid"
wait "$ravelin_pid"
rc=$?
ravelin_pid=
tail -n 2 "$tmp/ravelin.log"
[ $rc -eq 0 ] || { echo "demo: ravelin exited with $rc" >&2; ok=1; }
[ $ok -eq 0 ] && say "demo finished: the message went through ravelin to the MTA"
exit $ok
