"""The metadata image's state machine (issue 14): placement, elections from the ISR on a fence
or a controlled shutdown, unclean elections, ISR changes guarded by the partition epoch.
Records are applied as the quorum would commit them; no processes, no clock."""

from __future__ import annotations

import uuid

from fastlog.metadata_image import NO_LEADER, MetadataImage, encode

TOPIC_ID = str(uuid.UUID(int=7))


def image_with(brokers: int = 3, racks: dict[int, str] | None = None, **defaults: bool) -> MetadataImage:
    image = MetadataImage(**defaults)
    for index, broker in enumerate(range(1, brokers + 1), 1):
        image.apply(index, encode({"type": "register_broker", "id": broker, "host": "h", "port": 9000 + broker, "rack": (racks or {}).get(broker)}))
    return image


def apply(image: MetadataImage, **record: object) -> None:
    image.apply(image.last_applied + 1, encode(record))


def create(image: MetadataImage, replicas: list[list[int]], **configs: str) -> None:
    apply(image, type="create_topic", name="t", id=TOPIC_ID, replicas=replicas, configs=configs)


def state(image: MetadataImage, index: int = 0) -> tuple[int, int, list[int]]:
    p = image.topics["t"].assignments[index]
    return p.leader, p.leader_epoch, p.isr


def test_replicas_are_spread_round_robin_and_racks_alternate() -> None:
    image = image_with(4, racks={1: "a", 2: "a", 3: "b", 4: "b"})
    assignment = image.assign_replicas(4, 2)
    assert [r[0] for r in assignment] == [1, 3, 2, 4], "each broker leads one partition"
    assert all(len(set(r)) == 2 for r in assignment)
    rack = {1: "a", 2: "a", 3: "b", 4: "b"}
    assert all(rack[r[0]] != rack[r[1]] for r in assignment), "the two replicas of a partition sit in different racks"
    create(image, assignment)
    apply(image, type="fence_broker", id=3)
    assert all(3 not in r for r in image.assign_replicas(3, 2)), "a fenced broker gets no new replica"
    try:
        image.assign_replicas(1, 5)
    except ValueError as e:
        assert "larger than the 3 live brokers" in str(e)
    else:
        raise AssertionError("a replication factor above the live brokers is refused")


def test_a_fenced_leader_is_replaced_from_the_isr_with_a_new_epoch() -> None:
    image = image_with()
    create(image, [[1, 2, 3]])
    assert state(image) == (1, 0, [1, 2, 3])
    apply(image, type="fence_broker", id=1)
    assert state(image) == (2, 1, [2, 3]), "the next in-sync replica leads, the fenced one leaves the ISR"
    apply(image, type="fence_broker", id=3)
    assert state(image) == (2, 1, [2]), "a fenced follower leaves the ISR; the leader stays"
    apply(image, type="fence_broker", id=2)
    assert state(image) == (NO_LEADER, 2, [2]), "no live in-sync replica: offline, the last one still named"
    apply(image, type="unfence_broker", id=1)
    assert state(image) == (NO_LEADER, 2, [2]), "an out-of-sync replica does not lead (unclean election is off)"
    apply(image, type="unfence_broker", id=2)
    assert state(image) == (2, 3, [2]), "the last in-sync replica leads again when it is back"
    assert image.leader_elections == 3


def test_unclean_election_lets_an_out_of_sync_replica_lead_when_enabled() -> None:
    image = image_with()
    create(image, [[1, 2]], **{"unclean.leader.election.enable": "true"})
    apply(image, type="fence_broker", id=2)
    apply(image, type="fence_broker", id=1)
    assert state(image) == (NO_LEADER, 1, [1])
    apply(image, type="unfence_broker", id=2)
    assert state(image) == (2, 2, [2]), "records only broker 1 had may be lost"
    broker_default = image_with(unclean_election_default=True)
    create(broker_default, [[1, 2]])
    apply(broker_default, type="fence_broker", id=2)
    apply(broker_default, type="fence_broker", id=1)
    apply(broker_default, type="unfence_broker", id=2)
    assert state(broker_default)[0] == 2


