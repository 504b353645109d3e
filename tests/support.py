"""
What the integration tests share: the real RabbitMQ, gateways on port 0,
and AMQP clients over TCP and over WebSocket.
"""

import base64
import os
import subprocess
import uuid

import txamqp.spec
from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.threads import deferToThread
from twisted.trial import unittest
from txamqp.client import TwistedDelegate
from txamqp.content import Content
from txamqp.protocol import AMQClient

from kaazing_promo.config import loadConfig
from kaazing_promo.tomlwriter import dumpToml
from kaazing_promo.tap import GatewayService
from tests import ROOT
from tests.authfixtures import writeUsersFile

SPEC_PATH = os.path.join(ROOT, "kaazing_promo", "amqp", "specs", "amqp0-9-1.xml")
TXAMQP_SPEC = txamqp.spec.load(SPEC_PATH)
BROKER = "tcp:host=127.0.0.1:port=5672"
RABBITMQCTL = os.environ.get("RABBITMQCTL", "rabbitmqctl")


def uniqueName(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def rabbitmqctl(*args):
    """
    Run rabbitmqctl (each call costs ~0.5 s: batch what you can) in a thread.

    @return: a L{Deferred} firing with its standard output (L{str}).
    """
    def run():
        result = subprocess.run([RABBITMQCTL, "-q", *args], capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args[:2])} failed: {result.stderr.strip()}")
        return result.stdout
    return deferToThread(run)


def rabbitEval(erlang):
    """
    Several broker changes in one rabbitmqctl call.
    """
    return rabbitmqctl("eval", erlang)


def createUsers(users, vhosts=()):
    """
    Create broker users (C{{name: password}}) and vhosts, with full
    permissions for every user on every vhost given (and on "/"), in one call.
    """
    statements = []
    for vhost in vhosts:
        statements.append(f'rabbit_vhost:add(<<"{vhost}">>, <<"test">>)')
    for user, password in users.items():
        statements.append(f'rabbit_auth_backend_internal:add_user(<<"{user}">>, <<"{password}">>, <<"test">>)')
        for vhost in ("/", *vhosts):
            statements.append(
                f'rabbit_auth_backend_internal:set_permissions(<<"{user}">>, <<"{vhost}">>, '
                f'<<".*">>, <<".*">>, <<".*">>, <<"test">>)')
    return rabbitEval(", ".join(statements) + ", ok.")


def deleteUsers(users, vhosts=()):
    statements = [f'rabbit_auth_backend_internal:delete_user(<<"{user}">>, <<"test">>)' for user in users]
    statements += [f'rabbit_vhost:delete(<<"{vhost}">>, <<"test">>)' for vhost in vhosts]
    return rabbitEval(", ".join(statements) + ", ok.")


@defer.inlineCallbacks
def brokerConnectionUsers(connectionName):
    """
    @return: the broker user of every broker connection whose client
        properties carry C{connection_name = connectionName}.
    """
    output = yield rabbitmqctl("list_connections", "user", "client_properties", "--no-table-headers")
    return [line.split("\t", 1)[0] for line in output.splitlines() if connectionName in line]


def gatewayConfig(tmp, listeners=None, **top):
    """
    A parsed configuration for a gateway on port 0 in directory C{tmp}.
    """
    os.makedirs(tmp, exist_ok=True)
    document = {
        "broker": {"endpoint": BROKER},
        "listeners": listeners or [
            {"name": "web", "protocol": "websocket", "endpoint": "tcp:0:interface=127.0.0.1", "auth": "none"},
            {"name": "amqp", "protocol": "amqp", "endpoint": "tcp:0:interface=127.0.0.1", "auth": "none"},
        ],
        "promotion": {"mode": "consolidated", "user": "guest", "secrets": {"guest": "guest"}},
    }
    document.update(top)
    path = os.path.join(tmp, "gateway.toml")
    with open(path, "w", encoding="utf-8") as f:
        f.write(dumpToml(document))
    return loadConfig(path)


