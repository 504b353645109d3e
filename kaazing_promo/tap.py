"""
The twistd plugin: C{twistd -n kaazing-promo [--config FILE] [--apigw-dir DIR]}.
"""

import hashlib
import hmac
import os
import resource as rlimit
import signal

from twisted.application import service
from twisted.application.internet import StreamServerEndpointService
from twisted.cred.portal import Portal
from twisted.internet import defer
from twisted.internet.error import CannotListenError
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger
from twisted.python import usage

from kaazing_promo.adapters.twistedinternals import listenOrFail, whenListening
from kaazing_promo.amqp.broker import BrokerConnector, BrokerStartCache
from kaazing_promo.auth.avatar import GatewayRealm
from kaazing_promo.auth.authenticator import Authenticator
from kaazing_promo.auth.tickets import SessionCookies, TicketBook
from kaazing_promo.auth.lifetime import SessionLifetime
from kaazing_promo.token.brokerauth import buildBrokerAuthService
from kaazing_promo.config import defaultConfigPath, loadConfig
from kaazing_promo.errors import ConfigError
from kaazing_promo.interfaces import ITokenPromoter
from kaazing_promo.ops.admin import Readiness, buildAdminService
from kaazing_promo.ops.audit import AuditJSONService
from kaazing_promo.ops.memory import HeapFreezer, MemoryReclaimer
from kaazing_promo.ops.reload import ReloadService
from kaazing_promo.promotion import makePromoter
from kaazing_promo.secrets import SecretStore, readOrCreateKeyFile, readSigningKey
from kaazing_promo.token.tokens import TokenBook
from kaazing_promo.transport.context import ListenerContext
from kaazing_promo.transport.proxied import TrustedProxyFactory
from kaazing_promo.transport.tcp import AMQPListenerFactory
from kaazing_promo.transport.websocket import buildSite
from kaazing_promo.workers import AdoptedPortService, WorkerPool, checkWorkerEndpoints

log = Logger(namespace="kaazing_promo")


class Options(usage.Options):
    synopsis = "[--config FILE] [--apigw-dir DIR] [--audit-json FILE]"
    longdesc = (
        "Run the kaazing-promo gateway: WebSocket and AMQP 0-9-1 listeners that "
        "authenticate the person (user_auth internal or delegated) and promote that "
        "identity into the AMQP handshake before any byte reaches RabbitMQ. "
        "Without --config the copy of the sample packaged with this installation runs: "
        "WebSocket on 127.0.0.1:8080/amqp, AMQP on 127.0.0.1:5673, the sample users.cnf, "
        "consolidated to the local broker's guest account (in a source checkout, ./dev run "
        "runs etc/gateway.toml itself, the file to edit).")
    optParameters = [
        ["config", "c", None,
         "The TOML configuration file (default: the sample's copy packaged with this "
         "installation, identical to the checkout's etc/gateway.toml; ./dev run passes that file)."],
        ["apigw-dir", None, None,
         "The API Gateway installation directory; users.cnf is looked up under it after "
         "<config dir>/config/users.cnf (wins over apigw_dir in the file)."],
        ["audit-json", None, None,
         "Also write the audit events (one per login decision and per connection) to this "
         "file as JSON lines, appended; the text log keeps them too. Never holds a secret."],
    ]

    def postOptions(self):
        if self["config"] is None:
            self["config"] = defaultConfigPath()


