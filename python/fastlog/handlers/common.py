"""Small pieces several handlers share: error mapping and partition lookups."""

from __future__ import annotations

from typing import Any, Optional

from fastlog import _core
from fastlog.protocol import ErrorCode

# A single node is the only replica of each partition; its leader epoch never changes.
LEADER_EPOCH = 0


def storage_error_code(error: Exception) -> int:
    """The Kafka error code for an exception from the Rust core."""
    if isinstance(error, _core.CorruptRecordError):
        return ErrorCode.CORRUPT_MESSAGE
    if isinstance(error, _core.RecordTooLargeError):
        return ErrorCode.MESSAGE_TOO_LARGE
    if isinstance(error, _core.OffsetOutOfRangeError):
        return ErrorCode.OFFSET_OUT_OF_RANGE
    if isinstance(error, _core.LogIOError):
        return ErrorCode.KAFKA_STORAGE_ERROR
    if isinstance(error, _core.OutOfOrderSequenceError):
        return ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    if isinstance(error, _core.InvalidProducerEpochError):
        return ErrorCode.INVALID_PRODUCER_EPOCH
    if isinstance(error, _core.UnknownProducerIdError):
        return ErrorCode.UNKNOWN_PRODUCER_ID
    if isinstance(error, _core.InvalidRecordError):
        return ErrorCode.INVALID_RECORD
    if isinstance(error, _core.CoordinatorFencedError):
        return ErrorCode.TRANSACTION_COORDINATOR_FENCED
    return ErrorCode.UNKNOWN_SERVER_ERROR


def leader_epoch_error(current_leader_epoch: int, leader_epoch: int = LEADER_EPOCH) -> Optional[int]:
    """KIP-320: a client that knows a newer epoch than ours, or an older one, is told so."""
    if current_leader_epoch < 0 or current_leader_epoch == leader_epoch:
        return None
    if current_leader_epoch > leader_epoch:
        return ErrorCode.UNKNOWN_LEADER_EPOCH
    return ErrorCode.FENCED_LEADER_EPOCH


def missing_partition_error(broker: Any, topic: str, index: int) -> int:
    """The error for a partition this broker does not lead: NOT_LEADER_OR_FOLLOWER when the
    cluster has it (the client refreshes its metadata and goes to its leader), else
    UNKNOWN_TOPIC_OR_PARTITION."""
    view = broker.topics.get(topic)
    if broker.replicas is not None and view is not None and 0 <= index < view.partitions:
        return ErrorCode.NOT_LEADER_OR_FOLLOWER
    return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION


def led_partition(broker: Any, topic: str, index: int) -> tuple[Optional[Any], int, int]:
    """(the partition, 0, its leader epoch) where this broker leads it; else (None, the error
    for the client, -1)."""
    partition = broker.logs.partition(topic, index)
    if partition is None:
        return None, missing_partition_error(broker, topic, index), -1
    if broker.replicas is None:
        return partition, 0, LEADER_EPOCH
    epoch = broker.replicas.leader_epoch(topic, index)
    if epoch is None:
        return None, ErrorCode.NOT_LEADER_OR_FOLLOWER, -1
    return partition, 0, epoch
