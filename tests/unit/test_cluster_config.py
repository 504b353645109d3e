"""
Issue 20 #1: the C{[cluster]} section, validated like every other (file,
key, fix in one line), and the shared key and Redis password read from
outside the configuration file.
"""

import os
import tomllib

from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase

from kaazing_promo.auth.avatar import GatewayUser
from kaazing_promo.auth.tickets import TicketBook
from kaazing_promo.cluster import loadClusterSecrets
from kaazing_promo.config import CLUSTER_PREFIX, parseConfig
from kaazing_promo.errors import ConfigError
from kaazing_promo.ops.checkconfig import describeSettings
from kaazing_promo.tap import GatewayService
from tests.authfixtures import KEY_TEXT, privateFile
from tests.support import gatewayConfig

PATH = "/etc/kp/gateway.toml"


def document(**cluster):
    return {
        "listeners": [{"name": "web", "protocol": "websocket", "endpoint": "tcp:0", "auth": "none"}],
        "promotion": {"mode": "consolidated", "user": "guest"},
        "cluster": dict({"redis": "tcp:host=127.0.0.1:port=6379", "key_env": "KP_CLUSTER_KEY"}, **cluster),
    }


class ClusterSectionTests(SynchronousTestCase):

    def assertConfigError(self, data, *fragments):
        message = str(self.assertRaises(ConfigError, parseConfig, data, PATH))
        self.assertNotIn("\n", message)
        for fragment in (PATH, "[cluster]") + fragments:
            self.assertIn(fragment, message)
        return message

    def test_20_1_absentMeansPerProcess(self):
        """
        Without [cluster] there is no cluster configuration at all.
        """
        data = document()
        del data["cluster"]
        self.assertIsNone(parseConfig(data, PATH).cluster)

    def test_20_1_settingsAndDefaults(self):
        """
        The Redis endpoint string, where the key is, and the defaults:
        the key prefix and the Redis answer timeout; relative paths resolve
        against the configuration file's directory.
        """
        data = document(redis="tls:host=redis.example:port=6380", password_env="KP_REDIS_PASSWORD")
        cluster = parseConfig(data, PATH).cluster
        self.assertEqual((cluster.redis, cluster.key_env, cluster.key_file, cluster.password_env),
                         ("tls:host=redis.example:port=6380", "KP_CLUSTER_KEY", None, "KP_REDIS_PASSWORD"))
        self.assertEqual((cluster.prefix, cluster.timeout, cluster.username), (CLUSTER_PREFIX, 2.0, None))
        data = document(key_file="keys/cluster.key", password_file="keys/redis.pw", prefix="kp-a:", timeout=1)
        del data["cluster"]["key_env"]
        cluster = parseConfig(data, PATH).cluster
        self.assertEqual((cluster.key_file, cluster.password_file, cluster.prefix, cluster.timeout),
                         ("/etc/kp/keys/cluster.key", "/etc/kp/keys/redis.pw", "kp-a:", 1.0))

    def test_20_1_redisRequired(self):
        data = document()
        del data["cluster"]["redis"]
        self.assertConfigError(data, "'redis'", "tcp:host=127.0.0.1:port=6379")
        self.assertConfigError(document(redis=""), "'redis'")
        self.assertConfigError(document(redis=6379), "'redis'", "must be a string")

    def test_20_1_exactlyOneKeySource(self):
        """
        The shared key comes from a file or an environment variable: one of
        them, never both, never neither.
        """
        data = document()
        del data["cluster"]["key_env"]
        self.assertConfigError(data, "'key_file'", "key_env")
        self.assertConfigError(document(key_file="/etc/kp/cluster.key"), "exactly one")
        self.assertConfigError(document(key_env="not a name"), "'key_env'", "environment variable")

    def test_20_1_secretsNeverInline(self):
        """
        A key or password written into the file is refused with what to
        use instead, and the message does not repeat it.
        """
        message = self.assertConfigError(document(key="s3cret-key-value"), "'key'", "key_file or key_env")
        self.assertNotIn("s3cret-key-value", message)
        message = self.assertConfigError(document(password="s3cret-pw"), "'password'",
                                         "password_file or password_env")
        self.assertNotIn("s3cret-pw", message)
        self.assertConfigError(document(password_file="/a", password_env="B"), "'password_file'", "keep one")

    def test_20_1_unknownAndBadKeys(self):
        self.assertConfigError(document(redis_endpoint="tcp:x"), "unknown key 'redis_endpoint'")
        self.assertConfigError(document(timeout=0), "'timeout'")
        self.assertConfigError(document(prefix=""), "'prefix'")
        self.assertConfigError(document(prefix="a b"), "'prefix'")
        data = document()
        data["cluster"] = "redis"
        self.assertConfigError(data, "must be a table")

    def test_20_1_checkConfigShowsSection(self):
        """
        check-config's effective settings include [cluster] (names and
        paths only: it holds no secret).
        """
        text = describeSettings(parseConfig(document(), PATH))
        settings = tomllib.loads(text.replace("# ", "#"))
        self.assertEqual(settings["cluster"]["redis"], "tcp:host=127.0.0.1:port=6379")
        self.assertEqual(settings["cluster"]["key_env"], "KP_CLUSTER_KEY")
        data = document()
        del data["cluster"]
        self.assertNotIn("[cluster]", describeSettings(parseConfig(data, PATH)))


