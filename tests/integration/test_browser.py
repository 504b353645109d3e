"""
The demo page in a real browser: Debian's chromium, driven by playwright-core
from tests/browser/run.mjs, against a gateway running in this process (so the
trial reactor keeps running while the browser talks to it) and the real
RabbitMQ.

Needs /usr/bin/chromium, node and tests/browser/node_modules: CI installs
them (`apt-get install chromium fonts-liberation`, `npm ci --prefix
tests/browser`).  Without them these tests fail, they do not skip.

Screenshots go to C{_trial_temp/browser-artifacts/<test>/}.  The README's
screenshot comes from the Quick start itself (tests/integration/test_readme.py, with
C{KAAZING_PROMO_DOCS_SCREENSHOT=1}), not from these users.
"""

import json
import os
import re
import shutil
import time

import treq
from twisted.internet import defer, protocol, reactor
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial import unittest
from twisted.web.client import HTTPConnectionPool

from kaazing_promo.auth.passhash import makeHash
from kaazing_promo.auth.userscnf import UserEntry, renderUsersCnf

from tests.chromium import BROWSER_DIR, FRAMES_SCRIPT, RUN_SCRIPT, WEBROOT, missingPrerequisites, nodeProgram
from tests.processes import freePort
from tests.support import (
    GatewayTestMixin, createUsers, deleteUsers, gatewayConfig, rabbitmqctl, uniqueName)

PAGE_USER, PAGE_PASSWORD = "demo", "demo-password"
OUTSIDER, OUTSIDER_PASSWORD = "outsider", "outsider-password"
#: HTML and non-ASCII, to show the page treats what arrives as text.
MESSAGE = "<b>Hello</b> from Chromium — über AMQP ✓"


class BrowserRun(protocol.ProcessProtocol):
    """
    run.mjs as a child process: collects its JSON events, answers a
    C{holding} event once C{onHold} (a function returning a L{Deferred})
    is done.
    """

    def __init__(self, onHold=None):
        self.onHold = onHold
        self.events = []
        self.stderr = []
        self.holds = []
        self._buffer = b""
        self.ended = defer.Deferred()

    def outReceived(self, data):
        self._buffer += data
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            try:
                event = json.loads(line)
            except ValueError:
                self.stderr.append(line + b"\n")
                continue
            self.events.append(event)
            if event.get("event") == "holding":
                self._hold(event)

    def _hold(self, event):
        d = defer.maybeDeferred(self.onHold, event) if self.onHold else defer.succeed(None)
        self.holds.append(d)

        def release(result):
            if self.transport is not None:
                self.transport.write(b"continue\n")
            return result
        d.addBoth(release)

    def errReceived(self, data):
        self.stderr.append(data)

    def processEnded(self, reason):
        self.ended.callback(getattr(reason.value, "exitCode", None))

    def named(self, name, kind):
        return [e for e in self.events if e.get("name") == name and e.get("event") == kind]

    def report(self):
        lines = [json.dumps(e, ensure_ascii=False) for e in self.events]
        stderr = b"".join(self.stderr).decode("utf-8", "replace").strip()
        if stderr:
            lines.append("stderr:\n" + stderr[-4000:])
        return "\n".join(lines)


