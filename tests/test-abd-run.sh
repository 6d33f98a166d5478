#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# scripts/abd-run, the README's first command: it starts memcached and
# nbdkit with async over memcache over a sparse image, prints the NBD URI,
# the nbd-client line and the status, serves data, and on Ctrl-C (SIGINT)
# stops with every dirty byte on the image.  Its --fio form prints fio's
# numbers and stops the same way.

source "${abs_top_srcdir:-.}/tests/functions.sh"
requires nbdkit memcached nbdcopy fio ss

export ABD_DIR=$tmp/abd ABD_STORE=$tmp/abd.store
run=$abs_top_srcdir/scripts/abd-run

# abd-run waits for Ctrl-C.  A shell cannot catch a signal that was
# ignored when it started, and a background job of a non-interactive
# shell (or of `make check &`) starts with SIGINT ignored: so abd-run is
# started with SIGINT back at its default, like a program in a terminal.
# Job control on, so that it is its own process group, as in a terminal.
with_sigint ()
{
    exec python3 -c 'import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_DFL)
os.execvp(sys.argv[1], sys.argv[1:])' "$@"
}
set -m
with_sigint "$run" --size 64M -- async-writeback-delay=60000 async-write-size=32M >"$tmp/run.out" 2>&1 &
run_pid=$!
set +m
cleanup_fn kill_wait "$run_pid"

wait_for 60 test -S "$ABD_DIR/async.ctl" ||
    { cat "$tmp/run.out" >&2; fail "abd-run did not start the stack"; }
wait_for 10 grep -q 'running; press Ctrl-C' "$tmp/run.out" ||
    { cat "$tmp/run.out" >&2; fail "abd-run did not say it is running"; }
for want in "NBD URI:  nbd+unix:///?socket=$ABD_DIR/abd.sock" \
            "nbd-client -unix $ABD_DIR/abd.sock -block-size 4096 -connections 4 /dev/nbd0" \
            "dirty:" "memcache (/"; do
    grep -qF -- "$want" "$tmp/run.out" ||
        { cat "$tmp/run.out" >&2; fail "abd-run did not print '$want'"; }
done
# memcached listens only on a Unix socket of mode 0600 in a directory of
# mode 0700, both its user's; run by root, that user is not root.
mc_sock=$(sed -n 's/^abd-run: memcached PID [0-9]* on \(.*\) (user .*/\1/p' "$tmp/run.out")
mc_pid=$(sed -n 's/^abd-run: memcached PID \([0-9]*\) on .*/\1/p' "$tmp/run.out")
[ -S "$mc_sock" ] || fail "memcached's socket is not a socket: '$mc_sock'"
[ "$(stat -c %a "$mc_sock")" = 600 ] && [ "$(stat -c %a "$(dirname "$mc_sock")")" = 700 ] ||
    fail "memcached's socket or its directory is open to others:" \
         "$(stat -c '%a %U %n' "$mc_sock" "$(dirname "$mc_sock")")"
mc_user=$(ps -o user= -p "$mc_pid")
[ "$(stat -c %U "$mc_sock")" = "$mc_user" ] ||
    fail "memcached's socket belongs to $(stat -c %U "$mc_sock"), not to its user $mc_user"
if [ "$(id -u)" -eq 0 ]; then
    [ "$mc_user" != root ] || fail "memcached runs as root"
fi
[ -z "$(ss -Htlnp "( sport > :0 )" | grep "pid=$mc_pid,")" ] ||
    fail "memcached listens on TCP: $(ss -Htlnp | grep "pid=$mc_pid,")"
# memcached runs with memcached-ext/abd-memcached.conf's options (-R, -c).
settings=$(python3 -c 'import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(sys.argv[1])
s.sendall(b"stats settings\r\n")
buf = b""
while not buf.endswith(b"END\r\n"):
    buf += s.recv(65536)
d = dict(l.split()[1:3] for l in buf.decode().splitlines()
         if l.startswith("STAT "))
print(d["reqs_per_event"], d["maxconns"])' "$mc_sock")
read -r reqs maxconns <<< "$settings"
conf=$abs_top_srcdir/memcached-ext/abd-memcached.conf
want=$(sed -n 's/^ABD_MEMCACHED_OPTIONS=.*-R \([0-9]*\).*/\1/p' "$conf")
[ -n "$want" ] && [ "$reqs" -eq "$want" ] ||
    fail "memcached runs without abd-memcached.conf's -R $want (reqs_per_event $reqs)"
want=$(sed -n 's/^ABD_MEMCACHED_OPTIONS=.*-c \([0-9]*\).*/\1/p' "$conf")
[ -n "$want" ] && [ "$maxconns" -eq "$want" ] ||
    fail "memcached runs without abd-memcached.conf's -c $want (maxconns $maxconns)"
[ "$(stat -c %s "$ABD_DIR/disk.img")" -eq $((64 * 1024 * 1024)) ] ||
    fail "the image is not 64M"

head -c 8M /dev/urandom > "$tmp/data"
nbdcopy "$tmp/data" "nbd+unix:///?socket=$ABD_DIR/abd.sock"
dirty=$(status_field "$ABD_DIR/async.ctl" dirty_bytes)
[ "$dirty" -gt 0 ] || fail "nothing dirty before Ctrl-C (dirty_bytes=$dirty)"

kill -INT "$run_pid"
wait_for 120 bash -c "! kill -0 $run_pid 2>/dev/null" ||
    { cat "$tmp/run.out" >&2; fail "abd-run still runs 120 s after SIGINT"; }
wait "$run_pid" || fail "abd-run exited with status $? after SIGINT"
grep -q 'nbdkit stopped' "$tmp/run.out" ||
    { cat "$tmp/run.out" >&2; fail "abd-run did not stop nbdkit"; }
cmp -n 8M "$tmp/data" "$ABD_DIR/disk.img" ||
    fail "dirty data was not written to the image on Ctrl-C"
[ ! -e "$ABD_STORE" ] || fail "the clean store file is left after a clean stop"
! pgrep -f "memcache-id=abd-run:$ABD_DIR/disk.img" >/dev/null ||
    fail "nbdkit still runs after abd-run stopped"
! alive "$mc_pid" || fail "memcached still runs after abd-run stopped"
[ ! -e "$(dirname "$mc_sock")" ] || fail "memcached's socket directory is left"

# The --fio form.
timeout 300 "$run" --fio --runtime 2 >"$tmp/fio.out" 2>&1 ||
    { cat "$tmp/fio.out" >&2; fail "abd-run --fio failed"; }
grep -Eq '^fio: [0-9]+ IOPS' "$tmp/fio.out" ||
    { cat "$tmp/fio.out" >&2; fail "abd-run --fio printed no IOPS"; }
grep -q 'nbdkit stopped' "$tmp/fio.out" ||
    fail "abd-run --fio did not stop nbdkit"
echo "$0: OK"
