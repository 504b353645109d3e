"""
bench/abuse.py — the login gate under attack (issue 16): floods of logins
that hang up, from one address and from twenty, and one address guessing;
during each, a real user's first login from another address; after each,
how long the gateway keeps using CPU for the clients that left.

    /work/main/.venv/bin/python bench/abuse.py [--quick] [--help]

Starts (and always stops, also on failure or Ctrl-C) a dedicated RabbitMQ
node (infra.RabbitNode, never the shared 5672 one) and one gateway
(twistd -n kaazing-promo from this Python's venv, running this checkout's
code) with user_auth = "internal" over a users.cnf whose users have the
default hash cost (PBKDF2-SHA256, 600,000 iterations), an AMQP listener and a
WebSocket listener (auth = "required"; tickets at /amqp/ticket), consolidated
promotion to the node's guest, and the admin endpoint, whose login counters
say what reached the realm, also for clients that hung up before the answer.
All traffic is loopback: the attackers bind their sockets to 127.0.N.2 …
127.0.N.21 (a block N per scenario, so that no scenario inherits another's
failed-login window), the real user to 127.0.0.100.  Every loop is bounded in
count and time.  Writes bench/results/<UTC>-abuse.json and .md.
"""

import argparse
import base64
import collections
import datetime
import http.client
import json
import os
import re
import secrets
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
CHECKOUT = os.path.dirname(HERE)
# This checkout's kaazing_promo, for the client's frames and the users.cnf
# hashes, as for the gateway (PYTHONPATH below).
sys.path[:0] = [HERE, CHECKOUT]

import infra  # noqa: E402
import soak  # noqa: E402  (log, loadAverage, waitForOtherBench, versions)
import ws_micro  # noqa: E402  (clientFrame: a masked binary frame)

from kaazing_promo.amqp.codec import (  # noqa: E402
    FRAME_METHOD, PROTOCOL_HEADER, _FRAME_HEADER, decodeMethod, encodeMethod, encodePlainResponse)

log = soak.log
PROJECT_VENV = soak.PROJECT_VENV
REAL_SOURCE = "127.0.0.100"
WS_PATH = "/amqp"


class Closed(Exception):
    """
    The gateway ended the exchange: an AMQP Close, a WebSocket close or the
    end of the stream.  C{answer} is what the client saw (L{Answer}).
    """

    def __init__(self, answer):
        Exception.__init__(self, answer.raw)
        self.answer = answer


class Answer:
    """
    What the gateway answered one login, as a client sees it.

    @ivar kind: C{"rate-limited"} (HTTP 429, or Close 403 "… retry after N
        s"), C{"realm"} (the realm's refusal: HTTP 401, Close 403 "Login was
        refused"), C{"ok"}, C{"no answer"} (the client hung up first), or
        C{"other"}.
    @ivar raw: the answer with its numbers blanked out (C{close 403
        ACCESS_REFUSED - … retry after N s}, C{http 429}), so that answers
        of one kind count together.
    """

    def __init__(self, kind, raw):
        self.kind = kind
        self.raw = re.sub(r"\d+(\.\d+)? s\b", "N s", raw)

    @classmethod
    def fromClose(cls, code, text):
        if "retry after" in text:
            kind = "rate-limited"
        elif code == 403 and "Login was refused" in text:
            kind = "realm"
        else:
            kind = "other"
        return cls(kind, f"close {code} {text}")

    @classmethod
    def fromStatus(cls, status):
        kind = {429: "rate-limited", 401: "realm", 101: "ok", 200: "ok"}.get(status, "other")
        return cls(kind, f"http {status}")


# -- the client side: sockets bound to a source address ------------------------------

def connectFrom(source, port, deadline):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((source, 0))
        sock.settimeout(max(0.001, deadline - time.monotonic()))
        sock.connect(("127.0.0.1", port))
    except BaseException:
        sock.close()
        raise
    return sock


class TcpPipe:
    """
    A connected socket read until a deadline (L{time.monotonic}).
    """

    def __init__(self, sock, deadline):
        self.sock = sock
        self.deadline = deadline

    def send(self, data):
        self.sock.sendall(data)

    def recv(self):
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout()
        self.sock.settimeout(left)
        data = self.sock.recv(65536)
        if not data:
            raise Closed(Answer("other", "connection closed"))
        return data


class WebSocketPipe(TcpPipe):
    """
    AMQP in binary WebSocket messages after an upgrade (RFC 6455): frames
    sent masked with a fresh key, as a client must; the server's frames
    read unmasked.
    """

    def __init__(self, sock, deadline, leftover):
        TcpPipe.__init__(self, sock, deadline)
        self.buffer = leftover

    def send(self, data):
        self.sock.sendall(ws_micro.clientFrame(data))

    def recv(self):
        while True:
            frame = self._frame()
            if frame is None:
                self.buffer += TcpPipe.recv(self)
                continue
            opcode, payload = frame
            if opcode == 0x8:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                raise Closed(Answer("other", f"websocket close {code} {payload[2:].decode('utf-8', 'replace')}"))
            if opcode in (0x0, 0x2) and payload:
                return payload
            # Pings and empty frames: nothing for AMQP.

    def _frame(self):
        b = self.buffer
        if len(b) < 2:
            return None
        opcode, size, at = b[0] & 0x0F, b[1] & 0x7F, 2
        if size == 126:
            if len(b) < 4:
                return None
            size, at = struct.unpack("!H", b[2:4])[0], 4
        elif size == 127:
            if len(b) < 10:
                return None
            size, at = struct.unpack("!Q", b[2:10])[0], 10
        if len(b) < at + size:
            return None
        self.buffer = b[at + size:]
        return opcode, b[at:at + size]


