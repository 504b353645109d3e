"""
Encoding and decoding of AMQP 0-9-1 methods, field tables and SASL responses.

The gateway decodes handshake methods, may change a few arguments, and
encodes them again for the other side.  What it does not change must reach
the other side exactly as sent, so the codec keeps this promise: decoding
any input it accepts and encoding the result reproduces the input byte for
byte, type tags included; and encoding a value and decoding the bytes gives
an equal value.

Values
======
Method arguments decode as follows (keys of L{Method.args} are the spec's
field names with C{-} replaced by C{_}; C{basic.qos}'s C{global} stays
C{global}):

  - C{bit}: L{bool}; C{octet}, C{short}, C{long}, C{longlong},
    C{timestamp}: L{int}.
  - C{shortstr}: L{str} (it must be UTF-8 on the wire).
  - C{longstr}: L{bytes}, because a longstr may be binary (SASL responses,
    C{update-secret}'s secret).  The encoder takes L{bytes} or L{str}
    (encoded as UTF-8).
  - C{table}: L{dict}, as below.

Field-table values (RabbitMQ's set of type tags) decode to:

  - C{'t'} L{bool}; C{'V'} L{None}; C{'F'} L{dict}; C{'A'} L{list};
    C{'D'} L{decimal.Decimal}, whose exponent remembers the scale
    (C{Decimal("1.50")} is scale 2, unscaled value 150, a signed 32-bit
    integer as the Java, .NET and pika clients read it).
  - C{'S'} L{str} when the bytes are valid UTF-8, otherwise L{bytes}.
  - Every integer and floating-point tag, C{'T'} and C{'x'}: a subclass of
    L{int}, L{float} or L{bytes} that remembers its tag, so it compares,
    hashes and computes like the builtin but encodes back under the same
    tag: L{Int8} C{'b'}, L{UInt8} C{'B'}, L{Int16} C{'s'}, L{UInt16}
    C{'u'}, L{Int32} C{'I'}, L{UInt32} C{'i'}, L{Int64} C{'l'},
    L{Timestamp} C{'T'} (unsigned seconds since the epoch), L{Float32}
    C{'f'}, L{Float64} C{'d'} and L{ByteArray} C{'x'}.  Arithmetic on them
    gives plain builtins; constructing one checks its range (L{ValueError}).

The encoder also takes plain builtins and picks the tag a RabbitMQ client
would: L{int} is C{'I'} when it fits in 32 signed bits and C{'l'} otherwise;
L{float} is C{'d'}; L{str} B{and L{bytes}} are C{'S'} (clients send strings
as C{'S'}, and a C{'S'} that is not UTF-8 decodes to L{bytes}, so this is
what keeps it byte-exact); a L{tuple} is C{'A'} like a L{list}.  Only a
L{ByteArray} is sent as C{'x'}.  So the values that come back from encoding
builtins are equal to them, except that L{bytes} which are UTF-8 come back
as the L{str} they spell and a L{tuple} comes back as a L{list}.

Errors
======
Bytes that cannot be decoded raise L{AMQPError}, never another exception:

  - C{FRAME_ERROR} (501): the bytes do not frame the arguments -- input
    truncated, a length running past the end of its table, array or
    payload, or bytes left over after the last argument.  (RabbitMQ also
    answers a method it "cannot decode" with C{frame_error}.)
  - C{SYNTAX_ERROR} (502): the arguments are framed but their content is
    not acceptable -- a shortstr (field names included) that is not UTF-8,
    an unknown field-value tag, tables and arrays nested more than
    L{MAX_NESTING} deep, a duplicate key in one table, a C{'t'} octet
    other than 0 or 1, or a set bit in the unused part of a packed bit
    octet.  The last three are rejected only so that decoding stays
    lossless; no conforming peer sends them.
  - C{COMMAND_INVALID} (503): the class-id or method-id names no method
    in L{SPEC}.

Values the encoder cannot represent on the wire (a shortstr over 255
bytes, an integer out of its field's range, tables nested too deep, a
non-finite L{decimal.Decimal}) raise L{AMQPError} with C{SYNTAX_ERROR}, so
that a session relaying a peer's values can treat them like decoding
errors.  Values of the wrong Python type raise L{TypeError}.
"""

