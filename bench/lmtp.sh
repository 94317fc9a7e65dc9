#!/usr/bin/env bash
# LMTP delivery benchmark: mailroom against Dovecot's LMTP and against the
# disk's own ceiling, on the same machine and the same filesystem.
#
# Run by hand (CI does not run it), from anywhere:
#
#   bench/lmtp.sh                      # N=2000 messages per run, R=3 runs
#   N=5000 R=5 bench/lmtp.sh
#   SESSIONS="16" VARIANTS=one bench/lmtp.sh
#
# For every variant and session count it runs, R times and interleaved:
#   disk      lmtpbench disk: create O_EXCL in tmp/, write 4 KiB, fsync,
#             rename into new/, fsync new/, per message, with as many
#             goroutines as sessions (no server at all: the ceiling).
#   mailroom  `mailroom serve` on 127.0.0.1, fresh mail root each run.
#   dovecot   a private Dovecot (own base_dir, own config, LMTP only on
#             127.0.0.1), fresh mail root each run.
# Both servers get the same client (bench/lmtpbench, go-smtp's LMTP client):
# every session connects and says LHLO before the clock starts, then delivers
# its share of N 4 KiB messages one at a time, one recipient each.
# Variants: "spread": session i delivers to user<i mod USERS>;
#           "one":    every session delivers to user0 (one Maildir);
#           "rcpt5":  every message goes to 5 recipients, session i's to
#                     user<i..i+4 mod USERS>; its rates are recipient
#                     deliveries/s (messages/s x 5), for the servers and the
#                     disk (5 files per message). Not run unless named.
# After each run the files in new/ are counted: N (5N) or the script fails.
# The table shows medians over the R runs and the ratios of the medians, and
# each server's CPU per message (user + system time over the timed run from
# /proc, for Dovecot summed over its master and every process under it).
#
# Environment: N (2000), R (3), SESSIONS ("1 4 16"), USERS (16),
# VARIANTS ("spread one"; "spread one rcpt5" adds the 5 recipients), BENCH_DIR
# (/var/tmp: where the work directory goes; must be a real disk, not tmpfs),
# LOOPFS (a size such as 8G: a fresh ext4 for the run, see bench/lib.sh),
# KEEP=1 (keep the work directory),
# DOVECOT (/usr/sbin/dovecot), DOVECOT_LMTP (/usr/lib/dovecot/lmtp),
# DOVECOT_MAIL_USER (when run as root: nobody; Dovecot refuses uid 0 for mail).
set -euo pipefail
# The project's Go release (README "Quick start"), unless the caller chose.
export GOTOOLCHAIN=${GOTOOLCHAIN:-go1.27.3}

N=${N:-2000}
R=${R:-3}
SESSIONS=${SESSIONS:-"1 4 16"}
USERS=${USERS:-16}
VARIANTS=${VARIANTS:-"spread one"}
BENCH_DIR=${BENCH_DIR:-/var/tmp}
SIZE=4096
DOVECOT=${DOVECOT:-/usr/sbin/dovecot}
DOVECOT_LMTP=${DOVECOT_LMTP:-/usr/lib/dovecot/lmtp}
DOMAIN=example.org

die() { echo "lmtp.sh: $*" >&2; exit 1; }

# --- preflight --------------------------------------------------------------
command -v go >/dev/null || die "go is not on PATH"
if [[ ! -x $DOVECOT || ! -x $DOVECOT_LMTP ]]; then
	die "Dovecot is missing ($DOVECOT, $DOVECOT_LMTP): it is the benchmark's peer.
