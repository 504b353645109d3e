"""
X5 / issue 7: hostile bytes against the frame readers and the handshake
state machine.  Every input either makes progress or ends in a clean AMQP
Close with a protocol reply code and a closed transport; never an
unhandled exception, never unbounded buffering.

Hypothesis runs with a fixed seed (derandomize) and a bounded budget.
"""

import struct

from hypothesis import given, settings, strategies as st
from twisted.internet import defer
from twisted.trial.unittest import SynchronousTestCase

from kaazing_promo.amqp.codec import (
    FRAME_BODY, FRAME_HEARTBEAT, FRAME_METHOD, PROTOCOL_HEADER, AMQPError, decodeMethod, encodeFrame,
    encodeMethod)
from kaazing_promo.amqp.frames import ChannelZeroScanner, FrameReader
from kaazing_promo.amqp.session import State
from kaazing_promo.errors import LoginDenied
from tests.amqpframes import OPEN, OPEN_OK, TUNE, TUNE_OK, methods, start, startOk
from tests.fakes import FakeAuthenticator, SessionTestsMixin

FUZZ = settings(max_examples=150, derandomize=True, deadline=None)
PROTOCOL_CODES = {403, 501, 502, 503, 504, 505, 530, 540}

sizes = st.sampled_from([0, 1, 7, 4095, 4096, 4097, 131072, 2 ** 31, 2 ** 32 - 1])
frameHeaders = st.builds(
    lambda frameType, channel, size: struct.pack("!BHL", frameType, channel, size),
    st.sampled_from([FRAME_METHOD, 2, FRAME_BODY, FRAME_HEARTBEAT, 0, 255]),
    st.sampled_from([0, 1, 65535]), sizes)
handshakeMethods = st.sampled_from([
    startOk(), startOk(mechanism="EXTERNAL"), TUNE_OK, OPEN, encodeMethod(0, "connection.close"),
    encodeMethod(0, "connection.update-secret", new_secret=b"x", reason="y"),
    encodeMethod(0, "connection.secure-ok", response=b"x"), encodeMethod(1, "channel.open"),
    encodeFrame(FRAME_HEARTBEAT, 0, b""), encodeFrame(FRAME_BODY, 1, b"x")])
# Start-Ok payloads with mutated bytes: bad UTF-8, huge and nested tables.
mutatedStartOk = st.builds(
    lambda position, byte: _mutate(startOk(), position, byte),
    st.integers(min_value=7, max_value=len(startOk()) - 2), st.integers(0, 255))
nestedTable = st.integers(1, 5000).map(
    lambda depth: _methodFrame(b"\x00\x0a\x00\x0b" + _nested(depth) + b"\x05PLAIN" + b"\x00\x00\x00\x00\x05en_US"))
chunks = st.lists(st.one_of(st.binary(max_size=64), frameHeaders, handshakeMethods, mutatedStartOk, nestedTable),
                  max_size=8)


def _mutate(frame, position, byte):
    return frame[:position] + bytes([byte]) + frame[position + 1:]


def _nested(depth):
    table = b""
    for _ in range(depth):
        table = struct.pack("!L", len(table) + 3) + b"\x01kF" + table if table else b"\x00\x00\x00\x00"
    return table


def _methodFrame(payload):
    return encodeFrame(FRAME_METHOD, 0, payload)