class GatewayTestMixin:
    """
    Starts a L{GatewayService} and knows its listening ports.
    """

    @defer.inlineCallbacks
    def startGateway(self, config):
        self.gateway = GatewayService(config, reactor)
        self.gateway.startService()
        self.addCleanup(self.gateway.stopService)
        ports = yield self.gateway.whenListening()
        self.ports = {name: port.getHost().port for name, port in ports.items()}
        return self.gateway


class WebSocketTransport:
    """
    Makes a WebSocket client look like a stream transport to an AMQP client
    protocol: each write is one binary message.
    """

    disconnecting = False

    def __init__(self, ws):
        self.ws = ws

    def write(self, data):
        self.ws.sendMessage(data, isBinary=True)

    def writeSequence(self, data):
        self.write(b"".join(data))

    def loseConnection(self):
        self.disconnecting = True
        self.ws.sendClose(1000)

    def getPeer(self):
        return self.ws.transport.getPeer()

    def getHost(self):
        return self.ws.transport.getHost()


class AMQPOverWebSocket(WebSocketClientProtocol):
    """
    An AMQP client protocol spoken inside WebSocket binary messages.
    """

    def onOpen(self):
        self.amqp = self.factory.amqpFactory()
        self.amqp.makeConnection(WebSocketTransport(self))
        self.factory.opened.callback(self.amqp)

    def onMessage(self, payload, isBinary):
        self.amqp.dataReceived(payload)

    def onClose(self, wasClean, code, reason):
        self.factory.closeCode = code
        if not self.factory.opened.called:
            self.factory.opened.errback(ConnectionRefusedWS(code, reason))
        elif hasattr(self, "amqp"):
            self.amqp.connectionLost(protocol.connectionDone)
        self.factory.closed.callback(code)


class ConnectionRefusedWS(Exception):
    def __init__(self, code, reason):
        Exception.__init__(self, code, reason)
        self.code = code


def basicHeader(user, password):
    token = base64.b64encode(f"{user}:{password}".encode("utf-8")).decode("ascii")
    return {"Authorization": f"Basic {token}"}


class NamingDelegate(TwistedDelegate):
    """
    txamqp's delegate, sending a C{connection_name} client property so that
    tests can find their connection at the broker.
    """

    def __init__(self, name):
        TwistedDelegate.__init__(self)
        self.name = name
        self.serverClosed = defer.Deferred()

    def connection_close(self, ch, msg):
        if not self.serverClosed.called:
            self.serverClosed.callback(msg)
        TwistedDelegate.connection_close(self, ch, msg)

    def connection_start(self, ch, msg):
        ch.connection_start_ok(client_properties={"connection_name": self.name},
                               mechanism=self.client.mechanism, response=self.client.response,
                               locale=self.client.locale)


def txamqpClient(vhost="/", name=None):
    return AMQClient(delegate=NamingDelegate(name or uniqueName("test")), vhost=vhost, spec=TXAMQP_SPEC)


@defer.inlineCallbacks
def connectTCP(port, user="mallory", password="xyz", vhost="/", name=None, clients=None):
    """
    A txamqp client through the AMQP listener (or straight to the broker).

    @param clients: a list the client is appended to before it logs in, so
        that a test can close it even if the login fails.
    """
    client = txamqpClient(vhost, name)
    if clients is not None:
        clients.append(client)
    yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
    yield client.authenticate(user, password, mechanism="PLAIN")
    return client


