#!/usr/bin/env bash
# Outbound queue benchmark: enqueue N messages (4 KiB, durable: body
# fsynced and renamed, directory fsynced, bbolt committed) and send them
# with C outbound connections to Postfix's smtp-sink on 127.0.0.1 as the
# smarthost, until the sink has accepted every one.
#
# Run by hand (CI does not run it), from anywhere:
#
#   bench/queue.sh                 # N=10000, C=16, R=3 runs
#   N=2000 R=5 bench/queue.sh
#   SEPARATE=1 bench/queue.sh      # enqueue everything first, then send
#
# Each run prints messages per second (enqueue alone, and enqueue + send
# together) and mailroom's CPU time per message (user + system, from
# getrusage; the sink's own CPU is not counted). BENCH_DIR (/var/tmp) must
# be a real disk, not tmpfs: fsync is most of the cost.
set -euo pipefail
# The project's Go release (README "Quick start"), unless the caller chose.
export GOTOOLCHAIN=${GOTOOLCHAIN:-go1.27.3}

N=${N:-10000}
C=${C:-16}
R=${R:-3}
BENCH_DIR=${BENCH_DIR:-/var/tmp}
SINK=${SINK:-$(command -v smtp-sink || echo /usr/sbin/smtp-sink)}

die() { echo "queue.sh: $*" >&2; exit 1; }
command -v go >/dev/null || die "go is not on PATH"
[[ -x $SINK ]] || die "smtp-sink is missing: apt-get install postfix (as .ci/run does)"

cd "$(dirname "$0")/.."
bin=$(mktemp -d)/queuebench
trap 'rm -rf "$(dirname "$bin")"' EXIT
go build -o "$bin" ./bench/queuebench

args=(-n "$N" -c "$C" -e "$C" -dir "$BENCH_DIR" -sink "$SINK")
[[ -n ${SEPARATE:-} ]] && args+=(-separate)
echo "# $(nproc) CPUs, $(uname -r), work directory on: $(df --output=source,fstype "$BENCH_DIR" | tail -1)"
rates=()
for i in $(seq 1 "$R"); do
	echo "## run $i"
	out=$("$bin" "${args[@]}")
	echo "$out"
	rates+=("$(awk '/^enqueue \+ send/ {print $5}' <<<"$out")")
done
median=$(printf '%s\n' "${rates[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
echo "## median enqueue + send: $median msg/s over $R runs"
