"""
Issue 16 finding 9a (X5): a WebSocket listener with C{hosts} refuses every
request for another host name (DNS rebinding), before anything else.
"""

from twisted.trial.unittest import SynchronousTestCase
from twisted.web import resource
from twisted.web.resource import getChildForRequest
from twisted.web.test.requesthelper import DummyRequest

from kaazing_promo.transport.hosts import HostCheckedRoot, hostAllowed, parseHosts, splitHost

SERVED = parseHosts(["127.0.0.1:8080", "localhost:8080", "Gateway.Example.com", "[::1]:8080"])


class SplitHostTests(SynchronousTestCase):

    def test_forms(self):
        self.assertEqual(splitHost("localhost:8080"), ("localhost", 8080))
        self.assertEqual(splitHost("LocalHost."), ("localhost", None))
        self.assertEqual(splitHost("127.0.0.1"), ("127.0.0.1", None))
        self.assertEqual(splitHost("[0:0::1]:8080"), ("::1", 8080))

    def test_notAHost(self):
        for value in ("", "::1", "a b", "x:0", "x:65536", "x:", "u@x", "x/y", "[::1", "[x]:1", "x\x00", "é.example"):
            self.assertRaises(ValueError, splitHost, value)


class HostAllowedTests(SynchronousTestCase):

    def assertAllowed(self, values, expected=True):
        self.assertEqual(hostAllowed(values, SERVED), expected, values)

    def test_listed(self):
        """
        An entry with a port is that host on that port; one without is
        that name on any port.  Case and a trailing dot do not matter.
        """
        for host in (b"127.0.0.1:8080", b"localhost:8080", b"LOCALHOST.:8080", b"[::1]:8080",
                     b"gateway.example.com", b"gateway.example.com:443"):
            self.assertAllowed([host])

    def test_notListed(self):
        """
        A rebinding name, a listed name on another port, a listed address
        without its port: refused.
        """
        for host in (b"evil.example:8080", b"localhost", b"127.0.0.1:8081", b"[::1]", b"localhost.evil.example:8080"):
            self.assertAllowed([host], False)

    def test_malformedOrMissing(self):
        """
        No Host, two Host headers, a value that is not a host: refused.
        """
        for values in (None, [], [b"localhost:8080", b"localhost:8080"], [b"\xff"], [b"localhost:8080/x"]):
            self.assertAllowed(values, False)

    def test_noList(self):
        """
        Without C{hosts}, any Host passes (as before).
        """
        self.assertTrue(hostAllowed([b"evil.example"], None))
        self.assertTrue(hostAllowed(None, None))


class HostCheckedRootTests(SynchronousTestCase):
    """
    The site root a listener with C{hosts} gets: every path, the root's own
    rendering included, answers 421 for another host.
    """

    def setUp(self):
        self.root = resource.Resource()
        self.page = resource.Resource()
        self.page.render = lambda request: b"page"
        self.root.putChild(b"amqp", self.page)
        self.root.render = lambda request: b"root"
        self.checked = HostCheckedRoot(self.root, ["localhost:8080"])

    def request(self, path, host):
        request = DummyRequest(path)
        if host is not None:
            request.requestHeaders.setRawHeaders(b"host", [host])
        return request

    def test_served(self):
        request = self.request([b"amqp"], b"localhost:8080")
        self.assertIs(getChildForRequest(self.checked, request), self.page)
        self.assertEqual(self.checked.render(self.request([], b"localhost:8080")), b"root")

    def test_misdirected(self):
        for path in ([b"amqp"], [b"amqp", b"ticket"], [b""], []):
            for host in (b"evil.example:8080", None):
                request = self.request(path, host)
                getChildForRequest(self.checked, request).render(request)
                self.assertEqual(request.responseCode, 421, (path, host))
