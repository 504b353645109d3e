"""
bench/soak.py — a bounded soak of the gateway (issue 7, item 5): N concurrent
connection loops churning connect → authenticate → publish with confirms →
consume → close for S seconds, then: was every confirmed message consumed
exactly once, are the gateway's file descriptors back to where they started,
is its RSS back within 10 % of its start?

    /tmp/venv/bin/python bench/soak.py [--connections 2000] [--seconds 60]
                                       [--listener amqp|web|both] [--help]

Starts (and always stops, also on failure or Ctrl-C) a dedicated RabbitMQ node
(infra.RabbitNode, never the shared 5672 one) and the gateway
(twistd -n kaazing-promo from this Python's venv) with the internal realm over
a generated users.cnf, consolidated promotion to the node's guest, an AMQP
listener and a WebSocket listener, both auth = "required", and the admin
endpoint (its connections_open gauge tells when the gateway is idle).  The
load is soak.mjs (@cloudamqp/amqp-client 4.1.1 on Node).  Everything on
127.0.0.1; every wait is bounded.  Writes bench/results/<UTC>-soak.json and
.md.  Exit status 0 when every check passed, 1 when one failed, 2 when the
soak could not run.
"""

import argparse
import datetime
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import infra  # noqa: E402

NODE = os.environ.get("BENCH_NODE", "node")
SOAK_MJS = os.path.join(HERE, "soak.mjs")
PROJECT_VENV = os.environ.get("KAAZING_PROMO_VENV") or os.path.dirname(os.path.dirname(sys.executable))


def log(*parts):
    print(f"[{time.strftime('%H:%M:%S')}]", *parts, flush=True)


def loadAverage():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def mib(b):
    return None if b is None else round(b / 2**20, 1)


# -- waiting for someone else's bench/run ---------------------------------------

def waitForOtherBench(limit):
    """
    Do not measure while a bench/run is measuring: wait (every 15 s, at most
    C{limit} seconds) until no bench/bench.py runs.
    """
    end = time.monotonic() + limit
    announced = False
    while True:
        busy = subprocess.run(["pgrep", "-f", "bench/bench.py"], capture_output=True, text=True).stdout.split()
        if not busy:
            return True
        if time.monotonic() >= end:
            log(f"bench/bench.py still running (pids {' '.join(busy)}) after {limit} s: giving up")
            return False
        if not announced:
            log(f"bench/bench.py is running (pids {' '.join(busy)}): waiting for it to finish "
                f"(polling every 15 s, at most {limit} s; --wait-for-bench 0 to skip)")
            announced = True
        time.sleep(15)


# -- the environment -----------------------------------------------------------------

