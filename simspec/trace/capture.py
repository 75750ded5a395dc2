"""Capture an acceptance trace: batched greedy target decoding + one scoring pass per drafter.

The target's greedy generation dominates the cost, so it runs in batches (left-padded; a bf16
forward of 16 sequences costs ~1.1x one on CPU). Forward hooks keep, for every generated token,
the raw hidden state after each exit layer; the step's final logits are kept too. Afterwards
every sequence is scored: exit-layer drafters read those hidden states through the target's own
norm + head, trimmed heads are column subsets of the same logits, and a separate drafter model
scores the whole sequence in ONE teacher-forced forward. Ranks are therefore conditioned on the
target's prefix, which is what greedy replay needs.
"""

from __future__ import annotations

import datetime as _dt
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from simspec import drafters, machine
from simspec.errors import InputError
from simspec.models import LoadedModel, early_exit_logits, gemv, load_model, new_cache, with_cache
from simspec.trace import multiturn
from simspec.trace.prompts import calibration_order, load_split
from simspec.trace.ranks import TrimSets, score_full
from simspec.trace.schema import TARGET, beta_column, rank_column, write_trace


@dataclass
class CaptureSpec:
    target: str
    dataset: str
    prompts: int
    max_new_tokens: int
    drafters: list[str] = field(default_factory=list)   # separate drafter models
    exit_layers: list[int] = field(default_factory=list)
    vocabs: list[int | None] = field(default_factory=lambda: [None])  # None = full head
    temperatures: list[float] = field(default_factory=lambda: [1.0])
    batch: int = 16
    dtype: str = "bf16"
    device: str = "cpu"
    seed: int = 0
    chat: bool = True
    # another trace whose kept-token order (its sidecar's calibration.order) this one reuses, so
    # that a trimmed head keeps the same K rows in both (a subset of prompts holds out other texts)
    calibration_from: str | None = None
    prompt_chars: tuple[int, int] | None = None  # trace only prompts of lo..hi characters


@dataclass
class Generated:
    prompt: list[int]
    tokens: list[int]
    logits: torch.Tensor                 # [T, V] target logits at each generated position
    hidden: dict[int, torch.Tensor]      # exit layer -> [T, hidden] raw hidden state


def borrowed_order(path: str, vocab: int, keep: int) -> tuple[np.ndarray, dict]:
    """(kept-token order, calibration record) taken from another trace's sidecar, checked: same
    vocabulary, at least `keep` ids."""
    import json

    from simspec.trace.schema import sidecar_path

    side = sidecar_path(path)
    try:
        meta = json.loads(Path(side).read_text())
        calib = meta["calibration"]
        order = np.asarray(calib["order"], dtype=np.int64)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(str(side), "calibration.order", f"no kept-token order to reuse ({exc})") from None
    if meta.get("vocab") != vocab:
        raise InputError(str(side), "vocab", f"{meta.get('vocab')} != the target's {vocab}")
    if len(order) < keep:
        raise InputError(str(side), "calibration.order", f"holds {len(order)} ids, fewer than K={keep}")
    rec = {k: v for k, v in calib.items() if k != "order"} | {"from": str(path)}
    return order[:keep] if keep else order[:0], rec


def encode(lm: LoadedModel, text: str, chat: bool) -> list[int]:
    tok = lm.tokenizer
    if chat and getattr(tok, "chat_template", None):
        s = tok.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                    add_generation_prompt=True)
        return list(tok(s, add_special_tokens=False)["input_ids"])
    return list(tok(text)["input_ids"])


def stop_ids(lm: LoadedModel) -> set[int]:
    ids: set[int] = set()
    for v in (getattr(getattr(lm.model, "generation_config", None), "eos_token_id", None),
              lm.tokenizer.eos_token_id):
        if isinstance(v, int):
            ids.add(v)
        elif v:
            ids.update(int(x) for x in v)
    return ids


