"""
One client connection's life, in one place.

    HEADER ─► (TCP: own Start sent) START ─► AUTHENTICATING ─► CONNECTING
           └► (WebSocket: authenticated at the upgrade) CONNECTING
    CONNECTING ─► BROKER_START ─► (WebSocket: Start relayed) START
    START-OK rewritten ─► TUNE ─► TUNE_OK ─► OPEN (vhost pinned) ─► OPEN_OK
    ─► PASSTHROUGH ─► CLOSING ─► CLOSED

During the handshake every frame is decoded and checked against the state;
anything out of turn closes the connection with the matching reply code.
Once the broker's Open-Ok is through, bytes are pumped both ways and only
connection-class methods on channel 0 are looked at: the client's close and
close-ok pass; its update-secret is answered by the gateway and never
forwarded (P7); the broker's stream is relayed as it comes, followed by
L{FrameBoundaries} only far enough to put the gateway's update-secret-ok
between two of its frames and to notice its Close.

Once a Close is in the air (CLOSING, and L{Closer} says whose) the
connection carries no other Close and nothing moves it forward again.  The
client is read only for a Close-Ok or a crossing Close; everything else it
sends is dropped without a word, as RabbitMQ drops what follows a Close.
A Close from the client or the broker is answered by the other through the
gateway; after the gateway's own Close the broker connection is gone and
the client's Close-Ok, or C{_CLOSE_OK_WAIT}, ends the connection.

The transports (L{kaazing_promo.transport}) feed this class bytes and give
it an L{IClientLink}-like object to write to; the broker side is a
L{kaazing_promo.amqp.broker.BrokerProtocol}.  Neither knows anything of AMQP.
"""

import enum

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from kaazing_promo.amqp import codec
from kaazing_promo.amqp.codec import (
    ACCESS_REFUSED, COMMAND_INVALID, CONNECTION_FORCED, FRAME_HEARTBEAT, FRAME_METHOD,
    FRAME_MIN_SIZE, INTERNAL_ERROR, NOT_ALLOWED, PROTOCOL_HEADER, UNEXPECTED_FRAME, AMQPError,
    decodeMethod, encodeMethod)
from kaazing_promo.amqp.broker import BROKER_UNREACHABLE
from kaazing_promo.amqp.deadline import HandshakeDeadline
from kaazing_promo.amqp.frames import VALID_HEADERS, ChannelZeroScanner, FrameBoundaries, FrameReader
from kaazing_promo.errors import LoginDenied, PromotionRefused
from kaazing_promo.interfaces import IConnectionObserver, LoginAttempt
from kaazing_promo.promotion import AMQPLAIN, PLAIN, chooseMechanism

_CLOSE_OK_WAIT = 1.0
_LOCALE = "en_US"
_CLOSE, _CLOSE_OK = 50, 51
# Connection methods a client may send once the connection is open.
_CLIENT_OPEN_METHODS = {_CLOSE: "close", _CLOSE_OK: "close-ok"}
_UPDATE_SECRET = 70
_UPDATE_SECRET_OK = encodeMethod(0, "connection.update-secret-ok")
# A channel-0 method frame's class and method ids (10, 50): connection.close.
_CLOSE_IDS = b"\x00\x0a\x00\x32"


@implementer(IConnectionObserver)
class _NoObserver:
    """
    Nobody follows this connection (a session made on its own, in tests).
    """

    def opened(self, session):
        pass

    renewed = finished = opened


def _rateLimited(denial):
    """
    The client's Close text for a rate-limited login: which limit, and when to come back.
    """
    return f"ACCESS_REFUSED - {denial.reason}; retry after {denial.retryAfter} s"


class State(enum.Enum):
    HEADER = "waiting for the protocol header"
    START = "waiting for the client's Start-Ok"
    AUTHENTICATING = "authenticating the client"
    CONNECTING = "connecting to the broker"
    BROKER_START = "waiting for the broker's Start"
    TUNE = "waiting for the broker's Tune"
    TUNE_OK = "waiting for the client's Tune-Ok"
    OPEN = "waiting for the client's Open"
    OPEN_OK = "waiting for the broker's Open-Ok"
    PASSTHROUGH = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class Closer(enum.Enum):
    """
    Whose Close a closing connection is ending with, which says who answers.
    """

    CLIENT = "the client's Close went to the broker, whose Close-Ok goes back"
    BROKER = "the broker's Close went to the client, whose Close-Ok goes back"
    GATEWAY = "the gateway's own Close went to the client; the broker connection is dropped"


