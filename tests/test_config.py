"""
The configuration contract: one file, validated once, errors that say what to do.
"""

import os

from twisted.trial.unittest import SynchronousTestCase

from kaazing_promo.config import defaultConfigPath, loadConfig, parseConfig
from kaazing_promo.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def document(**top):
    base = {
        "listeners": [{"name": "web", "protocol": "websocket", "endpoint": "tcp:0", "auth": "none"}],
        "promotion": {"mode": "consolidated", "user": "guest"},
    }
    base.update(top)
    return base


class ConfigTests(SynchronousTestCase):

    def assertConfigError(self, data, *fragments):
        error = self.assertRaises(ConfigError, parseConfig, data, "/etc/kp/gateway.toml")
        message = str(error)
        self.assertNotIn("\n", message)
        self.assertIn("/etc/kp/gateway.toml", message)
        for fragment in fragments:
            self.assertIn(fragment, message)
        return message

    def test_defaults(self):
        """
        U1: user_auth is "off" by default; the settled defaults apply.
        """
        config = parseConfig(document(), "/etc/kp/gateway.toml")
        self.assertEqual(config.user_auth, "off")
        self.assertEqual(config.workers, 1)
        listener = config.listeners[0]
        self.assertEqual((listener.path, listener.handshake_timeout, listener.max_pending_bytes),
                         ("/amqp", 10.0, 1048576))

    def test_requiredAuthWithUserAuthOff(self):
        """
        U1: a listener demanding authentication with user_auth off is
        rejected at start-up, naming the listener.
        """
        data = document(listeners=[{"name": "secure-web", "protocol": "websocket", "endpoint": "tcp:0"}])
        self.assertConfigError(data, "secure-web", "user_auth")

    def test_unknownKey(self):
        """
        A typo is an error naming the key, never silently ignored.
        """
        self.assertConfigError(document(user_auht="internal"), "user_auht")
        data = document()
        data["listeners"][0]["max_pending_byte"] = 1
        self.assertConfigError(data, "max_pending_byte", "'web'")
        self.assertConfigError(document(promotion={"mode": "consolidated", "user": "u", "usr": "x"}), "usr")

    def test_unknownTopLevelKeyNamesNoEmptySection(self):
        """
        An unknown top-level key is reported as C{FILE: unknown key …}: no
        empty C{: :} segment where a section name would be.
        """
        message = self.assertConfigError(document(user_auht="internal"), "user_auht")
        self.assertTrue(message.startswith("/etc/kp/gateway.toml: unknown key 'user_auht' (known keys: "), message)
        self.assertNotIn(": :", message)

    def test_demo(self):
        """
        C{demo = true} marks the sample configuration; off by default, and
        only true or false.
        """
        self.assertFalse(parseConfig(document(), "/etc/kp/gateway.toml").demo)
        self.assertTrue(parseConfig(document(demo=True), "/etc/kp/gateway.toml").demo)
        self.assertConfigError(document(demo="yes"), "key 'demo'", "true or false")

    def test_wrongType(self):
        data = document()
        data["listeners"][0]["handshake_timeout"] = "ten"
        self.assertConfigError(data, "handshake_timeout", "a number")

    def test_delegatedNeedsHTTPS(self):
        """
        U8: an http:// delegated URL is a start-up error.
        """
        data = document(user_auth="delegated", delegated={"url": "http://apigw.example.com:5555"})
        self.assertConfigError(data, "[delegated] key 'url'", "https")

    def test_passthroughOnlyAnonymous(self):
        """
        passthrough relays the client's own credentials: only on auth = "none".
        """
        data = document(user_auth="internal", promotion={"mode": "passthrough"})
        data["listeners"][0]["auth"] = "required"
        self.assertConfigError(data, "passthrough", "'web'")

    def test_anonymousOnlyPassthroughOrConsolidated(self):
        data = document(promotion={"mode": "mapping", "map": {"a": "b"}})
        self.assertConfigError(data, "auth = \"none\"", "'mapping'")

    def test_consolidatedNeedsUser(self):
        self.assertConfigError(document(promotion={"mode": "consolidated"}), "user")

    def test_relativePathsAgainstConfigDirectory(self):
        """
        Relative paths resolve against the configuration file's directory.
        """
        config = parseConfig(document(internal={"users_cnf": "config/users.cnf"}), "/etc/kp/gateway.toml")
        self.assertEqual(config.internal.users_cnf, "/etc/kp/config/users.cnf")

    def test_commandLineApigwDirWins(self):
        """
        U4: apigw_dir comes from the command line or the file; the command line wins.
        """
        data = document(apigw_dir="/opt/file")
        self.assertEqual(parseConfig(data, "/x/g.toml").apigw_dir, "/opt/file")
        self.assertEqual(parseConfig(data, "/x/g.toml", apigwDir="/opt/cli").apigw_dir, "/opt/cli")

    def test_inlineSecretsRedacted(self):
        config = parseConfig(document(promotion={"mode": "consolidated", "user": "guest",
                                                 "secrets": {"guest": "s3cret-value"}}), "/x/g.toml")
        self.assertNotIn("s3cret-value", repr(config))

    def test_badToml(self):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("user_auth = \n")
        error = self.assertRaises(ConfigError, loadConfig, path)
        self.assertIn("not valid TOML", str(error))

    def test_missingFile(self):
        error = self.assertRaises(ConfigError, loadConfig, "/nonexistent/gateway.toml")
        self.assertIn("/nonexistent/gateway.toml", str(error))

    def test_shippedConfigurationIsThePackagedDefault(self):
        """
        The packaged default is identical to etc/gateway.toml, and both load.
        """
        with open(os.path.join(ROOT, "etc", "gateway.toml"), "rb") as shipped, \
                open(defaultConfigPath(), "rb") as packaged:
            self.assertEqual(shipped.read(), packaged.read())
        config = loadConfig(os.path.join(ROOT, "etc", "gateway.toml"))
        self.assertEqual([l.protocol for l in config.listeners], ["websocket", "amqp"])
        self.assertEqual(config.internal.users_cnf, os.path.join(ROOT, "etc", "config", "users.cnf"))
