"""Exact acceptance replay from a trace, behind the simulator's AcceptanceOracle protocol.

Numpy only (the simulator runs without torch). One `draw` per batch per iteration is a gather:
for sequence handle h at position n (tokens already generated) the round looks at the window of
positions n .. n+depth-1 of h's traced sequence.
  ranks (greedy)   accept depth j+1 iff rank[n+j] < children[j]   (chain: children = 1)
  beta@T (sampled) accept depth j+1 iff u_j < beta_T[n+j]            (Bernoulli(beta_t))
  model-free       accept min(run[n], depth)                         (e.g. ngram[:N]: prompt lookup, chain)
                   and propose min(found[n], depth): a short find verifies fewer tokens (`proposed`)
counting only the leading run of successes; a window never runs past its sequence's end. A
chain (and prompt lookup) is one gather from a precomputed accepted-run array. A request whose
output is longer than its traced sequence starts over at position n mod length (only happens
when the workload's lengths are not the trace's own: `[workload] dataset = "trace"` replays exactly).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from simspec import drafters
from simspec.errors import InputError
from simspec.trace.schema import TARGET, Trace, load_trace, parse_drafter
from simspec.trace.runs import proposed_column, replay_column, replayed_kind, zero_runs

_CACHE: dict[tuple, object] = {}


def cached_trace(path: str | Path, file: str | None = None) -> Trace:
    """load_trace memoised on (path, mtime, size): a study simulates the same trace many times."""
    p = Path(path)
    try:
        st = os.stat(p)
        key = ("trace", str(p.resolve()), st.st_mtime_ns, st.st_size)
    except OSError:
        return load_trace(p, file)
    if key not in _CACHE:
        _CACHE[key] = load_trace(p, file)
    return _CACHE[key]  # type: ignore[return-value]


class TraceOracle:
    """Replays one trace column. mode: 'rank' | 'beta' | 'lookup'."""

    def __init__(self, trace: Trace, mode: str, values: np.ndarray, children: list[int],
                 rng: np.random.Generator, found: np.ndarray | None = None) -> None:
        """`found` (model-free drafters that may find fewer tokens): tokens proposed per
        traced position; None: every round proposes the full depth."""
        self.trace = trace
        self.mode = mode
        self.values = values
        self.depth = len(children)
        self.children = np.asarray(children, dtype=np.int64)
        self._steps = np.arange(self.depth, dtype=np.int64)
        self._rng = rng
        self._perm_rng = np.random.default_rng(int(rng.integers(0, 2**63 - 1)))
        self._order = np.empty(0, dtype=np.int64)  # request id -> sequence, grown by cycles
        self._fixed: np.ndarray | None = None  # set by replay_in_order
        self._start = trace.offsets[:-1]
        self._len = trace.output_len
        self._runs: np.ndarray | None = None  # accepted length per position when it is one gather
        self._proposed = None if found is None else np.minimum(found, self.depth)  # capped at depth
        if mode == "lookup":
            self._runs = values.astype(np.int64)
        elif mode == "rank" and (self.children == 1).all():
            self._runs = zero_runs(values, trace.offsets)

    # -- which sequence a request replays ---------------------------------------------
    def sequence_of(self, request_ids: np.ndarray) -> np.ndarray:
        """Requests cycle through the traced sequences, each cycle in a fresh seeded shuffle."""
        rid = np.asarray(request_ids, dtype=np.int64)
        if len(rid) == 0:
            return rid
        if self._fixed is not None:
            return self._fixed[rid % len(self._fixed)]
        need = int(rid.max()) + 1
        while len(self._order) < need:
            self._order = np.concatenate([self._order, self._perm_rng.permutation(self.trace.n_seq)])
        return self._order[rid]

    def replay_in_order(self, sequences: list[int], file: str | None = None) -> None:
        """Request i replays sequences[i % n] (validation: the prompts a live run decodes)."""
        bad = [s for s in sequences if not 0 <= s < self.trace.n_seq]
        if bad:
            raise InputError(file, "acceptance.sequences",
                             f"sequence {bad[0]} outside 0..{self.trace.n_seq - 1} (the trace has {self.trace.n_seq})")
        self._fixed = np.asarray(sequences, dtype=np.int64)

    def bind(self, request_id: int) -> int:
        return int(self.sequence_of(np.array([request_id]))[0])

    def request_lengths(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(prompt_len, output_len) of requests 0..n-1: those of the sequences they replay."""
        seq = self.sequence_of(np.arange(n))
        return self.trace.prompt_len[seq].copy(), self.trace.output_len[seq].copy()

    # -- acceptance -------------------------------------------------------------------
    @property
    def drafts_short(self) -> bool:
        return self._proposed is not None

    def proposed(self, handles: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Draft tokens each row's drafter proposes at these positions (at most depth; only when
        `drafts_short`). The live engine verifies only up to the deepest proposal of the batch,
        so the round is priced there (prompt lookup)."""
        h = np.asarray(handles, dtype=np.int64)
        at = np.asarray(positions, dtype=np.int64) % self._len[h]
        return self._proposed[self._start[h] + at]

    def draw(self, handles: np.ndarray, positions: np.ndarray) -> np.ndarray:
        if len(handles) == 0:
            return np.zeros(0, dtype=np.int64)
        h = np.asarray(handles, dtype=np.int64)
        length = self._len[h]
        at = np.asarray(positions, dtype=np.int64) % length
        base = self._start[h] + at
        if self._runs is not None:  # chain greedy / prompt lookup: one gather
            return np.minimum(self._runs[base], self.depth)
        # Window of the next `depth` positions; it never runs past the sequence's end.
        valid = (at[:, None] + self._steps) < length[:, None]
        v = self.values[np.where(valid, base[:, None] + self._steps, base[:, None])]
        if self.mode == "rank":
            ok = v < self.children
        else:
            ok = self._rng.random(v.shape) < v
        fail = ~(ok & valid)
        # Leading run of successes: index of the first failure (depth if none).
        return np.where(fail.any(axis=1), fail.argmax(axis=1), self.depth).astype(np.int64)


def _forms(k: drafters.Kind) -> str:
    return f"'{k.name}' or '{k.name}:N'" if k.arg == "n" else f"'{k.name}'"


def _check_drafter_matches(sc, name, file: str | None, trace: Trace) -> None:
    """The scenario's [draft] must describe the drafter whose column it replays."""
    d = sc.draft
    k = d.entry
    key = "acceptance.drafter"
    col = str(name)
    found = None if name.base == TARGET else drafters.of_column(name.base)
    if k.replayed:
        raise InputError(file, key, f"[draft] kind = '{k.name}' replays drafter {_forms(k)}, not {col!r}")
    if k.arg == "layer":
        if found is None or found[0] is not k:
            raise InputError(file, key, f"[draft] kind = '{k.name}' needs an {k.column_prefix}<l> column, not {col!r}")
        if int(found[1]) != d.exit_layer:
            raise InputError(file, key, f"column {col!r} exits at layer {found[1]} but draft.exit_layer = {d.exit_layer}")
    elif found is None or found[0] is not k:
        raise InputError(file, key, f"[draft] kind = '{k.name}' replays a {k.name} drafter column, not {col!r}")
    full = trace.meta.get("vocab")
    if d.vocab is not None:
        if name.k is None and d.vocab != full:
            raise InputError(file, "draft.vocab", f"draft.vocab = {d.vocab} but column {col!r} uses the full vocabulary"
                             + (f" ({full})" if full else "") + f"; trimmed columns are named {name.base}/k<K>")
        if name.k is not None and name.k != d.vocab:
            raise InputError(file, "draft.vocab", f"draft.vocab = {d.vocab} but column {col!r} is trimmed to {name.k}")
    elif name.k is not None:
        raise InputError(file, "draft.vocab", f"column {col!r} is trimmed to {name.k} tokens: set draft.vocab = {name.k}")


