"""
Secrets: values that must never appear in logs, exceptions or repr()s.
"""

import attr


@attr.s(frozen=True, repr=False, eq=True, hash=True)
class Secret:
    """
    A secret string.  Its C{repr} and C{str} are C{<redacted>}; the value is
    reached only through L{Secret.reveal}.
    """

    _value = attr.ib(converter=str)

    def reveal(self):
        """
        @return: the secret value (L{str}); pass it on, never log it.
        """
        return self._value

    def __repr__(self):
        return "<redacted>"

    __str__ = __repr__
