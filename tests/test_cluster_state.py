"""
Issue 20 #2 and #3: what the gateways of a cluster share through Redis —
the failed-login record, single use of tickets and broker tokens, token
grants — and what happens while Redis cannot be asked.

The unit tests run in memory with fakes of the shared stores; the others
talk to the machine's Redis (127.0.0.1:6379) under a key prefix of their
own, which they delete afterwards, or to a throwaway C{redis-server} they
start and kill themselves.
"""

import os
import subprocess
import sys

from twisted.cred.portal import Portal
from twisted.internet import defer, reactor, task
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase
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
from kaazing_promo.cluster.shared import (FallbackFailureStore, RedisFailureStore, RedisGrantStore,
                                          RedisNonceLedger)
from kaazing_promo.config import Listener, Permission, Promotion
from kaazing_promo.errors import LoginDenied, SharedStateUnavailable
from kaazing_promo.interfaces import (ABANDONED, FAILED, SUCCEEDED, IFailureStore, IGrantStore, INonceLedger,
                                      IReloadableUsers,
                                      LoginAttempt, Standing)
from kaazing_promo.token.permissions import Grant
from kaazing_promo.promotion import ConsolidatedPromoter
from kaazing_promo.secrets import SecretStore
from kaazing_promo.token.tokens import GRANT_TAG_PREFIX, TokenBook, grantTag
from tests.authfixtures import KEY_TEXT, privateFile, standardUsers, writeUsersCnf
from tests.fakes import ControlledChecker, fakeGateway, makeMetrics, render
from tests.processes import freePorts, waitFor
from tests.support import REDIS, RedisMixin, closeClient, connectTCP, gatewayConfig, roundTrip

LIMITED = Listener(name="amqp", protocol="amqp", endpoint="tcp:0", max_failed_logins=3)
WEB = Listener(name="web", protocol="websocket", endpoint="tcp:0")
JOE = GatewayUser("joe.smith", {"Tyche"}, (), None, "internal")
TYCHE = Permission(group="Tyche", vhost="/", configure="^tyche\\.", write="^tyche\\.", read="^tyche\\.")


def capturedTexts(testCase):
    """
    @return: a list that collects the text of every log event until the test ends.
    """
    texts = []

    def observe(event):
        texts.append(formatEvent(event))
    globalLogPublisher.addObserver(observe)
    testCase.addCleanup(globalLogPublisher.removeObserver, observe)
    return texts


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


# -- against Redis -------------------------------------------------------------


