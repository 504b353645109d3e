"""
Token mode (issue 10) in memory: the promoter, the token book (single use,
TTL, signature), the permission table with RabbitMQ's semantics, and the
four C{[broker_auth]} endpoints answered as RabbitMQ's HTTP auth backend
asks them.
"""

import os

import treq
from twisted.internet import defer, reactor
from twisted.internet.task import Clock
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.resource import getChildForRequest
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest
from zope.interface.verify import verifyObject

from kaazing_promo.adapters.twistedinternals import whenListening
from kaazing_promo.auth.avatar import GatewayUser
from kaazing_promo.token.brokerauth import buildBrokerAuthResource, buildBrokerAuthService
from kaazing_promo.config import Permission, Promotion
from kaazing_promo.errors import ConfigError, PromotionRefused
from kaazing_promo.interfaces import IIdentityPromoter, ITokenBook, ITokenPromoter
from kaazing_promo.token.permissions import Grant, PermissionTable, searches
from kaazing_promo.promotion import PLAIN, makePromoter
from kaazing_promo.secrets import Secret, SecretStore
from kaazing_promo.tap import GatewayService
from kaazing_promo.token.tokens import GRANT_TAG_PREFIX, MAX_TOKEN_LENGTH, TokenBook, TokenPromoter, grantTag
from tests.authfixtures import standardUsers, writeUsersCnf
from tests.support import gatewayConfig

KEY = b"k" * 32

TYCHE = Permission(group="Tyche", vhost="/", configure=r"^tyche\.", write=r"^(tyche\.|amq\.default$)",
                   read=r"^tyche\.", topic=r"^tyche\.", tags=("Monitoring",))
READERS = Permission(access_profile="Readers", vhost="/", read=r"^public\.", tags=("management",))
TYCHE_VH = Permission(group="Tyche", vhost="tyche", configure=".*", write=".*", read=".*")
TABLE = (TYCHE, READERS, TYCHE_VH)

JOE = GatewayUser("joe.smith", groups={"Tyche", "Everyone"})
READER = GatewayUser("rita", groups={"Everyone"}, access_profiles={"Readers"})
ALICE = GatewayUser("alice", groups={"Everyone"})


def settings(**kwargs):
    return Promotion(**dict({"mode": "token"}, **kwargs))


def makeBook(clock=None, ttl=10.0, key=KEY, permissions=TABLE):
    return TokenBook(ttl=ttl, key=key, clock=clock or Clock(), permissions=permissions)


def capturedEvents(testCase):
    """
    @return: a list that collects every log event emitted until the test ends.
    """
    events = []
    globalLogPublisher.addObserver(events.append)
    testCase.addCleanup(globalLogPublisher.removeObserver, events.append)
    return events


def eventTexts(events):
    return [f"{formatEvent(event)} {event!r}" for event in events]


