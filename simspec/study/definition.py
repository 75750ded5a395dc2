"""The question a study asks, kept whole: what an empty [search] means, when the space is one
point, and the definition stored with the trials so that a rerun resumes only the same question.

- An empty (or absent) `[search]` asks about the scenario as written: its own drafter, draft
  length and exit layer, one point; never plain decoding in its place.
- A space of one point is one simulation (the simulator is deterministic): one trial, not N
  identical ones.
- The definition (search, drafters, variants, objectives, constraints, capacity, the base
  scenario) is stored in the study; a resume whose definition differs is refused, naming what
  changed, because its old trials would be mixed with trials of another question.
"""

from __future__ import annotations

import json
from typing import Any

from simspec import drafters as drafter_kinds
from simspec.errors import InputError
from simspec.study.schema import IntRange, SearchSpec, StudyFile

ATTR = "simspec:definition"


def as_written(sf: StudyFile, base: dict[str, Any], where: str) -> StudyFile:
    """An empty [search] -> the one point of the scenario as written (its drafter and shape)."""
    if sf.search.model_fields_set:
        return sf
    from simspec.config import parse_scenario

    try:
        sc = parse_scenario(base, where)
    except InputError as exc:
        raise InputError(where, "scenario", f"gives an invalid scenario: {exc.key}: {exc.reason}") from None
    kind = sc.draft.kind if sc.draft is not None else drafter_kinds.NONE
    if sc.gamma == 0 or kind == drafter_kinds.NONE:
        return sf.model_copy(update={"search": SearchSpec(gamma=[0])})
    if sc.speculation.tree is not None:
        raise InputError(where, "search", "is empty, and the scenario as written drafts a tree: name the "
                                          "knobs to search (e.g. tree = [\"...\"], gamma = [...])")
    search: dict[str, Any] = {"gamma": [sc.gamma], "drafter": [kind]}
    if drafter_kinds.get(kind).arg == "layer":
        search["exit_layer"] = [sc.draft.exit_layer]
    return sf.model_copy(update={"search": SearchSpec(**search)})


def _one(knob) -> bool:
    if knob is None:
        return True
    if isinstance(knob, IntRange):
        return knob.low == knob.high
    return len(set(knob)) <= 1


def one_point(spec) -> bool:
    """Whether the search space holds a single point (every knob fixed)."""
    from simspec.study.knobs import drafter_choices

    s = spec.file.search
    drafting = not (isinstance(s.gamma, IntRange) and s.gamma.high == 0) and not (
        isinstance(s.gamma, list) and set(s.gamma) == {0})
    return (all(_one(getattr(s, k)) for k in ("gamma", "exit_layer", "vocab", "max_batch", "placement", "dtype"))
            and s.tree is None and (not drafting or len(drafter_choices(spec)) <= 1))


# knobs added after studies were stored: left out while unused, so an older run folder of the
# same question still resumes (its stored definition has no such key)
_LATER_KNOBS = ("policy", "policy_params")


def _search(search: SearchSpec) -> dict[str, Any]:
    d = search.model_dump(mode="json")
    for k in _LATER_KNOBS:
        if k in d and not d[k]:
            del d[k]
    return d


def definition(spec, capacity: bool) -> dict[str, Any]:
    """What the trials of this study answer, as plain JSON values."""
    f = spec.file
    d = {
        "search": _search(f.search),
        "drafters": {k: v.model_dump(mode="json", exclude_unset=True) for k, v in f.drafters.items()},
        "variants": f.variants,
        "objectives": f.objectives,
        "constraints": {k: v.model_dump(mode="json", exclude_unset=True) for k, v in f.constraints.items()},
        "capacity": f.capacity.model_dump(mode="json") if capacity and f.capacity is not None else None,
        "scenario": spec.base.model_dump(mode="json", exclude_unset=True),
        "scenario_draft": spec.own_draft,
    }
    return _paths_resolved(json.loads(json.dumps(d, default=str)), spec.where)


FILE_KEYS = ("profile", "trace", "fit")  # the data files a definition names


def _paths_resolved(x: Any, where: str) -> Any:
    """Data paths as the files they resolve to (absolute): the same study run from another
    folder names the same files differently, and is still the same question."""
    from pathlib import Path

    from simspec.config import resolve_data_path

    def resolved(v: str) -> str:
        try:
            return str(Path(resolve_data_path(v, where)).resolve())
        except (OSError, ValueError):  # a name no file system holds: compared as written
            return v

    if isinstance(x, dict):
        return {k: resolved(v) if k in FILE_KEYS and isinstance(v, str) and v != "auto" else _paths_resolved(v, where)
                for k, v in x.items()}
    if isinstance(x, list):
        return [_paths_resolved(v, where) for v in x]
    return x


def changes(stored: Any, current: Any, prefix: str = "", depth: int = 2) -> list[str]:
    """The keys (dotted, `depth` levels at most) whose values differ."""
    if stored == current:
        return []
    if depth == 0 or not isinstance(stored, dict) or not isinstance(current, dict):
        return [prefix or "(everything)"]
    out: list[str] = []
    for k in sorted(set(stored) | set(current), key=str):
        out += changes(stored.get(k), current.get(k), f"{prefix}.{k}" if prefix else str(k), depth - 1)
    return out


def check_stored(spec, study, capacity: bool, where: str) -> dict | None:
    """The definition stored with `study` (None: a new study, or one from before definitions
    were kept); InputError naming the changed keys when it is not this spec's."""
    want = definition(spec, capacity)
    stored = study.user_attrs.get(ATTR)
    if stored is not None and stored != want:
        changed = changes(stored, want)
        n = len(study.get_trials(deepcopy=False))
        raise InputError(spec.where, changed[0],
                         f"differs from the study {study.study_name!r} stored in {where} (changed: "
                         + ", ".join(changed[:6]) + (", ..." if len(changed) > 6 else "")
                         + f"): its {n} trials answer another question; run `simspec study` with --new to "
                         "start over, or give another --out")
    return stored