def buildPortal(config, reactor):
    """
    @return: C{(portal, checker)} for C{config.user_auth}, or C{(None, None)}
        when it is "off".
    @raise ConfigError: the realm cannot be set up.
    """
    if config.user_auth == "off":
        return None, None
    if config.user_auth == "internal":
        from kaazing_promo.auth.internal import InternalChecker, locateUsersCnf
        path = locateUsersCnf(config.instanceDir, config.apigw_dir, config.internal.users_cnf)
        checker = InternalChecker(path, overlay=config.internal.overlay,
                                  verifyCacheTTL=config.internal.verify_cache_ttl, reactor=reactor,
                                  demo=config.demo)
        checker.load()
    else:
        from kaazing_promo.auth.delegated import DelegatedChecker, makeHTTPClient
        delegated = config.delegated
        checker = DelegatedChecker(
            url=delegated.url, domain=delegated.domain, includeGroups=config.groupsRequired,
            timeout=delegated.timeout, httpClient=makeHTTPClient(reactor, caFile=delegated.ca_file,
                                                     maxConcurrent=delegated.max_concurrent),
            clock=reactor, maxConcurrent=delegated.max_concurrent, cacheSize=delegated.cache_size)
    return Portal(GatewayRealm(), [checker]), checker


def buildSecrets(config):
    """
    @return: the loaded L{SecretStore} of C{[promotion]}.
    """
    secrets = SecretStore(config.promotion.secrets_file, config.promotion.inline_secrets)
    secrets.load()
    return secrets


def checkBrokerSecrets(config, promoter, secrets):
    """
    A broker account the promoter will certainly use must have a secret at
    start-up, not at the first login.

    @raise ConfigError: one is missing.
    """
    missing = sorted(promoter.knownBrokerUsers() - secrets.names())
    if missing:
        raise ConfigError(
            f"{config.path}: [promotion]: no broker secret for {', '.join(map(repr, missing))} in "
            f"{secrets.source or 'any source'}; add {missing[0]} = \"<password>\" to the secrets")


_KEY_FILE_CONTEXT = b"kaazing-promo key_file signing key v1"


def loadKeyFile(config):
    """
    The signing key of C{key_file}: the same across restarts (and for every
    worker, which the master hands it to), so that a browser's session
    cookie outlives a restart and its reconnect costs no password hash.
    The file is created, mode 0600, when missing.

    @return: the signing key (L{bytes}).
    @raise ConfigError: the file cannot be created, is readable by others,
        or holds too short a key.
    """
    where = f"{config.path}: key 'key_file'"
    text, created = readOrCreateKeyFile(where, config.key_file)
    if created:
        log.info("created the signing key {path} (mode 0600): session cookies, tickets and tokens outlive a "
                 "restart", path=config.key_file)
    return readSigningKey(f"{config.key_file}: {where}", text, _KEY_FILE_CONTEXT)


def buildTokenBook(config, ticketKey, cluster):
    """
    Token mode's book.  Tokens minted by any worker (or, with C{[cluster]},
    any gateway) are checked by whichever C{[broker_auth]} server the broker
    asks: every process signs with a key derived from the shared one.
    """
    shared = {} if cluster is None else {"spent": cluster.tokens, "shared": cluster.grants}
    return TokenBook(ttl=config.promotion.token_ttl, permissions=config.permissions,
                     key=hmac.new(ticketKey, b"kaazing-promo broker tokens", hashlib.sha256).digest(), **shared)


def buildAuthenticator(portal, checker, promoter, ticketKey, cluster, reactor):
    """
    @return: the process's one L{Authenticator}, its tickets signed with
        C{ticketKey}; with C{[cluster]}, its counters and spent tickets shared.
    """
    sessions = SessionCookies(reactor, hmac.new(ticketKey, b"kaazing-promo sessions", hashlib.sha256).digest())
    return Authenticator(
        portal, checker, promoter,
        TicketBook(reactor, ticketKey, spent=None if cluster is None else cluster.tickets), reactor,
        slots=1 if checker is None else checker.concurrency,
        failures=None if cluster is None else cluster.failures, sessions=sessions)


def buildListenerFactory(context):
    """
    @return: the protocol factory of one listener: a twisted.web site for a
        WebSocket listener, the AMQP listener's factory otherwise; behind
        C{trusted_proxies} when the listener takes PROXY headers.
    """
    listener = context.listener
    factory = buildSite(context) if listener.protocol == "websocket" else AMQPListenerFactory(context)
    if listener.trusted_proxies:
        factory = TrustedProxyFactory(factory, listener.trusted_proxies)
    return factory


