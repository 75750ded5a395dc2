"""One iteration of a serving loop, as the simulator and the live engine both record it.

A NamedTuple, not a dataclass: the simulator records one per speculative round, and a study
runs hundreds of thousands of rounds. The detail fields (rids, admitted, queued, kv_held) are
always filled by the live engine and by the simulator only when asked (`detail=True`), which is
what an iteration-by-iteration comparison of the two reads.
"""

from __future__ import annotations

from typing import NamedTuple


class Iteration(NamedTuple):
    kind: str                       # "prefill" or "round"
    start: float                    # seconds from the start of the run
    seconds: float                  # how long it took (the cost model's or the clock's)
    batch: int                      # sequences its forward ran: the new ones for a prefill, all for a round
    tokens: int = 0                 # output tokens it produced
    rids: tuple[int, ...] = ()      # requests in the batch at its end (before retirement), in row order
    admitted: tuple[int, ...] = ()  # prefill: the requests it admitted (the last rows of rids)
    queued: tuple[int, ...] = ()    # requests left waiting when it started, head first
    kv_held: int = 0                # KV tokens held by admitted requests during it

    def row(self) -> list:
        """[kind, start, seconds, batch], rounded: the timeline a validation JSON keeps."""
        return [self.kind, round(self.start, 6), round(self.seconds, 6), self.batch]
