"""
The admin listener (C{[admin] endpoint}, off by default): C{/metrics},
C{/healthz} and C{/readyz} for the operator's monitoring, never for clients.

C{/readyz} answers from probes cached by a timer (every
L{PROBE_INTERVAL} seconds), so a scrape never waits for the broker or the
realm and a busy monitor cannot flood them:

  - C{broker}: TCP connect, protocol header, the broker's Connection.Start
    received (L{kaazing_promo.amqp.broker.BrokerConnector.probe});
  - C{realm}: internal: users loaded; delegated: a TLS handshake with the
    API Gateway's host and port, certificate verified as for a login, within
    C{[delegated] timeout} — never a login;
  - C{cluster} (with C{[cluster]}): the cluster's Redis answers a PING.  It
    decides readiness only in token mode, where no login works without it;
    otherwise logins go on with per-process limits (tickets are refused) and
    the check says so without taking the gateway out of the balancer.
"""

import json
from urllib.parse import urlsplit

from twisted.application import service
from twisted.application.internet import StreamServerEndpointService, TimerService
from twisted.internet import defer, protocol
from twisted.internet.endpoints import HostnameEndpoint, serverFromString, wrapClientTLS
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IHandshakeListener
from twisted.logger import Logger
from twisted.web import resource, server
from twisted.web.client import BrowserLikePolicyForHTTPS
from zope.interface import implementer

from kaazing_promo.adapters.twistedinternals import listenOrFail, whenListening
from kaazing_promo.errors import ConfigError
from kaazing_promo.interfaces import IReloadableUsers
from kaazing_promo.ops.metrics import GatewayMetrics, MetricsResource, MetricsService

PROBE_INTERVAL = 5.0

log = Logger(namespace="kaazing_promo.ops.admin")


class Probe:
    """
    The last answer of one readiness check.

    @ivar ok: L{True}, L{False}, or L{None} before the first answer.
    @ivar detail: what the operator reads (never a secret).
    @ivar checked: when the answer came (the clock's seconds), or L{None}.
    @ivar required: whether readiness depends on it.
    """

    def __init__(self, required=True):
        self.ok = None
        self.detail = "not checked yet"
        self.checked = None
        self.required = required

    def record(self, ok, detail, now):
        self.ok, self.detail, self.checked = ok, detail, now

    def asJSON(self, now):
        document = {"ok": bool(self.ok), "detail": self.detail,
                    "age_s": None if self.checked is None else round(now - self.checked, 3)}
        if not self.required:
            document["required"] = False
        return document


@implementer(IHandshakeListener)
class _HandshakeProbe(protocol.Protocol):
    """
    Waits for the TLS handshake, then hangs up without sending a byte.
    """

    def __init__(self):
        self.done = defer.Deferred()

    def handshakeCompleted(self):
        if not self.done.called:
            self.done.callback(True)
        self.transport.loseConnection()

    def connectionLost(self, reason):
        if not self.done.called:
            self.done.errback(reason)


def tlsPolicy(caFile=None):
    """
    @return: the L{BrowserLikePolicyForHTTPS} the delegated realm's client
        uses: C{caFile}'s certificates, or the system's trust store.
    @raise ConfigError: C{caFile} cannot be used.
    """
    from kaazing_promo.auth.delegated import _loadTrustRoot
    return BrowserLikePolicyForHTTPS(trustRoot=None if caFile is None else _loadTrustRoot(caFile))


def tlsHandshake(reactor, url, policy, timeout=5.0):
    """
    Connect to the host and port of C{url} and complete a TLS handshake,
    verifying the certificate with C{policy} (see L{tlsPolicy}).

    @return: a L{Deferred} firing L{None} on success, failing with why not.
    """
    parts = urlsplit(url)
    host, port = parts.hostname, parts.port or 443
    endpoint = wrapClientTLS(policy.creatorForNetloc(host.encode("idna"), port),
                             HostnameEndpoint(reactor, host, port, timeout=timeout))
    probe = _HandshakeProbe()
    d = endpoint.connect(protocol.Factory.forProtocol(lambda: probe))
    d.addCallback(lambda _: probe.done)
    d.addTimeout(timeout, reactor)
    return d.addCallback(lambda _: None)


