"""Produce (0): append producers' record batches.

v0-v11 are accepted. Legacy message sets (magic 0/1, as Produce v0-v2 carry them, and as some
clients send them in later versions too) are converted to one record batch v2 before the append
(`legacy.to_record_batch`), as Kafka 3 does; one that cannot be read is refused with
CORRUPT_MESSAGE and a log line naming the format and the client. acks=0 gets no response at all;
acks=1 and acks=-1 (all) are answered after the append on a single node (one replica: the
leader is the whole ISR, so the high watermark moves with the log end). In a cluster, a partition led here with
followers answers acks=-1 once the high watermark passes the batch (the ISR has it:
`ReplicaManager.wait_for_replicas`), REQUEST_TIMED_OUT after the request's timeout_ms;
with fewer in-sync replicas than `min.insync.replicas` acks=-1 is refused with
NOT_ENOUGH_REPLICAS before the append. Per-partition errors: UNKNOWN_TOPIC_OR_PARTITION,
NOT_LEADER_OR_FOLLOWER (another broker leads it), CORRUPT_MESSAGE (bad CRC, length, magic),
MESSAGE_TOO_LARGE (above max.message.bytes), KAFKA_STORAGE_ERROR.

`answer_frame` is the path requests take: one call into the Rust core decodes the frame and
appends every partition's batches, another encodes the response (codec generated from the same
schemas by tools/gen_rust_codec.py). A frame it declines (undecodable) comes to `handle`
through the generic codec, which answers with the precise error.
"""

from __future__ import annotations

import functools
import logging
import struct
from typing import TYPE_CHECKING, Optional, Sequence

from fastlog import _core, legacy, protocol
from fastlog.handlers import DECLINED, Pending, RequestContext, answers_frames, handles
from fastlog.handlers.common import LEADER_EPOCH, led_partition, storage_error_code
from fastlog.protocol import ErrorCode
from fastlog.records import (
    ATTR_TRANSACTIONAL,
    BATCH_ATTRIBUTES_AT,
    BATCH_HEADER_SIZE,
    BATCH_MAGIC_AT,
    BATCH_PRODUCER_AT,
    DEFAULT_MAX_BYTES,
    CorruptRecordsError,
    RecordsTooLargeError,
)
from fastlog.schema_registry import validation
from fastlog.security.acls import Operation, ResourceType, host_of
from fastlog.transaction_coordinator import NEEDS_COORDINATOR

if TYPE_CHECKING:
    from fastlog.broker import Broker
    from fastlog.security.acls import Authorizer

log = logging.getLogger(__name__)
R = protocol.ProduceResponse
VERSIONS = (0, 11)
TO_LOG_END = 2**63 - 1  # a high watermark the log clamps to its end


@answers_frames(0)
async def answer_frame(broker: "Broker", frame: bytes | bytearray, peer: str, principal: str) -> object:
    """Handles a Produce frame in the Rust core: its response frame (bytes), None for acks=0,
    or DECLINED when the core's codec cannot decode it. A partition whose flush.messages is
    reached is fsynced on a worker thread before the answer, so other connections go on.
    With an authorizer, each topic is checked (cached per principal) before any append."""
    logs, metrics = broker.logs, broker.metrics
    validated_names = logs.schema_validation_names
    if validated_names and any(name in frame for name in validated_names):
        return DECLINED  # the records are checked against the schema registry by `handle`
    may_write = None if broker.authorizer is None else functools.partial(_may_write, broker.authorizer, principal, peer, host_of(peer))
    produced = logs.table.produce(frame, VERSIONS, LEADER_EPOCH, None, may_write, broker.transactions.verify)
    if produced is None:
        return DECLINED
    if produced.needs_flush:
        await broker.io_threads.run(produced.flush, logs.table)
    for topic, index in produced.appended:
        partition = logs.partition(topic, index)
        if partition is not None:
            partition.wake_waiters()
    for topic, records, size in produced.per_topic:
        metrics.record_produce(topic, records, size)
    for topic, index, code, why in produced.refused:
        metrics.count_error(0, code)
        if why:
            log.warning("refused produce to %s-%d from %s: %s", topic, index, peer, why)
        if code == ErrorCode.KAFKA_STORAGE_ERROR and broker.replicas is not None:
            broker.on_own_loop_soon(broker.replicas.write_failed, topic, index, why)
    awaiting = produced.awaiting_replicas
    if awaiting and broker.replicas is not None:
        return Pending(lambda: answer_when_replicated(broker, produced, awaiting))
    return produced.response()