class ClusterSecretsTests(SynchronousTestCase):

    def config(self, **cluster):
        data = document(**cluster)
        if "key_file" in cluster:
            del data["cluster"]["key_env"]
        return parseConfig(data, PATH)

    def test_20_1_keyFromFileOrEnvironment(self):
        """
        The same key text gives the same signing key wherever it is read
        from; another text gives another.
        """
        fromFile, password = loadClusterSecrets(self.config(key_file=privateFile(self, KEY_TEXT + "\n")))
        self.assertIsNone(password)
        fromEnvironment, _ = loadClusterSecrets(self.config(), environ={"KP_CLUSTER_KEY": KEY_TEXT})
        self.assertEqual(fromFile, fromEnvironment)
        self.assertEqual(len(fromFile), 32)
        other, _ = loadClusterSecrets(self.config(), environ={"KP_CLUSTER_KEY": KEY_TEXT + "x"})
        self.assertNotEqual(other, fromFile)

    def test_20_1_keyFileOthersMayRead(self):
        path = privateFile(self, KEY_TEXT, mode=0o644)
        message = str(self.assertRaises(ConfigError, loadClusterSecrets, self.config(key_file=path)))
        self.assertIn(path, message)
        self.assertIn("chmod", message)
        self.assertNotIn(KEY_TEXT, message)

    def test_20_1_missingOrShortKey(self):
        message = str(self.assertRaises(ConfigError, loadClusterSecrets, self.config(), environ={}))
        self.assertIn("KP_CLUSTER_KEY is not set", message)
        self.assertIn("[cluster] key 'key_env'", message)
        message = str(self.assertRaises(ConfigError, loadClusterSecrets, self.config(),
                                        environ={"KP_CLUSTER_KEY": "short"}))
        self.assertIn("shorter than 32", message)
        self.assertNotIn("short\"", message)
        missing = os.path.abspath(self.mktemp())
        message = str(self.assertRaises(ConfigError, loadClusterSecrets, self.config(key_file=missing)))
        self.assertIn(missing, message)
        self.assertIn("[cluster] key 'key_file'", message)

    def test_20_1_password(self):
        """
        The optional Redis password, from a private file or a variable.
        """
        _, password = loadClusterSecrets(self.config(password_env="KP_REDIS_PW"),
                                         environ={"KP_CLUSTER_KEY": KEY_TEXT, "KP_REDIS_PW": "pw-1"})
        self.assertEqual(password.reveal(), "pw-1")
        self.assertNotIn("pw-1", repr(password))
        _, password = loadClusterSecrets(self.config(password_file=privateFile(self, "pw-2\n")),
                                         environ={"KP_CLUSTER_KEY": KEY_TEXT})
        self.assertEqual(password.reveal(), "pw-2")
        self.assertRaises(ConfigError, loadClusterSecrets, self.config(password_env="KP_REDIS_PW"),
                          environ={"KP_CLUSTER_KEY": KEY_TEXT})


JOE = GatewayUser("joe.smith", {"Tyche"}, (), None, "internal")


class SharedKeyTests(TestCase):
    """
    Issue 20 #2: gateways of one cluster sign with one key: what one signs,
    another verifies.
    """

    def gateway(self, keyFile, **top):
        return GatewayService(gatewayConfig(self.mktemp(), cluster={
            "redis": "tcp:host=127.0.0.1:port=1", "key_file": keyFile}, **top), reactor)

    def test_20_2_ticketSignedByOneVerifiedByAnother(self):
        keyFile = privateFile(self, KEY_TEXT)
        first, second = self.gateway(keyFile), self.gateway(keyFile)
        listener = first.config.listeners[0]
        self.assertEqual(first.ticketKey, second.ticketKey)
        ticket = first.authenticator.issueTicket(JOE, listener, "10.0.0.1:5000")
        avatar, _ = self.successResultOf(TicketBook(reactor, second.ticketKey).redeem(ticket, listener, "10.0.0.1"))
        self.assertEqual(avatar.user, "joe.smith")
        stranger = GatewayService(gatewayConfig(self.mktemp()), reactor)
        self.assertNotEqual(stranger.ticketKey, first.ticketKey)
