#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# nbdkit-async-filter under fio (ioengine=nbd): 4 jobs of random writes,
# mixed block sizes 4k-64k, iodepth 16, 8 MiB each (32 MiB), crc32c
# verify headers, read back and verified in the same job through the
# filter (async-writeback-delay=2000 keeps much of it in RAM while it is
# read back).  fio must exit 0, with no job error, having written and
# verified every byte.  Then `abdctl flush`, stop nbdkit (drains), and run
# fio's verify-only pass with the same job parameters against the file
# through a plain nbdkit file server (no filter): it must pass.

source "${abs_top_srcdir:-.}/tests/functions.sh"
source "$abs_top_srcdir/tests/test-async-helpers.sh"
requires fio
if ! fio --enghelp=nbd 2>/dev/null | grep -q '^uri'; then
    echo "$0: SKIP: fio has no nbd ioengine"
    exit 77
fi

MiB=$(( 1024 * 1024 ))
truncate -s $(( 40 * MiB )) "$tmp/img"

# run_fio LOG URI EXTRA...: the job, JSON output in LOG.
run_fio ()
{
    local out=$1 u=$2; shift 2
    fio --name=async --ioengine=nbd --uri="$u" \
        --rw=randwrite --bsrange=4k-64k --numjobs=4 --size=8M \
        --offset_increment=8M --iodepth=16 \
        --verify=crc32c --verify_fatal=1 --randrepeat=1 --randseed=4242 \
        --verify_state_save=0 \
        --output-format=json --output="$out" "$@"
}

# check_fio LOG WRITE_BYTES READ_BYTES: every job ended without error and
# moved the given bytes (per job).
check_fio ()
{
    "$PY" - "$@" <<'EOF'
import json, sys
log, wb, rb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
text = open(log).read()
d = json.loads(text[text.index("{"):])
jobs = d["jobs"]
assert len(jobs) == 4, "expected 4 jobs, got %d" % len(jobs)
for j in jobs:
    assert j["error"] == 0, "job %s: error %d" % (j["jobname"], j["error"])
    assert j["write"]["io_bytes"] == wb, \
        "job wrote %d bytes, expected %d" % (j["write"]["io_bytes"], wb)
    assert j["read"]["io_bytes"] == rb, \
        "job read (verified) %d bytes, expected %d" % (j["read"]["io_bytes"], rb)
EOF
}

ctl=$tmp/ctl
async_start fio --filter="$ASYNC_FILTER" file "$tmp/img" \
    async-control="$ctl" async-writeback-delay=2000 async-max-dirty=64M

rc=0
run_fio "$tmp/fio1.json" "$uri" --end_fsync=1 || rc=$?
[ $rc -eq 0 ] || { cat "$tmp/fio1.json" >&2; fail "fio through the filter: exit $rc"; }
check_fio "$tmp/fio1.json" $(( 8 * MiB )) $(( 8 * MiB )) ||
    fail "fio through the filter: bad result"
echo "fio through the filter: OK; dirty_bytes right after: $(st "$ctl" dirty_bytes)"
[ "$(st "$ctl" client_written_bytes)" -eq $(( 32 * MiB )) ] ||
    fail "client_written_bytes $(st "$ctl" client_written_bytes), expected 32 MiB"

abdctl -s "$ctl" flush 60 || fail "abdctl flush failed"
[ "$(st "$ctl" lower_write_errors)" -eq 0 ] || fail "lower write errors"
stop_nbdkit "$pid"

# The lower file alone, through a plain file server.
start_nbdkit plain file "$tmp/img" --readonly
rc=0
run_fio "$tmp/fio2.json" "$uri" --verify_only=1 || rc=$?
[ $rc -eq 0 ] || { cat "$tmp/fio2.json" >&2; fail "fio verify_only on the lower file: exit $rc"; }
# (fio counts the writes it replays without doing them; the server is
# read-only, so none reached it.)
check_fio "$tmp/fio2.json" $(( 8 * MiB )) $(( 8 * MiB )) ||
    fail "fio verify_only on the lower file: bad result"
echo "fio verify_only on the lower file: OK"
kill_wait "$pid" 10

echo "$0: OK"
