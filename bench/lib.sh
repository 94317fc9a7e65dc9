# Shell functions shared by the benchmarks under bench/: private instances
# of mailroom, Dovecot (LMTP only) and Postfix, each on loopback, at ports
# picked by binding 127.0.0.1:0, with every file under a work directory.
# Source it after setting the variables each section names. The Dovecot
# configuration is the one bench/lmtp.sh has always used.
#
# Common inputs: WORK (work directory), BIN (built binaries), DOMAIN, and a
# die function.

# --- mailroom ---------------------------------------------------------------
# Inputs: MR (its directory; MR/template holds the accounts' database).
MR_PID=

# mr_config DATA_DIR SECTION: writes DATA_DIR/mailroom.toml with the given
# listener section (e.g. '[smtp]' plus its listen line) appended.
mr_config() {
	cat >"$1/mailroom.toml" <<EOF
hostname = "bench.test"
data_dir = "$1"
domains = ["$DOMAIN"]
$2
EOF
}

# mr_accounts SECTION USER...: creates the accounts in MR/template (password
# "benchpassword"), with a config that has SECTION.
mr_accounts() {
	local section=$1 u
	shift
	mkdir -p "$MR/template"
	mr_config "$MR/template" "$section"
	for u in "$@"; do
		echo "benchpassword" | "$BIN/mailroom" user add "$u@$DOMAIN" -config "$MR/template/mailroom.toml" >/dev/null ||
			die "mailroom user add $u@$DOMAIN failed"
	done
	[[ -f $MR/template/mailroom.db ]] || die "mailroom user add left no $MR/template/mailroom.db"
}

# start_mailroom DATA_DIR SECTION PROTO: a fresh data_dir holding a copy of
# the template database; sets MR_PID and MR_ADDR (the first PROTO listener
# in the log).
start_mailroom() {
	local data=$1 section=$2 proto=$3 log=$1/serve.log
	mkdir -p "$data"
	cp "$MR/template/mailroom.db" "$data/"
	mr_config "$data" "$section"
	: >"$log"
	"$BIN/mailroom" serve -config "$data/mailroom.toml" 2>>"$log" &
	MR_PID=$!
	for _ in $(seq 200); do
		grep -q 'msg="mailroom started"' "$log" && break
		kill -0 "$MR_PID" 2>/dev/null || die "mailroom serve exited: $(tail -5 "$log")"
		sleep 0.05
	done
	grep -q 'msg="mailroom started"' "$log" || die "mailroom did not start: $(tail -5 "$log")"
	MR_ADDR=$(grep -o "proto=$proto addr=127\.0\.0\.1:[0-9]*" "$log" | head -1 | sed 's/.*addr=//')
	[[ -n $MR_ADDR ]] || die "no $proto address in mailroom's log: $(tail -5 "$log")"
}

stop_mailroom() {
	if [[ -n $MR_PID ]]; then
		kill -TERM "$MR_PID" 2>/dev/null || true
		wait "$MR_PID" 2>/dev/null || true
		MR_PID=
	fi
}

# --- dovecot ----------------------------------------------------------------
# Inputs: DOVECOT (the binary), DV (its directory), DOVECOT_MAIL_USER.
# dovecot_init sets DV_USER, DV_UID, DV_GID, DV_SERVICE_USERS, DV_VERSION.
DV_CONF=

dovecot_init() {
	mkdir -p "$DV"
	chmod 711 "$DV"
	if [[ $(id -u) == 0 ]]; then
		# Dovecot refuses to deliver as uid 0 ("userdb returned 0 as uid"),
		# so its mail belongs to an unprivileged user; its own processes
		# keep the Debian defaults (dovecot, dovenull).
		DV_USER=${DOVECOT_MAIL_USER:-nobody}
		DV_UID=$(id -u "$DV_USER") && DV_GID=$(id -g "$DV_USER") || die "no user $DV_USER for Dovecot's mail"
		DV_SERVICE_USERS=""
	else
		DV_USER=$(id -un) DV_UID=$(id -u) DV_GID=$(id -g)
		DV_SERVICE_USERS="default_internal_user = $DV_USER
default_internal_group = $(id -gn)
default_login_user = $DV_USER"
	fi
	DV_VERSION=$("$DOVECOT" --version)
}

