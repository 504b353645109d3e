"""
The C{[broker_auth]} server: what RabbitMQ's C{rabbitmq_auth_backend_http}
asks in token mode, answered from the promoter's L{ITokenBook}.

    POST (or GET) /auth/user      username, password            → "allow [tags]" | "deny"
                  /auth/vhost     username, vhost, ip, tags     → "allow" | "deny"
                  /auth/resource  … resource, name, permission  → "allow" | "deny"
                  /auth/topic     … routing_key, variable_map.* → "allow" | "deny"

POST sends the fields form-encoded, GET in the query string; both are read
from C{request.args}.  Only C{/auth/user} answers with tags (C{allow tags}
on the other paths breaks the broker's connection); anything missing,
malformed or unknown is C{deny}.  A token is spent on its first
C{/auth/user} ask.  The vhost, resource and topic questions are answered
from the grant the broker names in C{tags} (see L{kaazing_promo.token.tokens}),
through the permission table (L{kaazing_promo.token.permissions}).  The book may
have to ask the cluster's Redis, so every answer may come later: a question
whose answer cannot be known is answered C{deny}.

No access log is written and nothing logs a form body: the user ask
carries the token.
"""

from twisted.application.internet import StreamServerEndpointService
from twisted.internet import defer
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger
from twisted.protocols.policies import WrappingFactory
from twisted.web import resource, server

from kaazing_promo.adapters.twistedinternals import listenOrFail
from kaazing_promo.errors import ConfigError
from kaazing_promo.interfaces import ITokenPromoter

ALLOW = "allow"
DENY = "deny"

log = Logger(namespace="kaazing_promo.broker_auth")


def _fields(request):
    """
    @return: the first value of each request field as L{str}; fields that
        are not UTF-8 are left out (and so refused as missing).
    """
    fields = {}
    for name, values in (request.args or {}).items():
        try:
            fields[name.decode("utf-8")] = values[0].decode("utf-8")
        except (UnicodeDecodeError, IndexError):
            continue
    return fields


def _answer(allowed):
    return ALLOW if allowed else DENY


class BrokerQuestions:
    """
    The four questions, as functions of the request fields (C{dict} of
    L{str}) returning a L{Deferred} that fires with the answer text.

    @param book: the L{kaazing_promo.interfaces.ITokenBook}.
    """

    def __init__(self, book):
        self.book = book

    def user(self, fields):
        username, password = fields.get("username"), fields.get("password")
        if username is None or password is None:
            return defer.succeed(DENY)
        return self.book.redeem(username, password).addCallback(self._userAnswer)

    def _userAnswer(self, grant):
        if grant is None:
            return DENY
        return " ".join([ALLOW, *self.book.tagsFor(grant)])

    def _grant(self, fields, *required):
        if any(name not in fields for name in ("username", "vhost", "tags") + required):
            return defer.succeed(None)
        return self.book.grantFor(fields["tags"])

    def vhost(self, fields):
        return self._grant(fields).addCallback(
            lambda grant: _answer(grant is not None and self.book.permissions.allowsVhost(grant, fields["vhost"])))

    def resource(self, fields):
        return self._grant(fields, "resource", "name", "permission").addCallback(
            lambda grant: _answer(grant is not None and self.book.permissions.allowsResource(
                grant, fields["vhost"], fields["resource"], fields["name"], fields["permission"])))

    def topic(self, fields):
        return self._grant(fields, "resource", "name", "permission", "routing_key").addCallback(
            self._topicAnswer, fields)

    def _topicAnswer(self, grant, fields):
        if grant is None or fields["resource"] != "topic":
            return DENY
        variables = {
            "username": fields.get("variable_map.username", fields["username"]),
            "vhost": fields.get("variable_map.vhost", fields["vhost"]),
        }
        return _answer(self.book.permissions.allowsTopic(
            grant, fields["vhost"], fields["name"], fields["permission"], fields["routing_key"], variables))