class PromoterTests(SynchronousTestCase):
    """
    TokenPromoter: which broker user, a fresh token each time, refusals
    before any AMQP byte reaches the broker.
    """

    def setUp(self):
        self.clock = Clock()
        self.book = makeBook(self.clock)
        self.promoter = TokenPromoter(settings(), book=self.book)

    def test_S4_interfaces(self):
        """
        S4: the promoter provides IIdentityPromoter (and ITokenPromoter), its
        book ITokenBook.
        """
        self.assertTrue(verifyObject(IIdentityPromoter, self.promoter))
        self.assertTrue(verifyObject(ITokenPromoter, self.promoter))
        self.assertTrue(verifyObject(ITokenBook, self.book))

    def test_pluginServesTokenMode(self):
        """
        mode = "token" is served by the token_promoter plugin, with
        token_ttl as the book's TTL and a random key of its own.
        """
        promoter = makePromoter(settings(token_ttl=3.5), SecretStore())
        self.assertIsInstance(promoter, TokenPromoter)
        self.assertEqual(promoter.tokenBook.ttl, 3.5)
        other = makePromoter(settings(token_ttl=3.5), SecretStore())
        token = promoter.tokenBook.mint("joe.smith", JOE).reveal()
        # Each book signs with a key of its own: the other's token is not one of its.
        self.assertIsNone(self.successResultOf(other.tokenBook.redeem("joe.smith", token)))

    def test_brokerUserIsGatewayUserWithoutMap(self):
        """
        Without [promotion.map] the broker user is the gateway user name;
        the password is a token, redacted in repr.
        """
        identity = self.promoter.credentials(JOE, [PLAIN])
        self.assertEqual(identity.username, "joe.smith")
        self.assertIsInstance(identity.password, Secret)
        self.assertNotIn(identity.password.reveal(), repr(identity))

    def test_mappedBrokerUser(self):
        """
        With [promotion.map] the broker user is the mapped name, and the
        token is bound to it.
        """
        promoter = TokenPromoter(settings(map={"joe.smith": "smithj"}), book=self.book)
        identity = promoter.credentials(JOE, [PLAIN])
        self.assertEqual(identity.username, "smithj")
        self.assertIsNotNone(self.successResultOf(self.book.redeem("smithj", identity.password.reveal())))

    def test_unmappedRefusedWhenMapPresent(self):
        """
        P4: with a map, an unmapped gateway user is refused at authorize.
        """
        promoter = TokenPromoter(settings(map={"someone.else": "other"}), book=self.book)
        error = self.assertRaises(PromotionRefused, promoter.authorize, JOE)
        self.assertIn("[promotion.map]", error.reason)
        self.assertRaises(PromotionRefused, promoter.credentials, JOE, [PLAIN])

    def test_userWithoutPermissionRefused(self):
        """
        Deny by default: a user no [[permissions]] entry names is refused
        before the broker is asked anything.
        """
        error = self.assertRaises(PromotionRefused, self.promoter.authorize, ALICE)
        self.assertIn("[[permissions]]", error.reason)
        self.assertEqual(self.promoter.authorize(READER), "rita")

    def test_pinnedVhostWithoutEntryRefused(self):
        """
        With a pinned vhost, only entries for that vhost count: Readers has
        none on "tyche", so rita is refused there.
        """
        pinned = TokenPromoter(settings(vhost="tyche"), book=self.book)
        self.assertEqual(pinned.authorize(JOE), "joe.smith")
        error = self.assertRaises(PromotionRefused, pinned.authorize, READER)
        self.assertIn("on vhost 'tyche'", error.reason)

    def test_freshTokenEachTime(self):
        """
        Every connection gets its own token.
        """
        first = self.promoter.credentials(JOE, [PLAIN]).password.reveal()
        second = self.promoter.credentials(JOE, [PLAIN]).password.reveal()
        self.assertNotEqual(first, second)
        self.assertLess(len(first), 200)

    def test_vhostPinnedOrRequested(self):
        """
        vhost: the pinned one if [promotion] vhost is set, else what the
        client asked (the broker asks /auth/vhost about it).
        """
        self.assertEqual(self.promoter.vhost(JOE, "anything"), "anything")
        pinned = TokenPromoter(settings(vhost="tyche"), book=self.book)
        self.assertEqual(pinned.vhost(JOE, "/"), "tyche")

    def test_reconfigure(self):
        """
        A reload takes a new [promotion.map]; with a map, the unmapped are
        refused from then on.
        """
        self.promoter.reconfigure(settings(map={"joe.smith": "j"}))
        self.assertEqual(self.promoter.authorize(JOE), "j")
        self.assertRaises(PromotionRefused, self.promoter.authorize, READER)


