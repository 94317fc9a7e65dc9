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
#
# FILLS (default "0 100000"): for each F > 0 every variant and session count
# runs again into Maildirs that already hold F messages in cur/ (seen, as
# `lmtpbench fill -sub cur` writes them; every Maildir the variant delivers
# to: user0's filled, the others hard links of its files, so that 16 full
# folders cost one folder's inodes). Those mail roots are made once per
# system and kept across the R runs; each run starts the server afresh and
# first delivers WARM untimed messages (Dovecot builds its uidlist and index
# of the filled folder on the first), and the count check is of what the
# timed run added. The disk ceiling is run into empty Maildirs only. The
# rows of a filled folder also give each system's rate against its own
# empty-folder row (issue 16: within 10 %).
#
# STRACE (1 when run as root with strace installed): after the rate table,
# bench/lmtpstrace.sh counts system calls per message for both servers at
# the same session counts (STRACE_N messages, 300), with 1 recipient and,
# if rcpt5 is among the variants, with 5; its tables are printed here.
# The table shows medians over the R runs and the ratios of the medians, and
# each server's CPU per message (user + system time over the timed run from
# /proc, for Dovecot summed over its master and every process under it).
#
# Environment: N (2000), R (3), SESSIONS ("1 4 16"), USERS (16), FILLS
# ("0 100000"), WARM (20), STRACE (see above), STRACE_N (300),
# VARIANTS ("spread one"; "spread one rcpt5" adds the 5 recipients), BENCH_DIR
# (/var/tmp: where the work directory goes; must be a real disk, not tmpfs),
# LOOPFS (a size such as 8G: a fresh ext4 for the run, see bench/lib.sh),
# KEEP=1 (keep the work directory),
# PERF=1 (with perf installed: mailroom's CPU profile, `perf record -g` of
# its process over the first timed run of each row, and the top entries
# of each printed after the tables), MAILROOM_REV (a git revision: build
# mailroom from it instead of the working tree, to profile or time the
# code before a change with the same script; lmtpbench is always the
# working tree's),
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
FILLS=${FILLS:-"0 100000"}
WARM=${WARM:-20}
STRACE_N=${STRACE_N:-300}
if [[ -z ${STRACE:-} ]]; then
	STRACE=0
	[[ $(id -u) == 0 ]] && command -v strace >/dev/null && STRACE=1
