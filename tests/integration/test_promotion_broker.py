"""
Authentication and identity promotion against the real RabbitMQ, over both
listeners: the broker sees the promoted identity and nothing else.

Each test class creates its own broker users and vhosts with unique names
(one rabbitmqctl call) and removes them afterwards.
"""

import json

import pika
import treq
from twisted.internet import defer, reactor
from twisted.internet.threads import deferToThread
from zope.interface.verify import verifyObject

from kaazing_promo.interfaces import IIdentityPromoter
from tests.rawclients import rawRequest, upgrade
from tests.support import (
    PASSWORDS, ConnectionRefusedWS, PromotionTestCase, basicHeader, brokerConnectionUsers, closeClient, connectTCP,
    connectWebSocket, rabbitmqctl, roundTrip, uniqueName)


class MappingTests(PromotionTestCase):

    @defer.inlineCallbacks
    def test_P4_mappedIdentityOverBothListeners(self):
        """
        P4: joe.smith authenticated at the gateway reaches the broker as
        smithj, although the WebSocket client's AMQP library sent mallory/xyz.
        """
        for listener in ("web", "amqp"):
            name = uniqueName(listener)
            client = yield self.connect(listener, "joe.smith", PASSWORDS["joe.smith"], name=name)
            users = yield brokerConnectionUsers(name)
            self.assertEqual(users, [self.smithj], listener)
            received = yield roundTrip(client, [b"promoted"])
            self.assertEqual(received, [b"promoted"])
            yield closeClient(client)

    @defer.inlineCallbacks
    def test_P1_noCredentials(self):
        """
        P1: no credentials on the upgrade → 401 with a WWW-Authenticate
        challenge; the broker never sees a connection.
        """
        response = yield rawRequest(self.ports["web"], upgrade())
        status, _, rest = response.partition(b"\r\n")
        self.assertIn(b" 401 ", status)
        self.assertIn(b'WWW-Authenticate: Basic realm="kaazing-promo"', rest)

    @defer.inlineCallbacks
    def test_P1_wrongPassword(self):
        """
        P1/U2: a wrong password is refused at the upgrade (401) and with
        Close 403 on the AMQP listener; nothing reaches the broker.
        """
        name = uniqueName("wrong")
        error = yield self.assertFailure(
            connectWebSocket(self.ports["web"], headers=basicHeader("joe.smith", "nope"), name=name),
            ConnectionRefusedWS)
        self.assertIn("401", str(error))
        error = yield self.assertFailure(connectTCP(self.ports["amqp"], "joe.smith", "nope", name=name), Exception)
        self.assertIn("403", str(error))
        users = yield brokerConnectionUsers(name)
        self.assertEqual(users, [])

    @defer.inlineCallbacks
    def test_U2_unknownUserLikeWrongPassword(self):
        """
        U2: an unknown user fails exactly like a wrong password.
        """
        wrong = yield rawRequest(self.ports["web"], upgrade(
            b"Authorization: " + basicHeader("joe.smith", "nope")["Authorization"].encode() + b"\r\n"))
        unknown = yield rawRequest(self.ports["web"], upgrade(
            b"Authorization: " + basicHeader("nobody", "nope")["Authorization"].encode() + b"\r\n"))
        self.assertEqual(wrong, unknown)

    @defer.inlineCallbacks
    def test_ticketFlow(self):
        """
        Browsers: POST <path>/ticket with Basic → a single-use ticket that
        opens the WebSocket; a second use is refused.
        """
        url = f"http://127.0.0.1:{self.ports['web']}/amqp/ticket"
        response = yield treq.post(url, auth=("joe.smith", PASSWORDS["joe.smith"]), persistent=False)
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders("cache-control"), ["no-store"])
        body = json.loads((yield response.content()))
        self.assertEqual(body["expires_in"], 30)
        name = uniqueName("ticket")
        client = yield connectWebSocket(self.ports["web"], query=f"?ticket={body['ticket']}", name=name)
        users = yield brokerConnectionUsers(name)
        self.assertEqual(users, [self.smithj])
        yield closeClient(client)
        error = yield self.assertFailure(
            connectWebSocket(self.ports["web"], query=f"?ticket={body['ticket']}"), ConnectionRefusedWS)
        self.assertIn("401", str(error))

    @defer.inlineCallbacks
    def test_ticketRefusedWithoutChallenge(self):
        """
        A failed ticket request is 401 JSON without a Basic challenge (which
        would open the browser's own login dialog).
        """
        url = f"http://127.0.0.1:{self.ports['web']}/amqp/ticket"
        response = yield treq.post(url, auth=("joe.smith", "nope"), persistent=False)
        self.assertEqual(response.code, 401)
        self.assertIsNone(response.headers.getRawHeaders("www-authenticate"))
        yield response.content()

    @defer.inlineCallbacks
    def test_whoami(self):
        url = f"http://127.0.0.1:{self.ports['web']}/amqp/whoami"
        response = yield treq.get(url, auth=("joe.smith", PASSWORDS["joe.smith"]), persistent=False)
        body = json.loads((yield response.content()))
        self.assertEqual(body, {"user": "joe.smith", "broker_user": self.smithj, "vhost": "/",
                                "groups": ["Tyche"]})

    @defer.inlineCallbacks
    def test_P7_updateSecretOverAMQPListener(self):
        """
        P7 (since 2026-12-06, issue 21 #2; this test used to expect the old
        refusal, 530): pika's update_secret through the AMQP listener logs
        the same person in again.  The right password → update-secret-ok
        from the gateway and the connection goes on as the same broker
        user; a wrong one → Close 403 and the broker connection is gone.
        """
        name = uniqueName("secret")
        body = yield deferToThread(pikaUpdateSecret, self.ports["amqp"], name, PASSWORDS["joe.smith"])
        self.assertEqual(body, b"after update-secret")
        name = uniqueName("secret-wrong")
        failures = self.gateway.authenticator.failures
        failed, _ = failures.hostFailures("127.0.0.1")
        error = yield self.assertFailure(
            deferToThread(pikaUpdateSecret, self.ports["amqp"], name, "nope"),
            pika.exceptions.ConnectionClosedByBroker)
        self.assertEqual(error.reply_code, 403)
        # Counted by the login protection like any failed login.
        self.assertEqual(failures.hostFailures("127.0.0.1")[0], failed + 1)
        users = yield brokerConnectionUsers(name)
        self.assertEqual(users, [])

    @defer.inlineCallbacks
    def test_P7_updateSecretOverWebSocket(self):
        """
        P7: over WebSocket the person logged in at the upgrade; update-secret
        (any secret) is answered with update-secret-ok by the gateway and
        changes nothing: the broker still sees the promoted user.
        """
        name = uniqueName("web")
        client = yield self.connect("web", "joe.smith", PASSWORDS["joe.smith"], name=name)
        channel0 = yield client.channel(0)
        yield channel0.connection_update_secret(new_secret=b"mallory", reason="escape")
        users = yield brokerConnectionUsers(name)
        self.assertEqual(users, [self.smithj])
        received = yield roundTrip(client, [b"still promoted"])
        self.assertEqual(received, [b"still promoted"])
        yield closeClient(client)


