"""The console's HTTP side: a Starlette application serving the pages (`static/`) and the JSON
endpoints they call (`/api/...`).

- Reads: GET; changes (config edits, test messages, offset resets, login): POST with a JSON
  body, refused with 403 in read-only mode (`console.read.only=true`).
- Errors: `{"error": "..."}` with 400 (bad input), 401 (login needed or refused), 403 (read
  only, or the cluster's ACLs said no), 404 (no such topic, partition, group or subject), 502
  (the cluster or the registry did not answer).
- Login: when the console reaches the cluster through a SASL listener, each user logs in with
  their own SASL username and password; their requests go to the cluster as them, so the
  cluster's ACLs decide every action. Sessions are a random cookie, kept in memory.
"""

from __future__ import annotations

import difflib
import json
import logging
import secrets
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional, Union

import trio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from fastlog.client import Client, ClientError, KafkaError
from fastlog.console.cluster_view import BadRequest, ClusterView, NotFound, int_param
from fastlog.console.decode import RegistryUnavailable, SchemaLookup
from fastlog.console.history import History
from fastlog.http_serving import read_body_within
from fastlog.protocol import ErrorCode
from fastlog.security.client_side import ClientSecurity, SaslFailed
from fastlog.tools import ToolError

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
SESSION_COOKIE = "fastlog_console"
SESSION_IDLE_SECONDS = 3600
MAX_SESSIONS = 1000
MAX_BODY_BYTES = 2 << 20
LOGIN_FAILURES, LOGIN_BACKOFF_SECONDS = 5, 60.0  # this many failed logins from an address: it waits this long
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]", "::1")
SECURITY_HEADERS = [
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy", b"default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'"),
]
FORBIDDEN = {
    ErrorCode.TOPIC_AUTHORIZATION_FAILED, ErrorCode.GROUP_AUTHORIZATION_FAILED, ErrorCode.CLUSTER_AUTHORIZATION_FAILED,
    ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, ErrorCode.DELEGATION_TOKEN_AUTHORIZATION_FAILED,
}
MISSING = {ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, ErrorCode.GROUP_ID_NOT_FOUND, ErrorCode.UNKNOWN_TOPIC_ID}
REFUSED = {
    ErrorCode.INVALID_CONFIG, ErrorCode.POLICY_VIOLATION, ErrorCode.INVALID_REQUEST, ErrorCode.NON_EMPTY_GROUP,
    ErrorCode.RECORD_LIST_TOO_LARGE, ErrorCode.MESSAGE_TOO_LARGE, ErrorCode.INVALID_RECORD, ErrorCode.INVALID_TOPIC_EXCEPTION,
}


class Unauthorized(Exception):
    """Login needed, or the cluster refused the username and password (HTTP 401)."""


class ReadOnly(Exception):
    """A change asked of a read-only console, or a request from elsewhere (HTTP 403)."""


class TooManyLogins(Exception):
    """Logins from one address failed too often lately (HTTP 429)."""


@dataclass
class Session:
    user: str
    view: ClusterView
    limiter: trio.CapacityLimiter = field(default_factory=lambda: trio.CapacityLimiter(1))
    last_used: float = field(default_factory=time.monotonic)


@dataclass
class ConsoleSettings:
    # In a broker, its own listener and registry, which are bound after the console starts:
    # so both may be given as functions, asked when first needed.
    bootstrap: Union[str, Callable[[], str]]
    security: ClientSecurity = field(default_factory=ClientSecurity)
    read_only: bool = False
    registry_url: Union[None, str, Callable[[], Optional[str]]] = None
    sample_seconds: float = 5.0
    request_timeout: float = 10.0
    # in a broker: its socket byte counters, for the overview's charts, and /metrics beside the pages
    local_counters: Optional[Callable[[], dict]] = None
    metrics: bool = False
    # SASL mechanisms a login tries in turn (a user may exist for PLAIN or for SCRAM only);
    # empty: the security's own mechanism
    login_mechanisms: tuple[str, ...] = ()
    # Listening on loopback only: then a request must name a loopback host (a web page whose
    # own name resolves to 127.0.0.1, DNS rebinding, is refused)
    loopback_only: bool = True

    @property
    def login_required(self) -> bool:
        """Users log in when the cluster wants SASL and the console was given no user of its own."""
        return self.security.uses_sasl and not self.security.username


