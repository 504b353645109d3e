"""
The peer suites interop/run knows: which pinned source release each comes
from, what it needs installed, how it is started and how it names its
tests.

A suite reaches the broker through a L{Target}: the loopback ports it
hard-codes (5672, 5671) rewritten by a preload (interop/shims), or, in a
browser, the WebSocket URL it reads from C{VITE_WS_URL}.  No test file is
edited.
"""

import os
import shutil

import attr

HERE = os.path.dirname(os.path.abspath(__file__))
SHIMS = os.path.join(HERE, "shims")
NODE_SHIM = os.path.join(SHIMS, "redirect.cjs")
PYTHON_SHIM_DIR = os.path.join(SHIMS, "python")
NODE_TEST_REPORTER = os.path.join(SHIMS, "node-test-reporter.mjs")
VITEST_BROWSER_CONFIG = "vitest.browser.interop.mjs"

#: The ports the suites hard-code: AMQP and AMQPS.
AMQP_PORT = 5672
AMQPS_PORT = 5671


@attr.s(frozen=True)
class Source:
    """
    A pinned source release: C{git clone --branch TAG} of C{repo}, into
    C{directory} under the sources directory.
    """

    directory = attr.ib()
    repo = attr.ib()
    tag = attr.ib()


AMQP_CLIENT = Source("amqp-client", "cloudamqp/amqp-client.js", "v4.1.0")
PIKA = Source("pika", "pika/pika", "1.4.4")
AMQPLIB = Source("amqplib", "amqp-node/amqplib", "v2.0.1")


@attr.s(frozen=True)
class Target:
    """
    Where a suite's connections go on one path.

    @ivar amqpPort: what C{127.0.0.1:5672} (and localhost, [::1]) becomes.
    @ivar amqpsPort: what C{:5671} becomes (TLS), or L{None}.
    @ivar wsUrl: the WebSocket URL, for the browser suite.
    """

    amqpPort = attr.ib(default=None)
    amqpsPort = attr.ib(default=None)
    wsUrl = attr.ib(default=None)

    def redirects(self):
        pairs = [(AMQP_PORT, self.amqpPort), (AMQPS_PORT, self.amqpsPort)]
        return ",".join(f"{source}={target}" for source, target in pairs if target)


@attr.s(frozen=True)
class Context:
    """
    What a suite's run needs from the harness.

    @ivar checkout: the suite's source directory.
    @ivar junit: where its runner writes JUnit XML.
    @ivar redirectLog: where the shims note each connection they redirect.
    @ivar grep: the name filter (L{None} for every test).
    @ivar peerVenv: the venv with the Python suites' dependencies.
    @ivar browserPort: the port of the vitest page (browser suite).
    @ivar chromium: the browser's executable.
    """

    checkout = attr.ib()
    junit = attr.ib()
    redirectLog = attr.ib()
    grep = attr.ib(default=None)
    peerVenv = attr.ib(default=None)
    browserPort = attr.ib(default=None)
    chromium = attr.ib(default=None)


class NodeSuite:
    """
    Base for the Node suites: C{npm ci} in the checkout, the redirecting
    preload in C{NODE_OPTIONS}.
    """

    transport = "tcp"
    needs = ("node", "npm")

    def prepare(self, checkout, run):
        """
        Install the suite's own dependencies (its lock file) when missing
        or older than the lock file.

        @param run: C{run(argv, cwd, logName)}, the harness's logged runner.
        """
        installed = os.path.join(checkout, "node_modules", ".package-lock.json")
        lock = os.path.join(checkout, "package-lock.json")
        if not os.path.exists(installed) or os.path.getmtime(lock) > os.path.getmtime(installed):
            run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], checkout, f"npm-ci-{self.name}")

    def environment(self, context, target):
        options = os.environ.get("NODE_OPTIONS", "")
        return {"NODE_OPTIONS": f"--require {NODE_SHIM} {options}".strip(),
                "INTEROP_REDIRECT": target.redirects(), "INTEROP_REDIRECT_LOG": context.redirectLog}


