"""
Fair admission of password checks.

A password check is the one costly thing a stranger can make the gateway
do (PBKDF2 with 600,000 iterations, or a request to the API Gateway), so
checks do not run as they arrive: they wait in one queue per source host,
at most C{slots} run at once, and a free slot goes to the waiting host that
has used the fewest checks lately.  A host that floods the gateway thus
waits behind everyone else, and a person logging in from anywhere else is
next.  A check whose client has gone by its turn is dropped unrun.
"""

import collections
import itertools

from twisted.internet import defer


class ClientGone(Exception):
    """
    The client of a waiting check went away before its turn: it was not run.
    """


class Overloaded(Exception):
    """
    The queue was full and this check was the one given up (the newest of
    the host with the most checks waiting).
    """


class _Job:
    __slots__ = ("host", "stillThere", "work", "deferred", "order")

    def __init__(self, host, stillThere, work, order):
        self.host = host
        self.stillThere = stillThere
        self.work = work
        self.deferred = defer.Deferred()
        self.order = order


class FairScheduler:
    """
    Runs password checks at most C{slots} at a time, fairly between hosts.

    @param clock: an L{twisted.internet.interfaces.IReactorTime}.
    @param slots: checks run at once (the realm's own capacity: a thread
        per core for hashes, C{max_concurrent} requests for the API Gateway).
    @param maxWaiting: checks that may wait, all hosts together.
    @param window: seconds over which a host's use is counted.
    """

    #: Past this many hosts remembered, hosts idle for a window are forgotten.
    sweepAt = 4096

    def __init__(self, clock, slots, maxWaiting=1024, window=60.0):
        self._clock = clock
        self.slots = slots
        self.maxWaiting = maxWaiting
        self.window = window
        self.running = 0
        self.waiting = 0
        self._queues = {}
        self._bySize = {}
        self._largest = 0
        self._used = {}
        self._order = itertools.count()

    def submit(self, host, stillThere, work):
        """
        Run C{work()} once a slot is free and C{host} is the fairest next.

        @param stillThere: called just before C{work} would run; if it
            returns false the client has gone and C{work} is not run.
        @param work: returns a value or a L{defer.Deferred}.
        @return: a L{defer.Deferred} with C{work}'s result, or failing with
            L{ClientGone} or L{Overloaded}.
        """
        job = _Job(host, stillThere, work, next(self._order))
        queue = self._queues.setdefault(host, collections.deque())
        self._resized(host, len(queue), len(queue) + 1)
        queue.append(job)
        self.waiting += 1
        d = job.deferred
        if self.waiting > self.maxWaiting:
            self._shed()
        self._pump()
        return d

    def _shed(self):
        """
        Over C{maxWaiting}: give up the newest check of the host with the
        most waiting — unless none has more than one, since every host keeps
        a place (a storm of people logging in from as many addresses is
        bounded by the listeners' connection limits, not refused here).
        """
        # Hosts by how many checks they have waiting: finding the biggest
        # costs the per-host cap at most, not a scan of every waiting host
        # (a storm of thousands of hosts arrives while this is full).
        size = self._largest
        while size > 1 and not self._bySize.get(size):
            size -= 1
        self._largest = size
        if size < 2:
            return
        host = max(self._bySize[size], key=self._recentUse)
        job = self._take(host, newest=True)
        job.deferred.errback(Overloaded())

    def _take(self, host, newest=False):
        queue = self._queues[host]
        self._resized(host, len(queue), len(queue) - 1)
        job = queue.pop() if newest else queue.popleft()
        if not queue:
            del self._queues[host]
        self.waiting -= 1
        return job

    def _resized(self, host, old, new):
        if old:
            hosts = self._bySize[old]
            hosts.discard(host)
            if not hosts:
                del self._bySize[old]
        if new:
            self._bySize.setdefault(new, set()).add(host)
            self._largest = max(self._largest, new)

    def _recentUse(self, host):
        starts = self._used.get(host)
        if not starts:
            return 0
        horizon = self._clock.seconds() - self.window
        while starts and starts[0] <= horizon:
            starts.popleft()
        if not starts:
            del self._used[host]
            return 0
        return len(starts)

    def _next(self):
        """
        The waiting host that has used the fewest checks in the window;
        between equals, the one waiting longest.
        """
        return min(self._queues, key=lambda h: (self._recentUse(h), self._queues[h][0].order))

    def _pump(self):
        while self.running < self.slots and self._queues:
            job = self._take(self._next())
            if not job.stillThere():
                job.deferred.errback(ClientGone())
                continue
            self._used.setdefault(job.host, collections.deque()).append(self._clock.seconds())
            self.running += 1
            d = defer.maybeDeferred(job.work)
            d.addBoth(self._done, job.deferred)

    def _done(self, result, deferred):
        self.running -= 1
        # callback() with a Failure runs the errbacks.
        deferred.callback(result)
        if len(self._used) > self.sweepAt:
            for host in list(self._used):
                self._recentUse(host)
        self._pump()
