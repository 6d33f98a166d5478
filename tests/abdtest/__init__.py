# SPDX-License-Identifier: BSD-3-Clause
"""abd's Python test library, shared by the tests (tests/*.sh run their
Python with PYTHONPATH=tests, set by tests/functions.sh) and torture
(tests/torture/):

  device    Device, a byte-exact model of a disk; check(), read a device
            back through NBD and compare it with the model
  workload  connect() to an NBD URI; seeded random data and writes
  control   a filter's control socket: status(), abdctl(), abdctl_json()
  procs     child processes by PID with deadlines: spawn(), stop(),
            wait_for(), free_port(), tail(); Memcached
  testenv   for short inline scripts: the export, control socket, lower
            file and model file a test's shell hands over
  powercut  the model of nbdkit-powercut-plugin: what each sector may
            hold after a power cut

python3 -m abdtest (__main__.py) runs the common workloads from shell.
"""
