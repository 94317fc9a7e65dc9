#!/usr/bin/env bash
# IMAP benchmark: mailroom's IMAP server against Dovecot's (Debian's
# dovecot-imapd), on copies of the same generated Maildir, on the same
# machine and filesystem, with the same client.
#
# Run by hand, as root (CI does not run it), from anywhere:
#
#   bench/imap.sh                       # 10,000 and 100,000 messages, R=3
#   SIZES=10000 R=5 bench/imap.sh
#   SIZES=100000 IDLE=0 bench/imap.sh   # no idle-connection test
#   FORMAT=mbox bench/imap.sh           # both servers on one mbox file
#
# For every mailbox size N, bench/imapbench gen writes one Maildir of N
# messages (1-50 KiB, log-uniform; 30 % multipart, some with a base64
# attachment; varied From, Subject (some encoded words), Date; flags in the
# names, ":2,S" on most), all in cur/, named "<time>.M..Q<i>.bench.test,
# S=<size>,W=<size with CRLF>:2,<flags>" as both servers name their files,
# with the Date as mtime. Each server gets its own copy (Dovecot's owned by
# its mail user), as alice@example.org's INBOX. Then, R times, each server
# in turn (mailroom first in odd runs, Dovecot first in even ones):
#   cold          stop the server, remove its index (mailroom: a fresh
#                 mailroom.db holding only the account, and the Maildir's
#                 mailroom-uidvalidity; Dovecot: every dovecot* file of the
#                 Maildir: dovecot.index*, dovecot-uidlist,
#                 dovecot.list.index*, ...), start it,
#                 time TCP connect + LOGIN + SELECT INBOX.
#   cold-nocache  the same again, but the page cache is dropped (sync;
#                 echo 3 > /proc/sys/vm/drop_caches) just before the
#                 start, for both servers alike; skipped where the kernel
#                 refuses it (the header of the output says which).
#   (then every message file of that server's copy is read once, so that
#   the page cache holds the mailbox for what follows)
#   warm          connect + LOGIN + SELECT on a server just started (its
#                 index on disk: Dovecot reads its index files in every
#                 new imap process; mailroom loads it from mailroom.db into
#                 memory at the first SELECT after a start).
#   again         the same once more, the server still running (mailroom
#                 answers from memory; Dovecot as for warm).
#   flags         UID FETCH 1:* (FLAGS)
#   envelope1     FETCH 1:* (ENVELOPE), the first since the index was made
#                 (Dovecot parses every header and fills its cache file).
#   envelope2     the same again (Dovecot answers from its cache).
#   search-subj   SEARCH HEADER Subject "quarterly" (in ~1 % of subjects).
#   search-body   SEARCH BODY "zanzibar" (in ~0.5 % of text bodies).
#   mbsync        mbsync (isync) pulls INBOX into an empty local Maildir
#                 (FSync no, so that the local disk does not time itself):
#                 wall time of the whole mbsync run.
# Each of these is one fresh connection of bench/imapbench op (go-imap v2's
# client): only the operation itself is timed, except for the SELECTs
# (connect, greeting, LOGIN, SELECT). LOGIN checks a bcrypt hash of cost
# 10 on both sides (about 50-60 ms of CPU here), so the SELECT rows carry
# that constant. Every answer is checked: SELECT must
# report N messages, each FETCH return N, mbsync leave N files, and each
# SEARCH find what the generator put in; a mismatch is printed with the
# results (and makes that figure meaningless).
# Then, for memory (in the first run only: it varies little, and a
# thousand bcrypt logins take a while), with the index in place and the
# page cache warm, each server is restarted, answers one LOGIN+SELECT, and IDLE connections are
# opened (16 at a time) and held: "selected" (logged in, INBOX selected:
# an idle IMAP client), then (after another restart) "greeted" (connected,
# not logged in). Memory is read before and after from /proc: for mailroom
# its process; for Dovecot its master and every process under it. The
# figure is (after - before) / IDLE, in KiB, as RSS and as PSS (RSS counts
# the pages Dovecot's processes share once per process; PSS divides them
# among the sharers, so PSS is the fair figure for Dovecot; for one process
# the two are close).
#
# FORMAT=mbox (issue 13) runs the same operations on an mbox instead: the
# generated Maildir's messages, in name order, written once into one mbox
# file (mboxrd: a From line, ^>*From  quoted, an empty line after each;
# the Maildir flags as Status: and X-Status:, as mutt and Dovecot write
# them), of which each server gets its own copy as INBOX: mailroom with
# [delivery] format = "mbox" (<home>/mbox), Dovecot with mail_location =
# mbox:~/mail:INBOX=~/mbox (Debian's defaults otherwise: mbox_lazy_writes,
# dotlock + fcntl). cold removes mailroom's index (mailroom.db) and
# Dovecot's (~/mail/.imap), and puts the pristine copy of the file back
# if a server changed it; the page cache is warmed by reading the file.
#
# Dovecot's configuration is bench/lib.sh's start_dovecot_imap: Debian's
# defaults (one imap-login process per connection before login, one imap
# process per connection after, index files inside the Maildir, no FTS
# plugin) with process and connection limits raised for the idle test.
# mailroom: `mailroom serve` with [imap] listen on 127.0.0.1 and
# allow_insecure_auth (LOGIN in clear on loopback).
#
# Environment: FORMAT (maildir; or mbox), SIZES ("10000 100000"), R (3), IDLE (1000; 0 skips the
# memory test), DROP_CACHES (auto: the cold-nocache row where the kernel
# allows; 0: never), BENCH_DIR (/var/tmp: where the work directory goes; a
# real disk, not tmpfs), KEEP=1 (keep the work directory), SEED (1),
# SYSTEMS ("mailroom dovecot": one alone for a quick look),
# DOVECOT (/usr/sbin/dovecot), DOVECOT_IMAP (/usr/lib/dovecot/imap),
# MBSYNC (mbsync on PATH), DOVECOT_MAIL_USER (nobody).
set -euo pipefail
# The project's Go release (README "Quick start"), unless the caller chose.
export GOTOOLCHAIN=${GOTOOLCHAIN:-go1.27.3}

