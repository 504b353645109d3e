"""
Tests for L{kaazing_promo.auth.passhash}: the gateway's own hash format (U2).
"""

import base64

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from kaazing_promo.auth import passhash
from tests.authfixtures import TEST_ITERATIONS, WEBMETHODS_HASH

# RFC 6070-style PBKDF2-HMAC-SHA256 vector (RFC 7914 section 11 lists the
# same construction): the first 32 bytes of the 40-byte output for
# P = "passwordPASSWORDpassword", S = "saltSALTsaltSALTsaltSALTsaltSALTsalt",
# c = 4096 (the first PBKDF2 block is independent of the output length).
KNOWN_PASSWORD = "passwordPASSWORDpassword"
KNOWN_SALT = b"saltSALTsaltSALTsaltSALTsaltSALTsalt"
KNOWN_KEY = bytes.fromhex(
    "348c89dbcbd32b2f32d814b8116e84cf2b17347ebc1800181c4e2a1fb8dd53e1")
KNOWN_HASH = (
    "{kaazing-pbkdf2-sha256}4096$" + base64.b64encode(KNOWN_SALT).decode()
    + "$" + base64.b64encode(KNOWN_KEY).decode())


class KnownVectorTests(SynchronousTestCase):
    """
    U2: the gateway's format is supported because a test proves it against
    a known password.
    """

    def test_makeHashMatchesVector(self):
        """
        U2: L{passhash.makeHash} with the vector's salt and cost writes the
        published derived key in the documented layout.
        """
        self.assertEqual(
            passhash.makeHash(KNOWN_PASSWORD, iterations=4096, salt=KNOWN_SALT),
            KNOWN_HASH)

    def test_verifyKnownPassword(self):
        """
        U2: the vector's hash verifies its password and refuses another.
        """
        self.assertTrue(passhash.verify(KNOWN_HASH, KNOWN_PASSWORD))
        self.assertFalse(passhash.verify(KNOWN_HASH, KNOWN_PASSWORD + "x"))


class MakeHashTests(SynchronousTestCase):
    """
    U2: hashes the gateway writes.
    """

    def test_defaultLayout(self):
        """
        U2: by default a hash has the distinct prefix, 600,000 iterations, a
        16-byte salt and a 32-byte key, all in the string.
        """
        hashString = passhash.makeHash("secret")
        prefix, salt, key = hashString.split("$")
        self.assertEqual(prefix, "{kaazing-pbkdf2-sha256}600000")
        self.assertEqual(len(base64.b64decode(salt)), 16)
        self.assertEqual(len(base64.b64decode(key)), 32)
        self.assertTrue(passhash.verify(hashString, "secret"))

    def test_freshSalt(self):
        """
        U2: two hashes of one password differ (random salt) and both verify.
        """
        first = passhash.makeHash("secret", iterations=TEST_ITERATIONS)
        second = passhash.makeHash("secret", iterations=TEST_ITERATIONS)
        self.assertNotEqual(first, second)
        self.assertTrue(passhash.verify(first, "secret"))
        self.assertTrue(passhash.verify(second, "secret"))

    def test_textIsUTF8(self):
        """
        U2: a text password is hashed as its UTF-8 bytes, so either form
        verifies.
        """
        hashString = passhash.makeHash("pässwörd", iterations=TEST_ITERATIONS)
        self.assertTrue(passhash.verify(hashString, "pässwörd".encode("utf-8")))
        self.assertTrue(passhash.verify(hashString, "pässwörd"))
        self.assertFalse(passhash.verify(hashString, "pässwörd".encode("latin-1")))

    def test_undecodableBytes(self):
        """
        U2: text holding undecodable bytes (kept by C{surrogateescape})
        hashes as those bytes, and any other lone surrogate still hashes.
        """
        hashString = passhash.makeHash(b"pw\xff", iterations=TEST_ITERATIONS)
        self.assertTrue(passhash.verify(hashString, "pw\udcff"))
        hashString = passhash.makeHash("pw\ud800", iterations=TEST_ITERATIONS)
        self.assertTrue(passhash.verify(hashString, "pw\ud800"))
        self.assertFalse(passhash.verify(hashString, "pw"))

    def test_badParameters(self):
        """
        U2: an iteration count or salt out of range is refused.
        """
        self.assertRaises(ValueError, passhash.makeHash, "x", iterations=0)
        self.assertRaises(ValueError, passhash.makeHash, "x",
                          iterations=passhash.MAX_ITERATIONS + 1)
        self.assertRaises(ValueError, passhash.makeHash, "x", salt=b"short")

    @settings(max_examples=25, deadline=None)
    @given(st.text(st.characters(blacklist_characters="\0"), min_size=1),
           st.integers(1, 50))
    def test_roundTrip(self, password, iterations):
        """
        U2: any password verifies against its own hash and not against a
        different one.
        """
        hashString = passhash.makeHash(password, iterations=iterations)
        self.assertTrue(passhash.verify(hashString, password))
        self.assertFalse(passhash.verify(hashString, password + "x"))

    def test_nulRefused(self):
        """
        U2: HMAC pads a short key with zero bytes, so a trailing NUL would
        be a second password: passwords with NUL are neither hashed nor
        accepted.
        """
        hashString = passhash.makeHash("pw", iterations=TEST_ITERATIONS)
        self.assertFalse(passhash.verify(hashString, "pw\0"))
        self.assertTrue(passhash.verify(hashString, "pw"))
        self.assertRaises(ValueError, passhash.makeHash, "p\0w")


