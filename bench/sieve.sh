#!/usr/bin/env bash
# Sieve benchmark: what a realistic 50-rule script costs at delivery.
#
# Run by hand (CI does not run it), from anywhere:
#
#   bench/sieve.sh                     # N=2000 messages per LMTP run, R=3 runs
#   N=5000 R=5 SESSIONS="1 16" bench/sieve.sh
#
# 1. CPU per script run, 4 KiB message (sieve/testdata/bench/msg4k.eml,
#    which no rule files away: all 50 rules are evaluated, as for most
#    mail), script sieve/testdata/bench/rules50.sieve (lists, senders,
#    domains, subject flags, spam score with i;ascii-numeric, regex,
#    :matches with variables, envelope :detail, anyof/allof):
#      mailroom  bench/sievebench run: the compiled script (as delivery
#                caches it) run RUNS times on one thread, reading the
#                message's header each time; process CPU / RUNS.
#      pigeonhole  bench/sievebench pigeonhole: Dovecot's sieve-test
#                with the script K more times as -s scripts, minus
#                sieve-test with it once, over K: one more load of the
#                compiled binary and run, without the process start
#                (printed too). This is the nearest measurement of
#                Pigeonhole's per-delivery cost that its tools allow.
#    Goal: mailroom under 50 us CPU per run.
# 2. LMTP delivery rate with the script active for every recipient next
#    to no script: `mailroom serve` on 127.0.0.1, bench/lmtpbench (4 KiB
#    messages, one recipient each, USERS mail homes), fresh data_dir per
#    run, the two interleaved R times. Goal: with >= 90 % of without.
#
# Environment: N (2000), R (3), SESSIONS ("1 16"), USERS (16), RUNS
# (20000), K (2000), BENCH_DIR (/var/tmp), KEEP=1 (keep the work dir),
# SIEVE_TEST (sieve-test).
set -euo pipefail

N=${N:-2000}
R=${R:-3}
SESSIONS=${SESSIONS:-"1 16"}
USERS=${USERS:-16}
RUNS=${RUNS:-20000}
K=${K:-2000}
BENCH_DIR=${BENCH_DIR:-/var/tmp}
SIEVE_TEST=${SIEVE_TEST:-sieve-test}
SIZE=4096
DOMAIN=example.org

die() { echo "sieve.sh: $*" >&2; exit 1; }

