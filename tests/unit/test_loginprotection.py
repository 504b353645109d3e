"""
X5 / issue 16: the login gate under attack, in memory and on a clock: limits
counted per host (not per connection) across listeners, attempts in flight
counted, a fair queue of password checks that drops the work of clients
that left, no lockout of a user from where they log in, tickets bound to
their listener and checked again when redeemed, and one audit event per
login decision.
"""

from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import Portal
from twisted.internet import defer, task
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from kaazing_promo.auth.authenticator import Authenticator
from kaazing_promo.auth.avatar import GatewayRealm, GatewayUser
from kaazing_promo.auth.limits import FailureWindow, KnownHosts
from kaazing_promo.auth.scheduler import ClientGone, FairScheduler, Overloaded
from kaazing_promo.auth.tickets import SessionCookies, TicketBook
from kaazing_promo.config import Listener, Promotion
from kaazing_promo.errors import LoginDenied
from kaazing_promo.interfaces import IAuthenticator, IUserStatus, LoginAttempt
from kaazing_promo.ops.audit import isAuditEvent
from kaazing_promo.promotion import ConsolidatedPromoter, MappingPromoter
from kaazing_promo.secrets import SecretStore
from tests.fakes import ControlledChecker


class FailureWindowTests(SynchronousTestCase):

    def test_X5_slidingWindowPerHost(self):
        """
        X5: failures are counted per host in a sliding minute, with the
        time until the oldest leaves the window.
        """
        clock = task.Clock()
        window = FailureWindow(clock)
        for _ in range(3):
            window.record("10.0.0.1", "joe")
            clock.advance(10)
        self.assertEqual(window.hostFailures("10.0.0.1"), (3, 30))
        self.assertEqual(window.hostFailures("10.0.0.2"), (0, 0.0))
        clock.advance(31)
        self.assertEqual(window.hostFailures("10.0.0.1"), (2, 9))

    def test_X5_userCountsDistinctHosts(self):
        """
        Per user name, what counts is how many different hosts failed on it:
        one host guessing a hundred times is one.
        """
        clock = task.Clock()
        window = FailureWindow(clock)
        for _ in range(100):
            window.record("10.0.0.1", "joe")
        self.assertEqual(window.userHosts("joe")[0], 1)
        window.record("10.0.0.2", "joe")
        window.record("10.0.0.3")
        self.assertEqual(window.userHosts("joe")[0], 2)
        clock.advance(61)
        self.assertEqual(window.userHosts("joe"), (0, 0.0))

    def test_X5_forgottenKeysSwept(self):
        """
        Failures of hosts and names nobody asks about again do not pile up.
        """
        clock = task.Clock()
        window = FailureWindow(clock)
        for n in range(3000):
            window.record(f"10.0.{n // 256}.{n % 256}", f"sprayed-{n}")
            clock.advance(0.1)
        clock.advance(61)
        for n in range(1100):
            window.record("10.1.0.1", f"later-{n}")
        self.assertLessEqual(len(window._hosts) + len(window._users), 2 * 1102)


class KnownHostsTests(SynchronousTestCase):

    def test_remembersUntilTTL(self):
        clock = task.Clock()
        known = KnownHosts(clock, ttl=100)
        known.remember("joe", "10.0.0.1")
        self.assertTrue(known.knows("joe", "10.0.0.1"))
        self.assertFalse(known.knows("joe", "10.0.0.2"))
        self.assertFalse(known.knows("alice", "10.0.0.1"))
        clock.advance(100)
        self.assertFalse(known.knows("joe", "10.0.0.1"))

    def test_bounded(self):
        known = KnownHosts(task.Clock(), size=3)
        for n in range(5):
            known.remember("joe", f"10.0.0.{n}")
        self.assertEqual(len(known._known), 3)
        self.assertFalse(known.knows("joe", "10.0.0.0"))
        self.assertTrue(known.knows("joe", "10.0.0.4"))


