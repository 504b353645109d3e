"""
What every connection of one listener shares.
"""

import collections

from twisted.internet import defer

from kaazing_promo.amqp.session import GatewaySession
from kaazing_promo.auth.avatar import ANONYMOUS
from kaazing_promo.transport.address import hostOf


class ListenerContext:
    """
    One listener's settings and collaborators, its live sessions and their
    limits, and the factory of its sessions.

    @param gate: the listener's L{kaazing_promo.auth.gate.LoginGate}, or
        L{None} when it takes anonymous clients (C{auth = "none"}).
    @param lifetime: the L{kaazing_promo.auth.lifetime.SessionLifetime}, or L{None}.
    """

    anonymous = ANONYMOUS

    def __init__(self, listener, promoter, brokerConnector, startCache, clock, gate, lifetime=None):
        self.listener = listener
        self.promoter = promoter
        self.brokerConnector = brokerConnector
        self.startCache = startCache
        self.clock = clock
        self.gate = gate
        self.lifetime = lifetime
        self.sessions = set()
        #: The most sessions open at once since L{takePeak} was last called.
        self.peak = 0
        self._perSource = collections.Counter()
        self._idle = []

    @property
    def keepsCredentials(self):
        return self.lifetime is not None and self.lifetime.keepsCredentials

    def admits(self, source):
        """
        X5: whether one more connection from C{source} fits the listener's
        C{max_connections} and C{max_connections_per_source}.
        """
        listener = self.listener
        if listener.max_connections and len(self.sessions) >= listener.max_connections:
            return False
        if listener.max_connections_per_source and \
                self._perSource[hostOf(source)] >= listener.max_connections_per_source:
            return False
        return True

    def makeSession(self, source, avatar=None, ownStart=False, gate=None, credentials=None):
        session = GatewaySession(
            self.listener, self.promoter, self.brokerConnector, self.clock, self.startCache,
            avatar=avatar, ownStart=ownStart, gate=gate, source=source, onFinished=self._finished,
            lifetime=self.lifetime, credentials=credentials if self.keepsCredentials else None)
        self.sessions.add(session)
        if len(self.sessions) > self.peak:
            self.peak = len(self.sessions)
        self._perSource[hostOf(source)] += 1
        return session

    def takePeak(self):
        """
        @return: the most sessions open at once since the last call; the
            count starts again from those open now.
        """
        peak, self.peak = self.peak, len(self.sessions)
        return peak

    def _finished(self, session):
        self.sessions.discard(session)
        host = hostOf(session.source)
        self._perSource[host] -= 1
        if self._perSource[host] <= 0:
            del self._perSource[host]
        if not self.sessions:
            idle, self._idle = self._idle, []
            for d in idle:
                d.callback(None)

    def drain(self, reason):
        """
        Close every session with 320 CONNECTION_FORCED.

        @return: a L{Deferred} firing once none is left.
        """
        for session in list(self.sessions):
            session.forceClose(reason)
        if not self.sessions:
            return defer.succeed(None)
        d = defer.Deferred()
        self._idle.append(d)
        return d

    def describe(self, avatar, source):
        """
        The C{whoami} answer: the gateway user and what the broker will see.
        """
        try:
            brokerUser = self.promoter.authorize(avatar)
        except Exception:
            brokerUser = None
        return {
            "user": avatar.user,
            "broker_user": brokerUser,
            "vhost": self.promoter.vhost(avatar, "/"),
            "groups": sorted(avatar.groups),
        }
