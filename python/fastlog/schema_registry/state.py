"""What the registry knows: every record of the `_schemas` topic, applied in log order.

Each registry instance reads the whole topic and applies it here, so instances on one cluster
(and a Confluent registry on the same topic) agree: the topic's order decides. Records use
Confluent's layout (JSON keys and values):

- `{"keytype":"SCHEMA","subject":S,"version":V,"magic":1}` → `{"subject","version","id",
  "schemaType" (absent for AVRO),"references","schema","deleted"}`; a later value with
  `"deleted": true` soft-deletes the version, a tombstone (null value) removes it for good.
- `{"keytype":"CONFIG","subject":S|null,"magic":0}` → `{"compatibilityLevel": L}` (null: unset).
- `{"keytype":"MODE","subject":S|null,"magic":0}` → `{"mode": M}` (null: unset).
- `{"keytype":"DELETE_SUBJECT","subject":S,"magic":0}` → `{"subject":S,"version":V}`: every
  version up to V soft-deleted.
- `{"keytype":"CLEAR_SUBJECT","subject":S,"magic":0}`: the subject's versions removed for good.
- `{"keytype":"NOOP","magic":0,"purpose":"maxId"}` → `{"maxId": N}`: the largest id given so
  far, written before a hard delete, so that compaction, which drops the deleted versions'
  records, cannot make a restarted registry give their ids again (the latest record of a key
  survives compaction; a Confluent reader skips a NOOP).

Writers do not coordinate: an instance appends what it wants and reads the topic up to its
record to learn whether it won. A SCHEMA record loses (is not applied) when its subject
already has that version with other content, or its id already names other content; the
writer then tries again with fresh numbers. Ids are never reused: `max_id` counts every id
ever seen, deleted ones included.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from fastlog.schema_registry.schema_types import AVRO, Reference


@dataclass
class SchemaVersion:
    subject: str
    version: int
    id: int
    schema: str
    schema_type: str = AVRO
    references: tuple[Reference, ...] = ()
    deleted: bool = False

    @property
    def content(self) -> tuple:
        return (self.schema_type, self.schema, self.references)

    def to_value(self) -> dict:
        value: dict[str, Any] = {"subject": self.subject, "version": self.version, "id": self.id}
        if self.schema_type != AVRO:
            value["schemaType"] = self.schema_type
        if self.references:
            value["references"] = [r.to_json() for r in self.references]
        value["schema"] = self.schema
        value["deleted"] = self.deleted
        return value


def schema_key(subject: str, version: int) -> dict:
    return {"keytype": "SCHEMA", "subject": subject, "version": version, "magic": 1}


def config_key(subject: Optional[str]) -> dict:
    """The global key has no subject field (Confluent's; Karapace writes "subject": null, read too)."""
    return {"keytype": "CONFIG", "magic": 0} if subject is None else {"keytype": "CONFIG", "subject": subject, "magic": 0}


def mode_key(subject: Optional[str]) -> dict:
    return {"keytype": "MODE", "magic": 0} if subject is None else {"keytype": "MODE", "subject": subject, "magic": 0}


def delete_subject_key(subject: str) -> dict:
    return {"keytype": "DELETE_SUBJECT", "subject": subject, "magic": 0}


# The id watermark's own key: Confluent writes NOOP records with the bare key and no value (a
# tombstone to compaction), which must not take the watermark with it.
MAX_ID_KEY = {"keytype": "NOOP", "magic": 0, "purpose": "maxId"}
MAX_ID = 2**31 - 1  # ids and versions are 4-byte signed integers on the wire


@dataclass
class RegistryState:
    subjects: dict[str, dict[int, SchemaVersion]] = field(default_factory=dict)
    contents: dict[int, tuple] = field(default_factory=dict)  # id → (type, schema, references)
    ids: dict[tuple, int] = field(default_factory=dict)  # content → id
    holders: dict[int, set[tuple[str, int]]] = field(default_factory=dict)  # id → (subject, version) having it
    configs: dict[Optional[str], str] = field(default_factory=dict)  # None: the global level
    modes: dict[Optional[str], str] = field(default_factory=dict)
    max_id: int = 0

    def apply(self, key: Any, value: Any) -> None:
        """Applies one record; anything it cannot read is skipped (another writer's newer
        record types, garbage), as Confluent's reader skips it."""
        if not isinstance(key, dict) or (key.get("subject") is not None and not isinstance(key.get("subject"), str)):
            return
        kind = key.get("keytype")
        subject = key.get("subject")
        if kind == "SCHEMA" and isinstance(subject, str):
            self._apply_schema(subject, key.get("version"), value)
        elif kind == "CONFIG":
            self._apply_setting(self.configs, subject, value, "compatibilityLevel")
        elif kind == "MODE":
            self._apply_setting(self.modes, subject, value, "mode")
        elif kind == "DELETE_SUBJECT" and isinstance(subject, str) and isinstance(value, dict):
            upto = value.get("version")
            for entry in self.subjects.get(subject, {}).values():
                if not isinstance(upto, int) or entry.version <= upto:
                    entry.deleted = True
        elif kind == "NOOP" and isinstance(value, dict) and isinstance(value.get("maxId"), int) and 0 <= value["maxId"] <= MAX_ID:
            self.max_id = max(self.max_id, value["maxId"])
        elif kind == "CLEAR_SUBJECT" and isinstance(subject, str):
            versions = self.subjects.get(subject, {})
            for version in [v for v, e in versions.items() if e.deleted]:
                self._unindex(versions.pop(version))
            if not versions:
                self.subjects.pop(subject, None)

    def _apply_schema(self, subject: str, version: Any, value: Any) -> None:
        if not isinstance(version, int) or isinstance(version, bool):
            return
        versions = self.subjects.setdefault(subject, {})
        if value is None:  # permanently deleted
            gone = versions.pop(version, None)
            if not versions:
                del self.subjects[subject]
            if gone is not None:
                self._unindex(gone)
            return
        entry = _schema_version(subject, value)
        if entry is None or entry.version != version:
            if not versions:
                del self.subjects[subject]
            return
        known = versions.get(entry.version)
        if known is not None and known.content != entry.content:
            return  # another writer's version won
        if self.contents.get(entry.id, entry.content) != entry.content:
            return  # the id names other content
        versions[entry.version] = entry
        self.holders.setdefault(entry.id, set()).add((subject, entry.version))
        self.contents[entry.id] = entry.content
        self.ids.setdefault(entry.content, entry.id)
        self.max_id = max(self.max_id, entry.id)

    def _unindex(self, gone: SchemaVersion) -> None:
        holders = self.holders.get(gone.id, set())
        holders.discard((gone.subject, gone.version))
        if not holders:
            self.holders.pop(gone.id, None)
            if self.ids.get(gone.content) == gone.id:
                # the id no longer resolves; the same schema registered again gets a new one
                del self.ids[gone.content]

    @staticmethod
    def _apply_setting(settings: dict, subject: Any, value: Any, field_name: str) -> None:
        if subject is not None and not isinstance(subject, str):
            return
        if isinstance(value, dict) and isinstance(value.get(field_name), str):
            settings[subject] = value[field_name]
        else:
            settings.pop(subject, None)

    # -- questions --------------------------------------------------------------------------

    def live_versions(self, subject: str) -> list[SchemaVersion]:
        return [e for _, e in sorted(self.subjects.get(subject, {}).items()) if not e.deleted]

    def all_versions(self, subject: str) -> list[SchemaVersion]:
        return [e for _, e in sorted(self.subjects.get(subject, {}).items())]

    def subject_names(self, deleted: bool = False) -> list[str]:
        return sorted(s for s, versions in self.subjects.items() if deleted or any(not e.deleted for e in versions.values()))

    def versions_of_id(self, schema_id: int, deleted: bool = False) -> list[SchemaVersion]:
        """The versions with the id, by subject and version (what a deserializer's lookup asks:
        an index, not a scan)."""
        found = [self.subjects[subject][version] for subject, version in sorted(self.holders.get(schema_id, ()))]
        return [e for e in found if deleted or not e.deleted]

    def referrers(self, subject: str, version: int, deleted: bool = False) -> list[SchemaVersion]:
        """The versions (soft-deleted ones with `deleted`) that reference (subject, version)."""
        return [
            e for versions in self.subjects.values() for e in versions.values()
            if (deleted or not e.deleted) and any(r.subject == subject and r.version == version for r in e.references)
        ]

    def referenced_by(self, subject: str, version: int, deleted: bool = False) -> list[int]:
        return sorted({e.id for e in self.referrers(subject, version, deleted)})


def _schema_version(subject: str, value: Any) -> Optional[SchemaVersion]:
    if not isinstance(value, dict):
        return None
    try:
        references = tuple(Reference(str(r["name"]), str(r["subject"]), int(r["version"])) for r in value.get("references") or [])
        entry = SchemaVersion(
            subject=subject,
            version=int(value["version"]),
            id=int(value["id"]),
            schema=str(value["schema"]),
            schema_type=str(value.get("schemaType") or AVRO).upper(),
            references=references,
            deleted=bool(value.get("deleted", False)),
        )
    except (KeyError, TypeError, ValueError, OverflowError):
        return None
    if not (1 <= entry.version <= MAX_ID and 0 <= entry.id <= MAX_ID):
        return None
    return entry
