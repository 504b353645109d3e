"""
The in-memory fakes the unit tests share, one copy each: the two sides of a
session and the broker connector, an authenticator, a checker the test
controls, the delegated realm's API Gateway, and what the operations code
reads of a gateway and its sessions.
"""

import json
from types import SimpleNamespace

from prometheus_client.parser import text_string_to_metric_families
from treq.testing import StubTreq
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword, UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer, task
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.web.resource import Resource, getChildForRequest
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest
from zope.interface import implementer

from kaazing_promo.amqp.broker import BrokerStartCache
from kaazing_promo.amqp.codec import PROTOCOL_HEADER, encodeMethod
from kaazing_promo.amqp.session import GatewaySession, State
from kaazing_promo.auth.avatar import GatewayUser
from kaazing_promo.auth.delegated import DelegatedChecker
from kaazing_promo.config import Listener, Promotion, parseConfig
from kaazing_promo.interfaces import IClientLink, IUserStatus
from kaazing_promo.ops.metrics import GatewayMetrics
from kaazing_promo.promotion import ConsolidatedPromoter
from kaazing_promo.secrets import SecretStore
from kaazing_promo.transport.context import ListenerContext
from kaazing_promo.transport.pump import CoupledTransports
from tests.amqpframes import OPEN, OPEN_OK, TUNE, TUNE_OK, methods, start, startOk


# -- a session's two sides -----------------------------------------------------


@implementer(IClientLink)
class FakeClient(CoupledTransports):
    """
    The client link a session writes to, over a L{StringTransport}.
    """

    def __init__(self):
        self.transport = StringTransport()
        self.closed = None

    def write(self, data):
        self.transport.write(data)

    def close(self, failed):
        self.closed = "failed" if failed else "normal"


class FakeBroker:
    def __init__(self):
        self.transport = StringTransport()

    def write(self, data):
        self.transport.write(data)


class FakeBrokerConnector:
    def __init__(self):
        self.attempts = []

    def connect(self, session):
        d = defer.Deferred()
        self.attempts.append((session, d))
        return d


class FakeAuthenticator:
    """
    An L{IAuthenticator} answering every password login with C{result}.
    """

    def __init__(self, result):
        self.result = result
        self.logins = []
        self.attempts = []

    def authenticate(self, attempt, audit=True):
        self.attempts.append(attempt)
        self.logins.append((attempt.username, attempt.password, attempt.source))
        return self.result() if callable(self.result) else self.result


class SessionTestsMixin:
    """
    A session between a L{FakeClient} and a L{FakeBroker} on a fake clock.
    """

    ownStart = False

    def setUp(self):
        self.clock = task.Clock()
        self.listener = Listener(name="test", protocol="websocket", endpoint="tcp:0")
        self.secrets = SecretStore(inline={"webuser": "broker-password"})
        self.secrets.load()
        self.promoter = ConsolidatedPromoter(Promotion(mode="consolidated", user="webuser"), self.secrets)
        self.connector = FakeBrokerConnector()
        self.client = FakeClient()
        self.broker = FakeBroker()

    def makeSession(self, avatar=GatewayUser("joe.smith"), authenticator=None, ownStart=None, promoter=None,
                    lifetime=None, startCache=None):
        # The listener's context follows the session as in the gateway: the
        # audit trail and the X3 lifetime.
        observer = ListenerContext(self.listener, promoter or self.promoter, self.connector, BrokerStartCache(),
                                   self.clock, authenticator, lifetime)
        session = GatewaySession(
            self.listener, promoter or self.promoter, self.connector, self.clock,
            BrokerStartCache() if startCache is None else startCache, avatar=avatar, ownStart=self.ownStart if ownStart is None else ownStart,
            authenticator=authenticator, source="127.0.0.1:4242", observer=observer,
            keepCredentials=observer.keepsCredentials)
        session.clientConnected(self.client)
        self.session = session
        return session

    def clientSays(self, data):
        self.session.clientDataReceived(data)

    def brokerSays(self, data):
        self.session.brokerDataReceived(data)

    def brokerHeard(self):
        data = self.broker.transport.value()
        self.broker.transport.clear()
        return data

    def clientHeard(self):
        data = self.client.transport.value()
        self.client.transport.clear()
        return data

    def connectBroker(self):
        _, d = self.connector.attempts[-1]
        d.callback(self.broker)

    def relayHandshake(self, upTo="open-ok"):
        """
        Take a session made with a relayed Start (the WebSocket listener's)
        through the handshake, up to C{upTo}: C{"start"}, C{"start-ok"} or
        C{"open-ok"} (what both sides heard is then consumed).
        """
        self.clientSays(PROTOCOL_HEADER)
        self.connectBroker()
        self.assertEqual(self.brokerHeard(), PROTOCOL_HEADER)
        self.brokerSays(start())
        self.assertEqual(self.clientHeard(), start())
        if upTo == "start":
            return
        self.clientSays(startOk())
        if upTo == "start-ok":
            return
        self.brokerSays(TUNE)
        self.clientSays(TUNE_OK + OPEN)
        self.brokerSays(OPEN_OK)
        self.brokerHeard()
        self.clientHeard()

    def assertClosedWith(self, code):
        heard = methods(self.clientHeard())
        self.assertEqual(heard[-1][0], "connection.close")
        self.assertEqual(heard[-1][1]["reply_code"], code)
        self.assertEqual(self.session.state, State.CLOSING)
        self.clientSays(encodeMethod(0, "connection.close-ok"))
        self.assertEqual(self.session.state, State.CLOSED)
        self.assertIsNotNone(self.client.closed)


