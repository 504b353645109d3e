"""
Issue 18: the README's command blocks run as written, after the Quick
start's C{./dev run}.

Every C{```sh} block of the sections Quick start, Running it, Promotion
modes and Operations carries a marker in the HTML comment right above it::

    <!-- readme-test: run -->                             bash -e -o pipefail, from the checkout: exit 0
    <!-- readme-test: run; output: REGEX -->              ... and the output matches REGEX (re.MULTILINE)
    <!-- readme-test: run; client: NAME; output: REGEX --> ... while an AMQP client named NAME
                                                          (connection_name) is connected to the gateway
    <!-- readme-test: skip: REASON -->                    not run, for REASON

L{ReadmeBlocksTests.test_blocksRunAgainstDevRun} starts C{./dev run} (the
sample in C{etc/}, on its ports 8080 and 5673), runs every C{run} block
against it and stops it with Ctrl-C's signal.  C{./dev} uses the venv the
tests run in, as it is (C{KAAZING_PROMO_NO_INSTALL}), with the checkout
first on the path: under C{./dev test} that is the freshly installed
C{.venv}, as a user has it.  If another process holds 8080 or 5673 (a
shared machine), the sample is copied with two free ports and the blocks'
C{127.0.0.1:8080} and C{127.0.0.1:5673} name those instead.

The Quick start's page step (open http://127.0.0.1:8080/, log in as
C{demo}) runs in Debian's Chromium with C{tests/browser/run.mjs}; with
C{KAAZING_PROMO_DOCS_SCREENSHOT=1} its screenshot becomes
C{docs/screenshot-roundtrip.png}, so that the README shows what the Quick
start gives.
"""

import os
import re
import json
import shutil
import signal
import socket
import subprocess
import sys
import time

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests import ROOT
from tests.processes import freePort
from tests.readmeblocks import README, readmeBlocks

DOCS_SCREENSHOT = os.path.join(ROOT, "docs", "screenshot-roundtrip.png")
PORTS = {"web": 8080, "amqp": 5673}
#: How long ./dev run may take to listen, and one block to run (seconds).
START_TIMEOUT = 30
BLOCK_TIMEOUT = 30


