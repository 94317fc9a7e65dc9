#!/usr/bin/env bash
# IMAP stress benchmark: Dovecot's imaptest in stress mode (CLIENTS
# clients, SECS seconds, logout=0: each client logs in once and then runs
# imaptest's random mix of SELECT, FETCH, STORE, EXPUNGE, APPEND, ...,
# checking every response) against mailroom's IMAP server and against a
# private Dovecot (Debian's dovecot-imapd, bench/lib.sh's configuration),
# each on its own copy of the same generated Maildir, on the same machine.
# The figure is commands per second (imaptest's totals over SECS); every
# error line imaptest prints (a response it judged wrong) is counted and
# shown. Goal (issue 14): at least Dovecot's rate, with 0 errors. The
# servers' CPU per command (user + system time of the server's processes
# over the run, divided by the commands) is shown too: on a machine shared
# with other work the rate follows the load, the CPU per command less so.
#
# Run by hand, as root (CI does not: test/e2e's TestIMAPImaptestStress
# checks the errors there):
#
#   bench/imapstress.sh                    # N=1000 messages, 30 s, 10 clients, R=3
#   SECS=5 R=1 bench/imapstress.sh         # a quick look
#
# Each run starts both servers afresh on a fresh copy (index removed), in
# alternating order. imaptest APPENDs messages taken from an mbox written
# from the generated Maildir (MBOX_N of them).
#
# Environment: N (1000), SECS (30), CLIENTS (10), R (3), MBOX_N (200),
# IMAPTEST (directory of imaptest; else ../shared/tools/imaptest beside the
# repository, else /work/shared/tools/imaptest), BENCH_DIR (/var/tmp),
# KEEP=1, SEED (1), SYSTEMS ("mailroom dovecot"), DOVECOT, DOVECOT_IMAP,
# DOVECOT_MAIL_USER (nobody).
set -euo pipefail
# The project's Go release (README "Quick start"), unless the caller chose.
export GOTOOLCHAIN=${GOTOOLCHAIN:-go1.27.3}

N=${N:-1000}
SECS=${SECS:-30}
CLIENTS=${CLIENTS:-10}
R=${R:-3}
MBOX_N=${MBOX_N:-200}
BENCH_DIR=${BENCH_DIR:-/var/tmp}
SEED=${SEED:-1}
SYSTEMS=${SYSTEMS:-"mailroom dovecot"}
DOVECOT=${DOVECOT:-/usr/sbin/dovecot}
DOVECOT_IMAP=${DOVECOT_IMAP:-/usr/lib/dovecot/imap}
DOMAIN=example.org
LOCAL=alice
ADDRESS=$LOCAL@$DOMAIN
PASSWORD=benchpassword # as bench/lib.sh's mr_accounts
# bcrypt, cost 10, on both sides (see bench/imap.sh).
DV_HASH='{BLF-CRYPT}$2y$10$qLb82wyEHhRDOjUBcgq6IODxHffrmrJlsqFpPLX3Xig3E.YeSwuvW'

die() { echo "imapstress.sh: $*" >&2; exit 1; }

REPO=${BENCH_REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}

