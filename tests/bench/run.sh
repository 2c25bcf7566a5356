#!/bin/sh
#
# run.sh - ravelin's benchmark (`make bench`).
#
# Drives Postfix's smtp-source with ~2 KB messages in two shapes (one
# message per connection, and 10 messages per connection; 50 parallel
# sessions) three ways, alternating in rounds: straight to smtp-sink,
# through haproxy in TCP mode (a bare proxy hop), and through ravelin.
# Prints the median messages/s, CPU seconds per 1,000 messages of the
# proxy process, and the ratios; then the resident memory per idle
# session at 10,000 sessions; then throughput with the full default
# policy (shipped rules, SPF, DKIM-signed mail, rate limits in memory),
# with rate limits in Redis, with 1,000 extra regex rules, against
# haproxy and plain ravelin relaying the same signed message; then the
# latency ravelin adds to one transaction (p50/p99).
#
# Everything listens on loopback. As root (and with `ip netns` working)
# the whole bench runs inside a network namespace of its own whose `lo`
# also carries 192.0.2.1 (documentation range), so that policy traffic
# comes from a non-loopback client address (SPF treats loopback as pass)
# and nothing can collide with other tests' ports. All DNS goes to
# tests/lib/dnsserver.py on loopback.
#
# Scenarios are functions (section_*); BENCH_SECTIONS picks them.
# Knobs (environment):
#   BENCH_SECTIONS   "core idle policy latency" (default: all, in that order)
#   BENCH_ROUNDS     rounds of alternation (5: this shared machine swings
#                    by a fifth from one run to the next)
#   BENCH_SINGLE     messages per run, one message per connection (8000)
#   BENCH_MULTI      messages per run, 10 messages per connection (12000)
#   BENCH_POLICY_SINGLE, BENCH_POLICY_MULTI   the same for the policy section
#                    (3000, 5000)
#   BENCH_IDLE       idle sessions (8000)
#   BENCH_LATENCY    transactions per target for the latency figures (1000)
#   BENCH_BACKEND    ravelin's backend mode: xclient (default) | none | proxy
#   BENCH_NETNS      0 to stay in the host's network namespace
#   BENCH_KEEP       1 to keep the work directory (configs, logs)
#   BENCH_PERF       1 to `perf record -g` ravelin during its core runs
#   BENCH_STRICT     1 to exit 2 when a target is missed
#
# Exit: 0 figures printed; 1 setup or run failure; 2 target missed (strict).

set -u

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BUILD=${BUILD:-build}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
PY=/usr/bin/python3
BENCHPY="$PY $HERE/bench.py"

SECTIONS=${BENCH_SECTIONS:-core idle policy latency}
ROUNDS=${BENCH_ROUNDS:-5}
N_SINGLE=${BENCH_SINGLE:-8000}
N_MULTI=${BENCH_MULTI:-12000}
NP_SINGLE=${BENCH_POLICY_SINGLE:-3000}
NP_MULTI=${BENCH_POLICY_MULTI:-5000}
N_IDLE=${BENCH_IDLE:-10000}
N_LAT=${BENCH_LATENCY:-1000}
BACKEND_MODE=${BENCH_BACKEND:-xclient}
SESSIONS=50
PER_CONN=10
CLIENT_ADDR=192.0.2.1

# --- the outer shell: a network namespace of our own -------------------

# outer_main - create the namespace, run this script inside it, delete it.
outer_main()
{
	NS=ravelin-bench-$$
	if [ "${BENCH_NETNS:-1}" != 1 ] || [ "$(id -u)" != 0 ] ||
	    ! ip netns add "$NS" 2>/dev/null; then
		RAVELIN_BENCH_INNER=host
		export RAVELIN_BENCH_INNER
		exec sh "$0" "$@"
	fi
	inner=""
	trap 'kill -TERM $inner 2>/dev/null; wait $inner; ip netns del "$NS"; exit 1' INT TERM
	ip netns exec "$NS" ip link set lo up &&
	    ip netns exec "$NS" ip addr add $CLIENT_ADDR/32 dev lo || {
		ip netns del "$NS"
		echo "bench: cannot set up the network namespace" >&2
		exit 1
	}
	RAVELIN_BENCH_INNER=netns ip netns exec "$NS" sh "$0" "$@" &
	inner=$!
	wait $inner
	rc=$?
	ip netns del "$NS"
	exit $rc
}

if [ -z "${RAVELIN_BENCH_INNER:-}" ]; then
	outer_main "$@"
fi

# --- process bookkeeping -----------------------------------------------

