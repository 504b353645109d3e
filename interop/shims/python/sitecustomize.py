"""
Loaded by every Python process of a peer suite (interop/run puts this
directory first on C{PYTHONPATH}).

The suites hard-code the broker's address (C{localhost:5672},
C{127.0.0.1:5672}).  Instead of editing their test files, this rewrites the
address a socket connects to: a loopback connection to a port named in
C{INTEROP_REDIRECT} (C{"5672=41234,5671=41235"}) goes to 127.0.0.1 on the
mapped port, the dedicated RabbitMQ node or a gateway's listener.  Every
other connection is left alone.  Without C{INTEROP_REDIRECT} nothing is
changed.  With C{INTEROP_REDIRECT_LOG} set, each redirect appends one line
to that file (the harness counts them).
"""

import os
import socket


def _parseRedirects(text):
    redirects = {}
    for pair in (text or "").split(","):
        source, _, target = pair.partition("=")
        if source.strip() and target.strip():
            redirects[int(source)] = int(target)
    return redirects


_LOOPBACK = frozenset(["localhost", "127.0.0.1", "::1", "::ffff:127.0.0.1"])


def redirectedAddress(family, address, redirects):
    """
    @return: the address to connect to instead of C{address}, or
        C{address} itself when it is not a redirected loopback port.
    """
    if family not in (socket.AF_INET, socket.AF_INET6) or not isinstance(address, tuple) or len(address) < 2:
        return address
    host, port = address[0], address[1]
    if host not in _LOOPBACK or port not in redirects:
        return address
    if family == socket.AF_INET6:
        # An IPv6 socket (localhost resolved to ::1) reaches the IPv4-only
        # listener through the v4-mapped address.
        return ("::ffff:127.0.0.1", redirects[port]) + tuple(address[2:])
    return ("127.0.0.1", redirects[port])


def _install(redirects, logPath):
    originalConnect = socket.socket.connect
    originalConnectEx = socket.socket.connect_ex

    def redirect(family, address):
        target = redirectedAddress(family, address, redirects)
        if target is not address and logPath:
            with open(logPath, "a") as log:
                log.write(f"python {os.getpid()} {address[0]}:{address[1]} -> {target[0]}:{target[1]}\n")
        return target

    def connect(self, address):
        return originalConnect(self, redirect(self.family, address))

    def connect_ex(self, address):
        return originalConnectEx(self, redirect(self.family, address))

    socket.socket.connect = connect
    socket.socket.connect_ex = connect_ex


_redirects = _parseRedirects(os.environ.get("INTEROP_REDIRECT"))
if _redirects:
    _install(_redirects, os.environ.get("INTEROP_REDIRECT_LOG"))