class AMQPClient:
    """
    The client's side of the AMQP connection handshake, over a pipe.
    """

    def __init__(self, pipe):
        self.pipe = pipe
        self.buffer = b""

    def send(self, name, **args):
        self.pipe.send(encodeMethod(0, name, **args))

    def method(self):
        """
        @return: the next method frame, decoded (heartbeats are skipped).
        @raise Closed: on the gateway's Close (answered with Close-Ok) or
            the end of the stream.
        """
        while True:
            if len(self.buffer) >= _FRAME_HEADER.size:
                frameType, _, size = _FRAME_HEADER.unpack_from(self.buffer)
                end = _FRAME_HEADER.size + size + 1
                if len(self.buffer) >= end:
                    payload = self.buffer[_FRAME_HEADER.size:end - 1]
                    self.buffer = self.buffer[end:]
                    if frameType != FRAME_METHOD:
                        continue
                    method = decodeMethod(payload)
                    if method.qualifiedName == "connection.close":
                        try:
                            self.send("connection.close-ok")
                        except OSError:
                            pass
                        raise Closed(Answer.fromClose(method.args["reply_code"], method.args["reply_text"]))
                    return method
            self.buffer += self.pipe.recv()

    def login(self, user, password):
        """
        Protocol header, Start, Start-Ok with PLAIN.
        """
        self.pipe.send(PROTOCOL_HEADER)
        self.method()  # connection.start
        self.send("connection.start-ok", client_properties={"product": "kaazing-promo bench/abuse.py"},
                  mechanism="PLAIN", response=encodePlainResponse(user, password), locale="en_US")

    def open(self):
        """
        After a successful login: Tune → Tune-Ok, Open → Open-Ok, then Close.
        """
        tune = self.method()
        self.send("connection.tune-ok", channel_max=tune.args["channel_max"], frame_max=tune.args["frame_max"],
                  heartbeat=0)
        self.send("connection.open", virtual_host="/")
        openOk = self.method()
        if openOk.qualifiedName != "connection.open-ok":
            raise Closed(Answer("other", f"unexpected {openOk.qualifiedName}"))
        self.send("connection.close", reply_code=200, reply_text="bye")


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def httpRequest(method, path, port, headers):
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def upgradeRequest(port, path, authorization=None):
    headers = {"Upgrade": "websocket", "Connection": "Upgrade",
               "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(), "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Protocol": "amqp"}
    if authorization:
        headers["Authorization"] = authorization
    return httpRequest("GET", path, port, headers)


def readStatus(pipe):
    """
    @return: C{(status, bytes after the response head)}.
    """
    data = b""
    while b"\r\n\r\n" not in data:
        data += pipe.recv()
        if len(data) > 65536:
            raise Closed(Answer("other", "oversized HTTP head"))
    head, _, rest = data.partition(b"\r\n\r\n")
    status = re.match(rb"HTTP/1\.[01] (\d{3}) ", head)
    if status is None:
        raise Closed(Answer("other", "malformed HTTP answer"))
    return int(status.group(1)), rest


# -- one attacker's attempt -------------------------------------------------------------

class Attempts:
    """
    How one attempt of each listener kind is made: connect from C{source},
    log in with a wrong password, and either wait C{hangUp} seconds for the
    answer and hang up (a flood), or wait for the answer (a guesser).

    @return: (from each method) an L{Answer}.
    """

    def __init__(self, ports, hangUp, timeout):
        self.ports = ports
        self.hangUp = hangUp
        self.timeout = timeout

    def _answerDeadline(self, started):
        return time.monotonic() + self.hangUp if self.hangUp is not None else started + self.timeout

    def _attempt(self, port, source, exchange):
        """
        Connect from C{source} and run C{exchange(sock, started)}, which
        returns the L{Answer}; a hang-up before the answer and the gateway's
        own close become answers too.
        """
        started = time.monotonic()
        sock = connectFrom(source, port, started + self.timeout)
        try:
            return exchange(sock, started)
        except socket.timeout:
            if self.hangUp is None:
                return Answer("other", "timed out")
            return Answer("no answer", "no answer before hanging up")
        except Closed as e:
            return e.answer
        finally:
            sock.close()

    def amqp(self, source, user, password):
        def exchange(sock, started):
            pipe = TcpPipe(sock, started + self.timeout)
            client = AMQPClient(pipe)
            client.login(user, password)
            pipe.deadline = self._answerDeadline(started)
            client.method()
            return Answer("ok", "tune")
        return self._attempt(self.ports["amqp"], source, exchange)

    def _http(self, source, request):
        def exchange(sock, started):
            sock.sendall(request)
            status, _ = readStatus(TcpPipe(sock, self._answerDeadline(started)))
            return Answer.fromStatus(status)
        return self._attempt(self.ports["web"], source, exchange)

    def ws(self, source, user, password):
        return self._http(source, upgradeRequest(self.ports["web"], WS_PATH, basic(user, password)))

    def ticket(self, source, user, password):
        return self._http(source, httpRequest("POST", f"{WS_PATH}/ticket", self.ports["web"],
                                              {"Authorization": basic(user, password), "Content-Length": "0"}))


def attack(attempt, sources, count, concurrency, seconds, quarter):
    """
    C{count} attempts, each from the next of C{sources} in turn and with a
    new random user name, never more than C{concurrency} at once (each
    attempt's socket is closed before its worker takes the next), none
    started after C{seconds}.  Sets C{quarter} once a quarter of them have
    started.

    @return: C{{"sent", "not_sent", "kinds": {kind: n}, "answers": {raw: n},
        "seconds"}}.
    """
    kinds, answers = collections.Counter(), collections.Counter()
    lock = threading.Lock()
    started = time.monotonic()
    end = started + seconds

    def one(i):
        if i >= count // 4:
            quarter.set()
        if time.monotonic() > end:
            answer = Answer("not sent", "not sent (time cap)")
        else:
            user, password = f"x{secrets.token_hex(6)}", secrets.token_urlsafe(12)
            try:
                answer = attempt(sources[i % len(sources)], user, password)
            except OSError as e:
                answer = Answer("error", f"client error {type(e).__name__}")
        with lock:
            kinds[answer.kind] += 1
            answers[answer.raw] += 1

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(count)))
    quarter.set()
    notSent = kinds.pop("not sent", 0)
    return {"sent": count - notSent, "not_sent": notSent, "kinds": dict(kinds), "answers": dict(answers),
            "seconds": round(time.monotonic() - started, 2)}


