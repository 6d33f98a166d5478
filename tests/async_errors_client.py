# SPDX-License-Identifier: BSD-3-Clause
"""The NBD client of the lower-error tests (test-async-lower-*-errors.sh,
test-async-exit-lost-data.sh), over $uri with the model file $EXPECTED.
Each command prints one line and exits 0 unless the result was not what
the test asked for:

  write SEED      seeded writes (aligned, unaligned, last block); applies
                  them to $EXPECTED too; prints the bytes of the 4K blocks
                  touched
  overwrite SEED  rewrites the first of those writes (1 MiB at 1 MiB)
  flush           prints "ok" or the errno name of the failure
  pwrite OFF LEN  prints "ok" or the errno name (data: 0x5a; applied to
                  $EXPECTED only when it succeeded)
  compare         reads the whole export, must equal $EXPECTED"""

import os
import random
import sys

import nbd

from abdtest.device import Device, check_or_exit
from abdtest.workload import connect


def writes(seed, size):
    rnd = random.Random(seed)
    return [(1 << 20, rnd.randbytes(1 << 20)),
            (3 * (1 << 20) + 100, rnd.randbytes(10000)),
            (size - 4096, rnd.randbytes(4096))]


def main():
    h = connect()
    exp_path = os.environ["EXPECTED"]
    dev = Device(h.get_size(), exp_path)
    cmd = sys.argv[1]
    if cmd in ("write", "overwrite"):
        ws = writes(int(sys.argv[2]), dev.size)
        if cmd == "overwrite":
            ws = ws[:1]
        blocks = set()
        for off, data in ws:
            h.pwrite(data, off)
            dev.write(off, data)
            blocks.update(range(off // 4096, (off + len(data) - 1) // 4096 + 1))
        dev.save(exp_path)
        print(len(blocks) * 4096)
    elif cmd in ("flush", "pwrite"):
        try:
            if cmd == "flush":
                h.flush()
            else:
                off, n = int(sys.argv[2]), int(sys.argv[3])
                h.pwrite(b"\x5a" * n, off)
                dev.write(off, b"\x5a" * n)
                dev.save(exp_path)
            print("ok")
        except nbd.Error as e:
            print(e.errno)
    elif cmd == "compare":
        check_or_exit(dev.check, h, "read through the filter", chunk=1 << 20)
        print("same")
    else:
        sys.exit("unknown command " + cmd)
    h.shutdown()


main()
