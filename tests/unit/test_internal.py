"""
Tests for L{kaazing_promo.auth.internal}: the internal realm (U2), the
users.cnf lookup (U3), provisioning (U5) and C{hash-password}.
"""

import builtins
import io
import os
import stat
import sys
import threading
from unittest import SkipTest

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.logger import Logger, LogLevel, formatEvent
from twisted.python.threadpool import ThreadPool
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from kaazing_promo.auth import internal, passhash
from kaazing_promo.auth.avatar import GatewayUser
from kaazing_promo.auth.internal import (
    REFUSED, InternalChecker, UsersCnfWatcher, hashPasswordCommand, locateUsersCnf, provision)
from kaazing_promo.auth.userscnf import UserEntry, UsersCnfError
from kaazing_promo.errors import ConfigError
from tests.authfixtures import (
    TEST_ITERATIONS, WEBMETHODS_HASH, ManualThreadPool, SynchronousThreadPool,
    ThreadlessReactor, standardUsers, testHash, writeUsersCnf)


class CheckerTestMixin:
    """
    An L{InternalChecker} over L{standardUsers} with a synchronous thread
    pool, a L{ThreadlessReactor} and a log the test can read.
    """

    def setUp(self):
        self.users, self.groups = standardUsers()
        self.path = writeUsersCnf(self.mktemp(), self.users, self.groups)
        self.reactor = ThreadlessReactor()
        self.pool = SynchronousThreadPool()
        self.events = []
        self.checker = self.makeChecker()

    def makeChecker(self, **kwargs):
        checker = InternalChecker(self.path, reactor=self.reactor, threadpool=self.pool, **kwargs)
        checker.log = Logger(observer=self.events.append)
        checker.load()
        return checker

    def login(self, username, password):
        """
        @return: the avatar ID, or the L{UnauthorizedLogin} raised.
        """
        d = self.checker.requestAvatarId(UsernamePassword(username, password))
        results = []
        d.addBoth(results.append)
        self.assertEqual(len(results), 1, "requestAvatarId did not fire")
        result = results[0]
        if hasattr(result, "trap"):
            result.trap(UnauthorizedLogin)
            return result.value
        return result

    def logged(self, level=None):
        return [formatEvent(event) for event in self.events
                if level is None or event["log_level"] == level]

    def countVerifications(self):
        """
        Record every hash L{passhash.verify} is asked to check.
        """
        checked = []
        realVerify = passhash.verify

        def counting(hashString, password):
            checked.append(hashString)
            return realVerify(hashString, password)

        self.patch(passhash, "verify", counting)
        return checked


