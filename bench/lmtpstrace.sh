#!/usr/bin/env bash
# System calls per LMTP delivery: mailroom against Dovecot's LMTP, counted
# with `strace -c -f` over the same client's run (issue 16). Counts are
# meaningful on a loaded machine, rates are not (strace slows both servers
# several times over), so this script prints no rate.
#
# Run by hand (CI does not run it), as root, with strace and Dovecot
# installed (apt-get install strace dovecot-core dovecot-lmtpd):
#
#   bench/lmtpstrace.sh                 # N=1000, sessions 1, 4 and 16
#   N=200 SESSIONS=16 bench/lmtpstrace.sh
#   RCPTS=5 bench/lmtpstrace.sh         # 5 recipients per message
#
# For every session count, each system is started on a fresh mail root, gets
# 20 untimed messages (Dovecot's lmtp processes and index are made), and
# then strace attaches to every one of its processes (-f follows those
# made later) while `lmtpbench lmtp` delivers N 4 KiB
# messages over SESSIONS sessions to USERS recipients (session i to
# user<i mod USERS>), RCPTS recipients per message. The table gives, per
# message, the calls of each system call that either server makes at least
# 0.05 times per message, and the total. The fsync line under it is the
# group commit's reach: directory syncs per delivery, from (fsync +
# fdatasync - one per message file) / deliveries.
#
# Environment: N (1000), SESSIONS ("1 4 16"), USERS (1: one Maildir), RCPTS
# (1), BENCH_DIR (/var/tmp), LOOPFS (see bench/lib.sh), KEEP=1, DOVECOT, DOVECOT_LMTP,
# DOVECOT_MAIL_USER (as for bench/lmtp.sh).
set -euo pipefail
export GOTOOLCHAIN=${GOTOOLCHAIN:-go1.27.3}

N=${N:-1000}
SESSIONS=${SESSIONS:-"1 4 16"}
USERS=${USERS:-1}
RCPTS=${RCPTS:-1}
BENCH_DIR=${BENCH_DIR:-/var/tmp}
SIZE=4096
WARM=20
DOVECOT=${DOVECOT:-/usr/sbin/dovecot}
DOVECOT_LMTP=${DOVECOT_LMTP:-/usr/lib/dovecot/lmtp}
DOMAIN=example.org

die() { echo "lmtpstrace.sh: $*" >&2; exit 1; }

