"""
Issue 17: the listeners' protocols in memory, the way twisted.words tests
IRCUser: the real factory over a real L{ListenerContext}, a
L{StringTransport}, bytes fed one call at a time, a clock advanced by hand.
No socket, no broker.
"""

from twisted.internet import defer, task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from kaazing_promo.amqp.broker import BrokerStartCache
from kaazing_promo.amqp.codec import PROTOCOL_HEADER, decodeMethod, encodeMethod, encodePlainResponse
from kaazing_promo.amqp.frames import FrameReader
from kaazing_promo.auth.avatar import GatewayUser
from kaazing_promo.config import Listener, Promotion
from kaazing_promo.interfaces import IClientLink
from kaazing_promo.promotion import ConsolidatedPromoter
from kaazing_promo.secrets import SecretStore
from kaazing_promo.transport.context import ListenerContext
from kaazing_promo.transport.tcp import AMQPListenerFactory
from kaazing_promo.transport.websocket import GatewayHTTPChannel, buildSite


class RecordingAuthenticator:
    """
    Answers every login with C{result}; remembers the attempts.
    """

    anonymous = GatewayUser("anonymous", realm="anonymous")

    def __init__(self, result):
        self.result = result
        self.attempts = []

    def authenticate(self, attempt, audit=True):
        self.attempts.append(attempt)
        return self.result


class PendingConnector:
    """
    A broker connector whose connections never complete (the tests stop before).
    """

    def __init__(self):
        self.asked = []

    def connect(self, session):
        self.asked.append(session)
        return defer.Deferred()


def methods(data):
    return [decodeMethod(payload).qualifiedName for _, _, payload, _ in FrameReader(1 << 20).feed(data)]


class ListenerTestMixin:

    def context(self, protocol="amqp", **options):
        self.clock = task.Clock()
        secrets = SecretStore(inline={"webuser": "pw"})
        secrets.load()
        self.connector = PendingConnector()
        self.authenticator = RecordingAuthenticator(defer.succeed(GatewayUser("joe.smith")))
        listener = Listener(name="test", protocol=protocol, endpoint="tcp:0", **options)
        return ListenerContext(listener, ConsolidatedPromoter(Promotion(user="webuser"), secrets),
                               self.connector, BrokerStartCache(), self.clock, self.authenticator)

    def connect(self, factory, host="10.0.0.7", port=40000):
        protocol = factory.buildProtocol(IPv4Address("TCP", host, port))
        transport = StringTransport(peerAddress=IPv4Address("TCP", host, port))
        protocol.makeConnection(transport)
        return protocol, transport


class AMQPListenerInMemoryTests(ListenerTestMixin, SynchronousTestCase):

    def test_X1_headerByteByByteThenOwnStart(self):
        """
        X1: the protocol header may come a byte at a time; the gateway
        answers it with its own Start, and the broker is not contacted.
        """
        protocol, transport = self.connect(AMQPListenerFactory(self.context()))
        verifyObject(IClientLink, protocol)
        for byte in PROTOCOL_HEADER:
            self.assertEqual(transport.value(), b"")
            protocol.dataReceived(bytes([byte]))
        self.assertEqual(methods(transport.value()), ["connection.start"])
        self.assertEqual(self.connector.asked, [])

    def test_X1_startOkGoesToTheAuthenticator(self):
        """
        X1: the Start-Ok's PLAIN credentials become a login attempt of this
        listener, from the client's host; only then is the broker contacted.
        """
        protocol, transport = self.connect(AMQPListenerFactory(self.context()))
        protocol.dataReceived(PROTOCOL_HEADER)
        startOk = encodeMethod(0, "connection.start-ok", client_properties={}, mechanism="PLAIN",
                               response=encodePlainResponse("joe.smith", "pw"), locale="en_US")
        for index in range(len(startOk)):
            protocol.dataReceived(startOk[index:index + 1])
        [attempt] = self.authenticator.attempts
        self.assertEqual((attempt.username, attempt.password, attempt.host, attempt.source),
                         ("joe.smith", "pw", "10.0.0.7", "10.0.0.7:40000"))
        self.assertEqual(len(self.connector.asked), 1)

    def test_16_5_silentClientClosedAtTheDeadline(self):
        """
        Issue 16 #5: a client that sends nothing is aborted at handshake_timeout from accept.
        """
        protocol, transport = self.connect(AMQPListenerFactory(self.context(handshake_timeout=3.0)))
        self.clock.advance(2.9)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(0.2)
        self.assertTrue(transport.disconnecting or transport.disconnected)

    def test_19_loginWaitIsNotTheClients(self):
        """
        Issue 19: while the client's login waits for the gateway's answer
        (its turn in a storm's login queue), the handshake deadline stands
        still; once answered, the time that was left runs on.
        """
        context = self.context(handshake_timeout=3.0)
        pending = defer.Deferred()
        self.authenticator.result = pending
        protocol, transport = self.connect(AMQPListenerFactory(context))
        protocol.dataReceived(PROTOCOL_HEADER)
        self.clock.advance(1.0)
        protocol.dataReceived(encodeMethod(0, "connection.start-ok", client_properties={}, mechanism="PLAIN",
                                           response=encodePlainResponse("joe.smith", "pw"), locale="en_US"))
        self.clock.advance(60.0)
        self.assertFalse(transport.disconnecting)
        pending.callback(GatewayUser("joe.smith"))
        self.clock.advance(1.9)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(0.2)
        self.assertTrue(transport.disconnecting or transport.disconnected)

    def test_16_5_admittedAtAccept(self):
        """
        Issue 16 #5: the connection over max_connections_per_source is closed
        at accept, before it sends a byte; another host is admitted.
        """
        factory = AMQPListenerFactory(self.context(max_connections_per_source=1))
        first, firstTransport = self.connect(factory)
        second, secondTransport = self.connect(factory, port=40001)
        self.assertFalse(firstTransport.disconnecting)
        self.assertTrue(secondTransport.disconnecting or secondTransport.disconnected)
        third, thirdTransport = self.connect(factory, host="10.0.0.8")
        self.assertFalse(thirdTransport.disconnecting)
        first.connectionLost(None)
        fourth, fourthTransport = self.connect(factory, port=40002)
        self.assertFalse(fourthTransport.disconnecting)


