"""
workers = N: worker processes adopt the master's listening sockets and
serve clients; tickets issued by one process open WebSockets in another.
"""

import json
import os

import treq
from twisted.internet import defer, reactor

from kaazing_promo.errors import ConfigError
from tests.authfixtures import writeUsersFile
from tests.support import (
    PASSWORDS, IntegrationTestCase, PromotionTestCase, closeClient, connectTCP, connectWebSocket, gatewayConfig,
    roundTrip)


class WorkerTests(PromotionTestCase):

    def setUp(self):
        # A worker writes its log to the master's standard output (the
        # journal, in production); here that is trial's own output, so it
        # goes to a file in the test's directory instead.
        self.workerLog = os.path.abspath(self.mktemp())
        spawnProcess = reactor.spawnProcess

        def spawnQuietly(processProtocol, executable, args=(), env={}, path=None, uid=None, gid=None,
                         usePTY=0, childFDs=None):
            with open(self.workerLog, "ab") as log:
                return spawnProcess(processProtocol, executable, args, env, path, uid, gid, usePTY,
                                    {**childFDs, 1: log.fileno(), 2: log.fileno()})
        self.patch(reactor, "spawnProcess", spawnQuietly)
        return PromotionTestCase.setUp(self)

    def configuration(self):
        configuration = PromotionTestCase.configuration(self)
        configuration["workers"] = 2
        return configuration

    @defer.inlineCallbacks
    def test_workerServesAndRedeemsTickets(self):
        """
        With the master's own sockets paused, clients are served by the
        worker; a ticket the master issued opens a WebSocket in the worker.
        The worker's log lines are kept out of trial's output.
        """
        url = f"http://127.0.0.1:{self.ports['web']}/amqp/ticket"
        response = yield treq.post(url, auth=("joe.smith", PASSWORDS["joe.smith"]), persistent=False)
        ticket = json.loads((yield response.content()))["ticket"]
        ports = yield self.gateway.whenListening()
        for port in ports.values():
            port.stopReading()
        tcp = yield connectTCP(self.ports["amqp"], "joe.smith", PASSWORDS["joe.smith"])
        ws = yield connectWebSocket(self.ports["web"], query=f"?ticket={ticket}")
        for client in (tcp, ws):
            received = yield roundTrip(client, [b"from a worker"])
            self.assertEqual(received, [b"from a worker"])
        self.assertEqual([c.sessions for c in self.gateway.contexts.values()], [set(), set()])
        yield closeClient(tcp)
        yield closeClient(ws)
        yield ws.wsFactory.closed
        for port in ports.values():
            port.startReading()
        yield self.gateway.stopService()
        [worker] = self.gateway.workers.processes
        self.assertTrue(worker.ended.called)
        # The worker's log went to the test's file, not into trial's output.
        with open(self.workerLog, encoding="utf-8") as log:
            self.assertIn("listener amqp: amqp on tcp:0:interface=127.0.0.1", log.read())


class WorkerConfigTests(IntegrationTestCase):

    def test_workersNeedPlainTCP(self):
        """
        A socket behind haproxy: or ssl: cannot be handed over as it is.
        """
        config = gatewayConfig(self.mktemp(), workers=2, listeners=[
            {"name": "lb", "protocol": "amqp", "endpoint": "haproxy:tcp:0", "auth": "none",
             "trusted_proxies": ["127.0.0.1"]}])
        from kaazing_promo.workers import checkWorkerEndpoints
        error = self.assertRaises(ConfigError, checkWorkerEndpoints, config)
        self.assertIn("'lb'", str(error))


class TokenWorkerTests(IntegrationTestCase):

    def test_X7_workerTokensCheckedByMaster(self):
        """
        Token mode with workers: a token a worker mints (with the key the
        master shares) is redeemed once by the master's [broker_auth] book.
        """
        from twisted.internet import reactor

        from kaazing_promo.auth.avatar import GatewayUser
        from kaazing_promo.tap import GatewayService
        directory = self.mktemp()
        writeUsersFile(directory, {"joe.smith": ("joe-password", ["Tyche"])})
        config = gatewayConfig(
            directory, workers=2,
            listeners=[{"name": "amqp", "protocol": "amqp", "endpoint": "tcp:0", "auth": "required"}],
            user_auth="internal",
            promotion={"mode": "token"}, broker_auth={"endpoint": "tcp:0:interface=127.0.0.1"},
            permissions=[{"group": "Tyche", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}])
        master = GatewayService(config, reactor)
        worker = GatewayService(config, reactor, inheritedPorts={"amqp": -1}, ticketKey=master.ticketKey)
        joe = GatewayUser("joe.smith", {"Tyche"})
        token = worker.promoter.credentials(joe, [b"PLAIN"]).password.reveal()
        self.assertIsNotNone(self.successResultOf(master.promoter.tokenBook.redeem("joe.smith", token)))
        self.assertIsNone(self.successResultOf(master.promoter.tokenBook.redeem("joe.smith", token)))
        stranger = GatewayService(config, reactor, inheritedPorts={"amqp": -1})
        other = stranger.promoter.credentials(joe, [b"PLAIN"]).password.reveal()
        self.assertIsNone(self.successResultOf(master.promoter.tokenBook.redeem("joe.smith", other)))