# start_dovecot MAIL_ROOT PORT: a private Dovecot, LMTP on 127.0.0.1:PORT,
# storing into MAIL_ROOT/<domain>/<user>/Maildir; sets DV_ADDR. The caller
# then waits for it to answer.
start_dovecot() {
	local mail=$1 port=$2
	mkdir -p "$mail" "$DV/run" "$DV/state"
	[[ $(id -u) == 0 ]] && chown "$DV_UID:$DV_GID" "$mail"
	DV_CONF=$DV/dovecot.conf
	cat >"$DV_CONF" <<EOF
# Private Dovecot for a bench/ benchmark: LMTP only, loopback only.
instance_name = bench-$$
base_dir = $DV/run
state_dir = $DV/state
protocols = lmtp
listen = 127.0.0.1
ssl = no
log_path = $DV/dovecot.log
# optimized (the default): the message file is fsynced, renamed into new/,
# and new/ is fdatasynced before LMTP answers 250; the same promise as
# mailroom's. Index files are not fsynced.
mail_fsync = optimized
mail_location = ${DV_MAIL_LOCATION:-maildir:$mail/%d/%n/Maildir}
first_valid_uid = $DV_UID
first_valid_gid = $DV_GID
$DV_SERVICE_USERS
passdb {
  driver = static
  args = nopassword=y
}
userdb {
  driver = static
  args = uid=$DV_UID gid=$DV_GID home=$mail/%d/%n allow_all_users=yes
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = $port
  }
  unix_listener lmtp {
    mode = 0600
  }
}
EOF
	"$DOVECOT" -c "$DV_CONF" 2>>"$DV/start.log" || die "Dovecot did not start: $(tail -5 "$DV/start.log" "$DV/dovecot.log" 2>/dev/null)"
	DV_ADDR=127.0.0.1:$port
}

stop_dovecot() {
	if [[ -n $DV_CONF ]]; then
		local pidfile=$DV/run/master.pid pid=
		[[ -f $pidfile ]] && pid=$(<"$pidfile")
		"$DOVECOT" -c "$DV_CONF" stop 2>/dev/null || true
		# `dovecot stop` only signals the master; wait until it is gone.
		if [[ -n $pid ]]; then
			for _ in $(seq 100); do
				kill -0 "$pid" 2>/dev/null || break
				sleep 0.1
			done
			kill -0 "$pid" 2>/dev/null && die "Dovecot master $pid did not stop"
		fi
		DV_CONF=
	fi
}

# --- mailroom and dovecot as IMAP servers (bench/imap.sh) -------------------
# mr_serve DATA_DIR SECTION PROTO: starts mailroom on DATA_DIR as it is,
# keeping its database (so its index); otherwise as start_mailroom.
mr_serve() {
	local data=$1 section=$2 proto=$3 log=$1/serve.log
	mr_config "$data" "$section"
	: >"$log"
	"$BIN/mailroom" serve -config "$data/mailroom.toml" 2>>"$log" &
	MR_PID=$!
	for _ in $(seq 600); do
		grep -q 'msg="mailroom started"' "$log" && break
		kill -0 "$MR_PID" 2>/dev/null || die "mailroom serve exited: $(tail -5 "$log")"
		sleep 0.05
	done
	grep -q 'msg="mailroom started"' "$log" || die "mailroom did not start: $(tail -5 "$log")"
	MR_ADDR=$(grep -o "proto=$proto addr=127\.0\.0\.1:[0-9]*" "$log" | head -1 | sed 's/.*addr=//')
	[[ -n $MR_ADDR ]] || die "no $proto address in mailroom's log: $(tail -5 "$log")"
}

