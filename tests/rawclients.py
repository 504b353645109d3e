"""
Raw clients for tests that need to see bytes and choose their source
address: attackers and real users are different hosts, each binding its
sockets to its own loopback address (127.0.0.2, … reach a listener on
127.0.0.1).
"""

import base64
import time

from twisted.internet import defer, protocol, reactor, task
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

from kaazing_promo.amqp.codec import PROTOCOL_HEADER, decodeMethod, encodeMethod, encodePlainResponse
from kaazing_promo.amqp.frames import FrameReader

REAL_USER = ("joe.smith", "joe-password")


class RawClient(protocol.Protocol):
    """
    Sends C{request} bytes on connect and collects everything until closed.
    """

    def __init__(self, request=b""):
        self.request = request
        self.data = b""
        self.arrivals = []
        self.done = defer.Deferred()

    def connectionMade(self):
        if self.request:
            self.transport.write(self.request)

    def dataReceived(self, data):
        self.arrivals.append((time.monotonic(), data))
        self.data += data

    def connectionLost(self, reason):
        self.done.callback(self.data)


class AMQPLogin(protocol.Protocol):
    """
    A bare AMQP login over the AMQP listener: header, then Start-Ok PLAIN
    once the gateway's Start arrives.  C{result} fires with C{"open"} when
    the broker's Tune comes through (the login passed), or with the
    gateway's Close text, or C{"dropped"}.

    @param hangUpAfter: close the socket this many seconds after Start-Ok
        (an attacker that does not wait for the answer).
    """

    def __init__(self, user, password, hangUpAfter=None, response=None):
        self.user, self.password = user, password
        self.response = response
        self.hangUpAfter = hangUpAfter
        self.reader = FrameReader(1 << 20)
        self.result = defer.Deferred()
        self.sentAt = None

    def connectionMade(self):
        self.transport.write(PROTOCOL_HEADER)

    def dataReceived(self, data):
        for _, _, payload, _ in self.reader.feed(data):
            method = decodeMethod(payload)
            if method.name == "start":
                self.sentAt = time.monotonic()
                self.transport.write(encodeMethod(
                    0, "connection.start-ok", client_properties={}, mechanism="PLAIN",
                    response=self.response or encodePlainResponse(self.user, self.password), locale="en_US"))
                if self.hangUpAfter is not None:
                    reactor.callLater(self.hangUpAfter, self.transport.abortConnection)
            elif method.name == "tune":
                self._settle("open")
                self.transport.loseConnection()
            elif method.name == "close":
                self._settle(method.args["reply_text"])
                self.transport.loseConnection()

    def _settle(self, value):
        if not self.result.called:
            self.result.callback(value)

    def connectionLost(self, reason):
        self._settle("dropped")


def connectFrom(source, port, proto):
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=5, bindAddress=(source, 0))
    return connectProtocol(endpoint, proto)


@defer.inlineCallbacks
def amqpLogin(source, port, user, password, hangUpAfter=None, response=None):
    proto = AMQPLogin(user, password, hangUpAfter, response)
    yield connectFrom(source, port, proto)
    result = yield proto.result
    return result


@defer.inlineCallbacks
def rawRequest(port, request, source="127.0.0.1"):
    """
    Send C{request} and collect everything until the server closes.

    @return: a L{Deferred} firing with the whole response (L{bytes}).
    """
    proto = RawClient(request)
    yield connectFrom(source, port, proto)
    response = yield proto.done
    return response


@defer.inlineCallbacks
def httpRequest(source, port, request):
    proto = RawClient(request)
    yield connectFrom(source, port, proto)
    response = yield proto.done
    return response.partition(b"\r\n")[0]


@defer.inlineCallbacks
def httpExchange(source, port, request):
    """
    @return: C{(status line, body)} of the whole response.
    """
    proto = RawClient(request)
    yield connectFrom(source, port, proto)
    response = yield proto.done
    head, _, body = response.partition(b"\r\n\r\n")
    return head.partition(b"\r\n")[0], body


def basic(user, password):
    return b"Authorization: Basic " + base64.b64encode(f"{user}:{password}".encode()) + b"\r\n"


def upgrade(headers=b""):
    return (b"GET /amqp HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" + headers + b"\r\n")


def get(path, headers=b""):
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n".encode() + headers + b"\r\n")


def post(path, headers=b""):
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n"
            .encode() + headers + b"\r\n")


def sleep(seconds):
    return task.deferLater(reactor, seconds, lambda: None)
