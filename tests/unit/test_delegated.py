"""
Tests for L{kaazing_promo.auth.delegated}: the delegated realm (U6-U10, X3).

The unit tests talk to an in-memory C{twisted.web} resource through
L{treq.testing.StubTreq} and keep time with L{Clock}; the integration tests
start a real HTTPS server on 127.0.0.1 with certificates made for the test.
"""

import ipaddress
import json

from cryptography import x509
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer, endpoints, reactor
from twisted.internet.error import ConnectionRefusedError
from twisted.logger import capturedLogs, formatEvent
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import HTTPConnectionPool
from zope.interface.verify import verifyObject

from kaazing_promo.auth.delegated import (
    AUTHENTICATE_PATH,
    DelegatedChecker,
    RealmError,
    failureKind,
    makeHTTPClient,
)
from kaazing_promo.errors import ConfigError
from kaazing_promo.interfaces import IGatewayUser
from tests.fakes import AUTHENTICATED, BASE_URL, PASSWORD, DelegatedTestMixin, FakeGateway, answer, creds
from tests.pki import TestPKI, TrackingSite


class HangingClient:
    """
    An HTTP client whose requests never get an answer; records whether they
    were cancelled.
    """

    def __init__(self):
        self.cancelled = []

    def post(self, url, **kwargs):
        return defer.Deferred(lambda d: self.cancelled.append(url))


class RefusingClient:
    """
    An HTTP client whose every request finds the port closed.
    """

    def post(self, url, **kwargs):
        return defer.fail(ConnectionRefusedError("127.0.0.1:5543"))


class RequestTests(DelegatedTestMixin, SynchronousTestCase):
    """
    What the checker sends (U6, U7).
    """

    def test_U6_postsExactBody(self):
        """
        U6: one POST to /rest/apigateway/authenticate with exactly the keys
        user-id, password, domain and includeGroups, as JSON.
        """
        checker = self.checker(domain="corp")
        self.login(checker)
        [request] = self.gateway.requests
        self.assertEqual(request["method"], b"POST")
        self.assertEqual(request["path"], AUTHENTICATE_PATH.encode("ascii"))
        self.assertEqual(
            request["body"],
            json.dumps({"user-id": "user1", "password": PASSWORD,
                        "domain": "corp", "includeGroups": False}).encode())

    def test_U6_jsonHeaders(self):
        """
        U6: the request says it sends and accepts JSON.
        """
        checker = self.checker()
        self.login(checker)
        headers = self.gateway.requests[0]["headers"]
        self.assertEqual(headers.getRawHeaders("content-type"), ["application/json"])
        self.assertEqual(headers.getRawHeaders("accept"), ["application/json"])

    def test_U6_trailingSlashNoDoubleSlash(self):
        """
        U6: a base URL ending in / does not produce //rest/….
        """
        checker = self.checker(url=BASE_URL + "/")
        self.login(checker)
        self.assertEqual(checker.url, BASE_URL + AUTHENTICATE_PATH)
        self.assertEqual(self.gateway.requests[0]["path"],
                         AUTHENTICATE_PATH.encode("ascii"))

    def test_U6_baseURLPathKept(self):
        """
        U6: a base URL with a path (a gateway behind a prefix) keeps it.
        """
        checker = self.checker(url=BASE_URL + "/gw/")
        self.assertEqual(checker.url, BASE_URL + "/gw" + AUTHENTICATE_PATH)

    def test_U6_bytesCredentials(self):
        """
        U6: credentials arriving as UTF-8 bytes (SASL) are sent as text.
        """
        checker = self.checker()
        self.login(checker, creds("j\u00f6rg".encode(), "p\u00e4ss".encode()))
        body = json.loads(self.gateway.requests[0]["body"])
        self.assertEqual((body["user-id"], body["password"]), ("j\u00f6rg", "p\u00e4ss"))

    def test_U6_emptyPasswordNeverSent(self):
        """
        U6: an empty password is refused without asking the gateway (an
        LDAP-backed gateway might take it for an anonymous bind).
        """
        checker = self.checker()
        failure = self.denied(checker, creds(password=""))
        self.assertFalse(failure.check(RealmError))
        self.assertEqual(self.gateway.requests, [])

    def test_U7_includeGroupsTrue(self):
        """
        U7: with an authorization rule on groups, includeGroups is true.
        """
        checker = self.checker(includeGroups=True)
        self.login(checker)
        self.assertIs(json.loads(self.gateway.requests[0]["body"])["includeGroups"], True)

    def test_U7_includeGroupsFalse(self):
        """
        U7: without one, includeGroups is false.
        """
        checker = self.checker(includeGroups=False)
        self.login(checker)
        self.assertIs(json.loads(self.gateway.requests[0]["body"])["includeGroups"], False)