class LoginTests(CheckerTestMixin, SynchronousTestCase):
    """
    U2: checking user names and passwords against users.cnf.
    """

    def test_interface(self):
        """
        U2: the checker is an L{ICredentialsChecker} for user names and
        passwords.
        """
        self.assertTrue(verifyObject(ICredentialsChecker, self.checker))

    def test_success(self):
        """
        U2: the right password yields a L{GatewayUser} with the merged
        groups, vouched for by the internal realm.
        """
        self.assertEqual(self.login("joe.smith", "joe-pw"),
                         GatewayUser("joe.smith", {"Everyone", "Tyche"}, realm="internal"))

    def test_bytesCredentials(self):
        """
        U2: user names and passwords arriving as UTF-8 bytes work the same.
        """
        self.assertEqual(self.login(b"alice", b"alice-pw").user, "alice")

    def test_wrongPassword(self):
        """
        U2: a wrong password is refused with the generic message; the log
        says why, without the password.
        """
        error = self.login("alice", "guess")
        self.assertIsInstance(error, UnauthorizedLogin)
        self.assertEqual(str(error), REFUSED)
        [line] = self.logged(LogLevel.info)[-1:]
        self.assertIn("wrong password", line)
        self.assertIn("alice", line)
        self.assertFalse(any("guess" in text for text in self.logged()))

    def test_failuresIndistinguishable(self):
        """
        U2: unknown, disabled, hash-less and unsupported-format users fail
        exactly as a wrong password does: same exception type and message,
        and one verification each at the cost real users' hashes have.
        """
        checked = self.countVerifications()
        errors = {}
        for name in ("nobody", "disabled", "nohash", "webm", "alice"):
            before = self.pool.calls
            errors[name] = self.login(name, "disabled-pw")
            self.assertEqual(self.pool.calls, before + 1, name)
        self.assertEqual(len(checked), 5)
        self.assertEqual({type(error) for error in errors.values()}, {UnauthorizedLogin})
        self.assertEqual({str(error) for error in errors.values()}, {REFUSED})
        self.assertEqual({passhash.iterationsOf(hashString) for hashString in checked},
                         {TEST_ITERATIONS})
        reasons = self.logged(LogLevel.info)[-5:]
        for reason, line in zip(
                ["unknown user", "disabled", "no hash", "unsupported format", "wrong password"],
                reasons):
            self.assertIn(reason, line)

    def test_unknownUsersCostTheDearestKnownHash(self):
        """
        Issue 16 finding 9d: with hashes of mixed cost in one users.cnf, an
        unknown user is checked at the highest cost any known user has, not
        the most common one: timing cannot tell a known user with a costly
        hash from a name that does not exist.
        """
        users = [UserEntry(name, testHash(name + "-pw"), {"Everyone"}, True) for name in ("a", "b", "c")]
        users.append(UserEntry("admin", passhash.makeHash("admin-pw", iterations=TEST_ITERATIONS * 3),
                               {"Everyone"}, True))
        self.path = writeUsersCnf(self.mktemp(), users, {})
        self.checker = self.makeChecker()
        checked = self.countVerifications()
        self.login("nobody", "guess")
        self.login("admin", "guess")
        self.assertEqual([passhash.iterationsOf(hashString) for hashString in checked],
                         [TEST_ITERATIONS * 3, TEST_ITERATIONS * 3])

    def test_refusedUsersNeverCheckTheirOwnHash(self):
        """
        U2: a disabled user's right password is still refused, and what is
        verified is not the user's hash.
        """
        checked = self.countVerifications()
        self.assertIsInstance(self.login("disabled", "disabled-pw"), UnauthorizedLogin)
        disabledHash = self.checker._entry("disabled").passHash
        self.assertNotEqual(checked, [disabledHash])

    def test_unsupportedReportedOnce(self):
        """
        U2: users with an unsupported hash format are reported at load in
        one line per format, with the format's name and the count, and a
        reload that changes nothing does not report them again.
        """
        self.users.append(UserEntry("webm2", WEBMETHODS_HASH, {"Everyone"}, True))
        writeUsersCnf(self.path, self.users, self.groups)
        del self.events[:]
        checker = self.makeChecker()
        warnings = [line for line in self.logged(LogLevel.warn) if "PBKDF2-HmacSHA256" in line]
        self.assertEqual(len(warnings), 1)
        self.assertIn("2 user(s)", warnings[0])
        self.assertNotIn(WEBMETHODS_HASH, warnings[0])
        self.assertTrue(self.successResultOf(checker.reload()))
        warnings = [line for line in self.logged(LogLevel.warn) if "PBKDF2-HmacSHA256" in line]
        self.assertEqual(len(warnings), 1)

    def test_unsupportedInDemoIsInformation(self):
        """
        U2: in a configuration marked C{demo = true} (the sample), users
        with an unsupported hash are still reported, as information that
        names the demo, not as a warning.
        """
        del self.events[:]
        self.users.append(UserEntry("webm2", WEBMETHODS_HASH, {"Everyone"}, True))
        writeUsersCnf(self.path, self.users, self.groups)
        self.makeChecker(demo=True)
        self.assertEqual([line for line in self.logged(LogLevel.warn) if "PBKDF2-HmacSHA256" in line], [])
        [info] = [line for line in self.logged(LogLevel.info) if "PBKDF2-HmacSHA256" in line]
        self.assertIn("2 user(s)", info)
        self.assertIn("demo = true", info)

    def test_passwordWithNul(self):
        """
        U2: a NUL appended to the right password does not pass.
        """
        self.assertIsInstance(self.login("alice", "alice-pw\0"), UnauthorizedLogin)

    def test_notLoaded(self):
        """
        U2: before L{InternalChecker.load} nobody logs in, and failing
        still costs a verification.
        """
        checker = InternalChecker(self.path, reactor=self.reactor, threadpool=self.pool)
        checked = self.countVerifications()
        d = checker.requestAvatarId(UsernamePassword("alice", "alice-pw"))
        self.failureResultOf(d, UnauthorizedLogin)
        self.assertEqual(checked, [passhash.DUMMY_HASH])
        self.assertEqual(checker.userCount, 0)

    def test_verificationErrorFailsClosed(self):
        """
        U2: an exception while verifying refuses the login with the generic
        message and is logged.
        """
        def broken(hashString, password):
            raise RuntimeError("boom")

        self.patch(passhash, "verify", broken)
        error = self.login("alice", "alice-pw")
        self.assertEqual(str(error), REFUSED)
        self.assertEqual(len([e for e in self.events if "log_failure" in e]), 1)
        self.flushLoggedErrors(RuntimeError)

    def test_attributes(self):
        """
        U2: the checker tells how many users it holds and which file.
        """
        self.assertEqual(self.checker.userCount, 5)
        self.assertEqual(self.checker.path, self.path)

    def test_current(self):
        """
        U2: only present, enabled users with a usable hash may still log in (tickets, reloads).
        """
        self.assertTrue(self.checker.current(GatewayUser("alice")))
        for name in ("nobody", "disabled", "nohash", "webm"):
            self.assertFalse(self.checker.current(GatewayUser(name)), name)


