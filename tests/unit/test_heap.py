"""
Tests for L{kaazing_promo.ops.memory.HeapFreezer}: the start-up heap kept out
of full collections, never a connection's objects (issue 19, the login
storm's full collections).
"""

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from kaazing_promo.ops.memory import HeapFreezer


class FakeCollector:
    """
    Stands for the L{gc} module: records what was asked of it.
    """

    def __init__(self):
        self.calls = []
        self.permanent = 0

    def collect(self):
        self.calls.append("collect")
        return 0

    def freeze(self):
        self.calls.append("freeze")
        self.permanent = 1234

    def unfreeze(self):
        self.calls.append("unfreeze")
        self.permanent = 0

    def get_freeze_count(self):
        return self.permanent


class HeapFreezerTests(SynchronousTestCase):

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.collector = FakeCollector()
        self.open = 0
        self.freezer = HeapFreezer(self.reactor, lambda: self.open, self.collector)

    def startReactor(self):
        for hook in self.reactor.whenRunningHooks:
            hook[0](*hook[1], **hook[2])

    def test_frozenOnceTheReactorRuns(self):
        """
        Starting the service freezes nothing yet; once the reactor runs
        (before any client is accepted) one full collection, then the
        freeze, in that order.
        """
        self.freezer.startService()
        self.assertEqual(self.collector.calls, [])
        self.assertFalse(self.freezer.frozen)
        self.startReactor()
        self.assertEqual(self.collector.calls, ["collect", "freeze"])
        self.assertTrue(self.freezer.frozen)
        self.assertEqual(self.freezer.name, "heap")

    def test_notWhileAConnectionIsOpen(self):
        """
        A connection's objects are never frozen: with one open, nothing is.
        """
        self.open = 1
        self.assertFalse(self.freezer.freeze())
        self.assertEqual(self.collector.calls, [])

    def test_notTwice(self):
        self.freezer.freeze()
        self.assertTrue(self.freezer.freeze())
        self.assertEqual(self.collector.calls, ["collect", "freeze"])

    def test_afterAReloadWhenIdleCollectedAndFrozenAnew(self):
        """
        After a reload with no connection open, the old heap goes back to
        the collector, is collected, and what is left frozen again.
        """
        self.freezer.freeze()
        self.assertTrue(self.freezer.refreeze())
        self.assertEqual(self.collector.calls, ["collect", "freeze", "unfreeze", "collect", "freeze"])
        self.assertTrue(self.freezer.frozen)

    def test_afterAReloadUnderLoadLeftFrozenAsItIs(self):
        """
        A reload while connections are open changes nothing: the start-up
        heap stays frozen (out of full collections) and no connection's
        objects are frozen; a later reload with none open freezes anew.
        """
        self.freezer.freeze()
        self.open = 3
        self.assertFalse(self.freezer.refreeze())
        self.assertEqual(self.collector.calls, ["collect", "freeze"])
        self.assertTrue(self.freezer.frozen)
        self.open = 0
        self.assertTrue(self.freezer.refreeze())
        self.assertEqual(self.collector.calls[2:], ["unfreeze", "collect", "freeze"])

    def test_afterAReloadNeverFrozenYet(self):
        """
        A reload before the first freeze (a connection was open when the
        reactor started) freezes once the gateway is idle.
        """
        self.open = 1
        self.freezer.startService()
        self.startReactor()
        self.assertFalse(self.freezer.frozen)
        self.open = 0
        self.assertTrue(self.freezer.refreeze())
        self.assertEqual(self.collector.calls, ["collect", "freeze"])