import decimal
import os
import struct
from collections.abc import Mapping
from io import BytesIO

import attr
import txamqp.codec
import txamqp.spec

SPEC = txamqp.spec.load(os.path.join(os.path.dirname(os.path.abspath(__file__)), "specs", "amqp0-9-1.xml"))

# Reply codes (AMQP 0-9-1 constants).
CONNECTION_FORCED = 320
INVALID_PATH = 402
ACCESS_REFUSED = 403
NOT_FOUND = 404
FRAME_ERROR = 501
SYNTAX_ERROR = 502
COMMAND_INVALID = 503
CHANNEL_ERROR = 504
UNEXPECTED_FRAME = 505
RESOURCE_ERROR = 506
NOT_ALLOWED = 530
NOT_IMPLEMENTED = 540
INTERNAL_ERROR = 541

# Frame types.
FRAME_METHOD = 1
FRAME_HEADER = 2
FRAME_BODY = 3
FRAME_HEARTBEAT = 8

FRAME_END = 0xCE
FRAME_MIN_SIZE = 4096
PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
# The older header layout (class 1, instance 1, version 0-9) that txamqp still
# sends; RabbitMQ accepts it and answers with 0-9-1.
ALT_PROTOCOL_HEADER = b"AMQP\x01\x01\x00\x09"

MAX_NESTING = 64
"""
How many tables and arrays, the outermost one included, may enclose a field
value.  Decoding is recursive, and this bounds the recursion hostile input
can cause.
"""

_FRAME_HEADER = struct.Struct("!BHL")
_METHOD_ID = struct.Struct("!HH")


class AMQPError(Exception):
    """
    A protocol error, to be answered with C{connection.close}.

    @ivar replyCode: the AMQP reply code (L{int}), e.g. L{SYNTAX_ERROR}.
    @ivar text: what was wrong (L{str}); it may name a type tag or a number but
        never repeats a string the peer sent.
    """

    def __init__(self, replyCode, text):
        Exception.__init__(self, replyCode, text)
        self.replyCode = replyCode
        self.text = text

    def __str__(self):
        return f"{self.replyCode} {self.text}"


class _TypedInt(int):
    """
    An integer field-table value that remembers its type tag.

    @cvar tag: the type tag (one byte).
    @cvar format: the L{struct} format of the value on the wire.
    """

    __slots__ = ()
    tag = b""
    format = ""
    minimum = maximum = 0

    def __new__(cls, value=0):
        self = int.__new__(cls, value)
        if not cls.minimum <= self <= cls.maximum:
            raise ValueError(f"{int(self)} is out of range for {cls.__name__}")
        return self

    def __repr__(self):
        return f"{type(self).__name__}({int(self)})"


def _intType(name, tag, format, doc):
    """
    Make a L{_TypedInt} subclass whose range is that of C{format}.
    """
    bits = struct.calcsize(format) * 8
    signed = format[-1].islower()
    minimum, maximum = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    return type(name, (_TypedInt,), {
        "__doc__": doc, "__module__": __name__, "__slots__": (),
        "tag": tag, "format": "!" + format, "minimum": minimum, "maximum": maximum})


Int8 = _intType("Int8", b"b", "b", "A signed 8-bit field-table integer (tag C{'b'}).")
UInt8 = _intType("UInt8", b"B", "B", "An unsigned 8-bit field-table integer (tag C{'B'}).")
Int16 = _intType("Int16", b"s", "h", "A signed 16-bit field-table integer (tag C{'s'}).")
UInt16 = _intType("UInt16", b"u", "H", "An unsigned 16-bit field-table integer (tag C{'u'}).")
Int32 = _intType("Int32", b"I", "i", "A signed 32-bit field-table integer (tag C{'I'}).")
UInt32 = _intType("UInt32", b"i", "I", "An unsigned 32-bit field-table integer (tag C{'i'}).")
Int64 = _intType("Int64", b"l", "q", "A signed 64-bit field-table integer (tag C{'l'}).")
Timestamp = _intType("Timestamp", b"T", "Q",
                     "A field-table timestamp (tag C{'T'}): unsigned seconds since the epoch.")