command -v go >/dev/null || die "go is not on PATH"
command -v "$SIEVE_TEST" >/dev/null || die "$SIEVE_TEST is missing: apt-get install dovecot-sieve (Pigeonhole is the peer)"
for v in N R USERS RUNS K; do
	[[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, not '${!v}'"
done

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SCRIPT=$REPO/sieve/testdata/bench/rules50.sieve
MSG=$REPO/sieve/testdata/bench/msg4k.eml
mkdir -p "$BENCH_DIR"
WORK=$(mktemp -d "$BENCH_DIR/sievebench.XXXXXX")
BIN=$WORK/bin
# shellcheck source=bench/lib.sh
source "$REPO/bench/lib.sh"
trap bench_cleanup EXIT
trap 'exit 130' INT TERM
warn_tmpfs

echo "building mailroom, lmtpbench and sievebench..." >&2
(cd "$REPO" && go build -o "$BIN/mailroom" ./cmd/mailroom && go build -o "$BIN/lmtpbench" ./bench/lmtpbench &&
	go build -o "$BIN/sievebench" ./bench/sievebench)
LB=$BIN/lmtpbench SB=$BIN/sievebench

field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }
RESULTS=$WORK/results.txt
: >"$RESULTS"

# --- 1. CPU per run ---------------------------------------------------------
for ((rep = 1; rep <= R; rep++)); do
	out=$("$SB" run -script "$SCRIPT" -msg "$MSG" -n "$RUNS") || die "sievebench run failed"
	echo "cpu 0 mailroom $rep $(field cpu_us "$out")" >>"$RESULTS"
	echo "  mailroom    run $rep: $(field cpu_us "$out") us CPU per run" >&2
	out=$("$SB" pigeonhole -script "$SCRIPT" -msg "$MSG" -k "$K" -sieve-test "$SIEVE_TEST") || die "sievebench pigeonhole failed"
	echo "cpu 0 pigeonhole $rep $(field cpu_us "$out")" >>"$RESULTS"
	echo "cpu 0 sieve-test-process $rep $(field process_cpu_us "$out")" >>"$RESULTS"
	echo "  pigeonhole  run $rep: $(field cpu_us "$out") us CPU per run ($(field process_cpu_us "$out") us for a whole sieve-test)" >&2
done

# --- 2. LMTP with and without the script -----------------------------------
MR=$WORK/mailroom
LMTP_SECTION='[lmtp]
listen = ["127.0.0.1:0"]'
echo "creating $USERS mailroom accounts..." >&2
mr_accounts "$LMTP_SECTION" $(for ((u = 0; u < USERS; u++)); do echo "user$u"; done)

# run_lmtp WHO DATA SESSIONS REP
run_lmtp() {
	local who=$1 data=$2 s=$3 rep=$4 out n
	out=$("$LB" lmtp -addr "$MR_ADDR" -n "$N" -sessions "$s" -users "$USERS" -domain "$DOMAIN" -size "$SIZE") ||
		die "$who: delivery failed ($s sessions)"
	n=$(field new "$("$LB" count -dir "$data/mail" -domain "$DOMAIN")")
	[[ $n == "$N" ]] || die "$who: $N acknowledged, $n in new/"
	echo "lmtp $s $who $rep $(field rate "$out")" >>"$RESULTS"
	printf '  %-10s %2s sessions run %s: %8s msg/s\n' "$who" "$s" "$rep" "$(field rate "$out")" >&2
}

for ((rep = 1; rep <= R; rep++)); do
	echo "LMTP run $rep of $R" >&2
	for s in $SESSIONS; do
		d=$MR/none-$s-$rep
		start_mailroom "$d" "$LMTP_SECTION" lmtp
		run_lmtp none "$d" "$s" "$rep"
		stop_mailroom
		d=$MR/rules50-$s-$rep
		mkdir -p "$d/mail"
		"$SB" homes -root "$d/mail" -domain "$DOMAIN" -users "$USERS" -script "$SCRIPT" >/dev/null
		start_mailroom "$d" "$LMTP_SECTION" lmtp
		run_lmtp rules50 "$d" "$s" "$rep"
		grep -q 'event=sieve ' "$d/serve.log" || die "the script did not run: $(tail -3 "$d/serve.log")"
		stop_mailroom
	done
done

# median KIND SESSIONS WHO
median() {
	awk -v k="$1" -v s="$2" -v w="$3" '$1 == k && $2 == s && $3 == w { print $5 }' "$RESULTS" | sort -g |
		awk '{ a[NR] = $1 } END { if (NR == 0) print 0; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

echo
echo "Sieve benchmark: rules50.sieve (50 rules), 4 KiB message, $R runs per figure, medians"
echo "host: $(nproc) CPUs, $(uname -sr), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "mailroom: $(cd "$REPO" && git describe --always --dirty 2>/dev/null || echo '?'), $(go version | awk '{print $3}')"
echo "pigeonhole: dovecot-sieve $(dpkg-query -W -f '${Version}' dovecot-sieve 2>/dev/null || echo '?')"
m=$(median cpu 0 mailroom) p=$(median cpu 0 pigeonhole) proc=$(median cpu 0 sieve-test-process)
printf 'CPU per script run:  mailroom %.1f us   pigeonhole %.1f us (binary load + run; a whole sieve-test process %.0f us)   pigeonhole/mailroom %.2fx\n' \
	"$m" "$p" "$proc" "$(awk -v a="$p" -v b="$m" 'BEGIN { printf "%.2f", a / b }')"
if awk -v m="$m" 'BEGIN { exit !(m < 50) }'; then v=met; else v="NOT met"; fi
echo "goal (under 50 us CPU per run at 4 KiB): $v"
for s in $SESSIONS; do
	a=$(median lmtp "$s" none) b=$(median lmtp "$s" rules50)
	r=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.1f", 100 * b / a }')
	if awk -v r="$r" 'BEGIN { exit !(r >= 90) }'; then v=met; else v="NOT met"; fi
	printf 'LMTP %2s sessions: no script %.0f msg/s, rules50 %.0f msg/s: %s%% (goal >= 90%%: %s)\n' "$s" "$a" "$b" "$r" "$v"
done
echo
echo "(raw: kind sessions who run value)"
sort "$RESULTS" | sed 's/^/  /'
