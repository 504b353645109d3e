"""
The C{kaazing-promo} command's help reads as plain text: no epytext markup,
and every argument of every subcommand says what it is for.
"""

import argparse
import io
import re
from contextlib import redirect_stdout

from twisted.trial.unittest import SynchronousTestCase

from kaazing_promo import cli

#: Epytext inline markup: C{…}, L{…}, I{…}, B{…}, U{…}.
EPYTEXT = re.compile(r"\b[CLIBU]\{")


def helpText(argv):
    """
    @return: what C{kaazing-promo ARGV --help} prints.
    """
    out = io.StringIO()
    with redirect_stdout(out):
        try:
            cli.main([*argv, "--help"])
        except SystemExit as e:
            if e.code != 0:
                raise
    return out.getvalue()


def subcommands():
    """
    @return: C{{name: parser}} of the command's subcommands.
    """
    [choices] = [action.choices for action in cli.makeParser()._actions
                 if isinstance(action, argparse._SubParsersAction)]
    return choices


class HelpTests(SynchronousTestCase):

    def test_noEpytextMarkup(self):
        """
        S1: C{kaazing-promo --help} and each subcommand's help hold no
        epytext markup such as C{C{kaazing-promo}}.
        """
        self.assertIn("check-config", helpText([]))
        for name in subcommands():
            text = helpText([name])
            self.assertIn(f"kaazing-promo {name}", text)
            self.assertIsNone(EPYTEXT.search(helpText([]) + text), name)

    def test_everyArgumentDescribed(self):
        """
        S1: every argument of every subcommand (positional or option) has a
        help text, so that C{provision --help} says what C{--instance} is.
        """
        undescribed = []
        for name, parser in subcommands().items():
            for action in parser._actions:
                if isinstance(action, argparse._HelpAction):
                    continue
                if not (action.help or "").strip():
                    undescribed.append(f"{name} {'/'.join(action.option_strings) or action.dest}")
        self.assertEqual(undescribed, [])
