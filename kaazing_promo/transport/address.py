"""
Client addresses as the audit log and the limits see them.
"""


def describePeer(address):
    """
    @param address: an L{twisted.internet.interfaces.IAddress} (behind the
        PROXY protocol, the original client's, as C{haproxy:} endpoints give it).
    @return: C{"host:port"}, or the address's C{repr} for other kinds.
    """
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if host is None:
        return str(address)
    return f"{host}:{port}"


def hostOf(source):
    """
    @param source: a L{describePeer} string.
    @return: its host part, what per-source limits count.
    """
    return source.rsplit(":", 1)[0]
