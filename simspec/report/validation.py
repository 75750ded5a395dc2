"""A validation's report beside its table: <name>.png (the scatter) and <name>.html.

Called by `simspec validate` after simspec.validation.run.validate wrote <name>.csv and
<name>.json and returned what it found.
"""

from __future__ import annotations

from pathlib import Path

from simspec import machine
from simspec.atomic import write_text
from simspec.report import html
from simspec.report.validation_decomposition_plot import decomposition_figure
from simspec.report.validation_plot import scatter
from simspec.report.validation_serving_plot import serving_figure
from simspec.validation.run import Validation

PHASES = ("prefill", "draft", "verify")


def write(v: Validation, out: Path) -> tuple[Path, Path]:
    """The figures and the HTML page (table, agreement, figure, inputs, environment): <name>.png,
    the first kind's figure (batch-1 scatter, serving figure, pipeline scatter, in that order),
    and <name>-serving.png / <name>-pipeline.png for the kinds after it. Returns (the first
    figure, the page)."""
    name = v.plan.name
    figures = []
    if v.agreement is not None:
        png = scatter(v.table, out / f"{name}.png", f"{name}: simspec predicted vs measured ({len(v.table)} configs)")
        figures.append((png, "simspec's predicted tokens/s against the live engine's; grey: ±10%"))
    if v.serving is not None:
        path = out / (f"{name}-serving.png" if figures else f"{name}.png")
        png = serving_figure(v.serving, v.timelines(), path,
                             f"{name}: serving, simspec predicted vs measured ({len(v.serving)} configs)")
        figures.append((png, "serving configs: predicted against measured per metric (grey: ±10%), and each "
                             "config's sequences per round over time, live beside simulated"))
    block = (v.meta.get("serving") or {}).get("decomposition")
    if block:
        png = decomposition_figure(block, out / f"{name}-decomposition.png",
                                   f"{name}: where the serving error comes from ({len(block['configs'])} configs)")
        figures.append((png, "the decomposed error per serving config: (a) acceptance, (b) the serving policy "
                             "replayed on the live iteration times, (c) cost per iteration by phase, (d) end to "
                             "end; whiskers: the noise of the run"))
    if v.pipeline is not None:
        path = out / (f"{name}-pipeline.png" if figures else f"{name}.png")
        png = scatter(v.pipeline, path, f"{name}: two-process pipeline, simspec predicted vs measured "
                                        f"({len(v.pipeline)} configs)")
        figures.append((png, "pipeline configs (drafter and target in two processes): predicted tokens/s "
                             "against measured; grey: ±10%"))
    page = out / f"{name}.html"
    write_text(page, html.page(f"simspec validation: {name}", markdown(v), figures))
    return figures[0][0], page


def markdown(v: Validation) -> str:
    """The page's text: what ran, the agreement, one row per config, the inputs' provenance."""
    m, ag, plan = v.meta, v.agreement, v.plan
    env = m["environment"]
    L = [f"# simspec validation: {plan.name}", "",
         f"- plan: `{m['plan']}`; target: `{plan.target}`; {m['prompts']} traced prompts "
         f"x <= {m['max_new_tokens']} new tokens, batch 1, greedy",
         f"- run: `{m['command']}` on {env['device']} ({env['threads']} threads), {m['date']}, {m['wall_s']} s"]
    if ag is not None:
        L += ["", "## Agreement", "",
              f"Median |error| **{ag.median_abs_error_pct:.1f}%**, max |error| {ag.max_abs_error_pct:.1f}%, "
              f"Spearman's rho {ag.spearman_rho:.3f} over {ag.n} configs; regret of the simulator's pick "
              f"{ag.regret_pct:.1f}% (predicted best `{ag.predicted_best}`, measured best `{ag.measured_best}`).", "",
              "## Configurations", "",
              "Predicted / measured; seconds by phase over all prompts (the live engine's other: acceptance, "
              "KV commit, Python).", "",
              "| config | tok/s | error | tokens/round | " + " | ".join(f"{k} s" for k in PHASES) + " | other s |",
              "|---|" + "---|" * (4 + len(PHASES))]
        for _, r in v.table.iterrows():
            L.append(f"| {r['config']} | {r['predicted_tok_s']:.3f} / {r['measured_tok_s']:.3f} | {r['error_pct']:+.1f}% | "
                     f"{r['predicted_tokens_per_round']:.3f} / {r['measured_tokens_per_round']:.3f} | "
                     + " | ".join(f"{r[f'predicted_{k}_s']:.1f} / {r[f'measured_{k}_s']:.1f}" for k in PHASES)
                     + f" | {r['measured_other_s']:.1f} |")
    if v.serving is not None:
        L += _serving_markdown(v.serving, v.serving_agreement)
        if (m.get("serving") or {}).get("decomposition"):
            L += _decomposition_markdown(m["serving"]["decomposition"], m.get("protocol"))
    if v.pipeline is not None:
        L += _pipeline_markdown(v)
    ins = m["inputs"]
    L += ["", "## Inputs", "", _input("trace", ins["trace"])]
    L += [_input("profile", f) for f in _profiles(ins["profiles"])]
    if m.get("machine"):
        L += ["", f"Measured on {machine.label(m['machine'])}."]
    L += ["", "## Environment", ""] + [f"- {k}: `{val}`" for k, val in env.items()]
    return "\n".join(L) + "\n"


