"""
The handshake state machine and pump, in memory: a fake client, a fake
broker, a fake clock.  Requirement IDs are in the test names.
"""

import struct

from twisted.internet import defer
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from kaazing_promo.amqp.codec import (
    ACCESS_REFUSED, ALT_PROTOCOL_HEADER, COMMAND_INVALID, CONNECTION_FORCED, FRAME_BODY, FRAME_ERROR, FRAME_HEADER,
    FRAME_METHOD, NOT_ALLOWED, PROTOCOL_HEADER, UNEXPECTED_FRAME, AMQPError, decodeSASLResponse, encodeFrame,
    encodeMethod)
from kaazing_promo.amqp import broker
from kaazing_promo.amqp.broker import BrokerStartCache
from kaazing_promo.amqp.frames import FrameReader
from kaazing_promo.amqp.session import _CLOSE_OK_WAIT, GatewaySession, State
from kaazing_promo.auth.avatar import ANONYMOUS, GatewayUser
from kaazing_promo.auth.lifetime import SessionLifetime
from kaazing_promo.config import Listener, Promotion
from kaazing_promo.errors import LoginDenied
from kaazing_promo.ops.audit import isAuditEvent
from kaazing_promo.promotion import ConsolidatedPromoter, MappingPromoter, PassthroughPromoter
from kaazing_promo.secrets import SecretStore
from tests.amqpframes import (
    CLIENT_PROPERTIES, CLOSE, CLOSE_OK, OPEN, OPEN_OK, PUBLISH, TUNE, TUNE_OK, UPDATE_SECRET, UPDATE_SECRET_OK,
    content, methods, start, startOk)
from tests.fakes import FakeAuthenticator, FakeBroker, FakeClient, SessionTestsMixin


