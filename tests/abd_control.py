# SPDX-License-Identifier: BSD-3-Clause
# abd tests: one request to a filter's control socket (common/control.c),
# for tests that poll faster than starting abdctl allows.
#
#   status(ctl)       the `status` fields, {name: value as text}
#   status_json(ctl)  `status --json`, parsed (nested objects kept)
#   request_json(ctl, *words)  any request with --json, parsed

import json
import socket


def _request(ctl, line, timeout):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(ctl)
    s.sendall(line)
    data = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        data += b
    s.close()
    return data.decode()


def status(ctl, timeout=10):
    """The filter's status fields; the reply's last line (OK) is left out."""
    return dict(l.split(": ", 1)
                for l in _request(ctl, b"status\n", timeout).splitlines()
                if ": " in l)


def request_json(ctl, *words, timeout=10):
    """The answer to WORDS --json: the reply's first line, parsed."""
    line = " ".join(words + ("--json",)) + "\n"
    return json.loads(_request(ctl, line.encode(), timeout).splitlines()[0])


def status_json(ctl, timeout=10):
    """The filter's status as JSON."""
    return request_json(ctl, "status", timeout=timeout)
