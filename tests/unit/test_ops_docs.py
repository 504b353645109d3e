"""
S2/X4: the README's configuration table documents every key the schema in
L{kaazing_promo.config} accepts.  The keys are derived from the attrs
classes there, so a new key (or a new section) fails this test until the
README says what it does.
"""

import inspect
import os
import re

import attr
from twisted.trial.unittest import SynchronousTestCase

from kaazing_promo import config

from tests import ROOT


#: How the keys of each attrs class are written in the table.
SECTIONS = {
    "Config": "",
    "Broker": "[broker]",
    "Listener": "[[listeners]]",
    "Internal": "[internal]",
    "Delegated": "[delegated]",
    "Promotion": "[promotion]",
    "Admin": "[admin]",
    "BrokerAuth": "[broker_auth]",
    "Permission": "[[permissions]]",
    "Cluster": "[cluster]",
}

#: Fields that are not keys of the file.
NOT_KEYS = {("Config", "path")}

#: Fields the file writes as tables of their own.
TABLES = {("Promotion", "map"): "[promotion.map]", ("Promotion", "inline_secrets"): "[promotion.secrets]"}


def schemaClasses():
    """
    @return: C{{name: class}} of the attrs classes defined in config.py.
    """
    return {name: cls for name, cls in inspect.getmembers(config, inspect.isclass)
            if attr.has(cls) and cls.__module__ == config.__name__}


def schemaKeys():
    """
    @return: every key as the table writes it, e.g. C{user_auth},
        C{[broker] endpoint}, C{[promotion.map]}.
    """
    sectionFields = {section.strip("[]") for section in SECTIONS.values() if section}
    keys = set()
    for name, cls in schemaClasses().items():
        for field in attr.fields(cls):
            if (name, field.name) in NOT_KEYS:
                continue
            if name == "Config" and field.name in sectionFields:
                continue
            if (name, field.name) in TABLES:
                keys.add(TABLES[(name, field.name)])
            elif SECTIONS[name]:
                keys.add(f"{SECTIONS[name]} {field.name}")
            else:
                keys.add(field.name)
    return keys


def documentedKeys():
    """
    @return: the first cell (between backquotes) of every row of the
        README's configuration table.
    """
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as stream:
        text = stream.read()
    section = re.search(r"^## Configuration\n(.*?)(?=^## )", text, re.M | re.S)
    return set(re.findall(r"^\| `([^`]+)` \|", section.group(1), re.M)) if section else set()


def documentedDefaults():
    """
    @return: C{{key: default cell}} of the rows whose default column is one
        backquoted TOML value (other cells say things in words: required,
        same origin, U3 lookup...).
    """
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as stream:
        text = stream.read()
    section = re.search(r"^## Configuration\n(.*?)(?=^## )", text, re.M | re.S)
    return dict(re.findall(r"^\| `([^`]+)` \| `([^`]+)` \|", section.group(1), re.M))


def schemaDefault(key):
    """
    @return: the schema's default of a table key such as
        C{[[listeners]] handshake_timeout}, or C{attr.NOTHING}.
    """
    section, _, name = key.rpartition(" ")
    names = {value: cls for cls, value in SECTIONS.items()}
    cls = schemaClasses()[names.get(section, "Config")]
    field = getattr(attr.fields(cls), name, None)
    if field is None or isinstance(field.default, attr.Factory):
        return attr.NOTHING
    return field.default


class ConfigurationReferenceTests(SynchronousTestCase):

    def test_S2_defaultsAsDocumented(self):
        """
        Issue 17: a default is written once, in the schema (config.py's attrs
        classes, which the parser reads too); the README's table shows that
        value.
        """
        from kaazing_promo.tomlwriter import tomlValue
        defaults = documentedDefaults()
        self.assertGreater(len(defaults), 20)
        wrong = {}
        for key, cell in defaults.items():
            value = schemaDefault(key)
            if value is attr.NOTHING or value is None:
                wrong[key] = (cell, "no default in the schema")
            elif tomlValue(value) != cell:
                wrong[key] = (cell, tomlValue(value))
        self.assertEqual(wrong, {})

    def test_S2_parserUsesTheSchemaDefaults(self):
        """
        Issue 17: a file that sets nothing gets the schema's defaults.
        """
        parsed = config.parseConfig({"listeners": [{"name": "a", "protocol": "websocket", "endpoint": "tcp:0",
                                                    "auth": "none"}],
                                     "promotion": {"user": "guest", "secrets": {"guest": "guest"}}},
                                    "/etc/kp/gateway.toml")
        given = {(config.Listener, "auth"), (config.Promotion, "user"), (config.Promotion, "inline_secrets")}
        for cls, value in ((config.Listener, parsed.listeners[0]), (config.Delegated, parsed.delegated),
                           (config.Internal, parsed.internal), (config.Promotion, parsed.promotion)):
            for field in attr.fields(cls):
                if field.default is not attr.NOTHING and not isinstance(field.default, attr.Factory):
                    if (cls, field.name) in given:
                        continue
                    self.assertEqual(getattr(value, field.name), field.default, (cls.__name__, field.name))


    def test_S2_everySchemaClassHasASection(self):
        """
        S2: each attrs class of the schema says how its keys are written (a
        new section must be added to SECTIONS, and so to the README).
        """
        self.assertEqual(sorted(set(schemaClasses()) - set(SECTIONS)), [])

    def test_S2_everyKeyDocumented(self):
        """
        S2: every key of the schema has a row in README's configuration table.
        """
        missing = sorted(schemaKeys() - documentedKeys())
        self.assertEqual(missing, [], "keys missing from README.md's configuration table: "
                                      + ", ".join(missing))

    def test_S2_noDocumentedKeyIsUnknown(self):
        """
        S2: the table documents no key the schema does not have (a renamed
        or removed key leaves no stale row).
        """
        self.assertEqual(sorted(documentedKeys() - schemaKeys()), [])

    def test_S2_derivationSeesKnownKeys(self):
        """
        The derivation itself: a few keys it must find.
        """
        keys = schemaKeys()
        for key in ("user_auth", "[broker] endpoint", "[[listeners]] handshake_timeout",
                    "[promotion.map]", "[promotion.secrets]", "[admin] endpoint"):
            self.assertIn(key, keys)
        self.assertNotIn("path", keys)
        self.assertNotIn("broker", keys)
