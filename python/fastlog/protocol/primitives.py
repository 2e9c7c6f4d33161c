"""Kafka wire primitives: the only hand-written encoding code of the codec.

Two layers:

* ``r_*(buf, pos) -> (value, pos)`` and ``w_*(buf, value)`` functions over a
  ``memoryview`` / ``bytearray``.  The generated message code calls these (and
  inlines fixed-width fields with precompiled :class:`struct.Struct` objects).
* :class:`Reader` and :class:`Writer`, the public object API built on them.

Untrusted input never crashes or allocates without bound: every length and
count is checked against the bytes that remain *before* anything is sliced or
allocated, varints are capped at their maximum width, and every failure is a
:class:`~fastlog.protocol.errors.CodecError`.

What is accepted follows Kafka's own generated readers, which clients rely on:
any negative length of a nullable string, bytes or array is null (only -1 is
ever written), invalid UTF-8 becomes U+FFFD as Java's decoder makes it, a bool
is true for any non-zero byte, and the fifth byte of a varint is not checked
for bits above 32 (Java's int arithmetic drops them).  (Generated decoders may also let
``struct.error``/``IndexError`` out of an inlined read: a fixed-width group, a one-byte
count or an empty tag section; the message entry points and :class:`Reader` translate
those to :class:`TruncatedError`.)

Records fields (type ``records``) are opaque.  Decoding returns a zero-copy
``memoryview`` slice of the input (or ``None``).  Encoding accepts ``None``, a
bytes-like object, or any other object with ``__len__`` (e.g. a file region the
server sends with ``sendfile``): the Writer writes the length prefix and keeps
the object as a separate *external* part, see :meth:`Writer.parts`.
"""

from __future__ import annotations

import uuid as _uuid
from struct import Struct, error as StructError

from .errors import CodecError, InvalidValueError, TruncatedError

__all__ = ["Reader", "Writer", "ZERO_UUID", "MAX_STRING_LENGTH", "ZERO_COPY_THRESHOLD"]

I8 = Struct(">b")
I16 = Struct(">h")
I32 = Struct(">i")
I64 = Struct(">q")
U16 = Struct(">H")
U32 = Struct(">I")
F64 = Struct(">d")

ZERO_UUID = _uuid.UUID(int=0)
MAX_STRING_LENGTH = 0x7FFF
# bytes-like records of at least this size are kept as their own chunk in
# Writer.parts() instead of being copied into the buffer.
ZERO_COPY_THRESHOLD = 64 * 1024

_NULL16 = b"\xff\xff"
_NULL32 = b"\xff\xff\xff\xff"
_UUID = _uuid.UUID
_BYTES_LIKE = (bytes, bytearray, memoryview)


def as_view(data) -> memoryview:
    """A flat unsigned-byte memoryview over ``data`` (no copy)."""
    mv = data if isinstance(data, memoryview) else memoryview(data)
    if mv.format != "B" or mv.ndim != 1:
        mv = mv.cast("B")
    return mv


# --------------------------------------------------------------------------
# decoding helpers: f(buf, pos) -> (value, new_pos)
# --------------------------------------------------------------------------

# The string, bytes and records readers below check lengths inline rather than through
# _need, and a one-byte varint is read without the loop: each Python call they save is
# ~0.05 µs, and such a field is read once per field of every message decoded here.

def _need(buf, pos, n):
    if n > len(buf) - pos:
        raise _short(buf, pos, n)


def _short(buf, pos, n):
    return TruncatedError(f"need {n} bytes at offset {pos}, only {len(buf) - pos} left")


def r_uvarint(buf, pos):
    """Unsigned varint of at most 5 bytes (a 32-bit value)."""
    if pos < len(buf):
        b = buf[pos]
        if b < 0x80:  # one byte: most lengths, counts and tags
            return b, pos + 1
    return _r_uvarint_long(buf, pos)


def _r_uvarint_long(buf, pos):
    result = 0
    shift = 0
    end = len(buf)
    while True:
        if pos >= end:
            raise TruncatedError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result & 0xFFFFFFFF, pos
        shift += 7
        if shift >= 35:
            raise InvalidValueError("varint is too long")


