"""Brute-force references for the trace tests: plain full-context forwards, no cache, no batching."""

from __future__ import annotations

import numpy as np
import torch

from simspec.models import first_layers


@torch.inference_mode()
def last_logits(model, ids: list[int], layers: int | None = None) -> np.ndarray:
    x = torch.tensor([ids])
    if layers is None:
        return model(input_ids=x).logits[0, -1].float().numpy()
    with first_layers(model, layers):
        return model(input_ids=x).logits[0, -1].float().numpy()


def brute_rank(logits: np.ndarray, token: int, rows: np.ndarray | None = None, cap: int = 127) -> int:
    """Position of `token` when tokens are sorted by (-logit, index); cap if absent or deeper."""
    if rows is not None:
        hit = np.flatnonzero(rows == token)
        if len(hit) == 0:
            return cap
        logits, token = logits[rows], int(hit[0])
    order = np.lexsort((np.arange(len(logits)), -logits))
    return min(int(np.flatnonzero(order == token)[0]), cap)


def greedy(model, prompt: list[int], n: int) -> list[int]:
    ids = list(prompt)
    for _ in range(n):
        ids.append(int(np.argmax(last_logits(model, ids))))
    return ids[len(prompt):]


def spec_decode(target, prompt: list[int], first: int, n: int, gamma: int, draft_layers: int
                ) -> tuple[list[int], list[int]]:
    """Greedy draft-then-verify with an early-exit drafter, run on the model directly.

    Starts after `first` (the prefill token). Returns (tokens, tokens emitted per round)."""
    out = [first]
    emitted = []
    while len(out) < n:
        ctx = list(prompt) + out
        draft = []
        for _ in range(gamma):
            draft.append(int(np.argmax(last_logits(target, ctx + draft, draft_layers))))
        with torch.inference_mode():
            logits = target(input_ids=torch.tensor([ctx + draft])).logits[0, len(ctx) - 1:].float().numpy()
        verify = logits.argmax(-1)
        a = 0
        while a < gamma and draft[a] == int(verify[a]):
            a += 1
        new = draft[:a] + [int(verify[a])]
        new = new[: n - len(out)]
        out += new
        emitted.append(len(new))
    return out, emitted


def capture_tiny(folder, texts: list[str], **spec):
    """Capture a trace of `texts` (written as a JSONL dataset) into folder/tiny.parquet;
    `spec` is the rest of CaptureSpec (target, prompts = how many, drafters, ...)."""
    import json

    from simspec.trace.capture import CaptureSpec, capture

    data = folder / "p.jsonl"
    data.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in texts))
    return capture(CaptureSpec(dataset=str(data), **spec), folder / "tiny.parquet", log=lambda s: None)
