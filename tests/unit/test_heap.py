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

    def test_thawedAfterAReloadFrozenAgainWhenIdle(self):
        """
        After a reload the old heap goes back to the collector; with no
        connection open it is collected and frozen again at once.
        """
        self.freezer.freeze()
        self.freezer.thaw()
        self.assertEqual(self.collector.calls, ["collect", "freeze", "unfreeze", "collect", "freeze"])
        self.assertTrue(self.freezer.frozen)

    def test_thawedAfterAReloadUnderLoadStaysThawed(self):
        """
        A reload while connections are open thaws and stays thawed: their
        objects must stay collectable; a later reload with none open
        freezes again.
        """
        self.freezer.freeze()
        self.open = 3
        self.freezer.thaw()
        self.assertEqual(self.collector.calls, ["collect", "freeze", "unfreeze"])
        self.assertFalse(self.freezer.frozen)
        self.open = 0
        self.freezer.thaw()
        self.assertEqual(self.collector.calls[3:], ["collect", "freeze"])
        self.assertTrue(self.freezer.frozen)