Install it with: apt-get install dovecot-core dovecot-lmtpd   (as .ci/run does),
or point DOVECOT and DOVECOT_LMTP at its binaries."
fi
for v in N R USERS; do
	[[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, not '${!v}'"
done
for v in $VARIANTS; do
	[[ $v == spread || $v == one || $v == rcpt5 ]] || die "VARIANTS may hold 'spread', 'one' and 'rcpt5', not '$v'"
done

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mkdir -p "$BENCH_DIR"
WORK=$(mktemp -d "$BENCH_DIR/lmtpbench.XXXXXX")
chmod 711 "$WORK"   # Dovecot's mail user must reach its mail root inside
BIN=$WORK/bin
# Private mailroom and Dovecot instances: bench/lib.sh.
# shellcheck source=bench/lib.sh
source "$REPO/bench/lib.sh"

trap bench_cleanup EXIT
trap 'exit 130' INT TERM

bench_loopfs
warn_tmpfs

echo "building mailroom and lmtpbench..." >&2
(cd "$REPO" && go build -o "$BIN/mailroom" ./cmd/mailroom && go build -o "$BIN/lmtpbench" ./bench/lmtpbench)
LB=$BIN/lmtpbench

# --- mailroom ---------------------------------------------------------------
# Every run gets a fresh data_dir (so a fresh mail root) holding a copy of
# one database with the accounts. Nothing is deleted until the end: on ext4
# without a journal, creating files right after deleting thousands costs
# noticeable CPU (the inode allocator skips recently deleted inodes), which
# would tax whichever system runs next.
MR=$WORK/mailroom
LMTP_SECTION='[lmtp]
listen = ["127.0.0.1:0"]'
echo "creating $USERS mailroom accounts..." >&2
mr_accounts "$LMTP_SECTION" $(for ((u = 0; u < USERS; u++)); do echo "user$u"; done)

# --- dovecot ----------------------------------------------------------------
DV=$WORK/dovecot
dovecot_init

# start_dovecot_lmtp MAIL_ROOT: a fresh port and mail root; sets DV_ADDR
# once Dovecot answers.
start_dovecot_lmtp() {
	start_dovecot "$1" "$("$LB" port)"
	"$LB" wait -addr "$DV_ADDR" || die "Dovecot is not answering on $DV_ADDR: $(tail -5 "$DV/dovecot.log")"
}

# --- runs -------------------------------------------------------------------
RESULTS=$WORK/results.txt
: >"$RESULTS"

field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }

# rcpts VARIANT: recipients per message.
rcpts() { if [[ $1 == rcpt5 ]]; then echo 5; else echo 1; fi; }

# check ROOT WHO RCPTS: exactly N*RCPTS messages in new/, nothing left in
# tmp/.
check() {
	local out new tmp
	out=$("$LB" count -dir "$1" -domain "$DOMAIN")
	new=$(field new "$out") tmp=$(field tmp "$out")
	if [[ $new != "$((N * $3))" || $tmp != 0 ]]; then
		die "$2 acknowledged $N messages to $3 recipient(s) each but stored $new in new/ (and $tmp in tmp/): $out"
	fi
}

# run_lmtp WHO ADDR MAILROOT VARIANT SESSIONS REP PID: the rate in
# deliveries/s (messages/s x recipients) and the CPU per message of PID's
# processes.
run_lmtp() {
	local who=$1 addr=$2 root=$3 variant=$4 s=$5 rep=$6 pid=$7 users out r t0 t1 rate us
	users=$USERS
	[[ $variant == one ]] && users=1
	r=$(rcpts "$variant")
	((users >= r)) || die "rcpt5 needs USERS >= 5"
	t0=$(cpu_ticks "$pid")
	out=$("$LB" lmtp -addr "$addr" -n "$N" -sessions "$s" -users "$users" -rcpts "$r" -domain "$DOMAIN" -size "$SIZE") ||
		die "$who: delivery failed ($variant, $s sessions)"
	t1=$(cpu_ticks "$pid")
	check "$root" "$who" "$r"
	rate=$(awk -v a="$(field rate "$out")" -v r="$r" 'BEGIN { printf "%.1f", a * r }')
	us=$(us_per "$t0" "$t1" "$N")
	echo "$variant $s $who $rep $rate $(field p50_ms "$out") $(field p99_ms "$out") $us" >>"$RESULTS"
	printf '  %-8s %-6s %2s sessions  run %s: %8s deliveries/s  %6s us CPU/msg  (p50 %s ms, p99 %s ms)\n' \
		"$who" "$variant" "$s" "$rep" "$rate" "$us" "$(field p50_ms "$out")" "$(field p99_ms "$out")" >&2
}

run_disk() {
	local variant=$1 s=$2 rep=$3 maildirs n out rate dir=$WORK/disk/$1-$2-$3
	maildirs=$((s < USERS ? s : USERS))
	[[ $variant == one ]] && maildirs=1
	# 5 recipients: five files per message, one worker per session.
	n=$((N * $(rcpts "$variant")))
	mkdir -p "$WORK/disk"
	out=$("$LB" disk -dir "$dir" -n "$n" -workers "$s" -maildirs "$maildirs" -size "$SIZE")
	rate=$(field rate "$out")
	echo "$variant $s disk $rep $rate $(field p50_ms "$out") $(field p99_ms "$out") $(field cpu_us "$out")" >>"$RESULTS"
	printf '  %-8s %-6s %2s workers   run %s: %8s files/s  (p50 %s ms, p99 %s ms)\n' \
		disk "$variant" "$s" "$rep" "$rate" "$(field p50_ms "$out")" "$(field p99_ms "$out")" >&2
}

start=$(date +%s)
for ((rep = 1; rep <= R; rep++)); do
	echo "run $rep of $R" >&2
	for variant in $VARIANTS; do
		for s in $SESSIONS; do
			run_disk "$variant" "$s" "$rep"
			start_mailroom "$MR/$variant-$s-$rep" "$LMTP_SECTION" lmtp
			run_lmtp mailroom "$MR_ADDR" "$MR/$variant-$s-$rep/mail" "$variant" "$s" "$rep" "$MR_PID"
			stop_mailroom
			start_dovecot_lmtp "$DV/$variant-$s-$rep"
			run_lmtp dovecot "$DV_ADDR" "$DV/$variant-$s-$rep" "$variant" "$s" "$rep" "$(<"$DV/run/master.pid")"
			stop_dovecot
		done
	done
done
elapsed=$(($(date +%s) - start))

echo
echo "LMTP delivery benchmark: $N messages of $SIZE bytes per run, $R runs per figure, medians"
echo "(spread = (max-min)/median over the runs; paired = median of the per-run ratios, runs interleaved)"
echo "host: $(nproc) CPUs, $(uname -sr); filesystem: $fstype on $(df --output=source "$WORK" | tail -1) ($WORK)"
echo "mailroom: $(cd "$REPO" && git describe --always --dirty 2>/dev/null || echo '?'), $(go version | awk '{print $3}'); fsync file (O_TMPFILE in tmp/), link into new/ (tmp/ file and rename where O_TMPFILE is missing), fsync new/ (group commit) before 250"
echo "dovecot:  $DV_VERSION, mail_fsync = optimized: fsync file, rename, fdatasync new/ before 250 (+ uidlist, index); mail uid $DV_USER"
echo "disk:     lmtpbench disk: O_EXCL create in tmp/, write, fsync, rename into new/, fsync new/, one goroutine per session"
for variant in $VARIANTS; do
	echo
	case $variant in
	spread) echo "variant spread: session i delivers to user<i mod $USERS> (disk: min(sessions,$USERS) Maildirs)" ;;
	one) echo "variant one: every session delivers to user0 (one Maildir; disk: one Maildir)" ;;
	rcpt5) echo "variant rcpt5: 5 recipients per message, session i's to user<i..i+4 mod $USERS>; figures are recipient deliveries/s (disk: files/s)" ;;
	esac
	printf '%8s | %18s | %23s | %22s | %16s | %14s | %13s | %14s\n' sessions "disk ceiling /s" "mailroom /s (spread)" "dovecot /s (spread)" "mailroom/dovecot" "(paired runs)" "mailroom/disk" "CPU us/msg m/d"
	for s in $SESSIONS; do
		d=$(median "$variant" "$s" disk)
		m=$(median "$variant" "$s" mailroom)
		v=$(median "$variant" "$s" dovecot)
		printf '%8s | %18.0f | %15.0f %7s | %14.0f %7s | %15sx | %13sx | %12sx | %6.0f/%-7.0f\n' "$s" "$d" \
			"$m" "($(spread "$variant" "$s" mailroom))" "$v" "($(spread "$variant" "$s" dovecot))" \
			"$(ratio "$m" "$v")" "$(paired "$variant" "$s" dovecot)" "$(ratio "$m" "$d")" \
			"$(median "$variant" "$s" mailroom 8)" "$(median "$variant" "$s" dovecot 8)"
	done
	last=${SESSIONS##* }
	r=$(ratio "$(median "$variant" "$last" mailroom)" "$(median "$variant" "$last" dovecot)")
	if awk -v r="$r" 'BEGIN { exit !(r >= 3) }'; then verdict=met; else verdict="NOT met"; fi
	echo "goal (mailroom >= 3x dovecot at $last sessions, same durability): $verdict (${r}x)"
	printf 'latency p50/p99 ms at %s sessions (median of runs): mailroom %.2f/%.2f, dovecot %.2f/%.2f\n' "$last" \
		"$(median "$variant" "$last" mailroom 6)" "$(median "$variant" "$last" mailroom 7)" \
		"$(median "$variant" "$last" dovecot 6)" "$(median "$variant" "$last" dovecot 7)"
done
echo
echo "(whole run: ${elapsed}s; raw figures: variant sessions system run deliveries/s p50_ms p99_ms cpu_us/msg)"
sort -k1,1 -k2,2n -k3,3 -k4,4n "$RESULTS" | sed 's/^/  /'
