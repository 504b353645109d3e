"""
S2: the reader of systemd unit files the unit tests rely on (drop-ins,
continuation lines, quoting).
"""


from twisted.trial.unittest import SynchronousTestCase

from tests.processes import execStart


class UnitParserTests(SynchronousTestCase):
    """
    The little unit-file reader the tests rely on.
    """

    def write(self, text):
        path = self.mktemp()
        with open(path, "w") as stream:
            stream.write(text)
        return path

    def test_continuationAndComments(self):
        path = self.write("[Service]\n# ExecStart=/bin/false\nExecStart=/bin/echo \\\n  one two\n")
        self.assertEqual(execStart([path]), ["/bin/echo", "one", "two"])

    def test_dropInResets(self):
        unit = self.write("[Service]\nExecStart=/bin/echo unit\n")
        dropIn = self.write("[Service]\nExecStart=\nExecStart=/bin/echo drop-in\n")
        self.assertEqual(execStart([unit, dropIn]), ["/bin/echo", "drop-in"])
