"""
X3: what happens to a live connection when the authentication it was
opened with expires (a delegated result's C{expires}).

C{on_expiry = "close"} closes it with 320 CONNECTION_FORCED;
C{"revalidate"} asks the checker again (the credentials are held in memory
for that purpose only, never logged) and closes it if the answer is no;
C{"ignore"} lets it live.
"""

from twisted.cred.credentials import UsernamePassword
from twisted.logger import Logger


class SessionLifetime:
    """
    Watches open sessions whose avatar carries an expiry.

    @param policy: C{"revalidate"}, C{"close"} or C{"ignore"}.
    @param checker: the checker with C{revalidate(credentials)} (the
        delegated checker), for the C{"revalidate"} policy.
    @param clock: the L{IReactorTime} the avatars' C{expires} is measured on.
    """

    log = Logger()

    def __init__(self, policy, checker, clock):
        self.policy = policy
        self._checker = checker
        self._clock = clock
        self._timers = {}

    @property
    def keepsCredentials(self):
        """
        Whether sessions must keep the client's credentials for revalidation.
        """
        return self.policy == "revalidate"

    def watch(self, session):
        """
        Start watching C{session} (called when its connection opens).
        """
        expires = getattr(session.avatar, "expires", None)
        if expires is None or self.policy == "ignore":
            return
        delay = max(0.0, expires - self._clock.seconds())
        self._timers[session] = self._clock.callLater(delay, self._expired, session)

    def unwatch(self, session):
        timer = self._timers.pop(session, None)
        if timer is not None and timer.active():
            timer.cancel()

    def _expired(self, session):
        self._timers.pop(session, None)
        if self.policy == "close" or session.credentials is None:
            return session.forceClose("authentication expired")
        d = self._checker.revalidate(UsernamePassword(*session.credentials))

        def valid(avatar):
            if session.isOpen:
                session.avatar = avatar
                self.watch(session)

        def invalid(failure):
            self.log.info("{source}: {user!r} no longer valid at revalidation: {reason}",
                          source=session.source, user=session.avatar.user,
                          reason=getattr(failure.value, "reason", None) or failure.getErrorMessage())
            session.forceClose("authentication no longer valid")

        d.addCallbacks(valid, invalid)
