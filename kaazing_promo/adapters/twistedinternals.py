"""
What the gateway needs from Twisted beyond its public API, in one place.

  - L{StreamServerEndpointService} logs a port that cannot be bound unless
    its C{_raiseSynchronously} is set (start-up must stop instead), and
    keeps the port it listens on only in C{_waitingForPort} (tests and the
    benchmark listen on port 0 and must learn which).
  - C{systemd:} endpoint strings cannot be parsed without C{LISTEN_FDS}:
    C{check-config} swaps C{_SystemdParser._sddaemon} for a stand-in while
    it checks their syntax.

L{check} names whatever of this a Twisted upgrade removed.
"""

import contextlib

from twisted.application.internet import StreamServerEndpointService
from twisted.internet import defer, endpoints


def check():
    """
    @return: a list of the private names this module needs that the
        installed Twisted lacks (empty when all are there).
    """
    missing = []
    if "_raiseSynchronously" not in vars(StreamServerEndpointService):
        missing.append("StreamServerEndpointService._raiseSynchronously")
    if "_waitingForPort" not in StreamServerEndpointService.privilegedStartService.__code__.co_names:
        missing.append("StreamServerEndpointService._waitingForPort")
    if "_sddaemon" not in getattr(getattr(endpoints, "_SystemdParser", None), "__dict__", {}):
        missing.append("twisted.internet.endpoints._SystemdParser._sddaemon")
    return missing


def listenOrFail(service):
    """
    Make C{service} (a L{StreamServerEndpointService}) raise when its port
    cannot be bound, instead of logging it and carrying on.
    """
    service._raiseSynchronously = True


def whenListening(service):
    """
    @param service: a running L{StreamServerEndpointService}.
    @return: a L{Deferred} firing with its L{IListeningPort} once it listens.
    """
    d = defer.Deferred()

    def passOn(port):
        d.callback(port)
        # Chained, not consumed: stopService needs the port from this Deferred.
        return port
    service._waitingForPort.addCallback(passOn)
    return d


@contextlib.contextmanager
def systemdDescriptors(stand_in):
    """
    While active, C{systemd:} endpoint strings take their sockets from
    C{stand_in} (an object with C{inheritedDescriptors} and
    C{inheritedNamedDescriptors}) instead of C{LISTEN_FDS}.
    """
    parser = endpoints._SystemdParser
    saved = parser.__dict__["_sddaemon"]
    parser._sddaemon = stand_in
    try:
        yield
    finally:
        parser._sddaemon = saved
