"""
Operations (X4, S2) with real listeners and the real RabbitMQ: scraping
/metrics after a scenario shows what the scenario did, /readyz follows the
broker, SIGHUP closes the connections of removed users and nobody else's,
and the delegated readiness probe is a TLS handshake, never a login.
"""

import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import time

import treq
from cryptography import x509
from twisted.internet import defer, reactor, task
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase, TestCase

from kaazing_promo.config import loadConfig, parseConfig
from kaazing_promo.ops.admin import Readiness
from kaazing_promo.tap import GatewayService
from tests.authfixtures import writeUsersFile
from tests.fakes import FakeGateway, samples
from tests.pki import TestPKI, TrackingSite
from tests.processes import TWISTD, instance, unitEnvironment, waitFor, waitForStart
from tests.support import IntegrationTestCase, closeClient, connectTCP, roundTrip

PASSWORDS = {"joe.smith": "joe-password", "alice": "alice-password"}

CONFIG = """\
user_auth = "internal"

[broker]
endpoint = "{broker}"

[[listeners]]
name = "web"
protocol = "websocket"
endpoint = "tcp:0:interface=127.0.0.1"

[[listeners]]
name = "amqp"
protocol = "amqp"
endpoint = "tcp:0:interface=127.0.0.1"

[admin]
endpoint = "tcp:0:interface=127.0.0.1"

[promotion]
mode = "consolidated"
user = "guest"

[promotion.secrets]
guest = "guest"
"""


