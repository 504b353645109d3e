"""
Tests for L{kaazing_promo.amqp.codec}.

The C{*_START}, C{*_TUNE}, ... constants are frames captured on the wire
(November 2025) by a recording TCP relay placed between each client and
RabbitMQ 3.10.8 (Erlang/OTP 25.2.3) at 127.0.0.1:5672, user guest:
RabbitMQ's own frames, pika 1.4.4's, txamqp 0.8.2's (AMQClient.authenticate
with AMQPLAIN and with PLAIN) and @cloudamqp/amqp-client 4.1.1's (Node 20,
with connection name "kaazing-café-✓").  The broker's frames were the
same in every session.  C{PIKA_START_OK_NON_ASCII_PASSWORD} and
C{RABBITMQ_CLOSE_ACCESS_REFUSED} are from a pika login with the wrong
password "wrong-pässword".
"""

import decimal
import struct
from io import BytesIO

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from kaazing_promo.amqp import codec
from kaazing_promo.amqp.codec import (
    ALT_PROTOCOL_HEADER, COMMAND_INVALID, FRAME_ERROR, FRAME_HEARTBEAT, MAX_NESTING,
    PROTOCOL_HEADER, SPEC, SYNTAX_ERROR, AMQPCodec, AMQPError, ByteArray, Float32, Float64,
    Int8, Int16, Int32, Int64, Method, Timestamp, UInt8, UInt16, UInt32, decodeMethod,
    decodeSASLResponse, encodeAMQPlainResponse, encodeFrame, encodeMethod, encodePlainResponse)


RABBITMQ_START = (
    b'\x01\x00\x00\x00\x00\x01\xf0\x00\n\x00\n\x00\t\x00\x00\x01\xcb\x0ccapabilitie'
    b'sF\x00\x00\x00\xc7\x12publisher_confirmst\x01\x1aexchange_exchange_bindingst'
    b'\x01\nbasic.nackt\x01\x16consumer_cancel_notifyt\x01\x12connection.blockedt'
    b'\x01\x13consumer_prioritiest\x01\x1cauthentication_failure_closet\x01\x10per_'
    b'consumer_qost\x01\x0fdirect_reply_tot\x01\x0ccluster_nameS\x00\x00\x00\trabbi'
    b't@vm\tcopyrightS\x00\x00\x007Copyright (c) 2007-2022 VMware, Inc. or its affi'
    b'liates.\x0binformationS\x00\x00\x009Licensed under the MPL 2.0. Website: http'
    b's://rabbitmq.com\x08platformS\x00\x00\x00\x11Erlang/OTP 25.2.3\x07productS'
    b'\x00\x00\x00\x08RabbitMQ\x07versionS\x00\x00\x00\x063.10.8\x00\x00\x00\x0ePLA'
    b'IN AMQPLAIN\x00\x00\x00\x05en_US\xce')

RABBITMQ_TUNE = (
    b'\x01\x00\x00\x00\x00\x00\x0c\x00\n\x00\x1e\x07\xff\x00\x02\x00\x00\x00<\xce')

RABBITMQ_OPEN_OK = (
    b'\x01\x00\x00\x00\x00\x00\x05\x00\n\x00)\x00\xce')

RABBITMQ_CLOSE_OK = (
    b'\x01\x00\x00\x00\x00\x00\x04\x00\n\x003\xce')

RABBITMQ_CLOSE_ACCESS_REFUSED = (
    b'\x01\x00\x00\x00\x00\x00w\x00\n\x002\x01\x93lACCESS_REFUSED - Login was refus'
    b'ed using authentication mechanism PLAIN. For details see the broker logfile.'
    b'\x00\x00\x00\x00\xce')

PIKA_START_OK = (
    b'\x01\x00\x00\x00\x00\x01@\x00\n\x00\x0b\x00\x00\x01\x1c\x07productS\x00\x00'
    b'\x00\x1aPika Python Client Library\x08platformS\x00\x00\x00\rPython 3.11.7'
    b'\x0ccapabilitiesF\x00\x00\x00\x8c\x1cauthentication_failure_closet\x01\nbasic'
    b'.nackt\x01\x12connection.blockedt\x01\x16consumer_cancel_notifyt\x01\x1aexcha'
    b'nge_exchange_bindingst\x01\x12publisher_confirmst\x01\x0binformationS\x00\x00'
    b'\x00\x19See https://pika.rtfd.org\x07versionS\x00\x00\x00\x051.4.4\x05PLAIN'
    b'\x00\x00\x00\x0c\x00guest\x00guest\x05en_US\xce')

PIKA_TUNE_OK = (
    b'\x01\x00\x00\x00\x00\x00\x0c\x00\n\x00\x1f\x07\xff\x00\x02\x00\x00\x00<\xce')

PIKA_OPEN = (
    b'\x01\x00\x00\x00\x00\x00\x08\x00\n\x00(\x01/\x00\x01\xce')

PIKA_CLOSE = (
    b'\x01\x00\x00\x00\x00\x00\x1a\x00\n\x002\x00\xc8\x0fNormal shutdown\x00\x00'
    b'\x00\x00\xce')

PIKA_START_OK_NON_ASCII_PASSWORD = (
    b'\x01\x00\x00\x00\x00\x01J\x00\n\x00\x0b\x00\x00\x01\x1c\x07productS\x00\x00'
    b'\x00\x1aPika Python Client Library\x08platformS\x00\x00\x00\rPython 3.11.7'
    b'\x0ccapabilitiesF\x00\x00\x00\x8c\x1cauthentication_failure_closet\x01\nbasic'
    b'.nackt\x01\x12connection.blockedt\x01\x16consumer_cancel_notifyt\x01\x1aexcha'
    b'nge_exchange_bindingst\x01\x12publisher_confirmst\x01\x0binformationS\x00\x00'
    b'\x00\x19See https://pika.rtfd.org\x07versionS\x00\x00\x00\x051.4.4\x05PLAIN'
    b'\x00\x00\x00\x16\x00guest\x00wrong-p\xc3\xa4ssword\x05en_US\xce')

