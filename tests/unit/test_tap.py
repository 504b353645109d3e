"""
The twistd plugin in this process: the services it builds, the warnings
at start, one clear line on a bad configuration (the installed plugin run
by twistd is in tests/integration/test_plugin.py).
"""

import os
import signal

import attr
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from kaazing_promo import tap
from kaazing_promo.config import loadConfig
from kaazing_promo.ops.memory import HeapFreezer

from tests import ROOT


def startUpError(case, text, *arguments):
    """
    Start the plugin on a configuration file holding C{text}.

    @return: C{(directory, message)}: the file's directory and the one-line
        start-up error (the test fails if there is none).
    """
    directory = case.mktemp()
    os.makedirs(directory)
    path = os.path.join(directory, "gateway.toml")
    with open(path, "w") as f:
        f.write(text)
    options = tap.Options()
    options.parseOptions(["--config", path, *arguments])
    return directory, str(case.assertRaises(SystemExit, tap.makeService, options))


class ServiceTests(SynchronousTestCase):

    def test_defaultConfiguration(self):
        """
        Without --config the packaged default runs: WebSocket and AMQP
        listeners, the internal realm with the sample users.cnf.
        """
        options = tap.Options()
        options.parseOptions([])
        service = tap.makeService(options)
        self.assertTrue({"amqp", "web"} <= {s.name for s in service})
        self.assertEqual(service.config.user_auth, "internal")
        self.assertGreater(service.checker.userCount, 0)

    def test_pluginFreezesTheStartUpHeap(self):
        """
        The twistd plugin's gateway keeps its start-up heap out of full
        collections (issue 19); a gateway built without asking, as tests
        build them, leaves its process's collector alone.
        """
        options = tap.Options()
        options.parseOptions([])
        gateway = tap.makeService(options)
        self.assertIsInstance(gateway.getServiceNamed("heap"), HeapFreezer)
        self.assertIs(gateway.reloader.heap, gateway.heap)
        plain = tap.GatewayService(gateway.config, MemoryReactorClock())
        self.assertIsNone(plain.heap)
        self.assertNotIn("heap", {s.name for s in plain})

    def test_configErrorExits(self):
        options = tap.Options()
        options.parseOptions(["--config", "/nonexistent.toml"])
        error = self.assertRaises(SystemExit, tap.makeService, options)
        self.assertIn("/nonexistent.toml", str(error))

    def test_usersCnfMissingNamesBothPaths(self):
        """
        U3: neither users.cnf found → start-up fails naming both paths.
        """
        directory, error = startUpError(self, 'user_auth = "internal"\n[[listeners]]\nname = "a"\n'
                                              'protocol = "amqp"\nendpoint = "tcp:0"\n[promotion]\nuser = "guest"\n'
                                              '[promotion.secrets]\nguest = "guest"\n', "--apigw-dir", "/opt/apigw")
        self.assertIn(os.path.join(directory, "config", "users.cnf"), error)
        self.assertIn("/opt/apigw/IntegrationServer/instances/default/config/users.cnf", error)

    def test_shippedSocketActivationVariant(self):
        """
        The socket-activation configuration differs only in its endpoints.
        """
        plain = loadConfig(os.path.join(ROOT, "etc", "gateway.toml"))
        socket = loadConfig(os.path.join(ROOT, "etc", "gateway-socket.toml"))
        self.assertEqual([l.endpoint for l in socket.listeners],
                         ["systemd:domain=INET:index=0", "systemd:domain=INET:index=1"])
        self.assertEqual(plain.promotion, socket.promotion)


