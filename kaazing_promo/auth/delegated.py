"""
The delegated realm (C{user_auth = "delegated"}): the API Gateway checks
each password.

L{DelegatedChecker} posts the credentials a client presented to the
configured API Gateway's C{/rest/apigateway/authenticate} resource (U6), over
HTTPS only with verified certificates (U8), and turns its answer into a
L{GatewayUser} (U9).  Anything but a clear answer denies the login (U10):

  - HTTP 200 with C{"status": "Authenticated"}: the user is in.  The result
    is cached for the C{expires} seconds the gateway grants.
  - HTTP 401, or a 200 whose C{status} says something else: bad credentials,
    a plain L{UnauthorizedLogin}.
  - Any other status, a timeout, a refused connection, a failed certificate
    check or a body that is not the expected JSON: a L{RealmError} (a
    subclass of L{UnauthorizedLogin}), with the reason logged for the
    operator.

Use L{failureKind} to tell the two kinds of denial apart (the audit log's
C{bad-credentials} and C{realm-error} outcomes).
"""

import json
import math
import re
from http.cookiejar import DefaultCookiePolicy
from urllib.parse import urlsplit

import treq
from OpenSSL import SSL
from service_identity import CertificateError, VerificationError
from treq.client import HTTPClient
from treq.cookies import IndexableCookieJar
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer
from twisted.internet.ssl import Certificate, trustRootFromCertificates
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import (
    Agent,
    BrowserLikePolicyForHTTPS,
    HTTPConnectionPool,
    RequestGenerationFailed,
    RequestTransmissionFailed,
    ResponseFailed,
    ResponseNeverReceived,
)
from zope.interface import implementer

from kaazing_promo.auth.avatar import GatewayUser
from kaazing_promo.auth.cache import LoginCache
from kaazing_promo.errors import ConfigError
from kaazing_promo.interfaces import IRevalidating
from kaazing_promo.secrets import Secret

AUTHENTICATE_PATH = "/rest/apigateway/authenticate"

DEFAULT_TIMEOUT = 5.0
DEFAULT_MAX_CONCURRENT = 64
DEFAULT_CACHE_SIZE = 10000

# How many logins may queue behind a full set of in-flight requests, as a
# multiple of maxConcurrent.  Past it the gateway is clearly not keeping up,
# and refusing at once beats holding ever more clients for a timeout.
PENDING_FACTOR = 4

# The authenticate answer is a few hundred bytes; a gateway (or something
# posing as one) that sends megabytes must not make us buffer them.
MAX_RESPONSE_BYTES = 1024 * 1024

BAD_CREDENTIALS = "bad-credentials"
REALM_ERROR = "realm-error"

_log = Logger(namespace="kaazing_promo.auth.delegated")

