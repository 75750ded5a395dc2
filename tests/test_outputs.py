"""Output places and run folders (issue 29, "Unwritable outputs" and "Half-written run folders").

Every command that writes refuses a place it cannot write before it works: one line naming
the flag, the path and the reason, exit 2, nothing half written. A run folder says whether it
is whole (COMPLETE.json, written last): a study killed in its report phase leaves a folder
that `export` and `predict` call unfinished, and the rerun completes it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simspec import outputs
from simspec.errors import InputError
from studyhelpers import REPO, finished_study, simspec, small_study

QUICK = str(REPO / "studies" / "quickstart.toml")


def one_line_refusal(r, flag: str, path: str) -> str:
    """Exit 2 and one stderr line naming the path and the flag; no traceback."""
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "Traceback" not in r.stderr and flag in lines[0] and path in lines[0], lines
    return lines[0]


@pytest.fixture(scope="module")
def done_run(tmp_path_factory):
    """A small finished study run folder."""
    return finished_study(tmp_path_factory.mktemp("done"), "outs", trials=6, requests=24, out_max=64)


# -- unwritable outputs ------------------------------------------------------------------

@pytest.mark.parametrize("flag,where", [("--out", "/proc/x"), ("--out", "FILE"), ("--out", "FILE/sub"),
                                        ("--requests-out", "/proc/x.parquet"), ("--requests-out", "/dev/null"),
                                        ("--requests-out", "DIR"), ("--requests-out", "FILE/x.parquet")])
def test_simulate_refuses_unwritable_places_before_running(tmp_path, flag, where):
    (tmp_path / "FILE").write_text("mine\n")
    (tmp_path / "DIR").mkdir()
    path = where if where.startswith("/") else str(tmp_path / where)
    before = sorted(tmp_path.rglob("*"))
    r = simspec("simulate", QUICK, flag, path)
    one_line_refusal(r, flag, path)
    assert r.stdout == ""  # refused before the simulation printed anything
    assert sorted(tmp_path.rglob("*")) == before and (tmp_path / "FILE").read_text() == "mine\n"


def test_study_refuses_an_unwritable_out_before_any_trial(tmp_path):
    p = small_study(tmp_path, name="np", trials=2)
    one_line_refusal(simspec("study", str(p), "--out", "/proc/x", "--no-progress"), "--out", "/proc/x")
    (tmp_path / "f").write_text("")
    one_line_refusal(simspec("study", str(p), "--out", str(tmp_path / "f" / "run"), "--no-progress"),
                     "--out", str(tmp_path / "f" / "run"))


def test_export_and_predict_refuse_an_unwritable_to_before_work(done_run, tmp_path):
    p, out = done_run
    (tmp_path / "taken").write_text("keep\n")
    for cmd in ("export", "predict"):
        for to in ("/proc/x", str(tmp_path / "taken"), str(tmp_path / "taken" / "sub")):
            r = simspec(cmd, str(p), "--out", str(out), "--to", to, "--no-progress"
                        if cmd == "predict" else "--engine=vllm")
            one_line_refusal(r, "--to", to)
            assert r.stdout == ""  # predict used to print its table, then a traceback
    assert (tmp_path / "taken").read_text() == "keep\n"
    # an existing folder: the files of the same names in it are replaced, each whole
    dest = tmp_path / "again"
    dest.mkdir()
    (dest / "vllm_speculative_config.json").write_text("stale")
    r = simspec("export", str(p), "--out", str(out), "--to", str(dest), "--engine", "vllm")
    assert r.returncode == 0, r.stderr
    assert (dest / "vllm_speculative_config.json").read_text() == (out / "vllm_speculative_config.json").read_text()


def test_run_validate_trace_profile_refuse_unwritable_outputs_up_front(tmp_path):
    plan = str(REPO / "studies" / "validation" / "qwen1.5b-humaneval.toml")
    cases = [(("run", "--target", "tiny:llama", "--out", "/proc/r.json"), "/proc/r.json"),
             (("validate", plan, "--out", "/proc/v"), "/proc/v"),
             (("trace", "--target", "tiny:llama", "--out", "/proc/t.parquet"), "/proc/t.parquet"),
             (("trace", "--target", "tiny:llama", "--out", str(tmp_path)), str(tmp_path)),
             (("profile", "--calibrate", str(next((REPO / "profiles").rglob("*.parquet"))), "--out",
               "/proc/p.parquet"), "/proc/p.parquet")]
    for args, path in cases:
        one_line_refusal(simspec(*args), "--out", path)


def test_profile_check_refuses_a_report_place_it_cannot_write(tmp_path):
    src = REPO / "profiles" / "intel-xeon" / "qwen2.5-coder-0.5b-bf16.parquet"
    prof = tmp_path / src.name
    prof.write_bytes(src.read_bytes())
    prof.with_suffix(".json").write_bytes(src.with_suffix(".json").read_bytes())
    report = tmp_path / (prof.stem + ".check.json")
    report.mkdir()  # where the check's report goes: refused before a model loads
    one_line_refusal(simspec("profile", "--check", str(prof)), "--check", str(report))


def test_check_helpers_leave_nothing_behind(tmp_path, monkeypatch):
    outputs.check_dir("--out", tmp_path / "a" / "b" / "c")
    outputs.check_file("--to", tmp_path / "d" / "e.parquet")
    monkeypatch.chdir(tmp_path)
    outputs.check_dir("--out", Path("new") / ".." / "y" / "z")  # mkdir makes new/ and y/ for this
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(InputError, match="too long"):
        outputs.check_file("--to", tmp_path / ("x" * 300))
    with pytest.raises(InputError, match="too long"):
        outputs.check_dir("--to", tmp_path / ("x" * 300) / "y")
    assert list(tmp_path.iterdir()) == []


# -- run folders written as a set --------------------------------------------------------

def test_simulate_out_is_marked_complete_last(tmp_path, monkeypatch):
    out = tmp_path / "sim"
    assert simspec("simulate", QUICK, "--out", str(out)).returncode == 0
    done = json.loads((out / outputs.MARKER).read_text())
    assert done["files"] == ["summary.json", "requests.parquet", "scenario.json"]
    # killed after the first file of a rerun: the folder no longer claims to be whole
    import simspec.atomic as atomic

    real = atomic.write_via

    def dies_at_parquet(path, write):
        if Path(path).name == "requests.parquet":
            raise KeyboardInterrupt
        return real(path, write)

    monkeypatch.setattr(atomic, "write_via", dies_at_parquet)
    r = simspec("simulate", QUICK, "--out", str(out))
    assert r.returncode != 0 and not outputs.is_complete(out)
    monkeypatch.setattr(atomic, "write_via", real)
    assert simspec("simulate", QUICK, "--out", str(out)).returncode == 0 and outputs.is_complete(out)


def test_validate_out_marks_each_plans_set_complete_last(tmp_path, monkeypatch):
    plan = REPO / "studies" / "validation" / "qwen1.5b-humaneval.toml"
    args = ("validate", str(plan), "--measured", str(plan.with_suffix(".json")), "--out", str(tmp_path))
    assert simspec(*args).returncode == 0
    marker = tmp_path / f"qwen1.5b-humaneval.{outputs.MARKER}"
    files = json.loads(marker.read_text())["files"]
    assert files[0] == "qwen1.5b-humaneval.csv" and files[-1] == "qwen1.5b-humaneval.html"
    assert all((tmp_path / f).is_file() for f in files)
    import simspec.report.validation as report

    def dies(*a, **k):  # killed after the table and the JSON, before the figure and the page
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "write", dies)
    assert simspec(*args).returncode != 0 and not marker.exists()


def test_study_killed_in_its_report_phase_is_unfinished_and_a_rerun_completes_it(tmp_path, monkeypatch):
    p = small_study(tmp_path, name="rk", trials=6, requests=24, out_max=64)
    out = tmp_path / "run"
    import simspec.report.study as report

    real = report.write

    def killed(o, where):  # the results are written, then the report phase dies
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "write", killed)
    r = simspec("study", str(p), "--out", str(out), "--no-progress")
    assert r.returncode != 0
    assert (out / "best.toml").exists() and (out / "vllm_speculative_config.json").exists()
    assert not (out / "summary.md").exists() and not outputs.is_complete(out)
    # readers see it unfinished, say so in one line, and say how to complete it
    for cmd in ("export", "predict"):
        line = one_line_refusal(simspec(cmd, str(p), "--out", str(out)), "unfinished", str(out))
        assert "rk.toml" in line and outputs.MARKER in line
    monkeypatch.setattr(report, "write", real)
    r = simspec("study", str(p), "--out", str(out), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "resumed study 'rk'" in r.stdout
    done = json.loads((out / outputs.MARKER).read_text())
    assert {"summary.md", "report.html", "best.toml"} <= set(done["files"])
    assert all((out / f).exists() for f in done["files"])
    assert simspec("export", str(p), "--out", str(out), "--engine", "vllm").returncode == 0


def test_a_rerun_marks_the_folder_unfinished_until_it_is_whole_again(done_run, monkeypatch, tmp_path):
    import shutil

    p, out = done_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    assert outputs.is_complete(copy)
    import simspec.study.outcome as outcome

    def dies(*a, **k):
        raise RuntimeError("killed while writing results")

    monkeypatch.setattr(outcome, "write_results", dies)
    r = simspec("study", str(p), "--out", str(copy), "--trials", "7", "--no-progress")
    assert r.returncode != 0 and not outputs.is_complete(copy)  # its old summary.md is not of 7 trials
