"""
Token mode (issue 10) against a dedicated RabbitMQ node whose only auth
backend is C{http}, pointed at the gateway's C{[broker_auth]} listener.

One node serves every class here (C{nodeKey}); it starts with the first
test (3-8 s) and stops after the last.  Each test runs its own gateway on
port 0 for the listeners and on the node's fixed auth port for
C{[broker_auth]}.  Every test also checks that no token it minted shows up
in any log event the gateway emitted.
"""

import os
import uuid

from twisted.internet import defer, protocol, task
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial import unittest
from txamqp.client import ChannelClosed, Closed
from txamqp.content import Content

from kaazing_promo.amqp.codec import (
    ACCESS_REFUSED, FRAME_METHOD, NOT_ALLOWED, PROTOCOL_HEADER, decodeMethod, encodeMethod,
    encodePlainResponse)
from kaazing_promo.amqp.frames import FrameReader
from kaazing_promo.auth.avatar import GatewayUser
from kaazing_promo.auth.userscnf import UserEntry
from tests.authfixtures import testHash, writeUsersCnf
from tests.processes import waitFor
from tests.rabbitnode import DedicatedNodeMixin
from tests.support import (
    ConnectionRefusedWS, GatewayTestMixin, basicHeader, closeClient, connectTCP, connectWebSocket,
    gatewayConfig)

PASSWORDS = {"joe.smith": "joe-pw", "alice": "alice-pw"}
GROUPS = {"joe.smith": {"Tyche", "Everyone"}, "alice": {"Everyone"}}
PERMISSIONS = [{
    "group": "Tyche", "vhost": "/",
    "configure": r"^tyche\.", "write": r"^(tyche\.|amq\.default$)", "read": r"^tyche\.",
    "topic": r"^tyche\.", "tags": ["monitoring"],
}]
FORBIDDEN_VHOST = "forbidden"
NODE = {"vhosts": (FORBIDDEN_VHOST,)}


def tycheName(kind):
    return f"tyche.{kind}-{uuid.uuid4().hex[:8]}"


def replyCode(error):
    """
    @return: the reply code of the Close a txamqp L{Closed} error carries
        (L{None} if the connection just dropped).
    """
    return getattr(error.args[0], "reply_code", None)


class DirectLogin(protocol.Protocol):
    """
    Logs in straight at the broker, advertising authentication_failure_close
    (txamqp cannot: its codec has no booleans), so that a refusal comes as a
    Close 403 at once rather than a silent drop after RabbitMQ's 3 s delay.

    C{result} fires with C{(200, "open")} once the vhost is open, or with
    C{(reply code, reply text)} of the broker's Close, or C{(None, "dropped")}.
    """

    def __init__(self, user, password, vhost="/"):
        self.user, self.password, self.vhost = user, password, vhost
        self.result = defer.Deferred()
        self._reader = FrameReader()

    def connectionMade(self):
        self.transport.write(PROTOCOL_HEADER)

    def dataReceived(self, data):
        for frameType, channel, payload, raw in self._reader.feed(data):
            if frameType == FRAME_METHOD:
                self.methodReceived(decodeMethod(payload))

    def methodReceived(self, method):
        name = method.qualifiedName
        if name == "connection.start":
            self.transport.write(encodeMethod(
                0, "connection.start-ok",
                client_properties={"capabilities": {"authentication_failure_close": True}},
                mechanism="PLAIN", response=encodePlainResponse(self.user, self.password), locale="en_US"))
        elif name == "connection.tune":
            self.transport.write(encodeMethod(0, "connection.tune-ok", channel_max=method.args["channel_max"],
                                              frame_max=method.args["frame_max"], heartbeat=0))
            self.transport.write(encodeMethod(0, "connection.open", virtual_host=self.vhost))
        elif name == "connection.open-ok":
            self._done((200, "open"))
            self.transport.write(encodeMethod(0, "connection.close", reply_code=200, reply_text="bye"))
        elif name == "connection.close":
            self._done((method.args["reply_code"], method.args["reply_text"]))
            self.transport.write(encodeMethod(0, "connection.close-ok"))
            self.transport.loseConnection()
        elif name == "connection.close-ok":
            self.transport.loseConnection()

    def _done(self, outcome):
        if not self.result.called:
            self.result.callback(outcome)

    def connectionLost(self, reason):
        self._done((None, "dropped"))


class ShiftedClock:
    """
    The reactor's clock, moved by C{shift} seconds.
    """

    def __init__(self, reactor, shift=0.0):
        self.reactor = reactor
        self.shift = shift

    def seconds(self):
        return self.reactor.seconds() + self.shift


