"""
Client text in the log: one function that makes any value safe to put in a
log line.

A user name, a requested vhost or a PROXY-protocol address is text the
client chose.  Written raw, a newline in it starts a line the gateway did not
write (a fake C{login ok ... gateway_user=admin}), and ESC sequences rewrite
what a terminal shows.  Every such value goes through L{escaped} before it
reaches a log event, so that one event is always one line.
"""

_NAMED = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escaped(value):
    """
    C{value} as printable text on one line, the way C{repr} shows a string
    but without its quotes: a backslash is doubled, newline, carriage return
    and tab are C{\\n}, C{\\r} and C{\\t}, and every other character that
    Python does not count as printable (C0 and C1 controls, ESC, DEL, the
    Unicode line and paragraph separators, format characters such as bidi
    overrides) is C{\\xhh}, C{\\uhhhh} or C{\\Uhhhhhhhh}.  Printable
    non-ASCII letters stay as they are.

    @param value: the text; any other object is escaped as its C{str}.
    @return: the escaped text, or L{None} for L{None} (a field with no value).
    """
    if value is None:
        return None
    if not isinstance(value, str):
        value = str(value)
    if value.isprintable() and "\\" not in value:
        return value
    return "".join(_escapedCharacter(character) for character in value)


def _escapedCharacter(character):
    named = _NAMED.get(character)
    if named is not None:
        return named
    if character.isprintable():
        return character
    code = ord(character)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"
