"""
Issue 16 finding 8 (X5, X6): the web root serves regular files inside
itself and nothing else, and a malformed path is a 4xx with nothing in the
log but a line.
"""

import os

from twisted.internet import defer, reactor
from twisted.logger import LogLevel, formatEvent
from twisted.trial import unittest
from twisted.web import static
from twisted.web.resource import getChildForRequest
from twisted.web.test.requesthelper import DummyRequest

from kaazing_promo.config import Listener
from kaazing_promo.transport.context import ListenerContext
from kaazing_promo.transport.webroot import WebRoot
from kaazing_promo.transport.websocket import GatewaySite
from tests.logcapture import captureEvents
from tests.processes import waitFor
from tests.rawclients import rawRequest


def makeWebRoot(testCase):
    """
    A web root in a temporary directory, beside a directory it must not
    reach::

        outside/secret.txt
        root/index.html, root/page.js, root/sub/index.html, root/empty/
        root/alias.html -> index.html          (inside: served)
        root/subalias -> sub                   (inside: served)
        root/passwd -> /etc/passwd             (outside: 404)
        root/out -> ../outside                 (outside: 404)
        root/escape.html -> ../outside/secret.txt
        root/loop -> loop                      (a loop: 404)
        root/fifo                              (not a regular file: 404)

    @return: the path of C{root}.
    """
    base = os.path.abspath(testCase.mktemp())
    root, outside = os.path.join(base, "root"), os.path.join(base, "outside")
    for directory in (os.path.join(root, "sub"), os.path.join(root, "empty"), outside):
        os.makedirs(directory)
    for path, text in ((os.path.join(root, "index.html"), "home"), (os.path.join(root, "page.js"), "js"),
                       (os.path.join(root, "sub", "index.html"), "sub home"),
                       (os.path.join(outside, "secret.txt"), "secret")):
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    for name, target in (("alias.html", "index.html"), ("subalias", "sub"), ("passwd", "/etc/passwd"),
                         ("out", "../outside"), ("escape.html", "../outside/secret.txt"), ("loop", "loop")):
        os.symlink(target, os.path.join(root, name))
    os.mkfifo(os.path.join(root, "fifo"))
    return root


def childFor(root, *segments):
    """
    @return: the resource the web root gives for the path C{segments}
        (without rendering it: a FIFO would block).
    """
    return getChildForRequest(WebRoot(root), DummyRequest(list(segments)))


def statusOf(page):
    """
    @return: the status an error page answers with.
    """
    request = DummyRequest([])
    page.render(request)
    return request.responseCode


class ConfinementTests(unittest.SynchronousTestCase):
    """
    Finding 8: only regular files whose real path is inside the web root's
    real path; symlinks that stay inside are followed.
    """

    def setUp(self):
        self.root = makeWebRoot(self)

    def assertServes(self, segments, path):
        child = childFor(self.root, *segments)
        self.assertIsInstance(child, static.File, segments)
        self.assertEqual(os.path.realpath(child.path), os.path.realpath(path))

    def assertNotFound(self, segments):
        child = childFor(self.root, *segments)
        self.assertFalse(isinstance(child, static.File), segments)
        self.assertEqual(statusOf(child), 404, segments)

    def test_filesInside(self):
        self.assertServes([b"index.html"], os.path.join(self.root, "index.html"))
        self.assertServes([b""], os.path.join(self.root, "index.html"))
        self.assertServes([b"sub", b""], os.path.join(self.root, "sub", "index.html"))

    def test_symlinksInside(self):
        """
        A symlink to a file or directory inside the web root is served.
        """
        self.assertServes([b"alias.html"], os.path.join(self.root, "index.html"))
        self.assertServes([b"subalias", b"index.html"], os.path.join(self.root, "sub", "index.html"))

    def test_symlinkToEtcPasswd(self):
        """
        A symlink to C{/etc/passwd} inside the web root is not found.
        """
        self.assertNotFound([b"passwd"])

    def test_symlinksOutside(self):
        """
        A symlink to a file or a directory outside, or one that loops, is
        not found; nothing under the outside directory is reached.
        """
        self.assertNotFound([b"escape.html"])
        self.assertNotFound([b"out"])
        self.assertNotFound([b"out", b"secret.txt"])
        self.assertNotFound([b"loop"])

    def test_notRegularFile(self):
        """
        A FIFO (reading it would block the reactor) is not found.
        """
        self.assertNotFound([b"fifo"])

    def test_directoryWithoutIndex(self):
        """
        A directory is served only through its index.html: none, no listing.
        """
        self.assertEqual(statusOf(childFor(self.root, b"empty", b"")), 403)

    def test_rootThroughASymlink(self):
        """
        A web root configured as a symlink confines to its target.
        """
        link = os.path.join(os.path.dirname(self.root), "rootlink")
        os.symlink(self.root, link)
        child = childFor(link, b"index.html")
        self.assertIsInstance(child, static.File)
        self.assertEqual(statusOf(childFor(link, b"passwd")), 404)

    def test_malformedSegments(self):
        """
        A segment no file in the web root can have (NUL, not UTF-8, a
        slash or backslash, C{.} or C{..}) is a bad request.
        """
        for segment in (b"\x00", b"a\x00b", b"\xff", b"dir\xe9", b"..", b".", b"../etc", b"a\\b"):
            self.assertEqual(statusOf(childFor(self.root, segment)), 400, segment)
            self.assertEqual(statusOf(childFor(self.root, b"sub", segment)), 400, segment)


class WebRootOverHTTPTests(unittest.TestCase):
    """
    Finding 8 through a real site: the answers, and a log with no traceback.
    """

    def setUp(self):
        self.root = makeWebRoot(self)
        listener = Listener(name="web", protocol="websocket", endpoint="tcp:0", webroot=self.root)
        context = ListenerContext(listener, None, None, None, reactor, None)
        site = GatewaySite(WebRoot(self.root), context)
        site.displayTracebacks = False
        port = reactor.listenTCP(0, site, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        # The server side of each answered connection ends a little after the
        # client's: wait for it, so that no channel's timer outlives the test.
        self.addCleanup(waitFor, reactor, lambda: context.connections == 0, timeout=5, interval=0.05)
        self.port = port.getHost().port
        self.events = captureEvents(self)

    @defer.inlineCallbacks
    def get(self, path):
        response = yield rawRequest(
            self.port, b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        head, _, body = response.partition(b"\r\n\r\n")
        return int(head.split(b" ")[1]), head, body

    @defer.inlineCallbacks
    def test_answers(self):
        expected = {
            b"/": (200, b"home"), b"/alias.html": (200, b"home"), b"/sub/": (200, b"sub home"),
            b"/passwd": (404, None), b"/out/secret.txt": (404, None), b"/escape.html": (404, None),
            b"/%00": (400, None), b"/a%00b": (400, None), b"/sub/%00": (400, None), b"/%ff": (400, None),
            b"/%2e%2e/": (400, None), b"/..%2fetc%2fpasswd": (400, None), b"/sub/%2e%2e": (400, None),
        }
        for path, (code, body) in expected.items():
            answer, head, content = yield self.get(path)
            self.assertEqual(answer, code, path)
            self.assertIn(b"X-Content-Type-Options: nosniff", head, path)
            if body is not None:
                self.assertEqual(content, body, path)
            self.assertNotIn(b"root:", content, path)
            self.assertNotIn(b"secret", content, path)
        self.assertEqual([formatEvent(event) for event in self.events
                          if "log_failure" in event or event.get("log_level", LogLevel.info) >= LogLevel.warn],
                         [])
