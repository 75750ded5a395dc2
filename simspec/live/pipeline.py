"""Drafter and target as two processes on two cores: heterogeneous speculative decoding on
one machine (greedy, batch 1, chains), the live half of a pipeline config of `simspec validate`
(simspec.validation).

Each model lives in its own process, pinned to its own core with one torch thread, holding its
own KV cache (gpt-fast style: every fed token is context, rejection is a crop). The parent
only routes small messages over pipes (token ids, never tensors) and keeps the clock:

  sequential   draft(pending) -> drafts; verify(pending + drafts) -> (k, bonus); verdict
  overlapped   as PEARL's post-verify: while the target verifies, the drafter feeds its last
               draft token (its output is the drafter's guess g of the bonus token) and drafts
               the next round after g. If all drafts are accepted and bonus == g, that round is
               ready when verification ends; else it is dropped at the drafter's next step
               and the drafter rolls back to the accepted prefix.

Greedy and lossless: every emitted token is the target's argmax given the committed prefix,
so the output equals plain greedy decoding token for token (tests/test_live_pipeline.py).
Both processes are stopped on every exit path, errors included.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

TIMEOUT_S = 900.0  # no single message may take longer (a dead worker is found, not awaited)


@dataclass(frozen=True)
class PipelineConfig:
    target: str                    # model spec (simspec.models.load_model)
    draft: str
    gamma: int
    overlap: bool = False
    dtype: str = "bf16"
    target_core: int | None = 0    # None: no pinning
    draft_core: int | None = 1
    threads: int = 1

    def label(self) -> str:
        return f"{'overlap' if self.overlap else 'sequential'} g{self.gamma}"


@dataclass
class PromptRun:
    tokens: list[int]
    wall_s: float        # prefill start to last token
    prefill_s: float
    rounds: int
    accepted: int        # draft tokens accepted (bonus tokens not counted)
    ready_rounds: int = 0  # overlap: rounds whose draft was pre-drafted in time


@dataclass
class PipelineResult:
    config: PipelineConfig
    runs: list[PromptRun] = field(default_factory=list)

    @property
    def outputs(self) -> list[list[int]]:
        return [r.tokens for r in self.runs]

    @property
    def tok_s(self) -> float:
        return sum(len(r.tokens) for r in self.runs) / sum(r.wall_s for r in self.runs)

    @property
    def tokens_per_round(self) -> float:
        rounds = sum(r.rounds for r in self.runs)
        return sum(len(r.tokens) - 1 for r in self.runs) / rounds if rounds else float("nan")


# -- the workers -----------------------------------------------------------------------------

def _setup(core: int | None, threads: int) -> None:
    if core is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {core})
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)


class _Model:
    """One model and its batch-1 cache: feed tokens, read argmaxes, crop."""

    def __init__(self, spec: str, dtype: str) -> None:
        from simspec.models import load_model

        self.lm = load_model(spec, dtype=dtype)
        self.model = self.lm.model
        self.vocab = int(self.model.config.vocab_size)
        self.reset()

    def reset(self) -> None:
        from simspec.live.kv import KV

        self.kv = KV(self.model, 1)

    @property
    def slots(self) -> int:
        return self.kv.slots

    def feed(self, tokens: list[int], all_logits: bool = False) -> list[int]:
        """Append `tokens` to the cache; the argmax after the last one (after each, if all)."""
        import torch

        from simspec.live.kv import CTX

        ids = torch.tensor([tokens], dtype=torch.long, device=self.kv.device)
        kind = torch.full_like(ids, CTX)
        keep = None if all_logits else [len(tokens) - 1]
        logits = self.kv.forward(self.model, ids, kind, keep=keep)
        return logits[0, :, : self.vocab].argmax(-1).tolist()

    def crop(self, slots: int) -> None:
        self.kv.truncate(slots)


def _target_worker(conn, spec: str, dtype: str, core: int | None, threads: int) -> None:
    try:
        _setup(core, threads)
        m = _Model(spec, dtype)
        conn.send(("ready", m.vocab))
        while True:
            msg = conn.recv()
            if msg[0] == "stop":
                return
            if msg[0] == "prefill":
                m.reset()
                conn.send(("first", m.feed(msg[1])[-1]))
            elif msg[0] == "verify":
                tokens = msg[1]
                base = m.slots
                preds = m.feed(tokens, all_logits=True)
                k = 0
                while k < len(tokens) - 1 and tokens[k + 1] == preds[k]:
                    k += 1
                m.crop(base + 1 + k)
                conn.send(("verdict", k, preds[k]))
            else:
                raise ValueError(f"target: unknown message {msg[0]!r}")
    except (EOFError, KeyboardInterrupt):
        return
    except BaseException:
        _report(conn)


class _Drafter:
    """The drafter's side of the protocol (its own process)."""

    def __init__(self, conn, m: _Model) -> None:
        self.conn, self.m = conn, m
        self.behind: list[int] = []  # accepted tokens not yet in the cache (the last draft)
        self.unfed = 0                # the last draft token (not in the cache)
        self.p_slot = 0               # cache slot of this round's pending token
        self.gamma = 0

    def prefill(self, prompt: list[int]) -> None:
        self.m.reset()
        self.m.feed(prompt)
        self.behind = []

    def draft(self, pending: int, gamma: int) -> list[int]:
        feed = self.behind + [pending]
        self.p_slot = self.m.slots + len(self.behind)
        self.behind, self.gamma = [], gamma
        out = [self.m.feed(feed)[-1]]
        while len(out) < gamma:
            out.append(self.m.feed([out[-1]])[-1])
        self.unfed = out[-1]
        return out

    def verdict(self, k: int) -> None:
        """Sequential: keep the pending token and the k accepted drafts."""
        if k >= self.gamma:
            self.behind = [self.unfed]  # all accepted: the cache lacks the last draft
        else:
            self.m.crop(self.p_slot + 1 + k)

    def pre_draft(self) -> tuple[str, Any]:
        """Overlap: draft the next round after our guess of the bonus token until the verdict
        says whether it survives; returns ("ready", drafts) or ("rolled", None)."""
        guess = self.m.feed([self.unfed])[-1]
        nxt: list[int] = []
        verdict = None
        while True:
            if verdict is None and self.conn.poll():
                verdict = self.conn.recv()
                if verdict[0] != "verdict":
                    raise ValueError(f"drafter: expected a verdict, got {verdict[0]!r}")
            if verdict is not None and not (verdict[1] >= self.gamma and verdict[2] == guess):
                k = verdict[1]
                self.m.crop(self.p_slot + 1 + min(k, self.gamma))  # the accepted prefix only
                return "rolled", None
            if len(nxt) == self.gamma:
                if verdict is None:
                    verdict = self.conn.recv()
                    continue
                self.p_slot += 1 + self.gamma  # the guess is the next round's pending token
                self.unfed = nxt[-1]
                return "ready", nxt
            nxt.append(self.m.feed([nxt[-1] if nxt else guess])[-1])


