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

from fastlog.log_manager import write_atomically

BLOCK_SIZE = 1000


class BlockAllocator:
    """Hands out ids one by one from blocks; subclasses say where a block comes from."""

    def __init__(self) -> None:
        self.next = 0
        self.block_end = 0
        self.lock = trio.Lock()

    async def _next_block(self) -> tuple[int, int]:
        """(first id, size) of a block no one else has."""
        raise NotImplementedError

    async def next_id(self) -> int:
        async with self.lock:
            if self.next >= self.block_end:
                first, size = await self._next_block()
                self.next, self.block_end = first, first + size
            producer_id = self.next
            self.next += 1
            return producer_id


class ProducerIdAllocator(BlockAllocator):
    """A single node: blocks reserved in `producer-id-block` before use."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__()
        self.path = data_dir / "producer-id-block"

    def _reserve_block(self) -> tuple[int, int]:
        start = int(self.path.read_text().strip() or 0) if self.path.exists() else 0
        start = max(start, self.block_end)
        write_atomically(self.path, f"{start + BLOCK_SIZE}\n")
        return start, BLOCK_SIZE

    async def _next_block(self) -> tuple[int, int]:
        return await trio.to_thread.run_sync(self._reserve_block)


class ProducerIdsUnavailable(Exception):
    """No block of ids could be had from the controller in time (the client retries)."""


class ClusterProducerIds(BlockAllocator):
    """In a cluster: ids from blocks the metadata log gives this broker."""

    WAIT_SECONDS = 5

    def __init__(self, metadata: Any) -> None:
        super().__init__()
        self.metadata = metadata

    async def _next_block(self) -> tuple[int, int]:
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
        return first, size