class RedisStoreTests(RedisMixin, TestCase):
    """
    Issue 20 #2: two links stand for two gateways; what one records the
    other sees, and every key has a TTL.
    """

    @defer.inlineCallbacks
    def test_20_2_failuresSharedAndExpiring(self):
        one = RedisFailureStore((yield self.link()), self.prefix)
        other = RedisFailureStore((yield self.link()), self.prefix)
        verifyObject(IFailureStore, one)
        first = yield one.begin("10.0.0.1", "joe")
        inFlight = yield other.begin("10.0.0.1", "joe")
        self.assertEqual((first.inFlight, inFlight.inFlight, first.shared), (0, 1, True))
        yield one.end(first, FAILED)
        yield other.end(inFlight, ABANDONED)
        standing = yield other.begin("10.0.0.1", "joe")
        self.assertEqual((standing.failed, standing.inFlight, standing.userHosts, standing.known), (2, 0, 1, False))
        self.assertTrue(55 < standing.failedWait <= 60, standing.failedWait)
        yield other.end(standing, SUCCEEDED)
        elsewhere = yield one.begin("10.0.0.2", "joe")
        self.assertEqual((elsewhere.failed, elsewhere.userHosts, elsewhere.known), (0, 1, False))
        known = yield one.begin("10.0.0.1", "joe")
        self.assertTrue(known.known)
        yield one.end(elsewhere)
        yield one.end(known)
        ttls = yield self.keys(one._link)
        # Failures of the host and of the user, the known host; nothing in flight.
        self.assertEqual(len(ttls), 3, ttls)
        for key, ttl in ttls.items():
            self.assertGreater(ttl, 0, key)
            self.assertNotIn("joe", key)

    @defer.inlineCallbacks
    def test_20_2_windowSlides(self):
        """
        Failures leave the count after the window (here 0.3 s).
        """
        store = RedisFailureStore((yield self.link()), self.prefix, window=0.3)
        standing = yield store.begin("10.0.0.1", "joe")
        yield store.end(standing, FAILED)
        self.assertEqual((yield store.begin("10.0.0.1", "joe")).failed, 1)
        yield task.deferLater(reactor, 0.4, lambda: None)
        self.assertEqual((yield store.begin("10.0.0.1", "joe")).failed, 0)

    @defer.inlineCallbacks
    def test_20_2_nonceSpentOnceAcrossGateways(self):
        one = RedisNonceLedger((yield self.link()), self.prefix, "ticket")
        other = RedisNonceLedger((yield self.link()), self.prefix, "ticket")
        tokens = RedisNonceLedger(one._link, self.prefix, "token")
        verifyObject(INonceLedger, one)
        self.assertEqual([(yield one.spend("n1", 30)), (yield other.spend("n1", 30)), (yield one.spend("n1", 30))],
                         [True, False, False])
        self.assertTrue((yield tokens.spend("n1", 30)))
        ttls = yield self.keys(one._link)
        self.assertEqual(sorted(ttls), [self.prefix + "ticket:n1", self.prefix + "token:n1"])
        self.assertTrue(all(0 < ttl <= 30000 for ttl in ttls.values()), ttls)

    @defer.inlineCallbacks
    def test_20_2_grantsKeptWithTTL(self):
        link = yield self.link()
        store = RedisGrantStore(link, self.prefix)
        verifyObject(IGrantStore, store)
        grant = Grant({("group", "Tyche"), ("access_profile", "gold")}, "/")
        yield store.keep(grantTag(grant), grant, 20)
        self.assertEqual((yield RedisGrantStore((yield self.link()), self.prefix).find(grantTag(grant))), grant)
        self.assertIsNone((yield store.find("kp_grant_unknown")))
        ttl = (yield self.keys(link))[self.prefix + "grant:" + grantTag(grant)]
        self.assertTrue(0 < ttl <= 20000, ttl)


class RedisDownTests(RedisMixin, TestCase):
    """
    Issue 20 #3: with Redis unreachable a call fails at once (a login never
    waits for it); the link reconnects by itself when Redis is back.
    """

    @defer.inlineCallbacks
    def test_20_3_failsAtOnce(self):
        port, = freePorts(1)
        link = yield self.link(f"tcp:host=127.0.0.1:port={port}", wait=False)
        started = reactor.seconds()
        failure = yield self.assertFailure(RedisNonceLedger(link, self.prefix, "ticket").spend("n", 5),
                                           SharedStateUnavailable)
        self.assertLess(reactor.seconds() - started, 0.5)
        self.assertIn(f"port={port} is not connected", str(failure))
        self.assertFalse(link.up)
        up, detail = yield link.probe()
        self.assertFalse(up)
        self.assertIn("not connected", detail)

    @defer.inlineCallbacks
    def test_20_3_reconnectsOnItsOwn(self):
        """
        A throwaway redis-server, killed and started again on the same port:
        calls fail while it is gone and work again once the link is back.
        """
        port, = freePorts(1)
        process = self.throwawayRedis(port)
        link = yield self.link(f"tcp:host=127.0.0.1:port={port}")
        ledger = RedisNonceLedger(link, self.prefix, "ticket")
        self.assertTrue((yield ledger.spend("n1", 30)))
        process.kill()
        process.wait()
        self.assertTrue((yield waitFor(reactor, lambda: not link.up, timeout=5)))
        yield self.assertFailure(ledger.spend("n2", 30), SharedStateUnavailable)
        self.throwawayRedis(port)
        self.assertTrue((yield waitFor(reactor, lambda: link.up, timeout=15)), "the link did not come back")
        self.assertTrue((yield ledger.spend("n2", 30)))


