"""The registry's operations, on Trio: reads answer from the applied state, writes append to
`_schemas` and wait until the record is read back and applied (`state.py` says who wins when
two instances write at once).

One task tails the topic for the life of the registry (`run`); writes in this instance take
turns (`_write_lock`), each first catching up with the topic's end so it decides on
everything written before it.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from typing import Any, AsyncIterator, Optional, Sequence

import trio

from fastlog.schema_registry import compatibility, errors
from fastlog.schema_registry.schema_types import ParsedSchema, Reference, parse
from fastlog.schema_registry.state import (
    MAX_ID_KEY,
    RegistryState,
    SchemaVersion,
    config_key,
    delete_subject_key,
    mode_key,
    schema_key,
)
from fastlog.schema_registry.topic import SchemasTopic

log = logging.getLogger(__name__)

READ_WAIT_MS = 500
RETRY_SECONDS = 0.5
WRITE_ATTEMPTS = 10
MODES = ("READWRITE", "READONLY", "IMPORT")
MAX_ID = 2**31 - 1
MAX_REFERENCES = 1000  # schemas one schema may reference, directly and through others
PARSED_CACHE_BYTES = 64 << 20


class SchemaRegistry:
    def __init__(self, topic: SchemasTopic, timeout: float = 30.0) -> None:
        self.topic = topic
        self.timeout = timeout
        self.state = RegistryState()
        self.next_offset = 0  # the next record of the topic to apply
        self._applied = trio.Event()  # set (and replaced) each time records are applied
        self._write_lock = trio.Lock()
        self.ready = trio.Event()  # the topic exists and was read to its end once
        # Parsed schemas by (type, text, references, normalize), bounded by their texts' size:
        # parsing is the costly part of a request.
        self._parsed: dict[tuple, ParsedSchema] = {}
        self._parsed_bytes = 0
        # Parsing and compatibility checks run on a worker thread, one at a time: a large
        # schema must not stall the broker's loop, nor a flood of them every core.
        self._cpu = trio.CapacityLimiter(1)

    # -- the topic ----------------------------------------------------------------------------

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Tails `_schemas` until cancelled; started once the topic exists."""
        while True:
            try:
                await trio.to_thread.run_sync(self.topic.ensure)
                break
            except Exception as e:  # the cluster is starting, or unreachable for now
                log.info("schema registry: cannot create %s yet: %s", self.topic.name, e)
                self.topic.reset("_writer")
                await trio.sleep(RETRY_SECONDS)
        task_status.started()
        try:
            while True:
                try:
                    records, next_offset = await trio.to_thread.run_sync(self.topic.read, self.next_offset, READ_WAIT_MS, abandon_on_cancel=True)
                except Exception as e:
                    log.info("schema registry: reading %s failed: %s; retrying", self.topic.name, e)
                    self.topic.reset("_reader")
                    await trio.sleep(RETRY_SECONDS)
                    continue
                for key, value in records:
                    if key is not ... and value is not ...:
                        self._apply(key, value)
                self.next_offset = max(self.next_offset, next_offset)
                self._applied.set()
                self._applied = trio.Event()
                if not self.ready.is_set():
                    end = await self._end_offset()
                    if self.next_offset >= end:
                        self.ready.set()
                        log.info("schema registry: %s read (%d subjects, largest id %d)", self.topic.name, len(self.state.subjects), self.state.max_id)
        finally:
            self.topic.close()

    def _apply(self, key: Any, value: Any) -> None:
        """Any client can write to the topic: a record that breaks applying is logged and
        skipped, never the end of the registry (or of the broker it runs in)."""
        try:
            self.state.apply(key, value)
        except Exception:
            log.exception("schema registry: skipped a record of %s it cannot apply: key %.200r", self.topic.name, key)

    @contextlib.asynccontextmanager
    async def _writing(self) -> AsyncIterator[None]:
        """This instance's turn to write; a request that waits longer than the timeout for
        it is answered 50002 rather than queued without end."""
        with trio.move_on_after(self.timeout) as waited:
            await self._write_lock.acquire()
        if waited.cancelled_caught:
            raise errors.operation_timeout(f"Register operation timed out: other writes held the registry for {self.timeout:g} s")
        try:
            yield
        finally:
            self._write_lock.release()

    async def wait_ready(self) -> None:
        """Until the topic was read to its end once (answers before would miss schemas)."""
        if self.ready.is_set():
            return
        with trio.move_on_after(self.timeout):
            await self.ready.wait()
            return
        raise errors.operation_timeout(f"the registry has not read {self.topic.name} yet")

    async def _end_offset(self) -> int:
        try:
            return await trio.to_thread.run_sync(self.topic.end_offset)
        except Exception as e:
            self.topic.reset("_writer")
            raise errors.store_error(str(e)) from None

    async def _applied_past(self, offset: int, timeout: Optional[float] = None) -> None:
        timeout = self.timeout if timeout is None else timeout
        with trio.move_on_after(timeout) as waited:
            while self.next_offset <= offset:
                await self._applied.wait()
        if waited.cancelled_caught:
            raise errors.operation_timeout(f"the registry did not read {self.topic.name} up to offset {offset} in {timeout:g} s")

    async def catch_up(self, timeout: Optional[float] = None) -> None:
        """Waits until every record written before now is applied."""
        end = await self._end_offset()
        if end > 0:
            await self._applied_past(end - 1, timeout)

    async def _append(self, key: dict, value: Optional[dict]) -> int:
        try:
            offset = await trio.to_thread.run_sync(self.topic.append, key, value)
        except Exception as e:
            self.topic.reset("_writer")
            raise errors.store_error(str(e)) from None
        await self._applied_past(offset)
        return offset

    # -- settings -----------------------------------------------------------------------------

    def compatibility_level(self, subject: Optional[str]) -> str:
        if subject is not None and subject in self.state.configs:
            return self.state.configs[subject]
        return self.state.configs.get(None, compatibility.DEFAULT_LEVEL)

    def mode(self, subject: Optional[str]) -> str:
        if subject is not None and subject in self.state.modes:
            return self.state.modes[subject]
        return self.state.modes.get(None, "READWRITE")

    async def set_compatibility(self, subject: Optional[str], level: Any) -> str:
        if not isinstance(level, str) or level.strip().upper() not in compatibility.LEVELS:
            raise errors.invalid_compatibility_level()
        level = level.strip().upper()
        if subject is not None:
            check_subject(subject)
            self._check_writable(subject)
        await self._write_setting(config_key(subject), {"compatibilityLevel": level} if subject is None else {"subject": subject, "compatibilityLevel": level})
        return level

    async def delete_compatibility(self, subject: Optional[str]) -> str:
        previous = self.compatibility_level(subject)
        if subject is not None and subject not in self.state.configs:
            raise errors.subject_not_found(subject)
        if subject is not None:
            self._check_writable(subject)
        await self._write_setting(config_key(subject), None)
        return previous

    async def set_mode(self, subject: Optional[str], mode: Any, force: bool = False) -> str:
        if not isinstance(mode, str) or mode.strip().upper() not in MODES:
            raise errors.invalid_mode()
        mode = mode.strip().upper()
        if mode == "IMPORT" and not force and (self.state.subject_names() if subject is None else self.state.live_versions(subject)):
            raise errors.operation_not_permitted("Cannot import since found existing subjects")
        await self._write_setting(mode_key(subject), {"mode": mode} if subject is None else {"subject": subject, "mode": mode})
        return mode

    async def delete_mode(self, subject: str) -> str:
        previous = self.mode(subject)
        if subject not in self.state.modes:
            raise errors.subject_not_found(subject)
        await self._write_setting(mode_key(subject), None)
        return previous

    async def _write_setting(self, key: dict, value: Optional[dict]) -> None:
        async with self._writing():
            await self._append(key, value)

    # -- schemas ------------------------------------------------------------------------------

    async def parsed(self, entry_or_content: "SchemaVersion | tuple", normalize: bool = False) -> ParsedSchema:
        """The parsed schema of a stored version or of (type, text, references); parsed on a
        worker thread the first time, then remembered."""
        content = entry_or_content.content if isinstance(entry_or_content, SchemaVersion) else entry_or_content
        key = (*content, normalize)
        found = self._parsed.get(key)
        if found is None:
            schema_type, text, references = content
            referenced = await self._referenced(references)
            found = await trio.to_thread.run_sync(functools.partial(parse, schema_type, text, referenced, normalize=normalize), limiter=self._cpu)
            self._remember(key, found, len(text))
        return found

    def _remember(self, key: tuple, parsed: ParsedSchema, size: int) -> None:
        if size > PARSED_CACHE_BYTES // 16:
            return  # a huge text (a request's, most likely) is not kept
        if self._parsed_bytes + size > PARSED_CACHE_BYTES:
            self._parsed.clear()
            self._parsed_bytes = 0
        self._parsed[key] = parsed
        self._parsed_bytes += size

    async def _referenced(self, references: Sequence[Reference], seen: Optional[set] = None) -> list[tuple[str, ParsedSchema]]:
        """The parsed schemas `references` name, their own references first, each once."""
        seen = set() if seen is None else seen
        out: list[tuple[str, ParsedSchema]] = []
        for reference in references:
            if (reference.subject, reference.version) in seen:
                continue
            seen.add((reference.subject, reference.version))
            if len(seen) > MAX_REFERENCES:
                raise errors.invalid_schema(f"with more than {MAX_REFERENCES} references, direct and indirect")
            entry = self.state.subjects.get(reference.subject, {}).get(reference.version)
            if entry is None:
                raise errors.invalid_schema(f"reference {reference.name!r}: subject {reference.subject!r} version {reference.version} not found")
            out += await self._referenced(entry.references, seen)
            out.append((reference.name, await self.parsed(entry)))
        return out

    def version_entry(self, subject: str, version: Any, deleted: bool = False) -> SchemaVersion:
        """The entry `version` names: "latest" (or -1) is the newest live version, even with
        `deleted`; a number is that version, soft-deleted ones only with `deleted`."""
        number = parse_version(version)
        every = self.state.all_versions(subject)
        live = [e for e in every if not e.deleted]
        if not (every if deleted else live):
            raise errors.subject_not_found(subject)
        if number == -1:
            if not live:
                raise errors.version_not_found(-1)
            return live[-1]
        entry = self.state.subjects[subject].get(number)
        if entry is None or (entry.deleted and not deleted):
            raise errors.version_not_found(number)
        return entry

    async def _content(self, schema_type: str, text: str, references: Sequence[Reference], normalize: bool) -> tuple[ParsedSchema, tuple]:
        """The parsed schema of a request and its identity; a text seen before is not parsed
        again (serializers send the same text with every lookup)."""
        new = await self.parsed((schema_type.upper(), text, tuple(references)), normalize)
        return new, (new.schema_type, new.canonical, tuple(references))

    async def register(self, subject: str, schema_type: str, text: str, references: Sequence[Reference],
                       normalize: bool = False, schema_id: Optional[int] = None, version: Optional[int] = None) -> int:
        """The id of the schema under `subject`, registering it as a new version if needed.
        A schema the subject already has is answered before the mode is looked at (as
        Confluent's: re-registering works in READONLY); an explicit id needs IMPORT mode."""
        check_subject(subject)
        new, content = await self._content(schema_type, text, references, normalize)
        existing = self._find(subject, content)
        if existing is not None and schema_id in (None, existing.id):
            return existing.id
        mode = self.mode(subject)
        if mode == "READONLY":
            raise errors.operation_not_permitted(f"Subject {subject} is in read-only mode")
        if schema_id is not None and mode != "IMPORT":
            raise errors.operation_not_permitted(f"Subject {subject} is not in import mode")
        if schema_id is None and mode != "READWRITE":
            raise errors.operation_not_permitted(f"Subject {subject} is not in read-write mode")
        async with self._writing():
            for _ in range(WRITE_ATTEMPTS):
                await self.catch_up()
                existing = self._find(subject, content)
                if existing is not None and schema_id in (None, existing.id):
                    return existing.id
                if schema_id is None:  # compatibility is not checked for imports
                    level = self.compatibility_level(subject)
                    problems = await self._problems(level, new, self.state.live_versions(subject))
                    if problems:
                        raise errors.incompatible(subject, problems, level)
                entry = self._new_version(subject, content, schema_id, version)
                await self._append(schema_key(subject, entry.version), entry.to_value())
                won = self.state.subjects.get(subject, {}).get(entry.version)
                if won is not None and won.content == content and won.id == entry.id:
                    await self._drop_soft_deleted_copies(won)
                    return entry.id
                if won is not None:
                    # Another writer's record for this version came first and is what every
                    # instance applied; written again after ours, it stays the one compaction
                    # keeps (the last of its key), as Confluent's registry rolls back.
                    await self._append(schema_key(subject, won.version), won.to_value())
                log.info("schema registry: another writer took %s version %d or id %d first; again", subject, entry.version, entry.id)
            raise errors.store_error(f"Register schema operation under {subject!r} failed: {WRITE_ATTEMPTS} attempts lost to other writers")

    def _find(self, subject: str, content: tuple) -> Optional[SchemaVersion]:
        for entry in self.state.live_versions(subject):
            if entry.content == content:
                return entry
        return None

    def _new_version(self, subject: str, content: tuple, schema_id: Optional[int], version: Optional[int]) -> SchemaVersion:
        if (schema_id is not None and schema_id > MAX_ID) or (version is not None and version > MAX_ID):
            raise errors.invalid_schema_message(f"An id or version above {MAX_ID} does not fit the wire format")
        known = self.state.all_versions(subject)
        next_version = (known[-1].version if known else 0) + 1
        if schema_id is None:
            schema_id = self.state.ids.get(content)
            if schema_id is None:
                schema_id = self.state.max_id + 1
            if version is not None and version != next_version:
                raise errors.invalid_schema_message("Version is not one more than previous version")
        elif self.state.contents.get(schema_id, content) != content:
            raise errors.operation_not_permitted(f"Overwrite new schema with id {schema_id} is not permitted.")
        if version is None or version < 1:
            version = next_version
        elif any(e.version == version for e in known):
            raise errors.invalid_schema_message(f"Version {version} already exists in subject {subject}")
        schema_type, text, references = content
        return SchemaVersion(subject, version, schema_id, text, schema_type, references)

    async def _keep_max_id(self) -> None:
        """Before records go for good: the largest id given, kept where compaction leaves it."""
        await self._append(MAX_ID_KEY, {"maxId": self.state.max_id})

    async def _drop_soft_deleted_copies(self, entry: SchemaVersion) -> None:
        """A schema registered again after its version was soft-deleted takes that version's
        id; the soft-deleted copies go for good (as Confluent's do), unless referenced."""
        for old in self.state.all_versions(entry.subject):
            if old.deleted and old.id == entry.id and old.version != entry.version and not self.state.referenced_by(old.subject, old.version, deleted=True):
                await self._append(schema_key(old.subject, old.version), None)

    async def lookup(self, subject: str, schema_type: str, text: str, references: Sequence[Reference],
                     normalize: bool = False, deleted: bool = False) -> SchemaVersion:
        candidates = self.state.all_versions(subject) if deleted else self.state.live_versions(subject)
        if not candidates:
            raise errors.subject_not_found(subject)
        _, content = await self._content(schema_type, text, references, normalize)
        for entry in reversed(candidates):
            if entry.content == content:
                return entry
        raise errors.schema_not_found()

    async def check(self, subject: str, version: Any, schema_type: str, text: str, references: Sequence[Reference], normalize: bool = False) -> list[str]:
        """Problems of registering the schema in `subject`, against one version ("latest" or
        a number: that one only, whatever the level's transitivity) or, with `version` None,
        the live versions the level compares against."""
        new, _ = await self._content(schema_type, text, references, normalize)
        level = self.compatibility_level(subject)
        live = self.state.live_versions(subject)
        if version is None:
            earlier = live
        else:
            number = parse_version(version)
            if number == -1:
                earlier = live[-1:]
            else:
                entry = self.state.subjects.get(subject, {}).get(number)
                if entry is None or entry.deleted:
                    raise errors.version_not_found(number)
                earlier = [entry]
            level = level.replace("_TRANSITIVE", "")
        found = await self._problems(level, new, earlier)
        return found + [f"{{compatibility: '{level}'}}"] if found else []

    async def _problems(self, level: str, new: ParsedSchema, earlier: list[SchemaVersion]) -> list[str]:
        """Why `new` breaks `level` against `earlier`, then which version it breaks against
        (Confluent's details list); empty when it does not. Checked on a worker thread."""
        earlier_parsed = [await self.parsed(e) for e in earlier]
        failure = await trio.to_thread.run_sync(compatibility.first_failure, level, new, earlier_parsed, limiter=self._cpu)
        if failure is None:
            return []
        index, found = failure
        old = earlier[index]
        shown = old.schema if len(old.schema) <= 10_240 else "<truncated> " + old.schema[:10_240]
        return [*found, f"{{oldSchemaVersion: {old.version}}}", f"{{oldSchema: '{shown}'}}"]

    # -- deletes ------------------------------------------------------------------------------

    async def delete_version(self, subject: str, version: Any, permanent: bool) -> int:
        self._check_writable(subject)
        async with self._writing():
            await self.catch_up()
            number = parse_version(version)
            entry = self.version_entry(subject, version, deleted=number != -1)
            if self.state.referenced_by(subject, entry.version, deleted=permanent):
                raise errors.reference_exists(subject, entry.version)
            if permanent:
                if not entry.deleted:
                    raise errors.version_not_soft_deleted(subject, entry.version)
                await self._keep_max_id()
                await self._append(schema_key(subject, entry.version), None)
            else:
                if entry.deleted:
                    raise errors.version_soft_deleted(subject, entry.version)
                value = entry.to_value()
                value["deleted"] = True
                await self._append(schema_key(subject, entry.version), value)
            return entry.version

    async def delete_subject(self, subject: str, permanent: bool) -> list[int]:
        self._check_writable(subject)
        async with self._writing():
            await self.catch_up()
            every = self.state.all_versions(subject)
            live = [e for e in every if not e.deleted]
            if not every:
                raise errors.subject_not_found(subject)
            if permanent and live:
                raise errors.subject_not_soft_deleted(subject)
            if not permanent and not live:
                raise errors.subject_soft_deleted(subject)
            for entry in every if permanent else live:
                if any(e.subject != subject for e in self.state.referrers(subject, entry.version, deleted=permanent)):
                    raise errors.reference_exists(subject, entry.version)
            if permanent:
                await self._keep_max_id()
                for entry in reversed(every):
                    await self._append(schema_key(subject, entry.version), None)
                return [e.version for e in every]
            await self._append(delete_subject_key(subject), {"subject": subject, "version": live[-1].version})
            return [e.version for e in live]

    def _check_writable(self, subject: str) -> None:
        if self.mode(subject) == "READONLY":
            raise errors.operation_not_permitted(f"Subject {subject} is in read-only mode")


def check_subject(subject: str) -> None:
    if not subject or subject in ("__GLOBAL", "__EMPTY") or any(ord(c) < 32 or 127 <= ord(c) < 160 for c in subject):
        raise errors.RegistryError(422, 42208, f"The specified subject '{subject}' is not a valid.")


def parse_version(version: Any) -> int:
    """-1 for the latest, else the version number (1 to 2^31-1); 42202 otherwise."""
    if isinstance(version, str) and version.strip().lower() in ("latest", "-1"):
        return -1
    if version == -1:
        return -1
    try:
        number = int(version)
    except (TypeError, ValueError):
        raise errors.invalid_version(version) from None
    if not 1 <= number <= MAX_ID:
        raise errors.invalid_version(version)
    return number

