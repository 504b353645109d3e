"""
The internal realm (C{user_auth = "internal"}): users checked against a
read-only webMethods users.cnf (U2), found the way the Microgateway finds it
(U3), copied from an API Gateway by C{kaazing-promo provision} (U5).

A failed login looks the same whatever the reason: one exception, one
message, and one password verification at the same cost, so neither the
answer nor its timing tells a client which user names exist.  The operator's
log says the real reason.
"""

import hashlib
import io
import os
import sys
import tempfile
import threading
import tomllib

from twisted.application.internet import TimerService
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import DeferredLock, succeed
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from kaazing_promo.auth import passhash
from kaazing_promo.auth.avatar import GatewayUser
from kaazing_promo.auth.cache import LoginCache
from kaazing_promo.auth.userscnf import UsersCnfError, parseUsersCnf, parseUsersCnfStream
from kaazing_promo.errors import ConfigError
from kaazing_promo.interfaces import IReloadableUsers

#: What every refused client is told, whatever the reason.
REFUSED = "invalid user name or password"

#: Where an API Gateway installation keeps its users.cnf, under apigw_dir.
APIGW_USERS_CNF = os.path.join("IntegrationServer", "instances", "default", "config", "users.cnf")

#: Where an instance keeps its own copy, under the instance directory.
LOCAL_USERS_CNF = os.path.join("config", "users.cnf")

# A bound on remembered successful logins; past it the oldest are dropped.
_CACHE_LIMIT = 10_000


def readOverlay(path):
    """
    Read an C{[internal] overlay} file: TOML lines C{user = "<hash>"} with
    hashes in the gateway's own format.

    @return: L{dict} of user name to hash.
    @raise UsersCnfError: the file cannot be read or is not such a table.
    """
    try:
        with open(path, "rb") as stream:
            table = tomllib.load(stream)
    except OSError as e:
        raise UsersCnfError(f"{path}: cannot read the overlay: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise UsersCnfError(f"{path}: not valid TOML: {e}") from None
    hashes = {}
    for user, value in table.items():
        if not isinstance(value, str):
            raise UsersCnfError(
                f'{path}: {user}: expected user = "<hash>" (make one with '
                "`kaazing-promo hash-password`)")
        hashes[user] = value.strip()
    return hashes


def _fileSignature(path):
    """
    @return: what changes when C{path} is rewritten or replaced: its
        modification time, size and inode; L{None} if it cannot be read.
    """
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_mtime_ns, status.st_size, status.st_ino


def _refusal(entry):
    """
    @param entry: a L{UserEntry} or L{None}.
    @return: why C{entry} cannot log in, or L{None} if it may try.
    """
    if entry is None:
        return "unknown user"
    if not entry.enabled:
        return "disabled"
    if entry.passHash is None:
        return "no hash"
    if not passhash.isSupported(entry.passHash):
        return "unsupported format"
    return None


class _Loaded:
    """
    One successful read of the users: what is swapped in, all at once.

    @ivar users: the L{UsersCnf}, overlay applied.
    @ivar dummyHash: the hash failures verify against, at the highest cost
        any user's hash has.
    @ivar overlayStrangers: overlay names that users.cnf does not know.
    @ivar signature: the files' signatures taken before they were read.
    """

    def __init__(self, users, dummyHash, overlayStrangers, signature):
        self.users = users
        self.dummyHash = dummyHash
        self.overlayStrangers = overlayStrangers
        self.signature = signature


#: How much nicer than the reactor the hashing threads are (Linux nice levels).
HASHING_NICENESS = 10


class HashingThread(threading.Thread):
    """
    A thread of the internal realm's pool, at a lower scheduling priority
    than the reactor's.

    Why: a login storm keeps one hashing thread busy per core (PBKDF2
    releases the GIL), and the reactor thread, which relays every open
    connection, then waits for a core behind them; at a lower priority the
    hashes take what the reactor leaves, and an open connection's round
    trip stays fast while thousands log in (issue 19).  Linux only, where a
    thread's nice value is its own; elsewhere the threads run as they are.
    """

    def run(self):
        if sys.platform.startswith("linux"):
            try:
                tid = threading.get_native_id()
                os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + HASHING_NICENESS)
            except OSError:
                pass
        threading.Thread.run(self)


