"""
The gateway's tests: tests/unit runs in memory or on loopback alone,
tests/integration against RabbitMQ, Redis, Chromium, podman, HAProxy and
twistd subprocesses.  The other modules here are the helpers they share;
none of them is a test module, and no module imports a test module.
"""

import os

#: The checkout (README.md, etc/, dev), whatever the depth of the module asking.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
