#!/usr/bin/env bash
# SMTP (MX) benchmark: Postfix's smtp-source against mailroom's MX listener,
# and the same load through Postfix as the MX handing mail to Dovecot over
# LMTP, on the same machine and the same filesystem.
#
# Run by hand, as root (CI does not run it), from anywhere:
#
#   bench/smtp.sh                      # N=2000 messages per run, R=3 runs
#   N=5000 R=5 bench/smtp.sh
#   SESSIONS=16 RCPTS=5 bench/smtp.sh
#
# For every session count and recipient count it runs, R times and
# interleaved (mailroom, then Postfix + Dovecot, then the next setting):
#   mailroom  `mailroom serve` with an [smtp] (MX) listener on 127.0.0.1,
#             fresh data_dir each run. It answers 250 only once every
#             recipient's copy is fsynced in its Maildir.
#   postfix   a private Postfix (own config, queue and data directories,
#             smtpd on 127.0.0.1 only) as the MX for example.org, whose
#             virtual_transport is LMTP to a private Dovecot (configured as
#             bench/lmtp.sh does: LMTP only, mail_fsync = optimized), fresh
#             queue processes and mail root each run. Postfix answers 250
#             once its queue file is fsynced; Dovecot answers Postfix once
#             the Maildir copy is.
# The load is smtp-source -d -s SESSIONS -m N -l 4096 -r RCPTS: SESSIONS
# connections at once, each sending messages one after another over its own
# connection (-d), N messages in all, each with a 4096-byte body (plus the
# ~150 bytes of headers smtp-source writes) and RCPTS recipients: with -t
# user@example.org, smtp-source sends to user@ for one recipient and to
# RCPTS..2user@ and user@ for more, one Maildir each.
# Before the clock starts, each server gets a warm-up of 2*SESSIONS messages
# with the same number of sessions (so that processes are forked and caches
# warm, as on a running MX), delivered and counted before the timed run.
# Two figures per run, both in messages (not recipients) per second:
#   end-to-end  from the start of smtp-source until all N*RCPTS copies are
#               in new/ of the Maildirs (counted by bench/smtpbench, every
#               20 ms once smtp-source has exited). For mailroom this is
#               smtp-source's own time; the count only checks it.
#   accept      smtp-source's own time: when the MX has answered 250 to
#               every message. For Postfix this is its queue's intake rate,
#               not delivery.
# After each run the Maildirs must hold exactly what was sent (and Postfix's
# queue must empty, with nothing deferred or bounced) or the script fails.
# The table shows medians over the R runs and the ratios of the medians.
#
# Reading the figures: smtp-source addresses every message to the same
# RCPTS mailboxes, so all sessions deliver into one Maildir (or five): good
# for mailroom's group commit of new/, hard on Dovecot, whose LMTP processes
# take turns at each Maildir's dovecot-uidlist lock. For several recipients
# Dovecot stores one file and hardlinks it into the other Maildirs, while
# mailroom writes and fsyncs one file per recipient (each has its own
# Delivered-To: and Received: ... for <rcpt>). On ext4 without a journal,
# creating files soon after many were deleted (by Postfix's queue, or by
# anything else on the machine) costs CPU in the inode allocator
# (recently_deleted), so other work on the machine shows in the figures;
# the last column of the raw figures is the load average at each run's start.
#
# Postfix tuning (main.cf, besides the private-instance settings; see
# PF_TUNING below): in_flow_delay = 0 (no throttling of smtpd when the queue
# grows), lmtp_destination_concurrency_limit = 16 and
# lmtp_initial_destination_concurrency = 16 (up to 16 parallel LMTP
# deliveries to Dovecot from the start, instead of a slow start at 5), and
# default_destination_concurrency_limit = 16. Everything else is Postfix's
# default: one LMTP transaction per message for up to 50 recipients
# (lmtp_destination_recipient_limit), LMTP connection caching on demand.
#
# AUTH=1 adds the cost of mail authentication (issue 12), side by side. The
# MX is loaded by smtpbench send (a load generator like smtp-source) with
# one message, made once by smtpbench signed: From: bench@sender.example,
# a 4096-octet body, DKIM-signed with an RSA 2048 and an Ed25519 key whose
# records the fake DNS serves. Every message then has two signatures to
# verify, for both sides alike:
#   mr+mx      the plain mailroom MX under that load (the base)
#   mr+checks  the same mailroom MX with [checks] on for every client
#              (trusted_networks = []): SPF, both DKIM signatures and DMARC
#              for sender.example, looked up in a fake DNS server on
#              loopback (smtpbench dns), and an Authentication-Results
#              field on every copy, which must say dkim=pass twice.
#   pf+odkim   the Postfix + Dovecot pipeline with a private opendkim as
#              smtpd_milters (Mode v, verifying both signatures through
#              its libunbound and the same fake DNS; its
#              Authentication-Results must say dkim=pass twice),
#              milter_default_action = tempfail.
# It also prints the CPU per 4 KiB message of DKIM signing (RSA 2048,
# Ed25519, both, next to go-msgauth's and the bare signature's share) and
# of the checks of a message signed with both (go test -bench
# 'Sign4K|Check4K' ./mailauth/..., which counts the process's CPU time,
# the fake DNS server's included). Submission signing is run end to end
# with smtpbench send authenticating once per session, for both sides
# alike:
#   mr+submit  mailroom's submission port (AUTH PLAIN), no DKIM key
#   mr+sign    the same with one RSA 2048 key ([[dkim]], relaxed/relaxed)
#   pf+sign    Postfix + Dovecot with a second private opendkim as
#              smtpd_milters (Mode s, the same key, relaxed/relaxed, From
#              oversigned; it signs for InternalHosts 127.0.0.1, so no AUTH)
# each checked to have signed (a DKIM-Signature in every delivered copy).
# opendkim 2.11 has crashed under this load before (bench/README.md). If
# it dies or a run through it fails, the run is reported under the tables
# as FAILED, with opendkim's exit status and last output, opendkim is
# started again for the next run, and the other systems go on.
#
# Environment: N (2000), R (3), SESSIONS ("1 16"), RCPTS ("1 5"), AUTH (0),
# OPENDKIM (found on PATH or in /usr/sbin), OD_RESOLVER (nameservers, or
# unbound-conf: the ResolverConfiguration that crashes opendkim),
# BENCH_MSGS (2000, for the CPU benchmarks),
# BENCH_DIR (/var/tmp: where the work directory goes; must be a real disk,
# not tmpfs), KEEP=1 (keep the work directory), SMTP_SOURCE, POSTFIX,
# POSTCONF (found on PATH or in /usr/sbin), DOVECOT (/usr/sbin/dovecot),
# DOVECOT_LMTP (/usr/lib/dovecot/lmtp), DOVECOT_MAIL_USER (nobody).
set -euo pipefail
# The project's Go release (README "Quick start"), unless the caller chose.
export GOTOOLCHAIN=${GOTOOLCHAIN:-go1.27.3}

