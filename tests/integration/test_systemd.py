"""
S2: the systemd units in etc/ are valid, and the exact ExecStart command
line they hold starts the gateway with the shipped configuration, plain and
socket-activated.

C{systemd-analyze verify} insists that every program an C{Exec*=} line
names exists and is executable.  The install puts twistd at
C{/opt/kaazing-promo/venv/bin/twistd}; the test does not write to /opt but
builds a small root (C{--root}): the host's unit directory (for
C{sysinit.target} and friends), the units under test in its
C{/etc/systemd/system}, and each Exec program copied to the path the unit
names.  A symlink would not do: under C{--root} systemd resolves it inside
the root.
"""

import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from tests.processes import directive, execStart, ETC, TWISTD, instance, unitEnvironment, waitForStart

SERVICE = os.path.join(ETC, "kaazing-promo.service")
SOCKET = os.path.join(ETC, "kaazing-promo.socket")
SOCKET_DROPIN = os.path.join(ETC, "kaazing-promo.service.d", "socket-activation.conf.example")
HOST_UNITS = ("/usr/lib/systemd/system", "/lib/systemd/system")


def systemdAnalyze():
    """
    @return: the path of systemd-analyze, installing Debian's systemd
        package when it is missing and this is a root shell with apt-get.
    @raise SkipTest: it is missing and cannot be installed.
    """
    found = shutil.which("systemd-analyze")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "systemd"],
                       env=env, capture_output=True, timeout=600)
        found = shutil.which("systemd-analyze")
        if found:
            return found
    raise SkipTest("systemd-analyze is not installed (Debian package systemd; .ci/run installs it)")


class VerifyTests(SynchronousTestCase):
    """
    S2: C{systemd-analyze verify} passes on the shipped unit and socket,
    wherever the program ExecStart names exists.
    """

    def setUp(self):
        self.analyze = systemdAnalyze()
        self.root = tempfile.mkdtemp(prefix="kaazing-promo-root-")
        self.addCleanup(shutil.rmtree, self.root)
        hostUnits = next((path for path in HOST_UNITS if os.path.isfile(os.path.join(path, "sysinit.target"))),
                         None)
        if hostUnits is None:
            raise SkipTest("the host has no systemd unit directory to verify against")
        shutil.copytree(hostUnits, os.path.join(self.root, "usr", "lib", "systemd", "system"), symlinks=True)
        self.units = os.path.join(self.root, "etc", "systemd", "system")
        os.makedirs(self.units)
        for path in (SERVICE, SOCKET):
            shutil.copy(path, self.units)

    def installPrograms(self, paths):
        """
        Put each program the units' Exec lines name at that path in the
        root: the venv's twistd for ExecStart, the host's own for the rest.
        """
        for key in ("ExecStart", "ExecReload"):
            for command in directive(paths, "Service", key):
                program = shlex.split(command)[0]
                source = TWISTD if program == execStart(paths)[0] else shutil.which(os.path.basename(program))
                target = os.path.join(self.root, program.lstrip("/"))
                os.makedirs(os.path.dirname(target), exist_ok=True)
                shutil.copy(source, target)
                os.chmod(target, 0o755)

    def verify(self, *names):
        return subprocess.run(
            [self.analyze, "verify", f"--root={self.root}"] + [os.path.join(self.units, name) for name in names],
            capture_output=True, text=True, timeout=120)

    def test_S2_serviceAndSocketVerify(self):
        """
        S2: the service and the socket pass systemd-analyze verify, with no
        warning at all.
        """
        self.installPrograms([SERVICE])
        result = self.verify("kaazing-promo.service", "kaazing-promo.socket")
        self.assertEqual((result.returncode, result.stdout + result.stderr), (0, ""))

    def test_S2_socketActivationDropInVerifies(self):
        """
        S2: with the socket-activation drop-in in place, the unit still verifies.
        """
        dropIns = os.path.join(self.units, "kaazing-promo.service.d")
        os.makedirs(dropIns)
        shutil.copy(SOCKET_DROPIN, os.path.join(dropIns, "socket-activation.conf"))
        self.installPrograms([SERVICE, SOCKET_DROPIN])
        result = self.verify("kaazing-promo.service", "kaazing-promo.socket")
        self.assertEqual((result.returncode, result.stdout + result.stderr), (0, ""))

    def test_S2_missingProgramFails(self):
        """
        S2: the check is real: without the program ExecStart names, verify fails and says so.
        """
        result = self.verify("kaazing-promo.service")
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("/opt/kaazing-promo/venv/bin/twistd is not executable", result.stderr)


def substitute(argv, program, config):
    """
    Replace only the program path and the value of --config.
    """
    argv = list(argv)
    assert argv[0] == "/opt/kaazing-promo/venv/bin/twistd", argv
    argv[0] = program
    index = argv.index("--config")
    argv[index + 1] = config
    return argv


