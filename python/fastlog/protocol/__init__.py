"""Kafka wire-protocol codec generated from Apache Kafka's message schemas.

Layout:

* ``errors``      -- :class:`CodecError` family and the :class:`ErrorCode` table.
* ``primitives``  -- :class:`Reader` / :class:`Writer` and the primitive types
  (the only hand-written encoding code).
* ``_generated/`` -- one module per API (request + response), header and data
  schema, written by ``tools/gen_protocol.py``; never edit by hand.

Every schema message is a class exported here lazily (the module defining it is
imported on first use): ``ProduceRequest``, ``MetadataResponse``,
``RequestHeader``, ``ConsumerProtocolAssignment``, ...  Structs are nested
one level deep under their message, with Kafka's struct names (as Kafka's Java
``*Data`` classes do): ``ProduceRequest.TopicProduceData``,
``ProduceRequest.PartitionProduceData``, ``MetadataResponse.MetadataResponsePartition``.
Fields are the snake_case of Kafka's names.

Class API (messages and structs)::

    Cls(**fields)                      # keyword-only, Kafka defaults
    Cls.decode(data_or_reader, version) -> Cls
    obj.encode(version) -> bytes
    obj.encode_into(writer, version)
    obj == other, repr(obj), obj.to_dict()
    obj.unknown_tagged_fields: dict[int, bytes]
    Cls.API_KEY, Cls.VALID_VERSIONS, Cls.FLEXIBLE_MIN   (+ NAME, TYPE)
"""

from __future__ import annotations

import importlib
from collections import namedtuple
from struct import Struct as _Struct, error as StructError

from ._generated import APIS as _APIS, CLASS_MODULES as _CLASS_MODULES
from .errors import (
    CodecError,
    ErrorCode,
    InvalidValueError,
    TruncatedError,
    UnknownApiKeyError,
    UnsupportedVersionError,
)
from .primitives import Reader, Writer, as_view

ApiInfo = namedtuple(
    "ApiInfo",
    "api_key name module request_name response_name valid_versions "
    "request_flexible_min response_flexible_min",
)

#: api_key -> :class:`ApiInfo` (no module is imported to build this)
API_BY_KEY = {k: ApiInfo(k, *v) for k, v in _APIS.items()}

_API_VERSIONS_KEY = 18
_CONTROLLED_SHUTDOWN_KEY = 7

__all__ = [
    "API_BY_KEY", "ApiInfo", "CodecError", "ErrorCode", "InvalidValueError", "Reader",
    "TruncatedError", "UnknownApiKeyError", "UnsupportedVersionError", "Writer",
    "decode_request", "encode_request", "encode_response", "request_class",
    "request_header_version", "response_class", "response_header_version",
    *sorted(_CLASS_MODULES),
]


_LOADED: dict = {}  # class name -> class, filled on first use (the request path asks per request)


def _load(name):
    cls = _LOADED.get(name)
    if cls is None:
        mod = importlib.import_module(f"{__name__}._generated.{_CLASS_MODULES[name]}")
        cls = _LOADED[name] = globals()[name] = getattr(mod, name)
    return cls


def __getattr__(name):  # PEP 562: lazy message classes
    if name in _CLASS_MODULES:
        return _load(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_CLASS_MODULES))


def _info(api_key):
    try:
        return API_BY_KEY[api_key]
    except (KeyError, TypeError):
        raise UnknownApiKeyError(f"unknown API key {api_key!r}", api_key=api_key) from None


def request_class(api_key: int):
    """The request message class of ``api_key`` (UnknownApiKeyError if none)."""
    return _load(_info(api_key).request_name)


def response_class(api_key: int):
    """The response message class of ``api_key`` (UnknownApiKeyError if none)."""
    return _load(_info(api_key).response_name)


def _check_version(info, api_version, correlation_id=None):
    lo, hi = info.valid_versions
    if not (isinstance(api_version, int) and lo <= api_version <= hi):
        raise UnsupportedVersionError(
            f"{info.name} v{api_version} not supported (valid {lo}-{hi})",
            api_key=info.api_key, api_version=api_version, correlation_id=correlation_id)


def request_header_version(api_key: int, api_version: int) -> int:
    """RequestHeader version: 2 for flexible request versions, else 1; 0 for
    ControlledShutdown v0 (the one pre-ClientId request, as Kafka's generator
    special-cases it)."""
    info = _info(api_key)
    _check_version(info, api_version)
    if api_key == _CONTROLLED_SHUTDOWN_KEY and api_version == 0:
        return 0
    fm = info.request_flexible_min
    return 2 if fm is not None and api_version >= fm else 1