class WebSocketSessionTests(SessionTestsMixin, SynchronousTestCase):
    """
    The WebSocket listener's session: authenticated at the upgrade; the
    broker's Start is relayed.
    """

    def handshake(self, upTo="open-ok"):
        self.makeSession()
        self.relayHandshake(upTo)

    def test_P2_startOkReplaced(self):
        """
        P2: the client's Start-Ok is replaced; its SASL response never
        reaches the broker, its client-properties do.
        """
        self.handshake(upTo="start-ok")
        sent = self.brokerHeard()
        self.assertNotIn(b"mallory", sent)
        self.assertNotIn(b"xyz", sent)
        [(name, args)] = methods(sent)
        self.assertEqual(name, "connection.start-ok")
        self.assertEqual(args["mechanism"], "PLAIN")
        self.assertEqual(decodeSASLResponse(b"PLAIN", args["response"]), ("webuser", "broker-password"))
        self.assertEqual(args["client_properties"], CLIENT_PROPERTIES)

    def test_P2_amqplainWhenOnlyOffered(self):
        self.makeSession()
        self.clientSays(PROTOCOL_HEADER)
        self.connectBroker()
        self.brokerSays(start(mechanisms=b"AMQPLAIN"))
        self.clientSays(startOk())
        [(name, args)] = methods(self.brokerHeard()[len(PROTOCOL_HEADER):])
        self.assertEqual(args["mechanism"], "AMQPLAIN")
        self.assertEqual(decodeSASLResponse(b"AMQPLAIN", args["response"]), ("webuser", "broker-password"))

    def test_P2_neitherMechanismOffered(self):
        self.makeSession()
        self.clientSays(PROTOCOL_HEADER)
        self.connectBroker()
        self.brokerSays(start(mechanisms=b"EXTERNAL"))
        self.clientSays(startOk())
        self.assertClosedWith(ACCESS_REFUSED)
        self.assertEqual(self.brokerHeard(), PROTOCOL_HEADER)
        self.assertTrue(self.broker.transport.disconnecting)

    def test_fullHandshakeThenPassthrough(self):
        """
        Tune, Tune-Ok, Open and Open-Ok pass; then bytes are pumped both ways.
        """
        self.handshake()
        self.assertEqual(self.session.state, State.PASSTHROUGH)
        self.clientSays(PUBLISH)
        self.assertEqual(self.brokerHeard(), PUBLISH)
        self.brokerSays(b"anything at all")
        self.assertEqual(self.clientHeard(), b"anything at all")
        self.assertIs(self.client.transport.producer, self.broker.transport)
        self.assertIs(self.broker.transport.producer, self.client.transport)

    def test_altProtocolHeader(self):
        """
        Both protocol headers are accepted; the broker gets the standard one.
        """
        self.makeSession()
        self.clientSays(ALT_PROTOCOL_HEADER)
        self.connectBroker()
        self.assertEqual(self.brokerHeard(), PROTOCOL_HEADER)

    def test_wrongProtocolHeader(self):
        """
        A wrong header gets the supported header back and a close; no broker.
        """
        self.makeSession()
        self.clientSays(b"GET / HTTP/1.1\r\n")
        self.assertEqual(self.clientHeard(), PROTOCOL_HEADER)
        self.assertEqual(self.client.closed, "normal")
        self.assertEqual(self.connector.attempts, [])

    def test_headerInPieces(self):
        self.makeSession()
        for byte in PROTOCOL_HEADER:
            self.clientSays(bytes([byte]))
        self.assertEqual(len(self.connector.attempts), 1)

    def test_tuneClampedToOurFrameMax(self):
        self.listener = Listener(name="test", protocol="websocket", endpoint="tcp:0", max_frame_size=65536)
        self.handshake(upTo="start-ok")
        self.brokerSays(TUNE)
        [(_, args)] = methods(self.clientHeard())
        self.assertEqual(args["frame_max"], 65536)
        self.clientSays(TUNE_OK)
        self.assertClosedWith(NOT_ALLOWED)

    def test_P7_updateSecretDuringHandshake(self):
        """
        P7: Update-Secret from the client is refused; the broker never sees it.
        """
        self.handshake(upTo="start")
        self.clientSays(UPDATE_SECRET)
        self.assertNotIn(b"stolen", self.brokerHeard())
        self.assertClosedWith(NOT_ALLOWED)

    def test_P7_updateSecretWhenOpen(self):
        """
        P7 (since 2026-12-06, issue 21 #2): once the connection is open, the
        gateway answers update-secret itself, whatever the cuts; on the
        WebSocket listener the AMQP credentials mean nothing, so it changes
        nothing.  The broker hears the frames around it, never the secret.
        """
        self.handshake()
        avatar = self.session.avatar
        stream = PUBLISH + UPDATE_SECRET + PUBLISH
        self.clientSays(stream[:len(PUBLISH) + 5])
        self.clientSays(stream[len(PUBLISH) + 5:])
        self.assertEqual(self.brokerHeard(), PUBLISH + PUBLISH)
        self.assertEqual(self.clientHeard(), UPDATE_SECRET_OK)
        self.assertEqual(self.session.state, State.PASSTHROUGH)
        self.assertIs(self.session.avatar, avatar)

    def test_P7_secondStartOk(self):
        """
        P7: a second Start-Ok closes the connection with 503.
        """
        self.handshake(upTo="start-ok")
        self.brokerHeard()
        self.clientSays(startOk())
        self.assertEqual(self.brokerHeard(), b"")
        self.assertClosedWith(COMMAND_INVALID)

    def test_P7_startOkWhenOpen(self):
        self.handshake()
        self.clientSays(startOk())
        self.assertEqual(self.brokerHeard(), b"")
        self.assertClosedWith(COMMAND_INVALID)

    def test_P7_otherMechanism(self):
        """
        P7: a mechanism other than PLAIN/AMQPLAIN closes the connection.
        """
        self.handshake(upTo="start")
        self.clientSays(startOk(mechanism="EXTERNAL"))
        self.assertEqual(self.brokerHeard(), b"")
        self.assertClosedWith(COMMAND_INVALID)

    def test_P7_speakingBeforeTurn(self):
        """
        P7: a method of another class before the connection is open: 503;
        a frame on another channel: 505.
        """
        self.handshake(upTo="start")
        self.clientSays(encodeMethod(1, "channel.open"))
        self.assertClosedWith(UNEXPECTED_FRAME)
        self.setUp()
        self.handshake(upTo="start")
        self.clientSays(encodeMethod(0, "channel.open"))
        self.assertClosedWith(COMMAND_INVALID)

    def test_oversizedFrameBeforeTune(self):
        """
        Frames larger than frame-min-size before Tune-Ok close with 501.
        """
        self.handshake(upTo="start")
        self.clientSays(encodeFrame(FRAME_METHOD, 0, b"\x00" * 5000))
        self.assertClosedWith(FRAME_ERROR)

    def test_P3_brokerDropsRefusedLogin(self):
        """
        P3: the broker refusing the promoted login without a Close reaches
        the client as Close 403, not a hang.
        """
        self.handshake(upTo="start-ok")
        self.session.brokerConnectionLost()
        self.assertClosedWith(ACCESS_REFUSED)
        self.assertEqual(self.session.outcome, "broker-refused")

    def test_P3_brokerCloseRelayed(self):
        """
        P3: the broker's own Close reaches the client, then the transport closes.
        """
        self.handshake(upTo="start-ok")
        close = encodeMethod(0, "connection.close", reply_code=403, reply_text="ACCESS_REFUSED - Login was refused")
        self.brokerSays(close)
        self.assertEqual(self.clientHeard(), close)
        self.clientSays(encodeMethod(0, "connection.close-ok"))
        self.assertIn(b"\x00\x0a\x00\x33", self.brokerHeard())
        self.session.brokerConnectionLost()
        self.assertEqual(self.session.state, State.CLOSED)
        self.assertEqual(self.client.closed, "normal")

    def test_pinnedVhost(self):
        """
        A pinned [promotion] vhost rewrites whatever the client asked.
        """
        self.promoter = ConsolidatedPromoter(Promotion(mode="consolidated", user="webuser", vhost="pinned"),
                                             self.secrets)
        self.handshake(upTo="start-ok")
        self.brokerHeard()
        self.brokerSays(TUNE)
        self.clientSays(TUNE_OK + encodeMethod(0, "connection.open", virtual_host="elsewhere"))
        heard = methods(self.brokerHeard())
        self.assertEqual(heard[-1][0], "connection.open")
        self.assertEqual(heard[-1][1]["virtual_host"], "pinned")

    def test_clientVanishes(self):
        """
        The client going away takes the broker connection with it at once.
        """
        self.handshake()
        self.session.clientConnectionLost()
        self.assertTrue(self.broker.transport.disconnecting)
        self.assertEqual(self.session.state, State.CLOSED)

    def test_brokerUnreachable(self):
        """
        Broker unreachable after the upgrade: the WebSocket closes as failed (1011).
        """
        self.makeSession()
        self.clientSays(PROTOCOL_HEADER)
        _, d = self.connector.attempts[-1]
        d.errback(ConnectionRefusedError())
        self.assertEqual(self.client.closed, "failed")
        self.assertEqual(self.session.outcome, "broker-refused")

    def test_brokerClosesWhenOpen(self):
        self.handshake()
        self.session.brokerConnectionLost()
        self.assertEqual(self.client.closed, "normal")

    def test_handshakeTimeout(self):
        """
        A client that does not finish the handshake in time is dropped.
        """
        self.handshake(upTo="start")
        self.clock.advance(self.listener.handshake_timeout)
        self.assertEqual(self.session.state, State.CLOSED)
        self.assertTrue(self.broker.transport.disconnecting)

    def test_noTimeoutOnceOpen(self):
        self.handshake()
        self.clock.advance(self.listener.handshake_timeout * 2)
        self.assertEqual(self.session.state, State.PASSTHROUGH)

    def test_framesBeforeOpenOkAreKept(self):
        """
        A client that pipelines past Open gets its frames delivered after Open-Ok.
        """
        self.handshake(upTo="start-ok")
        self.brokerHeard()
        self.brokerSays(TUNE)
        self.clientSays(TUNE_OK + OPEN + PUBLISH)
        self.assertNotIn(PUBLISH, self.brokerHeard())
        self.brokerSays(OPEN_OK)
        self.assertEqual(self.brokerHeard(), PUBLISH)

    def test_X5_framesBeforeOpenOkBounded(self):
        """
        What a client sends before Open-Ok is kept only up to max_pending_bytes.
        """
        self.listener = Listener(name="test", protocol="websocket", endpoint="tcp:0", max_pending_bytes=4096)
        self.handshake(upTo="start-ok")
        self.brokerHeard()
        self.brokerSays(TUNE)
        self.clientSays(TUNE_OK + OPEN)
        self.clientSays(PUBLISH * 200)
        self.assertClosedWith(UNEXPECTED_FRAME)

    def test_clientCloseDuringHandshake(self):
        self.handshake(upTo="start")
        self.clientSays(encodeMethod(0, "connection.close", reply_code=200, reply_text="bye"))
        self.assertEqual(self.session.state, State.CLOSING)
        self.brokerSays(encodeMethod(0, "connection.close-ok"))
        self.assertEqual(self.session.state, State.CLOSED)


