"""
C{./dev}, the developer entry point (issue 18): C{./dev run} runs the
sample in C{etc/}, starts a local RabbitMQ when nothing answers on the
configured broker endpoint and says so, and installs into the venv only
when the source or the pins changed.

The shell logic runs for real on a copy of the checkout, against a fake
venv (C{pip} and C{twistd} that record their arguments) and fake
C{rabbitmq-server}, C{rabbitmqctl} and C{apt-get} first on C{PATH}: no
package is installed and no broker is started.
"""

import importlib.util
import os
import shutil
import socket
import stat
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

from kaazing_promo.config import DEFAULT_BROKER

from tests import ROOT

#: What ./dev reads of the checkout.
CHECKOUT_FILES = ("dev", ".ci", "setup.cfg", "pyproject.toml", "MANIFEST.in", "constraints.txt",
                  "kaazing_promo", "twisted", "etc")


def loadBrokerScript():
    """
    @return: C{.ci/broker.py} as a module.
    """
    spec = importlib.util.spec_from_file_location("ci_broker", os.path.join(ROOT, ".ci", "broker.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


broker = loadBrokerScript()


def unusedPort():
    """
    @return: a loopback TCP port nothing listens on (just released).
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def writeScript(path, text):
    with open(path, "w") as f:
        f.write("#!/bin/sh\n" + text)
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)


class BrokerAddressTests(SynchronousTestCase):
    """
    C{.ci/broker.py}: which broker endpoint ./dev would start RabbitMQ on.
    """

    def test_tcpAddress(self):
        """
        Keyword and positional host and port, C{tcp6:} with escaped colons
        and C{tls:}; other kinds have no address.
        """
        self.assertEqual(broker.tcpAddress("tcp:host=127.0.0.1:port=5672"), ("127.0.0.1", 5672))
        self.assertEqual(broker.tcpAddress("tcp:localhost:5999"), ("localhost", 5999))
        self.assertEqual(broker.tcpAddress(r"tcp6:host=\:\:1:port=5672:timeout=3"), ("::1", 5672))
        self.assertEqual(broker.tcpAddress("tls:host=rabbit.example.com:port=5671"), ("rabbit.example.com", 5671))
        self.assertIsNone(broker.tcpAddress("unix:path=/run/rabbitmq.sock"))
        self.assertIsNone(broker.tcpAddress("tcp:host=127.0.0.1"))

    def test_startOnlyWhenNothingAnswers(self):
        """
        The first local endpoint, when no endpoint answers; nothing when one
        answers or when every endpoint is on another host.
        """
        silent = lambda host, port: False  # noqa: E731
        self.assertEqual(broker.brokerToStart(["tcp:host=127.0.0.1:port=5999"], silent), ("127.0.0.1", 5999))
        self.assertEqual(broker.brokerToStart(
            ["tcp:host=rabbit.example.com:port=5672", "tcp:localhost:5672"], silent), ("localhost", 5672))
        self.assertIsNone(broker.brokerToStart(["tcp:host=rabbit.example.com:port=5672"], silent))
        answering = lambda host, port: port == 5672  # noqa: E731
        self.assertIsNone(broker.brokerToStart(["tcp:host=127.0.0.1:port=5999", "tcp:localhost:5672"], answering))

    def test_answers(self):
        """
        A listening socket answers; a released port does not.
        """
        with socket.socket() as server:
            server.bind(("127.0.0.1", 0))
            server.listen(1)
            self.assertTrue(broker.answers(*server.getsockname()))
        self.assertFalse(broker.answers("127.0.0.1", unusedPort()))

    def test_defaultEndpoint(self):
        """
        Without a configuration, the gateway's default broker endpoint.
        """
        self.assertEqual(broker.tcpAddress(DEFAULT_BROKER), ("127.0.0.1", 5672))


class DevScriptTests(SynchronousTestCase):
    """
    C{./dev run} on a copy of the checkout with a fake venv and fake
    RabbitMQ and apt-get.
    """

    def setUp(self):
        base = os.path.abspath(self.mktemp())
        self.checkout = os.path.join(base, "checkout")
        os.makedirs(self.checkout)
        for name in CHECKOUT_FILES:
            source = os.path.join(ROOT, name)
            if os.path.isdir(source):
                shutil.copytree(source, os.path.join(self.checkout, name), symlinks=True,
                                ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "dropin.cache"))
            else:
                shutil.copy2(source, os.path.join(self.checkout, name))
        self.record = os.path.join(base, "record")
        self.venv = os.path.join(base, "venv")
        os.makedirs(os.path.join(self.venv, "bin"))
        # The venv's Python is the one running the tests (kaazing_promo from the copy).
        writeScript(os.path.join(self.venv, "bin", "python"), f'exec "{sys.executable}" "$@"\n')
        writeScript(os.path.join(self.venv, "bin", "pip"), f'echo "pip $*" >>"{self.record}"\n')
        for program in ("twistd", "kaazing-promo"):
            writeScript(os.path.join(self.venv, "bin", program), f'echo "{program} $* (in $PWD)" >>"{self.record}"\n')
        self.fakes = os.path.join(base, "bin")
        os.makedirs(self.fakes)
        writeScript(os.path.join(self.fakes, "rabbitmq-server"),
                    'echo "rabbitmq-server $* port=$RABBITMQ_NODE_PORT ip=$RABBITMQ_NODE_IP_ADDRESS"'
                    f' >>"{self.record}"\n')
        self.nodeRunning(False)
        writeScript(os.path.join(self.fakes, "apt-get"), f'echo "apt-get $*" >>"{self.record}"; exit 1\n')

    def nodeRunning(self, running):
        """
        Make the fake C{rabbitmqctl status} say whether a node runs.
        """
        writeScript(os.path.join(self.fakes, "rabbitmqctl"),
                    f'echo "rabbitmqctl $*" >>"{self.record}"\n'
                    f'[ "$2" != status ] || exit {0 if running else 69}\n')

    def dev(self, *arguments):
        """
        Run the copy's C{./dev ARGUMENTS} from its directory.

        @return: C{(what the fakes recorded, standard error)}.
        """
        if os.path.exists(self.record):
            os.remove(self.record)
        env = dict(os.environ, KAAZING_PROMO_VENV=self.venv, PYTHONPATH=self.checkout,
                   PATH=self.fakes + os.pathsep + os.environ["PATH"])
        env.pop("KAAZING_PROMO_NO_INSTALL", None)
        result = subprocess.run(["./dev", *arguments], cwd=self.checkout, env=env, capture_output=True,
                                text=True, timeout=60, stdin=subprocess.DEVNULL)
        self.assertEqual(result.returncode, 0, result.stderr)
        with open(self.record) as f:
            return f.read().splitlines(), result.stderr

    def configWithBroker(self, port):
        """
        A copy of the sample whose broker endpoint is 127.0.0.1:C{port}.
        """
        with open(os.path.join(self.checkout, "etc", "gateway.toml")) as f:
            text = f.read()
        path = os.path.join(self.checkout, "etc", "other.toml")
        with open(path, "w") as f:
            f.write(text.replace("tcp:host=127.0.0.1:port=5672", f"tcp:host=127.0.0.1:port={port}"))
        return path

    def test_runsTheSampleInEtc(self):
        """
        C{./dev run} without C{--config} runs C{etc/gateway.toml}, the file
        people edit, not the copy packaged into the venv; with C{--config}
        it runs that file.
        """
        with socket.socket() as server:
            server.bind(("127.0.0.1", 0))
            server.listen(1)
            other = self.configWithBroker(server.getsockname()[1])
            calls, _ = self.dev("run")
            self.assertIn(f"twistd -n --pidfile= kaazing-promo --config etc/gateway.toml (in {self.checkout})", calls)
            calls, _ = self.dev("run", "--config", other)
            self.assertIn(f"twistd -n --pidfile= kaazing-promo --config {other} (in {self.checkout})", calls)
            calls, _ = self.dev("run", f"--config={other}")
            self.assertIn(f"twistd -n --pidfile= kaazing-promo --config={other} (in {self.checkout})", calls)

    def test_startsRabbitMQWhenNothingAnswers(self):
        """
        Nothing answers on the configured broker endpoint and no node runs:
        C{./dev run} starts RabbitMQ on that port, says so, waits for it,
        then runs the gateway.
        """
        port = unusedPort()
        other = self.configWithBroker(port)
        calls, stderr = self.dev("run", "--config", other)
        self.assertIn(f"starting RabbitMQ on 127.0.0.1:{port}: nothing answered there", stderr)
        start = calls.index(f"rabbitmq-server -detached port={port} ip=127.0.0.1")
        self.assertEqual(calls[start + 1], "rabbitmqctl -q await_startup")
        self.assertTrue(calls[-1].startswith(f"twistd -n --pidfile= kaazing-promo --config {other}"), calls)

    def test_noSecondNode(self):
        """
        A RabbitMQ node already runs (on other ports): nothing is started,
        and ./dev says why the gateway will refuse clients.
        """
        self.nodeRunning(True)
        port = unusedPort()
        calls, stderr = self.dev("run", "--config", self.configWithBroker(port))
        self.assertIn(f"nothing answers on 127.0.0.1:{port}", stderr)
        self.assertIn("not starting another", stderr)
        self.assertEqual([call for call in calls if call.startswith("rabbitmq-server")], [])

    def test_nothingStartedWhenTheBrokerAnswers(self):
        """
        Something answers on the broker endpoint: no RabbitMQ command runs.
        """
        with socket.socket() as server:
            server.bind(("127.0.0.1", 0))
            server.listen(1)
            calls, stderr = self.dev("run", "--config", self.configWithBroker(server.getsockname()[1]))
        self.assertEqual([call for call in calls if call.startswith("rabbitmq")], [])
        self.assertNotIn("RabbitMQ", stderr)

    def test_installsOnlyWhenSomethingChanged(self):
        """
        The first start installs into the venv with the pins; the next does
        not run pip at all; a changed source file or pin installs again.
        """
        with socket.socket() as server:
            server.bind(("127.0.0.1", 0))
            server.listen(1)
            other = self.configWithBroker(server.getsockname()[1])
            calls, stderr = self.dev("run", "--config", other)
            constraints = os.path.join(self.checkout, "constraints.txt")
            self.assertEqual([call for call in calls if call.startswith("pip")],
                             [f"pip install -q -c {constraints} .[test]"])
            self.assertIn("installing kaazing-promo", stderr)
            calls, stderr = self.dev("run", "--config", other)
            self.assertEqual([call for call in calls if call.startswith("pip")], [])
            self.assertEqual(stderr, "")
            with open(os.path.join(self.checkout, "kaazing_promo", "tap.py"), "a") as f:
                f.write("\n")
            calls, _ = self.dev("run", "--config", other)
            self.assertEqual(len([call for call in calls if call.startswith("pip")]), 1)
            calls, _ = self.dev("kaazing-promo", "--help")
            self.assertEqual([call for call in calls if call.startswith("pip")], [])
            with open(constraints, "a") as f:
                f.write("# changed\n")
            calls, _ = self.dev("run", "--config", other)
            self.assertEqual(len([call for call in calls if call.startswith("pip")]), 1)

    def test_forwardsToTheVenv(self):
        """
        C{./dev TOOL ARGS} runs the venv's program from the caller's
        directory; an unknown name is a usage error, not an install.
        """
        os.makedirs(os.path.join(self.checkout, "sub"))
        env = dict(os.environ, KAAZING_PROMO_VENV=self.venv, KAAZING_PROMO_NO_INSTALL="1",
                   PATH=self.fakes + os.pathsep + os.environ["PATH"])
        subprocess.run(["../dev", "kaazing-promo", "check-config", "x.toml"], cwd=os.path.join(self.checkout, "sub"),
                       env=env, check=True, timeout=60)
        with open(self.record) as f:
            self.assertEqual(f.read(), f"kaazing-promo check-config x.toml (in {self.checkout}/sub)\n")
        result = subprocess.run(["./dev", "no-such-tool"], cwd=self.checkout, env=env, capture_output=True,
                                text=True, timeout=60)
        self.assertEqual(result.returncode, 2)
        self.assertIn("usage: ./dev run", result.stderr)

    def barePath(self):
        """
        A C{PATH} with the shell tools ./dev uses, Python and the failing
        fake apt-get, and none of the Debian packages the suite needs.
        """
        bare = os.path.join(os.path.dirname(self.fakes), "bare")
        os.makedirs(bare)
        for name in ("bash", "sh", "dirname", "basename", "find", "sort", "xargs", "sha256sum", "cut", "cat",
                     "rm", "id", "env", "tee", "sed", "grep", "mktemp"):
            os.symlink(shutil.which(name), os.path.join(bare, name))
        # The Python the tests run on, which has venv (ensurepip): no python3-venv wanted.
        os.symlink(os.path.realpath(sys.executable), os.path.join(bare, "python3"))
        os.symlink(os.path.join(self.fakes, "apt-get"), os.path.join(bare, "apt-get"))
        return bare

    def test_unitTestsNeedNothingElse(self):
        """
        C{./dev test --unit} on a machine without RabbitMQ, Redis or any of
        the Debian packages the integration tests need: it installs into
        the venv as usual and runs trial on tests.unit (or the tests named),
        asking apt-get, RabbitMQ and Redis for nothing.
        """
        writeScript(os.path.join(self.venv, "bin", "python"), f'echo "python $*" >>"{self.record}"\n')
        env = dict(os.environ, KAAZING_PROMO_VENV=self.venv, PATH=self.barePath())
        for arguments, tests in ((), ["tests.unit"]), (("tests.unit.test_dev",), ["tests.unit.test_dev"]):
            if os.path.exists(self.record):
                os.remove(self.record)
            result = subprocess.run(["./dev", "test", "--unit", *arguments], cwd=self.checkout, env=env,
                                    capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
            self.assertEqual(result.returncode, 0, result.stderr)
            self.assertNotIn("Debian packages", result.stderr)
            with open(self.record) as f:
                recorded = f.read().splitlines()
            self.assertEqual(recorded[-1], " ".join(["python", "-m", "twisted.trial", *tests]))
            self.assertEqual([line for line in recorded if not line.startswith(("pip ", "python -m twisted.trial"))],
                             [], result.stderr)

    def test_testSaysWhatItInstalls(self):
        """
        C{./dev test} on a machine missing Debian packages names them before
        it runs apt-get (here a fake that fails, which stops ./dev).
        """
        env = dict(os.environ, KAAZING_PROMO_VENV=self.venv, PATH=self.barePath())
        result = subprocess.run(["./dev", "test"], cwd=self.checkout, env=env, capture_output=True, text=True,
                                timeout=60, stdin=subprocess.DEVNULL)
        self.assertNotEqual(result.returncode, 0)
        # ./dev also finds haproxy at /usr/sbin, outside the bare PATH: whether
        # it is asked for depends on this machine.
        haproxy = [] if os.access("/usr/sbin/haproxy", os.X_OK) else ["haproxy"]
        packages = ["rabbitmq-server", "chromium", "fonts-liberation", "nodejs", "npm", "systemd", "curl",
                    "redis-server", *haproxy, "podman", "runc", "debootstrap"]
        self.assertIn("about to install Debian packages (apt-get update, then apt-get install; needs root): "
                      + " ".join(packages), result.stderr)
        if os.getuid() != 0:
            self.assertIn("not root: run  sudo apt-get install rabbitmq-server", result.stderr)
            return
        with open(self.record) as f:
            self.assertEqual(f.read().splitlines(), ["apt-get update -q"])


class CIRunTests(SynchronousTestCase):
    """
    C{.ci/run}: C{./dev test} in a fresh venv that it removes afterwards.
    """

    def ciRun(self, status):
        """
        Run a copy of C{.ci/run} whose C{./dev} records the venv it was
        given, fills it and exits with C{status}.

        @return: C{(exit code, the venv path ./dev was given)}.
        """
        checkout = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(checkout, ".ci"))
        shutil.copy2(os.path.join(ROOT, ".ci", "run"), os.path.join(checkout, ".ci", "run"))
        record = os.path.join(checkout, "record")
        writeScript(os.path.join(checkout, "dev"),
                    f'echo "$*" >"{record}"; echo "$KAAZING_PROMO_VENV" >>"{record}"\n'
                    'mkdir -p "$KAAZING_PROMO_VENV/bin" && touch "$KAAZING_PROMO_VENV/bin/python"\n'
                    f'exit {status}\n')
        result = subprocess.run(["bash", ".ci/run"], cwd=checkout, capture_output=True, text=True, timeout=60,
                                stdin=subprocess.DEVNULL)
        with open(record) as f:
            arguments, venv = f.read().splitlines()
        self.assertEqual(arguments, "test")
        return result.returncode, venv

    def test_venvRemovedAfterAPass(self):
        code, venv = self.ciRun(0)
        self.assertEqual(code, 0)
        self.assertTrue(venv.startswith("/tmp/kaazing-promo-ci-venv."), venv)
        self.assertFalse(os.path.exists(venv))

    def test_venvRemovedAfterAFailure(self):
        """
        A failing suite still leaves no venv behind, and CI fails with it.
        """
        code, venv = self.ciRun(1)
        self.assertEqual(code, 1)
        self.assertFalse(os.path.exists(venv))
