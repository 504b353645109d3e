"""
Frame readers: whole frames during the handshake, headers only afterwards.
"""

import struct

from twisted.trial.unittest import SynchronousTestCase

from kaazing_promo.amqp.codec import (
    FRAME_BODY, FRAME_ERROR, FRAME_HEARTBEAT, FRAME_METHOD, AMQPError, encodeFrame, encodeMethod)
from kaazing_promo.amqp.frames import ChannelZeroScanner, FrameReader

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