@implementer(IReloadableUsers)
class InternalChecker:
    """
    Checks user names and passwords against a users.cnf (U2).

    @ivar path: the users.cnf read.
    @ivar log: where refusals and reloads are reported (never a password or
        a hash).
    @ivar metrics: an L{kaazing_promo.ops.metrics.IRealmMetrics} told about
        each reload, or L{None}.
    """

    credentialInterfaces = (IUsernamePassword,)
    log = Logger()
    metrics = None

    def __init__(self, path, overlay=None, verifyCacheTTL=300.0, reactor=None,
                 threadpool=None, demo=False):
        """
        @param path: the users.cnf.
        @param overlay: optional path of a TOML file of C{user = "<hash>"}
            whose hashes win over users.cnf's.
        @param verifyCacheTTL: seconds a successful verification is
            remembered; 0 remembers none.
        @param reactor: provides C{seconds} and C{callFromThread}; the
            global reactor by default.
        @param threadpool: where passwords are verified and reloads parse;
            by default a pool of this checker's own, one thread per CPU,
            started on first use and stopped with the reactor.
        @param demo: the configuration says C{demo = true}: users that
            cannot log in are reported as information (the sample has one
            on purpose), not as a warning.
        """
        if reactor is None:
            from twisted.internet import reactor
        self.path = path
        self._overlay = overlay or None
        self._ttl = verifyCacheTTL
        self._reactor = reactor
        self._threadpool = threadpool
        self._cache = LoginCache(_CACHE_LIMIT if verifyCacheTTL > 0 else 0)
        self._loaded = None
        self._signature = None
        self._reported = {}
        self._reloadLock = DeferredLock()
        self._demo = demo

    @property
    def reactor(self):
        """
        The reactor the checker keeps time with.
        """
        return self._reactor

    @property
    def userCount(self):
        """
        How many users the loaded users.cnf holds (0 before L{load}).
        """
        return 0 if self._loaded is None else len(self._loaded.users.users)

    @property
    def unsupportedHashes(self):
        """
        C{{passHash format: number of users}} that cannot log in because
        the gateway cannot verify that format (as of the last (re)load).
        """
        if self._loaded is None:
            return {}
        return {name: len(users) for name, users in self._loaded.users.unsupported.items()}

    # Loading

    def _signatures(self):
        return (_fileSignature(self.path),
                None if self._overlay is None else _fileSignature(self._overlay))

    def _read(self):
        """
        Read users.cnf and the overlay.  Safe to call off the reactor thread.

        @return: a L{_Loaded}.
        @raise UsersCnfError: either file cannot be used.
        """
        signature = self._signatures()
        users = parseUsersCnf(self.path)
        strangers = []
        if self._overlay is not None:
            hashes = readOverlay(self._overlay)
            strangers = sorted(set(hashes) - set(users.users))
            users = users.withOverlay(hashes)
        # Failures verify against a hash at the highest cost any user's hash
        # has, so that an unknown name takes as long as a wrong password for
        # the dearest known user (the most common cost would tell them apart).
        iterations = max(users.iterations, default=passhash.DEFAULT_ITERATIONS)
        return _Loaded(users, passhash.dummyHashFor(iterations), strangers, signature)

    def _install(self, loaded):
        """
        Swap in freshly read users: forget cached verifications, report
        what cannot log in.
        """
        self._loaded = loaded
        self._signature = loaded.signature
        self._cache.clear()
        self.log.info("internal realm: {count} users from {path}",
                      count=len(loaded.users.users), path=self.path)
        unsupported = {name: len(users) for name, users in loaded.users.unsupported.items()}
        if unsupported != self._reported:
            report = self.log.info if self._demo else self.log.warn
            for name, count in sorted(unsupported.items()):
                report(
                    "internal realm: {count} user(s) in {path} have passHash format "
                    "{hashFormat}, which kaazing-promo cannot verify; they cannot log in "
                    "(give them a hash from `kaazing-promo hash-password` in the "
                    "[internal] overlay){demo}",
                    count=count, path=self.path, hashFormat=name,
                    demo="; the demo sample has one on purpose (demo = true)" if self._demo else "")
            self._reported = unsupported
        if loaded.overlayStrangers:
            self.log.warn(
                "internal realm: the overlay {overlay} names {count} user(s) that "
                "{path} does not have; ignored",
                overlay=self._overlay, count=len(loaded.overlayStrangers), path=self.path)

    def load(self):
        """
        Read the users now (start-up).

        @raise UsersCnfError: a L{ConfigError} naming the file and the line.
        """
        self._install(self._read())

    def reload(self):
        """
        Read the users again, off the reactor thread.  Reloads run one at a
        time.  On success the new users replace the old at once and cached
        verifications are forgotten; on failure the old users stay and the
        log says why.

        @return: L{Deferred} firing L{True} (reloaded) or L{False} (kept the
            old users); it never fails.
        """
        return self._reloadLock.run(self._reloadNow)

    def _reloadNow(self):
        attempted = self._signatures()

        def reloaded(loaded):
            self._install(loaded)
            self._reloaded(True)
            return True

        def failed(failure):
            # A broken file is not retried until it changes again.
            self._signature = attempted
            if failure.check(UsersCnfError):
                self.log.error(
                    "internal realm: reload failed, keeping the {count} users loaded "
                    "before: {reason}", count=self.userCount, reason=failure.getErrorMessage())
            else:
                self.log.failure(
                    "internal realm: reload failed, keeping the {count} users loaded before",
                    failure, count=self.userCount)
            self._reloaded(False)
            return False

        d = deferToThreadPool(self._reactor, self._pool(), self._read)
        d.addCallbacks(reloaded, failed)
        return d

    def _reloaded(self, ok):
        if self.metrics is not None:
            self.metrics.usersCnfReloaded(ok)

    def mtimeChanged(self):
        """
        @return: whether users.cnf or the overlay has been modified, replaced
            or removed since it was last read (or a read was attempted).
        """
        return self._signatures() != self._signature

    # Checking

    #: Passwords verified at once (the login queue's slots): one per core,
    #: C{hashlib.pbkdf2_hmac} releases the GIL.
    concurrency = os.cpu_count() or 2

    def _pool(self):
        if self._threadpool is None:
            pool = ThreadPool(minthreads=0, maxthreads=self.concurrency,
                              name="kaazing-promo-internal")
            pool.threadFactory = HashingThread
            pool.start()
            self._reactor.addSystemEventTrigger("during", "shutdown", pool.stop)
            self._threadpool = pool
        return self._threadpool

    def _entry(self, username):
        return None if self._loaded is None else self._loaded.users.users.get(username)

    def _avatar(self, entry):
        return GatewayUser(entry.name, entry.groups, realm="internal")

    def generation(self, user):
        """
        L{IUserStatus}: a digest of the user's hash as loaded now.
        """
        entry = self._entry(user)
        if entry is None or entry.passHash is None:
            return ""
        return hashlib.sha256(entry.passHash.encode("utf-8")).hexdigest()[:16]

    def current(self, avatar):
        """
        L{IUserStatus}: the user as the users loaded now say (groups
        included), or L{None} when removed, disabled or without a usable hash.
        """
        entry = self._entry(avatar.user)
        if _refusal(entry) is not None:
            return None
        return self._avatar(entry)

    def requestAvatarId(self, credentials):
        """
        Verify C{credentials} against the users.

        @param credentials: an L{IUsernamePassword}; its C{username} and
            C{password} may be L{str} or UTF-8 L{bytes}.
        @return: L{Deferred} firing a L{GatewayUser}, or failing with
            L{UnauthorizedLogin} carrying L{REFUSED} whatever the reason.
        """
        username = credentials.username
        if isinstance(username, bytes):
            username = username.decode("utf-8", "surrogateescape")
        password = passhash.passwordBytes(credentials.password)

        key = self._cache.keyFor(username, password)
        if self._cache.get(key, self._reactor.seconds()) is not None:
            entry = self._entry(username)
            if _refusal(entry) is None:
                self._counted(hit=True)
                return succeed(self._avatar(entry))
            self._cache.discard(key)
        self._counted(hit=False)

        loaded = self._loaded
        entry = self._entry(username)
        reason = _refusal(entry)
        # Every attempt costs one verification: against the user's hash, or
        # against a hash nobody knows the password of.
        if reason is None:
            hashValue = entry.passHash
        elif loaded is None:
            hashValue = passhash.DUMMY_HASH
        else:
            hashValue = loaded.dummyHash
        d = deferToThreadPool(self._reactor, self._pool(), passhash.verify, hashValue, password)
        d.addCallbacks(self._verified, self._verifyFailed,
                       callbackArgs=(username, hashValue, reason, key))
        return d

    def _counted(self, hit):
        if self.metrics is not None:
            self.metrics.verifyCache(hit)

    def _verified(self, matched, username, hashValue, reason, key):
        if reason is None and not matched:
            reason = "wrong password"
        if reason is None:
            # The users may have been reloaded while the hash was checked:
            # the login stands only if the hash it matched is still current.
            entry = self._entry(username)
            if _refusal(entry) is not None or entry.passHash != hashValue:
                reason = "changed during verification"
        if reason is not None:
            self.log.info("internal realm refused {user!r}: {reason}",
                          user=username, reason=reason)
            raise UnauthorizedLogin(REFUSED)
        self._cache.put(key, True, self._reactor.seconds() + self._ttl)
        return self._avatar(entry)

    def _verifyFailed(self, failure):
        self.log.failure("internal realm: password verification failed", failure)
        raise UnauthorizedLogin(REFUSED)