class Soak:
    def __init__(self, opts, base):
        self.o = opts
        self.base = base
        self.rabbit = None
        self.gateway = None
        self.load = None

    def makeUsers(self):
        from kaazing_promo.auth.passhash import makeHash
        from kaazing_promo.auth.userscnf import UserEntry, renderUsersCnf
        self.users = [(f"soak{i:05d}", f"pw-soak{i:05d}") for i in range(self.o.users)]
        entries = [UserEntry(name, makeHash(pw, iterations=1000), frozenset(["Everybody"]))
                   for name, pw in self.users]
        with open(os.path.join(self.base, "users.cnf"), "wb") as f:
            f.write(renderUsersCnf(entries, {"Everybody": [n for n, _ in self.users]}))
        with open(os.path.join(self.base, "users.json"), "w") as f:
            json.dump(self.users, f)
        secrets = os.path.join(self.base, "broker-secrets.toml")
        with open(secrets, "w") as f:
            f.write('guest = "guest"\n')
        os.chmod(secrets, 0o600)

    def startRabbit(self):
        t0 = time.monotonic()
        self.rabbit = infra.RabbitNode(self.base)
        self.rabbit.start()
        log(f"RabbitMQ node {self.rabbit.node} on 127.0.0.1:{self.rabbit.port} "
            f"(started in {time.monotonic() - t0:.1f} s)")

    def startGateway(self):
        self.ports = {"amqp": infra.freePort(), "web": infra.freePort(), "admin": infra.freePort()}
        lines = ['user_auth = "internal"', "", "[broker]",
                 f'endpoint = "tcp:host=127.0.0.1:port={self.rabbit.port}"', "",
                 "[admin]", f'endpoint = "tcp:port={self.ports["admin"]}:interface=127.0.0.1"', ""]
        for name, protocol in (("amqp", "amqp"), ("web", "websocket")):
            lines += ["[[listeners]]", f'name = "soak-{name}"', f'protocol = "{protocol}"',
                      f'endpoint = "tcp:port={self.ports[name]}:interface=127.0.0.1"', 'auth = "required"', ""]
        lines += ["[internal]", 'users_cnf = "users.cnf"', "",
                  "[promotion]", 'mode = "consolidated"', 'user = "guest"', 'secrets_file = "broker-secrets.toml"',
                  ""]
        self.configPath = os.path.join(self.base, "gateway.toml")
        with open(self.configPath, "w") as f:
            f.write("\n".join(lines))
        twistd = os.path.join(PROJECT_VENV, "bin", "twistd")
        self.gateway = infra.Child("gateway", [twistd, "-n", "--pidfile=", "--logfile",
                                               os.path.join(self.base, "gateway.twistd.log"),
                                               "kaazing-promo", "--config", self.configPath],
                                   os.path.join(self.base, "gateway.log"), cwd=self.base)
        for port in self.ports.values():
            infra.waitForPort(port, 30, self.gateway.proc, "gateway")
        log(f"gateway pid {self.gateway.pid}: AMQP 127.0.0.1:{self.ports['amqp']}, "
            f"WebSocket ws://127.0.0.1:{self.ports['web']}/amqp, admin :{self.ports['admin']}")

    def stop(self):
        if self.load is not None and self.load.poll() is None:
            self.load.kill()
            self.load.wait(10)
        if self.gateway is not None:
            try:
                self.gateway.stop()
            except Exception as e:
                log(f"stopping the gateway: {e}")
        if self.rabbit is not None:
            self.rabbit.stop()

    # readings ----------------------------------------------------------------------
    def metrics(self):
        """
        @return: C{{"open": connections open now, "ended": {outcome: count},
            "logins": {outcome: count}}} from the admin endpoint (None if unreachable).
        """
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ports['admin']}/metrics", timeout=5) as r:
                text = r.read().decode()
        except OSError:
            return None
        out = {"open": 0, "ended": {}, "logins": {}}
        for line in text.splitlines():
            if line.startswith("#") or "{" not in line:
                continue
            name, rest = line.split("{", 1)
            labels, value = rest.rsplit("}", 1)
            labels = dict(part.split("=", 1) for part in labels.split(",") if "=" in part)
            labels = {k: v.strip('"') for k, v in labels.items()}
            value = float(value.split()[0])
            if name == "kaazing_promo_connections_open":
                out["open"] += int(value)
            elif name == "kaazing_promo_connections_total" and value:
                key = labels.get("outcome", "?")
                out["ended"][key] = out["ended"].get(key, 0) + int(value)
            elif name == "kaazing_promo_logins_total" and value:
                key = labels.get("outcome", "?")
                out["logins"][key] = out["logins"].get(key, 0) + int(value)
        return out

    def gatewayLogLines(self):
        """
        @return: every line the gateway logged so far, oldest first: twistd
            rotates its log file every 1,000,000 bytes, so all of them.
        """
        return infra.twistdLogLines(os.path.join(self.base, "gateway.twistd.log"))

    def reclaimLines(self):
        """
        @return: the gateway's "memory reclaimed" log lines so far.
        """
        return [line for line in self.gatewayLogLines() if "memory reclaimed" in line]

    def waitReclaim(self, timeout):
        """
        The gateway gives memory back (its MemoryReclaimer) some 5-10 s
        after its connections fell to a quarter of their peak: wait for that
        log line, at most C{timeout} s.

        @return: the line (RSS before and after, milliseconds), or None.
        """
        before = len(self.reclaimLines())
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            lines = self.reclaimLines()
            if len(lines) > before:
                line = lines[-1].split("] ", 1)[-1]
                log(f"  after {time.monotonic() - t0:.1f} s: {line}")
                return line
            time.sleep(0.5)
        log(f"  no memory reclaim logged within {timeout} s")
        return None

    def reading(self):
        pid = self.gateway.pid
        return {"rss": infra.rssBytes(pid), "fds": infra.openFiles(pid), "cpu": infra.cpuSeconds(pid)}

    def waitIdle(self, timeout):
        """
        Until the gateway has no connection open (admin gauge) and its
        descriptor count has not changed for 2 s.
        @return: seconds waited, or None if not idle within C{timeout}.
        """
        t0 = time.monotonic()
        same, last = 0, None
        while time.monotonic() - t0 < timeout:
            m = self.metrics()
            fds = infra.openFiles(self.gateway.pid)
            if m is not None and m["open"] == 0 and fds == last:
                same += 1
                if same >= 4:
                    return round(time.monotonic() - t0, 1)
            else:
                same = 0
            last = fds
            time.sleep(0.5)
        return None

    def brokerCounts(self):
        def count(*args):
            out = self.rabbit.ctl(*args, "--no-table-headers")
            return len([line for line in out.splitlines() if line.strip()])
        try:
            return {"connections": count("list_connections", "pid"), "queues": count("list_queues", "name")}
        except Exception as e:  # a reading, not a reason to fail the soak
            return {"error": str(e)}

    # the load ------------------------------------------------------------------------
    def runLoad(self, name, spec, onProgress=None):
        spec = dict(spec)
        spec.setdefault("targets", {"amqp": {"host": "127.0.0.1", "port": self.ports["amqp"]},
                                    "web": {"url": f"ws://127.0.0.1:{self.ports['web']}/amqp"}})
        spec.setdefault("listeners", self.listeners())
        spec.setdefault("usersFile", os.path.join(self.base, "users.json"))
        spec.setdefault("messages", self.o.messages)
        spec.setdefault("size", self.o.size)
        spec.setdefault("loopTimeout", self.o.loop_timeout)
        spec.setdefault("progressSeconds", 5)
        spec.setdefault("timeout", (spec.get("seconds") or 60) + spec.get("rampSeconds", 0)
                        + spec["loopTimeout"] + 60)
        path = os.path.join(self.base, f"{name}.json")
        with open(path, "w") as f:
            json.dump(spec, f)
        stderrPath = os.path.join(self.base, f"{name}.stderr")
        with open(stderrPath, "w") as err:
            self.load = subprocess.Popen([NODE, "--no-warnings", SOAK_MJS, path], stdout=subprocess.PIPE,
                                         stderr=err, stdin=subprocess.DEVNULL, text=True, cwd=HERE,
                                         preexec_fn=infra._childSetup)
        result = error = None
        deadline = time.monotonic() + spec["timeout"] + 30
        for line in self.load.stdout:
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if "result" in obj:
                result = obj["result"]
            elif "error" in obj:
                error = obj
            elif obj.get("event") == "progress" and onProgress:
                onProgress(obj)
            if time.monotonic() > deadline:
                break
        try:
            self.load.wait(max(1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.load.kill()
            self.load.wait(10)
        if result is None:
            with open(stderrPath) as f:
                tail = f.read()[-500:]
            raise RuntimeError(f"soak.mjs ({name}) exited {self.load.returncode} without a result: "
                               f"{(error or {}).get('error', '')[:500]} {tail}")
        return result

    def listeners(self):
        return {"amqp": ["amqp"], "web": ["web"], "both": ["amqp", "web"]}[self.o.listener]

    # the soak --------------------------------------------------------------------------
    def run(self, results):
        o = self.o
        self.startRabbit()
        self.makeUsers()
        self.startGateway()
        results["gateway_pid"] = self.gateway.pid

        # Cold: the gateway started, no client yet.
        self.waitIdle(30)
        time.sleep(1.0)
        cold = self.reading()
        results["cold"] = {"rssBytes": cold["rss"], "fds": cold["fds"]}
        log(f"cold (started, no client yet): gateway RSS {mib(cold['rss'])} MiB, {cold['fds']} fds")

        # Warm-up: the soak's own load, shorter.  It loads what any first
        # connection loads (modules, thread pool, buffers), logs every soak
        # user in (the internal realm's verification cache), and takes the
        # process to the soak's concurrency once: the start reading is the
        # gateway's steady state, which the soak must come back to.
        log(f"warm-up: the soak's load ({o.connections} concurrent loops) for {o.warmup_seconds} s")
        warm = self.runLoad("warmup", {"connections": o.connections, "seconds": o.warmup_seconds,
                                       "rampSeconds": o.ramp})
        results["warmup"] = warm
        if warm["loopsFailed"] or not warm["loopsCompleted"]:
            raise RuntimeError(f"warm-up: {warm['loopsCompleted']} loops completed, {warm['loopsFailed']} failed: "
                               f"{warm['errors']}")
        idle = self.waitIdle(60)
        if idle is None:
            raise RuntimeError("the gateway did not become idle after the warm-up")
        results["start_reclaim"] = self.waitReclaim(o.reclaim_wait)
        time.sleep(1.0)
        start = self.reading()
        results["start"] = {"rssBytes": start["rss"], "fds": start["fds"], "metrics": self.metrics(),
                            "broker": self.brokerCounts()}
        log(f"start (after warm-up): gateway RSS {mib(start['rss'])} MiB, {start['fds']} fds")

        rounds = []
        for k in range(o.rounds):
            rounds.append(self.soakRound(k))
        results["rounds"] = rounds
        results["soak"] = merge([r["soak"] for r in rounds])
        results["end"] = rounds[-1]["end"]
        # Over all rounds: the last round's idle wait, CPU and wall time summed.
        results["idle_after_seconds"] = rounds[-1]["idle_after_seconds"]
        for key in ("soak_wall_seconds", "gateway_cpu_seconds", "broker_cpu_seconds"):
            results[key] = round(sum(r[key] for r in rounds), 1)
        results["load_average"] = {"start": rounds[0]["load_average"]["start"],
                                   "end": rounds[-1]["load_average"]["end"]}
        results["peak"] = {"rssBytes": max([r["peak"]["rssBytes"] for r in rounds] + [start["rss"]]),
                           "fds": max([r["peak"]["fds"] for r in rounds] + [start["fds"]])}
        results["checks"] = self.checks(results)

    def soakRound(self, k):
        """
        One soak: o.connections loops for o.seconds, sampled every 0.5 s,
        then back to idle and the end reading.
        """
        o = self.o
        rnd = {}
        samples = []
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                r = self.reading()
                samples.append((round(time.monotonic() - t0, 2), r["rss"], r["fds"]))
                stop.wait(0.5)

        def progress(ev):
            r = samples[-1] if samples else (0, 0, 0)
            log(f"  t={ev['t']:5.1f} s  active {ev['active']:>5}  loops ok {ev['loopsCompleted']:>7,} "
                f"failed {ev['loopsFailed']:>5,}  confirmed {ev['confirmed']:>8,} consumed {ev['consumed']:>8,} "
                f"dup {ev['duplicates']} missing {ev['missing']} errors {ev['errors']}  "
                f"gateway RSS {mib(r[1])} MiB fds {r[2]}")
            rnd.setdefault("progress", []).append(ev)

        label = f"round {k + 1} of {o.rounds}: " if o.rounds > 1 else ""
        log(f"soak {label}{o.connections} concurrent loops ({'/'.join(self.listeners())}), {o.seconds} s, "
            f"{o.messages} messages of {o.size} B per loop, ramp {o.ramp} s")
        t0 = time.monotonic()
        cpu0 = infra.cpuSeconds(self.gateway.pid)
        brokerCpu0 = infra.treeCpu(self.rabbit.vmPid)
        load0 = loadAverage()
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            soak = self.runLoad(f"soak{k + 1}", {"connections": o.connections, "seconds": o.seconds,
                                                 "rampSeconds": o.ramp}, progress)
        finally:
            stop.set()
            sampler.join(5)
        wall = time.monotonic() - t0
        rnd.update(soak=soak, soak_wall_seconds=round(wall, 1),
                   gateway_cpu_seconds=round(infra.cpuSeconds(self.gateway.pid) - cpu0, 1),
                   broker_cpu_seconds=round(infra.treeCpu(self.rabbit.vmPid) - brokerCpu0, 1),
                   load_average={"start": load0, "end": loadAverage()}, samples=samples)
        log(f"soak {label}done in {wall:.1f} s: {soak['loopsCompleted']:,} loops ok, {soak['loopsFailed']:,} "
            f"failed; {soak['confirmed']:,} confirmed, {soak['consumed']:,} consumed, {soak['duplicates']} "
            f"duplicates, {soak['missing']} missing; setup {soak['setupPerSec']:,.0f}/s")

        # Back to idle.
        t1 = time.monotonic()
        idle = self.waitIdle(o.settle)
        rnd["idle_after_seconds"] = idle
        if idle is None:
            log(f"the gateway still had connections (or changing fds) after {o.settle} s")
        rnd["reclaim"] = self.waitReclaim(o.reclaim_wait)
        time.sleep(o.idle_seconds)
        end = self.reading()
        rnd["end"] = {"rssBytes": end["rss"], "fds": end["fds"], "metrics": self.metrics(),
                      "broker": self.brokerCounts(), "afterSeconds": round(time.monotonic() - t1, 1)}
        rnd["peak"] = {"rssBytes": max([x[1] for x in samples] + [end["rss"]]),
                       "fds": max([x[2] for x in samples] + [end["fds"]])}
        log(f"end of {label[:-2] if label else 'the soak'}: gateway RSS {mib(end['rss'])} MiB "
            f"(peak {mib(rnd['peak']['rssBytes'])}), {end['fds']} fds (peak {rnd['peak']['fds']})")
        return rnd

    def checks(self, r):
        o = self.o
        s = r["soak"]
        start, end = r["start"], r["end"]
        rssRatio = end["rssBytes"] / start["rssBytes"] if start["rssBytes"] else None
        cold = (r.get("cold") or {}).get("rssBytes")
        checks = {
            "exactly_once": {
                "pass": s["confirmed"] > 0 and s["consumed"] == s["confirmed"] and s["missing"] == 0
                and s["duplicates"] == 0 and s["foreign"] == 0 and s["corrupt"] == 0,
                "what": "every confirmed message consumed exactly once",
                "detail": f"{s['confirmed']:,} confirmed, {s['consumed']:,} consumed, {s['duplicates']} duplicates, "
                          f"{s['missing']} missing ({s['missingInFailedLoops']} in failed loops), {s['foreign']} "
                          f"foreign, {s['corrupt']} corrupt",
            },
            "fds": {
                "pass": abs(end["fds"] - start["fds"]) <= o.fd_slack,
                "what": f"gateway fds back to start (± {o.fd_slack})",
                "detail": f"{start['fds']} → peak {r['peak']['fds']} → {end['fds']}",
            },
            "rss": {
                "pass": rssRatio is not None and abs(rssRatio - 1) <= o.rss_tolerance,
                "what": f"gateway RSS within {o.rss_tolerance:.0%} of start (after the warm-up)",
                "detail": (f"{mib(start['rssBytes'])} → peak {mib(r['peak']['rssBytes'])} → "
                           f"{mib(end['rssBytes'])} MiB ({(rssRatio - 1) * 100:+.1f} %); cold (no client yet) "
                           f"{mib(cold)} MiB, end {(end['rssBytes'] / cold - 1) * 100:+.1f} % of that"
                           if rssRatio and cold else "?"),
            },
            "idle": {
                "pass": r.get("idle_after_seconds") is not None and end["metrics"] is not None
                and end["metrics"]["open"] == 0 and end["broker"].get("connections") == 0
                and end["broker"].get("queues") == 0,
                "what": "gateway and broker idle afterwards (no client connection, no broker connection or queue "
                        "left)",
                "detail": f"gateway open {end['metrics'] and end['metrics']['open']} "
                          f"(idle after {r.get('idle_after_seconds')} s), broker {end['broker']}",
            },
            "no_errors": {
                "pass": s["loopsFailed"] == 0 and s["unconfirmed"] == 0,
                "what": "no loop failed, every publish confirmed",
                "detail": f"{s['loopsFailed']} failed loops, {s['unconfirmed']} unconfirmed publishes; "
                          f"errors {s['errors'] or 'none'}",
            },
        }
        rounds = r.get("rounds") or []
        if len(rounds) > 1:
            first, last = rounds[0]["end"]["rssBytes"], rounds[-1]["end"]["rssBytes"]
            checks["rss_rounds"] = {
                "pass": abs(last / first - 1) <= o.rss_tolerance,
                "what": f"gateway RSS after the last round within {o.rss_tolerance:.0%} of after the first "
                        "(a leak grows round after round, a retained high-water mark does not)",
                "detail": " → ".join(f"{mib(x['end']['rssBytes'])}" for x in rounds)
                          + f" MiB ({(last / first - 1) * 100:+.1f} %)",
            }
        for name, c in checks.items():
            log(f"{'PASS' if c['pass'] else 'FAIL'}  {c['what']}: {c['detail']}")
        return checks


# -- the report ----------------------------------------------------------------------

COUNTS = ("loopsStarted", "loopsCompleted", "loopsFailed", "connected", "closedClean", "published", "confirmed",
          "unconfirmed", "consumed", "deliveries", "duplicates", "missing", "missingInFailedLoops", "foreign",
          "corrupt", "deliveredUnconfirmed", "seconds", "soakSeconds", "clientCpuSeconds")


def merge(soaks):
    """
    The rounds' soak.mjs results as one: counts summed, rates over the
    summed time, percentiles the worst round's (p50: the median round's).
    """
    if len(soaks) == 1:
        return soaks[0]
    out = dict(soaks[0])
    for key in COUNTS:
        out[key] = sum(s[key] for s in soaks)
    out["errors"] = {}
    out["perListener"] = {}
    for s in soaks:
        for k, v in s["errors"].items():
            out["errors"][k] = out["errors"].get(k, 0) + v
        for name, p in s["perListener"].items():
            q = out["perListener"].setdefault(name, dict.fromkeys(p, 0))
            for k, v in p.items():
                q[k] += v
    for key in ("connectP50ms", "loopP50ms"):
        out[key] = sorted(s[key] or 0 for s in soaks)[len(soaks) // 2]
    for key in ("connectP99ms", "connectMaxMs", "loopP99ms", "loopMaxMs", "clientRssBytes"):
        out[key] = max(s[key] or 0 for s in soaks)
    out["setupPerSec"] = out["connected"] / out["seconds"]
    out["loopsPerSec"] = out["loopsCompleted"] / out["seconds"]
    out["confirmedPerSec"] = out["confirmed"] / out["seconds"]
    return out


def markdown(r):
    o = r["settings"]
    m = r["machine"]
    v = r.get("versions", {})
    out = [f"# kaazing-promo soak — {r['timestamp']}", ""]
    out += [f"`bench/soak.py --connections {o['connections']} --seconds {o['seconds']} --listener {o['listener']}` "
            f"({o['messages']} messages of {o['size']} B per loop, ramp {o['ramp']} s, {o['users']} users). "
            f"Machine: {m['nproc']} cores ({m['cpu']}), {m['memory_gib']} GiB, Linux {m['kernel']}; client, broker "
            f"and gateway on the same cores, loopback only. Wall time {r.get('total_seconds', '?')} s "
            f"(soak {r.get('soak_wall_seconds', '?')} s). Load average at start {r.get('load_average_at_start')}.",
            ""]
    if v:
        out += [f"kaazing-promo {v.get('kaazing_promo')} (Python {v.get('python')}, Twisted {v.get('twisted')}, "
                f"Autobahn {v.get('autobahn')}), RabbitMQ {v.get('rabbitmq')} (OTP {v.get('erlang_otp')}, a dedicated "
                f"node), load: @cloudamqp/amqp-client {v.get('amqp_client')} on Node {v.get('node')}."
                + ("" if r.get("gateway_source", {}).get("same", True)
                   else " **The installed gateway differs from this checkout** (pip install .)."), ""]
    for note in r.get("notes", []):
        out += [f"**Note:** {note}", ""]
    checks = r.get("checks")
    if checks:
        out += ["| check | result | figures |", "|---|---|---|"]
        for c in checks.values():
            out.append(f"| {c['what']} | {'PASS' if c['pass'] else '**FAIL**'} | {c['detail']} |")
        out.append("")
    s = r.get("soak")
    if s and "end" in r:
        n = lambda x, d=0: "—" if x is None else f"{x:,.{d}f}"  # noqa: E731
        out += ["| figure | value |", "|---|---|",
                f"| concurrent connection loops | {s['connections']:,} ({'/'.join(s['listeners'])}) |",
                f"| loops completed / failed | {s['loopsCompleted']:,} / {s['loopsFailed']:,} |",
                f"| loops per second | {n(s['loopsPerSec'], 1)} |",
                f"| connections set up (to Open-Ok), per second over the whole soak | {s['connected']:,} = "
                f"{n(s['setupPerSec'], 1)}/s |",
                f"| connect p50 / p99 / max | {n(s['connectP50ms'], 1)} / {n(s['connectP99ms'], 1)} / "
                f"{n(s['connectMaxMs'], 1)} ms |",
                f"| loop p50 / p99 / max | {n(s['loopP50ms'], 1)} / {n(s['loopP99ms'], 1)} / "
                f"{n(s['loopMaxMs'], 1)} ms |",
                f"| messages published / confirmed / unconfirmed | {s['published']:,} / {s['confirmed']:,} / "
                f"{s['unconfirmed']:,} |",
                f"| messages consumed (distinct confirmed ids) | {s['consumed']:,} |",
                f"| duplicates / missing / foreign / corrupt | {s['duplicates']} / {s['missing']} / {s['foreign']} / "
                f"{s['corrupt']} |",
                f"| errors | {', '.join(f'{k} ×{c}' for k, c in s['errors'].items()) or 'none'} |",
                f"| gateway RSS cold / start / peak / end | {mib((r.get('cold') or {}).get('rssBytes'))} / "
                f"{mib(r['start']['rssBytes'])} / {mib(r['peak']['rssBytes'])} / {mib(r['end']['rssBytes'])} MiB |",
                f"| gateway's memory reclaims (start, end) | {r.get('start_reclaim') or '—'}; "
                f"{(r.get('rounds') or [{}])[-1].get('reclaim') or '—'} |",
                f"| gateway fds start / peak / end | {r['start']['fds']} / {r['peak']['fds']} / {r['end']['fds']} |",
                f"| gateway idle again after | {r.get('idle_after_seconds')} s (end read {r['end']['afterSeconds']} s "
                f"after the load stopped) |",
                f"| CPU seconds during the soak: gateway / broker / client (cores busy) | "
                f"{r['gateway_cpu_seconds']} / {r['broker_cpu_seconds']} / {s['clientCpuSeconds']:.1f} "
                f"({r['gateway_cpu_seconds'] / r['soak_wall_seconds']:.2f} / "
                f"{r['broker_cpu_seconds'] / r['soak_wall_seconds']:.2f} / "
                f"{s['clientCpuSeconds'] / r['soak_wall_seconds']:.2f} of {m['nproc']}) |",
                f"| load average during the soak (start → end) | {r['load_average']['start']} → "
                f"{r['load_average']['end']} |"]
        per = s.get("perListener", {})
        for name, p in per.items():
            out.append(f"| listener {name}: loops ok / failed, connected, confirmed, consumed | {p['completed']:,} / "
                       f"{p['failed']:,}, {p['connected']:,}, {p['confirmed']:,}, {p['consumed']:,} |")
        ended = (r["end"].get("metrics") or {}).get("ended")
        if ended:
            out.append(f"| gateway's connections_total by outcome | "
                       f"{', '.join(f'{k} {c:,}' for k, c in sorted(ended.items()))} |")
        out.append("")
    rounds = r.get("rounds") or []
    if len(rounds) > 1:
        out += ["| round | loops ok / failed | confirmed / consumed | dup / missing | setup /s | gateway RSS peak → "
                "end | fds peak → end |", "|---|---|---|---|---|---|---|"]
        for k, x in enumerate(rounds):
            t = x["soak"]
            out.append(f"| {k + 1} | {t['loopsCompleted']:,} / {t['loopsFailed']:,} | {t['confirmed']:,} / "
                       f"{t['consumed']:,} | {t['duplicates']} / {t['missing']} | {t['setupPerSec']:,.0f} | "
                       f"{mib(x['peak']['rssBytes'])} → {mib(x['end']['rssBytes'])} MiB | {x['peak']['fds']} → "
                       f"{x['end']['fds']} |")
        out.append("")
    out += ["Each loop: connect (AMQP listener: SASL PLAIN with the users.cnf credentials; WebSocket listener: "
            "`Authorization: Basic` on the upgrade) → channel → confirm.select → exclusive server-named queue → "
            "consume (no-ack) → publish K messages, each with a unique message-id → wait for every confirm → wait "
            "until every confirmed id is delivered → one more channel round trip (so a late duplicate would "
            "arrive) → close. RSS and fds are the gateway process's (`/proc`): cold read once it listens, "
            "the start read after the warm-up (the same load for --warmup-seconds), the end read "
            "once the admin gauge `connections_open` is 0 and the fd count has been still for 2 s, each after "
            "the gateway's own memory reclaim (logged; at most --reclaim-wait s) and the settle pause.", ""]
    return "\n".join(out)


def write(results, directory, ts):
    os.makedirs(directory, exist_ok=True)
    base = os.path.join(directory, f"{ts}-soak")
    with open(base + ".json", "w") as f:
        json.dump(results, f, indent=1, default=str)
    with open(base + ".md", "w") as f:
        f.write(markdown(results))
    return base


def versions():
    """
    The versions bench/bench.py records (the same venv, node and broker).
    """
    import bench
    return bench.versions()


def sourceDigest():
    try:
        import bench  # noqa: F401  (bench.py's digest of the installed vs the checkout's sources)
        return bench.sourceDigest()
    except Exception as e:
        return {"error": str(e)}


# -- main ------------------------------------------------------------------------------

def parseArgs(argv):
    p = argparse.ArgumentParser(prog="bench/soak.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--connections", type=int, default=2000, help="concurrent connection loops")
    p.add_argument("--seconds", type=float, default=60, help="how long loops start new iterations")
    p.add_argument("--listener", choices=("amqp", "web", "both"), default="both",
                   help="which listener the loops use (both: half each)")
    p.add_argument("--messages", type=int, default=5, help="messages published and consumed per loop")
    p.add_argument("--size", type=int, default=64, help="message body bytes (at least the id)")
    p.add_argument("--users", type=int, default=2000, help="users in the generated users.cnf (loop i logs in as "
                                                           "user i mod N)")
    p.add_argument("--rounds", type=int, default=1,
                   help="soaks in a row on the same gateway, each followed by an idle reading (a leak grows "
                        "round after round; a retained high-water mark does not)")
    p.add_argument("--warmup-seconds", type=float, default=10,
                   help="seconds of the soak's own load before the start reading")
    p.add_argument("--reclaim-wait", type=float, default=20,
                   help="at most this long, once idle, to wait for the gateway to give memory back")
    p.add_argument("--ramp", type=float, default=5, help="seconds over which the loops start")
    p.add_argument("--loop-timeout", type=float, default=30, help="seconds one loop iteration may take")
    p.add_argument("--settle", type=float, default=60, help="at most this long to wait for the gateway to be idle")
    p.add_argument("--idle-seconds", type=float, default=5, help="pause once idle before the end reading")
    p.add_argument("--fd-slack", type=int, default=3, help="fds the end reading may differ from the start")
    p.add_argument("--rss-tolerance", type=float, default=0.10, help="allowed RSS change, end vs start")
    p.add_argument("--wait-for-bench", type=float, default=1200,
                   help="wait at most this long (polling every 15 s) while a bench/run is measuring; 0: don't")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, configs)")
    p.add_argument("--results", default=os.path.join(HERE, "results"), help="where results go")
    return p.parse_args(argv)


def main(argv):
    o = parseArgs(argv)
    if o.wait_for_bench and not waitForOtherBench(o.wait_for_bench):
        return 2
    infra.raiseOpenFiles()
    ts = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    base = tempfile.mkdtemp(prefix="kp-soak-")
    started = time.monotonic()
    results = {"timestamp": ts, "machine": infra.machine(), "settings": {k: v for k, v in vars(o).items()
                                                                          if k != "results"},
               "load_average_at_start": loadAverage(), "versions": versions(), "gateway_source": sourceDigest(),
               "notes": []}
    soak = Soak(o, base)

    def onSignal(sig, frame):
        raise KeyboardInterrupt(f"signal {sig}")
    signal.signal(signal.SIGTERM, onSignal)
    log(f"bench/soak.py → {o.results}/{ts}-soak.json|.md  (temp dir {base})")
    status = 2
    try:
        soak.run(results)
        status = 0 if all(c["pass"] for c in results["checks"].values()) else 1
    except KeyboardInterrupt as e:
        results["notes"].append(f"interrupted: {e}")
        status = 130
    except Exception as e:
        import traceback
        traceback.print_exc()
        results["notes"].append(f"failed: {type(e).__name__}: {e}")
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if soak.gateway is not None:
            if not soak.gateway.alive():
                results["notes"].append(f"the gateway exited during the soak: {soak.gateway.tail(5)}")
            results["gateway_log_tail"] = soak.gateway.tail(15)
            results["gateway_log"] = infra.logErrors(soak.gatewayLogLines())
        soak.stop()
        out = infra.finishRun(results, started, lambda: write(results, o.results, ts), o.keep, base, log)
    log(f"done in {results['total_seconds']} s: {out}.md")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
