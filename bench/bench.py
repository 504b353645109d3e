"""
The benchmark behind bench/run (see bench/README.md).  Run it through
bench/run, which installs what it needs and picks the project's venv; this
file needs that venv's Python (it writes users.cnf and hashes with
kaazing_promo itself).

Everything listens on 127.0.0.1; every loop is bounded; every process it
starts is stopped at the end, also on failure or Ctrl-C.
"""

import argparse
import collections
import datetime
import json
import os
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
# This checkout's kaazing_promo (users.cnf, hashes), as for the gateway.
sys.path[:0] = [HERE, os.path.dirname(HERE)]

import infra  # noqa: E402
import report  # noqa: E402

NODE = os.environ.get("BENCH_NODE", "node")
LOAD = os.path.join(HERE, "load.mjs")
BENCH_VENV = os.environ.get("BENCH_VENV", os.path.join(HERE, ".venv"))
PROJECT_VENV = os.environ.get("KAAZING_PROMO_VENV") or os.path.dirname(os.path.dirname(sys.executable))
CHECKOUT = os.path.dirname(HERE)
#: The gateway runs this checkout's code with the venv's libraries, whatever
#: copy of kaazing_promo the venv has installed (as bench/abuse.py does).
GATEWAY_ENV = dict(os.environ, PYTHONPATH=CHECKOUT)


def log(*parts):
    print(f"[{time.strftime('%H:%M:%S')}]", *parts, flush=True)


# -- the load generator -------------------------------------------------------

class LoadError(RuntimeError):
    pass


def nodeArgv(spec):
    return [NODE, "--experimental-websocket", "--no-warnings", LOAD, json.dumps(spec)]


#: The WebSocket under the load generator (load.mjs): "browser" (ws with
#: random masking keys XORed natively by bufferutil, as browsers), "zero"
#: (an all-zero key: the relay's CPU only) or "native" (undici, masks in JS).
WS_CLIENT = "browser"
WS_CLIENTS = {
    "browser": "the ws package with a random masking key per frame, XORed natively (bufferutil), as browsers do",
    "zero": "the ws package with an all-zero masking key (the client skips masking; the relay unmasks as usual)",
    "native": "Node's built-in WebSocket (undici), which masks in JavaScript",
}


def runLoad(spec, timeout=None):
    """
    Run load.mjs to completion.

    @return: its result dict.
    """
    spec = dict(spec)
    spec.setdefault("wsClient", WS_CLIENT)
    spec.setdefault("timeout", timeout or 300)
    proc = subprocess.run(nodeArgv(spec), capture_output=True, text=True, timeout=spec["timeout"] + 30,
                          preexec_fn=infra.raiseOpenFiles, cwd=HERE)
    return _lastResult(proc.stdout, proc.stderr, proc.returncode)


def _lastResult(stdout, stderr, code):
    for line in reversed(stdout.strip().splitlines()):
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if "result" in obj:
            return obj["result"]
        if "error" in obj:
            raise LoadError(obj["error"].splitlines()[0][:300])
    raise LoadError(f"load.mjs exited {code} without a result: {stderr.strip()[-300:]}")


