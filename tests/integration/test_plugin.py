"""
The twistd plugin as a user meets it: installed, documented, and failing
with one clear line on a bad configuration (twistd and Python run in
subprocesses, outside the checkout).
"""

import os
import subprocess
import sys
import tempfile

from twisted.trial.unittest import SynchronousTestCase

from kaazing_promo import tap

from tests import ROOT

BIN = os.path.dirname(sys.executable)


def runOutsideCheckout(args, **kwargs):
    """
    Run a command from a directory outside the checkout, so that what is
    found is the installed package, not the source tree.
    """
    with tempfile.TemporaryDirectory() as cwd:
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=60, **kwargs)


class PluginTests(SynchronousTestCase):

    def test_S1_pluginFoundInInstalledPackage(self):
        """
        S1: getPlugins(IServiceMaker) finds kaazing-promo from the installed
        package (an editable flat-layout install would hide it).
        """
        result = runOutsideCheckout([sys.executable, "-c", (
            "from twisted.plugin import getPlugins\n"
            "from twisted.application.service import IServiceMaker\n"
            "import kaazing_promo\n"
            "[m] = [m for m in getPlugins(IServiceMaker) if m.tapname == 'kaazing-promo']\n"
            "print(m.module, kaazing_promo.__file__)\n")])
        self.assertEqual(result.returncode, 0, result.stderr)
        module, packageFile = result.stdout.split()
        self.assertEqual(module, "kaazing_promo.tap")
        # The installed copy, wherever the venv is (./dev keeps it in the
        # checkout's .venv), never the source tree's kaazing_promo/.
        self.assertNotEqual(os.path.dirname(os.path.abspath(packageFile)), os.path.join(ROOT, "kaazing_promo"))
        self.assertIn("site-packages", packageFile)

    def test_S1_helpDocumentsEveryOption(self):
        """
        S1: `twistd kaazing-promo --help` documents every option.
        """
        result = runOutsideCheckout([os.path.join(BIN, "twistd"), "kaazing-promo", "--help"])
        self.assertEqual(result.returncode, 0, result.stderr)
        for option in tap.Options.optParameters:
            self.assertIn("--" + option[0], result.stdout)
            self.assertIn(option[3].split()[0], result.stdout)

    def test_badConfigOneLine(self):
        """
        A bad configuration: one line naming file and key, exit non-zero, no traceback.
        """
        with tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False) as f:
            f.write('user_auth = "off"\n[[listeners]]\nname = "x"\nprotocol = "amqp"\n'
                    'endpoint = "tcp:0"\nauth = "required"\n')
        self.addCleanup(os.unlink, f.name)
        result = runOutsideCheckout([os.path.join(BIN, "twistd"), "-n", "--pidfile=", "kaazing-promo",
                                     "--config", f.name])
        self.assertNotEqual(result.returncode, 0)
        output = result.stdout + result.stderr
        self.assertNotIn("Traceback", output)
        [line] = [l for l in output.splitlines() if "kaazing-promo:" in l]
        self.assertIn(f.name, line)
        self.assertIn("'x'", line)