class Float32(float):
    """
    A single-precision field-table float (tag C{'f'}).

    Its value is what the four bytes hold (C{Float32(0.1) != 0.1}).

    @ivar raw: the four bytes on the wire.  They are kept because widening a
        single-precision signalling NaN to a Python L{float} changes its
        bits, and the codec must give back the bytes it was given.
    """

    __slots__ = ("raw",)
    tag = b"f"

    def __new__(cls, value=0.0):
        try:
            raw = struct.pack("!f", value)
        except OverflowError:
            raise ValueError(f"{value!r} is out of range for Float32") from None
        return cls.fromBytes(raw)

    @classmethod
    def fromBytes(cls, raw):
        """
        @param raw: four bytes, big-endian IEEE 754 single precision.
        @return: the L{Float32} they hold.
        """
        self = float.__new__(cls, struct.unpack("!f", raw)[0])
        self.raw = bytes(raw)
        return self

    def __reduce__(self):
        return (type(self).fromBytes, (self.raw,))

    def __repr__(self):
        return f"Float32({float(self)!r})"


class Float64(float):
    """
    A double-precision field-table float (tag C{'d'}).  A plain L{float}
    encodes the same way; decoding gives this type so that every numeric
    value says which tag it came with.
    """

    __slots__ = ()
    tag = b"d"

    def __repr__(self):
        return f"Float64({float(self)!r})"


class ByteArray(bytes):
    """
    A field-table byte array (tag C{'x'}).  Plain L{bytes} encode as a
    C{'S'} string instead.
    """

    __slots__ = ()
    tag = b"x"

    def __repr__(self):
        return f"ByteArray({bytes(self)!r})"


_FIXED_WIDTH = {cls.tag: cls for cls in (Int8, UInt8, Int16, UInt16, Int32, UInt32, Int64, Timestamp)}
_INT32 = (Int32.minimum, Int32.maximum)
_INT64 = (Int64.minimum, Int64.maximum)


def _decodeUTF8(data, what):
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise AMQPError(SYNTAX_ERROR, f"{what} is not valid UTF-8") from None