class QuestionResource(resource.Resource):
    """
    One of the four paths: reads the fields of a POST body or GET query and
    answers C{text/plain}.
    """

    isLeaf = True

    def __init__(self, question):
        resource.Resource.__init__(self)
        self._question = question

    def render_POST(self, request):
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        gone = []
        request.notifyFinish().addErrback(gone.append)
        d = defer.maybeDeferred(self._question, _fields(request))
        d.addErrback(self._failed)
        d.addCallback(self._respond, request, gone)
        return server.NOT_DONE_YET

    @staticmethod
    def _failed(failure):
        log.failure("broker_auth: question not answered; denied", failure)
        return DENY

    @staticmethod
    def _respond(answer, request, gone):
        if not gone:
            request.write(answer.encode("utf-8"))
            request.finish()

    render_GET = render_POST


def buildBrokerAuthResource(book):
    """
    @return: the root resource serving C{/auth/user}, C{/auth/vhost},
        C{/auth/resource} and C{/auth/topic} from C{book}.
    """
    questions = BrokerQuestions(book)
    auth = resource.Resource()
    for name in ("user", "vhost", "resource", "topic"):
        auth.putChild(name.encode("ascii"), QuestionResource(getattr(questions, name)))
    root = resource.Resource()
    root.putChild(b"auth", auth)
    return root


class BrokerAuthSite(server.Site):
    """
    A site with no access log (a GET query holds the token) that never
    shows a traceback.
    """

    noisy = False
    displayTracebacks = False

    def log(self, request):
        pass


class _OpenConnections(WrappingFactory):
    """
    Knows the broker's open connections: its HTTP client keeps them alive,
    so stopping the listening port alone would leave them (and their idle
    timers) behind.
    """

    noisy = False

    def __init__(self, wrappedFactory):
        WrappingFactory.__init__(self, wrappedFactory)
        self._closed = []

    def unregisterProtocol(self, p):
        WrappingFactory.unregisterProtocol(self, p)
        if not self.protocols:
            closed, self._closed = self._closed, []
            for d in closed:
                d.callback(None)

    def closeAll(self):
        """
        @return: a L{Deferred} that fires once every open connection is closed.
        """
        if not self.protocols:
            return defer.succeed(None)
        d = defer.Deferred()
        self._closed.append(d)
        for p in list(self.protocols):
            p.transport.loseConnection()
        return d


class BrokerAuthService(StreamServerEndpointService):
    """
    The C{[broker_auth]} listener; stopping it also closes the broker's
    open connections.
    """

    def __init__(self, endpoint, site):
        self.connections = _OpenConnections(site)
        StreamServerEndpointService.__init__(self, endpoint, self.connections)

    def stopService(self):
        stopped = defer.maybeDeferred(StreamServerEndpointService.stopService, self)
        return defer.gatherResults([stopped, self.connections.closeAll()])


def buildBrokerAuthService(config, promoter, reactor):
    """
    The C{[broker_auth]} listener.

    Hands C{config.permissions} to the promoter's token book (the book the
    broker's questions are answered from) and serves it on C{[broker_auth]
    endpoint}.

    @param config: the gateway's L{kaazing_promo.config.Config}.
    @param promoter: the L{IIdentityPromoter}; only an L{ITokenPromoter} mints tokens.
    @return: an L{IService} named C{broker_auth}, or L{None} when no
        endpoint is configured or the promotion mode mints no tokens.
    @raise ConfigError: the endpoint string is unusable.
    """
    endpointString = config.broker_auth.endpoint
    if not endpointString:
        return None
    if not ITokenPromoter.providedBy(promoter):
        log.warn("[broker_auth] endpoint {endpoint} is ignored: only [promotion] mode = \"token\" uses it, "
                 "not {mode!r}", endpoint=endpointString, mode=config.promotion.mode)
        return None
    book = promoter.tokenBook
    book.setPermissions(config.permissions)
    try:
        endpoint = serverFromString(reactor, endpointString)
    except (ValueError, TypeError, KeyError) as e:
        raise ConfigError(f"{config.path}: [broker_auth] key 'endpoint': {endpointString!r} is not a usable "
                          f"endpoint string ({e})")
    brokerAuth = BrokerAuthService(endpoint, BrokerAuthSite(buildBrokerAuthResource(book)))
    brokerAuth.setName("broker_auth")
    log.info("broker_auth: answering RabbitMQ's HTTP auth backend on {endpoint} from {count} [[permissions]] "
             "entries", endpoint=endpointString, count=len(config.permissions))
    # A port that cannot be bound stops start-up instead of being logged.
    listenOrFail(brokerAuth)
    return brokerAuth
