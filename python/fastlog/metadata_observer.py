"""A broker-only node (`process.roles=broker`): it follows the metadata quorum without voting.

Like a Kafka broker in KRaft mode, it is an observer of the metadata log: it connects to a
controller (`controller.quorum.voters`, or `controller.quorum.bootstrap.servers` when it does
not know the voters' ids), and every tick sends a fetch of the committed records after the
last one it applied. The quorum leader answers with them (its snapshot first when the node is
behind the log's start); another voter answers with where the leader is, and the node goes
there. The fetches are also the node's heartbeats: the controller fences it when they stop.

The image lives in memory: a restart fetches it again (a snapshot and the records after it).
Records this node proposes (its registration, topic changes, ISR changes) go to the leader on
the same connection, before the next fetch.
"""

from __future__ import annotations

import logging
import struct
from typing import Any, Optional

import trio

from fastlog.metadata_image import encode
from fastlog.metadata_node import (
    CATCH_UP_SECONDS, KIND_FETCH, KIND_METADATA, KIND_PROPOSAL, RECONNECT_SECONDS, MetadataNode, decode_metadata, frame, read_frame,
)

log = logging.getLogger(__name__)

ANSWER_TICKS = 20  # a fetch unanswered this long: the connection is dropped, another is tried
PROPOSALS_QUEUED = 256


class ClusterMismatch(Exception):
    """The quorum belongs to another cluster than this node's data directory."""


class MetadataObserver(MetadataNode):
    def __init__(self, broker: Any) -> None:
        super().__init__(broker)
        config = broker.config
        # Where to start: the voters' controller endpoints, or the bootstrap servers.
        self.bootstrap: list[tuple[str, int]] = list(config.quorum_voters.values()) or config.quorum_bootstrap
        self._voters: dict[int, tuple[str, int]] = dict(config.quorum_voters)
        self._leader_address: Optional[tuple[str, int]] = None
        self._epoch = 0
        self._high_watermark = 0
        self._proposals: list[bytes] = []
        self._first_answer = trio.Event()

    # -- the quorum as the rest of the broker sees it --------------------------------------------

    def quorum_state(self) -> tuple[int, int, list[tuple[int, int]], list[tuple[int, int]]]:
        voters = [(v, -1) for v in sorted(self._voters)]
        return self._epoch, self._high_watermark, voters, [(self.node_id, self.image.last_applied)]

    def voter_addresses(self) -> dict[int, tuple[str, int]]:
        return self._voters

    def propose(self, record: dict[str, Any]) -> bool:
        if len(self._proposals) >= PROPOSALS_QUEUED:
            raise ValueError("too many proposals waiting for the controller")
        self._proposals.append(encode(record))
        return True

    # -- running ---------------------------------------------------------------------------------

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        log.info("metadata: node %d observes the quorum through %s", self.node_id, self.bootstrap)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._follow)
            nursery.start_soon(self._register_self)
            with trio.move_on_after(CATCH_UP_SECONDS):
                await self._first_answer.wait()
            if not self._first_answer.is_set():
                log.warning("metadata: no controller answered within %ss; serving clients with an empty image", CATCH_UP_SECONDS)
            else:
                await self.wait_registered()
            task_status.started()

    async def _follow(self) -> None:
        """Fetches from the leader for as long as the node runs, moving on to another
        controller when one does not answer, and to the leader when told where it is."""
        attempt = 0
        while True:
            address = self._leader_address or self.bootstrap[attempt % len(self.bootstrap)]
            attempt += 1
            try:
                stream = await trio.open_tcp_stream(*address)
            except OSError as e:
                log.debug("metadata: controller %s:%d unreachable: %s", *address, e)
                self._leader_address = None
                await trio.sleep(RECONNECT_SECONDS)
                continue
            try:
                if self.broker.quorum_tls is not None:
                    stream = await self.broker.quorum_tls.connect(stream, address[0])
                async with stream:
                    await self._fetch_from(stream)
            except (trio.BrokenResourceError, trio.TooSlowError, OSError, ValueError) as e:
                log.debug("metadata: connection to %s:%d ended: %s", *address, e.__cause__ or e)
                await trio.aclose_forcefully(stream)
                self._leader_address = None
            await trio.sleep(RECONNECT_SECONDS)

    async def _fetch_from(self, stream: trio.SocketStream) -> None:
        """Fetches on one connection until its controller does not lead (or does not answer)."""
        buffer = bytearray()
        while True:
            proposals, self._proposals = self._proposals, []
            fetch = frame(KIND_FETCH, self.node_id, struct.pack(">Q", self.image.last_applied))
            await stream.send_all(b"".join(frame(KIND_PROPOSAL, self.node_id, p) for p in proposals) + fetch)
            received = None
            with trio.move_on_after(self.tick_seconds * ANSWER_TICKS):
                received = await read_frame(stream, buffer)
            if received is None or received[0] != KIND_METADATA:
                raise ValueError("the controller did not answer the fetch")
            header, records = decode_metadata(received[2])
            if not self._take(header, records):
                return
            if header.get("upto", 0) >= header.get("high_watermark", 0):
                await trio.sleep(self.tick_seconds)  # caught up: the next fetch is one tick away

    def _take(self, header: dict[str, Any], records: list[tuple[int, bytes]]) -> bool:
        """Applies an answer; False when it came from a voter that does not lead (the next
        connection goes to the leader it named)."""
        self._check_cluster(header.get("cluster_id"))
        self._voters = {int(v): (a[0], int(a[1])) for v, a in header.get("voters", {}).items()} or self._voters
        self._epoch = int(header.get("epoch", 0))
        leader = int(header.get("leader") or 0)
        if leader != self.known_leader:
            log.info("metadata: the controller is now node %s (epoch %d)", leader or "unknown", self._epoch)
            self.known_leader = leader
        if "upto" not in header:  # not the leader
            address = header.get("address")
            self._leader_address = (address[0], int(address[1])) if address else None
            return False
        if header.get("snapshot"):
            index, data = records.pop(0)
            self.image.load_snapshot(data)
        for index, data in records:
            self.image.apply(index, data)
        self.image.last_applied = max(self.image.last_applied, int(header["upto"]))
        self._high_watermark = int(header.get("high_watermark", 0))
        if records or header.get("snapshot"):
            self._image_changed()
        self._first_answer.set()
        return True

    def _check_cluster(self, cluster_id: Optional[str]) -> None:
        if not cluster_id:
            return
        logs = self.broker.logs
        if not logs.cluster_id:
            logs.adopt_cluster_id(cluster_id)
        elif logs.cluster_id != cluster_id:
            raise ClusterMismatch(f"{logs.data_dir} belongs to cluster {logs.cluster_id}; the controllers' cluster is {cluster_id}")
