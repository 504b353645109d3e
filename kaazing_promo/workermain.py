"""
A worker process of C{workers = N}: C{python -m kaazing_promo.workermain},
spawned by L{kaazing_promo.workers.WorkerPool}.  Like twistd's plugin, it
is a composition root: it builds a L{kaazing_promo.tap.GatewayService} over
the master's sockets.
"""

import os
import sys

from kaazing_promo.workers import _FIRST_FD, KEY_ENVIRONMENT, _dieWithParent


def main(argv=None):
    """
    A worker: the master's configuration, its sockets (fds 3, 4, … in
    listener order) and its ticket key.
    """
    import argparse

    from twisted.internet import reactor
    from twisted.logger import globalLogBeginner, textFileLogObserver

    from kaazing_promo.config import loadConfig
    from kaazing_promo.tap import GatewayService

    _dieWithParent()
    parser = argparse.ArgumentParser(prog="kaazing-promo worker")
    parser.add_argument("--config", required=True)
    parser.add_argument("--apigw-dir", default=None)
    options = parser.parse_args(argv)
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
    config = loadConfig(options.config, options.apigw_dir)
    inherited = {listener.name: _FIRST_FD + offset for offset, listener in enumerate(config.listeners)}
    gateway = GatewayService(config, reactor, options.apigw_dir, inheritedPorts=inherited,
                             ticketKey=bytes.fromhex(os.environ.pop(KEY_ENVIRONMENT)), freezeHeap=True)
    gateway.startService()
    reactor.addSystemEventTrigger("before", "shutdown", gateway.stopService)
    reactor.run()


if __name__ == "__main__":
    main()
