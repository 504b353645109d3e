"""
Issue 7: hostile HTTP on the upgrade, secrets that never reach a log, and
the broker closing, stopping and coming back.  Issue 16: client text that
would forge log lines.
"""

import base64
import json
import os
import random

import treq
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial import unittest

from kaazing_promo.ops.audit import isAuditEvent
from tests.logcapture import FORGED_USER, FORGED_VHOST, assertOneSafeLine, captureEvents
from tests.rabbitnode import DedicatedNodeMixin
from tests.rawclients import RawClient, rawRequest, upgrade
from tests.support import (
    PASSWORDS, GatewayTestMixin, PromotionTestCase, basicHeader, closeClient, connectTCP, connectWebSocket,
    gatewayConfig, rabbitmqctl, roundTrip, uniqueName)

ALLOWED = (b" 400 ", b" 401 ", b" 403 ", b" 426 ", b" 431 ")


def statusLine(response):
    return response.partition(b"\r\n")[0]


class _ResponseHead(RawClient):
    """
    Sends one raw request and hangs up once the response's head is in (an
    upgraded connection would wait for AMQP).
    """

    def dataReceived(self, data):
        RawClient.dataReceived(self, data)
        if b"\r\n\r\n" in self.data:
            self.transport.loseConnection()


@defer.inlineCallbacks
def responseHead(port, request):
    proto = _ResponseHead(request)
    yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), proto)
    response = yield proto.done
    return response


class HostileUpgradeTests(PromotionTestCase):

    @defer.inlineCallbacks
    def assertRefused(self, request):
        response = yield rawRequest(self.ports["web"], request)
        line = statusLine(response)
        self.assertTrue(any(code in line for code in ALLOWED), (request[:200], line))
        self.assertNotIn(b" 500 ", line)
        return line

    @defer.inlineCallbacks
    def test_badAuthorizationValues(self):
        """
        Bad base64, non-UTF-8 names, other schemes, empty names, duplicate
        headers: 401, never a 500.
        """
        values = [
            b"Basic !!!notbase64!!!", b"Basic " + base64.b64encode(b"\xff\xfe:pw"), b"Bearer abc",
            b"Basic " + base64.b64encode(b":nouser"), b"Basic " + base64.b64encode(b"nocolon"), b"Basic",
            b"basic " + base64.b64encode(b"joe.smith:nope"), b"Basic " + b"A" * 5000,
        ]
        for value in values:
            line = yield self.assertRefused(upgrade(b"Authorization: " + value + b"\r\n"))
            self.assertIn(b" 401 ", line, value)
        # Control characters in a header value are a bad request before any auth.
        line = yield self.assertRefused(upgrade(b"Authorization: \x00\x01\x02\r\n"))
        self.assertIn(b" 400 ", line)
        good = basicHeader("joe.smith", PASSWORDS["joe.smith"])["Authorization"].encode()
        yield self.assertRefused(upgrade(
            b"Authorization: " + good + b"\r\nAuthorization: " + good + b"\r\n"))

    @defer.inlineCallbacks
    def test_malformedUpgrades(self):
        """
        Missing or broken upgrade headers and oversized headers: 4xx.
        """
        requests = [
            b"GET /amqp HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            b"GET /amqp HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            upgrade(b"X-Big: " + b"a" * 70000 + b"\r\n"),
            b"GET /amqp HTTP/1.1\r\n" + b"X: y\r\n" * 2000 + b"\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 100 + b"\r\n\r\n",
            b"POST /amqp/ticket HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello",
        ]
        statuses = []
        for request in requests:
            response = yield rawRequest(self.ports["web"], request)
            statuses.append(statusLine(response).split(b" ")[1:2])
        self.assertEqual(statuses, [[b"426"], [b"400"], [b"431"], [b"400"], [b"400"], [b"401"]])

    @defer.inlineCallbacks
    def test_fuzzedAuthorization(self):
        """
        Arbitrary decoded credentials (seeded, reproducible): 401, or 429
        once the failed-login limit for this source is reached; never 500.
        """
        rng = random.Random(7)
        for _ in range(40):
            credentials = rng.randbytes(rng.randrange(1, 200))
            value = b"Basic " + base64.b64encode(credentials)
            response = yield rawRequest(self.ports["web"], upgrade(b"Authorization: " + value + b"\r\n"))
            line = statusLine(response)
            self.assertTrue(b" 401 " in line or b" 429 " in line, line)


