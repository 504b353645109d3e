"""
Operations (X4, S2), in memory: metrics derived from the audit events and
the realms' hooks, health and readiness answers, the audit JSON file,
reloads (SIGHUP and the users.cnf poll) and C{kaazing-promo check-config}.
"""

import io
import json
import os
import signal
import subprocess
import sys
from types import SimpleNamespace

from twisted.internet import defer, endpoints
from twisted.logger import Logger, LogLevel, eventsFromJSONLogFile, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import getChildForRequest
from twisted.web.test.requesthelper import DummyRequest
from zope.interface import directlyProvides
from zope.interface.verify import verifyObject

from kaazing_promo import tap
from kaazing_promo.amqp.session import State
from kaazing_promo.auth.avatar import ANONYMOUS, GatewayUser
from kaazing_promo.auth.userscnf import UserEntry
from kaazing_promo.config import loadConfig, parseConfig
from kaazing_promo.interfaces import IReloadableUsers
from kaazing_promo.errors import ConfigError
from kaazing_promo.ops import admin, audit, reload as reloading
from kaazing_promo.ops.admin import buildAdminResource
from kaazing_promo.amqp.broker import BROKER_UNREACHABLE
from kaazing_promo.ops.audit import AuditJSONService
from kaazing_promo.ops.checkconfig import checkConfig, describeSettings, systemdEndpointsBySyntax
from kaazing_promo.ops.metrics import GatewayMetrics, IRealmMetrics, MetricsResource, MetricsService
from kaazing_promo.ops.reload import ReloadService, restartNeeded
from kaazing_promo.tap import GatewayService
from kaazing_promo.workers import WorkerPool
from tests import ROOT
from tests.authfixtures import SynchronousThreadPool, ThreadlessReactor, standardUsers, writeUsersCnf
from tests.fakes import (
    AUTHENTICATED, DelegatedTestMixin, FakeContext, FakeGateway, FakeSession, adminServiceOf, answer, creds,
    fakeGateway, makeMetrics, readinessOf, render, samples, value)
from tests.support import gatewayConfig


def connectionEvent(**fields):
    """
    Emit one audit connection event with defaults for every field.
    """
    event = dict(listener="amqp", source="10.0.0.1:1", outcome="closed", reason="client closed the connection",
                 gateway_user="joe.smith", broker_user="smithj", vhost="/", duration_s=1.0,
                 bytes_in=0, bytes_out=0)
    event.update(fields)
    audit.auditConnection(**event)


