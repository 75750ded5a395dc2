"""Small study files for the study tests (synthetic costs, short workloads: fast)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from clihelpers import cli

REPO = Path(__file__).resolve().parents[1]

SMALL = """
name = "{name}"
seed = {seed}
trials = {trials}
baselines = [{{ gamma = 0, max_batch = 4 }}]

[scenario.target]
name = "t"
cost = {{ step_ms = 20.0, per_seq_ms = 0.5, per_token_ms = 0.05 }}
layers = 24

[scenario.placement]
devices = {{ dev0 = {{ price_per_hour = 1.0 }} }}
target = "dev0"

[scenario.serving]
seed = 0

[workload]
requests = {requests}
arrival = "closed"
concurrency = 8
prompt_len = {{ dist = "uniform", min = 16, max = 256 }}
output_len = {{ dist = "uniform", min = 16, max = {out_max} }}

[search]
gamma = {{ low = 0, high = 6 }}
drafter = ["model", "early_exit", "ngram"]
exit_layer = {{ low = 4, high = 20, step = 4 }}
vocab = [4096, 32768, 131072]
max_batch = [1, 2, 4, 8]

[drafters.model]
name = "org/draft-0.1b"
cost = {{ step_ms = 4.0, per_seq_ms = 0.1 }}
acceptance = {{ per_position = [0.8, 0.7, 0.65] }}
vocab_size = 131072
head_ms = 1.5
coverage = [[4096, 0.85], [32768, 0.96], [131072, 1.0]]

[drafters.early_exit]
acceptance_by_layer = [[4, 0.1], [12, 0.4], [20, 0.75]]

[drafters.ngram]
acceptance = {{ iid = 0.3 }}
prompt_lookup_max = 3

[objectives]
{objectives}

[constraints]
tpot_p99_s = {{ max = {tpot_max} }}
{extra}
"""


def small_study(tmp: Path, name: str = "small", trials: int = 12, seed: int = 0, requests: int = 48,
                out_max: int = 128, objectives: str = 'throughput = "maximize"', tpot_max: float = 0.05,
                extra: str = "") -> Path:
    p = tmp / f"{name}.toml"
    p.write_text(SMALL.format(name=name, seed=seed, trials=trials, requests=requests, out_max=out_max,
                              objectives=objectives, tpot_max=tpot_max, extra=extra))
    return p


def finished_study(tmp: Path, name: str, **kw) -> tuple[Path, Path]:
    """A small study run to the end in tmp/run: (study file, run folder), the folder whole."""
    from simspec import outputs

    study = small_study(tmp, name=name, **kw)
    out = tmp / "run"
    r = simspec("study", str(study), "--out", str(out), "--no-progress")
    assert r.returncode == 0 and outputs.is_complete(out), r.stderr
    return study, out


def simspec(*args: str, cwd: Path | str = REPO, **_kw) -> subprocess.CompletedProcess:
    """`simspec ARGS` run in this process (tests/clihelpers.py says why)."""
    return cli(*args, cwd=cwd)