SIZES=${SIZES:-"10000 100000"}
R=${R:-3}
IDLE=${IDLE:-1000}
DROP_CACHES=${DROP_CACHES:-auto}
BENCH_DIR=${BENCH_DIR:-/var/tmp}
SEED=${SEED:-1}
SYSTEMS=${SYSTEMS:-"mailroom dovecot"}
DOVECOT=${DOVECOT:-/usr/sbin/dovecot}
DOVECOT_IMAP=${DOVECOT_IMAP:-/usr/lib/dovecot/imap}
FORMAT=${FORMAT:-maildir}
MBSYNC=${MBSYNC:-$(command -v mbsync || echo /usr/bin/mbsync)}
DOMAIN=example.org
LOCAL=alice
ADDRESS=$LOCAL@$DOMAIN
PASSWORD=benchpassword # as bench/lib.sh's mr_accounts
# Both servers check LOGIN against a bcrypt hash of cost 10 (mailroom's
# bcrypt.DefaultCost; this is `doveadm pw -s BLF-CRYPT -r 10 -p
# benchpassword`), neither caches it.
DV_HASH='{BLF-CRYPT}$2y$10$qLb82wyEHhRDOjUBcgq6IODxHffrmrJlsqFpPLX3Xig3E.YeSwuvW'

die() { echo "imap.sh: $*" >&2; exit 1; }

# --- preflight --------------------------------------------------------------
command -v go >/dev/null || die "go is not on PATH"
if [[ ! -x $DOVECOT || ! -x $DOVECOT_IMAP ]]; then
	die "Dovecot's IMAP server is missing ($DOVECOT, $DOVECOT_IMAP): it is the benchmark's peer.
