"""`simspec acceptance import`: acceptance from a running engine (or a paper) -> an acceptance file."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

HELP = """Read an engine's acceptance counters (or a paper's per-position list) into an acceptance file.

Formats (detected when --format is not given: .toml / .json is a list, a file with
vllm:spec_decode_* counters is vLLM's, anything else SGLang's):

  vllm    a /metrics scrape saved to a file (Prometheus text): the counters
          vllm:spec_decode_num_drafts_total, ..._num_draft_tokens_total,
          ..._num_accepted_tokens_total and ..._num_accepted_tokens_per_pos_total{position="k"};
          several engines (label sets) are summed
  sglang  per-round accept lengths, one whole number per line (bonus token included: 1..gamma+1),
          or SGLang's server log, whose 'accept len: X' lines are interval means: imported as
          mean-only, which no scenario can use (a mean does not give a per-position curve)
  list    TOML or JSON: source = "citation" and per_position = [...] (conditional) or
          survival = [...] (P(first k accepted))

The file written holds per_position (conditional acceptance, as a scenario's
acceptance = { per_position = [...] } means it), survival, gamma, the mean accepted per round,
the counts and its provenance (command, input sha256, format, date, simspec version). A scenario
or a study drafter uses it as acceptance = { imported = "FILE.json" }.

What it can answer: which K (up to gamma) at which batch size on which hardware, with the
drafter's cost from a profile, dims or the roofline. What it cannot: no per-token replay (no
token ids or ranks), no tree shape beyond what the counters hold, nothing rank-dependent
(trimmed vocabularies, other drafters); rounds are position-wise i.i.d. (acceptance's variation
with the text is averaged away); K beyond gamma reuses the last rate.

Examples:

  curl -s localhost:8000/metrics > metrics.prom
  simspec acceptance import metrics.prom --out eagle3.json --source "vLLM 0.11, Llama-3.1-8B + EAGLE-3, H100, ShareGPT"

  simspec acceptance import traces/imported/vllm-eagle3-sample.prom --format vllm --out /tmp/acc.json

  simspec acceptance import accept_lengths.txt --format sglang --gamma 4 --out mtp.json

  simspec acceptance import eagle3-paper.toml --out eagle3-paper.json
"""

acceptance_app = typer.Typer(help="Acceptance from a running engine or a paper: import.", no_args_is_help=True)


@acceptance_app.command("import", help=HELP)
def import_cmd(
    source_file: Path = typer.Argument(..., metavar="SOURCE", help="metrics scrape, accept-length file or log, or per-position list"),
    out: Path = typer.Option(..., "--out", help="the acceptance file to write (JSON)"),
    fmt: Optional[str] = typer.Option(None, "--format", help="vllm, sglang or list (default: detected)"),
    source: Optional[str] = typer.Option(None, "--source", help="citation: engine, version, model, drafter, hardware, data"),
    gamma: Optional[int] = typer.Option(
        None, "--gamma", help="sglang: draft tokens per round (default: the log's speculative_num_steps, else the longest round)"),
) -> None:
    import datetime

    from simspec import __version__, atomic, outputs, strict_json
    from simspec.errors import InputError
    from simspec.imported import import_file

    if source is not None and not source.strip():
        raise InputError(None, "--source", "must not be empty")
    outputs.check_file("--out", out)
    imp = import_file(source_file, fmt, gamma, source)
    acc = imp.acceptance
    provenance = {
        "command": "simspec " + " ".join(sys.argv[1:]),
        "input": str(source_file),
        "input_sha256": imp.sha256,
        "input_bytes": imp.size,
        "format": imp.format,
        "format_detected": imp.detected,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "simspec": __version__,
    }
    citation = imp.citation or f"{imp.format} file {source_file.name} (sha256 {imp.sha256[:12]}; no --source given)"
    doc = acc.document(citation, provenance)
    atomic.write_text(out, strict_json.dumps(doc, indent=1) + "\n")
    how = "detected" if imp.detected else "--format"
    if acc.per_position is None:
        typer.echo(f"{imp.format} ({how}): mean accepted {acc.mean_accepted:.3f} per round "
                   f"(tokens/round {1 + acc.mean_accepted:.3f}); MEAN ONLY: no per-position curve, "
                   "a scenario cannot use this file")
    else:
        rates = ", ".join(f"{a:.3f}" for a in acc.per_position)
        typer.echo(f"{imp.format} ({how}): gamma {acc.gamma}, per_position [{rates}], "
                   f"mean accepted {acc.mean_accepted:.3f} per round (tokens/round {1 + acc.mean_accepted:.3f})")
    for note in acc.notes:
        typer.echo(f"note: {note}")
    typer.echo(f"wrote {out}")


def register(app: typer.Typer) -> None:
    app.add_typer(acceptance_app, name="acceptance")
