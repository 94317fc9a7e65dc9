#!/usr/bin/env bash
# Many idle IMAP connections: mailroom's IMAP server against Dovecot's
# (Debian's dovecot-imapd), the memory that N held connections cost and
# whether a fresh client is still served while they are held.
#
# Run by hand, as root (CI does not run it), on a quiet machine:
#
#   bench/imapconns.sh                  # N=10000 connections, R=5
#   N=2000 R=3 bench/imapconns.sh
#   SYSTEMS=mailroom bench/imapconns.sh # one side alone
#   STATES=greeted bench/imapconns.sh   # no logins (10,000 bcrypt logins
#                                       # take minutes on 2 cores)
#
# Each server serves one account whose INBOX holds MSGS generated messages
# (bench/imapbench gen). For each state, each server in turn:
#   1. start it, LOGIN+SELECT once (so that its index exists), then time a
#      fresh client's connect + LOGIN + SELECT INBOX R times ("fresh, none
#      held"; LOGIN checks bcrypt of cost 10 on both sides);
#   2. read its memory from /proc (mailroom: its process; Dovecot: its
#      master and every process under it), RSS and PSS;
#   3. open N connections (bench/imapbench idle, 32 at a time) from SOURCES
#      loopback addresses (127.0.0.2 and on: as many clients behind as many
#      addresses, so that no per-address limit is what is measured) and
#      hold them: "greeted" (connected, never logged in: what someone who
#      wants to fill the server holds) or "selected" (logged in, INBOX
#      selected: an idle mail client);
#   4. read its memory again, and time the fresh client R times more from
#      127.0.0.1 ("fresh, N held");
#   5. check that every one of the N is still open (imapbench idle fails if
#      the server dropped any), and stop the server.
# Figures: (after - before) / N in KiB, as RSS and PSS (Dovecot's processes
# share pages that RSS counts once per process: PSS is its fair figure),
# the whole increase in MiB, and the fresh client's median ms.
#
# mailroom: `mailroom serve` with [imap] max_connections = N + N/5 + 100
# (the last tenth of the limit is kept for clients that hold none: see
# README "Limits"; loopback clients may hold half each), the rest default.
# Dovecot: configured as its documentation advises for many connections:
# imap-login in high-performance mode (service_count = 0, one process per
# core, each serving many clients), and imap processes serving up to
# DOVECOT_IMAP_CLIENTS connections each (client_limit; default 1000) instead
# of one process per connection (Debian's default would need N processes,
# about a GiB per thousand logged-in connections).
#
# Environment: N (10000), R (5), MSGS (1000), SOURCES (10), STATES
# ("greeted selected"), SYSTEMS ("mailroom dovecot"), DOVECOT_IMAP_CLIENTS
# (1000), BENCH_DIR (/var/tmp), KEEP=1 (keep the work directory), DOVECOT
# (/usr/sbin/dovecot), DOVECOT_MAIL_USER (nobody).
set -euo pipefail
# The project's Go release (README "Quick start"), unless the caller chose.
export GOTOOLCHAIN=${GOTOOLCHAIN:-go1.27.3}

N=${N:-10000}
R=${R:-5}
MSGS=${MSGS:-1000}
SOURCES=${SOURCES:-10}
STATES=${STATES:-"greeted selected"}
SYSTEMS=${SYSTEMS:-"mailroom dovecot"}
DOVECOT_IMAP_CLIENTS=${DOVECOT_IMAP_CLIENTS:-1000}
BENCH_DIR=${BENCH_DIR:-/var/tmp}
DOVECOT=${DOVECOT:-/usr/sbin/dovecot}
DOMAIN=example.org
LOCAL=alice
ADDRESS=$LOCAL@$DOMAIN
PASSWORD=benchpassword # as bench/lib.sh's mr_accounts
# `doveadm pw -s BLF-CRYPT -r 10 -p benchpassword`, as bench/imap.sh.
DV_HASH='{BLF-CRYPT}$2y$10$qLb82wyEHhRDOjUBcgq6IODxHffrmrJlsqFpPLX3Xig3E.YeSwuvW'