class AmqpClientTCP(NodeSuite):
    """
    @cloudamqp/amqp-client's Node tests (test/, vitest): AMQP over TCP,
    and AMQPS on 5671 (its TLS tests).
    """

    name = "amqp-client"
    source = AMQP_CLIENT
    style = "file"

    def argv(self, context):
        argv = [os.path.join(context.checkout, "node_modules", ".bin", "vitest"), "run", "--reporter=junit",
                f"--outputFile={context.junit}", "--reporter=dot", "test/"]
        if context.grep:
            argv[2:2] = ["-t", context.grep]
        return argv


class AmqpClientWebSocket(NodeSuite):
    """
    @cloudamqp/amqp-client's browser tests (test-browser/, vitest browser
    mode) in headless Chromium: AMQP over WebSocket to C{VITE_WS_URL}.
    Run with the harness's vitest config (shims/), copied into the
    checkout: the suite's own wants a playwright browser download and a
    visible window.
    """

    name = "amqp-client-ws"
    source = AMQP_CLIENT
    style = "file"
    transport = "ws"
    needs = ("node", "npm", "chromium")

    def prepare(self, checkout, run):
        NodeSuite.prepare(self, checkout, run)
        shutil.copyfile(os.path.join(SHIMS, VITEST_BROWSER_CONFIG), os.path.join(checkout, VITEST_BROWSER_CONFIG))

    def argv(self, context):
        argv = [os.path.join(context.checkout, "node_modules", ".bin", "vitest"), "run",
                "--config", VITEST_BROWSER_CONFIG, "--reporter=junit", f"--outputFile={context.junit}",
                "--reporter=dot"]
        if context.grep:
            argv += ["-t", context.grep]
        return argv

    def environment(self, context, target):
        return {"VITE_WS_URL": target.wsUrl, "INTEROP_BROWSER_PORT": str(context.browserPort),
                "CHROMIUM_PATH": context.chromium}


class Amqplib(NodeSuite):
    """
    amqplib's tests (node --test), reported by shims/node-test-reporter.mjs.
    The per-test timeout is 60 s, not the suite's 1 s: Node 20 applies it to
    each whole file too, and on a small machine a file takes longer than 1 s.
    """

    name = "amqplib"
    source = AMQPLIB
    style = "file"
    testTimeoutMs = 60000

    def argv(self, context):
        argv = ["node", "--test", f"--test-timeout={self.testTimeoutMs}",
                f"--test-reporter={NODE_TEST_REPORTER}", f"--test-reporter-destination={context.junit}",
                "--test-reporter=spec", "--test-reporter-destination=stdout"]
        if context.grep:
            argv.append(f"--test-name-pattern={context.grep}")
        return argv


class PikaAcceptance:
    """
    pika's acceptance tests (pytest tests/acceptance): every adapter
    (blocking, select, asyncio, gevent, tornado, twisted) against the
    broker.  Its Python dependencies come from interop/requirements-peers.txt
    (the peer venv); pika itself is imported from the checkout.
    """

    name = "pika"
    source = PIKA
    style = "pytest"
    transport = "tcp"
    needs = ()
    testTimeout = 120

    def prepare(self, checkout, run):
        pass

    def argv(self, context):
        argv = [os.path.join(context.peerVenv, "bin", "python"), "-m", "pytest", "tests/acceptance",
                "-p", "no:cacheprovider", f"--junitxml={context.junit}", f"--timeout={self.testTimeout}",
                "-o", "junit_family=xunit1"]
        if context.grep:
            argv += ["-k", context.grep]
        return argv

    def environment(self, context, target):
        path = os.environ.get("PYTHONPATH", "")
        return {"PYTHONPATH": PYTHON_SHIM_DIR + (os.pathsep + path if path else ""),
                "INTEROP_REDIRECT": target.redirects(), "INTEROP_REDIRECT_LOG": context.redirectLog}


SUITES = {suite.name: suite for suite in (AmqpClientTCP(), AmqpClientWebSocket(), PikaAcceptance(), Amqplib())}
