"""
What the gateway needs from Autobahn beyond its public API, in one place.

  - The WebSocket data path (L{kaazing_promo.transport.wsframes}) reads
    binary frames itself and hands anything else back to Autobahn's own
    frame parser (C{_dataReceived}); it may take over only between frames,
    which Autobahn's C{current_frame}, C{inside_message} and C{data} tell.
  - Autobahn batches its timers into 200 ms buckets (the factory's
    C{_batched_timer}) whose reactor calls outlive the connections; the
    gateway gives it plain delayed calls.
  - The close-handshake timer (C{closeHandshakeTimeoutCall}) survives a
    connection that ends first.
  - Its accelerated masker, C{_nvx_xormasker}, is called directly: its
    Python wrapper costs ~3x at 4 KiB.
  - Each new connection pretty-prints the protocol's whole configuration
    for a debug line (C{pformat} in C{autobahn.websocket.protocol}) whether
    or not anyone logs debug: 7% of a WebSocket setup's gateway CPU
    (issue 19's profile).  L{formatConfigurationLazily} makes that text be
    made only when an observer formats the event.

L{check} names whatever of this an Autobahn upgrade removed.
"""

import pprint

from autobahn.websocket import protocol as _protocolModule
from autobahn.websocket.protocol import WebSocketProtocol

try:
    from _nvx_xormasker import ffi as _ffi, lib as _nvx
except ImportError:  # Autobahn built without NVX
    _ffi = _nvx = None


def check():
    """
    @return: a list of the private names this module needs that the
        installed Autobahn lacks (empty when all are there).
    """
    missing = []
    if not callable(getattr(WebSocketProtocol, "_dataReceived", None)):
        missing.append("WebSocketProtocol._dataReceived")
    source = WebSocketProtocol.processData.__code__.co_names + WebSocketProtocol._connectionMade.__code__.co_names
    for name in ("current_frame", "inside_message", "data"):
        if name not in source:
            missing.append(f"WebSocketProtocol.{name}")
    if "_batched_timer" not in WebSocketProtocol._connectionMade.__code__.co_names:
        missing.append("WebSocketServerFactory._batched_timer")
    if not callable(getattr(_protocolModule, "pformat", None)) or \
            "pformat" not in WebSocketProtocol._connectionMade.__code__.co_names:
        missing.append("autobahn.websocket.protocol.pformat")
    if "closeHandshakeTimeoutCall" not in WebSocketProtocol._connectionMade.__code__.co_names:
        missing.append("WebSocketProtocol.closeHandshakeTimeoutCall")
    return missing


def betweenFrames(protocol):
    """
    @return: whether Autobahn holds no partly read frame or message of
        C{protocol}, so that the gateway's own reader may take the bytes.
    """
    return protocol.current_frame is None and not protocol.inside_message and not protocol.data


def parseFrames(protocol, data):
    """
    Hand C{data} to Autobahn's own frame parser.
    """
    protocol._dataReceived(data)


def cancelCloseHandshakeTimer(protocol):
    call = protocol.closeHandshakeTimeoutCall
    if call is not None:
        call.cancel()
        protocol.closeHandshakeTimeoutCall = None


def useTimers(factory, timers):
    """
    Make C{factory}'s protocols schedule their timers with C{timers} (an
    object with C{call_later(delay, f, *args, **kwargs)} returning something
    with C{cancel()}).
    """
    factory._batched_timer = timers


def nativeMasker():
    """
    @return: C{(ffi, lib)} of Autobahn's NVX masker, or C{(None, None)}.
    """
    return _ffi, _nvx


class _LazyPrettyText:
    """
    C{pformat(value)}, made when (and if) the text is asked for.
    """

    __slots__ = ("_value",)

    def __init__(self, value):
        self._value = value

    def __str__(self):
        return pprint.pformat(self._value)

    def __format__(self, spec):
        return format(str(self), spec)


def formatConfigurationLazily():
    """
    Autobahn's per-connection configuration dump costs nothing unless a
    debug observer formats it.
    """
    _protocolModule.pformat = _LazyPrettyText
