"""The `_schemas` records applied in log order (`RegistryState`): what wins when writers race,
what a Confluent or Karapace writer's records mean, and records that are skipped."""

from __future__ import annotations

from fastlog.schema_registry.state import MAX_ID_KEY, RegistryState, SchemaVersion, config_key, delete_subject_key, mode_key, schema_key


def schema(subject: str, version: int, id_: int, text: str = '"string"', deleted: bool = False) -> tuple[dict, dict]:
    return schema_key(subject, version), SchemaVersion(subject, version, id_, text, deleted=deleted).to_value()


def test_the_first_record_for_a_version_or_an_id_wins() -> None:
    state = RegistryState()
    state.apply(*schema("s", 1, 1, '"string"'))
    state.apply(*schema("s", 1, 2, '"int"'))  # another writer's version 1: loses
    state.apply(*schema("t", 1, 1, '"long"'))  # id 1 for other content: loses
    assert [(e.version, e.id, e.schema) for e in state.all_versions("s")] == [(1, 1, '"string"')]
    assert state.all_versions("t") == []
    assert state.max_id == 1


def test_soft_delete_hard_delete_and_the_id_watermark() -> None:
    state = RegistryState()
    state.apply(*schema("s", 1, 7))
    state.apply(*schema("s", 1, 7, deleted=True))
    assert state.live_versions("s") == [] and state.subject_names(deleted=True) == ["s"]
    state.apply(MAX_ID_KEY, {"maxId": 7})
    state.apply(schema_key("s", 1), None)
    assert state.subject_names(deleted=True) == []
    # what compaction leaves of it (the watermark and the tombstone) still keeps id 7 taken
    replayed = RegistryState()
    replayed.apply(MAX_ID_KEY, {"maxId": 7})
    replayed.apply(schema_key("s", 1), None)
    assert replayed.max_id == 7


def test_delete_subject_marks_versions_up_to_its_version() -> None:
    state = RegistryState()
    for version in (1, 2, 3):
        state.apply(*schema("s", version, version, f'{{"type":"fixed","name":"F","size":{version}}}'))
    state.apply(delete_subject_key("s"), {"subject": "s", "version": 2})
    assert [e.version for e in state.live_versions("s")] == [3]


def test_settings_keys_of_confluent_and_karapace() -> None:
    state = RegistryState()
    state.apply(config_key(None), {"compatibilityLevel": "FULL"})  # Confluent: no subject field
    assert state.configs == {None: "FULL"}
    state.apply({"keytype": "CONFIG", "subject": None, "magic": 0}, {"compatibilityLevel": "NONE"})  # Karapace
    state.apply(config_key("s"), {"subject": "s", "compatibilityLevel": "FORWARD"})
    state.apply(mode_key("s"), {"subject": "s", "mode": "READONLY"})
    assert state.configs == {None: "NONE", "s": "FORWARD"} and state.modes == {"s": "READONLY"}
    state.apply(config_key("s"), None)
    assert "s" not in state.configs


def test_records_it_cannot_read_are_skipped() -> None:
    state = RegistryState()
    for key, value in [
        ("not a dict", {}), ({"keytype": "SCHEMA"}, {"id": 1}), ({"keytype": "SCHEMA", "subject": "s", "version": 1}, {"id": "x"}),
        ({"keytype": "CONTEXT", "tenant": "default", "context": ".c", "magic": 0}, {}), (schema_key("s", 2), {"subject": "s", "version": 3, "id": 1, "schema": "x"}),
    ]:
        state.apply(key, value)
    assert state.subjects == {} and state.max_id == 0


def test_the_id_index_follows_adds_and_removals() -> None:
    state = RegistryState()
    state.apply(*schema("a", 1, 3))
    state.apply(*schema("b", 1, 3))  # the same schema under another subject keeps its id
    assert [(e.subject, e.version) for e in state.versions_of_id(3)] == [("a", 1), ("b", 1)]
    state.apply(*schema("a", 1, 3, deleted=True))
    assert [e.subject for e in state.versions_of_id(3)] == ["b"] and len(state.versions_of_id(3, deleted=True)) == 2
    state.apply({"keytype": "CLEAR_SUBJECT", "subject": "a", "magic": 0}, {"subject": "a"})
    assert [e.subject for e in state.versions_of_id(3, deleted=True)] == ["b"]
    state.apply(schema_key("b", 1), None)
    assert state.versions_of_id(3, deleted=True) == [] and state.ids == {} and state.max_id == 3
