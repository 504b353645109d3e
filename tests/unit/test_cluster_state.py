"""
Issue 20 #2 and #3: what the gateways of a cluster share through Redis —
the failed-login record, single use of tickets and broker tokens, token
grants — and what happens while Redis cannot be asked.

In memory, with fakes of the shared stores (against Redis:
tests/integration/test_cluster_redis.py).
"""


from twisted.cred.portal import Portal
from twisted.internet import defer, task
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest
from zope.interface import directlyProvides, implementer
from zope.interface.verify import verifyObject

from kaazing_promo.auth.authenticator import Authenticator
from kaazing_promo.auth.avatar import GatewayRealm, GatewayUser
from kaazing_promo.auth.limits import FailureWindow
from kaazing_promo.auth.spent import SpentNonces
from kaazing_promo.auth.tickets import TicketBook
from kaazing_promo.token.brokerauth import buildBrokerAuthResource
from kaazing_promo.cluster.shared import FallbackFailureStore
from kaazing_promo.config import Listener, Permission, Promotion
from kaazing_promo.errors import LoginDenied, SharedStateUnavailable
from kaazing_promo.interfaces import (ABANDONED, FAILED, SUCCEEDED, IFailureStore, IGrantStore, INonceLedger,
                                      IReloadableUsers,
                                      LoginAttempt, Standing)
from kaazing_promo.token.permissions import Grant
from kaazing_promo.promotion import ConsolidatedPromoter
from kaazing_promo.secrets import SecretStore
from kaazing_promo.token.tokens import GRANT_TAG_PREFIX, TokenBook, grantTag
from tests.fakes import ControlledChecker, fakeGateway, makeMetrics, readinessOf, render
from tests.logcapture import capturedTexts

LIMITED = Listener(name="amqp", protocol="amqp", endpoint="tcp:0", max_failed_logins=3)
WEB = Listener(name="web", protocol="websocket", endpoint="tcp:0")
JOE = GatewayUser("joe.smith", {"Tyche"}, (), None, "internal")
TYCHE = Permission(group="Tyche", vhost="/", configure="^tyche\\.", write="^tyche\\.", read="^tyche\\.")


# -- fakes of the shared stores -----------------------------------------------


@implementer(IFailureStore)
class HeldFailureStore:
    """
    An L{IFailureStore} that answers C{begin} only when the test says so,
    as Redis would after a round trip; it records every C{end}.
    """

    def __init__(self, standing=None):
        self.waiting = []
        self.ended = []
        self.standing = standing

    def begin(self, host, user):
        d = defer.Deferred()
        self.waiting.append((Standing(host, user) if self.standing is None else self.standing, d))
        return d

    def answer(self):
        waiting, self.waiting = self.waiting, []
        for standing, d in waiting:
            d.callback(standing)

    def end(self, standing, outcome=None):
        self.ended.append((standing.host, outcome))


@implementer(IFailureStore)
class DownFailureStore:
    """
    The shared record while Redis is down: every C{begin} fails.
    """

    def __init__(self):
        self.down = True
        self.inner = FailureWindow(task.Clock())

    def begin(self, host, user):
        if self.down:
            return defer.fail(SharedStateUnavailable("Redis at tcp:host=redis:port=6379 is not connected"))
        return self.inner.begin(host, user).addCallback(lambda s: Standing(
            s.host, s.user, s.failed, s.failedWait, s.inFlight, s.userHosts, s.userWait, s.known, shared=True))

    def end(self, standing, outcome=None):
        return self.inner.end(standing, outcome)


@implementer(INonceLedger)
class DownLedger:
    def spend(self, nonce, ttl):
        return defer.fail(SharedStateUnavailable("Redis at tcp:host=redis:port=6379 is not connected"))


@implementer(IGrantStore)
class MemoryGrantStore:
    """
    The cluster's grant store in memory, as several books would share it.
    """

    def __init__(self):
        self.grants = {}
        self.down = False

    def keep(self, tag, grant, ttl):
        if self.down:
            return defer.fail(SharedStateUnavailable("down"))
        self.grants[tag] = (grant, ttl)
        return defer.succeed(None)

    def find(self, tag):
        if self.down:
            return defer.fail(SharedStateUnavailable("down"))
        return defer.succeed(self.grants.get(tag, (None, None))[0])


# -- in memory -----------------------------------------------------------------


