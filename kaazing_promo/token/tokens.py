"""
Token mode (issue 10): promotion without broker passwords.

The gateway logs each connection in to RabbitMQ with PLAIN, the promoted
broker user and a fresh single-use token as the password; RabbitMQ's
C{rabbitmq_auth_backend_http} asks the gateway's C{[broker_auth]} server
(L{kaazing_promo.token.brokerauth}) whether that token is good, and then what the
connection may do.

A token is C{base64url(claims) "." base64url(mac)}: the claims hold a
128-bit random nonce, the broker user, the expiry, the pinned virtual host
and those of the person's groups and access profiles that the permission
table names; the MAC is HMAC-SHA256 (truncated to 128 bits) under the
book's key.  So whichever process holds the key can check a token (workers
share the key, DESIGN "Workers"; so do the gateways of a cluster), while
single use is an L{INonceLedger}'s: the process's own by default, which
remembers each redeemed nonce until the token would have expired anyway,
or the cluster's with C{[cluster]}.

RabbitMQ's vhost, resource and topic questions carry only the user name and
the tags the user answer gave, not the password.  So the answer to
C{/auth/user} carries, besides the tags of the matching entries, one
I{grant tag} (C{kp_grant_} and 16 hex digits) naming the L{Grant} (the
principals and the pinned vhost) the token carried; the broker hands it back
with every later question of that connection, and the book looks the grant
up by it.  Two connections of one broker user with different groups are
therefore answered each from its own grant.  RabbitMQ turns tags into Erlang
atoms, which are never freed: a grant tag names a I{set of principals}, not
a connection, so their number is bounded by the table, not by traffic.
In a cluster, the broker may ask any gateway: the grant is also kept in an
L{IGrantStore} that every gateway looks a tag up in when it does not know it.
"""

import hashlib
import json
import os

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from kaazing_promo.auth.signed import ClaimSeal, b64encode
from kaazing_promo.auth.spent import SpentNonces
from kaazing_promo.errors import PromotionRefused, SharedStateUnavailable
from kaazing_promo.interfaces import ITokenBook, ITokenPromoter
from kaazing_promo.token.permissions import Grant, PermissionTable
from kaazing_promo.promotion import AMQPIdentity, mappedUser, pinVhost
from kaazing_promo.secrets import Secret

NONCE_BYTES = 16
MAC_BYTES = 16
KEY_BYTES = 32
GRANT_TAG_PREFIX = "kp_grant_"
_VERSION = 1
_MAC_CONTEXT = b"kaazing-promo broker token v1\x00"
# A token (claims and MAC) must fit a Start-Ok, whose frame may not exceed
# AMQP's frame-min-size (4096 bytes) before Tune-Ok; refuse to mint more.
MAX_TOKEN_LENGTH = 2048


def grantTag(grant):
    """
    @return: the tag that names C{grant} (lower case: RabbitMQ lower-cases
        the user answer before it splits the tags).
    """
    canonical = json.dumps([sorted(map(list, grant.principals)), grant.vhost], separators=(",", ":"))
    return GRANT_TAG_PREFIX + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