TXAMQP_START_OK_AMQPLAIN = (
    b'\x01\x00\x00\x00\x00\x00>\x00\n\x00\x0b\x00\x00\x00\x00\x08AMQPLAIN\x00\x00'
    b'\x00#\x05LOGINS\x00\x00\x00\x05guest\x08PASSWORDS\x00\x00\x00\x05guest\x05en_'
    b'US\xce')

TXAMQP_START_OK_PLAIN = (
    b'\x01\x00\x00\x00\x00\x00$\x00\n\x00\x0b\x00\x00\x00\x00\x05PLAIN\x00\x00\x00'
    b'\x0c\x00guest\x00guest\x05en_US\xce')

TXAMQP_TUNE_OK = (
    b'\x01\x00\x00\x00\x00\x00\x0c\x00\n\x00\x1f\x07\xff\x00\x02\x00\x00\x00\x00'
    b'\xce')

TXAMQP_OPEN = (
    b'\x01\x00\x00\x00\x00\x00\x08\x00\n\x00(\x01/\x00\x00\xce')

TXAMQP_CLOSE = (
    b'\x01\x00\x00\x00\x00\x00\x0b\x00\n\x002\x00\x00\x00\x00\x00\x00\x00\xce')

AMQP_CLIENT_JS_START_OK = (
    b'\x01\x00\x00\x00\x00\x01\x84\x00\n\x00\x0b\x00\x00\x01e\x0fconnection_nameS'
    b'\x00\x00\x00\x11kaazing-caf\xc3\xa9-\xe2\x9c\x93\x07productS\x00\x00\x00\x0ea'
    b'mqp-client.js\x0binformationS\x00\x00\x00+https://github.com/cloudamqp/amqp-c'
    b'lient.js\x07versionS\x00\x00\x00\x054.1.1\x08platformS\x00\x00\x00\x17node v2'
    b'0.20.2 linux x64\x0ccapabilitiesF\x00\x00\x00\x9f\x1cauthentication_failure_c'
    b'loset\x01\nbasic.nackt\x01\x12connection.blockedt\x01\x16consumer_cancel_noti'
    b'fyt\x01\x1aexchange_exchange_bindingst\x01\x10per_consumer_qost\x01\x12publis'
    b'her_confirmst\x01\x05PLAIN\x00\x00\x00\x0c\x00guest\x00guest\x00\xce')

AMQP_CLIENT_JS_TUNE_OK = (
    b'\x01\x00\x00\x00\x00\x00\x0c\x00\n\x00\x1f\x07\xff\x00\x00 \x00\x00\x00\xce')

AMQP_CLIENT_JS_OPEN = (
    b'\x01\x00\x00\x00\x00\x00\x08\x00\n\x00(\x01/\x00\x00\xce')

AMQP_CLIENT_JS_CLOSE = (
    b'\x01\x00\x00\x00\x00\x00\x0b\x00\n\x002\x00\xc8\x00\x00\x00\x00\x00\xce')


# The protocol headers the clients opened with.
PIKA_PROTOCOL_HEADER = b"AMQP\x00\x00\t\x01"
AMQP_CLIENT_JS_PROTOCOL_HEADER = b"AMQP\x00\x00\t\x01"
TXAMQP_PROTOCOL_HEADER = b"AMQP\x01\x01\x00\t"

# One value of every field-table type and how it is encoded after its key.
FIELD_VALUES = [
    (True, b"t\x01"),
    (False, b"t\x00"),
    (Int8(-2), b"b\xfe"),
    (UInt8(254), b"B\xfe"),
    (Int16(-2), b"s\xff\xfe"),
    (UInt16(65534), b"u\xff\xfe"),
    (Int32(-2), b"I\xff\xff\xff\xfe"),
    (UInt32(2 ** 32 - 2), b"i\xff\xff\xff\xfe"),
    (Int64(-2), b"l\xff\xff\xff\xff\xff\xff\xff\xfe"),
    (Float32(1.5), b"f\x3f\xc0\x00\x00"),
    (Float64(1.5), b"d\x3f\xf8\x00\x00\x00\x00\x00\x00"),
    (decimal.Decimal("-1.50"), b"D\x02\xff\xff\xff\x6a"),
    ("h\xe9", b"S\x00\x00\x00\x03h\xc3\xa9"),
    (ByteArray(b"\x00\xff"), b"x\x00\x00\x00\x02\x00\xff"),
    ([Int32(1), "a"], b"A\x00\x00\x00\x0bI\x00\x00\x00\x01S\x00\x00\x00\x01a"),
    (Timestamp(1700000000), b"T\x00\x00\x00\x00\x65\x53\xf1\x00"),
    ({"k": None}, b"F\x00\x00\x00\x03\x01kV"),
    (None, b"V"),
]


def payloadOf(frame):
    """
    @return: the payload of a single encoded frame.
    """
    return frame[7:-1]


def encodeTable(table):
    stream = BytesIO()
    AMQPCodec(stream).encode_table(table)
    return stream.getvalue()


def decodeTable(data):
    reader = AMQPCodec(BytesIO(data))
    table = reader.decode_table()
    reader.finishDecoding()
    return table


def lengthPrefixed(body):
    return struct.pack("!L", len(body)) + body


