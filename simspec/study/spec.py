"""Study files (TOML) -> a validated `StudySpec`: base scenario, search space, objectives, SLOs.

Like scenario files, unknown keys are errors and every error names the study file, the key
and the reason. The base scenario is given inline (`[scenario]`) or by path
(`scenario = "quickstart.toml"`, relative to the study file), optionally with `[patch]`
deep-merged on top and `[workload]` replacing the scenario's workload whole.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from simspec import drafters as drafter_kinds
from simspec.config import Scenario, parse_scenario
from simspec.config.files import PATH_KEYS, read_toml
from simspec.config.patch import deep_merge, one_source
from simspec.config.pydantic_errors import input_error
from simspec.errors import InputError
from simspec.study.schema import (  # noqa: F401  (the study's types, re-exported for callers)
    CapacitySpec, Constraint, DrafterSpec, IntRange, ScheduleSpec, SearchSpec, StudyFile, StudySpec, parse_tree,
)
from simspec.study.definition import as_written
from simspec.study.space import check


def load_study(path: str | Path) -> StudySpec:
    """Read and validate a study file (the search space is checked by `space.check`)."""
    p = Path(path)
    data = read_toml(p)
    try:
        sf = StudyFile.model_validate(data, context={"file": str(p)})
    except ValidationError as exc:
        err = input_error(str(p), exc)
        keyed = any("[key]" in map(str, e.get("loc", ())) for e in exc.errors())
        if err.key and keyed and "Input should be" in err.reason:  # a bad table name inside a keyed section
            err = InputError(err.file, err.key, "unknown section " + err.reason.replace("Input should be", "(should be"). rstrip() + ")" if "Input should be" in err.reason else err.reason)
        raise err from None
    if isinstance(sf.scenario, str):
        ref = Path(sf.scenario)
        sp = ref if ref.is_absolute() else p.parent / ref
        if not sp.exists():
            raise InputError(str(p), "scenario", f"scenario file not found: {sf.scenario}")
        if sp.is_dir():
            raise InputError(str(p), "scenario", f"{sf.scenario!r} is a folder, not a scenario file")
        base = read_toml(sp)
        base = _rebase_paths(base, sp.parent, p.parent)
    else:
        base = dict(sf.scenario)
    base = deep_merge(base, one_source(sf.patch))  # a patched profile replaces a cost, and back
    if sf.workload is not None:
        base["workload"] = dict(sf.workload)
    for sec, v in base.items():  # the search space patches these sections as tables
        if not isinstance(v, dict):
            raise InputError(str(p), f"scenario.{sec}", f"must be a table, not {type(v).__name__}")
    if "target" not in base or "workload" not in base:
        raise InputError(str(p), "scenario", "the base scenario needs [target] and [workload]")
    sf = as_written(_from_trace(sf, p), base, str(p))
    spec = StudySpec(sf, p, _plain(base, str(p)), base.get("draft", {}))
    check(spec)
    return spec


def _plain(base: dict[str, Any], where: str) -> Scenario:
    """The base scenario decoding plainly (no drafter, no tree): what every point changes."""
    speculation = {k: v for k, v in base.get("speculation", {}).items() if k not in ("tree", "policy")}
    plain = {**base, "draft": {"kind": drafter_kinds.NONE}, "speculation": {**speculation, "draft_len": 0}}
    try:
        return parse_scenario(plain, where)
    except InputError as exc:
        raise InputError(where, "scenario", f"gives an invalid scenario: {exc.key}: {exc.reason}") from None


def _rebase_paths(sc: dict, scenario_dir: Path, study_dir: Path) -> dict:
    """A referenced scenario's relative profile/trace paths, re-expressed for the study file."""
    out = copy.deepcopy(sc)
    for sec, key in PATH_KEYS:
        ref = out.get(sec, {}).get(key) if isinstance(out.get(sec), dict) else None
        if isinstance(ref, str) and not Path(ref).is_absolute() and not Path(ref).exists():
            cand = scenario_dir / ref
            if cand.exists():
                out[sec][key] = os.path.relpath(cand, study_dir)
    return out


def _from_trace(sf: StudyFile, path: Path) -> StudyFile:
    """`exit_layer = "trace"` / `vocab = "trace"`: the values a trace's sidecar says it recorded
    (the first drafter whose acceptance is a trace); `vocab_size` defaults to its full vocabulary."""
    s = sf.search
    wanted = [k for k in ("exit_layer", "vocab") if getattr(s, k) == "trace"]
    if not wanted:
        return sf
    import json

    from simspec.config import resolve_data_path
    from simspec.trace.schema import sidecar_path

    kinds = list(s.drafter or sf.drafters)
    traced = [k for k in kinds if k in sf.drafters and sf.drafters[k].acceptance is not None
              and sf.drafters[k].acceptance.trace is not None]
    if not traced:
        raise InputError(str(path), f"search.{wanted[0]}", '"trace" needs a drafter whose acceptance is a trace')
    ref = sf.drafters[traced[0]].acceptance.trace
    side = sidecar_path(resolve_data_path(ref, path))
    try:
        meta = json.loads(side.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(str(path), f"search.{wanted[0]}", f"cannot read the trace sidecar {side}: {exc}") from None
    update: dict[str, Any] = {}
    drafters = dict(sf.drafters)
    if "exit_layer" in wanted:
        layers = sorted({int(x) for x in meta.get("exit_layers") or []})
        if not layers:
            raise InputError(str(path), "search.exit_layer", f"the trace {ref} recorded no exit layers")
        update["exit_layer"] = layers
    if "vocab" in wanted:
        full = meta.get("vocab")
        ks = sorted({int(full) if k == "full" else int(k) for k in meta.get("vocabs") or [] if k != "full" or full})
        if len(ks) < 1:
            raise InputError(str(path), "search.vocab", f"the trace {ref} recorded no vocabulary sizes")
        update["vocab"] = ks
        for k in traced:
            if drafters[k].vocab_size is None and full and drafter_kinds.get(k).trims_head:
                drafters[k] = drafters[k].model_copy(update={"vocab_size": int(full)})
    return sf.model_copy(update={"search": s.model_copy(update=update), "drafters": drafters})
