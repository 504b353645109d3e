"""
The web root a WebSocket listener serves at C{/} (C{webroot}): the demo
page, or an application's own.

L{twisted.web.static.File} follows symlinks wherever they point, serves
anything that is not a directory (a FIFO would block the reactor on open)
and answers a NUL in the path with a 500 and a traceback.  L{WebRoot} serves
regular files whose real path is inside the web root's real path, and
directories only through their C{index.html}; a path segment no file could
have is a 400.
"""

import os
import stat

from twisted.web import pages, static

#: What a URL path segment, once percent-decoded, may not hold to name a
#: file in the web root.  Browsers resolve dot segments and never send
#: C{.} or C{..}.
_MALFORMED = ("\x00", "/", "\\")


class WebRoot(static.File):
    """
    The web root, without directory listings.  Every answer from it (files,
    redirects, 4xx) carries the page's security headers; the endpoint's own
    resources (C{<path>}, C{/ticket}, C{/whoami}) are children and keep theirs.

    @ivar realRoot: the real path (symlinks resolved) of the directory the
        listener serves; the children a request walks through share it.
    """

    #: No inline script or style, no plugins, no framing; the page fetches
    #: from its own origin and opens WebSockets (C{'self'} alone does not
    #: cover C{ws:} in every browser).
    contentSecurityPolicy = (
        "default-src 'self'; connect-src 'self' ws: wss:; object-src 'none'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
    securityHeaders = [
        (b"Content-Security-Policy", contentSecurityPolicy.encode("ascii")),
        (b"X-Content-Type-Options", b"nosniff"),
        (b"Referrer-Policy", b"no-referrer"),
        (b"X-Frame-Options", b"DENY"),
        # Revalidate every time (Last-Modified makes that a 304): an upgraded
        # gateway never runs with a stale page.
        (b"Cache-Control", b"no-cache"),
    ]
    # Not left to the host's mime.types: a browser refuses a module script
    # served as anything but JavaScript, and nosniff needs exact types.
    contentTypes = dict(static.File.contentTypes, **{
        ".html": "text/html; charset=utf-8",
        ".js": "text/javascript; charset=utf-8",
        ".mjs": "text/javascript; charset=utf-8",
        ".css": "text/css; charset=utf-8",
        ".txt": "text/plain; charset=utf-8",
        ".svg": "image/svg+xml",
        ".png": "image/png",
    })

    badRequest = pages.errorPage(400, "Bad Request", "The path cannot name a file here.")

    def __init__(self, path, defaultType="application/octet-stream", *args, **kwargs):
        static.File.__init__(self, path, defaultType, *args, **kwargs)
        self.realRoot = os.path.realpath(self.path)

    def getChild(self, path, request):
        for name, value in self.securityHeaders:
            request.setHeader(name, value)
        try:
            name = path.decode("utf-8")
        except UnicodeDecodeError:
            return self.badRequest
        if name in (".", "..") or any(character in name for character in _MALFORMED):
            return self.badRequest
        child = static.File.getChild(self, name, request)
        if isinstance(child, WebRoot) and not child.isServable():
            return self.childNotFound
        return child

    def isServable(self):
        """
        @return: whether this path, symlinks resolved, is a regular file or
            a directory inside the web root.
        """
        real = os.path.realpath(self.path)
        if real != self.realRoot and not real.startswith(os.path.join(self.realRoot, "")):
            return False
        try:
            mode = os.stat(real).st_mode
        except OSError:
            return False
        return stat.S_ISREG(mode) or stat.S_ISDIR(mode)

    def createSimilarFile(self, path):
        child = static.File.createSimilarFile(self, path)
        child.realRoot = self.realRoot
        return child

    def directoryListing(self):
        return pages.forbidden()