class AMQPListenerSessionTests(SessionTestsMixin, SynchronousTestCase):
    """
    The AMQP listener's session: the gateway sends its own Start and logs the
    client in from its Start-Ok before the broker is contacted (X1).
    """

    ownStart = True

    def test_ownStart(self):
        self.makeSession(avatar=None, authenticator=FakeAuthenticator(defer.Deferred()))
        self.clientSays(PROTOCOL_HEADER)
        [(name, args)] = methods(self.clientHeard())
        self.assertEqual(name, "connection.start")
        self.assertEqual(args["mechanisms"], b"PLAIN AMQPLAIN")
        self.assertEqual(self.connector.attempts, [])

    def test_X1_loginThenBroker(self):
        """
        X1: the client's own PLAIN credentials are checked first; the broker
        is contacted only after success, and gets the promoted identity.
        """
        gate = FakeAuthenticator(defer.succeed(GatewayUser("joe.smith")))
        self.makeSession(avatar=None, authenticator=gate)
        self.clientSays(PROTOCOL_HEADER)
        self.clientHeard()
        self.clientSays(startOk("joe.smith", "joe-password"))
        self.assertEqual(gate.logins, [("joe.smith", "joe-password", "127.0.0.1:4242")])
        self.connectBroker()
        self.brokerSays(start())
        sent = self.brokerHeard()
        self.assertNotIn(b"joe-password", sent)
        [(name, args)] = methods(sent[len(PROTOCOL_HEADER):])
        self.assertEqual(decodeSASLResponse(b"PLAIN", args["response"]), ("webuser", "broker-password"))
        self.assertEqual(self.clientHeard(), b"")

    def test_X1_amqplainCredentials(self):
        gate = FakeAuthenticator(defer.succeed(GatewayUser("joe.smith")))
        self.makeSession(avatar=None, authenticator=gate)
        self.clientSays(PROTOCOL_HEADER)
        from kaazing_promo.amqp.codec import encodeAMQPlainResponse
        self.clientSays(encodeMethod(0, "connection.start-ok", client_properties={}, mechanism="AMQPLAIN",
                                     response=encodeAMQPlainResponse("joe.smith", "pw"), locale="en_US"))
        self.assertEqual(gate.logins[0][:2], ("joe.smith", "pw"))

    def test_X1_loginRefused(self):
        """
        X1: refused credentials → Close 403 ACCESS_REFUSED; no broker connection.
        """
        gate = FakeAuthenticator(defer.fail(LoginDenied("bad-credentials", "wrong password")))
        self.makeSession(avatar=None, authenticator=gate)
        self.clientSays(PROTOCOL_HEADER)
        self.clientHeard()
        self.clientSays(startOk("joe.smith", "bad"))
        self.assertClosedWith(ACCESS_REFUSED)
        self.assertEqual(self.connector.attempts, [])
        self.assertEqual(self.session.outcome, "bad-credentials")

    def test_X1_clientGoneWhileAuthenticating(self):
        result = defer.Deferred()
        self.makeSession(avatar=None, authenticator=FakeAuthenticator(result))
        self.clientSays(PROTOCOL_HEADER)
        self.clientSays(startOk())
        self.session.clientConnectionLost()
        result.callback(GatewayUser("joe.smith"))
        self.assertEqual(self.connector.attempts, [])

    def test_P4_unmappedUserRefused(self):
        """
        P4: an unmapped user is refused with 403 before the broker is asked.
        """
        promoter = MappingPromoter(Promotion(mode="mapping", map={"joe.smith": "smithj"}),
                                   SecretStore(inline={"smithj": "pw"}))
        promoter._secrets.load()
        self.makeSession(avatar=GatewayUser("nobody"), ownStart=False, promoter=promoter)
        self.clientSays(PROTOCOL_HEADER)
        self.connectBroker()
        self.brokerSays(start())
        self.brokerHeard()
        self.clientHeard()
        self.clientSays(startOk())
        self.assertEqual(self.brokerHeard(), b"")
        self.assertClosedWith(ACCESS_REFUSED)

    def test_brokerUnreachable(self):
        """
        Broker unreachable: the TCP client gets a Close frame and a close.
        """
        self.makeSession(avatar=None, authenticator=FakeAuthenticator(defer.succeed(GatewayUser("joe.smith"))))
        self.clientSays(PROTOCOL_HEADER)
        self.clientHeard()
        self.clientSays(startOk())
        _, d = self.connector.attempts[-1]
        d.errback(ConnectionRefusedError())
        self.assertClosedWith(CONNECTION_FORCED)

    def test_passthroughForwardsClientStartOk(self):
        """
        passthrough (anonymous listeners only) forwards the client's Start-Ok unchanged.
        """
        promoter = PassthroughPromoter(Promotion(mode="passthrough"), None)
        self.makeSession(avatar=GatewayUser("anonymous", realm="anonymous"), promoter=promoter)
        self.clientSays(PROTOCOL_HEADER)
        self.clientHeard()
        self.clientSays(startOk())
        self.connectBroker()
        self.brokerSays(start())
        self.assertEqual(self.brokerHeard(), PROTOCOL_HEADER + startOk())


class LogEvents:
    """
    Every log event emitted while it is attached to the global publisher.
    """

    def __init__(self, testCase):
        self.events = []
        globalLogPublisher.addObserver(self.events.append)
        testCase.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def ofSession(self):
        return [event for event in self.events if event.get("log_namespace") == GatewaySession.log.namespace]

    def audited(self):
        return [event for event in self.events if isAuditEvent(event)]