def _layer_hooks(model, layers: list[int], store: dict[int, torch.Tensor]):
    base = model.get_decoder()
    handles = []
    for l in layers:
        def hook(_m, _inp, out, l=l):
            h = out[0] if isinstance(out, tuple) else out
            store[l] = h[:, -1, :].detach()
        handles.append(base.layers[l - 1].register_forward_hook(hook))
    return handles


@torch.inference_mode()
def generate(lm: LoadedModel, prompts: list[list[int]], max_new: int, exit_layers: list[int]
             ) -> list[Generated]:
    """Greedy decode a batch (left padding); keep per-token logits and exit-layer hidden states."""
    model = lm.model
    dev = lm.device
    stops = stop_ids(lm)
    pad = lm.tokenizer.pad_token_id
    pad = pad if pad is not None else (min(stops) if stops else 0)
    b, width = len(prompts), max(len(p) for p in prompts)
    ids = torch.full((b, width), pad, dtype=torch.long)
    mask = torch.zeros((b, width), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):] = torch.tensor(p)
        mask[i, width - len(p):] = 1
    ids, mask = ids.to(dev), mask.to(dev)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    store: dict[int, torch.Tensor] = {}
    hooks = _layer_hooks(model, exit_layers, store)
    cache = new_cache(model)
    toks: list[torch.Tensor] = []
    logits_steps: list[torch.Tensor] = []
    hidden_steps: dict[int, list[torch.Tensor]] = {l: [] for l in exit_layers}
    done = torch.zeros(b, dtype=torch.bool, device=dev)
    lengths = torch.full((b,), max_new, dtype=torch.long)
    stop_t = torch.tensor(sorted(stops), dtype=torch.long, device=dev)
    try:
        out = model(input_ids=ids, attention_mask=mask, position_ids=pos, **with_cache(model, cache),
                    logits_to_keep=1)
        for step in range(max_new):
            logits = out.logits[:, -1, :]
            nxt = logits.argmax(-1)
            toks.append(nxt)
            logits_steps.append(logits.clone())
            for l in exit_layers:
                hidden_steps[l].append(store[l].clone())
            newly = ~done & torch.isin(nxt, stop_t)
            lengths[newly.cpu()] = step + 1
            done |= newly
            if bool(done.all()) or step == max_new - 1:
                break
            nxt = torch.where(done, torch.full_like(nxt, pad), nxt)
            mask = torch.cat([mask, torch.ones((b, 1), dtype=mask.dtype, device=dev)], dim=1)
            pos = pos[:, -1:] + 1
            out = model(input_ids=nxt[:, None], attention_mask=mask, position_ids=pos,
                        **with_cache(model, cache))
    finally:
        for h in hooks:
            h.remove()
    tok_m = torch.stack(toks, 1).cpu()
    log_m = torch.stack(logits_steps, 1)
    hid_m = {l: torch.stack(v, 1) for l, v in hidden_steps.items()}
    res = []
    for i in range(b):
        t = int(lengths[i])
        res.append(Generated(prompts[i], tok_m[i, :t].tolist(), log_m[i, :t],
                             {l: hid_m[l][i, :t] for l in exit_layers}))
    return res


@torch.inference_mode()
def drafter_logits(drafter: LoadedModel, g: Generated) -> torch.Tensor:
    """One teacher-forced pass of a drafter model over prompt + tokens: logits predicting tokens."""
    seq = torch.tensor([g.prompt + g.tokens[:-1]], device=drafter.device)
    out = drafter.model(input_ids=seq, logits_to_keep=len(g.tokens), use_cache=False)
    return out.logits[0, -len(g.tokens):, :]


def _fit_vocab(logits: torch.Tensor, vocab: int) -> torch.Tensor:
    if logits.shape[-1] == vocab:
        return logits
    if logits.shape[-1] > vocab:
        return logits[:, :vocab]
    pad = torch.full((logits.shape[0], vocab - logits.shape[-1]), float("-inf"), dtype=logits.dtype)
    return torch.cat([logits, pad], dim=1)


