"""The transaction coordinator's decisions that no client can reach quickly, checked on the
coordinator itself (no broker process): which producer id and epoch a transaction's markers
carry when ending it exhausted the epoch (the old id with the last epoch, as Kafka writes them,
so that the partitions close the transaction they hold), and which EndTxn v5 requests are
retries of the last one."""

from __future__ import annotations

from types import SimpleNamespace

from fastlog.config import BrokerConfig
from fastlog.coordinator_records import decode_transaction_record, transaction_record
from fastlog.transaction_coordinator import LAST_EPOCH, Marker, TransactionCoordinator, TxnMetadata, TxnState


def coordinator() -> TransactionCoordinator:
    return TransactionCoordinator(SimpleNamespace(config=BrokerConfig({}), replicas=None, controller=None))


def test_markers_of_a_transaction_that_exhausted_the_epoch_go_to_the_old_producer_id() -> None:
    meta = TxnMetadata("t", producer_id=8, producer_epoch=0, timeout_ms=60_000, state=TxnState.PREPARE_COMMIT,
                       previous_producer_id=7, client_transaction_version=2)
    assert coordinator()._marker_of(meta, commit=True) == Marker(7, LAST_EPOCH + 1, True, 0)
    meta.previous_producer_id = -1
    assert coordinator()._marker_of(meta, commit=False) == Marker(8, 0, False, 0)
    # and the choice survives a reload: the state record keeps the old id (value version 1)
    meta.previous_producer_id = 7
    key, value = transaction_record("t", meta.value())
    assert value[:2] == b"\x00\x01"
    reloaded = TxnMetadata.from_value(*decode_transaction_record(key, value))
    assert coordinator()._marker_of(reloaded, commit=True) == Marker(7, LAST_EPOCH + 1, True, 0)


def test_end_txn_v5_retries_are_recognised_by_the_epoch_before_the_bump() -> None:
    meta = TxnMetadata("t", producer_id=5, producer_epoch=4, timeout_ms=60_000, state=TxnState.COMPLETE_COMMIT)
    retry = TransactionCoordinator._is_bumped_retry
    assert retry(meta, 5, 3) and not retry(meta, 5, 4) and not retry(meta, 5, 2) and not retry(meta, 6, 3)
    meta.state = TxnState.ONGOING
    assert not retry(meta, 5, 3), "an open transaction is not a retry of the last one"
    overflowed = TxnMetadata("t", producer_id=9, producer_epoch=0, timeout_ms=60_000, state=TxnState.COMPLETE_ABORT, previous_producer_id=5)
    assert retry(overflowed, 5, LAST_EPOCH) and not retry(overflowed, 5, 10)