class TokenBookTests(SynchronousTestCase):
    """
    Single use, TTL, binding to the broker user, and the signature.
    """

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.book = makeBook(self.clock)
        self.events = capturedEvents(self)

    def mint(self, user="joe.smith", avatar=JOE, vhost=None):
        return self.book.mint(user, avatar, vhost).reveal()

    def test_redeemOnce(self):
        """
        The first ask of a token gets its grant (the relevant principals
        only); the second ask of the same token is refused.
        """
        token = self.mint()
        grant = self.successResultOf(self.book.redeem("joe.smith", token))
        self.assertEqual(grant, Grant({("group", "Tyche")}, None))
        self.assertIsNone(self.successResultOf(self.book.redeem("joe.smith", token)))
        self.assertIn("already used", " ".join(eventTexts(self.events)))

    def test_expiresAfterTTL(self):
        """
        A token is good until token_ttl seconds after it was minted.
        """
        late, onTime = self.mint(), self.mint()
        self.clock.advance(9.999)
        self.assertIsNotNone(self.successResultOf(self.book.redeem("joe.smith", onTime)))
        self.clock.advance(0.001)
        self.assertIsNone(self.successResultOf(self.book.redeem("joe.smith", late)))
        self.assertIn("expired", " ".join(eventTexts(self.events)))

    def test_boundToBrokerUser(self):
        """
        A token presented under another name is refused, and spent: the
        right name cannot use it afterwards.
        """
        token = self.mint()
        self.assertIsNone(self.successResultOf(self.book.redeem("guest", token)))
        self.assertIsNone(self.successResultOf(self.book.redeem("joe.smith", token)))

    def test_forgedAndTampered(self):
        """
        A token signed with another key, a token whose claims were changed,
        and random guesses are all refused.
        """
        other = makeBook(self.clock, key=b"x" * 32)
        self.assertIsNone(self.successResultOf(self.book.redeem("joe.smith", other.mint("joe.smith", JOE).reveal())))
        payload, mac = self.mint().split(".")
        tampered = ("A" if payload[0] != "A" else "B") + payload[1:] + "." + mac
        self.assertIsNone(self.successResultOf(self.book.redeem("joe.smith", tampered)))
        self.assertIsNone(self.successResultOf(self.book.redeem("joe.smith", f"{payload}!.{mac}")))
        self.assertIsNone(self.successResultOf(self.book.redeem("joe.smith", f"{payload}.{mac}==")))
        self.assertIsNotNone(self.successResultOf(self.book.redeem("joe.smith", f"{payload}.{mac}")))
        for guess in ["", "guest", "a.b", "..", "x" * (MAX_TOKEN_LENGTH + 1), os.urandom(16).hex()]:
            self.assertIsNone(self.successResultOf(self.book.redeem("joe.smith", guess)))

    def test_sharedKey(self):
        """
        Workers: a book with the same key redeems another process's tokens.
        """
        other = makeBook(self.clock)
        self.assertIsNotNone(self.successResultOf(other.redeem("joe.smith", self.mint())))

    def test_redeemedForgottenAfterExpiry(self):
        """
        Spent nonces are kept only until their token would have expired.
        """
        for _ in range(5):
            self.successResultOf(self.book.redeem("joe.smith", self.mint()))
        self.assertEqual(len(self.book._spent), 5)
        self.clock.advance(10)
        self.successResultOf(self.book.redeem("joe.smith", self.mint()))
        self.assertEqual(len(self.book._spent), 1)

    def test_tableChangedToNothing(self):
        """
        A token whose principals no entry names any more (a reload dropped
        them) is refused.
        """
        token = self.mint()
        self.book.setPermissions([READERS])
        self.assertIsNone(self.successResultOf(self.book.redeem("joe.smith", token)))

    def test_tagsAndGrantTag(self):
        """
        The user answer's tags: the matching entries' tags (lower case,
        sorted) and one grant tag that names the grant, the same for the
        same principals.
        """
        grant = self.successResultOf(self.book.redeem("rita", self.mint("rita", READER)))
        tags = self.book.tagsFor(grant)
        self.assertEqual(tags[:-1], ["management"])
        self.assertTrue(tags[-1].startswith(GRANT_TAG_PREFIX))
        self.assertEqual(tags[-1], tags[-1].lower())
        self.assertEqual(self.successResultOf(self.book.grantFor(" ".join(tags))), grant)
        self.assertEqual(grantTag(grant), grantTag(Grant({("access_profile", "Readers")})))
        self.assertNotEqual(grantTag(grant), grantTag(Grant({("access_profile", "Readers")}, "/")))

    def test_grantForUnknownOrAmbiguousTags(self):
        """
        Only a grant tag this book handed out counts, and only one.
        """
        grant = self.successResultOf(self.book.redeem("joe.smith", self.mint()))
        tag = grantTag(grant)
        self.assertIsNone(self.successResultOf(self.book.grantFor("")))
        self.assertIsNone(self.successResultOf(self.book.grantFor("administrator")))
        self.assertIsNone(self.successResultOf(self.book.grantFor(GRANT_TAG_PREFIX + "0123456789abcdef")))
        self.assertIsNone(self.successResultOf(self.book.grantFor(f"{tag} {GRANT_TAG_PREFIX}0123456789abcdef")))
        self.assertIsNone(self.successResultOf(makeBook(self.clock).grantFor(tag)))

    def test_oversizedTokenRefused(self):
        """
        A token must fit the Start-Ok frame: minting a huge one is refused.
        """
        many = [Permission(group=f"group-{i:04d}-" + "x" * 40) for i in range(40)]
        book = makeBook(self.clock, permissions=many)
        crowd = GatewayUser("crowd", groups={p.group for p in many})
        self.assertRaises(PromotionRefused, book.mint, "crowd", crowd)

    def test_noTokenInLog(self):
        """
        Refusals are logged with the broker user and a reason, never the token.
        """
        token = self.mint()
        self.successResultOf(self.book.redeem("guest", token))
        self.successResultOf(self.book.redeem("joe.smith", token))
        texts = eventTexts(self.events)
        self.assertTrue(texts)
        for text in texts:
            self.assertNotIn(token, text)
            self.assertNotIn(token.split(".")[0], text)


