#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The example systemd units in scripts/systemd: `systemd-analyze verify`
# accepts each of them, abd.service and abd-memcached.service are
# sandboxed at least as far as Debian's memcached.service (exposure score
# at most 4.8, printed), and abd.service's ExecStartPre and ExecStart, with
# the settings of abd.default, really prepare the device and start the
# stack: the command lines are taken from the unit file, only /run/abd,
# the helper's path and the filter names are pointed at this test's
# directory and the tree.  Then data written through it is on the image
# after SIGTERM (the unit's KillSignal), as the unit's comments promise.
#
# The device: abd-prepare-device creates a missing ABD_DEVICE as a sparse
# file of ABD_SIZE, leaves an existing one alone, and refuses (exit 1, a
# message naming the setting) without ABD_SIZE, under /dev, or with a
# size that is not a multiple of 4096.
#
# abd-nbd.service (run against the kernel's NBD client in a QEMU guest by
# tests/test-kernel-units.sh; here its lines are checked): bound to
# abd.service and ordered after it, wanted by it; nbd-client with
# -nonetlink -persist -block-size 4096 -connections; the stack really
# advertises multi-conn when ABD_NBD_CONNECTIONS is above 1; its
# ExecStartPost waits for `nbd-client -c` with a deadline (run against a
# stand-in nbd-client).

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-memcache-helpers.sh"
requires systemd-analyze

units=$abs_top_srcdir/scripts/systemd
# Verified as installed, but with abd-prepare-device and abdctl from the
# tree: verify fails on a command that does not exist.
mkdir "$tmp/units"
for u in abd.service abd-memcached.service abd-nbd.service; do
    sed -e "s|/usr/libexec/abd/abd-prepare-device|$units/abd-prepare-device|" \
        -e "s|/usr/bin/abdctl |$ABDCTL |" \
        "$units/$u" > "$tmp/units/$u"
done
for u in abd.service abd-memcached.service abd-nbd.service; do
    # verify reports problems on stderr, not always in its exit status.
    systemd-analyze verify "$tmp/units/$u" >"$tmp/verify.out" 2>&1 ||
        { cat "$tmp/verify.out" >&2; fail "systemd-analyze verify $u"; }
    if grep -v 'Failed to prepare filename\|[Nn]o such file' "$tmp/verify.out" |
       grep -q .; then
        cat "$tmp/verify.out" >&2
        fail "systemd-analyze verify $u printed warnings"
    fi
done

# The sandbox: `systemd-analyze security` rates each service's exposure
# from 0 (locked down) to 10; the units must be at least as locked down as
# Debian's own memcached.service (4.8).  nbdkit runs as root and parses
# what servers and clients send; memcached serves anyone who reaches it.
for u in abd.service abd-memcached.service; do
    systemd-analyze security --offline=true "$tmp/units/$u" \
        >"$tmp/security.out" 2>&1 || true
    score=$(sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\) .*/\1/p' \
        "$tmp/security.out")
    [ -n "$score" ] ||
        { cat "$tmp/security.out" >&2; fail "systemd-analyze security $u: no score"; }
    echo "$u: exposure $score (at most 4.8)"
    awk -v s="$score" 'BEGIN { exit !(s <= 4.8) }' ||
        { grep '✗' "$tmp/security.out" >&2; fail "$u: exposure $score, above 4.8"; }
done
# What the sandbox must still let nbdkit do: write /run/abd (sockets,
# pid file, store file) and /var/lib/abd (the default image), open block
# devices, connect to memcached's socket (mode 0700, another user's: DAC
# override), lock memory without CAP_IPC_LOCK (the limit), reach servers
# over TCP.
for want in '^RuntimeDirectory=abd$' '^StateDirectory=abd$' \
            '^DeviceAllow=block-\* rw$' '^LimitMEMLOCK=infinity$' \
            '^CapabilityBoundingSet=CAP_DAC_OVERRIDE$' \
            '^RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6$'; do
    grep -q "$want" "$units/abd.service" || fail "abd.service: no line $want"
done
grep -q '^PrivateDevices=yes' "$units/abd.service" &&
    fail "abd.service: PrivateDevices=yes hides the block device"

exec_start=$(unit_line "$units/abd.service" ExecStart)
[ -n "$exec_start" ] || fail "no ExecStart in abd.service"
case $exec_start in
    *--filter=async*--filter=memcache*) ;;
    *) fail "abd.service does not stack async over memcache: $exec_start" ;;
esac