# -- the real user ------------------------------------------------------------------------

def realAMQP(port, user, password, timeout):
    """
    A first login through the AMQP listener, to the broker's Open-Ok.

    @return: C{{"ok", "seconds", "outcome"}}.
    """
    started = time.monotonic()
    deadline = started + timeout
    try:
        sock = connectFrom(REAL_SOURCE, port, deadline)
    except OSError as e:
        return {"ok": False, "seconds": round(time.monotonic() - started, 2), "outcome": f"connect: {e}"}
    try:
        client = AMQPClient(TcpPipe(sock, deadline))
        client.login(user, password)
        client.open()
        outcome = {"ok": True, "seconds": round(time.monotonic() - started, 3), "outcome": "open-ok"}
        try:
            client.method()  # close-ok
        except (Closed, OSError):
            pass
        return outcome
    except socket.timeout:
        return {"ok": False, "seconds": round(time.monotonic() - started, 2), "outcome": f"timed out ({timeout} s)"}
    except (Closed, OSError) as e:
        what = e.answer.raw if isinstance(e, Closed) else f"{type(e).__name__}: {e}"
        return {"ok": False, "seconds": round(time.monotonic() - started, 2), "outcome": what}
    finally:
        sock.close()


def realWebSocket(port, user, password, timeout):
    """
    A first login through the WebSocket listener, as a browser makes it:
    C{POST /amqp/ticket} with Basic, then the upgrade with C{?ticket=}, then
    AMQP to the broker's Open-Ok.

    @return: C{{"ok", "ticket_seconds", "seconds", "outcome"}}.
    """
    started = time.monotonic()
    deadline = started + timeout
    out = {"ok": False, "ticket_seconds": None, "seconds": None}

    def took():
        return round(time.monotonic() - started, 3)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout, source_address=(REAL_SOURCE, 0))
        try:
            conn.request("POST", f"{WS_PATH}/ticket", headers={"Authorization": basic(user, password)})
            response = conn.getresponse()
            body = response.read()
        finally:
            conn.close()
        out["ticket_seconds"] = took()
        if response.status != 200:
            out.update(seconds=took(), outcome=f"ticket: http {response.status}")
            return out
        ticket = json.loads(body)["ticket"]
        sock = connectFrom(REAL_SOURCE, port, deadline)
        try:
            sock.sendall(upgradeRequest(port, f"{WS_PATH}?ticket={ticket}"))
            status, rest = readStatus(TcpPipe(sock, deadline))
            if status != 101:
                out.update(seconds=took(), outcome=f"upgrade: http {status}")
                return out
            client = AMQPClient(WebSocketPipe(sock, deadline, rest))
            client.pipe.send(PROTOCOL_HEADER)
            client.method()  # connection.start: the ticket is the login
            client.send("connection.start-ok", client_properties={}, mechanism="PLAIN",
                        response=encodePlainResponse(user, password), locale="en_US")
            client.open()
            out.update(ok=True, seconds=took(), outcome="open-ok")
        finally:
            sock.close()
    except (socket.timeout, TimeoutError):
        out.update(seconds=took(), outcome=f"timed out ({timeout} s)")
    except Closed as e:
        out.update(seconds=took(), outcome=e.answer.raw)
    except (OSError, http.client.HTTPException, ValueError, KeyError) as e:
        out.update(seconds=took(), outcome=f"{type(e).__name__}: {e}")
    return out


# -- the gateway ---------------------------------------------------------------------------

