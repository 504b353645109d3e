"""
Issue 16: the login gate under attack, through real sockets.  Attackers and
real users are different hosts: each binds its client sockets to its own
loopback address (127.0.0.2, 127.0.0.3, … all reach a listener on 127.0.0.1).
"""

import time
import uuid

from twisted.internet import defer
from twisted.trial import unittest

from kaazing_promo.auth.passhash import DEFAULT_ITERATIONS
from tests.authfixtures import TEST_ITERATIONS, writeUsersFile
from tests.rawclients import (
    REAL_USER, RawClient, amqpLogin, basic, connectFrom, httpRequest, post, sleep, upgrade)
from tests.support import GatewayTestMixin, gatewayConfig


class LoginAttackTestCase(GatewayTestMixin, unittest.TestCase):
    """
    A gateway with the internal realm, a WebSocket and an AMQP listener,
    consolidated to the local broker's guest account.
    """

    iterations = TEST_ITERATIONS
    listenerOptions = {}

    @defer.inlineCallbacks
    def setUp(self):
        directory = self.mktemp()
        writeUsersFile(directory, {REAL_USER[0]: (REAL_USER[1], ["Everyone"])}, self.iterations)
        listeners = [
            dict(name="web", protocol="websocket", endpoint="tcp:0:interface=127.0.0.1", **self.listenerOptions),
            dict(name="amqp", protocol="amqp", endpoint="tcp:0:interface=127.0.0.1", **self.listenerOptions)]
        yield self.startGateway(gatewayConfig(directory, user_auth="internal", listeners=listeners))


class PerHostLimitTests(LoginAttackTestCase):
    listenerOptions = {"max_failed_logins": 5}

    @defer.inlineCallbacks
    def test_16_1_oneHostIsLimitedWhateverTheListener(self):
        """
        Issue 16 #1: one address guessing with a new user name on every new
        connection is limited: past max_failed_logins its AMQP logins get
        Close 403, its upgrades, tickets and whoami 429 — even with the right
        password — while another address logs in.
        """
        for n in range(5):
            result = yield amqpLogin("127.0.0.2", self.ports["amqp"], f"guess-{uuid.uuid4().hex}", "wrong")
            self.assertIn("ACCESS_REFUSED - Login was refused", result)
        result = yield amqpLogin("127.0.0.2", self.ports["amqp"], *REAL_USER)
        self.assertIn("too many failed logins", result)
        for request in (upgrade(basic(*REAL_USER)), post("/amqp/ticket", basic(*REAL_USER)),
                        post("/amqp/whoami", basic(*REAL_USER))):
            line = yield httpRequest("127.0.0.2", self.ports["web"], request)
            self.assertIn(b" 429 ", line)
        result = yield amqpLogin("127.0.0.3", self.ports["amqp"], *REAL_USER)
        self.assertEqual(result, "open")
        line = yield httpRequest("127.0.0.3", self.ports["web"], post("/amqp/ticket", basic(*REAL_USER)))
        self.assertIn(b" 200 ", line)

    @defer.inlineCallbacks
    def test_16_1_webEndpointsCountTogether(self):
        """
        Issue 16 #1: failures on the upgrade, the ticket and whoami
        endpoints and the AMQP listener add up for one host.
        """
        for request in (upgrade(basic("x1", "bad")), post("/amqp/ticket", basic("x2", "bad")),
                        post("/amqp/whoami", basic("x3", "bad")), upgrade(basic("x4", "bad"))):
            line = yield httpRequest("127.0.0.4", self.ports["web"], request)
            self.assertIn(b" 401 ", line)
        result = yield amqpLogin("127.0.0.4", self.ports["amqp"], "x5", "bad")
        self.assertIn("ACCESS_REFUSED", result)
        line = yield httpRequest("127.0.0.4", self.ports["web"], upgrade(basic(*REAL_USER)))
        self.assertIn(b" 429 ", line)

    @defer.inlineCallbacks
    def test_16_3_guessingNeverLocksTheOwnerOut(self):
        """
        Issue 16 #3: guessing at joe.smith's password from one address does
        not keep joe.smith out when he logs in from another.
        """
        for n in range(8):
            yield amqpLogin("127.0.0.5", self.ports["amqp"], REAL_USER[0], f"guess-{n}")
        result = yield amqpLogin("127.0.0.6", self.ports["amqp"], *REAL_USER)
        self.assertEqual(result, "open")


