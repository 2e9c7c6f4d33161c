"""The registry's REST API over plain HTTP, endpoint by endpoint and error code by error code,
against Confluent Schema Registry's documented behaviour (the <=7.9 response shapes: register
answers {"id": N}, `schemaType` is left out for AVRO): status codes, `error_code`, the JSON
shapes, the message texts Confluent fixes, and the JSON Schema compatibility rules through
/compatibility.

Each test works in subjects of its own (the `subject` fixture and names derived from it): the
broker, and so the registry's state, is shared by the whole module. Tests that change the
global compatibility level or mode put it back before they end.
"""

from __future__ import annotations

from http.client import HTTPResponse
import json
import random
import socket
from typing import Any, Iterator, Optional

import httpx
import pytest

from tests.schema_registry.conftest import RegistryBroker

V1_JSON = "application/vnd.schemaregistry.v1+json"
MAX_BODY = 16 << 20

STR = {"type": "string"}
OPTIONAL_STR = {"type": "string", "default": ""}

INVALID_VERSION = (
    "The specified version '{}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\""
)
INVALID_LEVEL = (
    "Invalid compatibility level. Valid values are none, backward, forward, full, backward_transitive, forward_transitive, and full_transitive"
)
INVALID_MODE = "Invalid mode. Valid values are READWRITE, READONLY, and IMPORT."


# -- helpers -------------------------------------------------------------------------------------


@pytest.fixture
def http(registry_broker: RegistryBroker) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=registry_broker.url, timeout=10) as client:
        yield client


def record_name(subject: str) -> str:
    """An Avro name of the subject's own, so no other test registers the same schema."""
    return "R" + "".join(c if c.isalnum() else "_" for c in subject)


def record(subject: str, fields: dict[str, dict], suffix: str = "") -> str:
    return json.dumps({"type": "record", "name": record_name(subject) + suffix, "fields": [{"name": n, **spec} for n, spec in fields.items()]})


def register(http: httpx.Client, subject: str, schema: str, **body: Any) -> int:
    answer = http.post(f"/subjects/{subject}/versions", json={"schema": schema, **body})
    assert answer.status_code == 200, answer.text
    assert list(answer.json()) == ["id"]
    return answer.json()["id"]


def ok(answer: httpx.Response) -> Any:
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == V1_JSON
    return answer.json()