class AMQPCodec(txamqp.codec.Codec):
    """
    A L{txamqp.codec.Codec} that is exact about strings and knows every
    field-table type.  See the module docstring for how values are
    represented and which errors are raised.

    Method arguments go through the inherited C{encode(type, value)} and
    C{decode(type)}, which dispatch to the C{encode_*} and C{decode_*}
    methods here.  Encoders raise L{AMQPError} for values the wire cannot
    carry; decoders raise L{AMQPError} for bytes they cannot accept.
    """

    def __init__(self, stream, _depth=0):
        """
        @param stream: a file-like object to read from or write to.
        @param _depth: how many tables or arrays enclose what this codec
            reads or writes; set only for the codecs that handle nested
            tables.
        """
        txamqp.codec.Codec.__init__(self, stream)
        self._depth = _depth

    # Reading.  The base class raises EOF only when nothing at all is left
    # and silently returns short reads; every short read is an error here.

    def read(self, n):
        """
        Read exactly C{n} bytes.

        @raise AMQPError: C{FRAME_ERROR} if fewer are left; C{SYNTAX_ERROR}
            if this read ends a run of packed bits that left an unused bit
            set.
        """
        # Only consecutive bit fields share an octet: anything else read
        # ends the run.  (The base class would let a later bit field take a
        # leftover bit from an earlier octet.)
        self._endBits()
        data = self.stream.read(n)
        if len(data) != n:
            raise AMQPError(FRAME_ERROR, "truncated method arguments")
        self.nread += n
        return data

    def _endBits(self):
        if any(self.incoming_bits):
            raise AMQPError(SYNTAX_ERROR, "unused bits set in a bit octet")
        del self.incoming_bits[:]

    def finishDecoding(self):
        """
        Check that everything was read.

        @raise AMQPError: C{FRAME_ERROR} if bytes are left over,
            C{SYNTAX_ERROR} if the last bit octet has an unused bit set.
        """
        self._endBits()
        if self.stream.read(1):
            raise AMQPError(FRAME_ERROR, "unexpected bytes after the method arguments")

    # Integers: range checks, so that a bad value is an AMQPError rather
    # than a struct.error.

    def _packInt(self, format, value, minimum, maximum, what):
        if not isinstance(value, int):
            raise TypeError(f"{what} must be an int, not {type(value).__name__}")
        if not minimum <= value <= maximum:
            raise AMQPError(SYNTAX_ERROR, f"{what} {value} is out of range")
        self.pack(format, value)

    def encode_octet(self, o):
        self._packInt("!B", o, 0, 0xFF, "octet")

    def encode_short(self, o):
        self._packInt("!H", o, 0, 0xFFFF, "short")

    def encode_long(self, o):
        self._packInt("!L", o, 0, 0xFFFFFFFF, "long")

    def encode_longlong(self, o):
        self._packInt("!Q", o, 0, 0xFFFFFFFFFFFFFFFF, "longlong")

    def encode_timestamp(self, o):
        self._packInt("!Q", o, 0, 0xFFFFFFFFFFFFFFFF, "timestamp")

    # Strings: lengths count encoded bytes.

    def encode_shortstr(self, s):
        """
        @param s: L{str}, or L{bytes} that are valid UTF-8.
        @raise AMQPError: C{SYNTAX_ERROR} if longer than 255 bytes.
        """
        if isinstance(s, str):
            data = s.encode("utf-8")
        elif isinstance(s, (bytes, bytearray)):
            data = bytes(s)
            # Whatever is encoded must decode: shortstrs are UTF-8.
            _decodeUTF8(data, "shortstr")
        else:
            raise TypeError(f"shortstr must be str, not {type(s).__name__}")
        if len(data) > 255:
            raise AMQPError(SYNTAX_ERROR, f"shortstr of {len(data)} bytes is longer than 255")
        self.write(bytes([len(data)]) + data)

    def decode_shortstr(self):
        """
        @return: L{str}
        @raise AMQPError: C{SYNTAX_ERROR} if not valid UTF-8.
        """
        return _decodeUTF8(self.read(self.decode_octet()), "shortstr")

    def encode_longstr(self, s):
        """
        @param s: L{bytes}, or L{str} (sent as UTF-8).
        """
        if isinstance(s, str):
            s = s.encode("utf-8")
        elif not isinstance(s, (bytes, bytearray)):
            raise TypeError(f"longstr must be bytes or str, not {type(s).__name__}")
        self.encode_long(len(s))
        self.write(bytes(s))

    def decode_longstr(self):
        """
        @return: L{bytes}
        """
        return self.read(self.decode_long())

    # Field tables and arrays.

    def encode_table(self, tbl):
        """
        @param tbl: a L{dict} (any L{Mapping}) of L{str} to field values.
        """
        self.encode_longstr(self._tableBody(tbl))

    def decode_table(self):
        """
        @return: a L{dict} of L{str} to field values.
        """
        return self._parseTable(self.decode_longstr())

    def _nested(self, stream):
        """
        @return: a codec for the contents of a table or array that this
            codec's current position is in.
        @raise AMQPError: C{SYNTAX_ERROR} when that would exceed L{MAX_NESTING}.
        """
        if self._depth >= MAX_NESTING:
            raise AMQPError(SYNTAX_ERROR, f"tables nested more than {MAX_NESTING} deep")
        return AMQPCodec(stream, self._depth + 1)

    def _tableBody(self, tbl):
        """
        @return: the encoded entries of C{tbl} without the length prefix.
        """
        if not isinstance(tbl, Mapping):
            raise TypeError(f"field table must be a dict, not {type(tbl).__name__}")
        out = BytesIO()
        inner = self._nested(out)
        for key, value in tbl.items():
            if not isinstance(key, str):
                raise TypeError(f"field table keys must be str, not {type(key).__name__}")
            inner.encode_shortstr(key)
            inner._encodeValue(value)
        return out.getvalue()

    def _parseTable(self, body):
        """
        @param body: the entries of a table without the length prefix.
        """
        inner = self._nested(BytesIO(body))
        table = {}
        while inner.nread < len(body):
            key = inner.decode_shortstr()
            if key in table:
                # A dict keeps one value per key; the other would be lost.
                raise AMQPError(SYNTAX_ERROR, "duplicate key in a field table")
            table[key] = inner._decodeValue()
        return table

    def _arrayBody(self, values):
        out = BytesIO()
        inner = self._nested(out)
        for value in values:
            inner._encodeValue(value)
        return out.getvalue()

    def _parseArray(self, body):
        inner = self._nested(BytesIO(body))
        values = []
        while inner.nread < len(body):
            values.append(inner._decodeValue())
        return values

    def _encodeValue(self, value):
        """
        Write a type tag and a field value.  The order of the checks matters:
        L{bool} is an L{int}, and the typed values are L{int}, L{float} and
        L{bytes}.
        """
        if value is None:
            self.write(b"V")
        elif isinstance(value, bool):
            self.write(b"t\x01" if value else b"t\x00")
        elif isinstance(value, _TypedInt):
            self.write(value.tag)
            self.pack(value.format, value)
        elif isinstance(value, int):
            if _INT32[0] <= value <= _INT32[1]:
                self.write(b"I")
                self.pack("!i", value)
            elif _INT64[0] <= value <= _INT64[1]:
                self.write(b"l")
                self.pack("!q", value)
            else:
                raise AMQPError(SYNTAX_ERROR, f"integer {value} does not fit in 64 bits")
        elif isinstance(value, Float32):
            self.write(b"f" + value.raw)
        elif isinstance(value, float):
            self.write(b"d")
            self.pack("!d", value)
        elif isinstance(value, decimal.Decimal):
            self.write(b"D")
            self._encodeDecimal(value)
        elif isinstance(value, str):
            self.write(b"S")
            self.encode_longstr(value)
        elif isinstance(value, ByteArray):
            self.write(b"x")
            self.encode_longstr(value)
        elif isinstance(value, (bytes, bytearray)):
            self.write(b"S")
            self.encode_longstr(value)
        elif isinstance(value, Mapping):
            self.write(b"F")
            self.encode_longstr(self._tableBody(value))
        elif isinstance(value, (list, tuple)):
            self.write(b"A")
            self.encode_longstr(self._arrayBody(value))
        else:
            raise TypeError(f"cannot encode {type(value).__name__} in a field table")

    def _decodeValue(self):
        """
        Read a type tag and the field value it introduces.
        """
        tag = self.read(1)
        if tag in _FIXED_WIDTH:
            cls = _FIXED_WIDTH[tag]
            return cls(self.unpack(cls.format))
        elif tag == b"S":
            data = self.decode_longstr()
            try:
                return data.decode("utf-8")
            except UnicodeDecodeError:
                return data
        elif tag == b"t":
            octet = self.decode_octet()
            if octet > 1:
                raise AMQPError(SYNTAX_ERROR, "boolean field value is neither 0 nor 1")
            return octet == 1
        elif tag == b"F":
            return self._parseTable(self.decode_longstr())
        elif tag == b"A":
            return self._parseArray(self.decode_longstr())
        elif tag == b"V":
            return None
        elif tag == b"x":
            return ByteArray(self.decode_longstr())
        elif tag == b"d":
            return Float64(self.unpack("!d"))
        elif tag == b"f":
            return Float32.fromBytes(self.read(4))
        elif tag == b"D":
            return self._decodeDecimal()
        raise AMQPError(SYNTAX_ERROR, f"unknown field value type {tag!r}")

    def _encodeDecimal(self, value):
        """
        Write a scale octet and a signed 32-bit unscaled value.  The scale
        is minus the exponent, so C{Decimal("1.50")} keeps its two places.
        """
        sign, digits, exponent = value.as_tuple()
        if not isinstance(exponent, int):
            raise AMQPError(SYNTAX_ERROR, f"cannot encode decimal {value}")
        unscaled = int("".join(map(str, digits)) or "0") * (-1 if sign else 1)
        if exponent > 0:
            unscaled, exponent = unscaled * 10 ** exponent, 0
        if -exponent > 255 or not _INT32[0] <= unscaled <= _INT32[1]:
            raise AMQPError(SYNTAX_ERROR, f"decimal {value} is out of range")
        self.pack("!Bi", -exponent, unscaled)

    def _decodeDecimal(self):
        scale, unscaled = self.unpack("!Bi")
        # Built from a tuple, not by arithmetic, so no context rounds it.
        digits = tuple(int(d) for d in str(abs(unscaled)))
        return decimal.Decimal((int(unscaled < 0), digits, -scale))