def _draft_worker(conn, spec: str, dtype: str, core: int | None, threads: int) -> None:
    try:
        _setup(core, threads)
        d = _Drafter(conn, _Model(spec, dtype))
        conn.send(("ready", d.m.vocab))
        while True:
            msg = conn.recv()
            if msg[0] == "stop":
                return
            if msg[0] == "prefill":
                d.prefill(msg[1])
                conn.send(("ok",))
            elif msg[0] == "draft":
                conn.send(("drafts", d.draft(msg[1], msg[2])))
            elif msg[0] == "verdict":
                d.verdict(msg[1])
            elif msg[0] == "pre":
                conn.send(d.pre_draft())
            else:
                raise ValueError(f"drafter: unknown message {msg[0]!r}")
    except (EOFError, KeyboardInterrupt):
        return
    except BaseException:
        _report(conn)


def _report(conn) -> None:
    try:
        conn.send(("error", traceback.format_exc()))
    except (OSError, ValueError):
        pass


# -- the parent ------------------------------------------------------------------------------

class WorkerError(RuntimeError):
    """A worker failed (its traceback is the message) or stopped answering."""


class Pipeline:
    """Two worker processes; use as a context manager (they are stopped on every exit)."""

    def __init__(self, cfg: PipelineConfig) -> None:
        if cfg.gamma < 1:
            raise ValueError(f"gamma={cfg.gamma}: the pipeline drafts at least one token")
        self.cfg = cfg
        self._procs: list[mp.Process] = []
        ctx = mp.get_context("spawn")  # a fresh interpreter: no inherited torch threads
        self.t, t_child = ctx.Pipe()
        self.d, d_child = ctx.Pipe()
        for target, conn, spec, core in ((_target_worker, t_child, cfg.target, cfg.target_core),
                                         (_draft_worker, d_child, cfg.draft, cfg.draft_core)):
            p = ctx.Process(target=target, args=(conn, spec, cfg.dtype, core, cfg.threads), daemon=True)
            p.start()
            conn.close()
            self._procs.append(p)
        try:
            vt = self._recv(self.t, "ready")[1]
            vd = self._recv(self.d, "ready")[1]
            if vt != vd:
                raise WorkerError(f"target vocabulary {vt} != drafter vocabulary {vd}")
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> "Pipeline":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for conn in (self.t, self.d):
            try:
                conn.send(("stop",))
            except (OSError, ValueError, BrokenPipeError):
                pass
        for p in self._procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
                p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join()
        for conn in (self.t, self.d):
            conn.close()
        self._procs.clear()

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs]

    def _recv(self, conn, want: str | tuple[str, ...]):
        if not conn.poll(TIMEOUT_S):
            raise WorkerError(f"no answer in {TIMEOUT_S:.0f} s")
        try:
            msg = conn.recv()
        except EOFError:
            raise WorkerError("a worker exited unexpectedly") from None
        if msg[0] == "error":
            raise WorkerError(msg[1])
        if msg[0] not in ((want,) if isinstance(want, str) else want):
            raise WorkerError(f"expected {want!r}, got {msg[0]!r}")
        return msg

    def generate(self, prompt: list[int], max_new_tokens: int, stops: frozenset[int] = frozenset(),
                 gamma: int | None = None, overlap: bool | None = None) -> PromptRun:
        """Greedy speculative decoding of one prompt (batch 1), `gamma` drafts per round and
        pre-drafting or not (defaults: the config's). Both are the parent's side of the
        protocol only, so one pair of workers serves every mode (each prompt starts afresh)."""
        g = self.cfg.gamma if gamma is None else gamma
        pre = self.cfg.overlap if overlap is None else overlap
        if g < 1:
            raise ValueError(f"gamma={g}: the pipeline drafts at least one token")
        t0 = time.perf_counter()
        self.t.send(("prefill", list(prompt)))
        self.d.send(("prefill", list(prompt)))  # both prefill at once, on their own cores
        pending = self._recv(self.t, "first")[1]
        self._recv(self.d, "ok")
        prefill_s = time.perf_counter() - t0
        out = [pending]
        rounds = accepted = ready_rounds = 0
        ready: list[int] | None = None
        while len(out) < max_new_tokens and pending not in stops:
            if ready is None:
                self.d.send(("draft", pending, g))
                drafts = self._recv(self.d, "drafts")[1]
            else:
                drafts, ready_rounds = ready, ready_rounds + 1
            self.t.send(("verify", [pending] + drafts))
            if pre:
                self.d.send(("pre",))
            _, k, bonus = self._recv(self.t, "verdict")
            self.d.send(("verdict", k, bonus))
            if pre:
                msg = self._recv(self.d, ("ready", "rolled"))
                ready = msg[1] if msg[0] == "ready" else None
            new = drafts[:k] + [bonus]
            rounds += 1
            accepted += k
            for tok in new:
                out.append(tok)
                if tok in stops or len(out) >= max_new_tokens:
                    break
            pending = bonus
            if out[-1] in stops:
                break
        # a round pre-drafted past the end is dropped: the next prefill resets the drafter
        return PromptRun(out[:max_new_tokens], time.perf_counter() - t0, prefill_s, rounds,
                         accepted, ready_rounds)


def run_pipeline(cfg: PipelineConfig, prompts: list[list[int]], max_new_tokens: int,
                 stops: frozenset[int] = frozenset(), warmup: bool = True) -> PipelineResult:
    """Decode every prompt through a fresh pipeline; `warmup` first decodes the first prompt
    once untimed (first-call costs: allocator, kernels)."""
    res = PipelineResult(cfg)
    with Pipeline(cfg) as pipe:
        if warmup and prompts:
            pipe.generate(prompts[0], min(max_new_tokens, 8), stops)
        for p in prompts:
            res.runs.append(pipe.generate(p, max_new_tokens, stops))
    return res
