"""
S4 / issue 17: every implementation provides the interface its callers ask
for (interfaces.py), checked with verifyObject, so that a contract nobody
declared cannot creep back as a getattr probe.
"""

import os

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from kaazing_promo.auth.delegated import DelegatedChecker
from kaazing_promo.auth.internal import InternalChecker
from kaazing_promo.config import Promotion
from kaazing_promo.interfaces import IIdentityPromoter, IReloadableUsers, IRevalidating, ITokenPromoter
from kaazing_promo.promotion import (
    ConsolidatedPromoter, IdentityPromoter, MappingPromoter, PassthroughPromoter, makePromoter)
from kaazing_promo.secrets import SecretStore
from tests.authfixtures import standardUsers, writeUsersCnf


class SeamTests(SynchronousTestCase):

    def test_S4_checkers(self):
        directory = self.mktemp()
        os.makedirs(directory)
        checker = InternalChecker(writeUsersCnf(os.path.join(directory, "users.cnf"), *standardUsers()),
                                  reactor=Clock())
        checker.load()
        self.assertTrue(verifyObject(IReloadableUsers, checker))
        delegated = DelegatedChecker(url="https://apigw.example.com", httpClient=object(), clock=Clock())
        self.assertTrue(verifyObject(IRevalidating, delegated))

    def test_S4_promoters(self):
        secrets = SecretStore(inline={"webuser": "pw", "smithj": "pw"})
        secrets.load()
        settings = Promotion(mode="mapping", user="webuser", map={"joe.smith": "smithj"})
        for promoterClass in (ConsolidatedPromoter, IdentityPromoter, MappingPromoter, PassthroughPromoter):
            promoter = promoterClass(settings, secrets)
            self.assertTrue(verifyObject(IIdentityPromoter, promoter), promoterClass)
            self.assertIsInstance(promoter.knownBrokerUsers(), frozenset)
        token = makePromoter(Promotion(mode="token"), secrets)
        self.assertTrue(verifyObject(ITokenPromoter, token))

    def test_S4_reconfigureSaysWhetherItApplies(self):
        """
        A reload tells the operator when [promotion.map] changed for a mode
        that does not use it: the promoter says so.
        """
        secrets = SecretStore(inline={"webuser": "pw", "smithj": "pw"})
        secrets.load()
        changed = Promotion(mode="mapping", user="webuser", map={"alice": "smithj"})
        self.assertTrue(MappingPromoter(Promotion(mode="mapping", map={"joe.smith": "smithj"}), secrets)
                        .reconfigure(changed))
        self.assertFalse(ConsolidatedPromoter(Promotion(user="webuser"), secrets).reconfigure(changed))


class NarrowHandlesTests(SynchronousTestCase):
    """
    Issue 17 #3: the operations parts take the handles they use, never the
    whole gateway (which they used to reach into and, on reload, rewrite).
    """

    def test_noGatewayParameter(self):
        import inspect

        from kaazing_promo.ops import admin, checkconfig, reload
        for function in (reload.ReloadService.__init__, admin.Readiness.__init__, admin.AdminService.__init__,
                         admin.buildAdminService, checkconfig.findings):
            parameters = inspect.signature(function).parameters
            self.assertNotIn("gateway", parameters, function.__qualname__)

    def test_opsModulesDoNotImportTheTap(self):
        """
        Only check-config's entry point builds a gateway (to validate exactly
        as start-up does); no operations module imports the tap at its top.
        """
        import ast

        from kaazing_promo.ops import admin, checkconfig, metrics, reload
        for module in (admin, checkconfig, metrics, reload):
            with open(module.__file__) as f:
                tree = ast.parse(f.read())
            topLevel = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
            names = [node.module for node in topLevel if isinstance(node, ast.ImportFrom)]
            self.assertNotIn("kaazing_promo.tap", names, module.__name__)