Install it with: apt-get install dovecot-imapd   (keep a policy-rc.d that exits 101
in place, as .ci/run does, so that no system-wide Dovecot starts),
or point DOVECOT and DOVECOT_IMAP at its binaries."
fi
[[ -x $MBSYNC ]] || die "mbsync is missing ($MBSYNC): install it with apt-get install isync, or set MBSYNC"
[[ $(id -u) == 0 ]] || die "run it as root: Dovecot's mail belongs to an unprivileged user, and the page cache can only be dropped by root"
for v in R SEED; do
	[[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, not '${!v}'"
done
[[ $IDLE =~ ^[0-9]+$ ]] || die "IDLE must be a number, not '$IDLE'"
for n in $SIZES; do
	[[ $n =~ ^[1-9][0-9]*$ ]] || die "SIZES holds positive integers, not '$n'"
done
for who in $SYSTEMS; do
	[[ $who == mailroom || $who == dovecot ]] || die "SYSTEMS may hold 'mailroom' and 'dovecot', not '$who'"
done
[[ $DROP_CACHES == auto || $DROP_CACHES == 0 ]] || die "DROP_CACHES is auto or 0, not '$DROP_CACHES'"
[[ $FORMAT == maildir || $FORMAT == mbox ]] || die "FORMAT is maildir or mbox, not '$FORMAT'"

REPO=${BENCH_REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
# shellcheck source=bench/lib.sh
source "$REPO/bench/lib.sh"
mkdir -p "$BENCH_DIR"
WORK=$(mktemp -d "$BENCH_DIR/imapbench.XXXXXX")
chmod 711 "$WORK" # Dovecot's mail user must reach its mail root inside
BIN=$WORK/bin
MR=$WORK/mailroom
DV=$WORK/dovecot
IDLE_PID=

imap_cleanup() {
	local rc=$?
	if [[ -n $IDLE_PID ]]; then kill -TERM "$IDLE_PID" 2>/dev/null || true; fi
	stop_dovecot_imap
	(exit "$rc")
	bench_cleanup
}
trap imap_cleanup EXIT
trap 'exit 130' INT TERM

warn_tmpfs
# A thousand connections need a thousand descriptors in Dovecot's master.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# nocache: the kernel lets us drop the page cache (the cold-nocache row);
# nocache_now: drop it at the next server_start.
nocache=0 nocache_now=0
if [[ $DROP_CACHES == auto ]] && drop_page_cache; then
	nocache=1
fi

echo "building imapbench and mailroom..." >&2
(cd "$REPO" && go build -o "$BIN/imapbench" ./bench/imapbench)
# The tree as built (others may commit while the benchmark runs).
MR_VERSION="$(cd "$REPO" && git describe --always --dirty 2>/dev/null || echo '?'), built $(date -u +%H:%M) UTC"
if [[ " $SYSTEMS " == *" mailroom "* ]]; then
	(cd "$REPO" && go build -o "$BIN/mailroom" ./cmd/mailroom) || die "cannot build mailroom"
fi
IB=$BIN/imapbench

# --- setup ------------------------------------------------------------------
# Connection limits raised for the idle test, as for Dovecot.
IMAP_SECTION='[imap]
listen = ["127.0.0.1:0"]
allow_insecure_auth = true
max_connections = 5000
[limits]
max_connections = 5000
max_connections_per_ip = 5000'
if [[ $FORMAT == mbox ]]; then
	IMAP_SECTION+='
[delivery]
format = "mbox"'
	export DV_MAIL_LOCATION="mbox:~/mail:INBOX=~/mbox"
fi
if [[ " $SYSTEMS " == *" mailroom "* ]]; then
	echo "creating the mailroom account $ADDRESS..." >&2
	mr_accounts "$IMAP_SECTION" "$LOCAL"
fi
dovecot_init
printf '%s:%s::::::\n' "$ADDRESS" "$DV_HASH" >"$DV/passwd"

RESULTS=$WORK/results.txt
PROBLEMS=$WORK/problems.txt
: >"$RESULTS"
: >"$PROBLEMS"

field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }
problem() { echo "$*" | tee -a "$PROBLEMS" >&2; }

# Each server's copy of the N-message mailbox: mailroom's data_dir and
# Maildir, Dovecot's mail root and Maildir.
mr_data() { echo "$MR/n$1"; }
mr_maildir() { echo "$MR/n$1/mail/$DOMAIN/$LOCAL/Maildir"; }
dv_root() { echo "$DV/n$1"; }
dv_maildir() { echo "$DV/n$1/$DOMAIN/$LOCAL/Maildir"; }
# FORMAT=mbox: each server's mbox file, and the pristine one.
mr_mbox() { echo "$MR/n$1/mail/$DOMAIN/$LOCAL/mbox"; }
dv_mbox() { echo "$DV/n$1/$DOMAIN/$LOCAL/mbox"; }
gen_mbox() { echo "$WORK/gen/n$1/mbox"; }

# maildir_to_mbox MAILDIR OUT: FORMAT=mbox's file (see the top).
maildir_to_mbox() {
	python3 - "$1" "$2" <<'PY'
import os, re, sys
src, out = sys.argv[1], sys.argv[2]
quote = re.compile(rb"^(>*From )", re.M)
with open(out, "wb") as w:
    for name in sorted(os.listdir(os.path.join(src, "cur"))):
        data = open(os.path.join(src, "cur", name), "rb").read()
        flags = name.rsplit(":2,", 1)[1] if ":2," in name else ""
        fields = b"Status: RO\n" if "S" in flags else b""
        x = "".join(l for f, l in (("R", "A"), ("F", "F"), ("D", "T"), ("T", "D")) if f in flags)
        if x:
            fields += b"X-Status: " + x.encode() + b"\n"
        end = data.find(b"\n\n")
        head, body = (data, b"") if end < 0 else (data[: end + 1], data[end + 1 :])
        if not body.endswith(b"\n"):
            body += b"\n"
        w.write(b"From bench@example.net Mon Jan  1 00:00:00 2024\n")
        w.write(quote.sub(rb">\1", head + fields + body))
        w.write(b"\n")
PY
}

# restore_mbox FILE N: puts the pristine mbox of N messages back at FILE
# if it differs (a server rewrote it).
restore_mbox() {
	if ! cmp -s "$(gen_mbox "$2")" "$1"; then
		cp "$(gen_mbox "$2")" "$1"
		chown --reference="$(dirname "$1")" "$1"
	fi
}

# server_start WHO N [keep]: starts WHO on its copy of the N-message
# mailbox; without "keep", its index is removed first. Sets ADDR and PID.
server_start() {
	local who=$1 n=$2 keep=${3:-}
	if [[ $who == mailroom ]]; then
		# The index lives in mailroom.db (the template holds the account
		# only), and the Maildir keeps the last UIDVALIDITY in
		# mailroom-uidvalidity, as Dovecot's does in its dovecot* files.
		if [[ -z $keep ]]; then
			cp "$MR/template/mailroom.db" "$(mr_data "$n")/mailroom.db"
			if [[ $FORMAT == mbox ]]; then
				restore_mbox "$(mr_mbox "$n")" "$n"
			else
				rm -f "$(mr_maildir "$n")"/mailroom-*
			fi
		fi
		[[ $nocache_now == 1 ]] && { drop_page_cache || die "could not drop the page cache"; }
		mr_serve "$(mr_data "$n")" "$IMAP_SECTION" imap
		ADDR=$MR_ADDR PID=$MR_PID
	else
		if [[ -z $keep && $FORMAT == mbox ]]; then
			rm -rf "$(dirname "$(dv_mbox "$n")")/mail/.imap"
			restore_mbox "$(dv_mbox "$n")" "$n"
		elif [[ -z $keep ]]; then
			rm -f "$(dv_maildir "$n")"/dovecot*
		fi
		[[ $nocache_now == 1 ]] && { drop_page_cache || die "could not drop the page cache"; }
		start_dovecot_imap "$(dv_root "$n")" "$("$IB" port)" "$DV/passwd"
		ADDR=$DV_ADDR PID=$DV_PID
	fi
	"$IB" wait -addr "$ADDR" || die "$who is not answering on $ADDR: $(tail -5 "$DV/dovecot.log" "$(mr_data "$n")/serve.log" 2>/dev/null)"
}

server_stop() {
	if [[ $1 == mailroom ]]; then stop_mailroom; else stop_dovecot_imap; fi
}

# record OP N WHO REP VALUE [VALUE2]
record() {
	echo "$1 $2 $3 $4 $5 ${6:-}" >>"$RESULTS"
}

# op OP N WHO REP WANT: one timed operation; WANT is the count it must
# report.
op() {
	local o=$1 n=$2 who=$3 rep=$4 want=$5 out
	out=$("$IB" op -addr "$ADDR" -user "$ADDRESS" -pass "$PASSWORD" -op "${o%%[0-9]*}" 2>&1) || {
		problem "$who, N=$n, run $rep: $o failed: $out"
		return 0
	}
	if [[ $(field n "$out") != "$want" ]]; then
		problem "$who, N=$n, run $rep: $o returned $(field n "$out"), not $want"
	fi
	record "$o" "$n" "$who" "$rep" "$(field ms "$out")"
	printf '  %-8s N=%-6s run %s: %-13s %10s ms\n' "$who" "$n" "$rep" "$o" "$(field ms "$out")" >&2
}

# select_op NAME N WHO REP: op select, named NAME (cold, warm, ...).
select_op() {
	local name=$1 n=$2 who=$3 rep=$4 out
	out=$("$IB" op -addr "$ADDR" -user "$ADDRESS" -pass "$PASSWORD" -op select 2>&1) || die "$who: LOGIN+SELECT failed: $out"
	[[ $(field n "$out") == "$n" ]] || problem "$who, N=$n, run $rep: SELECT ($name) reported $(field n "$out") messages, not $n"
	record "$name" "$n" "$who" "$rep" "$(field ms "$out")"
	printf '  %-8s N=%-6s run %s: %-13s %10s ms\n' "$who" "$n" "$rep" "$name" "$(field ms "$out")" >&2
}

# mbsync_run N WHO REP: pulls INBOX into an empty local Maildir.
mbsync_run() {
	local n=$1 who=$2 rep=$3 dir=$WORK/mbsync/$2-$1-$3 port=${ADDR##*:} t0 t1 got
	mkdir -p "$dir/mail"
	cat >"$dir/mbsyncrc" <<EOF
# No fsync of every stored message (mbsync's default): the local disk
# would time itself, not the server.
FSync no

IMAPAccount bench
Host 127.0.0.1
Port $port
User $ADDRESS
Pass $PASSWORD
SSLType None
AuthMechs LOGIN

IMAPStore far
Account bench

MaildirStore near
Path $dir/mail/
Inbox $dir/mail/INBOX
SubFolders Verbatim

Channel bench
Far :far:
Near :near:
Patterns INBOX
Create Near
Sync Pull
Expunge None
SyncState *
EOF
	t0=$EPOCHREALTIME
	if ! "$MBSYNC" -q -c "$dir/mbsyncrc" bench >"$dir/out" 2>&1; then
		problem "$who, N=$n, run $rep: mbsync failed: $(tail -3 "$dir/out")"
		return 0
	fi
	t1=$EPOCHREALTIME
	got=$(find "$dir/mail/INBOX/cur" "$dir/mail/INBOX/new" -type f | wc -l)
	[[ $got == "$n" ]] || problem "$who, N=$n, run $rep: mbsync stored $got messages, not $n"
	local ms
	ms=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", (b - a) * 1000 }')
	record mbsync "$n" "$who" "$rep" "$ms"
	printf '  %-8s N=%-6s run %s: %-13s %10s ms\n' "$who" "$n" "$rep" mbsync "$ms" >&2
}

# idle_run N WHO REP STATE: memory per idle connection.
idle_run() {
	local n=$1 who=$2 rep=$3 state=$4 tree= before after out f=$WORK/idle.out
	[[ $who == dovecot ]] && tree=-tree
	server_start "$who" "$n" keep
	"$IB" op -addr "$ADDR" -user "$ADDRESS" -pass "$PASSWORD" -op select >/dev/null || die "$who: LOGIN+SELECT failed"
	sleep 1
	before=$("$IB" mem -pid "$PID" $tree)
	: >"$f"
	"$IB" idle -addr "$ADDR" -user "$ADDRESS" -pass "$PASSWORD" -n "$IDLE" -state "$state" >"$f" 2>&1 &
	IDLE_PID=$!
	while ! grep -q RESULT "$f"; do
		kill -0 "$IDLE_PID" 2>/dev/null || break
		sleep 0.2
	done
	if ! grep -q RESULT "$f"; then
		wait "$IDLE_PID" || true
		IDLE_PID=
		problem "$who, N=$n, run $rep: $IDLE $state connections failed: $(tail -3 "$f")"
		server_stop "$who"
		return 0
	fi
	sleep 2 # let the server settle (Dovecot's processes finish starting)
	after=$("$IB" mem -pid "$PID" $tree)
	kill -TERM "$IDLE_PID"
	if ! wait "$IDLE_PID"; then
		problem "$who, N=$n, run $rep: $state: $(tail -3 "$f")"
	fi
	IDLE_PID=
	server_stop "$who"
	local rss pss
	rss=$(awk -v a="$(field rss_kb "$before")" -v b="$(field rss_kb "$after")" -v n="$IDLE" 'BEGIN { printf "%.1f", (b - a) / n }')
	pss=$(awk -v a="$(field pss_kb "$before")" -v b="$(field pss_kb "$after")" -v n="$IDLE" 'BEGIN { printf "%.1f", (b - a) / n }')
	record "idle-$state" "$n" "$who" "$rep" "$rss" "$pss"
	printf '  %-8s N=%-6s run %s: idle %-8s %7s KiB RSS, %7s KiB PSS per connection (%s -> %s)\n' "$who" "$n" "$rep" "$state" "$rss" "$pss" "$before" "$after" >&2
}

# server_run N WHO REP: every timed operation on WHO, then memory.
server_run() {
	local n=$1 who=$2 rep=$3
	nocache_now=0
	server_start "$who" "$n"
	select_op cold "$n" "$who" "$rep"
	server_stop "$who"
	if [[ $nocache == 1 ]]; then
		nocache_now=1
		server_start "$who" "$n"
		nocache_now=0
		select_op cold-nocache "$n" "$who" "$rep"
		server_stop "$who"
	fi
	server_start "$who" "$n" keep
	if [[ $FORMAT == mbox ]]; then
		if [[ $who == mailroom ]]; then cat "$(mr_mbox "$n")" >/dev/null; else cat "$(dv_mbox "$n")" >/dev/null; fi
	else
		if [[ $who == mailroom ]]; then md=$(mr_maildir "$n"); else md=$(dv_maildir "$n"); fi
		find "$md/cur" -type f -exec cat {} + >/dev/null
	fi
	select_op warm "$n" "$who" "$rep"
	select_op again "$n" "$who" "$rep"
	op flags "$n" "$who" "$rep" "$n"
	op envelope1 "$n" "$who" "$rep" "$n"
	op envelope2 "$n" "$who" "$rep" "$n"
	op search-subject "$n" "$who" "$rep" "${SUBJ_HITS[$n]}"
	op search-body "$n" "$who" "$rep" "${BODY_HITS[$n]}"
	mbsync_run "$n" "$who" "$rep"
	server_stop "$who"
	# Memory varies little from run to run, and a thousand bcrypt logins
	# take a minute or two: once per size, in the first run.
	if ((IDLE > 0 && rep == 1)); then
		idle_run "$n" "$who" "$rep" selected
		idle_run "$n" "$who" "$rep" greeted
	fi
}

# --- mailboxes --------------------------------------------------------------
declare -A SUBJ_HITS BODY_HITS GEN_BYTES
for n in $SIZES; do
	echo "generating $n messages..." >&2
	out=$("$IB" gen -dir "$WORK/gen/n$n/Maildir" -n "$n" -seed "$SEED")
	SUBJ_HITS[$n]=$(field subject_hits "$out")
	BODY_HITS[$n]=$(field body_hits "$out")
	GEN_BYTES[$n]=$(field bytes "$out")
	mkdir -p "$(mr_data "$n")/mail/$DOMAIN/$LOCAL" "$(dv_root "$n")/$DOMAIN/$LOCAL"
	[[ -f $MR/template/mailroom.db ]] && cp "$MR/template/mailroom.db" "$(mr_data "$n")/"
	if [[ $FORMAT == mbox ]]; then
		echo "writing them into one mbox..." >&2
		maildir_to_mbox "$WORK/gen/n$n/Maildir" "$(gen_mbox "$n")"
		rm -rf "$WORK/gen/n$n/Maildir"
		cp "$(gen_mbox "$n")" "$(mr_mbox "$n")"
		cp "$(gen_mbox "$n")" "$(dv_mbox "$n")"
	else
		cp -a "$WORK/gen/n$n/Maildir" "$(mr_maildir "$n")"
		cp -a "$WORK/gen/n$n/Maildir" "$(dv_maildir "$n")"
	fi
	chown -R "$DV_UID:$DV_GID" "$(dv_root "$n")"
done

# --- runs -------------------------------------------------------------------
start=$(date +%s)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
for n in $SIZES; do
	for ((rep = 1; rep <= R; rep++)); do
		echo "N=$n: run $rep of $R" >&2
		order=$SYSTEMS
		((rep % 2)) || order=$(tr ' ' '\n' <<<"$SYSTEMS" | tac | tr '\n' ' ')
		for who in $order; do
			server_run "$n" "$who" "$rep"
		done
	done
done
elapsed=$(($(date +%s) - start))

# --- report -----------------------------------------------------------------
label() {
	case $1 in
	cold) echo "LOGIN+SELECT, cold (no index)" ;;
	cold-nocache) echo "  the same, page cache dropped" ;;
	warm) echo "LOGIN+SELECT, warm (restarted)" ;;
	again) echo "LOGIN+SELECT, again (running)" ;;
	flags) echo "UID FETCH 1:* (FLAGS)" ;;
	envelope1) echo "FETCH 1:* (ENVELOPE), first" ;;
	envelope2) echo "FETCH 1:* (ENVELOPE), again" ;;
	search-subject) echo "SEARCH HEADER Subject" ;;
	search-body) echo "SEARCH BODY" ;;
	mbsync) echo "mbsync, full, to empty Maildir" ;;
	esac
}

