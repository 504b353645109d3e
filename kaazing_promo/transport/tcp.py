"""
The AMQP listener: AMQP 0-9-1 clients over TCP or TLS, authenticated by
their own SASL PLAIN/AMQPLAIN credentials (X1), then promoted.
"""

import socket

from twisted.internet import protocol

from kaazing_promo.amqp.broker import setNoDelay
from kaazing_promo.transport.address import describePeer


class AMQPListenerProtocol(protocol.Protocol):
    """
    One AMQP client.  The gateway answers its protocol header with its own
    Connection.Start; the broker is contacted only after the login succeeded.
    """

    session = None
    _idle = None

    def connectionMade(self):
        setNoDelay(self.transport)
        handle = getattr(self.transport, "getHandle", lambda: None)()
        if isinstance(handle, socket.socket):
            # Dead peers go (the listener's ping_interval has its WebSocket twin).
            handle.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        # The session starts with the first bytes: behind a haproxy: endpoint
        # only then is the PROXY header read and getPeer() the real client.
        context = self.factory.context
        self._idle = context.clock.callLater(context.listener.handshake_timeout, self.transport.abortConnection)

    def dataReceived(self, data):
        if self.session is None:
            if not self._start():
                return
        self.session.clientDataReceived(data)

    def _start(self):
        self._idle.cancel()
        context = self.factory.context
        source = describePeer(self.transport.getPeer())
        if not context.admits(source):
            # Over max_connections: refused before any byte, like a full backlog.
            self.transport.abortConnection()
            return False
        self.session = context.makeSession(
            source=source, ownStart=True,
            avatar=None if context.gate else context.anonymous, gate=context.gate)
        self.session.clientConnected(self)
        return True

    def connectionLost(self, reason):
        if self._idle is not None and self._idle.active():
            self._idle.cancel()
        session, self.session = self.session, None
        if session is not None:
            session.clientConnectionLost()

    # The session's view of its client.
    def write(self, data):
        self.transport.write(data)

    def close(self, failed):
        self.transport.loseConnection()


class AMQPListenerFactory(protocol.Factory):
    protocol = AMQPListenerProtocol

    def __init__(self, context):
        self.context = context