class AnswerTests(DelegatedTestMixin, SynchronousTestCase):
    """
    How the gateway's answer decides the login (U9, U10).
    """

    def test_U9_authenticatedAvatar(self):
        """
        U9: 200 Authenticated → a delegated GatewayUser with the answer's
        user, groups and access profiles, expiring C{expires} seconds from
        now.
        """
        checker = self.checker()
        avatar = self.login(checker, creds("USER1"))
        self.assertTrue(verifyObject(IGatewayUser, avatar))
        self.assertEqual(avatar.user, "user1")
        self.assertEqual(avatar.groups, {"Administrators", "Tyche"})
        self.assertEqual(avatar.access_profiles, {"Administrators", "Tyche"})
        self.assertEqual(avatar.expires, self.clock.seconds() + 3600)
        self.assertEqual(avatar.realm, "delegated")

    def test_U9_userFallsBackToNameSent(self):
        """
        U9: an answer without C{user} vouches for the name that was sent.
        """
        document = dict(AUTHENTICATED)
        del document["user"]
        checker = self.checker(FakeGateway(answer(document)))
        self.assertEqual(self.login(checker, creds("joe")).user, "joe")

    def test_U9_noGroupsMeansNone(self):
        """
        U9: a 200 without C{groups} (includeGroups false) → no groups.
        """
        document = dict(AUTHENTICATED)
        del document["groups"]
        checker = self.checker(FakeGateway(answer(document)))
        self.assertEqual(self.login(checker).groups, frozenset())

    def test_U9_accessProfileObjects(self):
        """
        U9: access profiles sent as objects contribute their name (or id).
        """
        document = dict(AUTHENTICATED, accessProfiles=[
            {"name": "Tyche", "id": "a1"}, {"id": "b2"}, "Plain", 7, None])
        checker = self.checker(FakeGateway(answer(document)))
        self.assertEqual(self.login(checker).access_profiles,
                         {"Tyche", "b2", "Plain", "7"})

    def test_U9_numericExpires(self):
        """
        U9: C{expires} sent as a number works like the documented string.
        """
        checker = self.checker(FakeGateway(answer(dict(AUTHENTICATED, expires=60))))
        self.assertEqual(self.login(checker).expires, self.clock.seconds() + 60)

    def test_U10_unauthorized(self):
        """
        U10: HTTP 401 → a plain UnauthorizedLogin, classified as bad
        credentials, not as a realm error.
        """
        checker = self.checker(FakeGateway(answer({}, code=401)))
        failure = self.denied(checker)
        self.assertFalse(failure.check(RealmError))
        self.assertEqual(failureKind(failure), "bad-credentials")

    def test_U10_notAuthenticatedStatus(self):
        """
        U10: a 200 whose status is not "Authenticated" → bad credentials.
        """
        checker = self.checker(FakeGateway(answer({"status": "Failed"})))
        failure = self.denied(checker)
        self.assertFalse(failure.check(RealmError))

    def assertRealmError(self, checker, fragment):
        """
        The login is denied as a realm error whose reason contains
        C{fragment}, and that reason (never the password) is logged.
        """
        with capturedLogs() as events:
            failure = self.denied(checker)
        self.assertTrue(failure.check(RealmError))
        self.assertEqual(failureKind(failure), "realm-error")
        self.assertIn(fragment, failure.value.reason)
        logged = [formatEvent(e) for e in events
                  if e.get("log_namespace") == "kaazing_promo.auth.delegated"]
        self.assertEqual(len(logged), 1)
        self.assertIn(fragment, logged[0])
        self.assertNotIn(PASSWORD, repr(events))
        return failure

    def test_U10_serverError(self):
        """
        U10: HTTP 500 → denied as a realm error naming the status.
        """
        checker = self.checker(FakeGateway(answer({"status": "Authenticated"}, code=500)))
        self.assertRealmError(checker, "HTTP 500")

    def test_U10_redirectNotFollowed(self):
        """
        U8/U10: a redirect is not followed (it would re-post the password
        somewhere unconfigured); it is a realm error.
        """
        checker = self.checker(FakeGateway(answer(b"", code=307)))
        self.assertRealmError(checker, "HTTP 307")
        self.assertEqual(len(self.gateway.requests), 1)

    def test_U10_garbageBody(self):
        """
        U10: a 200 that is not JSON → realm error.
        """
        checker = self.checker(FakeGateway(answer(b"<html>Login</html>")))
        self.assertRealmError(checker, "not JSON")

    def test_U10_jsonWithoutStatus(self):
        """
        U10: a 200 JSON body without "status" (or not an object) → realm
        error.
        """
        checker = self.checker(FakeGateway(answer(["Authenticated"])))
        self.assertRealmError(checker, "no \"status\"")

    def test_U10_oversizedBody(self):
        """
        U10: an answer larger than any real one is not buffered.
        """
        checker = self.checker(FakeGateway(answer(b"x" * (1024 * 1024 + 1))))
        self.assertRealmError(checker, "more than")

    def test_U10_timeout(self):
        """
        U10: no answer within C{timeout} → the request is cancelled and the
        login denied as a realm error.
        """
        client = HangingClient()
        checker = self.checker(client=client, timeout=5.0)
        d = checker.requestAvatarId(creds())
        self.clock.advance(4.9)
        self.assertNoResult(d)
        self.clock.advance(0.1)
        failure = self.failureResultOf(d, RealmError)
        self.assertIn("within 5 s", failure.value.reason)
        self.assertEqual(client.cancelled, [checker.url])

    def test_U10_connectionRefused(self):
        """
        U10: a refused connection → realm error.
        """
        checker = self.checker(client=RefusingClient())
        self.assertRealmError(checker, "cannot reach")


