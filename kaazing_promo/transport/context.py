"""
What every connection of one listener shares.
"""

from kaazing_promo.amqp.session import GatewaySession
from kaazing_promo.auth.avatar import ANONYMOUS


class ListenerContext:
    """
    One listener's settings and collaborators, and the factory of its
    sessions.

    @param gate: the listener's L{kaazing_promo.auth.gate.LoginGate}, or
        L{None} when it takes anonymous clients (C{auth = "none"}).
    """

    anonymous = ANONYMOUS

    def __init__(self, listener, promoter, brokerConnector, startCache, clock, gate):
        self.listener = listener
        self.promoter = promoter
        self.brokerConnector = brokerConnector
        self.startCache = startCache
        self.clock = clock
        self.gate = gate
        self.sessions = set()

    def makeSession(self, source, avatar=None, ownStart=False, gate=None):
        session = GatewaySession(
            self.listener, self.promoter, self.brokerConnector, self.clock, self.startCache,
            avatar=avatar, ownStart=ownStart, gate=gate, source=source,
            onFinished=self.sessions.discard)
        self.sessions.add(session)
        return session

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