_PEM_CERTIFICATE = re.compile(
    rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


class RealmError(UnauthorizedLogin):
    """
    The delegated realm could not give an answer (bad status, timeout,
    unreachable, TLS failure, malformed body).  The login is denied all the
    same (fail closed), but the fault is the service's, not the user's.

    @ivar reason: the operator-facing reason (never a password).
    """

    kind = REALM_ERROR

    def __init__(self, reason):
        UnauthorizedLogin.__init__(self, reason)
        self.reason = reason


def failureKind(failure):
    """
    Classify a denied login for the audit log.

    @param failure: a L{twisted.python.failure.Failure} or an exception from
        L{DelegatedChecker}.
    @return: C{"realm-error"} for a L{RealmError}, otherwise
        C{"bad-credentials"}.
    """
    value = getattr(failure, "value", failure)
    return getattr(value, "kind", BAD_CREDENTIALS)


def _badCredentials():
    return UnauthorizedLogin(BAD_CREDENTIALS)


def _text(value):
    """
    Credentials arrive as L{str}, L{bytes} (SASL) or L{Secret}; the realm
    wants text.

    @raise UnauthorizedLogin: C{value} is bytes that are not UTF-8 (no
        gateway user can have typed them).
    """
    if isinstance(value, Secret):
        value = value.reveal()
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise _badCredentials()
    return str(value)


def _names(value):
    """
    Read the C{groups} or C{accessProfiles} of an authenticate answer.

    The documented form is a list of strings; some gateway versions send
    objects instead, so an object contributes its C{name} (or C{id}).
    Anything else is skipped rather than failing a login the gateway
    accepted.

    @return: L{frozenset} of L{str}.
    """
    if value is None:
        return frozenset()
    if isinstance(value, (str, dict)):
        value = [value]
    if not isinstance(value, list):
        return frozenset()
    names = set()
    for item in value:
        if isinstance(item, dict):
            item = item.get("name", item.get("id"))
        if isinstance(item, (str, int)) and not isinstance(item, bool):
            name = str(item)
            if name:
                names.add(name)
    return frozenset(names)


def _lifetime(value):
    """
    Read the C{expires} of an authenticate answer: seconds, usually sent as
    a string such as C{"3600"}.

    @return: a finite, non-negative L{float}, or L{None} when missing or
        unreadable (the result is then not cached and never expires).
    """
    if isinstance(value, bool):
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


def _checkURL(url):
    """
    @return: C{url} without a trailing slash.
    @raise ConfigError: C{url} is not an absolute https:// URL.
    """
    parts = urlsplit(url)
    # The URL is logged with every realm error, so it must hold no secret;
    # the message does not echo it for the same reason.
    if "@" in parts.netloc:
        raise ConfigError(
            "[delegated] url: must not contain a user name or password "
            "(the gateway gets each client's own credentials)")
    if parts.scheme.lower() != "https" or not parts.hostname:
        raise ConfigError(
            f"[delegated] url = {url!r}: delegated authentication sends "
            f"passwords, so it must be an https:// URL with a host "
            f"(e.g. \"https://apigw.example.com:5543\")")
    if parts.query or parts.fragment:
        raise ConfigError(
            f"[delegated] url = {url!r}: give only scheme, host, port and "
            f"path; {AUTHENTICATE_PATH} is appended to it")
    return url.rstrip("/")


@implementer(IRevalidating)
class DelegatedChecker:
    """
    Checks user names and passwords against an API Gateway's
    C{POST /rest/apigateway/authenticate} (U6-U10, X3).

    Successful answers are cached for the C{expires} seconds the gateway
    grants, keyed by an HMAC of user, password and domain under a key that
    lives only in this process, so neither the password nor anything that
    can be checked against a guess offline is kept.  Identical logins in
    flight at the same time share one request; at most C{maxConcurrent}
    requests run at once and at most C{maxConcurrent * 4} logins wait.

    @ivar url: the full authenticate URL requests are posted to.
    @ivar metrics: an L{kaazing_promo.ops.metrics.IRealmMetrics} told about
        each request's duration and each cache lookup, or L{None}.
    """

    credentialInterfaces = (IUsernamePassword,)
    metrics = None

    def __init__(self, *, url, httpClient, clock, domain="",
                 includeGroups=False, timeout=DEFAULT_TIMEOUT,
                 maxConcurrent=DEFAULT_MAX_CONCURRENT,
                 cacheSize=DEFAULT_CACHE_SIZE):
        """
        @param url: the API Gateway's base URL (C{[delegated] url}); must be
            https://.  L{AUTHENTICATE_PATH} is appended.
        @param httpClient: a L{treq.client.HTTPClient} (or anything with its
            C{post}), e.g. from L{makeHTTPClient}.
        @param clock: an L{twisted.internet.interfaces.IReactorTime}; it
            times requests out and dates C{expires}.
        @param domain: sent as C{"domain"} with every request.
        @param includeGroups: ask the gateway for the user's groups; C{True}
            only when some listener authorizes on groups (U7).
        @param timeout: seconds the gateway has to answer, body included.
        @param maxConcurrent: requests in flight at once.
        @param cacheSize: successful results kept; C{0} disables the cache.

        @raise ConfigError: a parameter cannot be used.
        """
        self.url = _checkURL(url) + AUTHENTICATE_PATH
        if not timeout > 0:
            raise ConfigError(
                f"[delegated] timeout = {timeout!r}: must be a positive "
                f"number of seconds")
        if maxConcurrent < 1:
            raise ConfigError(
                f"[delegated] max_concurrent = {maxConcurrent!r}: must be "
                f"at least 1")
        if cacheSize < 0:
            raise ConfigError(
                f"[delegated] cache_size = {cacheSize!r}: must be 0 (no "
                f"cache) or more")
        self._client = httpClient
        self._clock = clock
        self._domain = domain
        self._includeGroups = bool(includeGroups)
        self._timeout = float(timeout)
        self._semaphore = defer.DeferredSemaphore(maxConcurrent)
        #: Requests it runs at once: the login queue's slots.
        self.concurrency = maxConcurrent
        self._maxPending = maxConcurrent * PENDING_FACTOR
        self._cache = LoginCache(cacheSize)
        self._inFlight = {}

    def __repr__(self):
        return f"<DelegatedChecker {self.url}>"

    def generation(self, user):
        """
        L{IUserStatus}: the API Gateway tells nothing of a password change;
        a session cookie lives its C{session_ttl} (and the avatar's own
        C{expires} is checked when it is used).
        """
        return ""

    def current(self, avatar):
        """
        L{IUserStatus}: the API Gateway is asked only with a password, so a
        user it vouched for stays as it was; its C{expires} is X3's business
        (L{kaazing_promo.auth.lifetime}).
        """
        return avatar

    def requestAvatarId(self, credentials):
        """
        Authenticate C{credentials}, from the cache when a live result is
        there.

        @param credentials: an L{IUsernamePassword}.
        @return: a L{Deferred} firing with a L{GatewayUser} (realm
            C{"delegated"}) or failing with L{UnauthorizedLogin} (bad
            credentials) or L{RealmError} (the realm could not answer).
        """
        return self._check(credentials, useCache=True)

    def revalidate(self, credentials):
        """
        Ask the gateway again, ignoring any cached result: a live
        connection's authentication has expired (X3).

        @return: as L{requestAvatarId}.  On any failure a cached success for
            these credentials is dropped as well.
        """
        return self._check(credentials, useCache=False)

    def _check(self, credentials, useCache):
        try:
            user = _text(credentials.username)
            password = _text(credentials.password)
        except UnauthorizedLogin:
            return defer.fail()
        # An empty password is refused here: a gateway backed by LDAP may
        # treat it as an anonymous bind, which "succeeds".
        if not user or not password:
            return defer.fail(_badCredentials())
        key = self._keyFor(user, password)
        if useCache:
            cached = self._cache.get(key, self._clock.seconds())
            if self.metrics is not None:
                self.metrics.delegatedCache(cached is not None)
            if cached is not None:
                return defer.succeed(cached)
        return self._shared(key, lambda: self._authenticate(key, user, password))

    def _keyFor(self, user, password):
        """
        The cache and in-flight key for one login (an HMAC, never the password).
        """
        return self._cache.keyFor(user, password, self._domain)

    def _shared(self, key, start):
        """
        Join the request already in flight for C{key}, or start one.

        Every caller gets its own L{Deferred}, so one client giving up (and
        cancelling) does not cancel the answer the others wait for.
        """
        mine = defer.Deferred()
        waiters = self._inFlight.get(key)
        if waiters is not None:
            waiters.append(mine)
            return mine
        # Registered before starting: the request may finish synchronously.
        waiters = self._inFlight[key] = [mine]

        def deliver(result):
            del self._inFlight[key]
            for waiter in waiters:
                if not waiter.called:
                    if isinstance(result, Failure):
                        waiter.errback(result)
                    else:
                        waiter.callback(result)

        defer.maybeDeferred(start).addBoth(deliver)
        return mine

    def _authenticate(self, key, user, password):
        """
        One request to the gateway, queued behind the concurrency limit,
        with its outcome logged once and cached on success.
        """
        if (self._semaphore.tokens == 0
                and len(self._semaphore.waiting) >= self._maxPending):
            d = defer.fail(RealmError(
                f"too many pending requests to the delegated realm "
                f"({self._maxPending} waiting)"))
        else:
            d = self._semaphore.run(self._post, user, password)
            d.addCallback(self._interpret, user)

        def succeeded(avatar):
            # Cached for exactly as long as the gateway vouches for it; an
            # answer without a (positive) expires is used once.
            if avatar.expires is not None and avatar.expires > self._clock.seconds():
                self._cache.put(key, avatar, avatar.expires)
            return avatar

        def failed(failure):
            # A fresh answer that is not a success also withdraws any
            # earlier success still cached (revalidation after a password
            # change).
            self._cache.discard(key)
            if not failure.check(UnauthorizedLogin):
                failure = Failure(RealmError(
                    f"unexpected error: {failure.getErrorMessage()}"))
            if failure.check(RealmError):
                _log.warn(
                    "Delegated realm error for user {user!r} at {url}: "
                    "{reason}", user=user, url=self.url,
                    reason=failure.value.reason)
            else:
                _log.info(
                    "Delegated realm refused user {user!r}: bad credentials",
                    user=user)
            return failure

        return d.addCallbacks(succeeded, failed)

    def _post(self, user, password):
        """
        Post the credentials and read the whole answer within the timeout.

        @return: a L{Deferred} firing with C{(status code, body bytes)}.
        """
        body = json.dumps({
            "user-id": user,
            "password": password,
            "domain": self._domain,
            "includeGroups": self._includeGroups,
        }).encode("utf-8")
        # Redirects are not followed: a 307 would re-post the password to a
        # place nobody configured, possibly over plain HTTP.
        d = self._client.post(
            self.url, data=body,
            headers={"Content-Type": "application/json",
                     "Accept": "application/json"},
            allow_redirects=False)
        d.addCallback(self._readAnswer)
        # Timed out here, with the injected clock, rather than through
        # treq's timeout=: that one uses the global reactor and stops
        # counting once the headers arrive.
        d.addTimeout(self._timeout, self._clock)
        d.addErrback(self._transportFailed)
        if self.metrics is not None:
            started = self._clock.seconds()

            def timed(result):
                self.metrics.delegatedRequest(self._clock.seconds() - started)
                return result
            d.addBoth(timed)
        return d

    def _readAnswer(self, response):
        received = []
        size = [0]

        def collect(data):
            size[0] += len(data)
            if size[0] > MAX_RESPONSE_BYTES:
                raise RealmError(
                    f"delegated realm answered HTTP {response.code} with "
                    f"more than {MAX_RESPONSE_BYTES} bytes")
            received.append(data)

        d = treq.collect(response, collect)
        d.addCallback(lambda _: (response.code, b"".join(received)))
        return d

    def _transportFailed(self, failure):
        """
        Turn whatever stopped the exchange into a L{RealmError} that says
        what happened.
        """
        if failure.check(RealmError):
            return failure
        if failure.check(defer.TimeoutError, defer.CancelledError):
            raise RealmError(
                f"no answer from the delegated realm within "
                f"{self._timeout:g} s")
        reasons = [failure]
        if failure.check(ResponseNeverReceived, ResponseFailed,
                         RequestTransmissionFailed, RequestGenerationFailed):
            reasons = failure.value.reasons or reasons
        for reason in reasons:
            message = reason.getErrorMessage()
            if reason.check(VerificationError, CertificateError):
                raise RealmError(
                    f"TLS certificate verification failed: the gateway's "
                    f"certificate is not for the host in [delegated] url "
                    f"({message})")
            if reason.check(SSL.Error):
                if "certificate verify failed" in message:
                    raise RealmError(
                        f"TLS certificate verification failed: {message} "
                        f"(is [delegated] ca_file the CA that signed the "
                        f"gateway's certificate?)")
                raise RealmError(f"TLS handshake failed: {message}")
        raise RealmError(
            "cannot reach the delegated realm: "
            + "; ".join(reason.getErrorMessage() for reason in reasons))

    def _interpret(self, answer, user):
        """
        Decide the login from the gateway's answer.

        @param answer: C{(status code, body bytes)}.
        @param user: the user name sent, used when the answer names none.
        @return: a L{GatewayUser}.
        @raise UnauthorizedLogin: the gateway refused the credentials.
        @raise RealmError: the answer is not one the API defines.
        """
        code, body = answer
        if code == 401:
            raise _badCredentials()
        if code != 200:
            raise RealmError(
                f"delegated realm answered HTTP {code} (expected 200 or 401)")
        try:
            document = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise RealmError(
                "delegated realm answered HTTP 200 with a body that is not JSON")
        if not isinstance(document, dict) or "status" not in document:
            raise RealmError(
                "delegated realm answered HTTP 200 with JSON that has no "
                "\"status\"")
        if document["status"] != "Authenticated":
            raise _badCredentials()
        name = document.get("user")
        if not isinstance(name, str) or not name:
            name = user
        lifetime = _lifetime(document.get("expires"))
        expires = None if lifetime is None else self._clock.seconds() + lifetime
        return GatewayUser(
            name,
            _names(document.get("groups")),
            _names(document.get("accessProfiles")),
            expires,
            realm="delegated",
        )


def _loadTrustRoot(caFile):
    """
    @return: an L{IOpenSSLTrustRoot} trusting every certificate in the PEM
        file C{caFile} (a bundle may hold several).
    @raise ConfigError: the file cannot be read or holds no certificate.
    """
    try:
        with open(caFile, "rb") as f:
            pem = f.read()
    except OSError as e:
        raise ConfigError(
            f"[delegated] ca_file = {caFile!r}: cannot read it "
            f"({e.strerror}); give the PEM file of the CA that signed the "
            f"API Gateway's certificate")
    blocks = _PEM_CERTIFICATE.findall(pem)
    try:
        certificates = [Certificate.loadPEM(block) for block in blocks]
    except Exception as e:
        raise ConfigError(
            f"[delegated] ca_file = {caFile!r}: not a readable PEM "
            f"certificate ({e})")
    if not certificates:
        raise ConfigError(
            f"[delegated] ca_file = {caFile!r}: holds no PEM certificate "
            f"(\"-----BEGIN CERTIFICATE-----\")")
    return trustRootFromCertificates(certificates)


def makeHTTPClient(reactor, caFile=None, pool=None, maxConcurrent=DEFAULT_MAX_CONCURRENT):
    """
    Build the HTTPS client L{DelegatedChecker} talks through.

    Certificates are always verified, host name (or IP address) included;
    there is deliberately no way to turn that off.

    @param reactor: the reactor to connect with.
    @param caFile: path of a PEM file with the CA certificate(s) to trust
        instead of the system's trust store, or L{None} for system trust.
    @param pool: the L{HTTPConnectionPool} to use; by default a new
        persistent one.  Pass your own to close it
        (C{pool.closeCachedConnections()}) when the service stops.
    @param maxConcurrent: C{[delegated] max_concurrent}: the default pool
        keeps that many idle connections.
    @return: a L{treq.client.HTTPClient}.
    @raise ConfigError: C{caFile} cannot be used.
    """
    trustRoot = None if caFile is None else _loadTrustRoot(caFile)
    # BrowserLikePolicyForHTTPS builds optionsForClientTLS(hostname,
    # trustRoot) per connection; trustRoot=None means the platform's store.
    policy = BrowserLikePolicyForHTTPS(trustRoot=trustRoot)
    if pool is None:
        pool = HTTPConnectionPool(reactor, persistent=True)
        # Keep as many idle connections as logins may run at once, so a
        # burst does not pay a TLS handshake per login afterwards.
        pool.maxPersistentPerHost = maxConcurrent
    agent = Agent(reactor, contextFactory=policy, pool=pool)
    # Cookies are never kept: a session cookie from one user's login must
    # not ride along with the next user's.
    cookies = IndexableCookieJar(DefaultCookiePolicy(allowed_domains=[]))
    return HTTPClient(agent, cookiejar=cookies)
