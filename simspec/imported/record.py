"""The acceptance file (`simspec acceptance import --out X.json`) and the arithmetic behind it.

Counts in, simspec's per-position model out. `drafts` rounds were drafted; `reached[k]` of
them had at least k+1 draft tokens accepted (vLLM's accepted-tokens-per-position counter for
position k counts exactly those). Then

    S_{k+1} = reached[k] / drafts                      (survival: P(at least k+1 accepted))
    a_{k+1} = reached[k] / reached[k-1],  reached[-1] = drafts   (conditional, per position)

and `per_position = [a_1, a_2, ...]` is what a scenario's `acceptance = { per_position = [...] }`
means (simspec.sim.acceptance.chain_survival multiplies it back into S). The list stops at the
first position nothing reached (its rate is 0, and the simulator reuses the last rate deeper,
so every deeper position stays 0); E[tokens per round] = 1 + sum_k S_k = 1 + accepted / drafts.

The file is JSON: `kind`, `format_version`, `per_position` (null when only a mean is known),
`survival`, `gamma`, `mean_accepted_per_round`, `mean_tokens_per_round`, `mean_only`,
`counts`, `source` (a citation), `answers` (what such acceptance can answer) and `provenance`
(command, input file and its sha256, format, date, simspec version, notes). `load_rates` is what
a scenario's `acceptance = { imported = "X.json" }` reads: every figure is checked against the
others, so a hand-edited file that contradicts itself is refused.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from simspec import limits
from simspec.errors import InputError

KIND = "simspec-acceptance"
FORMAT_VERSION = 1

ANSWERS = (
    "Per-position chain acceptance as the engine's counters hold it, replayed as simspec's per-position "
    "model: it answers which draft length K (up to gamma) at which batch size on which hardware, with the "
    "drafter's cost from a profile, dims or the roofline. It cannot answer per-token questions (no token "
    "ids or ranks: no trace replay, no per-prompt spread), tree shapes beyond what the counters hold "
    "(the accepted path's positions only: a tree needs rank_probs), or anything rank-dependent (a trimmed "
    "vocabulary, another drafter). Rounds are drawn position-wise i.i.d. from one survival curve: the "
    "variation of acceptance with the text, the position in the sequence and the batch is averaged away, "
    "and K beyond gamma reuses the last rate (an extrapolation)."
)

_KEYS = {"kind", "format_version", "per_position", "survival", "gamma", "mean_accepted_per_round",
         "mean_tokens_per_round", "mean_only", "counts", "source", "answers", "provenance"}


@dataclass
class Acceptance:
    """What an import found; `per_position` is None when the source holds only a mean."""

    per_position: list[float] | None
    gamma: int | None
    mean_accepted: float
    counts: dict[str, Any] | None
    notes: list[str] = field(default_factory=list)

    @property
    def survival(self) -> list[float] | None:
        if self.per_position is None:
            return None
        out, s = [], 1.0
        for a in self.per_position:
            s *= a
            out.append(s)
        if out and out[-1] == 0:  # the list stopped where nothing was reached: deeper is 0 too
            out += [0.0] * ((self.gamma or 0) - len(out))
        return out

    def document(self, source: str, provenance: dict[str, Any]) -> dict[str, Any]:
        return {
            "kind": KIND,
            "format_version": FORMAT_VERSION,
            "per_position": self.per_position,
            "survival": self.survival,
            "gamma": self.gamma,
            "mean_accepted_per_round": self.mean_accepted,
            "mean_tokens_per_round": 1.0 + self.mean_accepted,
            "mean_only": self.per_position is None,
            "counts": self.counts,
            "source": source,
            "answers": ANSWERS if self.per_position is not None else (
                "Only a mean accepted length: per-position acceptance cannot be derived from a mean, so a "
                "scenario cannot use this file (`imported` refuses it). " + ANSWERS),
            "provenance": {**provenance, "notes": self.notes},
        }


def from_counts(drafts: int, reached: list[int], gamma: int | None = None) -> Acceptance:
    """Per-position acceptance from `drafts` rounds and `reached[k]` (rounds with >= k+1
    accepted); the caller has checked drafts > 0 and that `reached` is non-increasing."""
    rates: list[float] = []
    prev = drafts
    for c in reached:
        rates.append(c / prev)
        if c == 0:
            break
        prev = c
    g = gamma if gamma is not None else len(reached)
    counts = {"drafts": drafts, "accepted_per_position": list(reached)}
    return Acceptance(rates, g, sum(reached) / drafts, counts)


# -- reading the file (a scenario's `acceptance = { imported = ... }`) ----------------------

def _strict_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"key {k!r} is given twice")
        out[k] = v
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _prob(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and 0 <= v <= 1


def read_document(path: Path) -> dict[str, Any]:
    """The acceptance file as a mapping, every figure checked; one InputError naming the file,
    the key and the reason otherwise."""
    f = str(path)
    data = limits.read_bytes(path, limits.JSON_BYTES)
    try:
        doc = json.loads(data.decode("utf-8"), object_pairs_hook=_strict_pairs, parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise InputError(f, None, "not a text file") from None
    except RecursionError:
        raise InputError(f, None, "not valid JSON: nested too deeply") from None
    except ValueError as exc:
        raise InputError(f, None, f"not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InputError(f, None, "not an acceptance file (expected a JSON object)")
    if doc.get("kind") != KIND:
        raise InputError(f, "kind", f"not an acceptance file (kind is {doc.get('kind')!r}, expected {KIND!r}; "
                                    "make one with `simspec acceptance import`)")
    extra = sorted(set(doc) - _KEYS)
    if extra:
        raise InputError(f, extra[0], "unknown key")
    if doc.get("format_version") != FORMAT_VERSION:
        raise InputError(f, "format_version",
                         f"{doc.get('format_version')!r} is not a version this simspec reads ({FORMAT_VERSION})")
    rates = doc.get("per_position")
    if rates is None or doc.get("mean_only"):
        raise InputError(f, "per_position", "this file holds only a mean accepted length: per-position acceptance "
                                            "cannot be derived from a mean (import per-round accept lengths or "
                                            "per-position counters instead)")
    if not isinstance(rates, list) or not rates:
        raise InputError(f, "per_position", "must be a non-empty list of probabilities")
    limits.check(len(rates), limits.GAMMA, f, "per_position")
    for i, a in enumerate(rates):
        if not _prob(a):
            raise InputError(f, f"per_position[{i}]", f"must be a number in [0, 1] (got {a!r})")
    _agrees(doc, rates, f)
    return doc


def _agrees(doc: dict[str, Any], rates: list[float], f: str) -> None:
    """survival, gamma and the means, when given, must say what per_position says."""
    surv, s = [], 1.0
    for a in rates:
        s *= a
        surv.append(s)
    gamma = doc.get("gamma")
    if gamma is not None:
        if not isinstance(gamma, int) or isinstance(gamma, bool) or gamma < 1:
            raise InputError(f, "gamma", f"must be a whole number >= 1 (got {gamma!r})")
        limits.check(gamma, limits.GAMMA, f, "gamma")
        if gamma < len(rates):
            raise InputError(f, "gamma", f"{gamma} is fewer than the {len(rates)} positions of per_position")
        surv += [0.0] * (gamma - len(surv)) if surv[-1] == 0 else []
    given = doc.get("survival")
    if given is not None:
        if not isinstance(given, list) or any(not _prob(x) for x in given):
            raise InputError(f, "survival", "must be a list of numbers in [0, 1]")
        if len(given) != len(surv) or any(abs(x - y) > 1e-9 for x, y in zip(given, surv)):
            raise InputError(f, "survival", "does not agree with per_position (S_k = a_1 x ... x a_k)")
    mean = sum(surv)
    for key, want in (("mean_accepted_per_round", mean), ("mean_tokens_per_round", 1 + mean)):
        v = doc.get(key)
        if v is None:
            continue
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
            raise InputError(f, key, f"must be a finite number (got {v!r})")
        if abs(v - want) > 1e-6 * max(1.0, want):
            raise InputError(f, key, f"{v:g} does not agree with per_position ({want:.6g})")


@lru_cache(maxsize=64)
def _rates(path: str, stamp: tuple[int, int, int]) -> tuple[float, ...]:
    return tuple(float(a) for a in read_document(Path(path))["per_position"])


def load_rates(path: str | os.PathLike) -> list[float]:
    """per_position of an acceptance file (read once per version of the file: a study's
    trials each validate a scenario that names it)."""
    p = limits.regular_file(path)
    st = p.stat()
    return list(_rates(str(p.resolve()), (st.st_mtime_ns, st.st_size, st.st_ino)))
