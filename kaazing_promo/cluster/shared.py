"""
What the gateways of a cluster keep in Redis.  Every key starts with the
cluster's prefix and carries a TTL: Redis holds nothing for ever.

  - C{<prefix>fail:host:<host>}: sorted set of the host's failed logins
    (scored by time), and C{<prefix>fail:user:<digest>} of the hosts that
    failed on a user, for the sliding window; C{<prefix>flight:<host>}: the
    host's attempts in flight, each scored by when it is given up for lost
    (a gateway that dies leaves nothing for longer than that);
    C{<prefix>known:<digest>:<host>}: the user logged in from the host.
    Reading and counting an attempt in is one script, and so is ending it:
    each is atomic, so two gateways never both admit the last attempt.
  - C{<prefix>ticket:<nonce>}, C{<prefix>token:<nonce>}: a spent nonce
    (C{SET NX PX}), until what it names expires.
  - C{<prefix>grant:<tag>}: a token's grant, for the broker's later questions.

User names appear only as digests: a key never holds client text but the
source host's address.  Times are Redis's own (C{TIME}), so gateways whose
clocks differ still agree on the window.
"""

import hashlib
import json
import os

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from kaazing_promo.errors import SharedStateUnavailable
from kaazing_promo.interfaces import ABANDONED, FAILED, SUCCEEDED, IFailureStore, IGrantStore, INonceLedger, Standing
from kaazing_promo.token.permissions import Grant

log = Logger(namespace="kaazing_promo.cluster")

#: Seconds an attempt in flight is counted at most (a gateway that died
#: while checking it cannot end it).
FLIGHT_TTL = 60.0

# Effects replication lets a script write after TIME (the default from Redis 7 on).
_NOW = """
redis.replicate_commands()
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: host failures, host flight, user hosts, known; ARGV: window ms, attempt id, flight ttl ms.
_BEGIN = _NOW + """
local window = tonumber(ARGV[1])
local function recent(key)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  local wait = 0
  if oldest[2] then wait = tonumber(oldest[2]) + window - now end
  return redis.call('ZCARD', key), wait
end
local failed, failedWait = recent(KEYS[1])
local users, userWait = recent(KEYS[3])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local inFlight = redis.call('ZCARD', KEYS[2])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return {failed, failedWait, inFlight, users, userWait, redis.call('EXISTS', KEYS[4])}
"""

# KEYS as _BEGIN; ARGV: window ms, attempt id, outcome, host, known ttl ms.
_END = _NOW + f"""
redis.call('ZREM', KEYS[2], ARGV[2])
if ARGV[3] == '{FAILED}' or ARGV[3] == '{ABANDONED}' then
  redis.call('ZADD', KEYS[1], now, ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
if ARGV[3] == '{FAILED}' then
  redis.call('ZADD', KEYS[3], now, ARGV[4])
  redis.call('PEXPIRE', KEYS[3], ARGV[1])
elseif ARGV[3] == '{SUCCEEDED}' then
  redis.call('SET', KEYS[4], '1', 'PX', ARGV[5])
end
return 1
"""


def _digest(text):
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _milliseconds(seconds):
    return max(1, int(seconds * 1000))


@implementer(IFailureStore)
class RedisFailureStore:
    """
    The failed-login record every gateway of a cluster shares.

    @param link: the L{kaazing_promo.cluster.redislink.RedisLink}.
    @param prefix: the cluster's key prefix.
    @param window: the sliding window, in seconds (as L{FailureWindow}'s).
    @param knownTTL: seconds a successful login from a host is remembered.
    """

    def __init__(self, link, prefix, window=60.0, knownTTL=30 * 86400.0):
        self._link = link
        self._prefix = prefix
        self.window = window
        self.knownTTL = knownTTL

    def _keys(self, host, user):
        user = _digest(user)
        return [f"{self._prefix}fail:host:{host}", f"{self._prefix}flight:{host}",
                f"{self._prefix}fail:user:{user}", f"{self._prefix}known:{user}:{host}"]

    def begin(self, host, user):
        handle = os.urandom(8).hex()
        d = self._link.call("eval", _BEGIN, self._keys(host, user),
                            [_milliseconds(self.window), handle, _milliseconds(FLIGHT_TTL)])

        def standing(reply):
            failed, failedWait, inFlight, userHosts, userWait, known = reply
            return Standing(host, user, failed, failedWait / 1000.0, inFlight, userHosts, userWait / 1000.0,
                            bool(known), shared=True, handle=handle)
        return d.addCallback(standing)

    def end(self, standing, outcome=None):
        return self._link.call("eval", _END, self._keys(standing.host, standing.user),
                               [_milliseconds(self.window), standing.handle, outcome or "none", standing.host,
                                _milliseconds(self.knownTTL)])


@implementer(IFailureStore)
class FallbackFailureStore:
    """
    The cluster's record while Redis answers, this process's own while it
    does not: logins go on, limited per process, and the log says so once
    per outage.

    @param shared: the L{RedisFailureStore}.
    @param local: this process's L{kaazing_promo.auth.limits.FailureWindow}.
    """

    def __init__(self, shared, local):
        self.shared = shared
        self.local = local
        self.degraded = False

    def begin(self, host, user):
        d = self.shared.begin(host, user)
        d.addCallbacks(self._sharedAnswered, self._sharedFailed, errbackArgs=(host, user))
        return d

    def _sharedAnswered(self, standing):
        if self.degraded:
            self.degraded = False
            log.info("cluster: Redis answers again; failed-login limits are counted across the cluster again")
        return standing

    def _sharedFailed(self, failure, host, user):
        failure.trap(SharedStateUnavailable)
        if not self.degraded:
            self.degraded = True
            log.warn("cluster: {why}; failed-login limits are counted per process until it answers again",
                     why=failure.value)
        return self.local.begin(host, user)

    def end(self, standing, outcome=None):
        if not standing.shared:
            return self.local.end(standing, outcome)
        # Lost with Redis: the attempt leaves the flight when its entry expires.
        d = defer.maybeDeferred(self.shared.end, standing, outcome)
        return d.addErrback(lambda failure: failure.trap(SharedStateUnavailable))


@implementer(INonceLedger)
class RedisNonceLedger:
    """
    Single use across the cluster: a nonce is spent by whichever gateway
    sets its key first.

    @param kind: what the nonces are of (C{"ticket"}, C{"token"}), in the key.
    """

    def __init__(self, link, prefix, kind):
        self._link = link
        self._prefix = f"{prefix}{kind}:"

    def spend(self, nonce, ttl):
        d = self._link.call("set", self._prefix + nonce, "1", pexpire=_milliseconds(ttl), only_if_not_exists=True)
        return d.addCallback(lambda reply: reply == "OK")


@implementer(IGrantStore)
class RedisGrantStore:
    """
    Token grants by tag, for whichever gateway the broker asks.
    """

    def __init__(self, link, prefix):
        self._link = link
        self._prefix = f"{prefix}grant:"

    def keep(self, tag, grant, ttl):
        value = json.dumps([sorted(map(list, grant.principals)), grant.vhost], separators=(",", ":"))
        return self._link.call("set", self._prefix + tag, value, pexpire=_milliseconds(ttl))

    def find(self, tag):
        return self._link.call("get", self._prefix + tag).addCallback(_grantOf)


def _grantOf(value):
    if value is None:
        return None
    try:
        principals, vhost = json.loads(value)
        return Grant(frozenset((kind, name) for kind, name in principals), vhost)
    except (ValueError, TypeError):
        return None
