"""A finished study's report in its run folder: the figures, summary.md and report.html.

Called by `simspec study` after simspec.study.outcome.write_results wrote the results
(trials, Pareto table, best.toml, engine exports) and returned what the study found.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from simspec.atomic import write_text
from simspec.report import html, study_plots
from simspec.study import objectives, prune, results, schedule
from simspec.study.evaluate import REPEAT
from simspec.study.outcome import Outcome
from simspec.study.storage import redact

CAPTIONS = {"history.png": "Optimisation history", "importances.png": "Knob importance",
            "gamma_vs_batch.png": "Best gamma and speed-up against batch size"}


def write(o: Outcome, out: Path) -> dict[str, Any]:
    """Draw the figures, write summary.md and report.html; the summary text and every file
    of the run folder (the results' first), in the order written."""
    names, study = o.names, o.study
    label = names[0] if o.capacity else f"{names[0]} ({objectives.directions(o.spec)[0]})"
    study_plots.history(study, label, out / "history.png")
    study_plots.importances(o.importances, o.importance_method, out / "importances.png")
    study_plots.pareto(study, names, out / "pareto.png")
    pngs = ["history.png", "importances.png", "pareto.png"]
    if o.points:
        study_plots.gamma_vs_batch(o.points, out / "gamma_vs_batch.png")
        pngs.append("gamma_vs_batch.png")
    files = o.files + pngs + ["summary.md", "report.html"]

    text = summary_md(o, files)
    write_text(out / "summary.md", text)
    title = f"simspec study: {o.spec.name}{' (capacity)' if o.capacity else ''}"
    captions = dict(CAPTIONS, **{"pareto.png": "Pareto front" if len(names) >= 2 else "Throughput against p99 TPOT"})
    write_text(out / "report.html", html.page(title, text, [(out / p, captions[p]) for p in pngs]))
    return {"summary": text, "files": files, "best": o.best}


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "-" if math.isnan(v) else f"{v:.4g}"
    return str(v)


FENCE = {".json": "json", ".yaml": "yaml", ".sh": "sh"}


def schedule_section(exps) -> list[str]:
    """Per batch bucket: the schedule's gain over the best single K, and the recommendation."""
    L: list[str] = []
    seen: dict = {}
    for eng, a in exps.answers.items():
        if a.kind is not None:
            seen.setdefault(a.kind, (a, []))[1].append(eng)
    for kind, (a, engs) in seen.items():
        L += [f"## Per-batch schedule or one K ({kind}: {', '.join(engs)})", "",
              f"One K for every batch size: K = {a.single_k} (the highest throughput relative to each bucket's "
              "best, summed over the buckets).", "",
              "| batch | schedule K | tok/s | one K tok/s | gain |", "|---|---|---|---|---|"]
        for bk in a.buckets:
            L.append(f"| {bk.batch} | {bk.best.gamma} | {_fmt(bk.best.throughput_tok_s)} | "
                     f"{_fmt(bk.single.throughput_tok_s)} | {100 * bk.gain:+.1f}% |")
        verdict = (f"**Schedule recommended**: it beats K = {a.single_k} by {100 * a.max_gain:.1f}% in some bucket, "
                   f"above the {100 * a.threshold:.1f}% threshold"
                   if a.schedule_pays else
                   f"**No schedule**: its best gain over K = {a.single_k} is {100 * a.max_gain:.1f}%, below the "
                   f"{100 * a.threshold:.1f}% threshold")
        L += ["", verdict + " (the lowest TPOT cost of a schedule that vLLM users measured, 6.6-21.6%, "
              "vLLM issue #49548).", ""]
    return L


def engine_sections(exps) -> list[str]:
    L = schedule_section(exps)
    titles = {"vllm": "vLLM", "sglang": "SGLang", "trtllm": "TensorRT-LLM"}
    L += ["## Engine configs", "", "Each for the version named (`simspec export --engine E --engine-version V` "
          "writes another); only keys that version accepts are written.", ""]
    synthetic = []
    for e in exps.engines:
        for name, text in e.files.items():
            if name == e.synthetic:
                synthetic.append((e, name, text))
                continue
            what = f"{titles[e.engine]} {e.version}" + (" server config" if name == e.main else "")
            if name.endswith(".json") and len(text) > 4000:
                L += [f"{what} ({name}): {len(text)} characters, not shown.", ""]
                continue
            L += [f"{what} ({name}):", "", "```" + FENCE.get(Path(name).suffix, ""), text.rstrip(), "```", ""]
    if synthetic or exps.prediction:
        L += ["## Checking the prediction on a real cluster", "",
              "Serve the config below (acceptance fixed to simspec's, per position), measure throughput and TPOT "
              "at each batch size, and compare with the table: a miss there means the serving model is off; "
              "a match there but not with the real drafter means the drafter accepts differently.", ""]
        for e, name, text in synthetic:
            L += [f"{titles[e.engine]} {e.version} ({name}):", "", "```" + FENCE.get(Path(name).suffix, ""),
                  text.rstrip(), "```", ""]
        if exps.prediction:
            L += ["Expected under the synthetic acceptance (synthetic_prediction.csv; `simspec predict`); "
                  "'study' is the study's own figure at that K:", "",
                  "| engine | batch | K | tok/s | TPOT p50 (s) | TPOT p99 (s) | tokens/round | study tok/s |",
                  "|---|---|---|---|---|---|---|---|"]
            merged: dict = {}
            for r in exps.prediction:  # engines that run the same K at a batch share a row
                key = (r.batch, r.k, r.throughput_tok_s, r.tpot_p50_s)
                merged.setdefault(key, [r, []])[1].append(r.engine)
            for r, engs in sorted(merged.values(), key=lambda x: (x[0].batch, x[0].k)):
                L.append(f"| {', '.join(engs)} | {r.batch} | {r.k} | {_fmt(r.throughput_tok_s)} | {_fmt(r.tpot_p50_s)} | "
                         f"{_fmt(r.tpot_p99_s)} | {_fmt(r.tokens_per_round)} | {_fmt(r.study_throughput_tok_s)} |")
            L.append("")
    return L


def cost_source(summ: dict) -> str:
    """Where the best configuration's figures come from, when a roofline priced a model:
    datasheet estimates are labelled as such, measured profiles as measured."""
    roles = {r: summ.get(f"{r}_estimate") for r in ("target", "draft")}
    if all(v is None for v in roles.values()):
        return ""  # measured profiles or synthetic costs only: nothing estimated
    def word(v):
        return "not a roofline (a measured profile or a given cost)" if v is None else "roofline ESTIMATE (datasheet figures)" if v else \
            "roofline fitted to a measured profile"
    return "Costs: " + "; ".join(f"{r} {word(v)}" for r, v in roles.items()) + "."


def summary_md(o: Outcome, files: list[str]) -> str:
    """summary.md: the question, the best configuration against plain decoding, the Pareto
    front, the best gamma per batch size, the engine configs, knob importance, files."""
    from optuna.trial import TrialState

    spec, study, capacity, best = o.spec, o.study, o.capacity, o.best
    counts = {s: len(study.get_trials(deepcopy=False, states=(s,))) for s in
              (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    n_feas = len(results.feasible_trials(study))
    L = [f"# simspec study: {spec.name}{' (capacity)' if capacity else ''}", ""]
    L.append(f"- study file: `{spec.path}`; storage: `{redact(o.url)}`; sampler: {spec.file.sampler} (seed {spec.file.seed})")
    n_pruned = sum(prune.PRUNED_AT in t.user_attrs for t in study.get_trials(deepcopy=False, states=(TrialState.PRUNED,)))
    L.append(f"- trials: {counts[TrialState.COMPLETE]} complete ({n_feas} meet the SLOs), "
             f"{counts[TrialState.PRUNED] - n_pruned} invalid, {counts[TrialState.FAIL]} failed"
             + (f", {n_pruned} pruned" if n_pruned else ""))
    line = prune.describe(study)
    if line is not None:
        L.append(f"- {line}")
    n_rep = sum(bool(t.user_attrs.get(REPEAT)) for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    if n_rep:
        L.append(f"- repeats: {n_rep} trials proposed a scenario their worker had already simulated; the "
                 "simulator is deterministic, so they took its figures without simulating again")
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
        plain = None if capacity else o.plain_best()
        psum = (plain.user_attrs.get("summary") or {}) if plain is not None else {}
        if capacity:
            L += [f"**Fewest replicas: {best.user_attrs['replicas']}** (trial #{best.number})", ""]
        L += [f"## Best configuration (trial #{best.number})", "", "| knob | value |", "|---|---|"]
        L += [f"| {k} | {v} |" for k, v in o.best_k.items()]
        L += ["", "| metric | best | " + (f"best plain decoding (#{plain.number}) |" if plain else "|"),
              "|---|---|" + ("---|" if plain else "")]
        for m in ("throughput_tok_s", "ttft_p99_s", "tpot_p50_s", "tpot_p99_s", "e2e_p99_s",
                  "mean_tokens_per_round", "cost_per_mtok"):
            row = f"| {m} | {_fmt(summ.get(m, float('nan')))} |"
            if plain:
                row += f" {_fmt(psum.get(m, float('nan')))} |"
            L.append(row)
        source = cost_source(summ)
        if source:
            L += ["", source]
        L += _plain_line(o, best, plain, summ, psum, capacity)
        L.append("")
    L += policy_section(o)
    if len(study.directions) > 1 and o.front:
        L += [f"## Pareto front ({len(o.front)} trials)", "",
              "| trial | " + " | ".join(objectives.objective_names(spec)) + " | knobs |",
              "|---|" + "---|" * len(study.directions) + "---|"]
        for t in o.front[:15]:
            L.append(f"| {t.number} | " + " | ".join(_fmt(v) for v in t.values)
                     + f" | {json.dumps(results.knobs(t))} |")
        L.append("")
    if o.points:
        per = schedule.best_per_bucket(o.points)
        plain_thr = {p.batch: p.throughput_tok_s for p in o.points if p.drafter == "none"}
        L += ["## Best gamma per batch size", "",
              "Saturated replica (closed loop, max_batch = batch); every gamma tried per drafter.", "",
              "| batch | best gamma | drafter | tok/s | vs plain |", "|---|---|---|---|---|"]
        for b, p in per.items():
            sp = p.throughput_tok_s / plain_thr[b] if plain_thr.get(b) else float("nan")
            L.append(f"| {b} | {p.gamma} | {p.drafter} | {_fmt(p.throughput_tok_s)} | {sp:.2f}x |")
        L.append("")
        if o.exports is not None and o.exports.engines:
            L += engine_sections(o.exports)
    if o.importances:
        L += ["## Knob importance (first objective)", ""]
        L += [f"- {k}: {v:.2f}" for k, v in sorted(o.importances.items(), key=lambda kv: -kv[1])]
        L.append("")
    if o.notes:
        L += ["## Notes", ""] + [f"- {n}" for n in o.notes] + [""]
    L += ["## Files", ""] + [f"- {w}" for w in files]
    return "\n".join(L) + "\n"


def policy_section(o) -> list[str]:
    """Which policy won and why (a study that searched `policy`): its best trial against the
    runner-up policy's, then each policy's best."""
    rows = getattr(o, "policies", None) or []
    if not rows:
        return []
    from simspec.study.policy_compare import why

    obj = o.names[0] if o.names else "objective"
    L = ["## Policies", "", why(o.spec, rows, obj), "",
         f"| policy | best trial | {obj} | tokens per round | ms per round | shape |", "|---|---|---|---|---|---|"]
    L += [f"| {r.label} | #{r.number} | {_fmt(r.value)} | {r.tokens_per_round:.3f} | {r.ms_per_round:.2f} | {r.shape} |"
          for r in rows]
    tried = {r.label for r in rows}
    missing = [n for n in o.spec.file.search.policy if n != "fixed" and n not in tried]
    if missing:
        L += ["", "No feasible trial for: " + ", ".join(missing) + " (a policy applies only to its drafter kinds)."]
    return L + [""]


def _plain_line(o, best, plain, summ: dict, psum: dict, capacity: bool) -> list[str]:
    """How the best trial compares with plain decoding, saying which case it is: the best is
    plain itself, no plain trial met the SLOs, or none ran at all."""
    if capacity:
        return []
    if plain is not None and plain.number == best.number:
        return ["", "The best configuration decodes plainly (gamma = 0): speculation did not pay here."]
    if plain is not None and psum.get("throughput_tok_s"):
        return ["", f"Throughput {summ['throughput_tok_s'] / psum['throughput_tok_s']:.2f}x "
                    f"the best plain-decoding trial (#{plain.number})."]
    if plain is not None:
        return []
    if o.ran_plain():
        return ["", "No plain-decoding trial (gamma = 0) met the SLOs."]
    return ["", "No plain-decoding trial (gamma = 0) ran, so there is no baseline to compare with "
                "(add gamma = 0 to [search] or to `baselines`)."]
