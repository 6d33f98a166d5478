# SPDX-License-Identifier: BSD-3-Clause
"""torture: random I/O with faults against the abd stack, every byte read
checked against a model of the disk.

It starts three memcached servers (memcache and full stacks) and nbdkit
with the chosen stack over a file in a temporary directory:

  log       nbdkit's log filter, top: tells when a closed connection's
            requests have all finished (its "Disconnect" line)
  async     the write-back filter (async and full stacks), with its
            dirty data in an async-store-file on /dev/shm (unless
            --no-store-file), so that a SIGKILL or abort of nbdkit loses
            nothing acknowledged: the crash fault checks that
  memcache  the read cache (memcache and full stacks)
  error     nbdkit's error filter: lower writes (pwrite, zero, trim) fail
            while $tmp/wfail exists, lower reads while $tmp/rfail exists
  delay     nbdkit's delay filter: slow lower reads (1 ms); writes too
            with --delay-writes
  powercut  the image behind a volatile write cache (this project's
            nbdkit-powercut-plugin): only what is flushed survives
            nbdkit's exit, so a flush that does not reach it is caught
            by the power cut fault.  The default under the async filter;
            the memcache stack uses nbdkit's file plugin (--lower).

then issues random requests from several connections with many in
flight, while a seeded schedule injects faults, and checks every read
against the model (a bytearray holding what the disk must contain).

The model.  Each byte has a state:
  exact    a read must return the model's byte
  weak     trimmed: a read returns the model's byte or zero
  unknown  excluded from checks: written by a failed request, or by a
           request that was in flight when its connection was closed or
           nbdkit was stopped, until it is written again
A write, zero or trim updates the model when it completes successfully.
Requests that modify the disk are never issued while another one whose
range overlaps them is in flight, so the order in which they land is the
order in which they completed.  A read is not checked on the bytes of
modifying requests that were in flight at any time while it was.

Determinism.  The request list comes from random.Random(SEED) alone: a
request that would overlap one in flight, or whose connection has
--depth requests in flight, waits; nothing is skipped or reordered.  The
fault schedule comes from its own generator and is placed by request
index.  So the same seed gives the same requests and faults in the same
order; only timing (which requests overlap in time) differs.

"""