@defer.inlineCallbacks
def connectWebSocket(port, path="/amqp", headers=None, user="mallory", password="xyz", vhost="/",
                     name=None, query="", protocols=("amqp",), factories=None):
    """
    A txamqp client inside an Autobahn WebSocket client, through the
    WebSocket listener.
    """
    factory = WebSocketClientFactory(f"ws://127.0.0.1:{port}{path}{query}", headers=headers or {},
                                     protocols=list(protocols))
    factory.protocol = AMQPOverWebSocket
    factory.amqpFactory = lambda: txamqpClient(vhost, name)
    factory.opened = defer.Deferred()
    factory.closed = defer.Deferred()
    if factories is not None:
        factories.append(factory)
    reactor.connectTCP("127.0.0.1", port, factory)
    client = yield factory.opened
    client.wsFactory = factory
    yield client.authenticate(user, password, mechanism="PLAIN")
    return client


@defer.inlineCallbacks
def roundTrip(client, bodies):
    """
    Declare a private queue, publish C{bodies} to it, consume them back.

    @return: the bodies received, in order.
    """
    channel = yield client.channel(1)
    yield channel.channel_open()
    queue = uniqueName("q")
    yield channel.queue_declare(queue=queue, exclusive=True, auto_delete=True)
    reply = yield channel.basic_consume(queue=queue, no_ack=True)
    incoming = yield client.queue(reply.consumer_tag)
    for body in bodies:
        channel.basic_publish(routing_key=queue, content=Content(body))
    received = []
    for _ in bodies:
        message = yield incoming.get(timeout=10)
        body = message.content.body
        # txamqp hands an empty body over as "".
        received.append(body.encode() if isinstance(body, str) else body)
    yield channel.channel_close()
    return received


@defer.inlineCallbacks
def closeClient(client):
    channel0 = yield client.channel(0)
    yield channel0.connection_close()
    client.transport.loseConnection()


class IntegrationTestCase(GatewayTestMixin, unittest.TestCase):
    timeout = 60


#: The gateway users' passwords in L{PromotionTestCase}'s users.cnf.
PASSWORDS = {"joe.smith": "joe-password", "alice": "alice-password"}


class PromotionTestCase(IntegrationTestCase):
    """
    A gateway with the internal realm over a users.cnf made for the test,
    both listeners requiring authentication.
    """

    listenerOptions = {}

    @defer.inlineCallbacks
    def setUp(self):
        self.smithj = uniqueName("smithj")
        self.webuser = uniqueName("webuser")
        self.vhostA, self.vhostB = uniqueName("vhost-a"), uniqueName("vhost-b")
        yield createUsers({self.smithj: "smithj-pw", self.webuser: "webuser-pw"}, [self.vhostA, self.vhostB])
        self.addCleanup(deleteUsers, [self.smithj, self.webuser], [self.vhostA, self.vhostB])
        self.directory = self.mktemp()
        writeUsersFile(self.directory, self.users())
        yield self.startGateway(gatewayConfig(self.directory, **self.configuration()))

    def users(self):
        return {"joe.smith": (PASSWORDS["joe.smith"], ["Tyche"]), "alice": (PASSWORDS["alice"], ["Everyone"])}

    def listeners(self):
        return [dict(name="web", protocol="websocket", endpoint="tcp:0:interface=127.0.0.1",
                     **self.listenerOptions),
                dict(name="amqp", protocol="amqp", endpoint="tcp:0:interface=127.0.0.1", **self.listenerOptions)]

    def promotion(self):
        return {"mode": "mapping", "map": {"joe.smith": self.smithj, "alice": self.webuser},
                "secrets": {self.smithj: "smithj-pw", self.webuser: "webuser-pw"}}

    def configuration(self):
        return dict(user_auth="internal", listeners=self.listeners(), promotion=self.promotion())

    def connect(self, listener, user, password, **kwargs):
        """
        Connect as C{user} through C{listener}: on the WebSocket listener
        the gateway credentials go in the upgrade and the AMQP client sends
        mallory/xyz; on the AMQP listener they are the SASL credentials.
        """
        if listener == "web":
            return connectWebSocket(self.ports["web"], headers=basicHeader(user, password), **kwargs)
        return connectTCP(self.ports["amqp"], user, password, **kwargs)
