"""
X4 / issue 18 #5: every login decision is one audit event, and only one:
each refusal path of both listeners and of the HTTP endpoints, a browser
login (ticket, then the upgrade that spends it, and whoami) and an AMQP login.
"""

import json
import re

from twisted.internet import defer
from twisted.logger import globalLogPublisher
from twisted.trial import unittest

from tests.authfixtures import writeUsersFile
from tests.rawclients import (
    REAL_USER, RawClient, amqpLogin, basic, connectFrom, get, httpExchange, httpRequest, post, upgrade)
from tests.support import GatewayTestMixin, gatewayConfig


class AuditTrailCase(GatewayTestMixin, unittest.TestCase):
    """
    A gateway with the internal realm, and the login events it writes.
    """

    @defer.inlineCallbacks
    def setUp(self):
        directory = self.mktemp()
        writeUsersFile(directory, {REAL_USER[0]: (REAL_USER[1], ["Everyone"])})
        options = {"max_failed_logins": 2}
        listeners = [
            dict(name="web", protocol="websocket", endpoint="tcp:0:interface=127.0.0.1", **options),
            dict(name="amqp", protocol="amqp", endpoint="tcp:0:interface=127.0.0.1", **options),
            dict(name="admins", protocol="amqp", endpoint="tcp:0:interface=127.0.0.1",
                 require_groups=["Administrators"], **options)]
        self.events = []

        def observe(event):
            if event.get("log_namespace") == "kaazing_promo.audit" and event.get("event") == "login":
                self.events.append(event)
        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        yield self.startGateway(gatewayConfig(directory, user_auth="internal", listeners=listeners))

    def decisions(self):
        """
        @return: C{(listener, outcome, reason)} of the login events since the last call.
        """
        events, self.events = self.events, []
        return [(event["listener"], event["outcome"], event["reason"]) for event in events]