class TokenGatewayMixin(DedicatedNodeMixin, GatewayTestMixin):
    """
    A gateway in token mode (internal realm, both listeners requiring
    authentication) in front of the shared dedicated node.
    """

    timeout = 120
    nodeKey = "token-broker"
    nodeOptions = NODE
    promotion = {"mode": "token"}

    @defer.inlineCallbacks
    def setUp(self):
        self.node = yield self.startNode()
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        usersCnf = writeUsersCnf(
            os.path.join(directory, "users.cnf"),
            [UserEntry(name, testHash(password), GROUPS[name], True) for name, password in PASSWORDS.items()],
            {})
        listeners = [
            {"name": "web", "protocol": "websocket", "endpoint": "tcp:0:interface=127.0.0.1"},
            {"name": "amqp", "protocol": "amqp", "endpoint": "tcp:0:interface=127.0.0.1"},
        ]
        config = gatewayConfig(
            directory, listeners, user_auth="internal", internal={"users_cnf": usersCnf},
            broker={"endpoint": self.node.brokerEndpoint}, promotion=self.promotion,
            broker_auth={"endpoint": self.node.authEndpoint}, permissions=PERMISSIONS)
        self.events, self.tokens = [], []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)
        # Checked after the gateway stopped: its last audit lines count too.
        self.addCleanup(self.assertNoTokenLogged)
        yield self.startGateway(config)
        # The gateway's start-up probe of the broker must be over (and its
        # socket gone) before a test that never reaches the broker ends.
        self.assertTrue((yield waitFor(self.gateway.reactor, lambda: self.gateway.startCache.fromBroker)))
        yield task.deferLater(self.gateway.reactor, 0, lambda: None)
        self.wsFactories, self.tcpClients = [], []
        self.addCleanup(self.clientsClosed)
        self.book = self.gateway.promoter.tokenBook
        mint = self.book.mint

        def recordingMint(*args, **kwargs):
            secret = mint(*args, **kwargs)
            self.tokens.append(secret.reveal())
            return secret
        self.patch(self.book, "mint", recordingMint)

    def assertNoTokenLogged(self):
        """
        No log event of the gateway (formatted or raw) holds a token minted
        during the test.
        """
        texts = [f"{formatEvent(event)} {event!r}" for event in self.events]
        for token in self.tokens:
            for part in token.split("."):
                for text in texts:
                    self.assertNotIn(part, text)

    def clientsClosed(self):
        """
        Close every client of the test, refused ones included, and wait (at
        most 5 s) until each saw its connection go: Autobahn's timers and
        the sockets are pending until then.
        """
        waiting = [factory.closed for factory in self.wsFactories]
        for client in self.tcpClients:
            if client.transport is not None and client.transport.connected:
                client.transport.loseConnection()
                waiting.append(client.disconnected.wait())
        d = defer.gatherResults(waiting)
        d.addTimeout(5, self.gateway.reactor)
        return d

    def loggedReasons(self):
        return " ".join(formatEvent(event) for event in self.events)

    def connect(self, listener, user="joe.smith", password=None, **kwargs):
        """
        Through C{listener} ("amqp" or "web") as gateway user C{user}.
        """
        password = PASSWORDS.get(user, "x") if password is None else password
        if listener == "web":
            return connectWebSocket(self.ports["web"], headers=basicHeader(user, password),
                                    factories=self.wsFactories, **kwargs)
        return connectTCP(self.ports["amqp"], user, password, clients=self.tcpClients, **kwargs)

    @defer.inlineCallbacks
    def loginDirect(self, user, password, vhost="/"):
        """
        Straight to the node, past the gateway.

        @return: C{(200, "open")} or the broker's C{(reply code, reply text)}.
        """
        login = DirectLogin(user, password, vhost)
        endpoint = TCP4ClientEndpoint(self.gateway.reactor, "127.0.0.1", self.node.amqpPort)
        yield connectProtocol(endpoint, login)
        outcome = yield login.result
        if login.transport.connected:
            lost = defer.Deferred()
            login.connectionLost = lambda reason: lost.callback(None)
            login.transport.loseConnection()
            yield lost
        return outcome

    @defer.inlineCallbacks
    def assertLoginRefused(self, user, password):
        """
        A direct login is refused with 403 ACCESS_REFUSED.
        """
        code, text = yield self.loginDirect(user, password)
        self.assertEqual(code, ACCESS_REFUSED, text)

    @defer.inlineCallbacks
    def openChannel(self, client, number=1):
        channel = yield client.channel(number)
        yield channel.channel_open()
        return channel