# The settings: abd.default's names, this test's values.
start_memcached units
while IFS='=' read -r name value; do
    case $name in ABD_*) ;; *) continue ;; esac
    case $name in
        ABD_DEVICE) export ABD_DEVICE=$tmp/disk.img ;;
        ABD_SIZE) export ABD_SIZE=64M ;;
        ABD_NBD_CONNECTIONS) nbd_connections=$value ;;
        ABD_MEMCACHE_SERVERS_FILE)
            echo "127.0.0.1:$mc_port" > "$tmp/memcache-servers"
            export ABD_MEMCACHE_SERVERS_FILE=$tmp/memcache-servers ;;
        ABD_MEMCACHE_ID) export ABD_MEMCACHE_ID=units-test ;;
        ABD_MAX_DIRTY) export ABD_MAX_DIRTY=16M ;;
        ABD_FLUSH)
            [ "$value" = ram ] || fail "abd.default: ABD_FLUSH=$value, not ram"
            export ABD_FLUSH=$value ;;
        ABD_STORE_FILE)
            [ "$value" = /run/abd/async.store ] ||
                fail "abd.default: ABD_STORE_FILE=$value, not on /run/abd"
            export ABD_STORE_FILE=$tmp/run/async.store ;;
        ABD_EXTRA) export ABD_EXTRA=async-writeback-delay=60000 ;;
        ABD_NBD_DEVICE) ;;
        *) fail "abd.default sets $name, which this test does not know" ;;
    esac
done < "$units/abd.default"

# abd.service's ExecStartPre: abd-prepare-device, from the tree.
pre=$(unit_line "$units/abd.service" ExecStartPre)
[ "$pre" = /usr/libexec/abd/abd-prepare-device ] ||
    fail "abd.service's ExecStartPre is not abd-prepare-device: $pre"
prepare=$abs_top_srcdir/scripts/systemd/abd-prepare-device
# prepare_fails WHY VAR=VALUE...: abd-prepare-device with these settings
# exits 1 with a message matching WHY, creating nothing.
prepare_fails ()
{
    local why=$1 rc=0; shift
    env "$@" "$prepare" >"$tmp/prep.out" 2>&1 || rc=$?
    [ "$rc" -eq 1 ] || fail "abd-prepare-device $*: exit $rc, expected 1"
    grep -q -- "$why" "$tmp/prep.out" ||
        fail "abd-prepare-device $*: no message '$why': $(cat "$tmp/prep.out")"
    if compgen -G "$tmp/disk.img*" >/dev/null; then
        fail "abd-prepare-device $* left a file: $(ls "$tmp"/disk.img*)"
    fi
}
prepare_fails "set ABD_DEVICE in /etc/default/abd.*or ABD_SIZE" ABD_SIZE=
prepare_fails "must be a positive multiple of 4096" ABD_SIZE=1000
prepare_fails "ABD_SIZE=lots: not a size" ABD_SIZE=lots
prepare_fails "a device is never created" ABD_DEVICE=/dev/abd-no-such-disk
[ ! -e /dev/abd-no-such-disk ] || fail "abd-prepare-device made a file in /dev"
prepare_fails "must be an absolute path" ABD_DEVICE=disk.img
prepare_fails "its directory .* does not exist" ABD_DEVICE=$tmp/none/disk.img
"$prepare" >"$tmp/prep.out" 2>&1 || fail "abd-prepare-device: $(cat "$tmp/prep.out")"
grep -q "created $ABD_DEVICE" "$tmp/prep.out" || fail "no message for the new image"
[ "$(stat -c %s "$ABD_DEVICE")" -eq $(( 64 << 20 )) ] ||
    fail "the image is not ABD_SIZE=64M: $(stat -c %s "$ABD_DEVICE")"
[ "$(stat -c %a "$ABD_DEVICE")" = 600 ] || fail "the image is not mode 0600"
[ "$(stat -c %b "$ABD_DEVICE")" -lt 1024 ] || fail "the image is not sparse"
# An existing device is left alone.
printf 'keep' | dd of="$ABD_DEVICE" conv=notrunc status=none
ABD_SIZE=4M "$prepare" || fail "abd-prepare-device refused an existing image"
[ "$(stat -c %s "$ABD_DEVICE")" -eq $(( 64 << 20 )) ] &&
    [ "$(head -c 4 "$ABD_DEVICE")" = keep ] || fail "an existing image was changed"
truncate -s 0 "$ABD_DEVICE" && truncate -s 64M "$ABD_DEVICE"

# mc_servers CTL: how many servers the pool has.
mc_servers ()
{
    "$ABDCTL" -s "$1" --json status |
        python3 -c 'import json, sys; print(len(json.load(sys.stdin)["servers"]))'
}

run=$tmp/run
mkdir -p "$run"
cmd=${exec_start//\/run\/abd/$run}
# The nbdkit in $PATH: the same program (systemd-analyze verify checked
# the unit's path), or the sanitizer wrapper of tests/functions.sh.
case $cmd in
    /usr/bin/nbdkit\ *) cmd="nbdkit ${cmd#/usr/bin/nbdkit }" ;;
    *) fail "abd.service does not run /usr/bin/nbdkit: $cmd" ;;