class CacheTests(DelegatedTestMixin, SynchronousTestCase):
    """
    Caching of successes for C{expires} seconds (U9, X3).
    """

    def test_U9_cachedUntilExpires(self):
        """
        U9: a success is served from the cache for C{expires} seconds; after
        that the gateway is asked again.
        """
        checker = self.checker()
        first = self.login(checker)
        self.clock.advance(3599)
        self.assertEqual(self.login(checker), first)
        self.assertEqual(len(self.gateway.requests), 1)
        self.clock.advance(1)
        self.login(checker)
        self.assertEqual(len(self.gateway.requests), 2)

    def test_U9_missingExpiresNotCached(self):
        """
        U9: without C{expires}, nothing is cached and the avatar never
        expires.
        """
        document = dict(AUTHENTICATED)
        del document["expires"]
        checker = self.checker(FakeGateway(answer(document)))
        self.assertIsNone(self.login(checker).expires)
        self.login(checker)
        self.assertEqual(len(self.gateway.requests), 2)

    def test_U9_invalidExpiresNotCached(self):
        """
        U9: an unreadable C{expires} counts as missing.
        """
        for bad in ("soon", "-5", "nan", "inf", True, None, [60]):
            checker = self.checker(FakeGateway(answer(dict(AUTHENTICATED, expires=bad))))
            self.assertIsNone(self.login(checker).expires, bad)
            self.login(checker)
            self.assertEqual(len(self.gateway.requests), 2, bad)

    def test_U9_failureNotCached(self):
        """
        U9: a refusal is not cached: the next try asks again and can
        succeed.
        """
        gateway = FakeGateway(answer({}, code=401))
        checker = self.checker(gateway)
        self.denied(checker)
        gateway.answer = answer({}, code=500)
        self.denied(checker)
        gateway.answer = answer(AUTHENTICATED)
        self.login(checker)
        self.assertEqual(len(gateway.requests), 3)

    def test_U9_otherPasswordNotServedFromCache(self):
        """
        U9: a cached success answers only the same user, password and
        domain.
        """
        checker = self.checker()
        self.login(checker)
        self.gateway.answer = answer({}, code=401)
        self.denied(checker, creds(password="guess"))
        self.assertEqual(len(self.gateway.requests), 2)

    def test_U9_cacheKeyHoldsNoPassword(self):
        """
        U9: the cache is keyed by an HMAC digest; neither its keys nor its
        values hold the password.
        """
        checker = self.checker()
        self.login(checker)
        [key] = checker._cache.keys()
        self.assertIsInstance(key, bytes)
        self.assertEqual(len(key), 32)
        self.assertNotIn(PASSWORD.encode(), key)
        self.assertNotIn(PASSWORD, repr(checker._cache.values()))
        self.assertNotIn(PASSWORD, repr(checker))

    def test_U9_cacheKeyPerChecker(self):
        """
        U9: the HMAC key is random per checker, so two checkers derive
        different keys for the same login.
        """
        one, two = self.checker(), self.checker()
        self.login(one)
        self.login(two)
        self.assertNotEqual(one._cache.keys(), two._cache.keys())

    def test_U9_leastRecentlyUsedEvicted(self):
        """
        U9: the cache holds at most C{cacheSize} results, dropping the least
        recently used.
        """
        checker = self.checker(cacheSize=2)
        self.login(checker, creds("a"))
        self.login(checker, creds("b"))
        self.login(checker, creds("a"))
        self.login(checker, creds("c"))
        self.assertEqual(len(checker._cache), 2)
        self.assertEqual(len(self.gateway.requests), 3)
        self.login(checker, creds("a"))
        self.assertEqual(len(self.gateway.requests), 3)
        self.login(checker, creds("b"))
        self.assertEqual(len(self.gateway.requests), 4)

    def test_U9_cacheSizeZero(self):
        """
        U9: C{cacheSize=0} turns the cache off.
        """
        checker = self.checker(cacheSize=0)
        self.login(checker)
        self.login(checker)
        self.assertEqual(len(self.gateway.requests), 2)

    def test_X3_revalidateBypassesCache(self):
        """
        X3: revalidate asks the gateway even when a result is cached, and
        refreshes the cache.
        """
        checker = self.checker()
        self.login(checker)
        self.clock.advance(100)
        avatar = self.successResultOf(checker.revalidate(creds()))
        self.assertEqual(len(self.gateway.requests), 2)
        self.assertEqual(avatar.expires, self.clock.seconds() + 3600)
        self.assertEqual(self.login(checker), avatar)
        self.assertEqual(len(self.gateway.requests), 2)

    def test_X3_revalidateRefusalDropsCachedSuccess(self):
        """
        X3: when revalidation is refused (password changed), the cached
        success goes too.
        """
        checker = self.checker()
        self.login(checker)
        self.gateway.answer = answer({}, code=401)
        self.failureResultOf(checker.revalidate(creds()), UnauthorizedLogin)
        self.denied(checker)
        self.assertEqual(len(self.gateway.requests), 3)


