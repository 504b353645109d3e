"""
Integration tests: against the real RabbitMQ (and dedicated nodes), Redis,
Chromium, podman, HAProxy and twistd subprocesses.  C{./dev test} runs them
with the unit tests.
"""
