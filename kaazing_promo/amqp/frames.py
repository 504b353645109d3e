"""
Reading AMQP 0-9-1 frames out of a byte stream.

Two readers, for the two phases of a connection:

  - L{FrameReader} cuts whole frames during the handshake, where every
    frame is small (at most C{frame-min-size}, 4,096 bytes) and decoded.
  - L{ChannelZeroScanner} runs once the connection is open: it reads only
    frame headers, hands the bytes on in as few pieces as it can, and
    stops at connection-class methods on channel 0, the only frames the
    gateway still has to act on.

and L{FrameBoundaries}, which follows the broker's stream once it is
relayed as it comes, holding nothing back.
"""

import struct

from kaazing_promo.amqp.codec import (
    ALT_PROTOCOL_HEADER, FRAME_END, FRAME_ERROR, FRAME_METHOD, FRAME_MIN_SIZE,
    PROTOCOL_HEADER, AMQPError)

_HEADER = struct.Struct("!BHL")
_METHOD_ID = struct.Struct("!HH")
HEADER_SIZE = _HEADER.size
CONNECTION_CLASS = 10
VALID_HEADERS = (PROTOCOL_HEADER, ALT_PROTOCOL_HEADER)


class FrameReader:
    """
    Cuts complete frames out of the bytes fed to it.

    @ivar maxFrameSize: the largest frame accepted, header and end octet included.
    """

    def __init__(self, maxFrameSize=FRAME_MIN_SIZE):
        self.maxFrameSize = maxFrameSize
        self._buffer = bytearray()

    def feed(self, data):
        """
        Add C{data} and return every frame now complete.

        @return: L{list} of C{(frameType, channel, payload, raw)} tuples,
            where C{raw} is the whole frame as received.
        @raise AMQPError: FRAME_ERROR for an oversized frame or a wrong
            frame-end octet; the connection must close.
        """
        buffer = self._buffer
        buffer += data
        frames = []
        offset = 0
        while len(buffer) - offset >= HEADER_SIZE:
            frameType, channel, size = _HEADER.unpack_from(buffer, offset)
            total = HEADER_SIZE + size + 1
            if total > self.maxFrameSize:
                buffer.clear()
                raise AMQPError(FRAME_ERROR, f"frame of {total} bytes exceeds the limit of {self.maxFrameSize}")
            if len(buffer) - offset < total:
                break
            if buffer[offset + total - 1] != FRAME_END:
                buffer.clear()
                raise AMQPError(FRAME_ERROR, "frame does not end with the frame-end octet")
            raw = bytes(buffer[offset:offset + total])
            frames.append((frameType, channel, raw[HEADER_SIZE:-1], raw))
            offset += total
        del buffer[:offset]
        return frames

    def takeRemainder(self):
        """
        @return: the bytes of an incomplete frame, which the reader forgets.
        """
        remainder = bytes(self._buffer)
        self._buffer.clear()
        return remainder


