"""`simspec validate` on serving configs (continuous batching), end to end on tiny fp32 models:
the live loop and the simulator serve the same requests (traced prompts, traced output lengths)
with the same arrival times, the live greedy outputs are the traced ones, and in a closed loop
(whose schedule depends on no clock) the simulator's acceptance replay gives the live tokens
per round and the live iteration sequence exactly. No test reads wall-clock durations."""

from __future__ import annotations

import json

import pandas as pd
import pytest

pytest.importorskip("torch")

from test_profile_cli import assert_one_line_exit_2, run_cli  # noqa: E402
from test_validate import setup, write_plan  # noqa: E402,F401  (the module's traced tiny models)

SERVING = """
[[config]]
dtype = "fp32"
draft = "early_exit:2"
gamma = 2

[[config]]
dtype = "fp32"
draft = "early_exit:3"
gamma = 3
max_batch = 2
arrival = "closed"
concurrency = 2
requests = 4

[[config]]
dtype = "fp32"
draft = "early_exit:2"
gamma = 2
max_batch = 3
arrival = "poisson"
rate = 40.0
seed = 7
requests = 5

[[config]]
dtype = "fp32"
draft = "model:tiny:qwen2:2"
column = "tiny-qwen2-2l"
tree = [2, 1]
max_batch = 3
arrival = "closed"
requests = 5
kv_capacity_tokens = 120
"""


def test_serving_plan_runs_end_to_end_and_live_matches_replay(setup):  # noqa: F811
    from simspec.live.serving import poisson_times

    plan = write_plan(setup, SERVING)
    out = setup / "serve"
    res = run_cli("validate", str(plan), "--out", str(out), cache=setup)
    assert res.returncode == 0, res.stderr
    for f in ("tiny.csv", "tiny.json", "tiny.png", "tiny-serving.png", "tiny.html"):
        assert (out / f).stat().st_size > 100, f
    assert (out / "tiny-serving.png").stat().st_size > 10_000
    assert (out / "tiny-decomposition.png").stat().st_size > 10_000
    assert (out / "tiny.html").read_text().count("data:image/png;base64,") == 3  # batch-1, serving, decomposition
    df = pd.read_csv(out / "tiny.csv")
    assert len(df) == 4 and df["config"].iloc[0] == "fp32 exit:2 g2"  # the batch-1 row first, as ever
    served = df.iloc[1:]
    metrics = ("tok_s", "ttft_p50_s", "ttft_p99_s", "tpot_p50_s", "tpot_p99_s", "e2e_p50_s", "e2e_p99_s",
               "mean_batch", "tokens_per_round")
    for m in metrics:
        assert served[f"predicted_{m}"].notna().all() and served[f"measured_{m}"].notna().all(), m
        assert (served[f"predicted_{m}"] > 0).all() and (served[f"measured_{m}"] > 0).all(), m
        assert (m == "tok_s" and "error_pct" in df) or f"error_{m}_pct" in df, m
    meta = json.loads((out / "tiny.json").read_text())
    assert meta["agreement"]["n"] == 1 and len(meta["rows"]) == 1  # the batch-1 table as ever
    block = meta["serving"]
    ag = block["agreement"]
    assert ag["n"] == 3 and -1 <= ag["spearman_rho"] <= 1 and ag["regret_pct"] >= 0
    assert set(ag["metrics"]) == set(metrics)
    assert all(v["max_abs_error_pct"] >= v["median_abs_error_pct"] >= 0 for v in ag["metrics"].values())
    rows = {r["config"]: r for r in block["rows"]}
    closed = [c for c in rows if "closed" in c]
    (poisson,) = [c for c in rows if "poisson" in c]
    assert len(closed) == 2
    for label, r in rows.items():
        # lossless: every request's live greedy output is its traced one (request i: prompt i % 3)
        assert r["outputs_equal_trace"] == r["requests"] == r["measured_requests"], label
        tl = block["timelines"][label]
        assert len(tl["live_arrivals"]) == len(tl["sim_arrivals"]) == r["requests"]
    for label in closed:
        r, tl = rows[label], block["timelines"][label]
        # a closed loop's schedule depends on no clock: the simulator's replay of the trace is the
        # live run, iteration for iteration (kinds and batch sizes), hence tokens per round exactly
        assert [(k, b) for k, _, _, b in tl["live_iterations"]] == [(k, b) for k, _, _, b in tl["sim_iterations"]]
        assert r["measured_tokens_per_round"] == pytest.approx(r["predicted_tokens_per_round"], rel=1e-12)
        assert r["measured_mean_batch"] == pytest.approx(r["predicted_mean_batch"], rel=1e-12)
    assert rows[closed[0]]["measured_tokens_per_round"] > 1.0  # early exit is accepted at all
    assert rows[closed[0]]["measured_mean_batch"] > 1.0  # two users do share rounds
    # poisson: the live run and the simulator were given the same arrival times, the plan's seed's
    tl = block["timelines"][poisson]
    assert tl["live_arrivals"] == pytest.approx(poisson_times(5, 40.0, 7), rel=1e-12)
    assert tl["sim_arrivals"] == pytest.approx(poisson_times(5, 40.0, 7), rel=1e-12)
    assert "serving (continuous batching)" in res.stdout and "Spearman" in res.stdout
    # --measured prices the serving measurements again without serving: same profiles, same table
    again = setup / "serve2"
    res = run_cli("validate", str(plan), "--measured", str(out / "tiny.json"), "--out", str(again), cache=setup)
    assert res.returncode == 0, res.stderr
    pd.testing.assert_frame_equal(df, pd.read_csv(again / "tiny.csv"))
    assert json.loads((again / "tiny.json").read_text())["serving"]["timelines"] == block["timelines"]