@attr.s(frozen=True)
class Method:
    """
    A decoded AMQP method.

    @ivar klass: the class name, e.g. C{"connection"}.
    @ivar name: the method name, e.g. C{"start-ok"}.
    @ivar classId: the class id (L{int}).
    @ivar methodId: the method id (L{int}).
    @ivar args: L{dict} of argument name (the spec's field name with C{-}
        replaced by C{_}) to value; see the module docstring.
    """

    klass = attr.ib()
    name = attr.ib()
    classId = attr.ib()
    methodId = attr.ib()
    args = attr.ib()

    @property
    def qualifiedName(self):
        """
        The name C{encodeMethod} takes, e.g. C{"connection.start-ok"}.
        """
        return f"{self.klass}.{self.name}"


@attr.s(frozen=True)
class _MethodSpec:
    klass = attr.ib()
    name = attr.ib()
    classId = attr.ib()
    methodId = attr.ib()
    # (argument name, field type) in wire order.
    fields = attr.ib()


def _indexSpec(spec):
    byId, byName = {}, {}
    for klass in spec.classes:
        for method in klass.methods:
            entry = _MethodSpec(klass.name, method.name, klass.id, method.id,
                                tuple((f.name.replace("-", "_"), f.type) for f in method.fields))
            byId[klass.id, method.id] = entry
            byName[f"{klass.name}.{method.name}"] = entry
    return byId, byName


