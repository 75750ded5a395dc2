"""What a live run measured: time per phase, rounds, tokens accepted per round."""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field

PHASES = ("prefill", "draft", "verify", "other")


def sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)


@dataclass
class Stats:
    device: str = "cpu"
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PHASES, 0.0))
    rounds: int = 0  # verification passes (batch-wide)
    row_rounds: int = 0  # sequence-rounds of sequences still generating
    new_tokens: int = 0  # tokens kept in the outputs, all sequences
    prefill_tokens: int = 0  # of which the first round (the one carrying the prompts) made
    per_round: list[int] = field(default_factory=list)  # tokens each live sequence got per round
    ragged_rounds: int = 0  # rounds in which live sequences of the batch got different counts
    # every timed call in order, (phase, seconds): a greedy run's sequence repeats exactly, so
    # repeated runs can take each call's fastest-state time (simspec.validation.rounds)
    calls: list[tuple[str, float]] = field(default_factory=list)

    @contextmanager
    def phase(self, name: str):
        sync(self.device)
        t = time.perf_counter()
        try:
            yield
        finally:
            sync(self.device)
            dt = time.perf_counter() - t
            self.seconds[name] += dt
            self.calls.append((name, dt))

    @property
    def total(self) -> float:
        return sum(self.seconds.values())

    @property
    def decode_seconds(self) -> float:
        return self.total - self.seconds["prefill"]

    @property
    def tokens_per_round(self) -> float:
        return sum(self.per_round) / max(1, len(self.per_round))

    @property
    def tok_s(self) -> float:
        """Generated tokens per second, prefill included."""
        return self.new_tokens / self.total if self.total else 0.0

    @property
    def decode_tok_s(self) -> float:
        """Tokens per second after the first round (which carries the prompts: timed as prefill)."""
        n = self.new_tokens - self.prefill_tokens
        return n / self.decode_seconds if self.decode_seconds else 0.0

    def merge(self, other: "Stats") -> None:
        for k in PHASES:
            self.seconds[k] += other.seconds[k]
        self.rounds += other.rounds
        self.row_rounds += other.row_rounds
        self.new_tokens += other.new_tokens
        self.prefill_tokens += other.prefill_tokens
        self.per_round += other.per_round
        self.ragged_rounds += other.ragged_rounds
        self.calls += other.calls

    def as_dict(self) -> dict:
        return {
            "new_tokens": self.new_tokens, "rounds": self.rounds,
            "tokens_per_round": round(self.tokens_per_round, 4), "ragged_rounds": self.ragged_rounds,
            "tok_s": round(self.tok_s, 3), "decode_tok_s": round(self.decode_tok_s, 3),
            "seconds": {k: round(v, 4) for k, v in self.seconds.items()},
            "seconds_total": round(self.total, 4),
        }
