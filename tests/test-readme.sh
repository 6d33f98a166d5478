#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# README.md's examples run as written, in order, as a newcomer pastes
# them into a root shell on a fresh machine (tests/readme_blocks.py
# extracts them: every ```sh block, except those marked with an HTML
# comment `<!-- test-readme: skip: REASON -->` on the line before it: the
# ones that run until Ctrl-C, install into the system, need systemd or
# the kernel's NBD client, or take an hour).  Every code block must be
# fenced with an info string, so none is left out unnoticed.
#
# "Fresh machine": the blocks run from the top of the build tree in
# private namespaces (unshare: mount, network, PID): /tmp and /var/tmp are
# empty tmpfs, the loopback interface is this test's own (the example's
# fixed memcached ports are free), and every process they leave behind
# dies with the namespace.  Nothing the examples write reaches the host.
#
# Asserted from their output: the 64 MiB written through the async
# filter is on the image ("on disk"); the mode switch prints "sync"; the
# memcache example reads the same data twice and the second read comes
# from memcached (at least one hit per 4K block of the 64 MiB); the
# examples stop every nbdkit and memcached they started and leave no
# socket behind (so they can be run again).

source "${abs_top_srcdir:-.}/tests/functions.sh"
requires nbdkit nbdcopy memcached jq md5sum unshare ip timeout
[ "$(id -u)" -eq 0 ] ||
    { echo "$0: SKIP: private namespaces need root"; exit 77; }
[ -x "$ABDCTL" ] || fail "abdctl not built: $ABDCTL"
[ -f "$MEMCACHE_FILTER" ] || fail "memcache filter not built: $MEMCACHE_FILTER"
[ -x "$abs_top_builddir/abdctl/abdctl" ] && [ -f "$abs_top_builddir/filters/async/.libs/nbdkit-async-filter.so" ] ||
    fail "the examples use the build tree's abdctl/ and filters/: not built"

python3 "$abs_top_srcdir/tests/readme_blocks.py" "$abs_top_srcdir/README.md" \
    > "$tmp/blocks.sh" || fail "README.md has code blocks the test cannot run"
# No file straight in /tmp or /var/tmp (but the private directory made
# there): a socket or PID file there may be another user's, and a root
# abdctl or kill would talk to their server or signal their process.
if grep -nE '(^|[^[:alnum:]_.])/(var/)?tmp/' "$tmp/blocks.sh" |
   grep -v 'mktemp -d /var/tmp/'; then
    fail "README.md's examples use a path straight in /tmp or /var/tmp"
fi

# Inside the namespaces.  The blocks and the sanitizer wrapper (if any)
# are copied to the new /tmp before /var/tmp (which holds $tmp) is hidden.
# The tree may itself live under /tmp or /var/tmp (a clone in /tmp):
# it is held open (fd 9) before they are hidden, and bind-mounted back at
# its own path on the new tmpfs, so the blocks run where a user runs them.
cat > "$tmp/inner.sh" <<'INNER'
set -eu
exec 9<"$2"
ip link set lo up
mount -t tmpfs tmpfs /tmp
cp "$1/blocks.sh" /tmp/.readme-blocks.sh
if [ -d "$1/sanitizer-bin" ]; then
    cp -r "$1/sanitizer-bin" /tmp/.readme-bin
    PATH=/tmp/.readme-bin:$PATH
fi
mount -t tmpfs tmpfs /var/tmp
if [ ! -e "$2/README.md" ]; then
    mkdir -p "$2"
    # -c: the path as given; canonicalized, it names the new empty one.
    mount --no-canonicalize --bind /proc/self/fd/9 "$2"
fi
exec 9<&-
tree_top=${2#/tmp/}; tree_top=${tree_top%%/*}
cd "$2"
rc=0
# As a user's shell runs them: an environment with PATH and HOME only (and
# the sanitizer run's options), not make check's (abs_top_srcdir, ...).
env -i PATH="$PATH" HOME=/root \
    ${ASAN_OPTIONS+ASAN_OPTIONS="$ASAN_OPTIONS"} \
    ${UBSAN_OPTIONS+UBSAN_OPTIONS="$UBSAN_OPTIONS"} \
    bash -e -o pipefail /tmp/.readme-blocks.sh || rc=$?
echo "==== blocks exit status: $rc"
# What the examples left running (they should stop all of it).
left ()
{
    { pgrep -x -l nbdkit; pgrep -x -l memcached; } | grep .
}
for i in $(seq 100); do
    left >/dev/null || break
    sleep 0.1
done
echo "==== left running: $(left | tr '\n' ' ')"
# (Without the tree itself, when it lives in /tmp.)
echo "==== left in /tmp: $(ls /tmp | grep -vxF -- "$tree_top")"
# The examples keep their files in a private directory under /var/tmp.
echo "==== left sockets: $(find /tmp /var/tmp -type s | tr '\n' ' ')"
INNER

rc=0
timeout 600 unshare --mount --net --pid --fork --kill-child --mount-proc \
    bash "$tmp/inner.sh" "$tmp" "$abs_top_builddir" > "$tmp/out" 2>&1 || rc=$?
cat "$tmp/out"
[ "$rc" -eq 0 ] || fail "the namespace exited with status $rc"
grep -qx '==== blocks exit status: 0' "$tmp/out" || fail "a README block failed"

grep -qx 'on disk' "$tmp/out" || fail "the 64 MiB example did not print 'on disk'"
grep -qx 'mode: sync' "$tmp/out" && grep -qx '"sync"' "$tmp/out" ||
    fail "the mode switch did not print sync"
sums=$(grep -E '^[0-9a-f]{32}  -$' "$tmp/out" | sort -u)
[ "$(grep -cE '^[0-9a-f]{32}  -$' "$tmp/out")" -eq 2 ] &&
    [ "$(wc -l <<<"$sums")" -eq 1 ] ||
    fail "the memcache example's two reads differ: $sums"
hits=$(sed -n 's/^  hit ratio: .*(\([0-9]*\) hits.*/\1/p' "$tmp/out")
[ -n "$hits" ] || fail "no hit ratio in the memcache example's status"
# Every server that never timed out served the second read of each of its
# blocks: as many hits as misses (the first read's).  A server that
# answered later than the timeout on a busy machine was skipped for a
# while; it is left out, but at least one server must have kept up.
# The per-server lines:
#   127.0.0.1:11311: up, hit ratio 50.0% (5339 hits, 5339 misses, ...)
#     5851 ops, latency avg ... us; 0 timeouts, 0 errors, 0 times down
steady=$(awk '
    /^    [0-9.]+:[0-9]+: / { h = $0; sub(/.*\(/, "", h); split(h, a, " ")
                             hits = a[1]; misses = a[3]; next }
    /^      [0-9]+ ops, / && hits != "" {
        if ($0 ~ / 0 timeouts, 0 errors, 0 times down/) {
            if (hits == misses && hits > 0) ok++; else bad++
        }
        hits = ""
    }
    END { printf "%d %d\n", ok, bad }' "$tmp/out")
read -r steady_ok steady_bad <<<"$steady"
[ "$steady_bad" -eq 0 ] ||
    fail "a server that never timed out missed blocks of the second read"
[ "$steady_ok" -ge 1 ] ||
    fail "no memcache server answered every request in time: cannot check hits"
grep -qx '==== left running: ' "$tmp/out" ||
    fail "the examples left processes running"
grep -q '^==== left sockets: .*abd\.sock' "$tmp/out" &&
    fail "the examples left nbdkit's socket behind"
echo "$0: OK ($hits hits)"