_METHODS_BY_ID, _METHODS_BY_NAME = _indexSpec(SPEC)

# What an argument left out of encodeMethod is sent as.
_DEFAULTS = {
    "bit": False, "octet": 0, "short": 0, "long": 0, "longlong": 0, "timestamp": 0,
    "shortstr": "", "longstr": b"", "table": {},
}


def decodeMethod(payload):
    """
    Decode the payload of a method frame.

    @param payload: class-id short, method-id short, then the arguments.
    @type payload: L{bytes}
    @rtype: L{Method}
    @raise AMQPError: C{COMMAND_INVALID} for a class or method L{SPEC}
        does not have; C{FRAME_ERROR} or C{SYNTAX_ERROR} for arguments that
        cannot be decoded (see the module docstring).
    """
    payload = bytes(payload)
    if len(payload) < _METHOD_ID.size:
        raise AMQPError(FRAME_ERROR, "method frame too short for a method id")
    classId, methodId = _METHOD_ID.unpack_from(payload)
    spec = _METHODS_BY_ID.get((classId, methodId))
    if spec is None:
        raise AMQPError(COMMAND_INVALID, f"unknown method {classId}.{methodId}")
    codec = AMQPCodec(BytesIO(payload[_METHOD_ID.size:]))
    args = {name: codec.decode(fieldType) for name, fieldType in spec.fields}
    codec.finishDecoding()
    return Method(spec.klass, spec.name, classId, methodId, args)


def encodeMethod(channel, qualifiedName, **args):
    """
    Encode a whole method frame.

    @param channel: the channel number.
    @param qualifiedName: e.g. C{"connection.start-ok"}.
    @param args: the arguments, named as in L{Method.args}; those left out
        are sent as 0, C{""}, C{b""}, C{{}} or L{False}.
    @return: the frame: type, channel, size, payload and frame-end octet.
    @rtype: L{bytes}
    @raise ValueError: if there is no such method.
    @raise TypeError: for an argument the method does not have, or a value
        of the wrong type.
    @raise AMQPError: C{SYNTAX_ERROR} for a value the wire cannot carry.
    """
    spec = _METHODS_BY_NAME.get(qualifiedName)
    if spec is None:
        raise ValueError(f"unknown method {qualifiedName!r}")
    unknown = set(args) - {name for name, _ in spec.fields}
    if unknown:
        raise TypeError(f"{qualifiedName} has no argument(s) {', '.join(sorted(unknown))}")
    stream = BytesIO()
    codec = AMQPCodec(stream)
    codec.encode_short(spec.classId)
    codec.encode_short(spec.methodId)
    for name, fieldType in spec.fields:
        codec.encode(fieldType, args.get(name, _DEFAULTS[fieldType]))
    codec.flush()
    return encodeFrame(FRAME_METHOD, channel, stream.getvalue())


