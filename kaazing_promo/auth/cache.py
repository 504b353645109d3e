"""
Successful logins remembered for a while, by both realms, without keeping
a password: entries are keyed by an HMAC of the credentials under a key
that lives only in this process, so nothing in the cache can be checked
against a guess offline.
"""

import hmac
import os
from collections import OrderedDict
from hashlib import sha256


class LoginCache:
    """
    A bounded least-recently-used map of login keys whose entries expire.

    Expired entries are dropped when looked up; entries never looked up
    again leave by LRU eviction, so the map never holds more than
    C{maxSize}.

    @param maxSize: the most entries kept; C{0} keeps none.
    """

    def __init__(self, maxSize):
        self._maxSize = maxSize
        self._key = os.urandom(32)
        self._entries = OrderedDict()

    def keyFor(self, *fields):
        """
        @param fields: L{str} (UTF-8 encoded, lone surrogates kept) or
            L{bytes}: the user name, the password and whatever else makes
            two logins different.
        @return: the key of those credentials: an HMAC under this cache's
            own key; each field is length-prefixed, so that no two
            different logins share a message.
        """
        message = b"".join(
            len(field).to_bytes(4, "big") + field
            for field in (f if isinstance(f, bytes) else f.encode("utf-8", "surrogatepass") for f in fields))
        return hmac.new(self._key, message, sha256).digest()

    def __len__(self):
        return len(self._entries)

    def keys(self):
        return list(self._entries)

    def values(self):
        return [value for (deadline, value) in self._entries.values()]

    def get(self, key, now):
        """
        @return: the live value under C{key}, or L{None}.
        """
        entry = self._entries.get(key)
        if entry is None:
            return None
        deadline, value = entry
        if now >= deadline:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, key, value, deadline):
        if self._maxSize <= 0:
            return
        self._entries[key] = (deadline, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._maxSize:
            self._entries.popitem(last=False)

    def discard(self, key):
        self._entries.pop(key, None)

    def clear(self):
        self._entries.clear()