class Gateway:
    """
    The dedicated broker, the users.cnf and the gateway process.
    """

    def __init__(self, base, opts):
        self.base = base
        self.o = opts
        self.rabbit = None
        self.child = None

    def start(self, realUsers):
        t0 = time.monotonic()
        # Hashing at the default cost takes a while: meanwhile the node starts.
        with ThreadPoolExecutor(1) as pool:
            users = pool.submit(self.makeUsers, realUsers)
            self.rabbit = infra.RabbitNode(self.base)
            self.rabbit.start()
            log(f"RabbitMQ node {self.rabbit.node} on 127.0.0.1:{self.rabbit.port} "
                f"(started in {time.monotonic() - t0:.1f} s)")
            users.result()
        self.ports = {"amqp": infra.freePort(), "web": infra.freePort(), "admin": infra.freePort()}
        with open(os.path.join(self.base, "gateway.toml"), "w") as f:
            f.write(self.config())
        twistd = os.path.join(PROJECT_VENV, "bin", "twistd")
        # The checkout's code, whatever copy the venv has installed.
        env = dict(os.environ, PYTHONPATH=CHECKOUT)
        self.child = infra.Child("gateway", [twistd, "-n", "--pidfile=", "--logfile",
                                             os.path.join(self.base, "gateway.twistd.log"),
                                             "kaazing-promo", "--config", "gateway.toml"],
                                 os.path.join(self.base, "gateway.log"), env=env, cwd=self.base)
        for port in self.ports.values():
            infra.waitForPort(port, 30, self.child.proc, "gateway")
        log(f"gateway pid {self.child.pid}: AMQP 127.0.0.1:{self.ports['amqp']}, "
            f"ws://127.0.0.1:{self.ports['web']}{WS_PATH} (+ /ticket), admin :{self.ports['admin']}")

    def makeUsers(self, names):
        """
        One users.cnf user per name, at the default cost (the realm's dummy
        hash for unknown users then has that cost too).

        @return: C{{name: password}}.
        """
        from kaazing_promo.auth.passhash import DEFAULT_ITERATIONS, makeHash
        from kaazing_promo.auth.userscnf import UserEntry, renderUsersCnf
        t0 = time.monotonic()
        self.passwords = {name: secrets.token_urlsafe(12) for name in names}
        with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
            hashes = list(pool.map(makeHash, self.passwords.values()))
        entries = [UserEntry(name, h, frozenset(["Everybody"])) for name, h in zip(names, hashes)]
        with open(os.path.join(self.base, "users.cnf"), "wb") as f:
            f.write(renderUsersCnf(entries, {"Everybody": list(names)}))
        secretsPath = os.path.join(self.base, "broker-secrets.toml")
        with open(secretsPath, "w") as f:
            f.write('guest = "guest"\n')
        os.chmod(secretsPath, 0o600)
        log(f"users.cnf: {len(names)} users at {DEFAULT_ITERATIONS:,} PBKDF2 iterations "
            f"({time.monotonic() - t0:.1f} s to hash)")

    def config(self):
        extra = [f"max_failed_logins = {self.o.max_failed_logins}"] + list(self.o.listener_option)
        lines = ['user_auth = "internal"', "", "[broker]",
                 f'endpoint = "tcp:host=127.0.0.1:port={self.rabbit.port}"', "",
                 "[admin]", f'endpoint = "tcp:port={self.ports["admin"]}:interface=127.0.0.1"', ""]
        for name, protocol in (("amqp", "amqp"), ("web", "websocket")):
            lines += ["[[listeners]]", f'name = "abuse-{name}"', f'protocol = "{protocol}"',
                      f'endpoint = "tcp:port={self.ports[name]}:interface=127.0.0.1"', 'auth = "required"',
                      *extra, ""]
        lines += ["[internal]", 'users_cnf = "users.cnf"', "",
                  "[promotion]", 'mode = "consolidated"', 'user = "guest"', 'secrets_file = "broker-secrets.toml"',
                  ""]
        return "\n".join(lines)

    def cpu(self):
        return infra.cpuSeconds(self.child.pid)

    def metrics(self):
        """
        @return: C{{"open": connections open, "logins": {outcome: n},
            "ended": {outcome: n}}}, summed over the listeners; L{None} if
            the admin endpoint does not answer.
        """
        from prometheus_client.parser import text_string_to_metric_families
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.ports['admin']}/metrics", timeout=5) as r:
                text = r.read().decode()
        except OSError:
            return None
        out = {"open": 0, "logins": collections.Counter(), "ended": collections.Counter()}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "kaazing_promo_connections_open":
                    out["open"] += int(sample.value)
                elif sample.name == "kaazing_promo_logins_total":
                    out["logins"][sample.labels.get("outcome", "?")] += int(sample.value)
                elif sample.name == "kaazing_promo_connections_total":
                    out["ended"][sample.labels.get("outcome", "?")] += int(sample.value)
        return out

    def stop(self):
        if self.child is not None:
            try:
                self.child.stop()
            except Exception as e:  # keep stopping the broker
                log(f"stopping the gateway: {e}")
        if self.rabbit is not None:
            self.rabbit.stop()


# -- CPU after the flood ---------------------------------------------------------------

def firstQuiet(steps, quiet, run=2):
    """
    @param steps: CPU seconds the gateway used in each step, in order.
    @return: the index of the first of C{run} consecutive steps each under
        C{quiet}, or L{None}.
    """
    for k in range(len(steps) - run + 1):
        if all(s <= quiet for s in steps[k:k + run]):
            return k
    return None