# start_dovecot_imap MAIL_ROOT PORT PASSWD_FILE: a private Dovecot, IMAP
# only on 127.0.0.1:PORT, run in the foreground (-F) as a child of the
# script (DV_PID), for the users of PASSWD_FILE (Dovecot's passwd-file:
# "user@domain:{SCHEME}hash::::::") whose mail is MAIL_ROOT/<domain>/<user>/
# Maildir (owned by DV_UID); sets DV_ADDR. No authentication cache, as
# Dovecot's default. Limits are raised for 1,000
# and more connections from one user and address; the rest is Debian's
# default (one imap-login process per connection before login, one imap
# process per connection after it). The caller then waits for it to answer.
DV_PID=

start_dovecot_imap() {
	local mail=$1 port=$2 passwd=$3
	mkdir -p "$DV/run" "$DV/state"
	DV_CONF=$DV/dovecot-imap.conf
	cat >"$DV_CONF" <<EOF
# Private Dovecot for bench/imap.sh: IMAP only, loopback only.
instance_name = benchimap-$$
base_dir = $DV/run
state_dir = $DV/state
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
log_path = $DV/dovecot.log
mail_location = ${DV_MAIL_LOCATION:-maildir:$mail/%d/%n/Maildir}
first_valid_uid = $DV_UID
first_valid_gid = $DV_GID
$DV_SERVICE_USERS
# Room for the idle-connection test (defaults: 100 processes per service,
# 1000 clients per service, 10 connections per user and address).
default_process_limit = 2100
default_client_limit = 10000
protocol imap {
  mail_max_userip_connections = 5000
}
passdb {
  driver = passwd-file
  args = $passwd
}
userdb {
  driver = static
  args = uid=$DV_UID gid=$DV_GID home=$mail/%d/%n
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $port
  }
  inet_listener imaps {
    port = 0
  }
}
EOF
	"$DOVECOT" -F -c "$DV_CONF" 2>>"$DV/start.log" &
	DV_PID=$!
	DV_ADDR=127.0.0.1:$port
}

# stop_dovecot_imap stops the Dovecot of start_dovecot_imap and waits for
# its master (which ends its services first).
stop_dovecot_imap() {
	if [[ -n $DV_PID ]]; then
		kill -TERM "$DV_PID" 2>/dev/null || true
		wait "$DV_PID" 2>/dev/null || true
		DV_PID= DV_CONF=
	fi
}

# drop_page_cache writes back and drops the page cache, dentries and
# inodes (root only, and not in every container): fails if it cannot.
drop_page_cache() {
	sync && echo 3 2>/dev/null >/proc/sys/vm/drop_caches
}

# --- postfix ----------------------------------------------------------------
# A private Postfix as test/e2e/postfix_test.go sets it up: its own
# config_directory, queue_directory and data_directory under PF, its log in
# PF/maillog, smtpd on 127.0.0.1 only, no chroot. It must be started as
# root (its daemons run as user postfix). Inputs: POSTFIX (the binary), PF
# (its directory), PF_TRANSPORT (virtual_transport for DOMAIN), PF_TUNING
# (main.cf lines appended last, so they win).
PF_UP=
PF_CHECKED=

postfix_init() {
	[[ $(id -u) == 0 ]] || die "a private Postfix must be started as root (its daemons run as user postfix)"
	id postfix >/dev/null 2>&1 || die "postfix is installed but user postfix is missing"
	mkdir -p "$PF/etc" "$PF/q" "$PF/data"
	chmod 755 "$PF" "$PF/etc" "$PF/q" "$PF/data"
	chown postfix "$PF/data"
	cat >"$PF/etc/main.cf" <<EOF
compatibility_level = 3.6
config_directory = $PF/etc
queue_directory = $PF/q
data_directory = $PF/data
mail_owner = postfix
myhostname = postfix.bench.test
mydomain = bench.test
myorigin = postfix.bench.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
# As an MX: mail for the local domain from anyone, nothing else.
smtpd_relay_restrictions = reject_unauth_destination
smtpd_recipient_restrictions = reject_unauth_destination
alias_maps =
alias_database =
local_recipient_maps =
virtual_mailbox_domains = $DOMAIN
virtual_transport = $PF_TRANSPORT
maillog_file = $PF/maillog
maillog_file_prefixes = $PF
smtputf8_enable = yes
smtp_dns_support_level = disabled
lmtp_dns_support_level = disabled
smtp_host_lookup = native
lmtp_host_lookup = native
biff = no
$PF_TUNING
EOF
}