echo
echo "IMAP benchmark: $R runs per figure, medians (spread = (max-min)/median over the runs;"
echo "paired = median of the per-run ratios mailroom/dovecot); times in ms, lower is better"
echo "host: $(nproc) CPUs, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, $(uname -sr); filesystem: $fstype on $(df --output=source "$WORK" | tail -1) ($WORK)"
echo "mailroom: $MR_VERSION, $(go version | awk '{print $3}')"
if [[ $FORMAT == mbox ]]; then
	echo "format:   mbox (one file of N messages, a copy per server; mailroom [delivery] format = \"mbox\")"
	echo "dovecot:  $DV_VERSION, mail_location = $DV_MAIL_LOCATION, Debian defaults otherwise (index in ~/mail/.imap, no FTS), mail uid $DV_USER"
else
	echo "dovecot:  $DV_VERSION, Debian defaults (maildir, index in the Maildir, no FTS), mail uid $DV_USER"
fi
echo "mbsync:   $("$MBSYNC" --version 2>/dev/null | head -1)"
echo "load average (1, 5, 15 min) at the start: $load_start; at the end: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine shows in the spreads)"
if [[ $nocache == 1 ]]; then
	echo "page cache: dropped (echo 3 > /proc/sys/vm/drop_caches) before each server's cold-nocache start; warm otherwise"
