"""Producer ids that are never handed out twice.

A single node reserves blocks on disk (`producer-id-block`) before using them. In a cluster a
broker asks the controller for blocks through the metadata log (an `allocate_producer_ids`
record, Kafka's AllocateProducerIds): ids are unique cluster-wide, even when a broker loses its
data directory, since each producer's partitions may live on several brokers."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import trio

from fastlog.log_manager import _write_atomically

BLOCK_SIZE = 1000


class ProducerIdAllocator:
    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "producer-id-block"
        self.next = 0
        self.block_end = 0
        self.lock = trio.Lock()

    def _reserve_block(self) -> None:
        start = int(self.path.read_text().strip() or 0) if self.path.exists() else 0
        start = max(start, self.block_end)
        _write_atomically(self.path, f"{start + BLOCK_SIZE}\n")
        self.next, self.block_end = start, start + BLOCK_SIZE

    async def next_id(self) -> int:
        async with self.lock:
            if self.next >= self.block_end:
                await trio.to_thread.run_sync(self._reserve_block)
            producer_id = self.next
            self.next += 1
            return producer_id


class ProducerIdsUnavailable(Exception):
    """No block of ids could be had from the controller in time (the client retries)."""


class ClusterProducerIds:
    """In a cluster: ids from blocks the metadata log gives this broker."""

    WAIT_SECONDS = 5

    def __init__(self, metadata: Any) -> None:
        self.metadata = metadata
        self.next = 0
        self.block_end = 0
        self.lock = trio.Lock()

    async def _allocate(self) -> None:
        request = str(uuid.uuid4())
        me = self.metadata.node_id
        record = {"type": "allocate_producer_ids", "broker": me, "request": request, "size": BLOCK_SIZE}

        def granted() -> bool:
            block = self.metadata.image.producer_id_blocks.get(me)
            return block is not None and block[0] == request

        try:
            await self.metadata.propose_and_wait(record, granted, self.WAIT_SECONDS)
        except Exception as e:
            raise ProducerIdsUnavailable(str(e)) from None
        _, first, size = self.metadata.image.producer_id_blocks[me]
        self.next, self.block_end = first, first + size

    async def next_id(self) -> int:
        async with self.lock:
            if self.next >= self.block_end:
                await self._allocate()
            producer_id = self.next
            self.next += 1
            return producer_id