class ConcurrencyTests(DelegatedTestMixin, SynchronousTestCase):
    """
    Sharing and limiting requests in flight (U9, U10).
    """

    def test_U9_identicalLoginsShareOneRequest(self):
        """
        U9: identical logins in flight together share one request and its
        answer.
        """
        checker = self.checker(FakeGateway(hold=True))
        first = checker.requestAvatarId(creds())
        second = checker.requestAvatarId(creds())
        self.assertEqual(len(self.gateway.requests), 1)
        self.assertNoResult(first)
        self.gateway.release()
        self.stub.flush()
        self.assertEqual(self.successResultOf(first), self.successResultOf(second))

    def test_U10_sharedFailureReachesEveryone(self):
        """
        U10: a shared request that fails denies every login waiting on it.
        """
        checker = self.checker(FakeGateway(hold=True))
        waiting = [checker.requestAvatarId(creds()) for _ in range(3)]
        self.gateway.release(response=answer({}, code=401))
        self.stub.flush()
        for d in waiting:
            self.failureResultOf(d, UnauthorizedLogin)

    def test_U9_cancelledWaiterLeavesOthers(self):
        """
        U9: one client giving up does not cancel the request the others
        wait for.
        """
        checker = self.checker(FakeGateway(hold=True))
        first = checker.requestAvatarId(creds())
        second = checker.requestAvatarId(creds())
        first.cancel()
        self.failureResultOf(first, defer.CancelledError)
        self.gateway.release()
        self.stub.flush()
        self.assertEqual(self.successResultOf(second).user, "user1")

    def test_U10_concurrencyLimited(self):
        """
        U10: at most C{maxConcurrent} requests run at once; the rest wait
        their turn.
        """
        checker = self.checker(FakeGateway(hold=True), maxConcurrent=2)
        logins = [checker.requestAvatarId(creds(name)) for name in "abc"]
        self.assertEqual(len(self.gateway.requests), 2)
        self.gateway.release()
        self.stub.flush()
        self.assertEqual(len(self.gateway.requests), 3)
        self.gateway.release()
        self.gateway.release()
        self.stub.flush()
        for d in logins:
            self.successResultOf(d)

    def test_U10_tooManyPending(self):
        """
        U10: past C{maxConcurrent * 4} waiting logins, more are refused at
        once as a realm error.
        """
        checker = self.checker(FakeGateway(hold=True), maxConcurrent=1)
        logins = [checker.requestAvatarId(creds(str(n))) for n in range(5)]
        self.assertEqual(len(self.gateway.requests), 1)
        for d in logins:
            self.assertNoResult(d)
        failure = self.failureResultOf(
            checker.requestAvatarId(creds("late")), RealmError)
        self.assertIn("too many pending", failure.value.reason)


