#!/usr/bin/env bash
# mbox delivery benchmark: LMTP delivery into mbox files, mailroom
# ([delivery] format = "mbox") against Dovecot's LMTP with
# mail_location = mbox:~/mail:INBOX=~/mbox, on the same machine and the
# same filesystem, in the same run (issue 13).
#
# Run by hand (CI does not run it), from anywhere:
#
#   bench/mbox.sh                      # N=2000 messages per run, R=3 runs
#   N=200 R=1 SESSIONS="1 4" bench/mbox.sh   # a smoke run
#
# For every session count it runs, R times and interleaved, a fresh mail
# root for each: `mailroom serve` and a private Dovecot (bench/lib.sh),
# mailroom first in odd runs and Dovecot first in even ones,
# each fed by bench/lmtpbench (go-smtp's LMTP client): every session
# connects and says LHLO before the clock starts, then delivers its share
# of N 4 KiB messages one at a time, session i to user<i mod USERS>. Both
# append to <home>/mbox under a dotlock and an fcntl lock and fsync before
# the 250. After each run the messages ("From " lines) in the mbox files
# are counted: N, or the script fails. The table shows medians over the R
# runs and the ratio of the medians.
#
# Environment: N (2000), R (3), SESSIONS ("1 4 16"), USERS (16), BENCH_DIR
# (/var/tmp), LOOPFS, KEEP=1, DOVECOT, DOVECOT_LMTP, DOVECOT_MAIL_USER (as
# for bench/lmtp.sh).
set -euo pipefail
export GOTOOLCHAIN=${GOTOOLCHAIN:-go1.27.3}

N=${N:-2000}
R=${R:-3}
SESSIONS=${SESSIONS:-"1 4 16"}
USERS=${USERS:-16}
BENCH_DIR=${BENCH_DIR:-/var/tmp}
SIZE=4096
DOVECOT=${DOVECOT:-/usr/sbin/dovecot}
DOVECOT_LMTP=${DOVECOT_LMTP:-/usr/lib/dovecot/lmtp}
DOMAIN=example.org

die() { echo "mbox.sh: $*" >&2; exit 1; }

