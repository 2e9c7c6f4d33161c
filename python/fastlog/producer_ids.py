"""Producer ids that stay unique across restarts: blocks are reserved on disk before use.

In a cluster every node hands out ids from its own space (its node id in the bits above 40), so
ids are unique cluster-wide without asking the controller for blocks (Kafka's
AllocateProducerIds) while each producer's partitions may live on several brokers."""

from __future__ import annotations

from pathlib import Path

import trio

from fastlog.log_manager import _write_atomically

BLOCK_SIZE = 1000
SPACE_BITS = 40  # ids per node space: 2**40; node ids up to 2**23 keep ids below 2**63


class ProducerIdAllocator:
    def __init__(self, data_dir: Path, space: int = 0) -> None:
        self.path = data_dir / "producer-id-block"
        self.base = (space & ((1 << 23) - 1)) << SPACE_BITS
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
            return self.base + producer_id