def assert_error(answer: httpx.Response, status: int, code: int, message: Optional[str] = None) -> str:
    """The answer is Confluent's error body `{"error_code": code, "message": "..."}`."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == V1_JSON
    body = answer.json()
    assert list(body) == ["error_code", "message"], body
    assert body["error_code"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    if message is not None:
        assert body["message"] == message
    return body["message"]


def set_level(http: httpx.Client, subject: str, level: str) -> None:
    assert ok(http.put(f"/config/{subject}", json={"compatibility": level})) == {"compatibility": level}


# -- the service ---------------------------------------------------------------------------------


def test_root_answers_an_empty_object(http: httpx.Client) -> None:
    assert ok(http.get("/")) == {}


def test_post_root_answers_an_empty_object(http: httpx.Client) -> None:
    assert ok(http.post("/", json={})) == {}


@pytest.mark.parametrize("path", ["/nope", "/schemas/ids", "/schemas/nothing/here", "/v2/subjects"])
def test_unknown_path_is_a_json_404(http: httpx.Client, path: str) -> None:
    assert_error(http.get(path), 404, 404, "HTTP 404 Not Found")


@pytest.mark.parametrize("method,path", [("PUT", "/schemas/types"), ("PATCH", "/subjects"), ("DELETE", "/schemas/ids/1"), ("POST", "/config"), ("GET", "/subjects/x")])
def test_wrong_method_is_a_json_405(http: httpx.Client, method: str, path: str) -> None:
    assert_error(http.request(method, path), 405, 405, "HTTP 405 Method Not Allowed")


def test_wrong_methods_under_a_subject_are_405(http: httpx.Client, subject: str) -> None:
    register(http, subject, record(subject, {"a": STR}))
    assert_error(http.delete(f"/subjects/{subject}/versions"), 405, 405, "HTTP 405 Method Not Allowed")
    assert_error(http.post(f"/subjects/{subject}/versions/1", json={"schema": record(subject, {"a": STR})}), 405, 405, "HTTP 405 Method Not Allowed")
    assert ok(http.get(f"/subjects/{subject}/versions")) == [1]


def test_unknown_path_under_a_subject_is_404(http: httpx.Client, subject: str) -> None:
    assert_error(http.get(f"/subjects/{subject}/versions/1/nonsense"), 404, 404, "HTTP 404 Not Found")


@pytest.mark.parametrize("content_type", [V1_JSON, "application/vnd.schemaregistry+json", "application/json", "application/octet-stream"])
def test_request_content_types_are_accepted(http: httpx.Client, subject: str, content_type: str) -> None:
    body = json.dumps({"schema": record(subject, {"a": STR})}).encode()
    answer = http.post(f"/subjects/{subject}/versions", content=body, headers={"Content-Type": content_type})
    assert "id" in ok(answer)
    looked_up = http.post(f"/subjects/{subject}", content=body, headers={"Content-Type": content_type, "Accept": V1_JSON})
    assert ok(looked_up)["version"] == 1


@pytest.mark.parametrize("accept", [None, "*/*", V1_JSON, "application/vnd.schemaregistry.v1+json, application/json;q=0.5"])
def test_responses_are_schemaregistry_v1_json(http: httpx.Client, accept: Optional[str]) -> None:
    headers = {"Accept": accept} if accept else {}
    answer = http.get("/config", headers=headers)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == V1_JSON


def test_accept_application_json_gets_application_json(http: httpx.Client) -> None:
    answer = http.get("/config", headers={"Accept": "application/json"})
    assert answer.status_code == 200
    assert answer.headers["content-type"].split(";")[0] == "application/json"


def test_unsupported_content_type_is_415(http: httpx.Client, subject: str) -> None:
    body = json.dumps({"schema": record(subject, {"a": STR})})
    answer = http.post(f"/subjects/{subject}/versions", content=body, headers={"Content-Type": "text/plain"})
    assert_error(answer, 415, 415, "HTTP 415 Unsupported Media Type")


def test_unacceptable_accept_is_406(http: httpx.Client) -> None:
    assert_error(http.get("/config", headers={"Accept": "text/html"}), 406, 406, "HTTP 406 Not Acceptable")


# -- request bodies ------------------------------------------------------------------------------

BODY_ENDPOINTS = [
    ("POST", "/subjects/{}/versions"),
    ("POST", "/subjects/{}"),
    ("POST", "/compatibility/subjects/{}/versions"),
    ("POST", "/compatibility/subjects/{}/versions/latest"),
    ("PUT", "/config/{}"),
    ("PUT", "/config"),
    ("PUT", "/mode/{}"),
    ("PUT", "/mode"),
]
SCHEMA_ENDPOINTS = BODY_ENDPOINTS[:4]


@pytest.mark.parametrize("method,path", BODY_ENDPOINTS)
@pytest.mark.parametrize("body", [b"{not json", b'{"schema": "x"', b"\xff\xfe", b'{"schema": "x"} trailing'])
def test_a_body_that_is_not_json_is_400(http: httpx.Client, subject: str, method: str, path: str, body: bytes) -> None:
    answer = http.request(method, path.format(subject), content=body, headers={"Content-Type": V1_JSON})
    assert_error(answer, 400, 400)


@pytest.mark.parametrize("method,path", BODY_ENDPOINTS)
@pytest.mark.parametrize("body", [[{"schema": "\"string\""}], "\"string\"", 5, None])
def test_a_body_that_is_not_a_json_object_is_400(http: httpx.Client, subject: str, method: str, path: str, body: Any) -> None:
    answer = http.request(method, path.format(subject), content=json.dumps(body), headers={"Content-Type": V1_JSON})
    assert_error(answer, 400, 400)


@pytest.mark.parametrize("method,path", SCHEMA_ENDPOINTS)
@pytest.mark.parametrize("body", [{}, {"schemaType": "AVRO"}, {"schema": None}, {"schemaType": "JSON", "references": []}])
def test_a_request_without_a_schema_string_is_42201(http: httpx.Client, subject: str, method: str, path: str, body: dict) -> None:
    assert_error(http.request(method, path.format(subject), json=body), 422, 42201)


def test_an_empty_register_body_is_422(http: httpx.Client, subject: str) -> None:
    answer = http.post(f"/subjects/{subject}/versions", content=b"", headers={"Content-Type": V1_JSON})
    assert_error(answer, 422, 422)


def test_references_that_are_not_a_list_are_400(http: httpx.Client, subject: str) -> None:
    assert_error(http.post(f"/subjects/{subject}/versions", json={"schema": '"string"', "references": 5}), 400, 400)


def test_a_schema_type_that_is_not_a_string_is_42201(http: httpx.Client, subject: str) -> None:
    assert_error(http.post(f"/subjects/{subject}/versions", json={"schema": '"string"', "schemaType": 5}), 422, 42201)


def nested(schema_type: str, depth: int) -> str:
    text = '"string"' if schema_type == "AVRO" else '{"type": "string"}'
    for _ in range(depth):
        text = '{"type": "array", "items": %s}' % text
    return text


@pytest.mark.parametrize("schema_type,depth", [("AVRO", 900), ("JSON", 300)])
def test_a_deeply_nested_schema_is_no_server_error(http: httpx.Client, subject: str, schema_type: str, depth: int) -> None:
    answer = http.post(f"/subjects/{subject}/versions", json={"schemaType": schema_type, "schema": nested(schema_type, depth)})
    assert answer.status_code in (200, 422), answer.text
    if answer.status_code == 422:
        assert_error(answer, 422, 42201)


def test_a_moderately_nested_schema_registers(http: httpx.Client, subject: str) -> None:
    register(http, subject, nested("AVRO", 100))
    register(http, f"{subject}-json", nested("JSON", 50), schemaType="JSON")


def test_unknown_request_fields_are_ignored(http: httpx.Client, subject: str) -> None:
    number = register(http, subject, record(subject, {"a": STR}), metadataX={"a": 1}, somethingElse=[1, 2])
    assert ok(http.get(f"/subjects/{subject}/versions/1"))["id"] == number


def test_a_body_over_16_mib_is_413_before_it_is_read(registry_broker: RegistryBroker, subject: str) -> None:
    """Declared by Content-Length: refused at once, without the registry waiting for (or
    reading) the 16 MiB; only the first bytes are sent."""
    with socket.create_connection(("127.0.0.1", registry_broker.registry_port), timeout=10) as sock:
        head = (
            f"POST /subjects/{subject}/versions HTTP/1.1\r\nHost: 127.0.0.1:{registry_broker.registry_port}\r\n"
            f"Content-Type: {V1_JSON}\r\nContent-Length: {MAX_BODY + 1}\r\n\r\n"
        )
        sock.sendall(head.encode() + b'{"schema": "')
        response = HTTPResponse(sock)
        try:
            response.begin()
            body = response.read()
        finally:
            response.close()
    assert response.status == 413
    assert response.getheader("content-type") == V1_JSON
    document = json.loads(body)
    assert list(document) == ["error_code", "message"] and document["error_code"] == 413
    with httpx.Client(base_url=registry_broker.url, timeout=10) as http_client:
        assert_error(http_client.get(f"/subjects/{subject}/versions"), 404, 40401)


# -- invalid schemas -----------------------------------------------------------------------------


@pytest.mark.parametrize("schema", [
    '{"type": "record", "name": "X", "fields": [{"name": "a", "type": "nosuchtype"}]}',
    '{"type": "record", "fields": []}',
    '{"type": "enum", "name": "E", "symbols": ["A", "A"]}',
    '"nosuchtype"',
    "{not json",
    "",
])
@pytest.mark.parametrize("method,path", SCHEMA_ENDPOINTS)
def test_an_invalid_avro_schema_is_42201(http: httpx.Client, subject: str, schema: str, method: str, path: str) -> None:
    if path.startswith("/subjects/{}") and path.endswith("}"):
        register(http, subject, record(subject, {"a": STR}))  # a lookup parses the schema once the subject is known
    message = assert_error(http.request(method, path.format(subject), json={"schema": schema}), 422, 42201)
    assert message.startswith("Invalid schema")


@pytest.mark.parametrize("schema", ['{"type": "nonsense"}', '{"type": 5}', '{"properties": {"a": {"minimum": "zero"}}}', "[1]", '"string"', "{not json"])
def test_an_invalid_json_schema_is_42201(http: httpx.Client, subject: str, schema: str) -> None:
    answer = http.post(f"/subjects/{subject}/versions", json={"schemaType": "JSON", "schema": schema})
    assert assert_error(answer, 422, 42201).startswith("Invalid schema")
    assert_error(http.get(f"/subjects/{subject}/versions"), 404, 40401)


@pytest.mark.parametrize("schema_type", ["THRIFT", "XML", "AVRO2"])
@pytest.mark.parametrize("method,path", SCHEMA_ENDPOINTS)
def test_an_unknown_schema_type_is_42201(http: httpx.Client, subject: str, schema_type: str, method: str, path: str) -> None:
    answer = http.request(method, path.format(subject), json={"schemaType": schema_type, "schema": '"string"'})
    assert_error(answer, 422, 42201)


TRIVIAL_SCHEMAS = {
    "AVRO": '"string"',
    "JSON": '{"type": "string"}',
    "PROTOBUF": 'syntax = "proto3";\npackage t;\nmessage M { string a = 1; }\n',
}


def test_schema_types_are_those_registration_accepts(http: httpx.Client, subject: str) -> None:
    """/schemas/types lists the types in Confluent's order (["JSON","PROTOBUF","AVRO"]) as far as
    the registry supports them; a listed type registers, an unlisted one is 42201 (PROTOBUF
    while it is not supported)."""
    types = ok(http.get("/schemas/types"))
    assert {"AVRO", "JSON"} <= set(types)
    assert types == [t for t in ("JSON", "PROTOBUF", "AVRO") if t in types]
    for schema_type, schema in TRIVIAL_SCHEMAS.items():
        answer = http.post(f"/subjects/{subject}-{schema_type}/versions", json={"schemaType": schema_type, "schema": schema})
        if schema_type in types:
            assert list(ok(answer)) == ["id"]
        else:
            assert_error(answer, 422, 42201)


@pytest.mark.parametrize("name", ["__GLOBAL", "__EMPTY", "bad%01name", "bad%7Fname"])
def test_an_invalid_subject_name_is_42208(http: httpx.Client, name: str) -> None:
    register_answer = http.post(f"/subjects/{name}/versions", json={"schema": '"string"'})
    config_answer = http.put(f"/config/{name}", json={"compatibility": "NONE"})
    for answer in (register_answer, config_answer):
        message = assert_error(answer, 422, 42208)
        if not name.startswith("bad"):
            assert message == f"The specified subject '{name}' is not a valid."


# -- register --------------------------------------------------------------------------------------


def test_register_answers_the_id_and_reuses_it(http: httpx.Client, subject: str) -> None:
    v1 = record(subject, {"a": STR})
    first = register(http, subject, v1)
    assert isinstance(first, int) and first > 0
    # the same schema (whitespace aside) is the same version
    assert register(http, subject, v1) == first
    assert register(http, subject, json.dumps(json.loads(v1), indent=4)) == first
    assert ok(http.get(f"/subjects/{subject}/versions")) == [1]
    # the same schema in another subject keeps its id
    assert register(http, f"{subject}-other", v1) == first
    assert ok(http.get(f"/subjects/{subject}-other/versions/1"))["id"] == first
    # a new schema is a new id and the next version
    second = register(http, subject, record(subject, {"a": STR, "b": OPTIONAL_STR}))
    assert second > first
    assert ok(http.get(f"/subjects/{subject}/versions")) == [1, 2]


def test_avro_key_order_is_not_a_new_schema(http: httpx.Client, subject: str) -> None:
    name = record_name(subject)
    first = register(http, subject, json.dumps({"type": "record", "name": name, "fields": [{"name": "a", "type": "string"}]}))
    reordered = json.dumps({"fields": [{"type": "string", "name": "a"}], "name": name, "type": "record"})
    assert ok(http.post(f"/subjects/{subject}", json={"schema": reordered}))["id"] == first
    assert register(http, subject, reordered) == first
    assert ok(http.get(f"/subjects/{subject}/versions")) == [1]


def test_normalize_makes_key_order_the_same_schema(http: httpx.Client, subject: str) -> None:
    name = record_name(subject)
    one = json.dumps({"type": "record", "name": name, "fields": [{"name": "a", "type": "string"}, {"name": "b", "type": "int"}]})
    other = json.dumps({"fields": [{"type": "string", "name": "a"}, {"name": "b", "type": "int"}], "name": name, "type": "record"})
    first = ok(http.post(f"/subjects/{subject}/versions?normalize=true", json={"schema": one}))["id"]
    assert ok(http.post(f"/subjects/{subject}/versions?normalize=true", json={"schema": other})) == {"id": first}
    assert ok(http.get(f"/subjects/{subject}/versions")) == [1]
    found = ok(http.post(f"/subjects/{subject}?normalize=true", json={"schema": other}))
    assert (found["subject"], found["version"], found["id"]) == (subject, 1, first)
    assert ok(http.post(f"/compatibility/subjects/{subject}/versions/latest?normalize=true", json={"schema": other})) == {"is_compatible": True}
    # JSON Schema too: keys in another order are the same schema once normalized
    json_subject = f"{subject}-json"
    a = json.dumps({"type": "object", "properties": {"x": {"type": "string"}}, "additionalProperties": False})
    b = json.dumps({"additionalProperties": False, "properties": {"x": {"type": "string"}}, "type": "object"})
    json_id = ok(http.post(f"/subjects/{json_subject}/versions?normalize=true", json={"schemaType": "JSON", "schema": a}))["id"]
    assert ok(http.post(f"/subjects/{json_subject}/versions?normalize=true", json={"schemaType": "JSON", "schema": b})) == {"id": json_id}
    assert ok(http.get(f"/subjects/{json_subject}/versions")) == [1]


def test_a_json_schema_carries_its_type_and_avro_does_not(http: httpx.Client, subject: str) -> None:
    schema = json.dumps({"type": "object", "properties": {"a": {"type": "string"}}})
    number = register(http, subject, schema, schemaType="JSON")
    got = ok(http.get(f"/subjects/{subject}/versions/1"))
    assert got == {"subject": subject, "version": 1, "id": number, "schemaType": "JSON", "schema": got["schema"]}
    assert list(got) == ["subject", "version", "id", "schemaType", "schema"]
    assert json.loads(got["schema"]) == json.loads(schema)
    assert ok(http.get(f"/schemas/ids/{number}")) == {"schemaType": "JSON", "schema": got["schema"]}
    avro_id = register(http, f"{subject}-avro", record(subject, {"a": STR}))
    avro_got = ok(http.get(f"/subjects/{subject}-avro/versions/1"))
    assert list(avro_got) == ["subject", "version", "id", "schema"]
    assert ok(http.get(f"/schemas/ids/{avro_id}")) == {"schema": avro_got["schema"]}
    # an explicit "AVRO" is the same as none
    assert register(http, f"{subject}-avro", record(subject, {"a": STR}), schemaType="AVRO") == avro_id


def test_a_version_in_the_body_must_be_the_next_one(http: httpx.Client, subject: str) -> None:
    answer = http.post(f"/subjects/{subject}/versions", json={"schema": record(subject, {"a": STR}), "version": 5})
    assert_error(answer, 422, 42201, "Version is not one more than previous version")
    register(http, subject, record(subject, {"a": STR}), version=1)
    register(http, subject, record(subject, {"a": STR, "b": OPTIONAL_STR}), version=2)
    assert ok(http.get(f"/subjects/{subject}/versions")) == [1, 2]


def test_an_id_in_the_body_needs_import_mode(http: httpx.Client, subject: str) -> None:
    answer = http.post(f"/subjects/{subject}/versions", json={"schema": record(subject, {"a": STR}), "id": 123456})
    assert_error(answer, 422, 42205, f"Subject {subject} is not in import mode")
    assert_error(http.get(f"/subjects/{subject}/versions"), 404, 40401)


def test_an_id_of_zero_in_the_body_needs_import_mode(http: httpx.Client, subject: str) -> None:
    answer = http.post(f"/subjects/{subject}/versions", json={"schema": record(subject, {"a": STR}), "id": 0})
    assert_error(answer, 422, 42205, f"Subject {subject} is not in import mode")


def test_an_incompatible_schema_is_40901(http: httpx.Client, subject: str) -> None:
    register(http, subject, record(subject, {"a": STR}))
    answer = http.post(f"/subjects/{subject}/versions", json={"schema": record(subject, {"a": STR, "b": STR})})
    message = assert_error(answer, 409, 40901)
    assert message.startswith(f'Schema being registered is incompatible with an earlier schema for subject "{subject}", details: [')
    assert "{errorType:'READER_FIELD_MISSING_DEFAULT_VALUE'" in message
    assert message.endswith("compatibility: 'BACKWARD'}]")
    assert ok(http.get(f"/subjects/{subject}/versions")) == [1]
    # a different schema type than the previous version is incompatible too
    answer = http.post(f"/subjects/{subject}/versions", json={"schemaType": "JSON", "schema": '{"type": "object"}'})
    assert_error(answer, 409, 40901)


def test_the_40901_details_name_the_old_version(http: httpx.Client, subject: str) -> None:
    register(http, subject, record(subject, {"a": STR}))
    message = assert_error(http.post(f"/subjects/{subject}/versions", json={"schema": record(subject, {"a": STR, "b": STR})}), 409, 40901)
    stored = ok(http.get(f"/subjects/{subject}/versions/1"))["schema"]
    assert f"{{oldSchemaVersion: 1}}, {{oldSchema: '{stored}'}}, " in message


def test_avro_incompatibility_entries_read_as_confluents(http: httpx.Client, subject: str) -> None:
    register(http, subject, record(subject, {"a": STR}))
    expected = ("{errorType:'READER_FIELD_MISSING_DEFAULT_VALUE', description:'The field 'b' at path '/fields/1' in the new schema has no "
                "default value and is missing in the old schema', additionalInfo:'b'}")
    message = assert_error(http.post(f"/subjects/{subject}/versions", json={"schema": record(subject, {"a": STR, "b": STR})}), 409, 40901)
    assert expected in message
    verbose = ok(http.post(f"/compatibility/subjects/{subject}/versions/latest?verbose=true", json={"schema": record(subject, {"a": STR, "b": STR})}))
    assert verbose["messages"][0] == expected


# -- reading versions ------------------------------------------------------------------------------


def test_get_versions_latest_and_the_raw_schema(http: httpx.Client, subject: str) -> None:
    v1, v2 = record(subject, {"a": STR}), record(subject, {"a": STR, "b": OPTIONAL_STR})
    first, second = register(http, subject, v1), register(http, subject, v2)
    assert ok(http.get(f"/subjects/{subject}/versions")) == [1, 2]
    one = ok(http.get(f"/subjects/{subject}/versions/1"))
    assert one == {"subject": subject, "version": 1, "id": first, "schema": one["schema"]}
    assert json.loads(one["schema"]) == json.loads(v1)
    for latest in ("latest", "-1", "2"):
        assert ok(http.get(f"/subjects/{subject}/versions/{latest}"))["id"] == second
    raw = http.get(f"/subjects/{subject}/versions/1/schema")
    assert raw.status_code == 200 and raw.headers["content-type"] == V1_JSON
    assert raw.text == one["schema"]
    assert json.loads(http.get(f"/subjects/{subject}/versions/latest/schema").text) == json.loads(v2)


@pytest.mark.parametrize("version", ["abc", "0", "-2", "2147483648", "1.5", "latestx"])
def test_an_invalid_version_is_42202(http: httpx.Client, subject: str, version: str) -> None:
    register(http, subject, record(subject, {"a": STR}))
    expected = INVALID_VERSION.format(version)
    assert_error(http.get(f"/subjects/{subject}/versions/{version}"), 422, 42202, expected)
    assert_error(http.get(f"/subjects/{subject}/versions/{version}/schema"), 422, 42202, expected)
    assert_error(http.get(f"/subjects/{subject}/versions/{version}/referencedby"), 422, 42202, expected)
    assert_error(http.delete(f"/subjects/{subject}/versions/{version}"), 422, 42202, expected)
    assert_error(http.delete(f"/subjects/{subject}/versions/{version}?permanent=true"), 422, 42202, expected)
    answer = http.post(f"/compatibility/subjects/{subject}/versions/{version}", json={"schema": record(subject, {"a": STR})})
    assert_error(answer, 422, 42202, expected)
    assert ok(http.get(f"/subjects/{subject}/versions")) == [1]


def test_latest_is_case_insensitive(http: httpx.Client, subject: str) -> None:
    number = register(http, subject, record(subject, {"a": STR}))
    assert ok(http.get(f"/subjects/{subject}/versions/LATEST"))["id"] == number


def test_unknown_subjects_and_versions(http: httpx.Client, subject: str) -> None:
    missing = f"{subject}-missing"
    not_found = f"Subject '{missing}' not found."
    assert_error(http.get(f"/subjects/{missing}/versions"), 404, 40401, not_found)
    assert_error(http.get(f"/subjects/{missing}/versions?deleted=true"), 404, 40401, not_found)
    for version in ("1", "latest", "-1"):
        assert_error(http.get(f"/subjects/{missing}/versions/{version}"), 404, 40401, not_found)
        assert_error(http.get(f"/subjects/{missing}/versions/{version}/schema"), 404, 40401, not_found)
        assert_error(http.get(f"/subjects/{missing}/versions/{version}/referencedby"), 404, 40401, not_found)
        assert_error(http.delete(f"/subjects/{missing}/versions/{version}"), 404, 40401, not_found)
    assert_error(http.delete(f"/subjects/{missing}"), 404, 40401, not_found)
    assert_error(http.delete(f"/subjects/{missing}?permanent=true"), 404, 40401, not_found)
    assert_error(http.post(f"/subjects/{missing}", json={"schema": '"string"'}), 404, 40401, not_found)
    register(http, subject, record(subject, {"a": STR}))
    assert_error(http.get(f"/subjects/{subject}/versions/7"), 404, 40402, "Version 7 not found.")
    assert_error(http.get(f"/subjects/{subject}/versions/7/schema"), 404, 40402, "Version 7 not found.")
    assert_error(http.get(f"/subjects/{subject}/versions/7/referencedby"), 404, 40402, "Version 7 not found.")
    assert_error(http.delete(f"/subjects/{subject}/versions/7"), 404, 40402, "Version 7 not found.")
    assert_error(http.delete(f"/subjects/{subject}/versions/7?permanent=true"), 404, 40402, "Version 7 not found.")


# -- lookup ----------------------------------------------------------------------------------------


def test_lookup(http: httpx.Client, subject: str) -> None:
    v1, v2 = record(subject, {"a": STR}), record(subject, {"a": STR, "b": OPTIONAL_STR})
    first, second = register(http, subject, v1), register(http, subject, v2)
    found = ok(http.post(f"/subjects/{subject}", json={"schema": v1}))
    assert found == {"subject": subject, "version": 1, "id": first, "schema": found["schema"]}
    assert json.loads(found["schema"]) == json.loads(v1)
    assert ok(http.post(f"/subjects/{subject}", json={"schema": json.dumps(json.loads(v2), indent=2)}))["version"] == 2
    other = record(subject, {"c": STR})
    assert_error(http.post(f"/subjects/{subject}", json={"schema": other}), 404, 40403, "Schema not found")
    # a soft-deleted version is found only with deleted=true
    assert ok(http.delete(f"/subjects/{subject}/versions/1")) == 1
    assert_error(http.post(f"/subjects/{subject}", json={"schema": v1}), 404, 40403, "Schema not found")
    assert ok(http.post(f"/subjects/{subject}?deleted=true", json={"schema": v1}))["id"] == first
    # a subject with only soft-deleted versions is not found, except with deleted=true
    assert ok(http.delete(f"/subjects/{subject}/versions/2")) == 2
    assert_error(http.post(f"/subjects/{subject}", json={"schema": v2}), 404, 40401, f"Subject '{subject}' not found.")
    assert ok(http.post(f"/subjects/{subject}?deleted=true", json={"schema": v2}))["id"] == second
    assert_error(http.post(f"/subjects/{subject}?deleted=true", json={"schema": other}), 404, 40403, "Schema not found")


# -- deletes ---------------------------------------------------------------------------------------


def test_soft_and_hard_delete_of_versions(http: httpx.Client, subject: str) -> None:
    schemas = [record(subject, {"a": STR}), record(subject, {"a": STR, "b": OPTIONAL_STR}), record(subject, {"a": STR, "b": OPTIONAL_STR, "c": OPTIONAL_STR})]
    ids = [register(http, subject, s) for s in schemas]
    deleted = http.delete(f"/subjects/{subject}/versions/2")
    assert ok(deleted) == 2 and deleted.text == "2"  # a bare integer
    assert ok(http.get(f"/subjects/{subject}/versions")) == [1, 3]
    assert ok(http.get(f"/subjects/{subject}/versions?deleted=true")) == [1, 2, 3]
    assert_error(http.get(f"/subjects/{subject}/versions/2"), 404, 40402, "Version 2 not found.")
    assert ok(http.get(f"/subjects/{subject}/versions/2?deleted=true"))["id"] == ids[1]
    assert ok(http.get(f"/subjects/{subject}/versions/2/schema?deleted=true")) == json.loads(ok(http.get(f"/subjects/{subject}/versions/2?deleted=true"))["schema"])
    # a soft-deleted id still resolves
    assert "schema" in ok(http.get(f"/schemas/ids/{ids[1]}"))
    assert_error(http.delete(f"/subjects/{subject}/versions/2"), 404, 40406,
                 f"Subject '{subject}' Version 2 was soft deleted.Set permanent=true to delete permanently")
    assert_error(http.delete(f"/subjects/{subject}/versions/3?permanent=true"), 404, 40407,
                 f"Subject '{subject}' Version 3 was not deleted first before being permanently deleted")
    # latest resolves to the newest live version, so permanent + latest is always 40407
    assert_error(http.delete(f"/subjects/{subject}/versions/latest?permanent=true"), 404, 40407,
                 f"Subject '{subject}' Version 3 was not deleted first before being permanently deleted")
    assert ok(http.delete(f"/subjects/{subject}/versions/2?permanent=true")) == 2
    assert ok(http.get(f"/subjects/{subject}/versions?deleted=true")) == [1, 3]
    assert_error(http.get(f"/subjects/{subject}/versions/2?deleted=true"), 404, 40402, "Version 2 not found.")
    assert_error(http.delete(f"/subjects/{subject}/versions/2?permanent=true"), 404, 40402, "Version 2 not found.")
    assert_error(http.get(f"/schemas/ids/{ids[1]}"), 404, 40403, f"Schema {ids[1]} not found")
    # soft-deleting latest takes the newest live version; latest is then the one before
    assert ok(http.delete(f"/subjects/{subject}/versions/latest")) == 3
    assert ok(http.get(f"/subjects/{subject}/versions/latest"))["version"] == 1
    assert ok(http.get(f"/subjects/{subject}/versions/latest?deleted=true"))["version"] == 1


def test_soft_and_hard_delete_of_a_subject(http: httpx.Client, subject: str) -> None:
    ids = [register(http, subject, record(subject, {"a": STR})), register(http, subject, record(subject, {"a": STR, "b": OPTIONAL_STR}))]
    assert_error(http.delete(f"/subjects/{subject}?permanent=true"), 404, 40405,
                 f"Subject '{subject}' was not deleted first before being permanently deleted")
    assert ok(http.delete(f"/subjects/{subject}")) == [1, 2]
    assert_error(http.delete(f"/subjects/{subject}"), 404, 40404,
                 f"Subject '{subject}' was soft deleted.Set permanent=true to delete permanently")
    not_found = f"Subject '{subject}' not found."
    assert_error(http.get(f"/subjects/{subject}/versions"), 404, 40401, not_found)
    assert_error(http.get(f"/subjects/{subject}/versions/latest"), 404, 40401, not_found)
    assert_error(http.get(f"/subjects/{subject}/versions/1"), 404, 40401, not_found)
    assert_error(http.get(f"/subjects/{subject}/versions/latest?deleted=true"), 404, 40402, "Version -1 not found.")
    assert ok(http.get(f"/subjects/{subject}/versions/1?deleted=true"))["id"] == ids[0]
    assert ok(http.get(f"/subjects/{subject}/versions?deleted=true")) == [1, 2]
    assert_error(http.delete(f"/subjects/{subject}/versions/1"), 404, 40406,
                 f"Subject '{subject}' Version 1 was soft deleted.Set permanent=true to delete permanently")
    # ids of soft-deleted versions still resolve
    for number in ids:
        assert "schema" in ok(http.get(f"/schemas/ids/{number}"))
    assert ok(http.delete(f"/subjects/{subject}?permanent=true")) == [1, 2]
    assert_error(http.get(f"/subjects/{subject}/versions?deleted=true"), 404, 40401, not_found)
    assert_error(http.delete(f"/subjects/{subject}?permanent=true"), 404, 40401, not_found)
    assert_error(http.delete(f"/subjects/{subject}"), 404, 40401, not_found)
    for number in ids:
        assert_error(http.get(f"/schemas/ids/{number}"), 404, 40403, f"Schema {number} not found")
    # hard-deleted: the same schema comes back with a new id, and versions start at 1 again
    again = register(http, subject, record(subject, {"a": STR}))
    assert again > max(ids)
    assert ok(http.get(f"/subjects/{subject}/versions")) == [1]


def test_versions_continue_after_a_soft_delete(http: httpx.Client, subject: str) -> None:
    v1, v2 = record(subject, {"a": STR}), record(subject, {"a": STR, "b": OPTIONAL_STR})
    first = register(http, subject, v1)
    register(http, subject, v2)
    assert ok(http.delete(f"/subjects/{subject}")) == [1, 2]
    # a schema identical to a soft-deleted version keeps its id in the next version; the
    # soft-deleted copy goes
    assert register(http, subject, v1) == first
    assert ok(http.get(f"/subjects/{subject}/versions")) == [3]
    assert ok(http.get(f"/subjects/{subject}/versions/3"))["id"] == first
    assert ok(http.get(f"/subjects/{subject}/versions?deleted=true")) == [2, 3]


# -- /schemas --------------------------------------------------------------------------------------


def test_schemas_by_id(http: httpx.Client, subject: str) -> None:
    schema = record(subject, {"a": STR})
    number = register(http, subject, schema)
    got = ok(http.get(f"/schemas/ids/{number}"))
    assert list(got) == ["schema"] and json.loads(got["schema"]) == json.loads(schema)
    assert ok(http.get(f"/schemas/ids/{number}?subject={subject}")) == got
    raw = http.get(f"/schemas/ids/{number}/schema")
    assert raw.status_code == 200 and raw.headers["content-type"] == V1_JSON and raw.text == got["schema"]
    unknown = 2**31 - 2
    assert_error(http.get(f"/schemas/ids/{unknown}"), 404, 40403, f"Schema {unknown} not found")
    assert_error(http.get(f"/schemas/ids/{unknown}/schema"), 404, 40403)
    assert_error(http.get(f"/schemas/ids/{unknown}/subjects"), 404, 40403)
    assert_error(http.get(f"/schemas/ids/{unknown}/versions"), 404, 40403)


def test_unknown_id_subjects_and_versions_message(http: httpx.Client) -> None:
    unknown = 2**31 - 3
    assert_error(http.get(f"/schemas/ids/{unknown}/subjects"), 404, 40403, "Schema not found")
    assert_error(http.get(f"/schemas/ids/{unknown}/versions"), 404, 40403, "Schema not found")


def test_subjects_and_versions_of_an_id(http: httpx.Client, subject: str) -> None:
    schema = record(subject, {"a": STR})
    a, b = f"{subject}-a", f"{subject}-b"
    set_level(http, b, "NONE")
    register(http, b, record(subject, {"z": STR}, suffix="Other"))
    number = register(http, a, schema)
    assert register(http, b, schema) == number
    assert ok(http.get(f"/schemas/ids/{number}/subjects")) == [a, b]
    assert ok(http.get(f"/schemas/ids/{number}/versions")) == [{"subject": a, "version": 1}, {"subject": b, "version": 2}]
    assert ok(http.delete(f"/subjects/{a}/versions/1")) == 1
    assert ok(http.get(f"/schemas/ids/{number}/subjects")) == [b]
    assert ok(http.get(f"/schemas/ids/{number}/subjects?deleted=true")) == [a, b]
    assert ok(http.get(f"/schemas/ids/{number}/versions")) == [{"subject": b, "version": 2}]
    assert ok(http.get(f"/schemas/ids/{number}/versions?deleted=true")) == [{"subject": a, "version": 1}, {"subject": b, "version": 2}]
    # every version soft-deleted: empty lists, not 404
    assert ok(http.delete(f"/subjects/{b}/versions/2")) == 2
    assert ok(http.get(f"/schemas/ids/{number}/subjects")) == []
    assert ok(http.get(f"/schemas/ids/{number}/versions")) == []


def test_a_hard_deleted_id_has_no_subjects(http: httpx.Client, subject: str) -> None:
    number = register(http, subject, record(subject, {"a": STR}))
    assert ok(http.delete(f"/subjects/{subject}")) == [1]
    assert ok(http.delete(f"/subjects/{subject}?permanent=true")) == [1]
    assert_error(http.get(f"/schemas/ids/{number}"), 404, 40403)
    assert_error(http.get(f"/schemas/ids/{number}/subjects"), 404, 40403, "Schema not found")
    assert_error(http.get(f"/schemas/ids/{number}/versions"), 404, 40403, "Schema not found")


def test_list_schemas(http: httpx.Client, subject: str) -> None:
    a, b, c = f"{subject}.a", f"{subject}.b", f"{subject}.c"
    a1 = register(http, a, record(subject, {"a": STR}))
    a2 = register(http, a, record(subject, {"a": STR, "b": OPTIONAL_STR}))
    b1 = register(http, b, record(subject, {"x": STR}, suffix="B"), schemaType="AVRO")
    c1 = register(http, c, json.dumps({"type": "string"}), schemaType="JSON")
    every = ok(http.get("/schemas", params={"subjectPrefix": subject}))
    assert [(s["subject"], s["version"], s["id"]) for s in every] == [(a, 1, a1), (a, 2, a2), (b, 1, b1), (c, 1, c1)]
    assert list(every[0]) == ["subject", "version", "id", "schema"]
    assert every[3] == {"subject": c, "version": 1, "id": c1, "schemaType": "JSON", "schema": every[3]["schema"]}
    latest = ok(http.get("/schemas", params={"subjectPrefix": subject, "latestOnly": "true"}))
    assert [(s["subject"], s["version"]) for s in latest] == [(a, 2), (b, 1), (c, 1)]
    assert ok(http.get("/schemas", params={"subjectPrefix": f"{subject}.b"})) == [every[2]]
    assert ok(http.get("/schemas", params={"subjectPrefix": f"{subject}.nothing"})) == []
    # soft-deleted versions only with deleted=true
    assert ok(http.delete(f"/subjects/{a}/versions/2")) == 2
    assert ok(http.delete(f"/subjects/{b}")) == [1]
    live = ok(http.get("/schemas", params={"subjectPrefix": subject}))
    assert [(s["subject"], s["version"]) for s in live] == [(a, 1), (c, 1)]
    with_deleted = ok(http.get("/schemas", params={"subjectPrefix": subject, "deleted": "true"}))
    assert [(s["subject"], s["version"]) for s in with_deleted] == [(a, 1), (a, 2), (b, 1), (c, 1)]
    assert [(s["subject"], s["version"]) for s in ok(http.get("/schemas", params={"subjectPrefix": subject, "latestOnly": "true"}))] == [(a, 1), (c, 1)]
    # every registered schema, without a prefix
    assert {(a, 1), (c, 1)} <= {(s["subject"], s["version"]) for s in ok(http.get("/schemas"))}


# -- listings of subjects and versions ------------------------------------------------------------


def test_list_subjects(http: httpx.Client, subject: str) -> None:
    a, b, c = f"{subject}.a", f"{subject}.b", f"{subject}.c"
    for name in (c, a, b):
        register(http, name, record(subject, {"a": STR}))
    assert ok(http.get("/subjects", params={"subjectPrefix": subject})) == [a, b, c]
    everything = ok(http.get("/subjects"))
    assert everything == sorted(everything) and {a, b, c} <= set(everything)
    assert ok(http.delete(f"/subjects/{b}")) == [1]
    assert ok(http.get("/subjects", params={"subjectPrefix": subject})) == [a, c]
    assert ok(http.get("/subjects", params={"subjectPrefix": subject, "deleted": "true"})) == [a, b, c]
    assert ok(http.get("/subjects", params={"subjectPrefix": subject, "deleted": "true", "deletedOnly": "true"})) == [b]
    assert ok(http.get("/subjects", params={"subjectPrefix": f"{subject}.x"})) == []


def test_list_subjects_deleted_only(http: httpx.Client, subject: str) -> None:
    a, b = f"{subject}.a", f"{subject}.b"
    register(http, a, record(subject, {"a": STR}))
    register(http, b, record(subject, {"a": STR}))
    assert ok(http.delete(f"/subjects/{b}")) == [1]
    assert ok(http.get("/subjects", params={"subjectPrefix": subject, "deletedOnly": "true"})) == [b]


def test_list_versions_with_deleted(http: httpx.Client, subject: str) -> None:
    for fields in ({"a": STR}, {"a": STR, "b": OPTIONAL_STR}, {"a": STR, "b": OPTIONAL_STR, "c": OPTIONAL_STR}):
        register(http, subject, record(subject, fields))
    assert ok(http.delete(f"/subjects/{subject}/versions/2")) == 2
    assert ok(http.get(f"/subjects/{subject}/versions")) == [1, 3]
    assert ok(http.get(f"/subjects/{subject}/versions?deleted=true")) == [1, 2, 3]
    assert ok(http.get(f"/subjects/{subject}/versions?deleted=false")) == [1, 3]


def test_list_versions_deleted_only(http: httpx.Client, subject: str) -> None:
    for fields in ({"a": STR}, {"a": STR, "b": OPTIONAL_STR}):
        register(http, subject, record(subject, fields))
    assert ok(http.delete(f"/subjects/{subject}/versions/1")) == 1
    assert ok(http.get(f"/subjects/{subject}/versions?deletedOnly=true")) == [1]


# -- references --------------------------------------------------------------------------------------


def test_references(http: httpx.Client, subject: str) -> None:
    address_subject, person_subject = f"{subject}-address", f"{subject}-person"
    namespace = record_name(subject).lower()
    address = json.dumps({"type": "record", "name": "Address", "namespace": namespace, "fields": [{"name": "city", "type": "string"}]})
    person = json.dumps({"type": "record", "name": "Person", "namespace": namespace, "fields": [{"name": "home", "type": f"{namespace}.Address"}]})
    references = [{"name": f"{namespace}.Address", "subject": address_subject, "version": 1}]
    address_id = register(http, address_subject, address)
    # without its reference the type is unknown; a reference to nothing is no schema either
    assert_error(http.post(f"/subjects/{person_subject}/versions", json={"schema": person}), 422, 42201)
    missing = [{**references[0], "version": 9}]
    assert_error(http.post(f"/subjects/{person_subject}/versions", json={"schema": person, "references": missing}), 422, 42201)
    assert_error(http.post(f"/subjects/{person_subject}/versions", json={"schema": person, "references": [{"name": "x"}]}), 422, 42201)
    person_id = register(http, person_subject, person, references=references)
    got = ok(http.get(f"/subjects/{person_subject}/versions/1"))
    assert got == {"subject": person_subject, "version": 1, "id": person_id, "references": references, "schema": got["schema"]}
    assert list(got) == ["subject", "version", "id", "references", "schema"]
    assert ok(http.get(f"/schemas/ids/{person_id}")) == {"references": references, "schema": got["schema"]}
    found = ok(http.post(f"/subjects/{person_subject}", json={"schema": person, "references": references}))
    assert (found["id"], found["references"]) == (person_id, references)
    assert ok(http.post(f"/compatibility/subjects/{person_subject}/versions/latest", json={"schema": person, "references": references})) == {"is_compatible": True}
    # who references what
    assert ok(http.get(f"/subjects/{address_subject}/versions/1/referencedby")) == [person_id]
    assert ok(http.get(f"/subjects/{address_subject}/versions/latest/referencedby")) == [person_id]
    assert ok(http.get(f"/subjects/{person_subject}/versions/1/referencedby")) == []
    # a referenced version or subject is not deleted
    refused = f"One or more references exist to the schema {{magic=1,keytype=SCHEMA,subject={address_subject},version=1}}."
    assert_error(http.delete(f"/subjects/{address_subject}/versions/1"), 422, 42206, refused)
    assert_error(http.delete(f"/subjects/{address_subject}"), 422, 42206, refused)
    assert ok(http.get(f"/subjects/{address_subject}/versions")) == [1]
    # a soft-deleted referrer does not hold a soft delete back, but does hold a hard delete
    assert ok(http.delete(f"/subjects/{person_subject}")) == [1]
    assert ok(http.get(f"/subjects/{address_subject}/versions/1/referencedby")) == []
    assert ok(http.delete(f"/subjects/{address_subject}/versions/1")) == 1
    assert_error(http.delete(f"/subjects/{address_subject}/versions/1?permanent=true"), 422, 42206, refused)
    assert_error(http.delete(f"/subjects/{address_subject}?permanent=true"), 422, 42206, refused)
    assert ok(http.delete(f"/subjects/{person_subject}?permanent=true")) == [1]
    assert ok(http.delete(f"/subjects/{address_subject}?permanent=true")) == [1]
    assert_error(http.get(f"/schemas/ids/{address_id}"), 404, 40403)


def test_referenced_by_with_deleted_lists_soft_deleted_referrers(http: httpx.Client, subject: str) -> None:
    target, referrer = f"{subject}-target", f"{subject}-referrer"
    register(http, target, '{"type": "fixed", "name": "%s", "size": 4}' % record_name(subject))
    referrer_id = register(http, referrer, json.dumps({"type": "record", "name": "Ref", "fields": [{"name": "f", "type": record_name(subject)}]}),
                           references=[{"name": record_name(subject), "subject": target, "version": 1}])
    assert ok(http.delete(f"/subjects/{referrer}")) == [1]
    assert ok(http.get(f"/subjects/{target}/versions/1/referencedby")) == []
    assert ok(http.get(f"/subjects/{target}/versions/1/referencedby?deleted=true")) == [referrer_id]


def test_referenced_by_of_a_soft_deleted_version(http: httpx.Client, subject: str) -> None:
    register(http, subject, record(subject, {"a": STR}))
    assert ok(http.delete(f"/subjects/{subject}/versions/1")) == 1
    assert ok(http.get(f"/subjects/{subject}/versions/1/referencedby")) == []


# -- /compatibility ------------------------------------------------------------------------------------


def test_compatibility_answers(http: httpx.Client, subject: str) -> None:
    register(http, subject, record(subject, {"a": STR}))
    good, bad = record(subject, {"a": STR, "b": OPTIONAL_STR}), record(subject, {"a": STR, "b": STR})
    for path in (f"/compatibility/subjects/{subject}/versions", f"/compatibility/subjects/{subject}/versions/latest",
                 f"/compatibility/subjects/{subject}/versions/1", f"/compatibility/subjects/{subject}/versions/-1"):
        assert ok(http.post(path, json={"schema": good})) == {"is_compatible": True}
        assert ok(http.post(path, json={"schema": bad})) == {"is_compatible": False}
        assert ok(http.post(f"{path}?verbose=true", json={"schema": good})) == {"is_compatible": True, "messages": []}
        verbose = ok(http.post(f"{path}?verbose=true", json={"schema": bad}))
        assert list(verbose) == ["is_compatible", "messages"] and verbose["is_compatible"] is False
        assert verbose["messages"] and all(isinstance(m, str) for m in verbose["messages"])
        assert any("READER_FIELD_MISSING_DEFAULT_VALUE" in m for m in verbose["messages"])
        assert ok(http.post(f"{path}?verbose=false", json={"schema": bad})) == {"is_compatible": False}
    # a check registers nothing
    assert ok(http.get(f"/subjects/{subject}/versions")) == [1]
    # against a version that is not there, or soft-deleted
    assert_error(http.post(f"/compatibility/subjects/{subject}/versions/5", json={"schema": good}), 404, 40402, "Version 5 not found.")
    register(http, subject, good)
    assert ok(http.delete(f"/subjects/{subject}/versions/1")) == 1
    assert_error(http.post(f"/compatibility/subjects/{subject}/versions/1", json={"schema": good}), 404, 40402, "Version 1 not found.")


def test_compatibility_with_no_versions(http: httpx.Client, subject: str) -> None:
    schema = record(subject, {"a": STR})
    assert ok(http.post(f"/compatibility/subjects/{subject}/versions", json={"schema": schema})) == {"is_compatible": True}
    assert ok(http.post(f"/compatibility/subjects/{subject}/versions/latest", json={"schema": schema})) == {"is_compatible": True}
    assert ok(http.post(f"/compatibility/subjects/{subject}/versions/latest?verbose=true", json={"schema": schema})) == {"is_compatible": True, "messages": []}
    # a numbered version must exist (no 40401 here)
    assert_error(http.post(f"/compatibility/subjects/{subject}/versions/1", json={"schema": schema}), 404, 40402, "Version 1 not found.")


def test_compatibility_of_an_invalid_schema(http: httpx.Client, subject: str) -> None:
    register(http, subject, record(subject, {"a": STR}))
    invalid = '{"type": "record", "name": "X", "fields": [{"name": "a", "type": "nosuchtype"}]}'
    for path in (f"/compatibility/subjects/{subject}/versions", f"/compatibility/subjects/{subject}/versions/latest"):
        assert_error(http.post(path, json={"schema": invalid}), 422, 42201)
        verbose = ok(http.post(f"{path}?verbose=true", json={"schema": invalid}))
        assert list(verbose) == ["is_compatible", "messages"] and verbose["is_compatible"] is False
        assert len(verbose["messages"]) == 1 and verbose["messages"][0].startswith("Invalid schema")
        verbose = ok(http.post(f"{path}?verbose=true", json={"schemaType": "JSON", "schema": '{"type": "nonsense"}'}))
        assert verbose["is_compatible"] is False and len(verbose["messages"]) == 1
    # an invalid version is still 42202 with verbose
    answer = http.post(f"/compatibility/subjects/{subject}/versions/abc?verbose=true", json={"schema": invalid})
    assert_error(answer, 422, 42202, INVALID_VERSION.format("abc"))


def test_compatibility_against_one_version_ignores_transitivity(http: httpx.Client, subject: str) -> None:
    set_level(http, subject, "NONE")
    register(http, subject, record(subject, {"a": STR}))
    register(http, subject, record(subject, {"a": {"type": "int"}}))
    register(http, subject, record(subject, {"a": {"type": "int"}, "b": OPTIONAL_STR}))
    new = record(subject, {"a": {"type": "int"}})
    base = f"/compatibility/subjects/{subject}/versions"
    set_level(http, subject, "BACKWARD")
    assert ok(http.post(f"{base}/1", json={"schema": new})) == {"is_compatible": False}
    assert ok(http.post(f"{base}/2", json={"schema": new})) == {"is_compatible": True}
    assert ok(http.post(f"{base}/latest", json={"schema": new})) == {"is_compatible": True}
    assert ok(http.post(base, json={"schema": new})) == {"is_compatible": True}  # the latest only
    set_level(http, subject, "BACKWARD_TRANSITIVE")
    assert ok(http.post(base, json={"schema": new})) == {"is_compatible": False}  # every live version
    assert ok(http.post(f"{base}/2", json={"schema": new})) == {"is_compatible": True}
    assert ok(http.post(f"{base}/latest", json={"schema": new})) == {"is_compatible": True}
    # soft-deleted versions are left out of the transitive check
    assert ok(http.delete(f"/subjects/{subject}/versions/1")) == 1
    assert ok(http.post(base, json={"schema": new})) == {"is_compatible": True}
    set_level(http, subject, "NONE")
    assert ok(http.post(f"{base}/2", json={"schema": record(subject, {"z": {"type": "boolean"}})})) == {"is_compatible": True}


# -- /config -----------------------------------------------------------------------------------------


def test_global_config(http: httpx.Client) -> None:
    assert ok(http.get("/config")) == {"compatibilityLevel": "BACKWARD"}
    try:
        assert ok(http.put("/config", json={"compatibility": "FULL"})) == {"compatibility": "FULL"}
        assert ok(http.get("/config")) == {"compatibilityLevel": "FULL"}
        assert ok(http.get("/config?defaultToGlobal=true")) == {"compatibilityLevel": "FULL"}
        assert ok(http.delete("/config")) == {"compatibilityLevel": "FULL"}
        assert ok(http.get("/config")) == {"compatibilityLevel": "BACKWARD"}
        # with nothing set, DELETE answers the server default
        assert ok(http.delete("/config")) == {"compatibilityLevel": "BACKWARD"}
        # the level is read case-insensitively
        assert ok(http.put("/config", json={"compatibility": "forward_transitive"}))["compatibility"].upper() == "FORWARD_TRANSITIVE"
        assert ok(http.get("/config")) == {"compatibilityLevel": "FORWARD_TRANSITIVE"}
    finally:
        http.delete("/config")
    assert ok(http.get("/config")) == {"compatibilityLevel": "BACKWARD"}


def test_subject_config(http: httpx.Client, subject: str) -> None:
    assert_error(http.get(f"/config/{subject}"), 404, 40408, f"Subject '{subject}' does not have subject-level compatibility configured")
    assert ok(http.get(f"/config/{subject}?defaultToGlobal=true")) == {"compatibilityLevel": "BACKWARD"}
    assert_error(http.delete(f"/config/{subject}"), 404, 40401, f"Subject '{subject}' not found.")
    for level in ("NONE", "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE"):
        assert ok(http.put(f"/config/{subject}", json={"compatibility": level})) == {"compatibility": level}
        assert ok(http.get(f"/config/{subject}")) == {"compatibilityLevel": level}
        assert ok(http.get(f"/config/{subject}?defaultToGlobal=true")) == {"compatibilityLevel": level}
    assert ok(http.put(f"/config/{subject}", json={"compatibility": "full"}))["compatibility"].upper() == "FULL"
    assert ok(http.get(f"/config/{subject}")) == {"compatibilityLevel": "FULL"}
    # the subject's level is the one its registrations are checked with
    register(http, subject, record(subject, {"a": STR}))
    assert_error(http.post(f"/subjects/{subject}/versions", json={"schema": record(subject, {"a": STR, "b": STR})}), 409, 40901)
    # the global level is untouched
    assert ok(http.get("/config")) == {"compatibilityLevel": "BACKWARD"}
    assert ok(http.delete(f"/config/{subject}")) == {"compatibilityLevel": "FULL"}
    assert_error(http.get(f"/config/{subject}"), 404, 40408)
    assert_error(http.delete(f"/config/{subject}"), 404, 40401, f"Subject '{subject}' not found.")


@pytest.mark.parametrize("body", [{"compatibility": "FOO"}, {"compatibility": ""}, {"compatibility": None}, {"compatibility": 5}, {}, {"mode": "NONE"}])
@pytest.mark.parametrize("path", ["/config", "/config/{}"])
def test_an_invalid_compatibility_level_is_42203(http: httpx.Client, subject: str, body: dict, path: str) -> None:
    assert_error(http.put(path.format(subject), json=body), 422, 42203, INVALID_LEVEL)
    assert ok(http.get("/config")) == {"compatibilityLevel": "BACKWARD"}
    assert_error(http.get(f"/config/{subject}"), 404, 40408)


# -- /mode -------------------------------------------------------------------------------------------


def test_global_mode(http: httpx.Client, subject: str) -> None:
    assert ok(http.get("/mode")) == {"mode": "READWRITE"}
    assert ok(http.get("/mode?defaultToGlobal=true")) == {"mode": "READWRITE"}
    assert ok(http.put("/mode", json={"mode": "READWRITE"})) == {"mode": "READWRITE"}
    register(http, subject, record(subject, {"a": STR}))
    # IMPORT needs a registry without subjects
    assert_error(http.put("/mode", json={"mode": "IMPORT"}), 422, 42205, "Cannot import since found existing subjects")
    assert ok(http.get("/mode")) == {"mode": "READWRITE"}


def test_subject_mode(http: httpx.Client, subject: str) -> None:
    assert_error(http.get(f"/mode/{subject}"), 404, 40409, f"Subject '{subject}' does not have subject-level mode configured")
    assert ok(http.get(f"/mode/{subject}?defaultToGlobal=true")) == {"mode": "READWRITE"}
    assert_error(http.delete(f"/mode/{subject}"), 404, 40401, f"Subject '{subject}' not found.")
    for mode in ("READONLY", "READWRITE", "IMPORT"):
        assert ok(http.put(f"/mode/{subject}", json={"mode": mode})) == {"mode": mode}
        assert ok(http.get(f"/mode/{subject}")) == {"mode": mode}
    assert ok(http.put(f"/mode/{subject}", json={"mode": "readonly"}))["mode"].upper() == "READONLY"
    assert ok(http.get(f"/mode/{subject}")) == {"mode": "READONLY"}
    assert ok(http.get("/mode")) == {"mode": "READWRITE"}
    assert ok(http.delete(f"/mode/{subject}")) == {"mode": "READONLY"}
    assert_error(http.get(f"/mode/{subject}"), 404, 40409)
    assert_error(http.delete(f"/mode/{subject}"), 404, 40401, f"Subject '{subject}' not found.")
    # a subject with versions cannot go to IMPORT
    register(http, subject, record(subject, {"a": STR}))
    assert_error(http.put(f"/mode/{subject}", json={"mode": "IMPORT"}), 422, 42205, "Cannot import since found existing subjects")
    assert_error(http.get(f"/mode/{subject}"), 404, 40409)


@pytest.mark.parametrize("body", [{"mode": "FOO"}, {"mode": ""}, {"mode": None}, {"mode": 1}, {}, {"compatibility": "NONE"}, {"mode": "READONLY_OVERRIDE_X"}])
@pytest.mark.parametrize("path", ["/mode", "/mode/{}"])
def test_an_invalid_mode_is_42204(http: httpx.Client, subject: str, body: dict, path: str) -> None:
    assert_error(http.put(path.format(subject), json=body), 422, 42204, INVALID_MODE)
    assert ok(http.get("/mode")) == {"mode": "READWRITE"}
    assert_error(http.get(f"/mode/{subject}"), 404, 40409)


def test_forward_mode_is_refused_on_a_subject(http: httpx.Client, subject: str) -> None:
    assert_error(http.put(f"/mode/{subject}", json={"mode": "FORWARD"}), 422, 42204)
    assert_error(http.get(f"/mode/{subject}"), 404, 40409)


def test_readonly_mode(http: httpx.Client, subject: str) -> None:
    v1 = record(subject, {"a": STR})
    first = register(http, subject, v1)
    set_level(http, subject, "BACKWARD")
    assert ok(http.put(f"/mode/{subject}", json={"mode": "READONLY"})) == {"mode": "READONLY"}
    try:
        read_only = f"Subject {subject} is in read-only mode"
        # an existing schema is answered; a new one is refused
        assert register(http, subject, v1) == first
        new = record(subject, {"a": STR, "b": OPTIONAL_STR})
        assert_error(http.post(f"/subjects/{subject}/versions", json={"schema": new}), 422, 42205, read_only)
        assert_error(http.delete(f"/subjects/{subject}/versions/1"), 422, 42205, read_only)
        assert_error(http.delete(f"/subjects/{subject}/versions/1?permanent=true"), 422, 42205, read_only)
        assert_error(http.delete(f"/subjects/{subject}"), 422, 42205, read_only)
        assert_error(http.put(f"/config/{subject}", json={"compatibility": "NONE"}), 422, 42205, read_only)
        assert_error(http.delete(f"/config/{subject}"), 422, 42205, read_only)
        # reads work
        assert ok(http.get(f"/subjects/{subject}/versions")) == [1]
        assert ok(http.post(f"/subjects/{subject}", json={"schema": v1}))["id"] == first
        assert ok(http.post(f"/compatibility/subjects/{subject}/versions/latest", json={"schema": new})) == {"is_compatible": True}
        assert ok(http.get(f"/config/{subject}")) == {"compatibilityLevel": "BACKWARD"}
        # other subjects are not read-only
        register(http, f"{subject}-other", v1)
    finally:
        http.delete(f"/mode/{subject}")
    register(http, subject, record(subject, {"a": STR, "b": OPTIONAL_STR}))
    assert ok(http.get(f"/subjects/{subject}/versions")) == [1, 2]


def test_import_mode(http: httpx.Client, subject: str) -> None:
    assert ok(http.put(f"/mode/{subject}", json={"mode": "IMPORT"})) == {"mode": "IMPORT"}
    try:
        schema = record(subject, {"a": STR})
        # registrations need an explicit id
        answer = http.post(f"/subjects/{subject}/versions", json={"schema": schema})
        assert_error(answer, 422, 42205, f"Subject {subject} is not in read-write mode")
        number = random.randrange(10_000_000, 1_000_000_000)
        assert ok(http.post(f"/subjects/{subject}/versions", json={"schema": schema, "id": number, "version": 3})) == {"id": number}
        assert ok(http.get(f"/subjects/{subject}/versions")) == [3]
        got = ok(http.get(f"/subjects/{subject}/versions/3"))
        assert (got["id"], got["version"]) == (number, 3)
        assert json.loads(ok(http.get(f"/schemas/ids/{number}"))["schema"]) == json.loads(schema)
        # the same again is answered; another schema under that id is refused
        assert ok(http.post(f"/subjects/{subject}/versions", json={"schema": schema, "id": number, "version": 3})) == {"id": number}
        other = record(subject, {"b": {"type": "int"}})  # incompatible: imports are not checked
        answer = http.post(f"/subjects/{subject}/versions", json={"schema": other, "id": number, "version": 4})
        assert_error(answer, 422, 42205, f"Overwrite new schema with id {number} is not permitted.")
        assert ok(http.post(f"/subjects/{subject}/versions", json={"schema": other, "id": number + 1, "version": 7})) == {"id": number + 1}
        assert ok(http.get(f"/subjects/{subject}/versions")) == [3, 7]
        assert ok(http.get(f"/subjects/{subject}/versions/latest"))["id"] == number + 1
        # a schema another subject has under another id may be imported under a new id
        source = f"{subject}-source"
        known = register(http, source, record(subject, {"s": STR}))
        imported = known + 100
        answer = http.post(f"/subjects/{subject}/versions", json={"schema": record(subject, {"s": STR}), "id": imported, "version": 9})
        assert ok(answer) == {"id": imported}
        assert ok(http.get(f"/subjects/{source}/versions/1"))["id"] == known
        assert ok(http.get(f"/schemas/ids/{imported}/subjects")) == [subject]
        assert ok(http.get(f"/schemas/ids/{known}/subjects")) == [source]
    finally:
        http.delete(f"/mode/{subject}")
    # back in READWRITE: ids are given again, after the largest imported one
    set_level(http, subject, "NONE")
    newer = register(http, subject, record(subject, {"b": {"type": "int"}, "c": OPTIONAL_STR}))
    assert newer > imported
    assert ok(http.get(f"/subjects/{subject}/versions")) == [3, 7, 9, 10]


# -- JSON Schema compatibility, rule by rule, through /compatibility -----------------------------------


def obj(properties: dict, **more: Any) -> dict:
    return {"type": "object", "properties": properties, **more}


def closed(properties: dict, **more: Any) -> dict:
    return obj(properties, additionalProperties=False, **more)


STRING_OR_NULL = {"type": ["string", "null"]}
INT = {"type": "integer"}

# (rule, old schema, new schema, BACKWARD compatible (new reads old), FORWARD compatible (old reads new))
JSON_RULES: list[Any] = [
    ("type-narrowed", STRING_OR_NULL, STR, False, True),
    ("type-widened", STR, STRING_OR_NULL, True, False),
    ("type-changed", STR, INT, False, False),
    ("integer-widened-to-number", INT, {"type": "number"}, True, False),
    ("enum-extended", {"type": "string", "enum": ["a", "b"]}, {"type": "string", "enum": ["a", "b", "c"]}, True, False),
    ("enum-narrowed", {"type": "string", "enum": ["a", "b", "c"]}, {"type": "string", "enum": ["a", "b"]}, False, True),
    ("maximum-increased", {"type": "integer", "maximum": 10}, {"type": "integer", "maximum": 20}, True, False),
    ("maximum-decreased", {"type": "integer", "maximum": 20}, {"type": "integer", "maximum": 10}, False, True),
    ("minimum-added", INT, {"type": "integer", "minimum": 0}, False, True),
    ("minimum-removed", {"type": "integer", "minimum": 0}, INT, True, False),
    ("exclusive-minimum-increased", {"type": "number", "exclusiveMinimum": 0}, {"type": "number", "exclusiveMinimum": 5}, False, True),
    ("exclusive-maximum-decreased", {"type": "number", "exclusiveMaximum": 10}, {"type": "number", "exclusiveMaximum": 5}, False, True),
    ("multiple-of-reduced", {"type": "integer", "multipleOf": 10}, {"type": "integer", "multipleOf": 5}, True, False),
    ("multiple-of-changed", {"type": "integer", "multipleOf": 10}, {"type": "integer", "multipleOf": 3}, False, False),
    ("max-length-increased", {"type": "string", "maxLength": 5}, {"type": "string", "maxLength": 10}, True, False),
    ("max-length-decreased", {"type": "string", "maxLength": 10}, {"type": "string", "maxLength": 5}, False, True),
    ("min-length-increased", {"type": "string", "minLength": 1}, {"type": "string", "minLength": 3}, False, True),
    ("min-length-removed", {"type": "string", "minLength": 1}, STR, True, False),
    ("pattern-added", STR, {"type": "string", "pattern": "^a"}, False, True),
    ("pattern-removed", {"type": "string", "pattern": "^a"}, STR, True, False),
    ("pattern-changed", {"type": "string", "pattern": "^a"}, {"type": "string", "pattern": "^b"}, False, False),
    ("items-widened", {"type": "array", "items": STR}, {"type": "array", "items": STRING_OR_NULL}, True, False),
    ("items-narrowed", {"type": "array", "items": STRING_OR_NULL}, {"type": "array", "items": STR}, False, True),
    ("items-changed", {"type": "array", "items": STR}, {"type": "array", "items": INT}, False, False),
    ("max-items-decreased", {"type": "array", "maxItems": 10}, {"type": "array", "maxItems": 5}, False, True),
    ("min-items-decreased", {"type": "array", "minItems": 5}, {"type": "array", "minItems": 1}, True, False),
    ("unique-items-added", {"type": "array"}, {"type": "array", "uniqueItems": True}, False, True),
    ("unique-items-removed", {"type": "array", "uniqueItems": True}, {"type": "array"}, True, False),
    ("required-added", obj({"a": STR}), obj({"a": STR}, required=["a"]), False, True),
    ("required-removed", obj({"a": STR}, required=["a"]), obj({"a": STR}), True, False),
    ("property-added-to-open-model", obj({"a": STR}), obj({"a": STR, "b": STR}), False, True),
    ("untyped-property-added-to-open-model", obj({"a": STR}), obj({"a": STR, "b": {}}), True, True),
    ("property-removed-from-open-model", obj({"a": STR, "b": STR}), obj({"a": STR}), True, False),
    ("property-added-to-closed-model", closed({"a": STR}), closed({"a": STR, "b": STR}), True, False),
    ("required-property-added-to-closed-model", closed({"a": STR}), closed({"a": STR, "b": STR}, required=["b"]), False, False),
    pytest.param(
        "required-property-with-default-added-to-closed-model", closed({"a": STR}),
        closed({"a": STR, "b": {"type": "string", "default": ""}}, required=["b"]), True, False,
        id="required-property-with-default-added-to-closed-model",
    ),
    ("property-removed-from-closed-model", closed({"a": STR, "b": STR}), closed({"a": STR}), False, True),
    ("property-type-narrowed", obj({"a": STRING_OR_NULL}), obj({"a": STR}), False, True),
    ("property-type-widened", obj({"a": STR}), obj({"a": STRING_OR_NULL}), True, False),
    ("additional-properties-removed", obj({"a": STR}), closed({"a": STR}), False, True),
    ("additional-properties-added", closed({"a": STR}), obj({"a": STR}), True, False),
    ("additional-properties-narrowed", obj({}, additionalProperties={"type": ["string", "integer"]}), obj({}, additionalProperties=STR), False, True),
    ("additional-properties-extended", obj({}, additionalProperties=STR), obj({}, additionalProperties={"type": ["string", "integer"]}), True, False),
    ("max-properties-decreased", {"type": "object", "maxProperties": 5}, {"type": "object", "maxProperties": 3}, False, True),
    ("one-of-extended", {"oneOf": [STR, INT]}, {"oneOf": [STR, INT, {"type": "boolean"}]}, True, False),
    ("one-of-narrowed", {"oneOf": [STR, INT, {"type": "boolean"}]}, {"oneOf": [STR, INT]}, False, True),
    ("any-of-extended", {"anyOf": [STR, INT]}, {"anyOf": [STR, INT, {"type": "boolean"}]}, True, False),
    ("any-of-narrowed", {"anyOf": [STR, INT]}, {"anyOf": [STR]}, False, True),
    ("any-of-branch-changed", {"anyOf": [STR, INT]}, {"anyOf": [STR, {"type": "boolean"}]}, False, False),
    ("description-changed", {"type": "string", "description": "old"}, {"type": "string", "description": "new", "title": "t"}, True, True),
    ("nothing-changed", obj({"a": STR}, required=["a"]), obj({"a": STR}, required=["a"]), True, True),
]

def _json_rule_cases() -> list[Any]:
    cases = []
    for row in JSON_RULES:
        rule, old, new, backward, forward = row.values if hasattr(row, "values") else row
        for level, expected in (("BACKWARD", backward), ("FORWARD", forward)):
            cases.append(pytest.param(level, old, new, expected, id=f"{rule}-{level}"))
    return cases


@pytest.mark.parametrize("level,old,new,compatible", _json_rule_cases())
def test_json_schema_compatibility_rules(http: httpx.Client, subject: str, level: str, old: dict, new: dict, compatible: bool) -> None:
    set_level(http, subject, level)
    register(http, subject, json.dumps(old), schemaType="JSON")
    for path in (f"/compatibility/subjects/{subject}/versions/latest", f"/compatibility/subjects/{subject}/versions"):
        answer = ok(http.post(f"{path}?verbose=true", json={"schemaType": "JSON", "schema": json.dumps(new)}))
        assert answer["is_compatible"] is compatible, answer["messages"]
        assert bool(answer["messages"]) is not compatible
    # registration agrees with the check
    registered = http.post(f"/subjects/{subject}/versions", json={"schemaType": "JSON", "schema": json.dumps(new)})
    if compatible:
        assert list(ok(registered)) == ["id"]
    else:
        assert_error(registered, 409, 40901)
