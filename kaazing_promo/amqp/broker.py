"""
The broker side: connecting to RabbitMQ through Twisted endpoint strings,
and what the gateway remembers of the broker's Connection.Start.
"""

import socket

from twisted.internet import defer, protocol
from twisted.internet.endpoints import clientFromString
from twisted.logger import Logger

from kaazing_promo.adapters.twistedinternals import writeNow
from kaazing_promo.amqp.codec import FRAME_METHOD, PROTOCOL_HEADER, decodeMethod, encodeMethod
from kaazing_promo.amqp.frames import FrameReader

# What RabbitMQ 3.x announces, used for the gateway's own Start until the
# broker has been asked: clients decide on features from these.
DEFAULT_SERVER_PROPERTIES = {
    "product": "kaazing-promo",
    "capabilities": {
        "publisher_confirms": True,
        "exchange_exchange_bindings": True,
        "basic.nack": True,
        "consumer_cancel_notify": True,
        "connection.blocked": True,
        "consumer_priorities": True,
        "authentication_failure_close": True,
        "per_consumer_qos": True,
        "direct_reply_to": True,
    },
}

#: The reason a connection ends when no broker endpoint could be reached
#: (audit outcome C{broker-refused}); the metrics count these.
BROKER_UNREACHABLE = "broker unreachable"


def setNoDelay(transport):
    """
    Turn Nagle off: AMQP is request/response heavy and every relay hop
    would otherwise add a delayed-ACK wait.
    """
    getHandle = getattr(transport, "getHandle", None)
    handle = getHandle() if getHandle is not None else None
    if isinstance(handle, socket.socket) and handle.family in (socket.AF_INET, socket.AF_INET6):
        handle.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class BrokerStartCache:
    """
    What the gateway remembers of the broker's handshake, shared by every
    connection of a gateway: the server properties of the broker's last
    Connection.Start (refreshed on every broker connection), which the
    AMQP listener's own Start carries, and the broker's handshake methods
    decoded once.

    Why: a broker says the same Start, Tune and Open-Ok to every
    connection, and decoding them (the Start's server-properties table
    above all) and encoding the gateway's own Start were a tenth of the
    gateway's CPU per connection (bench/results/20261206T102940Z).

    @ivar serverProperties: the broker's, or L{DEFAULT_SERVER_PROPERTIES}
        until it has been asked.
    @ivar fromBroker: whether C{serverProperties} came from the broker.
    """

    #: How many distinct broker methods are kept decoded; a broker's
    #: handshake has three, a cluster's nodes each their own Start.
    KEEP = 32

    def __init__(self):
        self.serverProperties = DEFAULT_SERVER_PROPERTIES
        self.fromBroker = False
        self._decoded = {}
        self._ownStart = None

    def update(self, serverProperties):
        if serverProperties != self.serverProperties:
            self._ownStart = None
        self.serverProperties = serverProperties
        self.fromBroker = True

    def decodeBrokerMethod(self, payload):
        """
        L{decodeMethod} for the payload of a method frame from the broker,
        answered from memory when the broker sent the same bytes before.
        The L{Method} returned is shared: never change its C{args}.

        Only the broker's frames come here: a client's Start-Ok carries a
        password, which no cache may keep.

        @raise AMQPError: as L{decodeMethod} (nothing is remembered).
        """
        payload = bytes(payload)
        method = self._decoded.get(payload)
        if method is None:
            method = decodeMethod(payload)
            if len(self._decoded) >= self.KEEP:
                # Not a broker's handshake (it repeats): keep the newest only.
                self._decoded.clear()
            self._decoded[payload] = method
        return method

    def ownStart(self, mechanisms, locales):
        """
        @return: the frame of the gateway's own Connection.Start, with the
            broker's server properties, encoded once for each of them.
        """
        key = (mechanisms, locales)
        if self._ownStart is None or self._ownStart[0] != key:
            self._ownStart = (key, encodeMethod(
                0, "connection.start", version_major=0, version_minor=9,
                server_properties=self.serverProperties, mechanisms=mechanisms, locales=locales))
        return self._ownStart[1]


class BrokerProtocol(protocol.Protocol):
    """
    The gateway's connection to the broker for one client: bytes in and
    out, nothing more.  The L{GatewaySession} does the thinking.
    """

    def __init__(self, session):
        self.session = session

    def connectionMade(self):
        setNoDelay(self.transport)

    def dataReceived(self, data):
        self.session.brokerDataReceived(data)

    def write(self, data):
        """
        Send C{data} to the broker, at once when nothing is queued.
        """
        writeNow(self.transport, data)

    def connectionLost(self, reason):
        # Let go of the session as the connection ends: no cycle keeps it
        # (and all it holds) waiting for the garbage collector.
        session, self.session = self.session, None
        session.brokerConnectionLost()


class _BrokerFactory(protocol.Factory):
    """
    Builds the one L{BrokerProtocol} of one connection attempt.  Twisted's
    connector keeps its factory in a reference cycle with its transport
    (twisted#7119, "wontfix"), so the factory hands its session over and
    keeps nothing.
    """

    noisy = False

    def __init__(self, session):
        self.session = session

    def buildProtocol(self, addr):
        session, self.session = self.session, None
        return BrokerProtocol(session)


class BrokerConnector:
    """
    Connects to the broker: the primary endpoint, then each fallback in turn.

    @param endpoints: Twisted client endpoint strings.
    """

    log = Logger()

    def __init__(self, reactor, endpoints):
        self._reactor = reactor
        self.descriptions = list(endpoints)
        self._endpoints = [clientFromString(reactor, description) for description in endpoints]

    @defer.inlineCallbacks
    def connect(self, session):
        """
        @return: a L{Deferred} firing with the connected L{BrokerProtocol}.
        """
        failure = None
        for description, endpoint in zip(self.descriptions, self._endpoints):
            try:
                broker = yield endpoint.connect(_BrokerFactory(session))
            except Exception as e:
                failure = e
                self.log.debug("broker {endpoint} unreachable: {error}", endpoint=description, error=e)
                continue
            return broker
        raise failure

    def probe(self, cache, timeout=5.0):
        """
        Connect, read the broker's Start into C{cache}, and hang up.

        @return: a L{Deferred} firing with C{True} when the broker answered
            with a Start within C{timeout}, else C{False}.
        """
        session = _ProbeSession(cache)
        d = self.connect(session)
        d.addCallback(session.connected)
        d.addErrback(lambda _: False)
        d.addTimeout(timeout, self._reactor, onTimeoutCancel=lambda *_: session.abort())
        return d


class _ProbeSession:
    """
    Just enough of a session to read one Connection.Start.
    """

    def __init__(self, cache):
        self.cache = cache
        self.broker = None
        self.done = defer.Deferred()
        self._reader = FrameReader()

    def connected(self, broker):
        self.broker = broker
        broker.transport.write(PROTOCOL_HEADER)
        return self.done

    def brokerDataReceived(self, data):
        try:
            frames = self._reader.feed(data)
        except Exception:
            return self._end(False)
        for frameType, channel, payload, raw in frames:
            if frameType == FRAME_METHOD:
                method = decodeMethod(payload)
                if method.qualifiedName == "connection.start":
                    self.cache.update(method.args["server_properties"])
                    return self._end(True)
        return None

    def brokerConnectionLost(self):
        self._end(False)

    def abort(self):
        if self.broker is not None:
            self.broker.transport.abortConnection()
        return False

    def _end(self, result):
        if not self.done.called:
            self.done.callback(result)
        if self.broker is not None:
            self.broker.transport.loseConnection()