def _r_uvarlong(buf, pos):
    result = 0
    shift = 0
    end = len(buf)
    while True:
        if pos >= end:
            raise TruncatedError("truncated varlong")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            if result > 0xFFFFFFFFFFFFFFFF:
                raise InvalidValueError("varlong out of range")
            return result, pos
        shift += 7
        if shift >= 70:
            raise InvalidValueError("varlong is too long")


def r_varint(buf, pos):
    """Zigzag-encoded signed 32-bit varint."""
    v, pos = r_uvarint(buf, pos)
    return (v >> 1) ^ -(v & 1), pos


def r_varlong(buf, pos):
    """Zigzag-encoded signed 64-bit varint."""
    v, pos = _r_uvarlong(buf, pos)
    return (v >> 1) ^ -(v & 1), pos


def r_string(buf, pos):
    if len(buf) - pos < 2:
        raise _short(buf, pos, 2)
    n = I16.unpack_from(buf, pos)[0]
    pos += 2
    if n < 0:
        raise InvalidValueError("null in a non-nullable string")
    end = pos + n
    if end > len(buf):
        raise _short(buf, pos, n)
    return str(buf[pos:end], "utf-8", "replace"), end


def r_nstring(buf, pos):
    if len(buf) - pos < 2:
        raise _short(buf, pos, 2)
    n = I16.unpack_from(buf, pos)[0]
    pos += 2
    if n < 0:
        return None, pos
    end = pos + n
    if end > len(buf):
        raise _short(buf, pos, n)
    return str(buf[pos:end], "utf-8", "replace"), end


def r_cstring(buf, pos):
    n, pos = r_uvarint(buf, pos)
    if n == 0:
        raise InvalidValueError("null in a non-nullable compact string")
    n -= 1
    if n > MAX_STRING_LENGTH:
        raise InvalidValueError(f"string length {n} exceeds {MAX_STRING_LENGTH}")
    end = pos + n
    if end > len(buf):
        raise _short(buf, pos, n)
    return str(buf[pos:end], "utf-8", "replace"), end


def r_ncstring(buf, pos):
    n, pos = r_uvarint(buf, pos)
    if n == 0:
        return None, pos
    n -= 1
    if n > MAX_STRING_LENGTH:
        raise InvalidValueError(f"string length {n} exceeds {MAX_STRING_LENGTH}")
    end = pos + n
    if end > len(buf):
        raise _short(buf, pos, n)
    return str(buf[pos:end], "utf-8", "replace"), end


def _len32(buf, pos, nullable):
    if len(buf) - pos < 4:
        raise _short(buf, pos, 4)
    n = I32.unpack_from(buf, pos)[0]
    pos += 4
    if n < 0:
        if not nullable:
            raise InvalidValueError(f"invalid length {n} of a non-nullable field")
        return None, pos
    if n > len(buf) - pos:
        raise _short(buf, pos, n)
    return n, pos


def _clen(buf, pos, nullable):
    if pos < len(buf) and buf[pos] < 0x80:
        n = buf[pos]
        pos += 1
    else:
        n, pos = _r_uvarint_long(buf, pos)
    if n == 0:
        if not nullable:
            raise InvalidValueError("null in a non-nullable compact field")
        return None, pos
    n -= 1
    if n > len(buf) - pos:
        raise _short(buf, pos, n)
    return n, pos


def r_bytes(buf, pos):
    n, pos = _len32(buf, pos, False)
    return bytes(buf[pos:pos + n]), pos + n


def r_nbytes(buf, pos):
    n, pos = _len32(buf, pos, True)
    if n is None:
        return None, pos
    return bytes(buf[pos:pos + n]), pos + n


def r_cbytes(buf, pos):
    n, pos = _clen(buf, pos, False)
    return bytes(buf[pos:pos + n]), pos + n


def r_ncbytes(buf, pos):
    n, pos = _clen(buf, pos, True)
    if n is None:
        return None, pos
    return bytes(buf[pos:pos + n]), pos + n


