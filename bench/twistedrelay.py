"""
The bench's "twisted-relay" row: the least a Twisted relay can do, so that a
result shows how much of the gateway's cost is Twisted's and how much its
own.

Every byte from a client goes to a new connection to the broker and back,
as twisted.protocols.portforward relays it (Twisted's buffered
C{transport.write}, sent on the reactor's next turn), with TCP_NODELAY on
both sides as socat's row has it; no AMQP parsing, no authentication, no
login, nothing logged per connection.

    python bench/twistedrelay.py LISTEN_PORT BROKER_PORT
"""

import sys

from twisted.internet import reactor
from twisted.protocols import portforward
from twisted.python import log


class _Client(portforward.ProxyClient):
    def connectionMade(self):
        self.transport.setTcpNoDelay(True)
        portforward.ProxyClient.connectionMade(self)


class _ClientFactory(portforward.ProxyClientFactory):
    protocol = _Client
    noisy = False


class _Server(portforward.ProxyServer):
    clientProtocolFactory = _ClientFactory

    def connectionMade(self):
        self.transport.setTcpNoDelay(True)
        portforward.ProxyServer.connectionMade(self)


def main(listenPort, brokerPort):
    factory = portforward.ProxyFactory("127.0.0.1", brokerPort)
    factory.protocol = _Server
    factory.noisy = False
    reactor.listenTCP(listenPort, factory, backlog=1024, interface="127.0.0.1")
    log.startLogging(sys.stderr, setStdout=False)
    reactor.run()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