# --- preflight --------------------------------------------------------------
command -v go >/dev/null || die "go is not on PATH"
[[ -x $DOVECOT && -x $DOVECOT_IMAP ]] || die "Dovecot's IMAP server is missing ($DOVECOT, $DOVECOT_IMAP): apt-get install dovecot-imapd (with a policy-rc.d that exits 101, so that no system-wide Dovecot starts)"
[[ $(id -u) == 0 ]] || die "run it as root: Dovecot's mail belongs to an unprivileged user"
for v in N SECS CLIENTS R MBOX_N SEED; do
	[[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, not '${!v}'"
done
for who in $SYSTEMS; do
	[[ $who == mailroom || $who == dovecot ]] || die "SYSTEMS may hold 'mailroom' and 'dovecot', not '$who'"
done
IMAPTEST_DIR=
for d in ${IMAPTEST:-} "$REPO/../shared/tools/imaptest" /work/shared/tools/imaptest; do
	if [[ -x $d/imaptest ]]; then IMAPTEST_DIR=$d; break; fi
done
[[ -n $IMAPTEST_DIR ]] || die "imaptest not found: set IMAPTEST to its directory"
[[ -e /usr/lib/dovecot/libdovecot.so.0 ]] || die "imaptest needs dovecot-core's library: apt-get install dovecot-core"

# shellcheck source=bench/lib.sh
source "$REPO/bench/lib.sh"
mkdir -p "$BENCH_DIR"
WORK=$(mktemp -d "$BENCH_DIR/imapstress.XXXXXX")
chmod 711 "$WORK"
BIN=$WORK/bin
MR=$WORK/mailroom
DV=$WORK/dovecot

stress_cleanup() {
	local rc=$?
	stop_dovecot_imap
	(exit "$rc")
	bench_cleanup
}
trap stress_cleanup EXIT
trap 'exit 130' INT TERM
warn_tmpfs

echo "building imapbench and mailroom..." >&2
(cd "$REPO" && go build -o "$BIN/imapbench" ./bench/imapbench && go build -o "$BIN/mailroom" ./cmd/mailroom) || die "build failed"
MR_VERSION="$(cd "$REPO" && git describe --always --dirty 2>/dev/null || echo '?'), built $(date -u +%H:%M) UTC"
IB=$BIN/imapbench

IMAP_SECTION='[imap]
listen = ["127.0.0.1:0"]
allow_insecure_auth = true'
mr_accounts "$IMAP_SECTION" "$LOCAL"
dovecot_init
printf '%s:%s::::::\n' "$ADDRESS" "$DV_HASH" >"$DV/passwd"

echo "generating $N messages..." >&2
"$IB" gen -dir "$WORK/gen/Maildir" -n "$N" -seed "$SEED" >/dev/null
# The mbox imaptest APPENDs from: MBOX_N other messages (another seed:
# imaptest tells messages apart by Message-ID, and takes two of one ID
# with different sizes for a server error), with mboxrd quoting.
"$IB" gen -dir "$WORK/gen-append/Maildir" -n "$MBOX_N" -seed "$((SEED + 1000))" >/dev/null
MBOX=$WORK/append.mbox
find "$WORK/gen-append/Maildir/cur" -type f | sort | while read -r f; do
	echo "From bench@example.org Mon Jan  1 00:00:00 2024"
	sed -e 's/\r$//' -e 's/^\(>*From \)/>\1/' "$f"
	echo
done >"$MBOX"

RESULTS=$WORK/results.txt
: >"$RESULTS"

# fresh WHO: a fresh copy of the Maildir for WHO, without an index.
fresh() {
	if [[ $1 == mailroom ]]; then
		rm -rf "$MR/data"
		mkdir -p "$MR/data/mail/$DOMAIN/$LOCAL"
		cp "$MR/template/mailroom.db" "$MR/data/"
		cp -a "$WORK/gen/Maildir" "$MR/data/mail/$DOMAIN/$LOCAL/Maildir"
	else
		rm -rf "$DV/mail"
		mkdir -p "$DV/mail/$DOMAIN/$LOCAL"
		cp -a "$WORK/gen/Maildir" "$DV/mail/$DOMAIN/$LOCAL/Maildir"
		chown -R "$DV_UID:$DV_GID" "$DV/mail"
	fi
}

# stress WHO REP: one imaptest stress run against WHO.
stress() {
	local who=$1 rep=$2 addr pid out=$WORK/stress-$1-$2.out
	fresh "$who"
	if [[ $who == mailroom ]]; then
		mr_serve "$MR/data" "$IMAP_SECTION" imap
		addr=$MR_ADDR pid=$MR_PID
	else
		start_dovecot_imap "$DV/mail" "$("$IB" port)" "$DV/passwd"
		addr=$DV_ADDR pid=$DV_PID
	fi
	"$IB" wait -addr "$addr" || die "$who is not answering on $addr"
	# The server's CPU over the run: its processes (for Dovecot, the
	# master and every service under it, with the imap processes it
	# reaped as the clients left).
	local t0 t1
	t0=$(cpu_ticks "$pid")
	"$IMAPTEST_DIR/imaptest" host=127.0.0.1 port="${addr##*:}" user="$ADDRESS" pass="$PASSWORD" \
		clients="$CLIENTS" secs="$SECS" logout=0 mbox="$MBOX" >"$out" 2>&1 || true
	t1=$(cpu_ticks "$pid")
	if [[ $who == mailroom ]]; then stop_mailroom; else stop_dovecot_imap; fi
	# Totals: three header lines, then the counts of each command.
	local total errors
	total=$(awk '/^Totals:/ { t = 1; next } t && /^ *[0-9]+( +[0-9]+)+ *$/ { s = 0; for (i = 1; i <= NF; i++) s += $i; print s; exit }' "$out")
	errors=$(grep -c -E '^(Error|Panic|Fatal):' "$out" || true)
	[[ -n $total ]] || die "$who, run $rep: no totals in imaptest's output: $(tail -5 "$out")"
	local rate
	rate=$(awk -v t="$total" -v s="$SECS" 'BEGIN { printf "%.1f", t / s }')
	local cpu
	cpu=$(us_per "$t0" "$t1" "$total")
	echo "cps x $who $rep $rate" >>"$RESULTS"
	echo "cpu x $who $rep $cpu" >>"$RESULTS"
	echo "errors x $who $rep $errors" >>"$RESULTS"
	printf '  %-8s run %s: %8s commands/s (%s commands), %s us CPU/command, %s error lines\n' "$who" "$rep" "$rate" "$total" "$cpu" "$errors" >&2
	if ((errors > 0)); then
		grep -E '^(Error|Panic|Fatal):' "$out" | head -5 | sed 's/^/    /' >&2
	fi
}

start=$(date +%s)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
for ((rep = 1; rep <= R; rep++)); do
	echo "run $rep of $R" >&2
	order=$SYSTEMS
	((rep % 2)) || order=$(tr ' ' '\n' <<<"$SYSTEMS" | tac | tr '\n' ' ')
	for who in $order; do
		stress "$who" "$rep"
	done
done
elapsed=$(($(date +%s) - start))

echo
echo "IMAP stress: imaptest clients=$CLIENTS secs=$SECS logout=0, $N messages in INBOX at the start, $R runs, medians"
echo "host: $(nproc) CPUs, $(uname -sr); filesystem: $fstype ($WORK)"
echo "mailroom: $MR_VERSION, $(go version | awk '{print $3}')"
echo "dovecot:  $DV_VERSION, Debian defaults (bench/lib.sh start_dovecot_imap)"
echo "load average (1, 5, 15 min) at the start: $load_start; at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
m=$(median cps x mailroom)
v=$(median cps x dovecot)
printf '%-20s | %18s | %18s | %16s | %8s\n' "" "mailroom (spread)" "dovecot (spread)" mailroom/dovecot "(paired)"
printf '%-20s | %10s %7s | %10s %7s | %15sx | %7sx\n' "commands per second" "$m" "($(spread cps x mailroom))" "$v" "($(spread cps x dovecot))" "$(ratio "$m" "$v")" "$(paired cps x dovecot)"
m=$(median cpu x mailroom)
v=$(median cpu x dovecot)
printf '%-20s | %10s %7s | %10s %7s | %15sx | %7sx\n' "server CPU us/cmd" "$m" "($(spread cpu x mailroom))" "$v" "($(spread cpu x dovecot))" "$(ratio "$m" "$v")" "$(paired cpu x dovecot)"
printf '%-20s | %18s | %18s |\n' "error lines (max)" \
	"$(awk '$1 == "errors" && $3 == "mailroom" { if ($5 > m) m = $5 } END { print m + 0 }' "$RESULTS")" \
	"$(awk '$1 == "errors" && $3 == "dovecot" { if ($5 > m) m = $5 } END { print m + 0 }' "$RESULTS")"
echo
echo "(whole run: ${elapsed}s; raw: figure - system run value)"
sort "$RESULTS" | sed 's/^/  /'
