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
    tied = (logits == ly).sum(1) > 1  # the rare rows where index order breaks a tie
    if bool(tied.any()):
        rows = tied.nonzero()[:, 0]
        sub = logits[rows]
        idx = torch.arange(logits.shape[1], device=logits.device)
        ahead[rows] += ((sub == ly[rows]) & (idx[None] < t[rows, None])).sum(1)
    ahead = ahead.clamp(max=cap)
    ahead[absent] = cap
    return ahead.to(torch.int16)


def beta(p_probs: torch.Tensor, q_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """sum_x min(p(x), q(x)), p and q over the same columns (q = softmax of q_logits / T)."""
    q = torch.softmax(q_logits.float() / temperature, dim=-1)
    return torch.minimum(p_probs, q).sum(-1)


class TrimSets:
    """Nested trimmed sets: the set for K is the first K ids of one calibration order.

    Index i of a trimmed head stands for token order[i] (TrimmedHead's layout), so one gather of
    the largest set serves every K by slicing, for the drafter's logits and the target's p alike.
    """

    def __init__(self, order: torch.Tensor, vocab: int, ks: list[int]) -> None:
        self.ks = sorted(ks)
        self.order = order[: self.ks[-1]] if self.ks else order[:0]
        self.position = torch.full((vocab,), vocab, dtype=torch.long)
        self.position[self.order] = torch.arange(len(self.order))

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.order]

    def score(self, logits: torch.Tensor, tokens: torch.Tensor, p_sub: dict[float, torch.Tensor]
              ) -> dict[int, tuple[torch.Tensor, dict[float, torch.Tensor]]]:
        """{K: (ranks, {T: beta})} for a drafter whose head keeps the first K ids."""
        sub = self.gather(logits)
        pos = self.position[tokens]
        out = {}
        for k in self.ks:
            r = ranks(sub[:, :k], torch.where(pos < k, pos, -1))
            out[k] = (r, {t: beta(p[:, :k], sub[:, :k], t) for t, p in p_sub.items()})
        return out


def score_full(logits: torch.Tensor, tokens: torch.Tensor, p_probs: dict[float, torch.Tensor]
               ) -> tuple[torch.Tensor, dict[float, torch.Tensor]]:
    return ranks(logits, tokens), {t: beta(p, logits, t) for t, p in p_probs.items()}