def r_records(buf, pos):
    """Nullable records, non-compact: a zero-copy slice of ``buf``."""
    n, pos = _len32(buf, pos, True)
    if n is None:
        return None, pos
    return buf[pos:pos + n], pos + n


def r_crecords(buf, pos):
    """Nullable records, compact: a zero-copy slice of ``buf``."""
    n, pos = _clen(buf, pos, True)
    if n is None:
        return None, pos
    return buf[pos:pos + n], pos + n


def r_records_nn(buf, pos):
    n, pos = _len32(buf, pos, False)
    return buf[pos:pos + n], pos + n


def r_crecords_nn(buf, pos):
    n, pos = _clen(buf, pos, False)
    return buf[pos:pos + n], pos + n


# Topic ids recur in every request and answer that names their topic, and building a
# uuid.UUID costs ~1.8 µs (its __init__ is Python): each id read is built once and shared
# (they are immutable). Bounded: when full the cache is emptied and fills again.
UUID_CACHE_MAX = 16384
_UUIDS: dict = {}


def uuid_from(raw: bytes) -> _uuid.UUID:
    """The UUID of 16 bytes, shared with earlier reads of the same bytes."""
    found = _UUIDS.get(raw)
    if found is None:
        found = _UUID(bytes=raw)
        if len(_UUIDS) >= UUID_CACHE_MAX:
            _UUIDS.clear()
        _UUIDS[raw] = found
    return found


def r_uuid(buf, pos):
    _need(buf, pos, 16)
    return uuid_from(bytes(buf[pos:pos + 16])), pos + 16


def r_count(buf, pos):
    """Non-compact array count; -1 is null.  A count larger than the bytes
    left is rejected before anything is allocated (as Kafka does)."""
    _need(buf, pos, 4)
    n = I32.unpack_from(buf, pos)[0]
    pos += 4
    if n < 0:
        return None, pos
    if n > len(buf) - pos:
        raise InvalidValueError(f"array of {n} elements but only {len(buf) - pos} bytes left")
    return n, pos


def r_ccount(buf, pos):
    """Compact array count (uvarint N+1, 0 is null)."""
    n, pos = r_uvarint(buf, pos)
    if n == 0:
        return None, pos
    n -= 1
    if n > len(buf) - pos:
        raise InvalidValueError(f"array of {n} elements but only {len(buf) - pos} bytes left")
    return n, pos


_ARRAY_STRUCTS: dict = {}


def _array_struct(code, n):
    st = _ARRAY_STRUCTS.get((code, n))
    if st is None:
        st = Struct(">%d%s" % (n, code))
        if n <= 256:  # cache the common small sizes only
            _ARRAY_STRUCTS[(code, n)] = st
    return st


# precompiled Structs for short arrays: ARRAY_STRUCTS_BY_CODE[code][n]
SMALL_ARRAY = 32
ARRAY_STRUCTS_BY_CODE = {c: tuple(Struct(">%d%s" % (n, c)) for n in range(SMALL_ARRAY))
                         for c in ("b", "h", "i", "q", "H", "d", "?")}


def r_fixed_array(buf, pos, n, code, size):
    """``n`` fixed-width ints (``code`` is a struct code) as a list."""
    end = pos + n * size
    if end > len(buf):
        raise TruncatedError("truncated array")
    return list(_array_struct(code, n).unpack_from(buf, pos)), end


def w_fixed_array(buf, code, items):
    buf += _array_struct(code, len(items)).pack(*items)


def bad_count(n, buf, pos):
    """The error for an array count ``n`` that is negative or exceeds the bytes left."""
    if n < 0:
        return InvalidValueError(f"negative array length {n}")
    return InvalidValueError(f"array of {n} elements but only {len(buf) - pos} bytes left")


def r_tag_header(buf, pos):
    """(tag, end_of_field, pos_of_data) of one tagged field."""
    tag, pos = r_uvarint(buf, pos)
    size, pos = r_uvarint(buf, pos)
    if size > len(buf) - pos:
        raise TruncatedError("truncated tagged field")
    return tag, pos + size, pos