class MemoryStoreTests(SynchronousTestCase):
    """
    This process's own record and ledger, behind the interfaces the
    cluster's implement too.
    """

    def test_S4_interfaces(self):
        verifyObject(IFailureStore, FailureWindow(task.Clock()))
        verifyObject(INonceLedger, SpentNonces(task.Clock()))

    def test_X5_beginAndEnd(self):
        """
        An attempt counts in flight from begin to end, and its outcome is
        recorded: failed against host and user, abandoned against the host
        only, succeeded as a known host; the answer comes at once.
        """
        clock = task.Clock()
        store = FailureWindow(clock)
        first = self.successResultOf(store.begin("10.0.0.1", "joe"))
        second = self.successResultOf(store.begin("10.0.0.1", "joe"))
        self.assertEqual((first.inFlight, second.inFlight, first.shared), (0, 1, False))
        store.end(first, FAILED)
        store.end(second, ABANDONED)
        third = self.successResultOf(store.begin("10.0.0.1", "joe"))
        self.assertEqual((third.failed, third.inFlight, third.userHosts, third.known), (2, 0, 1, False))
        store.end(third, SUCCEEDED)
        clock.advance(61)
        fourth = self.successResultOf(store.begin("10.0.0.1", "joe"))
        self.assertEqual((fourth.failed, fourth.userHosts, fourth.known), (0, 0, True))

    def test_spentOnceUntilTTL(self):
        clock = task.Clock()
        spent = SpentNonces(clock)
        self.assertTrue(self.successResultOf(spent.spend("n1", 5)))
        self.assertFalse(self.successResultOf(spent.spend("n1", 5)))
        clock.advance(5)
        self.assertTrue(self.successResultOf(spent.spend("n2", 5)))
        self.assertEqual(len(spent), 1)


class AsynchronousStoreTests(SynchronousTestCase):
    """
    Issue 20 #2: the authenticator's checks wait for a store that answers
    later (the cluster's, after a round trip to Redis).
    """

    def setUp(self):
        self.checker = ControlledChecker({"joe": "joe-pw"})
        secrets = SecretStore(inline={"webuser": "broker-pw"})
        secrets.load()
        promoter = ConsolidatedPromoter(Promotion(mode="consolidated", user="webuser"), secrets)
        self.store = HeldFailureStore()
        self.authenticator = Authenticator(
            Portal(GatewayRealm(), [self.checker]), self.checker, promoter, TicketBook(task.Clock(), b"k" * 32),
            task.Clock(), slots=2, failures=self.store)

    def login(self, password, host="10.0.0.1"):
        return self.authenticator.authenticate(LoginAttempt(LIMITED, host, f"{host}:5000", "joe", password))

    def test_20_2_waitsForTheStore(self):
        """
        Nothing is checked until the store has answered; each attempt ends
        once, with its outcome.
        """
        good, bad = self.login("joe-pw"), self.login("guess", "10.0.0.2")
        self.assertNoResult(good)
        self.assertEqual(self.checker.checked, [])
        self.store.answer()
        self.assertEqual(self.successResultOf(good).user, "joe")
        self.assertEqual(self.failureResultOf(bad, LoginDenied).value.outcome, "bad-credentials")
        self.assertEqual(self.store.ended, [("10.0.0.1", SUCCEEDED), ("10.0.0.2", FAILED)])

    def test_20_2_refusedOnTheStoresCounts(self):
        """
        The cluster's counts decide: failures and attempts in flight
        elsewhere refuse here without asking the realm, and the attempt
        still leaves the flight.
        """
        self.store.standing = Standing("10.0.0.1", "joe", failed=2, failedWait=30.0, inFlight=1, shared=True)
        d = self.login("joe-pw")
        self.store.answer()
        denial = self.failureResultOf(d, LoginDenied).value
        self.assertEqual((denial.outcome, denial.retryAfter), ("rate-limited", 30))
        self.assertEqual(self.checker.checked, [])
        self.assertEqual(self.store.ended, [("10.0.0.1", None)])


