"""
Issue 17: the listeners' protocols in memory, the way twisted.words tests
IRCUser: the real factory over a real L{ListenerContext}, a
L{StringTransport}, bytes fed one call at a time, a clock advanced by hand.
No socket, no broker.
"""

from twisted.internet import defer, task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from kaazing_promo.amqp.broker import BrokerStartCache
from kaazing_promo.amqp.codec import PROTOCOL_HEADER, decodeMethod, encodeMethod, encodePlainResponse
from kaazing_promo.amqp.frames import FrameReader
from kaazing_promo.auth.avatar import GatewayUser
from kaazing_promo.config import Listener, Promotion
from kaazing_promo.interfaces import IClientLink
from kaazing_promo.promotion import ConsolidatedPromoter
from kaazing_promo.secrets import SecretStore
from kaazing_promo.transport.context import ListenerContext
from kaazing_promo.transport.tcp import AMQPListenerFactory
from kaazing_promo.transport.websocket import GatewayHTTPChannel, buildSite


class RecordingAuthenticator:
    """
    Answers every login with C{result}; remembers the attempts.
    """

    anonymous = GatewayUser("anonymous", realm="anonymous")

    def __init__(self, result):
        self.result = result
        self.attempts = []

    def authenticate(self, attempt, audit=True):
        self.attempts.append(attempt)
        return self.result


class PendingConnector:
    """
    A broker connector whose connections never complete (the tests stop before).
    """

    def __init__(self):
        self.asked = []

    def connect(self, session):
        self.asked.append(session)
        return defer.Deferred()


def methods(data):
    return [decodeMethod(payload).qualifiedName for _, _, payload, _ in FrameReader(1 << 20).feed(data)]


class ListenerTestMixin:

    def context(self, protocol="amqp", **options):
        self.clock = task.Clock()
        secrets = SecretStore(inline={"webuser": "pw"})
        secrets.load()
        self.connector = PendingConnector()
        self.authenticator = RecordingAuthenticator(defer.succeed(GatewayUser("joe.smith")))
        listener = Listener(name="test", protocol=protocol, endpoint="tcp:0", **options)
        return ListenerContext(listener, ConsolidatedPromoter(Promotion(user="webuser"), secrets),
                               self.connector, BrokerStartCache(), self.clock, self.authenticator)

    def connect(self, factory, host="10.0.0.7", port=40000):
        protocol = factory.buildProtocol(IPv4Address("TCP", host, port))
        transport = StringTransport(peerAddress=IPv4Address("TCP", host, port))
        protocol.makeConnection(transport)
        return protocol, transport


class AMQPListenerInMemoryTests(ListenerTestMixin, SynchronousTestCase):

    def test_X1_headerByteByByteThenOwnStart(self):
        """
        X1: the protocol header may come a byte at a time; the gateway
        answers it with its own Start, and the broker is not contacted.
        """
        protocol, transport = self.connect(AMQPListenerFactory(self.context()))
        verifyObject(IClientLink, protocol)
        for byte in PROTOCOL_HEADER:
            self.assertEqual(transport.value(), b"")
            protocol.dataReceived(bytes([byte]))
        self.assertEqual(methods(transport.value()), ["connection.start"])
        self.assertEqual(self.connector.asked, [])

    def test_X1_startOkGoesToTheAuthenticator(self):
        """
        X1: the Start-Ok's PLAIN credentials become a login attempt of this
        listener, from the client's host; only then is the broker contacted.
        """
        protocol, transport = self.connect(AMQPListenerFactory(self.context()))
        protocol.dataReceived(PROTOCOL_HEADER)
        startOk = encodeMethod(0, "connection.start-ok", client_properties={}, mechanism="PLAIN",
                               response=encodePlainResponse("joe.smith", "pw"), locale="en_US")
        for index in range(len(startOk)):
            protocol.dataReceived(startOk[index:index + 1])
        [attempt] = self.authenticator.attempts
        self.assertEqual((attempt.username, attempt.password, attempt.host, attempt.source),
                         ("joe.smith", "pw", "10.0.0.7", "10.0.0.7:40000"))
        self.assertEqual(len(self.connector.asked), 1)

    def test_16_5_silentClientClosedAtTheDeadline(self):
        """
        Issue 16 #5: a client that sends nothing is aborted at handshake_timeout from accept.
        """
        protocol, transport = self.connect(AMQPListenerFactory(self.context(handshake_timeout=3.0)))
        self.clock.advance(2.9)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(0.2)
        self.assertTrue(transport.disconnecting or transport.disconnected)

    def test_16_5_admittedAtAccept(self):
        """
        Issue 16 #5: the connection over max_connections_per_source is closed
        at accept, before it sends a byte; another host is admitted.
        """
        factory = AMQPListenerFactory(self.context(max_connections_per_source=1))
        first, firstTransport = self.connect(factory)
        second, secondTransport = self.connect(factory, port=40001)
        self.assertFalse(firstTransport.disconnecting)
        self.assertTrue(secondTransport.disconnecting or secondTransport.disconnected)
        third, thirdTransport = self.connect(factory, host="10.0.0.8")
        self.assertFalse(thirdTransport.disconnecting)
        first.connectionLost(None)
        fourth, fourthTransport = self.connect(factory, port=40002)
        self.assertFalse(fourthTransport.disconnecting)


class HTTPChannelInMemoryTests(ListenerTestMixin, SynchronousTestCase):
    """
    The WebSocket listener's HTTP channel: its deadline and admission.
    """

    def site(self, **options):
        return buildSite(self.context("websocket", **options))

    def channel(self, site, host="10.0.0.7", port=40000):
        protocol, transport = self.connect(site, host, port)
        return protocol, transport

    def test_16_5_slowRequestClosedAtTheDeadline(self):
        """
        Issue 16 #5: a request trickling in a byte at a time is aborted at
        handshake_timeout from accept, however often bytes arrive.
        """
        protocol, transport = self.channel(self.site(handshake_timeout=2.0))
        request = b"GET /amqp HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        for byte in request[:19]:
            protocol.dataReceived(bytes([byte]))
            self.clock.advance(0.1)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(0.2)
        self.assertTrue(transport.disconnecting or transport.disconnected)

    def test_16_5_admittedAtAccept(self):
        site = self.site(max_connections=1)
        first, firstTransport = self.channel(site)
        second, secondTransport = self.channel(site, host="10.0.0.8")
        self.assertFalse(firstTransport.disconnecting)
        self.assertTrue(secondTransport.disconnecting or secondTransport.disconnected)

    def test_channelIsTheGatewaysOwn(self):
        protocol, _ = self.channel(self.site())
        self.assertIsInstance(protocol, GatewayHTTPChannel)