def load_trace_oracle(sc, path: str | Path, depth: int, rng: np.random.Generator,
                      file: str | None = None) -> TraceOracle:
    """Build the oracle a scenario's [acceptance] trace + drafter asks for, checking it fits."""
    oracle = _trace_oracle(sc, path, depth, rng, file)
    if sc.acceptance.sequences is not None:
        oracle.replay_in_order(sc.acceptance.sequences, file)
    return oracle


def _trace_oracle(sc, path: str | Path, depth: int, rng: np.random.Generator,
                  file: str | None = None) -> TraceOracle:
    trace = cached_trace(path, file)
    spec: str = sc.acceptance.drafter
    key = "acceptance.drafter"
    tree = list(sc.speculation.tree) if sc.speculation.tree is not None else None
    children = tree if tree is not None else [1] * sc.gamma
    children += [1] * (depth - len(children))
    children = children[:depth]
    replayed = replayed_kind(spec)
    if replayed is not None:
        k, arg = replayed
        if sc.draft.kind != k.name:
            raise InputError(file, key, f"drafter {spec!r} needs [draft] kind = '{k.name}'")
        n = 0
        if k.arg == "n":
            try:
                n = int(arg)
                if n < 1:
                    raise ValueError
            except ValueError:
                raise InputError(file, key, f"{spec!r}: write {k.name} or {k.name}:N with N >= 1") from None
        if tree is not None:
            raise InputError(file, "speculation.tree", f"a {k.name} drafter proposes one chain, not a tree")
        if k.oracle is not None:  # a draft length of its own each round: a dynamic oracle
            return k.oracle_fn()(sc, trace, depth, rng, file)
        return TraceOracle(trace, "lookup", replay_column(trace, k, n), children, rng,
                           found=proposed_column(trace, k, n))
    base, at, temp = spec.partition("@")
    try:
        name = parse_drafter(base)
    except ValueError as exc:
        raise InputError(file, key, str(exc)) from None
    _check_drafter_matches(sc, name, file, trace)
    if not at:
        if str(name) not in trace.ranks:
            have = ", ".join(trace.drafters) or "none"
            raise InputError(file, key, f"trace {Path(path).name} has no column for drafter {str(name)!r} (has: {have})")
        return TraceOracle(trace, "rank", trace.ranks[str(name)], children, rng)
    try:
        t = float(temp)
    except ValueError:
        raise InputError(file, key, f"{spec!r}: write <drafter>@<temperature>, e.g. {base}@0.7") from None
    if tree is not None:
        raise InputError(file, "speculation.tree", "sampled (beta) replay is modelled for chains, not trees")
    if (str(name), t) not in trace.betas:
        have = ", ".join(f"{d}@{tt:g}" for d, tt in trace.betas) or "none"
        raise InputError(file, key, f"trace {Path(path).name} has no beta column for {str(name)}@{t:g} (has: {have})")
    return TraceOracle(trace, "beta", trace.betas[(str(name), t)], children, rng)
