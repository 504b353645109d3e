"""
The avatar every checker vouches for, and the realm that hands it out.
"""

import attr
from twisted.cred.portal import IRealm
from zope.interface import implementer

from kaazing_promo.interfaces import IGatewayUser


@implementer(IGatewayUser)
@attr.s(frozen=True, slots=True)
class GatewayUser:
    """
    An authenticated person.  Checkers return one as their avatar ID.
    """

    user = attr.ib(converter=str)
    groups = attr.ib(default=frozenset(), converter=frozenset)
    access_profiles = attr.ib(default=frozenset(), converter=frozenset)
    expires = attr.ib(default=None)
    realm = attr.ib(default="internal")


ANONYMOUS = GatewayUser("anonymous", realm="anonymous")


@implementer(IRealm)
class GatewayRealm:
    """
    Hands out the L{GatewayUser} a checker vouched for as the
    L{IGatewayUser} avatar.
    """

    def requestAvatar(self, avatarId, mind, *interfaces):
        if IGatewayUser not in interfaces:
            raise NotImplementedError("kaazing-promo avatars provide only IGatewayUser")
        return IGatewayUser, IGatewayUser(avatarId), lambda: None
