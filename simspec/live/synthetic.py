"""Synthetic acceptance: the live engine's accept/reject decisions taken from an acceptance
model instead of from the target's logits -- the analogue of vLLM's
`rejection_sample_method = "synthetic"` (vllm/config/speculative.py, with
`synthetic_acceptance_rates`: per-position *unconditional* rates S_j, or
`synthetic_acceptance_length`).

Each round, row b is told to accept k_b draft tokens by an oracle of the simulator's own
protocol (simspec.sim.acceptance.AcceptanceOracle: `bind` a request, `draw` counts at
positions = tokens the request has generated so far):
  * per position: SurvivalOracle over conditional rates a_1..a_j (simspec's
    [acceptance] per_position; vLLM's S_j = a_1 * ... * a_j), seeded;
  * trace: the TraceOracle a validation's scenario replays (simspec.sim.build.build_oracle),
    so the live run accepts exactly what the simulator replays, round for round.
The accepted path is the first drafted child at each depth, k_b deep (capped by the round's
depth and by what the drafter really proposed: an n-gram lookup may propose fewer); the token
after it is the target's argmax there, as in greedy decoding.

What stays real: every kernel (draft, verify, the tree mask), batch shapes, KV growth and
rollback, the drafter's own catch-up, the timings. What does not: the output text. Forced
draft tokens are not the target's greedy choices, so the output is neither the target's
greedy output nor meaningful text; stop tokens are ignored (a run decodes its token budget).
Random weights (load_model("random:...")) are the natural partner: shapes, not weights, set
the costs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from simspec.errors import InputError
from simspec.live.sampling import walk


def parse_rates(text: str, flag: str = "--synthetic") -> list[float]:
    """'0.8,0.7,0.6' -> [0.8, 0.7, 0.6]: conditional per-position rates in [0, 1]; InputError
    naming `flag` otherwise."""
    parts = [p.strip() for p in str(text).split(",")]
    if not parts or any(p == "" for p in parts):
        raise InputError(None, flag, f"{text!r}: give per-position acceptance rates, e.g. 0.8,0.7,0.6")
    rates = []
    for p in parts:
        try:
            x = float(p)
        except ValueError:
            raise InputError(None, flag, f"{p!r} is not a number (per-position rates, e.g. 0.8,0.7,0.6)") from None
        if not (math.isfinite(x) and 0.0 <= x <= 1.0):
            raise InputError(None, flag, f"{p} is not a rate in [0, 1]")
        rates.append(x)
    if len(rates) > 64:
        raise InputError(None, flag, f"{len(rates)} rates: at most 64 positions")
    return rates


class SyntheticAcceptance:
    """Forced accepted counts per row and round. Rows follow the engine's batch: `start`
    (a static batch), `admit` (rows appended), `retire` (rows kept); request ids are given out
    in admission order (FCFS: the serving policy admits in arrival order, ids in arrival order).
    `forced` keeps every round's draws (before the caps), row by row."""

    def __init__(self, oracle, source: str) -> None:
        self.oracle = oracle  # None: nothing is ever accepted (depth 0)
        self.source = source
        self.next_id = 0
        self.handles: list[int] = []
        self.prompt_len: list[int] = []
        self.forced: list[list[int]] = []

    @classmethod
    def per_position(cls, rates: Sequence[float], depth: int, seed: int = 0) -> "SyntheticAcceptance":
        """Chain acceptance with conditional rates a_1.. (the last reused deeper), seeded."""
        from simspec.sim.acceptance import SurvivalOracle, chain_survival

        rates = [float(x) for x in rates]
        if not rates or any(not 0.0 <= x <= 1.0 for x in rates):
            raise ValueError(f"per-position rates must be in [0, 1], got {rates}")
        oracle = SurvivalOracle(chain_survival(rates, depth), np.random.default_rng(seed)) if depth > 0 else None
        return cls(oracle, f"per_position {','.join(f'{x:g}' for x in rates)} seed {seed}")

    def start(self, prompts: Sequence[Sequence[int]]) -> None:
        self.handles, self.prompt_len = [], []
        self.admit(prompts)

    def admit(self, prompts: Sequence[Sequence[int]]) -> None:
        for p in prompts:
            self.handles.append(self.oracle.bind(self.next_id) if self.oracle is not None else 0)
            self.prompt_len.append(len(p))
            self.next_id += 1

    def retire(self, keep: list[int]) -> None:
        self.handles = [self.handles[b] for b in keep]
        self.prompt_len = [self.prompt_len[b] for b in keep]

    def decide(self, seqs: Sequence[Sequence[int]]) -> list[int]:
        """Each row's forced count this round. seqs: the rows' committed tokens (prompt + output
        so far, the pending token not included), so a row has generated len - prompt + 1."""
        if len(seqs) != len(self.handles):
            raise RuntimeError(f"synthetic acceptance tracks {len(self.handles)} rows, the batch has {len(seqs)}")
        if self.oracle is None:
            k = [0] * len(seqs)
        else:
            pos = np.array([len(s) + 1 - n for s, n in zip(seqs, self.prompt_len)], dtype=np.int64)
            k = [int(x) for x in self.oracle.draw(np.array(self.handles, dtype=np.int64), pos)]
        self.forced.append(k)
        return k


def synthetic_accept(children: list[list[int]], drafted: list[list[bool]], argmax: list[list[int]], counts: list[int]) -> tuple[list[list[int]], list[int]]:
    """Per row: the forced path (first drafted child per depth, counts[b] deep at most) and the
    target's argmax after it."""
    paths, nxt = [], []
    for ok, best, k in zip(drafted, argmax, counts):
        path = walk(children, lambda parent, c: ok[c], limit=k)
        paths.append(path)
        nxt.append(best[path[-1]])
    return paths, nxt
