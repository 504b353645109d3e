"""
Unit tests: in memory (StringTransport, MemoryReactorClock, Clock, fakes
from tests/fakes.py) or on loopback alone; no RabbitMQ, Redis, Chromium,
podman, HAProxy or gateway subprocess.  C{./dev test --unit} or
C{tox -e unit} runs them.
"""
