"""
Every shell block of the README says whether the README test runs it
(tests/integration/test_readme.py runs them).
"""

from twisted.trial.unittest import SynchronousTestCase

from tests.readmeblocks import README, readmeBlocks


class ReadmeMarkersTests(SynchronousTestCase):

    def test_everyBlockMarked(self):
        """
        Every shell block of the four sections says whether it is run
        (skips say why), and the runnable ones are there: the AMQP client,
        the ticket, the tools, the broker's view.
        """
        with open(README, encoding="utf-8") as f:
            blocks = readmeBlocks(f.read())
        self.assertEqual({block.section.split(",")[0] for block in blocks}, {
            "Quick start", "Running it", "Promotion modes", "Operations"})
        run = [block for block in blocks if block.run]
        self.assertGreaterEqual(len(run), 4)
        self.assertTrue(all(block.output for block in run))

    def test_unmarkedBlockRefused(self):
        """
        A new block without a marker fails, naming its line.
        """
        error = self.assertRaises(ValueError, readmeBlocks, "## Running it\n\nText.\n\n```sh\nls\n```\n")
        self.assertIn("line 6", str(error))
        blocks = readmeBlocks("## How it works\n\n```sh\nls\n```\n## Quick start\n"
                              "<!-- readme-test: run; client: c1; output: ^x$ -->\n```sh\necho x\n```\n")
        self.assertEqual([(b.run, b.client, b.output, b.text) for b in blocks], [(True, "c1", "^x$", "echo x\n")])