class BrowserTests(GatewayTestMixin, unittest.TestCase):
    """
    Log in, publish, see it come back; the broker sees the promoted user.
    """

    timeout = 110

    def setUp(self):
        problem = missingPrerequisites()
        if problem:
            self.fail(problem)
        self.artifacts = os.path.abspath(os.path.join("browser-artifacts", self._testMethodName))
        shutil.rmtree(self.artifacts, ignore_errors=True)
        os.makedirs(self.artifacts)

    def usersCnf(self, directory):
        """
        A users.cnf with one user in the listener's required group and one
        outside it.
        """
        users = [
            UserEntry(PAGE_USER, makeHash(PAGE_PASSWORD, iterations=1000), {"Demo", "Everyone"}, True),
            UserEntry(OUTSIDER, makeHash(OUTSIDER_PASSWORD, iterations=1000), {"Everyone"}, True),
        ]
        groups = {"Demo": [PAGE_USER], "Everyone": [PAGE_USER, OUTSIDER]}
        path = os.path.join(directory, "users.cnf")
        with open(path, "wb") as stream:
            stream.write(renderUsersCnf(users, groups))
        return path

    @defer.inlineCallbacks
    def startPageGateway(self, brokerUser, brokerPassword, broker=None):
        """
        A gateway on port 0 with the packaged page, the internal realm and
        consolidated promotion to C{brokerUser}.

        @return: the page's URL.
        """
        tmp = os.path.abspath(self.mktemp())
        os.makedirs(tmp)
        top = dict(
            user_auth="internal",
            internal={"users_cnf": self.usersCnf(tmp)},
            promotion={"mode": "consolidated", "user": brokerUser, "secrets": {brokerUser: brokerPassword}},
        )
        if broker is not None:
            top["broker"] = {"endpoint": broker}
        config = gatewayConfig(tmp, listeners=[{
            "name": "web", "protocol": "websocket", "endpoint": "tcp:0:interface=127.0.0.1",
            "path": "/amqp", "auth": "required", "webroot": WEBROOT,
            "require_groups": ["Demo"],
            # One wrong password, then 429: the last step shows it.
            "max_failed_logins": 1,
        }], **top)
        yield self.startGateway(config)
        return f"http://127.0.0.1:{self.ports['web']}/"

    @defer.inlineCallbacks
    def runBrowser(self, url, plan, onHold=None):
        run = BrowserRun(onHold)
        node = nodeProgram()
        started = time.monotonic()
        process = reactor.spawnProcess(
            run, node, [node, RUN_SCRIPT, "--url", url, "--out", self.artifacts, "--plan", json.dumps(plan)],
            env=dict(os.environ), path=BROWSER_DIR)

        def killIfRunning():
            # Only when the test timed out: run.mjs stops by itself otherwise.
            if not run.ended.called:
                process.signalProcess("KILL")
        self.addCleanup(killIfRunning)
        exitCode = yield run.ended
        # Failures of the check made while the page was connected.
        for d in run.holds:
            yield d
        run.seconds = time.monotonic() - started
        run.exitCode = exitCode
        return run

    def assertPassed(self, run, *names):
        for name in names:
            if not run.named(name, "passed"):
                self.fail(f"browser step {name!r} did not pass (exit {run.exitCode}; "
                          f"screenshots in {self.artifacts}):\n{run.report()}")
        self.assertEqual(run.exitCode, 0, run.report())

    @defer.inlineCallbacks
    def test_roundTripAndRefusals(self):
        """
        A users.cnf user logs in on the page, publishes, sees the message
        come back and sees the promoted broker user; meanwhile RabbitMQ
        lists a connection of that broker user.  Then the page shows its
        messages for a user outside the required group (403), a wrong
        password (401) and one attempt too many (429).
        """
        brokerUser, brokerPassword = uniqueName("kp-browser"), uniqueName("pw")
        yield createUsers({brokerUser: brokerPassword})
        self.addCleanup(deleteUsers, [brokerUser])
        url = yield self.startPageGateway(brokerUser, brokerPassword)
        seenByBroker = []

        @defer.inlineCallbacks
        def whileConnected(event):
            output = yield rabbitmqctl("list_connections", "user", "--no-table-headers")
            seenByBroker.extend(line.strip() for line in output.splitlines())

        run = yield self.runBrowser(url, [
            {"name": "roundtrip", "user": PAGE_USER, "password": PAGE_PASSWORD,
             "expect": "connected", "message": MESSAGE, "hold": True},
            {"name": "not-authorized", "user": OUTSIDER, "password": OUTSIDER_PASSWORD,
             "expect": "error", "code": "403"},
            {"name": "wrong-password", "user": PAGE_USER, "password": "not-the-password",
             "expect": "error", "code": "401"},
            {"name": "too-many-attempts", "user": PAGE_USER, "password": "not-the-password",
             "expect": "error", "code": "429"},
        ], whileConnected)
        self.assertPassed(run, "roundtrip", "not-authorized", "wrong-password", "too-many-attempts")

        [trip] = run.named("roundtrip", "round-trip")
        self.assertEqual(trip["received"], [MESSAGE])
        self.assertEqual(trip["identity"]["user"], PAGE_USER)
        self.assertEqual(trip["identity"]["broker_user"], brokerUser)
        self.assertEqual(trip["identity"]["vhost"], "/")
        self.assertTrue(trip["identity"]["queue"].startswith("amq.gen-"), trip["identity"])
        self.assertIn(brokerUser, seenByBroker)
        [wrong] = run.named("wrong-password", "error-shown")
        self.assertEqual(wrong["status"]["text"], "Wrong user name or password.")
        for name in ("roundtrip", "not-authorized", "wrong-password", "too-many-attempts"):
            self.assertTrue(os.path.getsize(os.path.join(self.artifacts, f"{name}.png")) > 0)

    @defer.inlineCallbacks
    def test_brokerDown(self):
        """
        With the broker down, the login succeeds but the gateway closes the
        WebSocket with 1011, and the page says the broker is unreachable.
        """
        url = yield self.startPageGateway("nobody", "unused", broker=f"tcp:host=127.0.0.1:port={freePort()}")
        run = yield self.runBrowser(url, [
            {"name": "broker-down", "user": PAGE_USER, "password": PAGE_PASSWORD,
             "expect": "error", "code": "broker-down"},
        ])
        self.assertPassed(run, "broker-down")