def buildListenerService(configPath, listener, factory, reactor, inheritedFD=None):
    """
    @param inheritedFD: in a worker process, the descriptor of the socket
        the master bound for this listener.
    @return: the service (named after the listener) that listens.
    @raise ConfigError: the endpoint string is unusable.
    """
    if inheritedFD is not None:
        listenerService = AdoptedPortService(reactor, inheritedFD, factory)
        listenerService.setName(listener.name)
        return listenerService
    try:
        endpoint = serverFromString(reactor, listener.endpoint)
    except (IndexError, AttributeError) as e:
        if not listener.endpoint.startswith("systemd:"):
            raise
        raise ConfigError(
            f"{configPath}: [[listeners]] {listener.name!r} key 'endpoint': {listener.endpoint!r} "
            f"has no socket from systemd ({type(e).__name__}); systemd: endpoints need the sockets of "
            "kaazing-promo.socket (LISTEN_FDS): start it with the socket-activation drop-in, or use tcp:")
    except (ValueError, TypeError, KeyError) as e:
        raise ConfigError(f"{configPath}: [[listeners]] {listener.name!r} key 'endpoint': "
                          f"{listener.endpoint!r} is not a usable endpoint string ({e})")
    listenerService = StreamServerEndpointService(endpoint, factory)
    listenerService.setName(listener.name)
    # A port that cannot be bound stops start-up instead of being logged.
    listenOrFail(listenerService)
    return listenerService


