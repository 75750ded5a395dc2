"""A trace's sidecar must agree with its Parquet: what the JSON claims is what a reader believes
(the target a validation prices, the prompts a study replays), so a claim the table contradicts
is refused with one line naming the sidecar, the key and both values.

A key the sidecar does not hold is not checked (hand-made and older traces carry fewer), but a
trace without any sidecar is refused: nothing would say which model, dataset or vocabulary it is.
"""

from __future__ import annotations

import glob
import re
from pathlib import Path
from typing import Any

import numpy as np

from simspec.errors import InputError

KIND = "simspec-trace"
_EXIT = re.compile(r"^exit(\d+)(?:/k\d+)?$")


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _known_dims(name: str) -> tuple[int, int] | None:
    """(layers, vocab) of a model simspec knows by name: simspec/devices/models.toml, else the
    dims in the sidecar of a profile of it shipped in the repository's profiles/; None if unknown."""
    import json

    try:
        from simspec.devices import arch

        a = arch.known().get(name)
        if isinstance(a, dict):
            return int(a["layers"]), int(a["vocab"])
        shipped = Path(__file__).resolve().parents[2] / "profiles"
        for side in sorted(shipped.glob(f"*/{glob.escape(name)}-*.json")) if shipped.is_dir() else []:
            meta = json.loads(side.read_text())
            dims = meta.get("dims") if isinstance(meta, dict) and meta.get("model") == name else None
            if isinstance(dims, dict) and _int(dims.get("layers")) and _int(dims.get("vocab")):
                return dims["layers"], dims["vocab"]
    except (ImportError, OSError, ValueError, KeyError, TypeError):  # a convenience, never a reason to fail
        return None
    return None


def check_sidecar(side: Path, meta: dict, n_seq: int, output_len: np.ndarray, tokens: np.ndarray,
                  rank_names: list[str], beta_temps: set[float]) -> None:
    """Refuse a sidecar whose kind, complete, prompts, max_new_tokens, target, sequences,
    positions, vocab, layers or drafters contradict the table it describes."""
    f = str(side)

    def bad(key: str, reason: str) -> InputError:
        return InputError(f, key, reason)

    if "kind" in meta and meta["kind"] != KIND:
        raise bad("kind", f"{meta['kind']!r}, but the Parquet beside it is a trace ({KIND!r})")
    complete = meta.get("complete")
    if "complete" in meta and not isinstance(complete, bool):
        raise bad("complete", f"must be true or false, not {complete!r}")
    for key in ("prompts", "max_new_tokens", "sequences", "positions", "vocab", "layers"):
        if key in meta and (not _int(meta[key]) or meta[key] < 1):
            raise bad(key, f"must be a whole number >= 1, not {meta[key]!r}")
    if "sequences" in meta and meta["sequences"] != n_seq:
        raise bad("sequences", f"says {meta['sequences']} but the Parquet holds {n_seq} sequences")
    if "positions" in meta and meta["positions"] != int(output_len.sum()):
        raise bad("positions", f"says {meta['positions']} but the Parquet holds {int(output_len.sum())} positions")
    if "prompts" in meta:
        p = meta["prompts"]
        if complete is False and n_seq >= p:
            raise bad("complete", f"false (a stopped capture) but the Parquet holds all {n_seq} of prompts = {p}")
        if complete is not False and n_seq != p:
            raise bad("prompts", f"says {p} but the Parquet holds {n_seq} sequences"
                      + (" (a stopped capture says complete = false)" if n_seq < p else ""))
    longest = int(output_len.max())
    if "max_new_tokens" in meta and longest > meta["max_new_tokens"]:
        raise bad("max_new_tokens", f"says {meta['max_new_tokens']} but a sequence in the Parquet has {longest} output tokens")
    if "target" in meta and (not isinstance(meta["target"], str) or not meta["target"].strip()):
        raise bad("target", f"must name the traced model, not {meta['target']!r}")
    top = int(tokens.max()) if len(tokens) else -1
    exits = [int(m.group(1)) for m in map(_EXIT.match, rank_names) if m]
    known = _known_dims(meta["target"]) if isinstance(meta.get("target"), str) else None
    if known is not None:
        layers, vocab = known
        t = meta["target"]
        if "vocab" in meta and meta["vocab"] != vocab:
            raise bad("target", f"{t!r} has a vocabulary of {vocab}, but the sidecar's vocab says {meta['vocab']}")
        if "layers" in meta and meta["layers"] != layers:
            raise bad("target", f"{t!r} has {layers} layers, but the sidecar's layers says {meta['layers']}")
        if top >= vocab:
            raise bad("target", f"{t!r} has a vocabulary of {vocab}, but the Parquet holds token id {top}")
        if exits and max(exits) >= layers:
            raise bad("target", f"{t!r} has {layers} layers, but the Parquet has a column exit{max(exits)}")
    if "vocab" in meta and top >= meta["vocab"]:
        raise bad("vocab", f"says {meta['vocab']} but the Parquet holds token id {top}")
    if "layers" in meta and exits and max(exits) >= meta["layers"]:
        raise bad("layers", f"says {meta['layers']} but the Parquet has a column exit{max(exits)}")
    if "drafters" in meta:
        listed = meta["drafters"]
        if not isinstance(listed, list) or not all(isinstance(d, str) for d in listed):
            raise bad("drafters", f"must be a list of column names, not {listed!r}")
        if set(listed) != set(rank_names):
            extra = sorted(set(listed) - set(rank_names))
            missing = sorted(set(rank_names) - set(listed))
            what = f"lists {extra[0]!r}, which has no rank column in the Parquet" if extra else \
                f"does not list {missing[0]!r}, whose rank column is in the Parquet"
            raise bad("drafters", what)
    if "temperatures" in meta and beta_temps:
        temps = meta["temperatures"]
        ok = isinstance(temps, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in temps)
        if not ok:
            raise bad("temperatures", f"must be a list of numbers, not {temps!r}")
        stray = sorted(t for t in beta_temps if not any(abs(t - float(x)) < 1e-9 for x in temps))
        if stray:
            raise bad("temperatures", f"does not list {stray[0]:g}, whose beta columns are in the Parquet")
