"""Confluent Schema Registry's REST API (same paths, status codes, error codes and JSON), as a
Starlette application over a `SchemaRegistry`."""

from __future__ import annotations

import json
import logging
from typing import Any, Awaitable, Callable, Optional

from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import Response

from fastlog.http_serving import declared_length, read_body_within
from fastlog.schema_registry import errors
from fastlog.schema_registry.registry import SchemaRegistry, parse_version
from fastlog.schema_registry.schema_types import SCHEMA_TYPES, Reference, compact_json, schema_type_of
from fastlog.schema_registry.state import SchemaVersion

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
# What a request body may be (Confluent's list; octet-stream is read as JSON)
REQUEST_TYPES = {CONTENT_TYPE, "application/vnd.schemaregistry+json", "application/json", "application/octet-stream"}
# What a response may be, the registry's preference first
RESPONSE_TYPES = (CONTENT_TYPE, "application/vnd.schemaregistry+json", "application/json")
MAX_BODY_BYTES = 16 << 20  # a schema larger than this is refused (413), not read into memory


def response_type(request: Request) -> str:
    """The response's media type from the Accept header (406 when none can be given)."""
    accept = request.headers.get("accept", "").strip()
    if not accept:
        return CONTENT_TYPE
    wanted = [part.split(";")[0].strip().lower() for part in accept.split(",")]
    if any(w in ("*/*", "application/*") for w in wanted):
        return CONTENT_TYPE
    for media_type in RESPONSE_TYPES:
        if media_type in wanted:
            return media_type
    raise errors.RegistryError(406, 406, "HTTP 406 Not Acceptable")


def json_response(document: Any, status: int = 200, media_type: str = CONTENT_TYPE) -> Response:
    return Response(compact_json(document), status, media_type=media_type)


def flag(request: Request, name: str) -> bool:
    return request.query_params.get(name, "false").strip().lower() == "true"


async def read_body(request: Request) -> dict:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type and content_type not in REQUEST_TYPES:
        raise errors.RegistryError(415, 415, "HTTP 415 Unsupported Media Type")
    raw = await read_body_within(request, MAX_BODY_BYTES)
    if raw is None:
        declared = declared_length(request)
        if declared > MAX_BODY_BYTES:
            raise errors.RegistryError(413, 413, f"Request body of {declared} bytes is larger than {MAX_BODY_BYTES}")
        raise errors.RegistryError(413, 413, f"Request body is larger than {MAX_BODY_BYTES} bytes")
    if not raw.strip():
        raise errors.RegistryError(422, 422, "The request body is missing")
    try:
        body = json.loads(raw)
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
    given_type = body.get("schemaType")
    schema_type = schema_type_of(None if given_type is None else str(given_type))
    if schema_type not in SCHEMA_TYPES:
        raise errors.invalid_schema_message(f"Invalid schema type {schema_type}")
    given_references = body.get("references") or []
    if not isinstance(given_references, list):
        raise errors.bad_request("\"references\" must be a list of {name, subject, version}")
    references = []
    for reference in given_references:
        try:
            references.append(Reference(str(reference["name"]), str(reference["subject"]), int(reference["version"])))
        except (KeyError, TypeError, ValueError, OverflowError):
            raise errors.invalid_schema(f"reference {reference!r}: needs name, subject and version") from None
    return schema_type, text, references


def whole_number(value: Any) -> bool:
    """A JSON integer that fits Confluent's 4-byte ids and versions (42201/42202 otherwise,
    by the registry); true and false are not numbers here."""
    return isinstance(value, int) and not isinstance(value, bool)


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


Handler = Callable[[Request], Awaitable[Response]]


