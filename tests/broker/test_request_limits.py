"""Request cost limits (issue 22): one request may name at most `max.request.entries` topics,
partitions and other array entries in all (a Metadata, ListOffsets, OffsetFetch, DeleteRecords
or DescribeConfigs naming more gets its connection closed, logged with the limit, while
normal requests are untouched), and incremental fetch sessions are bounded
(`max.incremental.fetch.session.cache.slots`), one client holding at most a quarter of them so
that a client opening sessions in a loop evicts its own, not another client's."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from fastlog import protocol as P
from fastlog.protocol import ErrorCode as E
from tests.broker.wire import WireClient
from tests.conftest import BrokerProcess

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def small_limits(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    broker = BrokerProcess(tmp_path_factory.mktemp("limits") / "data", {
        "max.request.entries": "1000", "max.incremental.fetch.session.cache.slots": "8", "console.enable": "false",
    }).start()
    yield broker
    broker.stop()


def huge_requests(count: int) -> list:
    M, L, O, D, C = P.MetadataRequest, P.ListOffsetsRequest, P.OffsetFetchRequest, P.DeleteRecordsRequest, P.DescribeConfigsRequest
    return [
        (M(topics=[M.MetadataRequestTopic(name=f"t{i}") for i in range(count)], allow_auto_topic_creation=False), 9),
        (L(replica_id=-1, topics=[L.ListOffsetsTopic(name="t", partitions=[L.ListOffsetsPartition(partition_index=i, timestamp=-1) for i in range(count)])]), 5),
        (O(group_id="g", topics=[O.OffsetFetchRequestTopic(name="t", partition_indexes=list(range(count)))]), 5),
        (D(topics=[D.DeleteRecordsTopic(name="t", partitions=[D.DeleteRecordsPartition(partition_index=i, offset=0) for i in range(count)])], timeout_ms=1000), 1),
        (C(resources=[C.DescribeConfigsResource(resource_type=2, resource_name=f"t{i}", configuration_keys=None) for i in range(count)]), 3),
    ]


@pytest.mark.parametrize("index", range(5), ids=["Metadata", "ListOffsets", "OffsetFetch", "DeleteRecords", "DescribeConfigs"])
def test_requests_naming_too_many_entries_close_the_connection(small_limits: BrokerProcess, index: int) -> None:
    body, version = huge_requests(1001)[index]
    with WireClient(small_limits.bootstrap) as wire:
        wire.send_frame(wire.encode(body, version))
        assert wire.recv_frame() is None, "the connection is closed"
    assert f"{type(body).__name__} names more than max.request.entries=1000" in small_limits.log_text()
    within, version = huge_requests(100)[index]
    with WireClient(small_limits.bootstrap) as wire:
        wire.request(within, version)  # answered


def fetch_session(wire: WireClient, session_id: int = 0, epoch: int = 0):
    F = P.FetchRequest
    body = F(replica_id=-1, max_wait_ms=0, min_bytes=0, max_bytes=1 << 20, isolation_level=0, session_id=session_id, session_epoch=epoch,
             topics=[], forgotten_topics_data=[], rack_id="")
    return wire.request(body, 12)


def test_fetch_sessions_are_bounded_and_a_loop_evicts_its_own(small_limits: BrokerProcess) -> None:
    with WireClient(small_limits.bootstrap, source="127.0.0.2") as other:
        kept = fetch_session(other)
        assert kept.error_code == 0 and kept.session_id > 0
        with WireClient(small_limits.bootstrap) as looping:
            opened = [fetch_session(looping).session_id for _ in range(50)]
            assert all(opened)
            # at most a quarter of the 8 slots each: the latest two of the loop live on
            assert fetch_session(looping, opened[-1], 1).error_code == 0
            assert fetch_session(looping, opened[0], 1).error_code == E.FETCH_SESSION_ID_NOT_FOUND
        # the other client's session was never evicted
        assert fetch_session(other, kept.session_id, 1).error_code == 0