SERVING = (("tok_s", "tok/s"), ("ttft_p50_s", "TTFT p50 s"), ("ttft_p99_s", "TTFT p99 s"),
           ("tpot_p50_s", "TPOT p50 s"), ("tpot_p99_s", "TPOT p99 s"), ("e2e_p50_s", "e2e p50 s"),
           ("e2e_p99_s", "e2e p99 s"), ("mean_batch", "batch"), ("tokens_per_round", "tokens/round"))


def _serving_markdown(df, ag: dict) -> list[str]:
    per = ag["metrics"]
    L = ["", "## Serving", "",
         "Continuous batching, prefill-first, live (simspec.live.serving) and simulated with the same requests "
         "and arrival times. Predicted / measured (error).", "",
         "| config | " + " | ".join(t for _, t in SERVING) + " | outputs = trace |",
         "|---|" + "---|" * (len(SERVING) + 1)]
    for _, r in df.iterrows():
        cells = []
        for m, _ in SERVING:
            err = r["error_pct"] if m == "tok_s" else r[f"error_{m}_pct"]
            cells.append(f"{r[f'predicted_{m}']:.4g} / {r[f'measured_{m}']:.4g} ({err:+.1f}%)")
        L.append(f"| {r['config']} | " + " | ".join(cells) + f" | {r['outputs_equal_trace']} |")
    L += ["", "| over serving configs | " + " | ".join(t for _, t in SERVING) + " |",
          "|---|" + "---|" * len(SERVING),
          "| median abs error | " + " | ".join(f"{per[m]['median_abs_error_pct']:.1f}%" for m, _ in SERVING) + " |",
          "| max abs error | " + " | ".join(f"{per[m]['max_abs_error_pct']:.1f}%" for m, _ in SERVING) + " |",
          "", f"Throughput over {ag['n']} serving configs: Spearman's rho {ag['spearman_rho']:.3f}; regret of the "
          f"simulator's pick {ag['regret_pct']:.1f}% (predicted best `{ag['predicted_best']}`, measured best "
          f"`{ag['measured_best']}`)."]
    return L


def _pct(x) -> str:
    return "n/a" if x is None or x != x else f"{x:+.2f}%"