die() { echo "imapconns.sh: $*" >&2; exit 1; }

# --- preflight --------------------------------------------------------------
command -v go >/dev/null || die "go is not on PATH"
[[ $(id -u) == 0 ]] || die "run it as root: Dovecot's mail belongs to an unprivileged user, and N connections need a raised descriptor limit"
for v in N R MSGS SOURCES DOVECOT_IMAP_CLIENTS; do
	[[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, not '${!v}'"
done
((SOURCES <= 250)) || die "SOURCES is at most 250 (127.0.0.2 to 127.0.0.251)"
for st in $STATES; do
	[[ $st == greeted || $st == selected ]] || die "STATES may hold 'greeted' and 'selected', not '$st'"
done
for who in $SYSTEMS; do
	[[ $who == mailroom || $who == dovecot ]] || die "SYSTEMS may hold 'mailroom' and 'dovecot', not '$who'"
done
if [[ " $SYSTEMS " == *" dovecot "* && ! -x $DOVECOT ]]; then
	die "Dovecot is missing ($DOVECOT): it is the benchmark's peer. Install it with
apt-get install dovecot-imapd (keep a policy-rc.d that exits 101 in place, as .ci/run
does, so that no system-wide Dovecot starts), or run SYSTEMS=mailroom alone."
fi

REPO=${BENCH_REPO:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
# shellcheck source=bench/lib.sh
source "$REPO/bench/lib.sh"
mkdir -p "$BENCH_DIR"
WORK=$(mktemp -d "$BENCH_DIR/imapconns.XXXXXX")
chmod 711 "$WORK" # Dovecot's mail user must reach its mail root inside
BIN=$WORK/bin
MR=$WORK/mailroom
DV=$WORK/dovecot
IDLE_PID=

conns_cleanup() {
	local rc=$?
	if [[ -n $IDLE_PID ]]; then kill -TERM "$IDLE_PID" 2>/dev/null || true; fi
	stop_dovecot
	BENCH_RC=$rc bench_cleanup
}
trap conns_cleanup EXIT
trap 'exit 130' INT TERM

# N connections are N descriptors in the server and N in the client.
ulimit -n $((2 * N + 4096)) 2>/dev/null || ulimit -n "$(ulimit -Hn)"
(($(ulimit -n) > N + 1000)) || die "the descriptor limit ($(ulimit -n)) is too low for N=$N"

echo "building imapbench and mailroom..." >&2
(cd "$REPO" && go build -o "$BIN/imapbench" ./bench/imapbench && go build -o "$BIN/mailroom" ./cmd/mailroom) || die "cannot build"
IB=$BIN/imapbench
MR_VERSION="$(cd "$REPO" && git describe --always --dirty 2>/dev/null || echo '?'), built $(date -u +%H:%M) UTC"

field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $2"; }

# --- setup ------------------------------------------------------------------
MAX=$((N + N / 5 + 100))
IMAP_SECTION="[imap]
listen = [\"127.0.0.1:0\"]
allow_insecure_auth = true
max_connections = $MAX"
echo "generating $MSGS messages..." >&2
"$IB" gen -dir "$WORK/gen/Maildir" -n "$MSGS" >/dev/null
if [[ " $SYSTEMS " == *" mailroom "* ]]; then
	mr_accounts "$IMAP_SECTION" "$LOCAL"
	mkdir -p "$MR/data/mail/$DOMAIN/$LOCAL"
	cp "$MR/template/mailroom.db" "$MR/data/"
	cp -a "$WORK/gen/Maildir" "$MR/data/mail/$DOMAIN/$LOCAL/Maildir"
fi
if [[ " $SYSTEMS " == *" dovecot "* ]]; then
	dovecot_init
	printf '%s:%s::::::\n' "$ADDRESS" "$DV_HASH" >"$DV/passwd"
	mkdir -p "$DV/mail/$DOMAIN/$LOCAL"
	cp -a "$WORK/gen/Maildir" "$DV/mail/$DOMAIN/$LOCAL/Maildir"
	chown -R "$DV_UID:$DV_GID" "$DV/mail"
fi

# dv_start PORT: a private Dovecot, IMAP only on 127.0.0.1:PORT, set up for
# many connections (see the header); sets DV_PID and DV_ADDR.
dv_start() {
	local port=$1 cores
	cores=$(nproc)
	mkdir -p "$DV/run" "$DV/state"
	DV_CONF=$DV/dovecot-conns.conf
	cat >"$DV_CONF" <<EOF
# Private Dovecot for bench/imapconns.sh: IMAP only, loopback only.
instance_name = benchconns-$$
base_dir = $DV/run
state_dir = $DV/state
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
log_path = $DV/dovecot.log
mail_location = maildir:$DV/mail/%d/%n/Maildir
first_valid_uid = $DV_UID
first_valid_gid = $DV_GID
$DV_SERVICE_USERS
default_client_limit = $((MAX + 100))
default_vsz_limit = 1G
protocol imap {
  mail_max_userip_connections = $((MAX + 100))
}
passdb {
  driver = passwd-file
  args = $DV/passwd
}
userdb {
  driver = static
  args = uid=$DV_UID gid=$DV_GID home=$DV/mail/%d/%n
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $port
  }
  inet_listener imaps {
    port = 0
  }
  # High-performance mode: long-lived login processes, one per core.
  service_count = 0
  process_min_avail = $cores
  process_limit = $cores
  client_limit = $((MAX + 100))
}
service imap {
  # Long-lived imap processes, each serving many connections.
  service_count = 0
  client_limit = $DOVECOT_IMAP_CLIENTS
  process_limit = $((MAX / DOVECOT_IMAP_CLIENTS + 10))
}
service anvil {
  client_limit = $((2 * MAX + 1000))
}
service auth {
  client_limit = $((2 * MAX + 1000))
}
EOF
	"$DOVECOT" -F -c "$DV_CONF" 2>>"$DV/start.log" &
	DV_PID=$!
	DV_ADDR=127.0.0.1:$port
}

# server_start WHO: sets ADDR and PID, and waits for the greeting.
server_start() {
	if [[ $1 == mailroom ]]; then
		mr_serve "$MR/data" "$IMAP_SECTION" imap
		ADDR=$MR_ADDR PID=$MR_PID
	else
		dv_start "$("$IB" port)"
		ADDR=$DV_ADDR PID=$DV_PID
	fi
	"$IB" wait -addr "$ADDR" || die "$1 is not answering on $ADDR: $(tail -5 "$DV/dovecot.log" "$MR/data/serve.log" 2>/dev/null)"
}

server_stop() {
	if [[ $1 == mailroom ]]; then
		stop_mailroom
	else
		kill -TERM "$DV_PID" 2>/dev/null || true
		wait "$DV_PID" 2>/dev/null || true
		DV_PID=
	fi
}

# fresh WHO LABEL: R timed LOGIN+SELECTs of a fresh client; prints the
# median ms (and each one on stderr).
fresh() {
	local who=$1 label=$2 out i all=()
	for ((i = 1; i <= R; i++)); do
		out=$("$IB" op -addr "$ADDR" -user "$ADDRESS" -pass "$PASSWORD" -op select 2>&1) || die "$who: a fresh client was not served ($label): $out"
		[[ $(field n "$out") == "$MSGS" ]] || die "$who: SELECT ($label) reported $(field n "$out") messages, not $MSGS"
		all+=("$(field ms "$out")")
	done
	echo "  $who $label: ${all[*]} ms" >&2
	printf '%s\n' "${all[@]}" | sort -g | awk '{ v[NR] = $1 } END { printf "%.1f", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

mem() {
	if [[ $1 == mailroom ]]; then "$IB" mem -pid "$PID"; else "$IB" mem -pid "$PID" -tree; fi
}

declare -A FIG
# run WHO STATE
run() {
	local who=$1 st=$2 before after out f=$WORK/idle-$1-$2.out t0 t1
	echo "$who, $st: starting" >&2
	server_start "$who"
	"$IB" op -addr "$ADDR" -user "$ADDRESS" -pass "$PASSWORD" -op select >/dev/null || die "$who: first LOGIN+SELECT failed"
	FIG[$who-$st-fresh0]=$(fresh "$who" "fresh, none held")
	sleep 1 # let the fresh clients' processes (Dovecot) or memory settle
	before=$(mem "$who")
	t0=$EPOCHREALTIME
	"$IB" idle -addr "$ADDR" -user "$ADDRESS" -pass "$PASSWORD" -n "$N" -state "$st" -sources "$SOURCES" -parallel 32 >"$f" 2>&1 &
	IDLE_PID=$!
	while ! grep -q '^RESULT ready=' "$f"; do
		kill -0 "$IDLE_PID" 2>/dev/null || {
			wait "$IDLE_PID" || true
			IDLE_PID=
			die "$who: $N $st connections failed: $(tail -3 "$f")"
		}
		sleep 0.2
	done
	t1=$EPOCHREALTIME
	sleep 2
	after=$(mem "$who")
	FIG[$who-$st-fresh]=$(fresh "$who" "fresh, $N held")
	kill -TERM "$IDLE_PID"
	if ! wait "$IDLE_PID"; then
		IDLE_PID=
		die "$who: held connections were lost: $(tail -3 "$f")"
	fi
	IDLE_PID=
	server_stop "$who"
	FIG[$who-$st-rss]=$(awk -v a="$(field rss_kb "$before")" -v b="$(field rss_kb "$after")" -v n="$N" 'BEGIN { printf "%.1f", (b - a) / n }')
	FIG[$who-$st-pss]=$(awk -v a="$(field pss_kb "$before")" -v b="$(field pss_kb "$after")" -v n="$N" 'BEGIN { printf "%.1f", (b - a) / n }')
	FIG[$who-$st-mib]=$(awk -v a="$(field pss_kb "$before")" -v b="$(field pss_kb "$after")" 'BEGIN { printf "%.0f", (b - a) / 1024 }')
	FIG[$who-$st-open]=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
	echo "  $who $st: $before -> $after; opened in ${FIG[$who-$st-open]} s" >&2
}

start=$(date +%s)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
for st in $STATES; do
	for who in $SYSTEMS; do
		run "$who" "$st"
	done
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

echo
echo "bench/imapconns.sh: N=$N idle IMAP connections from $SOURCES loopback addresses, INBOX of $MSGS messages, R=$R"
echo "mailroom $MR_VERSION ([imap] max_connections = $MAX)"
[[ " $SYSTEMS " == *" dovecot "* ]] && echo "$DV_VERSION (imap-login high-performance mode, imap client_limit = $DOVECOT_IMAP_CLIENTS)"
echo "load average $load_start at the start, $load_end at the end; $(($(date +%s) - start)) s"
printf '%-38s | %22s | %22s\n' "" mailroom dovecot
for st in $STATES; do
	printf '%-38s | %22s | %22s\n' "$st: KiB per connection RSS/PSS" \
		"${FIG[mailroom-$st-rss]:--} / ${FIG[mailroom-$st-pss]:--}" "${FIG[dovecot-$st-rss]:--} / ${FIG[dovecot-$st-pss]:--}"
	printf '%-38s | %22s | %22s\n' "  all $N, MiB (PSS)" "${FIG[mailroom-$st-mib]:--}" "${FIG[dovecot-$st-mib]:--}"
	printf '%-38s | %22s | %22s\n' "  s to open them" "${FIG[mailroom-$st-open]:--}" "${FIG[dovecot-$st-open]:--}"
	printf '%-38s | %22s | %22s\n' "  fresh LOGIN+SELECT, ms" \
		"${FIG[mailroom-$st-fresh0]:--} -> ${FIG[mailroom-$st-fresh]:--}" "${FIG[dovecot-$st-fresh0]:--} -> ${FIG[dovecot-$st-fresh]:--}"
done
echo "(fresh: median of R with none held -> with the $N held)"