class FloodTests(LoginAttackTestCase):
    """
    Issue 16 #2 at the default hash cost (PBKDF2-SHA256, 600,000 iterations):
    floods of logins that hang up 50 ms after their Start-Ok.
    """

    iterations = DEFAULT_ITERATIONS

    @defer.inlineCallbacks
    def flood(self, sources, attempts, concurrency=30):
        """
        C{attempts} hang-up logins spread over C{sources}, never more than
        C{concurrency} sockets open.
        """
        semaphore = defer.DeferredSemaphore(concurrency)

        def one(n):
            source = sources[n % len(sources)]
            return amqpLogin(source, self.ports["amqp"], f"flood-{uuid.uuid4().hex}", "wrong", hangUpAfter=0.05)
        yield defer.gatherResults([semaphore.run(one, n) for n in range(attempts)], consumeErrors=True)

    @defer.inlineCallbacks
    def realUserDuringFlood(self, sources, attempts):
        flooding = self.flood(sources, attempts)
        yield sleep(1.0)
        started = time.monotonic()
        result = yield amqpLogin("127.0.0.100", self.ports["amqp"], *REAL_USER)
        took = time.monotonic() - started
        self.assertEqual(result, "open")
        self.assertLess(took, 5.0, f"a real user's login took {took:.1f} s during the flood")
        yield flooding
        # Within 3 s of the flood ending, no work is left for the clients that left.
        scheduler = self.gateway.authenticator.scheduler
        deadline = time.monotonic() + 3.0
        while (scheduler.running or scheduler.waiting) and time.monotonic() < deadline:
            yield sleep(0.1)
        self.assertEqual((scheduler.running, scheduler.waiting), (0, 0))

    def test_16_2_floodFromOneHost(self):
        return self.realUserDuringFlood(["127.0.0.2"], 300)

    def test_16_2_floodFromTwentyHosts(self):
        return self.realUserDuringFlood([f"127.0.0.{n}" for n in range(10, 30)], 300)


class AdmissionTests(LoginAttackTestCase):
    listenerOptions = {"max_connections_per_source": 3, "handshake_timeout": 1.0}

    @defer.inlineCallbacks
    def test_16_5_silentSocketsCountAtAccept(self):
        """
        Issue 16 #5: sockets that have sent nothing hold their place in
        max_connections_per_source; the one over it is closed at once, on
        both listeners; another address is served.
        """
        for listener in ("web", "amqp"):
            silent = [RawClient() for _ in range(3)]
            for proto in silent:
                yield connectFrom("127.0.0.7", self.ports[listener], proto)
            extra = RawClient()
            yield connectFrom("127.0.0.7", self.ports[listener], extra)
            started = time.monotonic()
            yield extra.done
            self.assertLess(time.monotonic() - started, 0.5)
            for proto in silent:
                self.assertFalse(proto.done.called)
            if listener == "amqp":
                result = yield amqpLogin("127.0.0.8", self.ports["amqp"], *REAL_USER)
                self.assertEqual(result, "open")
            else:
                line = yield httpRequest("127.0.0.8", self.ports["web"], post("/amqp/ticket", basic(*REAL_USER)))
                self.assertIn(b" 200 ", line)
            for proto in silent:
                proto.transport.loseConnection()
                yield proto.done

    @defer.inlineCallbacks
    def test_16_5_slowHTTPClosedAtTheDeadline(self):
        """
        Issue 16 #5: a byte every 0.2 s does not keep an HTTP request open
        past handshake_timeout from accept.
        """
        proto = RawClient()
        yield connectFrom("127.0.0.9", self.ports["web"], proto)
        started = time.monotonic()
        request = upgrade(basic(*REAL_USER))
        for index in range(len(request)):
            if proto.done.called:
                break
            proto.transport.write(request[index:index + 1])
            yield sleep(0.2)
        yield proto.done
        self.assertLess(time.monotonic() - started, 1.8)

    @defer.inlineCallbacks
    def test_16_5_oneDeadlineFromAcceptToOpenOk(self):
        """
        Issue 16 #5: the upgrade's time counts: an upgrade finished at 0.7 s
        and then silent is closed (a WebSocket Close frame) at 1 s from
        accept, not 1 s after the upgrade.
        """
        proto = RawClient()
        yield connectFrom("127.0.0.9", self.ports["web"], proto)
        started = time.monotonic()
        yield sleep(0.7)
        proto.transport.write(upgrade(basic(*REAL_USER)))
        yield proto.done
        self.assertIn(b" 101 ", proto.data)
        [closedAt] = [at for at, data in proto.arrivals if data.startswith(b"\x88")]
        self.assertLess(closedAt - started, 1.5)
