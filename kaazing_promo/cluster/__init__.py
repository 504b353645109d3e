"""
Several gateways acting as one (C{[cluster]}).

Gateways of one cluster share a signing key, so that a ticket or a broker
token one of them signs is good at any other, and keep what must be
counted or spent once in one Redis server: the failed-login counters, the
redeemed tickets and tokens, and the grants the broker's later questions
about a token's connection are answered from.  Without C{[cluster]} this
package is never imported and every process keeps its own.
"""


from twisted.application import service
from twisted.application.internet import TimerService
from twisted.logger import Logger

from kaazing_promo.auth.limits import FailureWindow
from kaazing_promo.cluster.redislink import RedisLink
from kaazing_promo.cluster.shared import FallbackFailureStore, RedisFailureStore, RedisGrantStore, RedisNonceLedger
from kaazing_promo.secrets import readSecret, readSigningKey

#: Seconds between two renewals of the grants of open token-mode connections.
GRANT_RENEWAL = 60.0

log = Logger(namespace="kaazing_promo.cluster")

_KEY_CONTEXT = b"kaazing-promo cluster signing key v1"


def loadClusterSecrets(config, environ=None):
    """
    Read the cluster's shared key and Redis password from where
    C{[cluster]} says they are.

    @param config: the L{kaazing_promo.config.Config}, which has a C{cluster}.
    @return: C{(signing key (L{bytes}), password (L{kaazing_promo.secrets.Secret} or L{None}))}.
    @raise ConfigError: a source is missing, unreadable by its owner only,
        empty, or the key is too short.
    """
    cluster = config.cluster
    keyKey = "key_file" if cluster.key_file is not None else "key_env"
    where = f"{config.path}: [cluster] key '{keyKey}'"
    key = readSecret(where, cluster.key_file, cluster.key_env, environ)
    passwordKey = "password_file" if cluster.password_file is not None else "password_env"
    password = readSecret(f"{config.path}: [cluster] key '{passwordKey}'",
                          cluster.password_file, cluster.password_env, environ)
    # Every gateway of the cluster is given the same key text.
    signingKey = readSigningKey(f"{where} (the shared key)", key.reveal(), _KEY_CONTEXT)
    return signingKey, password


class Cluster(service.MultiService):
    """
    One gateway process's part of a cluster: its connection to Redis and
    the shared stores the authenticator, the ticket book and the token
    book use.

    @param settings: the L{kaazing_promo.config.Cluster}.
    @param password: the Redis password (L{kaazing_promo.secrets.Secret}) or L{None}.
    @ivar failures: the L{IFailureStore} (the cluster's, this process's while Redis is down).
    @ivar tickets: the L{INonceLedger} of redeemed tickets.
    @ivar tokens: the L{INonceLedger} of redeemed broker tokens.
    @ivar grants: the L{IGrantStore} of token grants.
    """

    def __init__(self, settings, reactor, password=None):
        service.MultiService.__init__(self)
        self.setName("cluster")
        self.settings = settings
        self.link = RedisLink(reactor, settings.redis, password, settings.username, settings.timeout)
        self.link.setServiceParent(self)
        prefix = settings.prefix
        self.failures = FallbackFailureStore(RedisFailureStore(self.link, prefix), FailureWindow(reactor))
        self.tickets = RedisNonceLedger(self.link, prefix, "ticket")
        self.tokens = RedisNonceLedger(self.link, prefix, "token")
        self.grants = RedisGrantStore(self.link, prefix)

    def keepGrants(self, book, grantsNow, clock, interval=GRANT_RENEWAL):
        """
        Renew, every C{interval} seconds, the grants of the token-mode
        connections this process holds open, so that the broker's
        questions about them are answered by any gateway for as long as
        they live.

        @param book: the L{kaazing_promo.interfaces.ITokenBook}.
        @param grantsNow: returns the grants of the connections open now.
        """
        renewal = TimerService(interval, lambda: book.keep(grantsNow()))
        renewal.clock = clock
        renewal.setName("cluster-grants")
        renewal.setServiceParent(self)

    def probe(self):
        """
        @return: a L{Deferred} firing with C{(ok, detail)} for C{/readyz}.
        """
        return self.link.probe()

    def startService(self):
        log.info("cluster: sharing failed-login counts, tickets and tokens through Redis at {endpoint} "
                 "(keys {prefix}*)", endpoint=self.settings.redis, prefix=self.settings.prefix)
        service.MultiService.startService(self)
