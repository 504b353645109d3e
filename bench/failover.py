#!/usr/bin/env python3
"""
Failover under load (issue 20 #4): what clients see when a gateway is
killed and a RabbitMQ node is stopped, behind HAProxy.

The topology, all on this machine and all stopped at the end: a RabbitMQ
cluster of three dedicated nodes (one cookie, `join_cluster`) with two
quorum queues; two gateway processes (twistd, their own configuration
files, `[cluster]` on the machine's Redis under a key prefix of this run,
deleted afterwards), `[broker] endpoint` on node 1 and the other two as
`fallback_endpoints`; HAProxy in front (send-proxy-v2, health checks on
each gateway's `/readyz`).  The load: a pika publisher with confirms and a
pika consumer over the AMQP listener, and an @cloudamqp/amqp-client
publisher and consumer over the WebSocket listener (bench/failover.mjs,
AMQPSession's own reconnection), each numbering its messages.  Clients
reconnect as their documentation recommends, pika also on 320
CONNECTION_FORCED (its recovery loop gives up on it otherwise), and after a
nack or a lost connection they republish what was not confirmed.

The timeline: `--warmup` seconds of load, SIGKILL to gateway 1, `--gap`
seconds, `rabbitmqctl stop_app` on node 1 (the queues' leader and the
gateways' first endpoint), `--gap` seconds, publishing stops; consumers
drain until every confirmed message is back (or `--drain` seconds).

The figures: messages confirmed, confirmed messages lost (confirmed, never
delivered), duplicates delivered, and each client's reconnect times (from
the error it saw to its next confirmed publish, or its next consumer start)
as p50/p99/max.  Written to bench/results/<time>-failover.{json,md}.

    bench/failover.py [--quick] [--results DIR]
"""

import argparse
import datetime
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import infra  # noqa: E402

PROJECT_VENV = os.environ.get("KAAZING_PROMO_VENV") or os.path.dirname(os.path.dirname(sys.executable))
QUEUES = {"tcp": "failover.tcp", "ws": "failover.ws"}
USER, PASSWORD = "failover", "failover-pw"
PROXY = ("send-proxy-v2",)


def log(*parts):
    print(time.strftime("%H:%M:%S"), *parts, file=sys.stderr, flush=True)


# -- the pika clients ---------------------------------------------------------------


class Reconnects:
    """
    One client's outages: when it saw an error, when it was back.
    """

    def __init__(self):
        self.down = None
        self.times = []
        self.errors = []

    def lost(self, error):
        if self.down is None:
            self.down = time.monotonic()
            self.errors.append(f"{type(error).__name__}: {error}"[:200])

    def back(self):
        if self.down is not None:
            self.times.append(time.monotonic() - self.down)
            self.down = None


def pikaErrors():
    import pika.exceptions as e
    return (e.AMQPConnectionError, e.AMQPChannelError, e.StreamLostError, e.NackError, e.UnroutableError,
            ConnectionError, OSError)


def pikaParameters(port):
    import pika
    return pika.ConnectionParameters(
        "127.0.0.1", port, credentials=pika.PlainCredentials(USER, PASSWORD), connection_attempts=1,
        socket_timeout=5, blocked_connection_timeout=10, heartbeat=10)


class PikaPublisher(threading.Thread):
    """
    Publishes numbered persistent messages with confirms at C{rate} per
    second; a message is confirmed when basic_publish returns.
    """

    def __init__(self, port, queue, rate, stop):
        threading.Thread.__init__(self, daemon=True)
        self.port, self.queue, self.interval, self.stop = port, queue, 1.0 / rate, stop
        self.confirmed = set()
        self.reconnects = Reconnects()
        self.next = 0

    def run(self):
        import pika
        pending = None
        while not self.stop.is_set():
            connection = None
            try:
                connection = pika.BlockingConnection(pikaParameters(self.port))
                channel = connection.channel()
                channel.confirm_delivery()
                while not self.stop.is_set():
                    if pending is None:
                        pending, self.next = self.next, self.next + 1
                    channel.basic_publish("", self.queue, str(pending).encode(),
                                          pika.BasicProperties(delivery_mode=2), mandatory=True)
                    self.confirmed.add(pending)
                    pending = None
                    self.reconnects.back()
                    time.sleep(self.interval)
            except pikaErrors() as e:
                # A nack or a lost connection: the message is published again
                # on a new channel, after a pause (RabbitMQ 3.10 nacks at once
                # on a channel opened before a new quorum leader is elected).
                self.reconnects.lost(e)
                time.sleep(1.0)
            finally:
                closeQuietly(connection)


