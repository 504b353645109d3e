"""
The host names a WebSocket listener serves (its C{hosts} key).

The same-origin check compares a browser's C{Origin} with the C{Host} it
sent, and a DNS-rebinding page (its own name now resolving to the
gateway's address) passes it: its origin and its C{Host} are both the
attacker's name.  A listener that lists the names it is reached by refuses
every request for any other, before anything else looks at it: the page,
the WebSocket upgrade, C{<path>/ticket} and C{<path>/whoami}.
"""

import ipaddress
import re

from twisted.web import pages, resource

_HOST = re.compile(r"(?:\[(?P<ipv6>[0-9A-Fa-f:.]+)\]|(?P<name>[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?))"
                   r"(?::(?P<port>[0-9]{1,5}))?")

#: What a request for a host the listener does not serve gets (RFC 9110
#: section 15.5.20: the request was directed at a server that does not
#: answer for that authority).
MISDIRECTED = pages.errorPage(421, "Misdirected Request", "This gateway does not serve that host name.")


def splitHost(value):
    """
    @param value: a C{Host} header value or a C{hosts} entry: C{name},
        C{name:port}, C{[ipv6]} or C{[ipv6]:port}.
    @return: C{(host, port)}: the name lower-cased without a trailing dot
        (or the IPv6 address, compressed), and the port or L{None}.
    @raise ValueError: C{value} is none of those.
    """
    match = _HOST.fullmatch(value)
    if match is None:
        raise ValueError(f"{value!r} is not a host name, an address or either with :port")
    port = match.group("port")
    if port is not None and not 0 < int(port) < 65536:
        raise ValueError(f"{value!r} has port {port}, out of range")
    if match.group("ipv6") is not None:
        host = ipaddress.IPv6Address(match.group("ipv6")).compressed
    else:
        host = match.group("name").lower().rstrip(".")
    return host, None if port is None else int(port)


def parseHosts(entries):
    """
    @param entries: a listener's C{hosts} (validated by the configuration),
        or L{None}.
    @return: the allow-list L{hostAllowed} takes.
    """
    return None if entries is None else frozenset(splitHost(entry) for entry in entries)


def hostAllowed(values, allowed):
    """
    The one C{Host} check.

    @param values: the request's C{Host} header values (L{bytes}), or
        L{None}; HTTP/1.1 requires exactly one.
    @param allowed: what L{parseHosts} made of the listener's C{hosts}
        (L{None}: any host).
    @return: whether the request is for a host the listener serves: one
        C{Host} equal to an entry with a port, or whose name is an entry
        without one (any port).
    """
    if allowed is None:
        return True
    if not values or len(values) != 1:
        return False
    try:
        host, port = splitHost(values[0].decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return False
    return (host, port) in allowed or (host, None) in allowed


class HostCheckedRoot(resource.Resource):
    """
    A site's root that answers 421 to any request whose C{Host} the
    listener does not serve, and hands every other request to the real
    root (in the manner of L{twisted.web.vhost.NameVirtualHost}).
    """

    def __init__(self, root, hosts):
        resource.Resource.__init__(self)
        self._root = root
        self._allowed = parseHosts(hosts)

    def _allows(self, request):
        return hostAllowed(request.requestHeaders.getRawHeaders(b"host"), self._allowed)

    def getChildWithDefault(self, path, request):
        if not self._allows(request):
            return MISDIRECTED
        return self._root.getChildWithDefault(path, request)

    def render(self, request):
        if not self._allows(request):
            return MISDIRECTED.render(request)
        return self._root.render(request)
