"""
The WebSocket listener: Autobahn mounted in a twisted.web site.

The person authenticates on the HTTP upgrade (P1): C{Authorization: Basic}
for programs, or a single-use ticket from C{POST <path>/ticket} for
browsers, which cannot set headers on a WebSocket.  Only then is a
L{GatewaySession} made, and only then does any byte reach the broker.

Binary WebSocket messages carry the AMQP byte stream; message boundaries
need not match frame boundaries in either direction.
"""

import base64
import binascii
import json
from urllib.parse import urlsplit

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.internet import defer
from twisted.logger import Logger
from twisted.web import http, resource, server
from zope.interface import implementer

from kaazing_promo.adapters.autobahninternals import (
    betweenFrames, cancelCloseHandshakeTimer, formatConfigurationLazily, parseFrames, useTimers)
from kaazing_promo.adapters.twistedinternals import writeNow
from kaazing_promo.amqp.broker import setNoDelay
from kaazing_promo.errors import LoginDenied
from kaazing_promo.ops.logtext import escaped
from kaazing_promo.interfaces import IClientLink
from kaazing_promo.transport.address import describePeer
from kaazing_promo.transport.hosts import HostCheckedRoot
from kaazing_promo.transport.pump import CoupledTransports
from kaazing_promo.transport.webroot import WebRoot
from kaazing_promo.transport.wsframes import MaskedFrameReader, binaryFrameHeader

formatConfigurationLazily()

SUBPROTOCOL = "amqp"
CLOSE_NORMAL = 1000
CLOSE_UNSUPPORTED_DATA = 1003
CLOSE_INTERNAL_ERROR = 1011
#: The cookie the page keeps its session in (HttpOnly, SameSite=Strict, the endpoint's path).
SESSION_COOKIE = "kp_session"
_CHALLENGE = ("WWW-Authenticate", 'Basic realm="kaazing-promo", charset="UTF-8"')


class _Deny(ConnectionDeny):
    """
    A refused upgrade, with the response headers the status needs
    (Autobahn's L{ConnectionDeny} carries none).
    """

    def __init__(self, code, reason, headers=()):
        ConnectionDeny.__init__(self, code, reason)
        self.headers = list(headers)


def denialFor(error):
    """
    The HTTP answer to a L{LoginDenied}: 401 (with a challenge), 403 or 429.
    """
    if error.outcome == "rate-limited":
        return _Deny(429, "Too Many Requests", [("Retry-After", str(error.retryAfter))])
    if error.outcome == "unauthorized":
        return _Deny(403, "Forbidden")
    if error.outcome == "realm-error":
        # The realm could not answer: say so without detail, and no challenge
        # (retyping the password will not help).
        return _Deny(503, "Service Unavailable")
    return _Deny(401, "Unauthorized", [_CHALLENGE])