def closeQuietly(connection):
    """
    Close a pika connection that may already be gone.
    """
    if connection is not None and connection.is_open:
        try:
            connection.close()
        except Exception:
            pass


class PikaConsumer(threading.Thread):
    """
    Consumes with manual acks, recording every body delivered.
    """

    def __init__(self, port, queue, stop):
        threading.Thread.__init__(self, daemon=True)
        self.port, self.queue, self.stop = port, queue, stop
        self.delivered = []
        self.reconnects = Reconnects()

    def run(self):
        import pika
        while not self.stop.is_set():
            connection = None
            try:
                connection = pika.BlockingConnection(pikaParameters(self.port))
                channel = connection.channel()
                channel.basic_qos(prefetch_count=50)
                self.reconnects.back()
                for method, properties, body in channel.consume(self.queue, inactivity_timeout=0.2):
                    if self.stop.is_set():
                        break
                    if method is None:
                        continue
                    self.delivered.append(int(body))
                    channel.basic_ack(method.delivery_tag)
            except pikaErrors() as e:
                self.reconnects.lost(e)
                time.sleep(0.5)
            finally:
                closeQuietly(connection)


# -- the topology ---------------------------------------------------------------------


class Topology:
    def __init__(self, base, opts):
        self.base = base
        self.o = opts
        self.nodes = []
        self.gateways = {}
        self.children = []
        self.prefix = f"kp-failover-{os.getpid()}-{os.urandom(3).hex()}:"

    def startCluster(self):
        began = time.monotonic()
        cookie = "".join(__import__("random").choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(20))
        self.nodes = [infra.RabbitNode(self.base, f"rabbit{n}", cookie) for n in (1, 2, 3)]
        errors = []
        for node in self.nodes:
            # From this thread: a child's parent-death signal follows the thread that started it.
            node.launch()

        def wait(node):
            try:
                node.waitReady(timeout=120)
            except Exception as e:
                errors.append(e)
        threads = [threading.Thread(target=wait, args=(node,)) for node in self.nodes]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise RuntimeError(f"a node did not start: {errors[0]}")
        for node in self.nodes[1:]:
            node.join(self.nodes[0])
        first = self.nodes[0]
        out = first.ctl("await_online_nodes", "3", timeout=120)
        first.ctl("add_user", USER, PASSWORD)
        first.ctl("set_permissions", "-p", "/", USER, ".*", ".*", ".*")
        # Declared once the three are members, so that each queue gets all three.
        import pika
        connection = pika.BlockingConnection(pika.ConnectionParameters(
            "127.0.0.1", first.port, credentials=pika.PlainCredentials(USER, PASSWORD)))
        channel = connection.channel()
        for queue in QUEUES.values():
            channel.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
        connection.close()
        self.clusterSeconds = time.monotonic() - began
        log(f"RabbitMQ cluster of 3 up in {self.clusterSeconds:.1f} s {out.strip()}")

    def startGateways(self):
        from kaazing_promo.auth.passhash import makeHash
        from kaazing_promo.auth.userscnf import UserEntry, renderUsersCnf
        with open(os.path.join(self.base, "users.cnf"), "wb") as f:
            f.write(renderUsersCnf([UserEntry(USER, makeHash(PASSWORD, iterations=1000), frozenset(["Load"]))],
                                   {"Load": [USER]}))
        for name, content in (("broker-secrets.toml", f'{USER} = "{PASSWORD}"\n'),
                              ("cluster.key", os.urandom(24).hex() + "\n")):
            path = os.path.join(self.base, name)
            with open(path, "w") as f:
                f.write(content)
            os.chmod(path, 0o600)
        endpoints = [f"tcp:host=127.0.0.1:port={node.port}" for node in self.nodes]
        twistd = os.path.join(PROJECT_VENV, "bin", "twistd")
        for name in ("gw1", "gw2"):
            ports = {kind: infra.freePort() for kind in ("amqp", "web", "admin")}
            self.gateways[name] = ports
            lines = ['user_auth = "internal"', "",
                     "[broker]", f'endpoint = "{endpoints[0]}"', f"fallback_endpoints = {json.dumps(endpoints[1:])}",
                     "", "[admin]", f'endpoint = "tcp:port={ports["admin"]}:interface=127.0.0.1"', ""]
            for kind, protocol in (("amqp", "amqp"), ("web", "websocket")):
                lines += ["[[listeners]]", f'name = "{kind}"', f'protocol = "{protocol}"',
                          f'endpoint = "haproxy:tcp:port={ports[kind]}:interface=127.0.0.1"',
                          'trusted_proxies = ["127.0.0.1"]', ""]
            lines += ["[internal]", 'users_cnf = "users.cnf"', "",
                      "[promotion]", 'mode = "consolidated"', f'user = "{USER}"',
                      'secrets_file = "broker-secrets.toml"', "",
                      "[cluster]", 'redis = "tcp:host=127.0.0.1:port=6379"', 'key_file = "cluster.key"',
                      f'prefix = "{self.prefix}"', ""]
            config = os.path.join(self.base, f"{name}.toml")
            with open(config, "w") as f:
                f.write("\n".join(lines))
            child = infra.Child(name, [twistd, "-n", "--pidfile=", "--logfile", os.path.join(self.base, f"{name}.log"),
                                       "kaazing-promo", "--config", config],
                                os.path.join(self.base, f"{name}.out"), cwd=self.base,
                                env=dict(os.environ, PYTHONPATH=ROOT))
            self.children.append(child)
            self.gateways[name]["child"] = child
        for name, ports in self.gateways.items():
            for kind in ("amqp", "web", "admin"):
                infra.waitForPort(ports[kind], 60, ports["child"].proc, name)

    def startHAProxy(self):
        self.amqpPort, self.webPort = infra.freePort(), infra.freePort()
        self.socket = os.path.join(self.base, "haproxy.sock")
        lines = ["global", f"    stats socket {self.socket} mode 600 level admin", "    maxconn 2000", "",
                 "defaults", "    mode tcp", "    timeout connect 2s", "    timeout client 60s",
                 "    timeout server 60s", "    timeout check 1s", "    option redispatch", "    retries 3",
                 "    default-server inter 500ms fall 2 rise 2", ""]
        for kind, port in (("amqp", self.amqpPort), ("web", self.webPort)):
            lines += [f"frontend fe_{kind}", f"    bind 127.0.0.1:{port}", f"    default_backend be_{kind}", "",
                      f"backend be_{kind}", "    balance roundrobin", "    option httpchk GET /readyz"]
            lines += [f"    server {name} 127.0.0.1:{ports[kind]} {' '.join(PROXY)} check port {ports['admin']}"
                      for name, ports in self.gateways.items()]
            lines.append("")
        config = os.path.join(self.base, "haproxy.cfg")
        with open(config, "w") as f:
            f.write("\n".join(lines))
        self.haproxy = infra.Child("haproxy", [shutil.which("haproxy") or "/usr/sbin/haproxy", "-f", config, "-db"],
                                   os.path.join(self.base, "haproxy.log"))
        self.children.append(self.haproxy)
        deadline = time.monotonic() + 60
        while self.upServers() < 4:
            if time.monotonic() > deadline or not self.haproxy.alive():
                raise RuntimeError(f"HAProxy backends not up: {self.haproxy.tail()}")
            time.sleep(0.2)

    def upServers(self):
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(2)
                s.connect(self.socket)
                s.sendall(b"show stat\n")
                data = b""
                while chunk := s.recv(65536):
                    data += chunk
        except OSError:
            return 0
        lines = data.decode().splitlines()
        if not lines:
            return 0
        fields = lines[0].lstrip("# ").split(",")
        rows = [dict(zip(fields, line.split(","))) for line in lines[1:] if line]
        return sum(1 for row in rows if row.get("svname") in self.gateways and row.get("status") == "UP")

    def stop(self):
        for child in reversed(self.children):
            try:
                child.stop()
            except Exception as e:
                log(f"stopping {child.name}: {e}")
        for node in self.nodes:
            try:
                node.stop()
            except Exception as e:
                log(f"stopping {node.node}: {e}")
        try:
            keys = subprocess.run(["redis-cli", "--scan", "--pattern", self.prefix + "*"], capture_output=True,
                                  text=True, timeout=10).stdout.split()
            if keys:
                subprocess.run(["redis-cli", "del", *keys], capture_output=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired) as e:
            log(f"deleting the Redis keys {self.prefix}*: {e}")