class ConfigurationTests(DelegatedTestMixin, SynchronousTestCase):
    """
    Building checkers and clients (U8).
    """

    def test_implementsICredentialsChecker(self):
        """
        The checker provides ICredentialsChecker for username/password
        credentials.
        """
        self.assertTrue(verifyObject(ICredentialsChecker, self.checker()))

    def test_U8_httpRefused(self):
        """
        U8: an http:// URL is a configuration error naming the key.
        """
        error = self.assertRaises(
            ConfigError, self.checker, url="http://apigw.example.com:5555")
        self.assertIn("[delegated] url", str(error))
        self.assertIn("https://", str(error))

    def test_U8_hostRequired(self):
        """
        U8: an https URL without a host is refused too.
        """
        error = self.assertRaises(ConfigError, self.checker, url="https:///x")
        self.assertIn("[delegated] url", str(error))

    def test_U8_userInfoRefused(self):
        """
        U8: a URL with embedded credentials is refused without echoing them
        (the URL appears in log lines).
        """
        error = self.assertRaises(
            ConfigError, self.checker, url="https://admin:hunter2@apigw.example.com")
        self.assertIn("[delegated] url", str(error))
        self.assertNotIn("hunter2", str(error))

    def test_U8_badLimitsRefused(self):
        """
        Timeouts and limits that cannot work are configuration errors.
        """
        self.assertRaises(ConfigError, self.checker, timeout=0)
        self.assertRaises(ConfigError, self.checker, maxConcurrent=0)
        self.assertRaises(ConfigError, self.checker, cacheSize=-1)

    def test_U8_missingCAFile(self):
        """
        U8: a CA file that cannot be read is a configuration error naming
        the key.
        """
        error = self.assertRaises(
            ConfigError, makeHTTPClient, reactor, caFile=self.mktemp())
        self.assertIn("[delegated] ca_file", str(error))

    def test_U8_caFileWithoutCertificate(self):
        """
        U8: a CA file holding no PEM certificate is a configuration error.
        """
        path = FilePath(self.mktemp())
        path.setContent(b"not a certificate\n")
        error = self.assertRaises(
            ConfigError, makeHTTPClient, reactor, caFile=path.path)
        self.assertIn("no PEM certificate", str(error))