def nestedTables(depth):
    """
    @return: an encoded table with C{depth} tables, the outermost included,
        each holding the next under the key C{"k"}.
    """
    body = b""
    for _ in range(depth - 1):
        body = b"\x01kF" + lengthPrefixed(body)
    return lengthPrefixed(body)


def nestedArrays(depth):
    """
    @return: an encoded table holding C{depth} arrays nested in one another,
        built without quadratic copying so that C{depth} can be large.
    """
    pieces = []
    for level in range(depth):
        # Each array below this one adds a tag and a length: 5 bytes.
        pieces.append(b"A" + struct.pack("!L", 5 * (depth - level - 1)))
    return lengthPrefixed(b"\x01k" + b"".join(pieces))


def normalized(value):
    """
    @return: what C{value} decodes to after encoding: L{bytes} that are
        UTF-8 come back as L{str}, tuples as lists.
    """
    if isinstance(value, bytes) and not isinstance(value, ByteArray):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value
    if isinstance(value, (list, tuple)):
        return [normalized(v) for v in value]
    if isinstance(value, dict):
        return {k: normalized(v) for k, v in value.items()}
    return value


def _typed(cls):
    return st.integers(cls.minimum, cls.maximum).map(cls)


_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(Int64.minimum, Int64.maximum),
    *[_typed(cls) for cls in (Int8, UInt8, Int16, UInt16, Int32, UInt32, Int64, Timestamp)],
    st.floats(allow_nan=False), st.floats(allow_nan=False).map(Float64),
    st.floats(width=32, allow_nan=False).map(Float32),
    st.builds(lambda unscaled, scale: decimal.Decimal(f"{unscaled}E-{scale}"),
              st.integers(Int32.minimum, Int32.maximum), st.integers(0, 255)),
    st.text(), st.binary(), st.binary().map(ByteArray))
_values = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12)
_tables = st.dictionaries(st.text(max_size=8), _values, max_size=6)
_settings = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class SpecTests(SynchronousTestCase):
    """
    The vendored spec has RabbitMQ's connection-class extensions.
    """

    def test_extensions(self):
        connection = SPEC.classes.byname["connection"]
        self.assertEqual(connection.id, 10)
        expected = {
            "blocked": (60, [("reason", "shortstr")]),
            "unblocked": (61, []),
            "update-secret": (70, [("new-secret", "longstr"), ("reason", "shortstr")]),
            "update-secret-ok": (71, []),
        }
        for name, (index, fields) in expected.items():
            method = connection.methods.byname[name]
            self.assertEqual((method.id, [(f.name, f.type) for f in method.fields]), (index, fields))

    def test_updateSecretRoundTrip(self):
        frame = encodeMethod(0, "connection.update-secret", new_secret=b"tok\xffen", reason="rotation")
        self.assertEqual(frame[:11], b"\x01\x00\x00\x00\x00\x00\x17\x00\x0a\x00\x46")
        method = decodeMethod(payloadOf(frame))
        self.assertEqual((method.qualifiedName, method.methodId), ("connection.update-secret", 70))
        self.assertEqual(method.args, {"new_secret": b"tok\xffen", "reason": "rotation"})

    def test_blocked(self):
        frame = encodeMethod(0, "connection.blocked", reason="low on memory")
        self.assertEqual(payloadOf(frame), b"\x00\x0a\x00\x3c\x0dlow on memory")
        self.assertEqual(decodeMethod(payloadOf(frame)).args, {"reason": "low on memory"})

    def test_protocolHeaders(self):
        """
        The headers the clients sent are the two the codec names.
        """
        self.assertEqual(PIKA_PROTOCOL_HEADER, PROTOCOL_HEADER)
        self.assertEqual(AMQP_CLIENT_JS_PROTOCOL_HEADER, PROTOCOL_HEADER)
        self.assertEqual(TXAMQP_PROTOCOL_HEADER, ALT_PROTOCOL_HEADER)


