"""Confluent Schema Registry's REST API (same paths, status codes, error codes and JSON), as a
Starlette application over a `SchemaRegistry`."""

from __future__ import annotations

import json
import logging
from typing import Any, Awaitable, Callable, Optional

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fastlog.schema_registry import errors
from fastlog.schema_registry.registry import SchemaRegistry, parse_version
from fastlog.schema_registry.schema_types import SCHEMA_TYPES, Reference, schema_type_of
from fastlog.schema_registry.state import SchemaVersion

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
MAX_BODY_BYTES = 16 << 20  # a schema larger than this is refused (413), not read into memory


def json_response(document: Any, status: int = 200) -> Response:
    return Response(json.dumps(document, separators=(",", ":"), ensure_ascii=False), status, media_type=CONTENT_TYPE)


def error_response(error: errors.RegistryError) -> Response:
    return json_response(error.body(), error.status)


def flag(request: Request, name: str) -> bool:
    return request.query_params.get(name, "false").lower() == "true"


async def read_body(request: Request) -> dict:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise errors.RegistryError(413, 413, f"Request body of {declared} bytes is larger than {MAX_BODY_BYTES}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise errors.RegistryError(413, 413, f"Request body is larger than {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    try:
        body = json.loads(b"".join(chunks) or b"{}")
    except (ValueError, RecursionError) as e:
        raise errors.bad_request(f"Unrecognized JSON: {e}") from None
    if not isinstance(body, dict):
        raise errors.bad_request("The request body must be a JSON object")
    return body


def schema_request(body: dict) -> tuple[str, str, list[Reference]]:
    """(type, schema text, references) of a register, lookup or compatibility request."""
    text = body.get("schema")
    if not isinstance(text, str):
        raise errors.invalid_schema("null: the request has no \"schema\" string")
    schema_type = schema_type_of(body.get("schemaType"))
    if schema_type not in SCHEMA_TYPES:
        raise errors.invalid_schema(f"of type {schema_type}: this registry accepts {', '.join(SCHEMA_TYPES)}")
    references = []
    for reference in body.get("references") or []:
        try:
            references.append(Reference(str(reference["name"]), str(reference["subject"]), int(reference["version"])))
        except (KeyError, TypeError, ValueError):
            raise errors.invalid_schema(f"reference {reference!r}: needs name, subject and version") from None
    return schema_type, text, references


def describe(entry: SchemaVersion, schema: Optional[str] = None) -> dict:
    document: dict[str, Any] = {"subject": entry.subject, "version": entry.version, "id": entry.id}
    document.update(schema_fields(entry, schema))
    return document


def schema_fields(entry: SchemaVersion, schema: Optional[str] = None) -> dict:
    document: dict[str, Any] = {}
    if entry.schema_type != "AVRO":
        document["schemaType"] = entry.schema_type
    if entry.references:
        document["references"] = [r.to_json() for r in entry.references]
    document["schema"] = entry.schema if schema is None else schema
    return document


def schema_id(request: Request) -> int:
    try:
        return int(request.path_params["id"])
    except ValueError:
        raise errors.schema_not_found(f"Schema {request.path_params['id']} not found") from None


def build_app(registry: SchemaRegistry) -> Starlette:
    state = registry.state

    def schema_text(request: Request, entry: SchemaVersion) -> str:
        """`?format=serialized`: a Protobuf schema as a base64 FileDescriptorProto (what
        confluent-kafka's Protobuf serdes ask for), where it was registered as one."""
        if request.query_params.get("format") == "serialized" and entry.schema_type == "PROTOBUF":
            from fastlog.schema_registry.protobuf_compatibility import serialized

            return serialized(registry.parsed(entry).parsed) or entry.schema
        return entry.schema

    def entry_of_id(number: int, subject: Optional[str] = None) -> SchemaVersion:
        entries = state.versions_of_id(number, deleted=True)
        if subject:
            entries = [e for e in entries if e.subject == subject] or entries
        if not entries:
            raise errors.schema_not_found(f"Schema {number} not found")
        return entries[0]

    # -- /subjects --------------------------------------------------------------------------

    async def list_subjects(request: Request) -> Response:
        prefix = request.query_params.get("subjectPrefix", "")
        names = state.subject_names(deleted=flag(request, "deleted"))
        if flag(request, "deletedOnly"):
            live = set(state.subject_names())
            names = [n for n in names if n not in live]
        return json_response([n for n in names if n.startswith(prefix)])

    async def list_versions(request: Request) -> Response:
        subject = request.path_params["subject"]
        entries = state.all_versions(subject) if flag(request, "deleted") else state.live_versions(subject)
        if not entries:
            raise errors.subject_not_found(subject)
        return json_response([e.version for e in entries])

    async def register(request: Request) -> Response:
        subject = request.path_params["subject"]
        body = await read_body(request)
        schema_type, text, references = schema_request(body)
        given_id = body.get("id")
        given_version = body.get("version")
        number = await registry.register(
            subject, schema_type, text, references, normalize=flag(request, "normalize"),
            schema_id=int(given_id) if isinstance(given_id, int) and given_id > 0 else None,
            version=int(given_version) if isinstance(given_version, int) and given_version > 0 else None,
        )
        return json_response({"id": number})

    async def get_version(request: Request) -> Response:
        entry = registry.version_entry(request.path_params["subject"], request.path_params["version"], deleted=flag(request, "deleted"))
        return json_response(describe(entry, schema_text(request, entry)))

    async def get_version_schema(request: Request) -> Response:
        entry = registry.version_entry(request.path_params["subject"], request.path_params["version"], deleted=flag(request, "deleted"))
        return Response(entry.schema, media_type=CONTENT_TYPE)

    async def referenced_by(request: Request) -> Response:
        entry = registry.version_entry(request.path_params["subject"], request.path_params["version"])
        return json_response(state.referenced_by(entry.subject, entry.version))

    async def delete_version(request: Request) -> Response:
        version = await registry.delete_version(request.path_params["subject"], request.path_params["version"], flag(request, "permanent"))
        return json_response(version)

    async def lookup(request: Request) -> Response:
        subject = request.path_params["subject"]
        schema_type, text, references = schema_request(await read_body(request))
        entry = registry.lookup(subject, schema_type, text, references, normalize=flag(request, "normalize"), deleted=flag(request, "deleted"))
        return json_response(describe(entry))

    async def delete_subject(request: Request) -> Response:
        return json_response(await registry.delete_subject(request.path_params["subject"], flag(request, "permanent")))

    # -- /schemas ---------------------------------------------------------------------------

    async def get_schema(request: Request) -> Response:
        entry = entry_of_id(schema_id(request), request.query_params.get("subject"))
        return json_response(schema_fields(entry, schema_text(request, entry)))

    async def get_schema_text(request: Request) -> Response:
        return Response(entry_of_id(schema_id(request), request.query_params.get("subject")).schema, media_type=CONTENT_TYPE)

    async def schema_subjects(request: Request) -> Response:
        number = schema_id(request)
        entries = state.versions_of_id(number, deleted=flag(request, "deleted"))
        if not entries and number not in state.contents:
            raise errors.schema_not_found(f"Schema {number} not found")
        return json_response(sorted({e.subject for e in entries}))

    async def schema_versions(request: Request) -> Response:
        number = schema_id(request)
        entries = state.versions_of_id(number, deleted=flag(request, "deleted"))
        if not entries and number not in state.contents:
            raise errors.schema_not_found(f"Schema {number} not found")
        return json_response([{"subject": e.subject, "version": e.version} for e in entries])

    async def schema_types(request: Request) -> Response:
        return json_response(list(SCHEMA_TYPES))

    async def list_schemas(request: Request) -> Response:
        prefix = request.query_params.get("subjectPrefix", "")
        deleted, latest_only = flag(request, "deleted"), flag(request, "latestOnly")
        out = []
        for subject in state.subject_names(deleted=deleted):
            if not subject.startswith(prefix):
                continue
            entries = state.all_versions(subject) if deleted else state.live_versions(subject)
            out += [describe(e) for e in (entries[-1:] if latest_only else entries)]
        return json_response(out)

    # -- /compatibility ---------------------------------------------------------------------

    async def check(request: Request) -> Response:
        subject = request.path_params["subject"]
        version = request.path_params.get("version")
        if version is not None:
            parse_version(version)
        verbose = flag(request, "verbose")
        try:
            schema_type, text, references = schema_request(await read_body(request))
            problems = registry.check(subject, version, schema_type, text, references, normalize=flag(request, "normalize"))
        except errors.RegistryError as e:
            if e.error_code != 42201 or not verbose:
                raise
            problems = [e.message]
        document: dict[str, Any] = {"is_compatible": not problems}
        if verbose:
            document["messages"] = problems
        return json_response(document)

    # -- /config and /mode ------------------------------------------------------------------

    async def get_config(request: Request) -> Response:
        subject = request.path_params.get("subject")
        if subject is not None and subject not in state.configs and not flag(request, "defaultToGlobal"):
            raise errors.subject_compatibility_not_configured(subject)
        return json_response({"compatibilityLevel": registry.compatibility_level(subject)})

    async def put_config(request: Request) -> Response:
        body = await read_body(request)
        level = await registry.set_compatibility(request.path_params.get("subject"), body.get("compatibility", body.get("compatibilityLevel")))
        return json_response({"compatibility": level})

    async def delete_config(request: Request) -> Response:
        return json_response({"compatibilityLevel": await registry.delete_compatibility(request.path_params.get("subject"))})

    async def get_mode(request: Request) -> Response:
        subject = request.path_params.get("subject")
        if subject is not None and subject not in state.modes and not flag(request, "defaultToGlobal"):
            raise errors.subject_mode_not_configured(subject)
        return json_response({"mode": registry.mode(subject)})

    async def put_mode(request: Request) -> Response:
        body = await read_body(request)
        mode = await registry.set_mode(request.path_params.get("subject"), body.get("mode"), force=flag(request, "force"))
        return json_response({"mode": mode})

    async def delete_mode(request: Request) -> Response:
        return json_response({"mode": await registry.delete_mode(request.path_params["subject"])})

    async def root(request: Request) -> Response:
        return json_response({})

    def route(path: str, endpoint: Callable[[Request], Awaitable[Response]], methods: list[str]) -> Route:
        async def answer(request: Request) -> Response:
            try:
                await registry.wait_ready()
                return await endpoint(request)
            except errors.RegistryError as e:
                return error_response(e)
        return Route(path, answer, methods=methods)

    async def not_found(request: Request, exc: Exception) -> Response:
        return json_response({"error_code": 404, "message": "HTTP 404 Not Found"}, 404)

    async def not_allowed(request: Request, exc: Exception) -> Response:
        return json_response({"error_code": 405, "message": "HTTP 405 Method Not Allowed"}, 405)

    async def internal(request: Request, exc: Exception) -> Response:
        log.exception("schema registry: %s %s failed", request.method, request.url.path, exc_info=exc)
        return json_response({"error_code": 500, "message": "Internal Server Error"}, 500)

    return Starlette(exception_handlers={404: not_found, 405: not_allowed, 500: internal}, routes=[
        route("/", root, ["GET"]),
        route("/subjects", list_subjects, ["GET"]),
        route("/subjects/{subject:path}/versions", list_versions, ["GET"]),
        route("/subjects/{subject:path}/versions", register, ["POST"]),
        route("/subjects/{subject:path}/versions/{version}", get_version, ["GET"]),
        route("/subjects/{subject:path}/versions/{version}", delete_version, ["DELETE"]),
        route("/subjects/{subject:path}/versions/{version}/schema", get_version_schema, ["GET"]),
        route("/subjects/{subject:path}/versions/{version}/referencedby", referenced_by, ["GET"]),
        route("/subjects/{subject:path}", lookup, ["POST"]),
        route("/subjects/{subject:path}", delete_subject, ["DELETE"]),
        route("/schemas", list_schemas, ["GET"]),
        route("/schemas/types", schema_types, ["GET"]),
        route("/schemas/ids/{id}", get_schema, ["GET"]),
        route("/schemas/ids/{id}/schema", get_schema_text, ["GET"]),
        route("/schemas/ids/{id}/subjects", schema_subjects, ["GET"]),
        route("/schemas/ids/{id}/versions", schema_versions, ["GET"]),
        route("/compatibility/subjects/{subject:path}/versions/{version}", check, ["POST"]),
        route("/compatibility/subjects/{subject:path}/versions", check, ["POST"]),
        route("/config", get_config, ["GET"]),
        route("/config", put_config, ["PUT"]),
        route("/config", delete_config, ["DELETE"]),
        route("/config/{subject:path}", get_config, ["GET"]),
        route("/config/{subject:path}", put_config, ["PUT"]),
        route("/config/{subject:path}", delete_config, ["DELETE"]),
        route("/mode", get_mode, ["GET"]),
        route("/mode", put_mode, ["PUT"]),
        route("/mode/{subject:path}", get_mode, ["GET"]),
        route("/mode/{subject:path}", put_mode, ["PUT"]),
        route("/mode/{subject:path}", delete_mode, ["DELETE"]),
    ])
