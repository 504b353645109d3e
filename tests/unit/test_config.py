"""
The configuration contract: one file, validated once, errors that say what to do.
"""

import os

from twisted.trial.unittest import SynchronousTestCase

from kaazing_promo.config import defaultConfigPath, loadConfig, parseConfig
from kaazing_promo.errors import ConfigError

from tests import ROOT


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


class HostsTests(SynchronousTestCase):
    """
    Issue 16 finding 9a: a WebSocket listener's C{hosts}, the names it serves.
    """

    def listener(self, **keys):
        data = document()
        data["listeners"][0].update(keys)
        return parseConfig(data, "/etc/kp/gateway.toml").listeners[0]

    def test_defaultAnyHost(self):
        self.assertIsNone(self.listener().hosts)

    def test_hostsKept(self):
        hosts = ["127.0.0.1:8080", "localhost:8080", "gateway.example.com", "[::1]:8080", "[fe80::1]"]
        self.assertEqual(self.listener(hosts=hosts).hosts, tuple(hosts))

    def test_badEntries(self):
        """
        An entry that is not a host, an address or either with a port, and
        an empty list (which would refuse every request), are errors naming
        the key.
        """
        assertConfigError = ConfigTests.assertConfigError
        for bad in (["http://localhost:8080"], ["localhost:99999"], ["::1"], ["a b"], ["host/path"], [""], [1]):
            data = document()
            data["listeners"][0]["hosts"] = bad
            assertConfigError(self, data, "key 'hosts'", "'web'")
        data = document()
        data["listeners"][0]["hosts"] = []
        assertConfigError(self, data, "key 'hosts'", "remove the key")

    def test_onlyWebSocketListeners(self):
        data = document(listeners=[{"name": "amqp", "protocol": "amqp", "endpoint": "tcp:0", "auth": "none",
                                    "hosts": ["localhost"]}])
        ConfigTests.assertConfigError(self, data, "unknown key 'hosts'")

    def test_shippedConfigurationListsItsHosts(self):
        """
        The shipped configuration's page is reached at 127.0.0.1:8080 and
        localhost:8080, and serves only those.
        """
        for name in ("gateway.toml", "gateway-socket.toml"):
            config = loadConfig(os.path.join(ROOT, "etc", name))
            self.assertEqual(config.listeners[0].hosts, ("127.0.0.1:8080", "localhost:8080"), name)


class TrustedProxiesTests(SynchronousTestCase):
    """
    Issue 16 finding 9b: a haproxy: listener names the proxies whose PROXY
    header it believes; without them it does not start.
    """

    def listener(self, **keys):
        data = document()
        data["listeners"][0].update(keys)
        return data

    def test_requiredWithHAProxy(self):
        """
        A haproxy: endpoint without trusted_proxies is a start-up error naming the key.
        """
        message = ConfigTests.assertConfigError(self, self.listener(endpoint="haproxy:tcp:0"), "'web'",
                                                "key 'trusted_proxies'", "haproxy:")
        self.assertIn("PROXY", message)

    def test_kept(self):
        config = parseConfig(self.listener(endpoint="haproxy:tcp:0",
                                           trusted_proxies=["10.0.0.5", "10.1.0.0/16", "2001:db8::/32"]), "/x/g.toml")
        self.assertEqual(config.listeners[0].trusted_proxies, ("10.0.0.5", "10.1.0.0/16", "2001:db8::/32"))
        self.assertEqual(parseConfig(document(), "/x/g.toml").listeners[0].trusted_proxies, ())

    def test_badEntries(self):
        """
        An entry that is not an address or a network, a network written
        with host bits (10.0.0.5/8: a typo for /32?), and an empty list are
        errors.
        """
        for bad in (["haproxy.example"], ["10.0.0.5/8"], ["10.0.0.0/33"], [], [5]):
            ConfigTests.assertConfigError(self, self.listener(endpoint="haproxy:tcp:0", trusted_proxies=bad),
                                          "key 'trusted_proxies'")

    def test_onlyWithHAProxy(self):
        """
        trusted_proxies on a listener that reads no PROXY header is an error
        (it would promise what it does not do).
        """
        ConfigTests.assertConfigError(self, self.listener(trusted_proxies=["10.0.0.5"]), "key 'trusted_proxies'",
                                      "haproxy:")


class PermissionRegexTests(SynchronousTestCase):
    """
    Issue 16 finding 9c: [[permissions]] regexes are checked at start-up
    as the gateway will run them (PCRE-like syntax, UTF-8 bytes).
    """

    def permissions(self, **keys):
        return document(promotion={"mode": "token"}, broker_auth={"endpoint": "tcp:0"},
                        listeners=[{"name": "web", "protocol": "websocket", "endpoint": "tcp:0"}],
                        user_auth="internal", permissions=[dict({"group": "G"}, **keys)])

    def test_pcreSyntaxAccepted(self):
        """
        PCRE's C{\\z} and POSIX classes, which RabbitMQ accepts, load.
        """
        config = parseConfig(self.permissions(read=r"^[[:alnum:]_.]+\z"), "/x/g.toml")
        self.assertEqual(config.permissions[0].read, r"^[[:alnum:]_.]+\z")

    def test_invalidRegex(self):
        ConfigTests.assertConfigError(self, self.permissions(write="(unclosed"), "key 'write'",
                                      "not a valid regular expression")
