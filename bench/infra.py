"""
What bench/run starts and stops: a dedicated RabbitMQ node, the gateway,
websockify, socat and the stub API Gateway, each a child process that goes
away with bench/run (PR_SET_PDEATHSIG), and /proc readings of their CPU and
memory.  Standard library only.
"""

import ctypes
import glob
import os
import random
import resource
import shutil
import signal
import socket
import string
import subprocess
import sys
import time

RABBITMQ_BIN = "/usr/lib/rabbitmq/bin"
_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1
CLK_TCK = os.sysconf("SC_CLK_TCK")


def raiseOpenFiles():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def _childSetup():
    # Dies with bench/run, in its own process group (so a whole tree can
    # be signalled), with the open-files limit at the hard limit.
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    os.setpgid(0, 0)
    raiseOpenFiles()


def freePort():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def waitForPort(port, timeout, proc=None, what="process"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what}: nothing listens on 127.0.0.1:{port} after {timeout} s")


class Child:
    """
    One started process (its own process group), stopped by L{stop}.
    """

    def __init__(self, name, argv, logPath, env=None, cwd=None):
        self.name = name
        self.argv = argv
        self.logPath = logPath
        self.log = open(logPath, "ab")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=env, cwd=cwd, preexec_fn=_childSetup)
        self.pid = self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def stop(self, timeout=10):
        if self.proc.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(5)
        # Forked children (socat, websockify) are in the same group.
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.log.close()

    def tail(self, lines=20):
        try:
            with open(self.logPath, "rb") as f:
                return b"\n".join(f.read().splitlines()[-lines:]).decode("utf-8", "replace")
        except OSError:
            return ""


class Children:
    """
    The processes a run starts, stopped together (last started first).

    @ivar base: the run's directory, where each child's log goes.
    """

    def __init__(self, base, log):
        self.base = base
        self._log = log
        self.children = []

    def child(self, name, argv, env=None, cwd=None):
        c = Child(name, argv, os.path.join(self.base, f"{name}.log"), env=env, cwd=cwd or self.base)
        self.children.append(c)
        return c

    def stopChildren(self):
        for c in reversed(self.children):
            try:
                c.stop()
            except Exception as e:  # keep stopping the others
                self._log(f"stopping {c.name}: {e}")