class MetricsTests(SynchronousTestCase):
    """
    X4: the counters an operator scrapes, derived from the audit events.
    """

    def setUp(self):
        self.metrics = makeMetrics()
        self.service = MetricsService(self.metrics)
        self.service.startService()
        self.addCleanup(self.service.stopService)

    def test_X4_namesAndZeroSeries(self):
        """
        X4: every metric is named kaazing_promo_* (but prometheus_client's
        standard process_* ones), and the per-listener series exist at zero
        before anything happened.
        """
        found = samples(self.metrics.render())
        self.assertEqual([name for name, _ in found if not name.startswith(("kaazing_promo_", "process_"))], [])
        self.assertEqual(value(self.metrics, "kaazing_promo_connections_total",
                               listener="web", outcome="ok"), 0)
        self.assertEqual(value(self.metrics, "kaazing_promo_logins_total", listener="amqp",
                               realm="internal", outcome="rate-limited"), 0)
        self.assertEqual(value(self.metrics, "kaazing_promo_users_cnf_reloads_total", result="error"), 0)

    def test_X4_connectionsByListenerAndOutcome(self):
        """
        X4: connections_total counts audit connection events per listener
        and outcome.
        """
        connectionEvent(outcome="closed")
        connectionEvent(outcome="closed")
        connectionEvent(listener="web", outcome="broker-refused", reason="broker closed: bad vhost")
        self.assertEqual(value(self.metrics, "kaazing_promo_connections_total",
                               listener="amqp", outcome="closed"), 2)
        self.assertEqual(value(self.metrics, "kaazing_promo_connections_total",
                               listener="web", outcome="broker-refused"), 1)
        self.assertEqual(value(self.metrics, "kaazing_promo_broker_connect_failures_total"), 0)

    def test_16_loginQueueAndAdmittedSockets(self):
        """
        Issue 16: an operator sees the fair login queue (checks running and
        waiting) and the sockets holding a place in max_connections.
        """
        queue = SimpleNamespace(running=2, waiting=37)
        contexts = {"amqp": FakeContext(requiresLogin=True)}
        contexts["amqp"].connections = 5
        metrics = GatewayMetrics(contexts, "internal", queue)
        self.assertEqual(value(metrics, "kaazing_promo_login_checks", state="running"), 2)
        self.assertEqual(value(metrics, "kaazing_promo_login_checks", state="waiting"), 37)
        self.assertEqual(value(metrics, "kaazing_promo_sockets_admitted", listener="amqp"), 5)

    def test_X4_brokerConnectFailures(self):
        """
        X4: a connection that found no broker counts as a broker connect failure.
        """
        connectionEvent(outcome="broker-refused", reason=BROKER_UNREACHABLE)
        self.assertEqual(value(self.metrics, "kaazing_promo_broker_connect_failures_total"), 1)

    def test_X4_loginsByRealmAndOutcome(self):
        """
        X4: logins_total counts login decisions per listener, realm and outcome.
        """
        audit.auditLogin("web", "10.0.0.1:1", "ok", gateway_user="alice", broker_user="guest")
        audit.auditLogin("web", "10.0.0.1:1", "bad-credentials", "wrong password", gateway_user="alice")
        audit.auditLogin("web", "10.0.0.1:1", "bad-credentials", "wrong password", gateway_user="bob")
        self.assertEqual(value(self.metrics, "kaazing_promo_logins_total",
                               listener="web", realm="internal", outcome="ok"), 1)
        self.assertEqual(value(self.metrics, "kaazing_promo_logins_total",
                               listener="web", realm="internal", outcome="bad-credentials"), 2)

    def test_X4_noUserNamesInMetrics(self):
        """
        X4: no user name is ever a label value (cardinality and privacy).
        """
        audit.auditLogin("web", "10.0.0.1:1", "ok", gateway_user="joe.smith", broker_user="smithj")
        audit.auditOpen("web", "10.0.0.1:1", "joe.smith", "smithj", "/", 0.25)
        connectionEvent(gateway_user="joe.smith", broker_user="smithj")
        text = self.metrics.render()
        self.assertNotIn(b"joe.smith", text)
        self.assertNotIn(b"smithj", text)
        self.assertNotIn(b"10.0.0.1", text)

    def test_X4_handshakeHistogram(self):
        """
        X4: the handshake duration of each opened connection lands in the
        histogram of its listener.
        """
        audit.auditOpen("amqp", "10.0.0.1:1", "alice", "guest", "/", 0.2)
        audit.auditOpen("amqp", "10.0.0.1:2", "alice", "guest", "/", 3.0)
        self.assertEqual(value(self.metrics, "kaazing_promo_handshake_seconds_count", listener="amqp"), 2)
        self.assertAlmostEqual(value(self.metrics, "kaazing_promo_handshake_seconds_sum", listener="amqp"), 3.2)
        self.assertEqual(value(self.metrics, "kaazing_promo_handshake_seconds_bucket",
                               listener="amqp", le="0.25"), 1)

    def test_X4_processMemoryAndDescriptors(self):
        """
        X4: the process's resident memory and open descriptors, as
        prometheus_client's process collector reads them from /proc.
        """
        with open("/proc/self/statm") as statm:
            resident = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        self.assertLess(abs(value(self.metrics, "process_resident_memory_bytes") - resident), 8 << 20)
        # Both count the descriptor that lists /proc/self/fd.
        self.assertEqual(value(self.metrics, "process_open_fds"), len(os.listdir("/proc/self/fd")))

    def test_X4_openAndPausedFromLiveSessions(self):
        """
        X4: connections_open and connections_paused are read from the live
        sessions at scrape time.
        """
        sessions = self.metrics.contexts["amqp"].sessions
        sessions.update([FakeSession("a"), FakeSession("b", paused=True), FakeSession("c")])
        self.assertEqual(value(self.metrics, "kaazing_promo_connections_open", listener="amqp"), 3)
        self.assertEqual(value(self.metrics, "kaazing_promo_connections_paused", listener="amqp"), 1)
        self.assertEqual(value(self.metrics, "kaazing_promo_connections_open", listener="web"), 0)
        sessions.clear()
        self.assertEqual(value(self.metrics, "kaazing_promo_connections_paused", listener="amqp"), 0)

    def test_X4_bytesCountLiveAndFinishedConnections(self):
        """
        X4: bytes_total is monotonic: live sessions' bytes plus those of
        finished connections, each way.
        """
        session = FakeSession("a", bytesIn=100, bytesOut=1000)
        self.metrics.contexts["amqp"].sessions.add(session)
        self.assertEqual(value(self.metrics, "kaazing_promo_bytes_total", direction="in"), 100)
        self.assertEqual(value(self.metrics, "kaazing_promo_bytes_total", direction="out"), 1000)
        # The session ends: it leaves the set and its audit event carries its bytes.
        session.bytesIn += 5
        self.metrics.contexts["amqp"].sessions.discard(session)
        connectionEvent(bytes_in=105, bytes_out=1000)
        self.assertEqual(value(self.metrics, "kaazing_promo_bytes_total", direction="in"), 105)
        self.assertEqual(value(self.metrics, "kaazing_promo_bytes_total", direction="out"), 1000)

    def test_X4_otherEventsIgnored(self):
        """
        X4: log events outside the audit namespace move nothing.
        """
        Logger(namespace="kaazing_promo").info("connection {outcome}", event="connection",
                                                listener="amqp", outcome="closed")
        self.assertEqual(value(self.metrics, "kaazing_promo_connections_total",
                               listener="amqp", outcome="closed"), 0)

    def test_X4_stoppedServiceStopsCounting(self):
        """
        X4: after stopService the observer is gone.
        """
        self.service.stopService()
        connectionEvent()
        self.assertEqual(value(self.metrics, "kaazing_promo_connections_total",
                               listener="amqp", outcome="closed"), 0)
        self.service.startService()

    def test_X4_registryPerGateway(self):
        """
        X4: two gateways in one process keep separate registries (the
        global prometheus_client registry is never used).
        """
        other = makeMetrics()
        self.assertIsNot(other.registry, self.metrics.registry)
        from prometheus_client import REGISTRY
        self.assertNotIn(b"kaazing_promo_", __import__("prometheus_client").generate_latest(REGISTRY))

    def test_X4_metricsResource(self):
        """
        X4: GET /metrics answers the Prometheus text format.
        """
        connectionEvent()
        request = DummyRequest([b""])
        body = MetricsResource(self.metrics).render_GET(request)
        self.assertIn(b"text/plain", request.responseHeaders.getRawHeaders(b"content-type")[0])
        self.assertIn(b'kaazing_promo_connections_total{listener="amqp",outcome="closed"} 1.0', body)


