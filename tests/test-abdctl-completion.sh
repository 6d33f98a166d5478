#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# abdctl's bash completion: `make install` puts it in
# $(datadir)/bash-completion/completions/abdctl; it completes commands,
# options (per command), mode's sync|async and socket paths.  And
# abdctl's surface agrees everywhere: every option and command in
# `abdctl --help` is in the completion and in abdctl(1), and the exit
# status of a usage error (2) is the one --help, abdctl(1) and README.md
# state.

source "${abs_top_srcdir:-.}/tests/functions.sh"
[ -x "$ABDCTL" ] || fail "abdctl not built: $ABDCTL"
comp=$abs_top_srcdir/abdctl/abdctl.bash-completion
pod=$abs_top_srcdir/man/abdctl.pod

# Installed where bash-completion looks it up by command name.
make -s -C "$abs_top_builddir" install-abdctl-completion DESTDIR="$tmp/inst" \
    >/dev/null || fail "make install-abdctl-completion failed"
installed=$(find "$tmp/inst" -type f -path '*/share/bash-completion/completions/abdctl')
[ -n "$installed" ] && cmp -s "$installed" "$comp" ||
    fail "not installed as share/bash-completion/completions/abdctl: $(find "$tmp/inst" -type f)"

# complete WORDS...: what the completion offers for the last word, sorted,
# one line.
complete_words ()
{
    bash --norc --noprofile -c '
source "$1"; shift
COMP_WORDS=("$@"); COMP_CWORD=$(( $# - 1 )); COMP_LINE="$*"
_abdctl
printf "%s\n" "${COMPREPLY[@]}" | sort | tr "\n" " " | sed "s/ $//"' _ "$comp" "$@"
}
failures=()
expect_completion ()
{
    local want=$1 got; shift
    got=$(complete_words "$@")
    [ "$got" = "$want" ] || failures+=("'$*': got '$got', expected '$want'")
}
expect_completion "flush locate metrics mode servers status store-info" abdctl ""
expect_completion "metrics mode" abdctl m
expect_completion "status" abdctl -s /x st
expect_completion "status store-info" abdctl --json st
expect_completion "--socket" abdctl --so
expect_completion "--interval --progress" abdctl flush --
expect_completion "--json --raw" abdctl status --
expect_completion "async sync" abdctl mode ""
expect_completion "sync" abdctl -s /x mode s
expect_completion "" abdctl mode sync ""
mkdir "$tmp/sockdir"; : > "$tmp/sockdir/a.ctl"
expect_completion "$tmp/sockdir/a.ctl" abdctl -s "$tmp/sockdir/a"

# The same options and commands in --help, the completion and abdctl(1).
"$ABDCTL" --help > "$tmp/help"
opts=$(grep -oE -- '--[a-z]+' "$tmp/help" | sort -u)
cmds=$(sed -n '/^Commands/,$p' "$tmp/help" | grep -oE '^  [a-z-]+' | sort -u)
[ -n "$opts" ] && [ -n "$cmds" ] || fail "no options or commands in --help"
for o in $opts; do
    grep -q -- "$o" "$comp" || failures+=("completion lacks $o")
    grep -q -- "B<$o" "$pod" || failures+=("abdctl(1) lacks $o")
done
for c in $cmds store-info; do
    grep -qw -- "$c" "$comp" || failures+=("completion lacks command $c")
    grep -q "^=item B<$c>" "$pod" || failures+=("abdctl(1) lacks =item B<$c>")
done

# Usage errors exit 2, as documented.
rc=0; "$ABDCTL" --no-such-option >/dev/null 2>&1 || rc=$?
[ $rc -eq 2 ] || failures+=("a usage error exited $rc")
grep -q '2 on a usage error' "$tmp/help" || failures+=("--help does not say usage errors exit 2")
sed -n '/^=head1 EXIT STATUS/,/^=head1 [^E]/p' "$pod" | grep -A3 '^=item B<2>' |
    grep -qi 'usage error' || failures+=("abdctl(1) EXIT STATUS: 2 is not the usage error")
grep -qE '2 (on|for) (a )?usage error' "$abs_top_srcdir/README.md" ||
    failures+=("README.md does not say usage errors exit 2")

if [ ${#failures[@]} -gt 0 ]; then
    for f in "${failures[@]}"; do echo "$0: FAIL: $f" >&2; done
    fail "${#failures[@]} checks failed"
fi
echo "$0: OK"
