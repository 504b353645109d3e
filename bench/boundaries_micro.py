"""
Micro-benchmark behind L{kaazing_promo.amqp.frames.FrameBoundaries}: the
CPU cost per broker→client message of following the frame boundaries of
the relayed stream (for the gateway's update-secret-ok and for noticing
the broker's Close), next to

  - the bare loop (C{struct.unpack_from(">I", data, pos + 3)}, sizes only,
    no channel-0 check), the floor, and
  - the same loop with the one extra check per frame (frame type and
    channel unpacked with the size, C{channel == 0 and frameType == 1}).

Each message is what a consumer receives: basic.deliver, a content header
frame and a body frame, cut into 64 KiB reads as a socket hands them over.

    PYTHONPATH=. /work/main/.venv/bin/python bench/boundaries_micro.py [BODY_SIZE ...]

In-process, no sockets; the best of several rounds is reported, in µs
per message.
"""

import struct
import sys
import time

from kaazing_promo.amqp.codec import FRAME_BODY, FRAME_HEADER, encodeFrame, encodeMethod
from kaazing_promo.amqp.frames import FrameBoundaries

READ = 65536
ROUNDS = 30


def message(body):
    header = struct.pack("!HHQH", 60, 0, len(body), 0)
    return (encodeMethod(1, "basic.deliver", consumer_tag="ctag-1", delivery_tag=1, redelivered=False,
                         exchange="", routing_key="queue")
            + encodeFrame(FRAME_HEADER, 1, header) + encodeFrame(FRAME_BODY, 1, body))


_SIZE = struct.Struct(">I").unpack_from
_HEADER = struct.Struct(">BHI").unpack_from


def bareLoop(reads):
    toNext, cut = 0, b""
    for data in reads:
        if cut:
            # A frame header cut by the read (the floor ignores what that costs).
            data, cut, toNext = cut + data, b"", 0
        position, length = toNext, len(data)
        while position + 7 <= length:
            position += _SIZE(data, position + 3)[0] + 8
        if position < length:
            cut, position = data[position:], length
        toNext = position - length
    return toNext


def checkedLoop(reads):
    toNext, cut = 0, b""
    for data in reads:
        if cut:
            data, cut, toNext = cut + data, b"", 0
        position, length = toNext, len(data)
        while position + 7 <= length:
            frameType, channel, size = _HEADER(data, position)
            if channel == 0 and frameType == 1:
                pass
            position += size + 8
        if position < length:
            cut, position = data[position:], length
        toNext = position - length
    return toNext


def tracker(reads):
    feed = FrameBoundaries().feed
    for data in reads:
        feed(data)


def best(function, reads):
    times = []
    for _ in range(ROUNDS):
        started = time.perf_counter()
        function(reads)
        times.append(time.perf_counter() - started)
    return min(times)


def main(bodies):
    print(f"Python {sys.version.split()[0]}; reads of {READ} bytes; µs per 3-frame message (best of {ROUNDS})")
    print(f"{'body':>8} {'messages':>9} {'bare loop':>10} {'+check':>8} {'FrameBoundaries':>16}")
    for body in bodies:
        one = message(b"x" * body)
        count = max(1000, (4 << 20) // len(one))
        stream = one * count
        reads = [stream[offset:offset + READ] for offset in range(0, len(stream), READ)]
        row = [best(function, reads) / count * 1e6 for function in (bareLoop, checkedLoop, tracker)]
        print(f"{body:>8} {count:>9} {row[0]:>10.3f} {row[1]:>8.3f} {row[2]:>16.3f}")


if __name__ == "__main__":
    main([int(arg) for arg in sys.argv[1:]] or [0, 100, 1000, 10000])
