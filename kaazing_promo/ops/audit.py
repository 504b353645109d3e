"""
The audit trail: one structured event per login decision and per
connection, through L{twisted.logger}, in namespace C{kaazing_promo.audit}.

Events carry the fields C{listener, source, gateway_user, broker_user, vhost,
outcome, reason, duration_s, bytes_in, bytes_out} and a text form, so the
plain twistd log shows them as well as a JSON observer.  No field ever holds
a secret.  The fields a client chose (C{source}, which the PROXY protocol
supplies behind HAProxy, the user names, the vhost and the reason, which may
quote them) are escaped by L{escaped}: an event is one line of the text log,
whatever the client sent, and the JSON holds the same text.
"""

from twisted.application import service
from twisted.logger import Logger, globalLogPublisher, jsonFileLogObserver

from kaazing_promo.errors import ConfigError
from kaazing_promo.ops.logtext import escaped

AUDIT_NAMESPACE = "kaazing_promo.audit"

OUTCOMES = ("ok", "bad-credentials", "unauthorized", "realm-error", "rate-limited",
            "broker-refused", "closed")


_log = Logger(namespace=AUDIT_NAMESPACE)

LOGIN_FORMAT = (
    "login {outcome}: listener={listener} source={source} gateway_user={gateway_user} "
    "broker_user={broker_user} vhost={vhost} reason={reason}")
OPEN_FORMAT = (
    "connection open: listener={listener} source={source} gateway_user={gateway_user} "
    "broker_user={broker_user} vhost={vhost} handshake_s={handshake_s:.3f}")
CONNECTION_FORMAT = (
    "connection {outcome}: listener={listener} source={source} gateway_user={gateway_user} "
    "broker_user={broker_user} vhost={vhost} reason={reason} duration_s={duration_s:.3f} "
    "bytes_in={bytes_in} bytes_out={bytes_out}")


def _audit(template, **fields):
    """
    Emit one audit event: C{fields}, and its line as C{template} formats
    them, formatted once here by L{str.format}.

    Why: twisted.logger formats a C{log_format} for each text observer
    with its own formatter, written in Python: three fifths of an event's
    cost, and three events per connection.  The line is the same text.
    """
    _log.info("{audit_line}", audit_line=template.format(**fields), **fields)


def auditLogin(listener, source, outcome, reason="", gateway_user=None, broker_user=None, vhost=None):
    """
    Record one login decision.
    """
    _audit(LOGIN_FORMAT, event="login", listener=listener, source=escaped(source), outcome=outcome,
           reason=escaped(reason), gateway_user=escaped(gateway_user), broker_user=escaped(broker_user),
           vhost=escaped(vhost))


def auditOpen(listener, source, gateway_user, broker_user, vhost, handshake_s):
    """
    Record a connection whose handshake finished (the broker's Open-Ok passed).
    """
    _audit(OPEN_FORMAT, event="open", listener=listener, source=escaped(source),
           gateway_user=escaped(gateway_user), broker_user=escaped(broker_user), vhost=escaped(vhost),
           handshake_s=handshake_s)


def auditConnection(listener, source, outcome, reason, gateway_user, broker_user, vhost,
                    duration_s, bytes_in, bytes_out):
    """
    Record the end of one client connection.
    """
    _audit(CONNECTION_FORMAT, event="connection", listener=listener, source=escaped(source),
           outcome=outcome, reason=escaped(reason), gateway_user=escaped(gateway_user),
           broker_user=escaped(broker_user), vhost=escaped(vhost), duration_s=duration_s,
           bytes_in=bytes_in, bytes_out=bytes_out)


def isAuditEvent(event):
    """
    @return: whether the log event C{event} is an audit event.
    """
    return event.get("log_namespace") == AUDIT_NAMESPACE


class AuditJSONService(service.Service):
    """
    Writes the audit events, and only those, to a file as JSON lines
    (twistd's C{--audit-json FILE}): one L{twisted.logger.eventAsJSON}
    object per line, readable back with
    L{twisted.logger.eventsFromJSONLogFile}.

    The file is opened (appended to) when the service is made, so that a
    path that cannot be written stops start-up with one line.
    """

    def __init__(self, path, publisher=None):
        """
        @raise ConfigError: C{path} cannot be opened for appending.
        """
        self.path = path
        self._publisher = globalLogPublisher if publisher is None else publisher
        self._open()

    def _open(self):
        try:
            self._file = open(self.path, "a", encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"--audit-json {self.path}: cannot open it for appending ({e.strerror}); "
                              "create its directory or give a path the gateway's user may write")
        # An empty record separator makes it JSON lines, not RFC 7464's
        # record-separator-prefixed sequences.
        self._json = jsonFileLogObserver(self._file, recordSeparator="")

    def observe(self, event):
        if isAuditEvent(event):
            self._json(event)

    def startService(self):
        if self._file.closed:
            self._open()
        service.Service.startService(self)
        self._publisher.addObserver(self.observe)

    def stopService(self):
        self._publisher.removeObserver(self.observe)
        self._file.close()
        return service.Service.stopService(self)
