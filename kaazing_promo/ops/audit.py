"""
The audit trail: one structured event per login decision and per
connection, through L{twisted.logger}, in namespace C{kaazing_promo.audit}.

Events carry the fields C{listener, source, gateway_user, broker_user, vhost,
outcome, reason, duration_s, bytes_in, bytes_out} and a text form, so the
plain twistd log shows them as well as a JSON observer.  No field ever holds
a secret.
"""

from twisted.logger import Logger

OUTCOMES = ("ok", "bad-credentials", "unauthorized", "realm-error", "rate-limited",
            "broker-refused", "closed")

_log = Logger(namespace="kaazing_promo.audit")

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


def auditLogin(listener, source, outcome, reason="", gateway_user=None, broker_user=None, vhost=None):
    """
    Record one login decision.
    """
    _log.info(LOGIN_FORMAT, event="login", listener=listener, source=source, outcome=outcome,
              reason=reason, gateway_user=gateway_user, broker_user=broker_user, vhost=vhost)


def auditOpen(listener, source, gateway_user, broker_user, vhost, handshake_s):
    """
    Record a connection whose handshake finished (the broker's Open-Ok passed).
    """
    _log.info(OPEN_FORMAT, event="open", listener=listener, source=source, gateway_user=gateway_user,
              broker_user=broker_user, vhost=vhost, handshake_s=handshake_s)


def auditConnection(listener, source, outcome, reason, gateway_user, broker_user, vhost,
                    duration_s, bytes_in, bytes_out):
    """
    Record the end of one client connection.
    """
    _log.info(CONNECTION_FORMAT, event="connection", listener=listener, source=source,
              outcome=outcome, reason=reason, gateway_user=gateway_user, broker_user=broker_user,
              vhost=vhost, duration_s=duration_s, bytes_in=bytes_in, bytes_out=bytes_out)
