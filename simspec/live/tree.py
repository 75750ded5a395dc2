"""Static token trees: the shape of one speculation round.

Node 0 is the root: the pending token (sampled last round, not yet in any KV cache). A chain
of gamma draft tokens is the tree with one child per depth, `Tree.chain(gamma)`; `--tree 2,2,1`
means the root gets the drafter's top-2 tokens, each of those its top-2, each of those its
top-1 (1 + 2 + 4 + 4 = 11 nodes). Nodes are numbered breadth first, so a parent always comes
before its children and depth never decreases along the numbering.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class Tree:
    branching: tuple[int, ...]  # children per node at each depth (len = max draft depth)
    parents: tuple[int, ...] = field(init=False)
    depth: tuple[int, ...] = field(init=False)

    def __post_init__(self) -> None:
        if any(c < 1 for c in self.branching):
            raise ValueError(f"tree {self.branching}: every depth needs >= 1 child per node")
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

    @classmethod
    def chain(cls, gamma: int) -> "Tree":
        return cls((1,) * gamma)

    @classmethod
    def parse(cls, text: str) -> "Tree":
        """'2,2,1' -> Tree((2, 2, 1)); raises ValueError with the reason."""
        try:
            branching = tuple(int(x) for x in text.split(",") if x.strip())
        except ValueError:
            raise ValueError(f"{text!r} is not a comma-separated list of integers") from None
        if not branching:
            raise ValueError("empty tree")
        return cls(branching)

    @property
    def size(self) -> int:
        return len(self.parents)

    @property
    def max_depth(self) -> int:
        return len(self.branching)

    @property
    def is_chain(self) -> bool:
        return all(c == 1 for c in self.branching)

    def level(self, d: int) -> list[int]:
        """Node ids at depth d."""
        return [i for i, x in enumerate(self.depth) if x == d]

    def children(self, node: int) -> list[int]:
        return [i for i, p in enumerate(self.parents) if p == node]

    def ancestors(self) -> torch.Tensor:
        """[N, N] bool: anc[i, j] is True when j is i or an ancestor of i."""
        n = self.size
        anc = torch.zeros(n, n, dtype=torch.bool)
        for i, p in enumerate(self.parents):
            anc[i, i] = True
            if p >= 0:
                anc[i] |= anc[p]
        return anc
