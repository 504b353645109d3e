"""
What the gateway needs from Twisted beyond its public API, in one place.

  - L{StreamServerEndpointService} logs a port that cannot be bound unless
    its C{_raiseSynchronously} is set (start-up must stop instead), and
    keeps the port it listens on only in C{_waitingForPort} (tests and the
    benchmark listen on port 0 and must learn which).
  - C{systemd:} endpoint strings cannot be parsed without C{LISTEN_FDS}:
    C{check-config} swaps C{_SystemdParser._sddaemon} for a stand-in while
    it checks their syntax.
  - Endpoint strings are parsed (C{endpoints._parse}, backslash escapes
    included) where a container build rewrites their interface or port.
  - C{transport.write} only queues: the bytes leave on the next reactor
    turn, after an C{epoll_ctl} to register the writer and another to drop
    it (+0.12 ms per hop measured, PERFORMANCE.md).  L{writeNow} sends at
    once when a plain TCP transport's buffer (C{dataBuffer}, C{offset},
    C{_tempDataLen}) is empty.

L{check} names whatever of this a Twisted upgrade removed.
"""

import contextlib

from twisted.application.internet import StreamServerEndpointService
from twisted.internet import abstract, defer, endpoints, tcp

# Plain TCP connections (TLS and wrapped transports go through their own write).
_SOCKET_TRANSPORTS = frozenset({tcp.Server, tcp.Client})


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
    if not callable(getattr(endpoints, "_parse", None)):
        missing.append("twisted.internet.endpoints._parse")
    written = abstract.FileDescriptor.doWrite.__code__.co_names
    for name in ("dataBuffer", "offset", "_tempDataLen"):
        if name not in written:
            missing.append(f"FileDescriptor.{name}")
    return missing


def writeNow(transport, data):
    """
    Write C{data} to C{transport}: with one C{send} at once when it is a
    plain TCP connection with nothing queued, else (or whatever the socket
    does not take) through C{transport.write}, whose buffering and
    backpressure stay as they are.
    """
    if (transport.__class__ in _SOCKET_TRANSPORTS and not transport._tempDataLen
            and transport.offset == len(transport.dataBuffer) and transport.connected
            and not transport.disconnecting):
        try:
            sent = transport.socket.send(data)
        except OSError:
            # EAGAIN, or a connection going: Twisted's own write sees to it.
            sent = 0
        if sent == len(data):
            return
        data = data[sent:]
    transport.write(data)


def parseEndpointString(description):
    """
    @return: C{(args, kwargs)} of an endpoint string, as Twisted's own
        parser splits it (backslash escapes included).
    """
    return endpoints._parse(description)


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