class ChannelZeroScanner:
    """
    Finds the frame boundaries in a stream without copying the frames.

    L{scan} returns the longest prefix of the input that can be passed on
    untouched, and stops in front of any connection-class method frame on
    channel 0 (update-secret, close, …), which it returns whole for the
    caller to judge.  A frame header split across reads is held back
    until it is complete, so nothing the caller must see slips through.
    """

    def __init__(self, maxFrameSize):
        self.maxFrameSize = maxFrameSize
        # Bytes of the current frame still to pass before its frame-end octet.
        self._toEnd = -1
        self._held = b""

    def scan(self, data):
        """
        @param data: the next bytes of the stream.
        @return: C{(passOn, frame, rest)}: C{passOn} may be forwarded; if
            C{frame} is not L{None} it is a complete connection-class method
            frame C{(channel, payload, raw)} that was not included in
            C{passOn}, and C{rest} holds the bytes after it, to be scanned
            again once the caller has dealt with C{frame}.
        @raise AMQPError: FRAME_ERROR for a wrong frame-end octet or a
            frame larger than C{maxFrameSize}.
        """
        if self._held:
            data = self._held + data
            self._held = b""
        length = len(data)
        position = 0
        toEnd = self._toEnd
        while True:
            if toEnd >= 0:
                if position + toEnd >= length:
                    self._toEnd = toEnd - (length - position)
                    return data, None, b""
                position += toEnd
                if data[position] != FRAME_END:
                    raise AMQPError(FRAME_ERROR, "frame does not end with the frame-end octet")
                position += 1
                toEnd = -1
            if position == length:
                self._toEnd = -1
                return data, None, b""
            if length - position < HEADER_SIZE:
                return self._hold(data, position)
            frameType, channel, size = _HEADER.unpack_from(data, position)
            if size + HEADER_SIZE + 1 > self.maxFrameSize:
                raise AMQPError(FRAME_ERROR, f"frame of {size + HEADER_SIZE + 1} bytes exceeds the "
                                             f"negotiated frame-max of {self.maxFrameSize}")
            if channel == 0 and frameType == FRAME_METHOD:
                if length - position < HEADER_SIZE + _METHOD_ID.size:
                    return self._hold(data, position)
                classId, _ = _METHOD_ID.unpack_from(data, position + HEADER_SIZE)
                if classId == CONNECTION_CLASS:
                    end = position + HEADER_SIZE + size + 1
                    if end > length:
                        return self._hold(data, position)
                    if data[end - 1] != FRAME_END:
                        raise AMQPError(FRAME_ERROR, "frame does not end with the frame-end octet")
                    self._toEnd = -1
                    raw = data[position:end]
                    return data[:position], (channel, raw[HEADER_SIZE:-1], raw), data[end:]
            toEnd = size
            position += HEADER_SIZE

    def _hold(self, data, position):
        """
        Keep back the incomplete frame start at C{position}: what it is
        cannot be told yet.
        """
        self._toEnd = -1
        self._held = data[position:]
        return data[:position], None, b""


class FrameBoundaries:
    """
    Follows where the frames of a relayed stream begin, without holding,
    copying or checking any of it: the arithmetic of frame sizes only,
    about 0.35 µs per three-frame message (C{bench/boundaries_micro.py}).

    The gateway relays the broker's bytes to the client as they come once
    the connection is open; a frame of its own (update-secret-ok) must go
    in between two of the broker's frames, and a Close of the broker's must
    be noticed for the gateway not to send a second one.  L{feed} tells
    both: where the first frame boundary of each read lies, and which
    connection methods on channel 0 ended in it.  Those frames are small
    (a Close's text is at most 255 bytes): one larger than
    C{frame-min-size} is only counted, never collected.
    """

    def __init__(self):
        # Bytes of the frame in flight still to come; 0 between frames.
        self._toNext = 0
        # The start of a frame header cut by a read.
        self._header = b""
        # A channel-0 method frame cut by a read, collected until its end.
        self._method = None

    @property
    def between(self):
        """
        Whether the stream is between two frames: what is written now
        starts a frame of its own.
        """
        return self._toNext == 0 and not self._header

    def feed(self, data):
        """
        @param data: the next bytes of the stream (not empty).
        @return: C{(boundary, methods)}: C{boundary} is the offset in C{data}
            of its first frame boundary (C{len(data)} when the frame in
            flight ends with it) or L{None} when there is none; C{methods}
            is L{None} or the L{list} of the whole frames of channel-0
            methods that ended in C{data}, each as L{bytes}.
        """
        length = len(data)
        position = self._toNext
        methods = None
        if self._header:
            cut = self._header
            need = HEADER_SIZE - len(cut)
            if length < need:
                self._header = cut + data
                return None, None
            self._header = b""
            frameType, channel, size = _HEADER.unpack(cut + data[:need])
            position = need + size + 1
            if channel == 0 and frameType == FRAME_METHOD and size < FRAME_MIN_SIZE:
                self._method = cut
        if self._method is not None:
            if position > length:
                self._method += data
                self._toNext = position - length
                return None, None
            methods = [self._method + data[:position]]
            self._method = None
        boundary = position if position <= length else None
        # The hot loop: locals only, one unpack and one test per frame.
        unpack = _HEADER.unpack_from
        lastHeader = length - HEADER_SIZE
        overhead = HEADER_SIZE + 1
        while position <= lastHeader:
            frameType, channel, size = unpack(data, position)
            if channel == 0 and frameType == FRAME_METHOD and size < FRAME_MIN_SIZE:
                end = position + overhead + size
                if end <= length:
                    if methods is None:
                        methods = []
                    methods.append(data[position:end])
                else:
                    self._method = data[position:]
            position += overhead + size
        if position < length:
            self._header = data[position:]
            self._toNext = 0
        else:
            self._toNext = position - length
        return boundary, methods
