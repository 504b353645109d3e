"""
Where ./dev should start a RabbitMQ: the broker endpoint of a configuration
when it is on this host and nothing accepts a connection there.

    python .ci/broker.py [CONFIG]

prints C{HOST PORT} of the first local C{[broker] endpoint} (or fallback)
that nothing answers on, when none of them answers; prints nothing when one
answers, when they are on other hosts, or when they are not plain
C{tcp:}/C{tcp6:}/C{tls:} endpoints (the gateway's own start-up check says
whether those answer).  Without CONFIG: the gateway's default endpoint.  A
configuration that does not load prints nothing either: twistd says why,
in one line, right after.  Runs with the venv's Python (./dev installs it
first).
"""

import re
import socket
import sys

from kaazing_promo.config import DEFAULT_BROKER, loadConfig
from kaazing_promo.errors import ConfigError

#: Host names that are this machine.
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def tcpAddress(description):
    """
    @param description: a Twisted client endpoint string, e.g.
        C{tcp:host=127.0.0.1:port=5672} or C{tcp:127.0.0.1:5672}.
    @return: C{(host, port)} of a C{tcp:}, C{tcp6:} or C{tls:} endpoint,
        else L{None}.
    """
    # Twisted's syntax: colon-separated, backslash escapes, then key=value
    # arguments or positional host and port.
    parts = [re.sub(r"\\(.)", r"\1", part) for part in re.split(r"(?<!\\):", description)]
    if parts[0] not in ("tcp", "tcp6", "tls"):
        return None
    positional = [part for part in parts[1:] if "=" not in part]
    keywords = dict(part.split("=", 1) for part in parts[1:] if "=" in part)
    host = keywords.get("host", positional[0] if positional else None)
    port = keywords.get("port", positional[1] if len(positional) > 1 else None)
    try:
        return (host, int(port)) if host else None
    except (TypeError, ValueError):
        return None


def answers(host, port, timeout=2.0):
    """
    @return: whether something accepts a TCP connection on C{host:port}.
    """
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def brokerToStart(endpoints, answers=answers):
    """
    @param endpoints: the broker endpoint strings, in the order the gateway
        tries them.
    @return: C{(host, port)} of the first local endpoint when no endpoint
        answers, else L{None}.
    """
    addresses = [tcpAddress(endpoint) for endpoint in endpoints]
    if any(address is None or answers(*address) for address in addresses):
        return None
    local = [address for address in addresses if address[0] in LOCAL_HOSTS]
    return local[0] if local else None


def main(argv):
    if argv:
        try:
            broker = loadConfig(argv[0]).broker
        except ConfigError:
            return 0
        endpoints = [broker.endpoint, *broker.fallback_endpoints]
    else:
        endpoints = [DEFAULT_BROKER]
    address = brokerToStart(endpoints)
    if address is not None:
        print(*address)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