def r_unknown_tags(buf, pos):
    """A tagged-field section of which no tag is known: ``({tag: bytes}, pos)``."""
    n, pos = r_uvarint(buf, pos)
    if n == 0:
        return {}, pos
    tags = {}
    for _ in range(n):
        tag, end, pos = r_tag_header(buf, pos)
        tags[tag] = bytes(buf[pos:end])
        pos = end
    return tags, pos


def r_skip_tags(buf, pos):
    return r_unknown_tags(buf, pos)


# --------------------------------------------------------------------------
# encoding helpers: f(buf: bytearray, value)
# --------------------------------------------------------------------------

def w_uvarint(buf, v):
    if v < 0:
        raise InvalidValueError(f"negative unsigned varint {v}")
    while v >= 0x80:
        buf.append((v & 0x7F) | 0x80)
        v >>= 7
    buf.append(v)


def w_varint(buf, v):
    if not -0x80000000 <= v <= 0x7FFFFFFF:
        raise InvalidValueError(f"varint out of range: {v}")
    w_uvarint(buf, ((v << 1) ^ (v >> 31)) & 0xFFFFFFFF)


def w_varlong(buf, v):
    if not -0x8000000000000000 <= v <= 0x7FFFFFFFFFFFFFFF:
        raise InvalidValueError(f"varlong out of range: {v}")
    w_uvarint(buf, ((v << 1) ^ (v >> 63)) & 0xFFFFFFFFFFFFFFFF)


def _enc_str(s):
    b = s.encode("utf-8")
    if len(b) > MAX_STRING_LENGTH:
        raise InvalidValueError(f"string of {len(b)} bytes exceeds {MAX_STRING_LENGTH}")
    return b


def w_string(buf, s):
    b = _enc_str(s)
    buf += I16.pack(len(b))
    buf += b


def w_nstring(buf, s):
    if s is None:
        buf += _NULL16
    else:
        w_string(buf, s)


def w_cstring(buf, s):
    b = _enc_str(s)
    n = len(b) + 1
    if n < 0x80:
        buf.append(n)
    else:
        w_uvarint(buf, n)
    buf += b


def w_ncstring(buf, s):
    if s is None:
        buf.append(0)
    else:
        w_cstring(buf, s)


def _nbytes(b):
    return b.nbytes if isinstance(b, memoryview) else len(b)


def w_bytes(buf, b):
    buf += I32.pack(_nbytes(b))
    buf += b


def w_nbytes(buf, b):
    if b is None:
        buf += _NULL32
    else:
        w_bytes(buf, b)


def w_cbytes(buf, b):
    w_uvarint(buf, _nbytes(b) + 1)
    buf += b


def w_ncbytes(buf, b):
    if b is None:
        buf.append(0)
    else:
        w_cbytes(buf, b)


def w_records(w, buf, v, compact, nullable=True):
    """Records: None, bytes-like (copied, or kept as a zero-copy chunk when
    large) or any object with ``__len__`` (kept as an external part)."""
    if v is None:
        if not nullable:
            raise InvalidValueError("null records in a non-nullable version")
        if compact:
            buf.append(0)
        else:
            buf += _NULL32
        return
    if isinstance(v, _BYTES_LIKE):
        n = v.nbytes if type(v) is memoryview else len(v)  # _nbytes, inlined: 7 % of a Fetch answer's encoding
        external = False
    else:
        n = len(v)
        external = True
    if not compact:
        buf += I32.pack(n)
    elif n < 0x7F:
        buf.append(n + 1)
    else:
        w_uvarint(buf, n + 1)
    if external:
        w.add_external(v)
    elif n >= ZERO_COPY_THRESHOLD:
        w.add_chunk(v)
    else:
        buf += v


def w_uuid(buf, u):
    buf += u.bytes


def w_count(buf, n):
    buf += I32.pack(n)


def w_ccount(buf, n):
    n += 1
    if n < 0x80:
        buf.append(n)
    else:
        w_uvarint(buf, n)


