"""Per-position rank of the target's token and sampling acceptance beta, from logits.

rank = #{x : l_x > l_y} + #{x < y : l_x == l_y}: exactly the number of tokens argmax (first
index wins) would rank before y, so a drafter proposing its top-c tokens proposes y iff rank < c.
For a trimmed head over `rows`, index i stands for token rows[i] (TrimmedHead's layout), a token
outside `rows` can never be proposed and gets the cap.
"""

from __future__ import annotations

import torch

from simspec.trace.schema import RANK_CAP


def ranks(logits: torch.Tensor, target: torch.Tensor, cap: int = RANK_CAP) -> torch.Tensor:
    """logits [N, V], target [N] indices into V (or -1 = absent) -> int16 ranks capped at cap."""
    absent = target < 0
    t = target.clamp(min=0)
    ly = logits.gather(1, t[:, None])
    ahead = (logits > ly).sum(1)
    idx = torch.arange(logits.shape[1], device=logits.device)
    ahead += ((logits == ly) & (idx[None] < t[:, None])).sum(1)
    ahead = ahead.clamp(max=cap)
    ahead[absent] = cap
    return ahead.to(torch.int16)


def beta(p_probs: torch.Tensor, q_logits: torch.Tensor, temperature: float,
         rows: torch.Tensor | None = None) -> torch.Tensor:
    """sum_x min(p(x), q(x)); p over the full vocabulary, q over `rows` (or the full vocabulary)."""
    q = torch.softmax(q_logits.float() / temperature, dim=-1)
    p = p_probs if rows is None else p_probs[:, rows]
    return torch.minimum(p, q).sum(-1)


class RowIndex:
    """A trimmed set: its rows and the inverse map token id -> index into rows (-1 if absent)."""

    def __init__(self, rows: torch.Tensor, vocab: int) -> None:
        self.rows = rows
        self.inverse = torch.full((vocab,), -1, dtype=torch.long)
        self.inverse[rows] = torch.arange(len(rows))

    def score(self, logits: torch.Tensor, tokens: torch.Tensor, p_probs: dict[float, torch.Tensor]
              ) -> tuple[torch.Tensor, dict[float, torch.Tensor]]:
        """(ranks, {T: beta}) of a drafter whose head keeps only these rows."""
        sub = logits[:, self.rows]
        r = ranks(sub, self.inverse[tokens])
        return r, {t: beta(p, sub, t, self.rows) for t, p in p_probs.items()}


def score_full(logits: torch.Tensor, tokens: torch.Tensor, p_probs: dict[float, torch.Tensor]
               ) -> tuple[torch.Tensor, dict[float, torch.Tensor]]:
    return ranks(logits, tokens), {t: beta(p, logits, t) for t, p in p_probs.items()}
