"""One live configuration over a list of prompts: the part `simspec run` and `validate` share.

    spec = DraftSpec.parse("early_exit:20")         # a kind of simspec.drafters, or none
    report = run_config(target, spec, tree, prompts, max_new_tokens=64, batch=4)

Prompts are split into static batches of `batch` sequences, each decoded to the end before the
next starts. One short warm-up generation runs first (allocator, thread pool), untimed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from simspec import drafters
from simspec.drafters import DraftSpec
from simspec.errors import InputError
from simspec.live.drafters import Drafter, top_tokens
from simspec.live.engine import generate, plain_greedy
from simspec.live.kv import KV
from simspec.live.stats import Stats
from simspec.live.tree import Tree


@dataclass
class Report:
    stats: Stats
    outputs: list[list[int]]
    greedy_equal: list[bool] | None = None  # per prompt, when checked
    extra: dict = field(default_factory=dict)


def same_tokenizer(a, b) -> bool:
    try:
        return a.get_vocab() == b.get_vocab()
    except AttributeError:
        return True


def check_config(target, spec: DraftSpec, tree: Tree, vocab_k: int | None, temperature: float, draft=None) -> None:
    """Refuse combinations the engine does not support, naming the flag."""
    k = spec.entry
    layers = target.dims.layers
    if k is not None and k.arg == "layer" and not 1 <= spec.layers < layers:
        raise InputError(None, "--draft", f"{spec} needs 1 <= L < {layers} (target layers)")
    if k is not None and not k.trees and not tree.is_chain:
        raise InputError(None, "--tree", f"{k.title or k.name} drafts chains only")
    if temperature > 0 and not tree.is_chain:
        raise InputError(None, "--tree", "sampling (--temperature > 0) verifies chains only; trees are greedy")
    if vocab_k is not None:
        if k is None or not k.trims_head:
            trimmable = " or ".join(n for n, x in drafters.KINDS.items() if x.trims_head)
            raise InputError(None, "--vocab", f"a trimmed head needs a {trimmable} drafter")
        if not 1 <= vocab_k <= target.dims.vocab:
            raise InputError(None, "--vocab", f"{vocab_k} outside 1..{target.dims.vocab}")
    if draft is not None and not same_tokenizer(target.tokenizer, draft.tokenizer):
        raise InputError(None, "--draft", f"{draft.name} does not share the target's tokenizer")


def make_drafter(target, spec: DraftSpec, kv: KV, draft=None, rows: list[int] | None = None) -> Drafter:
    """The live drafter of a spec: its kind's factory (`simspec.drafters`), or none."""
    k = spec.entry
    if k is None:
        return Drafter()
    return k.live_factory()(target, spec, kv, draft, rows)


def vocab_rows(calibration: list[list[int]], k: int, vocab: int) -> list[int]:
    return top_tokens(calibration, k, vocab)


def run_config(
    target, spec: DraftSpec, tree: Tree, prompts: list[list[int]], max_new_tokens: int | list[int],
    batch: int = 1, draft=None, rows: list[int] | None = None, temperature: float = 0.0,
    seed: int = 0, eos=None, check_greedy: bool = False, warmup: bool = True,
    progress=None, synthetic=None, make=None,
) -> Report:
    """Decode all prompts in static batches; stats summed over batches. `max_new_tokens`: one
    budget, or one per prompt. `synthetic`: forced acceptance (simspec.live.synthetic; its
    request i is prompt i); the warm-up runs without it. `make(kv)`: the drafter of a batch
    (a policy's, simspec.live.policy_drafters), else the spec's own."""
    if make is None:
        make = lambda kv: make_drafter(target, spec, kv, draft, rows)  # noqa: E731
    if batch < 1:
        raise InputError(None, "--batch", f"{batch} must be >= 1")
    budgets = [max_new_tokens] * len(prompts) if isinstance(max_new_tokens, int) else list(max_new_tokens)
    if warmup:
        kv = KV(target.model, 1)
        generate(target.model, prompts[:1], min(4, budgets[0]), make(kv), tree, temperature, seed, None, kv)
    import time

    total, outputs = Stats(device=target.device), []
    cpu = time.process_time()
    prev = None
    for i in range(0, len(prompts), batch):
        group = prompts[i:i + batch]
        kv = KV(target.model, len(group))
        drafter = make(kv)
        if prev is not None:
            drafter.inherit(prev)  # state that outlives a batch (suffix decoding's earlier outputs)
        prev = drafter
        res = generate(target.model, group, budgets[i:i + batch], drafter, tree, temperature, seed + i, eos, kv,
                       synthetic)
        total.merge(res.stats)
        outputs += res.outputs
        if progress:
            progress(len(outputs))
    # CPU seconds of this process (all threads): unlike wall time, not inflated when the
    # process is paused or starved by others on a shared machine
    report = Report(total, outputs, extra={"cpu_seconds": time.process_time() - cpu})
    if check_greedy:
        ref = [plain_greedy(target.model, p, m, eos) for p, m in zip(prompts, budgets)]
        report.greedy_equal = [a == b for a, b in zip(outputs, ref)]
    return report