# -- the WebSocket clients ----------------------------------------------------------------


class NodeLoad:
    """
    bench/failover.mjs: an amqp-client publisher and consumer over WebSocket.
    """

    def __init__(self, base, url, queue, rate, seconds, drain):
        self.spec = os.path.join(base, "ws-spec.json")
        with open(self.spec, "w") as f:
            json.dump({"url": url, "queue": queue, "user": USER, "password": PASSWORD, "rate": rate,
                       "seconds": seconds, "drain": drain}, f)
        self.out = os.path.join(base, "ws-load.out")
        self.proc = None

    def start(self):
        node = shutil.which("node")
        if node is None or not os.path.isdir(os.path.join(HERE, "node_modules", "@cloudamqp")):
            log("no node or bench/node_modules (npm ci --prefix bench): WebSocket clients skipped")
            return False
        with open(self.out, "wb") as out:
            self.proc = subprocess.Popen([node, os.path.join(HERE, "failover.mjs"), self.spec], stdout=out,
                                         stderr=subprocess.STDOUT, preexec_fn=infra._childSetup)
        return True

    def result(self, timeout):
        if self.proc is None:
            return None
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        with open(self.out, errors="replace") as f:
            lines = [line for line in f.read().splitlines() if line.startswith("{")]
        for line in reversed(lines):
            document = json.loads(line)
            if "result" in document:
                return document["result"]
        return {"error": "no result", "tail": lines[-5:]}


