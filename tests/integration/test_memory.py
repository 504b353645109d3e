"""
Memory a finished connection leaves behind (issue 7, the soak's RSS
criterion): a gateway with thousands of connections churning must not keep
what a closed one held until the cyclic garbage collector gets round to it,
which in CPython is its rare full collection, long after the memory could
have served the next client.
"""

import collections
import gc
import os

from twisted.internet import defer, reactor, task
from twisted.trial.unittest import SkipTest, TestCase

from kaazing_promo.auth.userscnf import UserEntry
from kaazing_promo.ops.memory import INTERVAL, MALLOC_TRIM, MINIMUM_PEAK, MemoryReclaimer, residentBytes

from tests.authfixtures import testHash, writeUsersCnf
from tests.rawclients import rawRequest, upgrade
from tests.support import (
    ConnectionRefusedWS, IntegrationTestCase, basicHeader, closeClient, connectTCP, connectWebSocket, gatewayConfig,
    roundTrip)


def _gatewayGarbage():
    """
    Collect with C{DEBUG_SAVEALL}: the gateway's own objects the collector
    found unreachable, each of which waited for a collection instead of
    being freed as its connection ended.

    @return: C{(counts by type name, the objects)}.
    """
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        found = [o for o in gc.garbage if type(o).__module__.startswith("kaazing_promo")]
    finally:
        gc.set_debug(0)
        del gc.garbage[:]
    return collections.Counter(type(o).__qualname__ for o in found), found


class ClosedConnectionsAreFreedTests(IntegrationTestCase):
    """
    After a login, a round trip and a close over either listener, nothing
    of the gateway's is left in a reference cycle: reference counting frees
    each session, its protocols, readers and avatar as the connection ends.
    """

    @defer.inlineCallbacks
    def setUp(self):
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        writeUsersCnf(os.path.join(directory, "users.cnf"),
                      [UserEntry("alice", testHash("alice-pw"), {"Everyone"}, True)], {"Everyone": ["alice"]})
        listeners = [
            {"name": "web", "protocol": "websocket", "endpoint": "tcp:0:interface=127.0.0.1", "auth": "required"},
            {"name": "amqp", "protocol": "amqp", "endpoint": "tcp:0:interface=127.0.0.1", "auth": "required"},
        ]
        config = gatewayConfig(directory, listeners, user_auth="internal",
                               internal={"users_cnf": "users.cnf"})
        yield self.startGateway(config)
        # The start-up probe and the first logins build what every later
        # connection shares; only what a connection leaves counts.
        yield self.churn(1)
        gc.collect()
        gc.disable()
        self.addCleanup(gc.enable)

    @defer.inlineCallbacks
    def churn(self, rounds):
        for _ in range(rounds):
            tcp = yield connectTCP(self.ports["amqp"], user="alice", password="alice-pw")
            ws = yield connectWebSocket(self.ports["web"], headers=basicHeader("alice", "alice-pw"))
            for client in (tcp, ws):
                received = yield roundTrip(client, [b"x" * 100])
                self.assertEqual(received, [b"x" * 100])
                yield closeClient(client)
            yield ws.wsFactory.closed
        yield self.idle()

    @defer.inlineCallbacks
    def idle(self):
        """
        Until no session is left on either listener and the broker side
        has been told, plus a turn of the reactor for the close callbacks.
        """
        for _ in range(200):
            if not any(context.sessions for context in self.gateway.contexts.values()):
                break
            yield task.deferLater(reactor, 0.05, lambda: None)
        self.assertFalse(any(context.sessions for context in self.gateway.contexts.values()))
        yield task.deferLater(reactor, 0.2, lambda: None)

    @defer.inlineCallbacks
    def test_noGatewayObjectInACycle(self):
        """
        Three logins, round trips and closes on each listener leave no
        session, protocol, reader, scanner or avatar for the collector.
        What Twisted's own connector cycle keeps of a broker connection
        (twisted#7119, "wontfix") is the empty factory shell, nothing more.
        """
        yield self.churn(3)
        counts, found = _gatewayGarbage()
        self.assertEqual(set(counts) - {"_BrokerFactory"}, set())
        self.assertEqual([shell.session for shell in found], [None] * len(found))

    @defer.inlineCallbacks
    def test_refusedLoginsLeaveNoCycle(self):
        """
        A wrong password on each listener (401 on the upgrade, Close 403 on
        the AMQP listener) leaves nothing of the gateway's for the collector
        either: a refusal's exception does not hold its connection.
        """
        for _ in range(2):
            yield self.assertFailure(
                connectWebSocket(self.ports["web"], headers=basicHeader("alice", "wrong")), ConnectionRefusedWS)
            clients = []
            error = yield self.assertFailure(
                connectTCP(self.ports["amqp"], "alice", "wrong", clients=clients), Exception)
            self.assertIn("403", str(error))
            clients[0].transport.loseConnection()
        yield self.idle()
        counts, found = _gatewayGarbage()
        self.assertEqual(counts, collections.Counter())


    @defer.inlineCallbacks
    def test_hostileClientsLeaveNoCycle(self):
        """
        Hostile and broken clients, refused at every stage of either
        listener, leave nothing of the gateway's for the collector either.
        """
        amqp, web = self.ports["amqp"], self.ports["web"]
        header = b"AMQP\x00\x00\x09\x01"
        # Connection.Close's class and method, then the reply code: a frame
        # too big (501), a heartbeat on channel 5 before the handshake (505).
        closeMethod = b"\x00\x0a\x00\x32"
        for port, request, expected in [
                (amqp, b"GET / HTTP/1.1\r\n\r\n", header),                  # not AMQP: our header back
                (amqp, header + b"\x01\x00\x00\xff\xff\xff\xff" + b"x" * 64, closeMethod + (501).to_bytes(2, "big")),
                (amqp, header + b"\x08\x00\x05\x00\x00\x00\x00\xce", closeMethod + (505).to_bytes(2, "big")),
                (web, b"BREW /pot HTCPCP/1.0\r\n\r\n", b" 400 "),
                (web, upgrade(b"Authorization: Basic !!!\r\n"), b" 401 "),
                (web, upgrade(b"Authorization: Basic " + b"A" * 70000 + b"\r\n"), b" 431 "),
                (web, b"GET /amqp HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", b" 426 ")]:
            response = yield rawRequest(port, request)
            self.assertIn(expected, response, request[:40])
        yield self.idle()
        counts, found = _gatewayGarbage()
        self.assertEqual(counts, collections.Counter())


