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


def residual(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """The distribution to resample from after a rejection: norm(max(0, p - q)) (last dim)."""
    r = (p - q).clamp(min=0)
    total = r.sum(-1, keepdim=True)
    return torch.where(total > 0, r / total.clamp(min=1e-30), p)  # p == q: nothing to correct


def greedy_accept(
    children: list[list[int]], tokens: list[list[int]], drafted: list[list[bool]],
    argmax: list[list[int]],
) -> tuple[list[list[int]], list[int]]:
    """Per row: accepted node path (root first) and the target's next token."""
    paths, nxt = [], []
    for toks, ok, best in zip(tokens, drafted, argmax):
        path = walk(children, lambda parent, c: ok[c] and toks[c] == best[parent])
        paths.append(path)
        nxt.append(best[path[-1]])
    return paths, nxt


def walk(children: list[list[int]], takes, limit: int | None = None) -> list[int]:
    """A node path from the root (node 0): at each node its first child `takes(node, child)`
    accepts, until none does or the path has `limit` steps."""
    cur, path = 0, [0]
    while limit is None or len(path) <= limit:
        child = next((c for c in children[cur] if takes(cur, c)), None)
        if child is None:
            break
        path.append(child)
        cur = child
    return path


def sample_accept(
    tokens: list[list[int]], drafted: list[list[bool]], p: torch.Tensor, q: torch.Tensor | None,
    gen: torch.Generator | None,
) -> tuple[list[list[int]], list[int]]:
    """Rejection sampling along a chain (node k's parent is k-1), all rows at once.

    p [B, N, V]: target probabilities at each node; q [B, N, V]: the drafter's distribution at
    each node, i.e. the one node k+1's token was drawn from (None when nothing was drafted).
    """
    B, n, _ = p.shape
    rows = torch.arange(B)
    if n > 1:
        x = torch.tensor(tokens)[:, 1:n]  # [B, n-1] drafted tokens
        ok = torch.tensor(drafted)[:, 1:n]
        px = p[:, :-1].gather(2, x[..., None])[..., 0]
        qx = q[:, :-1].gather(2, x[..., None])[..., 0]
        u = torch.rand(B, n - 1, generator=gen)
        accept = ok & (qx > 0) & (u * qx < px)  # u < min(1, p/q)
        acc = accept.to(torch.int64).cumprod(1).sum(1)  # leading accepts
        rejected = ok.gather(1, acc.clamp(max=n - 2)[:, None])[:, 0] & (acc < n - 1)
    else:
        acc = torch.zeros(B, dtype=torch.int64)
        rejected = torch.zeros(B, dtype=torch.bool)
    p_last = p[rows, acc]
    dist = p_last.clone()
    if rejected.any():
        dist[rejected] = residual(p_last[rejected], q[rows, acc][rejected])
    nxt = torch.multinomial(dist, 1, generator=gen)[:, 0]
    paths = [list(range(int(a) + 1)) for a in acc]
    return paths, nxt.tolist()