def score(target: LoadedModel, g: Generated, draft_logits: dict[str, torch.Tensor],
          trims: TrimSets, temperatures: list[float]) -> dict[str, np.ndarray]:
    """All rank/beta columns of one sequence."""
    vocab = g.logits.shape[-1]
    tok = torch.tensor(g.tokens, dtype=torch.long)
    p_logits = g.logits.float()
    p_probs = {t: torch.softmax(p_logits / t, dim=-1) for t in temperatures}
    p_sub = {t: trims.gather(p) for t, p in p_probs.items()}
    cols: dict[str, np.ndarray] = {}

    def add(name: str, logits: torch.Tensor, full: bool) -> None:
        logits = _fit_vocab(logits.float(), vocab)
        results = {name: score_full(logits, tok, p_probs)} if full else {}
        for k, res in trims.score(logits, tok, p_sub).items():
            results[f"{name}/k{k}"] = res
        for d, (r, b) in results.items():
            cols[rank_column(d)] = r.numpy()
            for t, v in b.items():
                cols[beta_column(d, t)] = v.numpy()

    add(TARGET, p_logits, full=False)  # the target itself through a trimmed head
    with torch.inference_mode():
        for l, h in g.hidden.items():
            add(drafters.layer_kind().column(l), early_exit_logits(target.model, h, l), full=True)
    for name, logits in draft_logits.items():
        add(name, logits, full=True)
    return cols


def _check_tokenizers(target: LoadedModel, drafter: LoadedModel) -> None:
    probe = "def fibonacci(n):\n    return n if n < 2 else fibonacci(n - 1) + fibonacci(n - 2)  # ok\n"
    a = target.tokenizer(probe, add_special_tokens=False)["input_ids"]
    b = drafter.tokenizer(probe, add_special_tokens=False)["input_ids"]
    if list(a) != list(b):
        raise InputError(None, "--drafter", f"{drafter.name} does not share {target.name}'s tokenizer")


def drafter_names(spec: CaptureSpec, model_names: list[str]) -> list[str]:
    ks = [k for k in spec.vocabs if k]
    full = None in spec.vocabs
    names = [f"target/k{k}" for k in ks]
    for base in [drafters.layer_kind().column(l) for l in spec.exit_layers] + model_names:
        names += ([base] if full else []) + [f"{base}/k{k}" for k in ks]
    return names