class OverlayTests(CheckerTestMixin, SynchronousTestCase):
    """
    U2: the C{[internal] overlay} gives users.cnf users a hash the gateway
    can verify.
    """

    def writeOverlay(self, text):
        path = self.mktemp()
        with open(path, "w") as stream:
            stream.write(text)
        return path

    def test_overlayWins(self):
        """
        U2: an overlay hash replaces the file's, and lets a user with an
        unsupported webMethods hash in.
        """
        overlay = self.writeOverlay(
            f'alice = "{testHash("new-pw")}"\nwebm = "{testHash("webm-pw")}"\n')
        del self.events[:]
        self.checker = self.makeChecker(overlay=overlay)
        self.assertIsInstance(self.login("alice", "alice-pw"), UnauthorizedLogin)
        self.assertEqual(self.login("alice", "new-pw").user, "alice")
        self.assertEqual(self.login("webm", "webm-pw").user, "webm")
        self.assertFalse(any("PBKDF2-HmacSHA256" in line for line in self.logged()))

    def test_overlayStrangers(self):
        """
        U2: overlay entries for users the file does not have create nobody.
        """
        overlay = self.writeOverlay(f'mallory = "{testHash("m")}"\n')
        self.checker = self.makeChecker(overlay=overlay)
        self.assertIsInstance(self.login("mallory", "m"), UnauthorizedLogin)
        self.assertTrue(any("1 user(s)" in line and "overlay" in line
                            for line in self.logged(LogLevel.warn)))

    def test_overlayMalformed(self):
        """
        U2: an overlay that is not a table of strings fails the load,
        naming the file.
        """
        for text in ("alice = 3\n", "alice = \n"):
            overlay = self.writeOverlay(text)
            checker = InternalChecker(self.path, overlay=overlay, reactor=self.reactor,
                                      threadpool=self.pool)
            error = self.assertRaises(UsersCnfError, checker.load)
            self.assertIn(overlay, str(error))


