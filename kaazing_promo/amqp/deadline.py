"""
The handshake deadline of one client connection.
"""


class HandshakeDeadline:
    """
    The one handshake deadline of a connection: C{handshake_timeout}
    seconds from accept to the broker's Open-Ok, the HTTP request phase of a
    WebSocket included.  Whoever holds the connection at the time is told
    when it passes: the listener's protocol first, then the session.
    """

    def __init__(self, clock, timeout, expired):
        self._clock = clock
        self._timeout = timeout
        self._expired = expired
        self._call = clock.callLater(timeout, self._fire)

    def handOver(self, expired):
        """
        From now on, call C{expired} when the deadline passes.
        """
        self._expired = expired

    def restart(self):
        """
        Start the time again (a keep-alive HTTP connection between requests).
        """
        if self._call.active():
            self._call.reset(self._timeout)
        else:
            self._call = self._clock.callLater(self._timeout, self._fire)

    def met(self):
        """
        The handshake finished (or the connection ended): nobody is told.
        """
        if self._call.active():
            self._call.cancel()
        self._expired = None

    def _fire(self):
        expired, self._expired = self._expired, None
        if expired is not None:
            expired()