class UsersCnfWatcher(TimerService):
    """
    Polls the checker's files every C{interval} seconds and reloads the
    users when users.cnf or the overlay changes (modification time, size or
    inode).
    """

    def __init__(self, checker, interval=2.0):
        """
        @param checker: an L{InternalChecker}; its reactor keeps the time.
        """
        TimerService.__init__(self, interval, self._poll)
        self.checker = checker
        self.clock = checker.reactor

    def _poll(self):
        # Never fails: a failed step would stop the TimerService.
        if self.checker.mtimeChanged():
            return self.checker.reload()
        return None


def locateUsersCnf(instanceDir, apigwDir, explicit=None):
    """
    Find the users.cnf the internal realm reads (U3): C{explicit} when given
    (relative to C{instanceDir}); otherwise C{<instanceDir>/config/users.cnf},
    then C{<apigwDir>/IntegrationServer/instances/default/config/users.cnf}.

    @param instanceDir: the instance directory (the configuration file's).
    @param apigwDir: the API Gateway installation directory, or L{None}.
    @param explicit: the C{[internal] users_cnf} setting, or L{None}.
    @return: the path found.
    @raise ConfigError: nothing there; the message names every path looked at.
    """
    if explicit:
        path = os.path.join(instanceDir, explicit)
        if not os.path.isfile(path):
            raise ConfigError(
                f"users.cnf not found at {path} ([internal] users_cnf); "
                "correct the path or remove the key to use the standard lookup")
        return path
    local = os.path.join(instanceDir, LOCAL_USERS_CNF)
    if os.path.isfile(local):
        return local
    if apigwDir:
        fallback = os.path.join(apigwDir, APIGW_USERS_CNF)
        if os.path.isfile(fallback):
            return fallback
    else:
        fallback = os.path.join("<apigw_dir>", APIGW_USERS_CNF) + " (apigw_dir not set)"
    raise ConfigError(
        f"users.cnf not found: looked in {local} and {fallback}; "
        "set apigw_dir or copy it with `kaazing-promo provision`")


