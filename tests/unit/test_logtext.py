"""
Issue 16 finding 6 (X4): text a client chose never writes a line of the log
itself.  Control characters, newlines, ESC and other characters that do not
print reach the text log as visible backslash escapes, so one event is one
line whatever the client sent.
"""

from twisted.logger import formatEvent
from twisted.trial.unittest import SynchronousTestCase

from kaazing_promo.ops import audit
from kaazing_promo.ops.logtext import escaped
from tests.logcapture import FORGED_USER, FORGED_VHOST, assertOneSafeLine, captureEvents


class EscapedTests(SynchronousTestCase):
    """
    L{escaped}: the one escaping function for client text in a log line.
    """

    def test_printableTextUnchanged(self):
        """
        Ordinary names, non-ASCII letters included, read as they are.
        """
        for text in ("joe.smith", "Jörg Müller", "用户", "/", "vhost-a", "a b", ""):
            self.assertEqual(escaped(text), text)

    def test_controlCharactersEscaped(self):
        """
        Newline, carriage return, tab, ESC, NUL, DEL and C1 controls show as
        escapes.
        """
        self.assertEqual(escaped("a\nb\rc\td"), "a\\nb\\rc\\td")
        self.assertEqual(escaped("\x1b[31mred"), "\\x1b[31mred")
        self.assertEqual(escaped("\x00\x7f\x85\x9b"), "\\x00\\x7f\\x85\\x9b")

    def test_unicodeLineBreaksAndFormatCharactersEscaped(self):
        """
        Unicode's own line and paragraph separators and bidi overrides (which
        reorder what a reader sees) are escaped too.
        """
        self.assertEqual(escaped("a\u2028b\u2029c\u202ed"), "a\\u2028b\\u2029c\\u202ed")
        self.assertEqual(escaped("\U000e0001"), "\\U000e0001")

    def test_backslashEscaped(self):
        """
        A backslash is doubled, so that a literal C{\\n} typed by the client
        cannot pass for an escaped newline.
        """
        self.assertEqual(escaped("a\\nb"), "a\\\\nb")
        self.assertNotEqual(escaped("a\\nb"), escaped("a\nb"))

    def test_none(self):
        """
        L{None} (a field with no value) stays L{None}.
        """
        self.assertIsNone(escaped(None))

    def test_otherTypes(self):
        """
        Other values are escaped as their text.
        """
        self.assertEqual(escaped(b"a\nb"), "b'a\\\\nb'")
        self.assertEqual(escaped(ValueError("x\ny")), "x\\ny")


class AuditEscapingTests(SynchronousTestCase):
    """
    Finding 6: every client-supplied field of an audit event (source, gateway
    and broker user, vhost, reason) is escaped; the event is one line.
    """

    def setUp(self):
        self.events = captureEvents(self)

    def auditEvents(self):
        return [event for event in self.events if audit.isAuditEvent(event)]

    def test_loginForgedUser(self):
        """
        A refused login whose user name holds CR, LF, ESC and a fake
        C{login ok ... gateway_user=admin} line is one line, escapes visible.
        """
        audit.auditLogin("amqp", "10.0.0.1:1\x1b", "bad-credentials", "wrong password\nlogin ok",
                         gateway_user=FORGED_USER, vhost=FORGED_VHOST)
        [event] = self.auditEvents()
        line = assertOneSafeLine(self, event)
        self.assertIn("gateway_user=mallory\\r\\n\\x1b[31mlogin ok: listener=amqp", line)
        self.assertIn("vhost=/\\nconnection open: gateway_user=admin\\x1b[0m", line)
        self.assertIn("source=10.0.0.1:1\\x1b", line)
        self.assertIn("reason=wrong password\\nlogin ok", line)
        self.assertEqual(line.count("login ok"), 2)
        self.assertEqual(line.count("login bad-credentials:"), 1)

    def test_openAndConnection(self):
        """
        The open and connection events escape the same fields.
        """
        audit.auditOpen("web", "10.0.0.1:1", FORGED_USER, "guest\n", FORGED_VHOST, 0.5)
        audit.auditConnection("web", "10.0.0.1:1", "closed", "NOT_ALLOWED - vhost '\n\x1b' refused", FORGED_USER,
                              "guest\r", FORGED_VHOST, 1.0, 10, 20)
        opened, closed = self.auditEvents()
        for event in (opened, closed):
            line = assertOneSafeLine(self, event)
            self.assertIn("gateway_user=mallory\\r\\n\\x1b[31m", line)
            self.assertIn("vhost=/\\nconnection open", line)
        self.assertIn("broker_user=guest\\n ", formatEvent(opened))
        self.assertIn("broker_user=guest\\r ", formatEvent(closed))
        self.assertIn("reason=NOT_ALLOWED - vhost '\\n\\x1b' refused ", formatEvent(closed))

    def test_ordinaryEventUnchanged(self):
        """
        The escaping leaves an ordinary event as it was, C{None} fields included.
        """
        audit.auditLogin("amqp", "127.0.0.1:38904", "bad-credentials", "invalid user name or password",
                         gateway_user="demo")
        [event] = self.auditEvents()
        self.assertEqual(
            formatEvent(event),
            "login bad-credentials: listener=amqp source=127.0.0.1:38904 gateway_user=demo broker_user=None "
            "vhost=None reason=invalid user name or password")
        self.assertEqual(event["gateway_user"], "demo")
        self.assertIsNone(event["vhost"])