def watchCpu(gateway, step, minimum, limit, quiet, stillBusy):
    """
    The gateway's CPU use in steps of C{step} seconds from now: at least
    C{minimum} seconds, until it has been quiet for two steps and
    C{stillBusy()} is false, at most C{limit} seconds.

    @return: C{{"steps": [CPU seconds per step], "idle_after": seconds until
        the first quiet second began (None: not within the window)}}.
    """
    t0 = time.monotonic()
    last = gateway.cpu()
    steps = []
    while True:
        time.sleep(max(0.0, t0 + (len(steps) + 1) * step - time.monotonic()))
        now = gateway.cpu()
        steps.append(round(now - last, 2))
        last = now
        elapsed = len(steps) * step
        idle = firstQuiet(steps, quiet)
        if elapsed >= limit or (elapsed >= minimum and idle is not None and not stillBusy()):
            break
    return {"step": step, "steps": steps, "idle_after": None if idle is None else idle * step}


def settle(gateway, limit, quiet, step=0.5):
    """
    Wait until the gateway has no connection open and two quiet steps in a
    row, at most C{limit} seconds.

    @return: seconds waited, or L{None} if not idle in time.
    """
    t0 = time.monotonic()
    last, quietSteps = gateway.cpu(), 0
    while time.monotonic() - t0 < limit:
        time.sleep(step)
        now = gateway.cpu()
        m = gateway.metrics()
        quietSteps = quietSteps + 1 if now - last <= quiet and m is not None and m["open"] == 0 else 0
        last = now
        if quietSteps >= 2:
            return round(time.monotonic() - t0, 1)
    return None


# -- the scenarios ---------------------------------------------------------------------