N=${N:-2000}
R=${R:-3}
SESSIONS=${SESSIONS:-"1 16"}
RCPTS=${RCPTS:-"1 5"}
BENCH_DIR=${BENCH_DIR:-/var/tmp}
SIZE=4096
DOMAIN=example.org

die() { echo "smtp.sh: $*" >&2; exit 1; }
findbin() { command -v "$1" 2>/dev/null || { [[ -x /usr/sbin/$1 ]] && echo "/usr/sbin/$1"; } || echo "/usr/sbin/$1"; }
SMTP_SOURCE=${SMTP_SOURCE:-$(findbin smtp-source)}
POSTFIX=${POSTFIX:-$(findbin postfix)}
POSTCONF=${POSTCONF:-$(findbin postconf)}
DOVECOT=${DOVECOT:-/usr/sbin/dovecot}
DOVECOT_LMTP=${DOVECOT_LMTP:-/usr/lib/dovecot/lmtp}

# --- preflight --------------------------------------------------------------
command -v go >/dev/null || die "go is not on PATH"
if [[ ! -x $SMTP_SOURCE || ! -x $POSTFIX || ! -x $POSTCONF ]]; then
	die "Postfix is missing ($SMTP_SOURCE, $POSTFIX, $POSTCONF): smtp-source is the load and Postfix the peer.
Install it with: apt-get install postfix   (as .ci/run does),
or point SMTP_SOURCE, POSTFIX and POSTCONF at its binaries."
fi
if [[ ! -x $DOVECOT || ! -x $DOVECOT_LMTP ]]; then
	die "Dovecot is missing ($DOVECOT, $DOVECOT_LMTP): it is the peer's delivery agent.