class RealmHookTests(DelegatedTestMixin, SynchronousTestCase):
    """
    X4: what only the realms know reaches the metrics through IRealmMetrics.
    """

    def setUp(self):
        self.metrics = makeMetrics("delegated")

    def test_X4_interface(self):
        verifyObject(IRealmMetrics, self.metrics)

    def test_X4_delegatedCacheHitsAndMisses(self):
        """
        X4: the first login asks the API Gateway (miss), the second is
        answered from the cache (hit).
        """
        checker = self.checker()
        checker.metrics = self.metrics
        self.login(checker)
        self.login(checker)
        self.assertEqual(value(self.metrics, "kaazing_promo_delegated_cache_total", result="miss"), 1)
        self.assertEqual(value(self.metrics, "kaazing_promo_delegated_cache_total", result="hit"), 1)
        self.assertEqual(len(self.gateway.requests), 1)

    def test_X4_delegatedRequestLatency(self):
        """
        X4: each request to the API Gateway is timed with the checker's
        clock, failures and timeouts included.
        """
        gateway = FakeGateway(hold=True)
        checker = self.checker(gateway, timeout=5.0)
        checker.metrics = self.metrics
        d = checker.requestAvatarId(creds())
        self.clock.advance(0.3)
        gateway.release()
        self.stub.flush()
        self.successResultOf(d)
        d = checker.requestAvatarId(creds("user2"))
        self.clock.advance(5)
        self.failureResultOf(d)
        self.assertEqual(value(self.metrics, "kaazing_promo_delegated_request_seconds_count"), 2)
        self.assertAlmostEqual(value(self.metrics, "kaazing_promo_delegated_request_seconds_sum"), 5.3)

    def test_X4_noMetricsNoHook(self):
        """
        X4: a checker without metrics works as before.
        """
        checker = self.checker(FakeGateway(answer(AUTHENTICATED)))
        self.assertEqual(self.login(checker).user, "user1")

    def test_X4_usersCnfReloads(self):
        """
        X4: users.cnf reloads count ok and error.
        """
        from kaazing_promo.auth.internal import InternalChecker
        users, groups = standardUsers()
        path = writeUsersCnf(self.mktemp(), users, groups)
        checker = InternalChecker(path, reactor=ThreadlessReactor(), threadpool=SynchronousThreadPool())
        checker.log = Logger(observer=lambda event: None)
        checker.load()
        metrics = makeMetrics("internal")
        MetricsService(metrics, checker).startService()
        self.assertIs(checker.metrics, metrics)
        self.assertTrue(self.successResultOf(checker.reload()))
        with open(path, "a") as stream:
            stream.write("<broken")
        self.assertFalse(self.successResultOf(checker.reload()))
        self.assertEqual(value(metrics, "kaazing_promo_users_cnf_reloads_total", result="ok"), 1)
        self.assertEqual(value(metrics, "kaazing_promo_users_cnf_reloads_total", result="error"), 1)

    def test_19_verifyCacheHitsAndMisses(self):
        """
        Issue 19: internal logins count a miss for each password hash and a
        hit for each answer from the verify cache (what the reconnect storm
        of bench/run reads: a restart must cost no hashes).
        """
        from twisted.cred.credentials import UsernamePassword
        from kaazing_promo.auth.internal import InternalChecker
        users, groups = standardUsers()
        checker = InternalChecker(writeUsersCnf(self.mktemp(), users, groups), reactor=ThreadlessReactor(),
                                  threadpool=SynchronousThreadPool())
        checker.load()
        metrics = makeMetrics("internal")
        self.assertEqual(value(metrics, "kaazing_promo_verify_cache_total", result="miss"), 0)
        MetricsService(metrics, checker).startService()
        self.successResultOf(checker.requestAvatarId(UsernamePassword(b"alice", b"alice-pw")))
        self.successResultOf(checker.requestAvatarId(UsernamePassword(b"alice", b"alice-pw")))
        self.failureResultOf(checker.requestAvatarId(UsernamePassword(b"alice", b"wrong")))
        self.assertEqual(value(metrics, "kaazing_promo_verify_cache_total", result="miss"), 2)
        self.assertEqual(value(metrics, "kaazing_promo_verify_cache_total", result="hit"), 1)


