"""
The gateway's own password hash format (U2).

webMethods Integration Server writes C{passHash} values such as
C{{PBKDF2-HmacSHA256}…} and C{{sha-256_v2}…} whose exact layouts are not
publicly documented, and no test vector with a known password exists for
them: a format counts as supported only if a test proves it, so those are
recognised by name (L{hashFormat}) and reported, never verified.  Users get
into the gateway with a hash in this module's format instead, written by
C{kaazing-promo hash-password} into users.cnf or the C{[internal] overlay}::

    {kaazing-pbkdf2-sha256}<iterations>$<salt, base64>$<derived key, base64>

PBKDF2-HMAC-SHA256 from the standard library, a 16-byte random salt, a
32-byte derived key, 600,000 iterations unless told otherwise.  Passwords
are hashed as their UTF-8 bytes, unnormalised.  A password may not contain
NUL: HMAC pads short keys with zero bytes, so "pw" and "pw\\0" would
otherwise derive the same key.
"""

import base64
import binascii
import functools
import hashlib
import hmac
import os
import re

FORMAT = "kaazing-pbkdf2-sha256"
PREFIX = "{" + FORMAT + "}"
DEFAULT_ITERATIONS = 600_000
SALT_BYTES = 16
KEY_BYTES = 32

# A hash names its own cost, so a file could otherwise ask for hours of work
# per login attempt; anything above this is treated as malformed.
MAX_ITERATIONS = 10_000_000

#: The webMethods formats known by name.  Their layouts are undocumented, so
#: they are reported at load and never verified.
WEBMETHODS_FORMATS = frozenset({"PBKDF2-HmacSHA256", "sha-256_v2"})

#: A hash at the default cost of a random password that was thrown away.
#: Checkers verify against it when there is no usable hash (unknown,
#: disabled or hash-less users) so that every failure costs the same time.
DUMMY_HASH = (
    "{kaazing-pbkdf2-sha256}600000$bKTCUIM6btfLyAUPpqYC/w==$"
    "f0zLRhpPl4VOV++K+MUFjdS11o6fBNo18aStgLl/8yc=")

# Only a short, tame name is ever reported as a format: the text between
# braces comes from the file and must not smuggle anything into a log.
_FORMAT_NAME = re.compile(r"\{([A-Za-z0-9_.+-]{1,40})\}")
_ITERATIONS = re.compile(r"[1-9][0-9]{0,9}")


def passwordBytes(password):
    """
    The bytes a password is hashed as.

    @param password: L{bytes}, taken as they are, or L{str}, taken as UTF-8;
        lone surrogates (such as undecodable bytes kept by
        C{surrogateescape}) are kept rather than refused, so that every
        string has one encoding.
    @return: L{bytes}.
    """
    if isinstance(password, str):
        try:
            return password.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:
            return password.encode("utf-8", "surrogatepass")
    return bytes(password)


def _b64(data):
    return base64.b64encode(data).decode("ascii")


def _parameters(hashString):
    """
    Split a hash in the gateway's format.

    @return: C{(iterations, salt, derivedKey)}, or L{None} when
        C{hashString} is not a well-formed hash in this format.
    """
    if not isinstance(hashString, str) or not hashString.startswith(PREFIX):
        return None
    parts = hashString[len(PREFIX):].split("$")
    if len(parts) != 3 or not _ITERATIONS.fullmatch(parts[0]):
        return None
    iterations = int(parts[0])
    if iterations > MAX_ITERATIONS:
        return None
    try:
        salt = binascii.a2b_base64(parts[1], strict_mode=True)
        derivedKey = binascii.a2b_base64(parts[2], strict_mode=True)
    except (binascii.Error, ValueError):
        return None
    if not 8 <= len(salt) <= 64 or len(derivedKey) != KEY_BYTES:
        return None
    return iterations, salt, derivedKey


def makeHash(password, iterations=DEFAULT_ITERATIONS, salt=None):
    """
    Hash C{password} in the gateway's format.

    @param password: L{str} (hashed as UTF-8) or L{bytes}.
    @param iterations: the PBKDF2 iteration count, 1 to L{MAX_ITERATIONS}.
    @param salt: L{bytes} (8 to 64 of them); a fresh random
        L{SALT_BYTES}-byte salt when L{None}.
    @return: the hash, L{str}.
    @raise ValueError: C{iterations} or C{salt} is out of range, or the
        password contains NUL.
    """
    if not 1 <= iterations <= MAX_ITERATIONS:
        raise ValueError(f"iterations must be between 1 and {MAX_ITERATIONS}")
    password = passwordBytes(password)
    if b"\0" in password:
        raise ValueError("a password may not contain NUL")
    if salt is None:
        salt = os.urandom(SALT_BYTES)
    if not 8 <= len(salt) <= 64:
        raise ValueError("salt must be 8 to 64 bytes")
    derivedKey = hashlib.pbkdf2_hmac(
        "sha256", password, salt, iterations, KEY_BYTES)
    return f"{PREFIX}{iterations}${_b64(salt)}${_b64(derivedKey)}"


def verify(hashString, password):
    """
    Check C{password} against C{hashString}, comparing in constant time.

    @param hashString: a hash in the gateway's format.
    @param password: L{str} (UTF-8) or L{bytes}.
    @return: L{True} if they match; L{False} if not, if C{hashString} is
        not a supported hash, or if the password contains NUL.
    """
    parameters = _parameters(hashString)
    if parameters is None:
        return False
    iterations, salt, derivedKey = parameters
    password = passwordBytes(password)
    # The key is derived even for a refused password: the cost stays the same.
    candidate = hashlib.pbkdf2_hmac("sha256", password, salt, iterations, len(derivedKey))
    return hmac.compare_digest(candidate, derivedKey) and b"\0" not in password


def hashFormat(hashString):
    """
    Name the format of a C{passHash} value without revealing any of it.

    @return: the name between the leading braces (e.g. C{"PBKDF2-HmacSHA256"},
        L{FORMAT}); C{"plain"} for a non-empty value with no C{{…}} prefix;
        C{"unknown"} for anything else (empty, unterminated or odd prefix).
    """
    if not hashString:
        return "unknown"
    if hashString.startswith("{"):
        match = _FORMAT_NAME.match(hashString)
        return match.group(1) if match else "unknown"
    return "plain"


def isSupported(hashString):
    """
    @return: L{True} if C{hashString} is a well-formed hash that L{verify}
        can check (the gateway's own format, within L{MAX_ITERATIONS}).
    """
    return _parameters(hashString) is not None


def iterationsOf(hashString):
    """
    @return: the iteration count of a supported hash, or L{None}.
    """
    parameters = _parameters(hashString)
    return None if parameters is None else parameters[0]


@functools.lru_cache(maxsize=8)
def dummyHashFor(iterations):
    """
    A hash nobody knows the password of, at C{iterations}: what a checker
    verifies against when a user has no usable hash, so that the failure
    costs as much as a real one at that cost.

    @return: L{DUMMY_HASH} at the default cost, otherwise a hash of a random
        password computed once per iteration count (this takes as long as
        one verification).
    """
    if iterations == DEFAULT_ITERATIONS:
        return DUMMY_HASH
    return makeHash(os.urandom(32).hex(), iterations)
