"""A validation's rows, one per config, typed by the live run that measures it:

    batch-1    simspec's live engine, batch 1 (simspec.live.runner)
    serving    continuous batching (simspec.live.serving)
    pipeline   drafter and target in two processes (simspec.live.pipeline)

A row holds the simulator's figures and, once run live, the measured ones: two figure sets
whose fields are the figures. `record()` flattens it to the table's columns (the config's
description, `predicted_<figure>`, `measured_<figure>`, `outputs_equal_trace`) in the order
the shipped tables have; errors are compare.error_pct's, the one formula. Torch-free: the
live half fills `measured` (simspec.validation.live).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

from simspec.errors import InputError
from simspec.validation.compare import SERVING_METRICS, SUMMARY_KEYS, error_pct
from simspec.validation.plan import LiveConfig

EQUAL = "outputs_equal_trace"  # live outputs equal to the traced ones: a count, not a figure
DYNAMICS_COLUMNS = ("tok_s", "ttft_p50_s", "tpot_p50_s", "e2e_p50_s")  # the table's part (b); all in the JSON


@dataclass(frozen=True)
class Figures:
    """A figure set; every set has throughput and tokens per round."""

    tok_s: float
    tokens_per_round: float

    def columns(self, prefix: str) -> dict[str, Any]:
        return {(k if k == EQUAL else f"{prefix}_{k}"): v for k, v in asdict(self).items()}

    @classmethod
    def from_record(cls, rec: dict, where: str, label: str) -> "Figures":
        """The measured set of an earlier result's row (its JSON record)."""
        cols = {f.name: (f.name if f.name == EQUAL else f"measured_{f.name}") for f in fields(cls)}
        missing = [c for c in cols.values() if c not in rec]
        if missing:
            raise InputError(where, "--measured", f"its row for config {label!r} has no {missing[0]}")
        return cls(**{name: rec[c] for name, c in cols.items()})


PHASES = ("prefill", "draft", "verify")  # the phases both sides time


@dataclass(frozen=True)
class Batch1Predicted(Figures):
    prefill_s: float
    draft_s: float
    verify_s: float

    @classmethod
    def from_summary(cls, s: dict) -> "Batch1Predicted":
        return cls(s["throughput_tok_s"], s["mean_tokens_per_round"], *(s[f"phase_{k}_s"] for k in PHASES))


@dataclass(frozen=True)
class Batch1Measured(Figures):
    new_tokens: int
    prefill_s: float
    draft_s: float
    verify_s: float
    other_s: float  # the live engine's: acceptance, KV commit, Python
    wall_s: float
    cpu_s: float
    outputs_equal_trace: int


@dataclass(frozen=True)
class ServingFigures(Figures):
    """The summary metrics both sides compute (SUMMARY_KEYS' order), then the mean batch."""

    ttft_p50_s: float
    ttft_p99_s: float
    tpot_p50_s: float
    tpot_p99_s: float
    e2e_p50_s: float
    e2e_p99_s: float
    mean_batch: float

    def columns(self, prefix: str) -> dict[str, Any]:
        d = asdict(self)
        head = {f"{prefix}_{m}": d.pop(m) for m in SERVING_METRICS}
        return head | {(k if k == EQUAL else f"{prefix}_{k}"): v for k, v in d.items()}

    @staticmethod
    def summary(s: dict, iterations: list) -> dict:
        """The shared figures from a summary and its iteration log ((kind, start, seconds, batch))."""
        rounds = [it[3] for it in iterations if it[0] == "round"]
        return {m: s[k] for m, k in SUMMARY_KEYS.items()} | {
            "mean_batch": sum(rounds) / len(rounds) if rounds else float("nan")}


@dataclass(frozen=True)
class ServingPredicted(ServingFigures):
    prefill_s: float
    draft_s: float
    verify_s: float

    @classmethod
    def from_summary(cls, s: dict, iterations: list) -> "ServingPredicted":
        return cls(**cls.summary(s, iterations), **{f"{k}_s": s[f"phase_{k}_s"] for k in PHASES})


@dataclass(frozen=True)
class ServingMeasured(ServingFigures):
    requests: int
    output_tokens: int
    elapsed_s: float
    prefill_s: float
    draft_s: float
    verify_s: float
    other_s: float
    wall_s: float
    cpu_s: float
    outputs_equal_trace: int


@dataclass(frozen=True)
class PipelineMeasured(Figures):
    new_tokens: int
    prefill_s: float   # both processes' prefills, side by side, summed over prompts
    rounds: int
    ready_rounds: int  # overlap: rounds whose drafts were pre-drafted in time
    wall_s: float
    outputs_equal_trace: int