class HealthTests(SynchronousTestCase):
    """
    X4: /healthz and /readyz.
    """

    def build(self, gateway):
        readiness = readinessOf(gateway)
        return readiness, buildAdminResource(makeMetrics(), readiness, gateway.reactor)

    def test_X4_healthzWhileRunning(self):
        """
        X4: /healthz is 200 with a small JSON body whenever the process runs.
        """
        gateway = fakeGateway()
        readiness, root = self.build(gateway)
        gateway.reactor.advance(12)
        code, document = render(root, b"/healthz")
        self.assertEqual(code, 200)
        self.assertEqual(document, {"status": "ok", "uptime_s": 12.0})

    def test_X4_notReadyBeforeFirstProbe(self):
        """
        X4: before the probes ran, /readyz says 503 and why.
        """
        readiness, root = self.build(fakeGateway())
        code, document = render(root, b"/readyz")
        self.assertEqual(code, 503)
        self.assertEqual(document["checks"]["broker"]["detail"], "not checked yet")

    def test_X4_readyWhenBrokerAnswers(self):
        """
        X4: with the broker's Start received and the realm loaded, /readyz is 200.
        """
        gateway = fakeGateway()
        readiness, root = self.build(gateway)
        self.successResultOf(readiness.refresh())
        gateway.reactor.advance(2)
        code, document = render(root, b"/readyz")
        self.assertEqual(code, 200)
        self.assertEqual(document["ready"], True)
        self.assertEqual(document["checks"]["broker"],
                         {"ok": True, "age_s": 2.0,
                          "detail": "Connection.Start received from tcp:host=127.0.0.1:port=5672"})

    def test_X4_notReadyWhenBrokerSilent(self):
        """
        X4: a broker that did not answer makes /readyz 503, naming it.
        """
        gateway = fakeGateway(answers=False)
        readiness, root = self.build(gateway)
        self.successResultOf(readiness.refresh())
        code, document = render(root, b"/readyz")
        self.assertEqual(code, 503)
        self.assertFalse(document["checks"]["broker"]["ok"])
        self.assertTrue(document["checks"]["realm"]["ok"])

    def test_X4_internalRealmLoaded(self):
        """
        X4: the internal realm is ready when users are loaded.
        """
        checker = SimpleNamespace(userCount=0, path="/etc/kp/config/users.cnf")
        directlyProvides(checker, IReloadableUsers)
        gateway = fakeGateway("internal", checker)
        readiness, root = self.build(gateway)
        self.successResultOf(readiness.refresh())
        self.assertEqual(render(root, b"/readyz")[0], 503)
        checker.userCount = 4
        self.successResultOf(readiness.refresh())
        code, document = render(root, b"/readyz")
        self.assertEqual(code, 200)
        self.assertIn("4 users loaded", document["checks"]["realm"]["detail"])

    def test_X4_probesRefreshedByTimer(self):
        """
        X4: the admin service re-runs the probes every 5 seconds; /readyz
        reads the cache and never probes itself.
        """
        gateway = fakeGateway(admin={"endpoint": "tcp:0:interface=127.0.0.1"})
        service = adminServiceOf(gateway)
        timer = [s for s in service if s.__class__.__name__ == "TimerService"][0]
        timer.startService()
        self.addCleanup(timer.stopService)
        self.assertEqual(gateway.brokerConnector.probes, 1)
        gateway.reactor.advance(admin.PROBE_INTERVAL)
        self.assertEqual(gateway.brokerConnector.probes, 2)
        render(buildAdminResource(service.metrics, service.readiness, gateway.reactor), b"/readyz")
        self.assertEqual(gateway.brokerConnector.probes, 2)

    def test_X4_noAdminListenerInWorkers(self):
        """
        X4: with workers > 1 only the master binds the admin endpoint.
        """
        from twisted.internet.testing import MemoryReactorClock
        config = gatewayConfig(self.mktemp(), admin={"endpoint": "tcp:0:interface=127.0.0.1"}, workers=2)
        self.assertIsNotNone(GatewayService(config, MemoryReactorClock()).admin)
        worker = GatewayService(config, MemoryReactorClock(), inheritedPorts={"web": 98, "amqp": 99})
        self.assertIsNone(worker.admin)

    def test_X4_adminOffByDefault(self):
        """
        X4: without [admin] endpoint there is no admin listener.
        """
        self.assertIsNone(adminServiceOf(fakeGateway()))

    def test_X4_badAdminEndpoint(self):
        """
        X4: an unusable [admin] endpoint is a start-up error naming the key.
        """
        error = self.assertRaises(ConfigError, adminServiceOf, fakeGateway(admin={"endpoint": "tcp:port=nine"}))
        self.assertIn("[admin] key 'endpoint'", str(error))
        self.assertIn("/etc/kp/gateway.toml", str(error))

    def test_X4_adminPortTakenIsOneLine(self):
        """
        X4: an admin port that cannot be bound stops start-up with one line.
        """
        from twisted.internet.error import CannotListenError

        class Taken:
            def listen(self, factory):
                return defer.fail(CannotListenError("127.0.0.1", 9419, OSError(98, "Address already in use")))
        service = adminServiceOf(fakeGateway(admin={"endpoint": "tcp:port=9419:interface=127.0.0.1"}))
        service._listener.endpoint = Taken()
        error = self.assertRaises(SystemExit, service.privilegedStartService)
        self.assertIn("[admin] key 'endpoint': cannot listen on 'tcp:port=9419:interface=127.0.0.1'", str(error))
        self.assertIn("Address already in use", str(error))

    def test_X4_unknownPath(self):
        readiness, root = self.build(fakeGateway())
        request = DummyRequest([b"nothing"])
        getChildForRequest(root, request).render(request)
        self.assertEqual(request.responseCode, 404)


class AuditJSONTests(SynchronousTestCase):
    """
    X4: --audit-json FILE writes the audit events, and nothing else, as
    JSON lines.
    """

    def test_X4_jsonLines(self):
        path = self.mktemp()
        service = AuditJSONService(path)
        service.startService()
        audit.auditLogin("amqp", "10.0.0.1:1", "bad-credentials", "wrong password", gateway_user="alice")
        Logger(namespace="kaazing_promo").info("not an audit event")
        connectionEvent(bytes_in=10, bytes_out=20)
        service.stopService()
        audit.auditLogin("amqp", "10.0.0.1:1", "ok", gateway_user="late")
        with open(path) as stream:
            lines = stream.read().splitlines()
        self.assertEqual(len(lines), 2)
        documents = [json.loads(line) for line in lines]
        self.assertEqual([document["event"] for document in documents], ["login", "connection"])
        self.assertEqual(documents[1]["bytes_out"], 20)
        for key in ("listener", "source", "gateway_user", "broker_user", "vhost", "outcome", "reason",
                    "log_time"):
            self.assertIn(key, documents[1])
        with open(path) as stream:
            events = list(eventsFromJSONLogFile(stream, recordSeparator=""))
        self.assertIn("login bad-credentials: listener=amqp", formatEvent(events[0]))

    def test_X4_appends(self):
        path = self.mktemp()
        for outcome in ("ok", "closed"):
            service = AuditJSONService(path)
            service.startService()
            connectionEvent(outcome=outcome)
            service.stopService()
        with open(path) as stream:
            self.assertEqual([json.loads(line)["outcome"] for line in stream], ["ok", "closed"])

    def test_X4_unwritablePath(self):
        """
        X4: a path that cannot be opened is a one-line start-up error.
        """
        error = self.assertRaises(ConfigError, AuditJSONService, "/nonexistent/dir/audit.json")
        self.assertIn("--audit-json /nonexistent/dir/audit.json", str(error))

    def test_X4_pluginOption(self):
        """
        X4: --audit-json is a twistd plugin option and adds the service.
        """
        self.assertIn("audit-json", [option[0] for option in tap.Options.optParameters])
        options = tap.Options()
        path = self.mktemp()
        options.parseOptions(["--audit-json", path])
        gateway = tap.makeService(options)
        [service] = [s for s in gateway if isinstance(s, AuditJSONService)]
        self.assertEqual(service.path, path)

    def test_X4_badPathExitsWithOneLine(self):
        options = tap.Options()
        options.parseOptions(["--audit-json", "/nonexistent/dir/audit.json"])
        error = self.assertRaises(SystemExit, tap.makeService, options)
        self.assertIn("kaazing-promo: --audit-json", str(error))


