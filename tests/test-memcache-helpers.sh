# SPDX-License-Identifier: BSD-3-Clause
# Helpers for the tests of nbdkit-memcache-filter, sourced after
# tests/functions.sh.  Not a test itself (not in TESTS).

requires nbdkit memcached

requires_python_nbd

# MEMCACHE_PROTOCOL=meta|text: every nbdkit these tests start gets
# memcache-protocol=$MEMCACHE_PROTOCOL (tests/test-memcache-text.sh runs
# the suite again with text); unset, the filter's default (meta).
eval "$(declare -f start_nbdkit | sed '1s/^start_nbdkit/_start_nbdkit_any_protocol/')"
start_nbdkit ()
{
    if [ -n "${MEMCACHE_PROTOCOL:-}" ]; then
        _start_nbdkit_any_protocol "$@" memcache-protocol="$MEMCACHE_PROTOCOL"
    else
        _start_nbdkit_any_protocol "$@"
    fi
}

# mc_start_port NAME PORT [ARGS...]: memcached on 127.0.0.1:PORT (used to
# restart a server on the same port).  Sets $mc_pid; stopped at exit.
mc_start_port ()
{
    local name=$1 port=$2 i; shift 2
    memcached -l 127.0.0.1 -p "$port" -U 0 -u root -m 64 "$@" \
        >>"$tmp/memcached-$name.log" 2>&1 &
    mc_pid=$!
    memcached_at_exit "$mc_pid"
    for (( i=0; i<100; i++ )); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.05
    done
    fail "memcached $name did not start on port $port"
}

# mc_start_three [ARGS...]: three memcached servers.  Sets the arrays
# MC_PORTS and MC_PIDS and MC_SERVERS (the memcache-servers= value).
mc_start_three ()
{
    local i
    MC_PORTS=() MC_PIDS=()
    for i in 0 1 2; do
        start_memcached "s$i" "$@"
        MC_PORTS+=("$mc_port")
        MC_PIDS+=("$mc_pid")
    done
    MC_SERVERS="127.0.0.1:${MC_PORTS[0]},127.0.0.1:${MC_PORTS[1]},127.0.0.1:${MC_PORTS[2]}"
}

# mc_status SOCKET EXPR: evaluate the Python expression EXPR on the JSON
# status `d`, e.g. mc_status $ctl 'd["servers"]["server1"]["state"]'.
mc_status ()
{
    "$ABDCTL" -s "$1" --json status |
        "$PY" -c 'import json, sys; d = json.load(sys.stdin); print('"$2"')'
}

# mc_server_of SOCKET BLOCK: the index of the server that holds BLOCK.
mc_server_of ()
{
    "$ABDCTL" -s "$1" locate "$2" | awk '$1 == "server:" { print $2 }'
}

# mc_key_of SOCKET BLOCK: the key BLOCK is stored under now.
mc_key_of ()
{
    "$ABDCTL" -s "$1" locate "$2" | awk '$1 == "key:" { print $2 }'
}

# mc_py CODE: run Python with the nbd module and these helpers (from
# tests/memcached_peer.py): mc_get(port, key) -> bytes or None,
# mc_set(port, key, value)
mc_py ()
{
    PYTHONPATH=$abs_top_srcdir/tests "$PY" -c '
import os, sys
from memcached_peer import get as mc_get, put as mc_set
'"$1"
}
