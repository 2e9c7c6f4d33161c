"""How the message browser shows a key, a value or a header: JSON pretty printed, other UTF-8
as text, anything else as hex; a value in Confluent's wire format (magic byte 0, a 4-byte
schema id, the payload) decoded through the schema registry when the console knows one.
Every rendering also carries the exact bytes (base64), so nothing is lost to display."""

from __future__ import annotations

import base64
import io
import json
import struct
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Optional

SHOWN_BYTES = 256 << 10  # longer data is shown cut short (the base64 stays whole)
REGISTRY_TIMEOUT = 5.0


class RegistryUnavailable(Exception):
    """The schema registry did not answer (or answered an error)."""


class SchemaLookup:
    """A Confluent-compatible schema registry, read over its REST API (fastlog's own or any)."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self._by_id: dict[int, Optional[dict]] = {}

    def get(self, path: str, **query: str) -> Any:
        return self._send(urllib.request.Request(self.url + path + ("?" + urllib.parse.urlencode(query) if query else "")))

    def post(self, path: str, document: Any) -> Any:
        return self._send(urllib.request.Request(
            self.url + path, data=json.dumps(document).encode(), method="POST",
            headers={"Content-Type": "application/vnd.schemaregistry.v1+json"},
        ))

    def _send(self, request: urllib.request.Request) -> Any:
        """The answer's JSON; RegistryUnavailable(message, status) for an error status."""
        try:
            with urllib.request.urlopen(request, timeout=REGISTRY_TIMEOUT) as response:
                return json.load(response)
        except urllib.error.HTTPError as e:
            try:
                detail = json.load(e)
            except ValueError:
                detail = {}
            finally:
                e.close()
            raise RegistryUnavailable(detail.get("message") or f"HTTP {e.code}", e.code) from None
        except (OSError, ValueError) as e:
            raise RegistryUnavailable(f"schema registry at {self.url}: {e}", 502) from None

    def schema(self, schema_id: int) -> Optional[dict]:
        """{schema, schemaType} of an id, None when the registry does not know it (cached)."""
        if schema_id not in self._by_id:
            try:
                self._by_id[schema_id] = self.get(f"/schemas/ids/{schema_id}")
            except RegistryUnavailable as e:
                if e.args[1] == 404:
                    self._by_id[schema_id] = None
                else:
                    return None  # not cached: the registry may be back next time
        return self._by_id[schema_id]


def render(data: Optional[bytes], schemas: Optional[SchemaLookup]) -> Optional[dict]:
    if data is None:
        return None
    out: dict[str, Any] = {"size": len(data), "base64": base64.b64encode(data).decode()}
    decoded = _schema_decoded(data, schemas) if schemas is not None else None
    if decoded is not None:
        out.update(decoded)
        return out
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        out.update(format="hex", text=data[:SHOWN_BYTES].hex(" "))
    else:
        out.update(_text_or_json(text))
    out["truncated"] = len(data) > SHOWN_BYTES
    return out


def _text_or_json(text: str) -> dict:
    stripped = text.strip()
    if stripped[:1] in ("{", "[") and len(text) <= SHOWN_BYTES:
        try:
            return {"format": "json", "text": json.dumps(json.loads(text), indent=2, ensure_ascii=False)}
        except ValueError:
            pass
    return {"format": "text", "text": text[:SHOWN_BYTES]}


def _schema_decoded(data: bytes, schemas: SchemaLookup) -> Optional[dict]:
    if len(data) < 5 or data[0] != 0:
        return None
    schema_id = struct.unpack(">i", data[1:5])[0]
    found = schemas.schema(schema_id)
    if found is None:
        return None
    kind = found.get("schemaType", "AVRO")
    payload = data[5:]
    try:
        if kind == "AVRO":
            value = _avro(found["schema"], payload)
            return {"format": "avro", "schema_id": schema_id, "text": json.dumps(value, indent=2, ensure_ascii=False, default=_jsonable)}
        if kind == "JSON":
            return {"format": "json", "schema_id": schema_id, "text": json.dumps(json.loads(payload), indent=2, ensure_ascii=False)}
    except Exception:  # not really this schema's data: show the bytes as they are
        return None
    return {"format": "hex", "schema_id": schema_id, "schema_type": kind, "text": payload[:SHOWN_BYTES].hex(" ")}


def _avro(schema_text: str, payload: bytes) -> Any:
    import avro.io
    import avro.schema

    reader = avro.io.DatumReader(avro.schema.parse(schema_text))
    return reader.read(avro.io.BinaryDecoder(io.BytesIO(payload)))


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex(" ")
    return str(value)