class PermissionTableTests(SynchronousTestCase):
    """
    RabbitMQ's semantics for the table: unanchored search, empty grants
    nothing, union of entries, topic patterns per entry.
    """

    table = PermissionTable(TABLE)
    joe = Grant({("group", "Tyche")})
    rita = Grant({("access_profile", "Readers")})

    def test_unanchoredSearch(self):
        """
        Like re:run(Name, RE, [{capture, none}]): the regex may match
        anywhere unless anchored.
        """
        self.assertTrue(searches("tyche", "x.tyche.y"))
        self.assertFalse(searches(r"^tyche\.", "x.tyche.y"))
        self.assertTrue(searches(r"^tyche\.", "tyche.y"))

    def test_emptyGrantsNothing(self):
        """
        An empty regex is ^$ (RabbitMQ's rule): no named resource matches.
        """
        self.assertFalse(searches("", "anything"))
        self.assertFalse(self.table.allowsResource(self.rita, "/", "queue", "public.q", "write"))

    def test_vhost(self):
        """
        A vhost is allowed when a matching entry is for it; a pinned grant
        allows only its vhost.
        """
        self.assertTrue(self.table.allowsVhost(self.joe, "/"))
        self.assertTrue(self.table.allowsVhost(self.joe, "tyche"))
        self.assertFalse(self.table.allowsVhost(self.joe, "other"))
        self.assertFalse(self.table.allowsVhost(self.rita, "tyche"))
        pinned = Grant(self.joe.principals, "tyche")
        self.assertFalse(self.table.allowsVhost(pinned, "/"))
        self.assertFalse(self.table.applies(Grant(self.rita.principals, "tyche")))
        self.assertEqual(self.table.tags(pinned), [])
        self.assertTrue(self.table.allowsVhost(pinned, "tyche"))
        self.assertFalse(self.table.allowsResource(pinned, "/", "queue", "tyche.q", "read"))

    def test_resource(self):
        """
        configure/write/read regexes per entry and vhost; no implicit grant
        for the default exchange or server-named queues.
        """
        allows = self.table.allowsResource
        self.assertTrue(allows(self.joe, "/", "queue", "tyche.q", "configure"))
        self.assertFalse(allows(self.joe, "/", "queue", "other.q", "configure"))
        self.assertTrue(allows(self.joe, "/", "exchange", "amq.default", "write"))
        self.assertFalse(allows(self.joe, "/", "exchange", "amq.default", "read"))
        self.assertFalse(allows(self.joe, "/", "queue", "amq.gen-abc", "configure"))
        self.assertTrue(allows(self.joe, "tyche", "queue", "anything", "configure"))
        self.assertTrue(allows(self.rita, "/", "queue", "public.q", "read"))
        self.assertFalse(allows(self.rita, "/", "queue", "tyche.q", "read"))
        self.assertFalse(allows(self.joe, "/", "queue", "tyche.q", "delete"))
        self.assertFalse(allows(self.joe, "/", "topic", "tyche.q", "read"))

    def test_union(self):
        """
        Someone in Tyche holding Readers gets both entries.
        """
        both = Grant(self.joe.principals | self.rita.principals)
        self.assertTrue(self.table.allowsResource(both, "/", "queue", "public.q", "read"))
        self.assertTrue(self.table.allowsResource(both, "/", "queue", "tyche.q", "read"))
        self.assertEqual(self.table.tags(both), ["management", "monitoring"])

    def test_topic(self):
        """
        With topic, the routing key must match it; the exchange must be one
        the same entry grants that permission on; without topic, any key.
        """
        topic = self.table.allowsTopic
        self.assertTrue(topic(self.joe, "/", "tyche.x", "write", "tyche.key"))
        self.assertFalse(topic(self.joe, "/", "tyche.x", "write", "other.key"))
        self.assertFalse(topic(self.joe, "/", "other.x", "write", "tyche.key"))
        self.assertTrue(topic(self.joe, "/", "tyche.x", "read", "tyche.key"))
        self.assertTrue(topic(self.joe, "tyche", "any.x", "write", "any.key"))
        self.assertFalse(topic(self.joe, "/", "tyche.x", "configure", "tyche.key"))

    def test_topicVariables(self):
        """
        {username} and {vhost} in a topic pattern take the broker's
        variable_map values, escaped.
        """
        table = PermissionTable([Permission(group="G", write=".*", topic=r"^user\.{username}\.")])
        grant = Grant({("group", "G")})
        variables = {"username": "a.b", "vhost": "/"}
        self.assertTrue(table.allowsTopic(grant, "/", "x", "write", "user.a.b.news", variables))
        self.assertFalse(table.allowsTopic(grant, "/", "x", "write", "user.axb.news", variables))
        self.assertFalse(table.allowsTopic(grant, "/", "x", "write", "user.c.news", variables))

    def test_denyByDefault(self):
        """
        No principals, no entries: nothing at all.
        """
        nobody = Grant(set())
        self.assertFalse(self.table.applies(nobody))
        self.assertFalse(self.table.allowsVhost(nobody, "/"))
        self.assertFalse(PermissionTable().allowsVhost(self.joe, "/"))