def test_a_controlled_shutdown_moves_leadership_and_keeps_the_broker_listed() -> None:
    image = image_with()
    create(image, [[1, 2, 3], [2, 3, 1]])
    apply(image, type="shutdown_broker", id=1)
    assert state(image, 0) == (2, 1, [2, 3]) and state(image, 1) == (2, 0, [2, 3])
    assert 1 in [b.id for b in image.listed_brokers()], "clients still see it while it stops"
    assert not image.is_live(1) and 1 not in [b.id for b in image.live_brokers()]
    apply(image, type="fence_broker", id=1)  # its process is gone
    apply(image, type="unfence_broker", id=1)  # heard again: a new process...
    assert image.brokers[1].shut_down, "...that gets partitions only once it registers"
    apply(image, type="register_broker", id=1, host="h", port=9001, rack=None)
    assert image.is_live(1)


def test_isr_changes_apply_only_to_the_partition_epoch_they_were_decided_on() -> None:
    image = image_with()
    create(image, [[1, 2, 3]])
    apply(image, type="change_partition", name="t", id=TOPIC_ID, partition=0, partition_epoch=0, isr=[1, 2])
    assert state(image) == (1, 0, [1, 2])
    apply(image, type="change_partition", name="t", id=TOPIC_ID, partition=0, partition_epoch=0, isr=[1])
    assert state(image)[2] == [1, 2], "a change decided before the last one is dropped"
    apply(image, type="fence_broker", id=3)
    apply(image, type="change_partition", name="t", id=TOPIC_ID, partition=0, partition_epoch=1, isr=[1, 2, 3])
    assert state(image)[2] == [1, 2], "a fenced broker does not join an ISR"
    apply(image, type="change_partition", name="t", id=TOPIC_ID, partition=0, partition_epoch=1, isr=[2], leader=1)
    assert state(image)[2] == [1, 2], "a leader outside its ISR is refused"
    apply(image, type="change_partition", name="t", id=str(uuid.UUID(int=8)), partition=0, partition_epoch=1, isr=[1])
    assert state(image)[2] == [1, 2], "a change for another incarnation of the topic is ignored"


def test_records_of_the_single_replica_placement_still_apply() -> None:
    image = image_with()
    apply(image, type="create_topic", name="t", id=TOPIC_ID, partitions=2, owner=3, configs={})
    assert [state(image, i) for i in (0, 1)] == [(3, 0, [3]), (3, 0, [3])]
    apply(image, type="add_partitions", name="t", id=TOPIC_ID, partitions=3)
    assert image.topics["t"].partitions == 3 and state(image, 2) == (3, 0, [3])


def test_a_replica_that_cannot_be_written_is_offline_until_its_broker_registers_again() -> None:
    image = image_with()
    create(image, [[1, 2, 3]])
    apply(image, type="replica_offline", broker=2, name="t", id=TOPIC_ID, partition=0, why="No space left on device")
    p = image.topics["t"].assignments[0]
    assert state(image) == (1, 0, [1, 3]) and p.offline_replicas(image) == [2]
    apply(image, type="replica_offline", broker=1, name="t", id=TOPIC_ID, partition=0)
    assert state(image) == (3, 1, [3]), "a leader whose replica fails hands over to the ISR"
    apply(image, type="fence_broker", id=3)
    assert state(image)[0] == NO_LEADER, "a failed replica does not lead, even when in sync"
    apply(image, type="register_broker", id=1, host="h", port=9001, rack=None)
    assert p.failed == [2], "a restart clears the broker's own failed replicas"
    apply(image, type="register_broker", id=2, host="h", port=9002, rack=None, incarnation="b")
    apply(image, type="replica_offline", broker=2, name="t", id=TOPIC_ID, partition=0)
    apply(image, type="register_broker", id=2, host="h", port=9002, rack=None, incarnation="b")
    assert p.failed == [2], "a late duplicate of the same registration does not"
    apply(image, type="register_broker", id=2, host="h", port=9002, rack=None, incarnation="c")
    assert p.failed == [], "the next process's registration does"