def parseBasic(value):
    """
    @param value: an C{Authorization} header value (L{str} or L{bytes}).
    @return: C{(user, password)} or L{None} when it is not usable Basic.
    """
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    scheme, _, encoded = (value or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    user, colon, password = decoded.partition(":")
    if not colon or not user:
        return None
    return user, password


def originAllowed(origin, host, allowed):
    """
    The Origin check that stops cross-site WebSocket hijacking.

    @param origin: the request's C{Origin} (L{None} for non-browser clients, which pass).
    @param host: the request's C{Host}.
    @param allowed: the listener's C{allowed_origins}, or L{None} for same origin only.
    """
    if origin is None:
        return True
    if allowed is not None:
        return origin in allowed or "*" in allowed
    netloc = urlsplit(origin).netloc
    return bool(netloc) and netloc == host


class _QuietLogger(Logger):
    """
    Autobahn logs whole HTTP requests at debug level (Authorization headers
    and ticket query strings included): its debug and trace output is
    dropped, whatever the observers' level.
    """

    def debug(self, *args, **kwargs):
        pass

    trace = debug


@implementer(IClientLink)
class GatewayWebSocketProtocol(CoupledTransports, WebSocketServerProtocol):
    """
    One browser or program speaking AMQP 0-9-1 inside binary WebSocket messages.
    """

    log = _QuietLogger()
    session = None
    #: The connection's L{Admission} and L{HandshakeDeadline}, handed over
    #: by the HTTP channel that accepted it.
    admission = deadline = None
    _denyHeaders = ()
    _frames = None

    def connectionMade(self):
        WebSocketServerProtocol.connectionMade(self)
        setNoDelay(self.transport)
        if self.deadline is None:
            self.deadline = self.factory.context.startDeadline(None)
        self.deadline.handOver(self._handshakeExpired)

    def _handshakeExpired(self):
        self.transport.abortConnection()

    def _upgrading(self):
        """
        Whether the client still waits for the upgrade's answer.
        """
        return self.state == self.STATE_CONNECTING

    @defer.inlineCallbacks
    def onConnect(self, request):
        context = self.factory.context
        listener = context.listener
        source = describePeer(self.transport.getPeer())
        try:
            if not originAllowed(request.headers.get("origin"), request.headers.get("host"),
                                 listener.allowed_origins):
                raise _Deny(403, "Forbidden")
            # The wait for the answer is the gateway's, not the client's.
            self.deadline.pause()
            try:
                self.avatar, self.credentials = yield self.factory.authenticate(
                    request.headers, request.params, source, self._upgrading)
            finally:
                self.deadline.resume()
        except LoginDenied as e:
            raise self._refuse(denialFor(e))
        except _Deny as e:
            raise self._refuse(e)
        self.source = source
        return SUBPROTOCOL if SUBPROTOCOL in request.protocols else None

    def _refuse(self, denial):
        """
        Keep the headers of C{denial} for L{failHandshake}, not the
        exception: its traceback holds this protocol, and the protocol
        holding it would make a cycle only the collector frees.
        """
        self._denyHeaders = denial.headers
        return denial

    def failHandshake(self, reason, code=400, responseHeaders=None):
        headers = list(responseHeaders or [])
        headers += self._denyHeaders
        # Autobahn's reasons quote the client's headers, and it logs them.
        WebSocketServerProtocol.failHandshake(self, escaped(reason), code, headers)

    def onOpen(self):
        self.session = self.factory.context.makeSession(
            avatar=self.avatar, source=self.source, credentials=self.credentials)
        self.credentials = None
        self._frames = MaskedFrameReader(self.factory.context.listener.max_ws_message)
        self.session.clientConnected(self, self.deadline)
        # twisted.web's channel registered itself as the transport's
        # producer; after the upgrade the session's pump takes its place.
        self.transport.unregisterProducer()

    def dataReceived(self, data):
        """
        The data path: binary frames go straight to the session, one call
        per read; whatever else arrives goes through Autobahn.
        """
        frames = self._frames
        if frames is None or self.state != self.STATE_OPEN or (frames.idle and not betweenFrames(self)):
            return parseFrames(self, data)
        stream, handBack = frames.feed(data)
        if stream:
            self.session.clientDataReceived(stream)
        if handBack is not None and self.state != self.STATE_CLOSED:
            # Closing too: the client's close frame may follow its last message
            # (AMQP Close-Ok) in the same read, and is the reply Autobahn waits for.
            parseFrames(self, handBack)

    def onMessage(self, payload, isBinary):
        if not isBinary:
            # sendClose allows only 1000 and 3000-4999; the frame itself takes any code.
            self.sendCloseFrame(code=CLOSE_UNSUPPORTED_DATA, reasonUtf8=b"AMQP travels in binary messages only",
                                isReply=False)
            return
        self.session.clientDataReceived(payload)

    def connectionLost(self, reason):
        # Autobahn leaves its close-handshake timer running when the TCP
        # connection goes first; with thousands of clients, that adds up.
        cancelCloseHandshakeTimer(self)
        WebSocketServerProtocol.connectionLost(self, reason)
        self.deadline.met()
        if self.admission is not None:
            self.admission.release()
        # Autobahn resolves is_closed with the protocol itself, a cycle that
        # would keep the closed connection for the garbage collector.
        self.is_closed = defer.succeed(None)

    def dropConnection(self, abort=False):
        if abort and self.wasClean:
            # Autobahn aborts once the client's close frame answers ours; when
            # the two crossed, ours may still be in the write buffer: let it out.
            abort = False
        WebSocketServerProtocol.dropConnection(self, abort)

    def onClose(self, wasClean, code, reason):
        session, self.session = self.session, None
        if session is not None:
            session.clientConnectionLost()

    # The session's view of its client.
    def write(self, data):
        if self.state == self.STATE_OPEN:
            # Each broker read is one binary message; no mask to the client.
            writeNow(self.transport, binaryFrameHeader(len(data)) + data)

    def close(self, failed):
        if self.state == self.STATE_OPEN:
            self.sendCloseFrame(code=CLOSE_INTERNAL_ERROR if failed else CLOSE_NORMAL, isReply=False)
        elif self.state != self.STATE_CLOSED:
            self.dropConnection(abort=False)


class _ReactorTimers:
    """
    Autobahn's timer interface over plain C{reactor.callLater}.

    Autobahn batches its timers into 200 ms buckets whose reactor call
    outlives every cancelled timer in it; a plain delayed call per timer is
    cheap for the reactor's heap and leaves nothing behind a closed
    connection.
    """

    def __init__(self, clock):
        self._clock = clock

    def call_later(self, delay, function, *args, **kwargs):
        return _Timer(self._clock.callLater(delay, function, *args, **kwargs))


class _Timer:
    def __init__(self, call):
        self._call = call

    def cancel(self):
        # Autobahn may cancel a timer that already fired.
        if self._call.active():
            self._call.cancel()


class GatewayWebSocketFactory(WebSocketServerFactory):
    """
    @ivar context: the listener's L{kaazing_promo.transport.context.ListenerContext}.
    @ivar handOver: while an upgrade request is being taken over, the
        C{(admission, deadline)} of its connection.
    """

    protocol = GatewayWebSocketProtocol
    handOver = None

    def __init__(self, context):
        # url=None: a fixed URL would refuse other Host ports (HAProxy, port 0).
        WebSocketServerFactory.__init__(self, url=None, server="kaazing-promo")
        self.context = context
        useTimers(self, _ReactorTimers(context.clock))
        listener = context.listener
        self.setProtocolOptions(
            maxMessagePayloadSize=listener.max_ws_message,
            maxFramePayloadSize=listener.max_ws_message,
            # The connection's one HandshakeDeadline, started at accept, covers the upgrade.
            openHandshakeTimeout=0,
            autoPingInterval=listener.ping_interval or None,
            autoPingTimeout=listener.ping_interval or None,
            # AMQP is binary: no UTF-8 validation on the data path.
            utf8validateIncoming=False,
            failByDrop=False,
        )

    def buildProtocol(self, addr):
        protocol = WebSocketServerFactory.buildProtocol(self, addr)
        if self.handOver is not None:
            protocol.admission, protocol.deadline = self.handOver
            self.handOver = None
        return protocol

    def authenticate(self, headers, params, source, stillThere):
        """
        @param stillThere: tells whether the client still waits.
        @return: a L{Deferred} firing with C{(avatar, credentials)},
            failing with L{LoginDenied}.
        """
        context = self.context
        if not context.requiresLogin:
            return defer.succeed((context.anonymous, None))
        tickets = params.get("ticket")
        if tickets:
            return context.authenticator.redeemTicket(tickets[0], context.listener, source)
        return _passwordLogin(context, headers.get("authorization"), source, stillThere)


def _passwordLogin(context, authorization, source, stillThere, audit=True):
    """
    Log in with an C{Authorization: Basic} header.

    @return: a L{Deferred} firing with C{(avatar, credentials)}, failing
        with L{LoginDenied}.
    """
    credentials = parseBasic(authorization)
    username, password = credentials or (None, None)
    attempt = context.loginAttempt(
        source, username, password, stillThere,
        "no credentials" if authorization is None else "unusable Authorization header")
    d = context.authenticator.authenticate(attempt, audit)
    return d.addCallback(lambda avatar: (avatar, credentials))


def _json(request, code, body):
    request.setResponseCode(code)
    request.setHeader(b"Content-Type", b"application/json")
    request.setHeader(b"Cache-Control", b"no-store")
    request.setHeader(b"X-Content-Type-Options", b"nosniff")
    return json.dumps(body).encode("utf-8")


class _GatewayHTTPResource(resource.Resource):
    """
    The shared part of the ticket and whoami endpoints: Origin allow-list,
    CORS for allowed origins, Basic login, JSON answers.  A failed login gets
    C{401} without a Basic challenge, which would pop a browser dialog over
    the page.
    """

    isLeaf = True

    #: Whether a successful login here is a login decision for the audit trail.
    audited = True

    def __init__(self, context):
        resource.Resource.__init__(self)
        self.context = context

    def _origin(self, request):
        origin = request.getHeader(b"origin")
        host = request.getHeader(b"host")
        origin = None if origin is None else origin.decode("latin-1")
        host = None if host is None else host.decode("latin-1")
        allowed = self.context.listener.allowed_origins
        if not originAllowed(origin, host, allowed):
            return False
        if origin is not None and allowed is not None:
            request.setHeader(b"Access-Control-Allow-Origin", origin.encode("latin-1"))
            request.setHeader(b"Vary", b"Origin")
        return True

    #: Whether a password login here starts the page's session (the ticket endpoint).
    keepsSession = False

    def _setSessionCookie(self, request, avatar):
        listener = self.context.listener
        value = self.context.authenticator.openSession(avatar, listener)
        if value is None:
            return
        request.addCookie(SESSION_COOKIE.encode("ascii"), value.encode("ascii"), path=listener.path.encode("utf-8"),
                          max_age=str(int(listener.session_ttl)).encode("ascii"), secure=request.isSecure() or None,
                          httpOnly=True, sameSite="strict")

    def render_OPTIONS(self, request):
        if not self._origin(request):
            return _json(request, 403, {"error": "origin not allowed"})
        request.setHeader(b"Access-Control-Allow-Methods", b"POST, GET, OPTIONS")
        request.setHeader(b"Access-Control-Allow-Headers", b"Authorization, Content-Type")
        request.setHeader(b"Access-Control-Max-Age", b"600")
        request.setResponseCode(204)
        return b""

    def _login(self, request, then):
        if not self._origin(request):
            return _json(request, 403, {"error": "origin not allowed"})
        source = describePeer(request.getClientAddress())
        gone = []
        request.notifyFinish().addErrback(gone.append)
        context = self.context
        authorization = request.getHeader(b"authorization")
        cookie = request.getCookie(SESSION_COOKIE.encode("ascii"))
        deadline = request.channel.deadline if isinstance(request.channel, GatewayHTTPChannel) else None
        if deadline is not None:
            # The wait for the answer is the gateway's, not the client's.
            deadline.pause()
        if authorization is None and cookie is not None and context.requiresLogin:
            # The page's session: no password, no hash (issue 19).
            d = context.authenticator.resumeSession(cookie.decode("latin-1"), context.listener, source)
            d.addCallback(lambda avatar: (avatar, None))
        else:
            d = _passwordLogin(context, authorization, source, lambda: not gone, self.audited)

        def answered(result):
            if deadline is not None:
                deadline.resume()
            return result
        d.addBoth(answered)

        def answer(loggedIn):
            if gone:
                return
            avatar, credentials = loggedIn
            if credentials is not None and self.keepsSession:
                self._setSessionCookie(request, avatar)
            body = then(avatar, source, credentials)
            request.write(_json(request, 200, body))
            request.finish()

        def denied(failure):
            failure.trap(LoginDenied)
            if gone:
                return
            deny = denialFor(failure.value)
            for name, value in deny.headers:
                if name != _CHALLENGE[0]:
                    request.setHeader(name, value)
            request.write(_json(request, deny.code, {"error": deny.reason}))
            request.finish()

        d.addCallbacks(answer, denied)
        d.addErrback(lambda f: (Logger().failure("ticket endpoint failed", f), request.finish()))
        return server.NOT_DONE_YET


class TicketResource(_GatewayHTTPResource):
    """
    C{POST <path>/ticket}: Basic credentials (or the page's session cookie)
    in, C{{"ticket", "expires_in"}} out; a password login also sets the
    session cookie.
    """

    keepsSession = True

    def render_POST(self, request):
        def ticket(avatar, source, credentials):
            context = self.context
            kept = credentials if context.keepsCredentials else None
            ticket = context.authenticator.issueTicket(avatar, context.listener, source, kept)
            return {"ticket": ticket, "expires_in": int(context.authenticator.ticketTTL)}
        return self._login(request, ticket)


class WhoamiResource(_GatewayHTTPResource):
    """
    C{GET <path>/whoami}: who the gateway says you are, and who the broker
    will see.  A question, not a login: only a refusal is audited (the page
    asks it beside its ticket, which is the login).
    """

    audited = False

    def render_GET(self, request):
        return self._login(request, lambda avatar, source, _: self.context.describe(avatar, source))

    render_POST = render_GET


class AMQPEndpointResource(resource.Resource):
    """
    C{<path>}: WebSocket upgrades go to Autobahn (whose resource is a
    leaf), C{<path>/ticket} and C{<path>/whoami} to their endpoints.
    """

    def __init__(self, wsResource, wsFactory, ticket, whoami):
        resource.Resource.__init__(self)
        self._ws = wsResource
        self._wsFactory = wsFactory
        self.putChild(b"ticket", ticket)
        self.putChild(b"whoami", whoami)

    def getChild(self, path, request):
        if path == b"":
            return self
        return resource.NoResource()

    def render(self, request):
        if (request.getHeader(b"upgrade") or b"").lower() == b"websocket":
            # The WebSocket protocol Autobahn builds now takes over the
            # connection's place in the limits and its handshake deadline.
            self._wsFactory.handOver = request.channel.handOverConnection()
            try:
                result = self._ws.render(request)
            finally:
                self._wsFactory.handOver = None
            if result is server.NOT_DONE_YET and request in request.channel.requests:
                # The WebSocket protocol took the channel's transport: this
                # request never finishes, and the channel, which will never
                # see its connection end, need not keep it (the two would
                # wait for the garbage collector in a reference cycle).
                request.channel.requests.remove(request)
            return result
        request.setResponseCode(426, b"Upgrade Required")
        request.setHeader(b"Upgrade", b"websocket")
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        return b"This is an AMQP 0-9-1 over WebSocket endpoint: connect with a WebSocket client.\n"


class GatewayHTTPChannel(http.HTTPChannel):
    """
    twisted.web's channel, with the listener's limits from the moment a
    connection is accepted: its place in C{max_connections} and
    C{max_connections_per_source} (closed at once when over), and the one
    handshake deadline, which a WebSocket upgrade takes over and which
    otherwise runs again after each answered request (an idle keep-alive
    connection goes after C{handshake_timeout}).  An oversized header line
    gets 431 rather than a silent close.
    """

    admission = deadline = None
    _refused = False

    def connectionMade(self):
        http.HTTPChannel.connectionMade(self)
        context = self.site.context
        self.deadline = context.startDeadline(self._expired)
        # Behind a haproxy: endpoint the client's address is known only once
        # the PROXY header is read, with the first bytes.
        if not context.proxied:
            self._admit()

    def _admit(self):
        self.admission = self.site.context.admit(describePeer(self.transport.getPeer()))
        if self.admission is None:
            self._refused = True
            self.transport.abortConnection()
            return False
        return True

    def _expired(self):
        self.transport.abortConnection()

    def dataReceived(self, data):
        if self._refused or (self.admission is None and not self._admit()):
            return
        http.HTTPChannel.dataReceived(self, data)

    def requestDone(self, request):
        http.HTTPChannel.requestDone(self, request)
        if self.deadline is not None:
            self.deadline.restart()

    def handOverConnection(self):
        """
        @return: C{(admission, deadline)}, which the caller now owns (a
            WebSocket taking over the connection).
        """
        handed = (self.admission, self.deadline)
        self.admission = self.deadline = None
        return handed

    def connectionLost(self, reason):
        if self.deadline is not None:
            self.deadline.met()
        if self.admission is not None:
            self.admission.release()
        http.HTTPChannel.connectionLost(self, reason)

    def lineLengthExceeded(self, line):
        self.transport.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n\r\n")
        self.transport.loseConnection()


class GatewaySite(server.Site):
    """
    A site with no access log: query strings carry tickets.

    @ivar context: the listener's L{kaazing_promo.transport.context.ListenerContext}.
    """

    protocol = GatewayHTTPChannel

    def __init__(self, resource, context):
        # No idle timer of twisted.web's own: the connection's handshake
        # deadline closes a silent or idle one (and runs again after each
        # answered request), one timer per connection instead of two.
        server.Site.__init__(self, resource, timeout=None)
        self.context = context

    def log(self, request):
        pass


def buildSite(context):
    """
    @return: the L{GatewaySite} for a websocket listener.
    """
    listener = context.listener
    factory = GatewayWebSocketFactory(context)
    endpoint = AMQPEndpointResource(
        WebSocketResource(factory), factory, TicketResource(context), WhoamiResource(context))
    root = WebRoot(listener.webroot) if listener.webroot else resource.Resource()
    segments = [s.encode("utf-8") for s in listener.path.strip("/").split("/")]
    parent = root
    for segment in segments[:-1]:
        child = resource.Resource()
        parent.putChild(segment, child)
        parent = child
    parent.putChild(segments[-1], endpoint)
    site = GatewaySite(root if listener.hosts is None else HostCheckedRoot(root, listener.hosts), context)
    site.displayTracebacks = False
    site.wsFactory = factory
    return site
