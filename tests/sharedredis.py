"""
The machine's Redis for the cluster tests: links under a key prefix of the
test's own, and throwaway C{redis-server}s.  (Apart from tests/support.py,
which a test imports to show that a gateway without [cluster] loads no
Redis client.)
"""

import os
import shutil
import subprocess

from twisted.internet import defer, reactor

from kaazing_promo.cluster.redislink import RedisLink
from tests.processes import waitFor

#: The machine's Redis.
REDIS = "tcp:host=127.0.0.1:port=6379"


class RedisMixin:
    """
    Links to the machine's Redis under a key prefix of the test's own,
    whose keys are deleted afterwards.
    """

    @defer.inlineCallbacks
    def link(self, description=REDIS, wait=True):
        link = RedisLink(reactor, description, timeout=2.0)
        link.startService()
        self.addCleanup(link.stopService)
        if wait:
            self.assertTrue((yield waitFor(reactor, lambda: link.up, timeout=10)), f"{link!r} never came up")
        return link

    @property
    def prefix(self):
        if not hasattr(self, "_prefix"):
            self._prefix = f"kp-test-{os.getpid()}-{os.urandom(4).hex()}:"
            self.addCleanup(self._deleteKeys)
        return self._prefix

    @defer.inlineCallbacks
    def keys(self, link):
        """
        @return: C{{key: milliseconds to live}} of every key under the prefix.
        """
        keys = yield link.call("keys", self.prefix + "*")
        ttls = {}
        for key in keys:
            ttls[key] = yield link.call("execute_command", "PTTL", key)
        return ttls

    def throwawayRedis(self, port):
        """
        Start a C{redis-server} of the test's own on C{port} (killed at the
        end of the test at the latest).

        @return: its L{subprocess.Popen}.
        """
        server = shutil.which("redis-server")
        if server is None:
            self.skipTest("redis-server is not installed")
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory, exist_ok=True)
        process = subprocess.Popen(
            [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", directory], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(lambda: process.poll() is None and (process.kill(), process.wait()))
        return process

    @defer.inlineCallbacks
    def _deleteKeys(self):
        link = RedisLink(reactor, REDIS)
        link.startService()
        try:
            yield waitFor(reactor, lambda: link.up, timeout=10)
            keys = yield link.call("keys", self._prefix + "*")
            if keys:
                yield link.call("delete", keys)
        finally:
            yield link.stopService()
