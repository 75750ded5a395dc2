"""Replay of the dynamic policies: oracles that choose each round's draft (simspec.policies'
dynamic-oracle contract) with the controllers the live engine runs, over the acceptance a
fixed oracle already replays.

  adaptive       AdaptiveLength over a chain's acceptance: the base oracle's count at full
                 depth (a trace's accepted run, or a seeded synthetic draw), cut at the length
                 chosen: a chain accepts min(run, d) of d.
  dynamic_exit   ExitChoice over the trace's early-exit columns: one accepted-run array per
                 traced exit layer, the count at the layer chosen, cut at the length chosen.

A request gets a slot of its own (its controller state) at bind; the slot maps to the traced
sequence it replays. Numpy only (the trace module is imported when a builder runs).
"""

from __future__ import annotations

import numpy as np

from simspec.errors import InputError
from simspec.sim.acceptance import SurvivalOracle
from simspec.sim.adaptive_length import AdaptiveLength
from simspec.sim.exit_choice import ExitChoice, exit_passes


class _Slots:
    """Slot -> the base oracle's handle, grown as requests bind."""

    def __init__(self) -> None:
        self._h = np.zeros(16, dtype=np.int64)
        self.n = 0

    def add(self, handle: int) -> int:
        if self.n == len(self._h):
            self._h = np.concatenate([self._h, np.zeros(len(self._h), dtype=np.int64)])
        self._h[self.n] = handle
        self.n += 1
        return self.n - 1

    def __getitem__(self, slots: np.ndarray) -> np.ndarray:
        return self._h[np.asarray(slots, dtype=np.int64)]


class AdaptiveOracle:
    dynamic = True

    def __init__(self, base, controller: AdaptiveLength, file: str | None = None) -> None:
        self.base, self.ctl, self.depth, self.file = base, controller, base.depth, file
        self._slots = _Slots()
        self._last = np.zeros(0, dtype=np.int64)  # each slot's last proposal

    def bind(self, request_id: int) -> int:
        slot = self._slots.add(self.base.bind(request_id))
        self.ctl.new(1)
        self._last = np.append(self._last, 0)
        return slot

    def request_lengths(self, n: int):
        if isinstance(self.base, SurvivalOracle):  # as simspec.sim.run.lengths_only_trace says it
            raise InputError(self.file, "workload.dataset",
                             '"trace" takes its lengths from [acceptance] trace, which is not set')
        return self.base.request_lengths(n)

    def propose(self, handles: np.ndarray, positions: np.ndarray, cap: int) -> np.ndarray:
        d = self.ctl.propose(handles, cap)
        self._last[np.asarray(handles, dtype=np.int64)] = d
        return d

    def draw(self, handles: np.ndarray, positions: np.ndarray) -> np.ndarray:
        s = np.asarray(handles, dtype=np.int64)
        d = self._last[s]
        k = np.minimum(self.base.draw(self._slots[s], positions), d)
        self.ctl.update(s, d, k)
        return k


class DynamicExitOracle:
    dynamic = True

    def __init__(self, base, layers: list[int], runs: np.ndarray, controller: ExitChoice) -> None:
        """`runs[i]`: the accepted run at every traced position of exit layer layers[i]."""
        self.base, self.layers, self.runs, self.ctl = base, layers, runs, controller
        self.depth = base.depth
        trace = base.trace
        self._start, self._len = trace.offsets[:-1], trace.output_len
        self._slots = _Slots()
        self._layer = np.zeros(0, dtype=np.int64)
        self._last = np.zeros(0, dtype=np.int64)
        self._round: tuple[np.ndarray, np.ndarray] = (self._layer, self._last)

    def bind(self, request_id: int) -> int:
        slot = self._slots.add(self.base.bind(request_id))
        self.ctl.new(1)
        self._layer, self._last = np.append(self._layer, 0), np.append(self._last, 0)
        return slot

    def request_lengths(self, n: int):
        return self.base.request_lengths(n)

    def propose(self, handles: np.ndarray, positions: np.ndarray, cap: int) -> np.ndarray:
        s = np.asarray(handles, dtype=np.int64)
        li, d = self.ctl.propose(s, cap)
        self._layer[s], self._last[s] = li, d
        self._round = (li, d)
        return d

    def passes(self, proposed: np.ndarray) -> list[tuple[int, int]]:
        """One early-exit pass per layer chosen by a row that drafts, as deep as its deepest row."""
        return [(self.layers[i], depth) for i, depth in exit_passes(*self._round)]

    def draw(self, handles: np.ndarray, positions: np.ndarray) -> np.ndarray:
        s = np.asarray(handles, dtype=np.int64)
        h = self._slots[s]
        at = np.asarray(positions, dtype=np.int64) % self._len[h]
        li, d = self._layer[s], self._last[s]
        k = np.minimum(self.runs[li, self._start[h] + at], d)
        self.ctl.update(s, li, d, k)
        return k