class AuditTrailTests(AuditTrailCase):

    @defer.inlineCallbacks
    def test_X4_amqpListener(self):
        port = self.ports["amqp"]
        result = yield amqpLogin("127.0.0.2", port, *REAL_USER)
        self.assertEqual(result, "open")
        self.assertEqual(self.decisions(), [("amqp", "ok", "")])
        yield amqpLogin("127.0.0.3", port, REAL_USER[0], "wrong")
        yield amqpLogin("127.0.0.4", port, "nobody", "wrong")
        self.assertEqual([outcome for _, outcome, _ in self.decisions()], ["bad-credentials"] * 2)
        yield amqpLogin("127.0.0.5", port, None, None, response=b"no NUL in here")
        self.assertEqual(self.decisions(), [("amqp", "bad-credentials", "malformed SASL response")])
        yield amqpLogin("127.0.0.3", port, REAL_USER[0], "wrong again")
        self.decisions()
        result = yield amqpLogin("127.0.0.3", port, *REAL_USER)
        self.assertIn("too many failed logins", result)
        [(_, outcome, reason)] = self.decisions()
        self.assertEqual(outcome, "rate-limited")
        yield amqpLogin("127.0.0.6", self.ports["admins"], *REAL_USER)
        self.assertEqual(self.decisions(), [("admins", "unauthorized", "not in any of require_groups")])

    @defer.inlineCallbacks
    def test_X4_webSocketListener(self):
        port = self.ports["web"]
        line = yield httpRequest("127.0.0.2", port, upgrade())
        self.assertIn(b" 401 ", line)
        self.assertEqual(self.decisions(), [("web", "bad-credentials", "no credentials")])
        line = yield httpRequest("127.0.0.3", port, upgrade(b"Authorization: Bearer xyz\r\n"))
        self.assertEqual(self.decisions(), [("web", "bad-credentials", "unusable Authorization header")])
        line = yield httpRequest("127.0.0.4", port, upgrade(basic(REAL_USER[0], "wrong")))
        self.assertEqual([outcome for _, outcome, _ in self.decisions()], ["bad-credentials"])
        for ticket in (b"bogus", b"e30.AAAA"):
            line = yield httpRequest("127.0.0.5", port, upgrade().replace(b"/amqp ", b"/amqp?ticket=" + ticket + b" "))
            self.assertIn(b" 401 ", line)
        self.assertEqual([outcome for _, outcome, _ in self.decisions()], ["bad-credentials"] * 2)
        line = yield httpRequest("127.0.0.4", port, upgrade(basic(REAL_USER[0], "wrong")))
        line = yield httpRequest("127.0.0.4", port, upgrade(basic(*REAL_USER)))
        self.assertIn(b" 429 ", line)
        self.assertEqual([outcome for _, outcome, _ in self.decisions()], ["bad-credentials", "rate-limited"])

    @defer.inlineCallbacks
    def test_X4_browserLoginIsOneDecision(self):
        """
        Issue 18 #5: the page's login (a ticket, whoami, the upgrade that
        spends the ticket) is one login event; spending the ticket again, a
        ticket endpoint without or with wrong credentials, a refused whoami,
        each one more.
        """
        port = self.ports["web"]
        status, body = yield httpExchange("127.0.0.2", port, post("/amqp/ticket", basic(*REAL_USER)))
        self.assertIn(b" 200 ", status)
        # The answer is chunked: the JSON object is the one chunk.
        ticket = json.loads(re.search(rb"\{.*\}", body).group())["ticket"].encode()
        status, _ = yield httpExchange("127.0.0.2", port, get("/amqp/whoami", basic(*REAL_USER)))
        self.assertIn(b" 200 ", status)
        spend = upgrade().replace(b"/amqp ", b"/amqp?ticket=" + ticket + b" ")
        line = yield httpRequest("127.0.0.2", port, spend)
        self.assertIn(b" 101 ", line)
        self.assertEqual(self.decisions(), [("web", "ok", "")])
        line = yield httpRequest("127.0.0.2", port, spend)
        self.assertIn(b" 401 ", line)
        self.assertEqual(self.decisions(), [("web", "bad-credentials", "unknown, used, expired or foreign ticket")])
        status, _ = yield httpExchange("127.0.0.3", port, post("/amqp/ticket"))
        self.assertIn(b" 401 ", status)
        status, _ = yield httpExchange("127.0.0.3", port, get("/amqp/whoami", basic(REAL_USER[0], "wrong")))
        self.assertIn(b" 401 ", status)
        self.assertEqual([(outcome, reason) for _, outcome, reason in self.decisions()],
                         [("bad-credentials", "no credentials"), ("bad-credentials", "invalid user name or password")])


class SessionCookieTests(AuditTrailCase):
    """
    Issue 19 #5: the page's session cookie, through a real gateway.
    """

    @defer.inlineCallbacks
    def test_19_cookieInsteadOfPassword(self):
        port = self.ports["web"]
        proto = RawClient(post("/amqp/ticket", basic(*REAL_USER)))
        yield connectFrom("127.0.0.2", port, proto)
        response = yield proto.done
        [cookie] = re.findall(rb"Set-Cookie: (kp_session=[^\r\n]*)", response)
        attributes = [part.strip().lower() for part in cookie.split(b";")[1:]]
        for attribute in (b"httponly", b"samesite=strict", b"path=/amqp"):
            self.assertIn(attribute, attributes)
        self.decisions()
        value = cookie.split(b";")[0]
        status, body = yield httpExchange("127.0.0.3", port, post("/amqp/ticket", b"Cookie: " + value + b"\r\n"))
        self.assertIn(b" 200 ", status)
        ticket = json.loads(re.search(rb"\{.*\}", body).group())["ticket"].encode()
        self.assertEqual(self.decisions(), [("web", "ok", "")])
        line = yield httpRequest("127.0.0.3", port, upgrade().replace(b"/amqp ", b"/amqp?ticket=" + ticket + b" "))
        self.assertIn(b" 101 ", line)
        status, _ = yield httpExchange("127.0.0.4", port, post("/amqp/ticket", b"Cookie: kp_session=forged.x\r\n"))
        self.assertIn(b" 401 ", status)
        self.assertEqual([outcome for _, outcome, _ in self.decisions()], ["bad-credentials"])
