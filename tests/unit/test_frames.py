"""
Frame readers: whole frames during the handshake, headers only afterwards.
"""

import random
import struct

from twisted.trial.unittest import SynchronousTestCase

from kaazing_promo.amqp.codec import (
    FRAME_BODY, FRAME_ERROR, FRAME_HEARTBEAT, FRAME_METHOD, AMQPError, encodeFrame, encodeMethod)
from kaazing_promo.amqp.frames import ChannelZeroScanner, FrameBoundaries, FrameReader

HEARTBEAT = encodeFrame(FRAME_HEARTBEAT, 0, b"")
PUBLISH = encodeMethod(1, "basic.publish", routing_key="q")
BODY = encodeFrame(FRAME_BODY, 1, b"x" * 100)
CLOSE = encodeMethod(0, "connection.close", reply_code=200, reply_text="bye")
UPDATE_SECRET = encodeMethod(0, "connection.update-secret", new_secret=b"s", reason="r")


class FrameReaderTests(SynchronousTestCase):

    def test_splitAnywhere(self):
        """
        Frames come out whole however the bytes are cut.
        """
        stream = PUBLISH + BODY + HEARTBEAT
        for cut in range(len(stream) + 1):
            reader = FrameReader()
            frames = reader.feed(stream[:cut]) + reader.feed(stream[cut:])
            self.assertEqual([raw for _, _, _, raw in frames], [PUBLISH, BODY, HEARTBEAT])

    def test_oversized(self):
        """
        A frame larger than frame-min-size before Tune-Ok closes with 501.
        """
        reader = FrameReader()
        error = self.assertRaises(AMQPError, reader.feed, struct.pack("!BHL", FRAME_METHOD, 0, 5000))
        self.assertEqual(error.replyCode, FRAME_ERROR)

    def test_badFrameEnd(self):
        reader = FrameReader()
        error = self.assertRaises(AMQPError, reader.feed, HEARTBEAT[:-1] + b"\x00")
        self.assertEqual(error.replyCode, FRAME_ERROR)


class ChannelZeroScannerTests(SynchronousTestCase):

    def scanAll(self, scanner, chunks):
        """
        Feed C{chunks}; collect what passes and the channel-0 frames found.
        """
        passed, found = b"", []
        for chunk in chunks:
            data = chunk
            while data:
                passOn, frame, data = scanner.scan(data)
                passed += passOn
                if frame is None:
                    break
                found.append(frame[2])
        return passed, found

    def test_passesEverythingButConnectionMethods(self):
        """
        Content frames and heartbeats pass in one piece; a connection
        method on channel 0 is handed over separately, whatever the cuts.
        """
        stream = PUBLISH + BODY + HEARTBEAT + UPDATE_SECRET + PUBLISH + CLOSE
        for cut in range(len(stream) + 1):
            passed, found = self.scanAll(ChannelZeroScanner(131072), [stream[:cut], stream[cut:]])
            self.assertEqual(found, [UPDATE_SECRET, CLOSE], cut)
            self.assertEqual(passed, PUBLISH + BODY + HEARTBEAT + PUBLISH, cut)

    def test_byteByByte(self):
        stream = PUBLISH + UPDATE_SECRET + BODY
        passed, found = self.scanAll(ChannelZeroScanner(131072), [bytes([b]) for b in stream])
        self.assertEqual((passed, found), (PUBLISH + BODY, [UPDATE_SECRET]))

    def test_heartbeatNotHeldBack(self):
        """
        A heartbeat alone is passed at once, not kept waiting for more bytes.
        """
        passOn, frame, rest = ChannelZeroScanner(131072).scan(HEARTBEAT)
        self.assertEqual((passOn, frame, rest), (HEARTBEAT, None, b""))

    def test_wholeChunkPassedWithoutCopy(self):
        """
        The usual case, a read of whole content frames, is passed as the same object.
        """
        chunk = PUBLISH + BODY
        passOn, _, _ = ChannelZeroScanner(131072).scan(chunk)
        self.assertIs(passOn, chunk)

    def test_frameLargerThanNegotiated(self):
        scanner = ChannelZeroScanner(4096)
        error = self.assertRaises(AMQPError, scanner.scan, encodeFrame(FRAME_BODY, 1, b"x" * 5000))
        self.assertEqual(error.replyCode, FRAME_ERROR)

    def test_badFrameEndAcrossReads(self):
        scanner = ChannelZeroScanner(131072)
        bad = BODY[:-1] + b"\x00"
        scanner.scan(bad[:50])
        error = self.assertRaises(AMQPError, scanner.scan, bad[50:] + PUBLISH)
        self.assertEqual(error.replyCode, FRAME_ERROR)


class FrameBoundariesTests(SynchronousTestCase):
    """
    The broker's relayed stream: where its frames begin, and its channel-0
    methods, whatever the cuts.
    """

    stream = (PUBLISH + BODY + HEARTBEAT + CLOSE + encodeFrame(FRAME_BODY, 1, b"y" * 5000)
              + encodeMethod(0, "connection.blocked", reason="r") + PUBLISH)

    def boundaries(self):
        offsets, offset = [0], 0
        for *_, raw in FrameReader(1 << 20).feed(self.stream):
            offset += len(raw)
            offsets.append(offset)
        return offsets

    def follow(self, cuts):
        """
        Feed the stream cut at C{cuts}; check every read's first boundary
        and L{FrameBoundaries.between} after it.

        @return: the channel-0 method frames returned, in order.
        """
        tracker = FrameBoundaries()
        boundaries = self.boundaries()
        found = []
        for start, end in zip([0] + cuts, cuts + [len(self.stream)]):
            if start == end:
                continue
            boundary, methods = tracker.feed(self.stream[start:end])
            inside = [offset - start for offset in boundaries if start <= offset <= end]
            self.assertEqual(boundary, inside[0] if inside else None, (start, end))
            self.assertEqual(tracker.between, end in boundaries, (start, end))
            found += methods or []
        return found

    def test_everyCut(self):
        """
        One cut anywhere, two cuts anywhere around the channel-0 frames.
        """
        expected = [CLOSE, encodeMethod(0, "connection.blocked", reason="r")]
        for cut in range(len(self.stream) + 1):
            self.assertEqual(self.follow([cut]), expected, cut)
        closeAt = len(PUBLISH + BODY + HEARTBEAT)
        for first in range(closeAt - 8, closeAt + len(CLOSE) + 2):
            for second in range(first, closeAt + len(CLOSE) + 9):
                self.assertEqual(self.follow([first, second]), expected, (first, second))

    def test_byteByByteAndRandomCuts(self):
        expected = [CLOSE, encodeMethod(0, "connection.blocked", reason="r")]
        self.assertEqual(self.follow(list(range(1, len(self.stream)))), expected)
        rng = random.Random(21)
        for _ in range(200):
            cuts = sorted(rng.sample(range(len(self.stream) + 1), rng.randint(1, 12)))
            self.assertEqual(self.follow(cuts), expected, cuts)

    def test_largeChannelZeroFrameOnlyCounted(self):
        """
        A channel-0 method frame larger than frame-min-size is passed over,
        not collected.
        """
        large = encodeFrame(FRAME_METHOD, 0, b"\x00\x0a\x00\x32" + b"z" * 5000)
        tracker = FrameBoundaries()
        self.assertEqual(tracker.feed(large[:100]), (0, None))
        self.assertEqual(tracker.feed(large[100:] + HEARTBEAT), (len(large) - 100, None))
        self.assertTrue(tracker.between)