def _may_write(authorizer: "Authorizer", principal: str, peer: str, host: str, topic: str) -> bool:
    if authorizer.authorize(principal, host, Operation.WRITE, ResourceType.TOPIC, topic):
        return True
    authorizer.log_denied(principal, peer, Operation.WRITE, ResourceType.TOPIC, topic, "Produce")
    return False


async def answer_when_replicated(broker: "Broker", produced: _core.Produced, awaiting: list) -> Optional[bytes]:
    """acks=all: the response once the ISR has every partition's batches (or why not)."""
    assert broker.replicas is not None
    for topic, index, code in await broker.replicas.wait_for_replicas(awaiting, produced.timeout_ms):
        broker.metrics.count_error(0, code)
        produced.fail(topic, index, code)
    return produced.response()


def refused(index: int, code: int, message: Optional[str] = None, record_errors: Sequence = ()) -> object:
    """A partition's error answer; offsets -1 as Kafka answers them (INVALID_OFFSET).
    `record_errors`: (index of the record in its batch, why) of records refused one by one."""
    return R.PartitionProduceResponse(
        index=index,
        error_code=code,
        base_offset=-1,
        error_message=message,
        record_errors=[R.BatchIndexAndErrorMessage(batch_index=i, batch_index_error_message=why) for i, why in record_errors],
    )


def validated(broker: "Broker", request) -> bool:
    """Whether a Produce names a topic with schema validation (answered on the broker's loop,
    where the schema registry's state is)."""
    checked = broker.logs.schema_validation
    return bool(checked) and any(t.name in checked for t in request.topic_data)


async def unverified(ctx: RequestContext, transactional_id: Optional[str], topic: str, index: int, records) -> int:
    """KIP-890: the error refusing a transactional batch the coordinator has not seen the
    partition added for (0: none, or not transactional); asked of the coordinator where it is
    another broker."""
    if transactional_id is None or len(records) < BATCH_HEADER_SIZE or records[BATCH_MAGIC_AT] != 2:
        return 0
    attributes, = struct.unpack_from(">h", records, BATCH_ATTRIBUTES_AT)
    if not attributes & ATTR_TRANSACTIONAL:
        return 0
    producer_id, epoch = struct.unpack_from(">qh", records, BATCH_PRODUCER_AT)
    coordinator = ctx.broker.transactions
    code = coordinator.verify(transactional_id, producer_id, epoch, topic, index)
    if code == NEEDS_COORDINATOR:
        code = await coordinator.verify_remotely(transactional_id, producer_id, epoch, topic, index)
    return code


