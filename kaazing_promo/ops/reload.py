"""
Reloading without a restart: SIGHUP (C{systemctl reload kaazing-promo}) and
a poll of users.cnf's modification time.

What a reload takes, each part on its own (a broken part keeps what was
loaded before and says why; the others still apply):

  - users.cnf and the C{[internal] overlay} (read off the reactor thread);
  - the broker secrets (C{SecretStore.load()});
  - C{[promotion.map]}, C{[promotion] token_ttl} and C{[[permissions]]},
    from a fresh read of the configuration file.  Any other change in that
    file is logged as needing a restart.

Afterwards, live connections of people who may no longer log in (removed
or disabled in users.cnf, or refused by the promoter, e.g. dropped from the
map) are closed with 320 CONNECTION_FORCED.  Everyone else stays connected.
"""

import signal
import threading

import attr
from twisted.application import service
from twisted.internet import defer
from twisted.logger import Logger

from kaazing_promo.amqp.session import State
from kaazing_promo.auth.internal import UsersCnfWatcher
from kaazing_promo.config import loadConfig
from kaazing_promo.errors import ConfigError
from kaazing_promo.interfaces import IReloadableUsers, ITokenPromoter

log = Logger(namespace="kaazing_promo.ops.reload")

#: Seconds between two looks at users.cnf's modification time.
POLL_INTERVAL = 2.0

# Sessions in these states are already going.
_ENDING = (State.CLOSING, State.CLOSED)


def _sections(config):
    """
    @return: C{{section name: value}} of everything in C{config} that
        only a restart can change (the live settings are left out).
    """
    promotion = attr.evolve(config.promotion, map={}, token_ttl=None)
    fields = attr.asdict(config, recurse=False)
    for live in ("path", "permissions"):
        fields.pop(live)
    fields["promotion"] = promotion
    names = {"user_auth": "user_auth", "apigw_dir": "apigw_dir", "workers": "workers",
             "drain_timeout": "drain_timeout", "listeners": "[[listeners]]"}
    return {names.get(key, f"[{key}]"): value for key, value in fields.items()}


def restartNeeded(old, new):
    """
    @return: the names of the settings that differ between two
        configurations and that a reload cannot apply, sorted.
    """
    before, after = _sections(old), _sections(new)
    return sorted(name for name in set(before) | set(after) if before.get(name) != after.get(name))


class UsersCnfPoll(UsersCnfWatcher):
    """
    The users.cnf poll, whose reloads go through the L{ReloadService} so
    that the connections of removed users close.
    """

    def __init__(self, reloader, checker, interval=POLL_INTERVAL):
        UsersCnfWatcher.__init__(self, checker, interval)
        self.reloader = reloader

    def _poll(self):
        if self.checker.mtimeChanged():
            return self.reloader.reloadUsers()
        return None