else
	echo "page cache: never dropped (DROP_CACHES=0 or refused by the kernel); cold = index missing only"
fi
verdict=met
for n in $SIZES; do
	echo
	printf 'N=%s messages (%s MiB; SUBJECT hits %s, BODY hits %s)\n' "$n" "$(awk -v b="${GEN_BYTES[$n]}" 'BEGIN { printf "%.0f", b / 1048576 }')" "${SUBJ_HITS[$n]}" "${BODY_HITS[$n]}"
	printf '%-32s | %18s | %18s | %16s | %8s\n' operation "mailroom (spread)" "dovecot (spread)" mailroom/dovecot "(paired)"
	for o in cold cold-nocache warm again flags envelope1 envelope2 search-subject search-body mbsync; do
		[[ $o == cold-nocache && $nocache != 1 ]] && continue
		m=$(median "$o" "$n" mailroom)
		v=$(median "$o" "$n" dovecot)
		r=$(ratio "$m" "$v")
		printf '%-32s | %10.1f %7s | %10.1f %7s | %15sx | %7sx\n' "$(label "$o")" "$m" "($(spread "$o" "$n" mailroom))" \
			"$v" "($(spread "$o" "$n" dovecot))" "$r" "$(paired "$o" "$n" dovecot)"
		awk -v r="$r" 'BEGIN { exit !(r == "-" || r > 1) }' && verdict="NOT met"
	done
	if ((IDLE > 0)); then
		printf '%-32s | %18s | %18s |\n' "KiB per idle connection ($IDLE)" "mailroom RSS/PSS" "dovecot RSS/PSS"
		for st in selected greeted; do
			printf '%-32s | %8.1f / %7.1f | %8.1f / %7.1f |\n' "  $st" \
				"$(median "idle-$st" "$n" mailroom)" "$(median "idle-$st" "$n" mailroom 6)" \
				"$(median "idle-$st" "$n" dovecot)" "$(median "idle-$st" "$n" dovecot 6)"
			awk -v k="$(median "idle-$st" "$n" mailroom)" 'BEGIN { exit !(k == "nan" || k >= 50) }' && verdict="NOT met"
		done
	fi
done
echo
echo "goal (no operation slower than Dovecot's, under 50 KiB RSS per idle connection): $verdict"
if [[ -s $PROBLEMS ]]; then
	echo
	echo "PROBLEMS (the figures they touch are meaningless):"
	sed 's/^/  /' "$PROBLEMS"
fi
echo
echo "(whole run: ${elapsed}s; raw figures: operation N system run ms-or-KiB [PSS KiB])"
sort -k1,1 -k2,2n -k3,3 -k4,4n "$RESULTS" | sed 's/^/  /'