class Abuse:
    def __init__(self, opts, base):
        self.o = opts
        self.base = base
        self.gateway = Gateway(base, opts)

    def plan(self):
        """
        @return: C{[(scenario, listener kind)]}: each scenario with each
            listener kind its attackers use.
        """
        return [(s, k) for s in self.o.scenarios for k in self.o.listeners]

    def run(self, results):
        o = self.o
        plan = self.plan()
        users = ["warmup-amqp", "warmup-ws", "quiet-amqp", "quiet-ws"]
        for n in range(1, len(plan) + 1):
            users += [f"real{n}-amqp", f"real{n}-ws"]
        self.gateway.start(users)
        results["gateway"] = {"pid": self.gateway.child.pid, "config": self.gateway.config(), "users": len(users)}
        settle(self.gateway, 30, o.quiet_cpu)

        # The process's first login loads what any first login loads; the
        # quiet row is then a default-cost first login with nothing else.
        self.realUsers("warmup")
        results["scenarios"] = [self.scenario("quiet", None, 0)]
        for n, (scenario, kind) in enumerate(plan, 1):
            results["scenarios"].append(self.scenario(scenario, kind, n))

    def realUsers(self, prefix):
        """
        A real user's first login over each listener, at the same time.
        @return: C{{"amqp": …, "ws": …}}.
        """
        g, o = self.gateway, self.o
        out = {}
        threads = [threading.Thread(target=lambda: out.update(amqp=realAMQP(
                       g.ports["amqp"], f"{prefix}-amqp", g.passwords[f"{prefix}-amqp"], o.real_timeout))),
                   threading.Thread(target=lambda: out.update(ws=realWebSocket(
                       g.ports["web"], f"{prefix}-ws", g.passwords[f"{prefix}-ws"], o.real_timeout)))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(o.real_timeout + 10)
        return out

    def attackSpec(self, scenario, n):
        """
        @return: C{(sources, attempts, concurrency, hang up after)}.
        """
        o = self.o
        block = [f"127.0.{n}.{h}" for h in range(2, 2 + o.addresses)]
        if scenario == "flood-1":
            return block[:1], o.flood_attempts, o.flood_concurrency, o.hang_up_ms / 1000
        if scenario == "flood-20":
            return block, o.per_address * len(block), o.flood_concurrency, o.hang_up_ms / 1000
        return block[:1], o.guess_attempts, o.guess_concurrency, None

    def scenario(self, scenario, kind, n):
        o, g = self.o, self.gateway
        name = scenario if kind is None else f"{scenario}/{kind}"
        row = {"name": name, "scenario": scenario, "listener": kind, "load_average_before": soak.loadAverage()}
        before = g.metrics()
        cpuBefore = g.cpu()
        real = {}
        realThread = threading.Thread(target=lambda: real.update(self.realUsers("quiet" if n == 0 else f"real{n}")))
        if kind is None:
            log(f"{name}: no attacker, the real user's first logins")
            t0 = time.monotonic()
            realThread.start()
            realThread.join()
        else:
            sources, count, concurrency, hangUp = self.attackSpec(scenario, n)
            attempts = Attempts(g.ports, hangUp, o.attempt_timeout)
            attempt = {"amqp": attempts.amqp, "ws": attempts.ws, "ticket": attempts.ticket}[kind]
            row.update(sources=f"{sources[0]}" + (f" … {sources[-1]}" if len(sources) > 1 else ""),
                       addresses=len(sources), concurrency=concurrency,
                       hang_up_ms=None if hangUp is None else o.hang_up_ms)
            log(f"{name}: {count} attempts from {row['sources']}, at most {concurrency} at once, "
                + (f"each hung up {o.hang_up_ms} ms after its credentials" if hangUp is not None
                   else "each waiting for its answer"))
            quarter = threading.Event()
            flood = {}
            attackThread = threading.Thread(target=lambda: flood.update(attack(
                attempt, sources, count, concurrency, o.flood_seconds, quarter)))
            t0 = time.monotonic()
            attackThread.start()
            quarter.wait(o.flood_seconds + o.attempt_timeout + 10)
            row["real_user_started_after"] = round(time.monotonic() - t0, 2)
            realThread.start()
            attackThread.join()
            row["attack"] = flood
            log(f"  attack over after {flood['seconds']} s: {flood['sent']} sent, client saw {flood['kinds']}")
        row["cpu_during"] = round(g.cpu() - cpuBefore, 2)
        row["cpu_after"] = watchCpu(g, 0.5, o.min_watch, o.drain_seconds, o.quiet_cpu, realThread.is_alive)
        steps = row["cpu_after"]["steps"]
        row["cpu_after"].update(first_3s=round(sum(steps[:6]), 2), total=round(sum(steps), 2),
                                window=len(steps) * 0.5)
        realThread.join(o.real_timeout + 15)
        row["real_user"] = real
        row["settled_after"] = settle(g, o.settle, o.quiet_cpu)
        after = g.metrics()
        if before is not None and after is not None:
            row["gateway_logins"] = {k: v for k, v in (after["logins"] - before["logins"]).items() if v}
            row["gateway_connections_ended"] = {k: v for k, v in (after["ended"] - before["ended"]).items() if v}
        row["load_average_after"] = soak.loadAverage()
        a, w, c = real.get("amqp", {}), real.get("ws", {}), row["cpu_after"]
        log(f"  real user: AMQP {a.get('seconds')} s ({a.get('outcome')}), WS ticket {w.get('ticket_seconds')} s, "
            f"Open-Ok {w.get('seconds')} s ({w.get('outcome')}); gateway CPU {c['total']} s in the "
            f"{c['window']} s after, idle after {c['idle_after']} s; gateway logins {row.get('gateway_logins')}")
        if row["settled_after"] is None:
            log(f"  the gateway was not idle {o.settle} s later: the next row starts on a busy gateway")
        return row


# -- the report ------------------------------------------------------------------------

def loginCell(r):
    """
    A real user's time to Open-Ok, in bold with what happened when it failed.
    """
    if not r or r.get("seconds") is None:
        return "—"
    return f"{r['seconds']:.2f} s" if r["ok"] else f"**{r['seconds']:.2f} s: {r['outcome']}**"


def ticketCell(r):
    """
    A real user's time to the ticket, in bold with what happened when it failed.
    """
    if not r or r.get("seconds") is None:
        return "—"
    if r.get("ticket_seconds") is None or r["outcome"].startswith("ticket:"):
        return f"**{r['seconds']:.2f} s: {r['outcome']}**"
    return f"{r['ticket_seconds']:.2f} s"


def verdict(row, o):
    """
    Issue 16's "done when" for a row: under a flood, the real user's logins
    complete in under C{max_login_seconds} and the gateway is idle within
    C{max_idle_seconds} of the flood ending; a guesser reaches the realm at
    most C{max_failed_logins} times (the realm's refusals it saw).
    """
    def mark(ok):
        return "PASS" if ok else "**FAIL**"
    if row["scenario"] == "guess":
        # The guesser waits for each answer: what it saw is exact, where the
        # gateway's counters may hold an earlier row's leftover work.
        reached = row["attack"]["kinds"].get("realm", 0)
        return f"realm asked ≤ {o['max_failed_logins']}: {mark(reached <= o['max_failed_logins'])}"
    if row["listener"] is None:
        return ""
    real = row["real_user"]
    loginOk = all(real.get(k, {}).get("ok") and real[k]["seconds"] < o["max_login_seconds"] for k in ("amqp", "ws"))
    idle = row["cpu_after"]["idle_after"]
    return (f"login < {o['max_login_seconds']:g} s: {mark(loginOk)}; idle ≤ {o['max_idle_seconds']:g} s: "
            f"{mark(idle is not None and idle <= o['max_idle_seconds'])}")


def markdown(r):
    o, m, v = r["settings"], r["machine"], r.get("versions", {})
    out = [f"# kaazing-promo login gate under attack — {r['timestamp']}", "",
           f"`bench/abuse.py{' --quick' if o['quick'] else ''}`: gateway {r.get('checkout', {}).get('commit', '?')} "
           f"(this checkout's code), internal realm, users at the default cost (PBKDF2-SHA256 600,000), "
           f"`max_failed_logins = {o['max_failed_logins']}`"
           + (f", {', '.join(o['listener_option'])}" if o["listener_option"] else "") + ". "
           f"Machine: {m['nproc']} cores ({m['cpu']}), {m['memory_gib']} GiB, Linux {m['kernel']}; attackers, real "
           f"user, broker and gateway share the cores, loopback only, so the figures are indicative. Load average "
           f"{r['load_average']['start']} at the start, {r['load_average'].get('end')} at the end. "
           f"Wall time {r.get('total_seconds')} s.", ""]
    if v:
        out += [f"kaazing-promo {v.get('kaazing_promo')} (Python {v.get('python')}, Twisted {v.get('twisted')}, "
                f"Autobahn {v.get('autobahn')}), RabbitMQ {v.get('rabbitmq')} (OTP {v.get('erlang_otp')}, a "
                "dedicated node).", ""]
    for note in r.get("notes", []):
        out += [f"**Note:** {note}", ""]
    gl = r.get("gateway_log")
    if gl and gl["errors"]:
        if "first_traceback" in gl:
            last = [ln.strip() for ln in gl["first_traceback"] if ln.strip()][-1]
            first = f"the first traceback ends `{last}`"
        else:
            first = f"the first: `{gl['first_errors'][0]}`"
        out += [f"**The gateway logged errors:** {gl['errors']:,} of its {gl['lines']:,} log lines are tracebacks, "
                f"critical or error events; {first}.", ""]
    rows = r.get("scenarios") or []
    if rows:
        out += ["| scenario | attempts sent (addresses, at once) | client saw: rate-limited / realm / no answer / "
                "other | gateway's login outcomes | real user: AMQP Open-Ok | WS ticket | WS Open-Ok | gateway CPU "
                "during / first 3 s after / all after | idle after | load (1 min) before | issue 16 |",
                "|---|---|---|---|---|---|---|---|---|---|---|"]
        busy = []
        for row in rows:
            a = row.get("attack")
            k = a["kinds"] if a else {}
            other = sum(n for kind, n in k.items() if kind not in ("rate-limited", "realm", "no answer"))
            sent = "—" if a is None else (f"{a['sent']:,} ({row['addresses']}, {row['concurrency']})"
                                          + (f", {a['not_sent']} not sent" if a["not_sent"] else ""))
            saw = "—" if a is None else (f"{k.get('rate-limited', 0)} / {k.get('realm', 0)} / "
                                         f"{k.get('no answer', 0)} / {other}")
            logins = ", ".join(f"{x} {n:,}" for x, n in sorted(row.get("gateway_logins", {}).items())) or "—"
            real, c = row["real_user"], row["cpu_after"]
            idle = "—" if c["idle_after"] is None else f"{c['idle_after']:.1f} s"
            if c["idle_after"] is None:
                idle = f"**not within {c['window']:.0f} s**"
            name = row["name"]
            if row.get("settled_after") is None and row is not rows[-1]:
                busy.append(name)
                name += " ‡"
            out.append(f"| {name} | {sent} | {saw} | {logins} | {loginCell(real.get('amqp'))} | "
                       f"{ticketCell(real.get('ws'))} | {loginCell(real.get('ws'))} | "
                       f"{row['cpu_during']} / {c['first_3s']} / {c['total']} s | {idle} | "
                       f"{row['load_average_before'].split()[0]} | {verdict(row, o)} |")
        out.append("")
        if busy:
            out += [f"‡ {', '.join(busy)}: the gateway was still busy {o['settle']:g} s after the row's CPU window "
                    "(still verifying the passwords of clients that had gone), so the next row started on a busy "
                    "gateway and its figures (logins, CPU) include that leftover work.", ""]
    out += ["Each flood attempt: connect from the scenario's address, then on the AMQP listener the protocol header, "
            "Start, Start-Ok PLAIN; on the WebSocket listener an upgrade with `Authorization: Basic`, or `POST "
            f"{WS_PATH}/ticket` with it; always a new random user name and a wrong password; the socket closed "
            f"{o['hang_up_ms']} ms after the credentials went (earlier if the answer came first). `flood-1`: "
            f"{o['flood_attempts']} attempts from one address; `flood-20`: {o['per_address']} from each of "
            f"{o['addresses']} addresses (under `max_failed_logins`); `guess`: {o['guess_attempts']} attempts from "
            "one address, each waiting for its answer. \"Client saw\" counts the answers that came before the "
            "hang-up (rate-limited: HTTP 429 or Close 403 \"retry after\"; realm: HTTP 401 or Close 403 \"Login "
            "was refused\"); the gateway's login outcomes (admin `/metrics`, difference over the row, the real "
            "user's two `ok` included) count every attempt the gateway decided, also for clients that had gone. "
            "The real user (its own address, 127.0.0.100, a users.cnf user who had not logged in before) starts "
            "once a quarter of the attempts have started: AMQP listener to the broker's Open-Ok; WebSocket: the "
            "ticket, then the upgrade with it to Open-Ok (times from the start of each). Gateway CPU: "
            "utime + stime from /proc, during the attack, then in 0.5 s steps after the last attacker's socket "
            f"closed; idle after = when the first second with at most {o['quiet_cpu']} s CPU per step began. "
            "The last column checks issue 16's \"done when\": under a flood, the real user's two logins under "
            "5 s and the gateway idle within 3 s; a guesser answered by the realm at most max_failed_logins times.",
            ""]
    return "\n".join(out)


def checkout():
    def git(*args):
        return subprocess.run(["git", "-C", CHECKOUT, *args], capture_output=True, text=True).stdout.strip()
    return {"path": CHECKOUT, "commit": git("rev-parse", "--short", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "--", "kaazing_promo"))}


