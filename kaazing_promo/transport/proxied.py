"""
Listeners behind a load balancer (C{haproxy:} endpoints): whose PROXY
header to believe.

A PROXY header says which client a connection is for, and the gateway's
audit log, failed-login limits and per-source limits all count that
client.  Twisted's C{haproxy:} endpoint believes the header from any peer,
so anyone who can reach the port directly could claim any source address.
L{TrustedProxyFactory} sits inside Twisted's
L{twisted.protocols.haproxy.HAProxyWrappingFactory}, where a connection's
address is still the TCP peer's (the header has not been read yet), and
cuts off every peer outside the listener's C{trusted_proxies}.
"""

import ipaddress

from twisted.internet import protocol
from twisted.logger import Logger

#: Addresses whose refusal has been logged, per factory, at most: a flood
#: from many addresses must not grow memory or the log without bound.
_LOGGED_LIMIT = 1000


class _Untrusted(protocol.Protocol):
    """
    A connection from a peer that may not send a PROXY header: cut off at
    once, before a byte of it is read.
    """

    def connectionMade(self):
        self.transport.abortConnection()


class TrustedProxyFactory(protocol.Factory):
    """
    The listener's factory, for connections from its trusted proxies only.

    Trusted connections get the listener's own protocol, with no wrapper of
    ours on the data path.

    @param factory: the listener's factory.
    @param trusted: the listener's C{trusted_proxies}: addresses and
        networks (validated by the configuration).
    """

    log = Logger()

    def __init__(self, factory, trusted):
        self.wrappedFactory = factory
        self._networks = tuple(ipaddress.ip_network(entry) for entry in trusted)
        self._logged = set()

    def trusts(self, address):
        """
        @param address: the TCP peer (an L{IPv4Address} or L{IPv6Address};
            a peer of another kind has no address to trust).
        @return: whether it is one of the trusted proxies.
        """
        try:
            peer = ipaddress.ip_address(getattr(address, "host", None))
        except ValueError:
            return False
        if peer.version == 6 and peer.ipv4_mapped is not None:
            # An IPv4 proxy as a dual-stack socket reports it.
            peer = peer.ipv4_mapped
        return any(peer in network for network in self._networks)

    def buildProtocol(self, addr):
        if self.trusts(addr):
            return self.wrappedFactory.buildProtocol(addr)
        host = getattr(addr, "host", None)
        if host not in self._logged and len(self._logged) < _LOGGED_LIMIT:
            self._logged.add(host)
            self.log.warn("refused connections from {peer}: it is not in trusted_proxies, so it may not send a "
                          "PROXY header (further refusals of it are not logged)", peer=str(host))
        proto = _Untrusted()
        proto.factory = self
        return proto

    def doStart(self):
        self.wrappedFactory.doStart()

    def doStop(self):
        self.wrappedFactory.doStop()

    def logPrefix(self):
        return self.wrappedFactory.logPrefix()
