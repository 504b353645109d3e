"""
Through a real gateway to the real RabbitMQ on 127.0.0.1:5672: unmodified
AMQP clients over TCP and over WebSocket, byte-equal messages, and the
broker seeing the promoted identity.
"""

import os

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import defer, error, reactor

from tests.support import (
    IntegrationTestCase, brokerConnectionUsers, closeClient, connectTCP, connectWebSocket, createUsers,
    deleteUsers, gatewayConfig, roundTrip, uniqueName)

SIZES = [0, 1, 4096, 1 << 20]


def bodies():
    return [os.urandom(size) for size in SIZES]


class ConsolidatedRelayTests(IntegrationTestCase):
    """
    auth = "none" listeners, consolidated to a broker user made for the test.
    """

    @defer.inlineCallbacks
    def setUp(self):
        self.brokerUser = uniqueName("webuser")
        yield createUsers({self.brokerUser: "broker-pw"})
        self.addCleanup(deleteUsers, [self.brokerUser])
        config = gatewayConfig(self.mktemp(), promotion={
            "mode": "consolidated", "user": self.brokerUser, "secrets": {self.brokerUser: "broker-pw"}})
        yield self.startGateway(config)

    @defer.inlineCallbacks
    def test_tcpRoundTrip(self):
        """
        A txamqp client through the AMQP listener: 0 B, 1 B, 4 KiB and 1 MiB
        (multi-frame) messages come back byte-equal.
        """
        client = yield connectTCP(self.ports["amqp"])
        sent = bodies()
        received = yield roundTrip(client, sent)
        self.assertEqual(received, sent)
        yield closeClient(client)

    @defer.inlineCallbacks
    def test_webSocketRoundTrip(self):
        """
        A txamqp client inside an Autobahn WebSocket client, through the
        WebSocket listener, with the same messages.
        """
        client = yield connectWebSocket(self.ports["web"])
        sent = bodies()
        received = yield roundTrip(client, sent)
        self.assertEqual(received, sent)
        yield closeClient(client)
        code = yield client.wsFactory.closed
        self.assertEqual(code, 1000)

    @defer.inlineCallbacks
    def test_webSocketWithoutSubprotocol(self):
        """
        S5: clients that offer no subprotocol work too.
        """
        client = yield connectWebSocket(self.ports["web"], protocols=())
        received = yield roundTrip(client, [b"x"])
        self.assertEqual(received, [b"x"])
        yield closeClient(client)

    @defer.inlineCallbacks
    def test_P5_consolidatedOverBothListeners(self):
        """
        P5: the broker sees the consolidated user although the clients sent
        other credentials (mallory/xyz).
        """
        tcpName, wsName = uniqueName("tcp"), uniqueName("ws")
        tcp = yield connectTCP(self.ports["amqp"], "mallory", "xyz", name=tcpName)
        ws = yield connectWebSocket(self.ports["web"], user="mallory", password="xyz", name=wsName)
        users = yield brokerConnectionUsers(tcpName)
        self.assertEqual(users, [self.brokerUser])
        users = yield brokerConnectionUsers(wsName)
        self.assertEqual(users, [self.brokerUser])
        yield closeClient(tcp)
        yield closeClient(ws)


class TextMessageProtocol(WebSocketClientProtocol):
    def onOpen(self):
        self.sendMessage(b"AMQP\x00\x00\x09\x01", isBinary=False)

    def onClose(self, wasClean, code, reason):
        self.factory.closed.callback(code)


class WebSocketFailureTests(IntegrationTestCase):

    @defer.inlineCallbacks
    def test_textMessageCloses1003(self):
        """
        Binary messages only: a text message closes with 1003.
        """
        yield self.startGateway(gatewayConfig(self.mktemp()))
        factory = WebSocketClientFactory(f"ws://127.0.0.1:{self.ports['web']}/amqp")
        factory.protocol = TextMessageProtocol
        factory.closed = defer.Deferred()
        reactor.connectTCP("127.0.0.1", self.ports["web"], factory)
        code = yield factory.closed
        self.assertEqual(code, 1003)

    @defer.inlineCallbacks
    def test_brokerUnreachable1011(self):
        """
        Broker unreachable after the upgrade: WebSocket close 1011; the TCP
        listener's client gets an AMQP Close.
        """
        yield self.startGateway(gatewayConfig(self.mktemp(), broker={"endpoint": "tcp:host=127.0.0.1:port=1"}))
        factories = []
        error = yield self.assertFailure(connectWebSocket(self.ports["web"], factories=factories), Exception)
        self.assertEqual((yield factories[0].closed), 1011)
        error = yield self.assertFailure(connectTCP(self.ports["amqp"]), Exception)
        self.assertIn("320", str(error))


class ShutdownTests(IntegrationTestCase):

    @defer.inlineCallbacks
    def test_stopClosesClientsWith320(self):
        """
        Graceful shutdown: stop accepting, Close 320 CONNECTION_FORCED to
        every client on both listeners, done well within drain_timeout.
        """
        yield self.startGateway(gatewayConfig(self.mktemp(), drain_timeout=5.0))
        clients = [(yield connectTCP(self.ports["amqp"])), (yield connectWebSocket(self.ports["web"]))]
        started = reactor.seconds()
        yield self.gateway.stopService()
        self.assertLess(reactor.seconds() - started, 5.0)
        for client in clients:
            close = yield client.delegate.serverClosed
            self.assertEqual(close.reply_code, 320)
        self.assertEqual([c.sessions for c in self.gateway.contexts.values()], [set(), set()])
        self.assertEqual((yield clients[1].wsFactory.closed), 1000)
        yield self.assertFailure(connectTCP(self.ports["amqp"]), error.ConnectionRefusedError)