def write(results, directory, ts):
    os.makedirs(directory, exist_ok=True)
    base = os.path.join(directory, f"{ts}-abuse")
    with open(base + ".json", "w") as f:
        json.dump(results, f, indent=1, default=str)
    with open(base + ".md", "w") as f:
        f.write(markdown(results))
    return base


# -- main --------------------------------------------------------------------------------

#: Settings --quick changes: (full, quick).
SIZES = {
    "listeners": ("amqp,ws,ticket", "amqp"),
    "flood_attempts": (600, 40),
    "per_address": (None, 2),
    "guess_attempts": (30, 12),
    "flood_seconds": (60, 10),
    "real_timeout": (20, 10),
    "drain_seconds": (60, 6),
    "settle": (180, 6),
}


def parseArgs(argv):
    p = argparse.ArgumentParser(prog="bench/abuse.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="small counts, the AMQP listener's floods only, short windows (well under a minute)")
    p.add_argument("--scenarios", default="flood-1,flood-20,guess", help="which scenarios, in order")
    p.add_argument("--listeners", help="what the attackers use: amqp, ws (upgrade with Basic), ticket "
                                       f"(POST {WS_PATH}/ticket) (full: %s; quick: %s)" % SIZES["listeners"])
    p.add_argument("--flood-attempts", type=int, help="flood-1's attempts (full: %s; quick: %s)"
                   % SIZES["flood_attempts"])
    p.add_argument("--addresses", type=int, default=20, help="flood-20's addresses")
    p.add_argument("--per-address", type=int, help="flood-20's attempts per address (full: max_failed_logins - 1, "
                                                   "under the limit; quick: 2)")
    p.add_argument("--flood-concurrency", type=int, default=30, help="attacker sockets open at most")
    p.add_argument("--hang-up-ms", type=int, default=50, help="a flood attempt hangs up this long after its "
                                                              "credentials")
    p.add_argument("--guess-attempts", type=int, help="guess's attempts (full: %s; quick: %s)"
                   % SIZES["guess_attempts"])
    p.add_argument("--guess-concurrency", type=int, default=4, help="guess's attempts at once")
    p.add_argument("--flood-seconds", type=float, help="no attempt starts later than this into a scenario "
                                                       "(full: %s; quick: %s)" % SIZES["flood_seconds"])
    p.add_argument("--attempt-timeout", type=float, default=15, help="seconds an attempt may wait for "
                                                                     "connect/Start/its answer")
    p.add_argument("--real-timeout", type=float, help="seconds the real user's login may take "
                                                      "(full: %s; quick: %s)" % SIZES["real_timeout"])
    p.add_argument("--drain-seconds", type=float, help="at most this long watching the gateway's CPU after an "
                                                       "attack (full: %s; quick: %s)" % SIZES["drain_seconds"])
    p.add_argument("--min-watch", type=float, default=3.0, help="at least this long watching it")
    p.add_argument("--settle", type=float, help="at most this long waiting for an idle gateway before the next "
                                                "row (full: %s; quick: %s)" % SIZES["settle"])
    p.add_argument("--quiet-cpu", type=float, default=0.02, help="CPU seconds per 0.5 s step that count as idle")
    p.add_argument("--max-failed-logins", type=int, default=10, help="the listeners' max_failed_logins "
                                                                     "(the README's default)")
    p.add_argument("--listener-option", action="append", default=[], metavar="KEY=VALUE",
                   help="a TOML line added to both listeners, e.g. max_connections_per_source=50 (repeatable)")
    p.add_argument("--max-login-seconds", type=float, default=5.0, help="issue 16's bound on the real user's login")
    p.add_argument("--max-idle-seconds", type=float, default=3.0, help="issue 16's bound on CPU after a flood")
    p.add_argument("--wait-for-bench", type=float, default=1200,
                   help="wait at most this long (polling every 15 s) while a bench/run is measuring; 0: don't")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, configs)")
    p.add_argument("--results", default=os.path.join(HERE, "results"), help="where results go")
    o = p.parse_args(argv)
    for key, (full, quick) in SIZES.items():
        if getattr(o, key) is None:
            setattr(o, key, quick if o.quick else full)
    if o.per_address is None:
        o.per_address = max(1, o.max_failed_logins - 1)
    o.scenarios = [s for s in o.scenarios.split(",") if s]
    o.listeners = [k for k in o.listeners.split(",") if k]
    for s in o.scenarios:
        if s not in ("flood-1", "flood-20", "guess"):
            p.error(f"unknown scenario {s!r}")
    for k in o.listeners:
        if k not in ("amqp", "ws", "ticket"):
            p.error(f"unknown listener kind {k!r}")
    return o


