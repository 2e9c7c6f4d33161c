"""Exactly-once mirroring (`exactly.once.source.support=enabled`, MM2's name): each round's
copies and the progress that records them go to the target in one transaction.

The mirror is a transactional producer of the target cluster (`transactional.id`
`mm2-<source>-><target>-<worker>`): every round adds the partitions it writes
(AddPartitionsToTxn), appends their batches as its own (producer id, epoch, sequences: `stamp`),
puts the new positions of the progress group into the same transaction (AddOffsetsToTxn,
TxnOffsetCommit) and commits (EndTxn). A mirror killed mid-round leaves an open transaction
that the next start's InitProducerId aborts (it fences the old incarnation too), and it resumes
from the progress of the last committed round: nothing is copied twice, nothing is lost. A
failed round is aborted and the positions are read again from the target.
"""

from __future__ import annotations

import time
from typing import Mapping

from fastlog import protocol
from fastlog.client import Client, KafkaError, check
from fastlog.mirror.batches import stamp
from fastlog.protocol import ErrorCode

TRANSACTION_TIMEOUT_MS = 60_000
RETRIABLE = (ErrorCode.CONCURRENT_TRANSACTIONS, ErrorCode.COORDINATOR_LOAD_IN_PROGRESS, ErrorCode.NOT_COORDINATOR,
             ErrorCode.COORDINATOR_NOT_AVAILABLE)
RETRY_SECONDS = 10.0


def first_partition_error(response) -> int:
    """An AddPartitionsToTxn (v3 and below) response's first partition error, or 0."""
    codes = [p.partition_error_code for t in response.results_by_topic_v3_and_below for p in t.results_by_partition]
    return next((c for c in codes if c), 0)


class TargetTransactions:
    def __init__(self, target: Client, transactional_id: str) -> None:
        self.target = target
        self.transactional_id = transactional_id
        self.producer_id = -1
        self.producer_epoch = -1
        self.sequences: dict[tuple[str, int], int] = {}  # next sequence per target partition
        self.open = False

    def _call(self, body, error_of=lambda response: getattr(response, "error_code", 0)):
        """A request to the transaction coordinator, retried while it is busy or moving
        (`error_of` reads a response's error code)."""
        deadline = time.monotonic() + RETRY_SECONDS
        while True:
            response = self.target.coordinator(self.transactional_id, key_type=1).request(body)
            if error_of(response) not in RETRIABLE or time.monotonic() >= deadline:
                return response
            time.sleep(0.05)

    def start(self) -> None:
        """A new producer session: fences an older mirror with this id and aborts what it left open."""
        body = protocol.InitProducerIdRequest(transactional_id=self.transactional_id, transaction_timeout_ms=TRANSACTION_TIMEOUT_MS,
                                              producer_id=-1, producer_epoch=-1)
        response = self._call(body)
        check(response.error_code, context=f"InitProducerId of {self.transactional_id!r}")
        self.producer_id, self.producer_epoch = response.producer_id, response.producer_epoch
        self.sequences = {}
        self.open = False

    def add_partitions(self, partitions: list[tuple[str, int]]) -> None:
        A = protocol.AddPartitionsToTxnRequest
        by_topic: dict[str, list[int]] = {}
        for topic, index in sorted(partitions):
            by_topic.setdefault(topic, []).append(index)
        body = A(v3_and_below_transactional_id=self.transactional_id, v3_and_below_producer_id=self.producer_id,
                 v3_and_below_producer_epoch=self.producer_epoch,
                 v3_and_below_topics=[A.AddPartitionsToTxnTopic(name=t, partitions=ids) for t, ids in by_topic.items()])
        response = self._call(body, first_partition_error)
        check(first_partition_error(response), context=f"AddPartitionsToTxn of {self.transactional_id!r}")
        self.open = True

    def stamped(self, partition: tuple[str, int], batch: bytes, count: int) -> bytes:
        sequence = self.sequences.get(partition, 0)
        self.sequences[partition] = sequence + count
        return stamp(batch, self.producer_id, self.producer_epoch, sequence)

    def commit(self, group: str, offsets: Mapping[tuple[str, int], int]) -> None:
        """The group's offsets in the transaction, then the commit."""
        if offsets:
            add = protocol.AddOffsetsToTxnRequest(transactional_id=self.transactional_id, producer_id=self.producer_id,
                                                  producer_epoch=self.producer_epoch, group_id=group)
            check(self._call(add).error_code, context=f"AddOffsetsToTxn of {self.transactional_id!r}")
            self._commit_offsets(group, offsets)
            self.open = True
        self._end(True)

    def abort(self) -> None:
        """Aborts the open transaction, if any (errors ignored: the next InitProducerId aborts it anyway)."""
        if self.open:
            try:
                self._end(False)
            except (KafkaError, OSError):
                pass
        self.open = False

    def _commit_offsets(self, group: str, offsets: Mapping[tuple[str, int], int]) -> None:
        T = protocol.TxnOffsetCommitRequest
        by_topic: dict[str, list] = {}
        for (topic, index), offset in sorted(offsets.items()):
            by_topic.setdefault(topic, []).append(T.TxnOffsetCommitRequestPartition(partition_index=index, committed_offset=offset))
        body = T(transactional_id=self.transactional_id, group_id=group, producer_id=self.producer_id, producer_epoch=self.producer_epoch,
                 topics=[T.TxnOffsetCommitRequestTopic(name=t, partitions=p) for t, p in by_topic.items()])
        response = self.target.coordinator(group).request(body)
        for t in response.topics:
            for p in t.partitions:
                check(p.error_code, context=f"TxnOffsetCommit of {group!r} for {t.name}-{p.partition_index}")

    def _end(self, commit: bool) -> None:
        body = protocol.EndTxnRequest(transactional_id=self.transactional_id, producer_id=self.producer_id,
                                      producer_epoch=self.producer_epoch, committed=commit)
        response = self._call(body)
        self.open = False
        check(response.error_code, context=f"EndTxn of {self.transactional_id!r}")