class RabbitRegexTests(SynchronousTestCase):
    """
    Issue 16 finding 9c: a permission regex matches what RabbitMQ's
    C{re:run(Name, Regex, [{capture, none}])} matches.  The broker runs
    PCRE on binaries without the C{unicode} option: the UTF-8 name is
    matched byte by byte, and C{\\d}, C{\\s}, C{\\w} and case-insensitive
    matching know ASCII only.  (Each expectation was checked with
    C{rabbitmqctl eval} on the broker these tests use.)
    """

    def test_nonASCIIDigitIsNoDigit(self):
        """
        C{\\d} is 0-9: an Arabic-Indic or a fullwidth digit is none.
        """
        self.assertTrue(searches(r"^q\d+$", "q42"))
        self.assertFalse(searches(r"^q\d+$", "q\u0663"))
        self.assertFalse(searches(r"^q\d+$", "q\uff14\uff12"))

    def test_nonASCIILetterIsNoWordCharacter(self):
        """
        C{\\w} is [A-Za-z0-9_]: a name with an accented or a Greek letter
        does not match C{^\\w+$}.
        """
        self.assertTrue(searches(r"^\w+$", "queue_1"))
        self.assertFalse(searches(r"^\w+$", "caf\u00e9"))
        self.assertFalse(searches(r"^\w+$", "\u03b1\u03b2"))

    def test_nonASCIISpaceIsNoSpace(self):
        self.assertTrue(searches(r"a\sb", "a b"))
        self.assertFalse(searches(r"a\sb", "a\u00a0b"))
        self.assertFalse(searches(r"a\sb", "a\u2003b"))

    def test_caseInsensitiveIsASCIIOnly(self):
        """
        C{(?i)} folds A-Z only: C{(?i)^\u00e9t\u00e9$} does not match the
        upper-case name.
        """
        self.assertTrue(searches(r"(?i)^summer$", "SUMMER"))
        self.assertFalse(searches("(?i)^\u00e9t\u00e9$", "\u00c9T\u00c9"))

    def test_dotIsOneByte(self):
        """
        C{.} is one byte of the UTF-8 name: C{\u00e9} is two.
        """
        self.assertFalse(searches(r"^q.$", "q\u00e9"))
        self.assertTrue(searches(r"^q..$", "q\u00e9"))

    def test_endAnchors(self):
        """
        C{$} matches at the end or before a final newline, in RabbitMQ as
        here; C{\\z} only at the very end.
        """
        self.assertTrue(searches(r"^abc$", "abc\n"))
        self.assertFalse(searches(r"^abc$", "abc\nx"))
        self.assertFalse(searches(r"^abc\z", "abc\n"))
        self.assertTrue(searches(r"^abc\z", "abc"))

    def test_posixClasses(self):
        """
        PCRE's C{[[:digit:]]} is a class of digits, not a set of the
        characters C{[:digt}.
        """
        self.assertTrue(searches(r"^[[:digit:]]+$", "2024"))
        self.assertFalse(searches(r"^[[:digit:]]+$", "dig"))

    def test_catastrophicBacktrackingDenied(self):
        """
        A regex that backtracks exponentially on a 255-byte name gives up
        (RabbitMQ's PCRE stops at its match limit and answers nomatch):
        the answer is deny, and the warning names the entry's regex.
        """
        events = capturedEvents(self)
        name = "a" * 254 + "!\n\x1b"
        self.assertFalse(searches(r"^(a|a)*$", name))
        table = PermissionTable([Permission(group="G", read=r"^(a|aa)+$")])
        for _ in range(3):
            self.assertFalse(table.allowsResource(Grant({("group", "G")}), "/", "queue", name, "read"))
        # Logged once per table and regex, however often a client asks.
        warnings = [formatEvent(event) for event in events if "took longer than" in formatEvent(event)]
        self.assertEqual(len(warnings), 2, warnings)
        self.assertIn("^(a|aa)+$", warnings[1])
        self.assertIn("!\\n\\x1b", warnings[1])