@dataclass(frozen=True)
class Timeline:
    """A serving run's per-request arrivals and iterations [kind, start, seconds, batch]; a live
    run's also per request the tokens it kept in each of its rounds (what a replay of the serving
    policy on its times needs: simspec.validation.replay)."""

    arrivals: list[float]
    iterations: list[list]
    kept: list[list[int]] | None = None


@dataclass
class Row:
    """One config: predicted figures, and the measured ones once it ran live."""

    config: LiveConfig
    predicted: Figures
    measured: Figures | None = None
    rounds: dict | None = None  # simspec.validation.rounds' record of its repeated live runs

    kind: ClassVar[str]
    MEASURED: ClassVar[type[Figures]]  # its measured figure set

    @property
    def label(self) -> str:
        return self.config.label()

    @property
    def error_pct(self) -> float:
        """Throughput: predicted against measured."""
        if self.measured is None:
            raise ValueError(f"{self.label}: not measured")
        return error_pct(self.predicted.tok_s, self.measured.tok_s)

    def describe(self) -> dict[str, Any]:
        c = self.config
        return {"config": c.label(), "dtype": c.dtype, "draft": c.draft, "gamma": c.gamma,
                "tree": "-".join(map(str, c.tree)) if c.tree else "", "vocab": c.vocab or ""}

    def record(self) -> dict[str, Any]:
        """The table's columns (errors are added over the whole table: compare.error_table)."""
        rec = self.describe() | self.predicted.columns("predicted")
        if self.measured is None:
            return rec
        rec |= self.measured.columns("measured")
        if self.rounds is not None:
            r = self.rounds
            rec |= {"rounds": r["rounds"], "rounds_method": r["method"],
                    "noise_tok_s_pct": r["split_half_pct"]["tok_s"],
                    "measured_tok_s_p10": r["spread"]["tok_s"]["p10"],
                    "measured_tok_s_p90": r["spread"]["tok_s"]["p90"]}
        return rec


@dataclass
class Batch1Row(Row):
    kind: ClassVar[str] = "batch-1"
    MEASURED: ClassVar[type] = Batch1Measured


@dataclass
class ServingRow(Row):
    sim: Timeline | None = None
    live: Timeline | None = None
    decomposition: dict | None = None  # simspec.validation.decompose's, once measured

    kind: ClassVar[str] = "serving"
    MEASURED: ClassVar[type] = ServingMeasured

    def describe(self) -> dict[str, Any]:
        c = self.config
        return super().describe() | {
            "max_batch": c.max_batch, "arrival": c.arrival, "concurrency": c.users if c.arrival == "closed" else "",
            "rate": c.rate if c.rate is not None else "", "requests": c.requests,
            "kv_capacity_tokens": c.kv_capacity_tokens or "", "seed": (c.seed or 0) if c.arrival == "poisson" else ""}

    def record(self) -> dict[str, Any]:
        rec = super().record()
        d = self.decomposition
        if d is not None:  # the decomposed error's headline columns (the JSON's block has all of it)
            rec["acceptance_error_pct"] = d["acceptance"]["error_pct"]
            for m in DYNAMICS_COLUMNS:
                rec[f"dynamics_{m}_error_pct"] = d["dynamics"][m]
            for p in ("prefill", "round"):
                rec[f"cost_{p}_error_pct"] = d["cost"]["phase"].get(p, {}).get("error_pct", float("nan"))
            for m in ("ttft_p50_s", "tpot_p50_s"):
                rec[f"noise_{m}_pct"] = d["end_to_end"][m]["noise_pct"]
        return rec

    def timelines(self) -> dict[str, Any]:
        """The JSON's timelines entry: live and simulated arrivals and iterations (None: not run),
        the live run's tokens kept per request per round."""
        out = {f"{side}_{what}": getattr(t, what) if t is not None else None
               for what in ("arrivals", "iterations") for side, t in (("live", self.live), ("sim", self.sim))}
        out["live_kept"] = self.live.kept if self.live is not None else None
        return out


@dataclass
class PipelineRow(Row):
    kind: ClassVar[str] = "pipeline"
    MEASURED: ClassVar[type] = PipelineMeasured

    def describe(self) -> dict[str, Any]:
        c = self.config
        return {"config": c.label(), "dtype": c.dtype, "draft": c.draft, "gamma": c.gamma, "overlap": c.overlap}
