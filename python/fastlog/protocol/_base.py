"""Base classes of the generated message and struct classes.

No field layout lives here: the generated subclasses provide ``_FIELDS`` (slot
names in schema order), ``_SPECS`` (per-field metadata) and ``_DEC`` / ``_ENC``
(``{version: function}``) with the straight-line per-version code.
"""

from __future__ import annotations

from struct import error as StructError

from .errors import CodecError, InvalidValueError, TruncatedError, UnsupportedVersionError
from .primitives import Reader, Writer, as_view

__all__ = ["Struct", "Message"]


def _bad_version(cls, version):
    lo, hi = cls.VALID_VERSIONS
    return UnsupportedVersionError(
        f"{cls.__qualname__} has no version {version!r} (valid {lo}-{hi})",
        api_key=getattr(cls, "API_KEY", None), api_version=version if isinstance(version, int) else None)


def decode_with(cls, fn, data, version):
    """Run generated decoder ``fn``; translate stray low-level errors."""
    if isinstance(data, Reader):
        buf, pos, strict = data.buf, data.pos, False
    else:
        buf, pos, strict = as_view(data), 0, True
    try:
        obj, pos = fn(buf, pos)
    except CodecError:
        raise
    except (StructError, IndexError) as e:
        raise TruncatedError(f"{cls.__qualname__} v{version}: truncated ({e})") from None
    if strict:
        if pos != len(buf):
            raise InvalidValueError(
                f"{cls.__qualname__} v{version}: {len(buf) - pos} trailing bytes")
    else:
        data.pos = pos
    return obj


class Struct:
    """A schema struct: keyword constructor, ``==``, ``repr``, per-version
    ``decode``/``encode``.  ``unknown_tagged_fields`` maps tag -> raw bytes of
    tagged fields this schema does not know; they are written back on encode."""

    __slots__ = ()
    _FIELDS: tuple = ()
    _SPECS: tuple = ()
    _DEC: dict = {}
    _ENC: dict = {}
    VALID_VERSIONS: tuple = (0, 0)
    FLEXIBLE_MIN: int | None = None

    @classmethod
    def decode(cls, data, version: int):
        """Decode from bytes-like ``data`` (must be consumed exactly) or from a
        :class:`Reader` (advanced past the value)."""
        try:
            fn = cls._DEC[version]
        except (KeyError, TypeError):
            raise _bad_version(cls, version) from None
        return decode_with(cls, fn, data, version)

    def encode_into(self, writer: Writer, version: int) -> None:
        try:
            fn = self._ENC[version]
        except (KeyError, TypeError):
            raise _bad_version(type(self), version) from None
        try:
            fn(self, writer, writer.buf)
        except CodecError:
            raise
        except (StructError, TypeError, AttributeError, ValueError, OverflowError) as e:
            raise InvalidValueError(
                f"{type(self).__qualname__} v{version}: cannot encode: {e}") from e

    def encode(self, version: int) -> bytes:
        w = Writer()
        self.encode_into(w, version)
        return w.getvalue()

    def __eq__(self, other):
        if type(other) is not type(self):
            return NotImplemented
        for name in self._FIELDS:
            if getattr(self, name) != getattr(other, name):
                return False
        return self.unknown_tagged_fields == other.unknown_tagged_fields

    __hash__ = None  # mutable

    def __repr__(self):
        parts = [f"{n}={getattr(self, n)!r}" for n in self._FIELDS]
        if self.unknown_tagged_fields:
            parts.append(f"unknown_tagged_fields={self.unknown_tagged_fields!r}")
        return f"{type(self).__qualname__}({', '.join(parts)})"

    def to_dict(self) -> dict:
        """Plain nested dict/list view (records and bytes stay as they are)."""
        out = {}
        for name in self._FIELDS:
            v = getattr(self, name)
            if isinstance(v, Struct):
                v = v.to_dict()
            elif isinstance(v, list):
                v = [x.to_dict() if isinstance(x, Struct) else x for x in v]
            out[name] = v
        return out


class Message(Struct):
    """A top-level request/response/header/data message."""

    __slots__ = ()
    API_KEY: int | None = None
    NAME: str = ""
    TYPE: str = ""
    LATEST_VERSION_UNSTABLE = False
