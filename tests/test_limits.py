"""Sizes without limits (issue 29): every example of the issue ends, within 10 s, in one line
naming the file (or flag), the key, the value and the limit (exit 2), or in a correct result.

Also: only regular files are read as inputs; idle replicas cost nothing and change nothing;
arrival times far from zero are refused before they cost TTFT/TPOT their precision."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np
import pytest

from limitshelpers import refused, within
from simspec import limits
from simspec.config import load_scenario, parse_scenario
from simspec.errors import InputError

REPO = Path(__file__).resolve().parents[1]
QUICK = (REPO / "studies" / "quickstart.toml").read_text()
QUICK_STUDY = (REPO / "studies" / "quickstart_study.toml").read_text()
TRACE = REPO / "traces" / "qwen2.5-coder-1.5b__humaneval-b1-fp32.parquet"


def _scenario(tmp_path: Path, old: str, new: str, name: str = "s.toml") -> Path:
    assert old in QUICK
    p = tmp_path / name
    p.write_text(QUICK.replace(old, new))
    return p


def _study(tmp_path: Path, old: str, new: str) -> Path:
    assert old in QUICK_STUDY
    (tmp_path / "quickstart.toml").write_text(QUICK)
    p = tmp_path / "study.toml"
    p.write_text(QUICK_STUDY.replace(old, new))
    return p


# -- the examples ------------------------------------------------------------------

def test_a_billion_requests_is_refused_before_any_array(tmp_path):
    p = _scenario(tmp_path, "requests = 64", "requests = 1000000000")
    refused("simulate", p, must=(str(p), "workload.requests", "1,000,000,000", "10,000,000"))


def test_work_beyond_what_a_run_can_finish_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(limits, "available_memory", lambda: 2 ** 40)  # memory is not the point here
    p = _scenario(tmp_path, "requests = 64", "requests = 9000000")  # x ~153 mean output tokens
    line = refused("simulate", p, must=("workload.requests", "output tokens", "1,000,000,000"))
    assert "9,000,000 requests" in line


def test_requests_past_half_the_available_memory_are_refused(monkeypatch):
    monkeypatch.setattr(limits, "available_memory", lambda: 2 ** 30)  # a 1 GiB machine
    base = {"target": {"cost": {"step_ms": 1.0}},
            "workload": {"requests": 4_000_000, "prompt_len": 1, "output_len": 1}}
    with pytest.raises(InputError) as ei:
        parse_scenario(base, "m.toml")
    assert ei.value.key == "workload.requests" and "GiB" in ei.value.reason
    monkeypatch.setattr(limits, "available_memory", lambda: 64 * 2 ** 30)
    parse_scenario(base, "m.toml")  # fits on a larger machine


@pytest.mark.parametrize("special", ["/dev/zero", "fifo", "folder", "link-to-zero"])
def test_only_regular_files_are_read_as_scenarios(tmp_path, special):
    path = {"/dev/zero": Path("/dev/zero"), "fifo": tmp_path / "f.toml", "folder": tmp_path,
            "link-to-zero": tmp_path / "z.toml"}[special]
    if special == "fifo":
        os.mkfifo(path)  # opening it would block forever: it must never be opened
    elif special == "link-to-zero":
        path.symlink_to("/dev/zero")
    line = refused("simulate", path, must=(str(path),), seconds=5)
    assert ("not a regular file" in line) or ("folder" in line)


def test_a_scenario_file_past_the_size_cap_is_refused_unread(tmp_path):
    p = tmp_path / "huge.toml"
    with open(p, "wb") as fh:  # sparse: costs no disk
        fh.truncate(int(limits.INPUT_BYTES.value) + 1)
    refused("simulate", p, must=(str(p), "limit", "bytes"), seconds=5)


def test_a_fifo_sidecar_or_trace_is_never_opened(tmp_path):
    t = tmp_path / "t.parquet"
    t.write_bytes(TRACE.read_bytes())
    os.mkfifo(tmp_path / "t.json")
    refused("trace", "--summary", t, must=("t.json", "not a regular file"), seconds=5)
    os.mkfifo(tmp_path / "u.parquet")
    refused("trace", "--summary", tmp_path / "u.parquet", must=("u.parquet", "not a regular file"), seconds=5)


def test_study_gamma_range_past_the_limit_is_refused(tmp_path):
    p = _study(tmp_path, "gamma = { low = 0, high = 6 }", "gamma = { low = 99990, high = 100000 }")
    refused("study", p, "--out", tmp_path / "run", must=(str(p), "search.gamma", "100,000", "128"))
    assert not (tmp_path / "run" / "summary.md").exists()


def test_gamma_plot_with_a_huge_gamma_ends(tmp_path):
    """The plot itself: one y tick per gamma made set_yticks run over 100k ticks."""
    from simspec.report.study_plots import gamma_vs_batch
    from simspec.study.schedule import Point

    pts = [Point(b, "model", 99990 + i, 10.0 + i, 0.1) for i, b in enumerate((1, 2, 4))]
    pts += [Point(b, "none", 0, 5.0, 0.1) for b in (1, 2, 4)]
    with within(10, "gamma_vs_batch"):
        gamma_vs_batch(pts, tmp_path / "g.png")
    assert (tmp_path / "g.png").stat().st_size > 0


def test_study_max_batch_past_the_limit_is_refused(tmp_path):
    p = _study(tmp_path, "max_batch = [1, 2, 4, 8, 16]", "max_batch = [1000000]")
    refused("study", p, "--out", tmp_path / "run", must=("search.max_batch", "1,000,000", "4,096"))


@pytest.mark.parametrize("schedule,key", [
    ("batch_sizes = [1000000]", "schedule.batch_sizes"),
    ("batch_sizes = [" + ", ".join(str(i) for i in range(1, 80)) + "]", "schedule.batch_sizes"),
    ("min_requests = 100000000", "schedule.min_requests"),
    ("requests_per_slot = 100000", "schedule.requests_per_slot"),
])
def test_schedule_sizes_past_their_limits_are_refused(tmp_path, schedule, key):
    p = _study(tmp_path, "[objectives]", f"[schedule]\n{schedule}\n\n[objectives]")
    refused("study", p, "--out", tmp_path / "run", must=(key, "limit"))


def test_trials_past_the_limit_are_refused(tmp_path):
    p = _study(tmp_path, "trials = 40", "trials = 1000000000")
    refused("study", p, must=("trials", "1,000,000,000", "100,000"))
    q = _study(tmp_path, "trials = 40", "trials = 40")
    refused("study", q, "--trials", "1000000000", "--out", tmp_path / "r", must=("--trials", "100,000"))
    refused("study", q, "--workers", "100000", "--out", tmp_path / "r", must=("--workers", "256"))


def test_trace_summary_g_max_past_the_limit_is_refused():
    refused("trace", "--summary", TRACE, "--g-max", "1000000", must=("--g-max", "1,000,000", "64"))
    refused("trace", "--summary", TRACE, "--g-max", "0", must=("--g-max", ">= 1"))


def test_trace_summary_at_the_limit_ends_and_long_chains_are_exact():
    from simspec.trace.schema import load_trace
    from simspec.trace.summary import _runs, replay_chain, tokens_per_round

    with within(10, "trace --summary --g-max 64"):
        from clihelpers import cli

        r = cli("trace", "--summary", str(TRACE), "--g-max", "64")
    assert r.returncode == 0 and "g=64" in r.stdout
    trace = load_trace(TRACE)
    d = next(iter(trace.ranks))
    run = _runs(trace, d)
    top = int(run.max())
    got = tokens_per_round(trace, d, [top + 3, top + 40])
    for g in (top + 3, top + 40):  # the memo answers as a full replay would
        t, n = replay_chain(run, trace.offsets, g)
        assert got[g] == t / n


def test_tree_past_the_node_limit_is_refused_fast(tmp_path):
    p = _scenario(tmp_path, "per_position = [0.80, 0.72, 0.68]", "rank_probs = [0.5, 0.2]")
    p.write_text(p.read_text().replace("draft_len = 3", "tree = [1000, 1000, 1000]"))
    refused("simulate", p, must=("speculation.tree", "1,001,001", "4,096"), seconds=5)
    q = _study(tmp_path, 'drafter = ["model", "early_exit", "ngram"]', 'drafter = ["model"]\ntree = ["1000,1000,1000"]')
    refused("study", q, "--out", tmp_path / "run", must=("search.tree", "4,096"), seconds=5)


@pytest.mark.parametrize("key,old,new", [
    ("speculation.draft_len", "draft_len = 3", "draft_len = 100000"),
    ("serving.max_batch", "max_batch = 8", "max_batch = 100000"),
    ("placement.replicas", 'target = "cpu0"', 'target = "cpu0"\nreplicas = 1000000'),
    ("workload.prompt_len", "median = 200, sigma = 0.8, min = 8, max = 2048", "median = 200, sigma = 0.8, min = 8, max = 100000000"),
])
def test_each_scenario_size_past_its_limit_is_refused(tmp_path, key, old, new):
    refused("simulate", _scenario(tmp_path, old, new), must=(key,))


# -- replicas -----------------------------------------------------------------------------

def test_idle_replicas_are_not_built_and_change_nothing(tmp_path, monkeypatch):
    from simspec.sim import run as run_mod

    built = []

    class Counting(run_mod.Replica):
        def __init__(self, *a, **k):
            built.append(1)
            super().__init__(*a, **k)

    monkeypatch.setattr(run_mod, "Replica", Counting)
    few = run_mod.simulate(load_scenario(_scenario(tmp_path, 'target = "cpu0"', 'target = "cpu0"\nreplicas = 64', "a.toml")))
    built.clear()
    with within(10, "65536 replicas"):
        many = run_mod.simulate(load_scenario(_scenario(tmp_path, 'target = "cpu0"', 'target = "cpu0"\nreplicas = 65536', "b.toml")))
    assert len(built) == 64 and len(many.iterations) == 65536  # one (empty) log per replica still
    scale = {"busy_cpu0": 64 / 65536, "cost_per_mtok": 65536 / 64}
    for k, v in few.summary.items():
        if k == "wall_s":
            continue
        assert math.isclose(many.summary[k], v * scale.get(k, 1.0), rel_tol=1e-12), k


def test_least_loaded_picks_what_min_picks():
    from simspec.sim.dispatch import LeastLoaded

    rng = np.random.default_rng(0)
    loads = [0] * 7
    least = LeastLoaded([lambda i=i: loads[i] for i in range(7)])
    for _ in range(3000):
        if rng.random() < 0.55:
            i = least.pick()
            assert i == min(range(7), key=lambda j: loads[j])
            loads[i] += 1
            least.changed(i)
        else:
            busy = [j for j in range(7) if loads[j]]
            if busy:
                j = int(rng.choice(busy))
                loads[j] -= 1
                least.changed(j)


def test_multi_replica_runs_equal_the_scan_dispatcher(tmp_path, monkeypatch):
    """The heap dispatcher against the former scan (min over replicas) on a shared workload."""
    from simspec.sim import run as run_mod

    sc = load_scenario(_scenario(tmp_path, 'target = "cpu0"', 'target = "cpu0"\nreplicas = 3'))
    fast = run_mod.simulate(sc).summary

    class Scan:
        def __init__(self, loads):
            self.loads = loads

        def changed(self, i):
            pass

        def pick(self):
            return min(range(len(self.loads)), key=lambda i: self.loads[i]())

    monkeypatch.setattr(run_mod, "LeastLoaded", Scan)
    slow = run_mod.simulate(sc).summary
    assert {k: v for k, v in fast.items() if k != "wall_s"} == {k: v for k, v in slow.items() if k != "wall_s"}


# -- time resolution -----------------------------------------------------------------------

def test_rate_whose_arrivals_pass_the_clock_limit_is_refused(tmp_path):
    p = _scenario(tmp_path, "rate = 0.05", "rate = 1e-12")
    refused("simulate", p, must=(str(p), "workload.rate", "1e-12", "4.29e+09"))
    explicit = {"target": {"cost": {"step_ms": 1.0}},
                "workload": {"requests": 1, "arrival": "explicit", "arrival_times": [1e15],
                             "prompt_len": 1, "output_len": 2}}
    with pytest.raises(InputError) as ei:
        parse_scenario(explicit, "e.toml")
    assert ei.value.key == "workload.arrival_times"


def test_ttft_keeps_its_precision_up_to_the_clock_limit():
    """Just inside the limit, TTFT and TPOT equal an isolated request's (11 ms, 1 ms)."""
    def sc(rate: float):
        return parse_scenario({"target": {"cost": {"step_ms": 11.0, "per_token_ms": 0.0}},
                               "workload": {"requests": 4, "arrival": "poisson", "rate": rate,
                                            "prompt_len": 8, "output_len": 4}}, "t.toml")
    from simspec.sim.run import simulate

    near = simulate(sc(4 / limits.CLOCK_S.value)).summary
    assert near["sim_time_s"] > 2 ** 30  # far from zero indeed
    assert abs(near["ttft_p50_s"] - 0.011) < 1e-5 and abs(near["tpot_p50_s"] - 0.011) < 1e-5


# -- the table ------------------------------------------------------------------------------

def test_every_limit_states_a_positive_value_and_why():
    for lim in limits.TABLE:
        assert lim.value > 0 and lim.name and len(lim.why) > 20, lim
    assert len({lim.name for lim in limits.TABLE}) == len(limits.TABLE)


def test_shipped_scenarios_and_studies_are_within_the_limits():
    from simspec.study.spec import load_study

    for p in sorted((REPO / "studies").glob("*.toml")):
        text = p.read_text()
        if re.search(r"^scenario\s*=", text, re.M):
            load_study(p)
        elif "[target]" in text:
            load_scenario(p)


def test_a_fifo_prompt_file_is_never_opened(tmp_path):
    from simspec.live.prompts import load_prompts
    from simspec.trace.prompts import load_split

    fifo = tmp_path / "p.jsonl"
    os.mkfifo(fifo)
    with within(5, "prompts from a FIFO"):
        for read in (lambda: load_prompts(str(fifo), 2), lambda: load_split(str(fifo), 2, 0)):
            with pytest.raises(InputError) as ei:
                read()
            assert "not a regular file" in ei.value.reason and ei.value.file == str(fifo)