class FairSchedulerTests(SynchronousTestCase):

    def setUp(self):
        self.clock = task.Clock()
        self.scheduler = FairScheduler(self.clock, slots=2, maxWaiting=50)
        self.running = []

    def work(self, name):
        d = defer.Deferred()

        def start():
            self.running.append((name, d))
            return d
        return start

    def finish(self, name):
        for index, (running, d) in enumerate(self.running):
            if running == name:
                del self.running[index]
                d.callback(name)
                return
        self.fail(f"{name} is not running")

    def test_slots(self):
        """
        At most C{slots} checks run at once; the next starts as one ends.
        """
        results = [self.scheduler.submit("10.0.0.1", lambda: True, self.work(n)) for n in range(4)]
        self.assertEqual([name for name, _ in self.running], [0, 1])
        self.finish(0)
        self.assertEqual([name for name, _ in self.running], [1, 2])
        self.assertEqual(self.successResultOf(results[0]), 0)
        self.assertNoResult(results[3])

    def test_newHostGoesFirst(self):
        """
        Issue 16 #2: behind a flood from twenty hosts (each has had a check
        run already), a check from a host that has used none lately runs as
        soon as a slot is free.
        """
        scheduler = self.scheduler = FairScheduler(self.clock, slots=2, maxWaiting=1024)
        for host in range(20):
            scheduler.submit(f"10.0.1.{host}", lambda: True, self.work(f"first-{host}"))
            self.finish(f"first-{host}")
        for host in range(20):
            for n in range(10):
                scheduler.submit(f"10.0.1.{host}", lambda: True, self.work(f"attack-{host}-{n}"))
        real = self.scheduler.submit("10.0.0.99", lambda: True, self.work("real"))
        self.assertNoResult(real)
        self.finish(self.running[0][0])
        self.assertIn("real", [name for name, _ in self.running])

    def test_floodingHostWaitsBehindOthers(self):
        """
        Between waiting hosts, the one that used fewer checks lately goes first.
        """
        for n in range(6):
            self.scheduler.submit("10.0.0.1", lambda: True, self.work(f"a{n}"))
        self.scheduler.submit("10.0.0.2", lambda: True, self.work("b0"))
        self.scheduler.submit("10.0.0.2", lambda: True, self.work("b1"))
        self.finish("a0")
        self.finish("a1")
        self.assertEqual(sorted(name for name, _ in self.running), ["b0", "b1"])

    def test_workOfClientsThatLeftIsDropped(self):
        """
        Issue 16 #2: a check whose client has gone by its turn never runs.
        """
        there = {"gone": False}
        self.scheduler.submit("10.0.0.1", lambda: True, self.work("first"))
        self.scheduler.submit("10.0.0.1", lambda: True, self.work("second"))
        gone = [self.scheduler.submit("10.0.0.2", lambda: not there["gone"], self.work(f"gone{n}"))
                for n in range(5)]
        there["gone"] = True
        self.finish("first")
        self.finish("second")
        for d in gone:
            self.failureResultOf(d, ClientGone)
        self.assertEqual(self.running, [])
        self.assertEqual(self.scheduler.waiting, 0)

    def test_overloadShedsTheBiggestHost(self):
        """
        With the queue full, the newest check of the host with the most
        waiting is given up, not a newcomer's.
        """
        scheduler = FairScheduler(self.clock, slots=1, maxWaiting=5)
        scheduler.submit("10.0.0.1", lambda: True, self.work("run"))
        flood = [scheduler.submit("10.0.0.1", lambda: True, self.work(n)) for n in range(5)]
        real = scheduler.submit("10.0.0.2", lambda: True, self.work("real"))
        self.failureResultOf(flood[-1], Overloaded)
        self.assertNoResult(real)
        self.assertEqual(scheduler.waiting, 5)

    def test_19_stormOfDistinctHostsIsNotShed(self):
        """
        Issue 19 #5: past maxWaiting, a host with one check waiting keeps it:
        a storm of people logging in from distinct addresses all get their turn.
        """
        scheduler = FairScheduler(self.clock, slots=1, maxWaiting=5)
        scheduler.submit("10.0.0.1", lambda: True, self.work("run"))
        storm = [scheduler.submit(f"10.0.1.{n}", lambda: True, self.work(n)) for n in range(20)]
        for d in storm:
            self.assertNoResult(d)
        self.assertEqual(scheduler.waiting, 20)

    def test_failuresPassThrough(self):
        d = self.scheduler.submit("10.0.0.1", lambda: True, lambda: defer.fail(UnauthorizedLogin("no")))
        self.failureResultOf(d, UnauthorizedLogin)
        self.assertEqual(self.scheduler.running, 0)