class HTTPChannelInMemoryTests(ListenerTestMixin, SynchronousTestCase):
    """
    The WebSocket listener's HTTP channel: its deadline and admission.
    """

    def site(self, **options):
        return buildSite(self.context("websocket", **options))

    def channel(self, site, host="10.0.0.7", port=40000):
        protocol, transport = self.connect(site, host, port)
        return protocol, transport

    def test_16_5_slowRequestClosedAtTheDeadline(self):
        """
        Issue 16 #5: a request trickling in a byte at a time is aborted at
        handshake_timeout from accept, however often bytes arrive.
        """
        protocol, transport = self.channel(self.site(handshake_timeout=2.0))
        request = b"GET /amqp HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        for byte in request[:19]:
            protocol.dataReceived(bytes([byte]))
            self.clock.advance(0.1)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(0.2)
        self.assertTrue(transport.disconnecting or transport.disconnected)

    def test_16_5_admittedAtAccept(self):
        site = self.site(max_connections=1)
        first, firstTransport = self.channel(site)
        second, secondTransport = self.channel(site, host="10.0.0.8")
        self.assertFalse(firstTransport.disconnecting)
        self.assertTrue(secondTransport.disconnecting or secondTransport.disconnected)

    def test_channelIsTheGatewaysOwn(self):
        protocol, _ = self.channel(self.site())
        self.assertIsInstance(protocol, GatewayHTTPChannel)


def upgradeRequest(path=b"/amqp", **headers):
    """
    @return: the bytes of a WebSocket upgrade request (RFC 6455's sample
        key), with C{headers} (underscores for dashes) added.
    """
    lines = [b"GET " + path + b" HTTP/1.1", b"Host: 127.0.0.1:8080", b"Upgrade: websocket",
             b"Connection: Upgrade", b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
             b"Sec-WebSocket-Version: 13", b"Sec-WebSocket-Protocol: amqp"]
    lines += [name.replace("_", "-").encode("ascii") + b": " + value for name, value in headers.items()]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def basic(user, password):
    import base64
    return b"Basic " + base64.b64encode(f"{user}:{password}".encode("utf-8"))


def maskedFrame(payload, opcode=0x2, mask=b"\x37\xfa\x21\x3d"):
    """
    @return: a client's final, masked frame (payloads under 126 bytes).
    """
    masked = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
    return bytes((0x80 | opcode, 0x80 | len(payload))) + mask + masked