class ReloadService(service.MultiService):
    """
    Reloads on SIGHUP and when users.cnf changes.

    It is handed what a reload touches, and keeps the configuration it last
    applied itself: nothing else reads the settings a reload may change.

    @param config: the L{kaazing_promo.config.Config} the gateway started
        with; each reload reads its file again and compares.
    @param reactor: the reactor (a signal's work is handed to it).
    @param checker: the portal's checker: an L{IReloadableUsers} is
        reloaded (and its file watched); another kind, or L{None}, is not.
    @param secrets: the L{kaazing_promo.secrets.SecretStore} of the broker passwords.
    @param promoter: the L{IIdentityPromoter}, reconfigured with a new
        C{[promotion.map]}; an L{ITokenPromoter}'s token book takes the new
        C{[[permissions]]}.
    @param authenticator: the L{IAuthenticator}, asked whether each open
        connection's person may still be connected.
    @param contexts: C{{listener name: ListenerContext}}, whose C{sessions}
        are the open connections.
    @param workers: the L{kaazing_promo.workers.WorkerPool} whose processes
        a SIGHUP is passed on to, or L{None}.
    @param apigwDir: C{--apigw-dir} from the command line (it wins over the
        file's C{apigw_dir} on every read, as at start-up).
    @param signals: the L{signal} module (tests pass a fake).
    @param heap: the L{kaazing_promo.ops.memory.HeapFreezer}, frozen anew
        after each reload (the old users and settings were frozen), or L{None}.
    @ivar config: the configuration as last applied.
    """

    def __init__(self, config, reactor, checker, secrets, promoter, authenticator, contexts, workers=None,
                 apigwDir=None, pollInterval=POLL_INTERVAL, signals=signal, heap=None):
        service.MultiService.__init__(self)
        self.setName("reload")
        self.config = config
        self.reactor = reactor
        self.checker = checker
        self.secrets = secrets
        self.promoter = promoter
        self.authenticator = authenticator
        self.contexts = contexts
        self.workers = workers
        self.apigwDir = apigwDir
        self._signals = signals
        self.heap = heap
        self._installed = False
        self._previousHandler = None
        self._lock = defer.DeferredLock()
        if IReloadableUsers.providedBy(checker):
            UsersCnfPoll(self, checker, pollInterval).setServiceParent(self)

    # SIGHUP

    def startService(self):
        service.MultiService.startService(self)
        if threading.current_thread() is not threading.main_thread():
            log.warn("not on the main thread: SIGHUP will not reload the configuration")
            return
        self._previousHandler = self._signals.signal(self._signals.SIGHUP, self._sighup)
        self._installed = True

    def stopService(self):
        if self._installed:
            # None: the handler was not set from Python; the default is the closest.
            previous = self._previousHandler
            self._signals.signal(self._signals.SIGHUP,
                                 self._signals.SIG_DFL if previous is None else previous)
            self._installed, self._previousHandler = False, None
        return service.MultiService.stopService(self)

    def _sighup(self, signum, frame):
        # A signal handler runs between two bytecodes of whatever the main
        # thread was doing: hand the work to the reactor, the one safe way.
        self.reactor.callFromThread(self._reloadFromSignal)

    def _reloadFromSignal(self):
        log.info("SIGHUP: reloading users.cnf, the broker secrets and the configuration's live settings")
        self.reload()
        # systemd signals the master only (kill -HUP $MAINPID); its workers reload too.
        if self.workers is not None:
            self.workers.signalAll("HUP")

    # Reloading

    def reload(self):
        """
        Reload everything a reload can take, then close the connections of
        people no longer allowed in.  One reload runs at a time.

        @return: a L{Deferred} firing with a L{dict}: C{users} (L{True},
            L{False} when the old users stayed, L{None} without an internal
            realm), C{secrets} and C{config} (L{True}/L{False}),
            C{restart} (settings that need a restart) and C{closed} (how
            many connections were closed); L{None} if something unforeseen
            broke it (logged).  It never fails: the users.cnf poll would
            stop.
        """
        return self._lock.run(self._reloadAll).addErrback(self._broken)

    def reloadUsers(self):
        """
        Reload users.cnf only (its modification time changed), then close the
        connections of users no longer allowed in.

        @return: as L{reload}.
        """
        return self._lock.run(self._reloadUsersOnly).addErrback(self._broken)

    def _broken(self, failure):
        log.failure("reload failed; what it had not reached yet stays as it was", failure)
        return None

    @defer.inlineCallbacks
    def _reloadUsersOnly(self):
        result = {"users": (yield self._reloadUsers())}
        result["closed"] = self.closeRevoked()
        self._refreeze()
        return result

    @defer.inlineCallbacks
    def _reloadAll(self):
        result = {"users": (yield self._reloadUsers())}
        result["secrets"] = self._reloadSecrets()
        result["config"], result["restart"] = self._reloadConfig()
        result["closed"] = self.closeRevoked()
        self._refreeze()
        return result

    def _refreeze(self):
        # What the reload replaced was frozen with the start-up heap.
        if self.heap is not None:
            self.heap.refreeze()

    def _reloadUsers(self):
        checker = self.checker
        if not IReloadableUsers.providedBy(checker):
            return defer.succeed(None)
        # The checker logs a failure itself, with the reason, and keeps its users.
        return checker.reload()

    def _reloadSecrets(self):
        secrets = self.secrets
        try:
            secrets.load()
        except ConfigError as e:
            log.error("reload: broker secrets kept as they were: {reason}", reason=str(e))
            return False
        log.info("reload: broker secrets read from {source}", source=secrets.source)
        return True

    def _reloadConfig(self):
        old = self.config
        try:
            new = loadConfig(old.path, self.apigwDir)
        except ConfigError as e:
            log.error("reload: configuration kept as it was: {reason}", reason=str(e))
            return False, []
        restart = restartNeeded(old, new)
        if restart:
            log.warn("reload: {path}: changes to {settings} need a restart "
                     "(systemctl restart kaazing-promo); they are not applied",
                     path=old.path, settings=", ".join(restart))
        promotion = attr.evolve(old.promotion, map=new.promotion.map, token_ttl=new.promotion.token_ttl)
        if promotion != old.promotion:
            if self.promoter.reconfigure(promotion):
                log.info("reload: [promotion.map] ({count} entries) and token_ttl applied",
                         count=len(promotion.map))
            else:
                log.warn("reload: [promotion.map] changed, but promotion mode {mode!r} does not use it",
                         mode=old.promotion.mode)
        if new.permissions != old.permissions and ITokenPromoter.providedBy(self.promoter):
            # The broker asks about every operation, so live connections
            # get the new table from their next question on.
            self.promoter.tokenBook.setPermissions(new.permissions)
            log.info("reload: [[permissions]] applied ({count} entries)", count=len(new.permissions))
        self.config = attr.evolve(old, promotion=promotion, permissions=new.permissions)
        return True, restart

    # Revoking

    def revocation(self, session):
        """
        @return: C{(reason for the operator's log, reason for the client
            and the audit)} when C{session}'s person may no longer be
            connected, else L{None}.
        """
        avatar = session.avatar
        if avatar is None or avatar.realm == "anonymous":
            return None
        return self.authenticator.stillAllowed(avatar, session.listener)

    def closeRevoked(self):
        """
        Close, with 320 CONNECTION_FORCED, every live connection whose person
        may no longer be connected.

        @return: how many were closed.
        """
        closed = 0
        for name, context in sorted(self.contexts.items()):
            for session in list(context.sessions):
                if session.state in _ENDING:
                    continue
                revoked = self.revocation(session)
                if revoked is None:
                    continue
                reason, clientReason = revoked
                log.info("reload: closing the connection of {user!r} on {listener} from {source}: {reason}",
                         user=session.avatar.user, listener=name, source=session.source, reason=reason)
                session.forceClose(clientReason)
                closed += 1
        return closed

