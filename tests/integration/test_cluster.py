"""
Issue 20 #4: several gateways as one, on this machine, started by the
tests themselves: HAProxy (Debian's package, C{haproxy -f CFG -db} as a
child) sending PROXY v2 to two gateway processes (twistd, each with its
own configuration file, one Redis), health-checked on C{/readyz}, in front
of a dedicated RabbitMQ node whose only auth backend is C{http}, its
C{auth_http} URLs pointing at the balancer's C{[broker_auth]} frontend.

HAProxy's runtime API puts one gateway out of a backend for a moment, so
that "through the other gateway" is certain, not a matter of the round
robin's turn.  Everything is stopped after each test; the shared Redis
keeps nothing of it (a key prefix per test, deleted afterwards).
"""

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import uuid

import treq
from twisted.internet import defer, reactor
from twisted.trial import unittest
from twisted.web.client import HTTPConnectionPool
from txamqp.client import Closed
from txamqp.content import Content

from kaazing_promo.auth.userscnf import UserEntry
from kaazing_promo.tomlwriter import dumpToml
from tests import ROOT
from tests.authfixtures import KEY_TEXT, privateFile, testHash, writeUsersCnf
from tests.processes import freePorts, waitFor
from tests.rabbitnode import DedicatedNodeMixin
from tests.sharedredis import RedisMixin
from tests.support import ConnectionRefusedWS, closeClient, connectTCP, connectWebSocket

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
SETPRIV = shutil.which("setpriv")
TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")
PASSWORDS = {"joe.smith": "joe-pw", "alice": "alice-pw"}
GROUPS = {"joe.smith": {"Tyche", "Everyone"}, "alice": {"Everyone"}}
PERMISSIONS = [{"group": "Tyche", "vhost": "/", "configure": r"^tyche\.", "write": r"^(tyche\.|amq\.default$)",
                "read": r"^tyche\."}]
MAX_FAILED_LOGINS = 3
GATEWAYS = ("gw1", "gw2")


def child(command, logPath, env=None, cwd=None):
    """
    Start C{command} with its output in C{logPath}; it gets SIGKILL if this
    process dies (setpriv), so that nothing is left running.
    """
    if SETPRIV is not None:
        command = [SETPRIV, "--pdeathsig", "KILL", "--"] + command
    with open(logPath, "ab") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=env, cwd=cwd)


def stopChild(process, timeout=15):
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


HAPROXY_CONFIG = """\
global
    stats socket {socket} mode 600 level admin
    maxconn 2000

defaults
    mode tcp
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout check 1s
    timeout http-request 5s
    option redispatch
    retries 2
    default-server inter 300ms fall 2 rise 1

frontend fe_amqp
    bind 127.0.0.1:{amqp}
    default_backend be_amqp

backend be_amqp
    balance roundrobin
    option httpchk GET /readyz
{amqpServers}

frontend fe_web
    bind 127.0.0.1:{web}
    default_backend be_web

backend be_web
    balance roundrobin
    option httpchk GET /readyz
{webServers}

frontend fe_auth
    mode http
    bind 127.0.0.1:{auth}
    default_backend be_auth

backend be_auth
    mode http
    balance roundrobin
    option http-server-close
    option httpchk GET /readyz
{authServers}
"""


