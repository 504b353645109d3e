"""
Prometheus metrics, named C{kaazing_promo_*}, in a registry of their own.

Most of them are derived from the audit events (namespace
C{kaazing_promo.audit}) by a log observer, so the data path knows nothing of
metrics; what the audit events cannot tell comes from three places:

  - the listeners' live sessions, read at scrape time (connections open and
    paused, the bytes of connections still open);
  - the checkers, through L{IRealmMetrics} (delegated request latency and
    cache use, users.cnf reloads);
  - nothing else: no user name is ever a label value (cardinality and
    privacy).
"""

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from twisted.application import service
from twisted.logger import globalLogPublisher
from twisted.web import resource
from zope.interface import Interface, implementer

from kaazing_promo.amqp.broker import BROKER_UNREACHABLE
from kaazing_promo.ops.audit import AUDIT_NAMESPACE, OUTCOMES

PREFIX = "kaazing_promo_"

#: Login outcomes (a subset of the audit outcomes).
LOGIN_OUTCOMES = ("ok", "bad-credentials", "unauthorized", "realm-error", "rate-limited")


class IRealmMetrics(Interface):
    """
    What a checker reports that no audit event carries.  A checker holds one
    in its C{metrics} attribute (L{None} when nobody listens).
    """

    def delegatedRequest(seconds):
        """
        One request to the delegated realm ended (answered, failed or timed
        out) after C{seconds}.
        """

    def delegatedCache(hit):
        """
        A delegated login was answered from the cache (C{hit=True}) or had to
        ask the realm (C{hit=False}).
        """

    def usersCnfReloaded(ok):
        """
        A reload of users.cnf succeeded (C{ok=True}) or failed and kept the
        users loaded before (C{ok=False}).
        """

    def verifyCache(hit):
        """
        An internal login was answered from the verify cache (C{hit=True})
        or cost a password hash (C{hit=False}).
        """


def _paused(session):
    """
    @return: whether either side of C{session} is holding the other back:
        its write buffer is full, so the peer is no longer being read.
    """
    for side in (getattr(session, "client", None), getattr(session, "broker", None)):
        transport = getattr(side, "transport", None)
        if getattr(transport, "producerPaused", False):
            return True
    return False


class _LiveCollector:
    """
    What is read from the live sessions at scrape time.
    """

    def __init__(self, metrics):
        self._metrics = metrics

    def collect(self):
        metrics = self._metrics
        opened = GaugeMetricFamily(
            PREFIX + "connections_open", "Client connections open now, per listener.",
            labels=["listener"])
        paused = GaugeMetricFamily(
            PREFIX + "connections_paused",
            "Open connections where one side's write buffer is full (backpressure), per listener.",
            labels=["listener"])
        byteCounts = CounterMetricFamily(
            PREFIX + "bytes", "Bytes relayed after the handshake: in = client to broker, "
            "out = broker to client.", labels=["direction"])
        sockets = GaugeMetricFamily(
            PREFIX + "sockets_admitted",
            "Client sockets holding a place in max_connections now (handshaking or open), per listener.",
            labels=["listener"])
        live = {"in": 0, "out": 0}
        for name, context in sorted(metrics.contexts.items()):
            sessions = list(context.sessions)
            opened.add_metric([name], len(sessions))
            sockets.add_metric([name], getattr(context, "connections", len(sessions)))
            paused.add_metric([name], sum(1 for session in sessions if _paused(session)))
            for session in sessions:
                live["in"] += getattr(session, "bytesIn", 0)
                live["out"] += getattr(session, "bytesOut", 0)
        for direction in ("in", "out"):
            byteCounts.add_metric([direction], metrics.closedBytes[direction] + live[direction])
        families = [opened, paused, byteCounts, sockets]
        if metrics.loginQueue is not None:
            checks = GaugeMetricFamily(
                PREFIX + "login_checks", "Password checks running now, and waiting their turn in the fair "
                "queue (a growing 'waiting' is a login flood).", labels=["state"])
            checks.add_metric(["running"], metrics.loginQueue.running)
            checks.add_metric(["waiting"], metrics.loginQueue.waiting)
            families.append(checks)
        return families


