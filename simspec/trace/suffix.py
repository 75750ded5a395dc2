"""SuffixDecoding's proposer, torch-free: one rule for trace replay and the live drafter.

SuffixDecoding (Oliaro et al., arXiv 2411.04975) as vLLM runs it (`method = "suffix"`,
vllm/v1/spec_decode/suffix_decoding.py, which calls Arctic Inference's SuffixDecodingCache,
arctic_inference/suffix_decoding/cache.py + csrc/suffix_decoding/suffix_tree.cc). Followed:

- two trees of depth `max_tree_depth` (D): a per-request one over the prompt and the request's
  own output so far, and a global one over the outputs of the last `max_cached_requests`
  requests STARTED (FIFO eviction; Arctic's start_request allocates the slot, and
  add_active_response appends to both trees, so the global tree also holds in-flight outputs,
  the request's own included); `max_cached_requests = 0` turns the global tree off;
- a tree node counts the suffixes (of at most D tokens each) that pass through or end at it;
- at each step the pattern is the last min(len, D) tokens of the context. For match length
  m = 1, 2, ... < len(pattern) (stopping at the first m with no match) the draft walks from the
  matched node to the child with the largest count, its probability multiplied by
  count(child) / count(node), while it holds fewer than min(max_spec_tokens,
  int(m * max_spec_factor + 1e-6)) tokens and the probability is >= `min_token_prob`; its score
  is the sum of its tokens' probabilities; the best score wins (a longer match on a tie). The
  global tree's draft replaces the request tree's only if its score is strictly higher;
- float32 arithmetic for probabilities and scores, as the C++ does;
- one chain (vLLM calls speculate with use_tree_spec = False).

Deviations, said here: (1) the tree is an uncompressed trie (the C++ compresses edges; the
counts, matches and drafts are the same); (2) among children with equal counts the C++ takes
the first in its hash map's order, this takes the smallest token id, so a draft depends only on
the sequences in the trees, never on insertion order; (3) eviction rebuilds the global trie
from the sequences still cached (same counts as the C++'s removal); (4) `max_spec_tokens` is
the scenario's gamma (vLLM's num_speculative_tokens) and a round's shorter cap (clip to the
request's remaining budget, which vLLM does not do) truncates that draft instead of recomputing
it with a smaller limit.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Hashable, Sequence

import numpy as np

_F = np.float32
_SHIFT = 32  # edge key: node << 32 | token (token ids are 0 <= id < 2**32)


@dataclass(frozen=True)
class SuffixParams:
    """vLLM's four `suffix_decoding_*` settings, with vLLM's defaults (vllm/config/speculative.py)."""

    max_tree_depth: int = 24
    max_cached_requests: int = 10000
    max_spec_factor: float = 1.0
    min_token_prob: float = 0.1


# (name in vLLM, field, type, low, high, meaning): scenario [draft] keys, study knobs, messages.
# vLLM's own checks: depth >= 1, cached >= 0, factor >= 0, 0 <= prob <= 1; the upper bounds on
# depth, cached requests and factor are simspec's (a trie's memory grows with depth x tokens).
PARAMS = (
    ("suffix_decoding_max_tree_depth", "max_tree_depth", int, 1, 256, "suffix tree depth: match + draft tokens"),
    ("suffix_decoding_max_cached_requests", "max_cached_requests", int, 0, 1_000_000,
     "earlier requests' outputs in the global tree (0: none)"),
    ("suffix_decoding_max_spec_factor", "max_spec_factor", float, 0.0, 64.0, "draft length per matched token"),
    ("suffix_decoding_min_token_prob", "min_token_prob", float, 0.0, 1.0, "lowest draft-token probability"),
)


class SuffixTree:
    """Suffixes of at most `max_depth` tokens of several sequences, with counts (a trie)."""

    def __init__(self, max_depth: int) -> None:
        self.max_depth = max_depth
        self.count: list[int] = [0]      # node -> suffixes through or ending at it (0: root)
        self.token: list[int] = [-1]     # node -> its token
        self.best: list[int] = [-1]      # node -> child with the most count (ties: lowest token)
        self.edges: dict[int, int] = {}  # node << 32 | token -> child
        self.seqs: dict[int, list[int]] = {}
        self._active: dict[int, deque] = {}  # seq -> nodes where its last <= D suffixes end

    def append(self, seq: int, token: int) -> None:
        """Extend sequence `seq` by one token (a new sequence if unseen)."""
        if not 0 <= token < 1 << _SHIFT:
            raise ValueError(f"token id {token} outside 0..2^32-1")
        self.seqs.setdefault(seq, []).append(token)
        act = self._active.setdefault(seq, deque())
        act.append(0)
        if len(act) > self.max_depth:
            act.popleft()
        self.count[0] += 1
        count, best, tok, edges = self.count, self.best, self.token, self.edges
        for i, node in enumerate(act):
            key = node << _SHIFT | token
            child = edges.get(key)
            if child is None:
                child = len(count)
                edges[key] = child
                count.append(0)
                tok.append(token)
                best.append(-1)
            count[child] += 1
            b = best[node]
            if b < 0 or count[child] > count[b] or (count[child] == count[b] and token < tok[b]):
                best[node] = child
            act[i] = child

    def extend(self, seq: int, tokens: Sequence[int]) -> None:
        for t in tokens:
            self.append(seq, int(t))

    def remove(self, seq: int) -> None:
        """Drop a sequence: the trie is rebuilt from the others (same counts as removal)."""
        rest = {s: toks for s, toks in self.seqs.items() if s != seq}
        self.__init__(self.max_depth)
        for s, toks in rest.items():
            self.extend(s, toks)

    def match(self, pattern: Sequence[int]) -> int:
        """The node of `pattern` (from the root), or -1."""
        node, edges = 0, self.edges
        for t in pattern:
            node = edges.get(node << _SHIFT | int(t), -1)
            if node < 0:
                return -1
        return node

    def speculate(self, pattern: Sequence[int], max_spec_tokens: int, max_spec_factor: float,
                  min_token_prob: float) -> tuple[list[int], float]:
        """(draft tokens, score): the best-scoring greedy path over every match length."""
        best_toks: list[int] = []
        best_score = _F(0)
        factor, floor = _F(max_spec_factor), _F(min_token_prob)
        count, nbest, tok = self.count, self.best, self.token
        for m in range(1, len(pattern)):
            node = self.match(pattern[len(pattern) - m:])
            if node < 0:
                break
            limit = max(min(max_spec_tokens, int(float(_F(m) * factor) + 1e-6)), 0)
            toks: list[int] = []
            prob, score = _F(1), _F(0)
            while len(toks) < limit and prob >= floor:
                child = nbest[node]
                if child < 0:
                    break
                prob = _F(prob * (_F(count[child]) / _F(count[node])))
                if prob < floor:
                    break
                toks.append(tok[child])
                score = _F(score + prob)
                node = child
            if score >= best_score:
                best_toks, best_score = toks, score
        return best_toks, float(best_score)


class SuffixCache:
    """Arctic Inference's SuffixDecodingCache: request trees + one global tree of outputs."""

    def __init__(self, params: SuffixParams) -> None:
        self.params = params
        self.global_tree = SuffixTree(params.max_tree_depth)
        self.local: dict[Hashable, SuffixTree] = {}
        self.cached: dict[Hashable, int] = {}  # request -> its sequence in the global tree (FIFO)
        self._next = 0

    def start(self, req: Hashable, prompt: Sequence[int]) -> None:
        """A request begins: its tree over the prompt; a global slot for its output (evicting
        the oldest cached output beyond `max_cached_requests`)."""
        if req in self.local:
            raise ValueError(f"request {req!r} is already active")
        tree = SuffixTree(self.params.max_tree_depth)
        tree.extend(0, prompt)
        self.local[req] = tree
        if self.params.max_cached_requests == 0:
            return
        if req in self.cached:
            self.global_tree.remove(self.cached.pop(req))
        self.cached[req] = self._next
        self._next += 1
        while len(self.cached) > self.params.max_cached_requests:
            old = next(iter(self.cached))
            self.global_tree.remove(self.cached.pop(old))

    def add(self, req: Hashable, tokens: Sequence[int]) -> None:
        """The request's new output tokens, into its own tree and (while cached) the global one."""
        self.local[req].extend(0, tokens)
        if req in self.cached:
            self.global_tree.extend(self.cached[req], tokens)

    def stop(self, req: Hashable) -> None:
        """The request ends: its prompt tree goes; its output stays cached until evicted."""
        del self.local[req]

    def speculate(self, req: Hashable, context: Sequence[int], max_spec_tokens: int) -> list[int]:
        p = self.params
        pattern = list(context[-p.max_tree_depth:])
        toks, score = self.local[req].speculate(pattern, max_spec_tokens, p.max_spec_factor, p.min_token_prob)
        if self.params.max_cached_requests != 0:
            g_toks, g_score = self.global_tree.speculate(pattern, max_spec_tokens, p.max_spec_factor,
                                                         p.min_token_prob)
            if g_score > score:
                toks = g_toks
        return toks


