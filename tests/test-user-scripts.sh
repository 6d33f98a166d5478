#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Every script a user runs (scripts/) starts as a user runs it: from a
# fresh clone (not built) under a path with a space, in a clean
# environment, from another directory; it depends on nothing make check
# exports.  Each prints its usage (or its list), and refuses a bad
# option with its own message and exit status 2, not a shell error such
# as "unbound variable" or "No such file or directory".

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-user-helpers.sh"

user_machine
user_clone

# as_user EXPECTED-STATUS PATTERN SCRIPT ARGS...: run SCRIPT of the clone
# from /, in a clean environment; its exit status must be EXPECTED-STATUS
# and its output must match PATTERN (grep -E).
as_user ()
{
    local want=$1 pattern=$2 script=$3 rc=0; shift 3
    (cd / && env -i --default-signal=INT,PIPE \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME=/root "$user_tree/$script" "$@") > "$tmp/out" 2>&1 || rc=$?
    [ "$rc" -eq "$want" ] ||
        { cat "$tmp/out" >&2; fail "$script $*: exit status $rc, not $want"; }
    ! grep -E 'unbound variable|No such file|command not found|syntax error' "$tmp/out" ||
        fail "$script $*: a shell error"
    grep -qE -- "$pattern" "$tmp/out" ||
        { cat "$tmp/out" >&2; fail "$script $*: no '$pattern' in its output"; }
}

as_user 0 '^Usage: scripts/abd-run ' scripts/abd-run --help
as_user 2 'abd-run: unknown option: --bogus' scripts/abd-run --bogus
as_user 0 '^Usage: scripts/bench ' scripts/bench --help
as_user 0 '^Usage: scripts/bench-hosts ' scripts/bench-hosts --help
as_user 2 'bench-hosts: unknown option: --bogus' scripts/bench-hosts --bogus
as_user 2 'bench-hosts: --hosts takes a positive number' scripts/bench-hosts --hosts 0
as_user 0 '^usage: torture ' scripts/torture --help
as_user 2 'usage: torture ' scripts/torture --bogus
as_user 0 '^nbdkit$' scripts/install-deps --list
as_user 2 'usage: .*install-deps \[--list\]' scripts/install-deps --bogus
as_user 2 'test-all: --stress takes a number of runs' scripts/test-all --stress x
as_user 2 'unknown timer or command' scripts/ups/abd-upssched-cmd --bogus
as_user 2 'NOTIFYTYPE is not set' scripts/ups/abd-nut-notify
echo "$0: OK"
