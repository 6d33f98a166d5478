# SPDX-License-Identifier: BSD-3-Clause
# abd tests: one request to a filter's control socket (common/control.c),
# for tests that poll faster than starting abdctl allows.
#
#   status(ctl)    the `status` fields, {name: value as text}

import socket


def status(ctl, timeout=10):
    """The filter's status fields; the reply's last line (OK) is left out."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(ctl)
    s.sendall(b"status\n")
    data = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        data += b
    s.close()
    return dict(l.split(": ", 1) for l in data.decode().splitlines()
                if ": " in l)
