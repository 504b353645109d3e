"""
The WebSocket data path, without a per-frame object in sight.

Once a connection is open, nearly every frame a client sends is a masked,
unfragmented binary frame carrying a piece of the AMQP stream.
L{MaskedFrameReader} unmasks those straight into one byte string per read
and hands anything else (text, fragments, control frames, oversized or
malformed frames) back to Autobahn, which knows the rest of RFC 6455.
Frames to the client need no mask: L{binaryFrameHeader} is all it takes.

Why: a relay's cost here is per frame, not per byte (see
PERFORMANCE.md); Autobahn's general path builds a frame header object, a
masker and a message per frame.
"""

import struct

from autobahn.websocket.xormasker import create_xor_masker

from kaazing_promo.adapters.autobahninternals import nativeMasker

# Autobahn's accelerated (NVX, SSE2) masker, called directly: its Python
# wrapper builds objects and copies buffers per frame, ~3x the cost at 4 KiB.
_ffi, _nvx = nativeMasker()

_OPCODE_BINARY = 0x2
_SHORT = struct.Struct("!H").unpack_from
_LONG = struct.Struct("!Q").unpack_from
_FIN = 0x80
_MASKED = 0x80
# Below this size, one big-integer XOR beats building a masker object.
_SMALL = 128


def unmask(payload, mask, offset=0):
    """
    @param payload: masked bytes.
    @param mask: the frame's 4-byte masking key.
    @param offset: how many payload bytes of this frame came before C{payload}.
    @return: the unmasked bytes.
    """
    shift = offset & 3
    if shift:
        mask = mask[shift:] + mask[:shift]
    size = len(payload)
    if size < _SMALL:
        key = (mask * ((size >> 2) + 1))[:size]
        return (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(size, "little")
    if _nvx is None:
        return create_xor_masker(mask, size).process(payload)
    data = bytearray(payload)
    masker = _nvx.nvx_xormask_new(mask)
    try:
        _nvx.nvx_xormask_process(masker, _ffi.from_buffer(data), size)
    finally:
        _nvx.nvx_xormask_free(masker)
    return bytes(data)


def binaryFrameHeader(size):
    """
    @return: the header of an unmasked, final binary frame of C{size} bytes.
    """
    if size < 126:
        return bytes((_FIN | _OPCODE_BINARY, size))
    if size < 65536:
        return struct.pack("!BBH", _FIN | _OPCODE_BINARY, 126, size)
    return struct.pack("!BBQ", _FIN | _OPCODE_BINARY, 127, size)


class MaskedFrameReader:
    """
    Reads a client's masked, final binary frames into the byte stream they
    carry, a frame's payload as it arrives (a large frame is not held until
    it is complete).

    @param maxPayload: frames announcing a larger payload are handed back
        (Autobahn then fails the connection with 1009).
    """

    def __init__(self, maxPayload):
        self.maxPayload = maxPayload
        self._remaining = 0
        self._mask = b""
        self._offset = 0
        self._held = b""

    @property
    def idle(self):
        """
        Whether the reader stands between frames with nothing held, so that
        Autobahn can take over.
        """
        return not self._remaining and not self._held

    def feed(self, data):
        """
        @return: C{(stream, handBack)}: the unmasked payload bytes in
            C{data}, and L{None} or the bytes from the first frame this
            reader does not take (from its first header byte on); the reader
            is then idle.
        """
        if self._held:
            data = self._held + data
            self._held = b""
        size = len(data)
        position = 0
        parts = []
        append = parts.append
        if self._remaining:
            # The rest of a frame begun in an earlier read.
            position = min(self._remaining, size)
            append(unmask(data[:position], self._mask, self._offset))
            self._offset += position
            self._remaining -= position
        while position < size:
            if size - position < 2:
                self._held = data[position:]
                break
            second = data[position + 1]
            if data[position] != _FIN | _OPCODE_BINARY or not second & _MASKED:
                return b"".join(parts), data[position:]
            length = second & 0x7F
            if length < 126:
                start = position + 6
            elif length == 126:
                start = position + 8
                if start <= size:
                    length = _SHORT(data, position + 2)[0]
            else:
                start = position + 14
                if start <= size:
                    length = _LONG(data, position + 2)[0]
            if start > size:
                self._held = data[position:]
                break
            if length > self.maxPayload:
                return b"".join(parts), data[position:]
            mask = data[start - 4:start]
            end = start + length
            if end <= size:
                append(unmask(data[start:end], mask))
                position = end
            else:
                append(unmask(data[start:], mask))
                self._mask = mask
                self._offset = size - start
                self._remaining = end - size
                position = size
        return b"".join(parts), None
