"""
Users, users.cnf files, shared keys and thread pool stand-ins shared by the
realm and cluster tests.
"""

import base64
import os

from twisted.internet.task import Clock
from twisted.python.failure import Failure

from kaazing_promo.auth import passhash
from kaazing_promo.auth.userscnf import UserEntry, renderUsersCnf

#: Cheap enough for tests; production hashes use the default cost.
TEST_ITERATIONS = 1000

#: A webMethods hash of the documented length, which nothing can verify.
WEBMETHODS_HASH = "{PBKDF2-HmacSHA256}" + base64.b64encode(bytes(range(40))).decode()


def testHash(password):
    """
    @return: a hash of C{password} at L{TEST_ITERATIONS}.
    """
    return passhash.makeHash(password, iterations=TEST_ITERATIONS)


def standardUsers():
    """
    The users most tests start from: one of each kind U2 names.

    @return: C{(users, groups)} for L{renderUsersCnf}.
    """
    users = [
        UserEntry("alice", testHash("alice-pw"), {"Everyone"}, True),
        UserEntry("joe.smith", testHash("joe-pw"), {"Everyone"}, True),
        UserEntry("disabled", testHash("disabled-pw"), {"Everyone"}, False),
        UserEntry("nohash", None, {"Everyone"}, True),
        UserEntry("webm", WEBMETHODS_HASH, {"Everyone"}, True),
    ]
    groups = {"Tyche": ["joe.smith"], "Everyone": [user.name for user in users]}
    return users, groups


def writeUsersCnf(path, users, groups, **kwargs):
    """
    Write a users.cnf and give it a modification time different from any
    earlier version's, so that change detection never depends on the
    file system's timestamp resolution.
    """
    with open(path, "wb") as stream:
        stream.write(renderUsersCnf(users, groups, **kwargs))
    writeUsersCnf.generation += 1
    stamp = 1_000_000_000 + writeUsersCnf.generation
    os.utime(path, (stamp, stamp))
    return path


writeUsersCnf.generation = 0


def writeUsersFile(directory, users, iterations=TEST_ITERATIONS):
    """
    A users.cnf in the real shape, at C{directory}/config/users.cnf.

    @param users: C{{name: (password, groups)}}, every user enabled.
    @param iterations: the hash cost (the default is cheap; the login
        attack tests use the production cost).
    @return: its path.
    """
    os.makedirs(os.path.join(directory, "config"), exist_ok=True)
    entries = [UserEntry(name, passhash.makeHash(password, iterations=iterations), frozenset(groups), True)
               for name, (password, groups) in users.items()]
    return writeUsersCnf(os.path.join(directory, "config", "users.cnf"), entries, {})


#: A cluster's shared key, long enough for [cluster].
KEY_TEXT = "0123456789abcdef0123456789abcdef-shared"


def privateFile(testCase, text, mode=0o600):
    """
    A file only its owner reads (as secrets must be), holding C{text}.

    @return: its absolute path.
    """
    path = testCase.mktemp()
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    os.chmod(path, mode)
    return os.path.abspath(path)


class SynchronousThreadPool:
    """
    Runs each call at once in the calling thread, counting them.
    """

    def __init__(self):
        self.calls = 0

    def callInThreadWithCallback(self, onResult, f, *args, **kwargs):
        self.calls += 1
        try:
            result = f(*args, **kwargs)
        except BaseException:
            onResult(False, Failure())
        else:
            onResult(True, result)


class ManualThreadPool(SynchronousThreadPool):
    """
    Holds calls until L{runAll}, so a test can act while one is "running".
    """

    def __init__(self):
        SynchronousThreadPool.__init__(self)
        self.pending = []

    def callInThreadWithCallback(self, onResult, f, *args, **kwargs):
        self.pending.append((onResult, f, args, kwargs))

    def runAll(self):
        while self.pending:
            onResult, f, args, kwargs = self.pending.pop(0)
            SynchronousThreadPool.callInThreadWithCallback(self, onResult, f, *args, **kwargs)


class ThreadlessReactor(Clock):
    """
    A L{Clock} whose C{callFromThread} calls at once: with a synchronous
    pool, L{twisted.internet.threads.deferToThreadPool} then fires before
    it returns.
    """

    def __init__(self):
        Clock.__init__(self)
        self.triggers = []

    def callFromThread(self, f, *args, **kwargs):
        f(*args, **kwargs)

    def addSystemEventTrigger(self, phase, eventType, f, *args, **kwargs):
        self.triggers.append((phase, eventType, f))