def encodeFrame(frameType, channel, payload):
    """
    Frame a payload.

    @param frameType: L{FRAME_METHOD}, L{FRAME_HEADER}, L{FRAME_BODY} or
        L{FRAME_HEARTBEAT}.
    @param channel: the channel number.
    @param payload: L{bytes}
    @return: type octet, channel short, size long, payload, L{FRAME_END}.
    @raise AMQPError: C{SYNTAX_ERROR} if the type, channel or size is out of
        range.
    """
    if not (0 <= frameType <= 0xFF and 0 <= channel <= 0xFFFF and len(payload) <= 0xFFFFFFFF):
        raise AMQPError(SYNTAX_ERROR, "frame type, channel or size out of range")
    return _FRAME_HEADER.pack(frameType, channel, len(payload)) + bytes(payload) + bytes([FRAME_END])


def encodePlainResponse(username, password):
    """
    Encode a SASL PLAIN response (RFC 4616) with an empty authorization
    identity.

    @type username: L{str}
    @type password: L{str}
    @return: C{NUL username NUL password}, UTF-8.
    @raise ValueError: if either contains NUL, which PLAIN cannot carry.
    """
    if "\x00" in username or "\x00" in password:
        raise ValueError("PLAIN credentials cannot contain NUL")
    return b"\x00" + username.encode("utf-8") + b"\x00" + password.encode("utf-8")


def encodeAMQPlainResponse(username, password):
    """
    Encode an AMQPLAIN response.

    @type username: L{str}
    @type password: L{str}
    @return: the entries of a field table -- C{LOGIN} and C{PASSWORD} as
        C{'S'} values -- B{without} the table's length prefix: the
        longstr's own length serves as that prefix, and RabbitMQ
        (C{rabbit_auth_mechanism_amqplain}) parses the response as table
        entries.
    """
    return AMQPCodec(BytesIO())._tableBody({"LOGIN": username, "PASSWORD": password})


def decodeSASLResponse(mechanism, response):
    """
    Get the credentials out of a C{connection.start-ok} response.

    For PLAIN, the form is C{authzid NUL authcid NUL passwd}; the
    authorization identity may be empty and is otherwise ignored, as
    RabbitMQ ignores it; the authentication identity and password must not
    be empty (RFC 4616).  For AMQPLAIN, the response holds table entries
    (no length prefix) of which C{LOGIN} and C{PASSWORD} must be strings;
    others are ignored.

    @param mechanism: C{b"PLAIN"} or C{b"AMQPLAIN"} (L{str} is accepted too).
    @param response: the response (L{bytes}).
    @return: C{(username, password)}, both L{str}.
    @raise AMQPError: C{SYNTAX_ERROR} for a malformed response or
        credentials that are not UTF-8; C{COMMAND_INVALID} for another
        mechanism (what RabbitMQ answers to an unknown mechanism).
    """
    if isinstance(mechanism, str):
        mechanism = mechanism.encode("utf-8")
    response = bytes(response)
    if mechanism == b"PLAIN":
        parts = response.split(b"\x00")
        if len(parts) != 3 or not parts[1] or not parts[2]:
            raise AMQPError(SYNTAX_ERROR, "malformed PLAIN response")
        return (_decodeUTF8(parts[1], "PLAIN username"), _decodeUTF8(parts[2], "PLAIN password"))
    if mechanism == b"AMQPLAIN":
        try:
            table = AMQPCodec(BytesIO())._parseTable(response)
        except AMQPError:
            raise AMQPError(SYNTAX_ERROR, "malformed AMQPLAIN response") from None
        username, password = table.get("LOGIN"), table.get("PASSWORD")
        if not isinstance(username, (str, bytes)) or not isinstance(password, (str, bytes)):
            raise AMQPError(SYNTAX_ERROR, "AMQPLAIN response lacks a LOGIN or PASSWORD string")
        # An 'S' value that is not UTF-8 decodes to bytes.
        if isinstance(username, bytes) or isinstance(password, bytes):
            raise AMQPError(SYNTAX_ERROR, "AMQPLAIN credentials are not valid UTF-8")
        return (username, password)
    raise AMQPError(COMMAND_INVALID, "unsupported SASL mechanism")