class NoClusterNoRedisTests(TestCase):
    """
    Issue 20 #1: without [cluster] the gateway never imports a Redis client.
    """

    def test_20_1_noRedisImported(self):
        script = (
            "import sys\n"
            "from twisted.internet import reactor\n"
            "from kaazing_promo.tap import GatewayService\n"
            "from tests.support import gatewayConfig\n"
            f"gateway = GatewayService(gatewayConfig({os.path.abspath(self.mktemp())!r}), reactor)\n"
            "gateway.startService()\n"
            "gateway.stopService()\n"
            "loaded = sorted(name for name in sys.modules\n"
            "                if 'redis' in name or name.startswith('kaazing_promo.cluster'))\n"
            "print('loaded', loaded)\n"
            "sys.exit(1 if loaded or gateway.cluster is not None else 0)\n")
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        result = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True, text=True,
                                timeout=60)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)


class TwoGatewaysTests(RedisMixin, TestCase):
    """
    Issue 20 #2: two gateway services of one cluster in this process, each
    with its own connection to Redis, wired as twistd wires them.
    """

    @defer.inlineCallbacks
    def gateways(self, **top):
        from kaazing_promo.tap import GatewayService
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        users = writeUsersCnf(os.path.join(directory, "users.cnf"), *standardUsers())
        keyFile = privateFile(self, KEY_TEXT)
        listeners = [{"name": "web", "protocol": "websocket", "endpoint": "tcp:0:interface=127.0.0.1",
                      "max_failed_logins": 3},
                     {"name": "amqp", "protocol": "amqp", "endpoint": "tcp:0:interface=127.0.0.1",
                      "max_failed_logins": 3}]
        started = []
        for _ in range(2):
            config = gatewayConfig(self.mktemp(), listeners, user_auth="internal", internal={"users_cnf": users},
                                   cluster={"redis": REDIS, "key_file": keyFile, "prefix": self.prefix}, **top)
            gateway = GatewayService(config, reactor)
            gateway.startService()
            self.addCleanup(gateway.stopService)
            yield gateway.whenListening()
            started.append(gateway)
        for gateway in started:
            self.assertTrue((yield waitFor(reactor, lambda: gateway.cluster.link.up, timeout=10)))
        return started

    def attempt(self, gateway, password, host="10.9.0.1", user="joe.smith", listener="amqp"):
        settings = gateway.contexts[listener].listener
        return gateway.authenticator.authenticate(LoginAttempt(settings, host, f"{host}:4000", user, password))

    @defer.inlineCallbacks
    def outcome(self, d):
        try:
            avatar = yield d
        except LoginDenied as e:
            return e.outcome
        return avatar.user

    @defer.inlineCallbacks
    def test_20_2_guessingSpreadIsLimitedAsOne(self):
        """
        Guesses from one host alternating between the two gateways are
        limited at max_failed_logins, as against one gateway; another host
        still logs in.
        """
        first, second = yield self.gateways()
        outcomes = []
        for n in range(5):
            outcomes.append((yield self.outcome(self.attempt((first, second)[n % 2], f"guess-{n}"))))
        self.assertEqual(outcomes, ["bad-credentials"] * 3 + ["rate-limited"] * 2)
        self.assertEqual((yield self.outcome(self.attempt(second, "joe-pw"))), "rate-limited")
        self.assertEqual((yield self.outcome(self.attempt(first, "joe-pw", host="10.9.0.2"))), "joe.smith")

    @defer.inlineCallbacks
    def test_20_2_ticketOnceAcrossGateways(self):
        first, second = yield self.gateways()
        listener = first.contexts["web"].listener
        avatar = yield self.attempt(first, "joe-pw", listener="web")
        ticket = first.authenticator.issueTicket(avatar, listener, "10.9.0.1:4000")
        redeemed, _ = yield second.authenticator.redeemTicket(ticket, second.contexts["web"].listener,
                                                              "10.9.0.1:4001")
        self.assertEqual(redeemed.user, "joe.smith")
        for gateway in (first, second):
            self.assertEqual((yield self.outcome(gateway.authenticator.redeemTicket(
                ticket, gateway.contexts["web"].listener, "10.9.0.1:4002"))), "bad-credentials")

    @defer.inlineCallbacks
    def test_20_2_tokenAnsweredByTheOther(self):
        """
        A token one gateway minted is redeemed once by the other's
        [broker_auth]; the broker's next question about that connection is
        answered by either.
        """
        first, second = yield self.gateways(
            promotion={"mode": "token"}, broker_auth={"endpoint": "tcp:0:interface=127.0.0.1"},
            permissions=[{"group": "Tyche", "configure": "^tyche\\.", "write": "^tyche\\.", "read": "^tyche\\."}])
        avatar = yield self.attempt(first, "joe-pw")
        token = first.promoter.credentials(avatar, [b"PLAIN"]).password.reveal()

        @defer.inlineCallbacks
        def ask(gateway, path, **fields):
            root = buildBrokerAuthResource(gateway.promoter.tokenBook)
            request = DummyRequest([b"auth", path.encode()])
            request.method = b"POST"
            request.args = {name.encode(): [value.encode()] for name, value in fields.items()}
            finished = request.notifyFinish()
            root.getChildWithDefault(b"auth", request).getChildWithDefault(path.encode(), request).render(request)
            yield finished
            return b"".join(request.written).decode()
        answer = yield ask(second, "user", username="joe.smith", password=token)
        self.assertTrue(answer.startswith("allow "), answer)
        self.assertEqual((yield ask(first, "user", username="joe.smith", password=token)), "deny")
        tags = answer.split(" ", 1)[1]
        for gateway in (first, second):
            self.assertEqual((yield ask(gateway, "resource", username="joe.smith", vhost="/", tags=tags,
                                        resource="queue", name="tyche.q", permission="read")), "allow")
            self.assertEqual((yield ask(gateway, "resource", username="joe.smith", vhost="/", tags=tags,
                                        resource="queue", name="other.q", permission="read")), "deny")

    @defer.inlineCallbacks
    def test_20_2_grantsLiveWithTheirConnections(self):
        """
        The gateway holding a token-mode connection open renews its grant
        in Redis, so the broker's questions about it are answered by any
        gateway for as long as it lives, not just for the TTL.
        """
        first, second = yield self.gateways(
            promotion={"mode": "token"}, broker_auth={"endpoint": "tcp:0:interface=127.0.0.1"},
            permissions=[{"group": "Tyche", "read": "^tyche\\."}])
        avatar = yield self.attempt(first, "joe-pw")

        class OpenSession:
            isOpen = True

        session = OpenSession()
        session.avatar = avatar
        first.contexts["amqp"].sessions.add(session)
        self.addCleanup(first.contexts["amqp"].sessions.discard, session)
        renewal = first.cluster.getServiceNamed("cluster-grants")
        self.assertEqual(renewal.step, 60.0)
        function, args, kwargs = renewal.call
        yield function(*args, **kwargs)
        link = first.cluster.link
        key = self.prefix + "grant:" + grantTag(first.promoter.grant(avatar))
        ttl = (yield self.keys(link))[key]
        self.assertTrue(first.promoter.tokenBook.grantTTL * 1000 - 5000 < ttl, ttl)
        grant = yield second.promoter.tokenBook.grantFor(grantTag(first.promoter.grant(avatar)))
        self.assertEqual(grant, first.promoter.grant(avatar))