def pikaUpdateSecret(port, name, newSecret):
    """
    A pika BlockingConnection as joe.smith that updates its secret to
    C{newSecret}, then publishes a message to itself and gets it back.
    """
    parameters = pika.ConnectionParameters(
        "127.0.0.1", port, "/", pika.PlainCredentials("joe.smith", PASSWORDS["joe.smith"]),
        client_properties={"connection_name": name}, heartbeat=0)
    connection = pika.BlockingConnection(parameters)
    try:
        channel = connection.channel()
        queue = channel.queue_declare("", exclusive=True).method.queue
        connection.update_secret(newSecret, "rotation")
        channel.basic_publish("", queue, b"after update-secret")
        for _ in range(100):
            _, _, body = channel.basic_get(queue, auto_ack=True)
            if body is not None:
                return body
            connection.sleep(0.01)
        return None
    finally:
        if connection.is_open:
            connection.close()


class UnmappedTests(PromotionTestCase):

    @defer.inlineCallbacks
    def test_P4_unmappedRefusedBeforeBroker(self):
        """
        P4: a user without a map entry is refused with 403 before any AMQP
        byte, at the upgrade and at Start-Ok.
        """
        self.gateway.promoter._map.pop("alice")
        error = yield self.assertFailure(
            connectWebSocket(self.ports["web"], headers=basicHeader("alice", PASSWORDS["alice"])),
            ConnectionRefusedWS)
        self.assertIn("403", str(error))
        error = yield self.assertFailure(connectTCP(self.ports["amqp"], "alice", PASSWORDS["alice"]), Exception)
        self.assertIn("403", str(error))


