"""
X3: delegated results expire, and live connections follow.
"""

from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer, task
from twisted.trial.unittest import SynchronousTestCase

from kaazing_promo.auth.avatar import GatewayUser
from kaazing_promo.auth.lifetime import SessionLifetime
from kaazing_promo.config import Listener
from kaazing_promo.transport.context import ListenerContext
from tests.fakes import FakeSession


def delegatedSession(expires):
    """
    A session of joe's from the delegated realm, expiring at C{expires}.
    """
    return FakeSession("joe", realm="delegated", expires=expires, credentials=("joe", "pw"))


class FakeChecker:
    def __init__(self):
        self.asked = []
        self.answers = []

    def revalidate(self, credentials):
        self.asked.append((credentials.username, credentials.password))
        return self.answers.pop(0)


class SessionLifetimeTests(SynchronousTestCase):

    def setUp(self):
        self.clock = task.Clock()
        self.checker = FakeChecker()

    def test_X3_closeOnExpiry(self):
        """
        X3 with on_expiry = "close": 320 when the authentication expires, not before.
        """
        lifetime = SessionLifetime("close", self.checker, self.clock)
        session = delegatedSession(60.0)
        lifetime.watch(session)
        self.clock.advance(59)
        self.assertEqual(session.forced, [])
        self.clock.advance(1)
        self.assertEqual(session.forced, ["authentication expired"])
        self.assertEqual(self.checker.asked, [])

    def test_X3_revalidateStillValid(self):
        """
        X3 with "revalidate": the checker is asked again with the held
        credentials; a valid answer keeps the connection and its new expiry.
        """
        lifetime = SessionLifetime("revalidate", self.checker, self.clock)
        self.assertTrue(lifetime.keepsCredentials)
        session = delegatedSession(10.0)
        self.checker.answers.append(defer.succeed(GatewayUser("joe", expires=40.0, realm="delegated")))
        lifetime.watch(session)
        self.clock.advance(10)
        self.assertEqual(self.checker.asked, [("joe", "pw")])
        self.assertEqual(session.forced, [])
        self.checker.answers.append(defer.fail(UnauthorizedLogin("no longer")))
        self.clock.advance(30)
        self.assertEqual(session.forced, ["authentication no longer valid"])

    def test_X3_ignore(self):
        lifetime = SessionLifetime("ignore", self.checker, self.clock)
        session = delegatedSession(1.0)
        lifetime.watch(session)
        self.clock.advance(100)
        self.assertEqual(session.forced, [])

    def test_noExpiryNoTimer(self):
        lifetime = SessionLifetime("close", self.checker, self.clock)
        lifetime.watch(delegatedSession(None))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_unwatch(self):
        lifetime = SessionLifetime("close", self.checker, self.clock)
        session = delegatedSession(5.0)
        lifetime.watch(session)
        lifetime.unwatch(session)
        self.clock.advance(10)
        self.assertEqual(session.forced, [])


class ListenerLimitTests(SynchronousTestCase):

    def makeContext(self, **limits):
        listener = Listener(name="t", protocol="amqp", endpoint="tcp:0", **limits)
        return ListenerContext(listener, None, None, None, task.Clock(), None)

    def test_X5_maxConnectionsPerSource(self):
        """
        X5: places are taken per host at accept (the port does not matter)
        and given back when the connection ends.
        """
        context = self.makeContext(max_connections_per_source=2)
        first = context.admit("10.0.0.1:1")
        context.admit("10.0.0.1:2")
        self.assertIsNone(context.admit("10.0.0.1:3"))
        self.assertIsNotNone(context.admit("10.0.0.2:1"))
        first.release()
        first.release()
        self.assertIsNotNone(context.admit("10.0.0.1:4"))
        self.assertIsNone(context.admit("10.0.0.1:5"))

    def test_X5_maxConnections(self):
        context = self.makeContext(max_connections=1)
        admission = context.admit("10.0.0.1:1")
        self.assertIsNotNone(admission)
        self.assertIsNone(context.admit("10.0.0.2:1"))
        admission.release()
        self.assertIsNotNone(context.admit("10.0.0.2:1"))

    def test_drainWaitsForSessions(self):
        """
        Shutdown closes every session with 320 and fires once none is left.
        """
        context = self.makeContext()
        sessions = [context.makeSession(f"10.0.0.1:{n}") for n in range(2)]
        forced = []
        for session in sessions:
            session.forceClose = lambda reason, s=session: forced.append((s, reason))
        d = context.drain("gateway shutting down")
        self.assertNoResult(d)
        self.assertEqual(len(forced), 2)
        for session in sessions:
            context._finished(session)
        self.successResultOf(d)
