"""Producer ids that stay unique across restarts: blocks are reserved on disk before use."""

from __future__ import annotations

from pathlib import Path

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