class ClosingTests(SessionTestsMixin, SynchronousTestCase):
    """
    Once a Close is in the air (issue 21 #1, issue 16 #7): the gateway
    answers like the broker, sends at most one Close of its own, logs it
    once, and nothing moves the connection forward again.
    """

    handshake = WebSocketSessionTests.handshake

    def closesHeard(self, data):
        return [args["reply_code"] for name, args in methods(data) if name == "connection.close"]

    def test_S5_framesAfterClientCloseWhenOpen(self):
        """
        S5 / issue 21 #1: amqplib sends Close with publishes still queued.
        What follows the client's Close is dropped, as RabbitMQ drops it;
        the broker connection stays until the broker's Close-Ok reaches the
        client; the gateway sends no Close of its own.
        """
        self.handshake()
        late = content(1, b"late") + content(1, b"x" * 10000)
        self.clientSays(PUBLISH + CLOSE + late[:9])
        self.clientSays(late[9:])
        for _ in range(100):
            self.clientSays(content(1, b"later"))
        self.assertEqual(self.brokerHeard(), PUBLISH + CLOSE)
        self.assertEqual(self.clientHeard(), b"")
        self.assertEqual(self.session.state, State.CLOSING)
        self.assertFalse(self.broker.transport.disconnecting)
        self.brokerSays(CLOSE_OK)
        self.assertEqual(self.clientHeard(), CLOSE_OK)
        self.session.brokerConnectionLost()
        self.assertEqual(self.session.state, State.CLOSED)
        self.assertEqual(self.client.closed, "normal")
        self.assertEqual(self.session.reason, "client closed the connection")

    def test_S5_framesAfterClientCloseDuringHandshake(self):
        """
        S5: the same before the connection is open: frames after the
        client's Close never draw a 505.
        """
        self.handshake(upTo="start")
        self.clientSays(CLOSE + content(1, b"late"))
        self.clientSays(encodeFrame(FRAME_BODY, 1, b"y" * 5000))
        self.assertEqual(self.clientHeard(), b"")
        self.assertEqual(self.brokerHeard(), CLOSE)
        self.brokerSays(CLOSE_OK)
        self.assertEqual(self.clientHeard(), CLOSE_OK)
        self.assertEqual(self.session.state, State.CLOSED)

    def test_S5_crossingClosesRelayed(self):
        """
        S5: the broker's Close crossing the client's reaches the client (the
        one Close it gets); the Close-Oks of both go through.
        """
        self.handshake()
        self.clientSays(CLOSE)
        brokerClose = encodeMethod(0, "connection.close", reply_code=320, reply_text="shutdown")
        self.brokerSays(brokerClose)
        self.assertEqual(self.clientHeard(), brokerClose)
        self.clientSays(CLOSE_OK)
        self.assertEqual(self.brokerHeard(), CLOSE + CLOSE_OK)
        self.brokerSays(CLOSE_OK)
        self.assertEqual(self.clientHeard(), CLOSE_OK)

    def test_S5_noCloseOfOwnWhileClientCloses(self):
        """
        S5: after the client's Close the gateway sends no Close, whatever
        happens: a forced close (reload, expiry) or the handshake timeout
        leaves the client's Close to the broker.
        """
        self.handshake(upTo="start")
        self.clientSays(CLOSE)
        self.session.forceClose("reload")
        self.clock.advance(self.listener.handshake_timeout)
        self.assertEqual(self.clientHeard(), b"")
        self.brokerSays(CLOSE_OK)
        self.assertEqual(self.clientHeard(), CLOSE_OK)
        self.assertEqual(self.session.state, State.CLOSED)

    def test_S5_brokerBreaksWhileClientCloses(self):
        """
        S5: a broker breaking the protocol after the client's Close ends the
        connection without a Close from the gateway.
        """
        self.handshake(upTo="start")
        self.clientSays(CLOSE)
        self.brokerSays(encodeFrame(FRAME_METHOD, 0, b"\x00" * 5000))
        self.assertEqual(self.clientHeard(), b"")
        self.assertEqual(self.session.state, State.CLOSED)

    def test_S5_clientFramesAfterBrokerClose(self):
        """
        S5: after the broker's Close the client's late frames are dropped;
        its Close-Ok goes to the broker; no second Close reaches the client.
        """
        self.handshake(upTo="start-ok")
        self.brokerHeard()
        close = encodeMethod(0, "connection.close", reply_code=403, reply_text="ACCESS_REFUSED")
        self.brokerSays(close)
        self.clientSays(content(1, b"late") + encodeMethod(0, "connection.tune-ok"))
        self.clientSays(CLOSE_OK)
        self.assertEqual(self.clientHeard(), close)
        self.assertEqual(self.brokerHeard(), CLOSE_OK)

    def floodAfterGatewayClose(self):
        """
        Make the gateway close (505), then send 1 MiB of frames in pieces.

        @return: the L{LogEvents} of the whole, and the bytes the client heard.
        """
        self.handshake(upTo="start")
        logged = LogEvents(self)
        self.clientSays(encodeMethod(1, "channel.open"))
        flood = (content(1, b"z" * 1000) + encodeMethod(0, "connection.tune-ok")) * 1000
        self.assertGreater(len(flood), 1 << 20)
        for offset in range(0, len(flood), 3000):
            self.clientSays(flood[offset:offset + 3000])
        return logged, self.clientHeard()

    def test_X5_floodAfterGatewayCloseEndsAtCloseOk(self):
        """
        X5 / issue 16 #7: after the gateway's Close, 1 MiB of frames draws
        no other Close and no log line; the Close-Ok ends the connection.
        """
        logged, heard = self.floodAfterGatewayClose()
        self.assertEqual(self.closesHeard(heard), [UNEXPECTED_FRAME])
        self.assertEqual(len(logged.ofSession()), 1)
        self.assertEqual(logged.audited(), [])
        self.assertTrue(self.broker.transport.disconnecting)
        self.session.brokerConnectionLost()
        self.assertEqual(self.session.state, State.CLOSING)
        self.clientSays(CLOSE_OK)
        self.assertEqual(self.session.state, State.CLOSED)
        self.assertEqual(len(logged.events), 2)
        self.assertEqual(len(logged.audited()), 1)

    def test_X5_floodAfterGatewayCloseEndsAtTimer(self):
        """
        X5 / issue 16 #7: a client that never answers the gateway's Close is
        dropped after the Close-Ok wait, however much it sends.
        """
        logged, heard = self.floodAfterGatewayClose()
        self.assertEqual(self.closesHeard(heard), [UNEXPECTED_FRAME])
        self.clock.advance(_CLOSE_OK_WAIT - 0.1)
        self.clientSays(content(1, b"more"))
        self.assertEqual(self.session.state, State.CLOSING)
        self.clock.advance(0.1)
        self.assertEqual(self.session.state, State.CLOSED)
        self.assertEqual(self.client.closed, "normal")
        self.assertEqual(len(logged.ofSession()), 1)
        self.assertEqual(self.clientHeard(), b"")

    def test_X5_crossingCloseAfterGatewayClose(self):
        """
        A client Close crossing the gateway's is answered with Close-Ok, as
        the broker answers it, and ends the connection.
        """
        self.handshake(upTo="start")
        self.session.forceClose("reload")
        self.assertEqual(self.closesHeard(self.clientHeard()), [CONNECTION_FORCED])
        self.clientSays(CLOSE)
        self.assertEqual(self.clientHeard(), CLOSE_OK)
        self.assertEqual(self.session.state, State.CLOSED)

    def test_X5_oneCloseWhenBrokerClosesAfterGatewayClose(self):
        """
        The broker's Close arriving after the gateway closed (the broker
        connection is being dropped) does not reach the client.
        """
        self.handshake(upTo="start-ok")
        self.session.forceClose("reload")
        self.brokerSays(encodeMethod(0, "connection.close", reply_code=320, reply_text="shutdown"))
        self.assertEqual(self.closesHeard(self.clientHeard()), [CONNECTION_FORCED])

    def test_S5_brokerCloseWhenOpenThenGatewayClose(self):
        """
        Issue 21 #1: the broker's Close on an open connection, relayed as
        the stream comes and cut across reads, is noticed: a gateway Close
        afterwards (a forced close, a client breaking the protocol) is not
        sent, so the client gets one Close; its Close-Ok reaches the broker.
        """
        self.handshake()
        brokerClose = encodeMethod(0, "connection.close", reply_code=320, reply_text="shutdown")
        stream = content(1, b"d" * 100) + brokerClose
        self.brokerSays(stream[:-5])
        self.brokerSays(stream[-5:])
        self.assertEqual(self.clientHeard(), stream)
        self.assertEqual(self.session.state, State.CLOSING)
        self.session.forceClose("reload")
        self.clientSays(encodeMethod(0, "connection.start-ok") + CLOSE_OK)
        self.assertEqual(self.clientHeard(), b"")
        self.assertEqual(self.brokerHeard(), CLOSE_OK)
        self.assertEqual(self.session.reason, "broker closed: shutdown")
        self.session.brokerConnectionLost()
        self.assertEqual(self.session.state, State.CLOSED)

    def test_framesWithOpenOkRelayed(self):
        """
        Frames the broker sends in the same read as its Open-Ok (a
        connection.blocked, a heartbeat) reach the client, the stream
        followed from there.
        """
        self.handshake(upTo="start-ok")
        self.brokerSays(TUNE)
        self.clientSays(TUNE_OK + OPEN)
        self.clientHeard()
        blocked = encodeMethod(0, "connection.blocked", reason="low memory")
        heartbeat = encodeFrame(8, 0, b"")
        self.brokerSays(OPEN_OK + blocked + heartbeat[:3])
        self.assertEqual(self.clientHeard(), OPEN_OK + blocked + heartbeat[:3])
        self.clientSays(UPDATE_SECRET)
        self.brokerSays(heartbeat[3:])
        self.assertEqual(self.clientHeard(), heartbeat[3:] + UPDATE_SECRET_OK)

    def test_S5_brokerHeartbeatsAndBlockedWhenOpen(self):
        """
        Other channel-0 frames of the broker (heartbeats, connection.blocked)
        pass as they come and close nothing.
        """
        self.handshake()
        stream = (encodeFrame(8, 0, b"") + encodeMethod(0, "connection.blocked", reason="low memory")
                  + content(1, b"e"))
        self.brokerSays(stream)
        self.assertEqual(self.clientHeard(), stream)
        self.assertEqual(self.session.state, State.PASSTHROUGH)

    def loginThenConnecting(self, result=None):
        """
        An AMQP-listener session whose login succeeded: it is connecting to
        the broker.
        """
        gate = FakeAuthenticator(result or defer.succeed(GatewayUser("joe.smith")))
        self.makeSession(avatar=None, authenticator=gate, ownStart=True)
        self.clientSays(PROTOCOL_HEADER)
        self.clientSays(startOk())
        self.clientHeard()

    def assertNeverOpens(self):
        """
        The client ignores the gateway's Close and goes on with the
        handshake: the broker connection is dropped, the broker gets no
        Start-Ok, the connection never opens.
        """
        self.assertTrue(self.broker.transport.disconnecting)
        self.brokerSays(start())
        self.brokerSays(TUNE)
        self.clientSays(TUNE_OK + OPEN)
        self.brokerSays(OPEN_OK)
        self.assertNotIn(b"\x00\x0a\x00\x0b", self.brokerHeard())
        self.assertNotEqual(self.session.state, State.PASSTHROUGH)
        self.assertEqual(len(self.closesHeard(self.clientHeard())), 1)
        self.clock.advance(_CLOSE_OK_WAIT)
        self.assertEqual(self.session.state, State.CLOSED)

    def test_X5_gatewayCloseWhileConnecting(self):
        """
        Issue 16 #7: the gateway's Close while the broker connection is
        being made: the broker connecting afterwards changes nothing.
        """
        self.loginThenConnecting()
        self.assertEqual(self.session.state, State.CONNECTING)
        self.clientSays(content(1, b"early"))
        self.connectBroker()
        self.assertEqual(self.brokerHeard(), b"")
        self.assertNeverOpens()

    def test_X5_forceCloseWhileConnecting(self):
        """
        Issue 16 #7: a forced close during the broker connection is not undone.
        """
        self.loginThenConnecting()
        self.session.forceClose("reload")
        self.connectBroker()
        self.assertEqual(self.brokerHeard(), b"")
        self.assertNeverOpens()

    def test_X5_forceCloseWhileBrokerStarts(self):
        """
        Issue 16 #7: a forced close while waiting for the broker's Start.
        """
        self.loginThenConnecting()
        self.connectBroker()
        self.session.forceClose("reload")
        self.assertEqual(self.brokerHeard(), PROTOCOL_HEADER)
        self.assertNeverOpens()

    def test_X5_forceCloseWhileAuthenticating(self):
        """
        Issue 16 #7: a forced close during the login: its success later
        contacts no broker.
        """
        result = defer.Deferred()
        self.loginThenConnecting(result)
        self.session.forceClose("reload")
        result.callback(GatewayUser("joe.smith"))
        self.assertEqual(self.connector.attempts, [])

    def test_X5_brokerUnreachableAfterGatewayClose(self):
        """
        The broker connection failing after the gateway closed draws no
        second Close.
        """
        self.loginThenConnecting()
        self.session.forceClose("reload")
        _, d = self.connector.attempts[-1]
        d.errback(ConnectionRefusedError())
        self.assertEqual(self.closesHeard(self.clientHeard()), [CONNECTION_FORCED])
        self.assertEqual(self.session.state, State.CLOSING)

    def test_framesBeforeOpenOkKeptWhateverTheCuts(self):
        """
        A frame cut in two right after the client's Open reaches the broker
        whole once Open-Ok is through.
        """
        self.handshake(upTo="start-ok")
        self.brokerHeard()
        self.brokerSays(TUNE)
        self.clientSays(TUNE_OK + OPEN + PUBLISH[:5])
        self.clientSays(PUBLISH[5:])
        self.brokerHeard()
        self.brokerSays(OPEN_OK)
        self.assertEqual(self.brokerHeard(), PUBLISH)

    def test_X5_forceCloseThenLoginRefused(self):
        """
        Issue 16 #7: a login refused after a forced close draws no second
        Close and leaves the reason the connection was closed for.
        """
        result = defer.Deferred()
        self.loginThenConnecting(result)
        self.session.forceClose("reload")
        result.errback(LoginDenied("bad-credentials", "wrong password"))
        self.assertEqual(self.closesHeard(self.clientHeard()), [CONNECTION_FORCED])
        self.assertEqual((self.session.outcome, self.session.reason), ("closed", "reload"))

    def test_closeQueuedBeforeOpenOk(self):
        """
        A client Close sent before the broker's Open-Ok, with frames behind
        it, goes to the broker once the Open-Ok is through; the frames
        behind it are dropped.
        """
        self.handshake(upTo="start-ok")
        self.brokerHeard()
        self.brokerSays(TUNE)
        self.clientSays(TUNE_OK + OPEN + PUBLISH + CLOSE)
        self.clientSays(content(1, b"late"))
        self.brokerHeard()
        self.brokerSays(OPEN_OK)
        self.assertEqual(self.brokerHeard(), PUBLISH + CLOSE)
        self.assertEqual(self.session.state, State.CLOSING)

    def test_X5_gatewayCloseWhenOpenWaitsForCloseOk(self):
        """
        Issue 16 #7: the gateway's Close on an open connection.  The pump's
        producer links go before the broker connection does, whose end
        would otherwise stop (drop) the client before its Close-Ok; and a
        client paused for a slow broker is read again, for its Close-Ok.
        """
        self.handshake()
        self.client.transport.pauseProducing()
        self.session.forceClose("reload")
        self.assertIsNone(self.broker.transport.producer)
        self.assertIsNone(self.client.transport.producer)
        self.assertEqual(self.client.transport.producerState, "producing")
        self.session.brokerConnectionLost()
        self.assertIsNone(self.client.closed)
        self.clientSays(CLOSE_OK)
        self.assertEqual(self.client.closed, "normal")