def raiseOpenFilesLimit():
    """
    Raise the soft open-files limit to the hard one: each client holds two
    descriptors (its own and the broker's).

    @return: the number of clients the limit allows.
    """
    soft, hard = rlimit.getrlimit(rlimit.RLIMIT_NOFILE)
    if hard != rlimit.RLIM_INFINITY and soft < hard:
        try:
            rlimit.setrlimit(rlimit.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return (soft - 64) // 2


class GatewayService(service.MultiService):
    """
    The whole gateway: one child service per listener.
    """

    def __init__(self, config, reactor, apigwDir=None, inheritedPorts=None, ticketKey=None, freezeHeap=False):
        """
        @param apigwDir: C{--apigw-dir}, which every reload of the
            configuration file honours as start-up did.
        @param inheritedPorts: in a worker process, C{{listener name: file
            descriptor}} of the sockets the master bound.
        @param ticketKey: the key browser tickets are signed with, shared
            with the workers; random when not given.
        @param freezeHeap: keep the start-up heap out of full garbage
            collections (L{HeapFreezer}): what the gateway's own processes
            do; a test's gateway leaves the test process's collector alone.
        """
        service.MultiService.__init__(self)
        checkWorkerEndpoints(config)
        self.config = config
        self.reactor = reactor
        self.isWorker = inheritedPorts is not None
        self.cluster = None
        if config.cluster is not None:
            # Every gateway of the cluster (and each one's workers) derives
            # the same key, so that any of them redeems what another signed.
            # Without [cluster], Redis is never imported.
            from kaazing_promo.cluster import Cluster, loadClusterSecrets
            ticketKey, password = loadClusterSecrets(config)
            self.cluster = Cluster(config.cluster, reactor, password)
            self.cluster.setServiceParent(self)
        if ticketKey is None and config.key_file is not None:
            ticketKey = loadKeyFile(config)
        # Without key_file or [cluster], the key is this start's own.
        self.ephemeralKey = ticketKey is None
        self.ticketKey = ticketKey or os.urandom(32)
        self.secrets = buildSecrets(config)
        self.promoter = makePromoter(config.promotion, self.secrets)
        if ITokenPromoter.providedBy(self.promoter):
            self.promoter.tokenBook = buildTokenBook(config, self.ticketKey, self.cluster)
            if self.cluster is not None:
                self.cluster.keepGrants(self.promoter.tokenBook, self._openGrants, reactor)
        checkBrokerSecrets(config, self.promoter, self.secrets)
        self.portal, self.checker = buildPortal(config, reactor)
        self.brokerConnector = BrokerConnector(
            reactor, (config.broker.endpoint,) + tuple(config.broker.fallback_endpoints))
        self.startCache = BrokerStartCache()
        self.lifetime = None
        if config.user_auth == "delegated":
            self.lifetime = SessionLifetime(config.delegated.on_expiry, self.checker, reactor)
        self.authenticator = buildAuthenticator(
            self.portal, self.checker, self.promoter, self.ticketKey, self.cluster, reactor)
        self.contexts = {}
        for listener in config.listeners:
            context = ListenerContext(listener, self.promoter, self.brokerConnector, self.startCache,
                                      reactor, self.authenticator, self.lifetime)
            self.contexts[listener.name] = context
            inherited = None if inheritedPorts is None else inheritedPorts[listener.name]
            buildListenerService(config.path, listener, buildListenerFactory(context), reactor,
                                 inherited).setServiceParent(self)
        # The master alone serves the admin and broker_auth listeners.
        self.brokerAuth = self.admin = None
        if not self.isWorker:
            # Token mode: the listener RabbitMQ's HTTP auth backend asks about the promoter's tokens.
            self.brokerAuth = buildBrokerAuthService(config, self.promoter, reactor)
            if self.brokerAuth is not None:
                self.brokerAuth.setServiceParent(self)
            # Operations: the admin listener (only with [admin] endpoint).
            readiness = Readiness(config, reactor, self.brokerConnector, self.startCache, self.checker,
                                  self.cluster)
            self.admin = buildAdminService(config, reactor, self.contexts, self.authenticator.scheduler,
                                           readiness, self.checker)
            if self.admin is not None:
                self.admin.setServiceParent(self)
        self.workers = None
        if config.workers > 1 and not self.isWorker:
            self.workers = WorkerPool(config, reactor, self.ticketKey, self.whenListening, apigwDir)
            self.workers.setServiceParent(self)
        # The start-up heap out of full collections, in every process.
        self.heap = None
        if freezeHeap:
            self.heap = HeapFreezer(reactor, self.openConnections)
            self.heap.setServiceParent(self)
        # Reloads on SIGHUP or a changed users.cnf, in every process.
        self.reloader = ReloadService(config, reactor, self.checker, self.secrets, self.promoter,
                                      self.authenticator, self.contexts, self.workers, apigwDir, heap=self.heap)
        self.reloader.setServiceParent(self)
        # Memory back to the system once a busy spell is over, in every process.
        self.memory = MemoryReclaimer(self.connectionCounts, reactor)
        self.memory.setServiceParent(self)

    _probing = defer.succeed(None)

    def _openGrants(self):
        """
        @return: the token grants of this process's connections open now.
        """
        return [self.promoter.grant(session.avatar) for context in self.contexts.values()
                for session in context.sessions if session.isOpen and session.avatar is not None]

    def connectionCounts(self):
        """
        @return: C{(open now, most open at once since the last call)} of
            this process's client connections, all listeners together (the
            peaks of the listeners added up).
        """
        return self.openConnections(), sum(context.takePeak() for context in self.contexts.values())

    def openConnections(self):
        """
        @return: how many client connections this process has open now.
        """
        return sum(len(context.sessions) for context in self.contexts.values())

    def privilegedStartService(self):
        try:
            service.MultiService.privilegedStartService(self)
        except CannotListenError as e:
            raise SystemExit(f"kaazing-promo: {self.config.path}: cannot listen on {e.interface or '*'}:{e.port} "
                             f"({e.socketError}); stop whatever holds the port or change that endpoint")

    def whenListening(self):
        """
        @return: a L{Deferred} firing with C{{listener name: IListeningPort}}
            once every listener listens (tests and benchmarks use port 0).
        """
        names = [listener.name for listener in self.config.listeners]
        waiting = [whenListening(self.getServiceNamed(name)) for name in names]
        return defer.gatherResults(waiting).addCallback(lambda ports: dict(zip(names, ports)))

    def startService(self):
        clients = raiseOpenFilesLimit()
        if self.secrets.source and self.secrets.source.startswith("inline"):
            if self.config.demo:
                log.info("demo configuration (demo = true in {path}): broker secrets are inline; in production "
                         "use secrets_file and remove demo = true", path=self.config.path)
            else:
                log.warn("broker secrets are inline in {path}; use secrets_file in production", path=self.config.path)
        for listener in self.config.listeners:
            log.info("listener {name}: {protocol} on {endpoint}, auth {auth}, promotion {mode}{anonymous}",
                     name=listener.name, protocol=listener.protocol, endpoint=listener.endpoint,
                     auth=listener.auth, mode=self.config.promotion.mode,
                     anonymous=(" (anonymous clients get the consolidated identity)"
                                if listener.auth == "none" and self.config.promotion.mode == "consolidated"
                                else ""))
        log.info("open-files limit allows about {clients} clients", clients=clients)
        cookies = [listener.name for listener in self.config.listeners
                   if listener.protocol == "websocket" and listener.auth == "required" and listener.session_ttl]
        if self.ephemeralKey and cookies:
            log.info("session cookies of {listeners} are signed with a key made at this start: after a restart "
                     "every browser logs in with its password again; set key_file to keep them",
                     listeners=", ".join(cookies))
        service.MultiService.startService(self)
        self._probing = self.brokerConnector.probe(self.startCache).addCallback(self._probed)

    def stopService(self):
        """
        Stop accepting, close every client with 320 CONNECTION_FORCED, and
        wait for them for at most C{drain_timeout} seconds.
        """
        stopped = service.MultiService.stopService(self)
        drained = defer.gatherResults(
            [context.drain("gateway shutting down") for context in self.contexts.values()])
        drained.addTimeout(self.config.drain_timeout, self.reactor)
        drained.addErrback(lambda failure: failure.trap(defer.TimeoutError, defer.CancelledError,
                                                        defer.FirstError))
        return defer.gatherResults([stopped, drained, self._probing])

    def _probed(self, answered):
        if answered:
            log.info("broker {endpoint} answered", endpoint=self.brokerConnector.descriptions[0])
        else:
            log.warn("broker {endpoints} did not answer; clients will be refused until it does",
                     endpoints=", ".join(self.brokerConnector.descriptions))


class StopOnSigterm(service.Service):
    """
    SIGTERM (C{systemctl stop}, C{podman stop}) is how the gateway is meant
    to stop: the reactor stops, which runs L{GatewayService.stopService}
    (Close 320 to every client, then the drain), and twistd exits 0.
    twistd's own handler stops the same way but then re-raises the signal,
    so that a drained, clean stop would end as "killed by SIGTERM" (143).
    SIGINT keeps twistd's handler: a Ctrl-C at a terminal still says so.
    """

    _stopping = False

    def __init__(self, reactor):
        self._reactor = reactor

    def startService(self):
        service.Service.startService(self)
        # After startup, once twistd's reactor has installed its handlers.
        self._reactor.callWhenRunning(signal.signal, signal.SIGTERM, self._received)

    def _received(self, number, frame):
        if self._stopping:
            log.info("SIGTERM again: already stopping (draining for at most drain_timeout)")
            return
        self._stopping = True
        log.info("SIGTERM: stopping; clients get 320 CONNECTION_FORCED")
        self._reactor.callFromThread(self._reactor.stop)


def makeService(options):
    """
    @return: the L{GatewayService}; a configuration error exits with one line.
    """
    from twisted.internet import reactor
    try:
        config = loadConfig(options["config"], options["apigw-dir"])
        gateway = GatewayService(config, reactor, apigwDir=options["apigw-dir"], freezeHeap=True)
        if options["audit-json"]:
            AuditJSONService(options["audit-json"]).setServiceParent(gateway)
        StopOnSigterm(reactor).setServiceParent(gateway)
        return gateway
    except ConfigError as e:
        raise SystemExit(f"kaazing-promo: {e}")