def ask(root, path, method=b"POST", **fields):
    """
    Ask one of the broker_auth paths the way RabbitMQ's backend does.

    @param fields: form fields; C{variable_map__username} stands for
        C{variable_map.username}.
    @return: C{(response code, body text)}.
    """
    request = DummyRequest([segment.encode() for segment in path.strip("/").split("/")])
    request.method = method
    request.args = {name.replace("__", ".").encode(): [value.encode()] for name, value in fields.items()}
    body = getChildForRequest(root, request).render(request)
    if body is NOT_DONE_YET:
        # The answers come through a Deferred (the book may ask Redis);
        # in memory they are there at once.
        assert request.finished, "no answer yet"
        body = b"".join(request.written)
    return request.responseCode or 200, body.decode("utf-8", "replace")


class EndpointTests(SynchronousTestCase):
    """
    /auth/user, /auth/vhost, /auth/resource, /auth/topic with the fields
    rabbitmq_auth_backend_http 3.10 sends.
    """

    def setUp(self):
        self.clock = Clock()
        self.book = makeBook(self.clock)
        self.root = buildBrokerAuthResource(self.book)
        self.events = capturedEvents(self)

    def login(self, user="joe.smith", avatar=JOE):
        """
        @return: the tags the user answer gave, as RabbitMQ sends them back.
        """
        code, answer = ask(self.root, "/auth/user", username=user,
                           password=self.book.mint(user, avatar).reveal())
        self.assertEqual(code, 200)
        self.assertTrue(answer.startswith("allow "), answer)
        return answer.split(" ", 1)[1]

    def test_userAllowWithTags(self):
        """
        allow, the entries' tags, and the grant tag; a second ask is denied.
        """
        token = self.book.mint("joe.smith", JOE).reveal()
        code, answer = ask(self.root, "/auth/user", username="joe.smith", password=token)
        self.assertEqual(code, 200)
        words = answer.split()
        self.assertEqual(words[:2], ["allow", "monitoring"])
        self.assertTrue(words[2].startswith(GRANT_TAG_PREFIX))
        self.assertEqual(ask(self.root, "/auth/user", username="joe.smith", password=token), (200, "deny"))

    def test_userGet(self):
        """
        GET with the fields in the query string is answered the same way.
        """
        token = self.book.mint("joe.smith", JOE).reveal()
        self.assertTrue(ask(self.root, "/auth/user", b"GET", username="joe.smith", password=token)[1]
                        .startswith("allow "))

    def test_userDenied(self):
        """
        A guessed password, a missing field, an expired token: deny.
        """
        self.assertEqual(ask(self.root, "/auth/user", username="joe.smith", password="guess")[1], "deny")
        self.assertEqual(ask(self.root, "/auth/user", username="joe.smith")[1], "deny")
        self.assertEqual(ask(self.root, "/auth/user", password="x")[1], "deny")
        token = self.book.mint("joe.smith", JOE).reveal()
        self.clock.advance(10)
        self.assertEqual(ask(self.root, "/auth/user", username="joe.smith", password=token)[1], "deny")

    def test_vhost(self):
        """
        Exactly allow or deny, from the grant named in tags.
        """
        tags = self.login()
        self.assertEqual(ask(self.root, "/auth/vhost", username="joe.smith", vhost="/", ip="127.0.0.1",
                             tags=tags), (200, "allow"))
        self.assertEqual(ask(self.root, "/auth/vhost", username="joe.smith", vhost="other", ip="127.0.0.1",
                             tags=tags), (200, "deny"))
        self.assertEqual(ask(self.root, "/auth/vhost", username="joe.smith", vhost="/", ip="127.0.0.1",
                             tags="monitoring"), (200, "deny"))
        self.assertEqual(ask(self.root, "/auth/vhost", username="joe.smith", vhost="/")[1], "deny")

    def test_resource(self):
        """
        configure/write/read on queues and exchanges, per the table.
        """
        tags = self.login()
        common = dict(username="joe.smith", vhost="/", tags=tags)
        self.assertEqual(ask(self.root, "/auth/resource", resource="queue", name="tyche.q",
                             permission="configure", **common), (200, "allow"))
        self.assertEqual(ask(self.root, "/auth/resource", resource="queue", name="other.q",
                             permission="configure", **common), (200, "deny"))
        self.assertEqual(ask(self.root, "/auth/resource", resource="exchange", name="amq.default",
                             permission="write", **common), (200, "allow"))
        self.assertEqual(ask(self.root, "/auth/resource", resource="exchange", name="amq.topic",
                             permission="write", **common), (200, "deny"))
        self.assertEqual(ask(self.root, "/auth/resource", resource="queue", name="tyche.q", **common)[1],
                         "deny")

    def test_topic(self):
        """
        Routing keys against the entry's topic pattern, with the
        variable_map fields RabbitMQ adds.
        """
        tags = self.login()
        common = dict(username="joe.smith", vhost="/", tags=tags, resource="topic", name="tyche.x",
                      variable_map__username="joe.smith", variable_map__vhost="/")
        self.assertEqual(ask(self.root, "/auth/topic", permission="write", routing_key="tyche.k", **common),
                         (200, "allow"))
        self.assertEqual(ask(self.root, "/auth/topic", permission="write", routing_key="other.k", **common),
                         (200, "deny"))
        self.assertEqual(ask(self.root, "/auth/topic", permission="read", routing_key="tyche.k",
                             **dict(common, resource="queue"))[1], "deny")
        self.assertEqual(ask(self.root, "/auth/topic", permission="write", **common)[1], "deny")

    def test_twoBrokerUsersTwoGrants(self):
        """
        Each connection is answered from its own grant, whatever the broker
        user: a Readers connection cannot use Tyche's queues.
        """
        joeTags, ritaTags = self.login(), self.login("rita", READER)
        resource = dict(vhost="/", resource="queue", name="tyche.q", permission="read")
        self.assertEqual(ask(self.root, "/auth/resource", username="rita", tags=ritaTags, **resource)[1], "deny")
        self.assertEqual(ask(self.root, "/auth/resource", username="rita", tags=joeTags, **resource)[1], "allow")

    def test_unknownPath(self):
        """
        Other paths are 404, which RabbitMQ treats as a refusal.
        """
        self.assertEqual(ask(self.root, "/auth/admin", username="x")[0], 404)
        self.assertEqual(ask(self.root, "/other")[0], 404)

    def test_noTokenInLog(self):
        """
        Nothing logged while answering holds a token.
        """
        token = self.book.mint("joe.smith", JOE).reveal()
        ask(self.root, "/auth/user", username="joe.smith", password=token)
        ask(self.root, "/auth/user", username="joe.smith", password=token)
        for text in eventTexts(self.events):
            self.assertNotIn(token, text)


