"""Issue 32's first Done-when line end to end: vLLM spec-decode counters (the .prom fixture in
vLLM's metric names) -> `simspec acceptance import` -> studies/eagle3-h100.toml (an EAGLE-3
head on the catalog H100, acceptance imported) -> the best K per batch size -> a vLLM config
that each named version accepts. The study's rounds must carry the import's acceptance: the
tokens per round of every speculating trial are the closed form of the imported curve, which
a different curve (the study's former inline list) misses."""

from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

import pandas as pd
import pytest

from clihelpers import cli
from simspec.imported.record import load_rates
from simspec.study import trial
from simspec.study.engines import versions
from simspec.study.spec import load_study

REPO = Path(__file__).resolve().parents[1]
STUDY = REPO / "studies" / "eagle3-h100.toml"
FIXTURE = REPO / "tests" / "fixtures" / "vllm-eagle3-sample.prom"
SHIPPED = REPO / "traces" / "imported" / "vllm-eagle3-sample.json"
HEAD = "yuhuili/EAGLE3-LLaMA3.1-Instruct-8B"
BATCHES = {1, 4, 16, 64}
OTHER = [0.80, 0.70, 0.64, 0.60]  # the study's inline list before it imported its acceptance
TOL = 0.01  # the simulator's tolerance against closed forms (tests/test_sim_closed_forms.py)


def tokens_per_round(per_position: list[float], k: int) -> float:
    """1 + sum_k prod_{j<=k} a_j: a chain's expected tokens per round at draft length k."""
    return 1 + sum(math.prod(per_position[: i + 1]) for i in range(k))


def shrink(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, old  # the shipped study changed shape: update the copy
    return text.replace(old, new)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The import from the fixture with the real command, then a small copy of the shipped
    study (fewer trials and requests) on the file it wrote."""
    tmp = tmp_path_factory.mktemp("eagle3")
    r = cli("acceptance", "import", str(FIXTURE), "--format", "vllm", "--out", str(tmp / "acc.json"))
    assert r.returncode == 0, r.stderr
    imp = json.loads((tmp / "acc.json").read_text())
    text = STUDY.read_text()
    text = shrink(text, "trials = 16", "trials = 6")
    text = shrink(text, "requests = 64", "requests = 32")
    text = shrink(text, "requests_per_slot = 4", "requests_per_slot = 2")
    text = shrink(text, '{ imported = "../traces/imported/vllm-eagle3-sample.json" }', '{ imported = "acc.json" }')
    (tmp / "study.toml").write_text(text)
    out = tmp / "run"
    r = cli("study", str(tmp / "study.toml"), "--out", str(out))
    assert r.returncode == 0, r.stderr
    return tmp, imp, out


def test_the_shipped_study_reads_the_shipped_import_and_searches_only_its_positions():
    rates = load_rates(SHIPPED)
    spec = load_study(STUDY)
    assert spec.file.search.gamma.high == json.loads(SHIPPED.read_text())["gamma"] == len(rates) == 4
    sc = trial.scenario(spec, {"gamma": 4, "drafter": "eagle3", "vocab": 32000, "max_batch": 64})
    assert sc.acceptance.per_position == rates and sc.draft.kind == "eagle3"
    assert sc.placement.devices["h100"].catalog == "h100-sxm"


def test_the_shipped_import_is_what_the_command_makes_of_the_fixture(run):
    _, imp, _ = run
    shipped = json.loads(SHIPPED.read_text())
    for key in ("per_position", "survival", "gamma", "counts", "mean_tokens_per_round"):
        assert imp[key] == shipped[key], key
    assert imp["gamma"] == 4 and imp["counts"]["drafts"] == 22000


def test_the_study_simulates_the_imported_acceptance(run):
    tmp, imp, out = run
    a = imp["per_position"]
    sc = trial.scenario(load_study(tmp / "study.toml"), {"gamma": 4, "drafter": "eagle3", "vocab": 32000})
    assert sc.acceptance.per_position == a
    trials = pd.read_parquet(out / "trials.parquet")
    spec_trials = trials[trials["gamma"] > 0]
    assert len(spec_trials) >= 3 and set(spec_trials["drafter"]) == {"eagle3"}
    for k, got in zip(spec_trials["gamma"], spec_trials["mean_tokens_per_round"]):
        want, other = tokens_per_round(a, int(k)), tokens_per_round(OTHER, int(k))
        assert abs(want - other) > 2 * TOL * want or k == 1  # the check tells the two curves apart
        assert got == pytest.approx(want, rel=TOL), (k, got, want)
    assert abs(imp["mean_tokens_per_round"] - tokens_per_round(a, 4)) < 1e-9


def test_one_best_k_per_batch_size_within_the_imported_gamma(run):
    _, imp, out = run
    rows = list(csv.DictReader((out / "schedule.csv").open()))
    assert {int(x["batch"]) for x in rows} == BATCHES
    for b in BATCHES:  # every K 0..gamma of the import, none beyond it
        assert sorted(int(x["gamma"]) for x in rows if int(x["batch"]) == b) == list(range(imp["gamma"] + 1))
    summary = (out / "summary.md").read_text()
    table = summary.split("## Best gamma per batch size", 1)[1].split("\n## ", 1)[0]
    answer = re.findall(r"^\| (\d+) \| (\d+) \| (\w+) \|", table, re.M)
    assert sorted(int(b) for b, _, _ in answer) == sorted(BATCHES)  # one row per batch size
    for b, k, kind in answer:
        best = max((x for x in rows if int(x["batch"]) == int(b)), key=lambda x: float(x["throughput_tok_s"]))
        assert int(k) == int(best["gamma"]) and 1 <= int(k) <= imp["gamma"] and kind == "eagle3"


@pytest.mark.parametrize("version", versions.ENGINES["vllm"].versions)
def test_the_vllm_export_is_eagle3_within_the_import_and_only_the_versions_keys(run, version):
    tmp, imp, out = run
    to = tmp / f"vllm-{version}"
    r = cli("export", str(tmp / "study.toml"), "--engine", "vllm", "--engine-version", version,
            "--out", str(out), "--to", str(to))
    assert r.returncode == 0, r.stderr
    allowed = versions.writable("vllm", version)
    cfg = json.loads((to / "vllm_speculative_config.json").read_text())
    assert cfg["method"] == "eagle3" and cfg["model"] == HEAD and set(cfg) <= allowed, set(cfg) - allowed
    assert 1 <= cfg["num_speculative_tokens"] <= imp["gamma"]
    synth = to / "vllm_synthetic_config.json"
    if "synthetic_acceptance_rates" in allowed:  # the engine is handed back the import's own curve
        s = json.loads(synth.read_text())
        assert set(s) <= allowed
        k = s["num_speculative_tokens"]
        assert s["synthetic_acceptance_rates"] == [round(x, 6) for x in imp["survival"][:k]]
    else:
        assert not synth.exists()