class LoadProcess:
    """
    A load.mjs that runs alongside (hold, consume): read its events line by line.
    """

    def __init__(self, spec):
        spec = dict(spec)
        spec.setdefault("timeout", 300)
        spec.setdefault("wsClient", WS_CLIENT)
        self.proc = subprocess.Popen(nodeArgv(spec), stdout=subprocess.PIPE, stdin=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, preexec_fn=infra.raiseOpenFiles,
                                     cwd=HERE)
        self.pid = self.proc.pid

    def event(self):
        """
        @return: the next JSON line (dict); raises L{LoadError} on an error or exit.
        """
        while True:
            line = self.proc.stdout.readline()
            if not line:
                self.proc.wait(10)
                raise LoadError(f"load.mjs exited {self.proc.returncode}: {self.proc.stderr.read()[-300:]}")
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if "error" in obj:
                raise LoadError(obj["error"].splitlines()[0][:300])
            return obj

    def release(self):
        try:
            self.proc.stdin.write("release\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass

    def kill(self):
        if self.proc.poll() is None:
            try:
                os.kill(self.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
            self.proc.kill()
        self.proc.wait(10)


# -- what bench/run starts -----------------------------------------------------

class Environment(infra.Children):
    """
    The dedicated broker, the gateway(s), the peers, the stub API Gateway.
    """

    def __init__(self, base, opts):
        infra.Children.__init__(self, base, log)
        self.opts = opts
        self.rabbit = None
        self.info = {}

    def stopAll(self):
        self.stopChildren()
        if self.rabbit is not None:
            self.rabbit.stop()

    # broker
    def startRabbit(self):
        t0 = time.monotonic()
        self.rabbit = infra.RabbitNode(self.base)
        self.rabbit.start()
        self.info["rabbitmq_start_seconds"] = round(time.monotonic() - t0, 2)
        log(f"RabbitMQ node {self.rabbit.node} on 127.0.0.1:{self.rabbit.port} "
            f"(started in {self.info['rabbitmq_start_seconds']} s)")

    # users and certificates
    def makeUsers(self, count):
        from kaazing_promo.auth.passhash import makeHash
        from kaazing_promo.auth.userscnf import UserEntry, renderUsersCnf
        self.users = [(f"bench{i:05d}", f"pw-bench{i:05d}") for i in range(count)]
        entries = [UserEntry(name, makeHash(pw, iterations=1000), frozenset(["Everybody"]))
                   for name, pw in self.users]
        with open(os.path.join(self.base, "users.cnf"), "wb") as f:
            f.write(renderUsersCnf(entries, {"Everybody": [n for n, _ in self.users]}))
        secrets = os.path.join(self.base, "broker-secrets.toml")
        with open(secrets, "w") as f:
            f.write('guest = "guest"\n')
        os.chmod(secrets, 0o600)

    def makeCertificates(self):
        d = os.path.join(self.base, "tls")
        os.makedirs(d)
        ext = os.path.join(d, "ext.cnf")
        with open(ext, "w") as f:
            f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
                    "extendedKeyUsage=serverAuth\n")
        steps = [
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=kaazing-promo bench CA",
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
            ["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"],
            ["openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", ext],
        ]
        for step in steps:
            subprocess.run(step, cwd=d, check=True, capture_output=True)
        self.tls = d

    def startStub(self):
        self.makeCertificates()
        self.stubPort = infra.freePort()
        stub = self.child("stub-apigw", [sys.executable, os.path.join(HERE, "stub_apigw.py"), str(self.stubPort),
                                         os.path.join(self.tls, "server.pem"), os.path.join(self.tls, "server.key")])
        infra.waitForPort(self.stubPort, 20, stub.proc, "stub API Gateway")

    def stubCount(self):
        context = ssl.create_default_context(cafile=os.path.join(self.tls, "ca.pem"))
        with urllib.request.urlopen(f"https://127.0.0.1:{self.stubPort}/count", context=context, timeout=10) as r:
            return int(r.read())

    # the gateway
    def gatewayConfig(self, name, realm, usersCnf="users.cnf"):
        ports = {k: infra.freePort() for k in ("ws-open", "tcp-open", "ws-auth", "tcp-auth")}
        if realm == "delegated":
            ports = {k: v for k, v in ports.items() if k.endswith("auth")}
        pending = self.opts.max_pending_bytes
        lines = [f'user_auth = "{realm}"', "", "[broker]",
                 f'endpoint = "tcp:host=127.0.0.1:port={self.rabbit.port}"', ""]
        for lname, port in ports.items():
            lines += ["[[listeners]]", f'name = "{lname}"',
                      f'protocol = "{"websocket" if lname.startswith("ws") else "amqp"}"',
                      f'endpoint = "tcp:port={port}:interface=127.0.0.1"',
                      f'auth = "{"none" if lname.endswith("open") else "required"}"',
                      f"max_pending_bytes = {pending}", ""]
        if realm == "internal":
            lines += ["[internal]", f'users_cnf = "{usersCnf}"', ""]
        else:
            lines += ["[delegated]", f'url = "https://127.0.0.1:{self.stubPort}"',
                      f'ca_file = "{os.path.join(self.tls, "ca.pem")}"', ""]
        lines += ["[promotion]", 'mode = "consolidated"', 'user = "guest"', 'secrets_file = "broker-secrets.toml"', ""]
        path = os.path.join(self.base, f"{name}.toml")
        with open(path, "w") as f:
            f.write("\n".join(lines))
        return path, ports

    def startGateway(self, name, realm="internal", usersCnf="users.cnf"):
        """
        @return: C{(child, ports, start-up seconds)}.
        """
        path, ports = self.gatewayConfig(name, realm, usersCnf)
        return self._spawnGateway(name, path, ports)

    def startStormGateway(self, name, usersCnf, options):
        """
        A gateway with one AMQP listener (C{auth = "required"}, the internal
        realm over C{usersCnf}, every setting at its default but
        C{options}), for the login storm.

        @return: C{(child, ports)}.
        """
        ports = {"amqp": infra.freePort()}
        lines = ['user_auth = "internal"', "", "[broker]", f'endpoint = "tcp:host=127.0.0.1:port={self.rabbit.port}"',
                 "", "[[listeners]]", 'name = "storm"', 'protocol = "amqp"',
                 f'endpoint = "tcp:port={ports["amqp"]}:interface=127.0.0.1"', 'auth = "required"']
        lines += [f"{key} = {value}" for key, value in options.items()]
        lines += ["", "[internal]", f"users_cnf = {json.dumps(usersCnf)}", "",
                  "[promotion]", 'mode = "consolidated"', 'user = "guest"', 'secrets_file = "broker-secrets.toml"', ""]
        path = os.path.join(self.base, f"{name}.toml")
        with open(path, "w") as f:
            f.write("\n".join(lines))
        child, ports, _ = self._spawnGateway(name, path, ports)
        return child, ports

    def startReconnectGateway(self, name, keyFile):
        """
        A gateway with one WebSocket listener (C{auth = "required"}, the
        internal realm over the bench's users.cnf, every listener setting at
        its default), C{key_file} set, and an admin listener for its
        metrics, for the reconnect storm.

        @return: C{(child, ports, path of its configuration)}.
        """
        ports = {"web": infra.freePort(), "admin": infra.freePort()}
        lines = ['user_auth = "internal"', f"key_file = {json.dumps(keyFile)}", "",
                 "[broker]", f'endpoint = "tcp:host=127.0.0.1:port={self.rabbit.port}"', "",
                 "[[listeners]]", 'name = "web"', 'protocol = "websocket"',
                 f'endpoint = "tcp:port={ports["web"]}:interface=127.0.0.1"', 'auth = "required"', "",
                 "[internal]", f"users_cnf = {json.dumps(os.path.join(self.base, 'users.cnf'))}", "",
                 "[admin]", f'endpoint = "tcp:port={ports["admin"]}:interface=127.0.0.1"', "",
                 "[promotion]", 'mode = "consolidated"', 'user = "guest"', 'secrets_file = "broker-secrets.toml"', ""]
        path = os.path.join(self.base, f"{name}.toml")
        with open(path, "w") as f:
            f.write("\n".join(lines))
        child, ports, _ = self._spawnGateway(name, path, ports)
        return child, ports, path

    def _spawnGateway(self, name, path, ports):
        twistd = os.path.join(PROJECT_VENV, "bin", "twistd")
        t0 = time.monotonic()
        gw = self.child(name, [twistd, "-n", "--pidfile=", "--logfile", os.path.join(self.base, f"{name}.twistd.log"),
                               "kaazing-promo", "--config", path], env=GATEWAY_ENV)
        for port in ports.values():
            infra.waitForPort(port, 30, gw.proc, f"gateway {name}")
        startup = time.monotonic() - t0
        return gw, ports, startup

    def stopChild(self, c):
        c.stop()
        if c in self.children:
            self.children.remove(c)

    # the peers
    def startPeers(self):
        self.socatPort = infra.freePort()
        self.socat = self.child("socat", [
            "socat", f"TCP-LISTEN:{self.socatPort},bind=127.0.0.1,reuseaddr,fork,backlog=1024,nodelay",
            f"TCP:127.0.0.1:{self.rabbit.port},nodelay"])
        infra.waitForPort(self.socatPort, 10, self.socat.proc, "socat")
        self.websockifyPort = infra.freePort()
        self.websockify = self.child("websockify", [
            os.path.join(BENCH_VENV, "bin", "websockify"), f"127.0.0.1:{self.websockifyPort}",
            f"127.0.0.1:{self.rabbit.port}"])
        infra.waitForPort(self.websockifyPort, 20, self.websockify.proc, "websockify")
        # The least a Twisted relay does (no AMQP, no login), in the gateway's venv.
        self.twistedRelayPort = infra.freePort()
        self.twistedRelay = self.child("twisted-relay", [
            os.path.join(PROJECT_VENV, "bin", "python"), os.path.join(HERE, "twistedrelay.py"),
            str(self.twistedRelayPort), str(self.rabbit.port)])
        infra.waitForPort(self.twistedRelayPort, 20, self.twistedRelay.proc, "twisted-relay")


# -- scenarios ----------------------------------------------------------------

def tcpTarget(port):
    return {"kind": "tcp", "host": "127.0.0.1", "port": port}


def wsTarget(port, path="/amqp", client=None):
    """
    @param client: the WebSocket client for this target (L{WS_CLIENTS}); by
        default the run's C{--ws-client}.
    """
    target = {"kind": "ws", "url": f"ws://127.0.0.1:{port}{path}"}
    if client:
        target["wsClient"] = client
    return target


def setupSources(concurrency):
    """
    One loopback source address per connection-opening worker of load.mjs
    (127.0.20.1, …): the gateway's login protection counts logins in flight
    per host (at most C{max_failed_logins}, 10), and 50 browsers opening at
    once are 50 hosts.  Every target gets the same, so the ratios compare
    like with like.
    """
    return [f"127.0.{20 + k // 250}.{1 + k % 250}" for k in range(concurrency)]


class CpuMeter:
    """
    CPU seconds used by some process trees between start and stop.
    """

    def __init__(self, pids):
        self.pids = {k: v for k, v in pids.items() if v}

    def __enter__(self):
        self.t0 = time.monotonic()
        self.c0 = {k: infra.treeCpu(p) for k, p in self.pids.items()}
        self.n0 = {k: len(infra.treePids(p)) for k, p in self.pids.items()}
        return self

    def __exit__(self, *exc):
        self.seconds = time.monotonic() - self.t0
        # A forking relay's per-connection child counts once its parent has
        # reaped it (or while it lives): give it a moment to go.
        for _ in range(30):
            if all(len(infra.treePids(p)) <= self.n0[k] for k, p in self.pids.items()):
                break
            time.sleep(0.1)
        self.used = {k: infra.treeCpu(p) - self.c0[k] for k, p in self.pids.items()}


class Bench:
    def __init__(self, env, opts, results):
        self.env = env
        self.opts = opts
        self.results = results

    # which process relays for a target
    def relayPid(self, name):
        env = self.env
        if name.startswith("gateway"):
            return env.gateway.pid if "delegated" not in name else env.gatewayDelegated.pid
        return {"socat": env.socat.pid, "websockify": env.websockify.pid,
                "twisted-relay": env.twistedRelay.pid}.get(name)

    def targets(self):
        allTargets = self.allTargets()
        if self.opts.targets:
            wanted = [t.strip() for t in self.opts.targets.split(",")]
            return {k: v for k, v in allTargets.items() if k in wanted}
        return allTargets

    def allTargets(self):
        env = self.env
        out = {
            "direct": tcpTarget(env.rabbit.port),
            "socat": tcpTarget(env.socatPort),
            "gateway-tcp": tcpTarget(env.ports["tcp-open"]),
            "gateway-ws": wsTarget(env.ports["ws-open"]),
            "websockify": wsTarget(env.websockifyPort, "/"),
            # Twisted's floor: how much of gateway-tcp's cost any Twisted relay pays.
            "twisted-relay": tcpTarget(env.twistedRelayPort),
        }
        if WS_CLIENT != "zero":
            # The relay's own CPU: a client that skips masking (all-zero
            # key) costs less than a browser; the gateway's work is the same.
            out["gateway-ws-zeromask"] = wsTarget(env.ports["ws-open"], client="zero")
        return out

    # throughput ---------------------------------------------------------------
    def throughput(self):
        o = self.opts
        targets = self.targets()
        rows = []
        counts = {16: o.messages_16, 4096: o.messages_4k, 65536: o.messages_64k}
        for size in (16, 4096, 65536):
            # One unmeasured warm-up per target (the broker's first runs are slow).
            for name, target in targets.items():
                try:
                    runLoad({"scenario": "throughput", "target": target, "size": size,
                             "count": max(500, counts[size] // 10)})
                except LoadError as e:
                    log(f"warm-up {name} {size} B failed: {e}")
            runs = {name: [] for name in targets}
            for r in range(o.runs):
                for name, target in targets.items():
                    pids = {"relay": self.relayPid(name), "broker": self.env.rabbit.vmPid}
                    try:
                        with CpuMeter(pids) as meter:
                            res = runLoad({"scenario": "throughput", "target": target, "size": size,
                                           "count": counts[size]})
                        res["relayCpuSeconds"] = round(meter.used.get("relay", 0.0), 3)
                        res["brokerCpuSeconds"] = round(meter.used.get("broker", 0.0), 3)
                        runs[name].append(res)
                        log(f"throughput {size:>6} B run {r + 1} {name:<12} {res['msgPerSec']:>10,.0f} msg/s "
                            f"{res['mbPerSec']:8.1f} MB/s  client CPU {res['clientCpuShare']:.2f}")
                    except (LoadError, subprocess.TimeoutExpired) as e:
                        log(f"throughput {size} B {name} failed: {e}")
                        runs[name].append({"error": str(e)})
            for name in targets:
                good = [x for x in runs[name] if "error" not in x]
                row = {"scenario": "throughput", "target": name, "size": size, "messages": counts[size],
                       "runs": runs[name]}
                if good:
                    med = statistics.median(x["msgPerSec"] for x in good)
                    row.update(msgPerSec=med, mbPerSec=med * size / 1e6,
                               clientCpuShare=statistics.median(x["clientCpuShare"] for x in good),
                               relayCpuUsPerMsg=statistics.median(
                                   x["relayCpuSeconds"] / x["messages"] * 1e6 for x in good),
                               brokerCpuUsPerMsg=statistics.median(
                                   x["brokerCpuSeconds"] / x["messages"] * 1e6 for x in good))
                rows.append(row)
            self.results["rows"].extend(rows[-len(targets):])
            self.save()

    def profiles(self, ts, resultsDir):
        """
        py-spy on the gateway, each while one load runs: both listeners'
        throughput at 16 B (the WebSocket one also as a flame graph SVG)
        and 4 KiB, the TCP path at 64 KiB, sequential round trips through
        each listener, and connection setup through each (warm cache).
        """
        pyspy = os.path.join(BENCH_VENV, "bin", "py-spy")
        if not os.path.exists(pyspy):
            log("py-spy not installed; no profile")
            return
        t = self.allTargets()
        o = self.opts
        # The setup profiles log in users from the end of the list: the
        # setup scenario's cold rows of this gateway start from the front.
        users = [list(u) for u in self.env.users]
        wsUsers, tcpUsers = users[-200:], users[-400:-200] or users[:200]
        plan = [
            ("ws", "WebSocket throughput, 16 B", {"scenario": "throughput", "target": t["gateway-ws"], "size": 16,
                                                  "count": o.profile_messages}, True),
            ("ws-4k", "WebSocket throughput, 4 KiB", {"scenario": "throughput", "target": t["gateway-ws"],
                                                      "size": 4096, "count": o.profile_messages // 4}, False),
            ("tcp", "AMQP listener throughput, 16 B", {"scenario": "throughput", "target": t["gateway-tcp"],
                                                       "size": 16, "count": o.profile_messages}, False),
            ("tcp-4k", "AMQP listener throughput, 4 KiB", {"scenario": "throughput", "target": t["gateway-tcp"],
                                                           "size": 4096, "count": o.profile_messages // 4}, False),
            ("tcp-64k", "TCP throughput, 64 KiB", {"scenario": "throughput", "target": t["gateway-tcp"],
                                                   "size": 65536, "count": o.profile_messages // 20}, False),
            ("ws-latency", "WebSocket sequential round trips, 16 B",
             {"scenario": "latency", "target": t["gateway-ws"], "size": 16, "count": o.profile_messages // 15},
             False),
            ("tcp-latency", "AMQP listener sequential round trips, 16 B",
             {"scenario": "latency", "target": t["gateway-tcp"], "size": 16, "count": o.profile_messages // 15},
             False),
            ("ws-setup", "WebSocket connection setup (internal realm, Basic, warm cache)",
             {"scenario": "setup", "target": wsTarget(self.env.ports["ws-auth"]), "basic": True,
              "users": wsUsers, "connections": o.setup_connections, "concurrency": o.concurrency,
              "sources": setupSources(o.concurrency)}, False),
            ("tcp-setup", "AMQP listener connection setup (internal realm, PLAIN, warm cache)",
             {"scenario": "setup", "target": tcpTarget(self.env.ports["tcp-auth"]),
              "users": tcpUsers, "connections": o.setup_connections,
              "concurrency": o.concurrency, "sources": setupSources(o.concurrency)}, False),
        ]
        self.results["profiles"] = {}
        for label, what, spec, svg in plan:
            if label.endswith("-setup"):
                # Warm the verify cache first: the profile is of the warm path.
                runLoad(dict(spec, connections=200))
            entry = {"what": what}
            rawPath = os.path.join(self.env.base, f"{label}.collapsed")
            res = self._spy(pyspy, "raw", rawPath, spec)
            if os.path.exists(rawPath):
                analysis = report.analyseCollapsed(rawPath)
                analysis["loadResult"] = res
                entry["analysis"] = analysis
                shutil.copy(rawPath, os.path.join(resultsDir, f"{ts}-{label}-pyspy.collapsed"))
                with open(os.path.join(resultsDir, f"{ts}-{label}-pyspy.txt"), "w") as f:
                    f.write(f"{what}\n" + report.profileText(analysis))
                entry["text"] = f"{ts}-{label}-pyspy.txt"
                entry["collapsed"] = f"{ts}-{label}-pyspy.collapsed"
            if svg:
                svgPath = os.path.join(resultsDir, f"{ts}-{label}.svg")
                self._spy(pyspy, "flamegraph", svgPath, spec)
                if os.path.exists(svgPath):
                    entry["svg"] = os.path.basename(svgPath)
            self.results["profiles"][label] = entry
            self.save()

    def _startSpy(self, pid, fmt, path):
        pyspy = os.path.join(BENCH_VENV, "bin", "py-spy")
        spy = subprocess.Popen([pyspy, "record", "--pid", str(pid), "--rate", "200", "--idle", "--format", fmt,
                                "-o", path], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=os.setpgrp)
        spy.path = path
        time.sleep(1.0)
        return spy

    def _stopSpy(self, spy, label, what):
        """
        Stop a py-spy of L{_startSpy} and keep its analysis next to the results.

        @return: the profile's entry (files, analysis).
        """
        spy.send_signal(signal.SIGINT)
        try:
            spy.wait(60)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait(5)
        if not os.path.exists(spy.path):
            return {"error": spy.stderr.read().decode()[-300:]}
        analysis = report.analyseCollapsed(spy.path)
        shutil.copy(spy.path, os.path.join(self.resultsDir, f"{self.ts}-{label}-pyspy.collapsed"))
        with open(os.path.join(self.resultsDir, f"{self.ts}-{label}-pyspy.txt"), "w") as f:
            f.write(f"{what}\n" + report.profileText(analysis))
        return {"text": f"{self.ts}-{label}-pyspy.txt", "collapsed": f"{self.ts}-{label}-pyspy.collapsed",
                "idleShare": analysis["idleShare"], "threadBusySamples": analysis["threadBusySamples"],
                "samples": analysis["samples"], "top": analysis["top"][:10]}

    def _spy(self, pyspy, fmt, path, spec):
        spy = subprocess.Popen([pyspy, "record", "--pid", str(self.env.gateway.pid), "--rate", "200", "--idle",
                                "--format", fmt, "-o", path],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=os.setpgrp)
        time.sleep(1.0)
        try:
            res = runLoad(spec)
            rate = res.get("msgPerSec") or res.get("perSec") or (1e3 / res["p50ms"] if res.get("p50ms") else 0)
            log(f"profiled ({fmt}) {spec['scenario']} {spec.get('size', '')}: {rate:,.0f}/s (py-spy slows it)")
        except LoadError as e:
            log(f"profiled run failed: {e}")
            res = None
        spy.send_signal(signal.SIGINT)
        try:
            spy.wait(30)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait(5)
        if not os.path.exists(path):
            log(f"py-spy wrote nothing: {spy.stderr.read().decode()[-300:]}")
        return res

    # latency ------------------------------------------------------------------
    def latency(self):
        o = self.opts
        targets = self.targets()
        runs = {name: [] for name in targets}
        for r in range(o.runs):
            for name, target in targets.items():
                try:
                    res = runLoad({"scenario": "latency", "target": target, "size": 16, "count": o.latency_samples})
                    runs[name].append(res)
                    log(f"latency run {r + 1} {name:<12} p50 {res['p50ms']:.3f} ms  p99 {res['p99ms']:.3f} ms")
                except LoadError as e:
                    log(f"latency {name} failed: {e}")
                    runs[name].append({"error": str(e)})
        for name in targets:
            good = [x for x in runs[name] if "error" not in x]
            row = {"scenario": "latency", "target": name, "size": 16, "runs": runs[name]}
            if good:
                row.update(p50ms=statistics.median(x["p50ms"] for x in good),
                           p99ms=statistics.median(x["p99ms"] for x in good))
            self.results["rows"].append(row)
        self.save()

    # connection setup -----------------------------------------------------------
    def setupTargets(self):
        env = self.env
        users = [list(u) for u in env.users]
        guest = [["guest", "guest"]]
        out = [
            ("direct", tcpTarget(env.rabbit.port), guest, False, "broker (RabbitMQ internal)"),
            ("socat", tcpTarget(env.socatPort), guest, False, "broker (RabbitMQ internal)"),
            ("twisted-relay", tcpTarget(env.twistedRelayPort), guest, False, "broker (RabbitMQ internal)"),
            ("websockify", wsTarget(env.websockifyPort, "/"), guest, False, "broker (RabbitMQ internal)"),
            ("gateway-tcp", tcpTarget(env.ports["tcp-auth"]), users, False, "gateway internal (users.cnf)"),
            ("gateway-ws", wsTarget(env.ports["ws-auth"]), users, True, "gateway internal (users.cnf), Basic"),
        ]
        if getattr(env, "gatewayDelegated", None):
            out += [
                ("gateway-tcp-delegated", tcpTarget(env.delegatedPorts["tcp-auth"]), users, False,
                 "gateway delegated (stub HTTPS API Gateway)"),
                ("gateway-ws-delegated", wsTarget(env.delegatedPorts["ws-auth"]), users, True,
                 "gateway delegated (stub HTTPS API Gateway), Basic"),
            ]
        return out

    def setup(self):
        o = self.opts
        targets = self.setupTargets()
        gateways = [t[0] for t in targets if t[0].startswith("gateway")]
        for name, target, users, basic, auth in targets:
            if name.startswith("gateway"):
                # Each gateway row logs in its own slice of the users, so
                # that its cold pass meets an empty cache (the verify and
                # delegated caches are per process, shared by listeners).
                k = gateways.index(name)
                per = len(users) // len(gateways)
                users = users[k * per:(k + 1) * per]
            connections = o.setup_connections if name != "websockify" else min(o.setup_connections,
                                                                                 o.setup_connections_peers)
            spec = {"scenario": "setup", "target": target, "users": users, "basic": basic,
                    "concurrency": o.concurrency, "sources": setupSources(o.concurrency)}
            phases = [("warm", connections)]
            if name.startswith("gateway"):
                # First login of every user: the realm's real cost (PBKDF2 at
                # 1,000 iterations, or one HTTPS request), then the warm cache.
                phases.insert(0, ("cold", len(users)))
                spec["usersFrom"] = users[0][0]
            for phase, count in phases:
                stub0 = self.env.stubCount() if "delegated" in name else None
                try:
                    with CpuMeter({"relay": self.relayPid(name)}) as meter:
                        res = runLoad(dict(spec, connections=count))
                except LoadError as e:
                    log(f"setup {name} {phase} failed: {e}")
                    res = {"error": str(e)}
                row = {"scenario": "setup", "target": name, "auth": auth, "cache": phase if name.startswith(
                    "gateway") else "-", "users": len(users), **res}
                if "error" not in res:
                    row["relayCpuMsPerConn"] = meter.used.get("relay", 0.0) / max(1, res["ok"]) * 1e3
                    if stub0 is not None:
                        row["realmRequests"] = self.env.stubCount() - stub0
                    log(f"setup {name:<22} {phase:<4} {res['perSec']:>8,.0f}/s ok {res['ok']} failed "
                        f"{res['failed']} open p50 {res['openP50ms']:.1f} ms"
                        + (f" realm requests {row['realmRequests']}" if stub0 is not None else ""))
                self.results["rows"].append(row)
                # Let closed connections go before the next row.
                self.settle(self.relayPid(name))
        self.save()

    def settle(self, pid, timeout=30):
        if not pid:
            return
        end = time.monotonic() + timeout
        last = None
        while time.monotonic() < end:
            n = infra.openFiles(pid)
            if n == last and n < 200:
                return
            last = n
            time.sleep(0.5)

    # held connections -----------------------------------------------------------
    def held(self):
        o = self.opts
        env = self.env
        users = [list(u) for u in env.users]
        guest = [["guest", "guest"]]
        plan = [
            ("direct", lambda: (tcpTarget(env.rabbit.port), env.rabbit.vmPid, None), guest, False, o.held),
            ("socat", lambda: (tcpTarget(env.socatPort), env.socat.pid, None), guest, False, o.held_peers),
            ("websockify", lambda: (wsTarget(env.websockifyPort, "/"), env.websockify.pid, None), guest, False,
             o.held_peers),
            ("gateway-tcp", lambda: self.freshGateway("tcp-auth"), users, False, o.held),
            ("gateway-ws", lambda: self.freshGateway("ws-auth"), users, True, o.held),
        ]
        for name, make, creds, basic, count in plan:
            target, pid, child = make()
            try:
                row = self.holdOne(name, target, pid, creds, basic, count)
                if child is not None:
                    row["gatewayStartupSeconds"] = round(self._freshStartup, 3)
                self.results["rows"].append(row)
            finally:
                if child is not None:
                    env.stopChild(child)
            self.save()

    def freshGateway(self, listener):
        # A gateway process of its own, so the memory of earlier scenarios
        # does not hide in the baseline.
        child, ports, startup = self.env.startGateway(f"gateway-held-{listener}")
        self._freshStartup = startup
        target = tcpTarget(ports[listener]) if listener.startswith("tcp") else wsTarget(ports[listener])
        # A few logins first, so the baseline includes what any first
        # connection loads (modules, thread pool).
        runLoad({"scenario": "setup", "target": target, "users": [list(u) for u in self.env.users[:20]],
                 "basic": listener.startswith("ws"), "connections": 20, "concurrency": 5})
        time.sleep(0.5)
        return target, child.pid, child

    def holdOne(self, name, target, pid, creds, basic, count):
        rss0, pss0, procs0 = infra.treeMemory(pid)
        fds0 = infra.openFiles(pid)
        lp = LoadProcess({"scenario": "hold", "target": target, "users": creds, "basic": basic,
                          "connections": count, "concurrency": self.opts.concurrency,
                          "sources": setupSources(self.opts.concurrency),
                          "timeout": max(120, count // 50), "maxFailures": 50})
        row = {"scenario": "held", "target": name, "requested": count,
               "memoryOf": "broker (beam.smp)" if name == "direct" else f"{name} process tree"}
        try:
            ev = lp.event()
            time.sleep(1.0)
            rss1, pss1, procs1 = infra.treeMemory(pid)
            fds1 = infra.openFiles(pid)
            held = ev["held"]
            row.update(held=held, alive=ev["alive"], failed=ev["failed"], openPerSec=ev["perSec"],
                       errors=ev["errors"], rssBefore=rss0, rssAfter=rss1, pssBefore=pss0, pssAfter=pss1,
                       processes=procs1, fdsBefore=fds0, fdsAfter=fds1,
                       rssPerConn=(rss1 - rss0) / held if held else None,
                       pssPerConn=(pss1 - pss0) / held if held else None)
            lp.release()
            try:
                end = lp.event()
                row["stillAlive"] = end.get("result", {}).get("stillAlive")
            except LoadError:
                pass
            log(f"held {name:<12} {held:>6} of {count} (alive {ev['alive']}, failed {ev['failed']}) "
                f"RSS +{(rss1 - rss0) / 2**20:.1f} MiB = {row['rssPerConn'] and row['rssPerConn'] / 1024:.1f} KiB/conn"
                f"  PSS {row['pssPerConn'] and row['pssPerConn'] / 1024:.1f} KiB/conn  procs {procs1}")
        except LoadError as e:
            row["error"] = str(e)
            log(f"held {name} failed: {e}")
        finally:
            lp.kill()
        self.settle(pid, timeout=60)
        return row

    # slow consumer ----------------------------------------------------------------
    def slowConsumer(self):
        o = self.opts
        env = self.env
        targets = self.allTargets()
        size = 65536
        count = o.slow_mib * 2**20 // size
        for name in ("gateway-ws", "gateway-tcp", "websockify", "socat"):
            pid = self.relayPid(name)
            queue = f"slow-{name}-{os.getpid()}"
            consumer = LoadProcess({"scenario": "consume", "target": targets[name], "queue": queue, "count": count,
                                    "timeout": 300})
            row = {"scenario": "slow-consumer", "target": name, "published": count * size,
                   "maxPendingBytes": o.max_pending_bytes if name.startswith("gateway") else None}
            samples = []
            stop = threading.Event()

            def sample():
                while not stop.is_set():
                    samples.append((time.monotonic(), infra.treeMemory(pid)[0]))
                    stop.wait(0.1)
            try:
                consumer.event()  # ready
                time.sleep(0.3)
                rss0 = infra.treeMemory(pid)[0]
                os.kill(consumer.pid, signal.SIGSTOP)
                sampler = threading.Thread(target=sample, daemon=True)
                sampler.start()
                t0 = time.monotonic()
                pub = runLoad({"scenario": "publish", "target": tcpTarget(env.rabbit.port), "queue": queue,
                               "size": size, "count": count})
                time.sleep(2.0)
                tStalled = time.monotonic()
                # Where the data waits: still in the broker's queue (backpressure
                # reached it) or inside the relay.
                listing = env.rabbit.ctl("list_queues", "name", "messages_ready", "message_bytes_ready",
                                         "--no-table-headers")
                for line in listing.splitlines():
                    parts = line.split()
                    if parts and parts[0] == queue and len(parts) >= 3:
                        row["brokerReadyMessagesWhileStalled"] = int(parts[1])
                        row["brokerReadyBytesWhileStalled"] = int(parts[2])
                tStalled = time.monotonic()
                os.kill(consumer.pid, signal.SIGCONT)
                done = consumer.event()["result"]
                stop.set()
                sampler.join()
                stalled = [rss for t, rss in samples if t <= tStalled]
                row.update(rssBefore=rss0, rssPeakStalled=max(stalled), rssPeak=max(rss for _, rss in samples),
                           publishSeconds=pub["seconds"], received=done["bytes"], drainSeconds=done["drainSeconds"],
                           stalledSeconds=round(tStalled - t0, 2))
                row["growthStalled"] = row["rssPeakStalled"] - rss0
                row["growthPeak"] = row["rssPeak"] - rss0
                log(f"slow consumer {name:<12} published {count * size / 2**20:.0f} MiB while stopped: "
                    f"RSS +{row['growthStalled'] / 2**20:.1f} MiB (peak +{row['growthPeak'] / 2**20:.1f} MiB), "
                    f"then drained {done['bytes'] / 2**20:.0f} MiB in {done['drainSeconds']:.1f} s")
            except (LoadError, subprocess.TimeoutExpired) as e:
                row["error"] = str(e)
                log(f"slow consumer {name} failed: {e}")
            finally:
                stop.set()
                consumer.kill()
                env.rabbit.ctl("delete_queue", queue)
            self.results["rows"].append(row)
            self.save()

    # start-up with a large users.cnf ---------------------------------------------
    def startup(self):
        """
        Gateway start-up (twistd spawned → every listener accepts) with the
        bench's users.cnf and with one of o.startup_users users in
        Integration Server's shape (one shared hash: the loader's cost does
        not depend on it), then logins through the AMQP listener (cold:
        each user's first, PBKDF2 at 1,000 iterations; warm: cached).
        """
        from kaazing_promo.auth.passhash import makeHash
        from kaazing_promo.auth.userscnf import UserEntry, renderUsersCnf
        o = self.opts
        env = self.env
        sizes = [("users.cnf", len(env.users))]
        if o.startup_users:
            name = f"users-{o.startup_users}.cnf"
            h = makeHash("pw-shared", iterations=1000)
            entries = (UserEntry(f"big{i:06d}", h, frozenset(["Everybody"])) for i in range(o.startup_users))
            with open(os.path.join(env.base, name), "wb") as f:
                f.write(renderUsersCnf(entries, {"Everybody": []}))
            sizes.append((name, o.startup_users))
        for fileName, count in sizes:
            size = os.path.getsize(os.path.join(env.base, fileName))
            times = []
            row = {"scenario": "startup", "users": count, "fileBytes": size}
            for attempt in range(3):
                child, ports, seconds = env.startGateway(f"gateway-startup-{count}-{attempt}", usersCnf=fileName)
                times.append(seconds)
                if attempt == 2:
                    if fileName == "users.cnf":
                        users = [list(u) for u in env.users[:200]]
                    else:
                        step = max(1, count // 200)
                        users = [[f"big{i:06d}", "pw-shared"] for i in range(0, count, step)][:200]
                    target = tcpTarget(ports["tcp-auth"])
                    for phase, n in (("cold", len(users)), ("warm", 1000)):
                        try:
                            res = runLoad({"scenario": "setup", "target": target, "users": users,
                                           "connections": n, "concurrency": o.concurrency,
                                           "sources": setupSources(o.concurrency)})
                            row[f"{phase}PerSec"] = res["perSec"]
                            row[f"{phase}OpenP50ms"] = res["openP50ms"]
                            row[f"{phase}Failed"] = res["failed"]
                        except LoadError as e:
                            row[f"{phase}Error"] = str(e)
                    row["rssAfter"] = infra.rssBytes(child.pid)
                env.stopChild(child)
            row["startupSeconds"] = statistics.median(times)
            row["startupRuns"] = [round(t, 3) for t in times]
            log(f"startup with {count:,} users ({size / 2**20:.1f} MiB users.cnf): "
                f"{row['startupSeconds']:.2f} s (runs {row['startupRuns']}); logins cold "
                f"{row.get('coldPerSec', 0):,.0f}/s, warm {row.get('warmPerSec', 0):,.0f}/s")
            self.results["rows"].append(row)
            self.save()

    # login storm ------------------------------------------------------------------
    def loginStorm(self):
        """
        C{--storm-users} distinct users (default hash cost) log in at once
        over the AMQP listener of a fresh gateway, each from its own
        loopback address, while an already open connection makes a round
        trip every 10 ms.  One row per C{--storm-variants}: C{patient} (the
        listener's C{handshake_timeout} raised above the storm's length, so
        the row measures the hashing pool and the reactor) and C{defaults}
        (every setting at its default, as a real deployment meets a storm).
        """
        o = self.opts
        usersCnf, hashingSeconds = stormUsersCnf(o.storm_users)
        log(f"login storm: {o.storm_users:,} users at the default hash cost in {usersCnf}"
            + (f" (hashed in {hashingSeconds:.0f} s)" if hashingSeconds else " (cached)"))
        for variant in o.storm_variants:
            row = {"scenario": "login-storm", "variant": variant, "users": o.storm_users,
                   "loadAverageBefore": loadAverage()}
            try:
                row.update(self._storm(variant, usersCnf))
            except (LoadError, RuntimeError, OSError, subprocess.TimeoutExpired) as e:
                row["error"] = f"{type(e).__name__}: {e}"
                log(f"login storm {variant} failed: {row['error']}")
            row["loadAverageAfter"] = loadAverage()
            self.results["rows"].append(row)
            self.save()

    # reconnect storm ------------------------------------------------------------
    def reconnectStorm(self):
        """
        C{--reconnect-users} browsers (pages) log in once with a password on
        the ticket endpoint of a gateway with C{key_file} (each keeps the
        session cookie), open the WebSocket with their ticket and stay.  The
        gateway is then restarted (SIGTERM, a new process, the same
        configuration and key file), and every page asks for a new ticket
        with its cookie alone and opens the WebSocket again, at most
        C{--concurrency} in flight.  The row: how long until all are back,
        how many needed their password, and how many password hashes the
        new gateway computed (its C{kaazing_promo_verify_cache_total}
        misses), next to what N hashes at the default cost would have taken.
        """
        o = self.opts
        env = self.env
        count = min(o.reconnect_users, len(env.users))
        row = {"scenario": "reconnect-storm", "users": count, "concurrency": o.concurrency,
               "loadAverageBefore": loadAverage()}
        keyFile = os.path.join(env.base, "reconnect", "gateway.key")
        os.makedirs(os.path.dirname(keyFile), exist_ok=True)
        child, ports, configPath = env.startReconnectGateway("gateway-reconnect", keyFile)
        pages = None
        try:
            pages = LoadProcess({
                "scenario": "browsers", "target": {"kind": "ws", "url": f"ws://127.0.0.1:{ports['web']}/amqp"},
                "http": {"host": "127.0.0.1", "port": ports["web"], "path": "/amqp"},
                "users": [list(u) for u in env.users[:count]], "sources": [stormSource(i) for i in range(count)],
                "concurrency": o.concurrency, "timeout": 600})
            held = pages.event()
            if held.get("event") != "held":
                raise LoadError(f"the pages did not all connect: {held}")
            row["held"] = held
            log(f"reconnect storm: {held['pages']:,} pages connected in {held['seconds']:.1f} s "
                f"({held['withCookie']:,} with a session cookie); restarting the gateway")
            t0 = time.monotonic()
            env.stopChild(child)
            stopped = time.monotonic()
            child, ports, startup = env._spawnGateway("gateway-reconnect", configPath, ports)
            row["restart"] = {"stopSeconds": stopped - t0, "startSeconds": startup}
            before = _verifyCacheCounts(ports["admin"])
            cpu0 = infra.cpuSeconds(child.pid)
            pages.proc.stdin.write("reconnect\n")
            pages.proc.stdin.flush()
            result = pages.event().get("result") or {}
            row["gatewayCpuSeconds"] = infra.cpuSeconds(child.pid) - cpu0
            after = _verifyCacheCounts(ports["admin"])
            row.update(result=result, hashes=after["miss"] - before["miss"], cacheHits=after["hit"] - before["hit"])
        except (LoadError, RuntimeError, OSError, subprocess.TimeoutExpired) as e:
            row["error"] = f"{type(e).__name__}: {e}"
            log(f"reconnect storm failed: {row['error']}")
        finally:
            if pages is not None:
                pages.kill()
            env.stopChild(child)
        hashRuns = hashTimes()
        row["hashSeconds"] = statistics.median(w for w, _ in hashRuns)
        row["cores"] = os.cpu_count() or 1
        row["withoutCookiesSeconds"] = count * row["hashSeconds"] / row["cores"]
        row["loadAverageAfter"] = loadAverage()
        if "result" in row:
            r = row["result"]
            log(f"reconnect storm: {r.get('reconnected'):,} of {count:,} back in {r.get('seconds') or 0:.2f} s "
                f"(p50 {r.get('p50ms') or 0:.0f} ms, p99 {r.get('p99ms') or 0:.0f} ms); password needed "
                f"{r.get('neededPassword')}, hashes {row['hashes']}; {count:,} hashes at the default cost would "
                f"take {row['withoutCookiesSeconds']:.0f} s")
        self.results["rows"].append(row)
        self.save()

    def _storm(self, variant, usersCnf):
        import abuse  # the source-bound AMQP client (connectFrom, AMQPClient, Closed)
        o = self.opts
        env = self.env
        cores = os.cpu_count() or 1
        # One hash's time, median of 5 just before the storm (and 5 more after
        # it, in the row): the shared machine's load moves it.
        hashRuns = hashTimes()
        hashSeconds = statistics.median(w for w, _ in hashRuns)
        ideal = o.storm_users * hashSeconds / cores
        bound = 1.2 * ideal
        # The storm gives up at 3x the bound (or a minute): a row that has not
        # finished by then has failed its target whatever it would have done.
        cap = max(60.0, 3 * bound)
        options = dict(o.storm_listener_option)
        if variant == "patient":
            options.setdefault("handshake_timeout", f"{cap + 30:.0f}.0")
        child, ports = env.startStormGateway(f"gateway-storm-{variant}", usersCnf, options)
        port = ports["amqp"]
        out = {"cores": cores, "hashSeconds": hashSeconds, "hashRuns": hashRuns, "idealSeconds": ideal,
               "boundSeconds": bound, "capSeconds": cap, "listenerOptions": options}
        log(f"login storm {variant}: one hash {hashSeconds * 1e3:.0f} ms (runs {hashRuns}), {cores} cores: "
            f"ideal {ideal:.1f} s, bound (1.2x) {bound:.1f} s, cap {cap:.0f} s; listener options {options}")
        probe = LoadProcess({"scenario": "probe", "target": tcpTarget(port), "user": STORM_PROBE_USER,
                             "password": STORM_PROBE_PASSWORD, "interval": 10, "timeout": cap + 300})
        try:
            if probe.event().get("event") != "ready":
                raise LoadError("the probe did not get ready")
            time.sleep(2.0)  # an idle baseline for the probe
            pids = {"gateway": child.pid, "broker": env.rabbit.vmPid}
            results = [None] * o.storm_users
            release = threading.Event()
            threads = []
            old = threading.stack_size(256 * 1024)
            try:
                for i in range(o.storm_users):
                    t = threading.Thread(target=stormClient, daemon=True, args=(
                        abuse, port, stormSource(i), stormUser(i), stormPassword(i), release, cap, results, i))
                    t.start()
                    threads.append(t)
            finally:
                threading.stack_size(old)
            probe.proc.stdin.write("start\n")
            probe.proc.stdin.flush()
            if probe.event().get("event") != "started":
                raise LoadError("the probe did not start")
            spy = self._startSpy(child.pid, "raw", os.path.join(env.base, f"storm-{variant}.collapsed")) \
                if o.storm_profile else None
            ru0 = os.times()
            with CpuMeter(pids) as meter:
                release.set()
                t0 = time.monotonic()
                for t in threads:
                    t.join(max(0.1, t0 + cap + 30 - time.monotonic()))
                wall = time.monotonic() - t0
            ru1 = os.times()
            if spy is not None:
                out["profile"] = self._stopSpy(spy, f"storm-{variant}", f"login storm ({variant}), {o.storm_users:,} "
                                               "users, every thread of the gateway")
            probe.proc.stdin.write("stop\n")
            probe.proc.stdin.flush()
            probeResult = probe.event().get("result")
            hashAfter = hashTimes()
        finally:
            probe.kill()
            env.stopChild(child)
        done = [r for r in results if r is not None]
        ok = [r for r in done if r["ok"]]
        failures = collections.Counter()
        for r in done:
            failures.update(r["failures"])
        outcomes = collections.Counter(r["outcome"] for r in done if not r["ok"])
        loginTimes = sorted(r["seconds"] for r in ok)
        connects = sorted(r["connectSeconds"] for r in done if r.get("connectSeconds") is not None)
        out.update(
            hashRunsAfter=hashAfter, hashSecondsAfter=statistics.median(w for w, _ in hashAfter),
            hashCpuSeconds=statistics.median(c for _, c in hashRuns + hashAfter),
            idealAfterSeconds=o.storm_users * statistics.median(w for w, _ in hashRuns + hashAfter) / cores,
            ok=len(ok), failed=o.storm_users - len(ok), attempts=sum(r["attempts"] for r in done),
            failures=dict(failures), outcomes=dict(outcomes),
            totalSeconds=loginTimes[-1] if len(ok) == o.storm_users else None,
            lastOkSeconds=loginTimes[-1] if loginTimes else None, wallSeconds=wall,
            loginP50Seconds=_pct(loginTimes, 50), loginP99Seconds=_pct(loginTimes, 99),
            firstConnectP50Seconds=_pct(connects, 50), firstConnectMaxSeconds=connects[-1] if connects else None,
            gatewayCpuSeconds=meter.used.get("gateway"), gatewayCores=meter.used.get("gateway", 0) / wall,
            brokerCpuSeconds=meter.used.get("broker"),
            clientCpuSeconds=(ru1.user + ru1.system) - (ru0.user + ru0.system), probe=probeResult)
        p = probeResult or {}
        log(f"login storm {variant}: {len(ok):,} of {o.storm_users:,} logged in, last after "
            f"{out['lastOkSeconds'] or 0:.1f} s (bound {bound:.1f} s); attempts {out['attempts']:,}, failures "
            f"{dict(failures)}; gateway {out['gatewayCores']:.2f} cores; probe p50 "
            f"{(p.get('load') or {}).get('p50ms') or 0:.2f} ms p99 {(p.get('load') or {}).get('p99ms') or 0:.2f} ms "
            f"max {(p.get('load') or {}).get('maxMs') or 0:.1f} ms over {(p.get('load') or {}).get('samples', 0)}")
        return out

    def save(self):
        report.write(self.results, self.resultsDir, self.ts)


# -- login storm: users, clients ---------------------------------------------------

#: Where bench/run keeps what is costly to make again (users.cnf files at
#: the default hash cost), keyed by what they depend on.
CACHE = os.environ.get("BENCH_CACHE", os.path.join(HERE, ".cache"))
STORM_PROBE_USER = "storm-probe"
STORM_PROBE_PASSWORD = "pw-storm-probe"


def stormUser(i):
    return f"storm{i:05d}"


def stormPassword(i):
    return f"pw-storm{i:05d}"


def stormSource(i):
    """
    The storm's client C{i} logs in from its own loopback address (the
    login protection counts per host): 127.0.10.1, 127.0.10.2, ….
    """
    return f"127.0.{10 + i // 250}.{1 + i % 250}"


def _hashPassword(password):
    from kaazing_promo.auth.passhash import makeHash
    return makeHash(password)


def stormUsersCnf(count):
    """
    A users.cnf of C{count} storm users and the probe's user, each at the
    default hash cost (PBKDF2-SHA256, 600,000 iterations), made once in a
    process pool (one process per core) and kept in L{CACHE}.

    @return: C{(path, seconds spent hashing now)} (0 when it was cached).
    """
    from concurrent.futures import ProcessPoolExecutor

    from kaazing_promo.auth.passhash import DEFAULT_ITERATIONS
    from kaazing_promo.auth.userscnf import UserEntry, renderUsersCnf
    path = os.path.join(CACHE, f"storm-users-{count}-pbkdf2-{DEFAULT_ITERATIONS}.cnf")
    if os.path.exists(path):
        return path, 0.0
    os.makedirs(CACHE, exist_ok=True)
    names = [stormUser(i) for i in range(count)] + [STORM_PROBE_USER]
    passwords = [stormPassword(i) for i in range(count)] + [STORM_PROBE_PASSWORD]
    log(f"hashing {len(names):,} passwords at {DEFAULT_ITERATIONS:,} iterations in {os.cpu_count()} processes "
        f"(once; kept in {CACHE})")
    t0 = time.monotonic()
    with ProcessPoolExecutor(os.cpu_count() or 1) as pool:
        hashes = list(pool.map(_hashPassword, passwords, chunksize=8))
    entries = [UserEntry(n, h, frozenset(["Everybody"])) for n, h in zip(names, hashes)]
    with open(path + ".tmp", "wb") as f:
        f.write(renderUsersCnf(entries, {"Everybody": names}))
    os.replace(path + ".tmp", path)
    return path, time.monotonic() - t0


def _verifyCacheCounts(adminPort):
    """
    @return: C{{"hit": n, "miss": n}} of the gateway's
        C{kaazing_promo_verify_cache_total} (a miss is one password hash).
    """
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{adminPort}/metrics", timeout=10) as response:
        return verifyCacheCounts(response.read().decode("utf-8"))


def verifyCacheCounts(text):
    """
    @param text: the gateway's C{/metrics} page.
    @return: C{{"hit": n, "miss": n}} of its C{kaazing_promo_verify_cache_total}.
    @raise RuntimeError: either series is missing (the gateway exports both
        from its start, at 0): a renamed metric must not read as no hashes.
    """
    counts = {}
    for line in text.splitlines():
        if line.startswith("kaazing_promo_verify_cache_total{"):
            result = line.split('result="', 1)[1].split('"', 1)[0]
            counts[result] = int(float(line.rsplit(" ", 1)[1]))
    missing = {"hit", "miss"} - set(counts)
    if missing:
        raise RuntimeError(f"the gateway's /metrics has no kaazing_promo_verify_cache_total for {sorted(missing)}")
    return counts


def hashTimes(runs=5):
    """
    One password check at the default cost, one at a time on one core, now.

    @return: C{[(wall seconds, CPU seconds)]}, one per run: on a shared
        machine the wall time is the longer (the thread waits for a core).
    """
    from kaazing_promo.auth.passhash import makeHash, verify
    h = makeHash("pw-timing")
    times = []
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.thread_time()
        verify(h, "pw-timing")
        times.append((round(time.perf_counter() - t0, 4), round(time.thread_time() - c0, 4)))
    return times


def stormClient(abuse, port, source, user, password, release, cap, results, index):
    """
    One storm user: once C{release} is set, log in over the AMQP listener
    from C{source} (header, Start-Ok PLAIN, Tune-Ok, Open → Open-Ok, then
    Close), as the page or an application would: a rate-limited answer
    ("retry after") is tried again a second later, and so is a connection
    the gateway closed (its handshake deadline passed), until C{cap}
    seconds after the release.  Stores its result in C{results[index]}.
    """
    release.wait()
    t0 = time.monotonic()
    deadline = t0 + cap
    failures = collections.Counter()
    out = {"ok": False, "attempts": 0, "connectSeconds": None, "outcome": None}
    while True:
        out["attempts"] += 1
        try:
            sock = abuse.connectFrom(source, port, deadline)
        except OSError as e:
            failures[f"connect: {type(e).__name__}"] += 1
            out["outcome"] = f"connect: {type(e).__name__}"
            if time.monotonic() + 1 >= deadline:
                break
            time.sleep(1)
            continue
        if out["connectSeconds"] is None:
            out["connectSeconds"] = time.monotonic() - t0
        try:
            client = abuse.AMQPClient(abuse.TcpPipe(sock, deadline))
            client.login(user, password)
            client.open()
            out.update(ok=True, seconds=time.monotonic() - t0, outcome="open-ok")
            break
        except abuse.Closed as e:
            kind = e.answer.kind
            # The answer as the client saw it ("close 403 … retry after N s",
            # "connection closed"), numbers blanked.
            failures[e.answer.raw] += 1
            out["outcome"] = e.answer.raw
            if kind == "realm" or time.monotonic() + 1 >= deadline:
                break
            # The gateway says "retry after 1 s" when too many logins wait.
            time.sleep(1)
        except (socket.timeout, TimeoutError):
            failures["timed out"] += 1
            out["outcome"] = f"no Open-Ok within {cap:.0f} s"
            break
        except OSError as e:
            failures[f"socket: {type(e).__name__}"] += 1
            out["outcome"] = f"socket: {type(e).__name__}"
            if time.monotonic() + 1 >= deadline:
                break
            time.sleep(1)
        finally:
            sock.close()
    out["failures"] = dict(failures)
    results[index] = out


def _pct(values, p):
    if not values:
        return None
    return values[min(len(values) - 1, max(0, -(-len(values) * p // 100) - 1))]


# -- main -------------------------------------------------------------------------

def loadAverage():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def versions():
    def out(argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=30, env=GATEWAY_ENV).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return "?"
    py = os.path.join(PROJECT_VENV, "bin", "python")
    gw = out([py, "-c", "import importlib.metadata as m, kaazing_promo, twisted, autobahn; "
                        "print(m.version('kaazing-promo'), twisted.__version__, autobahn.__version__, "
                        "kaazing_promo.__file__, sep='|')"]).split("|")
    bv = os.path.join(BENCH_VENV, "bin", "python")
    websockify = out([bv, "-c", "import importlib.metadata as m; print(m.version('websockify'))"])
    pkg = os.path.join(HERE, "node_modules", "@cloudamqp", "amqp-client", "package.json")
    try:
        with open(pkg) as f:
            client = json.load(f)["version"]
    except OSError:
        client = "?"
    rabbit = out(["dpkg-query", "-W", "-f", "${Version}", "rabbitmq-server"])
    erlang = out(["erl", "-noshell", "-eval", 'io:format("~s", [erlang:system_info(otp_release)]), halt().'])
    return {
        "kaazing_promo": gw[0] if gw else "?", "kaazing_promo_installed_at": gw[3] if len(gw) > 3 else "?",
        "python": out([py, "-c", "import sys; print(sys.version.split()[0])"]),
        "twisted": gw[1] if len(gw) > 1 else "?", "autobahn": gw[2] if len(gw) > 2 else "?",
        "rabbitmq": rabbit, "erlang_otp": erlang, "node": out([NODE, "--version"]), "amqp_client": client,
        "load_generator": f"@cloudamqp/amqp-client {client} on Node {out([NODE, '--version'])} "
                          f"(TCP: AMQPClient; WebSocket: AMQPWebSocketClient over {WS_CLIENTS[WS_CLIENT]})",
        "ws": _nodePackageVersion("ws"), "bufferutil": _nodePackageVersion("bufferutil"),
        "websockify": websockify, "socat": out(["socat", "-V"]).splitlines()[1] if out(["socat", "-V"]) else "?",
        "project_venv": PROJECT_VENV,
    }


def _nodePackageVersion(name):
    try:
        with open(os.path.join(HERE, "node_modules", name, "package.json")) as f:
            return json.load(f)["version"]
    except (OSError, ValueError, KeyError):
        return "?"


def sourceDigest():
    """
    Whether the installed gateway is this checkout's: a digest of both trees.
    """
    import hashlib

    def digest(root):
        h = hashlib.sha256()
        for dirpath, dirnames, filenames in sorted(os.walk(root)):
            dirnames.sort()
            for name in sorted(filenames):
                if name.endswith(".py"):
                    p = os.path.join(dirpath, name)
                    h.update(os.path.relpath(p, root).encode())
                    with open(p, "rb") as f:
                        h.update(f.read())
        return h.hexdigest()[:16]
    checkout = os.path.join(os.path.dirname(HERE), "kaazing_promo")
    installed = subprocess.run([os.path.join(PROJECT_VENV, "bin", "python"), "-c",
                                "import kaazing_promo, os; print(os.path.dirname(kaazing_promo.__file__))"],
                               capture_output=True, text=True, env=GATEWAY_ENV).stdout.strip()
    out = {"checkout": digest(checkout) if os.path.isdir(checkout) else None,
           "installed": digest(installed) if installed and os.path.isdir(installed) else None}
    out["same"] = out["checkout"] == out["installed"]
    return out


def parseArgs(argv):
    p = argparse.ArgumentParser(prog="bench/run", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke mode: small counts, one run (< 2 minutes)")
    p.add_argument("--runs", type=int, help="interleaved runs per throughput/latency row (default 5; quick 1)")
    p.add_argument("--held", type=int, help="connections held through direct and the gateway (default 9000; "
                                            "quick 200); the gateway's 20,000 descriptors allow ~9,960")
    p.add_argument("--held-peers", type=int, help="connections held through socat and websockify "
                                                  "(default 1000; quick 50): both fork per connection")
    p.add_argument("--setup-connections", type=int, help="connections per setup-rate row (default 3000; quick 200)")
    p.add_argument("--setup-connections-peers", type=int, default=1000,
                   help="cap for websockify's setup row (default 1000)")
    p.add_argument("--users", type=int, help="users in the generated users.cnf (default 2000; quick 200)")
    p.add_argument("--concurrency", type=int, default=50, help="connection opens in flight (default 50)")
    p.add_argument("--slow-mib", type=int, help="MiB published to the stalled consumer (default 256; quick 32)")
    p.add_argument("--max-pending-bytes", type=int, default=1048576, help="the gateway's max_pending_bytes")
    p.add_argument("--scenarios",
                   default="throughput,profile,latency,setup,held,slow,startup,login-storm,reconnect-storm",
                   help="comma-separated subset of throughput,profile,latency,setup,held,slow,startup,login-storm,"
                        "reconnect-storm")
    p.add_argument("--reconnect-users", type=int, help="reconnect-storm: browsers connected when the gateway "
                                                       "restarts (default 2000; quick 200; at most --users)")
    p.add_argument("--targets", help="throughput/latency only against these (comma-separated: direct,socat,"
                                     "twisted-relay,gateway-tcp,gateway-ws,gateway-ws-zeromask,websockify)")
    p.add_argument("--startup-users", type=int, help="users in the large users.cnf of the start-up scenario "
                                                     "(default 100000; quick 0 = only the bench's own file)")
    p.add_argument("--ws-client", choices=tuple(WS_CLIENTS), default="browser",
                   help="WebSocket under the load generator: 'browser' (the ws package with random masking keys "
                        "XORed natively by bufferutil, as browsers; default; the zero-key client then runs as the "
                        "extra target gateway-ws-zeromask), 'zero' (all-zero key: the client skips masking) or "
                        "'native' (Node's built-in WebSocket, masks in JS)")
    p.add_argument("--storm-users", type=int, help="login-storm: distinct users logging in at once (default "
                                                   "2000; quick 200), at the default hash cost")
    p.add_argument("--storm-variants", default="patient,defaults",
                   help="login-storm rows: 'patient' (handshake_timeout above the storm's length: the hashing "
                        "pool and the reactor) and/or 'defaults' (every listener setting at its default)")
    p.add_argument("--storm-listener-option", action="append", default=[], metavar="KEY=VALUE",
                   help="login-storm: a TOML listener setting for every row (repeatable), e.g. handshake_timeout=60.0")
    p.add_argument("--storm-profile", action="store_true",
                   help="login-storm: py-spy on the gateway during each row (slows it: the row is then not judged)")
    p.add_argument("--no-delegated", action="store_true", help="skip the delegated realm (stub API Gateway)")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, configs)")
    p.add_argument("--results", default=os.path.join(HERE, "results"), help="where results go")
    o = p.parse_args(argv)
    q = o.quick
    o.runs = o.runs or (1 if q else 5)
    o.held = o.held or (200 if q else 9000)
    o.held_peers = o.held_peers or (50 if q else 1000)
    o.setup_connections = o.setup_connections or (200 if q else 3000)
    o.users = o.users or (200 if q else 2000)
    o.slow_mib = o.slow_mib or (32 if q else 256)
    o.messages_16 = 15000 if q else 100000
    o.messages_4k = 8000 if q else 50000
    o.messages_64k = 1500 if q else 10000
    o.latency_samples = 1000 if q else 5000
    o.profile_messages = 150000 if q else 300000
    o.startup_users = (0 if q else 100000) if o.startup_users is None else o.startup_users
    o.storm_users = o.storm_users or (200 if q else 2000)
    o.storm_variants = [v.strip() for v in o.storm_variants.split(",") if v.strip()]
    bad = [v for v in o.storm_variants if v not in ("patient", "defaults")]
    if bad:
        p.error(f"--storm-variants: unknown {bad}")
    options = {}
    for item in o.storm_listener_option:
        key, sep, value = item.partition("=")
        if not sep:
            p.error(f"--storm-listener-option {item!r}: KEY=VALUE")
        options[key.strip()] = value.strip()
    o.storm_listener_option = options
    o.scenarios = [s.strip() for s in o.scenarios.split(",") if s.strip()]
    o.reconnect_users = o.reconnect_users or (200 if q else 2000)
    known = {"throughput", "profile", "latency", "setup", "held", "slow", "startup", "login-storm",
             "reconnect-storm"}
    if set(o.scenarios) - known:
        p.error(f"--scenarios: unknown {sorted(set(o.scenarios) - known)}")
    if q and "profile" in o.scenarios and "--scenarios" not in " ".join(argv):
        o.scenarios.remove("profile")
    return o


def main(argv):
    global WS_CLIENT
    o = parseArgs(argv)
    WS_CLIENT = o.ws_client
    infra.raiseOpenFiles()
    ts = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    os.makedirs(o.results, exist_ok=True)
    base = tempfile.mkdtemp(prefix="kp-bench-")
    started = time.monotonic()
    results = {
        "ws_client": o.ws_client,
        "timestamp": ts, "mode": "quick" if o.quick else "full", "machine": infra.machine(),
        "versions": versions(), "gateway_source": sourceDigest(),
        "settings": {k: v for k, v in vars(o).items() if k not in ("results",)},
        "load_average_at_start": loadAverage(),
        "notes": [], "rows": [],
    }
    env = Environment(base, o)
    bench = Bench(env, o, results)
    bench.resultsDir, bench.ts = o.results, ts

    def onSignal(sig, frame):
        raise KeyboardInterrupt(f"signal {sig}")
    signal.signal(signal.SIGTERM, onSignal)
    log(f"bench/run {results['mode']} → {o.results}/{ts}.json|.md  (temp dir {base})")
    log(f"load generator: {results['versions']['load_generator']}")
    if not results["gateway_source"]["same"]:
        results["notes"].append("the installed kaazing_promo differs from this checkout's: "
                                f"{results['gateway_source']} (reinstall with pip install .)")
        log("WARNING: " + results["notes"][-1])
    status = 0
    try:
        env.startRabbit()
        env.makeUsers(o.users)
        if not o.no_delegated:
            env.startStub()
        env.gateway, env.ports, startup = env.startGateway("gateway")
        results["gateway_startup_seconds"] = round(startup, 3)
        log(f"gateway (internal realm, {o.users} users) listening in {startup:.2f} s: {env.ports}")
        if not o.no_delegated:
            env.gatewayDelegated, env.delegatedPorts, _ = env.startGateway("gateway-delegated", "delegated")
        env.startPeers()
        for scenario, fn in (("throughput", bench.throughput), ("profile", lambda: bench.profiles(
                ts, o.results)), ("latency", bench.latency), ("setup", bench.setup), ("held", bench.held),
                ("slow", bench.slowConsumer), ("startup", bench.startup), ("login-storm", bench.loginStorm),
                ("reconnect-storm", bench.reconnectStorm)):
            if scenario in o.scenarios:
                log(f"--- {scenario} (load average {loadAverage()})")
                t0 = time.monotonic()
                load0 = loadAverage()
                fn()
                results.setdefault("scenario_seconds", {})[scenario] = round(time.monotonic() - t0, 1)
                results.setdefault("load_average", {})[scenario] = {"start": load0, "end": loadAverage()}
        for c in env.children:
            if c.name.startswith("gateway") and not c.alive():
                results["notes"].append(f"{c.name} exited during the run: {c.tail(5)}")
    except KeyboardInterrupt as e:
        results["notes"].append(f"interrupted: {e}")
        status = 130
    except Exception as e:
        import traceback
        traceback.print_exc()
        results["notes"].append(f"failed: {type(e).__name__}: {e}")
        status = 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        for c in env.children:
            if c.name.startswith("gateway"):
                results.setdefault("gateway_log_tail", {})[c.name] = c.tail(15)
        env.stopAll()
        infra.finishRun(results, started, lambda: report.write(results, o.results, ts), o.keep, base, log)
    log(f"done in {results['total_seconds']} s: {o.results}/{ts}.md")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