fi
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
for v in N R USERS WARM STRACE_N; do
	[[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, not '${!v}'"
done
for v in $VARIANTS; do
	[[ $v == spread || $v == one || $v == rcpt5 ]] || die "VARIANTS may hold 'spread', 'one' and 'rcpt5', not '$v'"
done
for f in $FILLS; do
	[[ $f =~ ^[0-9]+$ ]] || die "FILLS holds message counts, not '$f'"
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
if [[ -n ${MAILROOM_REV:-} ]]; then
	git -C "$REPO" worktree add -q --detach "$WORK/src" "$MAILROOM_REV" || die "no revision $MAILROOM_REV"
	(cd "$WORK/src" && go build -o "$BIN/mailroom" ./cmd/mailroom) || die "cannot build mailroom at $MAILROOM_REV"
	git -C "$REPO" worktree remove --force "$WORK/src"
else
	(cd "$REPO" && go build -o "$BIN/mailroom" ./cmd/mailroom)
fi
(cd "$REPO" && go build -o "$BIN/lmtpbench" ./bench/lmtpbench)
PERF=${PERF:-0}
if [[ $PERF == 1 ]] && ! command -v perf >/dev/null; then
	die "PERF=1 needs perf (Debian's linux-perf)"
fi
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

# in_new ROOT: the messages in new/ under a mail root.
in_new() { field new "$("$LB" count -dir "$1" -domain "$DOMAIN")"; }

# check ROOT WHO RCPTS [BASE]: exactly BASE (0) + N*RCPTS messages in new/,
# nothing left in tmp/.
check() {
	local out new tmp want=$((${4:-0} + N * $3))
	out=$("$LB" count -dir "$1" -domain "$DOMAIN")
	new=$(field new "$out") tmp=$(field tmp "$out")
	if [[ $new != "$want" || $tmp != 0 ]]; then
		die "$2 acknowledged $N messages to $3 recipient(s) each but $new are in new/ where $want should be (and $tmp in tmp/): $out"
	fi
}

# users_of VARIANT: how many users its messages go to.
users_of() { if [[ $1 == one ]]; then echo 1; else echo "$USERS"; fi; }

# filled_root WHO VARIANT F: prints the mail root (mailroom: the data_dir)
# whose Maildirs the variant delivers to hold F messages in cur/, made the
# first time it is asked for.
filled_root() {
	local who=$1 variant=$2 f=$3 root mail u users
	users=$(users_of "$variant")
	if [[ $who == mailroom ]]; then
		root=$MR/fill-$variant-$f mail=$root/mail
	else
		root=$DV/fill-$variant-$f mail=$root
	fi
	if [[ ! -d $mail/$DOMAIN/user0 ]]; then
		echo "filling $who's $users folder(s) with $f messages ($variant)..." >&2
		"$LB" fill -dir "$mail/$DOMAIN/user0/Maildir" -n "$f" -sub cur >/dev/null || die "lmtpbench fill failed"
		for ((u = 1; u < users; u++)); do
			mkdir -p "$mail/$DOMAIN/user$u/Maildir/new" "$mail/$DOMAIN/user$u/Maildir/tmp"
			cp -al "$mail/$DOMAIN/user0/Maildir/cur" "$mail/$DOMAIN/user$u/Maildir/cur"
		done
		[[ $who == dovecot && $(id -u) == 0 ]] && chown -R "$DV_UID:$DV_GID" "$root"
	fi
	echo "$root"
}

# run_lmtp WHO ADDR MAILROOT VARIANT SESSIONS REP PID [FILL]: the rate in
# deliveries/s (messages/s x recipients) and the CPU per message of PID's
# processes; into a filled folder (FILL > 0) after WARM untimed messages.
run_lmtp() {
	local who=$1 addr=$2 root=$3 variant=$4 s=$5 rep=$6 pid=$7 fill=${8:-0} users out r t0 t1 rate us key base=0
	users=$(users_of "$variant")
	r=$(rcpts "$variant")
	((users >= r)) || die "rcpt5 needs USERS >= 5"
	key=$variant
	if ((fill > 0)); then
		key=$variant@$fill
		"$LB" lmtp -addr "$addr" -n "$WARM" -sessions 1 -users "$users" -rcpts "$r" -domain "$DOMAIN" -size "$SIZE" >/dev/null ||
			die "$who: warm-up delivery failed ($key)"
		base=$(in_new "$root")
	fi
	local perf_pid=
	if [[ $PERF == 1 && $who == mailroom && $rep == 1 ]]; then
		perf record -q -g -F 2000 -p "$pid" -o "$WORK/perf.$key.$s.data" 2>/dev/null &
		perf_pid=$!
		sleep 0.5 # time for perf to attach; a late start only shortens the profile
	fi
	t0=$(cpu_ticks "$pid")
	out=$("$LB" lmtp -addr "$addr" -n "$N" -sessions "$s" -users "$users" -rcpts "$r" -domain "$DOMAIN" -size "$SIZE") ||
		die "$who: delivery failed ($variant, $s sessions)"
	t1=$(cpu_ticks "$pid")
	if [[ -n $perf_pid ]]; then
		kill -INT "$perf_pid"
		wait "$perf_pid" || true
	fi
	check "$root" "$who" "$r" "$base"
	rate=$(awk -v a="$(field rate "$out")" -v r="$r" 'BEGIN { printf "%.1f", a * r }')
	us=$(us_per "$t0" "$t1" "$N")
	echo "$key $s $who $rep $rate $(field p50_ms "$out") $(field p99_ms "$out") $us" >>"$RESULTS"
	printf '  %-8s %-12s %2s sessions  run %s: %8s deliveries/s  %6s us CPU/msg  (p50 %s ms, p99 %s ms)\n' \
		"$who" "$key" "$s" "$rep" "$rate" "$us" "$(field p50_ms "$out")" "$(field p99_ms "$out")" >&2
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
		for fill in $FILLS; do
			for s in $SESSIONS; do
				if ((fill == 0)); then
					run_disk "$variant" "$s" "$rep"
					mrdata=$MR/$variant-$s-$rep dvroot=$DV/$variant-$s-$rep
				else
					mrdata=$(filled_root mailroom "$variant" "$fill") dvroot=$(filled_root dovecot "$variant" "$fill")
				fi
				start_mailroom "$mrdata" "$LMTP_SECTION" lmtp
				run_lmtp mailroom "$MR_ADDR" "$mrdata/mail" "$variant" "$s" "$rep" "$MR_PID" "$fill"
				stop_mailroom
				start_dovecot_lmtp "$dvroot"
				run_lmtp dovecot "$DV_ADDR" "$dvroot" "$variant" "$s" "$rep" "$(<"$DV/run/master.pid")" "$fill"
				stop_dovecot
			done
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
	printf '%8s | %8s | %15s | %23s | %22s | %16s | %14s | %13s | %14s | %18s\n' sessions folder "disk ceiling /s" "mailroom /s (spread)" "dovecot /s (spread)" "mailroom/dovecot" "(paired runs)" "mailroom/disk" "CPU us/msg m/d" "vs empty folder m/d"
	for fill in $FILLS; do
		key=$variant
		((fill > 0)) && key=$variant@$fill
		for s in $SESSIONS; do
			m=$(median "$key" "$s" mailroom)
			v=$(median "$key" "$s" dovecot)
			if ((fill == 0)); then
				d=$(median "$variant" "$s" disk)
				dcol=$(printf '%15.0f' "$d") mdisk="$(ratio "$m" "$d")x" vsempty=-
			else
				dcol=$(printf '%15s' "(empty only)") mdisk=-
				vsempty="$(ratio "$m" "$(median "$variant" "$s" mailroom)")x/$(ratio "$v" "$(median "$variant" "$s" dovecot)")x"
			fi
			printf '%8s | %8s | %15s | %15.0f %7s | %14.0f %7s | %15sx | %13sx | %13s | %6.0f/%-7.0f | %18s\n' "$s" "$fill" "$dcol" \
				"$m" "($(spread "$key" "$s" mailroom))" "$v" "($(spread "$key" "$s" dovecot))" \
				"$(ratio "$m" "$v")" "$(paired "$key" "$s" dovecot)" "$mdisk" \
				"$(median "$key" "$s" mailroom 8)" "$(median "$key" "$s" dovecot 8)" "$vsempty"
		done
	done
	last=${SESSIONS##* }
	for fill in $FILLS; do
		key=$variant
		((fill > 0)) && key=$variant@$fill
		r=$(ratio "$(median "$key" "$last" mailroom)" "$(median "$key" "$last" dovecot)")
		if awk -v r="$r" 'BEGIN { exit !(r >= 3) }'; then verdict=met; else verdict="NOT met"; fi
		echo "goal (mailroom >= 3x dovecot at $last sessions, same durability), folder of $fill: $verdict (${r}x)"
		if ((fill > 0)); then
			g=$(ratio "$(median "$key" "$last" mailroom)" "$(median "$variant" "$last" mailroom)")
			if awk -v r="$g" 'BEGIN { exit !(r >= 0.9) }'; then verdict=met; else verdict="NOT met"; fi
			echo "goal (mailroom's rate into the folder of $fill within 10 % of the empty folder's at $last sessions): $verdict (${g}x)"
		fi
		printf 'latency p50/p99 ms at %s sessions, folder of %s (median of runs): mailroom %.2f/%.2f, dovecot %.2f/%.2f\n' "$last" "$fill" \
			"$(median "$key" "$last" mailroom 6)" "$(median "$key" "$last" mailroom 7)" \
			"$(median "$key" "$last" dovecot 6)" "$(median "$key" "$last" dovecot 7)"
	done
done
echo
echo "(whole run: ${elapsed}s; raw figures: variant sessions system run deliveries/s p50_ms p99_ms cpu_us/msg)"
sort -k1,1 -k2,2n -k3,3 -k4,4n "$RESULTS" | sed 's/^/  /'

# --- system calls -----------------------------------------------------------
if [[ $PERF == 1 ]]; then
	echo
	echo "mailroom's CPU profile (perf record -g over the first run of each row; self time, top entries):"
	for f in "$WORK"/perf.*.data; do
		[[ -e $f ]] || continue
		row=${f#"$WORK"/perf.}
		row=${row%.data}
		echo "  ${row%.*}, ${row##*.} sessions:"
		perf report -i "$f" --no-children --sort sym -q --stdio -g none 2>/dev/null | sed -n '1,12s/^/    /p'
	done
fi

if [[ $STRACE == 1 ]]; then
	echo
	echo "system calls per message (bench/lmtpstrace.sh, N=$STRACE_N, sessions $SESSIONS, one Maildir, 1 recipient):"
	N=$STRACE_N SESSIONS=$SESSIONS USERS=1 RCPTS=1 bash "$REPO/bench/lmtpstrace.sh" 2>/dev/null | sed -n '/^System calls per LMTP message/,$p' ||
		die "bench/lmtpstrace.sh failed (STRACE=0 skips it)"
	if [[ " $VARIANTS " == *" rcpt5 "* ]]; then
		echo
		echo "system calls per message (bench/lmtpstrace.sh, N=$STRACE_N, sessions $SESSIONS, 5 recipients of $USERS users):"
		N=$STRACE_N SESSIONS=$SESSIONS USERS=$USERS RCPTS=5 bash "$REPO/bench/lmtpstrace.sh" 2>/dev/null | sed -n '/^System calls per LMTP message/,$p' ||
			die "bench/lmtpstrace.sh failed (STRACE=0 skips it)"
	fi
else
	echo
	echo "system calls: not counted (STRACE=0; it needs root and strace)"
fi
