"""The live engine's view of a round's tree shape: `TreeShape` with its masks as torch tensors.

The shape itself (parsing, numbering, paths, the attention pattern) is `simspec.tree_shape`,
shared with the simulator and the study; only the tensor conversion lives here.
"""

from __future__ import annotations

import torch

from simspec.tree_shape import TreeShape


class Tree(TreeShape):
    def ancestors(self) -> torch.Tensor:
        """[N, N] bool tensor: anc[i, j] is True when j is i or an ancestor of i."""
        return torch.from_numpy(super().ancestors())