class Readiness:
    """
    The cached readiness probes of one gateway.

    @param config: the gateway's L{kaazing_promo.config.Config}.
    @param clock: the reactor (time, and TLS handshakes with the API Gateway).
    @param brokerConnector: the L{kaazing_promo.amqp.broker.BrokerConnector}
        probed for a Connection.Start, into C{startCache}.
    @param checker: the portal's checker (an L{IReloadableUsers} says how
        many users it has), or L{None}.
    @param cluster: the L{kaazing_promo.cluster.Cluster}, or L{None}.
    @ivar probes: C{{"broker": Probe, "realm": Probe}}, and C{"cluster"}
        with C{[cluster]}.
    """

    def __init__(self, config, clock, brokerConnector, startCache, checker, cluster=None):
        self.config = config
        self.clock = clock
        self.brokerConnector = brokerConnector
        self.startCache = startCache
        self.checker = checker
        self.cluster = cluster
        self.probes = {"broker": Probe(), "realm": Probe()}
        if cluster is not None:
            self.probes["cluster"] = Probe(required=config.promotion.mode == "token")
        self._policy = None
        if config.user_auth == "delegated":
            self._policy = tlsPolicy(config.delegated.ca_file)

    def refresh(self):
        """
        Run every probe once.

        @return: a L{Deferred} that fires when all have answered; it never
            fails (the timer calling it would stop).
        """
        probes = [self._probeBroker(), self._probeRealm()]
        if "cluster" in self.probes:
            probes.append(self._probeCluster())
        return defer.gatherResults(probes, consumeErrors=True) \
            .addErrback(lambda failure: log.failure("readiness probe failed", failure))

    def _record(self, name, ok, detail):
        probe = self.probes[name]
        if probe.ok is not None and bool(probe.ok) != bool(ok):
            log.info("readiness: {name} is now {state}: {detail}",
                     name=name, state="ready" if ok else "NOT ready", detail=detail)
        probe.record(ok, detail, self.clock.seconds())

    def _probeBroker(self):
        endpoints = ", ".join(self.brokerConnector.descriptions)

        def answered(ok):
            self._record("broker", ok,
                         f"Connection.Start received from {endpoints}" if ok
                         else f"no Connection.Start from {endpoints}")
        return self.brokerConnector.probe(self.startCache).addCallback(answered)

    def _probeRealm(self):
        config = self.config
        checker = self.checker
        if config.user_auth == "off" or checker is None:
            self._record("realm", True, "user_auth is off")
            return defer.succeed(None)
        if IReloadableUsers.providedBy(checker):
            count = checker.userCount
            self._record("realm", count > 0, f"{count} users loaded from {checker.path}")
            return defer.succeed(None)
        delegated = config.delegated

        def reached(_):
            self._record("realm", True, f"TLS handshake with {delegated.url} succeeded")

        def failed(failure):
            error = failure.getErrorMessage() if not failure.check(defer.TimeoutError) \
                else f"no TLS handshake within {delegated.timeout:g} s"
            self._record("realm", False, f"{delegated.url} not reachable: {error}")
        d = defer.maybeDeferred(tlsHandshake, self.clock, delegated.url,
                                self._policy, delegated.timeout)
        return d.addCallbacks(reached, failed)

    def _probeCluster(self):
        def answered(result):
            ok, detail = result
            if not ok and not self.probes["cluster"].required:
                detail += ("; logins go on with failed-login limits counted per process, tickets are refused "
                           "until it answers")
            self._record("cluster", ok, detail)
        return self.cluster.probe().addCallback(answered)

    def ready(self):
        return all(probe.ok for probe in self.probes.values() if probe.required)

    def asJSON(self):
        now = self.clock.seconds()
        return {"ready": self.ready(),
                "checks": {name: probe.asJSON(now) for name, probe in self.probes.items()}}


def _json(request, code, document):
    request.setResponseCode(code)
    request.setHeader(b"Content-Type", b"application/json")
    request.setHeader(b"Cache-Control", b"no-store")
    return json.dumps(document, sort_keys=True).encode("utf-8") + b"\n"