# -- checkers --------------------------------------------------------------------


@implementer(ICredentialsChecker, IUserStatus)
class ControlledChecker:
    """
    An in-memory checker: C{passwords} says who may log in; each check
    waits until the test releases it when C{hold} is set.
    """

    credentialInterfaces = (IUsernamePassword,)

    def __init__(self, passwords, groups=None):
        self.passwords = passwords
        self.groups = groups or {}
        self.checked = []
        self.hold = False
        self.held = []

    def requestAvatarId(self, credentials):
        self.checked.append(credentials.username)
        d = defer.Deferred()
        if self.hold:
            self.held.append((credentials, d))
        else:
            self._answer(credentials, d)
        return d

    def _answer(self, credentials, d):
        if self.passwords.get(credentials.username) == credentials.password:
            d.callback(GatewayUser(credentials.username, self.groups.get(credentials.username, ())))
        else:
            d.errback(UnauthorizedLogin("invalid user name or password"))

    def release(self, count=None):
        held, self.held = self.held[:count], self.held[count:] if count is not None else []
        for credentials, d in held:
            self._answer(credentials, d)

    def current(self, avatar):
        if avatar.user not in self.passwords:
            return None
        return GatewayUser(avatar.user, self.groups.get(avatar.user, ()))

    def generation(self, user):
        return self.passwords.get(user, "")


# -- the delegated realm's API Gateway -------------------------------------------

BASE_URL = "https://apigw.example.com:5543"
PASSWORD = "s3cret-Pa55word"

AUTHENTICATED = {
    "status": "Authenticated",
    "accessProfiles": ["Administrators", "Tyche"],
    "groups": ["Administrators", "Tyche"],
    "user": "user1",
    "expires": "3600",
}


def answer(document, code=200):
    """
    An answer for L{FakeGateway}: a status code and a JSON (or raw) body.
    """
    if not isinstance(document, bytes):
        document = json.dumps(document).encode("utf-8")
    return (code, document)


class FakeGateway(Resource):
    """
    An in-memory API Gateway: records every request and answers each with
    C{self.answer}, or, with C{hold=True}, keeps requests open in
    C{self.held} for the test to finish.
    """

    isLeaf = True

    def __init__(self, answer=answer(AUTHENTICATED), hold=False):
        Resource.__init__(self)
        self.answer = answer
        self.hold = hold
        self.requests = []
        self.held = []

    def render(self, request):
        self.requests.append({
            "method": request.method,
            "path": request.path,
            "headers": request.requestHeaders,
            "body": request.content.read(),
        })
        if self.hold:
            self.held.append(request)
            return NOT_DONE_YET
        code, body = self.answer
        request.setResponseCode(code)
        request.setHeader(b"Content-Type", b"application/json")
        return body

    def release(self, index=0, response=None):
        """
        Finish the held request at C{index} with C{response} (default
        C{self.answer}).
        """
        code, body = response or self.answer
        request = self.held.pop(index)
        request.setResponseCode(code)
        request.write(body)
        request.finish()


def creds(user="user1", password=PASSWORD):
    return UsernamePassword(user, password)


class DelegatedTestMixin:
    """
    Builds checkers over a L{FakeGateway} with a fake clock.
    """

    def checker(self, gateway=None, client=None, **kwargs):
        self.clock = Clock()
        self.clock.advance(1000000)
        if client is None:
            self.gateway = gateway if gateway is not None else FakeGateway()
            self.stub = StubTreq(self.gateway)
            client = self.stub
        kwargs.setdefault("url", BASE_URL)
        return DelegatedChecker(httpClient=client, clock=self.clock, **kwargs)

    def login(self, checker, credentials=None):
        """
        Run a login that completes without waiting.

        @return: the L{GatewayUser}.
        """
        return self.successResultOf(
            checker.requestAvatarId(credentials or creds()))

    def denied(self, checker, credentials=None):
        """
        Run a login that is denied without waiting.

        @return: the L{Failure}.
        """
        failure = self.failureResultOf(
            checker.requestAvatarId(credentials or creds()), UnauthorizedLogin)
        return failure