class WebSocketUpgradeInMemoryTests(SynchronousTestCase):
    """
    Issue 17 #6: the WebSocket listener driven in memory from the first
    byte of the upgrade request, over the gateway's own Authenticator and a
    real Portal with the internal realm (hashes "in the thread pool" at
    once): status lines, headers, the frames after the upgrade, tickets and
    the session cookie, byte by byte where it matters.
    """

    def setUp(self):
        from kaazing_promo.auth.internal import InternalChecker
        from kaazing_promo.tap import buildAuthenticator
        from tests.authfixtures import SynchronousThreadPool, ThreadlessReactor, standardUsers, writeUsersCnf
        from twisted.cred.portal import Portal
        from kaazing_promo.auth.avatar import GatewayRealm
        self.clock = ThreadlessReactor()
        checker = InternalChecker(writeUsersCnf(self.mktemp(), *standardUsers()), reactor=self.clock,
                                  threadpool=SynchronousThreadPool())
        checker.load()
        secrets = SecretStore(inline={"webuser": "pw"})
        secrets.load()
        self.promoter = ConsolidatedPromoter(Promotion(user="webuser"), secrets)
        self.authenticator = buildAuthenticator(Portal(GatewayRealm(), [checker]), checker, self.promoter,
                                                b"k" * 32, None, self.clock)
        self.connector = PendingConnector()

    def site(self, **options):
        listener = Listener(name="web", protocol="websocket", endpoint="tcp:0", **options)
        context = ListenerContext(listener, self.promoter, self.connector, BrokerStartCache(), self.clock,
                                  self.authenticator)
        return buildSite(context)

    def connect(self, site, host="10.0.0.7", port=40000):
        protocol = site.buildProtocol(IPv4Address("TCP", host, port))
        transport = StringTransport(peerAddress=IPv4Address("TCP", host, port))
        # As a TCP transport does: Autobahn's upgrade takes it over from here.
        transport.protocol = protocol
        protocol.makeConnection(transport)
        return protocol, transport

    def send(self, site, request, byteByByte=False, host="10.0.0.7"):
        """
        @return: C{(protocol, transport, what the gateway wrote)}.
        """
        protocol, transport = self.connect(site, host)
        pieces = [request[i:i + 1] for i in range(len(request))] if byteByByte else [request]
        for piece in pieces:
            # After an upgrade, Autobahn's protocol holds the transport.
            transport.protocol.dataReceived(piece)
        return protocol, transport, transport.value()

    def status(self, written):
        return written.split(b"\r\n", 1)[0]

    def test_upgradeByteByByteThenAMQPHeader(self):
        """
        A Basic upgrade fed a byte at a time is answered 101 with the
        amqp subprotocol and RFC 6455's accept value; the AMQP protocol
        header then arrives in a masked binary frame cut in two, and the
        session asks for a broker connection.
        """
        site = self.site()
        protocol, transport = self.connect(site)
        for byte in upgradeRequest(Authorization=basic("joe.smith", "joe-pw")):
            transport.protocol.dataReceived(bytes([byte]))
        written = transport.value()
        self.assertEqual(self.status(written), b"HTTP/1.1 101 Switching Protocols")
        self.assertIn(b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n", written)
        self.assertIn(b"Sec-WebSocket-Protocol: amqp\r\n", written)
        self.assertEqual(self.connector.asked, [])
        frame = maskedFrame(PROTOCOL_HEADER)
        receiver = transport.protocol
        receiver.dataReceived(frame[:5])
        self.assertEqual(self.connector.asked, [])
        receiver.dataReceived(frame[5:])
        [session] = self.connector.asked
        self.assertEqual(session.avatar.user, "joe.smith")

    def test_refusals(self):
        """
        Each refusal of the upgrade is its HTTP status, with the headers it
        needs, before any WebSocket exists.
        """
        cases = [
            ({}, {}, b"HTTP/1.1 401 Unauthorized", b"WWW-Authenticate: Basic"),
            ({}, {"Authorization": basic("joe.smith", "wrong")}, b"HTTP/1.1 401 Unauthorized", None),
            ({"allowed_origins": ("https://good.example",)},
             {"Authorization": basic("joe.smith", "joe-pw"), "Origin": b"https://evil.example"},
             b"HTTP/1.1 403", None),
            ({"require_groups": ("Tyche",)}, {"Authorization": basic("alice", "alice-pw")},
             b"HTTP/1.1 403 Forbidden", None),
        ]
        for options, headers, status, header in cases:
            _, _, written = self.send(self.site(**options), upgradeRequest(**headers))
            self.assertTrue(written.startswith(status), (options, headers, written[:200]))
            if header is not None:
                self.assertIn(header, written)
        self.assertEqual(self.connector.asked, [])

    def test_rateLimitedIs429WithRetryAfter(self):
        """
        max_failed_logins failures from one host: the next upgrade from it is
        429 with Retry-After; another host still gets in.
        """
        site = self.site(max_failed_logins=2)
        for _ in range(2):
            self.send(site, upgradeRequest(Authorization=basic("joe.smith", "wrong")))
        _, _, written = self.send(site, upgradeRequest(Authorization=basic("joe.smith", "joe-pw")))
        self.assertEqual(self.status(written), b"HTTP/1.1 429 Too Many Requests")
        self.assertIn(b"Retry-After: ", written)
        _, _, written = self.send(site, upgradeRequest(Authorization=basic("joe.smith", "joe-pw")), host="10.0.0.8")
        self.assertEqual(self.status(written), b"HTTP/1.1 101 Switching Protocols")

    def test_plainGetIs426(self):
        _, transport, written = self.send(self.site(), b"GET /amqp HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        self.assertEqual(self.status(written), b"HTTP/1.1 426 Upgrade Required")
        self.assertIn(b"Upgrade: websocket", written)

    def test_oversizedHeaderIs431(self):
        _, transport, written = self.send(self.site(), b"GET /amqp HTTP/1.1\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
        self.assertEqual(self.status(written), b"HTTP/1.1 431 Request Header Fields Too Large")
        self.assertTrue(transport.disconnecting)

    def test_ticketThenUpgradeThenCookie(self):
        """
        A password login on the ticket endpoint answers a ticket and sets the
        session cookie (HttpOnly, SameSite=Strict); the ticket opens one
        WebSocket without a password, never a second; the cookie alone gets
        the next ticket.
        """
        import json
        site = self.site()
        post = (b"POST /amqp/ticket HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Length: 0\r\nAuthorization: "
                + basic("joe.smith", "joe-pw") + b"\r\n\r\n")
        _, _, written = self.send(site, post, byteByByte=True)
        self.assertEqual(self.status(written), b"HTTP/1.1 200 OK")
        head, body = written.split(b"\r\n\r\n", 1)
        [cookie] = [line for line in head.split(b"\r\n") if line.lower().startswith(b"set-cookie: kp_session=")]
        self.assertIn(b"HttpOnly", cookie)
        self.assertIn(b"samesite=strict", cookie.lower())
        if b"Transfer-Encoding: chunked" in head:
            body = body.split(b"\r\n", 2)[1]
        ticket = json.loads(body)["ticket"].encode("ascii")
        upgrade = upgradeRequest(b"/amqp?ticket=" + ticket)
        _, _, written = self.send(site, upgrade)
        self.assertEqual(self.status(written), b"HTTP/1.1 101 Switching Protocols")
        _, _, written = self.send(site, upgrade)
        self.assertEqual(self.status(written), b"HTTP/1.1 401 Unauthorized")
        value = cookie.split(b":", 1)[1].split(b";", 1)[0].strip()
        _, _, written = self.send(site, b"POST /amqp/ticket HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Length: 0\r\n"
                                  b"Cookie: " + value + b"\r\n\r\n")
        self.assertEqual(self.status(written), b"HTTP/1.1 200 OK")
        self.assertNotIn(b"Set-Cookie", written)
        self.assertIn(b'"ticket"', written)

    def slowRealm(self):
        """
        Hold the internal realm's hashes until the returned pool's C{runAll}.
        """
        from tests.authfixtures import ManualThreadPool
        pool = ManualThreadPool()
        checker = self.authenticator._userStatus
        checker._threadpool = pool
        return pool

    def test_19_upgradeWaitingForItsLoginIsNotClosed(self):
        """
        Issue 19: an upgrade whose login waits for the realm is not closed
        by the handshake deadline meanwhile; it is answered 101 when the
        realm answers.
        """
        pool = self.slowRealm()
        site = self.site(handshake_timeout=2.0)
        protocol, transport = self.connect(site)
        transport.protocol.dataReceived(upgradeRequest(Authorization=basic("joe.smith", "joe-pw")))
        self.clock.advance(30.0)
        self.assertFalse(transport.disconnecting)
        pool.runAll()
        self.assertEqual(self.status(transport.value()), b"HTTP/1.1 101 Switching Protocols")

    def test_19_ticketLoginWaitingIsNotClosed(self):
        """
        Issue 19: the same for a password login on the ticket endpoint; the
        channel's deadline runs again afterwards (an idle keep-alive
        connection still goes).
        """
        pool = self.slowRealm()
        site = self.site(handshake_timeout=2.0)
        protocol, transport = self.connect(site)
        transport.protocol.dataReceived(b"POST /amqp/ticket HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nContent-Length: 0\r\n"
                                        b"Authorization: " + basic("joe.smith", "joe-pw") + b"\r\n\r\n")
        self.clock.advance(30.0)
        self.assertFalse(transport.disconnecting)
        pool.runAll()
        self.assertEqual(self.status(transport.value()), b"HTTP/1.1 200 OK")
        self.clock.advance(2.1)
        self.assertTrue(transport.disconnecting or transport.disconnected)

    def test_textFrameClosed1003(self):
        """
        After the upgrade, a text message is answered with close code 1003;
        nothing reaches a session.
        """
        site = self.site()
        _, transport, _ = self.send(site, upgradeRequest(Authorization=basic("joe.smith", "joe-pw")))
        transport.clear()
        transport.protocol.dataReceived(maskedFrame(b"hello", opcode=0x1))
        written = transport.value()
        self.assertEqual(written[0], 0x88)
        self.assertEqual(int.from_bytes(written[2:4], "big"), 1003)
        self.assertEqual(self.connector.asked, [])