@implementer(IRealmMetrics)
class GatewayMetrics:
    """
    The gateway's metrics and the registry that exposes them.

    @ivar registry: the L{CollectorRegistry} (per gateway, never the global one).
    @ivar contexts: C{{listener name: ListenerContext}}, read at scrape time.
    @ivar closedBytes: bytes of finished connections, by direction.
    """

    def __init__(self, contexts, realm="off", loginQueue=None):
        """
        @param contexts: the gateway's listener contexts.
        @param realm: C{user_auth} (C{"internal"}, C{"delegated"} or C{"off"}),
            the C{realm} label of the login counter.
        @param loginQueue: the authenticator's
            L{kaazing_promo.auth.scheduler.FairScheduler}, or L{None}.
        """
        self.contexts = contexts
        self.realm = realm
        self.loginQueue = loginQueue
        self.closedBytes = {"in": 0, "out": 0}
        registry = self.registry = CollectorRegistry()
        self.connections = Counter(
            PREFIX + "connections", "Client connections ended, per listener and audit outcome.",
            ["listener", "outcome"], registry=registry)
        self.logins = Counter(
            PREFIX + "logins", "Login decisions, per listener, realm and outcome.",
            ["listener", "realm", "outcome"], registry=registry)
        self.handshake = Histogram(
            PREFIX + "handshake_seconds", "Seconds from accept to the broker's Open-Ok.",
            ["listener"], registry=registry)
        self.brokerConnectFailures = Counter(
            PREFIX + "broker_connect_failures",
            "Client connections for which no broker endpoint could be reached.", registry=registry)
        self.delegatedSeconds = Histogram(
            PREFIX + "delegated_request_seconds",
            "Seconds a request to the delegated realm took (answered, failed or timed out).",
            registry=registry)
        self.delegatedCacheUse = Counter(
            PREFIX + "delegated_cache", "Delegated logins answered from the cache (hit) or not (miss).",
            ["result"], registry=registry)
        self.usersCnfReloads = Counter(
            PREFIX + "users_cnf_reloads", "users.cnf reloads: ok, or error (the old users stay).",
            ["result"], registry=registry)
        self.verifyCacheUse = Counter(
            PREFIX + "verify_cache", "Internal logins answered from the verify cache (hit) or verified with a "
            "password hash (miss).", ["result"], registry=registry)
        registry.register(_LiveCollector(self))
        # process_resident_memory_bytes, process_open_fds, CPU: what a soak
        # watches, for the operator (from /proc; nothing where there is none).
        ProcessCollector(registry=registry)
        # Every series a dashboard expects exists from the start, at zero.
        for name, context in contexts.items():
            for outcome in OUTCOMES:
                self.connections.labels(name, outcome)
            if context.requiresLogin:
                for outcome in LOGIN_OUTCOMES:
                    self.logins.labels(name, realm, outcome)
            self.handshake.labels(name)
        if realm == "delegated":
            for result in ("hit", "miss"):
                self.delegatedCacheUse.labels(result)
        if realm == "internal":
            for result in ("ok", "error"):
                self.usersCnfReloads.labels(result)
            for result in ("hit", "miss"):
                self.verifyCacheUse.labels(result)

    # The audit observer

    def observe(self, event):
        """
        A L{twisted.logger} observer: count what an audit event says.
        Other events pass by.
        """
        if event.get("log_namespace") != AUDIT_NAMESPACE:
            return
        kind = event.get("event")
        listener = str(event.get("listener"))
        if kind == "login":
            self.logins.labels(listener, self.realm, str(event.get("outcome"))).inc()
        elif kind == "open":
            handshake = event.get("handshake_s")
            if isinstance(handshake, (int, float)):
                self.handshake.labels(listener).observe(handshake)
        elif kind == "connection":
            outcome = str(event.get("outcome"))
            self.connections.labels(listener, outcome).inc()
            if outcome == "broker-refused" and event.get("reason") == BROKER_UNREACHABLE:
                self.brokerConnectFailures.inc()
            self.closedBytes["in"] += event.get("bytes_in") or 0
            self.closedBytes["out"] += event.get("bytes_out") or 0

    # IRealmMetrics

    def delegatedRequest(self, seconds):
        self.delegatedSeconds.observe(seconds)

    def delegatedCache(self, hit):
        self.delegatedCacheUse.labels("hit" if hit else "miss").inc()

    def usersCnfReloaded(self, ok):
        self.usersCnfReloads.labels("ok" if ok else "error").inc()

    def verifyCache(self, hit):
        self.verifyCacheUse.labels("hit" if hit else "miss").inc()

    def render(self):
        """
        @return: the exposition text (L{bytes}).
        """
        return generate_latest(self.registry)


class MetricsService(service.Service):
    """
    Feeds a L{GatewayMetrics} while running: observes the audit events and
    hands the checker its L{IRealmMetrics}.

    @param checker: the portal's checker, or L{None} (C{user_auth = "off"}).
    """

    def __init__(self, metrics, checker=None, publisher=None):
        self.metrics = metrics
        self.checker = checker
        self._publisher = globalLogPublisher if publisher is None else publisher

    def startService(self):
        service.Service.startService(self)
        self._publisher.addObserver(self.metrics.observe)
        if self.checker is not None:
            self.checker.metrics = self.metrics

    def stopService(self):
        self._publisher.removeObserver(self.metrics.observe)
        if self.checker is not None and self.checker.metrics is self.metrics:
            self.checker.metrics = None
        return service.Service.stopService(self)


class MetricsResource(resource.Resource):
    """
    C{GET /metrics}: the Prometheus text format, rendered on the reactor
    thread from the gateway's own registry (a scrape reads the live
    sessions, which only the reactor thread may touch).
    """

    isLeaf = True

    def __init__(self, metrics):
        resource.Resource.__init__(self)
        self.metrics = metrics

    def render_GET(self, request):
        request.setHeader(b"Content-Type", CONTENT_TYPE_PLAIN_0_0_4.encode("ascii"))
        return self.metrics.render()
