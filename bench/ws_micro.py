"""
Micro-benchmark behind bench/README.md's recommendation for the gateway's
WebSocket path: the CPU cost per client→gateway frame of

  - Autobahn (what the gateway runs: WebSocketServerProtocol, the frames
    fed through dataReceived after a real handshake, onMessage counting), and
  - a whole-read-buffer parser (every complete frame in one read parsed in
    one loop, unmasked with one big-integer XOR per frame, the payloads
    joined once per read) — the sketch of what the gateway could do after
    the upgrade.

and, when the checkout has it, the gateway's own MaskedFrameReader
(kaazing_promo/transport/wsframes.py); and the cost per gateway→client
message of Autobahn's sendMessage against a hand-built unmasked frame
header written with writeSequence.

    PYTHONPATH=. /tmp/venv/bin/python bench/ws_micro.py   (the project's venv: Autobahn, Twisted)

In-process, no sockets: it isolates the framing cost from the kernel's.
"""

import os
import struct
import sys
import time

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet.testing import StringTransport


def clientFrame(payload, mask=None):
    mask = mask or os.urandom(4)
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x82, 0x80 | n)
    elif n < 65536:
        header = struct.pack("!BBH", 0x82, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", 0x82, 0x80 | 127, n)
    return header + mask + xor(payload, mask)


def xor(data, mask):
    n = len(data)
    if not n:
        return b""
    m = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(m, "little")).to_bytes(n, "little")


def chunks(data, size=65536):
    return [data[i:i + size] for i in range(0, len(data), size)]


class Counting(WebSocketServerProtocol):
    received = 0

    def onMessage(self, payload, isBinary):
        self.factory.count += 1
        self.factory.bytes += len(payload)


def autobahnCost(reads, frames):
    factory = WebSocketServerFactory("ws://127.0.0.1:1")
    factory.protocol = Counting
    factory.setProtocolOptions(utf8validateIncoming=False, maxMessagePayloadSize=1 << 20,
                               maxFramePayloadSize=1 << 20, autoPingInterval=None)
    factory.count = factory.bytes = 0
    proto = factory.buildProtocol(None)
    transport = StringTransport()
    proto.makeConnection(transport)
    proto.dataReceived(b"GET / HTTP/1.1\r\nHost: 127.0.0.1:1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    assert proto.state == proto.STATE_OPEN, proto.state
    t0 = time.perf_counter()
    for r in reads:
        proto.dataReceived(r)
    dt = time.perf_counter() - t0
    assert factory.count == frames, (factory.count, frames)
    return dt / frames * 1e6


def bufferParser(reads, frames):
    """
    Parse every complete frame of each read in one loop; unmask small
    payloads with one big-integer XOR, larger ones in place with Autobahn's
    NVX C routine called directly (new/process/free, no wrapper objects,
    no copies).
    """
    try:
        from _nvx_xormasker import ffi, lib
    except ImportError:
        ffi = lib = None
    buf = b""
    count = 0
    out = []
    t0 = time.perf_counter()
    for r in reads:
        buf = bytearray(buf + r if buf else r)
        pointer = ffi.from_buffer("uint8_t[]", buf) if ffi is not None else None
        pos = 0
        n = len(buf)
        parts = []
        while n - pos >= 6:
            b1 = buf[pos + 1]
            length = b1 & 0x7F
            p = pos + 2
            if length == 126:
                if n - p < 2:
                    break
                length = int.from_bytes(buf[p:p + 2], "big")
                p += 2
            elif length == 127:
                if n - p < 8:
                    break
                length = int.from_bytes(buf[p:p + 8], "big")
                p += 8
            end = p + 4 + length
            if end > n:
                break
            mask = bytes(buf[p:p + 4])
            if length < 256 or lib is None:
                parts.append(xor(bytes(buf[p + 4:end]), mask))
            else:
                masker = lib.nvx_xormask_new(mask)
                lib.nvx_xormask_process(masker, pointer + p + 4, length)
                lib.nvx_xormask_free(masker)
                parts.append(buf[p + 4:end])
            count += 1
            pos = end
        del pointer
        buf = bytes(buf[pos:])
        out.append(b"".join(parts))  # one session.clientDataReceived per read
    dt = time.perf_counter() - t0
    assert count == frames
    return dt / frames * 1e6


def gatewayReader(reads, frames):
    """
    The gateway's own L{kaazing_promo.transport.wsframes.MaskedFrameReader}
    (when this checkout has it).
    """
    from kaazing_promo.transport.wsframes import MaskedFrameReader
    reader = MaskedFrameReader(1 << 20)
    t0 = time.perf_counter()
    for r in reads:
        stream, handBack = reader.feed(r)
        assert handBack is None
    return (time.perf_counter() - t0) / frames * 1e6


class NullTransport:
    def write(self, data):
        pass

    def writeSequence(self, seq):
        pass


def sendCosts(payload, n):
    factory = WebSocketServerFactory("ws://127.0.0.1:1")
    factory.protocol = Counting
    factory.setProtocolOptions(autoPingInterval=None)
    proto = factory.buildProtocol(None)
    transport = StringTransport()
    proto.makeConnection(transport)
    proto.dataReceived(b"GET / HTTP/1.1\r\nHost: 127.0.0.1:1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    proto.transport = NullTransport()
    t0 = time.perf_counter()
    for _ in range(n):
        proto.sendMessage(payload, isBinary=True)
    autobahn = (time.perf_counter() - t0) / n * 1e6
    t = NullTransport()
    pack2, pack4 = struct.Struct("!BB").pack, struct.Struct("!BBH").pack
    t0 = time.perf_counter()
    for _ in range(n):
        size = len(payload)
        header = pack2(0x82, size) if size < 126 else pack4(0x82, 126, size) if size < 65536 else \
            struct.pack("!BBQ", 0x82, 127, size)
        t.writeSequence((header, payload))
    hand = (time.perf_counter() - t0) / n * 1e6
    return autobahn, hand


def main():
    # A 16 B publish as amqp-client sends it: method + header + body frames
    # in one WebSocket message (~70 bytes); 4 KiB likewise (~4,150 bytes).
    results = []
    for label, size, count in (("16 B publish (70 B message)", 70, 100000),
                               ("4 KiB publish (4,150 B message)", 4150, 20000),
                               ("64 KiB publish (65,600 B message)", 65600, 2000)):
        payload = os.urandom(size)
        stream = b"".join(clientFrame(payload) for _ in range(count))
        reads = chunks(stream)
        a = min(autobahnCost(reads, count) for _ in range(3))
        try:
            g = min(gatewayReader(reads, count) for _ in range(3))
        except ImportError:
            g = float("nan")
        b = min(bufferParser(reads, count) for _ in range(3))
        sa, sb = (min(x) for x in zip(*(sendCosts(payload, count) for _ in range(3))))
        results.append((label, a, g, b, sa, sb))
    print(f"Python {sys.version.split()[0]}; µs per message, best of 3, in-process (no sockets)")
    print(f"{'message':<34} {'Autobahn recv':>14} {'gateway reader':>15} {'sketch (raw NVX)':>17} "
          f"{'Autobahn send':>14} {'hand-built send':>16}")
    for label, a, g, b, sa, sb in results:
        print(f"{label:<34} {a:14.2f} {g:15.2f} {b:17.2f} {sa:14.2f} {sb:16.2f}")


if __name__ == "__main__":
    main()
