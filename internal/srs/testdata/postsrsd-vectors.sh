#!/bin/bash
# Regenerates the postsrsd vectors in ../postsrsd_test.go: runs Debian's
# postsrsd (1.10, `apt-get install postsrsd faketime`; stop or mask the
# system service it installs) under faketime on 127.0.0.1:20001/20002 and
# prints one Go table row per request. Not used by the tests at run time.
#
# usage: postsrsd-vectors.sh "YYYY-MM-DD HH:MM:SS UTC" forward|reverse ADDRESS...
set -euo pipefail
when=$1 dir=$2
shift 2
tmp=$(mktemp -d)
stop() {
	# faketime runs postsrsd as a child: stop the daemon itself, by its pid file.
	[ -s "$tmp/pid" ] && kill "$(cat "$tmp/pid")" 2>/dev/null
	wait 2>/dev/null || true
	rm -rf "$tmp"
}
trap stop EXIT
# The first line signs; further lines are old secrets, still accepted on
# reverse. SECRETS overrides them (lines separated by \n).
printf '%b\n' "${SECRETS:-mailroom-vector-secret\nold-vector-secret}" >"$tmp/secret"
faketime "$when" postsrsd -l 127.0.0.1 -f 20001 -r 20002 -t 5 \
	-s "$tmp/secret" -d fwd.example.net -p "$tmp/pid" &
port=20001
[ "$dir" = reverse ] && port=20002
for _ in $(seq 50); do
	[ -s "$tmp/pid" ] && (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
	sleep 0.1
done
exec 9<>/dev/tcp/127.0.0.1/$port
for a in "$@"; do
	# postsrsd speaks Postfix's tcp_table: URL-encoded "get KEY" / "200 VALUE".
	printf 'get %s\n' "$(printf %s "$a" | sed 's/%/%25/g; s/ /%20/g')" >&9
	IFS= read -r line <&9
	line=$(printf %s "${line%$'\r'}" | python3 -c 'import sys, urllib.parse; print(urllib.parse.unquote(sys.stdin.read()))')
	printf '{"%s", "%s", "%s", "%s"},\n' "$when" "$dir" "$a" "$line"
done
