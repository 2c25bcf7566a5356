#!/bin/sh
# run.sh - run ravelin's unit tests (cmocka) and end-to-end tests (pytest)
# and print one summary line "N passed, N failed".
#   BUILD=build|build-san   ONLY=unit|e2e   VALGRIND=1 [VALGRIND_E2E=all|files]
#   PYTEST_ARGS=...
BUILD=${BUILD:-build}
export RAVELIN_BUILD="$PWD/$BUILD"
passed=0
failed=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT

if [ -n "$VALGRIND" ]; then
	# memcheck: any invalid access, use of uninitialised memory, or block
	# definitely/indirectly/possibly lost at exit makes the program exit 99
	# (a failed test). "Still reachable" (a pointer to it held at exit:
	# libraries' and the main thread's thread-locals, never released by
	# design) is not a leak and does not fail. tests/valgrind.supp holds
	# only library-internal reports, each with its reason. The e2e harness
	# adds --log-file per daemon and checks the report at stop
	# (tests/lib/harness.py); VALGRIND_E2E selects the end-to-end files run
	# (default: the representative set below; "all" for the whole suite).
	# The soname synonym lets memcheck replace jemalloc's malloc as it
	# does libc's (the release build links jemalloc).
	export VALGRIND
	export RAVELIN_WRAPPER="valgrind --error-exitcode=99 --leak-check=full \
--show-leak-kinds=definite,indirect,possible --errors-for-leak-kinds=definite,indirect,possible \
--num-callers=30 --track-fds=no --soname-synonyms=somalloc=libjemalloc.so* --suppressions=$PWD/tests/valgrind.supp"
	VALGRIND_E2E=${VALGRIND_E2E:-"test_core_basic.py test_core_message.py test_core_backend.py \
test_access_tls.py test_access_auth.py test_rules_stages.py test_senderauth_spf.py \
test_senderauth_dkim.py test_dmarc.py test_ratelimit_redis.py test_limits_proxy.py \
test_milter_policy.py test_ops_stats.py test_core_bdat.py"}
	if [ "$VALGRIND_E2E" = all ]; then
		e2e_paths=tests/e2e
	else
		e2e_paths=$(for f in $VALGRIND_E2E; do printf 'tests/e2e/%s ' "$f"; done)
	fi
fi
e2e_paths=${e2e_paths:-tests/e2e}
case "$BUILD" in *san*)
	export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:exitcode=98"
	export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:exitcode=98"
	export LSAN_OPTIONS="suppressions=$PWD/tests/lsan.supp:print_suppressions=0";;
esac

if [ "$ONLY" != e2e ]; then
	for t in "$BUILD"/tests/test_*; do
		[ -x "$t" ] || continue
		echo "== unit: $t"
		if [ -n "$VALGRIND" ]; then
			$RAVELIN_WRAPPER "$t" >"$log" 2>&1
		else
			"$t" >"$log" 2>&1
		fi
		rc=$?
		cat "$log"
		p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -1)
		f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -1)
		p=${p:-0}; f=${f:-0}
		if [ $rc -ne 0 ] && [ "$f" = 0 ]; then f=1; fi
		passed=$((passed + p)); failed=$((failed + f))
	done
fi

if [ "$ONLY" != unit ]; then
	echo "== e2e: pytest $e2e_paths"
	# A test that fails is run once more and reported as "rerun" in
	# pytest's summary: the machine is shared and two cores are few for
	# timing-sensitive cases; a test failing twice fails the run.
	RERUN=
	/usr/bin/python3 -c 'import pytest_rerunfailures' 2>/dev/null && RERUN="--reruns 1 --reruns-delay 1"
	/usr/bin/python3 -m pytest -q -p no:cacheprovider $RERUN $e2e_paths $PYTEST_ARGS 2>&1 | tee "$log"
	line=$(grep -E '^(=+ )?[0-9]+ (passed|failed)|^(=+ )?[0-9]+ .* in [0-9.]+s' "$log" | tail -1)
	p=$(echo "$line" | sed -n 's/.*\b\([0-9][0-9]*\) passed.*/\1/p')
	f=$(echo "$line" | sed -n 's/.*\b\([0-9][0-9]*\) failed.*/\1/p')
	e=$(echo "$line" | sed -n 's/.*\b\([0-9][0-9]*\) error.*/\1/p')
	p=${p:-0}; f=${f:-0}; e=${e:-0}
	if [ -z "$line" ]; then f=$((f + 1)); fi
	passed=$((passed + p)); failed=$((failed + f + e))
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