class DelegatedPoolTests(SynchronousTestCase):

    def test_poolSizedByConfiguredMaxConcurrent(self):
        """
        Issue 17: the delegated realm keeps as many idle HTTPS connections as
        C{[delegated] max_concurrent} says (it used the default, 64).
        """
        from twisted.internet.task import Clock
        from kaazing_promo.config import parseConfig
        config = parseConfig({
            "user_auth": "delegated", "delegated": {"url": "https://apigw.example.com", "max_concurrent": 7},
            "listeners": [{"name": "a", "protocol": "amqp", "endpoint": "tcp:0"}],
            "promotion": {"user": "guest", "secrets": {"guest": "guest"}}}, "/etc/kp/gateway.toml")
        _, checker = tap.buildPortal(config, Clock())
        self.assertEqual(checker._client._agent._pool.maxPersistentPerHost, 7)
        self.assertEqual(checker.concurrency, 7)


def startLogs(config):
    """
    Build and start the gateway for C{config} on a memory reactor.

    @return: the log events of building and starting it.
    """
    from twisted.internet.testing import MemoryReactorClock
    from twisted.logger import capturedLogs
    with capturedLogs() as events:
        gateway = tap.GatewayService(config, MemoryReactorClock())
        gateway.startService()
    return events


class DemoStartTests(SynchronousTestCase):
    """
    The shipped sample says it is a demo (C{demo = true}): its demo choices
    are reported as information, so that a default start has no warning.
    """

    def test_sampleStartsWithoutWarnings(self):
        """
        The sample's inline secrets and its users.cnf user with a webMethods
        hash are named at start-up, once each, and neither is a warning.
        """
        from twisted.logger import LogLevel, formatEvent
        config = loadConfig(os.path.join(ROOT, "etc", "gateway.toml"))
        self.assertTrue(config.demo)
        events = startLogs(config)
        warnings = [formatEvent(event) for event in events if event["log_level"] >= LogLevel.warn]
        self.assertEqual(warnings, [])
        lines = [formatEvent(event) for event in events]
        self.assertEqual(len([line for line in lines if "inline" in line and "demo = true" in line]), 1, lines)
        self.assertEqual(len([line for line in lines if "PBKDF2-HmacSHA256" in line]), 1, lines)

    def test_inlineSecretsWarnedOutsideTheDemo(self):
        """
        Without C{demo = true}, inline broker secrets are still a warning.
        """
        from twisted.logger import LogLevel, formatEvent
        config = attr.evolve(loadConfig(os.path.join(ROOT, "etc", "gateway.toml")), demo=False)
        events = startLogs(config)
        warnings = [formatEvent(event) for event in events if event["log_level"] == LogLevel.warn]
        self.assertTrue(any("broker secrets are inline" in line for line in warnings), warnings)
        self.assertTrue(any("PBKDF2-HmacSHA256" in line for line in warnings), warnings)


class SecretsAtStartTests(SynchronousTestCase):

    def test_missingBrokerSecretStopsStartUp(self):
        """
        The consolidated account (or a mapped one) without a secret stops
        start-up with one line, instead of refusing every login later.
        """
        _, error = startUpError(self, '[[listeners]]\nname = "a"\nprotocol = "amqp"\nendpoint = "tcp:0"\n'
                                      'auth = "none"\n[promotion]\nuser = "webuser"\n[promotion.secrets]\nguest = "guest"\n')
        self.assertIn("no broker secret for 'webuser'", error)
        self.assertNotIn("guest\"", error)


class StopOnSigtermTests(SynchronousTestCase):
    """
    The SIGTERM handler the twistd plugin installs: the reactor stops once,
    however many SIGTERMs arrive while it drains.
    """

    def test_stopsOnce(self):
        from kaazing_promo.tap import StopOnSigterm

        class Reactor:
            stops = 0

            def callWhenRunning(self, f, *args):
                self.installed = (f, args)

            def callFromThread(self, f):
                f()

            def stop(self):
                self.stops += 1

        reactor = Reactor()
        stopper = StopOnSigterm(reactor)
        stopper.startService()
        f, (number, handler) = reactor.installed
        self.assertEqual((f, number), (signal.signal, signal.SIGTERM))
        handler(signal.SIGTERM, None)
        handler(signal.SIGTERM, None)
        self.assertEqual(reactor.stops, 1)