class CacheTests(CheckerTestMixin, SynchronousTestCase):
    """
    U2: successful verifications are remembered for C{verify_cache_ttl}.
    """

    def test_cacheHit(self):
        """
        U2: a second login with the same password is answered without the
        thread pool or a verification.
        """
        checked = self.countVerifications()
        self.login("alice", "alice-pw")
        self.login("alice", "alice-pw")
        self.assertEqual(len(checked), 1)
        self.assertEqual(self.pool.calls, 1)

    def test_cacheKeyedOnPassword(self):
        """
        U2: a cached success does not admit a different password, and the
        cache does not hold the password.
        """
        self.login("alice", "alice-pw")
        self.assertIsInstance(self.login("alice", "other"), UnauthorizedLogin)
        for key in self.checker._cache.keys():
            self.assertNotIn(b"alice-pw", key)

    def test_cacheExpires(self):
        """
        U2: after C{verifyCacheTTL} seconds the password is verified again.
        """
        checked = self.countVerifications()
        self.login("alice", "alice-pw")
        self.reactor.advance(299)
        self.login("alice", "alice-pw")
        self.assertEqual(len(checked), 1)
        self.reactor.advance(2)
        self.login("alice", "alice-pw")
        self.assertEqual(len(checked), 2)

    def test_noCache(self):
        """
        U2: a TTL of 0 remembers nothing.
        """
        self.checker = self.makeChecker(verifyCacheTTL=0)
        checked = self.countVerifications()
        self.login("alice", "alice-pw")
        self.login("alice", "alice-pw")
        self.assertEqual(len(checked), 2)

    def test_failuresNotCached(self):
        """
        U2: failures are verified every time.
        """
        checked = self.countVerifications()
        self.login("alice", "wrong")
        self.login("alice", "wrong")
        self.assertEqual(len(checked), 2)

    def test_invalidatedOnReload(self):
        """
        U2: a reload forgets every cached verification.
        """
        checked = self.countVerifications()
        self.login("alice", "alice-pw")
        self.assertTrue(self.successResultOf(self.checker.reload()))
        self.login("alice", "alice-pw")
        self.assertEqual(len(checked), 2)

    def test_changedPasswordAfterReload(self):
        """
        U2: once a reload changes a password, the old one is refused even
        though it was cached.
        """
        self.login("alice", "alice-pw")
        self.users[0] = UserEntry("alice", testHash("rotated"), {"Everyone"}, True)
        writeUsersCnf(self.path, self.users, self.groups)
        self.assertTrue(self.successResultOf(self.checker.reload()))
        self.assertIsInstance(self.login("alice", "alice-pw"), UnauthorizedLogin)
        self.assertEqual(self.login("alice", "rotated").user, "alice")


class ReloadTests(CheckerTestMixin, SynchronousTestCase):
    """
    U2: users.cnf changes are picked up without a restart.
    """

    def test_reloadSwaps(self):
        """
        U2: a reload brings new users in and takes removed ones out.
        """
        self.users = [user for user in self.users if user.name != "joe.smith"]
        self.users.append(UserEntry("bob", testHash("bob-pw"), (), True))
        writeUsersCnf(self.path, self.users, {})
        self.assertTrue(self.successResultOf(self.checker.reload()))
        self.assertEqual(self.login("bob", "bob-pw").user, "bob")
        self.assertIsInstance(self.login("joe.smith", "joe-pw"), UnauthorizedLogin)
        self.assertFalse(self.checker.current(GatewayUser("joe.smith")))
        self.assertTrue(self.checker.current(GatewayUser("bob")))

    def test_reloadDisables(self):
        """
        U2: a user disabled by a reload is no longer active.
        """
        self.users[0] = UserEntry("alice", self.users[0].passHash, {"Everyone"}, False)
        writeUsersCnf(self.path, self.users, self.groups)
        self.successResultOf(self.checker.reload())
        self.assertFalse(self.checker.current(GatewayUser("alice")))

    def test_brokenFileKeepsOldUsers(self):
        """
        U2: a reload of a broken file keeps the users loaded before and
        logs why, with the line number.
        """
        with open(self.path, "a") as stream:
            stream.write("<trailing/>\n")
        self.assertFalse(self.successResultOf(self.checker.reload()))
        self.assertEqual(self.login("alice", "alice-pw").user, "alice")
        self.assertEqual(self.checker.userCount, 5)
        [line] = self.logged(LogLevel.error)
        self.assertIn("keeping the 5 users", line)
        self.assertIn("line ", line)

    def test_missingFileKeepsOldUsers(self):
        """
        U2: a reload while the file is gone keeps the old users.
        """
        os.remove(self.path)
        self.assertFalse(self.successResultOf(self.checker.reload()))
        self.assertTrue(self.checker.current(GatewayUser("alice")))

    def test_reloadRunsInThreadPool(self):
        """
        U2: reloads parse in the thread pool, never on the reactor thread.
        """
        before = self.pool.calls
        self.successResultOf(self.checker.reload())
        self.assertEqual(self.pool.calls, before + 1)

    def test_reloadDuringVerification(self):
        """
        U2: a login whose hash was replaced while it was being verified is
        refused, and not cached.
        """
        self.pool = ManualThreadPool()
        self.checker = self.makeChecker()
        d = self.checker.requestAvatarId(UsernamePassword("alice", "alice-pw"))
        self.users[0] = UserEntry("alice", testHash("rotated"), {"Everyone"}, True)
        writeUsersCnf(self.path, self.users, self.groups)
        self.checker.load()
        self.pool.runAll()
        self.failureResultOf(d, UnauthorizedLogin)
        self.assertEqual(len(self.checker._cache), 0)
        self.assertIn("changed during verification", self.logged(LogLevel.info)[-1])

    def test_mtimeChanged(self):
        """
        U2: L{InternalChecker.mtimeChanged} notices a rewritten file.
        """
        self.assertFalse(self.checker.mtimeChanged())
        writeUsersCnf(self.path, self.users, self.groups)
        self.assertTrue(self.checker.mtimeChanged())
        self.successResultOf(self.checker.reload())
        self.assertFalse(self.checker.mtimeChanged())

    def test_failedReloadNotRetriedUntilChange(self):
        """
        U2: a broken file is not re-read on every poll, only once it changes
        again.
        """
        with open(self.path, "a") as stream:
            stream.write("<trailing/>\n")
        self.successResultOf(self.checker.reload())
        self.assertFalse(self.checker.mtimeChanged())

    def test_watcher(self):
        """
        U2: L{UsersCnfWatcher} reloads when the file changes, and not
        otherwise.
        """
        watcher = UsersCnfWatcher(self.checker, interval=2.0)
        watcher.startService()
        self.addCleanup(watcher.stopService)
        calls = self.pool.calls
        self.reactor.advance(2.0)
        self.assertEqual(self.pool.calls, calls)
        self.users.append(UserEntry("bob", testHash("bob-pw"), (), True))
        writeUsersCnf(self.path, self.users, self.groups)
        self.reactor.advance(2.0)
        self.assertEqual(self.pool.calls, calls + 1)
        self.assertTrue(self.checker.current(GatewayUser("bob")))