@implementer(ITokenBook)
class TokenBook:
    """
    Mints and redeems token mode's single-use broker passwords, and holds
    the permission table the broker's questions are answered from.

    @param ttl: seconds a token is valid after it is minted.
    @param key: the HMAC key (L{bytes}); a random one per process by
        default.  Processes that mint for one C{[broker_auth]} server share it.
    @param clock: an L{IReactorTime}; wall-clock seconds, as processes that
        share a key must agree on expiry.  The global reactor by default.
    @param randomBytes: returns that many random bytes (tests pin it).
    @param spent: the L{INonceLedger} of redeemed tokens; this process's own by default.
    @param shared: the cluster's L{IGrantStore}, or L{None} outside a cluster.
    @param grantTTL: seconds a grant is kept in C{shared} beyond its token's
        life (L{keep} extends it while connections use it).
    """

    log = Logger(namespace="kaazing_promo.broker_auth")

    def __init__(self, ttl=10.0, key=None, clock=None, randomBytes=os.urandom, permissions=(), spent=None,
                 shared=None, grantTTL=300.0):
        if clock is None:
            from twisted.internet import reactor as clock
        self.ttl = ttl
        self.clock = clock
        self._seal = ClaimSeal(key if key is not None else os.urandom(KEY_BYTES), _MAC_CONTEXT, MAC_BYTES)
        self._random = randomBytes
        self.permissions = PermissionTable(permissions)
        self._spent = spent if spent is not None else SpentNonces(clock)
        self._shared = shared
        self.grantTTL = grantTTL
        self._grants = {}

    def __repr__(self):
        return f"<TokenBook ttl={self.ttl!r} redeemed={len(self._spent)} grants={len(self._grants)}>"

    def setPermissions(self, permissions):
        self.permissions = PermissionTable(permissions)

    # -- the promoter's side ----------------------------------------------

    def mint(self, brokerUser, avatar, vhost=None):
        principals = self.permissions.relevantPrincipals(avatar)
        claims = {
            "v": _VERSION,
            "n": b64encode(self._random(NONCE_BYTES)),
            "u": brokerUser,
            "e": int((self.clock.seconds() + self.ttl) * 1000),
            "h": vhost,
            "p": sorted(map(list, principals)),
        }
        token = self._seal.seal(claims)
        if len(token) > MAX_TOKEN_LENGTH:
            raise PromotionRefused(f"token for broker user {brokerUser!r} would be {len(token)} bytes long; "
                                   f"fewer [[permissions]] principals or a shorter user name fit")
        return Secret(token)

    # -- the broker's side ------------------------------------------------

    def redeem(self, username, password):
        claims = self._verified(password)
        if claims is None:
            return defer.succeed(self._refused(username, "not a token this gateway minted"))
        now = self.clock.seconds()
        expires = claims["e"] / 1000.0
        if now >= expires:
            return defer.succeed(self._refused(username, "token expired"))
        # Spent on its first ask, whatever the answer: a token presented
        # under another name is stolen, and must not get a second try.
        d = self._spent.spend(claims["n"], expires - now)
        d.addCallback(self._spending, username, claims)
        return d.addErrback(self._unknowable, username)

    def _spending(self, first, username, claims):
        if not first:
            return self._refused(username, "token already used")
        if claims["u"] != username:
            return self._refused(username, "token was minted for another broker user")
        grant = Grant(frozenset(map(tuple, claims["p"])), claims["h"])
        if not self.permissions.applies(grant):
            return self._refused(username, "no [[permissions]] entry applies to its groups any more")
        tag = grantTag(grant)
        known = self._grants.setdefault(tag, grant)
        if known != grant:
            return self._refused(username, "grant tag collision")
        if self._shared is None:
            return grant
        # The broker's next question about this connection may go to another gateway.
        return self._shared.keep(tag, grant, self.ttl + self.grantTTL).addCallback(lambda _: grant)

    def _unknowable(self, failure, username):
        failure.trap(SharedStateUnavailable)
        return self._refused(username, f"{failure.value}; token mode refuses logins until the cluster's "
                                       "Redis answers again")

    def _verified(self, password):
        claims = self._seal.open(password, MAX_TOKEN_LENGTH)
        # Signed by us: the structure is ours, but a key shared with a newer
        # version could sign another shape.
        if not (claims is not None and claims.get("v") == _VERSION and isinstance(claims.get("n"), str)
                and isinstance(claims.get("u"), str) and isinstance(claims.get("e"), int)
                and isinstance(claims.get("h"), (str, type(None))) and isinstance(claims.get("p"), list)
                and all(isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p)
                        for p in claims["p"])):
            return None
        return claims

    def _refused(self, username, reason):
        self.log.info("broker_auth: login of broker user {user!r} denied: {reason}", user=username, reason=reason)
        return None

    def grantFor(self, tags):
        named = [tag for tag in (tags or "").split() if tag.startswith(GRANT_TAG_PREFIX)]
        if len(named) != 1:
            return defer.succeed(None)
        tag = named[0]
        grant = self._grants.get(tag)
        if grant is not None or self._shared is None:
            return defer.succeed(grant)
        d = self._shared.find(tag)
        d.addCallback(self._found, tag)
        return d.addErrback(self._notFound, tag)

    def _found(self, grant, tag):
        # Only what hashes to the tag is taken: the grant names the tag.
        if grant is None or grantTag(grant) != tag:
            return None
        return self._grants.setdefault(tag, grant)

    def _notFound(self, failure, tag):
        failure.trap(SharedStateUnavailable)
        self.log.warn("broker_auth: grant {tag} unknown here and not looked up: {why}", tag=tag, why=failure.value)
        return None

    def keep(self, grants):
        """
        Keep the grants of connections this process holds open in the
        cluster's store for another L{grantTTL} (a no-op outside a cluster):
        a grant lives as long as its connections do.

        @param grants: L{Grant}s.
        @return: a L{Deferred} firing when all are kept; never failing.
        """
        if self._shared is None:
            return defer.succeed(None)
        kept = [self._shared.keep(grantTag(grant), grant, self.grantTTL) for grant in set(grants)]
        return defer.DeferredList(kept, consumeErrors=True)

    def tagsFor(self, grant):
        return self.permissions.tags(grant) + [grantTag(grant)]


@implementer(ITokenPromoter)
class TokenPromoter:
    """
    C{[promotion] mode = "token"}: PLAIN with the broker user
    (C{[promotion.map]}'s entry if there is a map, else the gateway user
    name) and a fresh single-use token from L{tokenBook} as the password.

    @ivar tokenBook: the L{TokenBook}; the C{[broker_auth]} server redeems
        from the same one (L{kaazing_promo.token.brokerauth.buildBrokerAuthService}
        also hands it the permission table).
    """

    replaces_credentials = True

    def __init__(self, settings, secrets=None, book=None):
        self._pinnedVhost = settings.vhost
        self._map = dict(settings.map)
        self.tokenBook = book if book is not None else TokenBook(ttl=settings.token_ttl)

    def reconfigure(self, settings):
        """
        Take a reloaded C{[promotion.map]} and C{token_ttl} (the rest of
        C{[promotion]} needs a restart).
        """
        self._map = dict(settings.map)
        self.tokenBook.ttl = settings.token_ttl
        return True

    def knownBrokerUsers(self):
        # Tokens need no broker secrets.
        return frozenset()

    def brokerUser(self, avatar):
        if not self._map:
            return avatar.user
        return mappedUser(self._map, avatar)

    def authorize(self, avatar):
        brokerUser = self.brokerUser(avatar)
        if not self.tokenBook.permissions.applies(self.grant(avatar)):
            raise PromotionRefused(f"no [[permissions]] entry names a group or access profile of "
                                   f"gateway user {avatar.user!r}"
                                   + (f" on vhost {self._pinnedVhost!r}" if self._pinnedVhost else ""))
        return brokerUser

    def credentials(self, avatar, mechanisms):
        brokerUser = self.authorize(avatar)
        return AMQPIdentity(brokerUser, self.tokenBook.mint(brokerUser, avatar, self._pinnedVhost))

    def grant(self, avatar):
        table = self.tokenBook.permissions
        return Grant(table.relevantPrincipals(avatar), self._pinnedVhost)

    def vhost(self, avatar, requested):
        # The broker asks /auth/vhost; the table is answered there, once.
        return pinVhost(self._pinnedVhost, requested)
