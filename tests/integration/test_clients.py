"""
S5 / issue 3: AMQP clients that exist today work through the gateway
unchanged, and the gateway sits behind HAProxy with the PROXY protocol.
"""

import pika
from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.threads import deferToThread
from twisted.logger import formatEvent, globalLogPublisher

from kaazing_promo.amqp.codec import PROTOCOL_HEADER
from tests.support import PASSWORDS, IntegrationTestCase, PromotionTestCase, gatewayConfig, uniqueName


def pikaRoundTrip(port, user, password, name):
    """
    A plain pika BlockingConnection: declare, confirm, publish, get, close.
    """
    parameters = pika.ConnectionParameters(
        "127.0.0.1", port, "/", pika.PlainCredentials(user, password),
        client_properties={"connection_name": name}, heartbeat=0)
    connection = pika.BlockingConnection(parameters)
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        queue = channel.queue_declare("", exclusive=True).method.queue
        channel.basic_publish("", queue, b"through the gateway")
        body = None
        for _ in range(100):
            _, _, body = channel.basic_get(queue, auto_ack=True)
            if body is not None:
                break
            connection.sleep(0.01)
        return body
    finally:
        connection.close()


class PikaTests(PromotionTestCase):

    @defer.inlineCallbacks
    def test_S5_pikaThroughAMQPListener(self):
        """
        S5/X1: pika, unmodified, with the gateway user's credentials; the
        broker sees the mapped user and publisher confirms work.
        """
        name = uniqueName("pika")
        body = yield deferToThread(pikaRoundTrip, self.ports["amqp"], "joe.smith", PASSWORDS["joe.smith"], name)
        self.assertEqual(body, b"through the gateway")

    @defer.inlineCallbacks
    def test_X1_pikaWrongPassword(self):
        error = yield self.assertFailure(
            deferToThread(pikaRoundTrip, self.ports["amqp"], "joe.smith", "nope", uniqueName("pika")),
            pika.exceptions.ProbableAuthenticationError)
        self.assertIn("ACCESS_REFUSED", str(error))


class Collect(protocol.Protocol):
    def __init__(self):
        self.data = b""
        self.got = defer.Deferred()

    def dataReceived(self, data):
        self.data += data
        if not self.got.called and len(self.data) >= 8:
            self.got.callback(self.data)


class HAProxyTests(IntegrationTestCase):

    def startBehindProxy(self, trusted):
        config = gatewayConfig(self.mktemp(), listeners=[
            {"name": "lb", "protocol": "amqp", "endpoint": "haproxy:tcp:0:interface=127.0.0.1", "auth": "none",
             "trusted_proxies": trusted}])
        return self.startGateway(config)

    @defer.inlineCallbacks
    def test_proxyProtocolSourceInAudit(self):
        """
        haproxy: endpoint strings: the audit log names the original client
        address the PROXY header carries.
        """
        yield self.startBehindProxy(["127.0.0.0/8"])
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        client = Collect()
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", self.ports["lb"]), client)
        client.transport.write(b"PROXY TCP4 203.0.113.9 127.0.0.1 40001 5673\r\n" + PROTOCOL_HEADER)
        data = yield client.got
        self.assertEqual(data[:1], b"\x01")  # our Connection.Start
        client.transport.loseConnection()
        yield self.gateway.contexts["lb"].drain("test over")
        sources = [event.get("source") for event in events if event.get("log_namespace") == "kaazing_promo.audit"]
        self.assertIn("203.0.113.9:40001", sources)

    @defer.inlineCallbacks
    def test_untrustedPeerCannotClaimASource(self):
        """
        Issue 16 finding 9b: a peer outside trusted_proxies is cut off
        before its PROXY header is read; no session, no audit event names
        the address it claimed.
        """
        yield self.startBehindProxy(["192.0.2.10"])
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        client = Collect()
        client.lost = defer.Deferred()
        client.connectionLost = lambda reason: client.lost.callback(None)
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", self.ports["lb"]), client)
        client.transport.write(b"PROXY TCP4 203.0.113.9 127.0.0.1 40001 5673\r\n" + PROTOCOL_HEADER)
        yield client.lost
        self.assertEqual(client.data, b"")
        self.assertEqual(self.gateway.contexts["lb"].sessions, set())
        self.assertNotIn("203.0.113.9", " ".join(formatEvent(event) for event in events))
        self.assertTrue([event for event in events if "trusted_proxies" in formatEvent(event)])
