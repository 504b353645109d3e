"""
Exceptions that cross module boundaries.
"""


class ConfigError(Exception):
    """
    The configuration cannot be used.  The message is one line that names
    the file, the key and what to do; start-up prints it and exits non-zero.
    """


class PromotionRefused(Exception):
    """
    The authenticated user may not reach the broker as asked.

    @ivar replyCode: the AMQP reply code the client gets (403 ACCESS_REFUSED
        or 530 NOT_ALLOWED).
    @ivar reason: the operator-facing reason (never a secret).
    """

    def __init__(self, reason, replyCode=403):
        Exception.__init__(self, reason)
        self.reason = reason
        self.replyCode = replyCode


class LoginDenied(Exception):
    """
    A login the gateway refuses.

    @ivar outcome: the audit outcome (C{bad-credentials}, C{unauthorized},
        C{realm-error}, C{rate-limited}, C{closed}).
    @ivar reason: the operator-facing reason; clients see only a generic message.
    @ivar retryAfter: seconds a rate-limited client should wait, or L{None}.
    """

    def __init__(self, outcome, reason, retryAfter=None):
        Exception.__init__(self, outcome)
        self.outcome = outcome
        self.reason = reason
        self.retryAfter = retryAfter


class SharedStateUnavailable(Exception):
    """
    What the gateways of a cluster share in Redis could not be asked (not
    connected, no answer in time, an error reply); the message says why,
    never a secret.
    """