class RealThreadPoolTests(TestCase):
    """
    U2: verification in a real thread pool, answered on trial's reactor.
    """

    def setUp(self):
        users, groups = standardUsers()
        self.pool = ThreadPool(minthreads=0, maxthreads=2, name="test-internal")
        self.pool.start()
        self.addCleanup(self.pool.stop)
        self.checker = InternalChecker(writeUsersCnf(self.mktemp(), users, groups),
                                       threadpool=self.pool)
        self.checker.load()

    def test_success(self):
        """
        U2: the right password logs in through the thread pool.
        """
        d = self.checker.requestAvatarId(UsernamePassword("alice", "alice-pw"))
        d.addCallback(lambda avatar: self.assertEqual(avatar.user, "alice"))
        return d

    def test_failure(self):
        """
        U2: a wrong password fails through the thread pool.
        """
        d = self.checker.requestAvatarId(UsernamePassword("alice", "nope"))
        return self.assertFailure(d, UnauthorizedLogin)

    def test_reload(self):
        """
        U2: a reload parses in the thread pool and fires L{True}.
        """
        return self.checker.reload().addCallback(self.assertTrue)


class LocateTests(SynchronousTestCase):
    """
    U3: where users.cnf is looked for.
    """

    def setUp(self):
        self.instance = self.mktemp()
        self.apigw = self.mktemp()
        self.local = os.path.join(self.instance, "config", "users.cnf")
        self.fallback = os.path.join(
            self.apigw, "IntegrationServer", "instances", "default", "config", "users.cnf")

    def create(self, path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        users, groups = standardUsers()
        writeUsersCnf(path, users, groups)

    def test_localFirst(self):
        """
        U3: the instance's own config/users.cnf wins over the API Gateway's.
        """
        self.create(self.local)
        self.create(self.fallback)
        self.assertEqual(locateUsersCnf(self.instance, self.apigw), self.local)

    def test_apigwFallback(self):
        """
        U3: without a local copy, the API Gateway's users.cnf is used.
        """
        self.create(self.fallback)
        self.assertEqual(locateUsersCnf(self.instance, self.apigw), self.fallback)

    def test_neitherFound(self):
        """
        U3: neither found fails with one line naming both paths and the fix.
        """
        error = self.assertRaises(ConfigError, locateUsersCnf, self.instance, self.apigw)
        message = str(error)
        self.assertIn(self.local, message)
        self.assertIn(self.fallback, message)
        self.assertIn("kaazing-promo provision", message)
        self.assertIn("apigw_dir", message)
        self.assertNotIn("\n", message)

    def test_noApigwDir(self):
        """
        U3: without apigw_dir the message still names both places, and says
        apigw_dir is not set.
        """
        error = self.assertRaises(ConfigError, locateUsersCnf, self.instance, None)
        self.assertIn(self.local, str(error))
        self.assertIn("apigw_dir not set", str(error))

    def test_explicitRelative(self):
        """
        U3: an explicit relative path is taken against the instance
        directory, and wins over the lookup.
        """
        explicit = os.path.join(self.instance, "elsewhere.cnf")
        self.create(explicit)
        self.create(self.local)
        self.assertEqual(locateUsersCnf(self.instance, self.apigw, "elsewhere.cnf"), explicit)

    def test_explicitMissing(self):
        """
        U3: an explicit path that does not exist is an error naming it.
        """
        error = self.assertRaises(ConfigError, locateUsersCnf, self.instance, self.apigw,
                                  "missing.cnf")
        self.assertIn(os.path.join(self.instance, "missing.cnf"), str(error))


class ProvisionTests(SynchronousTestCase):
    """
    U5: copying the API Gateway's users.cnf into the instance.
    """

    def setUp(self):
        self.apigw = self.mktemp()
        self.instance = self.mktemp()
        self.source = os.path.join(
            self.apigw, "IntegrationServer", "instances", "default", "config", "users.cnf")
        os.makedirs(os.path.dirname(self.source))
        self.users, self.groups = standardUsers()
        writeUsersCnf(self.source, self.users, self.groups)
        self.target = os.path.join(self.instance, "config", "users.cnf")

    def test_copies(self):
        """
        U5: the copy lands in config/users.cnf with mode 0640, identical,
        and the checker can use it.
        """
        self.assertEqual(provision(self.apigw, self.instance), self.target)
        self.assertEqual(open(self.target, "rb").read(), open(self.source, "rb").read())
        self.assertEqual(stat.S_IMODE(os.stat(self.target).st_mode), 0o640)
        self.assertEqual(locateUsersCnf(self.instance, None), self.target)

    def test_sourceNeverWritten(self):
        """
        U5: the source is only ever opened for reading and is unchanged.
        """
        before = os.stat(self.source)
        content = open(self.source, "rb").read()
        modes = []
        realOpen = builtins.open

        def spy(file, mode="r", *args, **kwargs):
            if file == self.source:
                modes.append(mode)
            return realOpen(file, mode, *args, **kwargs)

        self.patch(builtins, "open", spy)
        provision(self.apigw, self.instance)
        self.assertEqual(set(modes), {"rb"})
        self.assertEqual(open(self.source, "rb").read(), content)
        self.assertEqual(os.stat(self.source).st_mtime_ns, before.st_mtime_ns)

    def test_refusesToOverwrite(self):
        """
        U5: a different existing copy is kept unless forced.
        """
        os.makedirs(os.path.dirname(self.target))
        with open(self.target, "wb") as stream:
            stream.write(b"<Values/>")
        error = self.assertRaises(ConfigError, provision, self.apigw, self.instance)
        self.assertIn("--force", str(error))
        self.assertEqual(open(self.target, "rb").read(), b"<Values/>")
        provision(self.apigw, self.instance, force=True)
        self.assertEqual(open(self.target, "rb").read(), open(self.source, "rb").read())

    def test_identicalCopyIsFine(self):
        """
        U5: provisioning twice is not an error.
        """
        provision(self.apigw, self.instance)
        self.assertEqual(provision(self.apigw, self.instance), self.target)

    def test_invalidSource(self):
        """
        U5: a source that does not parse is refused before anything is
        written.
        """
        with open(self.source, "wb") as stream:
            stream.write(b"<Values version='2.0'><record name='users'>")
        error = self.assertRaises(ConfigError, provision, self.apigw, self.instance)
        self.assertIn(self.source, str(error))
        self.assertFalse(os.path.exists(self.target))

    def test_missingSource(self):
        """
        U5: no API Gateway users.cnf is an error naming where it looked.
        """
        error = self.assertRaises(ConfigError, provision, self.mktemp(), self.instance)
        self.assertIn("users.cnf", str(error))
        self.assertFalse(os.path.exists(self.target))


class HashPasswordTests(SynchronousTestCase):
    """
    U2: C{kaazing-promo hash-password}.
    """

    def hashPassword(self, text):
        stdout, stderr = io.StringIO(), io.StringIO()
        code = hashPasswordCommand(io.StringIO(text), stdout, stderr,
                                   iterations=TEST_ITERATIONS)
        return code, stdout.getvalue(), stderr.getvalue()

    def test_roundTrip(self):
        """
        U2: the last line printed is a hash of the password read.
        """
        code, out, _ = self.hashPassword("s3cret\n")
        self.assertEqual(code, 0)
        hashString = out.splitlines()[-1]
        self.assertTrue(passhash.verify(hashString, "s3cret"))

    def test_stripsOneNewlineOnly(self):
        """
        U2: one trailing newline is stripped; a second one, and spaces, are
        part of the password.
        """
        for given, password in [("pw\n\n", "pw\n"), ("pw", "pw"), (" pw \n", " pw ")]:
            code, out, _ = self.hashPassword(given)
            self.assertEqual(code, 0)
            hashString = out.splitlines()[-1]
            self.assertTrue(passhash.verify(hashString, password), repr(given))
            self.assertFalse(passhash.verify(hashString, password.strip() + "x"))

    def test_emptyRefused(self):
        """
        U2: an empty password (or a lone newline) is refused.
        """
        for given in ("", "\n"):
            code, out, err = self.hashPassword(given)
            self.assertEqual(code, 1)
            self.assertEqual(out, "")
            self.assertIn("empty", err)

    def test_nulRefused(self):
        """
        U2: a password containing NUL is refused, not hashed.
        """
        code, out, err = self.hashPassword("p\0w\n")
        self.assertEqual((code, out), (1, ""))
        self.assertIn("NUL", err)

    def test_defaultCost(self):
        """
        U2: without an explicit cost, hashes use the default iterations.
        """
        stdout = io.StringIO()
        self.assertEqual(hashPasswordCommand(io.StringIO("pw"), stdout, io.StringIO()), 0)
        self.assertEqual(passhash.iterationsOf(stdout.getvalue().splitlines()[-1]),
                         passhash.DEFAULT_ITERATIONS)


class ModuleTests(SynchronousTestCase):
    """
    U2: module-level guarantees.
    """

    def test_usersCnfErrorIsConfigError(self):
        """
        U2: load errors are L{ConfigError}s, so start-up prints them as one
        line.
        """
        self.assertTrue(issubclass(UsersCnfError, ConfigError))
        self.assertIs(internal.UsersCnfError, UsersCnfError)


class HashingPriorityTests(SynchronousTestCase):
    """
    Issue 19, login storms: the internal realm hashes in threads nicer than
    the reactor, so that the reactor gets a core first while every core
    hashes.
    """

    def niceOf(self, thread):
        seen = []

        def record():
            seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        worker = thread(target=record)
        worker.start()
        worker.join(10)
        return seen[0]

    def test_hashingThreadsAreNicer(self):
        if not sys.platform.startswith("linux"):
            raise SkipTest("a thread's own nice value is Linux's")
        mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        self.assertEqual(self.niceOf(threading.Thread), mine)
        self.assertEqual(self.niceOf(internal.HashingThread), min(19, mine + internal.HASHING_NICENESS))

    def test_poolUsesHashingThreads(self):
        """
        The pool the checker makes for itself (no pool given) starts its
        workers as L{internal.HashingThread}s.
        """
        users, groups = standardUsers()
        reactor = ThreadlessReactor()
        checker = InternalChecker(writeUsersCnf(self.mktemp(), users, groups), reactor=reactor)
        pool = checker._pool()
        self.addCleanup(pool.stop)
        self.assertIs(pool.threadFactory, internal.HashingThread)
