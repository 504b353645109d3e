"""
Closing through a real gateway to the real RabbitMQ: frames a client sends
after its own Close are dropped as the broker drops them, and the client
gets the broker's Close-Ok (issue 21 #1, S5); a client answering the
gateway's own Close ends with a clean close (issue 16 #7).
"""

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import defer, protocol, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.logger import formatEvent, globalLogPublisher

from kaazing_promo.amqp.codec import FRAME_METHOD, PROTOCOL_HEADER, UNEXPECTED_FRAME, decodeMethod, encodeMethod
from kaazing_promo.amqp.frames import FrameReader
from kaazing_promo.ops.audit import isAuditEvent
from tests.support import IntegrationTestCase, gatewayConfig
from tests.amqpframes import CLOSE, CLOSE_OK, content, startOk


class RawAMQPClient(protocol.Protocol):
    """
    An AMQP client written frame by frame, for the sequences no client
    library sends on purpose.

    @ivar heard: the qualified name of every method heard, or the frame
        type of any other frame, in order.
    """

    def __init__(self):
        self.heard = []
        self.lost = defer.Deferred()
        self._reader = FrameReader(1 << 20)
        self._waiting = {}

    def dataReceived(self, data):
        for frameType, channel, payload, raw in self._reader.feed(data):
            if frameType != FRAME_METHOD:
                self.heard.append(frameType)
                continue
            method = decodeMethod(payload)
            self.heard.append(method.qualifiedName)
            waiting = self._waiting.pop(method.qualifiedName, None)
            if waiting is not None:
                waiting.callback(method)

    def waitFor(self, qualifiedName):
        """
        @return: a L{Deferred} firing with the next method of that name.
        """
        d = self._waiting[qualifiedName] = defer.Deferred()
        return d

    def connectionLost(self, reason):
        self.lost.callback(None)
        for waiting in self._waiting.values():
            waiting.callback(None)

    @defer.inlineCallbacks
    def openChannel(self):
        """
        Log in on vhost "/" and open channel 1.
        """
        started = self.waitFor("connection.start")
        self.transport.write(PROTOCOL_HEADER)
        yield started
        tuned = self.waitFor("connection.tune")
        self.transport.write(startOk())
        tune = yield tuned
        opened = self.waitFor("connection.open-ok")
        self.transport.write(
            encodeMethod(0, "connection.tune-ok", channel_max=tune.args["channel_max"],
                         frame_max=tune.args["frame_max"], heartbeat=0)
            + encodeMethod(0, "connection.open", virtual_host="/"))
        yield opened
        channelOpened = self.waitFor("channel.open-ok")
        self.transport.write(encodeMethod(1, "channel.open"))
        yield channelOpened


class FramesAfterCloseTests(IntegrationTestCase):

    @defer.inlineCallbacks
    def test_S5_publishesAfterCloseDropped(self):
        """
        S5 / issue 21 #1: connection.close immediately followed by publishes
        on an open channel (as amqplib sends them): the client hears the
        broker's Close-Ok and nothing else, the gateway logs no 505.
        """
        yield self.startGateway(gatewayConfig(self.mktemp()))
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        client = RawAMQPClient()
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", self.ports["amqp"]), client)
        yield client.openChannel()
        before = len(client.heard)
        closeOk = client.waitFor("connection.close-ok")
        client.transport.write(CLOSE + content(1, b"late"))
        for _ in range(10):
            # More in later reads, as a client's queue drains: before and
            # after the broker's Close-Ok, for which RabbitMQ waits for the
            # client to hang up.
            yield task.deferLater(reactor, 0.01, lambda: None)
            client.transport.write(content(1, b"later"))
        yield closeOk
        # As AMQP has it, the peer that receives Close-Ok closes the socket.
        client.transport.loseConnection()
        yield client.lost
        self.assertEqual(client.heard[before:], ["connection.close-ok"])
        yield self.gateway.contexts["amqp"].drain("test over")
        ownCloses = [formatEvent(event) for event in events
                     if event.get("code") == UNEXPECTED_FRAME or "closing with" in formatEvent(event)]
        self.assertEqual(ownCloses, [])
        [ended] = [event for event in events if isAuditEvent(event) and event.get("event") == "connection"]
        self.assertEqual(ended["reason"], "client closed the connection")


class AnswersCloseOverWebSocket(WebSocketClientProtocol):
    """
    Speaks out of turn (a frame on channel 1 before the connection is
    open), then answers the gateway's Close with Close-Ok and the WebSocket
    close in one write, as a client closing at once does.
    """

    def onOpen(self):
        self.reader = FrameReader(1 << 20)
        self.heard = []
        self.sendMessage(PROTOCOL_HEADER, isBinary=True)

    def onMessage(self, payload, isBinary):
        for frameType, channel, framePayload, raw in self.reader.feed(payload):
            name = decodeMethod(framePayload).qualifiedName
            self.heard.append(name)
            if name == "connection.start":
                self.sendMessage(encodeMethod(1, "channel.open"), isBinary=True)
            elif name == "connection.close":
                self.sendMessage(CLOSE_OK, isBinary=True)
                self.sendClose(1000)

    def onClose(self, wasClean, code, reason):
        self.factory.closed.callback((wasClean, code, self.heard))


class GatewayCloseTests(IntegrationTestCase):

    @defer.inlineCallbacks
    def test_X5_closeOkAndWebSocketCloseTogether(self):
        """
        Issue 16 #7: the client's Close-Ok and its WebSocket close in one
        read end the connection with a clean close 1000, not a close
        handshake timeout.
        """
        yield self.startGateway(gatewayConfig(self.mktemp()))
        factory = WebSocketClientFactory(f"ws://127.0.0.1:{self.ports['web']}/amqp", protocols=["amqp"])
        factory.protocol = AnswersCloseOverWebSocket
        factory.closed = defer.Deferred()
        reactor.connectTCP("127.0.0.1", self.ports["web"], factory)
        wasClean, code, heard = yield factory.closed
        self.assertEqual(heard, ["connection.start", "connection.close"])
        self.assertEqual((wasClean, code), (True, 1000))