class SecretsNeverLoggedTests(PromotionTestCase):

    @defer.inlineCallbacks
    def test_noSecretInAnyLogEvent(self):
        """
        Issue 7 / X4: the integration scenarios with every log event captured
        (all levels, failures included) show no password, ticket, broker
        secret or Authorization value; reprs of config and avatar redact.
        """
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        authorization = basicHeader("joe.smith", PASSWORDS["joe.smith"])["Authorization"]
        url = f"http://127.0.0.1:{self.ports['web']}/amqp/ticket"
        response = yield treq.post(url, auth=("joe.smith", PASSWORDS["joe.smith"]), persistent=False)
        ticket = json.loads((yield response.content()))["ticket"]
        client = yield connectWebSocket(self.ports["web"], query=f"?ticket={ticket}", name=uniqueName("s"))
        yield roundTrip(client, [b"x"])
        yield closeClient(client)
        for connect in (lambda password: connectWebSocket(self.ports["web"], headers=basicHeader("joe.smith", password)),
                        lambda password: connectTCP(self.ports["amqp"], "joe.smith", password)):
            yield self.assertFailure(connect("nope"), Exception)
            client = yield connect(PASSWORDS["joe.smith"])
            yield closeClient(client)
        secrets = [PASSWORDS["joe.smith"], "nope", ticket, authorization.split()[1], "smithj-pw", "webuser-pw"]
        texts = [formatEvent(event) + repr(event) for event in events]
        texts.append(repr(self.gateway.config) + repr(self.gateway.secrets))
        self.assertGreater(len(events), 5)
        for text in texts:
            for secret in secrets:
                self.assertNotIn(secret, text)


class ForgedLogLineTests(PromotionTestCase):
    """
    Issue 16 finding 6: a user name and a vhost holding CR, LF, ESC and a
    fake C{login ok ... gateway_user=admin} line, sent through the real
    listeners, give one text log line per event with the escapes visible.
    """

    @defer.inlineCallbacks
    def test_clientTextEscapedInTheLog(self):
        events = captureEvents(self)
        request = upgrade(b"Authorization: " + basicHeader(FORGED_USER, "nope")["Authorization"].encode() + b"\r\n")
        response = yield rawRequest(self.ports["web"], request)
        self.assertIn(b" 401 ", statusLine(response))
        yield self.assertFailure(connectTCP(self.ports["amqp"], FORGED_USER, "nope"), Exception)
        # Autobahn quotes a bad key in the reason it logs (and sends); C1
        # controls (CSI, NEL) pass its header check.
        response = yield rawRequest(self.ports["web"], upgrade(b"Sec-WebSocket-Key: \x9b31m\x85forged\r\n"))
        self.assertIn(b" 400 ", statusLine(response))
        self.assertIn(b"\\x9b31m\\x85forged", statusLine(response))
        # The right password and a vhost that is a log line of its own: the
        # broker refuses the vhost, and its Close quotes it.
        for listener in ("web", "amqp"):
            yield self.assertFailure(
                self.connect(listener, "joe.smith", PASSWORDS["joe.smith"], vhost=FORGED_VHOST), Exception)
        lines = [assertOneSafeLine(self, event) for event in events]
        audited = [assertOneSafeLine(self, event) for event in events if isAuditEvent(event)]
        # Basic credentials end the user name at its first colon; PLAIN carries all of it.
        forged = [line for line in audited if "gateway_user=mallory\\r\\n\\x1b[31mlogin ok" in line]
        self.assertEqual([" listener=web " in line for line in forged], [True, False], audited)
        self.assertIn("gateway_user=admin broker_user=guest broker_user=None", forged[1])
        vhosts = [line for line in audited if "vhost=/\\nconnection open: gateway_user=admin\\x1b[0m " in line]
        self.assertTrue(vhosts, audited)
        self.assertFalse([line for line in lines if "mallory\n" in line or "\x1b" in line])