Install it with: apt-get install dovecot-core dovecot-lmtpd   (as .ci/run does),
or point DOVECOT and DOVECOT_LMTP at its binaries."
fi
[[ $(id -u) == 0 ]] || die "run it as root: a private Postfix starts as root and runs its daemons as user postfix"
for v in N R; do
	[[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer, not '${!v}'"
done
for v in $SESSIONS $RCPTS; do
	[[ $v =~ ^[1-9][0-9]*$ ]] || die "SESSIONS and RCPTS hold positive integers, not '$v'"
done

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=bench/lib.sh
source "$REPO/bench/lib.sh"
mkdir -p "$BENCH_DIR"
WORK=$(mktemp -d "$BENCH_DIR/smtpbench.XXXXXX")
chmod 711 "$WORK" # Dovecot's mail user and Postfix's daemons must reach inside
BIN=$WORK/bin
MR=$WORK/mailroom
DV=$WORK/dovecot
PF=$WORK/postfix

trap bench_cleanup EXIT # auth_cleanup joins it below
trap 'exit 130' INT TERM

warn_tmpfs

echo "building mailroom and smtpbench..." >&2
(cd "$REPO" && go build -o "$BIN/mailroom" ./cmd/mailroom && go build -o "$BIN/smtpbench" ./bench/smtpbench)
SB=$BIN/smtpbench

# --- setup ------------------------------------------------------------------
# smtp-source -t user@ -r K sends to user@, 2user@ .. Kuser@ (and some
# versions to 1user@): every one of them is an account.
maxr=0
for r in $RCPTS; do ((r > maxr)) && maxr=$r; done
users=(user)
for ((i = 1; i <= maxr; i++)); do users+=("${i}user"); done
MR_SECTION='[smtp]
listen = ["127.0.0.1:0"]
[limits]
max_connections_per_ip = 100'
echo "creating ${#users[@]} mailroom accounts..." >&2
mr_accounts "$MR_SECTION" "${users[@]}"

dovecot_init
PF_TRANSPORT=lmtp:inet:127.0.0.1:24 # replaced before each start
PF_TUNING="# Tuning for throughput of local delivery (bench/smtp.sh)
in_flow_delay = 0
default_destination_concurrency_limit = 16
lmtp_destination_concurrency_limit = 16
lmtp_initial_destination_concurrency = 16"
postfix_init
PF_VERSION=$("$POSTCONF" -c "$PF/etc" -h mail_version)

# --- AUTH=1: the checks' DNS, mailroom with checks, opendkim ------------------
AUTH=${AUTH:-0}
DNS_PID= OD_PID= OD_SIGN_PID= OD_DIR=
auth_cleanup() {
	[[ -n $DNS_PID ]] && kill -TERM "$DNS_PID" 2>/dev/null
	[[ -n $OD_PID ]] && kill -TERM "$OD_PID" 2>/dev/null
	[[ -n $OD_SIGN_PID ]] && kill -TERM "$OD_SIGN_PID" 2>/dev/null
	[[ -n $OD_DIR ]] && rm -rf "$OD_DIR"
	return 0
}
trap 'BENCH_RC=$?; auth_cleanup; bench_cleanup' EXIT
# start_opendkim verify|sign: the verifying (opendkim.conf) or signing
# (sign.conf) instance, in the foreground of a background job whose pid
# is OD_PID or OD_SIGN_PID; its output goes on in opendkim.out or
# sign.out. Core dumps are allowed, so that a crash leaves one in OD_DIR.
start_opendkim() {
	local conf=$OD_DIR/opendkim.conf out=$OD_DIR/opendkim.out sock=$OD_SOCK pid
	[[ $1 == sign ]] && conf=$OD_DIR/sign.conf out=$OD_DIR/sign.out sock=$OD_SIGN_SOCK
	rm -f "$sock"
	(
		ulimit -c unlimited 2>/dev/null
		cd "$OD_DIR" && exec "$OPENDKIM" -f -x "$conf"
	) >>"$out" 2>&1 &
	pid=$!
	if [[ $1 == sign ]]; then OD_SIGN_PID=$pid; else OD_PID=$pid; fi
	for _ in $(seq 100); do [[ -S $sock ]] && break; sleep 0.05; done
	kill -0 "$pid" 2>/dev/null || die "opendkim ($1) did not start: $(tail -5 "$out")"
}

# opendkim_alive verify|sign WHAT: if that opendkim has died, record it as
# a failure of WHAT (its exit status, 139 for SIGSEGV, its last output and
# the kernel's line on it), start it again and return 1.
opendkim_alive() {
	local pid=$OD_PID out=$OD_DIR/opendkim.out rc=0 sig=
	[[ $1 == sign ]] && pid=$OD_SIGN_PID out=$OD_DIR/sign.out
	kill -0 "$pid" 2>/dev/null && return 0
	wait "$pid" || rc=$?
	((rc > 128)) && sig=" (signal $((rc - 128)))"
	fail "$2: opendkim ($1, pid $pid) died, exit status $rc$sig; its last output: $(tail -3 "$out" | paste -sd'|')$(dmesg 2>/dev/null | grep -F "opendkim[$pid]" | tail -1 | sed 's/^/; kernel: /')"
	start_opendkim "$1"
	return 1
}

if [[ $AUTH == 1 ]]; then
	OPENDKIM=${OPENDKIM:-$(findbin opendkim)}
	[[ -x $OPENDKIM ]] || die "opendkim is missing ($OPENDKIM): apt-get install opendkim, or set OPENDKIM"
	cat >"$WORK/zone" <<EOF
sender.example. 60 IN TXT "v=spf1 ip4:127.0.0.1 -all"
_dmarc.sender.example. 60 IN TXT "v=DMARC1; p=reject"
client.bench.test. 60 IN TXT "v=spf1 ip4:127.0.0.1 -all"
EOF
	SIGNED=$WORK/signed.eml
	"$SB" signed -from bench@sender.example -t "user@$DOMAIN" -l "$SIZE" -out "$SIGNED" -zone "$WORK/zone" >/dev/null ||
		die "smtpbench signed failed"
	"$SB" dns -zone "$WORK/zone" >"$WORK/dns.out" 2>&1 &
	DNS_PID=$!
	for _ in $(seq 100); do grep -q RESULT "$WORK/dns.out" && break; sleep 0.05; done
	DNS_ADDR=$(sed -n 's/^RESULT addr=//p' "$WORK/dns.out")
	[[ -n $DNS_ADDR ]] || die "smtpbench dns did not start: $(cat "$WORK/dns.out")"
	MR_AUTH_SECTION="$MR_SECTION
[dns]
server = \"$DNS_ADDR\"
[checks]
trusted_networks = []"
	# opendkim refuses a configuration below a directory others may
	# write to (BENCH_DIR is often /var/tmp): its own under /run.
	# A unix socket, as Debian sets it up for Postfix (over TCP, delayed
	# ACKs cost Postfix 40 ms a message). Postfix's smtpd (user postfix)
	# must reach it.
	OD_DIR=$(mktemp -d /run/mrbench-opendkim.XXXXXX)
	chmod 711 "$OD_DIR"
	OD_SOCK=$OD_DIR/opendkim.sock
	# The fake DNS is named with Nameservers (libunbound's
	# ub_ctx_set_fwd, which takes addr@port), not with a
	# ResolverConfiguration file: opendkim 2.11 applies that file again
	# for every message (dkim_dns_config and libvbr's vbr_dns_config,
	# from the milter's threads), and libunbound parses it with a flex
	# lexer that is not reentrant, so concurrent sessions kill opendkim
	# ("fatal flex scanner internal error--end of buffer missed", exit
	# status 2, or a SIGSEGV): it died at 4 and 16 sessions. libunbound
	# queries a forwarder on localhost without being told.
	# OD_RESOLVER=unbound-conf brings the old setting back, to see that.
	if [[ ${OD_RESOLVER:-nameservers} == unbound-conf ]]; then
		OD_RESOLVER_LINE="ResolverConfiguration $OD_DIR/unbound.conf"
		cat >"$OD_DIR/unbound.conf" <<EOF
server:
  do-not-query-localhost: no
  module-config: "iterator"
forward-zone:
  name: "."
  forward-addr: ${DNS_ADDR%:*}@${DNS_ADDR#*:}
EOF
	else
		OD_RESOLVER_LINE="Nameservers ${DNS_ADDR%:*}@${DNS_ADDR#*:}"
	fi
	cat >"$OD_DIR/opendkim.conf" <<EOF
Syslog no
Socket local:$OD_SOCK
UMask 000
PidFile $OD_DIR/opendkim.pid
Mode v
InternalHosts 192.0.2.254
AuthservID postfix.bench.test
$OD_RESOLVER_LINE
TemporaryDirectory $OD_DIR
EOF
	start_opendkim verify
	OD_VERSION=$("$OPENDKIM" -V 2>&1 | head -1)

	# Submission signing: one RSA key made by mailroom dkim keygen, for
	# mailroom and for a second opendkim, which signs.
	"$BIN/mailroom" dkim keygen "$DOMAIN" -config "$MR/template/mailroom.toml" >"$WORK/dkim.zone" 2>/dev/null ||
		die "mailroom dkim keygen failed"
	MR_KEY=$MR/template/dkim/$DOMAIN/mailroom.key
	MR_SUBMIT_SECTION="$MR_SECTION
[submission]
listen = [\"127.0.0.1:0\"]"
	MR_SIGN_SECTION="$MR_SUBMIT_SECTION
[[dkim]]
domain = \"$DOMAIN\"
selector = \"mailroom\"
key = \"$MR_KEY\""
	install -m 600 "$MR_KEY" "$OD_DIR/sign.key"
	OD_SIGN_SOCK=$OD_DIR/sign.sock
	cat >"$OD_DIR/sign.conf" <<EOF
Syslog no
Socket local:$OD_SIGN_SOCK
UMask 000
PidFile $OD_DIR/sign.pid
Mode s
Domain $DOMAIN
Selector mailroom
KeyFile $OD_DIR/sign.key
Canonicalization relaxed/relaxed
OversignHeaders From
InternalHosts 127.0.0.1
TemporaryDirectory $OD_DIR
EOF
	start_opendkim sign
fi

# --- runs -------------------------------------------------------------------
RESULTS=$WORK/results.txt
: >"$RESULTS"

FAILURES=$WORK/failures.txt
: >"$FAILURES"

field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }

# fail MESSAGE: a run that failed, reported under the tables.
fail() {
	echo "  FAILED: $*" >&2
	echo "$*" >>"$FAILURES"
}

# soft_die MESSAGE: die, or with SOFT=1 fail and return 1 (the runs
# through opendkim, which may crash, do not stop the script).
soft_die() {
	[[ ${SOFT:-} == 1 ]] || die "$@"
	fail "$@"
	return 1
}
load1() { cut -d' ' -f1 /proc/loadavg; }

# source_cmd ADDR SESSIONS MESSAGES RCPTS: the load generator's command line.
# With SEND set, smtpbench send instead (SEND_AUTH: its -auth flag, or
# empty), from user@$DOMAIN (the account it authenticates as, whose
# domain the signers sign for); with SEND_MSG, smtpbench send of that
# signed message from bench@sender.example.
source_cmd() {
	if [[ -n ${SEND_MSG:-} ]]; then
		echo "$SB" send -s "$2" -m "$3" -r "$4" -f bench@sender.example -t "user@$DOMAIN" -message "$SEND_MSG" "$1"
		return
	fi
	if [[ -n ${SEND:-} ]]; then
		echo "$SB" send -s "$2" -m "$3" -l "$SIZE" -r "$4" -f "user@$DOMAIN" -t "user@$DOMAIN" ${SEND_AUTH:-} "$1"
		return
	fi
	echo "$SMTP_SOURCE" -d -s "$2" -m "$3" -l "$SIZE" -r "$4" -f "bench@sender.example" -t "user@$DOMAIN" -M client.bench.test "$1"
}

# load WHO ADDR MAILROOT SESSIONS RCPTS REP: warm-up, then the timed run.
load() {
	local who=$1 addr=$2 root=$3 s=$4 r=$5 rep=$6 warm out l
	warm=$((2 * s))
	# shellcheck disable=SC2046
	"$SB" run -dir "$root" -domain "$DOMAIN" -expect "$warm" -- $(source_cmd "$addr" "$s" "$warm" 1) >/dev/null ||
		{ soft_die "$who: warm-up failed ($s sessions)" || return 1; }
	[[ $who == p* ]] && postfix_drained
	l=$(load1)
	# shellcheck disable=SC2046
	out=$("$SB" run -dir "$root" -domain "$DOMAIN" -expect $((warm + N * r)) -messages "$N" -- $(source_cmd "$addr" "$s" "$N" "$r")) ||
		{ soft_die "$who: run failed ($s sessions, $r recipients)" || return 1; }
	check "$root" "$who" $((warm + N * r)) || return 1
	echo "$s $r $who $rep $(field rate "$out") $(field accept_rate "$out") $(field e2e_secs "$out") $(field accept_secs "$out") $l" >>"$RESULTS"
	printf '  %-8s %2s sessions %s rcpts  run %s: %7s msg/s end-to-end, %7s msg/s accepted  (%ss, %ss; load %s)\n' \
		"$who" "$s" "$r" "$rep" "$(field rate "$out")" "$(field accept_rate "$out")" \
		"$(field e2e_secs "$out")" "$(field accept_secs "$out")" "$l" >&2
}

# check ROOT WHO FILES: exactly FILES messages in new/, none in tmp/.
check() {
	local c new tmp
	c=$("$SB" count -dir "$1" -domain "$DOMAIN")
	new=$(field new "$c") tmp=$(field tmp "$c")
	if [[ $new != "$3" || $tmp != 0 ]]; then
		soft_die "$2: expected $3 messages in new/, found $new (and $tmp in tmp/): $c" || return 1
	fi
}

# postfix_drained waits until Postfix's queue is empty (the queue file goes
# once Dovecot's reply is in, a moment after the copy is in new/).
postfix_drained() {
	for _ in $(seq 200); do
		[[ $(postfix_queue_files) == 0 ]] && return 0
		sleep 0.05
	done
	die "Postfix's queue did not empty: $(postfix_queue_files) messages left; $(grep -E 'status=(deferred|bounced)' "$PF/maillog" | tail -3)"
}

run_mailroom() {
	local s=$1 r=$2 rep=$3 data=$MR/$1-$2-$3
	start_mailroom "$data" "$MR_SECTION" smtp
	load mailroom "$MR_ADDR" "$data/mail" "$s" "$r" "$rep"
	stop_mailroom
}

# run_mailroom_mx WHO SECTION S R REP: the MX loaded with the signed
# message; mr+checks must have verified both signatures in every copy.
run_mailroom_mx() {
	local who=$1 section=$2 s=$3 r=$4 rep=$5 data=$MR/$1-$3-$4-$5 u
	start_mailroom "$data" "$section" smtp
	SEND_MSG=$SIGNED load "$who" "$MR_ADDR" "$data/mail" "$s" "$r" "$rep"
	if [[ $who == mr+checks ]]; then
		# The checks' record in the log is at debug level; the field
		# they add to every copy shows that they ran and verified.
		u=$(unverified "$data/mail/$DOMAIN" '^Authentication-Results: bench\.test;')
		[[ -z $u ]] || die "mr+checks: a copy without dkim=pass twice in our Authentication-Results: $u: $(tail -3 "$data/serve.log")"
	fi
	stop_mailroom
}

# unverified ROOT FIELD: the first delivered copy below ROOT whose header
# field matching FIELD (with its continuation lines) does not say
# dkim=pass twice (both signatures), if any. One awk reads them all.
unverified() {
	find "$1" -type f \( -path '*/Maildir/new/*' -o -path '*/Maildir/cur/*' \) -print0 |
		xargs -0 -r awk -v re="$2" '
			function judge() { if (f != "" && n != 2) { print f; bad = 1; exit } }
			FNR == 1 { judge(); f = FILENAME; n = 0; on = 0 }
			/^\r?$/ { nextfile }
			$0 ~ re { on = 1; n += gsub(/dkim=pass/, "&"); next }
			on && /^[ \t]/ { n += gsub(/dkim=pass/, "&"); next }
			{ on = 0 }
			END { if (!bad) judge() }' | head -1 || true
}

# unsigned ROOT: the first delivered copy below ROOT without a
# DKIM-Signature field, if any.
unsigned() { grep -rLs '^DKIM-Signature:' "$1" | grep -m1 -E '/Maildir/(new|cur)/' || true; }

# run_mailroom_submit WHO SECTION S R REP: smtpbench send to the
# submission port, authenticated; mr+sign must have signed every copy.
run_mailroom_submit() {
	local who=$1 section=$2 s=$3 r=$4 rep=$5 data=$MR/$1-$3-$4-$5 u
	start_mailroom "$data" "$section" submission
	SEND=1 SEND_AUTH="-auth user@$DOMAIN:benchpassword" load "$who" "$MR_ADDR" "$data/mail" "$s" "$r" "$rep"
	if [[ $who == mr+sign ]]; then
		u=$(unsigned "$data/mail/$DOMAIN")
		[[ -z $u ]] || die "mr+sign: a copy without a DKIM signature: $u"
	fi
	stop_mailroom
}

# run_postfix_sign is run_postfix with the signing opendkim, loaded by
# smtpbench send; every copy must be signed. A failed run (opendkim
# dead, or mail refused) is reported and the script goes on.
run_postfix_sign() {
	local u ok=1
	"$POSTCONF" -c "$PF/etc" -e "smtpd_milters = unix:$OD_SIGN_SOCK" "milter_default_action = tempfail"
	SOFT=1 SEND=1 SEND_AUTH= PF_WHO=pf+sign run_postfix "$@" || ok=
	"$POSTCONF" -c "$PF/etc" -X smtpd_milters milter_default_action
	opendkim_alive sign "pf+sign, $1 sessions, $2 rcpts, run $3" || ok=
	[[ -n $ok ]] || return 0
	u=$(unsigned "$DV/$1-$2-$3-pf+sign/$DOMAIN")
	[[ -z $u ]] || die "pf+sign: a copy without a DKIM signature: $u"
}

# run_postfix_odkim is run_postfix with opendkim as smtpd_milters, loaded
# with the signed message; opendkim must have verified every copy.
run_postfix_odkim() {
	local u ok=1
	"$POSTCONF" -c "$PF/etc" -e "smtpd_milters = unix:$OD_SOCK" "milter_default_action = tempfail"
	SOFT=1 SEND_MSG=$SIGNED PF_WHO=pf+odkim run_postfix "$@" || ok=
	"$POSTCONF" -c "$PF/etc" -X smtpd_milters milter_default_action
	opendkim_alive verify "pf+odkim, $1 sessions, $2 rcpts, run $3" || ok=
	[[ -n $ok ]] || return 0
	u=$(unverified "$DV/$1-$2-$3-pf+odkim/$DOMAIN" '^Authentication-Results: postfix\.bench\.test;')
	[[ -z $u ]] || die "pf+odkim: a copy without dkim=pass twice in opendkim's Authentication-Results: $u"
}

run_postfix() {
	local s=$1 r=$2 rep=$3 mail=$DV/$1-$2-$3-${PF_WHO:-plain} port ok=1
	port=$("$SB" port)
	start_dovecot "$mail" "$port"
	"$SB" wait -addr "$DV_ADDR" || die "Dovecot is not answering on $DV_ADDR: $(tail -5 "$DV/dovecot.log")"
	"$POSTCONF" -c "$PF/etc" -e "virtual_transport = lmtp:inet:$DV_ADDR"
	start_postfix
	"$SB" wait -addr "$PF_ADDR" || die "Postfix's smtpd is not answering on $PF_ADDR: $(tail -5 "$PF/maillog")"
	load "${PF_WHO:-postfix}" "$PF_ADDR" "$mail" "$s" "$r" "$rep" || ok=
	postfix_drained
	stop_postfix
	stop_dovecot
	[[ -n $ok ]]
}

start=$(date +%s)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
for ((rep = 1; rep <= R; rep++)); do
	echo "run $rep of $R" >&2
	for s in $SESSIONS; do
		for r in $RCPTS; do
			run_mailroom "$s" "$r" "$rep"
			run_postfix "$s" "$r" "$rep"
			if [[ $AUTH == 1 ]]; then
				run_mailroom_mx mr+mx "$MR_SECTION" "$s" "$r" "$rep"
				run_mailroom_mx mr+checks "$MR_AUTH_SECTION" "$s" "$r" "$rep"
				run_postfix_odkim "$s" "$r" "$rep"
				run_mailroom_submit mr+submit "$MR_SUBMIT_SECTION" "$s" "$r" "$rep"
				run_mailroom_submit mr+sign "$MR_SIGN_SECTION" "$s" "$r" "$rep"
				run_postfix_sign "$s" "$r" "$rep"
			fi
		done
	done
done
elapsed=$(($(date +%s) - start))
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
if grep -qE 'status=(deferred|bounced)' "$PF/maillog"; then
	die "Postfix deferred or bounced mail: $(grep -E 'status=(deferred|bounced)' "$PF/maillog" | tail -3)"
fi

echo
echo "SMTP (MX) benchmark: smtp-source -d, $N messages per run with a $SIZE-byte body, $R runs per figure, medians"
echo "(msg/s counts messages, not recipients; spread = (max-min)/median over the runs; paired = median of the per-run ratios)"
echo "host: $(nproc) CPUs, $(uname -sr); filesystem: $fstype on $(df --output=source "$WORK" | tail -1) ($WORK)"
echo "load average: $load_start at the start, $load_end at the end"
echo "mailroom: $(cd "$REPO" && git describe --always --dirty 2>/dev/null || echo '?'), $(go version | awk '{print $3}'); MX listener; 250 after every recipient's copy is fsynced (file, rename, new/)"
echo "postfix:  $PF_VERSION as MX, virtual_transport = lmtp:inet to Dovecot; 250 after its queue file is fsynced;"
echo "          $(echo "$PF_TUNING" | grep -v '^#' | paste -sd';' | sed 's/;/; /g')"
echo "dovecot:  $DV_VERSION, LMTP, mail_fsync = optimized: fsync file, rename, fdatasync new/ before 250; mail uid $DV_USER"
echo
printf '%8s | %5s | %15s %6s | %25s %6s | %15s | %13s | %22s %6s\n' sessions rcpts "mailroom msg/s" "" "postfix+dovecot msg/s e2e" "" "mailroom/pf+dv" "(paired runs)" "postfix accept msg/s" ""
verdict=met
for s in $SESSIONS; do
	for r in $RCPTS; do
		m=$(median "$s" "$r" mailroom)
		p=$(median "$s" "$r" postfix)
		a=$(median "$s" "$r" postfix 6)
		printf '%8s | %5s | %15.0f %6s | %25.0f %6s | %14sx | %12sx | %22.0f %6s\n' "$s" "$r" \
			"$m" "($(spread "$s" "$r" mailroom))" "$p" "($(spread "$s" "$r" postfix))" \
			"$(ratio "$m" "$p")" "$(paired "$s" "$r" postfix)" "$a" "($(spread "$s" "$r" postfix 6))"
		awk -v a="$m" -v b="$p" 'BEGIN { exit !(a >= b) }' || verdict="NOT met"
	done
done
echo "goal (mailroom >= Postfix + Dovecot end-to-end, every row): $verdict"
if [[ $AUTH == 1 ]]; then
	echo
	echo "with mail authentication: mailroom's MX checking SPF + DKIM (an RSA 2048 and an Ed25519 signature) + DMARC (fake DNS"
	echo "on loopback, $DNS_ADDR), against Postfix + $OD_VERSION (smtpd_milters, Mode v, verifying both) + Dovecot;"
	echo "load: smtpbench send of one signed message ($(wc -c <"$SIGNED") octets) from bench@sender.example; end to end, msg/s medians"
	# compare BASE WITH PEER, and the column heads of each and of the two
	# ratios: a row per sessions and rcpts, then whether WITH was ahead of
	# PEER in every row.
	compare() {
		local base=$1 with=$2 peer=$3 b w p verdict=met
		printf '%8s | %5s | %15s %6s | %15s %6s | %12s | %22s %6s | %14s\n' sessions rcpts "$4" "" "$5" "" "$6" "$7" "" "$8"
		for s in $SESSIONS; do
			for r in $RCPTS; do
				b=$(median "$s" "$r" "$base") w=$(median "$s" "$r" "$with") p=$(median "$s" "$r" "$peer")
				printf '%8s | %5s | %15.0f %6s | %15.0f %6s | %11sx | %22.0f %6s | %13sx\n' "$s" "$r" \
					"$b" "($(spread "$s" "$r" "$base"))" "$w" "($(spread "$s" "$r" "$with"))" "$(ratio "$w" "$b")" \
					"$p" "($(spread "$s" "$r" "$peer"))" "$(ratio "$w" "$p")"
				awk -v a="$w" -v b="$p" 'BEGIN { exit !(a >= b) }' || verdict="NOT met"
			done
		done
		echo "goal ($with >= $peer end-to-end, every row): $verdict"
	}
	compare mr+mx mr+checks pf+odkim "mailroom plain" mr+checks checks/plain pf+opendkim+dovecot mr+checks/pf
	echo
	echo "with DKIM signing on submission: smtpbench send (mailroom: AUTH PLAIN once per session), RSA 2048, relaxed/relaxed,"
	echo "against Postfix + $OD_VERSION (smtpd_milters, Mode s, the same key) + Dovecot, end to end, msg/s medians"
	compare mr+submit mr+sign pf+sign "mr submit" mr+sign sign/submit pf+opendkim-sign+dv mr+sign/pf
	echo
	echo "CPU per 4 KiB message (go test -bench, cpu-us/op = process CPU time / messages; goal: under 1000):"
	(cd "$REPO" && go test -run XXX -bench 'Sign4K|Check4K' -benchtime "${BENCH_MSGS:-2000}x" ./mailauth/ ./mailauth/dkim/) |
		awk '/^Benchmark/ { for (i = 1; i <= NF; i++) if ($(i) == "cpu-us/op") printf "  %-40s %8s us CPU, %10s ns wall\n", $1, $(i-1), $3 }'
	echo "  (go-msgauth/ALGO: go-msgauth's Signer handed the whole message in one Write; crypto/ALGO: the bare signature."
	echo "   Both are floors measured in the same run, not goals.)"
fi
if [[ -s $FAILURES ]]; then
	echo
	echo "FAILED runs (not in the medians above):"
	sed 's/^/  /' "$FAILURES"
fi
echo
echo "(whole run: ${elapsed}s; raw figures: sessions rcpts system run e2e_msg/s accept_msg/s e2e_s accept_s load1_at_start)"
sort -k1,1n -k2,2n -k3,3 -k4,4n "$RESULTS" | sed 's/^/  /'
