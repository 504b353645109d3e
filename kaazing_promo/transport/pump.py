"""
Backpressure between a client's transport and its broker connection, for
both listeners' L{IClientLink}.
"""


class CoupledTransports:
    """
    The L{IClientLink} part every listener's protocol shares: C{couple} and
    C{uncouple} over its C{transport}.
    """

    def couple(self, brokerTransport, maxPendingBytes):
        clientTransport = self.transport
        for transport in (brokerTransport, clientTransport):
            # TLS and wrapped transports have no bufferSize of their own.
            if hasattr(transport, "bufferSize"):
                transport.bufferSize = maxPendingBytes
        clientTransport.registerProducer(brokerTransport, True)
        brokerTransport.registerProducer(clientTransport, True)

    def uncouple(self, brokerTransport):
        clientTransport = self.transport
        clientTransport.unregisterProducer()
        brokerTransport.unregisterProducer()
        clientTransport.resumeProducing()
