"""
The one module that knows txredisapi: a gateway's connection to the
cluster's Redis.

txredisapi's L{txredisapi.RedisFactory} connects through any Twisted client
endpoint (so C{tls:} works), authenticates, reconnects with a backoff after
a loss, and times out replies.  Its own handler, asked while no connection
is up, waits for the next one; a login must not wait for Redis, so
L{RedisLink} sends each command on a connection that is up, or fails at
once with L{SharedStateUnavailable}.  Only the factory's documented pool
(C{pool}) and its protocols' command methods are used.
"""

import txredisapi
from twisted.application import service
from twisted.internet import defer
from twisted.internet.endpoints import clientFromString
from twisted.logger import Logger

from kaazing_promo.errors import ConfigError, SharedStateUnavailable

#: Longest wait between two attempts to reach Redis again, in seconds.
MAX_RECONNECT_DELAY = 5.0

log = Logger(namespace="kaazing_promo.cluster")


class RedisLink(service.Service):
    """
    One connection to Redis, kept up while the service runs.

    @param reactor: the reactor the endpoint connects with.
    @param description: the Twisted client endpoint string.
    @param password: a L{kaazing_promo.secrets.Secret}, or L{None}.
    @param username: the Redis ACL user name, or L{None}.
    @param timeout: seconds a reply may take; past it the connection is
        dropped (and made again) and the command fails.
    @param where: the configuration key named in errors.
    @raise ConfigError: C{description} is not a usable endpoint string.
    """

    name = "cluster-redis"

    def __init__(self, reactor, description, password=None, username=None, timeout=2.0,
                 where="[cluster] key 'redis'"):
        try:
            self._endpoint = clientFromString(reactor, description)
        except (ValueError, TypeError, KeyError) as e:
            raise ConfigError(f"{where}: {description!r} is not a usable client endpoint string ({e}); "
                              "e.g. \"tcp:host=127.0.0.1:port=6379\"")
        self.description = description
        self._factory = txredisapi.RedisFactory(
            description, None, 1, isLazy=True, password=None if password is None else password.reveal(),
            replyTimeout=timeout, username=username)
        self._factory.maxDelay = MAX_RECONNECT_DELAY
        self._factory.deferred.addErrback(self._refused)

    def __repr__(self):
        return f"<RedisLink {self.description} {'up' if self.up else 'down'}>"

    @property
    def up(self):
        """
        Whether a connection to Redis is up now.
        """
        return any(connection.connected for connection in self._factory.pool)

    def startService(self):
        service.Service.startService(self)
        self._factory.startConnecting(self._endpoint)

    def stopService(self):
        service.Service.stopService(self)
        return self._factory.disconnect()

    def _refused(self, failure):
        # Only a refused AUTH fails the factory's Deferred: txredisapi then
        # stops trying, as a wrong password stays wrong.
        log.error("cluster: Redis at {endpoint} refused the gateway ({why}); fix [cluster] username or "
                  "password and restart", endpoint=self.description, why=failure.getErrorMessage())

    def _connection(self):
        for connection in self._factory.pool:
            if connection.connected:
                return connection
        raise SharedStateUnavailable(f"Redis at {self.description} is not connected")

    def call(self, method, *args, **kwargs):
        """
        Send one command.

        @param method: the name of a txredisapi protocol command method
            (C{"set"}, C{"get"}, C{"eval"}, C{"ping"}, ...).
        @return: a L{Deferred} firing with the reply; failing with
            L{SharedStateUnavailable} when Redis is not connected, does not
            answer in time or answers with an error.
        """
        try:
            d = getattr(self._connection(), method)(*args, **kwargs)
        except (SharedStateUnavailable, txredisapi.RedisError) as e:
            return defer.fail(_unavailable(e, self.description))
        return d.addErrback(self._failed)

    def _failed(self, failure):
        if failure.check(txredisapi.ResponseError):
            # Not an outage: a reply the gateway did not expect.
            log.error("cluster: Redis at {endpoint} answered with an error: {why}", endpoint=self.description,
                      why=failure.getErrorMessage())
        failure.trap(txredisapi.RedisError, SharedStateUnavailable)
        raise _unavailable(failure.value, self.description)

    def probe(self):
        """
        @return: a L{Deferred} firing with C{(up, detail)}; never failing.
        """
        def answered(reply):
            return True, f"Redis at {self.description} answers"

        def failed(failure):
            return False, str(failure.value)
        return self.call("ping").addCallbacks(answered, failed)


def _unavailable(error, description):
    if isinstance(error, SharedStateUnavailable):
        return error
    return SharedStateUnavailable(f"Redis at {description} did not answer ({type(error).__name__}: {error})")
