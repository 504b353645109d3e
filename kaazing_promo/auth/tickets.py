"""
Single-use tickets for browsers, which cannot set headers on a WebSocket.

A ticket is the authenticated avatar, the client's host, the listener that
issued it (name and path) and an expiry, signed with HMAC-SHA256 under a key
the gateway's worker processes (and the gateways of a cluster) share, so
that any of them can redeem what another issued.  Single use is an
L{INonceLedger}'s: each process's own by default (a ticket then works once
per process), the cluster's with C{[cluster]} (once in all).  A ticket works
only from the host it was issued to and only on the listener that issued
it, for L{TICKET_TTL} seconds.
"""

import os
import secrets

from twisted.internet import defer

from kaazing_promo.auth.avatar import GatewayUser
from kaazing_promo.auth.signed import ClaimSeal
from kaazing_promo.auth.spent import SpentNonces

TICKET_TTL = 30.0
_CONTEXT = b"kaazing-promo ticket v1\x00"


class TicketBook:
    """
    Issues and redeems tickets.

    @param key: the signing key (L{bytes}); random per process when not given.
    @param spent: the L{INonceLedger} of redeemed tickets; this process's own by default.
    """

    def __init__(self, clock, key=None, ttl=TICKET_TTL, spent=None):
        self._clock = clock
        self._seal = ClaimSeal(key or os.urandom(32), _CONTEXT)
        self.ttl = ttl
        self._spent = spent if spent is not None else SpentNonces(clock)
        # Revalidation credentials stay in the issuing process, never in a ticket.
        self._credentials = {}

    def issue(self, avatar, listener, host, credentials=None):
        """
        @param listener: the issuing listener's L{kaazing_promo.config.Listener}.
        @param host: the client's host.
        @return: the ticket (L{str}, URL-safe).
        """
        self._forgetExpired()
        nonce = secrets.token_urlsafe(16)
        expires = self._clock.seconds() + self.ttl
        claims = {
            "n": nonce, "x": expires, "h": host, "l": [listener.name, listener.path], "u": avatar.user,
            "g": sorted(avatar.groups), "p": sorted(avatar.access_profiles), "e": avatar.expires, "r": avatar.realm,
        }
        if credentials is not None:
            self._credentials[nonce] = (expires, credentials)
        return self._seal.seal(claims)

    def redeem(self, ticket, listener, host):
        """
        @return: a L{Deferred} firing with C{(avatar, credentials)} the
            ticket was issued for (the credentials only in the process that
            issued it), or with L{None} when it is not a valid, unexpired,
            unused ticket of C{listener} for C{host}; failing with
            L{kaazing_promo.errors.SharedStateUnavailable} when whether it
            was used cannot be known.
        """
        self._forgetExpired()
        fields = self._seal.open(ticket)
        if fields is None:
            return defer.succeed(None)
        nonce, expires = fields["n"], fields["x"]
        now = self._clock.seconds()
        if expires <= now or fields["h"] != host or fields["l"] != [listener.name, listener.path]:
            return defer.succeed(None)
        return self._spent.spend(nonce, expires - now).addCallback(self._redeemed, nonce, fields)

    def _redeemed(self, first, nonce, fields):
        if not first:
            return None
        kept = self._credentials.pop(nonce, (None, None))[1]
        avatar = GatewayUser(fields["u"], fields["g"], fields["p"], fields["e"], fields["r"])
        return avatar, kept

    def _forgetExpired(self):
        now = self._clock.seconds()
        for nonce in [n for n, (expires, _) in self._credentials.items() if expires <= now]:
            del self._credentials[nonce]


_SESSION_CONTEXT = b"kaazing-promo session v1\x00"


class SessionCookies:
    """
    The page's session cookie (issue 19): after a password login on a
    listener's ticket endpoint, a browser holds a signed, HttpOnly,
    SameSite=Strict cookie naming the person, the listener and an expiry,
    and asks for its next tickets with it instead of a password, so that a
    gateway restart does not cost every connected browser a password hash.

    Signed with a key derived from the shared one, so every worker (and
    every gateway of a cluster) accepts it.  It carries the realm's
    L{IUserStatus.generation} of the person's credentials: a password change
    or a removal, once the realm has reloaded, revokes it; the listener's
    rules are asked again on every use.

    @param key: the signing key (L{bytes}).
    """

    def __init__(self, clock, key):
        self._clock = clock
        self._seal = ClaimSeal(key, _SESSION_CONTEXT)

    def issue(self, avatar, listener, generation):
        """
        @return: the cookie's value (L{str}), valid on C{listener} for its
            C{session_ttl} seconds.
        """
        return self._seal.seal({
            "u": avatar.user, "g": sorted(avatar.groups), "p": sorted(avatar.access_profiles),
            "e": avatar.expires, "r": avatar.realm, "l": [listener.name, listener.path],
            "x": self._clock.seconds() + listener.session_ttl, "c": generation,
        })

    def open(self, value, listener):
        """
        @return: C{(avatar, generation)} the cookie names, or L{None} when it
            is not a live session cookie of C{listener}.
        """
        claims = self._seal.open(value)
        if claims is None or claims.get("l") != [listener.name, listener.path]:
            return None
        if not isinstance(claims.get("x"), (int, float)) or claims["x"] <= self._clock.seconds():
            return None
        avatar = GatewayUser(claims["u"], claims["g"], claims["p"], claims["e"], claims["r"])
        return avatar, claims.get("c")