class PageServingTests(GatewayTestMixin, unittest.TestCase):
    """
    The web root as the browser gets it: every file the page needs is
    packaged, and every answer carries the page's security headers.
    """

    timeout = 30

    PAGE_FILES = ["index.html", "app.js", "style.css", "amqp-gateway-client.mjs", "favicon.svg",
                  "vendor/amqp-client/amqp-websocket-client.mjs", "vendor/amqp-client/LICENSE",
                  "vendor/amqp-client/SOURCE.txt"]

    def test_packaged(self):
        """
        The page's files are package data, and everything index.html and
        the modules load is among them (nothing from a CDN).
        """
        for name in self.PAGE_FILES:
            self.assertTrue(os.path.isfile(os.path.join(WEBROOT, name)), name)
        with open(os.path.join(WEBROOT, "index.html"), encoding="utf-8") as f:
            html = f.read()
        references = re.findall(r'(?:src|href)="([^"]+)"', html)
        for name in ("app.js", "amqp-gateway-client.mjs"):
            with open(os.path.join(WEBROOT, name), encoding="utf-8") as f:
                references += re.findall(r'^import .* from "\./([^"]+)"', f.read(), re.M)
        self.assertIn("app.js", references)
        for reference in references:
            self.assertNotIn("//", reference)
            self.assertTrue(os.path.isfile(os.path.join(WEBROOT, reference)), reference)

    @defer.inlineCallbacks
    def test_headers(self):
        tmp = os.path.abspath(self.mktemp())
        config = gatewayConfig(tmp, listeners=[{
            "name": "web", "protocol": "websocket", "endpoint": "tcp:0:interface=127.0.0.1",
            "auth": "none", "webroot": WEBROOT}])
        yield self.startGateway(config)
        base = f"http://127.0.0.1:{self.ports['web']}"
        pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(pool.closeCachedConnections)
        expected = {
            "/": (200, "text/html; charset=utf-8"),
            "/app.js": (200, "text/javascript; charset=utf-8"),
            "/amqp-gateway-client.mjs": (200, "text/javascript; charset=utf-8"),
            "/style.css": (200, "text/css; charset=utf-8"),
            "/vendor/amqp-client/amqp-websocket-client.mjs": (200, "text/javascript; charset=utf-8"),
            "/vendor/amqp-client/LICENSE": (200, "application/octet-stream"),
            "/vendor/": (403, None),
            "/no-such-file": (404, None),
        }
        for path, (code, contentType) in expected.items():
            response = yield treq.get(base + path, pool=pool)
            yield response.content()
            headers = response.headers
            self.assertEqual(response.code, code, path)
            csp = headers.getRawHeaders("content-security-policy", [""])[0]
            self.assertIn("default-src 'self'", csp, path)
            self.assertIn("connect-src 'self' ws: wss:", csp, path)
            self.assertNotIn("unsafe", csp, path)
            self.assertEqual(headers.getRawHeaders("x-content-type-options"), ["nosniff"], path)
            self.assertEqual(headers.getRawHeaders("referrer-policy"), ["no-referrer"], path)
            self.assertEqual(headers.getRawHeaders("cache-control"), ["no-cache"], path)
            if contentType:
                self.assertEqual(headers.getRawHeaders("content-type"), [contentType], path)
        # The endpoint's own answers keep theirs.
        response = yield treq.post(base + "/amqp/ticket", pool=pool)
        yield response.content()
        self.assertEqual(response.headers.getRawHeaders("cache-control"), ["no-store"])
        self.assertIsNone(response.headers.getRawHeaders("content-security-policy"))


    @defer.inlineCallbacks
    def test_ticketFromAllowedOrigin(self):
        """
        The shipped configuration lists the page's own origin in
        allowed_origins: a browser's ticket request from there (it sends
        Origin on a POST) gets its ticket; one from elsewhere gets 403.
        """
        tmp = os.path.abspath(self.mktemp())
        config = gatewayConfig(tmp, listeners=[{
            "name": "web", "protocol": "websocket", "endpoint": "tcp:0:interface=127.0.0.1",
            "auth": "none", "webroot": WEBROOT, "allowed_origins": ["http://page.example:8080"]}])
        yield self.startGateway(config)
        url = f"http://127.0.0.1:{self.ports['web']}/amqp/ticket"
        pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(pool.closeCachedConnections)
        response = yield treq.post(url, headers={"Origin": "http://page.example:8080"}, pool=pool)
        body = yield response.content()
        self.assertEqual(response.code, 200, body)
        self.assertIn("ticket", json.loads(body))
        self.assertEqual(response.headers.getRawHeaders("access-control-allow-origin"),
                         ["http://page.example:8080"])
        response = yield treq.post(url, headers={"Origin": "http://elsewhere.example"}, pool=pool)
        yield response.content()
        self.assertEqual(response.code, 403)


class FrameReassemblyTests(unittest.TestCase):
    """
    The page's AMQP client reassembles frames however the gateway's
    WebSocket messages cut them (no browser needed, only node).
    """

    @defer.inlineCallbacks
    def test_everySplit(self):
        problem = missingPrerequisites(needBrowser=False)
        if problem:
            self.fail(problem)
        out, err, code = yield getProcessOutputAndValue(
            nodeProgram(), [FRAMES_SCRIPT, WEBROOT], env=dict(os.environ), path=BROWSER_DIR)
        self.assertEqual(code, 0, (out + err).decode("utf-8", "replace"))
        result = json.loads(out)
        self.assertEqual(result["failures"], [])
        self.assertGreaterEqual(result["cases"], 10)