command -v go >/dev/null || die "go is not on PATH"
[[ -x $DOVECOT && -x $DOVECOT_LMTP ]] || die "Dovecot is missing ($DOVECOT, $DOVECOT_LMTP): apt-get install dovecot-core dovecot-lmtpd"
for v in N R USERS; do
	[[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, not '${!v}'"
done

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mkdir -p "$BENCH_DIR"
WORK=$(mktemp -d "$BENCH_DIR/mboxbench.XXXXXX")
chmod 711 "$WORK"
BIN=$WORK/bin
# shellcheck source=bench/lib.sh
source "$REPO/bench/lib.sh"
trap bench_cleanup EXIT
trap 'exit 130' INT TERM
bench_loopfs
warn_tmpfs

echo "building mailroom and lmtpbench..." >&2
(cd "$REPO" && go build -o "$BIN/mailroom" ./cmd/mailroom && go build -o "$BIN/lmtpbench" ./bench/lmtpbench)
LB=$BIN/lmtpbench

MR=$WORK/mailroom
SECTION='[lmtp]
listen = ["127.0.0.1:0"]
[delivery]
format = "mbox"'
echo "creating $USERS mailroom accounts..." >&2
mr_accounts "$SECTION" $(for ((u = 0; u < USERS; u++)); do echo "user$u"; done)

DV=$WORK/dovecot
dovecot_init
export DV_MAIL_LOCATION="mbox:~/mail:INBOX=~/mbox"

RESULTS=$WORK/results.txt
: >"$RESULTS"
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }

# count ROOT WHO: exactly N messages in the mbox files below ROOT.
count() {
	local n
	n=$(find "$1" -name mbox -type f -exec cat {} + 2>/dev/null | grep -c '^From ' || true)
	[[ $n == "$N" ]] || die "$2 acknowledged $N messages but its mbox files hold $n"
}

run() {
	local who=$1 addr=$2 root=$3 s=$4 rep=$5 pid=$6 out t0 t1
	t0=$(cpu_ticks "$pid")
	out=$("$LB" lmtp -addr "$addr" -n "$N" -sessions "$s" -users "$USERS" -rcpts 1 -domain "$DOMAIN" -size "$SIZE") ||
		die "$who: delivery failed ($s sessions)"
	t1=$(cpu_ticks "$pid")
	count "$root" "$who"
	echo "mbox $s $who $rep $(field rate "$out") $(field p50_ms "$out") $(field p99_ms "$out") $(us_per "$t0" "$t1" "$N")" >>"$RESULTS"
	printf '  %-8s %2s sessions  run %s: %8s messages/s  (p50 %s ms, p99 %s ms)\n' "$who" "$s" "$rep" \
		"$(field rate "$out")" "$(field p50_ms "$out")" "$(field p99_ms "$out")" >&2
}

start=$(date +%s)
for ((rep = 1; rep <= R; rep++)); do
	echo "run $rep of $R" >&2
	# mailroom first in odd runs, Dovecot first in even ones.
	order="mailroom dovecot"
	((rep % 2)) || order="dovecot mailroom"
	for s in $SESSIONS; do
		for who in $order; do
			if [[ $who == mailroom ]]; then
				start_mailroom "$MR/$s-$rep" "$SECTION" lmtp
				run mailroom "$MR_ADDR" "$MR/$s-$rep/mail" "$s" "$rep" "$MR_PID"
				stop_mailroom
			else
				start_dovecot "$DV/$s-$rep" "$("$LB" port)"
				"$LB" wait -addr "$DV_ADDR" || die "Dovecot is not answering on $DV_ADDR: $(tail -5 "$DV/dovecot.log")"
				run dovecot "$DV_ADDR" "$DV/$s-$rep" "$s" "$rep" "$(<"$DV/run/master.pid")"
				stop_dovecot
			fi
		done
	done
done
elapsed=$(($(date +%s) - start))

echo
echo "mbox LMTP delivery benchmark: $N messages of $SIZE bytes per run, session i to user<i mod $USERS>, $R runs per figure, medians"
echo "host: $(nproc) CPUs, $(uname -sr); filesystem: $fstype on $(df --output=source "$WORK" | tail -1) ($WORK)"
echo "mailroom: $(cd "$REPO" && git describe --always --dirty 2>/dev/null || echo '?'); format = \"mbox\": dotlock + fcntl, append, fsync before 250"
echo "dovecot:  $DV_VERSION, mail_location = $DV_MAIL_LOCATION, mail_fsync = optimized; mail uid $DV_USER"
printf '%8s | %20s | %20s | %16s | %13s | %14s\n' sessions "mailroom msg/s" "dovecot msg/s" "mailroom/dovecot" "(paired)" "CPU us/msg m/d"
for s in $SESSIONS; do
	m=$(median mbox "$s" mailroom)
	v=$(median mbox "$s" dovecot)
	printf '%8s | %12.0f %7s | %12.0f %7s | %15sx | %12sx | %6.0f/%-7.0f\n' "$s" "$m" "($(spread mbox "$s" mailroom))" \
		"$v" "($(spread mbox "$s" dovecot))" "$(ratio "$m" "$v")" "$(paired mbox "$s" dovecot)" \
		"$(median mbox "$s" mailroom 8)" "$(median mbox "$s" dovecot 8)"
done
last=${SESSIONS##* }
r=$(ratio "$(median mbox "$last" mailroom)" "$(median mbox "$last" dovecot)")
if awk -v r="$r" 'BEGIN { exit !(r >= 2) }'; then verdict=met; else verdict="NOT met"; fi
echo "goal (issue 13: delivery >= 2x dovecot's, at $last sessions): $verdict (${r}x)"
echo
echo "(whole run: ${elapsed}s; raw figures: variant sessions system run messages/s p50_ms p99_ms cpu_us/msg)"
sort -k2,2n -k3,3 -k4,4n "$RESULTS" | sed 's/^/  /'