class MemoryReclaimerTests(TestCase):
    """
    The reclaimer collects and trims once a busy spell is over, and not
    while the load holds.
    """

    def setUp(self):
        self.clock = task.Clock()
        self.open = self.burst = 0
        self.calls = []
        self.reclaimer = MemoryReclaimer(
            self.counts, self.clock, collect=lambda: self.calls.append("collect") or 7,
            trim=lambda pad: self.calls.append(("trim", pad)) or 1, rss=lambda: 100 << 20)
        self.reclaimer.startService()
        self.addCleanup(self.reclaimer.stopService)

    def counts(self):
        """
        What the gateway answers: open now, and the most open at once since
        the previous look (a burst between looks included).
        """
        recent, self.burst = max(self.open, self.burst), 0
        return self.open, recent

    def spell(self, *opens):
        """
        One look per number: that many connections open during the interval
        before it, and still open at the look.
        """
        for open in opens:
            self.open = open
            self.clock.advance(INTERVAL)

    def test_reclaimsOnceAfterTheLoadFalls(self):
        """
        2,000 connections, then 100 (a twentieth) for a whole interval: one
        collection and one C{malloc_trim(0)}; more quiet looks do nothing more.
        """
        self.spell(2000, 2000, 2000)
        self.assertEqual(self.calls, [])
        self.spell(100)
        self.assertEqual(self.calls, ["collect", ("trim", 0)])
        self.spell(*[100] * 10)
        self.assertEqual(self.reclaimer.reclaims, 1)

    def test_aBurstBetweenLooksCounts(self):
        """
        A spell of 1,000 connections that begins and ends between two looks
        (never seen open at a look) is followed by a reclaim, but not within
        the interval it happened in.
        """
        self.spell(0, 0)
        self.burst = 1000
        self.spell(0)
        self.assertEqual(self.calls, [])
        self.spell(0)
        self.assertEqual(self.reclaimer.reclaims, 1)

    def test_notWhileTheLoadHolds(self):
        """
        A load that stays above a quarter of its peak is never interrupted.
        """
        self.spell(2000, 1500, 900, 600, 501, 1200, 700)
        self.assertEqual(self.calls, [])

    def test_aQuietLookMustBeQuietThroughout(self):
        """
        A look that finds few connections open after an interval that had
        many is not quiet: no reclaim while the load comes and goes.
        """
        for _ in range(3):
            self.burst = 2000
            self.spell(10)
        self.assertEqual(self.calls, [])

    def test_smallPeaksAreNotWorthIt(self):
        """
        A peak under L{MINIMUM_PEAK} connections leaves memory alone.
        """
        self.spell(MINIMUM_PEAK - 1, 0, 0, 0)
        self.assertEqual(self.calls, [])

    def test_nextSpellCountsFromTheQuietLevel(self):
        """
        After a reclaim the peak starts again: a second busy spell and its
        end bring a second reclaim.
        """
        self.spell(2000, 0)
        self.assertEqual(self.reclaimer.reclaims, 1)
        self.spell(400, 400)
        self.assertEqual(self.reclaimer.reclaims, 1)
        self.spell(0)
        self.assertEqual(self.reclaimer.reclaims, 2)

    def test_stopsLooking(self):
        """
        Stopped, it leaves no delayed call behind.
        """
        self.reclaimer.stopService()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_withoutGlibc(self):
        """
        Where the C library has no C{malloc_trim}, the collection alone runs.
        """
        reclaimer = MemoryReclaimer(lambda: (0, 0), self.clock,
                                    collect=lambda: self.calls.append("collect") or 0, trim=None, rss=lambda: None)
        reclaimer.reclaim()
        self.assertEqual(self.calls, ["collect"])


