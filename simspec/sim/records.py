"""Per-request records, stored column-wise so the serving loop writes them with numpy."""

from __future__ import annotations

import numpy as np


class Records:
    COLUMNS = ("arrival", "admitted", "first_token", "finish", "prompt_len", "output_len",
               "tokens", "rounds", "accepted", "replica")

    def __init__(self, prompt_len: np.ndarray, output_len: np.ndarray, arrival: np.ndarray) -> None:
        n = len(prompt_len)
        self.prompt_len = prompt_len.astype(np.int64)
        self.output_len = output_len.astype(np.int64)
        self.arrival = arrival.astype(float).copy()
        self.admitted = np.full(n, np.nan)
        self.first_token = np.full(n, np.nan)
        self.finish = np.full(n, np.nan)
        self.tokens = np.zeros(n, dtype=np.int64)
        self.rounds = np.zeros(n, dtype=np.int64)
        self.accepted = np.zeros(n, dtype=np.int64)
        self.replica = np.full(n, -1, dtype=np.int64)

    def columns(self) -> dict[str, np.ndarray]:
        return {c: getattr(self, c) for c in self.COLUMNS}