class FieldTableTests(SynchronousTestCase):
    """
    Field tables and arrays: every type, exactly.
    """

    def test_everyTagCovered(self):
        self.assertEqual({encoded[:1] for _, encoded in FIELD_VALUES},
                         {bytes([c]) for c in b"tbBsuIilfdDSxATFV"})

    def test_everyFieldType(self):
        """
        Each value encodes to the expected bytes, and those bytes decode to
        an equal value of the same type, which encodes to the same bytes.
        """
        for value, encoded in FIELD_VALUES:
            data = lengthPrefixed(b"\x01v" + encoded)
            self.assertEqual(encodeTable({"v": value}), data)
            decoded = decodeTable(data)["v"]
            self.assertEqual(decoded, value)
            self.assertIs(type(decoded), type(value))
            self.assertEqual(encodeTable({"v": decoded}), data)

    def test_decimalKeepsScale(self):
        decoded = decodeTable(encodeTable({"v": decimal.Decimal("1.500")}))["v"]
        self.assertEqual(decoded.as_tuple(), decimal.Decimal("1.500").as_tuple())
        self.assertEqual(encodeTable({"v": decimal.Decimal("1E+2")}), encodeTable({"v": decimal.Decimal(100)}))

    def test_decimalOutOfRange(self):
        for value in (decimal.Decimal("NaN"), decimal.Decimal("Infinity"),
                      decimal.Decimal(2 ** 31), decimal.Decimal("1E-256")):
            e = self.assertRaises(AMQPError, encodeTable, {"v": value})
            self.assertEqual(e.replyCode, SYNTAX_ERROR)

    def test_plainBuiltins(self):
        """
        Plain Python values take the tags a RabbitMQ client would send.
        """
        cases = [
            (5, b"I\x00\x00\x00\x05"),
            (-2 ** 31, b"I\x80\x00\x00\x00"),
            (2 ** 31, b"l\x00\x00\x00\x00\x80\x00\x00\x00"),
            (-2 ** 31 - 1, b"l\xff\xff\xff\xff\x7f\xff\xff\xff"),
            (0.5, b"d\x3f\xe0\x00\x00\x00\x00\x00\x00"),
            (b"\xff", b"S\x00\x00\x00\x01\xff"),
            (bytearray(b"ab"), b"S\x00\x00\x00\x02ab"),
            ((1,), b"A\x00\x00\x00\x05I\x00\x00\x00\x01"),
        ]
        for value, encoded in cases:
            self.assertEqual(encodeTable({"v": value}), lengthPrefixed(b"\x01v" + encoded))

    def test_integerTooBig(self):
        e = self.assertRaises(AMQPError, encodeTable, {"v": 2 ** 63})
        self.assertEqual(e.replyCode, SYNTAX_ERROR)

    def test_unsupportedTypes(self):
        self.assertRaises(TypeError, encodeTable, {"v": object()})
        self.assertRaises(TypeError, encodeTable, {1: "v"})
        self.assertRaises(TypeError, encodeTable, ["not", "a", "table"])

    def test_stringThatIsNotUTF8(self):
        """
        An C{'S'} value that is not UTF-8 decodes to L{bytes} and encodes
        back to the same bytes; one that is UTF-8 decodes to L{str}.
        """
        data = lengthPrefixed(b"\x01vS\x00\x00\x00\x02\xc3\x28\x01wS\x00\x00\x00\x02\xc3\xa9")
        table = decodeTable(data)
        self.assertEqual(table, {"v": b"\xc3\x28", "w": "\xe9"})
        self.assertEqual(encodeTable(table), data)

    def test_nested(self):
        value = {"a": [True, None, [Int8(1), {"b": {"c": [ByteArray(b"x"), "\u2713"]}}]],
                 "d": {"e": {"f": Float32(-0.0)}}, "g": [], "h": {}}
        data = encodeTable(value)
        self.assertEqual(decodeTable(data), value)
        self.assertEqual(encodeTable(decodeTable(data)), data)

    def test_keyOrderKept(self):
        data = lengthPrefixed(b"\x01zV\x01aV\x01mV")
        self.assertEqual(list(decodeTable(data)), ["z", "a", "m"])
        self.assertEqual(encodeTable(decodeTable(data)), data)

    def test_nonASCIIKey(self):
        data = encodeTable({"cl\xe9": True})
        self.assertEqual(data, lengthPrefixed(b"\x04cl\xc3\xa9t\x01"))
        self.assertEqual(decodeTable(data), {"cl\xe9": True})

    def test_floatBitsKept(self):
        """
        NaNs, signalling ones included, and negative zero come back bit for
        bit.
        """
        for encoded in (b"f\x7f\x80\x00\x01", b"f\xff\xc0\x12\x34", b"f\x80\x00\x00\x00",
                        b"d\x7f\xf0\x00\x00\x00\x00\x00\x01", b"d\x80\x00\x00\x00\x00\x00\x00\x00"):
            data = lengthPrefixed(b"\x01v" + encoded)
            self.assertEqual(encodeTable(decodeTable(data)), data)

    def test_typedValues(self):
        """
        Typed values check their range, act as their builtin, and say what
        they are.
        """
        for cls, bad in ((Int8, 128), (UInt8, -1), (Int16, 2 ** 15), (UInt16, 2 ** 16),
                         (Int32, -2 ** 31 - 1), (UInt32, 2 ** 32), (Int64, 2 ** 63), (Timestamp, -1)):
            self.assertRaises(ValueError, cls, bad)
            self.assertEqual(cls(bad - 1 if bad > 0 else bad + 1), bad - 1 if bad > 0 else bad + 1)
        self.assertRaises(ValueError, Float32, 1e39)
        self.assertIs(type(Int8(1) + 1), int)
        self.assertEqual(Int8(1), 1)
        self.assertEqual(repr(Int8(-3)), "Int8(-3)")
        self.assertEqual(repr(Float32(0.5)), "Float32(0.5)")
        self.assertEqual(repr(ByteArray(b"a")), "ByteArray(b'a')")
        self.assertEqual(Float32(0.5).raw, b"\x3f\x00\x00\x00")
        self.assertNotEqual(Float32(0.1), 0.1)

    def test_duplicateKey(self):
        e = self.assertRaises(AMQPError, decodeTable, lengthPrefixed(b"\x01kV\x01kV"))
        self.assertEqual(e.replyCode, SYNTAX_ERROR)

    def test_unknownTag(self):
        e = self.assertRaises(AMQPError, decodeTable, lengthPrefixed(b"\x01kZ"))
        self.assertEqual(e.replyCode, SYNTAX_ERROR)

    def test_booleanNeitherZeroNorOne(self):
        e = self.assertRaises(AMQPError, decodeTable, lengthPrefixed(b"\x01kt\x02"))
        self.assertEqual(e.replyCode, SYNTAX_ERROR)

    def test_keyNotUTF8(self):
        e = self.assertRaises(AMQPError, decodeTable, lengthPrefixed(b"\x01\xffV"))
        self.assertEqual(e.replyCode, SYNTAX_ERROR)

    def test_entryRunsPastTable(self):
        """
        A value longer than the table that holds it is a framing error,
        even when the bytes after the table would complete it.
        """
        data = struct.pack("!L", 4) + b"\x01kI\x00\x00\x00\x01"
        e = self.assertRaises(AMQPError, AMQPCodec(BytesIO(data)).decode_table)
        self.assertEqual(e.replyCode, FRAME_ERROR)

    def test_truncated(self):
        data = encodeTable({"a": [1, "x", {"b": decimal.Decimal("1.5")}], "c": Float32(2)})
        for end in range(len(data)):
            e = self.assertRaises(AMQPError, AMQPCodec(BytesIO(data[:end])).decode_table)
            self.assertEqual(e.replyCode, FRAME_ERROR)

    def test_nestingLimit(self):
        """
        L{MAX_NESTING} tables, the outermost included, decode; one more does
        not.  The same holds for arrays.
        """
        self.assertEqual(MAX_NESTING, 64)
        decodeTable(nestedTables(MAX_NESTING))
        decodeTable(nestedArrays(MAX_NESTING - 1))
        for data in (nestedTables(MAX_NESTING + 1), nestedArrays(MAX_NESTING)):
            e = self.assertRaises(AMQPError, decodeTable, data)
            self.assertEqual(e.replyCode, SYNTAX_ERROR)

    def test_hostileNesting(self):
        """
        Input nested far deeper than the stack could take is refused with
        an L{AMQPError}, not a L{RecursionError}.
        """
        e = self.assertRaises(AMQPError, decodeTable, nestedArrays(100000))
        self.assertEqual(e.replyCode, SYNTAX_ERROR)

    def test_encodingNestedTooDeep(self):
        value = {}
        for _ in range(MAX_NESTING - 1):
            value = {"k": value}
        self.assertEqual(encodeTable(value), nestedTables(MAX_NESTING))
        e = self.assertRaises(AMQPError, encodeTable, {"k": value})
        self.assertEqual(e.replyCode, SYNTAX_ERROR)
        loop = []
        loop.append(loop)
        e = self.assertRaises(AMQPError, encodeTable, {"k": loop})
        self.assertEqual(e.replyCode, SYNTAX_ERROR)

    @_settings
    @given(_tables)
    def test_encodeDecodeProperty(self, table):
        """
        Encoding then decoding gives an equal table, and encoding that gives
        the same bytes.
        """
        data = encodeTable(table)
        decoded = decodeTable(data)
        self.assertEqual(decoded, normalized(table))
        self.assertEqual(encodeTable(decoded), data)