# -- the run --------------------------------------------------------------------------------


def percentile(values, fraction):
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))], 3)


def summary(confirmed, delivered, reconnectTimes):
    unique = set(delivered)
    return {
        "confirmed": len(confirmed),
        "delivered": len(delivered),
        "lost": len(set(confirmed) - unique),
        "duplicates": len(delivered) - len(unique),
        "reconnects": len(reconnectTimes),
        "reconnect_p50_s": percentile(reconnectTimes, 0.5),
        "reconnect_p99_s": percentile(reconnectTimes, 0.99),
        "reconnect_max_s": round(max(reconnectTimes), 3) if reconnectTimes else None,
    }


def run(opts, base):
    topology = Topology(base, opts)
    results = {"settings": {k: v for k, v in vars(opts).items() if k != "results"}, "events": []}
    try:
        topology.startCluster()
        topology.startGateways()
        topology.startHAProxy()
        results["cluster_start_s"] = round(topology.clusterSeconds, 1)
        stop = threading.Event()
        publisher = PikaPublisher(topology.amqpPort, QUEUES["tcp"], opts.rate, stop)
        consumer = PikaConsumer(topology.amqpPort, QUEUES["tcp"], threading.Event())
        seconds = opts.warmup + 2 * opts.gap
        ws = NodeLoad(base, f"ws://127.0.0.1:{topology.webPort}/amqp", QUEUES["ws"], opts.rate, seconds, opts.drain)
        began = time.monotonic()
        consumer.start()
        publisher.start()
        wsStarted = ws.start()

        def event(what):
            results["events"].append({"t_s": round(time.monotonic() - began, 2), "event": what})
            log(what)
        time.sleep(opts.warmup)
        event("SIGKILL gateway gw1")
        os.killpg(topology.gateways["gw1"]["child"].pid, signal.SIGKILL)
        time.sleep(opts.gap)
        event(f"rabbitmqctl stop_app on {topology.nodes[0].node} (node 1: queue leader, first endpoint)")
        topology.nodes[0].ctl("stop_app")
        time.sleep(max(0.0, began + seconds - time.monotonic()))
        stop.set()
        event("publishing stopped")
        publisher.join(15)
        deadline = time.monotonic() + opts.drain
        while not publisher.confirmed <= set(consumer.delivered) and time.monotonic() < deadline:
            time.sleep(0.2)
        consumer.stop.set()
        consumer.join(15)
        event("drained")
        results["pika_tcp"] = summary(publisher.confirmed, consumer.delivered,
                                      publisher.reconnects.times + consumer.reconnects.times)
        results["pika_tcp"]["errors_seen"] = sorted(set(publisher.reconnects.errors + consumer.reconnects.errors))
        if wsStarted:
            results["amqp_client_ws"] = ws.result(opts.drain + seconds + 30)
        else:
            results["amqp_client_ws"] = {"skipped": "node or bench/node_modules missing"}
    finally:
        topology.stop()
    return results