class FormatTests(SynchronousTestCase):
    """
    U2: telling formats apart, so that unsupported ones can be reported.
    """

    def test_formatNames(self):
        """
        U2: the name between the braces is the format; no prefix is
        "plain"; anything odd is "unknown".
        """
        self.assertEqual(passhash.hashFormat(KNOWN_HASH), "kaazing-pbkdf2-sha256")
        self.assertEqual(passhash.hashFormat(WEBMETHODS_HASH), "PBKDF2-HmacSHA256")
        self.assertEqual(passhash.hashFormat("{sha-256_v2}AAAA"), "sha-256_v2")
        self.assertEqual(passhash.hashFormat("cleartext"), "plain")
        self.assertEqual(passhash.hashFormat(""), "unknown")
        self.assertEqual(passhash.hashFormat("{unterminated"), "unknown")

    def test_formatNameNeverQuotesContent(self):
        """
        U2: braces around arbitrary text (say, a password typed into the
        wrong field) are not reported as a format name.
        """
        self.assertEqual(passhash.hashFormat("{my secret pass}"), "unknown")
        self.assertEqual(passhash.hashFormat("{" + "a" * 41 + "}"), "unknown")

    def test_webMethodsFormatsUnsupported(self):
        """
        U2: webMethods' undocumented layouts are recognised but never
        verified.
        """
        sha256v2 = "{sha-256_v2}" + base64.b64encode(bytes(40) + b"01000").decode()
        for hashString in (WEBMETHODS_HASH, sha256v2):
            self.assertIn(passhash.hashFormat(hashString), passhash.WEBMETHODS_FORMATS)
            self.assertFalse(passhash.isSupported(hashString))
            self.assertFalse(passhash.verify(hashString, ""))

    def test_malformedOwnFormat(self):
        """
        U2: a damaged hash in the gateway's format is unsupported and
        verifies nothing.
        """
        prefix, salt, key = KNOWN_HASH.split("$")
        for damaged in (
                f"{prefix}${salt}",                      # a part missing
                f"{prefix}${salt}${key}$",               # a part too many
                f"{passhash.PREFIX}0${salt}${key}",       # no iterations
                f"{passhash.PREFIX}04096${salt}${key}",   # not canonical
                f"{passhash.PREFIX}{passhash.MAX_ITERATIONS + 1}${salt}${key}",
                f"{prefix}${salt}${key[:-4]}",           # short key
                f"{prefix}$!!!!${key}",                  # not base64
                f"{prefix}${salt}${key} ",               # trailing junk
        ):
            self.assertFalse(passhash.isSupported(damaged), damaged)
            self.assertFalse(passhash.verify(damaged, KNOWN_PASSWORD), damaged)
        self.assertTrue(passhash.isSupported(KNOWN_HASH))
        self.assertEqual(passhash.iterationsOf(KNOWN_HASH), 4096)
        self.assertIsNone(passhash.iterationsOf(WEBMETHODS_HASH))


class DummyHashTests(SynchronousTestCase):
    """
    U2: the hash failures verify against, so that they cost the same time.
    """

    def test_dummyAtDefaultCost(self):
        """
        U2: L{passhash.DUMMY_HASH} is a supported hash at the default cost.
        """
        self.assertTrue(passhash.isSupported(passhash.DUMMY_HASH))
        self.assertEqual(passhash.iterationsOf(passhash.DUMMY_HASH),
                         passhash.DEFAULT_ITERATIONS)
        self.assertIs(passhash.dummyHashFor(passhash.DEFAULT_ITERATIONS),
                      passhash.DUMMY_HASH)

    def test_dummyAtOtherCost(self):
        """
        U2: a dummy for another cost has that cost, and is made once.
        """
        dummy = passhash.dummyHashFor(TEST_ITERATIONS)
        self.assertEqual(passhash.iterationsOf(dummy), TEST_ITERATIONS)
        self.assertIs(passhash.dummyHashFor(TEST_ITERATIONS), dummy)
        self.assertFalse(passhash.verify(dummy, ""))