def _decomposition_markdown(block: dict, protocol: dict | None) -> list[str]:
    """Per serving config: (a) acceptance, (b) dynamics, (c) cost by phase with its noise, (d) end
    to end with the noise floor; then the plan's medians."""
    rounds = (protocol or {}).get("rounds", 1)
    L = ["", "## Decomposed error", "",
         f"{rounds} live round(s), configs interleaved in a seeded random order. (a) tokens per round, replay vs "
         "live; (b) the serving policy replayed on the live run's own iteration times vs the live figures; (c) "
         "mean seconds per iteration, predicted vs measured, by phase (median spread across rounds in brackets); "
         "(d) end to end (split-half noise floor in brackets).", "",
         "| config | rounds / method | (a) tok/round | (b) tok/s, TTFT p50, TPOT p50 | (c) prefill | (c) round "
         "| (d) tok/s | (d) TPOT p50 |", "|---|---|---|---|---|---|---|---|"]
    for label, d in block["configs"].items():
        ph, e = d["cost"]["phase"], d["end_to_end"]
        cost = [f"{_pct(ph[p]['error_pct'])} ({ph[p]['noise_pct']:.1f}%)" if p in ph else "n/a"
                for p in ("prefill", "round")]
        L.append(f"| {label} | {d['rounds']} / {d['method']} | {_pct(d['acceptance']['error_pct'])} | "
                 + ", ".join(_pct(d["dynamics"][k]) for k in ("tok_s", "ttft_p50_s", "tpot_p50_s"))
                 + f" | {cost[0]} | {cost[1]} | {_pct(e['tok_s']['error_pct'])} ({e['tok_s']['noise_pct']:.1f}%) | "
                 f"{_pct(e['tpot_p50_s']['error_pct'])} ({e['tpot_p50_s']['noise_pct']:.1f}%) |")
    p = block["plan"]
    dyn = p["dynamics"]["closed_loop"]
    L += ["", f"Over the plan: acceptance median |error| {p['acceptance']['median_abs_error_pct']:.2f}%; serving "
          f"dynamics (closed loop, {p['closed_loop_configs']} configs) median |error| throughput "
          f"{dyn['tok_s']['median_abs_error_pct']:.3f}%, TTFT p50 {dyn['ttft_p50_s']['median_abs_error_pct']:.3f}%, "
          f"TPOT p50 {dyn['tpot_p50_s']['median_abs_error_pct']:.3f}%; "
          + "; ".join(f"cost {k} median |error| {v['median_abs_error_pct']:.1f}% (noise {v['median_noise_pct']:.1f}%)"
                      for k, v in p["cost"].items())
          + f"; end-to-end throughput median |error| {p['end_to_end']['tok_s']['median_abs_error_pct']:.1f}% "
          f"(noise floor {p['end_to_end']['tok_s']['median_noise_pct']:.1f}%)."]
    return L


def _pipeline_markdown(v: Validation) -> list[str]:
    ag, p = v.pipeline_agreement, v.meta["pipeline"]["placement"]
    L = ["", "## Pipeline", "",
         f"The target and the drafter each in its own process (simspec.live.pipeline): target on core "
         f"{p['target_core']}, drafter on core {p['draft_core']}, {p['threads']} torch thread(s) each; "
         "simulated on two devices. Predicted / measured.", "",
         "| config | tok/s | error | tokens/round | outputs = trace |", "|---|---|---|---|---|"]
    for _, r in v.pipeline.iterrows():
        L.append(f"| {r['config']} | {r['predicted_tok_s']:.3f} / {r['measured_tok_s']:.3f} | {r['error_pct']:+.1f}% | "
                 f"{r['predicted_tokens_per_round']:.3f} / {r['measured_tokens_per_round']:.3f} | "
                 f"{r['outputs_equal_trace']} |")
    L += ["", f"Median |error| **{ag.median_abs_error_pct:.1f}%**, max |error| {ag.max_abs_error_pct:.1f}%, "
              f"Spearman's rho {ag.spearman_rho:.3f} over {ag.n} configs."]
    for c in v.overlap_calls or []:
        L.append(f"- {c['dtype']} {c['draft']} gamma {c['gamma']}: overlapping pays? predicted "
                 f"{c['predicted_pays']}, measured {c['measured_pays']} ({'agree' if c['agree'] else 'DISAGREE'})")
    return L


def _profiles(profiles: dict) -> list[dict]:
    """Each profile's record: {ref: record}, or the older {model: {dtype: record}}."""
    out = []
    for v in profiles.values():
        out += [v] if "path" in v else list(v.values())
    return out


def _input(what: str, f: dict) -> str:
    how = "calibrated" if f.get("calibrated") else "captured"
    where = f" on {machine.label(f['machine'])}" if f.get("machine") else ""
    return f"- {what}: `{f['path']}` (sha256 {f['sha256'][:12]}, {how} {f['date'] or 'unknown'}{where})"