def deliver(channel, body):
    """
    One message as the broker delivers it: basic.deliver, a content header
    frame and a body frame.
    """
    header = struct.pack("!HHQH", 60, 0, len(body), 0)
    return (encodeMethod(channel, "basic.deliver", consumer_tag="ctag", delivery_tag=1, redelivered=False,
                         exchange="", routing_key="q")
            + encodeFrame(FRAME_HEADER, channel, header) + encodeFrame(FRAME_BODY, channel, body))


def updateSecret(secret):
    if isinstance(secret, str):
        secret = secret.encode("utf-8")
    return encodeMethod(0, "connection.update-secret", new_secret=secret, reason="rotation")


class FakeChecker:
    """
    The delegated checker's C{revalidate}, as L{SessionLifetime} calls it.
    """

    def __init__(self):
        self.asked = []
        self.answers = []

    def revalidate(self, credentials):
        self.asked.append((credentials.username, credentials.password))
        return self.answers.pop(0)


class UpdateSecretTests(SessionTestsMixin, SynchronousTestCase):
    """
    P7 / issue 21 #2: connection.update-secret is answered by the gateway
    and never forwarded.  On the AMQP listener the new secret logs the same
    gateway user in again; where the AMQP credentials mean nothing it is
    answered and changes nothing.
    """

    ownStart = True

    def openAMQP(self, lifetime=None, expires=None):
        """
        An AMQP-listener session, logged in as joe.smith and open.
        """
        self.gate = FakeAuthenticator(defer.succeed(GatewayUser("joe.smith", expires=expires)))
        self.makeSession(avatar=None, authenticator=self.gate, lifetime=lifetime)
        self.clientSays(PROTOCOL_HEADER)
        self.clientSays(startOk("joe.smith", "joe-password"))
        self.connectBroker()
        self.brokerSays(start())
        self.brokerSays(TUNE)
        self.clientSays(TUNE_OK + OPEN)
        self.brokerSays(OPEN_OK)
        self.assertEqual(self.session.state, State.PASSTHROUGH)
        self.brokerHeard()
        self.clientHeard()

    def assertOnlyClose(self, code):
        """
        The client heard one frame, the gateway's Close with C{code}; its
        Close-Ok ends the connection.
        """
        [(name, args)] = methods(self.clientHeard())
        self.assertEqual((name, args["reply_code"]), ("connection.close", code))
        self.assertEqual(self.session.state, State.CLOSING)
        self.clientSays(CLOSE_OK)
        self.assertEqual(self.session.state, State.CLOSED)

    def test_P7_updateSecretLogsInAgain(self):
        """
        P7 / X3: the right new secret → update-secret-ok from the gateway;
        the broker hears nothing of it; the session's avatar and kept
        credentials are the new ones and its lifetime follows the new
        expiry.
        """
        checker = FakeChecker()
        self.openAMQP(SessionLifetime("revalidate", checker, self.clock), expires=10.0)
        self.assertEqual(self.session.credentials, ("joe.smith", "joe-password"))
        renewed = GatewayUser("joe.smith", expires=100.0)
        self.gate.result = defer.succeed(renewed)
        self.clientSays(updateSecret("new-password"))
        self.assertEqual(self.clientHeard(), UPDATE_SECRET_OK)
        self.assertEqual(self.brokerHeard(), b"")
        attempt = self.gate.attempts[-1]
        self.assertEqual((attempt.username, attempt.password, attempt.host, attempt.source, attempt.listener),
                         ("joe.smith", "new-password", "127.0.0.1", "127.0.0.1:4242", self.listener))
        self.assertTrue(attempt.stillThere())
        self.assertIs(self.session.avatar, renewed)
        self.assertEqual(self.session.credentials, ("joe.smith", "new-password"))
        self.clock.advance(50)
        self.assertEqual(checker.asked, [])
        checker.answers.append(defer.succeed(GatewayUser("joe.smith", expires=200.0)))
        self.clock.advance(50)
        self.assertEqual(checker.asked, [("joe.smith", "new-password")])
        self.assertEqual(self.session.state, State.PASSTHROUGH)

    def test_P7_updateSecretWrong(self):
        """
        P7: a wrong new secret, checked (and counted) by the authenticator
        for the same user → one Close 403; nothing the client sent after it
        reaches the broker, whose connection goes.
        """
        self.openAMQP()
        self.gate.result = defer.fail(LoginDenied("bad-credentials", "wrong password"))
        self.clientSays(updateSecret("nope") + PUBLISH)
        attempt = self.gate.attempts[-1]
        self.assertEqual((attempt.username, attempt.password), ("joe.smith", "nope"))
        self.assertEqual(self.brokerHeard(), b"")
        self.assertTrue(self.broker.transport.disconnecting)
        self.assertOnlyClose(ACCESS_REFUSED)
        self.assertEqual(self.session.outcome, "bad-credentials")

    def test_P7_updateSecretRateLimited(self):
        """
        P7: the login protection refusing the attempt is a refusal like any.
        """
        self.openAMQP()
        self.gate.result = defer.fail(LoginDenied("rate-limited", "too many failed logins", 30))
        self.clientSays(updateSecret("guess"))
        self.assertOnlyClose(ACCESS_REFUSED)
        self.assertEqual(self.session.outcome, "rate-limited")

    def test_P7_updateSecretOfAnotherUser(self):
        """
        P7: a secret that is valid but logs in someone else is refused; the
        session's user does not change.
        """
        self.openAMQP()
        joe = self.session.avatar
        self.gate.result = defer.succeed(GatewayUser("alice"))
        self.clientSays(updateSecret("alice-password"))
        self.assertEqual(self.gate.attempts[-1].username, "joe.smith")
        self.assertOnlyClose(ACCESS_REFUSED)
        self.assertIs(self.session.avatar, joe)
        self.assertEqual(self.brokerHeard(), b"")

    def test_P7_updateSecretNotUTF8(self):
        """
        A new secret that is not UTF-8 cannot be a password: the
        authenticator is told the credentials are unusable; Close 403.
        """
        self.openAMQP()
        self.gate.result = defer.fail(LoginDenied("bad-credentials", "unusable"))
        self.clientSays(updateSecret(b"\xff\xfe"))
        attempt = self.gate.attempts[-1]
        self.assertEqual((attempt.username, attempt.password), (None, None))
        self.assertIn("UTF-8", attempt.unusable)
        self.assertOnlyClose(ACCESS_REFUSED)

    def test_P7_malformedUpdateSecret(self):
        """
        An update-secret whose arguments cannot be read closes the
        connection with the codec's reply code; no login is tried.
        """
        self.openAMQP()
        logins = len(self.gate.attempts)
        self.clientSays(encodeFrame(FRAME_METHOD, 0, struct.pack("!HH", 10, 70) + b"\x00\x00\x00\x09ab"))
        [(name, args)] = methods(self.clientHeard())
        self.assertEqual(name, "connection.close")
        self.assertEqual(len(self.gate.attempts), logins)
        self.assertEqual(self.brokerHeard(), b"")

    def test_P7_updateSecretOverWebSocket(self):
        """
        P7: on the WebSocket listener the person logged in at the upgrade
        and the AMQP credentials mean nothing: update-secret-ok, no login,
        nothing changes.
        """
        gate = FakeAuthenticator(lambda: defer.fail(LoginDenied("bad-credentials", "must not be asked")))
        joe = GatewayUser("joe.smith")
        self.makeSession(avatar=joe, authenticator=gate, ownStart=False)
        self.relayHandshake()
        self.clientSays(updateSecret("anything") + PUBLISH)
        self.assertEqual(self.clientHeard(), UPDATE_SECRET_OK)
        self.assertEqual(self.brokerHeard(), PUBLISH)
        self.assertEqual(gate.attempts, [])
        self.assertIs(self.session.avatar, joe)
        self.assertEqual(self.session.state, State.PASSTHROUGH)

    def test_P7_updateSecretWithoutAuth(self):
        """
        P7: on an C{auth = "none"} AMQP listener: update-secret-ok, and
        nothing changes.
        """
        self.makeSession(avatar=ANONYMOUS, authenticator=None)
        self.clientSays(PROTOCOL_HEADER)
        self.clientSays(startOk())
        self.connectBroker()
        self.brokerSays(start())
        self.brokerSays(TUNE)
        self.clientSays(TUNE_OK + OPEN)
        self.brokerSays(OPEN_OK)
        self.brokerHeard()
        self.clientHeard()
        self.clientSays(updateSecret("anything"))
        self.assertEqual(self.clientHeard(), UPDATE_SECRET_OK)
        self.assertEqual(self.brokerHeard(), b"")
        self.assertIs(self.session.avatar, ANONYMOUS)

    def test_P7_updateSecretOkAtFrameBoundary(self):
        """
        The broker's stream is relayed as it comes; the gateway's
        update-secret-ok goes into it at the first frame boundary after it
        is due: at once when the stream is between frames, else where the
        frame in flight ends.  The client receives whole frames.
        """
        message = deliver(1, b"m" * 300)
        boundaries = [0]
        for *_, raw in FrameReader(1 << 20).feed(message):
            boundaries.append(boundaries[-1] + len(raw))
        self.assertEqual(boundaries[-1], len(message))
        for cut in (1, 3, 7, 8, 20, boundaries[1], boundaries[1] + 3, boundaries[2] + 10, len(message) - 1):
            self.setUp()
            self.openAMQP()
            self.gate.result = defer.succeed(GatewayUser("joe.smith"))
            self.brokerSays(message + message[:cut])
            self.clientSays(updateSecret("new-password"))
            due = min(offset for offset in boundaries if offset >= cut)
            heard = self.clientHeard()
            self.assertEqual(heard, message + message[:cut] + (UPDATE_SECRET_OK if due == cut else b""), cut)
            self.brokerSays(message[cut:] + message)
            heard += self.clientHeard()
            self.assertEqual(heard, message + message[:due] + UPDATE_SECRET_OK + message[due:] + message, cut)

    def test_P7_updateSecretOkDueMidFrameInPieces(self):
        """
        The login answering while a frame is in flight: the ok waits for
        that frame's end, however the rest of it is cut, then goes out.
        """
        self.openAMQP()
        result = self.gate.result = defer.Deferred()
        message = deliver(1, b"n" * 1000)
        self.brokerSays(message[:10])
        self.clientSays(updateSecret("new-password"))
        result.callback(GatewayUser("joe.smith"))
        heard = self.clientHeard()
        for offset in range(10, len(message), 7):
            self.brokerSays(message[offset:offset + 7])
            heard += self.clientHeard()
        first = len(FrameReader(1 << 20).feed(message)[0][3])
        self.assertEqual(heard, message[:first] + UPDATE_SECRET_OK + message[first:])
        self.brokerSays(message)
        self.assertEqual(self.clientHeard(), message)

    def test_P7_clientWaitsBehindItsUpdateSecret(self):
        """
        Like RabbitMQ's reader, the gateway reads nothing more of the client
        while its new secret is checked: what follows reaches the broker
        after the ok (a second update-secret is answered in its turn), and
        the client's transport is paused meanwhile.
        """
        self.openAMQP()
        first = self.gate.result = defer.Deferred()
        self.clientSays(updateSecret("one") + PUBLISH + updateSecret("two")[:5])
        self.assertEqual(self.client.transport.producerState, "paused")
        second = self.gate.result = defer.Deferred()
        self.clientSays(updateSecret("two")[5:] + PUBLISH + CLOSE)
        self.assertEqual(self.brokerHeard(), b"")
        self.assertEqual([attempt.password for attempt in self.gate.attempts[1:]], ["one"])
        first.callback(GatewayUser("joe.smith"))
        self.assertEqual(self.clientHeard(), UPDATE_SECRET_OK)
        self.assertEqual(self.brokerHeard(), PUBLISH)
        self.assertEqual([attempt.password for attempt in self.gate.attempts[1:]], ["one", "two"])
        self.assertEqual(self.client.transport.producerState, "paused")
        second.callback(GatewayUser("joe.smith"))
        self.assertEqual(self.clientHeard(), UPDATE_SECRET_OK)
        self.assertEqual(self.brokerHeard(), PUBLISH + CLOSE)
        self.assertEqual(self.client.transport.producerState, "producing")
        self.assertEqual(self.session.state, State.CLOSING)

    def test_P7_forceCloseWhileCheckingSecret(self):
        """
        A forced close (reload, expiry) while the new secret is checked:
        one Close, and no ok after it whatever the answer.
        """
        self.openAMQP()
        result = self.gate.result = defer.Deferred()
        self.clientSays(updateSecret("new-password"))
        self.session.forceClose("reload")
        result.callback(GatewayUser("joe.smith"))
        self.assertOnlyClose(CONNECTION_FORCED)

    def test_P7_clientGoneWhileCheckingSecret(self):
        """
        A client that leaves while its new secret waits: the check may be
        dropped (stillThere), and its answer changes nothing.
        """
        self.openAMQP()
        joe = self.session.avatar
        result = self.gate.result = defer.Deferred()
        self.clientSays(updateSecret("new-password"))
        attempt = self.gate.attempts[-1]
        self.session.clientConnectionLost()
        self.assertFalse(attempt.stillThere())
        result.callback(GatewayUser("joe.smith"))
        self.assertEqual(self.clientHeard(), b"")
        self.assertIs(self.session.avatar, joe)

    def test_P7_brokerClosesWhileCheckingSecret(self):
        """
        The broker's Close while the new secret is checked: the client's
        Close-Ok reaches the broker; a refusal afterwards adds no Close of
        the gateway's.
        """
        self.openAMQP()
        result = self.gate.result = defer.Deferred()
        self.clientSays(updateSecret("nope"))
        brokerClose = encodeMethod(0, "connection.close", reply_code=320, reply_text="shutdown")
        self.brokerSays(brokerClose)
        self.clientSays(CLOSE_OK)
        self.assertEqual(self.brokerHeard(), CLOSE_OK)
        result.errback(LoginDenied("bad-credentials", "wrong password"))
        self.assertEqual(self.clientHeard(), brokerClose)
        self.assertEqual(self.session.state, State.CLOSING)
        self.session.brokerConnectionLost()
        self.assertEqual(self.session.state, State.CLOSED)


