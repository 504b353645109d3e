"""
Issue 16 finding 9b (X5): behind a C{haproxy:} endpoint, only the proxies
in C{trusted_proxies} may say which client a connection is for; a
connection from anyone else is closed before its PROXY header is read.
"""

from twisted.internet import defer, protocol
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.testing import StringTransport
from twisted.logger import formatEvent
from twisted.protocols.haproxy import proxyEndpoint
from twisted.trial.unittest import SynchronousTestCase

from kaazing_promo.transport.proxied import TrustedProxyFactory
from tests.logcapture import captureEvents

PROXY_HEADER = b"PROXY TCP4 203.0.113.9 10.0.0.1 40001 5673\r\n"


class Recorder(protocol.Protocol):
    """
    The listener's own protocol: records what reaches it.
    """

    def __init__(self):
        self.received = b""
        self.peer = None

    def dataReceived(self, data):
        self.received += data
        self.peer = self.transport.getPeer()


class RecorderFactory(protocol.Factory):
    protocol = Recorder

    def __init__(self):
        self.built = []
        self.started = self.stopped = 0

    def buildProtocol(self, addr):
        built = protocol.Factory.buildProtocol(self, addr)
        self.built.append(built)
        return built

    def startFactory(self):
        self.started += 1

    def stopFactory(self):
        self.stopped += 1


class ListeningEndpoint:
    """
    A server endpoint that only keeps the factory it is asked to listen with.
    """

    def listen(self, factory):
        self.factory = factory
        return defer.succeed(None)


class TrustedProxyFactoryTests(SynchronousTestCase):

    def setUp(self):
        self.inner = RecorderFactory()
        # As a haproxy: endpoint listens: Twisted's PROXY wrapper outside ours.
        port = ListeningEndpoint()
        proxyEndpoint(port).listen(TrustedProxyFactory(self.inner, ("10.0.0.0/24", "2001:db8::5")))
        self.outer = port.factory
        self.events = captureEvents(self)

    def connect(self, peer):
        transport = StringTransport(peerAddress=peer)
        wrapper = self.outer.buildProtocol(peer)
        wrapper.makeConnection(transport)
        wrapper.dataReceived(PROXY_HEADER + b"AMQP\x00\x00\x09\x01")
        return transport

    def test_trustedProxy(self):
        """
        A listed proxy's PROXY header is read: the listener sees the client
        it names and the bytes after it.
        """
        for peer in (IPv4Address("TCP", "10.0.0.7", 5000), IPv6Address("TCP", "2001:db8::5", 5000),
                     IPv6Address("TCP", "::ffff:10.0.0.7", 5000)):
            transport = self.connect(peer)
            self.assertFalse(transport.disconnecting, peer)
            [recorder] = self.inner.built
            self.assertEqual(recorder.received, b"AMQP\x00\x00\x09\x01")
            self.assertEqual(recorder.peer, IPv4Address("TCP", "203.0.113.9", 40001))
            self.inner.built = []

    def test_untrustedPeerClosed(self):
        """
        Any other peer is cut off before its PROXY header is read: the
        listener's factory builds nothing and no byte reaches it.
        """
        for peer in (IPv4Address("TCP", "10.0.1.7", 5000), IPv4Address("TCP", "127.0.0.1", 5000),
                     IPv6Address("TCP", "2001:db8::6", 5000)):
            transport = self.connect(peer)
            self.assertTrue(transport.disconnecting, peer)
            self.assertEqual(self.inner.built, [])

    def test_refusalLoggedOncePerAddress(self):
        """
        The first refused connection from an address is logged with the
        address and the key to change; more from it are not.
        """
        for _ in range(3):
            self.connect(IPv4Address("TCP", "192.0.2.1", 5000))
        self.connect(IPv4Address("TCP", "192.0.2.2", 5000))
        lines = [formatEvent(event) for event in self.events if "trusted_proxies" in formatEvent(event)]
        self.assertEqual(len(lines), 2, lines)
        self.assertIn("192.0.2.1", lines[0])
        self.assertIn("192.0.2.2", lines[1])

    def test_startAndStopReachTheListenersFactory(self):
        self.outer.doStart()
        self.outer.doStop()
        self.assertEqual((self.inner.started, self.inner.stopped), (1, 1))
