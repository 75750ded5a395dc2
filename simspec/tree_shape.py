"""The shape of one speculation round: a static token tree, defined once for every stage.

`2,2,1` means the root (the pending token) gets the drafter's top-2 tokens, each of those its
top-2, each of those its top-1: 1 + 2 + 4 + 4 = 11 nodes. A chain of gamma tokens is
`TreeShape.chain(gamma)`. Nodes are numbered breadth first, so a parent always comes before
its children and depth never decreases along the numbering. The study's knob strings, the
scenario's `tree` list, the simulator's round costs, the live engine's tree attention, the
closed forms and the engine exports all read this one class. Numpy only (no torch).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from simspec.limits import GAMMA, TREE_NODES, over, tree_nodes


def ancestors_of(parents: Sequence[int]) -> np.ndarray:
    """[N, N] bool: anc[i, j] is True when j is i or an ancestor of i (parents[i] < i, -1 = root)."""
    n = len(parents)
    anc = np.zeros((n, n), dtype=bool)
    for i, p in enumerate(parents):
        if p >= i:
            raise ValueError(f"parents[{i}]={p}: a parent must come before its child")
        anc[i, i] = True
        if p >= 0:
            anc[i] |= anc[p]
    return anc


def depths_of(parents: Sequence[int]) -> list[int]:
    """Depth of each node (a node whose parent is -1 has depth 0)."""
    depths: list[int] = []
    for i, p in enumerate(parents):
        if p >= i:
            raise ValueError(f"parents[{i}]={p}: a parent must come before its child")
        depths.append(0 if p < 0 else depths[p] + 1)
    return depths


@dataclass(frozen=True)
class TreeShape:
    branching: tuple[int, ...]  # children per node at each depth (len = max draft depth)
    parents: tuple[int, ...] = field(init=False, repr=False)
    depth: tuple[int, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "branching", tuple(int(c) for c in self.branching))
        if any(c < 1 for c in self.branching):
            raise ValueError(f"tree {self.branching}: every depth needs >= 1 child per node")
        for why in (over(len(self.branching), GAMMA), over(tree_nodes(self.branching), TREE_NODES)):
            if why is not None:  # refused before a node is built
                b = self.branching
                raise ValueError(f"tree {','.join(map(str, b)) if len(b) <= 8 else f'of depth {len(b)}'}: {why}")
        parents, depth, level = [-1], [0], [0]
        for c in self.branching:
            nxt = []
            for p in level:
                for _ in range(c):
                    nxt.append(len(parents))
                    parents.append(p)
                    depth.append(depth[p] + 1)
            level = nxt
        object.__setattr__(self, "parents", tuple(parents))
        object.__setattr__(self, "depth", tuple(depth))

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def chain(cls, gamma: int) -> "TreeShape":
        return cls((1,) * gamma)

    @classmethod
    def parse(cls, text: str | Sequence[int]) -> "TreeShape":
        """'2,2,1' (or [2, 2, 1]) -> children per depth; ValueError with the reason."""
        if not isinstance(text, str):
            return cls(tuple(text))
        if not text.strip():
            raise ValueError("empty tree")
        if not re.fullmatch(r"\s*\d+(\s*,\s*\d+)*\s*", text):
            raise ValueError(f"{text!r} is not a comma-separated list of children per depth")
        return cls(tuple(int(x) for x in text.split(",")))

    def cut(self, depth: int) -> "TreeShape":
        """The tree's first `depth` levels (a round drafting less than the full tree)."""
        return self if depth >= self.max_depth else type(self)(self.branching[:max(depth, 0)])

    # -- what it is --------------------------------------------------------------------------
    @property
    def size(self) -> int:
        """Nodes, root included: the verify pass's query tokens per sequence."""
        return len(self.parents)

    @property
    def max_depth(self) -> int:
        return len(self.branching)

    @property
    def is_chain(self) -> bool:
        return all(c == 1 for c in self.branching)

    def nodes_per_depth(self) -> list[int]:
        """Nodes at depth 1..D (a chain: all 1)."""
        return np.cumprod(self.branching).tolist() if self.branching else []

    def level(self, d: int) -> list[int]:
        """Node ids at depth d."""
        return [i for i, x in enumerate(self.depth) if x == d]

    def children(self, node: int) -> list[int]:
        return [i for i, p in enumerate(self.parents) if p == node]

    def paths(self) -> list[tuple[int, ...]]:
        """Every non-root node as its path of child ranks from the root (vLLM's token tree)."""
        out: list[tuple[int, ...]] = [()]
        for i in range(1, self.size):
            p = self.parents[i]
            out.append(out[p] + (self.children(p).index(i),))
        return out[1:]

    def nested(self) -> list:
        """The tree as nested lists (a node is the list of its children, by rank)."""
        def build(d: int) -> list:
            return [] if d == len(self.branching) else [build(d + 1) for _ in range(self.branching[d])]

        return build(0)

    def ancestors(self) -> np.ndarray:
        """[N, N] bool: anc[i, j] is True when j is i or an ancestor of i."""
        return ancestors_of(self.parents)

    def attention(self, past: int) -> np.ndarray:
        """[N, past + N] bool: each node sees the `past` cached tokens and its own ancestors."""
        return np.concatenate([np.ones((self.size, past), dtype=bool), self.ancestors()], axis=1)

    def __str__(self) -> str:
        return ",".join(map(str, self.branching))