class StringTests(SynchronousTestCase):
    """
    Short and long strings count bytes, not characters.
    """

    def test_nonASCIIShortstr(self):
        payload = payloadOf(encodeMethod(0, "connection.blocked", reason="caf\xe9 \u2713"))
        self.assertEqual(payload, b"\x00\x0a\x00\x3c\x09caf\xc3\xa9 \xe2\x9c\x93")
        self.assertEqual(decodeMethod(payload).args["reason"], "caf\xe9 \u2713")

    def test_shortstrLimitInBytes(self):
        """
        127 two-byte characters fit; 128 (256 bytes) do not.
        """
        frame = encodeMethod(0, "connection.open", virtual_host="\xe9" * 127)
        self.assertEqual(decodeMethod(payloadOf(frame)).args["virtual_host"], "\xe9" * 127)
        e = self.assertRaises(AMQPError, encodeMethod, 0, "connection.open", virtual_host="\xe9" * 128)
        self.assertEqual(e.replyCode, SYNTAX_ERROR)

    def test_shortstrFromBytes(self):
        self.assertEqual(encodeMethod(0, "connection.open", virtual_host=b"/v"),
                         encodeMethod(0, "connection.open", virtual_host="/v"))
        e = self.assertRaises(AMQPError, encodeMethod, 0, "connection.open", virtual_host=b"\xff")
        self.assertEqual(e.replyCode, SYNTAX_ERROR)

    def test_shortstrNotUTF8(self):
        e = self.assertRaises(AMQPError, decodeMethod, b"\x00\x0a\x00\x28\x01\xff\x00\x00")
        self.assertEqual(e.replyCode, SYNTAX_ERROR)

    def test_nonASCIILongstr(self):
        """
        A longstr's length counts UTF-8 bytes; it decodes to L{bytes}.
        """
        payload = payloadOf(encodeMethod(0, "connection.secure", challenge="\xfc\u2713"))
        self.assertEqual(payload, b"\x00\x0a\x00\x14\x00\x00\x00\x05\xc3\xbc\xe2\x9c\x93")
        self.assertEqual(decodeMethod(payload).args["challenge"], "\xfc\u2713".encode("utf-8"))

    def test_binaryLongstr(self):
        payload = payloadOf(encodeMethod(0, "connection.secure-ok", response=b"\x00\xff\xfe"))
        self.assertEqual(decodeMethod(payload).args["response"], b"\x00\xff\xfe")

    def test_longstrType(self):
        self.assertRaises(TypeError, encodeMethod, 0, "connection.secure", challenge=5)


