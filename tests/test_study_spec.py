"""Study files: bad input is one line naming file, key and reason; exit 2; nothing written."""

from __future__ import annotations

import pytest

from simspec.errors import InputError
from simspec.study.spec import load_study
from studyhelpers import simspec, small_study


def _err(path) -> InputError:
    with pytest.raises(InputError) as ei:
        load_study(path)
    return ei.value


def test_small_study_loads(tmp_path):
    spec = load_study(small_study(tmp_path))
    assert spec.name == "small"
    assert spec.base.workload.requests == 48 and spec.base.gamma == 0  # the base decodes plainly


@pytest.mark.parametrize("edit, key, reason", [
    (lambda s: "colour = 3\n" + s, "colour", "unknown key"),
    (lambda s: s.replace('gamma = { low = 0, high = 6 }', 'gamma = { low = 0, high = 6, hgih = 2 }'), "search.gamma.hgih", "unknown key"),
    (lambda s: s.replace('throughput = "maximize"', 'goodput = "maximize"'), "objectives.goodput", "unknown metric"),
    (lambda s: s.replace('throughput = "maximize"', 'throughput = "maximise"'), "objectives.throughput", "maximize"),
    (lambda s: s.replace("tpot_p99_s = { max = 0.05 }", "tpot_p99_s = { below = 0.05 }"), "constraints.tpot_p99_s.below", "unknown key"),
    (lambda s: s.replace("{ gamma = 0, max_batch = 4 }", "{ gama = 0 }"), "baselines[0].gama", "unknown knob"),
    (lambda s: s.replace('exit_layer = { low = 4, high = 20, step = 4 }', ''), "search.exit_layer", "needs an `exit_layer`"),
    (lambda s: s.replace('[drafters.ngram]', '[drafters.ngramm]'), "drafters.ngramm", "unknown section"),
    (lambda s: s.replace('drafter = ["model", "early_exit", "ngram"]', 'drafter = ["model", "medusa"]'), "search.drafter[1]", "Input should be"),
    (lambda s: s.replace("[search]", "[search]\ntree = [\"2,x\"]"), "search", "tree shape"),
    (lambda s: s.replace("[search]", "[search]\ntree = [\"2,1\"]"), "drafters.model.acceptance", "rank_probs"),
    (lambda s: s.replace("[search]", "[search]\nplacement = [\"split\"]"), "search.placement", "[variants.placement.split]"),
    (lambda s: s.replace("layers = 24", "layers = 12"), "search.exit_layer", "target.layers is 12"),
    (lambda s: s.replace("coverage = [[4096, 0.85], [32768, 0.96], [131072, 1.0]]", "coverage = []"),
     "drafters.model.coverage", "at least 1 item"),
    # the base scenario, parsed once at load (decoding plainly), and one scenario per drafter
    (lambda s: s.replace("step_ms = 20.0", "step_ms = -1.0"), "scenario", "invalid scenario: target.cost.step_ms: "),
    (lambda s: s.replace('cost = { step_ms = 4.0, per_seq_ms = 0.1 }', ''), "drafters.model",
     "invalid scenario: draft: kind = 'model' needs `cost` or `profile`"),
])
def test_errors_name_file_key_reason(tmp_path, edit, key, reason):
    p = small_study(tmp_path)
    p.write_text(edit(p.read_text()))
    e = _err(p)
    assert e.file == str(p)
    assert e.key == key, e.line()
    assert reason in e.reason, e.line()


def test_missing_scenario_file(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text('scenario = "nope.toml"\n')
    e = _err(p)
    assert (e.key, e.reason) == ("scenario", "scenario file not found: nope.toml")


def test_cli_exit_2_one_line_nothing_written(tmp_path):
    p = small_study(tmp_path)
    p.write_text(p.read_text().replace('throughput = "maximize"', 'goodput = "maximize"'))
    out = tmp_path / "run"
    r = simspec("study", str(p), "--out", str(out))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {p}: objectives.goodput: unknown metric"), r.stderr
    assert not out.exists()


def test_cli_capacity_needs_section(tmp_path):
    p = small_study(tmp_path)
    r = simspec("study", str(p), "--capacity", "--out", str(tmp_path / "run"))
    assert r.returncode == 2
    assert r.stderr.strip() == f"error: {p}: capacity: --capacity needs a [capacity] section with `rate` (requests/s)"
    assert not (tmp_path / "run").exists()


def test_cli_bad_storage_url(tmp_path):
    p = small_study(tmp_path)
    r = simspec("study", str(p), "--storage", "nosuchdb://x/y", "--out", str(tmp_path / "run"))
    assert r.returncode == 2
    assert r.stderr.strip().startswith("error: --storage: cannot open storage nosuchdb://x/y"), r.stderr
