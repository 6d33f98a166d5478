# SPDX-License-Identifier: BSD-3-Clause
"""What a test's Python gets from its shell script, in the environment:
$uri (the export), $CTL (the filter's control socket), $DISK (the lower
file), $EXPECTED (where the model is saved), $SEED.  For short inline
scripts:  from abdtest.testenv import *"""

import os
import sys

import abdtest.control
from abdtest.device import Mismatch
from abdtest.workload import Client

__all__ = ["abdctl", "status", "client", "save", "expect_on_file",
           "Mismatch", "os", "sys"]


def abdctl(*args):
    """abdctl -s $CTL ARGS; its output.  A failure ends the program."""
    rc, out = abdtest.control.abdctl(os.environ["CTL"], *args)
    if rc != 0:
        sys.exit("abdctl %s: exit %d: %s" % (" ".join(args), rc, out))
    return out


def status():
    """abdctl --json status of $CTL."""
    s = abdtest.control.abdctl_json(os.environ["CTL"])
    if s is None:
        sys.exit("abdctl --json status failed")
    return s


def client(base=None):
    """A Client over $uri whose model starts as BASE (default $DISK)."""
    return Client(base or os.environ["DISK"],
                  seed=int(os.environ.get("SEED", "1")))


def expect_on_file(c, what):
    c.expect_on_file(os.environ["DISK"], what)


def save(c):
    c.save(os.environ["EXPECTED"])