class Console:
    def __init__(self, settings: ConsoleSettings) -> None:
        self.settings = settings
        self._schemas: Optional[SchemaLookup] = None
        self.sessions: dict[str, Session] = {}
        self.failures: dict[str, tuple[int, float]] = {}  # peer -> (failed logins, since)
        self.login_limiter = trio.CapacityLimiter(2)  # logins talk SASL with the cluster: a few at once
        self.shared: Optional[Session] = None if settings.login_required else Session("", self.new_view(settings.security))
        self.history: Optional[History] = None
        if not settings.login_required:  # a logged-in user's rights are not lent to background work
            self.history = History(self.new_view(settings.security), settings.sample_seconds, settings.local_counters)

    @property
    def bootstrap(self) -> str:
        source = self.settings.bootstrap
        return source() if callable(source) else source

    @property
    def schemas(self) -> Optional[SchemaLookup]:
        if self._schemas is None:
            source = self.settings.registry_url
            url = source() if callable(source) else source
            self._schemas = SchemaLookup(url) if url else None
        return self._schemas

    def new_view(self, security: ClientSecurity) -> ClusterView:
        def connect() -> Client:
            return Client(self.bootstrap, timeout=self.settings.request_timeout, client_id="fastlog-console", security=security)

        return ClusterView(connect, lambda: self.schemas)

    async def run(self) -> None:
        """Background work (the history's sampling) until cancelled."""
        if self.history is not None:
            await self.history.run()

    def close(self) -> None:
        for session in [self.shared, *self.sessions.values()]:
            if session is not None:
                session.view.close()
        if self.history is not None:
            self.history.view.close()

    # sessions

    def session(self, request: Request) -> Session:
        if self.history is not None:
            self.history.viewed()
        if self.shared is not None:
            return self.shared
        session = self.sessions.get(request.cookies.get(SESSION_COOKIE, ""))
        if session is None or time.monotonic() - session.last_used > SESSION_IDLE_SECONDS:
            raise Unauthorized("log in with your SASL username and password")
        session.last_used = time.monotonic()
        return session

    async def login(self, username: str, password: str, peer: str) -> tuple[str, Session]:
        self._check_failures(peer)
        refusal: Optional[Exception] = None
        for mechanism in self.settings.login_mechanisms or (self.settings.security.mechanism,):
            security = replace(self.settings.security, mechanism=mechanism, username=username, password=password)
            session = Session(username, self.new_view(security))
            try:
                await trio.to_thread.run_sync(session.view.call, session.view.client.metadata, limiter=self.login_limiter, abandon_on_cancel=True)
            except (SaslFailed, KafkaError) as e:
                session.view.close()
                refusal = e
                continue
            except BaseException:  # the cluster away, or the request cancelled: no connection left behind
                session.view.close()
                raise
            self._forget_idle()
            token = secrets.token_urlsafe(32)
            self.sessions[token] = session
            self.failures.pop(peer, None)
            return token, session
        self._note_failure(peer)
        raise Unauthorized(f"login refused: {refusal}")

    def _check_failures(self, peer: str) -> None:
        count, since = self.failures.get(peer, (0, 0.0))
        if count >= LOGIN_FAILURES and time.monotonic() - since < LOGIN_BACKOFF_SECONDS:
            raise TooManyLogins(f"{count} failed logins from {peer}: wait {LOGIN_BACKOFF_SECONDS:.0f} s")

    def _note_failure(self, peer: str) -> None:
        now = time.monotonic()
        count, since = self.failures.get(peer, (0, now))
        if now - since >= LOGIN_BACKOFF_SECONDS:
            count, since = 0, now
        if len(self.failures) >= MAX_SESSIONS:
            self.failures.clear()
        self.failures[peer] = (count + 1, since)

    def _forget_idle(self) -> None:
        now = time.monotonic()
        for token, session in list(self.sessions.items()):
            if now - session.last_used > SESSION_IDLE_SECONDS:
                session.view.close()
                del self.sessions[token]
        while len(self.sessions) >= MAX_SESSIONS:
            token = min(self.sessions, key=lambda t: self.sessions[t].last_used)
            self.sessions.pop(token).view.close()