W=$(mktemp -d /tmp/ravelin-bench.XXXXXX)
RESULTS=$W/results.tsv
: >"$RESULTS"
PIDS=""
BELOW=0

# cleanup - stop every process this script started, remove the work dir.
cleanup()
{
	for p in $PIDS; do
		kill -TERM "$p" 2>/dev/null
	done
	for p in $PIDS; do
		wait "$p" 2>/dev/null
	done
	PIDS=""
	if [ "${BENCH_KEEP:-0}" = 1 ]; then
		echo "bench: work directory kept: $W"
	else
		rm -rf "$W"
	fi
}
trap 'cleanup' EXIT
trap 'exit 1' INT TERM

# die - report and exit (cleanup runs from the EXIT trap).
die()
{
	echo "bench: $*" >&2
	exit 1
}

# stop_pid - stop one process we started and forget it.
stop_pid()
{
	kill -TERM "$1" 2>/dev/null
	wait "$1" 2>/dev/null
	rest=""
	for p in $PIDS; do
		[ "$p" = "$1" ] || rest="$rest $p"
	done
	PIDS=$rest
}

# freeport - one free port on 127.0.0.1.
freeport()
{
	$BENCHPY freeports 1
}

# waitport HOST PORT - wait for a listener (10 s).
waitport()
{
	$BENCHPY waitport "$1" "$2" 10
}

# --- the servers ---------------------------------------------------------

# start_dns ZONEFILE - tests/lib/dnsserver.py on loopback; sets DNS_PORT.
start_dns()
{
	$PY "$ROOT/tests/lib/dnsserver.py" --port 0 "$1" >"$W/dns.out" 2>"$W/dns.err" &
	DNS_PID=$!
	PIDS="$PIDS $DNS_PID"
	i=0
	while ! grep -q '^PORT' "$W/dns.out" 2>/dev/null; do
		i=$((i + 1))
		[ $i -lt 100 ] || die "DNS server did not start: $(cat "$W/dns.err")"
		sleep 0.1
	done
	DNS_PORT=$(awk '/^PORT/ { print $2 }' "$W/dns.out")
}

# start_sink - Postfix's smtp-sink; sets SINK_PORT.
start_sink()
{
	SINK_PORT=$(freeport)
	user=""
	[ "$(id -u)" = 0 ] && user="-u root"
	smtp-sink $user -m 2000 127.0.0.1:$SINK_PORT 4096 >"$W/sink.log" 2>&1 &
	SINK_PID=$!
	PIDS="$PIDS $SINK_PID"
	waitport 127.0.0.1 $SINK_PORT || die "smtp-sink did not start: $(cat "$W/sink.log")"
}

# start_haproxy - haproxy in TCP mode in front of the sink; sets HAP_PORT.
start_haproxy()
{
	HAP_PORT=$(freeport)
	cat >"$W/haproxy.cfg" <<EOF
global
	maxconn 5000
	nbthread 2
defaults
	mode tcp
	timeout connect 5s
	timeout client 60s
	timeout server 60s
frontend bench
	bind 127.0.0.1:$HAP_PORT
	default_backend sink
backend sink
	server sink 127.0.0.1:$SINK_PORT
EOF
	haproxy -db -f "$W/haproxy.cfg" >"$W/haproxy.log" 2>&1 &
	HAP_PID=$!
	PIDS="$PIDS $HAP_PID"
	waitport 127.0.0.1 $HAP_PORT || die "haproxy did not start: $(cat "$W/haproxy.log")"
}

# start_redis - redis-server on a loopback port, no persistence; sets REDIS_PORT.
start_redis()
{
	REDIS_PORT=$(freeport)
	redis-server --port $REDIS_PORT --bind 127.0.0.1 --save '' --appendonly no \
	    --dir "$W" >"$W/redis.log" 2>&1 &
	REDIS_PID=$!
	PIDS="$PIDS $REDIS_PID"
	$BENCHPY waitport 127.0.0.1 $REDIS_PORT 10 || die "redis did not start: $(cat "$W/redis.log")"
}

