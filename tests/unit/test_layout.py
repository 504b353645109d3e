"""
Issue 17: the layout's import rules, lazy imports included.  The session
speaks AMQP only (no realm, operations or transport code), the transports
never reach into the realms (nor the realms into the transports), and the
worker pool never imports the composition root.
"""

import ast
import os

from twisted.trial.unittest import SynchronousTestCase

import kaazing_promo

#: (importing part, imported part) pairs that must not occur.
FORBIDDEN = {("transport", "auth"), ("auth", "transport"), ("amqp", "auth"), ("amqp", "ops"),
             ("amqp", "transport"), ("workers", "tap")}
PACKAGE = os.path.dirname(kaazing_promo.__file__)


def part(module):
    bits = module.split(".")
    return bits[1] if len(bits) > 1 and bits[0] == "kaazing_promo" else ""


def brokenRules():
    broken = []
    for directory, _, files in os.walk(PACKAGE):
        for name in files:
            if not name.endswith(".py"):
                continue
            path = os.path.join(directory, name)
            relative = os.path.relpath(path, os.path.dirname(PACKAGE))
            me = relative[:-3].replace(os.sep, ".").removesuffix(".__init__")
            with open(path, encoding="utf-8") as f:
                tree = ast.parse(f.read())
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    imported = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and not node.level:
                    imported = [node.module or ""]
                else:
                    continue
                for module in imported:
                    if (part(me), part(module)) in FORBIDDEN:
                        broken.append(f"{relative}:{node.lineno} imports {module}")
    return broken


class ImportRuleTests(SynchronousTestCase):

    def test_importRules(self):
        self.assertEqual(brokenRules(), [])

    def test_ruleCanFail(self):
        """
        The check sees a forbidden import (the part of a module is its first
        package below kaazing_promo).
        """
        self.assertEqual((part("kaazing_promo.amqp.session"), part("kaazing_promo.ops.audit")), ("amqp", "ops"))
        self.assertIn(("amqp", "ops"), FORBIDDEN)
