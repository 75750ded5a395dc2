"""The dispatcher's choice in O(log R): the least-loaded replica, the lowest index on a tie,
exactly what `min(replicas, key=load)` picks, without scanning every replica per request."""

from __future__ import annotations

import heapq
from typing import Callable


class LeastLoaded:
    """A heap of (load, index) entries; an entry is current while its replica's load still
    equals it. `changed(i)` after every change of replica i's load keeps one current entry
    per replica, so the smallest current entry is the least-loaded, lowest-index replica."""

    def __init__(self, loads: list[Callable[[], int]]) -> None:
        self._load = loads
        self._heap = [(f(), i) for i, f in enumerate(loads)]
        heapq.heapify(self._heap)

    def changed(self, i: int) -> None:
        heapq.heappush(self._heap, (self._load[i](), i))

    def pick(self) -> int:
        heap = self._heap
        while heap[0][0] != self._load[heap[0][1]]():
            heapq.heappop(heap)  # stale: that replica's load has changed since
        return heap[0][1]