class FallbackTests(SynchronousTestCase):
    """
    Issue 20 #3: while Redis cannot be asked, the limits are counted per
    process, and the log says so once per outage.
    """

    def test_20_3_perProcessWhileDownLoggedOnce(self):
        texts = capturedTexts(self)
        shared = DownFailureStore()
        local = FailureWindow(task.Clock())
        store = FallbackFailureStore(shared, local)
        verifyObject(IFailureStore, store)
        for _ in range(3):
            standing = self.successResultOf(store.begin("10.0.0.1", "joe"))
            self.assertFalse(standing.shared)
            store.end(standing, FAILED)
        self.assertEqual(local.hostFailures("10.0.0.1")[0], 3)
        warnings = [text for text in texts if "counted per process" in text]
        self.assertEqual(len(warnings), 1)
        self.assertIn("is not connected", warnings[0])
        shared.down = False
        standing = self.successResultOf(store.begin("10.0.0.1", "joe"))
        self.assertTrue(standing.shared)
        store.end(standing, FAILED)
        self.assertEqual(shared.inner.hostFailures("10.0.0.1")[0], 1)
        self.assertEqual(len([text for text in texts if "across the cluster again" in text]), 1)
        shared.down = True
        store.begin("10.0.0.1", "joe")
        self.assertEqual(len([text for text in texts if "counted per process" in text]), 2)


class SharedGrantTests(SynchronousTestCase):
    """
    Issue 20 #2: in token mode any gateway answers the broker's questions
    about a connection whose token another gateway redeemed.
    """

    def setUp(self):
        self.clock = task.Clock()
        self.store = MemoryGrantStore()
        self.first = TokenBook(ttl=10.0, key=b"k" * 32, clock=self.clock, permissions=(TYCHE,), shared=self.store)
        self.second = TokenBook(ttl=10.0, key=b"k" * 32, clock=self.clock, permissions=(TYCHE,),
                                shared=self.store)

    def test_20_2_grantKeptAndFoundElsewhere(self):
        grant = self.successResultOf(self.first.redeem("joe.smith", self.first.mint("joe.smith", JOE).reveal()))
        tag = grantTag(grant)
        self.assertEqual(self.store.grants[tag], (grant, 10.0 + self.first.grantTTL))
        self.assertEqual(self.successResultOf(self.second.grantFor(f"monitoring {tag}")), grant)
        self.store.grants.clear()
        # Once known, a gateway answers without asking again.
        self.assertEqual(self.successResultOf(self.second.grantFor(tag)), grant)
        self.assertIsNone(self.successResultOf(self.second.grantFor(GRANT_TAG_PREFIX + "0123456789abcdef")))

    def test_20_2_onlyWhatHashesToTheTag(self):
        """
        A grant stored under a tag it does not hash to is not taken.
        """
        tag = GRANT_TAG_PREFIX + "0123456789abcdef"
        self.store.grants[tag] = (Grant({("group", "Tyche")}, "/"), 1.0)
        self.assertIsNone(self.successResultOf(self.second.grantFor(tag)))

    def test_20_2_keepRenews(self):
        """
        The grants of open connections are kept for another grantTTL.
        """
        grant = Grant({("group", "Tyche")}, None)
        self.successResultOf(self.first.keep([grant, grant]))
        self.assertEqual(self.store.grants, {grantTag(grant): (grant, self.first.grantTTL)})
        self.store.down = True
        self.successResultOf(self.first.keep([grant]))

    def test_20_3_storeDownFailsClosed(self):
        """
        A token whose grant cannot be shared, or a tag that cannot be
        looked up, is denied.
        """
        texts = capturedTexts(self)
        self.store.down = True
        token = self.first.mint("joe.smith", JOE).reveal()
        self.assertIsNone(self.successResultOf(self.first.redeem("joe.smith", token)))
        self.assertIsNone(self.successResultOf(self.second.grantFor(GRANT_TAG_PREFIX + "0123456789abcdef")))
        self.assertTrue(any("token mode refuses logins until the cluster's Redis answers again" in text
                            for text in texts), texts)
        for text in texts:
            self.assertNotIn(token, text)