async def append(ctx: RequestContext, topic: str, index: int, records, acks: int, awaiting: list, transactional_id: Optional[str] = None) -> object:
    partition, error, leader_epoch = led_partition(ctx.broker, topic, index)
    if partition is None:
        return refused(index, error)
    if not records:
        return refused(index, ErrorCode.CORRUPT_MESSAGE, "produce request without record batches")
    if code := await unverified(ctx, transactional_id, topic, index, records):
        return refused(index, code)
    magic = legacy.magic_of(records)
    if magic < 2:
        try:
            # The decompressed size is bounded generously; the batch this makes is checked
            # against max.message.bytes by the append, as Kafka checks the converted batch.
            records = legacy.to_record_batch(records, DEFAULT_MAX_BYTES)
        except CorruptRecordsError as e:
            why = f"{legacy.format_name(magic)} from {ctx.peer} (client {ctx.header.client_id!r}): {e}"
            log.warning("refused produce to %s-%d: %s", topic, index, why)
            code = ErrorCode.MESSAGE_TOO_LARGE if isinstance(e, RecordsTooLargeError) else ErrorCode.CORRUPT_MESSAGE
            return refused(index, code, why)
    records = bytes(records)
    checks = ctx.broker.logs.schema_validation.get(topic)
    if checks:
        logs = ctx.broker.logs
        limit = logs.effective_configs(logs.topics[topic])["max.message.bytes"] if topic in logs.topics else DEFAULT_MAX_BYTES
        problem = await validation.refusal(ctx.broker.schema_registry, topic, records, *checks, max_batch_bytes=limit)
        if problem is not None:
            log.info("refused produce to %s-%d from %s: %s", topic, index, ctx.peer, problem[0])
            return refused(index, ErrorCode.INVALID_RECORD, *problem)
        # The check may have waited for the registry: leadership may have moved meanwhile.
        partition, error, leader_epoch = led_partition(ctx.broker, topic, index)
        if partition is None:
            return refused(index, error)
    replicas = ctx.broker.replicas
    state = replicas.state(topic, index) if replicas is not None else None
    replicated = state is not None and not replicas.alone(state)
    if state is not None and acks == -1 and replicas.isr_short(state):
        return refused(index, ErrorCode.NOT_ENOUGH_REPLICAS, "the partition has fewer in-sync replicas than min.insync.replicas")
    try:
        base_offset, last_offset, append_time, count = partition.log.append(records, leader_epoch)
    except _core.StorageError as e:
        message, *record_errors = e.args  # InvalidRecordError may carry the records refused
        log.warning("refused produce to %s-%d from %s: %s", topic, index, ctx.peer, message)
        code = storage_error_code(e)
        if code == ErrorCode.KAFKA_STORAGE_ERROR and replicas is not None:
            ctx.broker.on_own_loop_soon(replicas.write_failed, topic, index, message)
        return refused(index, code, message, record_errors[0] if record_errors else ())
    if replicated:
        awaiting.append((topic, index, last_offset + 1))
    else:  # the log end, read and set under the log's lock (another loop may append meanwhile)
        partition.log.high_watermark = TO_LOG_END
    partition.wake_waiters()
    ctx.broker.metrics.record_produce(topic, count, len(records))
    return R.PartitionProduceResponse(
        index=index,
        error_code=0,
        base_offset=base_offset,
        log_append_time_ms=append_time,
        log_start_offset=partition.log.log_start_offset,
    )


async def answer_when_in_sync(ctx: RequestContext, request, responses: list, awaiting: list) -> object:
    """acks=all on this path: the response once the ISR has every partition's batches."""
    assert ctx.broker.replicas is not None
    for topic, index, code in await ctx.broker.replicas.wait_for_replicas(awaiting, request.timeout_ms):
        ctx.broker.metrics.count_error(0, code)
        for t in responses:
            for position, p in enumerate(t.partition_responses):
                if t.name == topic and p.index == index:
                    t.partition_responses[position] = refused(index, code)
    return R(responses=responses, throttle_time_ms=0)


@handles(0, *VERSIONS)
async def handle(ctx: RequestContext, request):
    if request.acks not in (-1, 0, 1):
        responses = [
            R.TopicProduceResponse(
                name=t.name,
                partition_responses=[refused(p.index, ErrorCode.INVALID_REQUIRED_ACKS) for p in t.partition_data],
            )
            for t in request.topic_data
        ]
        return None if request.acks == 0 else R(responses=responses)
    awaiting: list = []
    responses = []
    for t in request.topic_data:  # a loop, not a comprehension: await in one needs Python 3.11
        answers = []
        if not ctx.allows(Operation.WRITE, ResourceType.TOPIC, t.name):
            answers = [refused(p.index, ErrorCode.TOPIC_AUTHORIZATION_FAILED) for p in t.partition_data]
        for p in t.partition_data if not answers else ():
            answers.append(await append(ctx, t.name, p.index, p.records, request.acks, awaiting, request.transactional_id))
        responses.append(R.TopicProduceResponse(name=t.name, partition_responses=answers))
    if request.acks == 0:
        return None
    if request.acks == -1 and awaiting and ctx.broker.replicas is not None:
        # As the Rust path's: the answer waits for the ISR while the connection reads on.
        return Pending(lambda: answer_when_in_sync(ctx, request, responses, awaiting))
    return R(responses=responses, throttle_time_ms=0)