def portFree(port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


class ReadmeBlocksTests(SynchronousTestCase):

    def setUp(self):
        twistd = os.path.join(sys.prefix, "bin", "twistd")
        if not os.path.exists(twistd):
            raise SkipTest(f"no twistd in {sys.prefix}: run the tests in the project's venv (./dev test)")
        with open(README, encoding="utf-8") as f:
            self.blocks = [block for block in readmeBlocks(f.read()) if block.run]
        self.env = dict(os.environ, KAAZING_PROMO_VENV=sys.prefix, KAAZING_PROMO_NO_INSTALL="1",
                        PYTHONPATH=os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
        self.ports = dict(PORTS)
        arguments = []
        if not all(portFree(port) for port in PORTS.values()):
            arguments = ["--config", self.sampleOnFreePorts()]
        self.log = os.path.abspath(self.mktemp())
        with open(self.log, "wb") as log:
            # SIGINT as at a terminal: a test run started in the background
            # (bash's "&") inherits it ignored, and twistd then ignores Ctrl-C.
            self.gateway = subprocess.Popen(["./dev", "run", *arguments], cwd=ROOT, env=self.env,
                                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        self.addCleanup(self.stopGateway)
        deadline = time.monotonic() + START_TIMEOUT
        while not all(listening(port) for port in self.ports.values()):
            if self.gateway.poll() is not None or time.monotonic() > deadline:
                self.fail(f"./dev run did not listen on {self.ports}:\n{self.gatewayLog()}")
            time.sleep(0.1)

    def sampleOnFreePorts(self):
        """
        @return: a copy of the sample instance whose listeners are on free
            ports (L{ports}).
        """
        instance = os.path.abspath(self.mktemp())
        shutil.copytree(os.path.join(ROOT, "etc", "config"), os.path.join(instance, "config"))
        os.symlink(os.path.join(ROOT, "kaazing_promo", "data", "web"), os.path.join(instance, "web"))
        with open(os.path.join(ROOT, "etc", "gateway.toml"), encoding="utf-8") as f:
            text = f.read()
        for name, port in PORTS.items():
            self.ports[name] = freePort()
            text = text.replace(f"port={port}", f"port={self.ports[name]}")
        path = os.path.join(instance, "gateway.toml")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def gatewayLog(self):
        with open(self.log, encoding="utf-8", errors="replace") as f:
            return f.read()

    def stopGateway(self):
        if self.gateway.poll() is None:
            self.gateway.kill()
            self.gateway.wait()

    def runBlock(self, block):
        """
        Run C{block} (on the ports in use) and check it as its marker says.
        """
        text = block.text
        for name, port in PORTS.items():
            text = text.replace(f"127.0.0.1:{port}", f"127.0.0.1:{self.ports[name]}")
        client = None
        if block.client is not None:
            import pika
            parameters = pika.URLParameters(f"amqp://demo:demo-password@127.0.0.1:{self.ports['amqp']}/%2F")
            parameters.client_properties = {"connection_name": block.client}
            client = pika.BlockingConnection(parameters)
        try:
            result = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", text], cwd=ROOT, env=self.env,
                                    stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=BLOCK_TIMEOUT)
        finally:
            if client is not None:
                client.close()
        output = result.stdout + result.stderr
        where = f"README.md line {block.line} ({block.section}):\n{text}\nexit {result.returncode}, output:\n{output}"
        self.assertEqual(result.returncode, 0, where)
        self.assertIsNotNone(re.search(block.output, output.strip(), re.M), f"output does not match "
                                                                            f"{block.output!r}: {where}")

    def openThePage(self):
        """
        The Quick start's page step in Chromium: log in as C{demo}, publish,
        see it come back.

        @return: the C{round-trip} event of C{run.mjs} (identity, received
            messages, screenshot).
        """
        from tests.chromium import RUN_SCRIPT, missingPrerequisites
        problem = missingPrerequisites()
        if problem:
            self.fail(problem)
        out = os.path.abspath(self.mktemp())
        plan = [{"name": "roundtrip", "user": "demo", "password": "demo-password", "expect": "connected",
                 "message": "Hello from the Quick start"}]
        result = subprocess.run(["node", RUN_SCRIPT, "--url", f"http://127.0.0.1:{self.ports['web']}/",
                                 "--out", out, "--plan", json.dumps(plan)], stdin=subprocess.DEVNULL,
                                capture_output=True, text=True, timeout=120)
        events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        [trip] = [event for event in events if event["event"] == "round-trip"]
        return trip

    def test_blocksRunAgainstDevRun(self):
        """
        Every C{run} block runs as written against C{./dev run}, with the
        output the README shows, and the page shows what the Quick start
        says: C{demo} promoted to C{guest}.  The default start logs no warning (the
        sample says it is the demo), and Ctrl-C's signal drains the
        gateway and ends it as killed by SIGINT (130 in a shell).
        """
        for block in self.blocks:
            self.runBlock(block)
        trip = self.openThePage()
        self.assertEqual({key: trip["identity"][key] for key in ("user", "broker_user", "vhost", "groups")},
                         {"user": "demo", "broker_user": "guest", "vhost": "/", "groups": "Everyone, Tyche"})
        self.assertEqual(trip["received"], ["Hello from the Quick start"])
        if os.environ.get("KAAZING_PROMO_DOCS_SCREENSHOT"):
            shutil.copyfile(trip["screenshot"], DOCS_SCREENSHOT)
        self.gateway.send_signal(signal.SIGINT)
        self.assertEqual(self.gateway.wait(timeout=START_TIMEOUT), -signal.SIGINT, self.gatewayLog())
        log = self.gatewayLog()
        self.assertEqual([line for line in log.splitlines() if "#warn]" in line or "#error]" in line], [])
        self.assertIn("demo configuration (demo = true in ", log)
        self.assertIn("Received SIGINT, shutting down.", log)
