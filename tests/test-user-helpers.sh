# SPDX-License-Identifier: BSD-3-Clause
# Helpers for the user-path tests (tests/test-user-*.sh), sourced after
# tests/functions.sh.  Not a test itself (not in TESTS).
#
# A user-path test runs a command the way README.md tells a newcomer to
# run it, not the way make check runs the build tree:
# - from a fresh copy of the committed tree (git clone of HEAD) in a new
#   directory under /tmp whose path has a space in it, built there by the
#   command itself;
# - in a clean environment: env -i with PATH and HOME only, SIGINT and
#   SIGPIPE at their defaults (a background job of a non-interactive
#   shell, as make check's tests are, starts with SIGINT ignored);
# - from a current directory that is not the tree (/);
# - in its own session and process group, as in a terminal, where Ctrl-C
#   is a SIGINT to the foreground process group.
# Its /var/tmp and /dev/shm are directories of the test (bind-mounted in a
# private mount namespace), so the run starts clean (no /var/tmp/abd, no
# store file) and leaves the machine's own alone; a second run in the
# same "machine" finds what the first left there.

requires git unshare mount setsid

[ "$(id -u)" -eq 0 ] ||
    { echo "$0: SKIP: the private /var/tmp and /dev/shm need root"; exit 77; }
git -C "$abs_top_srcdir" rev-parse --verify -q HEAD >/dev/null ||
    { echo "$0: SKIP: $abs_top_srcdir is not a git work tree"; exit 77; }

# user_machine: a new "machine" for a user: $user_root (under /tmp, a
# space in its name) with var-tmp/ and shm/ in it, mode 1777 like the
# real ones.  Removed at exit.
user_machine ()
{
    user_root=$(mktemp -d "/tmp/abd user-path.XXXXXX")
    cleanup_fn rm -rf "$user_root"
    mkdir -m 1777 "$user_root/var-tmp" "$user_root/shm"
}

# user_clone: a fresh clone of the committed tree at $user_tree, not built.
user_clone ()
{
    user_tree="$user_root/src tree/abd"
    mkdir -p "$(dirname "$user_tree")"
    git clone -q "$abs_top_srcdir" "$user_tree" ||
        fail "git clone of $abs_top_srcdir failed"
    [ ! -e "$user_tree/Makefile" ] || fail "the clone is already configured"
}

# user_start LOG COMMAND ARGS...: start COMMAND as a user would, from /,
# with its output in LOG; sets $user_pid (also its process group and
# session).  At exit the whole group is killed if still there.
user_start ()
{
    local log=$1; shift
    setsid env -i --default-signal=INT,PIPE \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME=/root \
        unshare --mount --propagation private -- /bin/bash -c '
            set -e
            mount --bind "$1/var-tmp" /var/tmp
            mount --bind "$1/shm" /dev/shm
            cd /
            shift
            exec "$@"' user-path "$user_root" "$@" \
        > "$log" 2>&1 < /dev/null &
    user_pid=$!
    cleanup_fn user_kill_group "$user_pid"
}

# user_kill_group PID: SIGKILL to the process group PID, if any is left.
user_kill_group ()
{
    kill -KILL -- "-$1" 2>/dev/null || true
}

# user_wait LOG SECONDS: wait for $user_pid to exit; sets $user_rc.
# Fails (printing LOG) after SECONDS.
user_wait ()
{
    local log=$1 secs=$2
    wait_for "$secs" exited "$user_pid" ||
        { cat "$log" >&2; fail "still running after ${secs}s"; }
    user_rc=0
    wait "$user_pid" || user_rc=$?
}

# user_stack_pids LOG: the PIDs of nbdkit and memcached that abd-run
# printed in LOG, in $user_nbdkit_pid and $user_memcached_pid, and
# memcached's socket in $user_memcached_sock.
user_stack_pids ()
{
    user_nbdkit_pid=$(sed -n 's/^abd is running: nbdkit PID \([0-9]*\)$/\1/p' "$1")
    user_memcached_pid=$(sed -n 's/^abd-run: memcached PID \([0-9]*\) .*/\1/p' "$1")
    user_memcached_sock=$(sed -n 's/^abd-run: memcached PID [0-9]* on \(.*\) (user .*/\1/p' "$1")
    [ -n "$user_nbdkit_pid" ] && [ -n "$user_memcached_pid" ] &&
        [ -n "$user_memcached_sock" ] ||
        { cat "$1" >&2; fail "abd-run did not print the PIDs of nbdkit and memcached"; }
}

# user_nothing_left LOG: abd-run exited and left nothing running: neither
# its nbdkit nor its memcached, nor any process in its group.
user_nothing_left ()
{
    local log=$1 p
    for p in "$user_nbdkit_pid" "$user_memcached_pid"; do
        # Its parent (abd-run) waited for it: it is gone, not a zombie.
        ! alive "$p" || { cat "$log" >&2; fail "process $p is left running"; }
    done
    ! pgrep -g "$user_pid" >/dev/null ||
        fail "processes of the group are left: $(pgrep -g "$user_pid" -a)"
    [ -z "$(ls "$user_root/var-tmp/abd/"*.sock "$user_root/var-tmp/abd/"*.ctl 2>/dev/null)" ] ||
        { cat "$log" >&2; fail "sockets are left behind: $(ls "$user_root/var-tmp/abd/")"; }
    [ ! -e "$(dirname "$user_memcached_sock")" ] ||
        fail "memcached's socket directory is left behind: $(dirname "$user_memcached_sock")"
}