# -- what the operations code reads ----------------------------------------------


def samples(text):
    """
    @return: C{{(sample name, frozenset(labels)): value}} of an exposition.
    """
    found = {}
    for family in text_string_to_metric_families(text.decode("utf-8") if isinstance(text, bytes) else text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(metrics, name, **labels):
    """
    @return: the value of one sample of C{metrics}' exposition (KeyError
        when there is no such sample).
    """
    return samples(metrics.render())[(name, frozenset(labels.items()))]


class FakeSide:
    """
    One side of a session: a transport that may have paused its producer.
    """

    def __init__(self, paused=False):
        self.transport = SimpleNamespace(producerPaused=paused)


class FakeSession:
    """
    What the operations code and the session lifetime read of a
    L{GatewaySession}; C{forced} lists the reasons it was closed with.
    """

    def __init__(self, user=None, realm="internal", bytesIn=0, bytesOut=0, paused=False,
                 state=State.PASSTHROUGH, source="10.0.0.1:40000", groups=(), expires=None, credentials=None):
        self.avatar = GatewayUser(user, groups, expires=expires, realm=realm) if user else None
        self.listener = Listener(name="amqp", protocol="amqp", endpoint="tcp:0")
        self.source = source
        self.credentials = credentials
        self.bytesIn, self.bytesOut = bytesIn, bytesOut
        self.client = FakeSide(paused)
        self.broker = FakeSide()
        self.state = state
        self.forced = []

    @property
    def isOpen(self):
        return self.state is State.PASSTHROUGH

    def forceClose(self, reason):
        self.forced.append(reason)
        self.state = State.CLOSING


class FakeContext:
    def __init__(self, requiresLogin=False, sessions=()):
        self.requiresLogin = requiresLogin
        self.sessions = set(sessions)


def makeMetrics(realm="internal"):
    contexts = {"web": FakeContext(requiresLogin=True), "amqp": FakeContext(requiresLogin=True)}
    return GatewayMetrics(contexts, realm)


class FakeConnector:
    descriptions = ["tcp:host=127.0.0.1:port=5672"]

    def __init__(self, answers=True):
        self.answers = answers
        self.probes = 0

    def probe(self, cache):
        self.probes += 1
        return defer.succeed(self.answers)


def fakeGateway(userAuth="off", checker=None, answers=True, **top):
    document = {
        "user_auth": userAuth,
        "listeners": [{"name": "amqp", "protocol": "amqp", "endpoint": "tcp:0",
                       "auth": "none" if userAuth == "off" else "required"}],
        "promotion": {"mode": "consolidated", "user": "guest"},
    }
    document.update(top)
    config = parseConfig(document, "/etc/kp/gateway.toml")
    return SimpleNamespace(config=config, reactor=Clock(), contexts={}, cluster=None,
                           checker=checker, authenticator=SimpleNamespace(scheduler=None), isWorker=False,
                           brokerConnector=FakeConnector(answers), startCache=object())


def readinessOf(gateway):
    """
    @return: the L{Readiness} of a gateway, or of a L{fakeGateway}.
    """
    from kaazing_promo.ops.admin import Readiness
    return Readiness(gateway.config, gateway.reactor, getattr(gateway, "brokerConnector", None),
                     getattr(gateway, "startCache", None), gateway.checker, gateway.cluster)


def adminServiceOf(gateway):
    """
    @return: what L{kaazing_promo.ops.admin.buildAdminService} makes of a
        L{fakeGateway}'s parts.
    """
    from kaazing_promo.ops.admin import buildAdminService
    return buildAdminService(gateway.config, gateway.reactor, gateway.contexts, gateway.authenticator.scheduler,
                             readinessOf(gateway), gateway.checker)


def render(root, path):
    """
    @return: C{(code, JSON document or body)} of a GET of C{path} under C{root}.
    """
    request = DummyRequest(path.lstrip(b"/").split(b"/"))
    request.method = b"GET"
    body = getChildForRequest(root, request).render(request)
    code = request.responseCode or 200
    if request.responseHeaders.getRawHeaders(b"content-type") == [b"application/json"]:
        return code, json.loads(body)
    return code, body