class GatewaySession:
    """
    The handshake state machine and byte pump for one client connection.

    @param listener: the listener's L{kaazing_promo.config.Listener} settings.
    @param promoter: the L{IIdentityPromoter}.
    @param brokerConnector: a L{kaazing_promo.amqp.broker.BrokerConnector}.
    @param clock: an L{IReactorTime}.
    @param startCache: the L{kaazing_promo.amqp.broker.BrokerStartCache}
        whose server properties the gateway's own Start carries.
    @param avatar: the L{IGatewayUser} when the transport authenticated the
        client already (WebSocket upgrade, or an C{auth = "none"} listener).
    @param ownStart: C{True} (the AMQP listener) makes the gateway send its
        own Start and take the client's credentials from its Start-Ok (X1)
        before the broker is contacted; C{False} (WebSocket) relays the
        broker's Start.
    @param authenticator: the L{IAuthenticator} that checks Start-Ok
        credentials; L{None} on an C{auth = "none"} listener.
    @param source: the client's address, for the audit log.
    @param host: the client's host, what the login limits count.
    @param observer: the L{IConnectionObserver} told when the connection
        opens, when its person re-authenticates and when it has ended (the
        audit trail, the metrics and the X3 lifetime follow it there).
    @param keepCredentials: whether the credentials the client logs in with
        are kept in memory for the connection's life (X3 revalidation).
    @param credentials: C{(user, password)} the client logged in with on the
        upgrade, when they are kept.
    """

    log = Logger()

    def __init__(self, listener, promoter, brokerConnector, clock, startCache,
                 avatar=None, ownStart=False, authenticator=None, source="-", host=None, observer=None,
                 keepCredentials=False, credentials=None):
        self.listener = listener
        self.promoter = promoter
        self.brokerConnector = brokerConnector
        self.clock = clock
        self.startCache = startCache
        self.avatar = avatar
        self.authenticator = authenticator
        self.source = source
        self.host = host if host is not None else source.rsplit(":", 1)[0]
        self.maxFrameSize = listener.max_frame_size
        self.observer = observer if observer is not None else _NoObserver()
        self.keepCredentials = keepCredentials
        self.credentials = credentials
        self.relayStart = not ownStart
        self.state = State.HEADER
        self.closedBy = None
        self.client = None
        self.broker = None
        self.brokerUser = None
        self.vhost = None
        self.outcome, self.reason = "closed", ""
        self.bytesIn = self.bytesOut = 0
        self._header = b""
        self._clientReader = FrameReader(FRAME_MIN_SIZE)
        self._brokerReader = FrameReader(FRAME_MIN_SIZE)
        self._clientStartOk = None
        self._mechanisms = []
        self._queued = []
        self._scanner = None
        self._timers = []
        self._deadline = None
        #: When the client connected (the clock's seconds), for the audit's durations.
        self.startedAt = None
        self._boundaries = None
        # A frame of the gateway's waiting for a boundary of the broker's stream.
        self._ownFrame = None
        # The client's bytes read while its new secret is checked, or None.
        self._held = None
        self._heldBytes = 0
        self._checkingSecret = False

    # -- the client side ---------------------------------------------------

    def clientConnected(self, client, deadline=None):
        """
        @param client: an object with C{write(bytes)}, C{close(failed)} and
            C{producer}/C{consumer} (the transport, for backpressure).
        @param deadline: the connection's L{HandshakeDeadline}, started when
            it was accepted; a new one when not given.
        """
        self.client = client
        self.startedAt = self.clock.seconds()
        if deadline is None:
            deadline = HandshakeDeadline(self.clock, self.listener.handshake_timeout, None)
        self._deadline = deadline
        deadline.handOver(self._handshakeTimedOut)

    def clientDataReceived(self, data):
        if self.state is State.PASSTHROUGH:
            if self._held is None:
                self._pumpToBroker(data)
            else:
                self._hold(data)
        elif self.state is State.CLOSING:
            self._readWhileClosing(data)
        elif self.state is State.HEADER:
            self._header += data
            if len(self._header) >= len(PROTOCOL_HEADER):
                header, rest = self._header[:8], self._header[8:]
                self._header = b""
                self._protocolHeader(header)
                if rest and self.state is not State.CLOSED:
                    self.clientDataReceived(rest)
        elif self.state is State.OPEN_OK:
            # A client that does not wait for Open-Ok: keep its frames for later.
            self._queue(data)
        elif self.state is not State.CLOSED:
            try:
                frames = self._clientReader.feed(data)
            except AMQPError as e:
                return self._fail(e.replyCode, e.text)
            rest = b""
            for index, frame in enumerate(frames):
                if self.state in (State.OPEN_OK, State.CLOSING, State.CLOSED):
                    rest = b"".join(raw for _, _, _, raw in frames[index:])
                    break
                self._clientFrame(*frame)
            if self.state in (State.OPEN_OK, State.CLOSING):
                # What follows the Open, or a Close, is no longer the handshake's.
                rest += self._clientReader.takeRemainder()
                if rest:
                    self.clientDataReceived(rest)

    def clientConnectionLost(self):
        """
        The client went away: the broker connection goes too, at once.
        """
        if self.state is not State.CLOSED:
            if self.state is not State.CLOSING:
                self.outcome, self.reason = "closed", "client disconnected"
            self._finish()

    def _protocolHeader(self, header):
        if header not in VALID_HEADERS:
            self.log.info("{source}: not an AMQP 0-9-1 protocol header; answered with ours", source=self.source)
            self.outcome, self.reason = "closed", "bad protocol header"
            self.client.write(PROTOCOL_HEADER)
            return self._finish()
        if self.relayStart:
            self._connectBroker()
        else:
            self.state = State.START
            self.client.write(self.startCache.ownStart(PLAIN + b" " + AMQPLAIN, _LOCALE.encode("ascii")))

    def _clientFrame(self, frameType, channel, payload, raw):
        if frameType == FRAME_HEARTBEAT and channel == 0 and self.state in (State.OPEN, State.OPEN_OK):
            return self.broker.write(raw)
        if frameType != FRAME_METHOD or channel != 0:
            return self._fail(UNEXPECTED_FRAME, f"frame type {frameType} on channel {channel} "
                                                f"while {self.state.value}")
        try:
            method = decodeMethod(payload)
        except AMQPError as e:
            return self._fail(e.replyCode, e.text)
        if method.klass != "connection":
            return self._fail(COMMAND_INVALID, f"{method.qualifiedName} before the connection is open",
                              method)
        handler = {
            (State.START, "start-ok"): self._startOk,
            (State.TUNE_OK, "tune-ok"): self._tuneOk,
            (State.OPEN, "open"): self._open,
        }.get((self.state, method.name))
        if handler is not None:
            return handler(method, raw)
        if method.name == "close":
            return self._clientClose(raw)
        if method.name == "update-secret":
            return self._fail(NOT_ALLOWED, "NOT_ALLOWED - connection.update-secret before the connection is open",
                              method)
        return self._fail(COMMAND_INVALID, f"{method.qualifiedName} out of turn while {self.state.value}", method)

    def _queue(self, data):
        """
        Keep bytes sent before the broker's Open-Ok, at most
        C{max_pending_bytes} of them.
        """
        self._queuedBytes += len(data)
        if self._queuedBytes > self.listener.max_pending_bytes:
            return self._fail(UNEXPECTED_FRAME, "UNEXPECTED_FRAME - too much sent before Open-Ok")
        self._queued.append(data)

    _queuedBytes = 0

    def _readWhileClosing(self, data):
        """
        Read the client while a Close is in the air: only its Close-Ok, or a
        Close crossing the other, means anything.  The rest is dropped as
        RabbitMQ drops it (amqplib sends its Close with publishes still
        queued behind it), without a Close or a log line each.
        """
        if self._scanner is None:
            self._scanner = ChannelZeroScanner(self._frameMax)
        while data and self.state is State.CLOSING:
            try:
                _, frame, data = self._scanner.scan(data)
            except AMQPError:
                # No Close-Ok can be found in a stream without frames.
                return self._finish()
            if frame is not None:
                self._clientCloseMethod(*frame)

    def _clientCloseMethod(self, channel, payload, raw):
        """
        A connection-class method from a closing client.
        """
        methodId = int.from_bytes(payload[2:4], "big")
        if methodId not in (_CLOSE, _CLOSE_OK):
            return
        if self.closedBy is Closer.GATEWAY:
            if methodId == _CLOSE:
                # Closes crossed: answered as RabbitMQ answers them.
                self.client.write(encodeMethod(0, "connection.close-ok"))
            return self._finish()
        # The broker takes part in this close: it answers a Close and waits for a Close-Ok.
        self.bytesIn += len(raw)
        self.broker.write(raw)

    def _startOk(self, method, raw):
        mechanism = method.args["mechanism"].encode("utf-8")
        if self.promoter.replaces_credentials and mechanism not in (PLAIN, AMQPLAIN):
            return self._fail(COMMAND_INVALID, f"unsupported mechanism {method.args['mechanism']!r}", method)
        self._clientStartOk = (method, raw)
        if self.relayStart:
            return self._sendStartOk()
        if self.authenticator is None:
            self.state = State.CONNECTING
            return self._connectBroker()
        try:
            username, password = codec.decodeSASLResponse(mechanism, method.args["response"])
        except AMQPError:
            username = password = None
        self.state = State.AUTHENTICATING
        if username is not None and self.keepCredentials:
            self.credentials = (username, password)
        attempt = LoginAttempt(self.listener, self.host, self.source, username, password,
                               self._authenticating, "malformed SASL response")
        # The wait for the answer is the gateway's, not the client's.
        self._deadline.pause()
        d = defer.maybeDeferred(self.authenticator.authenticate, attempt)
        d.addBoth(self._answered)
        d.addCallbacks(self._loggedIn, self._loginFailed, errbackArgs=(mechanism,))
        # Anything but a LoginDenied is a bug: log it and drop the client.
        d.addErrback(self._internalError)

    def _authenticating(self):
        """
        Whether the client still waits for its login (its check may be dropped otherwise).
        """
        return self.state is State.AUTHENTICATING

    def _answered(self, result):
        self._deadline.resume()
        return result

    def _loggedIn(self, avatar):
        if self.state is not State.AUTHENTICATING:
            return
        self.avatar = avatar
        self._connectBroker()

    def _loginFailed(self, failure, mechanism):
        failure.trap(LoginDenied)
        self._refuseLogin(failure.value, mechanism)

    def _refuseLogin(self, denial, mechanism):
        if self.state in (State.CLOSING, State.CLOSED):
            return
        self.outcome, self.reason = denial.outcome, denial.reason
        text = f"ACCESS_REFUSED - Login was refused using authentication mechanism {mechanism.decode()}"
        if denial.outcome == "rate-limited":
            text = _rateLimited(denial)
        self._fail(ACCESS_REFUSED, text, log=False)

    def _tuneOk(self, method, raw):
        frameMax = method.args["frame_max"]
        if frameMax == 0 or frameMax > self._frameMax:
            return self._fail(
                codec.SYNTAX_ERROR if frameMax == 0 else NOT_ALLOWED,
                f"frame_max {frameMax} exceeds the negotiated {self._frameMax}", method)
        if frameMax < FRAME_MIN_SIZE:
            return self._fail(NOT_ALLOWED, f"frame_max {frameMax} is below frame-min-size", method)
        self._frameMax = frameMax
        self.state = State.OPEN
        self.broker.write(raw)

    def _open(self, method, raw):
        requested = method.args["virtual_host"]
        try:
            vhost = self.promoter.vhost(self.avatar, requested)
        except PromotionRefused as e:
            self.outcome, self.reason = "unauthorized", e.reason
            return self._fail(e.replyCode, f"NOT_ALLOWED - access to vhost '{requested}' refused", method,
                              log=False)
        self.vhost = vhost
        self.state = State.OPEN_OK
        if vhost != requested:
            raw = encodeMethod(0, "connection.open", **dict(method.args, virtual_host=vhost))
        self.broker.write(raw)

    def _clientClose(self, raw):
        self.outcome, self.reason = "closed", "client closed the connection"
        if self.broker is not None and self.broker.transport is not None and self.state not in (
                State.CONNECTING, State.BROKER_START):
            self._closing(Closer.CLIENT)
            self.broker.write(raw)
        else:
            # No broker handshake to end: the gateway answers as the broker would.
            self.client.write(encodeMethod(0, "connection.close-ok"))
            self._finish()

    def _closing(self, closer):
        self.state = State.CLOSING
        self.closedBy = closer

    # -- the broker side ---------------------------------------------------

    _frameMax = 131072
    # Whether the broker's Open-Ok passed: from then on its bytes are relayed as they come.
    _opened = False

    def _connectBroker(self):
        self.state = State.CONNECTING
        d = self.brokerConnector.connect(self)
        d.addCallbacks(self._brokerConnected, self._brokerUnreachable)
        d.addErrback(self._internalError)

    def _brokerConnected(self, broker):
        if self.state is not State.CONNECTING:
            # Closed, or closing, meanwhile: nothing moves the session on again.
            broker.transport.loseConnection()
            return
        self.broker = broker
        self.state = State.BROKER_START
        broker.write(PROTOCOL_HEADER)

    def _brokerUnreachable(self, failure):
        if self.state is not State.CONNECTING:
            return
        self.log.warn("{source}: broker unreachable: {error}", source=self.source,
                      error=failure.getErrorMessage())
        self.outcome, self.reason = "broker-refused", BROKER_UNREACHABLE
        if self.relayStart:
            # The client has seen nothing of AMQP yet; the WebSocket close says it.
            return self._finish(failed=True)
        self._fail(CONNECTION_FORCED, "CONNECTION_FORCED - broker unavailable", log=False)

    def brokerDataReceived(self, data):
        if self.broker is None:
            # A broker connection the gateway has dropped: what it still says is not heard.
            return
        if self._opened:
            return self._relayToClient(data)
        try:
            frames = self._brokerReader.feed(data)
        except AMQPError as e:
            return self._brokerBroke(f"broker sent a bad frame: {e.text}")
        for index, (frameType, channel, payload, raw) in enumerate(frames):
            if self.broker is None:
                return
            if frameType != FRAME_METHOD or channel != 0:
                if self.state is State.CLOSING:
                    continue
                return self._brokerBroke(f"broker sent frame type {frameType} while {self.state.value}")
            try:
                method = self.startCache.decodeBrokerMethod(payload)
            except AMQPError as e:
                return self._brokerBroke(f"broker sent a bad method: {e.text}")
            self._brokerMethod(method, raw)
            if self.state is State.PASSTHROUGH:
                # What came with the Open-Ok is the relayed stream's beginning.
                rest = b"".join(raw for *_, raw in frames[index + 1:]) + self._brokerReader.takeRemainder()
                if rest:
                    self._relayToClient(rest)
                return

    def _brokerMethod(self, method, raw):
        name = method.name
        if name == "close":
            if self.closedBy is Closer.BROKER:
                return
            self._brokerClosing(method.args["reply_text"])
            self.client.write(raw)
        elif name == "close-ok" and self.state is State.CLOSING:
            self.client.write(raw)
            self._finish()
        elif self.state is State.BROKER_START and name == "start":
            self._brokerStart(method, raw)
        elif self.state is State.TUNE and name == "tune":
            self._brokerTune(method)
        elif self.state is State.OPEN_OK and name == "open-ok":
            self.client.write(raw)
            self._enterPassthrough()
        elif name in ("blocked", "unblocked") and self.state is not State.CLOSING:
            self.client.write(raw)
        elif self.state is not State.CLOSING:
            self._brokerBroke(f"broker sent {method.qualifiedName} while {self.state.value}")

    def _brokerClosing(self, text):
        """
        The broker's Close, which the client gets: the connection is closing
        and carries no Close of the gateway's.
        """
        if self.state is State.TUNE:
            self.outcome, self.reason = "broker-refused", text
        elif self.state is not State.CLOSING:
            self.outcome, self.reason = "closed", f"broker closed: {text}"
        self._closing(Closer.BROKER)

    def _brokerStart(self, method, raw):
        self._mechanisms = method.args["mechanisms"].split()
        self.startCache.update(method.args["server_properties"])
        if self.relayStart:
            self.state = State.START
            self.client.write(raw)
        else:
            self._sendStartOk()

    def _sendStartOk(self):
        clientMethod, raw = self._clientStartOk
        self._clientStartOk = None
        if self.promoter.replaces_credentials:
            try:
                identity = self.promoter.credentials(self.avatar, self._mechanisms)
                mechanism = chooseMechanism(self._mechanisms)
            except PromotionRefused as e:
                self.outcome, self.reason = "unauthorized", e.reason
                return self._fail(e.replyCode, "ACCESS_REFUSED - identity promotion refused", log=False)
            self.brokerUser = identity.username
            encode = codec.encodePlainResponse if mechanism == PLAIN else codec.encodeAMQPlainResponse
            raw = encodeMethod(
                0, "connection.start-ok", client_properties=clientMethod.args["client_properties"],
                mechanism=mechanism.decode("ascii"),
                response=encode(identity.username, identity.password.reveal()), locale=_LOCALE)
        self.state = State.TUNE
        self.broker.write(raw)

    def _brokerTune(self, method):
        brokerMax = method.args["frame_max"] or self.maxFrameSize
        self._frameMax = min(brokerMax, self.maxFrameSize)
        self.state = State.TUNE_OK
        self.client.write(encodeMethod(
            0, "connection.tune", channel_max=method.args["channel_max"], frame_max=self._frameMax,
            heartbeat=method.args["heartbeat"]))

    def brokerConnectionLost(self):
        if self.broker is None:
            # Dropped by the gateway, which waits for the client's Close-Ok or has finished.
            return
        if self.state is State.TUNE:
            # RabbitMQ drops a refused login without a Close unless the client
            # advertised authentication_failure_close: say it for the broker.
            self.outcome, self.reason = "broker-refused", "broker refused the promoted login"
            self.broker = None
            return self._fail(ACCESS_REFUSED, "ACCESS_REFUSED - Login was refused by the broker", log=False)
        if self.state not in (State.PASSTHROUGH, State.CLOSING):
            self.outcome, self.reason = "broker-refused", f"broker closed the connection while {self.state.value}"
        elif self.state is State.PASSTHROUGH:
            self.outcome, self.reason = "closed", "broker closed the connection"
        self.broker = None
        self._finish(failed=self.relayStart and self.state in (State.CONNECTING, State.BROKER_START))

    def _brokerBroke(self, reason):
        self.log.warn("{source}: {reason}", source=self.source, reason=reason)
        self.outcome, self.reason = "closed", reason
        self._fail(INTERNAL_ERROR, "INTERNAL_ERROR - the broker broke the protocol", log=False)

    # -- passthrough -------------------------------------------------------

    def _enterPassthrough(self):
        self.state = State.PASSTHROUGH
        self._opened = True
        self.outcome, self.reason = "ok", ""
        self._cancelTimers()
        self._deadline.met()
        self.observer.opened(self)
        self._scanner = ChannelZeroScanner(self._frameMax)
        self._boundaries = FrameBoundaries()
        # Each side's write buffer holds at most max_pending_bytes before the
        # other side stops being read: a slow peer cannot grow our memory.
        self.client.couple(self.broker.transport, self.listener.max_pending_bytes)
        queued, self._queued = self._queued, []
        for data in queued:
            self.clientDataReceived(data)

    def _pumpToBroker(self, data):
        scanner = self._scanner
        write = self.broker.write
        while data:
            try:
                passOn, frame, data = scanner.scan(data)
            except AMQPError as e:
                return self._fail(e.replyCode, e.text)
            if passOn:
                self.bytesIn += len(passOn)
                write(passOn)
            if frame is None:
                return
            channel, payload, raw = frame
            methodId = int.from_bytes(payload[2:4], "big")
            if methodId == _UPDATE_SECRET:
                self._updateSecret(payload)
                if self.state is not State.PASSTHROUGH:
                    return
                if self._checkingSecret:
                    # Like RabbitMQ's reader, read no further until the new
                    # secret is checked.
                    self._held, self._heldBytes = [], 0
                    return self._hold(data)
                continue
            if methodId not in _CLIENT_OPEN_METHODS:
                return self._fail(COMMAND_INVALID, f"COMMAND_INVALID - connection method {methodId} "
                                                   "on an open connection", classMethod=(10, methodId))
            self.bytesIn += len(raw)
            write(raw)
            if methodId == _CLOSE:
                self.outcome, self.reason = "closed", "client closed the connection"
                self._closing(Closer.CLIENT)
                return self._readWhileClosing(data)

    def _relayToClient(self, data):
        """
        Relay the broker's bytes as they come, a frame of the gateway's
        waiting for a boundary between two of the broker's frames put
        there, and a Close of the broker's noticed.
        """
        self.bytesOut += len(data)
        boundary, methods = self._boundaries.feed(data)
        if self._ownFrame is not None and boundary is not None:
            own, self._ownFrame = self._ownFrame, None
            if boundary:
                self.client.write(data[:boundary])
            self.client.write(own)
            data = data[boundary:]
        if data:
            self.client.write(data)
        if methods is not None:
            for raw in methods:
                if raw[7:11] == _CLOSE_IDS and self.closedBy is not Closer.BROKER and self.broker is not None:
                    self._brokerClosedWhenOpen(raw)

    def _brokerClosedWhenOpen(self, raw):
        """
        The broker's Close, relayed in the stream: the connection is
        closing; a client waiting behind its update-secret is read again,
        for its Close-Ok.
        """
        try:
            text = decodeMethod(raw[7:-1]).args["reply_text"]
        except AMQPError:
            text = "(unreadable Close)"
        self._brokerClosing(text)
        self._readClientAgain()

    def _writeBetweenFrames(self, frame):
        """
        Write a frame of the gateway's into the relayed broker stream, at
        once if the stream is between frames, else where the frame in
        flight ends.
        """
        if self._boundaries.between:
            self.client.write(frame)
        else:
            self._ownFrame = (self._ownFrame or b"") + frame

    def _updateSecret(self, payload):
        """
        P7: the client's update-secret, answered by the gateway and never
        forwarded: the broker identity does not change.  Where the person
        logged in with these AMQP credentials (the AMQP listener, auth
        required) the new secret must log the same person in again, as
        any login; elsewhere they mean nothing and nothing changes.
        """
        try:
            method = decodeMethod(payload)
        except AMQPError as e:
            return self._fail(e.replyCode, e.text, classMethod=(10, _UPDATE_SECRET))
        if self.relayStart or self.authenticator is None:
            return self._writeBetweenFrames(_UPDATE_SECRET_OK)
        try:
            username, password = self.avatar.user, bytes(method.args["new_secret"]).decode("utf-8")
        except UnicodeDecodeError:
            username = password = None
        attempt = LoginAttempt(self.listener, self.host, self.source, username, password,
                               self._secretStillWanted, "new secret is not UTF-8")
        self._checkingSecret = True
        d = defer.maybeDeferred(self.authenticator.authenticate, attempt)
        d.addCallbacks(self._secretAccepted, self._secretRefused, callbackArgs=(password,))
        d.addErrback(self._internalError)

    def _secretStillWanted(self):
        """
        Whether the client is still there for its new secret's check.
        """
        return self.state is not State.CLOSED

    def _secretAccepted(self, avatar, password):
        self._checkingSecret = False
        if self.state is not State.PASSTHROUGH:
            return
        if avatar.user != self.avatar.user:
            self.log.info("{source}: update-secret logged in {other!r} on {user!r}'s connection: refused",
                          source=self.source, other=avatar.user, user=self.avatar.user)
            self.outcome, self.reason = "unauthorized", "update-secret logged in another user"
            return self._fail(ACCESS_REFUSED, "ACCESS_REFUSED - the new secret was refused", log=False,
                              classMethod=(10, _UPDATE_SECRET))
        self.avatar = avatar
        if self.keepCredentials:
            self.credentials = (avatar.user, password)
        # X3: the connection lives as long as its newest authentication.
        self.observer.renewed(self)
        self._writeBetweenFrames(_UPDATE_SECRET_OK)
        self._readClientAgain()

    def _secretRefused(self, failure):
        failure.trap(LoginDenied)
        self._checkingSecret = False
        if self.state is not State.PASSTHROUGH:
            return
        denial = failure.value
        self.outcome, self.reason = denial.outcome, f"update-secret refused: {denial.reason}"
        text = "ACCESS_REFUSED - the new secret was refused"
        if denial.outcome == "rate-limited":
            text = _rateLimited(denial)
        self._fail(ACCESS_REFUSED, text, log=False, classMethod=(10, _UPDATE_SECRET))

    def _hold(self, data):
        """
        Keep what the client sends while its new secret is checked; a
        client read again meanwhile (the broker's backpressure ending) is
        paused again, and one that still sends too much is closed.
        """
        self._held.append(data)
        self._heldBytes += len(data)
        if self._heldBytes > self.listener.max_pending_bytes:
            return self._fail(UNEXPECTED_FRAME, "UNEXPECTED_FRAME - too much sent while the new secret is checked")
        self.client.transport.pauseProducing()

    def _readClientAgain(self):
        """
        Read the client again after its new secret was checked: first what
        it sent meanwhile.
        """
        held, self._held = self._held, None
        if held is None:
            return
        self.client.transport.resumeProducing()
        data = b"".join(held)
        if data:
            self.clientDataReceived(data)

    # -- endings -----------------------------------------------------------

    @property
    def isOpen(self):
        """
        Whether the connection is open end to end (the broker's Open-Ok passed).
        """
        return self.state is State.PASSTHROUGH

    def forceClose(self, reason):
        """
        Close the connection from the gateway: 320 CONNECTION_FORCED to the
        client, the broker connection dropped.  For expiry, reload and shutdown.
        """
        if self.state in (State.CLOSED, State.CLOSING):
            return
        self.outcome, self.reason = "closed", reason
        self._fail(CONNECTION_FORCED, f"CONNECTION_FORCED - {reason}", log=False)

    def _fail(self, replyCode, text, method=None, log=True, classMethod=(0, 0)):
        """
        Close the client with an AMQP Close the gateway sends itself; the
        broker connection (if any) goes at once.
        """
        if self.state is State.CLOSED:
            return
        if self.state is State.CLOSING:
            # A Close is in the air already, and a connection carries one at
            # most: the gateway's own waits for its Close-Ok; any other close
            # ends here.
            if self.closedBy is not Closer.GATEWAY:
                self._finish()
            return
        if log:
            self.log.info("{source}: closing with {code}: {text}", source=self.source, code=replyCode, text=text)
            if self.outcome in ("ok", "closed") and self.reason in ("",):
                self.outcome, self.reason = "closed", text
            elif self.outcome == "closed":
                self.reason = text
        if method is not None:
            classMethod = (method.classId, method.methodId)
        if self.broker is not None and self.broker.transport is not None:
            self._stopPump()
            self.broker.transport.loseConnection()
            self.broker = None
        # Nothing the client sent behind an update-secret goes anywhere now,
        # and no update-secret-ok follows the Close.
        self._held = self._ownFrame = None
        if self.state is State.HEADER:
            return self._finish()
        self._closing(Closer.GATEWAY)
        self._scanner = None
        self.client.write(encodeMethod(
            0, "connection.close", reply_code=replyCode,
            reply_text=text.encode("utf-8")[:255].decode("utf-8", "ignore"),
            class_id=classMethod[0], method_id=classMethod[1]))
        self._timers.append(self.clock.callLater(_CLOSE_OK_WAIT, self._finish))

    def _stopPump(self):
        """
        Undo the pump's producer links, before the broker connection goes
        while the client is still to send its Close-Ok: a transport that
        ends stops its producer, which for the client's means dropping it,
        and a client paused for a slow broker must be read again.
        """
        if self._opened:
            self.client.uncouple(self.broker.transport)

    def _handshakeTimedOut(self):
        if self.state not in (State.PASSTHROUGH, State.CLOSING, State.CLOSED):
            self.log.info("{source}: handshake not finished within {timeout} s ({state})",
                          source=self.source, timeout=self.listener.handshake_timeout,
                          state=self.state.value)
            self.outcome, self.reason = "closed", "handshake timeout"
            self._finish()

    def _internalError(self, failure):
        self.log.failure("{source}: internal error", failure, source=self.source)
        self.outcome, self.reason = "closed", "internal error"
        self._finish()

    def _cancelTimers(self):
        for timer in self._timers:
            if timer.active():
                timer.cancel()
        self._timers = []

    def _finish(self, failed=False):
        """
        Close both sides and write the audit line.

        @param failed: the client saw no AMQP yet and should learn that the
            gateway failed it (WebSocket close 1011).
        """
        if self.state is State.CLOSED:
            return
        self.state = State.CLOSED
        self._cancelTimers()
        if self._deadline is not None:
            self._deadline.met()
        if self.broker is not None and self.broker.transport is not None:
            self.broker.transport.loseConnection()
        self.broker = None
        self.client.close(failed=failed)
        self.credentials = None
        self.observer.finished(self)