class FuzzedSessionTests(SessionTestsMixin, SynchronousTestCase):

    def assertCleanOutcome(self):
        """
        Progress or a clean close, and bounded buffers.
        """
        session = self.session
        if session.state in (State.CLOSING, State.CLOSED):
            heard = methods(self.client.transport.value()) if session.state is State.CLOSING else []
            closes = [args["reply_code"] for name, args in heard if name == "connection.close"]
            if session.state is State.CLOSING and session.reason == "client closed the connection":
                # The client's own Close went on to the broker, which answers
                # Close-Ok and hangs up.
                self.brokerSays(encodeMethod(0, "connection.close-ok"))
                self.session.brokerConnectionLost()
            elif session.state is State.CLOSING:
                self.assertTrue(closes, "closing without a Close")
                self.assertIn(closes[-1], PROTOCOL_CODES | {320, 541})
                self.clock.advance(1.0)
                self.assertEqual(session.state, State.CLOSED)
            self.assertIsNotNone(self.client.closed)
        self.assertLessEqual(len(session._clientReader._buffer), 4096 + 7)

    @FUZZ
    @given(chunks)
    def test_relayStartHandshake(self, data):
        """
        WebSocket listener: after the broker's Start, any client bytes.
        """
        self.setUp()
        self.makeSession()
        self.clientSays(PROTOCOL_HEADER)
        self.connectBroker()
        self.brokerSays(start())
        self.clientHeard()
        for chunk in data:
            self.clientSays(chunk)
            if self.session.state is State.TUNE:
                self.brokerSays(TUNE)
            if self.session.state is State.OPEN_OK:
                self.brokerSays(OPEN_OK)
        self.assertCleanOutcome()

    @FUZZ
    @given(chunks)
    def test_ownStartHandshake(self, data):
        """
        AMQP listener: before and during authentication, any client bytes.
        """
        self.setUp()
        self.makeSession(avatar=None, ownStart=True,
                         authenticator=FakeAuthenticator(lambda: defer.fail(LoginDenied("bad-credentials", "no"))))
        self.clientSays(PROTOCOL_HEADER)
        self.clientHeard()
        for chunk in data:
            self.clientSays(chunk)
        self.assertCleanOutcome()

    @FUZZ
    @given(st.lists(st.one_of(st.binary(max_size=300), frameHeaders, handshakeMethods), max_size=10))
    def test_passthrough(self, data):
        """
        Once open: only connection-class methods on channel 0 are acted on;
        anything else passes or ends in a 501/503/530 close.
        """
        self.setUp()
        self.makeSession()
        self.relayHandshake()
        for chunk in data:
            self.clientSays(chunk)
        self.assertCleanOutcome()
        # At most one incomplete connection-class frame is held back.
        held = self.session._scanner._held if self.session._scanner else b""
        self.assertLessEqual(len(held), self.session._frameMax)


class FuzzedReaderTests(SynchronousTestCase):

    @FUZZ
    @given(st.binary(max_size=2000), st.integers(1, 64))
    def test_frameReader(self, data, cut):
        """
        The handshake reader returns frames or raises AMQPError, never
        buffers more than one frame-min-size frame, and the frames it
        returns are the input's bytes, in order, each byte once.
        """
        reader = FrameReader()
        consumed = b""
        try:
            for offset in range(0, len(data), cut):
                for frameType, channel, payload, raw in reader.feed(data[offset:offset + cut]):
                    self.assertEqual(raw[0], frameType)
                    self.assertEqual(int.from_bytes(raw[1:3], "big"), channel)
                    self.assertEqual(raw[7:-1], payload)
                    consumed += raw
                    if frameType == FRAME_METHOD:
                        try:
                            decodeMethod(payload)
                        except AMQPError:
                            # Random payloads are rarely valid methods: refusing them is right.
                            pass
                self.assertLessEqual(len(reader._buffer), 4096 + 7)
        except AMQPError:
            # A broken stream is refused; what was returned before still holds.
            self.assertTrue(data.startswith(consumed))
            return
        self.assertEqual(consumed + reader._buffer, data)

    @FUZZ
    @given(st.binary(max_size=2000), st.integers(1, 64))
    def test_scannerForwardsEveryByteOnce(self, data, cut):
        """
        The passthrough scanner forwards each byte at most once and in order.
        """
        scanner = ChannelZeroScanner(131072)
        passed = b""
        try:
            for offset in range(0, len(data), cut):
                chunk = data[offset:offset + cut]
                while chunk:
                    passOn, frame, chunk = scanner.scan(chunk)
                    passed += passOn
                    if frame is not None:
                        passed += frame[2]
        except AMQPError:
            # A broken stream is refused; nothing it forwarded was out of order.
            self.assertTrue(data.startswith(passed))
            return
        # No error: every byte was forwarded exactly once, but an incomplete
        # frame start held back until the rest arrives.
        self.assertEqual(passed + scanner._held, data)