GATEWAY_TOML = """\
user_auth = "internal"

[broker]
endpoint = "tcp:host=127.0.0.1:port=5672"

[[listeners]]
name = "amqp"
protocol = "amqp"
endpoint = "tcp:0:interface=127.0.0.1"
auth = "required"
{listenerExtra}

[promotion]
mode = "mapping"
secrets_file = "broker-secrets.toml"

[promotion.map]
{mapLines}
"""

MAP = {"alice": "alice_b", "joe.smith": "smithj"}


class ReloadTestMixin:
    """
    A real, unstarted GatewayService over an instance directory the test
    can rewrite: config, users.cnf, broker secrets.
    """

    def setUp(self):
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(self.directory, "config"))
        self.users, self.groups = standardUsers()
        self.usersCnf = writeUsersCnf(os.path.join(self.directory, "config", "users.cnf"),
                                      self.users, self.groups)
        self.secrets = os.path.join(self.directory, "broker-secrets.toml")
        self.writeSecrets('alice_b = "a-secret"\nsmithj = "j-secret"\n')
        self.path = os.path.join(self.directory, "gateway.toml")
        self.writeConfig(MAP)
        self.reactor = ThreadlessReactor()
        self.gateway = GatewayService(loadConfig(self.path), self.reactor)
        checker = self.gateway.checker
        checker.log = Logger(observer=lambda event: None)
        # Reloads parse "in the thread pool": here, at once.
        checker._threadpool = SynchronousThreadPool()
        self.events = []
        self.patch(reloading, "log", Logger(observer=self.events.append, namespace="test"))
        self.signals = FakeSignals()
        gateway = self.gateway
        self.reloader = ReloadService(gateway.config, self.reactor, gateway.checker, gateway.secrets, gateway.promoter,
                                      gateway.authenticator, gateway.contexts, signals=self.signals)
        self.sessions = self.gateway.contexts["amqp"].sessions

    def writeConfig(self, mapping, listenerExtra=""):
        mapLines = "\n".join(f'"{user}" = "{broker}"' for user, broker in mapping.items())
        with open(self.path, "w") as stream:
            stream.write(GATEWAY_TOML.format(mapLines=mapLines, listenerExtra=listenerExtra))

    def writeSecrets(self, text, mode=0o600):
        with open(self.secrets, "w") as stream:
            stream.write(text)
        os.chmod(self.secrets, mode)

    def session(self, user, realm="internal"):
        session = FakeSession(user, realm)
        self.sessions.add(session)
        return session

    def reload(self):
        return self.successResultOf(self.reloader.reload())

    def logged(self, level):
        return [formatEvent(event) for event in self.events if event["log_level"] == level]


class FakeSignals:
    """
    Stands for the L{signal} module: records handlers instead of installing them.
    """

    SIGHUP = signal.SIGHUP
    SIG_DFL = signal.SIG_DFL

    def __init__(self):
        self.handlers = {signal.SIGHUP: "previous"}

    def signal(self, number, handler):
        previous, self.handlers[number] = self.handlers[number], handler
        return previous