# start_ravelin NAME ADDR EXTRA - a ravelin on ADDR:free port in front of the
# sink, EXTRA appended to its configuration; sets RV_PID and RV_PORT.
# Returns 1 (and says why) when `ravelin -t` refuses the configuration.
start_ravelin()
{
	name=$1 addr=$2 extra=$3
	RV_PORT=$(freeport)
	conf=$W/ravelin-$name.conf
	cat >"$conf" <<EOF
hostname mx.bench.example.org
log stderr
workers 2
listen $addr:$RV_PORT inbound
backend 127.0.0.1:$SINK_PORT $BACKEND_MODE
local_domains example.org
mynetworks 10.255.255.0/24
dns_resolver 127.0.0.1:$DNS_PORT
dns_timeout 2s
max_sessions 20000
max_sessions_per_ip 20000
$extra
EOF
	if ! "$BUILD/ravelin" -t -c "$conf" >"$W/ravelin-$name.check" 2>&1; then
		echo "bench: ravelin ($name) refuses its configuration:"
		sed 's/^/    /' "$W/ravelin-$name.check"
		return 1
	fi
	"$BUILD/ravelin" -d -c "$conf" 2>"$W/ravelin-$name.log" &
	RV_PID=$!
	PIDS="$PIDS $RV_PID"
	waitport $addr $RV_PORT || die "ravelin ($name) did not start: $(tail -5 "$W/ravelin-$name.log")"
}

# --- ways and runs -------------------------------------------------------

# way_set NAME ADDR PORT PID - register a way to send mail (PID: whose CPU to count).
way_set()
{
	eval "WAY_ADDR_$1=$2; WAY_PORT_$1=$3; WAY_PID_$1=$4"
}

# drive HOST:PORT SHAPE COUNT OPTS... - send COUNT messages; prints nanoseconds.
drive()
{
	target=$1 shape=$2 count=$3
	shift 3
	t0=$(date +%s%N)
	case $shape in
	1/conn)
		smtp-source -s $SESSIONS -m "$count" "$@" "$target" 2>>"$W/source.err" ||
		    return 1
		;;
	*/conn)
		# -d keeps each session open; SESSIONS x PER_CONN messages a batch.
		batch=$((SESSIONS * PER_CONN))
		sent=0
		while [ $sent -lt "$count" ]; do
			smtp-source -d -s $SESSIONS -m $batch "$@" "$target" 2>>"$W/source.err" ||
			    return 1
			sent=$((sent + batch))
		done
		;;
	esac
	t1=$(date +%s%N)
	echo $((t1 - t0))
}

# rotate N WORDS... - the words rotated left N times (alternation order).
rotate()
{
	n=$1
	shift
	while [ "$n" -gt 0 ]; do
		first=$1
		shift
		set -- "$@" "$first"
		n=$((n - 1))
	done
	echo "$@"
}