def markdown(r):
    out = [f"# Failover under load, {r['timestamp']}", "",
           f"Machine: {r['machine']['nproc']} CPUs, {r['machine']['cpu']}. Three RabbitMQ nodes (cluster up in "
           f"{r.get('cluster_start_s')} s), two gateways with [cluster], HAProxy, quorum queues.", "",
           "| t (s) | event |", "|---|---|"]
    out += [f"| {e['t_s']} | {e['event']} |" for e in r["events"]]
    out += ["", "| clients | confirmed | lost | duplicates | reconnects | reconnect p50 s | p99 s | max s |",
            "|---|---|---|---|---|---|---|---|"]
    for key, label in (("pika_tcp", "pika over the AMQP listener"),
                       ("amqp_client_ws", "@cloudamqp/amqp-client over WebSocket")):
        s = r.get(key) or {}
        if "confirmed" not in s:
            out.append(f"| {label} | {s} | | | | | | |")
            continue
        out.append(f"| {label} | {s['confirmed']} | {s['lost']} | {s['duplicates']} | {s['reconnects']} | "
                   f"{s['reconnect_p50_s']} | {s['reconnect_p99_s']} | {s['reconnect_max_s']} |")
    out += ["", "Lost: confirmed to the publisher, never delivered to the consumer. Reconnect time: from the "
                "error a client saw to its next confirmed publish (publishers) or its next consumer start "
                "(consumers)."]
    return "\n".join(out) + "\n"


def parseArgs(argv):
    p = argparse.ArgumentParser(prog="bench/failover.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--rate", type=float, default=100, help="messages per second per publisher")
    p.add_argument("--warmup", type=float, default=10, help="seconds of load before the gateway is killed")
    p.add_argument("--gap", type=float, default=10, help="seconds between the two faults, and after the second")
    p.add_argument("--drain", type=float, default=30, help="at most this long for consumers to catch up")
    p.add_argument("--quick", action="store_true", help="the CI timeline: 4 s warm-up, 6 s gaps")
    p.add_argument("--results", default=os.path.join(HERE, "results"), help="where results go ('' : nowhere)")
    p.add_argument("--json", help="also write the result document here")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, configs)")
    o = p.parse_args(argv)
    if o.quick:
        o.warmup, o.gap, o.drain = 4, 6, 20
    return o


def main(argv):
    opts = parseArgs(argv)
    infra.raiseOpenFiles()
    ts = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    base = tempfile.mkdtemp(prefix="kp-failover-")
    try:
        results = run(opts, base)
    except BaseException:
        log(f"failed; logs in {base}")
        raise
    results.update(timestamp=ts, machine=infra.machine())
    text = markdown(results)
    print(text)
    if opts.results:
        os.makedirs(opts.results, exist_ok=True)
        path = os.path.join(opts.results, f"{ts}-failover")
        with open(path + ".json", "w") as f:
            json.dump(results, f, indent=1)
        with open(path + ".md", "w") as f:
            f.write(text)
        log(f"written {path}.json and .md")
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump(results, f, indent=1)
    if not opts.keep:
        shutil.rmtree(base, ignore_errors=True)
    lost = [results[key]["lost"] for key in ("pika_tcp", "amqp_client_ws") if "lost" in (results.get(key) or {})]
    return 1 if any(lost) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