class ReloadTests(ReloadTestMixin, SynchronousTestCase):
    """
    S2/U2: a reload takes users.cnf, the broker secrets and [promotion.map]
    without dropping connections, except those of people no longer allowed in.
    """

    def test_U2_removedUserClosedWith320(self):
        """
        U2: a user removed from users.cnf loses their live connection
        (320 CONNECTION_FORCED); everyone else stays.
        """
        joe, alice = self.session("joe.smith"), self.session("alice")
        writeUsersCnf(self.usersCnf, [u for u in self.users if u.name != "joe.smith"], {})
        result = self.reload()
        self.assertEqual(result["users"], True)
        self.assertEqual(result["closed"], 1)
        self.assertEqual(joe.forced, ["user removed or disabled"])
        self.assertEqual(alice.forced, [])
        [line] = [line for line in self.logged(LogLevel.info) if "closing" in line]
        self.assertIn("'joe.smith'", line)

    def test_reloadRefreezesTheHeap(self):
        """
        Every reload, of everything or of users.cnf alone, asks the heap
        freezer to freeze anew (the old users and settings were frozen).
        """
        refrozen = []
        heap = SimpleNamespace(refreeze=lambda: refrozen.append(True))
        gateway = self.gateway
        reloader = ReloadService(gateway.config, self.reactor, gateway.checker, gateway.secrets, gateway.promoter,
                                 gateway.authenticator, gateway.contexts, signals=self.signals, heap=heap)
        self.assertIsNotNone(self.successResultOf(reloader.reload()))
        self.assertEqual(refrozen, [True])
        self.assertIsNotNone(self.successResultOf(reloader.reloadUsers()))
        self.assertEqual(refrozen, [True, True])

    def test_U2_disabledUserClosed(self):
        """
        U2: a user disabled in users.cnf loses their live connection.
        """
        alice = self.session("alice")
        self.users[0] = UserEntry("alice", self.users[0].passHash, {"Everyone"}, False)
        writeUsersCnf(self.usersCnf, self.users, self.groups)
        self.assertEqual(self.reload()["closed"], 1)
        self.assertEqual(alice.forced, ["user removed or disabled"])

    def test_U2_brokenUsersCnfKeepsUsersAndConnections(self):
        """
        U2: a broken users.cnf keeps the users loaded before; nobody is closed.
        """
        joe = self.session("joe.smith")
        with open(self.usersCnf, "w") as stream:
            stream.write("<Values>")
        result = self.reload()
        self.assertEqual(result["users"], False)
        self.assertEqual(joe.forced, [])
        self.assertTrue(self.gateway.checker.current(GatewayUser("joe.smith")))

    def test_S2_anonymousAndUnauthenticatedUntouched(self):
        """
        S2: sessions without a person (before login, or anonymous) are never closed by a reload.
        """
        before = FakeSession()
        anonymous = FakeSession()
        anonymous.avatar = ANONYMOUS
        self.sessions.update([before, anonymous])
        writeUsersCnf(self.usersCnf, [], {})
        self.assertEqual(self.reload()["closed"], 0)

    def test_S2_closingSessionsSkipped(self):
        joe = self.session("joe.smith")
        joe.state = State.CLOSING
        writeUsersCnf(self.usersCnf, [], {})
        self.assertEqual(self.reload()["closed"], 0)

    def test_S2_secretsReloaded(self):
        """
        S2: the broker secrets file is read again.
        """
        self.writeSecrets('alice_b = "a-secret"\nsmithj = "j-secret"\nnewbie = "n"\n')
        self.assertTrue(self.reload()["secrets"])
        self.assertIn("newbie", self.gateway.secrets)

    def test_S2_brokenSecretsKeepOldOnes(self):
        """
        S2: a broken secrets file keeps the secrets loaded before, and the
        log says why without showing the file's content.
        """
        self.writeSecrets('alice_b = "a-secret\n')
        result = self.reload()
        self.assertFalse(result["secrets"])
        self.assertEqual(self.gateway.secrets.get("smithj").reveal(), "j-secret")
        [line] = self.logged(LogLevel.error)
        self.assertIn("secrets kept", line)
        self.assertIn(self.secrets, line)
        self.assertNotIn("a-secret", line)

    def test_S2_secretsReadableByOthersRefused(self):
        """
        S2: a secrets file others may read is refused on reload too.
        """
        self.writeSecrets('alice_b = "changed"\nsmithj = "j-secret"\n', mode=0o644)
        self.assertFalse(self.reload()["secrets"])
        self.assertEqual(self.gateway.secrets.get("alice_b").reveal(), "a-secret")
        self.assertIn("chmod", self.logged(LogLevel.error)[0])

    def test_P4_mapReloaded(self):
        """
        P4: [promotion.map] is taken from the re-read configuration file;
        a person dropped from it loses their connection, nobody else.
        """
        joe, alice = self.session("joe.smith"), self.session("alice")
        self.writeConfig({"alice": "alice_b", "bob": "smithj"})
        result = self.reload()
        self.assertEqual((result["config"], result["restart"]), (True, []))
        promoter = self.gateway.promoter
        self.assertEqual(promoter.brokerUser(GatewayUser("bob")), "smithj")
        self.assertEqual(joe.forced, ["access revoked"])
        self.assertEqual(alice.forced, [])
        self.assertEqual(self.reloader.config.promotion.map, {"alice": "alice_b", "bob": "smithj"})
        # Issue 17: the reloader keeps what it applied; the gateway's own
        # configuration (what start-up read) is nobody's to rewrite.
        self.assertEqual(self.gateway.config.promotion.map, MAP)

    def test_S2_otherChangesNeedRestart(self):
        """
        S2: any other change to the file is logged as needing a restart
        and not applied.
        """
        self.writeConfig(MAP, listenerExtra="handshake_timeout = 3.0")
        result = self.reload()
        self.assertEqual(result["restart"], ["[[listeners]]"])
        self.assertEqual(self.reloader.config.listeners[0].handshake_timeout, 10.0)
        [line] = self.logged(LogLevel.warn)
        self.assertIn("[[listeners]] need a restart", line)

    def test_S2_brokenConfigKept(self):
        """
        S2: a configuration file that no longer validates keeps the
        settings in force, and the log says why.
        """
        with open(self.path) as stream:
            text = stream.read()
        with open(self.path, "w") as stream:
            stream.write("surprise = 1\n" + text)
        result = self.reload()
        self.assertFalse(result["config"])
        self.assertEqual(self.reloader.config.promotion.map, MAP)
        self.assertIn("unknown key 'surprise'", self.logged(LogLevel.error)[0])

    def test_S2_sighupReloads(self):
        """
        S2: SIGHUP reloads; the handler only hands the work to the reactor,
        and the previous handler is back after stopService.
        """
        self.reloader.startService()
        handler = self.signals.handlers[signal.SIGHUP]
        self.assertNotEqual(handler, "previous")
        joe = self.session("joe.smith")
        writeUsersCnf(self.usersCnf, [u for u in self.users if u.name != "joe.smith"], {})
        handler(signal.SIGHUP, None)
        self.assertEqual(joe.forced, ["user removed or disabled"])
        self.reloader.stopService()
        self.assertEqual(self.signals.handlers[signal.SIGHUP], "previous")

    def test_S2_sighupReachesWorkers(self):
        """
        S2: with workers > 1 the master passes SIGHUP on to each worker.
        """
        sent = []
        transport = SimpleNamespace(pid=4242, signalProcess=sent.append)
        pool = WorkerPool(self.gateway.config, self.reactor, b"k" * 32, None)
        pool.processes = [SimpleNamespace(transport=transport)]
        self.reloader.workers = pool
        self.reloader.startService()
        self.addCleanup(self.reloader.stopService)
        self.signals.handlers[signal.SIGHUP](signal.SIGHUP, None)
        self.assertEqual(sent, ["HUP"])

    def test_U2_usersCnfPoll(self):
        """
        U2: a changed users.cnf is noticed by the poll (no SIGHUP needed),
        and removed users' connections close.
        """
        self.reloader.startService()
        self.addCleanup(self.reloader.stopService)
        joe = self.session("joe.smith")
        writeUsersCnf(self.usersCnf, [u for u in self.users if u.name != "joe.smith"], {})
        self.reactor.advance(reloading.POLL_INTERVAL)
        self.assertEqual(joe.forced, ["user removed or disabled"])

    def test_S2_unforeseenErrorKeepsThePollAlive(self):
        """
        S2: an unexpected error in a reload is logged and the users.cnf poll
        keeps running.
        """
        self.reloader.startService()
        self.addCleanup(self.reloader.stopService)

        def broken(session):
            raise RuntimeError("boom")
        self.patch(self.reloader, "revocation", broken)
        self.session("joe.smith")
        writeUsersCnf(self.usersCnf, self.users, self.groups)
        self.reactor.advance(reloading.POLL_INTERVAL)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 0)
        self.assertIn("reload failed", self.logged(LogLevel.critical)[0])
        [poll] = list(self.reloader)
        self.assertTrue(poll.running)
        self.assertTrue(poll._loop.running)

    def test_S2_wiredIntoGateway(self):
        """
        S2: the gateway carries a reload service, which knows its --apigw-dir.
        """
        gateway = GatewayService(loadConfig(self.path), self.reactor, apigwDir="/opt/apigw")
        self.assertIs(gateway.getServiceNamed("reload"), gateway.reloader)
        self.assertEqual(gateway.reloader.apigwDir, "/opt/apigw")


