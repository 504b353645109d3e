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