def test_same_seed_same_arrivals_in_both(setup):  # noqa: F811
    from simspec.live.serving import poisson_times
    from simspec.sim.run import simulate
    from simspec.validation.live import serving_requests
    from simspec.validation.run import load_inputs

    body = SERVING.replace("seed = 7", "seed = 11")
    inp = load_inputs(write_plan(setup, body), "3")
    (cfg,), (sc,) = inp.configs, inp.scenarios
    want = poisson_times(5, 40.0, 11)
    assert cfg.arrival_times() == want != poisson_times(5, 40.0, 7)
    assert [r.arrival for r in serving_requests(cfg, inp.prompts, inp.traced)] == want
    assert sc.workload.arrival == "explicit" and list(sc.workload.arrival_times) == want
    res = simulate(sc, inp.file)
    assert res.records.arrival.tolist() == want
    # each request decodes its traced sequence's length, live and simulated
    reqs = serving_requests(cfg, inp.prompts, inp.traced)
    assert [r.max_new_tokens for r in reqs] == res.records.output_len.tolist()
    assert [len(r.prompt) for r in reqs] == res.records.prompt_len.tolist()
    assert [r.prompt for r in reqs] == [inp.prompts[i % 3] for i in range(5)]
    # a batch-1 config of the same plan keeps its batch-1 scenario
    one = load_inputs(write_plan(setup, body), "1").scenarios[0]
    assert (one.serving.max_batch, one.workload.arrival, one.workload.concurrency,
            one.speculation.first_round) == (1, "closed", 1, "with_prefill")


BAD = [
    ("max_batch = 2\n", "config[0]", "needs `arrival`"),
    ('max_batch = 0\narrival = "closed"\nrequests = 2\n', "config[0].max_batch", "greater than 0"),
    ('max_batch = 2\narrival = "poisson"\nrequests = 2\n', "config[0]", "needs `rate`"),
    ('max_batch = 2\narrival = "closed"\nrate = 2.0\nrequests = 2\n', "config[0]", "`rate` only applies"),
    ('max_batch = 2\narrival = "burst"\nrequests = 2\n', "config[0].arrival", "'closed' or 'poisson'"),
    ('max_batch = 2\narrival = "closed"\nrequests = 2\nmax_batches = 3\n', "config[0].max_batches", "unknown key"),
    ('max_batch = 2\narrival = "closed"\nrequests = 2\nkv_capacity_tokens = 20\n', "kv_capacity_tokens",
     "cannot hold a request"),
]


@pytest.mark.parametrize("extra,key,reason", BAD, ids=[b[2] for b in BAD])
def test_bad_serving_keys_are_one_line_errors_and_write_nothing(setup, extra, key, reason):  # noqa: F811
    plan = write_plan(setup, '[[config]]\ndtype = "fp32"\ndraft = "early_exit:2"\ngamma = 2\n' + extra)
    out = setup / "bad-serving"
    assert_one_line_exit_2(run_cli("validate", str(plan), "--out", str(out), cache=setup),
                           str(plan), key, reason)
    assert not out.exists()