class MethodTests(SynchronousTestCase):
    """
    L{decodeMethod}, L{encodeMethod} and L{encodeFrame}.
    """

    def test_method(self):
        method = decodeMethod(payloadOf(PIKA_TUNE_OK))
        self.assertEqual(method, Method("connection", "tune-ok", 10, 31,
                                        {"channel_max": 2047, "frame_max": 131072, "heartbeat": 60}))
        self.assertEqual(method.qualifiedName, "connection.tune-ok")
        self.assertRaises(AttributeError, setattr, method, "name", "tune")

    def test_defaults(self):
        self.assertEqual(encodeMethod(0, "connection.tune-ok"),
                         b"\x01\x00\x00\x00\x00\x00\x0c\x00\x0a\x00\x1f" + b"\x00" * 8 + b"\xce")
        self.assertEqual(decodeMethod(payloadOf(encodeMethod(3, "exchange.declare"))).args, {
            "reserved_1": 0, "exchange": "", "type": "", "passive": False, "durable": False,
            "auto_delete": False, "internal": False, "no_wait": False, "arguments": {}})

    def test_channel(self):
        self.assertEqual(encodeMethod(513, "channel.close-ok")[:3], b"\x01\x02\x01")

    def test_bitsPacked(self):
        """
        Consecutive bit fields share an octet, least significant bit first.
        """
        frame = encodeMethod(1, "queue.declare", queue="q", passive=True, exclusive=True, no_wait=True,
                             arguments={"x-max-length": 10})
        self.assertEqual(payloadOf(frame), b"\x00\x32\x00\x0a\x00\x00\x01q\x15"
                         + lengthPrefixed(b"\x0cx-max-lengthI\x00\x00\x00\x0a"))
        self.assertEqual(decodeMethod(payloadOf(frame)).args, {
            "reserved_1": 0, "queue": "q", "passive": True, "durable": False, "exclusive": True,
            "auto_delete": False, "no_wait": True, "arguments": {"x-max-length": 10}})

    def test_bitBetweenOtherFields(self):
        """
        A bit followed by other fields takes an octet of its own.
        """
        args = {"consumer_tag": "ct", "delivery_tag": 2 ** 64 - 1, "redelivered": True,
                "exchange": "ex", "routing_key": "rk"}
        frame = encodeMethod(1, "basic.deliver", **args)
        self.assertEqual(payloadOf(frame), b"\x00\x3c\x00\x3c\x02ct" + b"\xff" * 8 + b"\x01\x02ex\x02rk")
        self.assertEqual(decodeMethod(payloadOf(frame)).args, args)

    def test_keywordNamedArgument(self):
        """
        C{basic.qos}'s C{global} keeps its name.
        """
        frame = encodeMethod(1, "basic.qos", prefetch_count=10, **{"global": True})
        self.assertIs(decodeMethod(payloadOf(frame)).args["global"], True)

    def test_unknownArgument(self):
        self.assertRaises(TypeError, encodeMethod, 0, "connection.tune-ok", frame_maximum=1)

    def test_unknownMethodName(self):
        self.assertRaises(ValueError, encodeMethod, 0, "connection.teleport")

    def test_valueOutOfRange(self):
        for args in ({"channel_max": 2 ** 16}, {"frame_max": -1}):
            e = self.assertRaises(AMQPError, encodeMethod, 0, "connection.tune-ok", **args)
            self.assertEqual(e.replyCode, SYNTAX_ERROR)
        self.assertRaises(TypeError, encodeMethod, 0, "connection.tune-ok", channel_max="1")

    def test_encodeFrame(self):
        self.assertEqual(encodeFrame(FRAME_HEARTBEAT, 0, b""), b"\x08\x00\x00\x00\x00\x00\x00\xce")
        self.assertEqual(encodeFrame(3, 1, b"ab"), b"\x03\x00\x01\x00\x00\x00\x02ab\xce")
        e = self.assertRaises(AMQPError, encodeFrame, 1, 2 ** 16, b"")
        self.assertEqual(e.replyCode, SYNTAX_ERROR)

    def test_unknownMethod(self):
        """
        A class or method id the spec does not have is C{COMMAND_INVALID}.
        """
        for payload in (b"\x00\x0a\x00\x63", b"\x00\x63\x00\x0a", b"\xff\xff\xff\xff\x00"):
            e = self.assertRaises(AMQPError, decodeMethod, payload)
            self.assertEqual(e.replyCode, COMMAND_INVALID)

    def test_noMethodId(self):
        for payload in (b"", b"\x00", b"\x00\x0a\x00"):
            e = self.assertRaises(AMQPError, decodeMethod, payload)
            self.assertEqual(e.replyCode, FRAME_ERROR)

    def test_truncated(self):
        """
        Every strict prefix of a method's payload is a framing error.
        """
        payload = payloadOf(RABBITMQ_START)
        for end in range(4, len(payload)):
            e = self.assertRaises(AMQPError, decodeMethod, payload[:end])
            self.assertEqual(e.replyCode, FRAME_ERROR)

    def test_trailingBytes(self):
        e = self.assertRaises(AMQPError, decodeMethod, payloadOf(RABBITMQ_TUNE) + b"\x00")
        self.assertEqual(e.replyCode, FRAME_ERROR)

    def test_unusedBitSet(self):
        """
        Only a set bit in the unused part of a bit octet is refused.
        """
        decodeMethod(b"\x00\x0a\x00\x28\x01/\x00\x01")
        e = self.assertRaises(AMQPError, decodeMethod, b"\x00\x0a\x00\x28\x01/\x00\x02")
        self.assertEqual(e.replyCode, SYNTAX_ERROR)

    def test_tableTooDeepInMethod(self):
        payload = b"\x00\x0a\x00\x0b" + nestedTables(MAX_NESTING + 1) + b"\x05PLAIN\x00\x00\x00\x00\x00"
        e = self.assertRaises(AMQPError, decodeMethod, payload)
        self.assertEqual(e.replyCode, SYNTAX_ERROR)

    @_settings
    @given(st.binary(max_size=64))
    def test_arbitraryBytes(self, payload):
        """
        Whatever follows a valid method id, decoding raises nothing but
        L{AMQPError}, and what it accepts re-encodes to the same bytes.
        """
        for methodId in (b"\x00\x0a\x00\x0b", b"\x00\x28\x00\x0a", b"\x00\x3c\x00\x3c"):
            try:
                method = decodeMethod(methodId + payload)
            except AMQPError:
                continue
            self.assertEqual(payloadOf(encodeMethod(0, method.qualifiedName, **method.args)),
                             methodId + payload)

    @_settings
    @given(_tables, st.data())
    def test_corruptedFrames(self, table, data):
        """
        A Start-Ok with one byte changed and perhaps cut short either
        decodes and re-encodes to the same bytes or raises L{AMQPError}.
        """
        payload = bytearray(payloadOf(encodeMethod(
            0, "connection.start-ok", client_properties=table, mechanism="PLAIN",
            response=encodePlainResponse("u", "p"), locale="en_US")))
        payload[data.draw(st.integers(4, len(payload) - 1))] = data.draw(st.integers(0, 255))
        payload = bytes(payload[:data.draw(st.integers(4, len(payload)))])
        try:
            method = decodeMethod(payload)
        except AMQPError:
            return
        self.assertEqual(payloadOf(encodeMethod(0, method.qualifiedName, **method.args)), payload)