WEB = Listener(name="web", protocol="websocket", endpoint="tcp:0", max_failed_logins=3)
AMQP = Listener(name="amqp", protocol="amqp", endpoint="tcp:0", max_failed_logins=3)
ADMINS = Listener(name="admins", protocol="websocket", endpoint="tcp:0", path="/admin",
                  require_groups=("Administrators",), max_failed_logins=3)
OPEN = Listener(name="open", protocol="websocket", endpoint="tcp:0", path="/open", auth="none")


class AuthenticatorTests(SynchronousTestCase):

    def setUp(self):
        self.clock = task.Clock()
        self.checker = ControlledChecker({"joe": "joe-pw", "root": "root-pw"}, {"root": {"Administrators"}})
        secrets = SecretStore(inline={"webuser": "broker-pw"})
        secrets.load()
        self.promoter = ConsolidatedPromoter(Promotion(mode="consolidated", user="webuser"), secrets)
        self.tickets = TicketBook(self.clock, b"k" * 32)
        self.authenticator = Authenticator(
            Portal(GatewayRealm(), [self.checker]), self.checker, self.promoter, self.tickets, self.clock, slots=2,
            sessions=SessionCookies(self.clock, b"s" * 32))
        self.audit = []
        observer = lambda event: self.audit.append(event) if isAuditEvent(event) else None
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)

    def attempt(self, host, username="joe", password="joe-pw", listener=AMQP, port=5000, stillThere=None):
        return LoginAttempt(listener, host, f"{host}:{port}", username, password,
                            stillThere or (lambda: True))

    def login(self, *args, **kwargs):
        return self.authenticator.authenticate(self.attempt(*args, **kwargs))

    def denial(self, d):
        return self.failureResultOf(d, LoginDenied).value

    def test_verifyObject(self):
        verifyObject(IAuthenticator, self.authenticator)
        verifyObject(IUserStatus, self.checker)

    def test_16_1_limitCountsHostsNotConnections(self):
        """
        Issue 16 #1: a new connection (port) and a new user name per guess
        is still one host; past the limit its logins are refused without
        asking the realm, on every listener of the process.
        """
        for n in range(3):
            self.assertEqual(self.denial(self.login("10.0.0.1", f"user{n}", "guess", port=6000 + n)).outcome,
                             "bad-credentials")
        checked = len(self.checker.checked)
        denial = self.denial(self.login("10.0.0.1", "joe", "joe-pw", port=7000))
        self.assertEqual(denial.outcome, "rate-limited")
        self.assertGreaterEqual(denial.retryAfter, 1)
        self.assertEqual(self.denial(self.login("10.0.0.1", listener=WEB)).outcome, "rate-limited")
        self.assertEqual(len(self.checker.checked), checked)
        self.assertEqual(self.successResultOf(self.login("10.0.0.2")).user, "joe")
        self.clock.advance(61)
        self.assertEqual(self.successResultOf(self.login("10.0.0.1")).user, "joe")

    def test_16_2_attemptsInFlightCount(self):
        """
        Issue 16 #2: attempts still being checked count against the host's
        limit, so a flood cannot queue more than the limit.
        """
        self.checker.hold = True
        waiting = [self.login("10.0.0.1", f"user{n}", "guess", port=6000 + n) for n in range(3)]
        self.assertEqual(self.denial(self.login("10.0.0.1", port=7000)).outcome, "rate-limited")
        self.assertEqual(len(self.checker.checked), 2)
        self.checker.release()
        self.checker.release()
        for d in waiting:
            self.denial(d)

    def test_16_2_goneClientsCostNothing(self):
        """
        Issue 16 #2: a check whose client hung up before its turn is never
        run, and it counts as a failed attempt of its host.
        """
        self.checker.hold = True
        there = {"yes": True}
        running = [self.login("10.0.0.5", "a", "x"), self.login("10.0.0.6", "b", "x")]
        gone = [self.login("10.0.0.1", f"user{n}", "guess", port=6000 + n, stillThere=lambda: there["yes"])
                for n in range(3)]
        there["yes"] = False
        self.checker.release()
        self.assertEqual(self.checker.checked, ["a", "b"])
        for d in running:
            self.denial(d)
        for d in gone:
            self.assertEqual(self.denial(d).outcome, "closed")
        self.assertEqual(self.authenticator.failures.hostFailures("10.0.0.1")[0], 3)

    def test_16_2_realUserFirstDuringFlood(self):
        """
        Issue 16 #2: twenty hosts each under the limit keep both slots busy;
        a real user from elsewhere is checked as soon as one frees.
        """
        for host in range(20):
            self.denial(self.login(f"10.0.1.{host}", f"user-{host}", "guess"))
        self.checker.hold = True
        flood = [self.login(f"10.0.1.{host}", f"flood-{host}-{n}", "guess", port=6000 + n)
                 for host in range(20) for n in range(2)]
        real = self.login("10.0.0.99")
        self.checker.release(1)
        self.assertEqual(self.checker.checked[-1], "joe")
        while self.checker.held:
            self.checker.release()
        self.assertEqual(self.successResultOf(real).user, "joe")
        for d in flood:
            self.denial(d)

    def test_16_3_guessingFromOneHostNeverLocksTheOwnerOut(self):
        """
        Issue 16 #3: however long one host guesses at joe's password, joe
        logs in from another.
        """
        for minute in range(3):
            for n in range(3):
                self.denial(self.login("10.0.0.1", "joe", "guess", port=6000 + n))
            self.clock.advance(61)
        for n in range(3):
            self.denial(self.login("10.0.0.1", "joe", "guess", port=6000 + n))
        self.assertEqual(self.successResultOf(self.login("10.0.0.2")).user, "joe")

    def test_16_3_manyHostsSlowGuessingButNotTheOwner(self):
        """
        Issue 16 #3: guesses at joe from as many hosts as the limit refuse
        joe from hosts he never logged in from, never from one he did.
        """
        self.successResultOf(self.login("10.0.0.50"))
        for host in range(3):
            self.denial(self.login(f"10.0.1.{host}", "joe", "guess"))
        self.assertEqual(self.denial(self.login("10.0.0.60")).outcome, "rate-limited")
        self.assertEqual(self.successResultOf(self.login("10.0.0.50")).user, "joe")
        self.assertEqual(self.successResultOf(self.login("10.0.0.61", "root", "root-pw")).user, "root")

    def test_requireGroupsAndPromotion(self):
        self.assertEqual(self.denial(self.login("10.0.0.1", listener=ADMINS)).outcome, "unauthorized")
        self.assertEqual(self.successResultOf(self.login("10.0.0.1", "root", "root-pw", listener=ADMINS)).user,
                         "root")
        secrets = SecretStore(inline={"smithj": "pw"})
        secrets.load()
        self.authenticator._promoter = MappingPromoter(Promotion(mode="mapping", map={"root": "smithj"}), secrets)
        self.assertEqual(self.denial(self.login("10.0.0.1")).outcome, "unauthorized")

    def test_noCredentials(self):
        attempt = LoginAttempt(AMQP, "10.0.0.1", "10.0.0.1:1", unusable="malformed SASL response")
        denial = self.denial(self.authenticator.authenticate(attempt))
        self.assertEqual((denial.outcome, denial.reason), ("bad-credentials", "malformed SASL response"))
        self.assertEqual(self.checker.checked, [])

    def test_anonymousListener(self):
        self.assertEqual(self.successResultOf(self.authenticator.authenticate(
            LoginAttempt(OPEN, "10.0.0.1", "10.0.0.1:1"))), self.authenticator.anonymous)

    def test_X4_oneAuditEventPerDecision(self):
        """
        X4 / issue 18 #5: each decision is one audit event: success,
        refusal, rate limit, missing credentials; a whoami-style success
        asked not to be audited is not.
        """
        self.successResultOf(self.login("10.0.0.1"))
        self.denial(self.login("10.0.0.1", "joe", "bad"))
        self.denial(self.authenticator.authenticate(LoginAttempt(AMQP, "10.0.0.1", "10.0.0.1:1")))
        self.successResultOf(self.authenticator.authenticate(self.attempt("10.0.0.1"), audit=False))
        self.assertEqual([event["outcome"] for event in self.audit], ["ok", "bad-credentials", "bad-credentials"])

    # Tickets

    def redeem(self, ticket, listener=WEB, host="10.0.0.1"):
        return self.authenticator.redeemTicket(ticket, listener, f"{host}:9999")

    def issue(self, user="joe", listener=WEB, host="10.0.0.1"):
        return self.authenticator.issueTicket(self.checker.current(GatewayUser(user)), listener, f"{host}:1")

    def test_16_4_ticketBoundToItsListener(self):
        """
        Issue 16 #4: a ticket opens only the listener that issued it: not one
        that requires a group, not one with another path.
        """
        ticket = self.issue("joe", WEB)
        self.assertEqual(self.denial(self.redeem(ticket, ADMINS)).outcome, "bad-credentials")
        other = Listener(name="web", protocol="websocket", endpoint="tcp:0", path="/other")
        self.assertEqual(self.denial(self.redeem(ticket, other)).outcome, "bad-credentials")
        self.assertEqual(self.successResultOf(self.redeem(ticket, WEB))[0].user, "joe")

    def test_16_4_anonymousTicketOpensNoLoginListener(self):
        """
        Issue 16 #4: a ticket from an C{auth = "none"} listener opens no
        listener that requires a login.
        """
        ticket = self.authenticator.issueTicket(self.authenticator.anonymous, OPEN, "10.0.0.1:1")
        self.denial(self.redeem(ticket, WEB))

    def test_16_4_ticketRecheckedAtRedemption(self):
        """
        Issue 16 #4: a user removed (or disabled) after the ticket was issued
        cannot redeem it; groups are the realm's current ones.
        """
        ticket = self.issue("root", ADMINS)
        del self.checker.passwords["root"]
        self.assertEqual(self.denial(self.redeem(ticket, ADMINS)).outcome, "unauthorized")
        self.checker.passwords["root"] = "root-pw"
        ticket = self.issue("root", ADMINS)
        self.checker.groups["root"] = set()
        self.assertEqual(self.denial(self.redeem(ticket, ADMINS)).outcome, "unauthorized")

    def test_X4_ticketDecisionsAudited(self):
        """
        Issue 18 #5: a bogus or reused ticket is an audit event, once; a
        good one is not a second login (the ticket's issue was, and the
        connection's "open" event follows).
        """
        ticket = self.issue()
        self.successResultOf(self.redeem(ticket))
        self.denial(self.redeem(ticket))
        self.denial(self.redeem("bogus"))
        self.assertEqual([event["outcome"] for event in self.audit], ["bad-credentials", "bad-credentials"])

    # The page's session cookie (issue 19 #5)

    def test_19_sessionInsteadOfPassword(self):
        """
        Issue 19 #5: a session cookie from a password login logs its person
        in again on the same listener without a password check (no hash),
        audited as a login; another listener does not take it.
        """
        cookie = self.authenticator.openSession(self.checker.current(GatewayUser("joe")), WEB)
        checked = len(self.checker.checked)
        avatar = self.successResultOf(self.authenticator.resumeSession(cookie, WEB, "10.0.0.9:1"))
        self.assertEqual(avatar.user, "joe")
        self.assertEqual(len(self.checker.checked), checked)
        self.assertEqual([event["outcome"] for event in self.audit], ["ok"])
        self.assertEqual(self.denial(self.authenticator.resumeSession(cookie, ADMINS, "10.0.0.9:1")).outcome,
                         "bad-credentials")

    def test_19_sessionExpires(self):
        cookie = self.authenticator.openSession(self.checker.current(GatewayUser("joe")), WEB)
        self.clock.advance(WEB.session_ttl)
        self.assertEqual(self.denial(self.authenticator.resumeSession(cookie, WEB, "10.0.0.9:1")).outcome,
                         "bad-credentials")

    def test_19_sessionRevoked(self):
        """
        Issue 19 #5: a changed password, or a user the realm no longer has,
        revokes the session; the listener's rules are asked again.
        """
        cookie = self.authenticator.openSession(self.checker.current(GatewayUser("joe")), WEB)
        self.checker.passwords["joe"] = "new-pw"
        self.assertEqual(self.denial(self.authenticator.resumeSession(cookie, WEB, "10.0.0.9:1")).outcome,
                         "unauthorized")
        root = self.authenticator.openSession(self.checker.current(GatewayUser("root")), ADMINS)
        self.checker.groups["root"] = set()
        self.assertEqual(self.denial(self.authenticator.resumeSession(root, ADMINS, "10.0.0.9:1")).outcome,
                         "unauthorized")
        for forged in ("", "x.y", root[:-2] + ("AA" if not root.endswith("AA") else "BB")):
            self.denial(self.authenticator.resumeSession(forged, ADMINS, "10.0.0.9:1"))

    def test_19_noSessionWhenTheListenerKeepsNone(self):
        quiet = Listener(name="quiet", protocol="websocket", endpoint="tcp:0", session_ttl=0.0)
        self.assertIsNone(self.authenticator.openSession(GatewayUser("joe"), quiet))
