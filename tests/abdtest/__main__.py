# SPDX-License-Identifier: BSD-3-Clause
"""The shared workloads from the shell (tests/*.sh):

  python3 -m abdtest write --seed S --count N [--sizes N,N...] [--uniform]
                           [--base FILE] --expected FILE [--flush]
      N random writes (workload.random_writes; sizes from --sizes, default
      workload.SIZES; --uniform: at uniform random offsets only) to $uri
      over a model that starts as FILE (or zeros); the model is saved as
      --expected
  python3 -m abdtest spaced --seed S --count N --size N --gap N [--base FILE]
                            --expected FILE [--flush]
      N writes of --size random bytes, --gap bytes apart from a seeded
      4 KiB-aligned start (workload.spaced_writes): scattered blocks
  python3 -m abdtest check --expected FILE [--reads N] [--seed S]
      read all of $uri, and N reads at random places: it must equal FILE
  python3 -m abdtest random-file PATH SIZE SEED
      PATH gets SIZE bytes of seeded random data

Exit status 0, or 1 with a message saying what differs."""

import argparse
import random

from abdtest.device import Device, check_or_exit
from abdtest.workload import SIZES, connect, random_bytes, random_writes, \
    spaced_writes


def main():
    p = argparse.ArgumentParser(prog="abdtest")
    sub = p.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write")
    w.add_argument("--seed", type=int, required=True)
    w.add_argument("--count", type=int, required=True)
    w.add_argument("--base")
    w.add_argument("--expected", required=True)
    w.add_argument("--flush", action="store_true")
    w.add_argument("--uniform", action="store_true")
    w.add_argument("--sizes", type=lambda a: [int(x) for x in a.split(",")],
                   default=SIZES)
    w.add_argument("--uri")
    sp = sub.add_parser("spaced")
    for name in ("--seed", "--count", "--size", "--gap"):
        sp.add_argument(name, type=int, required=True)
    sp.add_argument("--base")
    sp.add_argument("--expected", required=True)
    sp.add_argument("--flush", action="store_true")
    sp.add_argument("--uri")
    c = sub.add_parser("check")
    c.add_argument("--expected", required=True)
    c.add_argument("--reads", type=int, default=0)
    c.add_argument("--seed", type=int, default=3)
    c.add_argument("--uri")
    r = sub.add_parser("random-file")
    r.add_argument("path")
    r.add_argument("size", type=int)
    r.add_argument("seed", type=int)
    a = p.parse_args()

    if a.cmd == "random-file":
        random_bytes(a.path, a.size, a.seed)
        return
    h = connect(a.uri)
    if a.cmd == "check":
        dev = Device(h.get_size(), a.expected)
        check_or_exit(dev.check, h, rnd=random.Random(a.seed), reads=a.reads)
    else:
        dev = Device(h.get_size(), a.base)
        rnd = random.Random(a.seed)
        if a.cmd == "spaced":
            start = rnd.randrange(0, (dev.size - a.count * a.gap) // 4096) * 4096
            spaced_writes(h, dev, rnd, start, a.count, a.size, a.gap)
        elif a.uniform:
            random_writes(h, dev, rnd, a.count, a.sizes, hot=0, aligned=False)
        else:
            random_writes(h, dev, rnd, a.count, a.sizes)
        if a.flush:
            h.flush()
        dev.save(a.expected)
    h.shutdown()


main()
