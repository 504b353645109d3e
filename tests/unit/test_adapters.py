"""
Issue 17: the private Twisted and Autobahn names the gateway relies on are
all in kaazing_promo/adapters/; these tests fail, naming what is gone, when
an upgrade removes one.
"""

import importlib

from twisted.application.internet import StreamServerEndpointService
from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint, connectProtocol
from twisted.trial.unittest import SynchronousTestCase, TestCase

from kaazing_promo.adapters import autobahninternals, twistedinternals


class PrivateNamesTests(SynchronousTestCase):

    def test_twisted(self):
        missing = twistedinternals.check()
        self.assertEqual(missing, [], f"the installed Twisted lacks {missing}: adapt "
                                      "kaazing_promo/adapters/twistedinternals.py, or pin Twisted below this version")

    def test_autobahn(self):
        missing = autobahninternals.check()
        self.assertEqual(missing, [], f"the installed Autobahn lacks {missing}: adapt "
                                      "kaazing_promo/adapters/autobahninternals.py, or pin autobahn below this version")

    def test_checkNoticesARemovedName(self):
        """
        The check can fail: a Twisted without C{_raiseSynchronously} is noticed.
        """
        class Upgraded(StreamServerEndpointService):
            pass
        self.patch(twistedinternals, "StreamServerEndpointService", Upgraded)
        self.assertIn("StreamServerEndpointService._raiseSynchronously", twistedinternals.check())

    def test_checkNoticesRemovedAutobahnName(self):
        from autobahn.websocket.protocol import WebSocketProtocol
        self.patch(WebSocketProtocol, "_dataReceived", None)
        self.assertIn("WebSocketProtocol._dataReceived", autobahninternals.check())


class Collect(protocol.Protocol):
    def __init__(self):
        self.data = b""
        self.arrived = defer.Deferred()
        self.expected = 0

    def dataReceived(self, data):
        self.data += data
        if len(self.data) >= self.expected and not self.arrived.called:
            self.arrived.callback(self.data)


class WriteNowTests(TestCase):
    """
    Issue 19: a write leaves at once when nothing is queued, and queues
    behind what is, in order.
    """

    @defer.inlineCallbacks
    def setUp(self):
        self.received = Collect()
        factory = protocol.Factory.forProtocol(lambda: self.received)
        port = yield TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
        self.addCleanup(port.stopListening)
        self.sender = yield connectProtocol(
            TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port), protocol.Protocol())
        self.addCleanup(self.sender.transport.loseConnection)

    @defer.inlineCallbacks
    def test_sentAtOnceWhenNothingQueued(self):
        transport = self.sender.transport
        self.received.expected = 5
        twistedinternals.writeNow(transport, b"hello")
        self.assertEqual((transport._tempDataLen, transport.dataBuffer), (0, b""))
        data = yield self.received.arrived
        self.assertEqual(data, b"hello")

    @defer.inlineCallbacks
    def test_queuedBehindWhatWaits(self):
        transport = self.sender.transport
        self.received.expected = 6
        transport.write(b"abc")
        twistedinternals.writeNow(transport, b"def")
        self.assertEqual(transport._tempDataLen, 6)
        data = yield self.received.arrived
        self.assertEqual(data, b"abcdef")


class LazyConfigurationTextTests(SynchronousTestCase):

    def test_19_configurationFormattedOnlyWhenLogged(self):
        """
        Issue 19: Autobahn's per-connection configuration dump is not
        pretty-printed unless an observer formats it; when one does, the
        text is the same.
        """
        from autobahn.websocket import protocol
        importlib.import_module("kaazing_promo.transport.websocket")  # it installs the lazy text
        formatted = []
        value = [("openHandshakeTimeout", 0, "GatewayWebSocketFactory")]
        self.patch(autobahninternals.pprint, "pformat", lambda v: formatted.append(v) or "text")
        lazy = protocol.pformat(value)
        self.assertEqual(formatted, [])
        self.assertEqual("\n{attrs}".format(attrs=lazy), "\ntext")
        self.assertEqual(formatted, [value])
