"""The harness the tests, the load tests and the benchmark share: real processes, ports, /proc.

Not part of the installed product. Each module has one job: ``process`` (a command in its own
process group, stopped by PID), ``servers`` (the command lines of the servers under test),
``ports``, ``procfs`` (figures from /proc), ``probe`` (one HTTP GET), ``machine`` (what ran the
numbers), ``nginx`` (nginx from examples/nginx.conf), ``haproxy`` (HAProxy in front of several
servers) and ``netns`` (hosts as network namespaces on a private bridge).
"""

import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")
