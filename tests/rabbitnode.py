"""
A dedicated RabbitMQ node for tests and benchmarks (see RABBITMQ.md): its
own node name, ports, data directory and C{rabbitmq.conf}, started as a
child of the test process through the reactor and always stopped.

  - Started with C{reactor.spawnProcess}; its output goes to a file, not a
    pipe, so between tests the reactor holds nothing of it (trial's janitor
    removes every selectable after each test).
  - C{setpriv --pdeathsig TERM}: if the test process dies, even by SIGKILL,
    the node's start script gets SIGTERM and stops the VM.
  - Ready when its AMQP port accepts (polled every 0.1 s with
    L{task.deferLater}) and C{rabbitmqctl await_startup} says so; bounded.
  - L{DedicatedNodeMixin} starts one node per test class (or per family of
    classes naming the same C{nodeKey}) on first use, and stops it after the
    last of that class's tests; an C{atexit} hook and the parent-death signal
    stop it whatever happens.
"""

import atexit
import collections
import glob
import os
import random
import shutil
import signal
import string
import tempfile

from twisted.internet import defer, protocol, task, utils
from twisted.internet.endpoints import TCP4ClientEndpoint

from tests.processes import POLL_INTERVAL, freePorts

RABBITMQ_BIN = os.environ.get("RABBITMQ_BIN", "/usr/lib/rabbitmq/bin")
SETPRIV = shutil.which("setpriv")
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


class NodeFailed(Exception):
    """
    The dedicated node did not start (the message holds its console's tail).
    """


class _NodeProcess(protocol.ProcessProtocol):
    def __init__(self):
        self.reason = None
        self._waiting = []

    def processEnded(self, reason):
        self.reason = reason
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)

    def whenEnded(self):
        if self.reason is not None:
            return defer.succeed(None)
        d = defer.Deferred()
        self._waiting.append(d)
        return d


