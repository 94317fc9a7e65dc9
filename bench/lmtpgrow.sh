#!/usr/bin/env bash
# LMTP delivery into folders that already hold many messages: does the cost
# of a delivery grow with the folder? mailroom against Dovecot's LMTP on the
# same machine and file system (issue 16).
#
# Run by hand (CI does not run it), as root, with Dovecot installed
# (apt-get install dovecot-core dovecot-lmtpd), from anywhere:
#
#   bench/lmtpgrow.sh                          # N=2000, R=3, 16 sessions
#   FILLS="0 10000" SUBS=cur N=500 R=1 bench/lmtpgrow.sh   # a quick look
#
# For every folder size F in FILLS and every SUB in SUBS (F=0 once), each
# system gets one Maildir (user0's), filled once with F messages of 2 KiB in
# SUB (new/: unread, cur/: seen, ":2,S"; `lmtpbench fill`, Dovecot's names
# with S= and W=), then R runs, interleaved with the other system's: start
# the server, deliver 20 untimed messages (Dovecot builds its uidlist and
# index of the filled folder on the first), then N 4 KiB messages over
# SESSIONS LMTP sessions, all to user0, and stop it. The folder grows by
# N+20 per run, which is small beside F. After each run the files in new/
# and cur/ are counted: every acknowledged message or the script fails.
#
# Columns: msg/s (median of R), CPU µs per message (the server's user +
# system time over the timed run, from /proc, for Dovecot summed over its
# master and every process under it), each as a ratio to the same system's
# empty-folder row (goal: within 10 %), and mailroom/dovecot.
#
# IDLE=1: during mailroom's timed runs an IMAP client (`lmtpbench idle`)
# has INBOX selected and IDLEs, as a mail client watching the folder does;
# its EXISTS updates are counted. Dovecot's rows stay without one (its IMAP
# is not set up here), so compare mailroom's rows with and without.
#
# Environment: N (2000), R (3), SESSIONS (16), FILLS ("0 10000 100000"),
# SUBS ("new cur"), BENCH_DIR (/var/tmp; a real disk), LOOPFS (a size such
# as 8G: a fresh ext4 of that size for the run, see bench/lib.sh), KEEP=1, DOVECOT,
# DOVECOT_LMTP, DOVECOT_MAIL_USER (as for bench/lmtp.sh).
set -euo pipefail
export GOTOOLCHAIN=${GOTOOLCHAIN:-go1.27.3}

N=${N:-2000}
R=${R:-3}
SESSIONS=${SESSIONS:-16}
FILLS=${FILLS:-"0 10000 100000"}
SUBS=${SUBS:-"new cur"}
BENCH_DIR=${BENCH_DIR:-/var/tmp}
SIZE=4096
WARM=20
DOVECOT=${DOVECOT:-/usr/sbin/dovecot}
DOVECOT_LMTP=${DOVECOT_LMTP:-/usr/lib/dovecot/lmtp}
DOMAIN=example.org

die() { echo "lmtpgrow.sh: $*" >&2; exit 1; }