class Topology:
    """
    HAProxy, two gateway processes, one Redis prefix, one RabbitMQ node.

    @ivar amqpPort: the balancer's AMQP frontend.
    @ivar webPort: the balancer's WebSocket frontend.
    """

    def __init__(self, testCase, node, prefix):
        self.testCase = testCase
        self.node = node
        self.directory = os.path.abspath(testCase.mktemp())
        os.makedirs(self.directory)
        self.amqpPort, self.webPort = freePorts(2)
        self.gateways = {}
        self.processes = {}
        # A unix socket's path has room for about 100 bytes: not under _trial_temp.
        socketDirectory = tempfile.mkdtemp(prefix="kp-haproxy-")
        testCase.addCleanup(shutil.rmtree, socketDirectory, True)
        self.socket = os.path.join(socketDirectory, "admin.sock")
        usersCnf = writeUsersCnf(
            os.path.join(self.directory, "users.cnf"),
            [UserEntry(name, testHash(password), GROUPS[name], True) for name, password in PASSWORDS.items()], {})
        keyFile = privateFile(testCase, KEY_TEXT)
        for name in GATEWAYS:
            amqp, web, auth, admin = freePorts(4)
            self.gateways[name] = {"amqp": amqp, "web": web, "auth": auth, "admin": admin}
            document = {
                "user_auth": "internal",
                "internal": {"users_cnf": usersCnf},
                "broker": {"endpoint": node.brokerEndpoint},
                "listeners": [
                    {"name": "web", "protocol": "websocket", "max_failed_logins": MAX_FAILED_LOGINS,
                     "endpoint": f"haproxy:tcp:port={web}:interface=127.0.0.1",
                     "trusted_proxies": ["127.0.0.1"]},
                    {"name": "amqp", "protocol": "amqp", "max_failed_logins": MAX_FAILED_LOGINS,
                     "endpoint": f"haproxy:tcp:port={amqp}:interface=127.0.0.1",
                     "trusted_proxies": ["127.0.0.1"]}],
                "promotion": {"mode": "token"},
                "broker_auth": {"endpoint": f"tcp:port={auth}:interface=127.0.0.1"},
                "admin": {"endpoint": f"tcp:port={admin}:interface=127.0.0.1"},
                "permissions": PERMISSIONS,
                "cluster": {"redis": "tcp:host=127.0.0.1:port=6379", "key_file": keyFile, "prefix": prefix},
            }
            with open(os.path.join(self.directory, f"{name}.toml"), "w", encoding="utf-8") as f:
                f.write(dumpToml(document))

    def haproxyConfig(self):
        def servers(kind, proxy=" send-proxy-v2"):
            return "\n".join(f"    server {name} 127.0.0.1:{ports[kind]}{proxy} check port {ports['admin']}"
                             for name, ports in self.gateways.items())
        return HAPROXY_CONFIG.format(socket=self.socket, amqp=self.amqpPort, web=self.webPort,
                                     auth=self.node.authPort, amqpServers=servers("amqp"),
                                     webServers=servers("web"), authServers=servers("auth", ""))

    @defer.inlineCallbacks
    def start(self):
        environment = dict(os.environ, PYTHONPATH=ROOT)
        for name in GATEWAYS:
            self.processes[name] = child(
                [TWISTD, "--nodaemon", "--pidfile=", f"--logfile={self.log(name)}", "kaazing-promo",
                 "--config", os.path.join(self.directory, f"{name}.toml")],
                os.path.join(self.directory, f"{name}.out"), env=environment, cwd=self.directory)
            self.testCase.addCleanup(stopChild, self.processes[name])
        configPath = os.path.join(self.directory, "haproxy.cfg")
        with open(configPath, "w") as f:
            f.write(self.haproxyConfig())
        self.processes["haproxy"] = child([HAPROXY, "-f", configPath, "-db"], self.log("haproxy"))
        self.testCase.addCleanup(stopChild, self.processes["haproxy"])
        ready = yield waitFor(reactor, self.allUp, timeout=60, interval=0.2)
        if not ready:
            raise AssertionError(f"the topology did not come up: {self.status()}; "
                                 f"{[(name, self.tail(name)) for name in GATEWAYS + ('haproxy',)]}")

    def log(self, name):
        return os.path.join(self.directory, f"{name}.log")

    def tail(self, name, lines=15):
        try:
            with open(self.log(name), errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def command(self, line):
        """
        One command of HAProxy's runtime API.

        @return: its answer (L{str}).
        """
        connection = socket.socket(socket.AF_UNIX)
        try:
            connection.settimeout(5)
            connection.connect(self.socket)
            connection.sendall(line.encode() + b"\n")
            answer = b""
            while chunk := connection.recv(65536):
                answer += chunk
        finally:
            connection.close()
        return answer.decode()

    def status(self):
        """
        @return: C{{(backend, server): status}} as HAProxy sees them, or
            C{{}} before its socket answers.
        """
        try:
            lines = self.command("show stat").splitlines()
        except OSError:
            return {}
        if not lines:
            return {}
        fields = lines[0].lstrip("# ").split(",")
        rows = [dict(zip(fields, line.split(","))) for line in lines[1:] if line]
        return {(row["pxname"], row["svname"]): row["status"] for row in rows
                if row.get("svname") in GATEWAYS}

    def allUp(self):
        for process in self.processes.values():
            if process.poll() is not None:
                raise AssertionError(f"a child exited with {process.returncode}: "
                                     f"{[(name, self.tail(name)) for name in GATEWAYS + ('haproxy',)]}")
        status = self.status()
        return len(status) == 6 and all(value == "UP" for value in status.values())

    @defer.inlineCallbacks
    def only(self, backend, name):
        """
        Send C{backend}'s new connections to gateway C{name} alone (the
        other is put in maintenance until L{both}).
        """
        for other in GATEWAYS:
            self.command(f"set server {backend}/{other} state {'ready' if other == name else 'maint'}")
        yield waitFor(reactor, lambda: self.status().get((backend, name)) == "UP", timeout=10)

    @defer.inlineCallbacks
    def both(self, backend):
        for name in GATEWAYS:
            self.command(f"set server {backend}/{name} state ready")
        ok = yield waitFor(reactor, lambda: all(self.status().get((backend, name)) == "UP" for name in GATEWAYS),
                           timeout=10)
        if not ok:
            raise AssertionError(f"{backend} not back: {self.status()}")

    def gatewayLog(self, name):
        with open(self.log(name), errors="replace") as f:
            return f.read()


class ClusterTopologyTests(DedicatedNodeMixin, RedisMixin, unittest.TestCase):
    """
    Issue 20 #4: the scenarios, each through the balancer.
    """

    timeout = 180
    nodeKey = "cluster-topology"

    @defer.inlineCallbacks
    def setUp(self):
        if not os.path.exists(HAPROXY):
            raise unittest.SkipTest("haproxy is not installed (./dev test installs it)")
        node = yield self.startNode()
        self.topology = Topology(self, node, self.prefix)
        yield self.topology.start()
        self.clients = []
        self.addCleanup(lambda: [client.transport.loseConnection() for client in self.clients
                                 if client.transport is not None])

    @defer.inlineCallbacks
    def login(self, password, user="joe.smith"):
        """
        @return: C{"ok"}, or the reply text of the Close that refused the
            login through the balancer's AMQP frontend.
        """
        try:
            client = yield connectTCP(self.topology.amqpPort, user, password, clients=self.clients)
        except Closed as e:
            return getattr(e.args[0], "reply_text", "dropped")
        yield closeClient(client)
        return "ok"

    @defer.inlineCallbacks
    def test_20_4_guessingSpreadIsLimitedAsOne(self):
        """
        Guesses from one host, dealt to both gateways in turn by the round
        robin, are refused after max_failed_logins, as against one gateway;
        the refusals come from both gateways.
        """
        answers = []
        for n in range(MAX_FAILED_LOGINS + 3):
            answers.append((yield self.login(f"guess-{n}")))
        refused = [answer for answer in answers if "too many failed logins" in answer]
        self.assertEqual(len(refused), 3, answers)
        self.assertEqual(answers[:MAX_FAILED_LOGINS], ["ACCESS_REFUSED - Login was refused using authentication "
                                                       "mechanism PLAIN"] * MAX_FAILED_LOGINS)
        self.assertIn("too many failed logins", (yield self.login("joe-pw")))
        for name in GATEWAYS:
            log = self.topology.gatewayLog(name)
            self.assertIn("login bad-credentials", log, name)
            self.assertIn("login rate-limited", log, name)

    @defer.inlineCallbacks
    def test_20_4_ticketThroughTheOtherGatewayOnce(self):
        """
        A ticket issued through gw1 opens a WebSocket through gw2 (whose
        promoted login the broker checks through the balancer), once.
        """
        topology = self.topology
        yield topology.only("be_web", "gw1")
        authorization = base64.b64encode(b"joe.smith:joe-pw").decode()
        response = yield treq.post(f"http://127.0.0.1:{topology.webPort}/amqp/ticket",
                                   headers={"Authorization": f"Basic {authorization}"},
                                   pool=HTTPConnectionPool(reactor, persistent=False))
        self.assertEqual(response.code, 200)
        ticket = json.loads((yield response.text()))["ticket"]
        yield topology.only("be_web", "gw2")
        factories = []
        self.addCleanup(lambda: [f.opened.addErrback(lambda _: None) for f in factories])
        client = yield connectWebSocket(topology.webPort, query=f"?ticket={ticket}", factories=factories)
        yield self.declareAndPublish(client)
        client.wsFactory.closed.addErrback(lambda _: None)
        closed = client.wsFactory.closed
        yield closeClient(client)
        yield closed
        for name in GATEWAYS:
            yield topology.only("be_web", name)
            yield self.assertFailure(
                connectWebSocket(topology.webPort, query=f"?ticket={ticket}", factories=factories),
                ConnectionRefusedWS)
            self.assertIn("unknown, used, expired or foreign ticket", topology.gatewayLog(name))

    @defer.inlineCallbacks
    def declareAndPublish(self, client):
        channel = yield client.channel(1)
        yield channel.channel_open()
        queue = f"tyche.{uuid.uuid4().hex[:8]}"
        yield channel.queue_declare(queue=queue, exclusive=True, auto_delete=True)
        reply = yield channel.basic_consume(queue=queue, no_ack=True)
        incoming = yield client.queue(reply.consumer_tag)
        channel.basic_publish(routing_key=queue, content=Content(b"through the cluster"))
        message = yield incoming.get(timeout=10)
        self.assertEqual(message.content.body, "through the cluster")
        yield channel.channel_close()

    @defer.inlineCallbacks
    def test_20_4_tokenMintedByOneAnsweredByTheOther(self):
        """
        A broker token minted by gw1 (the client's connection) is answered
        by gw2's [broker_auth] (the broker's questions), user, vhost and
        resource questions alike.
        """
        topology = self.topology
        yield topology.only("be_amqp", "gw1")
        yield topology.only("be_auth", "gw2")
        client = yield connectTCP(topology.amqpPort, "joe.smith", "joe-pw", clients=self.clients)
        yield self.declareAndPublish(client)
        channel = yield client.channel(2)
        yield channel.channel_open()
        refused = yield self.assertFailure(channel.queue_declare(queue=f"other.{uuid.uuid4().hex[:8]}"),
                                           Exception)
        self.assertIn("ACCESS_REFUSED", str(refused))
        yield closeClient(client)
        self.assertIn("login ok", topology.gatewayLog("gw1"))
        self.assertNotIn("login ok", topology.gatewayLog("gw2"))
