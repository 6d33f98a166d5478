#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The control channel's request deadline (common/control.c) is for the
# whole request, not for each read: a client that trickles one byte a
# second is answered "ERR timed out" and closed 5 s after it connected,
# and such a client does not delay nbdkit's exit.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-helpers.sh"

truncate -s 1M "$tmp/disk"
ctl=$tmp/ctl.sock
async_start d --filter="$ASYNC_FILTER" file "$tmp/disk" async-control="$ctl"

# trickle.py SOCKET SECONDS [FILE]: send one byte of a never-ending line
# every second for at most SECONDS (FILE is made after the second byte);
# print the seconds until the server closed the connection and what it
# sent, or "open" if it never did.
cat > "$tmp/trickle.py" <<'PYEOF'
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1])
start = time.monotonic()
s.settimeout(1)
reply = b""
sent = 0
while time.monotonic() - start < float(sys.argv[2]):
    try:
        s.send(b"x")
        sent += 1
        if sent == 2 and len(sys.argv) > 3:
            open(sys.argv[3], "w").close()
        data = s.recv(4096)
        if not data:
            print("%.1f %r" % (time.monotonic() - start, reply.decode()))
            sys.exit(0)
        reply += data
    except socket.timeout:
        pass
    except (BrokenPipeError, ConnectionResetError):
        print("%.1f %r" % (time.monotonic() - start, reply.decode()))
        sys.exit(0)
print("open")
PYEOF

# 1. Closed at the deadline, with a reply saying why.
out=$("$PY" "$tmp/trickle.py" "$ctl" 15)
echo "trickling client: $out"
[ "$out" != open ] || fail "a trickling client held the connection for 15 s"
secs=${out%% *}
awk -v s="$secs" 'BEGIN { exit !(s >= 4 && s <= 9) }' ||
    fail "a trickling client was closed after $secs s, not about 5 s"
case $out in
    *"ERR timed out"*) ;;
    *) fail "a trickling client was not told it timed out: $out" ;;
esac
abdctl -s "$ctl" status >/dev/null || fail "status after the trickler failed"

# 2. nbdkit stops at once with a trickling client connected.
"$PY" "$tmp/trickle.py" "$ctl" 60 "$tmp/trickling" >"$tmp/trickle2.out" &
trickler=$!
cleanup_fn kill_wait "$trickler" 5
wait_for 10 test -e "$tmp/trickling" || fail "the second trickler did not start"
start=$(date +%s.%N)
kill -TERM "$pid"
wait_for 10 exited "$pid" ||
    fail "nbdkit did not exit within 10 s of SIGTERM with a trickling client"
took=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
echo "nbdkit exited ${took} s after SIGTERM"
awk -v t="$took" 'BEGIN { exit !(t < 4) }' ||
    fail "nbdkit took $took s to exit with a trickling client connected"
echo "$0: OK"