class TokenListenerTests(TokenGatewayMixin):
    """
    What a token-promoted user may and may not do, through one listener
    (the concrete classes below say which).
    """

    listener = None

    @defer.inlineCallbacks
    def test_publishesWhereTableAllows(self):
        """
        joe.smith (group Tyche) declares tyche.* queues and a topic
        exchange, binds and publishes with tyche.* routing keys, and gets
        the messages back; also through the default exchange (write on
        amq.default is in the table).
        """
        client = yield self.connect(self.listener)
        channel = yield self.openChannel(client)
        queue, exchange = tycheName("q"), tycheName("x")
        yield channel.queue_declare(queue=queue, exclusive=True, auto_delete=True)
        yield channel.exchange_declare(exchange=exchange, type="topic", auto_delete=True)
        yield channel.queue_bind(queue=queue, exchange=exchange, routing_key="tyche.#")
        reply = yield channel.basic_consume(queue=queue, no_ack=True)
        incoming = yield client.queue(reply.consumer_tag)
        channel.basic_publish(exchange=exchange, routing_key="tyche.news", content=Content(b"via topic"))
        channel.basic_publish(routing_key=queue, content=Content(b"via default"))
        received = []
        for _ in range(2):
            message = yield incoming.get(timeout=10)
            received.append(message.content.body)
        self.assertEqual(sorted(received), ["via default", "via topic"])
        self.assertEqual(len(self.tokens), 1)
        yield closeClient(client)

    @defer.inlineCallbacks
    def test_queueOutsideTableRefused(self):
        """
        Declaring a queue the table does not grant: channel-level 403
        ACCESS_REFUSED; the connection stays usable.
        """
        client = yield self.connect(self.listener)
        channel = yield self.openChannel(client)
        failure = yield self.assertFailure(channel.queue_declare(queue="other.q", auto_delete=True), ChannelClosed)
        self.assertEqual(failure.args[0].reply_code, ACCESS_REFUSED)
        channel2 = yield self.openChannel(client, 2)
        yield channel2.queue_declare(queue=tycheName("q"), exclusive=True, auto_delete=True)
        yield closeClient(client)

    @defer.inlineCallbacks
    def test_routingKeyOutsideTopicRefused(self):
        """
        Publishing to an allowed topic exchange with a routing key outside
        the entry's topic pattern: channel-level 403.
        """
        client = yield self.connect(self.listener)
        channel = yield self.openChannel(client)
        exchange = tycheName("x")
        yield channel.exchange_declare(exchange=exchange, type="topic", auto_delete=True)
        channel.basic_publish(exchange=exchange, routing_key="other.news", content=Content(b"no"))
        failure = yield self.assertFailure(
            channel.exchange_declare(exchange=exchange, type="topic", passive=True), ChannelClosed)
        self.assertEqual(failure.args[0].reply_code, ACCESS_REFUSED)
        yield closeClient(client)

    @defer.inlineCallbacks
    def test_exchangeOutsideTableRefused(self):
        """
        Publishing to amq.topic, which the table does not grant write on:
        channel-level 403.
        """
        client = yield self.connect(self.listener)
        channel = yield self.openChannel(client)
        channel.basic_publish(exchange="amq.topic", routing_key="tyche.news", content=Content(b"no"))
        failure = yield self.assertFailure(channel.queue_declare(queue=tycheName("q"), exclusive=True),
                                           ChannelClosed)
        self.assertEqual(failure.args[0].reply_code, ACCESS_REFUSED)
        yield closeClient(client)

    @defer.inlineCallbacks
    def test_vhostOutsideTableRefused(self):
        """
        A vhost that exists but that the table does not grant: the broker
        asks /auth/vhost, gets deny, and the client sees 530 NOT_ALLOWED.
        """
        error = yield self.assertFailure(self.connect(self.listener, vhost=FORBIDDEN_VHOST), Closed)
        self.assertEqual(replyCode(error), NOT_ALLOWED)
        self.assertEqual(len(self.tokens), 1)

    @defer.inlineCallbacks
    def test_userWithoutPermissionsRefusedAtGateway(self):
        """
        alice matches no [[permissions]] entry: refused by the gateway,
        no token minted, the broker never asked.
        """
        d = self.connect(self.listener, "alice")
        if self.listener == "web":
            error = yield self.assertFailure(d, ConnectionRefusedWS)
            self.assertIn("403", str(error))
        else:
            error = yield self.assertFailure(d, Closed)
            self.assertEqual(replyCode(error), ACCESS_REFUSED)
        self.assertEqual(self.tokens, [])

    @defer.inlineCallbacks
    def test_tokenIsSingleUse(self):
        """
        The token the gateway used cannot log in again, straight at the
        broker: its first /auth/user ask spent it.
        """
        client = yield self.connect(self.listener)
        [token] = self.tokens
        yield self.assertLoginRefused("joe.smith", token)
        self.assertIn("token already used", self.loggedReasons())
        yield closeClient(client)

    @defer.inlineCallbacks
    def test_expiredTokenRefused(self):
        """
        A token that reaches the broker after its TTL (the gateway's clock
        jumps token_ttl + 1 s between minting and the broker's ask) is
        refused: the client gets 403 ACCESS_REFUSED.
        """
        clock = ShiftedClock(self.gateway.reactor)
        self.patch(self.book, "clock", clock)
        mint = self.book.mint

        def mintThenAge(*args, **kwargs):
            secret = mint(*args, **kwargs)
            clock.shift = self.book.ttl + 1
            return secret
        self.patch(self.book, "mint", mintThenAge)
        error = yield self.assertFailure(self.connect(self.listener), Closed)
        self.assertEqual(replyCode(error), ACCESS_REFUSED)
        self.assertIn("token expired", self.loggedReasons())


