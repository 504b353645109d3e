"""
The one way a transport logs a person in: the portal, then the listener's
authorization rules and its failed-login limits.
"""

import collections

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer
from twisted.logger import Logger

from kaazing_promo.interfaces import IGatewayUser
from kaazing_promo.ops.audit import auditLogin


class LoginDenied(Exception):
    """
    A login the gateway refuses.

    @ivar outcome: the audit outcome (C{bad-credentials}, C{unauthorized},
        C{realm-error}, C{rate-limited}).
    @ivar reason: the operator-facing reason; clients see only a generic message.
    @ivar retryAfter: seconds a rate-limited client should wait, or L{None}.
    """

    def __init__(self, outcome, reason, retryAfter=None):
        Exception.__init__(self, outcome)
        self.outcome = outcome
        self.reason = reason
        self.retryAfter = retryAfter


class FailedLoginLimiter:
    """
    Counts failed logins per source address and per user name in a sliding
    window, across every listener of the process; past a listener's limit
    in the window, its logins are refused without asking the realm.
    Counters are per process.
    """

    def __init__(self, clock, window=60.0):
        self._clock = clock
        self.window = window
        self._failures = {}

    def _recent(self, key):
        now = self._clock.seconds()
        times = self._failures.get(key)
        if times is None:
            return 0, now
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[key]
            return 0, now
        return len(times), times[0] + self.window - now

    def retryAfter(self, limit, *keys):
        """
        @param limit: failures allowed in the window (0: no limit).
        @return: seconds to wait if any of C{keys} is over C{limit}, else L{None}.
        """
        if not limit:
            return None
        for key in keys:
            count, wait = self._recent(key)
            if count >= limit:
                return max(1, int(wait + 0.999))
        return None

    def failed(self, *keys):
        now = self._clock.seconds()
        for key in keys:
            self._failures.setdefault(key, collections.deque()).append(now)
        if len(self._failures) >= self._sweepAt:
            # Keys are dropped when asked about after their window; sweep
            # the ones nobody asks about again, so an attack spraying user
            # names or addresses holds at most one window's worth.
            for key in list(self._failures):
                self._recent(key)
            self._sweepAt = max(1024, 2 * len(self._failures))

    _sweepAt = 1024


class LoginGate:
    """
    Logs people in for one listener.

    @param portal: the L{twisted.cred.portal.Portal}.
    @param listener: the listener's L{kaazing_promo.config.Listener} settings.
    @param promoter: the L{IIdentityPromoter}; an unmapped user is refused
        here, before any AMQP byte reaches the broker.
    @param limiter: the process's L{FailedLoginLimiter}.
    """

    log = Logger()

    def __init__(self, portal, listener, promoter, limiter):
        self._portal = portal
        self.listener = listener
        self._promoter = promoter
        self._requireGroups = frozenset(listener.require_groups)
        self.limiter = limiter

    @defer.inlineCallbacks
    def login(self, username, password, source):
        """
        @param source: the client's address as a string (PROXY-protocol aware).
        @return: a L{Deferred} firing with the L{IGatewayUser}, or failing
            with L{LoginDenied}.
        """
        keys = (("source", source), ("user", username))
        retryAfter = self.limiter.retryAfter(self.listener.max_failed_logins, *keys)
        if retryAfter is not None:
            raise self._denied(LoginDenied("rate-limited", "too many failed logins", retryAfter), username, source)
        try:
            _, avatar, _ = yield self._portal.login(UsernamePassword(username, password), None, IGatewayUser)
        except UnauthorizedLogin as e:
            self.limiter.failed(*keys)
            # A checker marks service faults (as opposed to a wrong password)
            # with a "kind" on the failure: the audit tells them apart.
            outcome = getattr(e, "kind", None) or "bad-credentials"
            reason = getattr(e, "reason", None) or str(e) or "login refused by the realm"
            raise self._denied(LoginDenied(outcome, reason), username, source)
        except Exception as e:
            self.log.failure("realm failed while checking {user!r}", user=username)
            raise self._denied(LoginDenied("realm-error", f"realm error: {type(e).__name__}"), username, source)
        if self._requireGroups and not (self._requireGroups & (avatar.groups | avatar.access_profiles)):
            raise self._denied(LoginDenied("unauthorized", "not in any of require_groups"), username, source)
        try:
            brokerUser = self._promoter.authorize(avatar)
        except Exception as e:
            raise self._denied(LoginDenied("unauthorized", getattr(e, "reason", str(e))), username, source)
        auditLogin(self.listener.name, source, "ok", gateway_user=avatar.user, broker_user=brokerUser)
        return avatar

    def _denied(self, denial, username, source):
        """
        Audit C{denial}, for the caller to raise: raised here, it would sit
        in its own traceback's frame, a cycle only the collector frees.
        """
        auditLogin(self.listener.name, source, denial.outcome, denial.reason, gateway_user=username)
        return denial
