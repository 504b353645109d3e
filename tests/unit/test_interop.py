"""
S5: interop/run, the harness that runs real clients' own test suites
directly and through the gateway (issue 21).  The harness itself needs the
suites, a node and minutes; these tests check, in memory, the parts that
decide what its report says: reading each runner's JUnit XML, comparing a
gateway path with the direct run, the list of expected differences, and
the preloads that point a suite at the gateway.
"""

import importlib.util
import os
import shutil
import socket

from twisted.internet import defer, protocol, reactor, utils
from twisted.trial.unittest import SynchronousTestCase, TestCase

from interop import report

from tests import ROOT
SHIMS = os.path.join(ROOT, "interop", "shims")


def loadPythonShim():
    """
    The Python preload (interop/shims/python/sitecustomize.py) as a module
    of its own name: importing it as C{sitecustomize} would shadow the
    interpreter's.  Without C{INTEROP_REDIRECT} in the environment it
    changes nothing on import.
    """
    spec = importlib.util.spec_from_file_location(
        "interop_sitecustomize", os.path.join(SHIMS, "python", "sitecustomize.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


VITEST = b"""<?xml version="1.0" encoding="UTF-8" ?>
<testsuites name="vitest tests" tests="4" failures="1" errors="0" time="1.0">
  <testsuite name="test/test.ts" tests="4" failures="1" skipped="1">
    <testcase classname="test/test.ts" name="can publish" time="0.1"></testcase>
    <testcase classname="test/test.ts" name="queue &gt; can purge" time="0.1">
      <failure message="expected 0 to be 1" type="AssertionError">AssertionError: expected 0 to be 1
 at test/test.ts:10</failure>
    </testcase>
    <testcase classname="test/test.ts" name="can change flow" time="0"><skipped/></testcase>
    <testcase classname="test/test.ts" name="can publish" time="0.1"></testcase>
  </testsuite>
</testsuites>
"""

PYTEST = b"""<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="1" failures="0" skipped="1" tests="3">
  <testcase classname="tests.acceptance.blocking_adapter_test.TestUpdateSecret" name="test" time="0.1"/>
  <testcase classname="tests.acceptance.async_adapter_tests.TestZ" name="test_with_gevent" time="0.1">
    <error message="failed on setup with &quot;ConnectionRefusedError&quot;">trace</error>
  </testcase>
  <testcase classname="tests.acceptance.async_adapter_tests.TestZ" name="test_with_tornado" time="0">
    <skipped type="pytest.skip" message="tornado missing">skip</skipped>
  </testcase>
</testsuite></testsuites>
"""


class ParseJUnitTests(SynchronousTestCase):
    """
    Each runner's JUnit XML becomes one outcome per test id.
    """

    def test_file(self):
        """
        vitest (and node --test through the harness's reporter): the file
        and the test's full name; a failure's message; a skipped test; a
        name seen twice is told apart.
        """
        results = report.parseJUnit(VITEST, "file")
        self.assertEqual(list(results), ["test/test.ts > can publish", "test/test.ts > queue > can purge",
                                         "test/test.ts > can change flow", "test/test.ts > can publish [2]"])
        self.assertEqual(results["test/test.ts > queue > can purge"],
                         report.TestResult(report.FAIL, "expected 0 to be 1"))
        self.assertEqual(results["test/test.ts > can change flow"].outcome, report.SKIP)
        self.assertEqual(results["test/test.ts > can publish"], report.TestResult(report.PASS))

    def test_pytest(self):
        """
        pytest: module.class::test; an error counts as a failure.
        """
        results = report.parseJUnit(PYTEST, "pytest")
        self.assertEqual(results["tests.acceptance.blocking_adapter_test.TestUpdateSecret::test"].outcome,
                         report.PASS)
        self.assertEqual(results["tests.acceptance.async_adapter_tests.TestZ::test_with_gevent"],
                         report.TestResult(report.FAIL, 'failed on setup with "ConnectionRefusedError"'))
        self.assertEqual(results["tests.acceptance.async_adapter_tests.TestZ::test_with_tornado"],
                         report.TestResult(report.SKIP, "tornado missing"))

    def test_traceback(self):
        """
        A failure whose message is a traceback's first line is told by the
        traceback's last line (pika's threaded tests).
        """
        xml = (b'<testsuites><testsuite name="pytest"><testcase classname="t.T" name="test">'
               b'<failure message="AssertionError: Traceback (most recent call last):">Traceback\n'
               b'  File "x.py", line 1\nE   ConnectionClosedByBroker: (403, \'ACCESS_REFUSED\')\n\n</failure>'
               b'</testcase></testsuite></testsuites>')
        self.assertEqual(report.parseJUnit(xml, "pytest")["t.T::test"],
                         report.TestResult(report.FAIL, "ConnectionClosedByBroker: (403, 'ACCESS_REFUSED')"))

    def test_bareTestsuite(self):
        """
        A file whose root is one C{<testsuite>} reads the same.
        """
        bare = PYTEST.replace(b"<testsuites>", b"").replace(b"</testsuites>", b"")
        self.assertEqual(report.parseJUnit(bare, "pytest"), report.parseJUnit(PYTEST, "pytest"))

    def test_notXML(self):
        """
        A truncated file (a runner killed while writing) is a clear error.
        """
        self.assertRaises(report.ResultsError, report.parseJUnit, VITEST[:200], "file")


class CompareTests(SynchronousTestCase):
    """
    A gateway path against the direct run.
    """

    def test_sameOutcomes(self):
        """
        The same outcomes, failures included, are no difference.
        """
        direct = {"a": report.TestResult(report.PASS), "b": report.TestResult(report.FAIL, "no internet")}
        gateway = {"a": report.TestResult(report.PASS), "b": report.TestResult(report.FAIL, "other text")}
        self.assertEqual(report.compare(direct, gateway), [])

    def test_differences(self):
        """
        A test that fails only through the gateway carries the gateway's
        message; one missing on a side did not run there.
        """
        direct = {"a": report.TestResult(report.PASS), "b": report.TestResult(report.PASS)}
        gateway = {"a": report.TestResult(report.FAIL, "Close 505"), "c": report.TestResult(report.PASS)}
        self.assertEqual(report.compare(direct, gateway), [
            report.Difference("a", report.PASS, report.FAIL, "Close 505"),
            report.Difference("b", report.PASS, report.NOT_RUN),
            report.Difference("c", report.NOT_RUN, report.PASS),
        ])


EXPECTED = """
[[difference]]
suite = "pika"
paths = ["consolidated", "passthrough"]
test = "tests.acceptance.*TestBadCredentials*"
direct = "pass"
gateway = ["fail"]
why = '''The client's credentials are replaced:
   a bad password logs in.'''
"""


class ExpectedListTests(SynchronousTestCase):
    """
    interop/expected.toml: the documented differences.
    """

    def test_shippedListParses(self):
        """
        The list in the repository is well formed.
        """
        with open(os.path.join(ROOT, "interop", "expected.toml")) as f:
            entries = report.parseExpected(f.read())
        for entry in entries:
            self.assertTrue(entry.why)

    def test_entryCoversItsDifference(self):
        """
        An entry covers the suite, paths, test pattern and outcomes it
        names, and nothing else.
        """
        [entry] = report.parseExpected(EXPECTED)
        self.assertEqual(entry.why, "The client's credentials are replaced: a bad password logs in.")
        hit = report.Difference("tests.acceptance.blocking_adapter_test.TestBadCredentials::test",
                                report.PASS, report.FAIL)
        self.assertIs(report.explain([entry], "pika", "passthrough", hit), entry)
        self.assertIsNone(report.explain([entry], "pika", "login", hit))
        self.assertIsNone(report.explain([entry], "amqplib", "passthrough", hit))
        otherOutcome = report.Difference(hit.test, report.PASS, report.NOT_RUN)
        self.assertIsNone(report.explain([entry], "pika", "passthrough", otherOutcome))
        otherTest = report.Difference("tests.acceptance.blocking_adapter_test.TestPublish::test",
                                      report.PASS, report.FAIL)
        self.assertIsNone(report.explain([entry], "pika", "passthrough", otherTest))

    def test_malformed(self):
        """
        An unknown key, a missing explanation or an unknown outcome is an
        error that names the entry.
        """
        cases = [
            (EXPECTED.replace("why =", "because ="), "#1: unknown key(s) because"),
            (EXPECTED.replace('gateway = ["fail"]', 'gateway = ["broken"]'), "#1: key 'gateway'"),
            ("[[difference]]\nsuite = 'pika'\ntest = 'x'\nwhy = 'y'\n", "#1: key 'paths'"),
            ("[[difference]]\nsuite = 'pika'\npaths = ['login']\ntest = 'x'\n", "#1: key 'why'"),
            ("[differences]\n", "unknown key(s) differences"),
            ("[[difference]\n", "not valid TOML"),
        ]
        for text, message in cases:
            e = self.assertRaises(report.ExpectedListError, report.parseExpected, text)
            self.assertIn(message, str(e))


class RenderTests(SynchronousTestCase):
    """
    The Markdown report lists every difference, explained or UNEXPECTED.
    """

    def test_report(self):
        [entry] = report.parseExpected(EXPECTED)
        bad = "tests.acceptance.blocking_adapter_test.TestBadCredentials::test"
        runs = [
            report.Run("pika", "direct", "ok", {bad: report.TestResult(report.PASS),
                                                "t.Other::test": report.TestResult(report.PASS)}),
            report.Run("pika", "consolidated", "ok", {bad: report.TestResult(report.FAIL, "logged in"),
                                                      "t.Other::test": report.TestResult(report.FAIL, "a|b")}),
            report.Run("pika", "passthrough", "ok", {bad: report.TestResult(report.PASS),
                                                     "t.Other::test": report.TestResult(report.PASS)}),
        ]
        text = report.render(runs, [entry], [("when", "now")])
        self.assertIn("| pika | consolidated | 0 | 2 | 0 | 0 | 1 expected, 1 unexpected |", text)
        self.assertIn("| pika | passthrough | 2 | 0 | 0 | 0 | identical |", text)
        self.assertIn(f"| {bad} | pass | fail | expected (1) |", text)
        self.assertIn(f"\n1. {entry.why}\n", text)
        self.assertIn("| t.Other::test | pass | fail | UNEXPECTED: a\\|b |", text)

    def test_unusedEntries(self):
        """
        An entry for a suite and path that ran but showed no such
        difference is listed as a candidate to remove.
        """
        [entry] = report.parseExpected(EXPECTED)
        runs = [report.Run("pika", "direct", "ok", {}), report.Run("pika", "consolidated", "ok", {})]
        text = report.render(runs, [entry], [])
        self.assertIn("## Expected differences not seen in this run", text)
        self.assertNotIn("## Expected differences not seen", report.render(runs[:1], [entry], []))


class PythonShimTests(SynchronousTestCase):
    """
    The Python preload rewrites loopback connections to the redirected
    ports, and nothing else.
    """

    def setUp(self):
        self.shim = loadPythonShim()
        self.redirects = self.shim._parseRedirects("5672=41000, 5671=41001")

    def test_parse(self):
        self.assertEqual(self.redirects, {5672: 41000, 5671: 41001})
        self.assertEqual(self.shim._parseRedirects(""), {})

    def test_loopback(self):
        """
        localhost, 127.0.0.1 and ::1 on a redirected port go to 127.0.0.1
        on its target (an IPv6 socket through the v4-mapped address).
        """
        redirect = self.shim.redirectedAddress
        self.assertEqual(redirect(socket.AF_INET, ("127.0.0.1", 5672), self.redirects), ("127.0.0.1", 41000))
        self.assertEqual(redirect(socket.AF_INET, ("localhost", 5671), self.redirects), ("127.0.0.1", 41001))
        self.assertEqual(redirect(socket.AF_INET6, ("::1", 5672, 0, 0), self.redirects),
                         ("::ffff:127.0.0.1", 41000, 0, 0))

    def test_othersUntouched(self):
        """
        Another host, another port or a Unix socket is left as it is.
        """
        redirect = self.shim.redirectedAddress
        for family, address in [(socket.AF_INET, ("10.0.0.1", 5672)), (socket.AF_INET, ("127.0.0.1", 5673)),
                                (socket.AF_UNIX, "/run/x.sock")]:
            self.assertIs(redirect(family, address, self.redirects), address)


class _Answer(protocol.Protocol):
    def connectionMade(self):
        self.transport.write(b"redirected")
        self.transport.loseConnection()


class NodeShimTests(TestCase):
    """
    The Node preload (NODE_OPTIONS --require) sends a suite's
    C{amqp://localhost}, C{127.0.0.1} and C{[::1]} connections on port
    5672 to the target port.
    """

    if shutil.which("node") is None:
        skip = "node is not installed"

    @defer.inlineCallbacks
    def test_redirects(self):
        port = reactor.listenTCP(0, protocol.Factory.forProtocol(_Answer), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        script = (
            "const net = require('net');"
            "for (const host of ['localhost', '127.0.0.1', '::1']) {"
            "  const s = net.connect({host, port: 5672});"
            "  s.on('data', (d) => console.log(host, String(d)));"
            "  s.on('error', (e) => console.log(host, e.code));"
            "}")
        env = {"PATH": os.environ.get("PATH", ""), "INTEROP_REDIRECT": f"5672={port.getHost().port}",
               "NODE_OPTIONS": f"--require {os.path.join(SHIMS, 'redirect.cjs')}"}
        out, err, code = yield utils.getProcessOutputAndValue(shutil.which("node"), ["-e", script], env=env,
                                                              reactor=reactor)
        self.assertEqual((code, err), (0, b""))
        self.assertEqual(sorted(out.decode().splitlines()),
                         ["127.0.0.1 redirected", "::1 redirected", "localhost redirected"])


HANGS = """
const { describe, it } = require("node:test");
describe("outer", () => {
  it("one", () => {});
  it("hangs", () => new Promise(() => { setInterval(() => {}, 1000); }));
  it("never runs", () => {});
});
"""

LATER = """
const { describe, it } = require("node:test");
describe("later", () => {
  it("passes", () => {});
  it.skip("is skipped", () => {});
  it("fails", () => { throw new Error("boom"); });
});
"""


class NodeTestReporterTests(TestCase):
    """
    The harness's reporter for node --test names each test by its file and
    describe blocks, also after a file that timed out as a whole (Node 20's
    junit reporter nests every later test inside that file's open describe
    block, which renames them all).
    """

    if shutil.which("node") is None:
        skip = "node is not installed"

    @defer.inlineCallbacks
    def test_afterAFileTimedOut(self):
        directory = self.mktemp()
        os.makedirs(os.path.join(directory, "test"))
        for name, text in [("a.test.js", HANGS), ("b.test.js", LATER)]:
            with open(os.path.join(directory, "test", name), "w") as f:
                f.write(text)
        junit = os.path.abspath(os.path.join(directory, "junit.xml"))
        reporter = os.path.join(SHIMS, "node-test-reporter.mjs")
        yield utils.getProcessOutputAndValue(
            shutil.which("node"), ["--test", "--test-timeout=2000", f"--test-reporter={reporter}",
                                   f"--test-reporter-destination={junit}", "test/a.test.js", "test/b.test.js"],
            env={"PATH": os.environ.get("PATH", "")}, path=directory, reactor=reactor)
        with open(junit, "rb") as f:
            results = report.parseJUnit(f.read(), "file")
        self.assertEqual(results["test/a.test.js > outer > one"], report.TestResult(report.PASS))
        self.assertEqual(results["test/a.test.js > (whole file)"].outcome, report.FAIL)
        self.assertIn("timed out", results["test/a.test.js > (whole file)"].message)
        self.assertNotIn("test/a.test.js > outer > never runs", results)
        self.assertEqual(results["test/b.test.js > later > passes"], report.TestResult(report.PASS))
        self.assertEqual(results["test/b.test.js > later > is skipped"].outcome, report.SKIP)
        self.assertEqual(results["test/b.test.js > later > fails"], report.TestResult(report.FAIL, "boom"))