# Binds the socket unit's ListenStream addresses (ports moved to free ones),
# writes the ports to a file, then becomes twistd with the sockets as fds
# 3, 4, ... and LISTEN_FDS/LISTEN_PID set as systemd sets them.
SOCKET_WRAPPER = """\
import fcntl, os, socket, sys
portsFile, addresses, argv = sys.argv[1], sys.argv[2].split(","), sys.argv[3:]
sockets = []
for address in addresses:
    host, _, port = address.rpartition(":")
    listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listening.bind((host, 0))
    listening.listen(128)
    sockets.append(listening)
with open(portsFile, "w") as stream:
    stream.write(",".join(str(s.getsockname()[1]) for s in sockets))
# Out of the way first, so that no socket is overwritten before it is moved.
high = [fcntl.fcntl(listening.fileno(), fcntl.F_DUPFD, 100) for listening in sockets]
for index, fd in enumerate(high):
    os.dup2(fd, 3 + index)
    os.set_inheritable(3 + index, True)
os.environ["LISTEN_FDS"] = str(len(sockets))
os.environ["LISTEN_PID"] = str(os.getpid())
os.environ["LISTEN_FDNAMES"] = ":".join(["kaazing-promo.socket"] * len(sockets))
os.execv(argv[0], argv)
"""


class ExecStartTests(SynchronousTestCase):
    """
    S2: the ExecStart line of the unit, read from the file, starts a
    gateway that answers AMQP and stops cleanly on SIGTERM.
    """

    def start(self, argv, cwd):
        log = open(os.path.join(cwd, "twistd.log"), "w+")
        self.addCleanup(log.close)
        process = subprocess.Popen(argv, cwd=cwd, env=unitEnvironment(), stdout=log, stderr=subprocess.STDOUT)
        self.addCleanup(self.kill, process)
        return process, log

    def kill(self, process):
        if process.poll() is None:
            process.kill()
            process.wait()

    def stop(self, process, log):
        """
        SIGTERM, as C{systemctl stop} sends (KillSignal=SIGTERM): the
        gateway drains and twistd exits 0, not "killed by SIGTERM" (143),
        which twistd's own handler would make of it.
        """
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        log.seek(0)
        output = log.read()
        self.assertEqual(process.returncode, 0, output)
        self.assertIn("SIGTERM: stopping", output)
        self.assertIn("Server Shut Down.", output)
        self.assertNotIn("Traceback", output)
        return output

    def assertConnectionStart(self, payload):
        self.assertEqual((int.from_bytes(payload[0:2], "big"), int.from_bytes(payload[2:4], "big")), (10, 10),
                         "the first frame is Connection.Start")
        self.assertIn(b"PLAIN", payload)

    def test_S2_execStartRunsShippedConfig(self):
        """
        S2: ExecStart from etc/kaazing-promo.service, with only the program
        (this venv's twistd) and the config path (a copy of etc/gateway.toml
        on free ports) replaced, brings the gateway up: its AMQP listener
        answers the protocol header with Connection.Start.
        """
        argv = execStart([SERVICE])
        [workingDirectory] = directive([SERVICE], "Service", "WorkingDirectory")
        self.assertEqual(os.path.dirname(argv[argv.index("--config") + 1]), workingDirectory)
        directory, config, ports = instance("gateway.toml")
        self.addCleanup(shutil.rmtree, directory)
        process, log = self.start(substitute(argv, TWISTD, config), cwd=directory)
        self.assertConnectionStart(waitForStart(ports["amqp"], process))
        with socket.create_connection(("127.0.0.1", ports["web"]), timeout=5):
            pass
        output = self.stop(process, log)
        self.assertIn("listener amqp: amqp on tcp:", output)

    def test_S2_socketActivation(self):
        """
        S2: the socket-activation variant (drop-in ExecStart, gateway-socket.toml)
        takes its listening sockets from LISTEN_FDS, in the order of the
        socket unit's ListenStream lines.
        """
        argv = execStart([SERVICE, SOCKET_DROPIN])
        self.assertEqual(os.path.basename(argv[argv.index("--config") + 1]), "gateway-socket.toml")
        addresses = directive([SOCKET], "Socket", "ListenStream")
        directory, config, ports = instance("gateway-socket.toml")
        self.addCleanup(shutil.rmtree, directory)
        with open(config, "rb") as stream:
            listeners = tomllib.load(stream)["listeners"]
        self.assertEqual([listener["endpoint"] for listener in listeners],
                         [f"systemd:domain=INET:index={index}" for index in range(len(addresses))])
        portsFile = os.path.join(directory, "ports")
        wrapper = [sys.executable, "-c", SOCKET_WRAPPER, portsFile, ",".join(addresses)]
        process, log = self.start(wrapper + substitute(argv, TWISTD, config), cwd=directory)
        deadline = time.monotonic() + 30
        while not (os.path.exists(portsFile) and open(portsFile).read()):
            self.assertLess(time.monotonic(), deadline, "the wrapper never bound its sockets")
            time.sleep(0.05)
        with open(portsFile) as stream:
            bound = dict(zip([listener["name"] for listener in listeners],
                             map(int, stream.read().split(","))))
        self.assertConnectionStart(waitForStart(bound["amqp"], process))
        output = self.stop(process, log)
        self.assertIn("listener amqp: amqp on systemd:domain=INET:index=1", output)