class HostAllowListTests(PromotionTestCase):
    """
    Issue 16 finding 9a: a listener with C{hosts} answers 421 to the
    upgrade, the ticket and whoami endpoints and the page when the Host is
    another name (DNS rebinding), before any login; its own names pass.
    """

    def listeners(self):
        web, amqp = PromotionTestCase.listeners(self)
        web["hosts"] = ["127.0.0.1", "gateway.example:8443"]
        web["webroot"] = os.path.abspath(os.path.join(self.directory, "web"))
        os.makedirs(web["webroot"])
        with open(os.path.join(web["webroot"], "index.html"), "w") as f:
            f.write("the page")
        return [web, amqp]

    def withHost(self, request, host):
        return request.replace(b"Host: 127.0.0.1\r\n", b"Host: " + host + b"\r\n", 1)

    @defer.inlineCallbacks
    def test_otherHostsMisdirected(self):
        events = captureEvents(self)
        authorization = b"Authorization: " + basicHeader("joe.smith", PASSWORDS["joe.smith"])["Authorization"].encode()
        port = str(self.ports["web"]).encode()
        requests = {
            "upgrade": upgrade(authorization + b"\r\n"),
            "ticket": b"POST /amqp/ticket HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                      + authorization + b"\r\nContent-Length: 0\r\n\r\n",
            "whoami": b"GET /amqp/whoami HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                      + authorization + b"\r\n\r\n",
            "page": b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        }
        for name, request in requests.items():
            for host in (b"rebound.example:" + port, b"gateway.example:" + port, b"gateway.example"):
                response = yield responseHead(self.ports["web"], self.withHost(request, host))
                self.assertIn(b" 421 ", statusLine(response), (name, host))
            duplicated = self.withHost(request, b"127.0.0.1\r\nHost: rebound.example")
            response = yield responseHead(self.ports["web"], duplicated)
            self.assertIn(b" 421 ", statusLine(response), (name, "two Host headers"))
        self.assertEqual([event for event in events if isAuditEvent(event)], [])
        expected = {"upgrade": b" 101 ", "ticket": b" 200 ", "whoami": b" 200 ", "page": b" 200 "}
        for name, request in requests.items():
            for host in (b"127.0.0.1:" + port, b"gateway.example:8443"):
                response = yield responseHead(self.ports["web"], self.withHost(request, host))
                self.assertIn(expected[name], statusLine(response), (name, host, response))


class RateLimitTests(PromotionTestCase):
    listenerOptions = {"max_failed_logins": 3}

    def listeners(self):
        web, amqp = PromotionTestCase.listeners(self)
        web["allowed_origins"] = ["https://app.example.com"]
        return [web, amqp]

    @defer.inlineCallbacks
    def test_X5_failedLoginsRateLimited(self):
        """
        X5: past max_failed_logins per user, the WebSocket gets 429 with
        Retry-After and the AMQP listener Close 403, without asking the
        realm — even with the right password.
        """
        wrong = basicHeader("joe.smith", "nope")["Authorization"].encode()
        for _ in range(3):
            line = yield self.assertRefused(upgrade(b"Authorization: " + wrong + b"\r\n"))
            self.assertIn(b" 401 ", line)
        right = basicHeader("joe.smith", PASSWORDS["joe.smith"])["Authorization"].encode()
        response = yield rawRequest(self.ports["web"], upgrade(b"Authorization: " + right + b"\r\n"))
        self.assertIn(b" 429 ", statusLine(response))
        self.assertIn(b"Retry-After: ", response)
        error = yield self.assertFailure(connectTCP(self.ports["amqp"], "joe.smith", PASSWORDS["joe.smith"]),
                                         Exception)
        self.assertIn("403", str(error))
        self.assertIn("retry after", str(error))

    @defer.inlineCallbacks
    def test_X5_originAllowList(self):
        """
        X5: an upgrade or ticket request from an Origin outside
        allowed_origins gets 403 before any authentication.
        """
        right = basicHeader("joe.smith", PASSWORDS["joe.smith"])["Authorization"].encode()
        response = yield rawRequest(self.ports["web"], upgrade(
            b"Authorization: " + right + b"\r\nOrigin: https://evil.example.net\r\n"))
        self.assertIn(b" 403 ", statusLine(response))
        response = yield rawRequest(self.ports["web"], upgrade(
            b"Authorization: " + right + b"\r\nOrigin: https://app.example.com\r\n"))
        self.assertIn(b" 101 ", statusLine(response))

    assertRefused = HostileUpgradeTests.assertRefused


