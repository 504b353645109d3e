"""
The one way a person logs in, whatever the listener: admission, the
password check, the listener's authorization rules, the audit trail.

Login protection, in the order an attempt meets it:

  1. Per source host, across every listener of the process: failed logins
     of the last minute plus attempts still in flight may not reach the
     listener's C{max_failed_logins}; past it the attempt is refused
     (429 / Close 403) without asking the realm.  An attempt whose client
     left before it was checked counts as failed.
  2. Per user name: when C{max_failed_logins} distinct hosts have failed on
     one user in the last minute, that user's logins are refused, except
     from hosts the user logged in from successfully before (guessing from
     elsewhere never keeps a person out of where they log in from).
  3. The password check waits its turn in a L{FairScheduler}: a few run at
     once, the host that used the fewest checks lately goes first, and a
     check whose client has gone is dropped unrun.

What 1 and 2 count lives in an L{IFailureStore}: this process's own
L{FailureWindow}, or the one the gateways of a cluster share (asked with a
round trip, so the checks answer with a L{Deferred}; in memory it fires at
once).
"""

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from kaazing_promo.auth.avatar import ANONYMOUS
from kaazing_promo.auth.limits import FailureWindow
from kaazing_promo.auth.scheduler import ClientGone, FairScheduler, Overloaded
from kaazing_promo.errors import LoginDenied, PromotionRefused, SharedStateUnavailable
from kaazing_promo.interfaces import ABANDONED, FAILED, SUCCEEDED, IAuthenticator, IGatewayUser, LoginAttempt
from kaazing_promo.ops.audit import auditLogin

#: Attempts one host may have in flight when its listener sets no limit.
MAX_PENDING_PER_HOST = 10