class HealthResource(resource.Resource):
    """
    C{GET /healthz}: 200 while the process runs.
    """

    isLeaf = True

    def __init__(self, clock):
        resource.Resource.__init__(self)
        self.clock = clock
        self.started = clock.seconds()

    def render_GET(self, request):
        return _json(request, 200, {"status": "ok",
                                    "uptime_s": round(self.clock.seconds() - self.started, 3)})


class ReadyResource(resource.Resource):
    """
    C{GET /readyz}: 200 when every cached probe passed, 503 otherwise, with
    each check's status.
    """

    isLeaf = True

    def __init__(self, readiness):
        resource.Resource.__init__(self)
        self.readiness = readiness

    def render_GET(self, request):
        document = self.readiness.asJSON()
        return _json(request, 200 if document["ready"] else 503, document)


class AdminSite(server.Site):
    """
    The admin listener's site: no access log (a scrape every few seconds
    would drown the audit lines).
    """

    noisy = False

    def log(self, request):
        pass


def buildAdminResource(metrics, readiness, clock):
    root = resource.Resource()
    root.putChild(b"metrics", MetricsResource(metrics))
    root.putChild(b"healthz", HealthResource(clock))
    root.putChild(b"readyz", ReadyResource(readiness))
    return root


class AdminService(service.MultiService):
    """
    The admin listener with the services that feed it: the metrics
    observer and the readiness timer.

    @param config: the gateway's L{kaazing_promo.config.Config} (its path
        and C{[admin] endpoint}, for messages).
    @param endpoint: the server endpoint to listen on.
    @param clock: the reactor.
    @param checker: the portal's checker, or L{None}: it reports to the
        metrics what no audit event carries.
    @ivar metrics: the L{GatewayMetrics}.
    @ivar readiness: the L{Readiness}.
    """

    def __init__(self, config, endpoint, clock, metrics, readiness, checker=None, probeInterval=PROBE_INTERVAL):
        service.MultiService.__init__(self)
        self.setName("admin")
        self.config = config
        self.metrics = metrics
        self.readiness = readiness
        MetricsService(self.metrics, checker).setServiceParent(self)
        probes = TimerService(probeInterval, self.readiness.refresh)
        probes.clock = clock
        probes.setServiceParent(self)
        site = AdminSite(buildAdminResource(self.metrics, self.readiness, clock))
        self._listener = StreamServerEndpointService(endpoint, site)
        # A port that cannot be bound stops start-up instead of being logged.
        listenOrFail(self._listener)
        self._listener.setServiceParent(self)

    def privilegedStartService(self):
        try:
            service.MultiService.privilegedStartService(self)
        except CannotListenError as e:
            # Start-up errors are one line (see tap.makeService), not a traceback.
            raise SystemExit(
                f"kaazing-promo: {self.config.path}: [admin] key 'endpoint': cannot listen on "
                f"{self.config.admin.endpoint!r} ({e.socketError}); stop whatever holds that "
                "port or choose another")

    def startService(self):
        service.MultiService.startService(self)
        log.info("admin listener on {endpoint}: /metrics /healthz /readyz",
                 endpoint=self.config.admin.endpoint)

    def whenListening(self):
        """
        @return: a L{Deferred} firing with the admin L{IListeningPort}.
        """
        return whenListening(self._listener)


def buildAdminService(config, reactor, contexts, loginQueue, readiness, checker=None):
    """
    @param contexts: the gateway's listener contexts, which the metrics read.
    @param loginQueue: the authenticator's login queue
        (L{kaazing_promo.auth.scheduler.FairScheduler}), or L{None}.
    @param readiness: the gateway's L{Readiness}.
    @param checker: the portal's checker, or L{None}.
    @return: the L{AdminService}, or L{None} when C{[admin] endpoint} is not
        set.  (With C{workers > 1} only the master builds one: its metrics
        count its own connections.)
    @raise ConfigError: the endpoint string is not usable.
    """
    description = config.admin.endpoint
    if not description:
        return None
    try:
        endpoint = serverFromString(reactor, description)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as e:
        raise ConfigError(f"{config.path}: [admin] key 'endpoint': {description!r} is not a usable "
                          f"endpoint string ({e}); e.g. \"tcp:port=9419:interface=127.0.0.1\"")
    metrics = GatewayMetrics(contexts, config.user_auth, loginQueue)
    return AdminService(config, endpoint, reactor, metrics, readiness, checker)