class CapturedHandshakeTests(SynchronousTestCase):
    """
    Frames captured from RabbitMQ and three clients decode, and encode back
    byte for byte.
    """

    def assertRoundTrip(self, frame, qualifiedName):
        """
        Decode C{frame}'s payload and encode its arguments again.

        @return: the decoded L{Method}.
        """
        channel = struct.unpack("!H", frame[1:3])[0]
        method = decodeMethod(payloadOf(frame))
        self.assertEqual(method.qualifiedName, qualifiedName)
        self.assertEqual(encodeMethod(channel, method.qualifiedName, **method.args), frame)
        return method

    def test_rabbitmqStart(self):
        method = self.assertRoundTrip(RABBITMQ_START, "connection.start")
        args = method.args
        self.assertEqual((args["version_major"], args["version_minor"]), (0, 9))
        self.assertEqual(args["mechanisms"], b"PLAIN AMQPLAIN")
        self.assertEqual(args["locales"], b"en_US")
        properties = args["server_properties"]
        self.assertEqual(properties["product"], "RabbitMQ")
        self.assertEqual(properties["version"], "3.10.8")
        self.assertIs(properties["capabilities"]["connection.blocked"], True)

    def test_rabbitmqTune(self):
        method = self.assertRoundTrip(RABBITMQ_TUNE, "connection.tune")
        self.assertEqual(method.args, {"channel_max": 2047, "frame_max": 131072, "heartbeat": 60})

    def test_rabbitmqOpenOk(self):
        self.assertRoundTrip(RABBITMQ_OPEN_OK, "connection.open-ok")

    def test_rabbitmqCloseOk(self):
        self.assertRoundTrip(RABBITMQ_CLOSE_OK, "connection.close-ok")

    def test_rabbitmqCloseAccessRefused(self):
        method = self.assertRoundTrip(RABBITMQ_CLOSE_ACCESS_REFUSED, "connection.close")
        self.assertEqual(method.args["reply_code"], codec.ACCESS_REFUSED)
        self.assertTrue(method.args["reply_text"].startswith("ACCESS_REFUSED - Login was refused"))

    def test_pikaStartOk(self):
        args = self.assertRoundTrip(PIKA_START_OK, "connection.start-ok").args
        self.assertEqual((args["mechanism"], args["locale"]), ("PLAIN", "en_US"))
        self.assertEqual(decodeSASLResponse(b"PLAIN", args["response"]), ("guest", "guest"))
        self.assertEqual(args["client_properties"]["product"], "Pika Python Client Library")

    def test_pikaStartOkNonASCIIPassword(self):
        args = self.assertRoundTrip(PIKA_START_OK_NON_ASCII_PASSWORD, "connection.start-ok").args
        self.assertEqual(decodeSASLResponse(args["mechanism"], args["response"]), ("guest", "wrong-p\xe4ssword"))
        self.assertEqual(args["response"], encodePlainResponse("guest", "wrong-p\xe4ssword"))

    def test_pikaTuneOk(self):
        self.assertRoundTrip(PIKA_TUNE_OK, "connection.tune-ok")

    def test_pikaOpen(self):
        args = self.assertRoundTrip(PIKA_OPEN, "connection.open").args
        self.assertEqual(args, {"virtual_host": "/", "reserved_1": "", "reserved_2": True})

    def test_pikaClose(self):
        args = self.assertRoundTrip(PIKA_CLOSE, "connection.close").args
        self.assertEqual(args, {"reply_code": 200, "reply_text": "Normal shutdown", "class_id": 0, "method_id": 0})

    def test_txamqpStartOkAMQPLAIN(self):
        args = self.assertRoundTrip(TXAMQP_START_OK_AMQPLAIN, "connection.start-ok").args
        self.assertEqual(args["mechanism"], "AMQPLAIN")
        self.assertEqual(args["client_properties"], {})
        self.assertEqual(args["response"], encodeAMQPlainResponse("guest", "guest"))
        self.assertEqual(decodeSASLResponse(b"AMQPLAIN", args["response"]), ("guest", "guest"))

    def test_txamqpStartOkPLAIN(self):
        args = self.assertRoundTrip(TXAMQP_START_OK_PLAIN, "connection.start-ok").args
        self.assertEqual(args["response"], encodePlainResponse("guest", "guest"))

    def test_txamqpTuneOk(self):
        self.assertRoundTrip(TXAMQP_TUNE_OK, "connection.tune-ok")

    def test_txamqpOpen(self):
        self.assertRoundTrip(TXAMQP_OPEN, "connection.open")

    def test_txamqpClose(self):
        self.assertRoundTrip(TXAMQP_CLOSE, "connection.close")

    def test_amqpClientJSStartOk(self):
        args = self.assertRoundTrip(AMQP_CLIENT_JS_START_OK, "connection.start-ok").args
        self.assertEqual(args["client_properties"]["connection_name"], "kaazing-caf\xe9-\u2713")
        self.assertEqual(args["locale"], "")
        self.assertEqual(decodeSASLResponse(b"PLAIN", args["response"]), ("guest", "guest"))

    def test_amqpClientJSTuneOk(self):
        args = self.assertRoundTrip(AMQP_CLIENT_JS_TUNE_OK, "connection.tune-ok").args
        self.assertEqual(args, {"channel_max": 2047, "frame_max": 8192, "heartbeat": 0})

    def test_amqpClientJSOpen(self):
        self.assertRoundTrip(AMQP_CLIENT_JS_OPEN, "connection.open")

    def test_amqpClientJSClose(self):
        self.assertRoundTrip(AMQP_CLIENT_JS_CLOSE, "connection.close")

    def test_rewrittenStartOk(self):
        """
        What the gateway does with a Start-Ok: keep the client properties,
        replace the credentials.  The properties reach the broker exactly
        as the client sent them.
        """
        original = decodeMethod(payloadOf(AMQP_CLIENT_JS_START_OK))
        frame = encodeMethod(0, "connection.start-ok", **dict(
            original.args, mechanism="AMQPLAIN", response=encodeAMQPlainResponse("broker", "s\xe9cret")))
        self.assertIn(AMQP_CLIENT_JS_START_OK[11:11 + 4 + 0x165], frame)
        rewritten = decodeMethod(payloadOf(frame))
        self.assertEqual(rewritten.args["client_properties"], original.args["client_properties"])
        self.assertEqual(decodeSASLResponse(b"AMQPLAIN", rewritten.args["response"]), ("broker", "s\xe9cret"))