def replay(sequences: Sequence[tuple[Sequence[int], Sequence[int]]], params: SuffixParams,
           max_spec_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """(proposed, accepted), int16 over every position of every (prompt, tokens) pair, the
    requests run one after another in the order given (batch 1): at generated position n the
    context is prompt + tokens[:n]; proposed = the draft's length, accepted = its common
    prefix with tokens[n:]. The global tree holds the earlier sequences' outputs (and this
    one's so far), as a live run of the same order at batch 1 holds them."""
    cache = SuffixCache(params)
    prop, acc = [], []
    for i, (prompt, tokens) in enumerate(sequences):
        prompt, tokens = [int(t) for t in prompt], [int(t) for t in tokens]
        cache.start(i, prompt)
        ctx = list(prompt)
        p = np.zeros(len(tokens), dtype=np.int16)
        a = np.zeros(len(tokens), dtype=np.int16)
        for n in range(len(tokens)):
            if n:
                cache.add(i, tokens[n - 1:n])
                ctx.append(tokens[n - 1])
            draft = cache.speculate(i, ctx, max_spec_tokens)
            k = 0
            while k < len(draft) and n + k < len(tokens) and draft[k] == tokens[n + k]:
                k += 1
            p[n], a[n] = len(draft), k
        cache.stop(i)
        prop.append(p)
        acc.append(a)
    if not prop:
        return np.zeros(0, dtype=np.int16), np.zeros(0, dtype=np.int16)
    return np.concatenate(prop), np.concatenate(acc)
