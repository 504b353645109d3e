"""
Single use, in one process: the nonces of tickets and broker tokens that
have been spent, each remembered only until what it names expires.
"""

import heapq

from twisted.internet import defer
from zope.interface import implementer

from kaazing_promo.interfaces import INonceLedger


@implementer(INonceLedger)
class SpentNonces:
    """
    The L{INonceLedger} of one process (the gateways of a cluster share
    L{kaazing_promo.cluster.shared.RedisNonceLedger} instead).

    @param clock: an L{twisted.internet.interfaces.IReactorTime}.
    """

    def __init__(self, clock):
        self._clock = clock
        self._spent = {}
        self._byExpiry = []

    def __len__(self):
        return len(self._spent)

    def spend(self, nonce, ttl):
        now = self._clock.seconds()
        # A spent nonce need only be remembered until what it names expires:
        # after that the expiry check refuses it anyway.
        while self._byExpiry and self._byExpiry[0][0] <= now:
            _, old = heapq.heappop(self._byExpiry)
            del self._spent[old]
        if nonce in self._spent:
            return defer.succeed(False)
        self._spent[nonce] = now + ttl
        heapq.heappush(self._byExpiry, (now + ttl, nonce))
        return defer.succeed(True)
