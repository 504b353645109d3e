"""
Giving memory back after a busy spell.

A gateway's memory follows its connections up; it does not follow them back
down by itself.  CPython frees a closed connection's objects at once (the
gateway keeps none of them in a reference cycle: tests/integration/test_memory.py), but
what Twisted's own connectors leave in cycles waits for the collector's
rare full collection, and neither pymalloc nor glibc hands freed pages back
to the system unless asked.  So, like a garbage-collected runtime's
background scavenger, the L{MemoryReclaimer} looks every few seconds at how
many connections were open; once that number has stayed at or under a
quarter of its peak since the last reclaim for a whole interval, it runs one
full collection and glibc's C{malloc_trim(0)}, which returns every free page.
That costs tens of milliseconds of the reactor's time (50-115 ms measured
after 2,000 connections) once per quiet spell, not per connection, and
nothing while the load holds.

The L{HeapFreezer} keeps the start-up heap out of full collections.
"""

import ctypes
import gc
import os
import time

from twisted.application import service
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

log = Logger(namespace="kaazing_promo.ops.memory")

#: Seconds between two looks at the number of open connections.
INTERVAL = 5.0

#: Reclaim once the open connections are at most this share of their peak.
QUIET_SHARE = 0.25

#: A peak below this many connections is not worth a reclaim.
MINIMUM_PEAK = 50


def _mallocTrim():
    """
    @return: glibc's C{malloc_trim}, or L{None} on a C library without it
        (musl, macOS): there the collection alone is done.
    """
    try:
        # The symbols the process already has: glibc's, on Linux.
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


MALLOC_TRIM = _mallocTrim()


def residentBytes():
    """
    @return: this process's resident set size in bytes, or L{None} where
        C{/proc} does not tell.
    """
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class MemoryReclaimer(service.Service):
    """
    @param connectionCounts: a callable returning C{(connections open now,
        most open at once since the previous call)}, so that a burst
        between two looks counts.
    @param clock: an L{IReactorTime}.
    @param collect: the full collection (L{gc.collect}).
    @param trim: glibc's C{malloc_trim}, or L{None} where there is none.
    """

    def __init__(self, connectionCounts, clock, collect=gc.collect, trim=MALLOC_TRIM, rss=residentBytes):
        self._counts = connectionCounts
        self._clock = clock
        self._collect = collect
        self._trim = trim
        self._rss = rss
        self._peak = 0
        self._loop = None
        #: How many reclaims ran.
        self.reclaims = 0

    def startService(self):
        service.Service.startService(self)
        self._loop = LoopingCall(self.look)
        self._loop.clock = self._clock
        self._loop.start(INTERVAL, now=False)

    def stopService(self):
        service.Service.stopService(self)
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    def look(self):
        """
        One look: after a whole interval in which the connections stayed at
        or under a quarter of their peak (of at least L{MINIMUM_PEAK}), reclaim.
        """
        now, recent = self._counts()
        recent = max(recent, now)
        self._peak = max(self._peak, recent)
        if self._peak >= MINIMUM_PEAK and recent <= self._peak * QUIET_SHARE:
            self.reclaim(now)

    def reclaim(self, now=0):
        """
        One full collection, then C{malloc_trim(0)}; the peak starts again
        from the connections open now.
        """
        before = self._rss()
        started = time.perf_counter()
        unreachable = self._collect()
        if self._trim is not None:
            self._trim(0)
        took = time.perf_counter() - started
        after = self._rss()
        self.reclaims += 1
        log.info("memory reclaimed after a peak of {peak} connections ({now} open): RSS {before} -> {after} MiB "
                 "in {ms:.1f} ms ({unreachable} unreachable objects)",
                 peak=self._peak, now=now, before=_mib(before), after=_mib(after), ms=took * 1000,
                 unreachable=unreachable)
        self._peak = now


def _mib(size):
    return "?" if size is None else f"{size / 2 ** 20:.1f}"


class HeapFreezer(service.Service):
    """
    Keeps the heap the gateway starts with out of the collector's full
    collections.

    A full collection walks every object the collector tracks, and the
    objects made at start-up (the modules, the users of a large users.cnf,
    the configuration) are most of them: each full collection a login storm
    triggers stopped the reactor for tens of milliseconds to walk that heap
    again (issue 19: 22-46 ms, 5 times in a storm of 400 users; the
    start-up heap alone ~20 ms).  Like a pre-forking server, the gateway
    collects once when the reactor starts, before any client is accepted,
    then moves what is left into the collector's permanent generation
    (C{gc.freeze}): reference counting still frees those objects, full
    collections no longer walk them.

    A frozen object in a reference cycle is never collected, so nothing is
    frozen while a client connection is open (its connectors' cycles would
    outlive it).  After a reload L{refreeze} collects and freezes anew when
    no connection is open; while some are, the heap stays frozen as it is:
    what the reload replaced (users, settings: no cycles among them) is
    freed by reference counting, and the new objects stay with the collector
    until a reload finds the gateway idle.

    Installed by the twistd plugin and the workers, never by a
    L{GatewayService} a test builds: freezing is the process's business.

    @param reactor: an L{IReactorCore}.
    @param openConnections: a callable returning how many client
        connections this process has open.
    @param collector: the L{gc} module (tests pass a fake).
    """

    def __init__(self, reactor, openConnections, collector=gc):
        self.setName("heap")
        self._reactor = reactor
        self._open = openConnections
        self._gc = collector
        #: Whether this freezer's objects are in the permanent generation.
        self.frozen = False

    def startService(self):
        service.Service.startService(self)
        self._reactor.callWhenRunning(self.freeze)

    def freeze(self):
        """
        One full collection, then everything left frozen, unless a client
        connection is open or the heap is frozen already.

        @return: whether the heap is frozen now.
        """
        if not self.frozen and self._open() == 0:
            started = time.perf_counter()
            self._gc.collect()
            self._gc.freeze()
            self.frozen = True
            log.info("{count} start-up objects kept out of full collections (frozen in {ms:.1f} ms)",
                     count=self._gc.get_freeze_count(), ms=(time.perf_counter() - started) * 1000)
        return self.frozen

    def refreeze(self):
        """
        After a reload: with no client connection open, the frozen objects
        back to the collector, one full collection (the replaced users and
        settings go), and everything left frozen again; otherwise nothing.

        @return: whether the heap was frozen anew.
        """
        if self._open() != 0:
            return False
        if self.frozen:
            self._gc.unfreeze()
            self.frozen = False
        return self.freeze()
