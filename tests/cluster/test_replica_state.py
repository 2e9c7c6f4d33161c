"""A leader's replica state machine under Trio's virtual clock (issue 14): the high watermark
follows the slowest in-sync follower, acks=all waits for it, a follower that stops catching up
is asked out of the ISR after replica.lag.time.max.ms, one that catches up is asked back in,
and a new leader epoch ends the waits of the old one. The broker is real (its logs on disk),
its metadata image is fed records by the test; what it would propose is recorded."""

from __future__ import annotations

import uuid
from pathlib import Path

import trio
import trio.testing

from fastlog.broker import Broker
from fastlog.config import BrokerConfig
from fastlog.metadata_image import encode
from fastlog.protocol import ErrorCode
from fastlog.records import Record, encode_batch

TOPIC_ID = str(uuid.UUID(int=9))
LAG_MS = 10_000


def leader_broker(tmp_path: Path) -> tuple[Broker, list[dict]]:
    config = BrokerConfig({
        "node.id": "1",
        "log.dirs": str(tmp_path),
        "listeners": "PLAINTEXT://127.0.0.1:0,CONTROLLER://127.0.0.1:0",
        "controller.quorum.voters": "1@127.0.0.1:1,2@127.0.0.1:2,3@127.0.0.1:3",
        "replica.lag.time.max.ms": str(LAG_MS),
    })
    broker = Broker(config)
    broker.logs.open()
    proposed: list[dict] = []
    broker.controller.propose_partition_change = lambda topic, index, **change: proposed.append(change)  # type: ignore[method-assign]
    image = broker.controller.image
    for n, record in enumerate([
        {"type": "register_broker", "id": b, "host": "127.0.0.1", "port": 9000 + b, "rack": None} for b in (1, 2, 3)
    ] + [{"type": "create_topic", "name": "t", "id": TOPIC_ID, "replicas": [[1, 2, 3]], "configs": {"min.insync.replicas": "2"}}], 1):
        image.apply(n, encode(record))
    broker.logs.create_topic("t", 1, {"min.insync.replicas": 2}, uuid.UUID(TOPIC_ID))
    return broker, proposed


def append(broker: Broker, count: int) -> int:
    """Appends `count` records as the leader; the offset after them."""
    state = broker.replicas.state("t", 0)
    _, last, _, _ = state.partition.log.append(encode_batch([Record(i, 0, None, b"v") for i in range(count)]), state.leader_epoch)
    return last + 1


def test_the_high_watermark_follows_the_slowest_in_sync_follower(tmp_path: Path) -> None:
    async def main() -> None:
        broker, _ = leader_broker(tmp_path)
        replicas = broker.replicas
        replicas.update()
        state = replicas.state("t", 0)
        assert state.leader == 1 and state.isr == [1, 2, 3]
        end = append(broker, 5)
        assert state.partition.log.high_watermark == 0, "nothing is committed before the followers have it"
        replicas.on_replica_fetch(state, 2, end)
        assert state.partition.log.high_watermark == 0, "follower 3 has nothing yet"
        replicas.on_replica_fetch(state, 3, 3)
        assert state.partition.log.high_watermark == 3
        replicas.on_replica_fetch(state, 3, end)
        assert state.partition.log.high_watermark == end

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_acks_all_waits_for_the_isr_and_times_out_or_loses_leadership(tmp_path: Path) -> None:
    async def main() -> None:
        broker, _ = leader_broker(tmp_path)
        replicas = broker.replicas
        replicas.update()
        state = replicas.state("t", 0)
        end = append(broker, 2)
        results: list = []

        async def wait(timeout_ms: int) -> None:
            results.append(await replicas.wait_for_replicas([("t", 0, end)], timeout_ms))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait, 60_000)
            await trio.sleep(1)
            replicas.on_replica_fetch(state, 2, end)
            replicas.on_replica_fetch(state, 3, end)
        assert results == [[]], "answered once both followers have the batch"
        end = append(broker, 1)
        await wait(500)
        assert results[-1] == [("t", 0, ErrorCode.REQUEST_TIMED_OUT)]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait, 60_000)
            await trio.sleep(1)
            image = broker.controller.image
            image.apply(image.last_applied + 1, encode({"type": "fence_broker", "id": 1}))  # leadership moves away
            replicas.update()
        assert results[-1] == [("t", 0, ErrorCode.NOT_LEADER_OR_FOLLOWER)]

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_a_lagging_follower_is_asked_out_of_the_isr_and_back_in(tmp_path: Path) -> None:
    async def main() -> None:
        broker, proposed = leader_broker(tmp_path)
        replicas = broker.replicas
        replicas.update()
        state = replicas.state("t", 0)
        for _ in range(3):  # follower 2 keeps up, follower 3 is silent
            end = append(broker, 1)
            replicas.on_replica_fetch(state, 2, end)
            await trio.sleep(LAG_MS / 1000 / 2)
            replicas._check_lagging_followers()
        assert proposed == [{"isr": [1, 2]}], "only the silent follower is asked out, once it lagged too long"
        image = broker.controller.image
        image.apply(image.last_applied + 1, encode({"type": "change_partition", "name": "t", "id": TOPIC_ID, "partition": 0, "partition_epoch": 0, "isr": [1, 2]}))
        replicas.update()
        assert state.isr == [1, 2]
        end = append(broker, 1)
        replicas.on_replica_fetch(state, 2, end)
        assert state.partition.log.high_watermark == end, "the high watermark no longer waits for follower 3"
        replicas.on_replica_fetch(state, 3, end - 1)
        assert proposed[-1] == {"isr": [1, 2]}, "behind the high watermark: not back yet"
        replicas.on_replica_fetch(state, 3, end)
        assert proposed[-1] == {"isr": [1, 2, 3]}, "caught up: asked back in"

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_high_watermarks_are_checkpointed_and_restored_in_a_cluster(tmp_path: Path) -> None:
    """replication-offset-checkpoint: a restarted broker keeps the high watermark it had, not
    its log end (records its followers may not have stay invisible until they fetch them)."""
    broker, _ = leader_broker(tmp_path)
    partition = broker.logs.partition("t", 0)
    partition.log.append(encode_batch([Record(i, 0, None, b"v") for i in range(5)]), 0)
    partition.log.high_watermark = 3
    broker.logs.write_high_watermarks()
    assert (tmp_path / "replication-offset-checkpoint").read_text().splitlines()[2:] == ["t 0 3"]
    broker.logs.close()
    reopened = Broker(broker.config)
    reopened.logs.open()
    log = reopened.logs.partition("t", 0).log
    assert (log.log_end_offset, log.high_watermark) == (5, 3)
    reopened.logs.close()
