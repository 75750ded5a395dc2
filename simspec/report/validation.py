"""A validation's report beside its table: <name>.png (the scatter) and <name>.html.

Called by `simspec validate` after simspec.validation.run.validate wrote <name>.csv and
<name>.json and returned what it found.
"""

from __future__ import annotations

from pathlib import Path

from simspec import machine
from simspec.atomic import write_text
from simspec.report import html
from simspec.report.validation_plot import scatter
from simspec.validation.run import Validation

PHASES = ("prefill", "draft", "verify")


def write(v: Validation, out: Path) -> tuple[Path, Path]:
    """The scatter and the HTML page (table, agreement, figure, inputs, environment)."""
    name = v.plan.name
    png = scatter(v.table, out / f"{name}.png", f"{name}: simspec predicted vs measured ({len(v.table)} configs)")
    page = out / f"{name}.html"
    write_text(page, html.page(f"simspec validation: {name}", markdown(v),
                               [(png, "simspec's predicted tokens/s against the live engine's; grey: ±10%")]))
    return png, page


def markdown(v: Validation) -> str:
    """The page's text: what ran, the agreement, one row per config, the inputs' provenance."""
    m, ag, plan = v.meta, v.agreement, v.plan
    env = m["environment"]
    L = [f"# simspec validation: {plan.name}", "",
         f"- plan: `{m['plan']}`; target: `{plan.target}`; {m['prompts']} traced prompts "
         f"x <= {m['max_new_tokens']} new tokens, batch 1, greedy",
         f"- run: `{m['command']}` on {env['device']} ({env['threads']} threads), {m['date']}, {m['wall_s']} s",
         "", "## Agreement", "",
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
    ins = m["inputs"]
    L += ["", "## Inputs", "", _input("trace", ins["trace"])]
    L += [_input("profile", f) for f in _profiles(ins["profiles"])]
    if m.get("machine"):
        L += ["", f"Measured on {machine.label(m['machine'])}."]
    L += ["", "## Environment", ""] + [f"- {k}: `{val}`" for k, val in env.items()]
    return "\n".join(L) + "\n"


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