def main(argv):
    o = parseArgs(argv)
    if o.wait_for_bench and not soak.waitForOtherBench(o.wait_for_bench):
        return 2
    infra.raiseOpenFiles()
    ts = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    base = tempfile.mkdtemp(prefix="kp-abuse-")
    started = time.monotonic()
    results = {"timestamp": ts, "machine": infra.machine(),
               "settings": {k: v for k, v in vars(o).items() if k != "results"},
               "load_average": {"start": soak.loadAverage()}, "versions": soak.versions(), "checkout": checkout(),
               "notes": []}
    abuse = Abuse(o, base)

    def onSignal(sig, frame):
        raise KeyboardInterrupt(f"signal {sig}")
    signal.signal(signal.SIGTERM, onSignal)
    log(f"bench/abuse.py → {o.results}/{ts}-abuse.json|.md  (temp dir {base})")
    status = 2
    try:
        abuse.run(results)
        status = 0
    except KeyboardInterrupt as e:
        results["notes"].append(f"interrupted: {e}")
        status = 130
    except Exception as e:
        import traceback
        traceback.print_exc()
        results["notes"].append(f"failed: {type(e).__name__}: {e}")
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        gateway = abuse.gateway
        if gateway.child is not None:
            if not gateway.child.alive():
                results["notes"].append(f"the gateway exited during the run: {gateway.child.tail(5)}")
            results["gateway_log"] = infra.logErrors(infra.twistdLogLines(os.path.join(base, "gateway.twistd.log")))
        gateway.stop()
        results["load_average"]["end"] = soak.loadAverage()
        out = infra.finishRun(results, started, lambda: write(results, o.results, ts), o.keep, base, log)
    log(f"done in {results['total_seconds']} s: {out}.md")
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
