"""Acceptance rules: which drafted tokens the target keeps, and the token it adds.

Greedy (temperature 0): walk down the tree from the root; at each node take the child whose
token is the target's argmax there; stop when none is; the target's argmax at the last
accepted node is the bonus (or correction) token. The accepted path is exactly the target's
greedy path, so the output equals plain greedy decoding token for token.

Sampling (temperature > 0, chains): Leviathan et al. 2023 / Chen et al. 2023. Draft token x
drawn from q is accepted with probability min(1, p(x) / q(x)); on the first rejection the
token is resampled from norm(max(0, p - q)); when every draft is accepted, a bonus token is
drawn from p at the last node. The output is then distributed exactly as the target's.
"""

from __future__ import annotations

import torch


def probs(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    return torch.softmax(logits.float() / temperature, dim=-1)


def draw(p: torch.Tensor, gen: torch.Generator | None) -> int:
    return int(torch.multinomial(p, 1, generator=gen).item())


def residual(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """The distribution to resample from after a rejection: norm(max(0, p - q))."""
    r = (p - q).clamp(min=0)
    total = r.sum()
    return r / total if total > 0 else p  # p == q up to rounding: nothing to correct


def greedy_accept(
    children: list[list[int]], tokens: list[list[int]], drafted: list[list[bool]],
    argmax: list[list[int]],
) -> tuple[list[list[int]], list[int]]:
    """Per row: accepted node path (root first) and the target's next token."""
    paths, nxt = [], []
    for toks, ok, best in zip(tokens, drafted, argmax):
        cur, path = 0, [0]
        while True:
            child = next((c for c in children[cur] if ok[c] and toks[c] == best[cur]), None)
            if child is None:
                break
            path.append(child)
            cur = child
        paths.append(path)
        nxt.append(best[cur])
    return paths, nxt


def sample_accept(
    tokens: list[list[int]], drafted: list[list[bool]], p: torch.Tensor, q: torch.Tensor,
    gen: torch.Generator | None,
) -> tuple[list[list[int]], list[int]]:
    """Rejection sampling along a chain (node k's parent is k-1).

    p [B, N, V]: target probabilities at each node; q [B, N, V]: the drafter's distribution at
    each node, i.e. the one node k+1's token was drawn from.
    """
    paths, nxt = [], []
    n = p.shape[1]
    u = torch.rand(p.shape[0], n, generator=gen, device=p.device).tolist()
    for b, (toks, ok) in enumerate(zip(tokens, drafted)):
        cur, path, new = 0, [0], None
        for k in range(1, n):
            if not ok[k]:
                break
            x = toks[k]
            px, qx = float(p[b, cur, x]), float(q[b, cur, x])
            if qx > 0 and u[b][k] * qx < px:  # u < min(1, p/q)
                path.append(k)
                cur = k
                continue
            new = draw(residual(p[b, cur], q[b, cur]), gen)
            break
        if new is None:
            new = draw(p[b, cur], gen)  # bonus token from the target
        paths.append(path)
        nxt.append(new)
    return paths, nxt