command -v go >/dev/null || die "go is not on PATH"
command -v strace >/dev/null || die "strace is missing: apt-get install strace"
[[ -x $DOVECOT && -x $DOVECOT_LMTP ]] || die "Dovecot is missing ($DOVECOT, $DOVECOT_LMTP): apt-get install dovecot-core dovecot-lmtpd"
for v in N USERS RCPTS; do
	[[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, not '${!v}'"
done
((RCPTS <= USERS)) || USERS=$RCPTS

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mkdir -p "$BENCH_DIR"
WORK=$(mktemp -d "$BENCH_DIR/lmtpstrace.XXXXXX")
chmod 711 "$WORK"
BIN=$WORK/bin
# shellcheck source=bench/lib.sh
source "$REPO/bench/lib.sh"
STRACE_PID=
stop_strace() {
	if [[ -n $STRACE_PID ]]; then
		kill -INT "$STRACE_PID" 2>/dev/null || true
		wait "$STRACE_PID" 2>/dev/null || true
		STRACE_PID=
	fi
}
trap 'BENCH_RC=$?; stop_strace; bench_cleanup' EXIT
trap 'exit 130' INT TERM
bench_loopfs
warn_tmpfs

echo "building mailroom and lmtpbench..." >&2
(cd "$REPO" && go build -o "$BIN/mailroom" ./cmd/mailroom && go build -o "$BIN/lmtpbench" ./bench/lmtpbench)
LB=$BIN/lmtpbench

MR=$WORK/mailroom
LMTP_SECTION='[lmtp]
listen = ["127.0.0.1:0"]'
mr_accounts "$LMTP_SECTION" $(for ((u = 0; u < USERS; u++)); do echo "user$u"; done)
DV=$WORK/dovecot
dovecot_init

field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }

# procs PID: PID and every process under it (strace -p takes in every
# thread of a process by itself).
procs() {
	local all=$1 frontier=$1 kids p
	while :; do
		kids=$(for p in $frontier; do cat "/proc/$p/task/"*/children 2>/dev/null; done | xargs)
		[[ -z $kids ]] && break
		all="$all $kids" frontier=$kids
	done
	echo "$all"
}

# trace WHO ADDR PID S: strace's summary of the run in $WORK/WHO-S.strace.
trace() {
	local who=$1 addr=$2 pid=$3 s=$4 out args=()
	"$LB" lmtp -addr "$addr" -n "$WARM" -sessions 1 -users "$USERS" -rcpts "$RCPTS" -domain "$DOMAIN" -size "$SIZE" >/dev/null ||
		die "$who: warm-up delivery failed"
	for t in $(procs "$pid"); do args+=(-p "$t"); done
	strace -c -f -o "$WORK/$who-$s.strace" "${args[@]}" 2>"$WORK/$who-$s.strace.err" &
	STRACE_PID=$!
	# strace says nothing when it is attached; its tracees show it.
	for _ in $(seq 100); do
		grep -q '^TracerPid:[[:space:]]*[1-9]' "/proc/$pid/status" && break
		sleep 0.05
	done
	out=$("$LB" lmtp -addr "$addr" -n "$N" -sessions "$s" -users "$USERS" -rcpts "$RCPTS" -domain "$DOMAIN" -size "$SIZE" -timeout 10m) ||
		die "$who: delivery failed ($s sessions)"
	stop_strace
	echo "  $who, $s sessions: $(field rate "$out") msg/s under strace" >&2
}

# counts FILE: "syscall calls" lines of an strace -c summary.
counts() { awk '$1 ~ /^[0-9.]+$/ && NF >= 5 && $NF != "total" { print $NF, $4 }' "$1"; }

for s in $SESSIONS; do
	start_mailroom "$MR/run-$s" "$LMTP_SECTION" lmtp
	trace mailroom "$MR_ADDR" "$MR_PID" "$s"
	stop_mailroom
	start_dovecot "$DV/run-$s" "$("$LB" port)"
	"$LB" wait -addr "$DV_ADDR" || die "Dovecot is not answering on $DV_ADDR: $(tail -5 "$DV/dovecot.log")"
	trace dovecot "$DV_ADDR" "$(<"$DV/run/master.pid")" "$s"
	stop_dovecot
done

echo
echo "System calls per LMTP message: $N messages of $SIZE bytes, $RCPTS recipient(s) each, $USERS Maildir(s), strace -c -f"
echo "host: $(nproc) CPUs, $(uname -sr); filesystem: $fstype ($WORK)"
echo "mailroom: $(cd "$REPO" && git describe --always --dirty 2>/dev/null || echo '?'); dovecot: $DV_VERSION (mail_fsync = optimized)"
for s in $SESSIONS; do
	echo
	echo "$s session(s): calls per message"
	printf '  %-20s %10s %10s\n' syscall mailroom dovecot
	join -a1 -a2 -e0 -o 0,1.2,2.2 <(counts "$WORK/mailroom-$s.strace" | sort) <(counts "$WORK/dovecot-$s.strace" | sort) |
		awk -v n="$N" '{ m = $2 / n; d = $3 / n; tm += m; td += d; if (m >= 0.05 || d >= 0.05) printf "%f  %-20s %10.2f %10.2f\n", (m > d ? m : d), $1, m, d }
			END { printf "-1  %-20s %10.2f %10.2f\n", "total", tm, td }' | sort -k1,1gr | sed 's/^[^ ]* //'
	for who in mailroom dovecot; do
		counts "$WORK/$who-$s.strace" | awk -v n="$N" -v r="$RCPTS" -v who="$who" '
			$1 == "fsync" || $1 == "fdatasync" { f += $2 }
			END { d = (f - n * r) / (n * r); printf "  %s: %.2f fsync+fdatasync per delivery; %.2f directory syncs per delivery (%.1f deliveries per sync)\n", who, f / (n * r), d, (d > 0 ? 1 / d : 0) }'
	done
done