class HTTPSIntegrationTests(TestCase):
    """
    The checker against a real HTTPS server on 127.0.0.1 (U8).
    """

    def setUp(self):
        self.pki = TestPKI(FilePath(self.mktemp()))
        self.gateway = FakeGateway()

    @defer.inlineCallbacks
    def listen(self, keyFile, certFile):
        """
        Serve L{self.gateway} over TLS on an ephemeral port of 127.0.0.1.

        @return: the base URL.
        """
        site = TrackingSite(self.gateway)
        description = "ssl:0:interface=127.0.0.1:privateKey={}:certKey={}".format(
            endpoints.quoteStringArgument(keyFile.path),
            endpoints.quoteStringArgument(certFile.path))
        port = yield endpoints.serverFromString(reactor, description).listen(site)

        def stop():
            # Server-side connections outlive stopListening; wait for them
            # (the client pools are closed first, see checker()).
            return defer.gatherResults(
                [defer.maybeDeferred(port.stopListening)] + site.closed)

        self.addCleanup(stop)
        return f"https://127.0.0.1:{port.getHost().port}"

    def checker(self, url, caFile):
        pool = HTTPConnectionPool(reactor, persistent=True)
        self.addCleanup(pool.closeCachedConnections)
        client = makeHTTPClient(reactor, caFile=caFile, pool=pool)
        return DelegatedChecker(url=url, httpClient=client, clock=reactor, timeout=10.0)

    @defer.inlineCallbacks
    def test_U8_trustedCA(self):
        """
        U8: with C{ca_file} naming the CA that signed the server's
        certificate for 127.0.0.1, the login succeeds.
        """
        url = yield self.listen(*self.pki.issue(
            "localhost", [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]))
        checker = self.checker(url, self.pki.caFile.path)
        avatar = yield checker.requestAvatarId(creds())
        self.assertEqual(avatar.user, "user1")
        self.assertEqual(avatar.realm, "delegated")
        [request] = self.gateway.requests
        self.assertEqual(request["path"], AUTHENTICATE_PATH.encode("ascii"))

    @defer.inlineCallbacks
    def test_U8_unknownCARefused(self):
        """
        U8: with system trust only, a certificate from an unknown CA fails
        verification: a realm error, and no password is posted.
        """
        url = yield self.listen(*self.pki.issue(
            "localhost", [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]))
        checker = self.checker(url, None)
        with capturedLogs():
            failure = yield self.assertFailure(
                checker.requestAvatarId(creds()), RealmError)
        self.assertIn("certificate verification failed", failure.reason)
        self.assertEqual(self.gateway.requests, [])

    @defer.inlineCallbacks
    def test_U8_wrongHostRefused(self):
        """
        U8: a certificate from the trusted CA but for another host name
        fails verification: a realm error.
        """
        url = yield self.listen(*self.pki.issue(
            "wrong", [x509.DNSName("apigw.example.com")]))
        checker = self.checker(url, self.pki.caFile.path)
        with capturedLogs():
            failure = yield self.assertFailure(
                checker.requestAvatarId(creds()), RealmError)
        self.assertIn("certificate verification failed", failure.reason)
        self.assertEqual(self.gateway.requests, [])
