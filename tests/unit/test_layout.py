"""
Issue 17: the layout's import rules, lazy imports included.  The session
speaks AMQP only (no realm, operations or transport code), the transports
never reach into the realms (nor the realms into the transports), and the
worker pool never imports the composition root.  In tests/, no module
imports a test module: what tests share lives in the support modules.
"""

import ast
import os
import re

from twisted.trial.unittest import SynchronousTestCase

import kaazing_promo
from tests import ROOT

#: (importing part, imported part) pairs that must not occur.
FORBIDDEN = {("transport", "auth"), ("auth", "transport"), ("amqp", "auth"), ("amqp", "ops"),
             ("amqp", "transport"), ("workers", "tap")}
PACKAGE = os.path.dirname(kaazing_promo.__file__)
TESTS = os.path.join(ROOT, "tests")
#: A test module: tests.test_*, tests.unit.test_*, tests.integration.test_*.
TEST_MODULE = re.compile(r"tests(\.(unit|integration))?\.test_\w+")


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


def importedModules(source):
    """
    @return: C{(line, module)} for every module C{source} imports, lazy
        imports included (C{from tests.unit import test_x} counts as
        C{tests.unit.test_x}).
    """
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            yield node.lineno, node.module
            for alias in node.names:
                yield node.lineno, f"{node.module}.{alias.name}"


def testModuleImports(directory=TESTS):
    """
    @return: every import of a test module by a module under C{directory}.
    """
    found = []
    for here, _, files in os.walk(directory):
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(here, name)
                with open(path, encoding="utf-8") as f:
                    source = f.read()
                for line, module in importedModules(source):
                    if TEST_MODULE.fullmatch(module):
                        found.append(f"{os.path.relpath(path, ROOT)}:{line} imports {module}")
    return found


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


class TestModuleImportTests(SynchronousTestCase):
    """
    Issue 17 #6: test modules do not import each other; fakes and helpers
    they share live in the support modules of tests/.
    """

    def test_noTestModuleImportsATestModule(self):
        self.assertEqual(testModuleImports(), [])

    def test_ruleCanFail(self):
        """
        Each spelling of an import of a test module is seen, lazy ones too;
        support modules are not test modules.
        """
        directory = self.mktemp()
        os.makedirs(os.path.join(directory, "unit"))
        with open(os.path.join(directory, "unit", "test_a.py"), "w") as f:
            f.write("from tests.test_session import FakeClient\n"
                    "import tests.integration.test_memory\n"
                    "from tests.unit import test_ops\n"
                    "from tests.fakes import FakeClient\n"
                    "from tests import support\n"
                    "def f():\n"
                    "    from tests.unit.test_delegated import creds\n")
        self.assertEqual([entry.split(" imports ")[1] for entry in testModuleImports(directory)],
                         ["tests.test_session", "tests.integration.test_memory", "tests.unit.test_ops",
                          "tests.unit.test_delegated"])
