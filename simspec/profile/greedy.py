"""A live plain greedy decode at batch 1, to set a profile's prediction against a real run.

Prefill the prompt (which yields the first token), then run `new_tokens - 1` decode steps one
token at a time with the KV cache (argmax, no stop on EOS so the count is fixed). The decode
rate is steps / decode time, prefill excluded; the profile predicts it as steps / the sum of
decode latencies at batch 1, q=1, context = prompt length + i.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch

from simspec.models.loader import LoadedModel
from simspec.models.views import forward_tokens, new_cache
from simspec.profile.costmodel import ProfileCostModel

PROMPT = (
    "You are a careful Python programmer. Write a function `merge_intervals(intervals)` that "
    "takes a list of (start, end) pairs, merges every pair of overlapping intervals, and returns "
    "the merged list sorted by start. Explain the algorithm in a docstring, handle the empty "
    "list, and add three doctest examples, one of them with intervals that only touch at an end "
    "point. Then write a second function `total_covered(intervals)` that returns the total "
    "length covered by the union of the intervals, reusing the first function. Keep both "
    "functions free of imports beyond the standard library, name every variable clearly, and "
    "state the time complexity of each function in its docstring."
)


@dataclass
class GreedyResult:
    prompt_tokens: int
    new_tokens: int
    runs_tok_s: list[float]
    live_tok_s: float  # fastest run (the profile's statistic)
    live_median_tok_s: float
    predicted_tok_s: float
    prefill_s: float
    predicted_prefill_s: float

    @property
    def rel_error(self) -> float:
        return abs(self.predicted_tok_s - self.live_tok_s) / self.live_tok_s

    def to_dict(self) -> dict:
        return {**asdict(self), "rel_error": self.rel_error}


def greedy_once(lm: LoadedModel, ids: torch.Tensor, new_tokens: int) -> tuple[float, float, list[int]]:
    """(prefill seconds, seconds of the new_tokens - 1 decode steps, generated ids)."""
    model = lm.model
    cache = new_cache(model)
    t0 = time.perf_counter()
    logits, cache = forward_tokens(model, ids, cache, logits_to_keep=1)
    nxt = logits[:, -1].argmax(-1, keepdim=True)
    if lm.device.startswith("cuda"):
        torch.cuda.synchronize()
    t1 = time.perf_counter()
    out = [int(nxt)]
    for _ in range(new_tokens - 1):
        logits, cache = forward_tokens(model, nxt, cache)
        nxt = logits[:, -1].argmax(-1, keepdim=True)
        out.append(int(nxt))  # .item() synchronises on cuda
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, out


def greedy_check(lm: LoadedModel, cm: ProfileCostModel, new_tokens: int = 64,
                 runs: int = 3) -> GreedyResult:
    tok = lm.tokenizer
    ids = torch.tensor([tok(PROMPT)["input_ids"]], device=lm.device)
    n = ids.shape[1]
    greedy_once(lm, ids[:, :16], 4)  # warm-up
    rates, prefills = [], []
    for _ in range(runs):
        pre, dec, _ = greedy_once(lm, ids, new_tokens)
        rates.append((new_tokens - 1) / dec)
        prefills.append(pre)
    steps = new_tokens - 1
    pred = sum(cm.latency_s("decode", 1, 1, n + i) for i in range(steps))
    return GreedyResult(
        prompt_tokens=n, new_tokens=new_tokens, runs_tok_s=rates, live_tok_s=max(rates),
        live_median_tok_s=sorted(rates)[len(rates) // 2], predicted_tok_s=steps / pred,
        prefill_s=min(prefills), predicted_prefill_s=cm.latency_s("prefill", 1, n, 0),
    )