@implementer(IAuthenticator)
class Authenticator:
    """
    Logs people in for every listener of one process.

    @param portal: the L{twisted.cred.portal.Portal}, or L{None} when
        C{user_auth = "off"} (only C{auth = "none"} listeners then).
    @param userStatus: the realm's L{IUserStatus}, asked again when a ticket
        is redeemed; L{None} with no realm.
    @param promoter: the L{IIdentityPromoter}; an unmapped user is refused
        here, before any AMQP byte reaches the broker.
    @param tickets: the process's L{kaazing_promo.auth.tickets.TicketBook}.
    @param clock: an L{IReactorTime}.
    @param slots: password checks run at once.
    @param failures: the L{IFailureStore}; this process's own by default.
    @param sessions: the L{kaazing_promo.auth.tickets.SessionCookies} of
        the page's sessions, or L{None} for none.
    """

    log = Logger()
    anonymous = ANONYMOUS

    def __init__(self, portal, userStatus, promoter, tickets, clock, slots, failures=None, sessions=None):
        self._portal = portal
        self._clock = clock
        self._sessions = sessions
        self._userStatus = userStatus
        self._promoter = promoter
        self._tickets = tickets
        self.failures = failures if failures is not None else FailureWindow(clock)
        self.scheduler = FairScheduler(clock, slots)

    # Password logins

    def authenticate(self, attempt, audit=True):
        listener = attempt.listener
        if listener.auth == "none":
            return defer.succeed(ANONYMOUS)
        if attempt.username is None:
            return self._refuse(attempt, LoginDenied("bad-credentials", attempt.unusable))
        return self.failures.begin(attempt.host, attempt.username).addCallback(self._check, attempt, audit)

    def _check(self, standing, attempt, audit):
        refusal = self._admit(attempt, standing)
        if refusal is not None:
            self.failures.end(standing)
            return self._refuse(attempt, refusal)
        credentials = UsernamePassword(attempt.username, attempt.password)
        d = self.scheduler.submit(
            attempt.host, attempt.stillThere, lambda: self._portal.login(credentials, None, IGatewayUser))
        d.addCallbacks(self._loggedIn, self._checkFailed, callbackArgs=(attempt, audit, standing),
                       errbackArgs=(attempt, standing))
        return d

    def _admit(self, attempt, standing):
        """
        @param standing: the L{Standing} of C{attempt}'s host and user.
        @return: a L{LoginDenied} if C{attempt} is over a limit, else L{None}.
        """
        limit = attempt.listener.max_failed_logins
        host = attempt.host
        if limit and standing.failed + standing.inFlight >= limit:
            return LoginDenied("rate-limited", f"too many failed logins from {host}", _seconds(standing.failedWait))
        if standing.inFlight >= (limit or MAX_PENDING_PER_HOST):
            return LoginDenied("rate-limited", f"too many logins in flight from {host}", 1)
        if limit and standing.userHosts >= limit and not standing.known:
            return LoginDenied("rate-limited", f"failed logins from {standing.userHosts} hosts for this user",
                               _seconds(standing.userWait))
        return None

    def _loggedIn(self, loggedIn, attempt, audit, standing):
        _, avatar, _ = loggedIn
        self.failures.end(standing, SUCCEEDED)
        return self._authorize(attempt, avatar, audit)

    def _checkFailed(self, failure, attempt, standing):
        counted = None
        if failure.check(ClientGone):
            counted = ABANDONED
            denial = LoginDenied("closed", "client left before its password was checked")
        elif failure.check(Overloaded):
            denial = LoginDenied("rate-limited", "too many logins waiting", 1)
        elif failure.check(UnauthorizedLogin):
            # A checker marks service faults (as opposed to a wrong password)
            # with a "kind": those are not the client's failures.
            outcome = getattr(failure.value, "kind", None) or "bad-credentials"
            if outcome == "bad-credentials":
                counted = FAILED
            reason = getattr(failure.value, "reason", None) or failure.getErrorMessage() or "refused by the realm"
            denial = LoginDenied(outcome, reason)
        else:
            self.log.failure("realm failed while checking {user!r}", failure, user=attempt.username)
            denial = LoginDenied("realm-error", f"realm error: {failure.type.__name__}")
        self.failures.end(standing, counted)
        return self._refuse(attempt, denial)

    def _authorize(self, attempt, avatar, audit=True):
        """
        The listener's rules for an authenticated C{avatar}.

        @return: C{avatar}, or a failed L{Deferred}.
        """
        denial, brokerUser = self._ruleOut(avatar, attempt.listener)
        if denial is not None:
            return self._refuse(attempt, denial, avatar.user)
        if audit:
            auditLogin(attempt.listener.name, attempt.source, "ok", gateway_user=avatar.user,
                       broker_user=brokerUser)
        return avatar

    def _ruleOut(self, avatar, listener):
        """
        C{require_groups}, then whether the promoter can promote C{avatar}.

        @return: C{(None, broker user)}, or C{(LoginDenied, None)} (outcome
            C{unauthorized}).
        """
        requireGroups = listener.require_groups
        if requireGroups and not (frozenset(requireGroups) & (avatar.groups | avatar.access_profiles)):
            return LoginDenied("unauthorized", "not in any of require_groups"), None
        try:
            return None, self._promoter.authorize(avatar)
        except PromotionRefused as e:
            return LoginDenied("unauthorized", e.reason), None

    def stillAllowed(self, avatar, listener):
        current = avatar if self._userStatus is None else self._userStatus.current(avatar)
        if current is None:
            return "removed or disabled in the realm", "user removed or disabled"
        denial, _ = self._ruleOut(current, listener)
        if denial is not None:
            # The client learns only that its access went, not why.
            return denial.reason, "access revoked"
        return None

    def _refuse(self, attempt, denial, user=None):
        """
        Audit C{denial} and return it as a failed L{Deferred}: raised here,
        it would sit in its own traceback's frame, a cycle only the
        collector frees.
        """
        auditLogin(attempt.listener.name, attempt.source, denial.outcome, denial.reason,
                   gateway_user=user or attempt.username)
        return defer.fail(denial)

    # Sessions (the page's cookie)

    def openSession(self, avatar, listener):
        if self._sessions is None or not listener.session_ttl or self._userStatus is None:
            return None
        return self._sessions.issue(avatar, listener, self._userStatus.generation(avatar.user))

    def resumeSession(self, cookie, listener, source):
        attempt = LoginAttempt(listener, _hostOf(source), source, unusable="session cookie")
        opened = None if self._sessions is None or self._userStatus is None else self._sessions.open(cookie, listener)
        if opened is None:
            return self._refuse(attempt, LoginDenied("bad-credentials", "unknown, expired or foreign session cookie"))
        avatar, generation = opened
        current = self._userStatus.current(avatar)
        if current is None or generation != self._userStatus.generation(avatar.user):
            return self._refuse(attempt, LoginDenied("unauthorized", "session revoked: the user's credentials "
                                                     "changed or the user may no longer log in"), avatar.user)
        if current.expires is not None and current.expires <= self._clock.seconds():
            return self._refuse(attempt, LoginDenied("bad-credentials", "session's authentication expired"),
                                avatar.user)
        return defer.maybeDeferred(self._authorize, attempt, current)

    # Tickets

    @property
    def ticketTTL(self):
        return self._tickets.ttl

    def issueTicket(self, avatar, listener, source, credentials=None):
        return self._tickets.issue(avatar, listener, _hostOf(source), credentials)

    def redeemTicket(self, ticket, listener, source):
        attempt = LoginAttempt(listener, _hostOf(source), source, unusable="ticket")
        d = self._tickets.redeem(ticket, listener, attempt.host)
        return d.addCallbacks(self._ticketRedeemed, self._ticketUnknown, callbackArgs=(attempt,),
                              errbackArgs=(attempt,))

    def _ticketUnknown(self, failure, attempt):
        failure.trap(SharedStateUnavailable)
        # Fail closed: whether the ticket was used already cannot be known.
        return self._refuse(attempt, LoginDenied("realm-error", f"ticket refused: {failure.value}"))

    def _ticketRedeemed(self, redeemed, attempt):
        if redeemed is None:
            return self._refuse(attempt, LoginDenied("bad-credentials", "unknown, used, expired or foreign ticket"))
        avatar, credentials = redeemed
        current = avatar if self._userStatus is None else self._userStatus.current(avatar)
        if current is None:
            return self._refuse(attempt, LoginDenied("unauthorized", "user may no longer log in"), avatar.user)
        # The login decision was the ticket's issue (audited then); a refusal
        # here is a decision of its own, a success is the connection's "open".
        d = defer.maybeDeferred(self._authorize, attempt, current, audit=False)
        return d.addCallback(lambda avatar: (avatar, credentials))


def _seconds(wait):
    return max(1, int(wait + 0.999))


def _hostOf(source):
    return source.rsplit(":", 1)[0]
