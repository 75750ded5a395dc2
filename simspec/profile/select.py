"""`profile = "auto"`: of the profiles shipped for a model (`profiles/<machine-slug>/<name>.parquet`),
the one captured on this machine, else the nearest; and the check that a profile fits a machine.

Several profiles of one model may ship, one per processor family the project runs on; every
user runs on hardware other than some capture's, so the choice is made from the sidecars'
machine identities (simspec.machine), and said out loud. Torch-free.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from simspec import machine
from simspec.errors import InputError

AUTO = "auto"
_RANK = {"same": 0, "similar": 1, "different": 2}


@dataclass(frozen=True)
class Choice:
    path: Path
    captured: dict        # the profile's machine identity
    verdict: machine.Verdict
    calibrated: bool
    date: float  # the capture's (or calibration's) time, for the newest-first tie-break

    def note(self, here: dict) -> str:
        how = "calibrated to" if self.calibrated else "captured on"
        fit = {"same": "this machine", "similar": "a machine like this one",
               "different": "ANOTHER machine"}[self.verdict.level]
        return f"profile {self.path} ({how} {machine.label(self.captured)}: {fit}, {machine.label(here)})"


def roots(file: str | Path | None) -> list[Path]:
    """profiles/ folders to search: beside the file and its parents, the CWD's, the repo's."""
    out: list[Path] = []
    starts = [Path(file).resolve().parent] if file else []
    starts += [Path.cwd(), Path(__file__).resolve().parents[2]]
    for start in starts:
        for d in [start, *start.parents]:
            cand = d / "profiles"
            if cand.is_dir() and cand.resolve() not in [o.resolve() for o in out]:
                out.append(cand)
    return out


def sidecar(path: Path) -> dict:
    try:
        return json.loads(path.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return {}


def choose(name: str, file: str | Path | None, key: str, here: dict | None = None) -> Choice:
    """The best profile named `<name>.parquet` under the profiles/ folders for this machine."""
    here = here or machine.here()
    cands = []
    for root in roots(file):
        for p in sorted(root.glob(f"*/{name}.parquet")) + sorted(root.glob(f"{name}.parquet")):
            meta = sidecar(p)
            captured = machine.from_sidecar(meta)
            v = machine.compare(captured, here)
            cands.append(Choice(p, captured, v, "calibrated" in meta, _date_key(meta.get("date"))))
    if not cands:
        raise InputError(str(file) if file else None, key,
                         f'"auto": no profile {name}.parquet under {", ".join(map(str, roots(file))) or "any profiles/ folder"}')
    # same machine first; then a full capture before a calibrated one; then the newest
    return min(cands, key=lambda c: (_RANK[c.verdict.level], c.calibrated, -c.date))


def _date_key(date: str | None) -> float:
    import datetime as dt

    try:
        return dt.datetime.fromisoformat(str(date).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def fit(path: Path, here: dict | None = None) -> tuple[dict, machine.Verdict]:
    """(the profile's machine, its verdict against `here`, this machine by default)."""
    captured = machine.from_sidecar(sidecar(Path(path)))
    return captured, machine.compare(captured, here or machine.here())


def device_mismatch(path: Path, device: str, title: str) -> str | None:
    """A line when the profile was captured on other hardware than the catalog device named
    `device` (its title names the hardware), None when they agree."""
    captured = machine.from_sidecar(sidecar(Path(path)))
    if machine.matches_title(captured, title):
        return None
    return f"{path} was captured on {machine.label(captured)}, but the scenario runs it on {device} ({title})"


def mismatch_line(path: Path, captured: dict, here: dict, verdict: machine.Verdict) -> str:
    return (f"{path} was captured on {machine.label(captured)}, not this machine "
            f"({machine.label(here)}: {'; '.join(verdict.reasons)})")


def profiled_model(path: Path) -> str | None:
    """The model a profile's sidecar says it measured (None when it does not say)."""
    meta = sidecar(Path(path))
    m = meta.get("model") if isinstance(meta, dict) else None
    return m if isinstance(m, str) and m.strip() else None


def names_model(name: str, model: str) -> bool:
    """Whether a scenario's `name` can mean the profiled `model`: the same name, or it with a
    suffix (qwen2.5-coder-1.5b-bf16), or an HF id whose last part is (Qwen/Qwen2.5-Coder-0.5B)."""
    n, m = name.strip().lower(), model.strip().lower()
    n = n.rsplit("/", 1)[-1]
    return n == m or n.startswith(m + "-") or n.startswith(m + "_") or n.startswith(m + ".")


def model_mismatch(path: Path, name: str | None) -> str | None:
    """A line when the profile at `path` measured another model than `name`, else None."""
    model = profiled_model(path)
    if not name or model is None or names_model(name, model):
        return None
    return f"{path} profiles {model!r}, not {name!r}: its costs price {name!r} as {model!r}"
