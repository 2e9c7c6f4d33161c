"""Offset translation: where a source offset is on the target (MM2's OffsetSyncStore).

The replicator knows, after each round, the next source offset of a partition (P) and where
the next copied record will land on the target (D). It writes an offset sync (P, D) whenever
that pair stops following the last sync linearly (at the start, after a restart that copies a
round again, across a compacted gap), so syncs stay few while the mapping between two syncs
that do follow each other linearly is exact. A committed source offset U translates to:

- the sync's downstream offset when U is a sync's upstream offset;
- S.down + (U - S.up) when the syncs around it are linear (no gap, no repeat in between);
- S.down otherwise (S being the last sync at or before U): a sync's upstream offset need not
  be a record (a transaction marker, a compacted gap), so going on from S.down may repeat
  records but never skips one.

A U beyond what has been copied is not translated (the group is ahead of the mirror).
"""

from __future__ import annotations

import bisect
from typing import Optional

Key = tuple[str, int]  # (source topic, partition)


class OffsetSyncs:
    def __init__(self) -> None:
        self.syncs: dict[Key, list[tuple[int, int]]] = {}  # sorted by upstream offset
        self.current: dict[Key, tuple[int, int]] = {}  # (next source offset, next target offset), this run

    def add(self, key: Key, upstream: int, downstream: int) -> None:
        points = self.syncs.setdefault(key, [])
        at = bisect.bisect_left(points, (upstream, -1))
        if at < len(points) and points[at][0] == upstream:
            points[at] = (upstream, downstream)  # a restart: the later mapping wins
            del points[at + 1 :]
        else:
            points.insert(at, (upstream, downstream))
            del points[at + 1 :]  # later syncs belong to a run that was undone

    def advance(self, key: Key, upstream: int, downstream: int) -> list[tuple[int, int]]:
        """Records the position after a round; the syncs to write: none while the pair follows
        the last sync linearly, else the previous round's end (the last exact point of the
        linear run) and this one."""
        previous = self.current.get(key)
        self.current[key] = (upstream, downstream)
        points = self.syncs.get(key)
        if points:
            up, down = points[-1]
            if upstream - up == downstream - down:
                return []
        written = []
        if points and previous is not None and previous[0] > points[-1][0]:
            self.add(key, *previous)
            written.append(previous)
        self.add(key, upstream, downstream)
        return written + [(upstream, downstream)]

    def translate(self, key: Key, upstream: int) -> Optional[int]:
        points = list(self.syncs.get(key, ()))
        current = self.current.get(key)
        if current is not None:
            if upstream > current[0]:
                return None  # not copied yet
            if not points or current[0] > points[-1][0]:
                points.append(current)
        at = bisect.bisect_right(points, (upstream, float("inf"))) - 1
        if at < 0:
            return None
        up, down = points[at]
        if upstream == up:
            return down
        if at + 1 < len(points):
            next_up, next_down = points[at + 1]
            if next_up - up == next_down - down:
                return down + (upstream - up)
            return down
        return None if current is None else down