def test_a_reassignment_adds_replicas_and_drops_the_old_ones_once_they_are_in_sync() -> None:
    image = image_with(4)
    create(image, [[1, 2]])
    apply(image, type="reassign_partition", name="t", id=TOPIC_ID, partition=0, target=[3, 4])
    p = image.topics["t"].assignments[0]
    assert (p.replicas, p.adding, p.removing, p.isr, p.leader) == ([3, 4, 1, 2], [3, 4], [1, 2], [1, 2], 1)
    epoch = p.partition_epoch
    apply(image, type="change_partition", name="t", id=TOPIC_ID, partition=0, partition_epoch=epoch, isr=[1, 2, 3])
    assert p.adding == [3, 4], "not before every new replica is in sync"
    apply(image, type="change_partition", name="t", id=TOPIC_ID, partition=0, partition_epoch=p.partition_epoch, isr=[1, 2, 3, 4])
    assert (p.replicas, p.adding, p.removing, p.isr, p.leader) == ([3, 4], [], [], [3, 4], 3), "the target's first in-sync replica leads"
    assert p.leader_epoch == 1


def test_a_reassignment_can_be_cancelled() -> None:
    image = image_with(3)
    create(image, [[1, 2]])
    apply(image, type="reassign_partition", name="t", id=TOPIC_ID, partition=0, target=[2, 3])
    p = image.topics["t"].assignments[0]
    assert (p.replicas, p.adding, p.removing) == ([2, 3, 1], [3], [1])
    apply(image, type="reassign_partition", name="t", id=TOPIC_ID, partition=0, target=None)
    assert (p.replicas, p.adding, p.removing, p.isr, p.leader) == ([2, 1], [], [], [1, 2], 1)


def test_a_snapshot_restores_the_whole_image() -> None:
    image = image_with(4, racks={1: "a"})
    create(image, [[1, 2, 3], [2, 3, 4]], **{"cleanup.policy": "compact"})
    apply(image, type="reassign_partition", name="t", id=TOPIC_ID, partition=1, target=[4, 1])
    apply(image, type="replica_offline", broker=3, name="t", id=TOPIC_ID, partition=0)
    apply(image, type="shutdown_broker", id=2)
    apply(image, type="create_topic", name="gone", id=str(uuid.UUID(int=5)), replicas=[[1]], configs={})
    apply(image, type="delete_topic", name="gone", id=str(uuid.UUID(int=5)))
    apply(image, type="allocate_producer_ids", broker=2, request="r", size=1000)
    copy = MetadataImage()
    copy.load_snapshot(image.to_snapshot())
    assert copy.to_snapshot() == image.to_snapshot()
    assert copy.topics["t"].assignments == image.topics["t"].assignments
    assert copy.brokers == image.brokers and copy.deleted_topics == {uuid.UUID(int=5)}
    apply(copy, type="create_topic", name="gone", id=str(uuid.UUID(int=5)), replicas=[[1]], configs={})
    assert "gone" not in copy.topics, "a deleted topic's late duplicate stays ignored"


def test_producer_id_blocks_never_overlap_and_a_repeated_request_gets_nothing_more() -> None:
    image = image_with(3)
    apply(image, type="allocate_producer_ids", broker=1, request="a", size=1000)
    apply(image, type="allocate_producer_ids", broker=2, request="b", size=1000)
    apply(image, type="allocate_producer_ids", broker=1, request="a", size=1000)  # a retried proposal
    assert image.producer_id_blocks == {1: ("a", 0, 1000), 2: ("b", 1000, 1000)}
    apply(image, type="allocate_producer_ids", broker=1, request="c", size=1000)
    assert image.producer_id_blocks[1] == ("c", 2000, 1000) and image.next_producer_id == 3000
    apply(image, type="allocate_producer_ids", broker=3, request="d", size=-5)
    assert 3 not in image.producer_id_blocks, "a nonsensical size is skipped"