def closedPort():
    """
    @return: a TCP port of 127.0.0.1 that nothing listens on.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class AdminTestCase(IntegrationTestCase):
    """
    A gateway with the internal realm, both listeners and the admin
    listener, on port 0, with its configuration in a real file.
    """

    broker = "tcp:host=127.0.0.1:port=5672"

    @defer.inlineCallbacks
    def setUp(self):
        self.directory = os.path.abspath(self.mktemp())
        self.usersCnf = writeUsersFile(self.directory, self.users())
        self.path = os.path.join(self.directory, "gateway.toml")
        with open(self.path, "w") as stream:
            stream.write(CONFIG.format(broker=self.broker))
        self.gateway = GatewayService(loadConfig(self.path), reactor)
        self.recordProbes(self.gateway.brokerConnector)
        self.gateway.startService()
        self.addCleanup(self.gateway.stopService)
        ports = yield self.gateway.whenListening()
        self.ports = {name: port.getHost().port for name, port in ports.items()}
        port = yield self.gateway.admin.whenListening()
        self.adminURL = f"http://127.0.0.1:{port.getHost().port}"

    def users(self):
        return {"joe.smith": (PASSWORDS["joe.smith"], ["Tyche"]), "alice": (PASSWORDS["alice"], ["Everyone"])}

    def recordProbes(self, connector):
        """
        Every broker probe (the gateway's start-up one and the readiness
        timer's) is waited for after the gateway stopped, so none is left
        in flight when the test ends.
        """
        probes = []
        probe = connector.probe

        def recording(*args, **kwargs):
            d = probe(*args, **kwargs)
            probes.append(d)
            return d
        connector.probe = recording
        self.addCleanup(lambda: defer.gatherResults(probes))

    @defer.inlineCallbacks
    def get(self, path):
        """
        @return: C{(status code, body bytes)}.
        """
        response = yield treq.get(self.adminURL + path, persistent=False)
        body = yield response.content()
        return response.code, body

    @defer.inlineCallbacks
    def scrape(self):
        code, body = yield self.get("/metrics")
        self.assertEqual(code, 200)
        return samples(body)

    @defer.inlineCallbacks
    def scrapeUntil(self, predicate, what, timeout=10.0):
        """
        Scrape until C{predicate(samples)} holds.

        @return: the samples that satisfied it.
        """
        scraped = []

        def check():
            return self.scrape().addCallback(lambda found: scraped.append(found) or predicate(found))
        if not (yield waitFor(reactor, check, timeout)):
            self.fail(f"metrics never showed {what}")
        return scraped[-1]


def metric(found, name, **labels):
    return found.get((name, frozenset(labels.items())))


class MetricsScenarioTests(AdminTestCase):

    @defer.inlineCallbacks
    def test_X4_scrapeAfterScenario(self):
        """
        X4: one good AMQP connection with a round trip and one wrong
        password move exactly the counters they should.
        """
        client = yield connectTCP(self.ports["amqp"], "alice", PASSWORDS["alice"])
        found = yield self.scrape()
        self.assertEqual(metric(found, "kaazing_promo_connections_open", listener="amqp"), 1)
        received = yield roundTrip(client, [b"x" * 1000] * 3)
        self.assertEqual(len(received), 3)
        yield closeClient(client)
        yield self.assertFailure(connectTCP(self.ports["amqp"], "alice", "wrong"), Exception)

        found = yield self.scrapeUntil(
            lambda found: (metric(found, "kaazing_promo_connections_total", listener="amqp", outcome="closed") == 1
                           and metric(found, "kaazing_promo_connections_total", listener="amqp",
                                      outcome="bad-credentials") == 1),
            "both connections ended")
        self.assertEqual(metric(found, "kaazing_promo_logins_total", listener="amqp", realm="internal",
                                outcome="ok"), 1)
        self.assertEqual(metric(found, "kaazing_promo_logins_total", listener="amqp", realm="internal",
                                outcome="bad-credentials"), 1)
        self.assertEqual(metric(found, "kaazing_promo_handshake_seconds_count", listener="amqp"), 1)
        self.assertEqual(metric(found, "kaazing_promo_connections_open", listener="amqp"), 0)
        self.assertGreaterEqual(metric(found, "kaazing_promo_bytes_total", direction="in"), 3000)
        self.assertGreaterEqual(metric(found, "kaazing_promo_bytes_total", direction="out"), 3000)
        self.assertEqual(metric(found, "kaazing_promo_broker_connect_failures_total"), 0)
        self.assertEqual(metric(found, "kaazing_promo_logins_total", listener="web", realm="internal",
                                outcome="ok"), 0)
        self.assertEqual(metric(found, "kaazing_promo_connections_total", listener="web", outcome="closed"), 0)
        code, body = yield self.get("/metrics")
        self.assertNotIn(b"alice", body)

    @defer.inlineCallbacks
    def test_X4_healthAndReady(self):
        """
        X4: /healthz is 200; /readyz turns 200 once the broker answered and
        the users are loaded, with each check's status.
        """
        code, body = yield self.get("/healthz")
        self.assertEqual(code, 200)
        self.assertEqual(json.loads(body)["status"], "ok")
        deadline = reactor.seconds() + 10
        while True:
            code, body = yield self.get("/readyz")
            if code == 200 or reactor.seconds() > deadline:
                break
            yield task.deferLater(reactor, 0.1, lambda: None)
        document = json.loads(body)
        self.assertEqual(code, 200, document)
        self.assertTrue(document["checks"]["broker"]["ok"])
        self.assertIn("2 users loaded", document["checks"]["realm"]["detail"])


class BrokerDownTests(AdminTestCase):

    broker = f"tcp:host=127.0.0.1:port={closedPort()}:timeout=2"

    @defer.inlineCallbacks
    def test_X4_notReadyAndCountedWhenBrokerDown(self):
        """
        X4: with the broker unreachable /readyz is 503 naming the broker,
        and a client that logged in counts as a broker connect failure.
        """
        deadline = reactor.seconds() + 10
        while True:
            code, body = yield self.get("/readyz")
            document = json.loads(body)
            probed = document["checks"]["broker"]["age_s"] is not None
            if probed or reactor.seconds() > deadline:
                break
            yield task.deferLater(reactor, 0.1, lambda: None)
        self.assertEqual(code, 503)
        self.assertFalse(document["checks"]["broker"]["ok"])
        self.assertIn("no Connection.Start", document["checks"]["broker"]["detail"])
        yield self.assertFailure(connectTCP(self.ports["amqp"], "alice", PASSWORDS["alice"]), Exception)
        found = yield self.scrapeUntil(
            lambda found: metric(found, "kaazing_promo_broker_connect_failures_total") == 1,
            "a broker connect failure")
        self.assertEqual(metric(found, "kaazing_promo_connections_total", listener="amqp",
                                outcome="broker-refused"), 1)


class SighupTests(AdminTestCase):

    @defer.inlineCallbacks
    def test_S2_sighupClosesRemovedUserOnly(self):
        """
        S2/U2: after joe.smith is removed from users.cnf, SIGHUP closes his
        live connection with 320 CONNECTION_FORCED; alice's connection
        carries on.
        """
        joe = yield connectTCP(self.ports["amqp"], "joe.smith", PASSWORDS["joe.smith"])
        alice = yield connectTCP(self.ports["amqp"], "alice", PASSWORDS["alice"])
        writeUsersFile(self.directory, {"alice": (PASSWORDS["alice"], ["Everyone"])})
        os.kill(os.getpid(), signal.SIGHUP)
        close = yield joe.delegate.serverClosed
        self.assertEqual(close.reply_code, 320)
        self.assertIn("CONNECTION_FORCED", close.reply_text)
        received = yield roundTrip(alice, [b"still here"])
        self.assertEqual(received, [b"still here"])
        yield closeClient(alice)
        found = yield self.scrapeUntil(
            lambda found: metric(found, "kaazing_promo_users_cnf_reloads_total", result="ok") >= 1,
            "a users.cnf reload")
        self.assertEqual(metric(found, "kaazing_promo_users_cnf_reloads_total", result="error"), 0)


class DelegatedReadinessTests(TestCase):
    """
    X4: the delegated realm is ready when a TLS handshake with the API
    Gateway's host and port succeeds; no login is ever sent.
    """

    def setUp(self):
        self.pki = TestPKI(FilePath(self.mktemp()))
        self.apigw = FakeGateway()

    @defer.inlineCallbacks
    def listen(self):
        from twisted.internet import endpoints
        keyFile, certFile = self.pki.issue("localhost", [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
        site = TrackingSite(self.apigw)
        description = "ssl:0:interface=127.0.0.1:privateKey={}:certKey={}".format(
            endpoints.quoteStringArgument(keyFile.path), endpoints.quoteStringArgument(certFile.path))
        port = yield endpoints.serverFromString(reactor, description).listen(site)
        self.addCleanup(lambda: defer.gatherResults([defer.maybeDeferred(port.stopListening)] + site.closed))
        return f"https://127.0.0.1:{port.getHost().port}"

    def readiness(self, url, caFile=None):
        delegated = {"url": url, "timeout": 5.0}
        if caFile:
            delegated["ca_file"] = caFile
        config = parseConfig({
            "user_auth": "delegated", "delegated": delegated,
            "listeners": [{"name": "amqp", "protocol": "amqp", "endpoint": "tcp:0"}],
            "promotion": {"mode": "consolidated", "user": "guest"}}, "/etc/kp/gateway.toml")
        return Readiness(config, reactor, None, None, object())

    @defer.inlineCallbacks
    def test_X4_trustedHandshakeIsReady(self):
        url = yield self.listen()
        readiness = self.readiness(url, self.pki.caFile.path)
        yield readiness._probeRealm()
        realm = readiness.probes["realm"]
        self.assertTrue(realm.ok, realm.detail)
        self.assertEqual(self.apigw.requests, [])

    @defer.inlineCallbacks
    def test_X4_untrustedCertificateNotReady(self):
        url = yield self.listen()
        readiness = self.readiness(url)
        yield readiness._probeRealm()
        realm = readiness.probes["realm"]
        self.assertFalse(realm.ok)
        self.assertIn("not reachable", realm.detail)
        self.assertIn("certificate verify failed", realm.detail)
        self.assertEqual(self.apigw.requests, [])

    @defer.inlineCallbacks
    def test_X4_closedPortNotReady(self):
        readiness = self.readiness(f"https://127.0.0.1:{closedPort()}")
        yield readiness._probeRealm()
        self.assertFalse(readiness.probes["realm"].ok)
        self.assertIn("refused", readiness.probes["realm"].detail.lower())


class AuditJSONTwistdTests(SynchronousTestCase):
    """
    X4: `twistd kaazing-promo --audit-json FILE`, as an operator runs it:
    the login decisions and connections land in FILE as JSON lines, and
    the password typed never does.
    """

    def test_X4_auditJSONFromTwistd(self):
        import pika

        directory, config, ports = instance("gateway.toml")
        self.addCleanup(shutil.rmtree, directory)
        auditFile = os.path.join(directory, "audit.json")
        log = open(os.path.join(directory, "twistd.log"), "w+")
        self.addCleanup(log.close)
        process = subprocess.Popen(
            [TWISTD, "--nodaemon", "--pidfile=", "kaazing-promo", "--config", config, "--audit-json", auditFile],
            cwd=directory, env=unitEnvironment(), stdout=log, stderr=subprocess.STDOUT)
        self.addCleanup(lambda: process.poll() is None and (process.kill(), process.wait()))
        waitForStart(ports["amqp"], process)
        parameters = pika.ConnectionParameters(
            "127.0.0.1", ports["amqp"], credentials=pika.PlainCredentials("demo", "not-the-password-42"),
            connection_attempts=1, socket_timeout=10)
        with self.assertRaises(pika.exceptions.AMQPError):
            pika.BlockingConnection(parameters)
        deadline = time.monotonic() + 20
        while True:
            with open(auditFile) as stream:
                events = [json.loads(line) for line in stream if line.strip()]
            kinds = [(event["event"], event["outcome"]) for event in events]
            if ("connection", "bad-credentials") in kinds or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        # The header-only probe of waitForStart ends as a closed connection first.
        self.assertIn(("login", "bad-credentials"), kinds)
        self.assertIn(("connection", "bad-credentials"), kinds)
        [login] = [event for event in events if event["event"] == "login"]
        self.assertEqual((login["listener"], login["gateway_user"]), ("amqp", "demo"))
        self.assertTrue(login["source"].startswith("127.0.0.1:"))
        with open(auditFile) as stream:
            self.assertNotIn("not-the-password-42", stream.read())