class UnknowableTests(SynchronousTestCase):
    """
    Issue 20 #3: what needs single use across the cluster fails closed
    while the ledger cannot be asked, with a message that says why.
    """

    def test_20_3_ticketRefused(self):
        checker = ControlledChecker({"joe": "joe-pw"})
        secrets = SecretStore(inline={"webuser": "broker-pw"})
        secrets.load()
        promoter = ConsolidatedPromoter(Promotion(mode="consolidated", user="webuser"), secrets)
        clock = task.Clock()
        authenticator = Authenticator(Portal(GatewayRealm(), [checker]), checker, promoter,
                                      TicketBook(clock, b"k" * 32, spent=DownLedger()), clock, slots=1)
        ticket = authenticator.issueTicket(GatewayUser("joe"), WEB, "10.0.0.1:5000")
        denial = self.failureResultOf(authenticator.redeemTicket(ticket, WEB, "10.0.0.1:5001"), LoginDenied).value
        self.assertEqual(denial.outcome, "realm-error")
        self.assertIn("ticket refused: Redis at tcp:host=redis:port=6379 is not connected", denial.reason)

    def test_20_3_tokenRefused(self):
        texts = capturedTexts(self)
        book = TokenBook(ttl=10.0, key=b"k" * 32, clock=task.Clock(), permissions=(TYCHE,), spent=DownLedger())
        self.assertIsNone(self.successResultOf(book.redeem("joe.smith", book.mint("joe.smith", JOE).reveal())))
        self.assertTrue(any("is not connected; token mode refuses logins" in text for text in texts), texts)


class AsynchronousAnswerTests(SynchronousTestCase):
    """
    The [broker_auth] answers come when the book has them.
    """

    def ask(self, root, path, **fields):
        request = DummyRequest([segment.encode() for segment in path.strip("/").split("/")])
        request.method = b"POST"
        request.args = {name.encode(): [value.encode()] for name, value in fields.items()}
        self.assertIs(root.getChildWithDefault(b"auth", request).getChildWithDefault(path.split("/")[-1].encode(),
                                                                                       request)
                      .render(request), NOT_DONE_YET)
        return request

    def test_20_2_answeredLater(self):
        @implementer(INonceLedger)
        class HeldLedger:
            def __init__(self):
                self.waiting = []

            def spend(self, nonce, ttl):
                d = defer.Deferred()
                self.waiting.append(d)
                return d
        ledger = HeldLedger()
        book = TokenBook(ttl=10.0, key=b"k" * 32, clock=task.Clock(), permissions=(TYCHE,), spent=ledger)
        root = buildBrokerAuthResource(book)
        request = self.ask(root, "/auth/user", username="joe.smith", password=book.mint("joe.smith", JOE).reveal())
        self.assertEqual((request.written, request.finished), ([], 0))
        ledger.waiting.pop().callback(True)
        self.assertTrue(b"".join(request.written).startswith(b"allow "))
        self.assertEqual(request.finished, 1)
        gone = self.ask(root, "/auth/user", username="joe.smith", password=book.mint("joe.smith", JOE).reveal())
        gone.processingFailed(Exception("client gone"))
        ledger.waiting.pop().callback(True)
        self.assertEqual(gone.written, [])


class ReadinessTests(SynchronousTestCase):
    """
    Issue 20 #3: /readyz reports a cluster check; it decides readiness in
    token mode only, where no login works without Redis.
    """

    def readyz(self, mode, up):
        from types import SimpleNamespace

        from kaazing_promo.ops.admin import buildAdminResource
        top = {"promotion": {"mode": mode}, "broker_auth": {"endpoint": "tcp:0"}} if mode == "token" else {}
        checker = SimpleNamespace(userCount=2, path="/etc/kp/config/users.cnf")
        directlyProvides(checker, IReloadableUsers)
        gateway = fakeGateway("internal", checker, **top)
        detail = "Redis at tcp:host=r:port=6379 answers" if up else "Redis at tcp:host=r:port=6379 is not connected"
        gateway.cluster = SimpleNamespace(probe=lambda: defer.succeed((up, detail)))
        readiness = readinessOf(gateway)
        self.successResultOf(readiness.refresh())
        return render(buildAdminResource(makeMetrics(), readiness, gateway.reactor), b"/readyz")

    def test_20_3_clusterCheck(self):
        code, document = self.readyz("consolidated", True)
        self.assertEqual(code, 200)
        self.assertEqual(document["checks"]["cluster"]["detail"], "Redis at tcp:host=r:port=6379 answers")
        code, document = self.readyz("consolidated", False)
        self.assertEqual(code, 200)
        self.assertEqual(document["checks"]["cluster"]["ok"], False)
        self.assertEqual(document["checks"]["cluster"]["required"], False)
        self.assertIn("tickets are refused", document["checks"]["cluster"]["detail"])

    def test_20_3_tokenModeNeedsRedis(self):
        self.assertEqual(self.readyz("token", True)[0], 200)
        code, document = self.readyz("token", False)
        self.assertEqual(code, 503)
        self.assertNotIn("required", document["checks"]["cluster"])
