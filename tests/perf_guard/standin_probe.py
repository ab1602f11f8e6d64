#!/usr/bin/env python3
"""A stand-in for para-host-probe (tests/perf_guard/selftest.sh): its JSON
line, with the ping-pong in STANDIN_PINGPONG (ns, default 120: quiet)."""
import os

print('{"cpus":[0,1],"pingpong_ns":%s,"write_local_ms":3.0,'
      '"write_remote_ms":9.0,"fault_us":11.0}'
      % os.environ.get("STANDIN_PINGPONG", "120"))