# postfix_procs lists the live processes of the instance: those whose
# working directory is inside PF (every Postfix daemon chdirs to its
# queue_directory).
postfix_procs() {
	local d cwd
	for d in /proc/[0-9]*; do
		cwd=$(readlink "$d/cwd" 2>/dev/null) || continue
		[[ $cwd == "$PF" || $cwd == "$PF"/* ]] && echo "${d#/proc/}"
	done
	return 0
}

# start_postfix: writes master.cf with smtpd on a free port and starts the
# instance; sets PF_ADDR. The caller then waits for smtpd to answer.
start_postfix() {
	local attempt port out
	for attempt in 1 2 3; do
		port=$("$BIN/smtpbench" port)
		cat >"$PF/etc/master.cf" <<EOF
127.0.0.1:$port inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
smtp      unix  -       -       n       -       -       smtp
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF
		if [[ -z $PF_CHECKED ]]; then
			# check creates the queue directories with their owners.
			out=$("$POSTFIX" -c "$PF/etc" check 2>&1) || die "postfix check: $out $(tail -5 "$PF/maillog" 2>/dev/null)"
			PF_CHECKED=1
		fi
		PF_UP=1
		if out=$("$POSTFIX" -c "$PF/etc" start 2>&1); then
			PF_ADDR=127.0.0.1:$port
			return 0
		fi
		# Someone took the port meanwhile: try another.
		stop_postfix
	done
	die "postfix start: $out $(tail -5 "$PF/maillog" 2>/dev/null)"
}

# stop_postfix stops the instance and waits for its processes to go,
# killing (by pid) any that stay.
stop_postfix() {
	[[ -n $PF_UP ]] || return 0
	PF_UP=
	[[ -n $(postfix_procs) ]] || return 0
	"$POSTFIX" -c "$PF/etc" stop >/dev/null 2>&1 || true
	local left
	for _ in $(seq 100); do
		left=$(postfix_procs)
		[[ -z $left ]] && return 0
		sleep 0.1
	done
	echo "postfix: killing processes left after postfix stop: $left" >&2
	for pid in $left; do kill -KILL "$pid" 2>/dev/null || true; done
}

# postfix_queue_files counts the messages in the instance's queue.
postfix_queue_files() {
	local d n=0
	for d in maildrop incoming active deferred hold; do
		[[ -d $PF/q/$d ]] && n=$((n + $(find "$PF/q/$d" -type f | wc -l)))
	done
	echo "$n"
}

# --- CPU and file system ----------------------------------------------------

# cpu_ticks PID: user + system clock ticks (getconf CLK_TCK a second) of PID
# and every process under it, with the children they have reaped.
cpu_ticks() {
	local all=$1 frontier=$1 kids p
	while :; do
		kids=$(for p in $frontier; do cat "/proc/$p/task/"*/children 2>/dev/null; done | xargs)
		[[ -z $kids ]] && break
		all="$all $kids" frontier=$kids
	done
	for p in $all; do
		# utime stime cutime cstime: the 12th to 15th fields after
		# the command name.
		sed 's/.*) //' "/proc/$p/stat" 2>/dev/null | awk '{ print $12 + $13 + $14 + $15 }'
	done | awk '{ t += $1 } END { print t + 0 }'
}

# us_per TICKS0 TICKS1 N: CPU microseconds per item.
us_per() { awk -v a="$1" -v b="$2" -v hz="$(getconf CLK_TCK)" -v n="$3" 'BEGIN { printf "%.0f", (b - a) * 1e6 / hz / n }'; }

# bench_loopfs: with LOOPFS=SIZE (such as 8G), the rest of the run's files
# go to a fresh ext4 without a journal (as the project's VM's root file
# system) on a loop device backed by a file in WORK, and WORK names its
# mount point (the outer directory stays in WORK_OUTER). On a file system
# that other work shares, ext4 without a journal skips, at every file
# create, each free inode of the group that was freed in the last 5 s (300 s
# while the inode table's block is dirty), and the other engineers' builds
# free thousands: perf showed 31 % of mailroom's CPU in find_inode_bit and
# recently_deleted there, for both servers alike. Needs root.
LOOP_MNT=
WORK_OUTER=
bench_loopfs() {
	[[ -n ${LOOPFS:-} ]] || return 0
	[[ $(id -u) == 0 ]] || die "LOOPFS needs root (mount)"
	WORK_OUTER=$WORK
	truncate -s "$LOOPFS" "$WORK/fs.img"
	# One inode per 8 KiB (mkfs's default is 16): lmtp.sh's filled folders
	# and a run's deliveries need about a million on 8G.
	mkfs.ext4 -q -F -O ^has_journal -i 8192 "$WORK/fs.img" || die "mkfs.ext4 failed on $WORK/fs.img"
	mkdir "$WORK/fs"
	mount -o loop "$WORK/fs.img" "$WORK/fs" || die "could not mount $WORK/fs.img"
	LOOP_MNT=$WORK/fs
	chmod 711 "$LOOP_MNT"
	WORK=$LOOP_MNT
}

# --- results ----------------------------------------------------------------
# RESULTS holds one line per run: KEY1 KEY2 WHO RUN MSG/S [more columns].

# median KEY1 KEY2 WHO [COLUMN]: the median of COLUMN (default 5) over runs.
median() {
	awk -v a="$1" -v b="$2" -v w="$3" -v c="${4:-5}" '$1 == a && $2 == b && $3 == w { print $c }' "$RESULTS" |
		sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# spread KEY1 KEY2 WHO [COLUMN]: (max-min)/median in percent.
spread() {
	awk -v a="$1" -v b="$2" -v w="$3" -v c="${4:-5}" '$1 == a && $2 == b && $3 == w { print $c }' "$RESULTS" |
		sort -g | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.0f%%", m ? 100 * (v[NR] - v[1]) / m : 0 }'
}

# paired KEY1 KEY2 PEER: median over runs of mailroom/PEER within the same
# run, which cancels slow drifts of the machine.
paired() {
	awk -v a="$1" -v b="$2" -v p="$3" '$1 == a && $2 == b && $3 == "mailroom" { m[$4] = $5 } $1 == a && $2 == b && $3 == p { q[$4] = $5 }
		END { for (r in m) if (q[r] > 0) print m[r] / q[r] }' "$RESULTS" |
		sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else printf "%.2f", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

# --- work directory ---------------------------------------------------------

# bench_cleanup stops every instance and removes WORK, unless KEEP=1 or the
# script failed. Install it with: trap bench_cleanup EXIT
bench_cleanup() {
	local rc=${BENCH_RC:-$?} # BENCH_RC: the status, when another cleanup ran first
	stop_mailroom
	stop_postfix
	stop_dovecot
	if [[ ${KEEP:-} == 1 || $rc -ne 0 ]]; then
		echo "work directory kept: $WORK${LOOP_MNT:+ (mounted from $WORK_OUTER/fs.img)}" >&2
	elif [[ -n $LOOP_MNT ]]; then
		umount "$LOOP_MNT" && rm -rf "$WORK_OUTER"
	else
		rm -rf "$WORK"
	fi
}

# warn_tmpfs warns when WORK is on a file system where fsync is free, and
# sets fstype.
warn_tmpfs() {
	fstype=$(df --output=fstype "$WORK" | tail -1)
	if [[ $fstype == tmpfs || $fstype == ramfs ]]; then
		echo "WARNING: $WORK is on $fstype: fsync costs nothing there; set BENCH_DIR to a directory on a disk" >&2
	fi
}
