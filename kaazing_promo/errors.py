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
