"""Live drafters of the dynamic policies: each row drafts what the policy's controller says,
the very controller trace replay runs (simspec.sim.adaptive_length, simspec.sim.exit_choice).

A round's tree (a chain cut to the budget) is the cap; row i drafts d_i <= cap tokens. The
batch drafts once at max(d_i) (one padded shape, as the simulator prices it), nodes past a row's
d_i are marked not drafted, so greedy acceptance stops there and verification runs only to the
deepest drafted node. After the commit each row's accepted count (its path length - 1) goes
back to its controller state; the states follow the rows through admit and retire.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from simspec.live.drafters import Draft, Drafter, Mode, ModelDrafter
from simspec.live.tree import Tree
from simspec.sim.adaptive_length import AdaptiveLength
from simspec.sim.exit_choice import ExitChoice, exit_passes


def _blank(pending: list[int], size: int, mode: Mode) -> Draft:
    """A draft of `size` nodes per row, nothing drafted past the root."""
    q = torch.zeros(len(pending), size, mode.vocab) if not mode.greedy else None
    return Draft([[t] * size for t in pending], [[True] + [False] * (size - 1) for _ in pending], q)


def _take(out: Draft, rows: Sequence[int], src: Draft, depth: np.ndarray) -> None:
    """Rows `rows` of `out` get nodes 1..depth[row] of `src` (where `src` drafted them)."""
    for b in rows:
        n = int(depth[b])
        out.tokens[b][1:n + 1] = src.tokens[b][1:n + 1]
        out.drafted[b][1:n + 1] = src.drafted[b][1:n + 1]
        if out.q is not None and src.q is not None:
            out.q[b, :n] = src.q[b, :n]


class _Rows(Drafter):
    """Controller slots that follow the batch's rows."""

    def __init__(self, controller) -> None:
        self.ctl = controller
        self.slots = np.zeros(0, dtype=np.int64)

    def start(self, batch: int) -> None:
        self.slots = self.ctl.new(batch)

    def admit(self, prompts: list[list[int]]) -> None:
        self.slots = np.concatenate([self.slots, self.ctl.new(len(prompts))])

    def retire(self, keep: list[int]) -> None:
        self.slots = self.slots[np.asarray(keep, dtype=np.int64)]


class AdaptiveDrafter(_Rows):
    """A chain drafter whose rows draft the adaptive controller's lengths."""

    def __init__(self, inner: Drafter, controller: AdaptiveLength) -> None:
        super().__init__(controller)
        self.inner, self.name = inner, f"adaptive({inner.name})"
        self._d = np.zeros(0, dtype=np.int64)

    def start(self, batch: int) -> None:
        self.inner.start(batch)
        super().start(batch)

    def admit(self, prompts: list[list[int]]) -> None:
        self.inner.admit(prompts)
        super().admit(prompts)

    def retire(self, keep: list[int]) -> None:
        self.inner.retire(keep)
        super().retire(keep)

    def draft(self, seqs: list[list[int]], pending: list[int], tree: Tree, mode: Mode) -> Draft:
        d = self._d = self.ctl.propose(self.slots, tree.max_depth)
        out = _blank(pending, tree.size, mode)
        top = int(d.max()) if len(d) else 0
        src = self.inner.draft(seqs, pending, Tree.chain(top), mode)
        _take(out, range(len(pending)), src, d)
        return out

    def commit(self, paths: list[list[int]]) -> None:
        self.ctl.update(self.slots, self._d, np.array([len(p) - 1 for p in paths], dtype=np.int64))
        self.inner.commit(paths)


class DynamicExitDrafter(_Rows):
    """One early-exit drafter per candidate layer, all drafting into the target's KV cache
    (each cuts its own appends off again): per round one pass per layer some row chose, as deep
    as that layer's deepest row; each row takes its tokens from its own layer's pass."""

    def __init__(self, drafters: Sequence[ModelDrafter], controller: ExitChoice) -> None:
        super().__init__(controller)
        self.drafters = list(drafters)
        self.name = "dynamic_exit(" + ",".join(str(x.layers) for x in self.drafters) + ")"
        self._layer = self._d = np.zeros(0, dtype=np.int64)
        self.passes: list[tuple[int, int]] = []  # (layer, depth) of the last round's passes

    def draft(self, seqs: list[list[int]], pending: list[int], tree: Tree, mode: Mode) -> Draft:
        li, d = self.ctl.propose(self.slots, tree.max_depth)
        self._layer, self._d = li, d
        out = _blank(pending, tree.size, mode)
        self.passes = []
        for i, depth in exit_passes(li, d):
            src = self.drafters[i].draft(seqs, pending, Tree.chain(depth), mode)
            _take(out, np.flatnonzero((li == i) & (d > 0)).tolist(), src, d)
            self.passes.append((self.drafters[i].layers, depth))
        return out

    def commit(self, paths: list[list[int]]) -> None:
        self.ctl.update(self.slots, self._layer, self._d, np.array([len(p) - 1 for p in paths], dtype=np.int64))


# -- factories: Policy.live(values, target, spec, kv, draft, rows, draft_len, trace) -------------

def adaptive_drafter(values: dict, target, spec, kv, draft, rows, draft_len: int, trace=None) -> Drafter:
    """The kind's own drafter, its rows drafting the adaptive controller's lengths."""
    from simspec.live.runner import make_drafter

    return AdaptiveDrafter(make_drafter(target, spec, kv, draft, rows), AdaptiveLength(draft_len, **values))


def dynamic_exit_drafter(values: dict, target, spec, kv, draft, rows, draft_len: int, trace=None) -> Drafter:
    """Early exit at each candidate layer: the trace's exit columns of this head within
    min_layer..max_layer, exactly the columns the replay reads."""
    from simspec.live.drafters import make_early_exit_drafter
    from simspec.sim.dynamic_oracles import exit_candidates, exit_policy_values

    if trace is None:
        raise ValueError("policy 'dynamic_exit' takes its candidate exit layers from a trace")
    ctl_values, low, high = exit_policy_values(values)
    vocab = len(rows) if rows is not None else None
    layers = [layer for layer, _ in exit_candidates(trace, vocab, low, high)]
    kind = spec.entry
    drafters = [make_early_exit_drafter(target, type(spec)(kind.name, str(layer)), kv, draft, rows)
                for layer in layers]
    return DynamicExitDrafter(drafters, ExitChoice(layers, target.dims.layers, **ctl_values))