class SASLTests(SynchronousTestCase):
    """
    SASL PLAIN and AMQPLAIN responses.
    """

    def test_plain(self):
        self.assertEqual(encodePlainResponse("guest", "guest"), b"\x00guest\x00guest")
        self.assertEqual(decodeSASLResponse(b"PLAIN", b"\x00guest\x00guest"), ("guest", "guest"))

    def test_plainNonASCII(self):
        response = encodePlainResponse("j\xfcrgen", "p\u2713ss")
        self.assertEqual(response, b"\x00j\xc3\xbcrgen\x00p\xe2\x9c\x93ss")
        self.assertEqual(decodeSASLResponse(b"PLAIN", response), ("j\xfcrgen", "p\u2713ss"))

    def test_plainAuthzid(self):
        """
        The authorization identity may be present; it is ignored.
        """
        self.assertEqual(decodeSASLResponse(b"PLAIN", b"admin\x00guest\x00pw"), ("guest", "pw"))

    def test_plainNUL(self):
        self.assertRaises(ValueError, encodePlainResponse, "a\x00b", "pw")
        self.assertRaises(ValueError, encodePlainResponse, "ab", "p\x00w")

    def test_plainMalformed(self):
        for response in (b"", b"guest", b"\x00guest", b"\x00guest\x00pw\x00", b"\x00\x00pw",
                         b"\x00guest\x00", b"\x00gu\xffest\x00pw", b"\x00guest\x00p\xc3"):
            e = self.assertRaises(AMQPError, decodeSASLResponse, b"PLAIN", response)
            self.assertEqual(e.replyCode, SYNTAX_ERROR)

    def test_amqplain(self):
        """
        The response is table entries without the table's length prefix,
        as RabbitMQ and txamqp frame it.
        """
        response = encodeAMQPlainResponse("guest", "guest")
        self.assertEqual(response, b"\x05LOGINS\x00\x00\x00\x05guest\x08PASSWORDS\x00\x00\x00\x05guest")
        self.assertEqual(decodeSASLResponse(b"AMQPLAIN", response), ("guest", "guest"))

    def test_amqplainNonASCII(self):
        response = encodeAMQPlainResponse("j\xfcrgen", "p\u2713ss")
        self.assertEqual(response, b"\x05LOGINS\x00\x00\x00\x07j\xc3\xbcrgen"
                                   b"\x08PASSWORDS\x00\x00\x00\x06p\xe2\x9c\x93ss")
        self.assertEqual(decodeSASLResponse("AMQPLAIN", response), ("j\xfcrgen", "p\u2713ss"))

    def test_amqplainExtraKeys(self):
        response = encodeAMQPlainResponse("u", "p") + b"\x06LOCALEV"
        self.assertEqual(decodeSASLResponse(b"AMQPLAIN", response), ("u", "p"))

    def test_amqplainMalformed(self):
        for response in (
                b"", b"\x05LOGINS\x00\x00\x00\x05guest",
                b"\x05LOGINI\x00\x00\x00\x05\x08PASSWORDS\x00\x00\x00\x00",
                b"\x05LOGINS\x00\x00\x00\x01\xff\x08PASSWORDS\x00\x00\x00\x00",
                b"\x05LOGINS\x00\x00\x00\x09guest",
                lengthPrefixed(encodeAMQPlainResponse("guest", "guest"))):
            e = self.assertRaises(AMQPError, decodeSASLResponse, b"AMQPLAIN", response)
            self.assertEqual(e.replyCode, SYNTAX_ERROR)

    def test_otherMechanism(self):
        e = self.assertRaises(AMQPError, decodeSASLResponse, b"EXTERNAL", b"")
        self.assertEqual(e.replyCode, COMMAND_INVALID)


class AMQPErrorTests(SynchronousTestCase):
    def test_attributes(self):
        e = AMQPError(SYNTAX_ERROR, "bad")
        self.assertEqual((e.replyCode, e.text, str(e)), (502, "bad", "502 bad"))