def capture(spec: CaptureSpec, out: str | Path, command: str = "",
            log: Callable[[str], None] = print) -> tuple[Path, Path, dict]:
    """Run the whole capture and write the trace; returns (parquet, sidecar, meta)."""
    t_start = time.perf_counter()
    cpu_start = time.process_time()
    split = load_split(spec.dataset, spec.prompts, spec.seed, spec.prompt_chars)
    t0 = time.perf_counter()
    target = load_model(spec.target, spec.dtype, spec.device)
    n_layers = target.dims.layers
    for l in spec.exit_layers:
        if not 1 <= l < n_layers:
            raise InputError(None, "--exit-layers", f"{l} outside 1..{n_layers - 1} for {target.name}")
    drafters = [load_model(d, spec.dtype, spec.device) for d in spec.drafters]
    for d in drafters:
        _check_tokenizers(target, d)
    load_s = time.perf_counter() - t0
    vocab = target.dims.vocab
    ks = sorted({k for k in spec.vocabs if k})
    for k in ks:
        if k >= vocab:
            raise InputError(None, "--vocab", f"K={k} is not smaller than the vocabulary ({vocab})")
    if spec.calibration_from:
        order, calib = borrowed_order(spec.calibration_from, vocab, max(ks) if ks else 0)
    else:
        order = calibration_order(target.tokenizer, split.calibration, vocab, max(ks) if ks else 0)
        calib = {"texts": len(split.calibration), "chars": sum(map(len, split.calibration)),
                 "rule": "K most frequent target-tokenizer ids over held-out texts; ties by lower id"}
    trims = TrimSets(torch.as_tensor(order), vocab, ks)
    encoded = [encode(target, p, spec.chat) for p in split.prompts]
    if spec.dataset == multiturn.DATASET:  # turn 1 answered greedily here, turn 2 is traced
        if not spec.chat:
            raise InputError(None, "--no-chat", f"{multiturn.DATASET} is a conversation: it needs the chat template")
        stops = stop_ids(target)
        for bi in range(0, len(encoded), spec.batch):
            gens = generate(target, encoded[bi:bi + spec.batch], spec.max_new_tokens, [])
            for j, g in enumerate(gens, bi):
                answer = multiturn.answer_text(target.tokenizer, g.tokens, stops)
                encoded[j] = multiturn.conversation(target.tokenizer, split.prompts[j], answer)
        log(f"  {len(encoded)} first-turn answers generated")
    by_len = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))  # less padding
    columns = drafter_names(spec, [d.name for d in drafters])

    def make_meta(complete: bool) -> dict:
        import transformers

        import simspec

        return {
            "kind": "simspec-trace", "complete": complete,
            "command": command,
            "target": target.name, "target_sha256": target.sha256, "layers": n_layers, "vocab": vocab,
            "dtype": spec.dtype, "device": spec.device, "threads": torch.get_num_threads(),
            "machine": machine.identify(spec.device, torch.get_num_threads(), probe=False),
            "kernels": gemv.record(spec.device, spec.dtype),
            "drafter_models": {d.name: d.sha256 for d in drafters},
            "exit_layers": spec.exit_layers, "vocabs": [k if k else "full" for k in spec.vocabs],
            "dataset": spec.dataset, "dataset_source": split.source, "prompts": spec.prompts,
            "max_new_tokens": spec.max_new_tokens, "batch": spec.batch, "chat_template": spec.chat,
            "seed": spec.seed, "prompt_chars": list(spec.prompt_chars) if spec.prompt_chars else None,
            "stop_ids": sorted(stop_ids(target)),
            "calibration": {**calib, "order": order.tolist()},
            "capture_seconds": {"total": round(time.perf_counter() - t_start, 1),
                                "cpu_all_threads": round(time.process_time() - cpu_start, 1),
                                "load": round(load_s, 1),
                                "generate": round(gen_s, 1), "score": round(score_s, 1)},
            "versions": {"simspec": simspec.__version__ if hasattr(simspec, "__version__") else "",
                         "torch": torch.__version__, "transformers": transformers.__version__,
                         "python": sys.version.split()[0], "platform": platform.platform()},
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "note": "ranks are conditioned on the target's greedy prefix; beta is evaluated on that same "
                    "greedy path (an approximation for sampled decoding)",
        }

    rows: list[dict] = [{} for _ in encoded]
    gen_s = score_s = 0.0
    for bi in range(0, len(by_len), spec.batch):
        idx = by_len[bi:bi + spec.batch]
        t1 = time.perf_counter()
        gens = generate(target, [encoded[i] for i in idx], spec.max_new_tokens, spec.exit_layers)
        t2 = time.perf_counter()
        gen_s += t2 - t1
        for i, g in zip(idx, gens):
            dl = {d.name: drafter_logits(d, g) for d in drafters}
            cols = score(target, g, dl, trims, spec.temperatures)
            rows[i] = {"seq": i, "prompt_len": len(g.prompt), "output_len": len(g.tokens),
                       "prompt_ids": np.asarray(g.prompt), "tokens": np.asarray(g.tokens), **cols}
        score_s += time.perf_counter() - t2
        done = min(bi + spec.batch, len(by_len))
        log(f"  {done}/{len(by_len)} sequences  generate {gen_s:.0f}s  score {score_s:.0f}s")
        if done < len(by_len):  # checkpoint: a stopped capture still leaves a valid partial trace
            write_trace(out, [r for r in rows if r], columns, spec.temperatures, make_meta(False))
    meta = make_meta(True)
    pq_path, side = write_trace(out, rows, columns, spec.temperatures, meta)
    return pq_path, side, meta