def build_app(registry: SchemaRegistry) -> "RegistryApp":
    state = registry.state

    async def schema_text(request: Request, entry: SchemaVersion) -> str:
        """`?format=serialized`: a Protobuf schema as a base64 FileDescriptorProto (what
        confluent-kafka's Protobuf serdes ask for), also when it was registered as text."""
        if request.query_params.get("format") == "serialized" and entry.schema_type == "PROTOBUF":
            from fastlog.schema_registry.protobuf_compatibility import ProtoError, serialized

            try:
                return serialized((await registry.parsed(entry)).parsed, entry.schema)
            except ProtoError as e:
                raise errors.invalid_schema(f"of type PROTOBUF, details: {e}") from None
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
        if flag(request, "deletedOnly"):  # subjects whose every version is soft-deleted
            live = set(state.subject_names())
            names = [n for n in state.subject_names(deleted=True) if n not in live]
        else:
            names = state.subject_names(deleted=flag(request, "deleted"))
        return json_response([n for n in names if n.startswith(prefix)])

    async def list_versions(request: Request) -> Response:
        subject = request.path_params["subject"]
        if flag(request, "deletedOnly"):
            entries = [e for e in state.all_versions(subject) if e.deleted]
        else:
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
            schema_id=given_id if whole_number(given_id) and given_id >= 0 else None,
            version=given_version if whole_number(given_version) and given_version > 0 else None,
        )
        return json_response({"id": number})

    async def get_version(request: Request) -> Response:
        entry = registry.version_entry(request.path_params["subject"], request.path_params["version"], deleted=flag(request, "deleted"))
        return json_response(describe(entry, await schema_text(request, entry)))

    async def get_version_schema(request: Request) -> Response:
        entry = registry.version_entry(request.path_params["subject"], request.path_params["version"], deleted=flag(request, "deleted"))
        return Response(entry.schema, media_type=CONTENT_TYPE)

    async def referenced_by(request: Request) -> Response:
        entry = registry.version_entry(request.path_params["subject"], request.path_params["version"], deleted=True)
        return json_response(state.referenced_by(entry.subject, entry.version, deleted=flag(request, "deleted")))

    async def delete_version(request: Request) -> Response:
        version = await registry.delete_version(request.path_params["subject"], request.path_params["version"], flag(request, "permanent"))
        return json_response(version)

    async def lookup(request: Request) -> Response:
        subject = request.path_params["subject"]
        schema_type, text, references = schema_request(await read_body(request))
        entry = await registry.lookup(subject, schema_type, text, references, normalize=flag(request, "normalize"), deleted=flag(request, "deleted"))
        return json_response(describe(entry))

    async def delete_subject(request: Request) -> Response:
        return json_response(await registry.delete_subject(request.path_params["subject"], flag(request, "permanent")))

    # -- /schemas ---------------------------------------------------------------------------

    async def get_schema(request: Request) -> Response:
        entry = entry_of_id(schema_id(request), request.query_params.get("subject"))
        return json_response(schema_fields(entry, await schema_text(request, entry)))

    async def get_schema_text(request: Request) -> Response:
        return Response(entry_of_id(schema_id(request), request.query_params.get("subject")).schema, media_type=CONTENT_TYPE)

    def versions_of_id(request: Request) -> list[SchemaVersion]:
        """The versions with the id (soft-deleted ones with ?deleted=true); 40403 when no
        version has it, not even a soft-deleted one."""
        number = schema_id(request)
        if not state.versions_of_id(number, deleted=True):
            raise errors.schema_not_found()
        return state.versions_of_id(number, deleted=flag(request, "deleted"))

    async def schema_subjects(request: Request) -> Response:
        return json_response(sorted({e.subject for e in versions_of_id(request)}))

    async def schema_versions(request: Request) -> Response:
        return json_response([{"subject": e.subject, "version": e.version} for e in versions_of_id(request)])

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
            problems = await registry.check(subject, version, schema_type, text, references, normalize=flag(request, "normalize"))
        except errors.RegistryError as e:
            if e.error_code != 42201 or not verbose:
                raise
            problems = [e.message]
        document: dict[str, Any] = {"is_compatible": not problems}
        if verbose:
            document["messages"] = problems
        return json_response(document)

    # -- /config and /mode ------------------------------------------------------------------

    def setting_routes(settings: dict, field: str, current: Callable[[Optional[str]], str],
                       not_configured: Callable[[str], errors.RegistryError]) -> Handler:
        """GET /config[/{s}] and GET /mode[/{s}]: the subject's own setting (unset: 40408 or
        40409), or with ?defaultToGlobal=true what applies to it."""
        async def get(request: Request) -> Response:
            subject = request.path_params.get("subject")
            if subject is not None and subject not in settings and not flag(request, "defaultToGlobal"):
                raise not_configured(subject)
            return json_response({field: current(subject)})
        return get

    get_config = setting_routes(state.configs, "compatibilityLevel", registry.compatibility_level, errors.subject_compatibility_not_configured)
    get_mode = setting_routes(state.modes, "mode", registry.mode, errors.subject_mode_not_configured)

    async def put_config(request: Request) -> Response:
        body = await read_body(request)
        level = await registry.set_compatibility(request.path_params.get("subject"), body.get("compatibility", body.get("compatibilityLevel")))
        return json_response({"compatibility": level})

    async def delete_config(request: Request) -> Response:
        return json_response({"compatibilityLevel": await registry.delete_compatibility(request.path_params.get("subject"))})

    async def put_mode(request: Request) -> Response:
        body = await read_body(request)
        mode = await registry.set_mode(request.path_params.get("subject"), body.get("mode"), force=flag(request, "force"))
        return json_response({"mode": mode})

    async def delete_mode(request: Request) -> Response:
        return json_response({"mode": await registry.delete_mode(request.path_params["subject"])})

    async def root(request: Request) -> Response:
        return json_response({})

    return RegistryApp(registry, [
        ("GET", "", root), ("POST", "", root),
        ("GET", "subjects", list_subjects),
        ("GET", "subjects/{subject}/versions", list_versions),
        ("POST", "subjects/{subject}/versions", register),
        ("GET", "subjects/{subject}/versions/{version}", get_version),
        ("DELETE", "subjects/{subject}/versions/{version}", delete_version),
        ("GET", "subjects/{subject}/versions/{version}/schema", get_version_schema),
        ("GET", "subjects/{subject}/versions/{version}/referencedby", referenced_by),
        ("POST", "subjects/{subject}", lookup),
        ("DELETE", "subjects/{subject}", delete_subject),
        ("GET", "schemas", list_schemas),
        ("GET", "schemas/types", schema_types),
        ("GET", "schemas/ids/{id}", get_schema),
        ("GET", "schemas/ids/{id}/schema", get_schema_text),
        ("GET", "schemas/ids/{id}/subjects", schema_subjects),
        ("GET", "schemas/ids/{id}/versions", schema_versions),
        ("POST", "compatibility/subjects/{subject}/versions/{version}", check),
        ("POST", "compatibility/subjects/{subject}/versions", check),
        ("GET", "config", get_config), ("PUT", "config", put_config), ("DELETE", "config", delete_config),
        ("GET", "config/{subject}", get_config), ("PUT", "config/{subject}", put_config), ("DELETE", "config/{subject}", delete_config),
        ("GET", "mode", get_mode), ("PUT", "mode", put_mode),
        ("GET", "mode/{subject}", get_mode), ("PUT", "mode/{subject}", put_mode), ("DELETE", "mode/{subject}", delete_mode),
    ])



