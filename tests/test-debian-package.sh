#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The Debian package: dpkg-buildpackage builds abd_*.deb from a copy of
# the source tree (tracked files, as they are now); lintian reports no
# error; dpkg -i installs it; nbdkit then finds the filters and the
# powercut plugin by their short names and serves the stack over a file
# with exact data; abdctl answers; dpkg --purge removes every file.

source "${abs_top_srcdir:-.}/tests/functions.sh"
requires dpkg-buildpackage dh lintian git memcached nbdcopy
[ "$(id -u)" = 0 ] || { echo "$0: SKIP: installing a package needs root"; exit 77; }
if dpkg-query -W -f='${db:Status-Abbrev}' abd 2>/dev/null | grep -q '^ii'; then
    echo "$0: SKIP: an abd package is installed already; not replacing it"
    exit 77
fi

# A clean copy of the tracked files: what a fresh checkout would build.
mkdir "$tmp/src"
(cd "$abs_top_srcdir" && git ls-files -z | cpio -0 -pdm --quiet "$tmp/src/abd") ||
    fail "could not copy the source tree"
(cd "$tmp/src/abd" && dpkg-buildpackage -us -uc -b) >"$tmp/build.log" 2>&1 ||
    { tail -30 "$tmp/build.log"; fail "dpkg-buildpackage failed"; }
deb=$(ls "$tmp"/src/abd_*.deb)
lintian "$deb" >"$tmp/lintian.log" 2>&1 || true
cat "$tmp/lintian.log"
grep -q '^E:' "$tmp/lintian.log" && fail "lintian reports errors"

cleanup_fn dpkg --purge abd
dpkg -i "$deb" >"$tmp/install.log" 2>&1 || { cat "$tmp/install.log"; fail "dpkg -i failed"; }
files=$(dpkg -L abd)
for f in /usr/bin/abdctl /etc/default/abd /etc/abd/memcache-servers \
         /lib/systemd/system/abd.service \
         /usr/libexec/abd/abd-prepare-device /usr/share/man/man7/abd.7.gz; do
    grep -qx "$f" <<<"$files" || fail "$f is not in the package"
done
# abd.service's ExecStartPre, where the unit runs it.
ABD_DEVICE=$tmp/prepared.img ABD_SIZE=8M /usr/libexec/abd/abd-prepare-device ||
    fail "the installed abd-prepare-device failed"
[ "$(stat -c %s "$tmp/prepared.img")" -eq $(( 8 << 20 )) ] ||
    fail "the installed abd-prepare-device did not make an 8M image"

# The installed stack, by short names, over the installed powercut plugin.
start_memcached pkg
head -c $(( 2 << 20 )) /dev/urandom > "$tmp/img"
cp "$tmp/img" "$tmp/expected"
head -c $(( 1 << 20 )) /dev/urandom > "$tmp/part"
dd if="$tmp/part" of="$tmp/expected" bs=1M seek=1 conv=notrunc status=none
ctl=$tmp/async.ctl
start_nbdkit pkg --filter=async --filter=memcache powercut file="$tmp/img" \
    async-control="$ctl" memcache-servers="127.0.0.1:$mc_port" \
    memcache-id=pkg-test
nbdcopy "$tmp/expected" "$uri" || fail "writing through the installed stack failed"
nbdcopy "$uri" "$tmp/out" || fail "reading through the installed stack failed"
cmp "$tmp/expected" "$tmp/out" || fail "installed stack: read differs"
/usr/bin/abdctl -s "$ctl" flush 30 || fail "installed abdctl: flush failed"
stop_nbdkit "$pid"
cmp "$tmp/expected" "$tmp/img" || fail "installed stack: image differs after stop"

dpkg --purge abd >"$tmp/purge.log" 2>&1 || { cat "$tmp/purge.log"; fail "dpkg --purge failed"; }
for f in $files; do
    [ -d "$f" ] || [ ! -e "$f" ] || fail "$f is left after purge"
done
echo "$0: OK"