TOKEN_TOML = """\
user_auth = "internal"

[[listeners]]
name = "amqp"
protocol = "amqp"
endpoint = "tcp:0:interface=127.0.0.1"

[promotion]
mode = "token"
token_ttl = {ttl}

[broker_auth]
endpoint = "tcp:0:interface=127.0.0.1"

[[permissions]]
group = "{group}"
configure = ".*"
write = ".*"
read = ".*"
"""


class TokenReloadTests(ReloadTestMixin, SynchronousTestCase):
    """
    S2: in token mode [[permissions]] and token_ttl are live too.
    """

    def writeConfig(self, mapping, listenerExtra="", group="Everyone", ttl=10.0):
        with open(self.path, "w") as stream:
            stream.write(TOKEN_TOML.format(group=group, ttl=ttl))

    def test_S2_permissionsAndTokenTTLReloaded(self):
        """
        S2: a new permission table and token_ttl apply without a restart;
        a person no table entry names any more loses their connection.
        """
        alice = FakeSession("alice", groups={"Everyone"})
        joe = FakeSession("joe.smith", groups={"Everyone", "Tyche"})
        self.sessions.update([alice, joe])
        self.writeConfig(None, group="Tyche", ttl=20.0)
        result = self.reload()
        self.assertEqual((result["config"], result["restart"]), (True, []))
        book = self.gateway.promoter.tokenBook
        self.assertEqual(book.ttl, 20.0)
        self.assertTrue(book.permissions.relevantPrincipals(joe.avatar))
        self.assertFalse(book.permissions.relevantPrincipals(alice.avatar))
        self.assertEqual(alice.forced, ["access revoked"])
        self.assertEqual(joe.forced, [])


class RestartNeededTests(SynchronousTestCase):

    def config(self, **changes):
        document = {"listeners": [{"name": "a", "protocol": "amqp", "endpoint": "tcp:1", "auth": "none"}],
                    "promotion": {"mode": "consolidated", "user": "guest", "map": {"x": "y"}}}
        for key, setting in changes.items():
            document[key] = setting
        return parseConfig(document, "/etc/kp/gateway.toml")

    def test_S2_sameConfig(self):
        self.assertEqual(restartNeeded(self.config(), self.config()), [])

    def test_S2_mapIsLive(self):
        changed = self.config(promotion={"mode": "consolidated", "user": "guest", "map": {"x": "z"}})
        self.assertEqual(restartNeeded(self.config(), changed), [])

    def test_S2_namesWhatChanged(self):
        changed = self.config(broker={"endpoint": "tcp:host=rabbit:port=5672"}, workers=2,
                              promotion={"mode": "consolidated", "user": "other"})
        self.assertEqual(restartNeeded(self.config(), changed), ["[broker]", "[promotion]", "workers"])


def writeInstance(directory, config, users=True, secrets=None, secretsMode=0o600):
    """
    An instance directory with a configuration file (TOML text), the sample
    users.cnf and optionally a secrets file.

    @return: the configuration file's path.
    """
    os.makedirs(os.path.join(directory, "config"), exist_ok=True)
    if users:
        with open(os.path.join(ROOT, "etc", "config", "users.cnf"), "rb") as source:
            data = source.read()
        with open(os.path.join(directory, "config", "users.cnf"), "wb") as target:
            target.write(data)
    if secrets is not None:
        path = os.path.join(directory, "broker-secrets.toml")
        with open(path, "w") as stream:
            stream.write(secrets)
        os.chmod(path, secretsMode)
    path = os.path.join(directory, "gateway.toml")
    with open(path, "w") as stream:
        stream.write(config)
    return path


GOOD = """\
user_auth = "internal"

[[listeners]]
name = "amqp"
protocol = "amqp"
endpoint = "{endpoint}"

[promotion]
mode = "mapping"
secrets_file = "broker-secrets.toml"

[promotion.map]
"demo" = "demo_b"
"""