def response_header_version(api_key: int, api_version: int) -> int:
    """ResponseHeader version: 1 for flexible response versions, else 0.
    ApiVersions responses always use v0 (KIP-511: a client must be able to read
    the header before it knows which versions the broker supports)."""
    info = _info(api_key)
    _check_version(info, api_version)
    if api_key == _API_VERSIONS_KEY:
        return 0
    fm = info.response_flexible_min
    return 1 if fm is not None and api_version >= fm else 0


_HDR = _Struct(">hhi")

# (api_key, api_version) -> (the generated decoders of its RequestHeader version and of the
# request, the request class): looked up once per request instead of checked and loaded
# again. Only valid pairs are kept, so it stays small.
_REQUEST_PLANS: dict = {}
_RESPONSE_HEADER_VERSIONS: dict = {}  # (api_key, api_version) -> ResponseHeader version, the same way


def _request_plan(api_key: int, api_version: int, correlation_id: int) -> tuple:
    if api_key not in API_BY_KEY:
        raise UnknownApiKeyError(f"unknown API key {api_key}", api_key=api_key,
                                 api_version=api_version, correlation_id=correlation_id)
    _check_version(API_BY_KEY[api_key], api_version, correlation_id)
    req_cls = request_class(api_key)
    plan = (_load("RequestHeader")._DEC[request_header_version(api_key, api_version)], req_cls._DEC[api_version], req_cls)
    _REQUEST_PLANS[(api_key, api_version)] = plan
    return plan


def decode_request(frame):
    """Decode one request frame (without its 4-byte size prefix).

    Returns ``(RequestHeader, request_body, trailing)``, where ``trailing`` is the
    number of bytes after the request's last field: they are ignored, as Kafka's
    broker ignores them (librdkafka 2.x leaves three after a Metadata request for
    all topics).  Raises :class:`CodecError` subclasses;
    :class:`UnknownApiKeyError` / :class:`UnsupportedVersionError` (and any
    decode error past the fixed header prefix) carry ``api_key``,
    ``api_version`` and ``correlation_id`` so the server can still answer.
    """
    buf = as_view(frame)
    if len(buf) < 8:
        raise TruncatedError(f"request frame of {len(buf)} bytes is shorter than a header")
    api_key, api_version, correlation_id = _HDR.unpack_from(buf, 0)
    plan = _REQUEST_PLANS.get((api_key, api_version))
    if plan is None:
        plan = _request_plan(api_key, api_version, correlation_id)
    decode_header, decode_body, req_cls = plan
    try:
        header, pos = decode_header(buf, 0)
        body, pos = decode_body(buf, pos)
    except CodecError as e:
        e.api_key, e.api_version, e.correlation_id = api_key, api_version, correlation_id
        raise
    except (StructError, IndexError) as e:  # an inlined read past the end (see primitives)
        raise TruncatedError(f"{req_cls.__qualname__} v{api_version}: truncated ({e})", api_key=api_key,
                             api_version=api_version, correlation_id=correlation_id) from None
    return header, body, len(buf) - pos


def encode_request(header, body) -> Writer:
    """Encode ``header`` (a RequestHeader) + ``body`` into a new Writer; the
    header version follows ``header.request_api_key/request_api_version``."""
    api_key, api_version = header.request_api_key, header.request_api_version
    w = Writer()
    header.encode_into(w, request_header_version(api_key, api_version))
    body.encode_into(w, api_version)
    return w


def encode_response(correlation_id: int, api_key: int, api_version: int, body,
                    writer: Writer | None = None) -> Writer:
    """Encode a response header + ``body`` into ``writer`` (a new Writer by
    default) and return it.  Use ``w.framed_parts()`` for the socket (records
    given as file regions stay separate parts) or ``w.getvalue()``."""
    w = Writer() if writer is None else writer
    # 3.0 == 3 as a key: only an int version may find what an earlier call checked
    header_version = _RESPONSE_HEADER_VERSIONS.get((api_key, api_version)) if type(api_version) is int else None
    if header_version is None:
        header_version = response_header_version(api_key, api_version)  # raises for a bad one
        _RESPONSE_HEADER_VERSIONS[(api_key, api_version)] = header_version
    _load("ResponseHeader")(correlation_id=correlation_id).encode_into(w, header_version)
    body.encode_into(w, api_version)
    return w