async def run_view(session: Session, operation: Callable[..., Any], *args: Any) -> Any:
    """A blocking `ClusterView` call on a worker thread, one at a time per session."""
    return await trio.to_thread.run_sync(session.view.call, operation, *args, limiter=session.limiter, abandon_on_cancel=True)


async def json_body(request: Request) -> dict:
    body = await read_body_within(request, MAX_BODY_BYTES)
    if body is None:
        raise BadRequest(f"a request body may hold at most {MAX_BODY_BYTES} bytes")
    try:
        document = json.loads(body or b"{}")
    except ValueError as e:
        raise BadRequest(f"the body is not JSON: {e}") from None
    if not isinstance(document, dict):
        raise BadRequest("the body must be a JSON object")
    return document


def error_response(e: Exception) -> JSONResponse:
    if isinstance(e, BadRequest):
        return JSONResponse({"error": str(e)}, 400)
    if isinstance(e, NotFound):
        return JSONResponse({"error": str(e)}, 404)
    if isinstance(e, Unauthorized):
        return JSONResponse({"error": str(e)}, 401)
    if isinstance(e, ReadOnly):
        return JSONResponse({"error": str(e)}, 403)
    if isinstance(e, TooManyLogins):
        return JSONResponse({"error": str(e)}, 429)
    if isinstance(e, ToolError):
        return JSONResponse({"error": str(e)}, 409)
    if isinstance(e, RegistryUnavailable):
        status = e.args[1] if e.args[1] in (404, 409, 422) else 502
        return JSONResponse({"error": str(e.args[0])}, status)
    if isinstance(e, KafkaError):
        status = 403 if e.code in FORBIDDEN else 404 if e.code in MISSING else 400 if e.code in REFUSED else 502
        return JSONResponse({"error": str(e), "kafka_error": e.name}, status)
    if isinstance(e, (ClientError, OSError)):
        return JSONResponse({"error": f"the cluster did not answer: {e}"}, 502)
    raise e


def check_origin(console: Console, request: Request) -> None:
    """Refuses what a web page elsewhere could make a browser send: a request naming a
    non-loopback host to a loopback console (DNS rebinding), a POST from another origin or
    one that is not JSON (a form or a `no-cors` fetch; a JSON body makes the browser ask first)."""
    host = request.headers.get("host", "")
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    if console.settings.loopback_only and name not in LOOPBACK_NAMES and not name.startswith("127."):
        raise ReadOnly(f"this console answers requests for a loopback host, not {host!r}")
    if request.method == "POST":
        origin = request.headers.get("origin")
        if origin is not None and origin.split("://", 1)[-1] != host:
            raise ReadOnly(f"a request from {origin} is refused")
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            raise BadRequest("a change must be sent as application/json")


def endpoint(console: Console, handler: Callable[..., Any], *, change: bool = False, needs_session: bool = True) -> Callable[[Request], Any]:
    """A route's function: the origin check, the session (None for the routes that come
    before one: info, login, logout), read-only refusal for changes, errors as JSON."""

    async def serve(request: Request) -> Response:
        try:
            check_origin(console, request)
            if change and console.settings.read_only:
                raise ReadOnly("this console is read-only (console.read.only=true)")
            session = console.session(request) if needs_session else None
            result = await handler(request, session)
        except Exception as e:
            return error_response(e)
        return result if isinstance(result, Response) else JSONResponse(result)

    return serve


