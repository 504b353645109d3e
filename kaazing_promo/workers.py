"""
C{workers = N}: N gateway processes sharing each listening socket.

Twisted endpoints have no C{SO_REUSEPORT}; instead the first process (the
master, the one twistd runs) binds every listener once and hands the sockets
to N-1 worker processes it spawns (C{childFDs}), which adopt them with
L{IReactorSocket.adoptStreamPort}.  The kernel then gives each new
connection to whichever process accepts first.  Browser tickets are signed
with a key the master hands its workers, so any process redeems them.

Workers run C{python -m kaazing_promo.workers}; they die with their master
(C{PR_SET_PDEATHSIG}) and are stopped with SIGTERM when it stops.
"""

import ctypes
import os
import signal
import socket
import sys

from twisted.application import service
from twisted.internet import defer, protocol
from twisted.logger import Logger

import kaazing_promo
from kaazing_promo.errors import ConfigError

KEY_ENVIRONMENT = "KAAZING_PROMO_WORKER_KEY"
_FIRST_FD = 3


def checkWorkerEndpoints(config):
    """
    @raise ConfigError: C{workers > 1} with a listener whose endpoint is not
        plain C{tcp:} (its socket could not be handed over as it is).
    """
    if config.workers <= 1:
        return
    for listener in config.listeners:
        if not listener.endpoint.startswith("tcp:"):
            raise ConfigError(
                f"{config.path}: [[listeners]] {listener.name!r} key 'endpoint': workers = {config.workers} "
                f"needs plain tcp: endpoints, not {listener.endpoint!r}; use workers = 1 and run one gateway "
                "per port behind the load balancer instead")


class AdoptedPortService(service.Service):
    """
    Listens on a socket inherited from the master.
    """

    def __init__(self, reactor, fileno, factory):
        self._reactor = reactor
        self._fileno = fileno
        self._factory = factory
        self.port = None

    def startService(self):
        service.Service.startService(self)
        probe = socket.socket(fileno=os.dup(self._fileno))
        family = probe.family
        probe.close()
        self.port = self._reactor.adoptStreamPort(self._fileno, family, self._factory)
        os.close(self._fileno)

    def stopService(self):
        service.Service.stopService(self)
        return defer.maybeDeferred(self.port.stopListening)


class _WorkerProcess(protocol.ProcessProtocol):
    def __init__(self, pool, index):
        self.pool = pool
        self.index = index
        self.ended = defer.Deferred()

    def processEnded(self, reason):
        self.pool.log.info("worker {index} ended: {reason}", index=self.index, reason=reason.getErrorMessage())
        self.ended.callback(None)


class WorkerPool(service.Service):
    """
    The master's side: spawns the workers once its listeners listen, and
    stops them with it.
    """

    log = Logger()

    def __init__(self, config, reactor, ticketKey, whenListening, apigwDir=None):
        """
        @param config: the master's L{kaazing_promo.config.Config}.
        @param ticketKey: the key the workers sign tickets and tokens with.
        @param whenListening: returns a L{defer.Deferred} firing with
            C{{listener name: IListeningPort}} once the master listens.
        """
        self._config = config
        self._reactor = reactor
        self._ticketKey = ticketKey
        self._whenListening = whenListening
        self._apigwDir = apigwDir
        self.processes = []

    def startService(self):
        service.Service.startService(self)
        self._whenListening().addCallback(self._spawn)

    def _spawn(self, ports):
        config = self._config
        names = [listener.name for listener in config.listeners]
        childFDs = {0: "w", 1: 1, 2: 2}
        for offset, name in enumerate(names):
            childFDs[_FIRST_FD + offset] = ports[name].fileno()
        arguments = [sys.executable, "-m", "kaazing_promo.workermain", "--config", os.path.abspath(config.path)]
        if self._apigwDir:
            arguments += ["--apigw-dir", self._apigwDir]
        # The workers run the very code the master runs, wherever it was imported from.
        home = os.path.dirname(os.path.dirname(os.path.abspath(kaazing_promo.__file__)))
        path = os.pathsep.join(filter(None, [home, os.environ.get("PYTHONPATH")]))
        environment = dict(os.environ, PYTHONPATH=path, **{KEY_ENVIRONMENT: self._ticketKey.hex()})
        for index in range(1, config.workers):
            worker = _WorkerProcess(self, index)
            self._reactor.spawnProcess(worker, sys.executable, arguments, env=environment, childFDs=childFDs)
            self.processes.append(worker)
        self.log.info("{count} worker process(es) share the listeners", count=len(self.processes))

    def signalAll(self, name):
        """
        Send the signal C{name} (C{"HUP"}, C{"TERM"}) to every worker still running.
        """
        for worker in self.processes:
            if worker.transport is not None and worker.transport.pid is not None:
                worker.transport.signalProcess(name)

    def stopService(self):
        service.Service.stopService(self)
        self.signalAll("TERM")
        return defer.DeferredList([worker.ended for worker in self.processes])


def _dieWithParent():
    # Linux: SIGTERM this process when the master goes, however it goes.
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