def w_tags(buf, tags):
    """A tagged-field section from ``[(tag, bytes), ...]`` sorted by tag."""
    w_uvarint(buf, len(tags))
    for tag, data in tags:
        w_uvarint(buf, tag)
        w_uvarint(buf, len(data))
        buf += data


def w_unknown_tags(buf, unknown):
    if unknown:
        w_tags(buf, sorted(unknown.items()))
    else:
        buf.append(0)


# --------------------------------------------------------------------------
# public Reader / Writer
# --------------------------------------------------------------------------

def _guard(fn):
    def wrapper(self, *args):
        try:
            value, self.pos = fn(self.buf, self.pos, *args)
        except CodecError:
            raise
        except (StructError, IndexError) as e:
            raise TruncatedError(str(e)) from None
        return value
    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


def _fixed(st):
    size = st.size

    def read(buf, pos):
        if len(buf) - pos < size:
            raise TruncatedError(f"need {size} bytes at offset {pos}, only {len(buf) - pos} left")
        return st.unpack_from(buf, pos)[0], pos + size
    return read


class Reader:
    """Sequential reader over bytes-like data; every method raises a
    :class:`CodecError` on malformed or truncated input."""

    __slots__ = ("buf", "pos")

    def __init__(self, data, pos: int = 0) -> None:
        self.buf = as_view(data)
        self.pos = pos

    def remaining(self) -> int:
        return len(self.buf) - self.pos

    int8 = _guard(_fixed(I8))
    int16 = _guard(_fixed(I16))
    int32 = _guard(_fixed(I32))
    int64 = _guard(_fixed(I64))
    uint16 = _guard(_fixed(U16))
    uint32 = _guard(_fixed(U32))
    float64 = _guard(_fixed(F64))
    unsigned_varint = _guard(r_uvarint)
    varint = _guard(r_varint)
    varlong = _guard(r_varlong)
    string = _guard(r_string)
    nullable_string = _guard(r_nstring)
    compact_string = _guard(r_cstring)
    compact_nullable_string = _guard(r_ncstring)
    bytes = _guard(r_bytes)
    nullable_bytes = _guard(r_nbytes)
    compact_bytes = _guard(r_cbytes)
    compact_nullable_bytes = _guard(r_ncbytes)
    records = _guard(r_records)
    compact_records = _guard(r_crecords)
    uuid = _guard(r_uuid)
    tagged_fields = _guard(r_unknown_tags)

    def boolean(self) -> bool:
        return self.int8() != 0

    def array(self, read_item, *, compact: bool = False, nullable: bool = False):
        """An array whose items are each read by ``read_item(reader)``; the
        count is checked against the bytes left before reading."""
        n, self.pos = (r_ccount if compact else r_count)(self.buf, self.pos)
        if n is None:
            if not nullable:
                raise InvalidValueError("null in a non-nullable array")
            return None
        return [read_item(self) for _ in range(n)]

    def compact_array(self, read_item, *, nullable: bool = False):
        return self.array(read_item, compact=True, nullable=nullable)

    def raw(self, n: int) -> memoryview:
        """``n`` raw bytes as a zero-copy slice."""
        if n < 0:
            raise InvalidValueError(f"negative length {n}")
        _need(self.buf, self.pos, n)
        v = self.buf[self.pos:self.pos + n]
        self.pos += n
        return v


