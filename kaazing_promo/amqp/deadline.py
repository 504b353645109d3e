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

    #: While the connection's login waits: the seconds that were left.
    _remaining = None

    def restart(self):
        """
        Start the time again (a keep-alive HTTP connection between requests).
        """
        self._remaining = None
        if self._call.active():
            self._call.reset(self._timeout)
        else:
            self._call = self._clock.callLater(self._timeout, self._fire)

    def pause(self):
        """
        Stop the time while the client's login is the gateway's to answer
        (waiting for its turn in the login queue, or being checked): in a
        storm of logins that wait is the gateway's, and a client closed for
        it would only come back to the end of the queue (issue 19).  The
        wait itself is bounded by the queue and the realm's own timeouts.
        """
        if self._call.active():
            self._remaining = max(0.0, self._call.getTime() - self._clock.seconds())
            self._call.cancel()

    def resume(self):
        """
        The login is answered: the time left before L{pause} runs on.
        """
        if self._remaining is not None:
            remaining, self._remaining = self._remaining, None
            if self._expired is not None:
                self._call = self._clock.callLater(remaining, self._fire)

    def met(self):
        """
        The handshake finished (or the connection ended): nobody is told.
        """
        if self._call.active():
            self._call.cancel()
        self._expired = None
        self._remaining = None

    def _fire(self):
        expired, self._expired = self._expired, None
        if expired is not None:
            expired()