def provision(apigwDir, instanceDir, force=False):
    """
    Copy the API Gateway's users.cnf into the instance (U5), the way
    Microgateway's createInstance does.  The source is only read, and must
    parse; the copy is written atomically with mode 0640.

    @param force: replace an existing, different C{config/users.cnf}.
    @return: the path of the copy.
    @raise ConfigError: the source is missing or unusable, or the copy
        would overwrite a different file without C{force}.
    """
    source = os.path.join(apigwDir, APIGW_USERS_CNF)
    target = os.path.join(instanceDir, LOCAL_USERS_CNF)
    try:
        with open(source, "rb") as stream:
            data = stream.read()
    except OSError as e:
        raise ConfigError(
            f"cannot read {source}: {e.strerror}; check --apigw-dir") from None
    # Validate the very bytes that will be copied.
    parseUsersCnfStream(io.BytesIO(data), source)
    try:
        with open(target, "rb") as stream:
            existing = stream.read()
    except FileNotFoundError:
        existing = None
    except OSError as e:
        raise ConfigError(f"cannot read {target}: {e.strerror}") from None
    if existing == data:
        return target
    if existing is not None and not force:
        raise ConfigError(
            f"{target} exists and differs from {source}; "
            "pass --force to replace it")
    directory = os.path.dirname(target)
    try:
        os.makedirs(directory, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=".users.cnf.")
        try:
            with os.fdopen(descriptor, "wb") as stream:
                os.fchmod(stream.fileno(), 0o640)
                stream.write(data)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, target)
        except BaseException:
            os.unlink(temporary)
            raise
    except OSError as e:
        raise ConfigError(f"cannot write {target}: {e.strerror}") from None
    return target


def hashPasswordCommand(stdin, stdout, stderr=None,
                        iterations=passhash.DEFAULT_ITERATIONS):
    """
    C{kaazing-promo hash-password}: read a password from C{stdin}, print its
    hash in the gateway's format (U2).

    The whole input is the password except one trailing newline, so a
    password may itself end in spaces or a newline.

    @param stdin: text stream.
    @param stdout: text stream; the hash is its last line.
    @param stderr: text stream for the refusal (default L{sys.stderr}).
    @return: the exit code: 0, or 1 for an empty password or one
        containing NUL.
    """
    password = stdin.read()
    if password.endswith("\n"):
        password = password[:-1]
    if not password:
        print("hash-password: refusing an empty password", file=stderr or sys.stderr)
        return 1
    try:
        hashString = passhash.makeHash(password, iterations)
    except ValueError as e:
        print(f"hash-password: {e}", file=stderr or sys.stderr)
        return 1
    print(hashString, file=stdout)
    return 0
