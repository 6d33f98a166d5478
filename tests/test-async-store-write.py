# SPDX-License-Identifier: BSD-3-Clause
# Helper of tests/test-async-store-*.sh: SEED COUNT random writes of
# random sizes (unaligned too) to $uri, then a flush (async mode: answered
# from RAM); $EXPECTED gets $DISK's content with the writes applied.
import nbd, os, random, sys
seed, count = int(sys.argv[1]), int(sys.argv[2])
rnd = random.Random(seed)
h = nbd.NBD(); h.connect_uri(os.environ["uri"])
model = bytearray(open(os.environ["DISK"], "rb").read())
for i in range(count):
    n = rnd.choice([1, 512, 4096, 5000, 65536])
    off = rnd.randrange(0, len(model) - n)
    data = rnd.randbytes(n)
    h.pwrite(data, off)
    model[off:off+n] = data
h.flush()
h.shutdown()
open(os.environ["EXPECTED"], "wb").write(model)