# run_ways SECTION "OPTS" N1 N10 WAYS... - ROUNDS rounds x both shapes x
# WAYS in rotating order, N1 / N10 messages a run; one results line a run.
run_ways()
{
	section=$1 opts=$2 n1=$3 n10=$4
	shift 4
	r=1
	while [ $r -le "$ROUNDS" ]; do
		for shape in 1/conn $PER_CONN/conn; do
			count=$n1
			[ $shape = 1/conn ] || count=$n10
			for way in $(rotate $(((r - 1) % $#)) "$@"); do
				eval "addr=\$WAY_ADDR_$way port=\$WAY_PORT_$way pid=\$WAY_PID_$way"
				tk0=-1
				[ "$pid" = - ] || tk0=$($BENCHPY ticks "$pid")
				# shellcheck disable=SC2086
				if ! ns=$(drive "$addr:$port" $shape "$count" $opts); then
					echo "bench: $section $shape $way: smtp-source failed:" >&2
					tail -3 "$W/source.err" >&2
					exit 1
				fi
				tk=-1
				[ "$pid" = - ] || tk=$(($($BENCHPY ticks "$pid") - tk0))
				secs=$(echo "$ns" | awk '{ printf "%.4f", $1 / 1e9 }')
				printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$section" "$shape" "$way" $r \
				    "$count" "$secs" "$tk" >>"$RESULTS"
				printf '  round %d %-8s %-10s %6d msgs %7.2f s %8.0f msg/s\n' $r $shape \
				    "$way" "$count" "$secs" "$(echo "$count $secs" | awk '{ print $1 / $2 }')"
			done
		done
		r=$((r + 1))
	done
}

# ratios SECTION NUM:DEN[:TARGET]... - the section's table and ratios.
ratios()
{
	$BENCHPY ratios "$RESULTS" "$@"
	[ $? -ne 2 ] || BELOW=1
}

# --- scenarios -----------------------------------------------------------

# section_core - direct vs haproxy vs ravelin, smtp-source's own 2 KB messages.
section_core()
{
	echo
	echo "== throughput: smtp-source -l 2048, $SESSIONS sessions, 1 and $PER_CONN messages per connection"
	echo "   ravelin: workers 2, backend $BACKEND_MODE, no rules; $ROUNDS rounds, medians"
	perf_pid=""
	if [ "${BENCH_PERF:-0}" = 1 ]; then
		perf record -g -o "$W/perf.data" -p "$RAVELIN_PID" >"$W/perf.log" 2>&1 &
		perf_pid=$!
		PIDS="$PIDS $perf_pid"
	fi
	run_ways core "-l 2048 -M $HELO -f $SENDER -t $RCPT" "$N_SINGLE" "$N_MULTI" \
	    direct haproxy ravelin
	if [ -n "$perf_pid" ]; then
		kill -INT "$perf_pid"
		wait "$perf_pid"
		echo "perf (ravelin during the core runs), self time by object and symbol:"
		perf report -i "$W/perf.data" --no-children --sort dso,symbol -g none \
		    2>/dev/null | grep '%' | grep -v '^#' | head -30 | sed 's/^/    /'
	fi
	ratios core ravelin:haproxy:0.90 ravelin:direct haproxy:direct
}

# section_idle - resident memory per idle plaintext session.
section_idle()
{
	echo
	echo "== memory: $N_IDLE idle plaintext sessions (banner read, then silence)"
	start_ravelin idle 127.0.0.1 "" || return 0
	pid=$RV_PID port=$RV_PORT
	# Warm up: worker threads' malloc arenas and libevent's tables exist
	# before the baseline is taken.
	$PY "$HERE/idle.py" 127.0.0.1 $port 200 </dev/null >/dev/null 2>&1 &
	warm=$!
	sleep 1
	kill "$warm" 2>/dev/null
	wait "$warm" 2>/dev/null
	sleep 0.5
	before=$($BENCHPY rss $pid)
	fifo=$W/idle.fifo
	mkfifo "$fifo"
	# The fifo keeps idle.py's stdin open until we are done.
	$PY "$HERE/idle.py" 127.0.0.1 $port "$N_IDLE" <"$fifo" >"$W/idle.out" 2>&1 &
	idle=$!
	PIDS="$PIDS $idle"
	exec 3>"$fifo"
	i=0
	while ! grep -q '^ready' "$W/idle.out" 2>/dev/null; do
		i=$((i + 1))
		[ $i -lt 900 ] && kill -0 $idle 2>/dev/null ||
		    die "idle client failed: $(cat "$W/idle.out")"
		sleep 0.1
	done
	sleep 1
	after=$($BENCHPY rss $pid)
	open=$(awk '/^ready/ { print $2 }' "$W/idle.out")
	bad=$(awk '/^ready/ { print $4 }' "$W/idle.out")
	exec 3>&-
	stop_pid $idle
	sleep 1
	closed=$($BENCHPY rss $pid)
	stop_pid $pid
	awk -v b="$before" -v a="$after" -v c="$closed" -v n="$open" -v bad="$bad" -v want="$N_IDLE" '
	BEGIN {
		per = n ? (a - b) * 1024 / n : 0
		printf "sessions open %d (failed %d)\n", n, bad
		printf "ravelin VmRSS: %d KiB before, %d KiB with the sessions, %d KiB after they closed\n", b, a, c
		printf "resident memory per idle session: %.0f bytes = %.2f KiB (target <= 4 KiB: %s)\n",
		    per, per / 1024, (per <= 4096 && n == want) ? "ok" : "BELOW TARGET"
		exit (per <= 4096 && n == want) ? 0 : 2
	}'
	[ $? -eq 0 ] || BELOW=1
}

# policy_note - say whether src/policy*.c evaluates rules yet (for the record).
policy_note()
{
	if grep -q 'rules_eval' "$ROOT"/src/policy*.c 2>/dev/null; then
		echo "   src/policy*.c calls rules_eval: rules are wired"
	else
		echo "   NOTE: src/policy*.c does not call rules_eval yet: the policy ways load"
		echo "   the rules but do not evaluate them (figures ~ plain ravelin)"
	fi
}

# section_policy - shipped rules + SPF + DKIM, memory or Redis limits, 1,000 regexes.
section_policy()
{
	echo
	echo "== throughput with the default policy: DKIM-signed ~2 KB message (smtp-source -F),"
	echo "   SPF record for $SENDER_DOMAIN, client $POLICY_ADDR, shipped rules (limits raised"
	echo "   so they count but never trip); $ROUNDS rounds, medians"
	policy_note
	ways="direct haproxy ravelin"
	if start_ravelin policy $POLICY_ADDR "rules $W/fixtures/shipped/*.rules
ratelimit_store memory"; then
		way_set policy $POLICY_ADDR $RV_PORT $RV_PID
		POLICY_PORT=$RV_PORT
		ways="$ways policy"
	fi
	if command -v redis-server >/dev/null; then
		start_redis
		if start_ravelin redis $POLICY_ADDR "rules $W/fixtures/shipped/*.rules
ratelimit_store redis://127.0.0.1:$REDIS_PORT/0"; then
			way_set redis $POLICY_ADDR $RV_PORT $RV_PID
			ways="$ways redis"
		fi
	else
		echo "   (redis-server not installed: no Redis way)"
	fi
	if start_ravelin regex1000 $POLICY_ADDR "rules $W/fixtures/regex1000/*.rules
ratelimit_store memory"; then
		way_set regex1000 $POLICY_ADDR $RV_PORT $RV_PID
		ways="$ways regex1000"
	fi
	# shellcheck disable=SC2086
	run_ways policy "-F $W/fixtures/signed.eml -M $HELO -f $SENDER -t $RCPT" \
	    "$NP_SINGLE" "$NP_MULTI" $ways
	ratios policy policy:haproxy:0.75 policy:ravelin policy:direct redis:policy regex1000:policy:0.95 \
	    haproxy:direct ravelin:direct
	for n in policy redis regex1000; do
		[ -f "$W/ravelin-$n.log" ] || continue
		line=$(grep 'accepted:' "$W/ravelin-$n.log" | tail -1 | sed 's/.*accepted: //')
		rej=$(grep -c 'reject' "$W/ravelin-$n.log")
		echo "$n: last log: ${line:-none}; reject lines: $rej"
	done
}

# section_latency - p50/p99 of one transaction, one client, interleaved.
section_latency()
{
	echo
	echo "== latency: $N_LAT sequential transactions per target, interleaved (connect .. reply to the dot)"
	set -- direct=127.0.0.1:$SINK_PORT haproxy=127.0.0.1:$HAP_PORT ravelin=127.0.0.1:$RAVELIN_PORT
	[ -n "${POLICY_PORT:-}" ] && set -- "$@" policy=$POLICY_ADDR:$POLICY_PORT
	$PY "$HERE/latency.py" "$N_LAT" "$W/fixtures/signed.eml" "$SENDER" "$RCPT" "$HELO" "$@" ||
	    die "latency client failed"
}

# --- main ----------------------------------------------------------------

[ -x "$BUILD/ravelin" ] || die "$BUILD/ravelin not built (make)"
for t in smtp-source smtp-sink haproxy openssl; do
	command -v $t >/dev/null || die "$t not installed"
done
ulimit -n 30000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((N_IDLE + 200)) ]; then
	echo "bench: only $(ulimit -n) file descriptors: $N_IDLE idle sessions may not fit" >&2
fi

HELO=client.example.com
SENDER=bench@sender.example.com
SENDER_DOMAIN=sender.example.com
RCPT=bench@example.org
if [ "$RAVELIN_BENCH_INNER" = netns ]; then
	POLICY_ADDR=$CLIENT_ADDR
else
	POLICY_ADDR=127.0.0.1
fi

echo "ravelin bench: $(nproc) CPUs, $(uname -r), $("$BUILD/ravelin" -V 2>&1 | head -1)"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews every figure)"
echo "network: $([ "$RAVELIN_BENCH_INNER" = netns ] && echo "own namespace (lo + $CLIENT_ADDR)" ||
    echo "host loopback (no namespace: policy client is 127.0.0.1, SPF passes trivially)")"
$BENCHPY fixtures "$W/fixtures" || die "cannot build fixtures (python3-dkim, openssl?)"
start_dns "$W/fixtures/zone.json"
start_sink
start_haproxy
start_ravelin main 127.0.0.1 "" || die "plain ravelin configuration refused"
RAVELIN_PID=$RV_PID RAVELIN_PORT=$RV_PORT
way_set direct 127.0.0.1 $SINK_PORT -
way_set haproxy 127.0.0.1 $HAP_PORT $HAP_PID
way_set ravelin 127.0.0.1 $RAVELIN_PORT $RAVELIN_PID

started=$(date +%s)
for s in $SECTIONS; do
	case $s in
	core | idle | policy | latency)
		section_$s
		echo "   (load average now: $(cut -d' ' -f1-3 /proc/loadavg))"
		;;
	*) die "unknown section $s (core idle policy latency)" ;;
	esac
done
echo
echo "bench: done in $(($(date +%s) - started)) s"
if [ $BELOW = 1 ] && [ "${BENCH_STRICT:-0}" = 1 ]; then
	exit 2
fi
exit 0