class RegistryApp:
    """The ASGI application: routes match the raw path segment by segment, each decoded
    after the split (as Confluent's Jersey does), so a subject may hold an encoded "/"
    (Protobuf dependencies are registered under their file names, "a/b.proto"); a path
    that matches no route is 404, a route with another method 405; errors are Confluent's
    JSON bodies."""

    def __init__(self, registry: SchemaRegistry, routes: list[tuple[str, str, Handler]]) -> None:
        self.registry = registry
        self.routes = [(method, tuple(pattern.split("/")) if pattern else (), handler) for method, pattern, handler in routes]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":  # lifespan: nothing to set up
            if scope["type"] == "lifespan":
                message = await receive()
                while message["type"] != "lifespan.shutdown":
                    await send({"type": message["type"] + ".complete"})
                    message = await receive()
                await send({"type": "lifespan.shutdown.complete"})
            return
        request = Request(scope, receive)
        response = await self._answer(request)
        await response(scope, receive, send)

    def _match(self, segments: tuple[str, ...], method: str) -> tuple[Optional[Handler], dict[str, str], bool]:
        """(handler, path params, whether the path matched some route at all)."""
        path_matched = False
        for route_method, pattern, handler in self.routes:
            if len(pattern) != len(segments):
                continue
            params = {}
            for want, got in zip(pattern, segments):
                if want.startswith("{"):
                    params[want[1:-1]] = got
                elif want != got:
                    break
            else:
                path_matched = True
                if route_method == method:
                    return handler, params, True
        return None, {}, path_matched

    async def _answer(self, request: Request) -> Response:
        try:
            media_type = response_type(request)
        except errors.RegistryError as e:
            return json_response(e.body(), e.status)
        raw_path = request.scope.get("raw_path") or request.scope["path"].encode()
        segments = tuple(unquote(part) for part in raw_path.decode("utf-8", "replace").split("?")[0].strip("/").split("/") if part != "")
        handler, params, path_matched = self._match(segments, request.method)
        try:
            if handler is None:
                raise errors.RegistryError(405, 405, "HTTP 405 Method Not Allowed") if path_matched else errors.RegistryError(404, 404, "HTTP 404 Not Found")
            request.scope["path_params"] = params
            await self.registry.wait_ready()
            response = await handler(request)
        except errors.RegistryError as e:
            response = json_response(e.body(), e.status)
        except Exception:
            log.exception("schema registry: %s %s failed", request.method, request.url.path)
            response = json_response({"error_code": 500, "message": "Internal Server Error"}, 500)
        response.headers["content-type"] = media_type
        return response