class BrokerFaultTests(PromotionTestCase):

    @defer.inlineCallbacks
    def test_brokerClosesConnection(self):
        """
        The broker closing a promoted connection (rabbitmqctl
        close_connection) reaches the client as the broker's Close; the
        gateway keeps serving new connections.
        """
        for listener in ("web", "amqp"):
            name = uniqueName(listener)
            client = yield self.connect(listener, "joe.smith", PASSWORDS["joe.smith"], name=name)
            output = yield rabbitmqctl("list_connections", "pid", "client_properties", "--no-table-headers")
            [pid] = [line.split("\t")[0] for line in output.splitlines() if name in line]
            yield rabbitmqctl("close_connection", pid, "operator says bye")
            close = yield client.delegate.serverClosed
            self.assertEqual(close.reply_code, 320)
            self.assertIn("operator says bye", close.reply_text)
            again = yield self.connect(listener, "joe.smith", PASSWORDS["joe.smith"])
            received = yield roundTrip(again, [b"still here"])
            self.assertEqual(received, [b"still here"])
            yield closeClient(again)


class BrokerRestartTests(DedicatedNodeMixin, GatewayTestMixin, unittest.TestCase):
    """
    Issue 7, faults: the broker closing every connection, going away and
    coming back (a dedicated node, stopped and started again).  The gateway
    keeps running; clients get clean closes; once the broker is back new
    connections succeed without a gateway restart.
    """

    timeout = 180
    nodeOptions = {"authBackends": ("internal",), "plugins": ()}

    @defer.inlineCallbacks
    def setUp(self):
        self.node = yield self.startNode()
        # The node's default user: guest, allowed from loopback.
        yield self.startGateway(gatewayConfig(self.mktemp(), broker={"endpoint": self.node.brokerEndpoint}))

    @defer.inlineCallbacks
    def bothClients(self):
        clients = [(yield connectTCP(self.ports["amqp"])), (yield connectWebSocket(self.ports["web"]))]
        for client in clients:
            received = yield roundTrip(client, [b"before"])
            self.assertEqual(received, [b"before"])
        return clients

    @defer.inlineCallbacks
    def test_closeAllRestartAndBack(self):
        clients = yield self.bothClients()
        # rabbitmqctl close_all_connections: the broker's Close reaches each client.
        yield self.node.ctl("close_all_connections", "maintenance window")
        for client in clients:
            close = yield client.delegate.serverClosed
            self.assertEqual(close.reply_code, 320)
            self.assertIn("maintenance window", close.reply_text)
        yield self.bothClients()

        # The broker stops: its shutdown Close reaches the clients.
        clients = yield self.bothClients()
        yield self.node.stop()
        for client in clients:
            close = yield client.delegate.serverClosed
            self.assertEqual(close.reply_code, 320)
        # While it is down: WebSocket close 1011, AMQP Close 320.
        factories = []
        yield self.assertFailure(connectWebSocket(self.ports["web"], factories=factories), Exception)
        self.assertEqual((yield factories[0].closed), 1011)
        error = yield self.assertFailure(connectTCP(self.ports["amqp"]), Exception)
        self.assertIn("320", str(error))

        # Back on the same port: the same gateway serves again.
        yield self.node.start()
        clients = yield self.bothClients()
        self.assertEqual(sum(len(c.sessions) for c in self.gateway.contexts.values()), 2)
        for client in clients:
            yield closeClient(client)