class RedisOutageTests(RedisMixin, TestCase):
    """
    Issue 20 #3: a gateway whose Redis dies and comes back.
    """

    timeout = 60

    @defer.inlineCallbacks
    def test_20_3_outage(self):
        """
        While Redis is gone: open connections go on, password logins go on
        with per-process limits (logged once), tickets are refused, /readyz
        reports the cluster check without taking the gateway out; when it
        is back the gateway reconnects by itself and tickets work again.
        """
        from kaazing_promo.ops.admin import Readiness
        from kaazing_promo.tap import GatewayService
        texts = capturedTexts(self)
        port, = freePorts(1)
        redis = self.throwawayRedis(port)
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        users = writeUsersCnf(os.path.join(directory, "users.cnf"), *standardUsers())
        config = gatewayConfig(
            self.mktemp(),
            [{"name": "web", "protocol": "websocket", "endpoint": "tcp:0:interface=127.0.0.1"},
             {"name": "amqp", "protocol": "amqp", "endpoint": "tcp:0:interface=127.0.0.1"}],
            user_auth="internal", internal={"users_cnf": users},
            cluster={"redis": f"tcp:host=127.0.0.1:port={port}", "key_file": privateFile(self, KEY_TEXT),
                     "prefix": self.prefix})
        gateway = GatewayService(config, reactor)
        gateway.startService()
        self.addCleanup(gateway.stopService)
        amqpPort = (yield gateway.whenListening())["amqp"].getHost().port
        link = gateway.cluster.link
        self.assertTrue((yield waitFor(reactor, lambda: link.up, timeout=10)))
        readiness = Readiness(gateway, reactor)
        yield readiness.refresh()
        self.assertEqual(readiness.asJSON()["checks"]["cluster"]["ok"], True)
        clients = []
        self.addCleanup(lambda: [client.transport.loseConnection() for client in clients])
        client = yield connectTCP(amqpPort, "joe.smith", "joe-pw", clients=clients)

        redis.kill()
        redis.wait()
        self.assertTrue((yield waitFor(reactor, lambda: not link.up, timeout=5)))
        self.assertEqual((yield roundTrip(client, [b"still", b"open"])), [b"still", b"open"])
        for _ in range(2):
            other = yield connectTCP(amqpPort, "joe.smith", "joe-pw", clients=clients)
            yield closeClient(other)
        self.assertEqual(len([text for text in texts if "counted per process" in text]), 1)
        web = gateway.contexts["web"].listener
        avatar = GatewayUser("joe.smith", {"Tyche", "Everyone"}, (), None, "internal")
        ticket = gateway.authenticator.issueTicket(avatar, web, "127.0.0.1:5000")
        denial = yield self.assertFailure(gateway.authenticator.redeemTicket(ticket, web, "127.0.0.1:5001"),
                                          LoginDenied)
        self.assertIn("ticket refused: Redis at", denial.reason)
        yield readiness.refresh()
        document = readiness.asJSON()
        self.assertEqual(document["checks"]["cluster"]["required"], False)
        self.assertFalse(document["checks"]["cluster"]["ok"])
        self.assertIn("per process", document["checks"]["cluster"]["detail"])
        self.assertTrue(document["ready"], document)

        self.throwawayRedis(port)
        self.assertTrue((yield waitFor(reactor, lambda: link.up, timeout=15)), "no reconnection")
        ticket = gateway.authenticator.issueTicket(avatar, web, "127.0.0.1:5000")
        redeemed, _ = yield gateway.authenticator.redeemTicket(ticket, web, "127.0.0.1:5001")
        self.assertEqual(redeemed.user, "joe.smith")
        other = yield connectTCP(amqpPort, "joe.smith", "joe-pw", clients=clients)
        yield closeClient(other)
        self.assertEqual(len([text for text in texts if "across the cluster again" in text]), 1)
        self.assertEqual((yield roundTrip(client, [b"after"])), [b"after"])
        yield closeClient(client)
        yield readiness.refresh()
        self.assertTrue(readiness.asJSON()["checks"]["cluster"]["ok"])


class ReadinessTests(SynchronousTestCase):
    """
    Issue 20 #3: /readyz reports a cluster check; it decides readiness in
    token mode only, where no login works without Redis.
    """

    def readyz(self, mode, up):
        from types import SimpleNamespace

        from kaazing_promo.ops.admin import Readiness, buildAdminResource
        top = {"promotion": {"mode": mode}, "broker_auth": {"endpoint": "tcp:0"}} if mode == "token" else {}
        checker = SimpleNamespace(userCount=2, path="/etc/kp/config/users.cnf")
        directlyProvides(checker, IReloadableUsers)
        gateway = fakeGateway("internal", checker, **top)
        detail = "Redis at tcp:host=r:port=6379 answers" if up else "Redis at tcp:host=r:port=6379 is not connected"
        gateway.cluster = SimpleNamespace(probe=lambda: defer.succeed((up, detail)))
        readiness = Readiness(gateway, gateway.reactor)
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
