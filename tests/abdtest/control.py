# SPDX-License-Identifier: BSD-3-Clause
"""A filter's control socket (common/control.c): one request directly,
for tests that poll faster than starting abdctl allows, or through the
built abdctl ($ABDCTL)."""

import json
import os
import socket
import subprocess

ABDCTL = os.environ.get("ABDCTL") or os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))), "abdctl", "abdctl")


def _request(ctl, line, timeout):
    """Send LINE (bytes) and return the whole reply as text."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(ctl)
        s.sendall(line)
        data = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
    return data.decode()


def status(ctl, timeout=10):
    """The filter's status fields, {name: value as text}; the reply's last
    line (OK) is left out."""
    return dict(l.split(": ", 1)
                for l in _request(ctl, b"status\n", timeout).splitlines()
                if ": " in l)


def request_json(ctl, *words, timeout=10):
    """The answer to WORDS --json: the reply's first line, parsed."""
    line = " ".join(words + ("--json",)) + "\n"
    return json.loads(_request(ctl, line.encode(), timeout).splitlines()[0])


def status_json(ctl, timeout=10):
    """The filter's status as JSON (nested objects kept)."""
    return request_json(ctl, "status", timeout=timeout)


def field(ctl, name):
    """One status field as an int."""
    return int(status(ctl)[name])


def abdctl(ctl, *args, timeout=60):
    """abdctl -s CTL ARGS: (exit status, stdout and stderr)."""
    r = subprocess.run([ABDCTL, "-s", ctl] + list(args),
                       capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout + r.stderr


def abdctl_json(ctl, *args):
    """abdctl -s CTL --json ARGS (default status), parsed; None if abdctl
    failed or did not print JSON."""
    rc, out = abdctl(ctl, "--json", *(args or ("status",)))
    if rc != 0:
        return None
    try:
        return json.loads(out)
    except ValueError:
        return None