class BrokerAuthServiceTests(TestCase):
    """
    buildBrokerAuthService: built only for token mode with an endpoint,
    sharing the promoter's book; no access log.
    """

    permissions = [{"group": "Tyche", "configure": "^tyche\\.", "write": "^tyche\\.", "read": "^tyche\\."}]

    def gateway(self, **top):
        listeners = [{"name": "amqp", "protocol": "amqp", "endpoint": "tcp:0:interface=127.0.0.1",
                      "auth": "required"}]
        users = os.path.abspath(self.mktemp())
        os.makedirs(users)
        path = writeUsersCnf(os.path.join(users, "users.cnf"), *standardUsers())
        document = dict({"user_auth": "internal", "internal": {"users_cnf": path},
                         "permissions": self.permissions}, **top)
        return GatewayService(gatewayConfig(self.mktemp(), listeners, **document), reactor)

    def test_builtInTokenMode(self):
        """
        Token mode: a service named broker_auth, and the promoter's book
        holds the [[permissions]] table.
        """
        gateway = self.gateway(promotion={"mode": "token"},
                               broker_auth={"endpoint": "tcp:0:interface=127.0.0.1"})
        self.assertIs(gateway.getServiceNamed("broker_auth"), gateway.brokerAuth)
        self.assertEqual(len(gateway.promoter.tokenBook.permissions), 1)

    def test_notBuiltOtherwise(self):
        """
        No endpoint, or a mode that mints no tokens: nothing listens.
        """
        events = capturedEvents(self)
        gateway = self.gateway(broker_auth={"endpoint": "tcp:0:interface=127.0.0.1"})
        self.assertIsNone(buildBrokerAuthService(gateway.config, gateway.promoter, gateway.reactor))
        self.assertIn("only [promotion] mode = \"token\"", " ".join(eventTexts(events)))
        self.assertIsNone(buildBrokerAuthService(gatewayConfig(self.mktemp()), gateway.promoter, gateway.reactor))

    def test_badEndpoint(self):
        """
        An unusable endpoint string is a one-line ConfigError.
        """
        error = self.assertRaises(ConfigError, self.gateway, promotion={"mode": "token"},
                                  broker_auth={"endpoint": "nonsense:1"})
        self.assertIn("[broker_auth] key 'endpoint'", str(error))

    @defer.inlineCallbacks
    def test_noAccessLog(self):
        """
        Over a real socket, a GET whose query holds the token leaves no
        trace of it in the log (no access log line at all).
        """
        gateway = self.gateway(promotion={"mode": "token"},
                               broker_auth={"endpoint": "tcp:0:interface=127.0.0.1"})
        events = capturedEvents(self)
        service = gateway.brokerAuth
        service.startService()
        self.addCleanup(service.stopService)
        port = yield whenListening(service)
        token = gateway.promoter.tokenBook.mint("joe.smith", JOE).reveal()
        base = f"http://127.0.0.1:{port.getHost().port}/auth/user"
        for _ in range(2):
            response = yield treq.get(base, params={"username": "joe.smith", "password": token},
                                      persistent=False)
            answer = yield response.text()
        self.assertEqual(answer, "deny")
        response = yield treq.post(base, data={"username": "joe.smith", "password": "x"}, persistent=False)
        self.assertEqual((yield response.text()), "deny")
        for text in eventTexts(events):
            self.assertNotIn(token, text)
            self.assertNotIn("/auth/user", text)
