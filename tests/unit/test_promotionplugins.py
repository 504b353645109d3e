"""
S4 / issue 17: a promotion mode is a plugin.  A third-party
L{IPromoterFactory} dropped into a C{kaazing_promo/plugins} directory is
selected by its name in C{[promotion] mode}, with no edit to the gateway.
"""

import os
import textwrap

from twisted.trial.unittest import SynchronousTestCase

from kaazing_promo import plugins
from kaazing_promo.auth.avatar import GatewayUser
from kaazing_promo.config import parseConfig
from kaazing_promo.errors import ConfigError
from kaazing_promo.promotion import makePromoter, promoterFactories
from kaazing_promo.secrets import SecretStore

PLUGIN = textwrap.dedent('''
    from kaazing_promo.promotion import ConsolidatedPromoter, PromoterFactory


    class ShoutingPromoter(ConsolidatedPromoter):
        def brokerUser(self, avatar):
            return avatar.user.upper()


    shouting = PromoterFactory("shouting", ShoutingPromoter, required={"vhost": "is required by shouting"})
''')


def document(**promotion):
    return {
        "user_auth": "internal",
        "internal": {"users_cnf": "/dev/null"},
        "listeners": [{"name": "amqp", "protocol": "amqp", "endpoint": "tcp:0"}],
        "promotion": dict({"secrets": {"JOE": "pw"}}, **promotion),
    }


class ThirdPartyModeTests(SynchronousTestCase):

    def setUp(self):
        directory = os.path.join(self.mktemp(), "kaazing_promo", "plugins")
        os.makedirs(directory)
        with open(os.path.join(directory, "shouting_promoter.py"), "w") as f:
            f.write(PLUGIN)
        self.patch(plugins, "__path__", list(plugins.__path__) + [directory])

    def test_S4_selectedByName(self):
        self.assertIn("shouting", promoterFactories())
        config = parseConfig(document(mode="shouting", vhost="/"), "/etc/kp/gateway.toml")
        secrets = SecretStore(inline={"JOE": "pw"})
        secrets.load()
        promoter = makePromoter(config.promotion, secrets)
        self.assertEqual(promoter.authorize(GatewayUser("joe")), "JOE")

    def test_S4_itsOwnRules(self):
        """
        The plugin's own required keys are checked at start-up, with the file and key named.
        """
        error = self.assertRaises(ConfigError, parseConfig, document(mode="shouting"), "/etc/kp/gateway.toml")
        self.assertIn("vhost", str(error))
        self.assertIn("is required by shouting", str(error))


class UnknownModeTests(SynchronousTestCase):

    def test_S4_unknownModeListsThePlugins(self):
        error = self.assertRaises(ConfigError, parseConfig, document(mode="nonesuch"), "/etc/kp/gateway.toml")
        for mode in ("consolidated", "identity", "mapping", "passthrough", "token"):
            self.assertIn(mode, str(error))
