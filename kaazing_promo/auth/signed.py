"""
Signed claims: what tickets and broker tokens are made of.

A sealed value is C{<payload>.<mac>}, both unpadded url-safe base64: the
payload is the claims as compact JSON, the MAC an HMAC-SHA256 of a context
string and the payload under a key the processes (and the gateways of a
cluster) share.  Decoding is strict — only the one canonical encoding of the
bytes is accepted — so that no two strings open to the same claims.
Single use is not this module's business: the books spend each claim's
nonce in an L{kaazing_promo.interfaces.INonceLedger}.
"""

import base64
import hashlib
import hmac
import json


def b64encode(data):
    """
    @return: C{data} as unpadded url-safe base64 (L{str}).
    """
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64decode(text):
    """
    Strict: only the one unpadded url-safe encoding of the data is accepted
    (the standard decoder skips foreign characters).

    @raise ValueError: C{text} is not that encoding.
    """
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if b64encode(data) != text:
        raise ValueError("not canonical unpadded url-safe base64")
    return data


class ClaimSeal:
    """
    Seals claims and opens what it sealed.

    @param key: the shared signing key (L{bytes}).
    @param context: what the MAC is for (L{bytes}): a ticket's MAC can never
        pass for a token's, though both use keys derived from one secret.
    @param macBytes: how much of the MAC is kept (a token must fit a Start-Ok).
    """

    def __init__(self, key, context, macBytes=32):
        self._key = key
        self._context = context
        self._macBytes = macBytes

    def _mac(self, payload):
        return hmac.new(self._key, self._context + payload, hashlib.sha256).digest()[:self._macBytes]

    def seal(self, claims):
        """
        @param claims: a JSON-able L{dict}.
        @return: the sealed text (L{str}, URL-safe).
        """
        payload = json.dumps(claims, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        return f"{b64encode(payload)}.{b64encode(self._mac(payload))}"

    def open(self, text, maxLength=4096):
        """
        @return: the claims (a L{dict}) C{text} seals, or L{None} when it is
            not something this seal sealed.
        """
        if not isinstance(text, str) or len(text) > maxLength or text.count(".") != 1:
            return None
        encodedPayload, encodedMac = text.split(".")
        try:
            payload, mac = b64decode(encodedPayload), b64decode(encodedMac)
        except (ValueError, TypeError):
            return None
        if not hmac.compare_digest(mac, self._mac(payload)):
            return None
        try:
            claims = json.loads(payload)
        except ValueError:
            return None
        return claims if isinstance(claims, dict) else None
