"""
What the login protection remembers about hosts and user names: failed
logins in a sliding window, and which hosts a user has logged in from.

Everything here is per process and bounded: a key nobody asks about again
is swept once its window has passed, and the known hosts are a bounded
least-recently-used table.  The gateways of a cluster share the same record
in Redis instead (L{kaazing_promo.cluster.shared.RedisFailureStore}), and
fall back to this one while Redis cannot be asked.
"""

import collections

from twisted.internet import defer
from zope.interface import implementer

from kaazing_promo.interfaces import ABANDONED, FAILED, SUCCEEDED, IFailureStore, Standing


@implementer(IFailureStore)
class FailureWindow:
    """
    One process's L{IFailureStore}: failed logins of the last C{window}
    seconds, per source host and, for each user name, per distinct host
    that failed on it; attempts in flight per host; the L{KnownHosts}.

    @param clock: an L{twisted.internet.interfaces.IReactorTime}.
    """

    #: Past this many keys, one sweep drops every key whose window is over.
    sweepAt = 1024

    def __init__(self, clock, window=60.0, knownHosts=None):
        self._clock = clock
        self.window = window
        self._hosts = {}
        self._users = {}
        self._sweepAt = self.sweepAt
        self._inFlight = collections.Counter()
        self.knownHosts = knownHosts if knownHosts is not None else KnownHosts(clock)

    def begin(self, host, user):
        failed, failedWait = self.hostFailures(host)
        userHosts, userWait = self.userHosts(user)
        standing = Standing(host, user, failed, failedWait, self._inFlight[host], userHosts, userWait,
                            self.knownHosts.knows(user, host))
        self._inFlight[host] += 1
        return defer.succeed(standing)

    def end(self, standing, outcome=None):
        host = standing.host
        self._inFlight[host] -= 1
        if self._inFlight[host] <= 0:
            del self._inFlight[host]
        if outcome == FAILED:
            self.record(host, standing.user)
        elif outcome == ABANDONED:
            self.record(host)
        elif outcome == SUCCEEDED:
            self.knownHosts.remember(standing.user, host)

    def record(self, host, user=None):
        """
        One failed login from C{host}, for C{user} when the realm was asked
        about it (an attempt abandoned before it was checked names none).
        """
        now = self._clock.seconds()
        self._hosts.setdefault(host, collections.deque()).append(now)
        if user is not None:
            hosts = self._users.setdefault(user, collections.OrderedDict())
            hosts.pop(host, None)
            hosts[host] = now
        if len(self._hosts) + len(self._users) >= self._sweepAt:
            for key in list(self._hosts):
                self.hostFailures(key)
            for key in list(self._users):
                self.userHosts(key)
            self._sweepAt = max(self.sweepAt, 2 * (len(self._hosts) + len(self._users)))

    def hostFailures(self, host):
        """
        @return: C{(failures from host in the window, seconds until the
            oldest of them leaves it)}.
        """
        now = self._clock.seconds()
        times = self._hosts.get(host)
        if times is None:
            return 0, 0.0
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._hosts[host]
            return 0, 0.0
        return len(times), times[0] + self.window - now

    def userHosts(self, user):
        """
        @return: C{(distinct hosts that failed on user in the window,
            seconds until the oldest of them leaves it)}.
        """
        now = self._clock.seconds()
        hosts = self._users.get(user)
        if hosts is None:
            return 0, 0.0
        while hosts and next(iter(hosts.values())) <= now - self.window:
            hosts.popitem(last=False)
        if not hosts:
            del self._users[user]
            return 0, 0.0
        return len(hosts), next(iter(hosts.values())) + self.window - now


class KnownHosts:
    """
    The hosts each user has logged in from successfully: OWASP's "device
    cookie" idea, kept by the gateway for clients that carry no cookie (an
    AMQP client), so that guessing at a user's password from elsewhere never
    keeps that user out of the places they log in from.

    @param ttl: seconds a successful login is remembered.
    @param size: the most C{(user, host)} pairs remembered; past it the
        least recently used go first.
    """

    def __init__(self, clock, ttl=30 * 86400.0, size=100_000):
        self._clock = clock
        self.ttl = ttl
        self.size = size
        self._known = collections.OrderedDict()

    def remember(self, user, host):
        key = (user, host)
        self._known.pop(key, None)
        self._known[key] = self._clock.seconds() + self.ttl
        while len(self._known) > self.size:
            self._known.popitem(last=False)

    def knows(self, user, host):
        expires = self._known.get((user, host))
        if expires is None:
            return False
        if expires <= self._clock.seconds():
            del self._known[(user, host)]
            return False
        return True