class Writer:
    """Append-only encoder.

    ``buf`` is the current ``bytearray``.  Records that are large bytes-like
    objects (``add_chunk``) or non-bytes objects with ``__len__``
    (``add_external``, e.g. a file region for ``sendfile``) are not copied:
    they become separate parts, and :meth:`parts` returns the bytes chunks and
    those objects in order.  :meth:`getvalue` joins everything into one
    ``bytes`` and raises :class:`InvalidValueError` if an external object is
    present.
    """

    __slots__ = ("buf", "_parts", "_externals", "_size")

    def __init__(self) -> None:
        self.buf = bytearray()
        self._parts: list = []
        self._externals = 0
        self._size = 0

    # -- parts ---------------------------------------------------------------
    def _flush(self) -> None:
        if self.buf:
            self._parts.append(bytes(self.buf))
            self._size += len(self.buf)
            self.buf.clear()  # same object: generated code holds a reference

    def add_chunk(self, data) -> None:
        """Append a bytes-like object without copying it."""
        self._flush()
        self._parts.append(data)
        self._size += _nbytes(data)

    def add_external(self, obj) -> None:
        """Append an opaque object (anything with ``__len__``) as its own part."""
        self._flush()
        self._parts.append(obj)
        self._externals += 1
        self._size += len(obj)

    def __len__(self) -> int:
        return self._size + len(self.buf)

    def parts(self) -> list:
        """Bytes chunks and external objects, in order."""
        out = list(self._parts)
        if self.buf:
            out.append(bytes(self.buf))
        return out

    def framed_parts(self) -> list:
        """:meth:`parts` preceded by the int32 size prefix of a Kafka frame."""
        out = self.parts()
        size = I32.pack(len(self))
        if out and isinstance(out[0], bytes):
            out[0] = size + out[0]
        else:
            out.insert(0, size)
        return out

    def getvalue(self) -> bytes:
        if self._externals:
            raise InvalidValueError("writer holds external parts; use parts()")
        if not self._parts:
            return bytes(self.buf)
        return b"".join(self._parts) + self.buf

    # -- primitives ----------------------------------------------------------
    def int8(self, v: int) -> None:
        self._pack(I8, v)

    def int16(self, v: int) -> None:
        self._pack(I16, v)

    def int32(self, v: int) -> None:
        self._pack(I32, v)

    def int64(self, v: int) -> None:
        self._pack(I64, v)

    def uint16(self, v: int) -> None:
        self._pack(U16, v)

    def uint32(self, v: int) -> None:
        self._pack(U32, v)

    def float64(self, v: float) -> None:
        self._pack(F64, v)

    def boolean(self, v: bool) -> None:
        self.buf.append(1 if v else 0)

    def _pack(self, st, v):
        try:
            self.buf += st.pack(v)
        except StructError as e:
            raise InvalidValueError(str(e)) from None

    def unsigned_varint(self, v: int) -> None:
        w_uvarint(self.buf, v)

    def varint(self, v: int) -> None:
        w_varint(self.buf, v)

    def varlong(self, v: int) -> None:
        w_varlong(self.buf, v)

    def string(self, v: str) -> None:
        w_string(self.buf, v)

    def nullable_string(self, v) -> None:
        w_nstring(self.buf, v)

    def compact_string(self, v: str) -> None:
        w_cstring(self.buf, v)

    def compact_nullable_string(self, v) -> None:
        w_ncstring(self.buf, v)

    def bytes(self, v) -> None:
        w_bytes(self.buf, v)

    def nullable_bytes(self, v) -> None:
        w_nbytes(self.buf, v)

    def compact_bytes(self, v) -> None:
        w_cbytes(self.buf, v)

    def compact_nullable_bytes(self, v) -> None:
        w_ncbytes(self.buf, v)

    def records(self, v, *, compact: bool = False) -> None:
        w_records(self, self.buf, v, compact)

    def uuid(self, v) -> None:
        self.buf += v.bytes

    def raw(self, data) -> None:
        self.buf += data

    def array(self, items, write_item, *, compact: bool = False) -> None:
        """``items`` (None for a null array) each written by ``write_item(writer, item)``."""
        if items is None:
            if compact:
                self.buf.append(0)
            else:
                self.buf += _NULL32
            return
        if compact:
            w_ccount(self.buf, len(items))
        else:
            w_count(self.buf, len(items))
        for item in items:
            write_item(self, item)

    def compact_array(self, items, write_item) -> None:
        self.array(items, write_item, compact=True)

    def tagged_fields(self, tags: dict | None) -> None:
        """A tagged-field section from ``{tag: raw bytes}``."""
        w_unknown_tags(self.buf, tags)