def _check_chain(sc, base, policy: str, file: str | None) -> None:
    if sc.speculation.tree is not None:
        raise InputError(file, "speculation.tree", f"policy {policy!r} sizes chains: give draft_len, not a tree")
    if not isinstance(base, SurvivalOracle) and base.mode == "beta":
        raise InputError(file, "acceptance.drafter", f"policy {policy!r} replays greedy acceptance (ranks), "
                                                     f"not sampled ({sc.acceptance.drafter})")


def adaptive_replay(sc, base, file: str | None = None) -> AdaptiveOracle:
    """The `adaptive` policy over the scenario's own acceptance (trace or synthetic chain)."""
    _check_chain(sc, base, "adaptive", file)
    return AdaptiveOracle(base, AdaptiveLength(sc.gamma, **sc.speculation.policy.values()), file)


def exit_candidates(trace, vocab: int | None, low: int, high: int, file: str | None = None,
                    key: str = "acceptance.trace") -> list[tuple[int, str]]:
    """(layer, column) of every traced early-exit column of this head (full, or trimmed to
    `vocab`), layers within low..high (0: unbounded), shallowest first."""
    from simspec import drafters
    from simspec.trace.schema import parse_drafter

    kind = drafters.layer_kind()
    out = []
    for col in trace.ranks:
        name = parse_drafter(col)
        arg = kind.column_arg(name.base)
        if arg is None or name.k != vocab:
            continue
        layer = int(arg)
        if layer >= max(low, 1) and (not high or layer <= high):
            out.append((layer, col))
    if not out:
        bound = f" within layers {low}..{high or 'any'}" if low or high else ""
        raise InputError(file, key, f"policy 'dynamic_exit' needs traced early-exit columns{bound}"
                                    f"{f' trimmed to {vocab}' if vocab else ''}: the trace has {', '.join(trace.ranks) or 'none'}")
    return sorted(out)


def exit_policy_values(values: dict) -> tuple[dict, int, int]:
    """(controller keywords, min_layer, max_layer) of the policy's parameter values."""
    v = dict(values)
    return v, v.pop("min_layer"), v.pop("max_layer")


def dynamic_exit_replay(sc, base, file: str | None = None) -> DynamicExitOracle:
    """The `dynamic_exit` policy over the trace's exit columns (all of this head's, bounded by
    min_layer / max_layer)."""
    from simspec.trace.runs import zero_runs

    if isinstance(base, SurvivalOracle):
        raise InputError(file, "acceptance", "policy 'dynamic_exit' replays a trace's early-exit columns: "
                                             "give [acceptance] trace")
    _check_chain(sc, base, "dynamic_exit", file)
    trace = base.trace
    total = trace.meta.get("layers")
    if not isinstance(total, int) or total < 2:
        raise InputError(file, "acceptance.trace", "policy 'dynamic_exit' needs the target's layer count "
                                                   "(`layers` in the trace's sidecar)")
    ctl_values, low, high = exit_policy_values(sc.speculation.policy.values())
    key = "speculation.policy.min_layer" if low else "speculation.policy.max_layer" if high else "acceptance.trace"
    cands = exit_candidates(trace, sc.draft.vocab, low, high, file, key)
    runs = np.stack([zero_runs(trace.ranks[c], trace.offsets) for _, c in cands])
    layers = [layer for layer, _ in cands]
    return DynamicExitOracle(base, layers, runs, ExitChoice(layers, total, **ctl_values))