command -v go >/dev/null || die "go is not on PATH"
[[ -x $DOVECOT && -x $DOVECOT_LMTP ]] || die "Dovecot is missing ($DOVECOT, $DOVECOT_LMTP): apt-get install dovecot-core dovecot-lmtpd"
for v in N R SESSIONS; do
	[[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, not '${!v}'"
done
for f in $FILLS; do
	[[ $f =~ ^[0-9]+$ ]] || die "FILLS holds message counts, not '$f'"
done
for s in $SUBS; do
	[[ $s == new || $s == cur ]] || die "SUBS may hold 'new' and 'cur', not '$s'"
done

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mkdir -p "$BENCH_DIR"
WORK=$(mktemp -d "$BENCH_DIR/lmtpgrow.XXXXXX")
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
LMTP_SECTION='[lmtp]
listen = ["127.0.0.1:0"]'
if [[ ${IDLE:-0} == 1 ]]; then
	LMTP_SECTION="$LMTP_SECTION
[imap]
listen = [\"127.0.0.1:0\"]
allow_insecure_auth = true"
fi
mr_accounts "$LMTP_SECTION" user0
DV=$WORK/dovecot
dovecot_init

RESULTS=$WORK/results.txt
: >"$RESULTS"
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }

# Folders: KEY is FILL-SUB ("0-new" for the empty folder).
KEYS=()
for f in $FILLS; do
	if [[ $f == 0 ]]; then
		KEYS+=("0-new")
	else
		for s in $SUBS; do KEYS+=("$f-$s"); done
	fi
done

declare -A EXPECT
# prepare WHO KEY: the mail root of WHO's folder KEY, made and filled once.
prepare() {
	local who=$1 key=$2 root md
	root=$WORK/$who/root-$key
	if [[ $who == mailroom ]]; then
		md=$root/mail/$DOMAIN/user0/Maildir
	else
		md=$root/$DOMAIN/user0/Maildir
	fi
	if [[ -z ${EXPECT[$who-$key]:-} ]]; then
		echo "filling $who's folder $key..." >&2
		"$LB" fill -dir "$md" -n "${key%-*}" -sub "${key#*-}" >/dev/null
		[[ $who == dovecot && $(id -u) == 0 ]] && chown -R "$DV_UID:$DV_GID" "$root"
		EXPECT[$who-$key]=${key%-*}
	fi
	ROOT=$root
}

# check WHO MAILROOT: new/ + cur/ hold every message acknowledged so far.
check() {
	local out total
	out=$("$LB" count -dir "$2" -domain "$DOMAIN")
	total=$(($(field new "$out") + $(field cur "$out")))
	[[ $total == "${EXPECT[$1-$KEY]}" && $(field tmp "$out") == 0 ]] ||
		die "$1: expected ${EXPECT[$1-$KEY]} messages in $2, found: $out"
}

# run WHO ADDR MAILROOT PID REP
run() {
	local who=$1 addr=$2 mail=$3 pid=$4 rep=$5 out t0 t1 us
	"$LB" lmtp -addr "$addr" -n "$WARM" -sessions 1 -users 1 -domain "$DOMAIN" -size "$SIZE" >/dev/null ||
		die "$who: warm-up delivery failed ($KEY)"
	EXPECT[$who-$KEY]=$((EXPECT[$who-$KEY] + WARM))
	local idler= line
	if [[ ${IDLE:-0} == 1 && $who == mailroom ]]; then
		coproc IDLER { "$LB" idle -addr "$MR_IMAP" -user "user0@$DOMAIN" -pass benchpassword; }
		idler=$IDLER_PID
		read -r line <&"${IDLER[0]}" || die "the IMAP client did not start"
		[[ $line == idling ]] || die "the IMAP client: $line"
	fi
	t0=$(cpu_ticks "$pid")
	out=$("$LB" lmtp -addr "$addr" -n "$N" -sessions "$SESSIONS" -users 1 -domain "$DOMAIN" -size "$SIZE" -timeout 10m) ||
		die "$who: delivery failed ($KEY)"
	t1=$(cpu_ticks "$pid")
	if [[ -n $idler ]]; then
		exec {IDLER[1]}>&-
		read -r line <&"${IDLER[0]}" || true
		wait "$idler" || true
		echo "  (IMAP IDLE client: $line)" >&2
	fi
	EXPECT[$who-$KEY]=$((EXPECT[$who-$KEY] + N))
	check "$who" "$mail"
	us=$(us_per "$t0" "$t1" "$N")
	echo "$KEY $SESSIONS $who $rep $(field rate "$out") $us $(field p50_ms "$out") $(field p99_ms "$out")" >>"$RESULTS"
	printf '  %-8s %-12s run %s: %8s msg/s  %6s us CPU/msg  (p50 %s ms, p99 %s ms)\n' \
		"$who" "$KEY" "$rep" "$(field rate "$out")" "$us" "$(field p50_ms "$out")" "$(field p99_ms "$out")" >&2
}

start=$(date +%s)
for ((rep = 1; rep <= R; rep++)); do
	echo "run $rep of $R" >&2
	for KEY in "${KEYS[@]}"; do
		prepare mailroom "$KEY"
		mrroot=$ROOT
		mkdir -p "$mrroot"
		# The mail root stays (it holds the filled folder); the rest of
		# data_dir is made afresh each run, as in bench/lmtp.sh.
		start_mailroom "$mrroot" "$LMTP_SECTION" lmtp
		MR_IMAP=$(grep -o "proto=imap addr=127\.0\.0\.1:[0-9]*" "$mrroot/serve.log" | head -1 | sed 's/.*addr=//')
		run mailroom "$MR_ADDR" "$mrroot/mail" "$MR_PID" "$rep"
		stop_mailroom
		prepare dovecot "$KEY"
		dvroot=$ROOT
		start_dovecot "$dvroot" "$("$LB" port)"
		"$LB" wait -addr "$DV_ADDR" || die "Dovecot is not answering on $DV_ADDR: $(tail -5 "$DV/dovecot.log")"
		run dovecot "$DV_ADDR" "$dvroot" "$(<"$DV/run/master.pid")" "$rep"
		stop_dovecot
	done
done
elapsed=$(($(date +%s) - start))

echo
echo "LMTP delivery into a filled folder: $N messages of $SIZE bytes per run over $SESSIONS sessions, one Maildir, $R runs, medians"
[[ ${IDLE:-0} == 1 ]] && echo "IDLE=1: an IMAP client IDLEs on mailroom's INBOX during its runs (not Dovecot's)"
echo "host: $(nproc) CPUs, $(uname -sr); filesystem: $fstype on $(df --output=source "$WORK" | tail -1) ($WORK); load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "mailroom: $(cd "$REPO" && git describe --always --dirty 2>/dev/null || echo '?'); dovecot: $DV_VERSION (mail_fsync = optimized)"
printf '%-13s | %16s | %16s | %11s | %11s | %10s | %10s | %9s | %9s\n' folder "mailroom msg/s" "dovecot msg/s" "mr/empty" "dv/empty" "mr/dovecot" "(paired)" "mr us/msg" "dv us/msg"
m0=$(median 0-new "$SESSIONS" mailroom)
v0=$(median 0-new "$SESSIONS" dovecot)
for KEY in "${KEYS[@]}"; do
	m=$(median "$KEY" "$SESSIONS" mailroom)
	v=$(median "$KEY" "$SESSIONS" dovecot)
	printf '%-13s | %9.0f %6s | %9.0f %6s | %10sx | %10sx | %9sx | %9sx | %9.0f | %9.0f\n' "$KEY" \
		"$m" "($(spread "$KEY" "$SESSIONS" mailroom))" "$v" "($(spread "$KEY" "$SESSIONS" dovecot))" \
		"$(ratio "$m" "$m0")" "$(ratio "$v" "$v0")" "$(ratio "$m" "$v")" "$(paired "$KEY" "$SESSIONS" dovecot)" \
		"$(median "$KEY" "$SESSIONS" mailroom 6)" "$(median "$KEY" "$SESSIONS" dovecot 6)"
done
echo "(folder: messages already in it - where; mr/empty: the rate against the same system's empty folder, goal >= 0.90)"
echo
echo "(whole run: ${elapsed}s; raw: folder sessions system run msg/s cpu_us/msg p50_ms p99_ms)"
sort -k1,1 -k3,3 -k4,4n "$RESULTS" | sed 's/^/  /'
