"""
The WebSocket fast path: client frames unmasked straight into the stream,
whatever the cuts; everything unusual handed back to Autobahn.
"""

import os
import struct

from autobahn.websocket.xormasker import create_xor_masker
from hypothesis import given, settings, strategies as st
from twisted.trial.unittest import SynchronousTestCase

from kaazing_promo.transport.wsframes import MaskedFrameReader, binaryFrameHeader, unmask


def clientFrame(payload, opcode=2, fin=True, mask=None):
    mask = mask or os.urandom(4)
    size = len(payload)
    first = (0x80 if fin else 0) | opcode
    if size < 126:
        header = bytes((first, 0x80 | size))
    elif size < 65536:
        header = struct.pack("!BBH", first, 0x80 | 126, size)
    else:
        header = struct.pack("!BBQ", first, 0x80 | 127, size)
    return header + mask + create_xor_masker(mask, size).process(payload)


payloads = st.lists(st.binary(max_size=300) | st.sampled_from([b"x" * 126, b"y" * 70000]), max_size=6)


class MaskedFrameReaderTests(SynchronousTestCase):

    @settings(max_examples=100, derandomize=True, deadline=None)
    @given(payloads, st.lists(st.integers(1, 5000), max_size=6))
    def test_anyCuts(self, bodies, cuts):
        """
        The unmasked stream is the payloads in order, however the reads cut
        the frames.
        """
        wire = b"".join(clientFrame(body) for body in bodies)
        reader = MaskedFrameReader(1 << 20)
        stream = b""
        position = 0
        for cut in cuts + [len(wire)]:
            piece, handBack = reader.feed(wire[position:position + cut])
            self.assertIsNone(handBack)
            stream += piece
            position += cut
        self.assertEqual(stream, b"".join(bodies))
        self.assertTrue(reader.idle)

    def test_handsBackOtherFrames(self):
        """
        Text, ping, fragments and unmasked frames go back to Autobahn from
        their first byte, after the binary frames before them.
        """
        for other in (clientFrame(b"hi", opcode=1), clientFrame(b"", opcode=9),
                      clientFrame(b"part", fin=False), b"\x82\x03abc"):
            reader = MaskedFrameReader(1 << 20)
            wire = clientFrame(b"first") + other + clientFrame(b"later")
            stream, handBack = reader.feed(wire)
            self.assertEqual(stream, b"first")
            first = len(wire) - len(other) - len(clientFrame(b"later"))
            self.assertEqual(handBack, wire[first:])
            self.assertTrue(reader.idle)

    def test_oversizedHandedBack(self):
        reader = MaskedFrameReader(100)
        frame = clientFrame(b"z" * 101)
        self.assertEqual(reader.feed(frame), (b"", frame))

    def test_unmaskWithOffset(self):
        mask = b"\x01\x02\x03\x04"
        data = bytes(range(200))
        masked = create_xor_masker(mask, len(data)).process(data)
        for split in (1, 3, 5, 130, 199):
            self.assertEqual(unmask(masked[:split], mask) + unmask(masked[split:], mask, split), data)

    def test_serverFrameHeaders(self):
        self.assertEqual(binaryFrameHeader(5), b"\x82\x05")
        self.assertEqual(binaryFrameHeader(300), b"\x82\x7e\x01\x2c")
        self.assertEqual(binaryFrameHeader(70000), b"\x82\x7f" + struct.pack("!Q", 70000))