esac
cmd=${cmd//--filter=async/--filter=$ASYNC_FILTER}
cmd=${cmd//--filter=memcache/--filter=$MEMCACHE_FILTER}
# systemd expands ${NAME} and $NAME (the latter split into words).
eval "set -- $cmd"
"$@" || fail "abd.service's ExecStart failed: $cmd"
wait_for 10 test -s "$run/abd.pid" || fail "no PID file $run/abd.pid"
nbd_pid=$(cat "$run/abd.pid")
cleanup_fn kill_wait "$nbd_pid"

[ -S "$run/abd.sock" ] || fail "no NBD socket"
"$ABDCTL" -s "$run/memcache.ctl" status >/dev/null || fail "memcache control"

# systemctl reload abd (ExecReload): the pool becomes the file's list
# again; a file that does not parse fails the reload and changes nothing.
reload=$(unit_line "$units/abd.service" ExecReload)
case $reload in
    /usr/bin/abdctl\ *) reload="$ABDCTL ${reload#/usr/bin/abdctl }" ;;
    *) fail "abd.service's ExecReload is not abdctl: $reload" ;;
esac
reload=${reload//\/run\/abd/$run}
$reload || fail "abd.service's ExecReload failed: $reload"
start_memcached units2
echo "127.0.0.1:$mc_port" >> "$ABD_MEMCACHE_SERVERS_FILE"
$reload || fail "ExecReload with a second server failed"
[ "$(mc_servers "$run/memcache.ctl")" = 2 ] || fail "the reload did not add a server"
echo "127.0.0.1:99999" >> "$ABD_MEMCACHE_SERVERS_FILE"
if $reload 2>"$tmp/reload.err"; then fail "a reload of a bad file succeeded"; fi
cat "$tmp/reload.err"
[ "$(mc_servers "$run/memcache.ctl")" = 2 ] || fail "a failed reload changed the pool"
head -c 4M /dev/urandom > "$tmp/data"
nbdcopy "$tmp/data" "nbd+unix:///?socket=$run/abd.sock"
[ "$(status_field "$run/async.ctl" dirty_bytes)" -gt 0 ] ||
    fail "the async filter is not holding the data (writeback delay)"

# abd-nbd.service attaches this export: -connections above 1 only if
# the stack advertises multi-conn.
[ "$nbd_connections" -ge 1 ] 2>/dev/null ||
    fail "abd.default: ABD_NBD_CONNECTIONS=$nbd_connections is not a count"
multi_conn=$(nbdinfo --json "nbd+unix:///?socket=$run/abd.sock" |
             jq -r '.exports[0].can_multi_conn')
if [ "$nbd_connections" -gt 1 ] && [ "$multi_conn" != true ]; then
    fail "ABD_NBD_CONNECTIONS=$nbd_connections, but the stack has no multi-conn"
fi

stop_nbdkit "$nbd_pid"
cmp -n 4M "$tmp/data" "$ABD_DEVICE" ||
    fail "data not on the image after SIGTERM"

# abd-nbd.service: follows abd.service, nbd-client's options.
nbd_unit=$units/abd-nbd.service
for want in '^BindsTo=abd.service$' '^After=abd.service$' \
            '^WantedBy=.*\babd.service\b' '^Type=forking$'; do
    grep -q "$want" "$nbd_unit" || fail "abd-nbd.service: no line $want"
done
nbd_start=$(unit_line "$units/abd-nbd.service" ExecStart)
for opt in "-unix /run/abd/abd.sock \${ABD_NBD_DEVICE}" -nonetlink -persist \
           "-block-size 4096" "-connections \${ABD_NBD_CONNECTIONS}"; do
    case " $nbd_start " in
        *" $opt "*) ;;
        *) fail "abd-nbd.service: nbd-client without $opt: $nbd_start" ;;
    esac
done
# ExecStartPost with a stand-in nbd-client that reports the device
# connected at the third check, then one that never does.
post=$(unit_line "$units/abd-nbd.service" ExecStartPost)
case $post in
    *"/usr/sbin/nbd-client -c "*) ;;
    *) fail "abd-nbd.service's ExecStartPost does not run nbd-client -c" ;;
esac
printf '#!/bin/sh\necho "$@" >> %s/calls\n[ "$(wc -l < %s/calls)" -ge 3 ]\n' \
    "$tmp" "$tmp" > "$tmp/nbd-client"
chmod +x "$tmp/nbd-client"
post=${post//\/usr\/sbin\/nbd-client/$tmp/nbd-client}
export ABD_NBD_DEVICE=/dev/nbd7
eval "set -- $post"
"$@" || fail "ExecStartPost failed although the device came up"
[ "$(sort -u "$tmp/calls")" = "-c /dev/nbd7" ] ||
    fail "ExecStartPost ran nbd-client with: $(sort -u "$tmp/calls")"
printf '#!/bin/sh\nexit 1\n' > "$tmp/nbd-client"
t0=$SECONDS
if "$@" 2>"$tmp/post.err"; then
    fail "ExecStartPost succeeded although the device never came up"
fi
grep -q "/dev/nbd7 is not connected after 10 s" "$tmp/post.err" ||
    fail "ExecStartPost: no message: $(cat "$tmp/post.err")"
[ $(( SECONDS - t0 )) -le 60 ] || fail "ExecStartPost took over 60 s"
echo "$0: OK"