class CheckConfigTests(SynchronousTestCase):
    """
    S2: C{kaazing-promo check-config FILE} validates as start-up would,
    reports, prints the effective settings with secrets redacted, exits 0/1.
    """

    def check(self, path):
        out, err = io.StringIO(), io.StringIO()
        code = checkConfig(path, None, out, err)
        return code, out.getvalue(), err.getvalue()

    def instance(self, config=GOOD, endpoint="tcp:port=5673:interface=127.0.0.1", **kwargs):
        kwargs.setdefault("secrets", 'demo_b = "very-secret-password"\n')
        return writeInstance(os.path.abspath(self.mktemp()), config.replace("{endpoint}", endpoint), **kwargs)

    def test_S2_goodConfig(self):
        """
        S2: a good file: exit 0, what was checked, the effective settings
        with defaults, and no secret.
        """
        path = self.instance()
        code, out, err = self.check(path)
        self.assertEqual((code, err), (0, ""))
        self.assertIn(f"{path}: OK", out)
        self.assertIn("listener amqp: amqp on tcp:port=5673:interface=127.0.0.1: parses", out)
        self.assertIn("users.cnf: 6 users; 1 with passHash format PBKDF2-HmacSHA256", out)
        self.assertIn("broker-secrets.toml: mode 0600", out)
        self.assertIn("handshake_timeout = 10.0", out)
        self.assertIn('"demo" = "demo_b"', out)
        self.assertNotIn("very-secret-password", out)

    def test_S2_inlineSecretsRedacted(self):
        config = GOOD.replace('secrets_file = "broker-secrets.toml"\n', "") + \
            '\n[promotion.secrets]\ndemo_b = "very-secret-password"\n'
        code, out, err = self.check(self.instance(config, secrets=None))
        self.assertEqual(code, 0, err)
        self.assertIn('"demo_b" = "<redacted>"', out)
        self.assertIn("inline [promotion.secrets]: for demos only", out)
        self.assertNotIn("very-secret-password", out)

    def test_S2_brokenTOML(self):
        """
        S2 (broken 1): a syntax error: exit 1, one line naming the file.
        """
        path = self.instance(GOOD + "[promotion\n")
        code, out, err = self.check(path)
        self.assertEqual((code, out), (1, ""))
        self.assertIn(f"{path}: not valid TOML", err)

    def test_S2_usersCnfMissing(self):
        """
        S2 (broken 2): no users.cnf: exit 1, both places looked at named.
        """
        code, out, err = self.check(self.instance(users=False))
        self.assertEqual(code, 1)
        self.assertIn("users.cnf not found: looked in", err)
        self.assertIn("kaazing-promo provision", err)

    def test_S2_secretsReadableByOthers(self):
        """
        S2 (broken 3): a secrets file others may read: exit 1, the fix named.
        """
        code, out, err = self.check(self.instance(secretsMode=0o644))
        self.assertEqual(code, 1)
        self.assertIn("mode 0644", err)
        self.assertIn("chmod 0640", err)

    def test_S2_badEndpoint(self):
        """
        S2: an endpoint string Twisted cannot parse: exit 1, listener and key named.
        """
        code, out, err = self.check(self.instance(endpoint="tcp:port=fifty"))
        self.assertEqual(code, 1)
        self.assertIn("[[listeners]] 'amqp' key 'endpoint'", err)

    def test_S2_delegatedNeedsHTTPS(self):
        config = GOOD.replace('user_auth = "internal"', 'user_auth = "delegated"') + \
            '\n[delegated]\nurl = "http://apigw.example.com:5555"\n'
        code, out, err = self.check(self.instance(config))
        self.assertEqual(code, 1)
        self.assertIn("is not https://", err)

    def test_S2_delegatedReported(self):
        config = GOOD.replace('user_auth = "internal"', 'user_auth = "delegated"') + \
            '\n[delegated]\nurl = "https://apigw.example.com:5543"\n'
        code, out, err = self.check(self.instance(config))
        self.assertEqual(code, 0, err)
        self.assertIn("realm delegated: https://apigw.example.com:5543: https", out)

    def test_S2_systemdEndpointsBySyntax(self):
        """
        S2: systemd: endpoints pass by syntax without LISTEN_FDS, and a
        malformed one is still refused.
        """
        self.assertNotIn("LISTEN_FDS", os.environ)
        code, out, err = self.check(self.instance(endpoint="systemd:domain=INET:index=1"))
        self.assertEqual(code, 0, err)
        self.assertIn("checked by syntax", out)
        code, out, err = self.check(self.instance(endpoint="systemd:domain=INET:name=amqp"))
        self.assertEqual(code, 0, err)
        code, out, err = self.check(self.instance(endpoint="systemd:domain=INET"))
        self.assertEqual(code, 1)
        self.assertIn("Specify exactly one of descriptor index or name", err)

    def test_S2_systemdParserRestored(self):
        """
        S2: the check leaves Twisted's systemd parser as it found it.
        """
        from twisted.internet.endpoints import _SystemdParser
        before = _SystemdParser._sddaemon
        with systemdEndpointsBySyntax():
            endpoints.serverFromString(None, "systemd:domain=INET:index=7")
        self.assertIs(_SystemdParser._sddaemon, before)

    def test_S2_shippedConfigurations(self):
        """
        S2: both shipped configurations pass.
        """
        for name in ("gateway.toml", "gateway-socket.toml"):
            code, out, err = self.check(os.path.join(ROOT, "etc", name))
            self.assertEqual(code, 0, err)

    def test_S2_describeSettingsSkipsWebSocketKeysOnAMQP(self):
        config = loadConfig(self.instance())
        text = describeSettings(config)
        self.assertNotIn("max_ws_message", text)
        self.assertIn("[[listeners]]\nname = \"amqp\"", text)

    def test_S2_commandLine(self):
        """
        S2: `kaazing-promo check-config FILE` exits 0 or 1.
        """
        env = dict(os.environ, PYTHONPATH=ROOT)
        good = subprocess.run([sys.executable, "-m", "kaazing_promo.cli", "check-config", self.instance()],
                              capture_output=True, text=True, env=env, timeout=60)
        self.assertEqual(good.returncode, 0, good.stderr)
        bad = subprocess.run([sys.executable, "-m", "kaazing_promo.cli", "check-config",
                              self.instance(users=False)], capture_output=True, text=True, env=env, timeout=60)
        self.assertEqual(bad.returncode, 1)
        self.assertNotIn("Traceback", bad.stderr)
        self.assertEqual(len(bad.stderr.strip().splitlines()), 2)


class GlobalObserverHygieneTests(SynchronousTestCase):
    """
    The services leave the global log publisher as they found it.
    """

    def test_observersRemoved(self):
        before = list(globalLogPublisher._observers)
        metrics = MetricsService(makeMetrics())
        metrics.startService()
        auditFile = AuditJSONService(self.mktemp())
        auditFile.startService()
        auditFile.stopService()
        metrics.stopService()
        self.assertEqual(list(globalLogPublisher._observers), before)
