"""
Issue 17: the private Twisted and Autobahn names the gateway relies on are
all in kaazing_promo/adapters/; these tests fail, naming what is gone, when
an upgrade removes one.
"""

from twisted.application.internet import StreamServerEndpointService
from twisted.trial.unittest import SynchronousTestCase

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
