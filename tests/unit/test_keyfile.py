"""
Tests for C{key_file}: a single gateway's signing key kept across restarts,
so that a browser's session cookie outlives a restart (issue 19 #5).
"""

import os
import stat

from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

from kaazing_promo.auth.avatar import GatewayUser
from kaazing_promo.errors import ConfigError
from kaazing_promo.tap import GatewayService
from tests.authfixtures import KEY_TEXT, privateFile, standardUsers, writeUsersCnf
from tests.support import gatewayConfig

JOE = GatewayUser("joe.smith", {"Tyche"}, (), None, "internal")

WEB = [{"name": "web", "protocol": "websocket", "endpoint": "tcp:0:interface=127.0.0.1", "auth": "required"}]


class KeyFileTests(SynchronousTestCase):

    def setUp(self):
        self.usersCnf = os.path.abspath(self.mktemp())
        writeUsersCnf(self.usersCnf, *standardUsers())

    def gateway(self, **top):
        top.update(user_auth="internal", internal={"users_cnf": self.usersCnf})
        return GatewayService(gatewayConfig(self.mktemp(), WEB, **top), MemoryReactorClock())

    def resumed(self, gateway, cookie):
        """
        @return: the avatar C{gateway}'s ticket endpoint would log in with
            C{cookie}, or the L{LoginDenied} it refuses it with.
        """
        d = gateway.authenticator.resumeSession(cookie, gateway.config.listeners[0], "10.0.0.1:5000")
        return self.successResultOf(d.addErrback(lambda failure: failure.value))

    def test_createdPrivateAndKeptAcrossRestarts(self):
        """
        A missing key file is created, mode 0600; the next start (a restart)
        reads the same key, so a session cookie the first process issued
        opens in the second.
        """
        keyFile = os.path.abspath(os.path.join(self.mktemp(), "gateway.key"))
        os.makedirs(os.path.dirname(keyFile))
        with capturedLogs() as events:
            first = self.gateway(key_file=keyFile)
        self.assertEqual(stat.S_IMODE(os.stat(keyFile).st_mode), 0o600)
        self.assertTrue([e for e in events if "created the signing key" in formatEvent(e)])
        with open(keyFile) as f:
            self.assertGreaterEqual(len(f.read().strip()), 32)
        second = self.gateway(key_file=keyFile)
        self.assertEqual(first.ticketKey, second.ticketKey)
        self.assertFalse(first.ephemeralKey)
        listener = first.config.listeners[0]
        cookie = first.authenticator.openSession(JOE, listener)
        self.assertIsNotNone(cookie)
        self.assertEqual(self.resumed(second, cookie).user, "joe.smith")

    def test_withoutKeyFileEveryStartItsOwn(self):
        first, second = self.gateway(), self.gateway()
        self.assertNotEqual(first.ticketKey, second.ticketKey)
        self.assertTrue(first.ephemeralKey)
        listener = first.config.listeners[0]
        cookie = first.authenticator.openSession(JOE, listener)
        self.assertEqual(self.resumed(first, cookie).user, "joe.smith")
        self.assertEqual(self.resumed(second, cookie).outcome, "bad-credentials")

    def test_existingKeyRead(self):
        """
        A key the operator made is read, not replaced; the same text gives
        the same key.
        """
        keyFile = privateFile(self, KEY_TEXT + "\n")
        first = self.gateway(key_file=keyFile)
        self.assertEqual(first.ticketKey, self.gateway(key_file=privateFile(self, KEY_TEXT)).ticketKey)
        with open(keyFile) as f:
            self.assertEqual(f.read(), KEY_TEXT + "\n")

    def test_twoStartsAtOnceAgree(self):
        """
        A second gateway starting while the first is writing a new key file
        never sees it empty or half written: both end up with the one key
        that was linked into place first.
        """
        from kaazing_promo import secrets
        keyFile = os.path.abspath(os.path.join(self.mktemp(), "gateway.key"))
        os.makedirs(os.path.dirname(keyFile))
        realFdopen, second = os.fdopen, []

        def fdopen(*args, **kwargs):
            # The first process, its file open and nothing written yet:
            # the second process starts now.
            if not second:
                second.append(None)
                second[0] = secrets.readOrCreateKeyFile("key_file", keyFile)
            return realFdopen(*args, **kwargs)

        self.patch(secrets.os, "fdopen", fdopen)
        first = secrets.readOrCreateKeyFile("key_file", keyFile)
        (secondText, secondCreated), = second
        self.assertGreaterEqual(len(first[0]), 32)
        self.assertEqual(first[0], secondText)
        self.assertEqual(sorted([first[1], secondCreated]), [False, True])
        self.assertEqual(os.listdir(os.path.dirname(keyFile)), ["gateway.key"])
        self.assertEqual(stat.S_IMODE(os.stat(keyFile).st_mode), 0o600)

    def test_readableByOthersRefused(self):
        keyFile = privateFile(self, KEY_TEXT, mode=0o644)
        e = self.assertRaises(ConfigError, self.gateway, key_file=keyFile)
        self.assertIn("readable by others", str(e))
        self.assertNotIn(KEY_TEXT, str(e))

    def test_shortKeyRefused(self):
        e = self.assertRaises(ConfigError, self.gateway, key_file=privateFile(self, "short"))
        self.assertIn("shorter than 32", str(e))
        self.assertIn("key_file", str(e))

    def test_uncreatableSaysWhy(self):
        e = self.assertRaises(ConfigError, self.gateway, key_file=os.path.abspath(
            os.path.join(self.mktemp(), "no", "such", "dir", "gateway.key")))
        self.assertIn("cannot be created", str(e))

    def test_notWithCluster(self):
        e = self.assertRaises(ConfigError, gatewayConfig, self.mktemp(), [dict(WEB[0], auth="none")], key_file="k",
                              cluster={"redis": "tcp:host=127.0.0.1:port=1", "key_file": "k"})
        self.assertIn("key 'key_file': cannot be set with [cluster]", str(e))

    def test_startSaysCookiesDieWithARandomKey(self):
        """
        Without key_file, start-up says that a restart logs every browser of
        a cookie-keeping listener out; with it, it does not.
        """
        for keyFile, said in ((None, True), (privateFile(self, KEY_TEXT), False)):
            gateway = self.gateway(**({} if keyFile is None else {"key_file": keyFile}))
            with capturedLogs() as events:
                gateway.startService()
            self.addCleanup(gateway.stopService)
            texts = [formatEvent(e) for e in events]
            self.assertEqual(any("set key_file to keep them" in text for text in texts), said, texts)