class TokenOverAMQPListenerTests(TokenListenerTests, unittest.TestCase):
    listener = "amqp"


class TokenOverWebSocketTests(TokenListenerTests, unittest.TestCase):
    listener = "web"


class PastTheGatewayTests(TokenGatewayMixin, unittest.TestCase):
    """
    Clients that go straight to the broker, and what the broker logs.
    """

    @defer.inlineCallbacks
    def test_guessedUserNameCannotLogIn(self):
        """
        A direct AMQP client that knows a user name and guesses any password
        (the gateway password, guest's, something token-shaped) is refused.
        """
        for user, password in [("joe.smith", PASSWORDS["joe.smith"]), ("guest", "guest"),
                               ("joe.smith", "eyJ2IjoxfQ.AAAAAAAAAAAAAAAAAAAAAA")]:
            yield self.assertLoginRefused(user, password)
        self.assertIn("not a token this gateway minted", self.loggedReasons())

    @defer.inlineCallbacks
    def test_expiredTokenDirect(self):
        """
        A token minted token_ttl + 1 s ago and never used is refused.
        """
        self.patch(self.book, "clock", ShiftedClock(self.gateway.reactor, -(self.book.ttl + 1)))
        token = self.book.mint("joe.smith", _avatar("joe.smith")).reveal()
        self.book.clock.shift = 0
        yield self.assertLoginRefused("joe.smith", token)
        self.assertIn("token expired", self.loggedReasons())

    @defer.inlineCallbacks
    def test_stolenTokenUnderAnotherName(self):
        """
        A fresh token presented under another user name is refused, and
        spent.
        """
        token = self.book.mint("joe.smith", _avatar("joe.smith")).reveal()
        yield self.assertLoginRefused("guest", token)
        yield self.assertLoginRefused("joe.smith", token)
        reasons = self.loggedReasons()
        self.assertIn("minted for another broker user", reasons)
        self.assertIn("token already used", reasons)

    @defer.inlineCallbacks
    def test_freshTokenDirectIsTheOnlyWayIn(self):
        """
        The converse, so the refusals above mean something: a fresh token
        does log in straight at the broker, once.
        """
        token = self.book.mint("joe.smith", _avatar("joe.smith")).reveal()
        self.assertEqual((yield self.loginDirect("joe.smith", token)), (200, "open"))

    @defer.inlineCallbacks
    def test_brokerLogHoldsNoToken(self):
        """
        With the node logging at debug level: after logins over both
        listeners, a replay and a refused vhost, no token (nor any part of
        one) is in the node's log directory or console output.
        """
        for listener in ("amqp", "web"):
            client = yield self.connect(listener)
            yield closeClient(client)
        yield self.assertLoginRefused("joe.smith", self.tokens[0])
        yield self.assertFailure(self.connect("amqp", vhost=FORBIDDEN_VHOST), Closed)
        self.assertEqual(len(self.tokens), 3)
        text = yield self.nodeLogMentioning("Denied by the backing HTTP service")
        for token in self.tokens:
            for part in token.split("."):
                self.assertNotIn(part, text)

    @defer.inlineCallbacks
    def nodeLogMentioning(self, needle, timeout=10.0):
        """
        The node's log text once it mentions C{needle} (the node writes its
        log asynchronously); polled every 0.1 s, bounded.
        """
        yield waitFor(self.gateway.reactor, lambda: needle in self.node.logText(), timeout)
        text = self.node.logText()
        self.assertIn(needle, text)
        return text


def _avatar(user):
    return GatewayUser(user, groups=GROUPS[user])