class RequireGroupsTests(PromotionTestCase):
    listenerOptions = {"require_groups": ["Tyche"]}

    @defer.inlineCallbacks
    def test_X2_outsideRequiredGroups(self):
        """
        X2: authenticated but outside require_groups → 403 at the upgrade,
        Close 403 on the AMQP listener; members get through.
        """
        error = yield self.assertFailure(
            connectWebSocket(self.ports["web"], headers=basicHeader("alice", PASSWORDS["alice"])),
            ConnectionRefusedWS)
        self.assertIn("403", str(error))
        error = yield self.assertFailure(connectTCP(self.ports["amqp"], "alice", PASSWORDS["alice"]), Exception)
        self.assertIn("403", str(error))
        for listener in ("web", "amqp"):
            client = yield self.connect(listener, "joe.smith", PASSWORDS["joe.smith"])
            yield closeClient(client)


class ConsolidatedTests(PromotionTestCase):
    brokerPassword = "webuser-pw"

    def promotion(self):
        return {"mode": "consolidated", "user": self.webuser, "secrets": {self.webuser: self.brokerPassword}}

    @defer.inlineCallbacks
    def test_P5_everyoneIsOneAccount(self):
        """
        P5: every authenticated user reaches the broker as the one account.
        """
        for user in ("joe.smith", "alice"):
            for listener in ("web", "amqp"):
                name = uniqueName(listener)
                client = yield self.connect(listener, user, PASSWORDS[user], name=name)
                users = yield brokerConnectionUsers(name)
                self.assertEqual(users, [self.webuser])
                yield closeClient(client)


class WrongBrokerPasswordTests(PromotionTestCase):
    brokerPassword = "not-the-password"
    promotion = ConsolidatedTests.promotion

    @defer.inlineCallbacks
    def test_P3_brokerRefusesPromotedLogin(self):
        """
        P3: the broker authenticates the promoted identity itself; a wrong
        broker password reaches the client as ACCESS_REFUSED, promptly.
        """
        for listener in ("web", "amqp"):
            started = reactor.seconds()
            error = yield self.assertFailure(
                self.connect(listener, "joe.smith", PASSWORDS["joe.smith"]), Exception)
            self.assertIn("ACCESS_REFUSED", str(error))
            self.assertLess(reactor.seconds() - started, 5)


class IdentityAndVhostTests(PromotionTestCase):

    def users(self):
        return {self.smithj: ("smithj-gateway-pw", ["Tyche"])}

    def promotion(self):
        return {"mode": "identity", "vhost": self.vhostA, "secrets": {self.smithj: "smithj-pw"}}

    def test_S4_promoterInterface(self):
        verifyObject(IIdentityPromoter, self.gateway.promoter)

    @defer.inlineCallbacks
    def test_P6_identityAndPinnedVhost(self):
        """
        P6: the gateway user name is the broker user name.  A client pinned
        to vhost A that asks for B is in A.
        """
        for listener in ("web", "amqp"):
            name = uniqueName(listener)
            client = yield self.connect(listener, self.smithj, "smithj-gateway-pw", name=name,
                                        vhost=self.vhostB)
            output = yield rabbitmqctl("list_connections", "user", "vhost", "client_properties",
                                       "--no-table-headers")
            [line] = [line for line in output.splitlines() if name in line]
            user, vhost = line.split("\t")[:2]
            self.assertEqual((user, vhost), (self.smithj, self.vhostA))
            yield closeClient(client)
