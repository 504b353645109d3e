"""
What every connection of one listener shares.
"""

import collections

from twisted.internet import defer
from zope.interface import implementer

from kaazing_promo.amqp.deadline import HandshakeDeadline
from kaazing_promo.amqp.session import GatewaySession
from kaazing_promo.interfaces import IConnectionObserver, LoginAttempt
from kaazing_promo.ops.audit import auditConnection, auditOpen
from kaazing_promo.transport.address import hostOf


class Admission:
    """
    One connection's place in its listener's C{max_connections} and
    C{max_connections_per_source}, taken when it is accepted (before it
    sends anything) and given back once when it ends.
    """

    def __init__(self, context, host):
        self._context = context
        self.host = host

    def release(self):
        context, self._context = self._context, None
        if context is not None:
            context._released(self.host)


def _userOf(session):
    return None if session.avatar is None else session.avatar.user


@implementer(IConnectionObserver)
class ListenerContext:
    """
    One listener's settings and collaborators, its live connections and
    their limits, and the factory of its sessions.

    @param authenticator: the process's L{IAuthenticator}.
    @param lifetime: the L{kaazing_promo.auth.lifetime.SessionLifetime}, or L{None}.
    """

    def __init__(self, listener, promoter, brokerConnector, startCache, clock, authenticator, lifetime=None):
        self.listener = listener
        self.promoter = promoter
        self.brokerConnector = brokerConnector
        self.startCache = startCache
        self.clock = clock
        self.authenticator = authenticator
        self.lifetime = lifetime
        self.sessions = set()
        #: The most sessions open at once since L{takePeak} was last called.
        self.peak = 0
        #: Connections accepted and not yet closed, sessions or not.
        self.connections = 0
        self._perSource = collections.Counter()
        self._idle = []

    @property
    def anonymous(self):
        """
        The avatar of an C{auth = "none"} listener's clients.
        """
        return self.authenticator.anonymous

    @property
    def requiresLogin(self):
        return self.listener.auth != "none"

    @property
    def proxied(self):
        """
        Whether clients arrive through the PROXY protocol (C{haproxy:}):
        their address is known only once its header is read.
        """
        return self.listener.endpoint.startswith("haproxy:")

    @property
    def keepsCredentials(self):
        return self.lifetime is not None and self.lifetime.keepsCredentials

    def startDeadline(self, expired):
        """
        @return: the L{HandshakeDeadline} of a connection accepted now.
        """
        return HandshakeDeadline(self.clock, self.listener.handshake_timeout, expired)

    def admit(self, source):
        """
        X5: take a place for a connection from C{source} in the listener's
        C{max_connections} and C{max_connections_per_source}.

        @return: an L{Admission}, or L{None} when it does not fit (the
            caller closes the connection at once).
        """
        listener = self.listener
        host = hostOf(source)
        if listener.max_connections and self.connections >= listener.max_connections:
            return None
        if listener.max_connections_per_source and self._perSource[host] >= listener.max_connections_per_source:
            return None
        self.connections += 1
        self._perSource[host] += 1
        return Admission(self, host)

    def _released(self, host):
        self.connections -= 1
        self._perSource[host] -= 1
        if self._perSource[host] <= 0:
            del self._perSource[host]

    def loginAttempt(self, source, username=None, password=None, stillThere=None, unusable="no credentials"):
        """
        @return: the L{LoginAttempt} of a client of this listener.
        """
        return LoginAttempt(self.listener, hostOf(source), source, username, password,
                            stillThere or (lambda: True), unusable)

    def makeSession(self, source, avatar=None, ownStart=False, credentials=None):
        session = GatewaySession(
            self.listener, self.promoter, self.brokerConnector, self.clock, self.startCache,
            avatar=avatar, ownStart=ownStart, authenticator=self.authenticator if self.requiresLogin else None,
            source=source, host=hostOf(source), observer=self, keepCredentials=self.keepsCredentials,
            credentials=credentials if self.keepsCredentials else None)
        self.sessions.add(session)
        if len(self.sessions) > self.peak:
            self.peak = len(self.sessions)
        return session

    def takePeak(self):
        """
        @return: the most sessions open at once since the last call; the
            count starts again from those open now.
        """
        peak, self.peak = self.peak, len(self.sessions)
        return peak

    # IConnectionObserver: the audit trail and the X3 lifetime follow each session.

    def opened(self, session):
        auditOpen(self.listener.name, session.source, _userOf(session), session.brokerUser, session.vhost,
                  self.clock.seconds() - session.startedAt)
        if self.lifetime is not None:
            self.lifetime.watch(session)

    def renewed(self, session):
        if self.lifetime is not None:
            self.lifetime.unwatch(session)
            self.lifetime.watch(session)

    def finished(self, session):
        if self.lifetime is not None:
            self.lifetime.unwatch(session)
        started = session.startedAt
        auditConnection(
            self.listener.name, session.source, session.outcome, session.reason, _userOf(session),
            session.brokerUser, session.vhost, 0.0 if started is None else self.clock.seconds() - started,
            session.bytesIn, session.bytesOut)
        self._finished(session)

    def _finished(self, session):
        self.sessions.discard(session)
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