class RabbitNode:
    """
    One dedicated RabbitMQ node.

    @param authBackends: the C{auth_backends.N} values, in order.
    @param plugins: the plugins to enable.
    @param vhosts: virtual hosts to create once it is up (one rabbitmqctl call).
    @param extraConfig: further C{rabbitmq.conf} lines.
    @param advancedConfig: the text of C{advanced.config}, or L{None}.
    @ivar authPort: the port the C{auth_http.*_path} URLs name; a gateway's
        C{[broker_auth]} must listen on it (L{authEndpoint}).
    """

    _count = 0

    def __init__(self, reactor=None, authBackends=("http",), plugins=("rabbitmq_auth_backend_http",),
                 vhosts=(), extraConfig=(), advancedConfig=None, logLevel="debug", directory=None):
        if reactor is None:
            from twisted.internet import reactor
        self.reactor = reactor
        RabbitNode._count += 1
        self.name = f"kp_test_{os.getpid()}_{RabbitNode._count}@localhost"
        self.amqpPort, self.distPort, self.authPort = freePorts(3)
        self.directory = os.path.abspath(directory or tempfile.mkdtemp(prefix="rabbitnode-", dir="."))
        self.logDir = os.path.join(self.directory, "log")
        self.console = os.path.join(self.directory, "console.log")
        self.authBackends = tuple(authBackends)
        self.plugins = tuple(plugins)
        self.vhosts = tuple(vhosts)
        self.extraConfig = tuple(extraConfig)
        self.advancedConfig = advancedConfig
        self.logLevel = logLevel
        self.startSeconds = None
        self._process = None
        self._transport = None

    @property
    def authEndpoint(self):
        """
        The server endpoint string for a gateway's C{[broker_auth]}.
        """
        return f"tcp:{self.authPort}:interface=127.0.0.1"

    @property
    def brokerEndpoint(self):
        """
        The client endpoint string for a gateway's C{[broker] endpoint}.
        """
        return f"tcp:host=127.0.0.1:port={self.amqpPort}"

    @property
    def running(self):
        return self._process is not None and self._process.reason is None

    def environment(self):
        d = self.directory
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "HOME": d,
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.amqpPort),
            "RABBITMQ_DIST_PORT": str(self.distPort),
            "RABBITMQ_CONF_ENV_FILE": os.path.join(d, "rabbitmq-env.conf"),
            "RABBITMQ_CONFIG_FILE": os.path.join(d, "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": os.path.join(d, "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": os.path.join(d, "mnesia"),
            "RABBITMQ_LOG_BASE": self.logDir,
            "RABBITMQ_PID_FILE": os.path.join(d, "node.pid"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }
        if self.advancedConfig is not None:
            env["RABBITMQ_ADVANCED_CONFIG_FILE"] = os.path.join(d, "advanced.config")
        return env

    def configText(self):
        lines = [
            f"listeners.tcp.default = 127.0.0.1:{self.amqpPort}",
            "distribution.listener.interface = 127.0.0.1",
            f"distribution.listener.port_range.min = {self.distPort}",
            f"distribution.listener.port_range.max = {self.distPort}",
            f"log.file.level = {self.logLevel}",
        ]
        lines += [f"auth_backends.{i} = {backend}" for i, backend in enumerate(self.authBackends, 1)]
        if "http" in self.authBackends:
            lines.append("auth_http.http_method = post")
            for path in ("user", "vhost", "resource", "topic"):
                lines.append(f"auth_http.{path}_path = http://127.0.0.1:{self.authPort}/auth/{path}")
        lines += self.extraConfig
        return "\n".join(lines) + "\n"

    def _writeFiles(self):
        d = self.directory
        os.makedirs(self.logDir, exist_ok=True)
        cookie = os.path.join(d, ".erlang.cookie")
        with open(cookie, "w") as f:
            f.write("".join(random.SystemRandom().choice(string.ascii_uppercase) for _ in range(20)))
        os.chmod(cookie, 0o400)
        with open(os.path.join(d, "rabbitmq-env.conf"), "w"):
            pass
        with open(os.path.join(d, "enabled_plugins"), "w") as f:
            f.write(f"[{','.join(self.plugins)}].\n")
        with open(os.path.join(d, "rabbitmq.conf"), "w") as f:
            f.write(self.configText())
        if self.advancedConfig is not None:
            with open(os.path.join(d, "advanced.config"), "w") as f:
                f.write(self.advancedConfig)

    @defer.inlineCallbacks
    def start(self, timeout=START_TIMEOUT):
        """
        Start the node and wait until it is ready.

        @return: a L{Deferred} firing with this node, or failing with
            L{NodeFailed} (the node is stopped then).
        """
        began = self.reactor.seconds()
        self._writeFiles()
        server = os.path.join(RABBITMQ_BIN, "rabbitmq-server")
        # Run directly (not /usr/sbin's su wrapper, which caps open files at
        # 1024), with the hard open-files limit as the soft one.
        command = ["sh", "-c", 'ulimit -Sn "$(ulimit -Hn)"; exec "$0"', server]
        if SETPRIV is not None:
            command = [SETPRIV, "--pdeathsig", "TERM", "--"] + command
        self._process = _NodeProcess()
        devnull = os.open(os.devnull, os.O_RDONLY)
        console = os.open(self.console, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            self._transport = self.reactor.spawnProcess(
                self._process, command[0], command, env=self.environment(), path=self.directory,
                childFDs={0: devnull, 1: console, 2: console})
        finally:
            os.close(devnull)
            os.close(console)
        _started.add(self)
        try:
            yield self._waitReady(began + timeout)
            if self.vhosts:
                statements = ", ".join(f'rabbit_vhost:add(<<"{vhost}">>, <<"test">>)' for vhost in self.vhosts)
                yield self.ctl("eval", statements + ", ok.")
        except Exception as e:
            yield self.stop()
            raise NodeFailed(f"{self.name} did not start: {e}; console: {self.consoleTail()}")
        self.startSeconds = self.reactor.seconds() - began
        return self

    @defer.inlineCallbacks
    def _waitReady(self, deadline):
        while True:
            if not self.running:
                raise NodeFailed("its start script exited")
            if (yield self._accepts()):
                break
            if self.reactor.seconds() > deadline:
                raise NodeFailed("its AMQP port never accepted")
            yield task.deferLater(self.reactor, POLL_INTERVAL, lambda: None)
        left = max(1, int(deadline - self.reactor.seconds()))
        yield self.ctl("await_startup", "--timeout", str(left))

    @defer.inlineCallbacks
    def _accepts(self):
        endpoint = TCP4ClientEndpoint(self.reactor, "127.0.0.1", self.amqpPort, timeout=1)
        try:
            connection = yield endpoint.connect(protocol.Factory.forProtocol(protocol.Protocol))
        except Exception:
            return False
        connection.transport.abortConnection()
        return True

    @defer.inlineCallbacks
    def ctl(self, *args, timeout=60):
        """
        Run C{rabbitmqctl -q -n NODE ARGS} against this node (each call
        costs about 0.5 s: batch what you can).

        @return: a L{Deferred} firing with its standard output (L{str}).
        """
        d = utils.getProcessOutputAndValue(
            os.path.join(RABBITMQ_BIN, "rabbitmqctl"), ["-q", "-n", self.name, *args],
            env=self.environment(), path=self.directory, reactor=self.reactor)
        d.addTimeout(timeout, self.reactor)
        out, err, code = yield d
        if code != 0:
            raise NodeFailed(f"rabbitmqctl {args[0]} exited {code}: {err.decode(errors='replace').strip()}")
        return out.decode("utf-8", "replace")

    @defer.inlineCallbacks
    def stop(self, timeout=STOP_TIMEOUT):
        """
        Stop the node (SIGTERM to its start script, which stops the VM),
        killing it if it does not go within C{timeout}; then remove its
        directory unless C{KP_KEEP_RABBIT_DIR} is set.
        """
        if self.running:
            self._transport.signalProcess("TERM")
            ended = self._process.whenEnded()
            ended.addTimeout(timeout, self.reactor)
            try:
                yield ended
            except defer.TimeoutError:
                self._kill()
                yield self._process.whenEnded()
        _started.discard(self)
        if not os.environ.get("KP_KEEP_RABBIT_DIR"):
            shutil.rmtree(self.directory, ignore_errors=True)

    def _vmPid(self):
        try:
            with open(os.path.join(self.directory, "node.pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def _kill(self):
        for pid in (self._vmPid(), self._transport.pid if self._transport else None):
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass

    def terminate(self):
        """
        At interpreter exit: ask the node to stop (SIGTERM), without waiting.
        """
        if self.running and self._transport.pid:
            try:
                os.kill(self._transport.pid, signal.SIGTERM)
            except OSError:
                pass

    def logText(self):
        """
        @return: everything the node logged so far: its log directory's
            files and its console output.
        """
        texts = []
        for path in sorted(glob.glob(os.path.join(self.logDir, "*"))) + [self.console]:
            try:
                with open(path, encoding="utf-8", errors="replace") as f:
                    texts.append(f.read())
            except OSError:
                pass
        return "\n".join(texts)

    def consoleTail(self, lines=20):
        try:
            with open(self.console, encoding="utf-8", errors="replace") as f:
                return " | ".join(f.read().splitlines()[-lines:])
        except OSError:
            return "(no console output)"


_started = set()


@atexit.register
def _terminateAll():
    for node in list(_started):
        node.terminate()


# Per node key: how many loaded tests have not started yet, and the node
# (or the failure of its start).
_pending = collections.Counter()
_shared = {}


class DedicatedNodeMixin:
    """
    For a trial L{TestCase}: one dedicated node for all the tests of a class
    (or of every class with the same L{nodeKey}), started by the first test
    that calls L{startNode} and stopped after the last one.

    Trial builds every test instance before running any, so counting
    instances tells which test is the last; should a count be off (a skipped
    last test), the node is stopped at interpreter exit instead.
    """

    #: Classes with the same key share a node; the class itself by default.
    nodeKey = None

    #: Keyword arguments for L{RabbitNode}.
    nodeOptions = {}

    def __init__(self, methodName="runTest"):
        super().__init__(methodName)
        if methodName.startswith("test"):
            _pending[self._nodeKey()] += 1

    @classmethod
    def _nodeKey(cls):
        return cls.nodeKey or cls

    @defer.inlineCallbacks
    def startNode(self):
        """
        Call first in C{setUp}: the node's stop is then the last cleanup.

        @return: a L{Deferred} firing with the shared L{RabbitNode}.
        """
        key = self._nodeKey()
        _pending[key] -= 1
        if _pending[key] <= 0:
            self.addCleanup(_stopShared, key)
        if key not in _shared:
            node = RabbitNode(**self.nodeOptions)
            try:
                _shared[key] = yield node.start()
            except NodeFailed as e:
                _shared[key] = e
        node = _shared[key]
        if isinstance(node, NodeFailed):
            raise node
        return node


def _stopShared(key):
    node = _shared.pop(key, None)
    if isinstance(node, RabbitNode):
        return node.stop()
