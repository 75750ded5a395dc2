"""Everything a finished study writes into its run folder, each file written atomically."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from simspec.config import resolve_data_path
from simspec.study import capacity as cap_mod
from simspec.study import export, objectives, plots, results, schedule, space, tomlw
from simspec.study.evaluate import Evaluator
from simspec.study.spec import StudySpec
from simspec.study.storage import redact

PATH_KEYS = (("target", "profile"), ("draft", "profile"), ("acceptance", "trace"))


def _atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "-" if math.isnan(v) else f"{v:.4g}"
    return str(v)


def portable_scenario(d: dict, spec: StudySpec, out: Path) -> dict:
    """Profile/trace paths re-expressed relative to the run folder, where best.toml lives."""
    d = json.loads(json.dumps(d))
    for sec, key in PATH_KEYS:
        ref = (d.get(sec) or {}).get(key)
        if isinstance(ref, str) and not Path(ref).is_absolute():
            p = resolve_data_path(ref, spec.where).resolve()
            d[sec][key] = os.path.relpath(p, out.resolve())
    return d


def _plain_best(study, sign: int):
    cands = [t for t in results.feasible_trials(study) if results.knobs(t).get("gamma") == 0]
    return min(cands, key=lambda t: (sign * t.values[0], t.number)) if cands else None


def write(spec: StudySpec, study, out: Path, url: str, capacity: bool, ev: Evaluator | None = None) -> dict[str, Any]:
    ev = ev or Evaluator(spec)
    out.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    names = ["replicas"] if capacity else objectives.objective_names(spec)

    df = results.frame(study)
    tmp = out / "trials.parquet.tmp"
    df.to_parquet(tmp, index=False)
    os.replace(tmp, out / "trials.parquet")
    written.append("trials.parquet")

    front = results.pareto(study)
    pf = df[df["number"].isin([t.number for t in front])]
    _atomic(out / "pareto.csv", pf.to_csv(index=False))
    written.append("pareto.csv")

    best = results.best_trial(study)
    notes: list[str] = []
    pts: list[schedule.Point] = []
    vcfg: dict = {}
    sgl = ""
    best_k: dict[str, Any] = {}
    if best is not None:
        best_k = results.knobs(best)
        patch = cap_mod.patch(spec, best.user_attrs["replicas"]) if capacity else None
        sc_dict = space.build(spec, best_k)
        if patch:
            from simspec.study.spec import deep_merge

            sc_dict = deep_merge(sc_dict, patch)
            sc_dict["workload"] = {k: v for k, v in sc_dict["workload"].items() if v is not None}
        header = (f"best.toml from `simspec study {spec.path.name}` (study {study.study_name!r}, trial #{best.number})\n"
                  f"knobs: {json.dumps(best_k)}\n"
                  "a complete scenario: simspec simulate best.toml")
        _atomic(out / "best.toml", tomlw.dumps(portable_scenario(sc_dict, spec, out), header))
        written.append("best.toml")

        pts = schedule.run_schedule(spec, ev, study, best_k)
        ds = spec.file.drafters.get
        vcfg = export.vllm_config(best_k, ds, pts, notes)
        sgl = export.sglang_args(best_k, ds, pts, notes)
        _atomic(out / "vllm_speculative_config.json", json.dumps(vcfg, indent=2) + "\n")
        _atomic(out / "sglang_args.txt", sgl)
        written += ["vllm_speculative_config.json", "sglang_args.txt"]
    else:
        notes.append("No trial met every SLO: no best.toml and no engine export. Relax [constraints] or widen [search].")

    label = names[0] if capacity else f"{names[0]} ({objectives.directions(spec)[0]})"
    plots.history(study, label, out / "history.png")
    imp = plots.importances(study, out / "importances.png")
    plots.pareto(study, names, out / "pareto.png")
    written += ["history.png", "importances.png", "pareto.png"]
    if pts:
        plots.gamma_vs_batch(pts, out / "gamma_vs_batch.png")
        written.append("gamma_vs_batch.png")

    text = summary_md(spec, study, url, capacity, best, best_k, pts, vcfg, sgl, notes, imp, front, written)
    _atomic(out / "summary.md", text)
    written.append("summary.md")
    return {"summary": text, "files": written, "best": best}


def summary_md(spec, study, url, capacity, best, best_k, pts, vcfg, sgl, notes, imp, front, written) -> str:
    from optuna.trial import TrialState

    counts = {s: len(study.get_trials(deepcopy=False, states=(s,))) for s in
              (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    n_feas = len(results.feasible_trials(study))
    L = [f"# simspec study: {spec.name}{' (capacity)' if capacity else ''}", ""]
    L.append(f"- study file: `{spec.path}`; storage: `{redact(url)}`; sampler: {spec.file.sampler} (seed {spec.file.seed})")
    L.append(f"- trials: {counts[TrialState.COMPLETE]} complete ({n_feas} meet the SLOs), "
             f"{counts[TrialState.PRUNED]} invalid, {counts[TrialState.FAIL]} failed")
    if capacity:
        c = spec.file.capacity
        L.append(f"- question: the fewest target replicas serving {c.rate:g} req/s within "
                 + ", ".join(f"{objectives.metric(k)} {'<=' if v.max is not None else '>='} "
                             f"{v.max if v.max is not None else v.min:g}" for k, v in spec.file.constraints.items()))
    else:
        L.append(f"- objective: {objectives.describe(spec)}")
    L.append("")
    if best is None:
        L += ["**No feasible configuration found.**", ""]
    else:
        summ = best.user_attrs.get("summary") or {}
        sign = -1 if study.directions[0].name == "MAXIMIZE" else 1
        plain = None if capacity else _plain_best(study, sign)
        psum = (plain.user_attrs.get("summary") or {}) if plain is not None else {}
        if capacity:
            L += [f"**Fewest replicas: {best.user_attrs['replicas']}** (trial #{best.number})", ""]
        L += [f"## Best configuration (trial #{best.number})", "", "| knob | value |", "|---|---|"]
        L += [f"| {k} | {v} |" for k, v in best_k.items()]
        L += ["", "| metric | best | " + (f"best plain decoding (#{plain.number}) |" if plain else "|"),
              "|---|---|" + ("---|" if plain else "")]
        for m in ("throughput_tok_s", "ttft_p99_s", "tpot_p50_s", "tpot_p99_s", "e2e_p99_s",
                  "mean_tokens_per_round", "cost_per_mtok"):
            row = f"| {m} | {_fmt(summ.get(m, float('nan')))} |"
            if plain:
                row += f" {_fmt(psum.get(m, float('nan')))} |"
            L.append(row)
        if plain and psum.get("throughput_tok_s"):
            L += ["", f"Throughput {summ['throughput_tok_s'] / psum['throughput_tok_s']:.2f}x "
                      f"the best plain-decoding trial (#{plain.number})."]
        elif not capacity and spec.file.constraints:
            L += ["", "No plain-decoding trial (gamma = 0) met the SLOs."]
        L.append("")
    if len(study.directions) > 1 and front:
        L += [f"## Pareto front ({len(front)} trials)", "",
              "| trial | " + " | ".join(objectives.objective_names(spec)) + " | knobs |",
              "|---|" + "---|" * len(study.directions) + "---|"]
        for t in front[:15]:
            L.append(f"| {t.number} | " + " | ".join(_fmt(v) for v in t.values)
                     + f" | {json.dumps(results.knobs(t))} |")
        L.append("")
    if pts:
        per = schedule.best_per_bucket(pts)
        plain_thr = {p.batch: p.throughput_tok_s for p in pts if p.drafter == "none"}
        L += ["## Best gamma per batch size", "",
              "Saturated replica (closed loop, max_batch = batch); every gamma tried per drafter.", "",
              "| batch | best gamma | drafter | tok/s | vs plain |", "|---|---|---|---|---|"]
        for b, p in per.items():
            sp = p.throughput_tok_s / plain_thr[b] if plain_thr.get(b) else float("nan")
            L.append(f"| {b} | {p.gamma} | {p.drafter} | {_fmt(p.throughput_tok_s)} | {sp:.2f}x |")
        L += ["", "## Engine configs", "", "vLLM `--speculative-config` (vllm_speculative_config.json):", "",
              "```json", json.dumps(vcfg), "```", "", "SGLang (sglang_args.txt):", "", "```", sgl.rstrip(), "```", ""]
    if imp:
        L += ["## Knob importance (first objective)", ""]
        L += [f"- {k}: {v:.2f}" for k, v in sorted(imp.items(), key=lambda kv: -kv[1])]
        L.append("")
    if notes:
        L += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    L += ["## Files", ""] + [f"- {w}" for w in written + ["summary.md"]]
    return "\n".join(L) + "\n"
