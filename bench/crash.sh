#!/usr/bin/env bash
# Crash safety, long form: kill -9 `mailroom serve` ROUNDS times (20) under
# SESSIONS (16) concurrent sessions on every way in (LMTP, the MX,
# submission to local users and through the queue to a remote sink, IMAP
# APPEND, MOVE and EXPUNGE), restarting it each time, then count what the
# promises are about. This is test/e2e's TestCrashSafety (whose short form
# CI runs) with more rounds and sessions, against a plain (not -race)
# binary, R times.
#
# Run by hand (CI runs only the short form), from anywhere:
#
#   bench/crash.sh                     # ROUNDS=20 SESSIONS=16 R=1
#   ROUNDS=40 SESSIONS=16 R=3 bench/crash.sh
#
# Each run prints one line:
#   acked       messages acknowledged (250, or APPEND's OK), all ways in
#   lost        acknowledged and not where they belong afterwards: must be 0
#   duplicated  local copies beyond the first (a crash between fsync and
#               reply may leave one; allowed, kept rare)
#   torn        files that are not the message as sent: must be 0
#   remote_*    the same for mail the queue hands to the sink; duplicates
#               there are at-least-once delivery after a crash between
#               the remote's 250 and the queue's record
#   imap_ops_acked, uids_checked: IMAP changes acknowledged, and UIDs
#               checked to name the same message after each restart
# The script fails if any run fails (lost or torn above 0, an IMAP change
# undone, the index disagreeing with the files, a UID moved).
#
# Environment: ROUNDS (20), SESSIONS (16), R (1), TIMEOUT (30m per run).
set -euo pipefail
# The project's Go release (README "Quick start"), unless the caller chose.
export GOTOOLCHAIN=${GOTOOLCHAIN:-go1.27.3}
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-20}
SESSIONS=${SESSIONS:-16}
R=${R:-1}
TIMEOUT=${TIMEOUT:-30m}

echo "crash safety: $ROUNDS kills under $SESSIONS sessions, $R run(s); $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
rc=0
for run in $(seq 1 "$R"); do
	out=$(CI=true MAILROOM_CRASH_ROUNDS=$ROUNDS MAILROOM_CRASH_SESSIONS=$SESSIONS \
		go test -count=1 -timeout "$TIMEOUT" -run '^TestCrashSafety$' -v ./test/e2e 2>&1) || rc=1
	line=$(grep -o 'CRASH rounds=.*' <<<"$out" || true)
	if [[ -z $line ]]; then
		echo "run $run: no figures"; echo "$out" | tail -40; rc=1; continue
	fi
	echo "run $run: ${line#CRASH }"
	if grep -q -- '--- FAIL' <<<"$out"; then
		echo "$out" | grep -E 'crash_test.go:[0-9]+:' | grep -v 'CRASH rounds' | head -20
	fi
done
exit $rc