def optional_int(request: Request, name: str, **bounds: int) -> Optional[int]:
    value = request.query_params.get(name, "")
    return None if value == "" else int_param(value, name, **bounds)


def build_routes(console: Console) -> list[BaseRoute]:
    async def info(request: Request, _: None) -> dict:
        session = console.shared or console.sessions.get(request.cookies.get(SESSION_COOKIE, ""))
        return {
            "read_only": console.settings.read_only,
            "login_required": console.settings.login_required,
            "user": session.user if session is not None else None,
            "logged_in": session is not None,
            "schema_registry": console.schemas is not None,
            "bootstrap": console.bootstrap,
            "metrics": console.settings.metrics,
        }

    async def login(request: Request, _: None) -> Response:
        if not console.settings.login_required:
            raise BadRequest("this console needs no login")
        body = await json_body(request)
        username, password = body.get("username"), body.get("password")
        if not isinstance(username, str) or not username or not isinstance(password, str):
            raise BadRequest("username and password are required")
        token, session = await console.login(username, password, request.client.host if request.client else "?")
        response = JSONResponse({"user": session.user})
        response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="strict", max_age=SESSION_IDLE_SECONDS)
        return response

    async def logout(request: Request, _: None) -> Response:
        session = console.sessions.pop(request.cookies.get(SESSION_COOKIE, ""), None)
        if session is not None:
            session.view.close()
        response = JSONResponse({"user": None})
        response.delete_cookie(SESSION_COOKIE)
        return response

    async def overview(request: Request, session: Session) -> dict:
        out = await run_view(session, session.view.overview)
        out["history"] = console.history.rates() if console.history else []
        out["sample_seconds"] = console.settings.sample_seconds
        return out

    async def topics(request: Request, session: Session) -> dict:
        listed = await run_view(session, session.view.topics)
        rates = console.history.topic_rates() if console.history else {}
        for topic in listed:
            topic["messages_per_s"] = rates.get(topic["name"])
        return {"topics": listed}

    async def topic(request: Request, session: Session) -> dict:
        return await run_view(session, session.view.topic, request.path_params["name"])

    async def alter_configs(request: Request, session: Session) -> dict:
        body = await json_body(request)
        return await run_view(
            session, session.view.alter_topic_configs, request.path_params["name"],
            body.get("set", {}), body.get("delete", []), bool(body.get("validate_only", False)),
        )

    async def messages(request: Request, session: Session) -> dict:
        partition = optional_int(request, "partition", high=(1 << 31) - 1)
        offset = optional_int(request, "offset")
        timestamp = optional_int(request, "timestamp")
        limit = optional_int(request, "limit", low=1, high=500) or 50
        if offset is not None and timestamp is not None:
            raise BadRequest("give an offset or a timestamp, not both")
        return await run_view(
            session, lambda: session.view.messages(request.path_params["name"], partition or 0, offset=offset, timestamp=timestamp, limit=limit)
        )

    async def produce(request: Request, session: Session) -> dict:
        body = await json_body(request)
        partition = None if body.get("partition") in (None, "") else int_param(body["partition"], "partition", high=(1 << 31) - 1)
        return await run_view(
            session, session.view.produce, request.path_params["name"], partition, body.get("key"), body.get("value"), body.get("headers", [])
        )

    async def groups(request: Request, session: Session) -> dict:
        listed = await run_view(session, session.view.groups)
        lag = console.history.latest_lag() if console.history else {}
        for group in listed:
            group["lag"] = lag.get(group["group"])
        return {"groups": listed}

    async def group(request: Request, session: Session) -> dict:
        group_id = request.path_params["group"]
        out = await run_view(session, session.view.group, group_id)
        out["lag_history"] = console.history.lag(group_id) if console.history else []
        out["sample_seconds"] = console.settings.sample_seconds
        return out

    async def reset(request: Request, session: Session) -> dict:
        body = await json_body(request)
        value = int_param(body.get("value", 0), "value", low=-(1 << 63))
        topic_name = body.get("topic") or None
        if topic_name is not None and not isinstance(topic_name, str):
            raise BadRequest("topic must be a name")
        return await run_view(
            session, session.view.reset_group, request.path_params["group"], topic_name, str(body.get("to", "")), value, bool(body.get("execute", False))
        )

    def registry() -> SchemaLookup:
        if console.schemas is None:
            raise NotFound("this console knows no schema registry")
        return console.schemas

    async def subjects(request: Request, session: Session) -> dict:
        lookup = registry()
        names = await trio.to_thread.run_sync(lookup.get, "/subjects", abandon_on_cancel=True)
        global_level = await trio.to_thread.run_sync(lookup.get, "/config", abandon_on_cancel=True)
        return {"subjects": sorted(names), "compatibility": global_level.get("compatibilityLevel")}

    async def subject(request: Request, session: Session) -> dict:
        lookup, name = registry(), request.path_params["subject"]

        def read() -> dict:
            versions = [lookup.get(f"/subjects/{quote(name)}/versions/{v}") for v in lookup.get(f"/subjects/{quote(name)}/versions")]
            level = lookup.get(f"/config/{quote(name)}", defaultToGlobal="true").get("compatibilityLevel")
            return {"subject": name, "compatibility": level, "versions": versions}

        return await trio.to_thread.run_sync(read, abandon_on_cancel=True)

    async def diff(request: Request, session: Session) -> dict:
        lookup, name = registry(), request.path_params["subject"]
        old = optional_int(request, "from", low=1, high=(1 << 31) - 1)
        new = optional_int(request, "to", low=1, high=(1 << 31) - 1)
        if old is None or new is None:
            raise BadRequest("give the versions to compare as from= and to=")

        def read() -> dict:
            texts = [pretty_schema(lookup.get(f"/subjects/{quote(name)}/versions/{v}")["schema"]) for v in (old, new)]
            lines = difflib.unified_diff(texts[0].splitlines(), texts[1].splitlines(), f"version {old}", f"version {new}", lineterm="")
            return {"subject": name, "from": old, "to": new, "diff": list(lines)}

        return await trio.to_thread.run_sync(read, abandon_on_cancel=True)

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    api = [
        ("/api/overview", overview, False), ("/api/topics", topics, False), ("/api/topics/{name}", topic, False),
        ("/api/topics/{name}/messages", messages, False), ("/api/groups", groups, False), ("/api/groups/{group}", group, False),
        ("/api/schemas", subjects, False), ("/api/schemas/{subject}", subject, False), ("/api/schemas/{subject}/diff", diff, False),
    ]
    changes = [
        ("/api/topics/{name}/configs", alter_configs), ("/api/topics/{name}/messages", produce), ("/api/groups/{group}/reset", reset),
    ]
    routes: list[BaseRoute] = [
        Route("/", index, methods=["GET", "HEAD"]),
        Route("/api/info", endpoint(console, info, needs_session=False), methods=["GET"]),
        Route("/api/login", endpoint(console, login, needs_session=False), methods=["POST"]),
        Route("/api/logout", endpoint(console, logout, needs_session=False), methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
    ]
    routes += [Route(path, endpoint(console, handler), methods=["GET"]) for path, handler, _ in api]
    routes += [Route(path, endpoint(console, handler, change=True), methods=["POST"]) for path, handler in changes]
    return routes


def quote(subject: str) -> str:
    from urllib.parse import quote as url_quote

    return url_quote(subject, safe="")


def pretty_schema(text: str) -> str:
    try:
        return json.dumps(json.loads(text), indent=2, sort_keys=False)
    except ValueError:
        return text  # Protobuf: already lines


class SecurityHeaders:
    """ASGI middleware: no framing, no sniffing, scripts and styles from this origin only."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: dict) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)


def build_app(console: Console, extra_routes: Optional[list[BaseRoute]] = None) -> Starlette:
    return Starlette(routes=[*(extra_routes or []), *build_routes(console)], middleware=[Middleware(SecurityHeaders)])