class HandshakeCacheTests(SessionTestsMixin, SynchronousTestCase):
    """
    Issue 19, connection setup: what the broker says in every handshake is
    decoded once per gateway, and the AMQP listener's own Start encoded once,
    through the L{BrokerStartCache} the gateway's sessions share; a client's
    Start-Ok (its password) is never kept.
    """

    def setUp(self):
        SessionTestsMixin.setUp(self)
        self.cache = BrokerStartCache()
        self.decoded, self.encoded = [], []
        realDecode, realEncode = broker.decodeMethod, broker.encodeMethod

        def decode(payload):
            self.decoded.append(payload)
            return realDecode(payload)

        def encode(*args, **kwargs):
            self.encoded.append(args[1])
            return realEncode(*args, **kwargs)
        self.patch(broker, "decodeMethod", decode)
        self.patch(broker, "encodeMethod", encode)

    def twoRelayedHandshakes(self):
        for _ in range(2):
            self.client, self.broker = FakeClient(), FakeBroker()
            self.makeSession(startCache=self.cache)
            self.relayHandshake()
            self.assertEqual(self.session.state, State.PASSTHROUGH)

    def test_brokerMethodsDecodedOnce(self):
        """
        The broker's Start, Tune and Open-Ok of a second connection are the
        first one's, decoded once.
        """
        self.twoRelayedHandshakes()
        self.assertEqual(sorted(self.decoded), sorted([start()[7:-1], TUNE[7:-1], OPEN_OK[7:-1]]))

    def test_differentBytesDecodedAgain(self):
        """
        A broker that says something else is decoded again: the memory is
        keyed by the exact bytes.
        """
        self.makeSession(startCache=self.cache)
        self.clientSays(PROTOCOL_HEADER)
        self.connectBroker()
        self.brokerSays(start())
        other = encodeMethod(0, "connection.start", version_major=0, version_minor=9,
                             server_properties={"product": "other"}, mechanisms=b"PLAIN", locales=b"en_US")
        self.client, self.broker = FakeClient(), FakeBroker()
        self.makeSession(startCache=self.cache)
        self.clientSays(PROTOCOL_HEADER)
        self.connectBroker()
        self.brokerSays(other)
        self.assertEqual(len(self.decoded), 2)
        self.assertEqual(self.cache.serverProperties, {"product": "other"})

    def test_clientStartOkNeverKept(self):
        """
        Only the broker's frames are remembered: nothing the cache holds
        carries the client's password.
        """
        self.twoRelayedHandshakes()
        self.assertNotIn(startOk()[7:-1], self.decoded)
        self.assertFalse([payload for payload in self.decoded if b"xyz" in payload])

    def test_ownStartEncodedOncePerProperties(self):
        """
        The AMQP listener's own Start is encoded once, and again when the
        broker's server properties change.
        """
        self.ownStart = True
        for _ in range(2):
            self.client = FakeClient()
            self.makeSession(avatar=None, authenticator=FakeAuthenticator(defer.Deferred()),
                             startCache=self.cache)
            self.clientSays(PROTOCOL_HEADER)
            [(name, args)] = methods(self.clientHeard())
            self.assertEqual(args["server_properties"]["product"], "kaazing-promo")
        self.assertEqual(self.encoded, ["connection.start"])
        self.cache.update({"product": "RabbitMQ"})
        self.client = FakeClient()
        self.makeSession(avatar=None, authenticator=FakeAuthenticator(defer.Deferred()), startCache=self.cache)
        self.clientSays(PROTOCOL_HEADER)
        [(name, args)] = methods(self.clientHeard())
        self.assertEqual(args["server_properties"], {"product": "RabbitMQ"})
        self.assertEqual(self.encoded, ["connection.start", "connection.start"])

    def test_badBrokerMethodNotKept(self):
        """
        Bytes that do not decode raise as before, every time.
        """
        for _ in range(2):
            self.assertRaises(AMQPError, self.cache.decodeBrokerMethod, b"\x00\x0a\x00\x63")
        self.assertEqual(len(self.decoded), 2)