class RealTrimTests(TestCase):
    """
    The real thing, in this process: glibc's C{malloc_trim} is found and a
    reclaim returns freed memory to the system.
    """

    def test_givesFreedPagesBack(self):
        """
        64 MiB of 2,000-byte buffers (glibc's, not pymalloc's), all but one
        in 32 freed: glibc keeps the freed pages until asked, and a reclaim
        makes the resident set at least 16 MiB smaller.
        """
        if MALLOC_TRIM is None:
            raise SkipTest("this C library has no malloc_trim (not glibc)")
        reclaimer = MemoryReclaimer(lambda: (0, 0), task.Clock())
        # Many small buffers, one kept per 32 so the heap cannot shrink from its top alone.
        pieces = [bytearray(2000) for _ in range(32 * 1024)]
        keep = pieces[::32]
        del pieces
        before = residentBytes()
        reclaimer.reclaim()
        after = residentBytes()
        self.assertEqual(reclaimer.reclaims, 1)
        self.assertLess(after, before - (16 << 20), (before, after))
        del keep


class ConnectionCountsTests(IntegrationTestCase):
    """
    What the gateway's reclaimer is told: connections open now, and the
    most open at once since it last asked.
    """

    @defer.inlineCallbacks
    def test_peakSinceTheLastLook(self):
        yield self.startGateway(gatewayConfig(self.mktemp()))
        self.assertIsInstance(self.gateway.memory, MemoryReclaimer)
        self.assertIn(self.gateway.memory, list(self.gateway))
        # This test takes the peaks itself: the reclaimer's look must not.
        self.gateway.memory.stopService()
        self.assertEqual(self.gateway.connectionCounts(), (0, 0))
        clients = []
        for port in (self.ports["amqp"], self.ports["amqp"], self.ports["web"]):
            connect = connectTCP if port == self.ports["amqp"] else connectWebSocket
            clients.append((yield connect(port)))
        self.assertEqual(self.gateway.connectionCounts(), (3, 3))
        yield closeClient(clients.pop(0))
        yield closeClient(clients.pop(0))
        while sum(len(context.sessions) for context in self.gateway.contexts.values()) > 1:
            yield task.deferLater(reactor, 0.05, lambda: None)
        # One is open now; three were at once since the last look, and
        # after this look only the one counts.
        self.assertEqual(self.gateway.connectionCounts(), (1, 3))
        self.assertEqual(self.gateway.connectionCounts(), (1, 1))
        yield closeClient(clients.pop(0))
