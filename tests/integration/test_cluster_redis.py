"""
Issue 20 #2 and #3 against Redis: what the gateways of a cluster share
through it and what happens while it cannot be asked.  The tests talk to
the machine's Redis (127.0.0.1:6379) under a key prefix of their own, which
they delete afterwards, or to a throwaway C{redis-server} they start and
kill themselves.  (The same logic with fakes of the shared stores, in
memory: tests/unit/test_cluster_state.py.)
"""

import os
import subprocess
import sys

from twisted.internet import defer, reactor, task
from twisted.trial.unittest import TestCase
from twisted.web.test.requesthelper import DummyRequest
from zope.interface.verify import verifyObject

from kaazing_promo.auth.avatar import GatewayUser
from kaazing_promo.token.brokerauth import buildBrokerAuthResource
from kaazing_promo.cluster.shared import RedisFailureStore, RedisGrantStore, RedisNonceLedger
from kaazing_promo.errors import LoginDenied, SharedStateUnavailable
from kaazing_promo.interfaces import (
    ABANDONED, FAILED, SUCCEEDED, IFailureStore, IGrantStore, INonceLedger, LoginAttempt)
from kaazing_promo.token.permissions import Grant
from kaazing_promo.token.tokens import grantTag
from tests import ROOT
from tests.authfixtures import KEY_TEXT, privateFile, standardUsers, writeUsersCnf
from tests.logcapture import capturedTexts
from tests.processes import freePorts, waitFor
from tests.sharedredis import REDIS, RedisMixin
from tests.support import closeClient, connectTCP, gatewayConfig, roundTrip


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
        result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
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
        readiness = Readiness(gateway.config, reactor, gateway.brokerConnector, gateway.startCache, gateway.checker,
                              gateway.cluster)
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
