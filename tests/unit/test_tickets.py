"""
Browser tickets: signed, single use, bound to the source, short-lived,
redeemable by any worker sharing the key.
"""

from twisted.internet import task
from twisted.trial.unittest import SynchronousTestCase

from kaazing_promo.auth.avatar import GatewayUser
from kaazing_promo.auth.tickets import TicketBook
from kaazing_promo.config import Listener

JOE = GatewayUser("joe.smith", {"Tyche"}, {"gold"}, None, "internal")
WEB = Listener(name="web", protocol="websocket", endpoint="tcp:0")


class TicketBookTests(SynchronousTestCase):

    def setUp(self):
        self.clock = task.Clock()
        self.book = TicketBook(self.clock, b"k" * 32)

    def test_singleUse(self):
        ticket = self.book.issue(JOE, WEB, "10.0.0.1")
        self.assertEqual(self.successResultOf(self.book.redeem(ticket, WEB, "10.0.0.1")), (JOE, None))
        self.assertIsNone(self.successResultOf(self.book.redeem(ticket, WEB, "10.0.0.1")))

    def test_16_4_boundToListener(self):
        """
        Issue 16 #4: a ticket opens only the listener (name and path) that issued it.
        """
        ticket = self.book.issue(JOE, WEB, "10.0.0.1")
        for other in (Listener(name="admin", protocol="websocket", endpoint="tcp:0"),
                      Listener(name="web", protocol="websocket", endpoint="tcp:0", path="/admin")):
            self.assertIsNone(self.successResultOf(self.book.redeem(ticket, other, "10.0.0.1")))
        self.assertEqual(self.successResultOf(self.book.redeem(ticket, WEB, "10.0.0.1")), (JOE, None))

    def test_boundToSourceHost(self):
        ticket = self.book.issue(JOE, WEB, "10.0.0.1")
        self.assertIsNone(self.successResultOf(self.book.redeem(ticket, WEB, "10.0.0.2")))

    def test_expires(self):
        ticket = self.book.issue(JOE, WEB, "10.0.0.1")
        self.clock.advance(self.book.ttl)
        self.assertIsNone(self.successResultOf(self.book.redeem(ticket, WEB, "10.0.0.1")))

    def test_forged(self):
        """
        A ticket signed with another key, or altered, is refused.
        """
        other = TicketBook(self.clock, b"x" * 32).issue(JOE, WEB, "10.0.0.1")
        self.assertIsNone(self.successResultOf(self.book.redeem(other, WEB, "10.0.0.1")))
        ticket = self.book.issue(JOE, WEB, "10.0.0.1")
        body, signature = ticket.split(".")
        tampered = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1] + "." + signature
        self.assertIsNone(self.successResultOf(self.book.redeem(tampered, WEB, "10.0.0.1")))
        for garbage in ("", ".", "a.b.c", "!!!.???", "e30." + "A" * 43):
            self.assertIsNone(self.successResultOf(self.book.redeem(garbage, WEB, "10.0.0.1")))

    def test_anotherWorkerRedeems(self):
        """
        A worker sharing the key redeems the ticket (without the issuer's
        revalidation credentials, which never leave it).
        """
        ticket = self.book.issue(JOE, WEB, "10.0.0.1", credentials=("joe.smith", "pw"))
        self.assertNotIn("pw", ticket)
        worker = TicketBook(self.clock, b"k" * 32)
        self.assertEqual(self.successResultOf(worker.redeem(ticket, WEB, "10.0.0.1")), (JOE, None))

    def test_issuerKeepsCredentials(self):
        ticket = self.book.issue(JOE, WEB, "10.0.0.1", credentials=("joe.smith", "pw"))
        self.assertEqual(self.successResultOf(self.book.redeem(ticket, WEB, "10.0.0.1")),
                         (JOE, ("joe.smith", "pw")))

    def test_forgetsRedeemedOnceExpired(self):
        for _ in range(3):
            self.successResultOf(self.book.redeem(self.book.issue(JOE, WEB, "10.0.0.1"), WEB, "10.0.0.1"))
        self.assertEqual(len(self.book._spent), 3)
        self.clock.advance(self.book.ttl + 1)
        # The ledger forgets what has expired when it next spends one.
        self.successResultOf(self.book.redeem(self.book.issue(JOE, WEB, "10.0.0.1"), WEB, "10.0.0.1"))
        self.assertEqual(len(self.book._spent), 1)
