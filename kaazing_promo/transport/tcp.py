"""
The AMQP listener: AMQP 0-9-1 clients over TCP or TLS, authenticated by
their own SASL PLAIN/AMQPLAIN credentials (X1), then promoted.
"""

import socket

from twisted.internet import protocol
from zope.interface import implementer

from kaazing_promo.adapters.twistedinternals import writeNow
from kaazing_promo.amqp.broker import setNoDelay
from kaazing_promo.interfaces import IClientLink
from kaazing_promo.transport.address import describePeer
from kaazing_promo.transport.pump import CoupledTransports


@implementer(IClientLink)
class AMQPListenerProtocol(CoupledTransports, protocol.Protocol):
    """
    One AMQP client.  The gateway answers its protocol header with its own
    Connection.Start; the broker is contacted only after the login succeeded.
    """

    session = None
    _admission = None
    _deadline = None
    _refused = False

    def connectionMade(self):
        setNoDelay(self.transport)
        handle = getattr(self.transport, "getHandle", lambda: None)()
        if isinstance(handle, socket.socket):
            # Dead peers go (the listener's ping_interval has its WebSocket twin).
            handle.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        context = self.factory.context
        # One deadline from accept to Open-Ok, whether the client speaks or not.
        self._deadline = context.startDeadline(self.transport.abortConnection)
        # Behind a haproxy: endpoint the client's address is known only once
        # the PROXY header is read, with the first bytes.
        if not context.proxied:
            self._admit()

    def _admit(self):
        """
        X5: take the connection's place in the listener's limits, or close it at once.
        """
        self._admission = self.factory.context.admit(describePeer(self.transport.getPeer()))
        if self._admission is None:
            # Over max_connections: refused before any byte, like a full backlog.
            self._refused = True
            self.transport.abortConnection()
            return False
        return True

    def dataReceived(self, data):
        if self._refused:
            return
        if self.session is None:
            if not self._start():
                return
        self.session.clientDataReceived(data)

    def _start(self):
        if self._admission is None and not self._admit():
            return False
        context = self.factory.context
        source = describePeer(self.transport.getPeer())
        self.session = context.makeSession(
            source=source, ownStart=True, avatar=context.anonymous if not context.requiresLogin else None)
        self.session.clientConnected(self, self._deadline)
        return True

    def connectionLost(self, reason):
        if self._deadline is not None:
            self._deadline.met()
        if self._admission is not None:
            self._admission.release()
        session, self.session = self.session, None
        if session is not None:
            session.clientConnectionLost()

    # The session's view of its client.
    def write(self, data):
        writeNow(self.transport, data)

    def close(self, failed):
        self.transport.loseConnection()


class AMQPListenerFactory(protocol.Factory):
    protocol = AMQPListenerProtocol

    def __init__(self, context):
        self.context = context