class RabbitNode:
    """
    A dedicated RabbitMQ node (shared/RABBITMQ.md): its own directory,
    node name and ports, open-files limit raised to the hard limit.

    @param extraConfig: further C{rabbitmq.conf} lines (interop/run adds a
        TLS listener).
    """

    def __init__(self, base, name="rabbitmq", cookie=None, extraConfig=()):
        self.dir = os.path.join(base, name)
        os.makedirs(self.dir)
        # Nodes of one cluster share a cookie; alone, any will do.
        self.cookie = cookie or "".join(random.choice(string.ascii_uppercase) for _ in range(20))
        self.port = freePort()
        self.distPort = freePort()
        while self.distPort == self.port:
            self.distPort = freePort()
        self.node = f"bench{self.port}@localhost"
        self.extraConfig = tuple(extraConfig)
        self.child = None
        self.vmPid = None

    def env(self):
        d = self.dir
        env = dict(os.environ)
        env.update(
            HOME=d, RABBITMQ_NODENAME=self.node, RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(self.port), RABBITMQ_DIST_PORT=str(self.distPort),
            RABBITMQ_CONF_ENV_FILE=f"{d}/rabbitmq-env.conf", RABBITMQ_CONFIG_FILE=f"{d}/rabbitmq.conf",
            RABBITMQ_ENABLED_PLUGINS_FILE=f"{d}/enabled_plugins", RABBITMQ_MNESIA_BASE=f"{d}/mnesia",
            RABBITMQ_LOG_BASE=f"{d}/log", RABBITMQ_PID_FILE=f"{d}/node.pid", ERL_EPMD_ADDRESS="127.0.0.1")
        return env

    def launch(self):
        """
        Write the node's files and start it, without waiting.
        """
        d = self.dir
        cookie = os.path.join(d, ".erlang.cookie")
        with open(cookie, "w") as f:
            f.write(self.cookie)
        os.chmod(cookie, 0o400)
        open(f"{d}/rabbitmq-env.conf", "w").close()
        with open(f"{d}/enabled_plugins", "w") as f:
            f.write("[].\n")
        with open(f"{d}/rabbitmq.conf", "w") as f:
            f.write(f"listeners.tcp.default = 127.0.0.1:{self.port}\n"
                    "distribution.listener.interface = 127.0.0.1\n"
                    f"distribution.listener.port_range.min = {self.distPort}\n"
                    f"distribution.listener.port_range.max = {self.distPort}\n"
                    "loopback_users = none\n"
                    "log.file.level = warning\n"
                    "tcp_listen_options.backlog = 4096\n"
                    "tcp_listen_options.nodelay = true\n"
                    + "".join(f"{line}\n" for line in self.extraConfig))
        self.child = Child("rabbitmq", ["sh", "-c", 'ulimit -Sn "$(ulimit -Hn)"; exec '
                                        f"{RABBITMQ_BIN}/rabbitmq-server"],
                           os.path.join(d, "stdout.log"), env=self.env())

    def start(self, timeout=60):
        self.launch()
        self.waitReady(timeout)

    def waitReady(self, timeout=60):
        """
        Wait until the launched node is up.  May run in another thread
        than L{launch} (the parent-death signal follows the launching
        thread: launch from the main one).
        """
        d = self.dir
        waitForPort(self.port, timeout, self.child.proc, "rabbitmq-server")
        subprocess.run([f"{RABBITMQ_BIN}/rabbitmqctl", "-q", "-n", self.node, "await_startup"],
                       env=self.env(), check=True, timeout=timeout, capture_output=True)
        with open(f"{d}/node.pid") as f:
            self.vmPid = int(f.read().strip())

    def ctl(self, *args, timeout=60):
        result = subprocess.run([f"{RABBITMQ_BIN}/rabbitmqctl", "-q", "-n", self.node, *args],
                                env=self.env(), capture_output=True, text=True, timeout=timeout)
        return result.stdout

    def join(self, first):
        """
        Join the cluster of node C{first} (both started, one cookie).
        """
        for args in (("stop_app",), ("join_cluster", first.node), ("start_app",)):
            result = subprocess.run([f"{RABBITMQ_BIN}/rabbitmqctl", "-q", "-n", self.node, *args],
                                    env=self.env(), capture_output=True, text=True, timeout=120)
            if result.returncode != 0:
                raise RuntimeError(f"{self.node}: rabbitmqctl {args[0]} failed: {result.stderr.strip()}")

    def stop(self):
        if self.child is None:
            return
        if self.child.alive():
            try:
                subprocess.run([f"{RABBITMQ_BIN}/rabbitmqctl", "-q", "-n", self.node, "stop"],
                               env=self.env(), capture_output=True, timeout=30)
            except (subprocess.TimeoutExpired, OSError):
                pass
        self.child.stop(timeout=15)
        if self.vmPid:
            for _ in range(50):
                if not os.path.exists(f"/proc/{self.vmPid}"):
                    break
                time.sleep(0.1)
            else:
                try:
                    os.kill(self.vmPid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


# -- twistd's log --------------------------------------------------------------

def finishRun(results, started, write, keep, base, log):
    """
    The end every bench run shares: its total time in C{results}, the
    results written (C{write()}), its temp directory C{base} kept or removed.

    @return: what C{write} returned.
    """
    results["total_seconds"] = round(time.monotonic() - started, 1)
    out = write()
    if keep:
        log(f"kept {base}")
    else:
        shutil.rmtree(base, ignore_errors=True)
    return out


def twistdLogLines(path):
    """
    @return: every line of the twistd log C{path}, oldest first: twistd
        rotates it every 1,000,000 bytes (C{path.1} is the newest rotated
        file), so the rotated files' lines too.
    """
    lines = []
    for p in sorted(glob.glob(path + "*"), key=lambda p: -int(p.rsplit(".", 1)[1]) if p[-1].isdigit() else 0):
        with open(p, "rb") as f:
            lines += f.read().decode("utf-8", "replace").splitlines()
    return lines


def logErrors(lines):
    """
    @return: C{{"lines", "errors", "first_errors", "first_traceback"}}: how
        many of a gateway's log C{lines} are tracebacks, critical or error
        events, or unhandled errors, the first ten of them, and the first
        traceback whole (at most 40 lines; no key when there is none).
    """
    bad = [ln for ln in lines if "Traceback" in ln or "#critical" in ln or "#error" in ln or "Unhandled" in ln]
    out = {"lines": len(lines), "errors": len(bad), "first_errors": bad[:10]}
    for k, line in enumerate(lines):
        if "Traceback" in line:
            # The event line before it and its indented frames.
            end = k + 1
            while end < len(lines) and lines[end].startswith(("\t", " ")):
                end += 1
            out["first_traceback"] = lines[max(0, k - 1):min(end, k + 40)]
            break
    return out


# -- /proc readings ---------------------------------------------------------

def cpuSeconds(pid):
    """
    User + system CPU seconds of a process, plus those of its children it
    has reaped (cutime, cstime): summed over a tree (L{treeCpu}) the total
    stays continuous while forked children (socat, websockify) come and go.
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return sum(int(x) for x in fields[11:15]) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return 0.0


def rssBytes(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def pssBytes(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def treePids(pid):
    """
    C{pid} and all its descendants.
    """
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, ()))
    return out


def treeMemory(pid):
    """
    @return: C{(sum of RSS, sum of PSS, process count)} over the tree.
    """
    pids = treePids(pid)
    return sum(rssBytes(p) for p in pids), sum(pssBytes(p) for p in pids), len(pids)


def treeCpu(pid):
    return sum(cpuSeconds(p) for p in treePids(pid))


def openFiles(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def machine():
    model = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        memKiB = int(f.readline().split()[1])
    return {"nproc": os.cpu_count(), "cpu": model, "memory_gib": round(memKiB / 2**20, 1),
            "kernel": os.uname().release, "open_files_hard_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[1]}


def which(name):
    return shutil.which(name)


def run(argv, **kw):
    return subprocess.run(argv, capture_output=True, text=True, **kw)


def python():
    return sys.executable
