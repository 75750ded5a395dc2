"""A per-position list from a paper or a report (TOML or JSON) -> per-position acceptance.

    source = "EAGLE-3 (Li et al. 2025), table 3, LLaMA-3.1-8B, MT-bench"   # required: the citation
    per_position = [0.80, 0.76, 0.72]    # conditional: P(token k accepted | tokens before it were)
    # or
    survival = [0.80, 0.61, 0.44]        # unconditional: P(first k accepted), non-increasing

Exactly one of the two lists. Papers print either (vLLM's log line "Per-position acceptance
rate" is the unconditional one: accepted-at-position / drafts), so the key says which.
"""

from __future__ import annotations

import json
import math
import tomllib
from typing import Any

from simspec import limits
from simspec.errors import InputError
from simspec.imported.record import Acceptance

_KEYS = ("source", "per_position", "survival", "note")


def _parse(text: str, file: str, as_json: bool) -> dict[str, Any]:
    try:
        if as_json:
            def pairs(items):
                out = {}
                for k, v in items:
                    if k in out:
                        raise ValueError(f"key {k!r} is given twice")
                    out[k] = v
                return out

            def no_constant(name):
                raise ValueError(f"{name} is not a number JSON allows")

            doc = json.loads(text, object_pairs_hook=pairs, parse_constant=no_constant)
        else:
            doc = tomllib.loads(text)
    except RecursionError:
        raise InputError(file, None, "nested too deeply") from None
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        hint = " (it looks like a vLLM metrics scrape: try --format vllm)" if "vllm:spec_decode" in text else \
            " (it looks like an SGLang log: try --format sglang)" if "accept len" in text else ""
        raise InputError(file, None, f"not valid {'JSON' if as_json else 'TOML'}: {str(exc)[:200]}{hint}") from None
    if not isinstance(doc, dict):
        raise InputError(file, None, "expected a table with `source` and `per_position` (or `survival`)")
    return doc


def read(text: str, file: str, source: str | None = None) -> tuple[Acceptance, str]:
    """(the acceptance, its citation): the file's `source`, or the --source text when it has none."""
    as_json = file.lower().endswith(".json") or text.lstrip().startswith("{")
    doc = _parse(text, file, as_json)
    for k in doc:
        if k not in _KEYS:
            raise InputError(file, str(k), f"unknown key (expected {', '.join(_KEYS)})")
    given = [k for k in ("per_position", "survival") if k in doc]
    if len(given) != 1:
        raise InputError(file, "per_position", "give exactly one of `per_position` (conditional) or `survival` "
                                               "(unconditional)" + (f" (got {', '.join(given)})" if given else ""))
    key = given[0]
    cite = doc.get("source", source)
    if "source" in doc and (not isinstance(cite, str) or not cite.strip()):
        raise InputError(file, "source", "must be a non-empty citation string")
    if cite is None or not str(cite).strip():
        raise InputError(file, "source", "missing: a per-position list needs its citation (or --source)")
    values = doc[key]
    if not isinstance(values, list) or not values:
        raise InputError(file, key, "must be a non-empty list of probabilities")
    limits.check(len(values), limits.GAMMA, file, key)
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not 0 <= v <= 1:
            raise InputError(file, f"{key}[{i}]", f"must be a number in [0, 1] (got {v!r})")
    values = [float(v) for v in values]
    if key == "survival":
        for i in range(1, len(values)):
            if values[i] > values[i - 1]:
                raise InputError(file, f"survival[{i}]", f"{values[i]:g} > survival[{i - 1}] = {values[i - 1]:g}: "
                                                         "P(first k accepted) cannot grow with k")
        rates, prev = [], 1.0
        for s in values:
            rates.append(s / prev)
            if s == 0:
                break
            prev = s
    else:
        rates = values
        if 0.0 in rates:
            rates = rates[:rates.index(0.0) + 1]
    surv, s = [], 1.0
    for a in rates:
        s *= a
        surv.append(s)
    return Acceptance(rates, len(values), sum(surv), {"positions": len(values), "given": key}), str(cite)
